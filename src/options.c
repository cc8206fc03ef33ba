/*
 * options.c
 *		Parsing of the cdc_relay output plugin's options, in one place.
 *
 * Options arrive as DefElems (pg_recvlogical -o name=value, or name/value
 * pairs of pg_logical_slot_get_changes).  An unknown option or a bad value
 * is an ERROR naming the option and listing what is valid.
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "nodes/makefuncs.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/varlena.h"

#include "cdc_relay.h"

#define VALID_OPTIONS \
	"format-version, include-xids, include-lsn, include-timestamp, " \
	"include-tables, exclude-tables, publication, actions, skip-empty-xacts, " \
	"message-prefixes, numeric-as, partition-root, key-prefix, batch-events, " \
	"origin, schema-events"

static const char *
option_value(DefElem *elem)
{
	if (elem->arg == NULL)
		return NULL;
	return strVal(elem->arg);
}

/* A value is required (and must be non-empty) for non-boolean options. */
static char *
required_value(DefElem *elem, const char *valid_hint)
{
	const char *value = option_value(elem);

	if (value == NULL || value[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("option \"%s\" requires a value", elem->defname),
				 errhint("%s", valid_hint)));
	return pstrdup(value);
}

/* An option with two values: false for no, true for yes, else an ERROR with hint. */
static bool
parse_choice(DefElem *elem, const char *no, const char *yes, const char *hint)
{
	const char *v = required_value(elem, hint);

	if (strcmp(v, no) == 0)
		return false;
	if (strcmp(v, yes) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not parse value \"%s\" for parameter \"%s\"",
						v, elem->defname),
				 errhint("%s", hint)));
	return true;
}

static bool
parse_bool_option(DefElem *elem)
{
	const char *value = option_value(elem);
	bool		result;

	/* "-o include-xids" alone means true, as in test_decoding */
	if (value == NULL)
		return true;
	if (!parse_bool(value, &result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not parse value \"%s\" for parameter \"%s\"",
						value, elem->defname),
				 errhint("Valid values are \"true\" and \"false\".")));
	return result;
}

static int
parse_actions(DefElem *elem)
{
	const char *hint = "Valid actions are \"insert\", \"update\", \"delete\" and \"truncate\", separated by commas.";
	char	   *raw = required_value(elem, hint);
	List	   *items;
	ListCell   *lc;
	int			actions = 0;

	if (!SplitIdentifierString(raw, ',', &items))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not parse value \"%s\" for parameter \"%s\"",
						option_value(elem), elem->defname),
				 errhint("%s", hint)));
	if (items == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not parse value \"%s\" for parameter \"%s\"",
						option_value(elem), elem->defname),
				 errhint("%s", hint)));
	foreach(lc, items)
	{
		const char *a = lfirst(lc);

		if (strcmp(a, "insert") == 0)
			actions |= CDC_ACTION_INSERT;
		else if (strcmp(a, "update") == 0)
			actions |= CDC_ACTION_UPDATE;
		else if (strcmp(a, "delete") == 0)
			actions |= CDC_ACTION_DELETE;
		else if (strcmp(a, "truncate") == 0)
			actions |= CDC_ACTION_TRUNCATE;
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("could not parse value \"%s\" for parameter \"%s\"",
							a, elem->defname),
					 errhint("%s", hint)));
	}
	return actions;
}

/* Comma-separated list; quoting as in GUC lists, no case folding. */
static List *
parse_string_list(DefElem *elem, const char *hint)
{
	char	   *raw = required_value(elem, hint);
	List	   *items;

	if (!SplitGUCList(raw, ',', &items) || items == NIL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("could not parse value \"%s\" for parameter \"%s\"",
						option_value(elem), elem->defname),
				 errhint("%s", hint)));
	return items;
}

/*
 * Fill *opts from the DefElem list, starting from the defaults.  Allocates
 * in the current memory context, which must outlive the decoding session.
 */
void
cdc_parse_options(List *defels, CdcOptions *opts)
{
	ListCell   *lc;

	memset(opts, 0, sizeof(*opts));
	opts->include_xids = true;
	opts->include_lsn = true;
	opts->include_timestamp = true;
	opts->skip_empty_xacts = true;
	opts->actions = CDC_ACTION_ALL;

	foreach(lc, defels)
	{
		DefElem    *elem = lfirst(lc);
		const char *name = elem->defname;

		Assert(elem->arg == NULL || IsA(elem->arg, String));

		if (strcmp(name, "format-version") == 0)
		{
			const char *v = required_value(elem, "The only format version is 1.");

			if (strcmp(v, "1") != 0)
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("format version \"%s\" is not supported", v),
						 errhint("The only format version is 1.")));
		}
		else if (strcmp(name, "include-xids") == 0)
			opts->include_xids = parse_bool_option(elem);
		else if (strcmp(name, "include-lsn") == 0)
			opts->include_lsn = parse_bool_option(elem);
		else if (strcmp(name, "include-timestamp") == 0)
			opts->include_timestamp = parse_bool_option(elem);
		else if (strcmp(name, "skip-empty-xacts") == 0)
			opts->skip_empty_xacts = parse_bool_option(elem);
		else if (strcmp(name, "partition-root") == 0)
			opts->partition_root = parse_bool_option(elem);
		else if (strcmp(name, "key-prefix") == 0)
			opts->key_prefix = parse_bool_option(elem);
		else if (strcmp(name, "batch-events") == 0)
			opts->batch_events = parse_bool_option(elem);
		else if (strcmp(name, "schema-events") == 0)
			opts->schema_events = parse_bool_option(elem);
		else if (strcmp(name, "include-tables") == 0)
			opts->include_tables =
				cdc_parse_table_patterns(name,
										 required_value(elem, "Give a comma-separated list of schema.table patterns."));
		else if (strcmp(name, "exclude-tables") == 0)
			opts->exclude_tables =
				cdc_parse_table_patterns(name,
										 required_value(elem, "Give a comma-separated list of schema.table patterns."));
		else if (strcmp(name, "publication") == 0)
		{
			const char *hint = "Give a comma-separated list of publication names.";
			char	   *raw = required_value(elem, hint);

			if (!SplitIdentifierString(raw, ',', &opts->publications) ||
				opts->publications == NIL)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("could not parse value \"%s\" for parameter \"%s\"",
								option_value(elem), name),
						 errhint("%s", hint)));
		}
		else if (strcmp(name, "actions") == 0)
			opts->actions = parse_actions(elem);
		else if (strcmp(name, "message-prefixes") == 0)
			opts->message_prefixes =
				parse_string_list(elem, "Give a comma-separated list of message prefixes.");
		else if (strcmp(name, "numeric-as") == 0)
			opts->numeric_as_number =
				parse_choice(elem, "string", "number",
							 "Valid values are \"string\" and \"number\".");
		else if (strcmp(name, "origin") == 0)
			opts->origin_none =
				parse_choice(elem, "any", "none",
							 "Valid values are \"any\" (every transaction) and \"none\" (only transactions without a replication origin).");
		else
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("option \"%s\" is not recognized by cdc_relay", name),
					 errhint("Valid options are: %s.", VALID_OPTIONS)));
	}
}

/*
 * Options given to a SQL function as a text[] of name/value pairs, the way
 * pg_logical_slot_get_changes() takes them, as the DefElem list that
 * cdc_parse_options() reads.  Same errors as pg_logical_slot_get_changes()
 * for a malformed array.
 */
List *
cdc_options_from_array(ArrayType *arr)
{
	Datum	   *elems;
	int			nelems;
	List	   *defels = NIL;

	if (ARR_NDIM(arr) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("array must be one-dimensional")));
	if (array_contains_nulls(arr))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("array must not contain nulls")));
	if (ARR_NDIM(arr) == 0)
		return NIL;
	Assert(ARR_ELEMTYPE(arr) == TEXTOID);
	deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT,
					  &elems, NULL, &nelems);
	if (nelems % 2 != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("array must have even number of elements")));
	for (int i = 0; i < nelems; i += 2)
		defels = lappend(defels,
						 makeDefElem(TextDatumGetCString(elems[i]),
									 (Node *) makeString(TextDatumGetCString(elems[i + 1])),
									 -1));
	pfree(elems);
	return defels;
}
