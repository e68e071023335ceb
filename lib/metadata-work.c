/* metadata-work.c: the leader's metadata writes as best-effort work: each
 * purpose bounded by statement_timeout, a failure logged once with its
 * purpose and retried later, the schema's tables checked and re-created. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act.h"
#include "metadata-work.h"
#include "node.h"
#include "observe.h"
#include "util.h"

static const char *const purposes[_METADATA_WORK_MAX] = {
        [METADATA_WORK_MIGRATE] = "apply the schema migrations",
        [METADATA_WORK_CHECK] = "check the schema's tables",
        [METADATA_WORK_NODES] = "record the members in the nodes table",
        [METADATA_WORK_MONITORING] = "sample and prune replication lag in the monitoring table",
        [METADATA_WORK_EVENTS] = "write the queued events to the events table",
        [METADATA_WORK_HISTORY] = "record the promotion in the history table",
};

void metadata_work_reset(struct metadata_work *w) {
        struct metadata_work keep = {
                .history_pending = w->history_pending, .history_timeline = w->history_timeline, .history_lsn = w->history_lsn,
                .history_reason = w->history_reason, .history_old_primary = w->history_old_primary,
        };

        *w = keep;
}

static bool may(const struct metadata_work *w, enum metadata_work_purpose p, usec_t now) {
        return !w->gave_up && now >= w->retry_at[p];
}

/* The outcome of one purpose: a failure is logged once (with the purpose
 * and the server's message), retried after status_interval; a timeout (a
 * lock, a stopped server) also ends this tick's metadata work. */
static void outcome(struct node *n, const struct logger *log, enum metadata_work_purpose p, int r, const char *err) {
        struct metadata_work *w = &n->metadata;
        usec_t now = clock_now(n->clock);

        if (r >= 0) {
                if (w->failing[p])
                        log_write(log, clock_realtime(n->clock), LOG_LEVEL_INFO, "metadata", "metadata: could %s again", purposes[p]);
                w->failing[p] = false;
                w->retry_at[p] = 0;
                return;
        }
        if (!w->failing[p])
                log_write(log, clock_realtime(n->clock), LOG_LEVEL_WARNING, "metadata",
                          "metadata: cannot %s in schema %s (retrying every %" PRIu64 "s; the lease is not affected): %s",
                          purposes[p], n->cfg->metadata_schema, n->cfg->status_interval / USEC_PER_SEC, err ? err : strerror(-r));
        w->failing[p] = true;
        w->retry_at[p] = now + n->cfg->status_interval;
        if (r == -ETIMEDOUT || PQstatus(n->local) != CONNECTION_OK)
                w->gave_up = true;
}

/* The nodes table: every member as the primary sees it now. */
/* FNV-1a over the strings of the rows, each ended by a separator: equal
 * fingerprints mean equal rows (a collision costs one skipped write until
 * the keep-alive). */
static uint64_t fingerprint_add(uint64_t h, const char *s) {
        for (const unsigned char *p = (const unsigned char *) strempty(s); *p; p++)
                h = (h ^ *p) * 0x100000001b3ULL;
        return (h ^ 0x1f) * 0x100000001b3ULL;
}

static uint64_t nodes_fingerprint(const struct metadata_node *rows, size_t n) {
        uint64_t h = 0xcbf29ce484222325ULL;

        for (size_t i = 0; i < n; i++) {
                char prio[16];

                snprintf(prio, sizeof prio, "%d", rows[i].priority);
                h = fingerprint_add(h, rows[i].name);
                h = fingerprint_add(h, rows[i].conninfo);
                h = fingerprint_add(h, rows[i].role);
                h = fingerprint_add(h, rows[i].upstream);
                h = fingerprint_add(h, prio);
                h = fingerprint_add(h, rows[i].location);
                for (char *const *t = rows[i].tags; t && *t; t++)
                        h = fingerprint_add(h, *t);
                h = fingerprint_add(h, rows[i].slot_name);
        }
        return h;
}

/* The node rows are written when one of them changes, and otherwise only
 * every METADATA_NODES_KEEPALIVE to move last_seen (issue 19, item 6: an
 * idle cluster wrote them every status_interval, ~330 kB of WAL a minute
 * at 2 s). */
static int record_nodes(struct node *n, PGconn *c, const struct observation *o, char **reterr_msg) {
        struct metadata_node *rows = calloc(o->n_peers + 1, sizeof *rows);
        char **conninfos = calloc(o->n_peers + 2, sizeof(char *)), **slots = calloc(o->n_peers + 2, sizeof(char *));
        _cleanup_strv_free_ char **tags = NULL;
        usec_t now = clock_now(n->clock);
        size_t k = 0;
        uint64_t fp;
        int r = 0;

        if (!rows || !conninfos || !slots) {
                r = -ENOMEM;
                goto finish;
        }
        (void) strv_split_comma(n->cfg->tags, &tags);
        for (size_t i = 0; i <= o->n_peers; i++) {
                const struct peer_observation *p = i < o->n_peers ? &o->peers[i] : NULL;
                const char *name = p ? p->name : n->cfg->node_name;
                const char *host = p ? p->host : node_connect_host(n);
                int port = p ? p->port : (int) n->cfg->pg_port;

                if (isempty(host))
                        continue;
                conninfos[k] = strdup_printf("host=%s port=%d", host, port);
                if (!conninfos[k] || replication_slot_name(name, &slots[k]) < 0) {
                        r = -ENOMEM;
                        goto finish;
                }
                rows[k] = (struct metadata_node) {
                        .name = name,
                        .conninfo = conninfos[k],
                        .role = p ? member_role_to_string(p->role) : "primary",
                        .upstream = p ? n->cfg->node_name : NULL,
                        .priority = p ? p->priority : (int) n->cfg->priority,
                        .location = p ? NULL : (isempty(n->cfg->location) ? NULL : n->cfg->location),
                        .tags = p ? NULL : tags,
                        .slot_name = p ? slots[k] : NULL,
                };
                k++;
        }
        fp = nodes_fingerprint(rows, k);
        if (n->metadata.nodes_written_at > 0 && fp == n->metadata.nodes_fingerprint &&
            now - n->metadata.nodes_written_at < METADATA_NODES_KEEPALIVE)
                goto finish;
        for (size_t i = 0; i < k && r >= 0; i++)
                r = metadata_node_upsert(c, n->cfg->metadata_schema, &rows[i], reterr_msg);
        if (r >= 0) {
                n->metadata.nodes_fingerprint = fp;
                n->metadata.nodes_written_at = now;
        }
finish:
        for (size_t i = 0; conninfos && slots && i <= o->n_peers; i++) {
                free(conninfos[i]);
                free(slots[i]);
        }
        free(conninfos);
        free(slots);
        free(rows);
        return r;
}

static char *join_names(char *const *l) {
        char *s = strdup("");

        for (; s && l && *l; l++) {
                char *t = strdup_printf("%s%s%s", s, *s ? ", " : "", *l);

                free(s);
                s = t;
        }
        return s;
}

/* The tables, not only the migration record: a dropped table or schema
 * is re-created (empty) within one status_interval, with an event. */
static void check_schema(struct node *n, const struct logger *log, PGconn *c) {
        _cleanup_strv_free_ char **missing = NULL;
        _cleanup_free_ char *err = NULL, *names = NULL;
        bool schema_missing = false;
        int r;

        r = metadata_missing_tables(c, n->cfg->metadata_schema, &schema_missing, &missing, &err);
        if (r >= 0 && strv_length(missing) > 0) {
                names = join_names(missing);
                r = metadata_repair(c, n->cfg->metadata_schema, n->sql_dir, missing, schema_missing, &err);
                if (r >= 0 && schema_missing)
                        event_emit(n, log, LOG_LEVEL_WARNING, "metadata", "the metadata schema %s was missing: re-created it (its earlier rows are lost)",
                                   n->cfg->metadata_schema);
                else if (r >= 0)
                        event_emit(n, log, LOG_LEVEL_WARNING, "metadata", "re-created the missing metadata table(s) %s in schema %s (their earlier rows are lost)",
                                   strempty(names), n->cfg->metadata_schema);
        }
        outcome(n, log, METADATA_WORK_CHECK, r, err);
}

void metadata_work_history(struct node *n, const struct logger *log, PGconn *c, uint32_t timeline, uint64_t lsn,
                           const char *reason, const char *old_primary) {
        struct metadata_work *w = &n->metadata;
        _cleanup_free_ char *err = NULL;
        int r = -ECONNREFUSED;

        w->history_pending = true;
        w->history_timeline = timeline;
        w->history_lsn = lsn;
        w->history_reason = reason;
        if (old_primary != w->history_old_primary) {
                free(w->history_old_primary);
                w->history_old_primary = old_primary ? strdup(old_primary) : NULL;
        }
        if (c)
                r = metadata_history_insert(c, n->cfg->metadata_schema, timeline, lsn, n->cfg->node_name,
                                            w->history_old_primary, w->history_reason, &err);
        if (r >= 0)
                n->metadata.history_pending = false;
        outcome(n, log, METADATA_WORK_HISTORY, r, err);
}

/* At the last tick before status_interval has passed since the last check
 * (ticks come every retry_period, 10% jitter): a table dropped just after a
 * check is back within one status_interval, not one interval and a tick. */
static bool check_due(const struct node *n, usec_t now) {
        usec_t tick = n->cfg->retry_period + n->cfg->retry_period / 10;

        return n->metadata.last_check == 0 || now - n->metadata.last_check + tick >= n->cfg->status_interval;
}

void metadata_work_primary(struct node *n, const struct logger *log, PGconn *c, const struct observation *o) {
        struct metadata_work *w = &n->metadata;
        usec_t now = clock_now(n->clock);
        _cleanup_free_ char *err = NULL;
        unsigned applied = 0;
        int r;

        w->gave_up = false;
        if (!n->schema_ready) {
                if (!may(w, METADATA_WORK_MIGRATE, now))
                        return;
                r = metadata_migrate(c, n->cfg->metadata_schema, n->sql_dir, &applied, &err);
                outcome(n, log, METADATA_WORK_MIGRATE, r, err);
                if (r < 0)
                        return;
                n->schema_ready = true;
                w->last_check = now;
                if (applied > 0)
                        log_write(log, clock_realtime(n->clock), LOG_LEVEL_INFO, "metadata", "applied %u schema migration(s)", applied);
        }
        if (may(w, METADATA_WORK_CHECK, now) && check_due(n, now)) {
                w->last_check = now;
                check_schema(n, log, c);
        }
        if (may(w, METADATA_WORK_NODES, now) && (n->last_nodes == 0 || now - n->last_nodes >= n->cfg->status_interval)) {
                err = mfree(err);
                n->last_nodes = now;
                r = record_nodes(n, c, o, &err);
                outcome(n, log, METADATA_WORK_NODES, r, err);
        }
        if (may(w, METADATA_WORK_MONITORING, now) && (n->last_monitoring == 0 || now - n->last_monitoring >= n->cfg->monitoring_interval)) {
                err = mfree(err);
                n->last_monitoring = now;
                r = metadata_sample_replication(c, n->cfg->metadata_schema, n->cfg->node_name, NULL, &err);
                if (r >= 0)
                        r = metadata_prune_monitoring(c, n->cfg->metadata_schema, n->cfg->monitoring_retention, NULL, &err);
                outcome(n, log, METADATA_WORK_MONITORING, r, err);
        }
        if (may(w, METADATA_WORK_HISTORY, now) && w->history_pending)
                metadata_work_history(n, log, c, w->history_timeline, w->history_lsn, w->history_reason, w->history_old_primary);
        if (may(w, METADATA_WORK_EVENTS, now) && metadata_event_queue_size(&n->events) > 0) {
                err = mfree(err);
                r = metadata_event_queue_flush(&n->events, c, n->cfg->metadata_schema, NULL, &err);
                outcome(n, log, METADATA_WORK_EVENTS, r, err);
        }
}
