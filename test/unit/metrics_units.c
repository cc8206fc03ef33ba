/*
 * metrics_units.c: unit tests of http.c's address parser (http_parse_addr)
 * and of metrics.c: label value escaping, the plugin's timestamps, and the
 * rendered exposition (checked line by line; TAP test 121 checks it with
 * promtool).  TAP output; exits non-zero on any failure.  Built and run by
 * `make -C relay check` (with ASan/UBSan).
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "metrics.h"

static int	tests;
static int	failures;

#define CHECK(cond, ...) \
	do { \
		bool		ok_ = (cond); \
		tests++; \
		if (!ok_) \
			failures++; \
		printf("%s %d - ", ok_ ? "ok" : "not ok", tests); \
		printf(__VA_ARGS__); \
		printf("\n"); \
		if (!ok_) \
			printf("#   failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
	} while (0)

static void
test_parse_addr(void)
{
	static const struct
	{
		const char *addr;
		int			rc;
		const char *host;
		int			port;
	}			cases[] = {
		{"127.0.0.1:9187", 0, "127.0.0.1", 9187},
		{":9187", 0, "", 9187},
		{"9187", 0, "", 9187},
		{"0", 0, "", 0},
		{"localhost:0", 0, "127.0.0.1", 0},
		{"[::1]:8080", 0, "::1", 8080},
		{"[::]:1", 0, "::", 1},
		{"0.0.0.0:65535", 0, "0.0.0.0", 65535},
		{"", -1, NULL, 0},
		{"127.0.0.1:", -1, NULL, 0},
		{"127.0.0.1:65536", -1, NULL, 0},
		{"127.0.0.1:-1", -1, NULL, 0},
		{"127.0.0.1:80x", -1, NULL, 0},
		{"host", -1, NULL, 0},
		{"[::1]", -1, NULL, 0},
		{"[::1:80", -1, NULL, 0},
		{"99999999999999999999", -1, NULL, 0},
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
	{
		char		host[64] = "unset",
					err[256] = "";
		int			port = -7;
		int			rc = http_parse_addr(cases[i].addr, host, sizeof(host), &port, err, sizeof(err));

		if (cases[i].rc == 0)
			CHECK(rc == 0 && strcmp(host, cases[i].host) == 0 && port == cases[i].port,
				  "http_parse_addr(\"%s\") = host \"%s\" port %d (%s)", cases[i].addr, host, port,
				  rc == 0 ? "ok" : err);
		else
			CHECK(rc == -1 && err[0] != '\0', "http_parse_addr(\"%s\") refused: %s", cases[i].addr, err);
	}
	{
		char		host[4],
					err[256] = "";
		int			port;

		CHECK(http_parse_addr("[1234:5678::1]:80", host, sizeof(host), &port, err, sizeof(err)) == -1 &&
			  strstr(err, "too long") != NULL, "a host longer than the buffer is refused: %s", err);
	}
	{
		char		err[256] = "";

		CHECK(http_start("not-an-address", NULL, NULL, err, sizeof(err)) == NULL && err[0] != '\0',
			  "http_start refuses a bad address: %s", err);
	}
}

static void
test_escape(void)
{
	char		out[64];
	size_t		n;

	n = metrics_escape_label(out, sizeof(out), "public.orders");
	CHECK(n == 13 && strcmp(out, "public.orders") == 0, "plain value unchanged: %s", out);
	n = metrics_escape_label(out, sizeof(out), "a\\b\"c\nd");
	CHECK(strcmp(out, "a\\\\b\\\"c\\nd") == 0 && n == strlen(out), "backslash, quote, newline escaped: %s", out);
	n = metrics_escape_label(out, sizeof(out), "\"My Table\".\"x\ty\"");
	CHECK(strcmp(out, "\\\"My Table\\\".\\\"x\ty\\\"") == 0, "quoted identifiers; a tab stays: %s", out);
	n = metrics_escape_label(out, 4, "ab\"c");
	CHECK(n == 5 && strcmp(out, "ab") == 0, "truncated before a half escape: \"%s\", needs %zu", out, n);
	n = metrics_escape_label(out, 5, "ab\"c");
	CHECK(n == 5 && strcmp(out, "ab\\\"") == 0, "truncated after a whole escape: \"%s\"", out);
	n = metrics_escape_label(NULL, 0, "x\n");
	CHECK(n == 3, "the length alone: %zu", n);
	n = metrics_escape_label(out, sizeof(out), "");
	CHECK(n == 0 && out[0] == '\0', "empty value");
	n = metrics_escape_label(out, sizeof(out), "t\xc3\xa4" "ble");
	CHECK(strcmp(out, "t\xc3\xa4" "ble") == 0, "UTF-8 passes unchanged");
}

static void
test_parse_ts(void)
{
	const char *a = "2024-01-02T03:04:05.5+00:00";

	CHECK(metrics_parse_ts(a, strlen(a)) == 1704164645500000LL, "%s", a);
	a = "1970-01-01T00:00:00+00:00";
	CHECK(metrics_parse_ts(a, strlen(a)) == 0, "the epoch is 0 (callers treat 0 as unknown)");
	a = "2000-03-01T00:00:01.000001Z";
	CHECK(metrics_parse_ts(a, strlen(a)) == 951868801000001LL, "%s", a);
	a = "2024-01-02T05:04:05.25+02:00";
	CHECK(metrics_parse_ts(a, strlen(a)) == 1704164645250000LL, "%s (offset)", a);
	a = "2024-01-02T03:04:05-01";
	CHECK(metrics_parse_ts(a, strlen(a)) == 1704168245000000LL, "%s (hours only)", a);
	a = "2024-01-02T03:04:05.5+00:00";
	CHECK(metrics_parse_ts(a, 10) == 0, "cut short: not a timestamp");
	a = "infinity";
	CHECK(metrics_parse_ts(a, strlen(a)) == 0, "infinity: not a timestamp");
	a = "2024-13-02T03:04:05+00:00";
	CHECK(metrics_parse_ts(a, strlen(a)) == 0, "month 13: not a timestamp");
	a = "2024-01-02T03:04:05+00:00x";
	CHECK(metrics_parse_ts(a, strlen(a)) == 0, "trailing garbage: not a timestamp");
}

static bool
has_line(const char *text, const char *line)
{
	size_t		n = strlen(line);

	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return true;
	return false;
}

static void
test_render(void)
{
	RelayMetrics *m = metrics_new("0.3.0", "slot\"x", "exactly-once");
	MetricsTable *t1,
			   *t2;
	atomic_uint_fast64_t snap = 4;
	char	   *text;
	size_t		len;

	CHECK(m != NULL, "metrics_new");
	t1 = metrics_table(m, "public.a");
	t2 = metrics_table(m, "s.\"We\\ird\"");
	CHECK(t1 != NULL && t2 != NULL && metrics_table(m, "public.a") == t1, "metrics_table finds an entry again");
	atomic_store(&t1->events[0], 3);
	atomic_store(&t1->events[2], 1);
	atomic_store(&t1->bytes, 120);
	atomic_store(&t2->snapshot_rows, 7);
	atomic_store(&m->server_wal_end, 1000);
	atomic_store(&m->confirmed_lsn, 400);
	atomic_store(&m->oldest_pending_us, 5000000);
	atomic_store(&m->stream_in_flight, 2);
	m->snap_in_flight = &snap;
	atomic_store(&m->kafka_commits, 9);
	atomic_store(&m->kafka_aborts, 1);
	atomic_store(&m->reconnects, 2);
	atomic_store(&m->schema_events, 3);
	atomic_store(&m->ddl_events, 4);
	atomic_store(&m->transactions, 5);
	atomic_store(&m->snapshot_tables_done, 1);
	atomic_store(&m->snapshot_tables_total, 2);
	text = metrics_render(m, 7500000, &len);
	CHECK(text != NULL && strlen(text) == len, "rendered %zu bytes", len);
	if (text == NULL)
		return;
	CHECK(has_line(text, "cdc_relay_up 1"), "up");
	CHECK(has_line(text, "cdc_relay_info{version=\"0.3.0\",slot=\"slot\\\"x\",delivery=\"exactly-once\"} 1"),
		  "info, slot escaped");
	CHECK(has_line(text, "cdc_relay_events_total{table=\"public.a\",op=\"c\"} 3") &&
		  has_line(text, "cdc_relay_events_total{table=\"public.a\",op=\"u\"} 0") &&
		  has_line(text, "cdc_relay_events_total{table=\"public.a\",op=\"d\"} 1") &&
		  has_line(text, "cdc_relay_events_total{table=\"public.a\",op=\"t\"} 0"), "events by op");
	CHECK(has_line(text, "cdc_relay_snapshot_rows_total{table=\"s.\\\"We\\\\ird\\\"\"} 7"),
		  "snapshot rows, table name escaped");
	CHECK(has_line(text, "cdc_relay_bytes_total{table=\"public.a\"} 120"), "bytes");
	CHECK(has_line(text, "cdc_relay_lag_bytes 600"), "lag bytes = WAL end - confirmed");
	CHECK(has_line(text, "cdc_relay_lag_seconds 2.500"), "lag seconds = now - oldest pending commit");
	CHECK(has_line(text, "cdc_relay_messages_in_flight 6"), "in flight: stream + snapshot");
	CHECK(has_line(text, "cdc_relay_kafka_transactions_total{result=\"commit\"} 9") &&
		  has_line(text, "cdc_relay_kafka_transactions_total{result=\"abort\"} 1"), "Kafka transactions");
	CHECK(has_line(text, "cdc_relay_reconnects_total 2") && has_line(text, "cdc_relay_transactions_total 5") &&
		  has_line(text, "cdc_relay_confirmed_lsn 400") && has_line(text, "cdc_relay_snapshot_tables_done 1") &&
		  has_line(text, "cdc_relay_snapshot_tables 2") &&
		  has_line(text, "cdc_relay_schema_events_total 3") &&
		  has_line(text, "cdc_relay_ddl_events_total 4"), "counters and gauges");
	CHECK(has_line(text, "# TYPE cdc_relay_events_total counter") &&
		  has_line(text, "# TYPE cdc_relay_lag_seconds gauge"), "TYPE lines");
	CHECK(has_line(text, "cdc_relay_emitted_events_total{result=\"produced\"} 0") &&
		  has_line(text, "cdc_relay_emitted_events_total{result=\"dropped\"} 0"), "domain events");
	{
		int			help = 0,
					type = 0;

		for (const char *p = text; (p = strstr(p, "# HELP ")) != NULL; p++)
			help++;
		for (const char *p = text; (p = strstr(p, "# TYPE ")) != NULL; p++)
			type++;
		CHECK(help == 22 && type == 22, "HELP and TYPE for each of the 22 metrics (%d, %d)", help, type);
	}
	free(text);
	atomic_store(&m->oldest_pending_us, 0);
	atomic_store(&m->confirmed_lsn, 2000);
	text = metrics_render(m, 7500000, &len);
	CHECK(text && has_line(text, "cdc_relay_lag_seconds 0.000") && has_line(text, "cdc_relay_lag_bytes 0"),
		  "nothing pending, confirmed past the WAL end seen: both lags 0");
	free(text);
	metrics_free(m);
}

int
main(void)
{
	test_parse_addr();
	test_escape();
	test_parse_ts();
	test_render();
	printf("1..%d\n", tests);
	if (failures)
		printf("# %d of %d checks failed\n", failures, tests);
	return failures ? 1 : 0;
}
