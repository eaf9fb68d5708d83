use serde_json::json;
use uuid::Uuid;

use crate::helpers::{id_of, TestApp, TestUser};

fn org_path(user: &TestUser) -> String {
    format!("/api/v1/organizations/{}", user.org_id)
}

#[tokio::test]
async fn organizations_me_lists_memberships_with_the_callers_role() {
    let (app, ann) = TestApp::with_user("ann").await;
    let bob = app.member_of(&ann, "bob", "manager").await;
    let mine = bob.no_org().read("/api/v1/organizations/me").await;
    let items = mine["items"].as_array().unwrap().clone();
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
    let anonymous = app.get("/api/v1/organizations/me").await;
    anonymous.problem(401, "unauthenticated");
}

#[tokio::test]
async fn create_get_rename_and_delete_an_organization() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann").await.no_org();
    let res = ann
        .post("/api/v1/organizations", json!({"name": "  Second  "}))
        .await;
    let org = res.ok(201).clone();
    assert_eq!(org["name"], "Second");
    assert_eq!(org["role"], "owner");
    let path = format!("/api/v1/organizations/{}", org["id"].as_str().unwrap());
    assert_eq!(ann.read(&path).await["name"], "Second");
    let renamed = ann.patch(&path, json!({"name": "Renamed"})).await;
    assert_eq!(renamed.ok(200)["name"], "Renamed");
    ann.patch(&path, json!({"name": ""}))
        .await
        .problem(400, "organizations_name_invalid");
    ann.post("/api/v1/organizations", json!({}))
        .await
        .problem(400, "validation_failed");
    assert_eq!(ann.delete(&path).await.status, 204);
    ann.get(&path).await.problem(404, "organization_not_found");
}

#[tokio::test]
async fn an_organization_you_do_not_belong_to_is_404_and_bad_ids_400() {
    let app = TestApp::spawn().await;
    let ann = app.user("ann").await.no_org();
    let eve = app.user("eve").await.no_org();
    let path = org_path(&ann);
    let members = format!("{path}/members");
    for res in [
        eve.get(&path).await,
        eve.patch(&path, json!({"name": "pwned"})).await,
        eve.delete(&path).await,
        eve.get(&members).await,
        eve.post(
            &members,
            json!({"email": "eve@example.com", "role": "owner"}),
        )
        .await,
        ann.get(&format!("/api/v1/organizations/{}", Uuid::new_v4()))
            .await,
    ] {
        res.problem(404, "organization_not_found");
    }
    ann.get("/api/v1/organizations/not-a-uuid")
        .await
        .problem(400, "invalid_path_parameter");
    // Unchanged.
    assert_eq!(ann.read(&path).await["name"], "ann Inc");
    app.get(&path).await.problem(401, "unauthenticated");
}

/// An owner and an admin, a manager and a member of the owner's organization,
/// none of them sending X-Organization-Id (these routes take it from the path).
async fn staff(app: &TestApp) -> [TestUser; 4] {
    let owner = app.user("owner").await.no_org();
    let mut staff = vec![owner.clone()];
    for role in ["admin", "manager", "member"] {
        staff.push(app.member_of(&owner, role, role).await.no_org());
    }
    staff.try_into().ok().unwrap()
}

#[tokio::test]
async fn settings_follow_the_role_table() {
    let app = TestApp::spawn().await;
    let [owner, admin, manager, member] = staff(&app).await;
    let path = org_path(&owner);
    let members = format!("{path}/members");
    for (user, allowed) in [
        (&owner, true),
        (&admin, true),
        (&manager, false),
        (&member, false),
    ] {
        let res = user.patch(&path, json!({"name": "New name"})).await;
        if allowed {
            res.ok(200);
        } else {
            res.problem(403, "role_forbidden");
        }
    }
    // Every member may read the member list.
    let items = member.read(&members).await["items"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["email"], "owner@example.com");
    assert_eq!(items[0]["role"], "owner");
    assert!(items[0]["created_at"].is_string() && items[0]["user_id"].is_string());

    // Adding members: an invitation, whoever the address belongs to (the
    // cells and the invitee's side: tests/api/invitations.rs).
    let carol = app.user("carol").await;
    let add = |user: &TestUser, email: &str, role: &str| {
        user.post(&members, json!({"email": email, "role": role}))
    };
    for (user, email, role, status, code) in [
        (
            &manager,
            carol.email.as_str(),
            "member",
            403,
            "role_forbidden",
        ),
        (&member, &carol.email, "member", 403, "role_forbidden"),
        (
            &manager,
            "nobody@example.com",
            "member",
            403,
            "role_forbidden",
        ),
        (&admin, &carol.email, "owner", 403, "owner_required"),
        (&admin, &member.email, "admin", 409, "already_member"),
        (&admin, &carol.email, "emperor", 400, "validation_failed"),
    ] {
        add(user, email, role).await.problem(status, code);
    }
    let invited = add(&admin, "CAROL@example.com", "member").await;
    assert_eq!(invited.ok(201)["status"], "pending");
    assert_eq!(
        member.read(&members).await["items"]
            .as_array()
            .unwrap()
            .len(),
        4,
        "an invitation adds nobody"
    );
    let joined = carol.accept(id_of(&invited.body)).await;
    assert_eq!(joined["user_id"], carol.id.to_string());
    assert_eq!(joined["role"], "member");
    add(&admin, &carol.email, "member")
        .await
        .problem(409, "already_member");

    // Changing roles.
    let role = |actor: &TestUser, target: &TestUser, role: &str| {
        let path = format!("{path}/members/{}", target.id);
        actor.patch(&path, json!({"role": role}))
    };
    let stranger = app.user("stranger").await;
    for (actor, target, to, answer) in [
        (&manager, &member, "admin", Err((403, "role_forbidden"))),
        (&member, &member, "admin", Err((403, "role_forbidden"))),
        (&admin, &member, "owner", Err((403, "owner_required"))),
        (&admin, &owner, "member", Err((403, "owner_required"))),
        (&admin, &member, "manager", Ok(())),
        (&owner, &owner, "admin", Err((409, "last_owner"))),
        (&owner, &admin, "owner", Ok(())),
        // With a second owner, the first may step down.
        (&owner, &owner, "admin", Ok(())),
        (&admin, &stranger, "member", Err((404, "member_not_found"))),
    ] {
        let res = role(actor, target, to).await;
        match answer {
            Ok(()) => assert_eq!(res.ok(200)["role"], to),
            Err((status, code)) => {
                res.problem(status, code);
            }
        }
    }

    // Deleting the organization: owners only (owner is an admin now).
    for user in [&owner, &manager, &member] {
        user.delete(&path).await.problem(403, "owner_required");
    }
    admin.delete(&path).await.no_content();
}

#[tokio::test]
async fn removing_members() {
    let app = TestApp::spawn().await;
    let [owner, admin, manager, member] = staff(&app).await;
    let path = org_path(&owner);
    let remove = |actor: &TestUser, target: &TestUser, query: &str| {
        actor.delete(&format!("{path}/members/{}{query}", target.id))
    };
    for (actor, target, query, status, code) in [
        (&manager, &member, "", 403, "role_forbidden"),
        (&admin, &owner, "", 403, "owner_required"),
        (&owner, &owner, "", 409, "last_owner"),
        (
            &owner,
            &member,
            "?reassign_to=nope",
            400,
            "invalid_query_parameter",
        ),
        (
            &owner,
            &member,
            "?colour=blue",
            400,
            "invalid_query_parameter",
        ),
    ] {
        remove(actor, target, query).await.problem(status, code);
    }

    // The manager owns a contact and a deal: removal needs reassign_to.
    app.sql().await.execute(
        "WITH c AS (INSERT INTO crm.contacts (organization_id, owner_id, name) VALUES ($1, $2, 'Client') RETURNING id)
         INSERT INTO crm.deals (organization_id, contact_id, owner_id, title, amount, currency)
         SELECT $1, c.id, $2, 'Deal', 10, 'EUR' FROM c",
        &[&owner.org_id, &manager.id],
    )
    .await
    .unwrap();
    let stranger = app.user("stranger").await;
    let to = |user: &TestUser| format!("?reassign_to={}", user.id);
    for (target, query, status, code) in [
        (&manager, String::new(), 409, "member_owns_records"),
        (&manager, to(&manager), 400, "reassign_to_invalid"),
        (&manager, to(&stranger), 404, "reassign_to_not_found"),
        (&stranger, String::new(), 404, "member_not_found"),
    ] {
        remove(&admin, target, &query).await.problem(status, code);
    }
    remove(&admin, &manager, &to(&member)).await.no_content();
    let owners: Vec<Uuid> = app
        .column(
            "SELECT owner_id FROM crm.contacts UNION ALL SELECT owner_id FROM crm.deals",
            &[],
        )
        .await;
    assert_eq!(owners, vec![member.id, member.id]);
    // The removed manager no longer sees the organization.
    manager
        .get(&path)
        .await
        .problem(404, "organization_not_found");

    // Anyone may leave, but not with records: a member may not hand them to
    // someone else, so an admin removes them with reassign_to.
    remove(&member, &member, "")
        .await
        .problem(409, "member_owns_records");
    remove(&member, &member, &to(&admin))
        .await
        .problem(403, "role_forbidden");
    remove(&admin, &member, &to(&admin)).await.no_content();
    let carol = app.member_of(&owner, "carol", "member").await.no_org();
    remove(&carol, &carol, "").await.no_content();
    let list = owner.read(&format!("{path}/members")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
}
