/*
 * relay.h: the state of one `cdc-relay run`, passed to every module.
 *
 * There is no global mutable state: everything lives in this struct, owned
 * by run_relay() in main.c, except the signal flag it points to.
 */
#ifndef RELAY_RELAY_H
#define RELAY_RELAY_H

#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "config.h"
#include "log.h"
#include "ring.h"

struct RelayBroker;

#define HEARTBEAT_PREFIX "cdc_relay.heartbeat"

typedef struct Relay
{
	const RelayConfig *cfg;
	int			v;				/* verbosity, for rlog() */
	volatile sig_atomic_t *stop;	/* set by SIGTERM / SIGINT */

	/* Kafka */
	const char *brokers;		/* cfg->brokers, or the embedded bootstrap list */
	struct RelayBroker *broker; /* -b embedded */
	rd_kafka_t *rk;				/* the producer */
	TxnRing    *ring;			/* in-flight transactions (main thread only) */
	void	   *topics;			/* tsearch tree of TopicEntry */
	char		fatal[512];		/* fatal Kafka error, when fatal_set */
	bool		fatal_set;
	uint64_t	delivered;		/* successful delivery reports (stream) */
	uint64_t	delivery_errors;
	char		last_delivery_error[256];

	/* snapshot messages: produced by worker threads, reported on the main one */
	atomic_uint_fast64_t snap_pending;
	atomic_uint_fast64_t snap_failed;

	/* PostgreSQL */
	char		sysid[32];		/* IDENTIFY_SYSTEM */
	char		dbname[128];
	int			server_version;
} Relay;

/* Convert an "X/X" LSN to text; buf >= 24 bytes. */
static inline const char *
lsn_str(uint64_t lsn, char *buf)
{
	snprintf(buf, 24, "%X/%X", (unsigned) (lsn >> 32), (unsigned) lsn);
	return buf;
}

/* pgsrc.c: connections, prerequisites, slots, the replication protocol */
PGconn	   *pg_connect(Relay *r, bool replication);
int			pg_check_prereqs(Relay *r, PGconn *conn, bool need_snapshot);
int			pg_identify(Relay *r, PGconn *repl);
int			pg_slot_lookup(Relay *r, PGconn *conn, bool *exists);
int			pg_create_slot(Relay *r, PGconn *repl, bool export_snapshot,
						   uint64_t *consistent_point, char *snapshot_name, size_t snaplen);
int			pg_drop_slot(Relay *r, PGconn *conn);
int			pg_start_replication(Relay *r, PGconn *repl);
int			pg_send_status(Relay *r, PGconn *repl, uint64_t written, uint64_t flushed,
						   bool reply_requested);
char	   *pg_plugin_options_array(Relay *r);
int64_t		now_ms(void);

/* producer.c */
int			producer_open(Relay *r);
void		producer_close(Relay *r);
rd_kafka_conf_t *kafka_base_conf(Relay *r, bool producer, char *err, size_t errlen);

/* state.c: the durable snapshot record in Kafka */
int			state_read_complete(Relay *r, uint64_t *consistent_point, bool *complete);
int			state_write(Relay *r, const char *status, uint64_t consistent_point,
						uint64_t rows, int tables);

/* snapshot.c */
/*
 * snapshot_run() returns 0 when every row was delivered, -1 on failure, and
 * SNAPSHOT_RETAKE when concurrent DDL made the exported snapshot unusable for
 * a table (the caller takes a new one from a new slot, at most
 * SNAPSHOT_ATTEMPTS times in all).
 */
#define SNAPSHOT_RETAKE (-2)
#define SNAPSHOT_ATTEMPTS 3
int			snapshot_run(Relay *r, const char *snapshot_name, uint64_t consistent_point,
						 uint64_t *rows_out, int *tables_out);

/* stream.c */
int			stream_run(Relay *r, PGconn *repl);
void		topic_cache_free(Relay *r);

#endif
