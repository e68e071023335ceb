/* replication-clone.c: a new standby from pg_basebackup: pre-flight checks,
 * the member's slot, the child with progress and deadline, the standby
 * configuration, and the cleanup of a clone that failed. */
#include <dirent.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>

#include "pgconn.h"
#include "proc.h"
#include "replication.h"
#include "util.h"

#define CLONE_DEFAULT_TIMEOUT USEC_PER_HOUR
#define CLONE_DEFAULT_PROGRESS_INTERVAL (2 * USEC_PER_SEC)
#define CLONE_QUERY_TIMEOUT (30 * USEC_PER_SEC)
#define CLONE_SLOT_DROP_WAIT (10 * USEC_PER_SEC)
#define CLONE_MAX_BACKOFF (5 * USEC_PER_MINUTE)
#define CLONE_APPLICATION_NAME "pglease-clone"

int replication_parse_progress(const char *line, uint64_t *ret_done_kb, uint64_t *ret_total_kb,
                               int *ret_percent) {
        unsigned long long done, total;
        int percent, consumed = 0;

        if (!line)
                return -EINVAL;
        while (*line == ' ')
                line++;
        if (*line < '0' || *line > '9')
                return -EINVAL;
        if (sscanf(line, "%llu/%llu kB (%d%%)%n", &done, &total, &percent, &consumed) != 3 ||
            consumed == 0 || percent < 0 || percent > 100)
                return -EINVAL;
        *ret_done_kb = done;
        *ret_total_kb = total;
        *ret_percent = percent;
        return 0;
}

/* Everything one clone attempt knows; built once, used by the plan and the run. */
struct clone_ctx {
        const struct clone_options *o;
        const struct clock_ops *clock;
        char *slot;                 /* NULL with no_slot */
        char *marker;               /* <parent>/.<basename>.pglease-clone */
        char *conninfo;             /* pg_basebackup -d: no password */
        char *repl_conninfo;        /* the IDENTIFY_SYSTEM connection */
        char *sql_conninfo;         /* size, settings, slot */
        char *passfile_env;         /* PGPASSFILE=... */
        char **argv;
        usec_t started, last_report;
};

static void clone_ctx_done(struct clone_ctx *c) {
        free(c->slot);
        free(c->marker);
        free(c->conninfo);
        free(c->repl_conninfo);
        free(c->sql_conninfo);
        free(c->passfile_env);
        strv_free(c->argv);
}

static int clone_ctx_argv(struct clone_ctx *c) {
        const struct clone_options *o = c->o;
        char *argv[] = {
                strdup_printf("%s/pg_basebackup", o->bindir),
                strdup_printf("--pgdata=%s", o->datadir),
                strdup("--wal-method=stream"),
                strdup("--checkpoint=fast"),
                strdup("--progress"),
                strdup("--verbose"),
                strdup_printf("--dbname=%s", c->conninfo),
                c->slot ? strdup_printf("--slot=%s", c->slot) : NULL,
        };
        size_t n = ELEMENTSOF(argv) - (c->slot ? 0 : 1);

        c->argv = calloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++)
                if (c->argv && argv[i])
                        c->argv[i] = argv[i];
                else {
                        for (size_t k = i; k < n; k++)
                                free(argv[k]);
                        return -ENOMEM;
                }
        return 0;
}

static int clone_ctx_init(const struct clone_options *o, struct clone_ctx *c) {
        _cleanup_free_ char *copy1 = NULL, *copy2 = NULL;
        struct upstream source;
        int r;

        *c = (struct clone_ctx) { .o = o, .clock = o->clock ? o->clock : &clock_system };
        if (isempty(o->bindir) || isempty(o->node_name) || !path_is_absolute(o->datadir) ||
            isempty(o->source.passfile))
                return -EINVAL;
        if (!o->no_slot && (r = replication_slot_name(o->node_name, &c->slot)) < 0)
                return r;
        copy1 = strdup(o->datadir);
        copy2 = strdup(o->datadir);
        if (!copy1 || !copy2)
                return -ENOMEM;
        c->marker = strdup_printf("%s/.%s.pglease-clone", dirname(copy1), basename(copy2));
        c->passfile_env = strdup_printf("PGPASSFILE=%s", o->source.passfile);
        if (!c->marker || !c->passfile_env)
                return -ENOMEM;

        source = o->source;
        source.application_name = o->node_name;
        r = replication_conninfo(&source, NULL, false, &c->conninfo);
        if (r >= 0)
                r = replication_conninfo(&source, NULL, true, &c->repl_conninfo);
        if (r >= 0)
                r = replication_conninfo(&source, o->source_dbname ? o->source_dbname : "postgres",
                                         false, &c->sql_conninfo);
        if (r >= 0)
                r = clone_ctx_argv(c);
        return r;
}

static int split_lines(char *text, char ***ret) {
        _cleanup_strv_free_ char **l = calloc(1, sizeof(char *));
        char *save = NULL;
        size_t n = 0;

        if (!l)
                return -ENOMEM;
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char **nl = realloc(l, (n + 2) * sizeof(char *));

                if (!nl)
                        return -ENOMEM;
                l = nl;
                l[n] = strdup(line);
                if (!l[n])
                        return -ENOMEM;
                l[++n] = NULL;
        }
        *ret = TAKE_PTR(l);
        return 0;
}

int replication_clone_plan(const struct clone_options *o, char ***ret_lines) {
        _cleanup_(clone_ctx_done) struct clone_ctx c = {};
        char *buf = NULL;
        size_t size = 0;
        FILE *f;
        int r;

        if (!o || !ret_lines)
                return -EINVAL;
        r = clone_ctx_init(o, &c);
        if (r < 0)
                return r;
        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        fprintf(f, "check target %s is missing, empty, or our partial clone (marker %s)\n",
                o->datadir, c.marker);
        fprintf(f, "check free space under %s exceeds the source's databases plus the margin\n", o->datadir);
        if (o->password_file)
                fprintf(f, "write password file %s (0600) for role %s\n", o->source.passfile, o->source.user);
        fprintf(f, "connect %s and run IDENTIFY_SYSTEM\n", c.repl_conninfo);
        fprintf(f, "connect %s and check wal_level, free walsenders (2 needed), free replication slots\n",
                c.sql_conninfo);
        fprintf(f, "write marker %s\n", c.marker);
        if (c.slot)
                fprintf(f, "create physical slot %s on the source unless it exists\n", c.slot);
        fputs("run", f);
        for (size_t i = 0; c.argv[i]; i++)
                fprintf(f, " %s", c.argv[i]);
        fprintf(f, " (PGPASSFILE=%s, timeout %llus)\n", o->source.passfile,
                (unsigned long long) ((o->timeout ? o->timeout : CLONE_DEFAULT_TIMEOUT) / USEC_PER_SEC));
        fprintf(f, "write %s/standby.signal\n", o->datadir);
        fprintf(f, "set primary_conninfo = '%s' in %s/postgresql.auto.conf\n", c.conninfo, o->datadir);
        if (c.slot)
                fprintf(f, "set primary_slot_name = '%s' in %s/postgresql.auto.conf\n", c.slot, o->datadir);
        fprintf(f, "remove marker %s\n", c.marker);
        fprintf(f, "on failure: %s %s%s\n",
                o->keep_failed ? "rename aside" : "remove", o->datadir,
                c.slot ? ", drop the slot on the source" : "");
        fclose(f);
        if (!buf)
                return -ENOMEM;
        r = split_lines(buf, ret_lines);
        free(buf);
        return r;
}

static int dir_is_empty(const char *path, bool *ret_exists, bool *ret_empty) {
        struct dirent *de;
        bool empty = true;
        DIR *d;

        d = opendir(path);
        if (!d) {
                if (errno != ENOENT)
                        return -errno;
                *ret_exists = false;
                *ret_empty = true;
                return 0;
        }
        while (empty && (de = readdir(d)))
                empty = streq(de->d_name, ".") || streq(de->d_name, "..");
        closedir(d);
        *ret_exists = true;
        *ret_empty = empty;
        return 0;
}

/* A non-empty target is overwritten only when our marker says it is our
 * own partial clone: anything else may be somebody's data. */
static int clone_check_target(struct clone_ctx *c, char **reterr_msg) {
        bool exists = false, empty = false;
        int r;

        r = dir_is_empty(c->o->datadir, &exists, &empty);
        if (r < 0) {
                set_error_msg(reterr_msg, "cannot read target %s: %s", c->o->datadir, strerror(-r));
                return r;
        }
        if (empty)
                return 0;
        if (access(c->marker, F_OK) < 0) {
                set_error_msg(reterr_msg, "target %s is not empty and not a partial clone of ours "
                              "(no %s): refusing to overwrite it", c->o->datadir, c->marker);
                return -EEXIST;
        }
        r = rm_rf(c->o->datadir);
        if (r < 0)
                set_error_msg(reterr_msg, "cannot remove the partial clone in %s: %s",
                              c->o->datadir, strerror(-r));
        return r;
}

static int clone_check_disk(struct clone_ctx *c, uint64_t source_bytes, char **reterr_msg) {
        _cleanup_free_ char *copy = strdup(c->o->datadir);
        uint64_t free_bytes, margin;
        struct statvfs sv;
        const char *where;

        if (!copy)
                return -ENOMEM;
        where = access(c->o->datadir, F_OK) == 0 ? c->o->datadir : dirname(copy);
        if (statvfs(where, &sv) < 0) {
                int r = -errno;

                set_error_msg(reterr_msg, "cannot stat the file system of %s: %s", where, strerror(-r));
                return r;
        }
        free_bytes = (uint64_t) sv.f_bavail * sv.f_frsize;
        margin = c->o->disk_margin ? c->o->disk_margin : 64ULL * 1024 * 1024 + source_bytes / 10;
        if (free_bytes < source_bytes + margin) {
                set_error_msg(reterr_msg, "not enough space under %s: %" PRIu64 " MB free, the source holds "
                              "%" PRIu64 " MB and the margin is %" PRIu64 " MB", where,
                              free_bytes >> 20, source_bytes >> 20, margin >> 20);
                return -ENOSPC;
        }
        return 0;
}

/* IDENTIFY_SYSTEM is a replication command: walsenders speak only the
 * simple query protocol, so it goes through PQexec (no parameters). */
static int clone_identify(struct clone_ctx *c, char **reterr_msg) {
        _cleanup_(pgconn_closep) PGconn *conn = NULL;
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        _cleanup_free_ char *err = NULL;
        int r;

        r = pgconn_connect(c->repl_conninfo, c->o->node_name, c->o->source.connect_timeout,
                           CLONE_QUERY_TIMEOUT, &conn, &err);
        if (r < 0) {
                set_error_msg(reterr_msg, "source %s:%d is not reachable for replication as %s: %s",
                              c->o->source.host, c->o->source.port, c->o->source.user, strempty(err));
                return r;
        }
        res = PQexec(conn, "IDENTIFY_SYSTEM");
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                set_error_msg(reterr_msg, "IDENTIFY_SYSTEM failed on the source: %s", PQerrorMessage(conn));
                return -EIO;
        }
        return 0;
}

struct source_facts {
        char wal_level[16];
        int64_t free_walsenders, free_slots, source_bytes;
        bool slot_exists;
};

static int clone_query_source(struct clone_ctx *c, PGconn *conn, struct source_facts *ret,
                              char **reterr_msg) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        struct source_facts f = {};
        int r;

        r = pgconn_exec(conn,
                        "SELECT current_setting('wal_level'), "
                        "current_setting('max_wal_senders')::int - "
                        "  (SELECT count(*) FROM pg_catalog.pg_stat_replication)::int, "
                        "current_setting('max_replication_slots')::int - "
                        "  (SELECT count(*) FROM pg_catalog.pg_replication_slots)::int, "
                        "EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1), "
                        "(SELECT sum(pg_catalog.pg_database_size(oid)) FROM pg_catalog.pg_database "
                        "  WHERE datallowconn)::bigint",
                        1, (const char *const[]) { c->slot }, &res, reterr_msg);
        if (r < 0)
                return r;
        snprintf(f.wal_level, sizeof(f.wal_level), "%s", PQgetvalue(res, 0, 0));
        if (parse_int64(PQgetvalue(res, 0, 1), &f.free_walsenders) < 0 ||
            parse_int64(PQgetvalue(res, 0, 2), &f.free_slots) < 0 ||
            parse_int64(PQgetvalue(res, 0, 4), &f.source_bytes) < 0)
                return -EBADMSG;
        f.slot_exists = streq(PQgetvalue(res, 0, 3), "t");
        *ret = f;
        return 0;
}

static int clone_check_source(struct clone_ctx *c, PGconn *conn, char **reterr_msg) {
        struct source_facts f;
        int r;

        r = clone_identify(c, reterr_msg);
        if (r < 0)
                return r;
        r = clone_query_source(c, conn, &f, reterr_msg);
        if (r < 0)
                return r;
        if (streq(f.wal_level, "minimal")) {
                set_error_msg(reterr_msg, "the source runs with wal_level = minimal: no standby can follow it");
                return -EMEDIUMTYPE;
        }
        /* -X stream takes two walsenders: the base backup and the WAL stream. */
        if (f.free_walsenders < 2) {
                set_error_msg(reterr_msg, "the source has %lld free walsenders, pg_basebackup needs 2 "
                              "(raise max_wal_senders)", (long long) f.free_walsenders);
                return -EBUSY;
        }
        if (c->slot && !f.slot_exists && f.free_slots < 1) {
                set_error_msg(reterr_msg, "the source has no free replication slot (max_replication_slots)");
                return -EBUSY;
        }
        return clone_check_disk(c, (uint64_t) MAX(f.source_bytes, 0), reterr_msg);
}

static int clone_connect_sql(struct clone_ctx *c, PGconn **ret, char **reterr_msg) {
        _cleanup_free_ char *err = NULL;
        int r;

        r = pgconn_connect(c->sql_conninfo, CLONE_APPLICATION_NAME, c->o->source.connect_timeout,
                           CLONE_QUERY_TIMEOUT, ret, &err);
        if (r < 0)
                set_error_msg(reterr_msg, "cannot connect to the source %s:%d as %s: %s",
                              c->o->source.host, c->o->source.port, c->o->source.user, strempty(err));
        return r;
}

static int clone_create_slot(PGconn *conn, const char *slot, char **reterr_msg) {
        return pgconn_exec(conn,
                           "SELECT pg_catalog.pg_create_physical_replication_slot($1, true) "
                           "WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots "
                           "WHERE slot_name = $1)",
                           1, (const char *const[]) { slot }, NULL, reterr_msg);
}

/* The slot of a failed clone holds WAL back on the primary: drop it. The
 * killed pg_basebackup's walsender may still hold it for a moment; it runs
 * as our own role, so we may end it. */
static void clone_drop_slot(struct clone_ctx *c) {
        _cleanup_(pgconn_closep) PGconn *conn = NULL;
        usec_t deadline = clock_now(c->clock) + CLONE_SLOT_DROP_WAIT;

        if (!c->slot || clone_connect_sql(c, &conn, NULL) < 0)
                return;
        for (;;) {
                _cleanup_(pgresult_clearp) PGresult *res = NULL;

                (void) pgconn_exec(conn,
                                   "SELECT pg_catalog.pg_terminate_backend(active_pid) "
                                   "FROM pg_catalog.pg_replication_slots WHERE slot_name = $1 AND active",
                                   1, (const char *const[]) { c->slot }, NULL, NULL);
                (void) pgconn_exec(conn,
                                   "SELECT pg_catalog.pg_drop_replication_slot(slot_name) "
                                   "FROM pg_catalog.pg_replication_slots WHERE slot_name = $1 AND NOT active",
                                   1, (const char *const[]) { c->slot }, NULL, NULL);
                if (pgconn_exec(conn, "SELECT 1 FROM pg_catalog.pg_replication_slots WHERE slot_name = $1",
                                1, (const char *const[]) { c->slot }, &res, NULL) < 0 ||
                    PQntuples(res) == 0 || clock_now(c->clock) >= deadline)
                        return;
                proc_pause(200 * USEC_PER_MSEC);
        }
}

static void clone_discard_target(struct clone_ctx *c) {
        _cleanup_free_ char *aside = NULL;
        time_t t = (time_t) (clock_realtime(c->clock) / USEC_PER_SEC);
        struct tm tm;
        char stamp[32];

        if (c->o->keep_failed && gmtime_r(&t, &tm) && strftime(stamp, sizeof(stamp), "%Y%m%dT%H%M%SZ", &tm) > 0) {
                aside = strdup_printf("%s.failed-%s", c->o->datadir, stamp);
                if (aside && rename(c->o->datadir, aside) == 0)
                        return;
        }
        (void) rm_rf(c->o->datadir);
}

static void clone_on_stderr(const char *line, void *userdata) {
        struct clone_ctx *c = userdata;
        struct clone_progress p = {};
        usec_t now, interval;

        if (!c->o->progress ||
            replication_parse_progress(line, &p.done_kb, &p.total_kb, &p.percent) < 0)
                return;
        now = clock_now(c->clock);
        interval = c->o->progress_interval ? c->o->progress_interval : CLONE_DEFAULT_PROGRESS_INTERVAL;
        if (c->last_report != 0 && now - c->last_report < interval && p.percent < 100)
                return;
        c->last_report = now;
        p.elapsed = now - c->started;
        if (p.elapsed > 0)
                p.mb_per_sec = ((double) p.done_kb / 1024.0) / ((double) p.elapsed / USEC_PER_SEC);
        c->o->progress(&p, c->o->userdata);
}

static bool clone_cancel(void *userdata) {
        struct clone_ctx *c = userdata;

        return c->o->cancel && c->o->cancel(c->o->userdata);
}

static void clone_started(pid_t pid, void *userdata) {
        struct clone_ctx *c = userdata;

        if (c->o->on_started)
                c->o->on_started(pid, c->o->userdata);
}

static int clone_run_basebackup(struct clone_ctx *c, char **reterr_msg) {
        char *env[] = { c->passfile_env, NULL };

        c->started = clock_now(c->clock);
        return proc_run(&(struct proc_options) {
                                .argv = c->argv,
                                .env_extra = env,
                                .timeout = c->o->timeout ? c->o->timeout : CLONE_DEFAULT_TIMEOUT,
                                .clock = c->clock,
                                .tail_lines = 6,
                                .on_stderr_line = clone_on_stderr,
                                .cancel = clone_cancel,
                                .on_started = clone_started,
                                .userdata = c,
                        },
                        NULL, reterr_msg);
}

/* Everything after the pre-flight: marker, slot, pg_basebackup, standby
 * configuration. The caller cleans up on failure. */
static int clone_execute(struct clone_ctx *c, PGconn *conn, char **reterr_msg) {
        _cleanup_free_ char *marker_text = NULL;
        int r;

        marker_text = strdup_printf("node=%s\nslot=%s\n", c->o->node_name, strempty(c->slot));
        if (!marker_text)
                return -ENOMEM;
        r = write_file_atomic(c->marker, marker_text, 0600);
        if (r < 0) {
                set_error_msg(reterr_msg, "cannot write the clone marker %s: %s", c->marker, strerror(-r));
                return r;
        }
        if (c->slot && (r = clone_create_slot(conn, c->slot, reterr_msg)) < 0)
                return r;
        r = clone_run_basebackup(c, reterr_msg);
        if (r < 0)
                return r;
        r = replication_write_standby_config(c->o->datadir, &(struct upstream) {
                                                     .host = c->o->source.host,
                                                     .port = c->o->source.port,
                                                     .user = c->o->source.user,
                                                     .passfile = c->o->source.passfile,
                                                     .application_name = c->o->node_name,
                                                     .connect_timeout = c->o->source.connect_timeout,
                                             },
                                             c->slot, reterr_msg);
        if (r < 0)
                return r;
        if (unlink(c->marker) < 0) {
                r = -errno;
                set_error_msg(reterr_msg, "cannot remove the clone marker %s: %s", c->marker, strerror(-r));
                return r;
        }
        return 0;
}

int replication_clone(const struct clone_options *o, char **reterr_msg) {
        _cleanup_(clone_ctx_done) struct clone_ctx c = {};
        _cleanup_(pgconn_closep) PGconn *conn = NULL;
        int r;

        if (!o)
                return -EINVAL;
        r = clone_ctx_init(o, &c);
        if (r < 0) {
                set_error_msg(reterr_msg, "invalid clone options");
                return r;
        }
        r = clone_check_target(&c, reterr_msg);
        if (r < 0)
                return r;
        if (o->password_file &&
            (r = replication_passfile_set(o->source.passfile, o->source.user, o->password_file, reterr_msg)) < 0)
                return r;
        r = clone_connect_sql(&c, &conn, reterr_msg);
        if (r < 0)
                return r;
        r = clone_check_source(&c, conn, reterr_msg);
        if (r < 0)
                return r;

        r = clone_execute(&c, conn, reterr_msg);
        if (r < 0) {
                conn = pgconn_close(conn);
                clone_discard_target(&c);
                clone_drop_slot(&c);
                (void) unlink(c.marker);
        }
        return r;
}

static bool clone_error_is_final(int r) {
        return r == -EEXIST || r == -ENOSPC || r == -EINVAL || r == -EMEDIUMTYPE ||
               r == -EACCES || r == -ECANCELED || r == -ENOMEM;
}

int replication_clone_with_retry(const struct clone_options *o, unsigned attempts, usec_t backoff,
                                 char **reterr_msg) {
        usec_t wait = backoff;
        int r = -EINVAL;

        for (unsigned i = 0; i < MAX(attempts, 1U); i++) {
                if (i > 0) {
                        proc_pause(wait);
                        wait = MIN(wait * 2, CLONE_MAX_BACKOFF);
                }
                r = replication_clone(o, reterr_msg);
                if (r >= 0 || clone_error_is_final(r))
                        return r;
        }
        return r;
}
