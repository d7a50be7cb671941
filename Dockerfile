# syntax=docker/dockerfile:1
# hedgerd container image: build a virtualenv in a throw-away stage, ship it on a clean slim base.
#   docker build -t hedgerd .
#   docker run --rm -p 127.0.0.1:9108:9108 -v hedgerd-ledger:/var/lib/hedgerd hedgerd   # paper mode
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build stage
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# A compiler only in case a dependency has no wheel for this platform; it never reaches the final image.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/hedgerd
WORKDIR /src
COPY pyproject.toml README.md ./
COPY hedgerd ./hedgerd
# extra "postgres": psycopg 3 with its own libpq, for a ledger on PostgreSQL (ledger.url)
RUN /opt/hedgerd/bin/pip install --no-compile ".[postgres]" \
    && /opt/hedgerd/bin/python -m compileall -q /opt/hedgerd/lib \
    && /opt/hedgerd/bin/hedgerd --help > /dev/null

# ---------------------------------------------------------------- runtime stage
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="hedgerd" \
      org.opencontainers.image.description="Live async delta-hedging daemon for crypto exchanges"

# Fixed numeric ids so Kubernetes' runAsNonRoot can verify them and volume ownership is predictable.
RUN groupadd --system --gid 10001 hedgerd \
    && useradd --system --uid 10001 --gid hedgerd --home-dir /var/lib/hedgerd --no-create-home \
       --shell /usr/sbin/nologin hedgerd \
    && install -d -o hedgerd -g hedgerd -m 0750 /var/lib/hedgerd \
    && install -d -m 0755 /etc/hedgerd \
    && install -d -m 0755 /run/secrets

COPY --from=build /opt/hedgerd /opt/hedgerd
COPY deploy/hedgerd.toml /etc/hedgerd/hedgerd.toml

# Everything container-specific is set here; deploy/hedgerd.toml holds the trading configuration.
# Environment wins over the file, so compose/Kubernetes can still override any of these.
# (HEDGERD_SECRETS_DIR is a directory name, not a secret.)
# hadolint ignore=DL3064
ENV PATH=/opt/hedgerd/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HEDGERD_CONFIG=/etc/hedgerd/hedgerd.toml \
    HEDGERD_SECRETS_DIR=/run/secrets \
    HEDGERD_ADMIN__HOST=0.0.0.0 \
    HEDGERD_ADMIN__PORT=9108 \
    HEDGERD_LEDGER__PATH=/var/lib/hedgerd/hedgerd.sqlite \
    HEDGERD_KILL_SWITCH__KILL_FILE=/var/lib/hedgerd/KILL \
    HEDGERD_LOGGING__FORMAT=json
# An explicit HEDGERD_SECRETS_DIR must exist: /run/secrets is created above (empty in paper mode,
# compose/Kubernetes mount secrets into it).

# Fail the build, not the deployment, if the shipped config does not validate with this environment.
RUN hedgerd check-config > /dev/null

VOLUME ["/var/lib/hedgerd"]
WORKDIR /var/lib/hedgerd
EXPOSE 9108
USER 10001:10001

# SIGTERM starts a graceful stop (cancel open hedge orders, flush the ledger); give it time
# (`docker stop -t 30`, compose stop_grace_period, Kubernetes terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
# slim has no curl: probe /healthz with the interpreter that is already there.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('HEDGERD_ADMIN__PORT', '9108'); r = urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

ENTRYPOINT ["hedgerd"]
CMD ["run"]
