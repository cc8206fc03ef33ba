/* cdc_relay--0.3.0.sql: SQL objects of the cdc_relay extension */

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
-- current state and the exact fix for anything that is not ok.  cdc-relay
-- asks this function where the extension is installed, and prints the same
-- fixes where it is not (0.3.0: role names always double-quoted, as the
-- relay has always written them).
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
    -- the role, always double-quoted, as cdc-relay writes it in its fixes
    me          text := '"' || replace(current_user, '"', '""') || '"';
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
        fix := format('GRANT pg_read_all_settings TO %s; (or run this check as a superuser)', me);
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
        format('ALTER ROLE %s REPLICATION;', me) END;
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

-- Slot health (0.3.0): why a logical slot retains WAL, and how long until
-- max_slot_wal_keep_size invalidates it at the current WAL write rate.

-- The WAL sampler's ring (cdc_relay in shared_preload_libraries: a sample
-- every cdc_relay.wal_sample_interval, the last 30 kept), oldest first; no
-- rows without the preload.
CREATE FUNCTION cdc_relay.wal_samples(OUT sampled_at timestamptz, OUT insert_lsn pg_lsn)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'cdc_relay_wal_samples'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION cdc_relay.wal_samples() IS
'WAL insert positions sampled by the cdc_relay background worker, oldest first (empty unless cdc_relay is preloaded)';

-- Per logical slot, what the sampler saw: its confirmed_flush_lsn, since
-- when it has that value, and when a consumer was last connected.
CREATE FUNCTION cdc_relay.slot_progress(
    OUT slot_name name, OUT confirmed_flush_lsn pg_lsn,
    OUT confirmed_since timestamptz, OUT last_active_at timestamptz)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'cdc_relay_slot_progress'
LANGUAGE C STRICT VOLATILE;

COMMENT ON FUNCTION cdc_relay.slot_progress() IS
'per logical slot: confirmed position last sampled, since when, and when a consumer was last connected (empty unless cdc_relay is preloaded)';

-- One row per logical slot.  The cause of retention, first rule that holds:
--   lost             wal_status is 'lost': the server removed WAL the slot needed
--   not connected    no consumer is connected to the slot
--   old transaction  a transaction that wrote (has an xid; in any database) or a
--                    prepared transaction has been open for more than 10 s, and
--                    the consumer confirmed past the slot's restart point: the
--                    restart point (and catalog_xmin) cannot pass the start of a
--                    running transaction, so it holds the WAL from there on
--   behind           the consumer is connected but has not confirmed: more than
--                    cdc_relay.behind_bytes (16MB) of WAL unconfirmed, or more
--                    than 8kB unconfirmed and the confirmed position unchanged
--                    for more than cdc_relay.behind_seconds (30 s)
--   idle             none of these: nothing (much) to confirm
CREATE VIEW cdc_relay.slot_health AS
WITH here AS (
    SELECT pg_catalog.pg_current_wal_insert_lsn() AS insert_lsn,
           pg_catalog.clock_timestamp() AS at,
           pg_catalog.current_setting('max_slot_wal_keep_size') <> '-1' AS keep_size_set,
           COALESCE(pg_catalog.pg_size_bytes(
               NULLIF(pg_catalog.current_setting('cdc_relay.behind_bytes', true), '')), 16777216) AS behind_bytes,
           COALESCE(NULLIF(pg_catalog.current_setting('cdc_relay.behind_seconds', true), '')::float8,
                    30) AS behind_seconds
), sampled AS (
    SELECT pg_catalog.count(*) AS n,
           (pg_catalog.max(w.insert_lsn) OPERATOR(pg_catalog.-) pg_catalog.min(w.insert_lsn))::float8
             / NULLIF(EXTRACT(epoch FROM pg_catalog.max(w.sampled_at) OPERATOR(pg_catalog.-)
                                         pg_catalog.min(w.sampled_at))::float8, 0) AS rate
      FROM cdc_relay.wal_samples() w
), rate AS (
    SELECT CASE WHEN s.n >= 2 AND s.rate IS NOT NULL THEN s.rate
                ELSE w.wal_bytes::float8
                     / NULLIF(EXTRACT(epoch FROM h.at OPERATOR(pg_catalog.-)
                                      COALESCE(w.stats_reset, pg_catalog.pg_postmaster_start_time()))::float8, 0)
           END AS bytes_per_s,
           CASE WHEN s.n >= 2 AND s.rate IS NOT NULL THEN 'sampled' ELSE 'since stats reset' END AS source
      FROM sampled s, pg_catalog.pg_stat_wal w, here h
), slots AS (
    SELECT s.slot_name, s.plugin, s.database, s.active, s.active_pid, s.restart_lsn,
           s.confirmed_flush_lsn, s.wal_status, s.safe_wal_size, s.catalog_xmin,
           (h.insert_lsn OPERATOR(pg_catalog.-) s.restart_lsn)::int8 AS retained_wal_bytes,
           (h.insert_lsn OPERATOR(pg_catalog.-) s.confirmed_flush_lsn)::int8 AS confirmed_lag_bytes,
           EXTRACT(epoch FROM h.at OPERATOR(pg_catalog.-) COALESCE(p.confirmed_since, r.reply_time))::float8
             AS unconfirmed_s,
           EXTRACT(epoch FROM h.at OPERATOR(pg_catalog.-) p.last_active_at)::float8 AS unseen_s,
           p.slot_name IS NOT NULL AS sampled,
           h.at, h.keep_size_set, h.behind_bytes, h.behind_seconds
      FROM pg_catalog.pg_replication_slots s
     CROSS JOIN here h
      LEFT JOIN pg_catalog.pg_stat_replication r ON r.pid OPERATOR(pg_catalog.=) s.active_pid
      LEFT JOIN cdc_relay.slot_progress() p ON p.slot_name OPERATOR(pg_catalog.=) s.slot_name
     WHERE s.slot_type OPERATOR(pg_catalog.=) 'logical'
)
SELECT s.slot_name, s.plugin, s.database, s.active, s.active_pid, s.restart_lsn,
       s.confirmed_flush_lsn, s.retained_wal_bytes, s.confirmed_lag_bytes, s.wal_status,
       s.safe_wal_size, rt.bytes_per_s AS wal_rate_bytes_per_s, rt.source AS rate_source,
       CASE WHEN s.keep_size_set AND rt.bytes_per_s > 0 AND s.safe_wal_size IS NOT NULL
            THEN GREATEST(s.safe_wal_size, 0)::float8 / rt.bytes_per_s END AS seconds_until_invalidated,
       CASE WHEN s.wal_status OPERATOR(pg_catalog.=) 'lost' THEN 'lost'
            WHEN NOT s.active THEN 'not connected'
            WHEN o.detail IS NOT NULL THEN 'old transaction'
            WHEN s.confirmed_lag_bytes > s.behind_bytes
              OR (s.confirmed_lag_bytes > 8192 AND s.unconfirmed_s > s.behind_seconds) THEN 'behind'
            ELSE 'idle' END AS cause,
       CASE WHEN s.wal_status OPERATOR(pg_catalog.=) 'lost'
            THEN 'the server removed WAL the slot still needed (max_slot_wal_keep_size); the slot is unusable'
            WHEN NOT s.active
            THEN CASE WHEN s.unseen_s IS NOT NULL
                      THEN pg_catalog.format('no consumer connected; last seen %s s ago', pg_catalog.round(s.unseen_s::numeric))
                      WHEN s.sampled THEN 'no consumer connected since the sampler started'
                      ELSE 'no consumer connected' END
            WHEN o.detail IS NOT NULL THEN o.detail
            WHEN s.confirmed_lag_bytes > s.behind_bytes
              OR (s.confirmed_lag_bytes > 8192 AND s.unconfirmed_s > s.behind_seconds)
            THEN pg_catalog.format('%s bytes not confirmed; confirmed position unchanged for %s s',
                                   s.confirmed_lag_bytes, pg_catalog.round(s.unconfirmed_s::numeric))
            ELSE pg_catalog.format('%s bytes not confirmed', s.confirmed_lag_bytes) END AS cause_detail
  FROM slots s
 CROSS JOIN rate rt
  LEFT JOIN LATERAL (
      SELECT x.detail
        FROM (SELECT a.xact_start AS since,
                     pg_catalog.format('server process %s (user %s, application %s) has had transaction %s open since %s',
                                       a.pid, a.usename, pg_catalog.quote_literal(a.application_name),
                                       a.backend_xid, a.xact_start) AS detail
                FROM pg_catalog.pg_stat_activity a
               WHERE a.backend_xid IS NOT NULL
              UNION ALL
              SELECT p.prepared,
                     pg_catalog.format('prepared transaction %s (xid %s) has been waiting for COMMIT PREPARED since %s',
                                       pg_catalog.quote_literal(p.gid), p.transaction, p.prepared)
                FROM pg_catalog.pg_prepared_xacts p) x
       WHERE s.restart_lsn OPERATOR(pg_catalog.<) s.confirmed_flush_lsn
         AND x.since < s.at OPERATOR(pg_catalog.-) interval '10 seconds'
       ORDER BY x.since
       LIMIT 1) o ON true;

COMMENT ON VIEW cdc_relay.slot_health IS
'per logical slot: retained WAL, WAL write rate, time until invalidation, and the cause of retention';

GRANT EXECUTE ON FUNCTION cdc_relay.wal_samples() TO PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_relay.slot_progress() TO PUBLIC;
GRANT SELECT ON cdc_relay.slot_health TO PUBLIC;

-- 0.4.0 ---------------------------------------------------------------------

-- [online] online snapshots on request (helper A)

-- One row per online snapshot requested with cdc_relay.request_snapshot();
-- the relay updates its progress as it reads chunks (it needs UPDATE on this
-- table when it does not own it).  Kept by pg_dump (a configuration table).
CREATE TABLE cdc_relay.snapshot_jobs (
    id           bigserial PRIMARY KEY,
    relid        oid NOT NULL,
    table_name   text NOT NULL,
    "where"      text,
    requested_at timestamptz NOT NULL DEFAULT pg_catalog.now(),
    requested_by name NOT NULL,
    status       text NOT NULL DEFAULT 'requested'
                 CHECK (status IN ('requested', 'running', 'done', 'failed', 'cancelled')),
    chunks       bigint NOT NULL DEFAULT 0,
    rows         bigint NOT NULL DEFAULT 0,
    last_key     text,
    updated_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    error        text
);

COMMENT ON TABLE cdc_relay.snapshot_jobs IS
'online snapshots requested with cdc_relay.request_snapshot(), and their progress';

SELECT pg_catalog.pg_extension_config_dump('cdc_relay.snapshot_jobs', '');
SELECT pg_catalog.pg_extension_config_dump('cdc_relay.snapshot_jobs_id_seq', '');

CREATE VIEW cdc_relay.snapshot_progress AS
SELECT id, table_name, "where", status, chunks, rows, last_key, requested_at, requested_by,
       updated_at, updated_at OPERATOR(pg_catalog.-) requested_at AS elapsed, error
  FROM cdc_relay.snapshot_jobs
 ORDER BY id;

COMMENT ON VIEW cdc_relay.snapshot_progress IS
'online snapshots and their progress, newest last';

-- Request an online snapshot of rel (rows matching "where", one boolean
-- expression on the table's columns; NULL: all rows).  Returns the job id.
-- "where" is a reserved word: call it positionally, or with
-- "where" => '...' (quoted) in named notation.
CREATE FUNCTION cdc_relay.request_snapshot(rel regclass, "where" text DEFAULT NULL)
RETURNS bigint
AS 'MODULE_PATHNAME', 'cdc_relay_request_snapshot'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION cdc_relay.request_snapshot(regclass, text) IS
'request an online snapshot of a table (optionally of the rows matching a condition) from a running cdc-relay';

REVOKE EXECUTE ON FUNCTION cdc_relay.request_snapshot(regclass, text) FROM PUBLIC;
GRANT SELECT ON cdc_relay.snapshot_jobs TO PUBLIC;
GRANT SELECT ON cdc_relay.snapshot_progress TO PUBLIC;

-- [reqid] request ids, domain events (helper B)
CREATE FUNCTION cdc_relay.set_request_id(id text) RETURNS void
AS 'MODULE_PATHNAME', 'cdc_relay_set_request_id'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION cdc_relay.set_request_id(text) IS
'first in a transaction: every change event of the transaction carries this request id (cdc_relay stream and Kafka header request_id)';

CREATE FUNCTION cdc_relay.emit(topic text, key text, payload jsonb) RETURNS void
AS 'MODULE_PATHNAME', 'cdc_relay_emit'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION cdc_relay.emit(text, text, jsonb) IS
'a domain event: cdc-relay produces payload to Kafka topic "topic" with key "key", in commit order, only if the transaction commits';

GRANT EXECUTE ON FUNCTION cdc_relay.set_request_id(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION cdc_relay.emit(text, text, jsonb) TO PUBLIC;

-- [schema] schema events, DDL capture (helper C)

-- A relation's shape as the schema event ("op":"s") the plugin writes before
-- its first change, with "snapshot":true in place of the transaction tail:
-- the relay writes one per captured table at the start of a snapshot.
CREATE FUNCTION cdc_relay.table_schema(rel regclass, options text[] DEFAULT '{}')
RETURNS text
AS 'MODULE_PATHNAME', 'cdc_relay_table_schema'
LANGUAGE C STRICT STABLE;

COMMENT ON FUNCTION cdc_relay.table_schema(regclass, text[]) IS
'a table''s shape (columns, types, key, replica identity) as the schema event cdc_relay writes';

GRANT EXECUTE ON FUNCTION cdc_relay.table_schema(regclass, text[]) TO PUBLIC;

-- DDL capture: every DDL command (ddl_command_end) written as a transactional
-- logical message with prefix cdc_relay.ddl, decoded with the plugin option
-- schema-events; cdc_relay.capture_ddl = on (default) | strict | off.
CREATE FUNCTION cdc_relay.capture_ddl()
RETURNS event_trigger
AS 'MODULE_PATHNAME', 'cdc_relay_capture_ddl'
LANGUAGE C;

COMMENT ON FUNCTION cdc_relay.capture_ddl() IS
'event trigger function: writes each DDL command as a cdc_relay.ddl logical message';

CREATE EVENT TRIGGER cdc_relay_capture_ddl ON ddl_command_end
    EXECUTE FUNCTION cdc_relay.capture_ddl();

COMMENT ON EVENT TRIGGER cdc_relay_capture_ddl IS
'cdc_relay: writes each DDL command as a cdc_relay.ddl logical message (cdc_relay.capture_ddl)';
