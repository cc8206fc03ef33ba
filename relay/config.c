/*
 * config.c: command line and config file of `cdc-relay run`.
 *
 * The config file holds "key = value" lines with the long option names
 * ("slot = orders", "snapshot-jobs = 4") and librdkafka properties with a
 * "kafka." prefix ("kafka.compression.type = lz4").  A "#" outside quotes
 * starts a comment; a UTF-8 byte order mark at the start is skipped; a value
 * wholly in '...' or "..." loses the quotes (\\ and a backslash before the
 * quote character stand for that character).  Options on the command line win
 * over the file.  Any error is one line in err and exit code 2; values of
 * secret keys are never repeated in it.  Kafka properties that would weaken
 * the delivery guarantee are refused (config_kafka_refusal).
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <libpq-fe.h>

#include "http.h"
#include "log.h"
#include "redact.h"
#include "topic.h"

enum
{
	OPT_TOPIC_PREFIX = 256,
	OPT_TABLES,
	OPT_EXCLUDE_TABLES,
	OPT_PUBLICATION,
	OPT_SNAPSHOT,
	OPT_SNAPSHOT_JOBS,
	OPT_SNAPSHOT_CHUNK_ROWS,
	OPT_NO_TOMBSTONES,
	OPT_PARTITION_ROOT,
	OPT_ENDPOS,
	OPT_STATUS_INTERVAL,
	OPT_HEARTBEAT_INTERVAL,
	OPT_STATE_TOPIC,
	OPT_EMBEDDED_BROKERS,
	OPT_TOPIC_PARTITIONS,
	OPT_TOPIC_REPLICATION_FACTOR,
	OPT_TOPIC_CONFIG,
	OPT_DELIVERY,
	OPT_TRANSACTIONAL_ID,
	OPT_TXN_INTERVAL,
	OPT_TXN_MAX_MESSAGES,
	OPT_NO_TRANSACTION_RECORDS,
	OPT_METRICS,
	OPT_ORIGIN,
	OPT_EMIT_REFUSED
};

static const struct option long_options[] = {
	{"dbname", required_argument, NULL, 'd'},
	{"brokers", required_argument, NULL, 'b'},
	{"slot", required_argument, NULL, 'S'},
	{"config", required_argument, NULL, 'c'},
	{"topic-prefix", required_argument, NULL, OPT_TOPIC_PREFIX},
	{"tables", required_argument, NULL, OPT_TABLES},
	{"exclude-tables", required_argument, NULL, OPT_EXCLUDE_TABLES},
	{"publication", required_argument, NULL, OPT_PUBLICATION},
	{"snapshot", required_argument, NULL, OPT_SNAPSHOT},
	{"snapshot-jobs", required_argument, NULL, OPT_SNAPSHOT_JOBS},
	{"snapshot-chunk-rows", required_argument, NULL, OPT_SNAPSHOT_CHUNK_ROWS},
	{"no-tombstones", no_argument, NULL, OPT_NO_TOMBSTONES},
	{"partition-root", no_argument, NULL, OPT_PARTITION_ROOT},
	{"endpos", required_argument, NULL, OPT_ENDPOS},
	{"status-interval", required_argument, NULL, OPT_STATUS_INTERVAL},
	{"heartbeat-interval", required_argument, NULL, OPT_HEARTBEAT_INTERVAL},
	{"state-topic", required_argument, NULL, OPT_STATE_TOPIC},
	{"embedded-brokers", required_argument, NULL, OPT_EMBEDDED_BROKERS},
	{"topic-partitions", required_argument, NULL, OPT_TOPIC_PARTITIONS},
	{"topic-replication-factor", required_argument, NULL, OPT_TOPIC_REPLICATION_FACTOR},
	{"topic-config", required_argument, NULL, OPT_TOPIC_CONFIG},
	{"delivery", required_argument, NULL, OPT_DELIVERY},
	{"transactional-id", required_argument, NULL, OPT_TRANSACTIONAL_ID},
	{"txn-interval-ms", required_argument, NULL, OPT_TXN_INTERVAL},
	{"txn-max-messages", required_argument, NULL, OPT_TXN_MAX_MESSAGES},
	{"no-transaction-records", no_argument, NULL, OPT_NO_TRANSACTION_RECORDS},
	{"metrics", required_argument, NULL, OPT_METRICS},
	{"origin", required_argument, NULL, OPT_ORIGIN},
	{"emit-refused", required_argument, NULL, OPT_EMIT_REFUSED},
	{"verbose", no_argument, NULL, 'v'},
	{"quiet", no_argument, NULL, 'q'},
	{"help", no_argument, NULL, 'h'},
	{NULL, 0, NULL, 0}
};

void
config_usage(FILE *out)
{
	fputs(
		  "cdc-relay streams PostgreSQL changes into Kafka: a consistent initial snapshot,\n"
		  "then every committed change, in order, from a logical replication slot.\n"
		  "\n"
		  "Usage:\n"
		  "  cdc-relay run -d CONNINFO -b BROKERS --topic-prefix PREFIX [OPTION]...\n"
		  "  cdc-relay broker [--brokers N] [--partitions N] [--topic NAME]...\n"
		  "  cdc-relay --help | --version\n"
		  "\n"
		  "Options of run:\n"
		  "  -d, --dbname=CONNINFO      database to capture (libpq connection string or URI)\n"
		  "  -b, --brokers=LIST         Kafka bootstrap servers (host:port,...), or \"embedded\"\n"
		  "                             for a Kafka-protocol test broker inside the relay\n"
		  "  -S, --slot=NAME            replication slot (default: cdc_relay)\n"
		  "      --topic-prefix=PREFIX  required: topics are PREFIX.<schema>.<table>; give each\n"
		  "                             database its own prefix\n"
		  "      --tables=PATTERNS      capture only these tables (schema.table patterns, * and ?)\n"
		  "      --exclude-tables=PATTERNS  do not capture these tables\n"
		  "      --publication=NAMES    capture only the tables of these publications\n"
		  "      --partition-root       name a partition's rows after its partitioned table\n"
		  "      --origin=MODE          any (default) or none: leave out transactions replayed\n"
		  "                             with a replication origin (logical replication)\n"
		  "      --emit-refused=MODE    a domain event (cdc_relay.emit) to a topic of the\n"
		  "                             relay's own: stop (default) or skip (drop, logged)\n"
		  "      --snapshot=MODE        initial (default: when the slot is new or the last\n"
		  "                             snapshot did not finish), never, always, initial-only\n"
		  "      --snapshot-jobs=N      parallel connections reading the snapshot (default: 2)\n"
		  "      --snapshot-chunk-rows=N  rows per chunk of an online snapshot (default: 8192)\n"
		  "      --no-tombstones        do not follow a delete with a tombstone\n"
		  "      --delivery=MODE        exactly-once (Kafka transactions, with the position\n"
		  "                             checkpointed in them) or at-least-once (default: "
		  DELIVERY_DEFAULT_NAME ")\n"
		  "      --transactional-id=ID  exactly-once: the producer's transactional.id\n"
		  "                             (default: cdc-relay.PREFIX.SLOT)\n"
		  "      --txn-interval-ms=N    exactly-once: commit a Kafka transaction at the first\n"
		  "                             PostgreSQL commit after N ms (default: 20; 10 N\n"
		  "                             while the relay is behind)\n"
		  "      --txn-max-messages=N   ... or after N messages (default: 100000); a larger\n"
		  "                             PostgreSQL transaction is split\n"
		  "      --no-transaction-records  do not write PREFIX.transactions (begin and end\n"
		  "                             record of each PostgreSQL transaction)\n"
		  "  -X, KEY=VALUE              librdkafka producer property (repeatable); acks other\n"
		  "                             than all, enable.idempotence=false and a finite\n"
		  "                             message.timeout.ms are refused\n"
		  "  -c, --config=FILE          \"key = value\" lines: long option names, and\n"
		  "                             kafka.<property> for librdkafka properties;\n"
		  "                             # starts a comment (outside quotes)\n"
		  "      --state-topic=TOPIC    where snapshot completion is recorded\n"
		  "                             (default: PREFIX.__state)\n"
		  "      --topic-partitions=N   partitions of the topics the relay creates\n"
		  "                             (default: -1, the brokers' num.partitions)\n"
		  "      --topic-replication-factor=N  replication factor of the topics the relay\n"
		  "                             creates (default: -1, the brokers' default)\n"
		  "      --topic-config=NAME=VALUE  a Kafka topic config for the table topics the\n"
		  "                             relay creates (repeatable; cleanup.policy=... here\n"
		  "                             overrides the relay's compact/delete choice)\n"
		  "      --endpos=LSN           stop once the stream reaches LSN (X/X)\n"
		  "      --status-interval=SECS status updates to the server (default: 10)\n"
		  "      --heartbeat-interval=SECS  heartbeat logical message when idle, 0 = off\n"
		  "                             (default: 10)\n"
		  "      --metrics=ADDR         serve Prometheus metrics on http://ADDR/metrics\n"
		  "                             (HOST:PORT, :PORT or PORT; port 0: any free port)\n"
		  "  -v, --verbose              more log output (repeat for more)\n"
		  "  -q, --quiet                warnings and errors only\n"
		  "  -h, --help                 this help, then exit\n"
		  "\n"
		  "Exit status: 0 on a clean stop (SIGTERM, SIGINT, --endpos reached), 1 on a\n"
		  "fatal error, 2 on bad usage.\n", out);
}

static void
set_str(char **field, const char *value)
{
	free(*field);
	*field = relay_strdup(value);
}

bool
config_key_is_secret(const char *key)
{
	return strstr(key, "password") != NULL || strstr(key, "secret") != NULL ||
		strstr(key, "sasl.oauthbearer.config") != NULL ||
		strstr(key, "ssl.key.pem") != NULL;
}

bool
parse_lsn(const char *s, uint64_t *lsn)
{
	unsigned int hi,
				lo;
	int			n = 0;

	if (sscanf(s, "%X/%X%n", &hi, &lo, &n) != 2 || s[n] != '\0')
		return false;
	*lsn = ((uint64_t) hi << 32) | lo;
	return true;
}

static bool
parse_int(const char *s, long min, long max, int *out)
{
	char	   *end;
	long		v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		return false;
	*out = (int) v;
	return true;
}

/* seconds, possibly fractional, to milliseconds */
static bool
parse_seconds(const char *s, double min, double max, int *ms)
{
	char	   *end;
	double		v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !(v >= min && v <= max))
		return false;
	*ms = (int) (v * 1000.0 + 0.5);
	return true;
}

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list		ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return 2;
}

static void
add_kafka(RelayConfig *cfg, const char *key, const char *value)
{
	KafkaProp  *n = realloc(cfg->kafka, sizeof(KafkaProp) * (size_t) (cfg->nkafka + 1));

	if (n == NULL)
	{
		relay_out_of_memory();
	}
	cfg->kafka = n;
	cfg->kafka[cfg->nkafka].key = relay_strdup(key);
	cfg->kafka[cfg->nkafka].value = relay_strdup(value);
	cfg->nkafka++;
}

/* value, without surrounding white space, equals word (case-insensitively) */
static bool
value_is(const char *value, const char *word)
{
	size_t		n = strlen(word);

	while (isspace((unsigned char) *value))
		value++;
	if (strncasecmp(value, word, n) != 0)
		return false;
	for (value += n; *value; value++)
		if (!isspace((unsigned char) *value))
			return false;
	return true;
}

/* librdkafka's reading of a boolean: true, t or 1 (case-insensitively) */
static bool
value_is_true(const char *value)
{
	return value_is(value, "true") || value_is(value, "t") || value_is(value, "1");
}

#define WEAKENS "would weaken the delivery guarantee: "
#define ACKS_REASON \
	WEAKENS "cdc-relay confirms a position to PostgreSQL only after Kafka acknowledged every " \
	"message before it, which needs acks=all (-1) with enable.idempotence=true (they also keep " \
	"each key's changes in order and without duplicates from retries); remove the setting"

const char *
config_kafka_refusal(const char *key, const char *value)
{
	/* librdkafka takes topic properties with a "topic." prefix too */
	if (strncmp(key, "topic.", 6) == 0)
		key += 6;
	if (strcmp(key, "acks") == 0 || strcmp(key, "request.required.acks") == 0)
		return value_is(value, "all") || value_is(value, "-1") ? NULL : ACKS_REASON;
	if (strcmp(key, "enable.idempotence") == 0)
		return value_is_true(value) ? NULL : ACKS_REASON;
	if (strcmp(key, "partitioner") == 0 && value_is(value, "random"))
		return WEAKENS "a key's changes would be spread over partitions and so read out of "
			"order; use a key-hashing partitioner (the relay's default is murmur2_random)";
	if ((strcmp(key, "message.timeout.ms") == 0 || strcmp(key, "delivery.timeout.ms") == 0) &&
		!value_is(value, "0"))
		return WEAKENS "a delivery that times out can leave a gap that later messages of the "
			"same partition fill, and the replay from the slot then puts a key's older changes "
			"after newer ones (a consumer that deduplicates would keep a stale row); cdc-relay "
			"waits for Kafka instead (message.timeout.ms=0) and reads no more from PostgreSQL "
			"until Kafka takes messages again; remove the setting";
	if (strcmp(key, "transactional.id") == 0)
		return "is set by cdc-relay (from the slot, for --delivery exactly-once); use --transactional-id "
			"instead";
	if (strcmp(key, "delivery.report.only.error") == 0 && value_is_true(value))
		return "would keep cdc-relay from ever confirming a position to PostgreSQL (the slot "
			"would hold WAL for good): it confirms a position only when delivery reports say "
			"every message before it arrived, and this turns off the reports of successful "
			"deliveries; remove the setting";
	return NULL;
}

/*
 * "name=value" of --topic-config: a Kafka topic config name (letters, digits,
 * '.', '_', '-') and a value without surrounding white space.  Whether Kafka
 * knows the name and takes the value, the broker says when the relay
 * creates a topic.
 */
static int
add_topic_config(RelayConfig *cfg, const char *pair, char *err, size_t errlen)
{
	const char *eq = strchr(pair, '=');
	size_t		n = eq ? (size_t) (eq - pair) : 0;
	char		name[256];
	KafkaProp  *p;

	if (eq == NULL || n == 0 || n >= sizeof(name) || eq[1] == '\0' ||
		strspn(pair, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != n)
		return fail(err, errlen, "--topic-config expects NAME=VALUE, a Kafka topic config such as "
					"retention.ms=604800000, got \"%.100s\"", pair);
	memcpy(name, pair, n);
	name[n] = '\0';
	p = realloc(cfg->topic_configs, sizeof(KafkaProp) * (size_t) (cfg->ntopic_configs + 1));
	if (p == NULL)
	{
		relay_out_of_memory();
	}
	cfg->topic_configs = p;
	p[cfg->ntopic_configs].key = relay_strdup(name);
	p[cfg->ntopic_configs].value = relay_strdup(eq + 1);
	cfg->ntopic_configs++;
	return 0;
}

int
config_topic_settings(const RelayConfig *cfg, bool table_topic, bool compact, TopicSetting *out)
{
	int			n = 0;

	out[n].name = "cleanup.policy";
	out[n++].value = compact ? "compact" : "delete";
	for (int i = 0; table_topic && i < cfg->ntopic_configs; i++)
	{
		const KafkaProp *c = &cfg->topic_configs[i];
		int			j = 0;

		while (j < n && strcmp(out[j].name, c->key) != 0)
			j++;
		out[j].name = c->key;
		out[j].value = c->value;
		if (j == n)
			n++;
	}
	return n;
}

/* "key=value" of -X */
static int
apply_kafka_pair(RelayConfig *cfg, const char *pair, char *err, size_t errlen)
{
	const char *eq = strchr(pair, '=');
	char		key[256];
	const char *refusal;

	if (eq == NULL || eq == pair || (size_t) (eq - pair) >= sizeof(key))
		return fail(err, errlen, "-X expects KEY=VALUE (a librdkafka property), got \"%.60s\"",
					config_key_is_secret(pair) ? "..." : pair);
	memcpy(key, pair, (size_t) (eq - pair));
	key[eq - pair] = '\0';
	if ((refusal = config_kafka_refusal(key, eq + 1)) != NULL)
		return fail(err, errlen, "-X %s=%s %s", key, eq + 1, refusal);
	add_kafka(cfg, key, eq + 1);
	return 0;
}

/*
 * Apply one setting by its option code.  Used for the command line and for
 * config file keys alike, so both accept exactly the same values.
 */
static int
apply(RelayConfig *cfg, int code, const char *name, const char *value,
	  char *err, size_t errlen)
{
	switch (code)
	{
		case 'd':
			set_str(&cfg->conninfo, value);
			break;
		case 'b':
			if (value[0] == '\0')
				return fail(err, errlen, "--brokers must not be empty");
			set_str(&cfg->brokers, value);
			break;
		case 'S':
			if (value[0] == '\0' || strlen(value) > 63)
				return fail(err, errlen, "--slot must be 1 to 63 characters");
			for (const char *p = value; *p; p++)
				if (!(islower((unsigned char) *p) || isdigit((unsigned char) *p) || *p == '_'))
					return fail(err, errlen,
								"--slot \"%s\": slot names may contain only lower case letters, digits and underscores",
								value);
			set_str(&cfg->slot, value);
			break;
		case OPT_TOPIC_PREFIX:
			if (!topic_prefix_valid(value))
				return fail(err, errlen,
							"--topic-prefix \"%s\": use 1 to 100 characters of a-z, A-Z, 0-9, '.', '_' and '-'",
							value);
			set_str(&cfg->topic_prefix, value);
			break;
		case OPT_TABLES:
			set_str(&cfg->tables, value);
			break;
		case OPT_EXCLUDE_TABLES:
			set_str(&cfg->exclude_tables, value);
			break;
		case OPT_PUBLICATION:
			set_str(&cfg->publication, value);
			break;
		case OPT_STATE_TOPIC:
			if (value[0] == '\0' || strlen(value) > TOPIC_MAX_LEN ||
				strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != strlen(value))
				return fail(err, errlen, "--state-topic \"%s\" is not a valid Kafka topic name", value);
			set_str(&cfg->state_topic, value);
			break;
		case OPT_SNAPSHOT:
			if (strcmp(value, "initial") == 0)
				cfg->snapshot = SNAPSHOT_INITIAL;
			else if (strcmp(value, "never") == 0)
				cfg->snapshot = SNAPSHOT_NEVER;
			else if (strcmp(value, "always") == 0)
				cfg->snapshot = SNAPSHOT_ALWAYS;
			else if (strcmp(value, "initial-only") == 0)
				cfg->snapshot = SNAPSHOT_INITIAL_ONLY;
			else
				return fail(err, errlen,
							"--snapshot \"%s\": valid values are initial, never, always, initial-only",
							value);
			break;
		case OPT_SNAPSHOT_JOBS:
			if (!parse_int(value, 1, 64, &cfg->snapshot_jobs))
				return fail(err, errlen, "--snapshot-jobs \"%s\": expected an integer from 1 to 64", value);
			break;
		case OPT_SNAPSHOT_CHUNK_ROWS:
			if (!parse_int(value, 1, 1000000, &cfg->snapshot_chunk_rows))
				return fail(err, errlen, "--snapshot-chunk-rows \"%s\": expected an integer from 1 to 1000000",
							value);
			break;
		case OPT_EMBEDDED_BROKERS:
			if (!parse_int(value, 1, 16, &cfg->embedded_brokers))
				return fail(err, errlen, "--embedded-brokers \"%s\": expected an integer from 1 to 16", value);
			break;
		case OPT_TOPIC_PARTITIONS:
			if (!parse_int(value, -1, 1000000, &cfg->topic_partitions) || cfg->topic_partitions == 0)
				return fail(err, errlen, "--topic-partitions \"%s\": expected -1 (the brokers' default) "
							"or an integer from 1 to 1000000", value);
			break;
		case OPT_TOPIC_REPLICATION_FACTOR:
			if (!parse_int(value, -1, 32767, &cfg->topic_replication_factor) ||
				cfg->topic_replication_factor == 0)
				return fail(err, errlen, "--topic-replication-factor \"%s\": expected -1 (the brokers' "
							"default) or an integer from 1 to 32767", value);
			break;
		case OPT_TOPIC_CONFIG:
			return add_topic_config(cfg, value, err, errlen);
		case OPT_DELIVERY:
			if (strcmp(value, "exactly-once") == 0)
				cfg->exactly_once = true;
			else if (strcmp(value, "at-least-once") == 0)
				cfg->exactly_once = false;
			else
				return fail(err, errlen, "--delivery \"%s\": valid values are exactly-once, at-least-once",
							value);
			break;
		case OPT_ORIGIN:
			if (strcmp(value, "any") == 0)
				cfg->origin_none = false;
			else if (strcmp(value, "none") == 0)
				cfg->origin_none = true;
			else
				return fail(err, errlen, "--origin \"%s\": valid values are any, none", value);
			break;
		case OPT_EMIT_REFUSED:
			if (strcmp(value, "stop") == 0)
				cfg->emit_refused_skip = false;
			else if (strcmp(value, "skip") == 0)
				cfg->emit_refused_skip = true;
			else
				return fail(err, errlen, "--emit-refused \"%s\": valid values are stop, skip", value);
			break;
		case OPT_TRANSACTIONAL_ID:
			if (value[0] == '\0' || strlen(value) > 200)
				return fail(err, errlen, "--transactional-id: expected 1 to 200 characters");
			set_str(&cfg->transactional_id, value);
			break;
		case OPT_TXN_INTERVAL:
			if (!parse_int(value, 1, 600000, &cfg->txn_interval_ms))
				return fail(err, errlen, "--txn-interval-ms \"%s\": expected an integer from 1 to 600000", value);
			break;
		case OPT_TXN_MAX_MESSAGES:
			if (!parse_int(value, 100, 100000000, &cfg->txn_max_messages))
				return fail(err, errlen, "--txn-max-messages \"%s\": expected an integer from 100 to 100000000",
							value);
			break;
		case OPT_NO_TOMBSTONES:
		case OPT_NO_TRANSACTION_RECORDS:
		case OPT_PARTITION_ROOT:
			{
				bool		b;

				if (value == NULL || strcmp(value, "true") == 0 || strcmp(value, "on") == 0 ||
					strcmp(value, "1") == 0)
					b = true;
				else if (strcmp(value, "false") == 0 || strcmp(value, "off") == 0 ||
						 strcmp(value, "0") == 0)
					b = false;
				else
					return fail(err, errlen, "%s \"%s\": expected true or false", name, value);
				if (code == OPT_NO_TOMBSTONES)
					cfg->tombstones = !b;
				else if (code == OPT_NO_TRANSACTION_RECORDS)
					cfg->txn_records = !b;
				else
					cfg->partition_root = b;
			}
			break;
		case OPT_ENDPOS:
			if (!parse_lsn(value, &cfg->endpos) || cfg->endpos == 0)
				return fail(err, errlen, "--endpos \"%s\": expected a WAL position like 0/16B3748", value);
			break;
		case OPT_STATUS_INTERVAL:
			if (!parse_seconds(value, 0.1, 3600, &cfg->status_interval_ms))
				return fail(err, errlen, "--status-interval \"%s\": expected seconds from 0.1 to 3600", value);
			break;
		case OPT_HEARTBEAT_INTERVAL:
			if (!parse_seconds(value, 0, 86400, &cfg->heartbeat_interval_ms) ||
				(cfg->heartbeat_interval_ms > 0 && cfg->heartbeat_interval_ms < 100))
				return fail(err, errlen,
							"--heartbeat-interval \"%s\": expected 0 (off) or seconds from 0.1 to 86400", value);
			break;
		case OPT_METRICS:
			{
				char		host[128],
							why[256];
				int			port;

				if (http_parse_addr(value, host, sizeof(host), &port, why, sizeof(why)) != 0)
					return fail(err, errlen, "--metrics: %s", why);
				set_str(&cfg->metrics_addr, value);
			}
			break;
		case 'v':
			cfg->verbosity++;
			break;
		case 'q':
			cfg->verbosity = 1;
			break;
		default:
			return fail(err, errlen, "unknown option %s", name);
	}
	return 0;
}

static void
trim(char **s)
{
	char	   *p = *s;
	size_t		n;

	while (isspace((unsigned char) *p))
		p++;
	n = strlen(p);
	while (n > 0 && isspace((unsigned char) p[n - 1]))
		p[--n] = '\0';
	*s = p;
}

/*
 * Cut a config line at its comment: the first '#' outside quotes.  A quote
 * (' or ") opens a quoted part only at the start of a word (after white
 * space or '=', as in "password='a#b'" or "key = "a # b""), so that an
 * apostrophe inside a word ("O'Brien") is an ordinary character; in a quoted
 * part a backslash escapes the next character (libpq's rule).  Returns false
 * when a quoted part is not closed; *col is then its 1-based column.
 */
static bool
cut_comment(char *line, int *col)
{
	char		quote = 0;
	char	   *open = NULL;

	for (char *p = line; *p; p++)
	{
		if (quote)
		{
			if (*p == '\\' && p[1] != '\0')
				p++;
			else if (*p == quote)
				quote = 0;
		}
		else if (*p == '#')
		{
			*p = '\0';
			return true;
		}
		else if ((*p == '\'' || *p == '"') &&
				 (p == line || isspace((unsigned char) p[-1]) || p[-1] == '='))
		{
			quote = *p;
			open = p;
		}
	}
	if (quote)
	{
		*col = (int) (open - line) + 1;
		return false;
	}
	return true;
}

/*
 * A value wholly in quotes ('...' or "...", as cut_comment reads them) loses
 * them, and \\ and \<quote> in it become \ and <quote>; any other value is
 * left as it is.
 */
static void
unquote(char **value)
{
	char	   *v = *value;
	char		q = v[0];
	char	   *p,
			   *o;

	if (q != '\'' && q != '"')
		return;
	for (p = v + 1; *p && *p != q; p++)
		if (*p == '\\' && p[1] != '\0')
			p++;
	if (*p != q || p[1] != '\0')
		return;					/* not one quoted string */
	*p = '\0';
	for (p = o = v + 1; *p; p++)
	{
		if (*p == '\\' && (p[1] == '\\' || p[1] == q))
			p++;
		*o++ = *p;
	}
	*o = '\0';
	*value = v + 1;
}

static int
load_config_file(RelayConfig *cfg, const char *path, char *err, size_t errlen)
{
	FILE	   *f = fopen(path, "r");
	char	   *line = NULL;
	size_t		cap = 0;
	int			lineno = 0;
	int			rc = 0;
	bool		holds_password = false;
	struct stat st;

	if (f == NULL)
		return fail(err, errlen, "could not open config file \"%s\": %s", path, strerror(errno));
	while (rc == 0 && getline(&line, &cap, f) >= 0)
	{
		char	   *p = line,
				   *key,
				   *value,
				   *eq;
		const struct option *o;
		const char *refusal;
		char		sub[1024];
		int			col;

		lineno++;
		if (lineno == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
			p += 3;				/* UTF-8 byte order mark */
		if (!cut_comment(p, &col))
		{
			rc = fail(err, errlen, "%s:%d: the quote at column %d is not closed", path, lineno, col);
			break;
		}
		trim(&p);
		if (*p == '\0')
			continue;
		eq = strchr(p, '=');
		if (eq == NULL)
		{
			rc = fail(err, errlen, "%s:%d: expected \"key = value\"", path, lineno);
			break;
		}
		*eq = '\0';
		key = p;
		value = eq + 1;
		trim(&key);
		trim(&value);
		unquote(&value);
		if (strncmp(key, "kafka.", 6) == 0)
		{
			if (key[6] == '\0')
				rc = fail(err, errlen, "%s:%d: \"kafka.\" needs a librdkafka property name", path, lineno);
			else if ((refusal = config_kafka_refusal(key + 6, value)) != NULL)
				rc = fail(err, errlen, "%s:%d: %s = %s %s", path, lineno, key, value, refusal);
			else
			{
				add_kafka(cfg, key + 6, value);
				if (config_key_is_secret(key + 6) && value[0] != '\0')
					holds_password = true;
			}
			continue;
		}
		for (o = long_options; o->name != NULL; o++)
			if (strcmp(o->name, key) == 0)
				break;
		if (o->name == NULL || strcmp(key, "config") == 0 || strcmp(key, "help") == 0)
		{
			rc = fail(err, errlen, "%s:%d: unknown setting \"%s\" (use the long option names of cdc-relay run, or kafka.<property>)",
					  path, lineno, key);
			break;
		}
		if (o->has_arg == required_argument && value[0] == '\0')
		{
			rc = fail(err, errlen, "%s:%d: \"%s\" needs a value", path, lineno, key);
			break;
		}
		if (o->val == 'd' && conninfo_has_password(value))
			holds_password = true;
		rc = apply(cfg, o->val, key, o->has_arg == no_argument && value[0] == '\0' ? NULL : value,
				   sub, sizeof(sub));
		if (rc != 0)
			fail(err, errlen, "%s:%d: %s", path, lineno, sub);
	}
	if (holds_password && fstat(fileno(f), &st) == 0 && (st.st_mode & 077) != 0)
		rlog(LOG_WARNING, LOG_WARNING,
			 "config file %s is readable by other users and holds a password; fix: chmod 600 %s",
			 path, path);
	free(line);
	fclose(f);
	return rc;
}

static void
set_defaults(RelayConfig *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	cfg->slot = relay_strdup("cdc_relay");
	cfg->snapshot = SNAPSHOT_INITIAL;
	cfg->snapshot_jobs = 2;
	cfg->snapshot_chunk_rows = 8192;
	cfg->tombstones = true;
	cfg->exactly_once = DELIVERY_DEFAULT_EXACTLY_ONCE;
	cfg->txn_interval_ms = 20;
	cfg->txn_max_messages = 100000;
	cfg->txn_records = true;
	cfg->status_interval_ms = 10000;
	cfg->heartbeat_interval_ms = 10000;
	cfg->verbosity = 2;
	cfg->embedded_brokers = 1;
	cfg->topic_partitions = -1;
	cfg->topic_replication_factor = -1;
}

int
config_parse_run(int argc, char **argv, RelayConfig *cfg, char *err, size_t errlen)
{
	int			c,
				rc;
	const char *config_file = NULL;

	set_defaults(cfg);

	/* first pass: only find -c, so that the command line wins over the file */
	opterr = 0;
	optind = 1;
	while ((c = getopt_long(argc, argv, "+d:b:S:c:X:vqh", long_options, NULL)) != -1)
		if (c == 'c')
			config_file = optarg;
	if (config_file != NULL && (rc = load_config_file(cfg, config_file, err, errlen)) != 0)
		return rc;

	optind = 1;
	while ((c = getopt_long(argc, argv, "+d:b:S:c:X:vqh", long_options, NULL)) != -1)
	{
		const char *name = argv[optind - 1];

		switch (c)
		{
			case 'h':
				config_usage(stdout);
				return 1;
			case 'c':
				break;
			case 'X':
				if ((rc = apply_kafka_pair(cfg, optarg, err, errlen)) != 0)
					return rc;
				break;
			case '?':
				if (optopt != 0 && optopt < 256)
					return fail(err, errlen, "option -%c %s", optopt,
								strchr("dbScX", optopt) ? "requires a value" : "is not an option of run");
				if (optopt != 0)
					return fail(err, errlen, "option %s requires a value", name);
				return fail(err, errlen, "unknown option %s", name);
			default:
				if ((rc = apply(cfg, c, name, optarg, err, errlen)) != 0)
					return rc;
		}
	}
	if (optind < argc)
		return fail(err, errlen, "unexpected argument \"%s\"", argv[optind]);
	if (cfg->conninfo == NULL)
		return fail(err, errlen, "no database given: use -d CONNINFO (or \"dbname = ...\" in the config file)");
	if (cfg->brokers == NULL)
		return fail(err, errlen, "no Kafka brokers given: use -b HOST:PORT[,...] or -b embedded");
	if (cfg->topic_prefix == NULL)
		return fail(err, errlen, "no topic prefix given: use --topic-prefix NAME (topics are NAME.<schema>.<table>; "
					"give each database its own prefix)");
	{
		/* refuse a malformed conninfo before anything starts; libpq's reason, redacted */
		char	   *perr = NULL;
		PQconninfoOption *opts = PQconninfoParse(cfg->conninfo, &perr);
		char		reason[512];

		if (opts == NULL)
		{
			conninfo_error_line(perr ? perr : "out of memory", cfg->conninfo, reason, sizeof(reason));
			PQfreemem(perr);
			return fail(err, errlen, "invalid connection string: %s", reason);
		}
		PQconninfoFree(opts);
	}
	if (cfg->state_topic == NULL)
	{
		size_t		n = strlen(cfg->topic_prefix) + sizeof(".__state");

		cfg->state_topic = malloc(n);
		if (cfg->state_topic == NULL)
			return fail(err, errlen, "out of memory");
		snprintf(cfg->state_topic, n, "%s.__state", cfg->topic_prefix);
	}
	if (cfg->transactional_id == NULL)
	{
		size_t		n = strlen(cfg->topic_prefix) + strlen(cfg->slot) + sizeof("cdc-relay..");

		cfg->transactional_id = malloc(n);
		if (cfg->transactional_id == NULL)
			return fail(err, errlen, "out of memory");
		snprintf(cfg->transactional_id, n, "cdc-relay.%s.%s", cfg->topic_prefix, cfg->slot);
	}
	return 0;
}

void
config_free(RelayConfig *cfg)
{
	free(cfg->conninfo);
	free(cfg->brokers);
	free(cfg->slot);
	free(cfg->topic_prefix);
	free(cfg->tables);
	free(cfg->exclude_tables);
	free(cfg->publication);
	free(cfg->state_topic);
	free(cfg->transactional_id);
	free(cfg->metrics_addr);
	for (int i = 0; i < cfg->nkafka; i++)
	{
		free(cfg->kafka[i].key);
		free(cfg->kafka[i].value);
	}
	free(cfg->kafka);
	for (int i = 0; i < cfg->ntopic_configs; i++)
	{
		free(cfg->topic_configs[i].key);
		free(cfg->topic_configs[i].value);
	}
	free(cfg->topic_configs);
	memset(cfg, 0, sizeof(*cfg));
}
