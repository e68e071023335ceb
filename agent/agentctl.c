/* agentctl.c: the operator's command line: global options, the verb
 * dispatch, and what the verb groups share (configuration, the call to the
 * local agent, direct reads of the DCS and Postgres, exit codes). */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agentctl.h"
#include "control.h"
#include "dcs-kube.h"
#include "exit-codes.h"
#include "pgconn.h"
#include "pglease-build.h"
#include "util.h"

extern char **environ;

static inline void json_deletep(cJSON **j) {
        if (*j)
                cJSON_Delete(*j);
}

static void help(void) {
        printf("Usage: agentctl [OPTIONS] COMMAND [ARGS]\n"
               "\n"
               "The operator's command line of pglease.\n"
               "\n"
               "Commands:\n"
               "  cluster show [--watch S] [--dcs] [--probe|--no-probe]\n"
               "                                 the members, the lease, lag and warnings\n"
               "  cluster events [--limit N] [--node NAME]\n"
               "                                 the newest events of the metadata schema\n"
               "  cluster history                the promotions, one per timeline\n"
               "  node status                    this node in detail\n"
               "  node check [--role R] [--lag BYTES] [--timeline] [--agent]\n"
               "                                 a probe: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN\n"
               "  switchover [--to NAME] [--wait] hand the primary role over\n"
               "  demote [--wait]                hand over (a primary) or stop (a standby): pre-stop\n"
               "  pause | resume                 suspend or resume automatic failover\n"
               "\n"
               "Options:\n"
               "  -c, --config FILE  configuration file (default: $PGLEASE_CONFIG, else\n"
               "                     %s if it exists)\n"
               "      --socket PATH  the agent's control socket (default: control_socket,\n"
               "                     else <run_dir>/agent.sock)\n"
               "      --timeout S    time limit for talking to the agent, the API server and\n"
               "                     PostgreSQL (default 5 s)\n"
               "      --json         machine-readable output\n"
               "  -h, --help         show this help; COMMAND --help for a command's\n"
               "      --version      show the version\n"
               "\n"
               "Exit codes: 0 ok, 1 failed, 2 usage, 3 configuration, 4 unreachable,\n"
               "5 refused, 6 timeout, 7 not found; node check: 0/1/2/3. See agentctl(1).\n",
               PGLEASE_CONFIG_FILE);
}

int ctl_parse_common_only(struct ctl *c, int argc, char **argv, const char *command, const char *args,
                          const char *help) {
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                {}
        };
        int opt, r;

        optind = 0;
        while ((opt = getopt_long(argc, argv, "+c:h", options, NULL)) >= 0) {
                r = ctl_common_option(c, opt, optarg);
                if (r < 0)
                        return EXIT_USAGE;
                if (r > 0)
                        continue;
                if (opt == 'h') {
                        printf("Usage: agentctl %s%s%s\n\n%s\n", command, isempty(args) ? "" : " ", strempty(args), help);
                        return EXIT_OK;
                }
                return ctl_fail(EXIT_USAGE, "Try 'agentctl %s --help'.", command);
        }
        if (optind < argc)
                return ctl_fail(EXIT_USAGE, "%s: unexpected argument '%s'", command, argv[optind]);
        return -1;
}

int ctl_fail(int status, const char *fmt, ...) {
        va_list ap;

        fputs("agentctl: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        return status;
}

int ctl_status_for_errno(int r) {
        switch (-r) {
        case ETIMEDOUT:
                return EXIT_TIMEOUT;
        case ENOENT:
        case ECONNREFUSED:
        case ECONNRESET:
        case EPIPE:
        case EACCES:
        case EPERM:
        case EHOSTUNREACH:
        case EIO:
                return EXIT_UNREACHABLE;
        default:
                return EXIT_FAIL;
        }
}

int ctl_common_option(struct ctl *c, int opt, const char *arg) {
        usec_t t;

        switch (opt) {
        case CTL_ARG_JSON:
                c->json = true;
                return 1;
        case CTL_ARG_SOCKET:
                free(c->socket_override);
                c->socket_override = strdup(arg);
                return c->socket_override ? 1 : -ENOMEM;
        case CTL_ARG_TIMEOUT:
                if (parse_duration(arg, &t) < 0 || t == 0) {
                        ctl_fail(EXIT_USAGE, "--timeout %s: expected a duration such as 5, 500ms or 2min", arg);
                        return -EINVAL;
                }
                c->timeout = t;
                return 1;
        case CTL_ARG_CONFIG:
                free(c->config_path);
                c->config_path = strdup(arg);
                return c->config_path ? 1 : -ENOMEM;
        default:
                return 0;
        }
}

static int default_config_path(char **ret) {
        const char *env = getenv("PGLEASE_CONFIG");
        char *p;

        p = env ? strdup(env) : strdup(PGLEASE_CONFIG_FILE);
        if (!p)
                return -ENOMEM;
        if (!env && access(p, F_OK) < 0)
                p = mfree(p);
        *ret = p;
        return 0;
}

int ctl_load_config(struct ctl *c) {
        _cleanup_free_ char *err = NULL;
        int r;

        if (c->have_config)
                return 0;
        if (!c->config_path && default_config_path(&c->config_path) < 0)
                return ctl_fail(EXIT_FAIL, "out of memory");
        r = config_load(c->config_path, environ, NULL, &c->config, NULL, &err);
        if (r < 0)
                return ctl_fail(EXIT_CONFIG, "invalid configuration%s%s: %s", c->config_path ? " " : "",
                                strempty(c->config_path), err ? err : strerror(-r));
        c->have_config = true;
        if (c->socket_override)
                c->socket = strdup(c->socket_override);
        else if (control_socket_path(c->config.control_socket, c->config.run_dir, &c->socket) < 0)
                c->socket = NULL;
        if (!c->socket)
                return ctl_fail(EXIT_CONFIG, "no control socket: set control_socket or run_dir, or pass --socket");
        return 0;
}

bool ctl_config_readable(struct ctl *c) {
        if (c->have_config)
                return true;
        if (!c->config_path && default_config_path(&c->config_path) < 0)
                return false;
        return c->config_path && access(c->config_path, R_OK) >= 0;
}

cJSON *ctl_request(const char *command) {
        cJSON *o = cJSON_CreateObject();

        if (o && !cJSON_AddStringToObject(o, "command", command)) {
                cJSON_Delete(o);
                return NULL;
        }
        return o;
}

static int status_for_code(const char *code) {
        static const struct { const char *code; int status; } table[] = {
                { "usage", EXIT_USAGE }, { "refused", EXIT_REFUSED }, { "not_found", EXIT_NOT_FOUND },
                { "unreachable", EXIT_UNREACHABLE }, { "timeout", EXIT_TIMEOUT },
                /* At its client limit: it cannot serve us now, as if unreachable. */
                { "busy", EXIT_UNREACHABLE },
        };

        for (size_t i = 0; code && i < ELEMENTSOF(table); i++)
                if (streq(code, table[i].code))
                        return table[i].status;
        return EXIT_FAIL;
}

int ctl_call(struct ctl *c, cJSON *request_owned, usec_t timeout, bool quiet, cJSON **ret) {
        _cleanup_(json_deletep) cJSON *request = request_owned;
        _cleanup_free_ char *err = NULL;
        cJSON *resp = NULL;
        const cJSON *ok;
        int r;

        r = ctl_load_config(c);
        if (r != 0)
                return r;
        if (!request)
                return ctl_fail(EXIT_FAIL, "out of memory");
        r = control_call(c->socket, request, timeout, NULL, &resp, &err);
        if (r < 0)
                return quiet ? ctl_status_for_errno(r) : ctl_fail(ctl_status_for_errno(r), "%s", err ? err : strerror(-r));
        ok = cJSON_GetObjectItemCaseSensitive(resp, "ok");
        if (!cJSON_IsTrue(ok)) {
                int status = status_for_code(ctl_json_string(resp, "code"));

                c->agent_busy = streq(strempty(ctl_json_string(resp, "code")), "busy");

                if (!quiet)
                        ctl_fail(status, "%s", ctl_json_string(resp, "error") ?: "the agent refused the request");
                cJSON_Delete(resp);
                return status;
        }
        *ret = resp;
        return 0;
}

int ctl_open_dcs(struct ctl *c, struct dcs *ret, char **reterr_msg) {
        struct dcs_kube_options o = {
                .namespace = isempty(c->config.namespace_) ? NULL : c->config.namespace_,
                .cluster = c->config.cluster_name,
                /* Only read here: any name will do when node_name is unset. */
                .pod_name = isempty(c->config.node_name) ? "agentctl" : c->config.node_name,
                .kube = {
                        .kubeconfig = isempty(c->config.kube_config) ? NULL : c->config.kube_config,
                        .attempt_timeout = MIN(c->config.api_timeout, c->timeout),
                },
        };

        return dcs_kube_new(&o, &clock_system, ret, reterr_msg);
}

int ctl_read_dcs(struct ctl *c, struct dcs_leader **ret_lease, struct dcs_member_list **ret_members, char **reterr_msg) {
        _cleanup_(dcs_leader_freep) struct dcs_leader *lease = NULL;
        _cleanup_(dcs_member_list_freep) struct dcs_member_list *members = NULL;
        struct dcs dcs = {};
        usec_t deadline;
        int r;

        r = ctl_open_dcs(c, &dcs, reterr_msg);
        if (r < 0)
                return r;
        deadline = clock_now(&clock_system) + c->timeout;
        r = dcs.ops->leader_get(dcs.userdata, deadline, &lease, reterr_msg);
        if (r == -ENOENT) {
                /* No record is a fact ("nobody has led yet"), shown as such. */
                lease = calloc(1, sizeof *lease);
                r = lease && (lease->holder = strdup("")) ? 0 : -ENOMEM;
        }
        if (r >= 0)
                r = dcs.ops->member_list(dcs.userdata, deadline, &members, reterr_msg);
        if (dcs.ops->free)
                dcs.ops->free(dcs.userdata);
        if (r < 0)
                return r;
        *ret_lease = TAKE_PTR(lease);
        *ret_members = TAKE_PTR(members);
        return 0;
}

double ctl_json_number(const cJSON *o, const char *key, double fallback) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsNumber(j) ? j->valuedouble : fallback;
}

const char *ctl_json_string(const cJSON *o, const char *key) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsString(j) ? j->valuestring : NULL;
}

static int lease_from_status(const cJSON *l, struct dcs_leader *ret) {
        const cJSON *sync = cJSON_GetObjectItemCaseSensitive(l, "sync"), *s, *opt;
        const char *holder = ctl_json_string(l, "holder"), *sw = ctl_json_string(l, "switchover");

        ret->holder = strdup(strempty(holder));
        ret->switchover = sw ? strdup(sw) : NULL;
        if (!ret->holder || (sw && !ret->switchover))
                return -ENOMEM;
        ret->transitions = (int64_t) ctl_json_number(l, "transitions", 0);
        ret->paused = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(l, "paused"));
        cJSON_ArrayForEach(s, sync)
                if (cJSON_IsString(s) && strv_extend(&ret->sync, s->valuestring) < 0)
                        return -ENOMEM;
        opt = cJSON_GetObjectItemCaseSensitive(l, "optime");
        if (cJSON_IsObject(opt)) {
                ret->optime_timeline = (uint32_t) ctl_json_number(opt, "timeline", 0);
                if (ctl_json_string(opt, "lsn"))
                        (void) dcs_lsn_parse(ctl_json_string(opt, "lsn"), &ret->optime_lsn);
        }
        return 0;
}

int ctl_status_records(const cJSON *status, struct dcs_leader **ret_lease, struct dcs_member_list **ret_members) {
        _cleanup_(dcs_leader_freep) struct dcs_leader *lease = NULL;
        _cleanup_(dcs_member_list_freep) struct dcs_member_list *members = calloc(1, sizeof *members);
        const cJSON *l = cJSON_GetObjectItemCaseSensitive(status, "lease");
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(status, "members"), *m;

        if (!members || !(members->members = calloc(MAX(cJSON_GetArraySize(arr), 1), sizeof *members->members)))
                return -ENOMEM;
        if (cJSON_IsObject(l) && cJSON_IsString(cJSON_GetObjectItemCaseSensitive(l, "holder"))) {
                lease = calloc(1, sizeof *lease);
                if (!lease || lease_from_status(l, lease) < 0)
                        return -ENOMEM;
        }
        cJSON_ArrayForEach(m, arr) {
                _cleanup_free_ char *json = cJSON_PrintUnformatted(m);
                const char *name = ctl_json_string(m, "name");

                if (!json)
                        return -ENOMEM;
                if (name && dcs_member_from_json(name, json, &members->members[members->n]) >= 0)
                        members->n++;
        }
        *ret_lease = TAKE_PTR(lease);
        *ret_members = TAKE_PTR(members);
        return 0;
}

int ctl_connect(struct ctl *c, const char *host, int port, usec_t timeout, PGconn **ret, char **reterr_msg) {
        _cleanup_free_ char *passfile = strdup_printf("%s/pgpass", c->config.run_dir);
        _cleanup_free_ char *port_s = strdup_printf("%d", host ? port : (int) c->config.pg_port);
        _cleanup_free_ char *ci = NULL;

        if (!passfile || !port_s)
                return -ENOMEM;
        /* The passfile is the agent's; without access to it libpq falls
         * back to ~/.pgpass and PGPASSWORD as usual. */
        ci = pgconn_build_conninfo((const char *const[]) {
                "host", host ? host : c->config.socket_dir, "port", port_s, "user", c->config.superuser,
                "dbname", c->config.database, "passfile", access(passfile, R_OK) >= 0 ? passfile : NULL, NULL });
        if (!ci)
                return -ENOMEM;
        return pgconn_connect(ci, "agentctl", timeout, timeout, ret, reterr_msg);
}

void ctl_print_json(const cJSON *j) {
        _cleanup_free_ char *s = cJSON_Print(j);

        if (s)
                printf("%s\n", s);
}

static int dispatch(struct ctl *c, int argc, char **argv) {
        const char *verb = argv[0];

        if (streq(verb, "cluster"))
                return ctl_cluster_main(c, argc, argv);
        if (streq(verb, "node"))
                return ctl_node_main(c, argc, argv);
        if (streq(verb, "switchover"))
                return ctl_switchover_main(c, argc, argv);
        if (streq(verb, "demote"))
                return ctl_demote_main(c, argc, argv);
        if (streq(verb, "pause") || streq(verb, "resume"))
                return ctl_pause_main(c, argc, argv, streq(verb, "pause"));
        return ctl_fail(EXIT_USAGE, "unknown command '%s'. Try 'agentctl --help'.", verb);
}

int main(int argc, char **argv) {
        enum { ARG_VERSION = 0x2000 };
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        struct ctl c = { .timeout = CTL_DEFAULT_TIMEOUT };
        int opt, r, status;

        /* "+": stop at the command; what follows is the verb's. */
        while ((opt = getopt_long(argc, argv, "+c:h", options, NULL)) >= 0) {
                r = ctl_common_option(&c, opt, optarg);
                if (r < 0) {
                        status = EXIT_USAGE;
                        goto finish;
                }
                if (r > 0)
                        continue;
                if (opt == 'h') {
                        help();
                        status = EXIT_OK;
                } else if (opt == ARG_VERSION) {
                        printf("agentctl %s\n", PGLEASE_VERSION);
                        status = EXIT_OK;
                } else
                        status = ctl_fail(EXIT_USAGE, "Try 'agentctl --help'.");
                goto finish;
        }
        if (optind >= argc) {
                status = ctl_fail(EXIT_USAGE, "no command given. Try 'agentctl --help'.");
                goto finish;
        }
        status = dispatch(&c, argc - optind, argv + optind);
finish:
        if (c.have_config)
                config_done(&c.config);
        free(c.config_path);
        free(c.socket_override);
        free(c.socket);
        fflush(stdout);
        return status;
}
