/*
 * index_http.c: cdc-index's HTTP endpoints, on relay/http.c's thread:
 *
 *   GET /search?q=QUERY[&table=schema.table][&limit=N]   (--serve)
 *       {"query": ..., "results": [{"table", "key", "rank", "snippet"}, ...]}
 *       400 {"error": ...} for a missing or bad query, an unknown table
 *   GET /metrics                                          (--metrics)
 *       Prometheus text format 0.0.4
 *
 * Each search opens its own read-only SQLite connection (WAL: it reads the
 * last committed state while run writes); the metrics come from the
 * IndexShared copy under its mutex.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"
#include "log.h"

/* A growing string buffer. */
typedef struct Buf
{
	char	   *s;
	size_t		len,
				cap;
} Buf;

static void buf_printf(Buf *b, const char *fmt,...) __attribute__((format(printf, 2, 3)));

static void
buf_printf(Buf *b, const char *fmt,...)
{
	va_list		ap;
	int			n;

	for (;;)
	{
		size_t		room = b->cap - b->len;

		va_start(ap, fmt);
		n = vsnprintf(b->s ? b->s + b->len : NULL, room, fmt, ap);
		va_end(ap);
		if (n < 0)
			return;
		if ((size_t) n < room)
		{
			b->len += n;
			return;
		}
		b->cap = b->cap * 2 + n + 256;
		if ((b->s = realloc(b->s, b->cap)) == NULL)
			relay_out_of_memory();
	}
}

/* A label value escaped per the text format (backslash, quote, newline). */
static void
buf_label(Buf *b, const char *v)
{
	for (; *v; v++)
	{
		if (*v == '\\')
			buf_printf(b, "\\\\");
		else if (*v == '"')
			buf_printf(b, "\\\"");
		else if (*v == '\n')
			buf_printf(b, "\\n");
		else
			buf_printf(b, "%c", *v);
	}
}

static void
reply_json(HttpReply *reply, int status, json_t *obj)
{
	reply->status = status;
	reply->content_type = "application/json";
	reply->body = json_dumps(obj, JSON_COMPACT);
	if (reply->body == NULL)
		relay_out_of_memory();
	reply->len = strlen(reply->body);
	json_decref(obj);
}

static void
reply_error(HttpReply *reply, int status, const char *msg)
{
	reply_json(reply, status, json_pack("{s:s}", "error", msg));
}

static void
serve_search(IndexHttpArg *a, void *request, HttpReply *reply)
{
	const char *q = http_query_arg(request, "q"),
			   *table = http_query_arg(request, "table"),
			   *limit_s = http_query_arg(request, "limit");
	char		err[1024];
	long		limit = 10;
	sqlite3    *db;
	IndexHit   *hits;
	int			n;

	if (q == NULL || q[0] == '\0')
	{
		reply_error(reply, 400, "missing query: GET /search?q=WORDS[&table=schema.table][&limit=N]");
		return;
	}
	if (table != NULL && table[0] == '\0')
		table = NULL;
	if (limit_s != NULL && limit_s[0] != '\0')
	{
		char	   *end;

		limit = strtol(limit_s, &end, 10);
		if (*end != '\0' || limit < 1 || limit > 10000)
		{
			reply_error(reply, 400, "limit must be a number from 1 to 10000");
			return;
		}
	}
	if ((db = idx_open(a->db_path, true, err, sizeof(err))) == NULL)
	{
		reply_error(reply, 500, err);
		return;
	}
	n = idx_search(db, table, q, (int) limit, &hits, err, sizeof(err));
	sqlite3_close(db);
	if (n < 0)
	{
		reply_error(reply, 400, err);
		return;
	}
	reply_json(reply, 200, idx_hits_json(q, hits, n));
	idx_free_hits(hits, n);
}

static void
serve_metrics(IndexHttpArg *a, HttpReply *reply)
{
	IndexShared *sh = a->shared;
	Buf			b = {0};

	pthread_mutex_lock(&sh->mu);
	buf_printf(&b, "# HELP cdc_index_up 1 while cdc-index runs.\n# TYPE cdc_index_up gauge\ncdc_index_up 1\n");
	buf_printf(&b, "# HELP cdc_index_messages_applied_total Kafka messages applied to the index (committed to SQLite).\n"
			   "# TYPE cdc_index_messages_applied_total counter\ncdc_index_messages_applied_total %" PRIu64 "\n",
			   sh->messages_applied);
	buf_printf(&b, "# HELP cdc_index_batches_committed_total SQLite transactions committed (changes and offsets together).\n"
			   "# TYPE cdc_index_batches_committed_total counter\ncdc_index_batches_committed_total %" PRIu64 "\n",
			   sh->batches_committed);
	buf_printf(&b, "# HELP cdc_index_applied_offset Next offset to apply per partition: every message before it is in the index.\n"
			   "# TYPE cdc_index_applied_offset gauge\n");
	for (int i = 0; i < sh->nparts; i++)
	{
		buf_printf(&b, "cdc_index_applied_offset{topic=\"");
		buf_label(&b, sh->tables[sh->parts[i].table].topic);
		buf_printf(&b, "\",partition=\"%d\"} %" PRId64 "\n", (int) sh->parts[i].partition,
				   sh->parts[i].applied < 0 ? 0 : sh->parts[i].applied);
	}
	buf_printf(&b, "# HELP cdc_index_lag_messages High watermark (last stable offset) minus the applied offset, per partition.\n"
			   "# TYPE cdc_index_lag_messages gauge\n");
	for (int i = 0; i < sh->nparts; i++)
	{
		int64_t		lag = 0;

		if (sh->parts[i].high >= 0)
			lag = sh->parts[i].high - (sh->parts[i].applied < 0 ? 0 : sh->parts[i].applied);
		buf_printf(&b, "cdc_index_lag_messages{topic=\"");
		buf_label(&b, sh->tables[sh->parts[i].table].topic);
		buf_printf(&b, "\",partition=\"%d\"} %" PRId64 "\n", (int) sh->parts[i].partition, lag < 0 ? 0 : lag);
	}
	pthread_mutex_unlock(&sh->mu);
	reply->status = 200;
	reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
	reply->body = b.s;
	reply->len = b.len;
}

void
index_http_handler(void *arg, const char *path, void *request, HttpReply *reply)
{
	IndexHttpArg *a = arg;

	if (a->search && strcmp(path, "/search") == 0)
		serve_search(a, request, reply);
	else if (a->metrics && strcmp(path, "/metrics") == 0)
		serve_metrics(a, reply);
	else
		reply_error(reply, 404, a->search ? "not found: GET /search?q=WORDS" : "not found: GET /metrics");
}
