/*
 * proto.c
 *		How cdc_relay events are written: the one place that knows the
 *		event format (version 1), as pgoutput's proto.c is for pgoutput.
 *		plugin.c decides what to send and when; functions.c's snapshot_row
 *		writes snapshot rows; both write through the functions here.  The
 *		separators, offsets, ops, reserved message prefixes and what "seq"
 *		counts are the wire contract in cdc_wire.h, shared with the relay.
 *
 *	 begin    {"op":"begin","xid":..[,"request_id":..],"commit_lsn":..,"ts":..}
 *	 change   [<key> TAB]{"op":"c|u|d","schema":..,"table":..,"key":{..}|null
 *			   [,"key_unknown":".."],"before":{..}|null,"after":{..}|null
 *			   [,"unchanged_toast":[..]][,"json_null":{..}], <tail>}
 *			  (the key prefix with the key-prefix option; a key the WAL does
 *			  not carry is null, with key_unknown saying why)
 *	 read     <key> TAB {"op":"r", ... as a change ...,"lsn":..,"snapshot":true}
 *	 truncate {"op":"t","tables":[{"schema":..,"table":..}],"cascade":..,
 *			   "restart_identity":.., <tail>}
 *	 message  {"op":"m","prefix":..,"transactional":..,"content":..,
 *			   "content_encoding":"text|base64", <tail>}
 *			  (outside a transaction: ,"xid":..,"lsn":..} instead of the tail)
 *	 schema   {"op":"s","schema":..,"table":..,"relid":..,"columns":[{"name":..,
 *			   "type":..,"type_oid":..,"not_null":..},..],"key":[..]|null,
 *			   "replica_identity":"..", <tail>}   (schema-events; cdc_wire.h)
 *	 emit     {"op":"e","topic":..,"key":..|null,"payload":<JSON>, <tail>}
 *			  (cdc_relay.emit(); the content encoding is in cdc_wire.h)
 *	 commit   {"op":"commit","xid":..[,"request_id":..],"commit_lsn":..,
 *			   "end_lsn":..,"events":n,"ts":..}
 *	 <tail>   ,"xid":..,"lsn":..,"commit_lsn":..,"seq":n[,"request_id":..],
 *			   "ts":..}
 *			  (request_id: set by cdc_relay.set_request_id())
 *
 * Values and rows are encoded by encode.c.  No function here writes a raw
 * CDC_WIRE_EVENT_SEP, CDC_WIRE_KEY_SEP or CDC_WIRE_NEWKEY_SEP but where the
 * contract puts one.
 */
#include "postgres.h"

#include "catalog/pg_class.h"
#include "catalog/pg_namespace.h"
#include "catalog/pg_type.h"
#include "common/base64.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "cdc_relay.h"
#include "cdc_wire.h"

/* ---- per transaction --------------------------------------------------- */

/*
 * Format the parts every event of a transaction shares, once: its xid,
 * commit LSN (final_lsn) and commit time, as the options ask.  seq starts
 * at 0.
 */
void
cdc_proto_txn_init(CdcProtoTxn *t, const CdcOptions *opts, TransactionId xid,
				   XLogRecPtr final_lsn, TimestampTz commit_time)
{
	StringInfoData buf;

	memset(t, 0, sizeof(*t));
	if (opts->include_xids)
		snprintf(t->xid_json, sizeof(t->xid_json), CDC_WIRE_F_XID "%u", xid);
	initStringInfo(&buf);
	if (opts->include_lsn)
	{
		appendStringInfoString(&buf, CDC_WIRE_F_COMMIT_LSN);
		cdc_append_lsn(&buf, final_lsn);
		strlcpy(t->commit_json, buf.data, sizeof(t->commit_json));
	}
	if (opts->include_timestamp)
	{
		resetStringInfo(&buf);
		appendStringInfoString(&buf, CDC_WIRE_F_TS);
		cdc_append_timestamptz(&buf, commit_time);
		strlcpy(t->ts_json, buf.data, sizeof(t->ts_json));
	}
	pfree(buf.data);
}

/* {"op":"begin","xid":..,"commit_lsn":..,"ts":..} */
void
cdc_proto_begin(StringInfo out, const CdcProtoTxn *t)
{
	appendStringInfoString(out, CDC_WIRE_OP_OPEN CDC_OP_BEGIN "\"");
	appendStringInfoString(out, t->xid_json);
	appendStringInfoString(out, t->request_id_json);
	appendStringInfoString(out, t->commit_json);
	appendStringInfoString(out, t->ts_json);
	appendStringInfoCharMacro(out, '}');
}

/* {"op":"commit","xid":..,"commit_lsn":..,"end_lsn":..,"events":n,"ts":..} */
void
cdc_proto_commit(StringInfo out, const CdcOptions *opts, const CdcProtoTxn *t,
				 XLogRecPtr end_lsn)
{
	appendStringInfoString(out, CDC_WIRE_OP_OPEN CDC_OP_COMMIT "\"");
	appendStringInfoString(out, t->xid_json);
	appendStringInfoString(out, t->request_id_json);
	if (opts->include_lsn)
	{
		appendStringInfoString(out, t->commit_json);
		appendStringInfoString(out, CDC_WIRE_F_END_LSN);
		cdc_append_lsn(out, end_lsn);
	}
	appendStringInfo(out, CDC_WIRE_F_EVENTS UINT64_FORMAT, t->seq);
	appendStringInfoString(out, t->ts_json);
	appendStringInfoCharMacro(out, '}');
}

/*
 * The next event of the transaction takes the next seq (cdc_wire.h says
 * which events do); call before writing it.
 */
void
cdc_proto_next_seq(CdcProtoTxn *t)
{
	t->seq++;
}

/*
 * ,"xid":..,"lsn":..,"commit_lsn":..,"seq":n[,"request_id":..],"ts":..}
 * closing an event.
 */
void
cdc_proto_tail(StringInfo out, const CdcOptions *opts, const CdcProtoTxn *t,
			   XLogRecPtr lsn)
{
	char		num[MAXINT8LEN + 1];

	appendStringInfoString(out, t->xid_json);
	if (opts->include_lsn)
	{
		cdc_append_literal(out, CDC_WIRE_F_LSN);
		cdc_append_lsn(out, lsn);
		appendStringInfoString(out, t->commit_json);
	}
	cdc_append_literal(out, CDC_WIRE_F_SEQ);
	appendBinaryStringInfo(out, num, pg_ulltoa_n(t->seq, num));
	if (t->request_id_json[0] != '\0')
		appendStringInfoString(out, t->request_id_json);
	appendStringInfoString(out, t->ts_json);
	appendStringInfoCharMacro(out, '}');
}

/*
 * The tail of an event that does not count in seq (a schema event,
 * cdc_wire.h): it carries the seq of the next event that does.
 */
void
cdc_proto_tail_next(StringInfo out, const CdcOptions *opts, const CdcProtoTxn *t,
					XLogRecPtr lsn)
{
	CdcProtoTxn next = *t;

	next.seq++;
	cdc_proto_tail(out, opts, &next, lsn);
}

/* ---- row events -------------------------------------------------------- */

/* ,"name":["col",...] for a list of CdcColumn * */
static void
append_column_list(StringInfo out, const char *name, List *cols)
{
	ListCell   *lc;

	appendStringInfoString(out, name);
	appendStringInfoCharMacro(out, '[');
	foreach(lc, cols)
	{
		const CdcColumn *col = lfirst(lc);

		if (foreach_current_index(lc) > 0)
			appendStringInfoCharMacro(out, ',');
		appendStringInfoString(out, col->json_str);
	}
	appendStringInfoCharMacro(out, ']');
}

/* The optional "unchanged_toast" and "json_null" fields of a change event. */
static void
cdc_append_row_notes(StringInfo out, const CdcRowNotes *notes)
{
	static const char *const image_names[CDC_NUM_IMAGES] = {
		"\"key\":", "\"before\":", "\"after\":"
	};
	bool		any_json_null = false;

	if (notes->unchanged != NIL)
		append_column_list(out, ",\"unchanged_toast\":", notes->unchanged);
	for (int i = 0; i < CDC_NUM_IMAGES; i++)
		any_json_null |= (notes->json_null[i] != NIL);
	if (!any_json_null)
		return;
	appendStringInfoString(out, ",\"json_null\":{");
	for (int i = 0, n = 0; i < CDC_NUM_IMAGES; i++)
	{
		if (notes->json_null[i] == NIL)
			continue;
		if (n++ > 0)
			appendStringInfoCharMacro(out, ',');
		append_column_list(out, image_names[i], notes->json_null[i]);
	}
	appendStringInfoCharMacro(out, '}');
}

/* ,"key_unknown":"<reason>" when reason is not NULL */
static void
append_key_unknown(StringInfo out, char *reason)
{
	if (reason == NULL)
		return;
	cdc_append_literal(out, CDC_WIRE_F_KEY_UNKNOWN);
	cdc_append_json_string(out, reason, strlen(reason));
	pfree(reason);
}

/*
 * Why the key of a change on entry's relation is not known, or NULL when
 * it is (or the relation has no key columns, so the key is null anyway).
 * keyvals/keynulls is the deformed row the key is taken from, NULL when the
 * change has none (a delete whose old row the WAL does not have).  A key
 * column whose value is stored out of line and is not in the WAL
 * (unchanged TOAST: the new row of an update whose old key the WAL does
 * not have) is not known either.  A key is never made of the known
 * columns alone: that would be another row's key.
 */
static char *
key_unknown_reason(const CdcRelEntry *entry, const Datum *keyvals,
				   const bool *keynulls)
{
	StringInfoData cols;
	int			nunknown = 0;

	if (entry->nkeys == 0)
		return NULL;
	if (keyvals == NULL)
		return psprintf("old row not in the WAL (%s)", entry->identity);
	for (int k = 0; k < entry->nkeys; k++)
	{
		const CdcColumn *col = &entry->cols[entry->keycols[k]];
		int			a = col->attnum - 1;

		if (keynulls[a] || col->type.typlen != -1 ||
			!VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(keyvals[a])))
			continue;
		if (nunknown++ == 0)
			initStringInfo(&cols);
		else
			appendStringInfoString(&cols, ", ");
		appendStringInfoString(&cols, quote_identifier(col->name));
	}
	if (nunknown == 0)
		return NULL;
	return psprintf("unchanged TOAST key column%s %s not in the WAL (%s)",
					nunknown > 1 ? "s" : "", cols.data, entry->identity);
}

/*
 * Append the start of a change event on entry's relation, up to and
 * including its key:
 *
 *		{"op":"c","schema":"s","table":"t","key":{...}
 *
 * op is the opening through the op field ({"op":"c").  The key is made of
 * entry's key columns of the deformed row keyvals/keynulls, or null when
 * the relation has no key.  When the relation has a key but its value is
 * not known (keyvals is NULL, or a key column is unchanged TOAST, see
 * key_unknown_reason), the key is null too, followed by
 * ,"key_unknown":"<why>".  With key_prefix the key JSON and a tab come
 * first (<key> TAB {"op":...); the event's key field is then a copy of
 * those bytes, not a second encoding.
 *
 * newkeyvals/newkeynulls (key_prefix only, else NULL): the new row of an
 * update whose old row the WAL has.  When its key differs from the old one
 * (the update changed the key), the prefix carries both, separated by a
 * vertical tab (0x0b, never raw in JSON): <old key> VT <new key> TAB {"op":...
 * so that the relay can key the event by the new key and tombstone the old.
 */
static void
cdc_append_event_head(StringInfo out, const char *op, const CdcRelEntry *entry,
					  const Datum *keyvals, const bool *keynulls,
					  const Datum *newkeyvals, const bool *newkeynulls,
					  bool key_prefix, bool numeric_as_number,
					  CdcRowNotes *notes)
{
	char	   *unknown = key_unknown_reason(entry, keyvals, keynulls);
	bool		has_key = (keyvals != NULL && entry->nkeys > 0 && unknown == NULL);
	int			key_start;
	int			key_len;

	if (!key_prefix)
	{
		cdc_append_bytes(out, op, strlen(op));
		cdc_append_bytes(out, entry->json_ident, entry->json_ident_len);
		cdc_append_literal(out, CDC_WIRE_F_KEY);
		if (has_key)
			cdc_append_row(out, entry, keyvals, keynulls, entry->keycols,
						   entry->nkeys, numeric_as_number, CDC_IMAGE_KEY, notes);
		else
			cdc_append_bytes(out, "null", 4);
		append_key_unknown(out, unknown);
		return;
	}

	key_start = out->len;
	if (has_key)
		cdc_append_row(out, entry, keyvals, keynulls, entry->keycols,
					   entry->nkeys, numeric_as_number, CDC_IMAGE_KEY, notes);
	else
		cdc_append_bytes(out, "null", 4);
	key_len = out->len - key_start;
	if (has_key && newkeyvals != NULL)
	{
		CdcRowNotes newnotes = {0};
		int			new_start;

		appendStringInfoCharMacro(out, CDC_WIRE_NEWKEY_SEP);
		new_start = out->len;
		cdc_append_row(out, entry, newkeyvals, newkeynulls, entry->keycols,
					   entry->nkeys, numeric_as_number, CDC_IMAGE_KEY, &newnotes);
		/*
		 * Same key, or a key column not in the WAL (unchanged TOAST, so not
		 * changed): no second key.
		 */
		if (newnotes.unchanged != NIL ||
			(out->len - new_start == key_len &&
			 memcmp(out->data + new_start, out->data + key_start, key_len) == 0))
		{
			out->len = new_start - 1;
			out->data[out->len] = '\0';
		}
	}
	appendStringInfoCharMacro(out, CDC_WIRE_KEY_SEP);
	cdc_append_bytes(out, op, strlen(op));
	cdc_append_bytes(out, entry->json_ident, entry->json_ident_len);
	cdc_append_literal(out, CDC_WIRE_F_KEY);
	/* copy within the buffer: enlarge first, the data may move */
	enlargeStringInfo(out, key_len);
	memcpy(out->data + out->len, out->data + key_start, key_len);
	out->len += key_len;
	out->data[out->len] = '\0';
	append_key_unknown(out, unknown);
}


/*
 * An insert, update or delete on entry's relation (op: CDC_OP_INSERT,
 * CDC_OP_UPDATE or CDC_OP_DELETE), up to its tail (cdc_proto_tail).  The
 * deformed old row (NULL: the WAL has none) and new row (NULL: none; a
 * delete's is never written) are in entry's column order.  The key is the
 * old row's when the WAL has it, else the new row's.
 */
void
cdc_proto_change(StringInfo out, const CdcOptions *opts, char op,
				 const CdcRelEntry *entry, const Datum *oldvals,
				 const bool *oldnulls, const Datum *newvals,
				 const bool *newnulls)
{
	CdcRowNotes notes = {0};
	bool		num = opts->numeric_as_number;
	char		open[] = CDC_WIRE_OP_OPEN "?\"";

	open[CDC_WIRE_OP_OFFSET] = op;
	cdc_append_event_head(out, open, entry,
						  oldvals ? oldvals : newvals,
						  oldvals ? oldnulls : newnulls,
						  oldvals && newvals ? newvals : NULL,
						  oldvals && newvals ? newnulls : NULL,
						  opts->key_prefix, num, &notes);

	cdc_append_literal(out, CDC_WIRE_F_BEFORE);
	if (oldvals == NULL)
		cdc_append_literal(out, "null");
	else if (entry->old_has_all)
		cdc_append_row(out, entry, oldvals, oldnulls, NULL, entry->ncols, num,
					   CDC_IMAGE_BEFORE, &notes);
	else
		cdc_append_row(out, entry, oldvals, oldnulls, entry->keycols,
					   entry->nkeys, num, CDC_IMAGE_BEFORE, &notes);

	cdc_append_literal(out, CDC_WIRE_F_AFTER);
	if (newvals == NULL || op == CDC_OP_DELETE)
		cdc_append_literal(out, "null");
	else
		cdc_append_row(out, entry, newvals, newnulls, NULL, entry->ncols, num,
					   CDC_IMAGE_AFTER, &notes);

	cdc_append_row_notes(out, &notes);
}

/*
 * A row read by a snapshot (op "r"), complete: always key-prefixed, lsn the
 * snapshot's position (include-lsn), and "snapshot":true in place of the
 * transaction tail.
 */
void
cdc_proto_snapshot_row(StringInfo out, const CdcOptions *opts,
					   const CdcRelEntry *entry, const Datum *values,
					   const bool *nulls, XLogRecPtr lsn)
{
	CdcRowNotes notes = {0};
	bool		num = opts->numeric_as_number;
	char		open[] = CDC_WIRE_OP_OPEN "?\"";

	open[CDC_WIRE_OP_OFFSET] = CDC_OP_READ;
	cdc_append_event_head(out, open, entry, values, nulls, NULL, NULL, true,
						  num, &notes);
	cdc_append_literal(out, CDC_WIRE_F_BEFORE "null" CDC_WIRE_F_AFTER);
	cdc_append_row(out, entry, values, nulls, NULL, entry->ncols, num,
				   CDC_IMAGE_AFTER, &notes);
	cdc_append_row_notes(out, &notes);
	if (opts->include_lsn)
	{
		cdc_append_literal(out, CDC_WIRE_F_LSN);
		cdc_append_lsn(out, lsn);
	}
	cdc_append_literal(out, CDC_WIRE_F_SNAPSHOT "}");
}

/*
 * A truncate, up to its tail: tables is a List of the relations' pre-encoded
 * {"schema":..,"table":..} (CdcRelEntry json_table or json_leaf_table).
 */
void
cdc_proto_truncate(StringInfo out, List *tables, bool cascade, bool restart_seqs)
{
	ListCell   *lc;

	appendStringInfoString(out, CDC_WIRE_OP_OPEN "t\",\"tables\":[");
	foreach(lc, tables)
	{
		if (foreach_current_index(lc) > 0)
			appendStringInfoCharMacro(out, ',');
		appendStringInfoString(out, lfirst(lc));
	}
	appendStringInfo(out, "],\"cascade\":%s,\"restart_identity\":%s",
					 cascade ? "true" : "false",
					 restart_seqs ? "true" : "false");
}

/*
 * A logical message (pg_logical_emit_message), up to its tail (transactional)
 * or cdc_proto_message_end (not).  The content is bytes: it is sent as a
 * JSON string when it is valid text in the database encoding
 * (content_encoding "text"), otherwise base64-encoded ("base64"), so that
 * binary content survives exactly.
 */
void
cdc_proto_message(StringInfo out, const char *prefix, bool transactional,
				  Size sz, const char *message)
{
	appendStringInfoString(out, CDC_WIRE_OP_OPEN "m\"" CDC_WIRE_F_PREFIX);
	cdc_append_json_string(out, prefix, strlen(prefix));
	appendStringInfo(out, CDC_WIRE_F_TRANSACTIONAL "%s" CDC_WIRE_F_CONTENT,
					 transactional ? "true" : "false");
	if (pg_verifymbstr(message, sz, true))
	{
		cdc_append_json_string(out, message, sz);
		appendStringInfoString(out, CDC_WIRE_F_CONTENT_ENCODING "\"text\"");
	}
	else
	{
		int			enclen = pg_b64_enc_len(sz);
		char	   *enc = palloc(enclen + 1);
		int			n = pg_b64_encode(message, sz, enc, enclen);

		if (n < 0)
			elog(ERROR, "could not encode message content as base64");
		cdc_append_json_string(out, enc, n);
		appendStringInfoString(out, CDC_WIRE_F_CONTENT_ENCODING "\"base64\"");
		pfree(enc);
	}
}

/*
 * The end of a message outside any transaction: ,"xid":..,"lsn":..} (xid:
 * the top-level transaction's, when it has one and include-xids).
 */
void
cdc_proto_message_end(StringInfo out, const CdcOptions *opts, TransactionId xid,
					  XLogRecPtr lsn)
{
	if (opts->include_xids && TransactionIdIsValid(xid))
		appendStringInfo(out, CDC_WIRE_F_XID "%u", xid);
	if (opts->include_lsn)
	{
		cdc_append_literal(out, CDC_WIRE_F_LSN);
		cdc_append_lsn(out, lsn);
	}
	appendStringInfoCharMacro(out, '}');
}

/* ---- request ids and domain events ---------------------------------------- */

/*
 * Whether id[0..len) is a request id (cdc_wire.h): 1 to
 * CDC_REQUEST_ID_MAX_BYTES bytes of valid text in the database encoding
 * without control characters.  When not, *why says what is wrong (a
 * sentence fragment for an error message).
 */
bool
cdc_request_id_valid(const char *id, Size len, const char **why)
{
	if (len == 0)
	{
		*why = "it is empty";
		return false;
	}
	if (len > CDC_REQUEST_ID_MAX_BYTES)
	{
		*why = "it is longer than 256 bytes";
		return false;
	}
	for (Size i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) id[i];

		if (c < 0x20 || c == 0x7f)
		{
			*why = "it contains a control character";
			return false;
		}
	}
	if (!pg_verifymbstr(id, len, true))
	{
		*why = "it is not valid text in the database encoding";
		return false;
	}
	return true;
}

/*
 * The transaction's request id is id[0..len) (the content of a
 * CDC_PREFIX_REQUEST_ID message): begin (when written after this), every
 * tailed event written after this and the commit carry it.  false, with
 * nothing set, when it is not a valid request id (only a hand-written
 * message can be invalid: cdc_relay.set_request_id() validates).
 */
bool
cdc_proto_txn_set_request_id(CdcProtoTxn *t, const char *id, Size len)
{
	StringInfoData buf;
	const char *why;

	if (!cdc_request_id_valid(id, len, &why))
		return false;
	initStringInfo(&buf);
	appendStringInfoString(&buf, CDC_WIRE_F_REQUEST_ID);
	cdc_append_json_string(&buf, id, len);
	/* at most 2 bytes per byte ('"' and '\\' are escaped): it fits */
	Assert(buf.len < sizeof(t->request_id_json));
	strlcpy(t->request_id_json, buf.data, sizeof(t->request_id_json));
	pfree(buf.data);
	return true;
}

/*
 * The content of a CDC_PREFIX_EMIT message (cdc_wire.h): topic NUL
 * ('k' key | 'n') NUL payload.  key NULL: no key.  palloc'd; *len its
 * length.  The caller validated the topic; text holds no NUL.
 */
char *
cdc_emit_content_build(const char *topic, const char *key, const char *payload,
					   Size *len)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, topic);
	appendStringInfoChar(&buf, CDC_EMIT_SEP);
	if (key != NULL)
	{
		appendStringInfoChar(&buf, CDC_EMIT_KEY);
		appendStringInfoString(&buf, key);
	}
	else
		appendStringInfoChar(&buf, CDC_EMIT_NO_KEY);
	appendStringInfoChar(&buf, CDC_EMIT_SEP);
	appendStringInfoString(&buf, payload);
	*len = buf.len;
	return buf.data;
}

/* Whether p[0..len) is one JSON value on one line (no raw newline or tab). */
static bool
payload_valid(const char *p, Size len)
{
	JsonLexContext *lex;
	char	   *copy;
	bool		ok;

	if (len == 0 || memchr(p, '\n', len) || memchr(p, '\r', len) ||
		memchr(p, '\t', len) || memchr(p, '\v', len) || memchr(p, '\0', len))
		return false;
	copy = pnstrdup(p, len);
	lex = makeJsonLexContextCstringLen(copy, len, GetDatabaseEncoding(), true);
	ok = pg_parse_json(lex, &nullSemAction) == JSON_SUCCESS;
	pfree(copy);
	return ok;
}

/*
 * A domain event from the content sz bytes of a CDC_PREFIX_EMIT message,
 * up to its tail:
 *
 *	 {"op":"e","topic":T,"key":K|null,"payload":<JSON>
 *
 * Returns false, writing nothing, when the content is not as
 * cdc_emit_content_build writes it (a valid topic, a key that is valid
 * text, a payload that is one JSON value on one line): the caller then
 * writes it as an ordinary message.
 */
bool
cdc_proto_emit(StringInfo out, const char *content, Size sz)
{
	const char *sep1 = memchr(content, CDC_EMIT_SEP, sz);
	const char *sep2;
	const char *key;
	const char *payload;
	Size		topiclen,
				keylen,
				paylen;

	if (sep1 == NULL)
		return false;
	topiclen = sep1 - content;
	key = sep1 + 1;
	sep2 = memchr(key, CDC_EMIT_SEP, content + sz - key);
	if (sep2 == NULL || sep2 == key)
		return false;
	keylen = sep2 - key;
	payload = sep2 + 1;
	paylen = content + sz - payload;
	if (!cdc_emit_topic_valid(content, topiclen) ||
		!((key[0] == CDC_EMIT_KEY && pg_verifymbstr(key + 1, keylen - 1, true)) ||
		  (key[0] == CDC_EMIT_NO_KEY && keylen == 1)) ||
		!payload_valid(payload, paylen))
		return false;

	appendStringInfoString(out, CDC_WIRE_OP_OPEN "e\"" CDC_WIRE_F_TOPIC);
	cdc_append_json_string(out, content, topiclen);
	appendStringInfoString(out, CDC_WIRE_F_KEY);
	if (key[0] == CDC_EMIT_KEY)
		cdc_append_json_string(out, key + 1, keylen - 1);
	else
		appendStringInfoString(out, "null");
	appendStringInfoString(out, CDC_WIRE_F_PAYLOAD);
	appendBinaryStringInfo(out, payload, paylen);
	return true;
}

/* ---- schema events ----------------------------------------------------- */

/*
 * A column type as SQL spells it, with its modifier: built-in types
 * (pg_catalog) as format_type() writes them ("integer", "character
 * varying(20)", "text[]"), any other schema-qualified whatever the
 * search_path ("public.mood"), so that the stream and the snapshot (run
 * with different search_paths) spell a type alike.
 */
static char *
column_type_name(Oid typid, int32 typmod)
{
	Oid			named = typid;
	Oid			elem = get_element_type(typid);
	HeapTuple	tup;
	Oid			nsp;

	/* an array's name is its element's (format_type writes elem[]) */
	if (OidIsValid(elem))
		named = elem;
	tup = SearchSysCache1(TYPEOID, ObjectIdGetDatum(named));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for type %u", named);
	nsp = ((Form_pg_type) GETSTRUCT(tup))->typnamespace;
	ReleaseSysCache(tup);
	if (nsp == PG_CATALOG_NAMESPACE)
		return format_type_extended(typid, typmod, FORMAT_TYPE_TYPEMOD_GIVEN);
	return format_type_extended(typid, typmod,
								FORMAT_TYPE_TYPEMOD_GIVEN | FORMAT_TYPE_FORCE_QUALIFY);
}

/*
 * The schema event of entry's relation up to its tail (the caller closes
 * it with cdc_proto_tail, or CDC_WIRE_F_SNAPSHOT "}"), palloc'd:
 *
 *	 {"op":"s","schema":..,"table":..,"relid":N,"columns":[{"name":..,
 *	  "type":..,"type_oid":N,"not_null":B},..],"key":["col",..]|null,
 *	  "replica_identity":"default|full|index|nothing"
 *
 * target is the relation the events name (entry->target_relid: the root
 * with partition-root), relation the one changes are on: its replica
 * identity decides what the WAL holds, and entry's key columns (the ones
 * the events' keys are made of) come from its index.  Columns in the
 * target's order, as the events write rows; types are the declared ones
 * (a domain by its name, not its base type).
 */
char *
cdc_proto_schema(const CdcRelEntry *entry, Relation target, Relation relation)
{
	StringInfoData out;
	TupleDesc	desc = RelationGetDescr(target);
	const char *ident;

	initStringInfo(&out);
	appendStringInfoString(&out, CDC_WIRE_OP_OPEN "s\"");
	appendStringInfoString(&out, entry->json_ident);
	appendStringInfo(&out, CDC_WIRE_F_RELID "%u" CDC_WIRE_F_COLUMNS "[",
					 RelationGetRelid(target));
	for (int i = 0; i < entry->ncols; i++)
	{
		const CdcColumn *col = &entry->cols[i];
		Form_pg_attribute att = TupleDescAttr(desc, col->attnum - 1);
		char	   *type = column_type_name(att->atttypid, att->atttypmod);

		if (i > 0)
			appendStringInfoCharMacro(&out, ',');
		appendStringInfoString(&out, "{\"name\":");
		appendStringInfoString(&out, col->json_str);
		appendStringInfoString(&out, ",\"type\":");
		cdc_append_json_string(&out, type, strlen(type));
		appendStringInfo(&out, ",\"type_oid\":%u,\"not_null\":%s}",
						 att->atttypid, att->attnotnull ? "true" : "false");
		pfree(type);
	}
	appendStringInfoString(&out, "]" CDC_WIRE_F_KEY);
	if (entry->nkeys == 0)
		appendStringInfoString(&out, "null");
	else
	{
		appendStringInfoCharMacro(&out, '[');
		for (int k = 0; k < entry->nkeys; k++)
		{
			if (k > 0)
				appendStringInfoCharMacro(&out, ',');
			appendStringInfoString(&out, entry->cols[entry->keycols[k]].json_str);
		}
		appendStringInfoCharMacro(&out, ']');
	}
	switch (relation->rd_rel->relreplident)
	{
		case REPLICA_IDENTITY_NOTHING:
			ident = "nothing";
			break;
		case REPLICA_IDENTITY_FULL:
			ident = "full";
			break;
		case REPLICA_IDENTITY_INDEX:
			ident = "index";
			break;
		default:
			ident = "default";
			break;
	}
	appendStringInfo(&out, CDC_WIRE_F_REPLICA_IDENTITY "\"%s\"", ident);
	return out.data;
}
