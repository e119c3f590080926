#!/usr/bin/env bash
# Runs the Dockerfile's runtime-stage steps without Docker (Docker cannot run here), then checks what the image
# promises: the server starts as a non-root user from a fresh venv with only the serve subset of the lock
# (requirements/subset.py serve, hash-checked), the HEALTHCHECK command turns healthy after warm-up, a prediction
# works, /metrics answers, and SIGTERM drains and exits 0. The build stage's product, the default bundle, is
# taken from bundles/e5-small (`make model` builds it with the same command the build stage runs). Bounded:
# every wait has a limit; targets only 127.0.0.1.
#
#   bash scripts/docker_steps.sh            # CI runs this after `make model`
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-python3}
BUNDLE=${BUNDLE:-bundles/e5-small}
fail() { echo "docker_steps: FAIL: $*" >&2; exit 1; }

# -- 1. the Dockerfile says what we test -------------------------------------------------------------------
[ "$(grep -c '^FROM ' Dockerfile)" -ge 2 ] || fail "Dockerfile is not multi-stage"
grep -q '^USER 10001' Dockerfile || fail "Dockerfile does not switch to the non-root user 10001"
HEALTHCHECK_CMD='"python", "scripts/grpc_health_check.py", "127.0.0.1:50051", "--timeout", "3"'
grep -qF "CMD [$HEALTHCHECK_CMD]" Dockerfile || fail "HEALTHCHECK is not the command this script runs"
grep -q 'senti-model default --out /out/bundles/e5-small' Dockerfile || fail "build stage does not build the default bundle"
for src in $(awk '/^COPY / && !/--from/ {for (i = 2; i < NF; i++) if ($i !~ /^--/) print $i}' Dockerfile | sort -u); do
  [ -e "$src" ] || fail "COPY source $src does not exist"
  kept=no
  while read -r entry; do
    entry=${entry#!}; entry=${entry%/}
    case "${src%/}" in "$entry"|"$entry"/*) kept=yes ;; esac
  done < <(grep '^!' .dockerignore)
  [ "$kept" = yes ] || fail ".dockerignore leaves out $src"
done
[ -f "$BUNDLE/bundle.json" ] || fail "no bundle at $BUNDLE: run make model first (the build stage)"

# -- 2. the runtime stage, in a temporary root ------------------------------------------------------------
IMAGE=$(mktemp -d /tmp/senti-image.XXXXXX)
SERVER_PID=
cleanup() { [ -n "$SERVER_PID" ] && kill -9 "$SERVER_PID" 2>/dev/null || true; rm -rf "$IMAGE"; }
trap cleanup EXIT
chmod 755 "$IMAGE"
echo "== runtime stage in $IMAGE"
mkdir -p "$IMAGE/app/requirements" "$IMAGE/app/scripts" "$IMAGE/app/bundles"
cp requirements/serve.in requirements/lock.txt requirements/subset.py "$IMAGE/app/requirements/"
"$PYTHON" -m venv "$IMAGE/venv"
"$PYTHON" "$IMAGE/app/requirements/subset.py" serve > "$IMAGE/requirements-serve.txt"
"$IMAGE/venv/bin/pip" install --quiet --disable-pip-version-check --require-hashes --no-deps \
  -r "$IMAGE/requirements-serve.txt"
cp -r pyproject.toml README.md model server batch client "$IMAGE/app/"
cp scripts/grpc_health_check.py "$IMAGE/app/scripts/"
find "$IMAGE/app" -name __pycache__ -prune -exec rm -rf {} +
"$IMAGE/venv/bin/pip" install --quiet --disable-pip-version-check --no-deps "$IMAGE/app/client" "$IMAGE/app"
"$IMAGE/venv/bin/pip" check --disable-pip-version-check || fail "pip check in the runtime venv"
cp -r "$BUNDLE" "$IMAGE/app/bundles/e5-small"
rm -f "$IMAGE/app/bundles/e5-small/model.fp32.onnx"  # the image serves the default (INT8) variant only

# The serving venv must not contain the build-time packages.
if "$IMAGE/venv/bin/python" -c "import torch" 2>/dev/null; then fail "torch is installed in the runtime venv"; fi

# -- 3. run it as the image does: non-root, exec form, env from the Dockerfile ----------------------------
RUN_AS=()
if [ "$(id -u)" = 0 ]; then
  chown -R 10001:10001 "$IMAGE/app/bundles"
  RUN_AS=(setpriv --reuid=10001 --regid=10001 --clear-groups)
fi
read -r PORT METRICS_PORT HTTP_PORT < <("$PYTHON" -c 'import socket
s=[socket.socket() for _ in range(3)]
[x.bind(("127.0.0.1",0)) for x in s]
print(*[x.getsockname()[1] for x in s])')
cd "$IMAGE/app"
env -i PATH="$IMAGE/venv/bin:/usr/bin:/bin" HOME=/nonexistent SENTI_HOST=127.0.0.1 SENTI_PORT="$PORT" \
  SENTI_METRICS_PORT="$METRICS_PORT" SENTI_METRICS_HOST=127.0.0.1 SENTI_HTTP_PORT="$HTTP_PORT" SENTI_BUNDLE="$IMAGE/app/bundles/e5-small" \
  SENTI_LOG_FORMAT=json SENTI_GRACE_S=20 \
  "${RUN_AS[@]}" "$IMAGE/venv/bin/senti-server" 2> "$IMAGE/server.log" &
SERVER_PID=$!
HEALTH=("$IMAGE/venv/bin/python" scripts/grpc_health_check.py "127.0.0.1:$PORT" --timeout 3)
for _ in $(seq 1 120); do
  if "${HEALTH[@]}" >/dev/null 2>&1; then break; fi
  kill -0 "$SERVER_PID" 2>/dev/null || { cat "$IMAGE/server.log" >&2; fail "server exited"; }
  sleep 1
done
"${HEALTH[@]}" || { tail -20 "$IMAGE/server.log" >&2; fail "HEALTHCHECK never turned SERVING"; }
[ "$(ps -o uid= -p "$SERVER_PID" | tr -d ' ')" != 0 ] || [ "$(id -u)" != 0 ] || fail "server runs as root"
"$IMAGE/venv/bin/senti" --target "127.0.0.1:$PORT" predict "质量很好，物流也快" | grep -q '"label"' || fail "predict"
"$IMAGE/venv/bin/python" -c "import json, urllib.request
base = 'http://127.0.0.1:$HTTP_PORT'
assert urllib.request.urlopen(base + '/readyz', timeout=5).status == 200
request = urllib.request.Request(base + '/v1/predict', data=json.dumps({'texts': ['物流很快']}).encode(),
                                 headers={'content-type': 'application/json'})
assert json.load(urllib.request.urlopen(request, timeout=30))['predictions'][0]['label'] in ('negative', 'positive')
assert b'<html' in urllib.request.urlopen(base + '/', timeout=5).read().lower()" || fail "HTTP /readyz, /v1/predict, /"
"$IMAGE/venv/bin/python" -c "import urllib.request,sys
body = urllib.request.urlopen('http://127.0.0.1:$METRICS_PORT/metrics', timeout=5).read().decode()
sys.exit(0 if 'senti_requests_total{code=\"OK\",rpc=\"Predict\",transport=\"grpc\"} 1.0' in body else 1)" || fail "/metrics"
kill -TERM "$SERVER_PID"
for _ in $(seq 1 60); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 1; done
wait "$SERVER_PID" && code=0 || code=$?
SERVER_PID=
[ "$code" = 0 ] || { tail -20 "$IMAGE/server.log" >&2; fail "exit code $code after SIGTERM"; }
grep -q '"msg": "stopped"' "$IMAGE/server.log" || fail "no 'stopped' log line"
echo "docker_steps: OK (non-root, healthy after warm-up, predict over gRPC and HTTP, the page, /metrics, SIGTERM -> exit 0)"
