#!/bin/sh
# Start the MLflow tracking server behind basic auth, or refuse to start.
#
# Refuses when MLFLOW_AUTH_ADMIN_PASSWORD is unset, empty, MLflow's historical default
# "password1234", or shorter than 12 characters. The backend URI is built here from
# HPSTUDY_MLFLOW_DB_PASSWORD so the password never appears in the compose file or on a command line.
set -eu

fail() { echo "mlflow-entrypoint: $*" >&2; exit 2; }

: "${MLFLOW_AUTH_ADMIN_PASSWORD:=}"
[ -n "$MLFLOW_AUTH_ADMIN_PASSWORD" ] || fail "MLFLOW_AUTH_ADMIN_PASSWORD is not set; set MLFLOW_ADMIN_PASSWORD in the environment of docker compose"
[ "$MLFLOW_AUTH_ADMIN_PASSWORD" != "password1234" ] || fail "MLFLOW_AUTH_ADMIN_PASSWORD is MLflow's default password; choose another"
[ "${#MLFLOW_AUTH_ADMIN_PASSWORD}" -ge 12 ] || fail "MLFLOW_AUTH_ADMIN_PASSWORD must be at least 12 characters"
: "${HPSTUDY_MLFLOW_DB_PASSWORD:=}"
[ -n "$HPSTUDY_MLFLOW_DB_PASSWORD" ] || fail "HPSTUDY_MLFLOW_DB_PASSWORD is not set"
: "${MLFLOW_ALLOWED_HOSTS:=}"
[ -n "$MLFLOW_ALLOWED_HOSTS" ] || fail "MLFLOW_ALLOWED_HOSTS is not set (comma-separated Host headers the server answers)"
case ",$MLFLOW_ALLOWED_HOSTS," in *",*,"*) fail "MLFLOW_ALLOWED_HOSTS must not allow every host ('*')" ;; esac

DB_HOST="${HPSTUDY_MLFLOW_DB_HOST:-postgres}"
DB_NAME="${HPSTUDY_MLFLOW_DB:-mlflow}"
export MLFLOW_BACKEND_STORE_URI="postgresql+psycopg2://mlflow:${HPSTUDY_MLFLOW_DB_PASSWORD}@${DB_HOST}:5432/${DB_NAME}"

# Users and permissions of the basic-auth app live in their own SQLite file on a volume.
AUTH_DIR="${HPSTUDY_MLFLOW_AUTH_DIR:-/mlflow/auth}"
AUTH_INI="$AUTH_DIR/basic_auth.ini"
umask 077
cat >"$AUTH_INI" <<INI
[mlflow]
default_permission = READ
database_uri = sqlite:///${AUTH_DIR}/basic_auth.db
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME:-admin}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
INI
export MLFLOW_AUTH_CONFIG_PATH="$AUTH_INI"

# Inside the container the server listens on all of the container's interfaces so the compose
# network reaches it; compose publishes the port on the host's 127.0.0.1 only.
exec mlflow server --app-name basic-auth \
    --host 0.0.0.0 --port 5000 --workers "${HPSTUDY_MLFLOW_WORKERS:-2}" \
    --allowed-hosts "$MLFLOW_ALLOWED_HOSTS" \
    --artifacts-destination "${HPSTUDY_MLFLOW_ARTIFACTS_DIR:-/mlflow/artifacts}"
