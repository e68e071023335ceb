/* renewer.h: the leader lease's own renewal path: a thread with its own
 * election state, API client and timer that renews the held lease on
 * schedule, writes the supervisor's lease-expiry file and fences at the
 * renew deadline, whatever the agent's loop is waiting for. */
#ifndef PGLEASE_RENEWER_H
#define PGLEASE_RENEWER_H

#include <stdbool.h>

#include "clock.h"
#include "dcs.h"
#include "election.h"
#include "log.h"

/* The agent's loop may be busy for a while as a leader (a checkpoint, a
 * query at its statement_timeout); past this without a word from it the
 * renewer stops renewing, so that a wedged agent loses its lease as it
 * always did. */
#define RENEWER_LOOP_SILENCE_LIMIT (120 * USEC_PER_SEC)

struct renewer_options {
        const struct clock_ops *clock;  /* read from the renewer's thread too */
        const struct logger *log;       /* its writes are single write(2) calls */
        const char *run_dir;            /* where lease-expiry lives (copied) */
        usec_t retry_period;            /* the renewal cadence */
        /* Safety rule 1: called on the renewer's thread when the renew
         * deadline passed or another member took the lease (NULL: the
         * loss is only logged, for --election-only). */
        int (*fence)(void *userdata, char **reterr_msg);
        void *fence_userdata;
        bool no_thread;                 /* unit tests drive renewer_step() */
};

struct renewer;

/* Takes the election e (its own, over its own DCS client; the caller
 * keeps the DCS alive until renewer_free). */
int renewer_new(const struct renewer_options *o, struct election *e, struct renewer **ret);
/* Stops and joins the thread. Accepts NULL; returns NULL. */
struct renewer *renewer_free(struct renewer *r);
DEFINE_POINTER_CLEANUP_FUNC(struct renewer, renewer_free);

/* The loop took the lease: renew from `record`, written at `sent`. */
int renewer_start(struct renewer *r, const struct dcs_leader *record, usec_t sent);
/* Stop renewing (release, fence, switchover, shutdown); returns once no
 * renewal is in flight, so that the caller's own write of the record is
 * not overtaken by one, and hands e (optional) the record of the last
 * renewal, so that the caller writes with its version. Accepts NULL. */
void renewer_stop(struct renewer *r, struct election *e);

/* What the next renewals publish. With wait, renews at once and returns
 * that renewal's result (safety rule 4 orders the sync annotation against
 * synchronous_standby_names: the caller must know it is written). */
int renewer_publish(struct renewer *r, const struct election_publish *pub, bool wait, char **reterr_msg);

/* Once a tick, before judging the lease: brings the loop's election e up
 * to date with what the renewer wrote or learnt (last renewal sent, the
 * record, a loss), and hands the renewer the current timings. */
void renewer_sync(struct renewer *r, struct election *e, usec_t retry_period);

/* One turn of the renewer, at `now`: returns when it next wants to run
 * (USEC_INFINITY: only when woken). The thread calls it; tests too. */
usec_t renewer_step(struct renewer *r, usec_t now);

/* Failsafe mode: the holder may stay a leader until `until` (monotonic)
 * on its members' answers (decide_failsafe_until()); an earlier time than
 * the one it has changes nothing (renewer_start() resets it). The renewer
 * fences at the later of it and the renew deadline, and writes the
 * supervisor's lease-expiry file with that time. */
void renewer_failsafe(struct renewer *r, usec_t until);

/* How many renewals succeeded (tests and the bench). */
uint64_t renewer_renewals(struct renewer *r);

#endif
