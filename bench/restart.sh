#!/usr/bin/env bash
# Restart time after SIGKILL on a large journal: how long a harvester that was killed mid-commit
# takes to open its journal again (redb repairs a journal that was not closed cleanly), against the
# same open after a clean close.
#
#   bash bench/restart.sh              # a journal of 5,000,000 simulated actions
#   ACTIONS=1000000 bash bench/restart.sh
#
# Prints one Markdown table row per figure (also written to bench/out/restart.md).
set -euo pipefail
cd "$(dirname "$0")/.."
ACTIONS="${ACTIONS:-5000000}"
RUNS="${RUNS:-3}"
PORT="${SIM_PORT:-29524}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/harvester-target}"
out=bench/out
mkdir -p "$out"
work="$(mktemp -d)"
SIM_PID=
trap 'kill $SIM_PID 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build --release --quiet
H="$CARGO_TARGET_DIR/release/harvester"
export MATTERHORN_ENGAGE_HOST="127.0.0.1:$PORT" MATTERHORN_REST_USER=opencast_system_account MATTERHORN_REST_PASS=CHANGE_ME
export LOG_LEVEL=warn JOURNAL_PATH="$work/j.redb" OPENCAST_MAX_IN_FLIGHT=12

# The actions are spread evenly over a day; the journal gets the first 95% of them, and the
# harvest of the last 5% is the one killed.
FROM=20160301000000 SPLIT=20160301224800 TO=20160302000000
"$H" sim --listen "127.0.0.1:$PORT" --actions "$ACTIONS" --from $FROM --to $TO >"$work/sim.log" 2>&1 &
SIM_PID=$!
sleep 1
"$H" harvest -s $FROM -e $SPLIT -o none 2>"$work/h1.log"
size=$(stat -c %s "$work/j.redb")
base=$("$H" journal stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["actions"])')

secs() { # seconds a command takes
  local s e
  s=$(date +%s.%N)
  "$@" >/dev/null 2>&1
  e=$(date +%s.%N)
  python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.3f}')" "$s" "$e"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

clean=() killed=() resumed=() records=()
for ((r = 1; r <= RUNS; r++)); do
  clean+=("$(secs "$H" checkpoint)")
  # Kill a harvest in the middle of its commits (it appends to the large journal).
  cp "$work/j.redb" "$work/base.redb"
  "$H" harvest -s $SPLIT -e $TO -o none 2>"$work/h2.log" &
  pid=$!
  sleep 0.4
  kill -KILL $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  cp "$work/j.redb" "$work/killed.redb"
  killed+=("$(secs "$H" checkpoint)")
  # The same killed journal, reopened by the next harvest: open, repair, the damage check of
  # 200,000 records, and an empty window.
  cp "$work/killed.redb" "$work/j.redb"
  resumed+=("$(secs "$H" harvest -s $TO -e $TO -o none)")
  records+=("$("$H" journal stats --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["actions"])')")
  mv "$work/base.redb" "$work/j.redb"
done
kill $SIM_PID 2>/dev/null || true
{
  echo "| figure | measured |"
  echo "|---|---|"
  echo "| journal before the killed harvest (actions / bytes) | $base / $size |"
  echo "| open after a clean close (s, median of $RUNS) | $(printf '%s\n' "${clean[@]}" | median) |"
  echo "| open after SIGKILL mid-harvest (s, median of $RUNS; range) | $(printf '%s\n' "${killed[@]}" | median) ($(printf '%s\n' "${killed[@]}" | sort -n | head -1)-$(printf '%s\n' "${killed[@]}" | sort -n | tail -1)) |"
  echo "| first harvest after SIGKILL, empty window (s, median of $RUNS) | $(printf '%s\n' "${resumed[@]}" | median) |"
  echo "| actions in the journal after each kill | ${records[*]} |"
} | tee "$out/restart.md"
