/*
 * main.c: `cdc-relay run` (snapshot, then stream a slot into Kafka),
 * `cdc-relay verify` (verify.c: compare the topics with the tables),
 * `cdc-relay status` (status.c: the slot's health and the relay's state),
 * `cdc-relay snapshot` (online_cmd.c: request an online snapshot) and
 * `cdc-relay broker` (a Kafka-protocol test broker).
 */
#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "relay.h"
#include "verify.h"
#include "status.h"
#include "online.h"

#define TRY_HELP "Try \"cdc-relay --help\" for more information.\n"

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t hup_received;

static void
on_signal(int sig)
{
	if (sig == SIGHUP)
		hup_received = 1;
	else
		stop_requested = 1;
}

void
relay_check_signals(Relay *r)
{
	if (*r->hup)
	{
		*r->hup = 0;
		rlog(r->v, LOG_INFO, "SIGHUP received and ignored: cdc-relay reads its settings only at start; "
			 "restart it to apply changes");
	}
}

/*
 * Decide about the snapshot, create the slot, take the snapshot if needed.
 * Runs with the slot's advisory lock held (r->guard).  A slot this run
 * created is dropped again when the run ends before its snapshot completed:
 * it would only hold WAL, and the next start takes a new one anyway.
 */
static int
setup(Relay *r, PGconn *repl, bool *stream_after)
{
	const RelayConfig *cfg = r->cfg;
	bool		exists,
				need = false,
				complete,
				created = false,
				snapshot_done = false;
	uint64_t	cp = 0;
	char		snapname[128] = "";
	int			problems;
	int			rc = 1;

	*stream_after = cfg->snapshot != SNAPSHOT_INITIAL_ONLY;
	if (pg_identify(r, repl) != 0 || pg_slot_lookup(r, r->guard, &exists) != 0 || state_read(r) != 0)
		return 1;
	complete = strcmp(r->st_snapshot, "complete") == 0;
	switch (cfg->snapshot)
	{
		case SNAPSHOT_NEVER:
			need = false;
			break;
		case SNAPSHOT_ALWAYS:
			need = true;
			break;
		case SNAPSHOT_INITIAL:
		case SNAPSHOT_INITIAL_ONLY:
			need = !exists || !complete;
			if (exists && need)
				rlog(r->v, LOG_WARNING, "slot \"%s\" exists but no completed snapshot is recorded for it "
					 "in %s: taking the snapshot again", cfg->slot, cfg->state_topic);
			break;
	}
	problems = pg_check_prereqs(r, r->guard, need);
	if (problems != 0)
	{
		if (problems > 0)
			rlog(r->v, LOG_ERROR, "%d prerequisite%s missing (see above); nothing was changed",
				 problems, problems > 1 ? "s" : "");
		return 1;
	}
	/* topics Kafka would refuse as colliding: before anything is created */
	if (admin_list_start(r, r->guard) != 0)
		return 1;
	if (!need && cfg->snapshot == SNAPSHOT_INITIAL_ONLY)
	{
		rlog(r->v, LOG_INFO, "the snapshot of slot \"%s\" is complete already; nothing to do", cfg->slot);
		*stream_after = false;
		return 0;
	}
	/* every topic exists (or is auto-created) before the first message, and before the slot */
	if (admin_ensure_start(r) != 0)
		return *r->stop && !r->fatal_set ? 0 : 1;
	if (!need && exists && *stream_after && pg_slot_check(r, true) != SLOT_OK)
		return 1;
	if (need && exists)
	{
		rlog(r->v, LOG_INFO, "dropping slot \"%s\" to take a new snapshot from a new slot", cfg->slot);
		if (pg_drop_slot(r, repl) != 0)
			return 1;
		exists = false;
	}
	if (!exists)
	{
		if (pg_create_slot(r, repl, need, &cp, snapname, sizeof(snapname)) != 0)
			return *r->stop ? 0 : 1;
		created = true;
		/* a slot without a snapshot starts at its consistent point */
		if (!need && state_write(r, "never", cp, 0, 0) != 0)
			goto out;
	}
	if (need)
	{
		uint64_t	rows = 0;
		int			tables = 0;

		for (int attempt = 1;; attempt++)
		{
			int			src;

			if (state_write(r, "started", cp, 0, 0) != 0)
				goto out;
			src = snapshot_run(r, snapname, cp, &rows, &tables);
			if (src == 0)
				break;
			if (src != SNAPSHOT_RETAKE || *r->stop || r->fatal_set)
				goto out;
			if (attempt == SNAPSHOT_ATTEMPTS)
			{
				rlog(r->v, LOG_ERROR, "gave up after %d snapshots that concurrent DDL made inconsistent; "
					 "fix: run the relay when no table rewrite (ALTER TABLE ... TYPE, VACUUM FULL, CLUSTER, "
					 "TRUNCATE) or DROP TABLE runs on the captured tables", attempt);
				goto out;
			}
			rlog(r->v, LOG_WARNING, "taking the snapshot again from a new slot (attempt %d of %d)",
				 attempt + 1, SNAPSHOT_ATTEMPTS);
			if (pg_drop_slot(r, repl) != 0)
				goto out;
			created = false;
			if (pg_create_slot(r, repl, true, &cp, snapname, sizeof(snapname)) != 0)
				goto out;
			created = true;
		}
		if (state_write(r, "complete", cp, rows, tables) != 0)
			goto out;
		rlog(r->v, LOG_INFO, "snapshot recorded as complete in %s", cfg->state_topic);
	}
	snapshot_done = true;
	if (!*stream_after)
		rlog(r->v, LOG_INFO, "--snapshot initial-only: done; slot \"%s\" stays, a later run streams from it",
			 cfg->slot);
	rc = 0;
out:
	if (!snapshot_done)
	{
		if (created && pg_drop_slot(r, repl) == 0)
			rlog(r->v, LOG_INFO, "dropped replication slot \"%s\" that this run created: the snapshot did not complete",
				 cfg->slot);
		/* a stop at the operator's request is a clean exit; anything else failed */
		rc = *r->stop && !r->fatal_set ? 0 : 1;
	}
	return rc;
}

static int
run_relay(int argc, char **argv)
{
	RelayConfig cfg;
	char		err[1024];
	int			rc;
	Relay		r;
	PGconn	   *repl = NULL;
	bool		stream_after = false;

	rc = config_parse_run(argc, argv, &cfg, err, sizeof(err));
	if (rc != 0)
	{
		if (rc == 2)
			fprintf(stderr, "cdc-relay: %s\n" TRY_HELP, err);
		config_free(&cfg);
		return rc == 1 ? 0 : 2;
	}
	relay_catch_signals(on_signal);
	json_object_seed(0);

	memset(&r, 0, sizeof(r));
	r.cfg = &cfg;
	r.v = cfg.verbosity;
	r.stop = &stop_requested;
	r.hup = &hup_received;
	r.brokers = cfg.brokers;
	r.eos = cfg.exactly_once;
	snprintf(r.messages_topic, sizeof(r.messages_topic), "%s.messages", cfg.topic_prefix);
	snprintf(r.txn_topic, sizeof(r.txn_topic), "%s.transactions", cfg.topic_prefix);
	snprintf(r.schemas_topic, sizeof(r.schemas_topic), "%s.schemas", cfg.topic_prefix);
	snprintf(r.ddl_topic, sizeof(r.ddl_topic), "%s.ddl", cfg.topic_prefix);
	{
		/* the committing main thread must not starve behind snapshot readers */
		pthread_rwlockattr_t attr;

		pthread_rwlockattr_init(&attr);
		pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
		pthread_rwlock_init(&r.txn_gate, &attr);
		pthread_rwlockattr_destroy(&attr);
	}
	r.ring = ring_new();
	r.metrics = metrics_new(CDC_RELAY_VERSION, cfg.slot, r.eos ? "exactly-once" : "at-least-once");
	if (r.ring == NULL || r.metrics == NULL)
		relay_out_of_memory();
	r.metrics->snap_in_flight = &r.snap_pending;
	rlog(r.v, LOG_INFO, "cdc-relay %s starting (slot \"%s\", topics %s.<schema>.<table>, %s)",
		 CDC_RELAY_VERSION, cfg.slot, cfg.topic_prefix, r.eos ? "exactly-once" : "at-least-once");
	if (cfg.metrics_addr)
	{
		char		bound[160];

		if (metrics_serve(r.metrics, cfg.metrics_addr, bound, sizeof(bound), err, sizeof(err)) != 0)
		{
			rlog(r.v, LOG_ERROR, "metrics: %s; fix: choose another --metrics address (port 0: any free port)",
				 err);
			rc = 1;
			goto out;
		}
		rlog(r.v, LOG_INFO, "metrics: listening on %s", bound);
	}

	if (strcmp(cfg.brokers, "embedded") == 0)
	{
		r.broker = relay_broker_start(cfg.embedded_brokers, 1, err, sizeof(err));
		if (r.broker == NULL)
		{
			rlog(r.v, LOG_ERROR, "could not start the embedded broker: %s", err);
			rc = 1;
			goto out;
		}
		r.brokers = relay_broker_bootstraps(r.broker);
		rlog(r.v, LOG_INFO, "embedded Kafka-protocol broker (test only, data in memory) at %s", r.brokers);
	}
	/* Kafka first: nothing is created in PostgreSQL for a relay that cannot deliver */
	if (producer_open(&r) != 0 || producer_check_cluster(&r, 10000) != 0 || admin_open(&r) != 0)
	{
		rc = 1;
		goto out;
	}
	/* one relay per slot: the lock comes before any decision about the slot */
	rc = pg_guard_acquire(&r);
	if (rc != 0)
	{
		rc = stop_requested ? 0 : 1;
		goto out;
	}
	/*
	 * Exactly-once: with the slot's lock held, take over the transactional
	 * id: Kafka fences an older instance (a zombie that lost its lock) and
	 * aborts its open transaction before anything is read or written.
	 */
	if (r.eos && txn_init(&r) != 0)
	{
		rc = stop_requested && !r.fatal_set ? 0 : 1;
		goto out;
	}
	repl = pg_connect(&r, true);
	if (repl == NULL)
	{
		/* say why, with the fix, when a prerequisite (e.g. REPLICATION) is the cause */
		if (!stop_requested)
			pg_check_prereqs(&r, r.guard, false);
		rc = stop_requested ? 0 : 1;
		goto out;
	}
	r.server_version = PQserverVersion(repl);
	rc = setup(&r, repl, &stream_after);
	if (rc == 0 && stream_after && !stop_requested)
	{
		rc = stream_run(&r, repl);
		repl = NULL;			/* stream_run owns and closes it */
	}

out:
	if (stop_requested)
		rlog(r.v, LOG_INFO, "stopping at the operator's request");
	if (r.rk)
	{
		/* a Kafka transaction left open (a failure): abort it rather than block consumers */
		if (r.txn_open && !r.producer_dead)
		{
			rd_kafka_error_t *error = rd_kafka_abort_transaction(r.rk, 5000);

			if (error)
				rd_kafka_error_destroy(error);
		}
		/* stream_run and the snapshot waited for their deliveries already */
		rd_kafka_flush(r.rk, 2000);
		admin_close(&r);
		producer_close(&r);
	}
	if (repl)
		PQfinish(repl);
	if (r.guard)
		PQfinish(r.guard);
	relay_broker_stop(r.broker);
	ring_free(r.ring);
	metrics_free(r.metrics);	/* the server stops first: nothing reads r after this */
	free(r.ckpt_partial_json);
	free(r.st_online_json);
	pthread_rwlock_destroy(&r.txn_gate);
	rlog(r.v, LOG_INFO, "cdc-relay exiting with status %d", rc);
	config_free(&cfg);
	return rc;
}

int
main(int argc, char **argv)
{
	if (argc < 2)
	{
		fprintf(stderr, "cdc-relay: no command given\n" TRY_HELP);
		return 2;
	}
	if (strcmp(argv[1], "run") == 0)
		return run_relay(argc - 1, argv + 1);
	if (strcmp(argv[1], "broker") == 0)
		return relay_broker_main(argc - 1, argv + 1, "cdc-relay");
	if (strcmp(argv[1], "verify") == 0)
	{
		relay_catch_signals(on_signal);
		return verify_main(argc - 1, argv + 1, &stop_requested, &hup_received);
	}
	if (strcmp(argv[1], "status") == 0)
		return status_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "snapshot") == 0)
		return online_snapshot_main(argc - 1, argv + 1);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0)
	{
		config_usage(stdout);
		fputs("\n", stdout);
		relay_broker_usage(stdout, "cdc-relay");
		fputs("\n", stdout);
		verify_usage(stdout);
		fputs("\n", stdout);
		status_usage_line(stdout);
		fputs("\n", stdout);
		online_usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "-V") == 0)
	{
		printf("cdc-relay %s (librdkafka %s, libpq %d, jansson %s)\n", CDC_RELAY_VERSION,
			   rd_kafka_version_str(), PQlibVersion(), JANSSON_VERSION);
		return 0;
	}
	fprintf(stderr, "cdc-relay: unknown command \"%s\" (commands: run, verify, status, snapshot, broker)\n" TRY_HELP, argv[1]);
	return 2;
}
