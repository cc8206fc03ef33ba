/*
 * redact.h: making libpq's error text safe and one line long before the
 * relay logs it.
 *
 * Three problems, three functions, and two wrappers that the log sites use:
 *
 *   - PQconninfoParse() echoes the offending part of a malformed connection
 *     string in double quotes (`invalid percent-encoded token: "sec%zzret"`,
 *     the whole URI for an unterminated IPv6 host), password included:
 *     redact_conninfo_error() replaces every double-quoted part by "...".
 *   - libpq's and the server's messages span lines ("ERROR:  x\nDETAIL:  y\n");
 *     the relay's log lines do not: pq_error_flatten() makes them one line.
 *   - the password of the connection string must appear nowhere:
 *     redact_secret() removes one given string from a text,
 *     redact_conninfo_secrets() every form of the conninfo's password.
 *
 * Every function returning char * returns malloc'd memory the caller frees,
 * or NULL when out of memory.  The *_line() wrappers write into a caller's
 * buffer instead and never fail (out of memory gives a fixed text that holds
 * nothing of the input), so a log site needs no clean-up:
 *
 *     char		buf[1024];
 *
 *     rlog(r->v, LOG_ERROR, "invalid connection string: %s",
 *          conninfo_error_line(err, r->cfg->conninfo, buf, sizeof(buf)));
 *     rlog(r->v, LOG_ERROR, "could not connect to the database: %s",
 *          pq_error_line(PQerrorMessage(conn), r->cfg->conninfo, buf, sizeof(buf)));
 *
 * Unit tested in test/unit/relay_units.c with libpq's own messages.
 */
#ifndef RELAY_REDACT_H
#define RELAY_REDACT_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The error text of PQconninfoParse() with every double-quoted part replaced
 * by "..." (the quotes stay).  libpq puts the user's text last, after ": ",
 * and that text may itself hold '"': a quoted part that follows ": " runs to
 * the last '"' of the message; any other runs to the next '"'; an unmatched
 * '"' hides everything after it.  So no character between libpq's quotes
 * survives, whatever the password holds.  Example:
 *   invalid percent-encoded token: "sec%zzret"   ->
 *   invalid percent-encoded token: "..."
 */
char	   *redact_conninfo_error(const char *libpq_message);

/*
 * libpq's (possibly multi-line) error text as one line: each line trimmed,
 * empty lines dropped, the lines joined with "; ".  A severity prefix of the
 * first line ("ERROR:  ", "FATAL:  ", ...) is dropped; the labels of the other
 * lines ("DETAIL:  ", "HINT:  ", "CONTEXT:  ", ...) keep one space:
 *   "ERROR:  x\nDETAIL:  y\nHINT:  z\n"  ->  "x; DETAIL: y; HINT: z"
 *   "connection to server ... failed: Connection refused\n\tIs the server
 *    running ...?\n"  ->  "connection ... failed: Connection refused; Is the
 *    server running ...?"
 * NULL gives "".
 */
char	   *pq_error_flatten(const char *libpq_message);

/*
 * text with every occurrence of secret replaced by "...".  A NULL or empty
 * secret changes nothing.  Short secrets are removed too (safety first, even
 * if that mangles the message).
 */
char	   *redact_secret(const char *text, const char *secret);

/*
 * text with every form of the password that conninfo holds replaced by
 * "...": the value libpq parses (PQconninfoParse), and the password as typed
 * (a URI's user:password@, percent-encoded or decoded; a password=... value
 * of a key=value string, as written and unquoted), so that the password is
 * found also in a connection string libpq refuses.  NULL conninfo: a copy.
 */
char	   *redact_conninfo_secrets(const char *text, const char *conninfo);

/*
 * True when conninfo holds a password (in any of the forms above; when in
 * doubt, true).  The config file uses it for its permission warning.
 */
bool		conninfo_has_password(const char *conninfo);

/*
 * For every PQerrorMessage() the relay logs: pq_error_flatten(), then
 * redact_conninfo_secrets(conninfo), written to buf (cut to buflen - 1
 * bytes; the secrets are removed before the cut, so no part of one remains).
 * Returns buf.
 */
const char *pq_error_line(const char *libpq_message, const char *conninfo,
						  char *buf, size_t buflen);

/*
 * For the error text of PQconninfoParse(conninfo, &err):
 * redact_conninfo_error(), then as pq_error_line().  Returns buf.
 */
const char *conninfo_error_line(const char *libpq_message, const char *conninfo,
								char *buf, size_t buflen);

#endif
