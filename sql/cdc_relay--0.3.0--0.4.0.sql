-- cdc_relay 0.3.0 -> 0.4.0: online snapshots on request, request ids, domain
-- events, schema events and DDL capture.
\echo Use "ALTER EXTENSION cdc_relay UPDATE TO '0.4.0'" to load this file. \quit

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
