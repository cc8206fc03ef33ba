/*
 * ring.c: in-flight transactions in commit order (see ring.h).
 *
 * A growable circular buffer.  The entry at position i (from the head) has
 * id first_id + i, so a delivery report finds its entry in O(1).
 */
#include "ring.h"

#include <stdlib.h>
#include <string.h>

typedef struct RingEntry
{
	uint64_t	pending;		/* messages produced, not yet reported */
	uint64_t	end_lsn;		/* valid when closed */
	bool		closed;
	bool		failed;
} RingEntry;

struct TxnRing
{
	RingEntry  *slots;
	size_t		cap;			/* power of two */
	size_t		head;			/* slot index of the oldest entry */
	size_t		count;
	txn_id		first_id;		/* id of the entry at head */
	uint64_t	pending;		/* sum over entries */
};

TxnRing *
ring_new(void)
{
	TxnRing    *r = calloc(1, sizeof(TxnRing));

	if (r == NULL)
		return NULL;
	r->cap = 64;
	r->slots = calloc(r->cap, sizeof(RingEntry));
	if (r->slots == NULL)
	{
		free(r);
		return NULL;
	}
	r->first_id = 1;
	return r;
}

void
ring_free(TxnRing *r)
{
	if (r == NULL)
		return;
	free(r->slots);
	free(r);
}

static RingEntry *
entry(const TxnRing *r, txn_id id)
{
	if (id < r->first_id || id - r->first_id >= r->count)
		return NULL;
	return &r->slots[(r->head + (size_t) (id - r->first_id)) & (r->cap - 1)];
}

static bool
grow(TxnRing *r)
{
	size_t		ncap = r->cap * 2;
	RingEntry  *n = calloc(ncap, sizeof(RingEntry));

	if (n == NULL)
		return false;
	for (size_t i = 0; i < r->count; i++)
		n[i] = r->slots[(r->head + i) & (r->cap - 1)];
	free(r->slots);
	r->slots = n;
	r->cap = ncap;
	r->head = 0;
	return true;
}

txn_id
ring_begin(TxnRing *r)
{
	RingEntry  *e;

	if (r->count == r->cap && !grow(r))
		return 0;
	e = &r->slots[(r->head + r->count) & (r->cap - 1)];
	memset(e, 0, sizeof(*e));
	r->count++;
	return r->first_id + r->count - 1;
}

bool
ring_add(TxnRing *r, txn_id id)
{
	RingEntry  *e = entry(r, id);

	if (e == NULL)
		return false;
	e->pending++;
	r->pending++;
	return true;
}

bool
ring_delivered(TxnRing *r, txn_id id, bool ok)
{
	RingEntry  *e = entry(r, id);

	if (e == NULL || e->pending == 0)
		return false;
	e->pending--;
	r->pending--;
	if (!ok)
		e->failed = true;
	return true;
}

bool
ring_commit(TxnRing *r, txn_id id, uint64_t end_lsn)
{
	RingEntry  *e = entry(r, id);

	if (e == NULL)
		return false;
	e->closed = true;
	e->end_lsn = end_lsn;
	return true;
}

bool
ring_retire(TxnRing *r, uint64_t *lsn)
{
	bool		any = false;

	while (r->count > 0)
	{
		RingEntry  *e = &r->slots[r->head];

		if (!e->closed || e->pending > 0 || e->failed)
			break;
		*lsn = e->end_lsn;
		any = true;
		r->head = (r->head + 1) & (r->cap - 1);
		r->count--;
		r->first_id++;
	}
	return any;
}

bool
ring_failed(const TxnRing *r)
{
	for (size_t i = 0; i < r->count; i++)
		if (r->slots[(r->head + i) & (r->cap - 1)].failed)
			return true;
	return false;
}

size_t
ring_count(const TxnRing *r)
{
	return r->count;
}

uint64_t
ring_pending(const TxnRing *r)
{
	return r->pending;
}

void
ring_reset(TxnRing *r)
{
	r->first_id += r->count;
	r->head = 0;
	r->count = 0;
	r->pending = 0;
}
