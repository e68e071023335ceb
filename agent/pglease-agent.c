/* pglease-agent.c: the daemon's entry point: command line, configuration,
 * and the modes (daemon, init, run-postgres). */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "exit-codes.h"
#include "init.h"
#include "kube.h"
#include "pglease-build.h"
#include "run-postgres.h"
#include "util.h"

extern char **environ;

static void help(void) {
        printf("Usage: pglease-agent [OPTIONS]                 run the agent (daemon)\n"
               "       pglease-agent [OPTIONS] --check-config  print the effective configuration\n"
               "       pglease-agent [OPTIONS] init [--dry-run] prepare the data directory\n"
               "       pglease-agent run-postgres [--run-dir DIR] -- postgres -D DATADIR ...\n"
               "\n"
               "Replication and failover manager for PostgreSQL on Kubernetes.\n"
               "\n"
               "Options:\n"
               "  -c, --config FILE     configuration file (default: $PGLEASE_CONFIG, else\n"
               "                        %s if it exists)\n"
               "      --set KEY=VALUE   override one configuration key (repeatable)\n"
               "      --check-config    validate and print the effective configuration, then exit\n"
               "      --election-only   take part in the leader election only (no PostgreSQL)\n"
               "  -h, --help            show this help\n"
               "      --version         show the version\n"
               "\n"
               "Configuration is read from the file, then PGLEASE_<KEY> environment variables,\n"
               "then --set flags. See pglease-agent(8) and pglease.conf(5).\n",
               PGLEASE_CONFIG_FILE);
}

static int default_config_path(char **ret) {
        const char *env = getenv("PGLEASE_CONFIG");
        char *p;

        if (env)
                p = strdup(env);
        else {
                p = strdup(PGLEASE_CONFIG_FILE);
                if (p && access(p, F_OK) < 0) {
                        free(p);
                        *ret = NULL;
                        return 0;
                }
        }
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

/* A file the agent reads at start: readable now, or the error names the key. */
static int check_readable(const char *key, const char *path, char **reterr_msg) {
        _cleanup_free_ char *content = NULL;
        int r;

        if (isempty(path))
                return 0;
        r = read_full_file(path, &content, NULL);
        if (r < 0)
                return set_error_msg(reterr_msg, "%s: %s: %s", key, path, strerror(-r)), r;
        return 0;
}

/* --check-config reads what the agent reads at start, so that a
 * configuration it accepts cannot fail there: the Kubernetes credentials
 * (the kubeconfig and every file it names) and the password files. Outside
 * a pod without a kubeconfig, the in-cluster credentials cannot be checked:
 * 1 and a note then. */
static int check_start_inputs(const struct config *c, char **reterr_msg) {
        const struct kube_options o = { .kubeconfig = isempty(c->kube_config) ? NULL : c->kube_config };
        struct kube_config kc = {};
        const char *files[][2] = {
                { "superuser_password_file", c->superuser_password_file },
                { "replication_password_file", c->replication_password_file },
                { "rewind_password_file", c->rewind_password_file },
                { "certificate-authority", NULL }, { "client-certificate", NULL }, { "client-key", NULL },
        };
        int r, in_cluster = 0;

        r = kube_config_resolve(&o, &kc, reterr_msg);
        if (r == -ENXIO && !o.kubeconfig && isempty(getenv("KUBECONFIG")) &&
            isempty(getenv("KUBERNETES_SERVICE_HOST"))) {
                in_cluster = 1;
                r = 0;
        } else if (r < 0)
                return r;
        files[3][1] = kc.ca_file;
        files[4][1] = kc.cert_file;
        files[5][1] = kc.key_file;
        for (size_t i = 0; i < ELEMENTSOF(files) && r >= 0; i++)
                r = check_readable(files[i][0], files[i][1], reterr_msg);
        kube_config_done(&kc);
        return r < 0 ? r : in_cluster;
}

static int check_config_main(struct agent *a) {
        _cleanup_free_ char *dump = NULL, *err = NULL;
        int r;

        r = check_start_inputs(&a->config, &err);
        if (r < 0) {
                fprintf(stderr, "pglease-agent: invalid configuration: %s\n", err ? err : strerror(-r));
                return EXIT_CONFIG;
        }
        if (r > 0)
                fprintf(stderr, "pglease-agent: note: not in a pod and no kube_config or $KUBECONFIG: the in-cluster "
                        "credentials were not checked\n");
        if (config_dump(&a->config, &dump) < 0)
                return EXIT_FAIL;
        printf("# pglease-agent %s: effective configuration (%s)\n%s",
               PGLEASE_VERSION, a->config_path ? a->config_path : "no configuration file", dump);
        return EXIT_OK;
}

enum mode { MODE_DAEMON, MODE_CHECK_CONFIG, MODE_INIT };

static int parse_argv(int argc, char **argv, struct agent *a, enum mode *ret_mode, bool *ret_dry_run) {
        enum { ARG_SET = 0x100, ARG_CHECK, ARG_VERSION, ARG_DRY_RUN, ARG_ELECTION_ONLY };
        static const struct option options[] = {
                { "config", required_argument, NULL, 'c' },
                { "set", required_argument, NULL, ARG_SET },
                { "check-config", no_argument, NULL, ARG_CHECK },
                { "dry-run", no_argument, NULL, ARG_DRY_RUN },
                { "election-only", no_argument, NULL, ARG_ELECTION_ONLY },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, ARG_VERSION },
                {}
        };
        enum mode mode = MODE_DAEMON;
        int c;

        while ((c = getopt_long(argc, argv, "c:h", options, NULL)) >= 0) {
                switch (c) {
                case 'c':
                        free(a->config_path);
                        a->config_path = strdup(optarg);
                        if (!a->config_path)
                                return -ENOMEM;
                        break;
                case ARG_SET:
                        if (!strchr(optarg, '=')) {
                                fprintf(stderr, "pglease-agent: --set %s: expected KEY=VALUE\n", optarg);
                                return -EINVAL;
                        }
                        if (strv_extend(&a->settings, optarg) < 0)
                                return -ENOMEM;
                        break;
                case ARG_CHECK:
                        mode = MODE_CHECK_CONFIG;
                        break;
                case ARG_DRY_RUN:
                        *ret_dry_run = true;
                        break;
                case ARG_ELECTION_ONLY:
                        a->election_only = true;
                        break;
                case 'h':
                        help();
                        return 0;
                case ARG_VERSION:
                        printf("pglease-agent %s\n", PGLEASE_VERSION);
                        return 0;
                default:
                        fprintf(stderr, "Try 'pglease-agent --help'.\n");
                        return -EINVAL;
                }
        }
        if (optind < argc) {
                if (streq(argv[optind], "init") && mode == MODE_DAEMON)
                        mode = MODE_INIT;
                else {
                        fprintf(stderr, "pglease-agent: unexpected argument '%s'. Try 'pglease-agent --help'.\n", argv[optind]);
                        return -EINVAL;
                }
                if (optind + 1 < argc) {
                        fprintf(stderr, "pglease-agent: unexpected argument '%s'\n", argv[optind + 1]);
                        return -EINVAL;
                }
        }
        *ret_mode = mode;
        return 1;
}

int main(int argc, char **argv) {
        _cleanup_free_ char *err = NULL;
        struct agent a = { .clock = &clock_system, .envp = environ };
        enum mode mode = MODE_DAEMON;
        bool dry_run = false;
        int r, status;

        /* run-postgres has its own options and must not read the
         * configuration: it is PID 1 of the postgres container. */
        for (int i = 1; i < argc; i++) {
                if (streq(argv[i], "--"))
                        break;
                if (streq(argv[i], "run-postgres"))
                        return run_postgres_main(argc - i, argv + i);
                if (argv[i][0] != '-')
                        break;
        }

        logger_init(&a.log, "pglease-agent", STDERR_FILENO);
        if (log_journal_wanted())
                a.log.target = LOG_TARGET_JOURNAL;

        r = parse_argv(argc, argv, &a, &mode, &dry_run);
        if (r <= 0) {
                status = r < 0 ? EXIT_USAGE : EXIT_OK;
                goto finish;
        }
        if (!a.config_path && default_config_path(&a.config_path) < 0) {
                status = EXIT_FAIL;
                goto finish;
        }
        r = agent_load_config(&a, &a.config, &err);
        if (r < 0) {
                fprintf(stderr, "pglease-agent: invalid configuration: %s\n", err ? err : strerror(-r));
                status = EXIT_CONFIG;
                goto finish;
        }
        switch (mode) {
        case MODE_CHECK_CONFIG:
                status = check_config_main(&a);
                break;
        case MODE_INIT:
                status = agent_init_main(&a, dry_run);
                break;
        default:
                status = agent_run(&a);
        }
        config_done(&a.config);
finish:
        logger_done(&a.log);
        free(a.config_path);
        strv_free(a.settings);
        return status;
}
