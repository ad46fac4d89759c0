#!/usr/bin/env bash
# Benchmark the audit API's ledger queries on a large ledger, and write the results into
# BENCHMARKS.md (the section between <!-- ledger-bench:begin --> and
# <!-- ledger-bench:end -->; nothing else in the file changes).
#
#   bench/ledger.sh
#
# 1. Creates a database, starts tagwarden once so that its migrations create the schema,
#    and loads LOAD_EVENTS synthetic events in set-based SQL (bench/ledger-load.sql:
#    2,000 repositories, hundreds of thousands of tags, release tags, moving tags with
#    long histories, signatures, short-lived branch tags, deletes and refusals over two
#    years). The secondary indexes are dropped for the load and recreated from their
#    own definitions after it; the run fails unless pg_indexes is the same as the
#    migrations left it. Then the bindings and chain heads, and VACUUM ANALYZE.
# 2. Starts tagwarden on the loaded ledger with an auditor token and drives the audit API
#    with wrk (bench/ledger-paths.lua), one query at a time, every request picked at
#    random from keys sampled from the ledger (tags of every kind, the 20 tags with the
#    most events among them, instants over each tag's life): resolve, resolve of the
#    hottest tags, a tag's history (oldest and newest first, and of the hottest tags),
#    and for context the reverse lookup of a digest and the event feed filtered by action
#    (first pages, and pages starting at events sampled from the ledger).
#    Every answer must be a 200 with items. ROUNDS rounds of all of them, interleaved:
#    the report gives the median over the rounds, and each round's p99.
# 3. EXPLAIN (ANALYZE, BUFFERS) of every audit statement exactly as tagwarden sends it
#    (read from its file in src/ledger/sql, which the code includes), as the API's pool plans it, with the hottest tag.
# Prints everything and writes BENCHMARKS.md. Exits 1 if a query failed, an answer was
# not 200 or empty, or a plan reads tag_events or tag_bindings with a sequential scan
# (after writing the report).
#
# Environment (all optional):
#   LOAD_EVENTS       events to load (default 10000000; about 20 minutes on 2 CPUs, and
#                     about 9 GiB of database)
#   DURATION          seconds of wrk per query and round (default 20); the first round
#                     warms each query up for WARMUP seconds first (default 3)
#   ROUNDS            rounds of every measurement (default 3)
#   CONNECTIONS       wrk connections (default 8)
#   THREADS           wrk threads (default 2)
#   KEEP_DB           1 to keep the loaded database (named LEDGER_DB) after the run, and to
#                     reuse it when a previous run loaded it with the same LOAD_EVENTS and
#                     the same bench/ledger-load.sql; drop it by hand when done. Default 0:
#                     a throwaway database, dropped on exit.
#   LEDGER_DB         the kept database's name (default tagwarden_ledger_bench)
#   PG_ADMIN_URL      Postgres to create the database in
#                     (default postgres://postgres@127.0.0.1:5432/postgres)
#   CARGO_TARGET_DIR  where cargo builds (default target/)
#   TAGWARDEN_BIN     use this tagwarden binary instead of building one
#   BENCH_OUT         the report (default BENCHMARKS.md at the top of the repository)
#   BENCH_TMPDIR      where the run directory goes (default $TMPDIR or /tmp)
#   KEEP_RUN_DIR      1 to keep the run directory (logs, wrk output, keys, plans)
#   BENCH_TIMEOUT     limit for the whole run in seconds, build included (default 7200)
#   BUILD_TIMEOUT     limit for the cargo build in seconds (default 3600)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=ledger-bench
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bound_run ledger.sh LOAD_EVENTS DURATION ROUNDS WARMUP CONNECTIONS THREADS KEEP_DB LEDGER_DB TAGWARDEN_BIN BENCH_OUT -- "$@"

LOAD_EVENTS=${LOAD_EVENTS:-10000000}
DURATION=${DURATION:-20}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-8}
THREADS=${THREADS:-2}
KEEP_DB=${KEEP_DB:-0}
LEDGER_DB=${LEDGER_DB:-tagwarden_ledger_bench}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BENCH_OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}
HELPER="$ROOT/bench/ledger.py"
LOADER="$ROOT/bench/ledger-load.sql"
LEDGER_SQL="$ROOT/src/ledger/sql"
# What bench/ledger.py measures, in order; NAME:N runs with N connections (and one
# thread) instead of CONNECTIONS: one connection shows the latency without queueing.
MEASURED="resolve resolve_hot history_asc history_desc history_hot resolve:1 history_hot:1 digest events"

for v in LOAD_EVENTS DURATION ROUNDS CONNECTIONS THREADS; do
    case "${!v}" in '' | *[!0-9]* | 0) echo "$v must be a positive integer" >&2; exit 2 ;; esac
done
case "$WARMUP" in '' | *[!0-9]*) echo "WARMUP must be a whole number of seconds" >&2; exit 2 ;; esac
case "$KEEP_DB" in 0 | 1) ;; *) echo "KEEP_DB must be 0 or 1" >&2; exit 2 ;; esac
case "$LEDGER_DB" in [a-z_]*) ;; *) echo "LEDGER_DB must be a plain lower-case name" >&2; exit 2 ;; esac
case "$LEDGER_DB" in *[!a-z0-9_]*) echo "LEDGER_DB must be a plain lower-case name" >&2; exit 2 ;; esac

# Clean-up: every process this script starts is recorded here and stopped on exit.
RUN=
DB_NAME=
DROP_DB=0
TW_PID=
install_traps db_bench_cleanup

minsec() { local s=$1; printf '%d min %02d s' $((s / 60)) $((s % 60)); }


# The ledger's indexes as pg_indexes shows them: name<TAB>definition.
index_list() {
    db_psql -AtF $'\t' -c "select indexname, indexdef from pg_indexes
        where schemaname = 'public' and tablename in ('tag_events', 'tag_bindings', 'chain_heads')
        order by indexname"
}

LOADER_SUM=
loaded_marker() { echo "ledger-bench events=$LOAD_EVENTS loader=$LOADER_SUM"; }

# Whether LEDGER_DB exists and holds a complete load for these settings.
reusable() {
    local comment
    comment=$(admin_psql -Atc "select shobj_description(oid, 'pg_database') from pg_database
        where datname = '$LEDGER_DB'") || return 1
    case "$comment" in "$(loaded_marker) "*) return 0 ;; *) return 1 ;; esac
}

load() {
    local t0 t1 t2 t3 t4 before after drops
    log "creating the schema: tagwarden's migrations"
    start_tagwarden
    stop_tagwarden
    before=$(index_list)
    [ -n "$before" ] || die "no indexes after the migrations"
    printf '%s\n' "$before" >"$RUN/indexes-before.tsv"
    # Drop the secondary indexes (not those behind constraints) for the load, and keep
    # their definitions to create them again.
    local secondary="from pg_indexes i where schemaname = 'public' and tablename in ('tag_events', 'tag_bindings')
          and not exists (select 1 from pg_constraint c where c.conname = i.indexname) order by indexname"
    {
        echo "SET maintenance_work_mem = '1GB';"
        db_psql -At -c "select indexdef || ';' $secondary"
    } >"$RUN/create-indexes.sql"
    drops=$(db_psql -At -c "select format('DROP INDEX %I.%I;', schemaname, indexname) $secondary")
    [ -n "$drops" ] || die "no secondary indexes to drop: is the schema there?"
    printf '%s\n' "$drops" | db_psql -q
    log "loading $LOAD_EVENTS events"
    t0=$(now)
    db_psql -v events="$LOAD_EVENTS" -v part=events -f "$LOADER" >"$RUN/load-events.log" 2>&1 ||
        { tail -n 20 "$RUN/load-events.log" >&2; die "loading the events failed"; }
    t1=$(now)
    log "events loaded in $(secs "$t0" "$t1")s; creating the indexes"
    db_psql -q -f "$RUN/create-indexes.sql" >"$RUN/create-indexes.log" 2>&1 ||
        { tail -n 20 "$RUN/create-indexes.log" >&2; die "creating the indexes failed"; }
    t2=$(now)
    log "indexes in $(secs "$t1" "$t2")s; bindings and chain heads"
    db_psql -v part=derived -f "$LOADER" >"$RUN/load-derived.log" 2>&1 ||
        { tail -n 20 "$RUN/load-derived.log" >&2; die "loading the bindings failed"; }
    t3=$(now)
    log "bindings in $(secs "$t2" "$t3")s; VACUUM ANALYZE"
    db_psql -qc "VACUUM (ANALYZE) tag_events" -c "VACUUM (ANALYZE) tag_bindings" -c "VACUUM (ANALYZE) chain_heads"
    t4=$(now)
    after=$(index_list)
    printf '%s\n' "$after" >"$RUN/indexes-after.tsv"
    if [ "$before" != "$after" ]; then
        diff "$RUN/indexes-before.tsv" "$RUN/indexes-after.tsv" >&2 || true
        die "the indexes after the load differ from those the migrations created"
    fi
    local total
    total=$(secs "$t0" "$t4")
    LOAD_TEXT="$(minsec "$total") in all: events $(minsec "$(secs "$t0" "$t1")") (one INSERT ... SELECT, secondary indexes dropped), indexes $(minsec "$(secs "$t1" "$t2")") (recreated from their definitions, maintenance_work_mem 1GB), bindings and chain heads $(minsec "$(secs "$t2" "$t3")"), VACUUM ANALYZE $(minsec "$(secs "$t3" "$t4")"); the schema itself by tagwarden's migrations"
    log "loaded in ${total}s"
    INDEX_TEXT="after the load, pg_indexes is exactly what the migrations created ($(wc -l <"$RUN/indexes-after.tsv") indexes on tag_events, tag_bindings and chain_heads)"
    admin_psql -qc "comment on database $DB_NAME is '$(loaded_marker) loaded $(date -u '+%Y-%m-%d %H:%M UTC'): ${LOAD_TEXT//\'/\'\'}'"
}

# Sampled keys: kind, repository, tag, instant, digest. The 20 tags with the most events
# (20 instants each), and random tags of each kind.
sample_keys() {
    db_psql -q -AtF $'\t' >"$RUN/sample.log" 2>&1 <<EOF
CREATE TEMP TABLE hot AS
    SELECT repository, tag, count(*) AS n FROM tag_events WHERE tag IS NOT NULL
    GROUP BY repository, tag ORDER BY count(*) DESC, repository, tag LIMIT 20;
\\o $RUN/hot.tsv
SELECT repository, tag, n FROM hot ORDER BY n DESC, repository, tag;
\\o /dev/null
SELECT setseed(0.42);
\\o $RUN/samples.tsv
WITH keys AS (
    SELECT 'hot' AS kind, b.* FROM tag_bindings b JOIN hot USING (repository, tag), generate_series(1, 20)
    UNION ALL (SELECT 'moving', b.* FROM tag_bindings b
               WHERE class = 'moving' AND tag NOT LIKE 'pr-%' ORDER BY random() LIMIT 1600)
    UNION ALL (SELECT 'release', b.* FROM tag_bindings b WHERE class = 'immutable' ORDER BY random() LIMIT 1000)
    UNION ALL (SELECT 'other', b.* FROM tag_bindings b
               WHERE class = 'exempt' OR tag LIKE 'pr-%' ORDER BY random() LIMIT 1000)
)
SELECT kind, repository, tag,
       to_char((first_bound_at + (random() * 1.1 - 0.05)
                * (greatest(last_changed_at, first_bound_at + interval '1 day') - first_bound_at))
               AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
       digest
FROM keys;
\\o $RUN/feed.tsv
SELECT action, id FROM tag_events TABLESAMPLE SYSTEM (1) REPEATABLE (42)
WHERE action IN ('refuse', 'delete', 'warn', 'repush');
\\o
EOF
    if [ ! -s "$RUN/hot.tsv" ] || [ ! -s "$RUN/samples.tsv" ]; then
        cat "$RUN/sample.log" >&2
        die "sampling keys failed"
    fi
    python3 "$HELPER" paths "$RUN/samples.tsv" "$RUN/feed.tsv" "$RUN/paths" >"$RUN/paths.txt" ||
        die "could not write the request paths"
}

explain() {
    local hot_repo hot_tag digest
    hot_repo=$(head -n 1 "$RUN/hot.tsv" | cut -f1)
    hot_tag=$(head -n 1 "$RUN/hot.tsv" | cut -f2)
    # A release digest that the hottest tag also pointed at, else its current digest.
    digest=$(db_psql -At -v repo="$hot_repo" -v tag="$hot_tag" <<'EOF'
SELECT coalesce(
    (SELECT e.digest FROM tag_events e
     WHERE e.repository = :'repo' AND e.tag = :'tag' AND e.action = 'move'
       AND e.digest IN (SELECT digest FROM tag_bindings WHERE repository = :'repo' AND class = 'immutable')
     ORDER BY e.id LIMIT 1),
    (SELECT digest FROM tag_bindings WHERE repository = :'repo' AND tag = :'tag'));
EOF
)
    {
        echo "hot_repo=$hot_repo"
        echo "hot_tag=$hot_tag"
        echo "at=2025-01-01T00:00:00Z"
        echo "digest=$digest"
        echo "mid_id=$((MAX_ID / 2))"
    } >"$RUN/explain-params"
    meta hot_repo "$hot_repo"
    meta hot_tag "$hot_tag"
    python3 "$HELPER" explain-sql "$LEDGER_SQL" "$RUN/explain-params" >"$RUN/explain.sql"
    db_psql -q -f "$RUN/explain.sql" >"$RUN/explain.txt" 2>&1 ||
        { cat "$RUN/explain.txt" >&2; die "EXPLAIN failed"; }
    cat "$RUN/explain.txt" >&2
    local scans
    if scans=$(python3 "$HELPER" check-plans "$RUN/explain.txt"); then
        log "no plan reads tag_events or tag_bindings sequentially"
        meta seq_scans ""
    else
        log "sequential scans: $scans"
        meta seq_scans "$(printf '%s' "$scans" | tr '\n' ';')"
        FAILED=1
    fi
}

describe() {
    meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
    meta command "$_BENCH_COMMAND"
    meta_machine
    meta audit_pool 4
    meta wrk "$(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }'), $THREADS threads, $CONNECTIONS connections, $ROUNDS rounds of ${DURATION} s per query (the first after a ${WARMUP} s warm-up), 10 s request timeout; the rows marked \"one connection\": 1 thread, 1 connection"
}

describe_db() {
    meta pg_version "$(db_psql -Atc "select 'PostgreSQL ' || current_setting('server_version')")"
    meta pg_settings "$(db_psql -Atc "select string_agg(name || ' ' || current_setting(name), ', ' order by name)
        from pg_settings where name in ('shared_buffers', 'effective_cache_size', 'work_mem', 'random_page_cost',
            'jit', 'max_parallel_workers_per_gather', 'synchronous_commit')") (server defaults; the load sets its own work_mem and maintenance_work_mem per session)"
    meta events "$(db_psql -Atc 'select count(*) from tag_events')"
    meta tags "$(db_psql -Atc 'select count(*) from tag_bindings')"
    meta repositories "$(db_psql -Atc 'select count(*) from chain_heads')"
    meta actions "$(db_psql -Atc "select string_agg(action || ' ' || to_char(n, 'FM999,999,999'), ', ' order by n desc)
        from (select action, count(*) n from tag_events group by action) a")"
    meta db_size "$(db_psql -Atc "select pg_size_pretty(pg_database_size(current_database()))")"
    db_psql -AtF $'\t' >"$RUN/sizes.tsv" <<'EOF'
SELECT c.relname, CASE c.relkind WHEN 'r' THEN 'table (heap)' WHEN 'i' THEN 'index' WHEN 't' THEN 'TOAST' END,
       pg_size_pretty(pg_relation_size(c.oid))
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND (c.relname IN ('tag_events', 'tag_bindings', 'chain_heads')
      OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN
                   ('tag_events'::regclass, 'tag_bindings'::regclass, 'chain_heads'::regclass)))
ORDER BY c.relkind DESC, pg_relation_size(c.oid) DESC;
EOF
}

main() {
    need_tools psql wrk curl python3 timeout
    build
    LOADER_SUM=$(sha256sum "$LOADER" | cut -c1-12)

    RUN=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/tagwarden-ledger-bench.XXXXXX")
    : >"$RUN/meta"
    : >"$RUN/results.tsv"
    describe
    read -r P_PROXY P_ADMIN P_UPSTREAM <<<"$(free_ports 3)"

    admin_psql -Atc 'select 1' >/dev/null 2>&1 ||
        die "PostgreSQL is not reachable at $PG_ADMIN_URL (start it, or set PG_ADMIN_URL)"
    local reuse=0
    if [ "$KEEP_DB" = 1 ]; then
        DB_NAME=$LEDGER_DB
        if reusable; then
            reuse=1
        elif [ -n "$(admin_psql -Atc "select 1 from pg_database where datname = '$LEDGER_DB'")" ]; then
            log "database $LEDGER_DB exists but holds no complete load of $LOAD_EVENTS events by this loader: dropping it"
            admin_psql -qc "drop database $LEDGER_DB with (force)"
        fi
    else
        DB_NAME="tagwarden_ledger_bench_$$"
        DROP_DB=1
    fi
    DB_URL="${PG_ADMIN_URL%/*}/$DB_NAME"
    write_config ledger-bench

    if [ "$reuse" = 1 ]; then
        log "reusing database $DB_NAME"
        INDEX_TEXT="checked against what the migrations created when the database was loaded"
        LOAD_TEXT="reused database $DB_NAME (KEEP_DB=1), loaded earlier: $(admin_psql -Atc \
            "select shobj_description(oid, 'pg_database') from pg_database where datname = '$DB_NAME'" |
            sed 's/^ledger-bench [^ ]* loader=[^ ]* //')"
    else
        admin_psql -qc "create database $DB_NAME" || { DB_NAME=; die "could not create database"; }
        load
    fi
    meta load "$LOAD_TEXT"
    meta indexes "$INDEX_TEXT"

    log "starting tagwarden on the loaded ledger"
    start_tagwarden
    meta startup "/healthz answered ${STARTUP_SECS} s after start (migrations checked)"
    index_list >"$RUN/indexes-now.tsv"
    MAX_ID=$(db_psql -Atc 'select max(id) from tag_events')
    describe_db

    log "sampling keys"
    sample_keys
    meta keys "$(awk -F'\t' '{ n[$1]++ } END { printf "%d tags and instants sampled: %d of the 20 hottest tags (20 instants each), %d moving, %d release, %d signature and pr-N; instants over each tag'"'"'s life (5%% before it, 5%% after its last change); the same tags'"'"' digests for the reverse lookup; the feed: first pages and pages that start at events of that action sampled from the ledger", NR, n["hot"], n["moving"], n["release"], n["other"] }' "$RUN/samples.tsv")"
    check_answers

    local name r
    for r in $(seq 1 "$ROUNDS"); do
        log "round $r of $ROUNDS"
        for name in $MEASURED; do
            measure "$name" "$r"
        done
    done

    log "EXPLAIN (ANALYZE, BUFFERS) of the audit statements"
    explain
    meta load_end "$(cut -d' ' -f1-3 /proc/loadavg)"

    python3 "$HELPER" report "$RUN" "$BENCH_OUT"
    log "wrote $BENCH_OUT"
    printf 'query\tround\treq/s\tp50\tp90\tp99\tmax\trequests\tnon-200\tempty\terrors\n%s\n' \
        "$(cat "$RUN/results.tsv")" | column -t -s $'\t' >&2 || cat "$RUN/results.tsv" >&2
    if [ "$FAILED" != 0 ]; then
        log "FAILED: see above (a query failed, an answer was not 200 or empty, or a plan scans a table)"
        return 1
    fi
}

main "$@"
