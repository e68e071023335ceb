/* agentctl-switchover.c: the planned changes: switchover, demote (the
 * pre-stop hook), pause and resume, all through the local agent. */
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agentctl.h"
#include "exit-codes.h"
#include "util.h"

#define WAIT_POLL_MS 250
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
               "  --wait       wait until a new member holds the lease (exit 6 after --timeout)\n"
               "  --timeout S  how long --wait waits (default 60 s with --wait, else 5 s)\n");
}

/* The lease holder and whether the status says that member is a primary. */
static int poll_holder(struct ctl *c, char **ret_holder, bool *ret_primary, bool *ret_requested, char **ret_refused) {
        _cleanup_(json_deletep) cJSON *resp = NULL;
        const cJSON *m, *lease;
        const char *holder;
        int r;

        r = ctl_call(c, ctl_request("status"), MIN(c->timeout, 5 * USEC_PER_SEC), true, &resp);
        if (r != 0)
                return -EAGAIN;
        lease = cJSON_GetObjectItemCaseSensitive(resp, "lease");
        holder = ctl_json_string(lease, "holder");
        *ret_primary = false;
        cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(resp, "members"))
                if (holder && streq(strempty(ctl_json_string(m, "name")), holder))
                        *ret_primary = streq(strempty(ctl_json_string(m, "role")), "primary");
        *ret_requested = !isempty(ctl_json_string(lease, "switchover"));
        if (ret_refused) {
                const char *why = ctl_json_string(lease, "switchover_refused");

                free(*ret_refused);
                *ret_refused = isempty(why) ? NULL : strdup(why);
        }
        *ret_holder = holder ? strdup(holder) : NULL;
        return 0;
}

static int wait_for_new_leader(struct ctl *c, const char *from, const char *to, usec_t deadline) {
        _cleanup_free_ char *refused = NULL;
        unsigned cleared = 0;

        while (clock_now(&clock_system) < deadline) {
                _cleanup_free_ char *holder = NULL;
                bool primary = false, requested = true;

                if (poll_holder(c, &holder, &primary, &requested, &refused) < 0)
                        requested = true;
                /* The leader clears a request it refuses, keeps the lease
                 * and leaves its reason on it: say so now rather than at
                 * the timeout. */
                if (!requested && holder && streq(holder, from)) {
                        if (refused)
                                return ctl_fail(EXIT_REFUSED, "the leader %s refused the switchover: %s", from, refused);
                        if (++cleared >= 2)
                                return ctl_fail(EXIT_REFUSED, "the leader %s refused the switchover (it gave no reason; see "
                                                "agentctl cluster events)", from);
                } else
                        cleared = 0;
                if (!isempty(holder) && !streq(holder, from) && primary) {
                        if (to && !streq(holder, to))
                                return ctl_fail(EXIT_FAIL, "%s took the lease instead of %s", holder, to);
                        if (!c->json)
                                printf("%s is the new primary\n", holder);
                        return EXIT_OK;
                }
                (void) poll(NULL, 0, WAIT_POLL_MS);
        }
        {
                _cleanup_free_ char *holder = NULL;
                bool primary = false, requested = true;

                /* Say what really happened: acted on or not. */
                if (poll_holder(c, &holder, &primary, &requested, NULL) >= 0 && !(holder && streq(holder, from) && requested))
                        return ctl_fail(EXIT_TIMEOUT, "the leader acted on the request, but no new primary within the timeout "
                                        "(lease holder now: %s; see agentctl cluster show)", isempty(holder) ? "nobody (released)" : holder);
        }
        return ctl_fail(EXIT_TIMEOUT, "no new primary within the timeout (the request stays on the lease until the leader acts on it)");
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
        _cleanup_free_ char *from = NULL;
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
        if (c->json)
                ctl_print_json(resp);
        else
                printf("switchover requested: %s -> %s\n", from ? from : "?",
                       to ? to : "the best standby");
        if (!wait)
                return EXIT_OK;
        return wait_for_new_leader(c, strempty(from), to, start + (timeout_given ? c->timeout : DEFAULT_WAIT_TIMEOUT));
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
