"""Shared by scripts/lib/soak.py and scripts/lib/faults.py: a small HTTP
client (standard library, one keep-alive connection per thread), psql as the
superuser, and minicrm servers started and stopped from Python.

The environment comes from scripts/lib/cluster.sh: MC_BIN, MC_TMP,
MC_PG_PORT, MC_PG_DATA, MC_PG_OPTS, MC_PG_BIN, MC_JWT_SECRET.
"""

import http.client
import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse
import uuid

ENV = os.environ


def log(*a):
    print("==", *a, flush=True)


class Response:
    __slots__ = ("status", "body", "headers", "latency", "error")

    def __init__(self, status, body, headers, latency, error=None):
        self.status = status
        self.body = body
        self.headers = headers
        self.latency = latency
        self.error = error

    def json(self):
        return json.loads(self.body) if self.body else None

    @property
    def code(self):
        """The problem `code` of an error response, if any."""
        try:
            return json.loads(self.body).get("code")
        except Exception:
            return None


class Client:
    """One keep-alive HTTP/1.1 connection per thread to one server."""

    def __init__(self, addr, timeout=30.0):
        self.host, port = addr.rsplit(":", 1)
        self.port = int(port)
        self.timeout = timeout
        self.local = threading.local()

    def _conn(self):
        c = getattr(self.local, "conn", None)
        if c is None:
            c = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            self.local.conn = c
        return c

    def close(self):
        c = getattr(self.local, "conn", None)
        if c is not None:
            c.close()
            self.local.conn = None

    def request(self, method, path, body=None, token=None, org=None, query=None, timeout=None):
        if query:
            path = path + "?" + urllib.parse.urlencode(query, doseq=True)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if org:
            headers["X-Organization-Id"] = str(org)
        t0 = time.monotonic()
        # No retries: a write whose answer was lost must stay visible as lost.
        conn = self._conn()
        if timeout is not None:
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            r = conn.getresponse()
            payload = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            if hdrs.get("connection", "").lower() == "close":
                self.close()
            return Response(r.status, payload.decode("utf-8", "replace"), hdrs, time.monotonic() - t0)
        except Exception as e:  # refused, reset, timeout, ...
            self.close()
            return Response(0, "", {}, time.monotonic() - t0, error=f"{type(e).__name__}: {e}")


def psql(sql, db="minicrm", *, stdin=None, check=True):
    """Runs SQL as the superuser; returns the rows of the last statement
    (unaligned, '|' separated)."""
    out = subprocess.run(
        ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", ENV["MC_PG_PORT"], "-U", "postgres", "-d", db,
         "-v", "ON_ERROR_STOP=1", "-tA", "-F", "|", "-c", sql] if stdin is None else
        ["psql", "-X", "-q", "-h", "127.0.0.1", "-p", ENV["MC_PG_PORT"], "-U", "postgres", "-d", db,
         "-v", "ON_ERROR_STOP=1", "-tA", "-F", "|", "-f", "-"],
        input=stdin if stdin is not None else None, capture_output=True, text=True)
    if check and out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr.strip()}")
    return [line.split("|") for line in out.stdout.splitlines() if line != ""]


def psql_value(sql, db="minicrm"):
    rows = psql(sql, db)
    return rows[0][0] if rows else None


def db_url(db):
    return f"postgres://postgres@127.0.0.1:{ENV['MC_PG_PORT']}/{db}"


def as_pg(args):
    if os.geteuid() == 0:
        args = ["runuser", "-u", "postgres", "--"] + args
    return args


def pg_ctl(action, mode="fast"):
    """Stops or starts the throwaway cluster (as the postgres user when root)."""
    pg_ctl_bin = os.path.join(ENV["MC_PG_BIN"], "pg_ctl")
    if action == "stop":
        args = [pg_ctl_bin, "-D", ENV["MC_PG_DATA"], "-m", mode, "-w", "stop"]
    else:
        args = [pg_ctl_bin, "-D", ENV["MC_PG_DATA"], "-l", os.path.join(ENV["MC_TMP"], "postgres.log"), "-w",
                "-o", ENV["MC_PG_OPTS"], "start"]
    subprocess.run(as_pg(args), check=True, stdout=subprocess.DEVNULL)


class Server:
    """A minicrm server process (`minicrm serve`), its log in $MC_TMP/NAME.log."""

    def __init__(self, name, addr, db, **extra_env):
        self.name, self.addr = name, addr
        env = dict(os.environ, DATABASE_URL=db_url(db), JWT_SECRET=ENV["MC_JWT_SECRET"], LISTEN_ADDR=addr,
                   ACCESS_TOKEN_TTL_SECS="86400", AUTH_ATTEMPTS_PER_EMAIL_PER_MINUTE="100000000",
                   AUTH_ATTEMPTS_PER_ADDRESS_PER_MINUTE="100000000", RUST_LOG=ENV.get("RUST_LOG", "warn"), NO_COLOR="1")
        env.update({k: str(v) for k, v in extra_env.items()})
        self.log_path = os.path.join(ENV["MC_TMP"], f"{name}.log")
        self.log_file = open(self.log_path, "ab")
        self.proc = subprocess.Popen([ENV["MC_BIN"], "serve"], env=env, stdout=self.log_file,
                                     stderr=subprocess.STDOUT)
        with open(os.path.join(ENV["MC_TMP"], "pids"), "a") as f:
            f.write(f"{self.proc.pid}\n")

    def wait_ready(self, secs=60):
        c = Client(self.addr, timeout=2)
        deadline = time.monotonic() + secs
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}; see {self.log_path}")
            if c.request("GET", "/readyz").status == 200:
                c.close()
                return time.monotonic()
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not become ready in {secs} s")

    def terminate(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait(self, secs=30):
        try:
            return self.proc.wait(timeout=secs)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None

    def stop(self):
        self.terminate()
        return self.wait()

    def log_text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")


def register(client, label, org_name=None):
    """Registers a fresh user (and the organization they own); returns
    (token, user_id, org_id, email)."""
    email = f"{label}-{uuid.uuid4().hex[:12]}@example.com"
    r = client.request("POST", "/api/v1/auth/register",
                       {"email": email, "password": "correct horse battery", "name": label,
                        "organization_name": org_name or f"{label} org"})
    if r.status != 201:
        raise RuntimeError(f"register {email}: {r.status} {r.body[:300]} {r.error or ''}")
    j = r.json()
    return j["access_token"], j["user"]["id"], j["organization"]["id"], email


def add_member(client, owner_token, org_id, email, role, member_token):
    """The owner invites `email` with `role` and its user (`member_token`)
    accepts: how someone becomes a member (SPEC §16)."""
    r = client.request("POST", f"/api/v1/organizations/{org_id}/members", {"email": email, "role": role},
                       token=owner_token)
    if r.status != 201:
        raise RuntimeError(f"invite {email} as {role}: {r.status} {r.body[:300]}")
    invitation = r.json()["id"]
    r = client.request("POST", f"/api/v1/invitations/{invitation}/accept", None, token=member_token)
    if r.status != 200:
        raise RuntimeError(f"accept {email}'s invitation: {r.status} {r.body[:300]}")


# ---------------------------------------------------------------------------
# Database-wide integrity checks, true whoever wrote: each query yields one
# text column, one row per violation.

INTEGRITY_CHECKS = [
    # R6 as a chain: a deal's status_changed rows, in order, go new → ... → its
    # current status (none when it is still new); the same for stages. A
    # status change applied without its timeline row, or a row without its
    # change, breaks the chain.
    ("status_changed chain does not lead from 'new' to the deal's status", """
      WITH r AS (
        SELECT a.organization_id, a.deal_id, a.payload ->> 'from' AS f, a.payload ->> 'to' AS t,
               lag(a.payload ->> 'to') OVER w AS prev_to,
               row_number() OVER (PARTITION BY a.organization_id, a.deal_id ORDER BY a.created_at DESC, a.id DESC) AS rn
          FROM crm.activities a WHERE a.type = 'status_changed'
        WINDOW w AS (PARTITION BY a.organization_id, a.deal_id ORDER BY a.created_at, a.id))
      SELECT d.id::text || ' (' || d.status || ')' FROM crm.deals d
       WHERE coalesce((SELECT r.t FROM r WHERE r.organization_id = d.organization_id AND r.deal_id = d.id
                        AND r.rn = 1), 'new') <> d.status::text
          OR EXISTS (SELECT 1 FROM r WHERE r.organization_id = d.organization_id AND r.deal_id = d.id
                      AND r.f IS DISTINCT FROM coalesce(r.prev_to, 'new'))"""),
    ("stage_changed chain does not lead from 'qualification' to the deal's stage", """
      WITH r AS (
        SELECT a.organization_id, a.deal_id, a.payload ->> 'from' AS f, a.payload ->> 'to' AS t,
               lag(a.payload ->> 'to') OVER w AS prev_to,
               row_number() OVER (PARTITION BY a.organization_id, a.deal_id ORDER BY a.created_at DESC, a.id DESC) AS rn
          FROM crm.activities a WHERE a.type = 'stage_changed'
        WINDOW w AS (PARTITION BY a.organization_id, a.deal_id ORDER BY a.created_at, a.id))
      SELECT d.id::text || ' (' || d.stage || ')' FROM crm.deals d
       WHERE coalesce((SELECT r.t FROM r WHERE r.organization_id = d.organization_id AND r.deal_id = d.id
                        AND r.rn = 1), 'qualification') <> d.stage::text
          OR EXISTS (SELECT 1 FROM r WHERE r.organization_id = d.organization_id AND r.deal_id = d.id
                      AND r.f IS DISTINCT FROM coalesce(r.prev_to, 'qualification'))"""),
    ("deals without exactly one deal_created row", """
      SELECT d.id::text || ': ' || count(a.id) FROM crm.deals d
        LEFT JOIN crm.activities a ON a.organization_id = d.organization_id AND a.deal_id = d.id
             AND a.type = 'system' AND a.payload ->> 'event' = 'deal_created'
       GROUP BY d.id HAVING count(a.id) <> 1"""),
    ("tasks without exactly one task_created row (R7)", """
      SELECT t.id::text || ': ' || count(a.id) FROM crm.tasks t
        LEFT JOIN crm.activities a ON a.organization_id = t.organization_id AND a.deal_id = t.deal_id
             AND a.type = 'task_created' AND a.payload ->> 'task_id' = t.id::text
       GROUP BY t.id HAVING count(a.id) <> 1"""),
    # R8: no reference into another organization (joined on the id alone, so a
    # row of another organization would be found).
    ("deals whose contact is in another organization or missing", """
      SELECT d.id::text FROM crm.deals d
        LEFT JOIN crm.contacts c ON c.id = d.contact_id
       WHERE c.id IS NULL OR c.organization_id <> d.organization_id"""),
    ("tasks whose deal is in another organization or missing", """
      SELECT t.id::text FROM crm.tasks t
        LEFT JOIN crm.deals d ON d.id = t.deal_id
       WHERE d.id IS NULL OR d.organization_id <> t.organization_id"""),
    ("activities whose deal is in another organization or missing", """
      SELECT a.id::text FROM crm.activities a
        LEFT JOIN crm.deals d ON d.id = a.deal_id
       WHERE d.id IS NULL OR d.organization_id <> a.organization_id"""),
    ("contacts whose owner is not a member of their organization", """
      SELECT c.id::text FROM crm.contacts c
       WHERE NOT EXISTS (SELECT 1 FROM crm.organization_members m
                          WHERE m.organization_id = c.organization_id AND m.user_id = c.owner_id)"""),
    ("deals whose owner is not a member of their organization", """
      SELECT d.id::text FROM crm.deals d
       WHERE NOT EXISTS (SELECT 1 FROM crm.organization_members m
                          WHERE m.organization_id = d.organization_id AND m.user_id = d.owner_id)"""),
    ("activities whose author is not a member of their organization", """
      SELECT a.id::text FROM crm.activities a
       WHERE a.author_id IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM crm.organization_members m
                          WHERE m.organization_id = a.organization_id AND m.user_id = a.author_id)"""),
    # The analytics running totals (crm.deal_totals + crm.deal_totals_delta)
    # equal a count of the deals.
    ("analytics running totals differ from the deals", """
      WITH t AS (
        SELECT organization_id AS o, status, stage, currency, sum(deals) AS n, sum(amount) AS a
          FROM (SELECT organization_id, status, stage, currency, deals, amount FROM crm.deal_totals
                UNION ALL
                SELECT organization_id, status, stage, currency, deals, amount FROM crm.deal_totals_delta) x
         GROUP BY 1, 2, 3, 4 HAVING sum(deals) <> 0 OR sum(amount) <> 0),
      d AS (SELECT organization_id AS o, status, stage, currency, count(*) AS n, sum(amount) AS a
              FROM crm.deals GROUP BY 1, 2, 3, 4)
      SELECT o::text || ' ' || status || '/' || stage || '/' || currency || ': totals '
             || coalesce(t.n::text, '-') || ' ' || coalesce(t.a::text, '-') || ', deals '
             || coalesce(d.n::text, '-') || ' ' || coalesce(d.a::text, '-')
        FROM t FULL JOIN d USING (o, status, stage, currency)
       WHERE t.n IS DISTINCT FROM d.n OR t.a IS DISTINCT FROM d.a"""),
]


def run_checks(checks, db="minicrm"):
    """Runs (name, query) checks; returns [(name, count, sample)]."""
    results = []
    for name, query in checks:
        rows = psql(f"SELECT count(*), coalesce(left(string_agg(x, '; '), 400), '') FROM ({query}) s (x)", db)
        results.append((name, int(rows[0][0]), rows[0][1] if len(rows[0]) > 1 else ""))
    return results
