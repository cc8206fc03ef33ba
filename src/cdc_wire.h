/*
 * cdc_wire.h
 *		The wire contract between the cdc_relay output plugin (src/, which
 *		writes events in proto.c) and what reads them by position rather
 *		than with a JSON parser (the relay, relay/: scan.c, stream.c,
 *		snapshot.c, verify.c).  Plain C: no PostgreSQL header, so that both
 *		sides include this one file.  README.md's "Output format" table maps
 *		onto it; a change here is a change of the format.
 *
 * Format version 1.  Every event is one JSON object on one line:
 *
 *	 {"op":"<op>", <fields>}
 *
 * opening with CDC_WIRE_OP_OPEN, so that a one-letter op is the byte at
 * CDC_WIRE_OP_OFFSET and is followed by '"' and ',' (begin and commit spell
 * their op out).  Fields come in the order proto.c writes them; the optional
 * ones are present or absent as the options include-xids, include-lsn and
 * include-timestamp say.
 *
 * Separators (no event holds them raw: JSON escapes control characters in
 * strings, and the plugin writes json values' line breaks as spaces):
 *	 CDC_WIRE_EVENT_SEP   between events of one message (batch-events)
 *	 CDC_WIRE_KEY_SEP     ends the key prefix of a row event (key-prefix):
 *						  <key JSON> TAB <event JSON>
 *	 CDC_WIRE_NEWKEY_SEP  inside that prefix, when an update changed the
 *						  key: <old key JSON> VT <new key JSON> TAB ...
 *
 * The transaction tail closes every event of a transaction but begin and
 * commit:
 *
 *	 ,"xid":N,"lsn":"X/X","commit_lsn":"X/X","seq":N[,"request_id":S],"ts":S}
 *
 * seq: the events of a transaction that carry this tail (row changes,
 * truncates, transactional messages, domain events "e"; not schema events
 * "s", see below), numbered from 1 in the order written.  A message outside any transaction
 * has no tail and no seq (only "xid" and "lsn").  begin and
 * commit do not count; an event the plugin does not write (filtered out by an
 * option, or swallowed, as the request id message) does not count; the
 * commit's "events" is the last seq.  A reader counting events to resume
 * inside a transaction (the relay's exactly-once checkpoints) must count
 * exactly these: cdc_wire_counts_in_seq() says which ops do.
 *
 * A schema event "s" carries the seq of the event it comes before (the next
 * one that counts) and does not count itself: whether it is written depends
 * on the decoding session (the first change of a relation in the session,
 * or after its shape changed), so a transaction decoded again after a
 * reconnect may have schema events it did not have the first time; the
 * other events keep their seq (the relay's resume points and the event ids
 * of its Kafka headers stay valid).
 */
#ifndef CDC_WIRE_H
#define CDC_WIRE_H

#include <stddef.h>

#define CDC_WIRE_FORMAT_VERSION 1

/* separators */
#define CDC_WIRE_EVENT_SEP		'\n'
#define CDC_WIRE_KEY_SEP		'\t'
#define CDC_WIRE_NEWKEY_SEP		'\v'

/* every event opens with this; a one-letter op is at CDC_WIRE_OP_OFFSET */
#define CDC_WIRE_OP_OPEN		"{\"op\":\""
#define CDC_WIRE_OP_OFFSET		7
/* a row event's relation identity starts here: {"op":"c","schema":... */
#define CDC_WIRE_IDENT_OFFSET	10

/* ops */
#define CDC_OP_INSERT			'c'
#define CDC_OP_UPDATE			'u'
#define CDC_OP_DELETE			'd'
#define CDC_OP_READ				'r' /* a row read by a snapshot */
#define CDC_OP_TRUNCATE			't'
#define CDC_OP_MESSAGE			'm' /* pg_logical_emit_message */
#define CDC_OP_EMIT				'e' /* cdc_relay.emit(): a domain event */
#define CDC_OP_SCHEMA			's' /* a relation's shape (schema-events) */
#define CDC_OP_BEGIN			"begin"
#define CDC_OP_COMMIT			"commit"

/*
 * Fields a reader finds by their bytes.  A row event's identity runs from
 * CDC_WIRE_IDENT_OFFSET to CDC_WIRE_F_KEY; a key the WAL does not carry is
 * written CDC_WIRE_F_KEY "null" CDC_WIRE_F_KEY_UNKNOWN "<why>".
 */
#define CDC_WIRE_F_SCHEMA		",\"schema\":"
#define CDC_WIRE_F_TABLE		",\"table\":"
#define CDC_WIRE_F_KEY			",\"key\":"
#define CDC_WIRE_F_KEY_UNKNOWN	",\"key_unknown\":"
#define CDC_WIRE_F_BEFORE		",\"before\":"
#define CDC_WIRE_F_AFTER		",\"after\":"
#define CDC_WIRE_F_XID			",\"xid\":"
#define CDC_WIRE_F_LSN			",\"lsn\":"
#define CDC_WIRE_F_COMMIT_LSN	",\"commit_lsn\":"
#define CDC_WIRE_F_END_LSN		",\"end_lsn\":"
#define CDC_WIRE_F_SEQ			",\"seq\":"
#define CDC_WIRE_F_REQUEST_ID	",\"request_id\":"
#define CDC_WIRE_F_EVENTS		",\"events\":"
#define CDC_WIRE_F_TS			",\"ts\":"
#define CDC_WIRE_F_PREFIX		",\"prefix\":"
#define CDC_WIRE_F_TRANSACTIONAL ",\"transactional\":"
#define CDC_WIRE_F_CONTENT		",\"content\":"
#define CDC_WIRE_F_CONTENT_ENCODING ",\"content_encoding\":"
#define CDC_WIRE_F_SNAPSHOT		",\"snapshot\":true"

/*
 * A schema event (op "s", plugin option schema-events), the shape of the
 * relation the following events name, as of the change after it:
 *
 *	 {"op":"s","schema":S,"table":T,"relid":N,"columns":[{"name":..,
 *	  "type":"<format_type with typmod>","type_oid":N,"not_null":B},..],
 *	  "key":["col",..]|null,"replica_identity":"default|full|index|nothing",
 *	  <tail>}
 *
 * written before the first change or truncate of a relation in a decoding
 * session and before the first one after its shape changed (anything above
 * but relid), with that event's seq (see seq above).  cdc_relay.table_schema() writes the same body closed by
 * CDC_WIRE_F_SNAPSHOT "}" instead of the tail.  "relid" is the OID of the
 * relation named (the root's with partition-root): a rename keeps it.
 */
#define CDC_WIRE_F_RELID		",\"relid\":"
#define CDC_WIRE_F_COLUMNS		",\"columns\":"
#define CDC_WIRE_F_REPLICA_IDENTITY ",\"replica_identity\":"

/* length of a string literal, for memcmp against the literals above */
#define CDC_WIRE_LEN(lit)		(sizeof(lit) - 1)

/*
 * Logical message prefixes that belong to cdc_relay (pg_logical_emit_message
 * with any other prefix is an application's message, op "m").
 */
#define CDC_PREFIX_HEARTBEAT	"cdc_relay.heartbeat"	/* the relay's; never forwarded */
#define CDC_PREFIX_SNAPSHOT_REQUEST "cdc_relay.snapshot_request"	/* request_snapshot() */
#define CDC_PREFIX_WATERMARK	"cdc_relay.watermark"	/* online snapshot chunks */
#define CDC_PREFIX_REQUEST_ID	"cdc_relay.request_id"	/* set_request_id(): swallowed
														 * by the plugin */
#define CDC_PREFIX_EMIT			"cdc_relay.emit"	/* emit(): written as op "e" */
#define CDC_PREFIX_DDL			"cdc_relay.ddl" /* the DDL event trigger's:
														 * written as op "m"
														 * with schema-events
														 * only, else swallowed */

/*
 * Request ids (cdc_relay.set_request_id): the content of a transactional
 * CDC_PREFIX_REQUEST_ID message is the id's bytes: 1 to
 * CDC_REQUEST_ID_MAX_BYTES of valid text without control characters.  The
 * plugin writes no event for it (no seq); the transaction's begin (written
 * after it: skip-empty-xacts, the default) and commit carry
 * CDC_WIRE_F_REQUEST_ID right after "xid" (after the op when include-xids
 * is off), every tailed event right after "seq".  Without skip-empty-xacts
 * the begin is written before the id is known and has none.
 */
#define CDC_REQUEST_ID_MAX_BYTES	256

/*
 * Domain events (cdc_relay.emit): the content of a transactional
 * CDC_PREFIX_EMIT message is three fields separated by CDC_EMIT_SEP (a byte
 * that no text or jsonb value holds):
 *
 *	 <topic> NUL <'k' key bytes | 'n'> NUL <payload: jsonb text output>
 *
 * ('n': the key is NULL).  The plugin writes it as op "e":
 *
 *	 {"op":"e","topic":T,"key":K|null,"payload":<JSON>, <tail>}
 *
 * the payload embedded as JSON, on one line (jsonb output has no raw line
 * break or tab).  A topic is 1 to CDC_EMIT_TOPIC_MAX_LEN characters of
 * CDC_EMIT_TOPIC_CHARS, not "." or "..".  Content the plugin cannot split,
 * or with a topic or payload that breaks these rules (only a hand-written
 * message can), is written as an ordinary message (op "m") instead.
 */
#define CDC_EMIT_SEP			'\0'
#define CDC_EMIT_KEY			'k'
#define CDC_EMIT_NO_KEY			'n'
#define CDC_EMIT_TOPIC_MAX_LEN	249
#define CDC_EMIT_TOPIC_CHARS \
	"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-"
#define CDC_WIRE_F_TOPIC		",\"topic\":"
#define CDC_WIRE_F_PAYLOAD		",\"payload\":"

/* Whether topic[0..len) is a topic name emit() accepts. */
static inline int
cdc_emit_topic_valid(const char *topic, size_t len)
{
	if (len == 0 || len > CDC_EMIT_TOPIC_MAX_LEN ||
		(len == 1 && topic[0] == '.') ||
		(len == 2 && topic[0] == '.' && topic[1] == '.'))
		return 0;
	for (size_t i = 0; i < len; i++)
	{
		char		c = topic[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			  (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-'))
			return 0;
	}
	return 1;
}

/*
 * Whether an event with this one-letter op takes a seq number (see above),
 * when it belongs to a transaction (op "m" also comes outside one, without).
 * begin and commit are not one-letter ops and take none.
 */
static inline int
cdc_wire_counts_in_seq(char op)
{
	return op == CDC_OP_INSERT || op == CDC_OP_UPDATE || op == CDC_OP_DELETE ||
		op == CDC_OP_TRUNCATE || op == CDC_OP_MESSAGE || op == CDC_OP_EMIT;
}

#endif							/* CDC_WIRE_H */
