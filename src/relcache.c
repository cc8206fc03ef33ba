/*
 * relcache.c
 *		Per-relation cache of everything cdc_relay needs to encode a change:
 *		pre-escaped schema, table and column names, each column's JSON kind
 *		and output function, the key columns, the publication/filter verdict
 *		and, with partition-root, the conversion to the root's row shape.
 *
 * Entries are built on first use and marked invalid by relcache and
 * syscache invalidation callbacks (which run during decoding, as the
 * decoded transactions' invalidation messages are replayed), so DDL is
 * followed and no catalog lookup happens per row.  The callbacks can only
 * be registered once per backend and outlive a decoding session, so the
 * cache lives in file-level state that they check (as pgoutput does).
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "cdc_relay.h"
#include "compat.h"

static HTAB *RelCache = NULL;
static HTAB *ShapeCache = NULL;	/* schema-events: last shape written */
static MemoryContext RelCacheCxt = NULL;
static const CdcOptions *RelCacheOpts = NULL;
static bool callbacks_registered = false;

/*
 * The shape (schema event up to its tail) last written for a relation the
 * events name, in this decoding session.  Kept apart from the relation
 * entries, which invalidation rebuilds, in RelCacheCxt (the session's).
 */
typedef struct CdcShapeEntry
{
	Oid			relid;			/* hash key: entry->target_relid */
	char	   *shape;			/* in RelCacheCxt */
} CdcShapeEntry;

/*
 * Bumped by every invalidation callback.  Caches outside a decoding
 * session (snapshot_row's) remember it and rebuild when it moved.
 */
uint64		cdc_inval_count = 0;

static void
invalidate_entries(Oid relid)
{
	HASH_SEQ_STATUS status;
	CdcRelEntry *entry;

	if (RelCache == NULL)
		return;
	hash_seq_init(&status, RelCache);
	while ((entry = hash_seq_search(&status)) != NULL)
	{
		if (!OidIsValid(relid) || entry->relid == relid ||
			entry->target_relid == relid)
			entry->valid = false;
	}
}

static void
relcache_callback(Datum arg, Oid relid)
{
	cdc_inval_count++;
	invalidate_entries(relid);
}

/* Types, schemas or publications changed: rebuild every entry. */
static void
syscache_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	cdc_inval_count++;
	if (cacheid != TYPEOID && cacheid != NAMESPACEOID)
		cdc_filter_invalidate();
	invalidate_entries(InvalidOid);
}

/*
 * The cache's memory goes away with the decoding context, also when an
 * error ends decoding without calling the shutdown callback: forget the
 * file-level pointers then, so that a later invalidation callback in this
 * backend does not follow them into freed memory.
 */
static void
relcache_memory_reset(void *arg)
{
	RelCache = NULL;
	ShapeCache = NULL;
	RelCacheCxt = NULL;
	RelCacheOpts = NULL;
	cdc_filter_reset();
}

void
cdc_relcache_init(const CdcOptions *opts, MemoryContext parent)
{
	HASHCTL		hctl;
	MemoryContextCallback *cb;

	cdc_filter_reset();
	RelCacheCxt = AllocSetContextCreate(parent, "cdc_relay relation cache",
										ALLOCSET_DEFAULT_SIZES);
	cb = MemoryContextAlloc(RelCacheCxt, sizeof(MemoryContextCallback));
	cb->func = relcache_memory_reset;
	cb->arg = NULL;
	MemoryContextRegisterResetCallback(RelCacheCxt, cb);
	RelCacheOpts = opts;
	hctl.keysize = sizeof(Oid);
	hctl.entrysize = sizeof(CdcRelEntry);
	hctl.hcxt = RelCacheCxt;
	RelCache = hash_create("cdc_relay relation cache", 128, &hctl,
						   HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	if (opts->schema_events)
	{
		hctl.keysize = sizeof(Oid);
		hctl.entrysize = sizeof(CdcShapeEntry);
		hctl.hcxt = RelCacheCxt;
		ShapeCache = hash_create("cdc_relay shapes written", 128, &hctl,
								 HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	}
	cdc_inval_callbacks_register();
}

/*
 * Register the invalidation callbacks, once per backend (they cannot be
 * unregistered): at the first decoding session, or at the first use of a
 * cache that follows cdc_inval_count.
 */
void
cdc_inval_callbacks_register(void)
{
	if (!callbacks_registered)
	{
		CacheRegisterRelcacheCallback(relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(TYPEOID, syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(PUBLICATIONOID, syscache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(PUBLICATIONRELMAP, syscache_callback, (Datum) 0);
#ifdef CDC_HAVE_SCHEMA_PUBLICATIONS
		CacheRegisterSyscacheCallback(CDC_PUBLICATIONNAMESPACEMAP,
									  syscache_callback, (Datum) 0);
#endif
		callbacks_registered = true;
	}
}

void
cdc_relcache_destroy(void)
{
	/* Everything lives in RelCacheCxt; its reset callback clears the rest. */
	if (RelCacheCxt != NULL)
		MemoryContextDelete(RelCacheCxt);
}

/* "\"name\"" followed by suffix, escaped once here rather than per row. */
static char *
quoted_with_suffix(const char *name, const char *suffix)
{
	StringInfoData buf;

	initStringInfo(&buf);
	cdc_append_json_string(&buf, name, strlen(name));
	appendStringInfoString(&buf, suffix);
	return buf.data;
}

/* open "schema":"...","table":"..." close, with both names escaped. */
static char *
json_ident(const char *open, const char *schema, const char *table,
		   const char *close)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, open);
	appendStringInfoString(&buf, "\"schema\":");
	cdc_append_json_string(&buf, schema, strlen(schema));
	appendStringInfoString(&buf, ",\"table\":");
	cdc_append_json_string(&buf, table, strlen(table));
	appendStringInfoString(&buf, close);
	return buf.data;
}

/*
 * The index whose columns form the event's key: the replica identity index
 * (primary key or REPLICA IDENTITY USING INDEX), else the primary key
 * (for FULL and NOTHING), else none.
 */
static Oid
key_index(Relation rel)
{
	Oid			idx = InvalidOid;
	char		ident = rel->rd_rel->relreplident;

	if (ident == REPLICA_IDENTITY_DEFAULT || ident == REPLICA_IDENTITY_INDEX)
		idx = RelationGetReplicaIndex(rel);
	if (!OidIsValid(idx))
	{
		list_free(RelationGetIndexList(rel));
		idx = rel->rd_pkindex;
	}
	return idx;
}

/*
 * The relation's replica identity, as key_unknown names it: what decides
 * whether the WAL has the old key.  An identity index that was dropped
 * leaves the WAL without one, as NOTHING does.
 */
static const char *
identity_label(Relation rel)
{
	switch (rel->rd_rel->relreplident)
	{
		case REPLICA_IDENTITY_NOTHING:
			return "replica identity nothing";
		case REPLICA_IDENTITY_FULL:
			return "replica identity full";
		case REPLICA_IDENTITY_INDEX:
			return OidIsValid(RelationGetReplicaIndex(rel)) ?
				"replica identity index" :
				"replica identity index, whose index was dropped";
		default:
			return OidIsValid(RelationGetReplicaIndex(rel)) ?
				"replica identity default" :
				"replica identity default, without a primary key";
	}
}

/*
 * The relation whose names a change on relid carries: its partition root
 * with partition-root, else itself.
 */
Oid
cdc_event_relid(Oid relid, bool relispartition, const CdcOptions *opts)
{
	if (opts->partition_root && relispartition)
		return llast_oid(get_partition_ancestors(relid));
	return relid;
}

/*
 * Fill entry with what encoding a change on relation takes under opts:
 * names, columns (in the root's order with partition-root), key columns,
 * the leaf-to-root conversion.  Everything is allocated in entry->cxt,
 * created under parent when NULL, else reset.  The filter verdict
 * (publish, actions) is left to the caller.  entry->relid must be set.
 */
void
cdc_relentry_build(CdcRelEntry *entry, Relation relation,
				   const CdcOptions *opts, MemoryContext parent)
{
	Relation	target = relation;
	Relation	root = NULL;
	TupleDesc	desc;
	MemoryContext old;
	Oid			target_relid;
	Oid			idx;

	if (entry->cxt == NULL)
		entry->cxt = AllocSetContextCreate(parent, "cdc_relay relation",
										   ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(entry->cxt);
	old = MemoryContextSwitchTo(entry->cxt);

	entry->map = NULL;
	target_relid = cdc_event_relid(entry->relid,
								   relation->rd_rel->relispartition, opts);
	if (target_relid != entry->relid)
	{
		root = RelationIdGetRelation(target_relid);
		if (!RelationIsValid(root))
			elog(ERROR, "could not open partition root %u", target_relid);
		target = root;
		entry->map = cdc_convert_tuples_by_name(RelationGetDescr(relation),
												RelationGetDescr(root));
	}
	entry->target_relid = target_relid;

	entry->schema = get_namespace_name(RelationGetNamespace(target));
	entry->table = pstrdup(RelationGetRelationName(target));
	entry->json_ident = json_ident(",", entry->schema, entry->table, "");
	entry->json_ident_len = strlen(entry->json_ident);
	entry->json_table = json_ident("{", entry->schema, entry->table, "}");
	entry->json_leaf_table = entry->json_table;
	if (target != relation)
		entry->json_leaf_table =
			json_ident("{", get_namespace_name(RelationGetNamespace(relation)),
					   RelationGetRelationName(relation), "}");

	/* Columns, in the target's (root's, with partition-root) order. */
	desc = RelationGetDescr(target);
	entry->cols = palloc0(sizeof(CdcColumn) * desc->natts);
	entry->ncols = 0;
	entry->needs_output_settings = false;
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		CdcColumn  *col;

		if (att->attisdropped)
			continue;
		col = &entry->cols[entry->ncols++];
		col->attnum = att->attnum;
		col->name = pstrdup(NameStr(att->attname));
		col->json_name = quoted_with_suffix(col->name, ":");
		col->json_name_len = strlen(col->json_name);
		col->json_str = quoted_with_suffix(col->name, "");
		cdc_type_info_init(&col->type, att->atttypid, entry->cxt);
		entry->needs_output_settings |= col->type.needs_output_settings;
	}

	/*
	 * Key columns, in index order.  The index is the one of the relation the
	 * change is on, because its identity is what the WAL's old tuple holds;
	 * with partition-root its columns are found in the root by name.
	 */
	entry->nkeys = 0;
	entry->keycols = NULL;
	idx = key_index(relation);
	if (OidIsValid(idx))
	{
		Relation	idxrel = RelationIdGetRelation(idx);
		TupleDesc	reldesc = RelationGetDescr(relation);

		if (!RelationIsValid(idxrel))
			elog(ERROR, "could not open index %u", idx);
		entry->keycols = palloc(sizeof(int) * idxrel->rd_index->indnkeyatts);
		for (int k = 0; k < idxrel->rd_index->indnkeyatts; k++)
		{
			AttrNumber	attnum = idxrel->rd_index->indkey.values[k];
			const char *attname = NameStr(TupleDescAttr(reldesc, attnum - 1)->attname);

			for (int c = 0; c < entry->ncols; c++)
			{
				if (strcmp(entry->cols[c].name, attname) == 0)
				{
					entry->keycols[entry->nkeys++] = c;
					break;
				}
			}
		}
		RelationClose(idxrel);
	}

	/* The WAL's old tuple has every column only under REPLICA IDENTITY FULL. */
	entry->old_has_all =
		(relation->rd_rel->relreplident == REPLICA_IDENTITY_FULL);
	entry->identity = identity_label(relation);

	/* Built here, once per rebuild: invalidation is what a shape change is. */
	entry->shape = opts->schema_events ?
		cdc_proto_schema(entry, target, relation) : NULL;

	if (root != NULL)
		RelationClose(root);
	MemoryContextSwitchTo(old);
}

/* The (valid) cache entry for the relation a change is on. */
CdcRelEntry *
cdc_relcache_get(Relation relation)
{
	Oid			relid = RelationGetRelid(relation);
	CdcRelEntry *entry;
	bool		found;

	Assert(RelCache != NULL);
	entry = hash_search(RelCache, &relid, HASH_ENTER, &found);
	if (!found)
	{
		entry->valid = false;
		entry->cxt = NULL;
		entry->target_relid = relid;
	}
	if (!entry->valid)
	{
		cdc_relentry_build(entry, relation, RelCacheOpts, RelCacheCxt);
		entry->actions = cdc_relation_actions(RelCacheOpts, NULL, relation,
											  entry->schema, entry->table);
		entry->publish = (entry->actions != 0);
		entry->valid = true;
	}
	return entry;
}

/*
 * schema-events: whether entry's shape differs from the last one written
 * for the relation it names in this decoding session (or none was); if so,
 * it is recorded as written, and the caller must write it now, before the
 * event that asked.  Partitions named by their root share its record.
 */
bool
cdc_relcache_shape_is_new(const CdcRelEntry *entry)
{
	CdcShapeEntry *se;
	bool		found;

	Assert(ShapeCache != NULL && entry->shape != NULL);
	se = hash_search(ShapeCache, &entry->target_relid, HASH_ENTER, &found);
	if (found && se->shape != NULL && strcmp(se->shape, entry->shape) == 0)
		return false;
	if (found && se->shape != NULL)
		pfree(se->shape);
	se->shape = NULL;
	se->shape = MemoryContextStrdup(RelCacheCxt, entry->shape);
	return true;
}
