/*
 * http.h: a small HTTP server (libmicrohttpd, its own thread) for the relay's
 * metrics endpoint and cdc-index's search endpoint.
 *
 * The handler runs on the server's thread: whatever it reads must be safe to
 * read there (atomics, or data under the caller's own lock).
 */
#ifndef RELAY_HTTP_H
#define RELAY_HTTP_H

#include <stddef.h>

typedef struct HttpServer HttpServer;

/* What a handler answers: status, content type and a malloc'd body (freed by http.c). */
typedef struct HttpReply
{
	int			status;			/* 200, 404, ... */
	const char *content_type;	/* a string constant */
	char	   *body;			/* malloc'd, or NULL for an empty body */
	size_t		len;
} HttpReply;

/*
 * One GET request: path (without the query string) and a way to read query
 * parameters (http_query_arg).  Fill *reply.
 */
typedef void (*HttpHandler) (void *arg, const char *path, void *request, HttpReply *reply);

/*
 * Parse an address "HOST:PORT", ":PORT" or "PORT" (HOST a numeric IPv4 or
 * IPv6 address in brackets, or "localhost"; none: every interface).  0, or -1
 * with err filled.
 */
int			http_parse_addr(const char *addr, char *host, size_t hostlen, int *port,
							char *err, size_t errlen);

/*
 * Listen on addr and serve GET requests with handler on a thread of its own.
 * NULL with err filled (bad address, port in use).  Other methods get 405.
 */
HttpServer *http_start(const char *addr, HttpHandler handler, void *arg, char *err, size_t errlen);

/* The port actually listened on (useful with port 0). */
int			http_port(const HttpServer *s);

/* A query parameter of the request being handled, or NULL. */
const char *http_query_arg(void *request, const char *name);

/* Stop serving (waits for a request in progress) and free. NULL is fine. */
void		http_stop(HttpServer *s);

#endif
