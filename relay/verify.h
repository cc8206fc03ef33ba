/*
 * verify.h: `cdc-relay verify`: prove that the table topics equal the tables
 * at one exact point of the WAL (see verify.c for the method).
 */
#ifndef RELAY_VERIFY_H
#define RELAY_VERIFY_H

#include <signal.h>
#include <stdio.h>

/* Exit codes of `cdc-relay verify`. */
#define VERIFY_OK 0				/* every table equals its topic */
#define VERIFY_DIFFERENT 1		/* missing, extra or different keys found */
#define VERIFY_USAGE 2
#define VERIFY_CANNOT 3			/* could not verify (the reason is printed) */

/*
 * Run `cdc-relay verify` (argv[0] is "verify").  Takes run's connection,
 * slot, topic and Kafka options plus --json, --examples N and --timeout S.
 * Returns one of the VERIFY_* exit codes.
 */
/* stop, hup: the flags the process's signal handler sets (main.c). */
int			verify_main(int argc, char **argv, volatile sig_atomic_t *stop, volatile sig_atomic_t *hup);
void		verify_usage(FILE *out);

#endif
