/* config.h: the agent's configuration: one descriptor table (name, type,
 * offset, default, range, reloadable), loaded from file, then environment
 * (PGLEASE_<KEY>), then flags, and validated as a whole. */
#ifndef PGLEASE_CONFIG_H
#define PGLEASE_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "macro.h"

enum config_type {
        CONFIG_STRING,
        CONFIG_PATH,
        CONFIG_SECRET,   /* a string never printed: shown as *** */
        CONFIG_INT,
        CONFIG_BOOL,
        CONFIG_DURATION, /* usec_t; "10s", "500ms", "2min" */
        CONFIG_SIZE,     /* bytes; "1MB", "16kB" */
        CONFIG_ENUM,     /* int index into enum_values */
        _CONFIG_TYPE_MAX,
};

enum bootstrap_mode { BOOTSTRAP_AUTO, BOOTSTRAP_NEVER, _BOOTSTRAP_MAX };
enum rejoin_fallback { REJOIN_FALLBACK_CLONE, REJOIN_FALLBACK_NONE, _REJOIN_FALLBACK_MAX };
enum synchronous_mode { SYNCHRONOUS_OFF, SYNCHRONOUS_ON, SYNCHRONOUS_STRICT, _SYNCHRONOUS_MAX };
enum pgctl_backend { PGCTL_BACKEND_SUPERVISOR, PGCTL_BACKEND_PG_CTL, _PGCTL_BACKEND_MAX };
enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON, _LOG_FORMAT_MAX };
enum log_level { LOG_LEVEL_DEBUG, LOG_LEVEL_INFO, LOG_LEVEL_WARNING, LOG_LEVEL_ERROR, _LOG_LEVEL_MAX };
enum dcs_backend { DCS_BACKEND_KUBE, _DCS_BACKEND_MAX };

#define CONFIG_MAX_KEYS 96

struct config {
        /* identity */
        char *cluster_name;
        char *node_name;
        char *namespace_;
        /* DCS */
        int dcs;
        char *kube_config;
        usec_t api_timeout;
        usec_t lease_duration;
        usec_t renew_deadline;
        usec_t retry_period;
        usec_t status_interval;
        bool lease_watch;
        bool member_watch;
        /* rolling updates of an OnDelete StatefulSet (docs/kubernetes.md) */
        char *statefulset;
        bool rolling_update;
        usec_t rolling_update_interval;
        /* local PostgreSQL */
        char *data_dir;
        char *pg_bindir;
        char *listen_addresses;
        int64_t pg_port;
        char *connect_address;
        char *socket_dir;
        char *run_dir;
        char *control_socket;
        /* the HTTP API (docs/http-api.md) */
        char *http_listen;
        usec_t http_request_timeout;
        int64_t http_max_connections;
        uint64_t http_max_body;
        uint64_t http_maximum_lag;
        /* failsafe mode (docs/failover.md) */
        bool failsafe_mode;
        char *failsafe_listen;
        char *failsafe_token_file;
        char *failsafe_token;
        int pgctl;
        usec_t primary_start_timeout;
        usec_t stop_timeout;
        usec_t connect_timeout;
        usec_t statement_timeout;
        /* roles and passwords (files preferred; the inline keys are secrets) */
        char *superuser;
        char *superuser_password_file;
        char *superuser_password;
        char *replication_user;
        char *replication_password_file;
        char *replication_password;
        char *rewind_user;
        char *rewind_password_file;
        char *rewind_password;
        char *database;
        char *metadata_schema;
        char *sql_dir;
        /* bootstrap and clone */
        int bootstrap;
        char *hba_networks;
        int64_t max_wal_senders;
        int64_t max_replication_slots;
        uint64_t max_slot_wal_keep_size;
        uint64_t wal_keep_size;
        bool clone_keep_failed;
        usec_t clone_timeout;
        usec_t slot_retention;
        int rejoin_fallback;
        /* failover policy */
        int64_t priority;
        bool nofailover;
        char *tags;
        char *location;
        uint64_t maximum_lag_on_failover;
        int synchronous_mode;
        int64_t synchronous_node_count;
        /* metadata */
        usec_t monitoring_interval;
        usec_t monitoring_retention;
        int64_t event_queue_size;
        /* logging */
        int log_format;
        int log_level;

        /* Where each key's value came from ("default", "FILE:LINE",
         * "env PGLEASE_X", "flag --set"), by table index. */
        char *origin[CONFIG_MAX_KEYS];
};

struct config_key {
        const char *name;
        enum config_type type;
        size_t offset;
        const char *default_value;
        int64_t min, max;              /* CONFIG_INT; usec for durations; bytes for sizes; 0,0 = unbounded */
        const char *const *enum_values; /* CONFIG_ENUM, NULL-terminated */
        bool reloadable;
        const char *description;
};

const struct config_key *config_keys(size_t *ret_n);
const struct config_key *config_key_find(const char *name, size_t *ret_index);
const char *config_enum_to_string(const char *key, int value);

/* Fills c with every default. */
int config_init(struct config *c);
void config_done(struct config *c);

/* One "key = value" assignment from origin (used by each source). Errors
 * say which key and why; -ENOENT for an unknown key. */
int config_set(struct config *c, const char *key, const char *value, const char *origin, char **reterr_msg);

/* Reads a file of "key = value" lines ('#' comments, optional quotes).
 * Errors name FILE:LINE and the key. */
int config_load_file(struct config *c, const char *path, char **reterr_msg);
/* The same for the file's content text[0..size) (a NUL in it is an error);
 * path only names it in messages. */
int config_load_text(struct config *c, const char *text, size_t size, const char *path, char **reterr_msg);

/* Applies PGLEASE_<KEY> variables from envp. Unknown PGLEASE_ variables are
 * not errors (tools share the prefix) but are returned in ret_unknown. */
int config_load_env(struct config *c, char *const *envp, char ***ret_unknown, char **reterr_msg);

/* Checks the whole: lease timing (lease_duration > renew_deadline >
 * 1.2 x retry_period), required keys, names. */
int config_validate(const struct config *c, char **reterr_msg);

/* The whole sequence: defaults, file (if path), env, then "key=value"
 * settings from flags, then validation. */
int config_load(const char *path, char *const *envp, char *const *settings,
                struct config *ret, char ***ret_unknown_env, char **reterr_msg);

/* The effective configuration, one "key = value  # origin" line per key,
 * secrets as ***. */
int config_dump(const struct config *c, char **ret);

/* Formats one key's current value (secrets as ***). */
int config_format_value(const struct config *c, size_t index, char **ret);

/* Compares a freshly loaded configuration with the running one. Keys that
 * cannot change at run time keep their running value in next and are
 * listed in ret_refused; ret_changed lists the keys that will change. */
int config_reload_merge(const struct config *running, struct config *next,
                        char ***ret_changed, char ***ret_refused);


#endif
