/*
 * filter.c
 *		Which changes cdc_relay emits: schema.table patterns
 *		(include-tables / exclude-tables), PostgreSQL publications
 *		(membership and published actions) and message prefixes.
 *
 * Pattern syntax: comma-separated schema.table items.  Unquoted parts are
 * folded to lower case (as PostgreSQL folds identifiers) and may use the
 * wildcards * (any run of characters) and ? (one character); a part in
 * double quotes is taken literally, "" standing for one quote.  An item
 * without a dot matches the table name in any schema.
 */
#include "postgres.h"

#include "catalog/partition.h"
#include "catalog/pg_publication.h"
#include "mb/pg_wchar.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "cdc_relay.h"
#include "cdc_wire.h"
#include "compat.h"

/* Publications named by the "publication" option, loaded lazily. */
static MemoryContext PubCxt = NULL;
static List *PubList = NIL;
static bool PubValid = false;

static void
pattern_error(const char *optname, const char *value, const char *detail)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("could not parse value \"%s\" for parameter \"%s\"",
					value, optname),
			 errdetail("%s", detail),
			 errhint("Give a comma-separated list of schema.table patterns; "
					 "* and ? are wildcards, double-quote names with other special characters.")));
}

/* Append a literal character to a stored pattern, escaping glob characters. */
static void
append_literal(StringInfo buf, char c)
{
	if (c == '*' || c == '?' || c == '\\')
		appendStringInfoChar(buf, '\\');
	appendStringInfoChar(buf, c);
}

List *
cdc_parse_table_patterns(const char *optname, const char *value)
{
	List	   *result = NIL;
	const char *p = value;

	for (;;)
	{
		StringInfoData parts[2];
		bool		nonempty[2] = {false, false};
		int			npart = 0;
		CdcTablePattern *pat;

		initStringInfo(&parts[0]);
		initStringInfo(&parts[1]);
		while (*p && *p != ',')
		{
			if (*p == '"')
			{
				int			quote_start = parts[npart].len;

				p++;
				for (;;)
				{
					if (*p == '\0')
						pattern_error(optname, value, "A quoted name is not terminated.");
					if (*p == '"')
					{
						if (p[1] != '"')
							break;
						p++;
					}
					append_literal(&parts[npart], *p);
					p++;
				}
				p++;			/* closing quote */
				if (parts[npart].len == quote_start)
					pattern_error(optname, value, "A quoted name is empty.");
				nonempty[npart] = true;
			}
			else if (*p == '.')
			{
				if (npart == 1)
					pattern_error(optname, value, "A pattern has more than one unquoted dot.");
				npart = 1;
				p++;
			}
			else if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
			{
				while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
					p++;
				/* blanks may surround names, not split one */
				if (nonempty[npart] && *p != '\0' && *p != ',' && *p != '.')
					pattern_error(optname, value,
								  "A name contains blanks; double-quote names with blanks.");
			}
			else
			{
				if (*p == '*' || *p == '?')
					appendStringInfoChar(&parts[npart], *p);
				else
					append_literal(&parts[npart],
								   (*p >= 'A' && *p <= 'Z') ? *p + ('a' - 'A') : *p);
				nonempty[npart] = true;
				p++;
			}
		}
		if (!nonempty[0] || (npart == 1 && !nonempty[1]))
			pattern_error(optname, value, "A pattern has an empty schema or table name.");
		pat = palloc0(sizeof(CdcTablePattern));
		if (npart == 1)
		{
			pat->schema = parts[0].data;
			pat->table = parts[1].data;
		}
		else
		{
			pat->schema = NULL;
			pat->table = parts[0].data;
		}
		result = lappend(result, pat);
		if (*p == '\0')
			break;
		p++;					/* comma */
	}
	return result;
}

/*
 * Glob match: * matches any run, ? one character, backslash escapes the
 * next pattern character.
 */
static bool
glob_match(const char *pat, const char *str)
{
	const char *star_pat = NULL;
	const char *star_str = NULL;

	while (*str)
	{
		if (*pat == '\\' && pat[1] != '\0')
		{
			if (pat[1] == *str)
			{
				pat += 2;
				str++;
				continue;
			}
		}
		else if (*pat == '?')
		{
			pat++;
			str += pg_mblen(str);
			continue;
		}
		else if (*pat == '*')
		{
			star_pat = ++pat;
			star_str = str;
			continue;
		}
		else if (*pat != '\0' && *pat == *str)
		{
			pat++;
			str++;
			continue;
		}
		if (star_pat == NULL)
			return false;
		pat = star_pat;
		str = ++star_str;
	}
	while (*pat == '*')
		pat++;
	return *pat == '\0';
}

static bool
any_pattern_matches(List *patterns, const char *schema, const char *table)
{
	ListCell   *lc;

	foreach(lc, patterns)
	{
		CdcTablePattern *pat = lfirst(lc);

		if ((pat->schema == NULL || glob_match(pat->schema, schema)) &&
			glob_match(pat->table, table))
			return true;
	}
	return false;
}

/* Does schema.table pass include-tables and exclude-tables? */
bool
cdc_table_matches(const CdcOptions *opts, const char *schema, const char *table)
{
	/* the extension's bookkeeping (cdc_relay.snapshot_jobs) is no data */
	if (strcmp(schema, CDC_EXTENSION_SCHEMA) == 0)
		return false;
	if (opts->include_tables != NIL &&
		!any_pattern_matches(opts->include_tables, schema, table))
		return false;
	if (any_pattern_matches(opts->exclude_tables, schema, table))
		return false;
	return true;
}

/*
 * The publications named by the "publication" option, in option order, as
 * Publication structs allocated in the current memory context.  An unknown
 * name is an ERROR (publication "p" does not exist).
 */
List *
cdc_load_publications(const CdcOptions *opts)
{
	List	   *pubs = NIL;
	ListCell   *lc;

	foreach(lc, opts->publications)
		pubs = lappend(pubs, GetPublicationByName(lfirst(lc), false));
	return pubs;
}

/* The decoding session's publications: loaded on first use, until invalidated. */
static List *
session_publications(const CdcOptions *opts)
{
	MemoryContext old;

	if (PubValid)
		return PubList;
	if (PubCxt == NULL)
		PubCxt = AllocSetContextCreate(CacheMemoryContext,
									   "cdc_relay publications",
									   ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(PubCxt);
	old = MemoryContextSwitchTo(PubCxt);
	PubList = cdc_load_publications(opts);
	MemoryContextSwitchTo(old);
	PubValid = true;
	return PubList;
}

/*
 * The CDC_ACTION_* mask that the publications pubs (Publication *) allow
 * for rel: the union of the published actions of every one of them that
 * contains rel, directly, through one of its partition ancestors, through
 * its schema (FOR TABLES IN SCHEMA) or as FOR ALL TABLES.  0 when none does.
 */
int
cdc_publication_actions(List *pubs, Relation rel)
{
	Oid			relid = RelationGetRelid(rel);
	List	   *relpubs;
	List	   *schemapubs = NIL;
	List	   *ancestors = NIL;
	ListCell   *lc;
	int			actions = 0;

	relpubs = GetRelationPublications(relid);
#ifdef CDC_HAVE_SCHEMA_PUBLICATIONS
	schemapubs = GetSchemaPublications(RelationGetNamespace(rel));
#endif
	if (rel->rd_rel->relispartition)
		ancestors = get_partition_ancestors(relid);
	foreach(lc, ancestors)
	{
		Oid			anc = lfirst_oid(lc);

		relpubs = list_concat(relpubs, GetRelationPublications(anc));
#ifdef CDC_HAVE_SCHEMA_PUBLICATIONS
		schemapubs = list_concat(schemapubs,
								 GetSchemaPublications(get_rel_namespace(anc)));
#endif
	}

	foreach(lc, pubs)
	{
		Publication *pub = lfirst(lc);
		bool		member;

		if (pub->alltables)
			member = is_publishable_relation(rel);
		else
			member = list_member_oid(relpubs, pub->oid) ||
				list_member_oid(schemapubs, pub->oid);
		if (!member)
			continue;
		if (pub->pubactions.pubinsert)
			actions |= CDC_ACTION_INSERT;
		if (pub->pubactions.pubupdate)
			actions |= CDC_ACTION_UPDATE;
		if (pub->pubactions.pubdelete)
			actions |= CDC_ACTION_DELETE;
		if (pub->pubactions.pubtruncate)
			actions |= CDC_ACTION_TRUNCATE;
	}
	return actions;
}

/*
 * The CDC_ACTION_* mask of changes on rel that the plugin emits under opts;
 * 0 when it emits none.  schema and table are the names the events carry
 * (the partition root's with partition-root): include-tables and
 * exclude-tables match those.  pubs are the publications of opts
 * (cdc_load_publications), or NULL inside a decoding session, which loads
 * them when first needed and keeps them until a publication changes.  rel
 * is only looked at when opts names publications (it may be NULL if not).
 */
int
cdc_relation_actions(const CdcOptions *opts, List *pubs, Relation rel,
					 const char *schema, const char *table)
{
	int			actions = opts->actions;

	if (!cdc_table_matches(opts, schema, table))
		return 0;
	if (opts->publications != NIL)
		actions &= cdc_publication_actions(pubs != NULL ? pubs :
										   session_publications(opts),
										   rel);
	return actions;
}

bool
cdc_message_prefix_wanted(const CdcOptions *opts, const char *prefix)
{
	ListCell   *lc;

	/* the relay's online snapshot messages pass whatever message-prefixes says */
	if (opts->message_prefixes == NIL ||
		strcmp(prefix, CDC_PREFIX_SNAPSHOT_REQUEST) == 0 ||
		strcmp(prefix, CDC_PREFIX_WATERMARK) == 0)
		return true;
	foreach(lc, opts->message_prefixes)
	{
		if (strcmp(lfirst(lc), prefix) == 0)
			return true;
	}
	return false;
}

/* A publication changed: reload before the next use. */
void
cdc_filter_invalidate(void)
{
	PubValid = false;
}

/* End of a decoding session: forget the publications. */
void
cdc_filter_reset(void)
{
	if (PubCxt != NULL)
		MemoryContextDelete(PubCxt);
	PubCxt = NULL;
	PubList = NIL;
	PubValid = false;
}
