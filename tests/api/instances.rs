//! Several server instances on one database share the attempt limits
//! (counted in PostgreSQL): three instances do not allow three times the
//! attempts.

use serde_json::json;

use crate::helpers::{TestApp, PASSWORD};

#[tokio::test]
async fn three_instances_share_one_attempt_budget() {
    let first = TestApp::spawn_with(|c| c.auth_attempts_per_email = 4).await;
    let config = first.state.config.clone();
    let instances = [
        first,
        TestApp::with_config(config.clone()),
        TestApp::with_config(config),
    ];
    // Registration is attempt 1 (on the first instance).
    let user = instances[0].register("shared").await;
    // Attempts 2 to 4, one per instance: wrong passwords, each counted.
    let mut remaining = Vec::new();
    for app in &instances {
        let res = app
            .post("/api/v1/auth/login")
            .json(json!({"email": user.email, "password": "wrong password"}))
            .send()
            .await;
        res.problem(401, "invalid_credentials");
        remaining.push(
            res.headers["ratelimit-remaining"]
                .to_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(
        remaining,
        ["2", "1", "0"],
        "the instances count on one budget"
    );
    // The fifth attempt is refused whichever instance takes it, right password or not.
    for app in &instances {
        app.post("/api/v1/auth/login")
            .json(json!({"email": user.email, "password": PASSWORD}))
            .send()
            .await
            .problem(429, "rate_limited");
    }
}

/// SPEC §13: every instance's analytics cache drops an organization's
/// reports within a second of a committed deal change, whichever instance
/// or `psql` session made it (the change feed's notifications).
/// The deal writes alone do it: the announcer notifies for their events.
#[tokio::test]
async fn a_deal_written_anywhere_shows_in_every_instances_cached_analytics_within_a_second() {
    use std::time::{Duration, Instant};
    let a = TestApp::spawn_with(|c| c.cache_ttl = Duration::from_secs(600)).await;
    let b = TestApp::with_config(a.state.config.clone());
    let mut notices = crate::helpers::notices(&b).await;
    let owner = a.user("cached").await;
    // Registering writes pipeline.created: let it reach B's cache first.
    crate::helpers::notified(&mut notices, owner.org_id, "pipeline").await;
    let via_b = owner.via(&b);
    let summary = "/api/v1/analytics/deals/summary";
    let new_deals = |body: &serde_json::Value| body["new_deals"].as_i64().unwrap();
    // B computes the summary and caches it.
    let before = new_deals(&via_b.read(summary).await);
    let res = via_b.get(summary).await;
    assert_eq!(res.headers["x-cache"], "hit");

    // Until B shows `expected` new deals: how long it took.
    let shows = |expected: i64| {
        let via_b = via_b.clone();
        async move {
            let start = Instant::now();
            loop {
                if new_deals(&via_b.read(summary).await) == expected {
                    return start.elapsed();
                }
                assert!(
                    start.elapsed() < Duration::from_secs(3),
                    "B still shows the old summary"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };

    // A deal written through instance A.
    let contact = owner.contact("Ada").await;
    owner.deal(contact, "Through A", "100").await;
    let took = shows(before + 1).await;
    assert!(
        took < Duration::from_secs(1),
        "A's write showed in B after {took:?}"
    );

    // A deal written in psql, under a user context.
    let client = crate::helpers::connect(&a.db_url).await;
    client
        .batch_execute(&format!(
            "BEGIN; SELECT app.act_as('{}', '{}'); \
             INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency) \
             VALUES ('{org}', '{contact}', '{user}', 'In psql', 5, 'EUR'); COMMIT;",
            owner.id,
            owner.org_id,
            org = owner.org_id,
            user = owner.id,
        ))
        .await
        .unwrap();
    let took = shows(before + 2).await;
    assert!(
        took < Duration::from_secs(1),
        "a psql write showed in B after {took:?}"
    );
}

/// The change feed's notifications come from one announcer per database
/// (src/workers/announcer.rs), not from the writers: with two instances,
/// each instance's listener hears a commit once. When the announcer's
/// session dies, an instance takes over within about a second, tells every
/// listener "anything may have changed" (its predecessor's last moments are
/// unknown) and announces from then on.
#[tokio::test]
async fn one_instance_announces_and_another_takes_over_when_it_dies() {
    use minicrm::workers::listener::Notice;
    use std::time::Duration;
    let a = TestApp::spawn().await;
    let b = TestApp::with_config(a.state.config.clone());
    let mut on_a = crate::helpers::notices(&a).await;
    let mut on_b = crate::helpers::notices(&b).await;
    let owner = a.user("announced").await;
    crate::helpers::notified(&mut on_a, owner.org_id, "pipeline").await;
    crate::helpers::notified(&mut on_b, owner.org_id, "pipeline").await;

    // Every notice each listener hears within `window` of now.
    async fn heard(
        notices: &mut tokio::sync::broadcast::Receiver<Notice>,
        window: Duration,
    ) -> Vec<Notice> {
        let deadline = tokio::time::Instant::now() + window;
        let mut got = Vec::new();
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, notices.recv()).await {
            got.push(n);
        }
        got
    }
    let contact = format!("{}:contact", owner.org_id);
    owner.contact("Once").await;
    for notices in [&mut on_a, &mut on_b] {
        assert_eq!(
            heard(notices, Duration::from_millis(800)).await,
            [Notice::Notified(contact.as_str().into())],
            "one announcer: each listener hears the commit once"
        );
    }

    // The announcer's session ends (its backend holds the advisory lock).
    let killed: i64 = a
        .value(
            "SELECT count(pg_terminate_backend(l.pid)) FROM pg_locks l \
              WHERE l.locktype = 'advisory' AND l.granted AND l.database = \
                    (SELECT oid FROM pg_database WHERE datname = current_database()) \
                AND ((l.classid::bigint << 32) | l.objid::bigint) = $1",
            &[&minicrm::workers::announcer::LOCK],
        )
        .await;
    assert_eq!(killed, 1, "one session holds the announcer lock");
    for notices in [&mut on_a, &mut on_b] {
        assert!(
            heard(notices, Duration::from_secs(3))
                .await
                .contains(&Notice::Reset),
            "the new announcer (or the reconnected listener) resets every listener"
        );
    }
    owner.contact("After").await;
    for notices in [&mut on_a, &mut on_b] {
        assert_eq!(
            heard(notices, Duration::from_millis(800)).await,
            [Notice::Notified(contact.as_str().into())],
            "a new announcer: each listener hears the commit once"
        );
    }
}
