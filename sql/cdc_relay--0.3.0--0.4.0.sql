-- cdc_relay 0.3.0 -> 0.4.0: online snapshots on request, request ids, domain
-- events, schema events and DDL capture.
\echo Use "ALTER EXTENSION cdc_relay UPDATE TO '0.4.0'" to load this file. \quit

-- [online] online snapshots on request (helper A)

-- [reqid] request ids, domain events (helper B)

-- [schema] schema events, DDL capture (helper C)
