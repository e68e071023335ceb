/* replication.c: slot names, passfiles, the standby configuration, follow
 * (primary_conninfo by ALTER SYSTEM + reload) and the per-member slots. */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "pgconn.h"
#include "proc.h"
#include "replication.h"
#include "util.h"

#define DEFAULT_CONNECT_TIMEOUT (5 * USEC_PER_SEC)

int replication_slot_name(const char *member, char **ret) {
        const size_t prefix_len = strlen(REPLICATION_SLOT_PREFIX);
        size_t n;
        char *s;

        if (isempty(member))
                return -EINVAL;
        n = strlen(member);
        s = malloc(prefix_len + n + 1);
        if (!s)
                return -ENOMEM;
        memcpy(s, REPLICATION_SLOT_PREFIX, prefix_len);
        for (size_t i = 0; i < n; i++) {
                char c = member[i];

                if (c >= 'A' && c <= 'Z')
                        c = (char) (c - 'A' + 'a');
                else if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
                        c = '_';
                s[prefix_len + i] = c;
        }
        s[prefix_len + n] = '\0';

        if (prefix_len + n > REPLICATION_SLOT_NAME_MAX) {
                /* FNV-1a of the original name keeps cut names apart. */
                uint32_t h = 2166136261u;

                for (size_t i = 0; i < n; i++)
                        h = (h ^ (unsigned char) member[i]) * 16777619u;
                snprintf(s + REPLICATION_SLOT_NAME_MAX - 9, 10, "_%08x", h);
        }
        *ret = s;
        return 0;
}

static char *passfile_escape(const char *s) {
        char *out = malloc(strlen(s) * 2 + 1), *p = out;

        if (!out)
                return NULL;
        for (; *s; s++) {
                if (*s == ':' || *s == '\\')
                        *p++ = '\\';
                *p++ = *s;
        }
        *p = '\0';
        return out;
}

/* Is this passfile line the wildcard entry of user? */
static bool passfile_line_is_user(const char *line, const char *escaped_user) {
        const char *prefix = "*:*:*:";
        size_t n = strlen(escaped_user);

        return strneq(line, prefix, strlen(prefix)) &&
               strneq(line + strlen(prefix), escaped_user, n) &&
               line[strlen(prefix) + n] == ':';
}

int replication_passfile_set(const char *passfile, const char *user, const char *password_file,
                             char **reterr_msg) {
        _cleanup_free_ char *password = NULL, *old = NULL, *user_esc = NULL, *password_esc = NULL;
        char *buf = NULL, *save = NULL;
        size_t size = 0;
        FILE *f;
        int r;

        if (isempty(passfile) || isempty(user) || isempty(password_file))
                return -EINVAL;
        r = read_one_line_file(password_file, &password);
        if (r < 0) {
                set_error_msg(reterr_msg, "cannot read the password file of %s: %s", user, strerror(-r));
                return r;
        }
        r = read_full_file(passfile, &old, NULL);
        if (r < 0 && r != -ENOENT)
                return r;
        user_esc = passfile_escape(user);
        password_esc = passfile_escape(password);
        explicit_bzero(password, strlen(password));
        f = open_memstream(&buf, &size);
        if (!user_esc || !password_esc || !f) {
                if (f)
                        fclose(f);
                free(buf);
                return -ENOMEM;
        }
        for (char *l = old ? strtok_r(old, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save))
                if (!passfile_line_is_user(l, user_esc))
                        fprintf(f, "%s\n", l);
        fprintf(f, "*:*:*:%s:%s\n", user_esc, password_esc);
        explicit_bzero(password_esc, strlen(password_esc));
        fclose(f);
        r = buf ? write_file_atomic(passfile, buf, 0600) : -ENOMEM;
        if (buf)
                explicit_bzero(buf, size);
        free(buf);
        if (r < 0)
                set_error_msg(reterr_msg, "cannot write the password file %s: %s", passfile, strerror(-r));
        return r;
}

int replication_conninfo(const struct upstream *u, const char *dbname, bool replication, char **ret) {
        _cleanup_free_ char *port = NULL, *timeout = NULL;
        usec_t t;
        char *s;

        if (!u || isempty(u->host) || isempty(u->user))
                return -EINVAL;
        t = u->connect_timeout ? u->connect_timeout : DEFAULT_CONNECT_TIMEOUT;
        port = strdup_printf("%d", u->port ? u->port : 5432);
        timeout = strdup_printf("%llu", (unsigned long long) MAX((t + USEC_PER_SEC - 1) / USEC_PER_SEC, 1ULL));
        if (!port || !timeout)
                return -ENOMEM;
        s = pgconn_build_conninfo((const char *const[]) {
                "host", u->host,
                "port", port,
                "user", u->user,
                "dbname", dbname,
                "replication", replication ? "true" : NULL,
                "passfile", u->passfile,
                "application_name", u->application_name,
                "connect_timeout", timeout,
                NULL,
        });
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* A postgresql.conf string literal: ' doubled, \ doubled. */
static char *conf_quote(const char *s) {
        char *out = malloc(strlen(s) * 2 + 3), *p = out;

        if (!out)
                return NULL;
        *p++ = '\'';
        for (; *s; s++) {
                if (*s == '\'' || *s == '\\')
                        *p++ = *s;
                *p++ = *s;
        }
        *p++ = '\'';
        *p = '\0';
        return out;
}

static bool conf_line_sets(const char *line, const char *key) {
        size_t n = strlen(key);

        while (*line == ' ' || *line == '\t')
                line++;
        return strneq(line, key, n) && (line[n] == ' ' || line[n] == '\t' || line[n] == '=');
}

int replication_write_standby_config(const char *datadir, const struct upstream *u,
                                     const char *slot_name, char **reterr_msg) {
        _cleanup_free_ char *auto_path = NULL, *signal_path = NULL, *old = NULL, *conninfo = NULL,
                            *conninfo_q = NULL, *slot_q = NULL;
        char *buf = NULL, *save = NULL;
        size_t size = 0;
        FILE *f;
        int r;

        if (isempty(datadir))
                return -EINVAL;
        r = replication_conninfo(u, NULL, false, &conninfo);
        if (r < 0)
                return r;
        auto_path = strdup_printf("%s/postgresql.auto.conf", datadir);
        signal_path = strdup_printf("%s/standby.signal", datadir);
        conninfo_q = conf_quote(conninfo);
        slot_q = slot_name ? conf_quote(slot_name) : NULL;
        if (!auto_path || !signal_path || !conninfo_q || (slot_name && !slot_q))
                return -ENOMEM;
        r = read_full_file(auto_path, &old, NULL);
        if (r < 0 && r != -ENOENT)
                goto fail;

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        if (!old)
                fputs("# Do not edit this file manually!\n"
                      "# It will be overwritten by the ALTER SYSTEM command.\n", f);
        for (char *l = old ? strtok_r(old, "\n", &save) : NULL; l; l = strtok_r(NULL, "\n", &save))
                if (!conf_line_sets(l, "primary_conninfo") && !conf_line_sets(l, "primary_slot_name"))
                        fprintf(f, "%s\n", l);
        fprintf(f, "primary_conninfo = %s\n", conninfo_q);
        if (slot_q)
                fprintf(f, "primary_slot_name = %s\n", slot_q);
        fclose(f);
        if (!buf)
                return -ENOMEM;
        r = write_file_atomic(auto_path, buf, 0600);
        free(buf);
        if (r >= 0)
                r = write_file_atomic(signal_path, "", 0600);
        if (r >= 0)
                return 0;
fail:
        set_error_msg(reterr_msg, "cannot write the standby configuration in %s: %s", datadir, strerror(-r));
        return r;
}

/* ALTER SYSTEM takes no parameters: the value goes through
 * PQescapeLiteral. It holds no password (that is in the passfile). */
static int alter_system(PGconn *c, const char *name, const char *value, char **reterr_msg) {
        _cleanup_free_ char *sql = NULL;
        char *literal = NULL;

        if (value) {
                literal = PQescapeLiteral(c, value, strlen(value));
                if (!literal)
                        return -ENOMEM;
                sql = strdup_printf("ALTER SYSTEM SET %s = %s", name, literal);
                PQfreemem(literal);
        } else
                sql = strdup_printf("ALTER SYSTEM RESET %s", name);
        if (!sql)
                return -ENOMEM;
        return pgconn_exec(c, sql, 0, NULL, NULL, reterr_msg);
}

int replication_follow(PGconn *local, const struct upstream *u, const char *slot_name,
                       char **reterr_msg) {
        _cleanup_free_ char *conninfo = NULL;
        int r;

        if (!local)
                return -EINVAL;
        r = replication_conninfo(u, NULL, false, &conninfo);
        if (r < 0)
                return r;
        r = alter_system(local, "primary_conninfo", conninfo, reterr_msg);
        if (r >= 0)
                r = alter_system(local, "primary_slot_name", slot_name, reterr_msg);
        if (r >= 0)
                r = pgconn_exec(local, "SELECT pg_catalog.pg_reload_conf()", 0, NULL, NULL, reterr_msg);
        return r;
}

int replication_follow_check(PGconn *local, const char *host, int port, uint32_t min_timeline,
                             char **reterr_msg) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        const char *status, *sender_host;
        int64_t sender_port = 0, tli = 0;
        int r;

        if (!local || isempty(host))
                return -EINVAL;
        r = pgconn_exec(local,
                        "SELECT status, sender_host, sender_port, received_tli "
                        "FROM pg_catalog.pg_stat_wal_receiver",
                        0, NULL, &res, reterr_msg);
        if (r < 0)
                return r;
        if (PQntuples(res) == 0) {
                set_error_msg(reterr_msg, "no WAL receiver running");
                return -EAGAIN;
        }
        status = PQgetvalue(res, 0, 0);
        sender_host = PQgetvalue(res, 0, 1);
        (void) parse_int64(PQgetvalue(res, 0, 2), &sender_port);
        (void) parse_int64(PQgetvalue(res, 0, 3), &tli);
        if (!streq(status, "streaming") || !streq(sender_host, host) ||
            sender_port != (port ? port : 5432) || (min_timeline > 0 && tli < (int64_t) min_timeline)) {
                set_error_msg(reterr_msg, "WAL receiver %s from %s:%lld on timeline %lld", status,
                              sender_host, (long long) sender_port, (long long) tli);
                return -EAGAIN;
        }
        return 0;
}

int replication_follow_wait(PGconn *local, const char *host, int port, uint32_t min_timeline,
                            usec_t timeout, const struct clock_ops *clock, char **reterr_msg) {
        const struct clock_ops *c = clock ? clock : &clock_system;
        usec_t deadline = clock_now(c) + timeout;
        _cleanup_free_ char *last = NULL;

        for (;;) {
                int r;

                free(last);
                last = NULL;
                r = replication_follow_check(local, host, port, min_timeline, &last);
                if (r != -EAGAIN)
                        return r < 0 ? (set_error_msg(reterr_msg, "%s", strempty(last)), r) : 0;
                if (clock_now(c) >= deadline) {
                        set_error_msg(reterr_msg, "not streaming from %s:%d within the deadline: %s",
                                      host, port, strempty(last));
                        return -ETIMEDOUT;
                }
                proc_pause(200 * USEC_PER_MSEC);
        }
}

void slot_state_done(struct slot_state *s) {
        if (!s)
                return;
        for (size_t i = 0; i < s->n_slots; i++)
                free(s->slots[i].name);
        free(s->slots);
        *s = (struct slot_state) {};
}

static struct slot_record *slot_state_find(struct slot_state *s, const char *name) {
        for (size_t i = 0; i < s->n_slots; i++)
                if (streq(s->slots[i].name, name))
                        return &s->slots[i];
        return NULL;
}

static int slot_state_touch(struct slot_state *s, const char *name, usec_t now, bool seen) {
        struct slot_record *rec = slot_state_find(s, name), *n;

        if (rec) {
                if (seen)
                        rec->last_seen = now;
                return 0;
        }
        n = realloc(s->slots, (s->n_slots + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        s->slots = n;
        s->slots[s->n_slots].name = strdup(name);
        if (!s->slots[s->n_slots].name)
                return -ENOMEM;
        /* A slot first met unwanted starts its retention now. */
        s->slots[s->n_slots++].last_seen = now;
        return 0;
}

static void slot_state_forget(struct slot_state *s, const char *name) {
        struct slot_record *rec = slot_state_find(s, name);

        if (!rec)
                return;
        free(rec->name);
        *rec = s->slots[--s->n_slots];
}

static int strv_push(char ***l, size_t *n, const char *s) {
        char **nl = realloc(*l, (*n + 2) * sizeof(char *));

        if (!nl)
                return -ENOMEM;
        *l = nl;
        nl[*n] = strdup(s);
        if (!nl[*n])
                return -ENOMEM;
        nl[++*n] = NULL;
        return 0;
}

static bool strv_contains(char *const *l, const char *s) {
        for (size_t i = 0; l && l[i]; i++)
                if (streq(l[i], s))
                        return true;
        return false;
}

static int wanted_slot_names(const char *const *member_names, char ***ret) {
        _cleanup_strv_free_ char **wanted = calloc(1, sizeof(char *));
        size_t n = 0;
        int r;

        if (!wanted)
                return -ENOMEM;
        for (size_t i = 0; member_names && member_names[i]; i++) {
                _cleanup_free_ char *slot = NULL;

                r = replication_slot_name(member_names[i], &slot);
                if (r == -EINVAL)
                        continue;
                if (r < 0)
                        return r;
                if (!strv_contains(wanted, slot) && (r = strv_push(&wanted, &n, slot)) < 0)
                        return r;
        }
        *ret = TAKE_PTR(wanted);
        return 0;
}

int replication_slots_plan(const struct slot_info *existing, size_t n_existing,
                           const char *const *member_names, usec_t now, struct slot_state *state,
                           usec_t retention, char ***ret_create, char ***ret_drop) {
        _cleanup_strv_free_ char **wanted = NULL, **create = NULL, **drop = NULL;
        size_t n_create = 0, n_drop = 0;
        int r;

        if (!state || (n_existing > 0 && !existing))
                return -EINVAL;
        r = wanted_slot_names(member_names, &wanted);
        if (r < 0)
                return r;
        create = calloc(1, sizeof(char *));
        drop = calloc(1, sizeof(char *));
        if (!create || !drop)
                return -ENOMEM;

        for (size_t i = 0; wanted[i]; i++) {
                bool found = false;

                for (size_t k = 0; k < n_existing; k++)
                        found = found || streq(existing[k].name, wanted[i]);
                if (!found && (r = strv_push(&create, &n_create, wanted[i])) < 0)
                        return r;
                if ((r = slot_state_touch(state, wanted[i], now, true)) < 0)
                        return r;
        }
        for (size_t k = 0; k < n_existing; k++) {
                const char *name = existing[k].name;
                struct slot_record *rec;

                /* Slots someone else made are never ours to drop. */
                if (!strneq(name, REPLICATION_SLOT_PREFIX, strlen(REPLICATION_SLOT_PREFIX)) ||
                    strv_contains(wanted, name))
                        continue;
                if ((r = slot_state_touch(state, name, now, existing[k].active)) < 0)
                        return r;
                rec = slot_state_find(state, name);
                if (!existing[k].active && now >= rec->last_seen && now - rec->last_seen >= retention &&
                    (r = strv_push(&drop, &n_drop, name)) < 0)
                        return r;
        }
        /* Forget slots that are gone and unwanted. */
        for (size_t i = state->n_slots; i-- > 0;) {
                bool exists = false;

                for (size_t k = 0; k < n_existing; k++)
                        exists = exists || streq(existing[k].name, state->slots[i].name);
                if (!exists && !strv_contains(wanted, state->slots[i].name))
                        slot_state_forget(state, state->slots[i].name);
        }
        *ret_create = TAKE_PTR(create);
        *ret_drop = TAKE_PTR(drop);
        return 0;
}

static int slots_read(PGconn *c, PGresult **ret_res, struct slot_info **ret, size_t *ret_n,
                      char **reterr_msg) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        struct slot_info *slots;
        int r, n;

        r = pgconn_exec(c, "SELECT slot_name, active FROM pg_catalog.pg_replication_slots "
                        "WHERE slot_type = 'physical'", 0, NULL, &res, reterr_msg);
        if (r < 0)
                return r;
        n = PQntuples(res);
        slots = calloc((size_t) n + 1, sizeof(*slots));
        if (!slots)
                return -ENOMEM;
        for (int i = 0; i < n; i++)
                slots[i] = (struct slot_info) {
                        .name = PQgetvalue(res, i, 0),
                        .active = streq(PQgetvalue(res, i, 1), "t"),
                };
        *ret = slots;
        *ret_n = (size_t) n;
        *ret_res = TAKE_PTR(res);
        return 0;
}

int replication_slots_sync(PGconn *primary, const char *const *member_names, usec_t now,
                           struct slot_state *state, usec_t retention,
                           char ***ret_created, char ***ret_dropped, char **reterr_msg) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        _cleanup_free_ struct slot_info *existing = NULL;
        _cleanup_strv_free_ char **create = NULL, **drop = NULL;
        size_t n_existing = 0;
        int r;

        if (!primary || !state)
                return -EINVAL;
        r = slots_read(primary, &res, &existing, &n_existing, reterr_msg);
        if (r < 0)
                return r;
        r = replication_slots_plan(existing, n_existing, member_names, now, state, retention,
                                   &create, &drop);
        if (r < 0)
                return r;
        for (size_t i = 0; create[i]; i++) {
                r = pgconn_exec(primary,
                                "SELECT pg_catalog.pg_create_physical_replication_slot($1, true) "
                                "WHERE NOT EXISTS (SELECT 1 FROM pg_catalog.pg_replication_slots "
                                "WHERE slot_name = $1)",
                                1, (const char *const[]) { create[i] }, NULL, reterr_msg);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; drop[i]; i++) {
                r = pgconn_exec(primary,
                                "SELECT pg_catalog.pg_drop_replication_slot(slot_name) "
                                "FROM pg_catalog.pg_replication_slots "
                                "WHERE slot_name = $1 AND NOT active",
                                1, (const char *const[]) { drop[i] }, NULL, reterr_msg);
                if (r < 0)
                        return r;
                slot_state_forget(state, drop[i]);
        }
        if (ret_created)
                *ret_created = TAKE_PTR(create);
        if (ret_dropped)
                *ret_dropped = TAKE_PTR(drop);
        return 0;
}
