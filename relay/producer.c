/*
 * producer.c: the Kafka producer: configuration, delivery reports, errors.
 *
 * Delivery reports are served by rd_kafka_poll() on the main thread.  A
 * stream message carries its transaction's ring id as its opaque; a snapshot
 * message carries NULL and is counted in snap_pending / snap_failed.
 */
#include "relay.h"

#include <string.h>

static void
dr_msg_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	Relay	   *r = opaque;
	bool		ok = m->err == RD_KAFKA_RESP_ERR_NO_ERROR;

	(void) rk;
	if (!ok)
	{
		r->delivery_errors++;
		snprintf(r->last_delivery_error, sizeof(r->last_delivery_error), "%s: %s",
				 rd_kafka_topic_name(m->rkt), rd_kafka_err2str(m->err));
	}
	else
		r->delivered++;
	if (m->_private == NULL)
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

		snprintf(r->fatal, sizeof(r->fatal), "%s: %s", rd_kafka_err2name(orig), buf);
		r->fatal_set = true;
		rlog(r->v, LOG_ERROR, "fatal Kafka error: %s", r->fatal);
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
	};

	if (!set(conf, "bootstrap.servers", r->brokers, err, errlen) ||
		!set(conf, "client.id", "cdc-relay", err, errlen))
		goto fail;
	if (producer)
		for (size_t i = 0; i < sizeof(producer_defaults) / sizeof(producer_defaults[0]); i++)
			if (!set(conf, producer_defaults[i][0], producer_defaults[i][1], err, errlen))
				goto fail;
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
	r->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
	if (r->rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		rlog(r->v, LOG_ERROR, "could not create the Kafka producer: %s", err);
		return -1;
	}
	return 0;
}

void
producer_close(Relay *r)
{
	if (r->rk == NULL)
		return;
	topic_cache_free(r);
	rd_kafka_destroy(r->rk);
	r->rk = NULL;
}
