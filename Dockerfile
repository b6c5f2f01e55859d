# syntax=docker/dockerfile:1
# A small, non-root image of the router. It holds no redis-server: state lives in a Redis of its
# own (ACD_REDIS_URL), which outlives any router container (see docker-compose.yml).
# The base image is pinned by version and digest (both stages the same): a rebuild gets the same
# bytes. To move on, pick a newer tag and take its digest from
# `docker buildx imagetools inspect python:<tag>`.
# Build: docker build -t acd-router .
# Run:   docker run -p 8080:8080 -e ACD_REDIS_URL=redis://redis:6379/0 \
#          -e ACD_CONFIG=/etc/acd/acd.toml -v "$PWD/config:/etc/acd:ro" \
#          -e ACD_KEY_ADMIN=... -e ACD_KEY_PBX=... -e ACD_KEY_MONITOR=... acd-router

FROM python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5 AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY router ./router
RUN /opt/venv/bin/pip install --no-compile . \
    && /opt/venv/bin/python -m compileall -q /opt/venv/lib

FROM python:3.11.11-slim-bookworm@sha256:081075da77b2b55c23c088251026fb69a7b2bf92471e491ff5fd75c192fd38e5
LABEL org.opencontainers.image.title="acd-router" \
      org.opencontainers.image.description="Real-time automatic call distribution with all state in Redis" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 acd \
    && useradd --system --uid 10001 --gid acd --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin acd
COPY --from=builder /opt/venv /opt/venv
# Every setting is an ACD_* variable (docs/configuration.md): ACD_REDIS_URL, ACD_CONFIG, ACD_NAMESPACE, ...
# and the key variables the configuration names. A --listen flag would win over ACD_LISTEN.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ACD_LISTEN=0.0.0.0:8080
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; port = os.environ.get('ACD_LISTEN', ':8080').rpartition(':')[2]; urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["acd-router"]
CMD ["serve"]
