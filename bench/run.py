#!/usr/bin/env python3
"""The minicrm benchmark: HTTP (wrk) against a release server on loopback,
and the same SQL calls through pgbench as the limit, at several sizes; at the
largest size, the fixed cost of a request: W2 against a bare primary-key
lookup and the breakdown variants (bench/pgbench/ref_*.sql), alternated in
rounds. Writes docs/benchmarks.md. Run through bench/run (which installs and
builds).

Optional HTTP variants of the fixed-cost rounds, each served by a server
of its own on the next ports: BENCH_HTTP_BEFORE=<a minicrm binary> adds
`http_before` (W2 through that binary, e.g. one built from main before a
change to the server), BENCH_HTTP_UNIX=1 adds `http_unix` (the server
connected to PostgreSQL over its Unix socket instead of TCP).

`bench/run idempotency` measures W3 without and with an Idempotency-Key,
alternated in rounds, and writes only its section (run_idempotency).
`bench/run events` measures W3 and W4 (pgbench) and a 50,000-row import with
the event triggers enabled and disabled, alternated in rounds, and writes only
its section (run_events).

BENCH_WORKLOADS=W2 (a comma list of workload keys, or "none") runs only those
workloads and then splices the fixed-cost section into the existing
docs/benchmarks.md instead of rewriting it. `bench/run.py --report` renders the
report again from the last run's bench/out/results.json and meta.json (after
editing the notes), with the same BENCH_WORKLOADS as that run.
"""

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PORT = int(os.environ.get("BENCH_PG_PORT", "55460"))
HTTP = os.environ.get("BENCH_HTTP_ADDR", "127.0.0.1:18080")
SIZES = [int(s) for s in os.environ.get("BENCH_SIZES", "50000,1000000").split(",")]
WARMUP = int(os.environ.get("BENCH_WARMUP_SECS", "5"))
DURATION = int(os.environ.get("BENCH_SECS", "20"))
CONNECTIONS = 32
# The fixed-cost comparison: rounds of every variant, BENCH_REF_SECS each.
REF_ROUNDS = int(os.environ.get("BENCH_REF_ROUNDS", "5"))
REF_SECS = int(os.environ.get("BENCH_REF_SECS", "8"))
SECRET = "bench-secret-bench-secret-bench-secret!"
ROOT_USER = os.geteuid() == 0

WORKLOADS = [
    ("W1", "list deals (filters, sort, page 3, total)", "w1_list"),
    ("W2", "get one deal", "w2_get"),
    ("W3", "create a contact", "w3_create_contact"),
    ("W3i", "create a contact with an Idempotency-Key (a new one per request)", "w3i_create_contact_idempotent"),
    ("W4", "patch a deal's status (timeline row)", "w4_patch_status"),
    ("W5", "analytics summary, cached", "w5_summary"),
    ("W5u", "analytics summary, uncached", "w5_summary"),
    ("W6", "login (argon2id)", "w6_login"),
]
ONLY = os.environ.get("BENCH_WORKLOADS")  # unset: every workload and a full report
SELECTED = [w for w in WORKLOADS if ONLY is None or w[0] in ONLY.split(",")]

# The fixed cost of a request (issue #10 item 7): the function path against
# the bare reference, and the variants that take one piece out or put one
# back (bench/pgbench/ref_*.sql; helpers in ref_setup.sql). "http" is W2 (wrk).
REFS = [
    ("bare", "ref_bare_get", "bare reference: the deal by primary key as the same JSON "
     "(`app.deal_json`), no context, no role switch, no function (as the superuser login)"),
    ("fn", "w2_get", "function path: `SELECT api.deals_get(…)::text FROM app.act_as(user, org)`, "
     "what the server sends for W2"),
    ("http", "w2_get", "HTTP W2, `GET /deals/{id}` through the server (wrk)"),
    ("select", "ref_select", "the statement alone: the benchmark's id lookup, no deal, no context"),
    ("bare_id", "ref_bare_id", "bare lookup returning the id instead of the JSON"),
    ("act_as", "ref_act_as", "the statement alone + `app.act_as`, no deal"),
    ("bare_act_as", "ref_bare_act_as", "bare lookup in a statement that also calls `app.act_as` "
     "(planned as the login: no RLS, no plpgsql wrapper)"),
    ("settings_only", "ref_get_settings_only", "`api.deals_get` after a plpgsql function that only "
     "sets the three settings (no switch, no lookup, no RLS; not a valid request)"),
    ("no_switch", "ref_get_no_switch", "function path without the role switch (so without RLS, "
     "as the superuser; not a valid request)"),
    ("before", "ref_w2_before", "function path with `app.act_as` as it was before (PERFORM, six "
     "settings, lookup after the switch under RLS)"),
]
# HTTP variants served by servers of their own (module docstring); the
# description of http_before names the binary (meta.json, "http_before").
HTTP_EXTRAS = [
    ("http_before", "w2_get", "HTTP W2 through the server binary `{http_before}` (`BENCH_HTTP_BEFORE`)"),
    ("http_unix", "w2_get", "HTTP W2 with the server connected to PostgreSQL over its Unix socket "
     "(`BENCH_HTTP_UNIX`; the function path still uses TCP)"),
]
HTTP_BEFORE = os.environ.get("BENCH_HTTP_BEFORE")
HTTP_UNIX = os.environ.get("BENCH_HTTP_UNIX") not in (None, "", "0")


def extra_addr(n):
    host, port = HTTP.rsplit(":", 1)
    return f"{host}:{int(port) + n}"


def log(*a):
    print("==", *a, file=sys.stderr, flush=True)


def pg_bin():
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name), reverse=True):
        if (d / "initdb").exists():
            return d
    sys.exit("PostgreSQL server binaries not found")


BIN = pg_bin()


def as_pg(args, **kw):
    if ROOT_USER:
        args = ["runuser", "-u", "postgres", "--"] + [str(a) for a in args]
    return subprocess.run([str(a) for a in args], check=True, **kw)


def psql(db, sql, *, tuples=True):
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres", "-d", db, "-v", "ON_ERROR_STOP=1",
         "-X", "-q"] + (["-tA"] if tuples else []) + ["-c", sql],
        check=True, capture_output=True, text=True)
    return out.stdout.strip()


def url(db):
    return f"postgres://postgres@127.0.0.1:{PORT}/{db}"


class Cluster:
    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="minicrm-bench-"))
        os.chmod(self.dir, 0o755)
        if ROOT_USER:
            shutil.chown(self.dir, "postgres")

    def start(self):
        log(f"starting PostgreSQL ({BIN}) on 127.0.0.1:{PORT} in {self.dir}")
        as_pg([BIN / "initdb", "-D", self.dir / "data", "-U", "postgres", "--auth=trust", "-E", "UTF8",
               "--locale=C.UTF-8", "--no-instructions"], stdout=subprocess.DEVNULL)
        opts = (f"-c listen_addresses=127.0.0.1 -c port={PORT} -c unix_socket_directories={self.dir} "
                "-c max_connections=200 -c shared_buffers=1GB -c work_mem=16MB -c maintenance_work_mem=512MB "
                "-c shared_preload_libraries=pg_stat_statements "
                "-c max_wal_size=4GB -c checkpoint_timeout=30min")
        as_pg([BIN / "pg_ctl", "-D", self.dir / "data", "-l", self.dir / "postgres.log", "-w", "-o", opts, "start"],
              stdout=subprocess.DEVNULL)
        # Not on the command line, which would outrank ALTER SYSTEM (see track_statements).
        track_statements("postgres", "none")

    def stop(self):
        subprocess.run((["runuser", "-u", "postgres", "--"] if ROOT_USER else [])
                       + [str(BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


def callgrind_per_request(pristine, db, script, n, keep=None):
    """User-space instructions a single-user backend executes per request:
    valgrind's callgrind over `postgres --single` on a fresh copy of the
    data directory `pristine`, for script(n) and for script(2n), whose
    difference divided by n leaves out start-up, warm-up and exit. The
    counts are exact and do not depend on the machine's load; they leave out
    the kernel and the locks of concurrent clients. `keep`: a path prefix
    under which to keep the two profiles (for callgrind_annotate)."""
    counts = []
    for k in (n, 2 * n):
        work = Path(pristine).parent / "work"
        shutil.rmtree(work, ignore_errors=True)
        as_pg(["cp", "-a", pristine, work])
        out = Path(pristine).parent / f"callgrind-{k}.out"
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", BIN / "postgres", "--single",
               "-D", work, "-c", "fsync=off", "-c", "shared_preload_libraries=", db]
        if ROOT_USER:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        p = subprocess.run([str(c) for c in cmd], input=script(k), capture_output=True, text=True)
        m = re.search(r"Collected : (\d+)", p.stderr)
        if not m or "ERROR" in p.stdout or "ERROR:" in p.stderr:
            sys.exit(p.stderr[-2000:] + p.stdout[-2000:])
        counts.append(int(m.group(1)))
        if keep:
            shutil.copy(out, f"{keep}-{k}.out")
    return (counts[1] - counts[0]) / n


class KeptCluster(Cluster):
    """A cluster in a fixed directory, kept between commands (the set-up of
    bench/w4events.py and bench/fixedcost.py)."""

    def __init__(self, path):
        self.dir = Path(path)

    def create(self, db, size):
        """Starts a new cluster there with database `db` holding one
        organization of `size` deals (seed_one_org); returns its ids."""
        if self.dir.exists():
            sys.exit(f"{self.dir} exists: stop first")
        self.dir.mkdir(mode=0o755)
        if ROOT_USER:
            shutil.chown(self.dir, "postgres")
        self.start()
        psql("postgres", f"CREATE DATABASE {db}")
        log(f"seeding {size} deals into {db}")
        return seed_one_org(db, size)[0]

    def pristine_copy(self):
        """A base backup of the running cluster in a fresh directory beside
        it, for callgrind_per_request; returns that directory's pristine/."""
        vg = self.dir.parent / (self.dir.name + "-vg")
        shutil.rmtree(vg, ignore_errors=True)
        vg.mkdir(mode=0o755)
        if ROOT_USER:
            shutil.chown(vg, "postgres")
        as_pg(["pg_basebackup", "-h", "127.0.0.1", "-p", PORT, "-U", "postgres", "-D", vg / "pristine",
               "-X", "stream", "-c", "fast"])
        return vg / "pristine"


class Server:
    def __init__(self, db, cache_ttl=30, binary=None, addr=HTTP, database_url=None):
        self.addr = addr
        env = dict(os.environ, DATABASE_URL=database_url or url(db), JWT_SECRET=SECRET, LISTEN_ADDR=addr,
                   RUST_LOG="warn", ANALYTICS_CACHE_TTL_SECS=str(cache_ttl), ACCESS_TOKEN_TTL_SECS="7200",
                   AUTH_ATTEMPTS_PER_EMAIL_PER_MINUTE="100000000",
                   AUTH_ATTEMPTS_PER_ADDRESS_PER_MINUTE="100000000")
        self.proc = subprocess.Popen([str(binary or ROOT / "target" / "release" / "minicrm"), "serve"], env=env)
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://{addr}/readyz", timeout=1)
                return
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("server did not become ready")

    def peak_rss_mb(self):
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def post(path, body, token=None, org=None, addr=HTTP):
    req = urllib.request.Request(f"http://{addr}{path}", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)


def parse_wrk(text):
    def dur(s):
        m = re.match(r"([\d.]+)(us|ms|s)", s)
        v = float(m.group(1))
        return {"us": v / 1000, "ms": v, "s": v * 1000}[m.group(2)]

    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", text, re.M))
    reqs = int(re.search(r"(\d+) requests in", text).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    errors = (int(non2xx.group(1)) if non2xx else 0) + (sum(int(x) for x in sock.groups()) if sock else 0)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1)), "p50": dur(lat["50"]),
            "p99": dur(lat["99"]), "errors": errors, "requests": reqs}


def wrk(script, secs, connections=CONNECTIONS, addr=HTTP, ids=None):
    """wrk with bench/wrk/<script>.lua; `ids`: the Lua file of token, org
    and deals it reads (default bench/out/ids.lua)."""
    out = subprocess.run(["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{secs}s", "--latency", "-s",
                          f"bench/wrk/{script}.lua", f"http://{addr}"],
                         cwd=ROOT, capture_output=True, text=True, check=True,
                         env=dict(os.environ, BENCH_IDS=str(ids or OUT / "ids.lua")))
    return parse_wrk(out.stdout)


def proc_cpu_secs(pid):
    """User + system CPU time of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_children_cpu_secs():
    """CPU time of this script's finished children (pgbench, wrk)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def wrk_cpu(db, script, secs, server):
    """A wrk run, with the CPU per request of wrk, of the server process and
    of the server's pooled PostgreSQL backends (all alive during the run)."""
    pids = psql(db, "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                    "AND backend_type = 'client backend' AND pid <> pg_backend_pid()").split()
    before = {p: proc_cpu_secs(p) for p in pids}
    srv0, cli0 = proc_cpu_secs(server.proc.pid), own_children_cpu_secs()
    run = wrk(script, secs, addr=server.addr)
    n = max(run["requests"], 1)
    backend = sum(proc_cpu_secs(p) - c for p, c in before.items() if Path(f"/proc/{p}").exists())
    return {"tps": run["rps"], "cpu_us": backend / n * 1e6, "server_us": (proc_cpu_secs(server.proc.pid) - srv0) / n * 1e6,
            "client_us": (own_children_cpu_secs() - cli0) / n * 1e6}


def children_cpu_secs(cluster):
    """CPU time (user + system) of the postmaster's exited children: the
    backends of finished pgbench runs (each run's backends exit at its end)."""
    pid = (cluster.dir / "data" / "postmaster.pid").read_text().split()[0]
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def pgbench(db, script, ids, secs=None, cluster=None):
    """TPS and average latency; with a cluster, also the backends' CPU per
    transaction in µs (less sensitive to the other load on the machine)."""
    cpu0 = children_cpu_secs(cluster) if cluster else 0
    cli0 = own_children_cpu_secs()
    out = subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres", "-n", "-M", "prepared",
                          f"-c{CONNECTIONS}", "-j2", f"-T{secs or DURATION}", "-f", f"bench/pgbench/{script}.sql",
                          "-D", f"user={ids['user']}", "-D", f"org={ids['org']}", "-D", f"email={ids['email']}", db],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    tps = float(re.search(r"tps = ([\d.]+) \(without initial", out.stdout).group(1))
    avg = float(re.search(r"latency average = ([\d.]+) ms", out.stdout).group(1))
    res = {"tps": tps, "avg": avg}
    if cluster:
        txs = int(re.search(r"number of transactions actually processed: (\d+)", out.stdout).group(1))
        time.sleep(0.5)  # the backends exit and are reaped after pgbench has gone
        res["cpu_us"] = (children_cpu_secs(cluster) - cpu0) / max(txs, 1) * 1e6
        res["client_us"] = (own_children_cpu_secs() - cli0) / max(txs, 1) * 1e6
    return res


def track_statements(db, level):
    """pg_stat_statements.track for every session: 'none' while measuring
    (tracking costs per statement, and nested statements would weigh on the
    function path more than on a bare query), 'top' for the counting runs."""
    psql(db, f"ALTER SYSTEM SET pg_stat_statements.track = '{level}'")
    psql(db, "SELECT pg_reload_conf()")
    time.sleep(0.5)  # the server's pooled sessions reload before their next statement


def count_statements(db, script):
    """Top-level statements per request in a short run of its own (not the measured one)."""
    track_statements(db, "top")
    try:
        psql(db, "SELECT pg_stat_statements_reset()")
        run = wrk(script, max(WARMUP, 2))
        return {"requests": run["requests"], "rows": statements(db)}
    finally:
        track_statements(db, "none")


def fixed_cost(db, ids, cluster, server):
    """REF_ROUNDS rounds of every REFS variant (and of the configured
    HTTP_EXTRAS), alternated, so that the machine's other load falls on all
    of them alike; medians are reported."""
    psql(db, (ROOT / "bench" / "pgbench" / "ref_setup.sql").read_text())
    servers = {"http": server}
    try:
        if HTTP_BEFORE:
            servers["http_before"] = Server(db, binary=HTTP_BEFORE, addr=extra_addr(1))
        if HTTP_UNIX:
            socket_dir = urllib.parse.quote(str(cluster.dir), safe="")
            servers["http_unix"] = Server(db, addr=extra_addr(2),
                                          database_url=f"postgres://postgres@{socket_dir}:{PORT}/{db}")
        for key, s in servers.items():
            if key != "http":  # the main server is warm from the workloads
                log(f"fixed cost: {key} warm-up {WARMUP}s")
                wrk("w2_get", WARMUP, addr=s.addr)
        variants = REFS + [v for v in HTTP_EXTRAS if v[0] in servers]
        runs = {key: [] for key, _, _ in variants}
        for r in range(REF_ROUNDS):
            for key, script, _ in variants:
                log(f"fixed cost: round {r + 1}/{REF_ROUNDS}, {key} {REF_SECS}s")
                if key in servers:
                    runs[key].append(wrk_cpu(db, script, REF_SECS, servers[key]))
                else:
                    runs[key].append(pgbench(db, script, ids, REF_SECS, cluster))
    finally:
        for key, s in servers.items():
            if key != "http":
                s.stop()
    return runs


def statements(db):
    """Statements the server ran for requests since the last reset, by query
    text: not the listener's (the announcer's round, 20 a second, and its
    lock attempts), which run whatever the requests."""
    rows = psql(db, "SELECT calls, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements "
                    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND toplevel AND query NOT ILIKE '%pg_stat_statements%' "
                    "AND query NOT ILIKE '%events_announce%' AND query NOT ILIKE '%pg_try_advisory_lock%' "
                    "ORDER BY calls DESC")
    return [(int(r.split("|", 1)[0]), r.split("|", 1)[1]) for r in rows.splitlines() if r]


def plans(db, ids):
    """EXPLAIN ANALYZE of every statement the hot API calls run, under RLS as the request role."""
    calls = {
        "W1 api.deals_list": "api.deals_list(3, 20, '{new,in_progress}', NULL, 100, NULL, NULL, NULL, 'amount', 'desc')",
        "W2 api.deals_get": f"api.deals_get('{ids['deals'][0]}')",
        "W5 api.analytics_summary": "api.analytics_summary(30)",
        "api.analytics_funnel": "api.analytics_funnel()",
        "api.analytics_velocity": "api.analytics_velocity()",
        "api.analytics_forecast": "api.analytics_forecast()",
    }
    out = {}
    for name, call in calls.items():
        sql = ("LOAD 'auto_explain'; SET auto_explain.log_min_duration = 0; SET auto_explain.log_analyze = on; "
               "SET auto_explain.log_nested_statements = on; SET auto_explain.log_level = notice; "
               "SET auto_explain.log_timing = on; SET client_min_messages = notice; "
               f"SELECT length(({call})::text) FROM app.act_as('{ids['user']}', '{ids['org']}');")
        res = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres", "-d", db, "-X", "-q",
                              "-c", sql], capture_output=True, text=True)
        text = res.stderr
        blocks = [b for b in re.split(r"NOTICE:\s+duration: ", text) if "Query Text" in b]
        keep = [b for b in blocks if re.search(r"crm\.(deals|deal_totals|deal_closes|deal_stage_history|stage_stays_|velocity_delta)", b)
                and "organization_members" not in b]
        out[name] = "\n".join("duration: " + b.strip() for b in keep)
    return out


def seed_one_org(db, size, binary=None):
    """Seeds one organization of `size` deals into `db` (`minicrm seed`, by
    `binary` if given) and the benchmark's table of 1,000 open deals
    (public.bench_deals, what the pgbench scripts pick from); returns the ids
    the scripts take (user, org, email) and the seed's last line."""
    seed = subprocess.run([str(binary or ROOT / "target/release/minicrm"), "seed", "--orgs", "1",
                           "--deals-per-org", str(size)],
                          env=dict(os.environ, DATABASE_URL=url(db), JWT_SECRET=SECRET, RUST_LOG="warn"),
                          capture_output=True, text=True, check=True)
    org, email = seed.stdout.strip().splitlines()[1].split()
    user = psql(db, f"SELECT id FROM crm.users WHERE email = '{email}'")
    psql(db, "CREATE TABLE public.bench_deals (n serial PRIMARY KEY, id uuid NOT NULL); "
             f"INSERT INTO public.bench_deals (id) SELECT id FROM crm.deals WHERE organization_id = '{org}' "
             "AND status IN ('new', 'in_progress') ORDER BY id LIMIT 1000; "
             "GRANT SELECT ON public.bench_deals TO minicrm_api; ANALYZE public.bench_deals;")
    return {"user": user, "org": org, "email": email}, seed.stdout.strip().splitlines()[-1]


def run_size(cluster, cluster_db, size, refs):
    db = cluster_db
    psql("postgres", f"CREATE DATABASE {db}")
    psql(db, "CREATE EXTENSION pg_stat_statements")
    log(f"seeding {size} deals into {db}")
    t0 = time.time()
    ids, last = seed_one_org(db, size)
    seed_secs = time.time() - t0
    log(last)
    ids["deals"] = psql(db, "SELECT id FROM public.bench_deals ORDER BY n").split()
    org, email = ids["org"], ids["email"]

    results = {"size": size, "seed_secs": seed_secs, "http": {}, "pg": {}, "rss": {}, "stmts": {}}
    for cache_ttl in (30, 0):
        if cache_ttl == 0 and not any(k == "W5u" for k, _, _ in SELECTED):
            continue
        server = Server(db, cache_ttl)
        try:
            token = post("/api/v1/auth/login", {"email": email, "password": "demo-password"})["access_token"]
            ids["token"] = token
            ids_lua(OUT / "ids.lua", ids, token)
            for key, _, script in SELECTED:
                if (key == "W5u") != (cache_ttl == 0):
                    continue
                log(f"{size}: {key} warm-up {WARMUP}s, then {DURATION}s")
                wrk(script, WARMUP)
                results["http"][key] = wrk(script, DURATION)
                results["stmts"][key] = count_statements(db, script)
                if key == "W1":
                    results["http"]["W1c1"] = wrk(script, DURATION // 2, connections=1)
            if refs and cache_ttl == 30:
                results["fixed"] = fixed_cost(db, ids, cluster, server)
            results["rss"][cache_ttl] = server.peak_rss_mb()
        finally:
            server.stop()
    for key, _, script in SELECTED:
        if key == "W5":
            continue
        log(f"{size}: pgbench {key}")
        results["pg"][key] = pgbench(db, script, ids)
    if ONLY is None:
        results["plans"] = plans(db, ids)
    results["deals"] = int(psql(db, f"SELECT count(*) FROM crm.deals WHERE organization_id = '{org}'"))
    return results


# The two data shapes of SPEC §14 for the list sweep (bench/sweep.py).
# BENCH_SWEEP_SCALE (default 1) scales every count, for a quick trial run.
SWEEP_SHAPES = [
    ("one", "one organization: 1M deals, 1M contacts, 1M tasks, 5M activities",
     {"orgs": 1, "deals-per-org": 1_000_000, "contacts-per-org": 1_000_000, "tasks-per-org": 1_000_000,
      "activities-per-org": 5_000_000}),
    ("many", "10,000 organizations of 100 deals", {"orgs": 10_000, "deals-per-org": 100}),
]


def run_sweep():
    """Seeds each §14 shape in a throwaway cluster, runs bench/sweep.py against a
    release server with the analytics cache off, and writes bench/sweep-results.md."""
    scale = float(os.environ.get("BENCH_SWEEP_SCALE", "1"))
    wanted = os.environ.get("BENCH_SWEEP_SHAPES", "one,many").split(",")
    parts = []
    cluster = Cluster()
    try:
        cluster.start()
        for name, label, counts in SWEEP_SHAPES:
            if name not in wanted:
                continue
            db = f"sweep_{name}"
            psql("postgres", f"CREATE DATABASE {db}")
            args = []
            for k, v in counts.items():
                args += [f"--{k}", str(max(1, int(v * scale)))]
            log(f"seeding {db}: minicrm seed {' '.join(args)}")
            t0 = time.time()
            seed = subprocess.run([str(ROOT / "target/release/minicrm"), "seed"] + args,
                                  env=dict(os.environ, DATABASE_URL=url(db), JWT_SECRET=SECRET, RUST_LOG="warn"),
                                  capture_output=True, text=True, check=True)
            seed_secs = time.time() - t0
            email = seed.stdout.strip().splitlines()[1].split()[1]
            if scale != 1:
                label += f" (scaled x{scale:g} for a trial)"
            server = Server(db, cache_ttl=0)
            try:
                out = OUT / f"sweep-{name}.md"
                subprocess.run([sys.executable, str(ROOT / "bench" / "sweep.py"), "--url", f"http://{HTTP}",
                                "--email", email, "--password", "demo-password", "--label", label,
                                "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
            finally:
                server.stop()
            parts.append(out.read_text().replace(
                "\n\n", f"\n\nSeed: `minicrm seed {' '.join(args)}` took {seed_secs:.0f} s "
                f"(VACUUM ANALYZE included).\n\n", 1))
            psql("postgres", f"DROP DATABASE {db}")
    finally:
        cluster.stop()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    head = (f"Generated by `bench/run sweep` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
            f"commit `{commit}`, {os.cpu_count()} cores: a release server with the analytics cache off, "
            "one request at a time.\n\n")
    (ROOT / "bench" / "sweep-results.md").write_text(head + "\n".join(parts))
    log("wrote bench/sweep-results.md")


IDEM_BEGIN = "<!-- idempotency section: generated by `bench/run idempotency` -->"
IDEM_END = "<!-- end of the idempotency section -->"


def run_idempotency():
    """W3 without and with an Idempotency-Key (a new key per request) against
    one server, alternated for BENCH_IDEM_ROUNDS rounds (default 3) of
    BENCH_SECS each, at BENCH_IDEM_SIZE deals (default 50000); writes
    bench/idempotency-results.md and splices it into docs/benchmarks.md."""
    rounds = int(os.environ.get("BENCH_IDEM_ROUNDS", "3"))
    size = int(os.environ.get("BENCH_IDEM_SIZE", "50000"))
    pairs = [("W3", "w3_create_contact"), ("W3i", "w3i_create_contact_idempotent")]
    runs = {key: [] for key, _ in pairs}
    pg_runs = {key: [] for key, _ in pairs}
    load = [os.getloadavg()[0]]
    cluster = Cluster()
    try:
        cluster.start()
        db = "bench_idem"
        psql("postgres", f"CREATE DATABASE {db}")
        log(f"seeding {size} deals into {db}")
        seed = subprocess.run([str(ROOT / "target/release/minicrm"), "seed", "--orgs", "1", "--deals-per-org",
                               str(size)], env=dict(os.environ, DATABASE_URL=url(db), JWT_SECRET=SECRET,
                                                    RUST_LOG="warn"), capture_output=True, text=True, check=True)
        org, email = seed.stdout.strip().splitlines()[1].split()
        user = psql(db, f"SELECT id FROM crm.users WHERE email = '{email}'")
        server = Server(db)
        try:
            token = post("/api/v1/auth/login", {"email": email, "password": "demo-password"})["access_token"]
            (OUT / "ids.lua").write_text("return {token = %s, org = %s, email = %s, deals = {}}\n" % (
                json.dumps(token), json.dumps(org), json.dumps(email)))
            for key, script in pairs:
                log(f"idempotency: {key} warm-up {WARMUP}s")
                wrk(script, WARMUP)
            for n in range(rounds):
                # Alternate which goes first, so a drift of the machine weighs on both.
                for key, script in (pairs if n % 2 == 0 else pairs[::-1]):
                    log(f"idempotency: round {n + 1}/{rounds}, {key} {DURATION}s")
                    runs[key].append(wrk(script, DURATION))
        finally:
            server.stop()
        # The same statements without HTTP (pgbench -M prepared), alternated likewise.
        ids = {"user": user, "org": org, "email": email}
        for n in range(rounds):
            for key, script in (pairs if n % 2 == 0 else pairs[::-1]):
                log(f"idempotency: pgbench round {n + 1}/{rounds}, {key} {DURATION}s")
                pg_runs[key].append(pgbench(db, script, ids, cluster=cluster))
        load.append(os.getloadavg()[0])
        keys = int(psql(db, "SELECT count(*) FROM crm.idempotency_keys"))
        contacts = int(psql(db, "SELECT count(*) FROM crm.contacts"))
        table_mb = float(psql(db, "SELECT pg_total_relation_size('crm.idempotency_keys') / 1048576.0"))
    finally:
        cluster.stop()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    med = {key: {f: median([r[f] for r in rs]) for f in ("rps", "p50", "p99")} for key, rs in runs.items()}
    errors = {key: sum(r["errors"] for r in rs) for key, rs in runs.items()}
    lines = [
        IDEM_BEGIN, "## Idempotency keys on W3", "",
        f"Generated by `bench/run idempotency` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit "
        f"`{commit}`, {os.cpu_count()} cores: one release server, {size:,} deals seeded, `wrk` with {CONNECTIONS} "
        f"connections; W3 (`POST /contacts`) and W3i (the same with a new `Idempotency-Key` on every request) "
        f"alternated for {rounds} rounds of {DURATION} s after a {WARMUP} s warm-up each. Medians of the rounds:", "",
        "| workload | req/s | p50 ms | p99 ms | errors (all rounds) | rounds (req/s) |", "|---|---:|---:|---:|---:|---|",
    ]
    for key, _ in pairs:
        m = med[key]
        lines.append(f"| {key} | {fmt(m['rps'])} | {fmt(m['p50'], 2)} | {fmt(m['p99'], 2)} | {errors[key]} | "
                     + ", ".join(fmt(r["rps"]) for r in runs[key]) + " |")
    ratio = med["W3i"]["rps"] / med["W3"]["rps"] * 100
    pg_med = {key: {f: median([r[f] for r in rs]) for f in ("tps", "avg", "cpu_us")} for key, rs in pg_runs.items()}
    lines += ["", "The same SQL through `pgbench -M prepared` (no HTTP), alternated likewise; `cpu µs` is the "
              "PostgreSQL backends' CPU per transaction:", "",
              "| workload | TPS | avg ms | cpu µs | rounds (TPS) |", "|---|---:|---:|---:|---|"]
    for key, _ in pairs:
        m = pg_med[key]
        lines.append(f"| {key} | {fmt(m['tps'])} | {fmt(m['avg'], 2)} | {fmt(m['cpu_us'], 0)} | "
                     + ", ".join(fmt(r["tps"]) for r in pg_runs[key]) + " |")
    pg_ratio = pg_med["W3i"]["tps"] / pg_med["W3"]["tps"] * 100
    lines += ["", f"With the header: {ratio:.0f} % of W3's throughput over HTTP, {pg_ratio:.0f} % through pgbench "
              f"(backend CPU {pg_med['W3i']['cpu_us'] - pg_med['W3']['cpu_us']:+.0f} µs per request). After the "
              f"run: {keys:,} stored keys ({table_mb:.1f} MB with their indexes) beside {contacts:,} contacts. "
              f"Load average (1 min) at the start and the end: {load[0]:.1f}, {load[1]:.1f} (other work on the "
              "machine weighs on both variants alike, as they alternate).", "", IDEM_END, ""]
    section = "\n".join(lines)
    (ROOT / "bench" / "idempotency-results.md").write_text(section)
    target = ROOT / "docs" / "benchmarks.md"
    text = target.read_text() if target.exists() else "# Benchmarks\n"
    target.write_text(splice(text, IDEM_BEGIN, IDEM_END, section))
    log(f"wrote bench/idempotency-results.md and its section of {target}")


EVENTS_BEGIN = "<!-- events section: generated by `bench/run events` -->"
EVENTS_END = "<!-- end of the events section -->"

# The event triggers (sql/functions/60_events.sql), found by their functions'
# names; the DO block enables or disables them all.
EVENT_TRIGGERS_SQL = """DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT t.tgrelid::regclass AS tab, t.tgname FROM pg_trigger t
            WHERE NOT t.tgisinternal AND t.tgfoid::regproc::text ~ '_events_(insert|update|delete)$|event_note$|pipelines_event$' LOOP
    EXECUTE format('ALTER TABLE %s {verb} TRIGGER %I', r.tab, r.tgname);
  END LOOP; END $$"""

# One transaction, rolled back: 50,000 new contacts through the import's
# function, then one more call updating all of them (one INSERT and one
# UPDATE statement).
IMPORT_SQL = """BEGIN;
SELECT app.act_as('{user}', '{org}');
SELECT app.contacts_import_apply((SELECT array_agg(ROW(i + 1, 'Imported ' || i, NULL, NULL, 'bench-' || i, NULL)::app.contact_import_row)
                                    FROM generate_series(1, 50000) i), '{{name,external_id}}');
SELECT app.contacts_import_apply((SELECT array_agg(ROW(i + 1, NULL, NULL, '+' || i, 'bench-' || i, NULL)::app.contact_import_row)
                                    FROM generate_series(1, 50000) i), '{{phone,external_id}}');
ROLLBACK;
"""


def start_announcer(db, secs):
    """The announcer's round (bench/pgbench/announcer.sql) 20 times a second
    for `secs`, as a server runs it, after catching up with what is waiting
    (the seed's events); returns the pgbench process."""
    while psql(db, "SELECT announced IS NOT NULL FROM private.events_announce(p_first => false)") == "t":
        pass
    return subprocess.Popen(["pgbench", "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres", "-n", "-c1",
                             "-R20", f"-T{secs}", "-f", "bench/pgbench/announcer.sql", db],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_events():
    """W3 and W4 (pgbench -M prepared, 32 clients) with the event triggers
    on and off, alternated for BENCH_EVENTS_ROUNDS rounds (default 3) of
    BENCH_SECS each, at BENCH_EVENTS_SIZE deals (default 50000), then the
    50,000-row import likewise; writes bench/events-results.md and splices
    it into docs/benchmarks.md."""
    rounds = int(os.environ.get("BENCH_EVENTS_ROUNDS", "3"))
    size = int(os.environ.get("BENCH_EVENTS_SIZE", "50000"))
    workloads = [("W3", "w3_create_contact"), ("W4", "w4_patch_status")]
    # "events": the triggers on, and the announcer's round
    # (bench/pgbench/announcer.sql) 20 times a second beside the writers,
    # as a server runs it; its backend's CPU counts with the writers'.
    variants = ["events", "no events"]
    runs = {(key, v): [] for key, _ in workloads for v in variants}
    imports = {v: [] for v in variants}
    load = [os.getloadavg()[0]]
    cluster = Cluster()
    try:
        cluster.start()
        db = "bench_events"
        psql("postgres", f"CREATE DATABASE {db}")
        log(f"seeding {size} deals into {db}")
        ids, _ = seed_one_org(db, size)
        user, org = ids["user"], ids["org"]
        n_triggers = int(psql(db, "SELECT count(*) FROM pg_trigger WHERE NOT tgisinternal AND tgfoid::regproc::text "
                                  "~ '_events_(insert|update|delete)$|event_note$|pipelines_event$'"))
        events0 = int(psql(db, "SELECT count(*) FROM crm.events"))

        def switch(variant):
            psql(db, EVENT_TRIGGERS_SQL.format(verb="DISABLE" if variant == "no events" else "ENABLE"), tuples=False)

        def announcing(variant, secs):
            """The announcer beside a round with the events (None without)."""
            if variant == "no events":
                return None
            return start_announcer(db, secs)

        def announced(proc):
            if proc is not None:
                _, err = proc.communicate()
                if proc.returncode != 0:
                    raise RuntimeError(f"the announcer's pgbench failed: {err}")

        for key, script in workloads:
            log(f"events: {key} warm-up {WARMUP}s")
            pgbench(db, script, ids, secs=WARMUP)
            for n in range(rounds):
                # Alternate which goes first, so a drift of the machine weighs on both.
                for v in (variants if n % 2 == 0 else variants[::-1]):
                    switch(v)
                    log(f"events: {key} round {n + 1}/{rounds}, {v}, {DURATION}s")
                    announcer = announcing(v, DURATION)
                    runs[(key, v)].append(pgbench(db, script, ids, cluster=cluster))
                    announced(announcer)
        import_sql = OUT / "events-import.sql"
        import_sql.write_text(IMPORT_SQL.format(user=user, org=org))
        for n in range(rounds):
            for v in (variants if n % 2 == 0 else variants[::-1]):
                switch(v)
                log(f"events: import round {n + 1}/{rounds}, {v}")
                t0 = time.time()
                subprocess.run([str(BIN / "psql"), "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres", "-d", db,
                                "-X", "-q", "-v", "ON_ERROR_STOP=1", "-f", str(import_sql)],
                               check=True, stdout=subprocess.DEVNULL)
                imports[v].append(time.time() - t0)
        switch("events")
        events = int(psql(db, "SELECT count(*) FROM crm.events")) - events0
        events_mb = float(psql(db, "SELECT pg_total_relation_size('crm.events') / 1048576.0"))
        load.append(os.getloadavg()[0])
    finally:
        cluster.stop()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    med = {k: {f: median([r[f] for r in rs]) for f in ("tps", "avg", "cpu_us")} for k, rs in runs.items()}
    lines = [
        EVENTS_BEGIN, "## The cost of the event triggers (W3, W4, the import)", "",
        f"Generated by `bench/run events` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit "
        f"`{commit}`, {os.cpu_count()} cores: {size:,} deals seeded; W3 (create a contact) and W4 (patch a deal's "
        f"status, which also writes a timeline row) as SQL through `pgbench -M prepared` with {CONNECTIONS} clients, "
        f"the {n_triggers} event triggers enabled, with the announcer's round (`private.events_announce`) 20 "
        f"times a second beside them as a server runs it (*events*), and disabled (*no events*, `ALTER TABLE … "
        f"DISABLE TRIGGER` between rounds), alternated for {rounds} rounds of {DURATION} s after a {WARMUP} s "
        "warm-up. Medians of the rounds; `cpu µs` is the PostgreSQL backends' CPU per transaction (the "
        "announcer's included):", "",
        "| workload | variant | TPS | avg ms | cpu µs | rounds (TPS) |", "|---|---|---:|---:|---:|---|",
    ]
    for key, _ in workloads:
        for v in variants:
            m = med[(key, v)]
            lines.append(f"| {key} | {v} | {fmt(m['tps'])} | {fmt(m['avg'], 2)} | {fmt(m['cpu_us'], 0)} | "
                         + ", ".join(fmt(r["tps"]) for r in runs[(key, v)]) + " |")
    lines += [""]
    for key, _ in workloads:
        on, off = med[(key, "events")], med[(key, "no events")]
        lines.append(f"- {key}: {(1 - on['tps'] / off['tps']) * 100:+.1f} % slower with the events "
                     f"(backend CPU {on['cpu_us'] - off['cpu_us']:+.0f} µs per transaction).")
    imp = {v: median(ts) for v, ts in imports.items()}
    lines += [
        f"- The import: 50,000 new contacts, then all of them updated (`app.contacts_import_apply` twice, one "
        f"transaction, rolled back): {imp['events']:.2f} s with the events, {imp['no events']:.2f} s without "
        f"(median of {rounds}; rounds " + ", ".join(f"{t:.2f}" for t in imports["events"]) + " and "
        + ", ".join(f"{t:.2f}" for t in imports["no events"]) + " s).",
        f"- {events:,} events were written in the rounds with events ({events_mb:.0f} MB with the indexes at "
        f"the end, the rolled-back imports' dead rows included). Load average (1 min) at the start and the end: {load[0]:.1f}, {load[1]:.1f} (other work on "
        "the machine weighs on both variants alike, as they alternate).", "", EVENTS_END, ""]
    section = "\n".join(lines)
    (ROOT / "bench" / "events-results.md").write_text(section)
    target = ROOT / "docs" / "benchmarks.md"
    text = target.read_text() if target.exists() else "# Benchmarks\n"
    target.write_text(splice(text, EVENTS_BEGIN, EVENTS_END, section))
    log(f"wrote bench/events-results.md and its section of {target}")


def fmt(x, digits=1):
    return f"{x:,.{digits}f}"


def report(all_results, meta):
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run` (see README, *Benchmark*): a release build of `minicrm` on loopback, "
        f"`wrk` with {CONNECTIONS} connections (2 threads), {WARMUP} s warm-up then {DURATION} s measured per "
        "workload, and `pgbench -M prepared` running the same SQL calls with the same context "
        "(`SELECT api.<fn>(...)::text FROM app.act_as(user, org)`) and no HTTP as the limit. Server, PostgreSQL "
        "and load generator share this machine's 2 cores, so every figure includes the others' CPU use.",
        "",
        f"Run: {meta['date']} · {meta['cpu']} · PostgreSQL {meta['pg']} · commit `{meta['commit']}`.",
        "",
        "Targets (issue 4): W1–W4 ≥ 60 % of pgbench TPS and p99 < 25 ms at 32 connections; W1 p50 < 20 ms at "
        "1,000,000 deals; analytics uncached < 150 ms, cached < 1 ms; peak RSS < 100 MB; one round trip per request.",
        "",
    ]
    names = {k: n for k, n, _ in WORKLOADS}
    for r in all_results:
        lines += [f"## {r['deals']:,} deals in one organization", "",
                  f"Seed (`minicrm seed --orgs 1 --deals-per-org {r['size']}`, including VACUUM ANALYZE): "
                  f"{fmt(r['seed_secs'])} s.", "",
                  "| workload | req/s | p50 ms | p99 ms | errors | pgbench TPS | pgbench avg ms | HTTP / pgbench |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for key, name, _ in WORKLOADS:
            h = r["http"].get(key)
            if h is None:  # results of a run from before this workload existed
                continue
            p = r["pg"].get(key)
            pg_tps = fmt(p["tps"]) if p else "—"
            pg_avg = fmt(p["avg"], 2) if p else "—"
            ratio = f"{h['rps'] / p['tps'] * 100:.0f} %" if p and h else "—"
            if key == "W5":
                ratio = "(cache)"
            lines.append(f"| {key} {name} | {fmt(h['rps'])} | {fmt(h['p50'], 2)} | {fmt(h['p99'], 2)} | "
                         f"{h['errors']} | {pg_tps} | {pg_avg} | {ratio} |")
        c1 = r["http"]["W1c1"]
        lines += ["",
                  f"W1 with a single connection (the query's own latency, no queueing): p50 {fmt(c1['p50'], 2)} ms, "
                  f"p99 {fmt(c1['p99'], 2)} ms, {fmt(c1['rps'])} req/s.", "",
                  f"Server peak RSS (VmHWM): {fmt(r['rss'][30])} MB (cached run), {fmt(r['rss'][0])} MB (uncached run).",
                  "", "Round trips: statements the database ran per HTTP request, counted in a short run of "
                  f"{max(WARMUP, 2)} s after each measured one (`pg_stat_statements`, top-level, reset before; "
                  "the measured runs track nothing):", "",
                  "| workload | requests | statements | per request | statement |", "|---|---:|---:|---:|---|"]
        for key, _, _ in WORKLOADS:
            if key not in r["stmts"]:
                continue
            counted = r["stmts"][key]
            st = counted["rows"]
            total = sum(c for c, _ in st)
            reqs = counted["requests"]
            top = st[0][1][:90] if st else "(none: served from the cache)"
            lines.append(f"| {key} | {reqs:,} | {total:,} | {total / max(reqs, 1):.2f} | `{top}` |")
        lines += ["", "<details><summary>Plans of the hot queries, under RLS as the request role "
                  "(auto_explain of the statements inside the API functions)</summary>", ""]
        for name, plan in r["plans"].items():
            lines += [f"### {name}", "", "```", plan, "```", ""]
        lines += ["</details>", ""]
    return "\n".join(lines) + "\n"


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return (xs[n // 2] + xs[(n - 1) // 2]) / 2


FIXED_BEGIN = "<!-- fixed-cost section: generated by bench/run.py, analysis in bench/fixedcost-notes.md -->"
FIXED_END = "<!-- end of the fixed-cost section -->"
SWEEP_HEADING = "\n## Lists and analytics at scale"


def fixed_report(r, meta):
    """The fixed-cost section: every variant's medians, the two ratios, and
    the pieces as differences of the backends' CPU per transaction."""
    runs = r["fixed"]
    tps = {k: median([x["tps"] for x in v]) for k, v in runs.items()}
    cpu = {k: median([x["cpu_us"] for x in v]) for k, v in runs.items() if v and "cpu_us" in v[0]}

    def med(key, field):
        xs = [x[field] for x in runs[key] if field in x]
        return fmt(median(xs), 1) if xs else "—"
    fn_bare = tps["fn"] / tps["bare"] * 100
    http_fn = tps["http"] / tps["fn"] * 100
    # The same ratios within each round (the variants of a round ran back to
    # back, under about the same outside load), and from the CPU per transaction.
    paired = {pair: median([x["tps"] / y["tps"] * 100 for x, y in zip(runs[pair[0]], runs[pair[1]])])
              for pair in (("fn", "bare"), ("http", "fn"))}
    total = {k: median([x["cpu_us"] + x.get("client_us", 0) + x.get("server_us", 0) for x in runs[k]])
             for k in ("bare", "fn", "http")}
    lines = [FIXED_BEGIN, f"## The fixed cost of a request: W2 against a bare lookup ({r['deals']:,} deals)", "",
             f"Run: {meta['date']} · commit `{meta['commit']}` · {REF_ROUNDS} rounds; in each round every variant "
             f"ran {REF_SECS} s in the order below (`pgbench -M prepared`, {CONNECTIONS} clients, 2 threads; HTTP: "
             f"`wrk`, {CONNECTIONS} connections, against the release server). Statements are not tracked "
             "(`pg_stat_statements.track = none`), no `auto_explain`. Medians over the rounds. *Backend CPU* is the "
             "CPU time of PostgreSQL's backends per transaction (user + system: for pgbench, of the postmaster's "
             "reaped children; for HTTP, of the server's pooled backends), which the machine's other load disturbs "
             "less than TPS; *client* is pgbench's or wrk's CPU per transaction, *server* the minicrm process's.", "",
             f"**Function path / bare: {fn_bare:.0f} %** (target ≥ 80 %). "
             f"**HTTP W2 / function path: {http_fn:.0f} %** (target ≥ 90 %). Both are ratios of the medians; "
             f"the median of the ratios within each round is {paired[('fn', 'bare')]:.0f} % and "
             f"{paired[('http', 'fn')]:.0f} %, and the ratio of the CPU all processes spend per transaction "
             f"(backend + client + server, the inverse of what two saturated cores can do) is "
             f"{total['bare'] / total['fn'] * 100:.0f} % and {total['fn'] / total['http'] * 100:.0f} %.", "",
             *extra_ratios(runs, tps, total),
             "| variant | TPS | of bare | CPU µs/tx: backend | client | server | TPS per round |",
             "|---|---:|---:|---:|---:|---:|---|"]
    variants = REFS + [v for v in HTTP_EXTRAS if v[0] in runs]
    for key, script, what in variants:
        per_round = ", ".join(fmt(x["tps"], 0) for x in runs[key])
        what = what.replace("{http_before}", str(meta.get("http_before")))
        src = f" (`{script}`)" if not key.startswith("http") else ""
        lines.append(f"| **{key}**: {what}{src} | {fmt(tps[key], 0)} | {tps[key] / tps['bare'] * 100:.0f} % | "
                     f"{med(key, 'cpu_us')} | {med(key, 'client_us')} | {med(key, 'server_us')} | {per_round} |")
    pieces = [
        ("the gap: function path − bare", "fn", "bare"),
        ("building the deal's JSON (both paths pay it)", "bare", "bare_id"),
        ("`app.act_as` in a statement (call, settings, switch, lookup)", "act_as", "select"),
        ("`api.deals_get`'s plpgsql wrapper and RLS on the deal lookup", "fn", "bare_act_as"),
        ("the role switch and the RLS it brings", "fn", "no_switch"),
        ("act_as's plpgsql call and settings, deals_get's wrapper (no switch, lookup or RLS)", "settings_only", "bare"),
        ("the membership lookup (as the login)", "no_switch", "settings_only"),
        ("`app.act_as` before this change − now", "before", "fn"),
    ]
    lines += ["", "The pieces, as differences of backend CPU per transaction (medians; each piece is measured "
              "on its own pair, so they overlap and do not add up exactly):", "",
              "| piece | pair | µs per request |", "|---|---|---:|"]
    for name, a, b in pieces:
        if a in cpu and b in cpu:
            lines.append(f"| {name} | {a} − {b} | {cpu[a] - cpu[b]:+.1f} |")
    notes = ROOT / "bench" / "fixedcost-notes.md"  # the analysis, written by people
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    lines += ["", FIXED_END, ""]
    log(f"fixed cost: function path / bare {fn_bare:.1f} % (within rounds {paired[('fn', 'bare')]:.1f} %, "
        f"CPU {total['bare'] / total['fn'] * 100:.1f} %), HTTP W2 / function path {http_fn:.1f} % "
        f"(within rounds {paired[('http', 'fn')]:.1f} %, CPU {total['fn'] / total['http'] * 100:.1f} %)")
    return "\n".join(lines)


def extra_ratios(runs, tps, total):
    """A paragraph on the optional HTTP variants (HTTP_EXTRAS), when they ran."""
    out = []
    for key, label in (("http_before", "HTTP W2 through the earlier server"),
                       ("http_unix", "HTTP W2 over the Unix socket")):
        if key not in runs:
            continue
        xs = runs[key]
        total[key] = median([x["cpu_us"] + x.get("client_us", 0) + x.get("server_us", 0) for x in xs])
        paired = median([x["tps"] / y["tps"] * 100 for x, y in zip(xs, runs["fn"])])
        server = median([x["server_us"] for x in xs])
        out.append(f"{label} (`{key}`) / function path: {tps[key] / tps['fn'] * 100:.0f} % (within rounds "
                   f"{paired:.0f} %, CPU {total['fn'] / total[key] * 100:.0f} %); its server spends "
                   f"{fmt(server)} µs per request, against {fmt(median([x['server_us'] for x in runs['http']]))} "
                   f"for `http`.")
    return [" ".join(out), ""] if out else []


def splice(text, begin, end, section, before=None):
    """Replaces the part of text from the line `begin` to the line `end` with
    section (which carries both lines); without them, inserts section before
    `before` (a heading, with its leading newline) if text has it, or appends
    it."""
    section = section.rstrip("\n") + "\n"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        return head + section + ("\n" + tail if tail else "")
    if before and before in text:
        head, rest = text.split(before, 1)
        return head.rstrip("\n") + "\n\n" + section + before + rest
    return text.rstrip("\n") + "\n\n" + section


REGRESS_BEGIN = "<!-- regression section: generated by `bench/run regress` -->"
REGRESS_END = "<!-- end of the regression section -->"


def ids_lua(path, ids, token):
    """The Lua file the wrk scripts read (bench/wrk/common.lua)."""
    Path(path).write_text("return {token = %s, org = %s, email = %s, deals = {%s}}\n" % (
        json.dumps(token), json.dumps(ids["org"]), json.dumps(ids["email"]),
        ",".join(json.dumps(d) for d in ids["deals"])))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    if sys.argv[1:] == ["sweep"]:
        return run_sweep()
    if sys.argv[1:] == ["idempotency"]:
        return run_idempotency()
    if sys.argv[1:] == ["events"]:
        return run_events()
    if sys.argv[1:2] == ["regress"]:  # bench/regress.py: this build against an older one
        import regress
        return regress.main(sys.argv[2:])
    if sys.argv[1:] == ["--report"]:  # render again from the last run's results (after editing the notes)
        results = json.loads((OUT / "results.json").read_text())
        for r in results:  # JSON made the cache TTLs' keys strings
            r["rss"] = {int(k): v for k, v in r["rss"].items()}
        write_report(results, json.loads((OUT / "meta.json").read_text()))
        return
    cluster = Cluster()
    results = []
    try:
        cluster.start()
        for size in SIZES:
            results.append(run_size(cluster, f"bench_{size}", size, refs=size == max(SIZES)))
            (OUT / "results.json").write_text(json.dumps(results, indent=1))
    finally:
        cluster.stop()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpu": f"{os.cpu_count()} cores, " + next((l.split(":", 1)[1].strip() for l in
                                                   Path("/proc/cpuinfo").read_text().splitlines()
                                                   if l.startswith("model name")), "?"),
        "pg": subprocess.run([str(BIN / "postgres"), "--version"], capture_output=True, text=True).stdout.split()[-1],
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                 text=True).stdout.strip(),
        "http_before": Path(HTTP_BEFORE).name if HTTP_BEFORE else None,
    }
    (OUT / "meta.json").write_text(json.dumps(meta))
    write_report(results, meta)


def write_report(results, meta):
    target = Path(os.environ.get("BENCH_REPORT", ROOT / "docs" / "benchmarks.md"))
    target.parent.mkdir(exist_ok=True)
    fixed = next((fixed_report(r, meta) for r in results if "fixed" in r), None)
    if ONLY is not None:  # a partial run: only the fixed-cost section changes
        if fixed:
            target.write_text(splice(target.read_text() if target.exists() else "# Benchmarks\n",
                                     FIXED_BEGIN, FIXED_END, fixed, before=SWEEP_HEADING))
            log(f"wrote the fixed-cost section of {target}")
        return
    notes = ROOT / "bench" / "notes.md"  # the analysis, written by people
    text = report(results, meta)
    if notes.exists():
        text = text.replace("\n## ", "\n" + notes.read_text() + "\n## ", 1)
    sweep = ROOT / "bench" / "sweep-results.md"  # bench/sweep.py --out bench/sweep-results.md
    if sweep.exists():
        text += SWEEP_HEADING + " (bench/sweep.py)\n\n" + sweep.read_text()
    sweep_notes = ROOT / "bench" / "sweep-notes.md"  # the analysis of the sweep, written by people
    if sweep_notes.exists():
        text += "\n" + sweep_notes.read_text()
    velocity_notes = ROOT / "bench" / "velocity-notes.md"  # velocity, forecast, the stage history's cost
    if velocity_notes.exists():
        text += "\n" + velocity_notes.read_text()
    csv_results = ROOT / "bench" / "csv-results.md"  # bench/csv.py
    if csv_results.exists():
        text += "\n" + csv_results.read_text()
    writecost = ROOT / "bench" / "writecost-notes.md"  # bench/writecost.py, and its analysis
    if writecost.exists():
        text += "\n" + writecost.read_text()
    idem = ROOT / "bench" / "idempotency-results.md"  # bench/run idempotency
    if idem.exists():
        text = splice(text, IDEM_BEGIN, IDEM_END, idem.read_text())
    webhooks = ROOT / "bench" / "webhooks-notes.md"  # scripts/webhook-faults (b1, b2), written by people
    if webhooks.exists():
        text += "\n" + webhooks.read_text()
    events = ROOT / "bench" / "events-results.md"  # bench/run events
    if events.exists():
        text += "\n" + events.read_text()
    events_notes = ROOT / "bench" / "events-notes.md"  # the analysis of the events' cost, written by people
    if events_notes.exists():
        text += "\n" + events_notes.read_text()
    regress = ROOT / "bench" / "regress-results.md"  # bench/run regress
    if regress.exists():
        text = splice(text, REGRESS_BEGIN, REGRESS_END, regress.read_text(),
                      before=f"\n## {results[0]['deals']:,} deals in one organization")
    if fixed:
        text = splice(text, FIXED_BEGIN, FIXED_END, fixed, before=SWEEP_HEADING)
    target.write_text(text)
    log(f"wrote {target}")


if __name__ == "__main__":
    main()
