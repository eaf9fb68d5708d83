//! CSV export and import (SPEC §12; README, "Export" and "Import").

use std::time::Duration;

use axum::{body::Body, http::Request};
use futures_util::StreamExt;
use serde_json::{json, Value};
use tower::ServiceExt;
use uuid::Uuid;

use crate::helpers::{add_member, id_of, TestApp, TestResponse, TestUser};

/// The records of a CSV file (RFC 4180), each a list of fields; asserts CRLF
/// record ends.
fn records(csv: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = csv.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {
                assert_eq!(chars.next(), Some('\n'), "a CR that does not end a record");
                record.push(std::mem::take(&mut field));
                out.push(std::mem::take(&mut record));
            }
            (false, '\n') => panic!("a record ended by a bare LF in {csv:?}"),
            (false, c) => field.push(c),
        }
    }
    assert!(
        record.is_empty() && field.is_empty(),
        "no CRLF at the end of {csv:?}"
    );
    out
}

/// The header names exactly the record's JSON fields.
#[track_caller]
fn assert_same_fields(header: &[String], record: &Value) {
    let mut names = header.to_vec();
    names.sort();
    let keys: Vec<String> = record.as_object().unwrap().keys().cloned().collect();
    assert_eq!(names, keys, "the header names the JSON's fields");
}

/// A record's fields in the header's order, as the CSV writes them.
fn as_row(header: &[String], record: &Value) -> Vec<String> {
    header.iter().map(|name| cell(&record[name])).collect()
}

/// A JSON value as the CSV writes it: null empty, strings as they are.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// GET an export: asserts 200, the CSV headers, and returns its records.
async fn export(user: &TestUser, path: &str) -> Vec<Vec<String>> {
    let res = user.get(path).await;
    let csv = csv_of(&res, path);
    records(&csv)
}

#[track_caller]
fn csv_of(res: &TestResponse, path: &str) -> String {
    assert_eq!(res.status, 200, "{path}: {}", res.body);
    assert_eq!(res.headers["content-type"], "text/csv; charset=utf-8");
    let file = if path.contains("/deals/") {
        "deals.csv"
    } else {
        "contacts.csv"
    };
    assert_eq!(
        res.headers["content-disposition"],
        format!("attachment; filename=\"{file}\"")
    );
    res.body.as_str().expect("a CSV body").to_owned()
}

/// POST a CSV import.
async fn import(user: &TestUser, csv: impl Into<Body>) -> TestResponse {
    user.req(axum::http::Method::POST, "/api/v1/contacts/import")
        .raw("text/csv", csv)
        .await
}

async fn count_contacts(app: &TestApp, org: Uuid) -> i64 {
    app.value(
        "SELECT count(*) FROM crm.contacts WHERE organization_id = $1",
        &[&org],
    )
    .await
}

/// Every item of a list, following its cursors.
async fn all_items(user: &TestUser, path: &str) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut next = format!("{path}{sep}page_size=100");
    loop {
        let page = user.read(&next).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => next = format!("{path}{sep}page_size=100&cursor={c}"),
            None => return items,
        }
    }
}

#[tokio::test]
async fn a_contacts_export_is_the_list_as_csv() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann").await;
    let bob = app.member_of(&ann, "bob", "member").await;
    ann.create(
        "/api/v1/contacts",
        json!({"name": "Ada Lovelace", "email": "ada@example.com"}),
    )
    .await;
    // Quoting: a comma, quotes, a line break, a non-ASCII name.
    ann.create(
        "/api/v1/contacts",
        json!({"name": "Grace \"Amazing\" Hopper, Rear\nAdmiral", "phone": "+1 555"}),
    )
    .await;
    bob.create("/api/v1/contacts", json!({"name": "Émile Zoë"}))
        .await;
    // Another organization's contacts are not in it.
    let other = app.user("other").await;
    other.contact("Not yours").await;

    let list = all_items(&ann, "/api/v1/contacts").await;
    assert_eq!(list.len(), 3);
    let rows = export(&ann, "/api/v1/contacts/export").await;
    let header = rows[0].clone();
    assert_eq!(
        header,
        [
            "id",
            "organization_id",
            "owner_id",
            "name",
            "email",
            "phone",
            "external_id",
            "created_at",
            "updated_at",
            "version",
            "owner_email"
        ],
        "the JSON's fields in the schema's order, then owner_email"
    );
    assert_same_fields(&header[..header.len() - 1], &list[0]);
    assert_eq!(rows.len(), 4);
    for (row, item) in rows[1..].iter().zip(&list) {
        let mut expected = as_row(&header[..header.len() - 1], item);
        let owner = if item["owner_id"] == json!(bob.id) {
            &bob.email
        } else {
            &ann.email
        };
        expected.push(owner.clone());
        assert_eq!(row, &expected, "in the list's order, as the JSON has them");
    }
    assert_eq!(rows[2][3], "Grace \"Amazing\" Hopper, Rear\nAdmiral");
    assert_eq!(rows[1][4], "", "null is an empty field");
    // The raw text: quoted where needed, CRLF record ends, LF kept inside quotes.
    let raw = ann.get("/api/v1/contacts/export").await;
    let raw = raw.body.as_str().unwrap();
    assert!(raw.contains(",\"Grace \"\"Amazing\"\" Hopper, Rear\nAdmiral\",,+1 555,"));
    assert!(raw.starts_with(
        "id,organization_id,owner_id,name,email,phone,external_id,created_at,updated_at,version,owner_email\r\n"
    ));

    // The filters: search and owner, as on the list.
    let found = export(&ann, "/api/v1/contacts/export?search=lovel").await;
    assert_eq!(found.len(), 2);
    assert_eq!(found[1][3], "Ada Lovelace");
    let bobs = export(
        &ann,
        &format!("/api/v1/contacts/export?owner_id={}", bob.id),
    )
    .await;
    assert_eq!(bobs.len(), 2);
    assert_eq!(bobs[1][3], "Émile Zoë");
    let none = export(&ann, "/api/v1/contacts/export?search=nobody").await;
    assert_eq!(none, vec![header.clone()], "no match: the header alone");
    // Anyone in the organization may export; a member filters by themselves only.
    assert_eq!(export(&bob, "/api/v1/contacts/export").await.len(), 4);
    bob.get(&format!("/api/v1/contacts/export?owner_id={}", ann.id))
        .await
        .problem(403, "role_forbidden");
    // Not a member: 404.
    other
        .in_org(ann.org_id)
        .get("/api/v1/contacts/export")
        .await
        .problem(404, "organization_not_found");
}

#[tokio::test]
async fn bad_export_filters_are_problems_before_any_csv() {
    let (app, ann) = TestApp::with_user("ann").await;
    ann.contact("C").await;
    let cases = [
        ("/api/v1/contacts/export?page=1", "invalid_query_parameter"),
        (
            "/api/v1/contacts/export?cursor=x",
            "invalid_query_parameter",
        ),
        (
            "/api/v1/contacts/export?owner_id=nope",
            "invalid_query_parameter",
        ),
        (
            "/api/v1/contacts/export?search=a+b+c+d+e+f+g+h+i+j+k+l+m+n+o+p+q",
            "invalid_query_parameter",
        ),
        (
            "/api/v1/deals/export?status=bogus",
            "invalid_query_parameter",
        ),
        (
            "/api/v1/deals/export?order_by=owner",
            "invalid_query_parameter",
        ),
        ("/api/v1/deals/export?order=up", "invalid_query_parameter"),
        (
            "/api/v1/deals/export?min_amount=1.234",
            "invalid_query_parameter",
        ),
        (
            "/api/v1/deals/export?page_size=10",
            "invalid_query_parameter",
        ),
        (
            "/api/v1/deals/export?stage=nowhere",
            "stage_not_in_pipeline",
        ),
    ];
    for (path, code) in cases {
        let res = ann.get(path).await;
        assert_eq!(res.status, 400, "{path}: {}", res.body);
        res.problem(400, code);
    }
    app.get("/api/v1/deals/export")
        .send()
        .await
        .problem(401, "unauthenticated");
    ann.no_org()
        .get("/api/v1/deals/export")
        .await
        .problem(400, "organization_header_missing");
    // Every connection went back to the pool (none was left mid-transaction).
    tokio::time::sleep(Duration::from_millis(100)).await;
    let status = app.state.db.status();
    assert_eq!(status.size, status.available, "{status:?}");
}

#[tokio::test]
async fn a_deals_export_has_the_lists_filters_and_order() {
    let (_app, ann) = TestApp::with_user("ann").await;
    let c1 = ann.contact("C1").await;
    let c2 = ann.contact("C2").await;
    for (contact, title, amount) in [
        (c1, "Small", "10.00"),
        (c1, "Big", "5000.50"),
        (c2, "Mid", "300.00"),
        (c2, "Zero", "0"),
    ] {
        ann.deal(contact, title, amount).await;
    }
    let won = ann.deal(c2, "Won one", "70").await;
    ann.patch(
        &format!("/api/v1/deals/{won}"),
        json!({"status": "won", "stage": "closed", "expected_close_date": "2030-01-31"}),
    )
    .await
    .ok(200);
    for query in [
        "",
        "?order_by=amount&order=asc",
        "?order_by=title",
        "?order_by=updated_at&order=asc",
        "?status=new&min_amount=10&max_amount=1000",
        "?status=won&status=lost",
        "&stage=closed",
        "?pipeline_id=PIPELINE&stage=qualification",
        "?contact_id=C1&order_by=amount",
        "?owner_id=ME",
    ] {
        let pipeline = ann.read(&format!("/api/v1/deals/{won}")).await["pipeline_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let query = query
            .replace("PIPELINE", &pipeline)
            .replace("C1", &c1.to_string())
            .replace("ME", &ann.id.to_string())
            .replacen('&', "?", usize::from(query.starts_with('&')));
        let list = all_items(&ann, &format!("/api/v1/deals{query}")).await;
        let rows = export(&ann, &format!("/api/v1/deals/export{query}")).await;
        let header = rows[0].clone();
        assert_eq!(
            header,
            [
                "id",
                "organization_id",
                "contact_id",
                "owner_id",
                "title",
                "amount",
                "currency",
                "status",
                "pipeline_id",
                "stage",
                "expected_close_date",
                "closed_at",
                "external_id",
                "created_at",
                "updated_at",
                "version"
            ]
        );
        if let Some(first) = list.first() {
            assert_same_fields(&header, first);
        }
        let expected: Vec<Vec<String>> = list.iter().map(|d| as_row(&header, d)).collect();
        assert_eq!(rows[1..], expected[..], "{query}: the list, in its order");
    }
    let all = export(&ann, "/api/v1/deals/export?order_by=amount&order=desc").await;
    assert_eq!(all.len(), 6);
    assert_eq!(all[1][4], "Big");
    assert_eq!(all[1][5], "5000.50");
    let won_row = all.iter().find(|r| r[4] == "Won one").unwrap();
    assert_eq!(won_row[10], "2030-01-31");
    assert!(won_row[11].ends_with('Z'), "closed_at as the JSON has it");
}

#[tokio::test]
async fn an_import_creates_contacts_in_the_files_order() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann").await;
    let bob = app.member_of(&ann, "bob", "member").await;
    let csv = "\u{feff}name,email,phone,owner_email\r\n\
               \"Lovelace, Ada\",ada@example.com,,\r\n\
               \tGrace Hopper ,,+1 555,BOB@example.com\r\n\
               \"Line\nBreak\",,,\r\n";
    let res = import(&ann, csv).await;
    assert_eq!(res.ok(200), &json!({"created": 3, "updated": 0}));
    let list = ann.read("/api/v1/contacts").await;
    let items = list["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["Lovelace, Ada", "Grace Hopper", "Line\nBreak"],
        "trimmed, in the file's order"
    );
    assert_eq!(items[0]["email"], "ada@example.com");
    assert_eq!(items[0]["phone"], Value::Null);
    assert_eq!(
        items[0]["owner_id"],
        json!(ann.id),
        "no owner_email: the caller"
    );
    assert_eq!(
        items[1]["owner_id"],
        json!(bob.id),
        "owner_email, by the email key"
    );
    // The words are searchable, as for any contact.
    assert_eq!(ann.read("/api/v1/contacts?search=hop").await["total"], 1);
    // The header's columns in any order, LF line ends, no BOM, charset given.
    let res = ann
        .req(axum::http::Method::POST, "/api/v1/contacts/import")
        .raw("text/csv; charset=utf-8", "phone,name\n1,One\n2,Two\n")
        .await;
    assert_eq!(res.ok(200), &json!({"created": 2, "updated": 0}));
    assert_eq!(count_contacts(&app, ann.org_id).await, 5);
    // A member imports contacts of their own.
    let res = import(
        &bob,
        "name,owner_email\r\nMine,bob@example.com\r\nAlso mine,\r\n",
    )
    .await;
    assert_eq!(res.ok(200)["created"], 2);
}

#[tokio::test]
async fn a_bad_file_is_a_clear_400_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann").await;
    ann.contact("Existing").await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", b"".to_vec(), "csv_empty"),
        ("a header only", b"name,email\r\n".to_vec(), "csv_no_rows"),
        (
            "unknown column",
            b"name,nickname\r\nA,a\r\n".to_vec(),
            "csv_unknown_column",
        ),
        (
            "duplicate column",
            b"name,email,name\r\nA,a@x.io,B\r\n".to_vec(),
            "csv_duplicate_column",
        ),
        (
            "unclosed quote",
            b"name\r\n\"A\r\nB\r\n".to_vec(),
            "csv_bad_quoting",
        ),
        (
            "a quote in a bare field",
            b"name\r\nA\"B\r\n".to_vec(),
            "csv_bad_quoting",
        ),
        (
            "text after a quote",
            b"name,email\r\n\"A\"x,\r\n".to_vec(),
            "csv_bad_quoting",
        ),
        ("a bare CR", b"name\rA\r\n".to_vec(), "csv_bad_quoting"),
        (
            "not UTF-8",
            b"name\r\nJos\xe9\r\n".to_vec(),
            "csv_invalid_encoding",
        ),
        (
            "a UTF-16 file",
            "name\r\nA\r\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect(),
            "csv_invalid_encoding",
        ),
        (
            "a field too many",
            b"name,email\r\nA,a@x.io,x\r\n".to_vec(),
            "csv_field_count",
        ),
        (
            "a field short",
            b"name,email\r\nA\r\n".to_vec(),
            "csv_field_count",
        ),
    ];
    for (what, body, code) in cases {
        let res = import(&ann, body).await;
        assert_eq!(res.status, 400, "{what}: {}", res.body);
        res.problem(400, code);
    }
    let res = import(&ann, "name\r\nA\"B\r\n").await;
    assert_eq!(res.field(400, "csv_bad_quoting"), "line 2");
    let res = import(&ann, "name,email\r\nA,a@x.io\r\n\"B\nb\",\r\nC\r\n").await;
    assert_eq!(
        res.field(400, "csv_field_count"),
        "row 4",
        "rows as a spreadsheet numbers them"
    );
    let res = import(&ann, "name,nickname\r\nA,a\r\n").await;
    assert_eq!(res.field(400, "csv_unknown_column"), "header: nickname");

    // Content types: text/csv only, UTF-8 only.
    for content_type in [
        "application/json",
        "text/plain",
        "text/csv; charset=latin1",
        "application/vnd.ms-excel",
    ] {
        let res = ann
            .req(axum::http::Method::POST, "/api/v1/contacts/import")
            .raw(content_type, "name\r\nA\r\n")
            .await;
        res.problem(400, "unsupported_content_type");
    }
    let res = ann
        .req(axum::http::Method::POST, "/api/v1/contacts/import")
        .await;
    res.problem(400, "unsupported_content_type");

    // Limits: 50,000 rows pass the reader, 50,001 do not; 10 MiB + 1 byte is 413.
    let rows = format!("name\r\n{}", "A\r\n".repeat(50_001));
    import(&ann, rows).await.problem(400, "csv_too_many_rows");
    let mut big = b"name\r\n".to_vec();
    big.resize(10 * 1024 * 1024 + 1, b'a');
    import(&ann, big).await.problem(413, "body_too_large");
    assert_eq!(count_contacts(&app, ann.org_id).await, 1, "nothing written");
}

#[tokio::test]
async fn a_413_does_not_wait_for_the_whole_body() {
    let (_app, ann) = TestApp::with_user("ann").await;
    // A body that announces 10 MiB + 1 byte and never sends them: refused
    // on its Content-Length alone.
    let (_tx, body) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(1);
    let body = Body::from_stream(tokio_stream_from(body));
    let res = tokio::time::timeout(
        Duration::from_secs(5),
        ann.req(axum::http::Method::POST, "/api/v1/contacts/import")
            .header("content-length", &(10 * 1024 * 1024 + 1).to_string())
            .raw("text/csv", body)
            .send(),
    )
    .await
    .expect("answered without reading the body");
    res.problem(413, "body_too_large");
}

fn tokio_stream_from<T: Send + 'static>(
    mut rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

#[tokio::test]
async fn invalid_rows_are_listed_and_reject_the_whole_file() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann").await;
    let bob = app.member_of(&ann, "bob", "member").await;
    // Someone of another organization: not a member here.
    let stranger = app.user("stranger").await;
    let csv = format!(
        "name,email,phone,owner_email\r\n\
         Fine,fine@example.com,,\r\n\
         Bad email,not-an-email,,\r\n\
         ,nobody@example.com,,\r\n\
         \"  \",,,\r\n\
         Long phone,,{},\r\n\
         Stranger's,,,{}\r\n\
         Unknown owner,,,ghost@example.com\r\n\
         Also fine,,,\r\n",
        "1".repeat(51),
        stranger.email
    );
    let res = import(&ann, csv).await;
    let problem = res.problem(400, "import_invalid");
    assert_eq!(
        problem["errors"],
        json!([
            {"field": "row 3: email", "message": "contacts_email_invalid: a value is not valid"},
            {"field": "row 4: name", "message": "value_required: a required value is missing"},
            {"field": "row 5: name", "message": "contacts_name_invalid: a value is not valid"},
            {"field": "row 6: phone", "message": "contacts_phone_invalid: a value is not valid"},
            {"field": "row 7: owner_email", "message": "owner_email_not_member: no member of the organization has this email address"},
            {"field": "row 8: owner_email", "message": "owner_email_not_member: no member of the organization has this email address"},
        ])
    );
    assert_eq!(
        problem["detail"],
        "6 of 8 rows are not valid; nothing was imported"
    );
    assert_eq!(count_contacts(&app, ann.org_id).await, 0, "nothing written");
    assert_eq!(count_contacts(&app, stranger.org_id).await, 0);

    // Roles (SPEC §3): a member may not create contacts for someone else.
    let res = import(
        &bob,
        format!(
            "name,owner_email\r\nMine,{}\r\nAnn's,{}\r\n",
            bob.email, ann.email
        ),
    )
    .await;
    assert_eq!(
        res.problem(400, "import_invalid")["errors"],
        json!([{"field": "row 3: owner_email", "message": "role_forbidden: members may only create or hold their own records"}])
    );
    assert_eq!(count_contacts(&app, ann.org_id).await, 0);

    // At most 100 rows are listed.
    let csv = format!("name,email\r\n{}", "X,bad\r\n".repeat(150));
    let res = import(&ann, csv).await;
    let problem = res.problem(400, "import_invalid");
    assert_eq!(problem["errors"].as_array().unwrap().len(), 100);
    assert_eq!(problem["errors"][99]["field"], "row 101: email");
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .starts_with("at least 100 rows"));
    assert_eq!(count_contacts(&app, ann.org_id).await, 0);
}

/// `n` deals of one contact, written with the database's own function.
async fn many_deals(app: &TestApp, user: &TestUser, n: i32) {
    let contact = user.contact("Bulk").await;
    app.sql()
        .await
        .query_one(
            "SELECT count(api.deals_create(p_contact_id => $3, p_title => 'Deal ' || i,
                                          p_amount => i, p_currency => 'EUR'))
               FROM app.act_as($1, $2), generate_series(1, $4) i",
            &[&user.id, &user.org_id, &contact, &n],
        )
        .await
        .unwrap();
}

fn export_request(user: &TestUser, path: &str) -> Request<Body> {
    Request::get(path)
        .header("authorization", format!("Bearer {}", user.access_token))
        .header("x-organization-id", user.org_id.to_string())
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn an_export_is_one_snapshot_while_deals_change() {
    let (app, ann) = TestApp::with_user("ann").await;
    many_deals(&app, &ann, 10_000).await;
    let response = app
        .router
        .clone()
        .oneshot(export_request(
            &ann,
            "/api/v1/deals/export?order_by=amount&order=asc",
        ))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut stream = response.into_body().into_data_stream();
    let mut csv = stream.next().await.unwrap().unwrap().to_vec();
    assert!(csv.len() < 2_000_000, "streamed, not sent whole");
    // While the export runs, every deal changes, in one committed transaction
    // and then one by one.
    let sql = app.sql().await;
    sql.batch_execute(&format!(
        "BEGIN; SELECT app.act_as('{}', '{}');
         UPDATE crm.deals SET title = 'Changed' WHERE organization_id = '{}'; COMMIT;",
        ann.id, ann.org_id, ann.org_id
    ))
    .await
    .unwrap();
    let writer = {
        let ann = ann.clone();
        let deals: Vec<Uuid> = app
            .column(
                "SELECT id FROM crm.deals WHERE organization_id = $1 ORDER BY amount DESC LIMIT 50",
                &[&ann.org_id],
            )
            .await;
        tokio::spawn(async move {
            for deal in deals {
                ann.patch(&format!("/api/v1/deals/{deal}"), json!({"amount": "1.00"}))
                    .await
                    .ok(200);
            }
        })
    };
    while let Some(chunk) = stream.next().await {
        csv.extend_from_slice(&chunk.unwrap());
    }
    writer.await.unwrap();
    let rows = records(std::str::from_utf8(&csv).unwrap());
    assert_eq!(rows.len(), 10_001);
    assert!(
        rows[1..].iter().all(|r| r[4].starts_with("Deal ")),
        "every row as it was when the export began"
    );
    let amounts: Vec<f64> = rows[1..].iter().map(|r| r[5].parse().unwrap()).collect();
    assert!(
        amounts.windows(2).all(|w| w[0] <= w[1]),
        "in order, with none moved"
    );
    assert_eq!(amounts.last(), Some(&10_000.0));
    // And the export after it sees the changes.
    let after = export(&ann, "/api/v1/deals/export?order_by=amount&order=asc").await;
    assert!(after[1..].iter().all(|r| r[4] == "Changed"));
}

#[tokio::test]
async fn a_client_that_goes_away_frees_the_connection() {
    let (app, ann) = TestApp::with_user("ann").await;
    many_deals(&app, &ann, 10_000).await;
    let copies = "SELECT count(*) FROM pg_stat_activity
                   WHERE datname = current_database() AND query LIKE 'COPY%'";
    let response = app
        .router
        .clone()
        .oneshot(export_request(&ann, "/api/v1/deals/export"))
        .await
        .unwrap();
    let mut body = response.into_body().into_data_stream();
    let first = body.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    assert_eq!(
        app.value::<i64>(copies, &[]).await,
        1,
        "the COPY waits for the client"
    );
    // The body is dropped (the client disconnected): the statement is
    // cancelled and its connection closed.
    drop(body);
    let mut gone = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if app.value::<i64>(copies, &[]).await == 0 {
            gone = true;
            break;
        }
    }
    assert!(gone, "the COPY is still running");
    // The pool is whole again, and the next export works.
    assert_eq!(export(&ann, "/api/v1/deals/export").await.len(), 10_001);
}

#[tokio::test]
async fn export_import_export_gives_the_same_file_in_another_organization() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann").await;
    let bob = app.member_of(&ann, "bob", "manager").await;
    ann.create(
        "/api/v1/contacts",
        json!({"name": "Ada, \"the first\"", "email": "ada@example.com", "phone": "+44 1"}),
    )
    .await;
    bob.create("/api/v1/contacts", json!({"name": "Bob's\nfriend"}))
        .await;
    import(&ann, "name,external_id\r\nWith a key,crm-7\r\n")
        .await
        .ok(200);
    ann.create(
        "/api/v1/contacts",
        json!({"name": "Zoë", "email": "zoe@example.com"}),
    )
    .await;
    let first = ann.get("/api/v1/contacts/export").await;
    let first = csv_of(&first, "/api/v1/contacts/export");

    // A second organization of Ann's, where Bob is a member too.
    let org2 = id_of(
        &ann.create("/api/v1/organizations", json!({"name": "Two"}))
            .await,
    );
    let ann2 = ann.in_org(org2);
    add_member(&ann2_owner(&ann, org2), &bob, "member").await;
    let res = import(&ann2, first.clone()).await;
    assert_eq!(res.ok(200), &json!({"created": 4, "updated": 0}));
    let second = ann2.get("/api/v1/contacts/export").await;
    let second = csv_of(&second, "/api/v1/contacts/export");

    // The same file, but for the ids, the organization and the timestamps
    // (the records are new); the owners are the same people.
    let strip = |csv: &str| -> Vec<Vec<String>> {
        records(csv)
            .into_iter()
            .map(|r| {
                r.into_iter()
                    .enumerate()
                    .filter(|(i, _)| ![0, 1, 7, 8].contains(i))
                    .map(|(_, f)| f)
                    .collect()
            })
            .collect()
    };
    assert_eq!(strip(&first), strip(&second));
    assert_eq!(records(&second).len(), 5);
    let (a, b) = (records(&first), records(&second));
    for (x, y) in a[1..].iter().zip(&b[1..]) {
        assert_ne!(x[0], y[0], "new ids");
        assert_eq!(x[2], y[2], "the same owner");
    }
}

/// Ann acting in her second organization, as its owner.
fn ann2_owner(ann: &TestUser, org: Uuid) -> TestUser {
    let mut owner = ann.in_org(org);
    owner.org_id = org;
    owner
}

#[tokio::test]
async fn rows_with_a_known_external_id_update_that_contact() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann").await;
    let bob = app.member_of(&ann, "bob", "member").await;
    let other = app.user("other").await;
    import(&other, "name,external_id\r\nTheirs,crm-1\r\n")
        .await
        .ok(200);

    let res = import(
        &ann,
        "name,email,phone,external_id\r\nAda,ada@example.com,+1,crm-1\r\nGrace,,,crm-2\r\n",
    )
    .await;
    assert_eq!(
        res.ok(200),
        &json!({"created": 2, "updated": 0}),
        "another organization's key is not this one's"
    );
    let ada = || async {
        let items = all_items(&ann, "/api/v1/contacts").await;
        items
            .into_iter()
            .find(|c| c["external_id"] == "crm-1")
            .unwrap()
    };
    let before = ada().await;
    // Only the columns in the file change; an empty field clears a value.
    let res = import(&ann, "external_id,phone\r\ncrm-1,+49 30\r\nnew-1,\r\n").await;
    let problem = res.problem(400, "import_invalid");
    assert_eq!(
        problem["errors"],
        json!([{"field": "row 3: name", "message": "value_required: a required value is missing"}]),
        "a new contact needs a name"
    );
    let res = import(
        &ann,
        "external_id,phone,name\r\ncrm-1,+49 30,Ada L.\r\nnew-1,,New\r\n",
    )
    .await;
    assert_eq!(res.ok(200), &json!({"created": 1, "updated": 1}));
    let after = ada().await;
    assert_eq!(after["id"], before["id"]);
    assert_eq!(
        (&after["name"], &after["email"], &after["phone"]),
        (
            &json!("Ada L."),
            &json!("ada@example.com"),
            &json!("+49 30")
        )
    );
    assert_ne!(after["updated_at"], before["updated_at"]);
    let res = import(&ann, "external_id,email\r\ncrm-1,\r\n").await;
    assert_eq!(res.ok(200), &json!({"created": 0, "updated": 1}));
    assert_eq!(ada().await["email"], Value::Null);
    // owner_email given: the new owner; left empty: the owner stays.
    let res = import(
        &ann,
        format!(
            "external_id,owner_email\r\ncrm-1,{}\r\ncrm-2,\r\n",
            bob.email
        ),
    )
    .await;
    assert_eq!(res.ok(200), &json!({"created": 0, "updated": 2}));
    assert_eq!(ada().await["owner_id"], json!(bob.id));
    // The same key twice in a file; a key too long; a member updating
    // someone else's contact: every bad row, and nothing written.
    let long = "k".repeat(256);
    let csv = format!("name,external_id\r\nA,dup\r\nB,dup\r\nC,{long}\r\n");
    let res = import(&ann, csv).await;
    assert_eq!(
        res.problem(400, "import_invalid")["errors"],
        json!([
            {"field": "row 3: external_id", "message": "external_id_duplicate: row 2 has the same external_id"},
            {"field": "row 4: external_id", "message": "contacts_external_id_invalid: a value is not valid"},
        ])
    );
    let res = import(&bob, "external_id,phone\r\ncrm-2,+1\r\n").await;
    assert_eq!(
        res.problem(400, "import_invalid")["errors"],
        json!([{"field": "row 2: owner_email", "message": "role_forbidden: members may only change their own records"}])
    );
    let res = import(&bob, "external_id,phone\r\ncrm-1,+2\r\n").await;
    assert_eq!(
        res.ok(200),
        &json!({"created": 0, "updated": 1}),
        "bob's own, now"
    );
    assert_eq!(count_contacts(&app, ann.org_id).await, 3);
    assert_eq!(
        app.value::<String>(
            "SELECT name FROM crm.contacts WHERE organization_id = $1",
            &[&other.org_id]
        )
        .await,
        "Theirs"
    );
    // The export's external_id filter.
    let rows = export(&ann, "/api/v1/contacts/export?external_id=crm-2").await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][3], "Grace");
}

#[tokio::test]
async fn exports_take_at_most_a_quarter_of_the_pool() {
    let app = TestApp::spawn_with(|c| c.pool.size = 8).await;
    let ann = app.user("ann").await;
    many_deals(&app, &ann, 10_000).await;
    let mut running = Vec::new();
    for _ in 0..2 {
        let response = app
            .router
            .clone()
            .oneshot(export_request(&ann, "/api/v1/deals/export"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut body = response.into_body().into_data_stream();
        body.next().await.unwrap().unwrap();
        running.push(body);
    }
    let res = ann.get("/api/v1/contacts/export").await;
    res.problem(503, "exports_busy");
    assert_eq!(res.headers["retry-after"], "5");
    // The other requests still have the rest of the pool.
    ann.read("/api/v1/deals?page_size=1").await;
    drop(running.pop());
    assert_eq!(export(&ann, "/api/v1/contacts/export").await.len(), 2);
}

/// The trash (SPEC §11): trashed contacts and deals are not exported, and an
/// import row naming the external id of a contact in the trash is refused
/// (it neither updates nor revives it).
#[tokio::test]
async fn exports_leave_out_the_trash_and_imports_do_not_touch_it() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann").await;
    let kept = ann.contact("Kept").await;
    let gone = ann
        .create(
            "/api/v1/contacts",
            json!({"name": "Gone", "external_id": "crm-9"}),
        )
        .await;
    let gone = crate::helpers::id_of(&gone);
    let kept_deal = ann.deal(kept, "Kept deal", "1.00").await;
    let gone_deal = ann.deal(kept, "Gone deal", "2.00").await;
    ann.delete(&format!("/api/v1/deals/{gone_deal}"))
        .await
        .no_content();
    ann.delete(&format!("/api/v1/contacts/{gone}"))
        .await
        .no_content();

    let ids = |rows: Vec<Vec<String>>| rows[1..].iter().map(|r| r[0].clone()).collect::<Vec<_>>();
    assert_eq!(
        ids(export(&ann, "/api/v1/contacts/export").await),
        [kept.to_string()]
    );
    assert_eq!(
        ids(export(&ann, "/api/v1/deals/export").await),
        [kept_deal.to_string()]
    );

    let before = count_contacts(&app, ann.org_id).await;
    let res = import(&ann, "name,external_id\r\nNew,new-1\r\nRevived,crm-9\r\n").await;
    let problem = res.problem(400, "import_invalid");
    assert_eq!(
        problem["errors"][0]["field"], "row 3: external_id",
        "{problem}"
    );
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .starts_with("contacts_external_id_taken: a contact in the trash"),
        "{problem}"
    );
    assert_eq!(
        count_contacts(&app, ann.org_id).await,
        before,
        "nothing written"
    );
}
