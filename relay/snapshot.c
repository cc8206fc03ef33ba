/*
 * snapshot.c: the initial snapshot, read in parallel from an exported
 * snapshot and produced as op "r" events.
 *
 * The replication connection created the slot with an exported snapshot and
 * stays idle, which keeps the snapshot importable.  The "lead" connection
 * imports it (REPEATABLE READ + SET TRANSACTION SNAPSHOT), lists the tables
 * and, in that same transaction, locks them all at once:
 *   LOCK TABLE ONLY t1, t2, ... IN ACCESS SHARE MODE
 * From then on no DDL that rewrites or drops a captured table (ALTER TABLE
 * ... TYPE, TRUNCATE, VACUUM FULL, CLUSTER, DROP) can commit until the
 * snapshot is over: it waits for the lead's transaction, which stays open
 * until every table has been read and every row delivered.  DDL that
 * committed between the export and the lock is detected by comparing each
 * table's relfilenode as the snapshot sees it (pg_class read with the
 * imported snapshot) with pg_relation_filenode() (the catalog's current
 * state, which the lock made the backend accept): such a table would read as
 * empty, so snapshot_run() returns SNAPSHOT_RETAKE without reading anything
 * and the caller takes a new snapshot from a new slot.
 *
 * The lead connection is also the first reader.  The other --snapshot-jobs
 * readers each import the snapshot on a connection of their own and lock
 * every table with NOWAIT before reading any: a reader that cannot (a DDL
 * is already queued for one of the tables behind the lead's lock) reads
 * nothing.  Without that, its first read of that table would queue behind
 * the DDL, which waits for the lead, which waits for the reader: a deadlock
 * PostgreSQL cannot see (pg_dump's parallel mode meets the same problem).
 *
 * Readers take tables from a shared list, largest first.  Each table is read
 * with
 *   COPY (SELECT cdc_relay.snapshot_row(rel, t.*, lsn, options) FROM ONLY rel t)
 *     TO STDOUT (FORMAT binary)
 * so that values are encoded by the same server code as the change events;
 * each row comes back as <key JSON> TAB <event JSON>.  The main thread serves
 * delivery reports and shows progress.  The snapshot counts as done only when
 * every row has a successful delivery report.
 *
 * Before any row, the shape of every captured table (cdc_relay.table_schema(),
 * read on the lead connection, so as of the snapshot) goes to
 * <prefix>.schemas, as the stream's schema events do, so that a consumer has
 * the shape of a table that never changes; skipped, with one line, when the
 * extension is older than the function.
 *
 * Every connection here runs with an empty search_path, and every function,
 * operator and cast in the SQL sent is schema-qualified.
 */
#include "relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "topic.h"

typedef struct SnapTable
{
	char	   *relid;			/* oid, as text */
	char	   *regclass;		/* quoted, qualified name for SQL */
	char	   *schema;			/* names the events carry */
	char	   *table;
	char	   *header_table;	/* "schema.table" for the Kafka header */
	double		reltuples;		/* estimate; < 0 unknown */
	int64_t		relpages;
	rd_kafka_topic_t *rkt;
	MetricsTable *mt;			/* its metrics (snapshot_rows, bytes) */
	atomic_uint_fast64_t rows;
	atomic_int	state;			/* 0 waiting, 1 reading, 2 done */
	int64_t		started_ms;
	int64_t		finished_ms;
} SnapTable;

typedef struct SnapShared
{
	Relay	   *r;
	const char *snapshot_name;
	char		lsn[24];
	char	   *options;		/* text[] literal */
	SnapTable  *tables;
	int			ntables;
	PGconn	   *lead;			/* imported, listed and locked; the first reader */
	char	   *lock_sql;		/* LOCK TABLE ONLY <every table> IN ACCESS SHARE MODE */
	pthread_mutex_t lock;
	int			next;			/* next table to take (under lock) */
	atomic_int	abort;			/* a worker failed, or we are stopping */
	atomic_uint_fast64_t produced;	/* rows queued for Kafka */
	bool		txn_aborted;	/* exactly-once: a batch could not commit */
	char		error[600];		/* first worker error (under lock) */
} SnapShared;

/* One reader thread and its connection (in the imported, locked transaction). */
typedef struct SnapJob
{
	SnapShared *sh;
	PGconn	   *conn;
} SnapJob;

/* A lock wait is reported after this long, then again at this interval. */
#define LOCK_WAIT_REPORT_MS 5000
#define LOCK_WAIT_REPEAT_MS 30000

/* Record the first error of any worker (later ones are consequences) and stop all. */
static void
worker_fail(SnapShared *sh, const char *fmt,...)
__attribute__((format(printf, 2, 3)));

static void
worker_fail(SnapShared *sh, const char *fmt,...)
{
	va_list		ap;

	pthread_mutex_lock(&sh->lock);
	if (sh->error[0] == '\0')
	{
		va_start(ap, fmt);
		vsnprintf(sh->error, sizeof(sh->error), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&sh->lock);
	atomic_store(&sh->abort, 1);
}

/* Run a command that returns no rows; false when it failed (or a stop came). */
static bool
exec_ok(Relay *r, PGconn *conn, const char *sql)
{
	PGresult   *res = pg_exec(r, conn, sql, 0, NULL);
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	PQclear(res);
	return ok;
}

/* The SQLSTATE of a failed result, "" when there is none. */
static const char *
sqlstate(const PGresult *res)
{
	const char *s = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

	return s ? s : "";
}

/*
 * Begin a transaction on the exported snapshot (the connection comes from
 * pg_connect(), so its search_path is empty already).
 */
static bool
import_snapshot(Relay *r, PGconn *conn, const char *snapshot_name)
{
	char		sql[200];

	snprintf(sql, sizeof(sql), "SET TRANSACTION SNAPSHOT '%s'", snapshot_name);
	return exec_ok(r, conn, "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY") &&
		exec_ok(r, conn, sql) &&
		snapshot_set_local(r, conn);
}

bool
snapshot_set_local(Relay *r, PGconn *conn)
{
	return exec_ok(r, conn, "SET LOCAL statement_timeout = 0") &&
		exec_ok(r, conn, "SET LOCAL lock_timeout = 0") &&
		exec_ok(r, conn, "SET LOCAL idle_in_transaction_session_timeout = 0") &&
		/* the settings the plugin fixes while decoding: no per-row switching */
		exec_ok(r, conn, "SET LOCAL DateStyle = 'ISO, YMD'") &&
		exec_ok(r, conn, "SET LOCAL TimeZone = 'UTC'") &&
		exec_ok(r, conn, "SET LOCAL IntervalStyle = iso_8601") &&
		exec_ok(r, conn, "SET LOCAL extra_float_digits = 1") &&
		exec_ok(r, conn, "SET LOCAL bytea_output = hex") &&
		exec_ok(r, conn, "SET LOCAL lc_monetary = 'C'");
}

/*
 * The next message of a COPY in progress, as PQgetCopyData() returns it,
 * waiting in a poll loop that gives up (-3) when the snapshot aborts, so that
 * a server that stopped answering cannot hold the relay.
 */
static int
copy_next(SnapShared *sh, PGconn *conn, char **buf)
{
	for (;;)
	{
		int			len = PQgetCopyData(conn, buf, 1);
		struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};

		if (len != 0)
			return len;
		if (atomic_load(&sh->abort))
			return -3;
		if (poll(&pfd, 1, 200) < 0 && errno != EINTR)
			return -2;
		if (!PQconsumeInput(conn))
			return -2;
	}
}

char *
snapshot_row_query(const char *before, const char *relid, const char *regclass,
				   const char *lsn, const char *opts_literal, const char *after)
{
	return snapshot_row_query_cols(before, "", relid, regclass, lsn, opts_literal, after);
}

char *
snapshot_row_query_cols(const char *before, const char *cols, const char *relid, const char *regclass,
						const char *lsn, const char *opts_literal, const char *after)
{
	size_t		len = strlen(before) + strlen(cols) + strlen(relid) + strlen(regclass) + strlen(lsn) +
		strlen(opts_literal) + strlen(after) + 160;
	char	   *sql = malloc(len);

	if (sql == NULL)
		relay_out_of_memory();
	snprintf(sql, len,
			 "%sSELECT cdc_relay.snapshot_row(%s::pg_catalog.regclass, t.*, '%s'::pg_catalog.pg_lsn,"
			 " %s::pg_catalog.text[])%s FROM ONLY %s t%s",
			 before, relid, lsn, opts_literal, cols, regclass, after);
	return sql;
}

/* Start the COPY of table t on conn.  False on error (recorded). */
static bool
copy_start(SnapShared *sh, PGconn *conn, SnapTable *t)
{
	Relay	   *r = sh->r;
	char	   *opts = PQescapeLiteral(conn, sh->options, strlen(sh->options));
	char	   *sql;
	PGresult   *res;
	char		err[500];
	bool		ok;

	if (opts == NULL)
		relay_out_of_memory();
	sql = snapshot_row_query("COPY (", t->relid, t->regclass, sh->lsn, opts, ") TO STDOUT (FORMAT binary)");
	PQfreemem(opts);
	res = pg_exec(r, conn, sql, 0, NULL);
	free(sql);
	ok = PQresultStatus(res) == PGRES_COPY_OUT;
	if (!ok)
		worker_fail(sh, "could not read table %s: %s", t->regclass, pg_res_error(r, conn, res, err, sizeof(err)));
	PQclear(res);
	return ok;
}

/*
 * One message of a binary COPY of snapshot_row(): a row is int16 field count
 * 1, int32 length, the text <key JSON> TAB <event JSON>; the first message
 * also carries the file header (signature, flags, extension), the last one
 * is the trailer (int16 -1).  Returns 1 with the row's key and value, 0 for
 * a message without a row (header alone, trailer), -1 when malformed.
 */
static int
copy_parse_row(char *buf, int len, char **key, size_t *keylen, char **value, size_t *vallen)
{
	char	   *msg = buf;
	int32_t		flen = -1;
	char	   *tab;

	if (len >= 19 && memcmp(buf, "PGCOPY\n\377\r\n\0", 11) == 0)
	{
		uint32_t	extlen;

		memcpy(&extlen, buf + 15, 4);
		extlen = ntohl(extlen);
		if (extlen > (uint32_t) len - 19)
			extlen = (uint32_t) len - 19;
		msg = buf + 19 + extlen;
		len -= 19 + (int) extlen;
	}
	if (len == 0 || (len == 2 && (unsigned char) msg[0] == 0xff && (unsigned char) msg[1] == 0xff))
		return 0;
	if (len >= 6 && msg[0] == 0 && msg[1] == 1)
	{
		uint32_t	nl;

		memcpy(&nl, msg + 2, 4);
		flen = (int32_t) ntohl(nl);
	}
	tab = flen > 0 && flen == len - 6 ? memchr(msg + 6, CDC_WIRE_KEY_SEP, (size_t) flen) : NULL;
	if (tab == NULL)
		return -1;
	*key = msg + 6;
	*keylen = (size_t) (tab - *key);
	*value = tab + 1;
	*vallen = (size_t) flen - *keylen - 1;
	return 1;
}

/*
 * Produce snapshot row n of table t (an "r" event; a null key for a table
 * without one).  False on error (recorded): Kafka refuses it for good, or the
 * snapshot aborts while the queue is full.
 */
static bool
produce_row(SnapShared *sh, SnapTable *t, const char *key, size_t keylen, const char *value,
			size_t vallen, uint64_t n)
{
	Relay	   *r = sh->r;
	MsgMeta		m = {.kind = MSG_SNAPSHOT_ROW, .table = t->header_table, .commit_lsn = sh->lsn,
	.seq = n, .relid = t->relid};
	bool		nokey = keylen == 4 && memcmp(key, "null", 4) == 0;
	rd_kafka_resp_err_t e;

	atomic_fetch_add(&r->snap_pending, 1);
	/* backpressure: the main thread serves delivery reports meanwhile */
	e = produce_send(r, t->rkt, RD_KAFKA_PARTITION_UA, nokey ? NULL : key, nokey ? 0 : keylen,
					 value, vallen, &m, NULL, produce_wait_sleep, &sh->abort);
	if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		atomic_fetch_add(&sh->produced, 1);
		return true;
	}
	atomic_fetch_sub(&r->snap_pending, 1);
	if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL && e != RD_KAFKA_RESP_ERR__STATE)
	{
		char		why[1500];

		worker_fail(sh, "%s", kafka_reject_text(why, sizeof(why), e, rd_kafka_topic_name(t->rkt),
												 t->header_table, key, keylen, keylen + vallen));
	}
	return false;
}

int
pg_has_table_schema(Relay *r, PGconn *conn, char *err, size_t errlen)
{
	PGresult   *res = pg_exec(r, conn, "SELECT pg_catalog.to_regprocedure("
							  "'cdc_relay.table_schema(pg_catalog.regclass,pg_catalog.text[])') IS NOT NULL", 0, NULL);
	int			rc;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		pg_res_error(r, conn, res, err, errlen);
		rc = -1;
	}
	else
		rc = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return rc;
}

bool
schema_shape_key(const char *shape, char **key, char **display)
{
	json_t	   *j = json_loads(shape, 0, NULL);
	json_t	   *js = json_object_get(j, "schema"),
			   *jt = json_object_get(j, "table");
	json_t	   *k = json_is_string(js) && json_is_string(jt)
		? json_pack("{s:O,s:O}", "schema", js, "table", jt) : NULL;

	*key = k ? json_dumps(k, JSON_COMPACT) : NULL;
	*display = k ? table_display_name(json_string_value(js), json_string_value(jt)) : NULL;
	json_decref(k);
	json_decref(j);
	if (*key == NULL || *display == NULL)
	{
		free(*key);
		free(*display);
		*key = *display = NULL;
		return false;
	}
	return true;
}

/* The oids of the tables to read as an oid[] literal, {1,2,...}; malloc'd. */
static char *
table_oids_literal(const SnapShared *sh)
{
	size_t		len = 3;
	char	   *oids,
			   *p;

	for (int i = 0; i < sh->ntables; i++)
		len += strlen(sh->tables[i].relid) + 1;
	oids = malloc(len);
	if (oids == NULL)
		relay_out_of_memory();
	p = oids;
	*p++ = '{';
	for (int i = 0; i < sh->ntables; i++)
		p += sprintf(p, "%s%s", i > 0 ? "," : "", sh->tables[i].relid);
	strcpy(p, "}");
	return oids;
}

/*
 * The shapes of the tables to read, as of the snapshot, to <prefix>.schemas
 * (keyed {"schema":S,"table":T}, as the stream's schema events), read on the
 * lead connection.  Tables named alike (partitions under partition-root)
 * give one.  0, or -1 on failure (logged).  Main thread, a Kafka
 * transaction open under exactly-once.
 */
static int
snapshot_schemas(SnapShared *sh)
{
	Relay	   *r = sh->r;
	PGresult   *res;
	char		err[600];
	char	   *oids;
	const char *params[2];
	rd_kafka_topic_t *rkt;
	int			rc = 0;

	switch (pg_has_table_schema(r, sh->lead, err, sizeof(err)))
	{
		case -1:
			rlog(r->v, LOG_ERROR, "could not look up cdc_relay.table_schema(): %s", err);
			return -1;
		case 0:
			rlog(r->v, LOG_WARNING, "the cdc_relay extension has no table_schema() (older than 0.4.0): the "
				 "snapshot writes no table shapes to %s; fix: ALTER EXTENSION cdc_relay UPDATE", r->schemas_topic);
			return 0;
	}

	oids = table_oids_literal(sh);
	params[0] = oids;
	params[1] = sh->options;
	/* one per name: the first relid of each (the key the header names) */
	res = pg_exec(r, sh->lead,
				  "SELECT pg_catalog.min(t.relid)::pg_catalog.text, s.shape"
				  " FROM pg_catalog.unnest($1::pg_catalog.oid[]) AS t(relid),"
				  " LATERAL (SELECT cdc_relay.table_schema(t.relid::pg_catalog.regclass,"
				  "  $2::pg_catalog.text[]) AS shape) s GROUP BY s.shape ORDER BY 1", 2, params);
	free(oids);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		rlog(r->v, LOG_ERROR, "could not read the captured tables' shapes: %s",
			 pg_res_error(r, sh->lead, res, err, sizeof(err)));
		PQclear(res);
		return -1;
	}
	rkt = produce_topic(r, r->schemas_topic);
	for (int i = 0; i < PQntuples(res) && rc == 0; i++)
	{
		const char *value = PQgetvalue(res, i, 1);
		char	   *key = NULL;
		char	   *disp = NULL;
		bool		good = schema_shape_key(value, &key, &disp);
		MsgMeta		m = {.kind = MSG_SCHEMA_SNAPSHOT, .table = disp, .commit_lsn = sh->lsn,
		.relid = PQgetvalue(res, i, 0)};
		rd_kafka_resp_err_t e;

		if (!good)
		{
			rlog(r->v, LOG_ERROR, "unexpected result of cdc_relay.table_schema(): %.200s", value);
			rc = -1;
		}
		else
		{
			atomic_fetch_add(&r->snap_pending, 1);
			e = produce_send(r, rkt, RD_KAFKA_PARTITION_UA, key, strlen(key), value, strlen(value), &m,
							 NULL, produce_wait_sleep, &sh->abort);
			if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
				atomic_fetch_add_explicit(&r->metrics->schema_events, 1, memory_order_relaxed);
			else
			{
				atomic_fetch_sub(&r->snap_pending, 1);
				kafka_reject(r, e, r->schemas_topic, disp, key, strlen(key), strlen(key) + strlen(value));
				rc = -1;
			}
		}
		free(key);
		free(disp);
	}
	PQclear(res);
	return rc;
}

/*
 * The COPY of a table ended (len: copy_next()'s last return): its result.
 * False on error (recorded) or a stop.
 */
static bool
copy_finish(SnapShared *sh, PGconn *conn, SnapTable *t, int len)
{
	Relay	   *r = sh->r;
	PGresult   *res;
	char		err[500];
	bool		ok = true;

	if (len == -3)
	{
		/*
		 * The snapshot is over (a failure, or a stop): the caller closes the
		 * connection, which ends the COPY on the server; reading the rest of
		 * it could wait for a server that no longer answers.
		 */
		return false;
	}
	if (len == -2)
	{
		worker_fail(sh, "could not read table %s: %s", t->regclass, pg_error(r, conn, err, sizeof(err)));
		return false;
	}
	res = PQgetResult(conn);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		worker_fail(sh, "could not read table %s: %s", t->regclass, pg_res_error(r, conn, res, err, sizeof(err)));
		ok = false;
	}
	PQclear(res);
	while ((res = PQgetResult(conn)) != NULL)
		PQclear(res);
	return ok;
}

/* Read one table and produce its rows.  False on error (recorded) or a stop. */
static bool
copy_table(SnapShared *sh, PGconn *conn, SnapTable *t)
{
	char	   *buf = NULL;
	int			len;
	uint64_t	n = 0,
				counted = 0,	/* rows added to t->mt */
				bytes = 0;		/* bytes not yet added */

#define PUBLISH_METRICS() do { \
		atomic_fetch_add_explicit(&t->mt->snapshot_rows, n - counted, memory_order_relaxed); \
		atomic_fetch_add_explicit(&t->mt->bytes, bytes, memory_order_relaxed); \
		counted = n; \
		bytes = 0; \
	} while (0)

	if (!copy_start(sh, conn, t))
		return false;
	while ((len = copy_next(sh, conn, &buf)) > 0)
	{
		char	   *key,
				   *value;
		size_t		keylen,
					vallen;
		int			got = copy_parse_row(buf, len, &key, &keylen, &value, &vallen);
		bool		ok = got >= 0;

		if (got < 0)
			worker_fail(sh, "malformed snapshot row from %s", t->regclass);
		else if (got > 0 && (ok = produce_row(sh, t, key, keylen, value, vallen, n + 1)))
		{
			n++;
			bytes += (keylen == 4 && memcmp(key, "null", 4) == 0 ? 0 : keylen) + vallen;
		}
		PQfreemem(buf);
		if (!ok)
		{
			atomic_store(&t->rows, n);
			PUBLISH_METRICS();
			return false;
		}
		if ((n & 1023) == 0)
		{
			atomic_store(&t->rows, n);
			PUBLISH_METRICS();
			if (atomic_load(&sh->abort))
				return false;
		}
	}
	atomic_store(&t->rows, n);
	PUBLISH_METRICS();
#undef PUBLISH_METRICS
	return copy_finish(sh, conn, t, len);
}

/* A reader: take tables from the shared list until none is left or the snapshot aborts. */
static void *
worker_main(void *arg)
{
	SnapJob    *job = arg;
	SnapShared *sh = job->sh;

	while (!atomic_load(&sh->abort))
	{
		SnapTable  *t;

		pthread_mutex_lock(&sh->lock);
		t = sh->next < sh->ntables ? &sh->tables[sh->next++] : NULL;
		pthread_mutex_unlock(&sh->lock);
		if (t == NULL)
			break;
		t->started_ms = now_ms();
		atomic_store(&t->state, 1);
		if (!copy_table(sh, job->conn, t))
			break;
		t->finished_ms = now_ms();
		atomic_store(&t->state, 2);
		atomic_fetch_add_explicit(&sh->r->metrics->snapshot_tables_done, 1, memory_order_relaxed);
	}
	return NULL;
}

static int
cmp_pages_desc(const void *a, const void *b)
{
	const SnapTable *x = a,
			   *y = b;

	return (x->relpages < y->relpages) - (x->relpages > y->relpages);
}

/* sh->lock_sql: one LOCK of every listed table (quoted, qualified names). */
static void
build_lock_sql(SnapShared *sh)
{
	size_t		len = 64;
	char	   *p;

	for (int i = 0; i < sh->ntables; i++)
		len += strlen(sh->tables[i].regclass) + 2;
	sh->lock_sql = malloc(len);
	if (sh->lock_sql == NULL)
		relay_out_of_memory();
	p = sh->lock_sql;
	p += sprintf(p, "LOCK TABLE ONLY ");
	for (int i = 0; i < sh->ntables; i++)
		p += sprintf(p, "%s%s", i > 0 ? ", " : "", sh->tables[i].regclass);
	strcpy(p, " IN ACCESS SHARE MODE");
}

static const char *
val_or(const PGresult *res, int row, int col, const char *dflt)
{
	return PQgetisnull(res, row, col) ? dflt : PQgetvalue(res, row, col);
}

/*
 * Log what the lead's LOCK has been waiting for, looked up on a short-lived
 * connection of its own: the table, and the server process in the way (one
 * that holds a conflicting lock, or waits for one ahead of the snapshot).
 */
static void
report_lock_wait(SnapShared *sh, int64_t waited_ms)
{
	Relay	   *r = sh->r;
	int			waited = (int) (waited_ms / 1000);
	PGconn	   *conn = pg_connect(r, false);
	PGresult   *res = NULL;
	char		pid[16];
	const char *params[1] = {pid};

	snprintf(pid, sizeof(pid), "%d", PQbackendPID(sh->lead));
	if (conn != NULL)
	{
		res = pg_exec(r, conn,
						   "SELECT l.relation::pg_catalog.regclass::pg_catalog.text, a.pid,"
						   " a.usename, a.application_name, a.state,"
						   " pg_catalog.date_part('epoch', pg_catalog.now() OPERATOR(pg_catalog.-) a.xact_start)"
						   "::pg_catalog.int8"
						   " FROM pg_catalog.pg_locks l"
						   " LEFT JOIN pg_catalog.pg_stat_activity a"
						   " ON a.pid OPERATOR(pg_catalog.=) ANY (pg_catalog.pg_blocking_pids(l.pid))"
						   " WHERE l.pid OPERATOR(pg_catalog.=) $1::pg_catalog.int4 AND NOT l.granted"
						   " AND l.locktype OPERATOR(pg_catalog.=) 'relation'"
						   " ORDER BY a.xact_start LIMIT 1",
						   1, params);
	}
	if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
		!PQgetisnull(res, 0, 1))
		rlog(r->v, LOG_WARNING, "snapshot: waiting %d s for a lock on table %s: server process %s "
			 "(user \"%s\", application \"%s\", %s, transaction open for %s s) holds or waits for a "
			 "conflicting lock (a concurrent DDL or LOCK TABLE); the snapshot starts when that "
			 "transaction ends", waited, val_or(res, 0, 0, "?"), PQgetvalue(res, 0, 1),
			 val_or(res, 0, 2, "?"), val_or(res, 0, 3, "?"), val_or(res, 0, 4, "state unknown"),
			 val_or(res, 0, 5, "?"));
	else if (res != NULL && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		rlog(r->v, LOG_WARNING, "snapshot: waiting %d s for a lock on table %s (a concurrent DDL holds "
			 "one); the snapshot starts when that transaction ends", waited, val_or(res, 0, 0, "?"));
	else
		rlog(r->v, LOG_WARNING, "snapshot: waiting %d s for a lock on the captured tables (a concurrent "
			 "DDL holds one); the snapshot starts when that transaction ends", waited);
	PQclear(res);
	PQfinish(conn);
}

/*
 * Run sh->lock_sql on the lead connection and wait as long as it takes,
 * logging the wait after LOCK_WAIT_REPORT_MS and every LOCK_WAIT_REPEAT_MS;
 * a stop request cancels it (*stopped).  Returns the LOCK's result, which the
 * caller clears (NULL only when it could not even be sent).
 */
static PGresult *
lock_tables(SnapShared *sh, bool *stopped)
{
	Relay	   *r = sh->r;
	PGconn	   *conn = sh->lead;
	int64_t		start = now_ms(),
				next_report = start + LOCK_WAIT_REPORT_MS;
	bool		reported = false;
	PGresult   *res,
			   *last = NULL;

	*stopped = false;
	if (!PQsendQuery(conn, sh->lock_sql))
		return NULL;
	while (PQisBusy(conn))
	{
		struct pollfd pfd;

		pfd.fd = PQsocket(conn);
		pfd.events = POLLIN;
		pfd.revents = 0;
		if (poll(&pfd, 1, 250) > 0 && !PQconsumeInput(conn))
			break;				/* the connection broke: PQgetResult says how */
		if (*r->stop && !*stopped)
		{
			PGcancel   *c = PQgetCancel(conn);
			char		err[256];

			*stopped = true;
			if (c != NULL)
			{
				PQcancel(c, err, sizeof(err));
				PQfreeCancel(c);
			}
		}
		if (!*stopped && now_ms() >= next_report)
		{
			report_lock_wait(sh, now_ms() - start);
			reported = true;
			next_report = now_ms() + LOCK_WAIT_REPEAT_MS;
		}
	}
	while ((res = PQgetResult(conn)) != NULL)
	{
		PQclear(last);
		last = res;
	}
	if (reported && PQresultStatus(last) == PGRES_COMMAND_OK)
		rlog(r->v, LOG_INFO, "snapshot: got the lock on the captured tables after %.0f s",
			 (double) (now_ms() - start) / 1000.0);
	return last;
}

/*
 * The LOCK failed because a listed name no longer resolves (SQLSTATE 42P01):
 * say which tables were dropped or renamed since they were listed.  The lead's
 * transaction is rolled back (it is aborted anyway).  Returns SNAPSHOT_RETAKE.
 */
static int
report_vanished(SnapShared *sh, const char *lock_error)
{
	Relay	   *r = sh->r;
	int			found = 0;

	exec_ok(sh->r, sh->lead, "ROLLBACK");
	for (int i = 0; i < sh->ntables; i++)
	{
		SnapTable  *t = &sh->tables[i];
		const char *params[1] = {t->regclass};
		PGresult   *res = pg_exec(sh->r, sh->lead,
									   "SELECT pg_catalog.to_regclass($1::pg_catalog.text)"
									   "::pg_catalog.oid::pg_catalog.text", 1, params);

		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		{
			if (PQgetisnull(res, 0, 0))
			{
				rlog(r->v, LOG_WARNING, "table %s was dropped (or renamed) after the snapshot was exported",
					 t->regclass);
				found++;
			}
			else if (strcmp(PQgetvalue(res, 0, 0), t->relid) != 0)
			{
				rlog(r->v, LOG_WARNING, "table %s was renamed or replaced after the snapshot was exported",
					 t->regclass);
				found++;
			}
		}
		PQclear(res);
	}
	if (found == 0)
		rlog(r->v, LOG_WARNING, "a captured table was dropped or renamed after the snapshot was exported (%s)",
			 lock_error);
	return SNAPSHOT_RETAKE;
}

/*
 * After the lock: was any listed table rewritten, dropped or replaced since
 * the snapshot was exported?  The snapshot's pg_class row (a plain MVCC read)
 * holds the relfilenode the exported snapshot can read; pg_relation_filenode()
 * reads the catalog cache, which taking the lock brought up to date.  A
 * table whose oid we do not hold a lock on was renamed or replaced between
 * the listing and the lock (the LOCK took whatever the name meant by then).
 * Logs a WARNING per such table; returns 0, SNAPSHOT_RETAKE, or -1 (logged).
 */
static int
check_unchanged(SnapShared *sh)
{
	Relay	   *r = sh->r;
	char	   *oids;
	const char *params[1];
	PGresult   *res;
	int			changed = 0;
	char		err[600];

	oids = table_oids_literal(sh);
	params[0] = oids;
	res = pg_exec(sh->r, sh->lead,
					   "SELECT t.relid::pg_catalog.text, c.relfilenode::pg_catalog.text,"
					   " pg_catalog.pg_relation_filenode(t.relid)::pg_catalog.text,"
					   " EXISTS (SELECT FROM pg_catalog.pg_locks l"
					   "  WHERE l.locktype OPERATOR(pg_catalog.=) 'relation'"
					   "  AND l.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()"
					   "  AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d"
					   "   WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())"
					   "  AND l.relation OPERATOR(pg_catalog.=) t.relid AND l.granted)"
					   " FROM pg_catalog.unnest($1::pg_catalog.oid[]) WITH ORDINALITY AS t(relid, n)"
					   " LEFT JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.relid"
					   " ORDER BY t.n", 1, params);
	free(oids);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != sh->ntables)
	{
		rlog(r->v, LOG_ERROR, "could not check the captured tables for concurrent DDL: %s",
			 pg_res_error(r, sh->lead, res, err, sizeof(err)));
		PQclear(res);
		return -1;
	}
	for (int i = 0; i < sh->ntables; i++)
	{
		SnapTable  *t = &sh->tables[i];
		const char *then = val_or(res, i, 1, "");
		const char *now = val_or(res, i, 2, NULL);

		if (now == NULL)
			rlog(r->v, LOG_WARNING, "table %s was dropped after the snapshot was exported", t->regclass);
		else if (strcmp(PQgetvalue(res, i, 3), "t") != 0)
			rlog(r->v, LOG_WARNING, "table %s was renamed or replaced after the snapshot was exported",
				 t->regclass);
		else if (strcmp(then, now) != 0)
			rlog(r->v, LOG_WARNING, "table %s was rewritten or truncated (ALTER TABLE ... TYPE, TRUNCATE, "
				 "VACUUM FULL, CLUSTER) after the snapshot was exported", t->regclass);
		else
			continue;
		changed++;
	}
	PQclear(res);
	return changed > 0 ? SNAPSHOT_RETAKE : 0;
}

/*
 * Open the lead connection (sh->lead, which the caller closes on every path),
 * import the snapshot, list the tables to read, lock them all and check that
 * none was rewritten, dropped or replaced since the export.  Returns 0, -1
 * (logged; also when a stop request interrupted the lock), or
 * SNAPSHOT_RETAKE.
 */
static int
list_tables(SnapShared *sh)
{
	Relay	   *r = sh->r;
	PGresult   *res;
	const char *params[1] = {sh->options};
	char		err[600];
	bool		stopped,
				vanished = false;
	char		code[6];

	sh->lead = pg_connect(r, false);
	if (sh->lead == NULL)
		return -1;
	if (!import_snapshot(r, sh->lead, sh->snapshot_name))
	{
		rlog(r->v, LOG_ERROR, "could not import the exported snapshot: %s",
			 pg_error(r, sh->lead, err, sizeof(err)));
		return -1;
	}
	res = pg_exec(sh->r, sh->lead,
					   "SELECT relid::pg_catalog.oid::pg_catalog.text,"
					   " relid::pg_catalog.regclass::pg_catalog.text, schema_name, table_name,"
					   " reltuples, relpages FROM cdc_relay.snapshot_tables($1::pg_catalog.text[])", 1, params);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		rlog(r->v, LOG_ERROR, "could not list the tables to snapshot: %s",
			 pg_res_error(r, sh->lead, res, err, sizeof(err)));
		PQclear(res);
		return -1;
	}
	sh->ntables = PQntuples(res);
	sh->tables = calloc((size_t) sh->ntables + 1, sizeof(SnapTable));
	if (sh->tables == NULL)
		relay_out_of_memory();
	for (int i = 0; i < sh->ntables; i++)
	{
		SnapTable  *t = &sh->tables[i];
		char		topic[TOPIC_MAX_LEN + 1];

		t->relid = relay_strdup(PQgetvalue(res, i, 0));
		t->regclass = relay_strdup(PQgetvalue(res, i, 1));
		t->schema = relay_strdup(PQgetvalue(res, i, 2));
		t->table = relay_strdup(PQgetvalue(res, i, 3));
		t->reltuples = atof(PQgetvalue(res, i, 4));
		t->relpages = atoll(PQgetvalue(res, i, 5));
		t->header_table = table_display_name(t->schema, t->table);
		if (t->header_table == NULL || (t->mt = metrics_table(r->metrics, t->header_table)) == NULL)
			relay_out_of_memory();
		topic_for_table(r->cfg->topic_prefix, t->schema, strlen(t->schema),
						t->table, strlen(t->table), topic);
		/* a table the start did not list (created since) gets its topic first */
		if (admin_ensure_table(r, topic, t->schema, t->table, t->header_table, -1) != 0)
		{
			PQclear(res);
			return -1;
		}
		t->rkt = produce_topic(r, topic);
	}
	PQclear(res);
	qsort(sh->tables, (size_t) sh->ntables, sizeof(SnapTable), cmp_pages_desc);
	if (sh->ntables == 0)
		return 0;

	/*
	 * regclass prints the bare oid of a relation the catalog no longer has:
	 * dropped after the export (names always start with a letter, _ or ").
	 */
	for (int i = 0; i < sh->ntables; i++)
		if (sh->tables[i].regclass[0] >= '0' && sh->tables[i].regclass[0] <= '9')
		{
			rlog(r->v, LOG_WARNING, "table %s was dropped after the snapshot was exported",
				 sh->tables[i].header_table);
			vanished = true;
		}
	if (vanished)
		return SNAPSHOT_RETAKE;

	build_lock_sql(sh);
	res = lock_tables(sh, &stopped);
	if (stopped)
	{
		PQclear(res);
		return -1;
	}
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		snprintf(code, sizeof(code), "%s", sqlstate(res));
		pg_res_error(r, sh->lead, res, err, sizeof(err));
		PQclear(res);
		if (strcmp(code, "42P01") == 0)
			return report_vanished(sh, err);
		if (strcmp(code, "40P01") == 0)
		{
			rlog(r->v, LOG_WARNING, "snapshot: locking the captured tables ran into a deadlock with a "
				 "concurrent DDL (%s)", err);
			return SNAPSHOT_RETAKE;
		}
		rlog(r->v, LOG_ERROR, "could not lock the %d captured tables: %s%s", sh->ntables, err,
			 strcmp(code, "53200") == 0 ?
			 "; fix: raise max_locks_per_transaction (the snapshot holds a lock on every captured "
			 "table, once per snapshot job) and restart the server" : "");
		return -1;
	}
	PQclear(res);
	return check_unchanged(sh);
}

/*
 * Open reader number id of njobs (2 and up; the lead is the first): a
 * connection of its own in the imported snapshot that locks every table,
 * NOWAIT, before it reads any.  Returns the connection; NULL with *fatal
 * false when the tables cannot all be locked at once (this reader steps
 * aside; logged), NULL with *fatal true on any other error (logged).
 */
static PGconn *
open_job(SnapShared *sh, int id, int njobs, bool *fatal)
{
	Relay	   *r = sh->r;
	PGconn	   *conn = pg_connect(r, false);
	PGresult   *res;
	char	   *sql;
	char		err[600];
	const char *code;

	*fatal = true;
	if (conn == NULL)
	{
		rlog(r->v, LOG_ERROR, "snapshot job %d could not connect (see above)", id);
		return NULL;
	}
	if (!import_snapshot(r, conn, sh->snapshot_name))
	{
		rlog(r->v, LOG_ERROR, "could not import the exported snapshot: %s",
			 pg_error(r, conn, err, sizeof(err)));
		PQfinish(conn);
		return NULL;
	}
	sql = malloc(strlen(sh->lock_sql) + 8);
	if (sql == NULL)
		relay_out_of_memory();
	sprintf(sql, "%s NOWAIT", sh->lock_sql);
	res = pg_exec(sh->r, conn, sql, 0, NULL);
	free(sql);
	if (PQresultStatus(res) == PGRES_COMMAND_OK)
	{
		PQclear(res);
		return conn;
	}
	code = sqlstate(res);
	pg_res_error(r, conn, res, err, sizeof(err));
	if (strcmp(code, "55P03") == 0)
	{
		rlog(r->v, LOG_WARNING, "snapshot: job %d of %d reads nothing: %s, because a concurrent DDL "
			 "is waiting for a lock on that table behind the snapshot's; the other jobs read every table",
			 id, njobs, err);
		*fatal = false;
	}
	else if (strcmp(code, "53200") == 0)
	{
		rlog(r->v, LOG_WARNING, "snapshot: job %d of %d reads nothing: %s; the other jobs read every "
			 "table; fix: raise max_locks_per_transaction (each snapshot job holds a lock on every "
			 "captured table) or use fewer --snapshot-jobs", id, njobs, err);
		*fatal = false;
	}
	else
		rlog(r->v, LOG_ERROR, "snapshot job %d could not lock the captured tables: %s", id, err);
	PQclear(res);
	PQfinish(conn);
	return NULL;
}

static void
format_eta(char *buf, size_t len, double secs)
{
	if (secs < 0 || secs > 360000)
		snprintf(buf, len, "?");
	else if (secs >= 3600)
		snprintf(buf, len, "%dh%02dm", (int) secs / 3600, ((int) secs % 3600) / 60);
	else if (secs >= 60)
		snprintf(buf, len, "%dm%02ds", (int) secs / 60, (int) secs % 60);
	else
		snprintf(buf, len, "%ds", (int) secs);
}

/*
 * One progress report: a live line on a terminal, a log line otherwise.
 * Tables that finished since the last report get a line of their own.
 */
static void
progress(SnapShared *sh, int64_t start_ms, bool tty, bool *reported_done)
{
	Relay	   *r = sh->r;
	uint64_t	done_rows = 0;
	double		est_rows = 0;
	int			done_tables = 0;
	double		elapsed = (double) (now_ms() - start_ms) / 1000.0;
	char		line[1024];
	size_t		n;
	char		eta[32];
	double		rate,
				pct;

	for (int i = 0; i < sh->ntables; i++)
	{
		SnapTable  *t = &sh->tables[i];
		uint64_t	rows = atomic_load(&t->rows);
		int			st = atomic_load(&t->state);

		done_rows += rows;
		est_rows += st == 2 ? (double) rows : (t->reltuples > (double) rows ? t->reltuples : (double) rows);
		if (st == 2)
		{
			done_tables++;
			if (!reported_done[i])
			{
				double		secs = (double) (t->finished_ms - t->started_ms) / 1000.0;

				reported_done[i] = true;
				if (tty)
					fputs("\r\033[K", stderr);
				rlog(r->v, LOG_INFO, "snapshot: %s done, %llu rows in %.1f s (%.0f rows/s)",
					 t->header_table, (unsigned long long) rows, secs,
					 secs > 0 ? (double) rows / secs : (double) rows);
			}
		}
	}
	rate = elapsed > 0 ? (double) done_rows / elapsed : 0;
	pct = est_rows > 0 ? 100.0 * (double) done_rows / est_rows : 100.0;
	format_eta(eta, sizeof(eta), rate > 0 ? (est_rows - (double) done_rows) / rate : -1);
	n = (size_t) snprintf(line, sizeof(line), "snapshot: %d/%d tables, %llu of ~%.0f rows (%.0f%%), %.0f rows/s, ETA %s",
						  done_tables, sh->ntables, (unsigned long long) done_rows, est_rows,
						  pct > 100 ? 100 : pct, rate, eta);
	for (int i = 0; i < sh->ntables && n < sizeof(line) - 80; i++)
	{
		SnapTable  *t = &sh->tables[i];

		if (atomic_load(&t->state) == 1)
		{
			uint64_t	rows = atomic_load(&t->rows);
			double		est = t->reltuples > (double) rows ? t->reltuples : (double) rows;

			n += (size_t) snprintf(line + n, sizeof(line) - n, "; %.60s %llu (%.0f%%)", t->header_table,
								   (unsigned long long) rows, est > 0 ? 100.0 * (double) rows / est : 0.0);
		}
	}
	if (tty)
	{
		if (r->v >= LOG_INFO)
			fprintf(stderr, "\r\033[K%.*s", 200, line);
	}
	else
		rlog(r->v, LOG_INFO, "%s", line);
}

/*
 * Exactly-once: commit the Kafka transaction that holds the rows produced so
 * far (readers wait meanwhile) and begin the next: a read_committed consumer
 * sees the snapshot in such whole batches.  0, or -1 (the snapshot fails).
 */
static int
commit_batch(SnapShared *sh)
{
	Relay	   *r = sh->r;
	TxnResult	res = txn_commit(r, NULL, NULL, 500);

	if (res != TXN_OK)
	{
		sh->txn_aborted = res == TXN_ABORT;
		atomic_store(&sh->abort, 1);
		return -1;
	}
	/* no reader produces until the next begin: the count is exact */
	rlog(r->v, LOG_INFO, "snapshot batch committed: %llu rows",
		 (unsigned long long) atomic_load(&sh->produced));
	if (txn_begin(r) != 0)
	{
		atomic_store(&sh->abort, 1);
		return -1;
	}
	return 0;
}

int
snapshot_run(Relay *r, const char *snapshot_name, uint64_t consistent_point,
			 uint64_t *rows_out, int *tables_out)
{
	SnapShared	sh;
	SnapJob    *jobs = NULL;
	int			njobs = 0,
				want;
	pthread_t  *threads = NULL;
	int			nthreads = 0;
	int			rc = 0;
	int64_t		start = now_ms(),
				last_report = start;
	bool		tty = isatty(STDERR_FILENO);
	bool	   *reported = NULL;
	uint64_t	total = 0;

	memset(&sh, 0, sizeof(sh));
	sh.r = r;
	sh.snapshot_name = snapshot_name;
	lsn_str(consistent_point, sh.lsn);
	sh.options = pg_plugin_options_array(r);
	pthread_mutex_init(&sh.lock, NULL);
	atomic_store(&r->snap_failed, 0);
	*rows_out = 0;
	*tables_out = 0;

	atomic_store(&r->metrics->snapshot_tables_done, 0);
	atomic_store(&r->metrics->snapshot_tables_total, 0);
	rc = list_tables(&sh);
	atomic_store(&r->metrics->snapshot_tables_total, sh.ntables);
	if (rc != 0)
	{
		if (rc == -1 && *r->stop)
			rlog(r->v, LOG_WARNING, "snapshot interrupted; it will be taken again at the next start");
		goto done;
	}

	/* the lead reads too; the other jobs join if they can lock every table */
	want = sh.ntables < r->cfg->snapshot_jobs ? sh.ntables : r->cfg->snapshot_jobs;
	jobs = calloc((size_t) want + 1, sizeof(SnapJob));
	threads = calloc((size_t) want + 1, sizeof(pthread_t));
	reported = calloc((size_t) sh.ntables + 1, sizeof(bool));
	if (jobs == NULL || threads == NULL || reported == NULL)
		relay_out_of_memory();
	if (want > 0)
	{
		jobs[njobs].sh = &sh;
		jobs[njobs++].conn = sh.lead;
	}
	for (int id = 2; id <= want && !*r->stop; id++)
	{
		bool		fatal;
		PGconn	   *conn = open_job(&sh, id, want, &fatal);

		if (conn != NULL)
		{
			jobs[njobs].sh = &sh;
			jobs[njobs++].conn = conn;
		}
		else if (fatal)
		{
			rc = -1;
			goto done;
		}
	}
	if (*r->stop)
	{
		rlog(r->v, LOG_WARNING, "snapshot interrupted; it will be taken again at the next start");
		rc = -1;
		goto done;
	}
	rlog(r->v, LOG_INFO, "snapshot at %s: %d tables, %d parallel jobs", sh.lsn, sh.ntables, njobs);
	start = last_report = now_ms();	/* rates count reading, not the lock wait */
	if (txn_begin(r) != 0 || snapshot_schemas(&sh) != 0)
	{
		rc = -1;
		goto done;
	}
	for (int i = 0; i < njobs; i++)
	{
		if (pthread_create(&threads[i], NULL, worker_main, &jobs[i]) != 0)
		{
			rlog(r->v, LOG_ERROR, "could not start a snapshot thread");
			atomic_store(&sh.abort, 1);
			break;
		}
		nthreads++;
	}

	/* serve delivery reports and report progress until every row is delivered */
	for (;;)
	{
		bool		readers_done;

		rd_kafka_poll(r->rk, 100);
		relay_check_signals(r);
		pthread_mutex_lock(&sh.lock);
		readers_done = sh.next >= sh.ntables;
		pthread_mutex_unlock(&sh.lock);
		if (readers_done)
		{
			readers_done = true;
			for (int i = 0; i < sh.ntables; i++)
				if (atomic_load(&sh.tables[i].state) != 2)
					readers_done = false;
		}
		if (*r->stop || r->fatal_set || atomic_load(&r->snap_failed) > 0)
			atomic_store(&sh.abort, 1);
		if (atomic_load(&sh.abort))
			break;
		/* the last batch stays open: the "complete" state record commits it */
		if (readers_done && atomic_load(&r->snap_pending) == 0)
			break;
		if (r->eos && !readers_done &&
			(atomic_load(&r->txn_messages) >= (uint_fast64_t) r->cfg->txn_max_messages ||
			 now_ms() - r->txn_started_ms >= 1000) &&
			commit_batch(&sh) != 0)
			break;
		if (now_ms() - last_report >= (tty ? 500 : 10000))
		{
			progress(&sh, start, tty, reported);
			last_report = now_ms();
		}
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	progress(&sh, start, tty, reported);
	if (tty && r->v >= LOG_INFO)
		fputs("\n", stderr);

	for (int i = 0; i < sh.ntables; i++)
		total += atomic_load(&sh.tables[i].rows);
	if (atomic_load(&sh.abort) || r->fatal_set || sh.txn_aborted)
	{
		if (r->eos && r->txn_open)
			txn_abort(r);		/* consumers see whole committed batches only */
		if (sh.error[0])
			rlog(r->v, LOG_ERROR, "snapshot failed: %s", sh.error);
		else if (sh.txn_aborted)
			rlog(r->v, LOG_ERROR, "snapshot failed: Kafka transaction aborted: %s; it will be taken again "
				 "at the next start", r->txn_abort_reason);
		else if (r->fatal_set)
			rlog(r->v, LOG_ERROR, "snapshot failed: fatal Kafka error: %s", r->fatal);
		else if (atomic_load(&r->snap_failed) > 0)
			rlog(r->v, LOG_ERROR, "snapshot failed: %llu rows could not be delivered (%s)",
				 (unsigned long long) atomic_load(&r->snap_failed), r->last_delivery_error);
		else
			rlog(r->v, LOG_WARNING, "snapshot interrupted; it will be taken again at the next start");
		rc = -1;
	}
	else
	{
		double		secs = (double) (now_ms() - start) / 1000.0;

		rlog(r->v, LOG_INFO, "snapshot complete: %llu rows from %d tables in %.1f s (%.0f rows/s)",
			 (unsigned long long) total, sh.ntables, secs, secs > 0 ? (double) total / secs : 0.0);
	}
	*rows_out = total;
	*tables_out = sh.ntables;

done:

	/*
	 * Only now, with every reader done, end the transactions: their locks
	 * kept the captured tables from being rewritten or dropped until here.
	 */
	for (int i = 0; i < njobs; i++)
		if (jobs[i].conn != sh.lead)
			PQfinish(jobs[i].conn);
	if (sh.lead != NULL)
		PQfinish(sh.lead);
	free(jobs);
	free(threads);
	free(reported);
	for (int i = 0; i < sh.ntables; i++)
	{
		SnapTable  *t = &sh.tables[i];

		free(t->relid);
		free(t->regclass);
		free(t->schema);
		free(t->table);
		free(t->header_table);
	}
	free(sh.tables);
	free(sh.lock_sql);
	free(sh.options);
	pthread_mutex_destroy(&sh.lock);
	return rc;
}
