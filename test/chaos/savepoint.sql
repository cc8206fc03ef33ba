-- test/chaos/savepoint.sql (pgbench): a committed transaction with a savepoint rolled back
-- (its update, insert, delete and message marked ROLLEDBACK or undone) between kept work.
\set a random(1, 3600)
\set b random(1, 3600)
\set g random(1, 900)
\set n random(1, 4)
\set d random(1, :docs)
BEGIN;
UPDATE acct SET balance = balance + 1, note = 'sp' WHERE id = :a;
SAVEPOINT s1;
UPDATE acct SET note = 'ROLLEDBACK' WHERE id = :b;
INSERT INTO item VALUES (:g, 100 + :n, 0, 'ROLLEDBACK') ON CONFLICT DO NOTHING;
DELETE FROM doc WHERE id = :d;
SELECT pg_logical_emit_message(true, 'chaos', 'ROLLEDBACK');
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s2;
INSERT INTO journal (client, v) VALUES (:client_id, 'kept after a rolled-back savepoint');
RELEASE SAVEPOINT s2;
UPDATE item SET qty = qty + 1, tag = 'sp' WHERE grp = :g AND n = :n;
COMMIT;
