#!/usr/bin/env bash
# test/chaos/run.sh — the full chaos run (`make chaos`), after `make` and `make install`
# (the extension; the relay is CDC_RELAY_BIN or the installed cdc-relay):
#
#   make chaos                                 # 24 rounds, a new seed (printed)
#   make chaos CHAOS_ROUNDS=40 CHAOS_SEED=1234
#   CDC_RELAY_BIN=$PWD/relay/cdc-relay bash test/chaos/run.sh
#
# Runs test/chaos/chaos.pl with prove like the TAP tests (as postgres from a scratch copy
# when root).  Its logs are kept in /tmp/cdc_relay-chaos-logs.<pid> when it fails.
set -uo pipefail
source "$(dirname "$(readlink -f "$0")")/../lib/tap.sh"
tap_prepare || exit 1
export CHAOS_ROUNDS=${CHAOS_ROUNDS:-24} CHAOS_SEED=${CHAOS_SEED:-} CHAOS_MOCK_ROUNDS=${CHAOS_MOCK_ROUNDS:-9} \
    CHAOS_KINDS=${CHAOS_KINDS:-}
# PostgreSQL::Test::Utils' per-command timeout (the whole run takes minutes, each wait
# has its own deadline)
export PG_TEST_TIMEOUT_DEFAULT=${PG_TEST_TIMEOUT_DEFAULT:-300}
tap_run chaos/chaos.pl
rc=$?
if ((rc != 0)); then
    keep=/tmp/cdc_relay-chaos-logs.$$
    cp -r "$TAP_DIR/tmp_check/log" "$keep" 2>/dev/null && echo "chaos: logs kept in $keep"
fi
exit $rc
