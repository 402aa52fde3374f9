# syntax=docker/dockerfile:1
# The external-agent service.
#   docker build -t external-agent:0.1.0 --build-arg REVISION="$(git rev-parse HEAD)" .
#   docker run --read-only --tmpfs /tmp -p 8080:8080 -e LIVEKIT_WEBHOOK_SECRET=... external-agent:0.1.0
# tests/packaging/test_image.py builds the environment this file describes (same extras, same
# build-time model load, same command, read-only, non-root) and starts it: keep the two in step.
# Details: docs/operations.md.

# Pin by digest in your registry mirror for reproducible builds (python:3.11-slim-bookworm@sha256:...).
# checkov:skip=CKV_DOCKER_7:the base is a versioned tag (3.11-slim-bookworm) given as a build argument, which checkov cannot resolve
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: every wheel the image needs, the project's own included -------------------------
FROM ${PYTHON_IMAGE} AS build
# embedded = the offline speech stack, vision = frame conversion and text reading, redis = the
# shared job_id registry for several replicas, knowledge = approved knowledge (offline embeddings
# and index), mcp = MCP servers' tools. --build-arg EXTRAS=redis builds a slim image (then
# configure OpenAI-compatible providers; the voice activity detector needs embedded).
ARG EXTRAS=embedded,vision,redis,knowledge,mcp
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY app ./app
COPY agents ./agents
COPY scripts ./scripts
# The Smart Turn model (package data of agents.providers, sha256-checked) is fetched into the tree
# before the wheel is built, so it ships inside the project's wheel.
RUN python scripts/fetch_smart_turn.py && rm -rf .cache \
    && python -m pip wheel --wheel-dir /wheels ".[${EXTRAS}]"

# ---- runtime: a venv installed from those wheels only, models loaded once at build ---------------
FROM ${PYTHON_IMAGE} AS runtime
ARG EXTRAS=embedded,vision,redis,knowledge,mcp
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=""
LABEL org.opencontainers.image.title="livekit-external-agent" \
      org.opencontainers.image.description="LiveKit external-agent service: signed job intake, an AI participant per job, voice and vision pipelines." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0 AND GPL-3.0-or-later" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"

# tini as PID 1: it forwards SIGTERM to the service (which then drains) and reaps children.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 agent \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin agent

ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

# The wheels are bind-mounted from the build stage, so they never become a layer. pip compiles
# every module's bytecode at install, so nothing is written at run time (read-only root
# filesystem). `prewarm --every-provider` loads every model the image ships (Silero, Moonshine,
# Piper, RapidOCR, Smart Turn): a missing or broken model fails the build, not the pod.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-index --find-links /wheels "livekit-external-agent[${EXTRAS}]" \
    && /opt/venv/bin/external-agent prewarm --every-provider

# Listen on every interface inside the container; HOME on the writable /tmp (an emptyDir or
# --tmpfs), so a library that wants a cache directory finds one.
ENV EXTERNAL_AGENT_HOST=0.0.0.0 \
    EXTERNAL_AGENT_PORT=8080 \
    HOME=/tmp
WORKDIR /srv
USER 10001:10001
EXPOSE 8080
# SIGTERM starts the drain: /ready turns 503, running jobs get drain_timeout seconds, exit 0.
STOPSIGNAL SIGTERM
# start-period covers loading the embedded models (about 5-10 s on 2 cores).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["external-agent", "health"]
ENTRYPOINT ["/usr/bin/tini", "--"]
CMD ["external-agent", "serve"]
