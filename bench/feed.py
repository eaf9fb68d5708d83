#!/usr/bin/env python3
"""The change feed's figures (README, "Change feed and live stream"): the
release server against a PostgreSQL server that the PG* variables name
(its superuser), on a database of its own, with EVENTS events of one
organization (one writing transaction: the feed's reads do not care).

  * GET /events?limit=100 from the start, from the middle of the history and
    at the horizon (an idle poller), and ?types=pipeline.* (1 % of the rows,
    so each call looks at its 5,000 rows): wrk, 2 connections, latency p50;
  * commit to SSE delivery: an event inserted by psql, until a
    GET /events/stream reader receives it (median and p90 of SAMPLES), from
    psql's return (the notification is sent at commit, before psql exits, so
    this is a lower bound) and from psql's start (an upper bound).

  PGHOST=127.0.0.1 PGPORT=55610 PGUSER=postgres BENCH_HTTP_ADDR=127.0.0.1:18210 \\
    python3 bench/feed.py      # after cargo build --release
"""
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ADDR = os.environ.get("BENCH_HTTP_ADDR", "127.0.0.1:18210")
EVENTS = int(os.environ.get("EVENTS", "200000"))
SAMPLES = int(os.environ.get("SAMPLES", "50"))
SECS = os.environ.get("BENCH_SECS", "8")
DB = "feed_bench"
PG = f"postgres://{os.environ.get('PGUSER', 'postgres')}@{os.environ.get('PGHOST', '127.0.0.1')}:{os.environ.get('PGPORT', '5432')}"


def psql(db, sql):
    return subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
                          check=True, capture_output=True, text=True).stdout.strip()


def api(method, path, body=None, token=None, org=None):
    req = urllib.request.Request(f"http://{ADDR}/api/v1{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("content-type", "application/json")
    if token:
        req.add_header("authorization", f"Bearer {token}")
    if org:
        req.add_header("x-organization-id", org)
    with urllib.request.urlopen(req) as res:
        return json.loads(res.read())


def wrk(path, token, org):
    out = subprocess.run(["wrk", "-t1", "-c2", f"-d{SECS}s", "--latency",
                          "-H", f"authorization: Bearer {token}", "-H", f"x-organization-id: {org}",
                          f"http://{ADDR}/api/v1{path}"], check=True, capture_output=True, text=True).stdout
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)
    rps = re.search(r"Requests/sec:\s+(\S+)", out).group(1)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return p50, rps, errors.group(1) if errors else "0"


def main():
    psql("postgres", f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    psql("postgres", f"CREATE DATABASE {DB}")
    env = dict(os.environ, DATABASE_URL=f"{PG}/{DB}", JWT_SECRET="bench-secret-bench-secret-bench-secret",
               LISTEN_ADDR=ADDR, RUST_LOG="warn")
    server = subprocess.Popen([f"{ROOT}/target/release/minicrm", "serve"], env=env)
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{ADDR}/readyz")
                break
            except Exception:
                time.sleep(0.2)
        user = api("POST", "/auth/register", {"email": "feed@example.com", "password": "correct horse",
                                              "name": "Feed", "organization_name": "Feed Inc"})
        token, org = user["access_token"], user["organization"]["id"]
        psql(DB, f"""INSERT INTO crm.events (organization_id, type, resource_type, resource_id, data)
                     SELECT '{org}', t, split_part(t, '.', 1), gen_random_uuid(),
                            jsonb_build_object('object', jsonb_build_object('n', g, 'title', 'Deal ' || g))
                       FROM generate_series(1, {EVENTS}) g,
                            LATERAL (SELECT CASE WHEN g % 100 = 0 THEN 'pipeline.updated' ELSE 'deal.updated' END) x (t)""")
        psql(DB, "VACUUM ANALYZE crm.events")
        # Cursors: the middle of the history (following pages of 500), and the horizon.
        first = api("GET", "/events?limit=500", token=token, org=org)
        middle = first["next_cursor"]
        for _ in range(EVENTS // 1000 - 1):
            middle = api("GET", f"/events?limit=500&after={middle}", token=token, org=org)["next_cursor"]
        horizon = None
        page = {"next_cursor": middle, "items": [1]}
        while page["items"]:
            page = api("GET", f"/events?limit=500&after={page['next_cursor']}", token=token, org=org)
        horizon = page["next_cursor"]
        rows = []
        for name, path in [("limit=100, from the start", "/events?limit=100"),
                           ("limit=100, after the middle", f"/events?limit=100&after={middle}"),
                           ("limit=500, after the middle", f"/events?limit=500&after={middle}"),
                           ("limit=100, at the horizon (idle poll)", f"/events?limit=100&after={horizon}"),
                           ("types=pipeline.* (1 %), after the middle", f"/events?types=pipeline.*&after={middle}")]:
            rows.append((name, *wrk(path, token, org)))

        # Commit to SSE delivery.
        conn = http.client.HTTPConnection(*ADDR.split(":"))
        conn.request("GET", "/api/v1/events/stream", headers={"authorization": f"Bearer {token}", "x-organization-id": org})
        res = conn.getresponse()
        arrived = {}

        def read():
            buf = b""
            while len(arrived) < SAMPLES:
                buf += res.read1(65536)
                while b"\n\n" in buf:
                    frame, buf = buf.split(b"\n\n", 1)
                    for line in frame.split(b"\n"):
                        if line.startswith(b"data:"):
                            arrived[json.loads(line[5:])["resource_id"]] = time.monotonic()

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        time.sleep(0.5)
        latencies, from_start = [], []
        for i in range(SAMPLES):
            started = time.monotonic()
            rid = psql(DB, f"""INSERT INTO crm.events (organization_id, type, resource_type, resource_id, data)
                               VALUES ('{org}', 'deal.created', 'deal', gen_random_uuid(), '{{}}') RETURNING resource_id""")
            committed = time.monotonic()
            while rid not in arrived and time.monotonic() - committed < 5:
                time.sleep(0.0005)
            latencies.append((arrived.get(rid, committed + 5) - committed) * 1000)
            from_start.append((arrived.get(rid, committed + 5) - started) * 1000)
            time.sleep(0.05)
        latencies.sort()
        from_start.sort()
        print(f"events: {EVENTS}, wrk {SECS} s, 2 connections")
        print("| request | p50 | requests/s | non-2xx |\n|---|---|---|---|")
        for r in rows:
            print("| " + " | ".join(r) + " |")
        print(f"commit (psql returned) to SSE delivery, {SAMPLES} events: median {statistics.median(latencies):.1f} ms, "
              f"p90 {latencies[int(len(latencies) * 0.9) - 1]:.1f} ms, max {latencies[-1]:.1f} ms "
              f"(from psql's start, which includes its startup: median {statistics.median(from_start):.1f} ms)")
    finally:
        server.terminate()
        server.wait()
        psql("postgres", f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


if __name__ == "__main__":
    sys.exit(main())
