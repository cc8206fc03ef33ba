/*
 * scan.h: reading the plugin's messages on the hot path without a JSON parser.
 *
 * A CopyData payload from the plugin holds one event or, with the plugin
 * option batch-events, several separated by '\n' (no event holds a raw
 * newline: JSON escapes it inside strings, and the plugin writes json values'
 * line breaks as spaces); scan_next_event splits it.
 *
 * scan_begin, scan_commit, scan_message and scan_emit read the fixed fields
 * of begin, commit, logical message and domain ("e") events written exactly
 * as the plugin writes them (format version 1, src/cdc_wire.h: its field order, optional fields present or absent
 * as include-xids / include-lsn / include-timestamp leave them, numbers and
 * LSNs in its notation, every byte accounted for up to the closing brace).
 * Anything else is refused (false): the caller then parses the event with a
 * JSON parser (jansson), which decides whether it is malformed.  So a scanner
 * never accepts what the plugin does not write, and never decides an error.
 * (A domain event scan_emit refuses is an error of its own: no fallback.)
 *
 * Pure: no I/O, no allocation, no state; unit tested in
 * test/unit/relay_units.c.
 */
#ifndef RELAY_SCAN_H
#define RELAY_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "cdc_wire.h"

/* Bytes inside the event (not NUL-terminated); p == NULL: the field is absent. */
typedef struct ScanText
{
	const char *p;
	size_t		len;
} ScanText;

/* What an event is, from its first bytes (scan_kind). */
typedef enum ScanKind
{
	SCAN_ROW,					/* <key> TAB <insert/update/delete>: key-prefix */
	SCAN_BEGIN,
	SCAN_COMMIT,
	SCAN_MESSAGE,
	SCAN_TRUNCATE,
	SCAN_EMIT,					/* a domain event (cdc_relay.emit) */
	SCAN_OTHER					/* anything else: a JSON parser decides */
} ScanKind;

/* {"op":"begin"[,"xid":N][,"commit_lsn":"X/X"][,"ts":"..."]} */
typedef struct ScanBegin
{
	ScanText	xid;			/* decimal digits */
	uint32_t	xid_value;
	ScanText	request_id;		/* raw JSON string contents (scan_unescape) */
	ScanText	commit_lsn;		/* X/X, without the quotes */
	uint64_t	commit_lsn_value;
	ScanText	ts;				/* without the quotes */
} ScanBegin;

/*
 * {"op":"commit"[,"xid":N][,"commit_lsn":"X/X","end_lsn":"X/X"],"events":N
 * [,"ts":"..."]}
 */
typedef struct ScanCommit
{
	ScanText	xid;
	uint32_t	xid_value;
	ScanText	request_id;		/* raw JSON string contents (scan_unescape) */
	ScanText	commit_lsn;
	uint64_t	commit_lsn_value;
	ScanText	end_lsn;
	uint64_t	end_lsn_value;
	uint64_t	events;
	ScanText	ts;
} ScanCommit;

/*
 * {"op":"m","prefix":S,"transactional":B,"content":S,"content_encoding":E,
 * then, transactional: [,"xid":N][,"lsn":"X/X","commit_lsn":"X/X"],"seq":N
 * [,"ts":"..."]}; not transactional: [,"xid":N][,"lsn":"X/X"]}
 */
typedef struct ScanMessage
{
	ScanText	prefix;			/* the text (a prefix with an escape is refused) */
	bool		transactional;
	ScanText	content;		/* raw JSON string contents, escapes not decoded */
	bool		base64;			/* content_encoding "base64" (else "text") */
	ScanText	xid;
	uint32_t	xid_value;
	ScanText	lsn;
	uint64_t	lsn_value;
	ScanText	commit_lsn;		/* transactional only */
	uint64_t	commit_lsn_value;
	bool		has_seq;		/* transactional only, always present then */
	uint64_t	seq;
	ScanText	request_id;		/* transactional only; raw (scan_unescape) */
	ScanText	ts;				/* transactional only */
} ScanMessage;

/*
 * {"op":"e","topic":S,"key":S|null,"payload":<JSON value>,
 * then the transaction tail: [,"xid":N][,"lsn":"X/X","commit_lsn":"X/X"],
 * "seq":N[,"request_id":S][,"ts":"..."]}
 */
typedef struct ScanEmit
{
	ScanText	topic;			/* the name (a topic with an escape is refused) */
	ScanText	key;			/* raw JSON string contents; p NULL: null */
	ScanText	payload;		/* the JSON value's bytes, as written */
	ScanText	xid;
	uint32_t	xid_value;
	ScanText	lsn;
	uint64_t	lsn_value;
	ScanText	commit_lsn;
	uint64_t	commit_lsn_value;
	uint64_t	seq;
	ScanText	request_id;		/* raw (scan_unescape) */
	ScanText	ts;
} ScanEmit;

/*
 * The next event of a CopyData payload buf[0..len): the event starts at
 * buf + *off; returns its length and moves *off past the event and the '\n'
 * ending it.  Call while *off < len.  A '\n' at the very end ends the last
 * event (no empty event follows it); two in a row give an empty event, which
 * no handler accepts.
 */
static inline size_t
scan_next_event(const char *buf, size_t len, size_t *off)
{
	const char *start = buf + *off;
	const char *nl = memchr(start, CDC_WIRE_EVENT_SEP, len - *off);
	size_t		n = nl != NULL ? (size_t) (nl - start) : len - *off;

	*off += n + (nl != NULL);
	return n;
}

/*
 * The kind of one event: SCAN_ROW when it holds a TAB (a key-prefixed row
 * event; no JSON event holds a raw TAB), else by its op.  Only a first
 * guess for everything but SCAN_ROW: the scanners validate.
 */
ScanKind	scan_kind(const char *ev, size_t len);

/* The fixed fields of a begin / commit / message event; false: not as the plugin writes it. */
bool		scan_begin(const char *ev, size_t len, ScanBegin *out);
bool		scan_commit(const char *ev, size_t len, ScanCommit *out);
bool		scan_message(const char *ev, size_t len, ScanMessage *out);
bool		scan_emit(const char *ev, size_t len, ScanEmit *out);

/*
 * The raw contents t of a JSON string that scan.c accepted (escapes as the
 * plugin writes them, \uXXXX included, surrogate pairs as UTF-8), decoded
 * into dst[0..size) as a C string; *outlen its length (it may hold NUL
 * bytes).  false, with dst empty, if it does not fit or an escape is bad.
 */
bool		scan_unescape(ScanText t, char *dst, size_t size, size_t *outlen);

/*
 * Copy t into dst[0..size) as a C string (absent: ""); false, with dst
 * empty, if it does not fit.
 */
bool		scan_text_copy(ScanText t, char *dst, size_t size);

#endif
