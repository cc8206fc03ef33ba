/*
 * scan_bench.c: relay/scan.c against jansson on real plugin output (run by
 * test/bench/batch.sh; not part of the relay).
 *
 *   scan_bench FILE [all|split|jansson|scan] [REPEAT]
 *
 * FILE is pg_recvlogical output of the plugin with key-prefix (one event per
 * line; with batch-events the lines are the same).  The whole file is taken
 * as one payload and split with scan_next_event ("split"); its begin and
 * commit events are then read REPEAT times the way stream.c reads them today
 * (json_loadb, the op, commit_lsn and xid into text for the headers, end_lsn
 * through sscanf: "jansson") and with scan_begin / scan_commit ("scan").
 * First, every begin and commit is read both ways and the fields compared:
 * any difference, or an event the scanner refuses, is an error (exit 1).
 * Prints nanoseconds per event and per row change; run one mode under
 * valgrind --tool=callgrind for instruction counts.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "scan.h"

typedef struct Fields
{
	char		commit_lsn[24];
	char		xid[24];
	uint64_t	end_lsn;
	int			kind;			/* SCAN_BEGIN or SCAN_COMMIT */
} Fields;

/* the relay's parse_lsn (config.c) */
static int
lsn_parse(const char *s, uint64_t *lsn)
{
	unsigned int hi,
				lo;
	int			n = 0;

	if (sscanf(s, "%X/%X%n", &hi, &lo, &n) != 2 || s[n] != '\0')
		return 0;
	*lsn = ((uint64_t) hi << 32) | lo;
	return 1;
}

/* As stream.c's handle_json + handle_begin / handle_commit read the fields. */
static int
read_jansson(const char *ev, size_t len, Fields *f)
{
	json_error_t jerr;
	json_t	   *j = json_loadb(ev, len, JSON_ALLOW_NUL, &jerr);
	const char *op = json_string_value(json_object_get(j, "op"));
	int			ok = 0;

	if (op != NULL && strcmp(op, "begin") == 0)
	{
		const char *cl = json_string_value(json_object_get(j, "commit_lsn"));
		json_t	   *xid = json_object_get(j, "xid");

		f->kind = SCAN_BEGIN;
		if (cl != NULL)
		{
			snprintf(f->commit_lsn, sizeof(f->commit_lsn), "%s", cl);
			if (json_is_integer(xid))
				snprintf(f->xid, sizeof(f->xid), "%lld", (long long) json_integer_value(xid));
			else
				f->xid[0] = '\0';
			ok = 1;
		}
	}
	else if (op != NULL && strcmp(op, "commit") == 0)
	{
		const char *el = json_string_value(json_object_get(j, "end_lsn"));

		f->kind = SCAN_COMMIT;
		ok = el != NULL && lsn_parse(el, &f->end_lsn);
	}
	json_decref(j);
	return ok;
}

static int
read_scan(const char *ev, size_t len, Fields *f)
{
	switch (scan_kind(ev, len))
	{
		case SCAN_BEGIN:
			{
				ScanBegin	b;

				f->kind = SCAN_BEGIN;
				return scan_begin(ev, len, &b) && b.commit_lsn.p != NULL &&
					scan_text_copy(b.commit_lsn, f->commit_lsn, sizeof(f->commit_lsn)) &&
					scan_text_copy(b.xid, f->xid, sizeof(f->xid));
			}
		case SCAN_COMMIT:
			{
				ScanCommit	c;

				f->kind = SCAN_COMMIT;
				if (!scan_commit(ev, len, &c) || c.end_lsn.p == NULL)
					return 0;
				f->end_lsn = c.end_lsn_value;
				return 1;
			}
		default:
			return 0;
	}
}

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int
main(int argc, char **argv)
{
	const char *mode = argc > 2 ? argv[2] : "all";
	long		repeat = argc > 3 ? atol(argv[3]) : 5;
	FILE	   *fp;
	char	   *buf;
	long		size;
	size_t		off,
				nev = 0,
				nrows = 0,
				nbc = 0,
				cap = 1024;
	const char **bc;
	size_t	   *bclen;
	uint64_t	sink = 0;
	double		t0,
				t_split = 0,
				t_json = 0,
				t_scan = 0;

	if (argc < 2 || repeat < 1)
	{
		fprintf(stderr, "usage: scan_bench FILE [all|split|jansson|scan] [REPEAT]\n");
		return 2;
	}
	fp = fopen(argv[1], "rb");
	if (fp == NULL || fseek(fp, 0, SEEK_END) != 0 || (size = ftell(fp)) <= 0)
	{
		perror(argv[1]);
		return 2;
	}
	rewind(fp);
	buf = malloc((size_t) size);
	bc = malloc(cap * sizeof(*bc));
	bclen = malloc(cap * sizeof(*bclen));
	if (buf == NULL || bc == NULL || bclen == NULL || fread(buf, 1, (size_t) size, fp) != (size_t) size)
	{
		perror(argv[1]);
		return 2;
	}
	fclose(fp);

	/* the events, and which are begin / commit (scan_kind, checked below) */
	for (off = 0; off < (size_t) size;)
	{
		const char *ev = buf + off;
		size_t		len = scan_next_event(buf, (size_t) size, &off);
		ScanKind	k = scan_kind(ev, len);

		nev++;
		nrows += k == SCAN_ROW;
		if (k == SCAN_BEGIN || k == SCAN_COMMIT || (len > 8 && memcmp(ev, "{\"op\":\"b", 8) == 0) ||
			(len > 8 && memcmp(ev, "{\"op\":\"co", 9) == 0))
		{
			if (nbc == cap)
			{
				cap *= 2;
				bc = realloc(bc, cap * sizeof(*bc));
				bclen = realloc(bclen, cap * sizeof(*bclen));
				if (bc == NULL || bclen == NULL)
					return 2;
			}
			bc[nbc] = ev;
			bclen[nbc++] = len;
		}
	}

	/* conformance: both ways agree on every begin and commit of the file */
	for (size_t i = 0; i < nbc; i++)
	{
		Fields		a = {0},
					b = {0};

		if (!read_jansson(bc[i], bclen[i], &a) || !read_scan(bc[i], bclen[i], &b) ||
			a.kind != b.kind || strcmp(a.commit_lsn, b.commit_lsn) != 0 ||
			strcmp(a.xid, b.xid) != 0 || a.end_lsn != b.end_lsn)
		{
			fprintf(stderr, "scan_bench: jansson and scan.c differ on: %.*s\n", (int) bclen[i], bc[i]);
			return 1;
		}
	}

	for (long r = 0; r < repeat; r++)
	{
		if (strcmp(mode, "all") == 0 || strcmp(mode, "split") == 0)
		{
			t0 = now_ns();
			for (off = 0; off < (size_t) size;)
			{
				const char *ev = buf + off;
				size_t		len = scan_next_event(buf, (size_t) size, &off);

				/* and the row test the relay makes on each event today */
				sink += len + (memchr(ev, '\t', len) != NULL);
			}
			t_split += now_ns() - t0;
		}
		if (strcmp(mode, "all") == 0 || strcmp(mode, "jansson") == 0)
		{
			t0 = now_ns();
			for (size_t i = 0; i < nbc; i++)
			{
				Fields		f;

				sink += (uint64_t) read_jansson(bc[i], bclen[i], &f) + (uint64_t) f.xid[0];
			}
			t_json += now_ns() - t0;
		}
		if (strcmp(mode, "all") == 0 || strcmp(mode, "scan") == 0)
		{
			t0 = now_ns();
			for (size_t i = 0; i < nbc; i++)
			{
				Fields		f;

				sink += (uint64_t) read_scan(bc[i], bclen[i], &f) + (uint64_t) f.xid[0];
			}
			t_scan += now_ns() - t0;
		}
	}

	printf("%s: %zu events (%zu row changes, %zu begin/commit), %.1f MB; %s x %ld (sink %llu)\n",
		   argv[1], nev, nrows, nbc, size / 1048576.0, mode, repeat, (unsigned long long) sink % 10);
	if (t_split > 0)
		printf("  split at '\\n' + TAB test: %7.1f ns per event\n", t_split / repeat / nev);
	if (t_json > 0)
		printf("  begin/commit by jansson:  %7.1f ns per begin/commit, %6.1f ns per row change\n",
			   t_json / repeat / nbc, nrows ? t_json / repeat / nrows : 0);
	if (t_scan > 0)
		printf("  begin/commit by scan.c:   %7.1f ns per begin/commit, %6.1f ns per row change\n",
			   t_scan / repeat / nbc, nrows ? t_scan / repeat / nrows : 0);
	if (t_json > 0 && t_scan > 0)
		printf("  scan.c is %.1fx faster\n", t_json / t_scan);
	free(buf);
	free(bc);
	free(bclen);
	return 0;
}
