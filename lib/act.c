/* act.c: carries decide()'s actions out against the world (the lease,
 * the local Postgres, the metadata schema), emits the events, and does the
 * per-tick housekeeping of a member (status record, slots, monitoring). */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "act.h"
#include "fence.h"
#include "lease-file.h"
#include "pgconn.h"
#include "pglease-build.h"
#include "util.h"

/* Events an operator must see in `kubectl get events` too. */
static bool event_is_notable(const char *event) {
        static const char *const notable[] = { "promote", "fence", "release", "rejoin", "acquire", "switchover", "demote", "primary-down", "supervisor-gone" };

        for (size_t i = 0; i < ELEMENTSOF(notable); i++)
                if (streq(event, notable[i]))
                        return true;
        return false;
}

static void event_queue(struct node *n, enum log_level level, const char *event, const char *details, usec_t at) {
        struct metadata_event e = {
                .at = at,
                .node = n->cfg->node_name,
                .event = (char *) event,   /* the queue copies it */
                .successful = level < LOG_LEVEL_ERROR,
                .details = (char *) details,
        };

        (void) metadata_event_queue_push(&n->events, &e);
}

void event_emit(struct node *n, const struct logger *log, enum log_level level, const char *event,
                const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL, *details = NULL, *quoted = NULL;
        usec_t at = clock_realtime(n->clock);
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (!msg)
                return;
        /* A repeat of the last event is counted, not written (issue 19,
         * item 4); the count goes out when the run ends. */
        if (level != LOG_LEVEL_DEBUG && !streq(event, "state")) {
                if (event_repeat_absorb(&n->event_repeat, event, level, msg, at))
                        return;
                struct event_repeat_summary sum;

                if (event_repeat_next(&n->event_repeat, event, level, msg, at, &sum) >= 0 && sum.event) {
                        log_write(log, at, (enum log_level) sum.level, sum.event, "(the last message repeated %u more time(s))", sum.count);
                        event_queue(n, (enum log_level) sum.level, sum.event, sum.details, sum.at);
                        event_repeat_summary_done(&sum);
                }
        }
        log_write(log, at, level, event, "%s", msg);
        if (level == LOG_LEVEL_DEBUG || streq(event, "state"))
                return;
        if (json_escape(msg, &quoted) < 0)
                return;
        details = strdup_printf("{\"message\":%s,\"level\":\"%s\"}", quoted, log_level_to_string(level));
        event_queue(n, level, event, details, at);
        if (event_is_notable(event) && n->dcs.ops->event_post)
                (void) n->dcs.ops->event_post(n->dcs.userdata, level >= LOG_LEVEL_WARNING ? "Warning" : "Normal",
                                              event, msg, clock_now(n->clock) + n->cfg->api_timeout, NULL);
}

static void publish_from(const struct observation *o, struct election_publish *pub) {
        *pub = (struct election_publish) {};
        if (o->pg_accepting && !o->pg_in_recovery) {
                pub->optime_timeline = o->pg_timeline;
                pub->optime_lsn = o->pg_lsn;
                /* Promoted: the hand-over's successor and final LSN have
                 * done their work (docs/handover.pml). */
                pub->clear_handover = o->successor_lsn > 0 || !isempty(o->successor);
        }
}

/* Signals the promotion and waits for it a second at most, so that the
 * loop (control socket, HTTP API, probes) never waits on a long end of
 * recovery: 1 when promoted, 0 when it is under way (decide() waits for
 * it, act counts from promote_since), < 0 when pg_promote() failed. */
/* The promote call: a wait of 1 s in pg_promote() and the round trip. */
#define PROMOTE_CALL_TIMEOUT (3 * USEC_PER_SEC)

static int do_promote(struct node *n, char **reterr_msg) {
        _cleanup_(pgconn_closep) PGconn *c = NULL;
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        _cleanup_free_ char *ci = NULL;
        int r;

        /* A connection of its own: the wait is longer than the agent's
         * statement_timeout may be. A server that ended recovery since the
         * observation answers true (pg_promote() would raise an error). */
        r = node_local_conninfo(n, &ci);
        if (r < 0)
                return r;
        r = pgconn_connect(ci, "pglease-agent", n->cfg->connect_timeout, PROMOTE_CALL_TIMEOUT, &c, reterr_msg);
        if (r < 0)
                return r;
        r = pgconn_exec(c, "SELECT CASE WHEN pg_is_in_recovery() THEN pg_promote(true, 1) ELSE true END", 0, NULL, &res,
                        reterr_msg);
        if (r < 0)
                return r;
        if (PQntuples(res) != 1)
                return set_error_msg(reterr_msg, "pg_promote() returned %d rows", PQntuples(res)), -EPROTO;
        if (!streq(PQgetvalue(res, 0, 0), "t"))
                return 0;
        node_local_reset(n);
        return 1;
}

static int start_postgres(struct node *n, const struct logger *log) {
        _cleanup_free_ char *err = NULL;
        int r;

        /* A short wait: the next tick sees whether it accepts connections,
         * and a holder keeps renewing meanwhile. */
        r = pgctl_start(&n->pgctl, 2 * n->cfg->retry_period, &err);
        if (r == -ETIMEDOUT)
                log_write(log, clock_realtime(n->clock), LOG_LEVEL_INFO, "start", "PostgreSQL is starting");
        else if (r < 0)
                log_write(log, clock_realtime(n->clock), LOG_LEVEL_ERROR, "start", "cannot start PostgreSQL: %s", strempty(err));
        return r;
}

static int do_start_standby(struct node *n, const struct logger *log, const struct action *a) {
        _cleanup_free_ char *err = NULL, *slot = NULL;
        struct upstream u;
        int r;

        /* Safety rule 3: the marker is written before Postgres starts. */
        if (a->target) {
                node_replication_upstream(n, a->target, a->port, &u);
                r = replication_slot_name(n->cfg->node_name, &slot);
                if (r >= 0)
                        r = replication_write_standby_config(n->cfg->data_dir, &u, slot, &err);
        } else
                r = pgctl_write_standby_marker(n->cfg->data_dir);
        if (r < 0) {
                event_emit(n, log, LOG_LEVEL_ERROR, "start", "cannot write the standby configuration: %s", err ? err : strerror(-r));
                return r;
        }
        /* An event, not only a log line: a revived node's return shows in
         * cluster events (issue 19, item 4). */
        if (a->target)
                event_emit(n, log, LOG_LEVEL_INFO, "start", "starting PostgreSQL as a standby of %s:%d", a->target, a->port);
        else
                event_emit(n, log, LOG_LEVEL_INFO, "start", "starting PostgreSQL as a standby (no leader known yet)");
        return start_postgres(n, log);
}

static int do_follow(struct node *n, const struct logger *log, const struct action *a) {
        _cleanup_free_ char *err = NULL, *slot = NULL;
        struct upstream u;
        PGconn *c;
        int r;

        c = node_local(n, &err);
        if (!c)
                return -ECONNREFUSED;
        node_replication_upstream(n, a->target, a->port, &u);
        r = replication_slot_name(n->cfg->node_name, &slot);
        if (r >= 0)
                r = replication_follow(c, &u, slot, &err);
        if (r < 0)
                event_emit(n, log, LOG_LEVEL_ERROR, "follow", "cannot follow %s:%d: %s", a->target, a->port, strempty(err));
        else
                event_emit(n, log, LOG_LEVEL_INFO, "follow", "now following the primary at %s:%d", a->target, a->port);
        return r;
}

static int reclone(struct node *n, const struct logger *log, const struct action *a, char **reterr_msg) {
        struct clone_options co;
        int r;

        r = rm_rf(n->cfg->data_dir);
        if (r < 0)
                return set_error_msg(reterr_msg, "cannot empty %s: %s", n->cfg->data_dir, strerror(-r)), r;
        co = (struct clone_options) {
                .bindir = n->bindir,
                .node_name = n->cfg->node_name,
                .datadir = n->cfg->data_dir,
                .password_file = n->replication_password_file,
                .source_dbname = n->cfg->database,
                .timeout = n->cfg->clone_timeout,
                .keep_failed = n->cfg->clone_keep_failed,
                .clock = n->clock,
        };
        node_replication_upstream(n, a->target, a->port, &co.source);
        return replication_clone(&co, reterr_msg);
}

/* Safety rule 5: divergence is repaired, never ignored. */
static int do_rejoin(struct node *n, const struct logger *log, struct agent_state *s, const struct action *a) {
        _cleanup_free_ char *err = NULL, *slot = NULL;
        struct pgctl_controldata cd = {};
        enum timeline_fork fork = TIMELINE_SAME_HISTORY;
        struct upstream repl;
        int r;

        node_replication_upstream(n, a->target, a->port, &repl);
        r = replication_slot_name(n->cfg->node_name, &slot);
        if (r < 0)
                return r;
        r = pgctl_controldata(n->bindir, n->cfg->data_dir, n->cfg->stop_timeout, &cd, &err);
        if (r >= 0 && cd.state == PGCTL_DB_IN_ARCHIVE_RECOVERY) {
                /* A standby that crashed: no single-user recovery (it would
                 * write WAL of its own); it recovers as a standby, and the
                 * divergence check stops it cleanly if it cannot stream. */
                fork = TIMELINE_SAME_HISTORY;
        } else {
                err = mfree(err);
                r = replication_ensure_clean_shutdown(n->bindir, n->cfg->data_dir, n->cfg->stop_timeout * 4, n->clock, &err);
                if (r >= 0)
                        r = replication_timeline_forked(n->bindir, n->cfg->data_dir, &repl, n->cfg->stop_timeout, n->clock, &fork, &err);
        }
        if (r >= 0 && fork == TIMELINE_FORKED_SAME_NUMBER) {
                /* pg_rewind would see "the same timeline" and change
                 * nothing; streaming would then mix two histories. */
                (void) set_error_msg(&err, "this server's timeline %" PRIu32 " is another branch than the primary's "
                                     "timeline of the same number (two promotions chose it): pg_rewind cannot repair that",
                                     cd.timeline);
                r = -EXDEV;
        } else if (r >= 0 && fork == TIMELINE_FORKED) {
                struct rewind_options ro = {
                        .bindir = n->bindir,
                        .datadir = n->cfg->data_dir,
                        .password_file = n->rewind_password_file,
                        .standby = repl,
                        .slot_name = slot,
                        .clock = n->clock,
                };

                node_rewind_upstream(n, a->target, a->port, &ro.source);
                event_emit(n, log, LOG_LEVEL_INFO, "rejoin", "timeline forked from the primary's: rewinding from %s:%d", a->target, a->port);
                err = mfree(err);
                r = replication_rewind(&ro, &err);
        } else if (r >= 0)
                r = replication_write_standby_config(n->cfg->data_dir, &repl, slot, &err);
        if (r < 0 && n->cfg->rejoin_fallback == REJOIN_FALLBACK_CLONE) {
                event_emit(n, log, LOG_LEVEL_WARNING, "rejoin", "rewind impossible or failed (%s): cloning again from %s:%d",
                           strempty(err), a->target, a->port);
                err = mfree(err);
                r = reclone(n, log, a, &err);
        }
        if (r < 0) {
                event_emit(n, log, LOG_LEVEL_ERROR, "rejoin", "cannot rejoin as a standby of %s:%d: %s%s", a->target, a->port,
                           strempty(err), n->cfg->rejoin_fallback == REJOIN_FALLBACK_NONE ? "; holding PostgreSQL stopped (rejoin_fallback = none)" : "");
                if (n->cfg->rejoin_fallback == REJOIN_FALLBACK_NONE) {
                        s->kind = AGENT_STOPPED;
                        s->rejoin_failed = true;
                }
                return r;
        }
        err = mfree(err);
        /* pg_rewind and pg_basebackup copied the source's settings file
         * (its port, listen_addresses, socket directory). */
        r = node_write_local_settings(n, &err);
        if (r < 0) {
                event_emit(n, log, LOG_LEVEL_ERROR, "rejoin", "%s", strempty(err));
                return r;
        }
        s->was_primary = false;
        event_emit(n, log, LOG_LEVEL_INFO, "rejoin", "rejoined as a standby of %s:%d", a->target, a->port);
        return start_postgres(n, log);
}

static void do_record_promotion(struct node *n, const struct logger *log, const struct action *a) {
        /* Best effort: written now or by a later tick (metadata-work.c). */
        static const char *const reasons[] = { "bootstrap", "failover", "switchover", "demote" };
        const char *reason = "failover";

        /* A static string: the row may be written ticks later. */
        for (size_t i = 0; i < ELEMENTSOF(reasons); i++)
                if (a->target && streq(a->target, reasons[i]))
                        reason = reasons[i];
        metadata_work_history(n, log, node_local(n, NULL), a->timeline, a->lsn, reason, a->names ? a->names[0] : NULL);
}


/* userdata: the refusal's reason, left on the lease for agentctl. */
static int clear_switchover(struct dcs_leader *l, void *userdata) {
        char *why = userdata ? strdup(userdata) : NULL;

        if (userdata && !why)
                return -ENOMEM;
        l->switchover = mfree(l->switchover);
        free(l->switchover_refused);
        l->switchover_refused = why;
        return 0;
}

/* synchronous_standby_names = 'ANY k ("a", "b")' with k = the number of
 * names, so that every listed standby has every acknowledged commit; "*"
 * alone (strict mode, nobody fit) blocks writes until a standby connects. */
static int do_set_sync(struct node *n, const struct logger *log, const struct action *a) {
        _cleanup_free_ char *value = NULL, *err = NULL;
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        size_t k = strv_length(a->names), len = 0;
        char *lit, *sql;
        FILE *f;
        PGconn *c;
        int r;

        c = node_local(n, &err);
        if (!c)
                return -ECONNREFUSED;
        f = open_memstream(&value, &len);
        if (!f)
                return -ENOMEM;
        if (k == 1 && streq(a->names[0], "*"))
                fputs("*", f);
        else if (k > 0) {
                fprintf(f, "ANY %zu (", k);
                for (size_t i = 0; i < k; i++) {
                        char *id = PQescapeIdentifier(c, a->names[i], strlen(a->names[i]));

                        if (!id) {
                                fclose(f);
                                return -ENOMEM;
                        }
                        fprintf(f, "%s%s", i ? ", " : "", id);
                        PQfreemem(id);
                }
                fputs(")", f);
        }
        if (fclose(f) != 0)
                return -ENOMEM;
        lit = PQescapeLiteral(c, value, strlen(value));
        if (!lit)
                return -ENOMEM;
        sql = strdup_printf("ALTER SYSTEM SET synchronous_standby_names = %s", lit);
        PQfreemem(lit);
        if (!sql)
                return -ENOMEM;
        r = pgconn_exec(c, sql, 0, NULL, NULL, &err);
        free(sql);
        if (r >= 0)
                r = pgconn_exec(c, "SELECT pg_reload_conf()", 0, NULL, &res, &err);
        event_emit(n, log, r < 0 ? LOG_LEVEL_ERROR : LOG_LEVEL_INFO, "sync", "%s synchronous_standby_names = '%s'%s%s",
                   r < 0 ? "cannot set" : "set", value, r < 0 ? ": " : "", r < 0 ? strempty(err) : "");
        return r;
}

/* Safety rule 1: the supervisor's lease-expiry backstop is removed only
 * once PostgreSQL is confirmed stopped or read-only; until then the fence
 * is escalated (the supervisor's SIGKILL, then ours) and the file stays, so
 * that nothing (a release, a fence that failed) leaves a writable primary
 * without it. Returns whether it was lifted. */
static bool backstop_lift(struct node *n, const struct logger *log, const struct observation *o) {
        _cleanup_free_ char *err = NULL;

        if (!fence_write_safe(&n->pgctl, o->pg_accepting && o->pg_in_recovery)) {
                n->backstop_held = true;
                event_emit(n, log, LOG_LEVEL_ERROR, "fence", "PostgreSQL is not confirmed stopped: escalating to SIGKILL through the supervisor");
                if (fence_escalate(&n->pgctl, n->cfg->run_dir, n->clock, FENCE_ESCALATION_WAIT, &err) < 0) {
                        event_emit(n, log, LOG_LEVEL_ERROR, "fence", "PostgreSQL may still accept writes: %s; the supervisor's lease-expiry backstop stays in force",
                                   strempty(err));
                        return false;
                }
        }
        (void) lease_file_remove(n->cfg->run_dir);
        n->backstop_held = false;
        return true;
}

/* The planned hand-over: checkpoint (so the shutdown is short), fast stop
 * (the walsenders ship everything up to the shutdown checkpoint to the
 * connected standbys), read the final LSN from the control file, point the
 * old primary at the target, release the lease naming the target and that
 * LSN. The target promotes once it has replayed it: nothing is lost. */
static int do_switchover(struct node *n, const struct logger *log, struct agent_state *s,
                         const struct observation *o, const struct action *a) {
        _cleanup_free_ char *err = NULL, *slot = NULL;
        struct pgctl_controldata cd = {};
        const struct peer_observation *p = observation_peer(o, a->target);
        struct upstream u;
        PGconn *c;
        int r;

        c = node_local(n, NULL);
        if (c)
                (void) pgconn_exec(c, "CHECKPOINT", 0, NULL, NULL, NULL);
        node_local_reset(n);
        r = pgctl_stop(&n->pgctl, PGCTL_STOP_FAST, n->cfg->stop_timeout, &err);
        if (r < 0) {
                event_emit(n, log, LOG_LEVEL_ERROR, "switchover", "fast stop failed (%s): fencing instead", strempty(err));
                err = mfree(err);
                (void) pgctl_fence(&n->pgctl, n->cfg->stop_timeout, &err);
        }
        r = pgctl_controldata(n->bindir, n->cfg->data_dir, n->cfg->stop_timeout, &cd, &err);
        if (r < 0)
                event_emit(n, log, LOG_LEVEL_WARNING, "switchover", "cannot read the final LSN (%s): the target waits one lease duration at most", strempty(err));
        /* Safety rule 3: it comes back only as a standby of the target. */
        if (p && p->host) {
                node_replication_upstream(n, p->host, p->port, &u);
                if (replication_slot_name(n->cfg->node_name, &slot) >= 0)
                        (void) replication_write_standby_config(n->cfg->data_dir, &u, slot, NULL);
        } else
                (void) pgctl_write_standby_marker(n->cfg->data_dir);
        /* Safety rule 1: no release before the stop is confirmed. The
         * renewer stops first: a renewal after the lift would re-arm the
         * supervisor's watchdog over the standby this node becomes. */
        renewer_stop(n->renewer, &n->election);
        if (!backstop_lift(n, log, o))
                return -EBUSY;
        err = mfree(err);
        /* Kept so that a release that does not get through is written
         * again on the next tick with the same final LSN. */
        s->handover_lsn = r >= 0 ? cd.checkpoint_lsn : 0;
        n->election.release_reason = s->demote_requested ? "demote" : "switchover";
        r = election_release(&n->election, a->target, s->handover_lsn, &err);
        n->election.release_reason = NULL;
        event_emit(n, log, r < 0 ? LOG_LEVEL_ERROR : LOG_LEVEL_INFO, s->demote_requested ? "demote" : "switchover",
                   "%s the lease to %s at LSN %" LSN_FMT "%s%s", r < 0 ? "could not release" : "released", a->target,
                   LSN_ARGS(cd.checkpoint_lsn), r < 0 ? ": " : "", r < 0 ? strempty(err) : "");
        n->schema_ready = false;
        return r;
}

static int act_one(struct node *n, const struct logger *log, struct agent_state *s, const struct observation *o,
                   const struct action *a, bool *redecide) {
        _cleanup_free_ char *err = NULL;
        struct election_publish pub;
        int r = 0;

        switch (a->kind) {
        case ACTION_EVENT:
                event_emit(n, log, a->level, a->event, "%s", strempty(a->message));
                break;
        case ACTION_ACQUIRE:
                publish_from(o, &pub);
                /* Failsafe mode: a promise given since this tick's
                 * observation (on the responder's thread) still binds. */
                if (n->failsafe_acquire && n->failsafe_acquire(n->failsafe_userdata, o->lease_holder, true, false) < 0) {
                        event_emit(n, log, LOG_LEVEL_INFO, "failsafe", "not taking the lease of %s: this member answered its POST /failsafe",
                                   strempty(o->lease_holder));
                        r = -EBUSY;
                        break;
                }
                r = election_acquire(&n->election, &pub, &err);
                if (n->failsafe_acquire)
                        (void) n->failsafe_acquire(n->failsafe_userdata, o->lease_holder, false, r >= 0);
                if (r >= 0)
                        (void) renewer_start(n->renewer, n->election.observed, n->election.last_renew_sent);
                if (r >= 0) {
                        /* Answers given to an earlier term are not this one's. */
                        node_failsafe_forget(n);
                        n->backstop_held = false;
                        /* The supervisor's watchdog (safety rule 1), see lease-file.h. */
                        (void) lease_file_write(n->cfg->run_dir, n->election.last_renew_sent + election_renew_deadline(&n->election));
                        event_emit(n, log, LOG_LEVEL_INFO, "acquire", "took the leader lease");
                        *redecide = true;
                } else
                        log_write(log, clock_realtime(n->clock), r == -ESTALE ? LOG_LEVEL_INFO : LOG_LEVEL_WARNING, "acquire",
                                  "could not take the lease: %s", err ? err : strerror(-r));
                break;
        case ACTION_RENEW:
                publish_from(o, &pub);
                pub.optime_lsn = a->lsn ? a->lsn : pub.optime_lsn;
                pub.set_sync = a->set_sync;
                pub.sync = a->names;
                pub.sync_mode = a->set_sync ? a->sync_mode : DCS_SYNC_MODE_UNKNOWN;
                pub.set_failsafe = a->set_failsafe;
                pub.failsafe = a->failsafe_names;
                /* The renewer renews on its own timer (and rewrites the
                 * lease-expiry file); a new sync list is waited for (safety
                 * rule 4), and so is the end of a hand-over (the next
                 * switchover request is refused until it is published); the
                 * optime is not. */
                if (n->renewer)
                        r = renewer_publish(n->renewer, &pub, pub.set_sync || pub.clear_handover, &err);
                else
                        r = election_renew(&n->election, &pub, &err);
                if (r >= 0) {
                        n->backstop_held = false;
                        if (!n->renewer)
                                (void) lease_file_write(n->cfg->run_dir, n->election.last_renew_sent + election_renew_deadline(&n->election));
                } else
                        log_write(log, clock_realtime(n->clock), LOG_LEVEL_WARNING, "renew", "renewal failed: %s (%" PRIu64 "ms left before fencing)",
                                  err ? err : strerror(-r), election_renew_remaining(&n->election, clock_now(n->clock)) / USEC_PER_MSEC);
                break;
        case ACTION_RELEASE:
                /* Safety rule 1: the backstop goes only after the stop is
                 * confirmed, and the lease only after the backstop; the
                 * renewer stops first so that it cannot re-arm it. */
                renewer_stop(n->renewer, &n->election);
                if (!backstop_lift(n, log, o)) {
                        event_emit(n, log, LOG_LEVEL_ERROR, "release", "not releasing the lease: PostgreSQL is not confirmed stopped or read-only");
                        r = -EBUSY;
                        break;
                }
                r = election_release(&n->election, a->target, a->lsn, &err);
                event_emit(n, log, r < 0 ? LOG_LEVEL_ERROR : LOG_LEVEL_INFO, "release", "%s the lease%s%s%s%s",
                           r < 0 ? "could not release" : "released", a->target ? " to " : "", strempty(a->target),
                           r < 0 ? ": " : "", r < 0 ? strempty(err) : "");
                break;
        case ACTION_PROMOTE:
                r = do_promote(n, &err);
                if (r < 0) {
                        event_emit(n, log, LOG_LEVEL_ERROR, "promote", "pg_promote() failed: %s", err ? err : strerror(-r));
                        s->promote_failures++;
                        s->promote_since = 0;
                } else if (r == 0) {
                        if (!s->promote_since)
                                s->promote_since = MAX(clock_now(n->clock), (usec_t) 1);
                        event_emit(n, log, LOG_LEVEL_INFO, "promote", "promotion under way: PostgreSQL is finishing its recovery");
                } else {
                        s->promote_failures = 0;
                        s->promote_since = 0;
                        *redecide = true;
                }
                break;
        case ACTION_FENCE:
                renewer_stop(n->renewer, &n->election);
                if (o->pg_refusing) {
                        /* A frozen postmaster acts on no SIGQUIT: SIGKILL
                         * of it and all its processes (they cannot commit
                         * once more when resumed), as the supervisor's fence. */
                        (void) pgctl_write_standby_marker(n->cfg->data_dir);
                        r = fence_escalate(&n->pgctl, n->cfg->run_dir, n->clock, FENCE_ESCALATION_WAIT, &err);
                } else
                        r = pgctl_fence(&n->pgctl, n->cfg->stop_timeout, &err);
                (void) backstop_lift(n, log, o);
                n->election.leader = false;
                n->schema_ready = false;
                node_local_reset(n);
                event_emit(n, log, r < 0 ? LOG_LEVEL_ERROR : LOG_LEVEL_WARNING, "fence", "%s%s",
                           r < 0 ? "fencing failed: " : "PostgreSQL stopped with the standby marker written",
                           r < 0 ? strempty(err) : "");
                break;
        case ACTION_START:
                r = start_postgres(n, log);
                break;
        case ACTION_START_STANDBY:
                r = do_start_standby(n, log, a);
                break;
        case ACTION_FOLLOW:
                r = do_follow(n, log, a);
                break;
        case ACTION_REJOIN:
                r = do_rejoin(n, log, s, a);
                break;
        case ACTION_RECORD_PROMOTION:
                do_record_promotion(n, log, a);
                break;
        case ACTION_SET_SYNC:
                r = do_set_sync(n, log, a);
                break;
        case ACTION_SWITCHOVER:
                r = do_switchover(n, log, s, o, a);
                break;
        case ACTION_CLEAR_SWITCHOVER:
                r = election_update_annotations(&n->election, clear_switchover, (void *) a->target, &err);
                if (r < 0)
                        log_write(log, clock_realtime(n->clock), LOG_LEVEL_WARNING, "switchover", "cannot clear the request: %s", strempty(err));
                break;
        case ACTION_STOP:
                r = pgctl_stop(&n->pgctl, PGCTL_STOP_FAST, n->cfg->stop_timeout, &err);
                node_local_reset(n);
                event_emit(n, log, r < 0 ? LOG_LEVEL_ERROR : LOG_LEVEL_INFO, a->target ? a->target : "stop", "%s%s",
                           r < 0 ? "cannot stop PostgreSQL: " : "PostgreSQL stopped cleanly and held down", r < 0 ? strempty(err) : "");
                break;
        case ACTION_FAILSAFE_ASK:
                /* The daemon's failsafe client asks, on a thread of its own
                 * (agent/failsafe-client.c): the loop may be waiting on the
                 * API server that is down. */
                break;
        case ACTION_DEMOTE_DONE:
                event_emit(n, log, a->lsn ? LOG_LEVEL_INFO : LOG_LEVEL_ERROR, "demote", "pre-stop hand-over done: %s", strempty(a->target));
                if (n->demote_done)
                        n->demote_done(n->demote_userdata, a->lsn != 0, a->target);
                break;
        default:
                break;
        }
        return r;
}

int act(struct node *n, const struct logger *log, struct agent_state *s, const struct observation *o,
        const struct action_list *l, bool *ret_redecide) {
        bool redecide = false;

        /* Failsafe mode: what decide() granted, to both lease clocks (the
         * renewer's fences and writes the supervisor's lease-expiry). */
        n->election.failsafe_until = n->election.leader ? MAX(n->election.failsafe_until, s->failsafe_until) : 0;
        renewer_failsafe(n->renewer, n->election.failsafe_until);

        /* Fences and the renewal first: under a slow API server, the
         * other calls of a tick (events, follows) must not push the
         * renewal past its deadline, nor delay a fence. */
        for (size_t i = 0; i < l->n; i++)
                if (l->items[i].kind == ACTION_FENCE || l->items[i].kind == ACTION_RENEW)
                        (void) act_one(n, log, s, o, &l->items[i], &redecide);
        for (size_t i = 0; i < l->n; i++)
                if (l->items[i].kind != ACTION_FENCE && l->items[i].kind != ACTION_RENEW)
                        (void) act_one(n, log, s, o, &l->items[i], &redecide);
        *ret_redecide = redecide;
        return 0;
}

static const char *status_for(const struct agent_state *s, const struct observation *o) {
        if (o->supervisor_gone)
                return "no supervisor";
        switch (s->kind) {
        case AGENT_FENCED:
                return "fenced";
        case AGENT_REJOINING:
                return "rejoining";
        case AGENT_STOPPED:
                return "stopped";
        case AGENT_PROMOTING:
                return "promoting";
        case AGENT_DEMOTING:
                return "demoting";
        default:
                break;
        }
        if (!o->pg_data_present)
                return "cloning";
        if (!o->pg_running)
                return "stopped";
        if (o->pg_refusing)
                return "not accepting connections";
        if (!o->pg_accepting)
                return "starting";
        if (!o->pg_in_recovery)
                return "running";
        return o->pg_streaming ? "streaming" : "replica";
}

int act_member_record(const struct node *n, const struct agent_state *s, const struct observation *o,
                      struct dcs_member *ret) {
        *ret = (struct dcs_member) {
                .role = !o->pg_accepting ? MEMBER_ROLE_UNKNOWN
                        : !o->pg_in_recovery && s->kind == AGENT_PRIMARY ? MEMBER_ROLE_PRIMARY
                        : o->pg_in_recovery ? MEMBER_ROLE_REPLICA : MEMBER_ROLE_UNKNOWN,
                .timeline = o->pg_timeline,
                .lsn = o->pg_lsn,
                .replay_lsn = o->pg_replay_lsn,
                .port = (int) n->cfg->pg_port,
                .failsafe_port = node_failsafe_port(n),
                .priority = (int) n->cfg->priority,
                .nofailover = n->cfg->nofailover,
        };
        ret->name = strdup(n->cfg->node_name);
        ret->state = strdup(status_for(s, o));
        ret->host = strdup(node_connect_host(n));
        ret->tags = strdup(strempty(n->cfg->tags));
        ret->api_version = strdup(PGLEASE_VERSION);
        if (!ret->name || !ret->state || !ret->host || !ret->tags || !ret->api_version) {
                dcs_member_done(ret);
                return -ENOMEM;
        }
        return 0;
}

/* The record is written when it changed, or every status_interval so that
 * its heartbeat shows the agent alive. LSNs change on every tick of a busy
 * primary: they alone do not count as a change. */
static void publish_member(struct node *n, const struct logger *log, const struct agent_state *s, const struct observation *o) {
        _cleanup_free_ char *key = NULL, *err = NULL;
        struct dcs_member m;
        usec_t now = clock_now(n->clock);
        int r;

        if (act_member_record(n, s, o, &m) < 0)
                return;
        key = strdup_printf("%s|%s|%" PRIu32 "|%s|%d|%d|%" PRId64 "|%d", member_role_to_string(m.role), m.state, m.timeline,
                            m.host, m.port, m.failsafe_port, (int64_t) m.priority, m.nofailover);
        if (key && n->last_published && streq(key, n->last_published) && now - n->last_publish < n->cfg->status_interval) {
                dcs_member_done(&m);
                return;
        }
        m.heartbeat = clock_realtime(n->clock);
        r = n->dcs.ops->member_publish(n->dcs.userdata, &m, now + n->cfg->api_timeout, &err);
        dcs_member_done(&m);
        if (r < 0) {
                log_write(log, clock_realtime(n->clock), LOG_LEVEL_WARNING, "publish", "cannot publish the member record: %s", strempty(err));
                return;
        }
        n->last_publish = now;
        free(n->last_published);
        n->last_published = TAKE_PTR(key);
}

static void primary_housekeeping(struct node *n, const struct logger *log, const struct observation *o) {
        _cleanup_strv_free_ char **names = NULL, **created = NULL, **dropped = NULL;
        _cleanup_free_ char *err = NULL;
        usec_t now = clock_now(n->clock);
        PGconn *c;

        c = node_local(n, &err);
        if (!c)
                return;
        for (size_t i = 0; i < o->n_peers; i++)
                if (strv_extend(&names, o->peers[i].name) < 0)
                        return;
        if (!names && !(names = calloc(1, sizeof(char *))))
                return;
        err = mfree(err);
        if (replication_slots_sync(c, (const char *const *) names, now, &n->slots, n->cfg->slot_retention, &created, &dropped, &err) < 0)
                log_write(log, clock_realtime(n->clock), LOG_LEVEL_WARNING, "slots", "cannot maintain replication slots: %s", strempty(err));
        for (char **s = created; s && *s; s++)
                event_emit(n, log, LOG_LEVEL_INFO, "slot", "created replication slot %s", *s);
        for (char **s = dropped; s && *s; s++)
                event_emit(n, log, LOG_LEVEL_INFO, "slot", "dropped replication slot %s: its member has been gone longer than slot_retention", *s);
        /* Slots first: they need no commit, while the writes below wait
         * for a synchronous standby, which cannot stream without its slot. */
        metadata_work_primary(n, log, c, o);
}

void act_housekeeping(struct node *n, const struct logger *log, const struct agent_state *s,
                      const struct observation *o) {
        /* A fence not yet confirmed: look again, escalate again. */
        if (n->backstop_held && !n->election.leader)
                (void) backstop_lift(n, log, o);
        if (o->lease_read || n->last_publish == 0)
                publish_member(n, log, s, o);
        if (s->kind == AGENT_PRIMARY && o->pg_accepting && !o->pg_in_recovery) {
                primary_housekeeping(n, log, o);
                return;
        }
        if (n->schema_ready)
                metadata_work_reset(&n->metadata);
        n->schema_ready = false;
        if (o->leader_host && metadata_event_queue_size(&n->events) > 0) {
                PGconn *c = node_primary(n, o->leader_host, o->leader_port, NULL);

                if (c && metadata_event_queue_flush(&n->events, c, n->cfg->metadata_schema, NULL, NULL) < 0)
                        node_primary_reset(n);
        }
}
