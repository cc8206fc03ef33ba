/*
 * online.c: online snapshots of chosen tables while the relay streams
 * (after Netflix's DBLog, with the PostgreSQL visibility fix).
 *
 * A job starts when the stream meets the transactional message
 * cdc_relay.request_snapshot() wrote (at its commit's place in the WAL);
 * one job runs at a time, further requests wait in order.  A reader thread
 * with its own connection reads the table in key order, a chunk of
 * --snapshot-chunk-rows rows at a time (keyset pagination: key > the last key
 * of the chunk before, AND the job's "where"), each chunk in a READ ONLY
 * REPEATABLE READ transaction whose snapshot pg_current_snapshot() describes
 * (xmin, xmax, xip).  After the chunk's transaction ended it writes, in a
 * small transaction of its own, the job row's progress and a transactional
 * cdc_relay.watermark message (job, chunk, generation), then waits until the
 * stream has emitted the chunk: memory holds one chunk.
 *
 * The stream, from the job's start, tracks for every change of the job's
 * table the key and the xid of the transaction that made it (both keys of an
 * update that changed the key).  At the watermark of chunk k it drops from
 * the chunk every row whose key a transaction NOT visible to the chunk's
 * snapshot touched (xid >= xmax, or in xip; 32-bit xids compared modulo 2^32
 * as TransactionIdPrecedes does), and emits the rest as "r" events (headers
 * and value as the initial snapshot's, Kafka key the row's key) in the
 * watermark transaction's ring entry: the stream's version of a row wins,
 * and a chunk row is confirmed (and, under exactly-once, committed to Kafka)
 * with the watermark transaction.  Then tracked keys whose transaction the
 * snapshot sees are forgotten.
 *
 * The rows' shape: the plugin writes a schema event only before a change, so
 * a column added with no row changed since (or a table unchanged in this
 * decoding session) would leave chunk rows with no schema event of their
 * shape.  So each chunk's transaction also reads cdc_relay.table_schema(),
 * and the stream produces it to <prefix>.schemas before the chunk's first
 * row whenever it is not the one the job produced last.  The watermark
 * transaction locks the table and checks the shape is still the chunk's (a
 * DDL in between: the chunk is read again), so the chunk's shape is the one
 * in force at the watermark and never follows a newer one of the stream.
 *
 * Why the xids and not just "between the watermarks": in PostgreSQL a
 * transaction whose commit record precedes a watermark in the WAL can still
 * be invisible to a snapshot taken after it (it had not yet left the
 * ProcArray: it is in the snapshot's xip).  The chunk then has the row as it
 * was before that transaction, while the stream already emitted the
 * transaction's change before the watermark: emitting the chunk row would
 * bring a stale row back.  The xid rule catches it, and tracking from the
 * job's start (not from a low watermark) covers every transaction the
 * stream emits before the watermark.  A transaction invisible to the
 * snapshot that commits after the watermark is emitted after the chunk
 * anyway.  What tracking cannot see is a transaction whose commit the stream
 * passed before the job started but that was still in the ProcArray when a
 * chunk's snapshot was taken: so before its first chunk the reader takes
 * the xip of a snapshot, keeps the xids pg_xact_status() already calls
 * committed, and waits until every one of them is visible to a new
 * snapshot.  The residual assumption: a transaction whose commit record the
 * stream had decoded before the job started has its commit in pg_xact by the
 * time the reader checks (the commit record is flushed before pg_xact is
 * set, so a backend stalled between the two for as long as the relay takes
 * to start a reader and connect would escape the check).
 *
 * Progress: a chunk counts as delivered when the end LSN of its watermark
 * transaction is at or below the confirmed position of a state record
 * (state.c writes online_state_json() into each); a restart resumes after
 * the last delivered chunk's last key, so a delivered chunk is never read
 * again (chunks emitted after the last checkpoint, about a second's worth,
 * are read and emitted again; under exactly-once they were never visible).  When the last chunk
 * (fewer rows than the chunk size) is delivered the job is done.  The job
 * row in cdc_relay.snapshot_jobs shows progress as read (the relay needs
 * UPDATE on it; without it, it warns once and goes on: the state record,
 * `cdc-relay status` and the metrics still show progress).
 */
#include "relay.h"
#include "online.h"
#include "online_keys.h"
#include "topic.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- jobs and chunks ------------------------------------------------------------ */

typedef struct Job
{
	int64_t		id;
	json_t	   *request;		/* the request message's content */
	const char *relid;			/* in request */
	const char *table;			/* quoted qualified name, in request */
	const char *ident;			/* "schema":S,"table":T, in request */
	size_t		identlen;
	const char *where;			/* in request, or NULL */
	char	   *display;		/* schema.table for logs and metrics */
	MetricsTable *mt;

	/* emitted (in a watermark transaction the stream passed) */
	uint64_t	chunks;
	uint64_t	rows;
	json_t	   *last_key;		/* JSON array of the key's text values; NULL: none yet */
	bool		final;			/* the last chunk was emitted */
	uint64_t	dropped;

	/* delivered (confirmed by a state record) */
	uint64_t	d_chunks;
	uint64_t	d_rows;
	json_t	   *d_last_key;
	bool		d_final;
	bool		poisoned;		/* a change of the table without its key was seen */
	char	   *shape;			/* the table's shape this process last produced for a chunk, or NULL */
	bool		unsupported;	/* a partition under --partition-root */
	bool		forged;			/* its request is not one request_snapshot() recorded
								 * (set by the reader under Online.lock) */
} Job;

typedef struct Chunk
{
	uint64_t	number;			/* 1, 2, ... in the job */
	uint64_t	gen;			/* Online.gen when read */
	int			nrows;
	char	  **keys;
	size_t	   *keylens;
	char	  **vals;
	size_t	   *vallens;
	json_t	   *last_key;		/* of the last row read; NULL: no row */
	bool		final;
	Snap		snap;
	char	   *shape;			/* cdc_relay.table_schema() in the chunk's transaction; NULL: none */
} Chunk;

/* Progress of a watermark transaction, delivered once Kafka confirms end_lsn. */
typedef struct Delivered
{
	uint64_t	end_lsn;
	uint64_t	chunks;
	uint64_t	rows;
	json_t	   *last_key;
	bool		final;
} Delivered;

typedef enum ReaderPhase
{
	READER_IDLE,				/* no reader thread */
	READER_READING,
	READER_READY,				/* chunk buffered, watermark written */
	READER_CONSUMED,			/* the stream emitted it: read the next */
	READER_DONE,				/* the last chunk was consumed: the thread ends */
	READER_FAILED				/* error[] says why: the thread ends */
} ReaderPhase;

struct Online
{
	Relay	   *r;
	Job		   *job;			/* the active job, or NULL */
	Job		  **queue;			/* requested, waiting, in order */
	int			nqueue;
	Tracked		tracked;
	bool		warned_update;	/* the UPDATE of the job row was refused (warned) */

	/* the watermark of the open transaction: its progress, once it commits */
	bool		wm_open;
	Delivered	wm;
	Delivered  *dq;				/* emitted, not yet confirmed, in commit order */
	int			ndq;

	/* shared with the reader thread (lock) */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t	thread;
	bool		thread_running;
	ReaderPhase phase;
	bool		stop;			/* the reader must end */
	PGcancel   *cancel;			/* the reader's connection's, while it has one */
	uint64_t	gen;			/* bumped by online_rewind: older watermarks are ignored */
	uint64_t	run_nonce;		/* this process's: watermarks of an earlier run are ignored */
	Chunk	   *chunk;			/* READER_READY */
	char		error[600];
	/* where the reader starts (set before it starts) */
	json_t	   *start_key;
	uint64_t	start_chunks;
	uint64_t	start_rows;
};

static void
chunk_free(Chunk *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < c->nrows; i++)
	{
		free(c->keys[i]);
		free(c->vals[i]);
	}
	free(c->keys);
	free(c->keylens);
	free(c->vals);
	free(c->vallens);
	json_decref(c->last_key);
	snap_free(&c->snap);
	free(c->shape);
	free(c);
}

static void
job_free(Job *j)
{
	if (j == NULL)
		return;
	json_decref(j->request);
	json_decref(j->last_key);
	json_decref(j->d_last_key);
	free(j->display);
	free(j->shape);
	free(j);
}

/* A job from its request message's content (a JSON object); NULL when malformed. */
static Job *
job_from_request(Online *o, json_t *req)
{
	Job		   *j;
	json_t	   *key = json_object_get(req, "key");
	const char *ident = json_string_value(json_object_get(req, "ident"));
	const char *table = json_string_value(json_object_get(req, "table"));
	json_t	   *where = json_object_get(req, "where");

	if (!json_is_integer(json_object_get(req, "job")) || !json_is_integer(json_object_get(req, "relid")) ||
		ident == NULL || table == NULL || !json_is_array(key) || json_array_size(key) == 0 ||
		!(json_is_null(where) || json_is_string(where) || where == NULL))
		return NULL;
	for (size_t i = 0; i < json_array_size(key); i++)
		if (!json_is_string(json_array_get(key, i)))
			return NULL;
	j = calloc(1, sizeof(Job));
	if (j == NULL)
		relay_out_of_memory();
	j->request = json_incref(req);
	j->id = (int64_t) json_integer_value(json_object_get(req, "job"));
	if (!json_is_string(json_object_get(req, "relid_text")))
	{
		char		buf[24];

		snprintf(buf, sizeof(buf), "%lld", (long long) json_integer_value(json_object_get(req, "relid")));
		json_object_set_new(req, "relid_text", json_string(buf));
	}
	j->relid = json_string_value(json_object_get(req, "relid_text"));
	j->table = table;
	j->ident = ident;
	j->identlen = strlen(ident);
	j->where = json_string_value(where);
	/* "schema":"s","table":"t" -> s.t as the relay's headers name tables */
	{
		json_error_t jerr;
		char	   *obj = malloc(j->identlen + 3);
		json_t	   *names;

		if (obj == NULL)
			relay_out_of_memory();
		snprintf(obj, j->identlen + 3, "{%s}", ident);
		names = json_loads(obj, 0, &jerr);
		free(obj);
		if (json_is_string(json_object_get(names, "schema")) && json_is_string(json_object_get(names, "table")))
			j->display = table_display_name(json_string_value(json_object_get(names, "schema")),
											json_string_value(json_object_get(names, "table")));
		json_decref(names);
		if (j->display == NULL)
		{
			job_free(j);
			return NULL;
		}
	}
	j->mt = metrics_table(o->r->metrics, j->display);
	if (j->mt == NULL)
		relay_out_of_memory();
	return j;
}

/* ---- the reader thread ---------------------------------------------------------- */

/* Run sql (no rows expected); false on failure, with the reason in err. */
static bool
reader_exec(Relay *r, PGconn *conn, const char *sql, int nparams, const char *const *params,
			char *err, size_t errlen)
{
	PGresult   *res = pg_exec(r, conn, sql, nparams, params);
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK || PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok)
		pg_res_error(r, conn, res, err, errlen);
	PQclear(res);
	return ok;
}

/*
 * Whether job j's request is one cdc_relay.request_snapshot() recorded: its
 * row in cdc_relay.snapshot_jobs names the same table and "where".  Anyone
 * may write a logical message with any prefix (pg_logical_emit_message is
 * PUBLIC), and the relay puts the table's name and the "where" into its SQL:
 * it acts only on what the function checked and recorded (as the table's
 * owner, which no other role can).  False, with the reason in err, if not.
 */
static bool
reader_check_request(Online *o, Job *j, PGconn *conn, char *err, size_t errlen)
{
	Relay	   *r = o->r;
	char		id[24];
	const char *params[1] = {id};
	PGresult   *res;
	bool		ok;

	snprintf(id, sizeof(id), "%lld", (long long) j->id);
	res = pg_exec(r, conn, "SELECT relid::pg_catalog.text, table_name, \"where\" FROM cdc_relay.snapshot_jobs"
				  " WHERE id OPERATOR(pg_catalog.=) $1::pg_catalog.int8", 1, params);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		pg_res_error(r, conn, res, err, errlen);
		PQclear(res);
		return false;
	}
	ok = PQntuples(res) == 1 && strcmp(PQgetvalue(res, 0, 0), j->relid) == 0 &&
		strcmp(PQgetvalue(res, 0, 1), j->table) == 0 &&
		(j->where == NULL ? PQgetisnull(res, 0, 2) :
		 !PQgetisnull(res, 0, 2) && strcmp(PQgetvalue(res, 0, 2), j->where) == 0);
	if (!ok)
	{
		/* not ours to mark failed: the row, if any, is another job's */
		pthread_mutex_lock(&o->lock);
		j->forged = true;
		pthread_mutex_unlock(&o->lock);
	}
	if (!ok)
		snprintf(err, errlen, "the request message does not match a job that cdc_relay.request_snapshot() "
				 "recorded in cdc_relay.snapshot_jobs (%s): ignored; request snapshots with "
				 "cdc_relay.request_snapshot() or cdc-relay snapshot",
				 PQntuples(res) == 1 ? "its row differs" : "no such row");
	PQclear(res);
	return ok;
}

/*
 * Before the first chunk: every transaction a snapshot still shows as
 * running although pg_xact says it committed (the stream may have passed
 * its commit before the job started, so nothing tracked it) must be visible
 * to the chunks' snapshots: wait until it is.  False on failure (err).
 */
static bool
reader_barrier(Online *o, PGconn *conn, char *err, size_t errlen)
{
	Relay	   *r = o->r;
	PGresult   *res = pg_exec(r, conn,
							  "SELECT pg_catalog.array_agg(x)::pg_catalog.text"
							  " FROM pg_catalog.pg_snapshot_xip(pg_catalog.pg_current_snapshot()) x"
							  " WHERE pg_catalog.pg_xact_status(x) OPERATOR(pg_catalog.=) 'committed'", 0, NULL);
	char	   *xids = NULL;
	bool		ok = true;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		pg_res_error(r, conn, res, err, errlen);
		PQclear(res);
		return false;
	}
	if (!PQgetisnull(res, 0, 0))
		xids = strdup(PQgetvalue(res, 0, 0));
	PQclear(res);
	if (xids == NULL)
		return true;
	rlog(r->v, LOG_DEBUG, "online snapshot: waiting until transactions %s are visible", xids);
	for (int i = 0; i < 3000 && ok; i++)
	{
		const char *params[1] = {xids};

		res = pg_exec(r, conn,
					  "SELECT pg_catalog.bool_and(pg_catalog.pg_visible_in_snapshot(x, pg_catalog.pg_current_snapshot()))"
					  " FROM pg_catalog.unnest($1::pg_catalog.xid8[]) x", 1, params);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			pg_res_error(r, conn, res, err, errlen);
			ok = false;
		}
		else if (strcmp(PQgetvalue(res, 0, 0), "t") == 0)
		{
			PQclear(res);
			free(xids);
			return true;
		}
		PQclear(res);
		pthread_mutex_lock(&o->lock);
		if (*r->stop || o->stop)
		{
			ok = false;
			snprintf(err, errlen, "stopped");
		}
		pthread_mutex_unlock(&o->lock);
		usleep(10000);
	}
	if (ok)
		snprintf(err, errlen, "transactions %s committed but stayed in progress for 30 s", xids);
	free(xids);
	return false;
}

/* cdc_relay.table_schema() of j's table (opts: the plugin options, a text[] literal); malloc'd, NULL on failure (err). */
static char *
reader_shape(Relay *r, PGconn *conn, Job *j, const char *opts, char *err, size_t errlen)
{
	const char *params[2] = {j->relid, opts};
	PGresult   *res = pg_exec(r, conn, "SELECT cdc_relay.table_schema($1::pg_catalog.oid::pg_catalog.regclass,"
							  " $2::pg_catalog.text[])", 2, params);
	char	   *shape = NULL;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQgetisnull(res, 0, 0))
		pg_res_error(r, conn, res, err, errlen);
	else if ((shape = strdup(PQgetvalue(res, 0, 0))) == NULL)
		relay_out_of_memory();
	PQclear(res);
	return shape;
}

/*
 * Read chunk number n of job j after last_key (NULL: from the start): rows
 * through cdc_relay.snapshot_row() in key order, in a READ ONLY REPEATABLE
 * READ transaction whose snapshot is recorded, and (shape: the extension has
 * it) the table's shape as cdc_relay.table_schema() gives it in that same
 * transaction, so it is exactly the rows' shape.  NULL on failure (err).
 */
static Chunk *
reader_chunk(Online *o, Job *j, PGconn *conn, json_t *last_key, uint64_t n, bool shape, char *err,
			 size_t errlen)
{
	Relay	   *r = o->r;
	json_t	   *keycols = json_object_get(j->request, "key");
	size_t		nkey = json_array_size(keycols);
	char	   *cols = NULL,
			   *order = NULL,
			   *bound = NULL,
			   *after = NULL,
			   *opts_lit = NULL,
			   *opts = NULL;
	size_t		clen = 0,
				olen = 0,
				blen = 0;
	const char **params = calloc(nkey ? nkey : 1, sizeof(char *));
	PGresult   *res = NULL;
	Chunk	   *c = NULL;
	char		lsn[64] = "0/0";
	FILE	   *f;

	if (params == NULL)
		relay_out_of_memory();
	/* the key columns: ", t.k1::text, ..." and "t.k1, t.k2"; the bound "(t.k1, t.k2) > ($1, $2)" */
	f = open_memstream(&cols, &clen);
	for (size_t i = 0; i < nkey; i++)
	{
		const char *name = json_string_value(json_array_get(keycols, i));
		char	   *q = PQescapeIdentifier(conn, name, strlen(name));

		if (q == NULL)
		{
			fclose(f);
			snprintf(err, errlen, "%s", PQerrorMessage(conn));
			goto done;
		}
		fprintf(f, ", t.%s::pg_catalog.text", q);
		PQfreemem(q);
	}
	fclose(f);
	f = open_memstream(&order, &olen);
	for (size_t i = 0; i < nkey; i++)
	{
		const char *name = json_string_value(json_array_get(keycols, i));
		char	   *q = PQescapeIdentifier(conn, name, strlen(name));

		fprintf(f, "%st.%s", i ? ", " : "", q);
		PQfreemem(q);
	}
	fclose(f);
	f = open_memstream(&bound, &blen);
	if (last_key)
	{
		fprintf(f, " AND (%s) OPERATOR(pg_catalog.>) (", order);
		for (size_t i = 0; i < nkey; i++)
		{
			fprintf(f, "%s$%zu", i ? ", " : "", i + 1);
			params[i] = json_string_value(json_array_get(last_key, i));
		}
		fprintf(f, ")");
	}
	fclose(f);
	if (asprintf(&after, " WHERE (%s)%s ORDER BY %s LIMIT %d", j->where ? j->where : "true", bound, order,
				 r->cfg->snapshot_chunk_rows) < 0)
		relay_out_of_memory();
	opts = pg_plugin_options_array(r);
	opts_lit = PQescapeLiteral(conn, opts, strlen(opts));
	if (opts_lit == NULL)
		relay_out_of_memory();

	if (!reader_exec(r, conn, "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY", 0, NULL, err, errlen) ||
		!snapshot_set_local(r, conn))
	{
		if (err[0] == '\0')
			snprintf(err, errlen, "could not set up the chunk's transaction: %s", PQerrorMessage(conn));
		goto done;
	}
	c = calloc(1, sizeof(Chunk));
	if (c == NULL)
		relay_out_of_memory();
	c->number = n;
	res = pg_exec(r, conn, "SELECT pg_catalog.pg_current_snapshot()::pg_catalog.text,"
				  " pg_catalog.pg_current_wal_insert_lsn()::pg_catalog.text", 0, NULL);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || !snap_parse(PQgetvalue(res, 0, 0), &c->snap))
	{
		pg_res_error(r, conn, res, err, errlen);
		goto fail;
	}
	snprintf(lsn, sizeof(lsn), "%s", PQgetvalue(res, 0, 1));
	PQclear(res);
	{
		/* "SELECT cdc_relay.snapshot_row(...)" + the key columns */
		char	   *q = snapshot_row_query_cols("", cols, j->relid, j->table, lsn, opts_lit, after);

		res = pg_exec(r, conn, q, last_key ? (int) nkey : 0, params);
		free(q);
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		pg_res_error(r, conn, res, err, errlen);
		goto fail;
	}
	c->nrows = PQntuples(res);
	c->keys = calloc((size_t) c->nrows + 1, sizeof(char *));
	c->vals = calloc((size_t) c->nrows + 1, sizeof(char *));
	c->keylens = calloc((size_t) c->nrows + 1, sizeof(size_t));
	c->vallens = calloc((size_t) c->nrows + 1, sizeof(size_t));
	if (c->keys == NULL || c->vals == NULL || c->keylens == NULL || c->vallens == NULL)
		relay_out_of_memory();
	for (int i = 0; i < c->nrows; i++)
	{
		const char *v = PQgetvalue(res, i, 0);
		const char *tab = strchr(v, CDC_WIRE_KEY_SEP);

		if (tab == NULL)
		{
			snprintf(err, errlen, "unexpected output of cdc_relay.snapshot_row(): %.80s", v);
			goto fail;
		}
		c->keylens[i] = (size_t) (tab - v);
		c->keys[i] = strndup(v, c->keylens[i]);
		c->vallens[i] = strlen(tab + 1);
		c->vals[i] = strdup(tab + 1);
		if (c->keys[i] == NULL || c->vals[i] == NULL)
			relay_out_of_memory();
	}
	if (c->nrows > 0)
	{
		c->last_key = json_array();
		for (size_t k = 0; k < nkey; k++)
			json_array_append_new(c->last_key, json_string(PQgetvalue(res, c->nrows - 1, (int) k + 1)));
	}
	c->final = c->nrows < r->cfg->snapshot_chunk_rows;
	PQclear(res);
	res = NULL;
	/* after the rows: their query holds the table's lock, no DDL can change the shape now */
	if (shape && (c->shape = reader_shape(r, conn, j, opts, err, errlen)) == NULL)
		goto fail;
	if (!reader_exec(r, conn, "COMMIT", 0, NULL, err, errlen))
		goto fail;
	goto done;
fail:
	chunk_free(c);
	c = NULL;
	PQclear(res);
	res = NULL;
	{
		PGresult   *rb = pg_exec(r, conn, "ROLLBACK", 0, NULL);

		PQclear(rb);
	}
done:
	free(params);
	free(cols);
	free(order);
	free(bound);
	free(after);
	free(opts);
	if (opts_lit)
		PQfreemem(opts_lit);
	return c;
}

/*
 * The chunk's watermark: the job row's progress (as read) and the message
 * {"job","chunk","gen","run"} in one transaction.  A refused UPDATE (no
 * privilege) is warned about once and left out.  When the chunk has a
 * shape, the transaction first locks the table (ACCESS SHARE: a DDL either
 * committed before, or commits after the watermark) and compares the shape
 * now with it: when a DDL changed it in between (the stream may already have
 * produced the new one: the chunk's older shape must not follow it), nothing
 * is written, *changed is set and the chunk must be read again.  False on
 * failure (err) or a change.
 */
static bool
reader_watermark(Online *o, Job *j, PGconn *conn, Chunk *c, uint64_t rows, bool *changed, char *err,
				 size_t errlen)
{
	Relay	   *r = o->r;
	char		id[24],
				chunks[24],
				nrows[24];
	char	   *lk = c->last_key ? json_dumps(c->last_key, JSON_COMPACT) : NULL;
	json_t	   *m = json_pack("{s:I, s:I, s:I, s:I}", "job", (json_int_t) j->id, "chunk", (json_int_t) c->number,
							  "gen", (json_int_t) c->gen, "run", (json_int_t) o->run_nonce);
	char	   *msg = json_dumps(m, JSON_COMPACT);
	const char *up[4] = {id, chunks, nrows, lk};
	const char *mp[1] = {msg};
	bool		warned;
	bool		ok;

	json_decref(m);
	if (msg == NULL)
		relay_out_of_memory();
	snprintf(id, sizeof(id), "%lld", (long long) j->id);
	snprintf(chunks, sizeof(chunks), "%llu", (unsigned long long) c->number);
	snprintf(nrows, sizeof(nrows), "%llu", (unsigned long long) rows);
	pthread_mutex_lock(&o->lock);
	warned = o->warned_update;
	pthread_mutex_unlock(&o->lock);
	ok = reader_exec(r, conn, "BEGIN", 0, NULL, err, errlen);
	if (ok && !warned)
	{
		PGresult   *res = pg_exec(r, conn,
								  "UPDATE cdc_relay.snapshot_jobs SET status = 'running', chunks = $2::pg_catalog.int8,"
								  " rows = $3::pg_catalog.int8, last_key = $4, updated_at = pg_catalog.now()"
								  " WHERE id OPERATOR(pg_catalog.=) $1::pg_catalog.int8", 4, up);

		if (PQresultStatus(res) != PGRES_COMMAND_OK)
		{
			char		why[500];

			rlog(r->v, LOG_WARNING, "online snapshot progress is not written to cdc_relay.snapshot_jobs: %s "
				 "(fix: GRANT UPDATE ON cdc_relay.snapshot_jobs TO the relay's role; progress stays visible in "
				 "cdc-relay status and the metrics)", pg_res_error(r, conn, res, why, sizeof(why)));
			pthread_mutex_lock(&o->lock);
			o->warned_update = true;
			pthread_mutex_unlock(&o->lock);
			PQclear(res);
			res = pg_exec(r, conn, "ROLLBACK", 0, NULL);
			PQclear(res);
			ok = reader_exec(r, conn, "BEGIN", 0, NULL, err, errlen);
		}
		else
			PQclear(res);
	}
	if (ok && c->shape)
	{
		char	   *lock = NULL;
		char	   *now = NULL;
		char	   *opts = pg_plugin_options_array(r);

		if (asprintf(&lock, "LOCK TABLE ONLY %s IN ACCESS SHARE MODE", j->table) < 0)
			relay_out_of_memory();
		ok = reader_exec(r, conn, lock, 0, NULL, err, errlen) &&
			(now = reader_shape(r, conn, j, opts, err, errlen)) != NULL;
		if (ok && strcmp(now, c->shape) != 0)
		{
			*changed = true;
			ok = false;
		}
		free(now);
		free(opts);
		free(lock);
	}
	ok = ok && reader_exec(r, conn, "SELECT pg_catalog.pg_logical_emit_message(true, '" CDC_PREFIX_WATERMARK
						   "'::pg_catalog.text, $1::pg_catalog.text)", 1, mp, err, errlen) &&
		reader_exec(r, conn, "COMMIT", 0, NULL, err, errlen);
	if (!ok)
	{
		PGresult   *res = pg_exec(r, conn, "ROLLBACK", 0, NULL);

		PQclear(res);
	}
	free(msg);
	free(lk);
	return ok;
}

static void
reader_fail(Online *o, const char *err)
{
	pthread_mutex_lock(&o->lock);
	snprintf(o->error, sizeof(o->error), "%s", err);
	o->phase = READER_FAILED;
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
}

/* The reader's connection is closed: nothing to cancel any more. */
static void
reader_close(Online *o, PGconn *conn)
{
	pthread_mutex_lock(&o->lock);
	PQfreeCancel(o->cancel);
	o->cancel = NULL;
	pthread_mutex_unlock(&o->lock);
	PQfinish(conn);
}

/* The reader thread: chunk after chunk, each handed to the stream, until the last. */
static void *
reader_main(void *arg)
{
	Online	   *o = arg;
	Relay	   *r = o->r;
	Job		   *j = o->job;		/* stays while the thread runs (joined before it goes) */
	PGconn	   *conn = pg_connect(r, false);
	json_t	   *last_key;
	uint64_t	chunks,
				rows;
	bool		shape;
	char		err[600] = "";

	pthread_mutex_lock(&o->lock);
	last_key = o->start_key ? json_incref(o->start_key) : NULL;
	chunks = o->start_chunks;
	rows = o->start_rows;
	pthread_mutex_unlock(&o->lock);
	if (conn == NULL)
	{
		reader_fail(o, "could not connect to PostgreSQL");
		json_decref(last_key);
		return NULL;
	}
	pthread_mutex_lock(&o->lock);
	o->cancel = PQgetCancel(conn);
	pthread_mutex_unlock(&o->lock);

	/*
	 * The next chunk waits until the stream has seen this one's watermark,
	 * and the walsender sends only flushed WAL: with synchronous_commit off
	 * the watermark would wait for the WAL writer (wal_writer_delay, 200 ms
	 * a chunk).  A local flush is all it needs (a watermark lost in a crash
	 * only means its chunk is read again), not a standby's.
	 */
	if (!reader_exec(r, conn, "SET synchronous_commit = local", 0, NULL, err, sizeof(err)) ||
		!reader_check_request(o, j, conn, err, sizeof(err)) ||
		!reader_barrier(o, conn, err, sizeof(err)))
		goto fail;
	switch (pg_has_table_schema(r, conn, err, sizeof(err)))
	{
		case -1:
			goto fail;
		case 0:
			rlog(r->v, LOG_WARNING, "the cdc_relay extension has no table_schema() (older than 0.4.0): online "
				 "snapshot job %lld writes no table shapes to %s; fix: ALTER EXTENSION cdc_relay UPDATE",
				 (long long) j->id, r->schemas_topic);
			shape = false;
			break;
		default:
			shape = true;
	}
	for (;;)
	{
		Chunk	   *c;
		uint64_t	gen;
		int64_t		t0 = now_ms();

		pthread_mutex_lock(&o->lock);
		gen = o->gen;
		if (o->stop)
		{
			pthread_mutex_unlock(&o->lock);
			break;
		}
		pthread_mutex_unlock(&o->lock);
		err[0] = '\0';
		c = reader_chunk(o, j, conn, last_key, chunks + 1, shape, err, sizeof(err));
		if (c == NULL)
			goto fail;
		c->gen = gen;
		rlog(r->v, LOG_DEBUG, "online snapshot job %lld: read chunk %llu (%d rows after %s) in %lld ms",
			 (long long) j->id, (unsigned long long) c->number, c->nrows,
			 last_key ? json_string_value(json_array_get(last_key, 0)) : "the start",
			 (long long) (now_ms() - t0));
		{
			uint64_t	number = c->number;
			int			nrows = c->nrows;
			bool		final = c->final;
			json_t	   *next_key = c->last_key ? json_incref(c->last_key) : NULL;
			bool		changed = false;

			/* buffered before its watermark can be seen */
			pthread_mutex_lock(&o->lock);
			o->chunk = c;
			o->phase = READER_READY;
			pthread_mutex_unlock(&o->lock);
			if (!reader_watermark(o, j, conn, c, rows + (uint64_t) nrows, &changed, err, sizeof(err)))
			{
				pthread_mutex_lock(&o->lock);
				if (o->chunk == c)
				{
					/* never seen by the stream (no watermark): ours to free */
					o->chunk = NULL;
					chunk_free(c);
				}
				if (changed)
					o->phase = READER_READING;
				pthread_mutex_unlock(&o->lock);
				json_decref(next_key);
				if (changed)
				{
					rlog(r->v, LOG_INFO, "online snapshot job %lld: the table's shape changed while chunk %llu "
						 "was read: reading it again", (long long) j->id, (unsigned long long) number);
					continue;
				}
				goto fail;
			}
			pthread_mutex_lock(&o->lock);
			while (o->phase == READER_READY && !o->stop)
				pthread_cond_wait(&o->cond, &o->lock);
			if (o->phase != READER_CONSUMED)
			{
				pthread_mutex_unlock(&o->lock);
				json_decref(next_key);
				break;
			}
			chunks = number;
			rows += (uint64_t) nrows;
			if (next_key)
			{
				json_decref(last_key);
				last_key = next_key;
			}
			if (final)
			{
				o->phase = READER_DONE;
				pthread_cond_broadcast(&o->cond);
				pthread_mutex_unlock(&o->lock);
				break;
			}
			o->phase = READER_READING;
			pthread_mutex_unlock(&o->lock);
		}
	}
	reader_close(o, conn);
	json_decref(last_key);
	return NULL;
fail:
	reader_close(o, conn);
	json_decref(last_key);
	reader_fail(o, err[0] ? err : "failed");
	return NULL;
}

/* Stop the reader thread (if any) and wait for it; drop a buffered chunk; no reader (READER_IDLE). */
static void
reader_stop(Online *o)
{
	if (o->thread_running)
	{
		char		errbuf[256];

		pthread_mutex_lock(&o->lock);
		o->stop = true;
		pthread_cond_broadcast(&o->cond);
		/* a query that waits (a lock, a long chunk) must not hold the stream */
		if (o->cancel)
			PQcancel(o->cancel, errbuf, sizeof(errbuf));
		pthread_mutex_unlock(&o->lock);
		pthread_join(o->thread, NULL);
		o->thread_running = false;
	}
	o->stop = false;
	o->phase = READER_IDLE;
	chunk_free(o->chunk);
	o->chunk = NULL;
}

/* Start the reader for the active job, after its delivered progress. */
static void
reader_start(Online *o)
{
	Job		   *j = o->job;

	json_decref(o->start_key);
	o->start_key = j->d_last_key ? json_incref(j->d_last_key) : NULL;
	o->start_chunks = j->d_chunks;
	o->start_rows = j->d_rows;
	o->phase = READER_READING;
	o->error[0] = '\0';
	if (pthread_create(&o->thread, NULL, reader_main, o) != 0)
	{
		o->phase = READER_FAILED;
		snprintf(o->error, sizeof(o->error), "could not start a thread: %s", strerror(errno));
		return;
	}
	o->thread_running = true;
}

/* ---- the stream's side ------------------------------------------------------------ */

bool
online_prefix(const char *prefix)
{
	return prefix != NULL && (strcmp(prefix, CDC_PREFIX_SNAPSHOT_REQUEST) == 0 ||
							  strcmp(prefix, CDC_PREFIX_WATERMARK) == 0);
}

/* Set the job row's status (done, failed) on the guard connection; best effort. */
static void
job_set_status(Online *o, Job *j, const char *status, const char *error)
{
	Relay	   *r = o->r;
	char		id[24],
				chunks[24],
				rows[24];
	const char *params[5] = {id, status, error, chunks, rows};
	PGresult   *res;

	bool		forged;

	pthread_mutex_lock(&o->lock);
	forged = j->forged;
	pthread_mutex_unlock(&o->lock);
	if (r->guard == NULL || o->warned_update || forged)
		return;
	snprintf(id, sizeof(id), "%lld", (long long) j->id);
	snprintf(chunks, sizeof(chunks), "%llu", (unsigned long long) j->d_chunks);
	snprintf(rows, sizeof(rows), "%llu", (unsigned long long) j->d_rows);
	res = pg_exec(r, r->guard, "UPDATE cdc_relay.snapshot_jobs SET status = $2, error = $3,"
				  " chunks = $4::pg_catalog.int8, rows = $5::pg_catalog.int8, updated_at = pg_catalog.now()"
				  " WHERE id OPERATOR(pg_catalog.=) $1::pg_catalog.int8", 5, params);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		char		why[500];

		rlog(r->v, LOG_WARNING, "could not set online snapshot job %lld's status to %s in cdc_relay.snapshot_jobs: %s "
			 "(fix: GRANT UPDATE ON cdc_relay.snapshot_jobs TO the relay's role)", (long long) j->id, status,
			 pg_res_error(r, r->guard, res, why, sizeof(why)));
		o->warned_update = true;
	}
	PQclear(res);
}

/* Make j the active job: tracking starts now; its reader starts at the next poll. */
static void
job_activate(Online *o, Job *j)
{
	Relay	   *r = o->r;

	o->job = j;
	track_clear(&o->tracked);
	atomic_store_explicit(&j->mt->online_active, 1, memory_order_relaxed);
	/* its changes carry the partitioned table's name: they could not be told apart */
	j->unsupported = r->cfg->partition_root && json_is_true(json_object_get(j->request, "partition"));
	rlog(r->v, LOG_INFO, "online snapshot job %lld of %s%s%s: %s", (long long) j->id, j->display,
		 j->where ? " where " : "", j->where ? j->where : "",
		 j->d_chunks ? "resuming after the chunks delivered" : "starting");
	if (j->d_chunks)
		rlog(r->v, LOG_INFO, "online snapshot job %lld: %llu chunks (%llu rows) delivered; resuming after key %s",
			 (long long) j->id, (unsigned long long) j->d_chunks, (unsigned long long) j->d_rows,
			 j->d_last_key ? json_string_value(json_array_get(j->d_last_key, 0)) : "(none)");
}

/*
 * Forget the chunks emitted but not yet delivered and the watermark
 * transaction in progress (the job ends, or the stream goes back to what
 * was delivered).
 */
static void
forget_emitted(Online *o)
{
	for (int i = 0; i < o->ndq; i++)
		json_decref(o->dq[i].last_key);
	o->ndq = 0;
	o->wm_open = false;
	json_decref(o->wm.last_key);
	o->wm.last_key = NULL;
}

/* The active job is over (done or failed): the next one becomes active. */
static void
job_close(Online *o, const char *status, const char *error)
{
	Job		   *j = o->job;

	reader_stop(o);
	job_set_status(o, j, status, error);
	atomic_store_explicit(&j->mt->online_active, 0, memory_order_relaxed);
	forget_emitted(o);
	job_free(j);
	o->job = NULL;
	track_clear(&o->tracked);
	if (o->nqueue > 0)
	{
		Job		   *next = o->queue[0];

		memmove(o->queue, o->queue + 1, sizeof(Job *) * (size_t) (o->nqueue - 1));
		o->nqueue--;
		job_activate(o, next);
	}
}

Online *
online_new(Relay *r)
{
	Online	   *o = calloc(1, sizeof(Online));
	json_t	   *st;

	if (o == NULL)
		relay_out_of_memory();
	o->r = r;
	pthread_mutex_init(&o->lock, NULL);
	pthread_cond_init(&o->cond, NULL);
	o->run_nonce = (uint64_t) now_ms() ^ ((uint64_t) getpid() << 40);
	o->run_nonce &= INT64_MAX;
	st = r->st_online_json ? json_loads(r->st_online_json, 0, NULL) : NULL;
	if (st)
	{
		Job		   *j = job_from_request(o, json_object_get(st, "request"));
		json_t	   *queued = json_object_get(st, "queued");
		size_t		i;
		json_t	   *q;

		if (j)
		{
			json_t	   *lk = json_object_get(st, "last_key");

			j->d_chunks = j->chunks = (uint64_t) json_integer_value(json_object_get(st, "chunks"));
			j->d_rows = j->rows = (uint64_t) json_integer_value(json_object_get(st, "rows"));
			j->d_final = j->final = json_is_true(json_object_get(st, "final"));
			if (json_is_array(lk))
			{
				j->d_last_key = json_incref(lk);
				j->last_key = json_incref(lk);
			}
			job_activate(o, j);
		}
		json_array_foreach(queued, i, q)
		{
			Job		   *qj = job_from_request(o, q);
			Job		  **nq;

			if (qj == NULL)
				continue;
			nq = realloc(o->queue, sizeof(Job *) * (size_t) (o->nqueue + 1));
			if (nq == NULL)
				relay_out_of_memory();
			o->queue = nq;
			o->queue[o->nqueue++] = qj;
		}
		json_decref(st);
	}
	return o;
}

void
online_free(Online *o)
{
	if (o == NULL)
		return;
	reader_stop(o);
	if (o->job)
		atomic_store_explicit(&o->job->mt->online_active, 0, memory_order_relaxed);
	job_free(o->job);
	for (int i = 0; i < o->nqueue; i++)
		job_free(o->queue[i]);
	free(o->queue);
	for (int i = 0; i < o->ndq; i++)
		json_decref(o->dq[i].last_key);
	free(o->dq);
	json_decref(o->wm.last_key);
	json_decref(o->start_key);
	track_clear(&o->tracked);
	pthread_mutex_destroy(&o->lock);
	pthread_cond_destroy(&o->cond);
	free(o);
}

void
online_row(Online *o, const char *ident, size_t identlen, const char *key, size_t keylen,
		   uint32_t xid, bool unknown)
{
	Job		   *j = o->job;
	const char *vt;

	if (j == NULL || identlen != j->identlen || memcmp(ident, j->ident, identlen) != 0)
		return;
	if (unknown)
	{
		j->poisoned = true;
		return;
	}
	vt = memchr(key, CDC_WIRE_NEWKEY_SEP, keylen);
	if (vt)
	{
		track_put(&o->tracked, key, (size_t) (vt - key), xid);
		keylen -= (size_t) (vt + 1 - key);
		key = vt + 1;
	}
	track_put(&o->tracked, key, keylen, xid);
}

/* A request: the job starts now, or waits behind the active one. */
static void
on_request(Online *o, json_t *content)
{
	Relay	   *r = o->r;
	Job		   *j = job_from_request(o, content);

	if (j == NULL)
	{
		rlog(r->v, LOG_WARNING, "ignoring a malformed online snapshot request");
		return;
	}
	if ((o->job && o->job->id == j->id))
	{
		job_free(j);
		return;
	}
	for (int i = 0; i < o->nqueue; i++)
		if (o->queue[i]->id == j->id)
		{
			job_free(j);
			return;
		}
	if (o->job == NULL)
	{
		job_activate(o, j);
		return;
	}
	{
		Job		  **nq = realloc(o->queue, sizeof(Job *) * (size_t) (o->nqueue + 1));

		if (nq == NULL)
			relay_out_of_memory();
		o->queue = nq;
		o->queue[o->nqueue++] = j;
		rlog(r->v, LOG_INFO, "online snapshot job %lld of %s queued behind job %lld", (long long) j->id,
			 j->display, (long long) o->job->id);
	}
}

/* A watermark: emit the chunk it closes, minus the rows the stream overrode. */
static int
on_watermark(Online *o, json_t *content, OnlineEmitRow emit, OnlineEmitShape emit_shape, void *arg)
{
	Relay	   *r = o->r;
	Job		   *j = o->job;
	Chunk	   *c;
	uint64_t	emitted = 0,
				dropped = 0;
	int			rc = 0;

	if (j == NULL)
		return 0;
	pthread_mutex_lock(&o->lock);
	c = o->chunk;
	if (o->phase != READER_READY || c == NULL ||
		json_integer_value(json_object_get(content, "job")) != j->id ||
		(uint64_t) json_integer_value(json_object_get(content, "chunk")) != c->number ||
		(uint64_t) json_integer_value(json_object_get(content, "gen")) != c->gen ||
		(uint64_t) json_integer_value(json_object_get(content, "run")) != o->run_nonce ||
		c->gen != o->gen)
	{
		/* an earlier run's or generation's: its chunk is not ours to emit */
		pthread_mutex_unlock(&o->lock);
		return 0;
	}
	o->chunk = NULL;
	pthread_mutex_unlock(&o->lock);

	if (j->poisoned)
	{
		snprintf(o->error, sizeof(o->error), "a change of %s without its key (replica identity changed?): "
				 "its chunk rows could not be checked against it", j->display);
		chunk_free(c);
		pthread_mutex_lock(&o->lock);
		o->phase = READER_FAILED;
		pthread_cond_broadcast(&o->cond);
		pthread_mutex_unlock(&o->lock);
		return 0;
	}
	for (int i = 0; i < c->nrows && rc == 0; i++)
	{
		uint32_t	xid;

		if (track_xid(&o->tracked, c->keys[i], c->keylens[i], &xid) && !snap_sees(&c->snap, xid))
		{
			dropped++;
			continue;
		}
		/* the chunk's shape before its first row, unless this process produced it last */
		if (emitted == 0 && c->shape && (j->shape == NULL || strcmp(j->shape, c->shape) != 0))
		{
			rc = emit_shape(arg, c->shape, strlen(c->shape), j->relid, c->number);
			if (rc != 0)
				break;
			free(j->shape);
			j->shape = c->shape;
			c->shape = NULL;
		}
		rc = emit(arg, c->keys[i], c->keylens[i], c->vals[i], c->vallens[i], j->relid,
				  j->rows + (uint64_t) i + 1);
		emitted++;
	}
	if (rc != 0)
	{
		chunk_free(c);
		return rc;
	}
	/* forget keys whose transaction this snapshot (and so every later one) sees */
	track_prune(&o->tracked, &c->snap);
	j->chunks = c->number;
	j->rows += (uint64_t) c->nrows;
	j->dropped += dropped;
	if (c->last_key)
	{
		json_decref(j->last_key);
		j->last_key = json_incref(c->last_key);
	}
	j->final = c->final;
	atomic_fetch_add_explicit(&j->mt->online_rows, emitted, memory_order_relaxed);
	atomic_fetch_add_explicit(&j->mt->online_dropped, dropped, memory_order_relaxed);
	atomic_fetch_add_explicit(&j->mt->online_chunks, 1, memory_order_relaxed);
	rlog(r->v, LOG_INFO, "online snapshot job %lld: chunk %llu emitted: %llu rows, %llu dropped (changed by the stream)%s",
		 (long long) j->id, (unsigned long long) c->number, (unsigned long long) emitted,
		 (unsigned long long) dropped, c->final ? ", the last" : "");
	json_decref(o->wm.last_key);
	o->wm = (Delivered) {0, j->chunks, j->rows, j->last_key ? json_incref(j->last_key) : NULL, j->final};
	o->wm_open = true;
	chunk_free(c);
	pthread_mutex_lock(&o->lock);
	o->phase = READER_CONSUMED;
	pthread_cond_broadcast(&o->cond);
	pthread_mutex_unlock(&o->lock);
	return 0;
}

int
online_message(Online *o, const char *prefix, const char *event, size_t len, bool skipped,
			   OnlineEmitRow emit, OnlineEmitShape emit_shape, void *arg)
{
	json_t	   *ev,
			   *content;
	const char *text;
	int			rc = 0;

	if (skipped)
		return 0;				/* Kafka has it: the state record says what followed */
	ev = json_loadb(event, len, 0, NULL);
	text = json_string_value(json_object_get(ev, "content"));
	content = text ? json_loads(text, 0, NULL) : NULL;
	if (content == NULL)
		rlog(o->r->v, LOG_WARNING, "ignoring a malformed %s message", prefix);
	else if (strcmp(prefix, CDC_PREFIX_SNAPSHOT_REQUEST) == 0)
		on_request(o, content);
	else
		rc = on_watermark(o, content, emit, emit_shape, arg);
	json_decref(content);
	json_decref(ev);
	return rc;
}

void
online_commit(Online *o, uint64_t end_lsn)
{
	Delivered  *n;

	if (!o->wm_open)
		return;
	o->wm_open = false;
	n = realloc(o->dq, sizeof(Delivered) * (size_t) (o->ndq + 1));
	if (n == NULL)
		relay_out_of_memory();
	o->dq = n;
	o->wm.end_lsn = end_lsn;
	o->dq[o->ndq++] = o->wm;
	o->wm.last_key = NULL;
}

/* Progress whose watermark transaction Kafka confirmed (r->ckpt_durable) is delivered. */
static void
apply_delivered(Online *o)
{
	Relay	   *r = o->r;
	Job		   *j = o->job;
	int			k = 0;

	while (k < o->ndq && o->dq[k].end_lsn <= r->ckpt_durable)
	{
		j->d_chunks = o->dq[k].chunks;
		j->d_rows = o->dq[k].rows;
		j->d_final = o->dq[k].final;
		if (o->dq[k].last_key)
		{
			json_decref(j->d_last_key);
			j->d_last_key = o->dq[k].last_key;
		}
		k++;
	}
	if (k > 0)
	{
		memmove(o->dq, o->dq + k, sizeof(Delivered) * (size_t) (o->ndq - k));
		o->ndq -= k;
	}
}

void
online_poll(Online *o)
{
	Relay	   *r = o->r;
	Job		   *j = o->job;
	ReaderPhase phase;

	if (j == NULL)
		return;
	apply_delivered(o);
	if (j->unsupported)
	{
		rlog(r->v, LOG_ERROR, "online snapshot job %lld of %s failed: a partition cannot be snapshotted online "
			 "with --partition-root (its changes carry the partitioned table's name); request one without "
			 "--partition-root", (long long) j->id, j->display);
		job_close(o, "failed", "a partition cannot be snapshotted online with --partition-root");
		return;
	}
	if (j->d_final)
	{
		rlog(r->v, LOG_INFO, "online snapshot job %lld of %s done: %llu rows in %llu chunks delivered, "
			 "%llu dropped (the stream had a newer version)", (long long) j->id, j->display,
			 (unsigned long long) j->d_rows, (unsigned long long) j->d_chunks, (unsigned long long) j->dropped);
		job_close(o, "done", NULL);
		return;
	}
	pthread_mutex_lock(&o->lock);
	phase = o->phase;
	pthread_mutex_unlock(&o->lock);
	if (phase == READER_FAILED)
	{
		char		err[600];

		snprintf(err, sizeof(err), "%s", o->error);
		if (*r->stop)
			return;
		rlog(r->v, LOG_ERROR, "online snapshot job %lld of %s failed: %s (request it again once fixed)",
			 (long long) j->id, j->display, err);
		job_close(o, "failed", err);
		return;
	}
	if (phase == READER_IDLE && !j->final)
		reader_start(o);
	else if (phase == READER_DONE && o->thread_running)
	{
		pthread_join(o->thread, NULL);
		o->thread_running = false;
	}
}

void
online_rewind(Online *o)
{
	Job		   *j = o->job;

	if (j == NULL)
		return;
	reader_stop(o);
	apply_delivered(o);
	pthread_mutex_lock(&o->lock);
	o->gen++;
	pthread_mutex_unlock(&o->lock);
	forget_emitted(o);
	/* back to what was delivered; the shape produced since may be gone with it */
	free(j->shape);
	j->shape = NULL;
	j->chunks = j->d_chunks;
	j->rows = j->d_rows;
	j->final = j->d_final;
	json_decref(j->last_key);
	j->last_key = j->d_last_key ? json_incref(j->d_last_key) : NULL;
}

json_t *
online_state_json(Online *o, uint64_t lsn)
{
	Job		   *j;
	json_t	   *st,
			   *queued;
	uint64_t	chunks,
				rows;
	json_t	   *lk;
	bool		final;

	if (o == NULL || (o->job == NULL && o->nqueue == 0))
		return NULL;
	j = o->job;
	queued = json_array();
	for (int i = 0; i < o->nqueue; i++)
		json_array_append(queued, o->queue[i]->request);
	if (j == NULL)
		return json_pack("{s:o}", "queued", queued);
	chunks = j->d_chunks;
	rows = j->d_rows;
	lk = j->d_last_key;
	final = j->d_final;
	for (int i = 0; i < o->ndq && o->dq[i].end_lsn <= lsn; i++)
	{
		chunks = o->dq[i].chunks;
		rows = o->dq[i].rows;
		final = o->dq[i].final;
		if (o->dq[i].last_key)
			lk = o->dq[i].last_key;
	}
	st = json_pack("{s:I, s:s, s:s?, s:O, s:I, s:I, s:O?, s:b, s:o}",
				   "job", (json_int_t) j->id,
				   "table", j->display,
				   "where", j->where,
				   "request", j->request,
				   "chunks", (json_int_t) chunks,
				   "rows", (json_int_t) rows,
				   "last_key", lk,
				   "final", final,
				   "queued", queued);
	if (st == NULL)
		relay_out_of_memory();
	return st;
}
