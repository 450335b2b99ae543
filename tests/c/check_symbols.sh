#!/usr/bin/env bash
# Checks that the header declares exactly the cas_ functions the library
# exports: an export missing from the header cannot be called from C, and
# a declaration the library lacks fails only when a program links.
# Usage: check_symbols.sh LIBCAS_SO CAS_H
set -euo pipefail
lib=$1 header=$2
exported=$(nm -D --defined-only "$lib" | awk '$2 == "T" && $3 ~ /^cas_/ { print $3 }' | sort -u)
# The preprocessor drops the comments (which name functions too); what is
# left names each declared function as `cas_name(`.
declared=$(${CC:-cc} -E -P -x c "$header" | grep -oE '\bcas_[a-z0-9_]+ *\(' | tr -d ' (' | sort -u)
missing=$(comm -23 <(echo "$exported") <(echo "$declared"))
extra=$(comm -13 <(echo "$exported") <(echo "$declared"))
if [[ -n "$missing" || -n "$extra" ]]; then
    [[ -z "$missing" ]] || echo "exported by $lib but not declared in $header:" $missing >&2
    [[ -z "$extra" ]] || echo "declared in $header but not exported by $lib:" $extra >&2
    exit 1
fi
echo "symbols: the header declares the $(echo "$exported" | wc -l) cas_ functions the library exports"
