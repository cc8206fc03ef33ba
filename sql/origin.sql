-- origin: the plugin option origin = any (default) | none.  With none, a
-- transaction replayed with a replication origin (as logical replication
-- does) is left out entirely: changes, truncates and messages; local ones
-- are sent as always.  (As PostgreSQL's contrib/test_decoding replorigin.)
SELECT 'init' FROM pg_create_logical_replication_slot('origin_slot', 'cdc_relay');
CREATE TABLE origin_t (id int PRIMARY KEY);
SELECT pg_replication_origin_create('regress_cdc_relay_origin') > 0 AS created;

INSERT INTO origin_t VALUES (1);
-- replayed: in a session with a replication origin
SELECT pg_replication_origin_session_setup('regress_cdc_relay_origin');
BEGIN;
SELECT pg_replication_origin_xact_setup('0/AABBCCDD', '2024-01-01 00:00:00+00');
INSERT INTO origin_t VALUES (2);
SELECT 'msg' FROM pg_logical_emit_message(true, 'app', 'replayed');
COMMIT;
TRUNCATE origin_t;
SELECT pg_replication_origin_session_reset();
INSERT INTO origin_t VALUES (3);

-- default (any): everything
SELECT data FROM pg_logical_slot_peek_changes('origin_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
SELECT data FROM pg_logical_slot_peek_changes('origin_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
       'origin', 'any');
-- none: only the local transactions
SELECT data FROM pg_logical_slot_peek_changes('origin_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
       'origin', 'none');
-- a bad value names the valid ones
SELECT data FROM pg_logical_slot_peek_changes('origin_slot', NULL, NULL, 'origin', 'local');
SELECT data FROM pg_logical_slot_peek_changes('origin_slot', NULL, NULL, 'origin', '');

SELECT 'stop' FROM pg_drop_replication_slot('origin_slot');
SELECT pg_replication_origin_drop('regress_cdc_relay_origin');
DROP TABLE origin_t;
