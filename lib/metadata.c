/* metadata.c: the pglease schema inside Postgres: migrations, node rows,
 * events (with a bounded queue for when the primary is away), promotion
 * history and replication lag samples. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "metadata-embedded.h"
#include "metadata.h"
#include "pgconn.h"
#include "util.h"

/* NAMEDATALEN - 1: a longer name would be truncated by the server and no
 * longer match what the operator configured. */
#define SCHEMA_NAME_MAX 63

static void pqfreememp(char **p) {
        if (*p)
                PQfreemem(*p);
        *p = NULL;
}

/* Returns the schema name as a quoted identifier, for splicing into SQL
 * text where a parameter cannot go (a table name). */
static int schema_quote(PGconn *c, const char *schema, char **ret, char **reterr_msg) {
        _cleanup_(pqfreememp) char *quoted = NULL;
        char *copy;

        if (!c)
                return -EINVAL;
        schema = schema ?: METADATA_DEFAULT_SCHEMA;
        if (isempty(schema) || strlen(schema) > SCHEMA_NAME_MAX) {
                (void) set_error_msg(reterr_msg, "invalid metadata schema name \"%s\"", schema);
                return -EINVAL;
        }
        quoted = PQescapeIdentifier(c, schema, strlen(schema));
        if (!quoted) {
                (void) set_error_msg(reterr_msg, "cannot quote schema name: %s", PQerrorMessage(c));
                return -EINVAL;
        }
        copy = strdup(quoted);
        if (!copy)
                return -ENOMEM;
        *ret = copy;
        return 0;
}

/* Returns tmpl with every {schema} replaced by the quoted schema name.
 * Not printf: SQL text may hold a literal %. */
static char *sql_with_schema(const char *tmpl, const char *quoted) {
        static const char token[] = "{schema}";
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                return NULL;
        for (const char *p = tmpl, *hit; *p; p = hit + strlen(token)) {
                hit = strstr(p, token);
                if (!hit) {
                        fputs(p, f);
                        break;
                }
                fwrite(p, 1, hit - p, f);
                fputs(quoted, f);
        }
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

static int exec_in_schema(PGconn *c, const char *schema, const char *tmpl, int n_params,
                          const char *const *params, PGresult **ret, char **reterr_msg) {
        _cleanup_free_ char *quoted = NULL, *sql = NULL;
        int r;

        r = schema_quote(c, schema, &quoted, reterr_msg);
        if (r < 0)
                return r;
        sql = sql_with_schema(tmpl, quoted);
        if (!sql)
                return -ENOMEM;
        return pgconn_exec(c, sql, n_params, params, ret, reterr_msg);
}

static uint64_t cmd_tuples(const PGresult *res) {
        const char *s = PQcmdTuples((PGresult *) res);

        return isempty(s) ? 0 : strtoull(s, NULL, 10);
}

static char *text_array_literal(char *const *items);

struct migration {
        unsigned version;
        char *name;
        char *path;     /* where it came from, for messages */
        char *script;
};

static void migrations_free(struct migration *m, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(m[i].name);
                free(m[i].path);
                free(m[i].script);
        }
        free(m);
}

/* NNN_name.sql with a decimal version and a name of [A-Za-z0-9_-]. */
static int migration_parse_filename(const char *fn, unsigned *ret_version, char **ret_name) {
        size_t len = strlen(fn), digits = strspn(fn, "0123456789"), name_len;
        unsigned long v;

        if (digits == 0 || digits > 6 || fn[digits] != '_' || len < digits + 6 ||
            !streq(fn + len - 4, ".sql"))
                return -EINVAL;
        name_len = len - 4 - digits - 1;
        if (name_len == 0 ||
            strspn(fn + digits + 1, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != name_len)
                return -EINVAL;
        v = strtoul(fn, NULL, 10);
        if (v == 0)
                return -EINVAL;
        *ret_name = strndup(fn + digits + 1, name_len);
        if (!*ret_name)
                return -ENOMEM;
        *ret_version = (unsigned) v;
        return 0;
}

static int migration_cmp(const void *a, const void *b) {
        const struct migration *x = a, *y = b;

        return x->version < y->version ? -1 : x->version > y->version;
}

static void closedirp(DIR **d) {
        if (*d)
                closedir(*d);
        *d = NULL;
}

static int migration_append(struct migration **list, size_t *n, const char *dir, const char *fn,
                            char **reterr_msg) {
        struct migration *grown, m = {};
        int r;

        r = migration_parse_filename(fn, &m.version, &m.name);
        if (r == -EINVAL)
                return 0;       /* not a migration (README, editor backups) */
        if (r < 0)
                return r;
        m.path = strdup_printf("%s/%s", dir, fn);
        r = m.path ? read_full_file(m.path, &m.script, NULL) : -ENOMEM;
        if (r < 0 && r != -ENOMEM)
                (void) set_error_msg(reterr_msg, "cannot read %s: %s", m.path, strerror(-r));
        grown = r >= 0 ? reallocarray(*list, *n + 1, sizeof(**list)) : NULL;
        if (!grown) {
                free(m.name);
                free(m.path);
                free(m.script);
                return r < 0 ? r : -ENOMEM;
        }
        grown[(*n)++] = m;
        *list = grown;
        return 0;
}

/* The migrations compiled into the binary (sql/embed.py). */
static int migrations_load_embedded(struct migration **ret, size_t *ret_n) {
        struct migration *list = calloc(metadata_embedded_migrations_n ?: 1, sizeof(*list));

        if (!list)
                return -ENOMEM;
        for (size_t i = 0; i < metadata_embedded_migrations_n; i++) {
                const struct metadata_embedded_migration *e = &metadata_embedded_migrations[i];

                list[i] = (struct migration) {
                        .version = e->version,
                        .name = strdup(e->name),
                        .path = strdup_printf("built-in %03u_%s.sql", e->version, e->name),
                        .script = strdup(e->script),
                };
                if (!list[i].name || !list[i].path || !list[i].script) {
                        migrations_free(list, i + 1);
                        return -ENOMEM;
                }
        }
        *ret = list;
        *ret_n = metadata_embedded_migrations_n;
        return 0;
}

static int migrations_load(const char *dir, struct migration **ret, size_t *ret_n, char **reterr_msg) {
        _cleanup_(closedirp) DIR *d = NULL;
        struct migration *list = NULL;
        struct dirent *de;
        size_t n = 0;
        int r = 0;

        d = opendir(dir);
        if (!d) {
                r = -errno;
                (void) set_error_msg(reterr_msg, "cannot open migration directory %s: %s", dir, strerror(-r));
                return r;
        }
        while ((de = readdir(d))) {
                r = migration_append(&list, &n, dir, de->d_name, reterr_msg);
                if (r < 0)
                        goto fail;
        }
        qsort(list, n, sizeof(*list), migration_cmp);
        for (size_t i = 1; i < n; i++)
                if (list[i].version == list[i - 1].version) {
                        (void) set_error_msg(reterr_msg, "two migrations with version %u in %s",
                                             list[i].version, dir);
                        r = -EINVAL;
                        goto fail;
                }
        *ret = list;
        *ret_n = n;
        return 0;
fail:
        migrations_free(list, n);
        return r;
}

static void tx_rollback(PGconn *c) {
        (void) pgconn_exec(c, "ROLLBACK", 0, NULL, NULL, NULL);
}

/* Opens a transaction holding the migration lock of this schema until it
 * ends, so that two agents that both think they lead apply each migration
 * once, one after the other. */
static int tx_begin_locked(PGconn *c, const char *schema, char **reterr_msg) {
        const char *params[] = { schema ?: METADATA_DEFAULT_SCHEMA };
        int r;

        r = pgconn_exec(c, "BEGIN", 0, NULL, NULL, reterr_msg);
        if (r < 0)
                return r;
        r = pgconn_exec(c, "SELECT pg_advisory_xact_lock(hashtextextended('pglease-migrate:' || $1, 0))",
                        1, params, NULL, reterr_msg);
        if (r < 0)
                tx_rollback(c);
        return r;
}

static int tx_commit(PGconn *c, char **reterr_msg) {
        int r = pgconn_exec(c, "COMMIT", 0, NULL, NULL, reterr_msg);

        if (r < 0)
                tx_rollback(c);
        return r;
}

static int migrate_bootstrap(PGconn *c, const char *schema, char **reterr_msg) {
        int r;

        r = tx_begin_locked(c, schema, reterr_msg);
        if (r < 0)
                return r;
        r = exec_in_schema(c, schema, "CREATE SCHEMA IF NOT EXISTS {schema}", 0, NULL, NULL, reterr_msg);
        if (r >= 0)
                r = exec_in_schema(c, schema,
                                   "CREATE TABLE IF NOT EXISTS {schema}.schema_version ("
                                   " version integer PRIMARY KEY,"
                                   " name text NOT NULL,"
                                   " applied_at timestamptz NOT NULL DEFAULT now())",
                                   0, NULL, NULL, reterr_msg);
        if (r < 0) {
                tx_rollback(c);
                return r;
        }
        return tx_commit(c, reterr_msg);
}

/* Migration files name no schema: search_path is set, for this transaction
 * only, to the quoted schema and then pg_temp, so unqualified CREATEs land
 * in our schema while pg_catalog (searched first when not listed) still
 * provides the built-ins. The schema name never enters the script text. */
static int migrate_run_script(PGconn *c, const char *schema, const char *script, char **reterr_msg) {
        _cleanup_free_ char *quoted = NULL, *path = NULL;
        int r;

        r = schema_quote(c, schema, &quoted, reterr_msg);
        if (r < 0)
                return r;
        path = strdup_printf("%s, pg_temp", quoted);
        if (!path)
                return -ENOMEM;
        r = pgconn_exec(c, "SELECT set_config('search_path', $1, true)", 1,
                        (const char *const[]) { path }, NULL, reterr_msg);
        if (r < 0)
                return r;
        return pgconn_exec_script(c, script, reterr_msg);
}

/* Returns 1 if applied, 0 if it already was. */
static int migrate_one(PGconn *c, const char *schema, const struct migration *m, char **reterr_msg) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        _cleanup_free_ char *version = NULL, *detail = NULL;
        int r;

        version = strdup_printf("%u", m->version);
        if (!version)
                return -ENOMEM;
        const char *params[] = { version, m->name };

        r = tx_begin_locked(c, schema, reterr_msg);
        if (r < 0)
                return r;
        r = exec_in_schema(c, schema, "SELECT 1 FROM {schema}.schema_version WHERE version = $1",
                           1, params, &res, reterr_msg);
        if (r >= 0 && PQntuples(res) > 0) {
                r = tx_commit(c, reterr_msg);
                return r < 0 ? r : 0;
        }
        if (r >= 0) {
                r = migrate_run_script(c, schema, m->script, &detail);
                if (r < 0)
                        (void) set_error_msg(reterr_msg, "migration %s: %s", m->path, strempty(detail));
        }
        if (r >= 0)
                r = exec_in_schema(c, schema, "INSERT INTO {schema}.schema_version (version, name) VALUES ($1, $2)",
                                   2, params, NULL, reterr_msg);
        if (r < 0) {
                tx_rollback(c);
                return r;
        }
        r = tx_commit(c, reterr_msg);
        return r < 0 ? r : 1;
}

int metadata_migrate(PGconn *c, const char *schema, const char *sql_dir,
                     unsigned *ret_applied, char **reterr_msg) {
        struct migration *list = NULL;
        unsigned applied = 0;
        size_t n = 0;
        int r;

        if (!c)
                return -EINVAL;
        r = isempty(sql_dir) ? migrations_load_embedded(&list, &n) : migrations_load(sql_dir, &list, &n, reterr_msg);
        if (r < 0)
                return r;
        if (n == 0) {
                (void) set_error_msg(reterr_msg, "no migrations found in %s", isempty(sql_dir) ? "the built-in set" : sql_dir);
                r = -ENOENT;
                goto finish;
        }
        r = migrate_bootstrap(c, schema, reterr_msg);
        for (size_t i = 0; r >= 0 && i < n; i++) {
                r = migrate_one(c, schema, &list[i], reterr_msg);
                if (r > 0)
                        applied++;
        }
        if (r >= 0 && ret_applied)
                *ret_applied = applied;
finish:
        migrations_free(list, n);
        return r < 0 ? r : 0;
}

const char *const metadata_tables[] = { "schema_version", "nodes", "events", "history", "monitoring", NULL };

/* to_regnamespace()/to_regclass() look names up without taking a lock on
 * the tables: a table locked ACCESS EXCLUSIVE does not stall the check. */
int metadata_missing_tables(PGconn *c, const char *schema, bool *ret_schema_missing, char ***ret_missing,
                            char **reterr_msg) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        _cleanup_strv_free_ char **missing = NULL;
        _cleanup_free_ char *quoted = NULL, *list = NULL;
        const char *params[2];
        bool schema_missing;
        int r;

        r = schema_quote(c, schema, &quoted, reterr_msg);
        if (r < 0)
                return r;
        list = text_array_literal((char *const *) metadata_tables);
        if (!list)
                return -ENOMEM;
        params[0] = quoted;
        params[1] = list;
        r = pgconn_exec(c, "SELECT to_regnamespace($1) IS NULL, t FROM unnest($2::text[]) AS t "
                           "WHERE to_regclass($1 || '.' || quote_ident(t)) IS NULL",
                        2, params, &res, reterr_msg);
        if (r < 0)
                return r;
        schema_missing = PQntuples(res) > 0 && streq(PQgetvalue(res, 0, 0), "t");
        missing = calloc(1, sizeof(char *));
        if (!missing)
                return -ENOMEM;
        for (int i = 0; i < PQntuples(res); i++)
                if ((r = strv_extend(&missing, PQgetvalue(res, i, 1))) < 0)
                        return r;
        *ret_schema_missing = schema_missing;
        *ret_missing = TAKE_PTR(missing);
        return 0;
}

/* Tables dropped from a schema whose migrations are recorded: the
 * migrations are run again into a scratch schema, in the same transaction
 * under the migration lock, and the missing tables moved over (with their
 * indexes and sequences); the scratch schema is dropped. */
static int repair_tables(PGconn *c, const char *schema, const struct migration *list, size_t n,
                         char *const *missing, char **reterr_msg) {
        _cleanup_free_ char *scratch = strdup_printf("%s_repair", schema), *quoted = NULL;
        int r;

        if (!scratch)
                return -ENOMEM;
        r = schema_quote(c, scratch, &quoted, reterr_msg);
        if (r < 0)
                return r;
        r = tx_begin_locked(c, schema, reterr_msg);
        if (r < 0)
                return r;
        r = exec_in_schema(c, scratch, "DROP SCHEMA IF EXISTS {schema} CASCADE", 0, NULL, NULL, reterr_msg);
        if (r >= 0)
                r = exec_in_schema(c, scratch, "CREATE SCHEMA {schema}", 0, NULL, NULL, reterr_msg);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = migrate_run_script(c, scratch, list[i].script, reterr_msg);
        for (char *const *t = missing; r >= 0 && t && *t; t++) {
                _cleanup_free_ char *sql = NULL;
                char *id;

                if (streq(*t, "schema_version"))
                        continue;
                id = PQescapeIdentifier(c, *t, strlen(*t));
                if (!id) {
                        r = -ENOMEM;
                        break;
                }
                sql = strdup_printf("ALTER TABLE %s.%s SET SCHEMA {schema}", quoted, id);
                PQfreemem(id);
                r = sql ? exec_in_schema(c, schema, sql, 0, NULL, NULL, reterr_msg) : -ENOMEM;
        }
        if (r >= 0)
                r = exec_in_schema(c, scratch, "DROP SCHEMA {schema} CASCADE", 0, NULL, NULL, reterr_msg);
        if (r < 0) {
                tx_rollback(c);
                return r;
        }
        return tx_commit(c, reterr_msg);
}

/* schema_version itself dropped: re-created, and every migration whose
 * tables exist recorded as applied again. */
static int repair_versions(PGconn *c, const char *schema, const struct migration *list, size_t n, char **reterr_msg) {
        int r = migrate_bootstrap(c, schema, reterr_msg);

        for (size_t i = 0; r >= 0 && i < n; i++) {
                _cleanup_free_ char *version = strdup_printf("%u", list[i].version);

                if (!version)
                        return -ENOMEM;
                r = exec_in_schema(c, schema, "INSERT INTO {schema}.schema_version (version, name) VALUES ($1, $2) "
                                   "ON CONFLICT (version) DO NOTHING", 2, (const char *const[]) { version, list[i].name },
                                   NULL, reterr_msg);
        }
        return r;
}

static bool list_has(char *const *l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

int metadata_repair(PGconn *c, const char *schema, const char *sql_dir, char *const *missing, bool schema_missing,
                    char **reterr_msg) {
        struct migration *list = NULL;
        size_t n = 0;
        int r;

        if (!c)
                return -EINVAL;
        schema = schema ?: METADATA_DEFAULT_SCHEMA;
        /* A dropped schema is a fresh one: the migrations create it all. */
        if (schema_missing)
                return metadata_migrate(c, schema, sql_dir, NULL, reterr_msg);
        r = isempty(sql_dir) ? migrations_load_embedded(&list, &n) : migrations_load(sql_dir, &list, &n, reterr_msg);
        if (r < 0)
                return r;
        if (strv_length(missing) > (list_has(missing, "schema_version") ? 1u : 0u))
                r = repair_tables(c, schema, list, n, missing, reterr_msg);
        if (r >= 0 && list_has(missing, "schema_version"))
                r = repair_versions(c, schema, list, n, reterr_msg);
        migrations_free(list, n);
        return r;
}

int metadata_schema_version(PGconn *c, const char *schema, unsigned *ret, char **reterr_msg) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        int r;

        if (!ret)
                return -EINVAL;
        r = exec_in_schema(c, schema, "SELECT COALESCE(max(version), 0) FROM {schema}.schema_version",
                           0, NULL, &res, reterr_msg);
        if (r < 0)
                return r;
        *ret = (unsigned) strtoul(PQgetvalue(res, 0, 0), NULL, 10);
        return 0;
}

/* A PostgreSQL array literal: every element double-quoted, with " and \
 * escaped by a backslash. */
static char *text_array_literal(char *const *items) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                return NULL;
        fputc('{', f);
        for (size_t i = 0; items && items[i]; i++) {
                if (i > 0)
                        fputc(',', f);
                fputc('"', f);
                for (const char *p = items[i]; *p; p++) {
                        if (*p == '"' || *p == '\\')
                                fputc('\\', f);
                        fputc(*p, f);
                }
                fputc('"', f);
        }
        fputc('}', f);
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}

int metadata_node_upsert(PGconn *c, const char *schema, const struct metadata_node *n,
                         char **reterr_msg) {
        _cleanup_free_ char *conninfo = NULL, *priority = NULL, *tags = NULL;

        if (!n || isempty(n->name) || !n->conninfo || n->priority < 0)
                return -EINVAL;
        /* Safety rule 6: the table is readable by operators; no password. */
        conninfo = pgconn_redact(n->conninfo);
        priority = strdup_printf("%d", n->priority);
        tags = text_array_literal(n->tags);
        if (!conninfo || !priority || !tags)
                return -ENOMEM;

        const char *params[] = {
                n->name, conninfo, n->role ?: "unknown", n->upstream, priority,
                n->location ?: "default", tags, n->slot_name,
        };
        return exec_in_schema(c, schema,
                "INSERT INTO {schema}.nodes AS n (name, conninfo, role, upstream, priority, location, tags, slot_name)"
                " VALUES ($1, $2, $3, $4, $5::integer, $6, $7::text[], $8)"
                " ON CONFLICT (name) DO UPDATE SET conninfo = EXCLUDED.conninfo, role = EXCLUDED.role,"
                " upstream = EXCLUDED.upstream, priority = EXCLUDED.priority, location = EXCLUDED.location,"
                " tags = EXCLUDED.tags, slot_name = EXCLUDED.slot_name, last_seen = now()",
                (int) ELEMENTSOF(params), params, NULL, reterr_msg);
}

/* Checked before an event is queued or written, so that one malformed event
 * can never block the queue behind it. */
static int event_validate(const struct metadata_event *e) {
        cJSON *json;
        bool is_object;

        if (!e || isempty(e->node) || isempty(e->event))
                return -EINVAL;
        if (!e->details)
                return 0;
        json = cJSON_Parse(e->details);
        is_object = cJSON_IsObject(json);
        cJSON_Delete(json);
        return is_object ? 0 : -EINVAL;
}

int metadata_event_insert(PGconn *c, const char *schema, const struct metadata_event *e,
                          char **reterr_msg) {
        _cleanup_free_ char *at = NULL;

        if (event_validate(e) < 0)
                return -EINVAL;
        at = strdup_printf("%" PRIu64, e->at);
        if (!at)
                return -ENOMEM;
        const char *params[] = { at, e->node, e->event, e->successful ? "t" : "f", e->details };
        /* The interval product is exact: microseconds since 1970 stay below
         * 2^53, where a double still holds every integer. */
        return exec_in_schema(c, schema,
                "INSERT INTO {schema}.events (at, node, event, successful, details) VALUES ("
                " CASE WHEN $1::bigint = 0 THEN now()"
                "  ELSE 'epoch'::timestamptz + $1::bigint * interval '1 microsecond' END,"
                " $2, $3, $4::boolean, COALESCE($5::jsonb, '{}'::jsonb))",
                (int) ELEMENTSOF(params), params, NULL, reterr_msg);
}

int metadata_history_insert(PGconn *c, const char *schema, uint32_t timeline,
                            uint64_t switch_lsn, const char *new_primary, const char *old_primary,
                            const char *reason, char **reterr_msg) {
        _cleanup_free_ char *tli = NULL, *lsn = NULL;

        if (timeline == 0 || timeline > INT32_MAX || isempty(new_primary))
                return -EINVAL;
        tli = strdup_printf("%" PRIu32, timeline);
        lsn = switch_lsn == PG_LSN_INVALID ? strdup("") : pg_lsn_format(switch_lsn);
        if (!tli || !lsn)
                return -ENOMEM;
        const char *params[] = { tli, isempty(lsn) ? NULL : lsn, new_primary, strempty(reason),
                                 isempty(old_primary) ? NULL : old_primary };
        return exec_in_schema(c, schema,
                "INSERT INTO {schema}.history (timeline, switch_lsn, new_primary, reason, old_primary)"
                " VALUES ($1::integer, $2::pg_lsn, $3, $4, $5) ON CONFLICT (timeline) DO NOTHING",
                (int) ELEMENTSOF(params), params, NULL, reterr_msg);
}

int metadata_sample_replication(PGconn *c, const char *schema, const char *upstream,
                                unsigned *ret_rows, char **reterr_msg) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        const char *params[] = { upstream };
        int r;

        if (isempty(upstream))
                return -EINVAL;
        /* A standby without application_name is still a row, named by its
         * address, so that lag is never silently missing. */
        r = exec_in_schema(c, schema,
                "INSERT INTO {schema}.monitoring (node, upstream, state, sync_state,"
                " write_lag_bytes, flush_lag_bytes, replay_lag_bytes,"
                " write_lag_seconds, flush_lag_seconds, replay_lag_seconds)"
                " SELECT COALESCE(NULLIF(application_name, ''), host(client_addr), 'pid ' || pid), $1,"
                "  state, sync_state,"
                "  pg_wal_lsn_diff(pg_current_wal_lsn(), write_lsn)::bigint,"
                "  pg_wal_lsn_diff(pg_current_wal_lsn(), flush_lsn)::bigint,"
                "  pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint,"
                "  extract(epoch FROM write_lag)::float8,"
                "  extract(epoch FROM flush_lag)::float8,"
                "  extract(epoch FROM replay_lag)::float8"
                " FROM pg_stat_replication",
                1, params, &res, reterr_msg);
        if (r < 0)
                return r;
        if (ret_rows)
                *ret_rows = (unsigned) cmd_tuples(res);
        return 0;
}

int metadata_prune_monitoring(PGconn *c, const char *schema, usec_t retention,
                              uint64_t *ret_deleted, char **reterr_msg) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        _cleanup_free_ char *usec = NULL;
        int r;

        usec = strdup_printf("%" PRIu64, MIN(retention, (usec_t) INT64_MAX));
        if (!usec)
                return -ENOMEM;
        r = exec_in_schema(c, schema,
                "DELETE FROM {schema}.monitoring WHERE at < now() - $1::bigint * interval '1 microsecond'",
                1, (const char *const[]) { usec }, &res, reterr_msg);
        if (r < 0)
                return r;
        if (ret_deleted)
                *ret_deleted = cmd_tuples(res);
        return 0;
}

static void event_done(struct metadata_event *e) {
        free(e->node);
        free(e->event);
        free(e->details);
        *e = (struct metadata_event) {};
}

int metadata_event_queue_init(struct metadata_event_queue *q, size_t capacity) {
        struct metadata_event *items;

        if (!q || capacity == 0)
                return -EINVAL;
        items = calloc(capacity, sizeof(*items));
        if (!items)
                return -ENOMEM;
        *q = (struct metadata_event_queue) { .items = items, .capacity = capacity };
        return 0;
}

void metadata_event_queue_done(struct metadata_event_queue *q) {
        if (!q || !q->items)
                return;
        for (size_t i = 0; i < q->n; i++)
                event_done(&q->items[(q->head + i) % q->capacity]);
        free(q->items);
        *q = (struct metadata_event_queue) {};
}

const struct metadata_event *metadata_event_queue_peek(const struct metadata_event_queue *q, size_t i) {
        if (!q || i >= q->n)
                return NULL;
        return &q->items[(q->head + i) % q->capacity];
}

int metadata_event_queue_push(struct metadata_event_queue *q, const struct metadata_event *e) {
        struct metadata_event copy = {
                .at = e ? e->at : 0,
                .successful = e ? e->successful : false,
        };
        bool dropped = false;

        if (!q || !q->items || event_validate(e) < 0)
                return -EINVAL;
        copy.node = strdup(e->node);
        copy.event = strdup(e->event);
        copy.details = e->details ? strdup(e->details) : NULL;
        if (!copy.node || !copy.event || (e->details && !copy.details)) {
                event_done(&copy);
                return -ENOMEM;
        }
        if (q->n == q->capacity) {
                event_done(&q->items[q->head]);
                q->head = (q->head + 1) % q->capacity;
                q->n--;
                q->n_dropped++;
                dropped = true;
        }
        q->items[(q->head + q->n) % q->capacity] = copy;
        q->n++;
        return dropped ? 1 : 0;
}

int metadata_event_queue_drain(struct metadata_event_queue *q, metadata_event_write_fn write_event,
                               void *userdata, size_t *ret_written, char **reterr_msg) {
        size_t written = 0;

        if (!q || !write_event)
                return -EINVAL;
        while (q->n > 0) {
                struct metadata_event *e = &q->items[q->head];
                int r = write_event(userdata, e, reterr_msg);

                if (r < 0)
                        return r;
                event_done(e);
                q->head = (q->head + 1) % q->capacity;
                q->n--;
                written++;
        }
        if (ret_written)
                *ret_written = written;
        return 0;
}

struct flush_target {
        PGconn *conn;
        const char *schema;
};

static int flush_write(void *userdata, const struct metadata_event *e, char **reterr_msg) {
        const struct flush_target *t = userdata;

        return metadata_event_insert(t->conn, t->schema, e, reterr_msg);
}

int metadata_event_queue_flush(struct metadata_event_queue *q, PGconn *c, const char *schema,
                               size_t *ret_written, char **reterr_msg) {
        struct flush_target t = { .conn = c, .schema = schema };

        if (!c)
                return -EINVAL;
        return metadata_event_queue_drain(q, flush_write, &t, ret_written, reterr_msg);
}

static char *limit_param(size_t limit) {
        return limit == 0 ? strdup("") : strdup_printf("%zu", limit);
}

static int64_t field_int64(const PGresult *res, int row, int col) {
        return PQgetisnull(res, row, col) ? 0 : strtoll(PQgetvalue(res, row, col), NULL, 10);
}

static char *field_strdup(const PGresult *res, int row, int col) {
        return strdup(PQgetisnull(res, row, col) ? "" : PQgetvalue(res, row, col));
}

void metadata_event_rows_free(struct metadata_event_row *rows, size_t n) {
        for (size_t i = 0; rows && i < n; i++) {
                free(rows[i].node);
                free(rows[i].event);
                free(rows[i].details);
        }
        free(rows);
}

int metadata_events_list(PGconn *c, const char *schema, size_t limit, const char *node_filter,
                         struct metadata_event_row **ret, size_t *ret_n, char **reterr_msg) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        _cleanup_free_ char *lim = limit_param(limit);
        struct metadata_event_row *rows;
        size_t n;
        int r;

        if (!ret || !ret_n)
                return -EINVAL;
        if (!lim)
                return -ENOMEM;
        const char *params[] = { node_filter, isempty(lim) ? NULL : lim };
        r = exec_in_schema(c, schema,
                "SELECT id, (extract(epoch FROM at) * 1000000)::bigint, node, event, successful, details::text"
                " FROM {schema}.events WHERE ($1::text IS NULL OR node = $1)"
                " ORDER BY at DESC, id DESC LIMIT $2::bigint",
                2, params, &res, reterr_msg);
        if (r < 0)
                return r;
        n = (size_t) PQntuples(res);
        rows = calloc(n ?: 1, sizeof(*rows));
        if (!rows)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                rows[i] = (struct metadata_event_row) {
                        .id = field_int64(res, (int) i, 0),
                        .at = (usec_t) field_int64(res, (int) i, 1),
                        .node = field_strdup(res, (int) i, 2),
                        .event = field_strdup(res, (int) i, 3),
                        .successful = streq(PQgetvalue(res, (int) i, 4), "t"),
                        .details = field_strdup(res, (int) i, 5),
                };
                if (!rows[i].node || !rows[i].event || !rows[i].details) {
                        metadata_event_rows_free(rows, i + 1);
                        return -ENOMEM;
                }
        }
        *ret = rows;
        *ret_n = n;
        return 0;
}

#define EVENTS_FETCH 1000 /* the FETCH count below */

int metadata_events_foreach(PGconn *c, const char *schema, size_t limit, const char *node_filter,
                            int (*cb)(const struct metadata_event_row *row, void *userdata), void *userdata,
                            char **reterr_msg) {
        _cleanup_free_ char *lim = limit_param(limit);
        int r;

        if (!cb)
                return -EINVAL;
        if (!lim)
                return -ENOMEM;
        r = pgconn_exec(c, "BEGIN READ ONLY", 0, NULL, NULL, reterr_msg);
        if (r < 0)
                return r;
        const char *params[] = { node_filter, isempty(lim) ? NULL : lim };
        r = exec_in_schema(c, schema,
                "DECLARE pglease_events NO SCROLL CURSOR FOR"
                " SELECT id, (extract(epoch FROM at) * 1000000)::bigint, node, event, successful, details::text"
                " FROM {schema}.events WHERE ($1::text IS NULL OR node = $1)"
                " ORDER BY at DESC, id DESC LIMIT $2::bigint",
                2, params, NULL, reterr_msg);
        while (r >= 0) {
                _cleanup_(pgresult_clearp) PGresult *res = NULL;
                int n;

                r = pgconn_exec(c, "FETCH 1000 FROM pglease_events", 0, NULL, &res, reterr_msg);
                if (r < 0)
                        break;
                n = PQntuples(res);
                for (int i = 0; i < n && r >= 0; i++) {
                        struct metadata_event_row row = {
                                .id = field_int64(res, i, 0),
                                .at = (usec_t) field_int64(res, i, 1),
                                .node = PQgetvalue(res, i, 2),
                                .event = PQgetvalue(res, i, 3),
                                .successful = streq(PQgetvalue(res, i, 4), "t"),
                                .details = PQgetisnull(res, i, 5) ? NULL : PQgetvalue(res, i, 5),
                        };

                        r = cb(&row, userdata);
                }
                if (n < EVENTS_FETCH)
                        break;
        }
        (void) pgconn_exec(c, r < 0 ? "ROLLBACK" : "COMMIT", 0, NULL, NULL, NULL);
        return r < 0 ? r : 0;
}

void metadata_history_rows_free(struct metadata_history_row *rows, size_t n) {
        for (size_t i = 0; rows && i < n; i++) {
                free(rows[i].new_primary);
                free(rows[i].old_primary);
                free(rows[i].reason);
        }
        free(rows);
}

int metadata_history_list(PGconn *c, const char *schema, size_t limit,
                          struct metadata_history_row **ret, size_t *ret_n, char **reterr_msg) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        _cleanup_free_ char *lim = limit_param(limit);
        struct metadata_history_row *rows;
        size_t n;
        int r;

        if (!ret || !ret_n)
                return -EINVAL;
        if (!lim)
                return -ENOMEM;
        const char *params[] = { isempty(lim) ? NULL : lim };
        r = exec_in_schema(c, schema,
                "SELECT timeline, switch_lsn::text, new_primary, reason,"
                " (extract(epoch FROM at) * 1000000)::bigint, old_primary"
                " FROM {schema}.history ORDER BY timeline DESC LIMIT $1::bigint",
                1, params, &res, reterr_msg);
        if (r < 0)
                return r;
        n = (size_t) PQntuples(res);
        rows = calloc(n ?: 1, sizeof(*rows));
        if (!rows)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                rows[i] = (struct metadata_history_row) {
                        .timeline = (uint32_t) field_int64(res, (int) i, 0),
                        .new_primary = field_strdup(res, (int) i, 2),
                        .reason = field_strdup(res, (int) i, 3),
                        .at = (usec_t) field_int64(res, (int) i, 4),
                        .old_primary = PQgetisnull(res, (int) i, 5) ? NULL : field_strdup(res, (int) i, 5),
                };
                if (!PQgetisnull(res, (int) i, 1))
                        (void) pg_lsn_parse(PQgetvalue(res, (int) i, 1), &rows[i].switch_lsn);
                if (!rows[i].new_primary || !rows[i].reason) {
                        metadata_history_rows_free(rows, i + 1);
                        return -ENOMEM;
                }
        }
        *ret = rows;
        *ret_n = n;
        return 0;
}
