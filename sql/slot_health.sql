-- slot_health: the view cdc_relay.slot_health on a server without the
-- preloaded sampler (test/logical.conf): the sampler's functions return no
-- rows, the WAL rate comes from pg_stat_wal, and a slot no consumer is
-- connected to is 'not connected'.  (The other causes need a consumer and
-- time: test/tap/120_slot_health.pl produces each of them.)
\set VERBOSITY terse
SELECT count(*) AS samples FROM cdc_relay.wal_samples();
SELECT count(*) AS tracked_slots FROM cdc_relay.slot_progress();

SELECT attname, format_type(atttypid, atttypmod) AS type
  FROM pg_attribute WHERE attrelid = 'cdc_relay.slot_health'::regclass AND attnum > 0
 ORDER BY attnum;

SELECT 'health' FROM pg_create_logical_replication_slot('health_slot', 'cdc_relay');
CREATE TABLE health_t (id int PRIMARY KEY, v text);
INSERT INTO health_t SELECT g, repeat('x', 100) FROM generate_series(1, 1000) g;

SELECT slot_name, plugin, database = current_database() AS this_db, active, active_pid,
       restart_lsn IS NOT NULL AS has_restart,
       retained_wal_bytes = (pg_current_wal_insert_lsn() - restart_lsn)::int8 AS retained_ok,
       confirmed_lag_bytes > 100000 AS lag_counts_the_inserts,
       retained_wal_bytes >= confirmed_lag_bytes AS retained_covers_lag,
       wal_status, safe_wal_size, rate_source, wal_rate_bytes_per_s >= 0 AS rate_known,
       seconds_until_invalidated, cause, cause_detail
  FROM cdc_relay.slot_health WHERE slot_name = 'health_slot';

-- physical slots are not listed
SELECT 'phys' FROM pg_create_physical_replication_slot('health_physical', true);
SELECT count(*) AS physical_listed FROM cdc_relay.slot_health WHERE slot_name = 'health_physical';

-- anyone may look
CREATE ROLE health_reader;
SET ROLE health_reader;
SELECT slot_name, cause FROM cdc_relay.slot_health WHERE slot_name = 'health_slot';
RESET ROLE;
DROP ROLE health_reader;

SELECT pg_drop_replication_slot('health_slot');
SELECT pg_drop_replication_slot('health_physical');
DROP TABLE health_t;
