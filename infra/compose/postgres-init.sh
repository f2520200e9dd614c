#!/bin/bash
# Runs once, when the postgres container initialises an empty data volume: one login role and
# one database for Optuna, one each for MLflow. Passwords come from the container environment
# and travel to psql on stdin only.
set -euo pipefail
for var in HPSTUDY_OPTUNA_DB_PASSWORD HPSTUDY_MLFLOW_DB_PASSWORD; do
    if [[ -z "${!var:-}" || "${!var}" == *"'"* ]]; then
        echo "postgres-init: $var must be set and contain no single quote" >&2
        exit 2
    fi
done
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" <<SQL
CREATE ROLE optuna LOGIN PASSWORD '${HPSTUDY_OPTUNA_DB_PASSWORD}';
CREATE ROLE mlflow LOGIN PASSWORD '${HPSTUDY_MLFLOW_DB_PASSWORD}';
CREATE DATABASE optuna OWNER optuna;
CREATE DATABASE mlflow OWNER mlflow;
SQL
