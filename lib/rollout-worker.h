/* rollout-worker.h: the leader's rolling update of an OnDelete StatefulSet
 * (rollout.h) on a thread of its own with its own API client: every
 * rolling_update_interval it reads the StatefulSet and, when an update is
 * under way, the cluster's pods, and deletes at most one pod, each call
 * bounded by api_timeout, so that the agent's loop never waits on them. */
#ifndef PGLEASE_ROLLOUT_WORKER_H
#define PGLEASE_ROLLOUT_WORKER_H

#include <stdbool.h>

#include "clock.h"
#include "dcs-kube.h"
#include "log.h"

struct rollout_worker_options {
        const struct clock_ops *clock;  /* read from the worker's thread too */
        const struct logger *log;       /* its writes are single write(2) calls */
        /* Its own client, made like the loop's (namespace, cluster label,
         * this pod's name, credentials); the strings are copied. */
        const struct dcs_kube_options *kube;
        const char *statefulset;        /* the StatefulSet of the cluster's pods */
        bool no_thread;                 /* unit tests drive rollout_worker_step() */
};

/* What the loop tells the worker at each tick. */
struct rollout_worker_feed {
        bool enabled;                   /* rolling_update */
        /* This member holds the lease, its PostgreSQL is the primary and
         * no pre-stop hand-over is under way. */
        bool leading;
        const char *hold;               /* why not now though leading (paused, a switchover); NULL: none */
        usec_t interval;                /* rolling_update_interval */
        usec_t api_timeout;             /* the limit of each call */
        usec_t fresh_for;               /* a feed older than this (a loop that stopped ticking) is no leave to act */
};

struct rollout_worker;

int rollout_worker_new(const struct rollout_worker_options *o, struct rollout_worker **ret, char **reterr_msg);
/* Stops and joins the thread (a call in flight ends by its api_timeout).
 * Accepts NULL; returns NULL. */
struct rollout_worker *rollout_worker_free(struct rollout_worker *w);
DEFINE_POINTER_CLEANUP_FUNC(struct rollout_worker, rollout_worker_free);

/* Once a tick, after act: the loop's current word (copied). */
void rollout_worker_feed(struct rollout_worker *w, const struct rollout_worker_feed *f);

/* One turn of the worker at now: a round (reads, decision, at most one
 * deletion) when one is due and the last feed allows it. Returns when it
 * next wants to run (USEC_INFINITY: only when fed). The thread calls it;
 * tests too. */
usec_t rollout_worker_step(struct rollout_worker *w, usec_t now);

/* Pods deleted so far (tests). */
uint64_t rollout_worker_deletions(struct rollout_worker *w);

#endif
