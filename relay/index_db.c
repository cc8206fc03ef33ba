/*
 * index_db.c: cdc-index's SQLite database (see index.h and the README's
 * "cdc-index" section for the schema).
 *
 * Every value of a Kafka message is read with SQLite's own JSON functions, so
 * a row is stored as the relay wrote it: numbers keep their digits (no
 * round trip through a C double), and the FTS5 columns get the column's text.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index.h"
#include "log.h"

char *
idx_quote(const char *name)
{
	char	   *q = sqlite3_mprintf("\"%w\"", name);

	if (q == NULL)
		relay_out_of_memory();
	return q;
}

sqlite3 *
idx_open(const char *path, bool readonly, char *err, size_t errlen)
{
	sqlite3    *db = NULL;
	int			flags = readonly ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);

	if (sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK)
	{
		snprintf(err, errlen, "could not open database \"%s\": %s", path,
				 db ? sqlite3_errmsg(db) : "out of memory");
		sqlite3_close(db);
		return NULL;
	}
	sqlite3_busy_timeout(db, 10000);
	if (!readonly)
	{
		/*
		 * WAL: search reads while run writes.  synchronous=NORMAL: a commit
		 * survives the process being killed (kill -9); after a power loss the
		 * last commits may be gone, but changes and offsets together, so the
		 * index is still consistent and catches up from Kafka.
		 */
		if (idx_exec(db, "PRAGMA journal_mode=WAL", err, errlen) != 0 ||
			idx_exec(db, "PRAGMA synchronous=NORMAL", err, errlen) != 0)
		{
			sqlite3_close(db);
			return NULL;
		}
	}
	return db;
}

int
idx_exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
	char	   *msg = NULL;

	if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
	{
		snprintf(err, errlen, "SQLite: %s (in: %.200s)", msg ? msg : sqlite3_errmsg(db), sql);
		sqlite3_free(msg);
		return -1;
	}
	return 0;
}

/* Prepare sql (an sqlite3_mprintf'd string, freed here) into *st. 0 or -1. */
static int
prep(sqlite3 *db, char *sql, sqlite3_stmt **st, char *err, size_t errlen)
{
	int			rc;

	if (sql == NULL)
		relay_out_of_memory();
	rc = sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
	if (rc != SQLITE_OK)
		snprintf(err, errlen, "SQLite: %s (in: %.200s)", sqlite3_errmsg(db), sql);
	sqlite3_free(sql);
	return rc == SQLITE_OK ? 0 : -1;
}

/* ", <prefix>"col"<suffix>" for each column (sqlite3_malloc'd). */
static char *
col_list(const IndexTable *t, const char *prefix, const char *suffix)
{
	char	   *s = sqlite3_mprintf("%s", "");

	for (int i = 0; i < t->ncols && s != NULL; i++)
	{
		char	   *n = sqlite3_mprintf("%s, %s\"%w\"%s", s, prefix, t->cols[i], suffix);

		sqlite3_free(s);
		s = n;
	}
	if (s == NULL)
		relay_out_of_memory();
	return s;
}

/* ", ?2 ->> '$."col"'" for each column: the column's value in the row JSON ?2. */
static char *
col_values(const IndexTable *t, const char *row)
{
	char	   *s = sqlite3_mprintf("%s", "");

	for (int i = 0; i < t->ncols && s != NULL; i++)
	{
		char	   *n = sqlite3_mprintf("%s, %s ->> '$.\"%q\"'", s, row, t->cols[i]);

		sqlite3_free(s);
		s = n;
	}
	if (s == NULL)
		relay_out_of_memory();
	return s;
}

/* Create t's FTS5 table and fill it from its rows. */
static int
build_fts(sqlite3 *db, const IndexTable *t, char *err, size_t errlen)
{
	char	   *cols = col_list(t, "", ""),
			   *vals = col_values(t, "row"),
			   *sql;
	int			rc;

	sql = sqlite3_mprintf("CREATE VIRTUAL TABLE \"%w\" USING fts5(cdc_key UNINDEXED%s);"
						  "INSERT INTO \"%w\" (rowid, cdc_key%s) SELECT rowid, key%s FROM \"%w\";"
						  "UPDATE \"%w\" SET doc = rowid;",
						  t->fts_name, cols, t->fts_name, cols, vals, t->rows_name, t->rows_name);
	if (sql == NULL)
		relay_out_of_memory();
	rc = idx_exec(db, sql, err, errlen);
	sqlite3_free(sql);
	sqlite3_free(cols);
	sqlite3_free(vals);
	return rc;
}

/* Create or check one table's part of the database (inside setup's transaction). */
static int
setup_table(sqlite3 *db, IndexTable *t, char *err, size_t errlen)
{
	sqlite3_stmt *st = NULL;
	char	   *sql;
	int			rc = -1,
				step;
	bool		exists = false;
	char	   *old_cols = NULL,
			   *old_fts = NULL;

	if (prep(db, sqlite3_mprintf("SELECT topic, columns, fts_table, truncate_lsn, truncate_seq "
								 "FROM cdc_index_tables WHERE source = ?1"), &st, err, errlen) != 0)
		return -1;
	sqlite3_bind_text(st, 1, t->source, -1, SQLITE_STATIC);
	step = sqlite3_step(st);
	if (step == SQLITE_ROW)
	{
		const char *topic = (const char *) sqlite3_column_text(st, 0);

		exists = true;
		if (strcmp(topic, t->topic) != 0)
		{
			snprintf(err, errlen, "the index holds table %s from topic \"%s\", not \"%s\" (another --topic-prefix?): "
					 "use another --db file for other topics", t->source, topic, t->topic);
			goto out;
		}
		old_cols = strdup((const char *) sqlite3_column_text(st, 1));
		old_fts = strdup((const char *) sqlite3_column_text(st, 2));
		if (old_cols == NULL || old_fts == NULL)
			relay_out_of_memory();
		t->trunc_lsn = (uint64_t) sqlite3_column_int64(st, 3);
		t->trunc_seq = (uint32_t) sqlite3_column_int64(st, 4);
	}
	else if (step != SQLITE_DONE)
	{
		snprintf(err, errlen, "SQLite: %s", sqlite3_errmsg(db));
		goto out;
	}
	sqlite3_finalize(st);
	st = NULL;

	sql = sqlite3_mprintf("CREATE TABLE IF NOT EXISTS \"%w\" (key TEXT PRIMARY KEY, row TEXT NOT NULL, "
						  "lsn INTEGER NOT NULL, seq INTEGER NOT NULL, doc INTEGER)", t->rows_name);
	if (sql == NULL)
		relay_out_of_memory();
	rc = idx_exec(db, sql, err, errlen);
	sqlite3_free(sql);
	if (rc != 0)
		goto out;
	rc = -1;
	if (!exists)
	{
		if (prep(db, sqlite3_mprintf("INSERT INTO cdc_index_tables (source, topic, rows_table, fts_table, columns) "
									 "VALUES (?1, ?2, ?3, ?4, ?5)"), &st, err, errlen) != 0)
			goto out;
		sqlite3_bind_text(st, 1, t->source, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, t->topic, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, t->rows_name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 4, t->fts_name, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 5, t->cols_text, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
		{
			snprintf(err, errlen, "could not register table %s: %s (is another source using the name?)",
					 t->source, sqlite3_errmsg(db));
			goto out;
		}
		if (t->ncols > 0 && build_fts(db, t, err, errlen) != 0)
			goto out;
	}
	else if (strcmp(old_cols, t->cols_text) != 0)
	{
		/* other text columns than last time: a new FTS5 index from the rows */
		rlog(LOG_INFO, LOG_INFO, "cdc-index: text columns of %s changed from \"%s\" to \"%s\": rebuilding its search index",
			 t->source, old_cols, t->cols_text);
		if (old_fts[0])
			sql = sqlite3_mprintf("DROP TABLE IF EXISTS \"%w\"; UPDATE \"%w\" SET doc = NULL;",
								  old_fts, t->rows_name);
		else
			sql = sqlite3_mprintf("UPDATE \"%w\" SET doc = NULL;", t->rows_name);
		if (sql == NULL)
			relay_out_of_memory();
		rc = idx_exec(db, sql, err, errlen);
		sqlite3_free(sql);
		if (rc != 0)
			goto out;
		rc = -1;
		if (t->ncols > 0 && build_fts(db, t, err, errlen) != 0)
			goto out;
		if (prep(db, sqlite3_mprintf("UPDATE cdc_index_tables SET columns = ?2, fts_table = ?3 WHERE source = ?1"),
				 &st, err, errlen) != 0)
			goto out;
		sqlite3_bind_text(st, 1, t->source, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, t->cols_text, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 3, t->fts_name, -1, SQLITE_STATIC);
		if (sqlite3_step(st) != SQLITE_DONE)
		{
			snprintf(err, errlen, "SQLite: %s", sqlite3_errmsg(db));
			goto out;
		}
	}
	rc = 0;
out:
	sqlite3_finalize(st);
	free(old_cols);
	free(old_fts);
	return rc;
}

/* Prepare t's statements. */
static int
prepare_table(sqlite3 *db, IndexTable *t, char *err, size_t errlen)
{
	const char *r = t->rows_name,
			   *f = t->fts_name;

	if (prep(db, sqlite3_mprintf("SELECT row, doc FROM \"%w\" WHERE key = ?1", r), &t->sel_row, err, errlen) ||
		prep(db, sqlite3_mprintf("INSERT INTO \"%w\" (key, row, lsn, seq, doc) VALUES (?1, ?2, ?3, ?4, ?5) "
								 "ON CONFLICT (key) DO UPDATE SET row = excluded.row, lsn = excluded.lsn, "
								 "seq = excluded.seq, doc = excluded.doc", r), &t->upsert, err, errlen) ||
		prep(db, sqlite3_mprintf("DELETE FROM \"%w\" WHERE key = ?1 RETURNING doc", r), &t->del_row, err, errlen) ||
		prep(db, sqlite3_mprintf("DELETE FROM \"%w\" WHERE lsn < ?1 OR (lsn = ?1 AND seq < ?2)", r),
			 &t->trunc_rows, err, errlen) ||
		prep(db, sqlite3_mprintf("UPDATE cdc_index_tables SET truncate_lsn = ?2, truncate_seq = ?3 WHERE source = ?1"),
			 &t->trunc_meta, err, errlen) ||
		prep(db, sqlite3_mprintf("SELECT ?1 ->> '$.op', ?1 -> '$.after', json_type(?1, '$.after'), "
								 "?1 ->> '$.commit_lsn', ?1 ->> '$.seq', ?1 ->> '$.lsn', "
								 "json_type(?1, '$.unchanged_toast') WHERE json_valid(?1)"),
			 &t->decode, err, errlen) ||
		prep(db, sqlite3_mprintf("SELECT value FROM json_each(?1, '$.unchanged_toast') WHERE type = 'text'"),
			 &t->toast_cols, err, errlen) ||
		prep(db, sqlite3_mprintf("SELECT CASE WHEN json_type(?3, ?2) IS NULL THEN ?1 "
								 "ELSE json_set(?1, ?2, ?3 -> ?2) END"), &t->toast_set, err, errlen))
		return -1;
	if (t->ncols > 0)
	{
		char	   *cols = col_list(t, "", ""),
				   *vals = col_values(t, "?2");
		int			rc;

		rc = prep(db, sqlite3_mprintf("INSERT INTO \"%w\" (cdc_key%s) VALUES (?1%s)", f, cols, vals),
				  &t->fts_ins, err, errlen) ||
			prep(db, sqlite3_mprintf("DELETE FROM \"%w\" WHERE rowid = ?1", f), &t->fts_del, err, errlen) ||
			prep(db, sqlite3_mprintf("DELETE FROM \"%w\" WHERE rowid IN (SELECT doc FROM \"%w\" "
									 "WHERE lsn < ?1 OR (lsn = ?1 AND seq < ?2))", f, r),
				 &t->trunc_fts, err, errlen);
		sqlite3_free(cols);
		sqlite3_free(vals);
		if (rc)
			return -1;
	}
	return 0;
}

int
idx_setup(sqlite3 *db, IndexTable *tables, int ntables, char *err, size_t errlen)
{
	if (idx_exec(db, "BEGIN IMMEDIATE;"
				 "CREATE TABLE IF NOT EXISTS cdc_index_tables (source TEXT PRIMARY KEY, topic TEXT NOT NULL, "
				 "rows_table TEXT NOT NULL UNIQUE, fts_table TEXT NOT NULL, columns TEXT NOT NULL, "
				 "truncate_lsn INTEGER NOT NULL DEFAULT 0, truncate_seq INTEGER NOT NULL DEFAULT 0);"
				 "CREATE TABLE IF NOT EXISTS cdc_index_offsets (topic TEXT NOT NULL, partition INTEGER NOT NULL, "
				 "next_offset INTEGER NOT NULL, PRIMARY KEY (topic, partition));", err, errlen) != 0)
		return -1;
	for (int i = 0; i < ntables; i++)
	{
		if (setup_table(db, &tables[i], err, errlen) != 0)
		{
			char		ignore[256];

			idx_exec(db, "ROLLBACK", ignore, sizeof(ignore));
			return -1;
		}
	}
	if (idx_exec(db, "COMMIT", err, errlen) != 0)
		return -1;
	for (int i = 0; i < ntables; i++)
		if (prepare_table(db, &tables[i], err, errlen) != 0)
			return -1;
	return 0;
}

void
idx_finish(IndexTable *tables, int ntables)
{
	for (int i = 0; i < ntables; i++)
	{
		IndexTable *t = &tables[i];
		sqlite3_stmt *all[] = {t->sel_row, t->upsert, t->del_row, t->fts_ins, t->fts_del, t->trunc_fts,
		t->trunc_rows, t->trunc_meta, t->decode, t->toast_cols, t->toast_set};

		for (size_t j = 0; j < sizeof(all) / sizeof(all[0]); j++)
			sqlite3_finalize(all[j]);
	}
}

int64_t
idx_stored_offset(sqlite3 *db, const char *topic, int32_t partition)
{
	sqlite3_stmt *st;
	int64_t		off = -2;
	int			rc;

	if (sqlite3_prepare_v2(db, "SELECT next_offset FROM cdc_index_offsets WHERE topic = ?1 AND partition = ?2",
						   -1, &st, NULL) != SQLITE_OK)
		return -2;
	sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, partition);
	rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		off = sqlite3_column_int64(st, 0);
	else if (rc == SQLITE_DONE)
		off = -1;
	sqlite3_finalize(st);
	return off;
}

int
idx_store_offset(sqlite3 *db, const char *topic, int32_t partition, int64_t next)
{
	sqlite3_stmt *st;
	int			rc;

	if (sqlite3_prepare_v2(db, "INSERT INTO cdc_index_offsets (topic, partition, next_offset) VALUES (?1, ?2, ?3) "
						   "ON CONFLICT (topic, partition) DO UPDATE SET next_offset = excluded.next_offset",
						   -1, &st, NULL) != SQLITE_OK)
		return -1;
	sqlite3_bind_text(st, 1, topic, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 2, partition);
	sqlite3_bind_int64(st, 3, next);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 : -1;
}

/* "X/Y" (hex) -> LSN; false when malformed. */
static bool
parse_lsn(const char *s, uint64_t *lsn)
{
	unsigned int hi,
				lo;
	int			n = 0;

	if (s == NULL || sscanf(s, "%X/%X%n", &hi, &lo, &n) != 2 || s[n] != '\0')
		return false;
	*lsn = ((uint64_t) hi << 32) | lo;
	return true;
}

/* Step a statement that returns nothing; reset it. 0 or -2 (err filled). */
static int
step_done(sqlite3_stmt *st, char *err, size_t errlen)
{
	int			rc = sqlite3_step(st);

	while (rc == SQLITE_ROW)
		rc = sqlite3_step(st);
	if (rc != SQLITE_DONE)
		snprintf(err, errlen, "SQLite: %s", sqlite3_errmsg(sqlite3_db_handle(st)));
	sqlite3_reset(st);
	sqlite3_clear_bindings(st);
	return rc == SQLITE_DONE ? 0 : -2;
}

/* Delete key's row and its FTS5 entry. */
static int
delete_key(IndexTable *t, const char *key, size_t keylen, char *err, size_t errlen)
{
	sqlite3_int64 doc = 0;
	bool		has_doc = false;
	int			rc;

	sqlite3_bind_text(t->del_row, 1, key, (int) keylen, SQLITE_STATIC);
	rc = sqlite3_step(t->del_row);
	if (rc == SQLITE_ROW && sqlite3_column_type(t->del_row, 0) != SQLITE_NULL)
	{
		doc = sqlite3_column_int64(t->del_row, 0);
		has_doc = true;
	}
	if (step_done(t->del_row, err, errlen) != 0)
		return -2;
	if (has_doc && t->fts_del)
	{
		sqlite3_bind_int64(t->fts_del, 1, doc);
		return step_done(t->fts_del, err, errlen);
	}
	return 0;
}

/*
 * The row to store for an update that left columns out (unchanged_toast):
 * after with those columns taken from the old row.  malloc'd.
 */
static char *
merge_toast(IndexTable *t, const char *value, size_t vlen, const char *after, const char *old)
{
	char	   *row = strdup(after);

	if (row == NULL)
		relay_out_of_memory();
	if (old == NULL)
		return row;
	sqlite3_bind_text(t->toast_cols, 1, value, (int) vlen, SQLITE_STATIC);
	while (sqlite3_step(t->toast_cols) == SQLITE_ROW)
	{
		char	   *path = sqlite3_mprintf("$.\"%s\"", (const char *) sqlite3_column_text(t->toast_cols, 0));

		if (path == NULL)
			relay_out_of_memory();
		sqlite3_bind_text(t->toast_set, 1, row, -1, SQLITE_TRANSIENT);
		sqlite3_bind_text(t->toast_set, 2, path, -1, SQLITE_STATIC);
		sqlite3_bind_text(t->toast_set, 3, old, -1, SQLITE_STATIC);
		if (sqlite3_step(t->toast_set) == SQLITE_ROW && sqlite3_column_type(t->toast_set, 0) != SQLITE_NULL)
		{
			free(row);
			row = strdup((const char *) sqlite3_column_text(t->toast_set, 0));
			if (row == NULL)
				relay_out_of_memory();
		}
		sqlite3_reset(t->toast_set);
		sqlite3_clear_bindings(t->toast_set);
		sqlite3_free(path);
	}
	sqlite3_reset(t->toast_cols);
	sqlite3_clear_bindings(t->toast_cols);
	return row;
}

/* Insert or replace key's row (and its FTS5 entry). */
static int
upsert_key(IndexTable *t, const char *key, size_t keylen, const char *value, size_t vlen,
		   const char *after, bool toast, IndexPos pos, char *err, size_t errlen)
{
	char	   *old = NULL,
			   *row;
	sqlite3_int64 doc = 0;
	bool		has_doc = false;
	int			rc;

	sqlite3_bind_text(t->sel_row, 1, key, (int) keylen, SQLITE_STATIC);
	rc = sqlite3_step(t->sel_row);
	if (rc == SQLITE_ROW)
	{
		if (toast && (old = strdup((const char *) sqlite3_column_text(t->sel_row, 0))) == NULL)
			relay_out_of_memory();
		if (sqlite3_column_type(t->sel_row, 1) != SQLITE_NULL)
		{
			doc = sqlite3_column_int64(t->sel_row, 1);
			has_doc = true;
		}
	}
	sqlite3_reset(t->sel_row);
	sqlite3_clear_bindings(t->sel_row);
	if (rc != SQLITE_ROW && rc != SQLITE_DONE)
	{
		snprintf(err, errlen, "SQLite: %s", sqlite3_errmsg(sqlite3_db_handle(t->sel_row)));
		free(old);
		return -2;
	}
	row = toast ? merge_toast(t, value, vlen, after, old) : (char *) after;
	free(old);
	rc = 0;
	if (has_doc)
	{
		sqlite3_bind_int64(t->fts_del, 1, doc);
		rc = step_done(t->fts_del, err, errlen);
	}
	has_doc = false;
	if (rc == 0 && t->fts_ins)
	{
		sqlite3_bind_text(t->fts_ins, 1, key, (int) keylen, SQLITE_STATIC);
		sqlite3_bind_text(t->fts_ins, 2, row, -1, SQLITE_STATIC);
		rc = step_done(t->fts_ins, err, errlen);
		doc = sqlite3_last_insert_rowid(sqlite3_db_handle(t->fts_ins));
		has_doc = true;
	}
	if (rc == 0)
	{
		sqlite3_bind_text(t->upsert, 1, key, (int) keylen, SQLITE_STATIC);
		sqlite3_bind_text(t->upsert, 2, row, -1, SQLITE_STATIC);
		sqlite3_bind_int64(t->upsert, 3, (sqlite3_int64) pos.lsn);
		sqlite3_bind_int64(t->upsert, 4, pos.seq);
		if (has_doc)
			sqlite3_bind_int64(t->upsert, 5, doc);
		else
			sqlite3_bind_null(t->upsert, 5);
		rc = step_done(t->upsert, err, errlen);
	}
	if (row != after)
		free(row);
	return rc;
}

/* Delete every row older than the truncate at pos; remember pos. */
static int
truncate_table(IndexTable *t, IndexPos pos, char *err, size_t errlen)
{
	if (t->trunc_fts)
	{
		sqlite3_bind_int64(t->trunc_fts, 1, (sqlite3_int64) pos.lsn);
		sqlite3_bind_int64(t->trunc_fts, 2, pos.seq);
		if (step_done(t->trunc_fts, err, errlen) != 0)
			return -2;
	}
	sqlite3_bind_int64(t->trunc_rows, 1, (sqlite3_int64) pos.lsn);
	sqlite3_bind_int64(t->trunc_rows, 2, pos.seq);
	if (step_done(t->trunc_rows, err, errlen) != 0)
		return -2;
	if (pos.lsn > t->trunc_lsn || (pos.lsn == t->trunc_lsn && pos.seq > t->trunc_seq))
	{
		t->trunc_lsn = pos.lsn;
		t->trunc_seq = pos.seq;
		sqlite3_bind_text(t->trunc_meta, 1, t->source, -1, SQLITE_STATIC);
		sqlite3_bind_int64(t->trunc_meta, 2, (sqlite3_int64) pos.lsn);
		sqlite3_bind_int64(t->trunc_meta, 3, pos.seq);
		return step_done(t->trunc_meta, err, errlen);
	}
	return 0;
}

int
idx_apply(sqlite3 *db, IndexTable *t, const char *key, size_t keylen,
		  const char *value, size_t vlen, IndexPos pos, char *err, size_t errlen)
{
	sqlite3_stmt *d = t->decode;
	const char *op,
			   *after,
			   *after_type;
	bool		toast;
	int			rc;

	(void) db;
	if (key == NULL)
	{
		snprintf(err, errlen, "message without a key: the table has no primary key (or replica identity index), "
				 "so cdc-index cannot keep one row per key; give the table a primary key, or do not index it");
		return -1;
	}
	if (keylen == 9 && memcmp(key, "\"unknown\"", 9) == 0)
	{
		snprintf(err, errlen, "message with the key \"unknown\": the WAL did not carry the row's key "
				 "(replica identity nothing?); set REPLICA IDENTITY DEFAULT (with a primary key) on the table");
		return -1;
	}
	if (value == NULL)
		return delete_key(t, key, keylen, err, errlen);

	sqlite3_bind_text(d, 1, value, (int) vlen, SQLITE_STATIC);
	rc = sqlite3_step(d);
	if (rc != SQLITE_ROW)
	{
		if (rc == SQLITE_DONE)
			snprintf(err, errlen, "the value is not JSON");
		else
			snprintf(err, errlen, "the value could not be read: %s", sqlite3_errmsg(db));
		sqlite3_reset(d);
		sqlite3_clear_bindings(d);
		return rc == SQLITE_DONE ? -1 : -2;
	}
	op = (const char *) sqlite3_column_text(d, 0);
	after = (const char *) sqlite3_column_text(d, 1);
	after_type = (const char *) sqlite3_column_text(d, 2);
	toast = sqlite3_column_type(d, 6) != SQLITE_NULL;
	if (!pos.known)
	{
		/* no headers: the value's commit_lsn and seq (a snapshot row: its lsn) */
		const char *cl = (const char *) sqlite3_column_text(d, 3);

		if (parse_lsn(cl, &pos.lsn))
		{
			pos.seq = (uint32_t) sqlite3_column_int64(d, 4);
			pos.known = true;
		}
		else if (parse_lsn((const char *) sqlite3_column_text(d, 5), &pos.lsn))
		{
			pos.seq = 0;
			pos.known = true;
		}
	}
	rc = 0;
	if (op == NULL)
	{
		snprintf(err, errlen, "the value is not a cdc_relay event (no \"op\")");
		rc = -1;
	}
	else if (strcmp(op, "c") == 0 || strcmp(op, "u") == 0 || strcmp(op, "r") == 0)
	{
		if (after_type == NULL || strcmp(after_type, "object") != 0)
		{
			snprintf(err, errlen, "an \"%s\" event without an \"after\" object", op);
			rc = -1;
		}
		else if (!pos.known)
		{
			snprintf(err, errlen, "an \"%s\" event without a position (no commit_lsn header or field)", op);
			rc = -1;
		}
		else if (pos.lsn < t->trunc_lsn || (pos.lsn == t->trunc_lsn && pos.seq <= t->trunc_seq))
			rc = 1;				/* a truncate later in the WAL was applied already */
		else
		{
			char	   *a = strdup(after);

			if (a == NULL)
				relay_out_of_memory();
			sqlite3_reset(d);	/* after points into d's row: copied */
			rc = upsert_key(t, key, keylen, value, vlen, a, toast, pos, err, errlen);
			free(a);
		}
	}
	else if (strcmp(op, "d") == 0)
	{
		sqlite3_reset(d);
		rc = delete_key(t, key, keylen, err, errlen);
	}
	else if (strcmp(op, "t") == 0)
	{
		if (!pos.known)
		{
			snprintf(err, errlen, "a truncate without a position (no commit_lsn header or field)");
			rc = -1;
		}
		else
		{
			sqlite3_reset(d);
			rc = truncate_table(t, pos, err, errlen);
		}
	}
	else
	{
		snprintf(err, errlen, "an event with op \"%s\", which a table topic does not carry", op);
		rc = -1;
	}
	sqlite3_reset(d);
	sqlite3_clear_bindings(d);
	return rc;
}

static int
hit_cmp(const void *a, const void *b)
{
	double		x = ((const IndexHit *) a)->rank,
				y = ((const IndexHit *) b)->rank;

	return x < y ? -1 : x > y ? 1 : 0;
}

int
idx_search(sqlite3 *db, const char *table, const char *query, int limit,
		   IndexHit **hits_out, char *err, size_t errlen)
{
	sqlite3_stmt *tabs = NULL;
	IndexHit   *hits = NULL;
	int			n = 0,
				cap = 0,
				ntables = 0,
				rc;

	*hits_out = NULL;
	if (prep(db, sqlite3_mprintf("SELECT source, fts_table FROM cdc_index_tables "
								 "WHERE ?1 IS NULL OR source = ?1 ORDER BY source"), &tabs, err, errlen) != 0)
		return -1;
	sqlite3_bind_text(tabs, 1, table, -1, SQLITE_STATIC);
	while ((rc = sqlite3_step(tabs)) == SQLITE_ROW)
	{
		const char *source = (const char *) sqlite3_column_text(tabs, 0),
				   *fts = (const char *) sqlite3_column_text(tabs, 1);
		sqlite3_stmt *st = NULL;

		ntables++;
		if (fts[0] == '\0')
			continue;			/* no text columns */
		if (prep(db, sqlite3_mprintf("SELECT cdc_key, bm25(\"%w\"), snippet(\"%w\", -1, '[', ']', '...', 12) "
									 "FROM \"%w\" WHERE \"%w\" MATCH ?1 ORDER BY bm25(\"%w\") LIMIT ?2",
									 fts, fts, fts, fts, fts), &st, err, errlen) != 0)
			goto fail;
		sqlite3_bind_text(st, 1, query, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 2, limit);
		while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		{
			const char *key = (const char *) sqlite3_column_text(st, 0);
			const char *snippet = (const char *) sqlite3_column_text(st, 2);

			if (n == cap)
			{
				cap = cap ? cap * 2 : 16;
				hits = realloc(hits, cap * sizeof(IndexHit));
				if (hits == NULL)
					relay_out_of_memory();
			}
			hits[n].table = relay_strdup(source);
			hits[n].key = relay_strdup(key ? key : "");
			hits[n].rank = sqlite3_column_double(st, 1);
			hits[n].snippet = relay_strdup(snippet ? snippet : "");
			n++;
		}
		if (rc != SQLITE_DONE)
		{
			snprintf(err, errlen, "bad query \"%s\": %s", query, sqlite3_errmsg(db));
			sqlite3_finalize(st);
			goto fail;
		}
		sqlite3_finalize(st);
	}
	if (rc != SQLITE_DONE)
	{
		snprintf(err, errlen, "SQLite: %s", sqlite3_errmsg(db));
		goto fail;
	}
	if (table != NULL && ntables == 0)
	{
		snprintf(err, errlen, "the index has no table \"%s\" (tables are named schema.table)", table);
		goto fail;
	}
	sqlite3_finalize(tabs);
	if (n > 0)
		qsort(hits, n, sizeof(IndexHit), hit_cmp);
	if (n > limit)
	{
		for (int i = limit; i < n; i++)
		{
			free(hits[i].table);
			free(hits[i].key);
			free(hits[i].snippet);
		}
		n = limit;
	}
	*hits_out = hits;
	return n;
fail:
	sqlite3_finalize(tabs);
	idx_free_hits(hits, n);
	return -1;
}

void
idx_free_hits(IndexHit *hits, int n)
{
	for (int i = 0; i < n; i++)
	{
		free(hits[i].table);
		free(hits[i].key);
		free(hits[i].snippet);
	}
	free(hits);
}

json_t *
idx_hits_json(const char *query, const IndexHit *hits, int n)
{
	json_t	   *results = json_array(),
			   *obj;

	if (results == NULL)
		relay_out_of_memory();
	for (int i = 0; i < n; i++)
	{
		json_t	   *key = json_loads(hits[i].key, JSON_DECODE_ANY, NULL);

		if (key == NULL)
			key = json_string(hits[i].key);
		if (json_array_append_new(results,
								  json_pack("{s:s, s:o, s:f, s:s}", "table", hits[i].table, "key", key,
											"rank", hits[i].rank, "snippet", hits[i].snippet)) != 0)
			relay_out_of_memory();
	}
	obj = json_pack("{s:s, s:o}", "query", query, "results", results);
	if (obj == NULL)
		relay_out_of_memory();
	return obj;
}
