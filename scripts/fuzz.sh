#!/usr/bin/env bash
# Runs each fuzz target of fuzz/ for SECONDS (`make fuzz`, `make fuzz-smoke`;
# README "Fuzzing"). Usage: scripts/fuzz.sh SECONDS TARGET...
# Each target starts from its working corpus (fuzz/corpus/TARGET, not
# committed) and its committed inputs (fuzz/regressions/TARGET). A crash
# leaves its input in fuzz/artifacts/TARGET/; the script runs every target,
# then fails naming each artifact.
set -u
seconds=$1
shift
cargo=${CARGO:-cargo}
cd "$(dirname "$0")/.."

echo "== building the fuzz targets (nightly, AddressSanitizer; the first time takes a few minutes)"
"$cargo" +nightly fuzz build || exit 1

failed=()
for target in "$@"; do
    echo "== fuzzing $target for ${seconds}s"
    mkdir -p "fuzz/corpus/$target" "fuzz/artifacts/$target"
    before=$(ls "fuzz/artifacts/$target")
    # -malloc_limit_mb: no single allocation may approach a declared size
    # (the largest frame is 16 MiB; these inputs are a few KiB).
    if ! "$cargo" +nightly fuzz run "$target" "fuzz/corpus/$target" "fuzz/regressions/$target" -- \
        -max_total_time="$seconds" -timeout=10 -malloc_limit_mb=64 -rss_limit_mb=1024 -print_final_stats=1 \
        2> "fuzz/artifacts/$target.log"; then
        tail -n 40 "fuzz/artifacts/$target.log" >&2
        new=$(comm -13 <(echo "$before") <(ls "fuzz/artifacts/$target") | sed "s|^|fuzz/artifacts/$target/|")
        failed+=("$target: ${new:-no artifact; see fuzz/artifacts/$target.log}")
    else
        grep -E '^(Done|stat::number_of_executed_units)' "fuzz/artifacts/$target.log" | tr '\n' ' '
        echo
    fi
done

# The closing count, read by `make test`'s summary (scripts/test_summary.py).
echo "fuzz targets: $(($# - ${#failed[@]})) passed, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzzing found a failure; each input below reproduces it with" >&2
    echo "'cargo +nightly fuzz run TARGET INPUT', and becomes a regression test once" >&2
    echo "copied to fuzz/regressions/TARGET/ (README \"Fuzzing\"):" >&2
    printf '  %s\n' "${failed[@]}" >&2
    exit 1
fi
