/*
 * verify.c: `cdc-relay verify`: prove that the table topics equal the tables.
 *
 * The comparison point P is exact: a TEMPORARY logical slot is created with
 * an exported snapshot; its consistent point is P and the snapshot shows the
 * tables exactly as of P (every transaction committed before P, none after).
 * A REPEATABLE READ transaction imports the snapshot, lists the captured
 * tables (cdc_relay.snapshot_tables, with run's options) and locks them in
 * ACCESS SHARE mode, so no rewrite or TRUNCATE can empty them under us; then
 * the temporary slot is dropped (the imported snapshot stays valid).
 *
 * Then we wait until the relay's slot has confirmed_flush_lsn >= P: every
 * change committed before P is in Kafka (acknowledged, or committed under
 * exactly-once).  A logical heartbeat message, as the relay's own, makes an
 * idle database produce something the relay can confirm past P.
 *
 * Per table, its topic is read from the beginning to the high watermark
 * (read_committed) and folded into the last state per key at P: a record's
 * position is its commit_lsn header and the seq of its event_id (snapshot
 * rows: seq 0), ties broken by offset; changes count when they committed
 * before P, snapshot rows when their consistent point is at or before P
 * (pos_in_state); later records are ignored (only noted per key); a delete
 * or tombstone makes the key absent, a truncate
 * (key "truncate") makes every key written before it absent.  A record
 * without a commit_lsn header (not written by the relay) takes the position
 * of the record before it in its partition, where it was appended.
 *
 * Memory is bounded: the folded state goes to a temporary SQLite database
 * (in $TMPDIR, deleted at exit) keyed by the Kafka key bytes; the table is
 * then read through a cursor, each row rendered by cdc_relay.snapshot_row()
 * exactly as the relay's snapshot renders it, and looked up by its key
 * bytes.  Values are compared as parsed JSON (json_equal), the `after` row
 * and the json_null flags.  Keys in Kafka never seen in the table are extra.
 *
 * Unverifiable: a key whose records at or below P were compacted away
 * (Kafka keeps only the latest record of a key) has only records after P.
 * When the table holds a row for it, it is counted as unverifiable, never as
 * missing.  Likewise a table row whose key has no record at all when
 * compaction may have removed the tombstone of a delete after P
 * (topic_may_forget), an update whose unchanged TOAST values cannot be
 * filled from an earlier record, and keys that look extra while the table's
 * truncate records at or below P may have been compacted away.
 */
#include "relay.h"
#include "verify.h"

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "topic.h"

#define VERIFY_SLOT_FMT "cdc_relay_verify_%d"
#define HEARTBEAT_EVERY_MS 2000
#define FETCH_ROWS "2000"

/* A record's place in the history: commit LSN, seq in its transaction, offset. */
typedef struct Pos
{
	uint64_t	lsn;
	int64_t		seq;
	int64_t		off;
	bool		snap;			/* a snapshot row: lsn is its slot's consistent point */
} Pos;

/*
 * Is the record part of the state at P?  A snapshot row shows the state at
 * its consistent point, so when that is at or below P.  A change whose
 * transaction committed at P itself is not in P's snapshot: a consistent
 * point is the end of a record, and a commit starting there is decoded, not
 * exported (the relay streams it after its own snapshot too).
 */
static bool
pos_in_state(const Pos *pos, uint64_t point)
{
	return pos->snap ? pos->lsn <= point : pos->lsn < point;
}

typedef struct VTable
{
	char	   *relid;
	char	   *regclass;
	char	   *display;
	char		topic[TOPIC_MAX_LEN + 1];
} VTable;

/* The counts and examples of one table. */
typedef struct VResult
{
	int64_t		rows,
				kafka_keys,
				missing,
				extra,
				different,
				unverifiable,
				records;
	int			nexamples[4];	/* per kind */
	json_t	   *examples;
	bool		keyless;
	bool		truncate_uncertain;
	bool		gone_uncertain; /* a key may have lost every record (see topic_may_forget) */
	int64_t		unknown_keys;	/* records with key "unknown" at or below P */
} VResult;

enum
{
	EX_MISSING,
	EX_EXTRA,
	EX_DIFFERENT,
	EX_UNVERIFIABLE
};
static const char *const kind_names[] = {"missing", "extra", "different", "unverifiable"};

typedef struct Verify
{
	Relay		r;
	RelayConfig cfg;
	bool		json;
	int			examples;
	int			timeout_s;
	bool		progress;
	int64_t		progress_ms;
	uint64_t	point;
	int64_t		point_ms;		/* when P was taken (monotonic) */
	char		point_str[24];
	char		confirmed_str[24];
	PGconn	   *snap;			/* the imported snapshot */
	PGconn	   *aux;			/* heartbeats, the relay's slot */
	rd_kafka_t *rk;
	sqlite3    *db;
	char		dbpath[PATH_MAX];
	sqlite3_stmt *st_le,
			   *st_gt,
			   *st_get,
			   *st_seen;
	char		reason[1200];	/* why we could not verify */
} Verify;

static int	cannot(Verify *v, const char *fmt,...) __attribute__((format(printf, 2, 3)));

/* Record why verification is impossible; returns -1. */
static int
cannot(Verify *v, const char *fmt,...)
{
	va_list		ap;

	if (v->reason[0] == '\0')
	{
		va_start(ap, fmt);
		vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
		va_end(ap);
	}
	return -1;
}

void
verify_usage(FILE *out)
{
	fputs("Usage:\n"
		  "  cdc-relay verify -d CONNINFO -b BROKERS --topic-prefix PREFIX [OPTION]...\n"
		  "\n"
		  "Compares every captured table with its Kafka topic at one exact WAL position\n"
		  "(a temporary slot's consistent point), after the relay confirmed past it.\n"
		  "Takes run's connection, slot, table and Kafka options (-d, -b, -S,\n"
		  "--topic-prefix, --tables, --exclude-tables, --publication, --partition-root,\n"
		  "-X, -c), and:\n"
		  "      --json                 one JSON object on stdout\n"
		  "      --examples=N           example keys per kind and table (default: 5)\n"
		  "      --timeout=SECONDS      wait this long for the relay to confirm the\n"
		  "                             comparison point (default: 300)\n"
		  "Exit status: 0 equal, 1 differences found, 2 bad usage, 3 could not verify.\n",
		  out);
}

/* ---- options ----------------------------------------------------------------------- */

/*
 * Take verify's own options out of argv and parse the rest as run's.
 * Returns 0, 1 (--help printed) or 2 (bad usage, printed).
 */
static int
parse_options(Verify *v, int argc, char **argv)
{
	char	  **rest = calloc((size_t) argc + 1, sizeof(char *));
	int			n = 0,
				rc;
	char		err[1024];

	if (rest == NULL)
		relay_out_of_memory();
	v->examples = 5;
	v->timeout_s = 300;
	rest[n++] = "run";
	for (int i = 1; i < argc; i++)
	{
		const char *a = argv[i];
		const char *val = NULL;
		bool		is_ex = strncmp(a, "--examples", 10) == 0 && (a[10] == '\0' || a[10] == '='),
					is_to = strncmp(a, "--timeout", 9) == 0 && (a[9] == '\0' || a[9] == '=');

		if (strcmp(a, "--") == 0)
			break;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
		{
			verify_usage(stdout);
			free(rest);
			return 1;
		}
		if (strcmp(a, "--json") == 0)
		{
			v->json = true;
			continue;
		}
		if (is_ex || is_to)
		{
			char	   *end;
			long		num;

			val = strchr(a, '=') ? strchr(a, '=') + 1 : (i + 1 < argc ? argv[++i] : NULL);
			errno = 0;
			num = val ? strtol(val, &end, 10) : -1;
			if (val == NULL || *val == '\0' || *end != '\0' || errno != 0 || num < (is_ex ? 0 : 1) ||
				num > 1000000)
			{
				fprintf(stderr, "cdc-relay: invalid value \"%s\" for %s (a whole number%s)\n"
						"Try \"cdc-relay verify --help\" for more information.\n",
						val ? val : "", is_ex ? "--examples" : "--timeout", is_ex ? " >= 0" : " >= 1");
				free(rest);
				return 2;
			}
			if (is_ex)
				v->examples = (int) num;
			else
				v->timeout_s = (int) num;
			continue;
		}
		rest[n++] = argv[i];
	}
	rest[n] = NULL;
	rc = config_parse_run(n, rest, &v->cfg, err, sizeof(err));
	free(rest);
	if (rc == 1)
		return 1;
	if (rc == 0 && strcmp(v->cfg.brokers, "embedded") == 0)
	{
		snprintf(err, sizeof(err), "verify needs the Kafka cluster the relay writes to, not -b embedded");
		rc = 2;
	}
	if (rc != 0)
	{
		fprintf(stderr, "cdc-relay: %s\nTry \"cdc-relay verify --help\" for more information.\n", err);
		return 2;
	}
	return 0;
}

/* ---- PostgreSQL ------------------------------------------------------------------- */

/* Run sql on conn expecting status want; false (reason recorded) otherwise. */
static bool
exec_expect(Verify *v, PGconn *conn, const char *sql, ExecStatusType want, const char *what)
{
	PGresult   *res = pg_exec(&v->r, conn, sql, 0, NULL);
	char		err[800];
	bool		ok = PQresultStatus(res) == want;

	if (!ok)
		cannot(v, "could not %s: %s", what, pg_res_error(&v->r, conn, res, err, sizeof(err)));
	PQclear(res);
	return ok;
}

/* The relay's slot: its confirmed_flush_lsn (0 when none) and whether it is active. */
static int
relay_slot(Verify *v, uint64_t *confirmed, bool *active)
{
	const char *params[1] = {v->cfg.slot};
	PGresult   *res = pg_exec(&v->r, v->aux,
							  "SELECT confirmed_flush_lsn::pg_catalog.text, active::pg_catalog.text"
							  " FROM pg_catalog.pg_replication_slots WHERE slot_name OPERATOR(pg_catalog.=) $1",
							  1, params);
	char		err[800];
	int			rc = 0;

	*confirmed = 0;
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
		rc = cannot(v, "could not look up replication slot \"%s\": %s", v->cfg.slot,
					pg_res_error(&v->r, v->aux, res, err, sizeof(err)));
	else if (PQntuples(res) == 0)
		rc = cannot(v, "replication slot \"%s\" does not exist: verify compares what a running relay "
					"confirmed; fix: give the relay's -S (and -d)", v->cfg.slot);
	else
	{
		if (!PQgetisnull(res, 0, 0))
			parse_lsn(PQgetvalue(res, 0, 0), confirmed);
		*active = strcmp(PQgetvalue(res, 0, 1), "true") == 0;
	}
	PQclear(res);
	return rc;
}

/*
 * Create the temporary slot with an exported snapshot, import the snapshot
 * on v->snap, list and lock the tables.  The slot goes with repl's end.
 */
static int
take_point(Verify *v, VTable **tables_out, int *ntables)
{
	Relay	   *r = &v->r;
	PGconn	   *repl = pg_connect(r, true);
	PGresult   *res = NULL;
	char		cmd[400],
				snapname[128],
				slotname[64],
				err[800];
	char	   *opts = NULL,
			   *lock = NULL;
	VTable	   *tables = NULL;
	int			n = 0,
				rc = -1;
	size_t		locklen = 64;
	const char *params[1];

	if (repl == NULL)
		return cannot(v, "could not open a replication connection (see the error above)");
	v->point_ms = now_ms();
	if (PQserverVersion(repl) >= 150000)
		snprintf(cmd, sizeof(cmd), "CREATE_REPLICATION_SLOT \"" VERIFY_SLOT_FMT "\" TEMPORARY LOGICAL cdc_relay"
				 " (SNAPSHOT 'export')", (int) getpid());
	else
		snprintf(cmd, sizeof(cmd), "CREATE_REPLICATION_SLOT \"" VERIFY_SLOT_FMT "\" TEMPORARY LOGICAL cdc_relay"
				 " EXPORT_SNAPSHOT", (int) getpid());
	snprintf(slotname, sizeof(slotname), VERIFY_SLOT_FMT, (int) getpid());
	res = pg_exec_create_slot(r, repl, v->aux, slotname, cmd);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQgetisnull(res, 0, 2) ||
		!parse_lsn(PQgetvalue(res, 0, 1), &v->point))
	{
		cannot(v, "could not create a temporary replication slot: %s",
			   pg_res_error(r, repl, res, err, sizeof(err)));
		goto out;
	}
	lsn_str(v->point, v->point_str);
	snprintf(snapname, sizeof(snapname), "%s", PQgetvalue(res, 0, 2));
	PQclear(res);
	res = NULL;
	rlog(v->r.v, LOG_INFO, "verify: comparison point %s (temporary slot, exported snapshot %s)",
		 v->point_str, snapname);

	snprintf(cmd, sizeof(cmd), "SET TRANSACTION SNAPSHOT '%s'", snapname);
	if (!exec_expect(v, v->snap, "BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY",
					 PGRES_COMMAND_OK, "begin the snapshot transaction") ||
		!exec_expect(v, v->snap, cmd, PGRES_COMMAND_OK, "import the exported snapshot"))
		goto out;
	opts = pg_plugin_options_array(r);
	params[0] = opts;
	res = pg_exec(r, v->snap,
				  "SELECT relid::pg_catalog.oid::pg_catalog.text, relid::pg_catalog.regclass::pg_catalog.text,"
				  " schema_name, table_name FROM cdc_relay.snapshot_tables($1::pg_catalog.text[])"
				  " ORDER BY schema_name, table_name", 1, params);
	if (PQresultStatus(res) != PGRES_TUPLES_OK)
	{
		cannot(v, "could not list the captured tables (is the cdc_relay extension installed?): %s",
			   pg_res_error(r, v->snap, res, err, sizeof(err)));
		goto out;
	}
	n = PQntuples(res);
	tables = calloc((size_t) n + 1, sizeof(VTable));
	if (tables == NULL)
		relay_out_of_memory();
	for (int i = 0; i < n; i++)
	{
		VTable	   *t = &tables[i];
		const char *s = PQgetvalue(res, i, 2),
				   *tb = PQgetvalue(res, i, 3);

		t->relid = relay_strdup(PQgetvalue(res, i, 0));
		t->regclass = relay_strdup(PQgetvalue(res, i, 1));
		t->display = table_display_name(s, tb);
		if (t->display == NULL)
			relay_out_of_memory();
		topic_for_table(v->cfg.topic_prefix, s, strlen(s), tb, strlen(tb), t->topic);
		locklen += strlen(t->regclass) + 2;
	}
	PQclear(res);
	res = NULL;
	if (n > 0)
	{
		char	   *p;

		lock = malloc(locklen + 64);
		if (lock == NULL)
			relay_out_of_memory();
		p = lock + sprintf(lock, "LOCK TABLE ONLY ");
		for (int i = 0; i < n; i++)
			p += sprintf(p, "%s%s", i ? ", " : "", tables[i].regclass);
		strcpy(p, " IN ACCESS SHARE MODE");
		if (!exec_expect(v, v->snap, lock, PGRES_COMMAND_OK, "lock the captured tables"))
			goto out;
		/* a rewrite or TRUNCATE committed between the export and the lock: the snapshot reads it empty */
		res = pg_exec(r, v->snap,
					  "SELECT pg_catalog.count(*) FROM cdc_relay.snapshot_tables($1::pg_catalog.text[]) s"
					  " JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) s.relid"
					  " WHERE c.relfilenode OPERATOR(pg_catalog.<>) pg_catalog.pg_relation_filenode(s.relid)",
					  1, params);
		if (PQresultStatus(res) != PGRES_TUPLES_OK || strcmp(PQgetvalue(res, 0, 0), "0") != 0)
		{
			cannot(v, "a captured table was rewritten or truncated while verify started%s%s; fix: run "
				   "verify again", PQresultStatus(res) == PGRES_TUPLES_OK ? "" : ": ",
				   PQresultStatus(res) == PGRES_TUPLES_OK ? "" : pg_res_error(r, v->snap, res, err, sizeof(err)));
			goto out;
		}
	}
	rc = 0;
out:
	PQclear(res);
	free(opts);
	free(lock);
	PQfinish(repl);				/* drops the temporary slot; the imported snapshot stays */
	*tables_out = tables;
	*ntables = n;
	return rc;
}

/*
 * Wait until the relay's slot confirmed P, sending heartbeats so that an
 * idle database gives the relay something past P to confirm.
 */
static int
wait_confirmed(Verify *v)
{
	int64_t		deadline = now_ms() + (int64_t) v->timeout_s * 1000,
				next_hb = 0;
	uint64_t	confirmed = 0;
	bool		active = false,
				hb_ok = true;
	char		err[800];

	for (;;)
	{
		if (relay_slot(v, &confirmed, &active) != 0)
			return -1;
		lsn_str(confirmed, v->confirmed_str);
		if (confirmed >= v->point)
			return 0;
		if (*v->r.stop)
			return cannot(v, "stopped at the operator's request");
		if (now_ms() >= deadline)
			return cannot(v, "the relay did not confirm the comparison point %s within %d s (slot \"%s\" "
						  "confirmed %s, %s); fix: start the relay (cdc-relay run with the same -S), or "
						  "raise --timeout", v->point_str, v->timeout_s, v->cfg.slot, v->confirmed_str,
						  active ? "active" : "no relay connected");
		if (hb_ok && now_ms() >= next_hb)
		{
			PGresult   *res = pg_exec(&v->r, v->aux,
									  "SELECT pg_catalog.pg_logical_emit_message(true, '" HEARTBEAT_PREFIX
									  "'::pg_catalog.text, ''::pg_catalog.text)", 0, NULL);

			if (PQresultStatus(res) != PGRES_TUPLES_OK)
			{
				rlog(v->r.v, LOG_WARNING, "verify: could not send a heartbeat (an idle database may then "
					 "never let the relay confirm past %s): %s", v->point_str,
					 pg_res_error(&v->r, v->aux, res, err, sizeof(err)));
				hb_ok = false;
			}
			PQclear(res);
			next_hb = now_ms() + HEARTBEAT_EVERY_MS;
		}
		usleep(200000);
	}
}

/* ---- SQLite ----------------------------------------------------------------------- */

static int
db_fail(Verify *v, const char *what)
{
	return cannot(v, "temporary database %s: %s: %s", v->dbpath, what, sqlite3_errmsg(v->db));
}

static int
db_exec(Verify *v, const char *sql)
{
	char	   *msg = NULL;

	if (sqlite3_exec(v->db, sql, NULL, NULL, &msg) != SQLITE_OK)
	{
		cannot(v, "temporary database %s: %s", v->dbpath, msg ? msg : "error");
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

static void
db_finalize(Verify *v)
{
	sqlite3_finalize(v->st_le);
	sqlite3_finalize(v->st_gt);
	sqlite3_finalize(v->st_get);
	sqlite3_finalize(v->st_seen);
	v->st_le = v->st_gt = v->st_get = v->st_seen = NULL;
}

/* Open the temporary database (the file is unlinked at once where possible: at exit, always). */
static int
db_open(Verify *v)
{
	const char *dir = getenv("TMPDIR");
	int			fd;

	snprintf(v->dbpath, sizeof(v->dbpath), "%s/cdc-relay-verify-XXXXXX", dir && dir[0] ? dir : "/tmp");
	fd = mkstemp(v->dbpath);
	if (fd < 0)
	{
		int			e = errno;

		v->dbpath[0] = '\0';
		return cannot(v, "could not create a temporary file in %s: %s (set TMPDIR)",
					  dir && dir[0] ? dir : "/tmp", strerror(e));
	}
	close(fd);
	if (sqlite3_open(v->dbpath, &v->db) != SQLITE_OK)
		return db_fail(v, "open");
	/* a scratch file: no journal, no fsync; a page cache of 64 MB */
	return db_exec(v, "PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF; PRAGMA locking_mode = EXCLUSIVE;"
				   " PRAGMA cache_size = -65536; PRAGMA temp_store = FILE");
}

/* A fresh state table for the next topic, and the statements on it. */
static int
db_reset(Verify *v)
{
	db_finalize(v);
	if (db_exec(v, "DROP TABLE IF EXISTS k;"
				" CREATE TABLE k (key BLOB PRIMARY KEY, has_le INTEGER NOT NULL, lsn INTEGER, seq INTEGER,"
				" off INTEGER, present INTEGER NOT NULL, after TEXT, jn TEXT, later INTEGER NOT NULL,"
				" seen INTEGER NOT NULL) WITHOUT ROWID") != 0)
		return -1;
	if (sqlite3_prepare_v2(v->db,
						   "INSERT INTO k VALUES (?1, 1, ?2, ?3, ?4, ?5, ?6, ?7, 0, 0)"
						   " ON CONFLICT (key) DO UPDATE SET has_le = 1, lsn = excluded.lsn, seq = excluded.seq,"
						   " off = excluded.off, present = excluded.present, after = excluded.after, jn = excluded.jn"
						   " WHERE k.has_le = 0 OR (excluded.lsn, excluded.seq, excluded.off) > (k.lsn, k.seq, k.off)",
						   -1, &v->st_le, NULL) != SQLITE_OK ||
		sqlite3_prepare_v2(v->db,
						   "INSERT INTO k VALUES (?1, 0, NULL, NULL, NULL, 0, NULL, NULL, 1, 0)"
						   " ON CONFLICT (key) DO UPDATE SET later = 1", -1, &v->st_gt, NULL) != SQLITE_OK ||
		sqlite3_prepare_v2(v->db, "SELECT has_le, present, after, jn, later, lsn, seq, off FROM k WHERE key = ?1",
						   -1, &v->st_get, NULL) != SQLITE_OK ||
		sqlite3_prepare_v2(v->db, "UPDATE k SET seen = 1 WHERE key = ?1", -1, &v->st_seen, NULL) != SQLITE_OK)
		return db_fail(v, "prepare");
	return 0;
}

static bool
step_done(sqlite3_stmt *st)
{
	int			rc = sqlite3_step(st);

	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE;
}

/* ---- folding the topic ------------------------------------------------------------ */

/* Header name as a NUL-terminated string in buf; false when absent. */
static bool
header(rd_kafka_message_t *m, const char *name, char *buf, size_t len)
{
	rd_kafka_headers_t *h = NULL;
	const void *val;
	size_t		size;

	if (rd_kafka_message_headers(m, &h) != RD_KAFKA_RESP_ERR_NO_ERROR ||
		rd_kafka_header_get_last(h, name, &val, &size) != RD_KAFKA_RESP_ERR_NO_ERROR || val == NULL ||
		size >= len)
		return false;
	memcpy(buf, val, size);
	buf[size] = '\0';
	return true;
}

/*
 * The record's position: the commit_lsn header and the seq of event_id
 * ("<lsn>/<seq>", "<lsn>/<seq>/tombstone"; snapshot rows "<lsn>/r/...": 0);
 * without headers, the value's commit_lsn and seq.  False when neither.
 */
static bool
record_pos(rd_kafka_message_t *m, json_t *value, Pos *pos)
{
	char		buf[128];

	pos->off = m->offset;
	pos->snap = false;
	if (header(m, "commit_lsn", buf, sizeof(buf)) && parse_lsn(buf, &pos->lsn))
	{
		const char *slash;

		pos->seq = 0;
		if (header(m, "event_id", buf, sizeof(buf)) && (slash = strchr(buf, '/')) != NULL &&
			(slash = strchr(slash + 1, '/')) != NULL)
		{
			if (slash[1] == 'r')
				pos->snap = true;
			else
				pos->seq = strtoll(slash + 1, NULL, 10);
		}
		if (header(m, "snapshot", buf, sizeof(buf)) && strcmp(buf, "true") == 0)
			pos->snap = true;
		return true;
	}
	if (json_is_object(value))
	{
		const char *cl = json_string_value(json_object_get(value, "commit_lsn"));
		const char *op = json_string_value(json_object_get(value, "op"));

		if (cl && parse_lsn(cl, &pos->lsn))
		{
			pos->seq = json_integer_value(json_object_get(value, "seq"));
			return true;
		}
		cl = json_string_value(json_object_get(value, "lsn"));
		if (op && strcmp(op, "r") == 0 && cl && parse_lsn(cl, &pos->lsn))
		{
			pos->seq = 0;
			pos->snap = true;
			return true;
		}
	}
	return false;
}

static int
pos_cmp(const Pos *a, const Pos *b)
{
	if (a->lsn != b->lsn)
		return a->lsn < b->lsn ? -1 : 1;
	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	if (a->off != b->off)
		return a->off < b->off ? -1 : 1;
	return 0;
}

static char *
dump(json_t *j)
{
	char	   *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

	if (s == NULL)
		relay_out_of_memory();
	return s;
}

/*
 * The state one record at or below P gives its key: present (1), absent (0)
 * or partial (2); *after and *jn are malloc'd JSON texts (or NULL).  An
 * update that left out unchanged TOAST values is completed from the key's
 * current state when that is present and earlier.
 */
static int
record_state(Verify *v, const void *key, size_t keylen, json_t *value, const void *raw, size_t rawlen,
			 const Pos *pos, char **after, char **jn)
{
	const char *op = json_string_value(json_object_get(value, "op"));
	json_t	   *a = json_object_get(value, "after");
	json_t	   *toast = json_object_get(value, "unchanged_toast");
	json_t	   *jnull = json_object_get(json_object_get(value, "json_null"), "after");
	int			present = 1;

	*after = *jn = NULL;
	if (raw == NULL)
		return 0;				/* tombstone */
	if (op && strcmp(op, "d") == 0)
		return 0;
	if (op == NULL || !json_is_object(a) || (strcmp(op, "c") != 0 && strcmp(op, "u") != 0 && strcmp(op, "r") != 0))
	{
		/* not a row event: keep it whole, so that it compares as different */
		json_t	   *s = value ? json_incref(value) : json_stringn(raw, rawlen);

		*after = dump(s ? s : json_null());
		json_decref(s);
		return 1;
	}
	if (json_array_size(toast) > 0)
	{
		Pos			old;
		int			has_le = 0,
					old_present = 0;
		json_t	   *prev = NULL;

		sqlite3_bind_blob(v->st_get, 1, key, (int) keylen, SQLITE_STATIC);
		if (sqlite3_step(v->st_get) == SQLITE_ROW)
		{
			has_le = sqlite3_column_int(v->st_get, 0);
			old_present = sqlite3_column_int(v->st_get, 1);
			old.lsn = (uint64_t) sqlite3_column_int64(v->st_get, 5);
			old.seq = sqlite3_column_int64(v->st_get, 6);
			old.off = sqlite3_column_int64(v->st_get, 7);
			if (has_le && old_present == 1 && pos_cmp(&old, pos) < 0 && sqlite3_column_text(v->st_get, 2))
				prev = json_loads((const char *) sqlite3_column_text(v->st_get, 2), 0, NULL);
		}
		sqlite3_reset(v->st_get);
		sqlite3_clear_bindings(v->st_get);
		if (prev == NULL)
			present = 2;		/* the unchanged values are not known */
		else
		{
			size_t		i;
			json_t	   *col;

			a = json_deep_copy(a);
			json_array_foreach(toast, i, col)
			{
				const char *name = json_string_value(col);

				if (name && json_object_get(prev, name))
					json_object_set(a, name, json_object_get(prev, name));
			}
			*after = dump(a);
			json_decref(a);
			json_decref(prev);
		}
	}
	if (*after == NULL)
		*after = dump(a);
	if (jnull)
		*jn = dump(jnull);
	return present;
}

/* Fold one record into the state table.  0, or -1 (reason recorded). */
static int
fold(Verify *v, VResult *res, rd_kafka_message_t *m, Pos *prev, bool *trunc_le, bool *trunc_gt, Pos *trunc)
{
	json_t	   *value = m->payload ? json_loadb(m->payload, m->len, 0, NULL) : NULL;
	Pos			pos;
	int			rc = 0;

	if (!record_pos(m, value, &pos))
	{
		/* not the relay's: it stands where it was appended, after the record before it */
		pos = *prev;
		pos.off = m->offset;
	}
	*prev = pos;
	res->records++;
	if (m->key == NULL)
	{
		res->keyless = true;
		goto out;
	}
	if (m->key_len == 10 && memcmp(m->key, "\"truncate\"", 10) == 0)
	{
		if (!pos_in_state(&pos, v->point))
			*trunc_gt = true;
		else if (!*trunc_le || pos_cmp(trunc, &pos) < 0)
		{
			*trunc = pos;
			*trunc_le = true;
		}
		goto out;
	}
	if (m->key_len == 9 && memcmp(m->key, "\"unknown\"", 9) == 0)
	{
		if (pos_in_state(&pos, v->point))
			res->unknown_keys++;
		goto out;
	}
	if (!pos_in_state(&pos, v->point))
	{
		sqlite3_bind_blob(v->st_gt, 1, m->key, (int) m->key_len, SQLITE_STATIC);
		if (!step_done(v->st_gt))
			rc = db_fail(v, "write");
	}
	else
	{
		char	   *after,
				   *jn;
		int			present = record_state(v, m->key, m->key_len, value, m->payload, m->len, &pos, &after, &jn);

		sqlite3_bind_blob(v->st_le, 1, m->key, (int) m->key_len, SQLITE_STATIC);
		sqlite3_bind_int64(v->st_le, 2, (sqlite3_int64) pos.lsn);
		sqlite3_bind_int64(v->st_le, 3, pos.seq);
		sqlite3_bind_int64(v->st_le, 4, pos.off);
		sqlite3_bind_int(v->st_le, 5, present);
		if (after)
			sqlite3_bind_text(v->st_le, 6, after, -1, SQLITE_STATIC);
		if (jn)
			sqlite3_bind_text(v->st_le, 7, jn, -1, SQLITE_STATIC);
		if (!step_done(v->st_le))
			rc = db_fail(v, "write");
		free(after);
		free(jn);
	}
out:
	json_decref(value);
	return rc;
}

static void
show_progress(Verify *v, const VTable *t, const char *what, int64_t n, bool last)
{
	int64_t		now;

	if (!v->progress)
		return;
	now = now_ms();
	if (!last && now - v->progress_ms < 250)
		return;
	v->progress_ms = now;
	fprintf(stderr, "\r\033[Kverify %s: %s %lld%s", t->display, what, (long long) n, last ? "\n" : "");
	fflush(stderr);
}

/*
 * Can a key of this topic have lost every record, those at or below P
 * included?  Compaction removes a key's records before its latest one, and
 * the latest itself when that is a tombstone older than delete.retention.ms:
 * a row deleted after P then leaves nothing.  That tombstone was written
 * after P, so this can only happen when at least delete.retention.ms passed
 * since P was taken (elapsed_ms).  Retention (cleanup.policy delete) removes
 * records from the start (*lo_moved: a low watermark above 0).  When the
 * configs cannot be read, the answer is yes.
 */
static bool
topic_may_forget(Verify *v, const char *topic, int64_t elapsed_ms, bool lo_moved)
{
	rd_kafka_ConfigResource_t *res = rd_kafka_ConfigResource_new(RD_KAFKA_RESOURCE_TOPIC, topic);
	rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(v->rk, RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS);
	rd_kafka_queue_t *q = rd_kafka_queue_new(v->rk);
	rd_kafka_event_t *ev;
	bool		compact = false,
				known = false;
	int64_t		retention = -1;

	rd_kafka_AdminOptions_set_request_timeout(opt, 15000, NULL, 0);
	rd_kafka_DescribeConfigs(v->rk, &res, 1, opt, q);
	ev = rd_kafka_queue_poll(q, 20000);
	if (ev && rd_kafka_event_error(ev) == RD_KAFKA_RESP_ERR_NO_ERROR)
	{
		size_t		nr = 0,
					nc = 0;
		const rd_kafka_ConfigResource_t **rs =
			rd_kafka_DescribeConfigs_result_resources(rd_kafka_event_DescribeConfigs_result(ev), &nr);
		const rd_kafka_ConfigEntry_t **cs;

		if (nr == 1 && rd_kafka_ConfigResource_error(rs[0]) == RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			cs = rd_kafka_ConfigResource_configs(rs[0], &nc);
			for (size_t c = 0; c < nc; c++)
			{
				const char *cn = rd_kafka_ConfigEntry_name(cs[c]);
				const char *cv = rd_kafka_ConfigEntry_value(cs[c]);

				if (cv && strcmp(cn, "cleanup.policy") == 0)
				{
					compact = strstr(cv, "compact") != NULL;
					known = true;
				}
				else if (cv && strcmp(cn, "delete.retention.ms") == 0)
					retention = strtoll(cv, NULL, 10);
			}
		}
	}
	if (!known || (compact && retention < 0))
		rlog(v->r.v, LOG_WARNING, "verify: could not read the configs of topic %s (%s): a key with no record "
			 "left is counted as unverifiable, not missing", topic,
			 ev && rd_kafka_event_error(ev) ? rd_kafka_event_error_string(ev) : "no answer");
	if (ev)
		rd_kafka_event_destroy(ev);
	rd_kafka_queue_destroy(q);
	rd_kafka_AdminOptions_destroy(opt);
	rd_kafka_ConfigResource_destroy(res);
	if (!known || lo_moved)
		return true;
	return compact && (retention < 0 || elapsed_ms >= retention);
}

/*
 * Read topic t->topic from the beginning to its high watermark (read when
 * P is confirmed) and fold every record into the state table.
 */
static int
read_topic(Verify *v, const VTable *t, VResult *res)
{
	rd_kafka_topic_t *rkt = rd_kafka_topic_new(v->rk, t->topic, NULL);
	const rd_kafka_metadata_t *md = NULL;
	rd_kafka_queue_t *q = NULL;
	rd_kafka_resp_err_t e;
	int			nparts = 0,
				open = 0,
				rc = -1;
	int64_t    *hi = NULL;
	bool	   *started = NULL;
	Pos		   *prev = NULL,
				trunc = {0, 0, 0, false};
	bool		trunc_le = false,
				trunc_gt = false;
	int64_t		idle_since = now_ms();
	bool		lo_moved = false;

	if (rkt == NULL)
		return cannot(v, "could not open topic %s: %s", t->topic, rd_kafka_err2str(rd_kafka_last_error()));
	e = rd_kafka_metadata(v->rk, 0, rkt, &md, 15000);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1)
	{
		cannot(v, "could not read the metadata of topic %s: %s", t->topic, rd_kafka_err2str(e));
		goto out;
	}
	if (md->topics[0].err != RD_KAFKA_RESP_ERR_NO_ERROR || md->topics[0].partition_cnt == 0)
	{
		cannot(v, "topic %s (table %s) %s: %s", t->topic, t->display,
			   md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ? "does not exist" : "cannot be read",
			   rd_kafka_err2str(md->topics[0].err ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION));
		goto out;
	}
	nparts = md->topics[0].partition_cnt;
	hi = calloc((size_t) nparts, sizeof(int64_t));
	started = calloc((size_t) nparts, sizeof(bool));
	prev = calloc((size_t) nparts, sizeof(Pos));
	if (hi == NULL || started == NULL || prev == NULL)
		relay_out_of_memory();
	q = rd_kafka_queue_new(v->rk);
	for (int i = 0; i < nparts; i++)
	{
		int32_t		p = md->topics[0].partitions[i].id;
		int64_t		lo = 0;

		if (p < 0 || p >= nparts)
		{
			cannot(v, "topic %s: unexpected partition id %d", t->topic, (int) p);
			goto out;
		}
		e = rd_kafka_query_watermark_offsets(v->rk, t->topic, p, &lo, &hi[p], 15000);
		if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
		{
			cannot(v, "could not read the offsets of %s [%d]: %s", t->topic, (int) p, rd_kafka_err2str(e));
			goto out;
		}
		lo_moved |= lo > 0;
		if (hi[p] <= lo)
			continue;
		if (rd_kafka_consume_start_queue(rkt, p, RD_KAFKA_OFFSET_BEGINNING, q) != 0)
		{
			cannot(v, "could not read %s [%d]: %s", t->topic, (int) p,
				   rd_kafka_err2str(rd_kafka_last_error()));
			goto out;
		}
		started[p] = true;
		open++;
	}
	if (db_exec(v, "BEGIN") != 0)
		goto out;
	while (open > 0)
	{
		rd_kafka_message_t *m = rd_kafka_consume_queue(q, 500);
		int32_t		p;

		if (*v->r.stop)
		{
			cannot(v, "stopped at the operator's request");
			goto out;
		}
		if (m == NULL)
		{
			if (now_ms() - idle_since > (int64_t) v->timeout_s * 1000)
			{
				cannot(v, "reading topic %s: no progress for %d s (--timeout)", t->topic, v->timeout_s);
				goto out;
			}
			continue;
		}
		idle_since = now_ms();
		p = m->partition;
		if (p < 0 || p >= nparts || !started[p])
		{
			rd_kafka_message_destroy(m);
			continue;
		}
		if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
		{
			/* the end a read_committed reader sees; before hi: a transaction is still open */
			if (m->offset >= hi[p])
			{
				started[p] = false;
				rd_kafka_consume_stop(rkt, p);
				open--;
			}
			rd_kafka_message_destroy(m);
			continue;
		}
		if (m->err)
		{
			cannot(v, "reading topic %s [%d]: %s", t->topic, (int) p, rd_kafka_message_errstr(m));
			rd_kafka_message_destroy(m);
			goto out;
		}
		if (fold(v, res, m, &prev[p], &trunc_le, &trunc_gt, &trunc) != 0)
		{
			rd_kafka_message_destroy(m);
			goto out;
		}
		if (m->offset >= hi[p] - 1)
		{
			started[p] = false;
			rd_kafka_consume_stop(rkt, p);
			open--;
		}
		rd_kafka_message_destroy(m);
		show_progress(v, t, "Kafka records read:", res->records, false);
	}
	if (trunc_le)
	{
		sqlite3_stmt *st;

		/* every key written before the last truncate at or below P is absent */
		if (sqlite3_prepare_v2(v->db, "UPDATE k SET present = 0, after = NULL, jn = NULL"
							   " WHERE has_le = 1 AND (lsn, seq) < (?1, ?2)", -1, &st, NULL) != SQLITE_OK)
		{
			db_fail(v, "prepare");
			goto out;
		}
		sqlite3_bind_int64(st, 1, (sqlite3_int64) trunc.lsn);
		sqlite3_bind_int64(st, 2, trunc.seq);
		if (!step_done(st))
		{
			sqlite3_finalize(st);
			db_fail(v, "truncate");
			goto out;
		}
		sqlite3_finalize(st);
	}
	/* a truncate at or below P may have been compacted away behind a later one */
	res->truncate_uncertain = trunc_gt && !trunc_le;
	res->gone_uncertain = topic_may_forget(v, t->topic, now_ms() - v->point_ms, lo_moved);
	show_progress(v, t, "Kafka records read:", res->records, true);
	rc = db_exec(v, "COMMIT");
out:
	for (int p = 0; p < nparts; p++)
		if (started && started[p])
			rd_kafka_consume_stop(rkt, p);
	if (q)
		rd_kafka_queue_destroy(q);
	if (md)
		rd_kafka_metadata_destroy(md);
	rd_kafka_topic_destroy(rkt);
	free(hi);
	free(started);
	free(prev);
	if (rc != 0)
		sqlite3_exec(v->db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

/* ---- comparing ---------------------------------------------------------------------- */

static json_t *
loads_or_null(const char *s)
{
	json_t	   *j = s ? json_loads(s, JSON_DECODE_ANY, NULL) : NULL;

	return j ? j : json_null();
}

/* Add an example (steals table_row and kafka) unless there are enough of this kind. */
static void
add_example(Verify *v, VResult *res, int kind, const char *key, size_t keylen, json_t *table_row, json_t *kafka)
{
	if (res->nexamples[kind] < v->examples)
	{
		json_t	   *k = json_loadb(key, keylen, JSON_DECODE_ANY, NULL);

		if (k == NULL)
			k = json_stringn(key, keylen);
		json_array_append_new(res->examples,
							  json_pack("{s:s, s:o, s:o, s:o}", "kind", kind_names[kind], "key", k,
										"table_row", table_row ? table_row : json_null(),
										"kafka", kafka ? kafka : json_null()));
		res->nexamples[kind]++;
		return;
	}
	json_decref(table_row);
	json_decref(kafka);
}

/* Compare one table row ("<key> TAB <event>") with the folded state. */
static int
compare_row(Verify *v, VResult *res, const char *line)
{
	const char *tab = strchr(line, CDC_WIRE_KEY_SEP);
	size_t		keylen;
	json_t	   *event,
			   *after;
	int			rc = 0;

	res->rows++;
	if (tab == NULL)
		return cannot(v, "unexpected output of cdc_relay.snapshot_row(): %.80s", line);
	keylen = (size_t) (tab - line);
	if (keylen == 4 && memcmp(line, "null", 4) == 0)
	{
		/* a table without a key: its rows cannot be matched to Kafka records */
		res->keyless = true;
		res->unverifiable++;
		return 0;
	}
	event = json_loads(tab + 1, 0, NULL);
	after = json_object_get(event, "after");
	sqlite3_bind_blob(v->st_get, 1, line, (int) keylen, SQLITE_STATIC);
	if (sqlite3_step(v->st_get) != SQLITE_ROW)
	{
		/* no record at all: compaction may have removed even the tombstone of a later delete */
		res->missing += !res->gone_uncertain;
		res->unverifiable += res->gone_uncertain;
		add_example(v, res, res->gone_uncertain ? EX_UNVERIFIABLE : EX_MISSING, line, keylen,
					json_incref(after), NULL);
	}
	else
	{
		int			has_le = sqlite3_column_int(v->st_get, 0),
					present = sqlite3_column_int(v->st_get, 1),
					later = sqlite3_column_int(v->st_get, 4);

		if (!has_le && later)
		{
			/* only records after P survive: the earlier ones were compacted away */
			res->unverifiable++;
			add_example(v, res, EX_UNVERIFIABLE, line, keylen, json_incref(after), NULL);
		}
		else if (present == 0)
		{
			res->missing++;
			add_example(v, res, EX_MISSING, line, keylen, json_incref(after), NULL);
		}
		else if (present == 2)
		{
			res->unverifiable++;
			add_example(v, res, EX_UNVERIFIABLE, line, keylen, json_incref(after),
						loads_or_null((const char *) sqlite3_column_text(v->st_get, 2)));
		}
		else
		{
			json_t	   *kafka = loads_or_null((const char *) sqlite3_column_text(v->st_get, 2));
			json_t	   *kjn = loads_or_null((const char *) sqlite3_column_text(v->st_get, 3));
			json_t	   *tjn = json_object_get(json_object_get(event, "json_null"), "after");

			if (!json_equal(after, kafka) || !json_equal(tjn ? tjn : json_null(), kjn))
			{
				res->different++;
				add_example(v, res, EX_DIFFERENT, line, keylen, json_incref(after), json_incref(kafka));
			}
			json_decref(kafka);
			json_decref(kjn);
		}
		sqlite3_reset(v->st_get);
		sqlite3_bind_blob(v->st_seen, 1, line, (int) keylen, SQLITE_STATIC);
		if (!step_done(v->st_seen))
			rc = db_fail(v, "write");
	}
	sqlite3_reset(v->st_get);
	sqlite3_clear_bindings(v->st_get);
	json_decref(event);
	return rc;
}

/* Read the table (as of P) through a cursor and compare each row. */
static int
read_table(Verify *v, const VTable *t, VResult *res)
{
	Relay	   *r = &v->r;
	char	   *opts = pg_plugin_options_array(r);
	char	   *lit = PQescapeLiteral(v->snap, opts, strlen(opts));
	char	   *sql;
	char		err[800];
	bool		ok;
	int			rc = -1;

	if (lit == NULL)
		relay_out_of_memory();
	sql = snapshot_row_query("DECLARE cdc_relay_verify NO SCROLL CURSOR FOR ", t->relid, t->regclass,
							 v->point_str, lit, "");
	PQfreemem(lit);
	free(opts);
	ok = exec_expect(v, v->snap, sql, PGRES_COMMAND_OK, "read the table");
	free(sql);
	if (!ok || db_exec(v, "BEGIN") != 0)
		return -1;
	for (;;)
	{
		PGresult   *res_pg = pg_exec(r, v->snap, "FETCH FORWARD " FETCH_ROWS " FROM cdc_relay_verify", 0, NULL);
		int			n;

		if (PQresultStatus(res_pg) != PGRES_TUPLES_OK)
		{
			cannot(v, "could not read table %s: %s", t->display, *v->r.stop ? "stopped at the operator's request"
				   : pg_res_error(r, v->snap, res_pg, err, sizeof(err)));
			PQclear(res_pg);
			goto out;
		}
		n = PQntuples(res_pg);
		for (int i = 0; i < n; i++)
			if (compare_row(v, res, PQgetvalue(res_pg, i, 0)) != 0)
			{
				PQclear(res_pg);
				goto out;
			}
		PQclear(res_pg);
		show_progress(v, t, "table rows compared:", res->rows, n == 0);
		if (n == 0)
			break;
	}
	if (!exec_expect(v, v->snap, "CLOSE cdc_relay_verify", PGRES_COMMAND_OK, "close the cursor"))
		goto out;
	rc = 0;
out:
	if (rc != 0)
		sqlite3_exec(v->db, "ROLLBACK", NULL, NULL, NULL);
	else
		rc = db_exec(v, "COMMIT");
	return rc;
}

/* Keys present in Kafka at P that the table does not have; and the count of keys. */
static int
find_extra(Verify *v, VResult *res)
{
	sqlite3_stmt *st;
	int			s;

	if (sqlite3_prepare_v2(v->db, "SELECT key, after, seen FROM k WHERE has_le = 1 AND present > 0",
						   -1, &st, NULL) != SQLITE_OK)
		return db_fail(v, "prepare");
	while ((s = sqlite3_step(st)) == SQLITE_ROW)
	{
		const char *key = sqlite3_column_blob(st, 0);
		size_t		keylen = (size_t) sqlite3_column_bytes(st, 0);

		res->kafka_keys++;
		if (sqlite3_column_int(st, 2))
			continue;
		if (res->truncate_uncertain)
		{
			res->unverifiable++;
			add_example(v, res, EX_UNVERIFIABLE, key, keylen, NULL,
						loads_or_null((const char *) sqlite3_column_text(st, 1)));
		}
		else
		{
			res->extra++;
			add_example(v, res, EX_EXTRA, key, keylen, NULL,
						loads_or_null((const char *) sqlite3_column_text(st, 1)));
		}
	}
	sqlite3_finalize(st);
	return s == SQLITE_DONE ? 0 : db_fail(v, "read");
}

/* ---- the report ----------------------------------------------------------------------- */

static json_t *
result_json(const VTable *t, VResult *res)
{
	return json_pack("{s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:O}",
					 "table", t->display, "topic", t->topic, "rows", (json_int_t) res->rows,
					 "kafka_keys", (json_int_t) res->kafka_keys, "missing", (json_int_t) res->missing,
					 "extra", (json_int_t) res->extra, "different", (json_int_t) res->different,
					 "unverifiable", (json_int_t) res->unverifiable, "examples", res->examples);
}

static void
print_value(const char *label, json_t *j)
{
	char	   *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);

	printf("      %s %s\n", label, s ? s : "?");
	free(s);
}

static void
print_table(const VTable *t, const VResult *res)
{
	size_t		i;
	json_t	   *ex;

	printf("%s: %lld rows, %lld keys in Kafka, %lld missing, %lld extra, %lld different, %lld unverifiable%s\n",
		   t->display, (long long) res->rows, (long long) res->kafka_keys, (long long) res->missing,
		   (long long) res->extra, (long long) res->different, (long long) res->unverifiable,
		   res->keyless ? " (a table without a key: its rows cannot be matched to Kafka records)" : "");
	if (res->unknown_keys > 0)
		printf("  note: %lld records with the key \"unknown\" (a delete whose key the WAL did not carry): "
			   "Kafka cannot hold the right state for those rows\n", (long long) res->unknown_keys);
	if (res->truncate_uncertain)
		printf("  note: only truncates after the comparison point survive in the topic: keys that look extra "
			   "are counted as unverifiable\n");
	if (res->gone_uncertain)
		printf("  note: compaction may have removed every record of a key deleted after the comparison point "
			   "(delete.retention.ms passed since, or the configs could not be read): a row without any record "
			   "is counted as unverifiable\n");
	json_array_foreach(res->examples, i, ex)
	{
		char	   *key = json_dumps(json_object_get(ex, "key"), JSON_COMPACT | JSON_ENCODE_ANY);

		printf("  %s %s\n", json_string_value(json_object_get(ex, "kind")), key ? key : "?");
		free(key);
		print_value("table:", json_object_get(ex, "table_row"));
		print_value("kafka:", json_object_get(ex, "kafka"));
	}
}

/* ---- main --------------------------------------------------------------------------- */

static rd_kafka_t *
open_consumer(Verify *v)
{
	char		err[512];
	rd_kafka_conf_t *conf = kafka_base_conf(&v->r, false, err, sizeof(err));
	rd_kafka_t *rk;

	if (conf == NULL)
	{
		cannot(v, "%s", err);
		return NULL;
	}
	/* committed Kafka transactions only; a bounded prefetch queue (memory) */
	if (rd_kafka_conf_set(conf, "isolation.level", "read_committed", err, sizeof(err)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "enable.partition.eof", "true", err, sizeof(err)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "queued.max.messages.kbytes", "16384", err, sizeof(err)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "fetch.message.max.bytes", "1048576", err, sizeof(err)) != RD_KAFKA_CONF_OK ||
		rd_kafka_conf_set(conf, "fetch.wait.max.ms", "100", err, sizeof(err)) != RD_KAFKA_CONF_OK)
	{
		rd_kafka_conf_destroy(conf);
		cannot(v, "%s", err);
		return NULL;
	}
	rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
	if (rk == NULL)
	{
		rd_kafka_conf_destroy(conf);
		cannot(v, "could not create a Kafka consumer: %s", err);
	}
	return rk;
}

/* Verify every table; fills out (the JSON report).  0, or -1 (reason recorded). */
static int
verify_all(Verify *v, json_t *out, bool *equal)
{
	VTable	   *tables = NULL;
	int			ntables = 0,
				rc = -1;
	json_t	   *arr = json_array();

	*equal = true;
	json_object_set_new(out, "tables", arr);
	v->rk = open_consumer(v);
	if (v->rk == NULL)
		goto out;
	v->snap = pg_connect(&v->r, false);
	v->aux = v->snap ? pg_connect(&v->r, false) : NULL;
	if (v->aux == NULL)
	{
		cannot(v, "could not connect to the database (see the error above)");
		goto out;
	}
	{
		uint64_t	c;
		bool		a;

		/* the relay's slot first: without it there is nothing to wait for */
		if (relay_slot(v, &c, &a) != 0)
			goto out;
	}
	if (take_point(v, &tables, &ntables) != 0)
		goto out;
	json_object_set_new(out, "lsn", json_string(v->point_str));
	if (wait_confirmed(v) != 0)
		goto out;
	rlog(v->r.v, LOG_INFO, "verify: relay slot \"%s\" confirmed %s, at or past %s: comparing %d table%s",
		 v->cfg.slot, v->confirmed_str, v->point_str, ntables, ntables == 1 ? "" : "s");
	if (db_open(v) != 0)
		goto out;
	if (!v->json)
		printf("comparing %d table%s with topics %s.* at LSN %s\n", ntables, ntables == 1 ? "" : "s",
			   v->cfg.topic_prefix, v->point_str);
	for (int i = 0; i < ntables; i++)
	{
		VTable	   *t = &tables[i];
		VResult		res;

		memset(&res, 0, sizeof(res));
		res.examples = json_array();
		if (db_reset(v) != 0 || read_topic(v, t, &res) != 0 || read_table(v, t, &res) != 0 ||
			find_extra(v, &res) != 0)
		{
			json_decref(res.examples);
			goto out;
		}
		if (res.missing + res.extra + res.different > 0)
			*equal = false;
		json_array_append_new(arr, result_json(t, &res));
		if (!v->json)
		{
			print_table(t, &res);
			fflush(stdout);
		}
		json_decref(res.examples);
	}
	rc = 0;
out:
	db_finalize(v);
	for (int i = 0; i < ntables; i++)
	{
		free(tables[i].relid);
		free(tables[i].regclass);
		free(tables[i].display);
	}
	free(tables);
	return rc;
}

int
verify_main(int argc, char **argv, volatile sig_atomic_t *stop, volatile sig_atomic_t *hup)
{
	Verify		v;
	int			rc;
	json_t	   *out;
	bool		equal = false;

	memset(&v, 0, sizeof(v));
	rc = parse_options(&v, argc, argv);
	if (rc != 0)
	{
		config_free(&v.cfg);
		return rc == 1 ? VERIFY_OK : VERIFY_USAGE;
	}
	json_object_seed(0);
	v.r.cfg = &v.cfg;
	v.r.v = v.cfg.verbosity;
	v.r.stop = stop;
	v.r.hup = hup;
	v.r.brokers = v.cfg.brokers;
	v.progress = isatty(STDERR_FILENO);

	out = json_object();
	json_object_set_new(out, "lsn", json_null());
	rc = verify_all(&v, out, &equal);
	if (rc != 0)
	{
		json_object_set_new(out, "ok", json_false());
		json_object_set_new(out, "error", json_string(v.reason));
		fprintf(stderr, "cdc-relay verify: could not verify: %s\n", v.reason);
		rc = VERIFY_CANNOT;
	}
	else
	{
		json_object_set_new(out, "ok", json_boolean(equal));
		rc = equal ? VERIFY_OK : VERIFY_DIFFERENT;
		if (!v.json)
			printf("%s\n", equal ? "OK: every table equals its topic" :
				   "DIFFERENT: the topics do not equal the tables (see above)");
	}
	if (v.json)
	{
		json_dumpf(out, stdout, JSON_COMPACT);
		fputs("\n", stdout);
	}
	fflush(stdout);
	json_decref(out);
	if (v.db)
		sqlite3_close(v.db);
	if (v.dbpath[0])
		unlink(v.dbpath);
	if (v.rk)
		rd_kafka_destroy(v.rk);
	PQfinish(v.snap);
	PQfinish(v.aux);
	config_free(&v.cfg);
	return rc;
}
