# test/lib/tap.sh — sourced: run TAP test files (test/tap/*.pl) with prove, as the
# postgres user when we are root (PostgreSQL::Test::Cluster refuses root), from a
# scratch copy of test/tap that this user can read and write.
#
#   source test/lib/tap.sh
#   tap_prepare                 # scratch copy in $TAP_DIR (removed on EXIT)
#   tap_run t/101_relay_snapshot.pl   # prove one file; on failure, tails the server logs
#   tap_run_all JOBS FILE...    # prove the files JOBS at a time (each in a scratch copy
#                               # of its own), print each one's output whole, in FILE
#                               # order, and call `record "TAP NAME" RC` for each
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
                ${PG_TEST_PORT_DIR:+PG_TEST_PORT_DIR="$PG_TEST_PORT_DIR"} \
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

# tap_run_all JOBS t/A.pl t/B.pl ...: run the files JOBS at a time.  Each lane has
# its own scratch copy (tap_run removes its tmp_check), all share one PostgreSQL
# port reservation directory (PG_TEST_PORT_DIR), so that servers of different
# lanes never pick the same port; Kafka clusters probe and retry ports by
# themselves (test/kafka/cluster.sh).  Lanes take the next file from a queue in
# the order given (put the longest first).  A line is printed when a file starts
# and ends; its whole output follows, in the order given, once all are done, and
# `record` (defined by the caller) counts each.
tap_run_all() {
    local jobs=$1 lane dir queue results t name rc start pids=()
    shift
    queue=$TAP_DIR/queue results=$TAP_DIR/results
    mkdir -p "$results" "$TAP_DIR/portlock"
    [[ $(id -u) == 0 ]] && chown postgres: "$TAP_DIR/portlock"
    printf '%s\n' "$@" >"$queue"
    for ((lane = 1; lane <= jobs; lane++)); do
        dir=$TAP_DIR/lane$lane
        mkdir -p "$dir"
        cp -r "$TAP_DIR/t" "$dir/t"
        cp "$TAP_DIR"/*.pm "$dir/" 2>/dev/null || true
        cp -r "$TAP_DIR/kafka" "$TAP_DIR/chaos" "$dir/"
        cp "$TAP_DIR"/cdc-*-asan "$dir/" 2>/dev/null || true
        [[ $(id -u) == 0 ]] && chown -R postgres: "$dir"
        (
            TAP_DIR=$dir
            export PG_TEST_PORT_DIR=${PG_TEST_PORT_DIR:-$(dirname "$dir")/portlock}
            while :; do
                t=$(flock "$queue.lock" sh -c 'head -n 1 "$1" && sed -i 1d "$1"' sh "$queue")
                [[ -n $t ]] || break
                name=$(basename "$t")
                start=$SECONDS
                echo "---- lane $lane: $name started"
                tap_run "$t" >"$results/$name.log" 2>&1
                rc=$?
                echo "$rc" >"$results/$name.rc"
                echo "---- lane $lane: $name ended, status $rc, $((SECONDS - start)) s"
            done
        ) &
        pids+=($!)
    done
    wait "${pids[@]}"
    for t in "$@"; do
        name=$(basename "$t")
        printf '\n==== TAP %s ====\n' "$name"
        cat "$results/$name.log" 2>/dev/null
        rc=$(cat "$results/$name.rc" 2>/dev/null || echo 1)
        record "TAP $name" "$rc"
    done
}
