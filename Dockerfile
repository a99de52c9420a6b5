# syntax=docker/dockerfile:1
# RealTube push: one image for every role (`serve`, `worker`, `migrate`, `export`).
#
#   docker build -t realtube-push .
#   docker run --rm -e DATABASE_URL=... -e REDIS_URL=... -e IP_HASH_SALT=... -p 8080:8080 realtube-push
#
# The build stage installs the package and its pinned dependencies into a virtualenv; the
# runtime stage copies only that virtualenv and the migrations, and runs as an unprivileged
# user. pg_dump for `realtube-push export` comes with the pgserver wheel (PostgreSQL 16), so
# no PostgreSQL client package is installed (Debian bookworm's is 15, too old for a 16 server).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PATH=/opt/realtube/bin:$PATH
RUN python -m venv /opt/realtube
WORKDIR /src
# Dependencies in a layer of their own (from an empty package of the same name), so a code
# change reinstalls only the package itself. The server's are the [server] extra (the base
# install is only the Python live client).
COPY pyproject.toml README.md constraints.txt ./
RUN mkdir realtube_push \
    && touch realtube_push/__init__.py \
    && pip install --constraint constraints.txt '.[server]' \
    && pip uninstall --yes realtube-push
COPY realtube_push ./realtube_push
RUN pip install --no-deps .

FROM ${PYTHON_IMAGE} AS runtime
# A fixed uid/gid (not 0), so volume ownership and `runAsNonRoot` policies can name it.
RUN groupadd --system --gid 10001 realtube \
    && useradd --system --uid 10001 --gid realtube --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin realtube \
    && mkdir -p /data/exports \
    && chown realtube:realtube /data/exports
COPY --from=build /opt/realtube /opt/realtube
COPY migrations /app/migrations
COPY clients/js /app/clients/js
COPY static_admin /app/static_admin
ENV PATH=/opt/realtube/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=8080 \
    MIGRATIONS_DIR=/app/migrations \
    STATIC_ROOT=/app \
    EXPORT_DIR=/data/exports
WORKDIR /app
USER 10001:10001
EXPOSE 8080
# Liveness only (the process answers); readiness (/health/ready) is for the load balancer.
# The worker and exporter serve no HTTP: compose disables this check for them.
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('PORT', '8080') + '/health/live', timeout=2)"]
CMD ["realtube-push", "serve"]
