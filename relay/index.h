/*
 * index.h: cdc-index, a reference consumer of the relay's table topics that
 * keeps a SQLite database (latest row per key, FTS5 full-text index) and
 * stores the Kafka offsets it applied in the same SQLite transaction as the
 * changes (exactly-once effect).
 *
 *   index_main.c  the command line: options, `search`
 *   index_run.c   the Kafka consumer loop of `run`
 *   index_db.c    the SQLite schema, applying one message, offsets, search
 *   index_http.c  GET /search and GET /metrics (relay/http.c)
 */
#ifndef RELAY_INDEX_H
#define RELAY_INDEX_H

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <sqlite3.h>

#include "http.h"

/* One source table followed (from --table schema.table[:col1,col2]). */
typedef struct IndexTable
{
	char	   *source;			/* "schema.table" (the key of cdc_index_tables) */
	char	   *schema;
	char	   *table;
	char	   *topic;			/* <prefix>.<enc(schema)>.<enc(table)> */
	char	  **cols;			/* text columns of the FTS5 index */
	int			ncols;
	char	   *cols_text;		/* cols joined with ",", as stored */
	char	   *rows_name;		/* SQLite table of the latest rows: "schema.table" */
	char	   *fts_name;		/* its FTS5 table: "schema.table.fts" ("" without cols) */
	/* the newest truncate applied: rows at or before it are gone */
	uint64_t	trunc_lsn;
	uint32_t	trunc_seq;
	/* prepared statements (index_db.c) */
	sqlite3_stmt *sel_row,
			   *upsert,
			   *del_row,
			   *fts_ins,
			   *fts_del,
			   *trunc_fts,
			   *trunc_rows,
			   *trunc_meta,
			   *decode,
			   *toast_cols,
			   *toast_set;
} IndexTable;

/* The position of an event in the WAL order: (commit LSN, seq); snapshot rows have seq 0. */
typedef struct IndexPos
{
	uint64_t	lsn;
	uint32_t	seq;
	bool		known;
} IndexPos;

/* One assigned partition, for the metrics endpoint. */
typedef struct IndexPart
{
	int			table;			/* index into the tables */
	int32_t		partition;
	int64_t		applied;		/* next offset to apply (stored in SQLite) */
	int64_t		high;			/* high watermark (last stable offset), -1 unknown */
} IndexPart;

/* What the HTTP thread reads: a copy under mu, updated after each SQLite commit. */
typedef struct IndexShared
{
	pthread_mutex_t mu;
	IndexPart  *parts;
	int			nparts;
	const IndexTable *tables;	/* immutable after start */
	uint64_t	messages_applied;
	uint64_t	batches_committed;
} IndexShared;

/* What an HTTP server serves (one per address; both paths when both on one). */
typedef struct IndexHttpArg
{
	const char *db_path;
	bool		search;
	bool		metrics;
	IndexShared *shared;
} IndexHttpArg;

/* One search result. */
typedef struct IndexHit
{
	char	   *table;
	char	   *key;			/* the Kafka key (JSON text) */
	double		rank;			/* bm25: lower is better */
	char	   *snippet;
} IndexHit;

/* A message to step over (--skip TOPIC:PARTITION:OFFSET). */
typedef struct SkipPoint
{
	char	   *topic;
	int32_t		partition;
	int64_t		offset;
} SkipPoint;

/* The options of `run` (read once, then immutable). */
typedef struct RunOpts
{
	const char *brokers;
	const char *db_path;
	const char *prefix;
	const char *serve;
	const char *metrics;
	IndexTable *tables;
	int			ntables;
	char	  **kafka_conf;		/* key=value pairs of -X */
	int			nkafka_conf;
	SkipPoint  *skips;
	int			nskips;
	int			batch;
	int			v;
	volatile sig_atomic_t *stop;	/* set by SIGTERM/SIGINT */
} RunOpts;

/* index_run.c: run the consumer until *o->stop or an error; the exit status. */
int			index_run(const RunOpts *o);

/* index_db.c */

/* "schema.table" -> "\"schema.table\"" for SQL (sqlite3_mprintf; sqlite3_free it). */
char	   *idx_quote(const char *name);

/*
 * Open (create) the index database in WAL mode; readonly for search.  NULL
 * with err filled.
 */
sqlite3    *idx_open(const char *path, bool readonly, char *err, size_t errlen);

/*
 * Create the bookkeeping tables and, for each table, its rows and FTS5
 * tables; check that the database was built from the same topics; rebuild an
 * FTS5 index whose column list changed; prepare the statements.  0, or -1
 * with err filled.
 */
int			idx_setup(sqlite3 *db, IndexTable *tables, int ntables, char *err, size_t errlen);

/* Free the prepared statements of the tables. */
void		idx_finish(IndexTable *tables, int ntables);

/* The stored next offset of (topic, partition), or -1 when none. -2 on error. */
int64_t		idx_stored_offset(sqlite3 *db, const char *topic, int32_t partition);

/* Store next_offset for (topic, partition) (inside the caller's transaction). 0 or -1. */
int			idx_store_offset(sqlite3 *db, const char *topic, int32_t partition, int64_t next);

/* Run one SQL statement without results. 0, or -1 with err filled. */
int			idx_exec(sqlite3 *db, const char *sql, char *err, size_t errlen);

/*
 * Apply one message of t's topic (inside the caller's transaction): value
 * NULL is a tombstone (delete key); else the relay's JSON event: c/u/r upsert
 * the row (unless at or before the last truncate), d deletes, t deletes every
 * row older than it.  pos comes from the headers (commit_lsn, event_id); when
 * unknown it is read from the value.  Returns 0 applied, 1 skipped (older
 * than a truncate), -1 a bad record (err says why; nothing was changed by
 * it), -2 an SQLite error.
 */
int			idx_apply(sqlite3 *db, IndexTable *t, const char *key, size_t keylen,
					  const char *value, size_t vlen, IndexPos pos,
					  char *err, size_t errlen);

/*
 * Search the FTS5 tables (only table's when not NULL) for query; up to limit
 * hits, best first, into *hits (malloc'd; idx_free_hits).  Returns the count,
 * or -1 with err filled (a bad query, an unknown table).
 */
int			idx_search(sqlite3 *db, const char *table, const char *query, int limit,
					   IndexHit **hits, char *err, size_t errlen);
void		idx_free_hits(IndexHit *hits, int n);

/* The hits as the JSON object {"query":..., "results":[...]}. */
json_t	   *idx_hits_json(const char *query, const IndexHit *hits, int n);

/* index_http.c: the handler for http_start (arg: IndexHttpArg). */
void		index_http_handler(void *arg, const char *path, void *request, HttpReply *reply);

#endif
