-- toast: values stored out of line.  An unchanged TOASTed column is not in
-- the WAL: it must be left out of "after" and named in "unchanged_toast"
-- (never sent as null); a changed or inserted one arrives in full.  Covers
-- an uncompressible external value, an uncompressed one (STORAGE EXTERNAL),
-- a compressed external one and a compressed inline one (always in the WAL),
-- DELETE, and REPLICA IDENTITY FULL (before has the full old values).
CREATE TABLE tt (id int PRIMARY KEY, other int, big text, ext text,
                 comp_inline text, comp_ext text);
ALTER TABLE tt ALTER COLUMN ext SET STORAGE EXTERNAL;
CREATE TABLE tt_full (LIKE tt INCLUDING ALL);
ALTER TABLE tt_full REPLICA IDENTITY FULL;

-- the values, and what they look like (length, md5) for the checks below
-- (created before the slot, so not decoded)
CREATE TABLE tt_val (name text PRIMARY KEY, val text);
INSERT INTO tt_val VALUES
  ('big',  (SELECT string_agg(md5(i::text), '') FROM generate_series(1, 2000) i)),
  ('big2', (SELECT string_agg(md5((-i)::text), '') FROM generate_series(1, 2500) i)),
  ('ext',  (SELECT string_agg(i::text, ',') FROM generate_series(1, 3000) i)),
  ('comp_inline', repeat('abc', 10000)),
  ('comp_ext', (SELECT string_agg(repeat(chr(65 + i % 26), 40 + i % 7), '') FROM generate_series(1, 8000) i));
SELECT name, length(val), left(md5(val), 12) AS md5 FROM tt_val ORDER BY name;

SELECT 'init' FROM pg_create_logical_replication_slot('toast_slot', 'cdc_relay');

INSERT INTO tt
SELECT 1, 0, (SELECT val FROM tt_val WHERE name = 'big'), (SELECT val FROM tt_val WHERE name = 'ext'),
       (SELECT val FROM tt_val WHERE name = 'comp_inline'), (SELECT val FROM tt_val WHERE name = 'comp_ext');
INSERT INTO tt_full SELECT * FROM tt;
-- how each value is stored: big and ext uncompressed (out of line, being
-- over 2kB), comp_inline and comp_ext compressed (pglz)
SELECT pg_column_compression(big) AS big, pg_column_compression(ext) AS ext,
       pg_column_compression(comp_inline) AS comp_inline, pg_column_compression(comp_ext) AS comp_ext,
       pg_column_size(comp_inline) < 2000 AS comp_inline_small, pg_column_size(comp_ext) > 2000 AS comp_ext_big
  FROM tt;

-- DEFAULT identity
UPDATE tt SET other = 1 WHERE id = 1;                                  -- no TOASTed column changed
UPDATE tt SET big = (SELECT val FROM tt_val WHERE name = 'big2') WHERE id = 1;   -- one changed
UPDATE tt SET big = big, other = 2 WHERE id = 1;                      -- same value: pointer kept
UPDATE tt SET ext = ext || '!', comp_ext = comp_ext || '!' WHERE id = 1;
UPDATE tt SET id = 2 WHERE id = 1;                                     -- key change, TOAST unchanged
DELETE FROM tt WHERE id = 2;
-- FULL identity
UPDATE tt_full SET other = 1 WHERE id = 1;
UPDATE tt_full SET big = (SELECT val FROM tt_val WHERE name = 'big2') WHERE id = 1;
DELETE FROM tt_full WHERE id = 1;

CREATE TEMP TABLE ev AS
SELECT row_number() OVER () AS n, data
  FROM pg_logical_slot_get_changes('toast_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

-- long strings shown as length and md5 prefix
CREATE FUNCTION tt_summary(r jsonb) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN jsonb_typeof(r) = 'object' THEN
    (SELECT jsonb_object_agg(k, CASE WHEN jsonb_typeof(v) = 'string' AND length(v #>> '{}') > 20
                                     THEN to_jsonb(format('%s chars md5 %s', length(v #>> '{}'), left(md5(v #>> '{}'), 12)))
                                     ELSE v END)
       FROM jsonb_each(r) AS e(k, v))
  ELSE r END $$;

SELECT count(*) AS events, count(*) FILTER (WHERE data::json IS NOT NULL) AS valid_json FROM ev;
SELECT j->>'op' AS op, j->>'table' AS tbl, j->'key' AS key, tt_summary(j->'before') AS before
  FROM (SELECT n, data::jsonb AS j FROM ev) s WHERE j->>'op' IN ('c', 'u', 'd') ORDER BY n;
SELECT j->>'op' AS op, j->>'table' AS tbl, tt_summary(j->'after') AS after, j->'unchanged_toast' AS unchanged_toast
  FROM (SELECT n, data::jsonb AS j FROM ev) s WHERE j->>'op' IN ('c', 'u', 'd') ORDER BY n;

-- never null, never both in after and in unchanged_toast
SELECT count(*) AS toast_nulls FROM ev, LATERAL jsonb_each(data::jsonb->'after') e(k, v)
 WHERE data::jsonb->>'op' IN ('c', 'u') AND k IN ('big', 'ext', 'comp_inline', 'comp_ext') AND v = 'null';
SELECT count(*) AS listed_and_present FROM ev, LATERAL jsonb_array_elements_text(data::jsonb->'unchanged_toast') u
 WHERE data::jsonb->'after' ? u;
-- every column of every update/insert is either in after or in unchanged_toast
SELECT count(*) AS incomplete_rows FROM ev
 WHERE data::jsonb->>'op' IN ('c', 'u')
   AND (SELECT count(*) FROM jsonb_object_keys(data::jsonb->'after'))
     + coalesce(jsonb_array_length(data::jsonb->'unchanged_toast'), 0) <> 6;
-- values that are present are complete: compare with the originals
SELECT j->>'table' AS tbl, j->>'op' AS op, part, c.k AS col, v.name AS value_is
  FROM (SELECT n, data::jsonb AS j FROM ev) s,
       LATERAL (VALUES ('before', j->'before'), ('after', j->'after')) p(part, row),
       LATERAL jsonb_each_text(CASE WHEN jsonb_typeof(row) = 'object' THEN row END) c(k, val)
       LEFT JOIN tt_val v ON v.val = c.val
 WHERE c.k IN ('big', 'ext', 'comp_inline', 'comp_ext')
 ORDER BY n, part DESC, c.k;
-- the two appended values
SELECT count(*) AS appended_ok FROM ev
 WHERE data::jsonb->'after'->>'ext' = (SELECT val || '!' FROM tt_val WHERE name = 'ext')
   AND data::jsonb->'after'->>'comp_ext' = (SELECT val || '!' FROM tt_val WHERE name = 'comp_ext');

SELECT 'stop' FROM pg_drop_replication_slot('toast_slot');
DROP TABLE tt, tt_full, tt_val;
DROP FUNCTION tt_summary(jsonb);
