/*
 * redact.c: libpq error text made safe and one line long for the relay's log
 * (the contracts are in redact.h).
 */
#include "redact.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <libpq-fe.h>

#define OOM_TEXT "(out of memory while formatting the error message)"
#define HIDDEN "..."

/* A growing string; oom is set (and the text dropped) on allocation failure. */
typedef struct Buf
{
	char	   *s;
	size_t		len;
	size_t		cap;
	bool		oom;
} Buf;

static void
buf_add(Buf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap)
	{
		size_t		cap = b->cap ? b->cap : 64;
		char	   *ns;

		while (b->len + n + 1 > cap)
			cap *= 2;
		ns = realloc(b->s, cap);
		if (ns == NULL)
		{
			free(b->s);
			b->s = NULL;
			b->oom = true;
			return;
		}
		b->s = ns;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void
buf_adds(Buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

/* The finished string (never NULL unless out of memory). */
static char *
buf_done(Buf *b)
{
	buf_add(b, "", 0);
	return b->oom ? NULL : b->s;
}

char *
redact_conninfo_error(const char *msg)
{
	Buf			b = {0};
	const char *last,
			   *p = msg;

	if (msg == NULL)
		return buf_done(&b);
	last = strrchr(msg, '"');
	for (;;)
	{
		const char *open = strchr(p, '"');
		const char *close;

		if (open == NULL)
		{
			buf_adds(&b, p);
			break;
		}
		buf_add(&b, p, (size_t) (open - p));
		buf_adds(&b, "\"" HIDDEN "\"");
		if (open - msg >= 2 && open[-1] == ' ' && open[-2] == ':')
			close = last > open ? last : NULL;	/* the user's text, to the end */
		else
			close = strchr(open + 1, '"');
		if (close == NULL)
			break;				/* unmatched: hide the rest */
		p = close + 1;
	}
	return buf_done(&b);
}

/* "WORD:" and spaces at s (WORD: 2 or more upper-case letters): its length up to the colon. */
static size_t
label_length(const char *s)
{
	size_t		n = 0;

	while (s[n] >= 'A' && s[n] <= 'Z')
		n++;
	if (n < 2 || s[n] != ':' || (s[n + 1] != ' ' && s[n + 1] != '\t'))
		return 0;
	return n;
}

static bool
is_severity(const char *s, size_t n)
{
	static const char *const severities[] = {
		"ERROR", "FATAL", "PANIC", "WARNING", "NOTICE", "INFO", "LOG", "DEBUG"
	};

	for (size_t i = 0; i < sizeof(severities) / sizeof(severities[0]); i++)
		if (strlen(severities[i]) == n && strncmp(s, severities[i], n) == 0)
			return true;
	return false;
}

char *
pq_error_flatten(const char *msg)
{
	Buf			b = {0};
	const char *p = msg;
	bool		first = true;

	while (p != NULL && *p != '\0')
	{
		const char *end = strchr(p, '\n');
		const char *next = end ? end + 1 : NULL;
		size_t		label;

		if (end == NULL)
			end = p + strlen(p);
		while (p < end && isspace((unsigned char) *p))
			p++;
		while (end > p && isspace((unsigned char) end[-1]))
			end--;
		if (p < end)
		{
			label = label_length(p);
			if (label > 0 && (size_t) (end - p) > label + 1)
			{
				const char *rest = p + label + 1;

				while (rest < end && isspace((unsigned char) *rest))
					rest++;
				if (!first)
					buf_add(&b, "; ", 2);
				if (!(first && is_severity(p, label)))
				{
					buf_add(&b, p, label);
					buf_add(&b, ": ", 2);
				}
				buf_add(&b, rest, (size_t) (end - rest));
			}
			else
			{
				if (!first)
					buf_add(&b, "; ", 2);
				buf_add(&b, p, (size_t) (end - p));
			}
			first = false;
		}
		p = next;
	}
	return buf_done(&b);
}

char *
redact_secret(const char *text, const char *secret)
{
	Buf			b = {0};
	const char *p = text;
	size_t		n = secret ? strlen(secret) : 0;

	if (text == NULL)
		return buf_done(&b);
	if (n == 0)
	{
		buf_adds(&b, text);
		return buf_done(&b);
	}
	for (;;)
	{
		const char *hit = strstr(p, secret);

		if (hit == NULL)
		{
			buf_adds(&b, p);
			break;
		}
		buf_add(&b, p, (size_t) (hit - p));
		buf_adds(&b, HIDDEN);
		p = hit + n;
	}
	return buf_done(&b);
}

/* ---- the password of a connection string, in every form ---- */

#define MAX_FORMS 6

typedef struct Forms
{
	char	   *s[MAX_FORMS];
	int			n;
	bool		oom;
} Forms;

static void
forms_add(Forms *f, const char *s, size_t n)
{
	char	   *c;

	if (n == 0 || f->n == MAX_FORMS)
		return;
	for (int i = 0; i < f->n; i++)
		if (strlen(f->s[i]) == n && memcmp(f->s[i], s, n) == 0)
			return;
	c = malloc(n + 1);
	if (c == NULL)
	{
		f->oom = true;
		return;
	}
	memcpy(c, s, n);
	c[n] = '\0';
	f->s[f->n++] = c;
}

static void
forms_free(Forms *f)
{
	for (int i = 0; i < f->n; i++)
		free(f->s[i]);
	f->n = 0;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* A URI's user:password@ (as libpq finds it): the raw and the decoded password. */
static void
uri_password(Forms *f, const char *conninfo)
{
	const char *p,
			   *start,
			   *colon;

	if (strncmp(conninfo, "postgresql://", 13) == 0)
		start = conninfo + 13;
	else if (strncmp(conninfo, "postgres://", 11) == 0)
		start = conninfo + 11;
	else
		return;
	for (p = start; *p && *p != '@' && *p != '/'; p++)
		;
	if (*p != '@')
		return;
	colon = memchr(start, ':', (size_t) (p - start));
	if (colon == NULL)
		return;
	colon++;
	forms_add(f, colon, (size_t) (p - colon));

	/* the decoded form, as far as it decodes */
	{
		char	   *d = malloc((size_t) (p - colon) + 1);
		size_t		n = 0;

		if (d == NULL)
		{
			f->oom = true;
			return;
		}
		for (const char *q = colon; q < p; q++)
		{
			if (*q == '%' && q + 2 < p && hexval(q[1]) >= 0 && hexval(q[2]) >= 0)
			{
				d[n++] = (char) (hexval(q[1]) * 16 + hexval(q[2]));
				q += 2;
			}
			else
				d[n++] = *q;
		}
		forms_add(f, d, n);
		free(d);
	}
}

/*
 * password=... of a key=value string, tokenised as libpq does (a value is
 * '...' with backslash escapes, or runs to the next space, with backslash
 * escapes): the value as written and unquoted.  Syntax errors skip a word.
 */
static void
keyword_password(Forms *f, const char *s)
{
	const char *p = s;

	while (*p)
	{
		const char *key,
				   *raw;
		size_t		keylen;
		char	   *val;
		size_t		n = 0;

		while (isspace((unsigned char) *p))
			p++;
		if (*p == '\0')
			break;
		key = p;
		while (*p && *p != '=' && !isspace((unsigned char) *p))
			p++;
		keylen = (size_t) (p - key);
		while (isspace((unsigned char) *p))
			p++;
		if (*p != '=')
			continue;			/* not key=value: go on with the next word */
		p++;
		while (isspace((unsigned char) *p))
			p++;
		raw = p;
		val = malloc(strlen(p) + 1);
		if (val == NULL)
		{
			f->oom = true;
			return;
		}
		if (*p == '\'')
		{
			p++;
			while (*p && *p != '\'')
			{
				if (*p == '\\' && p[1] != '\0')
					p++;
				val[n++] = *p++;
			}
			if (*p == '\'')
				p++;
		}
		else
		{
			while (*p && !isspace((unsigned char) *p))
			{
				if (*p == '\\' && p[1] != '\0')
					p++;
				val[n++] = *p++;
			}
		}
		if (keylen == 8 && strncmp(key, "password", 8) == 0)
		{
			forms_add(f, val, n);
			forms_add(f, raw, (size_t) (p - raw));
			if (p - raw >= 2 && *raw == '\'')
				forms_add(f, raw + 1, (size_t) (p - raw) - 2);
		}
		free(val);
	}
}

/* Every form of conninfo's password; returns false if libpq could not parse it. */
static bool
password_forms(Forms *f, const char *conninfo)
{
	char	   *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
	bool		parsed = opts != NULL;

	if (opts != NULL)
	{
		for (PQconninfoOption *o = opts; o->keyword != NULL; o++)
			if (strcmp(o->keyword, "password") == 0 && o->val != NULL)
				forms_add(f, o->val, strlen(o->val));
		PQconninfoFree(opts);
	}
	PQfreemem(err);
	uri_password(f, conninfo);
	if (strstr(conninfo, "://") == NULL)
		keyword_password(f, conninfo);
	return parsed;
}

char *
redact_conninfo_secrets(const char *text, const char *conninfo)
{
	Forms		f = {0};
	char	   *out;

	if (text == NULL)
		text = "";
	if (conninfo == NULL)
		return redact_secret(text, NULL);
	password_forms(&f, conninfo);
	if (f.oom)
	{
		forms_free(&f);
		return NULL;
	}
	/* the longest first, so that a form inside another is not left half */
	for (int i = 0; i < f.n; i++)
		for (int j = i + 1; j < f.n; j++)
			if (strlen(f.s[j]) > strlen(f.s[i]))
			{
				char	   *t = f.s[i];

				f.s[i] = f.s[j];
				f.s[j] = t;
			}
	out = redact_secret(text, NULL);
	for (int i = 0; i < f.n && out != NULL; i++)
	{
		char	   *next = redact_secret(out, f.s[i]);

		free(out);
		out = next;
	}
	forms_free(&f);
	return out;
}

bool
conninfo_has_password(const char *conninfo)
{
	Forms		f = {0};
	bool		parsed,
				found;

	if (conninfo == NULL)
		return false;
	parsed = password_forms(&f, conninfo);
	found = f.n > 0 || f.oom;
	forms_free(&f);
	if (!found && !parsed)
	{
		/* libpq refused it: when in doubt, it holds one */
		for (const char *p = conninfo; *p; p++)
			if (strncasecmp(p, "password", 8) == 0)
				return true;
	}
	return found;
}

static const char *
to_buf(char *s, char *buf, size_t buflen)
{
	if (buflen == 0)
	{
		free(s);
		return buf;
	}
	snprintf(buf, buflen, "%s", s ? s : OOM_TEXT);
	free(s);
	return buf;
}

const char *
pq_error_line(const char *libpq_message, const char *conninfo, char *buf, size_t buflen)
{
	char	   *flat = pq_error_flatten(libpq_message);
	char	   *safe = flat ? redact_conninfo_secrets(flat, conninfo) : NULL;

	free(flat);
	return to_buf(safe, buf, buflen);
}

const char *
conninfo_error_line(const char *libpq_message, const char *conninfo, char *buf, size_t buflen)
{
	char	   *quoted = redact_conninfo_error(libpq_message);
	const char *r;

	if (quoted == NULL)
		return to_buf(NULL, buf, buflen);
	r = pq_error_line(quoted, conninfo, buf, buflen);
	free(quoted);
	return r;
}
