/*
 * plugin.c
 *		The cdc_relay logical decoding output plugin: the callbacks that
 *		decide what to send, one JSON object per message (format version 1),
 *		or with the batch-events option several per message, separated by
 *		'\n' (see event_start).
 *
 *	 begin    {"op":"begin","xid":..,"commit_lsn":..,"ts":..}
 *	 change   [<key> TAB]{"op":"c|u|d","schema":..,"table":..,"key":{..}|null
 *			   [,"key_unknown":".."],"before":{..}|null,"after":{..}|null
 *			   [,"unchanged_toast":[..]][,"json_null":{..}],
 *			   "xid":..,"lsn":..,"commit_lsn":..,"seq":n,"ts":..}
 *			  (the key prefix with the key-prefix option; a key the WAL does
 *			  not carry is null, with key_unknown saying why)
 *	 truncate {"op":"t","tables":[{"schema":..,"table":..}],"cascade":..,
 *			   "restart_identity":.., <tail>}
 *	 message  {"op":"m","prefix":..,"transactional":..,"content":..,
 *			   "content_encoding":"text|base64", <tail>}
 *	 commit   {"op":"commit","xid":..,"commit_lsn":..,"end_lsn":..,
 *			   "events":n,"ts":..}
 *
 * How values are encoded lives in encode.c, per-relation data in
 * relcache.c, filters in filter.c, options in options.c.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "common/base64.h"
#include "mb/pg_wchar.h"
#include "replication/logical.h"
#include "replication/output_plugin.h"
#include "access/xact.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "cdc_relay.h"
#include "compat.h"

PG_MODULE_MAGIC;

extern void _PG_output_plugin_init(OutputPluginCallbacks *cb);

/*
 * batch-events: the events of a transaction are written together at its
 * commit, or as soon as they reach CDC_BATCH_BYTES; a batch buffer that one
 * large event grew past CDC_BATCH_KEEP is given back after its write.
 */
#define CDC_BATCH_BYTES		(64 * 1024)
#define CDC_BATCH_KEEP		(1024 * 1024)

/* Plugin state for one decoding session (ctx->output_plugin_private). */
typedef struct CdcData
{
	MemoryContext change_cxt;	/* reset after every message */
	CdcOptions	opts;
	int			guc_nestlevel;	/* > 0: output settings to restore at shutdown */
	StringInfoData batch;		/* batch-events: events not written yet (in
								 * ctx->context) */
} CdcData;

/*
 * Per-transaction state (txn->output_plugin_private), allocated at BEGIN
 * and freed at COMMIT; its size does not grow with the transaction.  The
 * parts shared by every event of the transaction are formatted once.
 */
typedef struct CdcTxn
{
	bool		begin_sent;
	uint64		seq;			/* events emitted so far */
	char		xid_json[32];	/* ,"xid":N  (or empty) */
	char		commit_json[40];	/* ,"commit_lsn":"X/X"  (or empty) */
	char		ts_json[MAXDATELEN + 16];	/* ,"ts":"..."  (or empty) */
} CdcTxn;

static void cdc_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt,
						bool is_init);
static void force_output_settings(CdcData *data);
static void cdc_shutdown(LogicalDecodingContext *ctx);
static void cdc_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn);
static void cdc_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
					   XLogRecPtr commit_lsn);
static void cdc_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
					   Relation relation, ReorderBufferChange *change);
static void cdc_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
						 int nrelations, Relation relations[],
						 ReorderBufferChange *change);
static void cdc_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
						XLogRecPtr lsn, bool transactional, const char *prefix,
						Size sz, const char *message);

void
_PG_output_plugin_init(OutputPluginCallbacks *cb)
{
	/*
	 * No two-phase and no streaming callbacks: a prepared transaction is
	 * decoded once, at COMMIT PREPARED (nothing at ROLLBACK PREPARED), and
	 * large transactions spill to disk instead of arriving in pieces.
	 */
	cb->startup_cb = cdc_startup;
	cb->begin_cb = cdc_begin;
	cb->change_cb = cdc_change;
	cb->truncate_cb = cdc_truncate;
	cb->commit_cb = cdc_commit;
	cb->message_cb = cdc_message;
	cb->shutdown_cb = cdc_shutdown;
}

static void
cdc_startup(LogicalDecodingContext *ctx, OutputPluginOptions *opt, bool is_init)
{
	CdcData    *data = palloc0(sizeof(CdcData));

	data->change_cxt = AllocSetContextCreate(ctx->context, "cdc_relay change",
											 ALLOCSET_DEFAULT_SIZES);
	cdc_parse_options(ctx->output_plugin_options, &data->opts);
	if (data->opts.batch_events)
	{
		MemoryContext old = MemoryContextSwitchTo(ctx->context);

		initStringInfo(&data->batch);
		MemoryContextSwitchTo(old);
	}
	ctx->output_plugin_private = data;
	opt->output_type = OUTPUT_PLUGIN_TEXTUAL_OUTPUT;
	opt->receive_rewrites = false;
	cdc_relcache_init(&data->opts, ctx->context);
	if (!is_init)
		force_output_settings(data);
}

/*
 * Fix the output settings (encode.c: values written through output
 * functions must not depend on the decoding session's settings).  Under the SQL interface (inside the caller's
 * transaction) they are set at a new GUC nest level, undone at shutdown or
 * by the transaction's abort, so the caller's session is left as it was; a
 * walsender decodes outside any transaction and keeps them for its life.
 */
static void
force_output_settings(CdcData *data)
{
	GucAction	action = GUC_ACTION_SET;

	if (IsTransactionState())
	{
		data->guc_nestlevel = NewGUCNestLevel();
		action = GUC_ACTION_SAVE;
	}
	cdc_output_settings_set(action, false);
}

static void
cdc_shutdown(LogicalDecodingContext *ctx)
{
	CdcData    *data = ctx->output_plugin_private;

	cdc_relcache_destroy();
	if (data != NULL)
	{
		if (data->guc_nestlevel > 0)
			AtEOXact_GUC(true, data->guc_nestlevel);
		MemoryContextDelete(data->change_cxt);
	}
}

/*
 * Write the batch as one message, in the callback running now: the message
 * carries that callback's LSN (the last event's, the end LSN at commit), as
 * an unbatched message carries its event's.  One write per callback, so
 * last_write is true.
 */
static void
batch_write(LogicalDecodingContext *ctx, CdcData *data)
{
	OutputPluginPrepareWrite(ctx, true);
	appendBinaryStringInfo(ctx->out, data->batch.data, data->batch.len);
	OutputPluginWrite(ctx, true);
	if (data->batch.maxlen > CDC_BATCH_KEEP)
	{
		MemoryContext old = MemoryContextSwitchTo(ctx->context);

		pfree(data->batch.data);
		initStringInfo(&data->batch);
		MemoryContextSwitchTo(old);
	}
	else
		resetStringInfo(&data->batch);
}

/*
 * Where the next event goes.  Without batch-events: a message of its own
 * (ctx->out, prepared).  With it: the batch, after a '\n' if the batch holds
 * events already (no event holds a raw newline: JSON escapes it in strings
 * and encode.c turns json values' line breaks into spaces).  End the event
 * with event_end.
 */
static StringInfo
event_start(LogicalDecodingContext *ctx, CdcData *data)
{
	if (!data->opts.batch_events)
	{
		OutputPluginPrepareWrite(ctx, true);
		return ctx->out;
	}
	if (data->batch.len > 0)
		appendStringInfoCharMacro(&data->batch, '\n');
	return &data->batch;
}

/*
 * The event begun with event_start is complete.  Without batch-events it is
 * written now; with it, the batch is written when last (the transaction's
 * commit, or an event outside any transaction) or once it is large enough.
 */
static void
event_end(LogicalDecodingContext *ctx, CdcData *data, bool last)
{
	if (!data->opts.batch_events)
		OutputPluginWrite(ctx, true);
	else if (last || data->batch.len >= CDC_BATCH_BYTES)
		batch_write(ctx, data);
}

static void
send_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, CdcTxn *t)
{
	CdcData    *data = ctx->output_plugin_private;
	StringInfo	out;

	out = event_start(ctx, data);
	appendStringInfoString(out, "{\"op\":\"begin\"");
	appendStringInfoString(out, t->xid_json);
	appendStringInfoString(out, t->commit_json);
	appendStringInfoString(out, t->ts_json);
	appendStringInfoCharMacro(out, '}');
	event_end(ctx, data, false);
	t->begin_sent = true;
}

static void
cdc_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	CdcData    *data = ctx->output_plugin_private;
	CdcTxn	   *t = MemoryContextAllocZero(ctx->context, sizeof(CdcTxn));
	StringInfoData buf;

	txn->output_plugin_private = t;

	/* Format the per-transaction parts once (buffers are sized for them). */
	if (data->opts.include_xids)
		snprintf(t->xid_json, sizeof(t->xid_json), ",\"xid\":%u", txn->xid);
	initStringInfo(&buf);
	if (data->opts.include_lsn)
	{
		appendStringInfoString(&buf, ",\"commit_lsn\":");
		cdc_append_lsn(&buf, txn->final_lsn);
		strlcpy(t->commit_json, buf.data, sizeof(t->commit_json));
	}
	if (data->opts.include_timestamp)
	{
		resetStringInfo(&buf);
		appendStringInfoString(&buf, ",\"ts\":");
		cdc_append_timestamptz(&buf, CDC_TXN_COMMIT_TIME(txn));
		strlcpy(t->ts_json, buf.data, sizeof(t->ts_json));
	}
	pfree(buf.data);

	if (!data->opts.skip_empty_xacts)
		send_begin(ctx, txn, t);
}

static void
cdc_commit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
		   XLogRecPtr commit_lsn)
{
	CdcData    *data = ctx->output_plugin_private;
	CdcTxn	   *t = txn->output_plugin_private;

	if (t->begin_sent)
	{
		StringInfo	out;

		out = event_start(ctx, data);
		appendStringInfoString(out, "{\"op\":\"commit\"");
		appendStringInfoString(out, t->xid_json);
		if (data->opts.include_lsn)
		{
			appendStringInfoString(out, t->commit_json);
			appendStringInfoString(out, ",\"end_lsn\":");
			cdc_append_lsn(out, txn->end_lsn);
		}
		appendStringInfo(out, ",\"events\":" UINT64_FORMAT, t->seq);
		appendStringInfoString(out, t->ts_json);
		appendStringInfoCharMacro(out, '}');
		event_end(ctx, data, true);
	}
	Assert(!data->opts.batch_events || data->batch.len == 0);
	pfree(t);
	txn->output_plugin_private = NULL;
}

/*
 * Start the next event of a transaction: BEGIN if still owed, then seq.
 * Returns where to write the event (event_start); end it with event_end.
 */
static StringInfo
start_txn_event(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, CdcTxn *t)
{
	if (!t->begin_sent)
		send_begin(ctx, txn, t);
	t->seq++;
	return event_start(ctx, ctx->output_plugin_private);
}

/* ,"xid":..,"lsn":..,"commit_lsn":..,"seq":n,"ts":..} closing an event. */
static void
append_txn_tail(StringInfo out, const CdcData *data, const CdcTxn *t,
				XLogRecPtr lsn)
{
	char		num[MAXINT8LEN + 1];

	appendStringInfoString(out, t->xid_json);
	if (data->opts.include_lsn)
	{
		appendBinaryStringInfo(out, ",\"lsn\":", 7);
		cdc_append_lsn(out, lsn);
		appendStringInfoString(out, t->commit_json);
	}
	appendBinaryStringInfo(out, ",\"seq\":", 7);
	appendBinaryStringInfo(out, num, pg_ulltoa_n(t->seq, num));
	appendStringInfoString(out, t->ts_json);
	appendStringInfoCharMacro(out, '}');
}

/* Deform tuple (if any) into freshly palloc'd arrays; NULLs when absent. */
static void
deform(HeapTuple tuple, TupleDesc desc, Datum **values, bool **nulls)
{
	*values = NULL;
	*nulls = NULL;
	if (tuple == NULL)
		return;
	*values = palloc(sizeof(Datum) * desc->natts);
	*nulls = palloc(sizeof(bool) * desc->natts);
	heap_deform_tuple(tuple, desc, *values, *nulls);
}

static void
cdc_change(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
		   Relation relation, ReorderBufferChange *change)
{
	CdcData    *data = ctx->output_plugin_private;
	CdcTxn	   *t = txn->output_plugin_private;
	CdcRelEntry *entry;
	HeapTuple	newtuple;
	HeapTuple	oldtuple;
	TupleDesc	desc;
	Datum	   *newvals;
	bool	   *newnulls;
	Datum	   *oldvals;
	bool	   *oldnulls;
	CdcRowNotes notes = {0};
	const char *op;
	int			action;
	bool		num = data->opts.numeric_as_number;
	StringInfo	out;
	MemoryContext old;

	switch (change->action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
			op = "{\"op\":\"c\"";
			action = CDC_ACTION_INSERT;
			break;
		case REORDER_BUFFER_CHANGE_UPDATE:
			op = "{\"op\":\"u\"";
			action = CDC_ACTION_UPDATE;
			break;
		case REORDER_BUFFER_CHANGE_DELETE:
			op = "{\"op\":\"d\"";
			action = CDC_ACTION_DELETE;
			break;
		default:
			elog(ERROR, "unexpected change action %d", (int) change->action);
			return;
	}

	old = MemoryContextSwitchTo(data->change_cxt);
	entry = cdc_relcache_get(relation);
	if (!entry->publish || (entry->actions & action) == 0)
	{
		MemoryContextSwitchTo(old);
		MemoryContextReset(data->change_cxt);
		return;
	}

	newtuple = CDC_CHANGE_NEWTUPLE(change);
	oldtuple = CDC_CHANGE_OLDTUPLE(change);
	desc = RelationGetDescr(relation);
	if (entry->map != NULL)
	{
		desc = entry->map->outdesc;
		if (newtuple)
			newtuple = execute_attr_map_tuple(newtuple, entry->map);
		if (oldtuple)
			oldtuple = execute_attr_map_tuple(oldtuple, entry->map);
	}
	deform(newtuple, desc, &newvals, &newnulls);
	deform(oldtuple, desc, &oldvals, &oldnulls);

	out = start_txn_event(ctx, txn, t);

	/* key: identity of the row before the change when the WAL has it */
	cdc_append_event_head(out, op, entry,
						  oldtuple ? oldvals : newvals,
						  oldtuple ? oldnulls : newnulls,
						  oldtuple && newtuple ? newvals : NULL,
						  oldtuple && newtuple ? newnulls : NULL,
						  data->opts.key_prefix, num, &notes);

	appendBinaryStringInfo(out, ",\"before\":", 10);
	if (oldtuple == NULL)
		appendBinaryStringInfo(out, "null", 4);
	else if (entry->old_has_all)
		cdc_append_row(out, entry, oldvals, oldnulls, NULL, entry->ncols, num,
					   CDC_IMAGE_BEFORE, &notes);
	else
		cdc_append_row(out, entry, oldvals, oldnulls, entry->keycols,
					   entry->nkeys, num, CDC_IMAGE_BEFORE, &notes);

	appendBinaryStringInfo(out, ",\"after\":", 9);
	if (newtuple == NULL || change->action == REORDER_BUFFER_CHANGE_DELETE)
		appendBinaryStringInfo(out, "null", 4);
	else
		cdc_append_row(out, entry, newvals, newnulls, NULL, entry->ncols, num,
					   CDC_IMAGE_AFTER, &notes);

	cdc_append_row_notes(out, &notes);

	append_txn_tail(out, data, t, change->lsn);
	event_end(ctx, data, false);

	MemoryContextSwitchTo(old);
	MemoryContextReset(data->change_cxt);
}

static void
cdc_truncate(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			 int nrelations, Relation relations[], ReorderBufferChange *change)
{
	CdcData    *data = ctx->output_plugin_private;
	CdcTxn	   *t = txn->output_plugin_private;
	List	   *truncated = NIL;
	List	   *named = NIL;
	List	   *tables = NIL;
	MemoryContext old;
	StringInfo	out;
	ListCell   *lc;

	old = MemoryContextSwitchTo(data->change_cxt);
	for (int i = 0; i < nrelations; i++)
		truncated = lappend_oid(truncated, RelationGetRelid(relations[i]));
	for (int i = 0; i < nrelations; i++)
	{
		CdcRelEntry *entry = cdc_relcache_get(relations[i]);
		Oid			name_relid = entry->target_relid;
		char	   *name = entry->json_table;

		if (!entry->publish || (entry->actions & CDC_ACTION_TRUNCATE) == 0)
			continue;

		/*
		 * With partition-root, a partition truncated together with its root
		 * is covered by the root's entry; one truncated on its own is named
		 * itself, since emptying it does not empty the root.
		 */
		if (entry->target_relid != entry->relid)
		{
			if (list_member_oid(truncated, entry->target_relid))
				continue;
			name_relid = entry->relid;
			name = entry->json_leaf_table;
		}
		if (list_member_oid(named, name_relid))
			continue;
		named = lappend_oid(named, name_relid);
		tables = lappend(tables, name);
	}

	if (tables != NIL)
	{
		out = start_txn_event(ctx, txn, t);
		appendStringInfoString(out, "{\"op\":\"t\",\"tables\":[");
		foreach(lc, tables)
		{
			if (foreach_current_index(lc) > 0)
				appendStringInfoCharMacro(out, ',');
			appendStringInfoString(out, lfirst(lc));
		}
		appendStringInfo(out, "],\"cascade\":%s,\"restart_identity\":%s",
						 change->data.truncate.cascade ? "true" : "false",
						 change->data.truncate.restart_seqs ? "true" : "false");
		append_txn_tail(out, data, t, change->lsn);
		event_end(ctx, data, false);
	}

	MemoryContextSwitchTo(old);
	MemoryContextReset(data->change_cxt);
}

/*
 * Logical messages (pg_logical_emit_message).  The content is bytes: it is
 * sent as a JSON string when it is valid text in the database encoding
 * (content_encoding "text"), otherwise base64-encoded ("base64"), so that
 * binary content survives exactly.
 */
static void
cdc_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			XLogRecPtr lsn, bool transactional, const char *prefix,
			Size sz, const char *message)
{
	CdcData    *data = ctx->output_plugin_private;
	CdcTxn	   *t = NULL;
	MemoryContext old;
	StringInfo	out;

	if (!cdc_message_prefix_wanted(&data->opts, prefix))
		return;

	old = MemoryContextSwitchTo(data->change_cxt);
	if (transactional)
	{
		t = txn->output_plugin_private;
		out = start_txn_event(ctx, txn, t);
	}
	else
	{
		/* decoded at once, never while a transaction is replayed */
		Assert(!data->opts.batch_events || data->batch.len == 0);
		out = event_start(ctx, data);
	}

	appendStringInfoString(out, "{\"op\":\"m\",\"prefix\":");
	cdc_append_json_string(out, prefix, strlen(prefix));
	appendStringInfo(out, ",\"transactional\":%s,\"content\":",
					 transactional ? "true" : "false");
	if (pg_verifymbstr(message, sz, true))
	{
		cdc_append_json_string(out, message, sz);
		appendStringInfoString(out, ",\"content_encoding\":\"text\"");
	}
	else
	{
		int			enclen = pg_b64_enc_len(sz);
		char	   *enc = palloc(enclen + 1);
		int			n = pg_b64_encode(message, sz, enc, enclen);

		if (n < 0)
			elog(ERROR, "could not encode message content as base64");
		cdc_append_json_string(out, enc, n);
		appendStringInfoString(out, ",\"content_encoding\":\"base64\"");
	}

	if (transactional)
		append_txn_tail(out, data, t, lsn);
	else
	{
		/* report the top-level transaction, as every other event does */
		if (txn != NULL && txn->toptxn != NULL)
			txn = txn->toptxn;
		if (data->opts.include_xids && txn != NULL && TransactionIdIsValid(txn->xid))
			appendStringInfo(out, ",\"xid\":%u", txn->xid);
		if (data->opts.include_lsn)
		{
			appendBinaryStringInfo(out, ",\"lsn\":", 7);
			cdc_append_lsn(out, lsn);
		}
		appendStringInfoCharMacro(out, '}');
	}
	event_end(ctx, data, !transactional);

	MemoryContextSwitchTo(old);
	MemoryContextReset(data->change_cxt);
}
