/*
 * ring.h: in-flight PostgreSQL transactions, in commit order.
 *
 * The relay may confirm (flush) a WAL position to PostgreSQL only when every
 * Kafka message of every transaction up to it has a successful delivery
 * report.  Each transaction gets an entry when its begin arrives; each
 * produced message adds one to the entry's pending count and its delivery
 * report takes one away.  The entry is closed when the commit arrives (with
 * its end LSN).  Closed entries at the head with nothing pending are
 * retired in order, and the end LSN of the last one retired is what may be
 * confirmed.  A failed delivery marks its entry failed: it is never retired.
 *
 * Pure data structure: no I/O, no Kafka, no PostgreSQL; unit tested in
 * test/unit/relay_units.c.
 */
#ifndef RELAY_RING_H
#define RELAY_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct TxnRing TxnRing;

/* Transaction ids are 1, 2, 3, ...; 0 is never a valid id. */
typedef uint64_t txn_id;

TxnRing    *ring_new(void);
void		ring_free(TxnRing *r);

/* A new open transaction at the tail; returns its id (0 if out of memory). */
txn_id		ring_begin(TxnRing *r);

/* One more message of transaction id is in flight.  False: unknown id. */
bool		ring_add(TxnRing *r, txn_id id);

/*
 * The delivery report of one message of id: ok or failed.  Reports of ids no
 * longer in the ring (after ring_reset) are ignored; returns false then.
 */
bool		ring_delivered(TxnRing *r, txn_id id, bool ok);

/* The transaction's commit arrived: it ends at end_lsn.  False: unknown id. */
bool		ring_commit(TxnRing *r, txn_id id, uint64_t end_lsn);

/*
 * Retire every closed, fully delivered transaction at the head.  Returns true
 * and sets *lsn to the end LSN of the last one retired if any was; false if
 * none could be retired.
 */
bool		ring_retire(TxnRing *r, uint64_t *lsn);

/* True when the head transaction has a failed delivery (never retired). */
bool		ring_failed(const TxnRing *r);

/* Number of transactions in the ring, and messages in flight over all. */
size_t		ring_count(const TxnRing *r);
uint64_t	ring_pending(const TxnRing *r);

/*
 * Forget everything (after the replication connection was lost and the
 * stream will be re-read from the slot).  Ids keep increasing, so late
 * delivery reports of forgotten transactions are recognised and ignored.
 */
void		ring_reset(TxnRing *r);

#endif
