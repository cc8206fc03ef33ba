/* cdc_relay--0.1.0--0.2.0.sql: update cdc_relay from 0.1.0 to 0.2.0 */

\echo Use "ALTER EXTENSION cdc_relay UPDATE TO '0.2.0'" to load this file. \quit

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
