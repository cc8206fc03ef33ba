/*
 * log.h: the relay's log lines on stderr.
 *
 * Every line: "2026-11-21 23:30:00.123 UTC LEVEL message".  The verbosity is a
 * plain int passed in, so there is no global logger state.
 */
#ifndef RELAY_LOG_H
#define RELAY_LOG_H

#include <stdarg.h>

enum log_level
{
	LOG_ERROR = 0,
	LOG_WARNING = 1,
	LOG_INFO = 2,
	LOG_DEBUG = 3
};

/* Log if level <= verbosity. */
void		rlog(int verbosity, enum log_level level, const char *fmt, ...)
			__attribute__((format(printf, 3, 4)));

/*
 * An allocation failed: log "out of memory" (whatever the verbosity) and exit
 * 1.  The one exit outside main(): nothing sensible can go on from there.
 */
void		relay_out_of_memory(void) __attribute__((noreturn));

/* strdup, or relay_out_of_memory(). */
char	   *relay_strdup(const char *s);

/*
 * Route SIGTERM, SIGINT and SIGHUP to handler (which only sets flags) and
 * ignore SIGPIPE: the signal set-up of every long-running command.
 */
void		relay_catch_signals(void (*handler) (int));

#endif
