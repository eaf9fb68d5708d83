#!/usr/bin/env python3
"""The minicrm benchmark: HTTP (wrk) against a release server on loopback,
and the same SQL calls through pgbench as the limit, at several sizes.
Writes docs/benchmarks.md. Run through bench/run (which installs and builds).
"""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
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
SECRET = "bench-secret-bench-secret-bench-secret!"
ROOT_USER = os.geteuid() == 0

WORKLOADS = [
    ("W1", "list deals (filters, sort, page 3, total)", "w1_list"),
    ("W2", "get one deal", "w2_get"),
    ("W3", "create a contact", "w3_create_contact"),
    ("W4", "patch a deal's status (timeline row)", "w4_patch_status"),
    ("W5", "analytics summary, cached", "w5_summary"),
    ("W5u", "analytics summary, uncached", "w5_summary"),
    ("W6", "login (argon2id)", "w6_login"),
]


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
                "-c shared_preload_libraries=pg_stat_statements -c pg_stat_statements.track=all "
                "-c max_wal_size=4GB -c checkpoint_timeout=30min")
        as_pg([BIN / "pg_ctl", "-D", self.dir / "data", "-l", self.dir / "postgres.log", "-w", "-o", opts, "start"],
              stdout=subprocess.DEVNULL)

    def stop(self):
        subprocess.run((["runuser", "-u", "postgres", "--"] if ROOT_USER else [])
                       + [str(BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "fast", "stop"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.dir, ignore_errors=True)


class Server:
    def __init__(self, db, cache_ttl=30):
        env = dict(os.environ, DATABASE_URL=url(db), JWT_SECRET=SECRET, LISTEN_ADDR=HTTP, RUST_LOG="warn",
                   ANALYTICS_CACHE_TTL_SECS=str(cache_ttl), ACCESS_TOKEN_TTL_SECS="7200",
                   AUTH_ATTEMPTS_PER_EMAIL_PER_MINUTE="100000000",
                   AUTH_ATTEMPTS_PER_ADDRESS_PER_MINUTE="100000000")
        self.proc = subprocess.Popen([str(ROOT / "target" / "release" / "minicrm"), "serve"], env=env)
        for _ in range(200):
            try:
                urllib.request.urlopen(f"http://{HTTP}/readyz", timeout=1)
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


def post(path, body, token=None, org=None):
    req = urllib.request.Request(f"http://{HTTP}{path}", data=json.dumps(body).encode(), method="POST",
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


def wrk(script, secs, connections=CONNECTIONS):
    out = subprocess.run(["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{secs}s", "--latency", "-s",
                          f"bench/wrk/{script}.lua", f"http://{HTTP}"],
                         cwd=ROOT, capture_output=True, text=True, check=True,
                         env=dict(os.environ, BENCH_IDS=str(OUT / "ids.lua")))
    return parse_wrk(out.stdout)


def pgbench(db, script, ids):
    out = subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(PORT), "-U", "postgres", "-n", "-M", "prepared",
                          f"-c{CONNECTIONS}", "-j2", f"-T{DURATION}", "-f", f"bench/pgbench/{script}.sql",
                          "-D", f"user={ids['user']}", "-D", f"org={ids['org']}", "-D", f"email={ids['email']}", db],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    tps = float(re.search(r"tps = ([\d.]+) \(without initial", out.stdout).group(1))
    avg = float(re.search(r"latency average = ([\d.]+) ms", out.stdout).group(1))
    return {"tps": tps, "avg": avg}


def statements(db):
    """Statements the server ran since the last reset, by query text."""
    rows = psql(db, "SELECT calls, regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements "
                    "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                    "AND toplevel AND query NOT ILIKE '%pg_stat_statements%' ORDER BY calls DESC")
    return [(int(r.split("|", 1)[0]), r.split("|", 1)[1]) for r in rows.splitlines() if r]


def plans(db, ids):
    """EXPLAIN ANALYZE of every statement the hot API calls run, under RLS as the request role."""
    calls = {
        "W1 api.deals_list": "api.deals_list(3, 20, '{new,in_progress}', NULL, 100, NULL, NULL, NULL, 'amount', 'desc')",
        "W2 api.deals_get": f"api.deals_get('{ids['deals'][0]}')",
        "W5 api.analytics_summary": "api.analytics_summary(30)",
        "api.analytics_funnel": "api.analytics_funnel()",
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
        keep = [b for b in blocks if "crm.deals" in b and "organization_members" not in b]
        out[name] = "\n".join("duration: " + b.strip() for b in keep)
    return out


def run_size(cluster_db, size):
    db = cluster_db
    psql("postgres", f"CREATE DATABASE {db}")
    psql(db, "CREATE EXTENSION pg_stat_statements")
    log(f"seeding {size} deals into {db}")
    t0 = time.time()
    seed = subprocess.run([str(ROOT / "target/release/minicrm"), "seed", "--orgs", "1", "--deals-per-org", str(size)],
                          env=dict(os.environ, DATABASE_URL=url(db), JWT_SECRET=SECRET, RUST_LOG="warn"),
                          capture_output=True, text=True, check=True)
    seed_secs = time.time() - t0
    log(seed.stdout.strip().splitlines()[-1])
    org, email = seed.stdout.strip().splitlines()[1].split()
    user = psql(db, f"SELECT id FROM crm.users WHERE email = '{email}'")
    psql(db, "CREATE TABLE public.bench_deals (n serial PRIMARY KEY, id uuid NOT NULL); "
             f"INSERT INTO public.bench_deals (id) SELECT id FROM crm.deals WHERE organization_id = '{org}' "
             "AND status IN ('new', 'in_progress') ORDER BY id LIMIT 1000; "
             "GRANT SELECT ON public.bench_deals TO minicrm_api; ANALYZE public.bench_deals;")
    deals = psql(db, "SELECT id FROM public.bench_deals ORDER BY n").split()
    ids = {"org": org, "user": user, "email": email, "deals": deals}

    results = {"size": size, "seed_secs": seed_secs, "http": {}, "pg": {}, "rss": {}, "stmts": {}}
    for cache_ttl in (30, 0):
        server = Server(db, cache_ttl)
        try:
            token = post("/api/v1/auth/login", {"email": email, "password": "demo-password"})["access_token"]
            ids["token"] = token
            (OUT / "ids.lua").write_text(
                "return {token = %s, org = %s, email = %s, deals = {%s}}\n" % (
                    json.dumps(token), json.dumps(org), json.dumps(email), ",".join(json.dumps(d) for d in deals)))
            for key, _, script in WORKLOADS:
                if (key == "W5u") != (cache_ttl == 0):
                    continue
                log(f"{size}: {key} warm-up {WARMUP}s, then {DURATION}s")
                wrk(script, WARMUP)
                psql(db, "SELECT pg_stat_statements_reset()")
                results["http"][key] = wrk(script, DURATION)
                results["stmts"][key] = statements(db)
                if key == "W1":
                    results["http"]["W1c1"] = wrk(script, DURATION // 2, connections=1)
            results["rss"][cache_ttl] = server.peak_rss_mb()
        finally:
            server.stop()
    for key, _, script in WORKLOADS:
        if key == "W5":
            continue
        log(f"{size}: pgbench {key}")
        results["pg"][key] = pgbench(db, script, ids)
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
                  "", "Round trips: statements the database ran per HTTP request during each measured run "
                  "(`pg_stat_statements`, top-level, reset before the run):", "",
                  "| workload | requests | statements | per request | statement |", "|---|---:|---:|---:|---|"]
        for key, _, _ in WORKLOADS:
            st = r["stmts"].get(key, [])
            total = sum(c for c, _ in st)
            reqs = r["http"][key]["requests"]
            top = st[0][1][:90] if st else "(none: served from the cache)"
            lines.append(f"| {key} | {reqs:,} | {total:,} | {total / max(reqs, 1):.2f} | `{top}` |")
        lines += ["", "<details><summary>Plans of the hot queries, under RLS as the request role "
                  "(auto_explain of the statements inside the API functions)</summary>", ""]
        for name, plan in r["plans"].items():
            lines += [f"### {name}", "", "```", plan, "```", ""]
        lines += ["</details>", ""]
    return "\n".join(lines) + "\n"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    if sys.argv[1:] == ["sweep"]:
        return run_sweep()
    cluster = Cluster()
    results = []
    try:
        cluster.start()
        for size in SIZES:
            results.append(run_size(f"bench_{size}", size))
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
    }
    target = Path(os.environ.get("BENCH_REPORT", ROOT / "docs" / "benchmarks.md"))
    target.parent.mkdir(exist_ok=True)
    notes = ROOT / "bench" / "notes.md"  # the analysis, written by people
    text = report(results, meta)
    if notes.exists():
        text = text.replace("\n## ", "\n" + notes.read_text() + "\n## ", 1)
    sweep = ROOT / "bench" / "sweep-results.md"  # bench/sweep.py --out bench/sweep-results.md
    if sweep.exists():
        text += "\n## Lists and analytics at scale (bench/sweep.py)\n\n" + sweep.read_text()
    sweep_notes = ROOT / "bench" / "sweep-notes.md"  # the analysis of the sweep, written by people
    if sweep_notes.exists():
        text += "\n" + sweep_notes.read_text()
    target.write_text(text)
    log(f"wrote {target}")


if __name__ == "__main__":
    main()
