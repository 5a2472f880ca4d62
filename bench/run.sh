#!/usr/bin/env bash
# Benchmarks of issue #2's targets, on this machine, against the simulated Opencast on loopback.
# Prints a Markdown table (also written to bench/out/results.md); BENCHMARKS.md records runs.
#
#   bash bench/run.sh            # 1,000,000 actions; SQS and Elasticsearch forwards of 100,000
#                                # records; load-episodes of 1,000 episodes
#   ACTIONS=200000 bash bench/run.sh
#   HARVESTER_BIN=/path/to/old/harvester bash bench/run.sh   # another build, not rebuilt (for
#                                # paired old/new runs)
#
# Needs /usr/bin/time (Debian package `time`) and, for the SQS figures, the services of
# .ci/services.sh (started here if they are not running).
set -euo pipefail
cd "$(dirname "$0")/.."
ACTIONS="${ACTIONS:-1000000}"
SQS_ACTIONS="${SQS_ACTIONS:-100000}"
ES_ACTIONS="${ES_ACTIONS:-100000}"
EPISODES="${EPISODES:-1000}"
RUNS="${RUNS:-3}"
PORT="${SIM_PORT:-29523}" # below the ephemeral port range
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/harvester-target}"
out=bench/out
mkdir -p "$out"
work="$(mktemp -d)"
SIM2_PID=
trap 'kill $SIM_PID $SIM2_PID 2>/dev/null || true; rm -rf "$work"' EXIT

command -v /usr/bin/time >/dev/null || { apt-get install -y time >/dev/null 2>&1 || { echo "needs /usr/bin/time (Debian package time)"; exit 1; }; }
elapsed() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$1" "$2"; }
ratio() { python3 -c "import sys; print(float(sys.argv[2]) / float(sys.argv[1]))" "$1" "$2"; }
if [[ -n "${HARVESTER_BIN:-}" ]]; then
  H="$HARVESTER_BIN"
else
  cargo build --release --quiet
  H="$CARGO_TARGET_DIR/release/harvester"
fi

FROM=20160301000000 TO=20160302000000
# The figures of BENCHMARKS.md were measured with 12 requests in flight (the default then); the
# default is now gentler (--max-in-flight, OPENCAST_MAX_IN_FLIGHT), so the same 12 are asked for.
INFLIGHT=(--max-in-flight 12)
export MATTERHORN_ENGAGE_HOST="127.0.0.1:$PORT" MATTERHORN_REST_USER=opencast_system_account MATTERHORN_REST_PASS=CHANGE_ME
export LOG_LEVEL=info JOURNAL_PATH="$work/j.redb"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# One set of RUNS (bare fetch, harvest) pairs against a fresh simulator.
#   ratio_set NAME SIM_CPUS CLIENT_CPUS [sim args...]   (CPU lists for taskset, or "" for any)
# Each pair runs back to back, so its ratio is immune to the slow drifts of this shared
# machine; the set reports the median ratio and its range, the median times, the peak RSS and
# the harvester's CPU seconds.
ratio_set() {
  local name=$1 simcpu=$2 cpu=$3
  shift 3
  local pin_sim=() pin=()
  [[ -n "$simcpu" ]] && pin_sim=(taskset -c "$simcpu")
  [[ -n "$cpu" ]] && pin=(taskset -c "$cpu")
  "${pin_sim[@]}" "$H" sim --listen "127.0.0.1:$PORT" --actions "$ACTIONS" --from $FROM --to $TO "$@" >"$work/sim.log" 2>&1 &
  SIM_PID=$!
  sleep 1
  # Seconds of one bench-fetch (extra arguments: its --decode).
  fetch_seconds() {
    "${pin[@]}" "$H" bench-fetch -s $FROM -e $TO "${INFLIGHT[@]}" "$@" 2>"$work/fetch.log"
    grep -o 'seconds="[0-9.]*"' "$work/fetch.log" | tr -dc '0-9.'
  }
  fetch_seconds >/dev/null # warm-up
  local fetch_s=() harvest_s=() ratios=() rss_kb=() cpu_s=() skims=() decodes=()
  for ((r = 1; r <= RUNS; r++)); do
    local f h
    f=$(fetch_seconds)
    # The floors: the same fetch with a serde skim of each page (the least a harvester that
    # reads the JSON must do), and with the harvest's own decoding and judging.
    skims+=("$(ratio "$f" "$(fetch_seconds --decode skim)")")
    decodes+=("$(ratio "$f" "$(fetch_seconds --decode full)")")
    rm -f "$work/j.redb"
    /usr/bin/time -f "%M %U %S" -o "$work/time.txt" "${pin[@]}" "$H" harvest "${INFLIGHT[@]}" -s $FROM -e $TO -o none 2>"$work/harvest.log"
    grep -q "actions=$ACTIONS " "$work/harvest.log" || { cat "$work/harvest.log"; exit 1; }
    h=$(grep 'harvest summary' "$work/harvest.log" | grep -o 'seconds="[0-9.]*"' | tr -dc '0-9.')
    fetch_s+=("$f") harvest_s+=("$h")
    ratios+=("$(ratio "$f" "$h")")
    read -r kb u sy <"$work/time.txt"
    rss_kb+=("$kb") cpu_s+=("$(python3 -c "import sys; print(float(sys.argv[1]) + float(sys.argv[2]))" "$u" "$sy")")
  done
  kill $SIM_PID 2>/dev/null || true
  wait $SIM_PID 2>/dev/null || true
  SIM_PID=
  printf '%s %s %s %s %s %s %s %s %s %s\n' "$name" \
    "$(printf '%s\n' "${fetch_s[@]}" | median)" \
    "$(printf '%s\n' "${harvest_s[@]}" | median)" \
    "$(printf '%s\n' "${ratios[@]}" | median)" \
    "$(printf '%s\n' "${ratios[@]}" | sort -n | head -n1)" \
    "$(printf '%s\n' "${ratios[@]}" | sort -n | tail -n1)" \
    "$(printf '%s\n' "${rss_kb[@]}" | sort -n | tail -n1)" \
    "$(printf '%s\n' "${cpu_s[@]}" | median)" \
    "$(printf '%s\n' "${skims[@]}" | median)" \
    "$(printf '%s\n' "${decodes[@]}" | median)" >>"$work/ratios.txt"
}

: >"$work/ratios.txt"
# 1. Shared cores: simulator and harvester scheduled freely on both cores.
ratio_set shared "" ""
# 2. Split cores: the simulator on core 0, the bare fetch and the harvest on core 1, as when
#    Opencast runs on its own machine (the bare fetch then cannot borrow the harvester's core).
if [[ $(nproc) -ge 2 ]]; then ratio_set split 0 1; fi
# 3. Server latency: every simulator response 20 ms late (shared cores).
ratio_set latency20 "" "" --delay-ms 20
read -r _ F HS _ _ _ RSS _ < <(grep '^shared ' "$work/ratios.txt")
# The shared set's journal is the one the figures below read.
"$H" sim --listen "127.0.0.1:$PORT" --actions "$ACTIONS" --from $FROM --to $TO >"$work/sim.log" 2>&1 &
SIM_PID=$!
sleep 1
rm -f "$work/j.redb"
"$H" harvest "${INFLIGHT[@]}" -s $FROM -e $TO -o none 2>/dev/null
journal_bytes=$(stat -c %s "$work/j.redb")

# The JSON records themselves, via the stdout forwarder (also its throughput).
start=$(date +%s.%N)
"$H" forward -o - >"$work/records.jsonl" 2>/dev/null
end=$(date +%s.%N)
json_bytes=$(stat -c %s "$work/records.jsonl")
lines=$(wc -l <"$work/records.jsonl")
FWD_S=$(elapsed "$start" "$end")

# journal dump of the whole journal to /dev/null (median time, peak RSS), and a replay to stdout.
dump_s=() dump_kb=()
for ((r = 1; r <= RUNS; r++)); do
  /usr/bin/time -f "%e %M" -o "$work/dump.txt" "$H" journal dump >/dev/null 2>&1
  read -r t kb <"$work/dump.txt"; dump_s+=("$t"); dump_kb+=("$kb")
done
DUMP_S=$(printf '%s\n' "${dump_s[@]}" | median)
DUMP_KB=$(printf '%s\n' "${dump_kb[@]}" | sort -n | tail -n1)
start=$(date +%s.%N)
"$H" journal replay --seq 0.. -o - --name bench >/dev/null 2>&1
end=$(date +%s.%N)
REPLAY_S=$(elapsed "$start" "$end")

# Forward to SQS (ElasticMQ): a fresh journal of SQS_ACTIONS records.
if [[ ! -f .ci/services.env ]] || ! python3 -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1] + '/?Action=ListQueues', timeout=1); urllib.request.urlopen(sys.argv[2] + '/_cluster/health', timeout=1)" "$(. .ci/services.env; echo "$HARVESTER_TEST_SQS_ENDPOINT")" "$(. .ci/services.env; echo "${HARVESTER_TEST_ES_URL:-http://127.0.0.1:1}")" 2>/dev/null; then
  bash .ci/services.sh start
fi
. .ci/services.env
export JOURNAL_PATH="$work/sqs.redb" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
export AWS_ENDPOINT_URL_SQS="$HARVESTER_TEST_SQS_ENDPOINT"
SQS_TO=$(date -u -d "2016-03-01 00:00:00 UTC + $((86400 * SQS_ACTIONS / ACTIONS)) seconds" +%Y%m%d%H%M%S)
"$H" harvest "${INFLIGHT[@]}" -s $FROM -e "$SQS_TO" -o none 2>/dev/null
queue="bench-$(date +%s)"
start=$(date +%s.%N)
"$H" forward -o sqs -q "$queue" 2>"$work/sqs.log"
end=$(date +%s.%N)
SQS_S=$(elapsed "$start" "$end")
sqs_n=$(grep -o 'forwarded=[0-9]*' "$work/sqs.log" | head -n1 | tr -dc '0-9')
sqs_req=$(grep -o 'requests=[0-9]*' "$work/sqs.log" | head -n1 | tr -dc '0-9')

# Forward to Elasticsearch (the real node of .ci/services.sh): a fresh journal of ES_ACTIONS
# records into new daily indices, with the default bulk size (1,000 records).
export JOURNAL_PATH="$work/es.redb" ELASTICSEARCH_HOST="$HARVESTER_TEST_ES_URL"
ES_TO=$(date -u -d "2016-03-01 00:00:00 UTC + $((86400 * ES_ACTIONS / ACTIONS)) seconds" +%Y%m%d%H%M%S)
"$H" harvest "${INFLIGHT[@]}" -s $FROM -e "$ES_TO" -o none 2>/dev/null
stamp=$(date +%s)
start=$(date +%s.%N)
"$H" forward -o es --es-action-index "bench-$stamp-ua-%Y.%m.%d" 2>"$work/es.log"
end=$(date +%s.%N)
ES_S=$(elapsed "$start" "$end")
es_n=$(grep -o 'forwarded=[0-9]*' "$work/es.log" | head -n1 | tr -dc '0-9')
es_req=$(grep -o 'requests=[0-9]*' "$work/es.log" | head -n1 | tr -dc '0-9')

# load-episodes of EPISODES episodes (created an hour apart, the newest an hour ago) from a
# second simulator: search pages of 100, a workflow request per episode, journal, bulk index.
"$H" sim --listen "127.0.0.1:$((PORT + 1))" --episodes "$EPISODES" --actions 10 >"$work/sim2.log" 2>&1 &
SIM2_PID=$!
sleep 1
export JOURNAL_PATH="$work/episodes.redb" MATTERHORN_ENGAGE_HOST="127.0.0.1:$((PORT + 1))" MATTERHORN_ADMIN_HOST="127.0.0.1:$((PORT + 1))"
"$H" load-episodes -c $((EPISODES / 24 + 2)) -i "bench-$stamp-episodes" 2>"$work/le.log"
# Every episode listed is indexed (a few of the simulator's episodes carry no creation date and
# are not "created in the last N days").
grep -q "load-episodes complete" "$work/le.log" || { cat "$work/le.log"; exit 1; }
LE_N=$(grep 'load-episodes complete' "$work/le.log" | grep -o ' episodes=[0-9]*' | tr -dc '0-9')
grep -q "indexed=$LE_N " "$work/le.log" || { cat "$work/le.log"; exit 1; }
LE_S=$(grep 'load-episodes complete' "$work/le.log" | grep -o 'seconds="[0-9.]*"' | tr -dc '0-9.')

python3 - "$ACTIONS" "$F" "$HS" "$RSS" "$journal_bytes" "$json_bytes" "$lines" "$FWD_S" "$sqs_n" "$SQS_S" "$sqs_req" "$(nproc)" "$DUMP_S" "$DUMP_KB" "$REPLAY_S" "$es_n" "$ES_S" "$es_req" "$LE_N" "$LE_S" "$work/ratios.txt" "$RUNS" >"$out/results.md" <<'PY'
import sys
a, f, h, rss, jb, jsb, lines, fwd, sqs_n, sqs_s, sqs_req, cores, dump_s, dump_kb, replay_s, es_n, es_s, es_req, eps, le_s, ratios_path, runs = sys.argv[1:]
sets = {}
for line in open(ratios_path):
    name, *v = line.split()
    sets[name] = [float(x) for x in v]
labels = {
    "shared": "shared cores",
    "split": "split cores (simulator on core 0, harvester on core 1)",
    "latency20": "server latency 20 ms, shared cores",
}
es_n, es_s, es_req, eps, le_s = int(es_n or 0), float(es_s), int(es_req or 0), int(eps), float(le_s)
dump_s, dump_kb, replay_s = float(dump_s), int(dump_kb), float(replay_s)
a, f, h, rss, jb, jsb, lines, fwd = int(a), float(f), float(h), int(rss), int(jb), int(jsb), int(lines), float(fwd)
sqs_n, sqs_s, sqs_req = int(sqs_n or 0), float(sqs_s), int(sqs_req or 0)
rows = [
    ("harvest throughput (actions/s, durable journal)", f"{a / h:,.0f}", ">= 50,000"),
    ("peak RSS of the harvest, all sets (MiB)", f"{max([rss] + [v[5] for v in sets.values()]) / 1024:.1f}", "<= 100"),
    ("journal bytes per action / JSON bytes per record", f"{jb / a:.1f} / {jsb / lines:.0f} = {100 * jb / jsb:.1f}%", "<= 30%"),
    ("forward to stdout (records/s)", f"{lines / fwd:,.0f}", "-"),
    ("forward to SQS (ElasticMQ) (records/s)", f"{sqs_n / sqs_s:,.0f}" if sqs_n else "n/a", "-"),
    ("SQS requests per 1,000 actions", f"{1000 * sqs_req / sqs_n:.1f}" if sqs_n else "n/a", "<= 101"),
    ("journal dump to /dev/null (records/s)", f"{lines / dump_s:,.0f}", ">= 300,000"),
    ("peak RSS of the dump (MiB)", f"{dump_kb / 1024:.1f}", "flat"),
    ("journal replay to stdout (records/s)", f"{lines / replay_s:,.0f}", "-"),
    (f"forward to Elasticsearch, bulk (records/s, {es_n:,} records)", f"{es_n / es_s:,.0f}" if es_n else "n/a", "-"),
    ("Elasticsearch bulk requests per 1,000 actions", f"{1000 * es_req / es_n:.1f}" if es_n else "n/a", "-"),
    (f"load-episodes of {eps:,} episodes (s)", f"{le_s:.2f}", "-"),
]
for name, (sf, sh, med, lo, hi, srss, scpu, skim, dec) in sets.items():
    rows.append((
        f"harvest time / bare fetch time, {labels[name]}: median of {runs} pairs (range); harvester CPU s, peak RSS MiB",
        f"{sh:.2f} s / {sf:.2f} s = **{med:.2f}** ({lo:.2f}-{hi:.2f}); {scpu:.2f} s; {srss / 1024:.1f}",
        "<= 1.3",
    ))
    rows.append((
        f"floors, {labels[name]}: (fetch + serde skim) / bare fetch; (fetch + decode and judge) / bare fetch",
        f"{skim:.2f}; {dec:.2f}",
        "-",
    ))
print(f"{a:,} simulated actions, {cores} cores, medians of the runs")
print()
print("| figure | measured | target |")
print("|---|---|---|")
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} |")
PY
cat "$out/results.md"
