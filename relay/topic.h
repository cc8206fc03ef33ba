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

/*
 * Kafka refuses to create a topic whose name equals an existing one's once
 * every '.' is read as '_' (they clash in its metric names): cdc.sales.order_items
 * and cdc.sales_order.items cannot both exist.  topic_for_table() keeps '_'
 * and the separators '.', so such pairs come from real table names.
 *
 * topic_names_collide: a and b differ, and are equal with '.' read as '_'.
 */
bool		topic_names_collide(const char *a, const char *b);

/*
 * The first colliding pair among topics[0..n-1]: the smallest j that
 * collides with an earlier topic, and the first such i < j.  Entries equal
 * to each other (the same topic twice) do not collide.  Returns true and sets
 * *i, *j when there is one; false when none (or out of memory: then *i and
 * *j are set to n, so a caller can tell).  O(n log n).  Callers pass every
 * topic the relay writes: the tables' topics, and the state and messages
 * topics too (a table "_"."state" would give cdc._.state, which clashes with
 * cdc.__state).
 */
bool		topic_find_collision(const char *const *topics, size_t n,
								 size_t *i, size_t *j);

/*
 * The relay's one-line error for a collision (no "ERROR" prefix: rlog adds
 * it), naming both tables (display names) and both topics, with the fix:
 *   tables A and B map to Kafka topics X and Y, which Kafka treats as
 *   colliding ('.' and '_' are the same in metric names); fix: exclude one
 *   with --exclude-tables or rename it
 * Written to buf (cut to buflen - 1 bytes); returns buf.
 */
const char *topic_collision_message(char *buf, size_t buflen,
									const char *table_a, const char *topic_a,
									const char *table_b, const char *topic_b);

#endif
