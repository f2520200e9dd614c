#!/usr/bin/env bash
# Start, on this machine, what a cluster study needs: PostgreSQL 15 (Optuna storage and the
# MLflow backend store), an MLflow tracking server, and a multi-node Ray cluster (a head plus
# one worker node per HPSTUDY_RAY_WORKERS entry, each with its own CPU count and logical GPUs).
#
#   eval "$(infra/local/start.sh)"      # start and load the environment in this shell
#   infra/local/stop.sh                 # stop everything it started (idempotent)
#
# Settings are environment variables with defaults (infra/local/env.sh, infra/README.md).
# Logs go to stderr; stdout carries only the shell lines that export the cluster's environment.
# Secrets (database passwords, the Ray token) live in files of mode 0600 under the state folder
# and are never printed.
set -euo pipefail
# shellcheck source=infra/local/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

# ------------------------------------------------------------- settings, checked up front
for component in $HPSTUDY_LOCAL_COMPONENTS; do
    [[ "$component" =~ ^(postgres|mlflow|ray)$ ]] ||
        hpstudy_bad_setting "HPSTUDY_LOCAL_COMPONENTS has '$component'; allowed: postgres mlflow ray"
done
for var in HPSTUDY_RAY_PORT HPSTUDY_RAY_DASHBOARD_PORT HPSTUDY_RAY_CLIENT_PORT HPSTUDY_PG_PORT HPSTUDY_MLFLOW_PORT; do
    [[ "${!var}" =~ ^[0-9]+$ ]] && ((${!var} >= 1024 && ${!var} <= 65535)) ||
        hpstudy_bad_setting "$var='${!var}' must be a port number from 1024 to 65535"
done
if ((HPSTUDY_RAY_CLIENT_PORT >= 10002 && HPSTUDY_RAY_CLIENT_PORT <= 19999)); then
    hpstudy_bad_setting "HPSTUDY_RAY_CLIENT_PORT=$HPSTUDY_RAY_CLIENT_PORT lies in Ray's worker port range 10002-19999; choose another"
fi
for var in HPSTUDY_RAY_HEAD_CPUS HPSTUDY_RAY_OBJECT_STORE_MB HPSTUDY_MLFLOW_WORKERS HPSTUDY_START_TIMEOUT; do
    [[ "${!var}" =~ ^[0-9]+$ ]] || hpstudy_bad_setting "$var='${!var}' must be a whole number"
done
((HPSTUDY_RAY_OBJECT_STORE_MB >= 80)) || hpstudy_bad_setting "HPSTUDY_RAY_OBJECT_STORE_MB=$HPSTUDY_RAY_OBJECT_STORE_MB must be at least 80 (Ray's minimum is 75 MiB)"
for spec in $HPSTUDY_RAY_WORKERS; do
    [[ "$spec" =~ ^[0-9]+(:[0-9]+)?$ ]] ||
        hpstudy_bad_setting "HPSTUDY_RAY_WORKERS entry '$spec' must be CPUS or CPUS:GPUS (whole numbers), e.g. '2:0 2:1'"
done

umask 077
STATE="$HPSTUDY_LOCAL_STATE"
mkdir -p "$STATE"
chmod 0711 "$STATE"   # the PostgreSQL OS user must reach $STATE/pg; files inside stay 0600
export HPSTUDY_LOCAL_MARKER

# ---------------------------------------------------------------------------------- helpers
port_in_use() {
    if command -v ss >/dev/null 2>&1; then
        ss -Hltn "sport = :$1" 2>/dev/null | grep -q .
    else
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
    fi
}

require_free_port() {  # $1 port, $2 variable that sets it
    if port_in_use "$1"; then
        hpstudy_die "port $1 ($2) is already in use on this machine; choose another with $2=PORT"
    fi
}

new_secret() { od -An -tx1 -N24 /dev/urandom | tr -d ' \n'; }

check_password() {  # $1 variable name, $2 value: must be URL-safe so it can sit in a database URL
    if [[ ! "$2" =~ ^[A-Za-z0-9._~-]{12,}$ ]]; then
        hpstudy_die "$1 must be at least 12 characters from A-Z a-z 0-9 . _ ~ - (it goes into a database URL)"
    fi
}

wait_for() {  # $1 description, $2 log file, $3 pid, then a command that succeeds once ready
    local what="$1" log="$2" pid="$3" deadline=$((SECONDS + HPSTUDY_START_TIMEOUT))
    shift 3
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
            hpstudy_log "$what did not come up (exited, or not ready within ${HPSTUDY_START_TIMEOUT}s); last lines of $log:"
            tail -n 30 "$log" >&2 || true
            exit 1
        fi
        sleep 0.3
    done
}

# --------------------------------------------------------------------------------- secrets
SECRETS="$STATE/secrets.env"
if [[ -f "$SECRETS" ]]; then
    # shellcheck source=/dev/null
    source "$SECRETS"   # the roles already exist with these passwords
fi
OPTUNA_PW="${HPSTUDY_OPTUNA_DB_PASSWORD:-$(new_secret)}"
MLFLOW_PW="${HPSTUDY_MLFLOW_DB_PASSWORD:-$(new_secret)}"
check_password HPSTUDY_OPTUNA_DB_PASSWORD "$OPTUNA_PW"
check_password HPSTUDY_MLFLOW_DB_PASSWORD "$MLFLOW_PW"
printf 'HPSTUDY_OPTUNA_DB_PASSWORD=%s\nHPSTUDY_MLFLOW_DB_PASSWORD=%s\n' "$OPTUNA_PW" "$MLFLOW_PW" >"$SECRETS"
chmod 0600 "$SECRETS"

OPTUNA_URL="postgresql+psycopg2://optuna:${OPTUNA_PW}@127.0.0.1:${HPSTUDY_PG_PORT}/${HPSTUDY_OPTUNA_DB}"
MLFLOW_DB_URL="postgresql+psycopg2://mlflow:${MLFLOW_PW}@127.0.0.1:${HPSTUDY_PG_PORT}/${HPSTUDY_MLFLOW_DB}"

# ------------------------------------------------------------------------------ PostgreSQL
PG_DIR="$STATE/pg"
PG_DATA="$PG_DIR/data"
PG_SOCK="$PG_DIR/run"

as_pg_user() {  # run a PostgreSQL binary as the OS user that owns the data folder
    if [[ "$(id -u)" == 0 ]]; then
        runuser -u "$HPSTUDY_PG_OS_USER" -- env HPSTUDY_LOCAL_MARKER="$HPSTUDY_LOCAL_MARKER" HPSTUDY_LOCAL_COMPONENT=postgres "$@"
    else
        env HPSTUDY_LOCAL_COMPONENT=postgres "$@"
    fi
}

pg_sql() {  # SQL on stdin, as the superuser over the private Unix socket (never on a command line)
    as_pg_user "$HPSTUDY_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_SOCK" -p "$HPSTUDY_PG_PORT" -U postgres -d postgres
}

start_postgres() {
    [[ -x "$HPSTUDY_PG_BIN/initdb" ]] || hpstudy_die "PostgreSQL binaries not found in HPSTUDY_PG_BIN=$HPSTUDY_PG_BIN"
    mkdir -p "$PG_DIR" "$PG_SOCK"
    if [[ "$(id -u)" == 0 ]]; then
        id "$HPSTUDY_PG_OS_USER" >/dev/null 2>&1 || hpstudy_die "OS user HPSTUDY_PG_OS_USER=$HPSTUDY_PG_OS_USER does not exist"
        chown "$HPSTUDY_PG_OS_USER" "$PG_DIR" "$PG_SOCK"
    fi
    chmod 0700 "$PG_DIR" "$PG_SOCK"
    if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
        hpstudy_log "initdb $PG_DATA"
        # Local socket: trust, but the socket folder is 0700 and owned by the server's OS user.
        # TCP on 127.0.0.1: password (SCRAM) only.
        as_pg_user "$HPSTUDY_PG_BIN/initdb" -D "$PG_DATA" -U postgres -E UTF8 --auth-local=trust \
            --auth-host=scram-sha-256 --no-instructions >"$PG_DIR/initdb.log" 2>&1 ||
            { tail -n 20 "$PG_DIR/initdb.log" >&2; hpstudy_die "initdb failed"; }
    fi
    if as_pg_user "$HPSTUDY_PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; then
        hpstudy_log "PostgreSQL already running ($PG_DATA)"
    else
        require_free_port "$HPSTUDY_PG_PORT" HPSTUDY_PG_PORT
        hpstudy_log "PostgreSQL on 127.0.0.1:$HPSTUDY_PG_PORT"
        as_pg_user "$HPSTUDY_PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_DIR/postgres.log" -w -t "$HPSTUDY_START_TIMEOUT" \
            -o "-c listen_addresses=127.0.0.1 -p $HPSTUDY_PG_PORT -k $PG_SOCK" start >/dev/null ||
            { tail -n 20 "$PG_DIR/postgres.log" >&2; hpstudy_die "PostgreSQL did not start"; }
    fi
    # Roles and databases, idempotently; passwords travel on psql's stdin only.
    pg_sql <<SQL
SELECT format('CREATE ROLE %I LOGIN', r) FROM unnest(ARRAY['optuna', 'mlflow']) AS r
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) \gexec
ALTER ROLE optuna WITH LOGIN PASSWORD '${OPTUNA_PW}';
ALTER ROLE mlflow WITH LOGIN PASSWORD '${MLFLOW_PW}';
SELECT format('CREATE DATABASE %I OWNER %I', d, o)
  FROM (VALUES ('${HPSTUDY_OPTUNA_DB}', 'optuna'), ('${HPSTUDY_MLFLOW_DB}', 'mlflow')) AS t(d, o)
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = d) \gexec
SQL
}

# ---------------------------------------------------------------------------------- MLflow
MLFLOW_DIR="$STATE/mlflow"
MLFLOW_URI="http://127.0.0.1:${HPSTUDY_MLFLOW_PORT}"

start_mlflow() {
    mkdir -p "$MLFLOW_DIR" "$HPSTUDY_MLFLOW_ARTIFACTS"
    if [[ -n "$(hpstudy_marked_pids "$HPSTUDY_LOCAL_MARKER" mlflow)" ]]; then
        hpstudy_log "MLflow server already running"
        return
    fi
    require_free_port "$HPSTUDY_MLFLOW_PORT" HPSTUDY_MLFLOW_PORT
    hpstudy_log "MLflow server on $MLFLOW_URI (artifacts in $HPSTUDY_MLFLOW_ARTIFACTS)"
    # The backend URI (with its password) goes through the environment, not the command line.
    (
        cd "$MLFLOW_DIR"
        HPSTUDY_LOCAL_COMPONENT=mlflow MLFLOW_BACKEND_STORE_URI="$MLFLOW_DB_URL" \
            MLFLOW_SERVER_ENABLE_JOB_EXECUTION="$HPSTUDY_MLFLOW_JOBS" \
            setsid "$HPSTUDY_PYTHON_BIN/mlflow" server \
            --artifacts-destination "$HPSTUDY_MLFLOW_ARTIFACTS" \
            --host 127.0.0.1 --port "$HPSTUDY_MLFLOW_PORT" --workers "$HPSTUDY_MLFLOW_WORKERS" \
            --allowed-hosts "127.0.0.1:${HPSTUDY_MLFLOW_PORT},localhost:${HPSTUDY_MLFLOW_PORT}" \
            >"$MLFLOW_DIR/server.log" 2>&1 </dev/null &
        echo $! >"$MLFLOW_DIR/server.pid"
    )
    wait_for "MLflow server" "$MLFLOW_DIR/server.log" "$(cat "$MLFLOW_DIR/server.pid")" curl -fsS -o /dev/null "$MLFLOW_URI/health"
}

# ------------------------------------------------------------------------------------- Ray
RAY_DIR="$STATE/ray"
RAY_ADDRESS_LOCAL="127.0.0.1:${HPSTUDY_RAY_PORT}"

ray_node() {  # $1 name, then `ray start` arguments; blocks until the node has joined
    local name="$1" log="$RAY_DIR/$1.log"
    shift
    : >"$log"
    HPSTUDY_LOCAL_COMPONENT=ray setsid "$HPSTUDY_PYTHON_BIN/ray" start --block --disable-usage-stats \
        --temp-dir "$RAY_DIR/tmp" --object-store-memory "$((HPSTUDY_RAY_OBJECT_STORE_MB * 1024 * 1024))" \
        "$@" >"$log" 2>&1 </dev/null &
    echo $! >"$RAY_DIR/$name.pid"
    local pid=$! deadline=$((SECONDS + HPSTUDY_START_TIMEOUT))
    until grep -q "Ray runtime started" "$log"; do
        if ! kill -0 "$pid" 2>/dev/null || ((SECONDS >= deadline)); then
            hpstudy_log "Ray $name did not start; last lines of $log:"
            tail -n 30 "$log" >&2
            exit 1
        fi
        sleep 0.3
    done
}

start_ray() {
    mkdir -p "$RAY_DIR/tmp"
    if [[ -n "$(hpstudy_marked_pids "$HPSTUDY_LOCAL_MARKER" ray)" ]]; then
        hpstudy_log "Ray cluster already running"
        return
    fi
    require_free_port "$HPSTUDY_RAY_PORT" HPSTUDY_RAY_PORT
    require_free_port "$HPSTUDY_RAY_DASHBOARD_PORT" HPSTUDY_RAY_DASHBOARD_PORT
    require_free_port "$HPSTUDY_RAY_CLIENT_PORT" HPSTUDY_RAY_CLIENT_PORT
    if [[ ! -s "$HPSTUDY_RAY_AUTH_TOKEN_PATH" ]]; then
        new_secret >"$HPSTUDY_RAY_AUTH_TOKEN_PATH"
        chmod 0600 "$HPSTUDY_RAY_AUTH_TOKEN_PATH"
    fi
    # Token authentication on every node and every client (Ray >= 2.52).
    export RAY_AUTH_MODE=token RAY_AUTH_TOKEN_PATH="$HPSTUDY_RAY_AUTH_TOKEN_PATH" RAY_USAGE_STATS_ENABLED=0
    unset RAY_AUTH_TOKEN RAY_ADDRESS
    hpstudy_log "Ray head on $RAY_ADDRESS_LOCAL ($HPSTUDY_RAY_HEAD_CPUS CPUs, dashboard 127.0.0.1:$HPSTUDY_RAY_DASHBOARD_PORT)"
    ray_node head --head --port "$HPSTUDY_RAY_PORT" --num-cpus "$HPSTUDY_RAY_HEAD_CPUS" --num-gpus 0 \
        --dashboard-host 127.0.0.1 --dashboard-port "$HPSTUDY_RAY_DASHBOARD_PORT" \
        --ray-client-server-port "$HPSTUDY_RAY_CLIENT_PORT" --dashboard-agent-listen-port 0
    local i=0 spec cpus gpus
    for spec in $HPSTUDY_RAY_WORKERS; do
        i=$((i + 1))
        [[ "$spec" =~ ^([0-9]+)(:([0-9]+))?$ ]] ||
            hpstudy_die "HPSTUDY_RAY_WORKERS entry '$spec' must be CPUS or CPUS:GPUS (whole numbers), e.g. '2:0 2:1'"
        cpus="${BASH_REMATCH[1]}"
        gpus="${BASH_REMATCH[3]:-0}"
        hpstudy_log "Ray worker $i ($cpus CPUs, $gpus logical GPUs)"
        # Nodes start one after the other: concurrent `ray start`s on one machine race for ports.
        ray_node "worker$i" --address "$RAY_ADDRESS_LOCAL" --num-cpus "$cpus" --num-gpus "$gpus" \
            --dashboard-agent-listen-port 0
    done
}

for component in $HPSTUDY_LOCAL_COMPONENTS; do
    case "$component" in
    postgres) start_postgres ;;
    mlflow) start_mlflow ;;
    ray) start_ray ;;
    esac
done

# ------------------------------------------------------------------------ the environment
# cluster.env holds every variable a driver needs, secrets included, so it is mode 0600;
# stdout only sources it, so `eval "$(start.sh)"` never shows a password.
ENV_FILE="$STATE/cluster.env"
{
    echo "# hpstudy local cluster ($STATE); written by infra/local/start.sh"
    echo "export HPSTUDY_LOCAL_STATE='$STATE'"
    if hpstudy_has_component ray || [[ -s "$RAY_DIR/head.pid" ]]; then
        echo "export RAY_ADDRESS='$RAY_ADDRESS_LOCAL'"
        echo "export RAY_AUTH_MODE=token"
        echo "export RAY_AUTH_TOKEN_PATH='$HPSTUDY_RAY_AUTH_TOKEN_PATH'"
        echo "export HPSTUDY_RAY_DASHBOARD='http://127.0.0.1:$HPSTUDY_RAY_DASHBOARD_PORT'"
    fi
    echo "export HPSTUDY_STORAGE='$OPTUNA_URL'"
    echo "export HPSTUDY_MLFLOW_BACKEND_STORE_URI='$MLFLOW_DB_URL'"
    if hpstudy_has_component mlflow || [[ -s "$MLFLOW_DIR/server.pid" ]]; then
        echo "export MLFLOW_TRACKING_URI='$MLFLOW_URI'"
    fi
    echo "export HPSTUDY_OPTUNA_DB_PASSWORD='$OPTUNA_PW'"
    echo "export HPSTUDY_MLFLOW_DB_PASSWORD='$MLFLOW_PW'"
} >"$ENV_FILE"
chmod 0600 "$ENV_FILE"

hpstudy_log "up; environment in $ENV_FILE (mode 0600). HPSTUDY_STORAGE=postgresql+psycopg2://optuna:***@127.0.0.1:$HPSTUDY_PG_PORT/$HPSTUDY_OPTUNA_DB"
echo "# hpstudy local cluster: RAY_ADDRESS=$RAY_ADDRESS_LOCAL MLFLOW_TRACKING_URI=$MLFLOW_URI"
echo "# HPSTUDY_STORAGE=postgresql+psycopg2://optuna:***@127.0.0.1:$HPSTUDY_PG_PORT/$HPSTUDY_OPTUNA_DB (password in the file below)"
echo ". '$ENV_FILE'"
