/*
 * broker.h: a Kafka-protocol test broker (librdkafka's mock cluster).
 *
 * The broker speaks the real Kafka wire protocol on real loopback TCP
 * ports, keeps its data in memory only, and exists for tests, benchmarks
 * and the demo: the relay's `-b embedded` and the `cdc-relay broker`
 * subcommand. Production users point the relay at a real Kafka cluster.
 *
 * Limits of librdkafka 2.0.2's mock cluster that users of this module see:
 *  - Brokers bind ephemeral loopback ports; there is no way to choose them.
 *  - Topics auto-created by clients (Metadata requests) always get 4
 *    partitions; the count is fixed inside librdkafka.  Create topics
 *    explicitly (relay_broker_create_topic, the `create` command, or the
 *    subcommand's --topic) when the partition count matters.
 *  - The replication factor is always min(3, brokers); the one asked for
 *    when creating a topic is ignored by the mock.
 *  - Each partition keeps only its newest ~5 MiB of record batches (and at
 *    most 100000 batches); older batches are dropped and the log start
 *    offset moves up.
 *  - A control call made right after another one may take up to about a
 *    second: the mock thread can miss the wake-up for a request queued
 *    while it finishes the previous one, and then serves it at its next
 *    1-second poll timeout.  The call still returns only once the change is
 *    in effect.  relay_broker_stop can take as long.
 */
#ifndef RELAY_BROKER_H
#define RELAY_BROKER_H

#include <stddef.h>
#include <stdio.h>

#define RELAY_BROKER_MAX_BROKERS 16
#define RELAY_BROKER_MAX_PARTITIONS 1024

typedef struct RelayBroker RelayBroker;

/*
 * Start a mock cluster of nbrokers brokers (ids 1..nbrokers).  partitions
 * is the default partition count of topics created through this module
 * (relay_broker_create_topic with partitions <= 0, `create TOPIC` without a
 * count); it does not change the mock's auto-create count (see above).
 * Returns NULL and a message in errbuf on failure.  The broker's threads
 * block all signals.
 */
RelayBroker *relay_broker_start(int nbrokers, int partitions, char *errbuf,
                                size_t errlen);

/* Comma-separated bootstrap list, e.g. "127.0.0.1:37851,127.0.0.1:41233".
 * Valid until relay_broker_stop. */
const char *relay_broker_bootstraps(const RelayBroker *b);

/*
 * Create a topic with the given number of partitions (<= 0: the broker's
 * default).  Returns 0 if it was created, 1 if it already existed (its
 * partition count is left as it is), -1 with a message in errbuf on error.
 */
int relay_broker_create_topic(RelayBroker *b, const char *topic,
                              int partitions, char *errbuf, size_t errlen);

/*
 * Run one line of the control language (see `help`): the reply, one line
 * without a newline, goes to reply and starts with "ok" or "error: ".
 * Returns 0 on success, -1 on error.  Thread-safe.
 */
int relay_broker_command(RelayBroker *b, const char *line, char *reply,
                         size_t replylen);

/* Stop the cluster and free everything.  NULL is allowed. */
void relay_broker_stop(RelayBroker *b);

/* Usage text of the `broker` subcommand, for the program's --help. */
void relay_broker_usage(FILE *out, const char *progname);

/*
 * The `broker` subcommand: argv[0] is "broker", progname the program name
 * used in messages ("cdc-relay").  Prints the bootstrap list as the first
 * line of stdout, reads control commands from stdin (EOF on stdin does not
 * stop it) and runs until SIGTERM or SIGINT.  Returns the exit code: 0
 * after a signal, 1 if the broker cannot start, 2 on bad usage.
 */
int relay_broker_main(int argc, char **argv, const char *progname);

#endif
