-- setup: install the cdc_relay extension and check that the version the
-- loaded library reports is the version recorded for the extension.
CREATE EXTENSION cdc_relay;
SELECT cdc_relay.version() AS library_version;
SELECT extversion, extversion = cdc_relay.version() AS versions_match,
       extnamespace::regnamespace AS schema
  FROM pg_extension WHERE extname = 'cdc_relay';
