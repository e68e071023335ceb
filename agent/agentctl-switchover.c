/* agentctl-switchover.c: the planned changes: switchover, demote (the
 * pre-stop hook), pause and resume, all through the local agent. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentctl.h"
#include "exit-codes.h"
#include "util.h"

#define DEFAULT_WAIT_TIMEOUT (60 * USEC_PER_SEC)

static inline void json_deletep(cJSON **j) {
        if (*j)
                cJSON_Delete(*j);
}

static void switchover_help(void) {
        printf("Usage: agentctl switchover [--to NAME] [--wait] [--timeout S]\n"
               "\n"
               "Asks the leader to hand the primary role to NAME, or to the best standby\n"
               "(the most caught-up synchronous or asynchronous one): checkpoint, fast stop,\n"
               "release of the lease naming the target and the final LSN. The request is\n"
               "the Lease annotation pglease.io/switchover.\n"
               "\n"
               "  --to NAME    the member to promote (default: the best standby)\n"
               "  --wait       wait until another member holds the lease and its PostgreSQL\n"
               "               accepts writes (asked directly; exit 6 after --timeout)\n"
               "  --timeout S  how long --wait waits (default 60 s with --wait, else 5 s)\n");
}

int ctl_switchover_main(struct ctl *c, int argc, char **argv) {
        enum { ARG_TO = 0x100, ARG_WAIT };
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { "to", required_argument, NULL, ARG_TO },
                { "wait", no_argument, NULL, ARG_WAIT },
                {}
        };
        _cleanup_(json_deletep) cJSON *req = ctl_request("switchover"), *resp = NULL;
        const char *to = NULL;
        bool wait = false, timeout_given = false;
        usec_t start = clock_now(&clock_system);
        _cleanup_free_ char *from = NULL, *new_primary = NULL;
        const char *how = NULL;
        int opt, r;

        optind = 0;
        while ((opt = getopt_long(argc, argv, "+c:h", options, NULL)) >= 0) {
                timeout_given |= opt == CTL_ARG_TIMEOUT;
                r = ctl_common_option(c, opt, optarg);
                if (r < 0)
                        return EXIT_USAGE;
                if (r > 0)
                        continue;
                if (opt == ARG_TO)
                        to = optarg;
                else if (opt == ARG_WAIT)
                        wait = true;
                else if (opt == 'h') {
                        switchover_help();
                        return EXIT_OK;
                } else
                        return ctl_fail(EXIT_USAGE, "Try 'agentctl switchover --help'.");
        }
        if (optind < argc)
                return ctl_fail(EXIT_USAGE, "switchover: unexpected argument '%s'", argv[optind]);
        if (!req || !(to ? cJSON_AddStringToObject(req, "to", to) : cJSON_AddNullToObject(req, "to")))
                return ctl_fail(EXIT_FAIL, "out of memory");
        r = ctl_call(c, TAKE_PTR(req), MIN(c->timeout, 30 * USEC_PER_SEC), false, &resp);
        if (r != 0)
                return r;
        from = strdup(strempty(ctl_json_string(resp, "from")));
        if (!from)
                return ctl_fail(EXIT_FAIL, "out of memory");
        if (!c->json)
                printf("switchover requested: %s -> %s\n", from, to ? to : "the best standby");
        else if (!wait)
                ctl_print_json(resp);
        if (!wait)
                return EXIT_OK;
        fflush(stdout);
        r = ctl_wait_new_primary(c, from, to, start + (timeout_given ? c->timeout : DEFAULT_WAIT_TIMEOUT), &new_primary, &how);
        if (c->json) {
                /* One document: the request's answer and how it ended. */
                if (!(new_primary ? cJSON_AddStringToObject(resp, "new_primary", new_primary)
                                  : cJSON_AddNullToObject(resp, "new_primary")) ||
                    !(how ? cJSON_AddStringToObject(resp, "confirmed_by", how) : cJSON_AddNullToObject(resp, "confirmed_by")))
                        return ctl_fail(EXIT_FAIL, "out of memory");
                ctl_print_json(resp);
        } else if (r == EXIT_OK)
                printf("%s is the new primary (%s)\n", new_primary,
                       streq(how, "postgresql") ? "it accepts writes" : "its member record says so");
        return r;
}

static void demote_help(void) {
        printf("Usage: agentctl demote [--wait] [--timeout S]\n"
               "\n"
               "The pre-stop hook. On the leader: hand the lease to the best standby\n"
               "(checkpoint, fast stop, release naming it and the final LSN); past the\n"
               "timeout with no fit standby, fence and release. On a standby: stop\n"
               "PostgreSQL cleanly and keep it down. The agent keeps running.\n"
               "\n"
               "  --wait       wait for the hand-over to finish (exit 6 after the timeout)\n"
               "  --timeout S  the agent's deadline for the hand-over (default 60 s)\n");
}

int ctl_demote_main(struct ctl *c, int argc, char **argv) {
        enum { ARG_WAIT = 0x100 };
        static const struct option options[] = {
                CTL_COMMON_OPTIONS,
                { "wait", no_argument, NULL, ARG_WAIT },
                {}
        };
        _cleanup_(json_deletep) cJSON *req = ctl_request("demote"), *resp = NULL;
        bool wait = false, timeout_given = false;
        usec_t deadline;
        int opt, r;

        optind = 0;
        while ((opt = getopt_long(argc, argv, "+c:h", options, NULL)) >= 0) {
                timeout_given |= opt == CTL_ARG_TIMEOUT;
                r = ctl_common_option(c, opt, optarg);
                if (r < 0)
                        return EXIT_USAGE;
                if (r > 0)
                        continue;
                if (opt == ARG_WAIT)
                        wait = true;
                else if (opt == 'h') {
                        demote_help();
                        return EXIT_OK;
                } else
                        return ctl_fail(EXIT_USAGE, "Try 'agentctl demote --help'.");
        }
        if (optind < argc)
                return ctl_fail(EXIT_USAGE, "demote: unexpected argument '%s'", argv[optind]);
        deadline = timeout_given ? c->timeout : DEFAULT_WAIT_TIMEOUT;
        if (!req || !cJSON_AddNumberToObject(req, "timeout", (double) deadline / USEC_PER_SEC) ||
            !cJSON_AddBoolToObject(req, "wait", wait))
                return ctl_fail(EXIT_FAIL, "out of memory");
        /* The agent answers a waiting demote by its own deadline; give it
         * a little longer than that to say so. */
        r = ctl_call(c, TAKE_PTR(req), wait ? deadline + 15 * USEC_PER_SEC : MIN(c->timeout, 30 * USEC_PER_SEC), false, &resp);
        if (r != 0)
                return r;
        if (c->json)
                ctl_print_json(resp);
        else
                printf("%s\n", ctl_json_string(resp, "message") ?: "demote requested");
        return EXIT_OK;
}

int ctl_pause_main(struct ctl *c, int argc, char **argv, bool pause) {
        _cleanup_(json_deletep) cJSON *resp = NULL;
        int r;

        r = ctl_parse_common_only(c, argc, argv, pause ? "pause" : "resume", "",
                                  pause ? "Suspends automatic failover (maintenance): the Lease annotation pglease.io/paused.\n"
                                        "The leader keeps renewing the lease; switchover still works."
                                      : "Resumes automatic failover.");
        if (r >= 0)
                return r;
        r = ctl_call(c, ctl_request(pause ? "pause" : "resume"), c->timeout, false, &resp);
        if (r != 0)
                return r;
        if (c->json)
                ctl_print_json(resp);
        else
                printf("%s\n", ctl_json_string(resp, "message") ?: (pause ? "automatic failover paused" : "automatic failover resumed"));
        return EXIT_OK;
}
