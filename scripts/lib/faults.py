#!/usr/bin/env python3
"""Fault injection (scripts/faults) on running release servers under load.

(a) PostgreSQL stopped (pg_ctl stop -m fast) under load, then started again:
    while it is down every request and /readyz answer 503 quickly (max latency
    under FAULTS_MAX_DOWN_LATENCY, 5 s); after the restart the same server
    process recovers by itself (/readyz 200 and writes succeed within
    FAULTS_RECOVER_SECS); nothing was half-applied (every acknowledged write
    is there; status/stage timelines are complete chains; every task has its
    task_created row; the analytics totals equal the deals).
(a2) every server connection killed (pg_terminate_backend) under load: the
    server answers 503 for the requests that were on them and recovers at once.
(b) SIGTERM with requests in flight (held on a table lock): they all complete
    with 2xx, new connections are refused, then the process exits 0.
(c) two servers started at once on an empty database, FAULTS_ROUNDS times:
    both come up and answer, and refinery_schema_history has each version once.
"""

import glob
import os
import random
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from mc import (Client, INTEGRITY_CHECKS, Server, log, pg_ctl, psql, psql_value, register,  # noqa: E402
                run_checks)

PORT = int(os.environ.get("FAULTS_HTTP_PORT", "18092"))
ADDRS = [f"127.0.0.1:{PORT + i}" for i in range(3)]
MAX_DOWN_LATENCY = float(os.environ.get("FAULTS_MAX_DOWN_LATENCY", "5"))
RECOVER_SECS = float(os.environ.get("FAULTS_RECOVER_SECS", "10"))
OUTAGE_SECS = float(os.environ.get("FAULTS_OUTAGE_SECS", "8"))
ROUNDS = int(os.environ.get("FAULTS_ROUNDS", "3"))
ROOT = os.environ["MC_ROOT"]

FAILURES = []
RESULTS = []


def fail(text):
    FAILURES.append(text)
    print("FAIL:", text, flush=True)


def result(text):
    RESULTS.append(text)
    print("  " + text, flush=True)


def createdb(name):
    psql(f'CREATE DATABASE "{name}"', "postgres")


class Load:
    """Writers create deals, move them (in_progress, then won and
    negotiation) and add a task; a reader lists deals; a poller hits /readyz
    every 50 ms. Every request is recorded (start, latency, status, op)."""

    def __init__(self, addr, token, org, contacts, writers=3):
        self.client = Client(addr, timeout=30)
        self.token, self.org, self.contacts = token, org, contacts
        self.writers = writers
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.records = []          # (t_start, latency, status, op, code, error)
        self.deals = {}            # acknowledged deal id → {"status", "stage", "sure"}
        self.tasks = []            # acknowledged task ids
        self.unknown = 0           # writes answered 503 / not answered: outcome unknown
        self.threads = []
        self.tag = f"load-{uuid.uuid4().hex[:8]}"  # the titles of this load's deals

    def req(self, op, method, path, body=None, query=None, org=True):
        t0 = time.monotonic()
        r = self.client.request(method, path, body, token=self.token if org else None,
                                org=self.org if org else None, query=query)
        code = r.code if r.status >= 400 else None
        if r.status == 503 and (not r.headers.get("retry-after")
                                or r.headers.get("content-type") != "application/problem+json"):
            code = f"{code} (without Retry-After or problem+json)"
        with self.lock:
            self.records.append((t0, r.latency, r.status, op, code, r.error))
        return r

    def pause_after(self, r):
        if r.status == 0 or r.status >= 500:
            time.sleep(0.02)

    def writer(self, n):
        rng = random.Random(n)
        while not self.stop.is_set():
            r = self.req("create_deal", "POST", "/api/v1/deals",
                         {"contact_id": rng.choice(self.contacts), "title": f"{self.tag} {uuid.uuid4().hex[:6]}",
                          "amount": "250.00", "currency": "EUR"})
            if r.status != 201:
                with self.lock:
                    self.unknown += r.status == 0 or r.status >= 500
                self.pause_after(r)
                continue
            deal = r.json()["id"]
            state = {"status": "new", "stage": "qualification", "sure": True}
            with self.lock:
                self.deals[deal] = state
            for patch in ({"status": "in_progress"}, {"status": "won", "stage": "negotiation"}):
                if self.stop.is_set():
                    break
                r = self.req("update_deal", "PATCH", f"/api/v1/deals/{deal}", patch)
                if r.status == 200:
                    with self.lock:
                        state.update(patch)
                else:
                    with self.lock:
                        state["sure"] = False  # applied or not: the audit's chains decide
                        self.unknown += r.status == 0 or r.status >= 500
                    self.pause_after(r)
                    break
            r = self.req("create_task", "POST", "/api/v1/tasks",
                         {"deal_id": deal, "title": "follow up", "due_date": "2999-12-31"})
            if r.status == 201:
                with self.lock:
                    self.tasks.append(r.json()["id"])
            else:
                with self.lock:
                    self.unknown += r.status == 0 or r.status >= 500
                self.pause_after(r)

    def reader(self):
        while not self.stop.is_set():
            self.pause_after(self.req("list_deals", "GET", "/api/v1/deals", query={"page_size": 20}))

    def readyz(self):
        while not self.stop.is_set():
            self.req("readyz", "GET", "/readyz", org=False)
            time.sleep(0.05)

    def start(self):
        self.threads = [threading.Thread(target=self.writer, args=(n,), daemon=True) for n in range(self.writers)]
        self.threads += [threading.Thread(target=self.reader, daemon=True),
                         threading.Thread(target=self.readyz, daemon=True)]
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)
            if t.is_alive():
                fail("a load thread did not finish: a request hangs")

    def window(self, t_from, t_to, op=None):
        return [r for r in self.records if t_from <= r[0] < t_to and (op is None or r[3] == op)]


def unexpected(records, allowed):
    """Records whose status is not allowed; a 503 must be a problem document
    with one of the database codes."""
    bad = []
    for t0, lat, status, op, code, err in records:
        if status not in allowed:
            bad.append((op, status, code, err))
        elif status == 503 and code not in ("database_unavailable", "transaction_conflict", "statement_timeout",
                                            "request_timeout"):
            bad.append((op, status, code, err))
    return bad


def status_counts(records):
    c = {}
    for r in records:
        key = f"{r[2]} {r[4]}" if r[2] >= 400 else str(r[2] or "no answer")
        c[key] = c.get(key, 0) + 1
    return ", ".join(f"{k}: {v}" for k, v in sorted(c.items()))


def audit_load(load, db, label):
    """Every acknowledged write is there; no half-applied one anywhere."""
    ids = list(load.deals)
    present = set()
    for i in range(0, len(ids), 500):
        chunk = ",".join(f"'{d}'" for d in ids[i:i + 500])
        present |= {row[0] for row in psql(f"SELECT id FROM crm.deals WHERE id IN ({chunk})", db)}
    missing = [d for d in ids if d not in present]
    if missing:
        fail(f"{label}: {len(missing)} acknowledged deals missing, e.g. {missing[:3]}")
    wrong = 0
    sure = {d: s for d, s in load.deals.items() if s["sure"]}
    rows = psql("SELECT id, status, stage FROM crm.deals", db)
    db_state = {r[0]: (r[1], r[2]) for r in rows}
    for d, s in sure.items():
        if d in db_state and db_state[d] != (s["status"], s["stage"]):
            wrong += 1
    if wrong:
        fail(f"{label}: {wrong} deals differ from their last acknowledged write")
    tasks = set(load.tasks)
    got_tasks = {r[0] for r in psql("SELECT id FROM crm.tasks", db)}
    if tasks - got_tasks:
        fail(f"{label}: {len(tasks - got_tasks)} acknowledged tasks missing")
    extra = int(psql_value(f"SELECT count(*) FROM crm.deals WHERE title LIKE '{load.tag} %'", db)) - len(load.deals)
    checks = run_checks(INTEGRITY_CHECKS, db)
    for name, count, sample in checks:
        if count:
            fail(f"{label}: {name}: {count} (e.g. {sample})")
    bad_checks = sum(1 for c in checks if c[1])
    result(f"audit: {len(load.deals)} acknowledged deals ({len(sure)} with every write acknowledged) and "
           f"{len(tasks)} tasks present: {'yes' if not missing and not (tasks - got_tasks) else 'NO'}; "
           f"last acknowledged state kept: {'yes' if not wrong else 'NO'}; {load.unknown} writes had no "
           f"definite answer (503), of which {max(extra, 0)} deal creates were applied anyway; "
           f"{len(checks) - bad_checks}/{len(checks)} integrity checks clean "
           f"(timeline chains, deal_created, task_created, cross-organization, analytics totals)")


def scenario_outage():
    log("(a) PostgreSQL stopped under load, then started again")
    db = "faults_a"
    createdb(db)
    server = Server("server-a", ADDRS[0], db)
    server.wait_ready()
    c = Client(ADDRS[0])
    token, _, org, _ = register(c, "load", "Faults")
    contacts = [c.request("POST", "/api/v1/contacts", {"name": f"c{i}"}, token=token, org=org).json()["id"]
                for i in range(5)]
    load = Load(ADDRS[0], token, org, contacts)
    load.start()
    time.sleep(4)
    t_stop0 = time.monotonic()
    pg_ctl("stop", "fast")
    t_down = time.monotonic()
    time.sleep(OUTAGE_SECS)
    t_start0 = time.monotonic()
    pg_ctl("start")
    t_up = time.monotonic()
    # Recovery, as the load sees it: the first /readyz 200 and the first
    # acknowledged write that started after PostgreSQL was back.
    t_ready = t_write = None
    deadline = t_up + RECOVER_SECS + 20
    while time.monotonic() < deadline and (t_ready is None or t_write is None):
        time.sleep(0.05)
        with load.lock:
            recs = [r for r in load.records if r[0] >= t_up]
        ok_ready = [r[0] + r[1] for r in recs if r[3] == "readyz" and r[2] == 200]
        ok_write = [r[0] + r[1] for r in recs if r[3] in ("create_deal", "update_deal", "create_task")
                    and r[2] in (200, 201)]
        t_ready = min(ok_ready) if ok_ready else None
        t_write = min(ok_write) if ok_write else None
    time.sleep(5)
    load.finish()
    t_end = time.monotonic()

    before = load.window(0, t_stop0)
    down = load.window(t_down, t_start0)
    around = load.window(t_stop0, t_up)
    after = load.window((t_write or t_up) + 1, t_end)
    max_down = max((r[1] for r in around), default=0)
    max_ready_down = max((r[1] for r in around if r[3] == "readyz"), default=0)
    result(f"before the stop: {len(before)} requests ({status_counts(before)})")
    result(f"pg_ctl stop -m fast took {t_down - t_stop0:.2f} s; down for {t_start0 - t_down:.1f} s: "
           f"{len(down)} requests ({status_counts(down)})")
    result(f"max latency from the stop to the restart: {max_down * 1000:.0f} ms (readyz {max_ready_down * 1000:.0f} ms);"
           f" limit {MAX_DOWN_LATENCY:g} s")
    if max_down >= MAX_DOWN_LATENCY:
        fail(f"(a) a request took {max_down:.1f} s while PostgreSQL was down (limit {MAX_DOWN_LATENCY:g} s)")
    ready_down = [r for r in down if r[3] == "readyz"]
    if not ready_down or any(r[2] != 503 for r in ready_down):
        fail(f"(a) /readyz while PostgreSQL was down: {status_counts(ready_down)} (expected 503 only)")
    bad = unexpected(around, {200, 201, 503})
    if bad:
        fail(f"(a) unexpected answers around the outage: {len(bad)}, e.g. {bad[:3]}")
    if any(r[2] in (200, 201) for r in down if r[3] != "readyz"):
        fail("(a) a request succeeded while PostgreSQL was down")
    if t_ready is None or t_write is None:
        fail(f"(a) the server did not recover within {RECOVER_SECS + 20:g} s of the restart")
    else:
        result(f"pg_ctl start took {t_up - t_start0:.2f} s; after it, /readyz 200 in {t_ready - t_up:.2f} s, "
               f"first acknowledged write in {t_write - t_up:.2f} s (limit {RECOVER_SECS:g} s), same process "
               f"(pid {server.proc.pid})")
        if max(t_ready, t_write) - t_up > RECOVER_SECS:
            fail(f"(a) recovery took {max(t_ready, t_write) - t_up:.1f} s (limit {RECOVER_SECS:g} s)")
    result(f"from 1 s after the first acknowledged write on: {len(after)} requests ({status_counts(after)})")
    if unexpected(after, {200, 201}):
        fail(f"(a) answers other than 2xx after recovery: {status_counts(after)}")
    if server.proc.poll() is not None:
        fail(f"(a) the server exited ({server.proc.returncode})")
    audit_load(load, db, "(a)")
    return server, token, org, contacts


def scenario_kill_backends(server, token, org, contacts):
    log("(a2) every server connection terminated (pg_terminate_backend) under load")
    load = Load(server.addr, token, org, contacts)
    load.start()
    time.sleep(2)
    t_kill = time.monotonic()
    killed = psql_value("SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = 'minicrm') s", "faults_a")
    time.sleep(4)
    load.finish()
    around = load.window(t_kill, t_kill + 1)
    after = load.window(t_kill + 1, time.monotonic())
    result(f"{killed} connections terminated; the next second: {len(around)} requests ({status_counts(around)}); "
           f"after it: {len(after)} requests ({status_counts(after)})")
    bad = unexpected(around, {200, 201, 503})
    if bad:
        fail(f"(a2) unexpected answers after the connections were killed: {bad[:3]}")
    if unexpected(after, {200, 201}):
        fail(f"(a2) answers other than 2xx a second after the kill: {status_counts(after)}")
    audit_load(load, "faults_a", "(a2)")


def scenario_sigterm(server, token, org, contacts):
    log("(b) SIGTERM with requests in flight")
    n = int(os.environ.get("FAULTS_INFLIGHT", "8"))
    # A lock on crm.deals holds every deal request in the database.
    holder = subprocess.Popen(
        ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", os.environ["MC_PG_PORT"], "-U", "postgres", "-d", "faults_a",
         "-c", "BEGIN; LOCK TABLE crm.deals IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(3); COMMIT;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        if psql_value("SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                      "WHERE c.relname = 'deals' AND l.mode = 'AccessExclusiveLock' AND l.granted", "faults_a") == "1":
            break
        time.sleep(0.05)
    answers = [None] * n
    done_at = [None] * n

    def one(i):
        c = Client(server.addr, timeout=30)
        if i % 2:
            answers[i] = c.request("GET", "/api/v1/deals", token=token, org=org)
        else:
            answers[i] = c.request("POST", "/api/v1/deals", {"contact_id": contacts[0], "title": f"in flight {i}",
                                                             "amount": "1.00", "currency": "EUR"},
                                   token=token, org=org)
        done_at[i] = time.monotonic()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    waiting = 0
    for _ in range(100):
        waiting = int(psql_value("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'minicrm' "
                                 "AND wait_event_type = 'Lock'", "faults_a"))
        if waiting >= n:
            break
        time.sleep(0.05)
    t_sig = time.monotonic()
    server.terminate()
    time.sleep(0.3)
    late = Client(server.addr, timeout=5).request("GET", "/healthz")
    for t in threads:
        t.join(timeout=30)
    code = server.wait(30)
    t_exit = time.monotonic()
    holder.wait(timeout=30)
    statuses = [a.status if a else None for a in answers]
    last_answer = max((t for t in done_at if t), default=t_sig)
    result(f"{waiting} requests waiting in the database when SIGTERM was sent; their answers: {statuses}")
    result(f"a new request 0.3 s after SIGTERM: {late.status or 'refused'} ({late.error or ''}"
           f"{late.body[:80] if late.status else ''})".rstrip())
    result(f"exit code {code}, {t_exit - t_sig:.2f} s after SIGTERM, {max(0.0, t_exit - last_answer):.2f} s "
           f"after the last in-flight answer")
    if waiting < n:
        fail(f"(b) only {waiting} of {n} requests were in flight when SIGTERM was sent")
    if any(s not in (200, 201) for s in statuses):
        fail(f"(b) in-flight requests did not all complete with 2xx: {statuses}")
    if code != 0:
        fail(f"(b) the server exited with {code} (expected 0)")
    if t_exit < last_answer - 0.05:
        fail("(b) the server exited before answering its in-flight requests")
    if late.status not in (0, 503):
        fail(f"(b) a new request after SIGTERM was answered {late.status}")
    created = [a.json()["id"] for a in answers if a and a.status == 201]
    if created:
        have = int(psql_value("SELECT count(*) FROM crm.deals WHERE id IN (%s)" % ",".join(
            f"'{d}'" for d in created), "faults_a"))
        result(f"{have}/{len(created)} deals created by in-flight requests are in the database")
        if have != len(created):
            fail("(b) an acknowledged in-flight write is missing")


def scenario_concurrent_start():
    log(f"(c) two servers started at once on an empty database ({ROUNDS} rounds)")
    versions = len(glob.glob(os.path.join(ROOT, "sql", "migrations", "V*__*.sql")))
    for i in range(ROUNDS):
        db = f"faults_c{i}"
        createdb(db)
        servers = [Server(f"server-c{i}-{k}", ADDRS[1 + k], db, RUST_LOG="info") for k in range(2)]
        t0 = time.monotonic()
        try:
            ready = [s.wait_ready(120) - t0 for s in servers]
        except RuntimeError as e:
            fail(f"(c) round {i}: {e}")
            for s in servers:
                s.stop()
            continue
        rows = psql("SELECT version, count(*) FROM refinery_schema_history GROUP BY version ORDER BY version", db)
        dup = [r for r in rows if int(r[1]) != 1]
        c1, c2 = Client(servers[0].addr), Client(servers[1].addr)
        email = f"race-{uuid.uuid4().hex[:8]}@example.com"
        reg = c1.request("POST", "/api/v1/auth/register", {"email": email, "password": "correct horse battery",
                                                           "name": "Race", "organization_name": "Race"})
        login = c2.request("POST", "/api/v1/auth/login", {"email": email, "password": "correct horse battery"})
        waits = sum(s.log_text().count("migrations applied") for s in servers)
        errors = sum(s.log_text().count("ERROR") for s in servers)
        codes = [s.stop() for s in servers]
        result(f"round {i}: ready after {ready[0]:.2f} s and {ready[1]:.2f} s; refinery_schema_history: "
               f"{len(rows)} versions (of {versions} files), duplicates: {len(dup)}; register on one "
               f"{reg.status}, login on the other {login.status}; 'migrations applied' logged {waits}x; "
               f"errors logged: {errors}; exit codes {codes}")
        if dup or len(rows) != versions:
            fail(f"(c) round {i}: refinery_schema_history {rows} (expected {versions} versions, once each)")
        if (reg.status, login.status) != (201, 200):
            fail(f"(c) round {i}: register {reg.status} {reg.body[:200]}, login {login.status} {login.body[:200]}")
        if errors or codes != [0, 0]:
            fail(f"(c) round {i}: errors in the logs ({errors}) or exit codes {codes}")


def main():
    server, token, org, contacts = scenario_outage()
    scenario_kill_backends(server, token, org, contacts)
    scenario_sigterm(server, token, org, contacts)
    scenario_concurrent_start()
    print("\n== faults summary")
    for r in RESULTS:
        print("  " + r)
    print(f"failures: {len(FAILURES)}")
    for f in FAILURES:
        print("  " + f)
    with open(os.path.join(os.environ["MC_TMP"], "faults-summary.txt"), "w") as f:
        f.write("\n".join(RESULTS + [f"failures: {len(FAILURES)}"] + FAILURES) + "\n")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
