/* kube-check.c: drives lib/kube and lib/dcs-kube against a real API server
 * (the emulator) for test_kube_client.py: one command per stdin line, one
 * JSON answer per stdout line, on one client so tokens and connections live
 * across commands.
 *
 *   kube-check [--kubeconfig F] [--sa-dir D] [--namespace NS] [--cluster C]
 *              [--pod P] [--timeout-ms N] [--attempt-timeout-ms N]
 *
 * Without --kubeconfig (and without $KUBECONFIG) the client is in-cluster:
 * KUBERNETES_SERVICE_HOST/PORT and the service-account directory.
 * Commands: lease-get | lease-create HOLDER SECONDS | lease-update HOLDER
 * [VERSION] | publish ROLE STATE | members | event TYPE REASON MESSAGE... |
 * timeout MS | count | quit */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "dcs-kube.h"
#include "util.h"

struct check {
        struct dcs dcs;
        struct dcs_leader *last;     /* the record from the last lease command */
        usec_t timeout;
};

static const char *errname(int r) {
        const char *n;

        if (r >= 0)
                return "OK";
        n = strerrorname_np(-r);
        return n ?: "E?";
}

static void answer(cJSON *o, const char *cmd, int r, const char *msg, usec_t started) {
        char *s;

        cJSON_AddStringToObject(o, "cmd", cmd);
        cJSON_AddStringToObject(o, "r", errname(r));
        if (msg)
                cJSON_AddStringToObject(o, "msg", msg);
        cJSON_AddNumberToObject(o, "elapsed_ms", (double) ((clock_now(&clock_system) - started) / USEC_PER_MSEC));
        s = cJSON_PrintUnformatted(o);
        printf("%s\n", s ? s : "{\"r\":\"ENOMEM\"}");
        fflush(stdout);
        free(s);
        cJSON_Delete(o);
}

static void add_leader(cJSON *o, const struct dcs_leader *l) {
        cJSON_AddStringToObject(o, "holder", strempty(l->holder));
        cJSON_AddStringToObject(o, "version", strempty(l->version));
        cJSON_AddNumberToObject(o, "duration_s", (double) (l->lease_duration / USEC_PER_SEC));
        cJSON_AddNumberToObject(o, "transitions", (double) l->transitions);
        cJSON_AddStringToObject(o, "raw", strempty(l->raw));
}

/* Keeps the newest record, for the next lease-update. */
static void keep(struct check *c, struct dcs_leader *l) {
        dcs_leader_free(c->last);
        c->last = l;
}

static int cmd_lease(struct check *c, char **argv, size_t argc, cJSON *o, char **err) {
        const struct dcs_ops *ops = c->dcs.ops;
        usec_t deadline = clock_now(&clock_system) + c->timeout;
        struct dcs_leader *got = NULL, want = {};
        int r;

        if (streq(argv[0], "lease-get"))
                r = ops->leader_get(c->dcs.userdata, deadline, &got, err);
        else if (streq(argv[0], "lease-create") && argc == 3) {
                want = (struct dcs_leader) {
                        .holder = argv[1],
                        .lease_duration = (usec_t) atoi(argv[2]) * USEC_PER_SEC,
                        .acquire_time = clock_realtime(&clock_system),
                        .renew_time = clock_realtime(&clock_system),
                        .optime_timeline = 1,
                        .optime_lsn = 0x3000060,
                };
                r = ops->leader_create(c->dcs.userdata, &want, deadline, &got, err);
        } else if (streq(argv[0], "lease-update") && (argc == 2 || argc == 3) && c->last) {
                want = *c->last;
                if (!streq(strempty(want.holder), argv[1]))
                        want.transitions++;
                want.holder = argv[1];
                want.renew_time = clock_realtime(&clock_system);
                if (argc == 3)
                        want.version = argv[2];
                r = ops->leader_update(c->dcs.userdata, &want, deadline, &got, err);
        } else
                return -EINVAL;
        if (r >= 0) {
                add_leader(o, got);
                keep(c, got);
        }
        return r;
}

static int cmd_publish(struct check *c, char **argv, size_t argc, char **err) {
        struct dcs_member m = {
                .role = argc == 3 ? member_role_from_string(argv[1]) : _MEMBER_ROLE_INVALID,
                .state = argc == 3 ? argv[2] : NULL,
                .timeline = 1,
                .lsn = 0x3000060,
                .host = (char *) "127.0.0.1",
                .port = 5432,
                .priority = 100,
                .heartbeat = clock_realtime(&clock_system),
                .api_version = (char *) "kube-check",
        };

        if (m.role < 0)
                return -EINVAL;
        return c->dcs.ops->member_publish(c->dcs.userdata, &m, clock_now(&clock_system) + c->timeout, err);
}

static int cmd_members(struct check *c, cJSON *o, char **err) {
        _cleanup_(dcs_member_list_freep) struct dcs_member_list *l = NULL;
        cJSON *arr;
        int r;

        r = c->dcs.ops->member_list(c->dcs.userdata, clock_now(&clock_system) + c->timeout, &l, err);
        if (r < 0)
                return r;
        arr = cJSON_AddArrayToObject(o, "members");
        for (size_t i = 0; arr && i < l->n; i++) {
                cJSON *m = cJSON_CreateObject();

                cJSON_AddStringToObject(m, "name", l->members[i].name);
                cJSON_AddStringToObject(m, "role", member_role_to_string(l->members[i].role));
                cJSON_AddStringToObject(m, "state", strempty(l->members[i].state));
                cJSON_AddNumberToObject(m, "timeline", l->members[i].timeline);
                cJSON_AddItemToArray(arr, m);
        }
        return 0;
}

static int run_command(struct check *c, char *line, cJSON *o, char **err) {
        char *argv[8] = {}, *save = NULL, *rest;
        size_t argc = 0;

        /* "event TYPE REASON" takes the rest of the line as its message. */
        for (char *t = strtok_r(line, " \t\n", &save); t; t = strtok_r(NULL, " \t\n", &save)) {
                argv[argc++] = t;
                if (argc == ELEMENTSOF(argv) || (argc == 3 && streq(argv[0], "event")))
                        break;
        }
        if (argc == 0)
                return -EINVAL;
        if (strneq(argv[0], "lease-", 6))
                return cmd_lease(c, argv, argc, o, err);
        if (streq(argv[0], "publish"))
                return cmd_publish(c, argv, argc, err);
        if (streq(argv[0], "members"))
                return cmd_members(c, o, err);
        if (streq(argv[0], "event") && argc == 3) {
                rest = strtok_r(NULL, "\n", &save);
                return c->dcs.ops->event_post(c->dcs.userdata, argv[1], argv[2], strempty(rest),
                                              clock_now(&clock_system) + c->timeout, err);
        }
        if (streq(argv[0], "timeout") && argc == 2) {
                c->timeout = (usec_t) atol(argv[1]) * USEC_PER_MSEC;
                return 0;
        }
        if (streq(argv[0], "count")) {
                cJSON_AddNumberToObject(o, "requests", (double) c->dcs.ops->request_count(c->dcs.userdata));
                return 0;
        }
        return -EINVAL;
}

static int parse_options(int argc, char **argv, struct dcs_kube_options *o, usec_t *timeout) {
        static const struct option longopts[] = {
                { "kubeconfig", required_argument, NULL, 'k' },
                { "sa-dir", required_argument, NULL, 's' },
                { "namespace", required_argument, NULL, 'n' },
                { "cluster", required_argument, NULL, 'c' },
                { "pod", required_argument, NULL, 'p' },
                { "timeout-ms", required_argument, NULL, 't' },
                { "attempt-timeout-ms", required_argument, NULL, 'a' },
                {}
        };
        int opt;

        while ((opt = getopt_long(argc, argv, "", longopts, NULL)) >= 0)
                switch (opt) {
                case 'k': o->kube.kubeconfig = optarg; break;
                case 's': o->kube.serviceaccount_dir = optarg; break;
                case 'n': o->namespace = optarg; break;
                case 'c': o->cluster = optarg; break;
                case 'p': o->pod_name = optarg; break;
                case 't': *timeout = (usec_t) atol(optarg) * USEC_PER_MSEC; break;
                case 'a': o->kube.attempt_timeout = (usec_t) atol(optarg) * USEC_PER_MSEC; break;
                default: return -EINVAL;
                }
        return optind == argc ? 0 : -EINVAL;
}

int main(int argc, char **argv) {
        struct dcs_kube_options o = { .cluster = "main", .pod_name = "pg-0" };
        struct check c = { .timeout = 5 * USEC_PER_SEC };
        _cleanup_free_ char *err = NULL, *line = NULL;
        size_t line_size = 0;
        int r;

        if (parse_options(argc, argv, &o, &c.timeout) < 0) {
                fprintf(stderr, "usage: kube-check [--kubeconfig F] [--sa-dir D] [--namespace NS] "
                                "[--cluster C] [--pod P] [--timeout-ms N] [--attempt-timeout-ms N]\n");
                return 2;
        }
        r = dcs_kube_new(&o, &clock_system, &c.dcs, &err);
        if (r < 0) {
                printf("{\"cmd\":\"init\",\"r\":\"%s\"}\n", errname(r));
                fprintf(stderr, "kube-check: %s\n", strempty(err));
                return 1;
        }
        printf("{\"cmd\":\"init\",\"r\":\"OK\"}\n");
        fflush(stdout);
        while (getline(&line, &line_size, stdin) >= 0) {
                _cleanup_free_ char *cmd = strndup(line, strcspn(line, " \t\n"));
                usec_t started = clock_now(&clock_system);
                cJSON *out = cJSON_CreateObject();

                if (!cmd || !out || streq(cmd, "quit")) {
                        cJSON_Delete(out);
                        break;
                }
                free(err);
                err = NULL;
                r = run_command(&c, line, out, &err);
                answer(out, cmd, r, err, started);
        }
        dcs_leader_free(c.last);
        c.dcs.ops->free(c.dcs.userdata);
        return 0;
}
