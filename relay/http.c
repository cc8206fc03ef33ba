/*
 * http.c: a small HTTP server on libmicrohttpd (see http.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "http.h"

struct HttpServer
{
	struct MHD_Daemon *d;
	HttpHandler handler;
	void	   *arg;
	int			port;
};

int
http_parse_addr(const char *addr, char *host, size_t hostlen, int *port, char *err, size_t errlen)
{
	const char *colon,
			   *p;
	char	   *end;
	long		v;

	host[0] = '\0';
	if (addr == NULL || addr[0] == '\0')
	{
		snprintf(err, errlen, "empty address (expected HOST:PORT, :PORT or PORT)");
		return -1;
	}
	if (addr[0] == '[')
	{
		const char *close = strchr(addr, ']');

		if (close == NULL || close[1] != ':')
		{
			snprintf(err, errlen, "bad address \"%s\" (expected [IPV6]:PORT)", addr);
			return -1;
		}
		if ((size_t) (close - addr - 1) >= hostlen)
		{
			snprintf(err, errlen, "address \"%s\" is too long", addr);
			return -1;
		}
		memcpy(host, addr + 1, close - addr - 1);
		host[close - addr - 1] = '\0';
		p = close + 2;
	}
	else if ((colon = strrchr(addr, ':')) != NULL)
	{
		if ((size_t) (colon - addr) >= hostlen)
		{
			snprintf(err, errlen, "address \"%s\" is too long", addr);
			return -1;
		}
		memcpy(host, addr, colon - addr);
		host[colon - addr] = '\0';
		p = colon + 1;
	}
	else
		p = addr;
	errno = 0;
	v = strtol(p, &end, 10);
	if (p[0] == '\0' || *end != '\0' || errno != 0 || v < 0 || v > 65535)
	{
		snprintf(err, errlen, "bad port in \"%s\" (expected 0-65535)", addr);
		return -1;
	}
	*port = (int) v;
	if (strcmp(host, "localhost") == 0)
		snprintf(host, hostlen, "127.0.0.1");
	return 0;
}

static enum MHD_Result
answer(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
	   const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
	HttpServer *s = cls;
	HttpReply	reply = {404, "text/plain; charset=utf-8", NULL, 0};
	struct MHD_Response *resp;
	enum MHD_Result ret;

	(void) version;
	(void) upload_data;
	(void) upload_data_size;
	(void) con_cls;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
	{
		static const char msg[] = "only GET is served\n";

		resp = MHD_create_response_from_buffer(sizeof(msg) - 1, (void *) msg, MHD_RESPMEM_PERSISTENT);
		if (resp == NULL)
			return MHD_NO;
		MHD_add_response_header(resp, "Allow", "GET, HEAD");
		ret = MHD_queue_response(conn, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
		MHD_destroy_response(resp);
		return ret;
	}
	s->handler(s->arg, url, conn, &reply);
	resp = MHD_create_response_from_buffer(reply.body ? reply.len : 0, reply.body ? reply.body : (void *) "",
										   reply.body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (resp == NULL)
	{
		free(reply.body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", reply.content_type);
	ret = MHD_queue_response(conn, (unsigned) reply.status, resp);
	MHD_destroy_response(resp);
	return ret;
}

const char *
http_query_arg(void *request, const char *name)
{
	return MHD_lookup_connection_value((struct MHD_Connection *) request, MHD_GET_ARGUMENT_KIND, name);
}

HttpServer *
http_start(const char *addr, HttpHandler handler, void *arg, char *err, size_t errlen)
{
	char		host[128];
	int			port;
	struct sockaddr_storage ss;
	socklen_t	sslen;
	unsigned	flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG;
	HttpServer *s;
	const union MHD_DaemonInfo *info;

	if (http_parse_addr(addr, host, sizeof(host), &port, err, errlen) != 0)
		return NULL;
	memset(&ss, 0, sizeof(ss));
	if (host[0] == '\0' || strchr(host, ':') == NULL)
	{
		struct sockaddr_in *sin = (struct sockaddr_in *) &ss;

		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t) port);
		if (host[0] == '\0')
			sin->sin_addr.s_addr = htonl(INADDR_ANY);
		else if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
		{
			snprintf(err, errlen, "bad address \"%s\" (a numeric IPv4 address, [IPv6], or localhost)", addr);
			return NULL;
		}
		sslen = sizeof(*sin);
	}
	else
	{
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *) &ss;

		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t) port);
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
		{
			snprintf(err, errlen, "bad address \"%s\" (a numeric IPv4 address, [IPv6], or localhost)", addr);
			return NULL;
		}
		sslen = sizeof(*sin6);
		flags |= MHD_USE_IPv6;
	}
	(void) sslen;
	s = calloc(1, sizeof(*s));
	if (s == NULL)
	{
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->handler = handler;
	s->arg = arg;
	errno = 0;
	s->d = MHD_start_daemon(flags, (uint16_t) port, NULL, NULL, answer, s,
							MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &ss,
							MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int) 10,
							MHD_OPTION_CONNECTION_LIMIT, (unsigned int) 64,
							MHD_OPTION_END);
	if (s->d == NULL)
	{
		snprintf(err, errlen, "cannot listen on %s: %s", addr,
				 errno ? strerror(errno) : "libmicrohttpd refused to start");
		free(s);
		return NULL;
	}
	info = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
	s->port = info ? (int) info->port : port;
	return s;
}

int
http_port(const HttpServer *s)
{
	return s->port;
}

void
http_stop(HttpServer *s)
{
	if (s == NULL)
		return;
	MHD_stop_daemon(s->d);
	free(s);
}
