/* lease-watch.h: a follower's view of the leader Lease kept by a watch
 * (docs/kubernetes.md, "The watch"), a kind of kube-watch.h's watch. */
#ifndef PGLEASE_LEASE_WATCH_H
#define PGLEASE_LEASE_WATCH_H

#include <cjson/cJSON.h>

#include "clock.h"
#include "dcs.h"
#include "kube-watch.h"

struct lease_watch_options {
        usec_t stall_held;           /* silence that breaks a stream while the lease has a holder (renewals are due) */
        usec_t stall_idle;           /* silence that breaks it otherwise (beyond the server's timeoutSeconds) */
        size_t max_line;             /* longest event accepted */
};

/* The Lease kind: its stream (s: kube-watch.h's calls; its LIST is of the
 * Lease by fieldSelector metadata.name=<lease>, more than one item is
 * -EBADMSG) and the record it last delivered. */
struct lease_watch {
        struct kube_watch s;
        struct lease_watch_options opt;
        struct dcs_leader *record;   /* the Lease as last seen; NULL when missing */
        bool have_record;            /* record (or its absence) is known */
        usec_t record_at;            /* when the current bytes were first seen (arrival) */
        bool record_taken;           /* the loop has the current record */
        bool wake;                   /* a change the loop should act on now (a new holder, a release) */
};

void lease_watch_init(struct lease_watch *w, const struct lease_watch_options *o);
void lease_watch_done(struct lease_watch *w);

/* The stream is open and not past its silence bound: its record can stand
 * in for a read of the Lease. */
bool lease_watch_fresh(const struct lease_watch *w, usec_t now);

#endif
