"""What the Python helpers in bench/ share (standard library only): reading wrk's output
and the run files the shell scripts write, medians, SQL literals, the report's sections
in BENCHMARKS.md, and the command dispatch. Imported by bench.py, ledger.py and
pulls-ledger.py, which sit next to it.
"""

import os
import re
import sys
import urllib.parse

NOTES_MARKER = "<!-- Hand-written notes below this line are kept when bench/run.sh rewrites this file. -->"

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0, "h": 3600000.0}


def to_ms(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"cannot read a duration from {text!r}")
    return float(m.group(1)) * UNITS_MS[m.group(2)]


def parse_wrk(path):
    """`wrk --latency` output as "RPS P50_MS P99_MS ERRORS TOTAL" (non-2xx/3xx answers
    and socket errors are errors)."""
    with open(path) as f:
        text = f.read()
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", text, re.M)
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.M)
    if not (rps and p50 and p99):
        print("FAIL FAIL FAIL 0 0")
        return
    errors = 0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    if m:
        errors += int(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(int(g) for g in m.groups())
    total = re.search(r"^\s*(\d+) requests in", text, re.M)
    total = int(total.group(1)) if total else 0
    print(f"{float(rps.group(1)):.1f} {to_ms(p50.group(1)):.3f} {to_ms(p99.group(1)):.3f} {errors} {total}")


def result(path):
    """The RESULT line of bench/ledger-paths.lua as "rps p50 p90 p99 max requests non200
    empty errors" (latencies in ms); FAIL and exit status 1 without one."""
    with open(path) as f:
        m = re.search(r"^RESULT (.*)$", f.read(), re.M)
    if not m:
        print("FAIL")
        return 1
    r = dict(kv.split("=", 1) for kv in m.group(1).split())
    ms = lambda k: f"{int(r[k]) / 1000:.2f}"
    errors = sum(int(r[k]) for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))
    print(r["rps"], ms("p50_us"), ms("p90_us"), ms("p99_us"), ms("max_us"), r["requests"],
          r["non200"], r["empty"], errors)
    return 0


def read_kv(path):
    """KEY=VALUE lines (the shell scripts' meta files)."""
    out = {}
    with open(path) as f:
        for line in f:
            if "=" in line:
                k, v = line.rstrip("\n").split("=", 1)
                out[k] = v
    return out


def read_rounds(path):
    """results.tsv of bench/lib.sh's measure_paths: query -> the rounds' columns after
    the round number."""
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            out.setdefault(parts[0], []).append(parts[2:])
    return out


def read_run(run_dir):
    """What a database benchmark leaves in its run directory for the report: the meta,
    the rounds, the EXPLAIN output and the sizes (relation, kind, size)."""
    with open(os.path.join(run_dir, "explain.txt")) as f:
        plans = f.read().rstrip()
    with open(os.path.join(run_dir, "sizes.tsv")) as f:
        sizes = [line.rstrip("\n").split("\t") for line in f if line.strip()]
    return (read_kv(os.path.join(run_dir, "meta")), read_rounds(os.path.join(run_dir, "results.tsv")),
            plans, sizes)


def median(values):
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def round_summary(rounds):
    """Medians of rps, p50, p90, p99 over the rounds of one query, the largest max, the
    p99 of each round and the totals of the counts; None if a round failed."""
    if any(r[0] == "FAIL" for r in rounds):
        return None
    col = lambda i: [float(r[i]) for r in rounds]
    tot = lambda i: sum(int(r[i]) for r in rounds)
    return {
        "rps": median(col(0)), "p50": median(col(1)), "p90": median(col(2)),
        "p99": median(col(3)), "p99s": col(3), "max": max(col(4)),
        "n": tot(5), "non200": tot(6), "empty": tot(7), "errors": tot(8),
    }


def latency_cells(m):
    """A round_summary as the cells of the latency tables, from requests/s on."""
    per_round = " / ".join(f"{x:.1f}" for x in m["p99s"])
    return (f"{m['rps']:.0f} | {m['p50']:.2f} | {m['p90']:.2f} | **{m['p99']:.2f}** | {per_round} | "
            f"{m['max']:.1f} | {m['n']:,} | {m['non200']} | {m['empty']} | {m['errors']} |")


def q(**params):
    return urllib.parse.urlencode(params, safe="/:")


def sql_literal(v):
    return "NULL" if v is None else "'" + str(v).replace("'", "''") + "'"


def write_section(out_path, begin, end, section, before_notes):
    """Put SECTION (which starts with BEGIN and ends with END) into OUT_PATH: in place of
    the old one, or else above the hand-written notes (before_notes) or at the end."""
    try:
        with open(out_path) as f:
            old = f.read()
    except OSError:
        old = ""
    if begin in old and end in old:
        a = old.index(begin)
        b = old.index(end) + len(end)
        if b < len(old) and old[b] == "\n":
            b += 1
        doc = old[:a] + section + old[b:]
    elif before_notes and NOTES_MARKER in old:
        a = old.index(NOTES_MARKER)
        doc = old[:a] + section + "\n" + old[a:]
    else:
        doc = old + ("\n" if old and not old.endswith("\n\n") else "") + section
    with open(out_path, "w") as f:
        f.write(doc)


def main(commands, doc, argv):
    """Run the command argv[1] of COMMANDS (name -> (function, argument count or None
    for any)); the usage DOC and exit status 2 on anything else."""
    if len(argv) < 2 or argv[1] not in commands:
        print(doc, file=sys.stderr)
        return 2
    fn, n = commands[argv[1]]
    if n is not None and len(argv) - 2 != n:
        print(doc, file=sys.stderr)
        return 2
    return fn(*argv[2:]) or 0
