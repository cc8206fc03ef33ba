# test/bench/lib.sh: shell helpers shared by the benchmark scripts (run.sh, relay.sh).
# Sourced, not run.  Set BENCH_NAME (the prefix of every message) before sourcing.
#
#   die MSG...              "BENCH_NAME: MSG" on stderr, exit 1
#   log MSG...              "BENCH_NAME: MSG" on stderr
#   need_positive VAR...    die unless each named variable holds an integer >= 1
#   bench_pg_tools          sets PG_CONFIG, BINDIR, PKGLIBDIR, PGVERSION (PostgreSQL 15 or die)
#   psql_q ARGS...          psql quiet, unaligned, tuples only, stopping at the first error
#   sql DB QUERY            runs QUERY in database DB, prints its result
#   now                     the wall clock in seconds (microseconds, $EPOCHREALTIME)
#   elapsed T0 T1           T1 - T0 as "%.3f"
#   median "N N ..."        median of the numbers ("-" entries ignored; "-" when none)
#   lowest "N N ..."        smallest of the numbers
#   rate COUNT SECONDS      COUNT / SECONDS rounded to an integer ("-" when SECONDS is "-" or <= 0)
#   ratio A B               A / B as "1.23x" ("-" when A or B is "-", or B <= 0).  One meaning
#                           everywhere: the first argument over the second.  To compare speeds
#                           measured in seconds, pass the *other* path's seconds first:
#                           ratio PEER_SECS MY_SECS = my rate / the peer's rate (> 1x: I am faster).
#   verdict VALUE OP TARGET "ok" when VALUE OP TARGET holds (OP ">=" or "<="; a trailing "x" of
#                           VALUE is ignored), else "MISSED"; "-" when VALUE is "-"

BENCH_NAME=${BENCH_NAME:-bench}

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }
log() { printf '%s: %s\n' "$BENCH_NAME" "$*" >&2; }

need_positive() {
    local v
    for v in "$@"; do
        [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "$v must be a positive integer (got '${!v}')"
    done
}

bench_pg_tools() {
    PG_CONFIG=${PG_CONFIG:-pg_config}
    command -v "$PG_CONFIG" >/dev/null || PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
    [[ -x $PG_CONFIG ]] || command -v "$PG_CONFIG" >/dev/null ||
        die "pg_config not found: run 'make test' or 'bash test/lib/deps.sh' first"
    BINDIR=$("$PG_CONFIG" --bindir)
    PKGLIBDIR=$("$PG_CONFIG" --pkglibdir)
    PGVERSION=$("$PG_CONFIG" --version)
    [[ "$PGVERSION" == "PostgreSQL 15"* ]] || die "$PG_CONFIG is $PGVERSION, need PostgreSQL 15"
}

psql_q() { "$BINDIR/psql" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }
sql() { local db=$1; shift; psql_q -d "$db" -c "$*"; }

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

median() {
    tr ' ' '\n' <<<"$1" | awk 'NF && $1 != "-"' | sort -g |
        awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2];
                                  else printf "%.3f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
lowest() { tr ' ' '\n' <<<"$1" | awk 'NF && $1 != "-"' | sort -g | head -n 1; }
rate() { awk -v c="$1" -v s="$2" 'BEGIN { if (s == "-" || s <= 0) print "-"; else printf "%.0f", c / s }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b <= 0) print "-"; else printf "%.2fx", a / b }'; }
verdict() {
    awk -v v="${1%x}" -v t="$3" -v op="$2" 'BEGIN { if (v == "-") { print "-"; exit }
        ok = (op == ">=") ? (v + 0 >= t + 0) : (v + 0 <= t + 0); print ok ? "ok" : "MISSED" }'
}

# children_cpu VAR (uses $SCRATCH): VAR = CPU seconds (user + system) of the children this shell has
# waited for so far (not in $(...): a subshell has children of its own).
children_cpu() {
    times >"$SCRATCH/times"
    printf -v "$1" '%s' "$(awk 'NR == 2 { t = 0
                   for (i = 1; i <= 2; i++) { split($i, a, "m"); sub("s", "", a[2]); t += a[1] * 60 + a[2] }
                   printf "%.3f", t }' "$SCRATCH/times")"
}
