-- options: every plugin option of event format v1 (README.md, "Plugin options")
-- with a valid value and its effect (include-xids, include-lsn,
-- include-timestamp, skip-empty-xacts, numeric-as, partition-root,
-- format-version, message-prefixes, actions, include-tables, exclude-tables,
-- publication), and every kind of invalid value with its error message,
-- DETAIL, HINT and SQLSTATE.  An option error must not consume changes.
\set VERBOSITY default

CREATE TABLE opt_t (id int PRIMARY KEY, n numeric, v text);
CREATE TABLE opt_other (id int PRIMARY KEY);
CREATE TABLE opt_parent (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE opt_leaf PARTITION OF opt_parent FOR VALUES FROM (0) TO (100);
CREATE PUBLICATION opt_pub FOR TABLE opt_other;
-- temporary tables are not decoded: markers taken around transactions
CREATE TEMP TABLE opt_mark (what text PRIMARY KEY, at timestamptz, lsn pg_lsn, xid text);

SELECT 'init' FROM pg_create_logical_replication_slot('options_slot', 'cdc_relay');

-- Every line of every peek below must be valid JSON.
CREATE FUNCTION opt_all_json(VARIADIC opts text[]) RETURNS bigint
LANGUAGE sql AS $$
  SELECT count(data::json) FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, VARIADIC opts)
$$;

--
-- include-xids, include-lsn, include-timestamp (default true)
--
INSERT INTO opt_mark VALUES ('before', clock_timestamp(), pg_current_wal_lsn(), NULL);
BEGIN;
INSERT INTO opt_t VALUES (1, 1.50, 'one');
INSERT INTO opt_t VALUES (2, -0.001, 'two'), (3, 'NaN', 'three'), (4, 'Infinity', 'four'),
                         (5, '-Infinity', 'five'), (6, 12345678901234567890.123456789, 'six');
INSERT INTO opt_mark VALUES ('xid', NULL, NULL, pg_current_xact_id()::text);
COMMIT;
INSERT INTO opt_mark VALUES ('after', clock_timestamp(), pg_current_wal_lsn(), NULL);

-- defaults: xid, lsn, commit_lsn, end_lsn and ts present where the spec puts them
SELECT d->>'op' AS op, d ? 'xid' AS xid, d ? 'lsn' AS lsn, d ? 'commit_lsn' AS commit_lsn,
       d ? 'end_lsn' AS end_lsn, d ? 'ts' AS ts, d->'seq' AS seq, d->'events' AS events
  FROM (SELECT data::jsonb AS d FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL)) s;
-- the same with every one of them set true explicitly
SELECT d->>'op' AS op, d ? 'xid' AS xid, d ? 'lsn' AS lsn, d ? 'commit_lsn' AS commit_lsn,
       d ? 'end_lsn' AS end_lsn, d ? 'ts' AS ts
  FROM (SELECT data::jsonb AS d FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
        'include-xids', 'true', 'include-lsn', 'on', 'include-timestamp', '1')) s
 WHERE d->>'op' IN ('begin', 'commit') OR d->'seq' = '1';

-- the values are right: the transaction's xid, one commit_lsn, change lsn <
-- commit_lsn < end_lsn, all within the WAL written meanwhile; one ts, the
-- commit time, in UTC ISO 8601 between the markers
WITH e AS (SELECT data::jsonb AS d FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL)),
     b AS (SELECT * FROM opt_mark WHERE what = 'before'),
     a AS (SELECT * FROM opt_mark WHERE what = 'after')
SELECT count(*) AS events,
       bool_and(d->>'xid' = (SELECT xid FROM opt_mark WHERE what = 'xid')) AS xid_is_txn_xid,
       bool_and(jsonb_typeof(d->'xid') = 'number') AS xid_is_number,
       count(DISTINCT d->>'commit_lsn') AS commit_lsns,
       bool_and(d->>'commit_lsn' ~ '^[0-9A-F]{1,8}/[0-9A-F]{1,8}$') AS lsn_syntax,
       bool_and((d->>'commit_lsn')::pg_lsn >= (SELECT lsn FROM b)
            AND (d->>'commit_lsn')::pg_lsn < (SELECT lsn FROM a)) AS commit_lsn_in_range,
       bool_and((d->>'lsn')::pg_lsn >= (SELECT lsn FROM b)
            AND (d->>'lsn')::pg_lsn < (d->>'commit_lsn')::pg_lsn)
         FILTER (WHERE d ? 'seq') AS lsn_before_commit,
       bool_and((d->>'end_lsn')::pg_lsn > (d->>'commit_lsn')::pg_lsn
            AND (d->>'end_lsn')::pg_lsn <= (SELECT lsn FROM a))
         FILTER (WHERE d->>'op' = 'commit') AS end_lsn_after_commit,
       count(DISTINCT d->>'ts') AS timestamps,
       bool_and(d->>'ts' ~ '^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,6})?\+00:00$') AS ts_syntax,
       bool_and((d->>'ts')::timestamptz BETWEEN (SELECT at FROM b) AND (SELECT at FROM a)) AS ts_in_range
  FROM e;

-- each of the three switched off alone removes exactly its own keys
SELECT d->>'op' AS op, d ? 'xid' AS xid, d ? 'lsn' AS lsn, d ? 'commit_lsn' AS commit_lsn,
       d ? 'end_lsn' AS end_lsn, d ? 'ts' AS ts
  FROM (SELECT data::jsonb AS d FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
        'include-xids', 'false')) s
 WHERE d->>'op' IN ('begin', 'commit') OR d->'seq' = '1';
SELECT d->>'op' AS op, d ? 'xid' AS xid, d ? 'lsn' AS lsn, d ? 'commit_lsn' AS commit_lsn,
       d ? 'end_lsn' AS end_lsn, d ? 'ts' AS ts
  FROM (SELECT data::jsonb AS d FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
        'include-lsn', 'off')) s
 WHERE d->>'op' IN ('begin', 'commit') OR d->'seq' = '1';
SELECT d->>'op' AS op, d ? 'xid' AS xid, d ? 'lsn' AS lsn, d ? 'commit_lsn' AS commit_lsn,
       d ? 'end_lsn' AS end_lsn, d ? 'ts' AS ts
  FROM (SELECT data::jsonb AS d FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
        'include-timestamp', '0')) s
 WHERE d->>'op' IN ('begin', 'commit') OR d->'seq' = '1';

--
-- numeric-as: string (default) or number; NaN and infinities stay strings
--
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0', 'numeric-as', 'number');
SELECT opt, d->'after'->>'id' AS id, jsonb_typeof(d->'after'->'n') AS type, d->'after'->'n' AS n
  FROM unnest(ARRAY['string', 'number']) AS opt,
       LATERAL (SELECT data::jsonb AS d FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
                'numeric-as', opt)) s
 WHERE d->>'op' = 'c'
 ORDER BY opt DESC, (d->'after'->>'id')::int;
-- numeric-as=number keeps every digit (compare as numeric, not float)
SELECT (data::jsonb->'after'->>'n')::numeric = 12345678901234567890.123456789 AS exact,
       data LIKE '%"n":12345678901234567890.123456789,%' AS verbatim
  FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'numeric-as', 'number')
 WHERE data::jsonb->'after'->>'id' = '6';

--
-- format-version: 1 is the only version and changes nothing
--
SELECT (SELECT array_agg(data) FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
          'format-version', '1', 'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0'))
     = (SELECT array_agg(data) FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
          'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0')) AS same_output;
SELECT opt_all_json('format-version', '1') AS valid_json_lines;
SELECT count(*) AS consumed FROM pg_logical_slot_get_changes('options_slot', NULL, NULL);

--
-- skip-empty-xacts (default true): a transaction without events (here only
-- DDL, or only changes that the options filter out) is not sent at all;
-- with false it is sent as begin + commit with "events":0
--
CREATE TABLE opt_empty (i int);
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0', 'skip-empty-xacts', 'true');
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0', 'skip-empty-xacts', 'false');
-- with the other keys on, the empty transaction's begin/commit are complete
SELECT d->>'op' AS op, d ? 'xid' AS xid, d ? 'commit_lsn' AS commit_lsn, d ? 'end_lsn' AS end_lsn,
       d ? 'ts' AS ts, d->'events' AS events
  FROM (SELECT data::jsonb AS d FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
        'skip-empty-xacts', 'false')) s;
SELECT count(*) AS consumed FROM pg_logical_slot_get_changes('options_slot', NULL, NULL);
INSERT INTO opt_t VALUES (7, 7, 'seven');
-- every change filtered out (actions): empty as well
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0', 'actions', 'delete');
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0', 'actions', 'delete',
    'skip-empty-xacts', 'false');
SELECT count(*) AS consumed FROM pg_logical_slot_get_changes('options_slot', NULL, NULL);

--
-- message-prefixes: only messages with one of these prefixes (exact match)
--
BEGIN;
SELECT 'msg' FROM pg_logical_emit_message(true, 'opt_a', 'kept');
SELECT 'msg' FROM pg_logical_emit_message(true, 'opt_b', 'dropped');
SELECT 'msg' FROM pg_logical_emit_message(true, 'opt_a_longer', 'dropped too');
COMMIT;
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0', 'message-prefixes', 'opt_a');
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
    'message-prefixes', 'opt_b, opt_a_longer');
-- no message wanted: the transaction is empty and skipped
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0', 'message-prefixes', 'opt_c');
SELECT count(*) AS consumed FROM pg_logical_slot_get_changes('options_slot', NULL, NULL);

--
-- partition-root (default false): events name the leaf, or with true the root
--
INSERT INTO opt_parent VALUES (1, 'p');
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0', 'partition-root', 'false');
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0', 'partition-root', 'true');
SELECT count(*) AS consumed FROM pg_logical_slot_get_changes('options_slot', NULL, NULL);

--
-- actions, include-tables, exclude-tables, publication (in depth in the
-- filters and publications tests): valid values and their effect
--
BEGIN;
INSERT INTO opt_t VALUES (8, 8, 'eight');
INSERT INTO opt_other VALUES (8);
UPDATE opt_t SET v = 'EIGHT' WHERE id = 8;
DELETE FROM opt_t WHERE id = 8;
DELETE FROM opt_other WHERE id = 8;
TRUNCATE opt_other;
COMMIT;
SELECT opts, string_agg(d->>'op' || coalesce(':' || coalesce(d->>'table', d->'tables'->0->>'table'), ''), ' ' ORDER BY n) AS events
  FROM (VALUES (1, ARRAY['include-xids', '0']),
               (2, ARRAY['actions', 'insert']),
               (3, ARRAY['actions', 'update,delete']),
               (4, ARRAY['actions', ' INSERT , "truncate" ']),
               (5, ARRAY['actions', 'insert,update,delete,truncate']),
               (6, ARRAY['include-tables', 'opt_other']),
               (7, ARRAY['include-tables', 'public.opt_t']),
               (8, ARRAY['exclude-tables', 'opt_t']),
               (9, ARRAY['include-tables', 'opt_*', 'exclude-tables', 'public.opt_other']),
               (10, ARRAY['publication', 'opt_pub']),
               (11, ARRAY['publication', 'opt_pub', 'actions', 'delete'])) AS o(i, opts),
       LATERAL (SELECT data::jsonb AS d, row_number() OVER () AS n
                  FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, VARIADIC opts)) s
 GROUP BY i, opts ORDER BY i;
SELECT count(*) AS consumed FROM pg_logical_slot_get_changes('options_slot', NULL, NULL);

--
-- errors: checked when decoding starts, whether or not there is anything to decode
--
INSERT INTO opt_t VALUES (9, 9, 'nine');
-- as a client sees them
SELECT data FROM pg_logical_slot_get_changes('options_slot', NULL, NULL, 'no-such-option', '1');
SELECT data FROM pg_logical_slot_get_changes('options_slot', NULL, NULL, 'include-xids', 'maybe');
SELECT data FROM pg_logical_slot_get_changes('options_slot', NULL, NULL, 'format-version', '2');
SELECT data FROM pg_logical_slot_get_changes('options_slot', NULL, NULL, 'include-tables', 'a.b.c');
-- option names are case sensitive
SELECT data FROM pg_logical_slot_get_changes('options_slot', NULL, NULL, 'Include-Xids', '0');
-- the SQL interface cannot pass a bare option name (a NULL value); that is
-- only possible with pg_recvlogical -o name, where it means true for booleans
SELECT data FROM pg_logical_slot_get_changes('options_slot', NULL, NULL, 'include-xids', NULL);
-- none of these errors consumed the pending transaction
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

-- every kind of bad value: message, DETAIL, HINT, and SQLSTATE (psql's
-- ERROR and LAST_ERROR_SQLSTATE variables after each statement)
\set SHOW_CONTEXT never
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'no-such-option', '1');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'include-xids', 'maybe');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'include-lsn', '');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'include-timestamp', 'yess');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'skip-empty-xacts', '2');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'partition-root', 'null');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'numeric-as', 'float');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'numeric-as', 'NUMBER');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'numeric-as', '');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'format-version', '2');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'format-version', '1.0');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'format-version', '');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'actions', '');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
-- whitespace only is as empty as '' (and must not silently mean "no actions")
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'actions', ' ');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'actions', 'insert,,delete');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'actions', 'insert,');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'actions', '"insert');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'actions', 'insert,upsert');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'actions', '"INSERT"');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'include-tables', '');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'include-tables', '"unterminated');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'include-tables', 'public."opt_t');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'include-tables', 'public.');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'include-tables', '.opt_t');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'include-tables', 'opt_t,,opt_other');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'include-tables', 'opt_t,');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'include-tables', 'a.b.c');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'include-tables', 'a..b');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'include-tables', 'My Schema.*');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'include-tables', '""');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'include-tables', 'public.""');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'exclude-tables', '');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'exclude-tables', 'x.y.z');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'exclude-tables', '"x');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'publication', '');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'publication', ' ');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'publication', 'opt_pub,,other');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'publication', '"opt_pub');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'message-prefixes', '');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'message-prefixes', 'a,,b');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL, 'message-prefixes', '"a');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
-- the first bad option is reported, even after good ones
SELECT data FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'numeric-as', 'number', 'actions', 'merge', 'bogus', 'x');
\echo error :ERROR sqlstate :LAST_ERROR_SQLSTATE
-- valid values give no error
SELECT count(*) >= 0 AS no_error FROM pg_logical_slot_peek_changes('options_slot', NULL, NULL,
    'include-xids', 'yes', 'include-lsn', 'no', 'include-timestamp', 'TRUE',
    'skip-empty-xacts', 'f', 'partition-root', 'on', 'numeric-as', 'string', 'format-version', '1',
    'actions', 'truncate', 'include-tables', '*.*', 'exclude-tables', '"X".y',
    'publication', 'opt_pub', 'message-prefixes', 'a,"b,c"');
\echo error :ERROR
\set SHOW_CONTEXT errors

-- still nothing consumed; then consume and check that every line was JSON
SELECT opt_all_json(VARIADIC '{}') AS valid_json_lines;
SELECT data FROM pg_logical_slot_get_changes('options_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

SELECT pg_drop_replication_slot('options_slot');
DROP FUNCTION opt_all_json(text[]);
DROP PUBLICATION opt_pub;
DROP TABLE opt_t, opt_other, opt_parent, opt_empty, opt_mark;
