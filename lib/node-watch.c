/* node-watch.c: the watches of the leader Lease (lease-watch.h) and of the
 * member Pods (pod-watch.h) on one driver (kube-watch.h), and the reads they
 * stand in for while their streams are fresh. */
#include <string.h>

#include "dcs-kube.h"
#include "kube.h"
#include "lease-watch.h"
#include "node.h"
#include "util.h"

/* The server ends each stream after this; the next one resumes from the
 * last version (or the last bookmark's), so this only bounds how long a
 * stream lives, at one request per stream. */
#define WATCH_TIMEOUT_SECONDS 300u
#define LEASE_WATCH_MAX_LINE ((size_t) 1024 * 1024)
/* A Pod's event carries the whole object (managedFields, status). */
#define POD_WATCH_MAX_LINE ((size_t) 4 * 1024 * 1024)

int node_start_watches(struct node *n, bool members, char **reterr_msg) {
        usec_t rp = n->cfg->retry_period, ld = n->cfg->lease_duration;
        struct lease_watch_options lo = {
                /* The holder renews every retry_period: silence for two of
                 * them and a second is a dead holder or a dead stream, and
                 * either way a list says which. Always less than
                 * lease_duration - retry_period, so that a stream that went
                 * quiet is found out before its old record could look
                 * expired (an acquisition on it would only meet a 409). */
                .stall_held = MAX(MIN(2 * rp + USEC_PER_SEC, ld > rp ? ld - rp : rp), rp),
                /* Nobody renews a released Lease: silence is normal until
                 * the server ends the stream. */
                .stall_idle = (WATCH_TIMEOUT_SECONDS + 30) * USEC_PER_SEC,
                .max_line = LEASE_WATCH_MAX_LINE,
        };
        struct pod_watch_options po = {
                /* This member patches its own Pod at least every
                 * status_interval (its heartbeat changes each time), and
                 * its own watch sees that: silence for two of them is a
                 * dead stream. */
                .stall = 2 * n->cfg->status_interval + rp,
                .max_line = POD_WATCH_MAX_LINE,
        };
        _cleanup_free_ char *lease_path = NULL, *pods_path = NULL, *selector = NULL;
        struct dcs_kube_options ko;
        const char *ns, *lease_name;
        struct kube *kube;
        int r;

        members = members && n->cfg->member_watch;
        if ((!n->cfg->lease_watch && !members) || n->watcher)
                return 0;
        /* A client of its own, like the renewer's: a list then has its own
         * connection, and its request counts are the watches' own. */
        node_dcs_kube_options(n, &ko);
        r = dcs_kube_new(&ko, n->clock, &n->watch_dcs, reterr_msg);
        if (r < 0)
                return r;
        n->have_watch_dcs = true;
        if (dcs_kube_describe(&n->watch_dcs, &kube, &ns, &lease_name) < 0) {
                (void) set_error_msg(reterr_msg, "the watches need the Kubernetes DCS");
                r = -EOPNOTSUPP;
                goto fail;
        }
        selector = dcs_cluster_selector(n->cfg->cluster_name);
        if (!selector) {
                r = -ENOMEM;
                goto fail;
        }
        r = kube_lease_list_path(ns, lease_name, &lease_path, reterr_msg);
        if (r >= 0)
                r = kube_pod_list_path(ns, selector, &pods_path, reterr_msg);
        if (r >= 0)
                r = kube_watcher_new(kube, n->clock, &n->watcher);
        if (r >= 0 && n->cfg->lease_watch) {
                lease_watch_init(&n->lease_watch, &lo);
                n->watching_lease = true;
                r = kube_watcher_add(n->watcher, &n->lease_watch.s, lease_path, WATCH_TIMEOUT_SECONDS);
        }
        if (r >= 0 && members) {
                pod_watch_init(&n->pod_watch, &po);
                n->watching_pods = true;
                r = kube_watcher_add(n->watcher, &n->pod_watch.s, pods_path, WATCH_TIMEOUT_SECONDS);
        }
        if (r >= 0)
                return 0;
        if (reterr_msg && !*reterr_msg)
                (void) set_error_msg(reterr_msg, "cannot start the watches: %s", strerror(-r));
fail:
        node_stop_watches(n);
        return r;
}

void node_stop_watches(struct node *n) {
        n->watcher = kube_watcher_free(n->watcher);
        if (n->watching_lease)
                lease_watch_done(&n->lease_watch);
        n->watching_lease = false;
        if (n->watching_pods)
                pod_watch_done(&n->pod_watch);
        n->watching_pods = false;
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
        struct lease_watch *w = &n->lease_watch;
        int listed, r;

        if (!n->watching_lease)
                return election_observe(e, reterr_msg);
        /* A list, when the watch needs one, is this tick's read. */
        listed = kube_watcher_resync(n->watcher, &w->s, clock_now(n->clock) + n->cfg->api_timeout, NULL);
        kube_watcher_process(n->watcher);
        if (listed <= 0 && !lease_watch_fresh(w, clock_now(n->clock)))
                return election_observe(e, reterr_msg);
        r = adopt(e, w);
        if (r < 0)
                return r;
        return e->observed_missing ? -ENOENT : 0;
}

int node_read_members_watched(struct node *n, usec_t now) {
        struct pod_watch *w = &n->pod_watch;
        struct dcs_member_list *list = NULL;
        int r;

        if (!n->watching_pods)
                return 0;
        (void) kube_watcher_resync(n->watcher, &w->s, now + n->cfg->api_timeout, NULL);
        kube_watcher_process(n->watcher);
        if (!pod_watch_fresh(w, clock_now(n->clock)))
                return 0;
        if (!n->members || n->pod_watch_taken != w->generation) {
                r = pod_watch_members(w, &list);
                if (r < 0)
                        return 0;
                dcs_member_list_free(n->members);
                n->members = list;
                n->pod_watch_taken = w->generation;
        }
        n->members_at = now;
        return 1;
}
