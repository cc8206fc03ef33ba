/*
 * online_cmd.c: `cdc-relay snapshot TABLE [--where EXPR]`: request an online
 * snapshot from the running relay (online.c) by calling
 * cdc_relay.request_snapshot() with run's connection options; prints the
 * job id.  The relay acts on it when its stream reaches the request.
 *
 * Exit status: 0 requested, 2 bad usage, 3 could not request (connection,
 * or the server refused: no key, no privilege, a bad "where"; its message
 * says why).
 */
#include "relay.h"
#include "online.h"

#include <stdlib.h>
#include <string.h>

#define TRY_HELP "Try \"cdc-relay --help\" for more information.\n"

void
online_usage(FILE *out)
{
	fputs("  cdc-relay snapshot TABLE -d CONNINFO [--where EXPR]\n"
		  "      request an online snapshot of TABLE (rows matching EXPR, one boolean expression on\n"
		  "      its columns) from the running relay, with cdc_relay.request_snapshot(); prints the\n"
		  "      job id.  Also takes -c of run.  Exit 0 requested, 2 bad usage, 3 could not request\n", out);
}

int
online_snapshot_main(int argc, char **argv)
{
	RelayConfig cfg;
	Relay		r;
	char		err[1024];
	char	  **args = calloc((size_t) argc + 5, sizeof(char *));
	const char *table = NULL,
			   *where = NULL;
	int			n = 0,
				rc;
	volatile sig_atomic_t never = 0;
	PGconn	   *conn;
	PGresult   *res;
	const char *params[2];

	if (args == NULL)
		relay_out_of_memory();
	args[n++] = argv[0];
	for (int i = 1; i < argc; i++)
	{
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
		{
			printf("Usage:\n");
			online_usage(stdout);
			free(args);
			return 0;
		}
		if (strcmp(argv[i], "--where") == 0 && i + 1 < argc)
			where = argv[++i];
		else if (strncmp(argv[i], "--where=", 8) == 0)
			where = argv[i] + 8;
		else if (i == 1 && argv[i][0] != '-')
			table = argv[i];	/* the first argument */
		else
			args[n++] = argv[i];
	}
	if (table == NULL)
	{
		fprintf(stderr, "cdc-relay snapshot: no table given (the first argument)\n" TRY_HELP);
		free(args);
		return 2;
	}
	/* run's options; Kafka is not needed: placeholders nothing uses */
	args[n++] = "-b";
	args[n++] = "none";
	args[n++] = "--topic-prefix";
	args[n++] = "none";
	memset(&cfg, 0, sizeof(cfg));
	rc = config_parse_run(n, args, &cfg, err, sizeof(err));
	free(args);
	if (rc != 0)
	{
		if (rc == 2)
			fprintf(stderr, "cdc-relay snapshot: %s\n" TRY_HELP, err);
		config_free(&cfg);
		return rc == 1 ? 0 : 2;
	}
	memset(&r, 0, sizeof(r));
	r.cfg = &cfg;
	r.v = cfg.verbosity;
	r.stop = &never;
	r.hup = &never;
	rc = 3;
	conn = pg_connect(&r, false);
	if (conn != NULL)
	{
		params[0] = table;
		params[1] = where;
		/* TABLE is resolved as the user would in psql: with the role's own search_path */
		res = pg_exec(&r, conn, "RESET search_path", 0, NULL);
		PQclear(res);
		res = pg_exec(&r, conn, "SELECT cdc_relay.request_snapshot($1::pg_catalog.regclass, $2::pg_catalog.text)",
					  2, params);
		if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		{
			printf("%s\n", PQgetvalue(res, 0, 0));
			rlog(r.v, LOG_INFO, "online snapshot of %s%s%s requested: job %s", table, where ? " where " : "",
				 where ? where : "", PQgetvalue(res, 0, 0));
			rc = 0;
		}
		else
			rlog(r.v, LOG_ERROR, "could not request an online snapshot of %s: %s", table,
				 pg_res_error(&r, conn, res, err, sizeof(err)));
		PQclear(res);
		PQfinish(conn);
	}
	config_free(&cfg);
	return rc;
}
