-- batch_events: with the batch-events option the plugin writes the events of
-- a transaction together, separated by '\n', at its commit, or as soon as
-- they reach 64 kB (then the rest follows in further writes); a logical
-- message outside any transaction is written on its own.  Each write is one
-- row of pg_logical_slot_*_changes.  Split at '\n', the rows are exactly the
-- rows written without the option, in the same order (also with key-prefix),
-- and each row carries the LSN and xid of its last event's unbatched row.
-- Without the option (the default) every row is one event.
\set VERBOSITY terse

CREATE TABLE be_t (id int PRIMARY KEY, v text, j json);
CREATE TABLE be_big (id int PRIMARY KEY, pad text);
CREATE TABLE be_nokey (a int);
SELECT 'init' FROM pg_create_logical_replication_slot('batch_slot', 'cdc_relay');

-- a small transaction: changes, a key change, a transactional message, a
-- truncate; values with line breaks (escaped in strings; a json value's line
-- breaks become spaces)
BEGIN;
INSERT INTO be_t VALUES (1, E'line\nbreak', E'{"a":\n[1,\r\n2]}'), (2, 'two', 'null');
INSERT INTO be_nokey VALUES (1);
UPDATE be_t SET id = 3 WHERE id = 2;
SELECT 'msg' FROM pg_logical_emit_message(true, 'be', E'multi\nline');
DELETE FROM be_t WHERE id = 1;
TRUNCATE be_nokey;
COMMIT;
-- a one-change transaction
INSERT INTO be_t VALUES (4, 'four', NULL);
-- a non-transactional message (written on its own); in PG15 its WAL is not
-- flushed at once, so a committed write follows
SELECT 'msg' FROM pg_logical_emit_message(false, 'be', 'outside');
INSERT INTO be_t VALUES (5, 'five', NULL);
-- a transaction of about 400 kB: several writes of at least 64 kB, then the
-- rest with the commit
BEGIN;
INSERT INTO be_big SELECT g, repeat(chr(97 + g % 26), 1000) FROM generate_series(1, 400) g;
COMMIT;
-- an empty transaction (shown with skip-empty-xacts false)
BEGIN;
INSERT INTO be_t VALUES (6, 'six', NULL);
DELETE FROM be_t WHERE id = 6;
ROLLBACK;
BEGIN;
CREATE TEMP TABLE be_tmp (x int);
COMMIT;

-- the small transactions as written (timestamps, LSNs and xids left out)
SELECT replace(data, E'\n', '<NL>') AS data
  FROM pg_logical_slot_peek_changes('batch_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
       'batch-events', 'true')
 WHERE data NOT LIKE '%be_big%';
-- with key-prefix (tabs shown as <TAB>, vertical tabs as <VT>)
SELECT replace(replace(replace(data, E'\n', '<NL>'), E'\t', '<TAB>'), chr(11), '<VT>') AS data
  FROM pg_logical_slot_peek_changes('batch_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
       'batch-events', 'true', 'key-prefix', 'true')
 WHERE data NOT LIKE '%be_big%';

-- Rows of a peek, and the lines they hold, in stream order.
CREATE FUNCTION be_lines(VARIADIC opts text[])
RETURNS TABLE (row_no bigint, line_no bigint, last_in_row boolean,
               row_lsn pg_lsn, row_xid xid, row_len int, line text)
LANGUAGE sql AS $$
  SELECT r.i, row_number() OVER (ORDER BY r.i, l.j), l.j = max(l.j) OVER (PARTITION BY r.i),
         r.lsn, r.xid, octet_length(r.data), l.line
    FROM pg_logical_slot_peek_changes('batch_slot', NULL, NULL, VARIADIC opts)
         WITH ORDINALITY r(lsn, xid, data, i),
         LATERAL regexp_split_to_table(r.data, E'\n') WITH ORDINALITY l(line, j)
$$;

-- Default fields, with and without key-prefix: the lines of the batched rows
-- against the rows without the option.
CREATE TEMP TABLE be_cmp AS
SELECT kp, b.row_no, b.last_in_row, b.row_lsn, b.row_xid, b.row_len,
       b.line, p.line AS plain, p.row_lsn AS plain_lsn, p.row_xid AS plain_xid,
       p.line_no IS NULL AS missing
  FROM (VALUES (false), (true)) k(kp),
       LATERAL be_lines('batch-events', 'on', 'key-prefix', kp::text) b
       FULL JOIN LATERAL be_lines('key-prefix', kp::text) p USING (line_no);
SELECT kp,
       count(*) AS lines,
       count(DISTINCT row_no) AS batched_rows,
       count(*) FILTER (WHERE line = plain) AS lines_equal,
       count(*) FILTER (WHERE missing OR line IS NULL) AS unmatched,
       -- a row's LSN and xid are those of its last event
       count(*) FILTER (WHERE last_in_row AND row_lsn = plain_lsn
                          AND row_xid IS NOT DISTINCT FROM plain_xid) AS rows_lsn_xid_of_last,
       -- rows end at a commit, at a message outside any transaction, or
       -- once past 64 kB
       count(*) FILTER (WHERE last_in_row AND NOT (line LIKE '{"op":"commit"%'
                          OR line LIKE '{"op":"m",%"transactional":false%'
                          OR row_len >= 65536)) AS rows_ending_elsewhere
  FROM be_cmp GROUP BY kp ORDER BY kp;
-- the large transaction: rows of at least 64 kB (the last one excepted),
-- below 64 kB without their last event
SELECT kp, count(*) AS rows, count(*) FILTER (WHERE row_len >= 65536) AS rows_64k,
       bool_and(row_len - octet_length(line) - 1 < 65536) AS below_64k_before_last
  FROM be_cmp WHERE last_in_row AND (kp, row_no) IN (SELECT kp, row_no FROM be_cmp WHERE line LIKE '%be_big%')
 GROUP BY kp ORDER BY kp;
-- every line is one JSON event (after the key prefix)
SELECT count(*) AS lines,
       count(substr(line, strpos(line, E'\t') + 1)::jsonb) AS json_lines
  FROM be_cmp;

-- Without the option, and with it off: one event per row.
SELECT count(*) AS rows, count(*) FILTER (WHERE data LIKE E'%\n%') AS rows_with_nl
  FROM pg_logical_slot_peek_changes('batch_slot', NULL, NULL);
SELECT count(*) AS rows, count(*) FILTER (WHERE data LIKE E'%\n%') AS rows_with_nl
  FROM pg_logical_slot_peek_changes('batch_slot', NULL, NULL, 'batch-events', 'off');
-- "-o batch-events" alone means true
SELECT count(*) AS rows, count(*) FILTER (WHERE data LIKE E'%\n%') AS rows_with_nl
  FROM pg_logical_slot_peek_changes('batch_slot', NULL, NULL, 'batch-events', '1');
-- an empty transaction, with skip-empty-xacts false: begin and commit in one row
SELECT replace(data, E'\n', '<NL>') AS data
  FROM pg_logical_slot_peek_changes('batch_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
       'batch-events', 'true', 'skip-empty-xacts', 'false')
 WHERE data NOT LIKE '%"op":"c"%' AND data NOT LIKE '%"op":"m"%';
-- a bad value
\set VERBOSITY default
SELECT data FROM pg_logical_slot_peek_changes('batch_slot', NULL, NULL, 'batch-events', 'maybe');
\set VERBOSITY terse

-- upto_nchanges counts rows: with the option, whole transactions
SELECT count(*) AS rows, sum(array_length(string_to_array(data, E'\n'), 1)) AS events
  FROM pg_logical_slot_get_changes('batch_slot', NULL, 1, 'batch-events', 'true');
SELECT count(*) AS rows_left FROM pg_logical_slot_get_changes('batch_slot', NULL, NULL, 'batch-events', 'true');
SELECT pg_drop_replication_slot('batch_slot');
DROP FUNCTION be_lines(text[]);
DROP TABLE be_t, be_big, be_nokey;
