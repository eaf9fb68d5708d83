//! Re-migrating: the api schema is rebuilt, so nothing stale survives and the
//! request role can still call everything. V5 and V6: what they do with the
//! rows they find.

use std::{
    future::poll_fn,
    sync::{Arc, Mutex},
};

use serde_json::json;
use tokio_postgres::AsyncMessage;

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

const V5: &str = include_str!("../../sql/migrations/V5__email_key.sql");
const V6: &str = include_str!("../../sql/migrations/V6__unicode_space.sql");

/// The CREATE statement of a repeatable file (what follows its comments).
fn statement(file: &'static str) -> &'static str {
    &file[file.find("CREATE OR REPLACE FUNCTION").expect("a function")..]
}

/// app.trim_space (in CHECKs) and app.email_key (in a unique index) are
/// created by V5 and then again by their repeatable files on every migrate:
/// the two texts must be the same, or every migrate would silently change
/// what existing rows were checked and indexed with.
#[test]
fn the_repeatable_text_helpers_are_the_ones_v5_built_on() {
    for (name, file) in [
        (
            "00_text.sql",
            include_str!("../../sql/functions/00_text.sql"),
        ),
        (
            "01_email_key.sql",
            include_str!("../../sql/functions/01_email_key.sql"),
        ),
    ] {
        assert!(
            V5.contains(statement(file)),
            "sql/functions/{name} is not what V5__email_key.sql created: a change needs a \
             versioned migration that replaces the function and rechecks or reindexes its users"
        );
    }
}

const V24: &str = include_str!("../../sql/migrations/V24__write_cost.sql");

/// app.search_tokens cut the words V11 (and, with the same query in
/// PL/pgSQL, V24) and every later write stored in crm.contact_search_words;
/// a search cuts its term with the repeatable file's text. The two must be
/// the same, or stored words and searched ones would be cut differently.
#[test]
fn the_search_tokens_are_the_ones_the_stored_words_were_cut_by() {
    assert!(
        V24.contains(statement(include_str!(
            "../../sql/functions/02_search_tokens.sql"
        ))),
        "sql/functions/02_search_tokens.sql is not what V24__write_cost.sql created: a \
         change needs a versioned migration that replaces the function and rebuilds \
         crm.contact_search_words"
    );
}

/// A superuser connection that collects the notices and warnings it gets.
async fn connect_noting(url: &str) -> (tokio_postgres::Client, Arc<Mutex<Vec<String>>>) {
    let (client, mut connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connecting to the test cluster");
    let notices = Arc::new(Mutex::new(Vec::new()));
    let sink = notices.clone();
    tokio::spawn(async move {
        while let Some(Ok(message)) = poll_fn(|cx| connection.poll_message(cx)).await {
            if let AsyncMessage::Notice(notice) = message {
                sink.lock().unwrap().push(notice.message().to_owned());
            }
        }
    });
    (client, notices)
}

/// V5 replaces the index on lower(email) by one on app.email_key(email).
/// Addresses that were distinct before but are one account now cannot both
/// keep theirs: V5 refuses, naming the users, and changes nothing.
#[tokio::test]
async fn v5_refuses_addresses_that_become_one_account_and_names_them() {
    let app = TestApp::spawn().await;
    let sql = app.sql().await;
    // The database as V4 left it, with users that lower() keeps apart.
    sql.batch_execute(
        "DROP INDEX crm.users_email_taken;
         CREATE UNIQUE INDEX users_email_taken ON crm.users (lower(email));
         INSERT INTO crm.users (id, email, hashed_password, name) VALUES
           ('00000000-0000-0000-0000-000000000001', 'victim@example.com', '$argon2id$x', 'Victim'),
           ('00000000-0000-0000-0000-000000000002', U&'\\FF56ictim@Example.com', '$argon2id$x', 'Fullwidth'),
           ('00000000-0000-0000-0000-000000000003', U&'e\\0301mile@example.com', '$argon2id$x', 'Decomposed'),
           ('00000000-0000-0000-0000-000000000004', U&'\\00E9mile@example.com', '$argon2id$x', 'Composed'),
           ('00000000-0000-0000-0000-000000000005', 'ok@example.com', '$argon2id$x', 'Alone');",
    )
    .await
    .unwrap();
    sql.batch_execute("BEGIN").await.unwrap();
    let err = sql.batch_execute(V5).await.expect_err("V5 must refuse");
    sql.batch_execute("ROLLBACK").await.unwrap();
    let db = err.as_db_error().expect("a database error");
    assert!(
        db.message().starts_with(
            "V5__email_key: 4 users in 2 groups have addresses that app.email_key makes one"
        ),
        "{}",
        db.message()
    );
    let detail = db.detail().unwrap_or_default();
    for group in [
        "00000000-0000-0000-0000-000000000001, 00000000-0000-0000-0000-000000000002",
        "00000000-0000-0000-0000-000000000003, 00000000-0000-0000-0000-000000000004",
    ] {
        assert!(detail.contains(group), "{detail}");
    }
    assert!(!detail.contains("-000000000005"), "{detail}");
    assert!(db
        .hint()
        .unwrap_or_default()
        .contains("GROUP BY 1 HAVING count(*) > 1"));
    let index = "SELECT pg_get_indexdef('crm.users_email_taken'::regclass)";
    assert!(app
        .value::<String>(index, &[])
        .await
        .contains("(lower(email))"));

    // Once each key has one user, V5 builds the index on the key.
    sql.batch_execute(
        "UPDATE crm.users SET email = 'other@example.com' WHERE id = '00000000-0000-0000-0000-000000000002';
         DELETE FROM crm.users WHERE id = '00000000-0000-0000-0000-000000000004';",
    )
    .await
    .unwrap();
    sql.batch_execute(&format!("BEGIN; {V5} COMMIT;"))
        .await
        .unwrap();
    assert_eq!(
        app.value::<String>(index, &[]).await,
        "CREATE UNIQUE INDEX users_email_taken ON crm.users USING btree (app.email_key(email))"
    );
}

/// V6: existing names and titles are trimmed of every Unicode White_Space
/// character; one that is blank once trimmed gets a placeholder (reported in
/// a WARNING); the CHECKs keep their names and refuse blank ones after.
#[tokio::test]
async fn v6_trims_existing_names_and_replaces_blank_ones() {
    let (app, ann) = TestApp::with_user("ann").await;
    let contact = ann.contact("Client").await;
    let deal = ann.deal(contact, "Deal", "10").await;
    let task = ann.task(deal, "Call", 1).await;
    let (sql, notices) = connect_noting(&app.db_url).await;
    // The CHECKs as V2 made them (btrim), and the rows they let in.
    sql.batch_execute(&format!(
        "ALTER TABLE crm.organizations DROP CONSTRAINT organizations_name_invalid,
           ADD CONSTRAINT organizations_name_invalid CHECK (length(btrim(name)) BETWEEN 1 AND 200);
         ALTER TABLE crm.users DROP CONSTRAINT users_name_invalid,
           ADD CONSTRAINT users_name_invalid CHECK (length(btrim(name)) BETWEEN 1 AND 200);
         ALTER TABLE crm.contacts DROP CONSTRAINT contacts_name_invalid,
           ADD CONSTRAINT contacts_name_invalid CHECK (length(btrim(name)) BETWEEN 1 AND 200);
         ALTER TABLE crm.deals DROP CONSTRAINT deals_title_invalid,
           ADD CONSTRAINT deals_title_invalid CHECK (length(btrim(title)) BETWEEN 1 AND 200);
         ALTER TABLE crm.tasks DROP CONSTRAINT tasks_title_invalid,
           ADD CONSTRAINT tasks_title_invalid CHECK (length(btrim(title)) BETWEEN 1 AND 200);
         UPDATE crm.organizations SET name = E'\\tAcme\\n' WHERE id = '{org}';
         UPDATE crm.users SET name = U&'\\3000' WHERE id = '{user}';
         UPDATE crm.contacts SET name = U&'\\00A0Ada\\2028', updated_at = '2020-01-01' WHERE id = '{contact}';
         UPDATE crm.deals SET title = E'\\t\\n', updated_at = '2020-01-01' WHERE id = '{deal}';
         UPDATE crm.tasks SET title = 'Call' WHERE id = '{task}';",
        org = ann.org_id,
        user = ann.id,
    ))
    .await
    .unwrap();

    sql.batch_execute(&format!("BEGIN; {V6} COMMIT;"))
        .await
        .unwrap();

    let row = sql
        .query_one(
            "SELECT (SELECT name FROM crm.organizations WHERE id = $1),
                    (SELECT name FROM crm.users WHERE id = $2),
                    (SELECT name || ' ' || (updated_at > '2020-01-01') FROM crm.contacts WHERE id = $3),
                    (SELECT title || ' ' || (updated_at > '2020-01-01') FROM crm.deals WHERE id = $4),
                    (SELECT title FROM crm.tasks WHERE id = $5)",
            &[&ann.org_id, &ann.id, &contact, &deal, &task],
        )
        .await
        .unwrap();
    let got: Vec<String> = (0..5).map(|i| row.get(i)).collect();
    assert_eq!(
        got,
        [
            "Acme",
            "Unnamed user",
            "Ada true",
            "Untitled deal true",
            "Call"
        ]
    );
    let notices = notices.lock().unwrap().join("\n");
    assert!(
        notices.contains(
            "V6__unicode_space: crm.organizations.name: 1 trimmed, 0 of them blank and now 'Unnamed organization'; \
             crm.users.name: 1 trimmed, 1 of them blank and now 'Unnamed user'; \
             crm.contacts.name: 1 trimmed, 0 of them blank and now 'Unnamed contact'; \
             crm.deals.title: 1 trimmed, 1 of them blank and now 'Untitled deal'"
        ),
        "{notices}"
    );
    // The rule triggers are back on, RLS is forced again, and the CHECKs are the new ones.
    let forced: Vec<bool> = app
        .column(
            "SELECT relforcerowsecurity FROM pg_class WHERE oid = ANY ('{crm.organizations,crm.contacts,crm.deals,crm.tasks}'::regclass[])",
            &[],
        )
        .await;
    assert_eq!(forced, [true; 4]);
    let disabled: i64 = app
        .value(
            "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgenabled = 'D'",
            &[],
        )
        .await;
    assert_eq!(disabled, 0);
    ann.patch(
        &format!("/api/v1/tasks/{task}"),
        json!({"title": "\u{3000}"}),
    )
    .await
    .problem(400, "tasks_title_invalid");
}

/// app.email_key folds by its own table, so a database whose LC_CTYPE is
/// "C" (where lower() folds only ASCII) gives every address the same key as
/// the C.UTF-8 databases of the tests.
#[tokio::test]
async fn the_email_key_does_not_depend_on_the_database_locale() {
    let app = TestApp::spawn().await;
    let admin = std::env::var("TEST_DATABASE_URL").unwrap();
    let name = format!("t_c_{}", uuid::Uuid::new_v4().simple());
    crate::helpers::connect(&format!("{admin}/postgres"))
        .await
        .batch_execute(&format!(
            "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"
        ))
        .await
        .unwrap();
    let c_url = format!("{admin}/{name}");
    minicrm::db::migrate::run(&c_url).await.unwrap();
    let c = crate::helpers::connect(&c_url).await;
    let utf8 = app.sql().await;
    let query = "SELECT array_agg(app.email_key(e) ORDER BY n), array_agg(lower(e) ORDER BY n)
                   FROM unnest($1::text[]) WITH ORDINALITY AS a(e, n)";
    let emails: Vec<&str> = vec![
        "Victim@Example.COM",
        "V\u{130}CTIM@example.com",
        "\u{ff36}\u{ff29}\u{ff23}\u{ff34}\u{ff29}\u{ff2d}@example.com",
        "\u{c9}MILE@example.com",
        "E\u{301}MILE@example.com",
        "\u{3a3}\u{38a}\u{3a3}\u{3a5}\u{3a6}\u{39f}\u{3a3}@example.com",
        "STRA\u{1e9e}E@example.com",
        "\u{414}\u{41c}\u{418}\u{422}\u{420}\u{418}\u{419}@example.com",
    ];
    let keys =
        |row: tokio_postgres::Row| (row.get::<_, Vec<String>>(0), row.get::<_, Vec<String>>(1));
    let (c_keys, c_lower) = keys(c.query_one(query, &[&emails]).await.unwrap());
    let (utf8_keys, utf8_lower) = keys(utf8.query_one(query, &[&emails]).await.unwrap());
    // lower() does depend on it, which is why the key does not use it.
    assert_ne!(c_lower, utf8_lower);
    assert_eq!(c_keys, utf8_keys);
    assert_eq!(
        c_keys,
        [
            "victim@example.com",
            "victim@example.com",
            "victim@example.com",
            "\u{e9}mile@example.com",
            "\u{e9}mile@example.com",
            "\u{3c3}\u{3af}\u{3c3}\u{3c5}\u{3c6}\u{3bf}\u{3c3}@example.com",
            "stra\u{df}e@example.com",
            "\u{434}\u{43c}\u{438}\u{442}\u{440}\u{438}\u{439}@example.com",
        ]
    );
    drop(c);
    crate::helpers::connect(&format!("{admin}/postgres"))
        .await
        .batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .await
        .unwrap();
}
