/*
 * state.c: the relay's durable record in Kafka: how far the initial snapshot
 * got, and the position the relay confirmed to PostgreSQL.
 *
 * One record per slot in the state topic (default <prefix>.__state, partition
 * 0), key "<system identifier>/<database>/<slot>", value a JSON object:
 * "snapshot" ("started" or "complete"), the slot's "consistent_point", and
 * "confirmed_lsn".  Each record carries all fields, so a compacted topic
 * keeps what matters in its last record.
 *
 * "complete" is written only after every snapshot row has a successful
 * delivery report, and it lives apart from the slot: a slot without a
 * "complete" record (the relay died during the snapshot) means the snapshot
 * is taken again; streaming never starts on half a snapshot.  Keeping it in
 * Kafka, next to the data, also means that a Kafka cluster that lost the data
 * (or a new one) gets a new snapshot.
 *
 * "confirmed_lsn" is written (a checkpoint) and acknowledged by Kafka before
 * the relay reports that position as flushed to PostgreSQL.  So the slot's
 * confirmed_flush_lsn can never be ahead of it, unless someone else moved the
 * slot (pg_replication_slot_advance, or a slot dropped and re-created): that
 * is the gap pg_slot_check() stops on.
 */
#include "relay.h"

#include <jansson.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void
state_key(Relay *r, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s/%s", r->sysid, r->dbname, r->cfg->slot);
}

/*
 * Read the last record for our key into r->st_* and r->ckpt_durable (all
 * zero/empty when there is none).  Returns 0, or -1 when the state topic could
 * not be read.
 */
int
state_read(Relay *r)
{
	char		err[512];
	char		key[300];
	rd_kafka_conf_t *conf;
	rd_kafka_t *rk;
	rd_kafka_topic_t *rkt = NULL;
	rd_kafka_resp_err_t e;
	int64_t		lo = 0,
				hi = 0;
	int			rc = 0;
	size_t		keylen;

	r->st_snapshot[0] = '\0';
	r->st_consistent_point = 0;
	r->st_rows = 0;
	r->st_tables = 0;
	r->ckpt_durable = 0;
	state_key(r, key, sizeof(key));
	keylen = strlen(key);
	conf = kafka_base_conf(r, false, err, sizeof(err));
	if (conf == NULL)
	{
		rlog(r->v, LOG_ERROR, "%s", err);
		return -1;
	}
	rd_kafka_conf_set(conf, "enable.partition.eof", "true", NULL, 0);
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
	if (rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		rlog(r->v, LOG_ERROR, "could not create a Kafka consumer for the state topic: %s", err);
		return -1;
	}
	e = rd_kafka_query_watermark_offsets(rk, r->cfg->state_topic, 0, &lo, &hi, 30000);
	if (e == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART || e == RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION ||
		e == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC)
		hi = lo = 0;
	else if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		rlog(r->v, LOG_ERROR, "could not read state topic %s from Kafka at %s: %s",
			 r->cfg->state_topic, r->brokers, rd_kafka_err2str(e));
		rd_kafka_destroy(rk);
		return -1;
	}
	if (hi > lo)
	{
		rkt = rd_kafka_topic_new(rk, r->cfg->state_topic, NULL);
		if (rd_kafka_consume_start(rkt, 0, lo) != 0)
		{
			rlog(r->v, LOG_ERROR, "could not read state topic %s: %s", r->cfg->state_topic,
				 rd_kafka_err2str(rd_kafka_last_error()));
			rc = -1;
		}
		else
		{
			int64_t		next = lo;
			int			idle = 0;

			while (next < hi && idle < 30 && !*r->stop)
			{
				rd_kafka_message_t *m = rd_kafka_consume(rkt, 0, 1000);

				if (m == NULL)
				{
					idle++;
					continue;
				}
				idle = 0;
				if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
				{
					rd_kafka_message_destroy(m);
					break;
				}
				if (m->err)
				{
					rlog(r->v, LOG_ERROR, "reading state topic %s: %s", r->cfg->state_topic,
						 rd_kafka_message_errstr(m));
					rd_kafka_message_destroy(m);
					rc = -1;
					break;
				}
				next = m->offset + 1;
				if (m->key_len == keylen && memcmp(m->key, key, keylen) == 0 && m->payload)
				{
					json_error_t jerr;
					json_t	   *v = json_loadb(m->payload, m->len, 0, &jerr);
					const char *status = json_string_value(json_object_get(v, "snapshot"));
					const char *cp = json_string_value(json_object_get(v, "consistent_point"));
					const char *cl = json_string_value(json_object_get(v, "confirmed_lsn"));
					uint64_t	cpl = 0,
								confl = 0;

					if (v == NULL || status == NULL || cp == NULL || !parse_lsn(cp, &cpl) ||
						(cl != NULL && !parse_lsn(cl, &confl)))
						rlog(r->v, LOG_WARNING, "ignoring a malformed record at offset %lld of %s",
							 (long long) m->offset, r->cfg->state_topic);
					else
					{
						snprintf(r->st_snapshot, sizeof(r->st_snapshot), "%s", status);
						r->st_consistent_point = cpl;
						r->st_rows = (uint64_t) json_integer_value(json_object_get(v, "rows"));
						r->st_tables = (int) json_integer_value(json_object_get(v, "tables"));
						r->ckpt_durable = confl;
					}
					json_decref(v);
				}
				rd_kafka_message_destroy(m);
			}
			if (rc == 0 && next < hi)
			{
				rlog(r->v, LOG_ERROR, "could not read state topic %s to its end (offset %lld of %lld)",
					 r->cfg->state_topic, (long long) next, (long long) hi);
				rc = -1;
			}
			rd_kafka_consume_stop(rkt, 0);
		}
		rd_kafka_topic_destroy(rkt);
	}
	rd_kafka_destroy(rk);
	return rc;
}

/*
 * Produce the record for our key from r->st_* with confirmed_lsn = lsn (0:
 * none yet), with the given opaque (NULL: counted in snap_pending, like a
 * snapshot row; CHECKPOINT_OPAQUE: a checkpoint).  Returns 0 when queued.
 */
static int
state_produce(Relay *r, uint64_t lsn, void *opaque)
{
	char		key[300];
	char		cp[24],
				conf[24];
	char		ts[32];
	time_t		now = time(NULL);
	struct tm	tm;
	json_t	   *v;
	char	   *s;
	rd_kafka_resp_err_t e;
	rd_kafka_topic_t *rkt;

	state_key(r, key, sizeof(key));
	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	v = json_pack("{s:s, s:s, s:s?, s:s, s:s, s:s, s:I, s:i, s:s, s:s}",
				  "snapshot", r->st_snapshot,
				  "consistent_point", lsn_str(r->st_consistent_point, cp),
				  "confirmed_lsn", lsn ? lsn_str(lsn, conf) : NULL,
				  "system_identifier", r->sysid,
				  "database", r->dbname,
				  "slot", r->cfg->slot,
				  "rows", (json_int_t) r->st_rows,
				  "tables", r->st_tables,
				  "time", ts,
				  "relay_version", CDC_RELAY_VERSION);
	s = v ? json_dumps(v, JSON_COMPACT) : NULL;
	json_decref(v);
	if (s == NULL)
	{
		rlog(r->v, LOG_ERROR, "out of memory");
		return -1;
	}
	/*
	 * A topic handle asks for the topic's metadata right away (producing by
	 * name would wait for librdkafka's next periodic scan, about a second).
	 */
	rkt = rd_kafka_topic_new(r->rk, r->cfg->state_topic, NULL);
	if (opaque == NULL)
		atomic_fetch_add(&r->snap_pending, 1);
	e = rd_kafka_producev(r->rk,
						  RD_KAFKA_V_RKT(rkt),
						  RD_KAFKA_V_PARTITION(0),
						  RD_KAFKA_V_KEY(key, strlen(key)),
						  RD_KAFKA_V_VALUE(s, strlen(s)),
						  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
						  RD_KAFKA_V_OPAQUE(opaque),
						  RD_KAFKA_V_END);
	free(s);
	rd_kafka_topic_destroy(rkt);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		if (opaque == NULL)
			atomic_fetch_sub(&r->snap_pending, 1);
		if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL && opaque == CHECKPOINT_OPAQUE)
			return -1;			/* the next status update tries again */
		if (kafka_error_is_permanent(e))
			kafka_reject(r, e, r->cfg->state_topic, NULL, key, strlen(key), strlen(key));
		else
			rlog(r->v, LOG_WARNING, "could not write to state topic %s: %s", r->cfg->state_topic,
				 rd_kafka_err2str(e));
		return -1;
	}
	return 0;
}

/*
 * Record the snapshot's status and wait for Kafka's acknowledgement.  The
 * confirmed position becomes the consistent point (a new slot starts there).
 * Returns 0 when Kafka acknowledged it.
 */
int
state_write(Relay *r, const char *status, uint64_t consistent_point, uint64_t rows, int tables)
{
	uint_fast64_t failed_before = atomic_load(&r->snap_failed);
	char		lsn[24];

	snprintf(r->st_snapshot, sizeof(r->st_snapshot), "%s", status);
	r->st_consistent_point = consistent_point;
	r->st_rows = rows;
	r->st_tables = tables;
	if (state_produce(r, consistent_point, NULL) != 0)
		return -1;
	while (atomic_load(&r->snap_pending) > 0)
	{
		rd_kafka_poll(r->rk, 100);
		if (r->fatal_set)
			return -1;
		if (*r->stop)
		{
			rlog(r->v, LOG_WARNING, "stopping before the state record was delivered");
			return -1;
		}
	}
	if (atomic_load(&r->snap_failed) != failed_before)
	{
		rlog(r->v, LOG_ERROR, "could not write to state topic %s: %s", r->cfg->state_topic,
			 r->last_delivery_error);
		return -1;
	}
	r->ckpt_durable = consistent_point;
	rlog(r->v, LOG_DEBUG, "state: snapshot %s at %s", status, lsn_str(consistent_point, lsn));
	return 0;
}

/*
 * Start writing a checkpoint (confirmed position lsn) unless one is in
 * flight; its delivery report moves r->ckpt_durable (producer.c).  Returns 0
 * when one is in flight after the call.
 */
int
state_checkpoint_start(Relay *r, uint64_t lsn)
{
	if (r->ckpt_inflight != 0)
		return 0;
	if (state_produce(r, lsn, CHECKPOINT_OPAQUE) != 0)
		return -1;
	r->ckpt_inflight = lsn;
	return 0;
}

/*
 * Make lsn durable as the confirmed position: write a checkpoint and wait
 * (at most timeout_ms) for Kafka's acknowledgement.  Returns 0 when
 * r->ckpt_durable >= lsn afterwards.
 */
int
state_checkpoint_sync(Relay *r, uint64_t lsn, int timeout_ms)
{
	int64_t		until = now_ms() + timeout_ms;

	while (r->ckpt_durable < lsn && now_ms() < until && !r->producer_dead)
	{
		if (r->ckpt_inflight == 0 && state_checkpoint_start(r, lsn) != 0)
			return -1;
		rd_kafka_poll(r->rk, 50);
	}
	return r->ckpt_durable >= lsn ? 0 : -1;
}
