use axum::http::Method;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    assert_bad_queries, assert_fields, assert_record, assert_updated, id_of, ids, page_items,
    TestApp, TestUser, SALES,
};

const CONTACTS: &str = "/api/v1/contacts";
const CONTACT_FIELDS: &str =
    "id organization_id owner_id name email phone external_id created_at updated_at";

#[tokio::test]
async fn contacts_create_get_update_delete() {
    let (_, ann) = TestApp::with_user("ann").await;
    let org = ann.org_id;

    let c = ann
        .create(
            "/api/v1/contacts",
            json!({"name": "  Grace Hopper ", "email": "grace@navy.mil", "phone": "+1 555 0100"}),
        )
        .await;
    assert_record(
        &c,
        CONTACT_FIELDS,
        json!({"name": "Grace Hopper", "email": "grace@navy.mil", "phone": "+1 555 0100",
               "organization_id": org, "owner_id": ann.id}),
    );
    let path = format!("/api/v1/contacts/{}", id_of(&c));

    // Email and phone are optional.
    let bare = ann
        .create("/api/v1/contacts", json!({"name": "No Details"}))
        .await;
    assert_record(&bare, CONTACT_FIELDS, json!({"email": null, "phone": null}));
    assert_eq!(ann.read(&path).await, c);

    // PATCH is partial; email and phone may be cleared with null.
    let body = json!({"name": "Rear Admiral Hopper", "phone": null});
    let updated = ann.patch(&path, body).await.ok(200).clone();
    let want = json!({"name": "Rear Admiral Hopper", "email": "grace@navy.mil", "phone": null});
    assert_record(&updated, CONTACT_FIELDS, want);
    assert_updated(&c, &updated);
    assert_eq!(ann.read(&path).await, updated);

    // Invalid values are 400 and change nothing.
    let cases = vec![
        (
            json!({"email": "not an email"}),
            400,
            "contacts_email_invalid",
        ),
        (json!({"name": "   "}), 400, "contacts_name_invalid"),
        (json!({"name": null}), 400, "value_required"),
        (json!({"colour": "blue"}), 400, "validation_failed"),
        (json!({"name": 42}), 400, "validation_failed"),
    ];
    ann.refused_patches(&path, cases).await;
    for (body, code) in [
        (json!({"name": ""}), "contacts_name_invalid"),
        (
            json!({"name": "X", "email": "a@b@c"}),
            "contacts_email_invalid",
        ),
        (json!({"email": "x@example.com"}), "validation_failed"),
        (json!({"name": "X", "extra": 1}), "validation_failed"),
    ] {
        ann.post("/api/v1/contacts", body).await.problem(400, code);
    }
    ann.req(Method::POST, "/api/v1/contacts")
        .raw("application/json", "{\"name\": ")
        .await
        .problem(400, "malformed_json");
    ann.req(Method::POST, "/api/v1/contacts")
        .raw("text/plain", "name=x")
        .await
        .problem(400, "unsupported_content_type");
    let list = ann.read("/api/v1/contacts").await;
    assert_eq!(page_items(&list, 1, 20, 2).len(), 2);

    // Delete: 204, then 404 everywhere.
    ann.delete_for_good(&path, json!({"name": "ghost"}), "contact_not_found")
        .await;
    let list = ann.read("/api/v1/contacts").await;
    assert_eq!(ids(&page_items(&list, 1, 20, 1)), vec![id_of(&bare)]);
}

#[tokio::test]
async fn contacts_list_pages_newest_first() {
    let (_, ann) = TestApp::with_user("ann").await;
    let mut created = Vec::new();
    for i in 0..25 {
        created.push(ann.contact(&format!("Contact {i:02}")).await);
    }
    let newest_first: Vec<Uuid> = created.iter().rev().copied().collect();

    // Defaults: page 1, page_size 20.
    let body = ann.read("/api/v1/contacts").await;
    let items = page_items(&body, 1, 20, 25);
    assert_eq!(ids(&items), newest_first[..20]);
    for item in &items {
        assert_fields(item, CONTACT_FIELDS);
    }
    let body = ann.read("/api/v1/contacts?page=2").await;
    assert_eq!(ids(&page_items(&body, 2, 20, 25)), newest_first[20..]);
    let body = ann.read("/api/v1/contacts?page=3&page_size=10").await;
    assert_eq!(ids(&page_items(&body, 3, 10, 25)), newest_first[20..]);
    let body = ann.read("/api/v1/contacts?page=2&page_size=7").await;
    assert_eq!(ids(&page_items(&body, 2, 7, 25)), newest_first[7..14]);
    let body = ann.read("/api/v1/contacts?page=1&page_size=100").await;
    assert_eq!(ids(&page_items(&body, 1, 100, 25)), newest_first);
    let body = ann.read("/api/v1/contacts?page=9&page_size=1").await;
    assert_eq!(ids(&page_items(&body, 9, 1, 25)), newest_first[8..9]);
    // Past the end: an empty page, same total.
    let body = ann.read("/api/v1/contacts?page=4").await;
    assert!(page_items(&body, 4, 20, 25).is_empty());
}

#[tokio::test]
async fn contacts_search_finds_words_by_their_beginning() {
    let (_, ann) = TestApp::with_user("ann").await;
    let mk = |name: &str, email: Option<&str>| {
        let body = match email {
            Some(e) => json!({"name": name, "email": e}),
            None => json!({"name": name}),
        };
        let ann = &ann;
        async move { id_of(&ann.create("/api/v1/contacts", body).await) }
    };
    let alice = mk("Alice Smith", Some("alice@wonder.land")).await;
    let bob = mk("Bob", Some("BOB.SMITH@example.com")).await;
    let cotton = mk("100% Cotton Ltd", None).await;
    let hundred = mk("1000 Cotton Ltd", None).await;
    let snake = mk("snake_case GmbH", Some("hiss@example.com")).await;
    let snakex = mk("snakeXcase GmbH", None).await;
    let backslash = mk("Back\\slash", None).await;
    let emile = mk("Émile Zola", None).await;

    let search = |q: &'static str| {
        let ann = &ann;
        async move {
            let body = ann.read(&format!("/api/v1/contacts?search={q}")).await;
            let mut got = ids(body["items"].as_array().unwrap());
            assert_eq!(body["total"], json!(got.len()), "total for {q}");
            got.sort();
            got
        }
    };
    let sorted = |mut v: Vec<Uuid>| {
        v.sort();
        v
    };
    // A word of the name or the email that begins with the term, any case.
    assert_eq!(search("smith").await, sorted(vec![alice, bob]));
    assert_eq!(search("SMI").await, sorted(vec![alice, bob]));
    assert_eq!(search("wonder").await, vec![alice]);
    assert_eq!(search("cotton").await, sorted(vec![cotton, hundred]));
    assert_eq!(
        search("%C3%A9MILE").await,
        vec![emile],
        "non-ASCII letters fold too"
    );
    // One or two characters are the beginning of a word too.
    assert_eq!(search("e").await, sorted(vec![bob, snake]), "é is not e");
    assert_eq!(search("sn").await, sorted(vec![snake, snakex]));
    // The middle of a word is not (SPEC's "in name or email": words of them).
    assert_eq!(search("mith").await, Vec::<Uuid>::new());
    assert_eq!(search("ob.sm").await, Vec::<Uuid>::new());
    // Several words: each begins a word, in any order.
    assert_eq!(search("smith%20alice").await, vec![alice]);
    assert_eq!(search("bob.smith").await, vec![bob]);
    assert_eq!(search("bob%20wonder").await, Vec::<Uuid>::new());
    // '%', '_' and '\\' are plain characters, not wildcards.
    assert_eq!(search("%25").await, vec![cotton]);
    assert_eq!(search("100%25").await, vec![cotton]);
    assert_eq!(search("_").await, vec![snake]);
    assert_eq!(search("snake_c").await, vec![snake]);
    assert_eq!(search("%5C").await, vec![backslash]);
    assert_eq!(search("back%5C").await, vec![backslash]);
    assert_eq!(search("nobody").await, Vec::<Uuid>::new());
    // White space alone searches nothing: every contact.
    assert_eq!(search("%20%20").await.len(), 8);
    // Search combines with paging.
    let body = ann
        .read("/api/v1/contacts?search=GMBH&page_size=1&page=2")
        .await;
    let items = page_items(&body, 2, 1, 2);
    // Newest first: snakeXcase, then snake_case.
    assert_eq!(ids(&items), vec![snake]);
    // Each word is a condition of the query: at most 16.
    let words: Vec<String> = (1..=17).map(|n| format!("w{n}x")).collect();
    let p = ann
        .get(&format!("/api/v1/contacts?search={}", words.join("%20")))
        .await;
    assert_eq!(p.field(400, "invalid_query_parameter"), "search");
    let words = words[..16].join("%20");
    ann.read(&format!("/api/v1/contacts?search={words}")).await;
}

/// Contacts a DBA writes in psql are searchable at once: the words come from
/// a trigger, whoever writes.
#[tokio::test]
async fn contacts_search_finds_what_psql_wrote() {
    let (app, ann) = TestApp::with_user("ann").await;
    let db = app.sql().await;
    let id: Uuid = db
        .query_one(
            "INSERT INTO crm.contacts (organization_id, owner_id, name, email) \
             VALUES ($1, $2, 'Hedy Lamarr', 'hedy@frequency-hopping.example') RETURNING id",
            &[&ann.org_id, &ann.id],
        )
        .await
        .unwrap()
        .get(0);
    let found = |q: &'static str| {
        let ann = &ann;
        async move {
            ids(ann.read(&format!("{CONTACTS}?search={q}")).await["items"]
                .as_array()
                .unwrap())
        }
    };
    assert_eq!(found("hedy").await, vec![id]);
    assert_eq!(found("hopping").await, vec![id]);
    // Under a context, as the request role, like the API.
    db.batch_execute(&format!(
        "BEGIN; SELECT app.act_as('{}', '{}'); \
         UPDATE crm.contacts SET name = 'Hedwig Kiesler', email = NULL WHERE id = '{id}'; COMMIT;",
        ann.id, ann.org_id
    ))
    .await
    .unwrap();
    assert_eq!(found("hedy").await, Vec::<Uuid>::new());
    assert_eq!(found("hopping").await, Vec::<Uuid>::new());
    assert_eq!(found("kies").await, vec![id]);
    db.execute("DELETE FROM crm.contacts WHERE id = $1", &[&id])
        .await
        .unwrap();
    assert_eq!(found("kies").await, Vec::<Uuid>::new());
}

/// Whichever way the database reads a term (the merge of its few words, its
/// range, the walk of a dense term, several words), cursor pages visit the
/// matches of the rule, newest first, once each, through ties of created_at;
/// totals are exact up to 1,000 and estimated beyond.
#[tokio::test]
async fn contacts_search_pages_alike_on_every_access_path() {
    let (app, ann) = TestApp::with_user("ann").await;
    let db = app.sql().await;
    db.execute(
        "INSERT INTO crm.contacts (organization_id, owner_id, name, email, created_at) \
         SELECT $1, $2, 'Person ' || n, format('p%s@d%s.test', n, n % 7), \
                now() - (n % 50) * interval '1 minute' FROM generate_series(1, 3000) n",
        &[&ann.org_id, &ann.id],
    )
    .await
    .unwrap();
    db.batch_execute("ANALYZE crm.contacts, crm.contact_search_words")
        .await
        .unwrap();
    // person: one word (the merge); d3: one word, a seventh; p1: 1,111 words
    // (the range); p: 3,001 words, 6,000 entries (the walk); then two words.
    for term in ["person", "d3", "p1", "p", "person%2012", "d3%20p1"] {
        let want: Vec<Uuid> = app
            .column(
                "SELECT c.id FROM crm.contacts c WHERE c.organization_id = $1 \
                   AND (SELECT bool_and(EXISTS (SELECT FROM unnest(app.search_tokens(c.name || ' ' || \
                          coalesce(c.email, ''))) w WHERE starts_with(w, t))) \
                          FROM unnest(app.search_tokens(replace($2, '%20', ' '))) t) \
                 ORDER BY c.created_at DESC, c.id DESC",
                &[&ann.org_id, &term],
            )
            .await;
        let mut got = Vec::new();
        let mut path = format!("{CONTACTS}?search={term}&page_size=100");
        loop {
            let body = ann.read(&path).await;
            let total = body["total"].as_i64().unwrap();
            if want.len() <= 1000 {
                assert_eq!(
                    (total, &body["total_exact"]),
                    (want.len() as i64, &json!(true)),
                    "{term}"
                );
            } else {
                assert!(
                    total > 1000 && body["total_exact"] == json!(false),
                    "{term}: {total}"
                );
            }
            got.extend(ids(body["items"].as_array().unwrap()));
            match body["next_cursor"].as_str() {
                Some(c) => path = format!("{CONTACTS}?search={term}&page_size=100&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(got.len(), want.len(), "{term}");
        assert!(
            got == want,
            "{term}: the pages are not the matches in list order"
        );
    }
}

#[tokio::test]
async fn contacts_owner_filter_and_the_role_table() {
    let (app, owner, [manager, mia, max]) = TestApp::with_team(SALES).await;

    // Members create contacts owned by themselves.
    let mias = mia.contact("Mia's client").await;
    let maxs = max.contact("Max's client").await;
    let owners = owner.contact("Owner's client").await;
    // ... and may name themselves explicitly.
    let owned = |name: &str, owner: &TestUser| json!({"name": name, "owner_id": owner.id});
    let c = mia.create(CONTACTS, owned("Mine too", &mia)).await;
    assert_eq!(c["owner_id"], mia.id.to_string());
    let mias2 = id_of(&c);

    // A member may not create a contact for someone else.
    let p = mia.post(CONTACTS, owned("For Max", &max)).await;
    assert_eq!(p.field(403, "role_forbidden"), "owner_id");
    // A manager may.
    let c = manager.create(CONTACTS, owned("For Max", &max)).await;
    assert_eq!(c["owner_id"], max.id.to_string());
    let for_max = id_of(&c);
    // owner_id must be a member of this organization.
    let stranger = app.user("stranger").await;
    owner
        .post(
            "/api/v1/contacts",
            json!({"name": "Nobody's", "owner_id": stranger.id}),
        )
        .await
        .problem(404, "contacts_owner_id_not_member");

    // Everyone reads everything.
    let all = mia.read("/api/v1/contacts").await;
    assert_eq!(page_items(&all, 1, 20, 5).len(), 5);
    mia.read(&format!("/api/v1/contacts/{maxs}")).await;

    // owner_id filter: members only by themselves.
    let mine = mia
        .read(&format!("/api/v1/contacts?owner_id={}", mia.id))
        .await;
    assert_eq!(ids(&page_items(&mine, 1, 20, 2)), vec![mias2, mias]);
    mia.get(&format!("/api/v1/contacts?owner_id={}", max.id))
        .await
        .problem(403, "role_forbidden");
    let maxes = manager
        .read(&format!("/api/v1/contacts?owner_id={}", max.id))
        .await;
    assert_eq!(ids(&page_items(&maxes, 1, 20, 2)), vec![for_max, maxs]);
    let combined = owner
        .read(&format!("/api/v1/contacts?owner_id={}&search=for", max.id))
        .await;
    assert_eq!(ids(&page_items(&combined, 1, 20, 1)), vec![for_max]);

    // A member may not change, reassign or delete someone else's contact.
    let maxs_path = format!("/api/v1/contacts/{maxs}");
    let before = owner.read(&maxs_path).await;
    let patches = vec![json!({"name": "Stolen"}), json!({"owner_id": mia.id})];
    mia.forbidden(&maxs_path, patches).await;
    assert_eq!(owner.read(&maxs_path).await, before);
    // Nor give away their own.
    let mias_path = format!("/api/v1/contacts/{mias}");
    mia.patch(&mias_path, json!({"owner_id": max.id}))
        .await
        .problem(403, "role_forbidden");
    assert_eq!(owner.read(&mias_path).await["owner_id"], mia.id.to_string());
    // But may change and delete their own.
    let res = mia
        .patch(&mias_path, json!({"email": "client@mia.example"}))
        .await;
    assert_eq!(res.ok(200)["email"], "client@mia.example");

    // A manager may change, reassign and delete other members' contacts.
    let res = manager
        .patch(
            &maxs_path,
            json!({"name": "Handed over", "owner_id": mia.id}),
        )
        .await;
    let body = res.ok(200);
    assert_eq!(body["owner_id"], mia.id.to_string());
    assert_eq!(body["name"], "Handed over");
    manager
        .patch(&maxs_path, json!({"owner_id": stranger.id}))
        .await
        .problem(404, "contacts_owner_id_not_member");
    assert_eq!(owner.read(&maxs_path).await["owner_id"], mia.id.to_string());
    let res = manager.delete(&format!("/api/v1/contacts/{for_max}")).await;
    assert_eq!(res.status, 204);
    let res = mia.delete(&mias_path).await;
    assert_eq!(res.status, 204);
    let left = owner.read("/api/v1/contacts").await;
    let mut left = ids(&page_items(&left, 1, 20, 3));
    left.sort();
    let mut want = vec![maxs, owners, mias2];
    want.sort();
    assert_eq!(left, want);
}

/// (Tokens, the organization header, membership and malformed or unknown
/// ids in the path: tenancy_probes.rs checks them for every operation.)
#[tokio::test]
async fn contacts_reject_bad_query_values() {
    let (_, ann) = TestApp::with_user("ann").await;
    ann.contact("Someone").await;
    let bad = "page_size=500 page_size=101 page_size=0 page_size=-1 page=0 page=-3 page=one \
               owner_id=not-a-uuid colour=blue order_by=name";
    assert_bad_queries(&ann, "/api/v1/contacts", bad).await;
}

#[tokio::test]
async fn contacts_of_another_organization_are_404_r8() {
    let (app, ann) = TestApp::with_user("ann").await;
    let bob = app.user("bob").await;
    // ann2 also belongs to Bob's organization (her token is valid there), yet
    // a request acting in her own organization cannot touch Bob's records.
    let ann_in_b = app.member_of(&bob, "ann2", "admin").await;
    let theirs = bob.contact("Bob's client").await;
    let path = format!("/api/v1/contacts/{theirs}");
    let before = bob.read(&path).await;
    for user in [ann.clone(), ann_in_b.in_org(ann_in_b.org_id)] {
        let patch = json!({"name": "Defaced"});
        user.not_found(&path, patch, "contact_not_found").await;
        let list = user.read("/api/v1/contacts").await;
        assert!(page_items(&list, 1, 20, 0).is_empty());
    }
    assert_eq!(bob.read(&path).await, before);
    // The same user, acting in Bob's organization, sees it.
    assert_eq!(ann_in_b.read(&path).await, before);
}

#[tokio::test]
async fn a_contact_with_deals_cannot_be_deleted_r2() {
    let (_, ann) = TestApp::with_user("ann").await;
    let contact = ann.contact("Client").await;
    let path = format!("/api/v1/contacts/{contact}");
    let open = ann.deal(contact, "Open deal", "100").await;
    let lost = ann.deal(contact, "Lost deal", "50").await;
    ann.patch(
        &format!("/api/v1/deals/{lost}"),
        json!({"status": "lost", "stage": "closed"}),
    )
    .await
    .ok(200);
    let before = ann.read(&path).await;
    ann.delete(&path).await.problem(409, "contact_has_deals");
    assert_eq!(ann.read(&path).await, before);
    // Still refused with only a closed, lost deal left.
    let res = ann.delete(&format!("/api/v1/deals/{open}")).await;
    assert_eq!(res.status, 204);
    ann.delete(&path).await.problem(409, "contact_has_deals");
    assert_eq!(ann.read(&path).await, before);
    let deals = ann
        .read(&format!("/api/v1/deals?contact_id={contact}"))
        .await;
    assert_eq!(ids(&page_items(&deals, 1, 20, 1)), vec![lost]);
    // With no deals left, it can go.
    let res = ann.delete(&format!("/api/v1/deals/{lost}")).await;
    assert_eq!(res.status, 204);
    let res = ann.delete(&path).await;
    assert_eq!(res.status, 204);
    ann.get(&path).await.problem(404, "contact_not_found");
}
