/* lease-watch.c: a follower's view of the leader Lease kept by a watch
 * (docs/kubernetes.md, "The watch"): the Lease kind of kube-watch.h. */
#include <string.h>

#include "dcs-kube.h"
#include "lease-watch.h"
#include "util.h"

static const char *holder_of(const struct dcs_leader *l) {
        return l ? strempty(l->holder) : NULL;
}

static bool same_string(const char *a, const char *b) {
        return (!a && !b) || (a && b && streq(a, b));
}

/* A new view of the Lease (NULL: there is none), seen at now. */
static void take_record(struct lease_watch *w, struct dcs_leader *l, usec_t now) {
        const struct dcs_leader *old = w->record;

        if (w->have_record && ((!old && !l) || (old && l && streq(strempty(old->raw), strempty(l->raw))))) {
                dcs_leader_free(l);
                return;
        }
        /* The loop acts at once on a new holder, a release (an empty holder,
         * a successor named) or a Lease that appeared or went; a renewal
         * only restarts the expiry clock. */
        if (!w->have_record || !same_string(holder_of(old), holder_of(l)) ||
            !same_string(old ? old->successor : NULL, l ? l->successor : NULL))
                w->wake = true;
        dcs_leader_free(w->record);
        w->record = l;
        w->have_record = true;
        w->record_at = now;
        w->record_taken = false;
}

static int lease_list(void *userdata, const cJSON *items, usec_t now) {
        struct lease_watch *w = userdata;
        struct dcs_leader *l = NULL;
        int r;

        if (cJSON_GetArraySize(items) > 1)
                return -EBADMSG;
        if (cJSON_GetArraySize(items) == 1) {
                r = dcs_kube_leader_from_lease(cJSON_GetArrayItem(items, 0), &l);
                if (r < 0)
                        return r;
        }
        take_record(w, l, now);
        return 0;
}

static int lease_change(void *userdata, enum kube_watch_event_type type, const cJSON *object, usec_t now) {
        struct lease_watch *w = userdata;
        struct dcs_leader *l = NULL;
        int r;

        if (type != KUBE_WATCH_DELETED) {
                r = dcs_kube_leader_from_lease(object, &l);
                if (r < 0)
                        return r;
        }
        take_record(w, l, now);
        return 0;
}

static usec_t lease_stall_bound(const void *userdata) {
        const struct lease_watch *w = userdata;

        return w->record && !isempty(w->record->holder) ? w->opt.stall_held : w->opt.stall_idle;
}

static const struct kube_watch_kind lease_kind = {
        .what = "Lease",
        .list = lease_list,
        .change = lease_change,
        .stall_bound = lease_stall_bound,
};

void lease_watch_init(struct lease_watch *w, const struct lease_watch_options *o) {
        *w = (struct lease_watch) { .opt = *o };
        kube_watch_init(&w->s, &lease_kind, w, o->max_line);
}

void lease_watch_done(struct lease_watch *w) {
        kube_watch_done(&w->s);
        dcs_leader_free(w->record);
        *w = (struct lease_watch) {};
}

bool lease_watch_fresh(const struct lease_watch *w, usec_t now) {
        return w->have_record && kube_watch_streaming(&w->s, now);
}
