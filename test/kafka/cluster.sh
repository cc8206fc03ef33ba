#!/usr/bin/env bash
# test/kafka/cluster.sh: throwaway Apache Kafka (KRaft) clusters on 127.0.0.1 for the
# tests, the benchmarks and by hand, from the Maven jars of test/kafka/pom.xml.
#
#   cluster.sh fetch               jars into the cache (once per machine), check java;
#                                  prints the jar directory
#   cluster.sh start N [k=v ...]   N = 1 or 3 nodes; extra server.properties lines
#                                  (they override the defaults below); prints two lines:
#                                  the bootstrap list, then the cluster's directory DIR
#   cluster.sh stop DIR            SIGTERM every node, SIGKILL after 10 s, remove DIR
#   cluster.sh kill DIR I          kill -9 node I (1..N)
#   cluster.sh restart DIR I       start node I again (same data) and wait until it is
#                                  back in the cluster's metadata (other nodes may be
#                                  down; with a quorum of controllers lost, only a
#                                  restart that restores it can succeed)
#   cluster.sh admin BOOTSTRAP create-topic NAME PARTITIONS RF [name=value ...]
#   cluster.sh admin BOOTSTRAP configs NAME
#                                  topic operations kcat lacks (KafkaAdmin.java)
#
# Every node is broker and controller; the controllers are static voters
# (controller.quorum.voters); each cluster gets a fresh random cluster id, its own
# directory (mktemp) and free ports found by bind-probe from a random base in
# 61000-65535 (above Linux's ephemeral range and PostgreSQL's test ports), so runs
# side by side (or leftovers of killed runs) do not collide.  Settings for tests: small
# heaps, 2 threads each, and a log cleaner that wakes every 0.5 s (topic-level configs
# make it compact within seconds: see the notes in 110_kafka_harness.pl).
# `start` waits (CDC_RELAY_KAFKA_TIMEOUT, default 120 s) until every node logged
# "Kafka Server started" and `kcat -L` lists N brokers; on failure it prints the node
# logs, stops everything and exits 1.  With CDC_RELAY_KAFKA_OWNER=PID a watcher stops
# the cluster when process PID is gone (KafkaCluster.pm passes its own pid).
#
# The jars: CDC_RELAY_KAFKA_LIBS if set, else /var/cache/cdc_relay/kafka-VERSION-HASH/libs
# (fetched there by root, readable by all, so the postgres user running the TAP tests
# uses the same copy), else ~/.cache/cdc_relay/kafka-VERSION-HASH/libs; HASH is the start
# of pom.xml's sha256.  `mvn dependency:copy-dependencies` fills a missing one (Maven's
# own cache is ~/.m2).  Java: CDC_RELAY_KAFKA_JAVA, else
# $JAVA_HOME/bin/java, else java; 17 or newer.  CDC_RELAY_KAFKA_JAVA_OPTS is appended to
# the nodes' JVM options.
set -uo pipefail

KDIR=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KDIR/pom.xml")
READY_TIMEOUT=${CDC_RELAY_KAFKA_TIMEOUT:-120}
JAVA=${CDC_RELAY_KAFKA_JAVA:-${JAVA_HOME:+$JAVA_HOME/bin/}java}
KLIB=

die() { echo "cluster.sh: $*" >&2; exit 1; }
note() { echo "cluster.sh: $*" >&2; }

[[ -n $KAFKA_VERSION ]] || die "no <kafka.version> in $KDIR/pom.xml"

# --- jars and java ---------------------------------------------------------------------

# the cache directory's name: Kafka's version and the start of pom.xml's sha256, so that
# checkouts with different poms each get their own jars, and a complete cache directory
# is never replaced (JVMs of other runs may be using it)
CACHE_NAME=kafka-$KAFKA_VERSION-$(sha256sum "$KDIR/pom.xml" | cut -c1-12)
CACHE_SYSTEM=/var/cache/cdc_relay/$CACHE_NAME
CACHE_USER=${XDG_CACHE_HOME:-${HOME:-/nonexistent}/.cache}/cdc_relay/$CACHE_NAME

# cache_ok DIR: DIR/libs holds the jars (a cache directory appears only once complete)
cache_ok() { [[ -r $1/libs/kafka_2.13-$KAFKA_VERSION.jar ]]; }

# find_libs: sets KLIB to a complete jar directory; 1 when there is none
find_libs() {
    if [[ -n ${CDC_RELAY_KAFKA_LIBS:-} ]]; then
        [[ -r $CDC_RELAY_KAFKA_LIBS/kafka_2.13-$KAFKA_VERSION.jar ]] ||
            die "CDC_RELAY_KAFKA_LIBS=$CDC_RELAY_KAFKA_LIBS has no kafka_2.13-$KAFKA_VERSION.jar"
        KLIB=$CDC_RELAY_KAFKA_LIBS
        return 0
    fi
    local d
    for d in "$CACHE_SYSTEM" "$CACHE_USER"; do
        cache_ok "$d" && { KLIB=$d/libs; return 0; }
    done
    return 1
}

check_java() {
    local v major
    # -XX:-UsePerfData: no /tmp/hsperfdata file, whose lock another JVM of the same user can
    # hold, which makes java print a warning before its version
    v=$("$JAVA" -XX:-UsePerfData -version 2>&1) || die "java does not run ($JAVA): $v (Debian package openjdk-17-jre-headless)"
    major=$(sed -n 's/.* version "\([0-9]*\).*/\1/p' <<<"$v" | head -n 1)
    [[ $major =~ ^[0-9]+$ ]] && ((major >= 17)) ||
        die "Kafka $KAFKA_VERSION needs Java 17 or newer; $JAVA is: ${v%%$'\n'*}"
}

# fetch_libs: fill the cache with mvn unless a complete one exists; sets KLIB
fetch_libs() {
    find_libs && return 0
    local dest
    if [[ $(id -u) == 0 ]] || { mkdir -p "${CACHE_SYSTEM%/*}" 2>/dev/null && [[ -w ${CACHE_SYSTEM%/*} ]]; }; then
        dest=$CACHE_SYSTEM
    else
        dest=$CACHE_USER
    fi
    command -v mvn >/dev/null || die "mvn not found: install the Debian package maven (bash test/lib/deps.sh does)"
    (
        umask 022
        mkdir -p "${dest%/*}" || exit 1
        # one fetch at a time per cache; a waiter finds the cache complete
        exec 9>"${dest%/*}/.lock" || exit 1
        flock 9 || exit 1
        cache_ok "$dest" && exit 0
        tmp=$(mktemp -d "${dest%/*}/.$CACHE_NAME.XXXXXX") || exit 1
        chmod 755 "$tmp"
        note "fetching Kafka $KAFKA_VERSION jars into $dest (mvn)"
        if ! mvn -B -ntp -f "$KDIR/pom.xml" dependency:copy-dependencies \
            -DincludeScope=runtime -DoutputDirectory="$tmp/libs" >"$tmp/mvn.log" 2>&1; then
            echo "cluster.sh: mvn could not fetch the Kafka jars:" >&2
            grep -E '^\[(ERROR|FATAL)\]' "$tmp/mvn.log" >&2 || tail -n 40 "$tmp/mvn.log" >&2
            rm -rf "$tmp"
            exit 1
        fi
        # what the broker needs beyond kafka_2.13's own pom (see pom.xml)
        local_missing=()
        for j in "kafka_2.13-$KAFKA_VERSION" "kafka-server-$KAFKA_VERSION" slf4j-api-1.7. \
            log4j-slf4j-impl- log4j-core- log4j-api-; do
            compgen -G "$tmp/libs/$j*.jar" >/dev/null || local_missing+=("$j")
        done
        if ((${#local_missing[@]})); then
            echo "cluster.sh: mvn succeeded but these jars are missing: ${local_missing[*]}" >&2
            rm -rf "$tmp"
            exit 1
        fi
        cp "$KDIR/pom.xml" "$tmp/pom.xml"
        chmod -R a+rX "$tmp"
        rm -rf "$dest" && mv -T "$tmp" "$dest"
    ) || die "fetching the Kafka jars failed"
    find_libs || die "the jar cache $dest is incomplete after fetching"
}

# --- one cluster directory -------------------------------------------------------------
# DIR/cluster.env: NODES, CID, BOOTSTRAP, KLIB, JAVA, PORTS (client and controller port
# of node i at 2i-2, 2i-1); DIR/nI.properties, nI/ (data), nI.log, nI.pid.

W= NODES= BOOTSTRAP= PORTS=() FORMAT_PIDS=()

load_dir() {
    W=$(cd "$1" 2>/dev/null && pwd) || die "no cluster directory $1"
    [[ -f $W/cluster.env ]] || die "$W is not a cluster directory (no cluster.env)"
    # shellcheck source=/dev/null
    source "$W/cluster.env"
    read -ra PORTS <<<"$PORTS_LIST"
}

node_pid() { cat "$W/n$1.pid" 2>/dev/null; }

# node_alive I: node I's JVM runs (checked by its command line, so a reused pid of
# another process never counts)
node_alive() {
    local pid
    pid=$(node_pid "$1") || return 1
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$W/n$1.properties"
}

java_opts() {
    # small heap (the default is 1 GiB), SerialGC and C1 only: less CPU on 2 shared cores
    JOPTS=(-Xms64m -Xmx384m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:+ExitOnOutOfMemoryError -XX:-UsePerfData
        "-Dlog4j2.configurationFile=$KDIR/log4j2.properties" "-Dkafka.logs.dir=$W")
    # shellcheck disable=SC2206
    [[ -n ${CDC_RELAY_KAFKA_JAVA_OPTS:-} ]] && JOPTS+=($CDC_RELAY_KAFKA_JAVA_OPTS)
}

launch_node() {
    local i=$1
    java_opts
    echo "==== $(date '+%F %T') start node $i" >>"$W/n$i.log"
    # own session: no terminal signals; stdout/stderr to the node log
    (cd "$W" && exec setsid "$JAVA" "${JOPTS[@]}" -cp "$KLIB/*" kafka.Kafka "$W/n$i.properties") \
        </dev/null >>"$W/n$i.log" 2>&1 &
    local pid=$! t
    echo "$pid" >"$W/n$i.pid"
    # $! is the subshell until it has exec'd java (slow on a loaded machine): wait for
    # that, so that node_alive (which checks the command line) is right from here on
    for ((t = 0; t < 200; t++)); do
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$W/n$i.properties" && break
        pid_gone "$pid" && break
        sleep 0.05
    done
}

started_count() { grep -c 'Kafka Server started' "$W/n$1.log" 2>/dev/null; }

# metadata: kcat -L of the whole cluster ('' when no broker answers)
metadata() { kcat -L -b "$BOOTSTRAP" -m 5 2>/dev/null; }

dump_logs() {
    local f
    for f in "$W"/n*.format.log "$W"/n*.log; do
        [[ -f $f ]] || continue
        echo "---- tail -n 60 $f" >&2
        tail -n 60 "$f" >&2
    done
}

# pid_gone PID: the process has exited (no longer exists, or is a zombie waiting to be
# reaped).  A process being killed loses its command line before it is a zombie, so
# after a kill this, not node_alive, says when it is really over.
pid_gone() {
    local st
    st=$(sed -n 's/^[0-9]* (.*) \([A-Za-z]\).*/\1/p' "/proc/$1/stat" 2>/dev/null)
    [[ -z $st || $st == [ZX] ]]
}

# wait_gone TENTHS PID...: 0 once every PID is gone, 1 after TENTHS tenths of a second
wait_gone() {
    local t=$1 p any
    shift
    while ((t-- > 0)); do
        any=0
        for p in "$@"; do pid_gone "$p" || any=1; done
        ((any)) || return 0
        sleep 0.1
    done
    return 1
}

# stop_nodes: SIGTERM all, SIGKILL what still runs after 10 s
stop_nodes() {
    local i p pids=()
    for ((i = 1; i <= NODES; i++)); do
        node_alive "$i" && pids+=("$(node_pid "$i")")
    done
    ((${#pids[@]})) || return 0
    kill -TERM "${pids[@]}" 2>/dev/null
    wait_gone 100 "${pids[@]}" && return 0
    for p in "${pids[@]}"; do
        pid_gone "$p" || { note "pid $p did not stop in 10 s: SIGKILL"; kill -KILL "$p" 2>/dev/null; }
    done
    wait_gone 50 "${pids[@]}" && return 0
    note "some nodes are still running after SIGKILL"
    return 1
}

write_props() {
    local i=$1 extra=("${@:2}") voters='' j rf=1 isr=1
    for ((j = 1; j <= NODES; j++)); do
        voters+="${voters:+,}$j@127.0.0.1:${PORTS[2 * j - 1]}"
    done
    if ((NODES >= 3)); then rf=3 isr=2; fi
    {
        cat <<EOF
# node $i of $NODES, written by test/kafka/cluster.sh
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:${PORTS[2 * i - 2]},CONTROLLER://127.0.0.1:${PORTS[2 * i - 1]}
advertised.listeners=PLAINTEXT://127.0.0.1:${PORTS[2 * i - 2]},CONTROLLER://127.0.0.1:${PORTS[2 * i - 1]}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$W/n$i
num.partitions=1
auto.create.topics.enable=true
default.replication.factor=$rf
min.insync.replicas=$isr
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
group.initial.rebalance.delay.ms=0
# 2 cores shared by several test runs (defaults 3/8/10)
num.network.threads=2
num.io.threads=2
background.threads=2
# the cleaner: 2 MiB dedupe buffer (default 128 MiB, on the heap); wake every 0.5 s
# when idle (default 15 s)
log.cleaner.dedupe.buffer.size=2097152
log.cleaner.backoff.ms=500
log.initial.task.delay.ms=100
log.retention.check.interval.ms=1000
log.segment.delete.delay.ms=1000
transaction.abort.timed.out.transaction.cleanup.interval.ms=1000
# the controller fences a killed node after 4 s (defaults 2000/9000)
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
EOF
        if ((${#extra[@]})); then
            echo "# given to cluster.sh start"
            printf '%s\n' "${extra[@]}"
        fi
    } >"$W/n$i.properties"
}

# pick_ports COUNT: free 127.0.0.1 ports, bind-probed upwards from a random base
pick_ports() {
    perl -MIO::Socket::INET -e '
        my ($n, $lo, $hi) = @ARGV;
        my $p = $lo + int(rand($hi - $lo + 1));
        my @got;
        for (my $tries = 0; @got < $n && $tries <= $hi - $lo; $tries++) {
            my $s = IO::Socket::INET->new(LocalAddr => "127.0.0.1", LocalPort => $p,
                                          Proto => "tcp", Listen => 1, ReuseAddr => 1);
            if ($s) { push @got, $p; close $s; }
            $p = $p >= $hi ? $lo : $p + 1;
        }
        @got == $n or die "cluster.sh: no $n free ports in $lo-$hi\n";
        print "@got\n";' "$1" 61000 65535
}

# try_start: format and start every node of $W, wait until ready; 0 when ready
try_start() {
    local i rc=0 extra=("$@")
    read -ra PORTS <<<"$(pick_ports $((2 * NODES)))" || return 1
    ((${#PORTS[@]} == 2 * NODES)) || return 1
    BOOTSTRAP=
    for ((i = 1; i <= NODES; i++)); do
        BOOTSTRAP+="${BOOTSTRAP:+,}127.0.0.1:${PORTS[2 * i - 2]}"
        write_props "$i" "${extra[@]}"
    done
    cat >"$W/cluster.env" <<EOF
NODES=$NODES
CID=$CID
BOOTSTRAP=$BOOTSTRAP
KLIB='$KLIB'
JAVA='$JAVA'
KDIR='$KDIR'
PORTS_LIST='${PORTS[*]}'
EOF
    # format in parallel: same cluster id, static voters, so no quorum flag
    java_opts
    for ((i = 1; i <= NODES; i++)); do
        "$JAVA" "${JOPTS[@]}" -Xms32m -Xmx256m -cp "$KLIB/*" kafka.tools.StorageTool format \
            -t "$CID" -c "$W/n$i.properties" >"$W/n$i.format.log" 2>&1 &
        FORMAT_PIDS+=($!)
    done
    for i in "${FORMAT_PIDS[@]}"; do wait "$i" || rc=1; done
    FORMAT_PIDS=()
    if ((rc)); then
        note "formatting the storage failed"
        return 1
    fi
    for ((i = 1; i <= NODES; i++)); do launch_node "$i"; done
    wait_ready 0
}

# wait_ready NODE: 0 for all nodes (start), else node NODE (restart, whose log must show
# one more "started" line than START_BEFORE); then kcat -L must list all NODES brokers
# (start), or NODE (restart: other nodes may be down)
wait_ready() {
    local only=$1 deadline=$((SECONDS + READY_TIMEOUT)) i ok md
    while ((SECONDS < deadline)); do
        ok=1
        for ((i = 1; i <= NODES; i++)); do
            ((only && i != only)) && continue
            if ! node_alive "$i"; then
                note "node $i exited during start-up"
                return 1
            fi
            if ((only)); then
                (($(started_count "$i") > START_BEFORE)) || ok=0
            else
                (($(started_count "$i") >= 1)) || ok=0
            fi
        done
        if ((ok)); then
            md=$(metadata)
            # a restarted node: listed (other nodes may be down on purpose)
            if { ((only == 0)) && grep -q " $NODES brokers:" <<<"$md"; } ||
                { ((only)) && grep -q "broker $only at " <<<"$md"; }; then
                return 0
            fi
        fi
        sleep 0.5
    done
    note "not ready after ${READY_TIMEOUT} s; kcat -L says:"
    metadata | head -n 20 >&2
    return 1
}

# abandon_start: the EXIT trap of a start that did not finish: kill whatever it started
abandon_start() {
    local p
    for p in "${FORMAT_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    stop_nodes >/dev/null 2>&1
    rm -rf "$W"
}

cmd_start() {
    local n=${1:-}
    [[ $n == 1 || $n == 3 ]] || die "usage: cluster.sh start 1|3 [server.properties line ...]"
    shift
    fetch_libs
    check_java
    command -v kcat >/dev/null || die "kcat not found (Debian package kcat)"
    NODES=$n
    W=$(mktemp -d "${TMPDIR:-/tmp}/cdc_relay-kafka.XXXXXX") || die "mktemp failed"
    # interrupted or failed before the end: leave nothing behind
    trap 'abandon_start' EXIT
    trap 'exit 1' INT TERM HUP
    local attempt t0=$SECONDS
    for attempt in 1 2; do
        # a fresh random cluster id (16 bytes, base64url-like, never starting with '-')
        CID=$(head -c16 /dev/urandom | base64 | tr '+/' 'AB' | tr -d '=')
        if try_start "$@"; then
            note "$NODES node(s) ready in $((SECONDS - t0)) s: $BOOTSTRAP ($W)"
            trap - EXIT INT TERM HUP
            if [[ -n ${CDC_RELAY_KAFKA_OWNER:-} ]]; then
                setsid bash "$KDIR/cluster.sh" watch "$W" "$CDC_RELAY_KAFKA_OWNER" \
                    </dev/null >>"$W/watch.log" 2>&1 &
                echo $! >"$W/watch.pid"
            fi
            echo "$BOOTSTRAP"
            echo "$W"
            return 0
        fi
        # ports are probed, then bound by the JVMs: another process may win in between
        if ((attempt == 1)) && grep -qs 'Address already in use' "$W"/n*.log; then
            note "a port was taken meanwhile: retrying with other ports"
            stop_nodes
            find "$W" -mindepth 1 -delete
            continue
        fi
        break
    done
    dump_logs
    die "could not start a $NODES-node Kafka cluster"
}

cmd_stop() {
    load_dir "${1:?usage: cluster.sh stop DIR}"
    local wpid
    wpid=$(cat "$W/watch.pid" 2>/dev/null) && [[ -n $wpid ]] &&
        tr '\0' ' ' <"/proc/$wpid/cmdline" 2>/dev/null | grep -qF "watch $W" && kill "$wpid" 2>/dev/null
    stop_nodes
    local rc=$?
    rm -rf "$W"
    return $rc
}

node_arg() {
    [[ ${1:-} =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= NODES)) || die "no node \"${1:-}\" (1..$NODES)"
}

cmd_kill() {
    load_dir "${1:?usage: cluster.sh kill DIR I}"
    node_arg "${2:-}"
    node_alive "$2" || die "node $2 is not running"
    local pid
    pid=$(node_pid "$2")
    kill -KILL "$pid"
    wait_gone 100 "$pid" || die "node $2 still runs 10 s after SIGKILL"
}

cmd_restart() {
    load_dir "${1:?usage: cluster.sh restart DIR I}"
    node_arg "${2:-}"
    node_alive "$2" && die "node $2 is running"
    START_BEFORE=$(started_count "$2")
    launch_node "$2"
    if ! wait_ready "$2"; then
        dump_logs
        die "node $2 did not rejoin"
    fi
}

# watch DIR PID: stop the cluster in DIR once process PID is gone
cmd_watch() {
    local dir=$1 owner=$2
    while [[ -d $dir ]]; do
        if ! kill -0 "$owner" 2>/dev/null; then
            echo "$(date '+%F %T') owner $owner is gone: stopping $dir"
            exec bash "$KDIR/cluster.sh" stop "$dir"
        fi
        sleep 1
    done
}

cmd_admin() {
    (($# >= 3)) || die "usage: cluster.sh admin BOOTSTRAP create-topic NAME PARTITIONS RF [name=value ...] | configs NAME"
    fetch_libs
    check_java
    exec "$JAVA" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
        "-Dlog4j2.configurationFile=$KDIR/log4j2.properties" \
        -cp "$KLIB/*" "$KDIR/KafkaAdmin.java" "$@"
}

cmd_fetch() {
    fetch_libs
    check_java
    # smoke test: the jars run on this java (and, as root, for the postgres user that
    # runs the TAP tests)
    local v
    v=$("$JAVA" -cp "$KLIB/*" kafka.Kafka --version 2>&1) || die "kafka.Kafka --version failed: $v"
    [[ $v == "$KAFKA_VERSION"* ]] || die "kafka.Kafka --version says \"$v\", expected $KAFKA_VERSION"
    if [[ $(id -u) == 0 ]] && id postgres >/dev/null 2>&1 && [[ $KLIB != "$CACHE_USER"/* ]]; then
        v=$(cd / && runuser -u postgres -- "$JAVA" -cp "$KLIB/*" kafka.Kafka --version 2>&1) ||
            die "the postgres user cannot run Kafka from $KLIB: $v"
    fi
    note "Kafka $v, $(find "$KLIB" -name '*.jar' | wc -l) jars in $KLIB, $("$JAVA" -version 2>&1 | head -n1)"
    echo "$KLIB"
}

cmd=${1:-}
shift || true
case $cmd in
    fetch) cmd_fetch ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    kill) cmd_kill "$@" ;;
    restart) cmd_restart "$@" ;;
    admin) cmd_admin "$@" ;;
    watch) cmd_watch "$@" ;;
    *) die "usage: cluster.sh fetch | start 1|3 [k=v ...] | stop DIR | kill DIR I | restart DIR I | admin BOOTSTRAP ..." ;;
esac
