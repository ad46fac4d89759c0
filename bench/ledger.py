#!/usr/bin/env python3
"""Helpers for bench/ledger.sh.

    ledger.py paths SAMPLES FEED OUTDIR      write the request paths of each measured query
                                             (one file per query) from the sampled keys and
                                             the sampled events (action, id) of FEED
    ledger.py explain-sql SQL_DIR PARAMS     print a psql script that EXPLAINs (ANALYZE,
                                             BUFFERS) each audit statement of SQL_DIR
                                             (src/ledger/sql), with the parameters in PARAMS
                                             (key=value lines)
    ledger.py check-plans EXPLAIN_OUT        list sequential scans of tag_events and
                                             tag_bindings; exit 1 if there is any
    ledger.py result WRK_OUT                 the RESULT line of bench/ledger-paths.lua as
                                             "rps p50 p90 p99 max requests non200 empty errors"
                                             (latencies in ms)
    ledger.py report RUN_DIR OUT             put the results into OUT (markdown) between the
                                             ledger-bench markers
"""

import base64
import os
import random
import re
import sys

from benchlib import latency_cells, main, q, read_kv, read_run, result, round_summary, sql_literal, write_section

BEGIN = "<!-- ledger-bench:begin -->"
END = "<!-- ledger-bench:end -->"

# Feed filters: actions spread over the whole history (adopt only happens early on, so
# a random cursor would mostly find nothing after it).
FEED_ACTIONS = ["refuse", "delete", "warn", "repush"]

# (name, endpoint, what) of each measured query, in report order.
QUERIES = [
    ("resolve", "/api/v1/resolve", "resolve at a random instant (all sampled tags)"),
    ("resolve_hot", "/api/v1/resolve", "resolve at a random instant (the 20 hottest tags only)"),
    ("history_asc", "/api/v1/history", "history, first page, oldest first"),
    ("history_desc", "/api/v1/history", "history, first page, newest first"),
    ("history_hot", "/api/v1/history", "history, first page, either order (the 20 hottest tags only)"),
    ("resolve:1", "/api/v1/resolve", "resolve at a random instant (all sampled tags), one connection"),
    ("history_hot:1", "/api/v1/history", "history, first page, either order (the 20 hottest tags only), one connection"),
    ("digest", "/api/v1/digest", "for context: tags of a digest (reverse lookup)"),
    ("events", "/api/v1/events", "for context: event feed filtered by one action, either order, first page or a page at a sampled event"),
]


def paths(samples_path, feed_path, outdir):
    rnd = random.Random(4)
    rows = []
    with open(samples_path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 5:
                rows.append(parts)
    if not rows:
        sys.exit(f"no samples in {samples_path}")
    hot = [r for r in rows if r[0] == "hot"]
    if not hot:
        sys.exit("no hot tags among the samples")
    feed = []
    with open(feed_path) as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2 and parts[0] in FEED_ACTIONS:
                feed.append((parts[0], int(parts[1])))
    if not feed:
        sys.exit(f"no events of {FEED_ACTIONS} in {feed_path}")
    files = {name: [] for name, _, _ in QUERIES if ":" not in name}
    for kind, repo, tag, instant, digest in rows:
        files["resolve"].append("/api/v1/resolve?" + q(repository=repo, tag=tag, at=instant))
        files["history_asc"].append("/api/v1/history?" + q(repository=repo, tag=tag, order="asc"))
        files["history_desc"].append("/api/v1/history?" + q(repository=repo, tag=tag, order="desc"))
        files["digest"].append("/api/v1/digest?" + q(digest=digest))
        if kind == "hot":
            files["resolve_hot"].append("/api/v1/resolve?" + q(repository=repo, tag=tag, at=instant))
            for order in ("asc", "desc"):
                files["history_hot"].append("/api/v1/history?" + q(repository=repo, tag=tag, order=order))
    for _ in range(len(rows)):
        action, event = rnd.choice(feed)
        order = rnd.choice(["asc", "desc"])
        params = {"action": action, "order": order}
        if rnd.random() < 0.5:
            # A page somewhere in the history, starting at a sampled event of that action:
            # the cursor of the id just before it in that order (src/audit/cursor.rs).
            after = event - 1 if order == "asc" else event + 1
            params["cursor"] = base64.urlsafe_b64encode(f"1\ne\n{after}".encode()).decode().rstrip("=")
        files["events"].append("/api/v1/events?" + q(**params))
    os.makedirs(outdir, exist_ok=True)
    for name, lines in files.items():
        with open(os.path.join(outdir, name + ".paths"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print(f"{name}\t{len(lines)}")


def statement(sql_dir, name):
    """The audit statement NAME: SQL_DIR/NAME.sql, the file the code includes and
    tests/integration/audit_queries.rs reads."""
    path = os.path.join(sql_dir, name + ".sql")
    try:
        with open(path) as f:
            return f.read()
    except OSError as e:
        sys.exit(f"{path}: {e}")


def explain_sql(sql_dir, params_path):
    p = read_kv(params_path)
    L = sql_literal
    # (statement, parameter types as sqlx binds them, the arguments, what it shows)
    cases = [
        ("resolve", "text, text, timestamptz", [p["hot_repo"], p["hot_tag"], p["at"]],
         f"the hottest tag at {p['at']}"),
        ("history_asc", "text, text, bigint, bigint", [p["hot_repo"], p["hot_tag"], 0, 101],
         "history, first page, oldest first: the hottest tag"),
        ("history_desc", "text, text, bigint, bigint", [p["hot_repo"], p["hot_tag"], 9223372036854775807, 101],
         "history, first page, newest first: the hottest tag"),
        ("digest_bindings", "text, text, text, bigint", [p["digest"], "", "", 101],
         "tags of a digest: a release digest the hottest tag also pointed at"),
        ("events_desc", "timestamptz, timestamptz, text, text, text[], text, bigint, bigint, bigint",
         [None, None, None, None, "{refuse}", None, None, None, 101],
         "event feed, refusals, newest first, first page"),
        ("events_asc", "timestamptz, timestamptz, text, text, text[], text, bigint, bigint, bigint",
         [None, None, None, None, "{delete}", None, p["mid_id"], None, 101],
         f"event feed, deletes, oldest first, the page after event {p['mid_id']}"),
        ("bindings", "text, text, boolean, bigint", [p["hot_repo"], "", "true", 101],
         "tags of a repository, first page"),
        ("repositories", "text, bigint", ["", 101], "repositories, first page"),
    ]
    out = [
        "\\set ON_ERROR_STOP on",
        "\\pset pager off",
        "-- As the audit API's pool runs them (src/ledger/queries.rs, connect_reader).",
        "SET plan_cache_mode = force_custom_plan;",
        "SET default_transaction_read_only = on;",
    ]
    for name, types, args, what in cases:
        sql = statement(sql_dir, name)
        shown = ", ".join("NULL" if a is None else str(a) for a in args)
        out.append(f"\\echo '=== {name}: {what}'")
        out.append(f"\\echo '    parameters: {shown.replace(chr(39), '')}'")
        out.append(f"PREPARE {name}({types}) AS {sql};")
        out.append(f"EXPLAIN (ANALYZE, BUFFERS) EXECUTE {name}({', '.join(L(a) for a in args)});")
        out.append(f"DEALLOCATE {name};")
    print("\n".join(out))


def check_plans(path):
    with open(path) as f:
        text = f.read()
    current = "?"
    bad = []
    for line in text.splitlines():
        m = re.match(r"=== (\w+):", line)
        if m:
            current = m.group(1)
        if re.search(r"Seq Scan on (tag_events|tag_bindings)\b", line):
            bad.append(f"{current}: {line.strip()}")
    for b in bad:
        print(b)
    return 1 if bad else 0


def fmt_int(s):
    try:
        return f"{int(s):,}"
    except ValueError:
        return s


def events_title(n):
    n = int(n)
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000} million"
    return f"{n:,}"


def report(run_dir, out_path):
    # results: query -> [per round: rps, p50, p90, p99, max, requests, non200, empty, errors]
    meta, results, plans, sizes = read_run(run_dir)
    with open(os.path.join(run_dir, "hot.tsv")) as f:
        hot = [line.rstrip("\n").split("\t") for line in f if line.strip()]

    rows = []
    sums = {}
    for name, endpoint, what in QUERIES:
        rounds = results.get(name)
        if rounds is None:
            continue
        m = round_summary(rounds)
        sums[name] = m
        if m is None:
            rows.append(f"| {what} | `{endpoint}` | FAIL | | | | | | | | | |")
            continue
        rows.append(f"| {what} | `{endpoint}` | {latency_cells(m)}")
    rounds_n = max((len(r) for r in results.values()), default=0)

    names = [n for n, _, _ in QUERIES if n.split(":")[0] in
             ("resolve", "resolve_hot", "history_asc", "history_desc", "history_hot") and n in results]
    if names and all(sums[n] is not None for n in names):
        worst = max(sums[n]["p99"] for n in names)
        worst_round = max(max(sums[n]["p99s"]) for n in names)
        verdict = (f"**Target** (issue #4): resolve and single-tag history under 50 ms at the 99th "
                   f"percentile. Highest median p99 among those {len(names)} rows: **{worst:.2f} ms**, "
                   + ("met" if worst < 50 else "**missed**")
                   + f"; highest p99 of any single round: {worst_round:.2f} ms.")
    else:
        verdict = "**Target** (issue #4): not judged: a run failed."

    scans = meta.get("seq_scans", "")
    plan_verdict = ("No plan reads tag_events or tag_bindings with a sequential scan."
                    if not scans else f"**Sequential scans found**: {scans}")

    size_rows = "\n".join(f"| {name} | {kind} | {size} |" for name, kind, size in sizes)
    hot_line = ", ".join(f"{repo}:{tag} {fmt_int(n)}" for repo, tag, n in hot[:5])

    section = f"""{BEGIN}
## Ledger queries at {events_title(meta.get('events', '0'))} events

Written by `bench/ledger.sh` (the rest of this file comes from `bench/run.sh`, which
keeps this section). It loads a ledger database with synthetic events in set-based SQL
(`bench/ledger-load.sql`), starts tagwarden on it with an auditor token, and drives the
audit API with wrk, one query at a time, picking a random request from sampled keys
for every request (`bench/ledger-paths.lua`). Then it runs `EXPLAIN (ANALYZE, BUFFERS)`
on each audit statement exactly as tagwarden sends it (read from its file in
`src/ledger/sql/`, which the code includes), with `plan_cache_mode = force_custom_plan` like the API's pool) and fails if any
plan scans `tag_events` or `tag_bindings` sequentially.

```sh
bench/ledger.sh                                  # load 10,000,000 events, measure, drop the database
KEEP_DB=1 bench/ledger.sh                        # keep the loaded database; later runs reuse it
LOAD_EVENTS=1000000 ROUNDS=1 DURATION=10 bench/ledger.sh  # smaller and quicker
```

Knobs: `LOAD_EVENTS`, `DURATION` (seconds per query), `CONNECTIONS`, `THREADS`,
`ROUNDS`, `KEEP_DB`/`LEDGER_DB`, `PG_ADMIN_URL`, `CARGO_TARGET_DIR`, `TAGWARDEN_BIN`, `BENCH_OUT`,
`BENCH_TMPDIR`, `KEEP_RUN_DIR`, `BENCH_TIMEOUT` (see the script's header).

### This run

| | |
|---|---|
| date | {meta.get('date', '?')} |
| command | `{meta.get('command', '?')}` |
| tagwarden | commit {meta.get('tagwarden_commit', '?')}; audit pool `admin.max_connections` = {meta.get('audit_pool', '?')} (the default) |
| machine | {meta.get('nproc', '?')} CPUs ({meta.get('cpu', '?')}), {meta.get('mem', '?')} memory, Linux {meta.get('kernel', '?')}; shared with other builds: load average {meta.get('load_start', '?')} at the start, {meta.get('load_end', '?')} at the end |
| Postgres | {meta.get('pg_version', '?')}, on the same machine; {meta.get('pg_settings', '?')} |
| ledger | {fmt_int(meta.get('events', '?'))} events, {fmt_int(meta.get('tags', '?'))} tags (bindings), {fmt_int(meta.get('repositories', '?'))} repositories; events per action: {meta.get('actions', '?')} |
| hottest tags | {hot_line} (events each) |
| load | {meta.get('load', '?')} |
| indexes | {meta.get('indexes', '?')} |
| database size | {meta.get('db_size', '?')} |
| tagwarden start on the loaded ledger | {meta.get('startup', '?')} |
| wrk | {meta.get('wrk', '?')} |
| keys | {meta.get('keys', '?')} |

### Latency

Milliseconds, as wrk measures them: from writing a request on a kept-alive connection
to reading its whole answer (wrk waits for each answer before sending the next request
on that connection, so with 8 connections a request also waits for the CPU the other 7
are using). Requests/s, p50, p90 and p99 are medians over the {rounds_n} rounds, max is the
largest of any round, the counts are totals. "empty" counts 200 answers with no items;
the run fails on any non-200, empty answer or socket error.

| query | endpoint | requests/s | p50 | p90 | p99 | p99 per round | max | requests | non-200 | empty | socket errors |
|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

{verdict}

### Sizes

| relation | kind | size |
|---|---|---:|
{size_rows}

### Plans

{plan_verdict} The hottest tag is `{meta.get('hot_repo', '?')}:{meta.get('hot_tag', '?')}`.

```text
{plans}
```
{END}
"""
    # Above the hand-written notes, where bench/run.sh keeps it.
    write_section(out_path, BEGIN, END, section, before_notes=True)


COMMANDS = {"paths": (paths, 3), "explain-sql": (explain_sql, 2), "check-plans": (check_plans, 1),
            "result": (result, 1), "report": (report, 2)}

if __name__ == "__main__":
    sys.exit(main(COMMANDS, __doc__, sys.argv))
