#!/usr/bin/env bash
# Issue 20's figures: `harvester report` on 5,000,000 actions (1,000 episodes, 20,000 viewers,
# 30 days; benches/report.rs writes the journals once), a heartbeat journal (Paella 6 / DCE:
# a HEARTBEAT every 30 s with seeks and pauses) and a Paella 7 one (PLAY/PAUSE/SEEK only).
# Each report runs on one core (taskset -c 1) under /usr/bin/time -v: wall and CPU seconds,
# actions/s, peak RSS. Prints a Markdown table (bench/out/report.md).
#
#   bash bench/report.sh
#   REPORT_BENCH_DIR=/var/tmp/report-bench ROUNDS=3 bash bench/report.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/harvester-target}"
export REPORT_BENCH_DIR="${REPORT_BENCH_DIR:-/var/tmp/report-bench}"
ROUNDS="${ROUNDS:-3}"
H="${HARVESTER_BIN:-$CARGO_TARGET_DIR/release/harvester}"
[[ -n "${HARVESTER_BIN:-}" ]] || cargo build --release --quiet
cargo bench --quiet --bench report
out=bench/out
mkdir -p "$out"
ACTIONS=5000000
{
  echo "| journal | report | wall s (best of $ROUNDS) | CPU s | actions/s (wall) | peak RSS MiB |"
  echo "|---|---|---|---|---|---|"
  for j in heartbeat paella7; do
    for r in viewers episodes series attendance; do
      best=
      for _ in $(seq "$ROUNDS"); do
        t=$( { /usr/bin/time -v taskset -c 1 "$H" --journal "$REPORT_BENCH_DIR/$j.redb" report "$r" > /dev/null; } 2>&1 )
        wall=$(grep "Elapsed (wall clock)" <<<"$t" | awk '{print $NF}' | awk -F: '{ if (NF==3) print $1*3600+$2*60+$3; else print $1*60+$2 }')
        cpu=$(awk '/User time|System time/ {s+=$NF} END {print s}' <<<"$t")
        rss=$(grep "Maximum resident" <<<"$t" | awk '{print $NF}')
        if [[ -z "$best" ]] || awk -v a="$wall" -v b="$best" 'BEGIN{exit !(a<b)}'; then
          best=$wall; bcpu=$cpu; brss=$rss
        fi
      done
      printf '| %s | %s | %.2f | %.2f | %s | %.0f |\n' "$j" "$r" "$best" "$bcpu" \
        "$(awk -v a=$ACTIONS -v w="$best" 'BEGIN{printf "%.0f", a/w}')" "$(awk -v k="$brss" 'BEGIN{print k/1024}')"
    done
  done
} | tee "$out/report.md"
