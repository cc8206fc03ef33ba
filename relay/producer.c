/*
 * producer.c: the Kafka producer: configuration, delivery reports, errors.
 *
 * Delivery reports are served by rd_kafka_poll() on the main thread.  A
 * stream message carries its transaction's ring id as its opaque; a snapshot
 * message carries NULL and is counted in snap_pending / snap_failed; a
 * checkpoint record of the state topic carries CHECKPOINT_OPAQUE.
 *
 * A delivery that failed for a reason retrying cannot fix (the message is too
 * large, the topic refuses it, no authorization: kafka_error_is_permanent)
 * stops the relay with kafka_reject()'s message, naming the topic, table, key
 * and size and the setting to change, instead of re-sending it forever.
 */
#include "relay.h"

#include <stdlib.h>
#include <string.h>

/* Kafka says another producer with our transactional.id took over. */
bool
kafka_error_is_fencing(rd_kafka_resp_err_t err)
{
	return err == RD_KAFKA_RESP_ERR__FENCED || err == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
		err == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH;
}

/*
 * r->fatal for a fenced producer (reason: Kafka's words).  Kafka fences a
 * producer when another one with its transactional.id initialises, and also
 * when it aborts a transaction that was open longer than
 * transaction.timeout.ms (librdkafka 2.0 reports both as fenced): when ours
 * was, that is the likely cause (the relay was paused or blocked).  Main
 * thread.
 */
void
kafka_fenced(Relay *r, const char *reason)
{
	int64_t		open_ms = r->txn_open ? now_ms() - r->txn_started_ms : 0;

	if (r->txn_open && open_ms >= r->txn_timeout_ms)
		snprintf(r->fatal, sizeof(r->fatal),
				 "fenced: Kafka aborted this instance's transaction, open for %lld ms, longer than "
				 "transaction.timeout.ms (%d ms): the relay was paused or blocked that long (or another "
				 "cdc-relay with transactional.id \"%s\" started) (Kafka: %.300s); this instance stops and "
				 "confirms nothing more; the next start resumes from the last committed checkpoint",
				 (long long) open_ms, r->txn_timeout_ms, r->cfg->transactional_id, reason);
	else
		snprintf(r->fatal, sizeof(r->fatal), KAFKA_FENCED_FMT, r->cfg->transactional_id, reason);
}

bool
kafka_error_is_permanent(rd_kafka_resp_err_t err)
{
	switch (err)
	{
		case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
		case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
		case RD_KAFKA_RESP_ERR_INVALID_RECORD:
		case RD_KAFKA_RESP_ERR_INVALID_MSG:
		case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
		case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
		case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
		case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
		case RD_KAFKA_RESP_ERR_UNSUPPORTED_FOR_MESSAGE_FORMAT:
		case RD_KAFKA_RESP_ERR_INVALID_TIMESTAMP:
		case RD_KAFKA_RESP_ERR_INVALID_REQUIRED_ACKS:
		case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
		case RD_KAFKA_RESP_ERR__INVALID_ARG:
			return true;
		default:
			return false;
	}
}

/*
 * Why Kafka will never take this message, with the fix, as one line in buf
 * (no "ERROR" prefix).  Pure: safe from any thread.
 */
const char *
kafka_reject_text(char *buf, size_t len, rd_kafka_resp_err_t err, const char *topic, const char *table,
				  const void *key, size_t keylen, size_t size)
{
	const char *fix;
	char		fixbuf[600];

	switch (err)
	{
		case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
		case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
			snprintf(fixbuf, sizeof(fixbuf),
					 "raise the limits above %zu bytes: -X message.max.bytes=N for the relay's producer, and "
					 "the topic's max.message.bytes (kafka-configs --alter --entity-type topics --entity-name %s "
					 "--add-config max.message.bytes=N) or the brokers' message.max.bytes; or keep such values "
					 "out of the captured columns", size, topic);
			fix = fixbuf;
			break;
		case RD_KAFKA_RESP_ERR_INVALID_RECORD:
		case RD_KAFKA_RESP_ERR_INVALID_MSG:
			fix = "the broker refused the record itself (a compacted topic refuses a message without a key: "
				"give the table a primary key or a replica identity, or set cleanup.policy=delete on the topic)";
			break;
		case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
		case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
			fix = "grant the relay's Kafka principal WRITE and DESCRIBE on the topic (and IDEMPOTENT_WRITE on the cluster)";
			break;
		case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
		case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
			fix = "create the topic (or allow auto.create.topics.enable on the brokers); topic names must be valid for Kafka";
			break;
		default:
			fix = "see the error above; the broker's log says more";
			break;
	}
	snprintf(buf, len, "Kafka rejected a message for good: topic %s, table %s, key %.*s%s, %zu bytes: %s; "
			 "nothing from this transaction on was confirmed to PostgreSQL; fix: %s",
			 topic, table ? table : "(none)", key ? (int) (keylen > 200 ? 200 : keylen) : 4,
			 key ? (const char *) key : "null", key && keylen > 200 ? "..." : "", size,
			 rd_kafka_err2str(err), fix);
	return buf;
}

/*
 * Log kafka_reject_text() and make the relay stop (fatal_set).  Only the
 * first rejection is logged: the ones after it are its consequences.  Main
 * thread only.
 */
void
kafka_reject(Relay *r, rd_kafka_resp_err_t err, const char *topic, const char *table,
			 const void *key, size_t keylen, size_t size)
{
	char		buf[1500];

	if (r->fatal_set)
		return;
	rlog(r->v, LOG_ERROR, "%s", kafka_reject_text(buf, sizeof(buf), err, topic, table, key, keylen, size));
	snprintf(r->fatal, sizeof(r->fatal), "a message Kafka will not take (see above)");
	r->fatal_set = true;
}

static void
dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	Relay	   *r = opaque;
	bool		ok = m->err == RD_KAFKA_RESP_ERR_NO_ERROR;

	(void) rk;
	/* messages purged after an abort or a failure are its consequences, not errors of their own */
	if (!ok && m->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE && m->err != RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
		atomic_fetch_add_explicit(&r->metrics->delivery_errors, 1, memory_order_relaxed);
	if (!ok)
	{
		snprintf(r->last_delivery_error, sizeof(r->last_delivery_error), "%s: %s",
				 rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
		if (kafka_error_is_permanent(m->err))
		{
			rd_kafka_headers_t *h = NULL;
			const void *table = NULL;
			size_t		tlen = 0;
			char		tbuf[300];

			if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
				rd_kafka_header_get_last(h, "table", &table, &tlen) == RD_KAFKA_RESP_ERR_NO_ERROR && table)
				snprintf(tbuf, sizeof(tbuf), "%.*s", (int) tlen, (const char *) table);
			else
				tbuf[0] = '\0';
			kafka_reject(r, m->err, rd_kafka_topic_name(m->rkt), tbuf[0] ? tbuf : NULL,
						 m->key, m->key_len, m->len + m->key_len);
		}
	}
	if (m->_private == CHECKPOINT_OPAQUE)
	{
		if (ok && r->ckpt_inflight > r->ckpt_durable)
			r->ckpt_durable = r->ckpt_inflight;
		else if (!ok)
			rlog(r->v, LOG_WARNING, "could not record the confirmed position in %s: %s",
				 r->cfg->state_topic, rd_kafka_err2str(m->err));
		r->ckpt_inflight = 0;
	}
	else if (m->_private == CHECKPOINT_TXN_OPAQUE)
	{
		/* exactly-once: the commit says whether it counts */
	}
	else if (m->_private == NULL)
	{
		atomic_fetch_sub(&r->snap_pending, 1);
		if (!ok)
			atomic_fetch_add(&r->snap_failed, 1);
	}
	else
		ring_delivered(r->ring, (txn_id) (uintptr_t) m->_private, ok);
}

static void
error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	Relay	   *r = opaque;

	if (err == RD_KAFKA_RESP_ERR__FATAL)
	{
		char		buf[400];
		rd_kafka_resp_err_t orig = rd_kafka_fatal_error(rk, buf, sizeof(buf));

		if (kafka_error_is_fencing(orig))
			kafka_fenced(r, buf);
		else
			snprintf(r->fatal, sizeof(r->fatal), "fatal Kafka error: %s: %s", rd_kafka_err2name(orig), buf);
		if (!r->fatal_set)
			rlog(r->v, LOG_ERROR, "%s", r->fatal);
		r->fatal_set = true;
		r->producer_dead = true;
		return;
	}
	/* transient: librdkafka retries by itself */
	rlog(r->v, err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN ? LOG_WARNING : LOG_INFO,
		 "Kafka: %s: %s", rd_kafka_err2name(err), reason);
}

static void
log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	Relay	   *r = rd_kafka_opaque(rk);

	/* syslog levels: 0-3 errors, 4 warning, 5-6 notice/info, 7 debug */
	rlog(r->v, level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARNING : level <= 6 ? LOG_INFO : LOG_DEBUG,
		 "librdkafka %s: %s", fac, buf);
}

static bool
set(rd_kafka_conf_t *conf, const char *key, const char *value, char *err, size_t errlen)
{
	char		e[256];

	if (rd_kafka_conf_set(conf, key, value, e, sizeof(e)) != RD_KAFKA_CONF_OK)
	{
		snprintf(err, errlen, "Kafka property %s%s%s: %s", key,
				 config_key_is_secret(key) ? "" : " = ",
				 config_key_is_secret(key) ? "" : value, e);
		return false;
	}
	return true;
}

/*
 * Bootstrap servers, the relay's producer defaults, then the user's -X and
 * kafka.* properties (which win).
 */
rd_kafka_conf_t *
kafka_base_conf(Relay *r, bool producer, char *err, size_t errlen)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	static const char *const producer_defaults[][2] = {
		{"enable.idempotence", "true"},
		{"acks", "all"},
		{"partitioner", "murmur2_random"},
		/*
		 * Bounded memory: at most this much waits in librdkafka's queue.  The
		 * byte limit counts keys and values only; each message also costs
		 * about 700 bytes of librdkafka structures and headers, hence the
		 * message limit (30000 small events: ~40 MB in all).
		 */
		{"queue.buffering.max.kbytes", "32768"},
		{"queue.buffering.max.messages", "30000"},
		{"linger.ms", "5"},
		/*
		 * Never time a delivery out: a timed-out message can leave a gap that
		 * later messages of its partition fill, and the replay would put a
		 * key's older changes after newer ones.  While Kafka is unreachable
		 * the queue fills and the relay stops reading (the slot holds the
		 * WAL).  config.c refuses any other value.
		 */
		{"message.timeout.ms", "0"},
	};

	if (!set(conf, "bootstrap.servers", r->brokers, err, errlen) ||
		!set(conf, "client.id", "cdc-relay", err, errlen))
		goto fail;
	if (producer)
	{
		for (size_t i = 0; i < sizeof(producer_defaults) / sizeof(producer_defaults[0]); i++)
		{
			/*
			 * Exactly-once: a message that cannot be delivered within the
			 * transaction's timeout makes the transaction abort, and the
			 * relay re-sends from its checkpoint: no gap can stay behind,
			 * so librdkafka's default (transaction.timeout.ms) applies.
			 */
			if (r->eos && strcmp(producer_defaults[i][0], "message.timeout.ms") == 0)
				continue;
			if (!set(conf, producer_defaults[i][0], producer_defaults[i][1], err, errlen))
				goto fail;
		}
		if (r->eos && !set(conf, "transactional.id", r->cfg->transactional_id, err, errlen))
			goto fail;
	}
	for (int i = 0; i < r->cfg->nkafka; i++)
		if (!set(conf, r->cfg->kafka[i].key, r->cfg->kafka[i].value, err, errlen))
			goto fail;
	rd_kafka_conf_set_opaque(conf, r);
	rd_kafka_conf_set_log_cb(conf, log_cb);
	return conf;
fail:
	rd_kafka_conf_destroy(conf);
	return NULL;
}

int
producer_open(Relay *r)
{
	char		err[512];
	rd_kafka_conf_t *conf = kafka_base_conf(r, true, err, sizeof(err));

	if (conf == NULL)
	{
		rlog(r->v, LOG_ERROR, "%s", err);
		return -1;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, dr_msg_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	{
		char		v[32];
		size_t		n = sizeof(v);

		r->txn_timeout_ms = 60000;
		if (rd_kafka_conf_get(conf, "transaction.timeout.ms", v, &n) == RD_KAFKA_CONF_OK)
			r->txn_timeout_ms = atoi(v);
	}
	r->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (r->rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		rlog(r->v, LOG_ERROR, "could not create the Kafka producer: %s", err);
		return -1;
	}
	return 0;
}

/*
 * Can the cluster be reached?  Asks for metadata (brokers only) and waits at
 * most timeout_ms.  Logs the reason with the fix and returns -1 when not.
 */
int
producer_check_cluster(Relay *r, int timeout_ms)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t e = rd_kafka_metadata(r->rk, 0, NULL, &md, timeout_ms);

	if (e == RD_KAFKA_RESP_ERR_NO_ERROR && md != NULL && md->broker_cnt > 0)
	{
		rlog(r->v, LOG_DEBUG, "Kafka cluster reached: %d brokers", md->broker_cnt);
		rd_kafka_metadata_destroy(md);
		return 0;
	}
	if (md)
		rd_kafka_metadata_destroy(md);
	rlog(r->v, LOG_ERROR, "could not reach Kafka at %s within %d s: %s; nothing was changed in PostgreSQL; "
		 "fix: check --brokers (host:port of a Kafka listener) and the security settings "
		 "(-X security.protocol=..., sasl.*, ssl.*)", r->brokers, timeout_ms / 1000,
		 e == RD_KAFKA_RESP_ERR_NO_ERROR ? "no brokers in the metadata" : rd_kafka_err2str(e));
	return -1;
}

void
producer_close(Relay *r)
{
	if (r->rk == NULL)
		return;
	topic_cache_free(r);
	produce_close(r);
	rd_kafka_destroy(r->rk);
	r->rk = NULL;
}
