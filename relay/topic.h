/*
 * topic.h: Kafka topic names for PostgreSQL tables.
 *
 * Kafka topic names are 1 to 249 characters of [a-zA-Z0-9._-]; PostgreSQL
 * names may hold any character but NUL.  The rule (documented in the README):
 *
 *   topic = <prefix> "." enc(schema) "." enc(table)
 *   enc(name): letters, digits and "_" are kept; every other byte (UTF-8
 *              bytes included) becomes "-" and two lower-case hex digits
 *              ("-" itself is "-2d", "." is "-2e", " " is "-20").
 *
 * enc is injective and its output never contains ".", so distinct tables give
 * distinct topics.  When the result would exceed 249 characters it is cut to
 * 215 characters and "--" plus 32 hex digits (a 128-bit hash of schema, NUL,
 * table) is appended; "--" never occurs in an encoded name otherwise, so these
 * cannot collide with normal names (only, astronomically unlikely, with each
 * other).  Pure functions: unit tested in test/unit/relay_units.c.
 */
#ifndef RELAY_TOPIC_H
#define RELAY_TOPIC_H

#include <stdbool.h>
#include <stddef.h>

#define TOPIC_MAX_LEN 249

/* A prefix is valid when it is 1..100 characters of [a-zA-Z0-9._-]. */
bool		topic_prefix_valid(const char *prefix);

/*
 * Write the topic for (schema, table) into out (size >= TOPIC_MAX_LEN + 1).
 * Names are byte strings of the given lengths.  Returns the topic's length.
 */
size_t		topic_for_table(const char *prefix,
							const char *schema, size_t schema_len,
							const char *table, size_t table_len,
							char *out);

/*
 * "schema.table" for humans and the Kafka "table" header: each part as is
 * when it is a plain lower-case name, else double-quoted as in SQL ("" for a
 * quote).  Returns malloc'd memory (NULL when out of memory).
 */
char	   *table_display_name(const char *schema, const char *table);

#endif
