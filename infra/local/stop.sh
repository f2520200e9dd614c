#!/usr/bin/env bash
# Stop what infra/local/start.sh started for this state folder (HPSTUDY_LOCAL_STATE), and only
# that: processes are found by the marker start.sh put in their environment, so other Ray
# clusters, PostgreSQL servers or MLflow servers on the machine are left alone (no `ray stop`).
# Idempotent: stopping a stopped cluster succeeds. `stop.sh --purge` also deletes the state folder.
set -euo pipefail
# shellcheck source=infra/local/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"

PURGE=0
for arg in "$@"; do
    case "$arg" in
    --purge) PURGE=1 ;;
    *) hpstudy_die "unknown argument '$arg'; usage: stop.sh [--purge]" ;;
    esac
done
STATE="$HPSTUDY_LOCAL_STATE"

terminate() {  # $1 component ("" for all): SIGTERM, a grace period, then SIGKILL for stragglers
    local component="$1" pids deadline
    pids="$(hpstudy_marked_pids "$HPSTUDY_LOCAL_MARKER" "$component")"
    [[ -z "$pids" ]] && return 0
    hpstudy_log "stopping ${component:-leftover} processes: $(echo $pids)"
    # shellcheck disable=SC2086
    kill -TERM $pids 2>/dev/null || true
    deadline=$((SECONDS + HPSTUDY_STOP_GRACE))
    while [[ -n "$(hpstudy_marked_pids "$HPSTUDY_LOCAL_MARKER" "$component")" ]] && ((SECONDS < deadline)); do
        sleep 0.2
    done
    pids="$(hpstudy_marked_pids "$HPSTUDY_LOCAL_MARKER" "$component")"
    if [[ -n "$pids" ]]; then
        # shellcheck disable=SC2086
        kill -KILL $pids 2>/dev/null || true
        sleep 0.2
    fi
}

stop_postgres() {
    local data="$STATE/pg/data"
    if [[ -f "$data/postmaster.pid" && -x "$HPSTUDY_PG_BIN/pg_ctl" ]]; then
        hpstudy_log "stopping PostgreSQL ($data)"
        if [[ "$(id -u)" == 0 ]]; then
            runuser -u "$HPSTUDY_PG_OS_USER" -- "$HPSTUDY_PG_BIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
        else
            "$HPSTUDY_PG_BIN/pg_ctl" -D "$data" -m fast -w -t 30 stop >/dev/null 2>&1 || true
        fi
    fi
    terminate postgres
}

# Reverse start order: Ray (drivers' compute) first, then MLflow, then the database under it.
order=""
for component in $HPSTUDY_LOCAL_COMPONENTS; do order="$component $order"; done
for component in $order; do
    case "$component" in
    ray) terminate ray; rm -f "$STATE"/ray/*.pid ;;
    mlflow) terminate mlflow; rm -f "$STATE/mlflow/server.pid" ;;
    postgres) stop_postgres ;;
    *) hpstudy_die "HPSTUDY_LOCAL_COMPONENTS has '$component'; allowed: postgres mlflow ray" ;;
    esac
done
if [[ " $HPSTUDY_LOCAL_COMPONENTS " == *" postgres "* && " $HPSTUDY_LOCAL_COMPONENTS " == *" mlflow "* && " $HPSTUDY_LOCAL_COMPONENTS " == *" ray "* ]]; then
    terminate ""   # a full stop leaves nothing of this state folder running
fi
if ((PURGE)); then
    hpstudy_log "removing $STATE"
    rm -rf -- "$STATE"
fi
hpstudy_log "stopped"
