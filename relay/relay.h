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

#include <pthread.h>

#include <libpq-fe.h>
#include <librdkafka/rdkafka.h>

#include "config.h"
#include "log.h"
#include "metrics.h"
#include "ring.h"

struct RelayBroker;
struct Online;
typedef struct RelayAdmin RelayAdmin;

#include "cdc_wire.h"

#define HEARTBEAT_PREFIX CDC_PREFIX_HEARTBEAT

/* The opaque of the state topic's checkpoint records (ring ids are small). */
#define CHECKPOINT_OPAQUE ((void *) UINTPTR_MAX)
/* ... and of one written in a Kafka transaction (exactly-once): the commit makes it durable */
#define CHECKPOINT_TXN_OPAQUE ((void *) (UINTPTR_MAX - 1))

typedef struct Relay
{
	const RelayConfig *cfg;
	int			v;				/* verbosity, for rlog() */
	volatile sig_atomic_t *stop;	/* set by SIGTERM / SIGINT */
	volatile sig_atomic_t *hup; /* set by SIGHUP (logged and ignored) */

	/* Kafka */
	bool		eos;			/* --delivery exactly-once */
	int			txn_timeout_ms; /* the producer's transaction.timeout.ms */
	char		messages_topic[256];	/* <prefix>.messages */
	char		txn_topic[256];	/* <prefix>.transactions */
	char		schemas_topic[256];	/* <prefix>.schemas: schema events */
	char		ddl_topic[256];	/* <prefix>.ddl: the DDL trigger's messages */
	const char *brokers;		/* cfg->brokers, or the embedded bootstrap list */
	struct RelayBroker *broker; /* -b embedded */
	rd_kafka_t *rk;				/* the producer */
	RelayAdmin *admin;			/* admin.c: the topics made sure of */
	TxnRing    *ring;			/* in-flight transactions (main thread only) */
	void	   *topic_handles;	/* produce.c: tsearch tree of topic handles by name */
	void	   *topics;			/* stream.c: tsearch tree of TopicEntry */
	char	  **known_topics;	/* every topic written, with its table's */
	char	  **known_tables;	/* display name: for topic_register() */
	size_t		nknown;
	char		fatal[1024];		/* why the relay must stop, when fatal_set */
	bool		fatal_set;
	bool		producer_dead;	/* a fatal librdkafka error: it delivers no more */
	char		last_delivery_error[256];

	/*
	 * The state record (state.c): what the state topic says for our slot.
	 * ckpt_durable is the position Kafka acknowledged in a checkpoint record;
	 * the flush position reported to PostgreSQL never passes it, so a slot
	 * found ahead of it was moved by someone else (a gap).
	 */
	char		st_snapshot[16];	/* "complete", "started" or "" (none) */
	uint64_t	st_consistent_point;
	uint64_t	st_rows;
	int			st_tables;
	uint64_t	ckpt_durable;	/* 0: nothing recorded */
	/*
	 * Exactly-once, a PostgreSQL transaction split over Kafka transactions:
	 * the committed checkpoint says its events up to seq ckpt_partial_seq
	 * are in Kafka (ckpt_partial_lsn: its commit LSN, 0: none), with the
	 * counts so far for its end record (JSON text, malloc'd).
	 */
	uint64_t	ckpt_partial_lsn;
	uint64_t	ckpt_partial_seq;
	char	   *ckpt_partial_json;
	uint64_t	ckpt_inflight;	/* LSN of the checkpoint being written, 0: none */

	/*
	 * Online snapshots (online.c): the jobs, while the stream runs; the
	 * state record's "online" object as read at the start (JSON, malloc'd).
	 */
	struct Online *online;
	char	   *st_online_json;

	/*
	 * Kafka transactions (produce.c, exactly-once).  txn_open changes only
	 * with txn_gate held for writing; producers hold it for reading.
	 */
	pthread_rwlock_t txn_gate;
	bool		txn_open;
	int64_t		txn_started_ms;
	atomic_uint_fast64_t txn_messages;	/* queued in the open transaction */
	uint64_t	txn_commits;
	char		txn_abort_reason[512];

	/* snapshot messages: produced by worker threads, reported on the main one */
	atomic_uint_fast64_t snap_pending;
	atomic_uint_fast64_t snap_failed;

	/* PostgreSQL */
	PGconn	   *guard;			/* holds the slot's advisory lock; SQL */
	char		sysid[32];		/* IDENTIFY_SYSTEM */
	char		dbname[128];
	int			server_version;
	bool		have_extension; /* cdc_relay is installed (pg_check_prereqs) */
	bool		plugin_unbatched;	/* the plugin refused batch-events */
	bool		plugin_no_schema;	/* the plugin refused schema-events */
	bool		gap_unchecked_said; /* pg_slot_check: "no confirmed position" logged */

	/*
	 * Counters and gauges (metrics.h), always kept; served with --metrics.
	 * Updated without locks: relaxed atomics, the stream's per-table
	 * counts in batches (stream.c).
	 */
	RelayMetrics *metrics;
} Relay;

/* Log a stop request or SIGHUP that arrived (main thread). */
void		relay_check_signals(Relay *r);

/* Convert an "X/X" LSN to text; buf >= 24 bytes. */
static inline const char *
lsn_str(uint64_t lsn, char *buf)
{
	snprintf(buf, 24, "%X/%X", (unsigned) (lsn >> 32), (unsigned) lsn);
	return buf;
}

/* pgsrc.c: connections, prerequisites, slots, the replication protocol */

/* What a look at the slot found (pg_slot_check). */
typedef enum SlotCheck
{
	SLOT_OK,
	SLOT_STOP,					/* a permanent problem, logged with its fix */
	SLOT_RETRY					/* could not look (connection): try again later */
} SlotCheck;

PGconn	   *pg_connect(Relay *r, bool replication);
PGresult   *pg_exec(Relay *r, PGconn *conn, const char *sql, int nparams,
					const char *const *params);
const char *pg_error(Relay *r, PGconn *conn, char *buf, size_t len);
const char *pg_res_error(Relay *r, PGconn *conn, const PGresult *res, char *buf, size_t len);
int			pg_guard_acquire(Relay *r);
int			pg_slot_lock_holder(Relay *r, PGconn *conn, const char *slot, char *who, size_t len,
								int *pid);
SlotCheck	pg_slot_check(Relay *r, bool gap_check);
bool		pg_database_gone(Relay *r);
int			pg_check_prereqs(Relay *r, PGconn *conn, bool need_snapshot);
int			pg_identify(Relay *r, PGconn *repl);
int			pg_slot_lookup(Relay *r, PGconn *conn, bool *exists);
/*
 * Run CREATE_REPLICATION_SLOT cmd on repl like pg_exec; while it waits (after
 * 5 s, then every 30 s) log on aux (a SQL connection, may be NULL) which
 * transactions it waits for, with the fix.
 */
PGresult   *pg_exec_create_slot(Relay *r, PGconn *repl, PGconn *aux, const char *slot, const char *cmd);
int			pg_create_slot(Relay *r, PGconn *repl, bool export_snapshot,
						   uint64_t *consistent_point, char *snapshot_name, size_t snaplen);
int			pg_drop_slot(Relay *r, PGconn *conn);
/* 0 streaming, -1 retry later, -2 a permanent error (logged with its fix) */
int			pg_start_replication(Relay *r, PGconn *repl);
int			pg_send_status(Relay *r, PGconn *repl, uint64_t written, uint64_t flushed,
						   bool reply_requested);
char	   *pg_plugin_options_array(Relay *r);
int64_t		now_ms(void);

/* producer.c */
int			producer_open(Relay *r);
int			producer_check_cluster(Relay *r, int timeout_ms);
void		producer_close(Relay *r);
rd_kafka_conf_t *kafka_base_conf(Relay *r, bool producer, char *err, size_t errlen);

/* producer.c: permanent rejections */
bool		kafka_error_is_permanent(rd_kafka_resp_err_t err);
bool		kafka_error_is_fencing(rd_kafka_resp_err_t err);
void		kafka_fenced(Relay *r, const char *reason);

/* The fatal error of a fenced producer: transactional.id, Kafka's reason. */
#define KAFKA_FENCED_FMT "fenced: another cdc-relay with transactional.id \"%s\" started (Kafka: %.300s); " \
	"this instance stops and confirms nothing more"
const char *kafka_reject_text(char *buf, size_t len, rd_kafka_resp_err_t err, const char *topic,
							  const char *table, const void *key, size_t keylen, size_t size);
void		kafka_reject(Relay *r, rd_kafka_resp_err_t err, const char *topic, const char *table,
						 const void *key, size_t keylen, size_t size);

/* produce.c: the only way to produce; Kafka transactions */
typedef enum MsgKind
{
	MSG_ROW,					/* c, u, d */
	MSG_TOMBSTONE,
	MSG_TRUNCATE,
	MSG_MESSAGE,				/* a transactional logical message */
	MSG_MESSAGE_NT,				/* a non-transactional one */
	MSG_EMIT,					/* a domain event (cdc_relay.emit) */
	MSG_SNAPSHOT_ROW,
	MSG_TXN_BEGIN,				/* <prefix>.transactions */
	MSG_TXN_END,
	MSG_SCHEMA,					/* a schema event, <prefix>.schemas */
	MSG_SCHEMA_SNAPSHOT,		/* a table's shape at snapshot start */
	MSG_DDL,					/* a DDL message, <prefix>.ddl */
	MSG_STATE					/* the state topic: no headers */
} MsgKind;

/* What the headers of a message are made of (msg_headers). */
typedef struct MsgMeta
{
	MsgKind		kind;
	char		op;				/* MSG_ROW: 'c', 'u' or 'd' */
	const char *table;			/* display name (schema.table), or NULL */
	const char *commit_lsn;		/* the transaction's, the message's own, or the consistent point */
	const char *xid;			/* decimal, or "" / NULL */
	uint64_t	seq;			/* position in the transaction; snapshot: row number; online shape: chunk */
	const char *relid;			/* MSG_SNAPSHOT_ROW, MSG_SCHEMA_SNAPSHOT: the table's oid */
	const char *request_id;		/* the transaction's request id, or NULL */
} MsgMeta;

/* Called while librdkafka's queue is full: 0 to try again, else give up. */
typedef int (*ProduceWait) (void *arg);

typedef enum TxnResult
{
	TXN_OK,
	TXN_RETRY,					/* internal to produce.c */
	TXN_ABORT,					/* aborted: re-send from the last checkpoint */
	TXN_FATAL					/* fatal_set */
} TxnResult;

rd_kafka_topic_t *produce_topic(Relay *r, const char *name);
void		produce_close(Relay *r);
rd_kafka_headers_t *msg_headers(const MsgMeta *m);
rd_kafka_resp_err_t produce_send(Relay *r, rd_kafka_topic_t *rkt, int32_t partition,
								 const void *key, size_t keylen, const void *value, size_t vallen,
								 const MsgMeta *meta, void *opaque, ProduceWait wait, void *warg);
int			produce_wait_sleep(void *abort_flag);
int			txn_init(Relay *r);
int			txn_begin(Relay *r);
TxnResult	txn_commit(Relay *r, ProduceWait wait, void *warg, int poll_ms);
int			txn_abort(Relay *r);

/* state.c: the durable record of the snapshot and the confirmed position, in Kafka */
int			state_read(Relay *r);
int			state_write(Relay *r, const char *status, uint64_t consistent_point,
						uint64_t rows, int tables);
int			state_checkpoint_start(Relay *r, uint64_t lsn);
int			state_checkpoint_sync(Relay *r, uint64_t lsn, int timeout_ms);
int			state_checkpoint_txn(Relay *r, uint64_t lsn, const char *partial_json);
void		state_committed(Relay *r, uint64_t lsn, const char *partial_json);

/* admin.c: the topics the relay writes (created when missing, checked when not) */
typedef enum TopicKind
{
	TOPIC_STATE,
	TOPIC_MESSAGES,
	TOPIC_TABLE_KEYED,			/* cleanup.policy=compact */
	TOPIC_TABLE_KEYLESS,		/* cleanup.policy=delete: null Kafka keys */
	TOPIC_SCHEMAS,				/* cleanup.policy=compact, keyed by table */
	TOPIC_DDL					/* one partition (commit order), delete */
} TopicKind;

/*
 * admin_open: once, after the producer reached the cluster: does the cluster
 * take topic administration requests (else the brokers auto-create topics,
 * logged once)?  -1 when its metadata cannot be read (logged).
 */
int			admin_open(Relay *r);

/*
 * admin_list_start: before anything is created: the topics the relay will
 * write from the start, the state and messages topics and those of the tables
 * cdc_relay.snapshot_tables lists (with the extension; keys looked up on
 * conn), all registered with topic_register(), so that names Kafka would
 * refuse as colliding stop the relay here.  0, or -1 (logged).
 *
 * admin_ensure_start: before anything is produced: those topics exist; a bad
 * --topic-config is found here.  0, or -1 (logged; fatal_set when Kafka
 * refused a topic or its settings).
 */
int			admin_list_start(Relay *r, PGconn *conn);
int			admin_ensure_start(Relay *r);

/*
 * admin_ensure_table: before the first message to the topic of a table first
 * seen after the start: it exists (within 30 s).  has_key: 1 or 0 when the
 * caller knows (the plugin's key in the table's first event), -1 to ask the
 * catalog on r->guard.  0 at once when the topic was handled before in this
 * run.  -1 on failure (logged; fatal_set when Kafka refused the topic, else
 * a failure to retry).
 */
int			admin_ensure_table(Relay *r, const char *topic, const char *schema, const char *table,
							   const char *display, int has_key);
void		admin_close(Relay *r);

/* snapshot.c */
/*
 * The query whose rows are table relid's rows as snapshot events (the
 * snapshot COPYs it, verify reads it through a cursor, so both render rows
 * alike): before (e.g. "COPY ("), then SELECT cdc_relay.snapshot_row(...)
 * FROM ONLY regclass, then after.  opts_literal: the plugin options, an
 * escaped SQL literal.  malloc'd.
 */
char	   *snapshot_row_query(const char *before, const char *relid, const char *regclass,
							   const char *lsn, const char *opts_literal, const char *after);
/* ... with more select-list items after the row (cols: ", expr, ..."); online.c's chunks */
char	   *snapshot_row_query_cols(const char *before, const char *cols, const char *relid,
									const char *regclass, const char *lsn, const char *opts_literal,
									const char *after);
/*
 * Has the extension cdc_relay.table_schema(regclass, text[]) (0.4.0 on)?
 * 1 yes, 0 no, -1 on failure (the reason in err).  Any thread, its own conn.
 */
int			pg_has_table_schema(Relay *r, PGconn *conn, char *err, size_t errlen);
/*
 * From a cdc_relay.table_schema() value: its key in <prefix>.schemas
 * ({"schema":S,"table":T}, as the stream's schema events) and the table's
 * display name (both malloc'd).  False, and both NULL, when malformed.
 */
bool		schema_shape_key(const char *shape, char **key, char **display);
/*
 * The SET LOCALs of a snapshot read transaction (no timeouts; the settings
 * the plugin fixes while decoding).  False when one failed.
 */
bool		snapshot_set_local(Relay *r, PGconn *conn);
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
int			topic_register(Relay *r, const char *topic, const char *table);

#endif
