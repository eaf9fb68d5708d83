#!/usr/bin/env python3
"""The soak (scripts/soak): a mixed workload against one server for SOAK_SECS,
then an audit of the database as the superuser.

Workload: several organizations, each with an owner, an admin, a manager and
two members; SOAK_THREADS threads pick an organization, an actor and an
operation (reads, lists with filters, creates, partial updates, deletes,
comments, analytics, logins, and probes of the rules and of tenancy). The
soak is the only writer, so it keeps a model of what each acknowledged write
left behind and predicts every answer from it: a record a thread works on is
checked out (no other thread touches it meanwhile), so even role refusals
(403), rule refusals (400/409) and cross-organization 404s are exact
expectations, and reads must return what the model holds.

A separate probe (one writer, two readers in an organization of its own)
checks that the analytics cache never hides an acknowledged deal write.

Audit: zero 5xx and zero unexpected answers; every acknowledged write is
present with the last acknowledged values, deleted rows are gone, no row the
soak did not acknowledge exists; status_changed / stage_changed rows per deal
equal the acknowledged changes; deal_created / task_created rows; no
cross-organization reference anywhere; analytics totals equal the deals.
"""

import collections
import csv
import datetime
import io
import json
import os
import random
import re
import sys
import threading
import time
import uuid
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mc import Client, add_member, log, psql, register, run_checks, INTEGRITY_CHECKS  # noqa: E402

ADDR = os.environ["SOAK_ADDR"]
SECS = float(os.environ.get("SOAK_SECS", "600"))
THREADS = int(os.environ.get("SOAK_THREADS", "8"))
NORGS = int(os.environ.get("SOAK_ORGS", "3"))
SEED = int(os.environ.get("SOAK_SEED") or random.randrange(1 << 30))
TMP = os.environ["MC_TMP"]
MAX_DEALS_PER_ORG = 400  # past this, deletes outweigh creates

STATUSES = ["new", "in_progress", "won", "lost"]
STAGES = ["qualification", "proposal", "negotiation", "closed"]
CURRENCIES = ["EUR", "USD", "GBP"]
ROLES = ["owner", "admin", "manager", "member", "member"]
PRIVILEGED = {"owner", "admin", "manager"}

LOCK = threading.Lock()
client = Client(ADDR, timeout=30)
stop = threading.Event()


# -- the model ------------------------------------------------------------------

class Actor:
    def __init__(self, role, token, user_id, email):
        self.role, self.token, self.user_id, self.email = role, token, user_id, email


class Org:
    def __init__(self, org_id, actors):
        self.id, self.actors = org_id, actors
        self.contacts = Pool()
        self.deals = Pool()

    def member_ids(self):
        return [a.user_id for a in self.actors]


class Rec:
    """A contact, deal or task as its last acknowledged write left it."""

    def __init__(self, kind, id_, org, **fields):
        self.kind, self.id, self.org = kind, id_, org
        self.busy = False
        self.live = True
        self.__dict__.update(fields)


class Pool:
    """Live records of one kind with O(1) add, remove and random pick."""

    def __init__(self):
        self.items, self.pos = [], {}

    def __len__(self):
        return len(self.items)

    def add(self, x):
        self.pos[x.id] = len(self.items)
        self.items.append(x)

    def remove(self, x):
        i = self.pos.pop(x.id)
        last = self.items.pop()
        if last is not x:
            self.items[i] = last
            self.pos[last.id] = i

    def checkout(self, rng, pred=lambda x: True, tries=30):
        """A random live record that no other thread holds, now held (under LOCK)."""
        for _ in range(tries):
            if not self.items:
                return None
            x = rng.choice(self.items)
            if not x.busy and pred(x):
                x.busy = True
                return x
        return None


ALL = {"contact": {}, "deal": {}, "task": {}, "comment": {}}
STATS = collections.Counter()          # HTTP status → count
LAT = collections.defaultdict(list)    # operation → latencies (s)
PROBLEMS = []
PROBLEM_COUNT = [0]
ACKED = collections.Counter()          # acknowledged writes by kind
UNCERTAIN = [0]                        # writes whose outcome is unknown (no answer, 5xx)
writes_log = open(os.path.join(TMP, "soak-writes.jsonl"), "w")


def problem(text):
    with LOCK:
        PROBLEM_COUNT[0] += 1
        if len(PROBLEMS) < 100:
            PROBLEMS.append(text)
    print("PROBLEM:", text, flush=True)


def record_write(op, **kw):
    with LOCK:
        writes_log.write(json.dumps({"t": round(time.time(), 3), "op": op, **kw}) + "\n")


def call(op, method, path, actor, org_id, body=None, query=None, want=200, code=None, write=False):
    """One request; True when the answer is the expected one (status, and the
    problem code when given). Anything else is a problem."""
    r = client.request(method, path, body, token=actor.token, org=org_id, query=query)
    with LOCK:
        STATS[r.status] += 1
        LAT[op].append(r.latency)
    wants = want if isinstance(want, (tuple, list, set)) else (want,)
    if r.status in wants and (code is None or r.code == code or r.status < 400):
        return r
    if write and (r.status == 0 or r.status >= 500):
        with LOCK:
            UNCERTAIN[0] += 1
    q = ("?" + "&".join(f"{k}={v}" for k, v in query.items())) if query else ""
    problem(f"{op}: {method} {path}{q} as {actor.role} body={json.dumps(body) if body is not None else '-'} "
            f"→ expected {'/'.join(map(str, wants))}{' ' + code if code else ''}, got {r.status} "
            f"{r.body[:300]}{' ' + r.error if r.error else ''}")
    return None


def release(*recs):
    with LOCK:
        for x in recs:
            if x is not None:
                x.busy = False


def money(rng, zero_chance=0.05):
    if rng.random() < zero_chance:
        return "0.00"
    return f"{rng.randrange(1, 10_000_000) / 100:.2f}"


def future_date(rng):
    return (datetime.date.today() + datetime.timedelta(days=rng.randint(1, 90))).isoformat()


def same_money(a, b):
    return Decimal(str(a)) == Decimal(str(b))


# -- operations -----------------------------------------------------------------

def op_create_contact(rng, org, actor):
    owner = actor.user_id
    if rng.random() < 0.2:
        owner = rng.choice(org.member_ids())
    forbidden = actor.role == "member" and owner != actor.user_id
    body = {"name": f"Contact {uuid.uuid4().hex[:8]}", "email": f"c{rng.randrange(10**6)}@example.com"}
    if rng.random() < 0.5:
        body["phone"] = f"+1 555 {rng.randrange(10**4):04d}"
    if owner != actor.user_id or rng.random() < 0.3:
        body["owner_id"] = owner
    r = call("create_contact", "POST", "/api/v1/contacts", actor, org.id, body,
             want=403 if forbidden else 201, code="role_forbidden" if forbidden else None, write=True)
    if r is None or forbidden:
        return
    j = r.json()
    if j["owner_id"] != owner or j["name"] != body["name"] or j["organization_id"] != org.id:
        problem(f"create_contact: answer {j} does not match the request {body}")
    c = Rec("contact", j["id"], org.id, owner_id=owner, name=body["name"], deals=0)
    with LOCK:
        org.contacts.add(c)
        ALL["contact"][c.id] = c
        ACKED["contact created"] += 1
    record_write("contact_created", id=c.id, org=org.id)


def op_update_contact(rng, org, actor):
    with LOCK:
        c = org.contacts.checkout(rng)
    if c is None:
        return
    try:
        forbidden = actor.role == "member" and c.owner_id != actor.user_id
        body = {"name": f"Renamed {uuid.uuid4().hex[:8]}"}
        if rng.random() < 0.3:
            body["phone"] = None
        r = call("update_contact", "PATCH", f"/api/v1/contacts/{c.id}", actor, org.id, body,
                 want=403 if forbidden else 200, code="role_forbidden" if forbidden else None, write=True)
        if r is not None and not forbidden:
            c.name = body["name"]
            with LOCK:
                ACKED["contact updated"] += 1
            record_write("contact_updated", id=c.id, name=c.name)
    finally:
        release(c)


def op_delete_contact(rng, org, actor):
    want_free = rng.random() < 0.85
    with LOCK:
        c = org.contacts.checkout(rng, lambda x: (x.deals == 0) == want_free)
    if c is None:
        return
    try:
        if actor.role == "member" and c.owner_id != actor.user_id:
            want, code = 403, "role_forbidden"
        elif c.deals > 0:
            want, code = 409, "contact_has_deals"  # R2
        else:
            want, code = 204, None
        r = call("delete_contact", "DELETE", f"/api/v1/contacts/{c.id}", actor, org.id,
                 want=want, code=code, write=True)
        if r is not None and want == 204:
            with LOCK:
                org.contacts.remove(c)
                c.live = False
                ACKED["contact deleted"] += 1
            record_write("contact_deleted", id=c.id)
    finally:
        release(c)


def op_create_deal(rng, org, actor):
    with LOCK:
        c = org.contacts.checkout(rng)
    if c is None:
        return
    try:
        owner = actor.user_id
        if rng.random() < 0.2:
            owner = rng.choice(org.member_ids())
        forbidden = actor.role == "member" and owner != actor.user_id
        amount = money(rng)
        body = {"contact_id": c.id, "title": f"Deal {uuid.uuid4().hex[:8]}",
                "amount": amount if rng.random() < 0.5 else float(amount), "currency": rng.choice(CURRENCIES)}
        if owner != actor.user_id or rng.random() < 0.3:
            body["owner_id"] = owner
        r = call("create_deal", "POST", "/api/v1/deals", actor, org.id, body,
                 want=403 if forbidden else 201, code="role_forbidden" if forbidden else None, write=True)
        if r is None or forbidden:
            return
        j = r.json()
        if (j["status"], j["stage"], j["owner_id"], j["contact_id"]) != ("new", "qualification", owner, c.id) \
                or not same_money(j["amount"], amount):
            problem(f"create_deal: answer {j} does not match the request {body}")
        d = Rec("deal", j["id"], org.id, contact_id=c.id, owner_id=owner, title=body["title"], amount=amount,
                currency=body["currency"], status="new", stage="qualification", status_changes=0,
                stage_changes=0, tasks={}, comments=[], tasks_created=0)
        with LOCK:
            org.deals.add(d)
            ALL["deal"][d.id] = d
            c.deals += 1
            ACKED["deal created"] += 1
        record_write("deal_created", id=d.id, org=org.id, contact=c.id)
    finally:
        release(c)


def expected_deal_patch(d, actor, body):
    """(status, code) the rules give for this PATCH, in the triggers' order."""
    member = actor.role == "member"
    if member and d.owner_id != actor.user_id:
        return 403, "role_forbidden"
    stage = body.get("stage", d.stage)
    if STAGES.index(stage) < STAGES.index(d.stage) and actor.role not in ("owner", "admin"):
        return 403, "stage_rollback_forbidden"  # R5
    if member and body.get("owner_id", d.owner_id) != actor.user_id:
        return 403, "role_forbidden"
    status = body.get("status", d.status)
    amount = Decimal(str(body.get("amount", d.amount)))
    if status == "won" and amount <= 0:
        return 400, "deal_won_requires_amount"  # R1
    return 200, None


def op_update_deal(rng, org, actor):
    with LOCK:
        d = org.deals.checkout(rng, lambda x: actor.role != "member" or x.owner_id == actor.user_id
                               or rng.random() < 0.1)
    if d is None:
        return
    try:
        body = {}
        if rng.random() < 0.6:
            body["status"] = rng.choice(STATUSES)
        if rng.random() < 0.5:
            i = STAGES.index(d.stage)
            if i > 0 and rng.random() < 0.2:
                body["stage"] = STAGES[rng.randrange(0, i)]  # backwards
            else:
                body["stage"] = STAGES[rng.randrange(i, len(STAGES))]
        if rng.random() < 0.2:
            body["amount"] = money(rng, 0.2)
        if rng.random() < 0.1:
            body["title"] = f"Deal {uuid.uuid4().hex[:8]}"
        if rng.random() < 0.1:
            body["owner_id"] = rng.choice(org.member_ids())
        if rng.random() < 0.05:
            body["currency"] = rng.choice(CURRENCIES)
        if not body:
            body["status"] = rng.choice(STATUSES)
        want, code = expected_deal_patch(d, actor, body)
        r = call("update_deal", "PATCH", f"/api/v1/deals/{d.id}", actor, org.id, body, want=want, code=code,
                 write=True)
        if r is None or want != 200:
            return
        new_status, new_stage = body.get("status", d.status), body.get("stage", d.stage)
        if new_status != d.status:
            d.status_changes += 1
        if new_stage != d.stage:
            d.stage_changes += 1
        d.status, d.stage = new_status, new_stage
        d.amount = body.get("amount", d.amount)
        d.title = body.get("title", d.title)
        d.owner_id = body.get("owner_id", d.owner_id)
        d.currency = body.get("currency", d.currency)
        j = r.json()
        if (j["status"], j["stage"], j["owner_id"], j["currency"]) != (d.status, d.stage, d.owner_id, d.currency) \
                or not same_money(j["amount"], d.amount):
            problem(f"update_deal: answer {j} does not match the model after {body}")
        with LOCK:
            ACKED["deal updated"] += 1
        record_write("deal_updated", id=d.id, body=body)
    finally:
        release(d)


def op_delete_deal(rng, org, actor):
    with LOCK:
        d = org.deals.checkout(rng, lambda x: actor.role != "member" or x.owner_id == actor.user_id
                               or rng.random() < 0.1)
        c = None
        if d is not None:
            c = ALL["contact"][d.contact_id]
            if c.busy:
                d.busy = False
                return
            c.busy = True
    if d is None:
        return
    try:
        forbidden = actor.role == "member" and d.owner_id != actor.user_id
        r = call("delete_deal", "DELETE", f"/api/v1/deals/{d.id}", actor, org.id,
                 want=403 if forbidden else 204, code="role_forbidden" if forbidden else None, write=True)
        if r is None or forbidden:
            return
        with LOCK:
            org.deals.remove(d)
            d.live = False
            for t in d.tasks.values():
                t.live = False
            c.deals -= 1
            ACKED["deal deleted"] += 1
        record_write("deal_deleted", id=d.id)
    finally:
        release(d, c)


def op_create_task(rng, org, actor):
    with LOCK:
        d = org.deals.checkout(rng)
    if d is None:
        return
    try:
        past = rng.random() < 0.03
        due = (datetime.date.today() - datetime.timedelta(days=3)).isoformat() if past else future_date(rng)
        body = {"deal_id": d.id, "title": f"Task {uuid.uuid4().hex[:8]}", "due_date": due}
        if rng.random() < 0.5:
            body["description"] = "call them back"
        if actor.role == "member" and d.owner_id != actor.user_id:
            want, code = 403, "deal_not_owned"  # R3
        elif past:
            want, code = 400, "tasks_due_date_past"  # R4
        else:
            want, code = 201, None
        r = call("create_task", "POST", "/api/v1/tasks", actor, org.id, body, want=want, code=code, write=True)
        if r is None or want != 201:
            return
        j = r.json()
        t = Rec("task", j["id"], org.id, deal_id=d.id, title=body["title"], due_date=due, is_done=False)
        d.tasks[t.id] = t
        d.tasks_created += 1
        with LOCK:
            ALL["task"][t.id] = t
            ACKED["task created"] += 1
        record_write("task_created", id=t.id, deal=d.id)
    finally:
        release(d)


def op_update_task(rng, org, actor):
    with LOCK:
        d = org.deals.checkout(rng, lambda x: bool(x.tasks))
    if d is None:
        return
    try:
        t = rng.choice(list(d.tasks.values()))
        forbidden = actor.role == "member" and d.owner_id != actor.user_id
        body = {"is_done": not t.is_done}
        if rng.random() < 0.3:
            body["title"] = f"Task {uuid.uuid4().hex[:8]}"
        if rng.random() < 0.2:
            body["due_date"] = future_date(rng)
        r = call("update_task", "PATCH", f"/api/v1/tasks/{t.id}", actor, org.id, body,
                 want=403 if forbidden else 200, code="role_forbidden" if forbidden else None, write=True)
        if r is None or forbidden:
            return
        t.is_done = body["is_done"]
        t.title = body.get("title", t.title)
        t.due_date = body.get("due_date", t.due_date)
        j = r.json()
        if (j["is_done"], j["title"], j["due_date"]) != (t.is_done, t.title, t.due_date):
            problem(f"update_task: answer {j} does not match the model after {body}")
        with LOCK:
            ACKED["task updated"] += 1
        record_write("task_updated", id=t.id, body=body)
    finally:
        release(d)


def op_delete_task(rng, org, actor):
    with LOCK:
        d = org.deals.checkout(rng, lambda x: bool(x.tasks))
    if d is None:
        return
    try:
        t = rng.choice(list(d.tasks.values()))
        forbidden = actor.role == "member" and d.owner_id != actor.user_id
        r = call("delete_task", "DELETE", f"/api/v1/tasks/{t.id}", actor, org.id,
                 want=403 if forbidden else 204, code="role_forbidden" if forbidden else None, write=True)
        if r is None or forbidden:
            return
        del d.tasks[t.id]
        t.live = False
        with LOCK:
            ACKED["task deleted"] += 1
        record_write("task_deleted", id=t.id)
    finally:
        release(d)


def op_comment(rng, org, actor):
    with LOCK:
        d = org.deals.checkout(rng)
    if d is None:
        return
    try:
        bad = rng.random() < 0.05
        body = {"type": "comment", "payload": {"text": "   " if bad else f"note {uuid.uuid4().hex[:6]}"}}
        r = call("comment", "POST", f"/api/v1/deals/{d.id}/activities", actor, org.id, body,
                 want=400 if bad else 201, code="comment_text_required" if bad else None, write=True)
        if r is None or bad:
            return
        j = r.json()
        if j["author_id"] != actor.user_id or j["type"] != "comment":
            problem(f"comment: answer {j} has the wrong author or type")
        d.comments.append(j["id"])
        with LOCK:
            ALL["comment"][j["id"]] = Rec("comment", j["id"], org.id, deal=d)
            ACKED["comment created"] += 1
        record_write("comment_created", id=j["id"], deal=d.id)
    finally:
        release(d)


def op_get_deal(rng, org, actor):
    with LOCK:
        d = org.deals.checkout(rng)
    if d is None:
        return
    try:
        r = call("get_deal", "GET", f"/api/v1/deals/{d.id}", actor, org.id)
        if r is None:
            return
        j = r.json()
        if (j["status"], j["stage"], j["owner_id"], j["contact_id"], j["title"], j["currency"]) != \
                (d.status, d.stage, d.owner_id, d.contact_id, d.title, d.currency) or not same_money(j["amount"],
                                                                                                    d.amount):
            problem(f"get_deal: {j} differs from the last acknowledged write "
                    f"({d.status}, {d.stage}, {d.amount}, {d.owner_id})")
    finally:
        release(d)


def op_get_contact(rng, org, actor):
    with LOCK:
        c = org.contacts.checkout(rng)
    if c is None:
        return
    try:
        r = call("get_contact", "GET", f"/api/v1/contacts/{c.id}", actor, org.id)
        if r is not None and (r.json()["name"], r.json()["owner_id"]) != (c.name, c.owner_id):
            problem(f"get_contact: {r.json()} differs from the last acknowledged write ({c.name}, {c.owner_id})")
    finally:
        release(c)


def op_deal_children(rng, org, actor):
    """A deal's tasks and timeline, exactly as the model has them."""
    with LOCK:
        d = org.deals.checkout(rng)
    if d is None:
        return
    try:
        r = call("list_tasks", "GET", "/api/v1/tasks", actor, org.id, query={"deal_id": d.id, "page_size": 100})
        if r is not None:
            got = {t["id"] for t in r.json()["items"]}
            if r.json()["total"] != len(d.tasks) or (len(d.tasks) <= 100 and got != set(d.tasks)):
                problem(f"list_tasks deal_id={d.id}: total {r.json()['total']}, expected {len(d.tasks)}")
        if d.tasks:
            t = rng.choice(list(d.tasks.values()))
            r = call("get_task", "GET", f"/api/v1/tasks/{t.id}", actor, org.id)
            if r is not None and (r.json()["is_done"], r.json()["due_date"]) != (t.is_done, t.due_date):
                problem(f"get_task: {r.json()} differs from the last acknowledged write ({t.is_done}, {t.due_date})")
        r = call("list_activities", "GET", f"/api/v1/deals/{d.id}/activities", actor, org.id,
                 query={"page_size": 100})
        if r is not None:
            want = 1 + d.status_changes + d.stage_changes + d.tasks_created + len(d.comments)
            if r.json()["total"] != want:
                types = collections.Counter(a["type"] for a in r.json()["items"])
                problem(f"list_activities deal={d.id}: total {r.json()['total']}, expected {want} "
                        f"(1 created, {d.status_changes} status, {d.stage_changes} stage, {d.tasks_created} tasks, "
                        f"{len(d.comments)} comments); got {dict(types)}")
    finally:
        release(d)


def op_list_deals(rng, org, actor):
    q = {"page": rng.choice([1, 1, 1, 2, 3]), "page_size": rng.choice([5, 20, 50, 100])}
    statuses = rng.sample(STATUSES, rng.randint(0, 2))
    if statuses:
        q["status"] = statuses
    if rng.random() < 0.3:
        q["stage"] = rng.choice(STAGES)
    if rng.random() < 0.3:
        q["min_amount"] = money(rng, 0)
    if rng.random() < 0.2:
        q["max_amount"] = money(rng, 0)
    if rng.random() < 0.3:
        q["owner_id"] = actor.user_id if actor.role == "member" else rng.choice(org.member_ids())
    q["order_by"] = rng.choice(["created_at", "updated_at", "amount", "title"])
    q["order"] = rng.choice(["asc", "desc"])
    r = call("list_deals", "GET", "/api/v1/deals", actor, org.id, query=q)
    if r is None:
        return
    items = r.json()["items"]
    key = q["order_by"]
    for i, it in enumerate(items):
        bad = (it["organization_id"] != org.id or (statuses and it["status"] not in statuses)
               or ("stage" in q and it["stage"] != q["stage"])
               or ("min_amount" in q and Decimal(it["amount"]) < Decimal(q["min_amount"]))
               or ("max_amount" in q and Decimal(it["amount"]) > Decimal(q["max_amount"]))
               or ("owner_id" in q and it["owner_id"] != q["owner_id"]))
        if bad:
            problem(f"list_deals {q}: item {it} does not match the filters")
            return
        if i:
            a, b = items[i - 1], it
            ka = Decimal(a[key]) if key == "amount" else a[key]
            kb = Decimal(b[key]) if key == "amount" else b[key]
            ok = ((ka, a["id"]) <= (kb, b["id"])) if q["order"] == "asc" else ((ka, a["id"]) >= (kb, b["id"]))
            if key == "title":
                ok = True  # collation order is the database's; not checked here
            if not ok:
                problem(f"list_deals {q}: items out of order: {a[key]} / {b[key]}")
                return


def op_list_contacts(rng, org, actor):
    q = {"page_size": rng.choice([10, 50])}
    if rng.random() < 0.5:
        q["search"] = rng.choice(["contact", "RENAMED", "example", "a1", "zz-none"])
    if rng.random() < 0.2:
        q["owner_id"] = actor.user_id
    r = call("list_contacts", "GET", "/api/v1/contacts", actor, org.id, query=q)
    if r is not None and "search" in q:
        terms = search_tokens(q["search"])
        for it in r.json()["items"]:
            words = search_tokens(it["name"] + " " + (it["email"] or ""))
            if not all(any(w.startswith(t) for w in words) for t in terms):
                problem(f"list_contacts {q}: {it} does not have a word beginning with each word of the search")
                return


def search_tokens(text):
    """app.search_tokens for ASCII text (what the soak writes): lower-case
    runs of letters and digits, and each other printable character alone."""
    return set(re.findall(r"[a-z0-9]+|[!-/:-@\[-`{-~]", text.lower()))


def op_list_tasks(rng, org, actor):
    q = {"only_open": rng.choice(["true", "false"]), "page_size": 50}
    if rng.random() < 0.5:
        q["due_after"] = future_date(rng)
    r = call("list_tasks", "GET", "/api/v1/tasks", actor, org.id, query=q)
    if r is not None:
        for it in r.json()["items"]:
            if (q["only_open"] == "true" and it["is_done"]) or ("due_after" in q and it["due_date"] < q["due_after"]):
                problem(f"list_tasks {q}: {it} does not match the filters")
                return


def op_analytics(rng, org, actor):
    if rng.random() < 0.5:
        r = call("analytics_summary", "GET", "/api/v1/analytics/deals/summary", actor, org.id,
                 query={"days": rng.choice([1, 30, 3650])})
        if r is not None and [s["status"] for s in r.json()["by_status"]] != STATUSES:
            problem(f"analytics_summary: statuses {r.json()['by_status']}")
    else:
        r = call("analytics_funnel", "GET", "/api/v1/analytics/deals/funnel", actor, org.id)
        if r is not None and [s["stage"] for s in r.json()["stages"]] != STAGES:
            problem(f"analytics_funnel: stages {r.json()['stages']}")


def op_me(rng, org, actor):
    r = call("users_me", "GET", "/api/v1/users/me", actor, None)
    if r is not None and r.json()["id"] != actor.user_id:
        problem(f"users/me: {r.json()} is not {actor.user_id}")
    r = call("organizations_me", "GET", "/api/v1/organizations/me", actor, None)
    if r is not None:
        roles = {o["id"]: o["role"] for o in r.json()["items"]}
        if roles.get(org.id) != actor.role:
            problem(f"organizations/me: {roles} lacks {org.id} as {actor.role}")
    r = call("members", "GET", f"/api/v1/organizations/{org.id}/members", actor, None)
    if r is not None and {m["user_id"] for m in r.json()["items"]} != set(org.member_ids()):
        problem(f"members of {org.id}: {r.json()['items']}")


def op_cross_org(rng, org, actor):
    """R8 and tenancy: another organization's records are 404 from here."""
    others = [o for o in ORGS if o is not org]
    other = rng.choice(others)
    with LOCK:
        od = rng.choice(other.deals.items) if len(other.deals) else None
        oc = rng.choice(other.contacts.items) if len(other.contacts) else None
        mc = rng.choice(org.contacts.items) if len(org.contacts) else None
    k = rng.randrange(7)
    if k == 0 and od:
        call("cross_org", "GET", f"/api/v1/deals/{od.id}", actor, org.id, want=404)
    elif k == 1 and oc:
        call("cross_org", "POST", "/api/v1/deals", actor, org.id,
             {"contact_id": oc.id, "title": "stolen", "amount": 1, "currency": "EUR"}, want=404)
    elif k == 2 and od:
        call("cross_org", "POST", "/api/v1/tasks", actor, org.id,
             {"deal_id": od.id, "title": "stolen", "due_date": future_date(rng)}, want=404)
    elif k == 3 and od:
        call("cross_org", "POST", f"/api/v1/deals/{od.id}/activities", actor, org.id,
             {"type": "comment", "payload": {"text": "stolen"}}, want=404)
    elif k == 4 and od:
        call("cross_org", "PATCH", f"/api/v1/deals/{od.id}", actor, org.id, {"status": "lost"}, want=404)
    elif k == 5 and mc:
        # Our own contact, through another organization's header: not a member there.
        call("cross_org", "GET", f"/api/v1/contacts/{mc.id}", actor, other.id, want=404)
    elif k == 6 and oc:
        call("cross_org", "DELETE", f"/api/v1/contacts/{oc.id}", actor, org.id, want=404)


def op_login(rng, org, actor):
    r = call("login", "POST", "/api/v1/auth/login", actor, None,
             {"email": actor.email.upper() if rng.random() < 0.3 else actor.email,
              "password": "correct horse battery"})
    if r is None:
        return
    old = r.json()["refresh_token"]
    r = call("refresh", "POST", "/api/v1/auth/refresh", actor, None, {"refresh_token": old})
    if r is None:
        return
    call("refresh", "POST", "/api/v1/auth/refresh", actor, None, {"refresh_token": old}, want=401,
         code="refresh_token_reused")


WEIGHTS = [
    (op_list_deals, 12), (op_get_deal, 8), (op_list_contacts, 5), (op_get_contact, 4), (op_list_tasks, 3),
    (op_deal_children, 6), (op_analytics, 5), (op_me, 1),
    (op_create_contact, 4), (op_update_contact, 3), (op_delete_contact, 2),
    (op_create_deal, 8), (op_update_deal, 16), (op_delete_deal, 3),
    (op_create_task, 5), (op_update_task, 3), (op_delete_task, 2), (op_comment, 5),
    (op_cross_org, 3), (op_login, 0.3),
]


def worker(n):
    rng = random.Random(SEED * 1000 + n)
    ops = [w[0] for w in WEIGHTS]
    weights = [w[1] for w in WEIGHTS]
    while not stop.is_set():
        org = rng.choice(ORGS)
        actor = rng.choice(org.actors)
        op = rng.choices(ops, weights)[0]
        if op is op_create_deal and len(org.deals) > MAX_DEALS_PER_ORG:
            op = op_delete_deal
        try:
            op(rng, org, actor)
        except Exception as e:  # a bug in the soak, or an answer of the wrong shape
            problem(f"{op.__name__}: {type(e).__name__}: {e}")


# -- the analytics cache probe ----------------------------------------------------

PROBE = {"writes": 0, "reads": 0, "stale": 0}


def cache_probe_writer(actor, org_id, contact_id):
    """Creates deals one at a time; after each acknowledged create, the summary
    must count every deal created so far (only this thread writes here)."""
    n = 0
    while not stop.is_set():
        r = call("probe_create_deal", "POST", "/api/v1/deals", actor, org_id,
                 {"contact_id": contact_id, "title": "probe", "amount": "1.00", "currency": "EUR"}, want=201,
                 write=True)
        if r is None:
            continue
        n += 1
        with LOCK:
            ACKED["probe deal created"] += 1
        r = call("probe_summary", "GET", "/api/v1/analytics/deals/summary", actor, org_id, query={"days": 30})
        if r is None:
            continue
        PROBE["writes"] += 1
        got = r.json()["by_status"][0]["count"]
        if got != n:
            PROBE["stale"] += 1
            problem(f"analytics cache hid an acknowledged write: GET /api/v1/analytics/deals/summary?days=30 "
                    f"right after the {n}th POST /api/v1/deals was answered 201 → new count {got}, expected {n} "
                    f"(X-Cache: {r.headers.get('x-cache')})")


def cache_probe_reader(actor, org_id):
    while not stop.is_set():
        if call("probe_summary", "GET", "/api/v1/analytics/deals/summary", actor, org_id,
                query={"days": 30}) is not None:
            PROBE["reads"] += 1
        time.sleep(0.002)  # keeps the probe from crowding out the workload


# -- setup, run, audit -----------------------------------------------------------

def setup():
    orgs = []
    for k in range(NORGS):
        token, uid, org_id, email = register(client, f"owner{k}", f"Soak {k}")
        actors = [Actor("owner", token, uid, email)]
        for role in ROLES[1:]:
            t, u, _, e = register(client, f"{role}{k}")
            add_member(client, token, org_id, e, role, t)
            actors.append(Actor(role, t, u, e))
        org = Org(org_id, actors)
        orgs.append(org)
    return orgs


def percentile(xs, p):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def csv_rows(rows):
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue()


def load_expectations():
    """The model into tables soak.* (COPY), for the audit queries."""
    contacts = [(c.id, c.org, c.live, c.owner_id, c.name) for c in ALL["contact"].values()]
    deals = [(d.id, d.org, d.live, d.contact_id, d.owner_id, d.title, d.amount, d.currency, d.status, d.stage,
              d.status_changes, d.stage_changes) for d in ALL["deal"].values()]
    tasks = [(t.id, t.org, t.deal_id, t.live, ALL["deal"][t.deal_id].live, t.is_done, t.title, t.due_date)
             for t in ALL["task"].values()]
    comments = [(c.id, c.org, c.deal.id, c.deal.live) for c in ALL["comment"].values()]
    orgs = [(o.id,) for o in ORGS]
    script = """
DROP SCHEMA IF EXISTS soak CASCADE;
CREATE SCHEMA soak;
CREATE TABLE soak.orgs (id uuid PRIMARY KEY);
CREATE TABLE soak.contacts (id uuid PRIMARY KEY, org uuid, live boolean, owner_id uuid, name text);
CREATE TABLE soak.deals (id uuid PRIMARY KEY, org uuid, live boolean, contact_id uuid, owner_id uuid, title text,
  amount numeric, currency text, status text, stage text, status_changes int, stage_changes int);
CREATE TABLE soak.tasks (id uuid PRIMARY KEY, org uuid, deal_id uuid, live boolean, deal_live boolean,
  is_done boolean, title text, due_date date);
CREATE TABLE soak.comments (id uuid PRIMARY KEY, org uuid, deal_id uuid, live boolean);
"""
    for table, rows in (("orgs", orgs), ("contacts", contacts), ("deals", deals), ("tasks", tasks),
                        ("comments", comments)):
        script += f"COPY soak.{table} FROM STDIN (FORMAT csv);\n{csv_rows(rows)}\\.\n"
    script += "ANALYZE soak.orgs, soak.contacts, soak.deals, soak.tasks, soak.comments;\n"
    psql(None, stdin=script)
    return len(contacts), len(deals), len(tasks), len(comments)


AUDIT_CHECKS = [
    ("acknowledged contacts missing", """
      SELECT e.id::text FROM soak.contacts e WHERE e.live
         AND NOT EXISTS (SELECT 1 FROM crm.contacts c WHERE c.organization_id = e.org AND c.id = e.id)"""),
    ("contacts differing from their last acknowledged write", """
      SELECT e.id::text FROM soak.contacts e JOIN crm.contacts c ON c.organization_id = e.org AND c.id = e.id
       WHERE e.live AND (c.owner_id, c.name) IS DISTINCT FROM (e.owner_id, e.name)"""),
    ("deleted contacts still present", """
      SELECT e.id::text FROM soak.contacts e JOIN crm.contacts c ON c.id = e.id WHERE NOT e.live"""),
    ("contacts no acknowledged write created", """
      SELECT c.id::text FROM crm.contacts c JOIN soak.orgs o ON o.id = c.organization_id
       WHERE NOT EXISTS (SELECT 1 FROM soak.contacts e WHERE e.id = c.id)"""),
    ("acknowledged deals missing", """
      SELECT e.id::text FROM soak.deals e WHERE e.live
         AND NOT EXISTS (SELECT 1 FROM crm.deals d WHERE d.organization_id = e.org AND d.id = e.id)"""),
    ("deals differing from their last acknowledged write", """
      SELECT e.id::text || ' db=' || row(d.status, d.stage, d.amount, d.currency, d.owner_id)::text
             || ' acked=' || row(e.status, e.stage, e.amount, e.currency, e.owner_id)::text
        FROM soak.deals e JOIN crm.deals d ON d.organization_id = e.org AND d.id = e.id
       WHERE e.live AND (d.contact_id, d.owner_id, d.title, d.amount, d.currency, d.status::text, d.stage::text)
             IS DISTINCT FROM (e.contact_id, e.owner_id, e.title, e.amount, e.currency, e.status, e.stage)"""),
    ("deleted deals still present", """
      SELECT e.id::text FROM soak.deals e JOIN crm.deals d ON d.id = e.id WHERE NOT e.live"""),
    ("deals no acknowledged write created (probe organization aside)", """
      SELECT d.id::text FROM crm.deals d JOIN soak.orgs o ON o.id = d.organization_id
       WHERE NOT EXISTS (SELECT 1 FROM soak.deals e WHERE e.id = d.id)"""),
    ("acknowledged tasks missing", """
      SELECT e.id::text FROM soak.tasks e WHERE e.live
         AND NOT EXISTS (SELECT 1 FROM crm.tasks t WHERE t.organization_id = e.org AND t.id = e.id)"""),
    ("tasks differing from their last acknowledged write", """
      SELECT e.id::text FROM soak.tasks e JOIN crm.tasks t ON t.organization_id = e.org AND t.id = e.id
       WHERE e.live AND (t.deal_id, t.is_done, t.title, t.due_date) IS DISTINCT FROM
                        (e.deal_id, e.is_done, e.title, e.due_date)"""),
    ("deleted tasks (or tasks of deleted deals) still present", """
      SELECT e.id::text FROM soak.tasks e JOIN crm.tasks t ON t.id = e.id WHERE NOT e.live"""),
    ("tasks no acknowledged write created", """
      SELECT t.id::text FROM crm.tasks t JOIN soak.orgs o ON o.id = t.organization_id
       WHERE NOT EXISTS (SELECT 1 FROM soak.tasks e WHERE e.id = t.id)"""),
    ("acknowledged comments missing", """
      SELECT e.id::text FROM soak.comments e WHERE e.live
         AND NOT EXISTS (SELECT 1 FROM crm.activities a WHERE a.organization_id = e.org AND a.id = e.id
                           AND a.type = 'comment')"""),
    ("comments of deleted deals still present", """
      SELECT e.id::text FROM soak.comments e JOIN crm.activities a ON a.id = e.id WHERE NOT e.live"""),
    ("comments no acknowledged write created", """
      SELECT a.id::text FROM crm.activities a JOIN soak.orgs o ON o.id = a.organization_id
       WHERE a.type = 'comment' AND NOT EXISTS (SELECT 1 FROM soak.comments e WHERE e.id = a.id)"""),
    ("deals whose status_changed rows ≠ acknowledged status changes (R6)", """
      SELECT e.id::text || ': ' || count(a.id) || ' rows, ' || e.status_changes || ' acknowledged changes'
        FROM soak.deals e
        LEFT JOIN crm.activities a ON a.organization_id = e.org AND a.deal_id = e.id AND a.type = 'status_changed'
       WHERE e.live GROUP BY e.id, e.status_changes HAVING count(a.id) <> e.status_changes"""),
    ("deals whose stage_changed rows ≠ acknowledged stage changes (R6)", """
      SELECT e.id::text || ': ' || count(a.id) || ' rows, ' || e.stage_changes || ' acknowledged changes'
        FROM soak.deals e
        LEFT JOIN crm.activities a ON a.organization_id = e.org AND a.deal_id = e.id AND a.type = 'stage_changed'
       WHERE e.live GROUP BY e.id, e.stage_changes HAVING count(a.id) <> e.stage_changes"""),
    ("tasks created on live deals without exactly one task_created row (R7)", """
      SELECT e.id::text || ': ' || count(a.id) FROM soak.tasks e
        LEFT JOIN crm.activities a ON a.organization_id = e.org AND a.deal_id = e.deal_id
             AND a.type = 'task_created' AND a.payload ->> 'task_id' = e.id::text
       WHERE e.deal_live GROUP BY e.id HAVING count(a.id) <> 1"""),
    ("timeline rows written by the soak without an author (R6: the author is the actor)", """
      SELECT a.id::text || ' ' || a.type FROM crm.activities a JOIN soak.orgs o ON o.id = a.organization_id
       WHERE a.author_id IS NULL"""),
]


def analytics_truth(org_id):
    """Per status: count and per-currency totals, from the deals themselves."""
    truth = {s: [0, {}] for s in STATUSES}
    for status, currency, n, total in psql(
            f"SELECT status, currency, count(*), sum(amount) FROM crm.deals "
            f"WHERE organization_id = '{org_id}' GROUP BY 1, 2"):
        truth[status][0] += int(n)
        truth[status][1][currency] = Decimal(total)
    return truth


def compare_summary(label, summary, truth):
    for s in summary["by_status"]:
        n, totals = truth[s["status"]]
        got = {a["currency"]: Decimal(a["total"]) for a in s["amounts"]}
        if s["count"] != n or got != totals:
            problem(f"{label}: {s['status']}: count {s['count']} totals {got}, the deals say {n} {totals}")


def main():
    random.seed(SEED)
    log(f"soak: {SECS:g} s, {THREADS} threads, {NORGS} organizations, seed {SEED}, server {ADDR}")
    global ORGS
    ORGS = setup()
    rng = random.Random(SEED)
    for org in ORGS:  # a few contacts to start from
        for actor in org.actors:
            for _ in range(2):
                op_create_contact(rng, org, actor)
    ptoken, _, porg, _ = register(client, "probe", "Cache probe")
    probe_actor = Actor("owner", ptoken, None, None)
    pcontact = client.request("POST", "/api/v1/contacts", {"name": "probe"}, token=ptoken, org=porg).json()["id"]

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(THREADS)]
    threads.append(threading.Thread(target=cache_probe_writer, args=(probe_actor, porg, pcontact), daemon=True))
    threads += [threading.Thread(target=cache_probe_reader, args=(probe_actor, porg), daemon=True) for _ in range(2)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    next_report = t0 + 60
    while time.monotonic() - t0 < SECS:
        time.sleep(min(1.0, max(0.0, SECS - (time.monotonic() - t0))))
        if time.monotonic() >= next_report:
            next_report += 60
            with LOCK:
                total = sum(STATS.values())
            log(f"{time.monotonic() - t0:.0f} s: {total} requests, {PROBLEM_COUNT[0]} problems")
    stop.set()
    for t in threads:
        t.join(timeout=60)
    elapsed = time.monotonic() - t0
    writes_log.flush()

    log("final analytics through the API, against the deals")
    # This thread's keep-alive connection has been idle for the whole run, so
    # the server has closed it (HTTP_HEADER_READ_TIMEOUT_MS): start a new one.
    client.close()
    for org in ORGS:
        owner = org.actors[0]
        r = call("final_summary", "GET", "/api/v1/analytics/deals/summary", owner, org.id, query={"days": 3650})
        if r is not None:
            compare_summary(f"GET /api/v1/analytics/deals/summary?days=3650 after the soak, organization {org.id} "
                            f"(X-Cache: {r.headers.get('x-cache')})", r.json(), analytics_truth(org.id))
        sql = psql(f"SELECT api.analytics_summary(3650)::text FROM app.act_as('{owner.user_id}', '{org.id}')")
        compare_summary(f"api.analytics_summary in SQL, organization {org.id}", json.loads(sql[0][0]),
                        analytics_truth(org.id))

    log("audit (psql as the superuser)")
    n_contacts, n_deals, n_tasks, n_comments = load_expectations()
    audit = run_checks(AUDIT_CHECKS) + run_checks(INTEGRITY_CHECKS)
    for name, count, sample in audit:
        print(f"  {'ok ' if count == 0 else 'BAD'} {name}: {count}" + (f"  e.g. {sample}" if count else ""))
        if count:
            problem(f"audit: {name}: {count} (e.g. {sample})")

    total = sum(STATS.values())
    status_changes = sum(d.status_changes for d in ALL["deal"].values() if d.live)
    stage_changes = sum(d.stage_changes for d in ALL["deal"].values() if d.live)
    fivexx = sum(n for s, n in STATS.items() if s >= 500)
    lines = [
        f"duration: {elapsed:.0f} s ({THREADS} threads + 3 cache-probe threads, {NORGS} organizations x "
        f"{len(ROLES)} users, seed {SEED})",
        f"requests: {total} ({total / elapsed:.0f}/s)",
        "by status: " + ", ".join(f"{s if s else 'no answer'}: {n}" for s, n in sorted(STATS.items())),
        f"5xx: {fivexx}; no answer: {STATS.get(0, 0)}; writes with an unknown outcome: {UNCERTAIN[0]}",
        "acknowledged writes: " + ", ".join(f"{k}: {v}" for k, v in sorted(ACKED.items())),
        f"writes audited: {n_contacts} contacts, {n_deals} deals, {n_tasks} tasks, {n_comments} comments "
        f"(live and deleted), {status_changes} status and {stage_changes} stage changes on live deals",
        f"analytics cache probe: {PROBE['writes']} write-then-read checks, {PROBE['reads']} concurrent reads, "
        f"{PROBE['stale']} stale",
        "latency by operation (count, p50, p99, max ms): " + "; ".join(
            f"{op} {len(v)} {percentile(v, 50) * 1000:.1f}/{percentile(v, 99) * 1000:.1f}/{max(v) * 1000:.0f}"
            for op, v in sorted(LAT.items())),
        f"problems: {PROBLEM_COUNT[0]}",
    ]
    summary = "\n".join(lines)
    print("\n== soak summary\n" + summary, flush=True)
    with open(os.path.join(TMP, "soak-summary.txt"), "w") as f:
        f.write(summary + "\n" + "\n".join(PROBLEMS) + "\n")
    if PROBLEMS:
        print("\nfirst problems:\n  " + "\n  ".join(PROBLEMS[:20]))
    return 1 if PROBLEM_COUNT[0] else 0


if __name__ == "__main__":
    sys.exit(main())
