-- check_setup: cdc_relay.check_setup() finds every prerequisite met on the
-- test server, and when one is not (cdc_relay missing from
-- output_plugin_libraries, no free replication slot, a role without
-- REPLICATION) says so with a fix that works when executed.  Also what the
-- server says when a cdc_relay slot is used while output_plugin_libraries
-- lacks cdc_relay.  output_plugin_libraries is changed with SET (superuser,
-- this session only), never with ALTER SYSTEM, so other tests are unaffected.
\set VERBOSITY default
SET client_min_messages = warning;
CREATE EXTENSION IF NOT EXISTS cdc_relay;
RESET client_min_messages;

-- everything ok here, and no fix where ok
SELECT "check", ok FROM cdc_relay.check_setup() ORDER BY 1;
SELECT "check", current FROM cdc_relay.check_setup()
 WHERE "check" IN ('wal_level', 'output_plugin_libraries', 'replication privilege') ORDER BY 1;
SELECT count(*) AS checks, count(*) FILTER (WHERE ok AND fix IS NULL) AS ok_without_fix
  FROM cdc_relay.check_setup();

CREATE TABLE chk_t (id int PRIMARY KEY);
SELECT 'init' FROM pg_create_logical_replication_slot('check_setup_slot', 'cdc_relay');
INSERT INTO chk_t VALUES (1);

-- Execute the output_plugin_libraries fix in this session (its ALTER SYSTEM
-- SET part as SET): whether it runs, the resulting setting, and whether
-- check_setup() is then satisfied.
CREATE FUNCTION chk_apply_libraries_fix(OUT applied text, OUT now_ok boolean)
LANGUAGE plpgsql AS $$
DECLARE
  f text;
BEGIN
  SELECT fix INTO f FROM cdc_relay.check_setup() WHERE "check" = 'output_plugin_libraries';
  IF f IS NULL THEN
    applied := 'no fix';
  ELSE
    BEGIN
      EXECUTE replace(split_part(f, '; SELECT pg_reload_conf()', 1), 'ALTER SYSTEM SET', 'SET');
      applied := current_setting('output_plugin_libraries');
    EXCEPTION WHEN OTHERS THEN
      applied := 'fix failed: ' || SQLSTATE || ' ' || SQLERRM;
    END;
  END IF;
  SELECT ok INTO now_ok FROM cdc_relay.check_setup() WHERE "check" = 'output_plugin_libraries';
END
$$;
--
-- output_plugin_libraries without cdc_relay
--
SET output_plugin_libraries = pgoutput;
SELECT "check", ok, current, fix FROM cdc_relay.check_setup() WHERE "check" = 'output_plugin_libraries';
-- what a client gets from the server then, for an existing slot and for a
-- new one
SELECT data FROM pg_logical_slot_get_changes('check_setup_slot', NULL, NULL);
\echo :LAST_ERROR_SQLSTATE
SELECT 'init' FROM pg_create_logical_replication_slot('check_setup_slot2', 'cdc_relay');
\echo :LAST_ERROR_SQLSTATE
-- the fix works
SELECT * FROM chk_apply_libraries_fix();
SELECT count(*) AS decoded FROM pg_logical_slot_peek_changes('check_setup_slot', NULL, NULL);

-- other settings lacking cdc_relay: empty, several libraries, a library
-- given by path (needs quoting)
SET output_plugin_libraries = '';
SELECT "check", ok, current, fix FROM cdc_relay.check_setup() WHERE "check" = 'output_plugin_libraries';
SELECT * FROM chk_apply_libraries_fix();
SELECT count(*) AS decoded FROM pg_logical_slot_peek_changes('check_setup_slot', NULL, NULL);
SET output_plugin_libraries = pgoutput, test_decoding;
SELECT "check", ok, current, fix FROM cdc_relay.check_setup() WHERE "check" = 'output_plugin_libraries';
SELECT * FROM chk_apply_libraries_fix();
SELECT count(*) AS decoded FROM pg_logical_slot_peek_changes('check_setup_slot', NULL, NULL);
SET output_plugin_libraries = pgoutput, '$libdir/wal2json';
SELECT "check", ok, current FROM cdc_relay.check_setup() WHERE "check" = 'output_plugin_libraries';
SELECT * FROM chk_apply_libraries_fix();
SELECT count(*) AS decoded FROM pg_logical_slot_peek_changes('check_setup_slot', NULL, NULL);
-- names are compared exactly, as the server does
SET output_plugin_libraries = pgoutput, 'CDC_RELAY';
SELECT "check", ok, current FROM cdc_relay.check_setup() WHERE "check" = 'output_plugin_libraries';
SELECT count(*) AS decoded FROM pg_logical_slot_peek_changes('check_setup_slot', NULL, NULL);
-- a common mistake: the whole list quoted as one name (ALTER SYSTEM SET
-- output_plugin_libraries = 'pgoutput, cdc_relay' does the same); the
-- server does not accept cdc_relay then, so neither may check_setup()
SET output_plugin_libraries = 'pgoutput, cdc_relay';
SHOW output_plugin_libraries;
SELECT count(*) AS decoded FROM pg_logical_slot_peek_changes('check_setup_slot', NULL, NULL);
SELECT "check", ok FROM cdc_relay.check_setup() WHERE "check" = 'output_plugin_libraries';
-- written as a list it is fine
SET output_plugin_libraries = pgoutput, cdc_relay;
SELECT count(*) AS decoded FROM pg_logical_slot_peek_changes('check_setup_slot', NULL, NULL);
SELECT "check", ok FROM cdc_relay.check_setup() WHERE "check" = 'output_plugin_libraries';
RESET output_plugin_libraries;

--
-- no free replication slot
--
SELECT count(*) > 0 AS created
  FROM generate_series(1, current_setting('max_replication_slots')::int
                          - (SELECT count(*)::int FROM pg_replication_slots)) AS g,
       LATERAL pg_create_physical_replication_slot('chk_fill_' || g);
SELECT "check", ok, fix FROM cdc_relay.check_setup() WHERE "check" = 'free replication slots';
SELECT count(pg_drop_replication_slot(slot_name)) > 0 AS dropped
  FROM pg_replication_slots WHERE slot_name LIKE 'chk\_fill\_%';
SELECT "check", ok, fix FROM cdc_relay.check_setup() WHERE "check" = 'free replication slots';

--
-- a role without REPLICATION
--
CREATE TEMP TABLE chk_fix (fix text);
GRANT SELECT, INSERT, DELETE ON chk_fix TO PUBLIC;
CREATE ROLE regress_chk_norepl;
GRANT USAGE ON SCHEMA cdc_relay TO regress_chk_norepl;
SET ROLE regress_chk_norepl;
SELECT data FROM pg_logical_slot_peek_changes('check_setup_slot', NULL, NULL);
-- check_setup() is for exactly this role: it must work without the
-- privilege to read output_plugin_libraries (pg_read_all_settings)
SELECT count(*) AS checks FROM cdc_relay.check_setup();
SELECT "check", ok, current, fix FROM cdc_relay.check_setup() WHERE "check" = 'replication privilege';
RESET ROLE;
-- with pg_read_all_settings
GRANT pg_read_all_settings TO regress_chk_norepl;
SET ROLE regress_chk_norepl;
SELECT "check", ok FROM cdc_relay.check_setup() ORDER BY 1;
SELECT "check", ok, current, fix FROM cdc_relay.check_setup() WHERE "check" = 'replication privilege';
INSERT INTO chk_fix SELECT fix FROM cdc_relay.check_setup() WHERE "check" = 'replication privilege';
RESET ROLE;
-- the fix, run by a superuser, works
DO $$ BEGIN EXECUTE (SELECT fix FROM chk_fix); END $$;
SET ROLE regress_chk_norepl;
SELECT "check", ok, current, fix FROM cdc_relay.check_setup() WHERE "check" = 'replication privilege';
SELECT count(*) AS decoded FROM pg_logical_slot_peek_changes('check_setup_slot', NULL, NULL);
RESET ROLE;
-- a role name that needs quoting is quoted in the fix
CREATE ROLE "Regress Chk User" IN ROLE pg_read_all_settings;
GRANT USAGE ON SCHEMA cdc_relay TO "Regress Chk User";
SET ROLE "Regress Chk User";
SELECT "check", ok, current, fix FROM cdc_relay.check_setup() WHERE "check" = 'replication privilege';
DELETE FROM chk_fix;
INSERT INTO chk_fix SELECT fix FROM cdc_relay.check_setup() WHERE "check" = 'replication privilege';
RESET ROLE;
DO $$ BEGIN EXECUTE (SELECT fix FROM chk_fix); END $$;
SELECT rolname, rolreplication FROM pg_roles WHERE rolname IN ('regress_chk_norepl', 'Regress Chk User') ORDER BY 1;

SELECT pg_drop_replication_slot('check_setup_slot');
DROP FUNCTION chk_apply_libraries_fix();
DROP TABLE chk_t, chk_fix;
REVOKE USAGE ON SCHEMA cdc_relay FROM regress_chk_norepl, "Regress Chk User";
DROP ROLE regress_chk_norepl, "Regress Chk User";
