#!/usr/bin/env bash
# Runs each C test program under AddressSanitizer (leak checking on) and
# prints a closing "N passed, M failed" line over all of them. A program
# that fails a test, or exits non-zero for any other reason (an ASan or
# LeakSanitizer report, a crash), counts as a failure.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$here/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"

passed=0 failed=0 skipped=0
for bin in "$@"; do
    name=$(basename "$bin")
    echo "== $name"
    out=$(mktemp)
    "$bin" 2>&1 | tee "$out"
    rc=${PIPESTATUS[0]}
    summary=$(grep -E "^$name: [0-9]+ passed, [0-9]+ failed" "$out" | tail -n 1)
    rm -f "$out"
    if [[ -z "$summary" ]]; then
        echo "  FAIL  $name did not finish (exit status $rc)"
        failed=$((failed + 1))
        continue
    fi
    read -r p f s < <(sed -E 's/^[^:]+: ([0-9]+) passed, ([0-9]+) failed(, ([0-9]+) skipped)?.*/\1 \2 \4/' <<<"$summary")
    passed=$((passed + p)) failed=$((failed + f)) skipped=$((skipped + ${s:-0}))
    if [[ $rc -ne 0 && $f -eq 0 ]]; then
        echo "  FAIL  $name exited with status $rc (see the sanitizer report above)"
        failed=$((failed + 1))
    fi
done
if [[ $skipped -gt 0 ]]; then
    echo "C tests: $passed passed, $failed failed ($skipped skipped)"
else
    echo "C tests: $passed passed, $failed failed"
fi
[[ $failed -eq 0 ]]
