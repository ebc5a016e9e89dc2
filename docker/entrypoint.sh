#!/bin/sh
# Role dispatcher of the telemetry-pipeline image: the first argument picks what the container runs.
# The Helm chart's containers use exactly these roles (tests/chart/test_image_roles.py checks it).
set -eu

# The app root is this script's parent folder (/app in the image): manage.py and config/ are there.
APP_DIR="$(cd "$(dirname "$0")/.." && pwd)"
cd "$APP_DIR"

usage() {
    cat >&2 <<'USAGE'
usage: entrypoint.sh ROLE [ARGS...]
  stream               the streamer: python manage.py stream (STREAM_* settings)
  worker               a collector: celery worker on CELERY_INGEST_QUEUE
  api                  the API gateway: gunicorn on 0.0.0.0:$PORT
  migrate              wait for PostgreSQL, then python manage.py migrate
  wait-for-migrations  block until no migration is pending (init container)
  healthcheck URL      exit 0 when URL answers 200 (helm test)
  manage ARGS          python manage.py ARGS (operations: backfill, trim, compress, shell)
USAGE
}

role="${1:-}"
if [ -z "$role" ]; then
    usage
    exit 64
fi
shift

case "$role" in
    stream)
        exec python manage.py stream "$@"
        ;;
    worker)
        exec celery -A config worker -Q "${CELERY_INGEST_QUEUE:-telemetry.ingest}" \
            --concurrency "${COLLECTOR_CONCURRENCY:-4}" --loglevel "${LOG_LEVEL:-INFO}" "$@"
        ;;
    api)
        # prometheus_client's multiprocess mode needs the folder to exist and be empty at start.
        if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
            rm -rf "${PROMETHEUS_MULTIPROC_DIR:?}"
            mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
        fi
        exec gunicorn -c config/gunicorn.conf.py config.wsgi:application --bind "0.0.0.0:${PORT:-8081}" "$@"
        ;;
    migrate)
        python "$APP_DIR/docker/wait_for_db.py" --timeout "${DB_WAIT_TIMEOUT:-300}"
        exec python manage.py migrate --noinput "$@"
        ;;
    wait-for-migrations)
        exec python "$APP_DIR/docker/wait_for_migrations.py" --timeout "${MIGRATIONS_WAIT_TIMEOUT:-600}" "$@"
        ;;
    healthcheck)
        exec python "$APP_DIR/docker/healthcheck.py" "$@"
        ;;
    manage)
        exec python manage.py "$@"
        ;;
    -h|--help|help)
        usage
        exit 0
        ;;
    *)
        echo "entrypoint.sh: unknown role '$role'" >&2
        usage
        exit 64
        ;;
esac
