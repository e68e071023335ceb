/* pod-watch.c: the member Pods kept by a watch: the Pod kind of
 * kube-watch.h. Only what a member record needs is kept of each Pod (its
 * name and the status annotation), not the whole object. */
#include <string.h>

#include "dcs-kube.h"
#include "kube-yaml.h"
#include "pod-watch.h"
#include "util.h"

static const char *pod_name(const cJSON *pod) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(pod, "metadata"), "name");

        return cJSON_IsString(name) && !isempty(name->valuestring) ? name->valuestring : NULL;
}

/* What is kept of a Pod; -EBADMSG when it has no name. */
static int trim(const cJSON *pod, cJSON **ret) {
        const cJSON *meta = cJSON_GetObjectItemCaseSensitive(pod, "metadata");
        const cJSON *status = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(meta, "annotations"),
                                                               DCS_ANNOTATION_STATUS);
        _cleanup_(cjson_deletep) cJSON *t = NULL;
        cJSON *m, *a;

        if (!cJSON_IsObject(pod) || !pod_name(pod))
                return -EBADMSG;
        t = cJSON_CreateObject();
        if (!t || !(m = cJSON_AddObjectToObject(t, "metadata")) ||
            !cJSON_AddStringToObject(m, "name", pod_name(pod)) ||
            !(a = cJSON_AddObjectToObject(m, "annotations")) ||
            (cJSON_IsString(status) && !cJSON_AddStringToObject(a, DCS_ANNOTATION_STATUS, status->valuestring)))
                return -ENOMEM;
        *ret = TAKE_PTR(t);
        return 0;
}

static void changed(struct pod_watch *w, usec_t now) {
        w->changed_at = now;
        w->generation++;
}

static int pods_list(void *userdata, const cJSON *items, usec_t now) {
        struct pod_watch *w = userdata;
        _cleanup_(cjson_deletep) cJSON *pods = cJSON_CreateArray();
        const cJSON *pod;

        if (!pods)
                return -ENOMEM;
        cJSON_ArrayForEach(pod, items) {
                cJSON *t;
                int r = trim(pod, &t);

                if (r < 0)
                        return r;
                cJSON_AddItemToArray(pods, t);
        }
        if (!w->pods || !cJSON_Compare(w->pods, pods, true))
                changed(w, now);
        cJSON_Delete(w->pods);
        w->pods = TAKE_PTR(pods);
        return 0;
}

static int find(const cJSON *pods, const char *name) {
        int i = 0;
        const cJSON *p;

        cJSON_ArrayForEach(p, pods) {
                if (streq(strempty(pod_name(p)), name))
                        return i;
                i++;
        }
        return -ENOENT;
}

static int pods_change(void *userdata, enum kube_watch_event_type type, const cJSON *object, usec_t now) {
        struct pod_watch *w = userdata;
        cJSON *t = NULL;
        int i, r;

        r = trim(object, &t);
        if (r < 0)
                return r;
        /* Events come only after a list. */
        if (!w->pods) {
                cJSON_Delete(t);
                return -EBADMSG;
        }
        i = find(w->pods, pod_name(t));
        if (type == KUBE_WATCH_DELETED) {
                cJSON_Delete(t);
                if (i >= 0) {
                        cJSON_DeleteItemFromArray(w->pods, i);
                        changed(w, now);
                }
                return 0;
        }
        if (i >= 0 && cJSON_Compare(cJSON_GetArrayItem(w->pods, i), t, true)) {
                cJSON_Delete(t);
                return 0;
        }
        if (i >= 0)
                (void) cJSON_ReplaceItemInArray(w->pods, i, t);
        else
                cJSON_AddItemToArray(w->pods, t);
        changed(w, now);
        return 0;
}

static usec_t pods_stall_bound(const void *userdata) {
        const struct pod_watch *w = userdata;

        return w->opt.stall;
}

static const struct kube_watch_kind pod_kind = {
        .what = "Pod",
        .list = pods_list,
        .change = pods_change,
        .stall_bound = pods_stall_bound,
};

void pod_watch_init(struct pod_watch *w, const struct pod_watch_options *o) {
        *w = (struct pod_watch) { .opt = *o };
        kube_watch_init(&w->s, &pod_kind, w, o->max_line);
}

void pod_watch_done(struct pod_watch *w) {
        kube_watch_done(&w->s);
        cJSON_Delete(w->pods);
        *w = (struct pod_watch) {};
}

bool pod_watch_fresh(const struct pod_watch *w, usec_t now) {
        return w->pods && kube_watch_streaming(&w->s, now);
}

int pod_watch_members(const struct pod_watch *w, struct dcs_member_list **ret) {
        _cleanup_(cjson_deletep) cJSON *list = cJSON_CreateObject();

        if (!w->pods)
                return -ENODATA;
        if (!list || !cJSON_AddItemReferenceToObject(list, "items", w->pods))
                return -ENOMEM;
        return dcs_kube_members_from_pod_list(list, ret, NULL);
}
