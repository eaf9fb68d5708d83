#!/usr/bin/env python3
"""Where a running minicrm server spends its CPU (bench/fixedcost-notes.md,
*The server's own cost*): `perf record --call-graph dwarf` on its pid for a
few seconds while a load runs (say `wrk` with bench/wrk/w2_get.lua), then each
sample is put under the syscall it is in, or under the first frame on its
stack that names a component, and the shares are printed.

    bench/server-profile.py <pid> [seconds, default 6]

Needs perf (`apt-get install linux-perf`). The release binary keeps its
symbols, which is all this needs; the DWARF unwinding uses `.eh_frame`.
"""

import collections
import re
import subprocess
import sys
import tempfile

ALLOC = re.compile(r"^(malloc|free|cfree|_int_malloc|_int_free|_int_realloc|malloc_consolidate|unlink_chunk|"
                   r"tcache_|__libc_malloc|__GI___libc_malloc|__GI___libc_free|__libc_calloc|realloc|"
                   r"checked_request2size|__rustc::__rust_(alloc|dealloc|realloc)|__rdl_)")
# The first frame (from the leaf up) that matches names the component.
COMPONENTS = [
    ("auth (token cache, JWT)", re.compile(r"jsonwebtoken|minicrm::auth|AuthUser|OrgActor")),
    ("db client (tokio-postgres, deadpool, Db::call)",
     re.compile(r"tokio_postgres|postgres_protocol|postgres_types|deadpool|minicrm::db")),
    ("hyper (HTTP/1 parse, encode, dispatch)", re.compile(r"^<?hyper::|httparse|hyper_util")),
    ("routing and middleware (axum, tower, metrics, compression)",
     re.compile(r"axum|tower|minicrm::ops|minicrm::http|prometheus|tracing")),
    ("tokio (scheduler, I/O driver, timers)", re.compile(r"tokio::")),
]


def samples(data):
    out = subprocess.run(["perf", "script", "-i", data, "-F", "ip,sym,dso"], capture_output=True, text=True,
                         check=True).stdout
    stack = []
    for line in out.splitlines() + [""]:
        line = line.strip()
        if not line:
            if stack:
                yield stack
            stack = []
            continue
        m = re.match(r"\S+\s+(.*)\s+\((.*)\)$", line)
        stack.append((m.group(1), m.group(2)) if m else (line, "?"))


def category(stack):
    leaf, dso = stack[0]
    if "kernel" in dso:
        caller = next((f for f, d in stack if "kernel" not in d), "?")
        if "writev" in caller:
            return "kernel: writev (the response)"
        if "send" in caller:
            return "kernel: send (the query to PostgreSQL)"
        if "recv" in caller:
            return "kernel: recv (the request, the answer)"
        if "epoll_wait" in caller or caller == "syscall" or "futex" in caller:
            return "kernel: epoll_wait, futex (workers parking and waking)"
        return f"kernel: other ({caller[:40]})"
    if ALLOC.search(leaf):
        return "malloc and free"
    for frame, _ in stack:
        for name, pattern in COMPONENTS:
            if pattern.search(frame):
                return name
    return "other user space"


def main():
    pid = sys.argv[1]
    secs = sys.argv[2] if len(sys.argv) > 2 else "6"
    with tempfile.NamedTemporaryFile(suffix=".perf.data") as data:
        subprocess.run(["perf", "record", "-q", "-F", "999", "--call-graph", "dwarf,16384", "-p", pid, "-o",
                        data.name, "--", "sleep", secs], check=True, stdout=subprocess.DEVNULL)
        counts = collections.Counter(category(s) for s in samples(data.name))
    total = sum(counts.values()) or 1
    kernel = sum(c for k, c in counts.items() if k.startswith("kernel"))
    for name, c in sorted(counts.items(), key=lambda kv: (not kv[0].startswith("kernel"), -kv[1])):
        print(f"{c / total * 100:6.1f} %  {name}")
    print(f"kernel {kernel / total * 100:.1f} %, user space {100 - kernel / total * 100:.1f} % ({total} samples)")


if __name__ == "__main__":
    main()
