/* run-postgres-main.c: a stand-alone run-postgres, and a driver of lib/pgctl,
 * for the integration tests (test_supervisor.py).
 * Usage: run-postgres-main [run-postgres options] -- postgres ...
 *        run-postgres-main pgctl BACKEND DATADIR RUN_DIR BINDIR VERB [ARGS]
 * VERB: start SECS | stop MODE SECS | fence SECS | running | controldata */
#include <stdio.h>
#include <string.h>

#include "pgctl.h"
#include "run-postgres.h"
#include "util.h"

static int fail(int r, const char *what, const char *msg) {
        printf("error %s %s: %s\n", strerrorname_np(-r) ?: "?", what, strempty(msg));
        return 2;
}

static int seconds(const char *s, usec_t *ret) {
        int64_t v;

        if (parse_int64(s, &v) < 0 || v < 0)
                return -EINVAL;
        *ret = (usec_t) v * USEC_PER_SEC;
        return 0;
}

static int print_controldata(const char *bindir, const char *datadir) {
        _cleanup_free_ char *err = NULL;
        struct pgctl_controldata d;
        int r;

        r = pgctl_controldata(bindir, datadir, 10 * USEC_PER_SEC, &d, &err);
        if (r < 0)
                return fail(r, "controldata", err);
        printf("state=%s\ntimeline=%u\ncheckpoint=%X/%X\n", pgctl_db_state_to_string(d.state), d.timeline,
               (unsigned) (d.checkpoint_lsn >> 32), (unsigned) d.checkpoint_lsn);
        return 0;
}

static int pgctl_verb(int argc, char **argv) {
        _cleanup_free_ char *err = NULL;
        struct pgctl_config cfg;
        _cleanup_(pgctl_done) struct pgctl c = {};
        usec_t timeout = 0;
        const char *verb;
        pid_t pid;
        int r;

        if (argc < 7)
                return fail(-EINVAL, "usage", "pgctl BACKEND DATADIR RUN_DIR BINDIR VERB [ARGS]");
        /* argv[1] is "pgctl". */
        cfg = (struct pgctl_config) { .datadir = argv[3], .run_dir = argv[4], .bindir = argv[5], .clock = &clock_system };
        verb = argv[6];
        r = pgctl_init(&c, argv[2], &cfg);
        if (r < 0)
                return fail(r, "init", argv[2]);
        if (streq(verb, "running")) {
                r = pgctl_is_running(&c, &pid);
                if (r < 0)
                        return fail(r, verb, NULL);
                printf(r > 0 ? "running %d\n" : "stopped\n", (int) pid);
                return 0;
        }
        if (streq(verb, "controldata"))
                return print_controldata(cfg.bindir, cfg.datadir);
        if (seconds(argv[argc - 1], &timeout) < 0)
                return fail(-EINVAL, "timeout", argv[argc - 1]);
        if (streq(verb, "start"))
                r = pgctl_start(&c, timeout, &err);
        else if (streq(verb, "fence"))
                r = pgctl_fence(&c, timeout, &err);
        else if (streq(verb, "stop") && argc == 9 && pgctl_stop_mode_from_string(argv[7]) >= 0)
                r = pgctl_stop(&c, pgctl_stop_mode_from_string(argv[7]), timeout, &err);
        else
                return fail(-EINVAL, "usage", verb);
        if (r < 0)
                return fail(r, verb, err);
        printf("ok\n");
        return 0;
}

int main(int argc, char **argv) {
        if (argc > 1 && streq(argv[1], "pgctl"))
                return pgctl_verb(argc, argv);
        return run_postgres_main(argc, argv);
}
