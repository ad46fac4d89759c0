#!/usr/bin/env python3
"""Helpers for bench/pulls-ledger.sh.

    pulls-ledger.py paths SAMPLES OUTDIR         request paths of each measured query, one file
                                                 per query, from the sampled pulls
    pulls-ledger.py result WRK_OUT               the RESULT line of bench/ledger-paths.lua as
                                                 "rps p50 p90 p99 max requests non200 empty errors"
    pulls-ledger.py explain-sql QUERY_SQL PARAMS a psql script that EXPLAINs (ANALYZE, BUFFERS)
                                                 the pull log's query QUERY_SQL per question
    pulls-ledger.py check-plans EXPLAIN_OUT      list sequential scans of pull_log partitions;
                                                 exit 1 if there is any
    pulls-ledger.py batches INSERT_SQL N SIZE    a psql script that PREPAREs the writer's
                                                 INSERT_SQL and EXECUTEs it N times, SIZE rows each
    pulls-ledger.py batch-result PSQL_OUT SIZE   "batches/s rows/s p50 p99 max" from psql's \\timing
    pulls-ledger.py report RUN_DIR OUT           the results into OUT between the markers
"""

import datetime as dt
import hashlib
import os
import random
import re
import sys
import time

from benchlib import latency_cells, main, q, read_kv, read_run, result, round_summary, sql_literal, write_section

BEGIN = "<!-- pulls-ledger-bench:begin -->"
END = "<!-- pulls-ledger-bench:end -->"

# (name, what) in report order; NAME:1 is the same paths on one connection.
QUERIES = [
    ("tag_hot", "who pulled REPO:TAG in a window: the 20 hottest tags, windows of 1 to 24 h"),
    ("tag_cold", "who pulled REPO:TAG in a window: release tags v1.N.0, windows of 2 to 14 days"),
    ("identity", "what an identity pulled in a window of 1 to 24 h"),
    ("digest_last", "the last pull of a digest (limit=1)"),
]


def iso(t):
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def window(at, rnd, lo_h, hi_h):
    """A window of lo_h to hi_h hours holding the instant at (so never empty)."""
    length = rnd.uniform(lo_h, hi_h) * 3600
    start = at - rnd.uniform(0, length)
    return iso(start), iso(start + length)


def paths(samples_path, outdir):
    rnd = random.Random(7)
    files = {name: [] for name, _ in QUERIES}
    with open(samples_path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 6:
                continue
            kind, repo, ref, identity, digest, at = parts
            at = float(at)
            if kind == "hot":
                since, until = window(at, rnd, 1, 24)
                files["tag_hot"].append("/api/v1/pulls?" + q(repository=repo, reference=ref, since=since, until=until))
            elif kind == "cold":
                since, until = window(at, rnd, 48, 336)
                files["tag_cold"].append("/api/v1/pulls?" + q(repository=repo, reference=ref, since=since, until=until))
            elif kind == "any":
                if identity:
                    since, until = window(at, rnd, 1, 24)
                    files["identity"].append("/api/v1/pulls?" + q(identity=identity, since=since, until=until))
                if digest:
                    files["digest_last"].append("/api/v1/pulls?" + q(digest=digest, limit=1))
    os.makedirs(outdir, exist_ok=True)
    for name, lines in files.items():
        if not lines:
            sys.exit(f"no paths for {name}")
        with open(os.path.join(outdir, name + ".paths"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"{name}\t{len(lines)}")


def explain_sql(query_sql, params_path):
    with open(query_sql) as f:
        sql = f.read()
    p = read_kv(params_path)
    # $1 repository, $2 reference, $3 since, $4 until, $5 identity, $6 digest,
    # $7 $8 the cursor, $9 limit + 1: as src/pulls/query.rs binds them.
    types = "text, text, timestamptz, timestamptz, text, text, timestamptz, bigint, bigint"
    cases = [
        ("tag_hot", [p["hot_repo"], p["hot_ref"], p["hot_since"], p["hot_until"], None, None, None, None, 101],
         "who pulled the hottest tag in a 24 h window"),
        ("tag_cold", [p["cold_repo"], p["cold_ref"], p["cold_since"], p["cold_until"], None, None, None, None, 101],
         "who pulled a release tag in a 14-day window"),
        ("identity", [None, None, p["id_since"], p["id_until"], p["identity"], None, None, None, 101],
         "what an identity pulled in a 24 h window"),
        ("digest_last", [None, None, None, None, None, p["digest"], None, None, 2],
         "the last pull of a digest"),
    ]
    out = [
        "\\set ON_ERROR_STOP on",
        "\\pset pager off",
        "-- As the audit API's pool runs it (src/ledger/queries.rs, connect_reader).",
        "SET plan_cache_mode = force_custom_plan;",
        "SET default_transaction_read_only = on;",
        f"PREPARE pulls({types}) AS {sql};",
    ]
    for name, args, what in cases:
        shown = ", ".join("NULL" if a is None else str(a) for a in args)
        out.append(f"\\echo '=== {name}: {what}'")
        out.append(f"\\echo '    parameters: {shown}'")
        out.append(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE pulls({', '.join(sql_literal(a) for a in args)});")
    out.append("DEALLOCATE pulls;")
    print("\n".join(out))


def plan_parts(path):
    """name -> (plan lines, partitions read, subplans removed, sequential scans)."""
    with open(path) as f:
        text = f.read()
    out, current = {}, None
    for line in text.splitlines():
        m = re.match(r"=== (\w+):", line)
        if m:
            current = m.group(1)
            out[current] = {"parts": set(), "removed": 0, "seq": [], "never": 0}
            continue
        if current is None:
            continue
        m = re.search(r" on (pull_log_\d{8})", line)
        if m:
            out[current]["parts"].add(m.group(1))
        if re.search(r" on pull_log_\d{8}.*\(never executed\)", line):
            out[current]["never"] += 1
        m = re.search(r"Subplans Removed: (\d+)", line)
        if m:
            out[current]["removed"] += int(m.group(1))
        if re.search(r"Seq Scan on pull_log", line):
            out[current]["seq"].append(line.strip())
    return out


def check_plans(path):
    bad = [f"{name}: {s}" for name, v in plan_parts(path).items() for s in v["seq"]]
    for b in bad:
        print(b)
    return 1 if bad else 0


def batches(insert_sql, n, size):
    with open(insert_sql) as f:
        sql = f.read().strip().rstrip(";")
    n, size = int(n), int(size)
    rnd = random.Random(11)
    now = time.time()

    def arr(values):
        def one(v):
            if v is None:
                return "NULL"
            return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
        return sql_literal("{" + ",".join(one(v) for v in values) + "}")

    out = ["\\set ON_ERROR_STOP on", "SET jit = off;", f"PREPARE pull_insert AS {sql};", "\\timing on"]
    for b in range(n):
        rows = []
        for k in range(size):
            repo = int(2000 * rnd.random() ** 3)
            repository = f"team{repo % 40:02d}/service-{repo:04d}"
            tag = rnd.choice(["latest", "latest", "main", "stable", f"v1.{int(40 * rnd.random() ** 2)}.0"])
            digest = "sha256:" + hashlib.sha256(f"{repository}:{tag}".encode()).hexdigest()
            cluster = int(5000 * rnd.random() ** 2)
            rows.append((iso(now + b * 0.01 + k * 1e-5), repository, tag, digest,
                         "application/vnd.oci.image.index.v1+json", rnd.choice(["GET", "HEAD"]), 200,
                         f"cluster-{cluster:04d}", "t", f"10.{cluster % 250}.0.{k % 200 + 1}",
                         "containerd/v1.7.24", f"{b:08x}{k:08x}{rnd.getrandbits(64):016x}"))
        cols = list(zip(*rows))
        out.append(f"EXECUTE pull_insert({', '.join(arr(c) for c in cols)});")
    out.append("\\timing off")
    out.append("DEALLOCATE pull_insert;")
    print("\n".join(out))


def batch_result(psql_out, size):
    with open(psql_out) as f:
        times = [float(m.group(1)) for m in re.finditer(r"^Time: ([0-9.]+) ms", f.read(), re.M)]
    # \timing is on for the EXECUTEs only.
    if not times:
        print("FAIL")
        return 1
    s = sorted(times)
    total = sum(times) / 1000
    print(f"{len(times) / total:.1f} {len(times) * int(size) / total:.0f} {s[len(s) // 2]:.2f} "
          f"{s[min(len(s) - 1, int(len(s) * 0.99))]:.2f} {s[-1]:.2f} {len(times)}")
    return 0


def report(run_dir, out_path):
    # results: query -> [per round: rps, p50, p90, p99, max, requests, non200, empty, errors]
    meta, results, plans, sizes = read_run(run_dir)
    parts = plan_parts(os.path.join(run_dir, "explain.txt"))

    rows = []
    rounds_n = 0
    for base, what in QUERIES:
        for key, conns in ((base, meta.get("connections", "?")), (base + ":1", "1")):
            rounds = results.get(key)
            if not rounds:
                continue
            rounds_n = max(rounds_n, len(rounds))
            m = round_summary(rounds)
            rows.append(f"| {what} | {conns} | FAIL | | | | | | | | | |" if m is None
                        else f"| {what} | {conns} | {latency_cells(m)}")
    prune = "\n".join(
        f"| {name} | {len(v['parts'])} of {meta.get('partitions', '?')} | {len(v['parts']) - v['never']} | {v['removed']} | "
        f"{'none' if not v['seq'] else '**' + '; '.join(v['seq']) + '**'} |"
        for name, v in parts.items())
    size_rows = "\n".join(f"| {n} | {k} | {s} |" for n, k, s in sizes)
    scans = meta.get("seq_scans", "")
    plan_verdict = ("No plan reads a pull_log partition with a sequential scan."
                    if not scans else f"**Sequential scans found**: {scans}")

    section = f"""{BEGIN}
## The pull log at {meta.get('title', '?')} records

Written by `bench/pulls-ledger.sh` (kept when `bench/run.sh` rewrites this file, like
every hand-written note). It loads a pull log in set-based SQL
(`bench/pulls-ledger-load.sql`: day partitions by the migration's
`pull_log_ensure_partition`, one `INSERT ... SELECT` into the partitioned parent with its
four indexes dropped, then recreated from their definitions), times the writer's own
statement (`src/pulls/sql/insert.sql`, which `src/pulls/store.rs` includes) in batches
with the rows present, drives `GET /api/v1/pulls` with an auditor token, EXPLAINs the
statement `src/pulls/sql/pulls.sql` (which `src/pulls/query.rs` includes) per question as the API's pool plans it
(`plan_cache_mode = force_custom_plan`), fails if a plan scans a partition
sequentially, and times dropping the oldest day partition.

```sh
bench/pulls-ledger.sh                                 # 10,000,000 pulls over 30 days, measure, drop the database
PULL_ROWS=1000000 ROUNDS=1 DURATION=5 bench/pulls-ledger.sh   # smaller and quicker
```

### This run

| | |
|---|---|
| date | {meta.get('date', '?')} |
| command | `{meta.get('command', '?')}` |
| tagwarden | commit {meta.get('tagwarden_commit', '?')}, binary `{meta.get('binary', '?')}`; audit pool `admin.max_connections` = 4 (the default) |
| machine | {meta.get('nproc', '?')} CPUs ({meta.get('cpu', '?')}), {meta.get('mem', '?')} memory, Linux {meta.get('kernel', '?')}; shared with other builds and tests: load average {meta.get('load_start', '?')} at the start, {meta.get('load_end', '?')} at the end |
| Postgres | {meta.get('pg_version', '?')}, on the same machine, server defaults |
| pull log | {meta.get('shape', '?')} |
| load | {meta.get('load', '?')} |
| database size | {meta.get('db_size', '?')} |
| client | {meta.get('client', '?')} |

### Write cost: the writer's batch insert with the rows present

{meta.get('write', '?')}

### Query latency through `GET /api/v1/pulls`

Milliseconds, as wrk measures them: from writing a request on a kept-alive connection
to reading its whole answer; requests/s, p50, p90 and p99 are medians over {rounds_n}
interleaved rounds of {meta.get('duration', '?')} s per query, max the largest of any
round. Every window holds at least one pull (it is built around a sampled one); the run
fails on any non-200, empty answer or socket error.

| question | connections | requests/s | p50 | p90 | p99 | p99 per round | max | requests | non-200 | empty | socket errors |
|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

### Retention: dropping one day partition

{meta.get('retention', '?')}

### Plans

{plan_verdict} Partitions read per question (pruned at plan time, from the window's
bounds; "executed" counts those not marked "never executed", since an ordered Append
under a LIMIT stops at the first partitions that fill the page):

| question | partitions in the plan | of them executed | subplans removed at run time | sequential scans |
|---|---|---:|---:|---|
{prune}

Keys: {meta.get('keys', '?')}

```text
{plans}
```

### Sizes

| relation | kind | size |
|---|---|---:|
{size_rows}
{END}
"""
    # At the end: among the hand-written notes, which bench/run.sh keeps.
    write_section(out_path, BEGIN, END, section, before_notes=False)


COMMANDS = {"paths": (paths, 2), "result": (result, 1), "explain-sql": (explain_sql, 2),
            "check-plans": (check_plans, 1), "batches": (batches, 3), "batch-result": (batch_result, 2),
            "report": (report, 2)}

if __name__ == "__main__":
    sys.exit(main(COMMANDS, __doc__, sys.argv))
