#!/usr/bin/env bash
# Issue 21's figures: xAPI statements of 1,000,000 actions (the simulator's regular sessions, one
# day, as bench/run.sh): `journal dump --format xapi` to a file, and `forward -o xapi` into the
# LRS of .ci/services.sh (Ralph on the Elasticsearch node), then the same statements replayed
# (every one already stored). Wall seconds, statements/s, peak RSS. Prints a Markdown table
# (bench/out/xapi.md).
#
#   bash bench/xapi.sh
#   ACTIONS=200000 HARVESTER_BIN=/path/to/harvester bash bench/xapi.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ACTIONS="${ACTIONS:-1000000}"
PORT="${SIM_PORT:-29524}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/harvester-target}"
H="${HARVESTER_BIN:-$CARGO_TARGET_DIR/release/harvester}"
[[ -n "${HARVESTER_BIN:-}" ]] || cargo build --release --quiet
[[ -f .ci/services.env ]] || bash .ci/services.sh start
# shellcheck disable=SC1091
source .ci/services.env
: "${HARVESTER_TEST_XAPI_URL:?the LRS is not running: bash .ci/services.sh start}"
work="$(mktemp -d)"
trap 'kill $SIM_PID 2>/dev/null || true; rm -rf "$work"' EXIT
out=bench/out
mkdir -p "$out"

FROM=20160301000000 TO=20160302000000
export MATTERHORN_ENGAGE_HOST="127.0.0.1:$PORT" MATTERHORN_REST_USER=opencast_system_account MATTERHORN_REST_PASS=CHANGE_ME
export LOG_LEVEL=info JOURNAL_PATH="$work/j.redb"
export XAPI_ENDPOINT="$HARVESTER_TEST_XAPI_URL" XAPI_USERNAME="$HARVESTER_TEST_XAPI_USER" XAPI_PASSWORD="$HARVESTER_TEST_XAPI_PASS"
# Statements of this run apart from every other in the shared LRS.
export XAPI_HOME_PAGE="https://bench-$(date +%s)-$$.engage.example.edu/"
"$H" sim --listen "127.0.0.1:$PORT" --actions "$ACTIONS" --from $FROM --to $TO >"$work/sim.log" 2>&1 &
SIM_PID=$!
sleep 1
"$H" harvest -s $FROM -e $TO -o none 2>"$work/harvest.log"
kill $SIM_PID; SIM_PID=

# timed LABEL CMD...: wall seconds and peak RSS (KiB) into $work/LABEL.time
timed() {
  local label=$1; shift
  /usr/bin/time -f "%e %M" -o "$work/$label.time" "$@"
}
timed dump "$H" journal dump --format xapi >"$work/x.jsonl" 2>"$work/dump.log"
statements=$(wc -l <"$work/x.jsonl")
read -r dump_s dump_kb <"$work/dump.time"
timed forward "$H" forward -o xapi 2>"$work/forward.log"
read -r fwd_s fwd_kb <"$work/forward.time"
grep -q "forwarded=$ACTIONS" "$work/forward.log" || { tail -5 "$work/forward.log"; exit 1; }
timed replay "$H" journal replay --seq 0.. -o xapi --name bench-replay 2>"$work/replay.log"
read -r rep_s rep_kb <"$work/replay.time"
requests=$(grep -o 'requests=[0-9]*' "$work/forward.log" | tail -1 | tr -dc '0-9')
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
{
  echo "| figure | $ACTIONS actions, $statements statements |"
  echo "|---|---|"
  echo "| journal dump --format xapi to a file (s; statements/s; actions/s; peak RSS MiB) | $dump_s; $(rate "$statements" "$dump_s"); $(rate "$ACTIONS" "$dump_s"); $(mib "$dump_kb") |"
  echo "| forward -o xapi into Ralph (s; statements/s; POSTs; peak RSS MiB) | $fwd_s; $(rate "$statements" "$fwd_s"); $requests; $(mib "$fwd_kb") |"
  echo "| journal replay -o xapi, all already stored (s; statements/s; peak RSS MiB) | $rep_s; $(rate "$statements" "$rep_s"); $(mib "$rep_kb") |"
} | tee "$out/xapi.md"
grep "xapi statements" "$work/dump.log" | sed 's/.*INFO //' | cut -c1-400
