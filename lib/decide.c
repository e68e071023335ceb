/* decide.c: the failover policy as a pure function: an observation, the
 * agent's state and the time in, the actions to take out. No I/O here; the
 * safety rules of docs/design.md are enforced in this one place. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "decide.h"
#include "util.h"

/* pg_promote() failures in a row before a holder hands the lease to a
 * member that may do better (decide_holder_standby). */
#define PROMOTE_FAILURES_BEFORE_HANDOVER 3u
/* A promotion signalled and not finished after this counts as failed (it
 * was pg_promote()'s own wait when the agent waited in it). */
#define PROMOTE_WAIT_LIMIT (60 * USEC_PER_SEC)

static const char *const state_names[_AGENT_STATE_MAX] = {
        [AGENT_STARTING] = "starting",
        [AGENT_REPLICA] = "replica",
        [AGENT_CANDIDATE] = "candidate",
        [AGENT_PROMOTING] = "promoting",
        [AGENT_PRIMARY] = "primary",
        [AGENT_FENCED] = "fenced",
        [AGENT_DEMOTING] = "demoting",
        [AGENT_REJOINING] = "rejoining",
        [AGENT_STOPPED] = "stopped",
};

const char *agent_state_to_string(enum agent_state_kind k) {
        if ((unsigned) k >= _AGENT_STATE_MAX)
                return "invalid";
        return state_names[k];
}

static const char *const action_names[_ACTION_KIND_MAX] = {
        [ACTION_ACQUIRE] = "acquire",
        [ACTION_RENEW] = "renew",
        [ACTION_RELEASE] = "release",
        [ACTION_PROMOTE] = "promote",
        [ACTION_FENCE] = "fence",
        [ACTION_START] = "start",
        [ACTION_START_STANDBY] = "start-standby",
        [ACTION_FOLLOW] = "follow",
        [ACTION_REJOIN] = "rejoin",
        [ACTION_RECORD_PROMOTION] = "record-promotion",
        [ACTION_EVENT] = "event",
        [ACTION_SET_SYNC] = "set-sync",
        [ACTION_SWITCHOVER] = "switchover",
        [ACTION_CLEAR_SWITCHOVER] = "clear-switchover",
        [ACTION_STOP] = "stop",
        [ACTION_DEMOTE_DONE] = "demote-done",
        [ACTION_FAILSAFE_ASK] = "failsafe-ask",
};

const char *action_kind_to_string(enum action_kind k) {
        if ((unsigned) k >= _ACTION_KIND_MAX)
                return "invalid";
        return action_names[k];
}

void observation_done(struct observation *o) {
        free(o->pg_upstream_host);
        free(o->pg_conninfo_host);
        free(o->lease_holder);
        free(o->successor);
        free(o->handover);
        free(o->switchover);
        strv_free(o->sync);
        free(o->leader_host);
        strv_free(o->pg_sync_names);
        for (size_t i = 0; i < o->n_replicas; i++)
                free(o->replicas[i].name);
        free(o->replicas);
        for (size_t i = 0; i < o->n_peers; i++) {
                free(o->peers[i].name);
                free(o->peers[i].state);
                free(o->peers[i].host);
        }
        free(o->peers);
        strv_free(o->lease_failsafe);
        for (size_t i = 0; i < o->n_failsafe; i++)
                free(o->failsafe[i].name);
        free(o->failsafe);
        *o = (struct observation) {};
}

const struct peer_observation *observation_peer(const struct observation *o, const char *name) {
        for (size_t i = 0; name && i < o->n_peers; i++)
                if (streq(o->peers[i].name, name))
                        return &o->peers[i];
        return NULL;
}

int agent_state_init(struct agent_state *s, const struct decide_options *o) {
        *s = (struct agent_state) { .kind = AGENT_STARTING, .opt = *o };
        s->opt.name = strdup(o->name);
        return s->opt.name ? 0 : -ENOMEM;
}

void agent_state_done(struct agent_state *s) {
        free(s->opt.name);
        free(s->handover_target);
        free(s->last_other_holder);
        free(s->follow_leader);
        strv_free(s->sync_pending);
        free(s->sync_pending_lsn);
        failsafe_promises_done(&s->failsafe_promises);
        *s = (struct agent_state) {};
}

void action_list_done(struct action_list *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].target);
                free(l->items[i].event);
                free(l->items[i].message);
                strv_free(l->items[i].names);
                strv_free(l->items[i].failsafe_names);
        }
        l->n = 0;
}

const struct action *action_list_find(const struct action_list *l, enum action_kind k) {
        for (size_t i = 0; i < l->n; i++)
                if (l->items[i].kind == k)
                        return &l->items[i];
        return NULL;
}

bool action_list_has(const struct action_list *l, enum action_kind k) {
        return action_list_find(l, k) != NULL;
}

static struct action *push(struct action_list *l, enum action_kind k, const char *target) {
        struct action *a;

        if (l->n >= ACTIONS_MAX)
                return NULL;
        a = &l->items[l->n];
        *a = (struct action) { .kind = k };
        if (target) {
                a->target = strdup(target);
                if (!a->target)
                        return NULL;
        }
        l->n++;
        return a;
}

static void emit(struct action_list *l, enum log_level level, const char *event, const char *fmt, ...) _printf_(4, 5);
static void emit(struct action_list *l, enum log_level level, const char *event, const char *fmt, ...) {
        struct action *a = push(l, ACTION_EVENT, NULL);
        va_list ap;

        if (!a)
                return;
        a->level = level;
        a->event = strdup(event);
        va_start(ap, fmt);
        if (vasprintf(&a->message, fmt, ap) < 0)
                a->message = NULL;
        va_end(ap);
}

static void set_state(struct agent_state *s, struct action_list *l, enum agent_state_kind k, usec_t now) {
        if (s->kind == k)
                return;
        /* Failed promotions count within one attempt at leading. */
        if (k != AGENT_PROMOTING && k != AGENT_CANDIDATE) {
                s->promote_failures = 0;
                s->promote_since = 0;
        }
        emit(l, LOG_LEVEL_INFO, "state", "%s -> %s", agent_state_to_string(s->kind), agent_state_to_string(k));
        s->kind = k;
        s->since = now;
}

static bool in_sync_set(const struct observation *o, const char *name) {
        for (char **n = o->sync; n && *n; n++)
                if (streq(*n, name))
                        return true;
        return false;
}

/* Safety rule 4 follows what the leader published, not this node's own
 * synchronous_mode (a rolling configuration change, a node whose file
 * differs): a published set binds unless the leader published that it runs
 * with synchronous_mode = off. A record without the mode (an older agent
 * wrote it) binds too. An empty set means the leader ran without one. */
static bool sync_binding(const struct observation *o) {
        return o->sync && o->sync[0] && o->sync_mode != DCS_SYNC_MODE_OFF;
}

/* A member that may be promoted at all (safety rules 2 and 4). */
static bool eligible(const struct observation *o, const struct agent_state *s, const char *name,
                     int64_t priority, bool nofailover, uint64_t lsn) {
        if (nofailover || priority <= 0)
                return false;
        /* Safety rule 4: with synchronous mode on, only a standby that the
         * leader published as synchronous holds every acknowledged commit.
         * An empty published set means the leader ran without one. */
        if (sync_binding(o) && !in_sync_set(o, name))
                return false;
        if (o->optime_lsn > 0 && lsn + s->opt.maximum_lag_on_failover < o->optime_lsn)
                return false;
        return true;
}

struct candidate {
        const char *name;
        uint32_t timeline;
        uint64_t lsn;
        int64_t priority;
};

/* Safety rule 2's order: later timeline, then more WAL received, then higher
 * priority, then the lower name. */
static bool better(const struct candidate *a, const struct candidate *b) {
        if (a->timeline != b->timeline)
                return a->timeline > b->timeline;
        if (a->lsn != b->lsn)
                return a->lsn > b->lsn;
        if (a->priority != b->priority)
                return a->priority > b->priority;
        return strcmp(a->name, b->name) < 0;
}

/* A release named a successor that has not taken the lease for one lease
 * duration (lease_may_acquire says so for everyone else): it had its
 * chance (issue 14, item 3). Whoever takes the lease instead waits for the
 * final LSN, so nothing the old primary wrote is lost by passing it over. */
static bool successor_timed_out(const struct observation *o, const char *name) {
        return o->lease_read && o->lease_may_acquire && o->lease_holder && isempty(o->lease_holder) &&
                !isempty(o->successor) && streq(o->successor, name) && o->successor_lsn > 0;
}

static const char *pick(const struct observation *o, const struct agent_state *s, bool include_self) {
        struct candidate best = {}, c;
        bool have = false;

        if (include_self && o->pg_accepting && o->pg_in_recovery &&
            eligible(o, s, s->opt.name, s->opt.priority, s->opt.nofailover, o->pg_lsn)) {
                best = (struct candidate) { s->opt.name, o->pg_timeline, o->pg_lsn, s->opt.priority };
                have = true;
        }
        for (size_t i = 0; i < o->n_peers; i++) {
                const struct peer_observation *p = &o->peers[i];
                uint64_t lsn = MAX(p->receive_lsn, p->replay_lsn);

                if (!p->reachable || !p->in_recovery || !eligible(o, s, p->name, p->priority, p->nofailover, lsn) ||
                    successor_timed_out(o, p->name))
                        continue;
                c = (struct candidate) { p->name, p->timeline, lsn, p->priority };
                if (!have || better(&c, &best)) {
                        best = c;
                        have = true;
                }
        }
        return have ? best.name : NULL;
}

const char *decide_best_candidate(const struct observation *o, const struct agent_state *s) {
        return pick(o, s, true);
}

const char *decide_best_successor(const struct observation *o, const struct agent_state *s) {
        return pick(o, s, false);
}

/* Any reachable peer that is ahead of us in safety rule 2's order, even if
 * it may not be promoted itself: promoting past it would lose its WAL. */
static const struct peer_observation *peer_ahead(const struct observation *o, const struct agent_state *s) {
        struct candidate self = { s->opt.name, o->pg_timeline, o->pg_lsn, s->opt.priority };

        for (size_t i = 0; i < o->n_peers; i++) {
                const struct peer_observation *p = &o->peers[i];
                struct candidate c = { p->name, p->timeline, MAX(p->receive_lsn, p->replay_lsn), p->priority };

                if (!p->reachable || !p->in_recovery || successor_timed_out(o, p->name))
                        continue;
                /* Safety rule 4: WAL beyond what the synchronous standbys
                 * have was never acknowledged; an asynchronous standby that
                 * holds some must rewind, not block the promotion. */
                if (sync_binding(o) && !in_sync_set(o, p->name))
                        continue;
                if (c.timeline > self.timeline || (c.timeline == self.timeline && c.lsn > self.lsn))
                        return p;
        }
        return NULL;
}


/* ---- synchronous mode (safety rule 4) ---- */

static bool strv_has(char *const *l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

static const struct replica_observation *replica(const struct observation *o, const char *name) {
        for (size_t i = 0; i < o->n_replicas; i++)
                if (streq(o->replicas[i].name, name))
                        return &o->replicas[i];
        return NULL;
}

/* A standby fit to be synchronous: streaming from us now, and a member that
 * may be promoted at all. */
static bool sync_fit(const struct observation *o, const char *name) {
        const struct replica_observation *r = replica(o, name);
        const struct peer_observation *p = observation_peer(o, name);

        return r && r->streaming && p && !p->nofailover && p->priority > 0;
}

/* The standbys that should be synchronous: those published and still fit
 * first (no churn), then the most caught-up fit ones, up to the count. */
static int sync_desired(const struct observation *o, const struct agent_state *s, char ***ret) {
        _cleanup_strv_free_ char **d = calloc(1, sizeof(char *));
        size_t want = (size_t) s->opt.synchronous_node_count;
        int r;

        if (!d)
                return -ENOMEM;
        for (char **p = o->sync; p && *p && strv_length(d) < want; p++)
                if (!streq(*p, s->opt.name) && sync_fit(o, *p) && (r = strv_extend(&d, *p)) < 0)
                        return r;
        while (strv_length(d) < want) {
                const struct replica_observation *best = NULL;

                for (size_t i = 0; i < o->n_replicas; i++) {
                        const struct replica_observation *c = &o->replicas[i];

                        if (strv_has(d, c->name) || streq(c->name, s->opt.name) || !sync_fit(o, c->name))
                                continue;
                        if (!best || c->flush_lsn > best->flush_lsn ||
                            (c->flush_lsn == best->flush_lsn && strcmp(c->name, best->name) < 0))
                                best = c;
                }
                if (!best)
                        break;
                r = strv_extend(&d, best->name);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(d);
        return 0;
}

static bool same_set(char *const *a, char *const *b) {
        if (strv_length(a) != strv_length(b))
                return false;
        for (; a && *a; a++)
                if (!strv_has(b, *a))
                        return false;
        return true;
}

static int strv_union(char *const *a, char *const *b, char ***ret) {
        _cleanup_strv_free_ char **u = calloc(1, sizeof(char *));
        int r;

        if (!u)
                return -ENOMEM;
        for (char *const *p = a; p && *p; p++)
                if (!strv_has(u, *p) && (r = strv_extend(&u, *p)) < 0)
                        return r;
        for (char *const *p = b; p && *p; p++)
                if (!strv_has(u, *p) && (r = strv_extend(&u, *p)) < 0)
                        return r;
        *ret = TAKE_PTR(u);
        return 0;
}

static uint64_t sync_pending_lsn(const struct agent_state *s, const char *name) {
        for (size_t i = 0; i < s->n_sync_pending; i++)
                if (streq(s->sync_pending[i], name))
                        return s->sync_pending_lsn[i];
        return UINT64_MAX;
}

static int sync_pending_set(struct agent_state *s, char *const *names, uint64_t lsn) {
        strv_free(s->sync_pending);
        s->sync_pending = NULL;
        free(s->sync_pending_lsn);
        s->sync_pending_lsn = NULL;
        s->n_sync_pending = 0;
        for (char *const *p = names; p && *p; p++) {
                uint64_t *nl = realloc(s->sync_pending_lsn, (s->n_sync_pending + 1) * sizeof(uint64_t));

                if (!nl || strv_extend(&s->sync_pending, *p) < 0) {
                        free(nl == s->sync_pending_lsn ? NULL : nl);
                        return -ENOMEM;
                }
                s->sync_pending_lsn = nl;
                s->sync_pending_lsn[s->n_sync_pending++] = lsn;
        }
        return 0;
}

static struct action *push_names(struct action_list *l, enum action_kind k, char *const *names) {
        struct action *a = push(l, k, NULL);
        char **copy = calloc(1, sizeof(char *));

        if (!a || !copy) {
                free(copy);
                return a;
        }
        for (char *const *p = names; p && *p; p++)
                if (strv_extend(&copy, *p) < 0)
                        break;
        a->names = copy;
        a->set_sync = true;
        return a;
}

/* The published set, less ourselves (a new primary inherits the old
 * annotation, which may name it). */
static int published(const struct observation *o, const struct agent_state *s, char ***ret) {
        _cleanup_strv_free_ char **p = calloc(1, sizeof(char *));
        int r;

        if (!p)
                return -ENOMEM;
        for (char **n = o->sync; n && *n; n++)
                if (!streq(*n, s->opt.name) && (r = strv_extend(&p, *n)) < 0)
                        return r;
        *ret = TAKE_PTR(p);
        return 0;
}

/* One step a tick, in the order of safety rule 4: a standby enters
 * synchronous_standby_names (as ANY k of exactly k names, so every listed
 * standby holds every acknowledged commit) before it is published, and
 * leaves the publication before it leaves synchronous_standby_names.
 * Returns the sync list the renewal must publish via *ret_publish (NULL:
 * keep). */
static int decide_sync(const struct observation *o, struct agent_state *s, struct action_list *l, char ***ret_publish) {
        _cleanup_strv_free_ char **pub = NULL, **want = NULL, **list = NULL, **add = NULL;
        bool strict = s->opt.synchronous_mode == SYNCHRONOUS_STRICT;
        int r;

        *ret_publish = NULL;
        if ((r = published(o, s, &pub)) < 0)
                return r;
        if (s->opt.synchronous_mode == SYNCHRONOUS_OFF) {
                if (o->sync && o->sync[0])
                        *ret_publish = TAKE_PTR(pub), strv_free(*ret_publish), *ret_publish = calloc(1, sizeof(char *));
                else if (o->pg_sync_names && o->pg_sync_names[0])
                        push_names(l, ACTION_SET_SYNC, NULL);
                return 0;
        }
        if ((r = sync_desired(o, s, &want)) < 0 || (r = strv_union(pub, want, &list)) < 0)
                return r;
        /* 1. synchronous_standby_names must list exactly pub + want. */
        if (strv_length(list) == 0 && strict) {
                if (!strv_has(o->pg_sync_names, "*")) {
                        emit(l, LOG_LEVEL_WARNING, "sync", "synchronous_mode = strict and no standby is fit: writes wait until one is");
                        push_names(l, ACTION_SET_SYNC, (char *[]) { (char *) "*", NULL });
                }
                return 0;
        }
        if (!same_set(list, o->pg_sync_names)) {
                for (char **n = list; *n; n++)
                        if (!strv_has(o->pg_sync_names, *n) && (r = strv_extend(&add, *n)) < 0)
                                return r;
                if ((r = sync_pending_set(s, add, o->pg_lsn)) < 0)
                        return r;
                push_names(l, ACTION_SET_SYNC, list);
                return 0;
        }
        /* 2. Publish the wanted ones that have flushed everything since
         * they were listed. */
        for (char **n = want; *n; n++)
                if (!strv_has(pub, *n)) {
                        const struct replica_observation *rep = replica(o, *n);
                        uint64_t since = sync_pending_lsn(s, *n);

                        if (rep && (since == UINT64_MAX || rep->flush_lsn >= since) && (r = strv_extend(&add, *n)) < 0)
                                return r;
                }
        if (add) {
                _cleanup_strv_free_ char **next = NULL;

                if ((r = strv_union(pub, add, &next)) < 0)
                        return r;
                emit(l, LOG_LEVEL_INFO, "sync", "publishing %zu synchronous standby(s)", strv_length(next));
                *ret_publish = TAKE_PTR(next);
                return 0;
        }
        /* 3. Once every wanted one is published, unpublish the others (the
         * next tick removes them from synchronous_standby_names). */
        for (char **n = want; *n; n++)
                if (!strv_has(pub, *n))
                        return 0;
        if (strv_length(pub) > strv_length(want)) {
                if (strv_length(want) == 0) {
                        if (strict)
                                return 0;
                        emit(l, LOG_LEVEL_WARNING, "sync", "no synchronous standby is fit: falling back to asynchronous replication (synchronous_mode = on)");
                }
                *ret_publish = TAKE_PTR(want);
        }
        return 0;
}

static enum dcs_sync_mode sync_mode_published(const struct agent_state *s) {
        switch (s->opt.synchronous_mode) {
        case SYNCHRONOUS_ON:
                return DCS_SYNC_MODE_ON;
        case SYNCHRONOUS_STRICT:
                return DCS_SYNC_MODE_STRICT;
        default:
                return DCS_SYNC_MODE_OFF;
        }
}

static void renew(struct action_list *l, const struct observation *o) {
        struct action *a = push(l, ACTION_RENEW, NULL);

        if (a && o->pg_accepting && !o->pg_in_recovery) {
                a->lsn = o->pg_lsn;
                a->timeline = o->pg_timeline;
        }
}

static void release(struct action_list *l, const char *successor, uint64_t lsn) {
        struct action *a = push(l, ACTION_RELEASE, successor);

        if (a)
                a->lsn = lsn;
}

/* The holder's primary is lost (not back in time, or unsupervised): fence
 * first so that the old primary cannot come back as one, then release. */
static int fence_and_release(struct agent_state *s, usec_t now, struct action_list *l, const char *successor) {
        push(l, ACTION_FENCE, NULL);
        release(l, successor, 0);
        s->was_primary = true;
        s->primary_down_since = 0;
        set_state(s, l, AGENT_FENCED, now);
        return 0;
}

/* We hold the lease and our Postgres is down: wait for the supervisor to
 * bring it back, but not longer than primary_start_timeout. */
static int decide_holder_down(const struct observation *o, struct agent_state *s, usec_t now, struct action_list *l) {
        const char *successor;

        if (s->primary_down_since == 0) {
                /* A frozen postmaster is down since it last accepted a
                 * connection (the tick before), not since we noticed. */
                s->primary_down_since = o->pg_refusing && o->pg_accepted_at > 0 ? MIN(o->pg_accepted_at, now) : now;
                /* A holder whose server is still starting (bootstrap, a
                 * restart) has not lost a primary: no "primary-down" event
                 * seconds after bootstrap (issue 19, item 4). */
                if (s->kind == AGENT_PRIMARY)
                        emit(l, LOG_LEVEL_WARNING, "primary-down",
                             "PostgreSQL is not accepting connections%s; waiting up to %" PRIu64 "s for it to come back",
                             o->pg_refusing ? " (it answers on the agent's old connection only: a frozen or stuck postmaster)" : "",
                             s->opt.primary_start_timeout / USEC_PER_SEC);
        }
        if (now - s->primary_down_since < s->opt.primary_start_timeout) {
                renew(l, o);
                /* Safety rule 3 allows starting as a primary while we hold
                 * the lease; the data directory says what it becomes. A
                 * primary that crashed is restarted by its supervisor. */
                if (!o->pg_running && (o->pg_held || (s->kind != AGENT_PRIMARY && s->kind != AGENT_PROMOTING)))
                        push(l, ACTION_START, NULL);
                return 0;
        }
        successor = decide_best_successor(o, s);
        emit(l, LOG_LEVEL_ERROR, "release", "PostgreSQL %s within primary_start_timeout; fencing it and releasing the lease to %s",
             o->pg_refusing ? "accepted no new connection" : "did not come back", successor ? successor : "whoever is best");
        return fence_and_release(s, now, l, successor);
}

/* A lease taken after a hand-over carries the old primary's final LSN:
 * whoever holds it never promotes before having replayed it (the model,
 * docs/handover.pml), however long that takes. The old primary, once it
 * runs again as a standby, is ahead and gets the lease back. */
static bool waiting_for_final_lsn(const struct observation *o, struct agent_state *s, usec_t now, struct action_list *l) {
        if (o->successor_lsn == 0 || o->pg_replay_lsn >= o->successor_lsn)
                return false;
        if (now - s->since >= s->opt.lease_duration && now - s->handover_wait_warned >= s->opt.lease_duration) {
                s->handover_wait_warned = now;
                emit(l, LOG_LEVEL_WARNING, "promote", "not promoting: the hand-over's final LSN %" LSN_FMT " is not replayed yet (replayed %" LSN_FMT "); waiting for it or for a standby that has it",
                     LSN_ARGS(o->successor_lsn), LSN_ARGS(o->pg_replay_lsn));
        }
        return true;
}

/* We hold the lease and our Postgres is a standby: promote if safety rule 2
 * allows, else hand the lease to the better member. */
static int decide_holder_standby(const struct observation *o, struct agent_state *s, usec_t now, struct action_list *l) {
        const struct peer_observation *ahead;
        const char *best;

        if (s->kind != AGENT_PROMOTING && s->kind != AGENT_CANDIDATE)
                set_state(s, l, AGENT_CANDIDATE, now);
        /* A promotion under way: PostgreSQL finishes replaying what it
         * has received before it ends recovery, which may take a while.
         * Wait for it without signalling again and without holding the
         * loop (act.c waits a second at most), up to PROMOTE_WAIT_LIMIT.
         * A signalled promotion cannot be taken back: nothing below (a
         * pause, a peer ahead, a release) may run while it is under way. */
        if (s->promote_since) {
                if (now - s->promote_since < PROMOTE_WAIT_LIMIT) {
                        renew(l, o);
                        set_state(s, l, AGENT_PROMOTING, now);
                        return 0;
                }
                s->promote_failures++;
                s->promote_since = 0;
                emit(l, LOG_LEVEL_ERROR, "promote", "the promotion did not finish within %" PRIu64 "s (%u in a row)",
                     PROMOTE_WAIT_LIMIT / USEC_PER_SEC, s->promote_failures);
        }
        if (o->paused && !(o->successor && streq(o->successor, s->opt.name))) {
                renew(l, o);
                emit(l, LOG_LEVEL_INFO, "paused", "holding the lease as a standby while the cluster is paused: not promoting");
                return 0;
        }
        ahead = peer_ahead(o, s);
        if (ahead) {
                best = decide_best_successor(o, s);
                emit(l, LOG_LEVEL_WARNING, "release", "%s is ahead of us (timeline %" PRIu32 ", LSN %" LSN_FMT "); handing the lease to %s",
                     ahead->name, ahead->timeline, LSN_ARGS(MAX(ahead->receive_lsn, ahead->replay_lsn)), best ? best : "nobody fit");
                /* The final LSN stays on the lease for whoever takes it. */
                release(l, best, o->successor_lsn);
                set_state(s, l, AGENT_REPLICA, now);
                return 0;
        }
        if (waiting_for_final_lsn(o, s, now, l)) {
                renew(l, o);
                set_state(s, l, AGENT_PROMOTING, now);
                return 0;
        }
        if (!eligible(o, s, s->opt.name, s->opt.priority, s->opt.nofailover, o->pg_lsn)) {
                best = decide_best_successor(o, s);
                emit(l, LOG_LEVEL_WARNING, "release", "this node may not be promoted (nofailover, priority 0, not synchronous or too far behind); handing the lease to %s",
                     best ? best : "nobody fit");
                release(l, best, o->successor_lsn);
                set_state(s, l, AGENT_REPLICA, now);
                return 0;
        }
        /* Our server cannot finish a promotion (its volume full: the
         * startup process dies writing the new timeline's history, and
         * PostgreSQL restarts as a standby every time): a member that can
         * takes over rather than nobody for as long as it lasts. Without
         * one we keep trying. */
        if (s->promote_failures >= PROMOTE_FAILURES_BEFORE_HANDOVER && (best = decide_best_successor(o, s))) {
                emit(l, LOG_LEVEL_WARNING, "release", "pg_promote() failed %u times in a row; handing the lease to %s",
                     s->promote_failures, best);
                release(l, best, o->successor_lsn);
                set_state(s, l, AGENT_REPLICA, now);
                return 0;
        }
        renew(l, o);
        push(l, ACTION_PROMOTE, NULL);
        set_state(s, l, AGENT_PROMOTING, now);
        return 0;
}


/* Why a switchover to name (NULL: to the best standby) cannot happen, in
 * words an operator can act on. */
static char *refusal_reason(const struct observation *o, const struct agent_state *s, const char *name) {
        const struct peer_observation *p = name ? observation_peer(o, name) : NULL;
        bool sync = sync_binding(o);

        if (!name)
                return strdup_printf("no standby is fit to take over (none is a running, streaming standby with priority > 0%s%s)",
                                     sync ? " in the synchronous set (synchronous mode: only a synchronous standby may be promoted)" : "", o->optime_lsn > 0 ? " within maximum_lag_on_failover" : "");
        if (streq(name, s->opt.name))
                return strdup_printf("%s is already the primary", name);
        if (!p || !p->has_record)
                return strdup_printf("%s is not a member of the cluster (no member record)", name);
        if (!p->reachable)
                return strdup_printf("%s is not running (its PostgreSQL does not answer)", name);
        if (!p->in_recovery)
                return strdup_printf("%s is not a standby", name);
        if (p->nofailover)
                return strdup_printf("%s is tagged nofailover", name);
        if (p->priority <= 0)
                return strdup_printf("%s has priority 0", name);
        if (sync && !in_sync_set(o, name))
                return strdup_printf("%s is not in the synchronous set (synchronous mode: only a synchronous standby may be promoted)",
                                     name);
        if (o->optime_lsn > 0 && MAX(p->receive_lsn, p->replay_lsn) + s->opt.maximum_lag_on_failover < o->optime_lsn)
                return strdup_printf("%s is %" PRIu64 " bytes behind, more than maximum_lag_on_failover", name,
                                     o->optime_lsn - MAX(p->receive_lsn, p->replay_lsn));
        return strdup_printf("%s may not be promoted", name);
}

/* A switchover request (the Lease annotation) or the pre-stop hook on the
 * primary: hand the lease to a fit standby with the final LSN. */
static int decide_handover(const struct observation *o, struct agent_state *s, usec_t now, struct action_list *l) {
        const char *target = NULL;
        bool named = o->switchover && !streq(o->switchover, "*") && !s->demote_requested;

        if (named) {
                const struct peer_observation *p = observation_peer(o, o->switchover);

                if (p && p->reachable && p->in_recovery &&
                    eligible(o, s, p->name, p->priority, p->nofailover, MAX(p->receive_lsn, p->replay_lsn)))
                        target = p->name;
        } else
                target = decide_best_successor(o, s);

        if (!target) {
                if (s->demote_requested && now < s->demote_deadline) {
                        renew(l, o);
                        return 0; /* keep looking until the deadline */
                }
                if (s->demote_requested) {
                        emit(l, LOG_LEVEL_ERROR, "demote", "no standby can take over before the deadline: fencing and releasing the lease");
                        push(l, ACTION_FENCE, NULL);
                        release(l, NULL, 0);
                        struct action *d = push(l, ACTION_DEMOTE_DONE, "no standby could take over: fenced and released the lease");
                        if (d)
                                d->lsn = 0;
                        s->demote_done = true;
                        s->was_primary = true;
                        set_state(s, l, AGENT_STOPPED, now);
                        return 0;
                }
                _cleanup_free_ char *why = refusal_reason(o, s, named ? o->switchover : NULL);

                emit(l, LOG_LEVEL_WARNING, "switchover", "refused: %s", why ? why : "no standby is fit to take over");
                /* The reason goes on the lease too, for agentctl (issue 19, 4b). */
                push(l, ACTION_CLEAR_SWITCHOVER, why ? why : "no standby is fit to take over");
                renew(l, o);
                return 0;
        }
        emit(l, LOG_LEVEL_INFO, s->demote_requested ? "demote" : "switchover", "handing over to %s: checkpoint, fast stop, release with the final LSN", target);
        push(l, ACTION_SWITCHOVER, target);
        free(s->handover_target);
        s->handover_target = strdup(target);
        s->handover_lsn = 0;
        s->was_primary = true;
        set_state(s, l, AGENT_DEMOTING, now);
        return 0;
}

/* We hold the lease and the run-postgres supervisor is gone: its
 * lease-expiry watchdog (safety rule 1 without the agent) went with it, so
 * a stalled agent would leave a writable primary behind. Fence and release
 * now, as for a crash. */
static int decide_holder_unsupervised(const struct observation *o, struct agent_state *s, usec_t now, struct action_list *l) {
        const char *successor = decide_best_successor(o, s);

        emit(l, LOG_LEVEL_ERROR, "supervisor-gone", "the run-postgres supervisor is gone, and with it the lease-expiry watchdog: fencing PostgreSQL and releasing the lease to %s",
             successor ? successor : "whoever is best");
        return fence_and_release(s, now, l, successor);
}

/* Issue 19, item 3: why this node became the primary, and whose place it
 * took. Timeline 1 was never promoted (bootstrap); a planned release
 * names its reason and old primary on the lease (pglease.io/handover)
 * until the new primary's first renewal; anything else is a failover
 * from the last other holder seen. */
static void promotion_reason(const struct observation *o, const struct agent_state *s, char **ret_reason, char **ret_old) {
        const char *sp;

        *ret_reason = *ret_old = NULL;
        if (o->pg_timeline <= 1) {
                *ret_reason = strdup("bootstrap");
                return;
        }
        if (!isempty(o->handover) && (sp = strchr(o->handover, ' '))) {
                *ret_reason = strndup(o->handover, (size_t) (sp - o->handover));
                *ret_old = strdup(sp + 1);
                return;
        }
        *ret_reason = strdup("failover");
        if (s->last_other_holder)
                *ret_old = strdup(s->last_other_holder);
}

/* The list of members failsafe mode asks, as the holder publishes it on
 * the Lease: the view's, or none with the mode off. *ret stays NULL when
 * the published one is right. */
static int failsafe_publish(const struct observation *o, const struct agent_state *s, char ***ret) {
        _cleanup_strv_free_ char **want = calloc(1, sizeof(char *));
        int r;

        if (!want)
                return -ENOMEM;
        if (s->opt.failsafe_mode) {
                if (!o->failsafe_view)
                        return 0;
                for (size_t i = 0; i < o->n_failsafe; i++)
                        if (o->failsafe[i].in_view && (r = strv_extend(&want, o->failsafe[i].name)) < 0)
                                return r;
        }
        if (same_set(want, o->lease_failsafe))
                return 0;
        *ret = TAKE_PTR(want);
        return 0;
}

static int decide_holder(const struct observation *o, struct agent_state *s, usec_t now, struct action_list *l) {
        /* A supervisor that went away took the watchdog with it; one that
         * was never seen is starting with the pod (its container starts
         * beside ours), and with nothing running there is nothing to fence:
         * PostgreSQL down waits for it like a crash, up to
         * primary_start_timeout. A PostgreSQL running without one is
         * fenced whatever the history. */
        if (o->supervisor_gone && (s->supervisor_seen || o->pg_running))
                return decide_holder_unsupervised(o, s, now, l);
        if (!o->pg_accepting)
                return decide_holder_down(o, s, now, l);
        s->primary_down_since = 0;
        if (o->pg_in_recovery)
                return decide_holder_standby(o, s, now, l);

        if (s->kind == AGENT_PRIMARY && (o->switchover || s->demote_requested))
                return decide_handover(o, s, now, l);
        {
                _cleanup_strv_free_ char **publish = NULL;
                struct action *a;

                if (decide_sync(o, s, l, &publish) < 0)
                        return -ENOMEM;
                /* The mode goes with the list; a record whose list
                 * binds under another mode (a reload, an older agent,
                 * the previous leader) gets the very same list again
                 * with ours. An empty list binds nobody in any mode. */
                if (!publish && o->sync && o->sync[0] && o->sync_mode != sync_mode_published(s) &&
                    strv_union(o->sync, NULL, &publish) < 0)
                        return -ENOMEM;
                renew(l, o);
                /* Failsafe mode: the answers are asked for every tick, so
                 * that they are fresh the moment the API server goes. */
                if (s->opt.failsafe_mode)
                        push(l, ACTION_FAILSAFE_ASK, NULL);
                a = (struct action *) action_list_find(l, ACTION_RENEW);
                if (a && failsafe_publish(o, s, &a->failsafe_names) < 0)
                        return -ENOMEM;
                if (a && a->failsafe_names)
                        a->set_failsafe = true;
                if (a && publish) {
                        a->names = TAKE_PTR(publish);
                        a->set_sync = true;
                        a->sync_mode = sync_mode_published(s);
                }
        }
        if (s->kind == AGENT_PROMOTING || s->kind == AGENT_CANDIDATE) {
                _cleanup_free_ char *reason = NULL, *old = NULL;
                struct action *a;

                promotion_reason(o, s, &reason, &old);
                a = push(l, ACTION_RECORD_PROMOTION, reason);
                if (a) {
                        a->lsn = o->pg_lsn;
                        a->timeline = o->pg_timeline;
                        if (old)
                                (void) strv_extend(&a->names, old);
                }
                emit(l, LOG_LEVEL_INFO, "promote", "promoted: primary on timeline %" PRIu32, o->pg_timeline);
        }
        s->was_primary = true;
        set_state(s, l, AGENT_PRIMARY, now);
        return 0;
}

/* The leader is there to follow: its lease is being renewed and its member
 * record says its Postgres runs as the primary. */
static bool leader_alive(const struct observation *o) {
        const struct peer_observation *p = observation_peer(o, o->lease_holder);

        return p && p->role == MEMBER_ROLE_PRIMARY && p->state && streq(p->state, "running");
}

/* ---- failsafe mode (docs/design.md, "Failsafe mode") ---- */

usec_t decide_failsafe_until(const struct observation *o, const struct agent_state *s) {
        usec_t oldest = USEC_INFINITY;

        if (!s->opt.failsafe_mode || !o->failsafe_view)
                return 0;
        for (size_t i = 0; i < o->n_failsafe; i++) {
                const struct failsafe_answer *m = &o->failsafe[i];

                if (streq(m->name, s->opt.name))
                        continue;
                if (m->answered_sent == 0)
                        return 0;
                oldest = MIN(oldest, m->answered_sent);
        }
        /* Nobody else in the view: nobody can take the lease but a member
         * that is not in the published list, and that one may not (see
         * failsafe_blocks()); an answer is then this tick's own word. */
        if (oldest == USEC_INFINITY)
                oldest = o->now;
        return oldest + s->opt.renew_deadline;
}

int failsafe_promise_record(struct failsafe_promises *t, const char *self, enum agent_state_kind kind, bool lease_leader,
                            const char *leader, usec_t lease_duration, usec_t now) {
        struct failsafe_promise *p = NULL, *grown;
        size_t kept = 0;

        if (isempty(leader) || streq(leader, self) || lease_leader ||
            kind == AGENT_CANDIDATE || kind == AGENT_PROMOTING || kind == AGENT_PRIMARY)
                return -EBUSY;
        /* Spent promises go; the others stay whoever asks now. */
        for (size_t i = 0; i < t->n; i++) {
                if (t->items[i].until <= now && !streq(t->items[i].leader, leader)) {
                        free(t->items[i].leader);
                        continue;
                }
                t->items[kept++] = t->items[i];
        }
        t->n = kept;
        for (size_t i = 0; i < t->n; i++)
                if (streq(t->items[i].leader, leader))
                        p = &t->items[i];
        if (!p) {
                char *copy = strdup(leader);

                grown = copy ? realloc(t->items, (t->n + 1) * sizeof *grown) : NULL;
                if (!grown) {
                        free(copy);
                        return -ENOMEM;
                }
                t->items = grown;
                p = &grown[t->n++];
                *p = (struct failsafe_promise) { .leader = copy };
        }
        /* A full lease duration from the answer, on our own clock: the
         * asker stops writing renew_deadline after it sent the question,
         * which was before. */
        p->until = MAX(p->until, now + lease_duration);
        return 0;
}

usec_t failsafe_promise_until(const struct failsafe_promises *t, const char *leader, usec_t now) {
        for (size_t i = 0; leader && i < t->n; i++)
                if (streq(t->items[i].leader, leader) && now < t->items[i].until)
                        return t->items[i].until;
        return 0;
}

void failsafe_promises_done(struct failsafe_promises *t) {
        for (size_t i = 0; i < t->n; i++)
                free(t->items[i].leader);
        free(t->items);
        *t = (struct failsafe_promises) {};
}

int failsafe_promises_copy(const struct failsafe_promises *from, struct failsafe_promises *to) {
        struct failsafe_promises c = {};

        c.items = calloc(MAX(from->n, (size_t) 1), sizeof *c.items);
        if (!c.items)
                return -ENOMEM;
        for (; c.n < from->n; c.n++) {
                c.items[c.n] = (struct failsafe_promise) { .leader = strdup(from->items[c.n].leader), .until = from->items[c.n].until };
                if (!c.items[c.n].leader) {
                        failsafe_promises_done(&c);
                        return -ENOMEM;
                }
        }
        failsafe_promises_done(to);
        *to = c;
        return 0;
}

int decide_failsafe_promise(struct agent_state *s, const char *leader, bool lease_leader, usec_t now) {
        return failsafe_promise_record(&s->failsafe_promises, s->opt.name, s->kind, lease_leader, leader,
                                       s->opt.lease_duration, now);
}

usec_t decide_failsafe_promise_until(const struct agent_state *s, const char *leader, usec_t now) {
        return failsafe_promise_until(&s->failsafe_promises, leader, now);
}

/* Whether failsafe mode forbids taking an expired lease now: we promised
 * its holder not to, or its holder published the members it asks and we
 * are not one of them (it would not wait for our answer before writing on,
 * so nothing tells us it stopped). */
static bool failsafe_blocks(const struct observation *o, const struct agent_state *s, usec_t now, struct action_list *l) {
        usec_t until;

        if (isempty(o->lease_holder))
                return false;
        /* Only a lease that the promised leader still holds: a release
         * (holder "") is its own word that it stopped being the primary. */
        until = decide_failsafe_promise_until(s, o->lease_holder, now);
        if (until > 0) {
                emit(l, LOG_LEVEL_INFO, "failsafe", "the lease of %s looks expired, but this member answered its POST /failsafe: not taking it for %" PRIu64 "ms",
                     o->lease_holder, (until - now) / USEC_PER_MSEC);
                return true;
        }
        if (o->lease_failsafe && !strv_has(o->lease_failsafe, s->opt.name)) {
                emit(l, LOG_LEVEL_WARNING, "failsafe", "the lease of %s looks expired, but it runs in failsafe mode and does not ask this member: not taking it",
                     o->lease_holder);
                return true;
        }
        return false;
}

/* We do not hold the lease: fence a local primary, take a free lease if we
 * are the best candidate, else be a standby of the leader. */
static int decide_follower(const struct observation *o, struct agent_state *s, usec_t now, bool tilt, struct action_list *l) {
        bool leader_known = !isempty(o->lease_holder) && !streq(o->lease_holder, s->opt.name) && o->leader_host;

        if (!isempty(o->lease_holder) && !streq(o->lease_holder, s->opt.name) &&
            !(s->last_other_holder && streq(s->last_other_holder, o->lease_holder))) {
                free(s->last_other_holder);
                s->last_other_holder = strdup(o->lease_holder);
        }

        if (o->pg_accepting && !o->pg_in_recovery) {
                /* Safety rules 1 and 3: a primary without the lease. */
                push(l, ACTION_FENCE, NULL);
                emit(l, LOG_LEVEL_ERROR, "fence", "PostgreSQL is a primary but this node does not hold the lease (holder: %s); fenced",
                     isempty(o->lease_holder) ? "nobody" : o->lease_holder);
                s->was_primary = true;
                set_state(s, l, AGENT_FENCED, now);
                return 0;
        }
        if (s->demote_requested) {
                if (s->kind == AGENT_DEMOTING && !s->demote_done && (!isempty(o->lease_holder) || now >= s->demote_deadline)) {
                        struct action *d = push(l, ACTION_DEMOTE_DONE, isempty(o->lease_holder) ? "released the lease; no new leader yet" : o->lease_holder);

                        if (d)
                                d->lsn = 1;
                        s->demote_done = true;
                        set_state(s, l, AGENT_STOPPED, now);
                } else if (s->kind != AGENT_DEMOTING && !s->demote_done) {
                        /* A standby's pre-stop: stop cleanly and stay down. */
                        push(l, ACTION_STOP, "demote");
                        struct action *d = push(l, ACTION_DEMOTE_DONE, "standby stopped");
                        if (d)
                                d->lsn = 1;
                        s->demote_done = true;
                        set_state(s, l, AGENT_STOPPED, now);
                }
                return 0;
        }
        if (o->lease_read && o->lease_may_acquire && !tilt && o->lease_holder && isempty(o->lease_holder) &&
            !isempty(o->successor) && streq(o->successor, s->opt.name) &&
            o->pg_accepting && o->pg_in_recovery && !peer_ahead(o, s) &&
            eligible(o, s, s->opt.name, s->opt.priority, s->opt.nofailover, o->pg_lsn)) {
                emit(l, LOG_LEVEL_INFO, "candidate", "the lease was handed over to this node: taking it");
                push(l, ACTION_ACQUIRE, NULL);
                set_state(s, l, AGENT_CANDIDATE, now);
                return 0;
        }
        if (o->lease_read && o->lease_may_acquire && !tilt && failsafe_blocks(o, s, now, l))
                ; /* the holder may still be a primary on its members' answers */
        else if (o->lease_read && o->lease_may_acquire && !tilt) {
                const char *best = decide_best_candidate(o, s);

                if (o->paused)
                        emit(l, LOG_LEVEL_INFO, "paused", "the lease is free but the cluster is paused: no failover");
                else if (best && streq(best, s->opt.name)) {
                        emit(l, LOG_LEVEL_INFO, "candidate", "the lease is free and this node is the best candidate: taking it");
                        push(l, ACTION_ACQUIRE, NULL);
                        set_state(s, l, AGENT_CANDIDATE, now);
                        return 0;
                }
        }
        if (s->kind == AGENT_STOPPED)
                return 0;
        if (!o->pg_running) {
                /* Nothing starts PostgreSQL until its supervisor is back. */
                if (!o->pg_data_present || o->supervisor_gone)
                        return 0;
                if (!leader_known) {
                        /* Safety rule 3: without the lease, only as a
                         * standby. A pod that starts does so at once. A
                         * node that was running (a fenced primary, a
                         * standby stopped to rejoin) waits for a leader to
                         * rejoin or follow, but not for ever: when the
                         * lease has stayed free for two lease durations
                         * nobody is taking it, and this node's data may be
                         * the only one that may be promoted (it published
                         * itself as synchronous, or holds the most WAL).
                         * Down, it is no candidate at all, and the cluster
                         * stays without a primary for good. */
                        if (s->kind == AGENT_STARTING)
                                push(l, ACTION_START_STANDBY, NULL);
                        else if (o->lease_read && o->lease_may_acquire && !o->paused &&
                                 now - s->since >= 2 * s->opt.lease_duration) {
                                emit(l, LOG_LEVEL_WARNING, "start",
                                     "no primary for %" PRIu64 "s and nobody takes the lease: starting PostgreSQL as a standby to be a candidate",
                                     (now - s->since) / USEC_PER_SEC);
                                push(l, ACTION_START_STANDBY, NULL);
                                set_state(s, l, AGENT_STARTING, now);
                        }
                        return 0;
                }
                if (s->was_primary || s->kind == AGENT_FENCED) {
                        struct action *a = push(l, ACTION_REJOIN, o->leader_host);

                        if (a) {
                                a->port = o->leader_port;
                                a->timeline = o->leader_timeline;
                        }
                        set_state(s, l, AGENT_REJOINING, now);
                        return 0;
                }
                struct action *a = push(l, ACTION_START_STANDBY, o->leader_host);
                if (a)
                        a->port = o->leader_port;
                set_state(s, l, AGENT_REPLICA, now);
                return 0;
        }
        if (!o->pg_accepting)
                return 0; /* starting up or recovering: look again next tick */
        if (s->kind == AGENT_REJOINING || s->kind == AGENT_FENCED || s->kind == AGENT_CANDIDATE ||
            s->kind == AGENT_STARTING || s->kind == AGENT_PROMOTING || s->kind == AGENT_DEMOTING)
                set_state(s, l, AGENT_REPLICA, now);
        s->was_primary = false;
        /* Not streaming from *this* leader on *its* timeline since when: a
         * time that started under the previous leader (down, so nobody
         * streamed) would make every healthy standby look stuck the moment
         * a failover's new primary appears on its new timeline. */
        if (leader_known) {
                _cleanup_free_ char *key = strdup_printf("%s:%d/%" PRIu32, o->leader_host, o->leader_port, o->leader_timeline);

                if (key && !(s->follow_leader && streq(s->follow_leader, key))) {
                        free(s->follow_leader);
                        s->follow_leader = TAKE_PTR(key);
                        s->follow_since = 0;
                }
        }
        if (leader_known && o->pg_streaming && o->pg_upstream_host && streq(o->pg_upstream_host, o->leader_host) &&
            o->pg_upstream_port == o->leader_port)
                s->follow_since = 0;
        else if (leader_known && s->follow_since == 0)
                s->follow_since = now;
        else if (leader_known && !o->lease_may_acquire && leader_alive(o) &&
                 now - s->follow_since > 2 * s->opt.lease_duration && o->leader_timeline > o->pg_timeline) {
                /* Safety rule 5: a standby that received WAL the new
                 * primary's timeline does not have (from an old primary
                 * that wrote on after the fork) cannot follow it; stop it
                 * and rejoin like a former primary, by rewind. */
                emit(l, LOG_LEVEL_WARNING, "rejoin", "not streaming from the primary on timeline %" PRIu32 " after %" PRIu64 "s (this standby is on %" PRIu32 "): checking for divergence",
                     o->leader_timeline, (now - s->follow_since) / USEC_PER_SEC, o->pg_timeline);
                push(l, ACTION_STOP, "rejoin");
                s->was_primary = true;
                s->follow_since = 0;
                set_state(s, l, AGENT_REJOINING, now);
                return 0;
        }
        if (leader_known && (!o->pg_conninfo_host || !streq(o->pg_conninfo_host, o->leader_host) ||
                             o->pg_conninfo_port != o->leader_port)) {
                struct action *a = push(l, ACTION_FOLLOW, o->leader_host);

                if (a) {
                        a->port = o->leader_port;
                        a->timeline = o->leader_timeline;
                }
        }
        return 0;
}

int decide(const struct observation *o, struct agent_state *s, usec_t now, struct action_list *ret) {
        bool tilt, lost = false;

        if (o->supervisor_watched && !o->supervisor_gone)
                s->supervisor_seen = true;

        /* A promotion under way (pg_promote() signalled, act.c) ends when
         * recovery ends. A server that stops accepting connections
         * meanwhile has restarted, as a standby (its startup process died
         * finishing recovery: a full volume): that promotion failed, as a
         * pg_promote() that waited would have said. */
        if (s->promote_since && (!o->pg_accepting || !o->pg_in_recovery)) {
                if (!o->pg_accepting) {
                        s->promote_failures++;
                        emit(ret, LOG_LEVEL_ERROR, "promote", "PostgreSQL stopped accepting connections during its promotion: the promotion failed (%u in a row)",
                             s->promote_failures);
                }
                s->promote_since = 0;
        }

        /* A planned hand-over is waited for by writers: while one is under
         * way (requested, or released to a successor), look more often so
         * that the window without a primary is short. So while the
         * holder's PostgreSQL is down (primary_start_timeout is counted in
         * ticks) and while a candidate is about to promote. */
        s->fast_tick = !isempty(o->switchover) || s->demote_requested ||
                (o->lease_read && o->lease_holder && isempty(o->lease_holder) && !isempty(o->successor)) ||
                s->kind == AGENT_DEMOTING || s->kind == AGENT_PROMOTING || s->kind == AGENT_CANDIDATE ||
                s->primary_down_since != 0;

        /* TILT (Redis Sentinel): a tick that starts more than a second
         * after it was due means this process was stalled; what it saw
         * before may be stale, so for one lease duration it observes but
         * takes no promoting action. */
        if (o->tick_late > USEC_PER_SEC) {
                s->tilt_until = now + s->opt.lease_duration;
                emit(ret, LOG_LEVEL_WARNING, "tilt", "this tick started %" PRIu64 "ms late: no promoting action for %" PRIu64 "s",
                     o->tick_late / USEC_PER_MSEC, s->opt.lease_duration / USEC_PER_SEC);
        }
        tilt = now < s->tilt_until;

        /* Safety rule 1: our last successful renewal was sent more than
         * renew_deadline ago; the others may take the lease once
         * lease_duration has passed, so stop being a primary now. In
         * failsafe mode, unless every member of the last view answered a
         * POST /failsafe sent less than renew_deadline ago: each of them
         * promised not to take the lease for a lease duration from its
         * answer (docs/design.md, "Failsafe mode"). */
        s->failsafe_until = o->lease_leader ? decide_failsafe_until(o, s) : 0;
        if (o->lease_leader && !o->lease_lost && o->lease_renew_sent > 0 &&
            now > o->lease_renew_sent + o->lease_renew_deadline) {
                if (now < s->failsafe_until) {
                        if (!s->failsafe_active)
                                emit(ret, LOG_LEVEL_WARNING, "failsafe", "the lease could not be renewed within renew_deadline, but every member answered POST /failsafe: staying the primary");
                        s->failsafe_active = true;
                } else
                        lost = true;
        } else if (s->failsafe_active && o->lease_leader && !o->lease_lost) {
                emit(ret, LOG_LEVEL_INFO, "failsafe", "the lease is renewed again: failsafe mode over");
                s->failsafe_active = false;
        }
        if (o->lease_lost || lost) {
                s->failsafe_active = false;
                if (o->pg_running && (!o->pg_accepting || !o->pg_in_recovery)) {
                        /* The fence before the event: the event may wait on
                         * the very API server that failed us. */
                        push(ret, ACTION_FENCE, NULL);
                        emit(ret, LOG_LEVEL_ERROR, "fence", "the lease could not be renewed within renew_deadline%s: fenced the primary",
                             s->opt.failsafe_mode ? " and not every member answered POST /failsafe in time" : "");
                }
                s->was_primary = s->was_primary || s->kind == AGENT_PRIMARY || s->kind == AGENT_PROMOTING;
                set_state(s, ret, AGENT_FENCED, now);
                return 0;
        }

        if (o->lease_held_by_us && o->lease_leader)
                return decide_holder(o, s, now, ret);
        if (o->lease_held_by_us && o->lease_read && s->kind == AGENT_DEMOTING) {
                /* Our release did not get through (409 after retries, API
                 * down): the demotion stands; write it again, never take
                 * the lease back and promote (docs/handover.pml). */
                emit(ret, LOG_LEVEL_WARNING, "switchover", "the lease still names this node: releasing it again to %s at LSN %" LSN_FMT,
                     s->handover_target ? s->handover_target : "the best standby", LSN_ARGS(s->handover_lsn));
                release(ret, s->handover_target, s->handover_lsn);
                return 0;
        }
        if (o->lease_held_by_us && o->lease_read && !tilt) {
                /* The record names us but we have not written it in this
                 * life (a restart within the lease): take it back first. */
                push(ret, ACTION_ACQUIRE, NULL);
                return 0;
        }
        return decide_follower(o, s, now, tilt, ret);
}
