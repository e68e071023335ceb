/* config.c: the agent's configuration: one descriptor table (name, type,
 * offset, default, range, reloadable), loaded from file, then environment
 * (PGLEASE_<KEY>), then flags, and validated as a whole. */
#include <ctype.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "util.h"

static const char *const bootstrap_values[] = { "auto", "never", NULL };
static const char *const rejoin_values[] = { "clone", "none", NULL };
static const char *const sync_values[] = { "off", "on", "strict", NULL };
static const char *const pgctl_values[] = { "supervisor", "pg_ctl", NULL };
static const char *const log_format_values[] = { "text", "json", NULL };
static const char *const log_level_values[] = { "debug", "info", "warning", "error", NULL };
static const char *const dcs_values[] = { "kube", NULL };

#define MS(n) ((int64_t) (n) * (int64_t) USEC_PER_MSEC)
#define SEC(n) ((int64_t) (n) * (int64_t) USEC_PER_SEC)
#define KEY(n, t, d, lo, hi, rl, desc) \
        { #n, t, offsetof(struct config, n), d, lo, hi, NULL, rl, desc }
#define KEY_ENUM(n, d, vals, rl, desc) \
        { #n, CONFIG_ENUM, offsetof(struct config, n), d, 0, 0, vals, rl, desc }

static const struct config_key keys[] = {
        KEY(cluster_name, CONFIG_STRING, "pg", 0, 0, false,
            "Cluster name: the Lease is <cluster_name>-leader and pods carry pglease.io/cluster=<cluster_name>."),
        KEY(node_name, CONFIG_STRING, "", 0, 0, false,
            "This member's name (the pod name); empty means the host name."),
        { "namespace", CONFIG_STRING, offsetof(struct config, namespace_), "", 0, 0, NULL, false,
          "Kubernetes namespace; empty means the service account's namespace, else \"default\"." },
        KEY_ENUM(dcs, "kube", dcs_values, false,
                 "Where the leader lease and member records live."),
        KEY(kube_config, CONFIG_PATH, "", 0, 0, false,
            "kubeconfig file for running outside a cluster; empty means in-cluster credentials (or $KUBECONFIG)."),
        KEY(api_timeout, CONFIG_DURATION, "2s", MS(100), SEC(60), true,
            "Time limit for one API server request (retries stay inside renew_deadline)."),
        KEY(lease_duration, CONFIG_DURATION, "10s", SEC(2), SEC(3600), true,
            "How long followers wait for an unchanged lease record before taking it."),
        KEY(renew_deadline, CONFIG_DURATION, "7s", SEC(1), SEC(3600), true,
            "A primary whose last successful renewal was sent longer ago than this fences itself."),
        KEY(retry_period, CONFIG_DURATION, "2s", MS(100), SEC(600), true,
            "Interval between two ticks of the control loop (jittered)."),
        KEY(status_interval, CONFIG_DURATION, "10s", SEC(1), SEC(600), true,
            "Longest interval between two writes of this member's status annotation."),
        KEY(data_dir, CONFIG_PATH, "/var/lib/postgresql/data", 0, 0, false,
            "The PostgreSQL data directory (PGDATA)."),
        KEY(pg_bindir, CONFIG_PATH, "", 0, 0, false,
            "Directory of the PostgreSQL 15 programs; empty means pg_config --bindir, else the Debian location."),
        KEY(listen_addresses, CONFIG_STRING, "*", 0, 0, false,
            "listen_addresses written by bootstrap."),
        KEY(pg_port, CONFIG_INT, "5432", 1, 65535, false,
            "The port of the local PostgreSQL."),
        KEY(connect_address, CONFIG_STRING, "", 0, 0, true,
            "Host name or address peers use to reach this node's PostgreSQL; empty means node_name."),
        KEY(socket_dir, CONFIG_PATH, "/var/run/postgresql", 0, 0, false,
            "PostgreSQL's Unix socket directory, used for local connections."),
        KEY(run_dir, CONFIG_PATH, "/var/run/pglease", 0, 0, false,
            "Directory shared with the run-postgres supervisor: hold file, pid files, control socket."),
        KEY(control_socket, CONFIG_PATH, "", 0, 0, false,
            "The agent's Unix control socket; empty means <run_dir>/agent.sock."),
        KEY_ENUM(pgctl, "supervisor", pgctl_values, false,
                 "How the agent starts and stops PostgreSQL: the run-postgres supervisor, or pg_ctl."),
        KEY(primary_start_timeout, CONFIG_DURATION, "10s", SEC(1), SEC(3600), true,
            "A crashed primary not accepting connections within this releases the lease to the best standby."),
        KEY(stop_timeout, CONFIG_DURATION, "30s", SEC(1), SEC(3600), true,
            "Time limit for a clean stop of PostgreSQL before it is stopped immediately."),
        KEY(connect_timeout, CONFIG_DURATION, "3s", SEC(1), SEC(60), true,
            "libpq connect_timeout for every connection the agent opens."),
        KEY(statement_timeout, CONFIG_DURATION, "5s", MS(100), SEC(3600), true,
            "statement_timeout for every query the agent runs."),
        KEY(superuser, CONFIG_STRING, "postgres", 0, 0, false,
            "The superuser the agent connects as."),
        KEY(superuser_password_file, CONFIG_PATH, "", 0, 0, true,
            "File holding the superuser's password (a mounted Secret)."),
        KEY(superuser_password, CONFIG_SECRET, "", 0, 0, true,
            "The superuser's password inline; prefer superuser_password_file."),
        KEY(replication_user, CONFIG_STRING, "replicator", 0, 0, false,
            "The role standbys stream and clone with."),
        KEY(replication_password_file, CONFIG_PATH, "", 0, 0, true,
            "File holding the replication role's password."),
        KEY(replication_password, CONFIG_SECRET, "", 0, 0, true,
            "The replication role's password inline; prefer replication_password_file."),
        KEY(rewind_user, CONFIG_STRING, "pglease_rewind", 0, 0, false,
            "Least-privilege role pg_rewind connects as."),
        KEY(rewind_password_file, CONFIG_PATH, "", 0, 0, true,
            "File holding the rewind role's password."),
        KEY(rewind_password, CONFIG_SECRET, "", 0, 0, true,
            "The rewind role's password inline; prefer rewind_password_file."),
        KEY(database, CONFIG_STRING, "postgres", 0, 0, false,
            "Database the agent connects to and keeps the metadata schema in."),
        KEY(metadata_schema, CONFIG_STRING, "pglease", 0, 0, false,
            "Schema of the metadata tables."),
        KEY(sql_dir, CONFIG_PATH, "", 0, 0, false,
            "Directory of the metadata schema migrations; empty means the installed one, else the source tree's."),
        KEY_ENUM(bootstrap, "auto", bootstrap_values, false,
                 "auto: this node may initdb a new cluster when it takes the lease first; never: only clone."),
        KEY(hba_networks, CONFIG_STRING, "0.0.0.0/0,::/0", 0, 0, false,
            "Comma list of networks allowed to connect (scram-sha-256), written to pg_hba.conf by bootstrap."),
        KEY(max_wal_senders, CONFIG_INT, "10", 2, 1000, false,
            "max_wal_senders written by bootstrap."),
        KEY(max_replication_slots, CONFIG_INT, "10", 2, 1000, false,
            "max_replication_slots written by bootstrap."),
        KEY(max_slot_wal_keep_size, CONFIG_SIZE, "4GB", 0, 0, false,
            "max_slot_wal_keep_size written by bootstrap: the most WAL a slot may hold back."),
        KEY(clone_keep_failed, CONFIG_BOOL, "no", 0, 0, true,
            "Move a failed clone aside instead of removing it."),
        KEY(clone_timeout, CONFIG_DURATION, "1h", SEC(10), SEC(7 * 86400), true,
            "Time limit for one pg_basebackup run."),
        KEY(slot_retention, CONFIG_DURATION, "30min", SEC(10), SEC(30 * 86400), true,
            "The primary drops a member's replication slot after the member has been gone this long."),
        KEY_ENUM(rejoin_fallback, "clone", rejoin_values, true,
                 "When a diverged former primary cannot be rewound: clone it again, or hold it stopped."),
        KEY(priority, CONFIG_INT, "100", 0, 1000000, true,
            "Failover priority; higher wins ties on LSN; 0 never promotes."),
        KEY(nofailover, CONFIG_BOOL, "no", 0, 0, true,
            "Never promote this node."),
        KEY(tags, CONFIG_STRING, "", 0, 0, true,
            "Free-form comma list of tags shown by agentctl."),
        KEY(location, CONFIG_STRING, "", 0, 0, true,
            "Location (zone, rack) recorded in the metadata."),
        KEY(maximum_lag_on_failover, CONFIG_SIZE, "1MB", 0, 0, true,
            "A candidate further than this behind the leader's last published optime does not promote."),
        KEY_ENUM(synchronous_mode, "off", sync_values, true,
                 "off: asynchronous; on: synchronous, falling back to async when no standby is fit; strict: never fall back."),
        KEY(synchronous_node_count, CONFIG_INT, "1", 1, 16, true,
            "Number of synchronous standbys (ANY n) in synchronous mode."),
        KEY(monitoring_interval, CONFIG_DURATION, "30s", SEC(1), SEC(86400), true,
            "Interval between two lag samples written to the monitoring table."),
        KEY(monitoring_retention, CONFIG_DURATION, "7d", SEC(60), SEC(366 * 86400), true,
            "Age after which monitoring rows are pruned."),
        KEY(event_queue_size, CONFIG_INT, "1000", 1, 1000000, true,
            "Events kept in memory while the primary is unreachable."),
        KEY_ENUM(log_format, "text", log_format_values, true,
                 "Log lines as text or JSON (one object per line); the journal when started by systemd."),
        KEY_ENUM(log_level, "info", log_level_values, true,
                 "Lowest level logged."),
};

_Static_assert(ELEMENTSOF(keys) <= CONFIG_MAX_KEYS, "raise CONFIG_MAX_KEYS");

const struct config_key *config_keys(size_t *ret_n) {
        *ret_n = ELEMENTSOF(keys);
        return keys;
}

const struct config_key *config_key_find(const char *name, size_t *ret_index) {
        for (size_t i = 0; i < ELEMENTSOF(keys); i++)
                if (streq(keys[i].name, name)) {
                        if (ret_index)
                                *ret_index = i;
                        return &keys[i];
                }
        return NULL;
}

const char *config_enum_to_string(const char *key, int value) {
        const struct config_key *k = config_key_find(key, NULL);

        if (!k || k->type != CONFIG_ENUM || value < 0)
                return NULL;
        for (int i = 0; k->enum_values[i]; i++)
                if (i == value)
                        return k->enum_values[i];
        return NULL;
}

#define FIELD(c, k, type) ((type *) ((uint8_t *) (c) + (k)->offset))
#define IN_SET_STRINGISH(t) ((t) == CONFIG_STRING || (t) == CONFIG_PATH || (t) == CONFIG_SECRET)

static int key_range_error(const struct config_key *k, const char *value, char **reterr_msg) {
        _cleanup_free_ char *lo = NULL, *hi = NULL;

        if (k->type == CONFIG_DURATION) {
                lo = format_duration((usec_t) k->min);
                hi = format_duration((usec_t) k->max);
        } else {
                lo = strdup_printf("%" PRId64, k->min);
                hi = strdup_printf("%" PRId64, k->max);
        }
        set_error_msg(reterr_msg, "%s: value '%s' out of range (%s..%s)", k->name, value, strempty(lo), strempty(hi));
        return -ERANGE;
}

static int parse_value(const struct config_key *k, const char *value, struct config *c, char **reterr_msg) {
        int r;

        switch (k->type) {
        case CONFIG_STRING:
        case CONFIG_PATH:
        case CONFIG_SECRET: {
                char *s, **field = FIELD(c, k, char *);

                if (k->type == CONFIG_PATH && !isempty(value) && !path_is_absolute(value))
                        return set_error_msg(reterr_msg, "%s: '%s' is not an absolute path", k->name, value), -EINVAL;
                s = strdup(value);
                if (!s)
                        return -ENOMEM;
                free(*field);
                *field = s;
                return 0;
        }
        case CONFIG_INT: {
                int64_t n;

                r = parse_int64(value, &n);
                if (r < 0)
                        return set_error_msg(reterr_msg, "%s: '%s' is not an integer", k->name, value), -EINVAL;
                if ((k->min || k->max) && (n < k->min || n > k->max))
                        return key_range_error(k, value, reterr_msg);
                *FIELD(c, k, int64_t) = n;
                return 0;
        }
        case CONFIG_BOOL:
                r = parse_bool(value, FIELD(c, k, bool));
                if (r < 0)
                        return set_error_msg(reterr_msg, "%s: '%s' is not a boolean (yes/no, on/off, true/false, 1/0)", k->name, value), -EINVAL;
                return 0;
        case CONFIG_DURATION: {
                usec_t u;

                r = parse_duration(value, &u);
                if (r < 0)
                        return set_error_msg(reterr_msg, "%s: '%s' is not a duration (like 10s, 500ms, 2min)", k->name, value), -EINVAL;
                if ((k->min || k->max) && (u < (usec_t) k->min || u > (usec_t) k->max))
                        return key_range_error(k, value, reterr_msg);
                *FIELD(c, k, usec_t) = u;
                return 0;
        }
        case CONFIG_SIZE: {
                uint64_t b;

                r = parse_size(value, &b);
                if (r < 0)
                        return set_error_msg(reterr_msg, "%s: '%s' is not a size (like 1048576, 16MB, 1GB)", k->name, value), -EINVAL;
                *FIELD(c, k, uint64_t) = b;
                return 0;
        }
        case CONFIG_ENUM:
                for (int i = 0; k->enum_values[i]; i++)
                        if (streq(k->enum_values[i], value)) {
                                *FIELD(c, k, int) = i;
                                return 0;
                        }
                {
                        _cleanup_free_ char *allowed = NULL;
                        size_t len = 0;

                        for (int i = 0; k->enum_values[i]; i++)
                                len += strlen(k->enum_values[i]) + 2;
                        allowed = calloc(1, len + 1);
                        if (!allowed)
                                return -ENOMEM;
                        for (int i = 0; k->enum_values[i]; i++) {
                                if (i > 0)
                                        strcat(allowed, ", ");
                                strcat(allowed, k->enum_values[i]);
                        }
                        set_error_msg(reterr_msg, "%s: '%s' is not one of: %s", k->name, value, allowed);
                }
                return -EINVAL;
        default:
                return -EINVAL;
        }
}

int config_set(struct config *c, const char *key, const char *value, const char *origin, char **reterr_msg) {
        const struct config_key *k;
        char *o;
        size_t i;
        int r;

        k = config_key_find(key, &i);
        if (!k) {
                set_error_msg(reterr_msg, "unknown key '%s'", key);
                return -ENOENT;
        }
        r = parse_value(k, value, c, reterr_msg);
        if (r < 0)
                return r;
        o = strdup(origin);
        if (!o)
                return -ENOMEM;
        free(c->origin[i]);
        c->origin[i] = o;
        return 0;
}

int config_init(struct config *c) {
        int r;

        *c = (struct config) {};
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                _cleanup_free_ char *err = NULL;

                r = config_set(c, keys[i].name, keys[i].default_value, "default", &err);
                if (r < 0) {
                        config_done(c);
                        return r;
                }
        }
        return 0;
}

void config_done(struct config *c) {
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                if (IN_SET_STRINGISH(keys[i].type))
                        free(*FIELD(c, &keys[i], char *));
                free(c->origin[i]);
        }
        *c = (struct config) {};
}

/* Splits one line into key and value; handles comments, "key = value",
 * "key value" is not accepted, and single or double quotes around the value
 * (inside them '#' is literal). Returns 0 for a blank line, 1 for a pair. */
static int split_line(char *line, char **ret_key, char **ret_value, char **reterr_msg) {
        char *eq, *key, *value, *p;

        p = strstrip(line);
        if (*p == '\0' || *p == '#')
                return 0;
        eq = strchr(p, '=');
        if (!eq)
                return set_error_msg(reterr_msg, "expected 'key = value'"), -EINVAL;
        *eq = '\0';
        key = strstrip(p);
        value = strstrip(eq + 1);
        if (*key == '\0')
                return set_error_msg(reterr_msg, "missing key before '='"), -EINVAL;
        for (char *k = key; *k; k++)
                if (!islower((unsigned char) *k) && !isdigit((unsigned char) *k) && *k != '_')
                        return set_error_msg(reterr_msg, "invalid key '%s'", key), -EINVAL;
        if (*value == '\'' || *value == '"') {
                char quote = *value;
                char *end = strchr(value + 1, quote);

                if (!end)
                        return set_error_msg(reterr_msg, "%s: unterminated quote", key), -EINVAL;
                *end = '\0';
                p = strstrip(end + 1);
                if (*p != '\0' && *p != '#')
                        return set_error_msg(reterr_msg, "%s: unexpected text after quoted value", key), -EINVAL;
                value++;
        } else {
                char *hash = strchr(value, '#');

                if (hash) {
                        *hash = '\0';
                        value = strstrip(value);
                }
        }
        *ret_key = key;
        *ret_value = value;
        return 1;
}

int config_load_file(struct config *c, const char *path, char **reterr_msg) {
        _cleanup_free_ char *content = NULL;
        char *line, *save = NULL;
        unsigned lineno = 0;
        int r;

        r = read_full_file(path, &content, NULL);
        if (r < 0)
                return set_error_msg(reterr_msg, "%s: cannot read: %s", path, strerror(-r)), r;

        /* strtok_r would skip empty lines and shift the numbering. */
        for (line = content; line; line = save) {
                _cleanup_free_ char *err = NULL, *origin = NULL;
                char *key, *value;

                save = strchr(line, '\n');
                if (save)
                        *save++ = '\0';
                lineno++;

                r = split_line(line, &key, &value, &err);
                if (r < 0)
                        return set_error_msg(reterr_msg, "%s:%u: %s", path, lineno, err), r;
                if (r == 0)
                        continue;
                origin = strdup_printf("%s:%u", path, lineno);
                if (!origin)
                        return -ENOMEM;
                r = config_set(c, key, value, origin, &err);
                if (r < 0)
                        return set_error_msg(reterr_msg, "%s:%u: %s", path, lineno, strempty(err)), r;
        }
        return 0;
}

int config_load_env(struct config *c, char *const *envp, char ***ret_unknown, char **reterr_msg) {
        _cleanup_strv_free_ char **unknown = NULL;
        int r;

        for (char *const *e = envp; e && *e; e++) {
                _cleanup_free_ char *name = NULL, *key = NULL, *origin = NULL, *err = NULL;
                const char *eq;

                if (!strneq(*e, "PGLEASE_", 8))
                        continue;
                eq = strchr(*e, '=');
                if (!eq)
                        continue;
                name = strndup(*e, (size_t) (eq - *e));
                key = strdup(name + 8);
                if (!name || !key)
                        return -ENOMEM;
                for (char *k = key; *k; k++)
                        *k = (char) tolower((unsigned char) *k);
                if (!config_key_find(key, NULL)) {
                        r = strv_extend(&unknown, name);
                        if (r < 0)
                                return r;
                        continue;
                }
                origin = strdup_printf("env %s", name);
                if (!origin)
                        return -ENOMEM;
                r = config_set(c, key, eq + 1, origin, &err);
                if (r < 0)
                        return set_error_msg(reterr_msg, "environment %s: %s", name, strempty(err)), r;
        }
        if (ret_unknown)
                *ret_unknown = TAKE_PTR(unknown);
        return 0;
}

static bool valid_dns_label(const char *s, size_t max) {
        size_t n = strlen(s);

        if (n == 0 || n > max || s[0] == '-' || s[n - 1] == '-')
                return false;
        for (size_t i = 0; i < n; i++)
                if (!islower((unsigned char) s[i]) && !isdigit((unsigned char) s[i]) && s[i] != '-')
                        return false;
        return true;
}

int config_validate(const struct config *c, char **reterr_msg) {
        /* The lease-timing rule of docs/design.md: followers wait
         * lease_duration, the primary fences after renew_deadline, and a
         * renewal must fit at least once in the deadline with some margin. */
        if (c->lease_duration <= c->renew_deadline)
                return set_error_msg(reterr_msg, "lease_duration (%" PRIu64 "ms) must be greater than renew_deadline (%" PRIu64 "ms)",
                                     c->lease_duration / USEC_PER_MSEC, c->renew_deadline / USEC_PER_MSEC), -EINVAL;
        if (c->renew_deadline * 10 <= c->retry_period * 12)
                return set_error_msg(reterr_msg, "renew_deadline (%" PRIu64 "ms) must be greater than 1.2 x retry_period (%" PRIu64 "ms)",
                                     c->renew_deadline / USEC_PER_MSEC, c->retry_period / USEC_PER_MSEC), -EINVAL;
        if (!valid_dns_label(c->cluster_name, 50))
                return set_error_msg(reterr_msg, "cluster_name: '%s' must be a DNS label (a-z, 0-9, '-', at most 50 characters)", c->cluster_name), -EINVAL;
        if (!isempty(c->node_name) && !valid_dns_label(c->node_name, 63))
                return set_error_msg(reterr_msg, "node_name: '%s' must be a DNS label (a-z, 0-9, '-', at most 63 characters)", c->node_name), -EINVAL;
        if (!isempty(c->namespace_) && !valid_dns_label(c->namespace_, 63))
                return set_error_msg(reterr_msg, "namespace: '%s' must be a DNS label", c->namespace_), -EINVAL;
        if (isempty(c->data_dir))
                return set_error_msg(reterr_msg, "data_dir: must be set"), -EINVAL;
        if (c->status_interval < c->retry_period)
                return set_error_msg(reterr_msg, "status_interval must be at least retry_period"), -EINVAL;
        if (!isempty(c->replication_password) && !isempty(c->replication_password_file))
                return set_error_msg(reterr_msg, "replication_password and replication_password_file are both set; keep one"), -EINVAL;
        if (!isempty(c->superuser_password) && !isempty(c->superuser_password_file))
                return set_error_msg(reterr_msg, "superuser_password and superuser_password_file are both set; keep one"), -EINVAL;
        if (!isempty(c->rewind_password) && !isempty(c->rewind_password_file))
                return set_error_msg(reterr_msg, "rewind_password and rewind_password_file are both set; keep one"), -EINVAL;
        return 0;
}

int config_load(const char *path, char *const *envp, char *const *settings,
                struct config *ret, char ***ret_unknown_env, char **reterr_msg) {
        _cleanup_strv_free_ char **unknown = NULL;
        struct config c;
        int r;

        r = config_init(&c);
        if (r < 0)
                return r;
        if (path) {
                r = config_load_file(&c, path, reterr_msg);
                if (r < 0)
                        goto fail;
        }
        r = config_load_env(&c, envp, &unknown, reterr_msg);
        if (r < 0)
                goto fail;
        for (char *const *s = settings; s && *s; s++) {
                _cleanup_free_ char *key = NULL, *err = NULL;
                const char *eq = strchr(*s, '=');

                if (!eq) {
                        set_error_msg(reterr_msg, "--set %s: expected KEY=VALUE", *s);
                        r = -EINVAL;
                        goto fail;
                }
                key = strndup(*s, (size_t) (eq - *s));
                if (!key) {
                        r = -ENOMEM;
                        goto fail;
                }
                r = config_set(&c, key, eq + 1, "flag --set", &err);
                if (r < 0) {
                        set_error_msg(reterr_msg, "--set %s: %s", key, strempty(err));
                        goto fail;
                }
        }
        r = config_validate(&c, reterr_msg);
        if (r < 0)
                goto fail;
        if (ret_unknown_env)
                *ret_unknown_env = TAKE_PTR(unknown);
        *ret = c;
        return 0;
fail:
        config_done(&c);
        return r;
}

int config_format_value(const struct config *c, size_t i, char **ret) {
        const struct config_key *k;
        char *s;

        if (i >= ELEMENTSOF(keys))
                return -EINVAL;
        k = &keys[i];
        switch (k->type) {
        case CONFIG_STRING:
        case CONFIG_PATH:
                s = strdup(strempty(*FIELD(c, k, char *)));
                break;
        case CONFIG_SECRET:
                s = strdup(isempty(*FIELD(c, k, char *)) ? "" : "***");
                break;
        case CONFIG_INT:
                s = strdup_printf("%" PRId64, *FIELD(c, k, int64_t));
                break;
        case CONFIG_BOOL:
                s = strdup(*FIELD(c, k, bool) ? "yes" : "no");
                break;
        case CONFIG_DURATION:
                s = format_duration(*FIELD(c, k, usec_t));
                break;
        case CONFIG_SIZE:
                s = format_size(*FIELD(c, k, uint64_t));
                break;
        case CONFIG_ENUM:
                s = strdup(strempty(config_enum_to_string(k->name, *FIELD(c, k, int))));
                break;
        default:
                return -EINVAL;
        }
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static bool needs_quotes(const char *v) {
        return *v == '\0' || strpbrk(v, "#'\" \t") != NULL;
}

int config_dump(const struct config *c, char **ret) {
        _cleanup_free_ char *out = NULL;
        size_t len = 0;
        FILE *f;
        int r = 0;

        f = open_memstream(&out, &len);
        if (!f)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                _cleanup_free_ char *v = NULL, *line = NULL;

                r = config_format_value(c, i, &v);
                if (r < 0)
                        break;
                if (needs_quotes(v))
                        line = strdup_printf("%s = '%s'", keys[i].name, v);
                else
                        line = strdup_printf("%s = %s", keys[i].name, v);
                if (!line) {
                        r = -ENOMEM;
                        break;
                }
                fprintf(f, "%-44s # %s%s\n", line, strempty(c->origin[i]),
                        keys[i].reloadable ? "" : ", restart to change");
        }
        if (fclose(f) != 0 && r == 0)
                r = -ENOMEM;
        if (r < 0)
                return r;
        *ret = TAKE_PTR(out);
        return 0;
}

static bool value_equal(const struct config *a, const struct config *b, const struct config_key *k) {
        switch (k->type) {
        case CONFIG_STRING:
        case CONFIG_PATH:
        case CONFIG_SECRET:
                return streq(strempty(*FIELD(a, k, char *)), strempty(*FIELD(b, k, char *)));
        case CONFIG_INT:
                return *FIELD(a, k, int64_t) == *FIELD(b, k, int64_t);
        case CONFIG_BOOL:
                return *FIELD(a, k, bool) == *FIELD(b, k, bool);
        case CONFIG_DURATION:
                return *FIELD(a, k, usec_t) == *FIELD(b, k, usec_t);
        case CONFIG_SIZE:
                return *FIELD(a, k, uint64_t) == *FIELD(b, k, uint64_t);
        case CONFIG_ENUM:
                return *FIELD(a, k, int) == *FIELD(b, k, int);
        default:
                return false;
        }
}

/* Copies one key's value (and origin) from src into dst. */
static int copy_value(struct config *dst, const struct config *src, size_t i) {
        const struct config_key *k = &keys[i];
        char *o = src->origin[i] ? strdup(src->origin[i]) : NULL;

        if (src->origin[i] && !o)
                return -ENOMEM;
        free(dst->origin[i]);
        dst->origin[i] = o;
        switch (k->type) {
        case CONFIG_STRING:
        case CONFIG_PATH:
        case CONFIG_SECRET: {
                char *s = strdup(strempty(*FIELD(src, k, char *)));
                if (!s)
                        return -ENOMEM;
                free(*FIELD(dst, k, char *));
                *FIELD(dst, k, char *) = s;
                return 0;
        }
        case CONFIG_INT:
                *FIELD(dst, k, int64_t) = *FIELD(src, k, int64_t);
                return 0;
        case CONFIG_BOOL:
                *FIELD(dst, k, bool) = *FIELD(src, k, bool);
                return 0;
        case CONFIG_DURATION:
                *FIELD(dst, k, usec_t) = *FIELD(src, k, usec_t);
                return 0;
        case CONFIG_SIZE:
                *FIELD(dst, k, uint64_t) = *FIELD(src, k, uint64_t);
                return 0;
        case CONFIG_ENUM:
                *FIELD(dst, k, int) = *FIELD(src, k, int);
                return 0;
        default:
                return -EINVAL;
        }
}

int config_reload_merge(const struct config *running, struct config *next,
                        char ***ret_changed, char ***ret_refused) {
        _cleanup_strv_free_ char **changed = NULL, **refused = NULL;
        int r;

        changed = calloc(1, sizeof(char *));
        refused = calloc(1, sizeof(char *));
        if (!changed || !refused)
                return -ENOMEM;
        for (size_t i = 0; i < ELEMENTSOF(keys); i++) {
                if (value_equal(running, next, &keys[i]))
                        continue;
                if (keys[i].reloadable) {
                        r = strv_extend(&changed, keys[i].name);
                } else {
                        r = strv_extend(&refused, keys[i].name);
                        if (r >= 0)
                                r = copy_value(next, running, i);
                }
                if (r < 0)
                        return r;
        }
        *ret_changed = TAKE_PTR(changed);
        *ret_refused = TAKE_PTR(refused);
        return 0;
}
