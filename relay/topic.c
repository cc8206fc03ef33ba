/*
 * topic.c: Kafka topic names for PostgreSQL tables (the rule is in topic.h).
 */
#include "topic.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASHED_CUT 215			/* 215 + "--" + 32 hex = 249 */

static bool
kept(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		(c >= '0' && c <= '9') || c == '_';
}

bool
topic_prefix_valid(const char *prefix)
{
	size_t		n = strlen(prefix);

	if (n == 0 || n > 100)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!kept((unsigned char) prefix[i]) && prefix[i] != '.' && prefix[i] != '-')
			return false;
	return true;
}

/* Append enc(name) at out[*len], never beyond cap; returns false if cut. */
static bool
append_encoded(char *out, size_t *len, size_t cap, const char *name, size_t n)
{
	static const char hex[] = "0123456789abcdef";

	for (size_t i = 0; i < n; i++)
	{
		unsigned char c = (unsigned char) name[i];

		if (kept(c))
		{
			if (*len + 1 > cap)
				return false;
			out[(*len)++] = (char) c;
		}
		else
		{
			if (*len + 3 > cap)
				return false;
			out[(*len)++] = '-';
			out[(*len)++] = hex[c >> 4];
			out[(*len)++] = hex[c & 15];
		}
	}
	return true;
}

/* FNV-1a, 64 bits, from a given offset basis. */
static uint64_t
fnv1a(uint64_t h, const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
	{
		h ^= (unsigned char) s[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

size_t
topic_for_table(const char *prefix, const char *schema, size_t schema_len,
				const char *table, size_t table_len, char *out)
{
	/* scratch wide enough for the longest unhashed form */
	char		buf[TOPIC_MAX_LEN + 1];
	size_t		len = 0;
	size_t		plen = strlen(prefix);
	bool		fits;

	fits = plen + 1 <= TOPIC_MAX_LEN;
	if (fits)
	{
		memcpy(buf, prefix, plen);
		len = plen;
		buf[len++] = '.';
		fits = append_encoded(buf, &len, TOPIC_MAX_LEN, schema, schema_len);
	}
	if (fits && len + 1 <= TOPIC_MAX_LEN)
	{
		buf[len++] = '.';
		fits = append_encoded(buf, &len, TOPIC_MAX_LEN, table, table_len);
	}
	else
		fits = false;

	if (!fits)
	{
		/* long name: a cut form plus a 128-bit hash of the full identity */
		static const char hex[] = "0123456789abcdef";
		uint64_t	h1 = UINT64_C(0xcbf29ce484222325);
		uint64_t	h2 = UINT64_C(0x84222325cbf29ce4);
		char		nul = '\0';

		h1 = fnv1a(h1, schema, schema_len);
		h1 = fnv1a(h1, &nul, 1);
		h1 = fnv1a(h1, table, table_len);
		h2 = fnv1a(h2, table, table_len);
		h2 = fnv1a(h2, &nul, 1);
		h2 = fnv1a(h2, schema, schema_len);
		if (len > HASHED_CUT)
			len = HASHED_CUT;
		buf[len++] = '-';
		buf[len++] = '-';
		for (int i = 60; i >= 0; i -= 4)
			buf[len++] = hex[(h1 >> i) & 15];
		for (int i = 60; i >= 0; i -= 4)
			buf[len++] = hex[(h2 >> i) & 15];
	}
	memcpy(out, buf, len);
	out[len] = '\0';
	return len;
}

static bool
plain_name(const char *s)
{
	if (s[0] == '\0' || (s[0] >= '0' && s[0] <= '9'))
		return false;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

char *
table_display_name(const char *schema, const char *table)
{
	char	   *out = malloc(2 * (strlen(schema) + strlen(table)) + 6);
	char	   *p = out;
	const char *parts[2] = {schema, table};

	if (out == NULL)
		return NULL;
	for (int i = 0; i < 2; i++)
	{
		bool		plain = plain_name(parts[i]);

		if (i == 1)
			*p++ = '.';
		if (!plain)
			*p++ = '"';
		for (const char *c = parts[i]; *c; c++)
		{
			if (*c == '"')
				*p++ = '"';
			*p++ = *c;
		}
		if (!plain)
			*p++ = '"';
	}
	*p = '\0';
	return out;
}

/* '.' and '_' are one character to Kafka's collision check */
static int
cmp_folded(const char *a, const char *b)
{
	for (;; a++, b++)
	{
		unsigned char ca = (unsigned char) (*a == '.' ? '_' : *a);
		unsigned char cb = (unsigned char) (*b == '.' ? '_' : *b);

		if (ca != cb)
			return ca < cb ? -1 : 1;
		if (ca == '\0')
			return 0;
	}
}

bool
topic_names_collide(const char *a, const char *b)
{
	return strcmp(a, b) != 0 && cmp_folded(a, b) == 0;
}

typedef struct TopicRef
{
	const char *name;
	size_t		index;
} TopicRef;

static int
cmp_ref(const void *x, const void *y)
{
	const TopicRef *a = x;
	const TopicRef *b = y;
	int			c = cmp_folded(a->name, b->name);

	if (c != 0)
		return c;
	return a->index < b->index ? -1 : a->index > b->index;
}

bool
topic_find_collision(const char *const *topics, size_t n, size_t *i, size_t *j)
{
	TopicRef   *refs;
	bool		found = false;

	*i = *j = n;
	if (n < 2)
		return false;
	refs = malloc(n * sizeof(TopicRef));
	if (refs == NULL)
		return false;
	for (size_t k = 0; k < n; k++)
	{
		refs[k].name = topics[k];
		refs[k].index = k;
	}
	qsort(refs, n, sizeof(TopicRef), cmp_ref);

	/*
	 * Each group of equal folded names is in index order; in it, the first
	 * entry that differs from the group's first collides with that first
	 * entry (all between are equal to it), and with nothing earlier.
	 */
	for (size_t g = 0; g < n;)
	{
		size_t		end = g + 1;

		while (end < n && cmp_folded(refs[g].name, refs[end].name) == 0)
			end++;
		for (size_t k = g + 1; k < end; k++)
			if (strcmp(refs[k].name, refs[g].name) != 0)
			{
				if (!found || refs[k].index < *j)
				{
					*i = refs[g].index;
					*j = refs[k].index;
					found = true;
				}
				break;
			}
		g = end;
	}
	free(refs);
	return found;
}

const char *
topic_collision_message(char *buf, size_t buflen, const char *table_a, const char *topic_a,
						const char *table_b, const char *topic_b)
{
	if (buflen > 0)
		snprintf(buf, buflen,
				 "tables %s and %s map to Kafka topics %s and %s, which Kafka treats as colliding "
				 "('.' and '_' are the same in metric names); fix: exclude one with --exclude-tables "
				 "or rename it", table_a, table_b, topic_a, topic_b);
	return buf;
}
