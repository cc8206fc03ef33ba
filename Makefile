# cdc_relay: PostgreSQL logical decoding output plugin + extension (PGXS build).
#
#   make              build cdc_relay.so and the relay daemon relay/cdc-relay
#   make install      install the library, control file, SQL scripts and cdc-relay (into
#                     pg_config --bindir and RELAY_BINDIR, default /usr/local/bin)
#   make installcheck pg_regress suite on its own temporary server (test/logical.conf)
#   make test         install missing Debian packages, build, install, run every test
#   make demo         throwaway server + embedded broker + relay + live workload
#   make bench        benchmarks (test/bench/), not part of make test
#   make chaos        the chaos test (test/chaos/), after make install: faults at random
#                     moments, then every topic checked; CHAOS_ROUNDS (default 24) and
#                     CHAOS_SEED (default: new, printed); make test runs a short one (117)
#
# The version is written here and nowhere else by hand; test/unit/version_check.sh
# verifies that cdc_relay.control and META.json agree with it.

EXTENSION   = cdc_relay
EXTVERSION  = 0.4.0
MODULE_big  = cdc_relay
OBJS        = src/plugin.o src/proto.o src/options.o src/encode.o src/relcache.o src/filter.o src/functions.o src/health.o src/appfuncs.o src/schema.o src/online.o
DATA        = sql/cdc_relay--0.1.0.sql sql/cdc_relay--0.1.0--0.2.0.sql sql/cdc_relay--0.2.0.sql \
              sql/cdc_relay--0.2.0--0.3.0.sql sql/cdc_relay--0.3.0.sql sql/cdc_relay--0.3.0--0.4.0.sql \
              sql/cdc_relay--$(EXTVERSION).sql
PGFILEDESC  = "cdc_relay - lossless JSON change events from logical decoding"

REGRESS     = setup upgrade install_schema insert_update_delete replica_identity pk_change toast toast_key types special_values \
              escaping truncate messages savepoints twophase ddl partitions options key_prefix batch_events filters \
              publications snapshot large_txn roundtrip check_setup slot_health \
              request_id origin schema_events ddl_capture online_request
TEST_CONF   = $(CURDIR)/test/logical.conf
# Regression databases are UTF8 with the C locale, whatever the caller's LANG.
ENCODING    = UTF8
NO_LOCALE   = 1
REGRESS_OPTS = --temp-instance=./tmp_check --temp-config=$(TEST_CONF)

PG_CONFIG  ?= pg_config
PG_CPPFLAGS = -DCDC_RELAY_VERSION='"$(EXTVERSION)"' -I$(CURDIR)/src
PG_CFLAGS   = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers \
              -Wno-sign-compare -Wno-clobbered
ifdef WERROR
PG_CFLAGS  += -Werror
endif

EXTRA_CLEAN = tmp_check results regression.diffs regression.out log

# initdb refuses to run as root.  As root, run pg_regress as an unprivileged user
# from a scratch copy of the test inputs that this user can read and write.
TEST_USER ?= postgres
TEST_DIR  ?= /tmp/cdc_relay-regress
ifeq ($(shell id -u),0)
AS_ROOT      = 1
REGRESS_PREP = regress-prep
REGRESS_OPTS = --temp-instance=$(TEST_DIR)/tmp_check --temp-config=$(TEST_DIR)/test/logical.conf \
               --inputdir=$(TEST_DIR) --outputdir=$(TEST_DIR)
endif

PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifeq ($(PGXS),)
# Without pg_config only the targets that install it themselves can run.
ifeq ($(filter test demo bench,$(MAKECMDGOALS)),)
$(error pg_config not found: install postgresql-server-dev-15, or run "make test" or "make demo", which install it)
endif
else
# No LLVM bitcode: JIT inlining buys nothing for an output plugin
# ("override", or Makefile.global would set it back).
override with_llvm = no
include $(PGXS)
endif

ifdef AS_ROOT
pg_regress_installcheck = \
    echo "+++ regress install-check as $(TEST_USER) in $(TEST_DIR) +++" && \
    runuser -u $(TEST_USER) -- $(top_builddir)/src/test/regress/pg_regress \
    --bindir='$(bindir)' $(pg_regress_locale_flags) $(EXTRA_REGRESS_OPTS)
endif

# The objects depend on the shared headers, and on the Makefile for EXTVERSION.
$(OBJS): src/cdc_relay.h src/cdc_wire.h src/compat.h Makefile

# The relay daemon (relay/, plain make): built, installed and cleaned with the extension.
ifneq ($(PGXS),)
all: relay
install: relay-install
uninstall: relay-uninstall
clean: relay-clean
endif
RELAY_MAKE = $(MAKE) -C relay PG_CONFIG=$(PG_CONFIG) $(if $(WERROR),WERROR=1)

relay:
	$(RELAY_MAKE)

relay-install:
	$(RELAY_MAKE) install

relay-uninstall:
	$(RELAY_MAKE) uninstall

relay-clean:
	$(RELAY_MAKE) clean

relay-check:
	$(RELAY_MAKE) check

.PHONY: regress-prep test demo bench relay relay-install relay-uninstall relay-clean relay-check
regress-prep:
	rm -rf $(TEST_DIR) && mkdir -p $(TEST_DIR)/test
	cp -r sql expected $(TEST_DIR)/ && cp test/logical.conf $(TEST_DIR)/test/
	chown -R $(TEST_USER) $(TEST_DIR)

test:
	bash test/run-tests.sh

demo:
	bash test/demo.sh

bench:
	bash test/bench/run.sh && bash test/bench/relay.sh

CHAOS_ROUNDS ?= 24
CHAOS_SEED ?=
.PHONY: chaos
chaos:
	CHAOS_ROUNDS=$(CHAOS_ROUNDS) CHAOS_SEED=$(CHAOS_SEED) bash test/chaos/run.sh

# cdc-relay end to end only (streaming and latency per delivery mode, snapshot, callgrind
# instructions per change; into the test broker and a 1-node Kafka cluster side by side):
# test/bench/relay.sh (its header lists the BENCH_* settings; smoke run there too)
.PHONY: bench-relay
bench-relay:
	bash test/bench/relay.sh
