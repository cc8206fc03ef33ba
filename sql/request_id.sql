-- request_id: cdc_relay.set_request_id() and cdc_relay.emit().
-- A request id, set first in a transaction, is carried by its begin (written
-- after it: skip-empty-xacts), every event (right after "seq") and its
-- commit; the id message itself is no event and takes no seq.  It does not
-- reach the next transaction of the connection.  emit() writes an "e"
-- event (topic, key, payload as JSON) in its place among the transaction's
-- events; nothing of a rolled-back transaction is decoded.
SELECT 'init' FROM pg_create_logical_replication_slot('reqid_slot', 'cdc_relay');
CREATE TABLE reqid_t (id int PRIMARY KEY, v text);

BEGIN;
SELECT cdc_relay.set_request_id('checkout-7f3a');
INSERT INTO reqid_t VALUES (1, 'a');
SELECT cdc_relay.emit(topic => 'orders.events', key => '1', payload => '{"type": "created", "id": 1, "lines": [1, 2.5, null, "x\ny"]}');
UPDATE reqid_t SET v = 'b' WHERE id = 1;
SELECT 'msg' FROM pg_logical_emit_message(true, 'app', 'm1');
COMMIT;
-- the next transaction on the same connection: no request id
INSERT INTO reqid_t VALUES (2, 'c');
-- an id that needs escaping; a NULL key; a scalar payload
BEGIN;
SELECT cdc_relay.set_request_id('say "hi" \ é');
SELECT cdc_relay.emit('a_b-C.9', NULL, '"just a string"');
DELETE FROM reqid_t WHERE id = 2;
TRUNCATE reqid_t;
COMMIT;
-- a transaction with only a request id: nothing at all
BEGIN;
SELECT cdc_relay.set_request_id('empty');
COMMIT;
-- rolled back: nothing, neither the id nor the domain event nor the row
BEGIN;
SELECT cdc_relay.set_request_id('rolled-back');
SELECT cdc_relay.emit('orders.events', '9', '{"never": true}');
INSERT INTO reqid_t VALUES (9, 'never');
ROLLBACK;
-- emit without a request id
SELECT cdc_relay.emit('orders.events', '', '[]');
-- a domain event of a subtransaction rolled back is gone; the others stay
BEGIN;
SELECT cdc_relay.set_request_id('with-savepoint');
SAVEPOINT s1;
SELECT cdc_relay.emit('orders.events', 'sub-rolled-back', '1');
ROLLBACK TO SAVEPOINT s1;
SAVEPOINT s2;
SELECT cdc_relay.emit('orders.events', 'sub-released', '2');
RELEASE SAVEPOINT s2;
COMMIT;

SELECT data FROM pg_logical_slot_peek_changes('reqid_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
-- with every option: the field order of begin, events and commit
SELECT regexp_replace(regexp_replace(regexp_replace(data, '"xid":[0-9]+', '"xid":X', 'g'),
         '"(lsn|commit_lsn|end_lsn)":"[0-9A-F]+/[0-9A-F]+"', '"\1":"L"', 'g'),
         '"ts":"[^"]*"', '"ts":"T"', 'g') AS data
  FROM pg_logical_slot_peek_changes('reqid_slot', NULL, NULL)
 LIMIT 7;
-- every event of the first three transactions parses as JSON; the ids
-- decode back to what was set; the payload is JSON, not a string
SELECT data::jsonb->>'op' AS op, data::jsonb->>'request_id' AS request_id,
       jsonb_typeof(data::jsonb->'payload') AS payload_type, (data::jsonb->>'seq')::int AS seq
  FROM pg_logical_slot_get_changes('reqid_slot', NULL, NULL);

-- without skip-empty-xacts the begin is written before the id is known
BEGIN;
SELECT cdc_relay.set_request_id('late');
INSERT INTO reqid_t VALUES (3, 'd');
COMMIT;
SELECT data FROM pg_logical_slot_get_changes('reqid_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
       'skip-empty-xacts', '0');

-- message-prefixes does not filter the relay's own messages
BEGIN;
SELECT cdc_relay.set_request_id('filtered');
SELECT cdc_relay.emit('orders.events', '4', '{}');
SELECT 'msg' FROM pg_logical_emit_message(true, 'other', 'dropped');
COMMIT;
SELECT data FROM pg_logical_slot_get_changes('reqid_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0',
       'message-prefixes', 'app');

-- hand-written messages with the reserved prefixes that are not valid:
-- ordinary messages (with a warning for emit, naming its LSN: not shown
-- here), nothing lost
BEGIN;
SELECT 'msg' FROM pg_logical_emit_message(true, 'cdc_relay.request_id', E'bad\nid');
SELECT 'msg' FROM pg_logical_emit_message(true, 'cdc_relay.emit', 'no separators');
COMMIT;
SET client_min_messages = error;
SELECT data FROM pg_logical_slot_get_changes('reqid_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
RESET client_min_messages;

-- errors
BEGIN;
INSERT INTO reqid_t VALUES (5, 'e');
SELECT cdc_relay.set_request_id('too-late');
ROLLBACK;
BEGIN;
SELECT cdc_relay.set_request_id('once');
SELECT cdc_relay.set_request_id('twice');
ROLLBACK;
BEGIN;
SAVEPOINT s;
SELECT cdc_relay.set_request_id('in-savepoint');
ROLLBACK;
SELECT cdc_relay.set_request_id('');
SELECT cdc_relay.set_request_id(repeat('x', 257));
SELECT cdc_relay.set_request_id(repeat('x', 256));
SELECT cdc_relay.set_request_id(E'tab\there');
SELECT cdc_relay.set_request_id(NULL);
SELECT cdc_relay.emit('', '1', '{}');
SELECT cdc_relay.emit('.', '1', '{}');
SELECT cdc_relay.emit('..', '1', '{}');
SELECT cdc_relay.emit('orders events', '1', '{}');
SELECT cdc_relay.emit('orders/events', '1', '{}');
SELECT cdc_relay.emit(repeat('t', 250), '1', '{}');
SELECT cdc_relay.emit(repeat('t', 249), '1', '{}');
SELECT cdc_relay.emit(NULL, '1', '{}');
SELECT cdc_relay.emit('t', '1', NULL);
SELECT count(*) AS events_from_errors_and_ids_alone
  FROM pg_logical_slot_get_changes('reqid_slot', NULL, NULL)
 WHERE data::jsonb->>'op' NOT IN ('begin', 'commit', 'e');

SELECT 'stop' FROM pg_drop_replication_slot('reqid_slot');
DROP TABLE reqid_t;
