/* bootstrap.h: creates the first primary of a cluster: initdb with data
 * checksums, the settings replication needs, pg_hba for the cluster
 * networks, and the replication and rewind roles. */
#ifndef PGLEASE_BOOTSTRAP_H
#define PGLEASE_BOOTSTRAP_H

#include <libpq-fe.h>

#include "clock.h"
#include "macro.h"

/* The file bootstrap writes next to postgresql.conf and includes from it. */
#define BOOTSTRAP_CONF_FILE "pglease.conf"

struct bootstrap_options {
        const char *bindir;                  /* PostgreSQL programs, e.g. /usr/lib/postgresql/15/bin */
        const char *datadir;                 /* must be missing or empty */
        const char *superuser;               /* NULL: "postgres" */
        const char *superuser_password_file; /* handed to initdb --pwfile; NULL: no password */
        const char *auth_local;              /* "peer" (default) or "scram-sha-256" */
        const char *locale;                  /* NULL: "C.UTF-8" */

        const char *repl_user;               /* NULL: "replicator" */
        const char *rewind_user;             /* NULL: "pglease_rewind" */
        const char *const *networks;         /* CIDRs allowed to connect (NULL-terminated; may be NULL) */

        const char *listen_addresses;        /* NULL: "*" */
        int port;                            /* 0: 5432 */
        const char *socket_dir;              /* NULL: server default */
        int max_wal_senders;                 /* 0: 10 */
        int max_replication_slots;           /* 0: 10 */
        const char *max_slot_wal_keep_size;  /* NULL: "-1" (unlimited), else e.g. "10GB" */
        const char *wal_keep_size;           /* NULL: "0" (none), else e.g. "512MB" */

        usec_t timeout;                      /* for initdb; 0: 5 min */
        const struct clock_ops *clock;       /* NULL: clock_system */
};

/* Runs initdb (--data-checksums, --auth-host=scram-sha-256, --pwfile) and
 * writes pglease.conf (included from postgresql.conf) and pg_hba.conf.
 * Errors: -EINVAL on a bad option (user names are [a-z_][a-z0-9_]*,
 * networks are CIDRs), -EEXIST when datadir is not empty, -ETIMEDOUT or
 * -EPROTO from initdb with its last lines in *reterr_msg. */
int bootstrap_initdb(const struct bootstrap_options *o, char **reterr_msg);

/* Creates (or updates) the replication role (REPLICATION LOGIN) and the
 * least-privilege rewind role (LOGIN, EXECUTE on the four functions
 * pg_rewind needs, and pg_checkpoint to bring a promoted source's control
 * file up to date), on a superuser connection to the new primary. The
 * passwords are read from files and sent only as SCRAM verifiers computed
 * here with PQencryptPasswordConn(), so no plaintext reaches the server's
 * log. A NULL password file leaves that role's password unchanged. */
int bootstrap_create_roles(PGconn *c, const struct bootstrap_options *o,
                           const char *repl_password_file, const char *rewind_password_file,
                           char **reterr_msg);

/* The text of pglease.conf and pg_hba.conf for these options (pure; used by
 * bootstrap_initdb and the tests). -EINVAL on a bad option. */
int bootstrap_conf_text(const struct bootstrap_options *o, char **ret);
int bootstrap_hba_text(const struct bootstrap_options *o, char **ret);

/* 0 when bootstrap_initdb would accept the options, else -EINVAL: lets
 * init check them before it creates the Lease. */
int bootstrap_options_check(const struct bootstrap_options *o);

/* True for a role name bootstrap accepts: [a-z_][a-z0-9_]{0,62}. */
bool bootstrap_valid_role_name(const char *s);
/* True for an IPv4 or IPv6 CIDR ("10.0.0.0/8", "fd00::/64"). */
bool bootstrap_valid_cidr(const char *s);

#endif
