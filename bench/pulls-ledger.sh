#!/usr/bin/env bash
# Benchmark the pull log at 10 million records: load cost, the writer's batch insert with
# the rows present, query latency through GET /api/v1/pulls, and the cost of retention;
# write the results into BENCHMARKS.md (between <!-- pulls-ledger-bench:begin --> and
# <!-- pulls-ledger-bench:end -->, among the hand-written notes that bench/run.sh keeps).
#
#   bench/pulls-ledger.sh
#
# 1. Creates a database, lets tagwarden's migrations create the schema, and loads
#    PULL_ROWS pulls over DAYS day partitions (bench/pulls-ledger-load.sql; the
#    partitions by the migration's pull_log_ensure_partition). The four indexes of
#    pull_log are dropped for the load and recreated from their definitions; the run
#    fails unless pg_indexes then is what the migration left. VACUUM ANALYZE.
# 2. Starts tagwarden with an auditor token and drives GET /api/v1/pulls with wrk
#    (bench/ledger-paths.lua) for each question, with CONNECTIONS connections and
#    with one: who pulled REPO:TAG in a window (the 20 hottest tags; release tags), what
#    an identity pulled in a window, the last pull of a digest. Keys are sampled from the
#    loaded rows, windows built around sampled pulls. ROUNDS interleaved rounds.
# 3. EXPLAIN (ANALYZE, BUFFERS) of the pull log's statement (src/pulls/sql/pulls.sql,
#    which src/pulls/query.rs includes)
#    per question, as the API's pool plans it; fails if a plan scans a partition
#    sequentially.
# 4. Write cost: WRITE_BATCHES executions of the writer's statement
#    (src/pulls/sql/insert.sql, the file src/pulls/store.rs includes) from psql, a
#    prepared statement of BATCH rows each, one transaction per batch like the writer.
# 5. Retention: drops the oldest RETENTION_DROPS day partitions one at a time with the
#    migration's pull_log_drop_before, timed.
# Exits 1 after writing the report if an answer was not a 200 with items or a plan
# scans a partition sequentially.
#
# Environment (all optional):
#   PULL_ROWS        pulls to load (default 10000000)
#   DAYS             day partitions the pulls spread over (default 30)
#   DURATION         seconds per query and round (default 10), after a WARMUP (default 3)
#                    in the first round
#   ROUNDS           rounds (default 3)
#   CONNECTIONS      wrk connections (default 8), THREADS wrk threads for them (default 2)
#   WRITE_BATCHES    batches for the write cost (default 200), BATCH rows each (500, the
#                    [pulls] batch default)
#   RETENTION_DROPS  day partitions to drop (default 3)
#   KEEP_DB          1 to keep the database (tagwarden_pulls_bench_PID) after the run
#   PG_ADMIN_URL     default postgres://postgres@127.0.0.1:5432/postgres
#   TAGWARDEN_BIN    this tagwarden binary instead of a release build
#   BENCH_OUT        the report (default BENCHMARKS.md)
#   BENCH_TMPDIR, KEEP_RUN_DIR, BENCH_TIMEOUT (default 7200), BUILD_TIMEOUT (default 3600)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_NAME=pulls-ledger-bench
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bound_run pulls-ledger.sh PULL_ROWS DAYS DURATION ROUNDS WARMUP CONNECTIONS THREADS WRITE_BATCHES BATCH RETENTION_DROPS KEEP_DB TAGWARDEN_BIN BENCH_OUT -- "$@"

PULL_ROWS=${PULL_ROWS:-10000000}
DAYS=${DAYS:-30}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-3}
CONNECTIONS=${CONNECTIONS:-8}
THREADS=${THREADS:-2}
WRITE_BATCHES=${WRITE_BATCHES:-200}
BATCH=${BATCH:-500}
RETENTION_DROPS=${RETENTION_DROPS:-3}
KEEP_DB=${KEEP_DB:-0}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BENCH_OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}
HELPER="$ROOT/bench/pulls-ledger.py"
LOADER="$ROOT/bench/pulls-ledger-load.sql"
QUERY_SQL="$ROOT/src/pulls/sql/pulls.sql"
INSERT_SQL="$ROOT/src/pulls/sql/insert.sql"
MEASURED="tag_hot tag_cold identity digest_last tag_hot:1 tag_cold:1 identity:1 digest_last:1"

for v in PULL_ROWS DAYS DURATION ROUNDS CONNECTIONS THREADS WRITE_BATCHES BATCH; do
    case "${!v}" in '' | *[!0-9]* | 0) echo "$v must be a positive integer" >&2; exit 2 ;; esac
done
case "$WARMUP" in '' | *[!0-9]*) echo "WARMUP must be a whole number of seconds" >&2; exit 2 ;; esac
case "$RETENTION_DROPS" in '' | *[!0-9]*) echo "RETENTION_DROPS must be a whole number" >&2; exit 2 ;; esac
[ "$RETENTION_DROPS" -lt "$DAYS" ] || { echo "RETENTION_DROPS must be below DAYS" >&2; exit 2; }
case "$KEEP_DB" in 0 | 1) ;; *) echo "KEEP_DB must be 0 or 1" >&2; exit 2 ;; esac

# Keys are sampled from 1 % of the pages at 10 million rows, more in a smaller log.
SAMPLE_PCT=$((10000000 / PULL_ROWS))
[ "$SAMPLE_PCT" -ge 1 ] || SAMPLE_PCT=1
[ "$SAMPLE_PCT" -le 100 ] || SAMPLE_PCT=100

RUN=
DB_NAME=
DROP_DB=$((1 - KEEP_DB))
TW_PID=
install_traps db_bench_cleanup

num() { python3 -c "import sys; print(f'{int(sys.argv[1]):,}')" "$1"; }
per_sec() { python3 -c "import sys; print(f'{float(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])):,.0f}')" "$@"; }

index_list() {
    db_psql -AtF $'\t' -c "select indexname, indexdef from pg_indexes
        where schemaname = 'public' and tablename = 'pull_log' order by indexname"
}

load() {
    local t0 t1 t2 t3 before after
    log "creating the schema: tagwarden's migrations"
    start_tagwarden
    stop_tagwarden
    before=$(index_list)
    [ -n "$before" ] || die "no pull_log indexes after the migrations"
    # pg_indexes shows a partitioned table's index as ON ONLY, which would create the
    # parent's index alone (invalid, no partition's index): build them on every partition.
    {
        echo "SET maintenance_work_mem = '1GB';"
        db_psql -At -c "select replace(indexdef, ' ON ONLY ', ' ON ') || ';' from pg_indexes
            where schemaname = 'public' and tablename = 'pull_log' order by indexname"
    } >"$RUN/create-indexes.sql"
    db_psql -At -c "select format('DROP INDEX %I.%I;', schemaname, indexname) from pg_indexes
        where schemaname = 'public' and tablename = 'pull_log'" | db_psql -q
    log "loading $PULL_ROWS pulls over $DAYS days"
    t0=$(now)
    db_psql -v rows="$PULL_ROWS" -v days="$DAYS" -f "$LOADER" >"$RUN/load.log" 2>&1 ||
        { tail -n 20 "$RUN/load.log" >&2; die "loading the pulls failed"; }
    t1=$(now)
    log "pulls loaded in $(secs "$t0" "$t1" 1)s ($(per_sec "$PULL_ROWS" "$t0" "$t1") rows/s); creating the indexes"
    db_psql -q -f "$RUN/create-indexes.sql" >"$RUN/create-indexes.log" 2>&1 ||
        { tail -n 20 "$RUN/create-indexes.log" >&2; die "creating the indexes failed"; }
    t2=$(now)
    log "indexes in $(secs "$t1" "$t2" 1)s; VACUUM ANALYZE"
    db_psql -qc "VACUUM (ANALYZE) pull_log"
    t3=$(now)
    after=$(index_list)
    [ "$before" = "$after" ] || die "the pull_log indexes after the load differ from the migration's"
    local per_part
    per_part=$(db_psql -Atc "select count(*) from pg_partition_tree('pull_log_reference') where isleaf")
    PARTITIONS=$(db_psql -Atc "select count(*) from pg_partition_tree('pull_log') where isleaf")
    [ "$per_part" = "$PARTITIONS" ] || die "pull_log_reference covers $per_part of $PARTITIONS partitions"
    LOAD_TEXT="rows $(secs "$t0" "$t1" 1) s, **$(per_sec "$PULL_ROWS" "$t0" "$t1") rows/s** (one INSERT ... SELECT into the parent, indexes dropped); the four indexes $(secs "$t1" "$t2" 1) s (CREATE INDEX on the parent, one per partition, maintenance_work_mem 1GB); VACUUM ANALYZE $(secs "$t2" "$t3" 1) s; $(secs "$t0" "$t3" 1) s in all. Afterwards pg_indexes on pull_log is what the migration created, and every partition has its indexes"
}

sample_keys() {
    db_psql -q -AtF $'\t' >"$RUN/sample.log" 2>&1 <<EOSQL
SELECT setseed(0.42);
CREATE TEMP TABLE hot AS
    SELECT repository, reference, count(*) AS n FROM pull_log WHERE reference NOT LIKE 'sha256:%'
    GROUP BY repository, reference ORDER BY count(*) DESC, repository, reference LIMIT 20;
CREATE TEMP TABLE sampled AS
    SELECT repository, reference, identity, digest, at, status FROM pull_log TABLESAMPLE SYSTEM ($SAMPLE_PCT) REPEATABLE (42);
\\o $RUN/hot.tsv
SELECT repository, reference, n FROM hot ORDER BY n DESC, repository, reference;
\\o $RUN/samples.tsv
(SELECT 'hot', s.repository, s.reference, '', '', extract(epoch FROM s.at)
 FROM sampled s JOIN hot USING (repository, reference) ORDER BY random() LIMIT 1000)
UNION ALL
(SELECT 'cold', repository, reference, '', '', extract(epoch FROM at)
 FROM sampled WHERE reference LIKE 'v1.%' ORDER BY random() LIMIT 1000)
UNION ALL
(SELECT 'any', repository, reference, coalesce(identity, ''), coalesce(digest, ''), extract(epoch FROM at)
 FROM sampled WHERE status = 200 ORDER BY random() LIMIT 2000);
\\o
EOSQL
    [ -s "$RUN/hot.tsv" ] && [ -s "$RUN/samples.tsv" ] || { cat "$RUN/sample.log" >&2; die "sampling keys failed"; }
    python3 "$HELPER" paths "$RUN/samples.tsv" "$RUN/paths" >"$RUN/paths.txt" || die "could not write the paths"
    local cold_median
    cold_median=$(db_psql -Atc "select percentile_disc(0.5) within group (order by n) from (
        select count(*) n from pull_log where reference like 'v1.%' group by repository, reference) c")
    KEYS_TEXT="$(awk -F'\t' '{ n[$1]++ } END { printf "%d hot-tag pulls, %d release-tag pulls, %d pulls for the identity and digest questions", n["hot"], n["cold"], n["any"] }' "$RUN/samples.tsv") sampled from $SAMPLE_PCT % of the pages (TABLESAMPLE SYSTEM); the hottest tags: $(head -n 3 "$RUN/hot.tsv" | awk -F'\t' '{ printf "%s%s:%s %d", sep, $1, $2, $3; sep = ", " }') pulls; a release tag's median: $cold_median pulls in the whole log"
}

explain() {
    # The hottest tag over its busiest 24 h, a release tag over 14 days, a sampled
    # identity over 24 h, a sampled digest.
    db_psql -AtF $'\t' >"$RUN/explain-keys.tsv" <<EOSQL
WITH h AS (SELECT repository, reference FROM pull_log WHERE reference NOT LIKE 'sha256:%'
           GROUP BY 1, 2 ORDER BY count(*) DESC LIMIT 1),
     c AS (SELECT repository, reference, at FROM pull_log TABLESAMPLE SYSTEM ($SAMPLE_PCT) REPEATABLE (7)
           WHERE reference LIKE 'v1.3%' LIMIT 1),
     i AS (SELECT identity, at FROM pull_log TABLESAMPLE SYSTEM ($SAMPLE_PCT) REPEATABLE (8)
           WHERE identity IS NOT NULL LIMIT 1),
     d AS (SELECT digest FROM pull_log TABLESAMPLE SYSTEM ($SAMPLE_PCT) REPEATABLE (9)
           WHERE digest IS NOT NULL AND reference LIKE 'sha256:%' LIMIT 1),
     f AS (SELECT date_trunc('hour', now() - interval '5 days') AS t)
SELECT h.repository, h.reference, f.t - interval '24 hours', f.t,
       c.repository, c.reference, c.at - interval '7 days', c.at + interval '7 days',
       i.identity, i.at - interval '12 hours', i.at + interval '12 hours', d.digest
FROM h, c, i, d, f;
EOSQL
    local k
    IFS=$'\t' read -r -a k <"$RUN/explain-keys.tsv" || die "could not pick the EXPLAIN keys"
    [ "${#k[@]}" = 12 ] || die "could not pick the EXPLAIN keys"
    printf '%s\n' "hot_repo=${k[0]}" "hot_ref=${k[1]}" "hot_since=${k[2]}" "hot_until=${k[3]}" \
        "cold_repo=${k[4]}" "cold_ref=${k[5]}" "cold_since=${k[6]}" "cold_until=${k[7]}" \
        "identity=${k[8]}" "id_since=${k[9]}" "id_until=${k[10]}" "digest=${k[11]}" >"$RUN/explain-params"
    python3 "$HELPER" explain-sql "$QUERY_SQL" "$RUN/explain-params" >"$RUN/explain.sql"
    db_psql -q -f "$RUN/explain.sql" >"$RUN/explain.txt" 2>&1 || { cat "$RUN/explain.txt" >&2; die "EXPLAIN failed"; }
    cat "$RUN/explain.txt" >&2
    local scans
    if scans=$(python3 "$HELPER" check-plans "$RUN/explain.txt"); then
        log "no plan reads a pull_log partition sequentially"
    else
        log "sequential scans: $scans"
        meta seq_scans "$(printf '%s' "$scans" | tr '\n' ';')"
        FAILED=1
    fi
}

write_cost() {
    local before line bps rps p50 p99 mx n
    before=$(db_psql -Atc "select count(*) from pull_log")
    python3 "$HELPER" batches "$INSERT_SQL" "$WRITE_BATCHES" "$BATCH" >"$RUN/batches.sql"
    log "write cost: $WRITE_BATCHES batches of $BATCH rows ($(du -h "$RUN/batches.sql" | cut -f1) of SQL)"
    db_psql -q -f "$RUN/batches.sql" >"$RUN/batches.out" 2>&1 || { tail -n 5 "$RUN/batches.out" >&2; die "the batches failed"; }
    line=$(python3 "$HELPER" batch-result "$RUN/batches.out" "$BATCH") || die "no timings in $RUN/batches.out"
    read -r bps rps p50 p99 mx n <<<"$line"
    local after
    after=$(db_psql -Atc "select count(*) from pull_log")
    [ "$((after - before))" = "$((WRITE_BATCHES * BATCH))" ] ||
        die "the batches inserted $((after - before)) rows, not $((WRITE_BATCHES * BATCH))"
    log "write cost: $bps batches/s, $rps rows/s; p50 $p50 ms, p99 $p99 ms, max $mx ms per batch"
    meta write "$n batches of $BATCH rows, one after another from psql on this machine: \`PREPARE\` of \`src/pulls/sql/insert.sql\` as it is, then one \`EXECUTE\` per batch with the twelve arrays as literals, autocommit (one transaction per batch, as the writer's pool runs it); $(num "$before") rows present before, all into today's partition with its four indexes; the row count grew by exactly $(num $((WRITE_BATCHES * BATCH))). **$bps batches/s ($rps rows/s), $p50 ms per batch at the median, p99 $p99 ms, max $mx ms** (server time as psql's \\\\timing sees it, client round trip included). The writer sends one batch at a time per connection and has 2 connections (the [pulls] defaults)."
}

retention() {
    local i day rows size ms out=""
    for i in $(seq 1 "$RETENTION_DROPS"); do
        day=$(db_psql -Atc "select min(to_date(substr(c.relname, 10), 'YYYYMMDD')) from pg_inherits i
            join pg_class c on c.oid = i.inhrelid where i.inhparent = 'pull_log'::regclass")
        rows=$(db_psql -Atc "select count(*) from pull_log_${day//-/}")
        size=$(db_psql -Atc "select pg_size_pretty(sum(pg_total_relation_size(relid))) from pg_partition_tree('pull_log_${day//-/}')")
        ms=$(db_psql -c '\timing on' -c "select pull_log_drop_before(date '$day' + 1)" | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p')
        [ -z "$(db_psql -Atc "select to_regclass('pull_log_${day//-/}')")" ] || die "pull_log_${day//-/} is still there"
        log "dropped pull_log_${day//-/} ($rows rows, $size with its indexes) in $ms ms"
        out="$out${out:+; }pull_log_${day//-/}: $(num "$rows") rows, $size with its indexes, **$ms ms**"
    done
    meta retention "\`SELECT pull_log_drop_before(day)\` (the function tagwarden's retention calls), the oldest partition each time, one after another, with tagwarden running and the other partitions present: $out. (The oldest partition holds only the part of its day after the load's start.)"
}

describe_db() {
    meta pg_version "$(db_psql -Atc "select 'PostgreSQL ' || current_setting('server_version')")"
    meta db_size "$(db_psql -Atc "select pg_size_pretty(pg_database_size(current_database()))")"
    meta partitions "$PARTITIONS"
    meta shape "$(num "$(db_psql -Atc 'select count(*) from pull_log')") pulls in $PARTITIONS day partitions ($DAYS days of pulls and tomorrow's, empty, as tagwarden creates it); $(db_psql -Atc "select to_char(count(distinct repository), 'FM999,999,999') || ' repositories, ' || to_char(count(distinct (repository, reference)) filter (where reference not like 'sha256:%'), 'FM999,999,999') || ' tags, ' || to_char(count(distinct identity), 'FM999,999,999') || ' identities, ' || to_char(count(distinct digest), 'FM999,999,999') || ' digests; ' || round(100.0 * count(*) filter (where reference like 'sha256:%') / count(*)) || ' % by digest'  from pull_log")"
    db_psql -AtF $'\t' >"$RUN/sizes.tsv" <<'EOSQL'
SELECT 'pull_log (all partitions)', 'table (heap)', pg_size_pretty(sum(pg_relation_size(relid)))
FROM pg_partition_tree('pull_log') WHERE isleaf
UNION ALL
SELECT i, 'index', pg_size_pretty(sum(pg_relation_size(relid)))
FROM unnest(ARRAY['pull_log_reference', 'pull_log_identity', 'pull_log_digest', 'pull_log_at']) AS i,
     pg_partition_tree(i::regclass) WHERE isleaf GROUP BY i;
EOSQL
}

main() {
    need_tools psql wrk curl python3 timeout
    build
    RUN=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/tagwarden-pulls-ledger-bench.XXXXXX")
    : >"$RUN/meta"
    : >"$RUN/results.tsv"
    meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
    meta command "$_BENCH_COMMAND"
    meta_machine
    meta binary "$BIN"
    meta connections "$CONNECTIONS"
    meta duration "$DURATION"
    meta title "$(python3 -c "import sys; n = int(sys.argv[1]); print(f'{n // 1_000_000} million' if n % 1_000_000 == 0 else f'{n:,}')" "$PULL_ROWS")"
    meta client "$(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }') with bench/ledger-paths.lua, $THREADS threads for $CONNECTIONS connections (1 thread for the one-connection rows), on the same CPUs as tagwarden and Postgres; a ${WARMUP} s warm-up per query before the first round"
    read -r P_PROXY P_ADMIN P_UPSTREAM <<<"$(free_ports 3)"
    admin_psql -Atc 'select 1' >/dev/null 2>&1 || die "PostgreSQL is not reachable at $PG_ADMIN_URL"
    DB_NAME="tagwarden_pulls_bench_$$"
    DB_URL="${PG_ADMIN_URL%/*}/$DB_NAME"
    admin_psql -qc "create database $DB_NAME" || { DB_NAME=; die "could not create database"; }
    write_config pulls-ledger-bench "
[pulls]
retention = \"${DAYS}d\"
"
    load
    meta load "$LOAD_TEXT"
    describe_db

    log "starting tagwarden on the loaded pull log"
    start_tagwarden
    log "sampling keys"
    sample_keys
    meta keys "$KEYS_TEXT"
    check_answers '"items":\[{'
    local r name
    for r in $(seq 1 "$ROUNDS"); do
        log "round $r of $ROUNDS"
        for name in $MEASURED; do measure "$name" "$r"; done
    done
    log "EXPLAIN (ANALYZE, BUFFERS) of the pull log's statement"
    explain
    write_cost
    retention
    meta load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
    python3 "$HELPER" report "$RUN" "$BENCH_OUT"
    log "wrote $BENCH_OUT"
    column -t -s $'\t' "$RUN/results.tsv" >&2 || cat "$RUN/results.tsv" >&2
    [ "$FAILED" = 0 ] || { log "FAILED: an answer was not a 200 with items, or a plan scans a partition"; return 1; }
}

main "$@"
