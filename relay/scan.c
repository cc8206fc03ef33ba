/*
 * scan.c: the fixed fields of the plugin's begin, commit, logical message and
 * domain ("e") events, read without a JSON parser (the contract is in
 * scan.h).
 *
 * Each scanner walks the event once, left to right, in the plugin's field
 * order (src/plugin.c: send_begin, cdc_commit, cdc_message and
 * append_txn_tail), and accepts only what the plugin writes: a literal that
 * does not match, a number or LSN not in the plugin's notation, a string
 * with a raw control character or a bad escape, or a byte after the closing
 * brace, and the event is refused.
 */
#include "scan.h"

/* A position in the event and its end. */
typedef struct Cur
{
	const char *p;
	const char *end;
} Cur;

/* Consume the literal s[0..n) if it comes next; otherwise consume nothing. */
static bool
lit(Cur *c, const char *s, size_t n)
{
	if ((size_t) (c->end - c->p) < n || memcmp(c->p, s, n) != 0)
		return false;
	c->p += n;
	return true;
}

#define LIT(c, s) lit((c), "" s, sizeof(s) - 1)

/*
 * An unsigned decimal integer as the plugin prints it (no sign, no leading
 * zero, no fraction or exponent) of at most max.
 */
static bool
number(Cur *c, uint64_t max, ScanText *t, uint64_t *v)
{
	const char *start = c->p;
	uint64_t	n = 0;

	while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
	{
		unsigned	d = (unsigned) (*c->p - '0');

		if (n > (max - d) / 10)
			return false;
		n = n * 10 + d;
		c->p++;
	}
	if (c->p == start || (*start == '0' && c->p - start > 1))
		return false;
	if (t != NULL)
	{
		t->p = start;
		t->len = (size_t) (c->p - start);
	}
	*v = n;
	return true;
}

static bool
xid(Cur *c, ScanText *t, uint32_t *v)
{
	uint64_t	n;

	if (!number(c, UINT32_MAX, t, &n))
		return false;
	*v = (uint32_t) n;
	return true;
}

/* 1 to 8 upper-case hex digits (cdc_append_lsn's notation) into *v. */
static bool
hex32(Cur *c, uint64_t *v)
{
	const char *start = c->p;
	uint64_t	n = 0;

	while (c->p < c->end && c->p - start < 8)
	{
		char		ch = *c->p;

		if (ch >= '0' && ch <= '9')
			n = n * 16 + (uint64_t) (ch - '0');
		else if (ch >= 'A' && ch <= 'F')
			n = n * 16 + (uint64_t) (ch - 'A' + 10);
		else
			break;
		c->p++;
	}
	*v = n;
	return c->p > start;
}

/* "X/X": the text between the quotes into *t, the LSN into *v. */
static bool
lsn(Cur *c, ScanText *t, uint64_t *v)
{
	uint64_t	hi,
				lo;

	if (!LIT(c, "\""))
		return false;
	t->p = c->p;
	if (!hex32(c, &hi) || !LIT(c, "/") || !hex32(c, &lo))
		return false;
	t->len = (size_t) (c->p - t->p);
	*v = hi << 32 | lo;
	return LIT(c, "\"");
}

static bool
is_hex(char ch)
{
	return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
}

/*
 * A JSON string: its raw contents (escapes not decoded) into *t; *escaped
 * when it holds an escape.  Refused: a raw control character, a bad escape,
 * no closing quote.
 */
static bool
string(Cur *c, ScanText *t, bool *escaped)
{
	if (!LIT(c, "\""))
		return false;
	t->p = c->p;
	*escaped = false;
	while (c->p < c->end)
	{
		unsigned char ch = (unsigned char) *c->p;

		if (ch == '"')
		{
			t->len = (size_t) (c->p - t->p);
			c->p++;
			return true;
		}
		if (ch < 0x20)
			return false;
		if (ch == '\\')
		{
			*escaped = true;
			if (c->end - c->p < 2)
				return false;
			switch (c->p[1])
			{
				case '"':
				case '\\':
				case '/':
				case 'b':
				case 'f':
				case 'n':
				case 'r':
				case 't':
					c->p += 2;
					continue;
				case 'u':
					if (c->end - c->p < 6 || !is_hex(c->p[2]) || !is_hex(c->p[3]) ||
						!is_hex(c->p[4]) || !is_hex(c->p[5]))
						return false;
					c->p += 6;
					continue;
				default:
					return false;
			}
		}
		c->p++;
	}
	return false;
}

/* A JSON string without escapes (timestamps, message prefixes we take as is). */
static bool
plain_string(Cur *c, ScanText *t)
{
	bool		escaped;

	return string(c, t, &escaped) && !escaped;
}

/* The event ends here: the closing brace is its last byte. */
static bool
closed(Cur *c)
{
	return LIT(c, "}") && c->p == c->end;
}

ScanKind
scan_kind(const char *ev, size_t len)
{
	const char *op = ev + CDC_WIRE_OP_OFFSET;

	if (memchr(ev, CDC_WIRE_KEY_SEP, len) != NULL)
		return SCAN_ROW;
	if (len < CDC_WIRE_OP_OFFSET + 3 || memcmp(ev, CDC_WIRE_OP_OPEN, CDC_WIRE_LEN(CDC_WIRE_OP_OPEN)) != 0)
		return SCAN_OTHER;
	if (op[1] == '"')
		return op[0] == CDC_OP_MESSAGE ? SCAN_MESSAGE : op[0] == CDC_OP_TRUNCATE ? SCAN_TRUNCATE :
			op[0] == CDC_OP_EMIT ? SCAN_EMIT : SCAN_OTHER;
	if (len >= CDC_WIRE_OP_OFFSET + 7 && memcmp(op, CDC_OP_BEGIN "\"", 6) == 0)
		return SCAN_BEGIN;
	if (len >= CDC_WIRE_OP_OFFSET + 8 && memcmp(op, CDC_OP_COMMIT "\"", 7) == 0)
		return SCAN_COMMIT;
	return SCAN_OTHER;
}

bool
scan_begin(const char *ev, size_t len, ScanBegin *out)
{
	Cur			c = {ev, ev + len};
	bool		escaped;

	memset(out, 0, sizeof(*out));
	if (!LIT(&c, CDC_WIRE_OP_OPEN CDC_OP_BEGIN "\""))
		return false;
	if (LIT(&c, CDC_WIRE_F_XID) && !xid(&c, &out->xid, &out->xid_value))
		return false;
	if (LIT(&c, CDC_WIRE_F_REQUEST_ID) && !string(&c, &out->request_id, &escaped))
		return false;
	if (LIT(&c, CDC_WIRE_F_COMMIT_LSN) && !lsn(&c, &out->commit_lsn, &out->commit_lsn_value))
		return false;
	if (LIT(&c, CDC_WIRE_F_TS) && !plain_string(&c, &out->ts))
		return false;
	return closed(&c);
}

bool
scan_commit(const char *ev, size_t len, ScanCommit *out)
{
	Cur			c = {ev, ev + len};
	bool		escaped;

	memset(out, 0, sizeof(*out));
	if (!LIT(&c, CDC_WIRE_OP_OPEN CDC_OP_COMMIT "\""))
		return false;
	if (LIT(&c, CDC_WIRE_F_XID) && !xid(&c, &out->xid, &out->xid_value))
		return false;
	if (LIT(&c, CDC_WIRE_F_REQUEST_ID) && !string(&c, &out->request_id, &escaped))
		return false;
	/* include-lsn: both LSNs, or neither */
	if (LIT(&c, CDC_WIRE_F_COMMIT_LSN) &&
		!(lsn(&c, &out->commit_lsn, &out->commit_lsn_value) &&
		  LIT(&c, CDC_WIRE_F_END_LSN) && lsn(&c, &out->end_lsn, &out->end_lsn_value)))
		return false;
	if (!LIT(&c, CDC_WIRE_F_EVENTS) || !number(&c, UINT64_MAX, NULL, &out->events))
		return false;
	if (LIT(&c, CDC_WIRE_F_TS) && !plain_string(&c, &out->ts))
		return false;
	return closed(&c);
}

bool
scan_message(const char *ev, size_t len, ScanMessage *out)
{
	Cur			c = {ev, ev + len};
	bool		escaped;

	memset(out, 0, sizeof(*out));
	if (!LIT(&c, CDC_WIRE_OP_OPEN "m\"" CDC_WIRE_F_PREFIX) || !plain_string(&c, &out->prefix) ||
		!LIT(&c, CDC_WIRE_F_TRANSACTIONAL))
		return false;
	if (LIT(&c, "true"))
		out->transactional = true;
	else if (!LIT(&c, "false"))
		return false;
	if (!LIT(&c, CDC_WIRE_F_CONTENT) || !string(&c, &out->content, &escaped) ||
		!LIT(&c, CDC_WIRE_F_CONTENT_ENCODING))
		return false;
	if (LIT(&c, "\"base64\""))
		out->base64 = true;
	else if (!LIT(&c, "\"text\""))
		return false;
	if (LIT(&c, CDC_WIRE_F_XID) && !xid(&c, &out->xid, &out->xid_value))
		return false;
	if (!out->transactional)
	{
		if (LIT(&c, CDC_WIRE_F_LSN) && !lsn(&c, &out->lsn, &out->lsn_value))
			return false;
		return closed(&c);
	}
	/* a transactional message ends as every event of a transaction does */
	if (LIT(&c, CDC_WIRE_F_LSN) &&
		!(lsn(&c, &out->lsn, &out->lsn_value) &&
		  LIT(&c, CDC_WIRE_F_COMMIT_LSN) && lsn(&c, &out->commit_lsn, &out->commit_lsn_value)))
		return false;
	if (!LIT(&c, CDC_WIRE_F_SEQ) || !number(&c, UINT64_MAX, NULL, &out->seq))
		return false;
	out->has_seq = true;
	if (LIT(&c, CDC_WIRE_F_REQUEST_ID) && !string(&c, &out->request_id, &escaped))
		return false;
	if (LIT(&c, CDC_WIRE_F_TS) && !plain_string(&c, &out->ts))
		return false;
	return closed(&c);
}

static bool
digits(Cur *c)
{
	const char *start = c->p;

	while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
		c->p++;
	return c->p > start;
}

/* A JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool
json_number(Cur *c)
{
	LIT(c, "-");
	if (c->p >= c->end || *c->p < '0' || *c->p > '9')
		return false;
	if (!LIT(c, "0"))
		digits(c);
	if (LIT(c, ".") && !digits(c))
		return false;
	if (LIT(c, "e") || LIT(c, "E"))
	{
		if (!LIT(c, "+"))
			LIT(c, "-");
		if (!digits(c))
			return false;
	}
	return true;
}

/*
 * A JSON value as the plugin embeds a domain event's payload (jsonb's text
 * output): its bytes into *t.  Strings are checked as string() does,
 * numbers by JSON's grammar, literals are true, false and null; brackets
 * must nest and match, members be "name": value; the spaces jsonb writes
 * after ',' and ':' are allowed (and, more loosely, before any value).
 */
static bool
value(Cur *c, ScanText *t)
{
	char		stack[64];
	int			depth = 0;
	ScanText	st;
	bool		escaped;

	t->p = c->p;
	do
	{
		/* a value: string, scalar, or an opening bracket */
		while (c->p < c->end && *c->p == ' ')
			c->p++;
		if (c->p >= c->end)
			return false;
		if (*c->p == '"')
		{
			if (!string(c, &st, &escaped))
				return false;
		}
		else if (*c->p == '{' || *c->p == '[')
		{
			if (depth == (int) sizeof(stack))
				return false;
			stack[depth++] = *c->p == '{' ? '}' : ']';
			c->p++;
			while (c->p < c->end && *c->p == ' ')
				c->p++;
			if (c->p < c->end && *c->p == stack[depth - 1])
			{
				c->p++;
				depth--;
			}
			else
			{
				/* an object's first member: "name": */
				if (stack[depth - 1] == '}' &&
					!(string(c, &st, &escaped) && LIT(c, ":")))
					return false;
				continue;
			}
		}
		else if (!LIT(c, "true") && !LIT(c, "false") && !LIT(c, "null") && !json_number(c))
			return false;
		/* after a value: a comma, or closing brackets */
		for (;;)
		{
			while (c->p < c->end && *c->p == ' ' && depth > 0)
				c->p++;
			if (depth == 0)
				break;
			if (c->p >= c->end)
				return false;
			if (*c->p == ',')
			{
				c->p++;
				if (stack[depth - 1] == '}')
				{
					while (c->p < c->end && *c->p == ' ')
						c->p++;
					if (!(string(c, &st, &escaped) && LIT(c, ":")))
						return false;
				}
				break;
			}
			if (*c->p != stack[depth - 1])
				return false;
			c->p++;
			depth--;
		}
	} while (depth > 0);
	t->len = (size_t) (c->p - t->p);
	return true;
}

bool
scan_emit(const char *ev, size_t len, ScanEmit *out)
{
	Cur			c = {ev, ev + len};
	bool		escaped;

	memset(out, 0, sizeof(*out));
	if (!LIT(&c, CDC_WIRE_OP_OPEN "e\"" CDC_WIRE_F_TOPIC) || !plain_string(&c, &out->topic) ||
		!LIT(&c, CDC_WIRE_F_KEY))
		return false;
	if (!LIT(&c, "null") && !string(&c, &out->key, &escaped))
		return false;
	if (!LIT(&c, CDC_WIRE_F_PAYLOAD) || !value(&c, &out->payload))
		return false;
	if (LIT(&c, CDC_WIRE_F_XID) && !xid(&c, &out->xid, &out->xid_value))
		return false;
	if (LIT(&c, CDC_WIRE_F_LSN) &&
		!(lsn(&c, &out->lsn, &out->lsn_value) &&
		  LIT(&c, CDC_WIRE_F_COMMIT_LSN) && lsn(&c, &out->commit_lsn, &out->commit_lsn_value)))
		return false;
	if (!LIT(&c, CDC_WIRE_F_SEQ) || !number(&c, UINT64_MAX, NULL, &out->seq))
		return false;
	if (LIT(&c, CDC_WIRE_F_REQUEST_ID) && !string(&c, &out->request_id, &escaped))
		return false;
	if (LIT(&c, CDC_WIRE_F_TS) && !plain_string(&c, &out->ts))
		return false;
	return closed(&c);
}

/* The value of hex digits p[0..4) */
static unsigned
hex4(const char *p)
{
	unsigned	v = 0;

	for (int i = 0; i < 4; i++)
	{
		char		ch = p[i];

		v = v * 16 + (unsigned) (ch <= '9' ? ch - '0' : (ch | 0x20) - 'a' + 10);
	}
	return v;
}

bool
scan_unescape(ScanText t, char *dst, size_t size, size_t *outlen)
{
	const char *p = t.p,
			   *end = t.p + t.len;
	size_t		n = 0;

	*outlen = 0;
	if (size == 0)
		return false;
	dst[0] = '\0';
	while (p < end)
	{
		char		b[4];
		size_t		bl = 1;

		if (*p != '\\')
			b[0] = *p++;
		else
		{
			if (end - p < 2)
				return false;
			switch (p[1])
			{
				case '"':
				case '\\':
				case '/':
					b[0] = p[1];
					break;
				case 'b':
					b[0] = '\b';
					break;
				case 'f':
					b[0] = '\f';
					break;
				case 'n':
					b[0] = '\n';
					break;
				case 'r':
					b[0] = '\r';
					break;
				case 't':
					b[0] = '\t';
					break;
				case 'u':
					{
						unsigned	cp;

						if (end - p < 6 || !is_hex(p[2]) || !is_hex(p[3]) || !is_hex(p[4]) || !is_hex(p[5]))
							return false;
						cp = hex4(p + 2);
						if (cp >= 0xD800 && cp <= 0xDBFF)
						{
							unsigned	lo;

							if (end - p < 12 || p[6] != '\\' || p[7] != 'u' || !is_hex(p[8]) ||
								!is_hex(p[9]) || !is_hex(p[10]) || !is_hex(p[11]))
								return false;
							lo = hex4(p + 8);
							if (lo < 0xDC00 || lo > 0xDFFF)
								return false;
							cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
							p += 6;
						}
						else if (cp >= 0xDC00 && cp <= 0xDFFF)
							return false;
						if (cp < 0x80)
							b[0] = (char) cp;
						else if (cp < 0x800)
						{
							b[0] = (char) (0xC0 | cp >> 6);
							b[1] = (char) (0x80 | (cp & 0x3F));
							bl = 2;
						}
						else if (cp < 0x10000)
						{
							b[0] = (char) (0xE0 | cp >> 12);
							b[1] = (char) (0x80 | ((cp >> 6) & 0x3F));
							b[2] = (char) (0x80 | (cp & 0x3F));
							bl = 3;
						}
						else
						{
							b[0] = (char) (0xF0 | cp >> 18);
							b[1] = (char) (0x80 | ((cp >> 12) & 0x3F));
							b[2] = (char) (0x80 | ((cp >> 6) & 0x3F));
							b[3] = (char) (0x80 | (cp & 0x3F));
							bl = 4;
						}
						p += 4;
						break;
					}
				default:
					return false;
			}
			p += 2;
		}
		if (n + bl >= size)
		{
			dst[0] = '\0';
			return false;
		}
		memcpy(dst + n, b, bl);
		n += bl;
	}
	dst[n] = '\0';
	*outlen = n;
	return true;
}

bool
scan_text_copy(ScanText t, char *dst, size_t size)
{
	if (size == 0)
		return false;
	if (t.len >= size)
	{
		dst[0] = '\0';
		return false;
	}
	if (t.len > 0)
		memcpy(dst, t.p, t.len);
	dst[t.len] = '\0';
	return true;
}
