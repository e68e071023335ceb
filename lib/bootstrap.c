/* bootstrap.c: creates the first primary of a cluster: initdb with data
 * checksums, the settings replication needs, pg_hba, and the roles. */
#include <arpa/inet.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "bootstrap.h"
#include "pgconn.h"
#include "proc.h"
#include "util.h"

#define DEFAULT_REPL_USER "replicator"
#define DEFAULT_REWIND_USER "pglease_rewind"

/* What pg_rewind needs of a non-superuser source role (pg_rewind docs). */
static const char *const rewind_functions[] = {
        "pg_catalog.pg_ls_dir(text, boolean, boolean)",
        "pg_catalog.pg_stat_file(text, boolean)",
        "pg_catalog.pg_read_binary_file(text)",
        "pg_catalog.pg_read_binary_file(text, bigint, bigint, boolean)",
};

bool bootstrap_valid_role_name(const char *s) {
        size_t n;

        if (isempty(s) || !((s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
                return false;
        n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_");
        return n == strlen(s) && n <= 63;
}

bool bootstrap_valid_cidr(const char *s) {
        unsigned char addr[sizeof(struct in6_addr)];
        _cleanup_free_ char *host = NULL;
        const char *slash;
        int64_t prefix;
        bool v6;

        if (isempty(s) || !(slash = strchr(s, '/')))
                return false;
        host = strndup(s, (size_t) (slash - s));
        if (!host)
                return false;
        v6 = strchr(host, ':') != NULL;
        if (inet_pton(v6 ? AF_INET6 : AF_INET, host, addr) != 1)
                return false;
        if (strspn(slash + 1, "0123456789") != strlen(slash + 1) ||
            parse_int64(slash + 1, &prefix) < 0)
                return false;
        return prefix >= 0 && prefix <= (v6 ? 128 : 32);
}

/* A value that goes into a configuration file between quotes: no control
 * characters, no quotes, so that nothing can start a new setting. */
static bool valid_conf_value(const char *s) {
        if (!s)
                return true;
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == '\'' || *p == '\\')
                        return false;
        return true;
}

static const char *repl_user(const struct bootstrap_options *o) {
        return o->repl_user ? o->repl_user : DEFAULT_REPL_USER;
}

static const char *rewind_user(const struct bootstrap_options *o) {
        return o->rewind_user ? o->rewind_user : DEFAULT_REWIND_USER;
}

static int validate(const struct bootstrap_options *o) {
        uint64_t size;

        if (!o || isempty(o->bindir) || isempty(o->datadir))
                return -EINVAL;
        if (!bootstrap_valid_role_name(o->superuser ? o->superuser : "postgres") ||
            !bootstrap_valid_role_name(repl_user(o)) || !bootstrap_valid_role_name(rewind_user(o)))
                return -EINVAL;
        if (o->auth_local && !streq(o->auth_local, "peer") && !streq(o->auth_local, "scram-sha-256"))
                return -EINVAL;
        for (size_t i = 0; o->networks && o->networks[i]; i++)
                if (!bootstrap_valid_cidr(o->networks[i]))
                        return -EINVAL;
        if (!valid_conf_value(o->listen_addresses) || !valid_conf_value(o->socket_dir) ||
            !valid_conf_value(o->locale))
                return -EINVAL;
        if (o->port < 0 || o->port > 65535 || o->max_wal_senders < 0 || o->max_replication_slots < 0)
                return -EINVAL;
        if (o->max_slot_wal_keep_size && !streq(o->max_slot_wal_keep_size, "-1") &&
            parse_size(o->max_slot_wal_keep_size, &size) < 0)
                return -EINVAL;
        if (o->wal_keep_size && parse_size(o->wal_keep_size, &size) < 0)
                return -EINVAL;
        return 0;
}

int bootstrap_options_check(const struct bootstrap_options *o) {
        return validate(o);
}

int bootstrap_conf_text(const struct bootstrap_options *o, char **ret) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f;
        int r;

        r = validate(o);
        if (r < 0)
                return r;
        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        fputs("# Written by pglease bootstrap: what streaming replication and pg_rewind need.\n", f);
        fprintf(f, "listen_addresses = '%s'\n", o->listen_addresses ? o->listen_addresses : "*");
        fprintf(f, "port = %d\n", o->port ? o->port : 5432);
        if (o->socket_dir)
                fprintf(f, "unix_socket_directories = '%s'\n", o->socket_dir);
        fputs("wal_level = replica\n", f);
        fputs("hot_standby = on\n", f);
        /* Safety rule 5: pg_rewind needs hint-bit changes WAL-logged
         * (checksums do that too; this keeps rewind possible if they are
         * ever turned off). */
        fputs("wal_log_hints = on\n", f);
        fprintf(f, "max_wal_senders = %d\n", o->max_wal_senders ? o->max_wal_senders : 10);
        fprintf(f, "max_replication_slots = %d\n", o->max_replication_slots ? o->max_replication_slots : 10);
        fprintf(f, "max_slot_wal_keep_size = '%s'\n",
                o->max_slot_wal_keep_size ? o->max_slot_wal_keep_size : "-1");
        /* Safety rule 5: pg_rewind leaves the old primary to replay from
         * the last checkpoint before the fork, and it streams that WAL from
         * the new primary, which as a standby recycled it at its
         * restartpoints (no slot held it for the old primary): a rewound
         * member then waited for a removed segment for good. */
        fprintf(f, "wal_keep_size = '%s'\n", o->wal_keep_size ? o->wal_keep_size : "0");
        fputs("password_encryption = 'scram-sha-256'\n", f);
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}

static void hba_line(FILE *f, const char *type, const char *db, const char *user,
                     const char *address, const char *method) {
        fprintf(f, "%-7s %-12s %-16s %-24s %s\n", type, db, user, address, method);
}

int bootstrap_hba_text(const struct bootstrap_options *o, char **ret) {
        const char *local = o && o->auth_local ? o->auth_local : "peer";
        static const char *const loopback[] = { "127.0.0.1/32", "::1/128" };
        char *buf = NULL;
        size_t size = 0;
        FILE *f;
        int r;

        r = validate(o);
        if (r < 0)
                return r;
        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        fputs("# Written by pglease bootstrap.\n", f);
        hba_line(f, "# TYPE", "DATABASE", "USER", "ADDRESS", "METHOD");
        hba_line(f, "local", "all", "all", "", local);
        hba_line(f, "local", "replication", "all", "", local);
        for (size_t i = 0; i < ELEMENTSOF(loopback); i++) {
                hba_line(f, "host", "replication", repl_user(o), loopback[i], "scram-sha-256");
                hba_line(f, "host", "all", "all", loopback[i], "scram-sha-256");
        }
        for (size_t i = 0; o->networks && o->networks[i]; i++) {
                hba_line(f, "host", "replication", repl_user(o), o->networks[i], "scram-sha-256");
                hba_line(f, "host", "all", "all", o->networks[i], "scram-sha-256");
        }
        if (fclose(f) != 0) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}

static int dir_is_missing_or_empty(const char *path) {
        DIR *d = opendir(path);
        struct dirent *de;
        int r = 0;

        if (!d)
                return errno == ENOENT ? 0 : -errno;
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, "..")) {
                        r = -EEXIST;
                        break;
                }
        closedir(d);
        return r;
}

static int run_initdb(const struct bootstrap_options *o, char **reterr_msg) {
        _cleanup_free_ char *initdb = NULL, *pgdata = NULL, *user = NULL, *pwfile = NULL,
                            *auth_local = NULL, *locale = NULL;
        char *argv[12];
        size_t n = 0;

        initdb = strdup_printf("%s/initdb", o->bindir);
        pgdata = strdup_printf("--pgdata=%s", o->datadir);
        user = strdup_printf("--username=%s", o->superuser ? o->superuser : "postgres");
        auth_local = strdup_printf("--auth-local=%s", o->auth_local ? o->auth_local : "peer");
        locale = strdup_printf("--locale=%s", o->locale ? o->locale : "C.UTF-8");
        if (o->superuser_password_file)
                pwfile = strdup_printf("--pwfile=%s", o->superuser_password_file);
        if (!initdb || !pgdata || !user || !auth_local || !locale ||
            (o->superuser_password_file && !pwfile))
                return -ENOMEM;

        argv[n++] = initdb;
        argv[n++] = pgdata;
        argv[n++] = user;
        argv[n++] = (char *) "--data-checksums";
        argv[n++] = auth_local;
        argv[n++] = (char *) "--auth-host=scram-sha-256";
        argv[n++] = (char *) "--encoding=UTF8";
        argv[n++] = locale;
        if (pwfile)
                argv[n++] = pwfile; /* a path: initdb reads the password from it */
        argv[n] = NULL;

        return proc_run(&(struct proc_options) {
                                .argv = argv,
                                .timeout = o->timeout ? o->timeout : 5 * USEC_PER_MINUTE,
                                .clock = o->clock,
                        },
                        NULL, reterr_msg);
}

static int write_conf_files(const struct bootstrap_options *o, char **reterr_msg) {
        _cleanup_free_ char *conf = NULL, *hba = NULL, *main_conf = NULL, *main_path = NULL,
                            *conf_path = NULL, *hba_path = NULL, *new_main = NULL;
        int r;

        r = bootstrap_conf_text(o, &conf);
        if (r >= 0)
                r = bootstrap_hba_text(o, &hba);
        if (r < 0)
                return r;
        main_path = strdup_printf("%s/postgresql.conf", o->datadir);
        conf_path = strdup_printf("%s/" BOOTSTRAP_CONF_FILE, o->datadir);
        hba_path = strdup_printf("%s/pg_hba.conf", o->datadir);
        if (!main_path || !conf_path || !hba_path)
                return -ENOMEM;

        r = write_file_atomic(conf_path, conf, 0600);
        if (r >= 0)
                r = write_file_atomic(hba_path, hba, 0600);
        if (r >= 0)
                r = read_full_file(main_path, &main_conf, NULL);
        if (r < 0) {
                set_error_msg(reterr_msg, "cannot write the configuration in %s: %s",
                              o->datadir, strerror(-r));
                return r;
        }
        if (strstr(main_conf, "include = '" BOOTSTRAP_CONF_FILE "'"))
                return 0;
        new_main = strdup_printf("%s\n# Added by pglease bootstrap.\ninclude = '"
                                 BOOTSTRAP_CONF_FILE "'\n", main_conf);
        if (!new_main)
                return -ENOMEM;
        r = write_file_atomic(main_path, new_main, 0600);
        if (r < 0)
                set_error_msg(reterr_msg, "cannot write %s: %s", main_path, strerror(-r));
        return r;
}

int bootstrap_initdb(const struct bootstrap_options *o, char **reterr_msg) {
        int r;

        r = validate(o);
        if (r < 0) {
                set_error_msg(reterr_msg, "invalid bootstrap options (role names, networks or settings)");
                return r;
        }
        r = dir_is_missing_or_empty(o->datadir);
        if (r < 0) {
                set_error_msg(reterr_msg, "data directory %s is not empty or not readable: %s",
                              o->datadir, strerror(-r));
                return r;
        }
        r = run_initdb(o, reterr_msg);
        if (r < 0)
                return r;
        return write_conf_files(o, reterr_msg);
}

static int role_exists(PGconn *c, const char *name, bool *ret, char **reterr_msg) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        int r;

        r = pgconn_exec(c, "SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1",
                        1, (const char *const[]) { name }, &res, reterr_msg);
        if (r < 0)
                return r;
        *ret = PQntuples(res) > 0;
        return 0;
}

/* Role DDL takes no parameters: the name goes through PQescapeIdentifier
 * and the password only as a SCRAM verifier through PQescapeLiteral. */
static int ensure_role(PGconn *c, const char *name, const char *attributes,
                       const char *password_file, char **reterr_msg) {
        _cleanup_free_ char *sql = NULL, *password = NULL;
        char *ident = NULL, *verifier = NULL, *literal = NULL;
        bool exists;
        int r;

        r = role_exists(c, name, &exists, reterr_msg);
        if (r < 0)
                return r;
        ident = PQescapeIdentifier(c, name, strlen(name));
        if (!ident)
                return -ENOMEM;
        sql = strdup_printf("%s ROLE %s WITH %s", exists ? "ALTER" : "CREATE", ident, attributes);
        r = sql ? pgconn_exec(c, sql, 0, NULL, NULL, reterr_msg) : -ENOMEM;
        if (r < 0 || !password_file)
                goto finish;

        r = read_one_line_file(password_file, &password);
        if (r < 0) {
                set_error_msg(reterr_msg, "cannot read the password file of role %s: %s", name, strerror(-r));
                goto finish;
        }
        verifier = PQencryptPasswordConn(c, password, name, "scram-sha-256");
        explicit_bzero(password, strlen(password));
        literal = verifier ? PQescapeLiteral(c, verifier, strlen(verifier)) : NULL;
        free(sql);
        sql = literal ? strdup_printf("ALTER ROLE %s PASSWORD %s", ident, literal) : NULL;
        r = sql ? pgconn_exec(c, sql, 0, NULL, NULL, reterr_msg) : -ENOMEM;
finish:
        PQfreemem(ident);
        PQfreemem(verifier);
        PQfreemem(literal);
        return r;
}

int bootstrap_create_roles(PGconn *c, const struct bootstrap_options *o,
                           const char *repl_password_file, const char *rewind_password_file,
                           char **reterr_msg) {
        char *ident;
        int r;

        if (!c || !o || !bootstrap_valid_role_name(repl_user(o)) || !bootstrap_valid_role_name(rewind_user(o)))
                return -EINVAL;
        r = ensure_role(c, repl_user(o), "REPLICATION LOGIN", repl_password_file, reterr_msg);
        if (r < 0)
                return r;
        r = ensure_role(c, rewind_user(o), "LOGIN NOREPLICATION", rewind_password_file, reterr_msg);
        if (r < 0)
                return r;

        ident = PQescapeIdentifier(c, rewind_user(o), strlen(rewind_user(o)));
        if (!ident)
                return -ENOMEM;
        {
                /* pg_rewind needs the new primary's control file current:
                 * the rewind role may CHECKPOINT it (PostgreSQL 15+). */
                _cleanup_free_ char *sql = strdup_printf("GRANT pg_checkpoint TO %s", ident);
                r = sql ? pgconn_exec(c, sql, 0, NULL, NULL, reterr_msg) : -ENOMEM;
        }
        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(rewind_functions); i++) {
                _cleanup_free_ char *sql = strdup_printf("GRANT EXECUTE ON FUNCTION %s TO %s",
                                                         rewind_functions[i], ident);
                r = sql ? pgconn_exec(c, sql, 0, NULL, NULL, reterr_msg) : -ENOMEM;
        }
        PQfreemem(ident);
        return r;
}
