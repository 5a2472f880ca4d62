#!/usr/bin/env bash
# Starts (or stops) the real services the tests talk to, on loopback:
#   S3  : moto_server (PyPI moto[server])
#   SQS : ElasticMQ (Maven Central org.elasticmq:elasticmq-server_2.13)
# `start` installs what is missing, waits until each answers, and writes the endpoints to
# .ci/services.env (source it to run `cargo test` by hand). `stop` ends them.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="${HARVESTER_CI_STATE:-/tmp/harvester-ci}"
mkdir -p "$state"
S3_PORT="${HARVESTER_S3_PORT:-45550}"
SQS_PORT="${HARVESTER_SQS_PORT:-45551}"
ELASTICMQ_VERSION=1.6.11

log() { echo "[services] $*" >&2; }

wait_http() { # url name seconds
  local i
  for ((i = 0; i < $3 * 10; i++)); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null; then
      log "$2 is up at $1"; return 0
    fi
    sleep 0.1
  done
  log "$2 did not answer at $1 within $3 s; its log:"; tail -n 40 "$state/$2.log" >&2 || true
  return 1
}

stop() {
  for name in moto elasticmq; do
    if [[ -f "$state/$name.pid" ]]; then
      kill "$(cat "$state/$name.pid")" 2>/dev/null || true
      rm -f "$state/$name.pid"
    fi
  done
}

start() {
  stop
  if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c 'import flask, moto' 2>/dev/null; then
    log "installing moto[server] from PyPI"
    python3 -m pip install --quiet 'moto[server]'
  fi
  if [[ ! -s "$state/elasticmq.classpath" ]]; then
    log "resolving ElasticMQ $ELASTICMQ_VERSION from Maven Central"
    (cd "$here/elasticmq" && mvn -q -B dependency:build-classpath -Dmdep.outputFile="$state/elasticmq.classpath")
  fi
  cat >"$state/elasticmq.conf" <<CONF
include classpath("application.conf")
node-address { protocol = http, host = localhost, port = $SQS_PORT, context-path = "" }
rest-sqs { enabled = true, bind-port = $SQS_PORT, bind-hostname = "127.0.0.1", sqs-limits = strict }
rest-stats { enabled = false }
CONF
  nohup moto_server -H 127.0.0.1 -p "$S3_PORT" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  nohup java -Xmx512m -Dconfig.file="$state/elasticmq.conf" -cp "$(cat "$state/elasticmq.classpath")" \
    org.elasticmq.server.Main >"$state/elasticmq.log" 2>&1 &
  echo $! >"$state/elasticmq.pid"
  wait_http "http://127.0.0.1:$S3_PORT/" moto 60
  wait_http "http://127.0.0.1:$SQS_PORT/?Action=ListQueues" elasticmq 120
  cat >"$here/services.env" <<ENV
export HARVESTER_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export HARVESTER_TEST_SQS_ENDPOINT=http://127.0.0.1:$SQS_PORT
ENV
  log "endpoints written to $here/services.env"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
