#!/usr/bin/env bash
# test/relay/broker_test.sh: the `cdc-relay broker` subcommand (relay/broker.c),
# checked with kcat, a Kafka client nobody here wrote.
#
#   bash test/relay/broker_test.sh [BINARY]   (default: relay/cdc-relay of this tree)
#
# Starts `BINARY broker` with its control commands coming from a fifo, then:
#   - the first stdout line is the bootstrap list; control commands answer
#     one line each, "ok ..." or "error: ...";
#   - keyed messages produced with kcat -P come back from kcat -C, each key's
#     values in the order produced;
#   - partition counts: auto-created topics (4, fixed by librdkafka 2.0.2),
#     `create TOPIC N`, `create TOPIC` (--partitions), --topic;
#   - `down 1` makes a produce (message.timeout.ms=3000) fail, `up 1` makes
#     it work again; an injected non-retriable Produce error is reported, an
#     injected retriable one is retried and the message lands once; `rtt`
#     slows requests down;
#   - end of stdin does not stop the broker; SIGTERM and SIGINT exit 0;
#   - bad usage exits 2 with a one-line reason and the "Try" line.
# Prints "ok N - ..." / "not ok N - ..." and exits 1 if anything failed.
set -uo pipefail

BIN=${1:-$(dirname "${BASH_SOURCE[0]}")/../../relay/cdc-relay}
TRY='Try "cdc-relay --help" for more information.'

if [[ ! -x $BIN ]]; then
    echo "broker_test: $BIN is not an executable" >&2
    exit 2
fi
for tool in kcat mkfifo timeout; do
    command -v "$tool" >/dev/null || { echo "broker_test: $tool is missing" >&2; exit 2; }
done

tmp=$(mktemp -d /tmp/cdc_relay-broker-test.XXXXXX)
pids=()
cleanup() {
    local p
    exec 3>&- 2>/dev/null
    for p in "${pids[@]}"; do
        kill -KILL "$p" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT

n=0 failures=0
ok()     { n=$((n + 1)); echo "ok $n - $1"; }
not_ok() { n=$((n + 1)); failures=$((failures + 1)); echo "not ok $n - $1"; }
check()  { # check DESCRIPTION COMMAND...: ok if COMMAND succeeds
    local desc=$1
    shift
    if "$@"; then ok "$desc"; else not_ok "$desc"; fi
}
diag() { sed 's/^/#   /' "$@" >&2; }

# alive PID: the process exists and is not a zombie
alive() {
    local state
    state=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

# stop PID SIGNAL: send SIGNAL, wait up to 10 s; $stop_rc = exit code, or
# "none" if it had to be killed
stop() {
    local i
    kill -"$2" "$1"
    for ((i = 0; i < 100; i++)); do
        alive "$1" || break
        sleep 0.1
    done
    if alive "$1"; then
        kill -KILL "$1"
        wait "$1"
        stop_rc=none
    else
        wait "$1"
        stop_rc=$?
    fi
}

# wait_lines FILE N: wait (up to 10 s) until FILE has at least N lines
wait_lines() {
    local i
    for ((i = 0; i < 200; i++)); do
        [[ -f $1 ]] && (($(wc -l <"$1") >= $2)) && return 0
        sleep 0.05
    done
    return 1
}

# ctl COMMAND: send a control command, put its one-line answer in $reply
out_lines=1
ctl() {
    echo "$1" >&3
    out_lines=$((out_lines + 1))
    if wait_lines "$tmp/out" "$out_lines"; then
        reply=$(sed -n "${out_lines}p" "$tmp/out")
    else
        reply="(no answer)"
    fi
}
ctl_ok() {    # ctl_ok COMMAND: run it, check the answer starts with "ok"
    ctl "$1"
    if [[ $reply == ok* ]]; then ok "\"$1\" answers ok"; else not_ok "\"$1\" answers ok (got: $reply)"; fi
}

produce() {   # produce TOPIC [kcat options...] < key:value lines
    local topic=$1
    shift
    timeout 30 kcat -P -b "$bs" -t "$topic" -K: "$@" 2>>"$tmp/kcat.err"
}
consume() {   # consume TOPIC: all its messages as key=value lines
    timeout 30 kcat -C -b "$bs" -t "$1" -e -q -f '%k=%s\n' 2>>"$tmp/kcat.err"
}
partition_count() {   # partition_count TOPIC [BOOTSTRAPS]
    timeout 30 kcat -L -b "${2:-$bs}" -t "$1" 2>>"$tmp/kcat.err" |
        sed -n "s/^ *topic \"$1\" with \\([0-9]*\\) partitions:.*/\\1/p"
}
# by_key: stable sort on the key, so each key's values keep their order
by_key() { sort -s -t= -k1,1; }

# --- bad usage -------------------------------------------------------------------
bad_usage() {   # bad_usage DESCRIPTION ARGS...
    local desc=$1 rc
    shift
    timeout 5 "$BIN" broker "$@" </dev/null >"$tmp/usage.out" 2>"$tmp/usage.err"
    rc=$?
    if ((rc == 2)) && [[ ! -s $tmp/usage.out ]] &&
        (($(wc -l <"$tmp/usage.err") == 2)) &&
        [[ $(sed -n 1p "$tmp/usage.err") == "cdc-relay broker: "?* ]] &&
        [[ $(sed -n 2p "$tmp/usage.err") == "$TRY" ]]; then
        ok "bad usage ($desc) exits 2 with a reason and the Try line"
    else
        not_ok "bad usage ($desc) exits 2 with a reason and the Try line (rc $rc)"
        diag "$tmp/usage.err"
    fi
}
bad_usage "--brokers 0" --brokers 0
bad_usage "--brokers 17" --brokers 17
bad_usage "--brokers x" --brokers x
bad_usage "--brokers without a value" --brokers
bad_usage "--partitions 0" --partitions 0
bad_usage "unknown option" --bogus
bad_usage "stray argument" extra
bad_usage "--port-base" --port-base 9092
check "--port-base explains that ports cannot be chosen" \
    grep -q "ephemeral" "$tmp/usage.err"
timeout 5 "$BIN" broker --help </dev/null >"$tmp/usage.out" 2>&1
rc=$?
check "broker --help exits 0 and prints the usage" \
    test "$rc" -eq 0 -a "$(grep -c '^Usage:' "$tmp/usage.out")" -eq 1

# --- one broker, controlled through a fifo ------------------------------------------
mkfifo "$tmp/ctl"
"$BIN" broker --brokers 1 <"$tmp/ctl" >"$tmp/out" 2>"$tmp/err" &
bpid=$!
pids+=("$bpid")
exec 3>"$tmp/ctl"
wait_lines "$tmp/out" 1
bs=$(sed -n 1p "$tmp/out")
if [[ $bs =~ ^127\.0\.0\.1:[0-9]+$ ]]; then
    ok "first stdout line is the bootstrap list of 1 broker ($bs)"
else
    not_ok "first stdout line is the bootstrap list of 1 broker (got: $bs)"
    diag "$tmp/err"
    exit 1
fi

ctl_ok help
printf 'he' >&3
sleep 0.3
ctl "lp"
check "a command arriving in pieces is run once it is complete" test "${reply#ok commands:}" != "$reply"
ctl "rtt 1 $(printf '%01100d' 0)"
check "an over-long command answers error:" test "${reply#error: }" != "$reply"
ctl "frobnicate"
check "an unknown command answers error:" test "${reply#error: }" != "$reply"
ctl "down 2"
check "down of a broker that does not exist answers error:" test "${reply#error: }" != "$reply"

# keyed produce and consume
: >"$tmp/expected"
for i in 1 2 3 4 5; do
    for k in alpha beta gamma delta; do
        echo "$k:$k-$i"
    done
done >"$tmp/batch1"
produce t1 <"$tmp/batch1"
check "kcat produces 20 keyed messages to t1" test $? -eq 0
tr : = <"$tmp/batch1" >>"$tmp/expected"
consume t1 >"$tmp/got"
check "kcat consumes them back, each key's values in order" \
    cmp -s <(by_key <"$tmp/expected") <(by_key <"$tmp/got")

# partition counts
check "auto-created topic t1 has 4 partitions (librdkafka 2.0.2's fixed count)" \
    test "$(partition_count t1)" = 4
ctl_ok "create t2 3"
check "create t2 3 gives t2 3 partitions" test "$(partition_count t2)" = 3
ctl_ok "create t3"
check "create t3 gives t3 the --partitions default, 1" test "$(partition_count t3)" = 1
ctl "create t2 2"
check "creating an existing topic answers error:" test "${reply#error: }" != "$reply"

# broker down, up
ctl_ok "down 1"
echo "down:lost" | produce t1 -X message.timeout.ms=3000
check "produce fails while broker 1 is down" test $? -ne 0
ctl_ok "up 1"
echo "up:back" | produce t1 -X message.timeout.ms=10000
check "produce works again after up 1" test $? -eq 0
echo "up=back" >>"$tmp/expected"

# injected Produce errors
ctl_ok "error produce MSG_SIZE_TOO_LARGE"
echo "big:rejected" | produce t1
check "a non-retriable Produce error fails the produce" test $? -ne 0
check "kcat reports the injected error" grep -q "Message size too large" "$tmp/kcat.err"
ctl_ok "error 0 NOT_LEADER_FOR_PARTITION 2"
: >"$tmp/retry.err"
echo "retried:once" | timeout 30 kcat -P -b "$bs" -t t1 -K: -d msg 2>"$tmp/retry.err"
check "a retriable Produce error is retried until the produce succeeds" test $? -eq 0
check "the client saw the 2 injected NOT_LEADER errors" \
    test "$(grep -c 'Not leader for partition' "$tmp/retry.err")" -eq 2
echo "retried=once" >>"$tmp/expected"
ctl_ok "error produce REQUEST_TIMED_OUT 3"
ctl_ok "clear produce"
echo "after:clear" | produce t1 -X retries=0
check "clear removes pending Produce errors" test $? -eq 0
echo "after=clear" >>"$tmp/expected"
consume t1 >"$tmp/got"
check "t1 holds exactly the delivered messages, nothing from failed produces" \
    cmp -s <(by_key <"$tmp/expected") <(by_key <"$tmp/got")

# rtt
ctl_ok "rtt 1 700"
start=$(date +%s%N)
partition_count t1 >/dev/null
elapsed=$((($(date +%s%N) - start) / 1000000))
check "rtt 1 700 slows a metadata lookup down (${elapsed} ms >= 700)" test "$elapsed" -ge 700
ctl_ok "rtt 1 0"

# end of input does not stop the broker
exec 3>&-
sleep 1
check "the broker keeps running after end of stdin" alive "$bpid"
check "and keeps serving clients" test "$(partition_count t2)" = 3

stop "$bpid" TERM
check "SIGTERM stops the broker with exit code 0 (got $stop_rc)" test "$stop_rc" = 0
if [[ -s $tmp/err ]]; then
    echo "# broker stderr:" >&2
    diag "$tmp/err"
fi

# --- three brokers, --partitions, --topic, stdin from /dev/null, SIGINT -------------------
"$BIN" broker --brokers 3 --partitions 2 --topic pre </dev/null >"$tmp/out3" 2>"$tmp/err3" &
bpid3=$!
pids+=("$bpid3")
wait_lines "$tmp/out3" 1
bs3=$(sed -n 1p "$tmp/out3")
check "--brokers 3 gives a bootstrap list of 3 brokers" \
    test "$(tr , '\n' <<<"$bs3" | grep -cE '^127\.0\.0\.1:[0-9]+$')" -eq 3
check "--topic pre --partitions 2 creates pre with 2 partitions" \
    test "$(partition_count pre "$bs3")" = 2
check "the cluster metadata lists 3 brokers" \
    test "$(timeout 30 kcat -L -b "$bs3" 2>>"$tmp/kcat.err" | grep -c '^  broker [123] at ')" -eq 3
sleep 0.5
check "stdin from /dev/null does not stop the broker" alive "$bpid3"
stop "$bpid3" INT
check "SIGINT stops the broker with exit code 0 (got $stop_rc)" test "$stop_rc" = 0

if ((failures > 0)); then
    echo "# kcat stderr:" >&2
    diag "$tmp/kcat.err"
    echo "broker_test: $failures of $n checks failed"
    exit 1
fi
echo "broker_test: all $n checks passed"
