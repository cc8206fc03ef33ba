/*
 * log.c: timestamped log lines on stderr, one write per line.
 */
#include "log.h"

#include <signal.h>
#include <stdlib.h>

#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *const level_names[] = {"ERROR", "WARNING", "INFO", "DEBUG"};

void
rlog(int verbosity, enum log_level level, const char *fmt, ...)
{
	char		line[4096];
	struct timeval tv;
	struct tm	tm;
	size_t		n;
	va_list		ap;

	if ((int) level > verbosity)
		return;
	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%d %H:%M:%S", &tm);
	n += (size_t) snprintf(line + n, sizeof(line) - n, ".%03d UTC %s ",
						   (int) (tv.tv_usec / 1000), level_names[level]);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	n = strlen(line);
	/* one line per message: trailing newlines of libpq errors are dropped */
	while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0)
	{
		/* nowhere left to report it */
	}
}

void
relay_out_of_memory(void)
{
	rlog(LOG_ERROR, LOG_ERROR, "out of memory");
	exit(1);
}

void
relay_catch_signals(void (*handler) (int))
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handler;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

char *
relay_strdup(const char *s)
{
	char	   *d = strdup(s);

	if (d == NULL)
		relay_out_of_memory();
	return d;
}
