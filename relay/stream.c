/*
 * stream.c: from the replication slot into Kafka.
 *
 * START_REPLICATION with the plugin option key-prefix, so that every row
 * event arrives as <key JSON> TAB <event JSON> and the hot path parses no
 * JSON (the offsets and separators are the wire contract, src/cdc_wire.h;
 * s->seq counts what it says seq counts): the op is at a fixed offset, the relation's identity is the bytes
 * up to ,"key": (looked up in a cache of topic handles), and the Kafka key is
 * the plugin's own key bytes (null for a table without a key; the marker
 * "unknown" when the WAL does not carry the key, "truncate" for truncate
 * events: a compacted topic refuses null keys).  begin / commit / truncate /
 * message events (one per transaction or rarer) are parsed with jansson.
 *
 * Each transaction gets a ring entry at begin; every message produced for it
 * counts as pending until its delivery report; the commit closes the entry
 * with the commit's end LSN.  The flush position sent to PostgreSQL is the
 * end LSN of the last transaction fully delivered, in commit order; with
 * nothing in flight, the last position received.  When librdkafka's bounded
 * queue is full, the relay stops reading the socket (the server keeps the WAL)
 * and only serves delivery reports and status updates until there is room.
 *
 * Exactly-once (r->eos): messages go into Kafka transactions (produce.c).
 * One holds one or more whole PostgreSQL transactions; it is committed, with
 * a checkpoint record saying how far it goes (state.c), at the first
 * PostgreSQL commit after --txn-interval-ms or --txn-max-messages, when idle,
 * and in the middle of a PostgreSQL transaction only when it grew too large
 * (a "partial" checkpoint: that transaction's events up to seq).  The flush
 * position never passes the committed checkpoint (r->ckpt_durable).  A
 * transaction the server sends again that the checkpoint covers is skipped
 * (handle_begin), in both delivery modes.
 *
 * <prefix>.transactions: a begin record before a transaction's first message
 * and an end record (with its event counts) after its last.
 *
 * Request ids (cdc_relay.set_request_id): the begin carries the id; every
 * message of the transaction gets a request_id header, its end record a
 * request_id field (its begin record is the begin event, which has it).
 * Domain events (cdc_relay.emit, op "e", scan_emit) go to the topic they
 * name, in their place among the transaction's messages (handle_emit); one
 * to a topic of the relay's own stops the relay (emit_refusal).
 *
 * Schema events (op "s", plugin option schema-events) go to <prefix>.schemas
 * keyed {"schema":S,"table":T}, and transactional messages with prefix
 * CDC_PREFIX_DDL (the extension's DDL trigger) to <prefix>.ddl keyed by the
 * transaction's xid, both in the transaction's ring entry (and Kafka
 * transaction) like its other events.
 */
#include "relay.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <search.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "online.h"
#include "scan.h"
#include "topic.h"

/*
 * Kafka keys of events about no single row (README "Keyless messages"): JSON
 * strings, which no row key (always a JSON object) can equal.
 */
#define KEY_TRUNCATE "\"truncate\""
#define KEY_UNKNOWN "\"unknown\""
/* a key the WAL does not carry: ,"key":null,"key_unknown":"<why>" (cdc_wire.h) */
#define KEY_UNKNOWN_FIELD CDC_WIRE_F_KEY "null" CDC_WIRE_F_KEY_UNKNOWN

typedef struct TopicEntry
{
	char	   *ident;			/* raw bytes: "schema":S,"table":T */
	size_t		identlen;
	rd_kafka_topic_t *rkt;		/* produce_topic()'s */
	char	   *header_table;	/* schema.table, quoted where needed */

	/* metrics: events and bytes not yet added to mt (metrics_flush) */
	MetricsTable *mt;
	uint64_t	pend_events[METRICS_NOPS];
	uint64_t	pend_bytes;
	struct TopicEntry *next_dirty;	/* Stream.dirty list */
	bool		dirty;
} TopicEntry;

/* A committed transaction not yet delivered: for cdc_relay_lag_seconds. */
typedef struct PendingCommit
{
	uint64_t	end_lsn;
	int64_t		commit_us;		/* its commit time, Unix µs */
} PendingCommit;

/* Events of the open PostgreSQL transaction in one table, for its end record. */
typedef struct TableCount
{
	char	   *table;			/* display name */
	uint64_t	n;
} TableCount;

typedef enum SessionEnd
{
	SESSION_GO_ON,				/* not over: the session goes on */
	SESSION_STOP,				/* signal or endpos: clean exit */
	SESSION_RETRY,				/* connection lost / delivery failed: reconnect */
	SESSION_FATAL
} SessionEnd;

typedef struct Stream
{
	Relay	   *r;
	PGconn	   *repl;

	/* the open PostgreSQL transaction */
	txn_id		cur;			/* its ring entry, 0 = none */
	char		commit_lsn[24];
	uint64_t	commit_lsn_num;
	char		xid[24];
	uint32_t	xid_num;		/* xid, for online.c */
	uint64_t	seq;
	bool		skip_all;		/* all of it is in Kafka already (checkpoint) */
	uint64_t	skip_seq;		/* its events up to this seq are (partial checkpoint) */
	char	   *begin_event;	/* its begin event, the value of its begin record */
	size_t		begin_len;
	bool		begin_written;	/* its begin record was produced */
	TableCount *counts;			/* its events per table */
	int			ncounts;
	int			maxcounts;
	uint64_t	txn_events;		/* its events, in all */
	uint64_t	txn_messages;	/* its logical messages */
	uint64_t	txn_emitted;	/* its domain events (cdc_relay.emit) */
	char		request_id[CDC_REQUEST_ID_MAX_BYTES + 1];	/* its request id
															 * (decoded), "":
															 * none */
	int64_t		commit_us;		/* its commit time (the begin's ts), Unix µs; 0: unknown */

	uint64_t	received;		/* everything up to here was received */
	uint64_t	flushable;		/* everything up to here was delivered */
	uint64_t	reported;		/* last flush position sent */
	int64_t		last_status_ms;
	int64_t		last_checkpoint_ms;
	int64_t		last_data_ms;
	int64_t		last_heartbeat_ms;
	bool		hb_disabled;
	bool		endpos_reached;
	bool		retry_delivery; /* the session ended on a failed delivery */
	bool		retry_abort;	/* ... or on an aborted Kafka transaction */
	bool		backlog;		/* the last burst did not empty the socket */
	int64_t		commit_started_ms;	/* of the Kafka commit under way */
	uint64_t	events;
	uint64_t	txns;
	uint64_t	skipped;		/* transactions found in Kafka already */

	/* metrics */
	TopicEntry *dirty;			/* topic entries with counts to add (metrics_flush) */
	PendingCommit *pend;		/* committed, not yet delivered: a queue in commit order */
	size_t		pend_head,
				pend_len,
				pend_cap;
	uint64_t	wal_end;		/* the server's WAL end, last seen */
} Stream;

/* ---- topic cache ---------------------------------------------------------- */

static int
topic_cmp(const void *a, const void *b)
{
	const TopicEntry *x = a,
			   *y = b;

	if (x->identlen != y->identlen)
		return x->identlen < y->identlen ? -1 : 1;
	return memcmp(x->ident, y->ident, x->identlen);
}

static void
topic_entry_free(void *p)
{
	TopicEntry *e = p;

	free(e->ident);
	free(e->header_table);
	free(e);
}

void
topic_cache_free(Relay *r)
{
	if (r->topics)
		tdestroy(r->topics, topic_entry_free);
	r->topics = NULL;
	for (size_t i = 0; i < r->nknown; i++)
	{
		free(r->known_topics[i]);
		free(r->known_tables[i]);
	}
	free(r->known_topics);
	free(r->known_tables);
	r->known_topics = r->known_tables = NULL;
	r->nknown = 0;
}

/*
 * Note that the relay writes topic for table (a display name; NULL for the
 * relay's own topics).  Kafka refuses a topic whose name differs from an
 * existing one only by '.' vs '_': such a pair is logged with the fix and
 * makes the relay stop (fatal_set); returns -1 then, else 0.
 */
int
topic_register(Relay *r, const char *topic, const char *table)
{
	char		msg[1200];
	char	  **t,
			  **d;

	for (size_t i = 0; i < r->nknown; i++)
	{
		if (strcmp(r->known_topics[i], topic) == 0)
			return 0;
		if (topic_names_collide(r->known_topics[i], topic))
		{
			rlog(r->v, LOG_ERROR, "%s", topic_collision_message(msg, sizeof(msg),
																r->known_tables[i], r->known_topics[i],
																table ? table : "(the relay's own)", topic));
			snprintf(r->fatal, sizeof(r->fatal), "colliding Kafka topic names (see above)");
			r->fatal_set = true;
			return -1;
		}
	}
	t = realloc(r->known_topics, sizeof(char *) * (r->nknown + 1));
	if (t == NULL)
		relay_out_of_memory();
	r->known_topics = t;
	d = realloc(r->known_tables, sizeof(char *) * (r->nknown + 1));
	if (d == NULL)
		relay_out_of_memory();
	r->known_tables = d;
	r->known_topics[r->nknown] = strdup(topic);
	r->known_tables[r->nknown] = strdup(table ? table : "(the relay's own)");
	if (r->known_topics[r->nknown] == NULL || r->known_tables[r->nknown] == NULL)
		relay_out_of_memory();
	r->nknown++;
	return 0;
}

/*
 * The topic entry for schema/table names (decoded); its topic exists (or is
 * auto-created) once this returns it.  has_key: see admin_ensure_table().
 * NULL on failure (logged).
 */
static TopicEntry *
topic_new_entry(Relay *r, const char *ident, size_t identlen, const char *schema, size_t slen,
				const char *table, size_t tlen, int has_key)
{
	TopicEntry *e = calloc(1, sizeof(TopicEntry));
	char		topic[TOPIC_MAX_LEN + 1];
	char	   *s0 = strndup(schema, slen),
			   *t0 = strndup(table, tlen);
	bool		ok;

	if (e == NULL || s0 == NULL || t0 == NULL)
		relay_out_of_memory();
	e->ident = malloc(identlen + 1);
	if (e->ident == NULL)
		relay_out_of_memory();
	memcpy(e->ident, ident, identlen);
	e->identlen = identlen;
	topic_for_table(r->cfg->topic_prefix, schema, slen, table, tlen, topic);
	e->header_table = table_display_name(s0, t0);
	if (e->header_table == NULL)
		relay_out_of_memory();
	ok = topic_register(r, topic, e->header_table) == 0 &&
		admin_ensure_table(r, topic, s0, t0, e->header_table, has_key) == 0;
	free(s0);
	free(t0);
	if (!ok)
	{
		free(e->ident);
		free(e->header_table);
		free(e);
		return NULL;
	}
	e->rkt = produce_topic(r, topic);
	e->mt = metrics_table(r->metrics, e->header_table);
	if (e->mt == NULL)
		relay_out_of_memory();
	rlog(r->v, LOG_DEBUG, "table %s -> topic %s", e->header_table, topic);
	return e;
}

/*
 * Find (or create) the topic for the relation whose identity bytes are
 * ident: "schema":S,"table":T as the plugin wrote them.  has_key: whether
 * the event at hand shows the table has a key (1 or 0).
 */
static TopicEntry *
topic_lookup(Relay *r, const char *ident, size_t identlen, int has_key)
{
	TopicEntry	probe = {.ident = (char *) ident, .identlen = identlen};
	TopicEntry **found = tfind(&probe, &r->topics, topic_cmp);
	TopicEntry *e;
	char	   *obj;
	json_t	   *j;
	json_error_t jerr;
	json_t	   *js,
			   *jt;

	if (found)
		return *found;
	/* first event of this relation: decode the names with jansson */
	obj = malloc(identlen + 3);
	if (obj == NULL)
		relay_out_of_memory();
	obj[0] = '{';
	memcpy(obj + 1, ident, identlen);
	obj[identlen + 1] = '}';
	j = json_loadb(obj, identlen + 2, JSON_ALLOW_NUL, &jerr);
	free(obj);
	js = json_object_get(j, "schema");
	jt = json_object_get(j, "table");
	if (!json_is_string(js) || !json_is_string(jt))
	{
		rlog(r->v, LOG_ERROR, "unexpected event from the plugin: no schema/table (%s)", jerr.text);
		json_decref(j);
		return NULL;
	}
	e = topic_new_entry(r, ident, identlen, json_string_value(js), json_string_length(js),
						json_string_value(jt), json_string_length(jt), has_key);
	json_decref(j);
	if (e == NULL)
		return NULL;
	if (tsearch(e, &r->topics, topic_cmp) == NULL)
		relay_out_of_memory();
	return e;
}

/* ---- metrics ------------------------------------------------------------------ */

/* Count a message produced for t (op: an index into METRICS_OPS, or -1: bytes only). */
static inline void
note_produced(Stream *s, TopicEntry *t, int op, size_t bytes)
{
	if (op >= 0)
		t->pend_events[op]++;
	t->pend_bytes += bytes;
	if (!t->dirty)
	{
		t->dirty = true;
		t->next_dirty = s->dirty;
		s->dirty = t;
	}
}

/* Add the counts gathered since the last call to the shared counters (no lock). */
static void
metrics_flush(Stream *s)
{
	for (TopicEntry *t = s->dirty; t != NULL; t = t->next_dirty)
	{
		for (int op = 0; op < METRICS_NOPS; op++)
			if (t->pend_events[op])
			{
				atomic_fetch_add_explicit(&t->mt->events[op], t->pend_events[op], memory_order_relaxed);
				t->pend_events[op] = 0;
			}
		atomic_fetch_add_explicit(&t->mt->bytes, t->pend_bytes, memory_order_relaxed);
		t->pend_bytes = 0;
		t->dirty = false;
	}
	s->dirty = NULL;
}

/* A transaction with messages in flight committed at commit_us: until end_lsn is delivered. */
static void
pending_push(Stream *s, uint64_t end_lsn, int64_t commit_us)
{
	if (s->pend_len == s->pend_cap)
	{
		size_t		cap = s->pend_cap ? s->pend_cap * 2 : 64;
		PendingCommit *n = malloc(sizeof(PendingCommit) * cap);

		if (n == NULL)
			relay_out_of_memory();
		for (size_t i = 0; i < s->pend_len; i++)
			n[i] = s->pend[(s->pend_head + i) % s->pend_cap];
		free(s->pend);
		s->pend = n;
		s->pend_cap = cap;
		s->pend_head = 0;
	}
	s->pend[(s->pend_head + s->pend_len) % s->pend_cap] = (PendingCommit) {end_lsn, commit_us};
	s->pend_len++;
}

/*
 * Everything up to delivered is in Kafka (visible to consumers): set the
 * gauges cdc_relay_lag_seconds (by the oldest commit not delivered, or the
 * open transaction's) and cdc_relay_messages_in_flight.
 */
static void
pending_delivered(Stream *s, uint64_t delivered)
{
	RelayMetrics *m = s->r->metrics;
	int64_t		oldest = 0;

	while (s->pend_len > 0 && s->pend[s->pend_head].end_lsn <= delivered)
	{
		s->pend_head = (s->pend_head + 1) % s->pend_cap;
		s->pend_len--;
	}
	if (s->pend_len > 0)
		oldest = s->pend[s->pend_head].commit_us;
	else if (s->cur != 0 && s->begin_written && !s->skip_all)
		oldest = s->commit_us;
	atomic_store_explicit(&m->oldest_pending_us, oldest, memory_order_relaxed);
	atomic_store_explicit(&m->stream_in_flight, ring_pending(s->r->ring), memory_order_relaxed);
}

/* ---- producing -------------------------------------------------------------- */

static void maybe_send_status(Stream *s, bool force);

/* ProduceWait: while the queue is full, stop reading; serve delivery reports and status updates. */
static int
stream_wait(void *arg)
{
	Stream	   *s = arg;

	rd_kafka_poll(s->r->rk, 50);
	maybe_send_status(s, false);
	return *s->r->stop || s->r->fatal_set ? -1 : 0;
}

/*
 * While a Kafka commit runs (called every few ms; the commit serves delivery
 * reports): status updates, and for its first 200 ms, libpq reads what the
 * server sent into its buffer, so that the walsender goes on decoding while
 * Kafka acknowledges and commits; the events are handled, in order, once the
 * commit is done.  Later on (Kafka is slow or away), the socket is left to
 * fill, so that the server keeps the WAL and memory stays bounded.
 */
static int
commit_wait(void *arg)
{
	Stream	   *s = arg;

	if (s->repl && now_ms() - s->commit_started_ms < 200)
		PQconsumeInput(s->repl);
	maybe_send_status(s, false);
	return 0;
}

/*
 * Produce one message for ring entry id, counted there until its delivery
 * report.  Returns 0, or -1 to end the session (a stop, a fatal error, or a
 * message Kafka refuses for good: kafka_reject()).
 */
static int
emit(Stream *s, txn_id id, rd_kafka_topic_t *rkt, const char *key, size_t keylen,
	 const char *value, size_t vallen, const MsgMeta *m)
{
	Relay	   *r = s->r;
	rd_kafka_resp_err_t e = produce_send(r, rkt, RD_KAFKA_PARTITION_UA, key, keylen, value, vallen, m,
										 (void *) (uintptr_t) id, stream_wait, s);

	if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		ring_add(r->ring, id);
		return 0;
	}
	if (e == RD_KAFKA_RESP_ERR__STATE)
	{
		snprintf(r->fatal, sizeof(r->fatal), "internal error: a message produced outside a Kafka transaction");
		rlog(r->v, LOG_ERROR, "%s", r->fatal);
		r->fatal_set = true;
	}
	else if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
		kafka_reject(r, e, rd_kafka_topic_name(rkt), m ? m->table : NULL, key, key ? keylen : 0,
					 (key ? keylen : 0) + (value ? vallen : 0));
	return -1;
}

/* The header fields of an event of the open transaction. */
static MsgMeta
meta(Stream *s, MsgKind kind, const char *table)
{
	MsgMeta		m = {.kind = kind, .table = table, .commit_lsn = s->commit_lsn, .xid = s->xid, .seq = s->seq,
	.request_id = s->request_id[0] ? s->request_id : NULL};

	return m;
}

/* Count an event of the open transaction for its end record (table NULL: a logical message). */
static void
count_event(Stream *s, const char *table, uint64_t n)
{
	s->txn_events += n;
	if (table == NULL)
	{
		s->txn_messages += n;
		return;
	}
	for (int i = s->ncounts - 1; i >= 0; i--)
		if (s->counts[i].table == table || strcmp(s->counts[i].table, table) == 0)
		{
			s->counts[i].n += n;
			return;
		}
	if (s->ncounts == s->maxcounts)
	{
		int			m = s->maxcounts ? s->maxcounts * 2 : 8;
		TableCount *c = realloc(s->counts, sizeof(TableCount) * (size_t) m);

		if (c == NULL)
			relay_out_of_memory();
		s->counts = c;
		s->maxcounts = m;
	}
	s->counts[s->ncounts].table = strdup(table);
	if (s->counts[s->ncounts].table == NULL)
		relay_out_of_memory();
	s->counts[s->ncounts++].n = n;
}

static void
txn_state_reset(Stream *s)
{
	for (int i = 0; i < s->ncounts; i++)
		free(s->counts[i].table);
	s->ncounts = 0;
	s->txn_events = s->txn_messages = s->txn_emitted = 0;
	s->begin_written = false;
	s->skip_all = false;
	s->skip_seq = 0;
}

/* {"events":n,"tables":{...},"messages":m} of the open transaction, into o. */
static void
counts_to_json(Stream *s, json_t *o)
{
	json_t	   *t = json_object();

	for (int i = 0; i < s->ncounts; i++)
		json_object_set_new(t, s->counts[i].table, json_integer((json_int_t) s->counts[i].n));
	json_object_set_new(o, "events", json_integer((json_int_t) s->txn_events));
	json_object_set_new(o, "tables", t);
	json_object_set_new(o, "messages", json_integer((json_int_t) s->txn_messages));
	if (s->txn_emitted)
		json_object_set_new(o, "emitted", json_integer((json_int_t) s->txn_emitted));
}

/*
 * Exactly-once: commit the open Kafka transaction with a checkpoint record:
 * everything received so far is in it (at a PostgreSQL commit, or idle), and,
 * in the middle of a PostgreSQL transaction, its events up to the current
 * seq (a "partial" checkpoint).  With checkpoint_only, a transaction is begun
 * for the checkpoint when none is open.  Returns 0; -1 when the session must
 * end (retry_abort: aborted, re-send from the last checkpoint; or fatal).
 */
static int
ktxn_commit(Stream *s, bool checkpoint_only)
{
	Relay	   *r = s->r;
	char	   *partial = NULL;
	uint64_t	ckpt = s->received > r->ckpt_durable ? s->received : r->ckpt_durable;
	TxnResult	res;
	char		b1[24];

	if (!r->eos || (!r->txn_open && !checkpoint_only))
		return 0;
	if (s->cur != 0 && !s->skip_all && s->begin_written)
	{
		/* still skipping what an earlier partial checkpoint covers: that one's seq holds */
		uint64_t	seq = s->seq > s->skip_seq ? s->seq : s->skip_seq;
		json_t	   *p = json_pack("{s:s, s:s, s:I}", "commit_lsn", s->commit_lsn, "xid", s->xid,
								  "seq", (json_int_t) seq);

		if (p == NULL)
			relay_out_of_memory();
		counts_to_json(s, p);
		partial = json_dumps(p, JSON_COMPACT);
		json_decref(p);
		if (partial == NULL)
			relay_out_of_memory();
	}
	if (state_checkpoint_txn(r, ckpt, partial) != 0)
	{
		/* not even queued: a stop or a fatal error ends the session; else start over */
		res = TXN_FATAL;
		if (!r->fatal_set && !*r->stop)
		{
			snprintf(r->txn_abort_reason, sizeof(r->txn_abort_reason), "the checkpoint record could not be queued");
			txn_abort(r);
			res = TXN_ABORT;
		}
	}
	else
	{
		s->commit_started_ms = now_ms();
		res = txn_commit(r, commit_wait, s, 5);
		if (res == TXN_OK)
		{
			state_committed(r, ckpt, partial);
			s->last_checkpoint_ms = now_ms();
		}
	}
	free(partial);
	if (res == TXN_ABORT)
	{
		rlog(r->v, LOG_WARNING, "Kafka transaction aborted: %s; re-sending from %s",
			 r->txn_abort_reason, lsn_str(r->ckpt_durable, b1));
		s->retry_abort = true;
	}
	return res == TXN_OK ? 0 : -1;
}

/*
 * Exactly-once: is the open Kafka transaction due for its commit (at a
 * PostgreSQL transaction boundary)?  After --txn-interval-ms, or once it
 * holds --txn-max-messages; while the relay is behind (the server has more
 * for it than it read), only after ten times the interval: each commit stops
 * the reading until Kafka acknowledged everything, and when behind, latency
 * is the backlog's anyway.
 */
static bool
ktxn_due(Stream *s)
{
	Relay	   *r = s->r;
	int64_t		age = now_ms() - r->txn_started_ms;

	return r->eos && r->txn_open &&
		(age >= (int64_t) r->cfg->txn_interval_ms * (s->backlog ? 10 : 1) ||
		 atomic_load(&r->txn_messages) >= (uint_fast64_t) r->cfg->txn_max_messages);
}

/*
 * Before an event of the open transaction (its seq counted already): 1 when
 * Kafka has it already (the checkpoint covers it: skip it), 0 to produce it:
 * a Kafka transaction is open (exactly-once) and the transaction's begin
 * record went first.  -1 on failure.
 */
static int
event_start(Stream *s)
{
	Relay	   *r = s->r;

	if (s->skip_all || s->seq <= s->skip_seq)
		return 1;
	if (txn_begin(r) != 0)
		return -1;
	if (r->cfg->txn_records && !s->begin_written)
	{
		MsgMeta		m = meta(s, MSG_TXN_BEGIN, NULL);

		if (emit(s, s->cur, produce_topic(r, r->txn_topic), s->xid, strlen(s->xid),
				 s->begin_event, s->begin_len, &m) != 0)
			return -1;
	}
	s->begin_written = true;
	return 0;
}

/*
 * After an event: exactly-once, a Kafka transaction that holds
 * --txn-max-messages, or has been open half of transaction.timeout.ms, is
 * committed now, in the middle of the PostgreSQL transaction (its end record
 * comes in a later one).  0, or -1 to end the session.
 */
static int
event_end(Stream *s)
{
	Relay	   *r = s->r;

	if (!r->eos || !r->txn_open)
		return 0;
	if (atomic_load(&r->txn_messages) < (uint_fast64_t) r->cfg->txn_max_messages &&
		now_ms() - r->txn_started_ms < r->txn_timeout_ms / 2)
		return 0;
	rlog(r->v, LOG_DEBUG, "committing a Kafka transaction in the middle of transaction %s (%llu events so far)",
		 s->xid, (unsigned long long) s->txn_events);
	return ktxn_commit(s, false);
}

/*
 * An event of the open transaction with this op was read: it takes the
 * next seq number if the wire contract says it does (cdc_wire.h), as the
 * plugin numbered it; handle_commit checks that both counted alike.
 */
static inline void
count_seq(Stream *s, char op)
{
	if (cdc_wire_counts_in_seq(op))
		s->seq++;
}

/* A tombstone: the key, a null value, so that log compaction forgets the row. */
static int
produce_tombstone(Stream *s, TopicEntry *t, const char *key, size_t keylen)
{
	MsgMeta		m = meta(s, MSG_TOMBSTONE, t->header_table);

	if (emit(s, s->cur, t->rkt, key, keylen, NULL, 0, &m) != 0)
		return -1;
	note_produced(s, t, -1, keylen);
	return 0;
}

/* An insert/update/delete: <key JSON> TAB <event JSON>. */
static int
handle_row(Stream *s, const char *data, size_t len)
{
	Relay	   *r = s->r;
	const char *tab = memchr(data, CDC_WIRE_KEY_SEP, len);
	const char *ev,
			   *keyfield,
			   *vt;
	size_t		evlen,
				keylen;
	TopicEntry *t;
	MsgMeta		m;
	bool		nokey,
				unknown;
	int			st;

	if (tab == NULL || s->cur == 0)
		goto bad;
	keylen = (size_t) (tab - data);
	ev = tab + 1;
	evlen = len - keylen - 1;
	/* {"op":"c","schema":... */
	if (evlen < CDC_WIRE_IDENT_OFFSET + 6 ||
		memcmp(ev, CDC_WIRE_OP_OPEN, CDC_WIRE_LEN(CDC_WIRE_OP_OPEN)) != 0 ||
		ev[CDC_WIRE_OP_OFFSET + 1] != '"' || ev[CDC_WIRE_OP_OFFSET + 2] != ',')
		goto bad;
	keyfield = memmem(ev + CDC_WIRE_IDENT_OFFSET, evlen - CDC_WIRE_IDENT_OFFSET,
					  CDC_WIRE_F_KEY, CDC_WIRE_LEN(CDC_WIRE_F_KEY));
	if (keyfield == NULL)
		goto bad;

	/*
	 * "key":null is a table without a key, or, followed by key_unknown, a
	 * change whose key the WAL does not carry (the table has one): that one
	 * gets the marker key, never a null key (refused by a compacted topic).
	 */
	unknown = (size_t) (ev + evlen - keyfield) > CDC_WIRE_LEN(KEY_UNKNOWN_FIELD) &&
		memcmp(keyfield, KEY_UNKNOWN_FIELD, CDC_WIRE_LEN(KEY_UNKNOWN_FIELD)) == 0;
	/* an online snapshot tracks the keys its table's transactions touch, sent or skipped */
	online_row(r->online, ev + CDC_WIRE_IDENT_OFFSET, (size_t) (keyfield - (ev + CDC_WIRE_IDENT_OFFSET)),
			   data, keylen, s->xid_num, unknown);
	count_seq(s, ev[CDC_WIRE_OP_OFFSET]);
	if ((st = event_start(s)) != 0)
		return st > 0 ? 0 : -1;
	nokey = !unknown && keylen == 4 && memcmp(data, "null", 4) == 0;
	t = topic_lookup(r, ev + CDC_WIRE_IDENT_OFFSET,
					 (size_t) (keyfield - (ev + CDC_WIRE_IDENT_OFFSET)), nokey ? 0 : 1);
	if (t == NULL)
		return -1;
	m = meta(s, MSG_ROW, t->header_table);
	m.op = ev[CDC_WIRE_OP_OFFSET];
	s->events++;
	count_event(s, t->header_table, 1);

	/*
	 * An update that changed the key: <old key> VT <new key>.  The row no
	 * longer exists under the old key: tombstone it; the event goes under the
	 * new key (its "key" field and "before" still show the old one).
	 */
	vt = memchr(data, CDC_WIRE_NEWKEY_SEP, keylen);
	if (vt != NULL)
	{
		if (r->cfg->tombstones && produce_tombstone(s, t, data, (size_t) (vt - data)) != 0)
			return -1;
		keylen -= (size_t) (vt + 1 - data);
		data = vt + 1;
	}
	if (unknown)
	{
		data = KEY_UNKNOWN;
		keylen = strlen(KEY_UNKNOWN);
	}
	if (emit(s, s->cur, t->rkt, nokey ? NULL : data, keylen, ev, evlen, &m) != 0)
		return -1;
	note_produced(s, t, m.op == CDC_OP_INSERT ? 0 : m.op == CDC_OP_UPDATE ? 1 : m.op == CDC_OP_DELETE ? 2 : -1,
				  (nokey ? 0 : keylen) + evlen);
	/* a marker key is no row's: never tombstoned */
	if (m.op == CDC_OP_DELETE && !nokey && !unknown && r->cfg->tombstones &&
		produce_tombstone(s, t, data, keylen) != 0)
		return -1;
	return event_end(s);
bad:
	rlog(r->v, LOG_ERROR, "unexpected message from the plugin (%s): %.*s",
		 s->cur == 0 ? "row event outside a transaction" : "malformed row event",
		 (int) (len > 200 ? 200 : len), data);
	return -1;
}

/* The event as the log shows it: at most its first 200 bytes. */
#define EVENT_FMT "%.*s"
#define EVENT_ARG(data, len) (int) ((len) > 200 ? 200 : (len)), (data)

/*
 * A begin: open a ring entry for the transaction; decide whether Kafka has
 * it already (end LSN at or below the checkpoint: its commit record starts
 * below the checkpoint, as records never overlap), or part of it (a partial
 * checkpoint of this very transaction).
 */
static int
handle_begin(Stream *s, const ScanBegin *b, const char *data, size_t len)
{
	Relay	   *r = s->r;

	if (s->cur != 0 || b->commit_lsn.p == NULL ||
		!scan_text_copy(b->commit_lsn, s->commit_lsn, sizeof(s->commit_lsn)) ||
		!scan_text_copy(b->xid, s->xid, sizeof(s->xid)))
	{
		rlog(r->v, LOG_ERROR, "unexpected begin from the plugin: " EVENT_FMT, EVENT_ARG(data, len));
		return -1;
	}
	s->commit_lsn_num = b->commit_lsn_value;
	s->xid_num = (uint32_t) strtoul(s->xid, NULL, 10);
	s->commit_us = b->ts.p ? metrics_parse_ts(b->ts.p, b->ts.len) : 0;
	if (s->commit_us == 0)
		s->commit_us = metrics_now_us();
	s->cur = ring_begin(r->ring);
	if (s->cur == 0)
		relay_out_of_memory();
	s->seq = 0;
	txn_state_reset(s);
	{
		size_t		idlen;

		/* its request id: the header of each of its messages */
		if (b->request_id.p != NULL &&
			!scan_unescape(b->request_id, s->request_id, sizeof(s->request_id), &idlen))
		{
			rlog(r->v, LOG_ERROR, "unexpected request id in a begin from the plugin: " EVENT_FMT,
				 EVENT_ARG(data, len));
			return -1;
		}
		if (b->request_id.p == NULL)
			s->request_id[0] = '\0';
	}
	if (s->commit_lsn_num < r->ckpt_durable)
	{
		s->skip_all = true;
		s->skipped++;
	}
	else if (s->commit_lsn_num == r->ckpt_partial_lsn && r->ckpt_partial_json)
	{
		/* resume a transaction split over Kafka transactions: its counts so far */
		json_t	   *p = json_loads(r->ckpt_partial_json, 0, NULL);
		json_t	   *t = json_object_get(p, "tables");
		const char *name;
		json_t	   *n;

		s->skip_seq = r->ckpt_partial_seq;
		s->begin_written = true;
		json_object_foreach(t, name, n)
			count_event(s, name, (uint64_t) json_integer_value(n));
		count_event(s, NULL, (uint64_t) json_integer_value(json_object_get(p, "messages")));
		s->txn_emitted = (uint64_t) json_integer_value(json_object_get(p, "emitted"));
		s->txn_events += s->txn_emitted;
		json_decref(p);
		rlog(r->v, LOG_INFO, "transaction %s: resuming after its first %llu events, which are in Kafka",
			 s->xid, (unsigned long long) s->skip_seq);
	}
	if (r->cfg->txn_records && !s->skip_all)
	{
		char	   *m = realloc(s->begin_event, len);

		if (m == NULL)
			relay_out_of_memory();
		memcpy(m, data, len);
		s->begin_event = m;
		s->begin_len = len;
	}
	return 0;
}

/* Append s as a JSON string (quoted, escaped) to the buffer. */
static void
buf_json_string(char **buf, size_t *len, size_t *cap, const char *str)
{
	for (const char *p = str;; p++)
	{
		char		esc[8];
		const char *piece = esc;
		size_t		n;

		if (*len + 8 >= *cap)
		{
			char	   *b = realloc(*buf, *cap * 2);

			if (b == NULL)
				relay_out_of_memory();
			*buf = b;
			*cap *= 2;
		}
		if (p == str)
			(*buf)[(*len)++] = '"';
		if (*p == '\0')
			break;
		if (*p == '"' || *p == '\\')
			n = (size_t) snprintf(esc, sizeof(esc), "\\%c", *p);
		else if ((unsigned char) *p < 0x20)
			n = (size_t) snprintf(esc, sizeof(esc), "\\u%04x", (unsigned char) *p);
		else
		{
			piece = p;
			n = 1;
		}
		memcpy(*buf + *len, piece, n);
		*len += n;
	}
	(*buf)[(*len)++] = '"';
	(*buf)[*len] = '\0';
}

/*
 * The end record's value: the commit event's fields, then the relay's counts:
 * {"op":"commit","xid":..,"commit_lsn":..,"end_lsn":..,"ts":..,"events":n,
 *  "tables":{"s.t":n,...},"messages":m}.  malloc'd; *vlen its length.
 */
static char *
end_record(Stream *s, const ScanCommit *c, size_t *vlen)
{
	size_t		cap = 256,
				len = 0;
	char	   *buf = malloc(cap);
	char		num[32];

#define PUT(str) do { \
		const char *p_ = (str); \
		size_t n_ = strlen(p_); \
		while (len + n_ + 1 >= cap) { \
			char *b_ = realloc(buf, cap * 2); \
			if (b_ == NULL) relay_out_of_memory(); \
			buf = b_; cap *= 2; } \
		memcpy(buf + len, p_, n_); len += n_; buf[len] = '\0'; } while (0)
#define PUTTEXT(t) do { \
		char tb_[128]; \
		if (!scan_text_copy((t), tb_, sizeof(tb_))) tb_[0] = '\0'; \
		PUT(tb_); } while (0)

	if (buf == NULL)
		relay_out_of_memory();
	buf[0] = '\0';
	PUT(CDC_WIRE_OP_OPEN CDC_OP_COMMIT "\"");
	if (c->xid.p)
	{
		PUT(",\"xid\":");
		PUTTEXT(c->xid);
	}
	if (s->request_id[0])
	{
		PUT(",\"request_id\":");
		buf_json_string(&buf, &len, &cap, s->request_id);
	}
	PUT(",\"commit_lsn\":\"");
	PUT(s->commit_lsn);
	PUT("\",\"end_lsn\":\"");
	PUTTEXT(c->end_lsn);
	PUT("\"");
	if (c->ts.p)
	{
		/* the plugin's timestamp text has no characters that need escaping */
		PUT(",\"ts\":\"");
		PUTTEXT(c->ts);
		PUT("\"");
	}
	snprintf(num, sizeof(num), "%llu", (unsigned long long) s->txn_events);
	PUT(",\"events\":");
	PUT(num);
	PUT(",\"tables\":{");
	for (int i = 0; i < s->ncounts; i++)
	{
		if (i)
			PUT(",");
		buf_json_string(&buf, &len, &cap, s->counts[i].table);
		snprintf(num, sizeof(num), ":%llu", (unsigned long long) s->counts[i].n);
		PUT(num);
	}
	snprintf(num, sizeof(num), "%llu", (unsigned long long) s->txn_messages);
	PUT("},\"messages\":");
	PUT(num);
	if (s->txn_emitted)
	{
		snprintf(num, sizeof(num), "%llu", (unsigned long long) s->txn_emitted);
		PUT(",\"emitted\":");
		PUT(num);
	}
	PUT("}");
#undef PUT
#undef PUTTEXT
	*vlen = len;
	return buf;
}

/*
 * A commit: the transaction's end record (with its event counts), then its
 * ring entry closes at the commit's end LSN.  Exactly-once: the Kafka
 * transaction is committed here when it is old or large enough.
 */
static int
handle_commit(Stream *s, const ScanCommit *c, const char *data, size_t len)
{
	Relay	   *r = s->r;
	uint64_t	end = c->end_lsn_value;

	if (s->cur == 0 || c->end_lsn.p == NULL)
	{
		rlog(r->v, LOG_ERROR, "unexpected commit from the plugin: " EVENT_FMT, EVENT_ARG(data, len));
		return -1;
	}

	/*
	 * The plugin's count and ours must agree (cdc_wire.h says what seq
	 * counts): exactly-once resumes inside a transaction by seq, so a
	 * disagreement would skip or repeat events.
	 */
	if (c->events != s->seq)
	{
		rlog(r->v, LOG_ERROR, "transaction %s: the plugin wrote %llu events, the relay counted %llu: "
			 "the plugin and the relay disagree on the event format (src/cdc_wire.h); "
			 "fix: install the same cdc_relay version of both (cdc-relay --version, SELECT cdc_relay.version())",
			 s->xid, (unsigned long long) c->events, (unsigned long long) s->seq);
		return -1;
	}
	if (r->cfg->txn_records && s->begin_written && !s->skip_all)
	{
		size_t		vlen;
		char	   *v = end_record(s, c, &vlen);
		MsgMeta		m = meta(s, MSG_TXN_END, NULL);
		int			rc;

		rc = txn_begin(r) == 0 ? emit(s, s->cur, produce_topic(r, r->txn_topic), s->xid, strlen(s->xid),
									  v, vlen, &m) : -1;
		free(v);
		if (rc != 0)
			return -1;
	}
	ring_commit(r->ring, s->cur, end);
	if (!s->skip_all)
		online_commit(r->online, end);
	if (s->begin_written && !s->skip_all)
	{
		atomic_fetch_add_explicit(&r->metrics->transactions, 1, memory_order_relaxed);
		pending_push(s, end, s->commit_us);
	}
	s->cur = 0;
	s->txns++;
	txn_state_reset(s);
	s->request_id[0] = '\0';
	if (end > s->received)
		s->received = end;
	if (r->cfg->endpos && end >= r->cfg->endpos)
		s->endpos_reached = true;
	if (ktxn_due(s))
		return ktxn_commit(s, false);
	return 0;
}

/* A truncate: one message per table, in the table's topic, with the marker key. */
static int
handle_truncate(Stream *s, json_t *j, const char *data, size_t len)
{
	Relay	   *r = s->r;
	json_t	   *tables = json_object_get(j, "tables");
	size_t		i;
	json_t	   *tj;
	int			st;

	if (s->cur == 0)
		return -1;
	count_seq(s, CDC_OP_TRUNCATE);
	if ((st = event_start(s)) != 0)
		return st > 0 ? 0 : -1;
	s->events++;
	json_array_foreach(tables, i, tj)
	{
		json_t	   *js = json_object_get(tj, "schema"),
				   *jt = json_object_get(tj, "table");
		char		topic[TOPIC_MAX_LEN + 1];
		char	   *disp;
		MsgMeta		m;
		int			rc;

		if (!json_is_string(js) || !json_is_string(jt))
			return -1;
		topic_for_table(r->cfg->topic_prefix, json_string_value(js), json_string_length(js),
						json_string_value(jt), json_string_length(jt), topic);
		disp = table_display_name(json_string_value(js), json_string_value(jt));
		if (disp == NULL)
			relay_out_of_memory();
		if (topic_register(r, topic, disp) != 0 ||
			admin_ensure_table(r, topic, json_string_value(js), json_string_value(jt), disp, -1) != 0)
		{
			free(disp);
			return -1;
		}
		m = meta(s, MSG_TRUNCATE, disp);
		/* the marker key (it is about the whole table); the value is the event */
		rc = emit(s, s->cur, produce_topic(r, topic), KEY_TRUNCATE, strlen(KEY_TRUNCATE), data, len, &m);
		if (rc == 0)
		{
			/* rare: straight to the shared counters */
			MetricsTable *mt = metrics_table(r->metrics, disp);

			if (mt == NULL)
				relay_out_of_memory();
			atomic_fetch_add_explicit(&mt->events[3], 1, memory_order_relaxed);
			atomic_fetch_add_explicit(&mt->bytes, strlen(KEY_TRUNCATE) + len, memory_order_relaxed);
			count_event(s, disp, 1);
		}
		free(disp);
		if (rc != 0)
			return -1;
	}
	return event_end(s);
}

/*
 * OnlineEmitRow: one online snapshot row in the open (watermark) transaction:
 * an "r" event as the initial snapshot writes it (event_id <commit_lsn>/r/
 * <relid>/<n>), counted in its ring entry.  Not counted in the transaction's
 * events or seq, and never the reason for a Kafka commit in the middle of
 * the transaction: the whole chunk is in the Kafka transaction of its
 * watermark.
 */
static int
emit_online_row(void *arg, const char *key, size_t keylen, const char *value, size_t vallen,
				const char *relid, uint64_t n)
{
	Stream	   *s = arg;
	Relay	   *r = s->r;
	const char *keyfield;
	TopicEntry *t;
	MsgMeta		m;

	/* {"op":"r","schema":..,"table":..,"key":... */
	keyfield = vallen > CDC_WIRE_IDENT_OFFSET + 6 ?
		memmem(value + CDC_WIRE_IDENT_OFFSET, vallen - CDC_WIRE_IDENT_OFFSET, CDC_WIRE_F_KEY,
			   CDC_WIRE_LEN(CDC_WIRE_F_KEY)) : NULL;
	if (keyfield == NULL)
	{
		rlog(r->v, LOG_ERROR, "unexpected online snapshot row: " EVENT_FMT, EVENT_ARG(value, vallen));
		return -1;
	}
	t = topic_lookup(r, value + CDC_WIRE_IDENT_OFFSET, (size_t) (keyfield - (value + CDC_WIRE_IDENT_OFFSET)), 1);
	if (t == NULL || txn_begin(r) != 0)
		return -1;
	m = (MsgMeta) {.kind = MSG_SNAPSHOT_ROW, .table = t->header_table, .commit_lsn = s->commit_lsn, .seq = n,
	.relid = relid};
	if (emit(s, s->cur, t->rkt, key, keylen, value, vallen, &m) != 0)
		return -1;
	note_produced(s, t, -1, keylen + vallen);
	return 0;
}

/*
 * OnlineEmitShape: an online snapshot chunk's table shape in the open
 * (watermark) transaction, before the chunk's rows: to <prefix>.schemas
 * keyed as the stream's schema events, headers as the initial snapshot's
 * shapes (event_id <commit_lsn>/s/<relid>/<chunk>, snapshot=true).  Not
 * counted in the transaction's events or seq.
 */
static int
emit_online_shape(void *arg, const char *shape, size_t len, const char *relid, uint64_t chunk)
{
	Stream	   *s = arg;
	Relay	   *r = s->r;
	char	   *key,
			   *disp;
	MsgMeta		m;
	int			rc;

	if (!schema_shape_key(shape, &key, &disp))
	{
		rlog(r->v, LOG_ERROR, "unexpected result of cdc_relay.table_schema(): " EVENT_FMT, EVENT_ARG(shape, len));
		return -1;
	}
	m = (MsgMeta) {.kind = MSG_SCHEMA_SNAPSHOT, .table = disp, .commit_lsn = s->commit_lsn, .seq = chunk,
	.relid = relid};
	rc = txn_begin(r) != 0 ? -1 : emit(s, s->cur, produce_topic(r, r->schemas_topic), key, strlen(key), shape, len, &m);
	if (rc == 0)
		atomic_fetch_add_explicit(&r->metrics->schema_events, 1, memory_order_relaxed);
	free(key);
	free(disp);
	return rc;
}

/*
 * A schema event: to <prefix>.schemas, keyed {"schema":S,"table":T}
 * (compacted: the last shape of each table stays), the event as value.  It
 * carries the seq of the event after it and takes none (cdc_wire.h): it is
 * produced when that event is, and its event id is <commit_lsn>/<seq>/schema.
 */
static int
handle_schema(Stream *s, json_t *j, const char *data, size_t len)
{
	Relay	   *r = s->r;
	json_t	   *js = json_object_get(j, "schema"),
			   *jt = json_object_get(j, "table");
	json_t	   *k;
	char	   *key;
	char	   *disp;
	MsgMeta		m;
	int			st;
	int			rc;

	if (s->cur == 0 || !json_is_string(js) || !json_is_string(jt))
	{
		rlog(r->v, LOG_ERROR, "unexpected schema event from the plugin: " EVENT_FMT, EVENT_ARG(data, len));
		return -1;
	}
	s->seq++;					/* the next event's, for event_start and meta */
	st = event_start(s);
	m = meta(s, MSG_SCHEMA, NULL);
	s->seq--;
	if (st != 0)
		return st > 0 ? 0 : -1;
	/* not in s->events: those are the events that take a seq */
	k = json_pack("{s:O,s:O}", "schema", js, "table", jt);
	key = k ? json_dumps(k, JSON_COMPACT) : NULL;
	disp = table_display_name(json_string_value(js), json_string_value(jt));
	if (key == NULL || disp == NULL)
		relay_out_of_memory();
	json_decref(k);
	m.table = disp;
	rc = emit(s, s->cur, produce_topic(r, r->schemas_topic), key, strlen(key), data, len, &m);
	if (rc == 0)
	{
		atomic_fetch_add_explicit(&r->metrics->schema_events, 1, memory_order_relaxed);
	}
	free(key);
	free(disp);
	return rc != 0 ? -1 : event_end(s);
}

/*
 * A logical message: to <prefix>.messages, keyed by its prefix (prefix: the
 * decoded text); the relay's own heartbeats are not forwarded.  A message
 * outside any transaction gets a ring entry of its own, ending just after its
 * LSN (the server does not send it again once that is confirmed).
 */
static int
handle_message(Stream *s, const char *prefix, bool transactional, const ScanMessage *sm,
			   const char *data, size_t len)
{
	Relay	   *r = s->r;
	uint64_t	lsn = sm->lsn_value;
	txn_id		id;
	char		lsnbuf[24];
	MsgMeta		m;
	int			st;

	if (transactional)
	{
		if (s->cur == 0)
		{
			rlog(r->v, LOG_ERROR, "unexpected transactional message outside a transaction: " EVENT_FMT,
				 EVENT_ARG(data, len));
			return -1;
		}
		count_seq(s, CDC_OP_MESSAGE);
		/* our own heartbeat: only there to move the slot */
		if (prefix == NULL || strcmp(prefix, HEARTBEAT_PREFIX) == 0)
			return 0;
		/* online snapshots: a request, or a watermark that emits its chunk */
		if (online_prefix(prefix))
			return online_message(r->online, prefix, data, len, s->skip_all || s->seq <= s->skip_seq,
								  emit_online_row, emit_online_shape, s);
		if ((st = event_start(s)) != 0)
			return st > 0 ? 0 : -1;
		s->events++;
		count_event(s, NULL, 1);
		if (strcmp(prefix, CDC_PREFIX_DDL) == 0)
		{
			/* the DDL trigger's: <prefix>.ddl, keyed by the xid (one partition: commit order) */
			m = meta(s, MSG_DDL, NULL);
			if (emit(s, s->cur, produce_topic(r, r->ddl_topic), s->xid, strlen(s->xid), data, len, &m) != 0)
				return -1;
			atomic_fetch_add_explicit(&r->metrics->ddl_events, 1, memory_order_relaxed);
			return event_end(s);
		}
		m = meta(s, MSG_MESSAGE, NULL);
		if (emit(s, s->cur, produce_topic(r, r->messages_topic), prefix, strlen(prefix), data, len, &m) != 0)
			return -1;
		return event_end(s);
	}
	if (sm->lsn.p == NULL)
	{
		rlog(r->v, LOG_ERROR, "unexpected message from the plugin: " EVENT_FMT, EVENT_ARG(data, len));
		return -1;
	}
	if (prefix == NULL || strcmp(prefix, HEARTBEAT_PREFIX) == 0 || lsn < r->ckpt_durable)
		id = 0;					/* nothing to send (in Kafka already, when below the checkpoint) */
	else
	{
		if (txn_begin(r) != 0)
			return -1;
		id = ring_begin(r->ring);
		if (id == 0)
			relay_out_of_memory();
		m = (MsgMeta) {.kind = MSG_MESSAGE_NT, .commit_lsn = lsn_str(lsn, lsnbuf)};
		s->events++;
		if (emit(s, id, produce_topic(r, r->messages_topic), prefix, strlen(prefix), data, len, &m) != 0)
			return -1;
		ring_commit(r->ring, id, lsn + 1);
	}
	if (s->cur == 0 && lsn + 1 > s->received)
		s->received = lsn + 1;
	return 0;
}

/*
 * Why the relay refuses a domain event to topic (a NUL-terminated name
 * cdc_relay.emit() validated): one of the relay's own topics, or a name
 * under --topic-prefix followed by '.', where the relay writes its table
 * topics (P.<schema>.<table>, also of tables first seen later), its
 * messages, transactions, DDL and schema topics.  NULL: accepted.
 */
static const char *
emit_refusal(Relay *r, const char *topic, char *buf, size_t size)
{
	size_t		plen = strlen(r->cfg->topic_prefix);

	if (strcmp(topic, r->cfg->state_topic) == 0)
		snprintf(buf, size, "the relay's state topic");
	else if (strcmp(topic, r->txn_topic) == 0)
		snprintf(buf, size, "the relay's transactions topic");
	else if (strcmp(topic, r->messages_topic) == 0)
		snprintf(buf, size, "the relay's messages topic");
	else if (strncmp(topic, r->cfg->topic_prefix, plen) == 0 && topic[plen] == '.')
	{
		for (size_t i = 0; i < r->nknown; i++)
			if (strcmp(r->known_topics[i], topic) == 0)
			{
				snprintf(buf, size, "the topic of %.300s", r->known_tables[i]);
				return buf;
			}
		snprintf(buf, size, "under the relay's topic prefix \"%.250s.\", where its table, messages, "
				 "transactions, DDL and schema topics are", r->cfg->topic_prefix);
	}
	else
		return NULL;
	return buf;
}

/*
 * A domain event (cdc_relay.emit): to its topic (created when missing, as a
 * table without a key's: cleanup.policy=delete), Kafka key the event's key
 * text (null: none), value the payload JSON, the transaction's headers; in
 * its place among the transaction's messages (the same Kafka transaction
 * under exactly-once).  A topic of the relay's own is refused: the relay
 * stops (fatal) before producing it, so that its transaction is never
 * confirmed; with --emit-refused=skip the event is dropped with a warning.
 */
static int
handle_emit(Stream *s, const ScanEmit *e, const char *data, size_t len)
{
	Relay	   *r = s->r;
	char		topic[TOPIC_MAX_LEN + 1];
	char		key[4096];
	char	   *bigkey = NULL;
	const char *k = NULL;
	size_t		klen = 0;
	char		why[400];
	MsgMeta		m;
	int			st,
				rc;

	if (s->cur == 0 || !scan_text_copy(e->topic, topic, sizeof(topic)))
	{
		rlog(r->v, LOG_ERROR, "unexpected domain event from the plugin (%s): " EVENT_FMT,
			 s->cur == 0 ? "outside a transaction" : "topic name", EVENT_ARG(data, len));
		return -1;
	}
	count_seq(s, CDC_OP_EMIT);
	if ((st = event_start(s)) != 0)
		return st > 0 ? 0 : -1;
	if (emit_refusal(r, topic, why, sizeof(why)) != NULL)
	{
		if (r->cfg->emit_refused_skip)
		{
			rlog(r->v, LOG_WARNING, "transaction %s (commit LSN %s): a domain event to topic \"%s\" "
				 "(seq %llu) dropped (--emit-refused=skip): the topic is %s",
				 s->xid, s->commit_lsn, topic, (unsigned long long) s->seq, why);
			atomic_fetch_add_explicit(&r->metrics->emit_refused, 1, memory_order_relaxed);
			return event_end(s);
		}
		snprintf(r->fatal, sizeof(r->fatal),
				 "transaction %.20s (commit LSN %.20s): a domain event to topic \"%.249s\", which is %.200s: "
				 "refused; nothing is confirmed from this transaction on. Fix: emit to another topic "
				 "(cdc_relay.emit(topic => ...)); to go past the events already written, run once with "
				 "--emit-refused=skip (drops them, each logged)",
				 s->xid, s->commit_lsn, topic, why);
		rlog(r->v, LOG_ERROR, "%s", r->fatal);
		r->fatal_set = true;
		return -1;
	}
	if (topic_register(r, topic, "(domain events)") != 0 ||
		admin_ensure_table(r, topic, NULL, NULL, topic, 0) != 0)
		return -1;
	if (e->key.p != NULL)
	{
		char	   *dst = key;
		size_t		size = sizeof(key);

		if (e->key.len >= sizeof(key))
		{
			size = e->key.len + 1;
			dst = bigkey = malloc(size);
			if (bigkey == NULL)
				relay_out_of_memory();
		}
		if (!scan_unescape(e->key, dst, size, &klen))
		{
			free(bigkey);
			rlog(r->v, LOG_ERROR, "unexpected domain event key from the plugin: " EVENT_FMT, EVENT_ARG(data, len));
			return -1;
		}
		k = dst;
	}
	s->events++;
	s->txn_events++;
	s->txn_emitted++;
	m = meta(s, MSG_EMIT, NULL);
	rc = emit(s, s->cur, produce_topic(r, topic), k, klen, e->payload.p, e->payload.len, &m);
	free(bigkey);
	if (rc != 0)
		return -1;
	atomic_fetch_add_explicit(&r->metrics->emitted, 1, memory_order_relaxed);
	return event_end(s);
}

/* The ScanText of a JSON string member (absent: p NULL); valid while o lives. */
static ScanText
jtext(json_t *o, const char *key)
{
	json_t	   *v = json_object_get(o, key);
	ScanText	t = {NULL, 0};

	if (json_is_string(v))
	{
		t.p = json_string_value(v);
		t.len = json_string_length(v);
	}
	return t;
}

/* ... and of a JSON integer member, as decimal text in buf */
static ScanText
jint(json_t *o, const char *key, char *buf, size_t size)
{
	json_t	   *v = json_object_get(o, key);
	ScanText	t = {NULL, 0};

	if (json_is_integer(v))
	{
		t.len = (size_t) snprintf(buf, size, "%lld", (long long) json_integer_value(v));
		t.p = buf;
	}
	return t;
}

/* An LSN member: its text, and its value (false when malformed) */
static bool
jlsn(json_t *o, const char *key, ScanText *t, uint64_t *value)
{
	*t = jtext(o, key);
	*value = 0;
	return t->p == NULL || parse_lsn(t->p, value);
}

/*
 * begin, commit, truncate, logical message, read with jansson: what the
 * scanners (scan.c) did not take, and truncates.
 */
static int
handle_json(Stream *s, const char *data, size_t len)
{
	json_error_t jerr;
	json_t	   *j = json_loadb(data, len, JSON_ALLOW_NUL, &jerr);
	const char *op = json_string_value(json_object_get(j, "op"));
	char		xidbuf[32];
	int			rc = -1;

	if (op == NULL)
		rlog(s->r->v, LOG_ERROR, "unexpected message from the plugin (%s): " EVENT_FMT, jerr.text,
			 EVENT_ARG(data, len));
	else if (strcmp(op, "begin") == 0)
	{
		ScanBegin	b = {.xid = jint(j, "xid", xidbuf, sizeof(xidbuf)), .ts = jtext(j, "ts")};

		if (jlsn(j, "commit_lsn", &b.commit_lsn, &b.commit_lsn_value))
		{
			rc = handle_begin(s, &b, data, len);
			/* decoded by jansson already */
			if (rc == 0 && json_is_string(json_object_get(j, "request_id")))
				snprintf(s->request_id, sizeof(s->request_id), "%s",
						 json_string_value(json_object_get(j, "request_id")));
		}
		else
			rlog(s->r->v, LOG_ERROR, "unexpected begin from the plugin: " EVENT_FMT, EVENT_ARG(data, len));
	}
	else if (strcmp(op, "commit") == 0)
	{
		ScanCommit	c = {.xid = jint(j, "xid", xidbuf, sizeof(xidbuf)), .ts = jtext(j, "ts")};

		c.events = (uint64_t) json_integer_value(json_object_get(j, "events"));
		if (jlsn(j, "commit_lsn", &c.commit_lsn, &c.commit_lsn_value) &&
			jlsn(j, "end_lsn", &c.end_lsn, &c.end_lsn_value) &&
			json_is_integer(json_object_get(j, "events")))
			rc = handle_commit(s, &c, data, len);
		else
			rlog(s->r->v, LOG_ERROR, "unexpected commit from the plugin: " EVENT_FMT, EVENT_ARG(data, len));
	}
	else if (strcmp(op, "t") == 0)
		rc = handle_truncate(s, j, data, len);
	else if (op[0] == CDC_OP_SCHEMA && op[1] == '\0')
		rc = handle_schema(s, j, data, len);
	else if (strcmp(op, "m") == 0)
	{
		ScanMessage m = {0};

		if (jlsn(j, "lsn", &m.lsn, &m.lsn_value))
			rc = handle_message(s, json_string_value(json_object_get(j, "prefix")),
								json_is_true(json_object_get(j, "transactional")), &m, data, len);
		else
			rlog(s->r->v, LOG_ERROR, "unexpected message from the plugin: " EVENT_FMT, EVENT_ARG(data, len));
	}
	else
		rlog(s->r->v, LOG_ERROR, "unexpected event op \"%s\" from the plugin", op);
	json_decref(j);
	return rc;
}

/*
 * One event of a CopyData payload: row events (they carry a key prefix up
 * to a TAB, which JSON never holds raw) by handle_row; begin, commit and
 * logical messages as scan.c reads them, falling back to jansson for what it
 * does not take (and for truncates).
 */
static int
handle_event(Stream *s, const char *ev, size_t len)
{
	switch (scan_kind(ev, len))
	{
		case SCAN_ROW:
			return handle_row(s, ev, len);
		case SCAN_BEGIN:
			{
				ScanBegin	b;

				if (scan_begin(ev, len, &b) && b.commit_lsn.p)
					return handle_begin(s, &b, ev, len);
				break;
			}
		case SCAN_COMMIT:
			{
				ScanCommit	c;

				if (scan_commit(ev, len, &c) && c.end_lsn.p)
					return handle_commit(s, &c, ev, len);
				break;
			}
		case SCAN_MESSAGE:
			{
				ScanMessage m;
				char		prefix[256];

				if (scan_message(ev, len, &m) && scan_text_copy(m.prefix, prefix, sizeof(prefix)))
					return handle_message(s, prefix, m.transactional, &m, ev, len);
				break;
			}
		case SCAN_EMIT:
			{
				ScanEmit	e;

				if (scan_emit(ev, len, &e))
					return handle_emit(s, &e, ev, len);
				rlog(s->r->v, LOG_ERROR, "unexpected domain event from the plugin: " EVENT_FMT,
					 EVENT_ARG(ev, len));
				return -1;
			}
		default:
			break;
	}
	return handle_json(s, ev, len);
}

/* ---- status updates and heartbeats ------------------------------------------ */

static void
update_flushable(Stream *s)
{
	uint64_t	lsn;

	if (ring_retire(s->r->ring, &lsn) && lsn > s->flushable)
		s->flushable = lsn;
	/* nothing in flight: everything received is done */
	if (ring_count(s->r->ring) == 0 && s->cur == 0 && s->received > s->flushable)
		s->flushable = s->received;
	/* exactly-once: consumers see it once committed */
	pending_delivered(s, s->r->eos && s->r->ckpt_durable < s->flushable ? s->r->ckpt_durable : s->flushable);
}

/*
 * The position PostgreSQL may be told is flushed: delivered (flushable), and
 * recorded as confirmed in the state topic (ckpt_durable), so that a slot
 * found ahead of the record later was moved by someone else.
 */
static uint64_t
confirmable(Stream *s)
{
	return s->flushable < s->r->ckpt_durable ? s->flushable : s->r->ckpt_durable;
}

static void
maybe_send_status(Stream *s, bool force)
{
	int64_t		now = now_ms();
	uint64_t	confirm;

	update_flushable(s);
	/* record the new position first (at most once a second; exactly-once: ktxn_commit) */
	if (!s->r->eos && s->flushable > s->r->ckpt_durable && (force || now - s->last_checkpoint_ms >= 1000))
	{
		state_checkpoint_start(s->r, s->flushable);
		s->last_checkpoint_ms = now;
	}
	if (s->repl == NULL)
		return;
	confirm = confirmable(s);
	if (force || now - s->last_status_ms >= s->r->cfg->status_interval_ms ||
		(confirm > s->reported && now - s->last_status_ms >= 1000))
	{
		/*
		 * Waiting for --endpos with nothing in flight: ask for a keepalive, so
		 * that we learn how far the server has read even when it has nothing
		 * for us (it sends keepalives by itself only every
		 * wal_sender_timeout / 2 once we have confirmed everything).
		 */
		bool		ask = s->r->cfg->endpos != 0 && !s->endpos_reached &&
			ring_count(s->r->ring) == 0 && s->cur == 0;

		if (pg_send_status(s->r, s->repl, s->received > confirm ? s->received : confirm,
						   confirm, ask) == 0)
		{
			s->reported = confirm;
			atomic_store_explicit(&s->r->metrics->confirmed_lsn, confirm, memory_order_relaxed);
		}
		s->last_status_ms = now;
	}
}

/*
 * A transactional logical message in its own transaction, so that the slot
 * moves even when only other databases or uncaptured tables are written.
 */
static void
maybe_heartbeat(Stream *s)
{
	Relay	   *r = s->r;
	int64_t		now = now_ms();
	PGresult   *res;
	char		ebuf[1024];

	if (r->cfg->heartbeat_interval_ms == 0 || s->hb_disabled || r->guard == NULL ||
		now - s->last_heartbeat_ms < r->cfg->heartbeat_interval_ms ||
		now - s->last_data_ms < r->cfg->heartbeat_interval_ms)
		return;
	s->last_heartbeat_ms = now;
	/* on the guard connection: it is idle, and the lock it holds is unaffected */
	res = pg_exec(r, r->guard,
				  "SELECT pg_catalog.pg_logical_emit_message(true, '" HEARTBEAT_PREFIX "'::pg_catalog.text,"
				  " ''::pg_catalog.text)", 0, NULL);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

		if (state && (strcmp(state, "42501") == 0 || strcmp(state, "25006") == 0))
		{
			rlog(r->v, LOG_WARNING, "heartbeats disabled: %s (to enable them: GRANT EXECUTE ON FUNCTION "
				 "pg_logical_emit_message(boolean, text, text) TO the relay's role)",
				 pg_error(r, r->guard, ebuf, sizeof(ebuf)));
			s->hb_disabled = true;
		}
		else if (!*r->stop)
			rlog(r->v, LOG_WARNING, "heartbeat failed: %s", pg_error(r, r->guard, ebuf, sizeof(ebuf)));
	}
	else
		rlog(r->v, LOG_DEBUG, "heartbeat sent");
	PQclear(res);
}

/* ---- the replication stream --------------------------------------------------- */

static uint64_t
get_u64(const char *p)
{
	uint32_t	hi,
				lo;

	memcpy(&hi, p, 4);
	memcpy(&lo, p + 4, 4);
	return ((uint64_t) ntohl(hi) << 32) | ntohl(lo);
}

/*
 * Between bursts: delivery reports, status update, heartbeat.  Returns
 * SESSION_GO_ON, or how the session ends.
 */
static SessionEnd
housekeeping(Stream *s)
{
	Relay	   *r = s->r;

	relay_check_signals(r);
	metrics_flush(s);
	if (*r->stop)
		return SESSION_STOP;
	if (r->fatal_set)
		return SESSION_FATAL;
	rd_kafka_poll(r->rk, 0);
	if (ring_failed(r->ring))
	{
		char		b1[24];

		if (r->eos)
			rlog(r->v, LOG_WARNING, "Kafka transaction aborted: a delivery failed (%s); re-sending from %s",
				 r->last_delivery_error, lsn_str(r->ckpt_durable, b1));
		else
			rlog(r->v, LOG_ERROR, "a Kafka delivery failed (%s); re-reading from the slot's confirmed position",
				 r->last_delivery_error);
		s->retry_delivery = true;
		return SESSION_RETRY;
	}
	if (r->eos && s->cur == 0)
	{
		int64_t		now = now_ms();

		/*
		 * Between PostgreSQL transactions: commit the Kafka transaction when
		 * it is due; when idle, checkpoint what was received since (at most
		 * once a second), so that the slot moves.
		 */
		update_flushable(s);
		if ((ktxn_due(s) && ktxn_commit(s, false) != 0) ||
			(!r->txn_open && s->received > r->ckpt_durable && ring_count(r->ring) == 0 &&
			 now - s->last_checkpoint_ms >= 1000 && ktxn_commit(s, true) != 0))
			return *r->stop ? SESSION_STOP : r->fatal_set ? SESSION_FATAL : SESSION_RETRY;
	}
	maybe_send_status(s, false);
	if (s->endpos_reached)
		return SESSION_STOP;
	maybe_heartbeat(s);
	online_poll(r->online);
	return SESSION_GO_ON;
}

/* A keepalive: everything before its WAL end was sent to us. */
static void
handle_keepalive(Stream *s, const char *buf)
{
	Relay	   *r = s->r;
	uint64_t	walend = get_u64(buf + 1);

	if (walend > s->wal_end)
	{
		s->wal_end = walend;
		atomic_store_explicit(&r->metrics->server_wal_end, walend, memory_order_relaxed);
	}

	if (s->cur == 0 && walend > s->received)
		s->received = walend;
	if (s->cur == 0 && r->cfg->endpos && walend >= r->cfg->endpos)
		s->endpos_reached = true;
	if (buf[17] != 0)			/* the server asks for a reply */
		maybe_send_status(s, true);
}

/*
 * Read and handle what the socket has, up to 256 row or event messages
 * (*handled counts them), stopping early after a keepalive or at --endpos so
 * that housekeeping comes next.  *empty: the socket had nothing more.
 * Returns SESSION_GO_ON, or how the session ends.
 */
static SessionEnd
read_burst(Stream *s, int *handled, bool *empty)
{
	Relay	   *r = s->r;

	*handled = 0;
	*empty = false;
	while (*handled < 256 && !s->endpos_reached)
	{
		char	   *buf = NULL;
		int			len = PQgetCopyData(s->repl, &buf, 1);
		int			rc = 0;

		if (len == 0)
		{
			*empty = true;
			s->backlog = false;
			return SESSION_GO_ON;
		}
		if (len == -1)
		{
			PGresult   *res = PQgetResult(s->repl);

			rlog(r->v, LOG_ERROR, "the server ended the replication stream: %s",
				 PQresultStatus(res) == PGRES_COMMAND_OK ? "no error" : PQerrorMessage(s->repl));
			PQclear(res);
			return SESSION_RETRY;
		}
		if (len < 0)
		{
			rlog(r->v, LOG_ERROR, "replication connection lost: %s", PQerrorMessage(s->repl));
			return SESSION_RETRY;
		}
		if (buf[0] == 'k' && len >= 18)
		{
			handle_keepalive(s, buf);
			PQfreemem(buf);
			return SESSION_GO_ON;	/* housekeeping right after a keepalive */
		}
		if (buf[0] == 'w' && len > 25)
		{
			const char *data = buf + 25;
			uint64_t	walend = get_u64(buf + 9);

			if (walend > s->wal_end)
			{
				s->wal_end = walend;
				atomic_store_explicit(&r->metrics->server_wal_end, walend, memory_order_relaxed);
			}
			size_t		dlen = (size_t) len - 25,
						off = 0;

			/* one event, or with batch-events several, '\n'-separated */
			while (rc == 0 && off < dlen)
			{
				const char *ev = data + off;
				size_t		evlen = scan_next_event(data, dlen, &off);

				(*handled)++;
				rc = handle_event(s, ev, evlen);
			}
		}
		else
			rlog(r->v, LOG_WARNING, "ignoring a replication message of type '%c'", buf[0]);
		PQfreemem(buf);
		if (rc != 0)
			return *r->stop ? SESSION_STOP : r->fatal_set ? SESSION_FATAL : SESSION_RETRY;
	}
	/* a full burst: the server had more for us than we read */
	s->backlog = *handled >= 256;
	return SESSION_GO_ON;
}

/* Wait (at most 100 ms: delivery reports, status updates, signals) for the socket. */
static SessionEnd
wait_input(Stream *s)
{
	struct pollfd pfd = {.fd = PQsocket(s->repl), .events = POLLIN};

	if (poll(&pfd, 1, 100) < 0 && errno != EINTR)
		return SESSION_RETRY;
	if (PQconsumeInput(s->repl) == 0)
	{
		rlog(s->r->v, LOG_ERROR, "replication connection lost: %s", PQerrorMessage(s->repl));
		return SESSION_RETRY;
	}
	return SESSION_GO_ON;
}

/*
 * One replication session, as pg_recvlogical's StreamLogicalLog: read a
 * burst, then housekeeping; wait when the socket has nothing.
 */
static SessionEnd
session(Stream *s)
{
	for (;;)
	{
		SessionEnd	end = housekeeping(s);
		int			handled;
		bool		empty;

		if (end == SESSION_GO_ON)
			end = read_burst(s, &handled, &empty);
		if (end != SESSION_GO_ON)
			return end;
		if (handled > 0)
			s->last_data_ms = now_ms();
		else if (empty && (end = wait_input(s)) != SESSION_GO_ON)
			return end;
	}
}

/*
 * Wait until everything produced has a delivery report (or timeout_ms), so
 * that the flush position is as far as it can be.
 */
static void
drain(Stream *s, int timeout_ms)
{
	Relay	   *r = s->r;
	int64_t		until = now_ms() + timeout_ms;

	if (r->eos)
	{
		/*
		 * Commit what the open Kafka transaction holds (up to the current
		 * event, when a PostgreSQL transaction is open), or checkpoint what
		 * was received since the last commit.
		 */
		if (!r->fatal_set && !s->retry_abort && !s->retry_delivery &&
			(r->txn_open || s->received > r->ckpt_durable))
			ktxn_commit(s, true);
		update_flushable(s);
		return;
	}
	while (ring_pending(r->ring) > 0 && now_ms() < until && !r->producer_dead)
	{
		rd_kafka_poll(r->rk, 100);
		if (s->repl)
			maybe_send_status(s, false);
	}
	update_flushable(s);
	/* what was delivered is confirmed once it is recorded */
	if (s->flushable > r->ckpt_durable && !r->producer_dead)
		state_checkpoint_sync(r, s->flushable, 5000);
}

static void
close_repl(Stream *s)
{
	if (s->repl == NULL)
		return;
	if (PQstatus(s->repl) == CONNECTION_OK)
	{
		PGresult   *res;

		int64_t		until = now_ms() + 5000;

		pg_send_status(s->r, s->repl, confirmable(s), confirmable(s), false);
		/*
		 * End the COPY: the server may still send data it had in flight
		 * (discarded: it is not confirmed, so it comes again next time) before
		 * it ends the stream.
		 */
		if (PQputCopyEnd(s->repl, NULL) == 1 && PQflush(s->repl) == 0)
		{
			for (;;)
			{
				char	   *buf = NULL;
				int			len = PQgetCopyData(s->repl, &buf, 1);

				if (buf)
					PQfreemem(buf);
				if (len > 0)
					continue;
				if (len < 0 || now_ms() >= until)
					break;
				{
					struct pollfd pfd = {.fd = PQsocket(s->repl), .events = POLLIN};

					if (poll(&pfd, 1, 100) < 0 && errno != EINTR)
						break;
					if (PQconsumeInput(s->repl) == 0)
						break;
				}
			}
			while (now_ms() < until && (res = PQgetResult(s->repl)) != NULL)
			{
				ExecStatusType st = PQresultStatus(res);

				PQclear(res);
				if (st == PGRES_COPY_BOTH || st == PGRES_COPY_OUT || PQstatus(s->repl) != CONNECTION_OK)
					break;
			}
		}
	}
	PQfinish(s->repl);
	s->repl = NULL;
}

/*
 * Before (re)starting replication: hold the slot's lock, find the slot where
 * the relay left it, start streaming.  Returns 0 streaming, -1 to retry
 * later, -2 to stop for good (logged with the fix).
 */
static int
start_session(Stream *s)
{
	Relay	   *r = s->r;
	int			rc;

	rc = pg_guard_acquire(r);
	if (rc != 0)
		return rc;
	switch (pg_slot_check(r, true))
	{
		case SLOT_OK:
			break;
		case SLOT_STOP:
			return -2;
		case SLOT_RETRY:
			return -1;
	}
	return pg_start_replication(r, s->repl);
}

int
stream_run(Relay *r, PGconn *repl)
{
	Stream		s;
	int			backoff_ms = 1000;
	int			rc = 0;
	char		b1[24],
				b2[24];

	memset(&s, 0, sizeof(s));
	s.r = r;
	s.repl = repl;
	s.last_data_ms = s.last_heartbeat_ms = now_ms();
	atomic_store_explicit(&r->metrics->confirmed_lsn, r->ckpt_durable, memory_order_relaxed);
	r->online = online_new(r);

	for (;;)
	{
		SessionEnd	end;
		uint64_t	confirmed_before;
		bool		reconnect = s.repl == NULL;
		int			src;

		if (reconnect)
		{
			s.repl = pg_connect(r, true);
			if (s.repl == NULL)
			{
				if (*r->stop)
					break;
				if (pg_database_gone(r))
				{
					rc = 1;
					break;
				}
				goto backoff;
			}
		}
		src = start_session(&s);
		if (src != 0)
		{
			PQfinish(s.repl);
			s.repl = NULL;
			if (*r->stop)
				break;
			if (src == -2)
			{
				rc = 1;
				break;
			}
			goto backoff;
		}
		if (reconnect)
		{
			rlog(r->v, LOG_INFO, "reconnected; streaming from slot \"%s\" again", r->cfg->slot);
			atomic_fetch_add_explicit(&r->metrics->reconnects, 1, memory_order_relaxed);
			/* what was delivered while we were away */
			maybe_send_status(&s, true);
		}
		else
			rlog(r->v, LOG_INFO, "streaming from slot \"%s\" into Kafka", r->cfg->slot);

		s.cur = 0;
		s.last_status_ms = 0;
		confirmed_before = confirmable(&s);
		end = session(&s);
		if (end == SESSION_FATAL)
		{
			rlog(r->v, LOG_ERROR, "stopping: %s", r->fatal_set ? r->fatal : "fatal error");
			drain(&s, 5000);
			close_repl(&s);
			rlog(r->v, LOG_INFO, "confirmed up to %s (received up to %s)", lsn_str(confirmable(&s), b1),
				 lsn_str(s.received, b2));
			rc = 1;
			break;
		}
		if (end == SESSION_STOP)
		{
			rlog(r->v, LOG_INFO, "%s; waiting for Kafka to confirm %llu messages in flight",
				 s.endpos_reached ? "reached --endpos" : "stopping",
				 (unsigned long long) ring_pending(r->ring));
			drain(&s, s.endpos_reached ? 300000 : 15000);
			if (ring_pending(r->ring) > 0)
				rlog(r->v, LOG_WARNING, "%llu messages not confirmed by Kafka; they will be sent again at the next start",
					 (unsigned long long) ring_pending(r->ring));
			close_repl(&s);
			rlog(r->v, LOG_INFO, "confirmed up to %s (received up to %s), %llu transactions, %llu events%s",
				 lsn_str(confirmable(&s), b1), lsn_str(s.received, b2),
				 (unsigned long long) s.txns, (unsigned long long) s.events,
				 r->eos ? ", exactly-once" : "");
			if (s.skipped)
				rlog(r->v, LOG_INFO, "%llu transactions sent again by the server were in Kafka already and skipped",
					 (unsigned long long) s.skipped);
			if (s.endpos_reached && ring_count(r->ring) > 0)
				rc = 1;
			break;
		}
		/* SESSION_RETRY */
		if (r->eos && (s.retry_delivery || s.retry_abort))
		{
			/* the Kafka transaction cannot commit: nothing of it counts */
			if (txn_abort(r) != 0)
			{
				rc = 1;
				break;
			}
		}
		else if (s.retry_delivery)
		{
			/* queued messages after the failed one would be out of order: drop them */
			rd_kafka_purge(r->rk, RD_KAFKA_PURGE_F_QUEUE);
		}
		drain(&s, 30000);
		s.retry_delivery = s.retry_abort = false;
		close_repl(&s);
		ring_reset(r->ring);
		online_rewind(r->online);	/* chunks not confirmed are read again */
		s.pend_len = 0;			/* re-read from the slot: pending again when re-sent */
		s.cur = 0;
		txn_state_reset(&s);
		s.received = s.flushable;
		if (r->eos && s.received > r->ckpt_durable)
			s.received = s.flushable = r->ckpt_durable;
		if (r->fatal_set)
		{
			rc = 1;
			break;
		}
		/* a session that got something through earns a fresh backoff */
		if (confirmable(&s) > confirmed_before)
			backoff_ms = 1000;
backoff:
		rlog(r->v, LOG_INFO, "reconnecting in %d ms", backoff_ms);
		{
			int64_t		until = now_ms() + backoff_ms;

			while (now_ms() < until && !*r->stop && !r->fatal_set)
			{
				rd_kafka_poll(r->rk, 100);
				relay_check_signals(r);
			}
		}
		if (*r->stop)
			break;
		if (r->fatal_set)
		{
			rc = 1;
			break;
		}
		backoff_ms = backoff_ms * 2 > 30000 ? 30000 : backoff_ms * 2;
	}
	if (s.repl)
		PQfinish(s.repl);
	online_free(r->online);
	r->online = NULL;
	metrics_flush(&s);
	atomic_store_explicit(&r->metrics->stream_in_flight, 0, memory_order_relaxed);
	free(s.pend);
	txn_state_reset(&s);
	free(s.counts);
	free(s.begin_event);
	return rc;
}
