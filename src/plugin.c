/*
 * plugin.c
 *		The cdc_relay logical decoding output plugin: the callbacks that
 *		decide what to send, one JSON object per message (format version 1),
 *		or with the batch-events option several per message, separated by
 *		'\n' (see event_start).
 *
 * What each event looks like is proto.c's (the writers) and cdc_wire.h's
 * (the contract with the relay: separators, offsets, what seq counts).
 * How values are encoded lives in encode.c, per-relation data in
 * relcache.c, filters in filter.c, options in options.c.
 */
#include "postgres.h"

#include "access/detoast.h"
#include "access/htup_details.h"
#include "replication/logical.h"
#include "replication/origin.h"
#include "replication/output_plugin.h"
#include "access/xact.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "cdc_relay.h"
#include "cdc_wire.h"
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
	CdcProtoTxn proto;			/* seq, and the parts every event shares */
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
static bool cdc_filter_by_origin(LogicalDecodingContext *ctx,
								 RepOriginId origin_id);

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
	cb->filter_by_origin_cb = cdc_filter_by_origin;
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
		appendStringInfoCharMacro(&data->batch, CDC_WIRE_EVENT_SEP);
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
	cdc_proto_begin(out, &t->proto);
	event_end(ctx, data, false);
	t->begin_sent = true;
}

static void
cdc_begin(LogicalDecodingContext *ctx, ReorderBufferTXN *txn)
{
	CdcData    *data = ctx->output_plugin_private;
	CdcTxn	   *t = MemoryContextAllocZero(ctx->context, sizeof(CdcTxn));

	txn->output_plugin_private = t;
	cdc_proto_txn_init(&t->proto, &data->opts, txn->xid, txn->final_lsn,
					   CDC_TXN_COMMIT_TIME(txn));

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
		cdc_proto_commit(out, &data->opts, &t->proto, txn->end_lsn);
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
	cdc_proto_next_seq(&t->proto);
	return event_start(ctx, ctx->output_plugin_private);
}

/*
 * schema-events: write entry's shape as a schema event of the transaction
 * if it is not the one last written for the relation in this session (see
 * cdc_relcache_shape_is_new), before the change or truncate at lsn.  It
 * carries that event's seq and takes none itself (cdc_wire.h).
 */
static void
maybe_send_schema(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
				  CdcTxn *t, const CdcRelEntry *entry, XLogRecPtr lsn)
{
	CdcData    *data = ctx->output_plugin_private;
	StringInfo	out;

	if (!data->opts.schema_events || !cdc_relcache_shape_is_new(entry))
		return;
	if (!t->begin_sent)
		send_begin(ctx, txn, t);
	out = event_start(ctx, data);
	appendStringInfoString(out, entry->shape);
	cdc_proto_tail_next(out, &data->opts, &t->proto, lsn);
	event_end(ctx, data, false);
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
	char		op;
	int			action;
	StringInfo	out;
	MemoryContext old;

	switch (change->action)
	{
		case REORDER_BUFFER_CHANGE_INSERT:
			op = CDC_OP_INSERT;
			action = CDC_ACTION_INSERT;
			break;
		case REORDER_BUFFER_CHANGE_UPDATE:
			op = CDC_OP_UPDATE;
			action = CDC_ACTION_UPDATE;
			break;
		case REORDER_BUFFER_CHANGE_DELETE:
			op = CDC_OP_DELETE;
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

	maybe_send_schema(ctx, txn, t, entry, change->lsn);
	out = start_txn_event(ctx, txn, t);

	cdc_proto_change(out, &data->opts, op, entry,
					 oldtuple ? oldvals : NULL, oldnulls,
					 newtuple ? newvals : NULL, newnulls);
	cdc_proto_tail(out, &data->opts, &t->proto, change->lsn);
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
	List	   *shaped = NIL;	/* entries whose shape goes first */
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
		/* a partition named on its own: not the shape the root's is */
		if (name_relid == entry->target_relid)
			shaped = lappend(shaped, entry);
	}

	if (tables != NIL)
	{
		foreach(lc, shaped)
			maybe_send_schema(ctx, txn, t, lfirst(lc), change->lsn);
		out = start_txn_event(ctx, txn, t);
		cdc_proto_truncate(out, tables, change->data.truncate.cascade,
						   change->data.truncate.restart_seqs);
		cdc_proto_tail(out, &data->opts, &t->proto, change->lsn);
		event_end(ctx, data, false);
	}

	MemoryContextSwitchTo(old);
	MemoryContextReset(data->change_cxt);
}

/*
 * A cdc_relay.emit() message of txn: its "e" event (cdc_proto_emit).
 * false, with nothing written, when the content is not an emit's.
 */
static bool
send_emit(LogicalDecodingContext *ctx, ReorderBufferTXN *txn, XLogRecPtr lsn,
		  Size sz, const char *content)
{
	CdcData    *data = ctx->output_plugin_private;
	CdcTxn	   *t = txn->output_plugin_private;
	StringInfoData ev;
	StringInfo	out;
	MemoryContext old;

	old = MemoryContextSwitchTo(data->change_cxt);
	initStringInfo(&ev);
	if (!cdc_proto_emit(&ev, content, sz))
	{
		ereport(WARNING,
				(errmsg("cdc_relay: a \"%s\" message at %X/%X is not as cdc_relay.emit() writes it: written as an ordinary message",
						CDC_PREFIX_EMIT, LSN_FORMAT_ARGS(lsn))));
		MemoryContextSwitchTo(old);
		MemoryContextReset(data->change_cxt);
		return false;
	}
	out = start_txn_event(ctx, txn, t);
	appendBinaryStringInfo(out, ev.data, ev.len);
	cdc_proto_tail(out, &data->opts, &t->proto, lsn);
	event_end(ctx, data, false);
	MemoryContextSwitchTo(old);
	MemoryContextReset(data->change_cxt);
	return true;
}

/*
 * origin=none: leave out every transaction (and non-transactional message)
 * that carries a replication origin, i.e. was replayed by logical
 * replication (as pgoutput's origin=none, test_decoding's only-local).
 */
static bool
cdc_filter_by_origin(LogicalDecodingContext *ctx, RepOriginId origin_id)
{
	CdcData    *data = ctx->output_plugin_private;

	return data->opts.origin_none && origin_id != InvalidRepOriginId;
}

/* Logical messages (pg_logical_emit_message); see cdc_proto_message. */
static void
cdc_message(LogicalDecodingContext *ctx, ReorderBufferTXN *txn,
			XLogRecPtr lsn, bool transactional, const char *prefix,
			Size sz, const char *message)
{
	CdcData    *data = ctx->output_plugin_private;
	CdcTxn	   *t = NULL;
	MemoryContext old;
	StringInfo	out;

	/*
	 * cdc_relay's own transactional messages, whatever message-prefixes
	 * says: a request id is swallowed (kept for the transaction's events), a
	 * domain event becomes an "e" event.  Content that is not as the SQL
	 * functions write it (a hand-written message) goes on as an ordinary
	 * message below.
	 */
	if (transactional && strcmp(prefix, CDC_PREFIX_REQUEST_ID) == 0 &&
		cdc_proto_txn_set_request_id(&((CdcTxn *) txn->output_plugin_private)->proto,
									 message, sz))
		return;
	if (transactional && strcmp(prefix, CDC_PREFIX_EMIT) == 0 &&
		send_emit(ctx, txn, lsn, sz, message))
		return;

	if (!cdc_message_prefix_wanted(&data->opts, prefix))
		return;
	/* the DDL trigger's messages go with schema events (cdc_wire.h) */
	if (!data->opts.schema_events && strcmp(prefix, CDC_PREFIX_DDL) == 0)
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

	cdc_proto_message(out, prefix, transactional, sz, message);
	if (transactional)
		cdc_proto_tail(out, &data->opts, &t->proto, lsn);
	else
	{
		/* report the top-level transaction, as every other event does */
		if (txn != NULL && txn->toptxn != NULL)
			txn = txn->toptxn;
		cdc_proto_message_end(out, &data->opts,
							  txn != NULL ? txn->xid : InvalidTransactionId, lsn);
	}
	event_end(ctx, data, !transactional);

	MemoryContextSwitchTo(old);
	MemoryContextReset(data->change_cxt);
}
