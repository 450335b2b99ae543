#!/usr/bin/env bash
# Installs with apt-get the Debian packages whose commands are missing, when
# we are root and apt-get exists; otherwise, or if that fails, says which
# tests will skip and succeeds anyway (those tests skip and say why).
#   scripts/apt-missing.sh "WHAT NEEDS THEM" TESTS COMMAND:PACKAGE ...
set -u
what=$1 tests=$2
shift 2
pkgs=""
for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || pkgs="$pkgs ${pair#*:}"
done
[ -n "$pkgs" ] || exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing$pkgs for $what"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086 # one word per package
    apt-get install -y -q $pkgs || { apt-get update -q && apt-get install -y -q $pkgs; } && exit 0
fi
echo "could not install$pkgs: $tests will skip" >&2
exit 0
