/*
 * online_keys.c: the pure parts of online snapshots (online.c): a chunk's
 * snapshot (pg_current_snapshot() in 32-bit xids) and which transactions it
 * sees, and the keys the stream saw changed with the xid that changed them.
 * No I/O; unit tested in test/unit/relay_units.c.
 */
#include "online_keys.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"


static uint32_t
key_hash(const char *key, size_t len)
{
	uint32_t	h = 2166136261u;

	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char) key[i]) * 16777619u;
	return h;
}

static TrackEntry **
track_find(Tracked *t, const char *key, size_t len, uint32_t h)
{
	TrackEntry **p;

	if (t->nbuckets == 0)
		return NULL;
	for (p = &t->buckets[h & (t->nbuckets - 1)]; *p; p = &(*p)->next)
		if ((*p)->hash == h && (*p)->keylen == len && memcmp((*p)->key, key, len) == 0)
			return p;
	return NULL;
}

void
track_put(Tracked *t, const char *key, size_t len, uint32_t xid)
{
	uint32_t	h = key_hash(key, len);
	TrackEntry **p = track_find(t, key, len, h);
	TrackEntry *e;

	if (p)
	{
		(*p)->xid = xid;
		return;
	}
	if (t->count >= t->nbuckets)
	{
		size_t		n = t->nbuckets ? t->nbuckets * 2 : 1024;
		TrackEntry **b = calloc(n, sizeof(TrackEntry *));

		if (b == NULL)
			relay_out_of_memory();
		for (size_t i = 0; i < t->nbuckets; i++)
			for (TrackEntry *x = t->buckets[i], *next; x; x = next)
			{
				next = x->next;
				x->next = b[x->hash & (n - 1)];
				b[x->hash & (n - 1)] = x;
			}
		free(t->buckets);
		t->buckets = b;
		t->nbuckets = n;
	}
	e = malloc(sizeof(TrackEntry) + len);
	if (e == NULL)
		relay_out_of_memory();
	e->hash = h;
	e->xid = xid;
	e->keylen = len;
	memcpy(e->key, key, len);
	e->next = t->buckets[h & (t->nbuckets - 1)];
	t->buckets[h & (t->nbuckets - 1)] = e;
	t->count++;
}

void
track_clear(Tracked *t)
{
	for (size_t i = 0; i < t->nbuckets; i++)
		for (TrackEntry *x = t->buckets[i], *next; x; x = next)
		{
			next = x->next;
			free(x);
		}
	free(t->buckets);
	memset(t, 0, sizeof(*t));
}


/* TransactionIdPrecedes for normal xids: a before b, modulo 2^32. */
static inline bool
xid_precedes(uint32_t a, uint32_t b)
{
	return (int32_t) (a - b) < 0;
}

/* Did snap see transaction xid's effects (committed before it was taken)? */
bool
snap_sees(const Snap *snap, uint32_t xid)
{
	if (xid_precedes(xid, snap->xmin))
		return true;
	if (!xid_precedes(xid, snap->xmax))
		return false;
	for (int i = 0; i < snap->nxip; i++)
		if (snap->xip[i] == xid)
			return false;
	return true;
}

/* Parse pg_current_snapshot()'s text "xmin:xmax:x1,x2,...".  False when malformed. */
bool
snap_parse(const char *text, Snap *snap)
{
	char	   *end;
	unsigned long long v;
	const char *p = text;

	memset(snap, 0, sizeof(*snap));
	v = strtoull(p, &end, 10);
	if (*end != ':')
		return false;
	snap->xmin = (uint32_t) v;
	p = end + 1;
	v = strtoull(p, &end, 10);
	if (*end != ':')
		return false;
	snap->xmax = (uint32_t) v;
	p = end + 1;
	while (*p)
	{
		uint32_t   *x;

		v = strtoull(p, &end, 10);
		if (end == p)
			return false;
		x = realloc(snap->xip, sizeof(uint32_t) * (size_t) (snap->nxip + 1));
		if (x == NULL)
			relay_out_of_memory();
		snap->xip = x;
		snap->xip[snap->nxip++] = (uint32_t) v;
		p = *end == ',' ? end + 1 : end;
	}
	return true;
}

bool
track_xid(Tracked *t, const char *key, size_t len, uint32_t *xid)
{
	TrackEntry **p = track_find(t, key, len, key_hash(key, len));

	if (p == NULL)
		return false;
	*xid = (*p)->xid;
	return true;
}

void
track_prune(Tracked *t, const Snap *snap)
{
	for (size_t b = 0; b < t->nbuckets; b++)
		for (TrackEntry **p = &t->buckets[b]; *p;)
		{
			if (snap_sees(snap, (*p)->xid))
			{
				TrackEntry *dead = *p;

				*p = dead->next;
				free(dead);
				t->count--;
			}
			else
				p = &(*p)->next;
		}
}

void
snap_free(Snap *snap)
{
	free(snap->xip);
	memset(snap, 0, sizeof(*snap));
}
