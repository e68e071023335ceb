/* decide.c: the failover policy as a pure function: an observation, the
 * agent's state and the time in, the actions to take out. No I/O here; the
 * safety rules of docs/design.md are enforced in this one place. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "decide.h"
#include "util.h"

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
};

const char *action_kind_to_string(enum action_kind k) {
        if ((unsigned) k >= _ACTION_KIND_MAX)
                return "invalid";
        return action_names[k];
}

void observation_done(struct observation *o) {
        free(o->pg_upstream_host);
        free(o->lease_holder);
        free(o->successor);
        free(o->switchover);
        strv_free(o->sync);
        free(o->leader_host);
        for (size_t i = 0; i < o->n_peers; i++) {
                free(o->peers[i].name);
                free(o->peers[i].state);
                free(o->peers[i].host);
        }
        free(o->peers);
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
        *s = (struct agent_state) {};
}

void action_list_done(struct action_list *l) {
        for (size_t i = 0; i < l->n; i++) {
                free(l->items[i].target);
                free(l->items[i].event);
                free(l->items[i].message);
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

/* A member that may be promoted at all (safety rules 2 and 4). */
static bool eligible(const struct observation *o, const struct agent_state *s, const char *name,
                     int64_t priority, bool nofailover, uint64_t lsn) {
        if (nofailover || priority <= 0)
                return false;
        /* Safety rule 4: with synchronous mode on, only a standby that the
         * leader published as synchronous holds every acknowledged commit.
         * An empty published set means the leader ran without one. */
        if (s->opt.synchronous_mode != SYNCHRONOUS_OFF && o->sync && o->sync[0] && !in_sync_set(o, name))
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

                if (!p->reachable || !p->in_recovery || !eligible(o, s, p->name, p->priority, p->nofailover, lsn))
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

                if (!p->reachable || !p->in_recovery)
                        continue;
                if (c.timeline > self.timeline || (c.timeline == self.timeline && c.lsn > self.lsn))
                        return p;
        }
        return NULL;
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

/* We hold the lease and our Postgres is down: wait for the supervisor to
 * bring it back, but not longer than primary_start_timeout. */
static int decide_holder_down(const struct observation *o, struct agent_state *s, usec_t now, struct action_list *l) {
        const char *successor;

        if (s->kind != AGENT_PRIMARY && s->kind != AGENT_PROMOTING) {
                /* Safety rule 3 allows starting as a primary while we hold
                 * the lease; the data directory says what it becomes. */
                renew(l, o);
                if (!o->pg_running)
                        push(l, ACTION_START, NULL);
                return 0;
        }
        if (s->primary_down_since == 0) {
                s->primary_down_since = now;
                emit(l, LOG_LEVEL_WARNING, "primary-down", "PostgreSQL is not accepting connections; waiting up to %" PRIu64 "s for it to come back",
                     s->opt.primary_start_timeout / USEC_PER_SEC);
        }
        if (now - s->primary_down_since < s->opt.primary_start_timeout) {
                renew(l, o);
                if (!o->pg_running && o->pg_held)
                        push(l, ACTION_START, NULL);
                return 0;
        }
        successor = decide_best_successor(o, s);
        emit(l, LOG_LEVEL_ERROR, "release", "PostgreSQL did not come back within primary_start_timeout; releasing the lease to %s",
             successor ? successor : "whoever is best");
        /* Fence first so that the old primary cannot come back as one. */
        push(l, ACTION_FENCE, NULL);
        release(l, successor, 0);
        s->was_primary = true;
        s->primary_down_since = 0;
        set_state(s, l, AGENT_FENCED, now);
        return 0;
}

static bool waiting_for_successor_lsn(const struct observation *o, const struct agent_state *s, usec_t now) {
        if (isempty(o->successor) || !streq(o->successor, s->opt.name) || o->successor_lsn == 0)
                return false;
        if (o->pg_replay_lsn >= o->successor_lsn)
                return false;
        /* Not forever: the old primary is gone; after one lease duration we
         * promote with what we have, as an unplanned failover would. */
        return now - s->since < s->opt.lease_duration;
}

/* We hold the lease and our Postgres is a standby: promote if safety rule 2
 * allows, else hand the lease to the better member. */
static int decide_holder_standby(const struct observation *o, struct agent_state *s, usec_t now, struct action_list *l) {
        const struct peer_observation *ahead;
        const char *best;

        if (s->kind != AGENT_PROMOTING && s->kind != AGENT_CANDIDATE)
                set_state(s, l, AGENT_CANDIDATE, now);
        if (o->paused && !(o->successor && streq(o->successor, s->opt.name))) {
                renew(l, o);
                emit(l, LOG_LEVEL_INFO, "paused", "holding the lease as a standby while the cluster is paused: not promoting");
                return 0;
        }
        if (waiting_for_successor_lsn(o, s, now)) {
                renew(l, o);
                set_state(s, l, AGENT_PROMOTING, now);
                return 0;
        }
        ahead = peer_ahead(o, s);
        if (ahead) {
                best = decide_best_successor(o, s);
                emit(l, LOG_LEVEL_WARNING, "release", "%s is ahead of us (timeline %" PRIu32 ", lsn %" PRIX64 "); handing the lease to %s",
                     ahead->name, ahead->timeline, MAX(ahead->receive_lsn, ahead->replay_lsn), best ? best : "nobody fit");
                release(l, best, 0);
                set_state(s, l, AGENT_REPLICA, now);
                return 0;
        }
        if (!eligible(o, s, s->opt.name, s->opt.priority, s->opt.nofailover, o->pg_lsn)) {
                best = decide_best_successor(o, s);
                emit(l, LOG_LEVEL_WARNING, "release", "this node may not be promoted (nofailover, priority 0, not synchronous or too far behind); handing the lease to %s",
                     best ? best : "nobody fit");
                release(l, best, 0);
                set_state(s, l, AGENT_REPLICA, now);
                return 0;
        }
        renew(l, o);
        push(l, ACTION_PROMOTE, NULL);
        set_state(s, l, AGENT_PROMOTING, now);
        return 0;
}

static int decide_holder(const struct observation *o, struct agent_state *s, usec_t now, struct action_list *l) {
        if (!o->pg_accepting)
                return decide_holder_down(o, s, now, l);
        s->primary_down_since = 0;
        if (o->pg_in_recovery)
                return decide_holder_standby(o, s, now, l);

        renew(l, o);
        if (s->kind == AGENT_PROMOTING || s->kind == AGENT_CANDIDATE) {
                struct action *a = push(l, ACTION_RECORD_PROMOTION, NULL);

                if (a) {
                        a->lsn = o->pg_lsn;
                        a->timeline = o->pg_timeline;
                }
                emit(l, LOG_LEVEL_INFO, "promote", "promoted: primary on timeline %" PRIu32, o->pg_timeline);
        }
        s->was_primary = true;
        set_state(s, l, AGENT_PRIMARY, now);
        return 0;
}

/* We do not hold the lease: fence a local primary, take a free lease if we
 * are the best candidate, else be a standby of the leader. */
static int decide_follower(const struct observation *o, struct agent_state *s, usec_t now, bool tilt, struct action_list *l) {
        bool leader_known = !isempty(o->lease_holder) && !streq(o->lease_holder, s->opt.name) && o->leader_host;

        if (o->pg_accepting && !o->pg_in_recovery) {
                /* Safety rules 1 and 3: a primary without the lease. */
                emit(l, LOG_LEVEL_ERROR, "fence", "PostgreSQL is a primary but this node does not hold the lease (holder: %s); fencing",
                     isempty(o->lease_holder) ? "nobody" : o->lease_holder);
                push(l, ACTION_FENCE, NULL);
                s->was_primary = true;
                set_state(s, l, AGENT_FENCED, now);
                return 0;
        }
        if (o->lease_read && o->lease_may_acquire && !tilt) {
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
                if (!o->pg_data_present)
                        return 0;
                if (!leader_known) {
                        if (s->kind == AGENT_STARTING) {
                                /* Safety rule 3: without the lease, only as a standby. */
                                push(l, ACTION_START_STANDBY, NULL);
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
        if (leader_known && (!o->pg_upstream_host || !streq(o->pg_upstream_host, o->leader_host) ||
                             o->pg_upstream_port != o->leader_port)) {
                struct action *a = push(l, ACTION_FOLLOW, o->leader_host);

                if (a) {
                        a->port = o->leader_port;
                        a->timeline = o->leader_timeline;
                }
        }
        return 0;
}

int decide(const struct observation *o, struct agent_state *s, usec_t now, struct action_list *ret) {
        bool tilt;

        /* TILT (Redis Sentinel): a tick that comes late means this process
         * was stalled; what it saw before may be stale, so for one lease
         * duration it observes but takes no promoting action. */
        if (o->tick_gap > s->opt.retry_period + USEC_PER_SEC) {
                s->tilt_until = now + s->opt.lease_duration;
                emit(ret, LOG_LEVEL_WARNING, "tilt", "the previous tick was %" PRIu64 "ms ago: no promoting action for %" PRIu64 "s",
                     o->tick_gap / USEC_PER_MSEC, s->opt.lease_duration / USEC_PER_SEC);
        }
        tilt = now < s->tilt_until;

        /* Safety rule 1: our last successful renewal was sent more than
         * renew_deadline ago; the others may take the lease once
         * lease_duration has passed, so stop being a primary now. */
        if (o->lease_lost) {
                if (o->pg_running && (!o->pg_accepting || !o->pg_in_recovery)) {
                        emit(ret, LOG_LEVEL_ERROR, "fence", "the lease could not be renewed within renew_deadline: fencing the primary");
                        push(ret, ACTION_FENCE, NULL);
                }
                s->was_primary = s->was_primary || s->kind == AGENT_PRIMARY || s->kind == AGENT_PROMOTING;
                set_state(s, ret, AGENT_FENCED, now);
                return 0;
        }

        if (o->lease_held_by_us && o->lease_leader)
                return decide_holder(o, s, now, ret);
        if (o->lease_held_by_us && o->lease_read && !tilt) {
                /* The record names us but we have not written it in this
                 * life (a restart within the lease): take it back first. */
                push(ret, ACTION_ACQUIRE, NULL);
                return 0;
        }
        return decide_follower(o, s, now, tilt, ret);
}
