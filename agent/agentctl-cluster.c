/* agentctl-cluster.c: the cluster verbs: show (from the local agent, else
 * the DCS directly, with optional probes of every member's Postgres),
 * events and history (from the metadata schema on the primary). */
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agentctl.h"
#include "exit-codes.h"
#include "metadata.h"
#include "pgconn.h"
#include "util.h"

/* A probe never takes longer than this, whatever --timeout says: a member
 * that does not answer quickly is shown as unreachable. */
#define PROBE_TIMEOUT (2 * USEC_PER_SEC)

static inline void json_deletep(cJSON **j) {
        if (*j)
                cJSON_Delete(*j);
}

struct gathered {
        struct dcs_leader *lease;
        struct dcs_member_list *members;
        struct clusterview_probe *probes;
        char *cluster;
        const char *source;
        double lease_age;
        usec_t status_interval;
        uint64_t maximum_lag;
};

static void gathered_done(struct gathered *g) {
        dcs_leader_free(g->lease);
        dcs_member_list_free(g->members);
        free(g->probes);
        free(g->cluster);
}

static int gather_from_agent(struct ctl *c, struct gathered *g) {
        _cleanup_(json_deletep) cJSON *st = NULL;
        const cJSON *lease;
        int r;

        r = ctl_call(c, ctl_request("status"), c->timeout, true, &st);
        if (r != 0)
                return r;
        if (ctl_status_records(st, &g->lease, &g->members) < 0)
                return ctl_fail(EXIT_FAIL, "out of memory");
        lease = cJSON_GetObjectItemCaseSensitive(st, "lease");
        g->lease_age = ctl_json_number(lease, "age_seconds", -1);
        g->status_interval = (usec_t) (ctl_json_number(st, "status_interval_seconds", 10) * USEC_PER_SEC);
        g->maximum_lag = (uint64_t) ctl_json_number(st, "maximum_lag_on_failover", 0);
        g->cluster = strdup(strempty(ctl_json_string(cJSON_GetObjectItemCaseSensitive(st, "node"), "cluster")));
        g->source = "agent";
        return g->cluster ? 0 : ctl_fail(EXIT_FAIL, "out of memory");
}

static int gather_from_dcs(struct ctl *c, struct gathered *g, char **reterr_msg) {
        int r;

        r = ctl_read_dcs(c, &g->lease, &g->members, reterr_msg);
        if (r < 0)
                return r;
        /* Without an agent's memory of when the record last changed, its
         * renewTime against our wall clock is the best estimate. */
        g->lease_age = g->lease->renew_time > 0 && clock_realtime(&clock_system) > g->lease->renew_time
                               ? (double) (clock_realtime(&clock_system) - g->lease->renew_time) / USEC_PER_SEC
                               : -1;
        g->status_interval = c->config.status_interval;
        g->maximum_lag = c->config.maximum_lag_on_failover;
        g->cluster = strdup(c->config.cluster_name);
        g->source = "dcs";
        return g->cluster ? 0 : -ENOMEM;
}

struct probe_job {
        struct ctl *ctl;
        const struct dcs_member *member;
        struct clusterview_probe *result;
        pthread_t thread;
        bool started;
};

static void *probe_one(void *userdata) {
        struct probe_job *j = userdata;
        _cleanup_(pgconn_closep) PGconn *conn = NULL;
        struct pg_node_status st = {};

        j->result->probed = true;
        j->result->lag_seconds = -1;
        if (isempty(j->member->host) ||
            ctl_connect(j->ctl, j->member->host, j->member->port ? j->member->port : 5432,
                        MIN(j->ctl->timeout, PROBE_TIMEOUT), &conn, NULL) < 0 ||
            pgconn_query_status(conn, &st, NULL) < 0)
                return NULL;
        j->result->reachable = true;
        j->result->in_recovery = st.in_recovery;
        j->result->timeline = st.timeline;
        j->result->lsn = st.in_recovery ? MAX(st.receive_lsn, st.replay_lsn) : st.current_lsn;
        j->result->replay_lsn = st.in_recovery ? st.replay_lsn : st.current_lsn;
        j->result->lag_seconds = st.in_recovery ? (double) st.replay_lag / USEC_PER_SEC : 0;
        pg_node_status_done(&st);
        return NULL;
}

/* Every member at once, each within PROBE_TIMEOUT: one dead host costs
 * the whole command two seconds, not two seconds per member. */
static int probe_members(struct ctl *c, struct gathered *g) {
        size_t n = g->members->n;
        struct probe_job *jobs;

        g->probes = calloc(n ? n : 1, sizeof *g->probes);
        jobs = calloc(n ? n : 1, sizeof *jobs);
        if (!g->probes || !jobs) {
                free(jobs);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                jobs[i] = (struct probe_job) { .ctl = c, .member = &g->members->members[i], .result = &g->probes[i] };
                jobs[i].started = pthread_create(&jobs[i].thread, NULL, probe_one, &jobs[i]) == 0;
                if (!jobs[i].started)
                        probe_one(&jobs[i]);
        }
        for (size_t i = 0; i < n; i++)
                if (jobs[i].started)
                        (void) pthread_join(jobs[i].thread, NULL);
        free(jobs);
        return 0;
}

enum probe_mode { PROBE_AUTO, PROBE_YES, PROBE_NO };

static int gather(struct ctl *c, bool dcs_only, enum probe_mode probe, struct gathered *g) {
        _cleanup_free_ char *err = NULL;
        int r = EXIT_UNREACHABLE;

        if (!dcs_only) {
                r = gather_from_agent(c, g);
                if (r != 0 && r != EXIT_UNREACHABLE && r != EXIT_TIMEOUT)
                        return r;
        }
        if (r != 0) {
                int k = ctl_load_config(c);

                if (k != 0)
                        return k;
                k = gather_from_dcs(c, g, &err);
                if (k < 0)
                        return ctl_fail(ctl_status_for_errno(k), "%s%s%scannot read the DCS: %s",
                                        dcs_only ? "" : "cannot reach the agent at ", dcs_only ? "" : c->socket, dcs_only ? "" : "; ",
                                        err ? err : strerror(-k));
        }
        if (probe == PROBE_YES || (probe == PROBE_AUTO && streq(g->source, "dcs"))) {
                if (ctl_load_config(c) != 0)
                        return EXIT_CONFIG;
                if (probe_members(c, g) < 0)
                        return ctl_fail(EXIT_FAIL, "out of memory");
        }
        return 0;
}

static int show_once(struct ctl *c, bool dcs_only, enum probe_mode probe) {
        _cleanup_(clusterview_freep) struct clusterview *v = NULL;
        struct gathered g = { .lease_age = -1 };
        struct clusterview_source src;
        int r;

        r = gather(c, dcs_only, probe, &g);
        if (r != 0) {
                gathered_done(&g);
                return r;
        }
        src = (struct clusterview_source) {
                .cluster = g.cluster, .source = g.source, .lease = g.lease, .lease_age = g.lease_age, .members = g.members,
                .probes = g.probes, .now_realtime = clock_realtime(&clock_system), .status_interval = g.status_interval,
                .maximum_lag = g.maximum_lag,
        };
        r = clusterview_build(&src, &v);
        gathered_done(&g);
        if (r < 0)
                return ctl_fail(EXIT_FAIL, "out of memory");
        if (c->json) {
                _cleanup_(json_deletep) cJSON *j = NULL;

                if (clusterview_to_json(v, &j) < 0)
                        return ctl_fail(EXIT_FAIL, "out of memory");
                ctl_print_json(j);
        } else {
                _cleanup_free_ char *t = NULL;

                if (clusterview_format_table(v, &t) < 0)
                        return ctl_fail(EXIT_FAIL, "out of memory");
                fputs(t, stdout);
        }
        fflush(stdout);
        return EXIT_OK;
}

static void show_help(void) {
        printf("Usage: agentctl cluster show [--json] [--watch S] [--dcs] [--probe|--no-probe]\n"
               "\n"
               "The lease (leader, record age, transitions, synchronous set, paused) and one\n"
               "row per member: Name, Role, Status, Timeline, LSN, Lag (bytes, and seconds\n"
               "when probed), Priority, Tags, Host; warnings below the table. Data comes\n"
               "from the local agent; when no agent answers, from the DCS directly with the\n"
               "configuration file.\n"
               "\n"
               "  --json       the JSON of docs/agentctl-cluster-show.schema.json\n"
               "  --watch S    print again every S seconds until interrupted\n"
               "  --dcs        read the DCS directly even when an agent runs\n"
               "  --probe      connect to every member's PostgreSQL (in parallel, 2 s at most);\n"
               "               the default when reading the DCS directly\n"
               "  --no-probe   never connect to the members\n");
}

static int cluster_show(struct ctl *c, int argc, char **argv) {
        enum { ARG_WATCH = 0x100, ARG_DCS, ARG_PROBE, ARG_NO_PROBE };
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { "watch", required_argument, NULL, ARG_WATCH },
                { "dcs", no_argument, NULL, ARG_DCS },
                { "probe", no_argument, NULL, ARG_PROBE },
                { "no-probe", no_argument, NULL, ARG_NO_PROBE },
                {}
        };
        enum probe_mode probe = PROBE_AUTO;
        bool dcs_only = false;
        usec_t watch = 0;
        int opt, r;

        optind = 0;
        while ((opt = getopt_long(argc, argv, "+c:h", options, NULL)) >= 0) {
                r = ctl_common_option(c, opt, optarg);
                if (r < 0)
                        return EXIT_USAGE;
                if (r > 0)
                        continue;
                switch (opt) {
                case ARG_WATCH:
                        if (parse_duration(optarg, &watch) < 0 || watch < 100 * USEC_PER_MSEC)
                                return ctl_fail(EXIT_USAGE, "--watch %s: expected an interval of at least 100ms", optarg);
                        break;
                case ARG_DCS:
                        dcs_only = true;
                        break;
                case ARG_PROBE:
                        probe = PROBE_YES;
                        break;
                case ARG_NO_PROBE:
                        probe = PROBE_NO;
                        break;
                case 'h':
                        show_help();
                        return EXIT_OK;
                default:
                        return ctl_fail(EXIT_USAGE, "Try 'agentctl cluster show --help'.");
                }
        }
        if (optind < argc)
                return ctl_fail(EXIT_USAGE, "cluster show: unexpected argument '%s'", argv[optind]);
        if (watch == 0)
                return show_once(c, dcs_only, probe);
        for (;;) {
                if (isatty(STDOUT_FILENO) && !c->json)
                        fputs("\033[H\033[2J", stdout);
                (void) show_once(c, dcs_only, probe);
                (void) poll(NULL, 0, (int) (watch / USEC_PER_MSEC));
        }
}

/* ---- events and history: the metadata schema on the primary ---- */

/* The leader's host:port from the member records (the agent's or the
 * DCS's), then a connection to it. */
static int connect_primary(struct ctl *c, PGconn **ret) {
        struct gathered g = { .lease_age = -1 };
        _cleanup_free_ char *err = NULL;
        const struct dcs_member *leader = NULL;
        int r;

        r = gather(c, false, PROBE_NO, &g);
        if (r != 0)
                return r;
        for (size_t i = 0; g.members && i < g.members->n; i++) {
                const struct dcs_member *m = &g.members->members[i];

                if (g.lease && !isempty(g.lease->holder) && streq(m->name, g.lease->holder))
                        leader = m;
                else if (!leader && m->role == MEMBER_ROLE_PRIMARY)
                        leader = m;
        }
        if (!leader || isempty(leader->host)) {
                gathered_done(&g);
                return ctl_fail(EXIT_UNREACHABLE, "no primary found in the member records");
        }
        if (ctl_load_config(c) != 0) {
                gathered_done(&g);
                return EXIT_CONFIG;
        }
        r = ctl_connect(c, leader->host, leader->port ? leader->port : 5432, c->timeout, ret, &err);
        if (r < 0)
                r = ctl_fail(ctl_status_for_errno(r), "cannot connect to the primary %s at %s:%d: %s", leader->name, leader->host,
                             leader->port ? leader->port : 5432, err ? err : strerror(-r));
        gathered_done(&g);
        return r < 0 ? EXIT_FAIL : r;
}

static char *format_at(usec_t at) {
        _cleanup_free_ char *s = clock_format_microtime(at);

        /* "2026-11-25T20:32:51.123456Z" -> "2026-11-25 20:32:51" */
        if (!s || strlen(s) < 19)
                return strdup("-");
        s[10] = ' ';
        s[19] = '\0';
        return TAKE_PTR(s);
}

static int print_events(struct ctl *c, struct metadata_event_row *rows, size_t n) {
        if (c->json) {
                _cleanup_(json_deletep) cJSON *arr = cJSON_CreateArray();

                for (size_t i = 0; arr && i < n; i++) {
                        _cleanup_free_ char *at = clock_format_microtime(rows[i].at);
                        cJSON *o = cJSON_CreateObject(), *details = cJSON_Parse(rows[i].details ? rows[i].details : "{}");

                        if (!o || !cJSON_AddItemToArray(arr, o) || !cJSON_AddNumberToObject(o, "id", (double) rows[i].id) ||
                            !cJSON_AddStringToObject(o, "at", strempty(at)) || !cJSON_AddStringToObject(o, "node", strempty(rows[i].node)) ||
                            !cJSON_AddStringToObject(o, "event", strempty(rows[i].event)) ||
                            !cJSON_AddBoolToObject(o, "successful", rows[i].successful) ||
                            !cJSON_AddItemToObject(o, "details", details ? details : cJSON_CreateObject()))
                                return ctl_fail(EXIT_FAIL, "out of memory");
                }
                if (!arr)
                        return ctl_fail(EXIT_FAIL, "out of memory");
                ctl_print_json(arr);
                return EXIT_OK;
        }
        printf("%-6s | %-19s | %-12s | %-12s | %-6s | %s\n", "ID", "At (UTC)", "Node", "Event", "Result", "Details");
        printf("-------+---------------------+--------------+--------------+--------+--------\n");
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *at = format_at(rows[i].at);

                printf("%-6" PRId64 " | %-19s | %-12s | %-12s | %-6s | %s\n", rows[i].id, strempty(at), strempty(rows[i].node),
                       strempty(rows[i].event), rows[i].successful ? "ok" : "failed", rows[i].details ? rows[i].details : "{}");
        }
        return EXIT_OK;
}

static int cluster_events(struct ctl *c, int argc, char **argv) {
        enum { ARG_LIMIT = 0x100, ARG_NODE };
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { "limit", required_argument, NULL, ARG_LIMIT },
                { "node", required_argument, NULL, ARG_NODE },
                {}
        };
        _cleanup_(pgconn_closep) PGconn *conn = NULL;
        _cleanup_free_ char *err = NULL;
        struct metadata_event_row *rows = NULL;
        const char *node = NULL;
        int64_t limit = 20;
        size_t n = 0;
        int opt, r;

        optind = 0;
        while ((opt = getopt_long(argc, argv, "+c:h", options, NULL)) >= 0) {
                r = ctl_common_option(c, opt, optarg);
                if (r < 0)
                        return EXIT_USAGE;
                if (r > 0)
                        continue;
                if (opt == ARG_LIMIT) {
                        if (parse_int64(optarg, &limit) < 0 || limit < 0)
                                return ctl_fail(EXIT_USAGE, "--limit %s: expected a number (0 for all)", optarg);
                } else if (opt == ARG_NODE)
                        node = optarg;
                else if (opt == 'h') {
                        printf("Usage: agentctl cluster events [--limit N] [--node NAME] [--json]\n\n"
                               "The newest events (default 20; 0 for all), newest first, from the metadata\n"
                               "schema on the primary.\n");
                        return EXIT_OK;
                } else
                        return ctl_fail(EXIT_USAGE, "Try 'agentctl cluster events --help'.");
        }
        if (optind < argc)
                return ctl_fail(EXIT_USAGE, "cluster events: unexpected argument '%s'", argv[optind]);
        r = connect_primary(c, &conn);
        if (r != 0)
                return r;
        r = metadata_events_list(conn, c->config.metadata_schema, (size_t) limit, node, &rows, &n, &err);
        if (r < 0)
                return ctl_fail(EXIT_FAIL, "cannot read the events: %s", err ? err : strerror(-r));
        r = print_events(c, rows, n);
        metadata_event_rows_free(rows, n);
        return r;
}

static int print_history(struct ctl *c, struct metadata_history_row *rows, size_t n) {
        if (c->json) {
                _cleanup_(json_deletep) cJSON *arr = cJSON_CreateArray();

                for (size_t i = 0; arr && i < n; i++) {
                        _cleanup_free_ char *at = clock_format_microtime(rows[i].at), *lsn = dcs_lsn_format(rows[i].switch_lsn);
                        cJSON *o = cJSON_CreateObject();

                        if (!o || !cJSON_AddItemToArray(arr, o) || !cJSON_AddNumberToObject(o, "timeline", rows[i].timeline) ||
                            !(rows[i].switch_lsn ? cJSON_AddStringToObject(o, "switch_lsn", strempty(lsn)) : cJSON_AddNullToObject(o, "switch_lsn")) ||
                            !cJSON_AddStringToObject(o, "new_primary", strempty(rows[i].new_primary)) ||
                            !cJSON_AddStringToObject(o, "reason", strempty(rows[i].reason)) || !cJSON_AddStringToObject(o, "at", strempty(at)))
                                return ctl_fail(EXIT_FAIL, "out of memory");
                }
                if (!arr)
                        return ctl_fail(EXIT_FAIL, "out of memory");
                ctl_print_json(arr);
                return EXIT_OK;
        }
        printf("%-8s | %-12s | %-12s | %-19s | %s\n", "Timeline", "Switch LSN", "New primary", "At (UTC)", "Reason");
        printf("---------+--------------+--------------+---------------------+--------\n");
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *at = format_at(rows[i].at), *lsn = rows[i].switch_lsn ? dcs_lsn_format(rows[i].switch_lsn) : strdup("-");

                printf("%-8" PRIu32 " | %-12s | %-12s | %-19s | %s\n", rows[i].timeline, strempty(lsn), strempty(rows[i].new_primary),
                       strempty(at), strempty(rows[i].reason));
        }
        return EXIT_OK;
}

static int cluster_history(struct ctl *c, int argc, char **argv) {
        _cleanup_(pgconn_closep) PGconn *conn = NULL;
        _cleanup_free_ char *err = NULL;
        struct metadata_history_row *rows = NULL;
        size_t n = 0;
        int r;

        r = ctl_parse_common_only(c, argc, argv, "cluster history", "[--json]", "One row per promotion (timeline, switch LSN, new primary, reason), newest\n"
                                  "first, from the metadata schema on the primary.");
        if (r >= 0)
                return r;
        r = connect_primary(c, &conn);
        if (r != 0)
                return r;
        r = metadata_history_list(conn, c->config.metadata_schema, 0, &rows, &n, &err);
        if (r < 0)
                return ctl_fail(EXIT_FAIL, "cannot read the history: %s", err ? err : strerror(-r));
        r = print_history(c, rows, n);
        metadata_history_rows_free(rows, n);
        return r;
}

int ctl_cluster_main(struct ctl *c, int argc, char **argv) {
        if (argc < 2 || streq(argv[1], "--help") || streq(argv[1], "-h")) {
                printf("Usage: agentctl cluster show|events|history [OPTIONS]\n"
                       "Run 'agentctl cluster COMMAND --help' for a command's options.\n");
                return argc < 2 ? EXIT_USAGE : EXIT_OK;
        }
        if (streq(argv[1], "show"))
                return cluster_show(c, argc - 1, argv + 1);
        if (streq(argv[1], "events"))
                return cluster_events(c, argc - 1, argv + 1);
        if (streq(argv[1], "history"))
                return cluster_history(c, argc - 1, argv + 1);
        return ctl_fail(EXIT_USAGE, "unknown command 'cluster %s'. Try 'agentctl cluster --help'.", argv[1]);
}
