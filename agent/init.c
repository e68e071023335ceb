/* init.c: `pglease-agent init`, the init container: before Postgres starts,
 * bootstrap a new cluster, clone from the leader, or make an existing data
 * directory a standby of the leader (rewinding it when its timeline forked).
 * One log line per decision; docs/replication.md explains them. */
#include <dirent.h>
#include <inttypes.h>
#include <libgen.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "bootstrap.h"
#include "exit-codes.h"
#include "init.h"
#include "metadata.h"
#include "node.h"
#include "pgconn.h"
#include "pgctl.h"
#include "pglease-build.h"
#include "proc.h"
#include "replication.h"
#include "util.h"

#define INIT_TOOL_TIMEOUT (60 * USEC_PER_SEC)      /* pg_controldata, pg_ctl */
#define INIT_MAX_BACKOFF (30 * USEC_PER_SEC)
#define INIT_NOTE_REPEAT (30 * USEC_PER_SEC)      /* an unchanged waiting line is repeated this often */
#define INIT_PROGRESS_INTERVAL (5 * USEC_PER_SEC)
#define INIT_POLL_SLICE (200 * USEC_PER_MSEC)
#define INIT_APPLICATION_NAME "pglease-init"

/* Next to data_dir, like the clone's own marker: "<parent>/.<base>.<what>".
 * Written before initdb, removed once the bootstrap is complete and before
 * the member record is published, so that no other member can ever have
 * cloned from a data directory that still carries it. */
#define BOOTSTRAP_MARKER "pglease-bootstrap"
/* lib/replication-clone.c's marker of a partial clone (same naming). */
#define CLONE_MARKER "pglease-clone"

/* A step that returns an exit code may also say "not yet: look again after
 * a pause". */
#define INIT_RETRY (-1)

/* Set by SIGTERM/SIGINT (the pod is going away): waits end and a running
 * clone is cancelled and cleaned up. A signal handler can only reach a
 * static. */
static volatile sig_atomic_t init_interrupted;

struct init_ctx {
        struct agent *a;
        struct node n;
        bool have_node;
        bool dry_run;
        usec_t deadline;              /* monotonic: clone_timeout after the start */
        usec_t backoff;               /* pause before the next look */
        char *note;                   /* the last waiting line logged, and when */
        usec_t note_at;
        char *last_problem;           /* why we are still waiting, for the final message */
        int progress_percent;         /* last logged by the clone */
};

static void init_ctx_done(struct init_ctx *c) {
        if (c->have_node)
                node_done(&c->n);
        free(c->note);
        free(c->last_problem);
}

/* What the API server says about the cluster. */
struct view {
        bool lease_missing;             /* no Lease at all */
        const char *holder;             /* borrowed from the election; "" free, NULL missing */
        bool cluster_ran;               /* a leader published an optime, or some member a record */
        struct dcs_member_list *members;
        const struct dcs_member *leader;/* the holder's record with host and port (never ours) */
};

static void view_done(struct view *v) {
        dcs_member_list_free(v->members);
        *v = (struct view) {};
}

/* ---- logging, waiting ---- */

static void on_signal(int sig) {
        (void) sig;
        init_interrupted = 1;
}

static void vsay(struct init_ctx *c, enum log_level level, const char *fmt, va_list ap) _printf_(3, 0);
static void vsay(struct init_ctx *c, enum log_level level, const char *fmt, va_list ap) {
        _cleanup_free_ char *msg = NULL;

        if (vasprintf(&msg, fmt, ap) < 0)
                return;
        agent_log(c->a, level, "init", "%s", msg);
        if (c->dry_run && level >= LOG_LEVEL_INFO)
                printf("%s%s\n", level >= LOG_LEVEL_ERROR ? "error: " : "", msg);
}

static void _printf_(3, 4) say(struct init_ctx *c, enum log_level level, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsay(c, level, fmt, ap);
        va_end(ap);
}

/* Logs the reason and returns the exit code. */
static int _printf_(3, 4) fail(struct init_ctx *c, int status, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsay(c, LOG_LEVEL_ERROR, fmt, ap);
        va_end(ap);
        return status;
}

/* One step of a dry run's plan. */
static void _printf_(2, 3) plan(struct init_ctx *c, const char *fmt, ...) {
        va_list ap;

        (void) c;
        fputs("  - ", stdout);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        fputc('\n', stdout);
}

/* A waiting line: logged when it changes, else every INIT_NOTE_REPEAT, so
 * that an hour of waiting does not flood the log. Remembered as the reason
 * given if the deadline passes. */
static void _printf_(3, 4) note(struct init_ctx *c, enum log_level level, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        usec_t now = clock_now(c->a->clock);
        va_list ap;
        int r;

        va_start(ap, fmt);
        r = vasprintf(&msg, fmt, ap);
        va_end(ap);
        if (r < 0)
                return;
        free(c->last_problem);
        c->last_problem = strdup(msg);
        if (c->note && streq(c->note, msg) && now - c->note_at < INIT_NOTE_REPEAT)
                return;
        say(c, level, "%s", msg);
        free(c->note);
        c->note = TAKE_PTR(msg);
        c->note_at = now;
}

static usec_t remaining(const struct init_ctx *c) {
        usec_t now = clock_now(c->a->clock);

        return now >= c->deadline ? 0 : c->deadline - now;
}

/* Waits u (cut at the deadline) in short slices so that a signal ends it:
 * 0, -ECANCELED (signal) or -ETIMEDOUT (the deadline has passed). */
static int init_pause(struct init_ctx *c, usec_t u) {
        usec_t end = clock_now(c->a->clock) + MIN(u, remaining(c));

        while (!init_interrupted) {
                usec_t now = clock_now(c->a->clock);

                if (now >= end)
                        break;
                proc_pause(MIN(end - now, INIT_POLL_SLICE));
        }
        if (init_interrupted)
                return -ECANCELED;
        return remaining(c) == 0 ? -ETIMEDOUT : 0;
}

/* The pause after a look that found nothing to do, or after a failure. */
static int init_wait(struct init_ctx *c, bool failed) {
        const char *why = c->last_problem ? c->last_problem : "no leader to clone from";
        usec_t period = c->n.cfg->retry_period;
        _cleanup_free_ char *limit = NULL;
        int r;

        c->backoff = failed ? MIN(MAX(c->backoff * 2, period), INIT_MAX_BACKOFF) : period;
        r = init_pause(c, c->backoff);
        if (r == -ECANCELED)
                return fail(c, EXIT_FAIL, "interrupted by a signal while waiting (%s)", why);
        if (r < 0) {
                limit = format_duration(c->n.cfg->clone_timeout);
                return fail(c, EXIT_UNREACHABLE, "gave up after clone_timeout (%s): %s", limit ? limit : "?", why);
        }
        return INIT_RETRY;
}

/* Errors that another attempt cannot fix: credentials, configuration,
 * space, another cluster's data. The rest (refused, timed out, the API
 * server's 5xx) may pass. */
static bool error_is_permanent(int r) {
        return r == -EACCES || r == -EPERM || r == -EINVAL || r == -ENOMEM || r == -EXDEV || r == -EEXIST ||
               r == -ENOSPC || r == -EMEDIUMTYPE || r == -ECANCELED || r == -ENOTRECOVERABLE;
}

typedef int (*attempt_fn)(struct init_ctx *c, void *userdata, char **reterr_msg);

/* fn() until it succeeds, a permanent error, or the deadline: EXIT_OK or
 * the exit code (logged). A dry run tries once. */
static int with_retries(struct init_ctx *c, const char *what, attempt_fn fn, void *userdata) {
        for (;;) {
                _cleanup_free_ char *err = NULL;
                int r, status;

                r = fn(c, userdata, &err);
                if (r >= 0)
                        return EXIT_OK;
                if (error_is_permanent(r))
                        return fail(c, EXIT_FAIL, "cannot %s: %s", what, err ? err : strerror(-r));
                if (c->dry_run)
                        return fail(c, EXIT_UNREACHABLE, "cannot %s: %s", what, err ? err : strerror(-r));
                note(c, LOG_LEVEL_WARNING, "cannot %s yet: %s", what, err ? err : strerror(-r));
                status = init_wait(c, true);
                if (status != INIT_RETRY)
                        return status;
        }
}

/* ---- the cluster as the API server sees it ---- */

static int read_view_once(struct init_ctx *c, void *userdata, char **reterr_msg) {
        struct view *v = userdata;
        const struct dcs_leader *l;
        struct dcs *dcs = &c->n.dcs;
        int r;

        view_done(v);
        r = election_observe(&c->n.election, reterr_msg);
        if (r < 0 && r != -ENOENT)
                return r;
        r = dcs->ops->member_list(dcs->userdata, clock_now(c->a->clock) + c->n.cfg->api_timeout, &v->members,
                                  reterr_msg);
        if (r < 0)
                return r;
        l = c->n.election.observed_missing ? NULL : c->n.election.observed;
        v->lease_missing = c->n.election.observed_missing;
        v->holder = l ? strempty(l->holder) : NULL;
        v->cluster_ran = l && l->optime_timeline > 0;
        for (size_t i = 0; i < v->members->n; i++) {
                const struct dcs_member *m = &v->members->members[i];

                if (isempty(m->host) || m->port <= 0)
                        continue;
                v->cluster_ran = true;
                if (!isempty(v->holder) && streq(m->name, v->holder) && !streq(m->name, c->n.cfg->node_name))
                        v->leader = m;
        }
        return 0;
}

static int read_view(struct init_ctx *c, struct view *ret) {
        return with_retries(c, "read the lease and the member records", read_view_once, ret);
}

/* ---- paths and the data directory ---- */

static char *sibling_path(const char *datadir, const char *what) {
        _cleanup_free_ char *a = strdup(datadir), *b = strdup(datadir);

        if (!a || !b)
                return NULL;
        return strdup_printf("%s/.%s.%s", dirname(a), basename(b), what);
}

enum data_state {
        DATA_EMPTY,                /* missing or an empty directory */
        DATA_PRESENT,              /* PG_VERSION */
        DATA_PARTIAL_CLONE,        /* the clone's marker: a clone was interrupted */
        DATA_UNFINISHED_BOOTSTRAP, /* our bootstrap marker: never handed to anyone */
        DATA_UNKNOWN,              /* something else: not ours to touch */
};

static int data_dir_state(struct init_ctx *c, enum data_state *ret) {
        const char *datadir = c->n.cfg->data_dir;
        _cleanup_free_ char *boot = sibling_path(datadir, BOOTSTRAP_MARKER), *clone = sibling_path(datadir, CLONE_MARKER);
        struct dirent *de;
        bool empty = true;
        DIR *d;

        if (!boot || !clone)
                return -ENOMEM;
        if (access(boot, F_OK) == 0) {
                *ret = DATA_UNFINISHED_BOOTSTRAP;
                return 0;
        }
        if (access(clone, F_OK) == 0) {
                *ret = DATA_PARTIAL_CLONE;
                return 0;
        }
        if (node_data_present(&c->n)) {
                *ret = DATA_PRESENT;
                return 0;
        }
        d = opendir(datadir);
        if (!d) {
                if (errno != ENOENT)
                        return -errno;
        } else {
                while (empty && (de = readdir(d)))
                        empty = streq(de->d_name, ".") || streq(de->d_name, "..");
                closedir(d);
        }
        *ret = empty ? DATA_EMPTY : DATA_UNKNOWN;
        return 0;
}

/* Removes what an interrupted clone or bootstrap left, and its marker. */
static int discard_leftover(struct init_ctx *c, const char *marker_name, const char *what) {
        const char *datadir = c->n.cfg->data_dir;
        _cleanup_free_ char *marker = sibling_path(datadir, marker_name);
        int r;

        if (!marker)
                return fail(c, EXIT_FAIL, "out of memory");
        say(c, LOG_LEVEL_WARNING, "%s holds an unfinished %s (%s exists): removing it and starting again",
            datadir, what, marker);
        if (c->dry_run) {
                plan(c, "remove the contents of %s and %s", datadir, marker);
                return EXIT_OK;
        }
        r = rm_rf(datadir);
        if (r < 0 && r != -ENOENT)
                return fail(c, EXIT_FAIL, "cannot remove the unfinished %s in %s: %s", what, datadir, strerror(-r));
        if (unlink(marker) < 0 && errno != ENOENT)
                return fail(c, EXIT_FAIL, "cannot remove %s: %m", marker);
        return EXIT_OK;
}

/* ---- bootstrap ---- */

/* This member's server settings in bootstrap's terms; strings are borrowed
 * from the configuration or owned here. */
/* Local (socket) connections: peer when this OS user is the superuser (the
 * postgres user in the image), else SCRAM with the superuser's password,
 * which the agent keeps in its passfile. */
static int choose_local_auth(struct init_ctx *c, struct bootstrap_options *o) {
        struct passwd *pw = getpwuid(geteuid());

        if (pw && streq(pw->pw_name, c->n.cfg->superuser)) {
                o->auth_local = "peer";
                return EXIT_OK;
        }
        if (isempty(c->n.superuser_password_file))
                return fail(c, EXIT_CONFIG, "this OS user (%s) is not the superuser %s, so local connections need "
                            "a password: set superuser_password_file", pw ? pw->pw_name : "?", c->n.cfg->superuser);
        o->auth_local = "scram-sha-256";
        return EXIT_OK;
}

/* pg_ctl start (local connections only: nobody may clone or write before
 * the roles and the schema exist) or stop -m fast. */
static int temporary_server(struct init_ctx *c, bool start, char **reterr_msg) {
        const struct config *cfg = c->n.cfg;
        _cleanup_free_ char *pg_ctl = NULL, *secs = NULL, *opts = NULL, *log = NULL, *out = NULL;
        usec_t timeout = MAX(MIN(remaining(c), INIT_TOOL_TIMEOUT), USEC_PER_SEC);
        char *argv[14];
        size_t n = 0;
        int r;

        pg_ctl = strdup_printf("%s/pg_ctl", c->n.bindir);
        secs = strdup_printf("%" PRIu64, timeout / USEC_PER_SEC);
        log = strdup_printf("%s/bootstrap-postgres.log", cfg->run_dir);
        /* pg_ctl hands -o to a shell: bootstrap refuses quotes and
         * backslashes in socket_dir, so single quotes are enough. */
        opts = isempty(cfg->socket_dir) ? strdup_printf("-c listen_addresses='' -p %d", (int) cfg->pg_port)
                : strdup_printf("-c listen_addresses='' -c unix_socket_directories='%s' -p %d",
                                cfg->socket_dir, (int) cfg->pg_port);
        if (!pg_ctl || !secs || !log || !opts)
                return -ENOMEM;
        argv[n++] = pg_ctl;
        argv[n++] = start ? "start" : "stop";
        argv[n++] = "-D";
        argv[n++] = cfg->data_dir;
        argv[n++] = "-w";
        argv[n++] = "-t";
        argv[n++] = secs;
        if (start) {
                argv[n++] = "-l";
                argv[n++] = log;
                argv[n++] = "-o";
                argv[n++] = opts;
        } else {
                argv[n++] = "-m";
                argv[n++] = "fast";
        }
        argv[n] = NULL;
        r = pgctl_run(argv, NULL, timeout + 5 * USEC_PER_SEC, &out, reterr_msg);
        if (r < 0)
                return r;
        if (r != 0)
                return set_error_msg(reterr_msg, "pg_ctl %s exited with %d: %s (see %s)", argv[1], r,
                                     strstrip(strempty(out)), log), -EPROTO;
        return 0;
}

static int publish_once(struct init_ctx *c, void *userdata, char **reterr_msg) {
        const struct config *cfg = c->n.cfg;
        struct dcs *dcs = &c->n.dcs;
        struct dcs_member m = {
                .name = cfg->node_name,
                .role = MEMBER_ROLE_PRIMARY,
                .state = (char *) "stopped",
                .timeline = 1,
                .host = (char *) node_connect_host(&c->n),
                .port = (int) cfg->pg_port,
                .priority = (int) cfg->priority,
                .nofailover = cfg->nofailover,
                .tags = cfg->tags,
                .heartbeat = clock_realtime(c->a->clock),
                .api_version = (char *) PGLEASE_VERSION,
        };

        (void) userdata;
        return dcs->ops->member_publish(dcs->userdata, &m, clock_now(c->a->clock) + cfg->api_timeout, reterr_msg);
}

/* Roles and metadata, on the temporary server. */
static int bootstrap_populate(struct init_ctx *c, const struct bootstrap_options *o) {
        const struct config *cfg = c->n.cfg;
        _cleanup_free_ char *err = NULL;
        unsigned applied = 0;
        PGconn *conn;
        int r;

        conn = node_local(&c->n, &err);
        if (!conn)
                return fail(c, EXIT_FAIL, "cannot connect to the new server: %s", strempty(err));
        r = bootstrap_create_roles(conn, o, c->n.replication_password_file, c->n.rewind_password_file, &err);
        if (r < 0)
                return fail(c, EXIT_FAIL, "cannot create the roles: %s", err ? err : strerror(-r));
        say(c, LOG_LEVEL_INFO, "created the roles %s (replication) and %s (pg_rewind)", cfg->replication_user,
            cfg->rewind_user);
        r = metadata_migrate(conn, cfg->metadata_schema, c->n.sql_dir, &applied, &err);
        /* Timeline 1 begins here: the history's first row (issue 19, item 3). */
        if (r >= 0)
                r = metadata_history_insert(conn, cfg->metadata_schema, 1, PG_LSN_INVALID, cfg->node_name, NULL, "bootstrap", &err);
        node_local_reset(&c->n);
        if (r < 0)
                return fail(c, EXIT_FAIL, "cannot create the metadata schema %s: %s", cfg->metadata_schema,
                            err ? err : strerror(-r));
        say(c, LOG_LEVEL_INFO, "applied %u metadata migrations from %s to schema %s and recorded the bootstrap", applied,
            c->n.sql_dir ?: "the built-in set", cfg->metadata_schema);
        return EXIT_OK;
}

/* After initdb: everything else a new primary needs, on a server that
 * only takes local connections. */
static int bootstrap_finish(struct init_ctx *c, const struct bootstrap_options *o, const char *marker) {
        _cleanup_free_ char *err = NULL;
        int r, status;

        (void) mkdir(c->n.cfg->socket_dir, 0755);
        r = temporary_server(c, true, &err);
        if (r < 0) {
                /* pg_ctl may have given up on a postmaster that still starts. */
                (void) temporary_server(c, false, NULL);
                return fail(c, EXIT_FAIL, "cannot start the new server: %s", err ? err : strerror(-r));
        }
        say(c, LOG_LEVEL_INFO, "started PostgreSQL temporarily (local connections only)");
        status = bootstrap_populate(c, o);
        if (status == EXIT_OK && unlink(marker) < 0 && errno != ENOENT)
                status = fail(c, EXIT_FAIL, "cannot remove %s: %m", marker);
        if (status == EXIT_OK) {
                status = with_retries(c, "publish this member's record", publish_once, NULL);
                if (status == EXIT_OK)
                        say(c, LOG_LEVEL_INFO, "published the member record: primary at %s:%d",
                            node_connect_host(&c->n), (int) c->n.cfg->pg_port);
        }
        r = temporary_server(c, false, &err);
        if (r < 0)
                return fail(c, EXIT_FAIL, "cannot stop the temporary server: %s", err ? err : strerror(-r));
        if (status == EXIT_OK)
                say(c, LOG_LEVEL_INFO, "bootstrap complete: the lease names this member; the agent starts "
                    "PostgreSQL as the primary");
        return status;
}

static void bootstrap_plan(struct init_ctx *c, const struct bootstrap_options *o, const char *marker) {
        plan(c, "create the Lease %s-leader naming %s (only one member can win the create)", c->n.cfg->cluster_name,
             c->n.cfg->node_name);
        plan(c, "write the marker %s", marker);
        plan(c, "%s/initdb --pgdata=%s --username=%s --data-checksums --auth-host=scram-sha-256%s%s", o->bindir,
             o->datadir, o->superuser, o->superuser_password_file ? " --pwfile=" : "",
             strempty(o->superuser_password_file));
        plan(c, "write %s/%s (listen_addresses %s, port %d, max_wal_senders %d, max_replication_slots %d, "
             "max_slot_wal_keep_size %s, wal_keep_size %s) and pg_hba.conf for %s", o->datadir, BOOTSTRAP_CONF_FILE,
             o->listen_addresses, o->port, o->max_wal_senders, o->max_replication_slots,
             o->max_slot_wal_keep_size ? o->max_slot_wal_keep_size : "-1", o->wal_keep_size ? o->wal_keep_size : "0",
             c->n.cfg->hba_networks);
        plan(c, "pg_ctl start -w with listen_addresses='' (local connections only)");
        plan(c, "create the roles %s and %s", o->repl_user, o->rewind_user);
        plan(c, "apply the metadata migrations in %s to schema %s", c->n.sql_dir ?: "the built-in set",
             c->n.cfg->metadata_schema);
        plan(c, "remove the marker; publish the member record (primary at %s:%d)", node_connect_host(&c->n),
             (int) c->n.cfg->pg_port);
        plan(c, "pg_ctl stop -m fast; leave the lease held for the agent");
}

/* The bootstrap options, and all that a bootstrap can fail on in this
 * node's configuration. */
static int bootstrap_prepare(struct init_ctx *c, struct node_bootstrap *s) {
        int status;

        if (node_bootstrap_options(&c->n, remaining(c), s) < 0)
                return fail(c, EXIT_CONFIG, "cannot use hba_networks, max_slot_wal_keep_size or wal_keep_size");
        status = choose_local_auth(c, &s->o);
        if (status != EXIT_OK)
                return status;
        if (bootstrap_options_check(&s->o) < 0)
                return fail(c, EXIT_CONFIG, "invalid bootstrap options (role names, networks, listen_addresses "
                            "or socket_dir)");
        return EXIT_OK;
}

/* Checked before the Lease is created: a member that takes the lease and
 * then cannot bootstrap leaves the cluster without a primary until the
 * lease expires. */
static int bootstrap_preflight(struct init_ctx *c) {
        _cleanup_(node_bootstrap_done) struct node_bootstrap s = {};

        return bootstrap_prepare(c, &s);
}

static int init_bootstrap(struct init_ctx *c) {
        _cleanup_(node_bootstrap_done) struct node_bootstrap s = {};
        _cleanup_free_ char *err = NULL, *marker = NULL;
        int r, status;

        marker = sibling_path(c->n.cfg->data_dir, BOOTSTRAP_MARKER);
        if (!marker)
                return fail(c, EXIT_FAIL, "out of memory");
        status = bootstrap_prepare(c, &s);
        if (status != EXIT_OK)
                return status;
        if (c->dry_run) {
                bootstrap_plan(c, &s.o, marker);
                return EXIT_OK;
        }
        r = write_file_atomic(marker, c->n.cfg->node_name, 0600);
        if (r < 0)
                return fail(c, EXIT_FAIL, "cannot write %s: %s", marker, strerror(-r));
        say(c, LOG_LEVEL_INFO, "initdb of a new cluster in %s (data checksums, superuser %s, local auth %s)",
            c->n.cfg->data_dir, c->n.cfg->superuser, s.o.auth_local);
        r = bootstrap_initdb(&s.o, &err);
        if (r < 0)
                return fail(c, r == -EINVAL ? EXIT_CONFIG : EXIT_FAIL, "initdb failed: %s",
                            err ? err : strerror(-r));
        return bootstrap_finish(c, &s.o, marker);
}

/* ---- clone ---- */

static void on_clone_progress(const struct clone_progress *p, void *userdata) {
        struct init_ctx *c = userdata;

        /* pg_basebackup's last report repeats the final figure. */
        if (p->percent == 100 && c->progress_percent == 100)
                return;
        c->progress_percent = p->percent;
        agent_log(c->a, LOG_LEVEL_INFO, "clone", "clone %d%% (%.1f of %.1f MB) at %.1f MB/s", p->percent,
                  (double) p->done_kb / 1024.0, (double) p->total_kb / 1024.0, p->mb_per_sec);
}

static bool on_clone_cancel(void *userdata) {
        (void) userdata;
        return init_interrupted;
}

static void clone_options_for(struct init_ctx *c, const struct dcs_member *leader, struct clone_options *ret) {
        const struct config *cfg = c->n.cfg;

        *ret = (struct clone_options) {
                .bindir = c->n.bindir,
                .node_name = cfg->node_name,
                .datadir = cfg->data_dir,
                .password_file = c->n.replication_password_file,
                .source_dbname = cfg->database,
                .timeout = MAX(remaining(c), USEC_PER_SEC),
                .progress_interval = INIT_PROGRESS_INTERVAL,
                .keep_failed = cfg->clone_keep_failed,
                .progress = on_clone_progress,
                .cancel = on_clone_cancel,
                .userdata = c,
                .clock = c->a->clock,
        };
        node_replication_upstream(&c->n, leader->host, leader->port, &ret->source);
}

/* A clone carries the leader's pglease.conf (port, listen_addresses,
 * socket directory): put this member's own back. */
static int reapply_local_settings(struct init_ctx *c) {
        _cleanup_free_ char *err = NULL;
        int r;

        r = node_write_local_settings(&c->n, &err);
        if (r < 0)
                return fail(c, EXIT_FAIL, "%s", err ? err : strerror(-r));
        if (r > 0)
                say(c, LOG_LEVEL_INFO, "wrote this member's settings to %s/%s (port %d, listen_addresses %s)",
                    c->n.cfg->data_dir, BOOTSTRAP_CONF_FILE, (int) c->n.cfg->pg_port, c->n.cfg->listen_addresses);
        return EXIT_OK;
}

static int clone_plan(struct init_ctx *c, const struct clone_options *o) {
        _cleanup_strv_free_ char **lines = NULL;
        int r;

        r = replication_clone_plan(o, &lines);
        if (r < 0)
                return fail(c, EXIT_FAIL, "cannot plan the clone: %s", strerror(-r));
        for (char **l = lines; *l; l++)
                plan(c, "%s", *l);
        plan(c, "write this member's settings to %s/%s", o->datadir, BOOTSTRAP_CONF_FILE);
        return EXIT_OK;
}

/* One attempt: EXIT_OK, an exit code for a permanent failure, or
 * INIT_RETRY. */
static int clone_from(struct init_ctx *c, const struct dcs_member *leader) {
        _cleanup_free_ char *err = NULL;
        struct clone_options o;
        int r;

        clone_options_for(c, leader, &o);
        say(c, LOG_LEVEL_INFO, "cloning from the leader %s (%s:%d) into %s", leader->name, leader->host,
            leader->port, o.datadir);
        if (c->dry_run)
                return clone_plan(c, &o);
        r = replication_clone(&o, &err);
        if (r >= 0) {
                say(c, LOG_LEVEL_INFO, "clone complete: %s is a standby of %s", o.datadir, leader->name);
                return reapply_local_settings(c);
        }
        if (r == -ECANCELED)
                return fail(c, EXIT_FAIL, "the clone was interrupted by a signal");
        if (error_is_permanent(r))
                return fail(c, EXIT_FAIL, "cannot clone from %s: %s", leader->name, err ? err : strerror(-r));
        note(c, LOG_LEVEL_WARNING, "the clone from %s failed: %s", leader->name,
             err ? err : strerror(-r));
        return INIT_RETRY;
}

/* ---- empty data directory ---- */

static const char *holder_name(const struct init_ctx *c) {
        const struct dcs_leader *l = c->n.election.observed;

        return l && !isempty(l->holder) ? l->holder : "?";
}

/* No usable leader. Returns an exit code or INIT_RETRY. */
static int no_leader(struct init_ctx *c, const struct view *v) {
        const struct config *cfg = c->n.cfg;
        _cleanup_free_ char *err = NULL;
        int r, status;

        if (v->lease_missing && cfg->bootstrap == BOOTSTRAP_NEVER) {
                note(c, LOG_LEVEL_INFO, "no lease yet and bootstrap = never: waiting for a leader to clone from");
                return INIT_RETRY;
        }
        if (v->lease_missing && v->cluster_ran) {
                /* The Lease was deleted under a running cluster: its members
                 * re-create it; a bootstrap now would start a second one. */
                note(c, LOG_LEVEL_WARNING, "no lease, but members have published records: waiting for one of "
                     "them to take the lease");
                return INIT_RETRY;
        }
        if (v->lease_missing) {
                if (c->dry_run) {
                        say(c, LOG_LEVEL_INFO, "no lease: this member would try to create it and bootstrap");
                        return init_bootstrap(c);
                }
                status = bootstrap_preflight(c);
                if (status != EXIT_OK)
                        return status;
                r = election_acquire(&c->n.election, NULL, &err);
                if (r == -ESTALE || r == -EBUSY) {
                        say(c, LOG_LEVEL_INFO, "another member created the lease first (holder %s): cloning from it "
                            "once it publishes its record", holder_name(c));
                        return INIT_RETRY;
                }
                if (r < 0) {
                        note(c, LOG_LEVEL_WARNING, "cannot create the lease: %s", err ? err : strerror(-r));
                        return INIT_RETRY;
                }
                say(c, LOG_LEVEL_INFO, "created the lease %s-leader: this member bootstraps the cluster",
                    cfg->cluster_name);
                return init_bootstrap(c);
        }
        if (streq(v->holder, cfg->node_name)) {
                /* The lease names us but we have no data. If no member ever
                 * published anything, our own bootstrap never finished: no
                 * one can have data of this cluster, so start it again.
                 * Otherwise our data is lost: hand the lease on at once so
                 * that a member with data can lead, and clone from it. */
                if (!v->cluster_ran && cfg->bootstrap == BOOTSTRAP_AUTO) {
                        say(c, LOG_LEVEL_INFO, "the lease names this member and no member has published a record: "
                            "resuming the bootstrap");
                        return init_bootstrap(c);
                }
                say(c, LOG_LEVEL_WARNING, "the lease names this member but it has no data: releasing the lease so "
                    "that a member with data can lead");
                if (c->dry_run) {
                        plan(c, "release the lease, then wait for a leader and clone from it");
                        return EXIT_OK;
                }
                r = election_release(&c->n.election, NULL, 0, &err);
                if (r < 0)
                        note(c, LOG_LEVEL_WARNING, "cannot release the lease: %s", err ? err : strerror(-r));
                return INIT_RETRY;
        }
        /* A lease exists: never bootstrap a second cluster. */
        if (isempty(v->holder))
                note(c, LOG_LEVEL_INFO, "the lease is free and no leader has published a record: waiting");
        else
                note(c, LOG_LEVEL_INFO, "waiting for the leader %s to publish its member record", v->holder);
        return INIT_RETRY;
}

static int init_empty(struct init_ctx *c) {
        for (;;) {
                _cleanup_(view_done) struct view v = {};
                bool failed = false;
                int status;

                status = read_view(c, &v);
                if (status != EXIT_OK)
                        return status;
                if (v.leader) {
                        status = clone_from(c, v.leader);
                        failed = true;
                } else
                        status = no_leader(c, &v);
                if (status != INIT_RETRY)
                        return status;
                if (c->dry_run) {
                        plan(c, "wait (every retry_period, up to clone_timeout) for a leader, then clone from it");
                        return EXIT_OK;
                }
                status = init_wait(c, failed);
                if (status != INIT_RETRY)
                        return status;
        }
}

/* ---- existing data directory ---- */

struct sysid_query {
        const struct dcs_member *leader;
        uint64_t sysid;
};

/* IDENTIFY_SYSTEM over a replication connection as the replication role,
 * the connection a standby of the leader makes anyway. */
static int leader_sysid_once(struct init_ctx *c, void *userdata, char **reterr_msg) {
        struct sysid_query *q = userdata;
        _cleanup_(pgconn_closep) PGconn *conn = NULL;
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        _cleanup_free_ char *conninfo = NULL;
        unsigned long long sysid;
        struct upstream up;
        int r;

        node_replication_upstream(&c->n, q->leader->host, q->leader->port, &up);
        r = replication_conninfo(&up, NULL, true, &conninfo);
        if (r < 0)
                return r;
        r = pgconn_connect(conninfo, INIT_APPLICATION_NAME, c->n.cfg->connect_timeout, c->n.cfg->statement_timeout,
                           &conn, reterr_msg);
        if (r < 0)
                return r;
        /* A replication command: simple query protocol only. */
        res = PQexec(conn, "IDENTIFY_SYSTEM");
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
            sscanf(PQgetvalue(res, 0, 0), "%llu", &sysid) != 1)
                return set_error_msg(reterr_msg, "IDENTIFY_SYSTEM on %s:%d failed: %s", q->leader->host,
                                     q->leader->port, PQerrorMessage(conn)), -EIO;
        q->sysid = sysid;
        return 0;
}

struct fork_query {
        const struct dcs_member *leader;
        enum timeline_fork fork;
};

static int timeline_forked_once(struct init_ctx *c, void *userdata, char **reterr_msg) {
        struct fork_query *q = userdata;
        struct upstream up;

        node_replication_upstream(&c->n, q->leader->host, q->leader->port, &up);
        return replication_timeline_forked(c->n.bindir, c->n.cfg->data_dir, &up,
                                           MAX(MIN(remaining(c), INIT_TOOL_TIMEOUT), USEC_PER_SEC), c->a->clock,
                                           &q->fork, reterr_msg);
}

/* rejoin_fallback = clone: the diverged data goes (aside with
 * clone_keep_failed), and the member clones like a new one. */
static int reclone(struct init_ctx *c) {
        const char *datadir = c->n.cfg->data_dir;
        _cleanup_free_ char *aside = NULL, *stamp = NULL;
        int r;

        if (c->n.cfg->clone_keep_failed) {
                stamp = clock_format_microtime(clock_realtime(c->a->clock));
                aside = stamp ? strdup_printf("%s.diverged-%s", datadir, stamp) : NULL;
                if (!aside)
                        return fail(c, EXIT_FAIL, "out of memory");
                if (rename(datadir, aside) < 0)
                        return fail(c, EXIT_FAIL, "cannot move %s aside to %s: %m", datadir, aside);
                say(c, LOG_LEVEL_INFO, "moved the diverged data directory aside to %s", aside);
        } else {
                r = rm_rf(datadir);
                if (r < 0 && r != -ENOENT)
                        return fail(c, EXIT_FAIL, "cannot remove the diverged data directory %s: %s", datadir,
                                    strerror(-r));
                say(c, LOG_LEVEL_INFO, "removed the diverged data directory %s", datadir);
        }
        return init_empty(c);
}

static int rejoin_rewind(struct init_ctx *c, const struct dcs_member *leader, const char *slot) {
        _cleanup_free_ char *err = NULL;
        struct rewind_options o = {
                .bindir = c->n.bindir,
                .datadir = c->n.cfg->data_dir,
                .password_file = c->n.rewind_password_file,
                .slot_name = slot,
                .timeout = MAX(remaining(c), USEC_PER_SEC),
                .clock = c->a->clock,
        };
        int r;

        node_rewind_upstream(&c->n, leader->host, leader->port, &o.source);
        node_replication_upstream(&c->n, leader->host, leader->port, &o.standby);
        say(c, LOG_LEVEL_WARNING, "the timeline of %s forked from the leader %s's: rewinding it with pg_rewind "
            "(safety rule 5)", o.datadir, leader->name);
        if (c->dry_run) {
                plan(c, "pg_rewind --target-pgdata=%s --source-server='host=%s port=%d user=%s' (password from %s)",
                     o.datadir, leader->host, leader->port, o.source.user, o.source.passfile);
                plan(c, "write standby.signal, primary_conninfo (user %s) and primary_slot_name %s", o.standby.user, slot);
                return EXIT_OK;
        }
        r = replication_rewind(&o, &err);
        if (r >= 0) {
                say(c, LOG_LEVEL_INFO, "rewound: %s is a standby of %s", o.datadir, leader->name);
                return reapply_local_settings(c);
        }
        if (r != -ENOTRECOVERABLE)
                return fail(c, EXIT_FAIL, "pg_rewind failed: %s", err ? err : strerror(-r));
        if (c->n.cfg->rejoin_fallback == REJOIN_FALLBACK_NONE)
                return fail(c, EXIT_FAIL, "%s cannot be rewound (%s) and rejoin_fallback = none: leaving it as it is",
                            o.datadir, strempty(err));
        say(c, LOG_LEVEL_WARNING, "%s cannot be rewound (%s): rejoin_fallback = clone: cloning it again", o.datadir,
            strempty(err));
        return reclone(c);
}

static int rejoin_follow(struct init_ctx *c, const struct dcs_member *leader, const char *slot) {
        _cleanup_free_ char *err = NULL;
        struct upstream up;
        int r;

        node_replication_upstream(&c->n, leader->host, leader->port, &up);
        say(c, LOG_LEVEL_INFO, "%s has not diverged from the leader %s: making it its standby", c->n.cfg->data_dir,
            leader->name);
        if (c->dry_run) {
                plan(c, "write standby.signal, primary_conninfo (host %s port %d user %s) and primary_slot_name %s",
                     leader->host, leader->port, up.user, slot);
                return EXIT_OK;
        }
        r = replication_write_standby_config(c->n.cfg->data_dir, &up, slot, &err);
        if (r < 0)
                return fail(c, EXIT_FAIL, "cannot write the standby configuration: %s", err ? err : strerror(-r));
        return EXIT_OK;
}

/* The leader's agent keeps a slot for every member with a record; a member
 * coming back before its own agent has published one would find none and
 * could not stream. Create it, as a clone does (the replication role may).
 * A failure is only a warning: the leader's agent creates it later. */
static void ensure_slot(struct init_ctx *c, const struct dcs_member *leader, const char *slot) {
        _cleanup_(pgconn_closep) PGconn *conn = NULL;
        _cleanup_free_ char *conninfo = NULL, *err = NULL;
        struct upstream up;
        int r;

        if (c->dry_run) {
                plan(c, "create the replication slot %s on the leader unless it exists", slot);
                return;
        }
        node_replication_upstream(&c->n, leader->host, leader->port, &up);
        r = replication_conninfo(&up, c->n.cfg->database, false, &conninfo);
        if (r >= 0)
                r = pgconn_connect(conninfo, INIT_APPLICATION_NAME, c->n.cfg->connect_timeout,
                                   c->n.cfg->statement_timeout, &conn, &err);
        if (r >= 0)
                r = pgconn_exec(conn, "SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS "
                                "(SELECT FROM pg_replication_slots WHERE slot_name = $1)",
                                1, (const char *const[]) { slot }, NULL, &err);
        if (r < 0)
                say(c, LOG_LEVEL_WARNING, "cannot create the slot %s on the leader %s (its agent will): %s", slot,
                    leader->name, err ? err : strerror(-r));
}

static bool shut_down_cleanly(enum pgctl_db_state s) {
        return s == PGCTL_DB_SHUT_DOWN || s == PGCTL_DB_SHUT_DOWN_IN_RECOVERY;
}

static int rejoin(struct init_ctx *c, const struct dcs_member *leader) {
        const char *datadir = c->n.cfg->data_dir;
        _cleanup_free_ char *err = NULL;
        struct sysid_query sq = { .leader = leader };
        struct fork_query fq = { .leader = leader };
        struct pgctl_controldata cd;
        _cleanup_free_ char *slot = NULL;
        int r, status;

        if (replication_slot_name(c->n.cfg->node_name, &slot) < 0)
                return fail(c, EXIT_CONFIG, "node_name %s gives no slot name", c->n.cfg->node_name);
        r = pgctl_controldata(c->n.bindir, datadir, MAX(MIN(remaining(c), INIT_TOOL_TIMEOUT), USEC_PER_SEC), &cd, &err);
        if (r < 0)
                return fail(c, EXIT_FAIL, "cannot read the control file of %s: %s", datadir, err ? err : strerror(-r));
        status = with_retries(c, "read the leader's system identifier", leader_sysid_once, &sq);
        if (status != EXIT_OK)
                return status;
        if (cd.system_identifier != sq.sysid)
                return fail(c, EXIT_FAIL, "%s belongs to another cluster: its system identifier is %" PRIu64 ", the "
                            "leader %s (%s:%d) has system identifier %" PRIu64 "; leaving it untouched (remove it "
                            "to clone this member afresh)", datadir, cd.system_identifier, leader->name,
                            leader->host, leader->port, sq.sysid);
        say(c, LOG_LEVEL_INFO, "%s and the leader %s share the system identifier %" PRIu64, datadir, leader->name,
            sq.sysid);
        if (cd.state == PGCTL_DB_IN_ARCHIVE_RECOVERY) {
                /* A standby that crashed: single-user crash recovery would
                 * write a checkpoint record of its own, WAL the primary does
                 * not have. It recovers as a standby instead; if it received
                 * WAL past the leader's fork, the agent finds it cannot
                 * stream, stops it cleanly and rewinds it. */
                say(c, LOG_LEVEL_INFO, "%s is a standby that was not shut down cleanly: it recovers as a standby "
                    "of %s", datadir, leader->name);
                if (c->dry_run) {
                        plan(c, "write the standby configuration for %s:%d", leader->host, leader->port);
                        return EXIT_OK;
                }
                ensure_slot(c, leader, slot);
                return rejoin_follow(c, leader, slot);
        }
        if (!shut_down_cleanly(cd.state)) {
                say(c, LOG_LEVEL_INFO, "%s was not shut down cleanly (%s): crash recovery in single-user mode first",
                    datadir, pgctl_db_state_to_string(cd.state));
                if (c->dry_run) {
                        plan(c, "postgres --single -D %s (crash recovery), then compare its timeline with the "
                             "leader's: pg_rewind if it forked, else the standby configuration", datadir);
                        return EXIT_OK;
                }
                r = replication_ensure_clean_shutdown(c->n.bindir, datadir, MAX(remaining(c), USEC_PER_SEC),
                                                      c->a->clock, &err);
                if (r < 0)
                        return fail(c, EXIT_FAIL, "crash recovery of %s failed: %s", datadir, err ? err : strerror(-r));
        }
        status = with_retries(c, "compare the timeline with the leader's", timeline_forked_once, &fq);
        if (status != EXIT_OK)
                return status;
        ensure_slot(c, leader, slot);
        if (fq.fork == TIMELINE_FORKED_SAME_NUMBER) {
                /* pg_rewind would find "the same timeline" and change
                 * nothing: only a new clone repairs it. */
                if (c->n.cfg->rejoin_fallback == REJOIN_FALLBACK_NONE)
                        return fail(c, EXIT_FAIL, "the timeline %" PRIu32 " of %s is another branch than the leader %s's "
                                    "timeline of the same number (two promotions chose it), which pg_rewind cannot "
                                    "repair, and rejoin_fallback = none: leaving it as it is",
                                    cd.timeline, datadir, leader->name);
                say(c, LOG_LEVEL_WARNING, "the timeline %" PRIu32 " of %s is another branch than the leader %s's "
                    "timeline of the same number (two promotions chose it), which pg_rewind cannot repair: "
                    "rejoin_fallback = clone: cloning it again", cd.timeline, datadir, leader->name);
                if (c->dry_run) {
                        plan(c, "remove %s (or move it aside) and clone it from %s", datadir, leader->name);
                        return EXIT_OK;
                }
                return reclone(c);
        }
        return fq.fork == TIMELINE_FORKED ? rejoin_rewind(c, leader, slot) : rejoin_follow(c, leader, slot);
}

/* PostgreSQL's max_wal_size default: what recycled segments may take. */
#define PG_MAX_WAL_SIZE ((uint64_t) 1 << 30)

/* The data volume must hold what pg_wal may keep on a busy member
 * (docs/replication.md, "The volume"); a smaller one fills up with WAL
 * and no member can promote. Said once, at init: not an error (the volume
 * may grow, the settings may be right for a quiet cluster). */
static void check_volume_size(struct init_ctx *c) {
        _cleanup_free_ char *dir = strdup(c->n.cfg->data_dir);
        uint64_t need = PG_MAX_WAL_SIZE + c->n.cfg->wal_keep_size, have;
        struct statvfs st;

        if (!dir)
                return;
        /* The data directory, or the nearest parent that exists. */
        while (statvfs(dir, &st) < 0) {
                char *slash = strrchr(dir, '/');

                if (errno != ENOENT || !slash || slash == dir)
                        return;
                *slash = '\0';
        }
        have = (uint64_t) st.f_blocks * st.f_frsize;
        if (have >= need + need / 4)
                return;
        say(c, LOG_LEVEL_WARNING, "the volume of %s holds %" PRIu64 " MB, less than what pg_wal may keep on a busy "
            "member and some room for data: max_wal_size %" PRIu64 " MB + wal_keep_size %" PRIu64 " MB (+25%%); "
            "when it fills up no member can promote: give it more room or lower wal_keep_size",
            dir, have >> 20, PG_MAX_WAL_SIZE >> 20, c->n.cfg->wal_keep_size >> 20);
}

static int init_existing(struct init_ctx *c) {
        const char *datadir = c->n.cfg->data_dir;
        _cleanup_(view_done) struct view v = {};
        int r, status;

        status = read_view(c, &v);
        if (status != EXIT_OK)
                return status;
        if (v.holder && streq(v.holder, c->n.cfg->node_name)) {
                say(c, LOG_LEVEL_INFO, "the lease names this member: leaving %s as it is (the agent continues as "
                    "the primary)", datadir);
                return EXIT_OK;
        }
        if (v.leader)
                return rejoin(c, v.leader);
        /* Safety rule 3: without the lease, Postgres starts only as a standby. */
        say(c, LOG_LEVEL_INFO, "no leader with a member record (lease %s): writing the standby marker; the agent "
            "decides what follows", v.lease_missing ? "missing" : isempty(v.holder) ? "free" : v.holder);
        if (c->dry_run) {
                plan(c, "write %s/%s", datadir, PGCTL_STANDBY_MARKER);
                return EXIT_OK;
        }
        r = pgctl_write_standby_marker(datadir);
        if (r < 0)
                return fail(c, EXIT_FAIL, "cannot write the standby marker in %s: %s", datadir, strerror(-r));
        return EXIT_OK;
}

/* ---- entry point ---- */

static void init_logging(struct agent *a) {
        a->log.format = (enum log_format) a->config.log_format;
        a->log.min_level = (enum log_level) a->config.log_level;
        (void) logger_set_node(&a->log, a->config.node_name);
}

static void init_signals(void) {
        struct sigaction sa = { .sa_handler = on_signal };

        sigemptyset(&sa.sa_mask);
        (void) sigaction(SIGTERM, &sa, NULL);
        (void) sigaction(SIGINT, &sa, NULL);
        (void) signal(SIGPIPE, SIG_IGN);
}

static int init_dispatch(struct init_ctx *c) {
        enum data_state state = DATA_UNKNOWN;
        pid_t pid = 0;
        int r, status;

        if (pgctl_is_running(&c->n.pgctl, &pid) > 0)
                return fail(c, EXIT_FAIL, "PostgreSQL is running on %s (pid %d): init prepares a stopped data "
                            "directory; stop it first", c->n.cfg->data_dir, (int) pid);
        r = data_dir_state(c, &state);
        if (r < 0)
                return fail(c, EXIT_FAIL, "cannot read %s: %s", c->n.cfg->data_dir, strerror(-r));
        switch (state) {
        case DATA_PRESENT:
                return init_existing(c);
        case DATA_UNKNOWN:
                return fail(c, EXIT_FAIL, "%s is not empty but holds no PostgreSQL data directory (no PG_VERSION) "
                            "and no partial clone of ours: refusing to touch it", c->n.cfg->data_dir);
        case DATA_PARTIAL_CLONE:
        case DATA_UNFINISHED_BOOTSTRAP:
                status = discard_leftover(c, state == DATA_PARTIAL_CLONE ? CLONE_MARKER : BOOTSTRAP_MARKER,
                                          state == DATA_PARTIAL_CLONE ? "clone" : "bootstrap");
                if (status != EXIT_OK)
                        return status;
                return init_empty(c);
        case DATA_EMPTY:
        default:
                return init_empty(c);
        }
}

int agent_init_main(struct agent *a, bool dry_run) {
        _cleanup_(init_ctx_done) struct init_ctx c = { .a = a, .dry_run = dry_run };
        _cleanup_free_ char *err = NULL;
        int r;

        init_logging(a);
        init_signals();
        r = node_init(&c.n, &a->config, a->clock, &err);
        if (r < 0)
                return fail(&c, EXIT_CONFIG, "cannot prepare this member: %s", err ? err : strerror(-r));
        c.have_node = true;
        c.deadline = clock_now(a->clock) + a->config.clone_timeout;
        say(&c, LOG_LEVEL_INFO, "%sinit of %s in cluster %s: data directory %s", dry_run ? "dry run: " : "",
            a->config.node_name, a->config.cluster_name, a->config.data_dir);
        check_volume_size(&c);
        return init_dispatch(&c);
}
