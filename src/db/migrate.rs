//! Schema migrations: versioned files in sql/migrations (refinery), then every
//! file of sql/functions and sql/policies, which are written to be re-applied.
//! All of it runs under one advisory lock, so servers starting together
//! migrate once, one after another.

use anyhow::Context;

mod embedded {
    refinery::embed_migrations!("sql/migrations");
}

include!(concat!(env!("OUT_DIR"), "/repeatable_sql.rs"));

/// Arbitrary, fixed: "minicrm" in ASCII.
const MIGRATION_LOCK: i64 = 0x6d_69_6e_69_63_72_6d;

/// The `api` schema is the callable surface and holds nothing but functions
/// (no data, nothing depends on it): it is dropped and created anew, inside
/// the migration transaction, so a function whose signature changed leaves no
/// stale overload behind. `app` and `private` hold what policies and
/// triggers depend on and are replaced in place; pgTAP checks that none of
/// the three has an overloaded name (tests/sql/06_no_overloads.sql).
const RECREATE_API: &str = "
    DROP SCHEMA IF EXISTS api CASCADE;
    CREATE SCHEMA api;
    ALTER DEFAULT PRIVILEGES IN SCHEMA api REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
    GRANT USAGE ON SCHEMA api TO minicrm_api;
";

pub async fn run(database_url: &str) -> anyhow::Result<()> {
    let db = super::tls::parse(database_url).context("parsing DATABASE_URL")?;
    let (mut client, connection) =
        db.config.connect(db.tls.clone()).await.with_context(|| {
            format!("connecting to the database to migrate ({})", db.describe())
        })?;
    let connection = tokio::spawn(connection);

    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    let result = apply(&mut client).await;
    // Unlock even after a failure; closing the connection would release it too.
    let _ = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await;
    drop(client);
    let _ = connection.await;
    result
}

async fn apply(client: &mut tokio_postgres::Client) -> anyhow::Result<()> {
    versioned(client, refinery::Target::Latest).await?;
    repeatable(client, REPEATABLE.iter().map(|(name, sql)| (*name, *sql))).await
}

async fn versioned(
    client: &mut tokio_postgres::Client,
    target: refinery::Target,
) -> anyhow::Result<()> {
    embedded::migrations::runner()
        .set_target(target)
        .run_async(client)
        .await
        .context("applying versioned migrations")?;
    Ok(())
}

/// Applies the versioned migrations up to and including `version` only, and
/// no repeatable file: the schema as it was before a later migration, for
/// testing that migration on a database of the old schema
/// (tests/api/migrations.rs).
pub async fn versioned_up_to(
    client: &mut tokio_postgres::Client,
    version: u32,
) -> anyhow::Result<()> {
    versioned(client, refinery::Target::Version(version)).await
}

/// The repeatable step: the api schema anew, then `files` (name, SQL) in
/// order, in one transaction. `migrate` applies sql/functions and
/// sql/policies; a test may apply those of an older commit.
pub async fn repeatable<'a>(
    client: &mut tokio_postgres::Client,
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> anyhow::Result<()> {
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await?;
    tx.batch_execute(RECREATE_API)
        .await
        .context("recreating the api schema")?;
    for (name, sql) in files {
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("applying {name}"))?;
    }
    tx.commit().await?;
    Ok(())
}
