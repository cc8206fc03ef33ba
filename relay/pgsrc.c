/*
 * pgsrc.c: the PostgreSQL side of the relay: connections, the prerequisite
 * checks, replication slots and the streaming replication protocol.
 */
#include "relay.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * Connect with the user's connection string (or URI) plus, for the
 * replication connection, replication=database.  Logs what failed, never the
 * password.
 */
PGconn *
pg_connect(Relay *r, bool replication)
{
	PQconninfoOption *opts,
			   *o;
	char	   *err = NULL;
	const char *keys[64];
	const char *vals[64];
	int			n = 0;
	PGconn	   *conn;

	opts = PQconninfoParse(r->cfg->conninfo, &err);
	if (opts == NULL)
	{
		rlog(r->v, LOG_ERROR, "invalid connection string: %s", err ? err : "out of memory");
		PQfreemem(err);
		return NULL;
	}
	for (o = opts; o->keyword != NULL && n < 60; o++)
	{
		if (o->val == NULL || strcmp(o->keyword, "replication") == 0)
			continue;
		keys[n] = o->keyword;
		vals[n] = o->val;
		n++;
	}
	if (replication)
	{
		keys[n] = "replication";
		vals[n] = "database";
		n++;
	}
	keys[n] = "fallback_application_name";
	vals[n] = "cdc-relay";
	n++;
	keys[n] = NULL;
	vals[n] = NULL;
	conn = PQconnectdbParams(keys, vals, 0);
	PQconninfoFree(opts);
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
	{
		rlog(r->v, LOG_ERROR, "could not connect to the database%s: %s",
			 replication ? " (replication connection)" : "",
			 conn ? PQerrorMessage(conn) : "out of memory");
		PQfinish(conn);
		return NULL;
	}
	return conn;
}

static const char *
val(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/* Is "cdc_relay" an item of a GUC list like  pgoutput, "cdc_relay" ? */
static bool
list_has_cdc_relay(const char *list)
{
	const char *p = list;

	while (*p)
	{
		const char *start,
				   *end;

		while (*p == ' ' || *p == ',' || *p == '\t')
			p++;
		start = p;
		if (*p == '"')
		{
			start = ++p;
			while (*p && *p != '"')
				p++;
			end = p;
			if (*p)
				p++;
		}
		else
		{
			while (*p && *p != ',')
				p++;
			end = p;
			while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
				end--;
		}
		if (end - start == 9 && strncmp(start, "cdc_relay", 9) == 0)
			return true;
	}
	return false;
}

/*
 * Check what the relay needs from the server and log every problem with its
 * exact fix.  Returns the number of problems (0 = all good, -1 = the query
 * itself failed).
 */
int
pg_check_prereqs(Relay *r, PGconn *conn, bool need_snapshot)
{
	const char *q =
		"SELECT current_setting('wal_level'),"
		" (SELECT setting FROM pg_settings WHERE name = 'output_plugin_libraries'),"
		" EXISTS (SELECT 1 FROM pg_settings WHERE name = 'output_plugin_libraries')"
		"   OR current_setting('server_version_num')::int < 150019,"
		" (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),"
		" current_setting('max_replication_slots')::int,"
		" (SELECT count(*) FROM pg_replication_slots),"
		" EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1),"
		" (SELECT extversion FROM pg_extension WHERE extname = 'cdc_relay'),"
		" to_regprocedure('cdc_relay.snapshot_row(regclass,record,pg_lsn,text[])') IS NOT NULL,"
		" current_user, current_database(), current_setting('server_encoding')";
	const char *params[1] = {r->cfg->slot};
	PGresult   *res = PQexecParams(conn, q, 1, NULL, params, NULL, NULL, 0);
	int			problems = 0;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		rlog(r->v, LOG_ERROR, "could not check the server's settings: %s", PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	{
		const char *wal_level = val(res, 0, 0);
		const char *libs = val(res, 0, 1);
		bool		libs_exists = strcmp(val(res, 0, 2), "t") == 0;
		bool		replication = val(res, 0, 3) && strcmp(val(res, 0, 3), "t") == 0;
		int			slots_max = atoi(val(res, 0, 4));
		int			slots_used = atoi(val(res, 0, 5));
		bool		slot_exists = strcmp(val(res, 0, 6), "t") == 0;
		const char *extversion = val(res, 0, 7);
		bool		has_snapshot_fn = strcmp(val(res, 0, 8), "t") == 0;
		const char *user = val(res, 0, 9);
		const char *db = val(res, 0, 10);
		const char *encoding = val(res, 0, 11);

		if (strcmp(wal_level, "logical") != 0)
		{
			rlog(r->v, LOG_ERROR, "wal_level is \"%s\", logical decoding needs \"logical\"; fix: "
				 "ALTER SYSTEM SET wal_level = logical; then restart the server", wal_level);
			problems++;
		}
		if (libs != NULL && !list_has_cdc_relay(libs))
		{
			rlog(r->v, LOG_ERROR, "output_plugin_libraries (\"%s\") does not allow cdc_relay; fix: "
				 "ALTER SYSTEM SET output_plugin_libraries = %s%scdc_relay; SELECT pg_reload_conf();",
				 libs, libs, libs[0] ? ", " : "");
			problems++;
		}
		else if (libs == NULL && libs_exists)
			rlog(r->v, LOG_WARNING, "cannot read output_plugin_libraries as %s; make sure it lists cdc_relay", user);
		if (!replication)
		{
			rlog(r->v, LOG_ERROR, "role \"%s\" may not use replication; fix: ALTER ROLE \"%s\" REPLICATION;",
				 user, user);
			problems++;
		}
		if (!slot_exists && slots_used >= slots_max)
		{
			rlog(r->v, LOG_ERROR, "no free replication slot (%d of %d in use); fix: drop an unused slot "
				 "(SELECT pg_drop_replication_slot('name');) or raise max_replication_slots and restart",
				 slots_used, slots_max);
			problems++;
		}
		if (strcmp(encoding, "UTF8") != 0)
			rlog(r->v, LOG_WARNING, "database encoding is %s: events are in that encoding, not UTF-8 "
				 "(Kafka consumers usually expect UTF-8)", encoding);
		if (need_snapshot && extversion == NULL)
		{
			rlog(r->v, LOG_ERROR, "the initial snapshot needs the cdc_relay extension in database \"%s\"; "
				 "fix: CREATE EXTENSION cdc_relay; (or run with --snapshot never)", db);
			problems++;
		}
		else if (need_snapshot && !has_snapshot_fn)
		{
			rlog(r->v, LOG_ERROR, "the cdc_relay extension in database \"%s\" is version %s, too old for "
				 "the relay's snapshot; fix: ALTER EXTENSION cdc_relay UPDATE;", db, extversion);
			problems++;
		}
	}
	PQclear(res);

	/* SELECT rights on the captured tables (needs the extension to list them) */
	if (problems == 0 && need_snapshot)
	{
		char	   *arr = pg_plugin_options_array(r);
		const char *p2[1] = {arr};

		res = PQexecParams(conn,
						   "SELECT relid::regclass::text FROM cdc_relay.snapshot_tables($1::text[])"
						   " WHERE NOT has_table_privilege(relid, 'SELECT')",
						   1, NULL, p2, NULL, NULL, 0);
		free(arr);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			rlog(r->v, LOG_ERROR, "could not list the tables to capture: %s", PQerrorMessage(conn));
			problems++;
		}
		else
			for (int i = 0; i < PQntuples(res); i++)
			{
				rlog(r->v, LOG_ERROR, "no SELECT right on table %s, needed for the snapshot; fix: "
					 "GRANT SELECT ON %s TO CURRENT_USER; (as its owner)",
					 PQgetvalue(res, i, 0), PQgetvalue(res, i, 0));
				problems++;
			}
		PQclear(res);
	}
	return problems;
}

int
pg_identify(Relay *r, PGconn *repl)
{
	PGresult   *res = PQexec(repl, "IDENTIFY_SYSTEM");

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) < 4)
	{
		rlog(r->v, LOG_ERROR, "IDENTIFY_SYSTEM failed: %s", PQerrorMessage(repl));
		PQclear(res);
		return -1;
	}
	snprintf(r->sysid, sizeof(r->sysid), "%s", PQgetvalue(res, 0, 0));
	snprintf(r->dbname, sizeof(r->dbname), "%s", PQgetisnull(res, 0, 3) ? "" : PQgetvalue(res, 0, 3));
	PQclear(res);
	if (r->dbname[0] == '\0')
	{
		rlog(r->v, LOG_ERROR, "the connection string names no database: add dbname=...");
		return -1;
	}
	return 0;
}

/*
 * Does the slot exist, and is it usable by us?  Returns 0 (with *exists),
 * -1 on error (logged, with the fix).
 */
int
pg_slot_lookup(Relay *r, PGconn *conn, bool *exists)
{
	const char *params[1] = {r->cfg->slot};
	PGresult   *res = PQexecParams(conn,
								   "SELECT plugin, database, slot_type FROM pg_replication_slots WHERE slot_name = $1",
								   1, NULL, params, NULL, NULL, 0);
	int			rc = 0;

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		rlog(r->v, LOG_ERROR, "could not look up replication slot \"%s\": %s", r->cfg->slot,
			 PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	*exists = PQntuples(res) == 1;
	if (*exists)
	{
		const char *plugin = val(res, 0, 0);
		const char *db = val(res, 0, 1);

		if (strcmp(val(res, 0, 2), "logical") != 0 || plugin == NULL || strcmp(plugin, "cdc_relay") != 0)
		{
			rlog(r->v, LOG_ERROR, "replication slot \"%s\" exists but is not a cdc_relay logical slot "
				 "(plugin %s); fix: choose another name with --slot, or drop it: "
				 "SELECT pg_drop_replication_slot('%s');", r->cfg->slot, plugin ? plugin : "none",
				 r->cfg->slot);
			rc = -1;
		}
		else if (db == NULL || strcmp(db, r->dbname) != 0)
		{
			rlog(r->v, LOG_ERROR, "replication slot \"%s\" belongs to database \"%s\", not \"%s\"; "
				 "fix: choose another name with --slot", r->cfg->slot, db ? db : "", r->dbname);
			rc = -1;
		}
	}
	PQclear(res);
	return rc;
}

int
pg_create_slot(Relay *r, PGconn *repl, bool export_snapshot, uint64_t *consistent_point,
			   char *snapshot_name, size_t snaplen)
{
	char		cmd[256];
	PGresult   *res;

	if (r->server_version >= 150000)
		snprintf(cmd, sizeof(cmd), "CREATE_REPLICATION_SLOT \"%s\" LOGICAL cdc_relay (SNAPSHOT '%s')",
				 r->cfg->slot, export_snapshot ? "export" : "nothing");
	else
		snprintf(cmd, sizeof(cmd), "CREATE_REPLICATION_SLOT \"%s\" LOGICAL cdc_relay %s",
				 r->cfg->slot, export_snapshot ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT");
	res = PQexec(repl, cmd);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		rlog(r->v, LOG_ERROR, "could not create replication slot \"%s\": %s", r->cfg->slot,
			 PQerrorMessage(repl));
		PQclear(res);
		return -1;
	}
	if (!parse_lsn(PQgetvalue(res, 0, 1), consistent_point))
	{
		rlog(r->v, LOG_ERROR, "unexpected consistent point \"%s\"", PQgetvalue(res, 0, 1));
		PQclear(res);
		return -1;
	}
	snprintf(snapshot_name, snaplen, "%s", PQgetisnull(res, 0, 2) ? "" : PQgetvalue(res, 0, 2));
	rlog(r->v, LOG_INFO, "created replication slot \"%s\", consistent point %s%s%s", r->cfg->slot,
		 PQgetvalue(res, 0, 1), snapshot_name[0] ? ", exported snapshot " : "", snapshot_name);
	PQclear(res);
	return 0;
}

/* Drop the slot over the replication connection, waiting while it is in use. */
int
pg_drop_slot(Relay *r, PGconn *repl)
{
	char		cmd[160];
	PGresult   *res;

	snprintf(cmd, sizeof(cmd), "DROP_REPLICATION_SLOT \"%s\" WAIT", r->cfg->slot);
	res = PQexec(repl, cmd);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		rlog(r->v, LOG_ERROR, "could not drop replication slot \"%s\": %s", r->cfg->slot,
			 PQerrorMessage(repl));
		PQclear(res);
		return -1;
	}
	PQclear(res);
	return 0;
}

/* A growing string: append s, or s quoted with q (doubled, or with backslash). */
static void
sb_reserve(char **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return;
	*cap = need * 2;
	*buf = realloc(*buf, *cap);
	if (*buf == NULL)
	{
		fputs("cdc-relay: out of memory\n", stderr);
		exit(1);
	}
}

static void
sb_append(char **buf, size_t *len, size_t *cap, const char *s)
{
	size_t		n = strlen(s);

	sb_reserve(buf, cap, *len + n + 1);
	memcpy(*buf + *len, s, n + 1);
	*len += n;
}

static void
sb_append_quoted(char **buf, size_t *len, size_t *cap, const char *s, char q, bool backslash)
{
	sb_reserve(buf, cap, *len + 2 * strlen(s) + 3);
	(*buf)[(*len)++] = q;
	for (; *s; s++)
	{
		if (*s == q || (backslash && *s == '\\'))
			(*buf)[(*len)++] = backslash ? '\\' : q;
		(*buf)[(*len)++] = *s;
	}
	(*buf)[(*len)++] = q;
	(*buf)[*len] = '\0';
}

/* The plugin options the relay uses, as name/value pairs. */
static int
plugin_options(Relay *r, const char *names[8], const char *values[8])
{
	int			n = 0;

	if (r->cfg->tables)
	{
		names[n] = "include-tables";
		values[n++] = r->cfg->tables;
	}
	if (r->cfg->exclude_tables)
	{
		names[n] = "exclude-tables";
		values[n++] = r->cfg->exclude_tables;
	}
	if (r->cfg->publication)
	{
		names[n] = "publication";
		values[n++] = r->cfg->publication;
	}
	if (r->cfg->partition_root)
	{
		names[n] = "partition-root";
		values[n++] = "true";
	}
	return n;
}

/* The plugin options as a text[] literal for the extension's functions (malloc'd). */
char *
pg_plugin_options_array(Relay *r)
{
	const char *names[8],
			   *values[8];
	int			n = plugin_options(r, names, values);
	size_t		len = 0,
				cap = 64;
	char	   *buf = malloc(cap);

	if (buf == NULL)
		exit(1);
	buf[0] = '\0';
	sb_append(&buf, &len, &cap, "{");
	for (int i = 0; i < n; i++)
	{
		if (i > 0)
			sb_append(&buf, &len, &cap, ",");
		sb_append_quoted(&buf, &len, &cap, names[i], '"', true);
		sb_append(&buf, &len, &cap, ",");
		sb_append_quoted(&buf, &len, &cap, values[i], '"', true);
	}
	sb_append(&buf, &len, &cap, "}");
	return buf;
}

int
pg_start_replication(Relay *r, PGconn *repl)
{
	const char *names[8],
			   *values[8];
	int			n = plugin_options(r, names, values);
	size_t		len = 0,
				cap = 256;
	char	   *cmd = malloc(cap);
	PGresult   *res;
	int			rc = 0;

	if (cmd == NULL)
		exit(1);
	cmd[0] = '\0';
	sb_append(&cmd, &len, &cap, "START_REPLICATION SLOT ");
	sb_append_quoted(&cmd, &len, &cap, r->cfg->slot, '"', false);
	sb_append(&cmd, &len, &cap, " LOGICAL 0/0 (\"key-prefix\" 'true'");
	for (int i = 0; i < n; i++)
	{
		sb_append(&cmd, &len, &cap, ", ");
		sb_append_quoted(&cmd, &len, &cap, names[i], '"', false);
		sb_append(&cmd, &len, &cap, " ");
		sb_append_quoted(&cmd, &len, &cap, values[i], '\'', false);
	}
	sb_append(&cmd, &len, &cap, ")");
	rlog(r->v, LOG_DEBUG, "%s", cmd);
	res = PQexec(repl, cmd);
	if (PQresultStatus(res) != PGRES_COPY_BOTH)
	{
		rlog(r->v, LOG_ERROR, "could not start streaming from slot \"%s\": %s", r->cfg->slot,
			 PQerrorMessage(repl));
		rc = -1;
	}
	PQclear(res);
	free(cmd);
	return rc;
}

static void
put_u64(char *p, uint64_t v)
{
	uint32_t	hi = htonl((uint32_t) (v >> 32));
	uint32_t	lo = htonl((uint32_t) v);

	memcpy(p, &hi, 4);
	memcpy(p + 4, &lo, 4);
}

/* Standby status update ('r'): written, flushed and applied positions. */
int
pg_send_status(Relay *r, PGconn *repl, uint64_t written, uint64_t flushed, bool reply_requested)
{
	char		msg[1 + 8 + 8 + 8 + 8 + 1];
	struct timespec ts;
	int64_t		usec;
	char		b1[24],
				b2[24];

	clock_gettime(CLOCK_REALTIME, &ts);
	/* microseconds since 2000-01-01 00:00:00 UTC */
	usec = ((int64_t) ts.tv_sec - 946684800) * 1000000 + ts.tv_nsec / 1000;
	msg[0] = 'r';
	put_u64(msg + 1, written);
	put_u64(msg + 9, flushed);
	put_u64(msg + 17, flushed);
	put_u64(msg + 25, (uint64_t) usec);
	msg[33] = reply_requested ? 1 : 0;
	if (PQputCopyData(repl, msg, sizeof(msg)) <= 0 || PQflush(repl) != 0)
	{
		rlog(r->v, LOG_WARNING, "could not send a status update: %s", PQerrorMessage(repl));
		return -1;
	}
	rlog(r->v, LOG_DEBUG, "status update: written %s, flushed %s", lsn_str(written, b1), lsn_str(flushed, b2));
	return 0;
}
