#!/usr/bin/env bash
# Interleaved: Restate 1.7.12 and portflow bench anchor, N=5000, 3 rounds; then
# bench transitions and portflow run of examples/bench at concurrency 5000; load logged.
set -u
PF=${PF:?set PF to target/release/portflow (absolute path)}
D=${D:-2026-12-02}
cd "${ANCHORS:?set ANCHORS to ../shared/anchors-bench (absolute path)}"
mkdir -p /tmp/anchors-bench
OUT=/tmp/anchors-bench/side-by-side-$D.jsonl
LOAD=/tmp/anchors-bench/load-$D.txt
: > "$OUT"; : > "$LOAD"
for r in 1 2 3; do
  sync  # the previous run's writes reach the disk before the next run starts
  echo "restate $r $(uptime)" >> "$LOAD"
  N=5000 RUNS=1 RESULTS=$OUT QUIET_TIMEOUT=20 restate/run.sh > /tmp/anchors-bench/restate-$r.log 2>&1
  # The same wait for an idle machine that restate/run.sh makes before its run.
  sync
  (. common/lib.sh; QUIET_TIMEOUT=20 wait_quiet)
  echo "portflow $r $(uptime)" >> "$LOAD"
  "$PF" bench anchor --n 5000 | tail -n 1 >> "$OUT"
done
echo "transitions $(uptime)" >> "$LOAD"
(. common/lib.sh; QUIET_TIMEOUT=20 wait_quiet)
"$PF" bench transitions > /tmp/anchors-bench/transitions-$D.txt 2>&1
echo "transitions-100k $(uptime)" >> "$LOAD"
"$PF" bench transitions --instances 100000 --steps 5 > /tmp/anchors-bench/transitions-100k-$D.txt 2>&1
for r in 1 2 3; do
  echo "run $r $(uptime)" >> "$LOAD"
  rm -rf /tmp/anchors-bench/run-state
  /usr/bin/time -v "$PF" --state /tmp/anchors-bench/run-state run ${PORTFLOW_ROOT:?set PORTFLOW_ROOT to the portflow checkout}/examples/bench/anchor-run.yaml \
    > /tmp/anchors-bench/run-$r.out 2> /tmp/anchors-bench/run-$r.time
  grep -E "Maximum resident|Elapsed|User time|System time" /tmp/anchors-bench/run-$r.time >> /tmp/anchors-bench/run-$D.txt
  tail -4 /tmp/anchors-bench/run-$r.out >> /tmp/anchors-bench/run-$D.txt
done
python3 common/summarize.py "$OUT" > /tmp/anchors-bench/summary-$D.md
echo done >> "$LOAD"
