/*
 * snapshot.c: the initial snapshot, read in parallel from an exported
 * snapshot and produced as op "r" events.
 *
 * The replication connection created the slot with an exported snapshot and
 * stays idle, which keeps the snapshot importable.  --snapshot-jobs worker
 * threads each open a connection, import it (REPEATABLE READ + SET
 * TRANSACTION SNAPSHOT), and take tables from a shared list, largest first.
 * Each table is read with
 *   COPY (SELECT cdc_relay.snapshot_row(rel, t.*, lsn, options) FROM ONLY rel t)
 *     TO STDOUT (FORMAT binary)
 * so that values are encoded by the same server code as the change events;
 * each row comes back as <key JSON> TAB <event JSON>.  The main thread serves
 * delivery reports and shows progress.  The snapshot counts as done only when
 * every row has a successful delivery report.
 */
#include "relay.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
	pthread_mutex_t lock;
	int			next;			/* next table to take (under lock) */
	atomic_int	abort;			/* a worker failed, or we are stopping */
	char		error[600];		/* first worker error (under lock) */
} SnapShared;

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

static bool
exec_ok(PGconn *conn, const char *sql)
{
	PGresult   *res = PQexec(conn, sql);
	bool		ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	PQclear(res);
	return ok;
}

/* Begin a transaction on the exported snapshot. */
static bool
import_snapshot(PGconn *conn, const char *snapshot_name)
{
	char		sql[200];

	snprintf(sql, sizeof(sql), "SET TRANSACTION SNAPSHOT '%s'", snapshot_name);
	return exec_ok(conn, "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY") &&
		exec_ok(conn, sql) &&
		exec_ok(conn, "SET LOCAL statement_timeout = 0") &&
		exec_ok(conn, "SET LOCAL idle_in_transaction_session_timeout = 0") &&
		/* the settings the plugin fixes while decoding: no per-row switching */
		exec_ok(conn, "SET LOCAL DateStyle = 'ISO, YMD'") &&
		exec_ok(conn, "SET LOCAL TimeZone = 'UTC'") &&
		exec_ok(conn, "SET LOCAL IntervalStyle = iso_8601") &&
		exec_ok(conn, "SET LOCAL extra_float_digits = 1") &&
		exec_ok(conn, "SET LOCAL bytea_output = hex") &&
		exec_ok(conn, "SET LOCAL lc_monetary = 'C'");
}

static void
add_header(rd_kafka_headers_t *h, const char *name, const char *value)
{
	rd_kafka_header_add(h, name, -1, value, -1);
}

/* Read one table and produce its rows.  False on error (recorded). */
static bool
copy_table(SnapShared *sh, PGconn *conn, SnapTable *t)
{
	Relay	   *r = sh->r;
	char	   *opts = PQescapeLiteral(conn, sh->options, strlen(sh->options));
	char	   *sql;
	size_t		sqllen;
	PGresult   *res;
	char	   *buf = NULL;
	int			len;
	uint64_t	n = 0;
	bool		ok = true;

	if (opts == NULL)
	{
		worker_fail(sh, "out of memory");
		return false;
	}
	sqllen = strlen(t->regclass) + strlen(opts) + 256;
	sql = malloc(sqllen);
	if (sql == NULL)
		exit(1);
	snprintf(sql, sqllen,
			 "COPY (SELECT cdc_relay.snapshot_row(%s::regclass, t.*, '%s', %s::text[]) FROM ONLY %s t)"
			 " TO STDOUT (FORMAT binary)",
			 t->relid, sh->lsn, opts, t->regclass);
	PQfreemem(opts);
	res = PQexec(conn, sql);
	free(sql);
	if (PQresultStatus(res) != PGRES_COPY_OUT)
	{
		worker_fail(sh, "could not read table %s: %s", t->regclass, PQerrorMessage(conn));
		PQclear(res);
		return false;
	}
	PQclear(res);

	/*
	 * Binary COPY: a header message, then one message per row (int16 field
	 * count 1, int32 length, the text bytes), then a trailer (int16 -1).
	 */
	while ((len = PQgetCopyData(conn, &buf, 0)) > 0)
	{
		char	   *row,
				   *tab;
		int32_t		flen;
		rd_kafka_headers_t *h;
		rd_kafka_resp_err_t e;
		char		id[96];
		size_t		keylen,
					vallen;

		char	   *msg = buf;

		/* the header (signature, flags, extension) comes with the first row */
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
		{
			PQfreemem(buf);
			continue;			/* header alone, or the trailer */
		}
		flen = -1;
		if (len >= 6 && msg[0] == 0 && msg[1] == 1)
		{
			uint32_t	nl;

			memcpy(&nl, msg + 2, 4);
			flen = (int32_t) ntohl(nl);
		}
		row = msg + 6;
		tab = flen > 0 && flen == len - 6 ? memchr(row, '\t', (size_t) flen) : NULL;
		if (tab == NULL)
		{
			worker_fail(sh, "malformed snapshot row from %s", t->regclass);
			PQfreemem(buf);
			ok = false;
			break;
		}
		keylen = (size_t) (tab - row);
		vallen = (size_t) flen - keylen - 1;
		n++;
		snprintf(id, sizeof(id), "%s/r/%s/%llu", sh->lsn, t->relid, (unsigned long long) n);
		h = rd_kafka_headers_new(5);
		add_header(h, "op", "r");
		add_header(h, "table", t->header_table);
		add_header(h, "commit_lsn", sh->lsn);
		add_header(h, "event_id", id);
		add_header(h, "snapshot", "true");
		atomic_fetch_add(&r->snap_pending, 1);
		for (;;)
		{
			bool		nokey = keylen == 4 && memcmp(row, "null", 4) == 0;
			char	   *kp = nokey ? NULL : row;
			size_t		kl = nokey ? 0 : keylen;
			char	   *vp = tab + 1;

			e = rd_kafka_producev(r->rk,
								  RD_KAFKA_V_RKT(t->rkt),
								  RD_KAFKA_V_KEY(kp, kl),
								  RD_KAFKA_V_VALUE(vp, vallen),
								  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
								  RD_KAFKA_V_HEADERS(h),
								  RD_KAFKA_V_OPAQUE(NULL),
								  RD_KAFKA_V_END);
			if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || atomic_load(&sh->abort))
				break;
			/* backpressure: the main thread serves delivery reports */
			usleep(1000);
		}
		PQfreemem(buf);
		if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			atomic_fetch_sub(&r->snap_pending, 1);
			rd_kafka_headers_destroy(h);
			if (!atomic_load(&sh->abort))
			{
				worker_fail(sh, "could not produce a row of %s: %s", t->regclass, rd_kafka_err2str(e));
			}
			ok = false;
			break;
		}
		if ((n & 1023) == 0)
		{
			atomic_store(&t->rows, n);
			if (atomic_load(&sh->abort))
			{
				ok = false;
				break;
			}
		}
	}
	atomic_store(&t->rows, n);
	if (!ok)
	{
		/* drain what is left of the COPY so the connection can be closed cleanly */
		PQrequestCancel(conn);
		while ((len = PQgetCopyData(conn, &buf, 0)) > 0)
			PQfreemem(buf);
		while ((res = PQgetResult(conn)) != NULL)
			PQclear(res);
		return false;
	}
	if (len == -2)
	{
		worker_fail(sh, "could not read table %s: %s", t->regclass, PQerrorMessage(conn));
		return false;
	}
	res = PQgetResult(conn);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		worker_fail(sh, "could not read table %s: %s", t->regclass, PQerrorMessage(conn));
		ok = false;
	}
	PQclear(res);
	while ((res = PQgetResult(conn)) != NULL)
		PQclear(res);
	return ok;
}

static void *
worker_main(void *arg)
{
	SnapShared *sh = arg;
	PGconn	   *conn = pg_connect(sh->r, false);

	if (conn == NULL)
	{
		worker_fail(sh, "snapshot worker could not connect (see above)");
		return NULL;
	}
	if (!import_snapshot(conn, sh->snapshot_name))
	{
		worker_fail(sh, "could not import the exported snapshot: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return NULL;
	}
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
		if (!copy_table(sh, conn, t))
			break;
		t->finished_ms = now_ms();
		atomic_store(&t->state, 2);
	}
	exec_ok(conn, "COMMIT");
	PQfinish(conn);
	return NULL;
}

static char *
xstrdup(const char *s)
{
	char	   *d = strdup(s);

	if (d == NULL)
		exit(1);
	return d;
}

static int
cmp_pages_desc(const void *a, const void *b)
{
	const SnapTable *x = a,
			   *y = b;

	return (x->relpages < y->relpages) - (x->relpages > y->relpages);
}

/* List the tables to snapshot, inside the exported snapshot. */
static int
list_tables(SnapShared *sh)
{
	Relay	   *r = sh->r;
	PGconn	   *conn = pg_connect(r, false);
	PGresult   *res;
	const char *params[1] = {sh->options};
	int			rc = 0;

	if (conn == NULL)
		return -1;
	if (!import_snapshot(conn, sh->snapshot_name))
	{
		rlog(r->v, LOG_ERROR, "could not import the exported snapshot: %s", PQerrorMessage(conn));
		PQfinish(conn);
		return -1;
	}
	res = PQexecParams(conn,
					   "SELECT relid::oid::text, relid::regclass::text, schema_name, table_name,"
					   " reltuples, relpages FROM cdc_relay.snapshot_tables($1::text[])",
					   1, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		rlog(r->v, LOG_ERROR, "could not list the tables to snapshot: %s", PQerrorMessage(conn));
		rc = -1;
	}
	else
	{
		sh->ntables = PQntuples(res);
		sh->tables = calloc((size_t) sh->ntables + 1, sizeof(SnapTable));
		if (sh->tables == NULL)
			exit(1);
		for (int i = 0; i < sh->ntables; i++)
		{
			SnapTable  *t = &sh->tables[i];
			char		topic[TOPIC_MAX_LEN + 1];

			t->relid = xstrdup(PQgetvalue(res, i, 0));
			t->regclass = xstrdup(PQgetvalue(res, i, 1));
			t->schema = xstrdup(PQgetvalue(res, i, 2));
			t->table = xstrdup(PQgetvalue(res, i, 3));
			t->reltuples = atof(PQgetvalue(res, i, 4));
			t->relpages = atoll(PQgetvalue(res, i, 5));
			t->header_table = table_display_name(t->schema, t->table);
			if (t->header_table == NULL)
				exit(1);
			topic_for_table(r->cfg->topic_prefix, t->schema, strlen(t->schema),
							t->table, strlen(t->table), topic);
			/* a table the start did not list (created since) gets its topic first */
			if (admin_ensure_table(r, topic, t->schema, t->table, t->header_table, -1) != 0)
			{
				rc = -1;
				break;
			}
			t->rkt = rd_kafka_topic_new(r->rk, topic, NULL);
		}
		qsort(sh->tables, (size_t) sh->ntables, sizeof(SnapTable), cmp_pages_desc);
	}
	PQclear(res);
	exec_ok(conn, "COMMIT");
	PQfinish(conn);
	return rc;
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

int
snapshot_run(Relay *r, const char *snapshot_name, uint64_t consistent_point,
			 uint64_t *rows_out, int *tables_out)
{
	SnapShared	sh;
	pthread_t  *threads;
	int			nthreads;
	int			rc = 0;
	int64_t		start = now_ms(),
				last_report = start;
	bool		tty = isatty(STDERR_FILENO);
	bool	   *reported;
	uint64_t	total = 0;

	memset(&sh, 0, sizeof(sh));
	sh.r = r;
	sh.snapshot_name = snapshot_name;
	lsn_str(consistent_point, sh.lsn);
	sh.options = pg_plugin_options_array(r);
	pthread_mutex_init(&sh.lock, NULL);
	atomic_store(&r->snap_failed, 0);

	if (list_tables(&sh) != 0)
	{
		rc = -1;
		goto done;
	}
	rlog(r->v, LOG_INFO, "snapshot at %s: %d tables, %d parallel jobs", sh.lsn, sh.ntables,
		 sh.ntables < r->cfg->snapshot_jobs ? sh.ntables : r->cfg->snapshot_jobs);
	nthreads = sh.ntables < r->cfg->snapshot_jobs ? sh.ntables : r->cfg->snapshot_jobs;
	threads = calloc((size_t) nthreads + 1, sizeof(pthread_t));
	reported = calloc((size_t) sh.ntables + 1, sizeof(bool));
	if (threads == NULL || reported == NULL)
		exit(1);
	for (int i = 0; i < nthreads; i++)
		if (pthread_create(&threads[i], NULL, worker_main, &sh) != 0)
		{
			rlog(r->v, LOG_ERROR, "could not start a snapshot thread");
			atomic_store(&sh.abort, 1);
			nthreads = i;
			break;
		}

	/* serve delivery reports and report progress until every row is delivered */
	for (;;)
	{
		bool		readers_done;

		rd_kafka_poll(r->rk, 100);
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
		if (readers_done && atomic_load(&r->snap_pending) == 0)
			break;
		if (now_ms() - last_report >= (tty ? 500 : 10000))
		{
			progress(&sh, start, tty, reported);
			last_report = now_ms();
		}
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(threads[i], NULL);
	free(threads);
	progress(&sh, start, tty, reported);
	if (tty && r->v >= LOG_INFO)
		fputs("\n", stderr);
	free(reported);

	for (int i = 0; i < sh.ntables; i++)
		total += atomic_load(&sh.tables[i].rows);
	if (atomic_load(&sh.abort))
	{
		if (sh.error[0])
			rlog(r->v, LOG_ERROR, "snapshot failed: %s", sh.error);
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
	for (int i = 0; i < sh.ntables; i++)
	{
		SnapTable  *t = &sh.tables[i];

		free(t->relid);
		free(t->regclass);
		free(t->schema);
		free(t->table);
		free(t->header_table);
		if (t->rkt)
			rd_kafka_topic_destroy(t->rkt);
	}
	free(sh.tables);
	free(sh.options);
	pthread_mutex_destroy(&sh.lock);
	return rc;
}
