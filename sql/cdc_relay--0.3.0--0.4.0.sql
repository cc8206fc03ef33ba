-- cdc_relay 0.3.0 -> 0.4.0: online snapshots on request, request ids, domain
-- events, schema events and DDL capture.
\echo Use "ALTER EXTENSION cdc_relay UPDATE TO '0.4.0'" to load this file. \quit

-- [online] online snapshots on request (helper A)

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
