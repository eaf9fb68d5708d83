# Shared by scripts/fuzz, scripts/soak, scripts/faults and scripts/openapi-check (sourced, not run).
#
# A throwaway PostgreSQL cluster in a temporary directory (trust auth, C.UTF-8,
# as the postgres OS user when root), the release binary, minicrm servers
# started with DATABASE_URL / JWT_SECRET / LISTEN_ADDR, and one EXIT trap that
# stops every server and the cluster and removes the directory. Logs of a
# failed run are kept in a directory that is printed.
#
#   mc_setup NAME              temp dir, the trap, PostgreSQL binaries (installed when root)
#   mc_cluster_init PORT       initdb + start on 127.0.0.1:PORT; exports PGHOST/PGPORT/PGUSER
#   mc_cluster_start / mc_cluster_stop [MODE]
#   mc_createdb DB
#   mc_build                   cargo build (release unless MC_PROFILE=debug); sets MC_BIN
#   mc_server_start NAME ADDR DB [VAR=VALUE...]   sets MC_SERVER_PID; log in $MC_TMP/NAME.log
#   mc_wait_ready ADDR [SECS]
#   mc_server_stop PID         SIGTERM, then wait (SIGKILL after 30 s)

MC_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
MC_JWT_SECRET=${MC_JWT_SECRET:-reliability-secret-reliability-secret!}
MC_PIDS=()
MC_TMP=
MC_PG_DATA=
MC_PG_PORT=
MC_PG_OPTS=

mc_log() { printf '\n== %s\n' "$*" >&2; }

mc_pg_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && { echo "$d"; return; }
  done
}

mc_as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

mc_apt_install() {
  if [ "$(id -u)" != 0 ]; then
    echo "missing: $* — install them: sudo apt-get install -y $*" >&2
    exit 1
  fi
  mc_log "installing $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

mc_cleanup() {
  local rc=$?
  set +e
  local pid
  for pid in "${MC_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
  done
  # Servers started by the Python drivers record their ids here.
  if [ -n "$MC_TMP" ] && [ -f "$MC_TMP/pids" ]; then
    while read -r pid; do
      [ -n "$pid" ] && [ -e "/proc/$pid" ] && grep -q minicrm "/proc/$pid/cmdline" 2>/dev/null \
        && kill -TERM "$pid" 2>/dev/null
    done <"$MC_TMP/pids"
  fi
  for pid in "${MC_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  done
  if [ -n "$MC_PG_DATA" ] && [ -d "$MC_PG_DATA" ]; then
    mc_as_pg "$MC_PG_BIN/pg_ctl" -D "$MC_PG_DATA" stop -m immediate >/dev/null 2>&1
  fi
  if [ -n "$MC_TMP" ] && [ -d "$MC_TMP" ]; then
    if [ "$rc" != 0 ] || [ -n "${MC_KEEP_LOGS:-}" ]; then
      local keep
      keep=$(mktemp -d "/tmp/minicrm-$MC_NAME-logs.XXXXXX")
      cp "$MC_TMP"/*.log "$MC_TMP"/*.jsonl "$MC_TMP"/*.txt "$MC_TMP"/*.json "$keep"/ 2>/dev/null
      cp -r "$MC_TMP/report" "$keep"/ 2>/dev/null
      echo "logs kept in $keep" >&2
    fi
    rm -rf "$MC_TMP"
  fi
  exit "$rc"
}

mc_setup() {
  MC_NAME=$1
  MC_PG_BIN=$(mc_pg_bin)
  [ -n "$MC_PG_BIN" ] || { mc_apt_install postgresql postgresql-contrib; MC_PG_BIN=$(mc_pg_bin); }
  command -v psql >/dev/null || mc_apt_install postgresql-client
  export PATH="$MC_PG_BIN:$PATH"
  MC_TMP=$(mktemp -d "/tmp/minicrm-$MC_NAME.XXXXXX")
  chmod 755 "$MC_TMP"
  [ "$(id -u)" = 0 ] && chown postgres "$MC_TMP"
  : >"$MC_TMP/pids"
  chmod 666 "$MC_TMP/pids"
  trap mc_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  export MC_TMP MC_ROOT MC_JWT_SECRET MC_PG_BIN
  export PYTHONDONTWRITEBYTECODE=1
}

mc_cluster_init() {
  MC_PG_PORT=$1
  MC_PG_DATA="$MC_TMP/pgdata"
  MC_PG_OPTS="-c listen_addresses=127.0.0.1 -c port=$MC_PG_PORT -c unix_socket_directories=$MC_TMP \
-c max_connections=200 -c shared_buffers=256MB ${MC_PG_EXTRA_OPTS:-}"
  mc_log "starting a throwaway PostgreSQL ($MC_PG_BIN) on 127.0.0.1:$MC_PG_PORT in $MC_TMP"
  mc_as_pg initdb -D "$MC_PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-instructions >/dev/null
  mc_cluster_start
  export PGHOST=127.0.0.1 PGPORT=$MC_PG_PORT PGUSER=postgres
  export MC_PG_PORT MC_PG_DATA MC_PG_OPTS
}

mc_cluster_start() {
  mc_as_pg pg_ctl -D "$MC_PG_DATA" -l "$MC_TMP/postgres.log" -w -o "$MC_PG_OPTS" start >/dev/null
}

mc_cluster_stop() {
  mc_as_pg pg_ctl -D "$MC_PG_DATA" -m "${1:-fast}" -w stop >/dev/null
}

mc_createdb() {
  psql -X -q -v ON_ERROR_STOP=1 -d postgres -c "CREATE DATABASE \"$1\"" >/dev/null
}

mc_db_url() { echo "postgres://postgres@127.0.0.1:$MC_PG_PORT/$1"; }

mc_build() {
  local profile=${MC_PROFILE:-release}
  mc_log "building the $profile binary"
  if [ "$profile" = release ]; then
    (cd "$MC_ROOT" && cargo build --release -q)
  else
    (cd "$MC_ROOT" && cargo build -q)
  fi
  MC_BIN="$MC_ROOT/target/$profile/minicrm"
  export MC_BIN
}

# mc_server_start NAME ADDR DB [VAR=VALUE...]: extra variables override the defaults.
mc_server_start() {
  local name=$1 addr=$2 db=$3
  shift 3
  env DATABASE_URL="$(mc_db_url "$db")" JWT_SECRET="$MC_JWT_SECRET" LISTEN_ADDR="$addr" \
    ACCESS_TOKEN_TTL_SECS=86400 \
    AUTH_ATTEMPTS_PER_EMAIL_PER_MINUTE=100000000 AUTH_ATTEMPTS_PER_ADDRESS_PER_MINUTE=100000000 \
    RUST_LOG="${RUST_LOG:-warn}" NO_COLOR=1 "$@" \
    "$MC_BIN" serve >"$MC_TMP/$name.log" 2>&1 &
  MC_SERVER_PID=$!
  MC_PIDS+=("$MC_SERVER_PID")
}

mc_wait_ready() {
  python3 - "$1" "${2:-60}" <<'PY'
import sys, time, urllib.request
addr, secs = sys.argv[1], float(sys.argv[2])
deadline = time.monotonic() + secs
while time.monotonic() < deadline:
    try:
        urllib.request.urlopen(f"http://{addr}/readyz", timeout=1)
        sys.exit(0)
    except Exception:
        time.sleep(0.1)
sys.exit(f"the server on {addr} did not become ready in {secs:g} s")
PY
}

mc_server_stop() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
