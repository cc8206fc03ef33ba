/*
 * index_main.c: the cdc-index program: `cdc-index run` follows the relay's
 * table topics (read_committed, manual partition assignment) into a SQLite
 * database, and `cdc-index search` queries it.
 *
 * Exactly-once effect: the next offset of every partition is stored in the
 * same SQLite transaction as the changes of the messages before it, and a
 * start seeks each partition to its stored offset.  Kafka's consumer group
 * offsets are never committed nor read.  A kill at any moment leaves a
 * database whose rows and offsets agree; the next start goes on from there.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "index.h"
#include "log.h"
#include "topic.h"

#define TRY_HELP "Try \"cdc-index --help\" for more information.\n"

static volatile sig_atomic_t stop_requested;

static void
on_signal(int sig)
{
	if (sig != SIGHUP)
		stop_requested = 1;
}

/* A message to step over (--skip TOPIC:PARTITION:OFFSET). */
typedef struct SkipPoint
{
	char	   *topic;
	int32_t		partition;
	int64_t		offset;
} SkipPoint;

/* The options of `run` (read once, then immutable). */
typedef struct RunOpts
{
	const char *brokers;
	const char *db_path;
	const char *prefix;
	const char *serve;
	const char *metrics;
	IndexTable *tables;
	int			ntables;
	char	  **kafka_conf;		/* key=value pairs of -X */
	int			nkafka_conf;
	SkipPoint  *skips;
	int			nskips;
	int			batch;
	int			v;
} RunOpts;

static void
usage(void)
{
	printf("cdc-index keeps a SQLite full-text search index that follows cdc-relay's table topics.\n\n"
		   "Usage:\n"
		   "  cdc-index run -b BROKERS --db FILE --topic-prefix PREFIX --table SCHEMA.TABLE[:COL,...]... [OPTION]...\n"
		   "  cdc-index search --db FILE [--table SCHEMA.TABLE] [--limit N] [--json] QUERY\n\n"
		   "run options:\n"
		   "  -b, --brokers=LIST         Kafka bootstrap servers\n"
		   "      --db=FILE              the SQLite database (created when missing)\n"
		   "      --topic-prefix=PREFIX  the relay's --topic-prefix\n"
		   "      --table=S.T[:C1,C2]    follow table S.T (topic PREFIX.S.T); index its text columns C1, C2\n"
		   "                             with FTS5 (repeat for more tables; without columns: rows only)\n"
		   "      --serve=ADDR           answer GET /search?q=...&table=&limit= with JSON on ADDR\n"
		   "                             (HOST:PORT, :PORT or PORT; port 0: any free port, logged)\n"
		   "      --metrics=ADDR         Prometheus metrics on GET /metrics (may equal --serve)\n"
		   "      --batch=N              messages per SQLite transaction at most (default 1000)\n"
		   "      --skip=TOPIC:PARTITION:OFFSET  step over this one record (after a bad-record error)\n"
		   "  -X KEY=VALUE               a librdkafka consumer setting\n"
		   "  -v, --verbose              more log lines (twice: debug)\n"
		   "search options:\n"
		   "      --db=FILE              the database `run` maintains\n"
		   "      --table=S.T            only this table\n"
		   "      --limit=N              at most N results (default 10)\n"
		   "      --json                 one JSON object {\"query\", \"results\": [...]}\n"
		   "  QUERY is an SQLite FTS5 query: words (all must match), \"a phrase\", a OR b, pre*.\n"
		   "  Output: rank (bm25, lower is better) TAB table TAB key TAB snippet, best first.\n\n"
		   "Other:\n"
		   "  -h, --help                 this help\n"
		   "  -V, --version              the version\n\n"
		   "Exit status: 0 ok (run: stopped by SIGTERM/SIGINT), 1 error, 2 bad usage.\n");
}

static char *
xstrdup(const char *s)
{
	char	   *c = strdup(s);

	if (c == NULL)
		relay_out_of_memory();
	return c;
}

static char *
xasprintf(const char *fmt, const char *a, const char *b)
{
	char	   *s;

	if (asprintf(&s, fmt, a, b) < 0)
		relay_out_of_memory();
	return s;
}

/*
 * Parse "schema.table[:col1,col2]" (no schema: public) into t.  Names are
 * taken as written (no SQL quoting).  0, or -1 with the reason printed.
 */
static int
parse_table(const char *arg, const char *prefix, IndexTable *t)
{
	char	   *spec = xstrdup(arg),
			   *colon = strchr(spec, ':'),
			   *dot;
	char		topic[TOPIC_MAX_LEN + 1];

	memset(t, 0, sizeof(*t));
	if (colon)
		*colon = '\0';
	dot = strchr(spec, '.');
	t->schema = xstrdup(dot ? spec : "public");
	if (dot)
		t->schema[dot - spec] = '\0';
	t->table = xstrdup(dot ? dot + 1 : spec);
	if (t->schema[0] == '\0' || t->table[0] == '\0')
	{
		fprintf(stderr, "cdc-index: bad --table \"%s\" (expected SCHEMA.TABLE[:COL1,COL2])\n", arg);
		free(spec);
		return -1;
	}
	t->source = xasprintf("%s.%s", t->schema, t->table);
	t->rows_name = xstrdup(t->source);
	topic_for_table(prefix, t->schema, strlen(t->schema), t->table, strlen(t->table), topic);
	t->topic = xstrdup(topic);
	t->cols_text = xstrdup(colon ? colon + 1 : "");
	if (colon)
	{
		char	   *save = NULL;

		for (char *c = strtok_r(colon + 1, ",", &save); c; c = strtok_r(NULL, ",", &save))
		{
			if (strchr(c, '"') || strcasecmp(c, "rank") == 0 || strcasecmp(c, "rowid") == 0 ||
				strcasecmp(c, "cdc_key") == 0)
			{
				fprintf(stderr, "cdc-index: column name \"%s\" of --table \"%s\" cannot be indexed "
						"(names with '\"', and rank, rowid, cdc_key, are reserved by the index)\n", c, arg);
				free(spec);
				return -1;
			}
			t->cols = realloc(t->cols, (t->ncols + 1) * sizeof(char *));
			if (t->cols == NULL)
				relay_out_of_memory();
			t->cols[t->ncols++] = xstrdup(c);
		}
	}
	t->fts_name = t->ncols > 0 ? xasprintf("%s%s", t->source, ".fts") : xstrdup("");
	free(spec);
	return 0;
}

static void
free_tables(IndexTable *tables, int n)
{
	for (int i = 0; i < n; i++)
	{
		IndexTable *t = &tables[i];

		free(t->source);
		free(t->schema);
		free(t->table);
		free(t->topic);
		for (int j = 0; j < t->ncols; j++)
			free(t->cols[j]);
		free(t->cols);
		free(t->cols_text);
		free(t->rows_name);
		free(t->fts_name);
	}
	free(tables);
}

static double
now_seconds(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* The position of a message from its headers commit_lsn and event_id (known = false when absent). */
static IndexPos
message_pos(const rd_kafka_message_t *m)
{
	IndexPos	pos = {0, 0, false};
	rd_kafka_headers_t *hdrs;
	const void *v;
	size_t		sz;
	char		buf[128];
	unsigned int hi,
				lo,
				seq;
	int			n = 0;

	if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return pos;
	if (rd_kafka_header_get_last(hdrs, "commit_lsn", &v, &sz) != RD_KAFKA_RESP_ERR_NO_ERROR ||
		v == NULL || sz >= sizeof(buf))
		return pos;
	memcpy(buf, v, sz);
	buf[sz] = '\0';
	if (sscanf(buf, "%X/%X%n", &hi, &lo, &n) != 2 || buf[n] != '\0')
		return pos;
	pos.lsn = ((uint64_t) hi << 32) | lo;
	pos.known = true;
	/* event_id: <commit_lsn>/<seq>, <commit_lsn>/<seq>/tombstone, or <point>/r/<oid>/<n> (seq 0) */
	if (rd_kafka_header_get_last(hdrs, "event_id", &v, &sz) == RD_KAFKA_RESP_ERR_NO_ERROR &&
		v != NULL && sz < sizeof(buf))
	{
		memcpy(buf, v, sz);
		buf[sz] = '\0';
		if (sscanf(buf, "%X/%X/%u", &hi, &lo, &seq) == 3)
			pos.seq = seq;
	}
	return pos;
}

/* Publish the applied offsets (after a commit) for the metrics endpoint. */
static void
publish(IndexShared *sh, const int64_t *next, uint64_t applied)
{
	pthread_mutex_lock(&sh->mu);
	for (int i = 0; i < sh->nparts; i++)
		sh->parts[i].applied = next[i];
	sh->messages_applied += applied;
	sh->batches_committed++;
	pthread_mutex_unlock(&sh->mu);
}

/* Refresh the cached high watermarks for the metrics endpoint. */
static void
refresh_watermarks(rd_kafka_t *rk, IndexShared *sh)
{
	for (int i = 0; i < sh->nparts; i++)
	{
		int64_t		lo,
					hi;

		if (rd_kafka_get_watermark_offsets(rk, sh->tables[sh->parts[i].table].topic, sh->parts[i].partition,
										   &lo, &hi) == RD_KAFKA_RESP_ERR_NO_ERROR && hi >= 0)
		{
			pthread_mutex_lock(&sh->mu);
			sh->parts[i].high = hi;
			pthread_mutex_unlock(&sh->mu);
		}
	}
}

/*
 * Wait until every table topic exists and assign all their partitions at the
 * stored offsets (from the beginning when none).  Fills sh->parts.  0, 1
 * when stopped, -1 on error.
 */
static int
assign_partitions(rd_kafka_t *rk, sqlite3 *db, const RunOpts *o, IndexShared *sh)
{
	rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(16);
	int			stored = 0,
				rc = -1;

	for (int i = 0; i < o->ntables; i++)
	{
		const struct rd_kafka_metadata *md = NULL;
		rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->tables[i].topic, NULL);
		bool		waited = false;

		for (;;)
		{
			rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, 5000);

			if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err == 0 &&
				md->topics[0].partition_cnt > 0)
				break;
			if (!waited)
				rlog(o->v, LOG_INFO, "cdc-index: waiting for topic \"%s\" (table %s) to exist: %s",
					 o->tables[i].topic, o->tables[i].source,
					 rd_kafka_err2str(err ? err : md->topic_cnt ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC));
			waited = true;
			if (md)
				rd_kafka_metadata_destroy(md);
			md = NULL;
			for (int s = 0; s < 10 && !stop_requested; s++)
				usleep(100000);
			if (stop_requested)
			{
				rd_kafka_topic_destroy(rkt);
				rc = 1;
				goto out;
			}
		}
		for (int p = 0; p < md->topics[0].partition_cnt; p++)
		{
			int32_t		part = md->topics[0].partitions[p].id;
			int64_t		off = idx_stored_offset(db, o->tables[i].topic, part);

			if (off == -2)
			{
				rlog(o->v, LOG_ERROR, "cdc-index: could not read the stored offsets: %s", sqlite3_errmsg(db));
				rd_kafka_metadata_destroy(md);
				rd_kafka_topic_destroy(rkt);
				goto out;
			}
			rd_kafka_topic_partition_list_add(list, o->tables[i].topic, part)->offset =
				off >= 0 ? off : RD_KAFKA_OFFSET_BEGINNING;
			stored += off >= 0;
			sh->parts = realloc(sh->parts, (sh->nparts + 1) * sizeof(IndexPart));
			if (sh->parts == NULL)
				relay_out_of_memory();
			sh->parts[sh->nparts++] = (IndexPart) {i, part, off, -1};
		}
		rd_kafka_metadata_destroy(md);
		rd_kafka_topic_destroy(rkt);
	}
	if (rd_kafka_assign(rk, list) != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		rlog(o->v, LOG_ERROR, "cdc-index: could not assign the partitions");
		goto out;
	}
	rlog(o->v, LOG_INFO, "cdc-index: following %d partition%s of %d topic%s (%d from stored offsets, %d from the beginning)",
		 sh->nparts, sh->nparts == 1 ? "" : "s", o->ntables, o->ntables == 1 ? "" : "s", stored, sh->nparts - stored);
	rc = 0;
out:
	rd_kafka_topic_partition_list_destroy(list);
	return rc;
}

/* The index of (topic, partition) in sh->parts, or -1. */
static int
find_part(const IndexShared *sh, const char *topic, int32_t partition)
{
	for (int i = 0; i < sh->nparts; i++)
		if (sh->parts[i].partition == partition && strcmp(sh->tables[sh->parts[i].table].topic, topic) == 0)
			return i;
	return -1;
}

static bool
is_skip(const RunOpts *o, const char *topic, int32_t partition, int64_t offset)
{
	for (int i = 0; i < o->nskips; i++)
		if (o->skips[i].partition == partition && o->skips[i].offset == offset &&
			strcmp(o->skips[i].topic, topic) == 0)
			return true;
	return false;
}

/*
 * Store the offsets that moved and commit the open SQLite transaction.  0 or -1.
 */
static int
commit_batch(sqlite3 *db, const RunOpts *o, IndexShared *sh, const int64_t *next, bool *dirty, uint64_t batch)
{
	char		err[512];

	for (int i = 0; i < sh->nparts; i++)
	{
		if (!dirty[i])
			continue;
		if (idx_store_offset(db, sh->tables[sh->parts[i].table].topic, sh->parts[i].partition, next[i]) != 0)
		{
			rlog(o->v, LOG_ERROR, "cdc-index: could not store an offset: %s", sqlite3_errmsg(db));
			return -1;
		}
		dirty[i] = false;
	}
	if (idx_exec(db, "COMMIT", err, sizeof(err)) != 0)
	{
		rlog(o->v, LOG_ERROR, "cdc-index: could not commit: %s", err);
		return -1;
	}
	publish(sh, next, batch);
	return 0;
}

/* Start the HTTP server(s). 0 or -1. */
static int
start_http(const RunOpts *o, IndexHttpArg *args, HttpServer **servers)
{
	const char *addrs[2] = {o->serve, o->metrics};
	const char *what[2] = {"search", "metrics"};
	bool		same = o->serve && o->metrics && strcmp(o->serve, o->metrics) == 0;

	for (int i = 0; i < 2; i++)
	{
		char		err[256],
					host[128];
		int			port;

		if (addrs[i] == NULL || (i == 1 && same))
			continue;
		args[i].search = (i == 0);
		args[i].metrics = (i == 1) || same;
		servers[i] = http_start(addrs[i], index_http_handler, &args[i], err, sizeof(err));
		if (servers[i] == NULL)
		{
			rlog(o->v, LOG_ERROR, "cdc-index: could not serve %s on \"%s\": %s", what[i], addrs[i], err);
			return -1;
		}
		if (http_parse_addr(addrs[i], host, sizeof(host), &port, err, sizeof(err)) != 0 || host[0] == '\0')
			snprintf(host, sizeof(host), "0.0.0.0");
		rlog(o->v, LOG_INFO, "cdc-index: serving %s on %s:%d", same ? "search and metrics" : what[i], host,
			 http_port(servers[i]));
	}
	return 0;
}

/* librdkafka's log lines as ours (opaque: the verbosity). */
static void
kafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	const int  *v = rd_kafka_opaque(rk);

	/* syslog levels: 0-3 errors, 4 warning, 5-6 notice/info, 7 debug */
	rlog(*v, level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARNING : level <= 6 ? LOG_INFO : LOG_DEBUG,
		 "librdkafka %s: %s", fac, buf);
}

/* The consumer configuration: fixed settings, then -X. NULL on error (logged). */
static rd_kafka_conf_t *
consumer_conf(const RunOpts *o)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	const char *fixed[][2] = {
		{"bootstrap.servers", o->brokers},
		{"client.id", "cdc-index"},
		/* needed by librdkafka's consumer API; nothing is ever committed to it */
		{"group.id", "cdc-index"},
		{"enable.auto.commit", "false"},
		{"enable.auto.offset.store", "false"},
		{"isolation.level", "read_committed"},
		{"enable.partition.eof", "true"},
		/* a stored offset Kafka no longer has is an error, never a silent jump */
		{"auto.offset.reset", "error"},
		/* a search finds a row a fraction of a second after its commit (brokers that do not long-poll) */
		{"fetch.wait.max.ms", "100"},
	};
	char		err[512];

	rd_kafka_conf_set_opaque(conf, (void *) &o->v);
	rd_kafka_conf_set_log_cb(conf, kafka_log);
	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (rd_kafka_conf_set(conf, fixed[i][0], fixed[i][1], err, sizeof(err)) != RD_KAFKA_CONF_OK)
			goto fail;
	for (int i = 0; i < o->nkafka_conf; i++)
	{
		char	   *kv = xstrdup(o->kafka_conf[i]),
				   *eq = strchr(kv, '=');
		rd_kafka_conf_res_t res;

		if (eq == NULL)
		{
			snprintf(err, sizeof(err), "-X %s: expected KEY=VALUE", kv);
			free(kv);
			goto fail;
		}
		*eq = '\0';
		res = rd_kafka_conf_set(conf, kv, eq + 1, err, sizeof(err));
		free(kv);
		if (res != RD_KAFKA_CONF_OK)
			goto fail;
	}
	return conf;
fail:
	rlog(o->v, LOG_ERROR, "cdc-index: bad Kafka setting: %s", err);
	rd_kafka_conf_destroy(conf);
	return NULL;
}

/*
 * The consumer loop: apply messages in batches, each batch one SQLite
 * transaction that also stores the partitions' next offsets.  Returns the
 * exit status.
 */
static int
consume(rd_kafka_t *rk, sqlite3 *db, const RunOpts *o, IndexShared *sh)
{
	int64_t    *next = calloc(sh->nparts ? sh->nparts : 1, sizeof(int64_t));
	bool	   *dirty = calloc(sh->nparts ? sh->nparts : 1, sizeof(bool));
	bool	   *at_end = calloc(sh->nparts ? sh->nparts : 1, sizeof(bool));
	bool		in_txn = false,
				caught_up = false;
	uint64_t	batch = 0;
	double		batch_start = 0,
				last_wm = 0;
	int			status = 1;
	char		err[1024];

	if (next == NULL || dirty == NULL || at_end == NULL)
		relay_out_of_memory();
	for (int i = 0; i < sh->nparts; i++)
		next[i] = sh->parts[i].applied;
	while (!stop_requested)
	{
		rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, in_txn ? 10 : 200);
		double		now;

		if (m != NULL)
		{
			const char *topic = rd_kafka_topic_name(m->rkt);
			int			pi = find_part(sh, topic, m->partition);

			if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
			{
				if (pi >= 0)
				{
					at_end[pi] = true;
					/* past transaction markers and aborted messages: nothing left before it */
					if (m->offset > next[pi])
					{
						next[pi] = m->offset;
						dirty[pi] = true;
					}
				}
			}
			else if (m->err)
			{
				bool		fatal = rd_kafka_fatal_error(rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR ||
					m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET ||
					m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE;

				rlog(o->v, fatal ? LOG_ERROR : LOG_WARNING, "cdc-index: Kafka: %s%s%s",
					 rd_kafka_message_errstr(m),
					 fatal && !rd_kafka_fatal_error(rk, NULL, 0) ? ": the index's stored offset is no longer in the topic "
					 "(deleted by retention, or the topic was recreated); the index cannot catch up from it: "
					 "remove the --db file and start again to rebuild it from the beginning" : "",
					 fatal ? "" : " (retrying)");
				if (fatal)
				{
					rd_kafka_message_destroy(m);
					break;
				}
			}
			else if (pi >= 0)
			{
				int			rc = 0;

				if (!in_txn)
				{
					if (idx_exec(db, "BEGIN IMMEDIATE", err, sizeof(err)) != 0)
					{
						rlog(o->v, LOG_ERROR, "cdc-index: %s", err);
						rd_kafka_message_destroy(m);
						break;
					}
					in_txn = true;
					batch_start = now_seconds();
				}
				at_end[pi] = false;
				if (is_skip(o, topic, m->partition, m->offset))
					rlog(o->v, LOG_WARNING, "cdc-index: skipping the record at %s:%d:%" PRId64 " (--skip): "
						 "the index lacks its change", topic, (int) m->partition, m->offset);
				else
					rc = idx_apply(db, &o->tables[sh->parts[pi].table], m->key, m->key_len,
								   m->payload, m->len, message_pos(m), err, sizeof(err));
				if (rc < 0)
				{
					if (rc == -1)
					{
						rlog(o->v, LOG_ERROR, "cdc-index: bad record in topic \"%s\" partition %d offset %" PRId64
							 " (key %.*s): %s", topic, (int) m->partition, m->offset,
							 m->key ? (int) (m->key_len > 200 ? 200 : m->key_len) : 4,
							 m->key ? (const char *) m->key : "null", err);
						rlog(o->v, LOG_ERROR, "cdc-index: stopped there so that the index never silently differs "
							 "from the table; the changes before it are kept.  Fix what wrote the record, or "
							 "start again with --skip %s:%d:%" PRId64 " to step over it (the index then lacks "
							 "its change)", topic, (int) m->partition, m->offset);
						/* the messages before the bad one are applied: keep them */
						commit_batch(db, o, sh, next, dirty, batch);
						in_txn = false;
					}
					else
						rlog(o->v, LOG_ERROR, "cdc-index: could not apply the record at %s:%d:%" PRId64 ": %s",
							 topic, (int) m->partition, m->offset, err);
					rd_kafka_message_destroy(m);
					break;
				}
				next[pi] = m->offset + 1;
				dirty[pi] = true;
				batch++;
			}
			rd_kafka_message_destroy(m);
		}
		now = now_seconds();
		if ((in_txn && (m == NULL || batch >= (uint64_t) o->batch || now - batch_start >= 0.2)) ||
			(!in_txn && m == NULL))
		{
			bool		any_dirty = false;

			for (int i = 0; i < sh->nparts; i++)
				any_dirty |= dirty[i];
			if (!in_txn && any_dirty)
			{
				if (idx_exec(db, "BEGIN IMMEDIATE", err, sizeof(err)) != 0)
				{
					rlog(o->v, LOG_ERROR, "cdc-index: %s", err);
					break;
				}
				in_txn = true;
			}
			if (in_txn)
			{
				if (commit_batch(db, o, sh, next, dirty, batch) != 0)
				{
					in_txn = false;
					break;
				}
				rlog(o->v, LOG_DEBUG, "cdc-index: committed %" PRIu64 " message%s", batch, batch == 1 ? "" : "s");
				in_txn = false;
				batch = 0;
			}
		}
		if (!caught_up && !in_txn)
		{
			bool		all = true;

			for (int i = 0; i < sh->nparts; i++)
				all &= at_end[i];
			if (all)
			{
				caught_up = true;
				pthread_mutex_lock(&sh->mu);
				rlog(o->v, LOG_INFO, "cdc-index: caught up with %d partition%s (%" PRIu64 " messages applied)",
					 sh->nparts, sh->nparts == 1 ? "" : "s", sh->messages_applied);
				pthread_mutex_unlock(&sh->mu);
			}
		}
		if (now - last_wm >= 1.0)
		{
			refresh_watermarks(rk, sh);
			last_wm = now;
		}
	}
	if (stop_requested)
	{
		status = 0;
		if (in_txn && commit_batch(db, o, sh, next, dirty, batch) != 0)
			status = 1;
		else
			rlog(o->v, LOG_INFO, "cdc-index: stopping (signal); the index is committed");
	}
	else if (in_txn)
		idx_exec(db, "ROLLBACK", err, sizeof(err));
	free(next);
	free(dirty);
	free(at_end);
	return status;
}

static int
run_index(RunOpts *o)
{
	char		err[1024];
	sqlite3    *db;
	IndexShared sh;
	IndexHttpArg args[2];
	HttpServer *servers[2] = {NULL, NULL};
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk = NULL;
	int			status = 1,
				rc;

	memset(&sh, 0, sizeof(sh));
	pthread_mutex_init(&sh.mu, NULL);
	sh.tables = o->tables;
	if ((db = idx_open(o->db_path, false, err, sizeof(err))) == NULL)
	{
		rlog(o->v, LOG_ERROR, "cdc-index: %s", err);
		return 1;
	}
	if (idx_setup(db, o->tables, o->ntables, err, sizeof(err)) != 0)
	{
		rlog(o->v, LOG_ERROR, "cdc-index: %s", err);
		goto out;
	}
	for (int i = 0; i < 2; i++)
		args[i] = (IndexHttpArg) {o->db_path, false, false, &sh};
	if ((conf = consumer_conf(o)) == NULL)
		goto out;
	if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err))) == NULL)
	{
		rlog(o->v, LOG_ERROR, "cdc-index: could not create the Kafka consumer: %s", err);
		rd_kafka_conf_destroy(conf);
		goto out;
	}
	rd_kafka_poll_set_consumer(rk);
	rlog(o->v, LOG_INFO, "cdc-index %s: database %s, brokers %s", CDC_RELAY_VERSION, o->db_path, o->brokers);
	rc = assign_partitions(rk, db, o, &sh);
	if (rc != 0)
	{
		status = rc == 1 ? 0 : 1;
		goto out;
	}
	/* the HTTP thread reads sh.parts: started once they are complete */
	if (start_http(o, args, servers) != 0)
		goto out;
	status = consume(rk, db, o, &sh);
out:
	for (int i = 0; i < 2; i++)
		http_stop(servers[i]);
	if (rk)
	{
		rd_kafka_consumer_close(rk);
		rd_kafka_destroy(rk);
	}
	idx_finish(o->tables, o->ntables);
	sqlite3_close(db);
	free(sh.parts);
	pthread_mutex_destroy(&sh.mu);
	return status;
}

static int
parse_int(const char *s, long lo, long hi, long *out)
{
	char	   *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	return (s[0] == '\0' || *end != '\0' || errno != 0 || *out < lo || *out > hi) ? -1 : 0;
}

enum
{
	OPT_DB = 256, OPT_PREFIX, OPT_TABLE, OPT_SERVE, OPT_METRICS, OPT_BATCH, OPT_SKIP, OPT_LIMIT, OPT_JSON
};

static int
cmd_run(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"brokers", required_argument, NULL, 'b'},
		{"db", required_argument, NULL, OPT_DB},
		{"topic-prefix", required_argument, NULL, OPT_PREFIX},
		{"table", required_argument, NULL, OPT_TABLE},
		{"serve", required_argument, NULL, OPT_SERVE},
		{"metrics", required_argument, NULL, OPT_METRICS},
		{"batch", required_argument, NULL, OPT_BATCH},
		{"skip", required_argument, NULL, OPT_SKIP},
		{"verbose", no_argument, NULL, 'v'},
		{NULL, 0, NULL, 0}
	};
	RunOpts		o;
	char	  **table_args = NULL;
	int			ntable_args = 0,
				c,
				status = 2;
	long		n;

	memset(&o, 0, sizeof(o));
	o.batch = 1000;
	o.v = LOG_INFO;
	optind = 1;
	while ((c = getopt_long(argc, argv, "b:X:v", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 'b':
				o.brokers = optarg;
				break;
			case OPT_DB:
				o.db_path = optarg;
				break;
			case OPT_PREFIX:
				o.prefix = optarg;
				break;
			case OPT_TABLE:
				table_args = realloc(table_args, (ntable_args + 1) * sizeof(char *));
				if (table_args == NULL)
					relay_out_of_memory();
				table_args[ntable_args++] = optarg;
				break;
			case OPT_SERVE:
				o.serve = optarg;
				break;
			case OPT_METRICS:
				o.metrics = optarg;
				break;
			case OPT_BATCH:
				if (parse_int(optarg, 1, 1000000, &n) != 0)
				{
					fprintf(stderr, "cdc-index: bad --batch \"%s\" (1 to 1000000)\n", optarg);
					goto out;
				}
				o.batch = (int) n;
				break;
			case OPT_SKIP:
				{
					char	   *a = xstrdup(optarg),
							   *c2 = strrchr(a, ':'),
							   *c1;
					long		p;
					char	   *end;
					long long	off;

					c1 = c2 ? memrchr(a, ':', c2 - a) : NULL;
					if (c1 == NULL)
					{
						fprintf(stderr, "cdc-index: bad --skip \"%s\" (expected TOPIC:PARTITION:OFFSET)\n", optarg);
						free(a);
						goto out;
					}
					*c1 = *c2 = '\0';
					errno = 0;
					off = strtoll(c2 + 1, &end, 10);
					if (parse_int(c1 + 1, 0, INT32_MAX, &p) != 0 || *end != '\0' || errno || off < 0)
					{
						fprintf(stderr, "cdc-index: bad --skip \"%s\" (expected TOPIC:PARTITION:OFFSET)\n", optarg);
						free(a);
						goto out;
					}
					o.skips = realloc(o.skips, (o.nskips + 1) * sizeof(SkipPoint));
					if (o.skips == NULL)
						relay_out_of_memory();
					o.skips[o.nskips++] = (SkipPoint) {a, (int32_t) p, off};
				}
				break;
			case 'X':
				o.kafka_conf = realloc(o.kafka_conf, (o.nkafka_conf + 1) * sizeof(char *));
				if (o.kafka_conf == NULL)
					relay_out_of_memory();
				o.kafka_conf[o.nkafka_conf++] = optarg;
				break;
			case 'v':
				o.v++;
				break;
			default:
				fprintf(stderr, TRY_HELP);
				goto out;
		}
	}
	if (optind < argc)
	{
		fprintf(stderr, "cdc-index: unexpected argument \"%s\"\n" TRY_HELP, argv[optind]);
		goto out;
	}
	if (!o.brokers || !o.db_path || !o.prefix || ntable_args == 0)
	{
		fprintf(stderr, "cdc-index: run needs -b BROKERS, --db FILE, --topic-prefix PREFIX and at least one --table\n"
				TRY_HELP);
		goto out;
	}
	if (!topic_prefix_valid(o.prefix))
	{
		fprintf(stderr, "cdc-index: bad --topic-prefix \"%s\" (1 to 100 characters of a-z A-Z 0-9 . _ -)\n", o.prefix);
		goto out;
	}
	o.tables = calloc(ntable_args, sizeof(IndexTable));
	if (o.tables == NULL)
		relay_out_of_memory();
	for (int i = 0; i < ntable_args; i++)
	{
		if (parse_table(table_args[i], o.prefix, &o.tables[i]) != 0)
		{
			o.ntables = i + 1;
			goto out;
		}
		o.ntables = i + 1;
		for (int j = 0; j < i; j++)
			if (strcmp(o.tables[j].source, o.tables[i].source) == 0)
			{
				fprintf(stderr, "cdc-index: --table %s given twice\n", o.tables[i].source);
				goto out;
			}
	}
	if (o.serve)
	{
		char		host[128],
					err[256];
		int			port;

		if (http_parse_addr(o.serve, host, sizeof(host), &port, err, sizeof(err)) != 0)
		{
			fprintf(stderr, "cdc-index: bad --serve: %s\n", err);
			goto out;
		}
	}
	if (o.metrics)
	{
		char		host[128],
					err[256];
		int			port;

		if (http_parse_addr(o.metrics, host, sizeof(host), &port, err, sizeof(err)) != 0)
		{
			fprintf(stderr, "cdc-index: bad --metrics: %s\n", err);
			goto out;
		}
	}
	status = run_index(&o);
out:
	free_tables(o.tables, o.ntables);
	for (int i = 0; i < o.nskips; i++)
		free(o.skips[i].topic);
	free(o.skips);
	free(o.kafka_conf);
	free(table_args);
	return status;
}

static int
cmd_search(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"db", required_argument, NULL, OPT_DB},
		{"table", required_argument, NULL, OPT_TABLE},
		{"limit", required_argument, NULL, OPT_LIMIT},
		{"json", no_argument, NULL, OPT_JSON},
		{NULL, 0, NULL, 0}
	};
	const char *db_path = NULL,
			   *table = NULL;
	long		limit = 10;
	bool		json = false;
	int			c,
				n;
	char		err[1024];
	sqlite3    *db;
	IndexHit   *hits;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case OPT_DB:
				db_path = optarg;
				break;
			case OPT_TABLE:
				table = optarg;
				break;
			case OPT_LIMIT:
				if (parse_int(optarg, 1, 1000000, &limit) != 0)
				{
					fprintf(stderr, "cdc-index: bad --limit \"%s\"\n", optarg);
					return 2;
				}
				break;
			case OPT_JSON:
				json = true;
				break;
			default:
				fprintf(stderr, TRY_HELP);
				return 2;
		}
	}
	if (db_path == NULL || optind != argc - 1)
	{
		fprintf(stderr, "cdc-index: search needs --db FILE and one QUERY\n" TRY_HELP);
		return 2;
	}
	if (access(db_path, R_OK) != 0)
	{
		fprintf(stderr, "cdc-index: could not read database \"%s\": %s\n", db_path, strerror(errno));
		return 1;
	}
	if ((db = idx_open(db_path, true, err, sizeof(err))) == NULL)
	{
		fprintf(stderr, "cdc-index: %s\n", err);
		return 1;
	}
	n = idx_search(db, table, argv[optind], (int) limit, &hits, err, sizeof(err));
	sqlite3_close(db);
	if (n < 0)
	{
		fprintf(stderr, "cdc-index: %s\n", err);
		return 1;
	}
	if (json)
	{
		json_t	   *obj = idx_hits_json(argv[optind], hits, n);

		json_dumpf(obj, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(obj);
	}
	else
		for (int i = 0; i < n; i++)
			printf("%.6g\t%s\t%s\t%s\n", hits[i].rank, hits[i].table, hits[i].key, hits[i].snippet);
	idx_free_hits(hits, n);
	return 0;
}

int
main(int argc, char **argv)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (argc < 2)
	{
		fprintf(stderr, "cdc-index: missing command (run or search)\n" TRY_HELP);
		return 2;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)
	{
		usage();
		return 0;
	}
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0)
	{
		printf("cdc-index %s\n", CDC_RELAY_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(argv[1], "search") == 0)
		return cmd_search(argc - 1, argv + 1);
	fprintf(stderr, "cdc-index: unknown command \"%s\"\n" TRY_HELP, argv[1]);
	return 2;
}
