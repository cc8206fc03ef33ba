/*
 * pgsrc.c: the PostgreSQL side of the relay: connections, replication
 * slots and the streaming replication protocol (the prerequisite checks
 * are in prereq.c).
 */
#include "relay.h"
#include "redact.h"

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
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

/* libpq's (multi-line) message as one log line, without the password. */
static const char *
one_line(Relay *r, const char *msg, char *buf, size_t len)
{
	return pq_error_line(msg, r->cfg->conninfo, buf, len);
}

const char *
pg_error(Relay *r, PGconn *conn, char *buf, size_t len)
{
	return one_line(r, conn ? PQerrorMessage(conn) : "out of memory", buf, len);
}

/* The error of a failed result (or of the connection when there is none). */
const char *
pg_res_error(Relay *r, PGconn *conn, const PGresult *res, char *buf, size_t len)
{
	const char *m = res ? PQresultErrorMessage(res) : NULL;

	return one_line(r, m && m[0] ? m : PQerrorMessage(conn), buf, len);
}

/*
 * Wait until conn's socket is ready for events, at most 200 ms.  Returns
 * false when the caller should give up: a stop was requested.
 */
static bool
wait_socket(Relay *r, PGconn *conn, short events)
{
	struct pollfd pfd = {.fd = PQsocket(conn), .events = events};

	if (*r->stop)
		return false;
	if (pfd.fd >= 0 && poll(&pfd, 1, 200) < 0 && errno != EINTR)
		return false;
	return !*r->stop;
}

/* Called about every 200 ms while a command runs: how long it has waited. */
typedef void (*WaitTick) (void *arg, int64_t waited_ms);

/*
 * pg_exec's body.  With cleanup, a stop request does not end the wait (the
 * command is part of stopping cleanly), but timeout_ms does.  tick (may be
 * NULL) is called while the result is awaited.
 */
static PGresult *
exec_wait(Relay *r, PGconn *conn, const char *sql, int nparams, const char *const *params,
		  bool cleanup, int timeout_ms, WaitTick tick, void *tick_arg)
{
	PGresult   *last = NULL,
			   *res;
	int64_t		start = now_ms(),
				until = start + timeout_ms;

	if (nparams == 0 ? !PQsendQuery(conn, sql)
		: !PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 0))
		return NULL;
	for (;;)
	{
		ExecStatusType st;

		while (PQisBusy(conn))
		{
			bool		go_on;

			if (cleanup)
			{
				struct pollfd pfd = {.fd = PQsocket(conn), .events = POLLIN};

				go_on = now_ms() < until && (poll(&pfd, 1, 200) >= 0 || errno == EINTR);
			}
			else
				go_on = wait_socket(r, conn, POLLIN);
			if (go_on && tick)
				tick(tick_arg, now_ms() - start);
			if (!go_on || !PQconsumeInput(conn))
			{
				PQclear(last);
				return NULL;
			}
		}
		res = PQgetResult(conn);
		if (res == NULL)
			break;
		st = PQresultStatus(res);
		PQclear(last);
		last = res;
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH ||
			PQstatus(conn) == CONNECTION_BAD)
			break;
	}
	return last;
}

/*
 * Run one command and return its last result, like PQexec (the simple query
 * protocol when nparams is 0, as replication commands need), but waiting in a
 * poll loop that gives up when a stop is requested: then, and when the
 * connection broke, it returns NULL (PQresultStatus(NULL) is
 * PGRES_FATAL_ERROR; the reason is in PQerrorMessage).  A COPY result is
 * returned as soon as it arrives.  Safe from any thread (it only reads the
 * stop flag).
 */
PGresult *
pg_exec(Relay *r, PGconn *conn, const char *sql, int nparams, const char *const *params)
{
	return exec_wait(r, conn, sql, nparams, params, false, 0, NULL, NULL);
}

/* Is keyword set (to a non-empty value) in the parsed options? */
static const char *
opt_value(PQconninfoOption *opts, const char *keyword)
{
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
		if (strcmp(o->keyword, keyword) == 0)
			return o->val && o->val[0] ? o->val : NULL;
	return NULL;
}

/*
 * Connect with the user's connection string (or URI) plus, for the
 * replication connection, replication=database; dbname overrides the
 * database when not NULL.  Unless the string sets them: connect_timeout 10 s,
 * tcp_user_timeout 60 s and TCP keepalives after 30 s idle (3 probes 10 s
 * apart), so that a host that stops answering is noticed.
 * The connection is made in a poll loop that gives up at once when a stop is
 * requested (returns NULL, logs nothing) and after connect_timeout seconds
 * per host.  Then search_path is cleared, so that no object another role
 * planted can take the place of the built-in ones the relay calls.  Logs what
 * failed unless quiet, never the password.
 */
static PGconn *
connect_as(Relay *r, bool replication, const char *dbname, bool quiet)
{
	PQconninfoOption *opts,
			   *o;
	char	   *err = NULL;
	const char *keys[64];
	const char *vals[64];
	int			n = 0;
	PGconn	   *conn;
	const char *ct;
	int			timeout_s = 10,
				hosts = 1;
	int64_t		deadline;
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	char		ebuf[1024];
	PGresult   *res;

	opts = PQconninfoParse(r->cfg->conninfo, &err);
	if (opts == NULL)
	{
		if (!quiet)
			rlog(r->v, LOG_ERROR, "invalid connection string: %s",
				 conninfo_error_line(err ? err : "out of memory", r->cfg->conninfo, ebuf, sizeof(ebuf)));
		PQfreemem(err);
		return NULL;
	}
	for (o = opts; o->keyword != NULL && n < 50; o++)	/* room for 10 more */
	{
		if (o->val == NULL || strcmp(o->keyword, "replication") == 0 ||
			(dbname && strcmp(o->keyword, "dbname") == 0))
			continue;
		keys[n] = o->keyword;
		vals[n] = o->val;
		n++;
	}
	if ((ct = opt_value(opts, "connect_timeout")) != NULL && atoi(ct) > 0)
		timeout_s = atoi(ct) < 2 ? 2 : atoi(ct);	/* libpq's own minimum */
	else
	{
		keys[n] = "connect_timeout";
		vals[n++] = "10";
	}
	if (opt_value(opts, "tcp_user_timeout") == NULL)
	{
		keys[n] = "tcp_user_timeout";
		vals[n++] = "60000";
	}
	if (opt_value(opts, "keepalives_idle") == NULL)
	{
		/* probe an idle connection after 30 s (the system default is 2 hours) */
		keys[n] = "keepalives_idle";
		vals[n++] = "30";
		keys[n] = "keepalives_interval";
		vals[n++] = "10";
		keys[n] = "keepalives_count";
		vals[n++] = "3";
	}
	for (const char *h = opt_value(opts, "host"); h && *h; h++)
		hosts += *h == ',';
	if (dbname)
	{
		keys[n] = "dbname";
		vals[n++] = dbname;
	}
	if (replication)
	{
		keys[n] = "replication";
		vals[n++] = "database";
	}
	keys[n] = "fallback_application_name";
	vals[n++] = "cdc-relay";
	keys[n] = NULL;
	vals[n] = NULL;
	conn = PQconnectStartParams(keys, vals, 0);
	PQconninfoFree(opts);
	deadline = now_ms() + (int64_t) timeout_s * 1000 * hosts;
	while (conn != NULL && PQstatus(conn) != CONNECTION_BAD && st != PGRES_POLLING_OK &&
		   st != PGRES_POLLING_FAILED)
	{
		if (!wait_socket(r, conn, st == PGRES_POLLING_READING ? POLLIN : POLLOUT))
		{
			PQfinish(conn);
			return NULL;
		}
		if (now_ms() >= deadline)
		{
			if (!quiet)
				rlog(r->v, LOG_ERROR, "could not connect to the database%s: timeout expired after %d s "
					 "(connect_timeout)", replication ? " (replication connection)" : "",
					 timeout_s * hosts);
			PQfinish(conn);
			return NULL;
		}
		st = PQconnectPoll(conn);
	}
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
	{
		if (!quiet)
			rlog(r->v, LOG_ERROR, "could not connect to the database%s: %s",
				 replication ? " (replication connection)" : "", pg_error(r, conn, ebuf, sizeof(ebuf)));
		PQfinish(conn);
		return NULL;
	}
	res = pg_exec(r, conn, "SELECT pg_catalog.set_config('search_path', '', false)", 0, NULL);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		if (!quiet && !*r->stop)
			rlog(r->v, LOG_ERROR, "could not clear search_path: %s", pg_res_error(r, conn, res, ebuf, sizeof(ebuf)));
		PQclear(res);
		PQfinish(conn);
		return NULL;
	}
	PQclear(res);
	return conn;
}

PGconn *
pg_connect(Relay *r, bool replication)
{
	return connect_as(r, replication, NULL, false);
}

/*
 * After a failed reconnect: is the relay's database gone?  Asks another
 * database of the same server (postgres, or template1).  False when that
 * cannot be told.
 */
bool
pg_database_gone(Relay *r)
{
	const char *other = strcmp(r->dbname, "postgres") == 0 ? "template1" : "postgres";
	PGconn	   *conn = connect_as(r, false, other, true);
	const char *params[1] = {r->dbname};
	PGresult   *res;
	bool		gone = false;

	if (conn == NULL)
		return false;
	res = pg_exec(r, conn, "SELECT 1 FROM pg_catalog.pg_database WHERE datname = $1", 1, params);
	gone = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 0;
	PQclear(res);
	PQfinish(conn);
	if (gone)
		rlog(r->v, LOG_ERROR, "database \"%s\" no longer exists; the changes it had not yet sent are gone with it; "
			 "fix: point -d at the database to capture (a new database needs a new slot and snapshot), "
			 "or stop this relay", r->dbname);
	return gone;
}

/* FNV-1a of the slot name: the advisory lock's second key. */
static uint32_t
slot_lock_key(const char *slot)
{
	uint32_t	h = 2166136261u;

	for (const unsigned char *p = (const unsigned char *) slot; *p; p++)
		h = (h ^ *p) * 16777619u;
	return h;
}

/* The advisory lock's first key: "CDCR". */
#define SLOT_LOCK_CLASS 1128547154

/*
 * Who holds slot's advisory lock in conn's database: 1 (who = "server
 * process PID, application "A", client C, since T", *pid its pid), 0 nobody,
 * -1 the query failed (logged as a warning).  The one place that knows the
 * lock's keys besides pg_guard_acquire.
 */
int
pg_slot_lock_holder(Relay *r, PGconn *conn, const char *slot, char *who, size_t len, int *pid)
{
	char		k1[16],
				k2u[16];
	const char *params[2] = {k1, k2u};
	PGresult   *res;
	char		ebuf[1024];
	int			rc = 0;

	snprintf(k1, sizeof(k1), "%d", SLOT_LOCK_CLASS);
	snprintf(k2u, sizeof(k2u), "%u", slot_lock_key(slot));
	res = pg_exec(r, conn,
				  "SELECT a.pid, COALESCE(a.application_name, ''),"
				  " COALESCE(pg_catalog.host(a.client_addr), 'local socket'),"
				  " COALESCE(pg_catalog.to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'), '?')"
				  " FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid"
				  " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
				  " AND l.classid = $1::pg_catalog.oid AND l.objid = $2::pg_catalog.oid"
				  " AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d"
				  "                   WHERE d.datname = pg_catalog.current_database())",
				  2, params);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		rlog(r->v, LOG_WARNING, "could not find the holder of slot \"%s\"'s lock: %s", slot,
			 pg_res_error(r, conn, res, ebuf, sizeof(ebuf)));
		rc = -1;
	}
	else if (PQntuples(res) > 0)
	{
		snprintf(who, len, "server process %s, application \"%s\", client %s, since %s",
				 PQgetvalue(res, 0, 0), PQgetvalue(res, 0, 1), PQgetvalue(res, 0, 2),
				 PQgetvalue(res, 0, 3));
		if (pid)
			*pid = atoi(PQgetvalue(res, 0, 0));
		rc = 1;
	}
	PQclear(res);
	return rc;
}

/*
 * One relay per slot: (re)connect the guard connection and take the slot's
 * session advisory lock on it, which it holds for its life.  Called before
 * any decision about the slot, and again before each reconnect (after a
 * server restart the lock went with the old session).  Returns 0 when held,
 * -1 when it could not be checked (connection: try later; logged), -2 when
 * another relay holds it (logged, with who).
 */
int
pg_guard_acquire(Relay *r)
{
	char		k1[16],
				k2[16];
	const char *params[2] = {k1, k2};
	PGresult   *res;
	char		ebuf[1024];
	bool		held;
	char		whobuf[400];

	if (r->guard != NULL)
	{
		/* still the session that holds the lock? */
		res = pg_exec(r, r->guard, "SELECT 1", 0, NULL);
		held = PQresultStatus(res) == PGRES_TUPLES_OK;
		PQclear(res);
		if (held)
			return 0;
		PQfinish(r->guard);
		r->guard = NULL;
	}
	r->guard = pg_connect(r, false);
	if (r->guard == NULL)
		return -1;
	snprintf(k1, sizeof(k1), "%d", SLOT_LOCK_CLASS);
	snprintf(k2, sizeof(k2), "%d", (int32_t) slot_lock_key(r->cfg->slot));
	res = pg_exec(r, r->guard, "SELECT pg_catalog.pg_try_advisory_lock($1::pg_catalog.int4, $2::pg_catalog.int4)",
				  2, params);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		if (!*r->stop)
			rlog(r->v, LOG_ERROR, "could not take the slot's advisory lock: %s",
				 pg_res_error(r, r->guard, res, ebuf, sizeof(ebuf)));
		PQclear(res);
		PQfinish(r->guard);
		r->guard = NULL;
		return -1;
	}
	held = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (held)
		return 0;
	if (pg_slot_lock_holder(r, r->guard, r->cfg->slot, whobuf, sizeof(whobuf), NULL) != 1)
		snprintf(whobuf, sizeof(whobuf), "unknown");
	rlog(r->v, LOG_ERROR, "another cdc-relay is already running on slot \"%s\" (%s); only one relay may use "
		 "a slot; if that relay is gone but its session lingers, end it: SELECT pg_terminate_backend(<pid>);",
		 r->cfg->slot, whobuf);
	return -2;
}

/*
 * Before streaming from the slot: does it still exist, is it usable, and --
 * with gap_check -- is it no further than the position the relay recorded as
 * confirmed (r->ckpt_durable)?  Uses the guard connection.
 */
SlotCheck
pg_slot_check(Relay *r, bool gap_check)
{
	const char *params[1] = {r->cfg->slot};
	PGresult   *res;
	char		ebuf[1024];
	SlotCheck	rc = SLOT_OK;
	uint64_t	confirmed = 0;
	const char *wal_status;
	char		b1[24],
				b2[24];

	if (r->guard == NULL)
		return SLOT_RETRY;
	res = pg_exec(r, r->guard,
				  "SELECT confirmed_flush_lsn::pg_catalog.text, wal_status FROM pg_catalog.pg_replication_slots"
				  " WHERE slot_name = $1", 1, params);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		if (!*r->stop)
			rlog(r->v, LOG_WARNING, "could not look at replication slot \"%s\": %s", r->cfg->slot,
				 pg_res_error(r, r->guard, res, ebuf, sizeof(ebuf)));
		PQclear(res);
		return SLOT_RETRY;
	}
	if (PQntuples(res) == 0)
	{
		rlog(r->v, LOG_ERROR, "replication slot \"%s\" does not exist (it was dropped while cdc-relay was using it); "
			 "changes made since may be missing from Kafka; fix: start cdc-relay again: with --snapshot initial "
			 "(the default) it creates the slot and takes a new snapshot", r->cfg->slot);
		PQclear(res);
		return SLOT_STOP;
	}
	wal_status = PQgetisnull(res, 0, 1) ? "" : PQgetvalue(res, 0, 1);
	if (strcmp(wal_status, "lost") == 0)
	{
		rlog(r->v, LOG_ERROR, "replication slot \"%s\" was invalidated (wal_status lost: the server removed WAL it "
			 "still needed, see max_slot_wal_keep_size), so changes are missing; fix: take a new snapshot with "
			 "--snapshot always (it drops and re-creates the slot); to keep it from recurring raise "
			 "max_slot_wal_keep_size or keep the relay running", r->cfg->slot);
		rc = SLOT_STOP;
	}
	else if (gap_check && !PQgetisnull(res, 0, 0) && parse_lsn(PQgetvalue(res, 0, 0), &confirmed))
	{
		if (r->ckpt_durable == 0 && r->gap_unchecked_said)
			;
		else if (r->ckpt_durable == 0 && (r->gap_unchecked_said = true))
			rlog(r->v, LOG_INFO, "no confirmed position of slot \"%s\" is recorded in %s yet (it is from now on): "
				 "the slot cannot be checked for a gap this time", r->cfg->slot, r->cfg->state_topic);
		else if (confirmed > r->ckpt_durable)
		{
			rlog(r->v, LOG_ERROR, "replication slot \"%s\" is at %s but cdc-relay confirmed only up to %s: the slot "
				 "was advanced, or dropped and re-created, by someone else, and changes between %s and %s may be "
				 "missing from Kafka; fix: take a new snapshot with --snapshot always (it drops and re-creates the slot)",
				 r->cfg->slot, lsn_str(confirmed, b1), lsn_str(r->ckpt_durable, b2), b2, b1);
			rc = SLOT_STOP;
		}
	}
	PQclear(res);
	return rc;
}

static const char *
val(PGresult *res, int row, int col)
{
	return PQgetisnull(res, row, col) ? NULL : PQgetvalue(res, row, col);
}

int
pg_identify(Relay *r, PGconn *repl)
{
	PGresult   *res = pg_exec(r, repl, "IDENTIFY_SYSTEM", 0, NULL);
	char		ebuf[1024];

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) < 4)
	{
		if (!*r->stop)
			rlog(r->v, LOG_ERROR, "IDENTIFY_SYSTEM failed: %s", pg_res_error(r, repl, res, ebuf, sizeof(ebuf)));
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
	PGresult   *res = pg_exec(r, conn,
							  "SELECT plugin, database, slot_type FROM pg_catalog.pg_replication_slots"
							  " WHERE slot_name = $1", 1, params);
	int			rc = 0;
	char		ebuf[1024];

	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		if (!*r->stop)
			rlog(r->v, LOG_ERROR, "could not look up replication slot \"%s\": %s", r->cfg->slot,
				 pg_res_error(r, conn, res, ebuf, sizeof(ebuf)));
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

/* What slot_wait_tick needs. */
typedef struct SlotWait
{
	Relay	   *r;
	PGconn	   *repl;
	PGconn	   *aux;
	const char *slot;
	int64_t		next_ms;		/* when to say it (again) */
} SlotWait;

#define SLOT_WAIT_FIRST_MS 5000
#define SLOT_WAIT_EVERY_MS 30000

/*
 * While CREATE_REPLICATION_SLOT waits: logical decoding cannot start before
 * every transaction that held an xid when the slot was created has ended, so
 * a session idle in a transaction, or a forgotten prepared transaction, holds
 * the creation for as long as it lives.  Say which, and how to end them.
 */
static void
slot_wait_tick(void *arg, int64_t waited_ms)
{
	SlotWait   *w = arg;
	char		secs[32],
				pid[16],
				buf[1536],
				ebuf[512];
	const char *params[2];
	PGresult   *res;
	size_t		len = 0;

	if (waited_ms < w->next_ms)
		return;
	w->next_ms = waited_ms + SLOT_WAIT_EVERY_MS;
	snprintf(secs, sizeof(secs), "%.3f", waited_ms / 1000.0);
	snprintf(pid, sizeof(pid), "%d", PQbackendPID(w->repl));
	params[0] = secs;
	params[1] = pid;
	buf[0] = '\0';
	res = w->aux ? pg_exec(w->r, w->aux,
						   "SELECT pg_catalog.format('server process %s (database %s, application %s, %s since %s)',"
						   "  a.pid, a.datname, pg_catalog.quote_literal(a.application_name), a.state,"
						   "  pg_catalog.to_char(a.xact_start AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"')),"
						   "  a.xact_start"
						   " FROM pg_catalog.pg_stat_activity a"
						   " WHERE a.backend_xid IS NOT NULL AND a.pid OPERATOR(pg_catalog.<>) $2::pg_catalog.int4"
						   " AND a.xact_start OPERATOR(pg_catalog.<) (pg_catalog.now()"
						   "   OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1::pg_catalog.float8))"
						   " UNION ALL "
						   "SELECT pg_catalog.format('prepared transaction %L (database %s, owner %s, since %s)',"
						   "  p.gid, p.database, p.owner,"
						   "  pg_catalog.to_char(p.prepared AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS \"UTC\"')),"
						   "  p.prepared"
						   " FROM pg_catalog.pg_prepared_xacts p"
						   " WHERE p.prepared OPERATOR(pg_catalog.<) (pg_catalog.now()"
						   "   OPERATOR(pg_catalog.-) pg_catalog.make_interval(secs => $1::pg_catalog.float8))"
						   " ORDER BY 2 LIMIT 5", 2, params) : NULL;
	if (*w->r->stop)
	{
		PQclear(res);			/* stopping: the wait ends now anyway */
		return;
	}
	if (PQresultStatus(res) == PGRES_TUPLES_OK)
		for (int i = 0; i < PQntuples(res) && len < sizeof(buf) - 1; i++)
			len += snprintf(buf + len, sizeof(buf) - len, "%s%s", i ? "; " : "", PQgetvalue(res, i, 0));
	else if (w->aux)
		snprintf(buf, sizeof(buf), "(could not list them: %s)", pg_res_error(w->r, w->aux, res, ebuf, sizeof(ebuf)));
	PQclear(res);
	rlog(w->r->v, LOG_WARNING,
		 "creating replication slot \"%s\": waiting %.0f s for transactions that were running when it began to end "
		 "(logical decoding starts only after them)%s%s%s", w->slot, waited_ms / 1000.0,
		 buf[0] ? ": " : "", buf,
		 buf[0] ? "; fix: end them (COMMIT or ROLLBACK in that session, SELECT pg_terminate_backend(PID), "
		 "ROLLBACK PREPARED 'GID') or wait" : "");
}

PGresult *
pg_exec_create_slot(Relay *r, PGconn *repl, PGconn *aux, const char *slot, const char *cmd)
{
	SlotWait	w = {r, repl, aux, slot, SLOT_WAIT_FIRST_MS};

	return exec_wait(r, repl, cmd, 0, NULL, false, 0, slot_wait_tick, &w);
}

int
pg_create_slot(Relay *r, PGconn *repl, bool export_snapshot, uint64_t *consistent_point,
			   char *snapshot_name, size_t snaplen)
{
	char		cmd[256];
	PGresult   *res;
	char		ebuf[1024];

	if (r->server_version >= 150000)
		snprintf(cmd, sizeof(cmd), "CREATE_REPLICATION_SLOT \"%s\" LOGICAL cdc_relay (SNAPSHOT '%s')",
				 r->cfg->slot, export_snapshot ? "export" : "nothing");
	else
		snprintf(cmd, sizeof(cmd), "CREATE_REPLICATION_SLOT \"%s\" LOGICAL cdc_relay %s",
				 r->cfg->slot, export_snapshot ? "EXPORT_SNAPSHOT" : "NOEXPORT_SNAPSHOT");
	res = pg_exec_create_slot(r, repl, r->guard, r->cfg->slot, cmd);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
	{
		if (!*r->stop)
			rlog(r->v, LOG_ERROR, "could not create replication slot \"%s\": %s", r->cfg->slot,
				 pg_res_error(r, repl, res, ebuf, sizeof(ebuf)));
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
	char		ebuf[1024];

	snprintf(cmd, sizeof(cmd), "DROP_REPLICATION_SLOT \"%s\" WAIT", r->cfg->slot);
	/* also while stopping: a slot this run created must not stay behind holding WAL */
	res = exec_wait(r, repl, cmd, 0, NULL, true, 10000, NULL, NULL);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
	{
		rlog(r->v, LOG_ERROR, "could not drop replication slot \"%s\": %s", r->cfg->slot,
			 pg_res_error(r, repl, res, ebuf, sizeof(ebuf)));
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
		relay_out_of_memory();
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
	/* only when asked: a plugin older than the option keeps working */
	if (r->cfg->origin_none)
	{
		names[n] = "origin";
		values[n++] = "none";
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
		relay_out_of_memory();
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
		relay_out_of_memory();
	cmd[0] = '\0';
	sb_append(&cmd, &len, &cap, "START_REPLICATION SLOT ");
	sb_append_quoted(&cmd, &len, &cap, r->cfg->slot, '"', false);
	sb_append(&cmd, &len, &cap, " LOGICAL 0/0 (\"key-prefix\" 'true'");
	/* several events per message: one send() per transaction in the walsender */
	if (!r->plugin_unbatched)
		sb_append(&cmd, &len, &cap, ", \"batch-events\" 'true'");
	/* schema events and the DDL trigger's messages (<prefix>.schemas, .ddl) */
	if (!r->plugin_no_schema)
		sb_append(&cmd, &len, &cap, ", \"schema-events\" 'true'");
	for (int i = 0; i < n; i++)
	{
		sb_append(&cmd, &len, &cap, ", ");
		sb_append_quoted(&cmd, &len, &cap, names[i], '"', false);
		sb_append(&cmd, &len, &cap, " ");
		sb_append_quoted(&cmd, &len, &cap, values[i], '\'', false);
	}
	sb_append(&cmd, &len, &cap, ")");
	rlog(r->v, LOG_DEBUG, "%s", cmd);
	res = pg_exec(r, repl, cmd, 0, NULL);
	if (PQresultStatus(res) != PGRES_COPY_BOTH)
	{
		const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
		char		ebuf[1024];

		rc = -1;
		if (*r->stop)
			;
		else if (!r->plugin_unbatched && state && strcmp(state, "22023") == 0 &&
				 strstr(PQresultErrorMessage(res), "batch-events") != NULL)
		{
			/* a plugin library older than the relay: go on without the option */
			rlog(r->v, LOG_WARNING, "the server's cdc_relay plugin does not know the option batch-events: "
				 "streaming without it (slower); fix: install the cdc_relay extension of this cdc-relay "
				 "(make install) on the server");
			r->plugin_unbatched = true;
			PQclear(res);
			free(cmd);
			return pg_start_replication(r, repl);
		}
		else if (!r->plugin_no_schema && state && strcmp(state, "22023") == 0 &&
				 strstr(PQresultErrorMessage(res), "schema-events") != NULL)
		{
			/* a plugin library older than the relay: go on without schema events */
			rlog(r->v, LOG_WARNING, "the server's cdc_relay plugin does not know the option schema-events: "
				 "streaming without schema events (%s stays empty); fix: install the cdc_relay extension "
				 "of this cdc-relay (make install) on the server", r->schemas_topic);
			r->plugin_no_schema = true;
			PQclear(res);
			free(cmd);
			return pg_start_replication(r, repl);
		}
		else if (state && strcmp(state, "42704") == 0)
		{
			/* undefined_object: the slot is gone */
			rlog(r->v, LOG_ERROR, "replication slot \"%s\" does not exist (it was dropped while cdc-relay was "
				 "using it): %s; changes made since may be missing from Kafka; fix: start cdc-relay again: with "
				 "--snapshot initial (the default) it creates the slot and takes a new snapshot",
				 r->cfg->slot, pg_res_error(r, repl, res, ebuf, sizeof(ebuf)));
			rc = -2;
		}
		else
		{
			rlog(r->v, LOG_ERROR, "could not start streaming from slot \"%s\": %s", r->cfg->slot,
				 pg_res_error(r, repl, res, ebuf, sizeof(ebuf)));
			/* object_not_in_prerequisite_state: an invalidated slot says so in pg_replication_slots */
			if (state && strcmp(state, "55000") == 0 && pg_slot_check(r, false) == SLOT_STOP)
				rc = -2;
		}
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
		char		ebuf[1024];

		rlog(r->v, LOG_WARNING, "could not send a status update: %s", pg_error(r, repl, ebuf, sizeof(ebuf)));
		return -1;
	}
	rlog(r->v, LOG_DEBUG, "status update: written %s, flushed %s", lsn_str(written, b1), lsn_str(flushed, b2));
	return 0;
}
