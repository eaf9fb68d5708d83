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
