#!/usr/bin/env bash
# The Capacity API benchmark suite: one command, one table.
#
#   bench/run.sh
#
# Builds the release binaries, installs wrk if missing (Debian package),
# prepares the datasets (small = the seed; large = generated once by
# capacity-datagen and cached under bench/data/), then for every backend ×
# dataset runs each workload against a fresh server process: a warm-up, then
# a measured run (64 connections), and prints one table with every figure
# as a ratio to the baseline server measured in the same run: a full
# baseline run opens the suite, and each workload is paired with a short
# baseline run just before it, so that load from other processes on this
# shared machine moves both figures of a ratio alike. Before each pair it
# waits (up to BENCH_QUIET_WAIT s) for the machine to be idle and reports how
# busy it was. Raw wrk output and server logs go to bench/results/<time>/.
#
# Knobs (environment): BENCH_DURATION (s, default 10), BENCH_WARMUP (s, 3),
# BENCH_BASELINE_DURATION (s, the paired baseline runs, 5), BENCH_QUIET_WAIT
# (s, 30),
# BENCH_CONNECTIONS (64), BENCH_THREADS (wrk threads, 2), BENCH_DATASETS
# ("small large"), BENCH_LARGE_USAGE (usage records of the large dataset,
# 10000000), BENCH_USAGE_ALLOCS (allocations per usage batch, 10),
# BENCH_WORKLOADS (a grep -E pattern on workload names, default all),
# NOISE_CLIENTS (clients pulling the 100k cost report in workload 7, 4),
# BENCH_BIN (a directory of release binaries to run instead of building),
# BENCH_RUST_LOG (the server's RUST_LOG, default info: one JSON log line per
# request written to a file, as deployed), BENCH_PORT (18080),
# BENCH_BACKENDS ("sqlite postgres"; PostgreSQL runs when its server
# answers), BENCH_PG_URL (the PostgreSQL server, a superuser without a
# database name: postgres://postgres@127.0.0.1:5432).
#
# PostgreSQL: each run creates its own databases, capacity_bench_<time>_<dataset>,
# and drops them at the end. The small one is loaded by `capacity demo`; the
# large one is a copy (CREATE DATABASE … TEMPLATE) of
# capacity_bench_large_<key>, made once from the SQLite large dataset by
# `capacity migrate` + `capacity-datagen --copy-to-postgres` and kept as a
# cache (like bench/data/; drop it with
# `psql "$BENCH_PG_URL/postgres" -c 'DROP DATABASE capacity_bench_large_<key>'`).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${BENCH_DURATION:-10}
WARMUP=${BENCH_WARMUP:-3}
BASE_DURATION=${BENCH_BASELINE_DURATION:-5}
QUIET_WAIT=${BENCH_QUIET_WAIT:-30}
CONNS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
DATASETS=${BENCH_DATASETS:-small large}
LARGE_USAGE=${BENCH_LARGE_USAGE:-10000000}
USAGE_ALLOCS=${BENCH_USAGE_ALLOCS:-10}
ONLY=${BENCH_WORKLOADS:-.}
BACKENDS=${BENCH_BACKENDS:-sqlite postgres}
PG_URL=${BENCH_PG_URL:-postgres://postgres@127.0.0.1:5432}
PG_URL=${PG_URL%/}
# A port nothing listens on (other people's servers run on this machine too).
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
  local p
  for _ in $(seq 1 200); do
    p=$((20000 + RANDOM % 20000))
    port_free "$p" && { echo "$p"; return; }
  done
  echo "no free port found" >&2
  return 1
}
PORT=${BENCH_PORT:-$(free_port)}
BASE_PORT=$(free_port)
export CAPACITY_NOW=2026-04-15T06:00:00Z
export CAPACITY_LOG_FORMAT=json
export RUST_LOG=${BENCH_RUST_LOG:-info}

# BENCH_BIN: run these binaries (another build, e.g. the commit before a
# change) instead of building this checkout's.
BIN=${BENCH_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release}
DATA=$ROOT/bench/data
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/results/$STAMP
WORK=$OUT/work
mkdir -p "$DATA" "$WORK"
ROWS=$OUT/rows.tsv
: >"$ROWS"
SUITE_START=$SECONDS
PG_MADE=() # PostgreSQL databases this run made, dropped at exit

say() { printf '[bench %3ds] %s\n' $((SECONDS - SUITE_START)) "$*" >&2; }

# ---------------------------------------------------------------- tools
if ! command -v wrk >/dev/null 2>&1; then
  say "installing wrk (Debian package)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && apt-get install -y -qq wrk >/dev/null
  else
    sudo apt-get update -qq && sudo apt-get install -y -qq wrk >/dev/null
  fi
fi
command -v curl >/dev/null || { echo "bench/run.sh needs curl" >&2; exit 1; }

if [ -n "${BENCH_BIN:-}" ]; then
  say "using the binaries in $BIN (BENCH_BIN)"
else
  say "building release binaries"
  cargo build --release --locked -p capacity -p capacity-bench-baseline -p capacity-bench-datagen >&2
fi

# ---------------------------------------------------------------- servers
SERVER_PID=
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=
}
trap '[ "$(type -t stop_noise)" != function ] || stop_noise; stop_server; stop_baseline; [ "$(type -t drop_pg_databases)" != function ] || drop_pg_databases' EXIT INT TERM

wait_ready() { # url
  for _ in $(seq 1 600); do
    if curl -fs -o /dev/null "$1"; then
      # Ours, not someone else's that took the port meanwhile?
      kill -0 "$SERVER_PID" 2>/dev/null && return 0
      echo "server exited; see $OUT" >&2
      return 1
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "server exited; see $OUT" >&2; return 1; }
    sleep 0.05
  done
  echo "server not ready after 30 s" >&2
  return 1
}

start_service() { # database-url log
  port_free "$PORT" || { echo "port $PORT is taken by another process" >&2; return 1; }
  "$BIN/capacity" serve --database-url "$1" --listen "127.0.0.1:$PORT" >>"$2" 2>&1 &
  SERVER_PID=$!
  wait_ready "http://127.0.0.1:$PORT/healthz"
}

peak_rss_mib() { # VmHWM of the running server, MiB
  awk '/^VmHWM:/ { printf "%.0f", $2 / 1024 }' "/proc/$SERVER_PID/status"
}

# ---------------------------------------------------------------- wrk
# "total busy server wrk" CPU ticks: the machine's (all cores), the server's,
# and this shell's reaped children's (wrk). What is left of the busy ticks
# during a run is other processes' load on this shared machine.
# On PostgreSQL the server's figure includes the database backends serving
# it (processes titled with the run's database name, PG_BACKENDS).
cpu_ticks() {
  local machine server=0 children
  machine=$(awk '/^cpu / { print $2+$3+$4+$5+$6+$7+$8+$9, $2+$3+$4+$7+$8+$9 }' /proc/stat)
  if [ -n "$SERVER_PID" ] && [ -r "/proc/$SERVER_PID/stat" ]; then
    server=$(awk '{ print $14 + $15 }' "/proc/$SERVER_PID/stat")
    if [ -n "${PG_BACKENDS:-}" ]; then
      server=$((server + $(pg_backend_ticks "$PG_BACKENDS")))
    fi
  fi
  children=$(awk '{ print $16 + $17 }' "/proc/$$/stat")
  echo "$machine $server $children"
}
pg_backend_ticks() { # database name → CPU ticks of its backends
  local total=0 f pid
  for f in /proc/[0-9]*/cmdline; do
    pid=${f#/proc/}
    pid=${pid%/cmdline}
    # (Processes may exit meanwhile: their files vanish.)
    if { tr '\0' ' ' <"$f"; } 2>/dev/null | grep -q "^postgres: .* $1 "; then
      total=$((total + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
    fi
  done
  echo "$total"
}

RUN_NONCE=0
DRAIN=()
# measure NAME SCRIPT URL ARGS... → sets RPS P50 P99 STATUS_ERR SOCKET_ERR
measure() {
  local name=$1 script=$2 url=$3
  shift 3
  local wrk=(wrk "-t$THREADS" "-c$CONNS" --timeout 10s -H "Authorization: Bearer $TOKEN" -s "$script")
  RUN_NONCE=$((RUN_NONCE + 1))
  "${wrk[@]}" -d "${WARMUP}s" "$url" -- "$@" "$RUN_NONCE" >"$OUT/$name.warmup.txt" 2>&1
  [ ${#DRAIN[@]} -eq 0 ] || "${DRAIN[@]}" >/dev/null
  RUN_NONCE=$((RUN_NONCE + 1))
  local before after
  before=$(cpu_ticks)
  "${wrk[@]}" -d "${DURATION}s" "$url" -- "$@" "$RUN_NONCE" >"$OUT/$name.txt" 2>&1
  after=$(cpu_ticks)
  OTHERS=$(awk -v a="$before" -v b="$after" 'BEGIN { split(a, x, " "); split(b, y, " ");
    total = y[1] - x[1]; others = (y[2] - x[2]) - (y[3] - x[3]) - (y[4] - x[4]);
    if (others < 0) others = 0; printf "%.0f", 100 * others / (total + 1e-9) }')
  local line
  line=$(grep '^BENCH ' "$OUT/$name.txt" | tail -1)
  [ -n "$line" ] || { echo "wrk gave no result for $name; see $OUT/$name.txt" >&2; return 1; }
  local requests duration_us p50_us p99_us status_errors socket_errors
  eval "$(echo "${line#BENCH }" | tr ' ' '\n' | grep -E '^[a-z0-9_]+=[0-9]+$')"
  RPS=$(awk -v r="$requests" -v d="$duration_us" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
  P50=$p50_us
  P99=$p99_us
  STATUS_ERR=$status_errors
  SOCKET_ERR=$socket_errors
}

# row WORKLOAD BACKEND DATASET RPS P50 P99 RSS NOTE [BASELINE_RPS BUSY]  (RPS "-": skipped)
# Fields are separated by the ASCII unit separator (a tab would let `read`
# merge empty fields).
row() { printf '%s\037%s\037%s\037%s\037%s\037%s\037%s\037%s\037%s\037%s\n' "$1" "$2" "$3" "$4" "$5" "$6" "$7" "$8" "${9:--}" "${10:--}" >>"$ROWS"; }

errors_note() {
  local n=""
  [ "${STATUS_ERR:-0}" = 0 ] || n="$STATUS_ERR non-2xx answers! "
  [ "${SOCKET_ERR:-0}" = 0 ] || n="$n$SOCKET_ERR socket errors! "
  printf '%s' "$n"
}

# probe METHOD PATH [BODY] → the HTTP status code of one request
probe() {
  local args=(-s -o "$OUT/probe.body" -w '%{http_code}' -X "$1" -H "Authorization: Bearer $TOKEN")
  [ $# -lt 3 ] || args+=(-H 'Content-Type: application/json' --data "$3")
  curl "${args[@]}" "http://127.0.0.1:$PORT$2" || true
}

# ---------------------------------------------------------------- baseline
BASE_PID=
start_baseline() {
  port_free "$BASE_PORT" || { echo "port $BASE_PORT is taken by another process" >&2; return 1; }
  "$BIN/bench-baseline" --listen "127.0.0.1:$BASE_PORT" >>"$OUT/baseline.log" 2>&1 &
  BASE_PID=$!
  local saved=$SERVER_PID
  SERVER_PID=$BASE_PID
  wait_ready "http://127.0.0.1:$BASE_PORT/"
  SERVER_PID=$saved
}
stop_baseline() {
  [ -z "$BASE_PID" ] || { kill -TERM "$BASE_PID" 2>/dev/null || true; wait "$BASE_PID" 2>/dev/null || true; }
  BASE_PID=
}

# baseline_run NAME SECONDS WARMUP → BASE_RPS (and the wrk figures)
baseline_run() {
  DRAIN=()
  local saved=$SERVER_PID
  SERVER_PID=$BASE_PID
  PG_BACKENDS= TOKEN=none DURATION=$2 WARMUP=$3 measure "baseline-$1" bench/lua/report.lua \
    "http://127.0.0.1:$BASE_PORT/v1/capacity?workspace_id=WS-26-000021"
  SERVER_PID=$saved
  BASE_RPS=$RPS
  BASE_OTHERS=$OTHERS
}

# How busy the machine is (all processes, %), over one second.
busy_pct() {
  local a b
  a=$(awk '/^cpu / { print $2+$3+$4+$7+$8+$9, $5+$6 }' /proc/stat)
  sleep 1
  b=$(awk '/^cpu / { print $2+$3+$4+$7+$8+$9, $5+$6 }' /proc/stat)
  awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
    busy = y[1] - x[1]; idle = y[2] - x[2]; printf "%.0f", 100 * busy / (busy + idle + 1e-9) }'
}

# Waits (bounded) until no other process keeps the machine busy; sets BUSY.
wait_quiet() {
  local waited=0
  BUSY=$(busy_pct)
  while [ "$BUSY" -gt 20 ] && [ "$waited" -lt "$QUIET_WAIT" ]; do
    [ "$waited" -gt 0 ] || say "machine busy (${BUSY} %, other processes); waiting up to ${QUIET_WAIT} s"
    sleep 4
    waited=$((waited + 5))
    BUSY=$(busy_pct)
  done
}

# ---------------------------------------------------------------- PostgreSQL
PG_STAMP=capacity_bench_$(echo "$STAMP" | tr 'A-Z' 'a-z')
pg() { # SQL...: run on the server's maintenance database, quietly
  psql -X -q -At -v ON_ERROR_STOP=1 "$PG_URL/postgres" "$@"
}
pg_reachable() {
  command -v psql >/dev/null 2>&1 && pg -c 'SELECT 1' >/dev/null 2>&1
}
drop_pg_databases() {
  local db
  for db in "${PG_MADE[@]}"; do
    [ -n "$db" ] || continue
    pg -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
  done
  PG_MADE=()
}
pg_db_exists() { [ "$(pg -c "SELECT 1 FROM pg_database WHERE datname = '$1'")" = 1 ]; }

# The PostgreSQL copy of the large dataset is cached as a template database
# keyed by the SQLite dataset it copies and PostgreSQL's migrations.
pg_large_key() {
  {
    large_key
    cat "$ROOT"/crates/capacity-store-postgres/migrations/*.sql "$ROOT/bench/datagen/src/postgres.rs"
  } | sha256sum | cut -c1-12
}

# Makes (or reuses) the template capacity_bench_large_KEY; sets PG_TEMPLATE
# and PG_COPY_SECONDS.
ensure_pg_large() {
  ensure_large
  PG_TEMPLATE=capacity_bench_large_$(pg_large_key)
  if pg_db_exists "$PG_TEMPLATE"; then
    say "large dataset (PostgreSQL): cached template $PG_TEMPLATE"
  else
    say "large dataset (PostgreSQL): copying $LARGE_DB into template $PG_TEMPLATE (once; cached afterwards)"
    local old
    for old in $(pg -c "SELECT datname FROM pg_database WHERE datname LIKE 'capacity\_bench\_large\_%'"); do
      pg -c "DROP DATABASE IF EXISTS $old" >/dev/null 2>&1 || say "could not drop stale template $old (in use?)"
    done
    local loading=${PG_TEMPLATE}_loading t0=$SECONDS
    pg -c "CREATE DATABASE $loading"
    PG_MADE+=("$loading")
    "$BIN/capacity" migrate --database-url "$PG_URL/$loading" >>"$OUT/prepare.log" 2>&1
    "$BIN/capacity-datagen" --db "$LARGE_DB" --copy-to-postgres "$PG_URL/$loading" \
      >"$OUT/pg-copy.env" 2>>"$OUT/prepare.log"
    local secs=$((SECONDS - t0)) mib
    mib=$(pg -c "SELECT pg_database_size('$loading') / 1048576")
    pg -c "ALTER DATABASE $loading RENAME TO $PG_TEMPLATE"
    pg -c "COMMENT ON DATABASE $PG_TEMPLATE IS 'PG_COPY_SECONDS=$secs PG_MIB=$mib PG_COPIED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)'"
    local kept=() db
    for db in "${PG_MADE[@]}"; do [ "$db" = "$loading" ] || kept+=("$db"); done
    PG_MADE=("${kept[@]}")
  fi
  local comment
  comment=$(pg -c "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '$PG_TEMPLATE'")
  PG_COPY_SECONDS=$(echo "$comment" | sed -n 's/.*PG_COPY_SECONDS=\([0-9]*\).*/\1/p')
  PG_MIB=$(echo "$comment" | sed -n 's/.*PG_MIB=\([0-9]*\).*/\1/p')
  PG_COPIED_AT=$(echo "$comment" | sed -n 's/.*PG_COPIED_AT=\([^ ]*\).*/\1/p')
}

# ---------------------------------------------------------------- datasets
# The generated dataset is cached by a key over what shapes it.
large_key() {
  {
    cat "$ROOT/bench/datagen/src/main.rs" "$ROOT"/crates/capacity-store-sqlite/migrations/*.sql \
      "$ROOT/crates/capacity-api/src/demo.rs"
    echo "usage=$LARGE_USAGE now=$CAPACITY_NOW"
  } | sha256sum | cut -c1-12
}

# Makes (or reuses) bench/data/large-KEY.db and .env.
ensure_large() {
  LARGE_DB=$DATA/large-$(large_key).db
  if [ -f "$LARGE_DB" ] && [ -f "$LARGE_DB.env" ]; then
    say "large dataset: cached $LARGE_DB"
    return
  fi
  say "large dataset: generating $LARGE_DB (once; cached afterwards)"
  rm -f "$DATA"/large-*.db "$DATA"/large-*.db.env "$DATA"/large-*.db-wal "$DATA"/large-*.db-shm
  local tmp=$DATA/generating.db
  rm -f "$tmp" "$tmp-wal" "$tmp-shm"
  local t0=$SECONDS
  "$BIN/capacity" demo --database-url "sqlite://$tmp" >/dev/null 2>&1
  "$BIN/capacity-datagen" --db "$tmp" --workspaces 2000 --alloc-workspaces 1000 \
    --allocations 1000000 --big-workspace-allocations 100000 --usage "$LARGE_USAGE" >"$tmp.env"
  {
    echo "LOAD_SECONDS=$((SECONDS - t0))"
    echo "GENERATED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "FILE_MIB=$(($(stat -c %s "$tmp") / 1048576))"
  } >>"$tmp.env"
  mv "$tmp" "$LARGE_DB"
  mv "$tmp.env" "$LARGE_DB.env"
}

# Prepares DATASET for BACKEND at URL; sets the workload parameters.
prepare() { # backend dataset url
  local backend=$1 dataset=$2 url=$3
  case "$backend:$dataset" in
    sqlite:small)
      local f=${url#sqlite://}
      rm -f "$f" "$f-wal" "$f-shm"
      local t0=$EPOCHREALTIME
      "$BIN/capacity" demo --database-url "$url" >/dev/null 2>>"$OUT/prepare.log"
      LOAD_NOTE="capacity demo in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }') s; $(($(cat "$f" "$f-wal" 2>/dev/null | wc -c) / 1024)) KiB with its WAL"
      ;;
    sqlite:large)
      ensure_large
      local f=${url#sqlite://}
      rm -f "$f" "$f-wal" "$f-shm"
      say "large dataset: copying to a working file"
      cp "$LARGE_DB" "$f"
      # shellcheck disable=SC1090
      . "$LARGE_DB.env"
      LOAD_NOTE="generated in ${LOAD_SECONDS} s (capacity demo + capacity-datagen, $GENERATED_AT, cached); ${FILE_MIB} MiB; $GEN_POOLS pools, $GEN_ALLOCATIONS allocations, $GEN_USAGE_RECORDS usage records"
      ;;
    postgres:small)
      local db=${url##*/}
      pg -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
      PG_MADE+=("$db")
      local t0=$EPOCHREALTIME
      "$BIN/capacity" demo --database-url "$url" >/dev/null 2>>"$OUT/prepare.log"
      LOAD_NOTE="capacity demo in $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }') s; $(pg -c "SELECT pg_database_size('$db') / 1048576") MiB"
      ;;
    postgres:large)
      ensure_pg_large
      local db=${url##*/}
      pg -c "DROP DATABASE IF EXISTS $db WITH (FORCE)"
      say "large dataset (PostgreSQL): cloning $PG_TEMPLATE"
      local t0=$EPOCHREALTIME
      pg -c "CREATE DATABASE $db TEMPLATE $PG_TEMPLATE STRATEGY FILE_COPY" 2>/dev/null ||
        pg -c "CREATE DATABASE $db TEMPLATE $PG_TEMPLATE"
      PG_MADE+=("$db")
      local clone
      clone=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
      # shellcheck disable=SC1090
      . "$LARGE_DB.env"
      LOAD_NOTE="the SQLite large dataset copied in ${PG_COPY_SECONDS:-?} s (capacity migrate + capacity-datagen --copy-to-postgres + VACUUM ANALYZE, $PG_COPIED_AT, cached as $PG_TEMPLATE); cloned in $clone s; ${PG_MIB:-?} MiB; $GEN_POOLS pools, $GEN_ALLOCATIONS allocations, $GEN_USAGE_RECORDS usage records"
      ;;
    *)
      LOAD_NOTE=""
      return 1
      ;;
  esac
  TOKEN=$(CAPACITY_DATABASE_URL=$url "$BIN/capacity" tokens create --platform --scope write 2>>"$OUT/prepare.log" | tail -1)
}

# Small dataset: pools with room for the writes, made through the API
# (so this works on any backend): 20 workspaces × 5 resource types, one
# allocation on each. Sets the id ranges of the write workloads.
small_write_fixture() {
  local types=(talent_hours compute storage_gb agent_credits intelligence_units)
  local first_pool="" last_pool="" first_alloc="" last_alloc="" pool alloc n=0
  for w in $(seq 300001 300020); do
    for t in "${types[@]}"; do
      n=$((n + 1))
      pool=$(api POST /v1/capacity \
        "{\"workspace_id\":\"WS-26-$w\",\"organization_id\":\"ORG-26-300000\",\"resource_type\":\"$t\",\"total\":1000000000}" |
        sed -n 's/.*"id":"CAP-[0-9][0-9]-\([0-9]*\)".*/\1/p')
      pool=$((10#$pool))
      alloc=$(api POST /v1/capacity/allocations \
        "{\"capacity_pool_id\":\"CAP-26-$(printf %06d "$pool")\",\"service_line_id\":\"LIN-26-3$(printf %06d "$n")\",\"committed\":10}" |
        sed -n 's/.*"id":"ALLOC-[0-9][0-9]-\([0-9]*\)".*/\1/p')
      alloc=$((10#$alloc))
      first_pool=${first_pool:-$pool} last_pool=$pool
      first_alloc=${first_alloc:-$alloc} last_alloc=$alloc
    done
  done
  POOL_LO=$first_pool POOL_HI=$last_pool WRITE_ALLOC_LO=$first_alloc WRITE_ALLOC_HI=$last_alloc
}

api() { # METHOD PATH BODY: one authenticated JSON request, the body on stdout
  curl -fsS -X "$1" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    "http://127.0.0.1:$PORT$2" --data "$3"
}

# ---------------------------------------------------------------- workloads
# run_workload NAME BACKEND DATASET DBURL PROBE_METHOD PROBE_PATH PROBE_BODY SCRIPT PATH ARGS...
run_workload() {
  local name=$1 backend=$2 dataset=$3 url=$4 pm=$5 pp=$6 pb=$7 script=$8 path=$9
  shift 9
  echo "$name" | grep -Eq -- "$ONLY" || return 0
  local log=$OUT/server-$backend-$dataset.log
  start_service "$url" "$log"
  local code
  if [ -n "$pb" ]; then code=$(probe "$pm" "$pp" "$pb"); else code=$(probe "$pm" "$pp"); fi
  case "$code" in
    404 | 405)
      stop_server
      row "$name" "$backend" "$dataset" "-" "-" "-" "-" "skipped: $pm ${pp%%\?*} answers $code (not built on this branch)"
      say "$name / $backend / $dataset: skipped ($code)"
      return
      ;;
    2??) ;;
    *)
      stop_server
      row "$name" "$backend" "$dataset" "-" "-" "-" "-" "FAILED: probe answered $code: $(head -c 200 "$OUT/probe.body")"
      say "$name / $backend / $dataset: probe answered $code"
      return
      ;;
  esac
  local tag
  tag=$(echo "$name-$backend-$dataset" | tr -c 'a-zA-Z0-9\n' '_')
  # The paired baseline, just before (the service is idle meanwhile).
  wait_quiet
  local busy=$BUSY
  baseline_run "$tag" "$BASE_DURATION" 1
  # After the warm-up, the probe goes again: it queues behind whatever the
  # warm-up left in flight, so the measured run starts on an idle server.
  DRAIN=(probe "$pm" "$pp")
  [ -z "$pb" ] || DRAIN+=("$pb")
  if ! measure "$tag" "bench/lua/$script" "http://127.0.0.1:$PORT$path" "$@"; then
    stop_server
    row "$name" "$backend" "$dataset" "-" "-" "-" "-" "FAILED: wrk gave no result (bench/results/$STAMP/$tag.txt)"
    return
  fi
  local rss note
  rss=$(peak_rss_mib)
  stop_server
  note=$(errors_note)
  if [ "$script" = usage_batch.lua ]; then
    note="$note$((RPS * ${USAGE_RECORDS:-1000})) records/s (batches of ${USAGE_RECORDS:-1000} over $USAGE_ALLOCS allocations)"
  fi
  row "$name" "$backend" "$dataset" "$RPS" "$P50" "$P99" "$rss" "$note" "$BASE_RPS" "$BASE_OTHERS / $OTHERS"
  say "$name / $backend / $dataset: $RPS req/s, p50 ${P50} us, p99 ${P99} us, peak RSS ${rss} MiB (baseline $BASE_RPS req/s; other processes ${BASE_OTHERS} % / ${OTHERS} % of the machine; ${busy} % busy before)"
}

# ---------------------------------------------------------------- noisy neighbour
NOISE_PIDS=()
NOISE_STOP=$OUT/noise.stop
stop_noise() { # the loops end after the request each has in flight
  [ ${#NOISE_PIDS[@]} -gt 0 ] || return 0
  touch "$NOISE_STOP"
  local p
  for p in "${NOISE_PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
  NOISE_PIDS=()
  rm -f "$NOISE_STOP"
}

# One client pulling the whole cost report of WORKSPACE, page after page
# (following meta.cursor), over and over; counts pages and whole reports.
noise_client() { # token workspace pages-file
  local token=$1 ws=$2 file=$3 cursor="" pages=0 reports=0 body next
  local base="http://127.0.0.1:$PORT/v1/capacity/costs?workspace_id=$ws&period=2026-04"
  while [ ! -e "$NOISE_STOP" ]; do
    body=$(curl -s --max-time 60 -H "Authorization: Bearer $token" "$base${cursor:+&cursor=$cursor}") || body=
    pages=$((pages + 1))
    next=$(printf '%s' "$body" | tail -c 200 | sed -n 's/.*"cursor":"\(c[0-9a-f]*\)".*/\1/p')
    if [ -n "$next" ]; then cursor=$next; else cursor=""; reports=$((reports + 1)); fi
    echo "$pages $reports" >"$file"
  done
}

# /healthz once every 100 ms; one latency (s) per line.
health_prober() { # file
  while [ ! -e "$NOISE_STOP" ]; do
    curl -s -o /dev/null --max-time 10 -w '%{time_total}\n' "http://127.0.0.1:$PORT/healthz" >>"$1" || echo 10 >>"$1"
    sleep 0.1
  done
}

# Workload 7 (issue 19): workload 2's random gets while NOISE_CLIENTS clients of
# the big workspace's organization pull its 100,000-allocation cost report in
# a loop, and /healthz is probed every 100 ms. The gets go with the platform
# token to allocations spread over the dataset (other organizations').
run_noisy() { # backend dataset url yy read_lo read_hi
  local name="7. get allocation, 4 clients pulling the 100k cost report" backend=$1 dataset=$2 url=$3
  local yy=$4 lo=$5 hi=$6
  echo "$name" | grep -Eq -- "$ONLY" || return 0
  [ -n "${BIG_WORKSPACE:-}" ] || return 0
  local n=${NOISE_CLIENTS:-4}
  local org
  org=$(printf 'ORG-%s-%06d' "$yy" "$WS_LO")
  local noisy
  noisy=$(CAPACITY_DATABASE_URL=$url "$BIN/capacity" tokens create --organization "$org" --scope read 2>>"$OUT/prepare.log" | tail -1)
  local log=$OUT/server-$backend-$dataset.log
  start_service "$url" "$log"
  local idle_rss
  idle_rss=$(awk '/^VmRSS:/ { printf "%.0f", $2 / 1024 }' "/proc/$SERVER_PID/status")
  local probe_path
  probe_path=$(printf '/v1/capacity/allocations/ALLOC-%s-%06d' "$yy" "$lo")
  local code
  code=$(curl -s -o "$OUT/probe.body" -w '%{http_code}' -H "Authorization: Bearer $noisy" \
    "http://127.0.0.1:$PORT/v1/capacity/costs?workspace_id=$BIG_WORKSPACE&period=2026-04")
  if [ "$code" != 200 ]; then
    stop_server
    row "$name" "$backend" "$dataset" "-" "-" "-" "-" "FAILED: the cost report answered $code: $(head -c 200 "$OUT/probe.body")"
    return
  fi
  local tag
  tag=$(echo "noisy-$backend-$dataset" | tr -c 'a-zA-Z0-9\n' '_')
  wait_quiet
  baseline_run "$tag" "$BASE_DURATION" 1
  local i
  for i in $(seq 1 "$n"); do
    noise_client "$noisy" "$BIG_WORKSPACE" "$OUT/$tag.noise$i" &
    NOISE_PIDS+=($!)
  done
  : >"$OUT/$tag.healthz"
  health_prober "$OUT/$tag.healthz" &
  NOISE_PIDS+=($!)
  DRAIN=()
  if ! measure "$tag" bench/lua/get_allocation.lua "http://127.0.0.1:$PORT/" "$yy" "$lo" "$hi"; then
    stop_noise
    stop_server
    row "$name" "$backend" "$dataset" "-" "-" "-" "-" "FAILED: wrk gave no result (bench/results/$STAMP/$tag.txt)"
    return
  fi
  stop_noise
  local rss pages=0 reports=0 p r f health
  rss=$(peak_rss_mib)
  stop_server
  for f in "$OUT/$tag".noise*; do
    read -r p r <"$f" || continue
    pages=$((pages + p)) reports=$((reports + r))
  done
  health=$(sort -g "$OUT/$tag.healthz" | awk '{ v[NR] = $1 } END { if (NR == 0) { print "no probes"; exit }
    printf "/healthz p50 %.1f ms, max %.1f ms over %d probes", 1000 * v[int((NR + 1) / 2)], 1000 * v[NR], NR }')
  row "$name" "$backend" "$dataset" "$RPS" "$P50" "$P99" "$rss" \
    "$(errors_note)$health; $n noisy clients: $pages cost report pages ($reports whole reports) in warm-up + run; RSS idle $idle_rss MiB" \
    "$BASE_RPS" "$BASE_OTHERS / $OTHERS"
  say "$name / $backend / $dataset: $RPS req/s, p50 ${P50} us, p99 ${P99} us; $health; $pages pages; RSS $idle_rss -> $rss MiB"
}

# run_target BACKEND DATASET URL: every workload on one backend and dataset.
run_target() {
  local backend=$1 dataset=$2 url=$3
  say "=== $backend / $dataset ($url)"
  if ! prepare "$backend" "$dataset" "$url"; then
    row "all" "$backend" "$dataset" "-" "-" "-" "-" "skipped: no $dataset dataset for $backend yet"
    return
  fi
  PG_BACKENDS=
  [ "$backend" != postgres ] || PG_BACKENDS=${url##*/}
  local log=$OUT/server-$backend-$dataset.log
  # Time to serve: open (and migrate) the database, answer /healthz.
  local t0=$EPOCHREALTIME
  start_service "$url" "$log"
  local ready
  ready=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
  local yy=26 ws=WS-26-000021 demand_ws=WS-26-000021 read_lo=441 read_hi=444
  if [ "$dataset" = small ]; then
    small_write_fixture
  else
    # shellcheck disable=SC1090
    . "$LARGE_DB.env"
    yy=$ID_YEAR demand_ws=$BIG_WORKSPACE
    read_lo=$ALLOC_SEQ_LO read_hi=$ALLOC_SEQ_HI
    POOL_LO=$POOL_SEQ_LO POOL_HI=$POOL_SEQ_HI
    WRITE_ALLOC_LO=$ALLOC_SEQ_TYPICAL_LO WRITE_ALLOC_HI=$ALLOC_SEQ_HI
  fi
  stop_server
  DATASET_NOTES+=("$backend / $dataset: $LOAD_NOTE; server ready in $ready s")

  local any_alloc
  any_alloc=$(printf 'ALLOC-%s-%06d' "$yy" "$WRITE_ALLOC_LO")
  # Reads first, on the dataset as prepared; then the writes.
  run_workload "1. list pools (seed workspace)" "$backend" "$dataset" "$url" \
    GET "/v1/capacity?workspace_id=$ws" "" report.lua "/v1/capacity?workspace_id=$ws"
  if [ "$dataset" != small ]; then
    run_workload "1b. list pools (random workspace)" "$backend" "$dataset" "$url" \
      GET "/v1/capacity?workspace_id=WS-$yy-$WS_LO" "" list_pools_random.lua "/" "$yy" "$WS_LO" "$WS_ALLOC_HI"
  fi
  if [ "$dataset" != small ] && [ -n "${BIG_WORKSPACE:-}" ]; then
    run_workload "1c. list pools (the 100k-allocation workspace)" "$backend" "$dataset" "$url" \
      GET "/v1/capacity?workspace_id=$BIG_WORKSPACE" "" report.lua "/v1/capacity?workspace_id=$BIG_WORKSPACE"
  fi
  run_workload "2. get allocation (random)" "$backend" "$dataset" "$url" \
    GET "/v1/capacity/allocations/$(printf 'ALLOC-%s-%06d' "$yy" "$read_lo")" "" get_allocation.lua "/" "$yy" "$read_lo" "$read_hi"
  local demand="/v1/capacity/demand?workspace_id=$demand_ws&resource_type=talent_hours&period=2026-Q3"
  run_workload "5. demand forecast 2026-Q3" "$backend" "$dataset" "$url" \
    GET "$demand" "" report.lua "$demand"
  if [ "$dataset" != small ]; then
    run_noisy "$backend" "$dataset" "$url" "$yy" "$ALLOC_SEQ_TYPICAL_LO" "$read_hi"
  fi
  run_workload "3. create allocation" "$backend" "$dataset" "$url" \
    POST /v1/capacity/allocations "{\"capacity_pool_id\":\"$(printf 'CAP-%s-%06d' "$yy" "$POOL_LO")\",\"service_line_id\":\"LIN-$yy-99999999999999\",\"committed\":1}" \
    create_allocation.lua /v1/capacity/allocations "$yy" "$POOL_LO" "$POOL_HI"
  run_workload "4. patch allocation (immediate)" "$backend" "$dataset" "$url" \
    PATCH "/v1/capacity/allocations/$any_alloc" '{"committed_per_week": 2, "effective_immediately": true, "reason": "bench probe"}' \
    patch_allocation.lua / "$yy" "$WRITE_ALLOC_LO" "$WRITE_ALLOC_HI"
  USAGE_RECORDS=1000
  run_workload "6. usage ingestion" "$backend" "$dataset" "$url" \
    POST /v1/capacity/usage "{\"records\":[{\"id\":\"probe-1\",\"allocation_id\":\"$any_alloc\",\"quantity\":1,\"occurred_at\":\"2026-04-10T10:00:00Z\"}]}" \
    usage_batch.lua /v1/capacity/usage "$yy" "$WRITE_ALLOC_LO" "$WRITE_ALLOC_HI" "$USAGE_RECORDS" "$USAGE_ALLOCS"
}

# ---------------------------------------------------------------- the run
DATASET_NOTES=()
start_baseline
wait_quiet
baseline_run full "$DURATION" "$WARMUP"
row "0. baseline" "-" "-" "$RPS" "$P50" "$P99" "$(SERVER_PID=$BASE_PID peak_rss_mib)" \
  "fixed 645-byte JSON, no I/O $(errors_note)" "$RPS" "$OTHERS / $OTHERS"
say "baseline: $RPS req/s (machine ${BUSY} % busy before)"

PG_OK=
if echo " $BACKENDS " | grep -q ' postgres '; then
  if pg_reachable; then
    PG_OK=1
  else
    say "PostgreSQL: no server answers at $PG_URL (psql); its rows are skipped"
  fi
fi
for dataset in $DATASETS; do
  for backend in $BACKENDS; do
    case $backend in
      sqlite) run_target sqlite "$dataset" "sqlite://$WORK/$dataset.db" ;;
      postgres)
        if [ -n "$PG_OK" ]; then
          run_target postgres "$dataset" "$PG_URL/${PG_STAMP}_$dataset"
          drop_pg_databases
        else
          row "all" postgres "$dataset" "-" "-" "-" "-" "skipped: no PostgreSQL server answers at $PG_URL"
        fi
        ;;
      *) echo "unknown backend $backend (BENCH_BACKENDS: sqlite postgres)" >&2; exit 2 ;;
    esac
  done
done
stop_baseline

# ---------------------------------------------------------------- the table
{
  echo "Capacity API benchmark — $(date -u +%Y-%m-%dT%H:%M:%SZ) — $(nproc) cores, wrk ${THREADS} threads, ${CONNS} connections, ${WARMUP} s warm-up + ${DURATION} s per workload"
  echo "vs baseline = req/s ÷ the baseline's req/s measured just before (${BASE_DURATION} s); others = CPU used by other processes on this shared machine, % of all cores, during the baseline / the workload run (on PostgreSQL the backends serving the run's database count as the server, not as others); RSS = the server's peak (VmHWM; PostgreSQL's own memory not included)"
  echo
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
    workload backend dataset "req/s" "p50 ms" "p99 ms" "baseline req/s" "vs baseline" "peak RSS MiB" "others %" note
  echo '|---|---|---|--:|--:|--:|--:|--:|--:|--:|---|'
  while IFS=$'\037' read -r w b d rps p50 p99 rss note base busy; do
    if [ "$rps" = "-" ]; then
      printf '| %s | %s | %s | - | - | - | - | - | - | - | %s |\n' "$w" "$b" "$d" "$note"
    else
      printf '| %s | %s | %s | %s | %.2f | %.2f | %s | %.1f %% | %s | %s | %s |\n' "$w" "$b" "$d" "$rps" \
        "$(awk -v v="$p50" 'BEGIN { print v / 1000 }')" "$(awk -v v="$p99" 'BEGIN { print v / 1000 }')" \
        "$base" "$(awk -v r="$rps" -v b="$base" 'BEGIN { print 100 * r / b }')" "$rss" "$busy" "$note"
    fi
  done <"$ROWS"
  echo
  echo "Datasets:"
  for n in "${DATASET_NOTES[@]}"; do echo "- $n"; done
  echo
  echo "Suite time: $((SECONDS - SUITE_START)) s. Raw output: bench/results/$STAMP/"
} | tee "$OUT/table.md"

rm -rf "$WORK"
# One log line per request: tens of MiB per run uncompressed.
gzip -f "$OUT"/*.log 2>/dev/null || true
