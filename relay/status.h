/*
 * status.h: `cdc-relay status` (status.c): the health of the relay's slot,
 * whether a relay holds it, and its record in the state topic.
 */
#ifndef RELAY_STATUS_H
#define RELAY_STATUS_H

#include <stdio.h>

/* argv[0] is "status"; returns the exit status (0, 1, 2 or 3, see status.c). */
int			status_main(int argc, char **argv);

/* The usage lines of `status`, for cdc-relay --help. */
void		status_usage_line(FILE *out);

#endif
