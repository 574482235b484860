#!/usr/bin/env bash
# Run every fuzz target for a bounded time: `fuzz/run.sh [SECONDS_PER_TARGET]`
# (default 25). Corpora start from the shipped workflows, run files and CSV
# lists plus fuzz/seeds/<target>/. Installs cargo-fuzz if it is missing; uses
# the nightly toolchain when there is one, else the default (`-s none` needs
# no nightly flags). Prints executions per target; a finding fails the run
# and leaves its input in fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-25}"
targets=(workflow spec_file csv_subjects cron_window duration condition template)

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked --version 0.13.2
fi
toolchain=()
installed="$(rustup toolchain list 2>/dev/null || true)"
if grep -q '^nightly' <<<"$installed"; then
    toolchain=(+nightly)
fi
# Safe Rust only: no sanitizer, but debug assertions (overflow checks) on.
flags=(-s none -a)

rm -rf corpus
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    if [ -d "seeds/$t" ]; then cp seeds/"$t"/* "corpus/$t/"; fi
done
for f in ../workflows/*.yaml; do
    cp "$f" corpus/workflow/
    cp "$f" "corpus/spec_file/workflow-${f##*/}"
done
for f in ../examples/*.yaml; do cp "$f" "corpus/spec_file/example-${f##*/}"; done
cp ../examples/*.csv corpus/csv_subjects/

cargo "${toolchain[@]}" fuzz build "${flags[@]}"
summary=()
for t in "${targets[@]}"; do
    log="$(mktemp)"
    # -timeout: an input taking 10 s is a hang; -rss_limit_mb: runaway memory.
    if ! cargo "${toolchain[@]}" fuzz run "${flags[@]}" "$t" "corpus/$t" -- \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 >"$log" 2>&1; then
        # Without the input's byte dump, which can be long.
        grep -v '^[[:space:]]*\[' "$log" | tail -n 40
        echo "fuzz: target $t found a problem (input in fuzz/artifacts/$t/)" >&2
        exit 1
    fi
    runs="$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' | tail -n 1)"
    summary+=("$t: ${runs:-?} executions in ${secs}s")
    rm -f "$log"
done
printf 'fuzz: %s\n' "${summary[@]}"
