/* exit-codes.h: the exit codes of pglease-agent and agentctl. They are part
 * of the interface (scripts and probes test them): never renumber. */
#ifndef PGLEASE_EXIT_CODES_H
#define PGLEASE_EXIT_CODES_H

enum {
        EXIT_OK = 0,           /* success */
        EXIT_FAIL = 1,         /* the operation failed; the message says why */
        EXIT_USAGE = 2,        /* bad command line */
        EXIT_CONFIG = 3,       /* the configuration is invalid or unreadable */
        EXIT_UNREACHABLE = 4,  /* the agent, PostgreSQL or the API server could not be reached */
        EXIT_REFUSED = 5,      /* refused: e.g. no standby fit for a switchover, not the leader */
        EXIT_TIMEOUT = 6,      /* the operation did not finish within --timeout */
        EXIT_NOT_FOUND = 7,    /* no such member / no such object */
};

/* agentctl node check uses the monitoring-plugin convention instead. */
enum {
        CHECK_OK = 0,
        CHECK_WARNING = 1,
        CHECK_CRITICAL = 2,
        CHECK_UNKNOWN = 3,
};

#endif
