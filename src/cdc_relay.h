/*
 * cdc_relay.h
 *		Types shared by the cdc_relay output plugin's source files:
 *		options (options.c), table filters (filter.c), the per-relation
 *		cache (relcache.c), the JSON value encoder (encode.c) and the event
 *		writers (proto.c; the wire contract is cdc_wire.h).
 */
#ifndef CDC_RELAY_H
#define CDC_RELAY_H

#include "postgres.h"

#include "access/tupconvert.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "utils/array.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "replication/logical.h"
#include "utils/relcache.h"

/* Actions, as a bitmask, for the "actions" option and publications. */
#define CDC_ACTION_INSERT	0x01
#define CDC_ACTION_UPDATE	0x02
#define CDC_ACTION_DELETE	0x04
#define CDC_ACTION_TRUNCATE 0x08
#define CDC_ACTION_ALL		0x0F

/* One schema.table pattern of include-tables / exclude-tables. */
typedef struct CdcTablePattern
{
	char	   *schema;			/* NULL: any schema */
	char	   *table;
} CdcTablePattern;

/* Parsed plugin options; read once at startup, immutable afterwards. */
typedef struct CdcOptions
{
	bool		include_xids;
	bool		include_lsn;
	bool		include_timestamp;
	bool		skip_empty_xacts;
	bool		partition_root;
	bool		numeric_as_number;
	bool		key_prefix;		/* <key JSON> TAB before insert/update/delete */
	bool		batch_events;	/* several events per write, '\n'-separated */
	bool		schema_events;	/* "s" events, and the DDL trigger's messages */
	int			actions;		/* CDC_ACTION_* mask */
	List	   *include_tables; /* of CdcTablePattern *; NIL = all */
	List	   *exclude_tables; /* of CdcTablePattern * */
	List	   *publications;	/* of char *; NIL = no publication filter */
	List	   *message_prefixes;	/* of char *; NIL = all messages */
	bool		origin_none;	/* origin=none: skip transactions with a
								 * replication origin */
} CdcOptions;

/* How a value of a given (base) type is written as JSON. */
typedef enum CdcValueKind
{
	CDC_KIND_INT2,
	CDC_KIND_INT4,
	CDC_KIND_INT8,
	CDC_KIND_OID,
	CDC_KIND_FLOAT4,
	CDC_KIND_FLOAT8,
	CDC_KIND_NUMERIC,
	CDC_KIND_BOOL,
	CDC_KIND_TEXT,				/* text, varchar, bpchar: escaped string */
	CDC_KIND_JSON,				/* embedded as JSON */
	CDC_KIND_JSONB,				/* embedded as JSON */
	CDC_KIND_BYTEA,				/* "\\x..." */
	CDC_KIND_DATE,
	CDC_KIND_TIME,
	CDC_KIND_TIMETZ,
	CDC_KIND_TIMESTAMP,
	CDC_KIND_TIMESTAMPTZ,
	CDC_KIND_INTERVAL,
	CDC_KIND_ARRAY,				/* JSON array of the element kind */
	CDC_KIND_OTHER				/* the type's output function, as a string */
} CdcValueKind;

/* Everything needed to encode one value without catalog lookups. */
typedef struct CdcTypeInfo
{
	Oid			basetypid;		/* the column's type, domains resolved */
	CdcValueKind kind;
	bool		needs_output_settings;	/* may go through a settings-dependent
										 * output function (see
										 * cdc_output_settings_in_effect) */
	int16		typlen;
	bool		typbyval;
	char		typalign;
	FmgrInfo	outfunc;		/* output function of the base type */
	struct CdcTypeInfo *elem;	/* element type, for CDC_KIND_ARRAY */
} CdcTypeInfo;

/* One live (not dropped) column of a cached relation. */
typedef struct CdcColumn
{
	AttrNumber	attnum;			/* 1-based attribute number in the tuple */
	char	   *name;			/* plain name, for unchanged_toast */
	char	   *json_name;		/* pre-escaped "\"name\":" */
	int			json_name_len;
	char	   *json_str;		/* pre-escaped "\"name\"" */
	CdcTypeInfo type;
} CdcColumn;

/* Per-relation cache entry, keyed by the relation's OID. */
typedef struct CdcRelEntry
{
	Oid			relid;			/* hash key: the relation the change is on */
	bool		valid;
	MemoryContext cxt;			/* owns everything below */
	bool		publish;		/* passes table filters and publications */
	int			actions;		/* CDC_ACTION_* mask this relation emits */
	char	   *schema;			/* names the events carry (the target's) */
	char	   *table;
	char	   *json_ident;		/* ,"schema":"...","table":"..." */
	int			json_ident_len;
	char	   *json_table;		/* {"schema":"...","table":"..."} for truncate */
	char	   *json_leaf_table;	/* the same for the relation itself */
	int			ncols;
	CdcColumn  *cols;
	int			nkeys;			/* 0: no key (key is null) */
	int		   *keycols;		/* indexes into cols */
	bool		old_has_all;	/* old tuple carries every column (FULL) */
	const char *identity;		/* "replica identity nothing", ...: why the
								 * WAL may lack the key (key_unknown) */
	Oid			target_relid;	/* the relation the event names */
	TupleConversionMap *map;	/* leaf -> root conversion, or NULL */
	bool		needs_output_settings;	/* some column's type does */
	char	   *shape;			/* schema event up to its tail (schema-events
								 * only, else NULL): {"op":"s",... */
} CdcRelEntry;

/* Images of a change event, and the column lists noted while encoding them. */
typedef enum CdcImage
{
	CDC_IMAGE_KEY,
	CDC_IMAGE_BEFORE,
	CDC_IMAGE_AFTER
} CdcImage;

#define CDC_NUM_IMAGES 3

typedef struct CdcRowNotes
{
	List	   *unchanged;		/* CdcColumn *: unchanged TOAST, left out */
	List	   *json_null[CDC_NUM_IMAGES];	/* CdcColumn *: json/jsonb holding
											 * the JSON literal null */
} CdcRowNotes;

/*
 * appendBinaryStringInfo, inlined: an event is made of many short pieces,
 * and the call (plus the one to enlargeStringInfo) costs more than the copy.
 */
static inline void
cdc_append_bytes(StringInfo out, const char *s, int n)
{
	if (unlikely(out->len + n >= out->maxlen))
		enlargeStringInfo(out, n);
	memcpy(out->data + out->len, s, n);
	out->len += n;
	out->data[out->len] = '\0';
}

#define cdc_append_literal(out, lit) cdc_append_bytes((out), "" lit, sizeof(lit) - 1)

/* options.c */
extern void cdc_parse_options(List *defels, CdcOptions *opts);
extern List *cdc_options_from_array(ArrayType *arr);

/* The extension's own schema: its tables (snapshot_jobs) are never captured. */
#define CDC_EXTENSION_SCHEMA "cdc_relay"

/* filter.c */
extern bool cdc_table_matches(const CdcOptions *opts, const char *schema,
							  const char *table);
extern List *cdc_load_publications(const CdcOptions *opts);
extern int	cdc_publication_actions(List *pubs, Relation rel);
extern int	cdc_relation_actions(const CdcOptions *opts, List *pubs, Relation rel,
								 const char *schema, const char *table);
extern bool cdc_message_prefix_wanted(const CdcOptions *opts, const char *prefix);
extern void cdc_filter_invalidate(void);
extern void cdc_filter_reset(void);
extern List *cdc_parse_table_patterns(const char *optname, const char *value);

/* relcache.c */
extern void cdc_relcache_init(const CdcOptions *opts, MemoryContext parent);
extern void cdc_relcache_destroy(void);
extern CdcRelEntry *cdc_relcache_get(Relation relation);
extern Oid	cdc_event_relid(Oid relid, bool relispartition, const CdcOptions *opts);
extern void cdc_relentry_build(CdcRelEntry *entry, Relation relation,
							   const CdcOptions *opts, MemoryContext parent);
extern void cdc_inval_callbacks_register(void);
extern bool cdc_relcache_shape_is_new(const CdcRelEntry *entry);
extern uint64 cdc_inval_count;

/* encode.c */
extern void cdc_type_info_init(CdcTypeInfo *ti, Oid typid, MemoryContext cxt);
extern bool cdc_append_value(StringInfo out, const CdcTypeInfo *ti, Datum value,
							 bool numeric_as_number);
extern void cdc_append_json_string(StringInfo out, const char *str, int len);
extern void cdc_append_lsn(StringInfo out, XLogRecPtr lsn);
extern void cdc_append_timestamptz(StringInfo out, TimestampTz ts);
extern void cdc_append_row(StringInfo out, const CdcRelEntry *entry,
						   const Datum *values, const bool *nulls,
						   const int *which, int n, bool numeric_as_number,
						   CdcImage image, CdcRowNotes *notes);
extern bool cdc_output_settings_in_effect(void);
extern void cdc_output_settings_set(GucAction action, bool only_missing);

/* schema.c */
extern void cdc_schema_define_gucs(void);

/*
 * proto.c: the event writers (the format is proto.c's and cdc_wire.h's).
 * What every event of one transaction shares, formatted once.
 */
typedef struct CdcProtoTxn
{
	uint64		seq;			/* events written so far (cdc_wire.h) */
	char		xid_json[32];	/* ,"xid":N  (or empty) */
	char		commit_json[40];	/* ,"commit_lsn":"X/X"  (or empty) */
	char		ts_json[MAXDATELEN + 16];	/* ,"ts":"..."  (or empty) */
	char		request_id_json[2 * 256 + 24];	/* ,"request_id":"..."  (or
												 * empty): set_request_id */
} CdcProtoTxn;

extern void cdc_proto_txn_init(CdcProtoTxn *t, const CdcOptions *opts,
							   TransactionId xid, XLogRecPtr final_lsn,
							   TimestampTz commit_time);
extern void cdc_proto_begin(StringInfo out, const CdcProtoTxn *t);
extern void cdc_proto_commit(StringInfo out, const CdcOptions *opts,
							 const CdcProtoTxn *t, XLogRecPtr end_lsn);
extern void cdc_proto_next_seq(CdcProtoTxn *t);
extern void cdc_proto_tail(StringInfo out, const CdcOptions *opts,
						   const CdcProtoTxn *t, XLogRecPtr lsn);
extern void cdc_proto_tail_next(StringInfo out, const CdcOptions *opts,
								const CdcProtoTxn *t, XLogRecPtr lsn);
extern void cdc_proto_change(StringInfo out, const CdcOptions *opts, char op,
							 const CdcRelEntry *entry, const Datum *oldvals,
							 const bool *oldnulls, const Datum *newvals,
							 const bool *newnulls);
extern void cdc_proto_snapshot_row(StringInfo out, const CdcOptions *opts,
								   const CdcRelEntry *entry, const Datum *values,
								   const bool *nulls, XLogRecPtr lsn);
extern void cdc_proto_truncate(StringInfo out, List *tables, bool cascade,
							   bool restart_seqs);
extern void cdc_proto_message(StringInfo out, const char *prefix,
							  bool transactional, Size sz, const char *message);
extern char *cdc_proto_schema(const CdcRelEntry *entry, Relation target,
							  Relation relation);
extern bool cdc_proto_txn_set_request_id(CdcProtoTxn *t, const char *id,
										 Size len);
extern bool cdc_request_id_valid(const char *id, Size len, const char **why);
extern char *cdc_emit_content_build(const char *topic, const char *key,
									const char *payload, Size *len);
extern bool cdc_proto_emit(StringInfo out, const char *content, Size sz);
extern void cdc_proto_message_end(StringInfo out, const CdcOptions *opts,
								  TransactionId xid, XLogRecPtr lsn);

#endif							/* CDC_RELAY_H */
