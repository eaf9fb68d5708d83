//! `minicrm seed --orgs N --deals-per-org M`: demo and benchmark data,
//! generated in SQL by `private.seed` (sql/functions/90_seed.sql).

use std::time::Instant;

use anyhow::{bail, Context};

/// Every seeded user's password.
pub const DEMO_PASSWORD: &str = "demo-password";

pub struct SeedArgs {
    pub orgs: i32,
    pub deals_per_org: i32,
}

impl SeedArgs {
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut seed = SeedArgs {
            orgs: 1,
            deals_per_org: 1000,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            let n: i32 = value
                .parse()
                .with_context(|| format!("{flag} {value}: not a number"))?;
            match flag.as_str() {
                "--orgs" if (1..=10_000).contains(&n) => seed.orgs = n,
                "--deals-per-org" if (1..=10_000_000).contains(&n) => seed.deals_per_org = n,
                _ => bail!("usage: minicrm seed [--orgs 1..10000] [--deals-per-org 1..10000000]"),
            }
        }
        Ok(seed)
    }
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
            "SELECT organization_id, owner_email, deals FROM private.seed($1, $2, $3)",
            &[&args.orgs, &args.deals_per_org, &hash],
        )
        .await
        .context("seeding")?;
    let loaded = started.elapsed();
    // Fresh statistics and visibility maps: the planner and index-only scans need them.
    client
        .batch_execute(
            "VACUUM (ANALYZE) crm.organizations, crm.users, crm.organization_members, \
             crm.contacts, crm.deals, crm.tasks, crm.activities",
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
