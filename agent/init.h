/* init.h: `pglease-agent init`, the init container: prepares the data
 * directory before Postgres starts (bootstrap, clone, or rejoin). */
#ifndef PGLEASE_AGENT_INIT_H
#define PGLEASE_AGENT_INIT_H

#include <stdbool.h>

#include "agent.h"

/* Runs init with the agent's loaded configuration and returns an exit code
 * of exit-codes.h: EXIT_OK, EXIT_CONFIG (this member cannot be prepared from
 * its configuration), EXIT_UNREACHABLE (the API server or the leader did not
 * answer before clone_timeout), EXIT_FAIL (logged with the reason). With
 * dry_run it prints the decision and the steps on stdout and changes
 * nothing (but the agent's own run directory and passfile). */
int agent_init_main(struct agent *a, bool dry_run);

#endif
