/* metadata-work.h: the leader's metadata writes as best-effort work: each
 * purpose bounded by statement_timeout, a failure logged once with its
 * purpose and retried later, the schema's tables checked and re-created. */
#ifndef PGLEASE_METADATA_WORK_H
#define PGLEASE_METADATA_WORK_H

#include <libpq-fe.h>
#include <stdbool.h>

#include "log.h"
#include "macro.h"

enum metadata_work_purpose {
        METADATA_WORK_MIGRATE,
        METADATA_WORK_CHECK,
        METADATA_WORK_NODES,
        METADATA_WORK_MONITORING,
        METADATA_WORK_EVENTS,
        METADATA_WORK_HISTORY,
        _METADATA_WORK_MAX,
};

struct metadata_work {
        usec_t retry_at[_METADATA_WORK_MAX];  /* after a failure: not before this */
        bool failing[_METADATA_WORK_MAX];     /* logged once until it works again */
        bool gave_up;                         /* a statement timed out in this tick */
        usec_t last_check;
        bool history_pending;                 /* a promotion not yet in history */
        uint32_t history_timeline;
        uint64_t history_lsn;
        const char *history_reason;           /* a static string: bootstrap, failover, switchover, demote */
        char *history_old_primary;            /* NULL: none or unknown (freed by node_done) */
        uint64_t nodes_fingerprint;           /* of the node rows last written */
        usec_t nodes_written_at;              /* 0: not in this term */
};

/* Unchanged node rows are written again this often (last_seen). */
#define METADATA_NODES_KEEPALIVE (5 * 60 * USEC_PER_SEC)

struct node;
struct observation;

/* One tick of the primary's metadata work on c (the local connection):
 * migrations, the check of the schema's tables (every status_interval,
 * re-creating what is missing with an event), node rows, monitoring
 * samples, queued events, a pending history row. A purpose whose statement
 * failed waits status_interval; after a timeout the rest waits for the
 * next tick. Never fails the tick. */
void metadata_work_primary(struct node *n, const struct logger *log, PGconn *c, const struct observation *o);

/* Records a promotion in history now, or later if the write fails. */
void metadata_work_history(struct node *n, const struct logger *log, PGconn *c, uint32_t timeline, uint64_t lsn,
                           const char *reason, const char *old_primary);

/* Forgets the per-term state (a new primary term checks everything). */
void metadata_work_reset(struct metadata_work *w);

#endif
