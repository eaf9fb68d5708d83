"""Where the events cost a write, piece by piece (docs/benchmarks.md, "Reading the cost of the event triggers"):
alternated pgbench rounds of AB_SCRIPT (w3_create_contact) with AB_VARIANTS of ann (as deployed: the
announcer's round beside the writers), noann, noindex (no events_by_tx), nofk, noevents.
  BENCH_PG_PORT=55480 AB_ROUNDS=3 AB_SECS=15 AB_DEALS=50000 python3 bench/events_ab.py   # after cargo build --release
"""
import os, subprocess, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run as R

secs = int(os.environ.get("AB_SECS", "15"))
rounds = int(os.environ.get("AB_ROUNDS", "2"))
script = os.environ.get("AB_SCRIPT", "w3_create_contact")
variants = os.environ.get("AB_VARIANTS", "ann,noann,noindex,noevents").split(",")
cluster = R.Cluster()
try:
    cluster.start()
    db = "ab"
    R.psql("postgres", f"CREATE DATABASE {db}")
    ids, _ = R.seed_one_org(db, int(os.environ.get("AB_DEALS", "50000")))
    res = {v: [] for v in variants}
    R.pgbench(db, script, ids, secs=5)
    for n in range(rounds):
        for v in (variants if n % 2 == 0 else variants[::-1]):
            R.psql(db, R.EVENT_TRIGGERS_SQL.format(verb="DISABLE" if v == "noevents" else "ENABLE"), tuples=False)
            if v == "nofk":
                R.psql(db, "ALTER TABLE crm.events DROP CONSTRAINT IF EXISTS events_organization_id_not_found, "
                           "DROP CONSTRAINT IF EXISTS events_actor_id_not_found", tuples=False)
            elif v != "noevents":
                R.psql(db, "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_constraint WHERE conname = 'events_actor_id_not_found') THEN "
                           "ALTER TABLE crm.events ADD CONSTRAINT events_organization_id_not_found FOREIGN KEY (organization_id) "
                           "REFERENCES crm.organizations (id) ON DELETE CASCADE, ADD CONSTRAINT events_actor_id_not_found "
                           "FOREIGN KEY (actor_id) REFERENCES crm.users (id) ON DELETE SET NULL; END IF; END $$", tuples=False)
            if v == "noindex":
                R.psql(db, "DROP INDEX IF EXISTS crm.events_by_tx", tuples=False)
            else:
                R.psql(db, "CREATE INDEX IF NOT EXISTS events_by_tx ON crm.events (tx) WHERE seq > 0", tuples=False)
            ann = None
            if v == "ann":
                ann = R.start_announcer(db, secs)
            r = R.pgbench(db, script, ids, secs=secs, cluster=cluster)
            if ann:
                out, err = ann.communicate()
                r["ann"] = out.strip().splitlines()[-8:] if ann.returncode == 0 else err
            res[v].append(r)
            print(v, n, {k: r[k] for k in ("tps", "avg", "cpu_us")}, flush=True)
    for v in variants:
        print(v, "median tps", R.median([r["tps"] for r in res[v]]), "cpu", R.median([r["cpu_us"] for r in res[v]]))
    print([r.get("ann") for r in res.get("ann", [])][:1])
finally:
    cluster.stop()
