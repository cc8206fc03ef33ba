/*
 * schema.c
 *		The SQL side of schema changes: cdc_relay.table_schema() (a
 *		relation's shape as the schema event the plugin writes, for a
 *		snapshot) and the DDL capture event trigger's function, which writes
 *		each DDL command as a transactional logical message with prefix
 *		CDC_PREFIX_DDL (cdc_wire.h), governed by cdc_relay.capture_ddl.
 *
 * The schema event itself (op "s") is written by proto.c; the plugin sends
 * it from plugin.c when the option schema-events is on.
 */
#include "postgres.h"

#include "access/relation.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/pg_class.h"
#include "commands/event_trigger.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "replication/message.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/resowner.h"

#include "cdc_relay.h"
#include "cdc_wire.h"

PG_FUNCTION_INFO_V1(cdc_relay_table_schema);
PG_FUNCTION_INFO_V1(cdc_relay_capture_ddl);

/* ---------------------------------------------------------------------
 * cdc_relay.table_schema(rel regclass, options text[])
 * --------------------------------------------------------------------- */

/*
 * The schema event of rel as the plugin, run with these options, writes it
 * before rel's first change (the shape of the relation the events name: its
 * partition root with partition-root), closed by "snapshot":true instead of
 * the transaction tail.  rel is an ordinary or a partitioned table.
 */
Datum
cdc_relay_table_schema(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	CdcOptions	opts;
	CdcRelEntry entry;
	Relation	rel;
	StringInfoData out;
	MemoryContext cxt;

	cdc_inval_callbacks_register();
	cdc_parse_options(cdc_options_from_array(PG_GETARG_ARRAYTYPE_P(1)), &opts);
	opts.schema_events = true;

	rel = try_relation_open(relid, AccessShareLock);
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (rel->rd_rel->relkind != RELKIND_RELATION &&
		rel->rd_rel->relkind != RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(rel)),
				 errdetail("Schema events describe ordinary and partitioned tables.")));

	cxt = AllocSetContextCreate(CurrentMemoryContext, "cdc_relay table_schema",
								ALLOCSET_SMALL_SIZES);
	memset(&entry, 0, sizeof(entry));
	entry.relid = relid;
	cdc_relentry_build(&entry, rel, &opts, cxt);
	relation_close(rel, AccessShareLock);

	initStringInfo(&out);
	appendStringInfoString(&out, entry.shape);
	appendStringInfoString(&out, CDC_WIRE_F_SNAPSHOT "}");
	MemoryContextDelete(cxt);
	PG_RETURN_TEXT_P(cstring_to_text_with_len(out.data, out.len));
}

/* ---------------------------------------------------------------------
 * DDL capture: the event trigger cdc_relay_ddl (ddl_command_end)
 * --------------------------------------------------------------------- */

/*
 * cdc_relay.capture_ddl, read by the trigger function:
 *	 on      capture; if capturing fails, a WARNING says the DDL was not
 *			 captured and the DDL goes on (the default: an outage of every
 *			 schema change is worse than a missing DDL message, and the
 *			 schema events, which the plugin derives from the catalog, do
 *			 not depend on it)
 *	 strict  capture; if capturing fails, the DDL fails with it (no DDL
 *			 without its message)
 *	 off     capture nothing
 * Superuser-settable (PGC_SUSET): a session may not opt out of capture on
 * its own.
 */
typedef enum CdcCaptureDdl
{
	CDC_CAPTURE_OFF,
	CDC_CAPTURE_ON,
	CDC_CAPTURE_STRICT
} CdcCaptureDdl;

static const struct config_enum_entry capture_ddl_options[] = {
	{"on", CDC_CAPTURE_ON, false},
	{"off", CDC_CAPTURE_OFF, false},
	{"strict", CDC_CAPTURE_STRICT, false},
	{"true", CDC_CAPTURE_ON, true},
	{"false", CDC_CAPTURE_OFF, true},
	{"yes", CDC_CAPTURE_ON, true},
	{"no", CDC_CAPTURE_OFF, true},
	{"1", CDC_CAPTURE_ON, true},
	{"0", CDC_CAPTURE_OFF, true},
	{NULL, 0, false}
};

static int	capture_ddl = CDC_CAPTURE_ON;

/* Define cdc_relay.capture_ddl; called by _PG_init (health.c). */
void
cdc_schema_define_gucs(void)
{
	DefineCustomEnumVariable("cdc_relay.capture_ddl",
							 "Whether the cdc_relay event trigger writes each DDL command as a "
							 "cdc_relay.ddl logical message: on, strict (a DDL whose capture fails "
							 "fails too) or off.",
							 NULL,
							 &capture_ddl,
							 CDC_CAPTURE_ON,
							 capture_ddl_options,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);
}

/* ,"name":"value" or ,"name":null */
static void
append_field(StringInfo out, const char *name, const char *value, bool first)
{
	if (!first)
		appendStringInfoCharMacro(out, ',');
	cdc_append_json_string(out, name, strlen(name));
	appendStringInfoCharMacro(out, ':');
	if (value == NULL)
		appendStringInfoString(out, "null");
	else
		cdc_append_json_string(out, value, strlen(value));
}

/*
 * The DDL message of the command that ends now, as JSON:
 *
 *	 {"tag":"ALTER TABLE","statement":"<current query>","role":"..",
 *	  "search_path":"..","commands":[{"command_tag":..,"object_type":..,
 *	  "schema":..|null,"identity":..},..]}
 *
 * statement is the client's query string, which may hold several
 * statements; commands lists what pg_event_trigger_ddl_commands() reports
 * (nothing for DROP: PostgreSQL gives dropped objects to sql_drop only).
 */
static char *
ddl_message(EventTriggerData *trig)
{
	StringInfoData out;
	const char *query = debug_query_string;
	const char *search_path = GetConfigOption("search_path", false, false);
	int			ret;

	initStringInfo(&out);
	appendStringInfoCharMacro(&out, '{');
	append_field(&out, "tag", GetCommandTagName(trig->tag), true);
	append_field(&out, "statement", query, false);
	append_field(&out, "role", GetUserNameFromId(GetUserId(), false), false);
	append_field(&out, "session_role",
				 GetUserNameFromId(GetSessionUserId(), false), false);
	append_field(&out, "search_path", search_path, false);
	appendStringInfoString(&out, ",\"commands\":[");

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	ret = SPI_execute("SELECT command_tag, object_type, schema_name, object_identity"
					  "  FROM pg_catalog.pg_event_trigger_ddl_commands()"
					  " WHERE NOT in_extension",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read pg_event_trigger_ddl_commands(): %s",
			 SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		if (i > 0)
			appendStringInfoCharMacro(&out, ',');
		appendStringInfoCharMacro(&out, '{');
		append_field(&out, "command_tag", SPI_getvalue(tup, desc, 1), true);
		append_field(&out, "object_type", SPI_getvalue(tup, desc, 2), false);
		append_field(&out, "schema", SPI_getvalue(tup, desc, 3), false);
		append_field(&out, "identity", SPI_getvalue(tup, desc, 4), false);
		appendStringInfoCharMacro(&out, '}');
	}
	SPI_finish();
	appendStringInfoString(&out, "]}");
	return out.data;
}

/*
 * The event trigger's function (ddl_command_end): write the command as a
 * transactional logical message CDC_PREFIX_DDL, so that it is decoded at
 * its place in the transaction, and only if the transaction commits.
 * Nothing when the server does not write logical WAL (wal_level below
 * logical), when cdc_relay.capture_ddl is off, and for the commands an
 * extension's script runs (the CREATE/ALTER EXTENSION itself is captured).
 * With capture_ddl on, a failure is a WARNING and the DDL goes on (see
 * CdcCaptureDdl); with strict, the DDL fails.
 */
Datum
cdc_relay_capture_ddl(PG_FUNCTION_ARGS)
{
	EventTriggerData *trig;
	CdcCaptureDdl mode;
	char	   *volatile msg = NULL;
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	if (!CALLED_AS_EVENT_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("cdc_relay_capture_ddl() must be called as an event trigger")));
	trig = (EventTriggerData *) fcinfo->context;
	mode = (CdcCaptureDdl) capture_ddl;
	if (mode == CDC_CAPTURE_OFF || !XLogLogicalInfoActive() || creating_extension)
		PG_RETURN_NULL();

	if (mode == CDC_CAPTURE_STRICT)
	{
		msg = ddl_message(trig);
		LogLogicalMessage(CDC_PREFIX_DDL, msg, strlen(msg), true);
		PG_RETURN_NULL();
	}

	/*
	 * on: the message is built in a subtransaction, so that a failure can be
	 * turned into a warning, and written after it, in the command's own
	 * (sub)transaction.  Not written inside the subtransaction: decoding
	 * gives a subtransaction's message the LSN where its record ends, which
	 * is where the parent's next change starts, and the two may then come
	 * out in either order.
	 */
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		msg = ddl_message(trig);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		msg = NULL;
		ereport(WARNING,
				(errcode(edata->sqlerrcode),
				 errmsg("DDL not captured by cdc_relay: %s", edata->message),
				 errdetail("The command succeeded, but no %s message was written for it: consumers of the DDL topic will not see it.",
						   CDC_PREFIX_DDL),
				 errhint("Set cdc_relay.capture_ddl to \"strict\" to make such a command fail instead.")));
	}
	PG_END_TRY();
	if (msg != NULL)
		LogLogicalMessage(CDC_PREFIX_DDL, msg, strlen(msg), true);
	PG_RETURN_NULL();
}
