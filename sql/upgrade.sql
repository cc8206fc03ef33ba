-- upgrade: ALTER EXTENSION cdc_relay UPDATE from 0.1.0 through 0.2.0 and
-- 0.3.0 to 0.4.0 gives the same objects (definitions, privileges, comments)
-- as installing 0.4.0; a fresh 0.2.0 and a fresh 0.3.0 updated to 0.4.0 give
-- them too.
\set VERBOSITY terse
DROP EXTENSION cdc_relay;
CREATE EXTENSION cdc_relay VERSION '0.1.0';
SELECT extversion FROM pg_extension WHERE extname = 'cdc_relay';

-- the extension's objects: identity, definition, privileges, comment
CREATE VIEW upgrade_objects AS
SELECT pg_describe_object(d.classid, d.objid, d.objsubid) AS object,
       CASE WHEN d.classid = 'pg_proc'::regclass THEN pg_get_functiondef(d.objid)
            WHEN d.classid = 'pg_class'::regclass THEN pg_get_viewdef(d.objid) END AS definition,
       CASE WHEN d.classid = 'pg_proc'::regclass
            THEN (SELECT proacl::text FROM pg_proc WHERE oid = d.objid)
            WHEN d.classid = 'pg_class'::regclass
            THEN (SELECT relacl::text FROM pg_class WHERE oid = d.objid)
            WHEN d.classid = 'pg_namespace'::regclass
            THEN (SELECT nspacl::text FROM pg_namespace WHERE oid = d.objid) END AS acl,
       obj_description(d.objid, d.classid::regclass::name) AS comment
  FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid
 WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'cdc_relay' AND d.deptype = 'e';

SELECT object FROM upgrade_objects ORDER BY 1;
ALTER EXTENSION cdc_relay UPDATE TO '0.2.0';
SELECT extversion FROM pg_extension WHERE extname = 'cdc_relay';
SELECT object, comment FROM upgrade_objects ORDER BY 1;
ALTER EXTENSION cdc_relay UPDATE TO '0.3.0';
SELECT extversion FROM pg_extension WHERE extname = 'cdc_relay';
SELECT object, comment FROM upgrade_objects ORDER BY 1;
ALTER EXTENSION cdc_relay UPDATE TO '0.4.0';
SELECT extversion, extversion = cdc_relay.version() AS versions_match
  FROM pg_extension WHERE extname = 'cdc_relay';
SELECT object, comment FROM upgrade_objects ORDER BY 1;
CREATE TEMP TABLE upgraded AS SELECT * FROM upgrade_objects;

-- a fresh 0.2.0 (its own install script) updated to 0.4.0
DROP EXTENSION cdc_relay;
CREATE EXTENSION cdc_relay VERSION '0.2.0';
ALTER EXTENSION cdc_relay UPDATE TO '0.4.0';
SELECT extversion FROM pg_extension WHERE extname = 'cdc_relay';
CREATE TEMP TABLE upgraded_from_020 AS SELECT * FROM upgrade_objects;

-- a fresh 0.3.0 (its own install script) updated to 0.4.0
DROP EXTENSION cdc_relay;
CREATE EXTENSION cdc_relay VERSION '0.3.0';
ALTER EXTENSION cdc_relay UPDATE TO '0.4.0';
SELECT extversion FROM pg_extension WHERE extname = 'cdc_relay';
CREATE TEMP TABLE upgraded_from_030 AS SELECT * FROM upgrade_objects;

-- a fresh install of the default version
DROP EXTENSION cdc_relay;
CREATE EXTENSION cdc_relay;
SELECT extversion FROM pg_extension WHERE extname = 'cdc_relay';
SELECT 'only after update' AS side, * FROM (SELECT * FROM upgraded EXCEPT SELECT * FROM upgrade_objects) a
UNION ALL
SELECT 'only in fresh install', * FROM (SELECT * FROM upgrade_objects EXCEPT SELECT * FROM upgraded) b;
SELECT 'only after update from 0.2.0' AS side, * FROM (SELECT * FROM upgraded_from_020 EXCEPT SELECT * FROM upgrade_objects) a
UNION ALL
SELECT 'only in fresh install', * FROM (SELECT * FROM upgrade_objects EXCEPT SELECT * FROM upgraded_from_020) b;
SELECT 'only after update from 0.3.0' AS side, * FROM (SELECT * FROM upgraded_from_030 EXCEPT SELECT * FROM upgrade_objects) a
UNION ALL
SELECT 'only in fresh install', * FROM (SELECT * FROM upgrade_objects EXCEPT SELECT * FROM upgraded_from_030) b;
SELECT count(*) AS objects FROM upgraded;

DROP VIEW upgrade_objects;
