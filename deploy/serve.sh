#!/usr/bin/env bash
# One role of the cluster deployment per call (docs/scale.md, "Many machines"):
#
#   deploy/serve.sh mlflow          MLflow tracking server, Postgres backend store
#   deploy/serve.sh code-server     the Dagster code location (jobs.definitions) over gRPC
#   deploy/serve.sh webserver       Dagster UI + GraphQL
#   deploy/serve.sh daemon          schedules, sensors and the run queue (QueuedRunCoordinator)
#   deploy/serve.sh dask-scheduler  the Dask scheduler the asset jobs' steps go to
#   deploy/serve.sh dask-worker     a Dask worker (one step at a time per worker process)
#
# The environment (see deploy/cluster.env.example) configures every role; the same values go to
# every machine. Run from the repository root with the project's environment on PATH
# (`pip install -e '.[cluster]'`). tests/cluster starts each role through this script.
set -euo pipefail
cd "$(dirname "$0")/.."
here=deploy
bind="${CALLIPER_BIND_HOST:-0.0.0.0}"

need() {  # the variables a role cannot start without
    for name in "$@"; do
        if [[ -z "${!name:-}" ]]; then
            echo "deploy/serve.sh $role: set $name (see deploy/cluster.env.example)" >&2
            exit 2
        fi
    done
}

role="${1:-}"
shift || true
case "$role" in
mlflow)
    need CALLIPER_MLFLOW_DB_URL CALLIPER_MLFLOW_ARTIFACTS
    # job execution off: 2 processes / 0.5 GB instead of 15 / 2.6 GB
    export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false MLFLOW_DISABLE_TELEMETRY=true
    exec mlflow server --host "$bind" --port "${CALLIPER_MLFLOW_PORT:-5000}" \
        --workers "${CALLIPER_MLFLOW_WORKERS:-1}" \
        --backend-store-uri "$CALLIPER_MLFLOW_DB_URL" \
        --artifacts-destination "$CALLIPER_MLFLOW_ARTIFACTS" --serve-artifacts \
        ${CALLIPER_MLFLOW_ALLOWED_HOSTS:+--allowed-hosts "$CALLIPER_MLFLOW_ALLOWED_HOSTS"} "$@"
    ;;
code-server)
    need DAGSTER_HOME CALLIPER_DAGSTER_PG_URL MLFLOW_TRACKING_URI
    exec dagster api grpc --module-name jobs.definitions --attribute defs \
        --location-name calliper --host "$bind" --port "${CALLIPER_CODE_SERVER_PORT:-4000}" "$@"
    ;;
webserver)
    need DAGSTER_HOME CALLIPER_DAGSTER_PG_URL CALLIPER_CODE_SERVER_HOST CALLIPER_CODE_SERVER_PORT
    exec dagster-webserver -w "$here/workspace.yaml" -h "$bind" \
        -p "${CALLIPER_WEBSERVER_PORT:-3000}" "$@"
    ;;
daemon)
    need DAGSTER_HOME CALLIPER_DAGSTER_PG_URL CALLIPER_CODE_SERVER_HOST CALLIPER_CODE_SERVER_PORT
    exec dagster-daemon run -w "$here/workspace.yaml" "$@"
    ;;
dask-scheduler)
    exec dask scheduler --host "$bind" --port "${CALLIPER_DASK_PORT:-8786}" --no-dashboard "$@"
    ;;
dask-worker)
    need CALLIPER_DASK_SCHEDULER CALLIPER_DAGSTER_PG_URL MLFLOW_TRACKING_URI
    # one thread per worker process: Dagster's step execution is not thread-safe
    exec dask worker "$CALLIPER_DASK_SCHEDULER" --nworkers "${CALLIPER_DASK_NWORKERS:-1}" \
        --nthreads 1 --no-dashboard "$@"
    ;;
*)
    echo "usage: deploy/serve.sh mlflow|code-server|webserver|daemon|dask-scheduler|dask-worker" >&2
    exit 2
    ;;
esac
