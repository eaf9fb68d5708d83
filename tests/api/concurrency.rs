//! Concurrency: requests sent at the same time through clones of the router
//! (tokio tasks on a multi-thread runtime), and what the database makes of
//! them. A test-only audit trigger (created in the test's own database)
//! records every row update of crm.deals in lock order, as ground truth for
//! the timeline.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use axum::http::Method;
use serde_json::{json, Value};
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::helpers::{id_of, TestApp, TestResponse, TestUser};

const STAGES: [&str; 4] = ["qualification", "proposal", "negotiation", "closed"];

fn stage_rank(stage: &str) -> usize {
    STAGES
        .iter()
        .position(|s| *s == stage)
        .unwrap_or_else(|| panic!("unknown stage {stage}"))
}

/// A request that can be moved into a task.
#[derive(Clone)]
struct Call {
    method: Method,
    uri: String,
    user: TestUser,
    body: Option<Value>,
}

impl Call {
    fn new(method: Method, uri: impl Into<String>, user: &TestUser, org: Option<Uuid>) -> Self {
        let user = match org {
            Some(org) => user.in_org(org),
            None => user.no_org(),
        };
        Call {
            method,
            uri: uri.into(),
            user,
            body: None,
        }
    }
    fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }
}

async fn send(call: Call) -> TestResponse {
    let req = call.user.req(call.method, &call.uri);
    match call.body {
        Some(body) => req.json(body).await,
        None => req.await,
    }
}

/// An app whose timeouts leave room for a loaded machine: these tests are
/// about what the database makes of concurrent requests, not about latency.
async fn patient_app() -> TestApp {
    TestApp::spawn_with(|c| {
        c.pool.wait_timeout = Duration::from_secs(60);
        c.pool.statement_timeout = Duration::from_secs(60);
        c.request_timeout = Duration::from_secs(120);
    })
    .await
}

/// Opens `n` pooled connections, so a race measures requests, not connects.
async fn warm_up(user: &TestUser, org: Uuid, n: usize) {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let call = Call::new(Method::GET, "/api/v1/contacts?page_size=1", user, Some(org));
        tasks.push(tokio::spawn(send(call)));
    }
    for task in tasks {
        let res = task.await.unwrap();
        assert_eq!(res.status, 200, "warm-up: {}", answer(&res));
    }
}

fn answer(res: &TestResponse) -> String {
    format!("{} {}", res.status.as_u16(), res.body)
}

/// Installs, in this test's database only, a trigger that logs every update
/// of a deal row with the acting user. It runs after the row is locked and
/// updated, so its sequence is the order in which the updates were applied.
async fn install_deal_audit(app: &TestApp) {
    app.sql()
        .await
        .batch_execute(
            r#"
            CREATE TABLE public.deal_audit (
              seq bigserial PRIMARY KEY, deal_id uuid NOT NULL, actor uuid,
              old_status text NOT NULL, new_status text NOT NULL,
              old_stage text NOT NULL, new_stage text NOT NULL);
            CREATE FUNCTION public.deal_audit() RETURNS trigger
              LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog
              AS $$
            BEGIN
              INSERT INTO public.deal_audit (deal_id, actor, old_status, new_status, old_stage, new_stage)
              VALUES (NEW.id, nullif(current_setting('app.user_id', true), '')::uuid,
                      OLD.status::text, NEW.status::text, OLD.stage::text, NEW.stage::text);
              RETURN NULL;
            END
            $$;
            CREATE TRIGGER zz_test_deal_audit AFTER UPDATE ON crm.deals
              FOR EACH ROW EXECUTE FUNCTION public.deal_audit();
            "#,
        )
        .await
        .expect("installing the audit trigger");
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Audit {
    actor: Option<Uuid>,
    old_status: String,
    new_status: String,
    old_stage: String,
    new_stage: String,
}

async fn audit(app: &TestApp, deal: Uuid) -> Vec<Audit> {
    app.sql()
        .await
        .query(
            "SELECT actor, old_status, new_status, old_stage, new_stage
               FROM public.deal_audit WHERE deal_id = $1 ORDER BY seq",
            &[&deal],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| Audit {
            actor: r.get(0),
            old_status: r.get(1),
            new_status: r.get(2),
            old_stage: r.get(3),
            new_stage: r.get(4),
        })
        .collect()
}

/// (from, to, author) of a deal's timeline rows of one type, oldest first.
async fn changes(user: &TestUser, deal: Uuid, kind: &str) -> Vec<(String, String, Option<Uuid>)> {
    let mut rows = user.timeline(deal).await;
    let total = rows.len();
    assert!(total < 100, "the timeline has more than one page");
    rows.reverse();
    rows.iter()
        .filter(|a| a["type"] == kind)
        .map(|a| {
            (
                a["payload"]["from"].as_str().unwrap().to_owned(),
                a["payload"]["to"].as_str().unwrap().to_owned(),
                a["author_id"].as_str().map(|s| s.parse().unwrap()),
            )
        })
        .collect()
}

/// Each row's `from` is the previous row's `to`; the first starts at
/// `initial`, the last ends at `current`.
#[track_caller]
fn assert_chain(rows: &[(String, String, Option<Uuid>)], initial: &str, current: &str, what: &str) {
    let mut at = initial.to_owned();
    for (i, (from, to, _)) in rows.iter().enumerate() {
        assert_eq!(
            from, &at,
            "{what} row {i} starts from {from} but the previous row ended at {at}: {rows:?}"
        );
        assert_ne!(from, to, "{what} row {i} changes nothing: {rows:?}");
        at = to.clone();
    }
    assert_eq!(
        at, current,
        "{what}: the timeline ends at {at} but the deal is at {current}"
    );
}

/// The running totals (folded + pending deltas) agree with the deals.
async fn assert_totals_match(app: &TestApp, org: Uuid) {
    let rows = app
        .sql()
        .await
        .query(
            "WITH d AS (SELECT status, stage, currency, count(*)::bigint AS n, sum(amount) AS a
                          FROM crm.deals WHERE organization_id = $1 GROUP BY 1, 2, 3),
                  t AS (SELECT status, stage, currency, sum(deals)::bigint AS n, sum(amount) AS a
                          FROM (SELECT status, stage, currency, deals, amount FROM crm.deal_totals
                                 WHERE organization_id = $1
                                UNION ALL
                                SELECT status, stage, currency, deals, amount FROM crm.deal_totals_delta
                                 WHERE organization_id = $1) x
                         GROUP BY 1, 2, 3 HAVING sum(deals) <> 0 OR sum(amount) <> 0)
             SELECT coalesce(d.status, t.status)::text || '/' || coalesce(d.stage, t.stage)::text
                    || '/' || coalesce(d.currency, t.currency)
                    || ': deals ' || coalesce(d.n::text, '-') || ' ' || coalesce(d.a::text, '-')
                    || ', totals ' || coalesce(t.n::text, '-') || ' ' || coalesce(t.a::text, '-')
               FROM d FULL JOIN t USING (status, stage, currency)
              WHERE d.n IS DISTINCT FROM t.n OR d.a IS DISTINCT FROM t.a",
            &[&org],
        )
        .await
        .unwrap();
    let diffs: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert!(diffs.is_empty(), "analytics totals drifted: {diffs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_status_and_stage_changes_each_leave_exactly_one_timeline_row() {
    const N: usize = 32;
    const STATUSES: [&str; 4] = ["in_progress", "lost", "won", "new"];
    let app = patient_app().await;
    let owner = app.user("ann").await;
    let admin = app.member_of(&owner, "ada", "admin").await;
    let org = owner.org_id;
    let contact = owner.contact("Client").await;
    let deal = owner.deal(contact, "Big one", "1000.00").await;
    install_deal_audit(&app).await;
    warm_up(&owner, org, 16).await;

    // Owner and admin alternate (both may move a stage back, so every request
    // is allowed); statuses cycle, stages jump back and forth.
    let barrier = Arc::new(Barrier::new(N));
    let mut tasks = Vec::new();
    for i in 0..N {
        let actor = if i % 2 == 0 { &owner } else { &admin };
        let body = json!({"status": STATUSES[i % 4], "stage": STAGES[(i / 2 + i) % 4]});
        let call = Call::new(
            Method::PATCH,
            format!("/api/v1/deals/{deal}"),
            actor,
            Some(org),
        )
        .json(body.clone());
        let barrier = barrier.clone();
        let actor_id = actor.id;
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            (actor_id, body, send(call).await)
        }));
    }
    let mut requested = Vec::new();
    for task in tasks {
        let (actor, body, res) = task.await.unwrap();
        assert_eq!(res.status, 200, "PATCH {body}: {}", answer(&res));
        assert_eq!(
            (&res.body["status"], &res.body["stage"]),
            (&body["status"], &body["stage"]),
            "PATCH {body} answered {}",
            res.body
        );
        requested.push((
            Some(actor),
            body["status"].as_str().unwrap().to_owned(),
            body["stage"].as_str().unwrap().to_owned(),
        ));
    }

    // Ground truth: every request was applied exactly once, each on top of
    // the previous one (no lost update).
    let applied = audit(&app, deal).await;
    assert_eq!(applied.len(), N, "updates applied: {applied:?}");
    let mut got: Vec<_> = applied
        .iter()
        .map(|a| (a.actor, a.new_status.clone(), a.new_stage.clone()))
        .collect();
    got.sort();
    requested.sort();
    assert_eq!(
        got, requested,
        "the applied updates are not the requested ones"
    );
    let (mut status, mut stage) = ("new".to_owned(), "qualification".to_owned());
    for (i, a) in applied.iter().enumerate() {
        assert_eq!(
            (&a.old_status, &a.old_stage),
            (&status, &stage),
            "update {i} was applied to a stale row: {applied:?}"
        );
        status = a.new_status.clone();
        stage = a.new_stage.clone();
    }
    let current = owner.read(&format!("/api/v1/deals/{deal}")).await;
    assert_eq!(
        (
            current["status"].as_str().unwrap(),
            current["stage"].as_str().unwrap()
        ),
        (status.as_str(), stage.as_str())
    );

    // The timeline: one row per actual change, in order, by the right author.
    let status_rows = changes(&owner, deal, "status_changed").await;
    let stage_rows = changes(&owner, deal, "stage_changed").await;
    let want_status: Vec<_> = applied
        .iter()
        .filter(|a| a.old_status != a.new_status)
        .map(|a| (a.old_status.clone(), a.new_status.clone(), a.actor))
        .collect();
    let want_stage: Vec<_> = applied
        .iter()
        .filter(|a| a.old_stage != a.new_stage)
        .map(|a| (a.old_stage.clone(), a.new_stage.clone(), a.actor))
        .collect();
    assert!(
        want_status.len() >= 2,
        "too few status changes to mean anything"
    );
    assert_eq!(
        status_rows, want_status,
        "status_changed rows vs the applied changes"
    );
    assert_eq!(
        stage_rows, want_stage,
        "stage_changed rows vs the applied changes"
    );
    assert_chain(&status_rows, "new", &status, "status_changed");
    assert_chain(&stage_rows, "qualification", &stage, "stage_changed");
    assert_totals_match(&app, org).await;
}

/// What a manager's request was based on.
#[derive(Debug)]
enum Attempt {
    /// Straight to qualification, without looking.
    Blind,
    /// One stage back from the stage the manager had just read.
    FromSeen(&'static str),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manager_cannot_slip_a_stage_rollback_past_r5_while_the_owner_moves_forward() {
    const DEALS: usize = 6;
    const ATTEMPTS: usize = 12;
    let app = patient_app().await;
    let boss = app.user("boss").await;
    let org = boss.org_id;
    let [seller, manager] = app
        .members(&boss, [("sam", "member"), ("max", "manager")])
        .await;
    let contact = seller.contact("Client").await;
    let mut deals = Vec::new();
    for i in 0..DEALS {
        deals.push(seller.deal(contact, &format!("Deal {i}"), "100.00").await);
    }
    install_deal_audit(&app).await;
    warm_up(&boss, org, 2 * DEALS).await;

    let barrier = Arc::new(Barrier::new(2 * DEALS));
    let mut forward = Vec::new();
    let mut backward = Vec::new();
    for &deal in &deals {
        // The deal's owner moves it forward, one stage at a time.
        let b = barrier.clone();
        let calls: Vec<Call> = STAGES[1..]
            .iter()
            .map(|s| {
                Call::new(
                    Method::PATCH,
                    format!("/api/v1/deals/{deal}"),
                    &seller,
                    Some(org),
                )
                .json(json!({"stage": s}))
            })
            .collect();
        forward.push(tokio::spawn(async move {
            b.wait().await;
            let mut out = Vec::new();
            for call in calls {
                let stage = call.body.as_ref().unwrap()["stage"].clone();
                out.push((stage, send(call).await));
                tokio::task::yield_now().await;
            }
            out
        }));
        // The manager keeps trying to move it back.
        let b = barrier.clone();
        let get = Call::new(
            Method::GET,
            format!("/api/v1/deals/{deal}"),
            &manager,
            Some(org),
        );
        let patch = Call::new(
            Method::PATCH,
            format!("/api/v1/deals/{deal}"),
            &manager,
            Some(org),
        );
        backward.push(tokio::spawn(async move {
            b.wait().await;
            let mut out = Vec::new();
            for k in 0..ATTEMPTS {
                if k % 2 == 0 {
                    let call = patch.clone().json(json!({"stage": "qualification"}));
                    out.push((Attempt::Blind, send(call).await));
                } else {
                    let seen = send(get.clone()).await;
                    assert_eq!(seen.status, 200, "{}", answer(&seen));
                    let rank = stage_rank(seen.body["stage"].as_str().unwrap());
                    if rank == 0 {
                        continue;
                    }
                    let call = patch.clone().json(json!({"stage": STAGES[rank - 1]}));
                    out.push((Attempt::FromSeen(STAGES[rank]), send(call).await));
                }
            }
            out
        }));
    }

    for task in forward {
        for (stage, res) in task.await.unwrap() {
            assert_eq!(res.status, 200, "owner moving to {stage}: {}", answer(&res));
        }
    }
    let (mut refused, mut no_ops, mut wrong) = (0, 0, Vec::new());
    for task in backward {
        for (attempt, res) in task.await.unwrap() {
            let code = res.body["code"].as_str();
            match (&attempt, res.status.as_u16(), code) {
                (_, 403, Some("stage_rollback_forbidden")) => refused += 1,
                // Blind, and the deal was still at qualification: not a move back.
                (Attempt::Blind, 200, _) if res.body["stage"] == "qualification" => no_ops += 1,
                (Attempt::Blind, ..) => {
                    wrong.push(format!("straight to qualification: {}", answer(&res)))
                }
                (Attempt::FromSeen(seen), ..) => wrong.push(format!(
                    "one stage back after reading {seen}: {}",
                    answer(&res)
                )),
            }
        }
    }
    println!("manager rollbacks: {refused} refused, {no_ops} no-ops at qualification");
    assert!(
        wrong.is_empty(),
        "manager rollback attempts that were not refused: {wrong:#?}"
    );
    assert!(refused > 0, "no rollback was even attempted");

    for &deal in &deals {
        // Ground truth: no update by the manager changed the stage, and no
        // update at all moved it back.
        for a in audit(&app, deal).await {
            assert!(
                stage_rank(&a.new_stage) >= stage_rank(&a.old_stage),
                "a stage moved back: {a:?}"
            );
            if a.actor == Some(manager.id) {
                assert_eq!(
                    a.old_stage, a.new_stage,
                    "the manager changed a stage: {a:?}"
                );
            }
        }
        let rows = changes(&boss, deal, "stage_changed").await;
        for (from, to, author) in &rows {
            assert!(
                stage_rank(to) > stage_rank(from),
                "backwards stage_changed {from} → {to}"
            );
            assert_ne!(
                *author,
                Some(manager.id),
                "stage_changed {from} → {to} authored by the manager"
            );
        }
        assert_chain(&rows, "qualification", "closed", "stage_changed");
        let current = boss.read(&format!("/api/v1/deals/{deal}")).await;
        assert_eq!(current["stage"], "closed");
    }
    assert_totals_match(&app, org).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn removing_a_member_while_they_create_leaves_nothing_owned_by_a_non_member() {
    const ROUNDS: usize = 5;
    const WORKERS: usize = 6;
    const CREATES_PER_WORKER: usize = 3;
    let app = patient_app().await;
    let owner = app.user("olga").await;
    let admin = app.member_of(&owner, "adam", "admin").await;
    let org = owner.org_id;
    let shared = owner.contact("Shared client").await;
    let db = app.sql().await;

    let mut anomalies = Vec::new();
    let mut stats = Vec::new();
    for round in 0..ROUNDS {
        let leaver = app
            .member_of(&owner, &format!("leaver{round}"), "member")
            .await;
        // They own something already, so the removal has to reassign.
        let first = leaver.contact("Own client").await;
        warm_up(&owner, org, WORKERS + 1).await;

        let barrier = Arc::new(Barrier::new(WORKERS + 1));
        let mut creators = Vec::new();
        for w in 0..WORKERS {
            let b = barrier.clone();
            let calls: Vec<(&str, Call)> = (0..CREATES_PER_WORKER)
                .map(|j| {
                    if (w + j) % 2 == 0 {
                        (
                            "contacts",
                            Call::new(Method::POST, "/api/v1/contacts", &leaver, Some(org))
                                .json(json!({"name": format!("c{round}-{w}-{j}")})),
                        )
                    } else {
                        (
                            "deals",
                            Call::new(Method::POST, "/api/v1/deals", &leaver, Some(org)).json(
                                json!({"contact_id": shared, "title": format!("d{round}-{w}-{j}"),
                                       "amount": "10.00", "currency": "EUR"}),
                            ),
                        )
                    }
                })
                .collect();
            creators.push(tokio::spawn(async move {
                b.wait().await;
                let mut out = Vec::new();
                for (table, call) in calls {
                    out.push((table, send(call).await));
                }
                out
            }));
        }
        let removal = {
            let b = barrier.clone();
            let call = Call::new(
                Method::DELETE,
                format!(
                    "/api/v1/organizations/{org}/members/{}?reassign_to={}",
                    leaver.id, admin.id
                ),
                &admin,
                None,
            );
            let delay = Duration::from_millis(3 * round as u64);
            tokio::spawn(async move {
                b.wait().await;
                tokio::time::sleep(delay).await;
                send(call).await
            })
        };

        let removed = removal.await.unwrap();
        if removed.status != 204 {
            anomalies.push(format!(
                "round {round}: DELETE member with reassign_to answered {}",
                answer(&removed)
            ));
        }
        let (mut created, mut refused, mut refused_by_key) = (0, 0, 0);
        let mut created_ids = vec![("contacts", first)];
        for task in creators {
            for (table, res) in task.await.unwrap() {
                match (res.status.as_u16(), res.body["code"].as_str()) {
                    (201, _) => {
                        created += 1;
                        created_ids.push((table, id_of(&res.body)));
                    }
                    // Not a member (any more): act_as found no membership, or it
                    // did but the removal committed before the insert's foreign
                    // key check (owner_id must be a member) could lock the row.
                    (404, Some("organization_not_found")) => refused += 1,
                    (404, Some("contacts_owner_id_not_member" | "deals_owner_id_not_member")) => {
                        refused_by_key += 1
                    }
                    _ => anomalies.push(format!(
                        "round {round}: POST /{table} by the member being removed answered {}",
                        answer(&res)
                    )),
                }
            }
        }
        stats.push(format!(
            "round {round}: removal {}, {created} created, {refused} refused (organization_not_found), \
             {refused_by_key} refused by the owner_id foreign key",
            removed.status.as_u16()
        ));

        // Nothing in the organization belongs to a non-member.
        let orphans = db
            .query(
                "SELECT 'contact ' || c.id || ' of ' || c.owner_id FROM crm.contacts c
                  WHERE c.organization_id = $1 AND NOT EXISTS (SELECT 1 FROM crm.organization_members m
                         WHERE m.organization_id = c.organization_id AND m.user_id = c.owner_id)
                 UNION ALL
                 SELECT 'deal ' || d.id || ' of ' || d.owner_id FROM crm.deals d
                  WHERE d.organization_id = $1 AND NOT EXISTS (SELECT 1 FROM crm.organization_members m
                         WHERE m.organization_id = d.organization_id AND m.user_id = d.owner_id)",
                &[&org],
            )
            .await
            .unwrap();
        for row in orphans {
            anomalies.push(format!(
                "round {round}: owned by a non-member: {}",
                row.get::<_, String>(0)
            ));
        }
        let still_member: bool = db
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM crm.organization_members WHERE organization_id = $1 AND user_id = $2)",
                &[&org, &leaver.id],
            )
            .await
            .unwrap()
            .get(0);
        if removed.status == 204 {
            assert!(!still_member, "round {round}: removed, yet still a member");
            // Whatever was created before the removal now belongs to reassign_to.
            for (table, id) in created_ids {
                let owner_id: Option<Uuid> = db
                    .query_opt(
                        &format!("SELECT owner_id FROM crm.{table} WHERE organization_id = $1 AND id = $2"),
                        &[&org, &id],
                    )
                    .await
                    .unwrap()
                    .map(|r| r.get(0));
                if owner_id != Some(admin.id) {
                    anomalies.push(format!(
                        "round {round}: {table} {id} created by the member is owned by {owner_id:?}, not reassign_to"
                    ));
                }
            }
        }
    }
    println!("{}", stats.join("\n"));
    assert!(anomalies.is_empty(), "{}", anomalies.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_registrations_of_one_email_in_different_case_make_one_account() {
    // Hashing is bounded per core, so give the queued requests time.
    let app = patient_app().await;
    let variants = [
        "Casey@Example.com",
        "casey@example.com",
        "CASEY@EXAMPLE.COM",
        "cAsEy@ExAmPlE.cOm",
        "Casey@example.COM",
        "casey@EXAMPLE.com",
        "CASEY@example.com",
        "casey@Example.Com",
    ];
    let barrier = Arc::new(Barrier::new(variants.len()));
    let mut tasks = Vec::new();
    for (i, email) in variants.iter().enumerate() {
        let b = barrier.clone();
        let body = json!({"email": email, "password": "correct horse", "name": "Casey",
                          "organization_name": format!("Casey Org {i}")});
        let register = app.post("/api/v1/auth/register").json(body);
        tasks.push(tokio::spawn(async move {
            b.wait().await;
            let res = register.await;
            (res.status.as_u16(), res.body)
        }));
    }
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        let key = match status {
            201 => "201".to_owned(),
            _ => format!("{status} {}", body["code"].as_str().unwrap_or("?")),
        };
        *answers.entry(key).or_default() += 1;
    }
    let want = BTreeMap::from([
        ("201".to_owned(), 1),
        ("409 users_email_taken".to_owned(), variants.len() - 1),
    ]);
    assert_eq!(answers, want);
    let db = app.sql().await;
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM crm.users WHERE lower(email) = 'casey@example.com'),
                    (SELECT count(*) FROM crm.organizations WHERE name LIKE 'Casey Org %')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (1, 1),
        "users, organizations"
    );

    // The same race straight at the SQL function the handler calls, with the
    // first transaction held open so the others really wait on it.
    let barrier = Arc::new(Barrier::new(variants.len()));
    let mut tasks = Vec::new();
    for (i, email) in variants.iter().enumerate() {
        let email = email.replace("asey", "ora");
        let client = crate::helpers::connect(&app.db_url).await;
        let b = barrier.clone();
        tasks.push(tokio::spawn(async move {
            client.batch_execute("BEGIN").await.unwrap();
            b.wait().await;
            let token_hash = Uuid::new_v4().as_bytes().to_vec();
            let result = client
                .query_one(
                    "SELECT (api.auth_register($3, '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g',
                             'Cora', $4, $5, now() + interval '1 day'))::text FROM app.act_as($1, $2)",
                    &[&None::<Uuid>, &None::<Uuid>, &email, &format!("Cora Org {i}"), &token_hash],
                )
                .await;
            match result {
                Ok(_) => {
                    client.batch_execute("SELECT pg_sleep(0.2)").await.unwrap();
                    client.batch_execute("COMMIT").await.unwrap();
                    "ok".to_owned()
                }
                Err(e) => {
                    client.batch_execute("ROLLBACK").await.unwrap();
                    let db = e.as_db_error().unwrap_or_else(|| panic!("{e}"));
                    format!("{} {}", db.code().code(), db.constraint().unwrap_or("?"))
                }
            }
        }));
    }
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for task in tasks {
        *outcomes.entry(task.await.unwrap()).or_default() += 1;
    }
    let want = BTreeMap::from([
        ("ok".to_owned(), 1),
        ("23505 users_email_taken".to_owned(), variants.len() - 1),
    ]);
    assert_eq!(outcomes, want);
    let n: i64 = db
        .query_one(
            "SELECT count(*) FROM crm.users WHERE lower(email) = 'cora@example.com'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
}
