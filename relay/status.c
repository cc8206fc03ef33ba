/*
 * status.c: `cdc-relay status`: the health of the relay's slot as the
 * extension's view cdc_relay.slot_health sees it (retained WAL, WAL rate,
 * time until invalidation, the cause of retention), whether a relay holds
 * the slot's lock, and with -b the relay's record in the state topic.
 *
 * Without the extension (or with one older than 0.3.0) the same comes from
 * pg_replication_slots, with the columns it can fill, and a note that the
 * extension gives the rest.
 *
 * Exit status: 0 healthy, 1 the slot is missing, lost or not connected,
 * 2 bad usage, 3 could not look (connection, Kafka).
 */
#include "status.h"
#include "relay.h"

#include <jansson.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#define TRY_HELP "Try \"cdc-relay --help\" for more information.\n"

/* The view's columns, in this order, in both queries below. */
static const char *const columns[] = {
	"slot_name", "plugin", "database", "active", "active_pid", "restart_lsn",
	"confirmed_flush_lsn", "retained_wal_bytes", "confirmed_lag_bytes", "wal_status",
	"safe_wal_size", "wal_rate_bytes_per_s", "rate_source", "seconds_until_invalidated",
	"cause", "cause_detail"
};
#define NCOLUMNS ((int) (sizeof(columns) / sizeof(columns[0])))

/* slot_health, when the extension that owns it is installed */
static const char *const q_view =
"SELECT slot_name, plugin, database, active, active_pid, restart_lsn, confirmed_flush_lsn,"
" retained_wal_bytes, confirmed_lag_bytes, wal_status, safe_wal_size,"
" pg_catalog.round(wal_rate_bytes_per_s::pg_catalog.numeric, 1), rate_source,"
" pg_catalog.round(seconds_until_invalidated::pg_catalog.numeric), cause, cause_detail"
" FROM cdc_relay.slot_health WHERE slot_name = $1";

/* the same from pg_replication_slots: no rate, no time, only two causes */
static const char *const q_plain =
"SELECT s.slot_name, s.plugin, s.database, s.active, s.active_pid, s.restart_lsn, s.confirmed_flush_lsn,"
" (pg_catalog.pg_current_wal_insert_lsn() OPERATOR(pg_catalog.-) s.restart_lsn)::pg_catalog.int8,"
" (pg_catalog.pg_current_wal_insert_lsn() OPERATOR(pg_catalog.-) s.confirmed_flush_lsn)::pg_catalog.int8,"
" s.wal_status, s.safe_wal_size, NULL, NULL, NULL,"
" CASE WHEN s.wal_status = 'lost' THEN 'lost' WHEN NOT s.active THEN 'not connected' END,"
" NULL"
" FROM pg_catalog.pg_replication_slots s WHERE s.slot_name = $1 AND s.slot_type = 'logical'";

/* Is the view there, and part of the cdc_relay extension? */
static const char *const q_has_view =
"SELECT e.extversion FROM pg_catalog.pg_extension e"
" WHERE e.extname = 'cdc_relay' AND EXISTS ("
"  SELECT 1 FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_class c ON c.oid = d.objid"
"   JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
"  WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = e.oid"
"    AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype = 'e'"
"    AND n.nspname = 'cdc_relay' AND c.relname = 'slot_health')";

#define EXTENSION_NOTE "the cdc_relay extension (0.3.0 or later) is not installed in this database: " \
	"the WAL rate, the time until invalidation and the causes behind, old transaction and idle " \
	"come from its view cdc_relay.slot_health; fix: CREATE EXTENSION cdc_relay; (or ALTER EXTENSION " \
	"cdc_relay UPDATE;)"

static void
status_usage(FILE *out)
{
	fputs("  cdc-relay status -d CONNINFO [-S SLOT] [--topic-prefix PREFIX -b BROKERS] [--json]\n"
		  "      the health of the slot (cdc_relay.slot_health: retained WAL, WAL rate, time until\n"
		  "      invalidation, cause of retention), whether a relay holds it and, with -b, the\n"
		  "      relay's record in the state topic; also takes -c, --state-topic and -X of run.\n"
		  "      Exit 0 healthy, 1 the slot is missing, lost or not connected, 2 bad usage,\n"
		  "      3 could not look\n", out);
}

void
status_usage_line(FILE *out)
{
	status_usage(out);
}

/* Online snapshot jobs not yet finished, as cdc_relay.snapshot_jobs (0.4.0) says. */
static const char *const q_online =
"SELECT id, table_name, \"where\", status, chunks, rows, last_key, updated_at"
" FROM cdc_relay.snapshot_jobs WHERE status OPERATOR(pg_catalog.=) ANY ('{requested,running}')"
" ORDER BY id";

/* A column value as JSON: numbers and booleans typed, NULL as null. */
static json_t *
column_json(PGresult *res, int col)
{
	const char *v;
	Oid			type = PQftype(res, col);

	if (PQgetisnull(res, 0, col))
		return json_null();
	v = PQgetvalue(res, 0, col);
	switch (type)
	{
		case 16:				/* bool */
			return json_boolean(v[0] == 't');
		case 20:				/* int8 */
		case 23:				/* int4 */
			return json_integer(strtoll(v, NULL, 10));
		case 700:				/* float4 */
		case 701:				/* float8 */
		case 1700:				/* numeric */
			return json_real(strtod(v, NULL));
		default:
			return json_string(v);
	}
}

static const char *
col(PGresult *res, int c, const char *if_null)
{
	return PQgetisnull(res, 0, c) ? if_null : PQgetvalue(res, 0, c);
}

/* bytes as "N bytes (X MB)" */
static const char *
bytes_text(const char *v, char *buf, size_t len)
{
	double		b;

	if (v == NULL)
		return "-";
	b = strtod(v, NULL);
	if (b >= 1024.0 * 1024 * 1024)
		snprintf(buf, len, "%s bytes (%.1f GB)", v, b / (1024.0 * 1024 * 1024));
	else if (b >= 1024.0 * 1024)
		snprintf(buf, len, "%s bytes (%.1f MB)", v, b / (1024.0 * 1024));
	else if (b >= 1024.0)
		snprintf(buf, len, "%s bytes (%.1f kB)", v, b / 1024.0);
	else
		snprintf(buf, len, "%s bytes", v);
	return buf;
}

/* The state record's online snapshot progress, one line; queued jobs another. */
static void
print_online_state(const Relay *r)
{
	json_t	   *o = r->st_online_json ? json_loads(r->st_online_json, 0, NULL) : NULL;
	json_t	   *lk = json_object_get(o, "last_key");
	char	   *lks = json_is_array(lk) ? json_dumps(lk, JSON_COMPACT) : NULL;

	if (o && json_is_integer(json_object_get(o, "job")))
		printf("online snapshot (state): job %lld of %s%s%s: %lld chunks, %lld rows delivered, last key %s%s\n",
			   (long long) json_integer_value(json_object_get(o, "job")),
			   json_string_value(json_object_get(o, "table")),
			   json_is_string(json_object_get(o, "where")) ? " where " : "",
			   json_is_string(json_object_get(o, "where")) ? json_string_value(json_object_get(o, "where")) : "",
			   (long long) json_integer_value(json_object_get(o, "chunks")),
			   (long long) json_integer_value(json_object_get(o, "rows")),
			   lks ? lks : "(none yet)", json_is_true(json_object_get(o, "final")) ? " (complete)" : "");
	if (json_array_size(json_object_get(o, "queued")) > 0)
		printf("online snapshot (state): %zu more queued\n", json_array_size(json_object_get(o, "queued")));
	free(lks);
	json_decref(o);
}

/* The unfinished jobs of cdc_relay.snapshot_jobs (online: its rows; NULL: none), one line each. */
static void
print_online_jobs(PGresult *online)
{
	for (int i = 0; online && i < PQntuples(online); i++)
		printf("online snapshot job %s (%s%s%s): %s, %s chunks, %s rows read, last key %s, updated %s\n",
			   PQgetvalue(online, i, 0), PQgetvalue(online, i, 1), PQgetisnull(online, i, 2) ? "" : " where ",
			   PQgetvalue(online, i, 2), PQgetvalue(online, i, 3), PQgetvalue(online, i, 4),
			   PQgetvalue(online, i, 5), PQgetisnull(online, i, 6) ? "(none yet)" : PQgetvalue(online, i, 6),
			   PQgetvalue(online, i, 7));
}

static void
print_text(const char *slot, PGresult *res, bool have_view, bool healthy, int holder, const char *who,
		   const Relay *r, bool read_state)
{
	char		b1[64],
				b2[64];

	if (res == NULL)
		printf("slot \"%s\": does not exist (or is not a logical slot) in this database's server\n", slot);
	else
	{
		printf("slot \"%s\" (plugin %s, database %s): %s%s\n", slot, col(res, 1, "?"), col(res, 2, "?"),
			   col(res, 14, "unknown"), healthy ? "" : " (unhealthy)");
		if (!PQgetisnull(res, 0, 15))
			printf("  cause detail:              %s\n", col(res, 15, ""));
		printf("  active:                    %s", strcmp(col(res, 3, "f"), "t") == 0 ? "yes" : "no");
		if (!PQgetisnull(res, 0, 4))
			printf(" (walsender pid %s)", col(res, 4, ""));
		printf("\n");
		printf("  restart_lsn:               %s\n", col(res, 5, "-"));
		printf("  confirmed_flush_lsn:       %s\n", col(res, 6, "-"));
		printf("  retained WAL:              %s\n", bytes_text(col(res, 7, NULL), b1, sizeof(b1)));
		printf("  unconfirmed WAL:           %s\n", bytes_text(col(res, 8, NULL), b2, sizeof(b2)));
		printf("  wal_status:                %s\n", col(res, 9, "-"));
		printf("  safe_wal_size:             %s\n",
			   PQgetisnull(res, 0, 10) ? "unlimited (max_slot_wal_keep_size = -1)" : bytes_text(col(res, 10, NULL), b1, sizeof(b1)));
		if (have_view)
		{
			printf("  WAL rate:                  %s bytes/s (%s)\n", col(res, 11, "-"), col(res, 12, "-"));
			printf("  seconds until invalidated: %s\n", col(res, 13, "- (no limit, or no WAL written)"));
		}
	}
	if (holder == 1)
		printf("relay: running (holds the slot's lock: %s)\n", who);
	else if (holder == 0)
		printf("relay: not running (no session holds the slot's lock)\n");
	else
		printf("relay: unknown (could not read pg_locks)\n");
	if (read_state)
	{
		char		lsn1[24],
					lsn2[24];

		if (r->st_snapshot[0] == '\0')
			printf("state (%s): no record for this slot\n", r->cfg->state_topic);
		else
			printf("state (%s): snapshot %s at %s, confirmed_lsn %s\n", r->cfg->state_topic, r->st_snapshot,
				   lsn_str(r->st_consistent_point, lsn1),
				   r->ckpt_durable ? lsn_str(r->ckpt_durable, lsn2) : "none yet");
		print_online_state(r);
	}
	if (!have_view)
		printf("note: %s\n", EXTENSION_NOTE);
}

static void
print_json(const char *slot, PGresult *res, bool have_view, const char *extversion, bool healthy,
		   int holder, int holder_pid, const char *who, const Relay *r, bool read_state, PGresult *online)
{
	json_t	   *o = json_object();
	json_t	   *s = json_null();
	json_t	   *relay = json_object();
	char		lsn[24];
	char	   *text;

	if (res != NULL)
	{
		s = json_object();
		for (int i = 0; i < NCOLUMNS; i++)
			json_object_set_new(s, columns[i], column_json(res, i));
	}
	json_object_set_new(o, "slot_name", json_string(slot));
	json_object_set_new(o, "slot", s);
	json_object_set_new(relay, "running", holder < 0 ? json_null() : json_boolean(holder == 1));
	json_object_set_new(relay, "pid", holder == 1 ? json_integer(holder_pid) : json_null());
	json_object_set_new(relay, "holder", holder == 1 ? json_string(who) : json_null());
	json_object_set_new(o, "relay", relay);
	if (read_state)
	{
		json_t	   *st = json_object();

		json_object_set_new(st, "topic", json_string(r->cfg->state_topic));
		json_object_set_new(st, "snapshot", r->st_snapshot[0] ? json_string(r->st_snapshot) : json_null());
		json_object_set_new(st, "consistent_point",
							r->st_snapshot[0] ? json_string(lsn_str(r->st_consistent_point, lsn)) : json_null());
		json_object_set_new(st, "confirmed_lsn",
							r->ckpt_durable ? json_string(lsn_str(r->ckpt_durable, lsn)) : json_null());
		json_object_set_new(st, "online", r->st_online_json ? json_loads(r->st_online_json, 0, NULL) : json_null());
		json_object_set_new(o, "state", st);
	}
	else
		json_object_set_new(o, "state", json_null());
	json_object_set_new(o, "extension", extversion ? json_string(extversion) : json_null());
	json_object_set_new(o, "source", json_string(have_view ? "cdc_relay.slot_health" : "pg_replication_slots"));
	if (!have_view)
		json_object_set_new(o, "note", json_string(EXTENSION_NOTE));
	if (online)
	{
		json_t	   *jobs = json_array();

		for (int i = 0; i < PQntuples(online); i++)
			json_array_append_new(jobs, json_pack("{s:s, s:s, s:s?, s:s, s:s, s:s, s:s?, s:s}",
												  "id", PQgetvalue(online, i, 0), "table", PQgetvalue(online, i, 1),
												  "where", PQgetisnull(online, i, 2) ? NULL : PQgetvalue(online, i, 2),
												  "status", PQgetvalue(online, i, 3), "chunks", PQgetvalue(online, i, 4),
												  "rows", PQgetvalue(online, i, 5),
												  "last_key", PQgetisnull(online, i, 6) ? NULL : PQgetvalue(online, i, 6),
												  "updated_at", PQgetvalue(online, i, 7)));
		json_object_set_new(o, "online_jobs", jobs);
	}
	json_object_set_new(o, "healthy", json_boolean(healthy));
	text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
	if (text)
		printf("%s\n", text);
	free(text);
	json_decref(o);
}

/*
 * Parse status's arguments: --json is its own; the rest are run's options
 * (config_parse_run), where -b and --topic-prefix are optional: without -b
 * the state topic is not read.  Returns 0, 1 (--help printed) or 2 (err).
 */
static int
parse_args(int argc, char **argv, RelayConfig *cfg, bool *json, bool *kafka, char *err, size_t errlen)
{
	char	  **args = calloc(argc + 5, sizeof(char *));
	int			n = 0,
				rc;

	if (args == NULL)
		relay_out_of_memory();
	*json = false;
	for (int i = 0; i < argc; i++)
	{
		if (strcmp(argv[i], "--json") == 0)
			*json = true;
		else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
		{
			printf("Usage:\n");
			status_usage(stdout);
			free(args);
			return 1;
		}
		else
			args[n++] = argv[i];
	}
	rc = config_parse_run(n, args, cfg, err, errlen);
	*kafka = true;
	if (rc == 2 && cfg->conninfo != NULL && cfg->brokers == NULL)
	{
		/* no Kafka: placeholders that nothing uses */
		config_free(cfg);
		args[n++] = "-b";
		args[n++] = "none";
		args[n++] = "--topic-prefix";
		args[n++] = "none";
		*kafka = false;
		rc = config_parse_run(n, args, cfg, err, errlen);
	}
	free(args);
	if (rc == 1)
		return 1;
	return rc == 0 ? 0 : 2;
}

int
status_main(int argc, char **argv)
{
	RelayConfig cfg;
	Relay		r;
	char		err[1024];
	bool		json,
				kafka;
	volatile sig_atomic_t never = 0;
	PGconn	   *conn = NULL;
	PGresult   *res = NULL,
			   *ext = NULL,
			   *online = NULL;
	const char *params[1];
	bool		have_view = false,
				healthy = false,
				read_state = false;
	const char *extversion = NULL;
	char		who[400] = "";
	int			holder,
				holder_pid = 0,
				rc = 3;

	memset(&cfg, 0, sizeof(cfg));
	switch (parse_args(argc, argv, &cfg, &json, &kafka, err, sizeof(err)))
	{
		case 1:
			config_free(&cfg);
			return 0;
		case 2:
			fprintf(stderr, "cdc-relay status: %s\n" TRY_HELP, err);
			config_free(&cfg);
			return 2;
	}
	memset(&r, 0, sizeof(r));
	r.cfg = &cfg;
	r.v = cfg.verbosity;
	r.stop = &never;
	r.hup = &never;
	r.brokers = cfg.brokers;
	params[0] = cfg.slot;

	conn = pg_connect(&r, false);
	if (conn == NULL)
		goto out;
	ext = pg_exec(&r, conn, q_has_view, 0, NULL);
	if (PQresultStatus(ext) != PGRES_TUPLES_OK)
	{
		rlog(r.v, LOG_ERROR, "could not look for the cdc_relay extension: %s",
			 pg_res_error(&r, conn, ext, err, sizeof(err)));
		goto out;
	}
	have_view = PQntuples(ext) == 1;
	extversion = have_view ? PQgetvalue(ext, 0, 0) : NULL;
	res = pg_exec(&r, conn, have_view ? q_view : q_plain, 1, params);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		rlog(r.v, LOG_ERROR, "could not read the health of slot \"%s\": %s", cfg.slot,
			 pg_res_error(&r, conn, res, err, sizeof(err)));
		goto out;
	}
	if (PQntuples(res) == 0)
	{
		PQclear(res);
		res = NULL;
	}
	else
	{
		const char *cause = col(res, 14, "");

		healthy = strcmp(cause, "lost") != 0 && strcmp(cause, "not connected") != 0;
	}
	holder = pg_slot_lock_holder(&r, conn, cfg.slot, who, sizeof(who), &holder_pid);

	if (kafka)
	{
		PGconn	   *repl = pg_connect(&r, true);

		if (repl == NULL || pg_identify(&r, repl) != 0 || state_read(&r) != 0)
		{
			if (repl)
				PQfinish(repl);
			goto out;
		}
		PQfinish(repl);
		read_state = true;
	}
	if (have_view)
	{
		online = pg_exec(&r, conn, "SELECT pg_catalog.to_regclass('cdc_relay.snapshot_jobs') IS NOT NULL", 0, NULL);
		if (PQresultStatus(online) == PGRES_TUPLES_OK && strcmp(PQgetvalue(online, 0, 0), "t") == 0)
		{
			PQclear(online);
			online = pg_exec(&r, conn, q_online, 0, NULL);
		}
		if (PQresultStatus(online) != PGRES_TUPLES_OK || PQnfields(online) != 8)
		{
			PQclear(online);
			online = NULL;
		}
	}
	if (json)
		print_json(cfg.slot, res, have_view, extversion, healthy, holder, holder_pid, who, &r, read_state, online);
	else
	{
		print_text(cfg.slot, res, have_view, healthy, holder, who, &r, read_state);
		print_online_jobs(online);
	}
	rc = healthy ? 0 : 1;

out:
	PQclear(res);
	PQclear(ext);
	PQclear(online);
	if (conn)
		PQfinish(conn);
	free(r.ckpt_partial_json);
	free(r.st_online_json);
	config_free(&cfg);
	return rc;
}
