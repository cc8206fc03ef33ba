/*
 * online.c
 *		cdc_relay.request_snapshot(rel regclass, "where" text): ask a running
 *		cdc-relay for an online snapshot of one table (README "Online
 *		snapshots"; the relay side is relay/online.c).
 *
 * The request is a row in cdc_relay.snapshot_jobs and a transactional
 * logical message (prefix CDC_PREFIX_SNAPSHOT_REQUEST) written in the caller's
 * transaction: it takes effect at its commit's place in the WAL, or never if
 * the transaction rolls back.  Before anything is written the function
 * checks what the relay cannot check later: the caller may read the table,
 * the table has a key (the relay reads it in key order and matches chunk
 * rows with the stream's changes by key), and the "where" text is exactly
 * one boolean expression on the table's columns that the caller may
 * evaluate (no second statement, no closing parenthesis that escapes the
 * relay's WHERE (...), nothing volatile).
 *
 * The relay evaluates the expression with its own role.  So that no role's
 * code runs with the relay's privileges, every function it calls (operators,
 * casts and type input/output included) must belong to a superuser, and it
 * holds no subquery (which could read through a view or function of
 * someone else).  What the relay runs is the expression as analyzed here,
 * deparsed with an empty search_path (every name schema-qualified where it
 * needs to be, constants in ISO form), not the caller's text: the relay's
 * empty search_path cannot resolve it to other objects than the ones checked,
 * nor its DateStyle read a date differently.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "optimizer/optimizer.h"
#include "parser/parser.h"
#include "replication/message.h"
#include "catalog/pg_proc.h"
#include "nodes/nodeFuncs.h"
#include "rewrite/rewriteManip.h"
#include "utils/acl.h"
#include "utils/guc.h"
#include "utils/ruleutils.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/plancache.h"
#include "utils/regproc.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "cdc_relay.h"
#include "cdc_wire.h"

PG_FUNCTION_INFO_V1(cdc_relay_request_snapshot);

/*
 * The table's key index (as the plugin's relcache chooses it: the replica
 * identity index, else the primary key); ERRORs when there is none, or when
 * deletes would carry no key (REPLICA IDENTITY NOTHING).
 */
static Oid
online_key_index(Relation rel)
{
	char		ident = rel->rd_rel->relreplident;
	Oid			idx = InvalidOid;

	if (ident == REPLICA_IDENTITY_NOTHING)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot take an online snapshot of table \"%s\"",
						RelationGetRelationName(rel)),
				 errdetail("The table has REPLICA IDENTITY NOTHING: its deletes carry no key, so the relay cannot tell which snapshot rows they override."),
				 errhint("ALTER TABLE ... REPLICA IDENTITY DEFAULT (with a primary key), or REPLICA IDENTITY USING INDEX.")));
	if (ident == REPLICA_IDENTITY_DEFAULT || ident == REPLICA_IDENTITY_INDEX)
		idx = RelationGetReplicaIndex(rel);
	if (!OidIsValid(idx))
	{
		list_free(RelationGetIndexList(rel));
		idx = rel->rd_pkindex;
	}
	if (!OidIsValid(idx))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cannot take an online snapshot of table \"%s\": it has no key",
						RelationGetRelationName(rel)),
				 errdetail("An online snapshot reads the table in key order and matches its rows with the stream's changes by key; the table has neither a primary key nor a replica identity index."),
				 errhint("Add a primary key, or ALTER TABLE ... REPLICA IDENTITY USING INDEX with a unique index on NOT NULL columns.")));
	return idx;
}

static void
where_error(const char *where, const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("invalid \"where\" for an online snapshot: %s", why),
			 errdetail("The value was: %s", where),
			 errhint("Give one boolean expression on the table's columns, as it would follow WHERE, e.g. 'created > now() - interval ''7 days'''.")));
}

static void
where_context(void *arg)
{
	errcontext("checking the \"where\" of an online snapshot");
}

/* check_functions_in_node callback: true (stop) for a function not owned by a superuser */
static bool
function_not_trusted(Oid funcid, void *context)
{
	HeapTuple	tup = SearchSysCache1(PROCOID, ObjectIdGetDatum(funcid));
	bool		bad;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for function %u", funcid);
	bad = !superuser_arg(((Form_pg_proc) GETSTRUCT(tup))->proowner);
	ReleaseSysCache(tup);
	if (bad)
		*(Oid *) context = funcid;
	return bad;
}

/* true (stop) at the first function in the expression not owned by a superuser */
static bool
untrusted_function_walker(Node *node, void *context)
{
	if (node == NULL)
		return false;
	if (check_functions_in_node(node, function_not_trusted, context))
		return true;
	return expression_tree_walker(node, untrusted_function_walker, context);
}

/*
 * Check that where is one boolean expression on the table (FROM ONLY
 * regclass t, as the relay reads it) that the current user may evaluate:
 * parsed alone as a PL/pgSQL expression (one target, nothing else), then
 * planned and run with LIMIT 0 as the caller, which checks the types and
 * the privileges on everything it uses; no subquery, every function it
 * calls owned by a superuser (see the header).  Returns the expression as
 * the relay must run it: deparsed with an empty search_path.  ERRORs
 * otherwise.
 */
static char *
check_where(const char *where, const char *regclass, Oid relid)
{
	char	   *deparsed;
	List	   *raw;
	RawStmt    *rs;
	SelectStmt *sel;
	ResTarget  *rt;
	StringInfoData sql;
	SPIPlanPtr	plan;
	List	   *sources;
	ErrorContextCallback cb = {.callback = where_context, .previous = error_context_stack};

	if (where[strspn(where, " \t\r\n\f\v")] == '\0')
		where_error(where, "it is empty");
	error_context_stack = &cb;
	raw = raw_parser(where, RAW_PARSE_PLPGSQL_EXPR);
	error_context_stack = cb.previous;
	rs = list_length(raw) == 1 ? linitial_node(RawStmt, raw) : NULL;
	sel = rs && IsA(rs->stmt, SelectStmt) ? (SelectStmt *) rs->stmt : NULL;
	if (sel == NULL || sel->op != SETOP_NONE || list_length(sel->targetList) != 1 ||
		sel->fromClause || sel->whereClause || sel->groupClause || sel->havingClause ||
		sel->windowClause || sel->sortClause || sel->limitCount || sel->limitOffset ||
		sel->lockingClause || sel->withClause || sel->distinctClause || sel->intoClause ||
		sel->valuesLists)
		where_error(where, "it is not a single expression");
	rt = linitial_node(ResTarget, sel->targetList);
	if (rt->name != NULL || rt->indirection != NIL)
		where_error(where, "it is not a single expression");

	initStringInfo(&sql);
	appendStringInfo(&sql, "SELECT 1 FROM ONLY %s t WHERE (%s) LIMIT 0", regclass, where);
	error_context_stack = &cb;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	plan = SPI_prepare(sql.data, 0, NULL);
	if (plan == NULL)
		elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
	sources = SPI_plan_get_plan_sources(plan);
	if (list_length(sources) != 1)
		where_error(where, "it is not a single expression");
	{
		CachedPlanSource *ps = linitial(sources);
		Query	   *q = list_length(ps->query_list) == 1 ? linitial_node(Query, ps->query_list) : NULL;

		Oid			untrusted = InvalidOid;
		List	   *dpctx;
		int			nest;

		if (q == NULL || q->jointree == NULL || list_length(q->rtable) != 1)
			where_error(where, "it is not a single expression");
		if (q->hasSubLinks || checkExprHasSubLink(q->jointree->quals))
			where_error(where, "it holds a subquery (the relay would run it with its own privileges)");
		if (contain_volatile_functions(q->jointree->quals))
			where_error(where, "it calls a volatile function (each chunk would see other rows)");
		if (untrusted_function_walker(q->jointree->quals, &untrusted))
			ereport(ERROR,
					(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
					 errmsg("invalid \"where\" for an online snapshot: it calls %s, which does not belong to a superuser",
							format_procedure_qualified(untrusted)),
					 errdetail("The relay evaluates the expression with its own role: it runs only functions and operators that a superuser owns."),
					 errhint("Use built-in functions and operators, or have a superuser own the function.")));

		/* what the relay runs: the names as resolved here, qualified */
		nest = NewGUCNestLevel();
		(void) set_config_option("search_path", "", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		/* constants in a form any session reads back the same */
		(void) set_config_option("DateStyle", "ISO, YMD", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		(void) set_config_option("IntervalStyle", "postgres", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		(void) set_config_option("extra_float_digits", "3", PGC_USERSET, PGC_S_SESSION,
								 GUC_ACTION_SAVE, true, 0, false);
		dpctx = deparse_context_for("t", relid);
		deparsed = deparse_expression(q->jointree->quals, dpctx, false, false);
		AtEOXact_GUC(true, nest);
	}
	/* as the caller: the privileges on the table and on whatever the expression uses */
	if (SPI_execute_plan(plan, NULL, NULL, true, 0) != SPI_OK_SELECT)
		elog(ERROR, "could not check the \"where\"");
	deparsed = pstrdup(deparsed);	/* out of SPI's memory */
	SPI_finish();
	error_context_stack = cb.previous;
	pfree(sql.data);
	return deparsed;
}

/* The id of the new job row, inserted as the table's owner (the caller needs no privilege on it). */
static int64
insert_job(Oid relid, const char *table_name, const char *where)
{
	Oid			nsp = get_namespace_oid("cdc_relay", false);
	Oid			jobs = get_relname_relid("snapshot_jobs", nsp);
	HeapTuple	tup;
	Oid			owner;
	Oid			save_user;
	int			save_sec;
	Oid			types[4] = {OIDOID, TEXTOID, TEXTOID, NAMEOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', where ? ' ' : 'n', ' '};
	NameData	by;
	bool		isnull;
	int64		id;

	if (!OidIsValid(jobs))
		elog(ERROR, "table cdc_relay.snapshot_jobs does not exist");
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(jobs));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", jobs);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);

	namestrcpy(&by, GetUserNameFromId(GetUserId(), false));
	values[0] = ObjectIdGetDatum(relid);
	values[1] = CStringGetTextDatum(table_name);
	values[2] = where ? CStringGetTextDatum(where) : (Datum) 0;
	values[3] = NameGetDatum(&by);

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(owner, save_sec | SECURITY_LOCAL_USERID_CHANGE |
						   SECURITY_RESTRICTED_OPERATION);
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "SPI_connect failed");
	if (SPI_execute_with_args("INSERT INTO cdc_relay.snapshot_jobs (relid, table_name, \"where\", requested_by)"
							  " VALUES ($1, $2, $3, $4) RETURNING id",
							  4, types, values, nulls, false, 1) != SPI_OK_INSERT_RETURNING ||
		SPI_processed != 1)
		elog(ERROR, "could not insert into cdc_relay.snapshot_jobs");
	id = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_finish();
	SetUserIdAndSecContext(save_user, save_sec);
	return id;
}

/*
 * cdc_relay.request_snapshot(rel regclass, "where" text DEFAULT NULL) RETURNS bigint
 *
 * The message's content, for the relay: {"job":id,"relid":oid,
 * "table":<qualified, quoted name for SQL>,"ident":<the "schema":S,"table":T
 * bytes the plugin's events carry>,"key":[<key column names>],"partition":bool,
 * "where":text|null}.
 */
Datum
cdc_relay_request_snapshot(PG_FUNCTION_ARGS)
{
	Oid			relid;
	char	   *where = NULL;
	Relation	rel;
	Relation	idxrel;
	Oid			idx;
	char	   *schema;
	char	   *qualified;
	StringInfoData ident;
	StringInfoData msg;
	int64		id;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("argument \"rel\" must not be null")));
	relid = PG_GETARG_OID(0);
	if (!PG_ARGISNULL(1))
		where = text_to_cstring(PG_GETARG_TEXT_PP(1));

	rel = relation_open(relid, AccessShareLock);
	if (rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("cannot take an online snapshot of \"%s\": it is not an ordinary table",
						RelationGetRelationName(rel)),
				 errhint("For a partitioned table, request a snapshot of each partition.")));
	if (pg_class_aclcheck(relid, GetUserId(), ACL_SELECT) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("permission denied for table %s", RelationGetRelationName(rel)),
				 errdetail("Requesting an online snapshot needs SELECT on the table.")));
	idx = online_key_index(rel);
	schema = get_namespace_name(RelationGetNamespace(rel));
	qualified = quote_qualified_identifier(schema, RelationGetRelationName(rel));

	if (where != NULL)
		where = check_where(where, qualified, relid);

	id = insert_job(relid, qualified, where);

	initStringInfo(&ident);
	appendStringInfoString(&ident, "\"schema\":");
	cdc_append_json_string(&ident, schema, strlen(schema));
	appendStringInfoString(&ident, ",\"table\":");
	cdc_append_json_string(&ident, RelationGetRelationName(rel),
						   strlen(RelationGetRelationName(rel)));

	initStringInfo(&msg);
	appendStringInfo(&msg, "{\"job\":" INT64_FORMAT ",\"relid\":%u,\"table\":", id, relid);
	escape_json(&msg, qualified);
	appendStringInfoString(&msg, ",\"ident\":");
	escape_json(&msg, ident.data);
	appendStringInfoString(&msg, ",\"key\":[");
	idxrel = index_open(idx, AccessShareLock);
	for (int i = 0; i < idxrel->rd_index->indnkeyatts; i++)
	{
		AttrNumber	att = idxrel->rd_index->indkey.values[i];

		if (att <= 0)
			elog(ERROR, "key index of \"%s\" has an expression column", RelationGetRelationName(rel));
		if (i > 0)
			appendStringInfoChar(&msg, ',');
		escape_json(&msg, get_attname(relid, att, false));
	}
	index_close(idxrel, AccessShareLock);
	appendStringInfo(&msg, "],\"partition\":%s,\"where\":", rel->rd_rel->relispartition ? "true" : "false");
	if (where)
		escape_json(&msg, where);
	else
		appendStringInfoString(&msg, "null");
	appendStringInfoChar(&msg, '}');

	LogLogicalMessage(CDC_PREFIX_SNAPSHOT_REQUEST, msg.data, msg.len, true);
	relation_close(rel, AccessShareLock);
	PG_RETURN_INT64(id);
}
