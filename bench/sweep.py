#!/usr/bin/env python3
"""The list sweep (issue #10, item 3): times every documented filter, sort and
search shape of every list, first page and a deep cursor page, one request at
a time, against a running server, and prints a Markdown table of p50/p99 per
shape with the shapes that miss the target (p50 < 10 ms, p99 < 25 ms) marked.

The shapes come from the server's own /openapi.json: every query parameter of
every GET operation whose answer is a list envelope (`items`), so a new filter
is swept without editing this file. Values come from the parameter's schema
(each enum value, booleans both ways, dates, bounded numbers) and, for ids and
free text, from the data itself (`sample_values`).

    bench/sweep.py --url http://127.0.0.1:18080 --email OWNER --password demo-password \
                   [--label "1 org x 1M deals"] [--repeat 15] [--out bench/sweep-results.md]

bench/run.py appends bench/sweep-results.md to docs/benchmarks.md.
"""

import argparse
import json
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

P50_MS, P99_MS = 10.0, 25.0
ANALYTICS_MS = 50.0  # SPEC §14: every analytics endpoint uncached < 50 ms
SKIP = {"page", "page_size", "cursor"}
# The seed's contacts are "Contact <n>" <contact<n>@customer<n % 997>.example>,
# n = 1..1,000,000. By words (README, Search): "c", "con" and "e" match
# every contact; "5" 111,111 (11 %); "12" and "contact12" 11,111 (1.1 %);
# "customer99" 8,024; "123" 1,111; "contact12345" 11; "a", "zq", "tact12" and
# "nomatchatall" none. The two-word terms: "contact 12345" 11 (a dense and a
# sparse word), "5 customer1" 12,354 (two words of 11 % each, 1.2 % together).
SEARCH_TERMS = ["a", "zq", "con", "tact12", "contact12345", "nomatchatall",
                "c", "e", "5", "12", "123", "contact12", "customer99", "contact 12345", "5 customer1"]


class Api:
    def __init__(self, url, token=None, org=None):
        self.url, self.token, self.org = url.rstrip("/"), token, org

    def call(self, method, path, body=None):
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if self.org:
            headers["X-Organization-Id"] = self.org
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


def timed(api, path, repeat):
    """(p50 ms, p99 ms, status, body) of `repeat` sequential GETs (after one warm-up)."""
    status, body = api.call("GET", path)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        status, body = api.call("GET", path)
        times.append((time.perf_counter() - t0) * 1000)
        if times[-1] > 2000 and len(times) >= 3:
            break  # hopeless shapes: enough samples
    times.sort()
    p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
    return statistics.median(times), p99, status, body


def list_operations(doc):
    """(path, operation) of every GET whose 200 answer is a list envelope."""
    schemas = doc["components"]["schemas"]
    for path, item in doc["paths"].items():
        op = item.get("get")
        if not op:
            continue
        content = op.get("responses", {}).get("200", {}).get("content", {}).get("application/json", {})
        ref = content.get("schema", {}).get("$ref", "")
        schema = schemas.get(ref.rsplit("/", 1)[-1], {})
        if "items" in schema.get("properties", {}) and "next_cursor" in schema.get("properties", {}):
            yield path, op


def analytics_operations(doc):
    """(path, operation) of every analytics GET (the server runs with the cache off)."""
    for path, item in doc["paths"].items():
        op = item.get("get")
        if op and "analytics" in op.get("tags", []):
            yield path, op


def param_schema(doc, param):
    schema = param.get("schema", {})
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    if "items" in schema:
        inner = schema["items"]
        if "$ref" in inner:
            inner = doc["components"]["schemas"][inner["$ref"].rsplit("/", 1)[-1]]
        return inner
    for alt in schema.get("oneOf", []) + schema.get("anyOf", []):
        if alt.get("type") != "null":
            return alt if "$ref" not in alt else doc["components"]["schemas"][alt["$ref"].rsplit("/", 1)[-1]]
    return schema


def sample_values(api, name, schema):
    """Values to sweep for one query parameter."""
    if "enum" in schema:
        return schema["enum"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    if kind == "boolean":
        return ["true", "false"]
    if name == "search":
        return SEARCH_TERMS
    if name == "stage":
        return STAGE_KEYS
    if "amount" in name:
        return ["50", "99000"]
    if kind == "integer":
        return [str(schema.get("minimum", 1)), str(schema.get("maximum", 30))]
    if schema.get("format") == "date" or name.startswith("due_"):
        return [time.strftime("%Y-%m-%d", time.gmtime(time.time() + d * 86400)) for d in (-30, 30)]
    if schema.get("format") == "uuid" or name.endswith("_id"):
        return [v for v in [SAMPLE_IDS.get(name)] if v]
    return []


SAMPLE_IDS = {}
STAGE_KEYS = []


def discover_pipelines(api):
    """The last pipeline (the seed's smaller one) and every stage key there is."""
    _, pipelines = api.call("GET", "/api/v1/pipelines")
    if pipelines and pipelines.get("items"):
        SAMPLE_IDS["pipeline_id"] = pipelines["items"][-1]["id"]
        STAGE_KEYS.extend(s["key"] for p in pipelines["items"] for s in p["stages"])


def discover_ids(api):
    """Ids the data has: an owner, a contact and a deal with records behind them."""
    status, me = api.call("GET", "/api/v1/users/me")
    SAMPLE_IDS["owner_id"] = me["id"]
    _, deals = api.call("GET", "/api/v1/deals?page_size=1")
    if deals and deals["items"]:
        SAMPLE_IDS["deal_id"] = deals["items"][0]["id"]
        SAMPLE_IDS["contact_id"] = deals["items"][0]["contact_id"]
        SAMPLE_IDS["id"] = deals["items"][0]["id"]


def shapes(doc, path, op):
    """(label, query) of every shape of one list: no filter, each filter value alone, each sort."""
    params = [p for p in op.get("parameters", []) if p.get("in") == "query" and p["name"] not in SKIP]
    out = [("(no filter)", {})]
    sorts = [p for p in params if p["name"] in ("order_by", "order")]
    for p in params:
        if p in sorts:
            continue
        for v in sample_values(None, p["name"], param_schema(doc, p)):
            out.append((f"{p['name']}={v}", {p["name"]: v}))
    if sorts:
        by = next((p for p in sorts if p["name"] == "order_by"), None)
        direction = next((p for p in sorts if p["name"] == "order"), None)
        for b in param_schema(doc, by).get("enum", [None]) if by else [None]:
            for d in param_schema(doc, direction).get("enum", [None]) if direction else [None]:
                q = {k: v for k, v in (("order_by", b), ("order", d)) if v}
                out.append((" ".join(f"{k}={v}" for k, v in q.items()), q))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", required=True)
    ap.add_argument("--email", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--label", default="")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--deep", type=int, default=100,
                    help="cursor pages of 100 rows followed before timing the deep page")
    ap.add_argument("--only", action="append", metavar="OPERATION_ID",
                    help="sweep only this operation (repeatable), e.g. contacts_list")
    ap.add_argument("--out")
    args = ap.parse_args()

    anon = Api(args.url)
    status, tokens = anon.call("POST", "/api/v1/auth/login", {"email": args.email, "password": args.password})
    if status != 200:
        sys.exit(f"login: {status} {tokens}")
    status, orgs = Api(args.url, tokens["access_token"]).call("GET", "/api/v1/organizations/me")
    api = Api(args.url, tokens["access_token"], orgs["items"][0]["id"])
    with urllib.request.urlopen(args.url + "/openapi.json") as r:
        doc = json.loads(r.read())
    discover_ids(api)
    discover_pipelines(api)

    rows, misses = [], 0
    for path, op in list_operations(doc):
        if args.only and op["operationId"] not in args.only:
            continue
        concrete = path.replace("{id}", SAMPLE_IDS.get("id", "")).replace("{org_id}", api.org)
        for label, query in shapes(doc, path, op):
            base = concrete + ("?" + urllib.parse.urlencode(query) if query else "")
            sep = "&" if query else "?"
            p50, p99, status, body = timed(api, base + f"{sep}page_size=20", args.repeat)
            deep = "–"
            cursor = body.get("next_cursor") if isinstance(body, dict) else None
            for _ in range(args.deep):
                if not cursor:
                    break
                _, page = api.call("GET", base + f"{sep}page_size=100&cursor={urllib.parse.quote(cursor)}")
                cursor = page.get("next_cursor") if isinstance(page, dict) else None
            if cursor:
                d50, d99, _, _ = timed(api, base + f"{sep}page_size=20&cursor={urllib.parse.quote(cursor)}", args.repeat)
                deep = f"{d50:.1f} / {d99:.1f}"
                miss_deep = d50 >= P50_MS or d99 >= P99_MS
            else:
                miss_deep = False
            miss = status != 200 or p50 >= P50_MS or p99 >= P99_MS or miss_deep
            misses += miss
            total = body.get("total") if isinstance(body, dict) else None
            rows.append(f"| `{op['operationId']}` | `{label}` | {total if total is not None else status} | "
                        f"{p50:.1f} / {p99:.1f} | {deep} | {'**miss**' if miss else 'ok'} |")
            print(rows[-1], file=sys.stderr, flush=True)

    # Analytics, uncached (the server must run with ANALYTICS_CACHE_TTL_SECS=0):
    # every analytics GET, with no parameter and with each parameter's sampled values.
    arows, amisses = [], 0
    for path, op in analytics_operations(doc):
        if args.only and op["operationId"] not in args.only:
            continue
        for label, query in shapes(doc, path, op):
            target = path + ("?" + urllib.parse.urlencode(query) if query else "")
            p50, p99, status, _ = timed(api, target, args.repeat)
            miss = status != 200 or p50 >= ANALYTICS_MS
            amisses += miss
            arows.append(f"| `{op['operationId']}` | `{label}` | {status} | {p50:.1f} / {p99:.1f} | "
                         f"{'**miss**' if miss else 'ok'} |")
            print(arows[-1], file=sys.stderr, flush=True)

    title = f"### {args.label}" if args.label else "### Sweep"
    out = [title, "",
           f"One request at a time, {args.repeat} runs per shape after a warm-up, page_size 20; "
           f"the deep page is the one after {args.deep} cursor pages of 100 rows. Target: p50 < {P50_MS:g} ms and "
           f"p99 < {P99_MS:g} ms. **{len(rows) - misses} of {len(rows)} list shapes meet it.**", "",
           "| operation | shape | total | first page p50 / p99 ms | deep cursor page p50 / p99 ms | target |",
           "|---|---|---|---|---|---|"] + rows + [
           "", f"Analytics, uncached (target p50 < {ANALYTICS_MS:g} ms): "
           f"**{len(arows) - amisses} of {len(arows)} shapes meet it.**", "",
           "| operation | shape | status | p50 / p99 ms | target |", "|---|---|---|---|---|"] + arows + [""]
    text = "\n".join(out)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    print(text)


if __name__ == "__main__":
    main()
