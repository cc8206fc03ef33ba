/*
 * metrics.c: the relay's counters in the Prometheus text format (see
 * metrics.h), served by http.c on GET /metrics.
 */
#include "metrics.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http.h"

#define RELAXED memory_order_relaxed

static char *
dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

RelayMetrics *
metrics_new(const char *version, const char *slot, const char *delivery)
{
	RelayMetrics *m = calloc(1, sizeof(RelayMetrics));

	if (m == NULL)
		return NULL;
	m->version = dup_or_empty(version);
	m->slot = dup_or_empty(slot);
	m->delivery = dup_or_empty(delivery);
	if (m->version == NULL || m->slot == NULL || m->delivery == NULL)
	{
		free(m->version);
		free(m->slot);
		free(m->delivery);
		free(m);
		return NULL;
	}
	pthread_mutex_init(&m->lock, NULL);
	return m;
}

void
metrics_free(RelayMetrics *m)
{
	MetricsTable *t,
			   *next;

	if (m == NULL)
		return;
	http_stop(m->server);
	for (t = m->tables; t != NULL; t = next)
	{
		next = t->next;
		free(t->name);
		free(t);
	}
	pthread_mutex_destroy(&m->lock);
	free(m->version);
	free(m->slot);
	free(m->delivery);
	free(m);
}

MetricsTable *
metrics_table(RelayMetrics *m, const char *name)
{
	MetricsTable *t;

	pthread_mutex_lock(&m->lock);
	for (t = m->tables; t != NULL; t = t->next)
		if (strcmp(t->name, name) == 0)
			break;
	if (t == NULL && (t = calloc(1, sizeof(MetricsTable))) != NULL)
	{
		t->name = strdup(name);
		if (t->name == NULL)
		{
			free(t);
			t = NULL;
		}
		else if (m->tables_tail == NULL)
			m->tables = m->tables_tail = t;
		else
		{
			m->tables_tail->next = t;
			m->tables_tail = t;
		}
	}
	pthread_mutex_unlock(&m->lock);
	return t;
}

size_t
metrics_escape_label(char *out, size_t outlen, const char *value)
{
	size_t		n = 0,
				w = 0;
	bool		full = false;

	for (const char *p = value; *p; p++)
	{
		char		esc[2] = {*p, 0};
		size_t		k = 1;

		if (*p == '\\' || *p == '"' || *p == '\n')
		{
			esc[0] = '\\';
			esc[1] = *p == '\n' ? 'n' : *p;
			k = 2;
		}
		if (!full && w + k < outlen)
		{
			memcpy(out + w, esc, k);
			w += k;
		}
		else
			full = true;
		n += k;
	}
	if (outlen > 0)
		out[w] = '\0';
	return n;
}

/* Write value to f as an escaped label value (metrics_escape_label). */
static void
put_label(FILE *f, const char *value)
{
	char		small[256];
	size_t		n = metrics_escape_label(small, sizeof(small), value);
	char	   *big;

	if (n < sizeof(small))
	{
		fputs(small, f);
		return;
	}
	big = malloc(n + 1);
	if (big == NULL)
	{
		fputs("?", f);			/* out of memory: still a valid label value */
		return;
	}
	metrics_escape_label(big, n + 1, value);
	fputs(big, f);
	free(big);
}

static void
header(FILE *f, const char *name, const char *type, const char *help)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
single(FILE *f, const char *name, const char *type, const char *help, unsigned long long v)
{
	header(f, name, type, help);
	fprintf(f, "%s %llu\n", name, v);
}

char *
metrics_render(RelayMetrics *m, int64_t now_us, size_t *len)
{
	char	   *buf = NULL;
	FILE	   *f = open_memstream(&buf, len);
	uint64_t	walend = atomic_load_explicit(&m->server_wal_end, RELAXED),
				confirmed = atomic_load_explicit(&m->confirmed_lsn, RELAXED);
	int64_t		oldest = atomic_load_explicit(&m->oldest_pending_us, RELAXED);
	uint64_t	inflight = atomic_load_explicit(&m->stream_in_flight, RELAXED);
	double		lag_s = 0;
	MetricsTable *t;

	if (f == NULL)
		return NULL;
	if (m->snap_in_flight)
		inflight += atomic_load_explicit(m->snap_in_flight, RELAXED);
	if (oldest > 0 && now_us > oldest)
		lag_s = (double) (now_us - oldest) / 1e6;

	header(f, "cdc_relay_up", "gauge", "1 while the relay process runs.");
	fputs("cdc_relay_up 1\n", f);
	header(f, "cdc_relay_info", "gauge", "The relay's version, slot and delivery mode (value always 1).");
	fputs("cdc_relay_info{version=\"", f);
	put_label(f, m->version);
	fputs("\",slot=\"", f);
	put_label(f, m->slot);
	fputs("\",delivery=\"", f);
	put_label(f, m->delivery);
	fputs("\"} 1\n", f);

	pthread_mutex_lock(&m->lock);
	header(f, "cdc_relay_events_total", "counter",
		   "Change events produced to Kafka from the stream, by table and op (c insert, u update, d delete, t truncate).");
	for (t = m->tables; t != NULL; t = t->next)
		for (int op = 0; op < METRICS_NOPS; op++)
		{
			fputs("cdc_relay_events_total{table=\"", f);
			put_label(f, t->name);
			fprintf(f, "\",op=\"%c\"} %llu\n", METRICS_OPS[op],
					(unsigned long long) atomic_load_explicit(&t->events[op], RELAXED));
		}
	/* a family with one value per table, from MetricsTable field */
#define TABLE_FAMILY(family, type, help, field) do { \
		header(f, family, type, help); \
		for (t = m->tables; t != NULL; t = t->next) \
		{ \
			fputs(family "{table=\"", f); \
			put_label(f, t->name); \
			fprintf(f, "\"} %llu\n", (unsigned long long) atomic_load_explicit(&t->field, RELAXED)); \
		} \
	} while (0)
	TABLE_FAMILY("cdc_relay_bytes_total", "counter",
				 "Key and value bytes produced to Kafka for the table (stream, tombstones and snapshot).", bytes);
	TABLE_FAMILY("cdc_relay_snapshot_rows_total", "counter", "Snapshot rows produced to Kafka, by table.",
				 snapshot_rows);
	TABLE_FAMILY("cdc_relay_online_snapshot_rows_total", "counter",
				 "Online snapshot rows produced to Kafka, by table.", online_rows);
	TABLE_FAMILY("cdc_relay_online_snapshot_chunks_total", "counter",
				 "Online snapshot chunks emitted, by table.", online_chunks);
	TABLE_FAMILY("cdc_relay_online_snapshot_dropped_rows_total", "counter",
				 "Online snapshot rows dropped because the stream changed them meanwhile (its version wins), by table.",
				 online_dropped);
	TABLE_FAMILY("cdc_relay_online_snapshot_active", "gauge",
				 "1 while an online snapshot of the table runs.", online_active);
#undef TABLE_FAMILY
	pthread_mutex_unlock(&m->lock);

	single(f, "cdc_relay_snapshot_tables_done", "gauge", "Tables of the last snapshot read and delivered completely.",
		   (unsigned long long) atomic_load_explicit(&m->snapshot_tables_done, RELAXED));
	single(f, "cdc_relay_snapshot_tables", "gauge", "Tables of the last snapshot (0: none taken by this process).",
		   (unsigned long long) atomic_load_explicit(&m->snapshot_tables_total, RELAXED));
	single(f, "cdc_relay_transactions_total", "counter",
		   "PostgreSQL transactions produced to Kafka (those with at least one message).",
		   (unsigned long long) atomic_load_explicit(&m->transactions, RELAXED));
	header(f, "cdc_relay_emitted_events_total", "counter",
		   "Domain events (cdc_relay.emit): produced to their topics, or dropped (to a topic of the relay's own, --emit-refused=skip).");
	fprintf(f, "cdc_relay_emitted_events_total{result=\"produced\"} %llu\n",
			(unsigned long long) atomic_load_explicit(&m->emitted, RELAXED));
	fprintf(f, "cdc_relay_emitted_events_total{result=\"dropped\"} %llu\n",
			(unsigned long long) atomic_load_explicit(&m->emit_refused, RELAXED));
	single(f, "cdc_relay_lag_bytes", "gauge",
		   "The server's WAL end (from its last keepalive or data message) minus the position confirmed to PostgreSQL.",
		   (unsigned long long) (walend > confirmed && confirmed > 0 ? walend - confirmed : 0));
	header(f, "cdc_relay_lag_seconds", "gauge",
		   "Now minus the commit time of the oldest transaction not yet delivered to Kafka (0: nothing pending).");
	fprintf(f, "cdc_relay_lag_seconds %.3f\n", lag_s);
	single(f, "cdc_relay_messages_in_flight", "gauge", "Messages produced and awaiting Kafka's delivery report.",
		   (unsigned long long) inflight);
	single(f, "cdc_relay_delivery_errors_total", "counter", "Failed Kafka delivery reports.",
		   (unsigned long long) atomic_load_explicit(&m->delivery_errors, RELAXED));
	header(f, "cdc_relay_kafka_transactions_total", "counter",
		   "Kafka transactions (--delivery exactly-once) committed and aborted.");
	fprintf(f, "cdc_relay_kafka_transactions_total{result=\"commit\"} %llu\n",
			(unsigned long long) atomic_load_explicit(&m->kafka_commits, RELAXED));
	fprintf(f, "cdc_relay_kafka_transactions_total{result=\"abort\"} %llu\n",
			(unsigned long long) atomic_load_explicit(&m->kafka_aborts, RELAXED));
	single(f, "cdc_relay_reconnects_total", "counter", "Replication streams re-established after a lost session.",
		   (unsigned long long) atomic_load_explicit(&m->reconnects, RELAXED));
	single(f, "cdc_relay_schema_events_total", "counter", "Schema events produced to <prefix>.schemas (stream and snapshot).",
		   (unsigned long long) atomic_load_explicit(&m->schema_events, RELAXED));
	single(f, "cdc_relay_ddl_events_total", "counter", "DDL messages produced to <prefix>.ddl.",
		   (unsigned long long) atomic_load_explicit(&m->ddl_events, RELAXED));
	single(f, "cdc_relay_confirmed_lsn", "gauge", "The last position (LSN as a number) confirmed to PostgreSQL.",
		   (unsigned long long) confirmed);
	if (fclose(f) != 0)
	{
		free(buf);
		return NULL;
	}
	return buf;
}

/* http.c's handler: GET /metrics */
static void
handle(void *arg, const char *path, void *request, HttpReply *reply)
{
	RelayMetrics *m = arg;

	(void) request;
	if (strcmp(path, "/metrics") != 0)
	{
		static const char msg[] = "not found: the relay serves /metrics\n";

		reply->status = 404;
		reply->body = strdup(msg);
		reply->len = reply->body ? sizeof(msg) - 1 : 0;
		return;
	}
	reply->body = metrics_render(m, metrics_now_us(), &reply->len);
	if (reply->body == NULL)
	{
		reply->status = 500;
		return;
	}
	reply->status = 200;
	reply->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

int
metrics_serve(RelayMetrics *m, const char *addr, char *bound, size_t boundlen, char *err, size_t errlen)
{
	char		host[128];
	int			port;

	if (http_parse_addr(addr, host, sizeof(host), &port, err, errlen) != 0)
		return -1;
	m->server = http_start(addr, handle, m, err, errlen);
	if (m->server == NULL)
		return -1;
	if (strchr(host, ':') != NULL)
		snprintf(bound, boundlen, "[%s]:%d", host, http_port(m->server));
	else
		snprintf(bound, boundlen, "%s:%d", host[0] ? host : "0.0.0.0", http_port(m->server));
	return 0;
}

/* days since 1970-01-01 of a proleptic Gregorian date */
static int64_t
days_from_civil(int64_t y, int mon, int d)
{
	int64_t		era;
	unsigned	yoe,
				doy,
				doe;

	y -= mon <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned) (y - era * 400);
	doy = (unsigned) ((153 * (mon + (mon > 2 ? -3 : 9)) + 2) / 5 + d - 1);
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t) doe - 719468;
}

/* n digits at *p as a number, or -1 */
static int
digits(const char **p, const char *end, int n)
{
	int			v = 0;

	for (int i = 0; i < n; i++, (*p)++)
	{
		if (*p >= end || !isdigit((unsigned char) **p))
			return -1;
		v = v * 10 + (**p - '0');
	}
	return v;
}

int64_t
metrics_parse_ts(const char *s, size_t len)
{
	const char *p = s,
			   *end = s + len;
	int			y,
				mo,
				d,
				h,
				mi,
				sec;
	int64_t		us = 0,
				scale = 100000,
				off = 0;

	if ((y = digits(&p, end, 4)) < 0 || p >= end || *p++ != '-' ||
		(mo = digits(&p, end, 2)) < 1 || mo > 12 || p >= end || *p++ != '-' ||
		(d = digits(&p, end, 2)) < 1 || d > 31 || p >= end || (*p != 'T' && *p != ' ') ||
		(p++, (h = digits(&p, end, 2)) < 0) || h > 23 || p >= end || *p++ != ':' ||
		(mi = digits(&p, end, 2)) < 0 || mi > 59 || p >= end || *p++ != ':' ||
		(sec = digits(&p, end, 2)) < 0 || sec > 60)
		return 0;
	if (p < end && *p == '.')
	{
		for (p++; p < end && isdigit((unsigned char) *p); p++)
		{
			us += (*p - '0') * scale;
			scale /= 10;
		}
	}
	if (p < end && *p == 'Z')
		p++;
	else if (p < end && (*p == '+' || *p == '-'))
	{
		int			sign = *p++ == '-' ? -1 : 1;
		int			oh = digits(&p, end, 2),
					om = 0;

		if (oh < 0)
			return 0;
		if (p < end && *p == ':')
			p++;
		if (p < end && (om = digits(&p, end, 2)) < 0)
			return 0;
		off = sign * ((int64_t) oh * 3600 + om * 60);
	}
	if (p != end)
		return 0;
	return ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) - off) * 1000000 + us;
}

int64_t
metrics_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
