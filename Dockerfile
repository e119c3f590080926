# senti: multi-stage image. Stage `build` makes the default model bundle (torch, transformers: build-time only);
# stage `runtime` serves it with onnxruntime and tokenizers, as a non-root user, health-checked over gRPC.
# Docker cannot run on the development machines: scripts/docker_steps.sh runs these same steps without Docker
# (CI runs it). Keep the two in step.
#
#   docker build -t senti:0.1.0 .
#   docker run --rm -p 50051:50051 -p 8080:8080 -p 9464:9464 senti:0.1.0

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- build: the default bundle ----------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build
# Both stages install their subset of the one lock, requirements/lock.txt, hash-checked (requirements/subset.py).
# torch==2.13.0 must be the CPU build: the lock pins torch==2.13.0+cpu by hash, which PyPI (CUDA builds only) does
# not serve, so name an index that serves CPU wheels here (docker build --build-arg PIP_EXTRA_INDEX_URL=...);
# without one the install fails instead of pulling CUDA. The runtime stage never installs torch.
ARG PIP_EXTRA_INDEX_URL=""
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 \
    PIP_EXTRA_INDEX_URL=${PIP_EXTRA_INDEX_URL}
WORKDIR /src
COPY requirements/ requirements/
RUN python -m venv /opt/build-venv \
 && python requirements/subset.py build > /tmp/requirements-build.txt \
 && /opt/build-venv/bin/pip install --require-hashes --no-deps -r /tmp/requirements-build.txt
COPY pyproject.toml README.md ./
COPY model/ model/
COPY server/ server/
COPY batch/ batch/
COPY client/ client/
# The build subset holds setuptools (torch needs it): build the two distributions with it, not an unpinned one.
RUN /opt/build-venv/bin/pip install --no-deps --no-build-isolation ./client . \
 && /opt/build-venv/bin/pip check \
 && /opt/build-venv/bin/senti-model default --out /out/bundles/e5-small

# ---- runtime: serve ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY requirements/serve.in requirements/lock.txt requirements/subset.py requirements/
RUN python -m venv /opt/venv \
 && python requirements/subset.py serve > /tmp/requirements-serve.txt \
 && /opt/venv/bin/pip install --require-hashes --no-deps -r /tmp/requirements-serve.txt \
 && rm /tmp/requirements-serve.txt
COPY pyproject.toml README.md ./
COPY model/ model/
COPY server/ server/
COPY batch/ batch/
COPY client/ client/
COPY scripts/grpc_health_check.py scripts/grpc_health_check.py
RUN /opt/venv/bin/pip install --no-deps ./client . \
 && /opt/venv/bin/pip check \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin senti
COPY --from=build --chown=10001:10001 /out/bundles/ /app/bundles/
USER 10001:10001
ENV SENTI_HOST=[::] SENTI_PORT=50051 SENTI_HTTP_PORT=8080 SENTI_METRICS_PORT=9464 \
    SENTI_BUNDLE=/app/bundles/e5-small SENTI_LOG_FORMAT=json SENTI_GRACE_S=20
# gRPC, HTTP/JSON (the API, the page at /, /readyz), Prometheus
EXPOSE 50051 8080 9464
# Native gRPC health (grpc.health.v1): SERVING only after warm-up and until a drain starts.
HEALTHCHECK --interval=10s --timeout=4s --start-period=60s --retries=3 \
  CMD ["python", "scripts/grpc_health_check.py", "127.0.0.1:50051", "--timeout", "3"]
# exec form: the server is PID 1 and receives SIGTERM itself (drains, then exits 0).
STOPSIGNAL SIGTERM
ENTRYPOINT ["senti-server"]
