/*
 * index_run.c: `cdc-index run`: the Kafka consumer loop that applies the relay's
 * table topics to the SQLite database (index_db.c), batch by batch.
 *
 * Exactly-once effect: the next offset of every partition is stored in the
 * same SQLite transaction as the changes of the messages before it, and a
 * start seeks each partition to its stored offset.  Kafka's consumer group
 * offsets are never committed nor read.  A kill at any moment leaves a
 * database whose rows and offsets agree; the next start goes on from there.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "index.h"
#include "log.h"

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
			for (int s = 0; s < 10 && !*o->stop; s++)
				usleep(100000);
			if (*o->stop)
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
		char	   *kv = strdup(o->kafka_conf[i]),
				   *eq;
		rd_kafka_conf_res_t res;

		if (kv == NULL)
			relay_out_of_memory();
		eq = strchr(kv, '=');
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
	while (!*o->stop)
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
	if (*o->stop)
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

int
index_run(const RunOpts *o)
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
