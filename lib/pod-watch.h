/* pod-watch.h: the member Pods kept by a watch (docs/kubernetes.md, "The
 * watch"), a kind of kube-watch.h's watch: each Pod of the cluster's label
 * by name, with its status annotation, so that a tick has the member list
 * without listing the Pods. */
#ifndef PGLEASE_POD_WATCH_H
#define PGLEASE_POD_WATCH_H

#include <cjson/cJSON.h>

#include "clock.h"
#include "dcs.h"
#include "kube-watch.h"

struct pod_watch_options {
        usec_t stall;                /* silence that breaks the stream (every member patches its Pod at least every status_interval) */
        size_t max_line;             /* longest event accepted */
};

/* The Pod kind: its stream (s: kube-watch.h's calls; its LIST is of the
 * Pods by label selector) and what it keeps of each Pod. */
struct pod_watch {
        struct kube_watch s;
        struct pod_watch_options opt;
        cJSON *pods;                 /* array of {"metadata": {"name", "annotations": {status}}}; NULL before a list */
        usec_t changed_at;           /* when the view last changed */
        uint64_t generation;         /* bumped by each change */
};

void pod_watch_init(struct pod_watch *w, const struct pod_watch_options *o);
void pod_watch_done(struct pod_watch *w);
/* The stream is open, not past its silence bound, and a list came: the
 * view can stand in for a list of the Pods. */
bool pod_watch_fresh(const struct pod_watch *w, usec_t now);
/* The view as the member list a LIST of the Pods would give. */
int pod_watch_members(const struct pod_watch *w, struct dcs_member_list **ret);

#endif
