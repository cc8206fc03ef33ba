-- publications: the "publication" option honours PostgreSQL publications:
-- FOR TABLE, FOR ALL TABLES, FOR TABLES IN SCHEMA, WITH (publish = ...)
-- restricting actions, a partition published through its root, several
-- publications unioned, combined with actions/include-tables, and ALTER
-- PUBLICATION (ADD/DROP/SET TABLE, ADD TABLES IN SCHEMA, SET (publish))
-- taking effect at its place in the stream.  Unknown publication: error.
\set VERBOSITY terse

CREATE SCHEMA pub_s;
CREATE TABLE pub_t1 (id int PRIMARY KEY, v text);
CREATE TABLE pub_t2 (id int PRIMARY KEY, v text);
CREATE TABLE pub_t3 (id int PRIMARY KEY, v text);
CREATE TABLE pub_s.a (id int PRIMARY KEY, v text);
CREATE TABLE pub_s.b (id int PRIMARY KEY, v text);
CREATE TABLE pub_root (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE pub_leaf1 PARTITION OF pub_root FOR VALUES FROM (0) TO (100);
CREATE TABLE pub_mid PARTITION OF pub_root FOR VALUES FROM (100) TO (200) PARTITION BY RANGE (id);
CREATE TABLE pub_leaf2 PARTITION OF pub_mid FOR VALUES FROM (100) TO (200);

CREATE PUBLICATION pub_one FOR TABLE pub_t1;
CREATE PUBLICATION pub_all FOR ALL TABLES;
CREATE PUBLICATION pub_schema FOR TABLES IN SCHEMA pub_s;
CREATE PUBLICATION pub_ins FOR TABLE pub_t2 WITH (publish = 'insert');
CREATE PUBLICATION pub_two FOR TABLE pub_t2;
CREATE PUBLICATION pub_upd_trunc FOR TABLE pub_t2, pub_t3 WITH (publish = 'update, truncate');
CREATE PUBLICATION pub_part FOR TABLE pub_root;
CREATE PUBLICATION "Pub Mixed" FOR TABLE pub_t3;

SELECT 'init' FROM pg_create_logical_replication_slot('publications_slot', 'cdc_relay');

-- The pending events under the given options: regress_events (sql/setup.sql)
-- of this file's slot, each event labelled op:table/id.
CREATE FUNCTION pub_events(VARIADIC opts text[],
    OUT events text, OUT seq_ok boolean, OUT txns bigint)
LANGUAGE sql AS $$ SELECT * FROM regress_events('publications_slot', 'op', VARIADIC opts) $$;

--
-- membership and published actions, one transaction on every table
--
BEGIN;
INSERT INTO pub_t1 VALUES (1, 'x');
INSERT INTO pub_t2 VALUES (1, 'x');
INSERT INTO pub_t3 VALUES (1, 'x');
INSERT INTO pub_s.a VALUES (1, 'x');
INSERT INTO pub_s.b VALUES (1, 'x');
INSERT INTO pub_root VALUES (1, 'x'), (101, 'x');
UPDATE pub_t1 SET v = 'y';
UPDATE pub_t2 SET v = 'y';
UPDATE pub_s.a SET v = 'y';
UPDATE pub_root SET v = 'y' WHERE id = 101;
DELETE FROM pub_t1;
DELETE FROM pub_t2;
DELETE FROM pub_root WHERE id = 1;
TRUNCATE pub_t2, pub_t3;
COMMIT;

-- no publication option: everything
SELECT * FROM pub_events('include-xids', '0');
SELECT * FROM pub_events('publication', 'pub_one');
SELECT * FROM pub_events('publication', 'PUB_ONE');
SELECT * FROM pub_events('publication', 'pub_all');
SELECT * FROM pub_events('publication', 'pub_schema');
-- WITH (publish = ...): only those actions
SELECT * FROM pub_events('publication', 'pub_ins');
SELECT * FROM pub_events('publication', 'pub_upd_trunc');
-- a partitioned table's publication covers its partitions at every level;
-- events name the leaf, or the root with partition-root
SELECT * FROM pub_events('publication', 'pub_part');
SELECT * FROM pub_events('publication', 'pub_part', 'partition-root', 'true');
-- quoted name
SELECT * FROM pub_events('publication', '"Pub Mixed"');
-- several publications: union of members, and of actions per table
SELECT * FROM pub_events('publication', 'pub_one,pub_ins');
SELECT * FROM pub_events('publication', 'pub_ins, pub_upd_trunc');
SELECT * FROM pub_events('publication', 'pub_ins,pub_two');
SELECT * FROM pub_events('publication', 'pub_schema,pub_part,"Pub Mixed"');
-- with actions and table filters: the intersection
SELECT * FROM pub_events('publication', 'pub_all', 'actions', 'delete');
SELECT * FROM pub_events('publication', 'pub_two', 'actions', 'insert,truncate');
SELECT * FROM pub_events('publication', 'pub_all', 'include-tables', 'pub_s.*,pub_t3');
SELECT * FROM pub_events('publication', 'pub_all', 'exclude-tables', 'pub_s.*,pub_leaf?');
SELECT * FROM pub_events('publication', 'pub_schema', 'include-tables', 'pub_t1');
SELECT data FROM pg_logical_slot_peek_changes('publications_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
    'publication', 'pub_ins,pub_upd_trunc');
SELECT count(*) AS consumed FROM pg_logical_slot_get_changes('publications_slot', NULL, NULL);

--
-- ALTER PUBLICATION takes effect where it happens in the stream: changes
-- before it follow the old definition, changes after it the new one, also
-- inside one transaction
--
INSERT INTO pub_t3 VALUES (10, 'before add');
ALTER PUBLICATION pub_one ADD TABLE pub_t3;
INSERT INTO pub_t3 VALUES (11, 'after add');
BEGIN;
INSERT INTO pub_t3 VALUES (12, 'before drop, same txn');
ALTER PUBLICATION pub_one DROP TABLE pub_t3;
INSERT INTO pub_t3 VALUES (13, 'after drop, same txn');
INSERT INTO pub_t1 VALUES (13, 'member all along');
COMMIT;
INSERT INTO pub_t3 VALUES (14, 'after drop');
ALTER PUBLICATION pub_one SET (publish = 'delete');
INSERT INTO pub_t1 VALUES (20, 'only deletes now');
DELETE FROM pub_t1 WHERE id = 20;
BEGIN;
DELETE FROM pub_t1 WHERE id = 13;
ALTER PUBLICATION pub_one SET (publish = 'insert');
INSERT INTO pub_t1 VALUES (21, 'inserts again, same txn');
DELETE FROM pub_t1 WHERE id = 21;
COMMIT;
ALTER PUBLICATION pub_one SET (publish = 'insert, update, delete, truncate');
ALTER PUBLICATION pub_one SET TABLE pub_t2;
INSERT INTO pub_t1 VALUES (30, 'no longer a member');
INSERT INTO pub_t2 VALUES (30, 'member by SET TABLE');
ALTER PUBLICATION pub_one ADD TABLES IN SCHEMA pub_s;
INSERT INTO pub_s.b VALUES (40, 'member by schema');
ALTER PUBLICATION pub_one DROP TABLES IN SCHEMA pub_s;
INSERT INTO pub_s.b VALUES (41, 'schema dropped');
ALTER PUBLICATION pub_one ADD TABLE pub_root;
INSERT INTO pub_root VALUES (150, 'leaf of an added root');
SELECT data FROM pg_logical_slot_peek_changes('publications_slot', NULL, NULL,
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0', 'publication', 'pub_one');
SELECT * FROM pub_events('publication', 'pub_one');
-- the other publications did not change meanwhile
SELECT * FROM pub_events('publication', 'pub_ins');
SELECT * FROM pub_events('publication', 'pub_schema');
SELECT count(*) AS consumed FROM pg_logical_slot_get_changes('publications_slot', NULL, NULL);

--
-- a publication that does not exist: an error when the first change is
-- decoded (decoding starts without error when there is nothing to check)
--
\set SHOW_CONTEXT never
SELECT data FROM pg_logical_slot_get_changes('publications_slot', NULL, NULL, 'publication', 'pub_nosuch');
INSERT INTO pub_t1 VALUES (50, 'x');
SELECT data FROM pg_logical_slot_get_changes('publications_slot', NULL, NULL, 'publication', 'pub_nosuch');
SELECT data FROM pg_logical_slot_get_changes('publications_slot', NULL, NULL, 'publication', 'pub_one,pub_nosuch');
SELECT data FROM pg_logical_slot_get_changes('publications_slot', NULL, NULL, 'publication', '"PUB_ONE"');
\set SHOW_CONTEXT errors
-- nothing was consumed by the errors.
SELECT * FROM pub_events('include-xids', '0');
-- publications are looked up as of the decoded change: one created after
-- the change does not exist yet for it
CREATE PUBLICATION pub_late FOR TABLE pub_t1;
\set SHOW_CONTEXT never
SELECT data FROM pg_logical_slot_get_changes('publications_slot', NULL, NULL, 'publication', 'pub_late');
\set SHOW_CONTEXT errors
SELECT count(*) AS consumed FROM pg_logical_slot_get_changes('publications_slot', NULL, NULL);
INSERT INTO pub_t1 VALUES (51, 'x');
-- a dropped publication: changes before the DROP still see it, changes
-- after it fail
DROP PUBLICATION pub_late;
INSERT INTO pub_t1 VALUES (52, 'x');
SELECT data FROM pg_logical_slot_peek_changes('publications_slot', NULL, 1, 'publication', 'pub_late',
    'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
\set SHOW_CONTEXT never
SELECT data FROM pg_logical_slot_get_changes('publications_slot', NULL, NULL, 'publication', 'pub_late');
\set SHOW_CONTEXT errors
SELECT count(*) AS consumed FROM pg_logical_slot_get_changes('publications_slot', NULL, NULL);

-- An error inside a change callback ends decoding without the shutdown
-- callback; the relation cache must not leave a dangling pointer that a
-- later invalidation in this backend follows (this used to crash the
-- server): error, reuse the freed memory, then run DDL.
INSERT INTO pub_t1 VALUES (53, 'x');
\set SHOW_CONTEXT never
SELECT count(*) FROM pg_logical_slot_peek_changes('publications_slot', NULL, NULL, 'publication', 'no_such_pub');
\set SHOW_CONTEXT errors
SELECT count(*) AS sorted FROM (SELECT repeat('x', 100) FROM generate_series(1, 10000) ORDER BY 1) s;
ALTER TABLE pub_t1 ADD COLUMN crash_check int;
ALTER TABLE pub_t1 DROP COLUMN crash_check;
SELECT count(*) AS still_there FROM pg_logical_slot_get_changes('publications_slot', NULL, NULL);

SELECT pg_drop_replication_slot('publications_slot');
DROP FUNCTION pub_events(text[]);
DROP PUBLICATION pub_one, pub_all, pub_schema, pub_ins, pub_two, pub_upd_trunc, pub_part, "Pub Mixed";
SET client_min_messages = warning;
DROP SCHEMA pub_s CASCADE;
RESET client_min_messages;
DROP TABLE pub_t1, pub_t2, pub_t3, pub_root;
