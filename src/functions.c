/*
 * functions.c
 *		SQL-callable functions of the cdc_relay extension.
 *		(cdc_relay.check_setup() is plain SQL in the install script.)
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(cdc_relay_version);

/* cdc_relay.version(): the version of the loaded library. */
Datum
cdc_relay_version(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(CDC_RELAY_VERSION));
}
