#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only).

    bench.py free-ports N              print N free TCP ports on 127.0.0.1
    bench.py rss OUT PID...            sample the summed VmRSS (kB) of the PIDs and their
                                       direct children every 50 ms until SIGTERM, then
                                       write the peak to OUT; OUT.ready appears once the
                                       SIGTERM handler is in place
    bench.py status-kb PID FIELD       print one field of /proc/PID/status, in kB
    bench.py cpu-mark FILE PID...      save the CPU time used so far by the PIDs and their
                                       direct children
    bench.py cpu-since FILE PID...     print the CPU time (ms) the PIDs and their
                                       children used since cpu-mark (a PID that was not
                                       there at the mark counts from zero)
    bench.py wrk FILE                  parse `wrk --latency` output:
                                       "RPS P50_MS P99_MS ERRORS TOTAL"
    bench.py ab FILE CSV               parse `ab -e CSV` output, the same way
    bench.py report RESULTS META OUT   print the results table and write OUT (markdown);
                                       whatever OUT held from the NOTES_MARKER line on is
                                       kept (hand-written notes survive a rerun)

RESULTS is a TSV written by run.sh: metric, path, round, value ("FAIL" when the
measurement failed). META is a file of KEY=VALUE lines describing the run.
"""

import json
import os
import re
import signal
import socket
import statistics
import sys
import time

from benchlib import NOTES_MARKER, main, parse_wrk, read_kv as read_meta

PATHS = ["direct", "tagwarden", "nginx", "haproxy"]
PROXIES = ["tagwarden", "nginx", "haproxy"]

# metric id -> (label, unit, higher_is_better)
METRICS = [
    ("dl_1g", "1 GiB blob download", "MiB/s", True),
    ("dl_10m", "10 MiB blob download (median of {dl10_repeat} per round)", "MiB/s", True),
    ("ul_1g_mono", "1 GiB blob upload, monolithic (POST + PUT)", "MiB/s", True),
    ("ul_1g_chunked", "1 GiB blob upload, chunked (POST + 16 x 64 MiB PATCH + PUT)", "MiB/s", True),
    ("manifest_rps", "manifest GET, wrk -t2 -c32 -d{wrk_seconds}s", "req/s", True),
    ("manifest_p50", "manifest GET latency p50", "ms", False),
    ("manifest_p99", "manifest GET latency p99", "ms", False),
    ("head_rps", "manifest HEAD, ab -k -c32 -t{wrk_seconds}", "req/s", True),
    ("head_p50", "manifest HEAD latency p50", "ms", False),
    ("head_p99", "manifest HEAD latency p99", "ms", False),
    ("put_rps", "manifest PUT of new immutable tags, wrk -t2 -c{put_connections} -d{wrk_seconds}s", "req/s", True),
    ("put_p50", "manifest PUT (-c{put_connections}) latency p50", "ms", False),
    ("put_p99", "manifest PUT (-c{put_connections}) latency p99", "ms", False),
    ("put1_rps", "manifest PUT of new immutable tags, one connection, wrk -t1 -c1 -d{wrk_seconds}s", "req/s", True),
    ("put1_p50", "manifest PUT (one connection) latency p50", "ms", False),
    ("put1_p99", "manifest PUT (one connection) latency p99", "ms", False),
]

# Latency rows for the "added latency" table: (p50 metric, p99 metric, label).
ADDED_LATENCY = [
    ("put1_p50", "put1_p99", "manifest PUT of a new immutable tag, one connection"),
    ("put_p50", "put_p99", "manifest PUT of a new immutable tag, {put_connections} connections"),
    ("manifest_p50", "manifest_p99", "manifest GET, 32 connections"),
    ("head_p50", "head_p99", "manifest HEAD, 32 connections"),
]

# CPU time of the path's server processes per operation: metric id -> (label, unit).
# run.sh records the CPU per operation in the unit given.
CPU_METRICS = [
    ("cpu_dl_1g", "1 GiB blob download", "ms per GiB"),
    ("cpu_ul_1g_mono", "1 GiB blob upload, monolithic", "ms per GiB"),
    ("cpu_manifest", "manifest GET", "µs per request"),
    ("cpu_head", "manifest HEAD", "µs per request"),
    ("cpu_put", "manifest PUT of a new immutable tag", "µs per request"),
    ("cpu_put_db", "manifest PUT of a new immutable tag: the ledger database's backends", "µs per request"),
]

# RSS metrics: metric id -> label. Values are kB; the peak over rounds is reported.
RSS_METRICS = [
    ("rss_idle", "idle, after start-up and warm-up"),
    ("rss_dl_1g", "peak during a 1 GiB download"),
    ("rss_ul_1g_mono", "peak during a 1 GiB monolithic upload"),
    ("rss_ul_1g_chunked", "peak during a 1 GiB chunked upload"),
    ("rss_manifest", "peak during the manifest GET load"),
    ("rss_put", "peak during the manifest PUT load"),
    ("hwm_end", "VmHWM (lifetime peak of the main process) at the end"),
]


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    print(" ".join(str(p) for p in ports))


def status_kb(pid, field):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def children(pid):
    out = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out.extend(int(c) for c in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return out


def cpu_ticks(pids):
    """utime + stime in clock ticks, by PID, for the PIDs and their direct children."""
    out = {}
    for pid in pids:
        for p in [pid] + children(pid):
            try:
                with open(f"/proc/{p}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                out[p] = int(fields[11]) + int(fields[12])
            except (OSError, IndexError, ValueError):
                pass
    return out


def cpu_mark(path, pids):
    with open(path, "w") as f:
        json.dump(cpu_ticks([int(p) for p in pids]), f)


def cpu_since(path, pids):
    with open(path) as f:
        mark = {int(k): v for k, v in json.load(f).items()}
    now = cpu_ticks([int(p) for p in pids])
    ticks = sum(v - mark.get(p, 0) for p, v in now.items())
    print(f"{ticks * 1000 / os.sysconf('SC_CLK_TCK'):.0f}")


def rss(out, pids):
    pids = [int(p) for p in pids]
    peak = 0
    stop = False

    def on_term(signum, frame):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    open(out + ".ready", "w").close()
    deadline = time.monotonic() + 3600  # never outlive a run
    while not stop and time.monotonic() < deadline:
        total = 0
        for pid in pids:
            total += status_kb(pid, "VmRSS")
            for child in children(pid):
                total += status_kb(child, "VmRSS")
        peak = max(peak, total)
        time.sleep(0.05)
    with open(out, "w") as f:
        f.write(f"{peak}\n")


def parse_ab(path, csv_path):
    """ab's summary for the rate and errors, its -e CSV for fractional-ms percentiles."""
    try:
        with open(path) as f:
            text = f.read()
        pct = {}
        with open(csv_path) as f:
            for line in f:
                k, _, v = line.strip().partition(",")
                if k.isdigit():
                    pct[int(k)] = float(v)
    except OSError:
        print("FAIL FAIL FAIL 0 0")
        return
    rps = re.search(r"^Requests per second:\s+([0-9.]+)", text, re.M)
    total = re.search(r"^Complete requests:\s+(\d+)", text, re.M)
    if not (rps and total and 50 in pct and 99 in pct):
        print("FAIL FAIL FAIL 0 0")
        return
    errors = 0
    for pattern in (r"^Failed requests:\s+(\d+)", r"^Non-2xx responses:\s+(\d+)"):
        m = re.search(pattern, text, re.M)
        if m:
            errors += int(m.group(1))
    print(f"{float(rps.group(1)):.1f} {pct[50]:.3f} {pct[99]:.3f} {errors} {total.group(1)}")


def read_results(path):
    data = {}
    with open(path) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            metric, p, rnd, value = line.split("\t")
            data.setdefault((metric, p), []).append(value)
    return data


def numbers(values):
    return [float(v) for v in values if v != "FAIL"]


def fmt(x, unit):
    if x is None:
        return "n/a"
    if unit == "ms":
        return f"{x:.2f}"
    if x >= 100:
        return f"{x:.0f}"
    return f"{x:.1f}"


def fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}×"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def md_table(header, rows):
    out = ["| " + " | ".join(header) + " |"]
    out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
    for r in rows:
        out.append("| " + " | ".join(r) + " |")
    return "\n".join(out)


def report(results_path, meta_path, out_path):
    data = read_results(results_path)
    meta = read_meta(meta_path)
    fmt_args = {
        "wrk_seconds": meta.get("wrk_seconds", "?"),
        "dl10_repeat": meta.get("dl10_repeat", "?"),
        "put_connections": meta.get("put_connections", "?"),
    }
    global METRICS
    METRICS = [
        (metric, label.format(**fmt_args), unit, higher)
        for metric, label, unit, higher in METRICS
    ]

    med = {}
    fails = {}
    spread = {}
    for metric, _, unit, _ in METRICS:
        for p in PATHS:
            vals = data.get((metric, p), [])
            nums = numbers(vals)
            fails[(metric, p)] = len(vals) - len(nums)
            med[(metric, p)] = statistics.median(nums) if nums else None
            spread[(metric, p)] = (min(nums), max(nums)) if nums else None

    def cell(metric, p, unit):
        m = med[(metric, p)]
        s = fmt(m, unit)
        if fails[(metric, p)]:
            s += f" ({fails[(metric, p)]} failed)"
        return s

    # Medians.
    rows = []
    for metric, label, unit, higher in METRICS:
        if not any(data.get((metric, p)) for p in PATHS):
            continue
        rows.append(
            [f"{label} ({unit}, {'higher' if higher else 'lower'} is better)"]
            + [cell(metric, p, unit) for p in PATHS]
        )
    medians_table = md_table(["measurement (median of rounds)"] + PATHS, rows)

    # Ratios: each path to direct; tagwarden to each peer; each proxy to its best peer.
    rows = []
    warnings = []
    for metric, label, unit, higher in METRICS:
        if not any(data.get((metric, p)) for p in PATHS):
            continue
        d = med[(metric, "direct")]
        row = [label]
        for p in PROXIES:
            row.append(fmt_ratio(ratio(med[(metric, p)], d)))
        tw = med[(metric, "tagwarden")]
        row.append(fmt_ratio(ratio(tw, med[(metric, "nginx")])))
        row.append(fmt_ratio(ratio(tw, med[(metric, "haproxy")])))
        peers = [med[(metric, p)] for p in ("nginx", "haproxy") if med[(metric, p)] is not None]
        best = (max(peers) if higher else min(peers)) if peers else None
        row.append(fmt_ratio(ratio(tw, best)))
        rows.append(row)
        # Plain-language flags.
        r_direct = ratio(tw, d)
        r_best = ratio(tw, best)
        if higher:
            if r_direct is not None and r_direct < 0.8:
                warnings.append(
                    f"tagwarden {label}: {fmt(tw, unit)} {unit} is {r_direct:.2f}× direct "
                    f"({fmt(d, unit)} {unit}), below 0.8×."
                )
            if r_best is not None and r_best < 0.8:
                warnings.append(
                    f"tagwarden {label}: {r_best:.2f}× the best of nginx/haproxy "
                    f"({fmt(best, unit)} {unit})."
                )
        else:
            if r_best is not None and r_best > 1.25:
                warnings.append(
                    f"tagwarden {label}: {fmt(tw, unit)} ms is {r_best:.2f}× the best of "
                    f"nginx/haproxy ({fmt(best, unit)} ms)."
                )
        for p in PATHS:
            if fails[(metric, p)]:
                warnings.append(f"{p} {label}: {fails[(metric, p)]} of {len(data[(metric, p)])} runs failed.")
    ratios_table = md_table(
        [
            "measurement",
            "tagwarden ÷ direct",
            "nginx ÷ direct",
            "haproxy ÷ direct",
            "tagwarden ÷ nginx",
            "tagwarden ÷ haproxy",
            "tagwarden ÷ best peer",
        ],
        rows,
    )

    # Spread, so the noise is visible.
    rows = []
    for metric, label, unit, _ in METRICS:
        if not any(data.get((metric, p)) for p in PATHS):
            continue
        r = [f"{label} ({unit})"]
        for p in PATHS:
            vals = data.get((metric, p), [])
            r.append(" / ".join("FAIL" if v == "FAIL" else fmt(float(v), unit) for v in vals) or "n/a")
        rows.append(r)
    raw_table = md_table(["measurement, every round in order"] + PATHS, rows)

    # RSS.
    rows = []
    for metric, label in RSS_METRICS:
        if not any(data.get((metric, p)) for p in PROXIES):
            continue
        r = [label]
        for p in PROXIES:
            nums = numbers(data.get((metric, p), []))
            r.append(f"{max(nums) / 1024:.1f}" if nums else "n/a")
        rows.append(r)
    rss_table = md_table(["resident memory (MiB, max over rounds)"] + PROXIES, rows)

    rows = []
    for metric, label, unit in CPU_METRICS:
        if not any(data.get((metric, p)) for p in PATHS):
            continue
        r = [f"{label} ({unit})"]
        for p in PATHS:
            nums = numbers(data.get((metric, p), []))
            r.append(f"{statistics.median(nums):.0f}" if nums else "n/a")
        rows.append(r)
    cpu_table = "(not measured in this run)" if not rows else md_table(
        ["CPU time per operation (median of rounds)", "direct (the registry)", "tagwarden", "nginx", "haproxy"], rows
    )

    warn_text = "\n".join(f"- {w}" for w in warnings) if warnings else "- none"

    # Added latency: tagwarden's (and the peers') latency minus direct's.
    def per_round_diff(metric, p):
        a, b = data.get((metric, p), []), data.get((metric, "direct"), [])
        diffs = [float(x) - float(y) for x, y in zip(a, b) if "FAIL" not in (x, y)]
        return statistics.median(diffs) if diffs else None

    def diff(metric, p):
        a, b = med[(metric, p)], med[(metric, "direct")]
        return None if a is None or b is None else a - b

    def fmt_ms(x):
        return "n/a" if x is None else f"{x:+.2f}"

    rows = []
    for p50, p99, label in ADDED_LATENCY:
        if med[(p50, "direct")] is None and med[(p50, "tagwarden")] is None:
            continue
        rows.append(
            [
                label.format(**fmt_args),
                fmt(med[(p50, "direct")], "ms"),
                fmt(med[(p50, "tagwarden")], "ms"),
                fmt_ms(diff(p50, "tagwarden")),
                fmt_ms(per_round_diff(p50, "tagwarden")),
                fmt_ms(diff(p50, "nginx")),
                fmt_ms(diff(p50, "haproxy")),
                fmt_ms(diff(p99, "tagwarden")),
            ]
        )
    added_table = "(no latency measured in this run)" if not rows else md_table(
        [
            "latency added (ms)",
            "direct p50",
            "tagwarden p50",
            "tagwarden − direct, p50",
            "same, median of per-round differences",
            "nginx − direct, p50",
            "haproxy − direct, p50",
            "tagwarden − direct, p99",
        ],
        rows,
    )

    # The targets, each stated plainly as met, missed or not measured.
    def tw_ratio(metric):
        return ratio(med[(metric, "tagwarden")], med[(metric, "direct")])

    def verdict(ok):
        return "not measured" if ok is None else ("**met**" if ok else "**missed**")

    def at_least(metric, bar):
        r = tw_ratio(metric)
        return (f"{r:.2f}× direct" if r is not None else "n/a"), (None if r is None else r >= bar)

    rows = []
    text, ok = at_least("dl_1g", 0.8)
    rows.append(["1 GiB blob download ≥ 0.8× direct", text, verdict(ok)])
    tw, ng, hp = (med[("dl_1g", p)] for p in PROXIES)
    ok = None if None in (tw, ng, hp) else (tw > ng and tw > hp)
    rows.append(
        [
            "1 GiB blob download ahead of nginx and HAProxy",
            f"{fmt_ratio(ratio(tw, ng))} nginx, {fmt_ratio(ratio(tw, hp))} HAProxy",
            verdict(ok),
        ]
    )
    text, ok = at_least("manifest_rps", 0.9)
    rows.append(["manifest GET rate ≥ 0.9× direct", text, verdict(ok)])
    text, ok = at_least("head_rps", 0.9)
    rows.append(["manifest HEAD rate ≥ 0.9× direct (the GET bar, applied to HEAD too)", text, verdict(ok)])
    text, ok = at_least("put_rps", 0.85)
    rows.append(
        [f"manifest PUT rate (new immutable tags, ledger write, {fmt_args['put_connections']} connections) ≥ 0.85× direct", text, verdict(ok)]
    )
    d = diff("put1_p50", "tagwarden")
    rows.append(
        [
            "added latency of an immutable-tag PUT ≤ 2 ms at p50 (one connection)",
            fmt_ms(d) + " ms" if d is not None else "n/a",
            verdict(None if d is None else d <= 2.0),
        ]
    )
    streaming = [
        v
        for metric in ("rss_dl_1g", "rss_ul_1g_mono", "rss_ul_1g_chunked")
        for v in numbers(data.get((metric, "tagwarden"), []))
    ]
    peak = max(streaming) / 1024 if streaming else None
    rows.append(
        [
            "peak RSS < 64 MiB while streaming 1 GiB both ways",
            f"{peak:.1f} MiB" if peak is not None else "n/a",
            verdict(None if peak is None else peak < 64),
        ]
    )
    targets_table = md_table(["target", "this run", "status"], rows)

    console = "\n\n".join(
        [
            "Medians:\n" + medians_table,
            "Ratios (of medians; for latency rows a ratio above 1 means slower):\n" + ratios_table,
            "Added latency:\n" + added_table,
            "Every round:\n" + raw_table,
            "Memory:\n" + rss_table,
            "CPU per operation:\n" + cpu_table,
            "Targets:\n" + targets_table,
            "Flags:\n" + warn_text,
        ]
    )
    print(console)

    m = meta.get
    doc = f"""# Benchmarks

Numbers below come from `bench/run.sh`, which starts a registry (Docker distribution,
Debian's `docker-registry`) and three proxies in front of it on loopback, and measures
the same operations through each of the four paths, **interleaved** round by round
(the order of the paths rotates every round). The machine is shared with other
builds, so absolute numbers are noisy: read the **medians** and the **ratios**, not
the absolute values, and rerun before drawing conclusions from small differences.

## How to run

```sh
bench/run.sh                 # 5 rounds
ROUNDS=3 bench/run.sh        # fewer rounds
```

The script needs `docker-registry`, `nginx`, `haproxy`, `wrk`, `ab`, `curl`, `psql` and
`python3` (`scripts/provision.sh --with-bench` installs what is missing). wrk drives every
load but the manifest HEADs, which ab drives: wrk 4.1 waits for the body that a HEAD
answer's Content-Length announces, and hangs. The script builds
tagwarden with `cargo build --release --locked`, runs everything under a temporary
directory, and removes all of it (processes, files, the ledger database) on exit. Every
step has a time limit. It needs a PostgreSQL server at `127.0.0.1:5432` that accepts
`postgres` without a password (override with `PG_ADMIN_URL`). Other knobs:
`CARGO_TARGET_DIR`, `TAGWARDEN_BIN` (skip the build), `CHUNKED=0` (skip the chunked
upload), `MEASURE` (run only some measurements, e.g. `MEASURE="dl_1g manifest_put_1"`),
`WRK_SECONDS`, `PUT_CONNECTIONS`, `PROFILE=1` (profile tagwarden relaying the 1 GiB blob
with perf first), `BENCH_OUT` (where to write this file), `BENCH_TMPDIR`, `BENCH_TIMEOUT`.

## This run

| | |
|---|---|
| date | {m('date', '?')} |
| command | `{m('command', '?')}` |
| rounds | {m('rounds', '?')} |
| machine | {m('nproc', '?')} CPUs ({m('cpu', '?')}), {m('mem', '?')} RAM, kernel {m('kernel', '?')} |
| load average at start / end | {m('load_start', '?')} / {m('load_end', '?')} |
| tagwarden | commit {m('tagwarden_commit', '?')}, release build |
| registry | {m('registry_version', '?')} |
| nginx | {m('nginx_version', '?')} |
| haproxy | {m('haproxy_version', '?')} |
| curl | {m('curl_version', '?')} |
| wrk | {m('wrk_version', '?')} |
| ab | {m('ab_version', '?')} |
| manifest PUTs tagwarden answered / bindings in its ledger for `bench/put` | {m('tagwarden_puts', 'n/a')} / {m('ledger_bindings', 'n/a')} |
| wall time | {m('elapsed', '?')} |

## Setup

- **direct**: the registry itself, filesystem storage in a temporary directory,
  `delete.enabled: true`, `log.level: error`, in-memory blob descriptor cache.
- **tagwarden**: `tagwarden serve --listen … --admin-listen … --upstream … --database-url …`
  with every other setting at its default (log level `info`, which logs no line for
  blob or manifest GETs), and a fresh ledger database.
- **nginx**: the registry recipe (`client_max_body_size 0`, `chunked_transfer_encoding on`,
  `proxy_request_buffering off`, `proxy_buffering off`, `proxy_http_version 1.1`,
  upstream `keepalive 32`, `proxy_read_timeout 900`, `Host $http_host`,
  `X-Forwarded-Proto $scheme`), `worker_processes auto`, access log off (tagwarden and
  HAProxy log nothing per request either).
- **haproxy**: `mode http`, `option http-keep-alive`, `X-Forwarded-For`/`-Proto` set,
  connect 5 s, client/server 900 s timeouts, default thread count.

Data is seeded straight into the registry: a 1 GiB and a 10 MiB blob of random bytes,
and an OCI image manifest (a small config blob, the 10 MiB blob as its layer) tagged
`bench/app:latest`.

- Downloads: `curl -s -o /dev/null -w '%{{speed_download}}'` of the blob (the HTTP status
  and byte count are checked). The 10 MiB download is repeated {m('dl10_repeat', '?')} times per path
  and round, and the median of those is the round's value.
- Monolithic upload: `POST /v2/bench/upload/blobs/uploads/`, then
  `curl -T blob -X PUT "$Location&digest=…"`; throughput is curl's `speed_upload` for the
  PUT. `Expect: 100-continue` is turned off, as Docker and containerd clients do not send it.
- Chunked upload: `POST`, then `PATCH` with `Content-Range` in 64 MiB chunks, then the
  closing `PUT ?digest=`; throughput is 1 GiB over the wall time from the `POST` to the
  end of the `PUT`. Every `Location` is followed as returned, and checked to point back
  at the path under test.
- The same 1 GiB blob is uploaded every time; the registry still receives, stores and
  hashes every byte, then finds the blob already present.
- Manifest GETs: `wrk -t2 -c32 -d{m('wrk_seconds', '?')}s --timeout 30s --latency` with
  `Accept: application/vnd.oci.image.manifest.v1+json, …`. The load generators share the
  2 CPUs with the server under test, so these rows compare paths only relative to each
  other.
- Manifest HEADs: `ab -k -i -c32 -t{m('wrk_seconds', '?')}` with the same `Accept` (wrk 4.1
  waits for the body a HEAD answer announces and hangs; ab knows HEAD). ab speaks
  HTTP/1.0 with keep-alive and runs one thread; its percentiles come from `ab -e`.
- Manifest PUTs: `wrk -s bench/put-tags.lua` PUTs a **new immutable tag** per request
  (`RUN.THREAD.N`, a semantic version, immutable under the default policy) into
  `bench/put`, each with its own small OCI manifest (the same config blob and a 1 KiB
  layer, seeded beforehand; an annotation naming the tag makes every digest distinct).
  Through tagwarden each PUT is a ledger transaction: advisory locks on the tag and the
  digest, the binding read, a `HEAD` to the upstream for a tag the ledger has never seen,
  the upstream PUT, the event (hash-chained) and the binding, and the commit. It is run
  with {m('put_connections', '?')} connections (`-t2`) for the rate and with one connection
  (`-t1 -c1`) for the added latency, which is tagwarden's p50 minus direct's p50.
  Any non-2xx answer, or an answer slower than wrk's `--timeout 30s`, fails the run. "manifest PUTs tagwarden answered / bindings in its
  ledger" above is a check that every accepted PUT was bound (the ledger may hold a few
  more: requests in flight when wrk stops are still completed).
- Memory: the summed `VmRSS` of the proxy's processes (nginx: master and workers),
  sampled every 50 ms during that proxy's own runs.

## Results

Medians of {m('rounds', '?')} interleaved rounds.

{medians_table}

### Ratios

Ratios of the medians. For throughput and requests/s, higher is better; for the latency
rows a ratio above 1 means slower. "Best peer" is the better of nginx and HAProxy.

{ratios_table}

### Added latency

Latency of the same operation through a proxy minus direct, in ms (medians over rounds,
and the median of the per-round differences, which is less sensitive to the machine's
load drifting between rounds).

{added_table}

### Memory

{rss_table}

### CPU time per operation

The CPU time (user + system) of the processes serving each path, per operation: for
direct, the registry's; for a proxy, the proxy's own (nginx: master and workers), on
top of the registry's, which does the same work behind every path (plus, behind
tagwarden, the probe of every new immutable tag). For tagwarden's manifest PUTs, the CPU
of its ledger database's backends is shown on its own row. On this shared 2-CPU machine
these figures move far less with the load than the rates do, and since the machine is
CPU-bound under load, a proxy's CPU per operation is what it takes from the registry
and the client.

{cpu_table}

### Targets

{targets_table}

### Flags

{warn_text}

### Every round

{raw_table}

## Not measured here

- Ledger query benchmarks (resolve, tag history, lookups by digest) against a populated
  ledger are not part of this harness: `bench/ledger.sh` measures them, in its own
  section of this file.

"""
    notes = NOTES_MARKER + "\n"
    try:
        with open(out_path) as f:
            old = f.read()
        if NOTES_MARKER in old:
            notes = old[old.index(NOTES_MARKER):]
        # bench/ledger.sh's section, above the notes, stays as it is.
        begin, end = "<!-- ledger-bench:begin -->", "<!-- ledger-bench:end -->"
        in_notes = NOTES_MARKER in old and old.find(begin) > old.index(NOTES_MARKER)
        if begin in old and end in old and not in_notes:
            doc += old[old.index(begin):old.index(end) + len(end)] + "\n\n"
    except OSError:
        pass
    with open(out_path, "w") as f:
        f.write(doc + notes)


COMMANDS = {
    "free-ports": (lambda n: free_ports(int(n)), 1),
    "cpu-mark": (lambda path, *pids: cpu_mark(path, pids), None),
    "cpu-since": (lambda path, *pids: cpu_since(path, pids), None),
    "rss": (lambda out, *pids: rss(out, pids), None),
    "status-kb": (lambda pid, field: print(status_kb(pid, field)), 2),
    "wrk": (parse_wrk, 1),
    "ab": (parse_ab, 2),
    "report": (report, 3),
}

if __name__ == "__main__":
    sys.exit(main(COMMANDS, __doc__, sys.argv))
