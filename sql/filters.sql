-- filters: the include-tables / exclude-tables patterns (exact names,
-- unquoted names folded to lower case, * and ? wildcards in schema and table
-- parts, patterns without a schema, quoted names with dots, commas, quotes,
-- spaces, upper case and glob characters, include + exclude together) and
-- the actions filter (alone, with truncate listing only the included tables).
-- Filtered-out changes do not count: seq numbers and commit "events" count
-- only emitted events, and a transaction left without events is skipped.
\set VERBOSITY terse

CREATE SCHEMA flt_a;
CREATE SCHEMA flt_b;
CREATE SCHEMA "My Schema";
CREATE TABLE flt_a.t1 (id int PRIMARY KEY);
CREATE TABLE flt_a.t2 (id int PRIMARY KEY);
CREATE TABLE flt_a.tx (id int PRIMARY KEY);
CREATE TABLE flt_a.t10 (id int PRIMARY KEY);
CREATE TABLE flt_b.t1 (id int PRIMARY KEY);
CREATE TABLE flt_b.other (id int PRIMARY KEY);
CREATE TABLE "My Schema"."odd.table,name" (id int PRIMARY KEY);
CREATE TABLE "My Schema"."Odd""Quote" (id int PRIMARY KEY);
CREATE TABLE "My Schema".t1 (id int PRIMARY KEY);
CREATE TABLE public."Flt_Mixed" (id int PRIMARY KEY);
CREATE TABLE public.flt_lower (id int PRIMARY KEY);
CREATE TABLE public."star*name" (id int PRIMARY KEY);
CREATE TABLE public."starXname" (id int PRIMARY KEY);
CREATE TABLE public."back\slash" (id int PRIMARY KEY);

SELECT 'init' FROM pg_create_logical_replication_slot('filters_slot', 'cdc_relay');

-- The pending events under the given options: regress_events (sql/setup.sql)
-- of this file's slot, each event labelled schema.table.
CREATE FUNCTION flt_events(VARIADIC opts text[],
    OUT tables text, OUT seq_ok boolean, OUT txns bigint)
LANGUAGE sql AS $$ SELECT * FROM regress_events('filters_slot', 'table', VARIADIC opts) $$;

--
-- include-tables / exclude-tables: one row into each of the 14 tables
--
BEGIN;
INSERT INTO flt_a.t1 VALUES (1);
INSERT INTO flt_a.t2 VALUES (1);
INSERT INTO flt_a.tx VALUES (1);
INSERT INTO flt_a.t10 VALUES (1);
INSERT INTO flt_b.t1 VALUES (1);
INSERT INTO flt_b.other VALUES (1);
INSERT INTO "My Schema"."odd.table,name" VALUES (1);
INSERT INTO "My Schema"."Odd""Quote" VALUES (1);
INSERT INTO "My Schema".t1 VALUES (1);
INSERT INTO public."Flt_Mixed" VALUES (1);
INSERT INTO public.flt_lower VALUES (1);
INSERT INTO public."star*name" VALUES (1);
INSERT INTO public."starXname" VALUES (1);
INSERT INTO public."back\slash" VALUES (1);
COMMIT;

-- no filter: all 14, in order
SELECT * FROM flt_events('include-xids', '0');
-- include-tables
SELECT * FROM flt_events('include-tables', 'flt_a.t1');
SELECT * FROM flt_events('include-tables', 'FLT_A.T1');
SELECT * FROM flt_events('include-tables', '"FLT_A"."T1"');
SELECT * FROM flt_events('include-tables', '"flt_a"."t1"');
SELECT * FROM flt_events('include-tables', 'flt_a.*');
SELECT * FROM flt_events('include-tables', 'flt_a.t?');
SELECT * FROM flt_events('include-tables', 'flt_a.t??');
SELECT * FROM flt_events('include-tables', 'flt_a.*1*');
SELECT * FROM flt_events('include-tables', 'flt_?.t1');
SELECT * FROM flt_events('include-tables', '*_b.*');
SELECT * FROM flt_events('include-tables', 't1');
SELECT * FROM flt_events('include-tables', '*.t1');
SELECT * FROM flt_events('include-tables', '*');
SELECT * FROM flt_events('include-tables', '*.*');
SELECT * FROM flt_events('include-tables', '"My Schema"."odd.table,name"');
SELECT * FROM flt_events('include-tables', '"odd.table,name"');
SELECT * FROM flt_events('include-tables', '"My Schema"."Odd""Quote"');
SELECT * FROM flt_events('include-tables', '"My Schema".*');
SELECT * FROM flt_events('include-tables', '"My Schema".odd*');
SELECT * FROM flt_events('include-tables', 'Flt_Mixed');
SELECT * FROM flt_events('include-tables', '"Flt_Mixed"');
SELECT * FROM flt_events('include-tables', 'public.FLT_LOWER');
SELECT * FROM flt_events('include-tables', 'star*name');
SELECT * FROM flt_events('include-tables', '"star*name"');
SELECT * FROM flt_events('include-tables', '"star?name"');
SELECT * FROM flt_events('include-tables', 'back\slash');
SELECT * FROM flt_events('include-tables', '"back\slash"');
SELECT * FROM flt_events('include-tables', 'flt_a.t1, flt_b.* ,"My Schema".t1');
SELECT * FROM flt_events('include-tables', 'nosuch.*');
-- exclude-tables
SELECT * FROM flt_events('exclude-tables', 'flt_a.*');
SELECT * FROM flt_events('exclude-tables', 't1,"My Schema".*,public.*');
SELECT * FROM flt_events('exclude-tables', '*');
-- include + exclude: exclude wins
SELECT * FROM flt_events('include-tables', 'flt_a.*', 'exclude-tables', 'flt_a.t1?');
SELECT * FROM flt_events('include-tables', 'flt_?.*', 'exclude-tables', '*.t1,flt_a.t2');
SELECT * FROM flt_events('include-tables', 'flt_a.t1', 'exclude-tables', 'flt_a.t1');
-- what a consumer sees with filtered-out changes in between: seq and
-- "events" count only what is sent
SELECT data FROM pg_logical_slot_peek_changes('filters_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
    'include-tables', 'flt_b.*,"My Schema"."Odd""Quote"', 'exclude-tables', 'flt_b.other');
SELECT count(*) AS consumed FROM pg_logical_slot_get_changes('filters_slot', NULL, NULL);

--
-- actions, alone and with table filters; truncate lists only included tables
--
BEGIN;
INSERT INTO flt_a.t1 VALUES (2);
UPDATE flt_a.t1 SET id = 3 WHERE id = 2;
DELETE FROM flt_a.t1 WHERE id = 3;
INSERT INTO flt_b.t1 VALUES (2);
TRUNCATE flt_a.t1, flt_a.t2, flt_b.t1;
COMMIT;
SELECT data FROM pg_logical_slot_peek_changes('filters_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
SELECT a AS actions, string_agg(d->>'op', ' ' ORDER BY n) AS ops,
       string_agg(d->>'seq', ' ' ORDER BY n) AS seqs
  FROM unnest(ARRAY['insert', 'update', 'delete', 'truncate', 'insert,update', 'update,delete,truncate',
                    'insert,update,delete', 'truncate,insert,update,delete']) WITH ORDINALITY AS u(a, i),
       LATERAL (SELECT row_number() OVER () AS n, data::jsonb AS d
                  FROM pg_logical_slot_peek_changes('filters_slot', NULL, NULL, 'actions', a)) s
 GROUP BY i, a ORDER BY i;
-- the truncate event names only the tables that pass the filters
SELECT * FROM flt_events('actions', 'truncate');
SELECT * FROM flt_events('actions', 'truncate', 'include-tables', 'flt_a.*');
SELECT * FROM flt_events('actions', 'truncate', 'include-tables', 'flt_b.t1');
SELECT * FROM flt_events('actions', 'truncate', 'exclude-tables', '*.t1');
SELECT * FROM flt_events('include-tables', 'flt_b.*');
SELECT * FROM flt_events('actions', 'insert,delete', 'include-tables', 'flt_a.t1');
-- no included table truncated: no truncate event at all
SELECT * FROM flt_events('actions', 'truncate', 'include-tables', 'flt_a.tx');
SELECT data FROM pg_logical_slot_peek_changes('filters_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
    'include-tables', 'flt_b.*,flt_a.t2', 'actions', 'delete,truncate');
SELECT count(*) AS consumed FROM pg_logical_slot_get_changes('filters_slot', NULL, NULL);

--
-- a transaction touching only excluded tables is skipped entirely (unless
-- skip-empty-xacts=false); the next one is numbered from seq 1 as usual
--
INSERT INTO flt_b.other VALUES (2), (3);
BEGIN;
INSERT INTO flt_b.other VALUES (4);
INSERT INTO flt_a.tx VALUES (4);
COMMIT;
SELECT data FROM pg_logical_slot_peek_changes('filters_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
    'exclude-tables', 'flt_b.other');
SELECT data FROM pg_logical_slot_peek_changes('filters_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
    'exclude-tables', 'flt_b.other', 'skip-empty-xacts', 'false');
SELECT * FROM flt_events('include-tables', 'flt_a.tx');
SELECT * FROM flt_events('include-tables', 'flt_b.other');
SELECT * FROM flt_events('include-tables', 'flt_b.other', 'actions', 'update');
SELECT count(*) AS consumed FROM pg_logical_slot_get_changes('filters_slot', NULL, NULL);

SELECT pg_drop_replication_slot('filters_slot');
DROP FUNCTION flt_events(text[]);
SET client_min_messages = warning;
DROP SCHEMA flt_a, flt_b, "My Schema" CASCADE;
RESET client_min_messages;
DROP TABLE public."Flt_Mixed", public.flt_lower, public."star*name", public."starXname", public."back\slash";
