/*
 * encode.c
 *		JSON encoding of PostgreSQL values for cdc_relay change events.
 *
 * Every value is written so that casting the JSON value back to the column
 * type gives the original value: numbers that JSON can carry exactly stay
 * numbers, everything else is a string in a settings-independent form
 * (ISO 8601 dates and times, hex bytea, shortest round-trip floats), and
 * non-finite floats become the strings "NaN", "Infinity" and "-Infinity".
 *
 * The type of each column is classified once (cdc_type_info_init, called
 * from the relation cache); cdc_append_value then needs no catalog access.
 * Rows (cdc_append_row) are written here too; the events around them are
 * proto.c's.
 */
#include "postgres.h"

#include <math.h>

#include "catalog/pg_type.h"
#include "common/shortest_dec.h"
#include "miscadmin.h"
#include "pgtime.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/bytea.h"
#include "utils/date.h"
#include "utils/datetime.h"
#include "utils/float.h"
#include "utils/guc.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/numeric.h"
#include "utils/pg_locale.h"
#include "utils/timestamp.h"

#include "cdc_relay.h"
#include "compat.h"

static CdcValueKind
classify_type(Oid basetypid)
{
	switch (basetypid)
	{
		case INT2OID:
			return CDC_KIND_INT2;
		case INT4OID:
			return CDC_KIND_INT4;
		case INT8OID:
			return CDC_KIND_INT8;
		case OIDOID:
			return CDC_KIND_OID;
		case FLOAT4OID:
			return CDC_KIND_FLOAT4;
		case FLOAT8OID:
			return CDC_KIND_FLOAT8;
		case NUMERICOID:
			return CDC_KIND_NUMERIC;
		case BOOLOID:
			return CDC_KIND_BOOL;
		case TEXTOID:
		case VARCHAROID:
		case BPCHAROID:
			return CDC_KIND_TEXT;
		case JSONOID:
			return CDC_KIND_JSON;
		case JSONBOID:
			return CDC_KIND_JSONB;
		case BYTEAOID:
			return CDC_KIND_BYTEA;
		case DATEOID:
			return CDC_KIND_DATE;
		case TIMEOID:
			return CDC_KIND_TIME;
		case TIMETZOID:
			return CDC_KIND_TIMETZ;
		case TIMESTAMPOID:
			return CDC_KIND_TIMESTAMP;
		case TIMESTAMPTZOID:
			return CDC_KIND_TIMESTAMPTZ;
		case INTERVALOID:
			return CDC_KIND_INTERVAL;
		default:
			if (OidIsValid(get_element_type(basetypid)))
				return CDC_KIND_ARRAY;
			return CDC_KIND_OTHER;
	}
}

/*
 * Whether writing a value described by ti may call an output function whose
 * result depends on the output settings (see output_settings below).  The
 * kinds written by this file's own code do not depend on them, nor do the
 * output functions of the types listed here; composites, ranges, money,
 * geometric types and the like may.  An array is written by array_out, and
 * so by its element's output function, when its lower bound is not 1.
 */
static bool
needs_output_settings(const CdcTypeInfo *ti)
{
	switch (ti->kind)
	{
		case CDC_KIND_ARRAY:
			switch (ti->elem->kind)
			{
				case CDC_KIND_INT2:
				case CDC_KIND_INT4:
				case CDC_KIND_INT8:
				case CDC_KIND_OID:
				case CDC_KIND_NUMERIC:
				case CDC_KIND_BOOL:
				case CDC_KIND_TEXT:
				case CDC_KIND_JSON:
				case CDC_KIND_JSONB:
					return false;
				case CDC_KIND_ARRAY:
				case CDC_KIND_OTHER:
					return ti->elem->needs_output_settings;
				default:
					return true;	/* floats, bytea, dates and times */
			}
		case CDC_KIND_OTHER:
			switch (ti->basetypid)
			{
				case UUIDOID:
				case NAMEOID:
				case CHAROID:
				case INETOID:
				case CIDROID:
				case MACADDROID:
				case MACADDR8OID:
				case BITOID:
				case VARBITOID:
				case XIDOID:
				case XID8OID:
				case CIDOID:
				case TIDOID:
				case PG_LSNOID:
				case TSVECTOROID:
				case TSQUERYOID:
					return false;
				default:
					return get_typtype(ti->basetypid) != TYPTYPE_ENUM;
			}
		default:
			return false;
	}
}

/*
 * Fill *ti for values of type typid.  Allocations (the element type of an
 * array, the output function's cache) go into cxt, which must live as long
 * as ti.
 */
void
cdc_type_info_init(CdcTypeInfo *ti, Oid typid, MemoryContext cxt)
{
	Oid			outfunc;
	bool		isvarlena;

	ti->basetypid = getBaseType(typid);
	ti->kind = classify_type(ti->basetypid);
	get_typlenbyvalalign(ti->basetypid, &ti->typlen, &ti->typbyval,
						 &ti->typalign);
	getTypeOutputInfo(ti->basetypid, &outfunc, &isvarlena);
	fmgr_info_cxt(outfunc, &ti->outfunc, cxt);
	ti->elem = NULL;
	if (ti->kind == CDC_KIND_ARRAY)
	{
		ti->elem = MemoryContextAllocZero(cxt, sizeof(CdcTypeInfo));
		cdc_type_info_init(ti->elem, get_element_type(ti->basetypid), cxt);
	}
	ti->needs_output_settings = needs_output_settings(ti);
}

/* Does the byte need escaping in a JSON string? */
static inline bool
byte_needs_escape(unsigned char c)
{
	return c < 0x20 || c == '"' || c == '\\';
}

/*
 * Does any of the 8 bytes at p need escaping?  Word-at-a-time tests for a
 * byte below 0x20, a quote or a backslash (exact: no byte is missed).
 */
static inline bool
word_needs_escape(const char *p)
{
	const uint64 ones = UINT64CONST(0x0101010101010101);
	const uint64 highs = UINT64CONST(0x8080808080808080);
	uint64		w;
	uint64		q;
	uint64		b;

	memcpy(&w, p, sizeof(w));
	q = w ^ (ones * '"');
	b = w ^ (ones * '\\');
	return (((w - ones * 0x20) & ~w) |
			((q - ones) & ~q) |
			((b - ones) & ~b)) & highs;
}

/*
 * Append str[0..len) as a JSON string literal.  Works on length-delimited
 * input so that text values are escaped straight from the varlena, without
 * a NUL-terminated copy; runs of bytes that need no escaping are found 8
 * bytes at a time and copied in one go.  Bytes >= 0x80 pass through: output
 * is in the database encoding.
 */
void
cdc_append_json_string(StringInfo out, const char *str, int len)
{
	static const char hexdig[] = "0123456789abcdef";
	const char *end = str + len;
	const char *run = str;
	const char *p = str;

	enlargeStringInfo(out, len + 2);
	out->data[out->len++] = '"';
	while (p < end)
	{
		unsigned char c;

		if (end - p >= 8 && !word_needs_escape(p))
		{
			p += 8;
			continue;
		}
		c = (unsigned char) *p;
		if (!byte_needs_escape(c))
		{
			p++;
			continue;
		}
		if (p > run)
			cdc_append_bytes(out, run, p - run);
		run = ++p;
		switch (c)
		{
			case '"':
				cdc_append_literal(out, "\\\"");
				break;
			case '\\':
				cdc_append_literal(out, "\\\\");
				break;
			case '\n':
				cdc_append_literal(out, "\\n");
				break;
			case '\r':
				cdc_append_literal(out, "\\r");
				break;
			case '\t':
				cdc_append_literal(out, "\\t");
				break;
			case '\b':
				cdc_append_literal(out, "\\b");
				break;
			case '\f':
				cdc_append_literal(out, "\\f");
				break;
			default:
				{
					char		esc[6] = {'\\', 'u', '0', '0',
						hexdig[c >> 4], hexdig[c & 0xF]};

					cdc_append_bytes(out, esc, 6);
				}
				break;
		}
	}
	if (end > run)
		cdc_append_bytes(out, run, end - run);
	appendStringInfoCharMacro(out, '"');
}

/* Append an LSN as a JSON string in PostgreSQL's "X/X" notation. */
void
cdc_append_lsn(StringInfo out, XLogRecPtr lsn)
{
	static const char hexdig[] = "0123456789ABCDEF";
	char		buf[20];
	char	   *p = buf + sizeof(buf);
	uint32		lo = (uint32) lsn;
	uint32		hi = (uint32) (lsn >> 32);

	*--p = '"';
	do
	{
		*--p = hexdig[lo & 0xF];
		lo >>= 4;
	} while (lo);
	*--p = '/';
	do
	{
		*--p = hexdig[hi & 0xF];
		hi >>= 4;
	} while (hi);
	*--p = '"';
	cdc_append_bytes(out, p, buf + sizeof(buf) - p);
}

/* Append len bytes that need no escaping (digits, dates) in quotes. */
static void
append_quoted_plain(StringInfo out, const char *s, int len)
{
	enlargeStringInfo(out, len + 2);
	out->data[out->len++] = '"';
	memcpy(out->data + out->len, s, len);
	out->len += len;
	out->data[out->len++] = '"';
	out->data[out->len] = '\0';
}

/* Write n (0 <= n < 10^width) as width digits with leading zeros. */
static inline char *
put_digits(char *p, int n, int width)
{
	for (int i = width - 1; i >= 0; i--)
	{
		p[i] = '0' + n % 10;
		n /= 10;
	}
	return p + width;
}

/*
 * Write a date or timestamp of the years 1 to 9999 exactly as
 * JsonEncodeDateTime does ("2024-01-02", "2024-01-02T03:04:05.5", with
 * "+00:00" for timestamptz in UTC), without the generic date formatter.
 * Returns the length, or 0 for anything else (infinite, BC, far future),
 * which the caller leaves to JsonEncodeDateTime.
 */
static int
encode_datetime_fast(char *buf, int64 value, Oid typid)
{
	int64		date = value;
	int64		time = 0;
	int			year;
	int			mon;
	int			mday;
	char	   *p = buf;

	if (typid == DATEOID)
	{
		if (DATE_NOT_FINITE((DateADT) value))
			return 0;
	}
	else
	{
		if (TIMESTAMP_NOT_FINITE(value))
			return 0;
		time = value;
		TMODULO(time, date, USECS_PER_DAY);
		if (time < 0)
		{
			time += USECS_PER_DAY;
			date -= 1;
		}
	}
	date += POSTGRES_EPOCH_JDATE;
	if (date < 0 || date > (int64) INT_MAX)
		return 0;
	j2date((int) date, &year, &mon, &mday);
	if (year < 1 || year > 9999)
		return 0;
	p = put_digits(p, year, 4);
	*p++ = '-';
	p = put_digits(p, mon, 2);
	*p++ = '-';
	p = put_digits(p, mday, 2);
	if (typid != DATEOID)
	{
		int			hour = time / USECS_PER_HOUR;
		int			min;
		int			sec;
		int			fsec;

		time -= hour * USECS_PER_HOUR;
		min = time / USECS_PER_MINUTE;
		time -= min * USECS_PER_MINUTE;
		sec = time / USECS_PER_SEC;
		fsec = time - sec * USECS_PER_SEC;
		*p++ = 'T';
		p = put_digits(p, hour, 2);
		*p++ = ':';
		p = put_digits(p, min, 2);
		*p++ = ':';
		p = put_digits(p, sec, 2);
		if (fsec != 0)
		{
			int			ndigits = 6;

			/* fractional seconds without trailing zeros */
			while (fsec % 10 == 0)
			{
				fsec /= 10;
				ndigits--;
			}
			*p++ = '.';
			p = put_digits(p, fsec, ndigits);
		}
		if (typid == TIMESTAMPTZOID)
		{
			memcpy(p, "+00:00", 6);
			p += 6;
		}
	}
	return p - buf;
}

/* Append a date/time value as a quoted ISO 8601 string (timestamptz in UTC). */
static void
append_datetime(StringInfo out, Datum value, Oid typid)
{
	static const int utc = 0;
	char		buf[MAXDATELEN + 1];
	int			len = 0;

	if (typid == DATEOID)
		len = encode_datetime_fast(buf, DatumGetDateADT(value), typid);
	else if (typid == TIMESTAMPOID || typid == TIMESTAMPTZOID)
		len = encode_datetime_fast(buf, DatumGetInt64(value), typid);
	if (len == 0)
	{
		JsonEncodeDateTime(buf, value, typid,
						   typid == TIMESTAMPTZOID ? &utc : NULL);
		len = strlen(buf);
	}
	append_quoted_plain(out, buf, len);
}

void
cdc_append_timestamptz(StringInfo out, TimestampTz ts)
{
	append_datetime(out, TimestampTzGetDatum(ts), TIMESTAMPTZOID);
}

static void
append_double(StringInfo out, double d, bool is_float4)
{
	char		buf[32];

	if (isnan(d))
		cdc_append_literal(out, "\"NaN\"");
	else if (isinf(d))
	{
		if (d > 0)
			cdc_append_literal(out, "\"Infinity\"");
		else
			cdc_append_literal(out, "\"-Infinity\"");
	}
	else
	{
		int			n = is_float4 ?
			float_to_shortest_decimal_buf((float) d, buf) :
			double_to_shortest_decimal_buf(d, buf);

		cdc_append_bytes(out, buf, n);
	}
}

/* Append a cstring produced by an output function as a JSON string. */
static void
append_output_string(StringInfo out, const CdcTypeInfo *ti, Datum value)
{
	char	   *s = OutputFunctionCall((FmgrInfo *) &ti->outfunc, value);

	cdc_append_json_string(out, s, strlen(s));
	pfree(s);
}

static inline bool
is_json_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

/*
 * json text: embedded as is, but line breaks between tokens become spaces.
 * Returns whether the value is the JSON literal null.
 */
static bool
append_json_text(StringInfo out, Datum value)
{
	text	   *t = DatumGetTextPP(value);
	const char *p = VARDATA_ANY(t);
	int			len = VARSIZE_ANY_EXHDR(t);
	int			start = 0;
	int			end = len;
	char	   *dst;

	enlargeStringInfo(out, len);
	dst = out->data + out->len;
	/* The json type rejects raw control characters inside strings. */
	for (int i = 0; i < len; i++)
		dst[i] = (p[i] == '\n' || p[i] == '\r') ? ' ' : p[i];
	out->len += len;
	out->data[out->len] = '\0';

	while (start < end && is_json_space(p[start]))
		start++;
	while (end > start && is_json_space(p[end - 1]))
		end--;
	return end - start == 4 && memcmp(p + start, "null", 4) == 0;
}

static void
append_bytea(StringInfo out, Datum value)
{
	bytea	   *b = DatumGetByteaPP(value);
	size_t		len = VARSIZE_ANY_EXHDR(b);

	enlargeStringInfo(out, 2 * len + 6);
	cdc_append_bytes(out, "\"\\\\x", 4);
	out->len += hex_encode(VARDATA_ANY(b), len, out->data + out->len);
	appendStringInfoCharMacro(out, '"');
}

static void append_array(StringInfo out, const CdcTypeInfo *ti, Datum value,
						 bool numeric_as_number);

static void
append_jsonb_scalar(StringInfo out, const JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			cdc_append_bytes(out, "null", 4);
			break;
		case jbvString:
			cdc_append_json_string(out, v->val.string.val, v->val.string.len);
			break;
		case jbvNumeric:
			{
				char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out,
																	NumericGetDatum(v->val.numeric)));

				appendStringInfoString(out, s);
				pfree(s);
			}
			break;
		case jbvBool:
			if (v->val.boolean)
				cdc_append_bytes(out, "true", 4);
			else
				cdc_append_bytes(out, "false", 5);
			break;
		default:
			elog(ERROR, "unexpected jsonb value type %d", (int) v->type);
	}
}

/*
 * jsonb as compact JSON, written straight from the jsonb iterator: strings
 * are escaped from the jsonb's own storage without copies, and there are no
 * blanks between tokens.  (jsonb_out would copy and escape every string
 * character by character; this is the hot path for jsonb-heavy tables.)
 * Returns whether the value is the JSON literal null.
 */
static bool
append_jsonb(StringInfo out, Datum value)
{
	Jsonb	   *jb = DatumGetJsonbP(value);
	JsonbIterator *it = JsonbIteratorInit(&jb->root);
	JsonbIteratorToken tok;
	JsonbValue	v;
	bool		need_comma = false;
	bool		raw_scalar = false;
	bool		is_null = false;

	while ((tok = JsonbIteratorNext(&it, &v, false)) != WJB_DONE)
	{
		switch (tok)
		{
			case WJB_BEGIN_ARRAY:
				/* a scalar document is stored as a one-element "raw" array */
				if (v.val.array.rawScalar)
				{
					raw_scalar = true;
					break;
				}
				/* FALLTHROUGH */
			case WJB_BEGIN_OBJECT:
				if (need_comma)
					appendStringInfoCharMacro(out, ',');
				appendStringInfoCharMacro(out, tok == WJB_BEGIN_ARRAY ? '[' : '{');
				need_comma = false;
				break;
			case WJB_END_ARRAY:
				if (!raw_scalar)
					appendStringInfoCharMacro(out, ']');
				need_comma = true;
				break;
			case WJB_END_OBJECT:
				appendStringInfoCharMacro(out, '}');
				need_comma = true;
				break;
			case WJB_KEY:
				if (need_comma)
					appendStringInfoCharMacro(out, ',');
				cdc_append_json_string(out, v.val.string.val, v.val.string.len);
				appendStringInfoCharMacro(out, ':');
				need_comma = false;
				break;
			case WJB_VALUE:
			case WJB_ELEM:
				if (need_comma)
					appendStringInfoCharMacro(out, ',');
				append_jsonb_scalar(out, &v);
				need_comma = true;
				if (raw_scalar && v.type == jbvNull)
					is_null = true;
				break;
			case WJB_DONE:
				break;
		}
	}
	return is_null;
}

/*
 * Append one non-null value of the type described by ti.  Returns true
 * when the value is a json or jsonb holding the JSON literal null, which is
 * written as null just like SQL NULL (the caller notes it).
 */
bool
cdc_append_value(StringInfo out, const CdcTypeInfo *ti, Datum value,
				 bool numeric_as_number)
{
	switch (ti->kind)
	{
		case CDC_KIND_INT2:
		case CDC_KIND_INT4:
		case CDC_KIND_INT8:
		case CDC_KIND_OID:
			{
				int			n;

				enlargeStringInfo(out, MAXINT8LEN + 1);
				if (ti->kind == CDC_KIND_INT2)
					n = pg_ltoa(DatumGetInt16(value), out->data + out->len);
				else if (ti->kind == CDC_KIND_INT4)
					n = pg_ltoa(DatumGetInt32(value), out->data + out->len);
				else if (ti->kind == CDC_KIND_INT8)
					n = pg_lltoa(DatumGetInt64(value), out->data + out->len);
				else
					n = pg_ultoa_n(DatumGetObjectId(value), out->data + out->len);
				out->len += n;
				out->data[out->len] = '\0';
			}
			break;
		case CDC_KIND_FLOAT4:
			append_double(out, DatumGetFloat4(value), true);
			break;
		case CDC_KIND_FLOAT8:
			append_double(out, DatumGetFloat8(value), false);
			break;
		case CDC_KIND_NUMERIC:
			{
				Numeric		num = DatumGetNumeric(value);
				char	   *s = DatumGetCString(DirectFunctionCall1(numeric_out,
																	NumericGetDatum(num)));

				if (numeric_as_number && !numeric_is_nan(num) &&
					!numeric_is_inf(num))
					cdc_append_bytes(out, s, strlen(s));
				else
					append_quoted_plain(out, s, strlen(s));
				pfree(s);
			}
			break;
		case CDC_KIND_BOOL:
			if (DatumGetBool(value))
				cdc_append_bytes(out, "true", 4);
			else
				cdc_append_bytes(out, "false", 5);
			break;
		case CDC_KIND_TEXT:
			{
				text	   *t = DatumGetTextPP(value);

				cdc_append_json_string(out, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
			}
			break;
		case CDC_KIND_JSON:
			return append_json_text(out, value);
		case CDC_KIND_JSONB:
			return append_jsonb(out, value);
		case CDC_KIND_BYTEA:
			append_bytea(out, value);
			break;
		case CDC_KIND_DATE:
		case CDC_KIND_TIME:
		case CDC_KIND_TIMETZ:
		case CDC_KIND_TIMESTAMP:
		case CDC_KIND_TIMESTAMPTZ:
			append_datetime(out, value, ti->basetypid);
			break;
		case CDC_KIND_INTERVAL:
			{
				char		buf[MAXDATELEN + 1];

				cdc_encode_interval_iso(DatumGetIntervalP(value), buf);
				append_quoted_plain(out, buf, strlen(buf));
			}
			break;
		case CDC_KIND_ARRAY:
			append_array(out, ti, value, numeric_as_number);
			break;
		case CDC_KIND_OTHER:
			append_output_string(out, ti, value);
			break;
	}
	return false;
}

/* Write dimension dim of an array (recursively), consuming elements from *pos. */
static void
append_array_dim(StringInfo out, const CdcTypeInfo *elem, int dim, int ndim,
				 const int *dims, const Datum *values, const bool *nulls,
				 int *pos, bool numeric_as_number)
{
	appendStringInfoCharMacro(out, '[');
	for (int i = 0; i < dims[dim]; i++)
	{
		if (i > 0)
			appendStringInfoCharMacro(out, ',');
		if (dim + 1 < ndim)
			append_array_dim(out, elem, dim + 1, ndim, dims, values, nulls,
							 pos, numeric_as_number);
		else
		{
			if (nulls[*pos])
				cdc_append_bytes(out, "null", 4);
			else if (elem->kind == CDC_KIND_JSON || elem->kind == CDC_KIND_JSONB ||
					 elem->kind == CDC_KIND_ARRAY)
			{
				/*
				 * An element that is itself JSON or an array is written as
				 * a string of its text, or it could not be told from a
				 * dimension of the array (nor a JSON null from NULL).
				 */
				append_output_string(out, elem, values[*pos]);
			}
			else
				(void) cdc_append_value(out, elem, values[*pos], numeric_as_number);
			(*pos)++;
		}
	}
	appendStringInfoCharMacro(out, ']');
}

/*
 * Arrays become (nested) JSON arrays.  An array whose lower bounds are not
 * all 1 (e.g. '[0:1]={a,b}') cannot be represented by a JSON array without
 * losing the bounds, so it is written as a string in PostgreSQL's own
 * array syntax, which keeps them.
 */
static void
append_array(StringInfo out, const CdcTypeInfo *ti, Datum value,
			 bool numeric_as_number)
{
	ArrayType  *arr = DatumGetArrayTypeP(value);
	int			ndim = ARR_NDIM(arr);
	int		   *dims = ARR_DIMS(arr);
	int		   *lbs = ARR_LBOUND(arr);
	const CdcTypeInfo *elem = ti->elem;
	Datum	   *values;
	bool	   *nulls;
	int			nelems;
	int			pos = 0;

	if (ndim == 0)
	{
		cdc_append_bytes(out, "[]", 2);
		return;
	}
	for (int d = 0; d < ndim; d++)
	{
		if (lbs[d] != 1)
		{
			append_output_string(out, ti, value);
			return;
		}
	}
	deconstruct_array(arr, ARR_ELEMTYPE(arr), elem->typlen, elem->typbyval,
					  elem->typalign, &values, &nulls, &nelems);
	append_array_dim(out, elem, 0, ndim, dims, values, nulls, &pos,
					 numeric_as_number);
	pfree(values);
	pfree(nulls);
}

/*
 * Append a JSON object of the given columns (indexes into entry->cols, or
 * all columns when which is NULL) of a deformed row in entry's column order
 * (values[attnum - 1]), for one image of a change event.  Values stored out
 * of line and not in the WAL (unchanged TOAST) are left out and noted in
 * notes->unchanged; they are never read from disk.  json/jsonb values that
 * are the JSON literal null are noted in notes->json_null[image], so that a
 * consumer can tell them from SQL NULL.
 */
void
cdc_append_row(StringInfo out, const CdcRelEntry *entry, const Datum *values,
			   const bool *nulls, const int *which, int n,
			   bool numeric_as_number, CdcImage image, CdcRowNotes *notes)
{
	bool		first = true;

	appendStringInfoCharMacro(out, '{');
	for (int i = 0; i < n; i++)
	{
		const CdcColumn *col = &entry->cols[which ? which[i] : i];
		int			a = col->attnum - 1;

		if (!nulls[a] && col->type.typlen == -1 &&
			VARATT_IS_EXTERNAL_ONDISK(DatumGetPointer(values[a])))
		{
			notes->unchanged = list_append_unique_ptr(notes->unchanged, (void *) col);
			continue;
		}
		if (!first)
			appendStringInfoCharMacro(out, ',');
		first = false;
		cdc_append_bytes(out, col->json_name, col->json_name_len);
		if (nulls[a])
			cdc_append_bytes(out, "null", 4);
		else if (cdc_append_value(out, &col->type, values[a], numeric_as_number))
			notes->json_null[image] = lappend(notes->json_null[image], (void *) col);
	}
	appendStringInfoCharMacro(out, '}');
}

/*
 * Whether each of the settings below is in effect, cheaply (no GUC
 * machinery): what the output functions read has the forced value, or one
 * that gives the same output (the date order does not change ISO output;
 * every positive extra_float_digits gives shortest-exact floats).
 */
static bool
datestyle_in_effect(void)
{
	return DateStyle == USE_ISO_DATES;
}

static bool
intervalstyle_in_effect(void)
{
	return IntervalStyle == INTSTYLE_ISO_8601;
}

static bool
timezone_in_effect(void)
{
	static pg_tz *utc = NULL;

	if (utc == NULL)
		utc = pg_tzset("UTC");
	return utc != NULL && session_timezone == utc;
}

static bool
float_digits_in_effect(void)
{
	return extra_float_digits > 0;
}

static bool
bytea_output_in_effect(void)
{
	return bytea_output == BYTEA_OUTPUT_HEX;
}

static bool
lc_monetary_in_effect(void)
{
	return strcmp(locale_monetary, "C") == 0;
}

/*
 * Settings that output functions read.  Values written through a type's
 * output function (composites, ranges, geometric types, money, ...) must
 * not depend on the settings of whoever happens to decode or call
 * snapshot_row, so they are fixed while encoding.
 */
static const struct
{
	const char *name;
	const char *value;
	bool		(*in_effect) (void);
}			output_settings[] = {
	{"DateStyle", "ISO, YMD", datestyle_in_effect},
	{"IntervalStyle", "iso_8601", intervalstyle_in_effect},
	{"TimeZone", "UTC", timezone_in_effect},
	{"extra_float_digits", "1", float_digits_in_effect},
	{"bytea_output", "hex", bytea_output_in_effect},
	{"lc_monetary", "C", lc_monetary_in_effect},
};

/* Whether the current settings already give every output what the forced ones give. */
bool
cdc_output_settings_in_effect(void)
{
	for (int i = 0; i < lengthof(output_settings); i++)
	{
		if (!output_settings[i].in_effect())
			return false;
	}
	return true;
}

/*
 * Set output_settings with the given action: GUC_ACTION_SAVE at a GUC nest
 * level the caller opened (NewGUCNestLevel) and closes (AtEOXact_GUC), or
 * GUC_ACTION_SET outside a transaction.  With only_missing, only those not
 * in effect already (each set costs a parse of its value).
 */
void
cdc_output_settings_set(GucAction action, bool only_missing)
{
	for (int i = 0; i < lengthof(output_settings); i++)
	{
		if (only_missing && output_settings[i].in_effect())
			continue;
		(void) set_config_option(output_settings[i].name,
								 output_settings[i].value,
								 PGC_USERSET, PGC_S_SESSION, action, true,
								 ERROR, false);
	}
}
