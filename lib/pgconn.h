/* pgconn.h: libpq helpers: connections that always carry connect_timeout,
 * application_name and statement_timeout, parameterised queries, LSNs, and
 * the status queries the agent observes a server with. */
#ifndef PGLEASE_PGCONN_H
#define PGLEASE_PGCONN_H

#include <libpq-fe.h>
#include <stdint.h>

#include "macro.h"

#define PG_LSN_INVALID ((uint64_t) 0)

/* Opens a connection. conninfo is a libpq keyword/value string or URI; this
 * adds connect_timeout (rounded up to whole seconds, at least 1),
 * application_name and options='-c statement_timeout=N'. Errors:
 * -ETIMEDOUT, -ECONNREFUSED, -EACCES (authentication), -EIO (anything
 * else); *reterr_msg gets one line, with any password redacted. */
int pgconn_connect(const char *conninfo, const char *application_name,
                   usec_t connect_timeout, usec_t statement_timeout,
                   PGconn **ret, char **reterr_msg);

/* Whether a new connection completes (startup and authentication) within
 * timeout, which may be below libpq's whole-second connect_timeout: 0, or
 * -ETIMEDOUT and the other errors of pgconn_connect(). The connection is
 * closed again. A frozen postmaster accepts the TCP connection but never
 * answers. */
int pgconn_probe(const char *conninfo, const char *application_name, usec_t timeout);

PGconn *pgconn_close(PGconn *c);
static inline void pgconn_closep(PGconn **c) {
        *c = pgconn_close(*c);
}

PGresult *pgresult_clear(PGresult *r);
static inline void pgresult_clearp(PGresult **r) {
        *r = pgresult_clear(*r);
}

/* Runs one parameterised statement (PQexecParams, text parameters, NULL for
 * SQL NULL). On PGRES_COMMAND_OK / PGRES_TUPLES_OK returns 0 and, when
 * ret is given, the result; otherwise a negative errno (-ETIMEDOUT for a
 * statement timeout, -EIO else) and the server's message. */
int pgconn_exec(PGconn *c, const char *sql, int n_params, const char *const *params,
                PGresult **ret, char **reterr_msg);

/* Runs a trusted multi-statement script (a migration file shipped with
 * the agent) through the simple protocol, PQexec(); never for anything
 * built from input. Errors as pgconn_exec(). */
int pgconn_exec_script(PGconn *c, const char *script, char **reterr_msg);

/* Builds a keyword/value conninfo string, quoting values as libpq wants.
 * keys_values is a NULL-terminated list of alternating keys and values;
 * pairs whose value is NULL or "" are left out. */
char *pgconn_build_conninfo(const char *const *keys_values);

/* Returns a copy of s with the value of every password=... replaced by ***,
 * for log lines and error messages. */
char *pgconn_redact(const char *s);

int pg_lsn_parse(const char *s, uint64_t *ret);
char *pg_lsn_format(uint64_t lsn);

/* What the agent observes of one server in a single round trip. */
struct pg_node_status {
        bool in_recovery;
        uint32_t timeline;               /* current timeline (primary: from pg_control_checkpoint or WAL; standby: replay timeline) */
        uint64_t system_identifier;
        uint64_t current_lsn;            /* primary: pg_current_wal_flush_lsn(); standby: 0 */
        uint64_t receive_lsn;            /* standby: pg_last_wal_receive_lsn() or 0 */
        uint64_t replay_lsn;             /* standby: pg_last_wal_replay_lsn() or 0 */
        bool wal_receiver_streaming;     /* standby: pg_stat_wal_receiver.status = 'streaming' */
        char *upstream_host;             /* standby: pg_stat_wal_receiver.sender_host, or NULL */
        int upstream_port;
        usec_t replay_lag;               /* standby: now() - pg_last_xact_replay_timestamp(), 0 if unknown */
};
void pg_node_status_done(struct pg_node_status *s);

int pgconn_query_status(PGconn *c, struct pg_node_status *ret, char **reterr_msg);

#endif
