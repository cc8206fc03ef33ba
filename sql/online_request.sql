-- online_request: cdc_relay.request_snapshot() checks what the relay cannot
-- check later (SELECT privilege, a key, a "where" that is one expression
-- the caller may evaluate), records a job row and writes a transactional
-- cdc_relay.snapshot_request message in the caller's transaction; the
-- extension's own table is never captured.
SELECT 'init' FROM pg_create_logical_replication_slot('online_slot', 'cdc_relay');
CREATE TABLE online_t (id int PRIMARY KEY, v text, created date);
CREATE TABLE online_nokey (a int, b text);
CREATE TABLE online_ri (a int NOT NULL, b text);
CREATE UNIQUE INDEX online_ri_a ON online_ri (a);
ALTER TABLE online_ri REPLICA IDENTITY USING INDEX online_ri_a;
CREATE TABLE online_nothing (id int PRIMARY KEY);
ALTER TABLE online_nothing REPLICA IDENTITY NOTHING;
CREATE TABLE online_part (id int PRIMARY KEY) PARTITION BY RANGE (id);
CREATE VIEW online_v AS SELECT * FROM online_t;

-- EXECUTE is the owner's to grant
SELECT has_function_privilege('public', 'cdc_relay.request_snapshot(regclass, text)', 'EXECUTE') AS public_may_call;

-- no key, REPLICA IDENTITY NOTHING, not a table: refused with the reason
SELECT cdc_relay.request_snapshot('online_nokey');
SELECT cdc_relay.request_snapshot('online_nothing');
SELECT cdc_relay.request_snapshot('online_part');
SELECT cdc_relay.request_snapshot('online_v');
SELECT cdc_relay.request_snapshot(NULL);

-- the "where": one boolean expression on the table's columns, nothing else
SELECT cdc_relay.request_snapshot('online_t', 'true) OR (1=1');
SELECT cdc_relay.request_snapshot('online_t', 'true; DROP TABLE online_t');
SELECT cdc_relay.request_snapshot('online_t', 'id > 1) UNION SELECT 1 FROM online_nokey WHERE (true');
SELECT cdc_relay.request_snapshot('online_t', 'id > 1 FROM online_nokey');
SELECT cdc_relay.request_snapshot('online_t', 'id > 1, true');
SELECT cdc_relay.request_snapshot('online_t', 'id > 1 ORDER BY 1');
SELECT cdc_relay.request_snapshot('online_t', '');
SELECT cdc_relay.request_snapshot('online_t', 'id + 1');
SELECT cdc_relay.request_snapshot('online_t', 'nosuchcolumn = 1');
SELECT cdc_relay.request_snapshot('online_t', 'random() < 0.5');
SELECT count(*) AS jobs_after_refusals FROM cdc_relay.snapshot_jobs;

-- without SELECT on the table, or on what the "where" reads: refused
CREATE ROLE online_requester;
GRANT EXECUTE ON FUNCTION cdc_relay.request_snapshot(regclass, text) TO online_requester;
GRANT SELECT ON online_t TO online_requester;
SET ROLE online_requester;
SELECT cdc_relay.request_snapshot('online_nokey');
SELECT cdc_relay.request_snapshot('online_ri');
SELECT cdc_relay.request_snapshot('online_t', 'id IN (SELECT a FROM online_ri)');
-- functions the requester owns would run with the relay's role: refused,
-- also when planted ahead of pg_catalog in the search_path
RESET ROLE;
CREATE SCHEMA online_mine AUTHORIZATION online_requester;
SET ROLE online_requester;
CREATE FUNCTION online_mine.f(int) RETURNS bool IMMUTABLE LANGUAGE sql AS 'SELECT true';
CREATE FUNCTION online_mine.lower(text) RETURNS text IMMUTABLE LANGUAGE sql AS 'SELECT $1';
SELECT cdc_relay.request_snapshot('online_t', 'online_mine.f(id)');
SET search_path = online_mine, pg_catalog, public;
SELECT cdc_relay.request_snapshot('online_t', 'lower(v) = ''x''');
RESET search_path;
-- allowed: the job row is written as the table's owner; the "where" kept as
-- the relay will run it (analyzed, qualified, constants in ISO form)
SET DateStyle = 'SQL, DMY';
SELECT cdc_relay.request_snapshot('online_t', 'created > ''2020-01-01''') > 0 AS requested;
SELECT cdc_relay.request_snapshot('online_t', 'id % 2 = 0 AND v IS NOT NULL') > 0 AS requested;
RESET ROLE;
RESET DateStyle;

-- positional, named with the quoted "where", and a replica identity index
SELECT cdc_relay.request_snapshot(rel => 'online_t', "where" => 'id < 10') > 0 AS requested;
SELECT cdc_relay.request_snapshot('online_ri') > 0 AS requested;
-- rolled back: no job, no message
BEGIN;
SELECT cdc_relay.request_snapshot('online_t') > 0 AS requested;
ROLLBACK;

SELECT table_name, "where", requested_by, status, chunks, rows
  FROM cdc_relay.snapshot_progress;

-- the messages, in their transactions; the job rows are no events
SELECT d->>'op' AS op, d->>'prefix' AS prefix,
       (d->>'content')::jsonb - 'job' - 'relid' AS content
  FROM (SELECT data::jsonb AS d
          FROM pg_logical_slot_get_changes('online_slot', NULL, NULL)) e
 WHERE d->>'op' NOT IN ('begin', 'commit');
-- and they pass a message-prefixes filter that does not name them
SELECT cdc_relay.request_snapshot('online_t') > 0 AS requested;
SELECT count(*) AS request_messages
  FROM pg_logical_slot_get_changes('online_slot', NULL, NULL, 'message-prefixes', 'app')
 WHERE data::jsonb->>'prefix' = 'cdc_relay.snapshot_request';

-- a leaf partition is requested as itself; the relay refuses it under --partition-root
CREATE TABLE online_part_1 PARTITION OF online_part FOR VALUES FROM (0) TO (100);
SELECT cdc_relay.request_snapshot('online_part_1') > 0 AS requested;
SELECT (data::jsonb->>'content')::jsonb->'partition' AS partition
  FROM pg_logical_slot_get_changes('online_slot', NULL, NULL)
 WHERE data::jsonb->>'prefix' = 'cdc_relay.snapshot_request';

SELECT 'drop' FROM pg_drop_replication_slot('online_slot');
DROP VIEW online_v;
DROP TABLE online_t, online_nokey, online_ri, online_nothing, online_part;
REVOKE EXECUTE ON FUNCTION cdc_relay.request_snapshot(regclass, text) FROM online_requester;
DROP SCHEMA online_mine CASCADE;
DROP ROLE online_requester;
TRUNCATE cdc_relay.snapshot_jobs;
