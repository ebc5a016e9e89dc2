# syntax=docker/dockerfile:1
# One image, four roles: `stream`, `worker`, `api`, `migrate` (docker/entrypoint.sh).
#   docker build -t telemetry-pipeline:0.1.0 .
#   docker run --rm -e DATABASE_URL=... -e CELERY_BROKER_URL=... -e SECRET_KEY=... telemetry-pipeline:0.1.0 api

ARG PYTHON_VERSION=3.11

# --- Build stage: wheels compiled here never reach the runtime image's toolchain-free layers.
FROM python:${PYTHON_VERSION}-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt

# --- Runtime stage.
FROM python:${PYTHON_VERSION}-slim AS runtime
ARG APP_UID=1000
ARG APP_GID=1000
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app \
    DJANGO_SETTINGS_MODULE=config.settings \
    PORT=8081 \
    HOME=/tmp

RUN groupadd --gid ${APP_GID} app \
 && useradd --uid ${APP_UID} --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app

COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=root:root . /app

# Static files are collected at build time: the root filesystem is read-only in the cluster.
# SECRET_KEY and DEBUG here exist only for this step; the chart provides the real ones.
RUN SECRET_KEY=build-only DEBUG=false python manage.py collectstatic --noinput \
 && chmod 0755 /app/docker/entrypoint.sh \
 && python -m compileall -q /app/config /app/telemetry /app/docker

USER ${APP_UID}:${APP_GID}
EXPOSE 8081
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["api"]
