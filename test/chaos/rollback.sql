-- test/chaos/rollback.sql (pgbench): a rolled-back transaction (inserts, updates, a delete
-- and a transactional message, all marked ROLLEDBACK where a value can carry it) that
-- also emits a non-transactional message, which is not rolled back and must arrive.
\set a random(1, 3600)
\set g random(1, 900)
BEGIN;
INSERT INTO acct VALUES (nextval('acct_move_seq'), 0, 'ROLLEDBACK');
UPDATE acct SET note = 'ROLLEDBACK' WHERE id = :a;
DELETE FROM item WHERE grp = :g;
INSERT INTO journal (client, v) VALUES (:client_id, 'ROLLEDBACK');
SELECT pg_logical_emit_message(true, 'chaos', 'ROLLEDBACK');
SELECT pg_logical_emit_message(false, 'chaos.nt', 'non-transactional, in a rolled-back transaction ' || :client_id);
ROLLBACK;
