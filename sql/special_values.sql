-- special_values: non-finite and extreme numbers.  NaN, Infinity and
-- -Infinity of float4, float8 and numeric are the strings "NaN",
-- "Infinity", "-Infinity" (also with numeric-as=number); -0, the largest
-- and the smallest (subnormal) floats are written with the shortest digits
-- that read back exactly; int8 min/max are exact JSON numbers; a numeric
-- with 1000 digits is written in full.  extra_float_digits in the decoding
-- session must not change the output.
CREATE TABLE sv_float (id int PRIMARY KEY, f4 float4, f8 float8, n numeric);
CREATE TABLE sv_int (id int PRIMARY KEY, i2 int2, i4 int4, i8 int8);
CREATE TABLE sv_big (id int PRIMARY KEY, n numeric);

SELECT 'init' FROM pg_create_logical_replication_slot('special_values_slot', 'cdc_relay');

INSERT INTO sv_float VALUES
  (1, 'NaN', 'NaN', 'NaN'),
  (2, 'Infinity', 'Infinity', 'Infinity'),
  (3, '-Infinity', '-Infinity', '-Infinity'),
  (4, '-0.0', '-0.0', '-0.0'),
  (5, '3.4028235e38', '1e308', '1e38'),
  (6, '1e-45', '5e-324', '1e-38'),
  (7, '1.17549435e-38', '2.2250738585072014e-308', NULL),
  (8, '0.33333334', '0.3333333333333333', '0.3333333333333333'),
  (9, '16777216', '1.7976931348623157e308', NULL),
  (10, '-1.5e-10', '-9007199254740993', '-9007199254740993');
INSERT INTO sv_int VALUES
  (1, -32768, -2147483648, -9223372036854775808),
  (2, 32767, 2147483647, 9223372036854775807),
  (3, 0, 0, 0);
INSERT INTO sv_big VALUES
  (1, repeat('9', 1000)::numeric),
  (2, ('-' || repeat('1', 500) || '.' || repeat('2', 500))::numeric),
  (3, ('0.' || repeat('0', 998) || '1')::numeric);

-- Decode the same changes under three extra_float_digits settings.
CREATE TEMP TABLE out (efd text, seq int, data text);
SET extra_float_digits = 0;
INSERT INTO out SELECT '0', row_number() OVER (), data
  FROM pg_logical_slot_peek_changes('special_values_slot', NULL, NULL,
         'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
SET extra_float_digits = -15;
-- (the setting is in effect: the output function now rounds to 1 digit)
SELECT f8::text AS f8_out_with_efd_minus_15 FROM sv_float WHERE id = 8;
INSERT INTO out SELECT '-15', row_number() OVER (), data
  FROM pg_logical_slot_peek_changes('special_values_slot', NULL, NULL,
         'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
-- numeric-as=number, still under extra_float_digits = -15
INSERT INTO out SELECT 'number', row_number() OVER (), data
  FROM pg_logical_slot_peek_changes('special_values_slot', NULL, NULL,
         'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
         'numeric-as', 'number');
RESET extra_float_digits;
INSERT INTO out SELECT 'default', row_number() OVER (), data
  FROM pg_logical_slot_get_changes('special_values_slot', NULL, NULL,
         'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

-- Every line is JSON (the cast errors otherwise).
SELECT efd, count(*), count(data::json) AS json_lines FROM out GROUP BY efd ORDER BY efd;

-- extra_float_digits does not change a single byte.
SELECT count(*) AS lines_differing_from_default
  FROM out d JOIN out o ON o.seq = d.seq AND o.efd IN ('0', '-15')
 WHERE d.efd = 'default' AND o.data IS DISTINCT FROM d.data;

-- The float rows (default settings).
SELECT data FROM out
 WHERE efd = 'default' AND data::jsonb->>'table' = 'sv_float' ORDER BY seq;

-- numeric-as=number: finite numerics are bare numbers, NaN/Infinity strings.
SELECT data::jsonb->'after'->>'id' AS id, data::jsonb->'after'->'n' AS n
  FROM out WHERE efd = 'number' AND data::jsonb->>'table' = 'sv_float' ORDER BY seq;
SELECT count(*) AS float_columns_changed_by_numeric_as
  FROM out d JOIN out o ON o.seq = d.seq AND o.efd = 'number'
 WHERE d.efd = 'default' AND d.data::jsonb->>'table' = 'sv_float'
   AND (d.data::jsonb->'after'->'f4' IS DISTINCT FROM o.data::jsonb->'after'->'f4'
        OR d.data::jsonb->'after'->'f8' IS DISTINCT FROM o.data::jsonb->'after'->'f8');

-- The JSON types and the values read back (json ->> gives the exact text).
SELECT (d.data::json->'after'->>'id')::int AS id,
       json_typeof(d.data::json->'after'->'f4') AS f4_type,
       (d.data::json->'after'->>'f4')::float4 IS NOT DISTINCT FROM f.f4 AS f4_same,
       json_typeof(d.data::json->'after'->'f8') AS f8_type,
       (d.data::json->'after'->>'f8')::float8 IS NOT DISTINCT FROM f.f8 AS f8_same,
       (d.data::json->'after'->>'n')::numeric IS NOT DISTINCT FROM f.n AS n_same,
       (o.data::json->'after'->>'n')::numeric IS NOT DISTINCT FROM f.n AS n_number_same
  FROM out d
       JOIN out o ON o.seq = d.seq AND o.efd = 'number'
       JOIN sv_float f ON f.id = (d.data::json->'after'->>'id')::int
 WHERE d.efd = 'default' AND d.data::json->>'table' = 'sv_float'
 ORDER BY 1;
-- -0 keeps its sign (text comparison: -0 = 0 for the float operators).
SELECT data::json->'after'->>'f4' AS f4, data::json->'after'->>'f8' AS f8,
       data::json->'after'->>'n' AS n
  FROM out WHERE efd = 'default' AND data::json->>'table' = 'sv_float'
   AND data::json->'after'->>'id' = '4';

-- int2/int4/int8 extremes are exact JSON numbers.
SELECT data FROM out
 WHERE efd = 'default' AND data::jsonb->>'table' = 'sv_int' ORDER BY seq;
SELECT (data::json->'after'->>'i8')::int8 = i.i8 AS i8_exact,
       json_typeof(data::json->'after'->'i8') AS i8_type,
       (data::jsonb->'after'->'i8')::text AS via_jsonb
  FROM out JOIN sv_int i ON i.id = (data::json->'after'->>'id')::int
 WHERE efd = 'default' AND data::json->>'table' = 'sv_int' ORDER BY i.id;

-- 1000-digit numerics: written in full, as a string and as a bare number.
SELECT b.id, o.efd,
       json_typeof(o.data::json->'after'->'n') AS json_type,
       length(o.data::json->'after'->>'n') AS digits_and_sign,
       (o.data::json->'after'->>'n') = b.n::text AS same_text
  FROM out o JOIN sv_big b ON b.id = (o.data::json->'after'->>'id')::int
 WHERE o.efd IN ('default', 'number') AND o.data::json->>'table' = 'sv_big'
 ORDER BY b.id, o.efd;

SELECT pg_drop_replication_slot('special_values_slot');
DROP TABLE sv_float, sv_int, sv_big;
