-- truncate: TRUNCATE events.  One table, several tables in one statement
-- (one event listing all), CASCADE through foreign keys, RESTART IDENTITY,
-- inheritance children, names needing JSON escaping, and a TRUNCATE among
-- other changes of a transaction (seq order); rolled back ones emit nothing.
SELECT 'init' FROM pg_create_logical_replication_slot('truncate_slot', 'cdc_relay');

CREATE TABLE tr_a (id int PRIMARY KEY);
CREATE TABLE tr_b (id serial PRIMARY KEY, v text);
CREATE TABLE tr_parent (id int PRIMARY KEY);
CREATE TABLE tr_child (id int PRIMARY KEY, parent int REFERENCES tr_parent);
CREATE TABLE tr_grandchild (id int PRIMARY KEY, child int REFERENCES tr_child);
CREATE TABLE tr_inh (id int);
CREATE TABLE tr_inh_kid () INHERITS (tr_inh);
CREATE SCHEMA "Tr Schema";
CREATE TABLE "Tr Schema"."tr ""quoted"" \ name" (id int);
INSERT INTO tr_a VALUES (1);
INSERT INTO tr_b (v) VALUES ('x'), ('y');
INSERT INTO tr_parent VALUES (1);
INSERT INTO tr_child VALUES (1, 1);
INSERT INTO tr_grandchild VALUES (1, 1);
SELECT count(*) > 0 AS seen FROM pg_logical_slot_get_changes('truncate_slot', NULL, NULL);

TRUNCATE tr_a;
TRUNCATE tr_b, tr_a;
TRUNCATE tr_b RESTART IDENTITY;
TRUNCATE tr_parent CASCADE;
TRUNCATE tr_inh;
TRUNCATE ONLY tr_inh;
TRUNCATE "Tr Schema"."tr ""quoted"" \ name";
BEGIN;
INSERT INTO tr_b (v) VALUES ('before');
TRUNCATE tr_b, tr_a RESTART IDENTITY CASCADE;
INSERT INTO tr_b (v) VALUES ('after');
INSERT INTO tr_a VALUES (2);
COMMIT;
BEGIN;
TRUNCATE tr_b;
ROLLBACK;

CREATE TEMP TABLE ev AS
SELECT row_number() OVER () AS n, data
  FROM pg_logical_slot_peek_changes('truncate_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
SELECT data FROM pg_logical_slot_get_changes('truncate_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

SELECT count(*) AS events, count(data::json) AS valid_json,
       count(*) FILTER (WHERE data::jsonb->>'op' = 't') AS truncates FROM ev;
SELECT (SELECT string_agg(t->>'schema' || '.' || (t->>'table'), ' | ') FROM jsonb_array_elements(j->'tables') t) AS tables,
       j->'cascade' AS cascade, j->'restart_identity' AS restart_identity, j->'seq' AS seq
  FROM (SELECT n, data::jsonb AS j FROM ev) s WHERE j->>'op' = 't' ORDER BY n;
-- the RESTART IDENTITY took effect: the ids after the truncate start at 1
SELECT * FROM tr_b ORDER BY id;

SELECT 'stop' FROM pg_drop_replication_slot('truncate_slot');
DROP TABLE tr_a, tr_b, tr_grandchild, tr_child, tr_parent, tr_inh_kid, tr_inh;
DROP SCHEMA "Tr Schema" CASCADE;
