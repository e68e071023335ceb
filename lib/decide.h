/* decide.h: the failover policy as a pure function: an observation, the
 * agent's state and the time in, the actions to take out. No I/O here; the
 * safety rules of docs/design.md are enforced in this one place. */
#ifndef PGLEASE_DECIDE_H
#define PGLEASE_DECIDE_H

#include "config.h"
#include "observe.h"

struct failsafe_promise {
        char *leader;
        usec_t until;
};

struct failsafe_promises {
        struct failsafe_promise *items;
        size_t n;
};

enum agent_state_kind {
        AGENT_STARTING,      /* no decision taken yet */
        AGENT_REPLICA,       /* streaming (or trying to) from the leader */
        AGENT_CANDIDATE,     /* the lease is free and we are the best: taking it */
        AGENT_PROMOTING,     /* we hold the lease and our Postgres is being promoted */
        AGENT_PRIMARY,       /* we hold the lease and our Postgres is the primary */
        AGENT_FENCED,        /* our former primary was stopped: lost lease, or primary without lease */
        AGENT_DEMOTING,      /* handing the lease over (switchover, pre-stop) */
        AGENT_REJOINING,     /* a former primary coming back as a standby (rewind or clone) */
        AGENT_STOPPED,       /* Postgres is held down on purpose (rejoin_fallback = none) */
        _AGENT_STATE_MAX,
        _AGENT_STATE_INVALID = -EINVAL,
};

const char *agent_state_to_string(enum agent_state_kind k);

/* What decide() needs of the configuration; copied so that decide() has no
 * pointer into a config that a reload may replace. */
struct decide_options {
        char *name;
        int64_t priority;
        bool nofailover;
        uint64_t maximum_lag_on_failover;
        usec_t lease_duration;
        usec_t retry_period;
        usec_t primary_start_timeout;
        int synchronous_mode;
        int64_t synchronous_node_count;
        usec_t renew_deadline;
        bool failsafe_mode;           /* keep writing through an API outage while every member answers (docs/failover.md) */
};

struct agent_state {
        enum agent_state_kind kind;
        usec_t since;                 /* when kind was entered */
        usec_t tilt_until;            /* TILT: no promoting action before this */
        usec_t primary_down_since;    /* holder whose Postgres does not accept connections; 0 if fine */
        bool was_primary;             /* our data directory has been a primary: rejoin must check for divergence */
        bool supervisor_seen;         /* the run-postgres supervisor was alive at some tick of this agent's life */
        bool rejoin_failed;           /* the last rejoin failed and rejoin_fallback = none */
        unsigned promote_failures;    /* pg_promote() calls that failed in a row in this term (act.c) */
        usec_t promote_since;         /* pg_promote() signalled at this time and the end of recovery not seen yet; 0 if none (act.c) */
        bool fast_tick;               /* a hand-over is under way: tick at a tenth of retry_period */
        usec_t follow_since;          /* a standby not yet streaming from the leader since this time; 0 when it is */
        char *follow_leader;          /* the leader follow_since counts for ("host:port/timeline") */
        bool demote_requested;        /* the pre-stop hook asked us to hand over and stay down */
        usec_t demote_deadline;       /* after it, fence and release even without a successor */
        bool demote_done;             /* the hand-over (or the fence) happened */
        /* DEMOTING: whom we hand over to and the final LSN (set once
         * PostgreSQL is stopped), so that a release that failed is written
         * again, never turned into taking the lease back (docs/handover.pml). */
        char *handover_target;
        char *last_other_holder;      /* the last other member seen holding the lease: a failover's old primary */
        uint64_t handover_lsn;
        usec_t handover_wait_warned;  /* holder waiting for a final LSN: when we last said so */
        /* Synchronous mode: standbys added to synchronous_standby_names and
         * the primary's LSN when they were, waiting to be published once
         * they have flushed up to it (safety rule 4). */
        char **sync_pending;
        uint64_t *sync_pending_lsn;
        size_t n_sync_pending;
        /* Failsafe mode, as the leader: until when every member's answer
         * keeps this primary writable without a renewal (0: not at all),
         * and whether it is running on those answers now. */
        usec_t failsafe_until;
        bool failsafe_active;
        /* ... and as a member that answered POST /failsafe: whom it
         * promised not to take the lease from, until when (one entry a
         * leader: a second asker must not end the first one's promise). */
        struct failsafe_promises failsafe_promises;
        struct decide_options opt;
};

int agent_state_init(struct agent_state *s, const struct decide_options *o);
void agent_state_done(struct agent_state *s);

enum action_kind {
        ACTION_ACQUIRE,       /* take the lease */
        ACTION_RENEW,         /* renew it, publishing optime (lsn, timeline) */
        ACTION_RELEASE,       /* hand it over: target = successor or NULL, lsn = what it must have replayed */
        ACTION_PROMOTE,       /* pg_promote() the local standby */
        ACTION_FENCE,         /* safety rule 1: standby marker, hold, immediate stop */
        ACTION_START,         /* start the local Postgres as it is (standby marker decides) */
        ACTION_START_STANDBY, /* write the standby marker and primary_conninfo for target, then start */
        ACTION_FOLLOW,        /* point primary_conninfo at target:port and reload */
        ACTION_REJOIN,        /* former primary: rewind (or re-clone) from target, then start as standby */
        ACTION_RECORD_PROMOTION, /* history row + optime after a promotion */
        ACTION_EVENT,         /* log line, metadata row, Kubernetes Event */
        ACTION_SET_SYNC,      /* synchronous_standby_names = names (k = their number; "*" alone in strict mode) */
        ACTION_SWITCHOVER,    /* checkpoint, fast stop, final LSN, release naming target */
        ACTION_CLEAR_SWITCHOVER, /* refuse a switchover request: clear the annotation */
        ACTION_STOP,          /* stop the local Postgres cleanly and keep it down (pre-stop on a standby) */
        ACTION_DEMOTE_DONE,   /* complete the pending pre-stop request: lsn = 1 ok, 0 failed */
        ACTION_FAILSAFE_ASK,  /* failsafe mode: POST /failsafe to every other member of the last view */
        _ACTION_KIND_MAX,
};

const char *action_kind_to_string(enum action_kind k);

struct action {
        enum action_kind kind;
        char *target;         /* member name or host, by kind */
        int port;
        uint64_t lsn;
        uint32_t timeline;
        /* ACTION_RENEW with set_sync, ACTION_SET_SYNC: NULL-terminated */
        bool set_sync;
        char **names;
        enum dcs_sync_mode sync_mode; /* ACTION_RENEW with set_sync: published with names */
        /* ACTION_RENEW: publish the members failsafe mode asks (empty: none) */
        bool set_failsafe;
        char **failsafe_names;
        /* ACTION_EVENT */
        enum log_level level;
        char *event;
        char *message;
};

#define ACTIONS_MAX 16

struct action_list {
        size_t n;
        struct action items[ACTIONS_MAX];
};

void action_list_done(struct action_list *l);
bool action_list_has(const struct action_list *l, enum action_kind k);
const struct action *action_list_find(const struct action_list *l, enum action_kind k);

/* The candidate that safety rule 2 would promote among this node and the
 * reachable peers: latest timeline, then highest received LSN, then higher
 * priority, then lower name; ineligible members (nofailover, priority 0,
 * outside the synchronous set, too far behind the published optime) are
 * skipped. Returns the name (ours or a peer's) or NULL if nobody is fit. */
const char *decide_best_candidate(const struct observation *o, const struct agent_state *s);

/* The standby a leader hands over to (switchover, failing primary). */
const char *decide_best_successor(const struct observation *o, const struct agent_state *s);

int decide(const struct observation *o, struct agent_state *s, usec_t now, struct action_list *ret);

/* Failsafe mode's rule (docs/design.md, "Failsafe mode"), pure: the time
 * until which the holder may keep its primary writable on its members'
 * answers alone: the earliest send time of the latest request each member
 * of the view (self excepted) answered, plus renew_deadline; 0 when one of
 * them has not answered at all (or the mode is off). */
usec_t decide_failsafe_until(const struct observation *o, const struct agent_state *s);

/* A member asked by leader at now to promise not to take the lease for a
 * lease duration: 0 and the promise recorded in s, or -EBUSY when this
 * member leads or is taking the lease itself (the asker must fence). */
int decide_failsafe_promise(struct agent_state *s, const char *leader, bool lease_leader, usec_t now);

/* Until when we promised leader not to take its lease (0: we did not, or
 * it is over at now). */
usec_t decide_failsafe_promise_until(const struct agent_state *s, const char *leader, usec_t now);

/* The same on a table of promises of its own (the agent's responder
 * thread keeps one): a member named self in state kind, leading or not. */
int failsafe_promise_record(struct failsafe_promises *t, const char *self, enum agent_state_kind kind, bool lease_leader,
                            const char *leader, usec_t lease_duration, usec_t now);
usec_t failsafe_promise_until(const struct failsafe_promises *t, const char *leader, usec_t now);
int failsafe_promises_copy(const struct failsafe_promises *from, struct failsafe_promises *to);
void failsafe_promises_done(struct failsafe_promises *t);

#endif
