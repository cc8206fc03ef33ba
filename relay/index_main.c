/*
 * index_main.c: the cdc-index program's command line: `cdc-index run` (options
 * here, the consumer in index_run.c) follows the relay's table topics into a
 * SQLite database, and `cdc-index search` queries it.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "index.h"
#include "log.h"
#include "topic.h"

#define TRY_HELP "Try \"cdc-index --help\" for more information.\n"

static volatile sig_atomic_t stop_requested;

static void
on_signal(int sig)
{
	if (sig != SIGHUP)
		stop_requested = 1;
}

static void
usage(void)
{
	printf("cdc-index keeps a SQLite full-text search index that follows cdc-relay's table topics.\n\n"
		   "Usage:\n"
		   "  cdc-index run -b BROKERS --db FILE --topic-prefix PREFIX --table SCHEMA.TABLE[:COL,...]... [OPTION]...\n"
		   "  cdc-index search --db FILE [--table SCHEMA.TABLE] [--limit N] [--json] QUERY\n\n"
		   "run options:\n"
		   "  -b, --brokers=LIST         Kafka bootstrap servers\n"
		   "      --db=FILE              the SQLite database (created when missing)\n"
		   "      --topic-prefix=PREFIX  the relay's --topic-prefix\n"
		   "      --table=S.T[:C1,C2]    follow table S.T (topic PREFIX.S.T); index its text columns C1, C2\n"
		   "                             with FTS5 (repeat for more tables; without columns: rows only)\n"
		   "      --serve=ADDR           answer GET /search?q=...&table=&limit= with JSON on ADDR\n"
		   "                             (HOST:PORT, :PORT or PORT; port 0: any free port, logged)\n"
		   "      --metrics=ADDR         Prometheus metrics on GET /metrics (may equal --serve)\n"
		   "      --batch=N              messages per SQLite transaction at most (default 1000)\n"
		   "      --skip=TOPIC:PARTITION:OFFSET  step over this one record (after a bad-record error)\n"
		   "  -X KEY=VALUE               a librdkafka consumer setting\n"
		   "  -v, --verbose              more log lines (twice: debug)\n"
		   "search options:\n"
		   "      --db=FILE              the database `run` maintains\n"
		   "      --table=S.T            only this table\n"
		   "      --limit=N              at most N results (default 10)\n"
		   "      --json                 one JSON object {\"query\", \"results\": [...]}\n"
		   "  QUERY is an SQLite FTS5 query: words (all must match), \"a phrase\", a OR b, pre*.\n"
		   "  Output: rank (bm25, lower is better) TAB table TAB key TAB snippet, best first.\n\n"
		   "Other:\n"
		   "  -h, --help                 this help\n"
		   "  -V, --version              the version\n\n"
		   "Exit status: 0 ok (run: stopped by SIGTERM/SIGINT), 1 error, 2 bad usage.\n");
}

static char *
xasprintf(const char *fmt, const char *a, const char *b)
{
	char	   *s;

	if (asprintf(&s, fmt, a, b) < 0)
		relay_out_of_memory();
	return s;
}

/*
 * Parse "schema.table[:col1,col2]" (no schema: public) into t.  Names are
 * taken as written (no SQL quoting).  0, or -1 with the reason printed.
 */
static int
parse_table(const char *arg, const char *prefix, IndexTable *t)
{
	char	   *spec = relay_strdup(arg),
			   *colon = strchr(spec, ':'),
			   *dot;
	char		topic[TOPIC_MAX_LEN + 1];

	memset(t, 0, sizeof(*t));
	if (colon)
		*colon = '\0';
	dot = strchr(spec, '.');
	t->schema = relay_strdup(dot ? spec : "public");
	if (dot)
		t->schema[dot - spec] = '\0';
	t->table = relay_strdup(dot ? dot + 1 : spec);
	if (t->schema[0] == '\0' || t->table[0] == '\0')
	{
		fprintf(stderr, "cdc-index: bad --table \"%s\" (expected SCHEMA.TABLE[:COL1,COL2])\n", arg);
		free(spec);
		return -1;
	}
	t->source = xasprintf("%s.%s", t->schema, t->table);
	t->rows_name = relay_strdup(t->source);
	topic_for_table(prefix, t->schema, strlen(t->schema), t->table, strlen(t->table), topic);
	t->topic = relay_strdup(topic);
	t->cols_text = relay_strdup(colon ? colon + 1 : "");
	if (colon)
	{
		char	   *save = NULL;

		for (char *c = strtok_r(colon + 1, ",", &save); c; c = strtok_r(NULL, ",", &save))
		{
			if (strchr(c, '"') || strcasecmp(c, "rank") == 0 || strcasecmp(c, "rowid") == 0 ||
				strcasecmp(c, "cdc_key") == 0)
			{
				fprintf(stderr, "cdc-index: column name \"%s\" of --table \"%s\" cannot be indexed "
						"(names with '\"', and rank, rowid, cdc_key, are reserved by the index)\n", c, arg);
				free(spec);
				return -1;
			}
			t->cols = realloc(t->cols, (t->ncols + 1) * sizeof(char *));
			if (t->cols == NULL)
				relay_out_of_memory();
			t->cols[t->ncols++] = relay_strdup(c);
		}
	}
	t->fts_name = t->ncols > 0 ? xasprintf("%s%s", t->source, ".fts") : relay_strdup("");
	free(spec);
	return 0;
}

static void
free_tables(IndexTable *tables, int n)
{
	for (int i = 0; i < n; i++)
	{
		IndexTable *t = &tables[i];

		free(t->source);
		free(t->schema);
		free(t->table);
		free(t->topic);
		for (int j = 0; j < t->ncols; j++)
			free(t->cols[j]);
		free(t->cols);
		free(t->cols_text);
		free(t->rows_name);
		free(t->fts_name);
	}
	free(tables);
}

static int
parse_int(const char *s, long lo, long hi, long *out)
{
	char	   *end;

	errno = 0;
	*out = strtol(s, &end, 10);
	return (s[0] == '\0' || *end != '\0' || errno != 0 || *out < lo || *out > hi) ? -1 : 0;
}

enum
{
	OPT_DB = 256, OPT_PREFIX, OPT_TABLE, OPT_SERVE, OPT_METRICS, OPT_BATCH, OPT_SKIP, OPT_LIMIT, OPT_JSON
};

static int
cmd_run(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"brokers", required_argument, NULL, 'b'},
		{"db", required_argument, NULL, OPT_DB},
		{"topic-prefix", required_argument, NULL, OPT_PREFIX},
		{"table", required_argument, NULL, OPT_TABLE},
		{"serve", required_argument, NULL, OPT_SERVE},
		{"metrics", required_argument, NULL, OPT_METRICS},
		{"batch", required_argument, NULL, OPT_BATCH},
		{"skip", required_argument, NULL, OPT_SKIP},
		{"verbose", no_argument, NULL, 'v'},
		{NULL, 0, NULL, 0}
	};
	RunOpts		o;
	char	  **table_args = NULL;
	int			ntable_args = 0,
				c,
				status = 2;
	long		n;

	memset(&o, 0, sizeof(o));
	o.batch = 1000;
	o.v = LOG_INFO;
	optind = 1;
	while ((c = getopt_long(argc, argv, "b:X:v", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 'b':
				o.brokers = optarg;
				break;
			case OPT_DB:
				o.db_path = optarg;
				break;
			case OPT_PREFIX:
				o.prefix = optarg;
				break;
			case OPT_TABLE:
				table_args = realloc(table_args, (ntable_args + 1) * sizeof(char *));
				if (table_args == NULL)
					relay_out_of_memory();
				table_args[ntable_args++] = optarg;
				break;
			case OPT_SERVE:
				o.serve = optarg;
				break;
			case OPT_METRICS:
				o.metrics = optarg;
				break;
			case OPT_BATCH:
				if (parse_int(optarg, 1, 1000000, &n) != 0)
				{
					fprintf(stderr, "cdc-index: bad --batch \"%s\" (1 to 1000000)\n", optarg);
					goto out;
				}
				o.batch = (int) n;
				break;
			case OPT_SKIP:
				{
					char	   *a = relay_strdup(optarg),
							   *c2 = strrchr(a, ':'),
							   *c1;
					long		p;
					char	   *end;
					long long	off;

					c1 = c2 ? memrchr(a, ':', c2 - a) : NULL;
					if (c1 == NULL)
					{
						fprintf(stderr, "cdc-index: bad --skip \"%s\" (expected TOPIC:PARTITION:OFFSET)\n", optarg);
						free(a);
						goto out;
					}
					*c1 = *c2 = '\0';
					errno = 0;
					off = strtoll(c2 + 1, &end, 10);
					if (parse_int(c1 + 1, 0, INT32_MAX, &p) != 0 || *end != '\0' || errno || off < 0)
					{
						fprintf(stderr, "cdc-index: bad --skip \"%s\" (expected TOPIC:PARTITION:OFFSET)\n", optarg);
						free(a);
						goto out;
					}
					o.skips = realloc(o.skips, (o.nskips + 1) * sizeof(SkipPoint));
					if (o.skips == NULL)
						relay_out_of_memory();
					o.skips[o.nskips++] = (SkipPoint) {a, (int32_t) p, off};
				}
				break;
			case 'X':
				o.kafka_conf = realloc(o.kafka_conf, (o.nkafka_conf + 1) * sizeof(char *));
				if (o.kafka_conf == NULL)
					relay_out_of_memory();
				o.kafka_conf[o.nkafka_conf++] = optarg;
				break;
			case 'v':
				o.v++;
				break;
			default:
				fprintf(stderr, TRY_HELP);
				goto out;
		}
	}
	if (optind < argc)
	{
		fprintf(stderr, "cdc-index: unexpected argument \"%s\"\n" TRY_HELP, argv[optind]);
		goto out;
	}
	if (!o.brokers || !o.db_path || !o.prefix || ntable_args == 0)
	{
		fprintf(stderr, "cdc-index: run needs -b BROKERS, --db FILE, --topic-prefix PREFIX and at least one --table\n"
				TRY_HELP);
		goto out;
	}
	if (!topic_prefix_valid(o.prefix))
	{
		fprintf(stderr, "cdc-index: bad --topic-prefix \"%s\" (1 to 100 characters of a-z A-Z 0-9 . _ -)\n", o.prefix);
		goto out;
	}
	o.tables = calloc(ntable_args, sizeof(IndexTable));
	if (o.tables == NULL)
		relay_out_of_memory();
	for (int i = 0; i < ntable_args; i++)
	{
		if (parse_table(table_args[i], o.prefix, &o.tables[i]) != 0)
		{
			o.ntables = i + 1;
			goto out;
		}
		o.ntables = i + 1;
		for (int j = 0; j < i; j++)
			if (strcmp(o.tables[j].source, o.tables[i].source) == 0)
			{
				fprintf(stderr, "cdc-index: --table %s given twice\n", o.tables[i].source);
				goto out;
			}
	}
	if (o.serve)
	{
		char		host[128],
					err[256];
		int			port;

		if (http_parse_addr(o.serve, host, sizeof(host), &port, err, sizeof(err)) != 0)
		{
			fprintf(stderr, "cdc-index: bad --serve: %s\n", err);
			goto out;
		}
	}
	if (o.metrics)
	{
		char		host[128],
					err[256];
		int			port;

		if (http_parse_addr(o.metrics, host, sizeof(host), &port, err, sizeof(err)) != 0)
		{
			fprintf(stderr, "cdc-index: bad --metrics: %s\n", err);
			goto out;
		}
	}
	o.stop = &stop_requested;
	status = index_run(&o);
out:
	free_tables(o.tables, o.ntables);
	for (int i = 0; i < o.nskips; i++)
		free(o.skips[i].topic);
	free(o.skips);
	free(o.kafka_conf);
	free(table_args);
	return status;
}

static int
cmd_search(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"db", required_argument, NULL, OPT_DB},
		{"table", required_argument, NULL, OPT_TABLE},
		{"limit", required_argument, NULL, OPT_LIMIT},
		{"json", no_argument, NULL, OPT_JSON},
		{NULL, 0, NULL, 0}
	};
	const char *db_path = NULL,
			   *table = NULL;
	long		limit = 10;
	bool		json = false;
	int			c,
				n;
	char		err[1024];
	sqlite3    *db;
	IndexHit   *hits;

	optind = 1;
	while ((c = getopt_long(argc, argv, "", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case OPT_DB:
				db_path = optarg;
				break;
			case OPT_TABLE:
				table = optarg;
				break;
			case OPT_LIMIT:
				if (parse_int(optarg, 1, 1000000, &limit) != 0)
				{
					fprintf(stderr, "cdc-index: bad --limit \"%s\"\n", optarg);
					return 2;
				}
				break;
			case OPT_JSON:
				json = true;
				break;
			default:
				fprintf(stderr, TRY_HELP);
				return 2;
		}
	}
	if (db_path == NULL || optind != argc - 1)
	{
		fprintf(stderr, "cdc-index: search needs --db FILE and one QUERY\n" TRY_HELP);
		return 2;
	}
	if (access(db_path, R_OK) != 0)
	{
		fprintf(stderr, "cdc-index: could not read database \"%s\": %s\n", db_path, strerror(errno));
		return 1;
	}
	if ((db = idx_open(db_path, true, err, sizeof(err))) == NULL)
	{
		fprintf(stderr, "cdc-index: %s\n", err);
		return 1;
	}
	n = idx_search(db, table, argv[optind], (int) limit, &hits, err, sizeof(err));
	sqlite3_close(db);
	if (n < 0)
	{
		fprintf(stderr, "cdc-index: %s\n", err);
		return 1;
	}
	if (json)
	{
		json_t	   *obj = idx_hits_json(argv[optind], hits, n);

		json_dumpf(obj, stdout, JSON_COMPACT);
		putchar('\n');
		json_decref(obj);
	}
	else
		for (int i = 0; i < n; i++)
			printf("%.6g\t%s\t%s\t%s\n", hits[i].rank, hits[i].table, hits[i].key, hits[i].snippet);
	idx_free_hits(hits, n);
	return 0;
}

int
main(int argc, char **argv)
{
	relay_catch_signals(on_signal);
	if (argc < 2)
	{
		fprintf(stderr, "cdc-index: missing command (run or search)\n" TRY_HELP);
		return 2;
	}
	if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)
	{
		usage();
		return 0;
	}
	if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0)
	{
		printf("cdc-index %s\n", CDC_RELAY_VERSION);
		return 0;
	}
	if (strcmp(argv[1], "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(argv[1], "search") == 0)
		return cmd_search(argc - 1, argv + 1);
	fprintf(stderr, "cdc-index: unknown command \"%s\"\n" TRY_HELP, argv[1]);
	return 2;
}
