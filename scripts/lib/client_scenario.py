"""The whole scenario of SPEC §5, run through a client generated from the
server's own /openapi.json by openapi-python-client (scripts/openapi-check).

    python3 client_scenario.py BASE_URL      # e.g. http://127.0.0.1:18098

The generated package `minicrm_client` must be importable (PYTHONPATH). Every
request goes through a generated operation function (`sync_detailed`) with the
generated models, a `Client` for the public endpoints and an
`AuthenticatedClient` (Bearer token) for the rest; there is no hand-written
HTTP here. Every answer must have the expected status and a body parsed into
the model the document declares for that status; an answer whose status the
document does not declare for the operation (the generated function then
returns no parsed body) fails the check.

A check that fails is reported and the run goes on when the following steps
do not depend on it (a step whose answer is unusable stops the run). The exit
status is 1 when any check failed.
"""

import datetime
import importlib
import io
import inspect
import pkgutil
import sys
import traceback
import types
import uuid

import attrs
import minicrm_client.api
from minicrm_client import AuthenticatedClient, Client

# The operations, by operationId (the generator puts each into api/<tag>/<operationId>.py).
OPERATIONS = """
    health_live health_ready metrics_get auth_register auth_login auth_refresh auth_logout users_me
    organizations_create organizations_list_mine organizations_get organizations_update organizations_delete
    members_list invitations_create members_update members_remove
    invitations_list invitations_get invitations_revoke invitations_list_mine invitations_accept invitations_decline
    contacts_list contacts_create contacts_get contacts_update contacts_delete
    contacts_export contacts_import deals_export
    deals_list deals_create deals_get deals_update deals_delete
    tasks_list tasks_create tasks_get tasks_update tasks_delete
    activities_list activities_create analytics_summary analytics_funnel
    deals_stage_history analytics_velocity analytics_forecast
    pipelines_list pipelines_create pipelines_get pipelines_update pipelines_delete
    pipeline_stages_create pipeline_stages_update pipeline_stages_delete
    trash_list trash_restore trash_erase
""".split()
_generated = {}
for _tag in pkgutil.iter_modules(minicrm_client.api.__path__):
    _pkg = importlib.import_module(f"minicrm_client.api.{_tag.name}")
    for _op in pkgutil.iter_modules(_pkg.__path__):
        _generated[_op.name] = importlib.import_module(f"minicrm_client.api.{_tag.name}.{_op.name}")
_missing = [name for name in OPERATIONS if name not in _generated]
if _missing:
    sys.exit(f"the generated client lacks the operations {_missing}; it has {sorted(_generated)}")
_extra = sorted(set(_generated) - set(OPERATIONS))
if _extra:
    print(f"note: operations the scenario does not use: {_extra}")
op = types.SimpleNamespace(**{name: _generated[name] for name in OPERATIONS})
_org_header_type = str(inspect.signature(op.contacts_list.sync_detailed).parameters["x_organization_id"].annotation)

from minicrm_client.models import (
    ActivityType,
    ChangeRoleRequest,
    CommentPayload,
    ContactPatch,
    DealPatch,
    DealStatus,
    DealsExportOrder,
    DealsExportOrderBy,
    DealsListOrder,
    DealsListOrderBy,
    InvitationRequest,
    InvitationStatus,
    LoginRequest,
    MemberRole,
    NewActivity,
    NewContact,
    NewDeal,
    NewPipeline,
    NewPipelineStage,
    NewStage,
    PipelinePatch,
    StagePatch,
    NewTask,
    OrganizationRequest,
    Problem,
    RefreshRequest,
    RegisterRequest,
    TaskPatch,
)
from minicrm_client.types import UNSET, File

BASE = sys.argv[1].rstrip("/")
RUN = uuid.uuid4().hex[:8]
PASSWORD = "correct horse battery staple"
TODAY = datetime.datetime.now(datetime.timezone.utc).date()

failures: list[str] = []
notes: list[str] = []
checks = 0
step_name = "start"


class Stop(Exception):
    """A step whose answer the rest of the scenario needs went wrong."""


def step(name: str) -> None:
    global step_name
    step_name = name
    print(f"-- {name}", flush=True)


def check(ok: bool, what: str) -> bool:
    global checks
    checks += 1
    if not ok:
        failures.append(f"[{step_name}] {what}")
        print(f"   FAIL {what}", flush=True)
    return ok


def eq(got, want, what: str) -> bool:
    return check(got == want, f"{what}: got {got!r}, want {want!r}")


def expect(resp, status: int, what: str, model: type | None = None, soft: bool = False):
    """The answer has this status and its body parsed into a generated model
    (Problem for an error status, any other model of the package otherwise).
    A status the document does not declare for the operation leaves the body
    unparsed (None). With soft=True that is reported and None returned."""
    global checks
    checks += 1
    got = int(resp.status_code)
    parsed = resp.parsed
    body = resp.content[:300].decode(errors="replace")
    if got == status and parsed is None and soft:
        msg = f"{what}: status {got} is not declared for this operation, so the client did not parse it (body: {body})"
        failures.append(f"[{step_name}] {msg}")
        print(f"   FAIL {msg}", flush=True)
        return None
    if model is None:
        ok = (type(parsed).__module__.startswith("minicrm_client.models.")
              and (isinstance(parsed, Problem) == (status >= 400)))
    else:
        ok = isinstance(parsed, model)
    if got != status or not ok:
        undeclared = " (a status the document does not declare for this operation)" if parsed is None else ""
        msg = f"{what}: got {got} {type(parsed).__name__}{undeclared}, want {status} (body: {body})"
        failures.append(f"[{step_name}] {msg}")
        print(f"   FAIL {msg}", flush=True)
        raise Stop(msg)
    return parsed


def expect_empty(resp, status: int, what: str) -> None:
    """An answer without a body (204)."""
    global checks
    checks += 1
    got = int(resp.status_code)
    if got != status:
        msg = f"{what}: got {got}, want {status} (body: {resp.content[:300].decode(errors='replace')})"
        failures.append(f"[{step_name}] {msg}")
        print(f"   FAIL {msg}", flush=True)
        raise Stop(msg)


def problem(resp, status: int, code: str | None, what: str) -> Problem | None:
    """An application/problem+json answer, parsed into the generated Problem model
    (None, reported, when the document does not declare that status)."""
    p = expect(resp, status, what, Problem, soft=True)
    eq(resp.headers.get("content-type", "").split(";")[0], "application/problem+json", f"{what}: content type")
    if p is None:
        return None
    eq(p.status, status, f"{what}: problem status")
    check(isinstance(p.code, str) and p.code != "", f"{what}: problem has a code")
    check(isinstance(p.title, str) and isinstance(p.detail, str), f"{what}: problem has title and detail")
    if code is not None:
        eq(p.code, code, f"{what}: problem code")
    return p


def location(resp, path: str, what: str) -> None:
    """SPEC §15 (not §5): `Location` on every 201. Reported, not counted as a failure."""
    loc = resp.headers.get("location", "")
    if not loc.endswith(path):
        notes.append(f"[{step_name}] {what}: no Location header ending with {path} (got {loc!r})")


def org_header(org):
    """The X-Organization-Id argument, of the type the generated functions declare
    for it (UUID for a `format: uuid` schema, str for a plain string)."""
    return org if "UUID" in _org_header_type else str(org)


def public() -> Client:
    return Client(base_url=BASE, raise_on_unexpected_status=False, timeout=30)


def authed(token: str) -> AuthenticatedClient:
    return AuthenticatedClient(base_url=BASE, token=token, raise_on_unexpected_status=False, timeout=30)


def register(name: str, org_name: str):
    """POST /auth/register; returns (response model, access token, refresh token)."""
    email = f"{name}.{RUN}@example.com"
    body = RegisterRequest(email=email, password=PASSWORD, name=name.title(), organization_name=org_name)
    resp = op.auth_register.sync_detailed(client=public(), body=body)
    reg = expect(resp, 201, f"register {name}")
    eq(reg.user.email, email, f"register {name}: user.email")
    eq(reg.user.name, name.title(), f"register {name}: user.name")
    eq(reg.organization.name, org_name, f"register {name}: organization.name")
    eq(reg.organization.role, MemberRole.OWNER, f"register {name}: organization.role")
    # The tokens are typed fields of the generated model, not leftovers in additional_properties.
    access = getattr(reg, "access_token", None)
    refresh = getattr(reg, "refresh_token", None)
    if check(isinstance(access, str) and isinstance(refresh, str),
             f"register {name}: the generated RegisterResponse has no typed access_token/refresh_token "
             f"(its fields: {[f.name for f in attrs.fields(type(reg)) if f.name != 'additional_properties']})"):
        eq(getattr(reg, "token_type", None), "bearer", f"register {name}: token_type")
        expires = getattr(reg, "expires_in", None)
        check(isinstance(expires, int) and expires > 0, f"register {name}: expires_in > 0 ({expires!r})")
    else:
        # Keep going with a login (itself a step of the scenario) to find more problems.
        pair = expect(op.auth_login.sync_detailed(client=public(), body=LoginRequest(email=email, password=PASSWORD)),
                      200, f"login {name} (after register gave no tokens)")
        access, refresh = pair.access_token, pair.refresh_token
    return reg, access, refresh


def scenario() -> None:
    step("service endpoints: /healthz, /readyz, /metrics")
    eq(int(op.health_live.sync_detailed(client=public()).status_code), 200, "GET /healthz")
    eq(int(op.health_ready.sync_detailed(client=public()).status_code), 200, "GET /readyz")
    m = op.metrics_get.sync_detailed(client=public())
    eq(int(m.status_code), 200, "GET /metrics")

    step("1. Ann registers and owns her first organization")
    ann_reg, ann_access, ann_refresh = register("ann", "Ann's Org")
    ann = authed(ann_access)
    first_org = ann_reg.organization.id
    p = problem(op.auth_register.sync_detailed(client=public(), body=RegisterRequest(
        email=f"ANN.{RUN}@EXAMPLE.COM", password=PASSWORD, name="Again", organization_name="Again")),
        409, None, "register the same email in upper case (R10)")
    if p:
        check("email" in p.code, f"R10 problem code names the email ({p.code!r})")
    problem(op.auth_register.sync_detailed(client=public(), body=RegisterRequest(
        email=f"short.{RUN}@example.com", password="short", name="Short", organization_name="Short")),
        400, None, "register with a 5-character password")

    step("users/me")
    me = expect(op.users_me.sync_detailed(client=ann), 200, "GET /users/me")
    eq(me.id, ann_reg.user.id, "users/me id")
    eq(me.email, ann_reg.user.email, "users/me email")
    problem(op.users_me.sync_detailed(client=authed("not-a-jwt")), 401, None, "GET /users/me with a bad token")

    step("login, refresh (rotation and reuse detection), logout")
    ann_email = ann_reg.user.email
    problem(op.auth_login.sync_detailed(client=public(), body=LoginRequest(email=ann_email, password="wrong password")),
            401, None, "login with a wrong password")
    problem(op.auth_login.sync_detailed(client=public(), body=LoginRequest(email=f"nobody.{RUN}@example.com",
                                                                         password=PASSWORD)),
            401, None, "login with an unknown email")
    pair = expect(op.auth_login.sync_detailed(client=public(), body=LoginRequest(email=ann_email.upper(), password=PASSWORD)),
                  200, "login")
    eq(pair.token_type, "bearer", "login token_type")
    check(pair.expires_in > 0, "login expires_in > 0")
    eq(int(op.users_me.sync_detailed(client=authed(pair.access_token)).status_code), 200, "users/me with the login token")
    new = expect(op.auth_refresh.sync_detailed(client=public(), body=RefreshRequest(refresh_token=pair.refresh_token)),
                 200, "refresh")
    check(new.refresh_token != pair.refresh_token, "refresh rotates the refresh token")
    problem(op.auth_refresh.sync_detailed(client=public(), body=RefreshRequest(refresh_token=pair.refresh_token)),
            401, None, "refresh with the already-used refresh token")
    problem(op.auth_refresh.sync_detailed(client=public(), body=RefreshRequest(refresh_token=new.refresh_token)),
            401, None, "refresh with the rotated token after reuse revoked the login (theft detection)")
    problem(op.auth_refresh.sync_detailed(client=public(), body=RefreshRequest(refresh_token=ann_access)),
            401, None, "an access token is not a refresh token")
    pair = expect(op.auth_login.sync_detailed(client=public(), body=LoginRequest(email=ann_email, password=PASSWORD)),
                  200, "login again")
    expect_empty(op.auth_logout.sync_detailed(client=public(), body=RefreshRequest(refresh_token=pair.refresh_token)),
                 204, "logout")
    problem(op.auth_refresh.sync_detailed(client=public(), body=RefreshRequest(refresh_token=pair.refresh_token)),
            401, None, "refresh after logout")

    step("2. Ann creates a second organization; get, rename, list hers")
    resp = op.organizations_create.sync_detailed(client=ann, body=OrganizationRequest(name="Second Org"))
    org2 = expect(resp, 201, "POST /organizations")
    eq(org2.name, "Second Org", "organization name")
    eq(org2.role, MemberRole.OWNER, "organization role")
    location(resp, f"/organizations/{org2.id}", "POST /organizations")
    org = org2.id
    got = expect(op.organizations_get.sync_detailed(org, client=ann), 200,
                 "GET /organizations/{org_id}")
    eq(got.id, org, "organization id")
    renamed = expect(op.organizations_update.sync_detailed(org, client=ann, body=OrganizationRequest(name="Engines Ltd")),
                     200, "PATCH /organizations/{org_id}")
    eq(renamed.name, "Engines Ltd", "renamed organization")
    mine = expect(op.organizations_list_mine.sync_detailed(client=ann), 200,
                  "GET /organizations/me")
    eq(sorted(str(o.id) for o in mine.items), sorted([str(first_org), str(org)]), "Ann's organizations")
    eq({str(o.id): o.role for o in mine.items}.get(str(org)), MemberRole.OWNER, "Ann's role in the second one")

    step("3. Ann adds Bob as a member and Carl as a manager (SPEC §16: they are invited and accept), "
         "then makes Carl an admin")
    bob_reg, bob_access, _ = register("bob", "Bob's Org")
    bob = authed(bob_access)
    carl_reg, carl_access, _ = register("carl", "Carl's Org")
    carl = authed(carl_access)
    resp = op.invitations_create.sync_detailed(org, client=ann, body=InvitationRequest(email=bob_reg.user.email,
                                                                                   role=MemberRole.MEMBER))
    invited = expect(resp, 201, "POST /organizations/{org_id}/members (Bob)")
    eq(invited.email, bob_reg.user.email, "invitation email")
    eq(invited.role, MemberRole.MEMBER, "invitation role")
    eq(invited.status, InvitationStatus.PENDING, "invitation status")
    eq(invited.invited_by, ann_reg.user.id, "invitation invited_by")
    location(resp, f"/organizations/{org}/invitations/{invited.id}", "POST /organizations/{org_id}/members")
    got = expect(op.invitations_get.sync_detailed(org, invited.id, client=ann), 200,
                 "GET /organizations/{org_id}/invitations/{id}")
    eq(got.id, invited.id, "the invitation at its Location")
    # An unregistered address gets the same answer; Ann revokes it.
    stranger = expect(op.invitations_create.sync_detailed(org, client=ann, body=InvitationRequest(
        email=f"nobody.{RUN}@example.com", role=MemberRole.MEMBER)), 201, "invite an unregistered address")
    eq(stranger.status, InvitationStatus.PENDING, "the unregistered address's invitation is pending too")
    expect_empty(op.invitations_revoke.sync_detailed(org, stranger.id, client=ann), 204,
                 "DELETE /organizations/{org_id}/invitations/{id}")
    problem(op.invitations_revoke.sync_detailed(org, stranger.id, client=ann), 410, "invitation_gone",
            "revoke a revoked invitation")
    waiting = expect(op.invitations_list_mine.sync_detailed(client=bob), 200, "GET /invitations (Bob)")
    eq([str(i.id) for i in waiting.items], [str(invited.id)], "Bob's invitations")
    if waiting.items:
        eq(waiting.items[0].organization.name, "Engines Ltd", "the inviting organization's name")
        eq(waiting.items[0].invited_by.name, ann_reg.user.name, "the inviter's name")
    problem(op.invitations_accept.sync_detailed(invited.id, client=carl), 404, "invitation_not_found",
            "Carl cannot accept Bob's invitation")
    added = expect(op.invitations_accept.sync_detailed(invited.id, client=bob), 200,
                   "POST /invitations/{id}/accept (Bob)")
    eq(added.user_id, bob_reg.user.id, "member user_id")
    eq(added.role, MemberRole.MEMBER, "member role")
    problem(op.invitations_accept.sync_detailed(invited.id, client=bob), 410, "invitation_gone", "accept twice")
    first = expect(op.invitations_create.sync_detailed(org, client=ann, body=InvitationRequest(
        email=carl_reg.user.email, role=MemberRole.MANAGER)), 201, "POST /organizations/{org_id}/members (Carl)")
    expect_empty(op.invitations_decline.sync_detailed(first.id, client=carl), 204,
                 "POST /invitations/{id}/decline (Carl says no at first)")
    again = expect(op.invitations_create.sync_detailed(org, client=ann, body=InvitationRequest(
        email=carl_reg.user.email, role=MemberRole.MANAGER)), 201, "invite Carl again")
    expect(op.invitations_accept.sync_detailed(again.id, client=carl), 200, "Carl accepts")
    problem(op.invitations_create.sync_detailed(org, client=ann, body=InvitationRequest(
        email=carl_reg.user.email, role=MemberRole.MANAGER)), 409, "already_member", "invite a member")
    problem(op.invitations_create.sync_detailed(org, client=bob, body=InvitationRequest(
        email=f"x.{RUN}@example.com", role=MemberRole.MEMBER)), 403, None, "a member may not add members")
    listed = expect(op.invitations_list.sync_detailed(org, client=ann), 200,
                    "GET /organizations/{org_id}/invitations")
    eq(listed.total, 4, "the organization's invitations")
    eq([i.status for i in listed.items],
       [InvitationStatus.ACCEPTED, InvitationStatus.DECLINED, InvitationStatus.REVOKED, InvitationStatus.ACCEPTED],
       "their statuses, newest first")
    promoted = expect(op.members_update.sync_detailed(org, carl_reg.user.id, client=ann,
                                                   body=ChangeRoleRequest(role=MemberRole.ADMIN)),
                      200, "PATCH /organizations/{org_id}/members/{user_id}")
    eq(promoted.role, MemberRole.ADMIN, "Carl's new role")
    problem(op.members_update.sync_detailed(org, ann_reg.user.id, client=carl, body=ChangeRoleRequest(role=MemberRole.MEMBER)),
            403, None, "an admin may not demote the owner")
    members = expect(op.members_list.sync_detailed(org, client=bob), 200,
                     "GET /organizations/{org_id}/members")
    eq({str(m.user_id): m.role for m in members.items},
       {str(ann_reg.user.id): MemberRole.OWNER, str(bob_reg.user.id): MemberRole.MEMBER,
        str(carl_reg.user.id): MemberRole.ADMIN}, "members and roles")
    eq({m.email for m in members.items}, {ann_reg.user.email, bob_reg.user.email, carl_reg.user.email}, "member emails")
    bobs = expect(op.organizations_list_mine.sync_detailed(client=bob), 200,
                  "GET /organizations/me (Bob)")
    eq({str(o.id): o.role for o in bobs.items}.get(str(org)), MemberRole.MEMBER, "Bob sees the organization as member")

    step("4. Bob creates a contact; get, update, search")
    resp = op.contacts_create.sync_detailed(client=bob, x_organization_id=org_header(org), body=NewContact(
        name="Ada Lovelace", email="ada@engines.example", phone="+44 20 0000"))
    contact = expect(resp, 201, "POST /contacts")
    eq(contact.owner_id, bob_reg.user.id, "contact owner_id")
    eq(contact.organization_id, org, "contact organization_id")
    eq(contact.email, "ada@engines.example", "contact email")
    location(resp, f"/contacts/{contact.id}", "POST /contacts")
    got = expect(op.contacts_get.sync_detailed(contact.id, client=ann, x_organization_id=org_header(org)), 200,
                 "GET /contacts/{id}")
    eq(got.name, "Ada Lovelace", "contact name")
    upd = expect(op.contacts_update.sync_detailed(contact.id, client=bob, x_organization_id=org_header(org),
                                               body=ContactPatch(phone="+44 20 1111")),
                 200, "PATCH /contacts/{id}")
    eq(upd.phone, "+44 20 1111", "contact phone after PATCH")
    eq(upd.email, "ada@engines.example", "PATCH is partial: email kept")
    grace = expect(op.contacts_create.sync_detailed(client=ann, x_organization_id=org_header(org), body=NewContact(name="Grace Hopper")),
                   201, "POST /contacts (Ann, no email)")
    check(grace.email in (None, UNSET), f"contact without email: email is {grace.email!r}")
    problem(op.contacts_create.sync_detailed(client=bob, x_organization_id=org_header(org),
                                          body=NewContact(name="Someone", owner_id=ann_reg.user.id)),
            403, None, "a member may not create a contact owned by another member")
    page = expect(op.contacts_list.sync_detailed(client=ann, x_organization_id=org_header(org), search="ADA"), 200,
                  "GET /contacts?search=ADA")
    eq([c.id for c in page.items], [contact.id], "search finds Ada only")
    eq((page.page, page.page_size, page.total), (1, 20, 1), "page, page_size, total")
    page = expect(op.contacts_list.sync_detailed(client=ann, x_organization_id=org_header(org), owner_id=ann_reg.user.id), 200,
                  "GET /contacts?owner_id=Ann")
    eq([c.id for c in page.items], [grace.id], "owner filter")
    problem(op.contacts_list.sync_detailed(client=bob, x_organization_id=org_header(org), owner_id=ann_reg.user.id),
            403, None, "a member may not filter by another member's owner_id")
    problem(op.contacts_list.sync_detailed(client=ann, x_organization_id=org_header(org), page_size=500),
            400, None, "GET /contacts?page_size=500")

    step("4b. versions and ETags (SPEC §11): a conditional GET, a PATCH with If-Match, a stale ETag")
    resp = op.contacts_get.sync_detailed(contact.id, client=bob, x_organization_id=org_header(org))
    got = expect(resp, 200, "GET /contacts/{id}")
    tag = resp.headers.get("etag")
    eq(tag, f'"{got.version}"', "the ETag is the contact's version")
    expect_empty(op.contacts_get.sync_detailed(contact.id, client=bob, x_organization_id=org_header(org),
                                               if_none_match=tag),
                 304, "GET /contacts/{id} with If-None-Match: the current ETag")
    resp = op.contacts_update.sync_detailed(contact.id, client=bob, x_organization_id=org_header(org), if_match=tag,
                                            body=ContactPatch(phone="+44 20 2222"))
    upd = expect(resp, 200, "PATCH /contacts/{id} with If-Match: the current ETag")
    eq((upd.version, resp.headers.get("etag")), (got.version + 1, f'"{got.version + 1}"'), "a new version and ETag")
    problem(op.contacts_update.sync_detailed(contact.id, client=bob, x_organization_id=org_header(org), if_match=tag,
                                             body=ContactPatch(phone="+44 20 3333")),
            412, "precondition_failed", "PATCH /contacts/{id} with the replaced ETag")
    eq(expect(op.contacts_get.sync_detailed(contact.id, client=bob, x_organization_id=org_header(org)), 200,
              "GET /contacts/{id} after the refused PATCH").phone, "+44 20 2222", "the refused PATCH changed nothing")

    step("5. Bob creates a deal on the contact; Ann one on Grace")
    resp = op.deals_create.sync_detailed(client=bob, x_organization_id=org_header(org), body=NewDeal(
        contact_id=contact.id, title="Analytical Engine", amount="5000", currency="GBP"))
    deal = expect(resp, 201, "POST /deals")
    eq((deal.status, deal.stage, deal.amount, deal.currency, deal.owner_id),
       (DealStatus.NEW, "qualification", "5000.00", "GBP", bob_reg.user.id), "new deal")
    location(resp, f"/deals/{deal.id}", "POST /deals")
    deal2 = expect(op.deals_create.sync_detailed(client=ann, x_organization_id=org_header(org), body=NewDeal(
        contact_id=grace.id, title="Compiler", amount="120.5", currency="USD")), 201,
        "POST /deals (Ann)")
    eq(deal2.amount, "120.50", "amount with two decimals")
    problem(op.deals_create.sync_detailed(client=ann, x_organization_id=org_header(org), body=NewDeal(
        contact_id=grace.id, title="Bad", amount="1", currency="usd")), 400, None, "a lower-case currency")
    problem(op.deals_update.sync_detailed(deal2.id, client=ann, x_organization_id=org_header(org), body=DealPatch(
        amount="0", status=DealStatus.WON)), 400, None, "won with amount 0 (R1)")

    step("6. Bob creates a task on his deal")
    tomorrow = TODAY + datetime.timedelta(days=1)
    resp = op.tasks_create.sync_detailed(client=bob, x_organization_id=org_header(org), body=NewTask(
        deal_id=deal.id, title="Send the proposal", description="With drawings", due_date=tomorrow))
    task = expect(resp, 201, "POST /tasks")
    eq((task.deal_id, task.is_done, task.due_date, task.description),
       (deal.id, False, tomorrow, "With drawings"), "new task")
    location(resp, f"/tasks/{task.id}", "POST /tasks")
    problem(op.tasks_create.sync_detailed(client=bob, x_organization_id=org_header(org), body=NewTask(
        deal_id=deal.id, title="Too late", due_date=TODAY - datetime.timedelta(days=1))), 400, None,
        "a due date in the past (R4)")
    problem(op.tasks_create.sync_detailed(client=bob, x_organization_id=org_header(org), body=NewTask(
        deal_id=deal2.id, title="Not mine", due_date=tomorrow)), 403, None, "a task on another user's deal (R3)")
    got = expect(op.tasks_get.sync_detailed(task.id, client=ann, x_organization_id=org_header(org)), 200,
                 "GET /tasks/{id}")
    eq(got.title, "Send the proposal", "task title")

    step("7. the deal moves: stage, status, a comment, won and closed, a rollback")

    def patch(who, body, what):
        return expect(op.deals_update.sync_detailed(deal.id, client=who, x_organization_id=org_header(org), body=body),
                      200, what)

    eq(patch(bob, DealPatch(stage="proposal"), "stage → proposal").stage, "proposal", "stage")
    eq(patch(bob, DealPatch(status=DealStatus.IN_PROGRESS), "status → in_progress").status, DealStatus.IN_PROGRESS,
       "status")
    resp = op.activities_create.sync_detailed(deal.id, client=bob, x_organization_id=org_header(org), body=NewActivity(
        type_=ActivityType.COMMENT, payload=CommentPayload(text="They loved the drawings")))
    comment = expect(resp, 201, "POST /deals/{deal_id}/activities")
    eq((comment.type_, comment.author_id, comment.payload.to_dict()),
       (ActivityType.COMMENT, bob_reg.user.id, {"text": "They loved the drawings"}), "comment")
    problem(op.activities_create.sync_detailed(deal.id, client=bob, x_organization_id=org_header(org), body=NewActivity(
        type_=ActivityType.SYSTEM, payload=CommentPayload(text="x"))), 400, None,
        "only comments can be created (R9)")
    problem(op.activities_create.sync_detailed(deal.id, client=bob, x_organization_id=org_header(org), body=NewActivity(
        type_=ActivityType.COMMENT, payload=CommentPayload(text=""))), 400, None,
        "a comment needs a non-empty text (R9)")
    won = patch(bob, DealPatch(status=DealStatus.WON, stage="closed"), "won and closed")
    eq((won.status, won.stage), (DealStatus.WON, "closed"), "won deal")
    problem(op.deals_update.sync_detailed(deal.id, client=bob, x_organization_id=org_header(org),
                                       body=DealPatch(stage="negotiation")),
            403, "stage_rollback_forbidden", "a member moves the stage back (R5)")
    eq(patch(ann, DealPatch(stage="negotiation"), "the owner moves it back").stage, "negotiation",
       "stage after rollback")
    done = expect(op.tasks_update.sync_detailed(task.id, client=bob, x_organization_id=org_header(org), body=TaskPatch(is_done=True)),
                  200, "PATCH /tasks/{id}")
    eq(done.is_done, True, "task done")

    step("8. the timeline, newest first")
    page = expect(op.activities_list.sync_detailed(deal.id, client=bob, x_organization_id=org_header(org)), 200,
                  "GET /deals/{deal_id}/activities")
    eq((page.page, page.page_size, page.total), (1, 20, 8), "timeline page")
    got = [(a.type_.value, a.payload.to_dict(), a.author_id) for a in page.items]
    for a in page.items:
        eq((a.deal_id, a.organization_id), (deal.id, org), "activity deal and organization")
    bob_id, ann_id = bob_reg.user.id, ann_reg.user.id
    eq(got[:7], [
        ("stage_changed", {"from": "closed", "to": "negotiation"}, ann_id),
        ("stage_changed", {"from": "proposal", "to": "closed"}, bob_id),
        ("status_changed", {"from": "in_progress", "to": "won"}, bob_id),
        ("comment", {"text": "They loved the drawings"}, bob_id),
        ("status_changed", {"from": "new", "to": "in_progress"}, bob_id),
        ("stage_changed", {"from": "qualification", "to": "proposal"}, bob_id),
        ("task_created", {"task_id": str(task.id), "title": "Send the proposal", "due_date": tomorrow.isoformat()},
         bob_id),
    ], "timeline (R6, R7)")
    eq([g[0] for g in got[7:]], ["system"], "the oldest activity is the creation")
    page = expect(op.activities_list.sync_detailed(deal.id, client=bob, x_organization_id=org_header(org), page=2, page_size=3), 200,
                  "GET /deals/{deal_id}/activities?page=2&page_size=3")
    eq([a.type_.value for a in page.items], ["comment", "status_changed", "stage_changed"], "timeline page 2")
    eq((page.page, page.page_size, page.total), (2, 3, 8), "timeline page 2: page, page_size, total")

    step("9. lists with filters")
    page = expect(op.deals_list.sync_detailed(client=ann, x_organization_id=org_header(org), status=[DealStatus.WON, DealStatus.NEW],
                                           order_by=DealsListOrderBy.AMOUNT, order=DealsListOrder.ASC), 200,
                  "GET /deals?status=won&status=new&order_by=amount&order=asc")
    eq([d.id for d in page.items], [deal2.id, deal.id], "deals by amount ascending")
    page = expect(op.deals_list.sync_detailed(client=ann, x_organization_id=org_header(org), status=[DealStatus.WON],
                                           stage="negotiation", min_amount="1000", contact_id=contact.id),
                  200, "GET /deals?status=won&stage=negotiation&min_amount=1000&contact_id=")
    eq([d.id for d in page.items], [deal.id], "filtered deals")
    page = expect(op.deals_list.sync_detailed(client=bob, x_organization_id=org_header(org), owner_id=bob_reg.user.id, max_amount="200"),
                  200, "GET /deals?owner_id=Bob&max_amount=200")
    eq(page.total, 0, "Bob has no deal under 200")
    problem(op.deals_list.sync_detailed(client=ann, x_organization_id=org_header(org), page_size=500), 400, None,
            "GET /deals?page_size=500")
    got = expect(op.deals_get.sync_detailed(deal.id, client=carl, x_organization_id=org_header(org)), 200,
                 "GET /deals/{id}")
    eq((got.status, got.stage, got.amount), (DealStatus.WON, "negotiation", "5000.00"), "the deal now")
    eq((got.closed_at is not None, got.expected_close_date), (True, None), "closed_at set by the database")
    page = expect(op.tasks_list.sync_detailed(client=ann, x_organization_id=org_header(org), deal_id=deal.id), 200,
                  "GET /tasks?deal_id=")
    eq([t.id for t in page.items], [task.id], "tasks of the deal")
    page = expect(op.tasks_list.sync_detailed(client=ann, x_organization_id=org_header(org), only_open=True), 200,
                  "GET /tasks?only_open=true")
    eq(page.total, 0, "no open task")
    page = expect(op.tasks_list.sync_detailed(client=ann, x_organization_id=org_header(org), due_after=tomorrow, due_before=tomorrow),
                  200, "GET /tasks?due_after=&due_before= (inclusive)")
    eq([t.id for t in page.items], [task.id], "tasks due tomorrow")

    step("10. analytics")
    s = expect(op.analytics_summary.sync_detailed(client=ann, x_organization_id=org_header(org), days=30), 200,
               "GET /analytics/deals/summary?days=30")
    eq(s.days, 30, "summary days")
    eq([b.status for b in s.by_status], [DealStatus.NEW, DealStatus.IN_PROGRESS, DealStatus.WON, DealStatus.LOST],
       "summary statuses in order")
    by = {b.status: b for b in s.by_status}
    eq((by[DealStatus.NEW].count, [(a.currency, a.total) for a in by[DealStatus.NEW].amounts]),
       (1, [("USD", "120.50")]), "summary new")
    eq((by[DealStatus.WON].count, [(a.currency, a.total) for a in by[DealStatus.WON].amounts]),
       (1, [("GBP", "5000.00")]), "summary won")
    eq((by[DealStatus.LOST].count, by[DealStatus.LOST].amounts), (0, []), "summary lost")
    eq([(a.currency, a.average) for a in s.won_average], [("GBP", "5000.00")], "won average")
    eq(s.new_deals, 2, "new deals in the last 30 days")
    problem(op.analytics_summary.sync_detailed(client=ann, x_organization_id=org_header(org), days=0), 400, None, "days=0")
    f = expect(op.analytics_funnel.sync_detailed(client=ann, x_organization_id=org_header(org)), 200,
               "GET /analytics/deals/funnel")
    eq([st.stage for st in f.stages],
       ["qualification", "proposal", "negotiation", "closed"], "funnel stages")
    eq([(st.count, st.by_status.new, st.by_status.won) for st in f.stages],
       [(1, 1, 0), (0, 0, 0), (1, 0, 1), (0, 0, 0)], "funnel counts")
    eq([st.conversion_pct for st in f.stages], [None, 50.0, 100.0, 0.0], "funnel conversion")
    # SPEC §10: the won deal's stays (step 7 moved it), its closing, the forecast of the open one.
    h = expect(op.deals_stage_history.sync_detailed(deal.id, client=carl, x_organization_id=org_header(org)), 200,
               "GET /deals/{id}/stage-history")
    eq([st.stage for st in h.items], ["qualification", "proposal", "closed", "negotiation"], "the deal's stays, oldest first")
    eq((h.items[-1].left_at, h.items[-1].entered_by, h.items[1].entered_by), (None, ann_id, bob_id),
       "the current stay, and who moved the deal where")
    v = expect(op.analytics_velocity.sync_detailed(client=ann, x_organization_id=org_header(org), days=30), 200,
               "GET /analytics/deals/velocity?days=30")
    eq(([st.stage for st in v.stages], v.won, v.lost, v.win_rate_pct),
       (["qualification", "proposal", "negotiation", "closed"], 1, 0, 100.0), "velocity: stages, won, lost, win rate")
    eq([(st.stage, st.stays_completed, st.current) for st in v.stages],
       [("qualification", 1, 1), ("proposal", 1, 0), ("negotiation", 0, 0), ("closed", 1, 0)],
       "velocity: finished stays and open deals per stage")
    problem(op.analytics_velocity.sync_detailed(client=ann, x_organization_id=org_header(org), days=0), 400,
            "invalid_query_parameter", "velocity days=0")
    fc = expect(op.analytics_forecast.sync_detailed(client=ann, x_organization_id=org_header(org), months=2), 200,
                "GET /analytics/deals/forecast?months=2")
    eq(([m.amounts for m in fc.months], [(a.currency, a.total, a.weighted) for a in fc.unscheduled], fc.overdue),
       ([[], []], [("USD", "120.50", "12.05")], []), "forecast: the open deal has no date (qualification, 10 %)")

    step("10b. pipelines: the default one, a new one with its stages, a deal moved there, its funnel")
    pl = expect(op.pipelines_list.sync_detailed(client=bob, x_organization_id=org_header(org)), 200, "GET /pipelines")
    eq([(p.name, p.position) for p in pl.items], [("Sales", 1)], "the default pipeline")
    eq([(s.key, s.position, s.probability) for s in pl.items[0].stages],
       [("qualification", 1, 10), ("proposal", 2, 30), ("negotiation", 3, 60), ("closed", 4, 100)], "its stages")
    sales = pl.items[0]
    eq(f.pipeline_id, sales.id, "the funnel was the default pipeline's")
    body = NewPipeline(name="Renewals", stages=[NewStage(key="due", name="Due", probability=40),
                                                NewStage(key="renewed", name="Renewed", probability=100)])
    problem(op.pipelines_create.sync_detailed(client=bob, x_organization_id=org_header(org), body=body), 403,
            "role_forbidden", "a member creates a pipeline")
    resp = op.pipelines_create.sync_detailed(client=ann, x_organization_id=org_header(org), body=body)
    ren = expect(resp, 201, "POST /pipelines")
    location(resp, f"/pipelines/{ren.id}", "POST /pipelines")
    eq((ren.position, [s.key for s in ren.stages]), (2, ["due", "renewed"]), "the new pipeline")
    ren = expect(op.pipeline_stages_create.sync_detailed(ren.id, client=ann, x_organization_id=org_header(org),
                 body=NewPipelineStage(key="quoted", name="Quoted", probability=70, position=2)), 201,
                 "POST /pipelines/{id}/stages")
    eq([(s.key, s.position) for s in ren.stages], [("due", 1), ("quoted", 2), ("renewed", 3)], "a stage inserted")
    problem(op.pipeline_stages_create.sync_detailed(ren.id, client=ann, x_organization_id=org_header(org),
            body=NewPipelineStage(key="quoted", name="Again", probability=1)), 409, "pipeline_stages_key_taken",
            "a stage key twice")
    ren = expect(op.pipeline_stages_update.sync_detailed(ren.id, "renewed", client=ann, x_organization_id=org_header(org),
                 body=StagePatch(probability=95)), 200, "PATCH /pipelines/{id}/stages/{key}")
    eq(ren.stages[2].probability, 95, "a stage's probability changed")
    moved = patch(bob, DealPatch(pipeline_id=ren.id), "the deal moves to Renewals")
    eq((moved.pipeline_id, moved.stage), (ren.id, "due"), "in its first stage")
    problem(op.pipelines_delete.sync_detailed(ren.id, client=ann, x_organization_id=org_header(org)), 409,
            "pipeline_has_deals", "a pipeline with deals")
    fr = expect(op.analytics_funnel.sync_detailed(client=ann, x_organization_id=org_header(org), pipeline_id=ren.id), 200,
                "GET /analytics/deals/funnel?pipeline_id=")
    eq([(st.stage, st.count) for st in fr.stages], [("due", 1), ("quoted", 0), ("renewed", 0)], "Renewals' funnel")
    moved = patch(ann, DealPatch(pipeline_id=sales.id, stage="negotiation"), "the deal moves back to Sales")
    eq(moved.stage, "negotiation", "back in negotiation")
    expect_empty(op.pipeline_stages_delete.sync_detailed(ren.id, "quoted", client=ann, x_organization_id=org_header(org)),
                 204, "DELETE /pipelines/{id}/stages/{key}")
    eq(expect(op.pipelines_update.sync_detailed(ren.id, client=ann, x_organization_id=org_header(org),
              body=PipelinePatch(position=1)), 200, "PATCH /pipelines/{id}").position, 1, "Renewals first")
    eq(expect(op.pipelines_get.sync_detailed(sales.id, client=bob, x_organization_id=org_header(org)), 200,
              "GET /pipelines/{id}").position, 2, "Sales second")
    expect_empty(op.pipelines_delete.sync_detailed(ren.id, client=ann, x_organization_id=org_header(org)), 204,
                 "DELETE /pipelines/{id}")

    step("10c. CSV: import, export")
    csv = b"name,email,external_id\r\n\"Csv, One\",csv1@example.com,csv-1\r\n"
    imported = expect(op.contacts_import.sync_detailed(client=ann, x_organization_id=org_header(org),
                                                       body=File(payload=io.BytesIO(csv), mime_type="text/csv")),
                      200, "POST /contacts/import")
    eq((imported.created, imported.updated), (1, 0), "one contact imported")
    problem(op.contacts_import.sync_detailed(client=ann, x_organization_id=org_header(org),
                                             body=File(payload=io.BytesIO(b"name,nickname\r\nA,a\r\n"), mime_type="text/csv")),
            400, "csv_unknown_column", "an import with an unknown column")
    resp = op.contacts_export.sync_detailed(client=ann, x_organization_id=org_header(org), search="csv")
    check(resp.status_code == 200 and resp.headers.get("content-type") == "text/csv; charset=utf-8",
          f"GET /contacts/export answers CSV ({resp.status_code} {resp.headers.get('content-type')})")
    lines = resp.content.decode().split("\r\n")
    check(lines[0].startswith("id,organization_id,owner_id,name,email,phone,external_id,")
          and '"Csv, One",csv1@example.com,,csv-1,' in lines[1] and lines[2:] == [""],
          f"the export has the imported contact ({lines})")
    resp = op.deals_export.sync_detailed(client=ann, x_organization_id=org_header(org),
                                         order_by=DealsExportOrderBy.AMOUNT, order=DealsExportOrder.ASC)
    check(resp.status_code == 200 and resp.content.startswith(b"id,organization_id,contact_id,owner_id,title,amount,"),
          f"GET /deals/export answers CSV ({resp.status_code})")
    problem(op.deals_export.sync_detailed(client=ann, x_organization_id=org_header(org), stage=["nowhere"]),
            400, "stage_not_in_pipeline", "an export with an unknown stage")

    step("11. tenancy: another organization's records are 404")
    problem(op.deals_get.sync_detailed(deal.id, client=ann, x_organization_id=org_header(first_org)), 404, "deal_not_found",
            "the deal through Ann's first organization")
    problem(op.contacts_list.sync_detailed(client=bob, x_organization_id=org_header(first_org)), 404, None,
            "Bob in an organization he is not a member of")
    problem(op.organizations_get.sync_detailed(first_org, client=bob), 404, None, "Bob reads Ann's first organization")
    problem(op.tasks_create.sync_detailed(client=ann, x_organization_id=org_header(first_org), body=NewTask(
        deal_id=deal.id, title="Cross", due_date=tomorrow)), 404, None, "a task on another organization's deal (R8)")

    step("12. rules on delete, and removing a member who owns records")
    problem(op.contacts_delete.sync_detailed(contact.id, client=bob, x_organization_id=org_header(org)), 409, "contact_has_deals",
            "delete a contact that has deals (R2)")
    problem(op.members_remove.sync_detailed(org, bob_reg.user.id, client=ann), 409, "member_owns_records",
            "remove Bob, who owns records")
    problem(op.members_remove.sync_detailed(org, ann_reg.user.id, client=ann), 409, None, "remove the last owner")
    expect_empty(op.members_remove.sync_detailed(org, bob_reg.user.id, client=ann, reassign_to=ann_reg.user.id), 204,
                 "DELETE /organizations/{org_id}/members/{user_id}?reassign_to=")
    members = expect(op.members_list.sync_detailed(org, client=ann), 200, "members after removal")
    eq(sorted(str(m.user_id) for m in members.items), sorted([str(ann_reg.user.id), str(carl_reg.user.id)]),
       "members after removal")
    got = expect(op.contacts_get.sync_detailed(contact.id, client=ann, x_organization_id=org_header(org)), 200,
                 "Bob's contact after reassignment")
    eq(got.owner_id, ann_reg.user.id, "contact reassigned to Ann")
    problem(op.contacts_get.sync_detailed(contact.id, client=bob, x_organization_id=org_header(org)), 404, None,
            "Bob is no longer a member")

    step("13. deletes")
    expect_empty(op.tasks_delete.sync_detailed(task.id, client=ann, x_organization_id=org_header(org)), 204, "DELETE /tasks/{id}")
    problem(op.tasks_get.sync_detailed(task.id, client=ann, x_organization_id=org_header(org)), 404, None, "the deleted task")
    expect_empty(op.deals_delete.sync_detailed(deal.id, client=ann, x_organization_id=org_header(org)), 204, "DELETE /deals/{id}")
    problem(op.deals_get.sync_detailed(deal.id, client=ann, x_organization_id=org_header(org)), 404, "deal_not_found", "the deleted deal")
    expect_empty(op.contacts_delete.sync_detailed(contact.id, client=ann, x_organization_id=org_header(org)), 204,
                 "DELETE /contacts/{id}")
    problem(op.contacts_get.sync_detailed(contact.id, client=ann, x_organization_id=org_header(org)), 404, None,
            "the deleted contact")
    step("13b. the trash: what was deleted, restored, erased")
    trash = expect(op.trash_list.sync_detailed(client=ann, x_organization_id=org_header(org)), 200, "GET /trash")
    eq(sorted(str(i.id) for i in trash.items), sorted(str(x) for x in (task.id, deal.id, contact.id)),
       "the deleted task, deal and contact are in the trash")
    trash_type = importlib.import_module("minicrm_client.models").TrashType
    problem(op.trash_restore.sync_detailed(trash_type.DEAL, deal.id, client=ann, x_organization_id=org_header(org)),
            409, "parent_in_trash", "a deal whose contact is in the trash")
    expect(op.trash_restore.sync_detailed(trash_type.CONTACT, contact.id, client=ann, x_organization_id=org_header(org)),
           200, "POST /trash/contact/{id}/restore")
    expect(op.contacts_get.sync_detailed(contact.id, client=ann, x_organization_id=org_header(org)), 200,
           "the restored contact")
    expect_empty(op.trash_erase.sync_detailed(trash_type.DEAL, deal.id, client=ann, x_organization_id=org_header(org)),
                 204, "DELETE /trash/deal/{id}")
    trash = expect(op.trash_list.sync_detailed(client=ann, x_organization_id=org_header(org)), 200, "GET /trash after")
    eq(len(trash.items), 0, "the erased deal took its trashed task along")
    problem(op.organizations_delete.sync_detailed(org, client=carl), 403, None, "an admin may not delete the organization")
    expect_empty(op.organizations_delete.sync_detailed(org, client=ann), 204, "DELETE /organizations/{org_id}")
    problem(op.organizations_get.sync_detailed(org, client=ann), 404, None, "the deleted organization")
    mine = expect(op.organizations_list_mine.sync_detailed(client=ann), 200,
                  "GET /organizations/me after the delete")
    eq([o.id for o in mine.items], [first_org], "Ann's organizations after the delete")
    expect_empty(op.auth_logout.sync_detailed(client=public(), body=RefreshRequest(refresh_token=ann_refresh)), 204,
                 "logout of the registration session")


def main() -> int:
    try:
        scenario()
    except Stop:
        print(f"scenario stopped at step: {step_name}", flush=True)
    except Exception as e:  # a generated function raised (undocumented status, unparseable body, ...)
        hint = ""
        if "Header value must be str" in str(e):
            hint = (" (the generated function hands the header value to httpx unconverted: openapi-python-client"
                    " declares a `format: uuid` header parameter as UUID but does not stringify it)")
        failures.append(f"[{step_name}] {type(e).__name__}: {e}{hint}")
        traceback.print_exc()
        print(f"scenario stopped at step: {step_name}", flush=True)
    for n in notes:
        print(f"note: {n}")
    print(f"client scenario: {checks} checks, {len(failures)} failed")
    for f in failures:
        print(f"  {f}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
