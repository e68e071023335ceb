/* metadata.h: the pglease schema inside Postgres: migrations, node rows,
 * events (with a bounded queue for when the primary is away), promotion
 * history and replication lag samples. */
#ifndef PGLEASE_METADATA_H
#define PGLEASE_METADATA_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

#define METADATA_DEFAULT_SCHEMA "pglease"

/* Every function taking `schema` accepts NULL for METADATA_DEFAULT_SCHEMA;
 * the name is always quoted with PQescapeIdentifier, and one longer than
 * 63 bytes is -EINVAL (PostgreSQL would silently truncate it). */

/* Applies the migrations sql_dir/NNN_name.sql (sql_dir NULL or empty: the
 * ones built into the binary from sql/) not yet recorded in
 * <schema>.schema_version, in numeric order, each in its own transaction
 * under a transaction-level advisory lock (so that two agents never apply
 * the same one), creating the schema first. Re-running applies nothing.
 * *ret_applied (optional) is the number applied by this call. */
int metadata_migrate(PGconn *c, const char *schema, const char *sql_dir,
                     unsigned *ret_applied, char **reterr_msg);

/* The tables the migrations create (and schema_version), NULL-terminated. */
extern const char *const metadata_tables[];

/* Which of metadata_tables are missing from schema (all of them, with
 * *ret_schema_missing, when the schema itself is gone). Takes no lock on
 * the tables. */
int metadata_missing_tables(PGconn *c, const char *schema, bool *ret_schema_missing, char ***ret_missing,
                            char **reterr_msg);

/* Re-creates what metadata_missing_tables() found missing although the
 * migrations are recorded: a missing schema by the migrations, missing
 * tables from the migrations run into a scratch schema, a missing
 * schema_version by recording the migrations again. Their rows are gone.
 * sql_dir as for metadata_migrate() (NULL: the built-in migrations). */
int metadata_repair(PGconn *c, const char *schema, const char *sql_dir, char *const *missing, bool schema_missing,
                    char **reterr_msg);

/* The highest applied migration, 0 when the schema has none. */
int metadata_schema_version(PGconn *c, const char *schema, unsigned *ret, char **reterr_msg);

struct metadata_node {
        const char *name;
        const char *conninfo;    /* stored redacted (pgconn_redact) */
        const char *role;        /* "primary", "replica", ...; NULL: "unknown" */
        const char *upstream;    /* NULL for none */
        int priority;
        const char *location;    /* NULL: "default" */
        char *const *tags;       /* NULL-terminated, or NULL */
        const char *slot_name;   /* NULL for none */
};

/* Inserts the node or updates every column but first_seen; last_seen = now(). */
int metadata_node_upsert(PGconn *c, const char *schema, const struct metadata_node *n,
                         char **reterr_msg);

struct metadata_event {
        usec_t at;               /* wall clock, usec since the epoch; 0: now() when written */
        char *node;
        char *event;
        bool successful;
        char *details;           /* JSON object text, or NULL for {} */
};

int metadata_event_insert(PGconn *c, const char *schema, const struct metadata_event *e,
                          char **reterr_msg);

/* One row per promotion; inserting a timeline that is already there does
 * nothing, so a retried write is harmless. */
int metadata_history_insert(PGconn *c, const char *schema, uint32_t timeline,
                            uint64_t switch_lsn, const char *new_primary, const char *old_primary,
                            const char *reason, char **reterr_msg);

/* On the primary: one monitoring row per pg_stat_replication entry, tagged
 * with upstream (this node's name). *ret_rows (optional): rows written. */
int metadata_sample_replication(PGconn *c, const char *schema, const char *upstream,
                                unsigned *ret_rows, char **reterr_msg);

/* Deletes monitoring rows older than retention. *ret_deleted optional. */
int metadata_prune_monitoring(PGconn *c, const char *schema, usec_t retention,
                              uint64_t *ret_deleted, char **reterr_msg);

/* Events wait here while the primary cannot be written to. A ring of fixed
 * capacity: when full, pushing drops the oldest and counts it, so that the
 * agent's memory stays bounded however long the outage. */
struct metadata_event_queue {
        struct metadata_event *items;
        size_t capacity;
        size_t head;             /* index of the oldest */
        size_t n;
        uint64_t n_dropped;
};

int metadata_event_queue_init(struct metadata_event_queue *q, size_t capacity);
void metadata_event_queue_done(struct metadata_event_queue *q);

/* Copies the event in. Returns 0, 1 when the oldest event was dropped to
 * make room, or -ENOMEM (the queue is then unchanged). */
int metadata_event_queue_push(struct metadata_event_queue *q, const struct metadata_event *e);

static inline size_t metadata_event_queue_size(const struct metadata_event_queue *q) {
        return q->n;
}

/* The i-th oldest event, or NULL. */
const struct metadata_event *metadata_event_queue_peek(const struct metadata_event_queue *q, size_t i);

typedef int (*metadata_event_write_fn)(void *userdata, const struct metadata_event *e,
                                       char **reterr_msg);

/* Writes events oldest first through write_event and removes each one that
 * was written; stops at the first failure, which stays queued with all
 * that follow it, and returns its error. *ret_written (optional): how many
 * were written, also on failure. */
int metadata_event_queue_drain(struct metadata_event_queue *q, metadata_event_write_fn write_event,
                               void *userdata, size_t *ret_written, char **reterr_msg);

/* metadata_event_queue_drain() into <schema>.events through c. */
int metadata_event_queue_flush(struct metadata_event_queue *q, PGconn *c, const char *schema,
                               size_t *ret_written, char **reterr_msg);

struct metadata_event_row {
        int64_t id;
        usec_t at;               /* usec since the epoch */
        char *node;
        char *event;
        bool successful;
        char *details;           /* JSON text */
};
void metadata_event_rows_free(struct metadata_event_row *rows, size_t n);

/* The newest `limit` events (all if 0), newest first, of one node if
 * node_filter is not NULL. */
int metadata_events_list(PGconn *c, const char *schema, size_t limit, const char *node_filter,
                         struct metadata_event_row **ret, size_t *ret_n, char **reterr_msg);

/* The same rows, streamed: a cursor fetched in batches, each row handed to
 * cb (which returns < 0 to stop) and freed after it, so that memory stays
 * bounded however many rows there are. */
int metadata_events_foreach(PGconn *c, const char *schema, size_t limit, const char *node_filter,
                            int (*cb)(const struct metadata_event_row *row, void *userdata), void *userdata,
                            char **reterr_msg);

struct metadata_history_row {
        uint32_t timeline;
        uint64_t switch_lsn;     /* PG_LSN_INVALID when unknown */
        char *new_primary;
        char *old_primary;       /* NULL: none (bootstrap) or unknown */
        char *reason;            /* bootstrap, failover, switchover, demote */
        usec_t at;
};
void metadata_history_rows_free(struct metadata_history_row *rows, size_t n);

/* Promotions, newest timeline first; `limit` 0 for all. */
int metadata_history_list(PGconn *c, const char *schema, size_t limit,
                          struct metadata_history_row **ret, size_t *ret_n, char **reterr_msg);

#endif
