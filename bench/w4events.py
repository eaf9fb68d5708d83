#!/usr/bin/env python3
"""Where W4's event cost goes (issue #13, W4; bench/w4events-notes.md).

Reuses bench/run.py's cluster, seed and pgbench helpers (run_events' setup:
one organization, BENCH_EVENTS_SIZE deals, the 1,000 open deals of
public.bench_deals) on a cluster that stays up between commands, so that
variants can be tried one after the other:

  bench/w4events.py setup                 # cluster on BENCH_PG_PORT, seeded
  bench/w4events.py run W4 32 3 20 VARIANT...  # workload, clients, rounds, seconds
  bench/w4events.py import 3 VARIANT...   # run_events' 50,000-row import
  bench/w4events.py sql VARIANT           # install a variant and stay there
  bench/w4events.py instructions W4 100 VARIANT...  # instructions per request (callgrind)
  bench/w4events.py stop

A variant is a base file of the event triggers (main: sql/functions/60_events.sql
as on main, saved by setup; new: this tree's) plus the pieces taken out
(VARIANTS below, SQL run after the base file). Before every round the
variant is installed from scratch; every round opens new sessions, so no
plan survives from another variant. (The commit-time NOTIFY trigger
events_notify, disabled throughout the runs of bench/w4events-notes.md,
is gone since the announcer.) Rounds alternate their order.
Medians of the rounds; cpu_us is the backends' CPU per transaction
(run.py's children_cpu_secs: the pgbench backends have exited by then).

`instructions` counts what the load of a shared machine cannot change: the
instructions (valgrind's callgrind) a single-user backend executes per
request, on a copy of the seeded cluster with the variant installed, as
the difference of a run of N requests and one of 2N, each after 50 warm-up
requests, from the same copy and random seed (setseed, for deal_totals'
and velocity's 1 % compaction), with a fixed sequence of (deal, status)
pairs. It leaves out the kernel (the commit's WAL flush) and the locks of
concurrent clients, and single-user mode runs the statement unprepared.
"""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("BENCH_PG_PORT", "55650")
sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402

ROOT = run.ROOT
STATE = run.OUT / "w4events.json"
CLUSTER_DIR = Path(os.environ.get("W4EV_DIR", "/tmp/minicrm-w4events"))
MAIN_EVENTS = run.OUT / "60_events.main.sql"
NEW_EVENTS = ROOT / "sql" / "functions" / "60_events.sql"

WORKLOADS = {"W3": "w3_create_contact", "W4": "w4_patch_status"}

# The deals' UPDATE trigger function as on main, with {body} and {config}
# left open, so that a variant changes one piece of it.
DEALS_UPDATE = """
CREATE OR REPLACE FUNCTION private.deals_events_update() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp {config}
  AS $$
BEGIN
{body}
  RETURN NULL;
END
$$;
"""
MAIN_BODY = """
  INSERT INTO crm.events (organization_id, type, actor_id, resource_type, resource_id, data)
  SELECT n.organization_id, 'deal.' || k.kind, app.user_id(), 'deal', n.id,
         CASE k.kind
           WHEN 'updated' THEN jsonb_build_object('object', j.new, 'previous', {previous})
           WHEN 'deleted' THEN jsonb_build_object('object', j.old, 'previous', NULL)
           ELSE jsonb_build_object('object', j.new, 'previous', NULL)
         END
    FROM new_rows n
    JOIN old_rows o ON o.organization_id = n.organization_id AND o.id = n.id
   CROSS JOIN LATERAL (SELECT CASE WHEN o.deleted_at IS NULL AND n.deleted_at IS NOT NULL THEN 'deleted'
                                   WHEN o.deleted_at IS NOT NULL AND n.deleted_at IS NULL THEN 'restored'
                                   ELSE 'updated' END AS kind) k
   CROSS JOIN LATERAL (SELECT app.deal_json(o) AS old, app.deal_json(n) AS new) j;"""
PREVIOUS = "private.event_previous(j.old, j.new)"


def deals_update(config="SET enable_nestloop = off", body=MAIN_BODY, previous=PREVIOUS):
    return DEALS_UPDATE.format(config=config, body=body.replace("{previous}", previous))


def const_event_trigger(function, event_type):
    """An event trigger function of this tree that writes a constant event
    per new row: its call, its INSERT and the row, no JSON."""
    resource = event_type.split(".")[0]
    return f"""
CREATE OR REPLACE FUNCTION private.{function}() RETURNS trigger
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $$
BEGIN
  INSERT INTO crm.events (organization_id, type, actor_id, resource_type, resource_id, data)
  SELECT n.organization_id, '{event_type}', app.user_id(), '{resource}', n.id, '{{"object": {{}}}}'::jsonb FROM new_rows n;
  RETURN NULL;
END
$$;"""


def trigger(verb, table, name):
    return f"ALTER TABLE crm.{table} {verb} TRIGGER {name};"


# name -> (base file, SQL after it, description)
VARIANTS = {
    "main": ("main", "", "events as on main"),
    "new": ("new", "", "events as in this tree"),
    "none": ("main", run.EVENT_TRIGGERS_SQL.format(verb="DISABLE") + ";", "no event triggers"),
    "new-none": ("new", run.EVENT_TRIGGERS_SQL.format(verb="DISABLE") + ";", "no event triggers (this tree)"),
    "no-deal-ev": ("main", trigger("DISABLE", "deals", "deals_events_update"),
                   "main without the deal.updated trigger"),
    "no-act-ev": ("main", trigger("DISABLE", "activities", "activities_events_insert"),
                  "main without the activity.created trigger"),
    "no-nestloop-set": ("main", deals_update(config=""), "main, the UPDATE function without SET enable_nestloop"),
    "noop-fn": ("main", deals_update(body=""), "main, the UPDATE function does nothing (capture + call only)"),
    "noop-fn-noset": ("main", deals_update(config="", body=""),
                      "main, the UPDATE function does nothing and has no enable_nestloop"),
    "no-diff": ("main", deals_update(previous="'{}'::jsonb"), "main, previous = {} (no event_previous)"),
    "no-join": ("main", deals_update(body="""
  INSERT INTO crm.events (organization_id, type, actor_id, resource_type, resource_id, data)
  SELECT n.organization_id, 'deal.updated', app.user_id(), 'deal', n.id,
         jsonb_build_object('object', app.deal_json(n), 'previous', NULL)
    FROM new_rows n;"""), "main, the UPDATE function reads new_rows only (no join, no old JSON, no diff)"),
    "const-row": ("main", deals_update(body="""
  INSERT INTO crm.events (organization_id, type, actor_id, resource_type, resource_id, data)
  SELECT n.organization_id, 'deal.updated', app.user_id(), 'deal', n.id, '{"object": {}}'::jsonb
    FROM new_rows n;"""), "main, the UPDATE function inserts a constant event per new row"),
    # The floor of an event after V26 and V27: W4's two events as constant
    # rows (the trigger call, its INSERT statement and the row, no JSON).
    "floor": ("new", const_event_trigger("deals_events_update", "deal.updated")
              + const_event_trigger("activities_events_insert", "activity.created"),
              "this tree, W4's events as constant rows (no JSON): the floor of an event"),
    # The variants new-no-fan-out, new-no-checks and new-no-fks measured the
    # webhook fan-out's statement trigger on crm.events and V20's CHECKs and
    # foreign keys (bench/w4events-notes.md); V26 and V27 removed all three.
}


def kept():
    return run.KeptCluster(CLUSTER_DIR)


def state():
    return json.loads(STATE.read_text())


def setup():
    size = int(os.environ.get("BENCH_EVENTS_SIZE", "50000"))
    db = "bench_events"
    ids = kept().create(db, size)
    main_sql = subprocess.run(["git", "show", "main:sql/functions/60_events.sql"], cwd=ROOT, capture_output=True,
                              text=True, check=True).stdout
    MAIN_EVENTS.write_text(main_sql)
    STATE.write_text(json.dumps({"db": db, "ids": ids, "size": size}))
    run.log(f"ready: {STATE}")


def stop():
    kept().stop()


def install(db, variant):
    """A variant of VARIANTS, or the path of a .sql file of the event
    triggers (a draft) to apply in place of the base file."""
    base, extra, _ = VARIANTS.get(variant, (variant, "", variant))
    path = {"main": MAIN_EVENTS, "new": NEW_EVENTS}.get(base, Path(base))
    subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(run.PORT), "-U", "postgres", "-d", db, "-X", "-q",
                    "-v", "ON_ERROR_STOP=1", "-f", str(path)], check=True, stdout=subprocess.DEVNULL)
    run.psql(db, run.EVENT_TRIGGERS_SQL.format(verb="ENABLE") + "; " + extra, tuples=False)


def pgbench(db, script, ids, clients, secs, cluster):
    """run.pgbench with a client count of its own (run.pgbench uses 32)."""
    cpu0 = run.children_cpu_secs(cluster)
    out = subprocess.run(["pgbench", "-h", "127.0.0.1", "-p", str(run.PORT), "-U", "postgres", "-n", "-M", "prepared",
                          f"-c{clients}", f"-j{min(2, clients)}", f"-T{secs}", "-f", f"bench/pgbench/{script}.sql",
                          "-D", f"user={ids['user']}", "-D", f"org={ids['org']}", "-D", f"email={ids['email']}", db],
                         cwd=ROOT, capture_output=True, text=True, check=True)
    tps = float(re.search(r"tps = ([\d.]+) \(without initial", out.stdout).group(1))
    avg = float(re.search(r"latency average = ([\d.]+) ms", out.stdout).group(1))
    txs = int(re.search(r"number of transactions actually processed: (\d+)", out.stdout).group(1))
    time.sleep(0.5)
    return {"tps": tps, "avg": avg, "cpu_us": (run.children_cpu_secs(cluster) - cpu0) / max(txs, 1) * 1e6}


def bench(workload, clients, rounds, secs, variants):
    st = state()
    db, ids = st["db"], st["ids"]
    cluster = kept()
    script = WORKLOADS[workload]
    runs = {v: [] for v in variants}
    load0 = os.getloadavg()[0]
    install(db, variants[0])
    pgbench(db, script, ids, clients, run.WARMUP, cluster)
    for n in range(rounds):
        for v in (variants if n % 2 == 0 else variants[::-1]):
            install(db, v)
            r = pgbench(db, script, ids, clients, secs, cluster)
            run.log(f"{workload} c{clients} round {n + 1}/{rounds} {v}: {r['tps']:.1f} TPS, {r['cpu_us']:.0f} µs")
            runs[v].append(r)
    load1 = os.getloadavg()[0]
    print(f"\n{workload}, {clients} clients, {rounds} rounds of {secs} s, load {load0:.1f} → {load1:.1f}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print("| variant | TPS | avg ms | cpu µs/tx | rounds (TPS) | rounds (µs) |\n|---|---:|---:|---:|---|---|")
    for v in variants:
        m = {f: run.median([r[f] for r in runs[v]]) for f in ("tps", "avg", "cpu_us")}
        print(f"| {v} | {run.fmt(m['tps'])} | {run.fmt(m['avg'], 2)} | {run.fmt(m['cpu_us'], 0)} | "
              + ", ".join(run.fmt(r["tps"]) for r in runs[v]) + " | "
              + ", ".join(run.fmt(r["cpu_us"], 0) for r in runs[v]) + " |")
    with open(run.OUT / "w4events-runs.jsonl", "a") as f:
        f.write(json.dumps({"workload": workload, "clients": clients, "secs": secs, "load": [load0, load1],
                            "runs": runs}) + "\n")


def imports(rounds, variants):
    st = state()
    db, ids = st["db"], st["ids"]
    path = run.OUT / "events-import.sql"
    path.write_text(run.IMPORT_SQL.format(user=ids["user"], org=ids["org"]))
    times = {v: [] for v in variants}
    for n in range(rounds):
        for v in (variants if n % 2 == 0 else variants[::-1]):
            install(db, v)
            t0 = time.time()
            subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(run.PORT), "-U", "postgres", "-d", db, "-X", "-q",
                            "-v", "ON_ERROR_STOP=1", "-f", str(path)], check=True, stdout=subprocess.DEVNULL)
            times[v].append(time.time() - t0)
            run.log(f"import round {n + 1}/{rounds} {v}: {times[v][-1]:.2f} s")
    print("\n| variant | import s (median) | rounds |\n|---|---:|---|")
    for v in variants:
        print(f"| {v} | {run.median(times[v]):.2f} | " + ", ".join(f"{t:.2f}" for t in times[v]) + " |")


def instructions(workload, n, variants):
    import random
    import shutil
    st = state()
    db, ids = st["db"], st["ids"]
    vg = kept().pristine_copy().parent
    deals = run.psql(db, "SELECT id FROM public.bench_deals ORDER BY n").split()

    def requests(k, seed):
        r = random.Random(seed)
        act = f"FROM app.act_as('{ids['user']}', '{ids['org']}')"
        if workload == "W4":
            return "".join(f"SELECT api.deals_update('{r.choice(deals)}', '{r.choice(['new', 'in_progress'])}'"
                           f"::crm.deal_status, NULL, NULL, NULL, NULL, NULL, NULL)::text {act}\n" for _ in range(k))
        return f"SELECT api.contacts_create('Bench contact', 'bench@example.com', NULL, NULL)::text {act}\n" * k

    port = run.PORT + 2
    print(f"\n{workload}, instructions per request (callgrind, {n} and {2 * n} requests)\n")
    print("| variant | k instructions/request |\n|---|---:|")
    for v in variants:
        installed = vg / "installed"
        if installed.exists():
            shutil.rmtree(installed)
        run.as_pg(["cp", "-a", vg / "pristine", installed])
        opts = f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={vg}"
        run.as_pg([run.BIN / "pg_ctl", "-D", installed, "-w", "-l", vg / "log", "-o", opts, "start"],
                  stdout=subprocess.DEVNULL)
        saved, run.PORT = run.PORT, port
        try:
            install(db, v)
        finally:
            run.PORT = saved
            run.as_pg([run.BIN / "pg_ctl", "-D", installed, "-w", "stop"], stdout=subprocess.DEVNULL)
        keep = os.environ.get("W4EV_KEEP")  # a directory for the profiles (callgrind_annotate)
        per_request = run.callgrind_per_request(
            installed, db, lambda k: "SELECT setseed(0.42)\n" + requests(50, 1) + requests(k, 2), n,
            keep=keep and str(Path(keep) / f"{workload}-{v}"))
        print(f"| {v} | {per_request / 1000:,.0f} |", flush=True)
    shutil.rmtree(vg, ignore_errors=True)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "setup":
        setup()
    elif cmd == "stop":
        stop()
    elif cmd == "sql":
        install(state()["db"], args[0])
    elif cmd == "run":
        bench(args[0], int(args[1]), int(args[2]), int(args[3]), args[4:])
    elif cmd == "instructions":
        instructions(args[0], int(args[1]), args[2:])
    elif cmd == "import":
        imports(int(args[0]), args[1:])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
