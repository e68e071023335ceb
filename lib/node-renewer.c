/* node-renewer.c: gives a member's lease its own renewal path (renewer.c):
 * a second API client and election for the renewer's thread, and the
 * fence it calls at the renew deadline. */
#include "dcs-kube.h"
#include "node.h"
#include "renewer.h"
#include "util.h"

static int fence_from_renewer(void *userdata, char **reterr_msg) {
        struct node *n = userdata;

        return pgctl_fence(&n->pgctl, n->renew_fence_timeout, reterr_msg);
}

int node_start_renewer(struct node *n, const struct logger *log, bool fence_postgres, char **reterr_msg) {
        struct dcs_kube_options o;
        struct election_options eo = {
                .identity = n->cfg->node_name,
                .lease_duration = n->cfg->lease_duration,
                .renew_deadline = n->cfg->renew_deadline,
                .api_timeout = n->cfg->api_timeout,
        };
        int r;

        /* Its own connection: a renewal never queues behind the loop's
         * calls (a slow member list, an Event) on one handle. */
        node_dcs_kube_options(n, &o);
        r = dcs_kube_new(&o, n->clock, &n->renew_dcs, reterr_msg);
        if (r < 0)
                return r;
        n->have_renew_dcs = true;
        r = election_init(&n->renew_election, &eo, n->clock, &n->renew_dcs);
        if (r < 0)
                return r;
        n->have_renew_election = true;
        n->renew_fence_timeout = n->cfg->stop_timeout;
        return renewer_new(&(struct renewer_options) {
                                   .clock = n->clock,
                                   .log = log,
                                   .run_dir = n->cfg->run_dir,
                                   .retry_period = n->cfg->retry_period,
                                   /* --election-only: PostgreSQL is not ours to stop. */
                                   .fence = fence_postgres ? fence_from_renewer : NULL,
                                   .fence_userdata = n,
                           }, &n->renew_election, &n->renewer);
}

void node_stop_renewer(struct node *n) {
        n->renewer = renewer_free(n->renewer);
        if (n->have_renew_election)
                election_done(&n->renew_election);
        if (n->have_renew_dcs && n->renew_dcs.ops->free)
                n->renew_dcs.ops->free(n->renew_dcs.userdata);
        n->have_renew_election = n->have_renew_dcs = false;
}
