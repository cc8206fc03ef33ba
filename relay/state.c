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
 *
 * Under exactly-once the record is written inside the Kafka transaction
 * whose contents it describes (state_checkpoint_txn), and only that
 * transaction's commit makes it the relay's position (state_committed).  A
 * PostgreSQL transaction split over Kafka transactions adds "partial":
 * {"commit_lsn", "xid", "seq", "events", "tables", "messages"}: its events up
 * to seq, and the counts its end record needs, are in Kafka.  The topic is
 * read read_committed: an aborted checkpoint never counts.
 *
 * "online" (online.c): the online snapshot job under way and the jobs
 * queued behind it, with the progress delivered as of this record's
 * confirmed_lsn (job, table, where, chunks, rows, last_key, final), so that
 * a restart resumes after the last chunk delivered.
 */
#include "relay.h"
#include "online.h"

#include <jansson.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/*
 * Keep partial_json (NULL: none) as the partial transaction of the last
 * checkpoint: r->ckpt_partial_* from its commit_lsn and seq.
 */
static void
set_partial(Relay *r, const char *partial_json)
{
	json_t	   *p = partial_json ? json_loads(partial_json, 0, NULL) : NULL;
	const char *cl = json_string_value(json_object_get(p, "commit_lsn"));
	uint64_t	lsn = 0;

	free(r->ckpt_partial_json);
	r->ckpt_partial_json = NULL;
	r->ckpt_partial_lsn = 0;
	r->ckpt_partial_seq = 0;
	if (p && cl && parse_lsn(cl, &lsn) && json_is_integer(json_object_get(p, "seq")))
	{
		r->ckpt_partial_json = strdup(partial_json);
		if (r->ckpt_partial_json == NULL)
			relay_out_of_memory();
		r->ckpt_partial_lsn = lsn;
		r->ckpt_partial_seq = (uint64_t) json_integer_value(json_object_get(p, "seq"));
	}
	json_decref(p);
}

/* ProduceWait of the main thread outside the stream: serve delivery reports until a stop. */
static int
state_wait(void *arg)
{
	Relay	   *r = arg;

	rd_kafka_poll(r->rk, 50);
	return *r->stop || r->fatal_set ? -1 : 0;
}

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
	set_partial(r, NULL);
	free(r->st_online_json);
	r->st_online_json = NULL;
	state_key(r, key, sizeof(key));
	keylen = strlen(key);
	conf = kafka_base_conf(r, false, err, sizeof(err));
	if (conf == NULL)
	{
		rlog(r->v, LOG_ERROR, "%s", err);
		return -1;
	}
	rd_kafka_conf_set(conf, "enable.partition.eof", "true", NULL, 0);
	/* what committed Kafka transactions hold, never an aborted or open one */
	rd_kafka_conf_set(conf, "isolation.level", "read_committed", NULL, 0);
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
					/*
					 * The end as a read_committed consumer sees it: transaction
					 * markers (never returned) can follow the last record.  An
					 * end before hi is an open transaction (another slot's
					 * relay on this state topic): wait until it ends.
					 */
					bool		end = m->offset >= hi;

					if (end)
						next = hi;
					rd_kafka_message_destroy(m);
					if (end)
						break;
					continue;
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
						{
							json_t	   *pj = json_object_get(v, "partial");
							char	   *ps = json_is_object(pj) ? json_dumps(pj, JSON_COMPACT) : NULL;

							set_partial(r, ps);
							free(ps);
						}
						{
							json_t	   *oj = json_object_get(v, "online");

							free(r->st_online_json);
							r->st_online_json = json_is_object(oj) ? json_dumps(oj, JSON_COMPACT) : NULL;
						}
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
 * none yet) and, under exactly-once, the partial transaction partial_json (a
 * JSON object, or NULL), with the given opaque (NULL: counted in
 * snap_pending, like a snapshot row; CHECKPOINT_OPAQUE: a checkpoint whose
 * delivery makes it durable, at-least-once; CHECKPOINT_TXN_OPAQUE: one that
 * the Kafka commit makes durable).  A full queue is waited for unless the
 * opaque is CHECKPOINT_OPAQUE (the next status update tries again).  Returns
 * 0 when queued.
 */
static int
state_produce(Relay *r, uint64_t lsn, const char *partial_json, void *opaque)
{
	char		key[300];
	char		cp[24],
				conf[24];
	char		ts[32];
	time_t		now = time(NULL);
	struct tm	tm;
	json_t	   *v,
			   *partial = NULL;
	char	   *s;
	rd_kafka_resp_err_t e;

	state_key(r, key, sizeof(key));
	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%SZ", &tm);
	if (partial_json)
		partial = json_loads(partial_json, 0, NULL);
	v = json_pack("{s:s, s:s, s:s?, s:o*, s:o*, s:s, s:s, s:s, s:I, s:i, s:s, s:s, s:s}",
				  "snapshot", r->st_snapshot,
				  "consistent_point", lsn_str(r->st_consistent_point, cp),
				  "confirmed_lsn", lsn ? lsn_str(lsn, conf) : NULL,
				  "partial", partial,
				  "online", online_state_json(r->online, lsn),
				  "system_identifier", r->sysid,
				  "database", r->dbname,
				  "slot", r->cfg->slot,
				  "rows", (json_int_t) r->st_rows,
				  "tables", r->st_tables,
				  "delivery", r->eos ? "exactly-once" : "at-least-once",
				  "time", ts,
				  "relay_version", CDC_RELAY_VERSION);
	s = v ? json_dumps(v, JSON_COMPACT) : NULL;
	json_decref(v);
	if (s == NULL)
		relay_out_of_memory();
	if (opaque == NULL)
		atomic_fetch_add(&r->snap_pending, 1);
	e = produce_send(r, produce_topic(r, r->cfg->state_topic), 0, key, strlen(key), s, strlen(s), NULL,
					 opaque, opaque == CHECKPOINT_OPAQUE ? NULL : state_wait, r);
	free(s);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		if (opaque == NULL)
			atomic_fetch_sub(&r->snap_pending, 1);
		if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL || e == RD_KAFKA_RESP_ERR__STATE)
			return -1;			/* a stop, or the next status update tries again */
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
 * Exactly-once: the checkpoint record of the open Kafka transaction (begun
 * here when none is open) says that lsn, and the partial transaction
 * partial_json, are in Kafka once the transaction commits; the caller
 * commits, then calls state_committed().  Returns 0 when queued.
 */
int
state_checkpoint_txn(Relay *r, uint64_t lsn, const char *partial_json)
{
	if (txn_begin(r) != 0)
		return -1;
	return state_produce(r, lsn, partial_json, CHECKPOINT_TXN_OPAQUE);
}

/* Exactly-once: the checkpoint (lsn, partial_json) is committed: it is the relay's position now. */
void
state_committed(Relay *r, uint64_t lsn, const char *partial_json)
{
	if (lsn > r->ckpt_durable)
		r->ckpt_durable = lsn;
	set_partial(r, partial_json);
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
	if (r->eos)
	{
		TxnResult	res;

		/* in the open transaction (the snapshot's last rows), or a new one */
		if (txn_begin(r) != 0 || state_produce(r, consistent_point, NULL, CHECKPOINT_TXN_OPAQUE) != 0)
			return -1;
		res = txn_commit(r, NULL, NULL, 500);
		if (res != TXN_OK)
		{
			if (res == TXN_ABORT)
				rlog(r->v, LOG_ERROR, "Kafka transaction aborted: %s; the state record (snapshot %s) was not written",
					 r->txn_abort_reason, status);
			return -1;
		}
		state_committed(r, consistent_point, NULL);
		rlog(r->v, LOG_DEBUG, "state: snapshot %s at %s", status, lsn_str(consistent_point, lsn));
		return 0;
	}
	if (state_produce(r, consistent_point, NULL, NULL) != 0)
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
	if (state_produce(r, lsn, NULL, CHECKPOINT_OPAQUE) != 0)
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
