#!/usr/bin/env bash
# Main job (single node): store a real 100 MB file, get it back, compare.
set -euo pipefail
bin=target/release/examples/local
work=$(mktemp -d "${TMPDIR:-/tmp}/cas-demo.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "== making a 100 MB file of random bytes"
head -c 100000000 /dev/urandom > "$work/film.bin"
echo "== put"
key=$("$bin" put "$work/node" "$work/film.bin" | tail -n 1)
echo "key: $key"
echo "== get"
"$bin" get "$work/node" "$key" "$work/copy.bin"
want=$(sha256sum < "$work/film.bin" | cut -d' ' -f1)
got=$(sha256sum < "$work/copy.bin" | cut -d' ' -f1)
echo "sha256 original: $want"
echo "sha256 copy:     $got"
[ "$want" = "$got" ] && echo "OK: the copy is byte-identical"
