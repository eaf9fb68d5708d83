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
    embedded::migrations::runner()
        .run_async(client)
        .await
        .context("applying versioned migrations")?;
    let tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL client_min_messages = warning")
        .await?;
    tx.batch_execute(RECREATE_API)
        .await
        .context("recreating the api schema")?;
    for (name, sql) in REPEATABLE {
        tx.batch_execute(sql)
            .await
            .with_context(|| format!("applying {name}"))?;
    }
    tx.commit().await?;
    Ok(())
}
