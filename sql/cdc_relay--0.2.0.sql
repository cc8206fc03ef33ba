/* cdc_relay--0.2.0.sql: SQL objects of the cdc_relay extension */

\echo Use "CREATE EXTENSION cdc_relay" to load this file. \quit

-- First of all: refuse a schema cdc_relay that CREATE EXTENSION did not
-- create and that a role other than a superuser owns, can write to, or has
-- put objects in (the extension's callers, often superusers, would run
-- them).  The check is a temporary function, so that nothing is created
-- in the schema or called from it before it has been checked; it is gone
-- when the script ends.
CREATE FUNCTION pg_temp.cdc_relay_check_install_schema() RETURNS void
AS 'MODULE_PATHNAME', 'cdc_relay_check_install_schema'
LANGUAGE C;
SELECT pg_temp.cdc_relay_check_install_schema();
DROP FUNCTION pg_temp.cdc_relay_check_install_schema();

-- The logical decoding output plugin itself needs no SQL objects: it is
-- loaded by library name (pg_recvlogical -P cdc_relay).  These functions
-- help applications and operators around it.

CREATE FUNCTION cdc_relay.version() RETURNS text
AS 'MODULE_PATHNAME', 'cdc_relay_version'
LANGUAGE C STRICT IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION cdc_relay.version() IS
'version of the loaded cdc_relay library';

-- One row per prerequisite for streaming changes with cdc_relay, with the
-- current state and the exact fix for anything that is not ok.
CREATE FUNCTION cdc_relay.check_setup(
    OUT "check" text, OUT ok boolean, OUT current text, OUT fix text)
RETURNS SETOF record
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    libs        text;
    readable    boolean := true;
    items       text[];
    slots_max   int := current_setting('max_replication_slots')::int;
    slots_used  int;
    senders_max int := current_setting('max_wal_senders')::int;
    senders_used int;
    can_repl    boolean;
BEGIN
    "check" := 'wal_level';
    current := current_setting('wal_level');
    ok := current = 'logical';
    fix := CASE WHEN ok THEN NULL ELSE
        'ALTER SYSTEM SET wal_level = logical; then restart the server' END;
    RETURN NEXT;

    -- Reading output_plugin_libraries needs superuser or pg_read_all_settings.
    BEGIN
        libs := current_setting('output_plugin_libraries', true);
    EXCEPTION WHEN insufficient_privilege THEN
        readable := false;
    END;
    "check" := 'output_plugin_libraries';
    IF NOT readable THEN
        current := 'unknown: reading it needs superuser or pg_read_all_settings';
        ok := NULL;
        fix := format('GRANT pg_read_all_settings TO %I; (or run this check as a superuser)',
                      current_user);
    ELSIF libs IS NULL THEN
        current := '(not a parameter of this server: every plugin is allowed)';
        ok := true;
        fix := NULL;
    ELSE
        current := libs;
        -- A GUC list: items separated by commas, double-quoted when they
        -- contain anything unusual ("" inside quotes is one quote).
        SELECT coalesce(array_agg(item ORDER BY n) FILTER (WHERE item <> ''), '{}')
          INTO items
          FROM (SELECT CASE WHEN m[1] LIKE '"%'
                            THEN replace(substr(m[1], 2, length(m[1]) - 2), '""', '"')
                            ELSE m[1] END AS item, n
                  FROM regexp_matches(libs, '\s*("(?:[^"]|"")*"|[^,]*?)\s*(?:,|$)', 'g')
                       WITH ORDINALITY AS r(m, n)) AS parsed;
        ok := 'cdc_relay' = ANY (items);
        fix := CASE WHEN ok THEN NULL ELSE
            format('ALTER SYSTEM SET output_plugin_libraries = %s; SELECT pg_reload_conf();',
                   (SELECT string_agg(quote_literal(i), ', ' ORDER BY o)
                      FROM unnest(items || ARRAY['cdc_relay']) WITH ORDINALITY AS u(i, o))) END;
    END IF;
    RETURN NEXT;

    SELECT count(*) INTO slots_used FROM pg_replication_slots;
    "check" := 'free replication slots';
    current := format('%s of %s in use', slots_used, slots_max);
    ok := slots_used < slots_max;
    fix := CASE WHEN ok THEN NULL ELSE
        format('ALTER SYSTEM SET max_replication_slots = %s; then restart the server (or drop unused slots with pg_drop_replication_slot)',
               slots_max + 2) END;
    RETURN NEXT;

    SELECT count(*) INTO senders_used FROM pg_stat_replication;
    "check" := 'free wal senders';
    current := format('%s of %s in use', senders_used, senders_max);
    ok := senders_used < senders_max;
    fix := CASE WHEN ok THEN NULL ELSE
        format('ALTER SYSTEM SET max_wal_senders = %s; then restart the server',
               senders_max + 2) END;
    RETURN NEXT;

    SELECT rolreplication OR rolsuper INTO can_repl
      FROM pg_roles WHERE rolname = current_user;
    "check" := 'replication privilege';
    current := format('role %I %s', current_user,
                      CASE WHEN can_repl THEN 'has REPLICATION' ELSE 'lacks REPLICATION' END);
    ok := can_repl;
    fix := CASE WHEN ok THEN NULL ELSE
        format('ALTER ROLE %I REPLICATION;', current_user) END;
    RETURN NEXT;
END
$fn$;

GRANT USAGE ON SCHEMA cdc_relay TO PUBLIC;

COMMENT ON FUNCTION cdc_relay.check_setup() IS
'prerequisites for logical decoding with cdc_relay: state and fix for each';

-- Initial snapshot (0.2.0).  Both functions take the output plugin's
-- options as name/value pairs, the way pg_logical_slot_get_changes() takes
-- them, so that a snapshot and the stream after it agree on tables, names,
-- keys and values.

-- The tables an initial snapshot must read for a plugin run with these
-- options: permanent ordinary tables and leaf partitions on which the plugin
-- would emit inserts, with the names its events carry.
CREATE FUNCTION cdc_relay.snapshot_tables(options text[] DEFAULT '{}')
RETURNS TABLE (relid regclass, schema_name text, table_name text,
               reltuples float8, relpages int8)
AS 'MODULE_PATHNAME', 'cdc_relay_snapshot_tables'
LANGUAGE C STRICT STABLE;

COMMENT ON FUNCTION cdc_relay.snapshot_tables(text[]) IS
'tables an initial snapshot must read for cdc_relay run with these options';

-- One table row as <key JSON> TAB <snapshot read event JSON>, encoded as the
-- plugin encodes an insert (t.* is the whole row: a bare t would mean a
-- column t if the table has one; every argument is cast, so that no
-- function of another schema on the caller's search_path is a better match):
--   COPY (SELECT cdc_relay.snapshot_row('s.t'::pg_catalog.regclass, t.*,
--                                       '0/16B3748'::pg_catalog.pg_lsn,
--                                       '{}'::pg_catalog.text[])
--           FROM ONLY s.t t) TO STDOUT
CREATE FUNCTION cdc_relay.snapshot_row(rel regclass, r record, lsn pg_lsn,
                                       options text[] DEFAULT '{}')
RETURNS text
AS 'MODULE_PATHNAME', 'cdc_relay_snapshot_row'
LANGUAGE C STRICT STABLE PARALLEL SAFE;

COMMENT ON FUNCTION cdc_relay.snapshot_row(regclass, record, pg_lsn, text[]) IS
'a table row as key, tab and snapshot read event, encoded as cdc_relay encodes an insert';

GRANT EXECUTE ON FUNCTION cdc_relay.snapshot_tables(text[]) TO PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_relay.snapshot_row(regclass, record, pg_lsn, text[]) TO PUBLIC;
