#!/usr/bin/env bash
# Starts (or stops) the real services the tests talk to, on loopback:
#   S3  : moto_server (PyPI moto[server])
#   SQS : ElasticMQ (Maven Central org.elasticmq:elasticmq-server_2.13)
#   ES  : Elasticsearch's test distribution (Maven Central
#         org.elasticsearch.distribution.integ-test-zip:elasticsearch:<version>:zip), single node,
#         run as an unprivileged user (it refuses root) with Java 21+.
#   ES with security on: a second node of the same distribution, https only (a certificate of a
#         private CA made here with openssl, as Elasticsearch 8/9 make one at first start), a user
#         in the file realm: the tests of ES_CA_FILE / ES_CA_FINGERPRINT / OPENCAST_CA_FILE.
#   Toxiproxy: the fault proxy the fault-injection tests put between the harvester and each service
#         (latency, resets mid-body, bandwidth, down/up), built from the Go module proxy.
#   xAPI LRS: Ralph (PyPI ralph-malph), in a venv of its own (its exact pins must not meet moto's in
#         the system Python), storing into an index of its own on the Elasticsearch node above.
# `start` installs what is missing, waits until each answers, and writes the endpoints to
# .ci/services.env (source it to run `cargo test` by hand). `stop` ends them. `status` says which
# are running. `start-ralph` / `stop-ralph` start or end only the LRS, beside an Elasticsearch
# that is already running (the whole set need not be restarted to add it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
state="${HARVESTER_CI_STATE:-/tmp/harvester-ci}"
mkdir -p "$state"
# Below Linux's ephemeral range (32768-60999): an outgoing connection can never be holding them.
S3_PORT="${HARVESTER_S3_PORT:-29550}"
SQS_PORT="${HARVESTER_SQS_PORT:-29551}"
ES_PORT="${HARVESTER_ES_PORT:-29552}"
TOXI_PORT="${HARVESTER_TOXI_PORT:-29553}"
ES_TLS_PORT="${HARVESTER_ES_TLS_PORT:-29554}"
RALPH_PORT="${HARVESTER_RALPH_PORT:-29555}"
ES_TLS_USER=harvester
ES_TLS_PASS=harvester-tls-test
TOXIPROXY_VERSION=v2.5.0
ELASTICMQ_VERSION=1.6.11
# Major 9, like the `elasticsearch` crate (9.1.0-alpha.1) the harvester uses.
ES_VERSION=9.1.5
ES_USER="${HARVESTER_ES_USER:-harvester-es}"
# The LRS. ralph-malph's extras `cli,lrs` leave out two things the server needs: the Elasticsearch
# client (extra `backend-es`: elasticsearch-py 8, which ES 9 serves through its REST compatibility
# with 8) and `requests` (ralph/api/auth/oidc.py imports it whatever the auth backend).
RALPH_VERSION=5.1.0
RALPH_PIP_SPEC=("ralph-malph[cli,lrs,backend-es]==$RALPH_VERSION" requests)
RALPH_VENV="$state/ralph-$RALPH_VERSION"
RALPH_INDEX=ralph-statements
RALPH_USER=harvester-xapi
RALPH_PASS=harvester-xapi-test

log() { echo "[services] $*" >&2; }

wait_http() { # url name seconds
  local deadline=$((SECONDS + $3))
  while ((SECONDS < deadline)); do
    if python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" "$1" 2>/dev/null; then
      log "$2 is up at $1"; return 0
    fi
    if [[ -f "$state/$2.pid" ]] && ! kill -0 "$(cat "$state/$2.pid")" 2>/dev/null; then
      log "$2 exited while starting; its log:"; tail -n 40 "$state/$2.log" | cut -c1-300 >&2; return 1
    fi
    sleep 0.1
  done
  log "$2 did not answer at $1 within $3 s; its log:"; tail -n 40 "$state/$2.log" | cut -c1-300 >&2 || true
  return 1
}

stop() {
  for name in ralph moto elasticmq elasticsearch elasticsearch-tls toxiproxy; do
    if [[ -f "$state/$name.pid" ]]; then
      kill "$(cat "$state/$name.pid")" 2>/dev/null || true
      rm -f "$state/$name.pid"
    fi
  done
  # Elasticsearch runs as a launcher and a server JVM: wait until both are gone (the next start
  # needs the port and the data directory), then insist.
  local i
  for ((i = 0; i < 60; i++)); do
    pgrep -f "$state/elasticsearch-" >/dev/null || return 0
    sleep 0.5
  done
  pkill -KILL -f "$state/elasticsearch-" || true
  for ((i = 0; i < 40; i++)); do
    pgrep -f "$state/elasticsearch-" >/dev/null || return 0
    sleep 0.25
  done
}

wait_port_free() { # port name: a previous instance may still be letting go of it
  local i
  for ((i = 0; i < 120; i++)); do
    python3 -c "import socket,sys; s=socket.socket(); s.settimeout(0.5); sys.exit(0 if s.connect_ex(('127.0.0.1', int(sys.argv[1]))) else 1)" "$1" && return 0
    sleep 0.25
  done
  log "port $1 for $2 is still taken after 30 s:"; ss -ltnp 2>/dev/null | grep ":$1 " >&2 || true
  return 1
}

java_home_21() { # the first JDK under /usr/lib/jvm (or $JAVA_HOME) new enough for ES 9
  local j v
  for j in ${ES_JAVA_HOME:-} ${JAVA_HOME:-} /usr/lib/jvm/*; do
    [[ -x "$j/bin/java" ]] || continue
    v=$("$j/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/.*java.specification.version = //p')
    if [[ "${v%%.*}" -ge 21 ]] 2>/dev/null; then echo "$j"; return 0; fi
  done
  return 1
}

start_es() {
  local home="$state/elasticsearch-$ES_VERSION" zip
  zip="$HOME/.m2/repository/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$ES_VERSION/elasticsearch-$ES_VERSION.zip"
  if [[ ! -s "$zip" ]]; then
    log "fetching Elasticsearch $ES_VERSION (test distribution) from Maven Central"
    mvn -q -B dependency:get -Dtransitive=false \
      -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip"
  fi
  if [[ ! -x "$home/bin/elasticsearch" ]]; then
    rm -rf "$home.tmp" && mkdir -p "$home.tmp"
    python3 -c "import zipfile,sys; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$zip" "$home.tmp"
    mv "$home.tmp/elasticsearch-$ES_VERSION" "$home" && rm -rf "$home.tmp"
    chmod +x "$home"/bin/* "$home"/lib/platform/*/bin/* 2>/dev/null || true
  fi
  local java; java=$(java_home_21) || { log "Elasticsearch $ES_VERSION needs Java 21 or newer; none found under /usr/lib/jvm"; return 1; }
  local run=()
  if [[ $(id -u) -eq 0 ]]; then
    id "$ES_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER"
    run=(runuser -u "$ES_USER" --)
  fi
  rm -rf "$state/es-data" "$state/es-logs"
  mkdir -p "$state/es-data" "$state/es-logs" "$state/es-tmp"
  [[ $(id -u) -eq 0 ]] && chown -R "$ES_USER" "$home/config" "$state/es-data" "$state/es-logs" "$state/es-tmp"
  chmod o+rx "$state"
  wait_port_free "$ES_PORT" elasticsearch
  log "starting Elasticsearch $ES_VERSION on 127.0.0.1:$ES_PORT (Java: $java)"
  ES_JAVA_HOME="$java" ES_TMPDIR="$state/es-tmp" ES_JAVA_OPTS="-Xms512m -Xmx512m" nohup "${run[@]}" \
    "$home/bin/elasticsearch" -E discovery.type=single-node -E network.host=127.0.0.1 \
    -E http.port="$ES_PORT" -E transport.port=0 -E path.data="$state/es-data" \
    -E path.logs="$state/es-logs" -E cluster.routing.allocation.disk.threshold_enabled=false \
    -E action.destructive_requires_name=false -E xpack.security.enabled=false \
    -E xpack.ml.enabled=false \
    >"$state/elasticsearch.log" 2>&1 &
  echo $! >"$state/elasticsearch.pid"
}

# A private CA and a certificate for 127.0.0.1/localhost signed by it (PEM), made once.
make_tls_certs() {
  local d="$state/tls"
  [[ -s "$d/node-chain.pem" && -s "$d/ca.pem" ]] && return 0
  rm -rf "$d" && mkdir -p "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=harvester test CA" \
    -keyout "$d/ca.key" -out "$d/ca.pem" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$d/node.key" \
    -out "$d/node.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$d/node.ext"
  openssl x509 -req -in "$d/node.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
    -days 3650 -extfile "$d/node.ext" -out "$d/node.pem" 2>/dev/null
  cat "$d/node.pem" "$d/ca.pem" >"$d/node-chain.pem"
  chmod 0644 "$d"/*.pem "$d/node.key"
}

# The second node: security on, https with the private CA's certificate, one superuser.
start_es_tls() {
  local home="$state/elasticsearch-$ES_VERSION" cfg="$state/es-tls-config"
  local java; java=$(java_home_21)
  make_tls_certs
  rm -rf "$cfg" "$state/es-tls-data" "$state/es-tls-logs"
  cp -r "$home/config" "$cfg"
  rm -f "$cfg/elasticsearch.keystore"
  mkdir -p "$cfg/certs" "$state/es-tls-data" "$state/es-tls-logs"
  cp "$state/tls/node-chain.pem" "$state/tls/node.key" "$state/tls/ca.pem" "$cfg/certs/"
  local run=()
  if [[ $(id -u) -eq 0 ]]; then
    run=(runuser -u "$ES_USER" --)
    chown -R "$ES_USER" "$cfg" "$state/es-tls-data" "$state/es-tls-logs"
  fi
  ES_PATH_CONF="$cfg" ES_JAVA_HOME="$java" "${run[@]}" "$home/bin/elasticsearch-users" useradd \
    "$ES_TLS_USER" -p "$ES_TLS_PASS" -r superuser >/dev/null
  wait_port_free "$ES_TLS_PORT" elasticsearch-tls
  log "starting Elasticsearch $ES_VERSION with security on https://127.0.0.1:$ES_TLS_PORT"
  ES_PATH_CONF="$cfg" ES_JAVA_HOME="$java" ES_TMPDIR="$state/es-tmp" ES_JAVA_OPTS="-Xms512m -Xmx512m" \
    nohup "${run[@]}" "$home/bin/elasticsearch" -E discovery.type=single-node \
    -E network.host=127.0.0.1 -E http.port="$ES_TLS_PORT" -E transport.port=0 \
    -E path.data="$state/es-tls-data" -E path.logs="$state/es-tls-logs" \
    -E cluster.routing.allocation.disk.threshold_enabled=false -E xpack.ml.enabled=false \
    -E xpack.security.enabled=true -E xpack.security.http.ssl.enabled=true \
    -E xpack.security.http.ssl.certificate=certs/node-chain.pem \
    -E xpack.security.http.ssl.key=certs/node.key \
    >"$state/elasticsearch-tls.log" 2>&1 &
  echo $! >"$state/elasticsearch-tls.pid"
}

wait_es_tls() { # seconds
  local deadline=$((SECONDS + $1)) url="https://127.0.0.1:$ES_TLS_PORT/_cluster/health?wait_for_status=green&timeout=1s"
  while ((SECONDS < deadline)); do
    if curl -sf --max-time 2 --cacert "$state/tls/ca.pem" -u "$ES_TLS_USER:$ES_TLS_PASS" "$url" >/dev/null 2>&1; then
      log "elasticsearch-tls is up at https://127.0.0.1:$ES_TLS_PORT"; return 0
    fi
    if ! kill -0 "$(cat "$state/elasticsearch-tls.pid")" 2>/dev/null; then
      log "elasticsearch-tls exited while starting; its log:"; tail -n 40 "$state/elasticsearch-tls.log" | cut -c1-300 >&2; return 1
    fi
    sleep 0.5
  done
  log "elasticsearch-tls did not answer within $1 s; its log:"; tail -n 40 "$state/elasticsearch-tls.log" | cut -c1-300 >&2
  return 1
}

# Ralph's venv, made once per state directory; the marker is written last, so an interrupted
# install is done again rather than half used.
install_ralph() {
  [[ -f "$RALPH_VENV/.installed" && -x "$RALPH_VENV/bin/ralph" ]] && return 0
  log "installing Ralph $RALPH_VERSION (PyPI ralph-malph) into its own venv $RALPH_VENV"
  rm -rf "$RALPH_VENV"
  python3 -m venv "$RALPH_VENV"
  "$RALPH_VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${RALPH_PIP_SPEC[@]}"
  touch "$RALPH_VENV/.installed"
}

# Ralph's settings come from the environment (pydantic-settings, prefix RALPH_). It is started
# with uvicorn directly, not `ralph runserver`, which runs uvicorn with reload=True: a watcher
# process whose worker child outlives a kill of the pid we hold.
ralph_env() {
  local d="$state/ralph"
  export RALPH_RUNSERVER_BACKEND=es # `ralph auth` needs it too: the backend named is loaded on import
  export RALPH_AUTH_FILE="$d/auth.json"
  export RALPH_BACKENDS__LRS__ES__HOSTS="http://127.0.0.1:$ES_PORT"
  export RALPH_BACKENDS__LRS__ES__DEFAULT_INDEX="$RALPH_INDEX"
  # The node turns yellow as soon as a test makes an index with a replica on this single node.
  export RALPH_BACKENDS__LRS__ES__ALLOW_YELLOW_STATUS=true
  # Ralph finds duplicates by a search before it writes: without a refresh after each write, a
  # batch posted again within the refresh interval (1 s) is written again (200) instead of being
  # acknowledged as stored (204), and a differing statement with a stored id is not always a 409.
  export RALPH_BACKENDS__LRS__ES__REFRESH_AFTER_WRITE=true
}

# The user the tests post as (Basic auth), with the scopes to write and read statements.
make_ralph_user() {
  local d="$state/ralph"
  mkdir -p "$d" && chmod 0700 "$d"
  rm -f "$d/auth.json"
  (ralph_env && cd "$d" && "$RALPH_VENV/bin/ralph" auth --username "$RALPH_USER" \
    --password "$RALPH_PASS" --scope statements/write --scope statements/read \
    --agent-ifi-mbox "mailto:$RALPH_USER@example.org" --agent-name "$RALPH_USER" --write-to-disk \
    >"$d/auth.log" 2>&1) || { log "ralph auth failed:"; cat "$d/auth.log" >&2; return 1; }
  chmod 0600 "$d/auth.json"
}

# Ralph's index, made before Ralph sees a request: Ralph makes no index itself, and a search on a
# missing one (every POST searches for the ids first) is a 500. Extensions are kept in _source
# but not indexed: with Elasticsearch's dynamic mapping, an extension value of another JSON type
# than the first one seen fails that document in the bulk request, after the others of the batch
# were written (500, and the same 500 on every replay). Nothing is searched by extension. No
# date detection either, for the same reason; `timestamp` (sort and since/until) and `stored` are
# dates.
make_ralph_index() {
  local es="http://127.0.0.1:$ES_PORT"
  curl -s -o /dev/null -X DELETE "$es/$RALPH_INDEX"
  curl -sf -o /dev/null -X PUT "$es/$RALPH_INDEX" -H 'Content-Type: application/json' -d '{
    "settings": {"number_of_shards": 1, "number_of_replicas": 0},
    "mappings": {"date_detection": false, "properties": {
      "timestamp": {"type": "date"}, "stored": {"type": "date"},
      "result": {"properties": {"extensions": {"type": "object", "enabled": false}}},
      "context": {"properties": {"extensions": {"type": "object", "enabled": false}}}}}}' ||
    { log "could not make the index $RALPH_INDEX on $es"; return 1; }
}

launch_ralph() {
  local d="$state/ralph"
  wait_port_free "$RALPH_PORT" ralph
  (ralph_env && cd "$d" && exec nohup "$RALPH_VENV/bin/uvicorn" ralph.api:app --host 127.0.0.1 \
    --port "$RALPH_PORT" --no-server-header >"$state/ralph.log" 2>&1) &
  echo $! >"$state/ralph.pid"
}

# Up means: it serves, the user authenticates, and a read reaches the index (its own
# /__heartbeat__ asks Elasticsearch for GET /, which the test distribution does not serve).
wait_ralph() { # seconds
  local deadline=$((SECONDS + $1)) url="http://127.0.0.1:$RALPH_PORT/xAPI/statements?limit=1"
  while ((SECONDS < deadline)); do
    if curl -sf --max-time 2 -u "$RALPH_USER:$RALPH_PASS" "$url" >/dev/null 2>&1; then
      log "ralph is up at http://127.0.0.1:$RALPH_PORT/xAPI"; return 0
    fi
    if ! kill -0 "$(cat "$state/ralph.pid")" 2>/dev/null; then
      log "ralph exited while starting; its log:"; tail -n 40 "$state/ralph.log" | cut -c1-300 >&2; return 1
    fi
    sleep 0.1
  done
  log "ralph did not answer within $1 s; its log:"; tail -n 40 "$state/ralph.log" | cut -c1-300 >&2
  return 1
}

stop_ralph() {
  if [[ -f "$state/ralph.pid" ]]; then
    kill "$(cat "$state/ralph.pid")" 2>/dev/null || true
    rm -f "$state/ralph.pid"
  fi
}

start_ralph_only() { # beside an Elasticsearch already running
  stop_ralph
  install_ralph
  make_ralph_user
  launch_ralph
  make_ralph_index
  wait_ralph 60
  write_env
}

write_env() {
  cat >"$here/services.env" <<ENV
export HARVESTER_TEST_S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export HARVESTER_TEST_SQS_ENDPOINT=http://127.0.0.1:$SQS_PORT
export HARVESTER_TEST_ES_URL=http://127.0.0.1:$ES_PORT
export HARVESTER_TEST_TOXIPROXY=http://127.0.0.1:$TOXI_PORT
export HARVESTER_TEST_ES_TLS_URL=https://$ES_TLS_USER:$ES_TLS_PASS@127.0.0.1:$ES_TLS_PORT
export HARVESTER_TEST_TLS_DIR=$state/tls
export HARVESTER_TEST_XAPI_URL=http://127.0.0.1:$RALPH_PORT/xAPI
export HARVESTER_TEST_XAPI_USER=$RALPH_USER
export HARVESTER_TEST_XAPI_PASS=$RALPH_PASS
export HARVESTER_TEST_RALPH=$RALPH_VENV/bin/ralph
ENV
  log "endpoints written to $here/services.env"
}

status() {
  local name pid
  for name in moto elasticmq elasticsearch elasticsearch-tls toxiproxy ralph; do
    pid=$(cat "$state/$name.pid" 2>/dev/null || true)
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
      echo "$name: running (pid $pid, log $state/$name.log)"
    else
      echo "$name: not running"
    fi
  done
}

start() {
  stop
  if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c 'import flask, moto' 2>/dev/null; then
    log "installing moto[server] from PyPI"
    python3 -m pip install --quiet 'moto[server]'
  fi
  python3 -c 'import mmdb_writer' 2>/dev/null || python3 -m pip install --quiet 'mmdb-writer>=0.2.7'  # tests/enrich.rs writes its GeoIP databases with it
  install_ralph
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
  if [[ ! -x "$state/bin/toxiproxy-server-$TOXIPROXY_VERSION" ]]; then
    log "building Toxiproxy $TOXIPROXY_VERSION from the Go module proxy"
    mkdir -p "$state/bin"
    GOBIN="$state/bin.tmp" go install "github.com/Shopify/toxiproxy/v2/cmd/server@$TOXIPROXY_VERSION"
    mv "$state/bin.tmp/server" "$state/bin/toxiproxy-server-$TOXIPROXY_VERSION" && rm -rf "$state/bin.tmp"
  fi
  start_es
  start_es_tls
  # While Elasticsearch starts: Ralph's user, and Ralph itself (it connects to Elasticsearch only
  # when asked; its index is made once Elasticsearch is up).
  make_ralph_user
  launch_ralph
  wait_port_free "$S3_PORT" moto
  wait_port_free "$TOXI_PORT" toxiproxy
  nohup "$state/bin/toxiproxy-server-$TOXIPROXY_VERSION" -host 127.0.0.1 -port "$TOXI_PORT" \
    >"$state/toxiproxy.log" 2>&1 &
  echo $! >"$state/toxiproxy.pid"
  wait_port_free "$SQS_PORT" elasticmq
  nohup moto_server -H 127.0.0.1 -p "$S3_PORT" >"$state/moto.log" 2>&1 &
  echo $! >"$state/moto.pid"
  nohup java -Xmx512m -Dconfig.file="$state/elasticmq.conf" -cp "$(cat "$state/elasticmq.classpath")" \
    org.elasticmq.server.Main >"$state/elasticmq.log" 2>&1 &
  echo $! >"$state/elasticmq.pid"
  wait_http "http://127.0.0.1:$S3_PORT/" moto 60
  wait_http "http://127.0.0.1:$TOXI_PORT/version" toxiproxy 30
  wait_http "http://127.0.0.1:$SQS_PORT/?Action=ListQueues" elasticmq 120
  wait_http "http://127.0.0.1:$ES_PORT/_cluster/health?wait_for_status=green&timeout=1s" elasticsearch 180
  wait_es_tls 180
  make_ralph_index
  wait_ralph 60
  write_env
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  start-ralph) start_ralph_only ;;
  stop-ralph) stop_ralph ;;
  *) echo "usage: $0 start|stop|status|start-ralph|stop-ralph" >&2; exit 2 ;;
esac
