//! Security: no secrets in logs, SQL metacharacters are plain data, error
//! bodies leak neither SQL nor other tenants, tampered tokens are refused.
//! (Forged, expired, `alg: none` and wrong-type tokens: see auth.rs.)

use serde_json::{json, Value};
use uuid::Uuid;

use crate::{
    helpers::{
        add_member, base64url_decode, base64url_encode, id_of, today_plus, Req, TestApp,
        TestResponse, PASSWORD,
    },
    observability::Logs,
};

#[tokio::test]
async fn logs_never_contain_passwords_or_tokens() {
    let (logs, _guard) = Logs::capture();
    let app = TestApp::spawn().await;
    let password = "Pw-7c1e5b9a-secret";
    let wrong = "Wrong-4d2f8a-guess";
    let shape = "Shape-9e3b17-secret";
    let mut secrets: Vec<String> = vec![password.into(), wrong.into(), shape.into()];
    let mut ids = Vec::new();
    // Each request carries a request id of its own, which must be logged.
    let mut named = |name: &str, req: Req| {
        let id = format!("req-{name}-{}", Uuid::new_v4().simple());
        ids.push(id.clone());
        req.header("X-Request-Id", &id)
    };
    let post = |path: &str, body: Value| app.post(path).json(body);
    let (login_path, refresh_path) = ("/api/v1/auth/login", "/api/v1/auth/refresh");

    let body = json!({"email": "ann@example.com", "password": password, "name": "Ann", "organization_name": "Acme"});
    let res = named("register", post("/api/v1/auth/register", body)).await;
    let registered = res.ok(201).clone();
    let body = json!({"email": "ann@example.com", "password": password});
    let login = named("login", post(login_path, body)).await.ok(200).clone();
    let body = json!({"refresh_token": login["refresh_token"]});
    let refreshed = named("refresh", post(refresh_path, body))
        .await
        .ok(200)
        .clone();
    let body = json!({"email": "ann@example.com", "password": wrong});
    let res = named("failed-login", post(login_path, body)).await;
    res.problem(401, "invalid_credentials");
    let body = json!({"email": "ann@example.com", "password": shape, "remember": true});
    let res = named("bad-shape", post(login_path, body)).await;
    res.problem(400, "validation_failed");
    // A spent refresh token: reuse revokes the login.
    let body = json!({"refresh_token": login["refresh_token"]});
    let res = named("reuse", post(refresh_path, body)).await;
    res.problem(401, "refresh_token_reused");
    let me = |token: &str| app.get("/api/v1/users/me").token(token);
    let access = refreshed["access_token"].as_str().unwrap();
    named("me", me(access)).await.ok(200);
    let res = named("bad-token", me("not.a.jwt-secret-looking-thing")).await;
    res.problem(401, "invalid_token");
    let body = json!({"refresh_token": refreshed["refresh_token"]});
    let res = named("logout", post("/api/v1/auth/logout", body)).await;
    res.ok(204);

    for body in [&registered, &login, &refreshed] {
        for field in ["access_token", "refresh_token"] {
            secrets.push(body[field].as_str().unwrap().to_owned());
        }
    }
    secrets.push("not.a.jwt-secret-looking-thing".into());
    secrets.push(app.state.config.jwt_secret.clone().unwrap());

    let text = logs.text();
    assert!(!text.is_empty(), "nothing was captured");
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{secret} is in the logs:\n{text}"
        );
        // Nor any recognisable part of one (a JWT's payload or signature).
        for part in secret.split('.').filter(|p| p.len() >= 16) {
            assert!(!text.contains(part), "{part} is in the logs:\n{text}");
        }
    }
    let lower = text.to_lowercase();
    for header in ["authorization", "bearer ", "password\":\""] {
        assert!(!lower.contains(header), "{header} is in the logs:\n{text}");
    }
    for id in &ids {
        assert!(
            text.contains(id.as_str()),
            "request id {id} is not logged:\n{text}"
        );
    }
}

/// Strings that would break naively built SQL, LIKE patterns or JSON.
const NASTY: [&str; 9] = [
    "Robert'); DROP TABLE crm.deals;--",
    "%_\\",
    "\"quoted\" and 'single'",
    "Zoë 山田 🚀 ñ ß",
    "$1",
    "'; SELECT pg_sleep(10); --",
    "\\x27 \\' \\\\ E'\\n'",
    "{\"json\": [1, null]}",
    "a ; b -- c /* d */ e",
];

#[tokio::test]
async fn sql_metacharacters_are_stored_and_returned_verbatim() {
    let (app, ann) = TestApp::with_user("ann").await;
    let org = ann.org_id;
    for nasty in NASTY {
        // Contacts: name, email, phone; read back after writing.
        let email = format!("o'brien+%_{}@example.com", Uuid::new_v4().simple());
        let contact = ann
            .create(
                "/api/v1/contacts",
                json!({"name": nasty, "email": email, "phone": nasty}),
            )
            .await;
        assert_eq!(
            (&contact["name"], &contact["email"], &contact["phone"]),
            (&json!(nasty), &json!(email), &json!(nasty))
        );
        let contact_id = id_of(&contact);
        let read = ann.read(&format!("/api/v1/contacts/{contact_id}")).await;
        assert_eq!(read["name"], nasty);

        // Deals: title on create and on update.
        let deal = ann.create("/api/v1/deals", json!({"contact_id": contact_id, "title": nasty, "amount": "1.00", "currency": "EUR"}))
            .await;
        assert_eq!(deal["title"], nasty);
        let deal_id = id_of(&deal);
        let renamed = format!("{nasty} (2)");
        ann.patch(
            &format!("/api/v1/deals/{deal_id}"),
            json!({"title": renamed}),
        )
        .await
        .ok(200);
        assert_eq!(
            ann.read(&format!("/api/v1/deals/{deal_id}")).await["title"],
            renamed.as_str()
        );

        // Tasks: title and description.
        let task = ann.create("/api/v1/tasks", json!({"deal_id": deal_id, "title": nasty, "description": nasty, "due_date": today_plus(1)}))
            .await;
        assert_eq!(
            (&task["title"], &task["description"]),
            (&json!(nasty), &json!(nasty))
        );

        // A comment on the timeline.
        ann.post(
            &format!("/api/v1/deals/{deal_id}/activities"),
            json!({"type": "comment", "payload": {"text": nasty}}),
        )
        .await
        .ok(201);
        let timeline = ann.timeline(deal_id).await;
        assert_eq!(timeline[0]["payload"]["text"], nasty, "{timeline:?}");

        // The organization's name.
        let res = ann
            .no_org()
            .patch(
                &format!("/api/v1/organizations/{org}"),
                json!({"name": nasty}),
            )
            .await;
        assert_eq!(res.ok(200)["name"], nasty);
    }
    // A user's name at registration.
    let res = app.post_json("/api/v1/auth/register", json!({"email": "bobby@example.com", "password": "correct horse", "name": NASTY[0], "organization_name": NASTY[1]}))
        .await;
    let body = res.ok(201);
    assert_eq!(
        (&body["user"]["name"], &body["organization"]["name"]),
        (&json!(NASTY[0]), &json!(NASTY[1]))
    );

    // Nothing was executed: every table is still there, every row was written.
    let sql = app.sql().await;
    let count = |table: &'static str| {
        let sql = &sql;
        async move {
            sql.query_one(&format!("SELECT count(*) FROM crm.{table}"), &[])
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(count("contacts").await, NASTY.len() as i64);
    assert_eq!(count("deals").await, NASTY.len() as i64);
    assert_eq!(count("tasks").await, NASTY.len() as i64);
    assert_eq!(count("users").await, 2);
}

#[tokio::test]
async fn contact_search_matches_metacharacters_literally() {
    let (_, ann) = TestApp::with_user("ann").await;
    let names = [
        "100% sure",
        "100 percent",
        "a_b",
        "axb",
        "O'Brien",
        "OBrien",
        "back\\slash",
        "backslash",
        "%_\\",
        "$1 dollar",
        "Zoë 山田",
        "Robert'); DROP TABLE crm.contacts;--",
    ];
    for name in names {
        ann.contact(name).await;
    }
    let search = |term: &str| {
        let q: String = form_urlencoded::byte_serialize(term.as_bytes()).collect();
        let path = format!("/api/v1/contacts?page_size=100&search={q}");
        let ann = &ann;
        async move {
            let body = ann.read(&path).await;
            let mut found: Vec<String> = body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_owned())
                .collect();
            found.sort();
            assert_eq!(body["total"], found.len(), "{body}");
            found
        }
    };
    let cases: [(&str, &[&str]); 12] = [
        ("%", &["%_\\", "100% sure"]),
        ("_", &["%_\\", "a_b"]),
        ("'", &["O'Brien", "Robert'); DROP TABLE crm.contacts;--"]),
        ("\\", &["%_\\", "back\\slash"]),
        ("%_\\", &["%_\\"]),
        // Words begin a word: "0" is in the middle of "100".
        ("0%", &[]),
        ("a_b", &["a_b"]),
        ("o'b", &["O'Brien"]),
        ("$1", &["$1 dollar"]),
        ("山田", &["Zoë 山田"]),
        ("'); DROP", &["Robert'); DROP TABLE crm.contacts;--"]),
        ("' OR '1'='1", &[]),
    ];
    for (term, want) in cases {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(search(term).await, want, "search {term:?}");
    }
    assert_eq!(search("").await.len(), names.len());
}

/// Words that betray SQL, the database or the server's internals.
const LEAKS: [&str; 10] = [
    "SELECT",
    "INSERT",
    "crm.",
    "violates",
    "constraint \"",
    "ERROR",
    "postgres",
    "stack",
    "panicked",
    "app.act_as",
];

#[tokio::test]
async fn error_bodies_leak_no_sql_internals_or_other_tenants() {
    let (app, ann) = TestApp::with_user("ann").await;
    let bob = app.user("bob").await;
    let carl = app.user("carl").await;
    let (a, b) = (ann.org_id, bob.org_id);
    let ann_contact = ann.contact("Ann's client").await;
    let ann_deal = ann.deal(ann_contact, "Ann's deal", "10").await;
    let bob_contact = bob.contact("Bob's client").await;
    let bob_deal = bob.deal(bob_contact, "Bob's deal", "10").await;
    let bob_task = bob.task(bob_deal, "Bob's task", 1).await;
    let foreign: Vec<String> = [bob.id, b, bob_contact, bob_deal, bob_task]
        .iter()
        .map(Uuid::to_string)
        .collect();
    add_member(&ann, &carl, "member").await;

    let deals = "/api/v1/deals";
    let deal = format!("/api/v1/deals/{ann_deal}");
    let mut answers: Vec<(&str, TestResponse)> = Vec::new();
    macro_rules! answer {
        ($what:expr, $req:expr) => {
            answers.push(($what, $req.await))
        };
    }
    // Unique violations.
    answer!(
        "unique: email",
        app.post("/api/v1/auth/register").json(json!({"email": "ANN@example.com", "password": "correct horse", "name": "Ann", "organization_name": "X"}))
    );
    answer!(
        "conflict: already a member",
        ann.no_org().post(
            &format!("/api/v1/organizations/{a}/members"),
            json!({"email": carl.email, "role": "member"})
        )
    );
    // Foreign keys, pointing into the other tenant.
    answer!(
        "fk: contact of another tenant",
        ann.post(
            deals,
            json!({"contact_id": bob_contact, "title": "x", "amount": "1", "currency": "EUR"})
        )
    );
    answer!(
        "fk: owner of another tenant",
        ann.post("/api/v1/contacts", json!({"name": "x", "owner_id": bob.id}))
    );
    answer!(
        "fk: deal of another tenant",
        ann.post(
            "/api/v1/tasks",
            json!({"deal_id": bob_deal, "title": "x", "due_date": today_plus(1)})
        )
    );
    answer!(
        "fk: move a deal to another tenant's contact",
        ann.patch(&deal, json!({"contact_id": bob_contact}))
    );
    answer!(
        "fk: give a deal to a non-member",
        ann.patch(&deal, json!({"owner_id": bob.id}))
    );
    answer!(
        "another tenant's deal",
        ann.get(&format!("/api/v1/deals/{bob_deal}"))
    );
    answer!(
        "another tenant's task",
        ann.patch(
            &format!("/api/v1/tasks/{bob_task}"),
            json!({"title": "mine"})
        )
    );
    answer!(
        "another tenant's timeline",
        ann.post(
            &format!("/api/v1/deals/{bob_deal}/activities"),
            json!({"type": "comment", "payload": {"text": "hi"}})
        )
    );
    answer!("another tenant's organization", ann.in_org(b).get(deals));
    answer!(
        "another tenant's members",
        ann.no_org()
            .get(&format!("/api/v1/organizations/{b}/members"))
    );
    answer!(
        "filter by another tenant's ids",
        carl.in_org(a).get(&format!(
            "{deals}?owner_id={}&contact_id={bob_contact}",
            bob.id
        ))
    );
    // Check violations.
    answer!(
        "check: currency",
        ann.post(
            deals,
            json!({"contact_id": ann_contact, "title": "x", "amount": "1", "currency": "eur"})
        )
    );
    answer!(
        "check: email",
        ann.post(
            "/api/v1/contacts",
            json!({"name": "x", "email": "not an email"})
        )
    );
    answer!(
        "check: blank name",
        ann.no_org().patch(
            &format!("/api/v1/organizations/{a}"),
            json!({"name": "   "})
        )
    );
    answer!(
        "check: long title",
        ann.patch(&deal, json!({"title": "x".repeat(201)}))
    );
    answer!(
        "check: negative amount",
        ann.patch(&deal, json!({"amount": "-1"}))
    );
    answer!(
        "rule: won without amount",
        ann.patch(&deal, json!({"status": "won", "amount": "0"}))
    );
    // Bad enums.
    answer!(
        "enum: status in a body",
        ann.patch(&deal, json!({"status": "bogus'; --"}))
    );
    answer!(
        "enum: status in a query",
        ann.get(&format!("{deals}?status=bogus"))
    );
    answer!(
        "enum: role",
        ann.no_org().post(
            &format!("/api/v1/organizations/{a}/members"),
            json!({"email": carl.email, "role": "god"})
        )
    );
    // Bad UUIDs.
    answer!("uuid: path", ann.get("/api/v1/deals/not-a-uuid"));
    answer!(
        "uuid: header",
        app.get(deals)
            .token(&ann.access_token)
            .header("X-Organization-Id", "1' OR '1'='1")
    );
    answer!(
        "uuid: body",
        ann.post(
            deals,
            json!({"contact_id": "nope", "title": "x", "amount": "1", "currency": "EUR"})
        )
    );
    answer!("uuid: query", ann.get(&format!("{deals}?owner_id=nope")));
    // Values the statement itself refuses.
    answer!(
        "statement: NUL in a string",
        ann.post("/api/v1/contacts", json!({"name": "nul\u{0}byte"}))
    );
    answer!(
        "statement: huge amount",
        ann.patch(&deal, json!({"amount": "99999999999999999999.99"}))
    );
    answer!(
        "shape: far-off date",
        ann.post(
            "/api/v1/tasks",
            json!({"deal_id": ann_deal, "title": "x", "due_date": "+262143-12-31"})
        )
    );
    answer!(
        "shape: due_before out of range",
        ann.get("/api/v1/tasks?due_before=99999-01-01")
    );
    // Requests that never reach the database.
    answer!(
        "malformed json",
        app.post(deals)
            .token(&ann.access_token)
            .org(a)
            .raw("application/json", "{\"title\": 'x'}")
    );
    answer!("no route", app.get("/api/v1/users/me'--"));

    for (what, res) in &answers {
        let body = res.body.to_string();
        assert!(
            res.status.is_client_error(),
            "{what}: {} {body}",
            res.status
        );
        assert_eq!(
            res.headers["content-type"], "application/problem+json",
            "{what}"
        );
        for leak in LEAKS {
            assert!(!body.contains(leak), "{what}: {leak:?} in {body}");
        }
        for id in &foreign {
            assert!(
                !body.contains(id.as_str()),
                "{what}: another tenant's id in {body}"
            );
        }
    }
    // Nothing the refused requests tried happened.
    let sql = app.sql().await;
    let row = sql
        .query_one(
            "SELECT (SELECT count(*) FROM crm.deals WHERE organization_id = $1),
                    (SELECT count(*) FROM crm.contacts WHERE organization_id = $1),
                    (SELECT title FROM crm.tasks WHERE id = $2)",
            &[&a, &bob_task],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, i64>(0),
            row.get::<_, i64>(1),
            row.get::<_, String>(2)
        ),
        (1, 1, "Bob's task".to_owned())
    );
}

#[tokio::test]
async fn a_token_with_a_tampered_payload_is_refused() {
    let (app, ann) = TestApp::with_user("ann").await;
    let bob = app.user("bob").await;
    let me = |token: String| {
        let app = &app;
        async move { app.get("/api/v1/users/me").token(&token).send().await }
    };
    assert_eq!(
        me(ann.access_token.clone()).await.ok(200)["id"],
        ann.id.to_string()
    );

    let parts: Vec<&str> = ann.access_token.split('.').collect();
    assert_eq!(parts.len(), 3);
    let mut claims: Value = serde_json::from_slice(&base64url_decode(parts[1])).unwrap();
    assert_eq!(claims["sub"], ann.id.to_string());
    let tampered = |claims: &Value| {
        format!(
            "{}.{}.{}",
            parts[0],
            base64url_encode(claims.to_string().as_bytes()),
            parts[2]
        )
    };
    // Another user's id, the original signature kept.
    claims["sub"] = json!(bob.id);
    me(tampered(&claims)).await.problem(401, "invalid_token");
    // A longer life, the original signature kept.
    claims["sub"] = json!(ann.id);
    let exp = claims["exp"].as_i64().unwrap();
    claims["exp"] = json!(exp + 365 * 24 * 3600);
    me(tampered(&claims)).await.problem(401, "invalid_token");
    // A flipped signature bit.
    let mut signature = base64url_decode(parts[2]);
    signature[0] ^= 1;
    me(format!(
        "{}.{}.{}",
        parts[0],
        parts[1],
        base64url_encode(&signature)
    ))
    .await
    .problem(401, "invalid_token");
}

/// Issue #9, finding 2: the per-email attempt limit counts by the database's
/// key of the address (`app.email_key`, the key of the unique index), so no
/// spelling that reaches the account gets a budget of its own. Rust's
/// `to_lowercase` made `vİctim@…` (İ, U+0130) a new key while PostgreSQL
/// found `victim@…` with it: 10 more guesses per spelling.
#[tokio::test]
async fn every_spelling_of_an_address_shares_one_attempt_budget() {
    let (app, victim) = TestApp::with_user("victim").await;
    assert_eq!(victim.email, "victim@example.com");
    let login = |email: &str, password: &str| {
        app.post_json(
            "/api/v1/auth/login",
            json!({"email": email, "password": password}),
        )
    };
    // A spelling that the database takes for the account logs into it, and
    // spends the account's budget (10 a minute).
    let res = login("v\u{130}ctim@example.com", PASSWORD).await;
    res.ok(200);
    assert_eq!(res.headers["ratelimit-remaining"], "9");
    for _ in 0..9 {
        login("victim@example.com", "wrong horse")
            .await
            .problem(401, "invalid_credentials");
    }
    // Spent: every other spelling of it waits, even with the right password.
    let spellings = [
        "victim@example.com",
        "v\u{130}ctim@example.com", // İ
        "V\u{130}CTIM@EXAMPLE.COM", // İ in upper case
        "v\u{131}ctim@example.com", // ı
        "\u{ff56}\u{ff49}\u{ff43}\u{ff54}\u{ff49}\u{ff4d}@example.com", // fullwidth
        "vic\u{200b}tim@example.com", // a zero-width space
        "\u{3000}Victim@Example.com\u{a0}", // U+3000, NBSP
    ];
    for email in spellings {
        let res = login(email, PASSWORD).await;
        assert_eq!(res.status, 429, "{email:?}: {}", res.body);
        res.problem(429, "rate_limited");
    }
    // Registering a spelling of it waits too (before any password is hashed).
    let body = json!({"email": "v\u{130}ctim@example.com", "password": PASSWORD,
                      "name": "Mallory", "organization_name": "Mallory Inc"});
    let res = app.post_json("/api/v1/auth/register", body).await;
    res.problem(429, "rate_limited");
    // A spelling of another account is another budget.
    let res = login("v\u{130}ctor@example.com", PASSWORD).await;
    res.problem(401, "invalid_credentials");
    assert_eq!(res.headers["ratelimit-remaining"], "9");
    assert_eq!(
        app.value::<i64>("SELECT count(*) FROM crm.users", &[])
            .await,
        1
    );
}

/// Issue #9, finding 4: a name or title of nothing but Unicode white space
/// (tabs, newlines, NBSP, U+3000, ...) is blank, on create and on rename,
/// everywhere; and names are stored trimmed of it (btrim stripped U+0020 only).
#[tokio::test]
async fn names_of_nothing_but_white_space_are_blank() {
    let (app, ann) = TestApp::with_user("ann").await;
    let contact = ann.contact("Client").await;
    let deal = ann.deal(contact, "Deal", "10").await;
    let task = ann.task(deal, "Call", 1).await;
    let org = format!("/api/v1/organizations/{}", ann.org_id);
    let blanks = [
        ("a tab", "\t"),
        ("a newline", "\n"),
        ("NBSP", "\u{a0}"),
        ("U+3000", "\u{3000}"),
        ("mixed", "\t\n\u{a0} \u{3000}\u{2003}\u{2028}\r"),
    ];
    let mut wrong = Vec::new();
    let mut n = 0;
    for (what, blank) in blanks {
        n += 1;
        let email = format!("blank{n}@example.com");
        let writes: Vec<(&str, TestResponse, &str)> = vec![
            ("contact create", ann.post("/api/v1/contacts", json!({"name": blank})).await, "contacts_name_invalid"),
            ("contact rename", ann.patch(&format!("/api/v1/contacts/{contact}"), json!({"name": blank})).await, "contacts_name_invalid"),
            ("deal create", ann.post("/api/v1/deals", json!({"contact_id": contact, "title": blank, "amount": "1", "currency": "EUR"})).await, "deals_title_invalid"),
            ("deal rename", ann.patch(&format!("/api/v1/deals/{deal}"), json!({"title": blank})).await, "deals_title_invalid"),
            ("task create", ann.post("/api/v1/tasks", json!({"deal_id": deal, "title": blank, "due_date": today_plus(1)})).await, "tasks_title_invalid"),
            ("task rename", ann.patch(&format!("/api/v1/tasks/{task}"), json!({"title": blank})).await, "tasks_title_invalid"),
            ("organization create", ann.no_org().post("/api/v1/organizations", json!({"name": blank})).await, "organizations_name_invalid"),
            ("organization rename", ann.no_org().patch(&org, json!({"name": blank})).await, "organizations_name_invalid"),
            ("register: user name", app.post_json("/api/v1/auth/register", json!({"email": email, "password": PASSWORD, "name": blank, "organization_name": "Org"})).await, "users_name_invalid"),
            ("comment", ann.post(&format!("/api/v1/deals/{deal}/activities"), json!({"type": "comment", "payload": {"text": blank}})).await, "comment_text_required"),
        ];
        for (write, res, code) in writes {
            if (res.status.as_u16(), res.body["code"].as_str()) != (400, Some(code)) {
                wrong.push(format!("{write} of {what}: {} {}", res.status, res.body));
            } else {
                res.problem(400, code);
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "accepted or misreported:\n  {}",
        wrong.join("\n  ")
    );
    // Nothing blank was written, nothing was renamed.
    assert_eq!(
        ann.read(&format!("/api/v1/contacts/{contact}")).await["name"],
        "Client"
    );
    assert_eq!(
        ann.read(&format!("/api/v1/deals/{deal}")).await["title"],
        "Deal"
    );
    assert_eq!(
        ann.read(&format!("/api/v1/tasks/{task}")).await["title"],
        "Call"
    );
    assert_eq!(ann.no_org().read(&org).await["name"], "ann Inc");
    assert_eq!(
        app.value::<i64>("SELECT count(*) FROM crm.users", &[])
            .await,
        1
    );

    // A name with white space around it is stored without it.
    let padded = "\tAda\n";
    let mut stored = vec![
        (
            "contact create",
            ann.create("/api/v1/contacts", json!({"name": padded}))
                .await["name"]
                .clone(),
        ),
        (
            "deal create",
            ann.create(
                "/api/v1/deals",
                json!({"contact_id": contact, "title": padded, "amount": "1", "currency": "EUR"}),
            )
            .await["title"]
                .clone(),
        ),
        (
            "task create",
            ann.create(
                "/api/v1/tasks",
                json!({"deal_id": deal, "title": padded, "due_date": today_plus(1)}),
            )
            .await["title"]
                .clone(),
        ),
        (
            "organization create",
            ann.no_org()
                .create("/api/v1/organizations", json!({"name": padded}))
                .await["name"]
                .clone(),
        ),
    ];
    for (what, path, field) in [
        (
            "contact rename",
            format!("/api/v1/contacts/{contact}"),
            "name",
        ),
        ("deal rename", format!("/api/v1/deals/{deal}"), "title"),
        ("task rename", format!("/api/v1/tasks/{task}"), "title"),
        ("organization rename", org.clone(), "name"),
    ] {
        let user = if what.starts_with("organization") {
            ann.no_org()
        } else {
            ann.clone()
        };
        user.patch(&path, json!({ field: padded })).await.ok(200);
        stored.push((what, user.read(&path).await[field].clone()));
    }
    let body = json!({"email": "ada@example.com", "password": PASSWORD,
                      "name": "\u{3000}Ada\u{a0}", "organization_name": padded});
    let registered = app
        .post_json("/api/v1/auth/register", body)
        .await
        .ok(201)
        .clone();
    stored.push(("register: user name", registered["user"]["name"].clone()));
    stored.push((
        "register: organization name",
        registered["organization"]["name"].clone(),
    ));
    let untrimmed: Vec<String> = stored
        .iter()
        .filter(|(_, value)| value != "Ada")
        .map(|(what, value)| format!("{what}: {value}"))
        .collect();
    assert!(
        untrimmed.is_empty(),
        "stored untrimmed:\n  {}",
        untrimmed.join("\n  ")
    );
}

/// app.act_as looks the membership up as the login role, before it switches
/// to minicrm_api (sql/functions/00_context.sql). Through a login that RLS
/// applies to (not a superuser, as an owner login under FORCE RLS is not),
/// the row is visible only through app.user_id, which act_as sets first:
/// members are served, non-members still get 404, tenancy holds.
#[tokio::test]
async fn a_login_under_rls_serves_members_and_refuses_the_others() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann").await;
    let bob = app.member_of(&ann, "bob", "member").await;
    let eve = app.user("eve").await;
    let contact = ann.contact("Grace").await;
    let deal = ann.deal(contact, "Big one", "1200.50").await;
    let eve_contact = eve.contact("Mallory").await;

    let login = format!("t_login_{}", Uuid::new_v4().simple());
    let sql = app.sql().await;
    sql.batch_execute(&format!(
        "CREATE ROLE {login} LOGIN NOSUPERUSER INHERIT; GRANT minicrm_api TO {login}"
    ))
    .await
    .unwrap();
    let superuser: bool = app
        .value(
            "SELECT rolsuper FROM pg_roles WHERE rolname = $1",
            &[&login],
        )
        .await;
    assert!(!superuser, "the login is not a superuser");
    let url = app
        .db_url
        .replacen("postgres://postgres@", &format!("postgres://{login}@"), 1);
    let under_rls = TestApp::with_config(minicrm::ops::config::Config::for_database(url));

    let path = format!("/api/v1/deals/{deal}");
    let direct = ann.get(&path).await.ok(200).clone();
    assert_eq!(ann.via(&under_rls).get(&path).await.ok(200), &direct);
    assert_eq!(bob.via(&under_rls).get(&path).await.ok(200), &direct);
    assert_eq!(
        ann.via(&under_rls).no_org().read("/api/v1/users/me").await["id"],
        ann.id.to_string()
    );
    // Eve is no member of Ann's organization: 404, as through the superuser login.
    eve.via(&under_rls)
        .in_org(ann.org_id)
        .get(&path)
        .await
        .problem(404, "organization_not_found");
    // In her own organization, Ann's deal does not exist and her contact does.
    eve.via(&under_rls)
        .get(&path)
        .await
        .problem(404, "deal_not_found");
    eve.via(&under_rls)
        .get(&format!("/api/v1/contacts/{eve_contact}"))
        .await
        .ok(200);
    ann.via(&under_rls)
        .get(&format!("/api/v1/contacts/{eve_contact}"))
        .await
        .problem(404, "contact_not_found");

    drop(under_rls);
    sql.batch_execute(&format!("DROP ROLE {login}"))
        .await
        .unwrap();
}
