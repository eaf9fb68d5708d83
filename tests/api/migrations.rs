//! Re-migrating: the api schema is rebuilt, so nothing stale survives and the
//! request role can still call everything.

use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn migrating_again_drops_stale_api_functions_and_keeps_grants() {
    let app = TestApp::spawn().await;
    let sql = app.sql().await;
    sql.batch_execute(
        "CREATE FUNCTION api.contacts_get(p_id uuid, p_stale boolean) RETURNS jsonb \
         LANGUAGE sql AS $$ SELECT NULL::jsonb $$",
    )
    .await
    .unwrap();

    minicrm::db::migrate::run(&app.db_url).await.unwrap();

    let stale: i64 = sql
        .query_one(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = 'api' AND p.proname = 'contacts_get'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stale, 1, "the stale overload survived the migration");
    // The request role can still call the rebuilt surface.
    let user = app.register("again").await;
    app.post("/api/v1/contacts")
        .token(&user.access_token)
        .org(user.org_id)
        .json(json!({"name": "Ada"}))
        .send()
        .await
        .ok(201);
}
