/* election.h: the leader-lease rules of docs/design.md on an injected
 * monotonic clock: expiry judged from when this agent first saw the current
 * raw record, optimistic writes with a version, release to a successor, and
 * the holder's own view of when it must consider the lease lost. */
#ifndef PGLEASE_ELECTION_H
#define PGLEASE_ELECTION_H

#include "clock.h"
#include "dcs.h"

struct election_options {
        const char *identity;        /* this member's name (holderIdentity) */
        usec_t lease_duration;
        usec_t renew_deadline;
        usec_t api_timeout;          /* cap for one call */
};

struct election {
        char *identity;
        usec_t lease_duration;
        usec_t renew_deadline;
        usec_t api_timeout;
        const struct clock_ops *clock;
        const struct dcs *dcs;

        struct dcs_leader *observed;  /* last record read or written; NULL if none seen */
        bool observed_missing;        /* the last read said there is no record */
        usec_t observed_at;           /* monotonic time the current raw record was first seen */

        bool leader;                  /* we hold the lease as far as we know */
        usec_t last_renew_sent;       /* monotonic send time of the last successful write as holder */
        usec_t granted_renew_deadline;/* renew_deadline when that write (and its leaseDurationSeconds) was sent */
        const char *release_reason;   /* set by the caller before election_release: "switchover", "demote", NULL */
        /* Failsafe mode: until when every member's answer keeps the holder
         * a leader without a renewal (decide_failsafe_until(); 0: none). */
        usec_t failsafe_until;
};

/* What a holder publishes with a renewal. Fields left 0/NULL keep the
 * record's current value. */
struct election_publish {
        uint32_t optime_timeline;
        uint64_t optime_lsn;
        char *const *sync;            /* NULL: keep; empty vector: clear */
        bool set_sync;
        enum dcs_sync_mode sync_mode; /* published with the list; UNKNOWN: keep */
        bool clear_handover;          /* the holder runs as the primary: the hand-over (successor, final LSN) is over */
        char *const *failsafe;        /* with set_failsafe: the members asked in failsafe mode (empty: none) */
        bool set_failsafe;
};

int election_init(struct election *e, const struct election_options *o, const struct clock_ops *clock,
                  const struct dcs *dcs);
void election_done(struct election *e);

/* Reads the record and updates the observation. -ENOENT (no record) is
 * remembered and returned; other errors leave the observation as it was. */
int election_observe(struct election *e, char **reterr_msg);

/* Pure judgements on the current observation. */
bool election_held_by_us(const struct election *e);
/* Nobody holds it: no record, an empty holder, or the holder's record has
 * not changed for a whole lease duration on our clock. */
bool election_is_free(const struct election *e, usec_t now);
/* We may try to take it now: it is free and, after a release naming a
 * successor, we are that successor or one lease duration has passed. */
bool election_may_acquire(const struct election *e, usec_t now);
/* The holder's safety clock (safety rule 1): true when we believe we lead
 * but our last successful renewal was sent more than renew_deadline ago,
 * and failsafe mode's answers do not cover now either. */
bool election_lost(const struct election *e, usec_t now);
/* The end of the holder's safe time: the renew deadline of its last
 * successful write, or failsafe_until if later. */
usec_t election_safe_until(const struct election *e);
/* How long until we must have renewed; 0 when already past. */
usec_t election_renew_remaining(const struct election *e, usec_t now);
/* The renew deadline the holder judges itself by: renew_deadline, but never
 * longer than the one in force when the last successful write was sent.
 * Followers wait the leaseDurationSeconds of the record they read, so a
 * reload that raises the timings takes effect only once a write has
 * published them; a reload that lowers them, at once. */
usec_t election_renew_deadline(const struct election *e);

/* Takes the lease (create or versioned replace). -ESTALE: someone else
 * wrote first; the record has been re-read, decide again. -EBUSY: the rules
 * do not allow taking it now. */
int election_acquire(struct election *e, const struct election_publish *pub, char **reterr_msg);

/* Renews a lease we hold. -ESTALE: we lost it (someone else wrote); the
 * record has been re-read and we no longer lead. */
int election_renew(struct election *e, const struct election_publish *pub, char **reterr_msg);

/* Hands the lease over: holder "", leaseDurationSeconds 1, naming the
 * successor (may be NULL) and the LSN whoever takes it must have replayed
 * before promoting (0: none). We stop leading whether or not the write
 * succeeds. A 409 is answered by re-reading and, while the record still
 * names us, writing the release again on the new version: a hand-over is
 * never turned back by a concurrent annotation write (docs/handover.pml). */
int election_release(struct election *e, const char *successor, uint64_t successor_lsn, char **reterr_msg);

/* Writes a change of the operator's annotations (pause, switchover request)
 * on the current record with its version; used by agentctl and the leader.
 * mutate() edits the copy in place and returns 0 to write it, or a
 * negative errno (the request does not apply to this record) that is
 * returned without writing. */
int election_update_annotations(struct election *e, int (*mutate)(struct dcs_leader *l, void *userdata),
                                void *userdata, char **reterr_msg);

/* Takes ownership of a record another reader of the same lease got (the
 * renewer's), as if this election had read it at `now`. */
void election_adopt_record(struct election *e, struct dcs_leader *record, usec_t now);
/* The same for a read that found no record. */
void election_adopt_missing(struct election *e, usec_t now);
/* Whether record a (received at a_at) is older than record b: by
 * resourceVersion where both are integers, else by when each came. */
bool election_record_older(const struct dcs_leader *a, usec_t a_at, const struct dcs_leader *b, usec_t b_at);

#endif
