/* run-postgres.h: the `pglease-agent run-postgres` mode, the supervisor that
 * runs as PID 1 of the postgres container (see lib/supervisor.h). */
#ifndef PGLEASE_RUN_POSTGRES_H
#define PGLEASE_RUN_POSTGRES_H

/* argv[0] is the mode's name ("run-postgres"); the options follow, then
 * "--" and the Postgres command. Returns the process exit status:
 * SUPERVISOR_EXIT_* (0 clean stop, 1 usage, 2 Postgres could not be
 * executed, 3 Postgres failed on stop, 128+N killed by signal N). */
int run_postgres_main(int argc, char **argv);

#endif
