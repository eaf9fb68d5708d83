//! Invitations over HTTP (SPEC §16, issue #9): adding a member invites; the
//! invitee lists, accepts or declines; admins list and revoke. The rules cell
//! by cell are in tests/sql/08_invitations.sql.

use std::time::Duration;

use axum::http::header;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::helpers::{assert_fields, assert_timestamp, id_of, invite, TestApp, TestUser};

const INVITATION: &str = "created_at email expires_at id invited_by role status";
const MY_INVITATION: &str = "expires_at id invited_by organization role";
const MEMBER: &str = "created_at email name role user_id";

fn members(org: Uuid) -> String {
    format!("/api/v1/organizations/{org}/members")
}

fn invitations(org: Uuid) -> String {
    format!("/api/v1/organizations/{org}/invitations")
}

/// The caller's pending invitations (GET /invitations).
async fn mine(user: &TestUser) -> Vec<Value> {
    let body = user.no_org().read("/api/v1/invitations").await;
    assert_fields(&body, "items");
    body["items"].as_array().unwrap().clone()
}

/// The ids of the organizations the user belongs to.
async fn organizations_of(user: &TestUser) -> Vec<String> {
    let body = user.no_org().read("/api/v1/organizations/me").await;
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The issue: anyone could be made a member (even owner) of any organization
/// without being asked. Now they are only invited.
#[tokio::test]
async fn adding_a_stranger_as_owner_no_longer_makes_them_a_member() {
    let (app, mallory) = TestApp::with_user("mallory").await;
    let victim = app.user("victim").await;
    let res = mallory
        .no_org()
        .post(
            &members(mallory.org_id),
            json!({"email": victim.email, "role": "owner"}),
        )
        .await;
    assert_eq!(res.ok(201)["status"], "pending");
    assert_eq!(
        organizations_of(&victim).await,
        vec![victim.org_id.to_string()],
        "the victim belongs to their own organization only"
    );
    let list = mallory.no_org().read(&members(mallory.org_id)).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    // Nothing lets the victim act in mallory's organization (nor mallory in theirs).
    victim
        .in_org(mallory.org_id)
        .get("/api/v1/contacts")
        .await
        .problem(404, "organization_not_found");
    // The victim may say no.
    let invitation = mine(&victim).await[0].clone();
    assert_eq!(invitation["organization"]["name"], "mallory Inc");
    victim
        .answer(id_of(&invitation), "decline")
        .await
        .no_content();
    assert!(mine(&victim).await.is_empty());
    assert_eq!(organizations_of(&victim).await.len(), 1);
}

/// The issue: POST /organizations/{id}/members answered 404 user_not_found
/// for an unknown address and 201 with the person's name for a known one.
#[tokio::test]
async fn registered_and_unregistered_addresses_get_the_same_answer() {
    let (app, owner) = TestApp::with_user("owner").await;
    let known = app.user("known").await;
    let mut answers = Vec::new();
    for email in [known.email.as_str(), "unknown@example.com"] {
        let res = owner
            .no_org()
            .post(
                &members(owner.org_id),
                json!({"email": email, "role": "member"}),
            )
            .await;
        let body = res.ok(201).clone();
        assert_fields(&body, INVITATION);
        assert_timestamp(&body["created_at"]);
        assert_timestamp(&body["expires_at"]);
        assert_eq!(body["email"], email);
        assert_eq!(
            res.headers[header::LOCATION].to_str().unwrap(),
            format!("{}/{}", invitations(owner.org_id), id_of(&body))
        );
        let text = body.to_string();
        assert!(
            !text.contains("known\"") && !text.contains(&known.id.to_string()),
            "the answer names the user: {text}"
        );
        answers.push(body);
    }
    let strip = |v: &Value| {
        let mut v = v.clone();
        for field in ["id", "email", "created_at", "expires_at"] {
            v.as_object_mut().unwrap().remove(field);
        }
        v
    };
    assert_eq!(strip(&answers[0]), strip(&answers[1]));
    assert_eq!(
        strip(&answers[0]),
        json!({"role": "member", "status": "pending", "invited_by": owner.id})
    );
}

#[tokio::test]
async fn the_invitee_sees_accepts_and_becomes_a_member() {
    let (app, owner) = TestApp::with_user("owner").await;
    let ada = app.user("ada").await;
    let eve = app.user("eve").await;
    // Matched case-insensitively, with the inviter's name.
    let invitation = invite(&owner, " ADA@Example.com", "owner").await;
    let id = id_of(&invitation);
    let listed = mine(&ada).await;
    assert_eq!(listed.len(), 1);
    assert_fields(&listed[0], MY_INVITATION);
    assert_eq!(
        listed[0],
        json!({"id": id, "organization": {"id": owner.org_id, "name": "owner Inc"},
               "role": "owner", "invited_by": {"name": "owner"},
               "expires_at": invitation["expires_at"]})
    );
    assert!(mine(&eve).await.is_empty(), "not addressed to Eve");
    // Another user's invitation is 404, exactly like one that does not exist.
    for user in [&eve, &owner] {
        user.answer(id, "accept")
            .await
            .problem(404, "invitation_not_found");
        user.answer(id, "decline")
            .await
            .problem(404, "invitation_not_found");
    }
    ada.answer(Uuid::new_v4(), "accept")
        .await
        .problem(404, "invitation_not_found");
    ada.answer(Uuid::new_v4(), "decline")
        .await
        .problem(404, "invitation_not_found");

    let member = ada.accept(id).await;
    assert_fields(&member, MEMBER);
    assert_eq!(
        (&member["user_id"], &member["role"], &member["name"]),
        (&json!(ada.id), &json!("owner"), &json!("ada"))
    );
    let list = owner.no_org().read(&members(owner.org_id)).await;
    assert!(list["items"].as_array().unwrap().contains(&member));
    assert!(organizations_of(&ada)
        .await
        .contains(&owner.org_id.to_string()));
    ada.in_org(owner.org_id).read("/api/v1/contacts").await;
    assert!(mine(&ada).await.is_empty());
    // Once accepted, it is gone.
    ada.answer(id, "accept")
        .await
        .problem(410, "invitation_gone");
    ada.answer(id, "decline")
        .await
        .problem(410, "invitation_gone");
    let seen = owner
        .no_org()
        .read(&format!("{}/{id}", invitations(owner.org_id)))
        .await;
    assert_eq!(seen["status"], "accepted");
    // And she cannot be invited again.
    owner
        .no_org()
        .post(
            &members(owner.org_id),
            json!({"email": "ada@example.com", "role": "admin"}),
        )
        .await
        .problem(409, "already_member");
}

#[tokio::test]
async fn declining_joins_nothing_and_someone_who_registers_later_sees_theirs() {
    let (app, owner) = TestApp::with_user("owner").await;
    let first = invite(&owner, "late@example.com", "manager").await;
    // Not registered yet; then registers (over HTTP) and finds it.
    let late = app.register("late").await;
    let listed = mine(&late).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], first["id"]);
    late.answer(id_of(&first), "decline").await.no_content();
    assert_eq!(organizations_of(&late).await.len(), 1);
    late.answer(id_of(&first), "accept")
        .await
        .problem(410, "invitation_gone");
    // Invited again, they can still say yes.
    let second = invite(&owner, "late@example.com", "manager").await;
    assert_eq!(late.accept(id_of(&second)).await["role"], "manager");
}

#[tokio::test]
async fn inviting_again_replaces_the_pending_invitation() {
    let (app, owner) = TestApp::with_user("owner").await;
    let bob = app.user("bob").await;
    let first = invite(&owner, &bob.email, "member").await;
    let second = invite(&owner, "BOB@example.com", "admin").await;
    assert_ne!(first["id"], second["id"]);
    let listed = mine(&bob).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (&listed[0]["id"], &listed[0]["role"]),
        (&second["id"], &json!("admin"))
    );
    bob.answer(id_of(&first), "accept")
        .await
        .problem(410, "invitation_gone");
    let list = owner.no_org().read(&invitations(owner.org_id)).await;
    let statuses: Vec<(&Value, &Value)> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (&i["id"], &i["status"]))
        .collect();
    assert_eq!(
        statuses,
        vec![
            (&second["id"], &json!("pending")),
            (&first["id"], &json!("revoked"))
        ]
    );
    assert_eq!(bob.accept(id_of(&second)).await["role"], "admin");
}

#[tokio::test]
async fn admins_list_and_revoke_invitations() {
    let (app, owner, [admin, manager]) =
        TestApp::with_team([("admin", "admin"), ("manager", "manager")]).await;
    let (admin, manager) = (admin.no_org(), manager.no_org());
    let carol = app.user("carol").await;
    let list = invitations(owner.org_id);
    let at = |id: &Value| format!("{list}/{}", id.as_str().unwrap());
    let for_carol = invite(&owner, &carol.email, "member").await;
    let for_boss = invite(&owner, "boss@example.com", "owner").await;

    // The list: owner/admin, newest first, the list envelope.
    let page = admin.read(&list).await;
    assert_fields(&page, "items page page_size total total_exact next_cursor");
    assert_eq!(
        (&page["total"], &page["page"], &page["page_size"]),
        (&json!(4), &json!(1), &json!(20)),
        "two invitations of the team, carol's and the boss's: {page}"
    );
    assert_eq!(page["items"][0], for_boss);
    assert_eq!(page["items"][1], for_carol);
    let second = admin.read(&format!("{list}?page=2&page_size=1")).await;
    assert_eq!(second["items"][0], for_carol);
    // Cursor pages: the same rows, one at a time, then the end.
    let first = admin.read(&format!("{list}?page_size=1")).await;
    let cursor = first["next_cursor"].as_str().unwrap();
    let next = admin
        .read(&format!("{list}?page_size=1&cursor={cursor}"))
        .await;
    assert_eq!(
        (&next["items"][0], &next["page"]),
        (&for_carol, &Value::Null)
    );
    let rest = admin
        .read(&format!("{list}?page_size=100&cursor={cursor}"))
        .await;
    assert_eq!(
        (
            rest["items"].as_array().unwrap().len(),
            &rest["next_cursor"]
        ),
        (3, &Value::Null)
    );
    admin
        .get(&format!("{list}?page_size=101"))
        .await
        .problem(400, "invalid_query_parameter");
    for res in [
        manager.get(&list).await,
        manager.get(&at(&for_carol["id"])).await,
        manager.delete(&at(&for_carol["id"])).await,
    ] {
        res.problem(403, "role_forbidden");
    }
    assert_eq!(admin.read(&at(&for_carol["id"])).await, for_carol);
    admin
        .get(&format!("{list}/{}", Uuid::new_v4()))
        .await
        .problem(404, "invitation_not_found");

    // Revoking: an owner invitation takes an owner.
    admin
        .delete(&at(&for_boss["id"]))
        .await
        .problem(403, "owner_required");
    admin.delete(&at(&for_carol["id"])).await.no_content();
    assert_eq!(admin.read(&at(&for_carol["id"])).await["status"], "revoked");
    admin
        .delete(&at(&for_carol["id"]))
        .await
        .problem(410, "invitation_gone");
    assert!(mine(&carol).await.is_empty());
    carol
        .answer(id_of(&for_carol), "accept")
        .await
        .problem(410, "invitation_gone");
    owner
        .no_org()
        .delete(&at(&for_boss["id"]))
        .await
        .no_content();
    admin
        .delete(&format!("{list}/{}", Uuid::new_v4()))
        .await
        .problem(404, "invitation_not_found");
    // Another organization's invitation is not found from here.
    carol
        .no_org()
        .delete(&format!(
            "{}/{}",
            invitations(carol.org_id),
            id_of(&for_boss)
        ))
        .await
        .problem(404, "invitation_not_found");
}

#[tokio::test]
async fn invitations_expire_after_the_configured_ttl() {
    let app = TestApp::spawn_with(|c| c.invitation_ttl = Duration::from_secs(90)).await;
    let owner = app.user("owner").await;
    let dan = app.user("dan").await;
    let invitation = invite(&owner, &dan.email, "member").await;
    let parse = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(invitation[field].as_str().unwrap()).unwrap()
    };
    assert_eq!(
        (parse("expires_at") - parse("created_at")).num_seconds(),
        90
    );
    assert_eq!(mine(&dan).await.len(), 1);
    // Time passes (as the superuser: its expiry moves to just after its creation).
    app.sql()
        .await
        .execute(
            "UPDATE crm.invitations SET expires_at = created_at + interval '1 microsecond' WHERE id = $1",
            &[&id_of(&invitation)],
        )
        .await
        .unwrap();
    assert!(
        mine(&dan).await.is_empty(),
        "an expired invitation is not listed"
    );
    for answer in ["accept", "decline"] {
        dan.answer(id_of(&invitation), answer)
            .await
            .problem(410, "invitation_gone");
    }
    let seen = owner
        .no_org()
        .read(&format!(
            "{}/{}",
            invitations(owner.org_id),
            id_of(&invitation)
        ))
        .await;
    assert_eq!(seen["status"], "expired");
    // A new invitation replaces the expired one.
    let again = invite(&owner, &dan.email, "member").await;
    assert_eq!(dan.accept(id_of(&again)).await["role"], "member");
}

#[tokio::test]
async fn at_most_50_invitations_per_organization_per_hour() {
    let (app, owner) = TestApp::with_user("owner").await;
    let other = app.user("other").await;
    for n in 0..50 {
        invite(&owner, &format!("guest{n}@example.com"), "member").await;
    }
    let res = owner
        .no_org()
        .post(
            &members(owner.org_id),
            json!({"email": "guest50@example.com", "role": "member"}),
        )
        .await;
    res.problem(429, "rate_limited");
    let retry: u64 = res.headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((3500..=3600).contains(&retry), "Retry-After: {retry}");
    let list = owner.no_org().read(&invitations(owner.org_id)).await;
    assert_eq!(list["total"], 50, "the refused one was not made");
    // Per organization: another one is not affected.
    invite(&other, "guest50@example.com", "member").await;
}
