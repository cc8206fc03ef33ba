#!/usr/bin/env bash
# test/run-tap.sh — run some TAP tests by hand, after `make` (and `make install`
# for the extension):
#
#   bash test/run-tap.sh 104 106          # files test/tap/104_*.pl and 106_*.pl
#   CDC_RELAY_BIN=$PWD/relay/cdc-relay bash test/run-tap.sh 104
#
# Each argument is a file name or a prefix of one.  `make test` runs them all.
set -uo pipefail
source "$(dirname "$(readlink -f "$0")")/lib/tap.sh"
(($#)) || { echo "usage: $0 NAME|PREFIX..." >&2; exit 2; }
tap_prepare || exit 1
rc=0
for arg in "$@"; do
    found=0
    for f in "$TAP_REPO"/test/tap/"$arg"*.pl; do
        [[ -f $f ]] || continue
        found=1
        tap_run "t/$(basename "$f")" || rc=1
    done
    ((found)) || { echo "run-tap: no test/tap/$arg*.pl" >&2; rc=1; }
done
exit $rc
