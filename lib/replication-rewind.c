/* replication-rewind.c: rejoining a former primary: pg_controldata, a
 * clean shutdown in single-user mode, the timeline fork test against the
 * new primary's history, and pg_rewind. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "pgconn.h"
#include "proc.h"
#include "replication.h"
#include "util.h"

#define CONTROLDATA_TIMEOUT (30 * USEC_PER_SEC)
#define REWIND_DEFAULT_TIMEOUT (30 * USEC_PER_MINUTE)
#define SHUTDOWN_DEFAULT_TIMEOUT (10 * USEC_PER_MINUTE)
#define REWIND_APPLICATION_NAME "pglease-rewind"

void control_data_done(struct control_data *c) {
        if (!c)
                return;
        free(c->state);
        *c = (struct control_data) {};
}

/* The value of "key:   value" in pg_controldata's output, or NULL. */
static char *controldata_value(const char *text, const char *key) {
        size_t n = strlen(key);

        for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
                const char *v, *end;

                if (!strneq(l, key, n) || l[n] != ':')
                        continue;
                v = l + n + 1;
                while (*v == ' ' || *v == '\t')
                        v++;
                end = strchrnul(v, '\n');
                while (end > v && (end[-1] == ' ' || end[-1] == '\r'))
                        end--;
                return strndup(v, (size_t) (end - v));
        }
        return NULL;
}

int replication_parse_controldata(const char *text, struct control_data *ret) {
        _cleanup_free_ char *sysid = NULL, *tli = NULL, *ckpt = NULL, *minrec = NULL,
                            *checksums = NULL, *hints = NULL;
        _cleanup_(control_data_done) struct control_data c = {};
        unsigned long long u;
        int64_t v;

        if (!text)
                return -EINVAL;
        c.state = controldata_value(text, "Database cluster state");
        sysid = controldata_value(text, "Database system identifier");
        tli = controldata_value(text, "Latest checkpoint's TimeLineID");
        ckpt = controldata_value(text, "Latest checkpoint location");
        minrec = controldata_value(text, "Minimum recovery ending location");
        checksums = controldata_value(text, "Data page checksum version");
        hints = controldata_value(text, "wal_log_hints setting");
        if (!c.state || !sysid || !tli || !ckpt || !checksums || !hints)
                return -EBADMSG;
        if (sscanf(sysid, "%llu", &u) != 1)
                return -EBADMSG;
        c.system_identifier = u;
        if (parse_int64(tli, &v) < 0 || v <= 0 || v > UINT32_MAX)
                return -EBADMSG;
        c.timeline = (uint32_t) v;
        if (pg_lsn_parse(ckpt, &c.checkpoint_lsn) < 0)
                return -EBADMSG;
        if (minrec && pg_lsn_parse(minrec, &c.min_recovery_lsn) < 0)
                return -EBADMSG;
        c.data_checksums = !streq(checksums, "0");
        c.wal_log_hints = streq(hints, "on");
        *ret = c;
        c = (struct control_data) {};
        return 0;
}

int replication_read_controldata(const char *bindir, const char *datadir, usec_t timeout,
                                 const struct clock_ops *clock, struct control_data *ret,
                                 char **reterr_msg) {
        _cleanup_free_ char *program = NULL;
        struct proc_result res = {};
        int r;

        if (isempty(bindir) || isempty(datadir) || !ret)
                return -EINVAL;
        program = strdup_printf("%s/pg_controldata", bindir);
        if (!program)
                return -ENOMEM;
        r = proc_run(&(struct proc_options) {
                             .argv = (char *const[]) { program, (char *) "-D", (char *) datadir, NULL },
                             .timeout = timeout ? timeout : CONTROLDATA_TIMEOUT,
                             .clock = clock,
                             .capture_stdout = true,
                     },
                     &res, reterr_msg);
        if (r < 0)
                return r;
        r = replication_parse_controldata(res.stdout_text, ret);
        if (r < 0)
                set_error_msg(reterr_msg, "cannot parse the output of pg_controldata -D %s", datadir);
        proc_result_done(&res);
        return r;
}

static bool state_is_clean(const char *state) {
        return streq(state, "shut down") || streq(state, "shut down in recovery");
}

/* Moves standby.signal / recovery.signal aside (put_back false) or back. */
static void signals_aside(const char *datadir, bool put_back, bool moved[2]) {
        static const char *const names[] = { "standby.signal", "recovery.signal" };

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_free_ char *path = strdup_printf("%s/%s", datadir, names[i]);
                _cleanup_free_ char *aside = strdup_printf("%s/%s.pglease-aside", datadir, names[i]);

                if (!path || !aside)
                        continue;
                if (!put_back)
                        moved[i] = rename(path, aside) == 0;
                else if (moved[i])
                        (void) rename(aside, path);
        }
}

static int run_single_user(const char *bindir, const char *datadir, usec_t timeout,
                           const struct clock_ops *clock, char **reterr_msg) {
        _cleanup_free_ char *program = strdup_printf("%s/postgres", bindir);
        bool moved[2] = {};
        int r;

        if (!program)
                return -ENOMEM;
        signals_aside(datadir, false, moved);
        r = proc_run(&(struct proc_options) {
                             .argv = (char *const[]) {
                                     program, (char *) "--single", (char *) "-D", (char *) datadir,
                                     (char *) "-c", (char *) "archive_mode=on",
                                     (char *) "-c", (char *) "archive_command=false",
                                     (char *) "template1", NULL },
                             .timeout = timeout ? timeout : SHUTDOWN_DEFAULT_TIMEOUT,
                             .clock = clock,
                     },
                     NULL, reterr_msg);
        signals_aside(datadir, true, moved);
        return r;
}

int replication_ensure_clean_shutdown(const char *bindir, const char *datadir, usec_t timeout,
                                      const struct clock_ops *clock, char **reterr_msg) {
        _cleanup_(control_data_done) struct control_data c = {};
        int r;

        r = replication_read_controldata(bindir, datadir, 0, clock, &c, reterr_msg);
        if (r < 0)
                return r;
        if (state_is_clean(c.state))
                return 0;
        r = run_single_user(bindir, datadir, timeout, clock, reterr_msg);
        if (r < 0)
                return r;
        control_data_done(&c);
        r = replication_read_controldata(bindir, datadir, 0, clock, &c, reterr_msg);
        if (r < 0)
                return r;
        if (!state_is_clean(c.state)) {
                set_error_msg(reterr_msg, "%s is still \"%s\" after single-user recovery", datadir, c.state);
                return -EIO;
        }
        return 0;
}

int replication_parse_history(const char *text, struct timeline_entry **ret, size_t *ret_n) {
        _cleanup_free_ struct timeline_entry *h = NULL;
        _cleanup_free_ char *copy = NULL;
        char *save = NULL;
        size_t n = 0;

        if (!text || !ret || !ret_n)
                return -EINVAL;
        copy = strdup(text);
        if (!copy)
                return -ENOMEM;
        for (char *l = strtok_r(copy, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
                char lsn[64];
                unsigned tli;
                struct timeline_entry *nh;

                l = strstrip(l);
                if (*l == '\0' || *l == '#')
                        continue;
                if (sscanf(l, "%u %63s", &tli, lsn) != 2)
                        return -EBADMSG;
                nh = realloc(h, (n + 1) * sizeof(*h));
                if (!nh)
                        return -ENOMEM;
                h = nh;
                h[n].tli = tli;
                if (pg_lsn_parse(lsn, &h[n].switchpoint) < 0)
                        return -EBADMSG;
                n++;
        }
        *ret = TAKE_PTR(h);
        *ret_n = n;
        return 0;
}

enum timeline_fork replication_fork_decide(uint32_t local_tli, uint64_t local_lsn,
                                           const struct timeline_entry *local, size_t n_local, uint32_t remote_tli,
                                           const struct timeline_entry *remote, size_t n_remote) {
        /* Each ancestor of local_tli must have ended where the primary's
         * ended: a timeline number says nothing on its own once two
         * members promoted without seeing each other's history. */
        for (size_t i = 0; i < n_local; i++) {
                bool same = false;

                if (local[i].tli >= local_tli)
                        continue;
                for (size_t j = 0; j < n_remote; j++)
                        if (remote[j].tli == local[i].tli)
                                same = remote[j].switchpoint == local[i].switchpoint;
                if (!same)
                        return local_tli == remote_tli ? TIMELINE_FORKED_SAME_NUMBER : TIMELINE_FORKED;
        }
        if (local_tli == remote_tli)
                return TIMELINE_SAME_HISTORY;
        if (local_tli > remote_tli)
                return TIMELINE_FORKED;
        for (size_t i = 0; i < n_remote; i++)
                if (remote[i].tli == local_tli)
                        /* The new primary left local_tli at switchpoint; a local
                         * record starting there or later was never part of its
                         * history. */
                        return local_lsn >= remote[i].switchpoint ? TIMELINE_FORKED : TIMELINE_SAME_HISTORY;
        return TIMELINE_FORKED;
}

/* datadir's own history of tli (its ancestors), NULL when tli is 1 or the
 * file is not there (a clone of timeline 1, or it was removed by hand). */
static int local_history(const char *datadir, uint32_t tli, struct timeline_entry **ret, size_t *ret_n,
                         char **reterr_msg) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        size_t size;
        int r;

        *ret = NULL;
        *ret_n = 0;
        if (tli <= 1)
                return 0;
        path = strdup_printf("%s/pg_wal/%08" PRIX32 ".history", datadir, tli);
        if (!path)
                return -ENOMEM;
        r = read_full_file(path, &text, &size);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return set_error_msg(reterr_msg, "cannot read %s: %s", path, strerror(-r)), r;
        r = replication_parse_history(text, ret, ret_n);
        if (r < 0)
                return set_error_msg(reterr_msg, "cannot parse %s", path), r;
        return 0;
}

/* IDENTIFY_SYSTEM and TIMELINE_HISTORY are replication commands (simple
 * query protocol only, hence PQexec; the timeline is a number we format). */
static int remote_history(PGconn *conn, uint64_t *ret_sysid, uint32_t *ret_tli, char **ret_history,
                          char **reterr_msg) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        _cleanup_free_ char *cmd = NULL;
        unsigned long long sysid;
        int64_t tli;

        res = PQexec(conn, "IDENTIFY_SYSTEM");
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) < 2 ||
            sscanf(PQgetvalue(res, 0, 0), "%llu", &sysid) != 1 ||
            parse_int64(PQgetvalue(res, 0, 1), &tli) < 0 || tli <= 0 || tli > UINT32_MAX) {
                set_error_msg(reterr_msg, "IDENTIFY_SYSTEM failed: %s", PQerrorMessage(conn));
                return -EIO;
        }
        *ret_sysid = sysid;
        *ret_tli = (uint32_t) tli;
        if (tli == 1) {
                *ret_history = strdup("");
                return *ret_history ? 0 : -ENOMEM;
        }
        res = pgresult_clear(res);
        cmd = strdup_printf("TIMELINE_HISTORY %" PRId64, tli);
        if (!cmd)
                return -ENOMEM;
        res = PQexec(conn, cmd);
        if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 || PQnfields(res) < 2) {
                set_error_msg(reterr_msg, "TIMELINE_HISTORY %" PRId64 " failed: %s", tli, PQerrorMessage(conn));
                return -EIO;
        }
        *ret_history = strndup(PQgetvalue(res, 0, 1), (size_t) PQgetlength(res, 0, 1));
        return *ret_history ? 0 : -ENOMEM;
}

int replication_timeline_forked(const char *bindir, const char *datadir, const struct upstream *source,
                                usec_t timeout, const struct clock_ops *clock, enum timeline_fork *ret_fork,
                                char **reterr_msg) {
        _cleanup_(control_data_done) struct control_data c = {};
        _cleanup_(pgconn_closep) PGconn *conn = NULL;
        _cleanup_free_ struct timeline_entry *history = NULL, *local = NULL;
        _cleanup_free_ char *conninfo = NULL, *history_text = NULL;
        uint64_t sysid, local_lsn;
        uint32_t remote_tli;
        size_t n_history, n_local;
        int r;

        if (!ret_fork)
                return -EINVAL;
        r = replication_read_controldata(bindir, datadir, timeout, clock, &c, reterr_msg);
        if (r < 0)
                return r;
        if (!state_is_clean(c.state)) {
                set_error_msg(reterr_msg, "%s was not shut down cleanly (\"%s\"): its end of WAL is unknown",
                              datadir, c.state);
                return -ESTALE;
        }
        /* A standby's data may reach past its last restartpoint. */
        local_lsn = streq(c.state, "shut down") ? c.checkpoint_lsn : MAX(c.checkpoint_lsn, c.min_recovery_lsn);
        r = local_history(datadir, c.timeline, &local, &n_local, reterr_msg);
        if (r < 0)
                return r;

        r = replication_conninfo(source, NULL, true, &conninfo);
        if (r < 0)
                return r;
        r = pgconn_connect(conninfo, REWIND_APPLICATION_NAME, source->connect_timeout, timeout, &conn, reterr_msg);
        if (r < 0)
                return r;
        r = remote_history(conn, &sysid, &remote_tli, &history_text, reterr_msg);
        if (r < 0)
                return r;
        if (sysid != c.system_identifier) {
                set_error_msg(reterr_msg, "%s (system %" PRIu64 ") and the primary (system %" PRIu64
                              ") are different clusters", datadir, c.system_identifier, sysid);
                return -EXDEV;
        }
        r = replication_parse_history(history_text, &history, &n_history);
        if (r < 0) {
                set_error_msg(reterr_msg, "cannot parse the history of timeline %" PRIu32, remote_tli);
                return r;
        }
        *ret_fork = replication_fork_decide(c.timeline, local_lsn, local, n_local, remote_tli, history, n_history);
        return 0;
}

/* pg_rewind's own words for "this cannot be rewound": what is missing
 * will not come back by trying again. */
static const char *const rewind_impossible[] = {
        "needs to use either data checksums or",
        "could not find previous WAL record",
        "could not find common ancestor",
        "are from different systems",
        "could not read WAL record",
        "clusters are not compatible",
};

static void rewind_on_stderr(const char *line, void *userdata) {
        bool *impossible = userdata;

        for (size_t i = 0; i < ELEMENTSOF(rewind_impossible); i++)
                if (strstr(line, rewind_impossible[i]))
                        *impossible = true;
        /* WAL the target needs is gone: "could not open file ".../pg_wal/..."" */
        if (strstr(line, "could not open file") && strstr(line, "/pg_wal/"))
                *impossible = true;
}

/* pg_rewind reads the source's timeline from its control file, which a
 * freshly promoted server updates only at its next checkpoint: without one
 * pg_rewind would find "no rewind required" and leave the divergence in
 * place (pg_rewind docs; safety rule 5). The rewind role is a member of
 * pg_checkpoint for this. */
static int checkpoint_source(const struct rewind_options *o, char **reterr_msg) {
        _cleanup_(pgconn_closep) PGconn *conn = NULL;
        _cleanup_free_ char *conninfo = NULL, *err = NULL;
        int r;

        r = replication_conninfo(&o->source, "postgres", false, &conninfo);
        if (r < 0)
                return r;
        r = pgconn_connect(conninfo, REWIND_APPLICATION_NAME, o->source.connect_timeout,
                           o->timeout ? o->timeout : REWIND_DEFAULT_TIMEOUT, &conn, &err);
        if (r >= 0)
                r = pgconn_exec(conn, "CHECKPOINT", 0, NULL, NULL, &err);
        if (r < 0)
                set_error_msg(reterr_msg, "cannot checkpoint the rewind source %s:%d as %s: %s",
                              o->source.host, o->source.port, o->source.user, strempty(err));
        return r;
}

static int run_pg_rewind(const struct rewind_options *o, bool *impossible, char **reterr_msg) {
        _cleanup_free_ char *program = NULL, *target = NULL, *source = NULL, *conninfo = NULL,
                            *passfile_env = NULL;
        struct upstream u = o->source;
        int r;

        u.application_name = REWIND_APPLICATION_NAME;
        r = replication_conninfo(&u, "postgres", false, &conninfo);
        if (r < 0)
                return r;
        program = strdup_printf("%s/pg_rewind", o->bindir);
        target = strdup_printf("--target-pgdata=%s", o->datadir);
        source = strdup_printf("--source-server=%s", conninfo);
        passfile_env = strdup_printf("PGPASSFILE=%s", o->source.passfile);
        if (!program || !target || !source || !passfile_env)
                return -ENOMEM;
        return proc_run(&(struct proc_options) {
                                .argv = (char *const[]) { program, target, source, NULL },
                                .env_extra = (char *const[]) { passfile_env, NULL },
                                .timeout = o->timeout ? o->timeout : REWIND_DEFAULT_TIMEOUT,
                                .clock = o->clock,
                                .on_stderr_line = rewind_on_stderr,
                                .userdata = impossible,
                        },
                        NULL, reterr_msg);
}

int replication_rewind(const struct rewind_options *o, char **reterr_msg) {
        _cleanup_(control_data_done) struct control_data c = {};
        bool impossible = false;
        int r;

        if (!o || isempty(o->bindir) || isempty(o->datadir) || isempty(o->source.passfile))
                return -EINVAL;
        r = replication_read_controldata(o->bindir, o->datadir, 0, o->clock, &c, reterr_msg);
        if (r < 0)
                return r;
        if (!c.data_checksums && !c.wal_log_hints) {
                set_error_msg(reterr_msg, "%s has neither data checksums nor wal_log_hints: pg_rewind "
                              "cannot rewind it", o->datadir);
                return -ENOTRECOVERABLE;
        }
        r = replication_ensure_clean_shutdown(o->bindir, o->datadir, o->shutdown_timeout, o->clock, reterr_msg);
        if (r < 0)
                return r;
        if (o->password_file &&
            (r = replication_passfile_set(o->source.passfile, o->source.user, o->password_file, reterr_msg)) < 0)
                return r;
        r = checkpoint_source(o, reterr_msg);
        if (r < 0)
                return r;
        r = run_pg_rewind(o, &impossible, reterr_msg);
        if (r < 0)
                return impossible ? -ENOTRECOVERABLE : r;
        return replication_write_standby_config(o->datadir, &o->standby, o->slot_name, reterr_msg);
}
