/*
 * metrics.h: the relay's counters and gauges, and `--metrics ADDR`, which
 * serves them in the Prometheus text format (0.0.4) on GET /metrics.
 *
 * Threads: the main thread and the snapshot readers update the counters;
 * the HTTP server's thread (http.c) renders them.  Every value is an atomic
 * read and written with relaxed order (each is a statistic on its own; none
 * orders anything else).  The per-table entries live in a list that only
 * grows, guarded by a mutex taken when a table is added (once per table) and
 * while a scrape walks it; updating an entry's counters takes no lock.  The
 * stream adds a table's events to its entry in batches (once per burst of up
 * to 256 events, see stream.c), not per event.
 *
 * Nothing here knows about Kafka or PostgreSQL: the module is unit tested in
 * test/unit/metrics_units.c.
 */
#ifndef RELAY_METRICS_H
#define RELAY_METRICS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct HttpServer;

/* The ops of cdc_relay_events_total{op}: the plugin's c, u, d, and t (truncate). */
#define METRICS_NOPS 4
#define METRICS_OPS "cudt"

/* One captured table's counters (cdc_relay_*{table=...}). */
typedef struct MetricsTable
{
	struct MetricsTable *next;	/* the list only grows; set before publication */
	char	   *name;			/* display name: schema.table */
	atomic_uint_fast64_t events[METRICS_NOPS];	/* stream events produced, by op */
	atomic_uint_fast64_t bytes;	/* key + value bytes produced (stream and snapshot) */
	atomic_uint_fast64_t snapshot_rows; /* snapshot rows produced */
	atomic_uint_fast64_t online_rows;	/* online snapshot rows produced */
	atomic_uint_fast64_t online_chunks; /* online snapshot chunks emitted */
	atomic_uint_fast64_t online_dropped;	/* chunk rows the stream overrode */
	atomic_int	online_active;	/* an online snapshot of the table runs */
} MetricsTable;

typedef struct RelayMetrics
{
	/* counters (only grow) */
	atomic_uint_fast64_t transactions;	/* PostgreSQL transactions produced */
	atomic_uint_fast64_t emitted;	/* domain events (cdc_relay.emit) produced */
	atomic_uint_fast64_t emit_refused;	/* ... dropped: --emit-refused=skip */
	atomic_uint_fast64_t delivery_errors;	/* failed delivery reports */
	atomic_uint_fast64_t kafka_commits; /* Kafka transactions committed */
	atomic_uint_fast64_t kafka_aborts;	/* ... and aborted */
	atomic_uint_fast64_t reconnects;	/* replication streams re-established */
	atomic_uint_fast64_t schema_events; /* schema events produced (<prefix>.schemas) */
	atomic_uint_fast64_t ddl_events;	/* DDL messages produced (<prefix>.ddl) */

	/* gauges */
	atomic_uint_fast64_t server_wal_end;	/* from the last keepalive / XLogData, 0: none yet */
	atomic_uint_fast64_t confirmed_lsn; /* last flush position sent to PostgreSQL */
	atomic_int_fast64_t oldest_pending_us;	/* commit time (Unix µs) of the oldest transaction not
											 * yet delivered; 0: nothing pending */
	atomic_uint_fast64_t stream_in_flight;	/* stream messages awaiting a delivery report */
	const atomic_uint_fast64_t *snap_in_flight; /* snapshot messages (Relay.snap_pending), or NULL */
	atomic_int	snapshot_tables_done;	/* of the last snapshot */
	atomic_int	snapshot_tables_total;

	/* what cdc_relay_info says */
	char	   *version;
	char	   *slot;
	char	   *delivery;

	pthread_mutex_t lock;		/* guards tables' list (not the entries' counters) */
	MetricsTable *tables;		/* newest first */
	MetricsTable *tables_tail;	/* oldest: the list is rendered oldest first */

	struct HttpServer *server;	/* --metrics: NULL when not serving */
} RelayMetrics;

/* A new set of zero counters, or NULL (out of memory). */
RelayMetrics *metrics_new(const char *version, const char *slot, const char *delivery);

/* Stop serving (metrics_serve), then free.  NULL is fine. */
void		metrics_free(RelayMetrics *m);

/*
 * The entry of the table with display name name, created on first use.  The
 * pointer stays valid until metrics_free.  Takes the lock: call it once per
 * table and keep the pointer.  NULL only when out of memory.
 */
MetricsTable *metrics_table(RelayMetrics *m, const char *name);

/*
 * Serve GET /metrics on addr (http.h's forms) on a thread of its own; the
 * actual address is written to bound ("HOST:PORT", HOST 0.0.0.0 when addr
 * names none).  0, or -1 with err filled.
 */
int			metrics_serve(RelayMetrics *m, const char *addr, char *bound, size_t boundlen,
						  char *err, size_t errlen);

/*
 * The whole exposition in Prometheus text format 0.0.4, as of now_us (Unix
 * time in µs, for cdc_relay_lag_seconds): malloc'd, its length in *len;
 * NULL when out of memory.
 */
char	   *metrics_render(RelayMetrics *m, int64_t now_us, size_t *len);

/*
 * Write value as a label value of the text format into out (NUL-terminated,
 * truncated to outlen - 1 bytes without cutting an escape): backslash,
 * double quote and line feed become \\, \" and \n.  Returns the length the
 * whole escaped value has (as snprintf does).
 */
size_t		metrics_escape_label(char *out, size_t outlen, const char *value);

/*
 * The plugin's timestamp text ("2024-01-02T03:04:05.123456+00:00", any
 * offset, or "Z") as Unix time in µs; 0 when it is not one.
 */
int64_t		metrics_parse_ts(const char *s, size_t len);

/* Unix time now, in µs. */
int64_t		metrics_now_us(void);

#endif
