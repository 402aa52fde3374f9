# The external-agent service. Build: docker build -t external-agent .
# Run:   docker run -p 8080:8080 -e LIVEKIT_WEBHOOK_SECRET=... external-agent
FROM python:3.11-slim

# Extras to install: embedded = the offline speech stack (see pyproject.toml), redis = the shared
# job_id registry for several replicas, knowledge = approved knowledge (offline embeddings and
# index), mcp = MCP servers' tools. Build with --build-arg EXTRAS=redis for a slim image.
ARG EXTRAS=embedded,redis,knowledge,mcp

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /srv
COPY pyproject.toml README.md ./
COPY app ./app
COPY agents ./agents
COPY scripts ./scripts
# The Smart Turn model (package data of agents.providers) is fetched before the install.
RUN python scripts/fetch_smart_turn.py && rm -rf .cache \
    && pip install ".[${EXTRAS}]" \
    && useradd --system --uid 10001 --home-dir /srv agent

USER 10001
EXPOSE 8080
# SIGTERM starts the drain: /ready turns 503, running jobs get drain_timeout seconds.
STOPSIGNAL SIGTERM
CMD ["external-agent", "serve", "--host", "0.0.0.0", "--port", "8080"]
