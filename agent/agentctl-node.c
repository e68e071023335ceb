/* agentctl-node.c: this node: `node status` in detail from the local agent,
 * and `node check`, the probe with monitoring-plugin exit codes that
 * Kubernetes readiness and liveness probes run. */
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentctl.h"
#include "clusterview.h"
#include "exit-codes.h"
#include "lease-file.h"
#include "pgconn.h"
#include "util.h"

static inline void json_deletep(cJSON **j) {
        if (*j)
                cJSON_Delete(*j);
}

static const char *yes_no(const cJSON *o, const char *key) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsTrue(j) ? "yes" : cJSON_IsFalse(j) ? "no" : "-";
}

static const char *or_dash(const char *s) {
        return isempty(s) ? "-" : s;
}

static void print_status(const cJSON *st) {
        const cJSON *node = cJSON_GetObjectItemCaseSensitive(st, "node");
        const cJSON *pg = cJSON_GetObjectItemCaseSensitive(node, "postgres");
        const cJSON *lease = cJSON_GetObjectItemCaseSensitive(st, "lease"), *s;
        const cJSON *tl = cJSON_GetObjectItemCaseSensitive(pg, "timeline");
        double renew = ctl_json_number(lease, "renew_remaining_seconds", -1);
        bool first = true;

        printf("Node %s (cluster %s)\n", or_dash(ctl_json_string(node, "name")), or_dash(ctl_json_string(node, "cluster")));
        printf("  Agent state:      %s for %.0f s%s\n", or_dash(ctl_json_string(node, "state")), ctl_json_number(node, "state_seconds", 0),
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(node, "demote_requested")) ? " (demote requested)" : "");
        if (renew >= 0)
                printf("  Leader:           yes, must renew within %.1f s%s\n", renew,
                       cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(node, "lease_valid")) ? " (no lease it can prove: not routable)" : "");
        else
                printf("  Leader:           no\n");
        printf("  PostgreSQL:       running %s, accepting %s, in recovery %s, held %s\n", yes_no(pg, "running"), yes_no(pg, "accepting"),
               yes_no(pg, "in_recovery"), yes_no(pg, "held"));
        if (cJSON_IsBool(cJSON_GetObjectItemCaseSensitive(pg, "supervisor")))
                printf("  Supervisor:       %s\n", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(pg, "supervisor")) ? "running" :
                       "GONE (no lease-expiry watchdog: a primary is fenced)");
        if (cJSON_IsNumber(tl))
                printf("  Timeline:         %d\n", tl->valueint);
        printf("  LSN:              %s (replayed %s)\n", or_dash(ctl_json_string(pg, "lsn")), or_dash(ctl_json_string(pg, "replay_lsn")));
        printf("  Upstream:         %s\n", or_dash(ctl_json_string(pg, "upstream")));
        printf("  Priority:         %.0f%s\n", ctl_json_number(node, "priority", 0),
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(node, "nofailover")) ? " (nofailover)" : "");
        printf("  Lease holder:     %s", or_dash(ctl_json_string(lease, "holder")));
        if (cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(lease, "transitions")))
                printf(", %.0f transitions, record age %.1f s", ctl_json_number(lease, "transitions", 0), ctl_json_number(lease, "age_seconds", 0));
        printf("\n  Paused:           %s\n  Synchronous:      ", yes_no(lease, "paused"));
        cJSON_ArrayForEach(s, cJSON_GetObjectItemCaseSensitive(lease, "sync")) {
                printf("%s%s", first ? "" : ",", cJSON_IsString(s) ? s->valuestring : "?");
                first = false;
        }
        printf("%s", first ? "none" : "");
        if (ctl_json_string(lease, "sync_mode"))
                printf(" (leader's synchronous_mode: %s)", ctl_json_string(lease, "sync_mode"));
        printf("\n");
        if (ctl_json_string(lease, "switchover"))
                printf("  Switchover to:    %s\n", ctl_json_string(lease, "switchover"));
}

static int node_status(struct ctl *c, int argc, char **argv) {
        _cleanup_(json_deletep) cJSON *st = NULL;
        int r;

        r = ctl_parse_common_only(c, argc, argv, "node status", "[--json]", "This node as its agent sees it: agent state, leadership and renew deadline,\n"
                                  "PostgreSQL (running, accepting, recovery, timeline, LSNs, upstream), the lease.");
        if (r >= 0)
                return r;
        r = ctl_call(c, ctl_request("status"), c->timeout, false, &st);
        if (r != 0)
                return r;
        if (c->json) {
                cJSON_DeleteItemFromObjectCaseSensitive(st, "ok");
                cJSON_DeleteItemFromObjectCaseSensitive(st, "version");
                ctl_print_json(st);
        } else
                print_status(st);
        return EXIT_OK;
}

/* ---- node check ---- */

struct check {
        const char *role;            /* "primary", "replica", "any" */
        bool has_lag;
        uint64_t max_lag;
        bool timeline;
        bool agent;
};

/* What the check learned, for --json; role NULL: not reached. */
struct check_facts {
        const char *role;
        uint32_t timeline;
        bool has_lag;
        uint64_t lag;
};

static int check_result(const struct ctl *c, const struct check_facts *f, int status, const char *fmt, ...) _printf_(4, 5);
static int check_result(const struct ctl *c, const struct check_facts *f, int status, const char *fmt, ...) {
        static const char *const names[] = { "OK", "WARNING", "CRITICAL", "UNKNOWN" };
        _cleanup_free_ char *msg = NULL;
        va_list ap;
        int k;

        va_start(ap, fmt);
        k = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (k < 0)
                msg = NULL;
        if (c->json) {
                /* One object, the same exit code (issue 19, 4c). */
                _cleanup_(json_deletep) cJSON *o = cJSON_CreateObject();

                if (o && cJSON_AddStringToObject(o, "status", names[status]) && cJSON_AddNumberToObject(o, "exit_code", status) &&
                    cJSON_AddStringToObject(o, "message", msg ? msg : "out of memory") &&
                    (f && f->role ? cJSON_AddStringToObject(o, "role", f->role) : cJSON_AddNullToObject(o, "role")) &&
                    (f && f->role ? cJSON_AddNumberToObject(o, "timeline", f->timeline) : cJSON_AddNullToObject(o, "timeline")) &&
                    (f && f->has_lag ? cJSON_AddNumberToObject(o, "lag_bytes", (double) f->lag) : cJSON_AddNullToObject(o, "lag_bytes")))
                        ctl_print_json(o);
                return status;
        }
        printf("%s: %s\n", names[status], msg ? msg : "out of memory");
        return status;
}

/* The leader's published optime, when the agent answers: the reference
 * for lag and timeline. */
static bool agent_optime(const cJSON *st, uint32_t *ret_tl, uint64_t *ret_lsn) {
        const cJSON *opt = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(st, "lease"), "optime");
        const char *lsn = ctl_json_string(opt, "lsn");

        if (!cJSON_IsObject(opt) || !lsn || dcs_lsn_parse(lsn, ret_lsn) < 0)
                return false;
        *ret_tl = (uint32_t) ctl_json_number(opt, "timeline", 0);
        return true;
}

/* Issue 17, item 3: a primary is routable only while its agent holds a
 * lease it can prove. The agent's promise to the supervisor, the
 * lease-expiry file (lease-file.h: its last successful renewal +
 * renew_deadline, removed when it fences or hands over), is read first: it
 * needs no answer from an agent that may be blocked on the very API server
 * it lost. NULL while the lease holds, else why not. */
static const char *primary_lease_file_problem(const struct ctl *c) {
        usec_t expiry, now;
        int r;

        /* Without the run directory or the right to read it (a monitoring
         * user), the agent's own word below is all there is. */
        if (!c->config.run_dir)
                return NULL;
        r = lease_file_read(c->config.run_dir, &expiry);
        if (r == -ENOENT)
                return "its agent does not hold the lease (no lease-expiry file)";
        if (r == -EBADMSG)
                return "its agent's lease-expiry file is garbled";
        if (r < 0)
                return NULL;
        now = clock_now(&clock_system);
        if (now >= expiry)
                return "its agent's renew deadline has passed";
        /* A time further ahead than a lease lasts is not this boot's. */
        if (expiry - now > c->config.lease_duration)
                return "its agent's lease-expiry file is from another boot";
        return NULL;
}

/* The agent's own word when it answers (status: node.lease_valid). */
static const char *primary_status_problem(const cJSON *st) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(st, "node"), "lease_valid");

        if (cJSON_IsBool(v) && !cJSON_IsTrue(v))
                return "its agent holds no lease it can prove (renew deadline passed, fenced, or not the leader)";
        return NULL;
}

/* The agent's status says its run-postgres supervisor is gone. */
static bool supervisor_gone(const cJSON *st) {
        return cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(
                cJSON_GetObjectItemCaseSensitive(st, "node"), "postgres"), "supervisor"));
}

static int run_check(struct ctl *c, const struct check *k) {
        _cleanup_(json_deletep) cJSON *st = NULL;
        _cleanup_(pgconn_closep) PGconn *conn = NULL;
        _cleanup_free_ char *err = NULL, *lag_s = NULL;
        struct pg_node_status ps = {};
        const char *role, *why;
        uint64_t ref_lsn = 0, lag = 0;
        uint32_t ref_tl = 0;
        struct check_facts facts = {};
        bool have_ref, agent_ok;
        int r, status = CHECK_OK;

        if (ctl_load_config(c) != 0)
                return check_result(c, NULL, CHECK_UNKNOWN, "invalid configuration");
        r = ctl_connect(c, NULL, 0, c->timeout, &conn, &err);
        if (r < 0 || pgconn_query_status(conn, &ps, err ? NULL : &err) < 0) {
                /* The cause first where the agent knows it: PostgreSQL
                 * dies with its supervisor. */
                if (k->agent && ctl_call(c, ctl_request("status"), c->timeout, true, &st) == 0 && supervisor_gone(st))
                        return check_result(c, NULL, CHECK_CRITICAL, "the agent reports its run-postgres supervisor gone (no lease-expiry watchdog); PostgreSQL is not accepting connections: %s",
                                            err ? err : "status query failed");
                return check_result(c, NULL, CHECK_CRITICAL, "PostgreSQL is not accepting connections: %s", err ? err : "status query failed");
        }
        role = ps.in_recovery ? "replica" : "primary";
        if (!ps.in_recovery && (why = primary_lease_file_problem(c))) {
                pg_node_status_done(&ps);
                return check_result(c, &(struct check_facts) { .role = "primary", .timeline = ps.timeline }, CHECK_CRITICAL,
                                    "primary, timeline %" PRIu32 ", but %s: not routable", ps.timeline, why);
        }
        r = ctl_call(c, ctl_request("status"), c->timeout, true, &st);
        agent_ok = r == 0;
        /* A busy agent is alive: a liveness probe must not restart it. */
        if (k->agent && !agent_ok && (c->agent_busy || r == EXIT_TIMEOUT))
                status = CHECK_WARNING;
        else if (k->agent && !agent_ok) {
                pg_node_status_done(&ps);
                return check_result(c, NULL, CHECK_CRITICAL, "the agent does not answer at %s", c->socket);
        }
        if (k->agent && agent_ok && supervisor_gone(st)) {
                pg_node_status_done(&ps);
                return check_result(c, NULL, CHECK_CRITICAL, "the agent reports its run-postgres supervisor gone (no lease-expiry watchdog)");
        }
        /* The answer is given now, not when the check began: waiting for
         * the agent may have taken us past the renew deadline. */
        if (!ps.in_recovery && ((agent_ok && (why = primary_status_problem(st))) || (why = primary_lease_file_problem(c)))) {
                pg_node_status_done(&ps);
                return check_result(c, &(struct check_facts) { .role = "primary", .timeline = ps.timeline }, CHECK_CRITICAL,
                                    "primary, timeline %" PRIu32 ", but %s: not routable", ps.timeline, why);
        }
        have_ref = agent_ok && agent_optime(st, &ref_tl, &ref_lsn);
        if (ps.in_recovery && have_ref)
                lag = ref_lsn > ps.replay_lsn ? ref_lsn - ps.replay_lsn : 0;
        lag_s = have_ref || !ps.in_recovery ? clusterview_format_bytes(lag) : strdup("unknown");
        facts = (struct check_facts) { .role = role, .timeline = ps.timeline, .has_lag = have_ref || !ps.in_recovery, .lag = lag };
        pg_node_status_done(&ps);

        if (!streq(k->role, "any") && !streq(k->role, role)) {
                status = CHECK_CRITICAL;
                return check_result(c, &facts, status, "%s, expected %s, timeline %" PRIu32 ", lag %s", role, k->role, ps.timeline, strempty(lag_s));
        }
        if (k->timeline) {
                if (!have_ref)
                        return check_result(c, &facts, CHECK_UNKNOWN, "%s, timeline %" PRIu32 ": the leader's timeline is unknown (no agent or no optime)",
                                            role, ps.timeline);
                if (ref_tl != ps.timeline)
                        return check_result(c, &facts, CHECK_CRITICAL, "%s, timeline %" PRIu32 " but the leader is on timeline %" PRIu32, role,
                                            ps.timeline, ref_tl);
        }
        if (k->has_lag && ps.in_recovery) {
                if (!have_ref)
                        return check_result(c, &facts, CHECK_UNKNOWN, "%s, timeline %" PRIu32 ": lag unknown (no agent or no optime)", role, ps.timeline);
                if (lag > k->max_lag)
                        status = CHECK_WARNING;
        }
        return check_result(c, &facts, status, "%s, timeline %" PRIu32 ", lag %s%s", role, ps.timeline, strempty(lag_s),
                            k->agent && !agent_ok ? "; the agent is alive but busy (it answered \"busy\" or not within --timeout)" : "");
}

static void check_help(void) {
        printf("Usage: agentctl node check [--role primary|replica|any] [--lag BYTES] [--timeline] [--agent]\n"
               "\n"
               "A probe of the local PostgreSQL with monitoring-plugin exit codes and one line\n"
               "of output, e.g. \"OK: primary, timeline 3, lag 0 B\" (with --json one object:\n"
               "status, exit_code, message, role, timeline, lag_bytes):\n"
               "  0 OK, 1 WARNING (lag over --lag), 2 CRITICAL (not accepting connections,\n"
               "  wrong role or timeline, agent down or its supervisor gone with --agent, a\n"
               "  primary whose agent holds no lease it can prove), 3 UNKNOWN (cannot tell).\n"
               "\n"
               "  --role R      the role this node must have (default any)\n"
               "  --lag BYTES   a replica further behind the leader's published LSN warns\n"
               "                (\"16MB\", \"1024\")\n"
               "  --timeline    the timeline must be the leader's\n"
               "  --agent       the local agent must answer on its control socket, and its\n"
               "                run-postgres supervisor must be alive\n"
               "  --timeout T   how long to wait for PostgreSQL and for the agent (default 5s)\n");
}

static int node_check(struct ctl *c, int argc, char **argv) {
        enum { ARG_ROLE = 0x100, ARG_LAG, ARG_TIMELINE, ARG_AGENT };
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { "role", required_argument, NULL, ARG_ROLE },
                { "lag", required_argument, NULL, ARG_LAG },
                { "timeline", no_argument, NULL, ARG_TIMELINE },
                { "agent", no_argument, NULL, ARG_AGENT },
                {}
        };
        struct check k = { .role = "any" };
        int opt, r;

        optind = 0;
        while ((opt = getopt_long(argc, argv, "+c:h", options, NULL)) >= 0) {
                r = ctl_common_option(c, opt, optarg);
                if (r < 0)
                        return CHECK_UNKNOWN;
                if (r > 0)
                        continue;
                switch (opt) {
                case ARG_ROLE:
                        if (!streq(optarg, "primary") && !streq(optarg, "replica") && !streq(optarg, "any"))
                                return check_result(c, NULL, CHECK_UNKNOWN, "--role %s: expected primary, replica or any", optarg);
                        k.role = optarg;
                        break;
                case ARG_LAG:
                        if (parse_size(optarg, &k.max_lag) < 0)
                                return check_result(c, NULL, CHECK_UNKNOWN, "--lag %s: expected a size such as 16MB", optarg);
                        k.has_lag = true;
                        break;
                case ARG_TIMELINE:
                        k.timeline = true;
                        break;
                case ARG_AGENT:
                        k.agent = true;
                        break;
                case 'h':
                        check_help();
                        return CHECK_OK;
                default:
                        return check_result(c, NULL, CHECK_UNKNOWN, "bad option. Try 'agentctl node check --help'.");
                }
        }
        if (optind < argc)
                return check_result(c, NULL, CHECK_UNKNOWN, "unexpected argument '%s'", argv[optind]);
        return run_check(c, &k);
}

int ctl_node_main(struct ctl *c, int argc, char **argv) {
        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
                printf("Usage: agentctl node status|check [OPTIONS]\n"
                       "Run 'agentctl node COMMAND --help' for a command's options.\n");
                return argc < 2 ? EXIT_USAGE : EXIT_OK;
        }
        if (streq(argv[1], "status"))
                return node_status(c, argc - 1, argv + 1);
        if (streq(argv[1], "check"))
                return node_check(c, argc - 1, argv + 1);
        return ctl_fail(EXIT_USAGE, "unknown command 'node %s'. Try 'agentctl node --help'.", argv[1]);
}
