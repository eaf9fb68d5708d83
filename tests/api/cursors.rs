//! Cursor pages on every list (SPEC §14): following `next_cursor` visits
//! every row exactly once, in the list's order, whatever is inserted or
//! deleted between pages; a cursor works only for the organization, list,
//! filters and sort that issued it, intact and young enough; offset pages
//! are bounded.

use std::{collections::HashSet, time::Duration};

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{
    assert_fields, id_of, ids, today_plus, Neighbours, TestApp, TestUser, ENVELOPE,
};

const CONTACTS: &str = "/api/v1/contacts";
const DEALS: &str = "/api/v1/deals";
const TASKS: &str = "/api/v1/tasks";

fn activities(deal: Uuid) -> String {
    format!("/api/v1/deals/{deal}/activities")
}

fn url(list: &str, query: &str, page_size: usize, cursor: Option<&str>) -> String {
    let mut parts: Vec<String> = Vec::new();
    if !query.is_empty() {
        parts.push(query.to_owned());
    }
    parts.push(format!("page_size={page_size}"));
    if let Some(cursor) = cursor {
        parts.push(format!("cursor={cursor}"));
    }
    format!("{list}?{}", parts.join("&"))
}

/// One page: its ids and its next_cursor, after checking the envelope (a
/// cursor page has `page: null`).
async fn page(
    user: &TestUser,
    list: &str,
    query: &str,
    page_size: usize,
    cursor: Option<&str>,
) -> (Vec<Uuid>, Option<String>) {
    let body = user.read(&url(list, query, page_size, cursor)).await;
    assert_fields(&body, ENVELOPE);
    let want_page = if cursor.is_some() {
        json!(null)
    } else {
        json!(1)
    };
    assert_eq!(
        (&body["page"], &body["page_size"]),
        (&want_page, &json!(page_size)),
        "{body}"
    );
    let items = body["items"].as_array().unwrap();
    assert!(items.len() <= page_size);
    let next = match &body["next_cursor"] {
        Value::Null => None,
        Value::String(c) => Some(c.clone()),
        other => panic!("next_cursor {other}"),
    };
    (ids(items), next)
}

/// Every id of the list, following cursors from the first page.
async fn walk(user: &TestUser, list: &str, query: &str, page_size: usize) -> Vec<Uuid> {
    let (mut all, mut next) = page(user, list, query, page_size, None).await;
    while let Some(cursor) = next {
        assert!(all.len() < 1000, "{list}?{query}: cursors that never end");
        let (more, after) = page(user, list, query, page_size, Some(&cursor)).await;
        assert!(!more.is_empty(), "a cursor page with nothing on it");
        all.extend(more);
        next = after;
    }
    all
}

/// The whole list in one page.
async fn whole(user: &TestUser, list: &str, query: &str) -> Vec<Uuid> {
    let (all, next) = page(user, list, query, 100, None).await;
    assert_eq!(next, None);
    all
}

/// Exactly once: every row of `before` that was not deleted was visited
/// once, deleted-before-visited rows not at all, and anything else visited
/// is one of the rows inserted meanwhile.
#[track_caller]
fn assert_exactly_once(visited: &[Uuid], before: &[Uuid], deleted: &[Uuid], inserted: &[Uuid]) {
    let unique: HashSet<_> = visited.iter().collect();
    assert_eq!(unique.len(), visited.len(), "a row twice: {visited:?}");
    for id in before {
        assert!(
            unique.contains(id) || deleted.contains(id),
            "{id} skipped: {visited:?}"
        );
    }
    for id in visited {
        assert!(
            before.contains(id) || inserted.contains(id),
            "{id} from nowhere"
        );
    }
}

/// The rows of `visited` that were there from the start, in order: what
/// `before` shows minus what was deleted.
fn originals(visited: &[Uuid], before: &[Uuid]) -> Vec<Uuid> {
    visited
        .iter()
        .filter(|id| before.contains(id))
        .copied()
        .collect()
}

/// Deals with ties in every sort key (amounts, titles, and created_at and
/// updated_at set equal in SQL).
async fn tied_deals(app: &TestApp, user: &TestUser) -> Vec<Uuid> {
    let contact = user.contact("Client").await;
    let mut deals = Vec::new();
    for (i, (title, amount)) in [
        ("beta", "20.50"),
        ("alpha", "10"),
        ("beta", "20.50"),
        ("Ünïcode deal", "0"),
        ("a_b% deal", "20.50"),
        ("beta", "999999999.99"),
        ("gamma", "10"),
        ("alpha", "20.5"),
        ("zeta", "1.01"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = user.deal(contact, title, amount).await;
        if i % 3 == 0 {
            user.patch(
                &format!("{DEALS}/{id}"),
                json!({"title": format!("{title} {i}")}),
            )
            .await
            .ok(200);
        }
        deals.push(id);
    }
    let sql = app.sql().await;
    sql.execute(
        "UPDATE crm.deals SET created_at = '2026-01-02T03:04:05.678901Z' WHERE id = ANY ($1)",
        &[&vec![deals[1], deals[2], deals[5]]],
    )
    .await
    .unwrap();
    // One statement: one now() for the updated_at trigger.
    sql.execute(
        "UPDATE crm.deals SET stage = stage WHERE id = ANY ($1)",
        &[&vec![deals[3], deals[4], deals[7]]],
    )
    .await
    .unwrap();
    deals
}

#[tokio::test]
async fn cursors_walk_every_deal_sort_in_both_directions() {
    let (app, ann) = TestApp::with_user("ann").await;
    let deals = tied_deals(&app, &ann).await;
    for order_by in ["created_at", "updated_at", "amount", "title"] {
        for order in ["asc", "desc"] {
            let query = format!("order_by={order_by}&order={order}");
            let all = whole(&ann, DEALS, &query).await;
            assert_eq!(all.len(), deals.len());
            for page_size in [1, 2, 4] {
                assert_eq!(
                    walk(&ann, DEALS, &query, page_size).await,
                    all,
                    "{query}, {page_size} a page"
                );
            }
        }
    }
    // With filters too; and the page size may change along the way.
    let query = "status=new&min_amount=10&order_by=amount&order=desc";
    let all = whole(&ann, DEALS, query).await;
    assert_eq!(all.len(), 7);
    let (mut got, next) = page(&ann, DEALS, query, 2, None).await;
    let (more, next) = page(&ann, DEALS, query, 4, next.as_deref()).await;
    got.extend(more);
    let (more, next) = page(&ann, DEALS, query, 100, next.as_deref()).await;
    got.extend(more);
    assert_eq!((got, next), (all, None));
}

#[tokio::test]
async fn cursors_see_each_deal_once_through_inserts_and_deletes() {
    let (_app, ann) = TestApp::with_user("ann").await;
    let contact = ann.contact("Client").await;
    for i in 0..10 {
        ann.deal(contact, &format!("deal {i}"), &format!("{}", i * 10))
            .await;
    }
    for query in [
        "order_by=created_at&order=desc",
        "order_by=amount&order=asc",
        "order_by=title&order=desc",
        "order_by=updated_at&order=asc",
    ] {
        let before = whole(&ann, DEALS, query).await;
        let (mut visited, mut next) = page(&ann, DEALS, query, 3, None).await;
        let mut deleted = Vec::new();
        let mut inserted = Vec::new();
        let mut round = 0;
        while let Some(cursor) = next {
            // Between pages: a deal before and one after the position
            // deleted, two new ones (anywhere in the order) inserted.
            let unseen: Vec<Uuid> = before
                .iter()
                .filter(|id| !visited.contains(id) && !deleted.contains(*id))
                .copied()
                .collect();
            if let Some(gone) = unseen.last() {
                ann.delete(&format!("{DEALS}/{gone}")).await.no_content();
                deleted.push(*gone);
            }
            let seen = visited[round % visited.len()];
            if !deleted.contains(&seen) {
                ann.delete(&format!("{DEALS}/{seen}")).await.no_content();
                deleted.push(seen);
            }
            for amount in ["5", "95"] {
                let title = format!("new {round} {amount}");
                inserted.push(ann.deal(contact, &title, amount).await);
            }
            assert!(round < 50, "{query}: cursors that never end");
            let (more, after) = page(&ann, DEALS, query, 3, Some(&cursor)).await;
            visited.extend(more);
            next = after;
            round += 1;
        }
        assert!(round >= 2, "{query}: only {round} cursor pages");
        assert_exactly_once(&visited, &before, &deleted, &inserted);
        // The rows that were there keep their order.
        let kept: Vec<Uuid> = before
            .iter()
            .filter(|id| visited.contains(id))
            .copied()
            .collect();
        assert_eq!(originals(&visited, &before), kept, "{query}");
        // Newest first: nothing inserted later shows up.
        if query.starts_with("order_by=created_at") {
            assert_eq!(originals(&visited, &before), visited, "{query}");
        }
    }
}

#[tokio::test]
async fn cursors_walk_searched_contacts_through_inserts_and_deletes() {
    let (_app, ann) = TestApp::with_user("ann").await;
    for i in 0..8 {
        ann.contact(&format!("Acme {i}")).await;
        ann.contact(&format!("Other {i}")).await;
    }
    for query in [
        "search=acme",
        "",
        &format!("search=ACME&owner_id={}", ann.id),
    ] {
        let before = whole(&ann, CONTACTS, query).await;
        assert_eq!(walk(&ann, CONTACTS, query, 3).await, before, "{query}");
    }
    let query = "search=acme";
    let before = whole(&ann, CONTACTS, query).await;
    assert_eq!(before.len(), 8);
    let (mut visited, mut next) = page(&ann, CONTACTS, query, 3, None).await;
    let (mut deleted, mut inserted) = (Vec::new(), Vec::new());
    while let Some(cursor) = next {
        if let Some(gone) = before
            .iter()
            .rev()
            .find(|id| !visited.contains(id) && !deleted.contains(*id))
        {
            ann.delete(&format!("{CONTACTS}/{gone}")).await.no_content();
            deleted.push(*gone);
        }
        inserted.push(ann.contact("Acme newcomer").await);
        let (more, after) = page(&ann, CONTACTS, query, 3, Some(&cursor)).await;
        visited.extend(more);
        next = after;
    }
    assert_exactly_once(&visited, &before, &deleted, &inserted);
    // Newest first: the newcomers come before the position.
    assert_eq!(originals(&visited, &before), visited);
    assert_eq!(visited.len(), 8 - deleted.len());
}

#[tokio::test]
async fn cursors_walk_filtered_tasks_through_inserts_and_deletes() {
    let (_app, ann) = TestApp::with_user("ann").await;
    let contact = ann.contact("Client").await;
    let deal = ann.deal(contact, "Deal", "10").await;
    let other = ann.deal(contact, "Other", "10").await;
    let mut tasks = Vec::new();
    for i in 0..12 {
        // Due dates with ties: 1, 1, 2, 2, ... days ahead.
        let on = if i % 4 == 3 { other } else { deal };
        tasks.push(ann.task(on, &format!("task {i}"), 1 + i / 2).await);
    }
    for t in [tasks[2], tasks[7]] {
        ann.patch(&format!("{TASKS}/{t}"), json!({"is_done": true}))
            .await
            .ok(200);
    }
    let filters = [
        String::new(),
        "only_open=true".to_owned(),
        format!("deal_id={deal}&only_open=true"),
        format!("due_after={}&due_before={}", today_plus(2), today_plus(5)),
    ];
    for query in &filters {
        let before = whole(&ann, TASKS, query).await;
        assert!(before.len() >= 4, "{query}");
        for page_size in [1, 3] {
            assert_eq!(walk(&ann, TASKS, query, page_size).await, before, "{query}");
        }
    }
    let query = "only_open=true";
    let before = whole(&ann, TASKS, query).await;
    let (mut visited, mut next) = page(&ann, TASKS, query, 3, None).await;
    let (mut deleted, mut inserted) = (Vec::new(), Vec::new());
    let mut round = 0;
    while let Some(cursor) = next {
        if let Some(gone) = before
            .iter()
            .rev()
            .find(|id| !visited.contains(id) && !deleted.contains(*id))
        {
            ann.delete(&format!("{TASKS}/{gone}")).await.no_content();
            deleted.push(*gone);
        }
        // One due before the position, one far after it.
        inserted.push(ann.task(deal, "early", 0).await);
        inserted.push(ann.task(deal, &format!("late {round}"), 30).await);
        let (more, after) = page(&ann, TASKS, query, 3, Some(&cursor)).await;
        visited.extend(more);
        next = after;
        round += 1;
    }
    assert_exactly_once(&visited, &before, &deleted, &inserted);
}

#[tokio::test]
async fn cursors_walk_a_deal_timeline_while_comments_arrive() {
    let (_app, ann) = TestApp::with_user("ann").await;
    let contact = ann.contact("Client").await;
    let deal = ann.deal(contact, "Deal", "10").await;
    for i in 0..9 {
        ann.comment(deal, &format!("comment {i}")).await;
    }
    let list = activities(deal);
    let before = whole(&ann, &list, "").await;
    assert_eq!(before.len(), 10);
    for page_size in [1, 4] {
        assert_eq!(walk(&ann, &list, "", page_size).await, before);
    }
    let (mut visited, mut next) = page(&ann, &list, "", 4, None).await;
    let mut inserted = Vec::new();
    while let Some(cursor) = next {
        inserted.push(id_of(&ann.comment(deal, "meanwhile").await));
        let (more, after) = page(&ann, &list, "", 4, Some(&cursor)).await;
        visited.extend(more);
        next = after;
    }
    // Newest first: what arrives meanwhile is before the position.
    assert_eq!(visited, before);
}

/// A cursor from page 1 of `query` on `list`.
async fn cursor_of(user: &TestUser, list: &str, query: &str) -> String {
    page(user, list, query, 1, None)
        .await
        .1
        .expect("a second page")
}

#[track_caller]
fn assert_invalid_cursor(res: &crate::helpers::TestResponse, why: &str) {
    assert_eq!(res.field(400, "invalid_cursor"), "cursor", "{why}");
    assert!(res.body.get("items").is_none());
}

#[tokio::test]
async fn bad_cursors_are_refused_and_never_show_another_tenants_rows() {
    let Neighbours {
        app,
        ann,
        bob,
        bobs_contact,
        ..
    } = Neighbours::new("admin", "Bob's deal", "100").await;
    // Ann's organization: two deals, two contacts.
    let contact = ann.contact("Ann's client").await;
    ann.contact("Ann's other client").await;
    ann.deal(contact, "One", "1").await;
    ann.deal(contact, "Two", "2").await;
    bob.contact("Bob's other client").await;
    let anns = cursor_of(&ann, DEALS, "").await;

    // Tampered: every byte flipped in turn; truncated; junk.
    let bytes = URL_SAFE_NO_PAD.decode(&anns).unwrap();
    for i in (0..bytes.len()).step_by(7).chain([bytes.len() - 1]) {
        let mut bad = bytes.clone();
        bad[i] ^= 0x20;
        let res = ann
            .get(&url(DEALS, "", 1, Some(&URL_SAFE_NO_PAD.encode(&bad))))
            .await;
        assert_invalid_cursor(&res, &format!("byte {i} flipped"));
    }
    let mut junk = vec![
        anns[..anns.len() - 1].to_owned(),
        anns[..anns.len() / 2].to_owned(),
        format!("{anns}A"),
        "x".to_owned(),
        "not-a-cursor".to_owned(),
        "%2F%2B%3D".to_owned(),
        "A".repeat(3000),
    ];
    junk.push(anns.replace(&anns[10..11], if &anns[10..11] == "A" { "B" } else { "A" }));
    for bad in &junk {
        let res = ann.get(&url(DEALS, "", 1, Some(bad))).await;
        assert_invalid_cursor(&res, bad);
    }

    // Another organization's cursor: Bob in his, Ann acting in Bob's (she is
    // a member there), on a list that has rows there.
    assert_invalid_cursor(&bob.get(&url(DEALS, "", 1, Some(&anns))).await, "Bob");
    let in_bobs = ann.in_org(bob.org_id);
    assert_invalid_cursor(
        &in_bobs.get(&url(DEALS, "", 1, Some(&anns))).await,
        "Ann in Bob's organization",
    );
    let anns_contacts = cursor_of(&ann, CONTACTS, "").await;
    assert_invalid_cursor(
        &in_bobs
            .get(&url(CONTACTS, "", 1, Some(&anns_contacts)))
            .await,
        "contacts in Bob's organization",
    );
    // And Bob's cursor does not read Ann's organization.
    let bobs = cursor_of(&bob, CONTACTS, "").await;
    assert_invalid_cursor(
        &bob.in_org(ann.org_id)
            .get(&url(CONTACTS, "", 1, Some(&bobs)))
            .await,
        "Bob's cursor in Ann's organization",
    );
    let _ = bobs_contact;

    // Other filters, another sort, another list.
    for (list, query) in [
        (DEALS, "status=new"),
        (DEALS, "order=asc"),
        (DEALS, "order_by=amount"),
        (DEALS, "order_by=created_at&order=asc"),
        (DEALS, "min_amount=0"),
        (CONTACTS, ""),
        (TASKS, ""),
    ] {
        let res = ann.get(&url(list, query, 1, Some(&anns))).await;
        assert_invalid_cursor(&res, &format!("{list}?{query}"));
    }
    // Spelling the same query differently is the same query.
    let filtered = cursor_of(&ann, DEALS, "status=won&status=new&min_amount=1.0").await;
    ann.get(&url(
        DEALS,
        "status=new&status=won&min_amount=1",
        1,
        Some(&filtered),
    ))
    .await
    .ok(200);
    let timeline = cursor_of(&ann, &activities(ann_deal(&ann).await), "").await;
    let other_deal = ann.deal(contact, "Three", "3").await;
    assert_invalid_cursor(
        &ann.get(&url(&activities(other_deal), "", 1, Some(&timeline)))
            .await,
        "another deal's timeline",
    );

    // Expired: the same database through a server whose cursors last 1 ms.
    let mut config = app.state.config.clone();
    config.cursor_max_age = Duration::from_millis(1);
    let strict = TestApp::with_config(config);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let res = ann.via(&strict).get(&url(DEALS, "", 1, Some(&anns))).await;
    assert_invalid_cursor(&res, "expired");
    assert!(
        res.body["detail"].as_str().unwrap().contains("expired"),
        "{}",
        res.body
    );
    // Within the limit, the same cursor still works.
    ann.get(&url(DEALS, "", 1, Some(&anns))).await.ok(200);
}

/// A deal of Ann's with at least two timeline rows.
async fn ann_deal(ann: &TestUser) -> Uuid {
    let contact = ann.contact("Timeline client").await;
    let deal = ann.deal(contact, "Timeline", "5").await;
    ann.comment(deal, "hello").await;
    deal
}

#[tokio::test]
async fn offset_pages_are_bounded_and_exclude_cursors() {
    let (_app, ann) = TestApp::with_user("ann").await;
    let deal = ann_deal(&ann).await;
    let contact = ann.contact("Another").await;
    ann.deal(contact, "Second", "1").await;
    ann.task(deal, "Call", 1).await;
    ann.task(deal, "Write", 2).await;
    let timeline = activities(deal);
    for list in [CONTACTS, DEALS, TASKS, &timeline] {
        let cursor = cursor_of(&ann, list, "").await;
        let res = ann
            .get(&format!("{list}?page=1&page_size=1&cursor={cursor}"))
            .await;
        assert_eq!(res.field(400, "cursor_with_page"), "cursor", "{list}");
        // The deepest offset pages still answer.
        for ok in [
            "page=500",
            "page=100&page_size=100",
            "page=10000&page_size=1",
        ] {
            let body = ann.read(&format!("{list}?{ok}")).await;
            assert_eq!(body["items"], json!([]), "{list}?{ok}");
            assert_eq!(body["next_cursor"], Value::Null);
        }
        for deep in [
            "page=501",
            "page=101&page_size=100",
            "page=10001&page_size=1",
            "page=1000000000",
            "page=2147483648&page_size=100",
            "page=9223372036854775807&page_size=100",
        ] {
            let res = ann.get(&format!("{list}?{deep}")).await;
            assert_eq!(res.field(400, "page_too_deep"), "page", "{list}?{deep}");
            assert!(
                res.body["detail"].as_str().unwrap().contains("cursor"),
                "{}",
                res.body
            );
        }
    }
}

#[tokio::test]
async fn totals_are_exact_to_a_thousand_then_estimated_on_every_list() {
    let (app, ann) = TestApp::with_user("ann").await;
    let contact = ann.contact("Client").await;
    let deal = ann.deal(contact, "Deal", "10").await;
    let sql = app.sql().await;
    let (org, owner) = (ann.org_id, ann.id);
    sql.execute(
        "INSERT INTO crm.contacts (organization_id, owner_id, name)
         SELECT $1, $2, 'Bulk ' || n FROM generate_series(1, 1100) n",
        &[&org, &owner],
    )
    .await
    .unwrap();
    sql.execute(
        "INSERT INTO crm.tasks (organization_id, deal_id, title, due_date)
         SELECT $1, $2, 'Bulk ' || n, current_date + 1 FROM generate_series(1, 1100) n",
        &[&org, &deal],
    )
    .await
    .unwrap();
    sql.execute(
        "INSERT INTO crm.activities (organization_id, deal_id, author_id, type, payload)
         SELECT $1, $2, $3, 'comment', jsonb_build_object('text', 'bulk')
           FROM generate_series(1, 1100) n",
        &[&org, &deal, &owner],
    )
    .await
    .unwrap();
    sql.batch_execute("ANALYZE crm.contacts, crm.tasks, crm.activities")
        .await
        .unwrap();
    for list in [CONTACTS.to_owned(), TASKS.to_owned(), activities(deal)] {
        let body = ann.read(&format!("{list}?page_size=5")).await;
        assert_eq!(body["total_exact"], false, "{list}: {body}");
        assert!(body["total"].as_i64().unwrap() > 1_000, "{list}: {body}");
        assert_eq!(body["items"].as_array().unwrap().len(), 5);
    }
    // Up to 1,000 matches: exact.
    let body = ann.read(&format!("{CONTACTS}?search=client")).await;
    assert_eq!(
        (&body["total"], &body["total_exact"]),
        (&json!(1), &json!(true))
    );
}
