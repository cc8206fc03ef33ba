/*
 * prereq.c: what the relay needs from the server, each problem logged with
 * its exact fix.  One truth with the extension: where cdc_relay is
 * installed (and its objects belong to trusted roles) the server-side checks
 * are cdc_relay.check_setup()'s rows and fixes; without it the same checks
 * are made here and give word for word the same fixes
 * (test/tap/120_slot_health.pl compares them).
 */
#include "relay.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *
val(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

/*
 * The items of a GUC list like  pgoutput, "my lib"  parsed as
 * cdc_relay.check_setup() parses them: comma-separated, blanks around an
 * item trimmed, an item in double quotes may hold anything ("" is one
 * quote), empty items dropped.  Returns how many; *items (malloc'd, each
 * item malloc'd) must be freed with free_items.
 */
static int
guc_list_items(const char *list, char ***items)
{
	const char *p = list;
	int			n = 0;

	*items = calloc(strlen(list) + 1, sizeof(char *));
	if (*items == NULL)
		relay_out_of_memory();
	while (*p)
	{
		char	   *item = malloc(strlen(p) + 1);
		size_t		len = 0;

		if (item == NULL)
			relay_out_of_memory();
		while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			p++;
		if (*p == '"')
		{
			for (p++; *p; p++)
			{
				if (*p == '"' && p[1] == '"')
					item[len++] = *p++;
				else if (*p == '"')
				{
					p++;
					break;
				}
				else
					item[len++] = *p;
			}
			while (*p && *p != ',')
				p++;
		}
		else
		{
			while (*p && *p != ',')
				item[len++] = *p++;
			while (len > 0 && (item[len - 1] == ' ' || item[len - 1] == '\t' ||
							   item[len - 1] == '\n' || item[len - 1] == '\r'))
				len--;
		}
		item[len] = '\0';
		if (len > 0)
			(*items)[n++] = item;
		else
			free(item);
		if (*p == ',')
			p++;
	}
	return n;
}

static void
free_items(char **items, int n)
{
	for (int i = 0; i < n; i++)
		free(items[i]);
	free(items);
}

/*
 * Write s at out as PostgreSQL's quote_literal() writes it; returns the end
 * (out needs 2 * strlen(s) + 4 bytes).
 */
static char *
put_literal(char *out, const char *s)
{
	if (strchr(s, '\\') != NULL)
		*out++ = 'E';
	*out++ = '\'';
	for (; *s; s++)
	{
		if (*s == '\'' || *s == '\\')
			*out++ = *s;
		*out++ = *s;
	}
	*out++ = '\'';
	*out = '\0';
	return out;
}

/*
 * Without the extension: the prerequisite checks of cdc_relay.check_setup()
 * in C, each as the row check_setup() gives (check, ok, current, fix), fixes
 * word for word the same (120_slot_health.pl compares them).
 */
typedef struct PrereqRow
{
	const char *check;
	const char *ok;				/* "t", "f", or NULL: unknown */
	char		current[256];
	char	   *fix;			/* malloc'd, or NULL */
} PrereqRow;

/* fix for output_plugin_libraries = libs: its items plus cdc_relay */
static char *
libraries_fix(const char *libs)
{
	static const char head[] = "ALTER SYSTEM SET output_plugin_libraries = ";
	static const char tail[] = "'cdc_relay'; SELECT pg_reload_conf();";
	char	  **items;
	int			n = guc_list_items(libs, &items);
	size_t		size = sizeof(head) + sizeof(tail);
	char	   *buf,
			   *p;

	for (int i = 0; i < n; i++)
		size += 2 * strlen(items[i]) + 6;
	buf = malloc(size);
	if (buf == NULL)
		relay_out_of_memory();
	p = buf + strlen(strcpy(buf, head));
	for (int i = 0; i < n; i++)
	{
		p = put_literal(p, items[i]);
		*p++ = ',';
		*p++ = ' ';
	}
	strcpy(p, tail);
	free_items(items, n);
	return buf;
}

/* a role name double-quoted ("" for a quote), as check_setup() writes it */
static char *
role_quoted(const char *role)
{
	char	   *buf = malloc(2 * strlen(role) + 3),
			   *p = buf;

	if (buf == NULL)
		relay_out_of_memory();
	*p++ = '"';
	for (; *role; role++)
	{
		if (*role == '"')
			*p++ = '"';
		*p++ = *role;
	}
	*p++ = '"';
	*p = '\0';
	return buf;
}

static char *
xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static char *
xasprintf(const char *fmt, ...)
{
	va_list		ap;
	char	   *out = NULL;

	va_start(ap, fmt);
	if (vasprintf(&out, fmt, ap) < 0)
		relay_out_of_memory();
	va_end(ap);
	return out;
}

/*
 * Log one prerequisite row (check_setup()'s, or ours) with its fix, the
 * same way for both.  Returns 1 when it is a problem that stops the relay.
 * A full slot table is no problem for a slot that exists; all WAL senders
 * in use is a warning (the relay's own replication connection, when it has
 * one, is among them).
 */
static int
report_prereq(Relay *r, const char *check, const char *ok, const char *current, const char *fix,
			  bool slot_exists, const char *user)
{
	if (ok != NULL && strcmp(ok, "t") == 0)
		return 0;
	if (current == NULL)
		current = "";
	if (fix == NULL)
		fix = "(none given)";
	if (strcmp(check, "wal_level") == 0)
		rlog(r->v, LOG_ERROR, "wal_level is \"%s\", logical decoding needs \"logical\"; fix: %s", current, fix);
	else if (strcmp(check, "output_plugin_libraries") == 0 && ok == NULL)
	{
		rlog(r->v, LOG_WARNING, "cannot read output_plugin_libraries as %s; make sure it lists cdc_relay; fix: %s",
			 user, fix);
		return 0;
	}
	else if (strcmp(check, "output_plugin_libraries") == 0)
		rlog(r->v, LOG_ERROR, "output_plugin_libraries (\"%s\") does not allow cdc_relay; fix: %s", current, fix);
	else if (strcmp(check, "free replication slots") == 0)
	{
		if (slot_exists)
			return 0;
		rlog(r->v, LOG_ERROR, "no free replication slot (%s); fix: %s", current, fix);
	}
	else if (strcmp(check, "free wal senders") == 0)
	{
		rlog(r->v, LOG_WARNING, "every WAL sender is in use (%s, this relay's own connection included when it "
			 "has one): another replication connection will be refused; fix: %s", current, fix);
		return 0;
	}
	else if (strcmp(check, "replication privilege") == 0)
		rlog(r->v, LOG_ERROR, "role \"%s\" may not use replication; fix: %s", user, fix);
	else if (ok == NULL)
	{
		rlog(r->v, LOG_WARNING, "prerequisite \"%s\" could not be checked (%s); fix: %s", check, current, fix);
		return 0;
	}
	else
		rlog(r->v, LOG_ERROR, "prerequisite \"%s\" is not met (%s); fix: %s", check, current, fix);
	return 1;
}

/*
 * The extension's answer: log each row of cdc_relay.check_setup() that is
 * not ok.  Returns the number of problems, -1 when the query failed
 * (logged as a warning: the caller checks in C instead).
 */
static int
prereqs_from_extension(Relay *r, PGconn *conn, bool slot_exists, const char *user)
{
	PGresult   *res = pg_exec(r, conn, "SELECT \"check\", ok, current, fix FROM cdc_relay.check_setup()",
							  0, NULL);
	char		ebuf[1024];
	int			problems = 0;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQnfields(res) != 4)
	{
		if (!*r->stop)
			rlog(r->v, LOG_WARNING, "could not run cdc_relay.check_setup(), checking without it: %s",
				 pg_res_error(r, conn, res, ebuf, sizeof(ebuf)));
		PQclear(res);
		return -1;
	}
	for (int i = 0; i < PQntuples(res); i++)
		problems += report_prereq(r, PQgetvalue(res, i, 0), val(res, i, 1), val(res, i, 2), val(res, i, 3),
								  slot_exists, user);
	PQclear(res);
	return problems;
}

/*
 * The relay runs the extension's functions as its own (often superuser) role:
 * they, and the schema that holds them, must belong to a superuser or to that
 * role, and the schema must hold nothing the extension did not create (a
 * planted overload could be chosen instead of the real function).  Logs each
 * problem with its fix; returns how many there are.
 */
static int
check_extension_owners(Relay *r, PGconn *conn)
{
	PGresult   *res;
	int			problems = 0;
	char		ebuf[1024];

	res = pg_exec(r, conn,
				  "SELECT 'schema', o.rolname, NULL, NULL, false"
				  "  FROM pg_catalog.pg_namespace n JOIN pg_catalog.pg_roles o ON o.oid = n.nspowner"
				  " WHERE n.nspname = 'cdc_relay' AND NOT o.rolsuper AND o.rolname <> CURRENT_USER"
				  " UNION ALL "
				  "SELECT 'function', o.rolname, p.oid::pg_catalog.regprocedure::pg_catalog.text,"
				  "       EXISTS (SELECT 1 FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid"
				  "                WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid = p.oid"
				  "                  AND d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass"
				  "                  AND d.deptype = 'e' AND e.extname = 'cdc_relay'),"
				  "       o.rolsuper OR o.rolname = CURRENT_USER"
				  "  FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace"
				  "  JOIN pg_catalog.pg_roles o ON o.oid = p.proowner"
				  " WHERE n.nspname = 'cdc_relay'"
				  " ORDER BY 1 DESC, 3",
				  0, NULL);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		if (!*r->stop)
			rlog(r->v, LOG_ERROR, "could not check the owners of the cdc_relay extension's objects: %s",
				 pg_res_error(r, conn, res, ebuf, sizeof(ebuf)));
		PQclear(res);
		return 1;
	}
	for (int i = 0; i < PQntuples(res); i++)
	{
		const char *kind = PQgetvalue(res, i, 0);
		const char *owner = PQgetvalue(res, i, 1);
		const char *fn = PQgetvalue(res, i, 2);
		bool		member = strcmp(PQgetvalue(res, i, 3), "t") == 0;

		if (strcmp(kind, "schema") == 0)
		{
			rlog(r->v, LOG_ERROR, "schema cdc_relay is owned by role \"%s\", which is not a superuser: that role "
				 "could make the relay run its code; fix: ALTER SCHEMA cdc_relay OWNER TO <a superuser>; and check "
				 "what the schema holds", owner);
			problems++;
		}
		else if (!member)
		{
			rlog(r->v, LOG_ERROR, "schema cdc_relay holds function %s (owner \"%s\") that is not part of the "
				 "cdc_relay extension: it could be run in place of the extension's own; fix: DROP FUNCTION %s; and "
				 "take away CREATE on schema cdc_relay from roles that are not superusers", fn, owner, fn);
			problems++;
		}
		else if (strcmp(PQgetvalue(res, i, 4), "t") != 0)
		{
			rlog(r->v, LOG_ERROR, "function %s of the cdc_relay extension is owned by role \"%s\", which is not "
				 "a superuser: that role could make the relay run its code; fix: ALTER FUNCTION %s OWNER TO "
				 "<a superuser>;", fn, owner, fn);
			problems++;
		}
	}
	PQclear(res);
	return problems;
}

/*
 * Check what the relay needs from the server and log every problem with its
 * exact fix.  One truth: where the cdc_relay extension is installed (and its
 * objects belong to trusted roles) the server-side checks are
 * cdc_relay.check_setup()'s rows and fixes; without it the same checks in C
 * give the same fixes.  Then what only the relay needs (the extension for a
 * snapshot, SELECT rights).  Returns the number of problems (0 = all good,
 * -1 = the query itself failed).
 */
int
pg_check_prereqs(Relay *r, PGconn *conn, bool need_snapshot)
{
	const char *q =
		"SELECT pg_catalog.current_setting('wal_level'),"
		" (SELECT setting FROM pg_catalog.pg_settings WHERE name = 'output_plugin_libraries'),"
		" EXISTS (SELECT 1 FROM pg_catalog.pg_settings WHERE name = 'output_plugin_libraries')"
		"   OR pg_catalog.current_setting('server_version_num')::pg_catalog.int4 < 150019,"
		" (SELECT rolreplication OR rolsuper FROM pg_catalog.pg_roles WHERE rolname = CURRENT_USER),"
		" pg_catalog.current_setting('max_replication_slots')::pg_catalog.int4,"
		" (SELECT pg_catalog.count(*) FROM pg_catalog.pg_replication_slots),"
		" EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1),"
		" (SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'cdc_relay'),"
		" pg_catalog.to_regprocedure('cdc_relay.snapshot_row(pg_catalog.regclass,record,pg_catalog.pg_lsn,pg_catalog.text[])')"
		"   IS NOT NULL,"
		" CURRENT_USER, pg_catalog.current_database(), pg_catalog.current_setting('server_encoding'),"
		" pg_catalog.to_regprocedure('cdc_relay.check_setup()') IS NOT NULL,"
		" pg_catalog.current_setting('max_wal_senders')::pg_catalog.int4,"
		" (SELECT pg_catalog.count(*) FROM pg_catalog.pg_stat_replication)";
	const char *params[1] = {r->cfg->slot};
	PGresult   *res = pg_exec(r, conn, q, 1, params);
	int			problems = 0;
	bool		have_ext = false;
	char		ebuf[1024];

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		if (!*r->stop)
			rlog(r->v, LOG_ERROR, "could not check the server's settings: %s",
				 pg_res_error(r, conn, res, ebuf, sizeof(ebuf)));
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
		bool		has_check_setup = strcmp(val(res, 0, 12), "t") == 0;
		int			senders_max = atoi(val(res, 0, 13));
		int			senders_used = atoi(val(res, 0, 14));
		int			from_ext = -1;

		have_ext = extversion != NULL;
		r->have_extension = have_ext && has_snapshot_fn;

		/* the extension's objects: only trusted roles' code may run as the relay */
		if (have_ext)
			problems += check_extension_owners(r, conn);
		if (have_ext && problems == 0 && has_check_setup)
			from_ext = prereqs_from_extension(r, conn, slot_exists, user);
		if (from_ext >= 0)
			problems += from_ext;
		else
		{
			/* the same rows as check_setup(), in its order */
			PrereqRow	rows[5];
			char	   *me = role_quoted(user);

			memset(rows, 0, sizeof(rows));
			rows[0].check = "wal_level";
			rows[0].ok = strcmp(wal_level, "logical") == 0 ? "t" : "f";
			snprintf(rows[0].current, sizeof(rows[0].current), "%s", wal_level);
			rows[0].fix = xasprintf("ALTER SYSTEM SET wal_level = logical; then restart the server");

			rows[1].check = "output_plugin_libraries";
			if (libs == NULL && libs_exists)
			{
				rows[1].ok = NULL;
				rows[1].fix = xasprintf("GRANT pg_read_all_settings TO %s; (or run this check as a superuser)", me);
			}
			else
			{
				char	  **items;
				int			n = libs ? guc_list_items(libs, &items) : 0;
				bool		has = libs == NULL;

				for (int i = 0; i < n && !has; i++)
					has = strcmp(items[i], "cdc_relay") == 0;
				if (libs)
					free_items(items, n);
				rows[1].ok = has ? "t" : "f";
				snprintf(rows[1].current, sizeof(rows[1].current), "%s", libs ? libs : "");
				rows[1].fix = libraries_fix(libs ? libs : "");
			}

			rows[2].check = "free replication slots";
			rows[2].ok = slots_used < slots_max ? "t" : "f";
			snprintf(rows[2].current, sizeof(rows[2].current), "%d of %d in use", slots_used, slots_max);
			rows[2].fix = xasprintf("ALTER SYSTEM SET max_replication_slots = %d; then restart the server "
									"(or drop unused slots with pg_drop_replication_slot)", slots_max + 2);

			rows[3].check = "free wal senders";
			rows[3].ok = senders_used < senders_max ? "t" : "f";
			snprintf(rows[3].current, sizeof(rows[3].current), "%d of %d in use", senders_used, senders_max);
			rows[3].fix = xasprintf("ALTER SYSTEM SET max_wal_senders = %d; then restart the server",
									senders_max + 2);

			rows[4].check = "replication privilege";
			rows[4].ok = replication ? "t" : "f";
			rows[4].fix = xasprintf("ALTER ROLE %s REPLICATION;", me);

			for (int i = 0; i < 5; i++)
			{
				problems += report_prereq(r, rows[i].check, rows[i].ok, rows[i].current, rows[i].fix,
										  slot_exists, user);
				free(rows[i].fix);
			}
			free(me);
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

		res = pg_exec(r, conn,
					  "SELECT relid::pg_catalog.regclass::pg_catalog.text"
					  " FROM cdc_relay.snapshot_tables($1::pg_catalog.text[])"
					  " WHERE NOT pg_catalog.has_table_privilege(relid::pg_catalog.oid, 'SELECT'::pg_catalog.text)",
					  1, p2);
		free(arr);
		if (PQresultStatus(res) != PGRES_TUPLES_OK)
		{
			if (!*r->stop)
				rlog(r->v, LOG_ERROR, "could not list the tables to capture: %s",
					 pg_res_error(r, conn, res, ebuf, sizeof(ebuf)));
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
