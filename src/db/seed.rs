//! `minicrm seed --orgs N --deals-per-org M`: demo and benchmark data,
//! generated in SQL by `private.seed` (sql/functions/90_seed.sql).

use std::time::Instant;

use anyhow::Context;

/// Every seeded user's password.
pub const DEMO_PASSWORD: &str = "demo-password";

#[derive(Clone, Copy, Debug, clap::Args)]
pub struct SeedArgs {
    /// Demo organizations to add.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=10_000))]
    pub orgs: i32,
    /// Deals in each organization (with contacts, tasks and timelines to match).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(i32).range(1..=10_000_000))]
    pub deals_per_org: i32,
    /// Contacts in each organization [default: a tenth of the deals].
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=10_000_000))]
    pub contacts_per_org: Option<i32>,
    /// Tasks in each organization, on random deals [default: on about 30 % of the open deals].
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=10_000_000))]
    pub tasks_per_org: Option<i32>,
    /// Timeline rows in each organization: comments on random deals fill up
    /// what the deals' and tasks' own events leave [default: those events only].
    #[arg(long, value_parser = clap::value_parser!(i32).range(0..=100_000_000))]
    pub activities_per_org: Option<i32>,
}

pub async fn run(database_url: &str, args: SeedArgs) -> anyhow::Result<()> {
    let db = super::tls::parse(database_url).context("parsing DATABASE_URL")?;
    let (client, connection) = db
        .config
        .connect(db.tls.clone())
        .await
        .with_context(|| format!("connecting to the database to seed ({})", db.describe()))?;
    let connection = tokio::spawn(connection);
    let hash = crate::auth::credentials::hash_password(DEMO_PASSWORD.to_owned()).await?;
    let started = Instant::now();
    client
        .batch_execute("SET statement_timeout = 0; SET client_min_messages = warning")
        .await?;
    let rows = client
        .query(
            "SELECT organization_id, owner_email, deals FROM private.seed(p_orgs => $1, \
             p_deals_per_org => $2, p_password_hash => $3, p_contacts_per_org => $4, \
             p_tasks_per_org => $5, p_activities_per_org => $6)",
            &[
                &args.orgs,
                &args.deals_per_org,
                &hash,
                &args.contacts_per_org,
                &args.tasks_per_org,
                &args.activities_per_org,
            ],
        )
        .await
        .context("seeding")?;
    let loaded = started.elapsed();
    // Fresh statistics and visibility maps: the planner and index-only scans need them.
    client
        .batch_execute(
            "VACUUM (ANALYZE) crm.organizations, crm.users, crm.organization_members, \
             crm.pipelines, crm.pipeline_stages, crm.contacts, crm.contact_search_words, crm.deals, crm.tasks, \
             crm.activities",
        )
        .await?;
    println!("organization_id                       owner (password: {DEMO_PASSWORD})");
    for row in &rows {
        let org: uuid::Uuid = row.get(0);
        let email: String = row.get(1);
        println!("{org}  {email}");
    }
    println!(
        "seeded {} organization(s) x {} deals in {:.1}s (+ vacuum/analyze: {:.1}s total)",
        args.orgs,
        args.deals_per_org,
        loaded.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(client);
    let _ = connection.await;
    Ok(())
}
