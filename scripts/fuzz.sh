#!/usr/bin/env bash
# Fuzz bagboy's YAML loaders for a while: the proptest suite in a loop, plus the cargo-fuzz
# targets when a nightly toolchain and cargo-fuzz are installed.
#
#   scripts/fuzz.sh [MINUTES]        default 10; the time is split between proptest and fuzzing
#
# Environment: PROPTEST_CASES (cases per proptest round, default 5000), FUZZ_JOBS (default 1:
# the build machines are shared). Exit status is non-zero if anything failed or crashed.
set -u
cd "$(dirname "$0")/.."

minutes="${1:-10}"
cases="${PROPTEST_CASES:-5000}"
jobs="${FUZZ_JOBS:-1}"
total=$((minutes * 60))
log_dir="target/fuzz-logs"
mkdir -p "$log_dir"

have_fuzz=0
if command -v cargo-fuzz >/dev/null 2>&1 && rustup run nightly rustc --version >/dev/null 2>&1; then
    have_fuzz=1
fi
if [ "$have_fuzz" = 1 ]; then
    prop_secs=$((total / 2))
    fuzz_secs=$(((total - prop_secs) / 2)) # per target: history, config
else
    echo "cargo-fuzz or nightly missing: proptest only"
    prop_secs=$total
    fuzz_secs=0
fi

failed=0
start=$(date +%s)

# --- proptest, in rounds until the time is used -------------------------------------------
# Run the test binary itself, not `cargo test`, so the build lock is free for other work.
bin=$(cargo test --test it --no-run 2>&1 | sed -n 's/.*Executable.*(\(.*\)).*/\1/p' | tail -1)
if [ -z "$bin" ]; then
    echo "could not build the proptest suite"
    exit 1
fi
rounds=0
prop_cases=0
prop_deadline=$((start + prop_secs))
while [ "$(date +%s)" -lt "$prop_deadline" ]; do
    rounds=$((rounds + 1))
    # A new seed every round, so rounds explore different inputs.
    seed="$RANDOM$RANDOM"
    if PROPTEST_CASES="$cases" PROPTEST_RNG_SEED="$seed" \
        "$bin" -q history_props:: >"$log_dir/proptest-$rounds.log" 2>&1; then
        # 4 property functions run $cases each (the fixture test is not counted).
        prop_cases=$((prop_cases + 4 * cases))
        rm -f "$log_dir/proptest-$rounds.log"
    else
        echo "proptest round $rounds (PROPTEST_RNG_SEED=$seed) FAILED: $log_dir/proptest-$rounds.log"
        failed=1
        break
    fi
done
prop_time=$(($(date +%s) - start))
echo "proptest: $rounds rounds, $prop_cases cases, ${prop_time}s, failures: $failed"

# --- cargo-fuzz -----------------------------------------------------------------------------
if [ "$have_fuzz" = 1 ] && [ "$fuzz_secs" -gt 0 ]; then
    CARGO_BUILD_JOBS="$jobs" cargo +nightly fuzz build -O >"$log_dir/fuzz-build.log" 2>&1 || {
        echo "cargo fuzz build failed: $log_dir/fuzz-build.log"
        exit 1
    }
    for target in history config; do
        # A scratch corpus dir keeps the committed seed corpus small.
        work="target/fuzz-corpus/$target"
        mkdir -p "$work"
        log="$log_dir/fuzz-$target.log"
        if cargo +nightly fuzz run -O "$target" "$work" "fuzz/corpus/$target" -- \
            -max_total_time="$fuzz_secs" -max_len=8192 -timeout=10 -rss_limit_mb=2048 \
            -print_final_stats=1 >"$log" 2>&1; then
            result=ok
        else
            result=CRASH
            failed=1
        fi
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
        echo "fuzz $target: ${fuzz_secs}s, ${runs:-?} execs, $cov, $result (log: $log)"
        if [ "$result" = CRASH ]; then
            grep -E "panicked|SUMMARY|Test unit written" "$log" | head -5
        fi
    done
fi

echo "total: $(($(date +%s) - start))s, failed: $failed"
exit "$failed"
