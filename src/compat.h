/*
 * compat.h
 *		Every PostgreSQL version difference cdc_relay cares about (14..17),
 *		in one place, so the rest of the code has no version #ifs.
 */
#ifndef CDC_RELAY_COMPAT_H
#define CDC_RELAY_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 140000
#error "cdc_relay requires PostgreSQL 14 or later"
#endif

#if PG_VERSION_NUM >= 160000
#include "varatt.h"
#endif

#include "access/tupconvert.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "replication/reorderbuffer.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

/* Commit timestamp of a decoded transaction. */
#if PG_VERSION_NUM >= 150000
#define CDC_TXN_COMMIT_TIME(txn) ((txn)->xact_time.commit_time)
#else
#define CDC_TXN_COMMIT_TIME(txn) ((txn)->commit_time)
#endif

/* Encode an Interval as ISO 8601 ("P1Y2M3DT4H5M6S") into buf[MAXDATELEN + 1]. */
static inline void
cdc_encode_interval_iso(Interval *span, char *buf)
{
#if PG_VERSION_NUM >= 150000
	struct pg_itm itm;

	interval2itm(*span, &itm);
	EncodeInterval(&itm, INTSTYLE_ISO_8601, buf);
#else
	struct pg_tm tm;
	fsec_t		fsec;

	if (interval2tm(*span, &tm, &fsec) != 0)
		elog(ERROR, "could not convert interval to tm");
	EncodeInterval(&tm, fsec, INTSTYLE_ISO_8601, buf);
#endif
}

/* Tuple conversion from a partition to its root (NULL when not needed). */
static inline TupleConversionMap *
cdc_convert_tuples_by_name(TupleDesc indesc, TupleDesc outdesc)
{
	return convert_tuples_by_name(indesc, outdesc);
}

/* Old and new tuples of a decoded change (HeapTuple directly from 17 on). */
#if PG_VERSION_NUM >= 170000
#define CDC_CHANGE_NEWTUPLE(c) ((c)->data.tp.newtuple)
#define CDC_CHANGE_OLDTUPLE(c) ((c)->data.tp.oldtuple)
#else
#define CDC_CHANGE_NEWTUPLE(c) \
	((c)->data.tp.newtuple ? &(c)->data.tp.newtuple->tuple : NULL)
#define CDC_CHANGE_OLDTUPLE(c) \
	((c)->data.tp.oldtuple ? &(c)->data.tp.oldtuple->tuple : NULL)
#endif

/* Schema-level publication membership (FOR TABLES IN SCHEMA) exists from 15. */
#if PG_VERSION_NUM >= 150000
#define CDC_HAVE_SCHEMA_PUBLICATIONS 1
#define CDC_PUBLICATIONNAMESPACEMAP PUBLICATIONNAMESPACEMAP
#endif

/*
 * Set up a set-returning function's result as a tuplestore with the
 * function's declared row type (InitMaterializedSRF from 15 on).
 */
#if PG_VERSION_NUM >= 150000
#define cdc_init_materialized_srf(fcinfo) InitMaterializedSRF((fcinfo), 0)
#else
#include "utils/tuplestore.h"
static inline void
cdc_init_materialized_srf(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	MemoryContext old;
	TupleDesc	tupdesc;

	if (rsinfo == NULL || !IsA(rsinfo, ReturnSetInfo) ||
		(rsinfo->allowedModes & SFRM_Materialize) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("materialize mode required, but it is not allowed in this context")));
	old = MemoryContextSwitchTo(rsinfo->econtext->ecxt_per_query_memory);
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	rsinfo->setDesc = CreateTupleDescCopy(tupdesc);
	rsinfo->setResult = tuplestore_begin_heap(true, false, work_mem);
	rsinfo->returnMode = SFRM_Materialize;
	MemoryContextSwitchTo(old);
}
#endif

#endif							/* CDC_RELAY_COMPAT_H */
