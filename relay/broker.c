/*
 * broker.c: a Kafka-protocol test broker built on librdkafka's mock cluster,
 * embeddable (relay_broker_start) or run as `cdc-relay broker`.
 *
 * The mock cluster needs an rd_kafka_t for its bookkeeping.  That handle is
 * a producer with no bootstrap servers: it never connects anywhere, so it
 * never consumes the request errors pushed onto the cluster for clients.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* ppoll */
#endif

#include "broker.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define LOG_PREFIX "cdc-relay broker: "

/* Longest control line, newline excluded. */
#define CMD_MAX 1024
/* Most errors one `error` command may push. */
#define ERROR_COUNT_MAX 100000
/* Longest simulated round-trip time, in milliseconds. */
#define RTT_MAX_MS 600000
/* Replication factor librdkafka 2.0.2's mock uses for every partition. */
#define MOCK_REPLICATION(nbrokers) ((nbrokers) < 3 ? (nbrokers) : 3)

struct RelayBroker {
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mcluster;
	int nbrokers;
	int partitions;
};

/* Set by the `broker` subcommand's SIGTERM/SIGINT handler. */
static volatile sig_atomic_t broker_signalled;

/*
 * Kafka protocol request types (ApiKey), as known to librdkafka 2.0.2; the
 * mock implements a subset of them (Produce, Fetch, ListOffsets, Metadata,
 * OffsetCommit, OffsetFetch, FindCoordinator, JoinGroup, Heartbeat,
 * LeaveGroup, SyncGroup, ApiVersion, InitProducerId, AddPartitionsToTxn,
 * AddOffsetsToTxn, EndTxn, TxnOffsetCommit).
 */
static const char *const api_names[] = {
	"Produce",
	"Fetch",
	"ListOffsets",
	"Metadata",
	"LeaderAndIsr",
	"StopReplica",
	"UpdateMetadata",
	"ControlledShutdown",
	"OffsetCommit",
	"OffsetFetch",
	"FindCoordinator",
	"JoinGroup",
	"Heartbeat",
	"LeaveGroup",
	"SyncGroup",
	"DescribeGroups",
	"ListGroups",
	"SaslHandshake",
	"ApiVersion",
	"CreateTopics",
	"DeleteTopics",
	"DeleteRecords",
	"InitProducerId",
	"OffsetForLeaderEpoch",
	"AddPartitionsToTxn",
	"AddOffsetsToTxn",
	"EndTxn",
	"WriteTxnMarkers",
	"TxnOffsetCommit",
	"DescribeAcls",
	"CreateAcls",
	"DeleteAcls",
	"DescribeConfigs",
	"AlterConfigs",
	"AlterReplicaLogDirs",
	"DescribeLogDirs",
	"SaslAuthenticate",
	"CreatePartitions",
	"CreateDelegationToken",
	"RenewDelegationToken",
	"ExpireDelegationToken",
	"DescribeDelegationToken",
	"DeleteGroups",
	"ElectLeaders",
	"IncrementalAlterConfigs",
	"AlterPartitionReassignments",
	"ListPartitionReassignments",
	"OffsetDelete",
	"DescribeClientQuotas",
	"AlterClientQuotas",
	"DescribeUserScramCredentials",
	"AlterUserScramCredentials",
	"Vote",
	"BeginQuorumEpoch",
	"EndQuorumEpoch",
	"DescribeQuorum",
	"AlterIsr",
	"UpdateFeatures",
	"Envelope",
};

#define API_COUNT ((int)(sizeof api_names / sizeof api_names[0]))

static const char help_text[] =
	"commands: help | bootstraps | down ID|all | up ID|all"
	" | rtt ID|all MS | error APIKEY ERRCODE [COUNT] | clear APIKEY"
	" | create TOPIC [PARTITIONS [REPLICATION]]"
	" | leader TOPIC PARTITION ID|none"
	" (APIKEY: number or name, e.g. produce, metadata;"
	" ERRCODE: number or name, e.g. NOT_LEADER_FOR_PARTITION, _TRANSPORT)";

static void fmt_msg(char *buf, size_t len, const char *prefix,
		    const char *fmt, va_list ap)
{
	size_t n;

	if (buf == NULL || len == 0)
		return;
	n = (size_t)snprintf(buf, len, "%s", prefix);
	if (n < len)
		vsnprintf(buf + n, len - n, fmt, ap);
}

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void set_err(char *errbuf, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fmt_msg(errbuf, errlen, "", fmt, ap);
	va_end(ap);
}

static int reply_ok(char *reply, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int reply_ok(char *reply, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fmt_msg(reply, len, "ok", fmt, ap);
	va_end(ap);
	return 0;
}

static int reply_err(char *reply, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int reply_err(char *reply, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fmt_msg(reply, len, "error: ", fmt, ap);
	va_end(ap);
	return -1;
}

static void log_cb(const rd_kafka_t *rk, int level, const char *fac,
		   const char *buf)
{
	(void)rk;
	(void)level;
	/* The bookkeeping handle has no brokers on purpose. */
	if (strcmp(fac, "CONFWARN") == 0 &&
	    strstr(buf, "bootstrap.servers") != NULL)
		return;
	fprintf(stderr, LOG_PREFIX "librdkafka: %s: %s\n", fac, buf);
}

/* A decimal integer in [min, max], the whole string. */
static int parse_long(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (*s == '\0' || isspace((unsigned char)*s))
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (end == s || *end != '\0' || errno != 0 || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int topic_name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 249 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
		return 0;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && *s != '.' && *s != '_' &&
		    *s != '-')
			return 0;
	return 1;
}

RelayBroker *relay_broker_start(int nbrokers, int partitions, char *errbuf,
				size_t errlen)
{
	RelayBroker *b;
	rd_kafka_conf_t *conf;
	char rkerr[512];
	sigset_t all, old;

	if (nbrokers < 1 || nbrokers > RELAY_BROKER_MAX_BROKERS) {
		set_err(errbuf, errlen,
			"the number of brokers must be from 1 to %d",
			RELAY_BROKER_MAX_BROKERS);
		return NULL;
	}
	if (partitions < 1 || partitions > RELAY_BROKER_MAX_PARTITIONS) {
		set_err(errbuf, errlen,
			"the number of partitions must be from 1 to %d",
			RELAY_BROKER_MAX_PARTITIONS);
		return NULL;
	}
	b = calloc(1, sizeof *b);
	if (b == NULL) {
		set_err(errbuf, errlen, "out of memory");
		return NULL;
	}
	b->nbrokers = nbrokers;
	b->partitions = partitions;

	conf = rd_kafka_conf_new();
	if (rd_kafka_conf_set(conf, "client.id", "cdc-relay-broker", rkerr,
			      sizeof rkerr) != RD_KAFKA_CONF_OK) {
		set_err(errbuf, errlen, "librdkafka configuration: %s", rkerr);
		rd_kafka_conf_destroy(conf);
		free(b);
		return NULL;
	}
	rd_kafka_conf_set_log_cb(conf, log_cb);
	b->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, rkerr, sizeof rkerr);
	if (b->rk == NULL) {
		set_err(errbuf, errlen, "cannot create a librdkafka handle: %s",
			rkerr);
		rd_kafka_conf_destroy(conf);
		free(b);
		return NULL;
	}

	/*
	 * The mock cluster's thread inherits the caller's signal mask; block
	 * everything while creating it, as librdkafka does for its own
	 * threads, so that process signals go to the application's threads.
	 */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	b->mcluster = rd_kafka_mock_cluster_new(b->rk, nbrokers);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (b->mcluster == NULL) {
		set_err(errbuf, errlen,
			"cannot create the mock Kafka cluster (librdkafka "
			"logged the reason)");
		rd_kafka_destroy(b->rk);
		free(b);
		return NULL;
	}
	return b;
}

const char *relay_broker_bootstraps(const RelayBroker *b)
{
	return rd_kafka_mock_cluster_bootstraps(b->mcluster);
}

void relay_broker_stop(RelayBroker *b)
{
	if (b == NULL)
		return;
	rd_kafka_mock_cluster_destroy(b->mcluster);
	rd_kafka_destroy(b->rk);
	free(b);
}

int relay_broker_create_topic(RelayBroker *b, const char *topic,
			      int partitions, char *errbuf, size_t errlen)
{
	rd_kafka_resp_err_t err;

	if (!topic_name_ok(topic)) {
		set_err(errbuf, errlen,
			"invalid topic name \"%s\" (1 to 249 of a-z A-Z 0-9 "
			". _ -)",
			topic);
		return -1;
	}
	if (partitions <= 0)
		partitions = b->partitions;
	if (partitions > RELAY_BROKER_MAX_PARTITIONS) {
		set_err(errbuf, errlen,
			"the number of partitions must be from 1 to %d",
			RELAY_BROKER_MAX_PARTITIONS);
		return -1;
	}
	err = rd_kafka_mock_topic_create(b->mcluster, topic, partitions,
					 MOCK_REPLICATION(b->nbrokers));
	if (err == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS)
		return 1;
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		set_err(errbuf, errlen, "cannot create topic %s: %s", topic,
			rd_kafka_err2str(err));
		return -1;
	}
	return 0;
}

/* ApiKey by number or by (case-insensitive) name; -1 if unknown. */
static int parse_api_key(const char *s)
{
	long v;
	int i;

	if (parse_long(s, 0, API_COUNT - 1, &v) == 0)
		return (int)v;
	for (i = 0; i < API_COUNT; i++)
		if (strcasecmp(s, api_names[i]) == 0)
			return i;
	if (strcasecmp(s, "ApiVersions") == 0)
		return 18;
	return -1;
}

/*
 * Error code by number or by name as rd_kafka_err2name spells it (any case,
 * optional RD_KAFKA_RESP_ERR_ prefix).  Returns 0 and *out, or -1.
 */
static int parse_err_code(const char *s, rd_kafka_resp_err_t *out)
{
	static const char prefix[] = "RD_KAFKA_RESP_ERR_";
	const struct rd_kafka_err_desc *descs;
	size_t n, i;
	long v;

	rd_kafka_get_err_descs(&descs, &n);
	if (parse_long(s, INT_MIN, INT_MAX, &v) == 0) {
		for (i = 0; i < n; i++)
			if (descs[i].name != NULL && (long)descs[i].code == v) {
				*out = descs[i].code;
				return 0;
			}
		return -1;
	}
	if (strncasecmp(s, prefix, sizeof prefix - 1) == 0)
		s += sizeof prefix - 1;
	/* Kafka's newer name for error 6. */
	if (strcasecmp(s, "NOT_LEADER_OR_FOLLOWER") == 0) {
		*out = RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION;
		return 0;
	}
	for (i = 0; i < n; i++)
		if (descs[i].name != NULL && strcasecmp(s, descs[i].name) == 0) {
			*out = descs[i].code;
			return 0;
		}
	return -1;
}

/* Broker id 1..nbrokers, or "all" / -1 for all of them. */
static int parse_broker_id(const RelayBroker *b, const char *s, int32_t *out)
{
	long v;

	if (strcasecmp(s, "all") == 0 || strcmp(s, "-1") == 0) {
		*out = -1;
		return 0;
	}
	if (parse_long(s, 1, b->nbrokers, &v) != 0)
		return -1;
	*out = (int32_t)v;
	return 0;
}

static const char *broker_label(int32_t id, char *buf, size_t len)
{
	if (id == -1)
		snprintf(buf, len, "all brokers");
	else
		snprintf(buf, len, "broker %d", (int)id);
	return buf;
}

static int cmd_updown(RelayBroker *b, int up, char **argv, int argc,
		      char *reply, size_t rlen)
{
	rd_kafka_resp_err_t err;
	int32_t id;
	char label[32];

	if (argc != 2)
		return reply_err(reply, rlen, "usage: %s ID|all", argv[0]);
	if (parse_broker_id(b, argv[1], &id) != 0)
		return reply_err(reply, rlen,
				 "no broker \"%s\" (brokers are 1 to %d, or all)",
				 argv[1], b->nbrokers);
	err = up ? rd_kafka_mock_broker_set_up(b->mcluster, id)
		 : rd_kafka_mock_broker_set_down(b->mcluster, id);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		return reply_err(reply, rlen, "%s", rd_kafka_err2str(err));
	return reply_ok(reply, rlen, " %s %s",
			broker_label(id, label, sizeof label),
			up ? "up" : "down");
}

static int cmd_rtt(RelayBroker *b, char **argv, int argc, char *reply,
		   size_t rlen)
{
	rd_kafka_resp_err_t err;
	int32_t id;
	long ms;
	char label[32];

	if (argc != 3)
		return reply_err(reply, rlen, "usage: rtt ID|all MS");
	if (parse_broker_id(b, argv[1], &id) != 0)
		return reply_err(reply, rlen,
				 "no broker \"%s\" (brokers are 1 to %d, or all)",
				 argv[1], b->nbrokers);
	if (parse_long(argv[2], 0, RTT_MAX_MS, &ms) != 0)
		return reply_err(reply, rlen,
				 "MS must be an integer from 0 to %d",
				 RTT_MAX_MS);
	err = rd_kafka_mock_broker_set_rtt(b->mcluster, id, (int)ms);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		return reply_err(reply, rlen, "%s", rd_kafka_err2str(err));
	return reply_ok(reply, rlen, " %s rtt %ld ms",
			broker_label(id, label, sizeof label), ms);
}

static int cmd_error(RelayBroker *b, char **argv, int argc, char *reply,
		     size_t rlen)
{
	rd_kafka_resp_err_t err, *errs;
	int api;
	long count = 1, i;

	if (argc != 3 && argc != 4)
		return reply_err(reply, rlen,
				 "usage: error APIKEY ERRCODE [COUNT]");
	api = parse_api_key(argv[1]);
	if (api < 0)
		return reply_err(reply, rlen,
				 "unknown ApiKey \"%s\" (a number from 0 to %d "
				 "or a name such as produce, metadata)",
				 argv[1], API_COUNT - 1);
	if (parse_err_code(argv[2], &err) != 0)
		return reply_err(reply, rlen,
				 "unknown error code \"%s\" (a number or a name "
				 "such as NOT_LEADER_FOR_PARTITION)",
				 argv[2]);
	if ((int)err < 0 && err != RD_KAFKA_RESP_ERR__TRANSPORT)
		return reply_err(reply, rlen,
				 "%s is a client-side error; of those only "
				 "_TRANSPORT (disconnect) means something to "
				 "the broker",
				 rd_kafka_err2name(err));
	if (argc == 4 && parse_long(argv[3], 1, ERROR_COUNT_MAX, &count) != 0)
		return reply_err(reply, rlen,
				 "COUNT must be an integer from 1 to %d",
				 ERROR_COUNT_MAX);
	errs = malloc((size_t)count * sizeof *errs);
	if (errs == NULL)
		return reply_err(reply, rlen, "out of memory");
	for (i = 0; i < count; i++)
		errs[i] = err;
	rd_kafka_mock_push_request_errors_array(b->mcluster, (int16_t)api,
						(size_t)count, errs);
	free(errs);
	return reply_ok(reply, rlen, " next %ld %s request%s fail with %s (%d)",
			count, api_names[api], count == 1 ? "" : "s",
			rd_kafka_err2name(err), (int)err);
}

static int cmd_clear(RelayBroker *b, char **argv, int argc, char *reply,
		     size_t rlen)
{
	int api;

	if (argc != 2)
		return reply_err(reply, rlen, "usage: clear APIKEY");
	api = parse_api_key(argv[1]);
	if (api < 0)
		return reply_err(reply, rlen,
				 "unknown ApiKey \"%s\" (a number from 0 to %d "
				 "or a name such as produce, metadata)",
				 argv[1], API_COUNT - 1);
	rd_kafka_mock_clear_request_errors(b->mcluster, (int16_t)api);
	return reply_ok(reply, rlen, " cleared %s errors", api_names[api]);
}

static int cmd_create(RelayBroker *b, char **argv, int argc, char *reply,
		      size_t rlen)
{
	long partitions = b->partitions, replication;
	char errbuf[512];
	int r;

	if (argc < 2 || argc > 4)
		return reply_err(reply, rlen,
				 "usage: create TOPIC [PARTITIONS [REPLICATION]]");
	if (argc >= 3 && parse_long(argv[2], 1, RELAY_BROKER_MAX_PARTITIONS,
				    &partitions) != 0)
		return reply_err(reply, rlen,
				 "PARTITIONS must be an integer from 1 to %d",
				 RELAY_BROKER_MAX_PARTITIONS);
	/* Checked, but the 2.0.2 mock always replicates to min(3, brokers). */
	if (argc == 4 &&
	    parse_long(argv[3], 1, b->nbrokers, &replication) != 0)
		return reply_err(reply, rlen,
				 "REPLICATION must be an integer from 1 to %d",
				 b->nbrokers);
	r = relay_broker_create_topic(b, argv[1], (int)partitions, errbuf,
				      sizeof errbuf);
	if (r < 0)
		return reply_err(reply, rlen, "%s", errbuf);
	if (r > 0)
		return reply_err(reply, rlen, "topic %s already exists",
				 argv[1]);
	return reply_ok(reply, rlen, " created %s with %ld partition%s",
			argv[1], partitions, partitions == 1 ? "" : "s");
}

static int cmd_leader(RelayBroker *b, char **argv, int argc, char *reply,
		      size_t rlen)
{
	rd_kafka_resp_err_t err;
	long partition, id;

	if (argc != 4)
		return reply_err(reply, rlen,
				 "usage: leader TOPIC PARTITION ID|none");
	if (!topic_name_ok(argv[1]))
		return reply_err(reply, rlen, "invalid topic name \"%s\"",
				 argv[1]);
	if (parse_long(argv[2], 0, RELAY_BROKER_MAX_PARTITIONS - 1,
		       &partition) != 0)
		return reply_err(reply, rlen,
				 "PARTITION must be an integer from 0 to %d",
				 RELAY_BROKER_MAX_PARTITIONS - 1);
	if (strcasecmp(argv[3], "none") == 0)
		id = -1;
	else if (parse_long(argv[3], 1, b->nbrokers, &id) != 0)
		return reply_err(reply, rlen,
				 "no broker \"%s\" (brokers are 1 to %d, or none)",
				 argv[3], b->nbrokers);
	/* Note: the mock creates a missing topic with PARTITION+1
	 * partitions. */
	err = rd_kafka_mock_partition_set_leader(b->mcluster, argv[1],
						 (int32_t)partition,
						 (int32_t)id);
	if (err != RD_KAFKA_RESP_ERR_NO_ERROR)
		return reply_err(reply, rlen, "%s [%ld]: %s", argv[1],
				 partition, rd_kafka_err2str(err));
	if (id == -1)
		return reply_ok(reply, rlen, " %s [%ld] has no leader",
				argv[1], partition);
	return reply_ok(reply, rlen, " %s [%ld] leader is broker %ld",
			argv[1], partition, id);
}

int relay_broker_command(RelayBroker *b, const char *line, char *reply,
			 size_t replylen)
{
	char buf[CMD_MAX + 1];
	char *argv[8];
	int argc = 0;
	size_t len = strlen(line);
	char *p;

	if (len > CMD_MAX)
		return reply_err(reply, replylen,
				 "command longer than %d bytes", CMD_MAX);
	memcpy(buf, line, len + 1);
	for (p = buf;;) {
		while (isspace((unsigned char)*p))
			p++;
		if (*p == '\0')
			break;
		if (argc == (int)(sizeof argv / sizeof argv[0]))
			return reply_err(reply, replylen, "too many words");
		argv[argc++] = p;
		while (*p != '\0' && !isspace((unsigned char)*p))
			p++;
		if (*p != '\0')
			*p++ = '\0';
	}
	if (argc == 0)
		return reply_err(reply, replylen, "empty command");

	if (strcasecmp(argv[0], "help") == 0)
		return argc == 1 ? reply_ok(reply, replylen, " %s", help_text)
				 : reply_err(reply, replylen, "usage: help");
	if (strcasecmp(argv[0], "bootstraps") == 0)
		return argc == 1 ? reply_ok(reply, replylen, " %s",
					    relay_broker_bootstraps(b))
				 : reply_err(reply, replylen,
					     "usage: bootstraps");
	if (strcasecmp(argv[0], "down") == 0)
		return cmd_updown(b, 0, argv, argc, reply, replylen);
	if (strcasecmp(argv[0], "up") == 0)
		return cmd_updown(b, 1, argv, argc, reply, replylen);
	if (strcasecmp(argv[0], "rtt") == 0)
		return cmd_rtt(b, argv, argc, reply, replylen);
	if (strcasecmp(argv[0], "error") == 0)
		return cmd_error(b, argv, argc, reply, replylen);
	if (strcasecmp(argv[0], "clear") == 0)
		return cmd_clear(b, argv, argc, reply, replylen);
	if (strcasecmp(argv[0], "create") == 0)
		return cmd_create(b, argv, argc, reply, replylen);
	if (strcasecmp(argv[0], "leader") == 0)
		return cmd_leader(b, argv, argc, reply, replylen);
	return reply_err(reply, replylen, "unknown command \"%s\" (try help)",
			 argv[0]);
}

/* ---- the `broker` subcommand ---- */

void relay_broker_usage(FILE *out, const char *progname)
{
	fprintf(out,
		"Usage: %s broker [--brokers N] [--partitions N] [--topic NAME]...\n"
		"\n"
		"Run an in-memory Kafka-protocol test cluster (librdkafka's mock\n"
		"cluster) until SIGTERM or SIGINT.  The first line of standard\n"
		"output is its bootstrap list, e.g. 127.0.0.1:37851.  Standard\n"
		"input takes control commands, one a line, each answered by one\n"
		"line starting with \"ok\" or \"error:\" (\"help\" lists them); end of\n"
		"input does not stop the broker.\n"
		"\n"
		"  --brokers N     number of brokers, ids 1..N (1 to %d; default 1)\n"
		"  --partitions N  partitions of topics created by --topic and by the\n"
		"                  create command without a count (1 to %d;\n"
		"                  default 1).  Topics that clients auto-create\n"
		"                  always get 4: librdkafka fixes that count.\n"
		"  --topic NAME    create topic NAME before printing the bootstrap\n"
		"                  list (repeatable)\n"
		"  --port-base N   not supported: the mock cluster can only bind\n"
		"                  ephemeral ports\n",
		progname, RELAY_BROKER_MAX_BROKERS, RELAY_BROKER_MAX_PARTITIONS);
}

static void on_signal(int sig)
{
	(void)sig;
	broker_signalled = 1;
}

static int usage_error(const char *progname, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int usage_error(const char *progname, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s broker: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry \"%s --help\" for more information.\n",
		progname);
	return 2;
}

/*
 * Option NAME at argv[*i], as "--NAME VALUE" or "--NAME=VALUE".  Returns 1
 * and *val if it matches, 0 if argv[*i] is another option, -1 if the value
 * is missing.
 */
static int option(int argc, char **argv, int *i, const char *name,
		  const char **val)
{
	const char *a = argv[*i];
	size_t n = strlen(name);

	if (strncmp(a, name, n) != 0)
		return 0;
	if (a[n] == '=') {
		*val = a + n + 1;
		return 1;
	}
	if (a[n] != '\0')
		return 0;
	if (*i + 1 >= argc)
		return -1;
	*val = argv[++*i];
	return 1;
}

static void run_line(RelayBroker *b, char *line)
{
	char reply[2048];
	size_t n = strlen(line);
	const char *p = line;

	if (n > 0 && line[n - 1] == '\r')
		line[n - 1] = '\0';
	while (isspace((unsigned char)*p))
		p++;
	if (*p == '\0' || *p == '#')
		return;
	relay_broker_command(b, line, reply, sizeof reply);
	printf("%s\n", reply);
	fflush(stdout);
}

/* Read and run commands from stdin until a signal.  0, or 1 on failure. */
static int serve(RelayBroker *b, const sigset_t *waitmask)
{
	char buf[CMD_MAX + 2];
	size_t len = 0;
	int in_open = 1, discarding = 0;

	while (!broker_signalled) {
		struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
		struct timespec ts = {.tv_sec = 1, .tv_nsec = 0};
		char *nl;
		ssize_t r;
		int n;

		n = ppoll(&pfd, in_open ? 1 : 0, &ts, waitmask);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, LOG_PREFIX "poll: %s\n",
				strerror(errno));
			return 1;
		}
		if (n == 0 || !in_open)
			continue;
		if (pfd.revents & POLLNVAL) {
			in_open = 0;
			continue;
		}
		r = read(STDIN_FILENO, buf + len, sizeof buf - 1 - len);
		if (r < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			fprintf(stderr,
				LOG_PREFIX "reading commands: %s; no longer "
				"reading standard input\n",
				strerror(errno));
			in_open = 0;
			continue;
		}
		if (r == 0) {
			/* End of input: run an unterminated last line. */
			buf[len] = '\0';
			if (len > 0 && !discarding)
				run_line(b, buf);
			len = 0;
			in_open = 0;
			continue;
		}
		len += (size_t)r;
		buf[len] = '\0';
		while ((nl = memchr(buf, '\n', len)) != NULL) {
			size_t used = (size_t)(nl - buf) + 1;

			*nl = '\0';
			if (discarding)
				discarding = 0;
			else
				run_line(b, buf);
			memmove(buf, buf + used, len - used);
			len -= used;
		}
		if (len == sizeof buf - 1) {
			if (!discarding) {
				printf("error: command longer than %d bytes\n",
				       CMD_MAX);
				fflush(stdout);
			}
			discarding = 1;
			len = 0;
		}
	}
	return 0;
}

int relay_broker_main(int argc, char **argv, const char *progname)
{
	long nbrokers = 1, partitions = 1;
	const char **topics;
	int ntopics = 0, i, rc;
	RelayBroker *b;
	char errbuf[512];
	struct sigaction sa, old_term, old_int, old_pipe;
	sigset_t block, oldmask, waitmask;

	topics = calloc((size_t)argc + 1, sizeof *topics);
	if (topics == NULL) {
		fprintf(stderr, "%s broker: out of memory\n", progname);
		return 1;
	}
	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *val = NULL;
		int m;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			relay_broker_usage(stdout, progname);
			free(topics);
			return 0;
		}
		if (strcmp(a, "--port-base") == 0 ||
		    strncmp(a, "--port-base=", 12) == 0) {
			free(topics);
			return usage_error(
				progname,
				"--port-base is not supported: librdkafka "
				"2.0.2's mock cluster binds every broker to an "
				"ephemeral port and has no way to choose it");
		}
		if ((m = option(argc, argv, &i, "--brokers", &val)) != 0) {
			if (m < 0 || parse_long(val, 1, RELAY_BROKER_MAX_BROKERS,
						&nbrokers) != 0) {
				free(topics);
				return usage_error(
					progname,
					"--brokers needs an integer from 1 to %d",
					RELAY_BROKER_MAX_BROKERS);
			}
		} else if ((m = option(argc, argv, &i, "--partitions",
				       &val)) != 0) {
			if (m < 0 ||
			    parse_long(val, 1, RELAY_BROKER_MAX_PARTITIONS,
				       &partitions) != 0) {
				free(topics);
				return usage_error(
					progname,
					"--partitions needs an integer from 1 to %d",
					RELAY_BROKER_MAX_PARTITIONS);
			}
		} else if ((m = option(argc, argv, &i, "--topic", &val)) !=
			   0) {
			if (m < 0 || !topic_name_ok(val)) {
				free(topics);
				return usage_error(
					progname,
					"--topic needs a topic name (1 to 249 of "
					"a-z A-Z 0-9 . _ -)");
			}
			topics[ntopics++] = val;
		} else if (a[0] == '-') {
			free(topics);
			return usage_error(progname, "unknown option \"%s\"",
					   a);
		} else {
			free(topics);
			return usage_error(progname,
					   "unexpected argument \"%s\"", a);
		}
	}

	/*
	 * SIGTERM and SIGINT stay blocked except while waiting in ppoll(), so
	 * a signal can never slip in between checking the flag and waiting.
	 */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &oldmask);
	waitmask = oldmask;
	sigdelset(&waitmask, SIGTERM);
	sigdelset(&waitmask, SIGINT);
	broker_signalled = 0;
	memset(&sa, 0, sizeof sa);
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, &old_term);
	sigaction(SIGINT, &sa, &old_int);
	/* A reader that went away must not kill the broker. */
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, &old_pipe);

	rc = 1;
	b = relay_broker_start((int)nbrokers, (int)partitions, errbuf,
			       sizeof errbuf);
	if (b == NULL) {
		fprintf(stderr, "%s broker: %s\n", progname, errbuf);
		goto out;
	}
	for (i = 0; i < ntopics; i++)
		if (relay_broker_create_topic(b, topics[i], 0, errbuf,
					      sizeof errbuf) < 0) {
			fprintf(stderr, "%s broker: %s\n", progname, errbuf);
			goto out;
		}
	printf("%s\n", relay_broker_bootstraps(b));
	fflush(stdout);
	rc = serve(b, &waitmask);
out:
	relay_broker_stop(b);
	sigaction(SIGPIPE, &old_pipe, NULL);
	sigaction(SIGINT, &old_int, NULL);
	sigaction(SIGTERM, &old_term, NULL);
	pthread_sigmask(SIG_SETMASK, &oldmask, NULL);
	free(topics);
	return rc;
}
