#!/usr/bin/env python3
"""W1–W6 of two builds side by side, alternated in one run (issue #10,
"the throughput figures did not regress").

This machine's speed changes from one hour to the next: unchanged SQL has run
1.4 to 5 times slower than in an earlier run on another day. A figure measured
today cannot be compared with one recorded then, but two builds measured
in turn, in the same minutes, meet the same machine. So this script builds
BASE (a commit; default: the last commit before the work of issue #10,
whose figures docs/benchmarks.md held when the issue was filed) in a git
worktree, seeds one organization of BENCH_REGRESS_SIZE deals into one
database per build (each migrated and seeded by its own binary), starts each
build's server (one with the analytics cache, one without, for W5u), and
then, for BENCH_REGRESS_ROUNDS rounds, runs every workload against the two
builds back to back (wrk, 32 connections, BENCH_SECS each; the order of the
two alternates by round), then the same SQL through pgbench for W1–W4. It
reports medians and the ratio of the medians, and writes
bench/regress-results.md and its section of docs/benchmarks.md.

  bench/run regress [BASE]     # via bench/run, which builds this tree
  BENCH_REGRESS_SIZE=50000 BENCH_REGRESS_ROUNDS=3 BENCH_SECS=10 bench/run regress
  bench/run regress --report   # render again from bench/out/regress.json (after editing the notes)

BENCH_BASE_TREE: the worktree to build BASE in (default /tmp/minicrm-base-BASE).
The workload scripts (bench/wrk, bench/pgbench) are this tree's for both
builds; W1–W6's are unchanged since the default BASE. Each build pays for
what it runs in the background (this tree's event announcer, for one).
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402

ROOT = run.ROOT
BASE = "15d804c"
SIZE = int(os.environ.get("BENCH_REGRESS_SIZE", "1000000"))
ROUNDS = int(os.environ.get("BENCH_REGRESS_ROUNDS", "3"))
SECS = int(os.environ.get("BENCH_SECS", "10"))
WORKLOADS = [w for w in run.WORKLOADS if w[0] != "W3i"]  # W3i did not exist at BASE
PG_WORKLOADS = ("W1", "W2", "W3", "W4")


def build(commit):
    """The release binary of `commit`, built in a worktree of its own."""
    tree = Path(os.environ.get("BENCH_BASE_TREE", f"/tmp/minicrm-base-{commit}"))
    if not tree.exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    run.log(f"building {commit} in {tree}")
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=tree, check=True)
    return tree / "target" / "release" / "minicrm"


def main(args):
    if args == ["--report"]:
        return write(**json.loads((run.OUT / "regress.json").read_text()))
    base = args[0] if args else BASE
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                          check=True).stdout.strip()
    binaries = {"base": build(base), "new": ROOT / "target" / "release" / "minicrm"}
    run.OUT.mkdir(exist_ok=True)
    cluster = run.Cluster()
    cluster.start()
    servers = []
    try:
        setups = {}
        for n, (v, binary) in enumerate(binaries.items()):
            db = f"bench_{v}"
            run.psql("postgres", f"CREATE DATABASE {db}")
            run.log(f"{v}: seeding {SIZE} deals into {db}")
            t0 = time.time()
            ids, _ = run.seed_one_org(db, SIZE, binary=binary)
            seed_secs = time.time() - t0
            ids["deals"] = run.psql(db, "SELECT id FROM public.bench_deals ORDER BY n").split()
            cached = run.Server(db, 30, binary, addr=run.extra_addr(10 + 2 * n))
            uncached = run.Server(db, 0, binary, addr=run.extra_addr(11 + 2 * n))
            servers += [cached, uncached]
            token = run.post("/api/v1/auth/login", {"email": ids["email"], "password": "demo-password"},
                             addr=cached.addr)["access_token"]
            lua = run.OUT / f"ids-{v}.lua"
            run.ids_lua(lua, ids, token)
            setups[v] = {"db": db, "ids": ids, "lua": lua, "seed_secs": seed_secs,
                         "addr": {"cached": cached.addr, "uncached": uncached.addr}}
        http = {v: {k: [] for k, _, _ in WORKLOADS} for v in binaries}
        pg = {v: {k: [] for k in PG_WORKLOADS} for v in binaries}
        load0 = os.getloadavg()[0]
        for r in range(ROUNDS):
            order = list(binaries) if r % 2 == 0 else list(binaries)[::-1]
            for key, _, script in WORKLOADS:
                for v in order:
                    s = setups[v]
                    addr = s["addr"]["uncached" if key == "W5u" else "cached"]
                    if r == 0:
                        run.wrk(script, run.WARMUP, addr=addr, ids=s["lua"])
                    http[v][key].append(run.wrk(script, SECS, addr=addr, ids=s["lua"]))
                    run.log(f"round {r + 1}/{ROUNDS} {key} {v}: {http[v][key][-1]['rps']:.0f} req/s")
            for key, _, script in WORKLOADS:
                if key not in PG_WORKLOADS:
                    continue
                for v in order:
                    pg[v][key].append(run.pgbench(setups[v]["db"], script, setups[v]["ids"], SECS))
                    run.log(f"round {r + 1}/{ROUNDS} pgbench {key} {v}: {pg[v][key][-1]['tps']:.0f} TPS")
        load1 = os.getloadavg()[0]
    finally:
        for s in servers:
            s.stop()
        cluster.stop()
    measured = {"base": base, "head": head, "size": SIZE, "rounds": ROUNDS, "secs": SECS,
                "seed_secs": {v: s["seed_secs"] for v, s in setups.items()}, "http": http, "pg": pg,
                "load": [load0, load1], "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (run.OUT / "regress.json").write_text(json.dumps(measured))
    write(**measured)


def write(base, head, size, rounds, secs, seed_secs, http, pg, load, date):
    med = run.median
    lines = [run.REGRESS_BEGIN, f"## Against the code before issue #10 (`bench/run regress`, {size:,} deals)", "",
             f"Run: {date} · base `{base}` (before issue #10), "
             f"new `{head}` · {rounds} rounds; in each round every workload ran {secs} s against one build and "
             "then the other (the order alternating by round), then the same SQL through pgbench. Each build "
             "migrated and seeded its own database in the same cluster. Medians over the rounds; *new / base* "
             "is the ratio of the medians. Load average (1 min) at the start and the end: "
             f"{load[0]:.1f}, {load[1]:.1f}. Seeds: base {seed_secs['base']:.0f} s, "
             f"new {seed_secs['new']:.0f} s.", "",
             "| workload | base req/s | new req/s | new / base | base p50 / p99 ms | new p50 / p99 ms | "
             "rounds, base | rounds, new | errors |", "|---|---:|---:|---:|---|---|---|---|---:|"]
    for key, name, _ in WORKLOADS:
        b, n = http["base"][key], http["new"][key]
        mb, mn = med([x["rps"] for x in b]), med([x["rps"] for x in n])
        lat = {v: f"{run.fmt(med([x['p50'] for x in xs]), 2)} / {run.fmt(med([x['p99'] for x in xs]), 2)}"
               for v, xs in (("base", b), ("new", n))}
        errors = sum(x["errors"] for x in b + n)
        lines.append(f"| {key} {name} | {run.fmt(mb)} | {run.fmt(mn)} | {mn / mb * 100:.0f} % | {lat['base']} | "
                     f"{lat['new']} | " + ", ".join(run.fmt(x["rps"], 0) for x in b) + " | "
                     + ", ".join(run.fmt(x["rps"], 0) for x in n) + f" | {errors} |")
    lines += ["", "The same SQL through pgbench (32 clients, `-M prepared`):", "",
              "| workload | base TPS | new TPS | new / base | rounds, base | rounds, new |",
              "|---|---:|---:|---:|---|---|"]
    for key in PG_WORKLOADS:
        b, n = pg["base"][key], pg["new"][key]
        mb, mn = med([x["tps"] for x in b]), med([x["tps"] for x in n])
        lines.append(f"| {key} | {run.fmt(mb)} | {run.fmt(mn)} | {mn / mb * 100:.0f} % | "
                     + ", ".join(run.fmt(x["tps"], 0) for x in b) + " | "
                     + ", ".join(run.fmt(x["tps"], 0) for x in n) + " |")
    notes = ROOT / "bench" / "regress-notes.md"  # the analysis, written by people
    if notes.exists():
        lines += ["", notes.read_text().rstrip("\n")]
    lines += ["", run.REGRESS_END, ""]
    section = "\n".join(lines)
    (ROOT / "bench" / "regress-results.md").write_text(section)
    target = ROOT / "docs" / "benchmarks.md"
    target.write_text(run.splice(target.read_text(), run.REGRESS_BEGIN, run.REGRESS_END, section))
    run.log(f"wrote bench/regress-results.md and its section of {target}")


if __name__ == "__main__":
    main(sys.argv[1:])
