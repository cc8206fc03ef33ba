/*
 * appfuncs.c
 *		SQL functions for applications that write through cdc_relay's
 *		stream: cdc_relay.set_request_id() (every event of the transaction
 *		carries the id) and cdc_relay.emit() (a domain event, delivered to
 *		a Kafka topic of the application's choice, without an outbox
 *		table).  Both write a transactional logical message (WAL only, no
 *		table): it is decoded only if, and when, the transaction commits.
 *		The message contents are the wire contract's (cdc_wire.h); the
 *		plugin turns them into events (plugin.c, proto.c).
 */
#include "postgres.h"

#include "access/xact.h"
#include "fmgr.h"
#include "replication/message.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"

#include "cdc_relay.h"
#include "cdc_wire.h"

PG_FUNCTION_INFO_V1(cdc_relay_set_request_id);
PG_FUNCTION_INFO_V1(cdc_relay_emit);

/*
 * cdc_relay.set_request_id(id text) RETURNS void
 *
 * The transaction's request id: every event of the transaction carries it.
 * It must come before the transaction's first write (the top transaction
 * has no xid yet: a later call could not put it on the events written
 * before), and not in a subtransaction (rolling the subtransaction back
 * would drop the id while the transaction commits).  Once per transaction:
 * the message it writes assigns the xid, so a second call is refused by the
 * same rule.  The id is WAL, not session state: it ends with its
 * transaction.
 */
Datum
cdc_relay_set_request_id(PG_FUNCTION_ARGS)
{
	text	   *t;
	const char *why;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("request id must not be null")));
	t = PG_GETARG_TEXT_PP(0);
	if (!cdc_request_id_valid(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), &why))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid request id: %s", why),
				 errdetail("A request id is 1 to %d bytes of text without control characters.",
						   CDC_REQUEST_ID_MAX_BYTES)));
	if (IsSubTransaction())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cdc_relay.set_request_id() cannot be called in a subtransaction"),
				 errdetail("A rolled back subtransaction would take the request id with it."),
				 errhint("Call it first in the transaction, outside any savepoint or exception block.")));
	if (TransactionIdIsValid(GetTopTransactionIdIfAny()))
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cdc_relay.set_request_id() must be called before the transaction's first write"),
				 errdetail("The transaction has written already, or has a request id already."),
				 errhint("Call cdc_relay.set_request_id() once, first in the transaction (after BEGIN), so that every event of the transaction carries the id.")));
	LogLogicalMessage(CDC_PREFIX_REQUEST_ID, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t), true);
	PG_RETURN_VOID();
}

/*
 * cdc_relay.emit(topic text, key text, payload jsonb) RETURNS void
 *
 * A domain event of the calling transaction: the relay produces payload to
 * Kafka topic `topic`, with key `key` (NULL: no key), in commit order with
 * the transaction's other events, only if it commits.  Not STRICT (the key
 * may be NULL); a NULL topic or payload is an error.
 */
Datum
cdc_relay_emit(PG_FUNCTION_ARGS)
{
	char	   *topic;
	char	   *key = NULL;
	Jsonb	   *payload;
	char	   *payload_text;
	char	   *content;
	Size		len;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("topic must not be null")));
	if (PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("payload must not be null"),
				 errhint("For a JSON null payload, pass 'null'::jsonb.")));
	topic = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (!cdc_emit_topic_valid(topic, strlen(topic)))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid topic name \"%s\"", topic),
				 errdetail("A topic name is 1 to %d characters of a-z, A-Z, 0-9, '.', '_' and '-', and not \".\" or \"..\".",
						   CDC_EMIT_TOPIC_MAX_LEN)));
	if (!PG_ARGISNULL(1))
		key = text_to_cstring(PG_GETARG_TEXT_PP(1));
	payload = PG_GETARG_JSONB_P(2);
	payload_text = JsonbToCString(NULL, &payload->root, VARSIZE(payload));
	content = cdc_emit_content_build(topic, key, payload_text, &len);
	LogLogicalMessage(CDC_PREFIX_EMIT, content, len, true);
	PG_RETURN_VOID();
}
