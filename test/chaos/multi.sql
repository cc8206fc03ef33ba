-- test/chaos/multi.sql (pgbench): a transaction across several tables: an upsert and an
-- update of accounts, an upsert of an item, now and then a doc update, a transactional
-- logical message, a journal line.  :docs is the size of doc (pgbench -D docs=N).
\set a random(1, 3600)
\set b random(1, 3600)
\set g random(1, 900)
\set n random(1, 4)
\set d random(1, :docs)
\set op random(1, 10)
BEGIN;
INSERT INTO acct VALUES (:a, :op, 'i') ON CONFLICT (id) DO UPDATE SET balance = acct.balance + excluded.balance, note = 'u' || excluded.balance;
UPDATE acct SET balance = balance - 1 WHERE id = :b;
INSERT INTO item VALUES (:g, :n, 1, 'i') ON CONFLICT (grp, n) DO UPDATE SET qty = item.qty + 1, tag = 'u';
\if :op <= 3
UPDATE doc SET rev = rev + 1, body = left(body, 60) || ' rev ' || (rev + 1) WHERE id = :d;
\endif
\if :op = 4
SELECT pg_logical_emit_message(true, 'chaos', 'multi ' || :client_id);
\endif
\if :op >= 9
INSERT INTO journal (client, v) VALUES (:client_id, 'multi');
\endif
COMMIT;
