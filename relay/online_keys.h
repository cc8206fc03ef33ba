/*
 * online_keys.h: the pure parts of online snapshots (online.c): which
 * transactions a chunk's snapshot sees, and the keys of the job's table the
 * stream saw changed, with the xid of the last transaction that changed each.
 */
#ifndef RELAY_ONLINE_KEYS_H
#define RELAY_ONLINE_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct TrackEntry
{
	struct TrackEntry *next;
	uint32_t	hash;
	uint32_t	xid;
	size_t		keylen;
	char		key[];
} TrackEntry;

typedef struct Tracked
{
	TrackEntry **buckets;
	size_t		nbuckets;
	size_t		count;
} Tracked;

/* A chunk's snapshot, in 32-bit xids (what the plugin's events carry). */
typedef struct Snap
{
	uint32_t	xmin;
	uint32_t	xmax;
	uint32_t   *xip;
	int			nxip;
} Snap;

/*
 * Parse pg_current_snapshot()'s text "xmin:xmax:x1,x2,..." (64-bit xids)
 * into snap (32-bit xids, what the plugin's events carry).  False when
 * malformed.  snap_free() frees what it allocated.
 */
bool		snap_parse(const char *text, Snap *snap);
void		snap_free(Snap *snap);

/*
 * Did snap see transaction xid's effects (it committed before snap was
 * taken)?  Not when xid >= xmax or xid is in xip, compared modulo 2^32 as
 * TransactionIdPrecedes does (a chunk's snapshot and the stream's
 * transactions are never 2^31 xids apart).
 */
bool		snap_sees(const Snap *snap, uint32_t xid);

/* Remember that transaction xid changed the row with these key bytes (the last one wins). */
void		track_put(Tracked *t, const char *key, size_t len, uint32_t xid);

/* The xid that last changed key (false: none tracked). */
bool		track_xid(Tracked *t, const char *key, size_t len, uint32_t *xid);

/* Forget the keys whose transaction snap sees (so does every later snapshot). */
void		track_prune(Tracked *t, const Snap *snap);

/* Forget everything (t is empty and reusable). */
void		track_clear(Tracked *t);

#endif
