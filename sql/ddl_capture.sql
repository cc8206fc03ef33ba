-- ddl_capture: the extension's event trigger writes every DDL command as a
-- transactional logical message with prefix cdc_relay.ddl (JSON: tag,
-- statement text, role, search_path, the commands' object types and
-- identities), decoded as an "m" event with schema-events only, at its place
-- in the transaction, never for a rolled-back DDL.  cdc_relay.capture_ddl:
-- off writes nothing, strict captures as on (and fails the DDL if the
-- capture fails); only a superuser may change it.  The commands an
-- extension's script runs are not captured, the CREATE EXTENSION is.
SELECT evtname, evtevent, evtenabled, evtfoid::regprocedure
  FROM pg_event_trigger WHERE evtname LIKE 'cdc_relay%';
CREATE FUNCTION ddl_events(VARIADIC opts text[] DEFAULT '{}') RETURNS SETOF text
LANGUAGE sql AS $$
  SELECT CASE WHEN d->>'op' = 'm'
              THEN format('m %s %s', d->>'prefix', d->>'content')
              ELSE format('%s %s', d->>'op', coalesce(d->>'table', d->>'seq', d->>'events')) END
    FROM (SELECT data::jsonb AS d
            FROM pg_logical_slot_get_changes('ddl_capture_slot', NULL, NULL,
                 VARIADIC ARRAY['include-xids', '0', 'include-lsn', '0',
                                'include-timestamp', '0'] || opts)) e
$$;

SELECT 'init' FROM pg_create_logical_replication_slot('ddl_capture_slot', 'cdc_relay');

SET search_path = public, pg_catalog;
CREATE TABLE dc_t (id int PRIMARY KEY, v text);
BEGIN;
INSERT INTO dc_t VALUES (1, 'a');
ALTER TABLE dc_t ADD COLUMN w int, ALTER COLUMN v SET NOT NULL;
INSERT INTO dc_t VALUES (2, 'b', 2);
COMMIT;
-- several statements in one query string: each captured, with the whole string
CREATE INDEX dc_t_v ON dc_t (v)\; COMMENT ON TABLE dc_t IS 'captured';
-- rolled back: nothing
BEGIN;
ALTER TABLE dc_t ADD COLUMN gone int;
ROLLBACK;
DROP INDEX dc_t_v;
-- not captured with capture_ddl = off
SET cdc_relay.capture_ddl = off;
ALTER TABLE dc_t ADD COLUMN silent int;
RESET cdc_relay.capture_ddl;
-- an invalid setting is refused (on stays)
SET cdc_relay.capture_ddl = bogus;
ALTER TABLE dc_t DROP COLUMN silent;
SET cdc_relay.capture_ddl = strict;
CREATE VIEW dc_v AS SELECT id FROM dc_t;
RESET cdc_relay.capture_ddl;
CREATE EXTENSION fuzzystrmatch;
DROP EXTENSION fuzzystrmatch;
-- an ordinary role's DDL is captured too (the trigger needs no privilege of
-- it); role is the current role, session_role the one that logged in
CREATE ROLE regress_dc_user;
GRANT CREATE ON SCHEMA public TO regress_dc_user;
SET ROLE regress_dc_user;
CREATE TABLE dc_owned (x int);
-- ... and it cannot turn capture off for itself (superuser-settable)
SET cdc_relay.capture_ddl = off;
RESET ROLE;
RESET search_path;
-- without schema-events: no DDL messages (and the slot keeps them)
SELECT data FROM pg_logical_slot_peek_changes('ddl_capture_slot', NULL, NULL,
       'include-xids', '0', 'include-lsn', '0', 'include-timestamp', '0')
 WHERE data LIKE '%cdc_relay.ddl%';
SELECT * FROM ddl_events('schema-events', '1', 'message-prefixes', 'cdc_relay.ddl');
SELECT 'drop' FROM pg_drop_replication_slot('ddl_capture_slot');
DROP VIEW dc_v;
DROP TABLE dc_t, dc_owned;
REVOKE CREATE ON SCHEMA public FROM regress_dc_user;
DROP ROLE regress_dc_user;
