#!/usr/bin/env bash
# The README's C snippets compile and run as written (like the Rust ones are
# doctested): every ```c block compiles with -Werror under AddressSanitizer,
# and the first, the quick start, runs: on a real file it stores it and gets
# it back; on a missing input or a data directory that cannot be opened it
# exits 1 with the library's message, never a crash.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export LSAN_OPTIONS="suppressions=$root/tests/c/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
work=$(mktemp -d "${TMPDIR:-/tmp}/cas-readme-c.XXXXXX")
trap 'rm -rf "$work"' EXIT

awk -v dir="$work" '
    /^```c$/ { n++; out = sprintf("%s/snippet%d.c", dir, n); inside = 1; next }
    /^```/ && inside { inside = 0; close(out); next }
    inside { print > out }
' "$root/README.md"
shopt -s nullglob
snippets=("$work"/snippet*.c)
[[ ${#snippets[@]} -gt 0 ]] || { echo "README.md has no \`\`\`c block" >&2; exit 1; }
for src in "${snippets[@]}"; do
    ${CC:-cc} -std=c11 -Wall -Wextra -Werror -fsanitize=address -g -I"$root/include" "$src" \
        -L"$root/target/release" -lcas -Wl,-rpath,"$root/target/release" -o "${src%.c}"
done

fail() { echo "README C snippet: $*" >&2; exit 1; }
quick="$work/snippet1"
cd "$work"
head -c 3000000 /dev/urandom > book.pdf
"$quick" > out.txt 2> err.txt || fail "failed on a real file: $(cat err.txt)"
grep -q '^key: cas1' out.txt || fail "printed no key: $(cat out.txt)"
cmp -s book.pdf copy.pdf || fail "copy.pdf differs from book.pdf"

rc=0; "$quick" missing.pdf > /dev/null 2> err.txt || rc=$?
[[ $rc -eq 1 ]] || fail "a missing input exited with $rc, not 1: $(cat err.txt)"
grep -q '^cas: .*missing.pdf' err.txt || fail "a missing input was not explained: $(cat err.txt)"

rm -rf cas-node && echo "not a directory" > cas-node
rc=0; "$quick" book.pdf > /dev/null 2> err.txt || rc=$?
[[ $rc -eq 1 ]] || fail "an unusable data directory exited with $rc, not 1: $(cat err.txt)"
grep -q '^cas: ' err.txt || fail "an unusable data directory was not explained: $(cat err.txt)"
echo "README C snippets: ${#snippets[@]} compiled, the quick start ran (a file, a missing input, a bad data dir)"
