/*
 * health.c
 *		The slot health sampler: a background worker that, when cdc_relay is
 *		in shared_preload_libraries, records every
 *		cdc_relay.wal_sample_interval the WAL insert position (a ring of the
 *		last HEALTH_SAMPLES samples: the WAL write rate over the last
 *		minutes) and, per logical slot, when its confirmed_flush_lsn last
 *		moved and when a consumer was last connected to it.  The view
 *		cdc_relay.slot_health reads them through cdc_relay.wal_samples()
 *		and cdc_relay.slot_progress(); without the preload both return no
 *		rows and the view falls back to pg_stat_wal.
 *
 * The worker needs no database connection: it reads the WAL insert
 * position and the replication slots' shared memory, and writes its own
 * shared memory under one LWLock.
 */
#include "postgres.h"

#include "access/xlog.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "replication/slot.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/pg_lsn.h"
#include "utils/timestamp.h"

#include "cdc_relay.h"

PG_FUNCTION_INFO_V1(cdc_relay_wal_samples);
PG_FUNCTION_INFO_V1(cdc_relay_slot_progress);

PGDLLEXPORT void cdc_relay_sampler_main(Datum arg);
extern void _PG_init(void);

/* samples kept: ~5 minutes at the default interval */
#define HEALTH_SAMPLES 30

typedef struct HealthSample
{
	TimestampTz at;
	XLogRecPtr	insert_lsn;
} HealthSample;

/* What the sampler knows about one logical slot (matched by name). */
typedef struct HealthSlot
{
	bool		in_use;
	NameData	name;
	XLogRecPtr	confirmed;		/* confirmed_flush_lsn at the last sample */
	TimestampTz confirmed_moved_at; /* first sample that saw that value */
	TimestampTz last_active_at; /* last sample that saw a consumer, or 0 */
	bool		seen;			/* scratch: seen in the current sample */
} HealthSlot;

typedef struct HealthShared
{
	LWLock	   *lock;
	int			nsamples;		/* valid samples, up to HEALTH_SAMPLES */
	int			next;			/* where the next sample goes */
	HealthSample samples[HEALTH_SAMPLES];
	int			nslots;			/* = max_replication_slots */
	HealthSlot	slots[FLEXIBLE_ARRAY_MEMBER];
} HealthShared;

/*
 * File-level state, as every preloaded PostgreSQL module has it: the
 * setting, the shared memory pointer (set once at startup, inherited by
 * every backend) and the hooks we chain to.
 */
static int	wal_sample_interval = 10;	/* seconds */
static int	behind_bytes = 16 * 1024 * 1024;	/* read by the view */
static int	behind_seconds = 30;	/* read by the view */
static HealthShared *health = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static Size
health_size(void)
{
	return add_size(offsetof(HealthShared, slots),
					mul_size(sizeof(HealthSlot), max_replication_slots));
}

static void
health_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(health_size());
	RequestNamedLWLockTranche("cdc_relay", 1);
}

static void
health_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	health = ShmemInitStruct("cdc_relay slot health", health_size(), &found);
	if (!found)
	{
		memset(health, 0, health_size());
		health->lock = &(GetNamedLWLockTranche("cdc_relay"))->lock;
		health->nslots = max_replication_slots;
	}
	LWLockRelease(AddinShmemInitLock);
}

/*
 * Module load: define cdc_relay.wal_sample_interval and, when the
 * library is being preloaded, ask for shared memory and register the
 * sampler.  Loaded any other way (as an output plugin, by a function call)
 * only the setting is defined.
 */
void
_PG_init(void)
{
	BackgroundWorker worker;

	DefineCustomIntVariable("cdc_relay.wal_sample_interval",
							"Seconds between two samples of the WAL insert position and the slots' "
							"confirmed positions (cdc_relay.slot_health).",
							"Takes effect only with cdc_relay in shared_preload_libraries.",
							&wal_sample_interval,
							10, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);
	/*
	 * The view reads these two with current_setting(), so they work from
	 * postgresql.conf also where the library is not loaded (as placeholders):
	 * a byte count (or a size with a unit) and a number of seconds.
	 */
	DefineCustomIntVariable("cdc_relay.behind_bytes",
							"Unconfirmed WAL above which cdc_relay.slot_health calls a connected consumer behind.",
							NULL,
							&behind_bytes,
							16 * 1024 * 1024, 0, INT_MAX,
							PGC_USERSET, GUC_UNIT_BYTE,
							NULL, NULL, NULL);
	DefineCustomIntVariable("cdc_relay.behind_seconds",
							"Seconds without a new confirmed position (with WAL to confirm) after which "
							"cdc_relay.slot_health calls a connected consumer behind.",
							NULL,
							&behind_seconds,
							30, 0, 86400,
							PGC_USERSET, 0,
							NULL, NULL, NULL);
	cdc_schema_define_gucs();
	if (!process_shared_preload_libraries_in_progress)
		return;
	MarkGUCPrefixReserved("cdc_relay");

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = health_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = health_shmem_startup;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = 10;
	snprintf(worker.bgw_library_name, BGW_MAXLEN, "cdc_relay");
	snprintf(worker.bgw_function_name, BGW_MAXLEN, "cdc_relay_sampler_main");
	snprintf(worker.bgw_name, BGW_MAXLEN, "cdc_relay WAL sampler");
	snprintf(worker.bgw_type, BGW_MAXLEN, "cdc_relay WAL sampler");
	RegisterBackgroundWorker(&worker);
}

/* Find the entry for a slot name, or a free one (NULL: table full). */
static HealthSlot *
slot_entry(const char *name)
{
	HealthSlot *free_entry = NULL;

	for (int i = 0; i < health->nslots; i++)
	{
		HealthSlot *e = &health->slots[i];

		if (e->in_use && strcmp(NameStr(e->name), name) == 0)
			return e;
		if (!e->in_use && free_entry == NULL)
			free_entry = e;
	}
	if (free_entry)
	{
		memset(free_entry, 0, sizeof(*free_entry));
		free_entry->in_use = true;
		namestrcpy(&free_entry->name, name);
		free_entry->confirmed = InvalidXLogRecPtr;
	}
	return free_entry;
}

/* One sample: the WAL insert position and every logical slot. */
static void
take_sample(void)
{
	TimestampTz now = GetCurrentTimestamp();
	XLogRecPtr	insert = GetXLogInsertRecPtr();
	int			n = 0;
	struct
	{
		NameData	name;
		XLogRecPtr	confirmed;
		bool		active;
	}		   *seen = palloc(sizeof(*seen) * Max(max_replication_slots, 1));

	/* copy the slots first: never hold their lock and ours together */
	LWLockAcquire(ReplicationSlotControlLock, LW_SHARED);
	for (int i = 0; i < max_replication_slots; i++)
	{
		ReplicationSlot *s = &ReplicationSlotCtl->replication_slots[i];

		if (!s->in_use)
			continue;
		SpinLockAcquire(&s->mutex);
		if (SlotIsLogical(s))
		{
			seen[n].name = s->data.name;
			seen[n].confirmed = s->data.confirmed_flush;
			seen[n].active = s->active_pid != 0;
			n++;
		}
		SpinLockRelease(&s->mutex);
	}
	LWLockRelease(ReplicationSlotControlLock);

	LWLockAcquire(health->lock, LW_EXCLUSIVE);
	health->samples[health->next].at = now;
	health->samples[health->next].insert_lsn = insert;
	health->next = (health->next + 1) % HEALTH_SAMPLES;
	if (health->nsamples < HEALTH_SAMPLES)
		health->nsamples++;
	for (int i = 0; i < health->nslots; i++)
		health->slots[i].seen = false;
	for (int i = 0; i < n; i++)
	{
		HealthSlot *e = slot_entry(NameStr(seen[i].name));

		if (e == NULL)
			continue;
		e->seen = true;
		if (e->confirmed_moved_at == 0 || e->confirmed != seen[i].confirmed)
		{
			e->confirmed = seen[i].confirmed;
			e->confirmed_moved_at = now;
		}
		if (seen[i].active)
			e->last_active_at = now;
	}
	/* slots that are gone */
	for (int i = 0; i < health->nslots; i++)
		if (health->slots[i].in_use && !health->slots[i].seen)
			health->slots[i].in_use = false;
	LWLockRelease(health->lock);
	pfree(seen);
}

/* The background worker: a sample, then sleep, until shutdown. */
void
cdc_relay_sampler_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, SignalHandlerForShutdownRequest);
	BackgroundWorkerUnblockSignals();
	if (health == NULL)
		proc_exit(0);			/* cannot happen: registered only with the preload */

	while (!ShutdownRequestPending)
	{
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		take_sample();
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 wal_sample_interval * 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	proc_exit(0);
}

/*
 * cdc_relay.wal_samples(): the sampler's ring, oldest first (no rows
 * without the preload).
 */
Datum
cdc_relay_wal_samples(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HealthSample copy[HEALTH_SAMPLES];
	int			n = 0,
				next = 0;

	InitMaterializedSRF(fcinfo, 0);
	if (health == NULL)
		PG_RETURN_VOID();
	LWLockAcquire(health->lock, LW_SHARED);
	n = health->nsamples;
	next = health->next;
	memcpy(copy, health->samples, sizeof(copy));
	LWLockRelease(health->lock);
	for (int i = 0; i < n; i++)
	{
		HealthSample *s = &copy[(next - n + i + HEALTH_SAMPLES) % HEALTH_SAMPLES];
		Datum		values[2];
		bool		nulls[2] = {false, false};

		values[0] = TimestampTzGetDatum(s->at);
		values[1] = LSNGetDatum(s->insert_lsn);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	PG_RETURN_VOID();
}

/*
 * cdc_relay.slot_progress(): per logical slot the sampler saw, the
 * confirmed_flush_lsn it last saw, since when, and when a consumer was
 * last connected (NULL: never seen connected).  No rows without the
 * preload.
 */
Datum
cdc_relay_slot_progress(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	HealthSlot *copy;
	int			n;

	InitMaterializedSRF(fcinfo, 0);
	if (health == NULL)
		PG_RETURN_VOID();
	n = health->nslots;
	copy = palloc(sizeof(HealthSlot) * Max(n, 1));
	LWLockAcquire(health->lock, LW_SHARED);
	memcpy(copy, health->slots, sizeof(HealthSlot) * n);
	LWLockRelease(health->lock);
	for (int i = 0; i < n; i++)
	{
		Datum		values[4];
		bool		nulls[4] = {false, false, false, false};

		if (!copy[i].in_use)
			continue;
		values[0] = NameGetDatum(&copy[i].name);
		values[1] = LSNGetDatum(copy[i].confirmed);
		nulls[1] = XLogRecPtrIsInvalid(copy[i].confirmed);
		values[2] = TimestampTzGetDatum(copy[i].confirmed_moved_at);
		values[3] = TimestampTzGetDatum(copy[i].last_active_at);
		nulls[3] = copy[i].last_active_at == 0;
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	pfree(copy);
	PG_RETURN_VOID();
}
