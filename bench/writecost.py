#!/usr/bin/env python3
"""Where a contact insert's time goes (issue #10, W3; analysis in
bench/writecost-notes.md). `cargo build --release`, then
`python3 bench/writecost.py [pieces|compare|import]`, with BENCH_PG_PORT and
BENCH_HTTP_ADDR as for bench/run.py.

`pieces` (the default): one database seeded by BENCH_WC_BINARY (default:
this tree's release binary) with BENCH_WC_SIZE deals (default 50000), cloned
once per variant (BENCH_WC_VARIANTS, a comma list of keys: only those), each clone with one piece of the insert taken
out (a trigger disabled, a constraint or an index dropped: VARIANTS below);
then BENCH_WC_ROUNDS rounds (3) of W3's SQL through pgbench -M prepared on
every clone, alternated (the order rotates each round), at 32 clients for
BENCH_SECS (10) and at 1 client for half of it. Reports medians of TPS,
latency and the backends' CPU per transaction.

`compare`: W3 before and after a change, in one run. The database is seeded
by the binary BENCH_WC_BEFORE (say, a release build of main), cloned, and the
clone migrated by this tree's release binary; pgbench rounds on both,
alternated, then (unless BENCH_WC_HTTP=0) wrk's W3 against a server of each
binary on its own database, alternated likewise.

`import`: the suspicion of issue #10 that bulk contact inserts are quadratic
on a young database. For each binary (BENCH_WC_BEFORE, then this tree's), a
database seeded with one contact (the seed's VACUUM ANALYZE then sees one
row per organization, so every organization_id looks unique), into which
app.contacts_import_apply (what POST /contacts/import runs) writes N new
contacts in one statement, for each N of BENCH_WC_IMPORT_BEFORE (default
2500,5000) and BENCH_WC_IMPORT_AFTER (default 5000,20000,50000).

Results: bench/out/writecost-<mode>.json and a Markdown table on stdout.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run as b  # noqa: E402  (the cluster, psql and pgbench helpers of bench/run.py)

ROOT = b.ROOT
SIZE = int(os.environ.get("BENCH_WC_SIZE", "50000"))
ROUNDS = int(os.environ.get("BENCH_WC_ROUNDS", "3"))
SECS = int(os.environ.get("BENCH_SECS", "10"))
W3 = "w3_create_contact"

# (key, what is taken out, SQL that takes it out of a clone)
VARIANTS = [
    ("base", "nothing: the insert as it is", ""),
    ("no_search_words", "the search-words trigger (no word rows at all)",
     "ALTER TABLE crm.contacts DISABLE TRIGGER contacts_search_words"),
    ("no_words_fk", "the words' foreign key to the contact (6 RI checks per insert)",
     "ALTER TABLE crm.contact_search_words DROP CONSTRAINT contact_search_words_contact_id_not_found"),
    ("no_words_by_word", "the words' second index, contact_search_words_by_word",
     "DROP INDEX crm.contact_search_words_by_word"),
    ("no_trash_note", "the trash-note trigger (fires on every INSERT)",
     "ALTER TABLE crm.contacts DISABLE TRIGGER contacts_trash_note"),
    ("no_version", "the version trigger",
     "ALTER TABLE crm.contacts DISABLE TRIGGER contacts_version"),
    ("no_rules", "the rule trigger (role checks)",
     "ALTER TABLE crm.contacts DISABLE TRIGGER contacts_rules"),
    ("no_external_id", "the external-id unique index (V18)",
     "ALTER TABLE crm.contacts DROP CONSTRAINT contacts_external_id_taken"),
    ("no_by_owner", "the owner index contacts_by_owner",
     "DROP INDEX crm.contacts_by_owner"),
    ("no_trash_index", "the partial trash index contacts_trash (V17)",
     "DROP INDEX crm.contacts_trash"),
    ("no_contact_fks", "the contact's own foreign keys (organization, owner membership)",
     "ALTER TABLE crm.contacts DROP CONSTRAINT contacts_organization_id_fkey, "
     "DROP CONSTRAINT contacts_owner_id_not_member"),
]


def seed(db, binary):
    b.psql("postgres", f"CREATE DATABASE {db}")
    out = subprocess.run([str(binary), "seed", "--orgs", "1", "--deals-per-org", str(SIZE)],
                         env=dict(os.environ, DATABASE_URL=b.url(db), JWT_SECRET=b.SECRET, RUST_LOG="warn"),
                         capture_output=True, text=True, check=True).stdout.strip().splitlines()
    org, email = out[1].split()
    user = b.psql(db, f"SELECT id FROM crm.users WHERE email = '{email}'")
    return {"org": org, "user": user, "email": email}


def clone(src, db):
    b.psql("postgres", f"CREATE DATABASE {db} TEMPLATE {src}")


def pgbench(cluster, db, ids, clients, secs):
    cpu0 = b.children_cpu_secs(cluster)
    out = subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(b.PORT), "-U", "postgres", "-n", "-M", "prepared",
                          f"-c{clients}", f"-j{min(2, clients)}", f"-T{secs}", "-f", f"bench/pgbench/{W3}.sql",
                          "-D", f"user={ids['user']}", "-D", f"org={ids['org']}", db],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    tps = float(re.search(r"tps = ([\d.]+) \(without initial", out).group(1))
    avg = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
    txs = int(re.search(r"number of transactions actually processed: (\d+)", out).group(1))
    time.sleep(0.5)  # the backends exit and are reaped after pgbench has gone
    return {"tps": tps, "avg": avg, "cpu_us": (b.children_cpu_secs(cluster) - cpu0) / max(txs, 1) * 1e6}


def rounds(cluster, dbs, ids, label):
    """ROUNDS rounds over dbs (key -> database), the order rotating; 32 and 1 clients."""
    res = {k: {"c32": [], "c1": []} for k in dbs}
    keys = list(dbs)
    for r in range(ROUNDS):
        order = keys[r % len(keys):] + keys[:r % len(keys)]
        for k in order:
            b.log(f"{label}: round {r + 1}/{ROUNDS}, {k}")
            res[k]["c32"].append(pgbench(cluster, dbs[k], ids, 32, SECS))
            res[k]["c1"].append(pgbench(cluster, dbs[k], ids, 1, max(SECS // 2, 3)))
    return res


def medians(runs):
    return {f: b.median([r[f] for r in runs]) for f in ("tps", "avg", "cpu_us")}


def function_times(cluster, db, ids, n=2000):
    """Self and total time per call of every function a contact insert runs
    (track_functions = all, in a session of its own: it costs per call)."""
    b.psql(db, "SELECT pg_stat_reset()")
    script = ROOT / "bench" / "out" / "writecost-fn.sql"
    script.write_text("SET track_functions = 'all';\n" + "\n".join(
        [f"SELECT api.contacts_create('Bench contact', 'bench@example.com', NULL, NULL)::text "
         f"FROM app.act_as('{ids['user']}', '{ids['org']}');"] * n) + "\n")
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(b.PORT), "-U", "postgres", "-d", db, "-X", "-q",
                    "-o", "/dev/null", "-f", str(script)], check=True)
    time.sleep(1)  # the statistics are flushed when the session ends
    rows = b.psql(db, "SELECT schemaname || '.' || funcname, calls, round((self_time * 1000 / calls)::numeric, 2), "
                      "round((total_time * 1000 / calls)::numeric, 2) FROM pg_stat_user_functions "
                      f"WHERE calls >= {n} ORDER BY total_time DESC")
    return [r.split("|") for r in rows.splitlines()]


def table(res, descr):
    base = medians(res["base"]["c32"]) if "base" in res else None
    lines = ["| variant | taken out | TPS (32 clients) | vs base | backend CPU µs/tx | vs base | "
             "latency ms (1 client) | rounds (TPS, 32 clients) |",
             "|---|---|---:|---:|---:|---:|---:|---|"]
    for k, r in res.items():
        m32, m1 = medians(r["c32"]), medians(r["c1"])
        vs = f"{(m32['tps'] / base['tps'] - 1) * 100:+.1f} %" if base else ""
        cpu = f"{m32['cpu_us'] - base['cpu_us']:+.0f}" if base else ""
        lines.append(f"| {k} | {descr.get(k, '')} | {b.fmt(m32['tps'])} | {vs} | {b.fmt(m32['cpu_us'], 0)} | {cpu} | "
                     f"{b.fmt(m1['avg'], 3)} | " + ", ".join(b.fmt(x["tps"]) for x in r["c32"]) + " |")
    return "\n".join(lines)


def mode_pieces():
    binary = os.environ.get("BENCH_WC_BINARY") or ROOT / "target" / "release" / "minicrm"
    wanted = os.environ.get("BENCH_WC_VARIANTS")
    variants = [v for v in VARIANTS if wanted is None or v[0] in wanted.split(",")]
    cluster = b.Cluster()
    try:
        cluster.start()
        ids = seed("wc_seed", binary)
        b.psql("wc_seed", "CHECKPOINT")
        dbs = {}
        for k, _, sql in variants:
            dbs[k] = f"wc_{k}"
            clone("wc_seed", dbs[k])
            if sql:
                b.psql(dbs[k], sql)
        for db in dbs.values():  # warm-up: caches, and the plans of every backend path
            pgbench(cluster, db, ids, 32, 3)
        res = rounds(cluster, dbs, ids, "pieces")
        fn = function_times(cluster, "wc_base", ids)
    finally:
        cluster.stop()
    (b.OUT / "writecost-pieces.json").write_text(json.dumps({"runs": res, "functions": fn}, indent=1))
    print(f"binary: {binary}\n")
    print(table(res, {k: d for k, d, _ in VARIANTS}))
    print("\n| function | calls | self µs/call | total µs/call |\n|---|---:|---:|---:|")
    for f in fn:
        print("| " + " | ".join(f) + " |")


def login(addr, email):
    req = urllib.request.Request(f"http://{addr}/api/v1/auth/login", method="POST",
                                 data=json.dumps({"email": email, "password": "demo-password"}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.load(r)["access_token"]


def mode_compare():
    before_bin = os.environ.get("BENCH_WC_BEFORE")
    if not before_bin:
        sys.exit("BENCH_WC_BEFORE=<a minicrm binary before the change> is required")
    after_bin = ROOT / "target" / "release" / "minicrm"
    cluster = b.Cluster()
    try:
        cluster.start()
        ids = seed("wc_before", before_bin)
        b.psql("wc_before", "CHECKPOINT")
        clone("wc_before", "wc_after")
        subprocess.run([str(after_bin), "migrate"], check=True, capture_output=True,
                       env=dict(os.environ, DATABASE_URL=b.url("wc_after"), JWT_SECRET=b.SECRET, RUST_LOG="warn"))
        b.psql("wc_after", "VACUUM ANALYZE")
        b.psql("wc_before", "VACUUM ANALYZE")
        dbs = {"before": "wc_before", "after": "wc_after"}
        for db in dbs.values():
            pgbench(cluster, db, ids, 32, 3)
        res = rounds(cluster, dbs, ids, "compare")
        http = {}
        if os.environ.get("BENCH_WC_HTTP", "1") != "0":
            servers = {"before": b.Server("wc_before", binary=before_bin, addr=b.extra_addr(1)),
                       "after": b.Server("wc_after", binary=after_bin, addr=b.HTTP)}
            try:
                token = login(b.HTTP, ids["email"])  # the same user and secret in both databases
                (b.OUT / "ids.lua").write_text("return {token = %s, org = %s, email = %s, deals = {}}\n" % (
                    json.dumps(token), json.dumps(ids["org"]), json.dumps(ids["email"])))
                for s in servers.values():
                    b.wrk(W3, 3, addr=s.addr)
                http = {k: [] for k in servers}
                for r in range(ROUNDS):
                    for k in (list(servers) if r % 2 == 0 else list(servers)[::-1]):
                        b.log(f"compare: HTTP round {r + 1}/{ROUNDS}, {k}")
                        http[k].append(b.wrk(W3, SECS, addr=servers[k].addr))
            finally:
                for s in servers.values():
                    s.stop()
    finally:
        cluster.stop()
    (b.OUT / "writecost-compare.json").write_text(json.dumps({"pg": res, "http": http}, indent=1))
    print(table(res, {"before": before_bin, "after": "this tree"}))
    if http:
        print("\n| HTTP W3 | req/s | p50 ms | p99 ms | errors | rounds (req/s) |\n|---|---:|---:|---:|---:|---|")
        for k, rs in http.items():
            print(f"| {k} | {b.fmt(b.median([r['rps'] for r in rs]))} | {b.fmt(b.median([r['p50'] for r in rs]), 2)} | "
                  f"{b.fmt(b.median([r['p99'] for r in rs]), 2)} | {sum(r['errors'] for r in rs)} | "
                  + ", ".join(b.fmt(r["rps"]) for r in rs) + " |")
        print(f"\nHTTP after/before: {b.median([r['rps'] for r in http['after']]) / b.median([r['rps'] for r in http['before']]):.3f}")
    print(f"pgbench after/before (32 clients): "
          f"{medians(res['after']['c32'])['tps'] / medians(res['before']['c32'])['tps']:.3f}")


def mode_import():
    before_bin = os.environ.get("BENCH_WC_BEFORE")
    if not before_bin:
        sys.exit("BENCH_WC_BEFORE=<a minicrm binary before the change> is required")
    plan = [("before", before_bin, os.environ.get("BENCH_WC_IMPORT_BEFORE", "2500,5000")),
            ("after", ROOT / "target" / "release" / "minicrm", os.environ.get("BENCH_WC_IMPORT_AFTER", "5000,20000,50000"))]
    res = []
    cluster = b.Cluster()
    try:
        cluster.start()
        for key, binary, sizes in plan:
            for n in (int(x) for x in sizes.split(",")):
                db = f"wc_import_{key}_{n}"
                b.psql("postgres", f"CREATE DATABASE {db}")
                out = subprocess.run([str(binary), "seed", "--orgs", "1", "--deals-per-org", "1", "--contacts-per-org", "1"],
                                     env=dict(os.environ, DATABASE_URL=b.url(db), JWT_SECRET=b.SECRET, RUST_LOG="warn"),
                                     capture_output=True, text=True, check=True).stdout.strip().splitlines()
                org, email = out[1].split()
                user = b.psql(db, f"SELECT id FROM crm.users WHERE email = '{email}'")
                b.log(f"import: {key}, {n} contacts")
                t0 = time.time()
                b.psql(db, "SELECT app.contacts_import_apply(array_agg(ROW(g + 1, 'Imported contact ' || g, "
                           "'imported' || g || '@example.com', NULL, 'import-' || g, NULL)::app.contact_import_row "
                           f"ORDER BY g), '{{name,email,external_id}}') FROM generate_series(1, {n}) g, "
                           f"app.act_as('{user}', '{org}')")
                res.append({"binary": key, "contacts": n, "secs": time.time() - t0})
                b.psql("postgres", f"DROP DATABASE {db}")
    finally:
        cluster.stop()
    (b.OUT / "writecost-import.json").write_text(json.dumps(res, indent=1))
    print("| binary | contacts imported | seconds | µs per contact |\n|---|---:|---:|---:|")
    for r in res:
        print(f"| {r['binary']} | {r['contacts']:,} | {r['secs']:.2f} | {r['secs'] / r['contacts'] * 1e6:,.0f} |")


if __name__ == "__main__":
    b.OUT.mkdir(parents=True, exist_ok=True)
    mode = sys.argv[1] if len(sys.argv) > 1 else "pieces"
    {"pieces": mode_pieces, "compare": mode_compare, "import": mode_import}[mode]()
