/*
 * stream.c: from the replication slot into Kafka.
 *
 * START_REPLICATION with the plugin option key-prefix, so that every row
 * event arrives as <key JSON> TAB <event JSON> and the hot path parses no
 * JSON: the op is at a fixed offset, the relation's identity is the bytes
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

#include "topic.h"

/*
 * Kafka keys of events about no single row (README "Keyless messages"): JSON
 * strings, which no row key (always a JSON object) can equal.
 */
#define KEY_TRUNCATE "\"truncate\""
#define KEY_UNKNOWN "\"unknown\""

typedef struct TopicEntry
{
	char	   *ident;			/* raw bytes: "schema":S,"table":T */
	size_t		identlen;
	rd_kafka_topic_t *rkt;
	char	   *header_table;	/* schema.table, quoted where needed */
} TopicEntry;

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
	txn_id		cur;			/* open transaction, 0 = none */
	char		commit_lsn[24];
	char		xid[24];
	uint64_t	seq;
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
	uint64_t	events;
	uint64_t	txns;
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

	rd_kafka_topic_destroy(e->rkt);
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
	e->rkt = rd_kafka_topic_new(r->rk, topic, NULL);
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

/* ---- producing -------------------------------------------------------------- */

static void
maybe_send_status(Stream *s, bool force);

/*
 * Produce one message for the open transaction (or ring entry id), waiting
 * while librdkafka's queue is full.  Returns 0, or -1 to end the session
 * (stop requested, fatal error, or a produce error).
 */
static int
produce(Stream *s, txn_id id, rd_kafka_topic_t *rkt, const char *key, size_t keylen,
		const char *value, size_t vallen, rd_kafka_headers_t *h)
{
	Relay	   *r = s->r;
	rd_kafka_resp_err_t e;

	for (;;)
	{
		e = rd_kafka_producev(r->rk,
							  RD_KAFKA_V_RKT(rkt),
							  RD_KAFKA_V_KEY((char *) key, key ? keylen : 0),
							  RD_KAFKA_V_VALUE((char *) value, value ? vallen : 0),
							  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
							  RD_KAFKA_V_HEADERS(h),
							  RD_KAFKA_V_OPAQUE((void *) (uintptr_t) id),
							  RD_KAFKA_V_END);
		if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			ring_add(r->ring, id);
			return 0;
		}
		if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		/* backpressure: stop reading; serve delivery reports; keep the server's timeout at bay */
		rd_kafka_poll(r->rk, 50);
		maybe_send_status(s, false);
		if (*r->stop || r->fatal_set)
		{
			rd_kafka_headers_destroy(h);
			return -1;
		}
	}
	{
		/* not a full queue: Kafka will never take this message */
		const void *table = NULL;
		size_t		tlen = 0;
		char		tbuf[300] = "";

		if (rd_kafka_header_get_last(h, "table", &table, &tlen) == RD_KAFKA_RESP_ERR_NO_ERROR && table)
			snprintf(tbuf, sizeof(tbuf), "%.*s", (int) tlen, (const char *) table);
		kafka_reject(r, e, rd_kafka_topic_name(rkt), tbuf[0] ? tbuf : NULL, key, key ? keylen : 0,
					 (key ? keylen : 0) + (value ? vallen : 0));
	}
	rd_kafka_headers_destroy(h);
	return -1;
}

static rd_kafka_headers_t *
headers(Stream *s, const char *op, const char *table, bool with_id)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(6);
	char		id[64];

	rd_kafka_header_add(h, "op", -1, op, -1);
	if (table[0])
		rd_kafka_header_add(h, "table", -1, table, -1);
	rd_kafka_header_add(h, "commit_lsn", -1, s->commit_lsn, -1);
	if (s->xid[0])
		rd_kafka_header_add(h, "xid", -1, s->xid, -1);
	if (with_id)
	{
		snprintf(id, sizeof(id), "%s/%llu", s->commit_lsn, (unsigned long long) s->seq);
		rd_kafka_header_add(h, "event_id", -1, id, -1);
	}
	rd_kafka_header_add(h, "snapshot", -1, "false", -1);
	return h;
}

/* A tombstone: the key, a null value, so that log compaction forgets the row. */
static int
produce_tombstone(Stream *s, TopicEntry *t, const char *key, size_t keylen)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(3);

	rd_kafka_header_add(h, "op", -1, "tombstone", -1);
	rd_kafka_header_add(h, "table", -1, t->header_table, -1);
	rd_kafka_header_add(h, "commit_lsn", -1, s->commit_lsn, -1);
	return produce(s, s->cur, t->rkt, key, keylen, NULL, 0, h);
}

/* An insert/update/delete: <key JSON> TAB <event JSON>. */
static int
handle_row(Stream *s, const char *data, size_t len)
{
	Relay	   *r = s->r;
	const char *tab = memchr(data, '\t', len);
	const char *ev,
			   *keyfield,
			   *vt;
	size_t		evlen,
				keylen;
	TopicEntry *t;
	char		op[2];
	bool		nokey,
				unknown;

	if (tab == NULL || s->cur == 0)
		goto bad;
	keylen = (size_t) (tab - data);
	ev = tab + 1;
	evlen = len - keylen - 1;
	/* {"op":"c","schema":... */
	if (evlen < 16 || memcmp(ev, "{\"op\":\"", 7) != 0 || ev[8] != '"' || ev[9] != ',')
		goto bad;
	keyfield = memmem(ev + 10, evlen - 10, ",\"key\":", 7);
	if (keyfield == NULL)
		goto bad;

	/*
	 * "key":null is a table without a key, or, followed by key_unknown, a
	 * change whose key the WAL does not carry (the table has one): that one
	 * gets the marker key, never a null key (refused by a compacted topic).
	 */
	unknown = (size_t) (ev + evlen - keyfield) > 7 + 19 &&
		memcmp(keyfield + 7, "null,\"key_unknown\":", 19) == 0;
	nokey = !unknown && keylen == 4 && memcmp(data, "null", 4) == 0;
	t = topic_lookup(r, ev + 10, (size_t) (keyfield - (ev + 10)), nokey ? 0 : 1);
	if (t == NULL)
		return -1;
	op[0] = ev[7];
	op[1] = '\0';
	s->seq++;
	s->events++;

	/*
	 * An update that changed the key: <old key> VT <new key>.  The row no
	 * longer exists under the old key: tombstone it; the event goes under the
	 * new key (its "key" field and "before" still show the old one).
	 */
	vt = memchr(data, '\v', keylen);
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
	if (produce(s, s->cur, t->rkt, nokey ? NULL : data, keylen, ev, evlen,
				headers(s, op, t->header_table, true)) != 0)
		return -1;
	/* a marker key is no row's: never tombstoned */
	if (op[0] == 'd' && !nokey && !unknown && r->cfg->tombstones &&
		produce_tombstone(s, t, data, keylen) != 0)
		return -1;
	return 0;
bad:
	rlog(r->v, LOG_ERROR, "unexpected message from the plugin (%s): %.*s",
		 s->cur == 0 ? "row event outside a transaction" : "malformed row event",
		 (int) (len > 200 ? 200 : len), data);
	return -1;
}

static const char *
jstr(json_t *o, const char *key)
{
	return json_string_value(json_object_get(o, key));
}

/* The event as the log shows it: at most its first 200 bytes. */
#define EVENT_FMT "%.*s"
#define EVENT_ARG(data, len) (int) ((len) > 200 ? 200 : (len)), (data)

/* A begin: open a ring entry for the transaction. */
static int
handle_begin(Stream *s, json_t *j, const char *data, size_t len)
{
	const char *cl = jstr(j, "commit_lsn");
	json_t	   *xid = json_object_get(j, "xid");

	if (s->cur != 0 || cl == NULL)
	{
		rlog(s->r->v, LOG_ERROR, "unexpected begin from the plugin: " EVENT_FMT, EVENT_ARG(data, len));
		return -1;
	}
	s->cur = ring_begin(s->r->ring);
	if (s->cur == 0)
		relay_out_of_memory();
	snprintf(s->commit_lsn, sizeof(s->commit_lsn), "%s", cl);
	if (json_is_integer(xid))
		snprintf(s->xid, sizeof(s->xid), "%lld", (long long) json_integer_value(xid));
	else
		s->xid[0] = '\0';
	s->seq = 0;
	return 0;
}

/* A commit: close the transaction's ring entry at the commit's end LSN. */
static int
handle_commit(Stream *s, json_t *j, const char *data, size_t len)
{
	Relay	   *r = s->r;
	const char *el = jstr(j, "end_lsn");
	uint64_t	end;

	if (s->cur == 0 || el == NULL || !parse_lsn(el, &end))
	{
		rlog(r->v, LOG_ERROR, "unexpected commit from the plugin: " EVENT_FMT, EVENT_ARG(data, len));
		return -1;
	}
	ring_commit(r->ring, s->cur, end);
	s->cur = 0;
	s->txns++;
	if (end > s->received)
		s->received = end;
	if (r->cfg->endpos && end >= r->cfg->endpos)
		s->endpos_reached = true;
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
	int			rc = s->cur == 0 ? -1 : 0;

	s->seq++;
	s->events++;
	json_array_foreach(tables, i, tj)
	{
		json_t	   *js = json_object_get(tj, "schema"),
				   *jt = json_object_get(tj, "table");
		char		topic[TOPIC_MAX_LEN + 1];
		rd_kafka_topic_t *rkt;
		char	   *disp;

		if (rc != 0 || !json_is_string(js) || !json_is_string(jt))
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
		rkt = rd_kafka_topic_new(r->rk, topic, NULL);
		/* the marker key (it is about the whole table); the value is the event */
		rc = produce(s, s->cur, rkt, KEY_TRUNCATE, strlen(KEY_TRUNCATE), data, len,
					 headers(s, "t", disp, true));
		free(disp);
		rd_kafka_topic_destroy(rkt);
	}
	return rc;
}

/*
 * A logical message: to <prefix>.messages, keyed by its prefix; the relay's
 * own heartbeats are not forwarded.  A message outside any transaction gets a
 * ring entry of its own, ending at its LSN.
 */
static int
handle_message(Stream *s, json_t *j, const char *data, size_t len)
{
	Relay	   *r = s->r;
	const char *prefix = jstr(j, "prefix");
	bool		transactional = json_is_true(json_object_get(j, "transactional"));
	char		topic[TOPIC_MAX_LEN + 1];
	rd_kafka_topic_t *rkt;
	txn_id		id = s->cur;
	uint64_t	lsn = 0;
	const char *ls = jstr(j, "lsn");
	int			rc = 0;

	if (prefix != NULL && strcmp(prefix, HEARTBEAT_PREFIX) == 0)
	{
		/* our own heartbeat: only there to move the slot */
		if (transactional)
			s->seq++;
		return 0;
	}
	if (prefix == NULL)
		return 0;
	snprintf(topic, sizeof(topic), "%s.messages", r->cfg->topic_prefix);
	rkt = rd_kafka_topic_new(r->rk, topic, NULL);
	if (!transactional)
	{
		id = ring_begin(r->ring);
		if (ls == NULL || !parse_lsn(ls, &lsn))
			rc = -1;
		snprintf(s->commit_lsn, sizeof(s->commit_lsn), "%s", ls ? ls : "");
		s->seq = 0;
	}
	else
		s->seq++;
	s->events++;
	if (rc == 0 && id != 0)
		rc = produce(s, id, rkt, prefix, strlen(prefix), data, len, headers(s, "m", "", transactional));
	else
		rc = -1;
	if (!transactional && rc == 0)
	{
		ring_commit(r->ring, id, lsn);
		if (lsn > s->received && s->cur == 0)
			s->received = lsn;
	}
	rd_kafka_topic_destroy(rkt);
	return rc;
}

/* begin, commit, truncate, logical message: JSON objects, one handler each */
static int
handle_json(Stream *s, const char *data, size_t len)
{
	json_error_t jerr;
	json_t	   *j = json_loadb(data, len, JSON_ALLOW_NUL, &jerr);
	const char *op = jstr(j, "op");
	int			rc;

	if (op == NULL)
	{
		rlog(s->r->v, LOG_ERROR, "unexpected message from the plugin (%s): " EVENT_FMT, jerr.text,
			 EVENT_ARG(data, len));
		rc = -1;
	}
	else if (strcmp(op, "begin") == 0)
		rc = handle_begin(s, j, data, len);
	else if (strcmp(op, "commit") == 0)
		rc = handle_commit(s, j, data, len);
	else if (strcmp(op, "t") == 0)
		rc = handle_truncate(s, j, data, len);
	else if (strcmp(op, "m") == 0)
		rc = handle_message(s, j, data, len);
	else
	{
		rlog(s->r->v, LOG_ERROR, "unexpected event op \"%s\" from the plugin", op);
		rc = -1;
	}
	json_decref(j);
	return rc;
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
	/* record the new position first (at most once a second) */
	if (s->flushable > s->r->ckpt_durable && (force || now - s->last_checkpoint_ms >= 1000))
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
			s->reported = confirm;
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
	if (*r->stop)
		return SESSION_STOP;
	if (r->fatal_set)
		return SESSION_FATAL;
	rd_kafka_poll(r->rk, 0);
	if (ring_failed(r->ring))
	{
		rlog(r->v, LOG_ERROR, "a Kafka delivery failed (%s); re-reading from the slot's confirmed position",
			 r->last_delivery_error);
		s->retry_delivery = true;
		return SESSION_RETRY;
	}
	maybe_send_status(s, false);
	if (s->endpos_reached)
		return SESSION_STOP;
	maybe_heartbeat(s);
	return SESSION_GO_ON;
}

/* A keepalive: everything before its WAL end was sent to us. */
static void
handle_keepalive(Stream *s, const char *buf)
{
	Relay	   *r = s->r;
	uint64_t	walend = get_u64(buf + 1);

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
			size_t		dlen = (size_t) len - 25;

			(*handled)++;
			/* row events carry a key prefix up to a TAB, which JSON never holds raw */
			rc = memchr(data, '\t', dlen) == NULL ? handle_json(s, data, dlen) : handle_row(s, data, dlen);
		}
		else
			rlog(r->v, LOG_WARNING, "ignoring a replication message of type '%c'", buf[0]);
		PQfreemem(buf);
		if (rc != 0)
			return *r->stop ? SESSION_STOP : r->fatal_set ? SESSION_FATAL : SESSION_RETRY;
	}
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
			rlog(r->v, LOG_INFO, "confirmed up to %s (received up to %s), %llu transactions, %llu events",
				 lsn_str(confirmable(&s), b1), lsn_str(s.received, b2),
				 (unsigned long long) s.txns, (unsigned long long) s.events);
			if (s.endpos_reached && ring_count(r->ring) > 0)
				rc = 1;
			break;
		}
		/* SESSION_RETRY */
		if (s.retry_delivery)
		{
			/* queued messages after the failed one would be out of order: drop them */
			rd_kafka_purge(r->rk, RD_KAFKA_PURGE_F_QUEUE);
			s.retry_delivery = false;
		}
		drain(&s, 30000);
		close_repl(&s);
		ring_reset(r->ring);
		s.cur = 0;
		s.received = s.flushable;
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
	return rc;
}
