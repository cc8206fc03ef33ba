/*
 * relay_units.c: unit tests of the relay's pure modules, ring.c (in-flight
 * transactions, flush LSN only after delivery, in commit order), topic.c
 * (table -> Kafka topic names, topic collisions), redact.c (libpq error text
 * made safe and one line long, fed with libpq's own messages) and of
 * config.c's parsing (required options, refused Kafka properties, the config
 * file's comments, quotes, byte order mark and permission warning), and
 * scan.c (batched payloads split at '\n'; begin, commit and logical message
 * events read without JSON, checked against jansson).  TAP
 * output; exits non-zero on any failure.  Built and run by `make -C relay
 * check` (with ASan/UBSan).
 */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "config.h"
#include "online_keys.h"
#include "redact.h"
#include "ring.h"
#include "scan.h"
#include "topic.h"

static int	tests;
static int	failures;

/*
 * One TAP line: the condition is evaluated once (some have side effects); new
 * lines in the description (libpq's messages) are shown as "\n".
 */
#define CHECK(cond, ...) \
	do { \
		bool		ok_ = (cond); \
		char		d_[2048]; \
		tests++; \
		if (!ok_) \
			failures++; \
		snprintf(d_, sizeof(d_), __VA_ARGS__); \
		printf("%s %d - ", ok_ ? "ok" : "not ok", tests); \
		for (const char *c_ = d_; *c_; c_++) \
			fputs(*c_ == '\n' ? "\\n" : (char[2]) {*c_, 0}, stdout); \
		printf("\n"); \
		if (!ok_) \
			printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
	} while (0)

static void
test_ring_order(void)
{
	TxnRing    *r = ring_new();
	uint64_t	lsn = 0;
	txn_id		a, b, c;

	CHECK(r != NULL, "ring_new");
	CHECK(!ring_retire(r, &lsn), "empty ring retires nothing");

	a = ring_begin(r);
	CHECK(a == 1, "first id is 1");
	ring_add(r, a);
	ring_add(r, a);
	b = ring_begin(r);
	ring_add(r, b);
	ring_commit(r, a, 100);
	ring_commit(r, b, 200);
	CHECK(ring_pending(r) == 3, "3 messages pending");
	CHECK(!ring_retire(r, &lsn), "nothing delivered: nothing retired");

	/* b delivered first: still nothing, a is ahead of it */
	ring_delivered(r, b, true);
	CHECK(!ring_retire(r, &lsn), "later txn delivered first: nothing retired");
	ring_delivered(r, a, true);
	CHECK(!ring_retire(r, &lsn), "half of a delivered: nothing retired");
	ring_delivered(r, a, true);
	CHECK(ring_retire(r, &lsn) && lsn == 200, "a and b delivered: retire up to 200 (got %llu)",
		  (unsigned long long) lsn);
	CHECK(ring_count(r) == 0 && ring_pending(r) == 0, "ring empty afterwards");

	/* an open (not committed) transaction is never retired */
	c = ring_begin(r);
	CHECK(c == 3, "ids keep increasing (got %llu)", (unsigned long long) c);
	ring_add(r, c);
	ring_delivered(r, c, true);
	lsn = 0;
	CHECK(!ring_retire(r, &lsn) && lsn == 0, "delivered but uncommitted: not retired");
	ring_commit(r, c, 300);
	CHECK(ring_retire(r, &lsn) && lsn == 300, "committed: retired");

	/* a transaction with no messages (all filtered) retires at its commit */
	c = ring_begin(r);
	ring_commit(r, c, 400);
	CHECK(ring_retire(r, &lsn) && lsn == 400, "empty transaction retires at commit");
	ring_free(r);
}

static void
test_ring_failure(void)
{
	TxnRing    *r = ring_new();
	uint64_t	lsn = 0;
	txn_id		a, b;

	a = ring_begin(r);
	ring_add(r, a);
	ring_commit(r, a, 10);
	b = ring_begin(r);
	ring_add(r, b);
	ring_commit(r, b, 20);
	ring_delivered(r, a, false);
	ring_delivered(r, b, true);
	CHECK(ring_failed(r), "a failed delivery is reported");
	CHECK(!ring_retire(r, &lsn), "a failed transaction is never retired, nor anything after it");
	CHECK(!ring_delivered(r, a, true), "extra report for a transaction with nothing pending is refused");

	ring_reset(r);
	CHECK(ring_count(r) == 0 && !ring_failed(r), "reset empties the ring");
	CHECK(!ring_delivered(r, b, true), "late report of a forgotten transaction is ignored");
	a = ring_begin(r);
	CHECK(a == 3, "ids continue after reset (got %llu)", (unsigned long long) a);
	CHECK(!ring_add(r, 99), "unknown id refused");
	ring_free(r);
}

static void
test_ring_growth(void)
{
	TxnRing    *r = ring_new();
	uint64_t	lsn = 0;
	enum { N = 10000 };
	txn_id		ids[N];
	bool		ok = true;

	for (int i = 0; i < N; i++)
	{
		ids[i] = ring_begin(r);
		ring_add(r, ids[i]);
		ring_commit(r, ids[i], (uint64_t) (i + 1) * 10);
	}
	CHECK(ring_count(r) == N, "10000 transactions in flight");
	/* deliver in reverse order: nothing retires until the first is done */
	for (int i = N - 1; i > 0; i--)
		ring_delivered(r, ids[i], true);
	CHECK(!ring_retire(r, &lsn), "reverse delivery: blocked by the first");
	ring_delivered(r, ids[0], true);
	ok = ring_retire(r, &lsn);
	CHECK(ok && lsn == (uint64_t) N * 10, "then all retire at once, up to %llu",
		  (unsigned long long) lsn);

	/* interleaved: retire after each pair, wrapping around the buffer */
	ok = true;
	for (int i = 0; i < 3 * N; i++)
	{
		txn_id		t = ring_begin(r);

		ring_add(r, t);
		ring_commit(r, t, (uint64_t) i + 1000000);
		ring_delivered(r, t, true);
		if (!ring_retire(r, &lsn) || lsn != (uint64_t) i + 1000000)
			ok = false;
	}
	CHECK(ok, "steady state: each transaction retires right after its delivery");
	ring_free(r);
}

static void
check_topic(const char *schema, const char *table, const char *want)
{
	char		out[TOPIC_MAX_LEN + 1];

	topic_for_table("cdc", schema, strlen(schema), table, strlen(table), out);
	CHECK(strcmp(out, want) == 0, "topic of %s.%s is %s (got %s)", schema, table, want, out);
}

static bool
topic_chars_valid(const char *t)
{
	size_t		n = strlen(t);

	if (n == 0 || n > TOPIC_MAX_LEN)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-", t[i]))
			return false;
	return true;
}

static void
test_topics(void)
{
	char		a[TOPIC_MAX_LEN + 1];
	char		b[TOPIC_MAX_LEN + 1];
	char		longname[64];
	char		longname2[64];

	check_topic("public", "orders", "cdc.public.orders");
	check_topic("public", "order_items", "cdc.public.order_items");
	check_topic("Sales", "Q1", "cdc.Sales.Q1");
	check_topic("public", "odd name", "cdc.public.odd-20name");
	check_topic("public", "a.b", "cdc.public.a-2eb");
	check_topic("public", "a-b", "cdc.public.a-2db");
	check_topic("public", "\"q\"", "cdc.public.-22q-22");
	check_topic("public", "caf\xc3\xa9", "cdc.public.caf-c3-a9");

	/* the cases a naive mapping merges */
	topic_for_table("cdc", "a.b", 3, "c", 1, a);
	topic_for_table("cdc", "a", 1, "b.c", 3, b);
	CHECK(strcmp(a, b) != 0, "\"a.b\".c and a.\"b.c\" differ (%s, %s)", a, b);
	topic_for_table("cdc", "public", 6, "a b", 3, a);
	topic_for_table("cdc", "public", 6, "a_b", 3, b);
	CHECK(strcmp(a, b) != 0, "\"a b\" and a_b differ (%s, %s)", a, b);
	topic_for_table("cdc", "public", 6, "a-20", 4, a);
	topic_for_table("cdc", "public", 6, "a ", 2, b);
	CHECK(strcmp(a, b) != 0, "\"a-20\" and \"a \" differ (%s, %s)", a, b);

	/* 63-byte names of multi-byte characters: over 249, hashed */
	memset(longname, 0, sizeof(longname));
	for (int i = 0; i < 21; i++)
		memcpy(longname + i * 3, "\xe2\x82\xac", 3);	/* 21 euro signs */
	memcpy(longname2, longname, sizeof(longname));
	longname2[62] = (char) 0xad;	/* last character differs */
	topic_for_table("cdc", longname, 63, longname, 63, a);
	topic_for_table("cdc", longname, 63, longname2, 63, b);
	CHECK(strlen(a) <= TOPIC_MAX_LEN && topic_chars_valid(a), "long name gives a valid topic (%zu chars)", strlen(a));
	CHECK(strstr(a, "--") != NULL, "long name is marked with -- and a hash");
	CHECK(strcmp(a, b) != 0, "long names differing in the last byte differ");
	topic_for_table("cdc", longname, 63, longname, 63, b);
	CHECK(strcmp(a, b) == 0, "the mapping is deterministic");

	/* exhaustive-ish: every single byte 1..255 as a table name is valid and distinct */
	{
		char		seen[255][TOPIC_MAX_LEN + 1];
		bool		valid = true,
					distinct = true;

		for (int c = 1; c < 256; c++)
		{
			char		name[1] = {(char) c};

			topic_for_table("cdc", "s", 1, name, 1, seen[c - 1]);
			if (!topic_chars_valid(seen[c - 1]))
				valid = false;
			for (int d = 1; d < c; d++)
				if (strcmp(seen[d - 1], seen[c - 1]) == 0)
					distinct = false;
		}
		CHECK(valid, "all 255 one-byte names give valid topic names");
		CHECK(distinct, "all 255 one-byte names give distinct topics");
	}

	{
		char	   *d1 = table_display_name("public", "orders");
		char	   *d2 = table_display_name("Sales", "odd \"q\".x");
		char	   *d3 = table_display_name("s", "1abc");

		CHECK(strcmp(d1, "public.orders") == 0, "display name of a plain table (%s)", d1);
		CHECK(strcmp(d2, "\"Sales\".\"odd \"\"q\"\".x\"") == 0, "display name quotes like SQL (%s)", d2);
		CHECK(strcmp(d3, "s.\"1abc\"") == 0, "a name starting with a digit is quoted (%s)", d3);
		free(d1);
		free(d2);
		free(d3);
	}

	CHECK(topic_prefix_valid("cdc") && topic_prefix_valid("prod.cdc-1"), "valid prefixes accepted");
	CHECK(!topic_prefix_valid("") && !topic_prefix_valid("a b") && !topic_prefix_valid("a/b"),
		  "invalid prefixes refused");
}

/* ---- topic collisions ---- */

static void
test_topic_collisions(void)
{
	char		a[TOPIC_MAX_LEN + 1];
	char		b[TOPIC_MAX_LEN + 1];
	char		msg[512];
	size_t		i,
				j;

	CHECK(topic_names_collide("cdc.sales.order_items", "cdc.sales_order.items"),
		  "cdc.sales.order_items and cdc.sales_order.items collide");
	CHECK(topic_names_collide("a_b", "a.b") && topic_names_collide("a.b", "a_b"), "'.' and '_' collide both ways");
	CHECK(!topic_names_collide("cdc.public.t", "cdc.public.t"), "a topic does not collide with itself");
	CHECK(!topic_names_collide("a.b", "a-b") && !topic_names_collide("a.b", "a.bc") &&
		  !topic_names_collide("a.b", "A.b"), "'-', a longer name and another case do not collide");

	/* the relay's own names for the issue's tables */
	topic_for_table("cdc", "sales", 5, "order_items", 11, a);
	topic_for_table("cdc", "sales_order", 11, "items", 5, b);
	CHECK(strcmp(a, "cdc.sales.order_items") == 0 && strcmp(b, "cdc.sales_order.items") == 0,
		  "topic_for_table keeps '_': %s, %s", a, b);
	CHECK(topic_names_collide(a, b), "sales.order_items and sales_order.items give colliding topics");
	/* a '.' inside a name is encoded, so it never collides with a separator */
	topic_for_table("cdc", "sales", 5, "order.items", 11, b);
	CHECK(!topic_names_collide(a, b), "sales.\"order.items\" (%s) does not collide with %s", b, a);
	/* the state topic can collide with a table's */
	topic_for_table("cdc", "_", 1, "state", 5, a);
	CHECK(topic_names_collide(a, "cdc.__state"), "table _.state (%s) collides with cdc.__state", a);

	{
		const char *const list[] = {"cdc.public.a", "cdc.sales.order_items", "cdc.x.y",
		"cdc.sales_order.items", "cdc.x_y"};

		CHECK(topic_find_collision(list, 5, &i, &j) && i == 1 && j == 3,
			  "first collision in a list: 1 and 3 (got %zu and %zu)", i, j);
	}
	{
		/* the smallest j wins, whatever the sort order of the names */
		const char *const list[] = {"z.b", "c.d", "c_d", "z_b"};

		CHECK(topic_find_collision(list, 4, &i, &j) && i == 1 && j == 2,
			  "the pair with the smaller second index is reported (got %zu and %zu)", i, j);
	}
	{
		const char *const list[] = {"x.y", "q", "x.y", "x_y"};

		CHECK(topic_find_collision(list, 4, &i, &j) && i == 0 && j == 3,
			  "a topic listed twice is no collision, the one after it is (got %zu and %zu)", i, j);
	}
	{
		const char *const dup[] = {"a.b", "a.b", "c"};
		const char *const one[] = {"a.b"};

		CHECK(!topic_find_collision(dup, 3, &i, &j) && i == 3 && j == 3, "duplicates only: no collision");
		CHECK(!topic_find_collision(one, 1, &i, &j) && !topic_find_collision(one, 0, &i, &j),
			  "0 or 1 topics: no collision");
	}
	{
		/* many distinct tables, then one that collides with the first */
		enum { N = 20000 };
		char	  **names = malloc((N + 1) * sizeof(char *));
		bool		found;

		for (int k = 0; k < N; k++)
		{
			char		t[32];
			int			len = snprintf(t, sizeof(t), "t_%d", k);

			names[k] = malloc(TOPIC_MAX_LEN + 1);
			topic_for_table("cdc", "public", 6, t, (size_t) len, names[k]);
		}
		CHECK(!topic_find_collision((const char *const *) names, N, &i, &j), "20000 distinct tables: no collision");
		names[N] = strdup("cdc.public.t.0");
		found = topic_find_collision((const char *const *) names, N + 1, &i, &j);
		CHECK(found && i == 0 && j == N, "a new table colliding with the first is found (%zu, %zu)", i, j);
		for (int k = 0; k <= N; k++)
			free(names[k]);
		free(names);
	}

	topic_collision_message(msg, sizeof(msg), "sales.order_items", "cdc.sales.order_items",
							"sales_order.items", "cdc.sales_order.items");
	CHECK(strcmp(msg, "tables sales.order_items and sales_order.items map to Kafka topics "
				 "cdc.sales.order_items and cdc.sales_order.items, which Kafka treats as colliding "
				 "('.' and '_' are the same in metric names); fix: exclude one with --exclude-tables "
				 "or rename it") == 0, "the collision message (%s)", msg);
}

/* ---- redact.c ---- */

/* libpq's own error text for a connection string it refuses (NULL if it parses) */
static char *
parse_error(const char *conninfo)
{
	char	   *err = NULL;
	PQconninfoOption *o = PQconninfoParse(conninfo, &err);
	char	   *copy;

	if (o != NULL)
	{
		PQconninfoFree(o);
		return NULL;
	}
	copy = strdup(err ? err : "(no message)");
	PQfreemem(err);
	return copy;
}

static void
test_redact_conninfo_error(void)
{
	static const struct
	{
		const char *conninfo;
		const char *secret;		/* libpq echoes it; it must go */
		const char *want;		/* the redacted text, NULL: not compared */
	}			cases[] = {
		/* item 10 of issue 7, with libpq 15's wording */
		{"postgresql://u:secret@[::1", "secret",
		"end of string reached when looking for matching \"...\" in IPv6 host address in URI: \"...\"\n"},
		{"postgresql://u:sec%zzret@localhost/db", "sec%zzret", "invalid percent-encoded token: \"...\"\n"},
		/* passwords that hold the quote, ": \"" or a new line */
		{"postgresql://u:sec\"ret@[::1", "ret@",
		"end of string reached when looking for matching \"...\" in IPv6 host address in URI: \"...\"\n"},
		{"postgresql://u:a: \"b\"c@[::1", "b\"c",
		"end of string reached when looking for matching \"...\" in IPv6 host address in URI: \"...\"\n"},
		{"postgresql://u:sec\nret@[::1", "ret@",
		"end of string reached when looking for matching \"...\" in IPv6 host address in URI: \"...\"\n"},
		{"postgresql://u:sec%00ret@h/db", "sec%00ret", NULL},
		{"postgresql://u:sec%zz\"ret@h/db", "ret", NULL},
		{"postgresql://u:secret@h/db?secret=1", "secret", NULL},
	};

	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++)
	{
		char	   *err = parse_error(cases[k].conninfo);
		char	   *red;
		char		line[256];

		CHECK(err != NULL && strstr(err, cases[k].secret) != NULL,
			  "case %zu: libpq refuses it and echoes the secret (%s)", k, err ? err : "parsed");
		if (err == NULL)
			continue;
		red = redact_conninfo_error(err);
		CHECK(red != NULL && strstr(red, cases[k].secret) == NULL, "case %zu: redacted: %s", k, red);
		if (cases[k].want)
			CHECK(strcmp(red, cases[k].want) == 0, "case %zu: the reason stays (%s)", k, red);
		conninfo_error_line(err, cases[k].conninfo, line, sizeof(line));
		CHECK(strstr(line, cases[k].secret) == NULL && strchr(line, '\n') == NULL &&
			  strstr(line, "\"...\"") != NULL, "case %zu: conninfo_error_line: %s", k, line);
		free(red);
		free(err);
	}
	{
		char	   *r1 = redact_conninfo_error("no quotes at all\n");
		char	   *r2 = redact_conninfo_error("a \"b\" c \"d");
		char	   *r3 = redact_conninfo_error("x: \"only one");

		CHECK(strcmp(r1, "no quotes at all\n") == 0, "no quotes: unchanged");
		CHECK(strcmp(r2, "a \"...\" c \"...\"") == 0, "an unmatched quote hides the rest (%s)", r2);
		CHECK(strcmp(r3, "x: \"...\"") == 0, "a lone quote after \": \" hides the rest (%s)", r3);
		free(r1);
		free(r2);
		free(r3);
	}
}

static void
check_flat(const char *in, const char *want)
{
	char	   *out = pq_error_flatten(in);

	CHECK(out != NULL && strcmp(out, want) == 0, "flatten -> \"%s\" (got \"%s\")", want, out);
	free(out);
}

static void
test_pq_error_flatten(void)
{
	check_flat("ERROR:  x\nDETAIL:  y\nHINT: z\n", "x; DETAIL: y; HINT: z");
	check_flat("FATAL:  database \"d\" does not exist\n", "database \"d\" does not exist");
	check_flat("ERROR:  replication slot \"s\" does not exist\n", "replication slot \"s\" does not exist");
	check_flat("server closed the connection unexpectedly\n\tThis probably means the server terminated abnormally\n\tbefore or while processing the request.\n",
			   "server closed the connection unexpectedly; This probably means the server terminated abnormally; "
			   "before or while processing the request.");
	check_flat("ERROR:  a\r\nCONTEXT:  b\r\n\n", "a; CONTEXT: b");
	check_flat("no newline", "no newline");
	check_flat("", "");
	check_flat(NULL, "");
	check_flat("\n\n", "");
	check_flat("ERROR:", "ERROR:");

	/* libpq's real text for a refused connection: several lines */
	{
		PGconn	   *conn = PQconnectdb("host=127.0.0.1 port=1 connect_timeout=5");
		const char *m = PQerrorMessage(conn);
		char	   *flat = pq_error_flatten(m);

		CHECK(PQstatus(conn) == CONNECTION_BAD && strchr(m, '\n') != NULL, "libpq's connection error spans lines");
		CHECK(flat && strchr(flat, '\n') == NULL && strchr(flat, '\t') == NULL &&
			  strstr(flat, "port 1 failed") != NULL, "flattened: %s", flat);
		free(flat);
		PQfinish(conn);
	}
}

static void
check_secret(const char *text, const char *secret, const char *want)
{
	char	   *out = redact_secret(text, secret);

	CHECK(out != NULL && strcmp(out, want) == 0, "redact \"%s\" from \"%s\" -> \"%s\" (got \"%s\")",
		  secret ? secret : "(null)", text, want, out);
	free(out);
}

static void
check_conninfo_secrets(const char *text, const char *conninfo, const char *want)
{
	char	   *out = redact_conninfo_secrets(text, conninfo);

	CHECK(out != NULL && strcmp(out, want) == 0, "secrets of [%s] removed from \"%s\" -> \"%s\" (got \"%s\")",
		  conninfo ? conninfo : "(null)", text, want, out);
	free(out);
}

static void
test_redact_secrets(void)
{
	char		buf[24];

	check_secret("password sekrit and sekrit", "sekrit", "password ... and ...");
	check_secret("nothing here", "sekrit", "nothing here");
	check_secret("keep", NULL, "keep");
	check_secret("keep", "", "keep");
	check_secret("aaa", "aa", "...a");
	check_secret("x", "x", "...");

	check_conninfo_secrets("failed for sekrit", "host=h password=sekrit", "failed for ...");
	check_conninfo_secrets("se cr'et or se cr\\'et", "host=h password='se cr\\'et'", "... or ...");
	check_conninfo_secrets("p@ss or p%40ss", "postgresql://u:p%40ss@h/db", "... or ...");
	check_conninfo_secrets("postgres://u:pw1@h", "postgres://u:pw1@h", "postgres://u:...@h");
	/* connection strings libpq refuses: the password as typed */
	check_conninfo_secrets("token sec%zzret", "postgresql://u:sec%zzret@localhost/db", "token ...");
	check_conninfo_secrets("u:secret@[::1", "postgresql://u:secret@[::1", "u:...@[::1");
	check_conninfo_secrets("sekrit", "host=h password=sekrit bogus=1", "...");
	check_conninfo_secrets("sekrit", "host=h password = sekrit 'unterminated", "...");
	check_conninfo_secrets("no password", "host=h dbname=d", "no password");
	check_conninfo_secrets("unchanged", NULL, "unchanged");

	CHECK(!conninfo_has_password("host=h dbname=d"), "no password in host=h dbname=d");
	CHECK(conninfo_has_password("host=h password=x"), "password=x is a password");
	CHECK(!conninfo_has_password("host=h password="), "an empty password is none");
	CHECK(!conninfo_has_password("postgresql://u@h/db"), "no password in a URI with a user only");
	CHECK(conninfo_has_password("postgresql://u:x@h/db"), "u:x@ is a password");
	CHECK(conninfo_has_password("postgresql://h/db?password=x"), "?password=x is a password");
	CHECK(conninfo_has_password("postgresql://u:sec%zzret@localhost/db"), "a malformed URI's password is found");
	CHECK(conninfo_has_password("host=h 'password=x"), "a malformed string that mentions a password: true");

	/* the secret is removed before the text is cut, so no part of it is left */
	pq_error_line("ERROR:  abcdefghijklmnopqrs sekrit\n", "password=sekrit", buf, sizeof(buf));
	CHECK(strcmp(buf, "abcdefghijklmnopqrs ...") == 0, "pq_error_line flattens and redacts (%s)", buf);
	pq_error_line("ERROR:  abcdefghijklmnopqrstu sekrit\n", "password=sekrit", buf, sizeof(buf));
	CHECK(strstr(buf, "sek") == NULL && strlen(buf) == sizeof(buf) - 1, "cut after redaction (%s)", buf);
	pq_error_line("FATAL:  password authentication failed for user \"u\"\nDETAIL:  x\n", "postgresql://u:x@h",
				  buf, 8);
	CHECK(strlen(buf) == 7, "cut to the buffer (%s)", buf);
}

/* ---- config.c ---- */

static char tmpdir[64];

static char *
write_tmp(const char *name, const char *content, mode_t mode)
{
	char	   *path = malloc(strlen(tmpdir) + strlen(name) + 2);
	FILE	   *f;

	sprintf(path, "%s/%s", tmpdir, name);
	f = fopen(path, "w");
	fputs(content, f);
	fclose(f);
	chmod(path, mode);
	return path;
}

/*
 * config_parse_run on "run" and the NULL-terminated arguments; what it wrote
 * on stderr goes to *stderr_text (malloc'd).
 */
static int
parse_args(RelayConfig *cfg, char *err, size_t errlen, char **stderr_text, ...)
{
	char	   *argv[32];
	int			argc = 0;
	va_list		ap;
	char		path[128];
	int			fd,
				saved,
				rc;
	FILE	   *f;
	long		n;

	argv[argc++] = "run";
	va_start(ap, stderr_text);
	while ((argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	err[0] = '\0';

	snprintf(path, sizeof(path), "%s/stderr", tmpdir);
	fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	saved = dup(2);
	dup2(fd, 2);
	rc = config_parse_run(argc, argv, cfg, err, errlen);
	dup2(saved, 2);
	close(saved);
	close(fd);
	f = fopen(path, "r");
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	*stderr_text = calloc(1, (size_t) n + 1);
	if (fread(*stderr_text, 1, (size_t) n, f) != (size_t) n)
		(*stderr_text)[0] = '\0';
	fclose(f);
	return rc;
}

/* "name=value,..." of config_topic_settings's output */
static void
settings_text(const RelayConfig *cfg, bool table_topic, bool compact, char *buf, size_t len)
{
	TopicSetting set[16];
	int			n = config_topic_settings(cfg, table_topic, compact, set);
	size_t		used = 0;

	buf[0] = '\0';
	for (int i = 0; i < n && used < len; i++)
		used += (size_t) snprintf(buf + used, len - used, "%s%s=%s", i ? "," : "", set[i].name, set[i].value);
}

/* --topic-partitions, --topic-replication-factor, --topic-config; the configs of new topics */
static void
test_topic_options(void)
{
	RelayConfig cfg;
	char		err[1024],
				text[512];
	char	   *se;
	int			rc;
	const char *bad[][2] = {
		{"--topic-partitions", "0"}, {"--topic-partitions", "-2"}, {"--topic-partitions", "x"},
		{"--topic-replication-factor", "0"}, {"--topic-replication-factor", "40000"},
		{"--topic-config", "retention.ms"}, {"--topic-config", "=1"}, {"--topic-config", "a="},
		{"--topic-config", "a b=1"},
	};

	rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=d", "-b", "h:1", "--topic-prefix", "p", NULL);
	CHECK(rc == 0 && cfg.topic_partitions == -1 && cfg.topic_replication_factor == -1 && cfg.ntopic_configs == 0,
		  "topic settings default to the brokers' (-1, -1, none)");
	settings_text(&cfg, true, true, text, sizeof(text));
	CHECK(strcmp(text, "cleanup.policy=compact") == 0, "keyed table topic: compact (%s)", text);
	settings_text(&cfg, true, false, text, sizeof(text));
	CHECK(strcmp(text, "cleanup.policy=delete") == 0, "keyless table topic: delete (%s)", text);
	config_free(&cfg);
	free(se);

	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
	{
		rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=d", "-b", "h:1", "--topic-prefix", "p",
						bad[k][0], bad[k][1], NULL);
		CHECK(rc == 2 && strncmp(err, bad[k][0], strlen(bad[k][0])) == 0 && strchr(err, '\n') == NULL,
			  "%s %s refused (%s)", bad[k][0], bad[k][1], err);
		config_free(&cfg);
		free(se);
	}

	{
		char	   *path = write_tmp("topics.conf",
									 "topic-partitions = 6\n"
									 "topic-replication-factor = 3\n"
									 "topic-config = retention.ms=1000   # a comment\n"
									 "topic-config = segment.bytes=2000000\n", 0600);

		rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=d", "-b", "h:1", "--topic-prefix", "p",
						"-c", path, "--topic-partitions", "12", "--topic-config", "retention.ms=5",
						"--topic-config", "cleanup.policy=compact,delete", NULL);
		CHECK(rc == 0 && cfg.topic_partitions == 12 && cfg.topic_replication_factor == 3 && cfg.ntopic_configs == 4,
			  "file and command line: partitions 12 (command line wins), replication 3, 4 configs (%s)", err);
		if (rc == 0)
		{
			settings_text(&cfg, true, false, text, sizeof(text));
			CHECK(strcmp(text, "cleanup.policy=compact,delete,retention.ms=5,segment.bytes=2000000") == 0,
				  "table topic: a later name replaces the earlier value, also the relay's cleanup.policy (%s)",
				  text);
			settings_text(&cfg, false, true, text, sizeof(text));
			CHECK(strcmp(text, "cleanup.policy=compact") == 0, "the relay's own topics get no --topic-config (%s)",
				  text);
			settings_text(&cfg, false, false, text, sizeof(text));
			CHECK(strcmp(text, "cleanup.policy=delete") == 0, "the messages topic: delete (%s)", text);
		}
		config_free(&cfg);
		free(se);
		unlink(path);
		free(path);
	}
}

/* --delivery and the exactly-once settings */
static void
test_delivery_options(void)
{
	RelayConfig cfg;
	char		err[1024];
	char	   *se;
	int			rc;
	const char *bad[][2] = {
		{"--delivery", "exactly_once"}, {"--delivery", ""}, {"--txn-interval-ms", "0"},
		{"--txn-interval-ms", "x"}, {"--txn-max-messages", "99"}, {"--transactional-id", ""},
	};

	rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=d", "-b", "h:1", "--topic-prefix", "p",
					"-S", "s1", NULL);
	CHECK(rc == 0 && cfg.exactly_once == DELIVERY_DEFAULT_EXACTLY_ONCE && cfg.txn_interval_ms == 20 &&
		  cfg.txn_max_messages == 100000 && cfg.txn_records,
		  "delivery defaults: %s, 20 ms, 100000 messages, transaction records", DELIVERY_DEFAULT_NAME);
	CHECK(rc == 0 && strcmp(cfg.transactional_id, "cdc-relay.p.s1") == 0,
		  "transactional.id derives from prefix and slot (%s)", rc == 0 ? cfg.transactional_id : err);
	config_free(&cfg);
	free(se);

	rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=d", "-b", "h:1", "--topic-prefix", "p",
					"--delivery", "exactly-once", "--transactional-id", "mine", "--txn-interval-ms", "5",
					"--txn-max-messages", "1000", "--no-transaction-records", NULL);
	CHECK(rc == 0 && cfg.exactly_once && strcmp(cfg.transactional_id, "mine") == 0 && cfg.txn_interval_ms == 5 &&
		  cfg.txn_max_messages == 1000 && !cfg.txn_records, "exactly-once settings parsed (%s)", err);
	config_free(&cfg);
	free(se);

	rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=d", "-b", "h:1", "--topic-prefix", "p",
					"-X", "transactional.id=x", NULL);
	CHECK(rc == 2 && strstr(err, "use --transactional-id") != NULL, "-X transactional.id refused (%s)", err);
	config_free(&cfg);
	free(se);

	rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=d", "-b", "h:1", "--topic-prefix", "p",
					"--delivery", "at-least-once", NULL);
	CHECK(rc == 0 && !cfg.exactly_once, "--delivery at-least-once parsed");
	config_free(&cfg);
	free(se);

	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++)
	{
		rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=d", "-b", "h:1", "--topic-prefix", "p",
						bad[k][0], bad[k][1], NULL);
		CHECK(rc == 2 && strncmp(err, bad[k][0], strlen(bad[k][0])) == 0 && strchr(err, '\n') == NULL,
			  "%s \"%s\" refused (%s)", bad[k][0], bad[k][1], err);
		config_free(&cfg);
		free(se);
	}
}

static void
test_config(void)
{
	RelayConfig cfg;
	char		err[1024];
	char	   *se;
	int			rc;
	const char *refused[][2] = {
		{"acks", "1"}, {"acks", "0"}, {"acks", "2"}, {"acks", ""}, {"request.required.acks", "1"},
		{"topic.acks", "1"}, {"topic.request.required.acks", "0"},
		{"enable.idempotence", "false"}, {"enable.idempotence", "0"}, {"enable.idempotence", "FALSE"},
		{"partitioner", "random"}, {"topic.partitioner", "random"},
	};
	const char *accepted[][2] = {
		{"acks", "all"}, {"acks", "-1"}, {"acks", "ALL"}, {"request.required.acks", "all"},
		{"enable.idempotence", "true"}, {"enable.idempotence", "1"}, {"partitioner", "murmur2"},
		{"delivery.report.only.error", "false"}, {"message.timeout.ms", "0"}, {"linger.ms", "50"},
	};

	snprintf(tmpdir, sizeof(tmpdir), "/tmp/relay_units_XXXXXX");
	if (mkdtemp(tmpdir) == NULL)
	{
		CHECK(false, "mkdtemp");
		return;
	}

	/* --topic-prefix is required */
	rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=x", "-b", "h:1", NULL);
	CHECK(rc == 2 && strcmp(err, "no topic prefix given: use --topic-prefix NAME (topics are NAME.<schema>.<table>; "
							"give each database its own prefix)") == 0, "no --topic-prefix: refused (%s)", err);
	config_free(&cfg);
	free(se);
	rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=x", "-b", "h:1", "--topic-prefix", "shop", NULL);
	CHECK(rc == 0 && strcmp(cfg.topic_prefix, "shop") == 0 && strcmp(cfg.state_topic, "shop.__state") == 0,
		  "--topic-prefix shop: topics shop.*, state topic shop.__state (%s)", err);
	config_free(&cfg);
	free(se);

	/* --origin and --emit-refused: command line and config file alike */
	rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=x", "-b", "h:1", "--topic-prefix", "p", NULL);
	CHECK(rc == 0 && !cfg.origin_none && !cfg.emit_refused_skip, "defaults: --origin any, --emit-refused stop");
	config_free(&cfg);
	free(se);
	rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=x", "-b", "h:1", "--topic-prefix", "p",
					"--origin", "none", "--emit-refused=skip", NULL);
	CHECK(rc == 0 && cfg.origin_none && cfg.emit_refused_skip, "--origin none --emit-refused=skip (%s)", err);
	config_free(&cfg);
	free(se);
	rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=x", "-b", "h:1", "--topic-prefix", "p",
					"--origin", "local", NULL);
	CHECK(rc == 2 && strcmp(err, "--origin \"local\": valid values are any, none") == 0, "bad --origin (%s)", err);
	config_free(&cfg);
	free(se);
	rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=x", "-b", "h:1", "--topic-prefix", "p",
					"--emit-refused", "ignore", NULL);
	CHECK(rc == 2 && strcmp(err, "--emit-refused \"ignore\": valid values are stop, skip") == 0,
		  "bad --emit-refused (%s)", err);
	config_free(&cfg);
	free(se);
	{
		char	   *path = write_tmp("origin.conf", "dbname = dbname=x\nbrokers = h:1\ntopic-prefix = p\n"
									 "origin = none\nemit-refused = skip\n", 0600);

		rc = parse_args(&cfg, err, sizeof(err), &se, "-c", path, NULL);
		CHECK(rc == 0 && cfg.origin_none && cfg.emit_refused_skip, "config file keys origin, emit-refused (%s)", err);
		config_free(&cfg);
		free(se);
		free(path);
	}

	/* a malformed connection string: refused up front, without the password */
	rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "postgresql://u:secret@[::1", "-b", "h:1",
					"--topic-prefix", "p", NULL);
	CHECK(rc == 2 && strcmp(err, "invalid connection string: end of string reached when looking for matching "
							"\"...\" in IPv6 host address in URI: \"...\"") == 0,
		  "unterminated IPv6 host: refused, redacted (%s)", err);
	config_free(&cfg);
	free(se);
	rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "postgresql://u:sec%zzret@localhost/db", "-b", "h:1",
					"--topic-prefix", "p", NULL);
	CHECK(rc == 2 && strcmp(err, "invalid connection string: invalid percent-encoded token: \"...\"") == 0,
		  "bad %% escape: refused, redacted (%s)", err);
	config_free(&cfg);
	free(se);

	for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++)
	{
		char		x[128],
					want[256];

		snprintf(x, sizeof(x), "%s=%s", refused[k][0], refused[k][1]);
		snprintf(want, sizeof(want), "-X %s would weaken the delivery guarantee: ", x);
		rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=d", "-b", "h:1", "--topic-prefix", "p", "-X", x, NULL);
		CHECK(rc == 2 && strncmp(err, want, strlen(want)) == 0 && strchr(err, '\n') == NULL,
			  "-X %s refused (%s)", x, err);
		config_free(&cfg);
		free(se);
	}
	rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=d", "-b", "h:1", "--topic-prefix", "p",
					"-X", "delivery.report.only.error=true", NULL);
	CHECK(rc == 2 && strncmp(err, "-X delivery.report.only.error=true would keep cdc-relay from ever confirming", 75) == 0,
		  "-X delivery.report.only.error=true refused (%s)", err);
	config_free(&cfg);
	free(se);
	for (size_t k = 0; k < sizeof(accepted) / sizeof(accepted[0]); k++)
	{
		char		x[128];

		snprintf(x, sizeof(x), "%s=%s", accepted[k][0], accepted[k][1]);
		rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=d", "-b", "h:1", "--topic-prefix", "p", "-X", x, NULL);
		CHECK(rc == 0 && cfg.nkafka == 1 && strcmp(cfg.kafka[0].value, accepted[k][1]) == 0,
			  "-X %s accepted (%s)", x, err);
		config_free(&cfg);
		free(se);
	}

	/* the config file: comments, quotes, byte order mark */
	{
		char	   *path = write_tmp("full.conf",
									 "\xEF\xBB\xBF" "dbname = host=h dbname=d   # the database\n"
									 "brokers = h:1\t# a tab, then a comment\n"
									 "topic-prefix = shop # the prefix\n"
									 "slot = 's_1'   # quoted\n"
									 "kafka.client.id = \"a # b\"  # a quoted #\n"
									 "kafka.linger.ms=7#no space\n"
									 "tables = O'Brien.*   # an apostrophe in a word\n"
									 "exclude-tables = \"x\\\"y\" \n"
									 "# a whole line\n"
									 "   # an indented one\n"
									 "\n"
									 "publication = 'it\\'s # not a comment'\n",
									 0600);

		rc = parse_args(&cfg, err, sizeof(err), &se, "-c", path, NULL);
		CHECK(rc == 0, "config file with comments and a BOM: accepted (%s)", err);
		if (rc == 0)
		{
			CHECK(strcmp(cfg.conninfo, "host=h dbname=d") == 0, "dbname without the comment (%s)", cfg.conninfo);
			CHECK(strcmp(cfg.brokers, "h:1") == 0, "brokers (%s)", cfg.brokers);
			CHECK(strcmp(cfg.topic_prefix, "shop") == 0, "topic-prefix (%s)", cfg.topic_prefix);
			CHECK(strcmp(cfg.slot, "s_1") == 0, "quoted slot (%s)", cfg.slot);
			CHECK(cfg.nkafka == 2 && strcmp(cfg.kafka[0].value, "a # b") == 0 &&
				  strcmp(cfg.kafka[1].key, "linger.ms") == 0 && strcmp(cfg.kafka[1].value, "7") == 0,
				  "kafka.* values (%s, %s)", cfg.nkafka > 0 ? cfg.kafka[0].value : "",
				  cfg.nkafka > 1 ? cfg.kafka[1].value : "");
			CHECK(strcmp(cfg.tables, "O'Brien.*") == 0, "an apostrophe inside a word (%s)", cfg.tables);
			CHECK(strcmp(cfg.exclude_tables, "x\"y") == 0, "\\\" in a quoted value (%s)", cfg.exclude_tables);
			CHECK(strcmp(cfg.publication, "it's # not a comment") == 0, "\\' and # in a quoted value (%s)",
				  cfg.publication);
		}
		CHECK(se[0] == '\0', "no password: nothing on stderr (%s)", se);
		config_free(&cfg);
		free(se);
		free(path);
	}
	{
		char	   *path = write_tmp("libpq.conf",
									 "dbname = host=h password='a\\'b#c' # the comment\n"
									 "brokers = h:1\ntopic-prefix = p\n", 0600);

		rc = parse_args(&cfg, err, sizeof(err), &se, "-c", path, NULL);
		CHECK(rc == 0 && strcmp(cfg.conninfo, "host=h password='a\\'b#c'") == 0,
			  "libpq quoting in the conninfo: # inside it stays (%s)", rc == 0 ? cfg.conninfo : err);
		CHECK(se[0] == '\0', "mode 0600 with a password: no warning (%s)", se);
		config_free(&cfg);
		free(se);
		chmod(path, 0644);
		rc = parse_args(&cfg, err, sizeof(err), &se, "-c", path, NULL);
		CHECK(rc == 0 && strstr(se, " WARNING config file ") != NULL &&
			  strstr(se, " is readable by other users and holds a password; fix: chmod 600 ") != NULL &&
			  strstr(se, path) != NULL && strstr(se, "a\\'b") == NULL,
			  "mode 0644 with a password: the warning (%s)", se);
		config_free(&cfg);
		free(se);
		free(path);
	}
	{
		char	   *uri = write_tmp("uri.conf", "dbname = postgresql://u:pw@h/d\nbrokers=h:1\ntopic-prefix=p\n", 0640);
		char	   *kafka = write_tmp("kafka.conf", "kafka.sasl.password = pw\n", 0604);
		char	   *none = write_tmp("none.conf", "dbname = host=h user=u\nkafka.sasl.username = u\n", 0666);

		rc = parse_args(&cfg, err, sizeof(err), &se, "-c", uri, NULL);
		CHECK(rc == 0 && strstr(se, "holds a password") != NULL, "URI password, mode 0640: the warning");
		config_free(&cfg);
		free(se);
		rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=d", "-b", "h:1", "--topic-prefix", "p", "-c", kafka, NULL);
		CHECK(rc == 0 && strstr(se, "holds a password") != NULL, "kafka.sasl.password, mode 0604: the warning");
		config_free(&cfg);
		free(se);
		rc = parse_args(&cfg, err, sizeof(err), &se, "-b", "h:1", "--topic-prefix", "p", "-c", none, NULL);
		CHECK(rc == 0 && se[0] == '\0', "no password, mode 0666: no warning (%s)", se);
		config_free(&cfg);
		free(se);
		free(uri);
		free(kafka);
		free(none);
	}
	{
		char	   *acks = write_tmp("acks.conf", "# weaker\nkafka.acks = 1   # no\n", 0600);
		char	   *open = write_tmp("open.conf", "slot = s1\ntables = 'abc # c\n", 0600);
		char	   *prefix = write_tmp("prefix.conf", "topic-prefix = from_file # c\n", 0600);
		char		want[256];

		rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=d", "-b", "h:1", "--topic-prefix", "p", "-c", acks, NULL);
		snprintf(want, sizeof(want), "%s:2: kafka.acks = 1 would weaken the delivery guarantee: ", acks);
		CHECK(rc == 2 && strncmp(err, want, strlen(want)) == 0, "kafka.acks = 1 in a file: refused (%s)", err);
		config_free(&cfg);
		free(se);
		rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=d", "-b", "h:1", "--topic-prefix", "p", "-c", open, NULL);
		snprintf(want, sizeof(want), "%s:2: the quote at column 10 is not closed", open);
		CHECK(rc == 2 && strcmp(err, want) == 0, "an unclosed quote: refused (%s)", err);
		config_free(&cfg);
		free(se);
		rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=d", "-b", "h:1", "-c", prefix, NULL);
		CHECK(rc == 0 && strcmp(cfg.topic_prefix, "from_file") == 0, "topic-prefix from the file (%s)", err);
		config_free(&cfg);
		free(se);
		rc = parse_args(&cfg, err, sizeof(err), &se, "-d", "dbname=d", "-b", "h:1", "-c", prefix, "--topic-prefix", "cli", NULL);
		CHECK(rc == 0 && strcmp(cfg.topic_prefix, "cli") == 0, "the command line wins over the file");
		config_free(&cfg);
		free(se);
		unlink(acks);
		unlink(open);
		unlink(prefix);
		free(acks);
		free(open);
		free(prefix);
	}
	test_topic_options();
	test_delivery_options();
	{
		char		cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			printf("# could not remove %s\n", tmpdir);
	}
}

/* ---- scan.c: splitting batched payloads, begin/commit/message without JSON ---- */

static bool
text_is(ScanText t, const char *want)
{
	if (want == NULL)
		return t.p == NULL;
	return t.p != NULL && t.len == strlen(want) && memcmp(t.p, want, t.len) == 0;
}

/* The events of payload, joined by '|' (an empty event shows as an empty field). */
static void
split_events(const char *payload, size_t len, char *out, size_t size)
{
	size_t		off = 0,
				o = 0;

	out[0] = '\0';
	while (off < len)
	{
		const char *ev = payload + off;
		size_t		n = scan_next_event(payload, len, &off);

		o += (size_t) snprintf(out + o, size - o, "%s%.*s", o > 0 ? "|" : "", (int) n, ev);
	}
	/* the loop also proves that off ends exactly at len */
	if (off != len)
		snprintf(out, size, "off %zu != len %zu", off, len);
}

static void
test_scan_split(void)
{
	char		got[256];
	static const char two[] = "{\"op\":\"begin\"}\n{\"id\":1}\t{\"op\":\"c\"}\n{\"op\":\"commit\",\"events\":1}";

	split_events("{\"op\":\"begin\"}", 14, got, sizeof(got));
	CHECK(strcmp(got, "{\"op\":\"begin\"}") == 0, "one event: itself (%s)", got);
	split_events(two, strlen(two), got, sizeof(got));
	CHECK(strcmp(got, "{\"op\":\"begin\"}|{\"id\":1}\t{\"op\":\"c\"}|{\"op\":\"commit\",\"events\":1}") == 0,
		  "three events, the row with its key prefix (%s)", got);
	split_events("a\nb\n", 4, got, sizeof(got));
	CHECK(strcmp(got, "a|b") == 0, "a newline at the end ends the last event (%s)", got);
	split_events("a\n\nb", 4, got, sizeof(got));
	CHECK(strcmp(got, "a||b") == 0, "two newlines in a row: an empty event between (%s)", got);
	split_events("\n", 1, got, sizeof(got));
	CHECK(strcmp(got, "") == 0, "a lone newline: one empty event (%s)", got);
	split_events("", 0, got, sizeof(got));
	CHECK(strcmp(got, "") == 0, "empty payload: no event");
	/* the length, not a NUL, ends the payload */
	split_events("a\nb\nc", 3, got, sizeof(got));
	CHECK(strcmp(got, "a|b") == 0, "only len bytes are read (%s)", got);
}

static void
test_scan_kind(void)
{
	struct
	{
		const char *ev;
		ScanKind	want;
	}			cases[] = {
		{"{\"op\":\"begin\",\"xid\":1}", SCAN_BEGIN},
		{"{\"op\":\"begin\"}", SCAN_BEGIN},
		{"{\"op\":\"commit\",\"events\":0}", SCAN_COMMIT},
		{"{\"op\":\"m\",\"prefix\":\"p\"}", SCAN_MESSAGE},
		{"{\"op\":\"t\",\"tables\":[]}", SCAN_TRUNCATE},
		{"{\"id\":1}\t{\"op\":\"c\",\"schema\":\"s\"}", SCAN_ROW},
		/* a key whose column is named op: the TAB decides */
		{"{\"op\":\"begin\"}\t{\"op\":\"c\",\"schema\":\"s\"}", SCAN_ROW},
		{"null\t{\"op\":\"d\"}", SCAN_ROW},
		{"{\"op\":\"c\",\"schema\":\"s\"}", SCAN_OTHER},	/* a row without key-prefix */
		{"{\"op\":\"beginning\"}", SCAN_OTHER},
		{"{\"op\":\"commits\"}", SCAN_OTHER},
		{"{\"op\":\"x\"}", SCAN_OTHER},
		{"{ \"op\":\"begin\"}", SCAN_OTHER},
		{"", SCAN_OTHER},
		{"{\"op\":\"", SCAN_OTHER},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		CHECK(scan_kind(cases[i].ev, strlen(cases[i].ev)) == cases[i].want, "scan_kind of %s is %d",
			  cases[i].ev, (int) cases[i].want);
}

static bool
begin_ok(const char *ev, ScanBegin *b)
{
	return scan_begin(ev, strlen(ev), b);
}

static void
test_scan_begin(void)
{
	ScanBegin	b;
	/* refused: anything the plugin does not write, byte for byte */
	const char *bad[] = {
		"{\"op\":\"begin\",\"xid\":745,\"commit_lsn\":\"0/16B3748\",\"ts\":\"2024-01-02T03:04:05.5+00:00\"} ",
		"{\"op\":\"begin\",\"xid\":745,\"commit_lsn\":\"0/16B3748\",\"ts\":\"2024-01-02T03:04:05.5+00:00\"",
		"{\"op\":\"begin\",\"xid\":745,\"commit_lsn\":\"0/16B3748\",\"ts\":\"2024-01-02T03:04:05.5+00:00\"}}",
		"{\"op\":\"begin\", \"xid\":745}",
		"{\"op\":\"begin\",\"commit_lsn\":\"0/16B3748\",\"xid\":745}",	/* order */
		"{\"op\":\"begin\",\"xid\":0745}",
		"{\"op\":\"begin\",\"xid\":-1}",
		"{\"op\":\"begin\",\"xid\":1.5}",
		"{\"op\":\"begin\",\"xid\":4294967296}",
		"{\"op\":\"begin\",\"xid\":\"745\"}",
		"{\"op\":\"begin\",\"xid\":}",
		"{\"op\":\"begin\",\"commit_lsn\":\"0/16b3748\"}",	/* lower case */
		"{\"op\":\"begin\",\"commit_lsn\":\"0/116B37480\"}",	/* 9 digits */
		"{\"op\":\"begin\",\"commit_lsn\":\"/16B3748\"}",
		"{\"op\":\"begin\",\"commit_lsn\":\"0-16B3748\"}",
		"{\"op\":\"begin\",\"commit_lsn\":0}",
		"{\"op\":\"begin\",\"ts\":\"2024\\u002d01\"}",	/* an escape */
		"{\"op\":\"begin\",\"ts\":\"2024\n\"}",
		"{\"op\":\"begin\",\"ts\":\"2024}",
		"{\"op\":\"begin\",\"other\":1}",
		"{\"op\":\"commit\",\"events\":0}",
		"{\"id\":1}\t{\"op\":\"begin\"}",
		"",
	};

	CHECK(begin_ok("{\"op\":\"begin\",\"xid\":745,\"commit_lsn\":\"0/16B3748\",\"ts\":\"2024-01-02T03:04:05.5+00:00\"}", &b) &&
		  text_is(b.xid, "745") && b.xid_value == 745 &&
		  text_is(b.commit_lsn, "0/16B3748") && b.commit_lsn_value == 0x16B3748 &&
		  text_is(b.ts, "2024-01-02T03:04:05.5+00:00"),
		  "begin with every field");
	CHECK(begin_ok("{\"op\":\"begin\",\"xid\":4294967295,\"commit_lsn\":\"FFFFFFFF/FFFFFFFF\"}", &b) &&
		  b.xid_value == UINT32_MAX && b.commit_lsn_value == UINT64_MAX && text_is(b.ts, NULL),
		  "largest xid and LSN, no ts");
	CHECK(begin_ok("{\"op\":\"begin\"}", &b) && text_is(b.xid, NULL) && text_is(b.commit_lsn, NULL) &&
		  text_is(b.ts, NULL), "begin without optional fields");
	CHECK(begin_ok("{\"op\":\"begin\",\"xid\":0,\"ts\":\"\"}", &b) && b.xid_value == 0 && text_is(b.ts, ""),
		  "xid 0, empty ts");
	CHECK(begin_ok("{\"op\":\"begin\",\"commit_lsn\":\"0/0\"}", &b) && b.commit_lsn_value == 0 &&
		  text_is(b.xid, NULL), "LSN only");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!begin_ok(bad[i], &b), "begin refused: %s", bad[i]);
	/* the length, not a NUL, ends the event */
	CHECK(!scan_begin("{\"op\":\"begin\"}", 13, &b), "a begin cut short by len is refused");
}

static bool
commit_ok(const char *ev, ScanCommit *c)
{
	return scan_commit(ev, strlen(ev), c);
}

static void
test_scan_commit(void)
{
	ScanCommit	c;
	const char *bad[] = {
		"{\"op\":\"commit\",\"xid\":745,\"commit_lsn\":\"0/16B3748\",\"events\":3}",	/* no end_lsn */
		"{\"op\":\"commit\",\"xid\":745,\"end_lsn\":\"0/16B3778\",\"events\":3}",	/* no commit_lsn */
		"{\"op\":\"commit\",\"xid\":745}",	/* no events */
		"{\"op\":\"commit\",\"events\":18446744073709551616}",
		"{\"op\":\"commit\",\"events\":3,\"xid\":745}",
		"{\"op\":\"commit\",\"events\":3,}",
		"{\"op\":\"commit\",\"events\":3}\n",
		"{\"op\":\"commit\",\"events\":3,\"ts\":\"x\\\"\"}",
		"{\"op\":\"begin\",\"events\":3}",
	};

	CHECK(commit_ok("{\"op\":\"commit\",\"xid\":745,\"commit_lsn\":\"0/16B3748\",\"end_lsn\":\"0/16B3778\","
					"\"events\":3,\"ts\":\"2024-01-02T03:04:05.5+00:00\"}", &c) &&
		  text_is(c.xid, "745") && c.xid_value == 745 && text_is(c.commit_lsn, "0/16B3748") &&
		  c.commit_lsn_value == 0x16B3748 && text_is(c.end_lsn, "0/16B3778") &&
		  c.end_lsn_value == 0x16B3778 && c.events == 3 && text_is(c.ts, "2024-01-02T03:04:05.5+00:00"),
		  "commit with every field");
	CHECK(commit_ok("{\"op\":\"commit\",\"events\":0}", &c) && c.events == 0 && text_is(c.xid, NULL) &&
		  text_is(c.end_lsn, NULL) && text_is(c.ts, NULL), "commit with events only");
	CHECK(commit_ok("{\"op\":\"commit\",\"commit_lsn\":\"1/0\",\"end_lsn\":\"A/B\",\"events\":18446744073709551615}", &c) &&
		  c.commit_lsn_value == (uint64_t) 1 << 32 && c.end_lsn_value == ((uint64_t) 10 << 32 | 11) &&
		  c.events == UINT64_MAX, "commit: LSNs without xid, largest events");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!commit_ok(bad[i], &c), "commit refused: %s", bad[i]);
}

static bool
message_ok(const char *ev, ScanMessage *m)
{
	return scan_message(ev, strlen(ev), m);
}

static void
test_scan_message(void)
{
	ScanMessage m;
	const char *bad[] = {
		"{\"op\":\"m\",\"prefix\":\"a\\\"b\",\"transactional\":false,\"content\":\"\",\"content_encoding\":\"text\"}",
		"{\"op\":\"m\",\"prefix\":\"p\",\"transactional\":1,\"content\":\"\",\"content_encoding\":\"text\"}",
		"{\"op\":\"m\",\"prefix\":\"p\",\"transactional\":false,\"content\":\"\\x\",\"content_encoding\":\"text\"}",
		"{\"op\":\"m\",\"prefix\":\"p\",\"transactional\":false,\"content\":\"\\u12\",\"content_encoding\":\"text\"}",
		"{\"op\":\"m\",\"prefix\":\"p\",\"transactional\":false,\"content\":\"a\tb\",\"content_encoding\":\"text\"}",
		"{\"op\":\"m\",\"prefix\":\"p\",\"transactional\":false,\"content\":\"open,\"content_encoding\":\"text\"}",
		"{\"op\":\"m\",\"prefix\":\"p\",\"transactional\":false,\"content\":\"\",\"content_encoding\":\"hex\"}",
		"{\"op\":\"m\",\"prefix\":\"p\",\"transactional\":false,\"content\":\"\",\"content_encoding\":\"text\",\"seq\":1}",
		"{\"op\":\"m\",\"prefix\":\"p\",\"transactional\":true,\"content\":\"\",\"content_encoding\":\"text\"}",
		"{\"op\":\"m\",\"prefix\":\"p\",\"transactional\":true,\"content\":\"\",\"content_encoding\":\"text\",\"lsn\":\"0/1\",\"seq\":1}",
		"{\"op\":\"m\",\"prefix\":\"p\",\"transactional\":true,\"content\":\"\",\"content_encoding\":\"text\",\"seq\":1,\"lsn\":\"0/1\"}",
		"{\"op\":\"m\",\"transactional\":false,\"content\":\"\",\"content_encoding\":\"text\"}",
	};

	CHECK(message_ok("{\"op\":\"m\",\"prefix\":\"cdc_relay.heartbeat\",\"transactional\":true,\"content\":\"\","
					 "\"content_encoding\":\"text\",\"xid\":9,\"lsn\":\"0/2000\",\"commit_lsn\":\"0/2100\","
					 "\"seq\":1,\"ts\":\"2024-01-02T03:04:05+00:00\"}", &m) &&
		  text_is(m.prefix, "cdc_relay.heartbeat") && m.transactional && text_is(m.content, "") && !m.base64 &&
		  m.xid_value == 9 && m.lsn_value == 0x2000 && m.commit_lsn_value == 0x2100 && m.has_seq && m.seq == 1 &&
		  text_is(m.ts, "2024-01-02T03:04:05+00:00"),
		  "transactional message with every field");
	CHECK(message_ok("{\"op\":\"m\",\"prefix\":\"app\",\"transactional\":false,\"content\":\"a\\n\\\"b\\u00e9\\\\\","
					 "\"content_encoding\":\"text\",\"xid\":7,\"lsn\":\"0/3000\"}", &m) &&
		  !m.transactional && text_is(m.content, "a\\n\\\"b\\u00e9\\\\") && text_is(m.xid, "7") &&
		  m.lsn_value == 0x3000 && text_is(m.commit_lsn, NULL) && !m.has_seq,
		  "non-transactional message: content with escapes, raw");
	CHECK(message_ok("{\"op\":\"m\",\"prefix\":\"b\",\"transactional\":false,\"content\":\"AAE=\","
					 "\"content_encoding\":\"base64\"}", &m) && m.base64 && text_is(m.lsn, NULL) &&
		  text_is(m.xid, NULL), "base64 message without xid or LSN");
	CHECK(message_ok("{\"op\":\"m\",\"prefix\":\"p\",\"transactional\":true,\"content\":\"x\","
					 "\"content_encoding\":\"text\",\"seq\":2}", &m) && m.has_seq && m.seq == 2 &&
		  text_is(m.lsn, NULL), "transactional message with seq only");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!message_ok(bad[i], &m), "message refused: %s", bad[i]);
}

/*
 * Whether raw JSON string contents t, decoded by scan_unescape, are the
 * string member key of j (absent: t.p NULL).
 */
static bool
decoded_is(json_t *j, const char *key, ScanText t)
{
	json_t	   *v = json_object_get(j, key);
	char		dec[1024];
	size_t		n;

	if (v == NULL || json_is_null(v))
		return t.p == NULL;
	return json_is_string(v) && t.p != NULL && scan_unescape(t, dec, sizeof(dec), &n) &&
		n == json_string_length(v) && memcmp(dec, json_string_value(v), n) == 0;
}

/* Whatever a scanner accepts, jansson reads the same way (with stream.c's flags). */
static bool
agrees_with_json(const char *ev, size_t len, int *accepted)
{
	json_error_t jerr;
	json_t	   *j;
	ScanBegin	b;
	ScanCommit	c;
	ScanMessage m;
	ScanEmit	e;
	bool		ok = true;
	char		buf[64];

#define JSTR_IS(key, t) \
	(json_object_get(j, key) == NULL ? (t).p == NULL : \
	 (json_is_string(json_object_get(j, key)) && text_is((t), json_string_value(json_object_get(j, key)))))
#define JINT_IS(key, t, v) \
	(json_object_get(j, key) == NULL ? (t).p == NULL : \
	 (json_is_integer(json_object_get(j, key)) && \
	  (snprintf(buf, sizeof(buf), "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(j, key))), \
	   text_is((t), buf)) && (json_int_t) (v) == json_integer_value(json_object_get(j, key))))

	if (scan_begin(ev, len, &b))
	{
		(*accepted)++;
		j = json_loadb(ev, len, JSON_ALLOW_NUL, &jerr);
		ok = j != NULL && json_object_size(j) == 1u + (b.xid.p != NULL) + (b.commit_lsn.p != NULL) + (b.ts.p != NULL) +
			(b.request_id.p != NULL) &&
			JINT_IS("xid", b.xid, b.xid_value) && JSTR_IS("commit_lsn", b.commit_lsn) && JSTR_IS("ts", b.ts) &&
			decoded_is(j, "request_id", b.request_id);
		json_decref(j);
	}
	else if (scan_commit(ev, len, &c))
	{
		ScanText	events = {.p = buf, .len = 0};
		char		ev_digits[32];

		(*accepted)++;
		j = json_loadb(ev, len, JSON_ALLOW_NUL, &jerr);
		snprintf(ev_digits, sizeof(ev_digits), "%llu", (unsigned long long) c.events);
		events.p = ev_digits;
		events.len = strlen(ev_digits);
		ok = j != NULL && json_object_size(j) == 2u + (c.xid.p != NULL) + 2 * (c.commit_lsn.p != NULL) + (c.ts.p != NULL) +
			(c.request_id.p != NULL) &&
			decoded_is(j, "request_id", c.request_id) &&
			JINT_IS("xid", c.xid, c.xid_value) && JSTR_IS("commit_lsn", c.commit_lsn) &&
			JSTR_IS("end_lsn", c.end_lsn) && JSTR_IS("ts", c.ts) &&
			(c.events > INT64_MAX || JINT_IS("events", events, c.events));
		json_decref(j);
	}
	else if (scan_message(ev, len, &m))
	{
		(*accepted)++;
		j = json_loadb(ev, len, JSON_ALLOW_NUL, &jerr);
		ok = j != NULL && JSTR_IS("prefix", m.prefix) &&
			json_is_boolean(json_object_get(j, "transactional")) &&
			json_is_true(json_object_get(j, "transactional")) == m.transactional &&
			json_is_string(json_object_get(j, "content")) &&
			JINT_IS("xid", m.xid, m.xid_value) && JSTR_IS("lsn", m.lsn) &&
			JSTR_IS("commit_lsn", m.commit_lsn) && JSTR_IS("ts", m.ts) &&
			decoded_is(j, "request_id", m.request_id) &&
			(json_object_get(j, "seq") != NULL) == m.has_seq;
		json_decref(j);
	}
	else if (scan_emit(ev, len, &e))
	{
		json_t	   *payload;

		(*accepted)++;
		j = json_loadb(ev, len, JSON_ALLOW_NUL | JSON_DECODE_ANY, &jerr);
		payload = e.payload.p ? json_loadb(e.payload.p, e.payload.len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr) : NULL;
		ok = j != NULL && payload != NULL && json_equal(payload, json_object_get(j, "payload")) &&
			json_object_size(j) == 5u + (e.xid.p != NULL) + 2 * (e.lsn.p != NULL) + (e.ts.p != NULL) +
			(e.request_id.p != NULL) &&
			JSTR_IS("topic", e.topic) && decoded_is(j, "key", e.key) &&
			json_object_get(j, "key") != NULL &&
			JINT_IS("xid", e.xid, e.xid_value) && JSTR_IS("lsn", e.lsn) &&
			JSTR_IS("commit_lsn", e.commit_lsn) && JSTR_IS("ts", e.ts) &&
			decoded_is(j, "request_id", e.request_id) &&
			json_integer_value(json_object_get(j, "seq")) == (json_int_t) e.seq;
		json_decref(payload);
		json_decref(j);
	}
#undef JSTR_IS
#undef JINT_IS
	if (!ok)
		printf("# read otherwise by jansson: %.*s\n", (int) len, ev);
	return ok;
}

/*
 * Every event the plugin writes, each byte deleted, replaced or doubled in
 * turn: the scanners accept the intact events, and whatever mutant they
 * accept, jansson reads with the same fields.
 */
static void
test_scan_mutations(void)
{
	const char *events[] = {
		"{\"op\":\"begin\",\"xid\":745,\"commit_lsn\":\"0/16B3748\",\"ts\":\"2024-01-02T03:04:05.5+00:00\"}",
		"{\"op\":\"begin\",\"commit_lsn\":\"0/16B3748\"}",
		"{\"op\":\"commit\",\"xid\":745,\"commit_lsn\":\"0/16B3748\",\"end_lsn\":\"0/16B3778\",\"events\":3,"
		"\"ts\":\"2024-01-02T03:04:05.5+00:00\"}",
		"{\"op\":\"commit\",\"events\":10}",
		"{\"op\":\"m\",\"prefix\":\"app\",\"transactional\":true,\"content\":\"a\\\"\\u0001\",\"content_encoding\":\"text\","
		"\"xid\":9,\"lsn\":\"0/2000\",\"commit_lsn\":\"0/2100\",\"seq\":12,\"ts\":\"2024-01-02T03:04:05+00:00\"}",
		"{\"op\":\"m\",\"prefix\":\"app\",\"transactional\":false,\"content\":\"AAE=\",\"content_encoding\":\"base64\","
		"\"xid\":7,\"lsn\":\"0/3000\"}",
		/* with a request id (set_request_id), and domain events (emit) */
		"{\"op\":\"begin\",\"xid\":745,\"request_id\":\"say \\\"hi\\\" \\\\ \\u00e9\",\"commit_lsn\":\"0/16B3748\"}",
		"{\"op\":\"commit\",\"request_id\":\"r-1\",\"events\":10}",
		"{\"op\":\"m\",\"prefix\":\"app\",\"transactional\":true,\"content\":\"x\",\"content_encoding\":\"text\","
		"\"seq\":12,\"request_id\":\"r-1\"}",
		"{\"op\":\"e\",\"topic\":\"orders.events\",\"key\":\"4\\\"2\",\"payload\":{\"a\": [1, 2.5e3, null, \"x]\\\"}\"], \"b\": {}},"
		"\"xid\":9,\"lsn\":\"0/2000\",\"commit_lsn\":\"0/2100\",\"seq\":2,\"request_id\":\"r-1\",\"ts\":\"2024-01-02T03:04:05+00:00\"}",
		"{\"op\":\"e\",\"topic\":\"t\",\"key\":null,\"payload\":\"s\",\"seq\":1}",
		"{\"op\":\"e\",\"topic\":\"t\",\"key\":\"\",\"payload\":[[], {\"k\": true}, false],\"seq\":3}",
	};
	const char	subst[] = "0x9/\"\\,:}{ \n\tAaez-";
	int			accepted = 0,
				mutants = 0,
				disagree = 0;
	char		buf[512];

	for (size_t e = 0; e < sizeof(events) / sizeof(events[0]); e++)
	{
		const char *ev = events[e];
		size_t		len = strlen(ev);
		int			a = 0;

		CHECK(agrees_with_json(ev, len, &a) && a == 1, "accepted and as jansson reads it: %s", ev);
		for (size_t i = 0; i < len; i++)
		{
			/* deleted */
			memcpy(buf, ev, i);
			memcpy(buf + i, ev + i + 1, len - i - 1);
			mutants++;
			disagree += !agrees_with_json(buf, len - 1, &accepted);
			/* doubled */
			memcpy(buf, ev, i + 1);
			memcpy(buf + i + 1, ev + i, len - i);
			mutants++;
			disagree += !agrees_with_json(buf, len + 1, &accepted);
			/* replaced */
			for (const char *s = subst; *s; s++)
			{
				if (*s == ev[i])
					continue;
				memcpy(buf, ev, len);
				buf[i] = *s;
				mutants++;
				disagree += !agrees_with_json(buf, len, &accepted);
			}
		}
	}
	CHECK(disagree == 0, "%d mutants, %d accepted by a scanner, %d read otherwise by jansson",
		  mutants, accepted, disagree);
	CHECK(accepted > 0 && accepted < mutants / 4, "the scanners accept some mutants (other digits), refuse most");
}

/* scan_emit and scan_unescape on what the plugin writes, and what it does not */
static void
test_scan_emit(void)
{
	ScanEmit	e;
	char		dec[16];
	size_t		n;
	const char *ok1 = "{\"op\":\"e\",\"topic\":\"orders.events\",\"key\":\"42\",\"payload\":{\"id\": 42, \"s\": \"a,}\"},"
		"\"xid\":9,\"lsn\":\"0/2000\",\"commit_lsn\":\"0/2100\",\"seq\":2,\"request_id\":\"r\\\"1\",\"ts\":\"T\"}";
	const char *bad[] = {
		"{\"op\":\"e\",\"topic\":\"t\",\"key\":null,\"payload\":{\"a\": 1,\"seq\":1}",	/* unclosed */
		"{\"op\":\"e\",\"topic\":\"t\",\"key\":null,\"payload\":[1}],\"seq\":1}",
		"{\"op\":\"e\",\"topic\":\"t\",\"key\":null,\"payload\":,\"seq\":1}",
		"{\"op\":\"e\",\"topic\":\"t\",\"key\":null,\"payload\":{1: 2},\"seq\":1}",
		"{\"op\":\"e\",\"topic\":\"t\",\"key\":null,\"payload\":1}",	/* no seq */
		"{\"op\":\"e\",\"topic\":\"t\\u0041\",\"key\":null,\"payload\":1,\"seq\":1}",	/* escaped topic */
		"{\"op\":\"e\",\"topic\":\"t\",\"key\":7,\"payload\":1,\"seq\":1}",
	};

	CHECK(scan_kind(ok1, strlen(ok1)) == SCAN_EMIT, "an e event is SCAN_EMIT");
	CHECK(scan_emit(ok1, strlen(ok1), &e) && text_is(e.topic, "orders.events") && text_is(e.key, "42") &&
		  text_is(e.payload, "{\"id\": 42, \"s\": \"a,}\"}") && e.seq == 2 && e.commit_lsn_value == 0x2100 &&
		  text_is(e.request_id, "r\\\"1"), "emit fields");
	CHECK(scan_unescape(e.request_id, dec, sizeof(dec), &n) && n == 3 && strcmp(dec, "r\"1") == 0,
		  "request id decoded");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(!scan_emit(bad[i], strlen(bad[i]), &e), "refused: %s", bad[i]);
	{
		ScanText	t = {"\\u00e9\\ud83d\\ude00\\n\\/", 22};

		CHECK(scan_unescape(t, dec, sizeof(dec), &n) && n == 8 &&
			  memcmp(dec, "\xc3\xa9\xf0\x9f\x98\x80\n/", 8) == 0, "\\u escapes and surrogate pairs as UTF-8");
		t.len = 12;				/* a lone high surrogate */
		CHECK(!scan_unescape((ScanText) {"\\ud83d", 6}, dec, sizeof(dec), &n), "lone surrogate refused");
		CHECK(!scan_unescape((ScanText) {"0123456789abcdef", 16}, dec, sizeof(dec), &n) && dec[0] == '\0',
			  "too long for dst: refused, dst empty");
	}
}

/* online_keys.c: a chunk snapshot's visibility (modulo 2^32) and the tracked keys */
static void
test_online_keys(void)
{
	Snap		snap;
	Tracked		t = {0};
	uint32_t	xid = 0;

	CHECK(snap_parse("100:105:101,103", &snap) && snap.xmin == 100 && snap.xmax == 105 && snap.nxip == 2,
		  "snapshot parsed (xmin %u, xmax %u, %d in xip)", snap.xmin, snap.xmax, snap.nxip);
	CHECK(snap_sees(&snap, 99) && snap_sees(&snap, 100) && snap_sees(&snap, 102) && snap_sees(&snap, 104),
		  "committed before the snapshot: seen");
	CHECK(!snap_sees(&snap, 101) && !snap_sees(&snap, 103), "in xip: not seen");
	CHECK(!snap_sees(&snap, 105) && !snap_sees(&snap, 200), "at or after xmax: not seen");
	snap_free(&snap);
	/* 64-bit xids across a wraparound of the 32-bit xids the events carry */
	CHECK(snap_parse("4294967290:4294967300:4294967295", &snap) && snap.xmin == 4294967290u &&
		  snap.xmax == 4 && snap.nxip == 1 && snap.xip[0] == 4294967295u, "epoch dropped");
	CHECK(snap_sees(&snap, 4294967280u) && snap_sees(&snap, 4294967293u) && snap_sees(&snap, 3),
		  "before xmax across the wraparound: seen");
	CHECK(!snap_sees(&snap, 4294967295u) && !snap_sees(&snap, 4) && !snap_sees(&snap, 1000),
		  "in xip or at/after xmax across the wraparound: not seen");
	snap_free(&snap);
	CHECK(snap_parse("7:7:", &snap) && snap.nxip == 0 && snap_sees(&snap, 6) && !snap_sees(&snap, 7),
		  "empty xip");
	snap_free(&snap);
	CHECK(!snap_parse("7:x:", &snap), "malformed snapshot refused");
	snap_free(&snap);

	track_put(&t, "{\"id\":1}", 8, 10);
	track_put(&t, "{\"id\":2}", 8, 20);
	track_put(&t, "{\"id\":1}", 8, 12);
	for (int i = 0; i < 5000; i++)
	{
		char		k[32];

		snprintf(k, sizeof(k), "{\"id\":%d}", 100 + i);
		track_put(&t, k, strlen(k), (uint32_t) (30 + i % 3));
	}
	CHECK(t.count == 5002 && track_xid(&t, "{\"id\":1}", 8, &xid) && xid == 12,
		  "the last xid per key (count %zu, xid %u)", t.count, xid);
	CHECK(!track_xid(&t, "{\"id\":3}", 8, &xid), "an untouched key is not tracked");
	CHECK(snap_parse("15:25:20", &snap), "snapshot 15:25:20");
	track_prune(&t, &snap);
	CHECK(!track_xid(&t, "{\"id\":1}", 8, &xid) && track_xid(&t, "{\"id\":2}", 8, &xid) && xid == 20 &&
		  t.count == 5001, "pruned: seen xids gone, xip and later kept (count %zu)", t.count);
	snap_free(&snap);
	track_clear(&t);
	CHECK(t.count == 0 && !track_xid(&t, "{\"id\":2}", 8, &xid), "cleared");
}

int
main(void)
{
	test_ring_order();
	test_online_keys();
	test_ring_failure();
	test_ring_growth();
	test_topics();
	test_topic_collisions();
	test_redact_conninfo_error();
	test_pq_error_flatten();
	test_redact_secrets();
	test_config();
	test_scan_split();
	test_scan_kind();
	test_scan_begin();
	test_scan_commit();
	test_scan_message();
	test_scan_mutations();
	test_scan_emit();
	printf("1..%d\n", tests);
	if (failures)
		printf("# %d of %d checks failed\n", failures, tests);
	return failures ? 1 : 0;
}
