#!/usr/bin/env python3
"""The fixed cost of a request in instructions (issue #10, item 7;
bench/fixedcost-notes.md): what a single-user backend executes per request
for each variant of bench/run.py's fixed-cost rounds (bench/pgbench/ref_*.sql
and w2_get.sql), counted by callgrind (run.callgrind_per_request), so that a
change of a few µs can be seen through the noise of a shared machine.

  bench/fixedcost.py setup                 # cluster on BENCH_PG_PORT (55660), seeded
  bench/fixedcost.py instructions 200 [VARIANT...]   # default: every variant
  bench/fixedcost.py sql FILE              # run a .sql file in the database (a draft)
  bench/fixedcost.py setup-db NAME BINARY  # another database, migrated and seeded by BINARY
  FIXEDCOST_DB=NAME bench/fixedcost.py instructions 200 W1 W2 W3 W4   # the workloads' SQL there
  bench/fixedcost.py stop

Each pgbench script becomes a prepared statement (its :i, :user and :org as
parameters, as `pgbench -M prepared` sends them) executed with the same
sequence of deals for every variant, after FIXEDCOST_WARMUP (400) warm-up
executions (see WARMUP). `server` is the statement the server sends
for GET /deals/{id} (src/db/mod.rs), with the deal's id as a parameter.
Single-user mode runs each EXECUTE as its own transaction, as the server's
implicit transactions are. What callgrind does not see: the kernel (the
socket round trip) and the locks of concurrent clients.
"""

import json
import os
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("BENCH_PG_PORT", "55660")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402

ROOT = run.ROOT
STATE = run.OUT / "fixedcost.json"
CLUSTER_DIR = Path(os.environ.get("FIXEDCOST_DIR", "/tmp/minicrm-fixedcost"))
# src/db/mod.rs's call for GET /deals/{id}, its parameters renumbered as below.
SERVER_SQL = "SELECT (api.deals_get(p_id => $1))::text FROM app.act_as($2, $3)"
VARIANTS = {key: script for key, script, _ in run.REFS if key != "http"} | {"server": None}
# The workloads' SQL (bench/pgbench), to compare two builds' databases (setup-db).
WORKLOADS = {key: script for key, _, script in run.WORKLOADS if key in ("W1", "W2", "W3", "W4")}
# A script's variables, in the order of the prepared statement's parameters.
# Past the plan cache's five custom plans, and long enough that each write
# trigger's 1 % fold has run once (its first run in a session prepares its
# statements: about 19 M instructions, 0.19 M per request of a 100-request
# difference if it fell there).
WARMUP = int(os.environ.get("FIXEDCOST_WARMUP", "400"))
PARAMS = [(":i", "int"), (":user", "uuid"), (":org", "uuid"), (":s", "int")]


def setup():
    size = int(os.environ.get("BENCH_FIXEDCOST_SIZE", "50000"))
    db = "bench_fixedcost"
    ids = run.KeptCluster(CLUSTER_DIR).create(db, size)
    run.psql(db, (ROOT / "bench" / "pgbench" / "ref_setup.sql").read_text(), tuples=False)
    run.OUT.mkdir(exist_ok=True)
    STATE.write_text(json.dumps({"db": db, "ids": ids, "size": size}))


def prepared(variant):
    """The variant's statement with its parameters in the order of PARAMS
    (for `server`: the deal's id in place of its number)."""
    if variant == "server":
        return SERVER_SQL
    script = WORKLOADS.get(variant) or VARIANTS[variant]
    text = (ROOT / "bench" / "pgbench" / f"{script}.sql").read_text()
    sql = " ".join(line for line in text.splitlines() if line and not line.startswith(("--", "\\")))
    for n, (name, _) in enumerate(PARAMS, 1):
        sql = sql.replace(name, f"${n}")
    return sql.rstrip(";")


def setup_db(name, binary):
    """A second database in the cluster, migrated and seeded by another
    build's binary, for the workloads' variants (FIXEDCOST_DB=name)."""
    st = json.loads(STATE.read_text())
    run.psql("postgres", f"CREATE DATABASE {name}")
    ids, _ = run.seed_one_org(name, st.get("size", 50000), binary=binary)
    st.setdefault("dbs", {})[name] = ids
    STATE.write_text(json.dumps(st))


def instructions(n, variants):
    st = json.loads(STATE.read_text())
    db = os.environ.get("FIXEDCOST_DB", st["db"])
    ids = st["ids"] if db == st["db"] else st["dbs"][db]
    pristine = run.KeptCluster(CLUSTER_DIR).pristine_copy()
    deals = run.psql(db, "SELECT id FROM public.bench_deals ORDER BY n").split()
    keep = os.environ.get("FIXEDCOST_KEEP")  # a directory for the profiles (callgrind_annotate)
    print(f"\ninstructions per request (callgrind, {n} and {2 * n} requests, single-user backend)\n")
    print("| variant | k instructions/request |\n|---|---:|")
    for v in variants:
        def script(k, v=v):
            r = random.Random(2)
            types = ["uuid" if v == "server" else "int"] + [t for _, t in PARAMS[1:]]
            # The same random() for every variant: the write triggers fold
            # their deltas on 1 % of the calls, and a fold is costly.
            lines = ["SELECT setseed(0.5)", f"PREPARE q({', '.join(types)}) AS {prepared(v)}"]
            for _ in range(WARMUP + k):
                i = r.randrange(len(deals))
                first = f"'{deals[i]}'" if v == "server" else str(i + 1)
                lines.append(f"EXECUTE q({first}, '{ids['user']}', '{ids['org']}', {r.randrange(2)})")
            return "\n".join(lines) + "\n"
        per_request = run.callgrind_per_request(pristine, db, script, n,
                                                keep=keep and str(Path(keep) / v))
        print(f"| {v} | {per_request / 1000:,.1f} |", flush=True)
    shutil.rmtree(pristine.parent, ignore_errors=True)


def main():
    cmd, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else ("", [])
    if cmd == "setup":
        setup()
    elif cmd == "stop":
        run.KeptCluster(CLUSTER_DIR).stop()
    elif cmd == "sql":
        st = json.loads(STATE.read_text())
        subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(run.PORT), "-U", "postgres", "-d", st["db"], "-X",
                        "-q", "-v", "ON_ERROR_STOP=1", "-f", args[0]], check=True)
    elif cmd == "setup-db":
        setup_db(args[0], args[1])
    elif cmd == "instructions":
        instructions(int(args[0]), args[1:] or list(VARIANTS))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
