#!/usr/bin/env bash
# test/lib/deps.sh — install the Debian packages cdc_relay's build, tests and demo need.
#
# Idempotent: asks dpkg which packages are missing and runs apt-get only when
# something is.  Works both sourced (`source test/lib/deps.sh`, as run-tests.sh
# and demo.sh do) and executed (`bash test/lib/deps.sh`, as .ci/run does before
# `make`, because the Makefile itself needs make and pg_config to parse).
#
# As root it installs what is missing.  As another user it does nothing when
# everything is present, uses `sudo -n` when that works, and otherwise fails
# naming the packages to install.
#
# The Debian packages normally create and start a "15/main" cluster on port
# 5432.  Nothing here uses it, so before installing we tell postgresql-common
# not to create it (createcluster.d drop-in).  Every test and the demo run
# their own throwaway servers on their own ports and socket directories.

cdc_relay_deps() {
    # jq is optional (demo pretty-printing); it is cheap, so install it too.
    # The relay: librdkafka, jansson, pkg-config to find them; kcat is the tests'
    # independent Kafka client, valgrind checks the relay for leaks.  Java and Maven
    # run real Kafka brokers for the tests (test/kafka/cluster.sh fetches the jars).
    # libmicrohttpd serves the relay's metrics and cdc-index's search; SQLite (FTS5)
    # holds cdc-index's search index (sqlite3: the tests' independent reader);
    # prometheus ships promtool, which the tests use to validate the metrics.
    local pkgs=(postgresql-15 postgresql-server-dev-15 libpq-dev postgresql-15-wal2json
                libipc-run-perl perl make gcc jq
                librdkafka-dev libjansson-dev pkg-config kcat valgrind
                libmicrohttpd-dev libsqlite3-dev sqlite3 prometheus
                openjdk-17-jre-headless maven)
    local missing=() p status
    for p in "${pkgs[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [[ $status == "install ok installed" ]] || missing+=("$p")
    done

    # The tests set output_plugin_libraries, which exists from 15.19 on (15.18 and
    # older refuse to start with it).  Debian 12 ships 15.19+ through
    # bookworm-security; upgrade an older install (server and headers together).
    local pgver
    pgver=$(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null || true)
    if [[ -n $pgver ]] && dpkg --compare-versions "$pgver" lt 15.19; then
        echo "deps: postgresql-15 $pgver is older than 15.19 (no output_plugin_libraries): upgrading"
        missing+=(postgresql-15 postgresql-client-15 postgresql-server-dev-15)
    fi

    if ((${#missing[@]} == 0)); then
        echo "deps: all packages present"
        return 0
    fi

    local sudo=()
    if [[ $(id -u) != 0 ]]; then
        if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
            sudo=(sudo -n)
        else
            echo "deps: missing packages: ${missing[*]}" >&2
            echo "deps: run as root: apt-get install -y ${missing[*]}" >&2
            return 1
        fi
    fi

    echo "deps: installing ${missing[*]}"
    # No default 15/main cluster: we never use it (see header).
    "${sudo[@]}" mkdir -p /etc/postgresql-common/createcluster.d || return 1
    echo "create_main_cluster = false" |
        "${sudo[@]}" tee /etc/postgresql-common/createcluster.d/cdc_relay-no-main-cluster.conf >/dev/null ||
        return 1

    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null || return 1
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null || return 1
    pgver=$(dpkg-query -W -f='${Version}' postgresql-15 2>/dev/null || true)
    if dpkg --compare-versions "$pgver" lt 15.19; then
        echo "deps: postgresql-15 is $pgver; 15.19 or later is needed (is bookworm-security in the apt sources?)" >&2
        return 1
    fi
    echo "deps: done (postgresql-15 $pgver)"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    cdc_relay_deps
    exit
else
    cdc_relay_deps || return
fi
