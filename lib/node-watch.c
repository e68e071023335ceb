/* node-watch.c: a follower's read of the leader Lease through the watch
 * (lease-watch.h) while its stream is fresh, else a plain read. */
#include "dcs-kube.h"
#include "lease-watch.h"
#include "node.h"
#include "util.h"

/* The server ends each stream after this; the next one resumes from the
 * last version (or the last bookmark's), so this only bounds how long a
 * stream lives, at one request per stream. */
#define LEASE_WATCH_TIMEOUT_SECONDS 300u
#define LEASE_WATCH_MAX_LINE ((size_t) 1024 * 1024)

int node_start_lease_watch(struct node *n, char **reterr_msg) {
        usec_t rp = n->cfg->retry_period, ld = n->cfg->lease_duration;
        struct lease_watcher_options o = {
                .watch = {
                        /* The holder renews every retry_period: silence for
                         * two of them and a second is a dead holder or a
                         * dead stream, and either way a list says which.
                         * Always less than lease_duration - retry_period,
                         * so that a stream that went quiet is found out
                         * before its old record could look expired (an
                         * acquisition on it would only meet a 409). */
                        .stall_held = MAX(MIN(2 * rp + USEC_PER_SEC, ld > rp ? ld - rp : rp), rp),
                        /* Nobody renews a released Lease: silence is normal
                         * until the server ends the stream. */
                        .stall_idle = (LEASE_WATCH_TIMEOUT_SECONDS + 30) * USEC_PER_SEC,
                        .max_line = LEASE_WATCH_MAX_LINE,
                },
                .timeout_seconds = LEASE_WATCH_TIMEOUT_SECONDS,
        };

        struct dcs_kube_options ko;
        int r;

        if (!n->cfg->lease_watch || n->lease_watcher)
                return 0;
        /* A client of its own, like the renewer's: the loop's DCS may be
         * wrapped (control-handlers.c), and the watch's list has its own
         * connection. */
        node_dcs_kube_options(n, &ko);
        r = dcs_kube_new(&ko, n->clock, &n->watch_dcs, reterr_msg);
        if (r < 0)
                return r;
        n->have_watch_dcs = true;
        r = lease_watcher_new(&n->watch_dcs, &o, n->clock, &n->lease_watcher, reterr_msg);
        if (r < 0)
                node_stop_lease_watch(n);
        return r;
}

void node_stop_lease_watch(struct node *n) {
        n->lease_watcher = lease_watcher_free(n->lease_watcher);
        if (n->have_watch_dcs && n->watch_dcs.ops->free)
                n->watch_dcs.ops->free(n->watch_dcs.userdata);
        n->have_watch_dcs = false;
}

/* The watch's record into the election, unless the election already has a
 * newer one (its own write, a read of the fallback). */
static int adopt(struct election *e, struct lease_watch *w) {
        struct dcs_leader *copy;
        int r;

        if (w->record_taken)
                return 0;
        if (!w->record) {
                if (!e->observed || e->observed_at <= w->record_at)
                        election_adopt_missing(e, w->record_at);
        } else if (!e->observed || e->observed_missing ||
                   !election_record_older(w->record, w->record_at, e->observed, e->observed_at)) {
                r = dcs_leader_copy(w->record, &copy);
                if (r < 0)
                        return r;
                election_adopt_record(e, copy, w->record_at);
        }
        w->record_taken = true;
        return 0;
}

int node_read_lease(struct node *n, char **reterr_msg) {
        struct election *e = &n->election;
        struct lease_watch *w;
        int listed, r;

        if (!n->lease_watcher)
                return election_observe(e, reterr_msg);
        /* A list, when the watch needs one, is this tick's read. */
        listed = lease_watcher_resync(n->lease_watcher, clock_now(n->clock) + n->cfg->api_timeout, NULL);
        lease_watcher_process(n->lease_watcher);
        w = lease_watcher_state(n->lease_watcher);
        if (listed <= 0 && !lease_watch_fresh(w, clock_now(n->clock)))
                return election_observe(e, reterr_msg);
        r = adopt(e, w);
        if (r < 0)
                return r;
        return e->observed_missing ? -ENOENT : 0;
}
