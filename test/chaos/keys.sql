-- test/chaos/keys.sql (pgbench): primary-key changes and deletes.  An account moves to a
-- new id (a sequence: no two clients pick the same); an item moves from n to n + 10
-- (n in 1..4 only, and only when n + 10 is free: upserts never write 11..14, so
-- concurrent clients never collide); deletes of both.
\set a random(1, 3600)
\set b random(1, 3600)
\set g random(1, 900)
\set n random(1, 4)
\set m random(1, 8)
\set op random(1, 10)
BEGIN;
UPDATE acct SET id = nextval('acct_move_seq'), note = 'moved' WHERE id = :a;
\if :op <= 5
DELETE FROM acct WHERE id = :b;
\endif
UPDATE item SET n = n + 10, tag = 'moved' WHERE grp = :g AND n = :n AND NOT EXISTS (SELECT 1 FROM item x WHERE x.grp = :g AND x.n = :n + 10);
\if :op > 5
DELETE FROM item WHERE grp = :g AND n = CASE WHEN :m <= 4 THEN :m ELSE :m + 6 END;
\endif
COMMIT;
