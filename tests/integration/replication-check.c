/* replication-check.c: a small driver of lib/replication and lib/bootstrap
 * for the integration tests, which run it against real servers and read
 * its output. Usage: replication-check COMMAND key=value...
 * Prints "ok" (or the command's lines) and exits 0, or prints
 * "error <ERRNO-NAME> <message>" and exits 2. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "bootstrap.h"
#include "pgconn.h"
#include "proc.h"
#include "replication.h"
#include "util.h"

#define CONNECT_TIMEOUT (3 * USEC_PER_SEC)
#define STATEMENT_TIMEOUT (30 * USEC_PER_SEC)

struct args {
        int argc;
        char **argv;
};

static const char *arg(const struct args *a, const char *key, const char *def) {
        size_t n = strlen(key);

        for (int i = 0; i < a->argc; i++)
                if (strneq(a->argv[i], key, n) && a->argv[i][n] == '=')
                        return a->argv[i] + n + 1;
        return def;
}

static int arg_int(const struct args *a, const char *key, int def) {
        int64_t v;
        const char *s = arg(a, key, NULL);

        return s && parse_int64(s, &v) == 0 ? (int) v : def;
}

static usec_t arg_duration(const struct args *a, const char *key, usec_t def) {
        usec_t u;
        const char *s = arg(a, key, NULL);

        return s && parse_duration(s, &u) == 0 ? u : def;
}

static int fail(int r, const char *msg) {
        printf("error %s %s\n", strerrorname_np(-r) ?: "?", strempty(msg));
        fflush(stdout);
        return 2;
}

static int connect_or_fail(const char *conninfo, PGconn **ret) {
        _cleanup_free_ char *err = NULL;
        int r = pgconn_connect(conninfo, "replication-check", CONNECT_TIMEOUT, STATEMENT_TIMEOUT, ret, &err);

        return r < 0 ? fail(r, err) : 0;
}

static struct upstream upstream_of(const struct args *a, const char *user_key) {
        return (struct upstream) {
                .host = arg(a, "host", "127.0.0.1"),
                .port = arg_int(a, "port", 5432),
                .user = arg(a, user_key, "replicator"),
                .passfile = arg(a, "passfile", NULL),
                .application_name = arg(a, "name", NULL),
                .connect_timeout = CONNECT_TIMEOUT,
        };
}

static int cmd_bootstrap(const struct args *a) {
        _cleanup_strv_free_ char **networks = NULL;
        _cleanup_free_ char *err = NULL;
        struct bootstrap_options o;
        int r;

        r = strv_split_comma(arg(a, "networks", ""), &networks);
        if (r < 0)
                return fail(r, "networks");
        o = (struct bootstrap_options) {
                .bindir = arg(a, "bindir", NULL),
                .datadir = arg(a, "datadir", NULL),
                .superuser = arg(a, "superuser", NULL),
                .superuser_password_file = arg(a, "password-file", NULL),
                .auth_local = arg(a, "auth-local", NULL),
                .repl_user = arg(a, "repl-user", NULL),
                .rewind_user = arg(a, "rewind-user", NULL),
                .networks = (const char *const *) networks,
                .listen_addresses = arg(a, "listen", NULL),
                .port = arg_int(a, "port", 0),
                .socket_dir = arg(a, "socket-dir", NULL),
                .max_slot_wal_keep_size = arg(a, "max-slot-wal-keep-size", NULL),
        };
        r = bootstrap_initdb(&o, &err);
        return r < 0 ? fail(r, err) : (puts("ok"), 0);
}

static int cmd_roles(const struct args *a) {
        _cleanup_(pgconn_closep) PGconn *c = NULL;
        _cleanup_free_ char *err = NULL;
        struct bootstrap_options o = {
                .repl_user = arg(a, "repl-user", NULL),
                .rewind_user = arg(a, "rewind-user", NULL),
        };
        int r;

        if ((r = connect_or_fail(arg(a, "conninfo", ""), &c)) != 0)
                return r;
        r = bootstrap_create_roles(c, &o, arg(a, "repl-password-file", NULL),
                                   arg(a, "rewind-password-file", NULL), &err);
        return r < 0 ? fail(r, err) : (puts("ok"), 0);
}

static void print_progress(const struct clone_progress *p, void *userdata) {
        printf("progress percent=%d done_kb=%" PRIu64 " total_kb=%" PRIu64 " mb_per_sec=%.1f\n",
               p->percent, p->done_kb, p->total_kb, p->mb_per_sec);
        fflush(stdout);
}

static void print_pid(pid_t pid, void *userdata) {
        printf("pid %d\n", (int) pid);
        fflush(stdout);
}

static struct clone_options clone_options_of(const struct args *a) {
        return (struct clone_options) {
                .bindir = arg(a, "bindir", NULL),
                .node_name = arg(a, "name", NULL),
                .datadir = arg(a, "datadir", NULL),
                .source = upstream_of(a, "user"),
                .password_file = arg(a, "password-file", NULL),
                .timeout = arg_duration(a, "timeout", 0),
                .progress_interval = arg_duration(a, "progress-interval", 0),
                .keep_failed = arg_int(a, "keep-failed", 0) != 0,
                .no_slot = arg_int(a, "no-slot", 0) != 0,
                .progress = print_progress,
                .on_started = print_pid,
        };
}

static int cmd_clone(const struct args *a) {
        _cleanup_free_ char *err = NULL;
        struct clone_options o = clone_options_of(a);
        int r;

        r = replication_clone_with_retry(&o, (unsigned) arg_int(a, "attempts", 1),
                                         arg_duration(a, "backoff", USEC_PER_SEC), &err);
        return r < 0 ? fail(r, err) : (puts("ok"), 0);
}

static int cmd_plan(const struct args *a) {
        struct clone_options o = clone_options_of(a);
        char **lines = NULL;
        int r;

        r = replication_clone_plan(&o, &lines);
        if (r < 0)
                return fail(r, "plan");
        for (size_t i = 0; lines[i]; i++)
                puts(lines[i]);
        strv_free(lines);
        return 0;
}

static int cmd_follow(const struct args *a) {
        _cleanup_(pgconn_closep) PGconn *c = NULL;
        _cleanup_free_ char *err = NULL;
        struct upstream u = upstream_of(a, "user");
        int r;

        if ((r = connect_or_fail(arg(a, "conninfo", ""), &c)) != 0)
                return r;
        r = replication_follow(c, &u, arg(a, "slot", NULL), &err);
        if (r >= 0)
                r = replication_follow_wait(c, u.host, u.port, (uint32_t) arg_int(a, "timeline", 0),
                                            arg_duration(a, "timeout", 30 * USEC_PER_SEC), NULL, &err);
        return r < 0 ? fail(r, err) : (puts("ok"), 0);
}

static void print_names(const char *what, char **names) {
        printf(" %s=", what);
        for (size_t i = 0; names && names[i]; i++)
                printf("%s%s", i > 0 ? "," : "", names[i]);
}

/* Runs rounds of slot sync on the real clock, as the primary's agent does on
 * its ticks, with one in-memory state. */
static int cmd_slots(const struct args *a) {
        _cleanup_(pgconn_closep) PGconn *c = NULL;
        _cleanup_strv_free_ char **members = NULL;
        _cleanup_(slot_state_done) struct slot_state st = {};
        int rounds = arg_int(a, "rounds", 1), r;
        usec_t interval = arg_duration(a, "interval", USEC_PER_SEC);
        usec_t retention = arg_duration(a, "retention", 60 * USEC_PER_SEC);

        if ((r = connect_or_fail(arg(a, "conninfo", ""), &c)) != 0)
                return r;
        if ((r = strv_split_comma(arg(a, "members", ""), &members)) < 0)
                return fail(r, "members");
        for (int i = 0; i < rounds; i++) {
                _cleanup_strv_free_ char **created = NULL, **dropped = NULL;
                _cleanup_free_ char *err = NULL;

                if (i > 0)
                        proc_pause(interval);
                r = replication_slots_sync(c, (const char *const *) members, clock_now(&clock_system), &st,
                                           retention, &created, &dropped, &err);
                if (r < 0)
                        return fail(r, err);
                printf("round %d", i);
                print_names("created", created);
                print_names("dropped", dropped);
                putchar('\n');
                fflush(stdout);
        }
        return 0;
}

static int cmd_forked(const struct args *a) {
        _cleanup_free_ char *err = NULL;
        struct upstream u = upstream_of(a, "user");
        enum timeline_fork fork = TIMELINE_SAME_HISTORY;
        int r;

        r = replication_timeline_forked(arg(a, "bindir", NULL), arg(a, "datadir", NULL), &u,
                                        30 * USEC_PER_SEC, NULL, &fork, &err);
        return r < 0 ? fail(r, err) :
                (printf("forked=%d%s\n", fork != TIMELINE_SAME_HISTORY,
                        fork == TIMELINE_FORKED_SAME_NUMBER ? " same-number=1" : ""), 0);
}

static int cmd_clean_shutdown(const struct args *a) {
        _cleanup_free_ char *err = NULL;
        int r;

        r = replication_ensure_clean_shutdown(arg(a, "bindir", NULL), arg(a, "datadir", NULL),
                                              arg_duration(a, "timeout", 60 * USEC_PER_SEC), NULL, &err);
        return r < 0 ? fail(r, err) : (puts("ok"), 0);
}

static int cmd_rewind(const struct args *a) {
        _cleanup_free_ char *err = NULL;
        struct rewind_options o = {
                .bindir = arg(a, "bindir", NULL),
                .datadir = arg(a, "datadir", NULL),
                .source = upstream_of(a, "rewind-user"),
                .password_file = arg(a, "rewind-password-file", NULL),
                .standby = upstream_of(a, "repl-user"),
                .slot_name = arg(a, "slot", NULL),
                .timeout = arg_duration(a, "timeout", 120 * USEC_PER_SEC),
        };
        int r;

        r = replication_rewind(&o, &err);
        return r < 0 ? fail(r, err) : (puts("ok"), 0);
}

static int cmd_passfile(const struct args *a) {
        _cleanup_free_ char *err = NULL;
        int r;

        r = replication_passfile_set(arg(a, "passfile", NULL), arg(a, "user", NULL),
                                     arg(a, "password-file", NULL), &err);
        return r < 0 ? fail(r, err) : (puts("ok"), 0);
}

static const struct {
        const char *name;
        int (*run)(const struct args *a);
} commands[] = {
        { "bootstrap", cmd_bootstrap },
        { "roles", cmd_roles },
        { "clone", cmd_clone },
        { "plan", cmd_plan },
        { "follow", cmd_follow },
        { "slots", cmd_slots },
        { "forked", cmd_forked },
        { "clean-shutdown", cmd_clean_shutdown },
        { "rewind", cmd_rewind },
        { "passfile", cmd_passfile },
};

int main(int argc, char **argv) {
        struct args a = { argc - 2, argv + 2 };

        if (argc < 2) {
                fprintf(stderr, "usage: replication-check COMMAND key=value...\n");
                return 1;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        for (size_t i = 0; i < ELEMENTSOF(commands); i++)
                if (streq(argv[1], commands[i].name))
                        return commands[i].run(&a);
        fprintf(stderr, "unknown command %s\n", argv[1]);
        return 1;
}
