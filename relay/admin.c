/*
 * admin.c: the Kafka topics the relay writes: created when missing, checked
 * when they exist (librdkafka's Admin API on the producer's handle).
 *
 * Kinds and the cleanup.policy a topic the relay creates gets:
 *   the state topic             compact (one partition: state.c uses partition 0)
 *   the messages and transactions topics   delete
 *   the schemas topic           compact (keyed by table: its last shape)
 *   the ddl topic               delete (one partition: DDL in commit order)
 *   a table topic, table keyed  compact  (+ --topic-config)
 *   a table topic, keyless      delete   (+ --topic-config): Kafka refuses a
 *                               message without a key in a compacted topic
 * --topic-partitions (not for the state topic) and --topic-replication-factor
 * apply to all of them; -1 leaves the choice to the brokers (KIP-464).
 *
 * admin_open() decides once per run whether the cluster takes topic
 * administration requests.  librdkafka sends them to the controller that the
 * metadata names and waits for it.  The test broker (`cdc-relay broker`,
 * librdkafka's mock cluster) names controller 0, none of its brokers, and has
 * no CreateTopics or DescribeConfigs at all: a request would only time out
 * (measured: after its full request timeout, at every start and for every new
 * table).  So when the controller is none of the brokers, and when a
 * controller answers CreateTopics with UNSUPPORTED_FEATURE (librdkafka's
 * reading of its ApiVersions), the relay sends no such request for the rest
 * of the run and says once that the brokers create the topics on first use.
 *
 * Otherwise, before anything is produced to a topic, one call makes sure of
 * a set of topics, within ADMIN_WAIT_MS: it lists the cluster's topics
 * (metadata of all topics: unlike a metadata request for one topic, it never
 * makes a broker auto-create it), creates the missing ones with one
 * CreateTopics (TOPIC_ALREADY_EXISTS is fine: another client was quicker),
 * reads the configs of all of them with one DescribeConfigs, and warns, with
 * the fix, about: a table topic of a keyed table or the state topic without
 * compaction (existing topics: a topic the relay created has what the
 * settings asked for), a keyless table's topic with compaction (Kafka would
 * refuse its changes), and min.insync.replicas=1 on a topic replicated more
 * than once (acks=all then waits for the leader alone).  admin_ensure_start()
 * does this for the state and messages topics and every table
 * cdc_relay.snapshot_tables lists; admin_ensure_table() for a table first
 * seen later.  Each topic is handled once per run.  A topic Kafka refuses to
 * create (a bad --topic-config, too high a replication factor, no
 * authorization) stops the relay (fatal_set) with one line naming the
 * setting; a cluster that does not answer in time is an ordinary Kafka
 * failure (-1, not fatal).
 *
 * Main thread only.
 */
#include "relay.h"

#include <search.h>
#include <stdlib.h>
#include <string.h>

#include "topic.h"

#define ADMIN_WAIT_MS 30000

/* a name no table topic can have (enc() never writes "__"), for checking settings */
#define SETTINGS_CHECK_SUFFIX ".__cdc_relay_settings_check"

struct RelayAdmin
{
	bool		auto_create;	/* no Admin API requests: the brokers create topics */
	void	   *done;			/* tsearch tree of the topic names handled (malloc'd) */
	struct Want *start;			/* admin_list_start's topics, until admin_ensure_start */
	int			nstart;
	char	  **start_tables;	/* their tables' display names (malloc'd) */
	int			nstart_tables;
};

/* One topic to make sure of. */
typedef struct Want
{
	char		topic[TOPIC_MAX_LEN + 1];
	const char *table;			/* display name; NULL for the relay's own topics */
	TopicKind	kind;
	bool		exists;			/* listed by the cluster before we created it */
	bool		created;		/* created by this call */
	int			replicas;		/* replication factor (metadata); 0: unknown */
	char		policy[64];		/* cleanup.policy (DescribeConfigs); "": unknown */
	int			min_isr;		/* min.insync.replicas; 0: unknown */
} Want;

static bool
is_table_kind(TopicKind kind)
{
	return kind == TOPIC_TABLE_KEYED || kind == TOPIC_TABLE_KEYLESS;
}

static bool
user_settings_given(const RelayConfig *cfg)
{
	return cfg->topic_partitions != -1 || cfg->topic_replication_factor != -1 ||
		cfg->ntopic_configs > 0;
}

/* Switch to auto-creation for the rest of the run, with the one line saying so. */
static void
use_auto_create(Relay *r, const char *why)
{
	r->admin->auto_create = true;
	rlog(r->v, user_settings_given(r->cfg) ? LOG_WARNING : LOG_INFO,
		 "Kafka at %s %s: cdc-relay sends it no topic administration requests, and its brokers "
		 "create the relay's topics on first use, with their own defaults%s",
		 r->brokers, why, user_settings_given(r->cfg)
		 ? " (--topic-partitions, --topic-replication-factor and --topic-config are not applied)" : "");
}

int
admin_open(Relay *r)
{
	const struct rd_kafka_metadata *md = NULL;
	rd_kafka_resp_err_t e;
	int32_t		controller;
	bool		found = false;
	char		why[128];

	r->admin = calloc(1, sizeof(RelayAdmin));
	if (r->admin == NULL)
		relay_out_of_memory();
	controller = rd_kafka_controllerid(r->rk, 5000);
	e = rd_kafka_metadata(r->rk, 0, NULL, &md, 10000);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		rlog(r->v, LOG_ERROR, "could not read the Kafka cluster's metadata at %s: %s", r->brokers,
			 rd_kafka_err2str(e));
		return -1;
	}
	for (int i = 0; i < md->broker_cnt; i++)
		if (md->brokers[i].id == controller)
			found = true;
	rd_kafka_metadata_destroy(md);
	if (controller < 0)
		use_auto_create(r, "names no controller");
	else if (!found)
	{
		snprintf(why, sizeof(why), "names controller %d, which is none of its brokers (as the test broker does)",
				 (int) controller);
		use_auto_create(r, why);
	}
	else
		rlog(r->v, LOG_DEBUG, "Kafka controller: broker %d", (int) controller);
	return 0;
}

static int
cmp_name(const void *a, const void *b)
{
	return strcmp(a, b);
}

static bool
is_done(Relay *r, const char *topic)
{
	return tfind(topic, &r->admin->done, cmp_name) != NULL;
}

static void
mark_done(Relay *r, const char *topic)
{
	char	   *copy;

	if (is_done(r, topic))
		return;
	copy = strdup(topic);
	if (copy == NULL || tsearch(copy, &r->admin->done, cmp_name) == NULL)
		relay_out_of_memory();
}

/* Forget admin_list_start's topics. */
static void
free_start(RelayAdmin *a)
{
	for (int i = 0; i < a->nstart_tables; i++)
		free(a->start_tables[i]);
	free(a->start_tables);
	free(a->start);
	a->start = NULL;
	a->start_tables = NULL;
	a->nstart = a->nstart_tables = 0;
}

void
admin_close(Relay *r)
{
	if (r->admin == NULL)
		return;
	free_start(r->admin);
	tdestroy(r->admin->done, free);
	free(r->admin);
	r->admin = NULL;
}

static int
remaining(int64_t deadline)
{
	int64_t		left = deadline - now_ms();

	return left < 1 ? 1 : (int) left;
}

/*
 * Wait for the result of an Admin API request on q until deadline, serving
 * delivery reports meanwhile.  NULL on timeout or when a stop is requested.
 */
static rd_kafka_event_t *
wait_result(Relay *r, rd_kafka_queue_t *q, int64_t deadline)
{
	while (!*r->stop)
	{
		rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 200);

		if (ev != NULL)
			return ev;
		rd_kafka_poll(r->rk, 0);
		if (now_ms() >= deadline)
			break;
	}
	return NULL;
}

static rd_kafka_AdminOptions_t *
admin_options(Relay *r, rd_kafka_admin_op_t op, int64_t deadline)
{
	rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(r->rk, op);
	char		err[256];

	rd_kafka_AdminOptions_set_request_timeout(opt, remaining(deadline), err, sizeof(err));
	if (op == RD_KAFKA_ADMIN_OP_CREATETOPICS)
		rd_kafka_AdminOptions_set_operation_timeout(opt, remaining(deadline), err, sizeof(err));
	return opt;
}

/* Which of want[] the cluster lists (exists), with their replication factor. */
static int
list_topics(Relay *r, Want *want, int n, int64_t deadline)
{
	const struct rd_kafka_metadata *md = NULL;
	int			wait_ms = remaining(deadline) < 10000 ? remaining(deadline) : 10000;
	rd_kafka_resp_err_t e = rd_kafka_metadata(r->rk, 1, NULL, &md, wait_ms);

	if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		if (!*r->stop)
			rlog(r->v, LOG_ERROR, "could not list the Kafka cluster's topics at %s: %s", r->brokers,
				 rd_kafka_err2str(e));
		return -1;
	}
	for (int i = 0; i < n; i++)
		for (int t = 0; t < md->topic_cnt; t++)
			if (strcmp(md->topics[t].topic, want[i].topic) == 0 &&
				md->topics[t].err != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART)
			{
				want[i].exists = !want[i].created;
				if (md->topics[t].partition_cnt > 0)
					want[i].replicas = md->topics[t].partitions[0].replica_cnt;
				break;
			}
	rd_kafka_metadata_destroy(md);
	return 0;
}

/* The fix for a topic Kafka refused to create (the broker's message is msg). */
static const char *
create_fix(Relay *r, rd_kafka_resp_err_t err, const char *topic, const char *msg, char *buf, size_t len)
{
	const RelayConfig *cfg = r->cfg;

	switch (err)
	{
		case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
			for (int i = cfg->ntopic_configs - 1; i >= 0; i--)
				if (msg != NULL && strstr(msg, cfg->topic_configs[i].key) != NULL)
				{
					snprintf(buf, len, "correct or remove the setting --topic-config %s=%s",
							 cfg->topic_configs[i].key, cfg->topic_configs[i].value);
					return buf;
				}
			return "correct or remove the --topic-config settings (topic-config in the config file)";
		case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
			return "change --topic-partitions (or -1 for the brokers' num.partitions)";
		case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
			return "set --topic-replication-factor to at most the number of brokers (or -1 for the "
				"brokers' default.replication.factor)";
		case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
		case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
		case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
			snprintf(buf, len, "grant the relay's Kafka principal CREATE on the topic (and DESCRIBE_CONFIGS), "
					 "or create it beforehand: kafka-topics --create --topic %s --config cleanup.policy=...",
					 topic);
			return buf;
		case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
			return "Kafka refused the topic's name (a topic whose name differs only by '.' vs '_' exists?): "
				"exclude the table with --exclude-tables or rename it";
		default:
			return "see the error above; the broker's log says more";
	}
}

/*
 * Create the topics of want[] that do not exist (validate_only: ask whether
 * the table topic settings would be taken, for the one want given, creating
 * nothing).  0 when done, 1 when the cluster has no CreateTopics (switched to
 * auto-creation), -1 on failure (logged; fatal_set when Kafka refused).
 */
static int
create_topics(Relay *r, Want *want, int n, bool validate_only, int64_t deadline)
{
	const RelayConfig *cfg = r->cfg;
	rd_kafka_NewTopic_t **nt = calloc((size_t) n + 1, sizeof(rd_kafka_NewTopic_t *));
	TopicSetting *set = calloc((size_t) cfg->ntopic_configs + 1, sizeof(TopicSetting));
	int		   *index = calloc((size_t) n + 1, sizeof(int));
	rd_kafka_AdminOptions_t *opt;
	rd_kafka_queue_t *q;
	rd_kafka_event_t *ev;
	int			k = 0,
				rc = 0;
	char		err[512];

	if (nt == NULL || set == NULL || index == NULL)
		relay_out_of_memory();
	for (int i = 0; i < n; i++)
	{
		Want	   *w = &want[i];
		int			nset;

		if (w->exists)
			continue;
		nt[k] = rd_kafka_NewTopic_new(w->topic,
									  w->kind == TOPIC_STATE || w->kind == TOPIC_DDL ? 1 : cfg->topic_partitions,
									  cfg->topic_replication_factor, err, sizeof(err));
		if (nt[k] == NULL)
		{
			rlog(r->v, LOG_ERROR, "could not prepare the creation of Kafka topic %s: %s", w->topic, err);
			rc = -1;
			goto out;
		}
		nset = config_topic_settings(cfg, is_table_kind(w->kind),
									 w->kind == TOPIC_STATE || w->kind == TOPIC_TABLE_KEYED ||
									 w->kind == TOPIC_SCHEMAS, set);
		for (int s = 0; s < nset; s++)
		{
			rd_kafka_NewTopic_set_config(nt[k], set[s].name, set[s].value);
			if (strcmp(set[s].name, "cleanup.policy") == 0)
				snprintf(w->policy, sizeof(w->policy), "%s", set[s].value);
		}
		index[k++] = i;
	}
	if (k == 0)
		goto out;
	opt = admin_options(r, RD_KAFKA_ADMIN_OP_CREATETOPICS, deadline);
	if (validate_only)
		rd_kafka_AdminOptions_set_validate_only(opt, 1, err, sizeof(err));
	q = rd_kafka_queue_new(r->rk);
	rd_kafka_CreateTopics(r->rk, nt, (size_t) k, opt, q);
	rd_kafka_AdminOptions_destroy(opt);
	ev = wait_result(r, q, deadline);
	if (ev == NULL || rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		rd_kafka_resp_err_t e = ev ? rd_kafka_event_error(ev) : RD_KAFKA_RESP_ERR__TIMED_OUT;

		if (e == RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE)
		{
			use_auto_create(r, "has no CreateTopics");
			rc = 1;
		}
		else
		{
			if (!*r->stop)
				rlog(r->v, LOG_ERROR, "could not create Kafka topic%s %s%s within %d s: %s; fix: check that "
					 "the cluster's controller is up and reachable from here",
					 k > 1 ? "s" : "", want[index[0]].topic, k > 1 ? " (and others)" : "",
					 ADMIN_WAIT_MS / 1000, ev ? rd_kafka_event_error_string(ev) : "no answer");
			rc = -1;
		}
	}
	else
	{
		size_t		nres = 0;
		const rd_kafka_topic_result_t **res =
			rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(ev), &nres);
		int			nfailed = 0;
		rd_kafka_resp_err_t first_err = RD_KAFKA_RESP_ERR_NO_ERROR;
		const char *first_msg = NULL;
		Want	   *first = NULL;

		for (size_t j = 0; j < nres; j++)
		{
			rd_kafka_resp_err_t e = rd_kafka_topic_result_error(res[j]);
			const char *name = rd_kafka_topic_result_name(res[j]);
			Want	   *w = NULL;

			for (int i = 0; i < k && w == NULL; i++)
				if (strcmp(want[index[i]].topic, name) == 0)
					w = &want[index[i]];
			if (w == NULL)
				continue;
			if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
				w->created = !validate_only;
			else if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS && !validate_only)
			{
				w->exists = true;	/* another client was quicker */
				w->policy[0] = '\0';
			}
			else if (nfailed++ == 0)
			{
				first = w;
				first_err = e;
				first_msg = rd_kafka_topic_result_error_string(res[j]);
			}
		}
		if (nfailed > 0)
		{
			char		fixbuf[600];
			const char *fix = create_fix(r, first_err, first->topic, first_msg, fixbuf, sizeof(fixbuf));

			if (validate_only)
				rlog(r->v, LOG_ERROR, "Kafka refuses the settings for the topics cdc-relay creates: "
					 "%s (%s); fix: %s", first_msg ? first_msg : rd_kafka_err2str(first_err),
					 rd_kafka_err2name(first_err), fix);
			else
				rlog(r->v, LOG_ERROR, "could not create Kafka topic %s%s%s: %s (%s)%s; fix: %s",
					 first->topic, first->table ? " for table " : "", first->table ? first->table : "",
					 first_msg ? first_msg : rd_kafka_err2str(first_err), rd_kafka_err2name(first_err),
					 nfailed > 1 ? ", and so for other topics" : "", fix);
			snprintf(r->fatal, sizeof(r->fatal), "Kafka refused to create a topic (see above)");
			r->fatal_set = true;
			rc = -1;
		}
	}
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
out:
	rd_kafka_NewTopic_destroy_array(nt, (size_t) k);
	free(nt);
	free(set);
	free(index);
	return rc;
}

/*
 * Read cleanup.policy and min.insync.replicas of want[] (existing or just
 * created).  Best effort: what cannot be read is not checked (one warning).
 */
static void
describe_topics(Relay *r, Want *want, int n, int64_t deadline)
{
	rd_kafka_ConfigResource_t **res = calloc((size_t) n + 1, sizeof(rd_kafka_ConfigResource_t *));
	rd_kafka_AdminOptions_t *opt;
	rd_kafka_queue_t *q;
	rd_kafka_event_t *ev;
	char		problem[400] = "";

	if (res == NULL)
		relay_out_of_memory();
	for (int i = 0; i < n; i++)
		res[i] = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, want[i].topic);
	opt = admin_options(r, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS, deadline);
	q = rd_kafka_queue_new(r->rk);
	rd_kafka_DescribeConfigs(r->rk, res, (size_t) n, opt, q);
	rd_kafka_AdminOptions_destroy(opt);
	ev = wait_result(r, q, deadline);
	if (ev == NULL || rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR)
		snprintf(problem, sizeof(problem), "%s", ev ? rd_kafka_event_error_string(ev) : "no answer in time");
	else
	{
		size_t		nr = 0;
		const rd_kafka_ConfigResource_t **rs =
			rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &nr);

		for (size_t j = 0; j < nr; j++)
		{
			const char *name = rd_kafka_ConfigResource_name(rs[j]);
			rd_kafka_resp_err_t e = rd_kafka_ConfigResource_error(rs[j]);
			const rd_kafka_ConfigEntry_t **cs;
			size_t		nc = 0;
			Want	   *w = NULL;

			for (int i = 0; i < n && w == NULL; i++)
				if (strcmp(want[i].topic, name) == 0)
					w = &want[i];
			if (w == NULL)
				continue;
			if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
			{
				/* a topic just created may not have reached this broker yet */
				if (e != RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART && problem[0] == '\0')
					snprintf(problem, sizeof(problem), "%s: %s", name,
							 rd_kafka_ConfigResource_error_string(rs[j]) ?
							 rd_kafka_ConfigResource_error_string(rs[j]) : rd_kafka_err2str(e));
				continue;
			}
			cs = rd_kafka_ConfigResource_configs(rs[j], &nc);
			for (size_t c = 0; c < nc; c++)
			{
				const char *cn = rd_kafka_ConfigEntry_name(cs[c]);
				const char *cv = rd_kafka_ConfigEntry_value(cs[c]);

				if (cv == NULL)
					continue;
				if (strcmp(cn, "cleanup.policy") == 0)
					snprintf(w->policy, sizeof(w->policy), "%s", cv);
				else if (strcmp(cn, "min.insync.replicas") == 0)
					w->min_isr = atoi(cv);
			}
		}
	}
	if (problem[0] != '\0' && !*r->stop)
		rlog(r->v, LOG_WARNING, "could not read the configs of Kafka topic%s %s%s: %s; their cleanup.policy and "
			 "min.insync.replicas are not checked (the relay's principal needs DESCRIBE_CONFIGS on them)",
			 n > 1 ? "s" : "", want[0].topic, n > 1 ? " and others" : "", problem);
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_ConfigResource_destroy_array(res, (size_t) n);
	free(res);
}

#define ALTER_FMT "kafka-configs --bootstrap-server %s --alter --entity-type topics --entity-name %s --add-config "

/* The warnings about want[]'s configs (see the top of the file). */
static void
warn_topics(Relay *r, const Want *want, int n)
{
	for (int i = 0; i < n; i++)
	{
		const Want *w = &want[i];
		bool		compacts = strstr(w->policy, "compact") != NULL;

		if (w->policy[0] != '\0' && w->exists && !compacts && w->kind == TOPIC_STATE)
			rlog(r->v, LOG_WARNING, "state topic %s has cleanup.policy=%s: its records expire with the "
				 "topic's retention, and then the next start takes the whole snapshot again; fix: "
				 "kafka-configs --alter --entity-type topics --entity-name %s --add-config cleanup.policy=compact",
				 w->topic, w->policy, w->topic);
		else if (w->policy[0] != '\0' && w->exists && !compacts && w->kind == TOPIC_TABLE_KEYED)
			rlog(r->v, LOG_WARNING, "topic %s of table %s, which has a key, has cleanup.policy=%s: Kafka "
				 "deletes its records after the retention time, so the topic stops holding the last "
				 "record of each row; fix: " ALTER_FMT "cleanup.policy=compact",
				 w->topic, w->table, w->policy, r->brokers, w->topic);
		else if (compacts && w->kind == TOPIC_TABLE_KEYLESS)
			rlog(r->v, LOG_WARNING, "topic %s of table %s, which has no key (no primary key and no replica "
				 "identity index), has cleanup.policy=%s: Kafka refuses its changes (they have no Kafka key), "
				 "and the relay stops at the first one; fix: " ALTER_FMT "cleanup.policy=delete, or give "
				 "the table a primary key", w->topic, w->table, w->policy, r->brokers, w->topic);
		if (w->min_isr == 1 && w->replicas > 1)
			rlog(r->v, LOG_WARNING, "topic %s has replication factor %d but min.insync.replicas=1: with "
				 "acks=all Kafka acknowledges a message once its leader alone has it, and a change the "
				 "relay confirmed is lost with that broker; fix: " ALTER_FMT "min.insync.replicas=2",
				 w->topic, w->replicas, r->brokers, w->topic);
	}
}

/* The log line(s) about the topics created. */
static void
log_created(Relay *r, const Want *want, int n, int64_t started)
{
	int			ncreated = 0;
	char		names[400] = "";
	size_t		len = 0;

	for (int i = 0; i < n; i++)
	{
		const Want *w = &want[i];

		if (!w->created)
			continue;
		rlog(r->v, LOG_DEBUG, "created Kafka topic %s (cleanup.policy=%s)", w->topic, w->policy);
		if (ncreated++ < 3 && len < sizeof(names))
			len += (size_t) snprintf(names + len, sizeof(names) - len, "%s%s", len ? ", " : "", w->topic);
	}
	if (ncreated == 1)
		for (int i = 0; i < n; i++)
			if (want[i].created)
				rlog(r->v, LOG_INFO, "created Kafka topic %s%s%s (cleanup.policy=%s)", want[i].topic,
					 want[i].table ? " for table " : "", want[i].table ? want[i].table : "", want[i].policy);
	if (ncreated > 1)
		rlog(r->v, LOG_INFO, "created %d Kafka topics in %lld ms: %s%s", ncreated,
			 (long long) (now_ms() - started), names, ncreated > 3 ? ", ..." : "");
}

/*
 * Make sure of want[] (see the top of the file).  check_settings: first have
 * the brokers validate the --topic-* settings (CreateTopics validate-only
 * for a table topic that does not exist), so that bad ones are found at
 * start even when every topic exists, and before any topic is created.  0
 * when done (or when the cluster turned out to have no CreateTopics), -1 on
 * failure.
 */
static int
ensure(Relay *r, Want *want, int n, bool check_settings)
{
	int64_t		started = now_ms(),
				deadline = started + ADMIN_WAIT_MS;
	bool		any_missing = false,
				need_replicas = false;
	int			rc;

	if (list_topics(r, want, n, deadline) != 0)
		return -1;
	for (int i = 0; i < n; i++)
		any_missing |= !want[i].exists;
	/* bad settings: found before anything is created (CreateTopics is atomic per topic only) */
	if (check_settings && user_settings_given(r->cfg))
	{
		Want		probe;

		memset(&probe, 0, sizeof(probe));
		snprintf(probe.topic, sizeof(probe.topic), "%s" SETTINGS_CHECK_SUFFIX, r->cfg->topic_prefix);
		probe.kind = TOPIC_TABLE_KEYED;
		if (list_topics(r, &probe, 1, deadline) != 0)
			return -1;
		rc = probe.exists ? 0 : create_topics(r, &probe, 1, true, deadline);
		if (rc != 0)
			return rc > 0 ? 0 : -1;
	}
	if (any_missing)
	{
		rc = create_topics(r, want, n, false, deadline);
		if (rc != 0)
			return rc > 0 ? 0 : -1;
	}
	describe_topics(r, want, n, deadline);
	for (int i = 0; i < n; i++)
		need_replicas |= want[i].created && want[i].min_isr == 1;
	if (need_replicas)
		(void) list_topics(r, want, n, deadline);
	log_created(r, want, n, started);
	warn_topics(r, want, n);
	for (int i = 0; i < n; i++)
		mark_done(r, want[i].topic);
	rlog(r->v, LOG_DEBUG, "made sure of %d Kafka topic%s in %lld ms", n, n > 1 ? "s" : "",
		 (long long) (now_ms() - started));
	return 0;
}

static void
want_init(Want *w, const char *topic, const char *table, TopicKind kind)
{
	memset(w, 0, sizeof(*w));
	snprintf(w->topic, sizeof(w->topic), "%s", topic);
	w->table = table;
	w->kind = kind;
}

/*
 * Whether a table has a key, by the plugin's rule (its key_index()): a
 * valid, unique, immediate, non-partial index that is the primary key, or
 * the replica identity index under REPLICA IDENTITY USING INDEX; for a
 * partitioned table (--partition-root), every leaf partition must have one.
 */
#define HAS_KEY_SQL \
	"pg_catalog.bool_and(EXISTS (SELECT FROM pg_catalog.pg_index i" \
	" WHERE i.indrelid = c.oid AND i.indisvalid AND i.indisunique AND i.indimmediate" \
	" AND i.indpred IS NULL AND (i.indisprimary OR (c.relreplident = 'i' AND i.indisreplident))))"

int
admin_list_start(Relay *r, PGconn *conn)
{
	const RelayConfig *cfg = r->cfg;
	RelayAdmin *a = r->admin;
	int			ntables = 0,
				rc = 0;
	PGresult   *res = NULL;
	char		topic[TOPIC_MAX_LEN + 1];

	free_start(a);
	if (r->have_extension)
	{
		char	   *arr = pg_plugin_options_array(r);
		const char *params[1] = {arr};
		char		ebuf[1024];

		res = pg_exec(r, conn,
					  "SELECT t.schema_name, t.table_name, " HAS_KEY_SQL
					  " FROM cdc_relay.snapshot_tables($1::pg_catalog.text[]) t"
					  " JOIN pg_catalog.pg_class c ON c.oid = t.relid::pg_catalog.oid"
					  " GROUP BY t.schema_name, t.table_name", 1, params);
		free(arr);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			if (!*r->stop)
				rlog(r->v, LOG_ERROR, "could not list the tables to capture and their keys: %s",
					 pg_res_error(r, conn, res, ebuf, sizeof(ebuf)));
			PQclear(res);
			return -1;
		}
		ntables = PQntuples(res);
	}
	a->start = calloc((size_t) ntables + 5, sizeof(Want));
	a->start_tables = calloc((size_t) ntables + 1, sizeof(char *));
	if (a->start == NULL || a->start_tables == NULL)
		relay_out_of_memory();
	want_init(&a->start[a->nstart++], cfg->state_topic, NULL, TOPIC_STATE);
	snprintf(topic, sizeof(topic), "%s.messages", cfg->topic_prefix);
	want_init(&a->start[a->nstart++], topic, NULL, TOPIC_MESSAGES);
	if (cfg->txn_records)
	{
		/* keyed by xid, begin and end record under one key: never compacted */
		snprintf(topic, sizeof(topic), "%s.transactions", cfg->topic_prefix);
		want_init(&a->start[a->nstart++], topic, NULL, TOPIC_MESSAGES);
	}
	snprintf(topic, sizeof(topic), "%s.schemas", cfg->topic_prefix);
	want_init(&a->start[a->nstart++], topic, NULL, TOPIC_SCHEMAS);
	snprintf(topic, sizeof(topic), "%s.ddl", cfg->topic_prefix);
	want_init(&a->start[a->nstart++], topic, NULL, TOPIC_DDL);
	for (int i = 0; i < ntables; i++)
	{
		const char *schema = PQgetvalue(res, i, 0);
		const char *table = PQgetvalue(res, i, 1);
		char	   *disp = table_display_name(schema, table);

		if (disp == NULL)
			relay_out_of_memory();
		a->start_tables[a->nstart_tables++] = disp;
		topic_for_table(cfg->topic_prefix, schema, strlen(schema), table, strlen(table), topic);
		want_init(&a->start[a->nstart++], topic, disp,
				  strcmp(PQgetvalue(res, i, 2), "t") == 0 ? TOPIC_TABLE_KEYED : TOPIC_TABLE_KEYLESS);
	}
	PQclear(res);
	/* the relay's own topics first: a table's topic that collides with one names the table */
	for (int i = 0; i < a->nstart && rc == 0; i++)
		rc = topic_register(r, a->start[i].topic, a->start[i].table);
	return rc;
}

int
admin_ensure_start(Relay *r)
{
	RelayAdmin *a = r->admin;
	int			rc = a->auto_create ? 0 : ensure(r, a->start, a->nstart, true);

	free_start(a);
	return rc;
}

/* Ask the catalog whether schema.table has a key: 1 yes, 0 no, -1 could not ask. */
static int
catalog_has_key(Relay *r, const char *schema, const char *table)
{
	const char *params[2] = {schema, table};
	PGresult   *res;
	char		ebuf[1024];
	int			rc;

	if (r->guard == NULL)
		return -1;
	/* the table itself, or a partitioned table's leaves (pg_partition_tree has no plain tables) */
	res = pg_exec(r, r->guard,
				  "SELECT " HAS_KEY_SQL " FROM pg_catalog.pg_class t"
				  " JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace"
				  " CROSS JOIN LATERAL (SELECT t.oid AS relid WHERE t.relkind <> 'p'"
				  "  UNION ALL SELECT p.relid::pg_catalog.oid"
				  "  FROM pg_catalog.pg_partition_tree(t.oid::pg_catalog.regclass) p"
				  "  WHERE t.relkind = 'p' AND p.isleaf) l"
				  " JOIN pg_catalog.pg_class c ON c.oid = l.relid"
				  " WHERE n.nspname = $1 AND t.relname = $2", 2, params);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		if (!*r->stop)
			rlog(r->v, LOG_ERROR, "could not look up whether table %s.%s has a key: %s", schema, table,
				 pg_error(r, r->guard, ebuf, sizeof(ebuf)));
		PQclear(res);
		return -1;
	}
	/* no such table (dropped since): keyed, which takes the truncate marker key */
	rc = PQgetisnull(res, 0, 0) || strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return rc;
}

int
admin_ensure_table(Relay *r, const char *topic, const char *schema, const char *table,
				   const char *display, int has_key)
{
	Want		w;

	if (r->admin == NULL || r->admin->auto_create || is_done(r, topic))
		return 0;
	if (has_key < 0)
		has_key = catalog_has_key(r, schema, table);
	if (has_key < 0)
		return -1;
	want_init(&w, topic, display, has_key ? TOPIC_TABLE_KEYED : TOPIC_TABLE_KEYLESS);
	return ensure(r, &w, 1, false);
}
