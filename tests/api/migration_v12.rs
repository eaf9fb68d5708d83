//! V12 (pipelines) on a database of the old schema, not only on an empty one:
//! the versioned migrations before V12 and the repeatable files of the commit
//! before V12 (kept in tests/fixtures/before_v12), seeded by that commit's own
//! `private.seed` and its API functions (so its triggers wrote the timeline
//! and the analytics deltas), then `minicrm migrate`. Every deal must land in
//! its organization's "Sales" in the stage it had, with nothing else changed.
//!
//! The size is `MIGRATION_TEST_ORGS` organizations × `MIGRATION_TEST_DEALS`
//! deals (default 3 × 1,000); the test prints how long the migration took,
//! e.g. for the README's figure at 1,000,000 deals:
//! `MIGRATION_TEST_ORGS=1 MIGRATION_TEST_DEALS=1000000 scripts/test v12_ -- --nocapture`.

use std::time::Instant;

use uuid::Uuid;

use crate::helpers::connect;

/// The repeatable SQL (sql/functions, sql/policies) of commit f4d1656, the
/// last before V12, kept in tests/fixtures/before_v12 so that the test needs
/// no git history (CI may run on a shallow clone). Its newest versioned
/// migration was V10.
const OLD_VERSION: u32 = 10;

fn old_repeatable_files() -> Vec<(String, String)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/before_v12");
    let mut files = Vec::new();
    for dir in ["functions", "policies"] {
        let mut names: Vec<_> = std::fs::read_dir(root.join(dir))
            .expect("tests/fixtures/before_v12")
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for path in names {
            let text = std::fs::read_to_string(&path).unwrap();
            files.push((
                format!("sql/{dir}/{}", path.file_name().unwrap().to_string_lossy()),
                text,
            ));
        }
    }
    files
}

fn env_or(name: &str, default: i32) -> i32 {
    std::env::var(name)
        .ok()
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

/// Every deal as text, every column but pipeline_id, the stage as text (its
/// type changes), in a fixed order: (count, md5).
const DEALS: &str = "SELECT count(*), md5(coalesce(string_agg(concat_ws('|', organization_id, id, contact_id, owner_id,
         title, amount, currency, status, stage::text, created_at, updated_at, amount_cents), ',' ORDER BY organization_id, id), ''))
       FROM crm.deals";
const ACTIVITIES: &str =
    "SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY organization_id, id), ''))
       FROM crm.activities t";
/// Totals plus pending deltas per organization × status × stage × currency.
const TOTALS: &str = "SELECT coalesce(string_agg(concat_ws('|', o, st, sg, c, n, a), ',' ORDER BY o, st, sg, c), '')
       FROM (SELECT organization_id AS o, status::text AS st, stage::text AS sg, currency AS c, sum(deals) AS n, sum(amount) AS a
               FROM (SELECT organization_id, status, stage, currency, deals, amount FROM crm.deal_totals
                     UNION ALL
                     SELECT organization_id, status, stage, currency, deals, amount FROM crm.deal_totals_delta) x
              GROUP BY 1, 2, 3, 4 HAVING sum(deals) <> 0) t";

async fn digest(client: &tokio_postgres::Client, sql: &str) -> String {
    let row = client.query_one(sql, &[]).await.expect(sql);
    (0..row.len())
        .map(|i| {
            row.try_get::<_, i64>(i)
                .map(|n| n.to_string())
                .unwrap_or_else(|_| row.get::<_, String>(i))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn v12_moves_every_old_deal_into_sales_and_changes_nothing_else() {
    let (orgs, deals) = (
        env_or("MIGRATION_TEST_ORGS", 3),
        env_or("MIGRATION_TEST_DEALS", 1000),
    );
    let old_version = OLD_VERSION;
    let files = old_repeatable_files();
    assert!(files.len() > 10, "the repeatable files before V12");

    let admin =
        std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL: run with scripts/test");
    let name = format!("m_{}", Uuid::new_v4().simple());
    connect(&format!("{admin}/postgres"))
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = format!("{admin}/{name}");
    let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);

    // The old schema, as `minicrm migrate` of that commit left it.
    minicrm::db::migrate::versioned_up_to(&mut client, old_version)
        .await
        .unwrap();
    minicrm::db::migrate::repeatable(
        &mut client,
        files.iter().map(|(n, s)| (n.as_str(), s.as_str())),
    )
    .await
    .unwrap();
    let old_stage_type: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_type WHERE typname = 'deal_stage'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(old_stage_type, 1, "the old schema has the stage enum");

    // Old data: the old seed, and a user's deals through the old API, moved
    // and changed so that the old triggers wrote timeline rows and deltas.
    client
        .batch_execute("SET statement_timeout = 0; SET client_min_messages = warning")
        .await
        .unwrap();
    let started = Instant::now();
    client
        .execute(
            "SELECT count(*) FROM private.seed(p_orgs => $1, p_deals_per_org => $2, p_password_hash => '$argon2id$v=19$x')",
            &[&orgs, &deals],
        )
        .await
        .unwrap();
    client
        .batch_execute(
            "BEGIN;
             SELECT api.auth_register('old@example.com', '$argon2id$v=19$x', 'Old', 'Old Inc', '\\x01', now() + interval '1 day')
               FROM app.act_as(NULL);
             COMMIT;
             BEGIN;
             SELECT app.act_as(u.id, m.organization_id) FROM crm.users u JOIN crm.organization_members m ON m.user_id = u.id
              WHERE u.email = 'old@example.com';
             CREATE TEMP TABLE c ON COMMIT DROP AS SELECT (api.contacts_create('Client') ->> 'id')::uuid AS id;
             CREATE TEMP TABLE d ON COMMIT DROP AS
               SELECT (api.deals_create(c.id, 'Deal ' || n, 100 * n, 'EUR') ->> 'id')::uuid AS id, n
                 FROM c, generate_series(1, 8) n;
             SELECT api.deals_update(p_id => d.id, p_status => 'in_progress', p_stage => 'proposal', p_title => NULL,
                                     p_amount => NULL, p_currency => NULL, p_contact_id => NULL, p_owner_id => NULL)
               FROM d WHERE n <= 4;
             SELECT api.deals_update(p_id => d.id, p_status => 'won', p_stage => 'closed', p_title => NULL,
                                     p_amount => NULL, p_currency => NULL, p_contact_id => NULL, p_owner_id => NULL)
               FROM d WHERE n <= 2;
             COMMIT;
             ANALYZE;",
        )
        .await
        .unwrap();
    let seeded = started.elapsed();
    let before = (
        digest(&client, DEALS).await,
        digest(&client, ACTIVITIES).await,
        digest(&client, TOTALS).await,
    );
    let deltas: i64 = client
        .query_one("SELECT count(*) FROM crm.deal_totals_delta", &[])
        .await
        .unwrap()
        .get(0);
    assert!(deltas > 0, "the old triggers wrote analytics deltas");

    // V12 (and whatever else is pending before it), then the rest of `migrate`.
    let started = Instant::now();
    minicrm::db::migrate::versioned_up_to(&mut client, 12)
        .await
        .unwrap();
    let v12 = started.elapsed();
    minicrm::db::migrate::run(&url).await.unwrap();
    let total = started.elapsed();
    println!(
        "V12 on {} deals ({orgs} organizations, seeded in {:.1} s): {:.2} s, migrate in all {:.2} s",
        orgs as i64 * deals as i64 + 8,
        seeded.as_secs_f64(),
        v12.as_secs_f64(),
        total.as_secs_f64()
    );

    let after = (
        digest(&client, DEALS).await,
        digest(&client, ACTIVITIES).await,
        digest(&client, TOTALS).await,
    );
    assert_eq!(
        after.0, before.0,
        "every deal is there with the same columns and its stage"
    );
    assert_eq!(after.1, before.1, "no timeline row was written or changed");
    assert_eq!(after.2, before.2, "the analytics totals are the same");
    assert!(before
        .0
        .starts_with(&format!("{} ", orgs as i64 * deals as i64 + 8)));

    let one = |sql: &'static str| {
        let client = &client;
        async move { digest(client, sql).await }
    };
    assert_eq!(
        one("SELECT count(*) FROM crm.organizations o
              WHERE (SELECT string_agg(p.name || '@' || p.position, ',') FROM crm.pipelines p WHERE p.organization_id = o.id) = 'Sales@1'")
        .await,
        one("SELECT count(*) FROM crm.organizations").await,
        "every organization has one pipeline, Sales"
    );
    assert_eq!(
        one("SELECT string_agg(DISTINCT s, ',') FROM (SELECT string_agg(key || ':' || position || ':' || probability, ' ' ORDER BY position) s
               FROM crm.pipeline_stages GROUP BY pipeline_id) x")
        .await,
        "qualification:1:10 proposal:2:30 negotiation:3:60 closed:4:100",
        "with the four stages"
    );
    assert_eq!(
        one("SELECT count(*) FROM crm.deals d JOIN crm.pipelines p ON (p.organization_id, p.id) = (d.organization_id, d.pipeline_id)
              WHERE p.name = 'Sales'")
        .await,
        one("SELECT count(*) FROM crm.deals").await,
        "every deal is in its organization's Sales"
    );
    assert_eq!(
        one("SELECT count(*) FROM crm.deal_totals t JOIN crm.pipelines p ON (p.organization_id, p.id) = (t.organization_id, t.pipeline_id)
              WHERE p.name = 'Sales'")
        .await,
        one("SELECT count(*) FROM crm.deal_totals").await,
        "the totals count in Sales"
    );
    assert_eq!(
        one("SELECT count(*) FROM pg_type WHERE typname = 'deal_stage'").await,
        "0",
        "the enum is gone"
    );
    assert_eq!(
        one("SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'D'").await,
        "0",
        "no trigger is left disabled"
    );
    assert_eq!(
        one("SELECT count(*) FROM pg_class WHERE relnamespace = 'crm'::regnamespace AND relkind = 'r'
              AND relrowsecurity AND NOT relforcerowsecurity AND relname <> 'users'")
        .await,
        "0",
        "RLS is forced again on every tenant table"
    );

    // The migrated data obeys the new rules: R5 by position, pipeline_changed.
    client
        .batch_execute(
            "BEGIN;
             SELECT app.act_as(u.id, m.organization_id) FROM crm.users u JOIN crm.organization_members m ON m.user_id = u.id
              WHERE u.email = 'old@example.com';
             SELECT api.pipelines_create('Renewals', '[{\"key\": \"due\", \"name\": \"Due\", \"probability\": 50}]');
             UPDATE crm.deals SET stage = 'negotiation' WHERE title = 'Deal 5';
             UPDATE crm.deals SET pipeline_id = (SELECT id FROM crm.pipelines WHERE name = 'Renewals'), stage = NULL
              WHERE title = 'Deal 6';
             COMMIT;",
        )
        .await
        .unwrap();
    assert_eq!(
        one("SELECT string_agg(type::text, ',' ORDER BY type)
               FROM crm.activities a JOIN crm.deals d ON d.id = a.deal_id
              WHERE d.title IN ('Deal 5', 'Deal 6') AND a.type IN ('stage_changed', 'pipeline_changed')")
        .await,
        "stage_changed,pipeline_changed",
        "new moves write stage_changed and pipeline_changed"
    );
}
