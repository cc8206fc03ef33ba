-- test/chaos/bulk.sql (pgbench, one client, a low rate): large transactions.  :rows new
-- bulk rows, a range of docs updated, and the older bulk rows deleted (so the table
-- stays at about :rows rows); one in four is rolled back instead (rows marked
-- ROLLEDBACK).
\set d random(1, :docs)
\set r random(1, 4)
BEGIN;
\if :r = 1
INSERT INTO bulk SELECT nextval('bulk_id_seq'), 0, 'ROLLEDBACK' FROM generate_series(1, :rows);
UPDATE doc SET body = 'ROLLEDBACK' WHERE id BETWEEN :d AND :d + 100;
ROLLBACK;
\else
INSERT INTO bulk SELECT nextval('bulk_id_seq'), :client_id, repeat('b', 40) FROM generate_series(1, :rows);
UPDATE doc SET rev = rev + 1 WHERE id BETWEEN :d AND :d + 100;
DELETE FROM bulk WHERE id <= (SELECT max(id) FROM bulk) - :rows;
COMMIT;
\endif
