/*
 * functions.c
 *		SQL-callable functions of the cdc_relay extension:
 *		cdc_relay.version(), and the two functions behind an initial
 *		snapshot, cdc_relay.snapshot_tables() (which tables to read) and
 *		cdc_relay.snapshot_row() (one table row as a snapshot read event,
 *		encoded exactly as the output plugin encodes an insert), and
 *		the check every install script runs before it creates anything
 *		(cdc_relay_check_install_schema).
 *		(cdc_relay.check_setup() is plain SQL in the install script.)
 *
 * Both snapshot functions take the plugin's options as a text[] of
 * name/value pairs and reuse the plugin's option parser, filters, relation
 * entries and encoder, so a snapshot and the stream that follows it agree
 * byte for byte on names, keys and values.
 */
#include "postgres.h"

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/catalog.h"
#include "catalog/dependency.h"
#include "catalog/indexing.h"
#include "catalog/namespace.h"
#include "catalog/objectaddress.h"
#include "catalog/pg_class.h"
#include "catalog/pg_depend.h"
#include "catalog/pg_extension.h"
#include "catalog/pg_namespace.h"
#include "commands/extension.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/pg_lsn.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "cdc_relay.h"
#include "compat.h"

PG_FUNCTION_INFO_V1(cdc_relay_version);
PG_FUNCTION_INFO_V1(cdc_relay_snapshot_tables);
PG_FUNCTION_INFO_V1(cdc_relay_snapshot_row);
PG_FUNCTION_INFO_V1(cdc_relay_check_install_schema);

/* cdc_relay.version(): the version of the loaded library. */
Datum
cdc_relay_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(CDC_RELAY_VERSION));
}

/* Parse the options argument of a snapshot function. */
static void
parse_option_array(ArrayType *arr, CdcOptions *opts)
{
	cdc_parse_options(cdc_options_from_array(arr), opts);
}

/* ---------------------------------------------------------------------
 * cdc_relay.snapshot_tables(options text[])
 * --------------------------------------------------------------------- */

typedef struct SnapshotTable
{
	Oid			relid;
	char	   *schema;			/* names the events carry */
	char	   *table;
	float8		reltuples;
	int64		relpages;
} SnapshotTable;

static int
snapshot_table_cmp(const void *a, const void *b)
{
	const SnapshotTable *x = a;
	const SnapshotTable *y = b;
	int			c;

	if ((c = strcmp(x->schema, y->schema)) != 0)
		return c;
	if ((c = strcmp(x->table, y->table)) != 0)
		return c;
	if (x->relid != y->relid)
		return x->relid < y->relid ? -1 : 1;
	return 0;
}

/*
 * Whether the plugin, run with opts, emits inserts on the ordinary table
 * relid (pg_class row c), and under which names: the candidates are the
 * permanent ordinary tables, leaf partitions included, outside pg_catalog,
 * information_schema and pg_toast.  pubs are the loaded publications.
 */
static bool
snapshot_table_wanted(Form_pg_class c, Oid info_schema, const CdcOptions *opts,
					  List *pubs, char **schema, char **table)
{
	Oid			relid = c->oid;
	Oid			target;
	Oid			target_nsp;
	Relation	rel;
	int			actions;

	if (c->relkind != RELKIND_RELATION ||
		c->relpersistence != RELPERSISTENCE_PERMANENT ||
		c->relnamespace == PG_CATALOG_NAMESPACE ||
		c->relnamespace == info_schema ||
		IsToastNamespace(c->relnamespace))
		return false;

	/* Names as the relation cache has them now, as snapshot_row uses them. */
	target = cdc_event_relid(relid, c->relispartition, opts);
	target_nsp = get_rel_namespace(target);
	*schema = OidIsValid(target_nsp) ? get_namespace_name(target_nsp) : NULL;
	*table = get_rel_name(target);
	if (*schema == NULL || *table == NULL)
		return false;			/* dropped meanwhile */

	/* Without publications, the names decide: no need to open anything. */
	if (opts->publications == NIL)
		return (cdc_relation_actions(opts, NIL, NULL, *schema, *table) &
				CDC_ACTION_INSERT) != 0;

	rel = RelationIdGetRelation(relid);
	if (!RelationIsValid(rel))
		return false;			/* dropped meanwhile */
	actions = cdc_relation_actions(opts, pubs, rel, *schema, *table);
	RelationClose(rel);
	return (actions & CDC_ACTION_INSERT) != 0;
}

/*
 * The tables an initial snapshot must read for a plugin run with the given
 * options: every permanent ordinary table (leaf partitions included) on
 * which the plugin would emit inserts, with the names its events carry and
 * the planner's size estimates, ordered by schema, table (byte order) and
 * relid.  The set is that of the transaction's snapshot, so a relay that
 * imported the slot's snapshot gets the tables that existed at the slot's
 * consistent point.  No privilege is checked and no lock is taken: the
 * reads that follow do both.
 */
Datum
cdc_relay_snapshot_tables(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	CdcOptions	opts;
	List	   *pubs = NIL;
	Oid			info_schema = get_namespace_oid("information_schema", true);
	Relation	classrel;
	TableScanDesc scan;
	HeapTuple	tup;
	SnapshotTable *tables;
	int			ntables = 0;
	int			maxtables = 64;

	parse_option_array(PG_GETARG_ARRAYTYPE_P(0), &opts);
	cdc_init_materialized_srf(fcinfo);
	if (opts.publications != NIL)
		pubs = cdc_load_publications(&opts);

	tables = palloc(sizeof(SnapshotTable) * maxtables);
	classrel = table_open(RelationRelationId, AccessShareLock);
	scan = table_beginscan(classrel, GetActiveSnapshot(), 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_class c = (Form_pg_class) GETSTRUCT(tup);
		SnapshotTable *t;
		char	   *schema;
		char	   *table;

		CHECK_FOR_INTERRUPTS();
		if (!snapshot_table_wanted(c, info_schema, &opts, pubs, &schema, &table))
			continue;
		if (ntables == maxtables)
		{
			maxtables *= 2;
			tables = repalloc(tables, sizeof(SnapshotTable) * maxtables);
		}
		t = &tables[ntables++];
		t->relid = c->oid;
		t->schema = schema;
		t->table = table;
		t->reltuples = c->reltuples;
		t->relpages = c->relpages;
	}
	table_endscan(scan);
	table_close(classrel, AccessShareLock);

	if (ntables > 1)
		qsort(tables, ntables, sizeof(SnapshotTable), snapshot_table_cmp);
	for (int i = 0; i < ntables; i++)
	{
		Datum		values[5];
		bool		nulls[5] = {false, false, false, false, false};

		values[0] = ObjectIdGetDatum(tables[i].relid);
		values[1] = CStringGetTextDatum(tables[i].schema);
		values[2] = CStringGetTextDatum(tables[i].table);
		values[3] = Float8GetDatum(tables[i].reltuples);
		values[4] = Int64GetDatum(tables[i].relpages);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}

/* ---------------------------------------------------------------------
 * cdc_relay.snapshot_row(rel regclass, r record, lsn pg_lsn, options text[])
 * --------------------------------------------------------------------- */

/*
 * Everything snapshot_row needs per call site (fn_extra), built on the
 * first call and rebuilt when rel or the options change, or after an
 * invalidation (cdc_inval_count moved): parsed options, the relation entry
 * the plugin would use, buffers for the deformed row and the output.
 */
typedef struct SnapshotRowCache
{
	Oid			relid;			/* InvalidOid: not built */
	uint64		inval_count;	/* cdc_inval_count when built */
	char	   *optbytes;		/* the options argument it was built for */
	int			optlen;
	MemoryContext cxt;			/* owns everything below; reset to rebuild */
	MemoryContext row_cxt;		/* the calls' temporary allocations */
	CdcOptions	opts;
	CdcRelEntry entry;			/* entry.cxt is a child of cxt */
	Oid			rowtype;		/* the table's row type */
	TupleDesc	desc;			/* the table's row descriptor */
	Datum	   *values;			/* the row deformed, table order */
	bool	   *nulls;
	AttrNumber *rootmap;		/* root attribute -> table attnum (0: none),
								 * NULL when entry.map is */
	int			rootnatts;
	Datum	   *rvalues;		/* the row in the root's order */
	bool	   *rnulls;
	int			outsize;		/* output buffer to start with: the last
								 * row's size and some, at most 8 kB */
} SnapshotRowCache;

/* Reset the temporaries' context once it holds more than this. */
#define SNAPSHOT_ROW_CXT_MAX (256 * 1024)

static void
build_snapshot_row_cache(SnapshotRowCache *cache, Oid relid, ArrayType *optarr,
						 const char *optbytes, int optlen)
{
	MemoryContext old;
	Relation	rel;
	int			natts;

	cache->relid = InvalidOid;
	MemoryContextReset(cache->cxt);
	cache->entry.cxt = NULL;	/* deleted with cxt's children */
	old = MemoryContextSwitchTo(cache->cxt);

	cdc_inval_callbacks_register();
	parse_option_array(optarr, &cache->opts);
	cache->optbytes = palloc(optlen);
	memcpy(cache->optbytes, optbytes, optlen);
	cache->optlen = optlen;

	rel = try_relation_open(relid, AccessShareLock);
	if (rel == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("relation with OID %u does not exist", relid)));
	if (rel->rd_rel->relkind != RELKIND_RELATION)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("\"%s\" is not a table", RelationGetRelationName(rel)),
				 errdetail("Snapshot rows are read from ordinary tables and from partitions, not from partitioned tables, views or other relations.")));

	memset(&cache->entry, 0, sizeof(cache->entry));
	cache->entry.relid = relid;
	cdc_relentry_build(&cache->entry, rel, &cache->opts, cache->cxt);

	cache->rowtype = rel->rd_rel->reltype;
	cache->desc = CreateTupleDescCopy(RelationGetDescr(rel));
	natts = cache->desc->natts;
	cache->values = palloc(sizeof(Datum) * natts);
	cache->nulls = palloc(sizeof(bool) * natts);
	cache->rootmap = NULL;
	cache->rootnatts = 0;
	if (cache->entry.map != NULL)
	{
		cache->rootnatts = cache->entry.map->outdesc->natts;
		cache->rootmap = cache->entry.map->attrMap->attnums;
		cache->rvalues = palloc(sizeof(Datum) * cache->rootnatts);
		cache->rnulls = palloc(sizeof(bool) * cache->rootnatts);
	}
	cache->outsize = 1024;
	relation_close(rel, NoLock);

	MemoryContextSwitchTo(old);
	cache->inval_count = cdc_inval_count;
	cache->relid = relid;
}

/*
 * One row of a table as a snapshot read event, preceded by its key and a
 * tab:
 *
 *	<key>\t{"op":"r","schema":..,"table":..,"key":<key>,"before":null,
 *		   "after":{..}[,"json_null":{..}],"lsn":"<lsn>","snapshot":true}
 *
 * encoded exactly as the output plugin, run with the same options, encodes
 * an insert of that row (names, key, column order and values; with
 * partition-root the root's).  r must be a row of rel's own row type, as
 * the whole-row reference t.* in ... FROM ONLY s.t t gives it.  Options
 * are parsed and rel is looked up once per call site; a call does no
 * catalog access, and its temporaries are freed in bulk (see below).
 */
Datum
cdc_relay_snapshot_row(PG_FUNCTION_ARGS)
{
	Oid			relid = PG_GETARG_OID(0);
	HeapTupleHeader rec = PG_GETARG_HEAPTUPLEHEADER(1);
	XLogRecPtr	lsn = PG_GETARG_LSN(2);
	struct varlena *optarg = PG_GETARG_VARLENA_PP(3);
	SnapshotRowCache *cache = fcinfo->flinfo->fn_extra;
	const CdcRelEntry *entry;
	HeapTupleData tuple;
	const Datum *values;
	const bool *nulls;
	int			gucnest = 0;
	StringInfoData out;
	MemoryContext callcxt = CurrentMemoryContext;
	MemoryContext old;

	if (cache == NULL)
	{
		cache = MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt,
									   sizeof(SnapshotRowCache));
		cache->cxt = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt,
										   "cdc_relay snapshot_row",
										   ALLOCSET_SMALL_SIZES);
		cache->row_cxt = AllocSetContextCreate(fcinfo->flinfo->fn_mcxt,
											   "cdc_relay snapshot_row call",
											   ALLOCSET_DEFAULT_SIZES);
		fcinfo->flinfo->fn_extra = cache;
	}

	/*
	 * Temporaries of earlier calls are dead.  Resetting their context at
	 * every call would cost more than most rows' encoding allocates (a
	 * numeric's digits), so it is reset once it holds more than
	 * SNAPSHOT_ROW_CXT_MAX: memory stays bounded, the reset is amortized.
	 */
	if (MemoryContextMemAllocated(cache->row_cxt, false) > SNAPSHOT_ROW_CXT_MAX)
		MemoryContextReset(cache->row_cxt);

	if (cache->relid != relid || cache->inval_count != cdc_inval_count ||
		cache->optlen != VARSIZE_ANY_EXHDR(optarg) ||
		memcmp(cache->optbytes, VARDATA_ANY(optarg), cache->optlen) != 0)
		build_snapshot_row_cache(cache, relid, PG_GETARG_ARRAYTYPE_P(3),
								 VARDATA_ANY(optarg), VARSIZE_ANY_EXHDR(optarg));
	entry = &cache->entry;

	if (HeapTupleHeaderGetTypeId(rec) != cache->rowtype)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("argument \"r\" is not a row of table \"%s\"",
						get_rel_name(relid)),
				 errdetail("Its type is %s, not %s.",
						   format_type_be(HeapTupleHeaderGetTypeId(rec)),
						   format_type_be(cache->rowtype)),
				 errhint("Pass the whole row of the table itself, as in SELECT cdc_relay.snapshot_row('s.t'::regclass, t.*, ...) FROM ONLY s.t t.")));

	old = MemoryContextSwitchTo(cache->row_cxt);

	tuple.t_len = HeapTupleHeaderGetDatumLength(rec);
	ItemPointerSetInvalid(&tuple.t_self);
	tuple.t_tableOid = InvalidOid;
	tuple.t_data = rec;
	heap_deform_tuple(&tuple, cache->desc, cache->values, cache->nulls);
	values = cache->values;
	nulls = cache->nulls;
	if (cache->rootmap != NULL)
	{
		/* the row in the root's column order, without forming a tuple */
		for (int i = 0; i < cache->rootnatts; i++)
		{
			AttrNumber	a = cache->rootmap[i];

			cache->rvalues[i] = a > 0 ? cache->values[a - 1] : (Datum) 0;
			cache->rnulls[i] = a > 0 ? cache->nulls[a - 1] : true;
		}
		values = cache->rvalues;
		nulls = cache->rnulls;
	}

	/* Output functions that read settings must see the plugin's. */
	if (entry->needs_output_settings && !cdc_output_settings_in_effect())
	{
		gucnest = NewGUCNestLevel();
		cdc_output_settings_set(GUC_ACTION_SAVE, true);
	}

	/*
	 * The output is written straight into the result, a text allocated in
	 * the caller's context: the buffer starts with room for the varlena
	 * header, and as large as the last row needed (it grows as needed).
	 */
	out.data = MemoryContextAlloc(callcxt, cache->outsize);
	out.maxlen = cache->outsize;
	out.len = VARHDRSZ;
	out.cursor = 0;
	cdc_proto_snapshot_row(&out, &cache->opts, entry, values, nulls, lsn);

	if (gucnest > 0)
		AtEOXact_GUC(true, gucnest);
	MemoryContextSwitchTo(old);

	cache->outsize = Min(out.len + out.len / 4 + 64, 8192);
	SET_VARSIZE(out.data, out.len);
	PG_RETURN_TEXT_P((text *) out.data);
}

/* ---------------------------------------------------------------------
 * The install scripts' check of the extension's schema
 * --------------------------------------------------------------------- */

/* The schema of the extension being created, from its pg_extension row. */
static Oid
creating_extension_schema(void)
{
	Relation	rel;
	ScanKeyData key;
	SysScanDesc scan;
	HeapTuple	tup;
	Oid			nspoid = InvalidOid;

	rel = table_open(ExtensionRelationId, AccessShareLock);
	ScanKeyInit(&key, Anum_pg_extension_oid, BTEqualStrategyNumber, F_OIDEQ,
				ObjectIdGetDatum(CurrentExtensionObject));
	scan = systable_beginscan(rel, ExtensionOidIndexId, true, NULL, 1, &key);
	tup = systable_getnext(scan);
	if (HeapTupleIsValid(tup))
		nspoid = ((Form_pg_extension) GETSTRUCT(tup))->extnamespace;
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	if (!OidIsValid(nspoid))
		elog(ERROR, "could not find extension %u", CurrentExtensionObject);
	return nspoid;
}

/* At most this many of the objects found in the schema are named. */
#define SCHEMA_CHECK_NAMED 5

/*
 * The objects in schema nspoid (every object in a schema depends on it),
 * the extension being created aside: how many, with the descriptions of
 * the first SCHEMA_CHECK_NAMED appended to names, comma-separated.
 */
static int
schema_objects(Oid nspoid, StringInfo names)
{
	Relation	rel;
	ScanKeyData key[2];
	SysScanDesc scan;
	HeapTuple	tup;
	int			n = 0;

	rel = table_open(DependRelationId, AccessShareLock);
	ScanKeyInit(&key[0], Anum_pg_depend_refclassid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(NamespaceRelationId));
	ScanKeyInit(&key[1], Anum_pg_depend_refobjid, BTEqualStrategyNumber,
				F_OIDEQ, ObjectIdGetDatum(nspoid));
	scan = systable_beginscan(rel, DependReferenceIndexId, true, NULL, 2, key);
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		Form_pg_depend dep = (Form_pg_depend) GETSTRUCT(tup);
		ObjectAddress obj;
		char	   *desc;

		if (dep->classid == ExtensionRelationId &&
			dep->objid == CurrentExtensionObject)
			continue;
		if (n < SCHEMA_CHECK_NAMED)
		{
			ObjectAddressSubSet(obj, dep->classid, dep->objid, dep->objsubid);
			/* qualified, although the script's search_path has the schema */
			desc = getObjectIdentity(&obj, true);
			if (n > 0)
				appendStringInfoString(names, ", ");
			if (desc != NULL)
				appendStringInfo(names, "%s %s", getObjectTypeDescription(&obj, true),
								 desc);
			else
				appendStringInfoString(names, "an object being dropped");
		}
		n++;
	}
	systable_endscan(scan);
	table_close(rel, AccessShareLock);
	return n;
}

/*
 * The roles other than superusers (PUBLIC included) to which the schema's
 * ACL grants CREATE, except skip (its owner when that is reported
 * already; InvalidOid for none, which is not PUBLIC's ACL_ID_PUBLIC here):
 * how many, with their names appended to names.  A schema without an ACL
 * grants CREATE to its owner only.
 */
static int
schema_creators(HeapTuple nsptup, Oid skip, StringInfo names)
{
	bool		isnull;
	Datum		datum;
	Acl		   *acl;
	AclItem    *items;
	int			n = 0;

	datum = SysCacheGetAttr(NAMESPACEOID, nsptup, Anum_pg_namespace_nspacl,
							&isnull);
	if (isnull)
		return 0;
	acl = DatumGetAclP(datum);
	items = ACL_DAT(acl);
	for (int i = 0; i < ACL_NUM(acl); i++)
	{
		Oid			grantee = items[i].ai_grantee;

		if ((ACLITEM_GET_PRIVS(items[i]) & ACL_CREATE) == 0 ||
			(OidIsValid(skip) && grantee == skip))
			continue;
		if (grantee != ACL_ID_PUBLIC && superuser_arg(grantee))
			continue;
		if (n > 0)
			appendStringInfoString(names, ", ");
		if (grantee == ACL_ID_PUBLIC)
			appendStringInfoString(names, "PUBLIC");
		else
			appendStringInfo(names, "role \"%s\"",
							 GetUserNameFromId(grantee, false));
		n++;
	}
	return n;
}

/*
 * Run by every install script of cdc_relay before it creates anything
 * (as a temporary function, so that no function of the schema is called
 * and nothing is left behind).  CREATE EXTENSION creates the schema named
 * in the control file when it is missing, and otherwise installs into the
 * existing one, whose owner could have put functions there that the
 * extension's users (the relay, often a superuser) would call.  This
 * raises an ERROR (duplicate_schema) unless the schema is
 *
 *	- the one this CREATE EXTENSION created: its catalog row was written by
 *	  the current transaction, it is owned by the current (superuser) role
 *	  and holds nothing, or
 *	- one that only superusers can have written to: owned by a superuser,
 *	  holding nothing, and granting CREATE to no other role (as the schema
 *	  that DROP EXTENSION cdc_relay leaves behind, or that pg_dump restores
 *	  before its CREATE EXTENSION).
 *
 * The detail of the error names what was found.
 */
Datum
cdc_relay_check_install_schema(PG_FUNCTION_ARGS)
{
	Oid			nspoid;
	HeapTuple	tup;
	Form_pg_namespace nsp;
	const char *extname;
	bool		written_here;
	bool		owner_super;
	int			nobjects;
	int			ncreators;
	StringInfoData objects;
	StringInfoData creators;
	StringInfoData detail;

	extname = creating_extension ? get_extension_name(CurrentExtensionObject) : NULL;
	if (extname == NULL || strcmp(extname, "cdc_relay") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cdc_relay_check_install_schema() can only be called by CREATE EXTENSION cdc_relay")));

	nspoid = creating_extension_schema();
	tup = SearchSysCache1(NAMESPACEOID, ObjectIdGetDatum(nspoid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for schema %u", nspoid);
	nsp = (Form_pg_namespace) GETSTRUCT(tup);

	written_here = TransactionIdIsCurrentTransactionId(HeapTupleHeaderGetXmin(tup->t_data));
	owner_super = superuser_arg(nsp->nspowner);
	initStringInfo(&objects);
	initStringInfo(&creators);
	nobjects = schema_objects(nspoid, &objects);
	ncreators = schema_creators(tup, owner_super ? InvalidOid : nsp->nspowner,
								&creators);

	if (nobjects == 0 &&
		((written_here && nsp->nspowner == GetUserId()) ||
		 (owner_super && ncreators == 0)))
	{
		ReleaseSysCache(tup);
		PG_RETURN_VOID();
	}

	initStringInfo(&detail);
	appendStringInfo(&detail, "It is owned by role \"%s\"%s",
					 GetUserNameFromId(nsp->nspowner, false),
					 owner_super ? "" : ", which is not a superuser");
	if (nobjects > 0)
		appendStringInfo(&detail, "; it holds %d object%s: %s%s", nobjects,
						 nobjects > 1 ? "s" : "", objects.data,
						 nobjects > SCHEMA_CHECK_NAMED ? ", ..." : "");
	if (ncreators > 0)
		appendStringInfo(&detail, "; %s may create objects in it", creators.data);
	appendStringInfoChar(&detail, '.');
	ereport(ERROR,
			(errcode(ERRCODE_DUPLICATE_SCHEMA),
			 errmsg("schema \"%s\" already exists and was not created by CREATE EXTENSION cdc_relay",
					NameStr(nsp->nspname)),
			 errdetail_internal("%s", detail.data),
			 errhint("Check what the schema holds and who owns it, drop it, and run CREATE EXTENSION cdc_relay again.")));
	PG_RETURN_VOID();			/* not reached */
}
