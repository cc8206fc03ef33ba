/*
 * online.h: online snapshots of chosen tables while the relay streams
 * (online.c has the algorithm; README "Online snapshots").
 *
 * The stream (stream.c) calls in at four places: every row event
 * (online_row, to track which keys which transactions touched), every
 * transactional message with a reserved online prefix (online_message: a
 * request starts or queues a job, a watermark emits the chunk it closes),
 * every commit (online_commit) and between bursts (online_poll).  state.c
 * puts online_state_json() into every state record.  Main thread only,
 * except the reader thread online.c starts itself.
 */
#ifndef RELAY_ONLINE_H
#define RELAY_ONLINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

struct Relay;
typedef struct Online Online;

/* Default of --snapshot-chunk-rows. */
#define ONLINE_CHUNK_ROWS_DEFAULT 8192

/*
 * Emit one chunk row into the open transaction (stream.c): key/value as
 * cdc_relay.snapshot_row() renders them, relid the table's oid (text), n the
 * row's number in the job.  0, or -1 when the session must end.
 */
typedef int (*OnlineEmitRow) (void *arg, const char *key, size_t keylen, const char *value,
							  size_t vallen, const char *relid, uint64_t n);

/*
 * Emit a chunk's table shape (cdc_relay.table_schema()'s value) into the open
 * transaction before the chunk's first row (stream.c): relid the table's
 * oid (text), chunk the chunk's number in the job.  0, or -1 when the
 * session must end.
 */
typedef int (*OnlineEmitShape) (void *arg, const char *shape, size_t len, const char *relid,
								uint64_t chunk);

/* The jobs the state record names (r->st_online_json) are resumed. */
Online	   *online_new(struct Relay *r);
void		online_free(Online *o);

/* Is prefix one of the online snapshot prefixes (acted on, never forwarded)? */
bool		online_prefix(const char *prefix);

/*
 * A row event of transaction xid: ident the "schema":S,"table":T bytes of
 * the event, key the plugin's key prefix (old VT new for a key change),
 * unknown when the WAL did not carry the key.  Cheap when no job runs.
 */
void		online_row(Online *o, const char *ident, size_t identlen, const char *key, size_t keylen,
					   uint32_t xid, bool unknown);

/*
 * A transactional message with an online prefix in the open transaction
 * (event: the whole event JSON); skipped: Kafka has the transaction already
 * (checkpoint).  A watermark of the buffered chunk emits the chunk's rows
 * through emit(arg, ...), before the first of them the chunk's shape through
 * emit_shape(arg, ...) unless it is the one this job produced last.  0, or
 * -1 when the session must end.
 */
int			online_message(Online *o, const char *prefix, const char *event, size_t len, bool skipped,
						   OnlineEmitRow emit, OnlineEmitShape emit_shape, void *arg);

/* The open transaction committed at end_lsn. */
void		online_commit(Online *o, uint64_t end_lsn);

/*
 * Between bursts (main thread): what Kafka confirmed (r->ckpt_durable) is
 * delivered progress; finished and failed jobs are closed, the next one
 * started.
 */
void		online_poll(Online *o);

/*
 * The stream goes back to the last checkpoint (a failed delivery, an aborted
 * Kafka transaction, a lost connection): whatever was emitted since is
 * forgotten and read again, after the last chunk delivered.
 */
void		online_rewind(Online *o);

/* online_cmd.c: `cdc-relay snapshot TABLE [--where EXPR]` (argv[0] "snapshot"); the exit status */
int			online_snapshot_main(int argc, char **argv);
void		online_usage(FILE *out);

/* The "online" object of a state record confirming lsn (NULL: nothing to say); a new reference. */
json_t	   *online_state_json(Online *o, uint64_t lsn);

#endif
