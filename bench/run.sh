#!/usr/bin/env bash
# Benchmark tagwarden against the registry itself and against nginx and HAProxy in front
# of the same registry, all on loopback, and write BENCHMARKS.md.
#
#   bench/run.sh
#
# Four paths to one registry (Docker distribution 2.8, Debian's docker-registry):
#   direct     the registry
#   tagwarden  tagwarden serve, default settings, a fresh ledger database
#   nginx      the registry recipe (no request or response buffering, keepalive upstream)
#   haproxy    mode http, http-keep-alive
# Measured, interleaved across the paths (the order rotates every round):
#   1 GiB and 10 MiB blob downloads, 1 GiB monolithic and chunked uploads, manifest GETs
#   (wrk) and HEADs (ab), manifest PUTs of new immutable tags (wrk with
#   bench/put-tags.lua; with 8 connections for the rate, with one for the latency), and
#   the proxies' resident memory during their runs.
# Prints the table and writes BENCHMARKS.md. Exits 1 if any measurement failed (after
# writing the report).
#
# Environment (all optional):
#   ROUNDS            rounds of every measurement (default 5)
#   CHUNKED           1 to measure chunked uploads, 0 to skip (default 1)
#   DL10_REPEAT       10 MiB downloads per path per round; their median counts (default 5)
#   WRK_SECONDS       duration of each wrk and ab run (default 10)
#   PUT_CONNECTIONS   connections of the manifest PUT rate run (default 8)
#   MEASURE           which measurements to run, space-separated, in this order
#                     (default all): dl_1g dl_10m ul_mono ul_chunked manifest_get
#                     manifest_head manifest_put manifest_put_1
#   CARGO_TARGET_DIR  where cargo builds (default target/)
#   TAGWARDEN_BIN     use this tagwarden binary instead of building one
#   PG_ADMIN_URL      Postgres to create the throwaway ledger database in
#                     (default postgres://postgres@127.0.0.1:5432/postgres)
#   BENCH_OUT         the report (default BENCHMARKS.md at the top of the repository)
#   BENCH_TMPDIR      where the run directory goes (default $TMPDIR or /tmp); needs ~6 GiB (1 GiB without the 1 GiB transfers)
#   BENCH_TIMEOUT     limit for the whole run in seconds, build included (default 7200)
#   BUILD_TIMEOUT     limit for the cargo build in seconds (default 3600)
#   KEEP_RUN_DIR      1 to keep the run directory (logs, configs) instead of removing it
#   PROFILE           1 to profile tagwarden relaying one 1 GiB download before the
#                     rounds (perf, from Debian's linux-perf): its CPU time, syscalls,
#                     context switches and page faults, and where the time goes; printed,
#                     and kept in the run directory under profile/ with KEEP_RUN_DIR=1
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin"
BENCH_NAME=bench
# shellcheck source=bench/lib.sh
. "$ROOT/bench/lib.sh"
bound_run run.sh ROUNDS CHUNKED DL10_REPEAT WRK_SECONDS PUT_CONNECTIONS MEASURE PROFILE CARGO_TARGET_DIR TAGWARDEN_BIN BENCH_OUT -- "$@"

ROUNDS=${ROUNDS:-5}
CHUNKED=${CHUNKED:-1}
DL10_REPEAT=${DL10_REPEAT:-5}
WRK_SECONDS=${WRK_SECONDS:-10}
PUT_CONNECTIONS=${PUT_CONNECTIONS:-8}
ALL_MEASUREMENTS="dl_1g dl_10m ul_mono ul_chunked manifest_get manifest_head manifest_put manifest_put_1"
MEASURE=${MEASURE:-$ALL_MEASUREMENTS}
PG_ADMIN_URL=${PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}
BENCH_OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}
HELPER="$ROOT/bench/bench.py"

PATHS=(direct tagwarden nginx haproxy)
BIG_BYTES=$((1024 * 1024 * 1024))
SMALL_BYTES=$((10 * 1024 * 1024))
CHUNK_BYTES=$((64 * 1024 * 1024))
ACCEPT='application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json'
# A 1 GiB transfer slower than ~3.5 MiB/s counts as failed rather than hanging the run.
BIG_MAX_TIME=300

case "$ROUNDS" in '' | *[!0-9]* | 0) echo "ROUNDS must be a positive integer" >&2; exit 2 ;; esac
case "$PUT_CONNECTIONS" in '' | *[!0-9]* | 0) echo "PUT_CONNECTIONS must be a positive integer" >&2; exit 2 ;; esac
for _m in $MEASURE; do
    case " $ALL_MEASUREMENTS " in *" $_m "*) ;; *) echo "MEASURE: unknown measurement $_m (known: $ALL_MEASUREMENTS)" >&2; exit 2 ;; esac
done
measuring() { case " $MEASURE " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }

# ---------------------------------------------------------------------------------------
# Clean-up: every process this script starts is recorded here and stopped on exit.

RUN=
DB_NAME=
TW_DB_URL=
REG_PID=
TW_PID=
NGX_PID=
HAP_PID=
SAMPLER_PID=

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    [ -z "$SAMPLER_PID" ] || stop_pid "$SAMPLER_PID"
    if [ -n "$HAP_PID$NGX_PID$TW_PID$REG_PID" ]; then log "stopping the servers"; fi
    stop_pid "$HAP_PID"
    stop_pid "$NGX_PID"
    stop_pid "$TW_PID"
    stop_pid "$REG_PID"
    if [ -n "$DB_NAME" ]; then
        PGCONNECT_TIMEOUT=10 timeout 60 psql "$PG_ADMIN_URL" -Xqc \
            "drop database if exists $DB_NAME with (force)" >/dev/null 2>&1 ||
            log "could not drop database $DB_NAME; drop it by hand"
    fi
    if [ "$rc" -ne 0 ] && [ -n "$RUN" ]; then
        local f
        for f in "$RUN"/registry.log "$RUN"/tagwarden.log "$RUN"/nginx/error.log "$RUN"/haproxy.log; do
            [ -s "$f" ] || continue
            log "last lines of $f:"
            tail -n 15 "$f" >&2
        done
    fi
    remove_run_dir
    exit "$rc"
}
install_traps

# ---------------------------------------------------------------------------------------
# Tools.

# wrk cannot measure HEADs: wrk 4.1 waits for the body that a HEAD answer's
# Content-Length announces, and hangs; ab knows HEAD (-i).
ensure_tools() { need_tools docker-registry nginx haproxy wrk ab curl psql python3; }

# ---------------------------------------------------------------------------------------
# Servers.

start_tagwarden() {
    DB_NAME="tagwarden_bench_$$_$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
    PGCONNECT_TIMEOUT=10 timeout 30 psql "$PG_ADMIN_URL" -XAtqc 'select 1' >/dev/null 2>&1 ||
        { DB_NAME=; die "PostgreSQL is not reachable at $PG_ADMIN_URL (start it, or set PG_ADMIN_URL)"; }
    PGCONNECT_TIMEOUT=10 timeout 30 psql "$PG_ADMIN_URL" -Xqc "create database $DB_NAME" >/dev/null ||
        { DB_NAME=; die "could not create database $DB_NAME"; }
    TW_DB_URL="${PG_ADMIN_URL%/*}/$DB_NAME"
    serve_tagwarden TW_PID "$BIN" "" "$RUN/tagwarden.log" "http://127.0.0.1:$P_TWADMIN/healthz" 90 \
        --listen "127.0.0.1:$P_TW" \
        --admin-listen "127.0.0.1:$P_TWADMIN" \
        --upstream "http://127.0.0.1:$P_REG" \
        --database-url "$TW_DB_URL"
    wait_http "http://127.0.0.1:$P_TW/v2/" "$TW_PID" "tagwarden" 30
    log "tagwarden on 127.0.0.1:$P_TW (pid $TW_PID, database $DB_NAME)"
}

start_nginx() {
    local d="$RUN/nginx"
    mkdir -p "$d/tmp"
    cat >"$d/nginx.conf" <<EOF
# The registry recipe (DESIGN-NOTES.md §5), on loopback, in the foreground.
daemon off;
master_process on;
worker_processes auto;
pid $d/nginx.pid;
error_log $d/error.log warn;

events {
    worker_connections 1024;
}

http {
    access_log off;
    client_body_temp_path $d/tmp/client_body;
    proxy_temp_path $d/tmp/proxy;
    fastcgi_temp_path $d/tmp/fastcgi;
    uwsgi_temp_path $d/tmp/uwsgi;
    scgi_temp_path $d/tmp/scgi;

    upstream docker-registry {
        server 127.0.0.1:$P_REG;
        keepalive 32;
    }

    map \$upstream_http_docker_distribution_api_version \$docker_distribution_api_version {
        '' 'registry/2.0';
    }

    server {
        listen 127.0.0.1:$P_NGX;

        client_max_body_size 0;
        chunked_transfer_encoding on;

        location /v2/ {
            add_header 'Docker-Distribution-Api-Version' \$docker_distribution_api_version always;

            proxy_pass http://docker-registry;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Real-IP \$remote_addr;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_read_timeout 900;
            proxy_request_buffering off;
            proxy_buffering off;
        }
    }
}
EOF
    timeout 30 nginx -t -q -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" ||
        die "nginx rejected $d/nginx.conf"
    nginx -p "$d/" -c "$d/nginx.conf" -e "$d/error.log" &
    NGX_PID=$!
    wait_http "http://127.0.0.1:$P_NGX/v2/" "$NGX_PID" "nginx" 30
    log "nginx on 127.0.0.1:$P_NGX (pid $NGX_PID)"
}

start_haproxy() {
    cat >"$RUN/haproxy.cfg" <<EOF
global
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    option forwardfor
    timeout connect 5s
    timeout client 900s
    timeout server 900s
    timeout http-request 30s
    timeout http-keep-alive 60s

frontend registry_in
    bind 127.0.0.1:$P_HAP
    http-request set-header X-Forwarded-Proto http
    default_backend registry

backend registry
    server registry 127.0.0.1:$P_REG
EOF
    timeout 30 haproxy -c -q -f "$RUN/haproxy.cfg" || die "haproxy rejected $RUN/haproxy.cfg"
    haproxy -db -f "$RUN/haproxy.cfg" >"$RUN/haproxy.log" 2>&1 &
    HAP_PID=$!
    wait_http "http://127.0.0.1:$P_HAP/v2/" "$HAP_PID" "haproxy" 30
    log "haproxy on 127.0.0.1:$P_HAP (pid $HAP_PID)"
}

base_url() {
    case "$1" in
        direct) echo "http://127.0.0.1:$P_REG" ;;
        tagwarden) echo "http://127.0.0.1:$P_TW" ;;
        nginx) echo "http://127.0.0.1:$P_NGX" ;;
        haproxy) echo "http://127.0.0.1:$P_HAP" ;;
    esac
}

path_pids() {
    case "$1" in
        tagwarden) echo "$TW_PID" ;;
        nginx) echo "$NGX_PID" ;;
        haproxy) echo "$HAP_PID" ;;
    esac
}

# ---------------------------------------------------------------------------------------
# Registry operations, each bounded by curl's --max-time. They print their result on
# stdout and return non-zero (with a reason on stderr) on failure.

# The Location header of a saved response, made absolute against BASE; fails when it
# points anywhere but BASE (the exchange would bypass the path under test).
location_of() {
    local hdr=$1 base=$2 loc
    loc=$(grep -i '^location:' "$hdr" | tail -n 1 | cut -d' ' -f2- | tr -d '\r')
    [ -n "$loc" ] || { echo "no Location in the response" >&2; return 1; }
    case "$loc" in
        /*) loc="$base$loc" ;;
        "$base"/*) ;;
        *) echo "Location $loc does not point at $base" >&2; return 1 ;;
    esac
    printf '%s' "$loc"
}

# POST an upload session; prints its Location.
start_upload() {
    local base=$1 repo=$2 hdr code
    hdr=$(mktemp "$RUN/hdr.XXXXXX")
    code=$(curl -sS --max-time 30 -o /dev/null -D "$hdr" -w '%{http_code}' \
        --data-binary '' "$base/v2/$repo/blobs/uploads/") || { rm -f "$hdr"; return 1; }
    [ "$code" = 202 ] || { echo "POST upload: HTTP $code" >&2; rm -f "$hdr"; return 1; }
    location_of "$hdr" "$base"
    rm -f "$hdr"
}

with_query() { case "$1" in *\?*) printf '%s&%s' "$1" "$2" ;; *) printf '%s?%s' "$1" "$2" ;; esac; }

# Monolithic upload: POST, then PUT the whole file. Prints curl's upload speed (B/s).
upload_mono() {
    local base=$1 repo=$2 file=$3 digest=$4 size=$5 loc out code sent speed
    loc=$(start_upload "$base" "$repo") || return 1
    out=$(curl -sS --max-time "$BIG_MAX_TIME" -o /dev/null -w '%{http_code} %{size_upload} %{speed_upload}' \
        -X PUT -T "$file" -H 'Expect:' -H 'Content-Type: application/octet-stream' \
        "$(with_query "$loc" "digest=$digest")") || return 1
    read -r code sent speed <<<"$out"
    [ "$code" = 201 ] || { echo "PUT upload: HTTP $code" >&2; return 1; }
    [ "$sent" = "$size" ] || { echo "PUT upload: sent $sent of $size bytes" >&2; return 1; }
    printf '%s' "$speed"
}

# Chunked upload: POST, PATCH each chunk file with Content-Range, PUT. Prints B/s over
# the wall time of the whole sequence.
upload_chunked() {
    local base=$1 repo=$2 digest=$3 size=$4 hdr loc start end chunk csize code t0 t1
    hdr=$(mktemp "$RUN/hdr.XXXXXX")
    t0=$(date +%s%N)
    loc=$(start_upload "$base" "$repo") || { rm -f "$hdr"; return 1; }
    start=0
    for chunk in "$RUN"/chunks/chunk.*; do
        csize=$(stat -c %s "$chunk")
        end=$((start + csize - 1))
        code=$(curl -sS --max-time 120 -o /dev/null -D "$hdr" -w '%{http_code}' \
            -X PATCH -T "$chunk" -H 'Expect:' -H 'Content-Type: application/octet-stream' \
            -H "Content-Range: $start-$end" "$loc") || { rm -f "$hdr"; return 1; }
        [ "$code" = 202 ] || { echo "PATCH $start-$end: HTTP $code" >&2; rm -f "$hdr"; return 1; }
        loc=$(location_of "$hdr" "$base") || { rm -f "$hdr"; return 1; }
        start=$((end + 1))
    done
    code=$(curl -sS --max-time 120 -o /dev/null -w '%{http_code}' -X PUT --data-binary '' \
        -H 'Content-Type: application/octet-stream' "$(with_query "$loc" "digest=$digest")") ||
        { rm -f "$hdr"; return 1; }
    t1=$(date +%s%N)
    rm -f "$hdr"
    [ "$code" = 201 ] || { echo "closing PUT: HTTP $code" >&2; return 1; }
    [ "$start" = "$size" ] || { echo "chunked upload sent $start of $size bytes" >&2; return 1; }
    python3 -c "print($size * 1e9 / ($t1 - $t0))"
}

# GET a blob; prints curl's download speed (B/s).
download() {
    local base=$1 digest=$2 size=$3 out code got speed
    out=$(curl -sS --max-time "$BIG_MAX_TIME" -o /dev/null -w '%{http_code} %{size_download} %{speed_download}' \
        "$base/v2/bench/app/blobs/$digest") || return 1
    read -r code got speed <<<"$out"
    [ "$code" = 200 ] || { echo "GET blob: HTTP $code" >&2; return 1; }
    [ "$got" = "$size" ] || { echo "GET blob: received $got of $size bytes" >&2; return 1; }
    printf '%s' "$speed"
}

to_mib() { python3 -c "print(f'{float(\"$1\") / 1048576:.2f}')"; }

# ---------------------------------------------------------------------------------------
# Recording.

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RUN/results.tsv"; }

rss_start() {
    local pids
    pids=$(path_pids "$1")
    [ -n "$pids" ] || return 0
    rm -f "$RUN/rss.out" "$RUN/rss.out.ready"
    # shellcheck disable=SC2086
    python3 "$HELPER" rss "$RUN/rss.out" $pids &
    SAMPLER_PID=$!
    # Wait until it samples (and would write its result when stopped): on a busy
    # machine Python can take a while to start.
    local i
    for i in $(seq 1 100); do
        [ -e "$RUN/rss.out.ready" ] && break
        sleep 0.05
    done
}

rss_stop() {
    local path=$1 metric=$2 round=$3
    [ -n "$SAMPLER_PID" ] || return 0
    stop_pid "$SAMPLER_PID"
    SAMPLER_PID=
    if [ -s "$RUN/rss.out" ]; then record "$metric" "$path" "$round" "$(cat "$RUN/rss.out")"; fi
    rm -f "$RUN/rss.out"
}

# CPU time of the processes serving a path (the registry for direct, the proxy's
# otherwise) and of tagwarden's ledger database backends, per operation.
cpu_pids() { case "$1" in direct) echo "$REG_PID" ;; *) path_pids "$1" ;; esac; }
db_pids() {
    PGCONNECT_TIMEOUT=10 timeout 30 psql "$PG_ADMIN_URL" -XAtqc \
        "select pid from pg_stat_activity where datname = '$DB_NAME'" 2>/dev/null | tr '\n' ' '
}

# cpu_mark NAME PID...: remember the CPU time used so far.
cpu_mark() {
    local name=$1
    shift
    python3 "$HELPER" cpu-mark "$RUN/cpu-$name.mark" "$@" || true
}

# cpu_record NAME METRIC PATH ROUND OPS SCALE PID...: record the CPU ms used since
# cpu_mark NAME, times SCALE (1000: µs), per operation.
cpu_record() {
    local name=$1 metric=$2 p=$3 r=$4 ops=$5 scale=$6 ms
    shift 6
    case "$ops" in '' | *[!0-9]* | 0) return 0 ;; esac
    ms=$(python3 "$HELPER" cpu-since "$RUN/cpu-$name.mark" "$@") || return 0
    record "$metric" "$p" "$r" "$(python3 -c "print(f'{$ms * $scale / $ops:.1f}')")"
}

# Let the upload's writes reach the disk before the next timed run.
settle() { timeout 120 sync || true; }

run_dl_big() {
    local p=$1 r=$2 v
    rss_start "$p"
    # shellcheck disable=SC2046
    cpu_mark front $(cpu_pids "$p")
    if v=$(download "$(base_url "$p")" "$BIG_DIGEST" "$BIG_BYTES"); then
        # shellcheck disable=SC2046
        cpu_record front cpu_dl_1g "$p" "$r" 1 1 $(cpu_pids "$p")
        v=$(to_mib "$v"); record dl_1g "$p" "$r" "$v"; log "round $r  1 GiB download     $p: $v MiB/s"
    else
        record dl_1g "$p" "$r" FAIL; log "round $r  1 GiB download     $p: FAILED"
    fi
    rss_stop "$p" rss_dl_1g "$r"
}

run_dl_small() {
    local p=$1 r=$2 i v vals=()
    for i in $(seq 1 "$DL10_REPEAT"); do
        if v=$(download "$(base_url "$p")" "$SMALL_DIGEST" "$SMALL_BYTES"); then vals+=("$v"); fi
    done
    if [ "${#vals[@]}" -eq "$DL10_REPEAT" ]; then
        v=$(python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])) / 1048576:.2f}')" "${vals[@]}")
        record dl_10m "$p" "$r" "$v"; log "round $r  10 MiB download    $p: $v MiB/s (median of $DL10_REPEAT)"
    else
        record dl_10m "$p" "$r" FAIL; log "round $r  10 MiB download    $p: FAILED"
    fi
}

run_ul_mono() {
    local p=$1 r=$2 v
    rss_start "$p"
    # shellcheck disable=SC2046
    cpu_mark front $(cpu_pids "$p")
    if v=$(upload_mono "$(base_url "$p")" bench/upload "$RUN/big.bin" "$BIG_DIGEST" "$BIG_BYTES"); then
        # shellcheck disable=SC2046
        cpu_record front cpu_ul_1g_mono "$p" "$r" 1 1 $(cpu_pids "$p")
        v=$(to_mib "$v"); record ul_1g_mono "$p" "$r" "$v"; log "round $r  1 GiB upload mono  $p: $v MiB/s"
    else
        record ul_1g_mono "$p" "$r" FAIL; log "round $r  1 GiB upload mono  $p: FAILED"
    fi
    rss_stop "$p" rss_ul_1g_mono "$r"
    settle
}

run_ul_chunked() {
    local p=$1 r=$2 v
    rss_start "$p"
    if v=$(upload_chunked "$(base_url "$p")" bench/upload "$BIG_DIGEST" "$BIG_BYTES"); then
        v=$(to_mib "$v"); record ul_1g_chunked "$p" "$r" "$v"; log "round $r  1 GiB upload chunk $p: $v MiB/s"
    else
        record ul_1g_chunked "$p" "$r" FAIL; log "round $r  1 GiB upload chunk $p: FAILED"
    fi
    rss_stop "$p" rss_ul_1g_chunked "$r"
    settle
}

# Record a load run's result ("RPS P50 P99 ERRORS TOTAL", or FAIL) as METRIC_rps, _p50
# and _p99; a run with any error or non-2xx answer counts as failed.
record_load() {
    local metric=$1 label=$2 p=$3 r=$4 rps=$5 p50=$6 p99=$7 errors=$8 out=${9:-}
    if [ "$rps" != FAIL ] && [ "$errors" != 0 ]; then
        log "round $r  $label $p: $errors errors or non-2xx responses; counted as failed"
        rps=FAIL p50=FAIL p99=FAIL
    fi
    if [ "$rps" = FAIL ] && [ -n "$out" ] && [ -s "$out" ]; then
        grep -E 'errors|Non-2xx|Failed|responses|requests' "$out" | head -n 5 | sed 's/^/    /' >&2 || true
    fi
    record "${metric}_rps" "$p" "$r" "$rps"
    record "${metric}_p50" "$p" "$r" "$p50"
    record "${metric}_p99" "$p" "$r" "$p99"
    log "round $r  $label $p: $rps req/s, p50 $p50 ms, p99 $p99 ms"
}

run_manifest_get() {
    local p=$1 r=$2 out="$RUN/wrk.out" rps=FAIL p50=FAIL p99=FAIL errors=0 total=0
    rss_start "$p"
    # shellcheck disable=SC2046
    cpu_mark front $(cpu_pids "$p")
    if timeout $((WRK_SECONDS + 60)) wrk -t2 -c32 -d"${WRK_SECONDS}s" --timeout 30s --latency -H "Accept: $ACCEPT" \
        "$(base_url "$p")/v2/bench/app/manifests/latest" >"$out" 2>&1; then
        read -r rps p50 p99 errors total <<<"$(python3 "$HELPER" wrk "$out")"
        # shellcheck disable=SC2046
        cpu_record front cpu_manifest "$p" "$r" "$total" 1000 $(cpu_pids "$p")
    fi
    rss_stop "$p" rss_manifest "$r"
    record_load manifest "manifest GET     " "$p" "$r" "$rps" "$p50" "$p99" "$errors" "$out"
}

# wrk 4.1 waits for the body that a HEAD answer's Content-Length announces, and hangs;
# ab knows HEAD (-i). Keep-alive, 32 connections, the same Accept header as the GETs.
run_manifest_head() {
    local p=$1 r=$2 out="$RUN/ab.out" csv="$RUN/ab.csv" rps=FAIL p50=FAIL p99=FAIL errors=0 total=0
    rm -f "$csv"
    # shellcheck disable=SC2046
    cpu_mark front $(cpu_pids "$p")
    if timeout $((WRK_SECONDS + 30)) ab -q -k -i -c32 -t "$WRK_SECONDS" -n 100000000 -e "$csv" \
        -H "Accept: $ACCEPT" "$(base_url "$p")/v2/bench/app/manifests/latest" >"$out" 2>&1; then
        read -r rps p50 p99 errors total <<<"$(python3 "$HELPER" ab "$out" "$csv")"
        # shellcheck disable=SC2046
        cpu_record front cpu_head "$p" "$r" "$total" 1000 $(cpu_pids "$p")
    fi
    record_load head "manifest HEAD    " "$p" "$r" "$rps" "$p50" "$p99" "$errors" "$out"
}

# PUT new immutable tags (bench/put-tags.lua: a distinct tag and manifest per request)
# into bench/put for WRK_SECONDS with THREADS threads and CONNS connections. Sets
# LOAD_RESULT to "RPS P50 P99 ERRORS TOTAL", or leaves it empty on failure. Not to be
# run in a subshell: PUT_RUN numbers the runs so that no two share a tag.
PUT_RUN=0
put_load() {
    PUT_RUN=$((PUT_RUN + 1))
    LOAD_RESULT=$(put_tags "$(base_url "$1")/v2/bench/put/manifests" "$2" "$3" "$4" "$PUT_RUN" "$RUN/wrk-put.out")
    case "$LOAD_RESULT" in FAIL*) LOAD_RESULT= && return 1 ;; esac
}

# Tagwarden's answered PUTs, to compare with the bindings in its ledger at the end.
TW_PUTS=0
count_puts() {
    local p=$1 rps=$2 total=$3
    if [ "$p" = tagwarden ] && [ "$rps" != FAIL ]; then TW_PUTS=$((TW_PUTS + total)); fi
}

run_manifest_put() {
    local p=$1 r=$2 rps=FAIL p50=FAIL p99=FAIL errors=0 total=0
    rss_start "$p"
    # shellcheck disable=SC2046
    cpu_mark front $(cpu_pids "$p")
    # shellcheck disable=SC2046
    [ "$p" != tagwarden ] || cpu_mark db $(db_pids)
    put_load "$p" 2 "$PUT_CONNECTIONS" "$WRK_SECONDS" || true
    if [ -n "$LOAD_RESULT" ]; then
        read -r rps p50 p99 errors total <<<"$LOAD_RESULT"
        # shellcheck disable=SC2046
        cpu_record front cpu_put "$p" "$r" "$total" 1000 $(cpu_pids "$p")
        # shellcheck disable=SC2046
        [ "$p" != tagwarden ] || cpu_record db cpu_put_db "$p" "$r" "$total" 1000 $(db_pids)
    fi
    rss_stop "$p" rss_put "$r"
    record_load put "manifest PUT -c$PUT_CONNECTIONS" "$p" "$r" "$rps" "$p50" "$p99" "$errors" "$RUN/wrk-put.out"
    count_puts "$p" "$rps" "$total"
}

run_manifest_put_1() {
    local p=$1 r=$2 rps=FAIL p50=FAIL p99=FAIL errors=0 total=0
    put_load "$p" 1 1 "$WRK_SECONDS" || true
    [ -z "$LOAD_RESULT" ] || read -r rps p50 p99 errors total <<<"$LOAD_RESULT"
    record_load put1 "manifest PUT -c1 " "$p" "$r" "$rps" "$p50" "$p99" "$errors" "$RUN/wrk-put.out"
    count_puts "$p" "$rps" "$total"
}

# ---------------------------------------------------------------------------------------
# Seeding, straight into the registry.

# Whether the measurements need the 1 GiB blob (and the 6 GiB of disk that it takes).
needs_big() {
    measuring dl_1g || measuring ul_mono || { [ "$CHUNKED" = 1 ] && measuring ul_chunked; } || [ "${PROFILE:-0}" = 1 ]
}

seed() {
    local reg="http://127.0.0.1:$P_REG" v
    if needs_big; then
        log "generating a 1 GiB blob of random bytes"
        timeout 300 head -c "$BIG_BYTES" /dev/urandom >"$RUN/big.bin" || die "could not write $RUN/big.bin"
        BIG_DIGEST="sha256:$(timeout 300 sha256sum "$RUN/big.bin" | cut -d' ' -f1)"
    fi
    log "generating a 10 MiB blob of random bytes"
    timeout 60 head -c "$SMALL_BYTES" /dev/urandom >"$RUN/small.bin" || die "could not write $RUN/small.bin"
    SMALL_DIGEST="sha256:$(timeout 60 sha256sum "$RUN/small.bin" | cut -d' ' -f1)"
    if [ "$CHUNKED" = 1 ] && measuring ul_chunked; then
        mkdir -p "$RUN/chunks"
        (cd "$RUN/chunks" && timeout 300 split -b "$CHUNK_BYTES" -d -a 3 "$RUN/big.bin" chunk.) ||
            die "could not split the blob into chunks"
    fi

    log "seeding the registry"
    if needs_big; then
        v=$(upload_mono "$reg" bench/app "$RUN/big.bin" "$BIG_DIGEST" "$BIG_BYTES") || die "seeding the 1 GiB blob failed"
    fi
    v=$(upload_mono "$reg" bench/app "$RUN/small.bin" "$SMALL_DIGEST" "$SMALL_BYTES") || die "seeding the 10 MiB blob failed"

    printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["%s"]}}' \
        "$SMALL_DIGEST" >"$RUN/config.json"
    local config_digest config_size
    config_digest="sha256:$(sha256sum "$RUN/config.json" | cut -d' ' -f1)"
    config_size=$(stat -c %s "$RUN/config.json")
    v=$(upload_mono "$reg" bench/app "$RUN/config.json" "$config_digest" "$config_size") || die "seeding the config blob failed"
    cat >"$RUN/manifest.json" <<EOF
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$config_digest","size":$config_size},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"$SMALL_DIGEST","size":$SMALL_BYTES}]}
EOF
    local code
    code=$(curl -sS --max-time 30 -o "$RUN/put-manifest.out" -w '%{http_code}' -X PUT \
        -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
        --data-binary @"$RUN/manifest.json" "$reg/v2/bench/app/manifests/latest") || die "PUT manifest failed"
    [ "$code" = 201 ] || die "PUT manifest: HTTP $code: $(cat "$RUN/put-manifest.out")"

    # The manifest PUTs' repository: the same config blob and a 1 KiB layer.
    timeout 10 head -c 1024 /dev/urandom >"$RUN/layer.bin"
    CONFIG_DIGEST=$config_digest
    CONFIG_SIZE=$config_size
    LAYER_DIGEST="sha256:$(sha256sum "$RUN/layer.bin" | cut -d' ' -f1)"
    LAYER_SIZE=1024
    v=$(upload_mono "$reg" bench/put "$RUN/config.json" "$CONFIG_DIGEST" "$CONFIG_SIZE") || die "seeding bench/put's config blob failed"
    v=$(upload_mono "$reg" bench/put "$RUN/layer.bin" "$LAYER_DIGEST" "$LAYER_SIZE") || die "seeding bench/put's layer blob failed"
    settle
}

# Every path serves the manifest and the small blob before anything is timed; this also
# opens the proxies' upstream connections.
warm_up() {
    local p base code ctype errors total
    for p in "${PATHS[@]}"; do
        base=$(base_url "$p")
        read -r code ctype <<<"$(curl -sS --max-time 30 -o /dev/null -w '%{http_code} %{content_type}' \
            -H "Accept: $ACCEPT" "$base/v2/bench/app/manifests/latest")"
        [ "$code" = 200 ] || die "$p: GET manifest answered HTTP $code"
        [ "$ctype" = application/vnd.oci.image.manifest.v1+json ] ||
            die "$p: GET manifest answered Content-Type $ctype"
        download "$base" "$SMALL_DIGEST" "$SMALL_BYTES" >/dev/null || die "$p: GET of the 10 MiB blob failed"
        timeout 30 wrk -t1 -c4 -d1s -H "Accept: $ACCEPT" "$base/v2/bench/app/manifests/latest" >/dev/null 2>&1 ||
            die "$p: wrk warm-up failed"
        code=$(curl -sS --max-time 30 -o /dev/null -w '%{http_code}' -I -H "Accept: $ACCEPT" \
            "$base/v2/bench/app/manifests/latest") || die "$p: HEAD manifest failed"
        [ "$code" = 200 ] || die "$p: HEAD manifest answered HTTP $code"
        if measuring manifest_put || measuring manifest_put_1; then
            put_load "$p" 1 2 1 || die "$p: manifest PUT warm-up failed: $(tail -n 5 "$RUN/wrk-put.out")"
            read -r _ _ _ errors total <<<"$LOAD_RESULT"
            if [ "$errors" != 0 ] || [ "$total" -eq 0 ]; then
                die "$p: manifest PUT warm-up: $errors errors in $total requests: $(tail -n 5 "$RUN/wrk-put.out")"
            fi
            count_puts "$p" 0 "$total"
        fi
    done
    for p in tagwarden nginx haproxy; do
        rss_start "$p"
        sleep 0.3
        rss_stop "$p" rss_idle 0
    done
}

# ---------------------------------------------------------------------------------------
# PROFILE=1: where tagwarden's time goes while it relays the 1 GiB blob. perf samples
# the cpu-clock (virtual machines often have no hardware counters).

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

profile_download() {
    local dir="$RUN/profile" base stat_pid rec_pid t0 t1 speed
    command -v perf >/dev/null 2>&1 || die "perf is needed for PROFILE=1 (Debian: apt-get install linux-perf)"
    mkdir -p "$dir"
    base=$(base_url tagwarden)
    perf stat -o "$dir/stat.txt" -p "$TW_PID" -e task-clock,context-switches,page-faults \
        -e raw_syscalls:sys_enter,syscalls:sys_enter_recvfrom,syscalls:sys_enter_writev \
        -e syscalls:sys_enter_write,syscalls:sys_enter_epoll_wait >/dev/null 2>&1 &
    stat_pid=$!
    perf record -q -o "$dir/perf.data" -e cpu-clock -F 999 -g -p "$TW_PID" >/dev/null 2>&1 &
    rec_pid=$!
    sleep 1
    t0=$(cpu_ticks "$TW_PID")
    speed=$(download "$base" "$BIG_DIGEST" "$BIG_BYTES") || speed=FAIL
    t1=$(cpu_ticks "$TW_PID")
    kill -INT "$stat_pid" "$rec_pid" 2>/dev/null || true
    wait "$stat_pid" "$rec_pid" 2>/dev/null || true
    [ "$speed" != FAIL ] || die "the profiled download failed"
    {
        echo "1 GiB download through tagwarden: $(to_mib "$speed") MiB/s;" \
            "tagwarden CPU (utime + stime): $(((t1 - t0) * 10)) ms"
        echo
        grep -v '^#' "$dir/stat.txt" | grep .
        echo
        echo "Time by shared object, then by symbol (self time):"
        timeout 300 perf report -i "$dir/perf.data" --stdio --no-children --sort dso -g none 2>/dev/null |
            grep -v '^#' | grep . | head -n 8
        timeout 300 perf report -i "$dir/perf.data" --stdio --no-children --sort sym -g none 2>/dev/null |
            grep -v '^#' | grep . | head -n 30
        echo
        echo "Time by system call (with everything it calls):"
        timeout 300 perf report -i "$dir/perf.data" --stdio --children --sort sym -g none 2>/dev/null |
            grep -E '(__GI___writev|__libc_recv|epoll_wait|__GI___libc_write|syscall)$' | head -n 8
    } | tee "$dir/summary.txt" >&2
}

# ---------------------------------------------------------------------------------------

main() {
    local t_start
    t_start=$(date +%s)
    ensure_tools
    build

    RUN=$(mktemp -d "${BENCH_TMPDIR:-${TMPDIR:-/tmp}}/tagwarden-bench.XXXXXX")
    chmod 755 "$RUN" # nginx's workers may run as another user
    local avail_kb need_gib=1
    needs_big && need_gib=6
    avail_kb=$(df -Pk "$RUN" | awk 'NR == 2 { print $4 }')
    [ "$avail_kb" -ge $((need_gib * 1024 * 1024)) ] ||
        die "need $need_gib GiB free under $RUN, have $((avail_kb / 1024)) MiB (set BENCH_TMPDIR)"
    : >"$RUN/results.tsv"
    : >"$RUN/meta"

    meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
    meta command "$_BENCH_COMMAND"
    meta rounds "$ROUNDS"
    meta wrk_seconds "$WRK_SECONDS"
    meta put_connections "$PUT_CONNECTIONS"
    meta ab_version "$(ab -V 2>&1 | head -n 1 | sed 's/^This is //; s/, Version / /; s/ <.*//')"
    meta dl10_repeat "$DL10_REPEAT"
    meta_machine
    meta registry_version "$(docker-registry --version 2>&1 | awk '{ print $(NF-1), $NF }')"
    meta nginx_version "$(nginx -v 2>&1 | sed 's/^nginx version: //')"
    meta haproxy_version "$(haproxy -v 2>&1 | head -n 1 | awk '{ print $1, $3 }')"
    meta curl_version "$(curl --version | head -n 1 | awk '{ print $1, $2 }')"
    meta wrk_version "$(wrk -v 2>&1 | head -n 1 | awk '{ print $1, $2 }')"

    read -r P_REG P_TW P_TWADMIN P_NGX P_HAP <<<"$(free_ports 5)"
    start_registry "$P_REG"
    start_tagwarden
    start_nginx
    start_haproxy
    seed
    warm_up
    [ "${PROFILE:-0}" != 1 ] || profile_download

    local measurements=()
    measuring dl_1g && measurements+=(run_dl_big)
    measuring dl_10m && measurements+=(run_dl_small)
    measuring ul_mono && measurements+=(run_ul_mono)
    [ "$CHUNKED" = 1 ] && measuring ul_chunked && measurements+=(run_ul_chunked)
    measuring manifest_get && measurements+=(run_manifest_get)
    measuring manifest_head && measurements+=(run_manifest_head)
    measuring manifest_put && measurements+=(run_manifest_put)
    measuring manifest_put_1 && measurements+=(run_manifest_put_1)

    local r i m p
    for r in $(seq 1 "$ROUNDS"); do
        log "round $r of $ROUNDS"
        for m in "${measurements[@]}"; do
            for i in 0 1 2 3; do
                p=${PATHS[$(((i + r - 1) % 4))]}
                "$m" "$p" "$r"
            done
        done
    done

    record hwm_end tagwarden 0 "$(python3 "$HELPER" status-kb "$TW_PID" VmHWM)"
    record hwm_end haproxy 0 "$(python3 "$HELPER" status-kb "$HAP_PID" VmHWM)"
    if [ "$TW_PUTS" -gt 0 ]; then
        meta tagwarden_puts "$TW_PUTS"
        meta ledger_bindings "$(PGCONNECT_TIMEOUT=10 timeout 60 psql "$TW_DB_URL" -XAtqc \
            "select count(*) from tag_bindings where repository = 'bench/put'" 2>/dev/null || echo '?')"
    fi
    meta load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
    local elapsed=$(($(date +%s) - t_start))
    meta elapsed "$((elapsed / 60)) min $((elapsed % 60)) s (build included)"

    python3 "$HELPER" report "$RUN/results.tsv" "$RUN/meta" "$BENCH_OUT"
    log "wrote $BENCH_OUT"
    if grep -q $'\tFAIL$' "$RUN/results.tsv"; then
        log "some measurements failed; see the report"
        return 1
    fi
}

main "$@"
