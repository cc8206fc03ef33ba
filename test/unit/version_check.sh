#!/usr/bin/env bash
# test/unit/version_check.sh — the extension version is written by hand only in the
# Makefile (EXTVERSION); check that everything else agrees with it:
#   cdc_relay.control default_version, META.json "version" and
#   provides.cdc_relay.version/file, sql/cdc_relay--$EXTVERSION.sql, and (after
#   `make install`) the installed control file, SQL script and library.
#
# Usage: version_check.sh [--repo DIR] [--sharedir DIR] [--no-installed]
#        version_check.sh --self-test
#   --repo DIR       checkout to check (default: this script's repository)
#   --sharedir DIR   where the extension is installed (default: pg_config --sharedir)
#   --no-installed   skip the installed-files checks
#   --self-test      prove the checks can fail: run them on temporary copies with a
#                    wrong version planted in each place, and expect each to fail
# Prints one "ok"/"not ok" line per check; exits non-zero on any mismatch.
set -uo pipefail

SCRIPT=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(dirname "$(dirname "$(dirname "$SCRIPT")")")
SHAREDIR=
INSTALLED=1
SELF_TEST=0
while (($#)); do
    case $1 in
        --repo) REPO=$2; shift 2 ;;
        --sharedir) SHAREDIR=$2; shift 2 ;;
        --no-installed) INSTALLED=0; shift ;;
        --self-test) SELF_TEST=1; shift ;;
        *) echo "usage: $0 [--repo DIR] [--sharedir DIR] [--no-installed] [--self-test]" >&2; exit 2 ;;
    esac
done

failures=0
check() {    # check DESCRIPTION EXPECTED ACTUAL
    if [[ $2 == "$3" ]]; then
        echo "ok - $1 ($3)"
    else
        echo "not ok - $1: expected '$2', found '$3'"
        failures=$((failures + 1))
    fi
}
check_file() {    # check_file DESCRIPTION PATH
    if [[ -f $2 ]]; then
        echo "ok - $1 ($2)"
    else
        echo "not ok - $1: $2 does not exist"
        failures=$((failures + 1))
    fi
}

# default_version = '0.1.0' (quotes optional) from a control file
control_version() {
    sed -n "s/^[[:space:]]*default_version[[:space:]]*=[[:space:]]*'\{0,1\}\([^'[:space:]#]*\).*/\1/p" "$1" 2>/dev/null | head -n1
}
# meta_field FILE PERL_PATH: one field of META.json, read with a real JSON parser
meta_field() {
    perl -MJSON::PP -e '
        local $/; open my $f, "<", $ARGV[0] or exit 1;
        my $m = eval { JSON::PP->new->decode(<$f>) } or exit 1;
        my $v = eval $ARGV[1]; print defined $v ? $v : "";' "$1" "$2" 2>/dev/null
}

run_checks() {
    local ver
    ver=$(sed -n 's/^EXTVERSION[[:space:]]*:\{0,1\}=[[:space:]]*\([^[:space:]#]*\).*/\1/p' "$REPO/Makefile" | head -n1)
    if [[ -z $ver ]]; then
        echo "not ok - EXTVERSION not found in $REPO/Makefile"
        failures=$((failures + 1))
        return
    fi
    echo "# EXTVERSION = $ver (Makefile)"
    check "cdc_relay.control default_version" "$ver" "$(control_version "$REPO/cdc_relay.control")"
    check "META.json version" "$ver" "$(meta_field "$REPO/META.json" '$m->{version}')"
    check "META.json provides.cdc_relay.version" "$ver" \
        "$(meta_field "$REPO/META.json" '$m->{provides}{cdc_relay}{version}')"
    check "META.json provides.cdc_relay.file" "sql/cdc_relay--$ver.sql" \
        "$(meta_field "$REPO/META.json" '$m->{provides}{cdc_relay}{file}')"
    check_file "install script for $ver" "$REPO/sql/cdc_relay--$ver.sql"

    if ((INSTALLED)); then
        local share=${SHAREDIR:-$(pg_config --sharedir)}
        check "installed cdc_relay.control default_version" "$ver" \
            "$(control_version "$share/extension/cdc_relay.control")"
        check_file "installed install script for $ver" "$share/extension/cdc_relay--$ver.sql"
        if [[ -z $SHAREDIR ]]; then
            check_file "installed library" "$(pg_config --pkglibdir)/cdc_relay.so"
        fi
    fi
}

if ((SELF_TEST == 0)); then
    run_checks
    if ((failures)); then
        echo "version check: $failures mismatch(es)"
        exit 1
    fi
    echo "version check: all consistent"
    exit 0
fi

# --- self-test: the checks above must be able to fail ---------------------------------
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
self_failures=0

# fresh_copy NAME: minimal copy of the versioned files of the real repository
fresh_copy() {
    local d=$tmp/$1
    mkdir -p "$d/sql" "$d/share/extension"
    cp "$REPO/Makefile" "$REPO/cdc_relay.control" "$REPO/META.json" "$d/"
    cp "$REPO"/sql/cdc_relay--*.sql "$d/sql/" 2>/dev/null
    # a fake install tree matching the copy
    cp "$REPO/cdc_relay.control" "$REPO"/sql/cdc_relay--*.sql "$d/share/extension/" 2>/dev/null
    echo "$d"
}
# expect PASS|FAIL DESCRIPTION DIR
expect() {
    local out rc
    out=$(bash "$SCRIPT" --repo "$3" --sharedir "$3/share" 2>&1)
    rc=$?
    if { [[ $1 == PASS ]] && ((rc == 0)); } || { [[ $1 == FAIL ]] && ((rc != 0)); }; then
        echo "ok - self-test: $2 -> $1"
    else
        echo "not ok - self-test: $2 should $1 (exit $rc):"
        sed 's/^/#   /' <<<"$out"
        self_failures=$((self_failures + 1))
    fi
}
set_meta() {    # set_meta DIR PERL_ASSIGNMENT
    perl -MJSON::PP -i -0777 -pe 'my $m = JSON::PP->new->decode($_); '"$2"'; $_ = JSON::PP->new->pretty->canonical->encode($m);' "$1/META.json"
}

d=$(fresh_copy unchanged)
expect PASS "unmodified copy" "$d"

d=$(fresh_copy control)
sed -i "s/^default_version.*/default_version = '9.9.9'/" "$d/cdc_relay.control"
expect FAIL "wrong default_version in cdc_relay.control" "$d"

d=$(fresh_copy meta)
set_meta "$d" '$m->{version} = "9.9.9"'
expect FAIL "wrong META.json version" "$d"

d=$(fresh_copy provides)
set_meta "$d" '$m->{provides}{cdc_relay}{version} = "9.9.9"'
expect FAIL "wrong META.json provides.cdc_relay.version" "$d"

d=$(fresh_copy makefile)
sed -i 's/^EXTVERSION.*/EXTVERSION  = 9.9.9/' "$d/Makefile"
expect FAIL "EXTVERSION bumped without control, META.json and install script" "$d"

d=$(fresh_copy sqlfile)
rm -f "$d"/sql/cdc_relay--*.sql
expect FAIL "missing sql/cdc_relay--\$EXTVERSION.sql" "$d"

d=$(fresh_copy installed)
sed -i "s/^default_version.*/default_version = '0.0.1'/" "$d/share/extension/cdc_relay.control"
expect FAIL "stale installed control file" "$d"

if ((self_failures)); then
    echo "version check self-test: $self_failures case(s) wrong"
    exit 1
fi
echo "version check self-test: every planted mismatch was caught"
