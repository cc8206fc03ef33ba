-- install_schema: CREATE EXTENSION cdc_relay installs into schema
-- cdc_relay.  It refuses an existing schema of that name that it did not
-- create and that a role other than a superuser owns, has put objects in,
-- or may create objects in: a planted overload of snapshot_row there would
-- run as whoever calls the extension's functions (the relay, often a
-- superuser).  A refused CREATE EXTENSION leaves nothing behind.  A schema
-- that only superusers can have written to (the one DROP EXTENSION leaves,
-- or pg_dump's CREATE SCHEMA before its CREATE EXTENSION) is reused.
-- Every install script checks, before it creates anything.
\set VERBOSITY default
CREATE ROLE regress_cdc_evil;
CREATE ROLE regress_cdc_admin SUPERUSER;
-- what schema cdc_relay holds, the extension aside
CREATE FUNCTION inst_schema_objects() RETURNS SETOF text LANGUAGE sql AS $$
  SELECT pg_describe_object(d.classid, d.objid, d.objsubid)
    FROM pg_depend d JOIN pg_namespace n ON n.oid = d.refobjid
   WHERE d.refclassid = 'pg_namespace'::regclass AND n.nspname = 'cdc_relay'
     AND d.classid <> 'pg_extension'::regclass
   ORDER BY 1 $$;
-- the extension and whether its schema exists; the check's temporary
-- function never outlives a script
CREATE VIEW inst_state AS
SELECT (SELECT extversion FROM pg_extension WHERE extname = 'cdc_relay') AS extension,
       (SELECT nspowner::regrole FROM pg_namespace WHERE nspname = 'cdc_relay') AS schema_owner,
       (SELECT count(*) FROM pg_proc WHERE proname = 'cdc_relay_check_install_schema') AS check_functions;

-- DROP EXTENSION leaves the schema behind, empty and owned by a superuser:
-- CREATE EXTENSION reuses it
DROP EXTENSION cdc_relay;
SELECT extension, check_functions FROM inst_state;
SELECT * FROM inst_schema_objects();
CREATE EXTENSION cdc_relay;
SELECT extension, check_functions FROM inst_state;
DROP EXTENSION cdc_relay;
DROP SCHEMA cdc_relay;

-- A role that is not a superuser creates schema cdc_relay first and plants
-- an overload of snapshot_row that a call with an untyped LSN would prefer.
CREATE SCHEMA cdc_relay AUTHORIZATION regress_cdc_evil;
SET ROLE regress_cdc_evil;
CREATE FUNCTION cdc_relay.snapshot_row(rel regclass, r record, lsn text,
                                       options text[] DEFAULT '{}')
RETURNS text LANGUAGE plpgsql AS $$
BEGIN
  RAISE NOTICE 'planted snapshot_row ran as %', current_user;
  RETURN NULL;
END $$;
RESET ROLE;
CREATE EXTENSION cdc_relay;
-- nothing behind: no extension, the schema as it was, no check function
SELECT extension, schema_owner, check_functions FROM inst_state;
SELECT * FROM inst_schema_objects();
-- every install script checks first, the old version's too
CREATE EXTENSION cdc_relay VERSION '0.1.0';
SELECT extension, check_functions FROM inst_state;
-- a savepoint changes nothing
BEGIN;
SAVEPOINT s;
CREATE EXTENSION cdc_relay;
ROLLBACK;

-- Owned by a superuser now, but still holding the planted function.
ALTER SCHEMA cdc_relay OWNER TO regress_cdc_admin;
CREATE EXTENSION cdc_relay;
DROP FUNCTION cdc_relay.snapshot_row(regclass, record, text, text[]);
-- Empty and owned by a superuser, but others may create objects in it.
GRANT CREATE ON SCHEMA cdc_relay TO PUBLIC, regress_cdc_evil;
CREATE EXTENSION cdc_relay;
REVOKE CREATE ON SCHEMA cdc_relay FROM PUBLIC;
CREATE EXTENSION cdc_relay;
REVOKE CREATE ON SCHEMA cdc_relay FROM regress_cdc_evil;
-- Only superusers can have written to it now: reused (as after DROP
-- EXTENSION, or when pg_dump's output is restored).
GRANT USAGE ON SCHEMA cdc_relay TO regress_cdc_evil;
CREATE EXTENSION cdc_relay;
SELECT extension, schema_owner, check_functions FROM inst_state;
DROP EXTENSION cdc_relay;
DROP SCHEMA cdc_relay;

-- Created earlier in the same transaction, but for another role: refused.
BEGIN;
CREATE SCHEMA cdc_relay AUTHORIZATION regress_cdc_evil;
CREATE EXTENSION cdc_relay;
ROLLBACK;
SELECT extension, schema_owner, check_functions FROM inst_state;

-- After the foreign schema is dropped, CREATE EXTENSION creates its own.
-- Inside savepoints (the schema's row is then written by a subtransaction)
-- that works too, and rolling back to the savepoint undoes it all.
BEGIN;
SAVEPOINT a;
SAVEPOINT b;
CREATE EXTENSION cdc_relay;
SELECT extension, schema_owner = current_user::regrole AS owned_by_me FROM inst_state;
ROLLBACK TO SAVEPOINT a;
SELECT extension, schema_owner FROM inst_state;
SAVEPOINT c;
CREATE EXTENSION cdc_relay;
RELEASE SAVEPOINT c;
COMMIT;
SELECT extension, schema_owner = current_user::regrole AS owned_by_me, check_functions
  FROM inst_state;
SELECT * FROM inst_schema_objects();

-- Outside CREATE EXTENSION cdc_relay the check refuses to run.
CREATE FUNCTION inst_check() RETURNS void
AS '$libdir/cdc_relay', 'cdc_relay_check_install_schema' LANGUAGE C;
SELECT inst_check();
DROP FUNCTION inst_check();

DROP VIEW inst_state;
DROP FUNCTION inst_schema_objects();
DROP ROLE regress_cdc_evil, regress_cdc_admin;
\set VERBOSITY terse
