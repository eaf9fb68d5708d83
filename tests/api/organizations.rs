use serde_json::json;
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser};

fn org_path(user: &TestUser) -> String {
    format!("/api/v1/organizations/{}", user.org_id)
}

#[tokio::test]
async fn organizations_me_lists_memberships_with_the_callers_role() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann").await;
    let bob = app.member_of(&ann, "bob", "manager").await;
    let res = bob.no_org().get("/api/v1/organizations/me").await;
    let items = res.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 2);
    let acme = items
        .iter()
        .find(|o| o["id"] == ann.org_id.to_string())
        .unwrap();
    assert_eq!(acme["role"], "manager");
    assert_eq!(acme["name"], "ann Inc");
    let own = items
        .iter()
        .find(|o| o["id"] == bob.org_id.to_string())
        .unwrap();
    assert_eq!(own["role"], "owner");
    app.get("/api/v1/organizations/me")
        .send()
        .await
        .problem(401, "unauthenticated");
}

#[tokio::test]
async fn create_get_rename_and_delete_an_organization() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann").await;
    let res = ann
        .no_org()
        .post("/api/v1/organizations", json!({"name": "  Second  "}))
        .await;
    let org = res.ok(201).clone();
    assert_eq!(org["name"], "Second");
    assert_eq!(org["role"], "owner");
    let path = format!("/api/v1/organizations/{}", org["id"].as_str().unwrap());
    let got = ann.no_org().get(&path).await;
    assert_eq!(got.ok(200)["name"], "Second");
    let renamed = ann.no_org().patch(&path, json!({"name": "Renamed"})).await;
    assert_eq!(renamed.ok(200)["name"], "Renamed");
    ann.no_org()
        .patch(&path, json!({"name": ""}))
        .await
        .problem(400, "organizations_name_invalid");
    ann.no_org()
        .post("/api/v1/organizations", json!({}))
        .await
        .problem(400, "validation_failed");
    assert_eq!(ann.no_org().delete(&path).await.status, 204);
    ann.no_org()
        .get(&path)
        .await
        .problem(404, "organization_not_found");
}

#[tokio::test]
async fn an_organization_you_do_not_belong_to_is_404_and_bad_ids_400() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann").await;
    let eve = app.user("eve").await;
    let p404 = |res: crate::helpers::TestResponse| {
        res.problem(404, "organization_not_found");
    };
    p404(eve.no_org().get(&org_path(&ann)).await);
    p404(
        eve.no_org()
            .patch(&org_path(&ann), json!({"name": "pwned"}))
            .await,
    );
    p404(eve.no_org().delete(&org_path(&ann)).await);
    p404(
        eve.no_org()
            .get(&format!("{}/members", org_path(&ann)))
            .await,
    );
    p404(
        eve.no_org()
            .post(
                &format!("{}/members", org_path(&ann)),
                json!({"email": "eve@example.com", "role": "owner"}),
            )
            .await,
    );
    p404(
        ann.no_org()
            .get(&format!("/api/v1/organizations/{}", Uuid::new_v4()))
            .await,
    );
    ann.no_org()
        .get("/api/v1/organizations/not-a-uuid")
        .await
        .problem(400, "invalid_path_parameter");
    // Unchanged.
    let got = ann.no_org().get(&org_path(&ann)).await;
    assert_eq!(got.ok(200)["name"], "ann Inc");
    app.get(&org_path(&ann))
        .send()
        .await
        .problem(401, "unauthenticated");
}

#[tokio::test]
async fn settings_follow_the_role_table() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    let admin = app.member_of(&owner, "admin", "admin").await;
    let manager = app.member_of(&owner, "manager", "manager").await;
    let member = app.member_of(&owner, "member", "member").await;
    let path = org_path(&owner);
    for (user, allowed) in [
        (&owner, true),
        (&admin, true),
        (&manager, false),
        (&member, false),
    ] {
        let res = user
            .no_org()
            .patch(&path, json!({"name": "New name"}))
            .await;
        if allowed {
            res.ok(200);
        } else {
            res.problem(403, "role_forbidden");
        }
    }
    // Every member may read the member list.
    let list = member.no_org().get(&format!("{path}/members")).await;
    let items = list.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["email"], "owner@example.com");
    assert_eq!(items[0]["role"], "owner");
    assert!(items[0]["created_at"].is_string() && items[0]["user_id"].is_string());

    // Adding members.
    let carol = app.user("carol").await;
    for user in [&manager, &member] {
        user.no_org()
            .post(
                &format!("{path}/members"),
                json!({"email": carol.email, "role": "member"}),
            )
            .await
            .problem(403, "role_forbidden");
    }
    // A manager cannot even learn whether an address is registered.
    manager
        .no_org()
        .post(
            &format!("{path}/members"),
            json!({"email": "nobody@example.com", "role": "member"}),
        )
        .await
        .problem(403, "role_forbidden");
    admin
        .no_org()
        .post(
            &format!("{path}/members"),
            json!({"email": carol.email, "role": "owner"}),
        )
        .await
        .problem(403, "owner_required");
    let added = admin
        .no_org()
        .post(
            &format!("{path}/members"),
            json!({"email": "CAROL@example.com", "role": "member"}),
        )
        .await;
    assert_eq!(added.ok(201)["user_id"], carol.id.to_string());
    assert_eq!(added.body["role"], "member");
    admin
        .no_org()
        .post(
            &format!("{path}/members"),
            json!({"email": carol.email, "role": "member"}),
        )
        .await
        .problem(409, "organization_members_user_id_taken");
    admin
        .no_org()
        .post(
            &format!("{path}/members"),
            json!({"email": "nobody@example.com", "role": "member"}),
        )
        .await
        .problem(404, "user_not_found");
    admin
        .no_org()
        .post(
            &format!("{path}/members"),
            json!({"email": carol.email, "role": "emperor"}),
        )
        .await
        .problem(400, "validation_failed");

    // Changing roles.
    let role = |actor: &TestUser, target: &TestUser, role: &str| {
        actor.no_org().patch(
            &format!("{path}/members/{}", target.id),
            json!({"role": role}),
        )
    };
    role(&manager, &member, "admin")
        .await
        .problem(403, "role_forbidden");
    role(&member, &member, "admin")
        .await
        .problem(403, "role_forbidden");
    role(&admin, &member, "owner")
        .await
        .problem(403, "owner_required");
    role(&admin, &owner, "member")
        .await
        .problem(403, "owner_required");
    assert_eq!(
        role(&admin, &member, "manager").await.ok(200)["role"],
        "manager"
    );
    role(&owner, &owner, "admin")
        .await
        .problem(409, "last_owner");
    assert_eq!(role(&owner, &admin, "owner").await.ok(200)["role"], "owner");
    // With a second owner, the first may step down.
    assert_eq!(role(&owner, &owner, "admin").await.ok(200)["role"], "admin");
    let stranger = app.user("stranger").await;
    role(&admin, &stranger, "member")
        .await
        .problem(404, "member_not_found");

    // Deleting the organization: owners only.
    for user in [&owner, &manager, &member] {
        // (owner is an admin now)
        user.no_org()
            .delete(&path)
            .await
            .problem(403, "owner_required");
    }
    assert_eq!(admin.no_org().delete(&path).await.status, 204);
}

#[tokio::test]
async fn removing_members() {
    let app = TestApp::spawn().await;
    let owner = app.user("owner").await;
    let admin = app.member_of(&owner, "admin", "admin").await;
    let manager = app.member_of(&owner, "manager", "manager").await;
    let member = app.member_of(&owner, "member", "member").await;
    let path = org_path(&owner);
    let remove = |actor: &TestUser, target: &TestUser, query: &str| {
        actor
            .no_org()
            .delete(&format!("{path}/members/{}{query}", target.id))
    };
    remove(&manager, &member, "")
        .await
        .problem(403, "role_forbidden");
    remove(&admin, &owner, "")
        .await
        .problem(403, "owner_required");
    remove(&owner, &owner, "").await.problem(409, "last_owner");
    remove(&owner, &member, "?reassign_to=nope")
        .await
        .problem(400, "invalid_query_parameter");
    remove(&owner, &member, "?colour=blue")
        .await
        .problem(400, "invalid_query_parameter");

    // The manager owns a contact and a deal: removal needs reassign_to.
    let db = app.sql().await;
    db.execute(
        "WITH c AS (INSERT INTO crm.contacts (organization_id, owner_id, name) VALUES ($1, $2, 'Client') RETURNING id)
         INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency)
         SELECT $1, c.id, $2, 'Deal', 10, 'EUR' FROM c",
        &[&owner.org_id, &manager.id],
    )
    .await
    .unwrap();
    remove(&admin, &manager, "")
        .await
        .problem(409, "member_owns_records");
    remove(&admin, &manager, &format!("?reassign_to={}", manager.id))
        .await
        .problem(400, "reassign_to_invalid");
    let stranger = app.user("stranger").await;
    remove(&admin, &manager, &format!("?reassign_to={}", stranger.id))
        .await
        .problem(404, "reassign_to_not_found");
    remove(&admin, &stranger, "")
        .await
        .problem(404, "member_not_found");
    let res = remove(&admin, &manager, &format!("?reassign_to={}", member.id)).await;
    assert_eq!(res.status, 204, "{}", res.body);
    let owners: Vec<Uuid> = db
        .query(
            "SELECT owner_id FROM crm.contacts UNION ALL SELECT owner_id FROM crm.deals",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(owners, vec![member.id, member.id]);
    // The removed manager no longer sees the organization.
    manager
        .no_org()
        .get(&path)
        .await
        .problem(404, "organization_not_found");

    // Anyone may leave, but not with records: a member may not hand them to
    // someone else, so an admin removes them with reassign_to.
    remove(&member, &member, "")
        .await
        .problem(409, "member_owns_records");
    remove(&member, &member, &format!("?reassign_to={}", admin.id))
        .await
        .problem(403, "role_forbidden");
    let res = remove(&admin, &member, &format!("?reassign_to={}", admin.id)).await;
    assert_eq!(res.status, 204, "{}", res.body);
    let carol = app.member_of(&owner, "carol", "member").await;
    assert_eq!(remove(&carol, &carol, "").await.status, 204);
    let list = owner.no_org().get(&format!("{path}/members")).await;
    assert_eq!(list.ok(200)["items"].as_array().unwrap().len(), 2);
}
