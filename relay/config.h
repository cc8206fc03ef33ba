/*
 * config.h: the relay's settings, from the command line and a config file.
 */
#ifndef RELAY_CONFIG_H
#define RELAY_CONFIG_H

#include <stdbool.h>
#include <stdio.h>
#include <stddef.h>
#include <stdint.h>

typedef enum SnapshotMode
{
	SNAPSHOT_INITIAL,			/* when the slot is new or the last one did not finish */
	SNAPSHOT_NEVER,
	SNAPSHOT_ALWAYS,
	SNAPSHOT_INITIAL_ONLY		/* as initial, then exit instead of streaming */
} SnapshotMode;

/* --delivery's default (README "Delivery guarantees" says why) */
#define DELIVERY_DEFAULT_EXACTLY_ONCE false
#define DELIVERY_DEFAULT_NAME "at-least-once"

typedef struct KafkaProp
{
	char	   *key;
	char	   *value;
} KafkaProp;

/* A config of a topic the relay creates (config_topic_settings). */
typedef struct TopicSetting
{
	const char *name;
	const char *value;
} TopicSetting;

typedef struct RelayConfig
{
	char	   *conninfo;		/* -d: libpq connection string or URI */
	char	   *brokers;		/* -b: bootstrap list, or "embedded" */
	char	   *slot;
	char	   *topic_prefix;	/* required: never NULL after a successful parse */
	char	   *tables;			/* plugin include-tables, or NULL */
	char	   *exclude_tables;
	char	   *publication;
	char	   *state_topic;	/* NULL: <prefix>.__state */
	SnapshotMode snapshot;
	int			snapshot_jobs;
	int			snapshot_chunk_rows;	/* online snapshots (online.c) */
	bool		tombstones;
	bool		exactly_once;	/* --delivery */
	char	   *transactional_id;	/* never NULL after a successful parse */
	int			txn_interval_ms;
	int			txn_max_messages;
	bool		txn_records;	/* write <prefix>.transactions */
	bool		partition_root;
	bool		origin_none;	/* --origin none: plugin option origin=none */
	bool		emit_refused_skip;	/* --emit-refused skip (else stop) */
	KafkaProp  *kafka;			/* -X and kafka.* settings, in order */
	int			nkafka;
	uint64_t	endpos;			/* 0: none */
	int			status_interval_ms;
	int			heartbeat_interval_ms;	/* 0: off */
	int			verbosity;		/* log.h levels: 2 = info */
	int			embedded_brokers;	/* -b embedded: broker count */
	char	   *metrics_addr;	/* --metrics HOST:PORT, or NULL: not served */

	/* topics the relay creates (admin.c) */
	int			topic_partitions;	/* -1: the broker's default */
	int			topic_replication_factor;	/* -1: the broker's default */
	KafkaProp  *topic_configs;	/* --topic-config name=value, in order */
	int			ntopic_configs;
} RelayConfig;

/*
 * Parse "run" arguments (argv[0] is "run").  Returns 0 when the relay should
 * run, 1 when --help was printed (exit 0), 2 on bad usage (the reason is in
 * err, one line, without the "cdc-relay: " the caller puts before it).
 * -d, -b and --topic-prefix are required (command line or config file);
 * Kafka properties config_kafka_refusal() refuses are bad usage, and so is a
 * connection string libpq cannot parse ("invalid connection string: <libpq's
 * reason, quoted parts replaced by "...">", see redact.h), so a successful
 * parse guarantees PQconninfoParse(cfg->conninfo) succeeds.  The config
 * file's only output is one WARNING log line (log.h format, on stderr) when
 * it holds a password (in the conninfo or a secret kafka.* key) and is
 * readable by others (mode & 077).
 */
int			config_parse_run(int argc, char **argv, RelayConfig *cfg,
							 char *err, size_t errlen);
void		config_free(RelayConfig *cfg);
void		config_usage(FILE *out);

/* "X/Y" hex LSN; false if malformed. */
bool		parse_lsn(const char *s, uint64_t *lsn);

/*
 * NULL when the librdkafka property key=value (as for -X, without "kafka.")
 * keeps the relay's delivery guarantee; else why not, as the end of a
 * sentence that starts with the property ("would weaken the delivery
 * guarantee: ...; remove the setting").  Refused: acks and
 * request.required.acks other than all or -1, enable.idempotence other than
 * true (these two: "would weaken the delivery guarantee"), partitioner=random,
 * delivery.report.only.error=true; also with librdkafka's "topic." prefix.
 * librdkafka itself refuses, with idempotence on, max.in.flight > 5,
 * retries = 0 and queuing.strategy=lifo.
 */
const char *config_kafka_refusal(const char *key, const char *value);

/*
 * The configs a topic the relay creates gets: cleanup.policy (compact when
 * compact, else delete), then, for a table topic, every --topic-config (the
 * config file's, then the command line's).  A name that comes again replaces
 * the earlier value in place, so each name appears once and --topic-config
 * cleanup.policy=... overrides the relay's choice.  out must have room for
 * 1 + cfg->ntopic_configs settings; they point into cfg or static strings.
 * Returns how many were written.
 */
int			config_topic_settings(const RelayConfig *cfg, bool table_topic, bool compact,
								  TopicSetting *out);

/* True for librdkafka/relay keys whose values must never be logged. */
bool		config_key_is_secret(const char *key);

#endif
