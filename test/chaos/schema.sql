-- test/chaos/schema.sql: the chaos test's tables (Chaos.pm runs it with psql -v
-- docs=N before the relay starts, so that the relay begins with a snapshot).
--   acct    int key; upserts, updates, deletes, key changes to new ids (acct_move_seq)
--   item    composite key (grp, n); upserts, deletes, key changes n -> n + 10
--   doc     int key; the bulk of the snapshot (:docs rows), updated now and then
--   bulk    bigint key; written by the large transactions (about 1,500 rows live)
--   journal no key (a delete-policy topic, null message keys); insert only
-- Rolled-back work always writes the marker ROLLEDBACK, which no committed row, event or
-- message holds: the checker looks for it in every message.
CREATE EXTENSION cdc_relay;
CREATE TABLE acct (id int PRIMARY KEY, balance bigint NOT NULL, note text);
CREATE SEQUENCE acct_move_seq START 1000000;
INSERT INTO acct SELECT g, g * 10, 'seed ' || g FROM generate_series(1, 3000) g;
CREATE TABLE item (grp int, n int, qty int NOT NULL, tag text, PRIMARY KEY (grp, n));
INSERT INTO item SELECT g, n, n, 'seed' FROM generate_series(1, 750) g, generate_series(1, 4) n;
CREATE TABLE doc (id int PRIMARY KEY, rev int NOT NULL, body text NOT NULL);
INSERT INTO doc SELECT g, 0, repeat(md5(g::text), 3) FROM generate_series(1, :docs) g;
CREATE TABLE bulk (id bigint PRIMARY KEY, batch int NOT NULL, payload text NOT NULL);
CREATE SEQUENCE bulk_id_seq;
CREATE TABLE journal (at timestamptz NOT NULL DEFAULT clock_timestamp(), client int, v text);
INSERT INTO journal (client, v) SELECT 0, 'seed ' || g FROM generate_series(1, 100) g;
ANALYZE;
