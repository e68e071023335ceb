/* config.c: the agent's configuration: one descriptor table (name, type,
 * offset, default, range, reloadable), loaded from file, then environment
 * (PGLEASE_<KEY>), then flags, and validated as a whole. */
#include <ctype.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "bootstrap.h"
#include "config.h"
#include "httpapi.h"
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
        KEY(lease_watch, CONFIG_BOOL, "yes", 0, 0, false,
            "Followers watch the leader Lease instead of reading it every retry_period; no: read it every tick."),
        KEY(member_watch, CONFIG_BOOL, "yes", 0, 0, false,
            "Watch the member Pods instead of listing them every status_interval; no: list them."),
        KEY(statefulset, CONFIG_STRING, "", 0, 0, false,
            "The StatefulSet of the cluster's pods; with it the leader carries out its OnDelete rolling updates (rolling_update). Empty: no rolling updates by the agents."),
        KEY(rolling_update, CONFIG_BOOL, "yes", 0, 0, true,
            "The leader rolls an OnDelete StatefulSet's pods to their new revision: standbys one at a time, highest ordinal first, when every pod is Ready, its own pod last (needs statefulset)."),
        KEY(rolling_update_interval, CONFIG_DURATION, "5s", SEC(1), SEC(600), true,
            "Interval between two looks of the leader at the StatefulSet and its pods during rolling updates."),
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
        KEY(http_listen, CONFIG_STRING, "", 0, 0, false,
            "ADDRESS:PORT of the HTTP API (probes, /cluster, /metrics), e.g. 127.0.0.1:8008 or [::]:8008; empty turns it off."),
        KEY(http_request_timeout, CONFIG_DURATION, "5s", SEC(1), SEC(600), false,
            "An HTTP API request not wholly received this long after it began is cut off (slow and idle clients)."),
        KEY(http_max_connections, CONFIG_INT, "64", 1, 10000, false,
            "Most HTTP API connections open at once; more are refused."),
        KEY(http_max_body, CONFIG_SIZE, "4kB", 0, 0, true,
            "A request body larger than this is answered 413 (only POST /failsafe takes one)."),
        KEY(http_maximum_lag, CONFIG_SIZE, "16MB", 0, 0, true,
            "A standby further behind the leader's published optime is not ready and fails /replica (unless ?lag= says otherwise)."),
        KEY(failsafe_mode, CONFIG_BOOL, "no", 0, 0, false,
            "Keep the primary writable while the API server is unreachable, as long as every member of the last cluster view answers POST /failsafe within renew_deadline (needs failsafe_listen and a token)."),
        KEY(failsafe_listen, CONFIG_STRING, "", 0, 0, false,
            "ADDRESS:PORT where this member answers the other members' POST /failsafe (on a thread of its own), e.g. [::]:8009."),
        KEY(failsafe_token_file, CONFIG_PATH, "", 0, 0, false,
            "File holding the token members send and check on POST /failsafe (a mounted Secret)."),
        KEY(failsafe_token, CONFIG_SECRET, "", 0, 0, false,
            "The POST /failsafe token inline (PGLEASE_FAILSAFE_TOKEN from a Secret); prefer failsafe_token_file."),
        KEY_ENUM(pgctl, "supervisor", pgctl_values, false,
                 "How the agent starts and stops PostgreSQL: the run-postgres supervisor, or pg_ctl."),
        KEY(primary_start_timeout, CONFIG_DURATION, "10s", SEC(1), SEC(3600), true,
            "A crashed primary not accepting connections within this releases the lease to the best standby."),
        KEY(stop_timeout, CONFIG_DURATION, "30s", SEC(1), SEC(3600), true,
            "Time limit for a clean stop of PostgreSQL before it is stopped immediately."),
        KEY(connect_timeout, CONFIG_DURATION, "3s", SEC(1), SEC(60), true,
            "libpq connect_timeout for every connection the agent opens."),
        KEY(statement_timeout, CONFIG_DURATION, "2s", MS(100), SEC(3600), true,
            "statement_timeout for every query the agent runs; less than renew_deadline."),
        KEY(superuser, CONFIG_STRING, "postgres", 0, 0, false,
            "The superuser the agent connects as."),
        KEY(superuser_password_file, CONFIG_PATH, "", 0, 0, false,
            "File holding the superuser's password (a mounted Secret)."),
        KEY(superuser_password, CONFIG_SECRET, "", 0, 0, false,
            "The superuser's password inline; prefer superuser_password_file."),
        KEY(replication_user, CONFIG_STRING, "replicator", 0, 0, false,
            "The role standbys stream and clone with."),
        KEY(replication_password_file, CONFIG_PATH, "", 0, 0, false,
            "File holding the replication role's password."),
        KEY(replication_password, CONFIG_SECRET, "", 0, 0, false,
            "The replication role's password inline; prefer replication_password_file."),
        KEY(rewind_user, CONFIG_STRING, "pglease_rewind", 0, 0, false,
            "Least-privilege role pg_rewind connects as."),
        KEY(rewind_password_file, CONFIG_PATH, "", 0, 0, false,
            "File holding the rewind role's password."),
        KEY(rewind_password, CONFIG_SECRET, "", 0, 0, false,
            "The rewind role's password inline; prefer rewind_password_file."),
        KEY(database, CONFIG_STRING, "postgres", 0, 0, false,
            "Database the agent connects to and keeps the metadata schema in."),
        KEY(metadata_schema, CONFIG_STRING, "pglease", 0, 0, false,
            "Schema of the metadata tables."),
        KEY(sql_dir, CONFIG_PATH, "", 0, 0, false,
            "Directory of the metadata schema migrations to apply instead of the ones built into the agent; empty means the built-in ones."),
        KEY_ENUM(bootstrap, "auto", bootstrap_values, false,
                 "auto: this node may initdb a new cluster when it takes the lease first; never: only clone."),
        KEY(hba_networks, CONFIG_STRING, "0.0.0.0/0,::/0", 0, 0, false,
            "Comma list of networks in CIDR notation allowed to connect (scram-sha-256), written to pg_hba.conf by bootstrap."),
        KEY(max_wal_senders, CONFIG_INT, "10", 2, 1000, false,
            "max_wal_senders written by bootstrap."),
        KEY(max_replication_slots, CONFIG_INT, "10", 2, 1000, false,
            "max_replication_slots written by bootstrap."),
        KEY(max_slot_wal_keep_size, CONFIG_SIZE, "4GB", 0, 0, false,
            "max_slot_wal_keep_size written by bootstrap: the most WAL a slot may hold back."),
        KEY(wal_keep_size, CONFIG_SIZE, "512MB", 0, 0, false,
            "wal_keep_size written by bootstrap: WAL every member keeps, primary or standby, so that an old primary rewound from it finds the WAL since the last common checkpoint (0: none)."),
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
        KEY(event_queue_size, CONFIG_INT, "1000", 1, 1000000, false,
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

/* A value as error messages echo it, quoted: at most CONFIG_ECHO_MAX bytes
 * (a 10 MB value must not become a 10 MB log line), control characters as
 * '?' (a newline must not forge a second log line). */
#define CONFIG_ECHO_MAX 64

static char *echo_value(const char *v) {
        size_t n = strlen(v);
        char *s;

        if (n <= CONFIG_ECHO_MAX)
                s = strdup_printf("'%s'", v);
        else
                s = strdup_printf("'%.*s...' (%zu bytes)", CONFIG_ECHO_MAX, v, n);
        if (!s)
                return NULL;
        for (char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20 || *p == 0x7f)
                        *p = '?';
        return s;
}

static int value_error(const struct config_key *k, const char *value, int r, const char *why, char **reterr_msg) {
        _cleanup_free_ char *shown = k->type == CONFIG_SECRET ? strdup("***") : echo_value(value);

        set_error_msg(reterr_msg, "%s: %s %s", k->name, strempty(shown), why);
        return r;
}

static int key_range_error(const struct config_key *k, const char *value, char **reterr_msg) {
        _cleanup_free_ char *lo = NULL, *hi = NULL, *why = NULL;

        if (!k->min && !k->max)
                return value_error(k, value, -ERANGE, "out of range", reterr_msg);
        if (k->type == CONFIG_DURATION) {
                lo = format_duration((usec_t) k->min);
                hi = format_duration((usec_t) k->max);
        } else {
                lo = strdup_printf("%" PRId64, k->min);
                hi = strdup_printf("%" PRId64, k->max);
        }
        why = strdup_printf("out of range (%s..%s)", strempty(lo), strempty(hi));
        return value_error(k, value, -ERANGE, strempty(why), reterr_msg);
}

/* An overflow (-ERANGE from the parser) is out of range, not a bad format. */
static int parse_failed(const struct config_key *k, const char *value, int r, const char *why, char **reterr_msg) {
        if (r == -ERANGE)
                return key_range_error(k, value, reterr_msg);
        return value_error(k, value, -EINVAL, why, reterr_msg);
}

static int parse_enum(const struct config_key *k, const char *value, struct config *c, char **reterr_msg) {
        _cleanup_free_ char *allowed = NULL, *why = NULL;
        size_t len = 0;

        for (int i = 0; k->enum_values[i]; i++)
                if (streq(k->enum_values[i], value)) {
                        *FIELD(c, k, int) = i;
                        return 0;
                }
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
        why = strdup_printf("is not one of: %s", allowed);
        return value_error(k, value, -EINVAL, strempty(why), reterr_msg);
}

static int parse_string(const struct config_key *k, const char *value, struct config *c, char **reterr_msg) {
        char *s, **field = FIELD(c, k, char *);

        if (k->type == CONFIG_PATH && !isempty(value) && !path_is_absolute(value))
                return value_error(k, value, -EINVAL, "is not an absolute path", reterr_msg);
        s = strdup(value);
        if (!s)
                return -ENOMEM;
        free(*field);
        *field = s;
        return 0;
}

static int parse_value(const struct config_key *k, const char *value, struct config *c, char **reterr_msg) {
        int r;

        switch (k->type) {
        case CONFIG_STRING:
        case CONFIG_PATH:
        case CONFIG_SECRET:
                return parse_string(k, value, c, reterr_msg);
        case CONFIG_INT: {
                int64_t n;

                r = parse_int64(value, &n);
                if (r < 0)
                        return parse_failed(k, value, r, "is not an integer", reterr_msg);
                if ((k->min || k->max) && (n < k->min || n > k->max))
                        return key_range_error(k, value, reterr_msg);
                *FIELD(c, k, int64_t) = n;
                return 0;
        }
        case CONFIG_BOOL:
                r = parse_bool(value, FIELD(c, k, bool));
                if (r < 0)
                        return value_error(k, value, -EINVAL, "is not a boolean (yes/no, on/off, true/false, 1/0)",
                                           reterr_msg);
                return 0;
        case CONFIG_DURATION: {
                usec_t u;

                r = parse_duration(value, &u);
                if (r < 0)
                        return parse_failed(k, value, r, "is not a duration (like 10s, 500ms, 2min)", reterr_msg);
                if ((k->min || k->max) && (u < (usec_t) k->min || u > (usec_t) k->max))
                        return key_range_error(k, value, reterr_msg);
                *FIELD(c, k, usec_t) = u;
                return 0;
        }
        case CONFIG_SIZE: {
                uint64_t b;

                r = parse_size(value, &b);
                if (r < 0)
                        return parse_failed(k, value, r, "is not a size (like 1048576, 16MB, 1GB)", reterr_msg);
                *FIELD(c, k, uint64_t) = b;
                return 0;
        }
        case CONFIG_ENUM:
                return parse_enum(k, value, c, reterr_msg);
        default:
                return -EINVAL;
        }
}

/* A value is one line of text: a newline or another control character
 * (from --set or the environment; a file cannot hold one in a value) would
 * end up in pg_hba.conf, a conninfo or a log line. */
static bool has_control_char(const char *v) {
        for (const unsigned char *p = (const unsigned char *) v; *p; p++)
                if ((*p < 0x20 && *p != '\t') || *p == 0x7f)
                        return true;
        return false;
}

int config_set(struct config *c, const char *key, const char *value, const char *origin, char **reterr_msg) {
        const struct config_key *k;
        char *o;
        size_t i;
        int r;

        k = config_key_find(key, &i);
        if (!k) {
                _cleanup_free_ char *shown = echo_value(key);

                set_error_msg(reterr_msg, "unknown key %s", strempty(shown));
                return -ENOENT;
        }
        if (has_control_char(value))
                return value_error(k, value, -EINVAL, "contains a newline or another control character",
                                   reterr_msg);
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
                if (!islower((unsigned char) *k) && !isdigit((unsigned char) *k) && *k != '_') {
                        _cleanup_free_ char *shown = echo_value(key);

                        return set_error_msg(reterr_msg, "invalid key %s", strempty(shown)), -EINVAL;
                }
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

/* A NUL byte would silently end the file early for every string function
 * below: everything after it would be ignored. */
static int check_no_nul(const char *path, const char *content, size_t size, char **reterr_msg) {
        const char *nul = memchr(content, '\0', size);
        unsigned lineno = 1;

        if (!nul)
                return 0;
        for (const char *p = content; p < nul; p++)
                lineno += *p == '\n';
        return set_error_msg(reterr_msg, "%s:%u: NUL byte in the file", path, lineno), -EINVAL;
}

/* Sets one "key = value" of line lineno; a key set twice in one file is an
 * error (which of the two did the author mean?). */
static int file_set(struct config *c, const char *path, unsigned lineno, const char *key, const char *value,
                    unsigned *first_line, char **reterr_msg) {
        _cleanup_free_ char *err = NULL, *origin = NULL;
        size_t i;
        int r;

        if (config_key_find(key, &i)) {
                if (first_line[i] > 0)
                        return set_error_msg(reterr_msg, "%s:%u: duplicate key '%s' (first set at line %u)",
                                             path, lineno, key, first_line[i]), -EINVAL;
                first_line[i] = lineno;
        }
        origin = strdup_printf("%s:%u", path, lineno);
        if (!origin)
                return -ENOMEM;
        r = config_set(c, key, value, origin, &err);
        if (r < 0)
                return set_error_msg(reterr_msg, "%s:%u: %s", path, lineno, strempty(err)), r;
        return 0;
}

int config_load_text(struct config *c, const char *text, size_t size, const char *path, char **reterr_msg) {
        _cleanup_free_ char *content = NULL;
        unsigned first_line[CONFIG_MAX_KEYS] = {};
        char *line, *save = NULL;
        unsigned lineno = 0;
        int r;

        r = check_no_nul(path, text, size, reterr_msg);
        if (r < 0)
                return r;
        content = strndup(text, size);
        if (!content)
                return -ENOMEM;
        /* strtok_r would skip empty lines and shift the numbering. */
        for (line = content; line; line = save) {
                _cleanup_free_ char *err = NULL;
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
                r = file_set(c, path, lineno, key, value, first_line, reterr_msg);
                if (r < 0)
                        return r;
        }
        return 0;
}

int config_load_file(struct config *c, const char *path, char **reterr_msg) {
        _cleanup_free_ char *content = NULL;
        size_t size = 0;
        int r;

        r = read_full_file(path, &content, &size);
        if (r < 0)
                return set_error_msg(reterr_msg, "%s: cannot read: %s", path,
                                     r == -EISDIR ? "is a directory" : strerror(-r)), r;
        return config_load_text(c, content, size, path, reterr_msg);
}

/* PGLEASE_ variables that are not keys but are documented, so not unknown. */
static const char *const env_not_keys[] = {
        "PGLEASE_CONFIG",     /* the file itself: pglease-agent(8) */
};

static bool env_is_documented(const char *name) {
        for (size_t i = 0; i < ELEMENTSOF(env_not_keys); i++)
                if (streq(env_not_keys[i], name))
                        return true;
        return false;
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
                if (env_is_documented(name))
                        continue;
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

/* Where a key's value came from, for an error about it: "FILE:LINE",
 * "env PGLEASE_X", "flag --set" or "default". */
static const char *origin_of(const struct config *c, const char *name) {
        size_t i;

        if (!config_key_find(name, &i))
                return "?";
        return c->origin[i] ?: "default";
}

static int key_invalid(const struct config *c, const char *name, const char *value, const char *why,
                       char **reterr_msg) {
        _cleanup_free_ char *shown = echo_value(value);

        set_error_msg(reterr_msg, "%s: %s: %s %s", origin_of(c, name), name, strempty(shown), why);
        return -EINVAL;
}

/* Two keys that contradict each other: both with their value and origin. */
static int keys_conflict(const struct config *c, const char *a, usec_t va, const char *b, usec_t vb,
                         const char *rule, char **reterr_msg) {
        _cleanup_free_ char *fa = format_duration(va), *fb = format_duration(vb);

        set_error_msg(reterr_msg, "%s (%s, %s) must be %s %s (%s, %s)", a, strempty(fa), origin_of(c, a), rule, b,
                      strempty(fb), origin_of(c, b));
        return -EINVAL;
}

static int validate_timing(const struct config *c, char **reterr_msg) {
        /* The lease-timing rule of docs/design.md: followers wait
         * lease_duration, the primary fences after renew_deadline, and a
         * renewal must fit at least once in the deadline with some margin. */
        if (c->lease_duration <= c->renew_deadline)
                return keys_conflict(c, "lease_duration", c->lease_duration, "renew_deadline", c->renew_deadline,
                                     "greater than", reterr_msg);
        if (c->renew_deadline * 10 <= c->retry_period * 12)
                return keys_conflict(c, "renew_deadline", c->renew_deadline, "retry_period", c->retry_period,
                                     "greater than 1.2 x", reterr_msg);
        /* No statement of the agent's may outlast the lease's deadline: a
         * metadata write waiting on a lock is given up well before. */
        if (c->statement_timeout >= c->renew_deadline)
                return keys_conflict(c, "statement_timeout", c->statement_timeout, "renew_deadline", c->renew_deadline,
                                     "less than", reterr_msg);
        if (c->status_interval < c->retry_period)
                return keys_conflict(c, "status_interval", c->status_interval, "retry_period", c->retry_period,
                                     "at least", reterr_msg);
        return 0;
}

/* Every item of hba_networks goes into pg_hba.conf at bootstrap: checked
 * here so that init never creates the Lease with networks it cannot write. */
static int validate_networks(const struct config *c, char **reterr_msg) {
        _cleanup_strv_free_ char **networks = NULL;
        int r;

        r = strv_split_comma(c->hba_networks, &networks);
        if (r < 0)
                return r;
        for (char **n = networks; n && *n; n++)
                if (!bootstrap_valid_cidr(*n))
                        return key_invalid(c, "hba_networks", *n,
                                           "is not a network in CIDR notation (like 10.0.0.0/8 or fd00::/8)",
                                           reterr_msg);
        return 0;
}

static int validate_names(const struct config *c, char **reterr_msg) {
        static const char *const roles[] = { "superuser", "replication_user", "rewind_user" };

        if (!valid_dns_label(c->cluster_name, 50))
                return key_invalid(c, "cluster_name", c->cluster_name,
                                   "must be a DNS label (a-z, 0-9, '-', at most 50 characters)", reterr_msg);
        if (!isempty(c->node_name) && !valid_dns_label(c->node_name, 63))
                return key_invalid(c, "node_name", c->node_name,
                                   "must be a DNS label (a-z, 0-9, '-', at most 63 characters)", reterr_msg);
        if (!isempty(c->namespace_) && !valid_dns_label(c->namespace_, 63))
                return key_invalid(c, "namespace", c->namespace_, "must be a DNS label", reterr_msg);
        if (!isempty(c->statefulset) && !valid_dns_label(c->statefulset, 63))
                return key_invalid(c, "statefulset", c->statefulset, "must be a DNS label (a-z, 0-9, '-', at most 63 characters)",
                                   reterr_msg);
        for (size_t i = 0; i < ELEMENTSOF(roles); i++) {
                const char *v = *FIELD(c, config_key_find(roles[i], NULL), char *);

                if (!bootstrap_valid_role_name(v))
                        return key_invalid(c, roles[i], v, "is not a role name (a-z, 0-9, '_', at most 63)",
                                           reterr_msg);
        }
        return 0;
}

static int validate_passwords(const struct config *c, char **reterr_msg) {
        static const char *const roles[] = { "superuser", "replication", "rewind" };

        for (size_t i = 0; i < ELEMENTSOF(roles); i++) {
                _cleanup_free_ char *inline_key = strdup_printf("%s_password", roles[i]);
                _cleanup_free_ char *file_key = strdup_printf("%s_password_file", roles[i]);
                const struct config_key *ki, *kf;

                if (!inline_key || !file_key)
                        return -ENOMEM;
                ki = config_key_find(inline_key, NULL);
                kf = config_key_find(file_key, NULL);
                if (!isempty(*FIELD(c, ki, char *)) && !isempty(*FIELD(c, kf, char *)))
                        return set_error_msg(reterr_msg, "%s (%s) and %s (%s) are both set; keep one", inline_key,
                                             origin_of(c, inline_key), file_key, origin_of(c, file_key)), -EINVAL;
        }
        return 0;
}

int config_validate(const struct config *c, char **reterr_msg) {
        int r;

        r = validate_timing(c, reterr_msg);
        if (r < 0)
                return r;
        r = validate_names(c, reterr_msg);
        if (r < 0)
                return r;
        if (isempty(c->data_dir))
                return set_error_msg(reterr_msg, "%s: data_dir: must be set", origin_of(c, "data_dir")), -EINVAL;
        r = validate_networks(c, reterr_msg);
        if (r < 0)
                return r;
        if (!isempty(c->http_listen)) {
                struct sockaddr_storage ss;
                socklen_t len;

                if (httpapi_parse_listen(c->http_listen, &ss, &len) < 0)
                        return key_invalid(c, "http_listen", c->http_listen,
                                           "is not ADDRESS:PORT with a numeric address (127.0.0.1:8008, [::]:8008) and a port in 1-65535",
                                           reterr_msg);
        }
        if (c->failsafe_mode) {
                if (isempty(c->failsafe_listen))
                        return set_error_msg(reterr_msg, "%s: failsafe_mode: needs failsafe_listen (members answer POST /failsafe there)",
                                             origin_of(c, "failsafe_mode")), -EINVAL;
                if (isempty(c->failsafe_token) && isempty(c->failsafe_token_file))
                        return set_error_msg(reterr_msg, "%s: failsafe_mode: needs failsafe_token_file or failsafe_token",
                                             origin_of(c, "failsafe_mode")), -EINVAL;
        }
        if (!isempty(c->failsafe_token) && !isempty(c->failsafe_token_file))
                return set_error_msg(reterr_msg, "failsafe_token (%s) and failsafe_token_file (%s) are both set; keep one",
                                     origin_of(c, "failsafe_token"), origin_of(c, "failsafe_token_file")), -EINVAL;
        if (!isempty(c->failsafe_listen)) {
                struct sockaddr_storage ss;
                socklen_t len;

                if (httpapi_parse_listen(c->failsafe_listen, &ss, &len) < 0)
                        return key_invalid(c, "failsafe_listen", c->failsafe_listen,
                                           "is not ADDRESS:PORT with a numeric address ([::]:8009) and a port in 1-65535",
                                           reterr_msg);
        }
        if (strpbrk(c->listen_addresses, "'\\"))
                return key_invalid(c, "listen_addresses", c->listen_addresses,
                                   "must not contain a quote or a backslash", reterr_msg);
        return validate_passwords(c, reterr_msg);
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
