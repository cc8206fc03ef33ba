/*
 * produce.c: the only way the relay makes a Kafka message, and its Kafka
 * transactions.
 *
 * Everything the relay writes (row events, tombstones, truncates, logical
 * messages, snapshot rows, transaction records, state records) goes through
 * produce_send(): one cache of topic handles (produce_topic), one header
 * builder (msg_headers: the header set of each message kind, README "Kafka
 * messages"), and one backpressure loop that the caller parameterises with
 * what to do while librdkafka's bounded queue is full.
 *
 * With --delivery exactly-once the producer is transactional: every message
 * is produced inside a Kafka transaction (txn_begin / txn_commit here; when
 * to commit is the caller's decision).  Snapshot readers produce from worker
 * threads into the transaction the main thread opened; a read-write lock (the
 * "gate") keeps them out while the main thread commits and begins the next.
 */
#include "relay.h"

#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- topic handles ------------------------------------------------------------- */

typedef struct TopicHandle
{
	char	   *name;
	rd_kafka_topic_t *rkt;
} TopicHandle;

static int
handle_cmp(const void *a, const void *b)
{
	return strcmp(((const TopicHandle *) a)->name, ((const TopicHandle *) b)->name);
}

static void
handle_free(void *p)
{
	TopicHandle *h = p;

	rd_kafka_topic_destroy(h->rkt);
	free(h->name);
	free(h);
}

/*
 * The producer's handle of topic name, created at the first use (a handle
 * asks for the topic's metadata right away; producing by name would wait for
 * librdkafka's next periodic scan).  Main thread only; valid until
 * produce_close().
 */
rd_kafka_topic_t *
produce_topic(Relay *r, const char *name)
{
	TopicHandle probe = {.name = (char *) name};
	TopicHandle **found = tfind(&probe, &r->topic_handles, handle_cmp);
	TopicHandle *h;

	if (found)
		return (*found)->rkt;
	h = calloc(1, sizeof(TopicHandle));
	if (h == NULL || (h->name = strdup(name)) == NULL)
		relay_out_of_memory();
	h->rkt = rd_kafka_topic_new(r->rk, name, NULL);
	if (h->rkt == NULL || tsearch(h, &r->topic_handles, handle_cmp) == NULL)
		relay_out_of_memory();
	return h->rkt;
}

/* ---- headers -------------------------------------------------------------------- */

/* Decimal digits of v at p; returns the end.  (snprintf costs ~1,000 instructions.) */
static char *
put_u64(char *p, uint64_t v)
{
	char		tmp[24];
	int			n = 0;

	do
	{
		tmp[n++] = (char) ('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		*p++ = tmp[--n];
	return p;
}

static char *
put_str(char *p, const char *s)
{
	size_t		n = strlen(s);

	memcpy(p, s, n);
	return p + n;
}

/*
 * The headers of a message (NULL for the kinds without: state records).
 *
 *   kind             op           table commit_lsn   xid event_id                         snapshot
 *   MSG_ROW          c|u|d        yes   txn's        yes <commit_lsn>/<seq>               false
 *   MSG_TOMBSTONE    tombstone    yes   txn's        yes <commit_lsn>/<seq>/tombstone     false
 *   MSG_TRUNCATE     t            yes   txn's        yes <commit_lsn>/<seq>               false
 *   MSG_MESSAGE      m            -     txn's        yes <commit_lsn>/<seq>               false
 *   MSG_MESSAGE_NT   m            -     its own LSN  -   <lsn>/0                          false
 *   MSG_EMIT         e            -     txn's        yes <commit_lsn>/<seq>               false
 *   MSG_SNAPSHOT_ROW r            yes   consistent   -   <consistent>/r/<table oid>/<n>   true
 *                                       point
 *   MSG_TXN_BEGIN    begin        -     txn's        yes -                                -
 *   MSG_TXN_END      commit       -     txn's        yes -                                -
 *   MSG_SCHEMA       s            yes   txn's        yes <commit_lsn>/<seq>/schema        false
 *   MSG_SCHEMA_SNAPSHOT s         yes   consistent   -   <consistent>/s/<table oid>       true
 *                                       point
 *     (online chunk)                    watermark    -   <commit_lsn>/s/<table oid>/<chunk> true
 *                                       txn's            (seq: the chunk number)
 *   MSG_DDL          m            -     txn's        yes <commit_lsn>/<seq>               false
 *
 * and request_id, the transaction's request id (cdc_relay.set_request_id),
 * on every message of a transaction that has one.
 *
 * Safe from any thread.
 */
rd_kafka_headers_t *
msg_headers(const MsgMeta *m)
{
	rd_kafka_headers_t *h;
	char		id[128],
			   *p = id;
	const char *op;
	bool		events = true,
				has_xid = true;

	switch (m->kind)
	{
		case MSG_ROW:
			op = m->op == 'c' ? "c" : m->op == 'u' ? "u" : "d";
			break;
		case MSG_TOMBSTONE:
			op = "tombstone";
			break;
		case MSG_TRUNCATE:
			op = "t";
			break;
		case MSG_MESSAGE:
			op = "m";
			break;
		case MSG_EMIT:
			op = "e";
			break;
		case MSG_MESSAGE_NT:
			op = "m";
			has_xid = false;
			break;
		case MSG_SNAPSHOT_ROW:
			op = "r";
			has_xid = false;
			break;
		case MSG_TXN_BEGIN:
			op = "begin";
			events = false;
			break;
		case MSG_TXN_END:
			op = "commit";
			events = false;
			break;
		case MSG_SCHEMA:
			op = "s";
			break;
		case MSG_SCHEMA_SNAPSHOT:
			op = "s";
			has_xid = false;
			break;
		case MSG_DDL:
			op = "m";
			break;
		default:
			return NULL;
	}
	h = rd_kafka_headers_new(6);
	rd_kafka_header_add(h, "op", 2, op, -1);
	if (m->table && m->table[0])
		rd_kafka_header_add(h, "table", 5, m->table, -1);
	rd_kafka_header_add(h, "commit_lsn", 10, m->commit_lsn, -1);
	if (has_xid && m->xid && m->xid[0])
		rd_kafka_header_add(h, "xid", 3, m->xid, -1);
	if (m->request_id != NULL)
		rd_kafka_header_add(h, "request_id", 10, m->request_id, -1);
	if (events)
	{
		p = put_str(p, m->commit_lsn);
		*p++ = '/';
		if (m->kind == MSG_SNAPSHOT_ROW)
		{
			*p++ = 'r';
			*p++ = '/';
			p = put_str(p, m->relid);
			*p++ = '/';
		}
		if (m->kind == MSG_SCHEMA_SNAPSHOT)
		{
			*p++ = 's';
			*p++ = '/';
			p = put_str(p, m->relid);
			if (m->seq > 0)
			{
				*p++ = '/';
				p = put_u64(p, m->seq);
			}
		}
		else
			p = put_u64(p, m->kind == MSG_MESSAGE_NT ? 0 : m->seq);
		if (m->kind == MSG_TOMBSTONE)
			p = put_str(p, "/tombstone");
		if (m->kind == MSG_SCHEMA)
			p = put_str(p, "/schema");
		rd_kafka_header_add(h, "event_id", 8, id, p - id);
		rd_kafka_header_add(h, "snapshot", 8, m->kind == MSG_SNAPSHOT_ROW ||
							m->kind == MSG_SCHEMA_SNAPSHOT ? "true" : "false", -1);
	}
	return h;
}

/* ---- producing -------------------------------------------------------------------- */

/*
 * Queue one message: topic rkt (partition: RD_KAFKA_PARTITION_UA for the
 * partitioner's choice), key and value (NULL: none; copied), the headers of
 * meta (NULL: none), opaque for the delivery report (producer.c).  While
 * librdkafka's queue is full, calls wait(warg) between attempts: it serves
 * whatever must go on meanwhile and returns 0 to try again, anything else to
 * give up.  Returns RD_KAFKA_RESP_ERR_NO_ERROR when queued,
 * RD_KAFKA_RESP_ERR__QUEUE_FULL when wait gave up (__STATE: gave up waiting
 * for a Kafka transaction to be begun), or the error that makes
 * Kafka refuse the message for good (the caller reports it: kafka_reject()
 * on the main thread, kafka_reject_text() elsewhere).  Under exactly-once, a
 * Kafka transaction must be open (txn_begin); any thread.
 */
rd_kafka_resp_err_t
produce_send(Relay *r, rd_kafka_topic_t *rkt, int32_t partition, const void *key, size_t keylen,
			 const void *value, size_t vallen, const MsgMeta *meta, void *opaque,
			 ProduceWait wait, void *warg)
{
	rd_kafka_headers_t *h = meta ? msg_headers(meta) : NULL;
	rd_kafka_resp_err_t e;

	for (;;)
	{
		if (r->eos)
		{
			pthread_rwlock_rdlock(&r->txn_gate);
			if (!r->txn_open)
			{
				/*
				 * Between a commit and the next begin: snapshot readers
				 * wait; the main thread begins before it produces, so this
				 * is a bug there: refused.
				 */
				pthread_rwlock_unlock(&r->txn_gate);
				if (wait != produce_wait_sleep || wait(warg) != 0)
				{
					e = RD_KAFKA_RESP_ERR__STATE;
					break;
				}
				continue;
			}
		}
		e = rd_kafka_producev(r->rk,
							  RD_KAFKA_V_RKT(rkt),
							  RD_KAFKA_V_PARTITION(partition),
							  RD_KAFKA_V_KEY((void *) key, key ? keylen : 0),
							  RD_KAFKA_V_VALUE((void *) value, value ? vallen : 0),
							  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
							  RD_KAFKA_V_HEADERS(h),
							  RD_KAFKA_V_OPAQUE(opaque),
							  RD_KAFKA_V_END);
		if (r->eos)
			pthread_rwlock_unlock(&r->txn_gate);
		if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			atomic_fetch_add(&r->txn_messages, 1);
			return e;
		}
		if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		if (wait == NULL || wait(warg) != 0)
			break;
	}
	/* librdkafka owns the headers only once the message is queued */
	if (h)
		rd_kafka_headers_destroy(h);
	return e;
}

/* A ProduceWait for threads other than the main one: sleep 1 ms, give up when *arg is set. */
int
produce_wait_sleep(void *arg)
{
	const atomic_int *abort_flag = arg;

	if (abort_flag && atomic_load(abort_flag))
		return -1;
	usleep(1000);
	return 0;
}

/* ---- Kafka transactions (exactly-once) ------------------------------------------------ */

/*
 * Log a transactional error and say what it means for the relay: TXN_FATAL
 * (fatal_set: the producer can do nothing more; a fenced producer says who
 * fenced it), TXN_ABORT (abort the transaction and re-send from the last
 * checkpoint) or TXN_RETRY (call again).  Takes ownership of error.
 */
static TxnResult
txn_error(Relay *r, rd_kafka_error_t *error, const char *what)
{
	rd_kafka_resp_err_t code = rd_kafka_error_code(error);
	TxnResult	res;

	if (rd_kafka_error_is_fatal(error) || r->producer_dead)
	{
		rd_kafka_resp_err_t orig = code;
		char		reason[400];

		if (code == RD_KAFKA_RESP_ERR__FATAL)
			orig = rd_kafka_fatal_error(r->rk, reason, sizeof(reason));
		else
			snprintf(reason, sizeof(reason), "%s", rd_kafka_error_string(error));
		if (kafka_error_is_fencing(orig))
			kafka_fenced(r, reason);
		else
			snprintf(r->fatal, sizeof(r->fatal), "fatal Kafka error while %s: %s: %s", what,
					 rd_kafka_err2name(orig), reason);
		if (!r->fatal_set)
			rlog(r->v, LOG_ERROR, "%s", r->fatal);
		r->fatal_set = true;
		r->producer_dead = true;
		res = TXN_FATAL;
	}
	else if (rd_kafka_error_txn_requires_abort(error))
	{
		snprintf(r->txn_abort_reason, sizeof(r->txn_abort_reason), "%s: %s", what,
				 rd_kafka_error_string(error));
		res = TXN_ABORT;
	}
	else if (rd_kafka_error_is_retriable(error) || code == RD_KAFKA_RESP_ERR__TIMED_OUT)
		res = TXN_RETRY;
	else
	{
		/* neither fatal nor abortable nor retriable: a state the relay did not expect */
		snprintf(r->fatal, sizeof(r->fatal), "Kafka transaction error while %s: %s", what,
				 rd_kafka_error_string(error));
		if (!r->fatal_set)
			rlog(r->v, LOG_ERROR, "%s", r->fatal);
		r->fatal_set = true;
		res = TXN_FATAL;
	}
	rd_kafka_error_destroy(error);
	return res;
}

/*
 * Exactly-once: initialise the producer's transactions.  Kafka fences every
 * older producer with the same transactional.id and aborts its open
 * transaction, so that read_committed consumers (and state_read) go on past
 * it.  Waits while Kafka is away (until a stop request).  0, or -1 (logged).
 */
int
txn_init(Relay *r)
{
	for (;;)
	{
		rd_kafka_error_t *error = rd_kafka_init_transactions(r->rk, 10000);

		if (error == NULL)
		{
			rlog(r->v, LOG_DEBUG, "Kafka transactions initialised (transactional.id \"%s\")",
				 r->cfg->transactional_id);
			return 0;
		}
		if (txn_error(r, error, "initialising transactions") != TXN_RETRY)
		{
			if (!r->fatal_set)
				rlog(r->v, LOG_ERROR, "could not initialise Kafka transactions: %s", r->txn_abort_reason);
			return -1;
		}
		rlog(r->v, LOG_WARNING, "waiting for Kafka's transaction coordinator (transactional.id \"%s\")",
			 r->cfg->transactional_id);
		relay_check_signals(r);
		if (*r->stop)
			return -1;
	}
}

/*
 * Begin a Kafka transaction unless one is open (exactly-once; a no-op
 * otherwise).  Main thread, outside the gate.  0, or -1 (fatal_set).
 */
int
txn_begin(Relay *r)
{
	rd_kafka_error_t *error;

	if (!r->eos || r->txn_open)
		return 0;
	error = rd_kafka_begin_transaction(r->rk);
	if (error != NULL)
	{
		txn_error(r, error, "beginning a transaction");
		if (!r->fatal_set)
		{
			snprintf(r->fatal, sizeof(r->fatal), "could not begin a Kafka transaction: %.500s", r->txn_abort_reason);
			rlog(r->v, LOG_ERROR, "%s", r->fatal);
			r->fatal_set = true;
		}
		return -1;
	}
	pthread_rwlock_wrlock(&r->txn_gate);
	r->txn_open = true;
	pthread_rwlock_unlock(&r->txn_gate);
	r->txn_started_ms = now_ms();
	atomic_store(&r->txn_messages, 0);
	return 0;
}

/*
 * Abort the open Kafka transaction (exactly-once).  Its messages are dropped
 * from librdkafka's queue; read_committed consumers never see them.  Returns
 * 0, or -1 when the producer is unusable (fatal_set).
 */
int
txn_abort(Relay *r)
{
	if (!r->eos || !r->txn_open)
		return 0;
	for (int attempt = 0;; attempt++)
	{
		rd_kafka_error_t *error = rd_kafka_abort_transaction(r->rk, 10000);
		TxnResult	res;

		if (error == NULL)
			break;
		res = txn_error(r, error, "aborting a transaction");
		if (res == TXN_FATAL)
			return -1;
		if (attempt >= 30 || *r->stop)
		{
			/* the next start (init_transactions) aborts it for us */
			snprintf(r->fatal, sizeof(r->fatal), "could not abort a Kafka transaction");
			r->fatal_set = true;
			return -1;
		}
		rlog(r->v, LOG_WARNING, "waiting for Kafka to abort a transaction");
	}
	atomic_fetch_add_explicit(&r->metrics->kafka_aborts, 1, memory_order_relaxed);
	pthread_rwlock_wrlock(&r->txn_gate);
	r->txn_open = false;
	pthread_rwlock_unlock(&r->txn_gate);
	return 0;
}

/*
 * A commit goes on for up to 15 s after a stop request: true once that has
 * passed (*deadline: 0 until the request is seen).
 */
static bool
past_stop_deadline(Relay *r, int64_t *deadline)
{
	if (*r->stop && *deadline == 0)
		*deadline = now_ms() + 15000;
	return *deadline != 0 && now_ms() > *deadline;
}

/*
 * Commit the open Kafka transaction (exactly-once; TXN_OK at once
 * otherwise).  Blocks while Kafka delivers what is queued and commits,
 * calling wait(warg) every poll_ms while it delivers (status updates, reading ahead;
 * a non-zero return does not interrupt the commit: a stop request waits for
 * it for up to 15 s).  Snapshot threads are kept out by the gate.  TXN_OK; TXN_ABORT
 * (aborted: the caller re-sends from the last checkpoint; the reason is in
 * r->txn_abort_reason); TXN_FATAL (fatal_set).
 */
TxnResult
txn_commit(Relay *r, ProduceWait wait, void *warg, int poll_ms)
{
	int64_t		stop_deadline = 0;
	TxnResult	res = TXN_OK;

	if (!r->eos || !r->txn_open)
		return TXN_OK;
	pthread_rwlock_wrlock(&r->txn_gate);

	/*
	 * First deliver what is queued, in short flushes with wait() between
	 * them: most of a commit's time.  (Calling commit_transaction() again
	 * after it timed out is not safe in librdkafka 2.0: it can fail with
	 * "Operation not valid in state CommittingTransaction".)
	 */
	while (rd_kafka_flush(r->rk, poll_ms) == RD_KAFKA_RESP_ERR__TIMED_OUT && !r->producer_dead)
	{
		if (wait)
			wait(warg);
		if (past_stop_deadline(r, &stop_deadline))
			break;
	}
	for (;;)
	{
		/*
		 * Then the commit itself (it flushes whatever is left): EndTxn,
		 * milliseconds normally; a long timeout, since a call that timed out
		 * cannot always be resumed.
		 */
		rd_kafka_error_t *error = rd_kafka_commit_transaction(r->rk, 10000);

		if (error == NULL)
		{
			r->txn_open = false;
			break;
		}
		res = txn_error(r, error, "committing a transaction");
		if (res != TXN_RETRY)
			break;
		res = TXN_OK;
		if (wait)
			wait(warg);
		if (past_stop_deadline(r, &stop_deadline))
		{
			snprintf(r->txn_abort_reason, sizeof(r->txn_abort_reason),
					 "the commit did not complete within 15 s of the stop request");
			res = TXN_ABORT;
			break;
		}
	}
	pthread_rwlock_unlock(&r->txn_gate);
	if (res == TXN_ABORT && txn_abort(r) != 0)
		res = TXN_FATAL;
	if (res == TXN_OK)
	{
		r->txn_commits++;
		atomic_fetch_add_explicit(&r->metrics->kafka_commits, 1, memory_order_relaxed);
	}
	return res;
}

/* Free the topic handles (before the producer is destroyed). */
void
produce_close(Relay *r)
{
	if (r->topic_handles)
		tdestroy(r->topic_handles, handle_free);
	r->topic_handles = NULL;
}
