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
        usec_t lease_duration;
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
        g->lease_duration = (usec_t) (ctl_json_number(st, "lease_duration_seconds", 0) * USEC_PER_SEC);
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
        g->lease_duration = c->config.lease_duration;
        g->cluster = strdup(c->config.cluster_name);
        g->source = "dcs";
        return g->cluster ? 0 : -ENOMEM;
}

struct probe_job {
        struct ctl *ctl;
        const struct dcs_member *member;
        struct clusterview_probe *result;
        PGconn *conn;            /* kept open for the primary's second read */
        pthread_t thread;
        bool started;
};

static void *probe_one(void *userdata) {
        struct probe_job *j = userdata;
        struct pg_node_status st = {};

        j->result->probed = true;
        j->result->lag_seconds = -1;
        if (isempty(j->member->host) ||
            ctl_connect(j->ctl, j->member->host, j->member->port ? j->member->port : 5432,
                        MIN(j->ctl->timeout, PROBE_TIMEOUT), &j->conn, NULL) < 0 ||
            pgconn_query_status(j->conn, &st, NULL) < 0)
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
        /* The primary's LSN once more, after every standby's: a standby
         * never receives what its primary has not written, so none can
         * look ahead of it (issue 19, item 1). */
        for (size_t i = 0; i < n; i++) {
                struct pg_node_status st = {};

                if (jobs[i].conn && g->probes[i].reachable && !g->probes[i].in_recovery &&
                    pgconn_query_status(jobs[i].conn, &st, NULL) >= 0) {
                        if (!st.in_recovery)
                                g->probes[i].lsn = g->probes[i].replay_lsn = st.current_lsn;
                        pg_node_status_done(&st);
                }
                pgconn_closep(&jobs[i].conn);
        }
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
        /* Live by default (issue 19, item 1): a view assembled from member
         * records of different ages can show a standby ahead of its
         * primary. Without a readable configuration the records are
         * shown, marked stale. */
        if (probe == PROBE_YES || (probe == PROBE_AUTO && (c->have_config || streq(g->source, "dcs") || ctl_config_readable(c)))) {
                if (ctl_load_config(c) != 0)
                        return EXIT_CONFIG;
                if (probe_members(c, g) < 0)
                        return ctl_fail(EXIT_FAIL, "out of memory");
        }
        return 0;
}

static int show_once(struct ctl *c, bool dcs_only, enum probe_mode probe, bool one_line) {
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
                .lease_duration = g.lease_duration, .maximum_lag = g.maximum_lag,
        };
        r = clusterview_build(&src, &v);
        gathered_done(&g);
        if (r < 0)
                return ctl_fail(EXIT_FAIL, "out of memory");
        if (c->json) {
                _cleanup_(json_deletep) cJSON *j = NULL;

                if (clusterview_to_json(v, &j) < 0)
                        return ctl_fail(EXIT_FAIL, "out of memory");
                if (one_line) {
                        /* --watch --json: one JSON value per line (JSON Lines). */
                        _cleanup_free_ char *s = cJSON_PrintUnformatted(j);

                        if (!s)
                                return ctl_fail(EXIT_FAIL, "out of memory");
                        printf("%s\n", s);
                } else
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
               "row per member: Name, Role, Status, Timeline, LSN, Lag (bytes and seconds\n"
               "behind the primary, \"(stale)\" when read from a member record rather than\n"
               "live), Priority, Tags, Host; warnings below the table. The records come from\n"
               "the local agent; when no agent answers, from the DCS directly with the\n"
               "configuration file. Every member's PostgreSQL is read live (in parallel, 2 s\n"
               "at most; the primary last). A member silent for longer than the lease\n"
               "duration is shown with role unknown, never as a primary.\n"
               "\n"
               "  --json       the JSON of docs/agentctl-cluster-show.schema.json\n"
               "  --watch S    print again every S seconds until interrupted (with --json:\n"
               "               one JSON document per line)\n"
               "  --dcs        read the DCS directly even when an agent runs\n"
               "  --probe      read every member live; fail when there is no configuration\n"
               "  --no-probe   show the member records only (marked stale)\n");
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
                return show_once(c, dcs_only, probe, false);
        for (;;) {
                if (isatty(STDOUT_FILENO) && !c->json)
                        fputs("\033[H\033[2J", stdout);
                (void) show_once(c, dcs_only, probe, true);
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

/* "2026-11-25T20:32:51.123456Z" -> "2026-11-25 20:32:51.123": events
 * written within one second keep their order readable (issue 19, item 4). */
static char *format_at(usec_t at) {
        _cleanup_free_ char *s = clock_format_microtime(at);

        if (!s || strlen(s) < 23)
                return strdup("-");
        s[10] = ' ';
        s[23] = '\0';
        return TAKE_PTR(s);
}

/* Text from the events table goes to a terminal: control characters (C0,
 * DEL, C1) are shown escaped, never sent (issue 19, 4c); max > 0 cuts the
 * result to about max characters with "...". */
static char *escape_cell(const char *s, size_t max) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);

        if (!f)
                return NULL;
        for (const unsigned char *p = (const unsigned char *) strempty(s); *p; p++) {
                if (max > 0 && len >= max) {
                        fputs("...", f);
                        break;
                }
                if (*p == '\n')
                        fputs("\\n", f);
                else if (*p == '\t')
                        fputs("\\t", f);
                else if (*p == '\r')
                        fputs("\\r", f);
                else if (*p < 0x20 || *p == 0x7f)
                        fprintf(f, "\\x%02x", *p);
                else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
                        fprintf(f, "\\u%04x", p[1]);
                        p++;
                } else
                        fputc(*p, f);
                fflush(f);
        }
        if (fclose(f) != 0)
                return NULL;
        return TAKE_PTR(buf);
}

#define DETAILS_MAX 120

struct events_printer {
        struct ctl *ctl;
        size_t n;
};

/* One row at a time, as the cursor delivers it (issue 19, 4c: --limit 0
 * over a large table must not hold every row). */
static int print_event(const struct metadata_event_row *row, void *userdata) {
        struct events_printer *p = userdata;
        _cleanup_free_ char *at = NULL;

        if (p->ctl->json) {
                _cleanup_(json_deletep) cJSON *o = cJSON_CreateObject();
                _cleanup_free_ char *text = NULL;
                cJSON *details = cJSON_Parse(row->details ? row->details : "{}");

                at = clock_format_microtime(row->at);
                if (!o || !cJSON_AddNumberToObject(o, "id", (double) row->id) || !cJSON_AddStringToObject(o, "at", strempty(at)) ||
                    !cJSON_AddStringToObject(o, "node", strempty(row->node)) ||
                    !cJSON_AddStringToObject(o, "event", strempty(row->event)) ||
                    !cJSON_AddBoolToObject(o, "successful", row->successful)) {
                        cJSON_Delete(details);
                        return -ENOMEM;
                }
                if (!cJSON_AddItemToObject(o, "details", details ? details : cJSON_CreateObject()) ||
                    !(text = cJSON_PrintUnformatted(o)))
                        return -ENOMEM;
                printf("%s%s", p->n ? ",\n" : "[\n", text);
        } else {
                _cleanup_free_ char *node = escape_cell(row->node, 0), *event = escape_cell(row->event, 0),
                                    *details = escape_cell(row->details ? row->details : "{}", DETAILS_MAX);

                at = format_at(row->at);
                if (!node || !event || !details)
                        return -ENOMEM;
                if (p->n == 0) {
                        printf("%-6s | %-23s | %-12s | %-14s | %-6s | %s\n", "ID", "At (UTC)", "Node", "Event", "Result", "Details");
                        printf("-------+-------------------------+--------------+----------------+--------+--------\n");
                }
                printf("%-6" PRId64 " | %-23s | %-12s | %-14s | %-6s | %s\n", row->id, strempty(at), node, event,
                       row->successful ? "ok" : "failed", details);
        }
        p->n++;
        return 0;
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
        struct events_printer printer = { .ctl = c };
        const char *node = NULL;
        int64_t limit = 20;
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
                               "The newest events (default 20; 0 for all, streamed), newest first, from the\n"
                               "metadata schema on the primary. Times have millisecond precision; control\n"
                               "characters are shown escaped and details cut to %d characters in the table\n"
                               "(--json has them whole).\n", DETAILS_MAX);
                        return EXIT_OK;
                } else
                        return ctl_fail(EXIT_USAGE, "Try 'agentctl cluster events --help'.");
        }
        if (optind < argc)
                return ctl_fail(EXIT_USAGE, "cluster events: unexpected argument '%s'", argv[optind]);
        r = connect_primary(c, &conn);
        if (r != 0)
                return r;
        r = metadata_events_foreach(conn, c->config.metadata_schema, (size_t) limit, node, print_event, &printer, &err);
        if (c->json && (r >= 0 || printer.n > 0))
                puts(printer.n ? "\n]" : "[]");
        else if (r >= 0 && printer.n == 0)
                puts("No events recorded yet.");
        if (r < 0)
                return ctl_fail(EXIT_FAIL, "cannot read the events: %s", err ? err : strerror(-r));
        return EXIT_OK;
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
                            !(rows[i].old_primary ? cJSON_AddStringToObject(o, "old_primary", rows[i].old_primary)
                                                  : cJSON_AddNullToObject(o, "old_primary")) ||
                            !cJSON_AddStringToObject(o, "reason", strempty(rows[i].reason)) || !cJSON_AddStringToObject(o, "at", strempty(at)))
                                return ctl_fail(EXIT_FAIL, "out of memory");
                }
                if (!arr)
                        return ctl_fail(EXIT_FAIL, "out of memory");
                ctl_print_json(arr);
                return EXIT_OK;
        }
        if (n == 0) {
                puts("No promotion recorded yet.");
                return EXIT_OK;
        }
        printf("%-8s | %-12s | %-12s | %-12s | %-23s | %s\n", "Timeline", "Switch LSN", "Old primary", "New primary", "At (UTC)", "Reason");
        printf("---------+--------------+--------------+--------------+-------------------------+--------\n");
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *at = format_at(rows[i].at), *lsn = rows[i].switch_lsn ? dcs_lsn_format(rows[i].switch_lsn) : strdup("-");

                printf("%-8" PRIu32 " | %-12s | %-12s | %-12s | %-23s | %s\n", rows[i].timeline, strempty(lsn),
                       rows[i].old_primary ? rows[i].old_primary : "-", strempty(rows[i].new_primary),
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

        r = ctl_parse_common_only(c, argc, argv, "cluster history", "[--json]", "One row per promotion (timeline, switch LSN, old and new primary, time,\n"
                                  "reason: bootstrap, failover, switchover or demote), newest first, from the\n"
                                  "metadata schema on the primary.");
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
