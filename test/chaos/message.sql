-- test/chaos/message.sql (pgbench): logical messages on their own: a non-transactional one
-- and a transaction whose only event is a message.
SELECT pg_logical_emit_message(false, 'chaos.nt', 'non-transactional ' || :client_id);
SELECT pg_logical_emit_message(true, 'chaos', 'alone ' || :client_id);
