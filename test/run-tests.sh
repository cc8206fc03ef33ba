#!/usr/bin/env bash
# test/run-tests.sh — everything `make test` (and so CI) runs, as root or not:
#   1. install missing Debian packages (test/lib/deps.sh)
#   2. make WERROR=1 && make install          (a failure here stops everything)
#   3. suites, each counted once in the closing "N passed, N failed" line:
#        installcheck    pg_regress on a temporary server (the Makefile runs it as
#                        postgres from /tmp/cdc_relay-regress when we are root)
#        version check   test/unit/version_check.sh, plus its --self-test
#        relay           unit tests (make relay-check), the test broker's own test,
#                        the AddressSanitizer build used by a TAP test
#        Kafka jars      Apache Kafka's jars fetched by mvn into a cache outside the
#                        repository when missing, and java checked (test/kafka/cluster.sh)
#        one per TAP file test/tap/*.pl, run with prove as postgres from a scratch
#                        copy (PostgreSQL::Test::Cluster refuses root), TAP_JOBS files
#                        at a time (default 2: most of a file's time is waiting on
#                        servers, brokers and clients), the longest first
# Failed suites print their diagnostics (regression.diffs, TAP server logs).
set -uo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.." || exit 1
REPO=$PWD

source test/lib/deps.sh || { echo "run-tests: installing dependencies failed" >&2; exit 1; }

IS_ROOT=0
[[ $(id -u) == 0 ]] && IS_ROOT=1

section() { printf '\n==== %s ====\n' "$*"; }

section "build (WERROR=1)"
make WERROR=1 || { echo "run-tests: build failed"; exit 1; }
section "install"
make install || { echo "run-tests: make install failed"; exit 1; }

passed=0 failed=0 failed_names=()
record() {    # record NAME RC
    if (($2 == 0)); then
        passed=$((passed + 1))
        echo "---- PASS: $1"
    else
        failed=$((failed + 1))
        failed_names+=("$1")
        echo "---- FAIL: $1"
    fi
}

# --- installcheck ------------------------------------------------------------------
section "installcheck (pg_regress)"
make installcheck
rc=$?
if ((rc != 0)); then
    if ((IS_ROOT)); then regress_dir=/tmp/cdc_relay-regress; else regress_dir=$REPO; fi
    if [[ -s $regress_dir/regression.diffs ]]; then
        echo "---- $regress_dir/regression.diffs"
        cat "$regress_dir/regression.diffs"
    else
        # pg_regress did not get to compare output: show why (initdb, server start)
        echo "---- no differences recorded in $regress_dir/regression.diffs"
        for log in "$regress_dir"/log/*.log; do
            [[ -f $log ]] || continue
            echo "---- tail -n 40 $log"
            tail -n 40 "$log"
        done
    fi
fi
record installcheck $rc

# --- version check -----------------------------------------------------------------
section "version check"
bash test/unit/version_check.sh && bash test/unit/version_check.sh --self-test
record "version check" $?

# --- relay unit tests and test broker ------------------------------------------------
section "relay unit tests (ring, topic names)"
make relay-check
record "relay unit tests" $?

section "relay test broker"
bash test/relay/broker_test.sh relay/cdc-relay
record "relay broker" $?

section "relay ASan build"
make -C relay asan WERROR=1
record "relay ASan build" $?

# --- real Kafka: the broker jars (once per machine) and java ------------------------
section "Kafka jars (test/kafka/cluster.sh fetch)"
bash test/kafka/cluster.sh fetch
record "Kafka jars" $?

# --- TAP tests -----------------------------------------------------------------------
source test/lib/tap.sh
tap_prepare || { echo "run-tests: could not prepare the TAP directory"; exit 1; }
# the files that take longest (a minute or more) first, then the rest in name order
LONGEST_FIRST="117_chaos.pl 116_exactly_once.pl 122_online_snapshot.pl 123_request_ids.pl
124_schema_events.pl 113_kafka_failover.pl 103_relay_cli.pl 110_kafka_harness.pl 114_kafka_relay_crash.pl"
tap_files=()
for name in $LONGEST_FIRST; do
    [[ -f test/tap/$name ]] && tap_files+=("t/$name")
done
for t in test/tap/*.pl; do
    name=$(basename "$t")
    [[ " $LONGEST_FIRST " == *[[:space:]]$name[[:space:]]* ]] || tap_files+=("t/$name")
done
section "TAP tests, ${TAP_JOBS:-2} at a time"
tap_run_all "${TAP_JOBS:-2}" "${tap_files[@]}"

section "summary"
((failed)) && printf 'failed: %s\n' "${failed_names[@]}"
echo "$passed passed, $failed failed"
((failed == 0))
