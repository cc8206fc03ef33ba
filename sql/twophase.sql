-- twophase: prepared transactions.  cdc_relay has no two-phase callbacks,
-- so a prepared transaction is decoded once, at COMMIT PREPARED (nothing
-- at PREPARE TRANSACTION), and a ROLLBACK PREPARED one emits nothing; the
-- same holds for a slot created with two_phase => true.
SELECT 'init' FROM pg_create_logical_replication_slot('twophase_slot', 'cdc_relay');
SELECT 'init' FROM pg_create_logical_replication_slot('twophase_slot_2pc', 'cdc_relay', false, true);
SELECT slot_name, plugin, two_phase FROM pg_replication_slots
 WHERE slot_name LIKE 'twophase%' ORDER BY slot_name;

CREATE TABLE tp (id int PRIMARY KEY, v text);

BEGIN;
INSERT INTO tp VALUES (1, 'prepared then committed'), (2, 'x');
UPDATE tp SET v = 'y' WHERE id = 2;
PREPARE TRANSACTION 'tp_commit';

-- prepared but not committed: nothing yet, on either slot
SELECT data FROM pg_logical_slot_get_changes('twophase_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
SELECT data FROM pg_logical_slot_get_changes('twophase_slot_2pc', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

-- a normal transaction committed meanwhile comes out on its own
INSERT INTO tp VALUES (3, 'committed while prepared');
SELECT data FROM pg_logical_slot_get_changes('twophase_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
SELECT data FROM pg_logical_slot_get_changes('twophase_slot_2pc', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');

COMMIT PREPARED 'tp_commit';

-- now the prepared transaction's changes, once
SELECT data FROM pg_logical_slot_get_changes('twophase_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
SELECT data FROM pg_logical_slot_get_changes('twophase_slot_2pc', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
-- and not again
SELECT count(*) AS again FROM pg_logical_slot_get_changes('twophase_slot', NULL, NULL);
SELECT count(*) AS again FROM pg_logical_slot_get_changes('twophase_slot_2pc', NULL, NULL);

-- rolled back: nothing, before or after ROLLBACK PREPARED
BEGIN;
INSERT INTO tp VALUES (4, 'prepared then rolled back');
DELETE FROM tp WHERE id = 1;
PREPARE TRANSACTION 'tp_rollback';
SELECT count(*) AS while_prepared FROM pg_logical_slot_get_changes('twophase_slot', NULL, NULL);
SELECT count(*) AS while_prepared FROM pg_logical_slot_get_changes('twophase_slot_2pc', NULL, NULL);
ROLLBACK PREPARED 'tp_rollback';
SELECT count(*) AS after_rollback FROM pg_logical_slot_get_changes('twophase_slot', NULL, NULL);
SELECT count(*) AS after_rollback FROM pg_logical_slot_get_changes('twophase_slot_2pc', NULL, NULL);

-- prepared transaction with a subtransaction, committed after another one
BEGIN;
INSERT INTO tp VALUES (5, 'prepared 2');
SAVEPOINT s;
INSERT INTO tp VALUES (6, 'rolled back');
ROLLBACK TO SAVEPOINT s;
DELETE FROM tp WHERE id = 3;
PREPARE TRANSACTION 'tp_commit_2';
INSERT INTO tp VALUES (7, 'committed first');
COMMIT PREPARED 'tp_commit_2';
SELECT data FROM pg_logical_slot_peek_changes('twophase_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0');
SELECT count(*) AS events, count(data::json) AS valid_json,
       count(*) FILTER (WHERE data::jsonb->>'op' = 'begin') AS transactions
  FROM pg_logical_slot_peek_changes('twophase_slot_2pc', NULL, NULL);
-- both slots give the same output
SELECT (SELECT array_agg(data) FROM pg_logical_slot_get_changes('twophase_slot', NULL, NULL,
          'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0'))
     = (SELECT array_agg(data) FROM pg_logical_slot_get_changes('twophase_slot_2pc', NULL, NULL,
          'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0')) AS same_output;

SELECT count(*) AS prepared_left FROM pg_prepared_xacts WHERE gid LIKE 'tp\_%';
SELECT 'stop' FROM pg_drop_replication_slot('twophase_slot');
SELECT 'stop' FROM pg_drop_replication_slot('twophase_slot_2pc');
DROP TABLE tp;
