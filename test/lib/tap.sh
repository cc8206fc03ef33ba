# test/lib/tap.sh — sourced: run TAP test files (test/tap/*.pl) with prove, as the
# postgres user when we are root (PostgreSQL::Test::Cluster refuses root), from a
# scratch copy of test/tap that this user can read and write.
#
#   source test/lib/tap.sh
#   tap_prepare                 # scratch copy in $TAP_DIR (removed on EXIT)
#   tap_run t/101_relay_snapshot.pl   # prove one file; on failure, tails the server logs
#
# The relay under test is CDC_RELAY_BIN when set (any path the postgres user can
# run), else `cdc-relay` from `pg_config --bindir`, where `make install` puts it.

TAP_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TAP_PG_BINDIR=$(pg_config --bindir)
TAP_PG_PKGLIBDIR=$(pg_config --pkglibdir)
TAP_DIR=

tap_as_test_user() {
    if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

tap_prepare() {
    TAP_DIR=$(mktemp -d /tmp/cdc_relay-tap.XXXXXX) || return 1
    trap 'rm -rf "$TAP_DIR"' EXIT
    mkdir -p "$TAP_DIR/t"
    cp "$TAP_REPO"/test/tap/*.pl "$TAP_DIR/t/"
    cp "$TAP_REPO"/test/tap/*.pm "$TAP_DIR/" 2>/dev/null || true
    # the real-Kafka harness KafkaCluster.pm runs (test/kafka/cluster.sh)
    cp -r "$TAP_REPO/test/kafka" "$TAP_DIR/kafka"
    # the chaos test (test/chaos: Chaos.pm, its pgbench scripts), for 117_chaos.pl and make chaos
    cp -r "$TAP_REPO/test/chaos" "$TAP_DIR/chaos"
    # the relay and cdc-index under AddressSanitizer, for the tests that run them so
    [[ -x $TAP_REPO/relay/cdc-relay-asan ]] && cp "$TAP_REPO/relay/cdc-relay-asan" "$TAP_DIR/"
    [[ -x $TAP_REPO/relay/cdc-index-asan ]] && cp "$TAP_REPO/relay/cdc-index-asan" "$TAP_DIR/"
    [[ $(id -u) == 0 ]] && chown -R postgres: "$TAP_DIR"
    return 0
}

# tap_run t/NAME.pl: prove one file; returns its status.
tap_run() {
    local name=$1 rc log
    rm -rf "$TAP_DIR/tmp_check"
    (
        cd "$TAP_DIR" &&
            tap_as_test_user env PATH="$TAP_PG_BINDIR:$PATH" \
                TESTDIR="$TAP_DIR" \
                CDC_RELAY_ASAN="$TAP_DIR/cdc-relay-asan" \
                CDC_INDEX_ASAN="$TAP_DIR/cdc-index-asan" \
                ${CDC_INDEX_BIN:+CDC_INDEX_BIN="$CDC_INDEX_BIN"} \
                ${CDC_RELAY_BIN:+CDC_RELAY_BIN="$CDC_RELAY_BIN"} \
                ${CDC_RELAY_TEST_ARGS:+CDC_RELAY_TEST_ARGS="$CDC_RELAY_TEST_ARGS"} \
                PG_REGRESS="$TAP_PG_PKGLIBDIR/pgxs/src/test/regress/pg_regress" \
                prove -v -I "$TAP_PG_PKGLIBDIR/pgxs/src/test/perl" -I "$TAP_DIR" "$name"
    )
    rc=$?
    if ((rc != 0)); then
        for log in "$TAP_DIR"/tmp_check/log/*; do
            [[ -f $log ]] || continue
            echo "---- tail -n 80 $log"
            tail -n 80 "$log"
        done
    fi
    return $rc
}
