#!/usr/bin/env bash
# Issue 18's figures: harvesting a stock Opencast (day=YYYYMMDD queries) from the simulator
# playing Opencast 16 (`--opencast oc16-17`), holding DAYS days of PER_DAY actions each, the last
# day being today (its rows appear as the clock reaches them, as in a real table), with rows in
# `created` order and shuffled per query. Prints a Markdown table (bench/out/stock.md).
#
#   bash bench/stock.sh                       # 30 days x 200,000 actions
#   DAYS=3 PER_DAY=20000 bash bench/stock.sh  # a quick look
#   ONLY_PAIRS=1 RUNS=5 bash bench/stock.sh   # only stock against windowed, RUNS pairs
#
# Figures: a whole past day caught up (requests = pages asked for, seconds, of which waiting for
# the server clock's second 0/59, the day bug); a steady-state run over the last 2 minutes after
# that; and actions/s of the same past day (its first and last minute left out, so that no clock
# wait is counted) harvested with `OPENCAST_API=stock` from the stock simulator and with
# `windowed` from the DCE simulator on the same data.
set -euo pipefail
cd "$(dirname "$0")/.."
DAYS="${DAYS:-30}"
PER_DAY="${PER_DAY:-200000}"
PORT="${SIM_PORT:-29524}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/harvester-target}"
H="${HARVESTER_BIN:-$CARGO_TARGET_DIR/release/harvester}"
[[ -n "${HARVESTER_BIN:-}" ]] || cargo build --release --quiet
out=bench/out
mkdir -p "$out"
work="$(mktemp -d)"
SIM_PID=
trap 'kill $SIM_PID 2>/dev/null || true; rm -rf "$work"' EXIT
export MATTERHORN_ENGAGE_HOST="127.0.0.1:$PORT" MATTERHORN_REST_USER=opencast_system_account MATTERHORN_REST_PASS=CHANGE_ME
export LOG_LEVEL=info OPENCAST_TIMEZONE=UTC

now=$(date -u +%s)
today=$((now - now % 86400))
first=$((today - (DAYS - 1) * 86400))
fmt() { date -u -d "@$1" +%Y%m%d%H%M%S; }
FROM=$(fmt $first)
TO=$(fmt $((today + 86400)))
# Actions over DAYS+1 days (today's second half not there yet): PER_DAY a day.
ACTIONS=$(((DAYS + 1) * PER_DAY))
Y=$((today - 86400))

start_sim() { # release order
  if [[ -n "$SIM_PID" ]]; then
    kill "$SIM_PID" 2>/dev/null || true
    wait "$SIM_PID" 2>/dev/null || true
  fi
  "$H" sim --listen "127.0.0.1:$PORT" --opencast "$1" --row-order "$2" --actions "$ACTIONS" \
    --from "$FROM" --to "$TO" >"$work/sim.log" 2>&1 &
  SIM_PID=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/login.html" && return 0
    sleep 0.1
  done
  echo "simulator did not start"; cat "$work/sim.log"; exit 1
}

summary() { # log field
  grep 'harvest summary' "$1" | tail -1 | grep -o "$2=[^ ]*" | head -1 | cut -d= -f2 | tr -d '"'
}

row() { echo "| $* |" | tee -a "$out/stock.md"; }
: >"$out/stock.md"
row "data | run | page requests | seconds | of which clock wait (s) | actions journaled | actions/s"
row "---|---|---|---|---|---|---"
# ONLY_PAIRS=1: only the stock/windowed pairs at the end.
orders="created shuffled"; [[ -n "${ONLY_PAIRS:-}" ]] && orders=
for order in $orders; do
  start_sim oc16-17 "$order"
  export JOURNAL_PATH="$work/j-$order.redb"
  rm -f "$JOURNAL_PATH"
  # A whole past day, from nothing: the catch-up of one day.
  OPENCAST_API=stock "$H" harvest -s "$(fmt $Y)" -e "$(fmt $((Y + 86399)))" -o none --max-in-flight 12 \
    >"$work/day.log" 2>&1 || { cat "$work/day.log"; exit 1; }
  s=$(summary "$work/day.log" seconds); n=$(summary "$work/day.log" actions)
  row "$DAYS d x $PER_DAY, $order | a whole past day | $(summary "$work/day.log" batches) | $s | $(summary "$work/day.log" clock_wait_s) | $n | $(python3 -c "print(round($n/$s))")"
  # Today up to 2 minutes ago, then the steady-state run over the last 2 minutes.
  OPENCAST_API=stock "$H" harvest -s "$(fmt $today)" -e "$(fmt $(( $(date -u +%s) - 120 )))" -o none \
    --max-in-flight 12 --disable-start-end-span-check >"$work/today.log" 2>&1 || { cat "$work/today.log"; exit 1; }
  sleep 2
  OPENCAST_API=stock "$H" harvest -o none >"$work/steady.log" 2>&1 || { cat "$work/steady.log"; exit 1; }
  s=$(summary "$work/steady.log" seconds); n=$(summary "$work/steady.log" actions)
  row "$DAYS d x $PER_DAY, $order | steady state (last 2 min) | $(summary "$work/steady.log" batches) | $s | $(summary "$work/steady.log" clock_wait_s) | $n | -"
done

# The same past day without its first and last minute: stock (created order) against windowed,
# RUNS pairs run back to back (this shared machine's speed drifts; a pair's halves see the same),
# each from a fresh journal; the table gives each mode's median and the median of the pairs'
# ratios.
start_sim oc16-17 created
STOCK_PID=$SIM_PID SIM_PID=
PORT_STOCK=$PORT PORT=$((PORT + 1))
start_sim dce created
trap 'kill $SIM_PID $STOCK_PID 2>/dev/null || true; rm -rf "$work"' EXIT
: >"$work/pairs"
for run in $(seq "${RUNS:-5}"); do
  for mode in stock windowed; do
    port=$PORT; [[ $mode == stock ]] && port=$PORT_STOCK
    export JOURNAL_PATH="$work/j-$mode.redb"
    rm -f "$JOURNAL_PATH"
    MATTERHORN_ENGAGE_HOST="127.0.0.1:$port" OPENCAST_API=$mode "$H" harvest -s "$(fmt $((Y + 60)))" \
      -e "$(fmt $((Y + 86339)))" -o none --max-in-flight 12 --no-update-last-ts \
      >"$work/$mode.log" 2>&1 || { cat "$work/$mode.log"; exit 1; }
    # Less the clock wait: a stock run first reads the server's clock to the tick of its second
    # (about half a second, once a run, whatever the number of actions).
    s=$(python3 -c "print(round($(summary "$work/$mode.log" seconds) - $(summary "$work/$mode.log" clock_wait_s), 3))")
    n=$(summary "$work/$mode.log" actions)
    echo "$run $mode $(summary "$work/$mode.log" batches) $s $n" >>"$work/pairs"
  done
done
python3 - "$work/pairs" "$PER_DAY" >>"$out/stock.md" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
by = {m: [r for r in rows if r[1] == m] for m in ("stock", "windowed")}
for m in ("stock", "windowed"):
    rs = by[m]
    secs = statistics.median(float(r[3]) for r in rs)
    n = int(rs[0][4])
    print(f"| one day of {sys.argv[2]}, created order | {m}, 00:01-23:58 (median of {len(rs)}; seconds less clock wait) | {rs[0][2]} | {secs:.3f} | - | {n} | {round(n / secs)} |")
ratios = sorted(float(w[3]) / float(s[3]) for s, w in zip(by["stock"], by["windowed"]))
print()
print(f"stock / windowed throughput: median of {len(ratios)} pairs {statistics.median(ratios):.3f} (range {ratios[0]:.3f}-{ratios[-1]:.3f})")
PY
tail -4 "$out/stock.md"
