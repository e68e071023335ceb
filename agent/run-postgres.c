/* run-postgres.c: the `pglease-agent run-postgres` mode, the supervisor that
 * runs as PID 1 of the postgres container (see lib/supervisor.h). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "run-postgres.h"
#include "supervisor.h"
#include "util.h"

#define DEFAULT_RUN_DIR "/run/pglease"

static void log_to_stderr(void *userdata, const char *line) {
        fprintf(stderr, "run-postgres: %s\n", line);
        fflush(stderr);
}

static void usage(FILE *f) {
        fputs("Usage: pglease-agent run-postgres [OPTIONS] -- postgres -D PGDATA [ARGS...]\n"
              "\n"
              "Runs Postgres as a child, forwards SIGTERM (as SIGINT: a fast shutdown),\n"
              "SIGINT, SIGQUIT and SIGHUP to it and restarts it when it exits, unless\n"
              "RUN_DIR/hold exists: at once if it had been ready (accepting connections),\n"
              "else after a delay that doubles while its starts keep failing. What a dead\n"
              "postmaster leaves running is killed at once.\n"
              "When RUN_DIR/lease-expiry (written by the agent while it leads) names a\n"
              "CLOCK_MONOTONIC time that has passed, fences Postgres: writes\n"
              "DATA_DIR/standby.signal, creates the hold file and kills Postgres and all its\n"
              "processes (SIGKILL).\n"
              "\n"
              "  --run-dir DIR          shared run directory (default $PGLEASE_RUN_DIR or " DEFAULT_RUN_DIR ")\n"
              "  --data-dir DIR         Postgres data directory (default: -D of the command, else $PGDATA)\n"
              "  --restart-delay DUR    first delay after a failed start, doubled per failed start (default 1s)\n"
              "  --restart-delay-max DUR  (default 16s)\n"
              "  --stop-timeout DUR     after a stop signal, SIGQUIT Postgres if still up (default: never)\n"
              "  -h, --help             this text\n"
              "\n"
              "Exit status: 0 stopped cleanly, 1 usage or setup error, 2 Postgres could not\n"
              "be executed, 3 Postgres exited with an error when stopped, 128+N Postgres was\n"
              "killed by signal N.\n", f);
}

static int parse_duration_arg(const char *name, const char *value, usec_t *ret) {
        if (parse_duration(value, ret) < 0) {
                fprintf(stderr, "run-postgres: invalid duration for --%s: %s\n", name, value);
                return -EINVAL;
        }
        return 0;
}

enum { ARG_RUN_DIR = 0x100, ARG_DATA_DIR, ARG_RESTART_DELAY, ARG_RESTART_DELAY_MAX, ARG_STOP_TIMEOUT };

static int parse_args(int argc, char **argv, struct supervisor_config *c, char ***ret_cmd) {
        static const struct option options[] = {
                { "run-dir", required_argument, NULL, ARG_RUN_DIR },
                { "data-dir", required_argument, NULL, ARG_DATA_DIR },
                { "restart-delay", required_argument, NULL, ARG_RESTART_DELAY },
                { "restart-delay-max", required_argument, NULL, ARG_RESTART_DELAY_MAX },
                { "stop-timeout", required_argument, NULL, ARG_STOP_TIMEOUT },
                { "help", no_argument, NULL, 'h' },
                {},
        };
        int opt;

        optind = 0; /* the agent's own getopt may have run: start afresh */
        while ((opt = getopt_long(argc, argv, "+h", options, NULL)) >= 0)
                switch (opt) {
                case ARG_RUN_DIR:
                        c->run_dir = optarg;
                        break;
                case ARG_DATA_DIR:
                        c->data_dir = optarg;
                        break;
                case ARG_RESTART_DELAY:
                        if (parse_duration_arg("restart-delay", optarg, &c->restart_delay) < 0)
                                return -EINVAL;
                        break;
                case ARG_RESTART_DELAY_MAX:
                        if (parse_duration_arg("restart-delay-max", optarg, &c->restart_delay_max) < 0)
                                return -EINVAL;
                        break;
                case ARG_STOP_TIMEOUT:
                        if (parse_duration_arg("stop-timeout", optarg, &c->stop_timeout) < 0)
                                return -EINVAL;
                        break;
                case 'h':
                        usage(stdout);
                        return 0;
                default:
                        usage(stderr);
                        return -EINVAL;
                }
        if (optind >= argc) {
                fputs("run-postgres: no Postgres command given after --\n", stderr);
                usage(stderr);
                return -EINVAL;
        }
        *ret_cmd = argv + optind;
        return 1;
}

int run_postgres_main(int argc, char **argv) {
        struct supervisor_config c = {
                .clock = &clock_system,
                .log = log_to_stderr,
        };
        _cleanup_free_ char *error = NULL;
        char **cmd = NULL;
        int r;

        c.run_dir = getenv("PGLEASE_RUN_DIR") ?: DEFAULT_RUN_DIR;
        r = parse_args(argc, argv, &c, &cmd);
        if (r <= 0)
                return r < 0 ? SUPERVISOR_EXIT_USAGE : SUPERVISOR_EXIT_CLEAN;
        c.argv = cmd;
        /* postgres itself reads PGDATA when there is no -D. */
        if (isempty(c.data_dir))
                c.data_dir = supervisor_data_dir_from_argv(cmd) ?: getenv("PGDATA");
        /* An emptyDir mount exists already; outside a pod, make it. */
        if (mkdir(c.run_dir, 0755) < 0 && errno != EEXIST) {
                fprintf(stderr, "run-postgres: cannot create run directory %s: %m\n", c.run_dir);
                return SUPERVISOR_EXIT_USAGE;
        }
        r = supervisor_run(&c, &error);
        if (r < 0) {
                fprintf(stderr, "run-postgres: %s\n", error ?: strerror(-r));
                return SUPERVISOR_EXIT_USAGE;
        }
        fprintf(stderr, "run-postgres: exiting with status %d\n", r);
        return r;
}
