# shellcheck shell=bash
# Defaults for the local multi-node cluster (sourced by start.sh and stop.sh, not run).
# Every setting is an environment variable with a default; see infra/README.md.

HPSTUDY_LOCAL_STATE="${HPSTUDY_LOCAL_STATE:-${TMPDIR:-/tmp}/hpstudy-local}"
# Components start.sh starts and stop.sh stops, in this order: any subset of "postgres mlflow ray".
HPSTUDY_LOCAL_COMPONENTS="${HPSTUDY_LOCAL_COMPONENTS:-postgres mlflow ray}"
HPSTUDY_PYTHON_BIN="${HPSTUDY_PYTHON_BIN:-}"   # folder with ray and mlflow; default: the repo .venv/bin, else PATH

# Ray: one head plus one worker node per entry of HPSTUDY_RAY_WORKERS ("CPUS:GPUS", GPUs are logical).
HPSTUDY_RAY_PORT="${HPSTUDY_RAY_PORT:-6380}"
HPSTUDY_RAY_DASHBOARD_PORT="${HPSTUDY_RAY_DASHBOARD_PORT:-8265}"
HPSTUDY_RAY_CLIENT_PORT="${HPSTUDY_RAY_CLIENT_PORT:-10001}"
HPSTUDY_RAY_HEAD_CPUS="${HPSTUDY_RAY_HEAD_CPUS:-1}"
HPSTUDY_RAY_WORKERS="${HPSTUDY_RAY_WORKERS:-2:0 2:1}"
HPSTUDY_RAY_OBJECT_STORE_MB="${HPSTUDY_RAY_OBJECT_STORE_MB:-256}"
HPSTUDY_RAY_AUTH_TOKEN_PATH="${HPSTUDY_RAY_AUTH_TOKEN_PATH:-$HPSTUDY_LOCAL_STATE/ray_auth_token}"

# PostgreSQL 15: one database and one login role for Optuna, one each for MLflow.
HPSTUDY_PG_BIN="${HPSTUDY_PG_BIN:-/usr/lib/postgresql/15/bin}"
HPSTUDY_PG_PORT="${HPSTUDY_PG_PORT:-5433}"
HPSTUDY_PG_OS_USER="${HPSTUDY_PG_OS_USER:-postgres}"   # used only when start.sh runs as root
HPSTUDY_OPTUNA_DB="${HPSTUDY_OPTUNA_DB:-optuna}"
HPSTUDY_MLFLOW_DB="${HPSTUDY_MLFLOW_DB:-mlflow}"
# HPSTUDY_OPTUNA_DB_PASSWORD / HPSTUDY_MLFLOW_DB_PASSWORD: taken from the environment when set,
# generated otherwise; either way written only to $HPSTUDY_LOCAL_STATE/credentials.env (mode 0600).

# MLflow tracking server.
HPSTUDY_MLFLOW_PORT="${HPSTUDY_MLFLOW_PORT:-5000}"
HPSTUDY_MLFLOW_WORKERS="${HPSTUDY_MLFLOW_WORKERS:-1}"
HPSTUDY_MLFLOW_ARTIFACTS="${HPSTUDY_MLFLOW_ARTIFACTS:-$HPSTUDY_LOCAL_STATE/mlartifacts}"
# MLflow's background job runner (GenAI scorers, 7 extra processes) is not used by hpstudy: off.
HPSTUDY_MLFLOW_JOBS="${HPSTUDY_MLFLOW_JOBS:-false}"

# How long start.sh waits for each component, and stop.sh for a graceful exit, in seconds.
HPSTUDY_START_TIMEOUT="${HPSTUDY_START_TIMEOUT:-120}"
HPSTUDY_STOP_GRACE="${HPSTUDY_STOP_GRACE:-5}"

HPSTUDY_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
if [[ -z "$HPSTUDY_PYTHON_BIN" ]]; then
    if [[ -x "$HPSTUDY_REPO_ROOT/.venv/bin/ray" ]]; then
        HPSTUDY_PYTHON_BIN="$HPSTUDY_REPO_ROOT/.venv/bin"
    else
        HPSTUDY_PYTHON_BIN="$(dirname "$(command -v ray || echo /usr/bin/ray)")"
    fi
fi

# Every process started for this state folder carries this marker in its environment; stop.sh
# finds them by it (and only them: other Ray clusters on the machine are left alone).
HPSTUDY_LOCAL_MARKER="hpstudy-local:$(printf %s "$HPSTUDY_LOCAL_STATE" | cksum | cut -d' ' -f1)"

hpstudy_log() { printf '[hpstudy-local] %s\n' "$*" >&2; }
hpstudy_die() { printf '[hpstudy-local] error: %s\n' "$*" >&2; exit 1; }
hpstudy_bad_setting() { printf '[hpstudy-local] error: %s\n' "$*" >&2; exit 2; }

hpstudy_has_component() { [[ " $HPSTUDY_LOCAL_COMPONENTS " == *" $1 "* ]]; }

# PIDs of live (non-zombie) processes whose environment holds HPSTUDY_LOCAL_MARKER=$1 (optional
# component name $2 narrows it to HPSTUDY_LOCAL_COMPONENT=$2).
hpstudy_marked_pids() {
    local marker="$1" component="${2:-}" env_file pid state
    for env_file in /proc/[0-9]*/environ; do
        pid="${env_file#/proc/}"
        pid="${pid%/environ}"
        [[ "$pid" == "$$" || "$pid" == "${BASHPID:-$$}" ]] && continue
        grep -qzxF "HPSTUDY_LOCAL_MARKER=$marker" "$env_file" 2>/dev/null || continue
        if [[ -n "$component" ]]; then
            grep -qzxF "HPSTUDY_LOCAL_COMPONENT=$component" "$env_file" 2>/dev/null || continue
        fi
        state="$(cut -d' ' -f3 "/proc/$pid/stat" 2>/dev/null)" || continue
        [[ "$state" == "Z" || "$state" == "X" || -z "$state" ]] && continue
        echo "$pid"
    done
}
