/* agentctl.h: what the verb groups of agentctl share: the global options,
 * the configuration, the call to the local agent, the direct reads of the
 * DCS and Postgres, and the mapping of failures to exit codes. */
#ifndef PGLEASE_AGENTCTL_H
#define PGLEASE_AGENTCTL_H

#include <cjson/cJSON.h>
#include <getopt.h>
#include <libpq-fe.h>

#include "clusterview.h"
#include "config.h"
#include "dcs.h"
#include "macro.h"

#define CTL_DEFAULT_TIMEOUT (5 * USEC_PER_SEC)

struct ctl {
        char *config_path;           /* -c; NULL: $PGLEASE_CONFIG, else the default file if it exists */
        char *socket_override;       /* --socket */
        usec_t timeout;              /* --timeout */
        bool json;                   /* --json */

        struct config config;
        bool have_config;
        char *socket;                /* the resolved control socket path */
        bool agent_busy;             /* the last call was answered "busy" (alive, at its client limit) */
};

/* Options every verb takes after its name, so that "agentctl cluster show
 * --json" and "agentctl --json cluster show" both work. */
enum {
        CTL_ARG_JSON = 0x1000,
        CTL_ARG_SOCKET,
        CTL_ARG_TIMEOUT,
        CTL_ARG_CONFIG = 'c',
};
#define CTL_COMMON_OPTIONS                                              \
        { "json", no_argument, NULL, CTL_ARG_JSON },                    \
        { "socket", required_argument, NULL, CTL_ARG_SOCKET },          \
        { "timeout", required_argument, NULL, CTL_ARG_TIMEOUT },        \
        { "config", required_argument, NULL, CTL_ARG_CONFIG },          \
        { "help", no_argument, NULL, 'h' }

/* Handles one of the common options; returns 1 if it was one, 0 if not,
 * a negative errno (message printed) when its value is bad. */
int ctl_common_option(struct ctl *c, int opt, const char *arg);

/* Parses the arguments of a command that takes only the common options:
 * prints help (the usage line and text) for -h. Returns -1 to go on, else
 * the exit code the command returns at once. */
int ctl_parse_common_only(struct ctl *c, int argc, char **argv, const char *command, const char *args,
                          const char *help);

/* Prints "agentctl: <message>" on stderr; returns status. */
int ctl_fail(int status, const char *fmt, ...) _printf_(2, 3);
/* Exit status for a failed control_call() or direct read. */
int ctl_status_for_errno(int r);

/* The configuration (for run_dir, control_socket, the DCS, Postgres). */
int ctl_load_config(struct ctl *c);
/* Whether the configuration file (-c, else the default) can be read. */
bool ctl_config_readable(struct ctl *c);

/* One request to the local agent (the request is taken, NULL is "out of
 * memory"). On a transport failure prints the
 * one-line reason and returns its exit status; on an {"ok": false} answer
 * prints the agent's error and returns the status its "code" maps to. With
 * quiet, nothing is printed (the caller falls back to something else). */
int ctl_call(struct ctl *c, cJSON *request, usec_t timeout, bool quiet, cJSON **ret);
/* {"command": command}, or NULL. */
cJSON *ctl_request(const char *command);

/* The DCS from the configuration, read directly (no agent needed):
 * opened (free it with its ops->free), or the lease and the members. */
int ctl_open_dcs(struct ctl *c, struct dcs *ret, char **reterr_msg);
int ctl_read_dcs(struct ctl *c, struct dcs_leader **ret_lease, struct dcs_member_list **ret_members, char **reterr_msg);

/* The agent's status answer turned back into records. */
int ctl_status_records(const cJSON *status, struct dcs_leader **ret_lease, struct dcs_member_list **ret_members);

/* A superuser connection to host:port (NULL host: the local server over
 * its socket directory), with the passfile the agent writes. */
int ctl_connect(struct ctl *c, const char *host, int port, usec_t timeout, PGconn **ret, char **reterr_msg);

/* Prints a cJSON value, pretty, with a newline. */
void ctl_print_json(const cJSON *j);

double ctl_json_number(const cJSON *o, const char *key, double fallback);
const char *ctl_json_string(const cJSON *o, const char *key);

/* The verb groups. argv[0] is the verb group's name. */
int ctl_cluster_main(struct ctl *c, int argc, char **argv);
int ctl_node_main(struct ctl *c, int argc, char **argv);
int ctl_switchover_main(struct ctl *c, int argc, char **argv);
/* switchover --wait (agentctl-wait.c): until a member other than from
 * holds the lease and accepts writes, or the leader refuses, or the
 * deadline. Returns the exit status; on EXIT_OK the new primary's name
 * and what confirmed it ("postgresql" or "member_record"). */
int ctl_wait_new_primary(struct ctl *c, const char *from, const char *to, usec_t deadline, char **ret_new_primary,
                         const char **ret_how);
int ctl_demote_main(struct ctl *c, int argc, char **argv);
int ctl_pause_main(struct ctl *c, int argc, char **argv, bool pause);

#endif
