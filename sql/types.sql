-- types: the exact JSON written for representative values of each common
-- type (numbers, strings, embedded JSON, ISO 8601 dates and times, arrays,
-- domains, enums, composites, ranges).  The session uses non-default
-- TimeZone, DateStyle and IntervalStyle to show that the date/time
-- encodings do not depend on them.
SET TimeZone = 'America/New_York';
SET DateStyle = 'SQL, DMY';
SET IntervalStyle = 'postgres_verbose';
SET lc_monetary = 'C';

CREATE SCHEMA ty;
CREATE DOMAIN ty.posint AS int CHECK (VALUE > 0);
CREATE DOMAIN ty.tags AS text[];
CREATE TYPE ty.mood AS ENUM ('sad', 'ok', 'happy');
CREATE TYPE ty.pair AS (a int, b text, c numeric);

-- One row per value; typ is the column type, lit the SQL literal.
CREATE TEMP TABLE cases (n serial, typ text, lit text);
INSERT INTO cases (typ, lit) VALUES
  ('int2', '-32768'), ('int2', '32767'),
  ('int4', '-2147483648'), ('int4', '2147483647'), ('int4', NULL),
  ('int8', '-9223372036854775808'), ('int8', '9223372036854775807'),
  ('oid', '0'), ('oid', '4294967295'),
  ('float4', '1.5'), ('float4', '0.1'), ('float4', '3.4028235e38'),
  ('float8', '0.1'), ('float8', '0.3333333333333333'), ('float8', '1e100'),
  ('float8', '123456789012345680000'), ('float8', '-2.5e-10'),
  ('numeric', '12345.6789'), ('numeric', '-0.000100'), ('numeric', '1e-20'),
  ('numeric', '1.50'), ('numeric', 'NaN'),
  ('numeric(10,2)', '7'),
  ('bool', 'true'), ('bool', 'false'),
  ('text', 'hello'), ('text', ''),
  ('varchar(10)', 'abc'),
  ('char(5)', 'ab'),
  ('bytea', '\x00ff10'), ('bytea', ''),
  ('json', E'{"a": 1,\n "b": [1, 2]}'), ('json', E'[1,\r\n"x", null]'),
  ('json', 'null'),
  ('jsonb', '{"b": 1, "a": [1, 2.50, null]}'), ('jsonb', '"str"'),
  ('date', '2024-02-29'), ('date', '0044-03-15 BC'), ('date', 'infinity'),
  ('date', '-infinity'),
  ('time', '13:14:15.123456'), ('time', '24:00:00'),
  ('timetz', '13:14:15+05:30'), ('timetz', '00:00:00-08'),
  ('timestamp', '2024-02-29 13:14:15.5'), ('timestamp', '0044-03-15 12:00:00 BC'),
  ('timestamp', 'infinity'),
  ('timestamptz', '2024-07-01 12:00:00+02'), ('timestamptz', '2024-01-15 08:00:00'),
  ('timestamptz', '-infinity'),
  ('interval', '1 year 2 mons 3 days 04:05:06.5'), ('interval', '-1 day +02:00'),
  ('interval', '0'), ('interval', '@ 3 hours ago'),
  ('uuid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
  ('inet', '192.168.1.5/24'), ('inet', '::1'),
  ('money', '1234.5'),
  ('int4[]', '{1,2,3}'), ('int4[]', '{{1,2},{3,4}}'), ('int4[]', '{1,NULL,3}'),
  ('int4[]', '{}'), ('int4[]', '[0:2]={1,2,3}'),
  ('text[]', '{"a \"q\"","b\\c",NULL,"NULL",""}'),
  ('float8[]', '{0.1,NaN,-Infinity}'),
  ('numeric[]', '{1.50,NaN}'),
  ('date[]', '{2024-02-29,infinity}'),
  ('ty.posint', '42'),
  ('ty.tags', '{a,"b c"}'),
  ('ty.mood', 'happy'),
  ('ty.pair', '(1,"x y",2.5)'),
  ('int4range', '[1,10)'), ('numrange', '(1.5,2.5]'), ('daterange', '[2024-01-01,)'),
  ('tstzrange', '[2024-01-01 00:00+00,2024-07-01 00:00+00)');

-- A table ty."<type>" (id int PRIMARY KEY, v <type>) per type.
DO $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT DISTINCT typ FROM cases LOOP
    EXECUTE format('CREATE TABLE ty.%I (id int PRIMARY KEY, v %s)', r.typ, r.typ);
  END LOOP;
END $$;

SELECT 'init' FROM pg_create_logical_replication_slot('types_slot', 'cdc_relay');

DO $$
DECLARE
  r record;
BEGIN
  FOR r IN SELECT n, typ, lit FROM cases ORDER BY n LOOP
    EXECUTE format('INSERT INTO ty.%I VALUES (%s, %L::%s)', r.typ, r.n, r.lit, r.typ);
  END LOOP;
END $$;

-- numeric-as=number first (peek), then the default (get); every line must be JSON.
CREATE TEMP TABLE events AS
  SELECT 'number' AS mode, data, data::json AS j
    FROM pg_logical_slot_peek_changes('types_slot', NULL, NULL,
           'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
           'numeric-as', 'number');
INSERT INTO events
  SELECT 'string', data, data::json
    FROM pg_logical_slot_get_changes('types_slot', NULL, NULL,
           'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
SELECT mode, j->>'op' AS op, count(*) FROM events GROUP BY 1, 2 ORDER BY 1, 2;

-- One complete event, to show the shape.
SELECT data FROM events
 WHERE mode = 'string' AND j->>'table' = 'int4' AND j->'key'->>'id' = '3';

-- Every type: the exact text of "v" in the event and its JSON type.
-- (Line breaks in the literal are shown as \n and \r.)
CREATE TEMP VIEW shown AS
  SELECT e.mode, c.n, c.typ,
         replace(replace(c.lit, E'\n', '\n'), E'\r', '\r') AS literal,
         substring(e.data FROM '"after":\{"id":[0-9]+,"v":(.*)\},"seq":') AS json,
         json_typeof(e.j->'after'->'v') AS json_type
    FROM events e JOIN cases c ON c.n = (e.j->'after'->>'id')::int
   WHERE e.j->>'op' = 'c';
SELECT typ, literal, json, json_type FROM shown WHERE mode = 'string' ORDER BY n;

-- numeric-as=number: bare JSON numbers, NaN still a string; nothing else changes.
SELECT typ, literal, json, json_type FROM shown
 WHERE mode = 'number' AND typ LIKE 'numeric%' ORDER BY n;
SELECT count(*) AS other_types_differing
  FROM shown s JOIN shown d ON d.n = s.n AND d.mode = 'string'
 WHERE s.mode = 'number' AND s.typ NOT LIKE 'numeric%' AND s.json <> d.json;

-- Checks on the parsed events.
SELECT count(*) AS c_events,
       count(*) FILTER (WHERE j->'key'->>'id' = j->'after'->>'id') AS key_is_id,
       count(*) FILTER (WHERE json_typeof(j->'before') = 'null') AS before_null,
       count(*) FILTER (WHERE j->>'schema' = 'ty') AS schema_ty
  FROM events WHERE mode = 'string' AND j->>'op' = 'c';
SELECT (j->'after'->>'v')::timestamptz = '2024-01-15 13:00:00+00' AS tz_converted_to_utc
  FROM events e JOIN cases c ON c.n = (e.j->'after'->>'id')::int
 WHERE e.mode = 'string' AND c.lit = '2024-01-15 08:00:00';

SELECT pg_drop_replication_slot('types_slot');
SET client_min_messages = warning;
DROP SCHEMA ty CASCADE;
RESET client_min_messages;
