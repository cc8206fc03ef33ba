-- escaping: JSON string escaping of names and values.  Schema, table and
-- column names with quotes, backslashes, spaces, dots, unicode, tabs,
-- newlines and other control characters (in change and truncate events);
-- text values with every control character 0x01-0x1f (and 0x7f), quotes,
-- backslashes and unicode, also inside arrays, enums, composites and
-- "char"; a 1 MB value.  Every line must be valid JSON and every decoded
-- string must be equal to the original.
CREATE SCHEMA "we""ird.schema";
CREATE TABLE "we""ird.schema"."ta\ble.name with space" (
  "id ""quoted"" \ key" int PRIMARY KEY,
  "dot.col" text,
  "space col" text,
  "é 😀" text,
  U&"new\000Aline\000Dcr" text,
  U&"tab\0009ctl\0001\001F" text
);
CREATE TYPE esc_enum AS ENUM ('plain', 'q"uote', 'back\slash', E'new\nline');
CREATE TYPE esc_comp AS (a text, b text);
CREATE TABLE esc_values (id int PRIMARY KEY, t text, arr text[], e esc_enum,
                         c esc_comp, ch "char", j json);

SELECT 'init' FROM pg_create_logical_replication_slot('escaping_slot', 'cdc_relay');

-- Names: insert, update, delete, truncate.
INSERT INTO "we""ird.schema"."ta\ble.name with space" VALUES (1, 'a', 'b', 'c', 'd', 'e');
UPDATE "we""ird.schema"."ta\ble.name with space" SET "dot.col" = 'a2';
DELETE FROM "we""ird.schema"."ta\ble.name with space";
TRUNCATE "we""ird.schema"."ta\ble.name with space";

-- Values: 'a' || chr(n) || 'b' for every control character, then specials.
INSERT INTO esc_values (id, t)
  SELECT n, 'a' || chr(n) || 'b' FROM generate_series(1, 31) n;
INSERT INTO esc_values (id, t) VALUES (127, 'a' || chr(127) || 'b');
INSERT INTO esc_values VALUES
  (200, '"', ARRAY['"'], 'q"uote', ROW('"', NULL), '"', '"\""'),
  (201, '\', ARRAY['\'], 'back\slash', ROW('\', NULL), '\', '"\\"'),
  (202, '\"', ARRAY['\"', '""'], E'new\nline', ROW('\"', E'\n'), E'\n', '"\\\""'),
  (203, '\\n', NULL, NULL, NULL, NULL, NULL),
  (204, 'é ü ß ñ 中文 ✓ 😀 𝄞', ARRAY['é', '😀'], NULL, ROW('é', '😀'), NULL,
   '"é \u00e9 \ud83d\ude00"'),
  (205, E'\u2028\u2029\ufeff', NULL, NULL, NULL, NULL, NULL),
  (206, '', ARRAY[''], 'plain', ROW(NULL, ''), '', '""'),
  (207, 'null', ARRAY[NULL, 'null'], NULL, NULL, NULL, 'null'),
  (208, '</script><!--', NULL, NULL, NULL, NULL, NULL),
  (209, E'mixed "q" \\ é\t😀\n\r\x01\x1f end', NULL, NULL, NULL, NULL, NULL),
  (210, NULL, ARRAY[E'\x01', E'\t', E'\n', '"', '\', 'é'], NULL, NULL, NULL, NULL),
  (211, NULL, NULL, NULL, ROW(E'\x02\\"', E'\x1f'), NULL,
   '{"k\"ey\u0001": "v\\al\n", "tab": "\t"}');
-- 1 MB (not compressible, so stored out of line) with specials all along.
INSERT INTO esc_values (id, t)
  SELECT 300, string_agg(md5(i::text) ||
                         CASE i % 4 WHEN 0 THEN '"' WHEN 1 THEN '\' WHEN 2 THEN E'\n' ELSE 'é' END,
                         '' ORDER BY i)
    FROM generate_series(1, 31000) i;

CREATE TEMP TABLE out AS
  SELECT row_number() OVER () AS seq, data
    FROM pg_logical_slot_get_changes('escaping_slot', NULL, NULL,
           'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

-- Every line is valid JSON (data::json errors otherwise) and one object.
SELECT count(*) AS lines,
       count(*) FILTER (WHERE (data::json) IS NOT NULL) AS json_lines,
       count(*) FILTER (WHERE json_typeof(data::json) = 'object') AS objects
  FROM out;

-- The events on the table with odd names, as written.
SELECT data FROM out WHERE data::jsonb->>'schema' = 'we"ird.schema'
   OR data::jsonb->>'op' = 't' ORDER BY seq;

-- The names decode to the catalog's names.
CREATE TEMP VIEW weird_cols AS
  SELECT array_agg(attname::text ORDER BY attname COLLATE "C") AS names
    FROM pg_attribute
   WHERE attrelid = '"we""ird.schema"."ta\ble.name with space"'::regclass
     AND attnum > 0 AND NOT attisdropped;
SELECT data::jsonb->>'op' AS op,
       data::jsonb->>'schema' = 'we"ird.schema' AS schema_ok,
       data::jsonb->>'table' = 'ta\ble.name with space' AS table_ok,
       (SELECT array_agg(k ORDER BY k COLLATE "C")
          FROM jsonb_object_keys(data::jsonb->CASE data::jsonb->>'op'
                                               WHEN 'd' THEN 'key' ELSE 'after' END) k)
         = CASE data::jsonb->>'op' WHEN 'd' THEN ARRAY['id "quoted" \ key']
             ELSE (SELECT names FROM weird_cols) END AS columns_ok,
       (SELECT array_agg(k) FROM jsonb_object_keys(data::jsonb->'key') k)
         = ARRAY['id "quoted" \ key'] AS key_ok
  FROM out WHERE data::jsonb->>'schema' = 'we"ird.schema' ORDER BY seq;
SELECT t->>'schema' = 'we"ird.schema' AS schema_ok,
       t->>'table' = 'ta\ble.name with space' AS table_ok
  FROM out, jsonb_array_elements(data::jsonb->'tables') t
 WHERE data::jsonb->>'op' = 't';

-- Control characters: the exact escape written for each.
SELECT v.id AS code, to_hex(v.id) AS hex,
       replace(substring(o.data FROM '"after":\{"id":[0-9]+,"t":"a(.*)b","arr"'),
               chr(127), '<raw 0x7f byte>') AS escaped
  FROM out o JOIN esc_values v ON v.id = (o.data::jsonb->'after'->>'id')::int
 WHERE v.id < 128 ORDER BY v.id;

-- The other values, as written (except the 1 MB one).
SELECT substring(o.data FROM '"after":(.*),"seq"') AS after
  FROM out o
 WHERE o.data::jsonb->>'table' = 'esc_values'
   AND (o.data::jsonb->'after'->>'id')::int BETWEEN 200 AND 299
   AND (o.data::jsonb->'after'->>'id')::int <> 205  -- invisible characters
 ORDER BY o.seq;

-- Every decoded value equals the original (lists differences: must be empty).
SELECT v.id, col
  FROM out o
       JOIN esc_values v ON v.id = (o.data::jsonb->'after'->>'id')::int,
       LATERAL (VALUES
         ('t', (o.data::jsonb->'after'->>'t') IS NOT DISTINCT FROM v.t),
         ('arr', (SELECT array_agg(x ORDER BY i)
                    FROM jsonb_array_elements_text(
                           CASE jsonb_typeof(o.data::jsonb->'after'->'arr')
                             WHEN 'array' THEN o.data::jsonb->'after'->'arr' END)
                         WITH ORDINALITY a(x, i)) IS NOT DISTINCT FROM v.arr),
         ('e', (o.data::jsonb->'after'->>'e')::esc_enum IS NOT DISTINCT FROM v.e),
         ('c', (o.data::jsonb->'after'->>'c')::esc_comp IS NOT DISTINCT FROM v.c),
         ('ch', (o.data::jsonb->'after'->>'ch')::"char" IS NOT DISTINCT FROM v.ch),
         ('j', (o.data::json->'after'->'j')::text IS NOT DISTINCT FROM coalesce(v.j::text, 'null'))
       ) AS chk(col, ok)
 WHERE o.data::jsonb->>'table' = 'esc_values' AND NOT ok
 ORDER BY 1, 2;
SELECT count(*) AS values_compared
  FROM out WHERE data::jsonb->>'table' = 'esc_values';

-- The 1 MB value: valid JSON, decoded equal to the original.
SELECT length(v.t) AS original_chars,
       octet_length(v.t) AS original_bytes,
       length(o.data) - length(v.t) AS escapes_and_envelope_chars,
       (o.data::jsonb->'after'->>'t') = v.t AS decoded_equal,
       o.data::jsonb->'unchanged_toast' IS NULL AS nothing_omitted
  FROM out o JOIN esc_values v ON v.id = (o.data::jsonb->'after'->>'id')::int
 WHERE v.id = 300;

SELECT pg_drop_replication_slot('escaping_slot');
DROP VIEW weird_cols;
DROP TABLE esc_values, "we""ird.schema"."ta\ble.name with space";
DROP TYPE esc_enum, esc_comp;
DROP SCHEMA "we""ird.schema";
