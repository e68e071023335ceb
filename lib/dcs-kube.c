/* dcs-kube.c: the Kubernetes backend of the DCS: the leader record is the
 * Lease "<cluster>-leader", member records are annotations on the Pods. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dcs-kube.h"
#include "util.h"

struct dcs_kube {
        struct kube *kube;
        char *namespace;
        char *cluster;
        char *pod;
        char *pod_uid;               /* learnt from the first patch, for events */
        char *lease_name;
        cJSON *last_lease;           /* the Lease last read or written, PUT back modified */
};

static const cJSON *obj_get(const cJSON *o, const char *key) {
        return cJSON_GetObjectItemCaseSensitive(o, key);
}

static const char *obj_string(const cJSON *o, const char *key) {
        const cJSON *j = obj_get(o, key);

        return cJSON_IsString(j) ? j->valuestring : NULL;
}

static int spec_number(const cJSON *spec, const char *key, int64_t *ret) {
        const cJSON *j = obj_get(spec, key);

        if (!j || cJSON_IsNull(j)) {
                *ret = 0;
                return 0;
        }
        if (!cJSON_IsNumber(j) || j->valuedouble < 0 || j->valuedouble > (double) INT32_MAX * 1000)
                return -EBADMSG;
        *ret = (int64_t) j->valuedouble;
        return 0;
}

static int spec_time(const cJSON *spec, const char *key, usec_t *ret) {
        const cJSON *j = obj_get(spec, key);

        *ret = 0;
        if (!j || cJSON_IsNull(j))
                return 0;
        if (!cJSON_IsString(j) || clock_parse_rfc3339(j->valuestring, ret) < 0)
                return -EBADMSG;
        return 0;
}

/* "<timeline>/<lsn>", e.g. "3/0/3000060". A malformed annotation (someone
 * edited it by hand) reads as "none" rather than breaking the agent. */
static void parse_optime(const char *s, uint32_t *ret_timeline, uint64_t *ret_lsn) {
        unsigned long tl;
        uint64_t lsn;
        char *end;

        if (isempty(s) || s[0] < '0' || s[0] > '9')
                return;
        errno = 0;
        tl = strtoul(s, &end, 10);
        if (errno != 0 || *end != '/' || tl > UINT32_MAX || dcs_lsn_parse(end + 1, &lsn) < 0)
                return;
        *ret_timeline = (uint32_t) tl;
        *ret_lsn = lsn;
}

static int leader_annotations(const cJSON *ann, struct dcs_leader *l) {
        const char *v;
        bool b;

        parse_optime(obj_string(ann, DCS_ANNOTATION_OPTIME), &l->optime_timeline, &l->optime_lsn);
        v = obj_string(ann, DCS_ANNOTATION_SYNC);
        if (!isempty(v) && strv_split_comma(v, &l->sync) < 0)
                return -ENOMEM;
        l->sync_mode = dcs_sync_mode_from_string(obj_string(ann, DCS_ANNOTATION_SYNC_MODE));
        v = obj_string(ann, DCS_ANNOTATION_FAILSAFE);
        if (!isempty(v) && strv_split_comma(v, &l->failsafe) < 0)
                return -ENOMEM;
        v = obj_string(ann, DCS_ANNOTATION_SWITCHOVER);
        if (!isempty(v) && !(l->switchover = strdup(v)))
                return -ENOMEM;
        v = obj_string(ann, DCS_ANNOTATION_SWITCHOVER_REFUSED);
        if (!isempty(v) && !(l->switchover_refused = strdup(v)))
                return -ENOMEM;
        v = obj_string(ann, DCS_ANNOTATION_HANDOVER);
        if (!isempty(v) && !(l->handover = strdup(v)))
                return -ENOMEM;
        v = obj_string(ann, DCS_ANNOTATION_PAUSED);
        l->paused = v && parse_bool(v, &b) >= 0 && b;
        v = obj_string(ann, DCS_ANNOTATION_SUCCESSOR);
        if (!isempty(v) && !(l->successor = strdup(v)))
                return -ENOMEM;
        v = obj_string(ann, DCS_ANNOTATION_SUCCESSOR_LSN);
        if (v && dcs_lsn_parse(v, &l->successor_lsn) < 0)
                l->successor_lsn = 0;
        return 0;
}

/* The bytes whose change restarts expiry: spec, annotations, resourceVersion. */
static char *leader_raw(const cJSON *spec, const cJSON *ann, const char *rv) {
        _cleanup_(cjson_deletep) cJSON *o = cJSON_CreateObject();

        if (!o ||
            !cJSON_AddItemToObject(o, "resourceVersion", rv ? cJSON_CreateString(rv) : cJSON_CreateNull()) ||
            !cJSON_AddItemToObject(o, "spec", cJSON_Duplicate(spec, true)) ||
            !cJSON_AddItemToObject(o, "annotations", ann ? cJSON_Duplicate(ann, true) : cJSON_CreateObject()))
                return NULL;
        return cJSON_PrintUnformatted(o);
}

int dcs_kube_leader_from_lease(const cJSON *lease, struct dcs_leader **ret) {
        _cleanup_(dcs_leader_freep) struct dcs_leader *l = NULL;
        const cJSON *spec = obj_get(lease, "spec"), *meta = obj_get(lease, "metadata");
        const cJSON *ann = obj_get(meta, "annotations");
        const char *holder = obj_string(spec, "holderIdentity"), *rv = obj_string(meta, "resourceVersion");
        int64_t duration, transitions;

        if (!cJSON_IsObject(lease) || !cJSON_IsObject(spec) || (ann && !cJSON_IsObject(ann)))
                return -EBADMSG;
        l = calloc(1, sizeof(*l));
        if (!l)
                return -ENOMEM;
        if (spec_number(spec, "leaseDurationSeconds", &duration) < 0 ||
            spec_number(spec, "leaseTransitions", &transitions) < 0 ||
            spec_time(spec, "acquireTime", &l->acquire_time) < 0 ||
            spec_time(spec, "renewTime", &l->renew_time) < 0)
                return -EBADMSG;
        l->lease_duration = (usec_t) duration * USEC_PER_SEC;
        l->transitions = transitions;
        l->holder = strdup(holder ?: "");
        if (!l->holder || (rv && !(l->version = strdup(rv))))
                return -ENOMEM;
        if (leader_annotations(ann, l) < 0)
                return -ENOMEM;
        l->raw = leader_raw(spec, ann, rv);
        if (!l->raw)
                return -ENOMEM;
        *ret = TAKE_PTR(l);
        return 0;
}

/* Sets key to item (taking it), keeping the key's place if it exists. */
static bool obj_set(cJSON *o, const char *key, cJSON *item) {
        if (!item)
                return false;
        if (obj_get(o, key))
                return cJSON_ReplaceItemInObjectCaseSensitive(o, key, item);
        return cJSON_AddItemToObject(o, key, item);
}

static cJSON *obj_child(cJSON *o, const char *key) {
        cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);

        if (cJSON_IsObject(j))
                return j;
        j = cJSON_CreateObject();
        return obj_set(o, key, j) ? j : NULL;
}

/* Sets a string annotation, or removes it when value is NULL. */
static bool set_annotation(cJSON *ann, const char *key, const char *value) {
        if (!value) {
                cJSON_DeleteItemFromObjectCaseSensitive(ann, key);
                return true;
        }
        return obj_set(ann, key, cJSON_CreateString(value));
}

static bool set_time(cJSON *spec, const char *key, usec_t t) {
        _cleanup_free_ char *s = NULL;

        if (t == 0) {
                cJSON_DeleteItemFromObjectCaseSensitive(spec, key);
                return true;
        }
        s = clock_format_microtime(t);
        return s && obj_set(spec, key, cJSON_CreateString(s));
}

static char *strv_join_comma(char * const *l) {
        size_t len = 1;
        char *s;

        for (size_t i = 0; l && l[i]; i++)
                len += strlen(l[i]) + 1;
        s = calloc(1, len);
        if (!s)
                return NULL;
        for (size_t i = 0; l && l[i]; i++) {
                if (i > 0)
                        strcat(s, ",");
                strcat(s, l[i]);
        }
        return s;
}

static int write_annotations(const struct dcs_leader *l, cJSON *ann) {
        _cleanup_free_ char *optime = NULL, *lsn = NULL, *sync = NULL, *succ_lsn = NULL, *failsafe = NULL;

        if (l->optime_timeline > 0 || l->optime_lsn > 0) {
                lsn = dcs_lsn_format(l->optime_lsn);
                optime = lsn ? strdup_printf("%" PRIu32 "/%s", l->optime_timeline, lsn) : NULL;
                if (!optime)
                        return -ENOMEM;
        }
        if (strv_length(l->sync) > 0 && !(sync = strv_join_comma(l->sync)))
                return -ENOMEM;
        if (strv_length(l->failsafe) > 0 && !(failsafe = strv_join_comma(l->failsafe)))
                return -ENOMEM;
        if (l->successor_lsn > 0 && !(succ_lsn = dcs_lsn_format(l->successor_lsn)))
                return -ENOMEM;
        if (!set_annotation(ann, DCS_ANNOTATION_OPTIME, optime) ||
            !set_annotation(ann, DCS_ANNOTATION_SYNC, sync) ||
            !set_annotation(ann, DCS_ANNOTATION_SYNC_MODE, dcs_sync_mode_to_string(l->sync_mode)) ||
            !set_annotation(ann, DCS_ANNOTATION_FAILSAFE, failsafe) ||
            !set_annotation(ann, DCS_ANNOTATION_SWITCHOVER, isempty(l->switchover) ? NULL : l->switchover) ||
            !set_annotation(ann, DCS_ANNOTATION_SWITCHOVER_REFUSED, isempty(l->switchover_refused) ? NULL : l->switchover_refused) ||
            !set_annotation(ann, DCS_ANNOTATION_PAUSED, l->paused ? "true" : NULL) ||
            !set_annotation(ann, DCS_ANNOTATION_SUCCESSOR, isempty(l->successor) ? NULL : l->successor) ||
            !set_annotation(ann, DCS_ANNOTATION_HANDOVER, isempty(l->handover) ? NULL : l->handover) ||
            !set_annotation(ann, DCS_ANNOTATION_SUCCESSOR_LSN, succ_lsn))
                return -ENOMEM;
        return 0;
}

int dcs_kube_leader_to_lease(const struct dcs_leader *l, const cJSON *base, const char *ns, const char *name,
                             cJSON **ret) {
        _cleanup_(cjson_deletep) cJSON *o = base ? cJSON_Duplicate(base, true) : cJSON_CreateObject();
        cJSON *meta, *spec, *ann;
        /* Whole seconds, rounded up: a lease is never shorter than asked. */
        double duration = (double) ((l->lease_duration + USEC_PER_SEC - 1) / USEC_PER_SEC);

        if (!o)
                return -ENOMEM;
        if (!obj_set(o, "apiVersion", cJSON_CreateString("coordination.k8s.io/v1")) ||
            !obj_set(o, "kind", cJSON_CreateString("Lease")) ||
            !(meta = obj_child(o, "metadata")) ||
            !obj_set(meta, "name", cJSON_CreateString(name)) ||
            !obj_set(meta, "namespace", cJSON_CreateString(ns)) ||
            !(spec = obj_child(o, "spec")) ||
            !(ann = obj_child(meta, "annotations")))
                return -ENOMEM;
        if (l->version) {
                if (!obj_set(meta, "resourceVersion", cJSON_CreateString(l->version)))
                        return -ENOMEM;
        } else
                cJSON_DeleteItemFromObjectCaseSensitive(meta, "resourceVersion");
        if (!obj_set(spec, "holderIdentity", cJSON_CreateString(strempty(l->holder))) ||
            !obj_set(spec, "leaseDurationSeconds", cJSON_CreateNumber(duration)) ||
            !set_time(spec, "acquireTime", l->acquire_time) ||
            !set_time(spec, "renewTime", l->renew_time) ||
            !obj_set(spec, "leaseTransitions", cJSON_CreateNumber((double) l->transitions)))
                return -ENOMEM;
        if (write_annotations(l, ann) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}

static void keep_lease(struct dcs_kube *d, cJSON *lease) {
        if (d->last_lease)
                cJSON_Delete(d->last_lease);
        d->last_lease = lease;
}

/* Maps a Lease answer to a record and keeps the object for the next PUT. */
static int lease_answer(struct dcs_kube *d, cJSON *lease, struct dcs_leader **ret, char **reterr_msg) {
        struct dcs_leader *l;
        int r;

        r = dcs_kube_leader_from_lease(lease, &l);
        if (r < 0) {
                cJSON_Delete(lease);
                (void) set_error_msg(reterr_msg, "Lease %s/%s: unreadable spec", d->namespace, d->lease_name);
                return r;
        }
        keep_lease(d, lease);
        *ret = l;
        return 0;
}

static int kube_leader_get(void *userdata, usec_t deadline, struct dcs_leader **ret, char **reterr_msg) {
        struct dcs_kube *d = userdata;
        cJSON *lease = NULL;
        int r;

        r = kube_lease_get(d->kube, d->namespace, d->lease_name, deadline, &lease, reterr_msg);
        if (r < 0)
                return r;
        return lease_answer(d, lease, ret, reterr_msg);
}

static int kube_leader_create(void *userdata, const struct dcs_leader *want, usec_t deadline,
                              struct dcs_leader **ret, char **reterr_msg) {
        struct dcs_kube *d = userdata;
        _cleanup_(cjson_deletep) cJSON *body = NULL;
        struct dcs_leader w = *want;
        cJSON *lease = NULL;
        int r;

        w.version = NULL;
        r = dcs_kube_leader_to_lease(&w, NULL, d->namespace, d->lease_name, &body);
        if (r < 0)
                return r;
        r = kube_lease_create(d->kube, d->namespace, body, deadline, &lease, reterr_msg);
        if (r < 0)
                return r;
        return lease_answer(d, lease, ret, reterr_msg);
}

static int kube_leader_update(void *userdata, const struct dcs_leader *want, usec_t deadline,
                              struct dcs_leader **ret, char **reterr_msg) {
        struct dcs_kube *d = userdata;
        _cleanup_(cjson_deletep) cJSON *body = NULL;
        const cJSON *base = NULL;
        const char *last_rv;
        cJSON *lease = NULL;
        int r;

        if (isempty(want->version)) {
                (void) set_error_msg(reterr_msg, "leader update without a version");
                return -EINVAL;
        }
        /* PUT back the object we read, so that fields we do not know survive;
         * when it is not the version the caller decided on, start afresh (the
         * server answers 409 anyway if that version is stale). */
        last_rv = d->last_lease ? obj_string(obj_get(d->last_lease, "metadata"), "resourceVersion") : NULL;
        if (last_rv && streq(last_rv, want->version))
                base = d->last_lease;
        r = dcs_kube_leader_to_lease(want, base, d->namespace, d->lease_name, &body);
        if (r < 0)
                return r;
        r = kube_lease_replace(d->kube, d->namespace, body, deadline, &lease, reterr_msg);
        if (r < 0)
                return r;
        return lease_answer(d, lease, ret, reterr_msg);
}

static cJSON *member_patch(const struct dcs_kube *d, const struct dcs_member *self) {
        _cleanup_(cjson_deletep) cJSON *patch = cJSON_CreateObject();
        _cleanup_free_ char *status = NULL;
        cJSON *meta, *labels, *ann;

        if (dcs_member_to_json(self, &status) < 0 || !patch)
                return NULL;
        /* In a merge patch, null removes the key: no role label while unknown. */
        if (!(meta = cJSON_AddObjectToObject(patch, "metadata")) ||
            !(labels = cJSON_AddObjectToObject(meta, "labels")) ||
            !(self->role == MEMBER_ROLE_UNKNOWN ? cJSON_AddNullToObject(labels, DCS_LABEL_ROLE)
                                                : cJSON_AddStringToObject(labels, DCS_LABEL_ROLE,
                                                                          member_role_to_string(self->role))) ||
            !cJSON_AddStringToObject(labels, DCS_LABEL_CLUSTER, d->cluster) ||
            !(ann = cJSON_AddObjectToObject(meta, "annotations")) ||
            !cJSON_AddStringToObject(ann, DCS_ANNOTATION_STATUS, status))
                return NULL;
        return TAKE_PTR(patch);
}

static int kube_member_publish(void *userdata, const struct dcs_member *self, usec_t deadline, char **reterr_msg) {
        struct dcs_kube *d = userdata;
        _cleanup_(cjson_deletep) cJSON *patch = NULL, *pod = NULL;
        const char *uid;
        int r;

        if (member_role_to_string(self->role) == NULL)
                return -EINVAL;
        patch = member_patch(d, self);
        if (!patch)
                return -ENOMEM;
        r = kube_pod_merge_patch(d->kube, d->namespace, d->pod, patch, deadline, &pod, reterr_msg);
        if (r < 0)
                return r;
        uid = obj_string(obj_get(pod, "metadata"), "uid");
        if (uid && (!d->pod_uid || !streq(d->pod_uid, uid))) {
                free(d->pod_uid);
                d->pod_uid = strdup(uid);
        }
        return 0;
}

/* A pod of the cluster as a member; one without a readable status annotation
 * is still listed (role unknown, state "unknown") so that it is seen. */
static int pod_to_member(const cJSON *pod, struct dcs_member *ret) {
        const cJSON *meta = obj_get(pod, "metadata");
        const char *name = obj_string(meta, "name");
        const char *status = obj_string(obj_get(meta, "annotations"), DCS_ANNOTATION_STATUS);

        if (!name)
                return -EBADMSG;
        if (status && dcs_member_from_json(name, status, ret) >= 0)
                return 0;
        *ret = (struct dcs_member) { .role = MEMBER_ROLE_UNKNOWN };
        ret->name = strdup(name);
        ret->state = strdup("unknown");
        if (!ret->name || !ret->state) {
                dcs_member_done(ret);
                return -ENOMEM;
        }
        return 0;
}

static int member_cmp(const void *a, const void *b) {
        return strcmp(((const struct dcs_member *) a)->name, ((const struct dcs_member *) b)->name);
}

int dcs_kube_members_from_pod_list(const cJSON *list, struct dcs_member_list **ret, char **reterr_msg) {
        _cleanup_(dcs_member_list_freep) struct dcs_member_list *l = NULL;
        const cJSON *items, *pod;
        int r;

        items = obj_get(list, "items");
        if (items && !cJSON_IsArray(items)) {
                (void) set_error_msg(reterr_msg, "pod list: items is not an array");
                return -EBADMSG;
        }
        l = calloc(1, sizeof(*l));
        if (!l || !(l->members = calloc((size_t) cJSON_GetArraySize(items) + 1, sizeof(struct dcs_member))))
                return -ENOMEM;
        cJSON_ArrayForEach(pod, items) {
                r = pod_to_member(pod, &l->members[l->n]);
                if (r == -EBADMSG)
                        continue;
                if (r < 0)
                        return r;
                l->n++;
        }
        qsort(l->members, l->n, sizeof(struct dcs_member), member_cmp);
        *ret = TAKE_PTR(l);
        return 0;
}

static int kube_member_list(void *userdata, usec_t deadline, struct dcs_member_list **ret, char **reterr_msg) {
        struct dcs_kube *d = userdata;
        _cleanup_(cjson_deletep) cJSON *list = NULL;
        _cleanup_free_ char *selector = NULL;
        int r;

        selector = dcs_cluster_selector(d->cluster);
        if (!selector)
                return -ENOMEM;
        r = kube_pod_list(d->kube, d->namespace, selector, deadline, &list, reterr_msg);
        if (r < 0)
                return r;
        return dcs_kube_members_from_pod_list(list, ret, reterr_msg);
}

static int kube_event_post(void *userdata, const char *type, const char *reason, const char *message,
                           usec_t deadline, char **reterr_msg) {
        struct dcs_kube *d = userdata;
        struct kube_event e = {
                .pod = d->pod,
                .pod_uid = d->pod_uid,
                .type = type,
                .reason = reason,
                .message = message,
        };

        return kube_event_create(d->kube, d->namespace, &e, deadline, reterr_msg);
}

static uint64_t kube_request_count_op(void *userdata) {
        return kube_request_count(((struct dcs_kube *) userdata)->kube);
}

static const struct api_stats *kube_request_stats_op(void *userdata) {
        return kube_request_stats(((struct dcs_kube *) userdata)->kube);
}

static void dcs_kube_free(void *userdata) {
        struct dcs_kube *d = userdata;

        if (!d)
                return;
        kube_free(d->kube);
        if (d->last_lease)
                cJSON_Delete(d->last_lease);
        free(d->namespace);
        free(d->cluster);
        free(d->pod);
        free(d->pod_uid);
        free(d->lease_name);
        free(d);
}

static inline void dcs_kube_freep(struct dcs_kube **d) {
        dcs_kube_free(*d);
}

static const struct dcs_ops dcs_kube_ops = {
        .leader_get = kube_leader_get,
        .leader_create = kube_leader_create,
        .leader_update = kube_leader_update,
        .member_publish = kube_member_publish,
        .member_list = kube_member_list,
        .event_post = kube_event_post,
        .request_count = kube_request_count_op,
        .request_stats = kube_request_stats_op,
        .free = dcs_kube_free,
};

int dcs_kube_describe(const struct dcs *dcs, struct kube **ret_kube, const char **ret_namespace,
                      const char **ret_lease_name) {
        const struct dcs_kube *d;

        if (!dcs || dcs->ops != &dcs_kube_ops)
                return -EOPNOTSUPP;
        d = dcs->userdata;
        *ret_kube = d->kube;
        *ret_namespace = d->namespace;
        *ret_lease_name = d->lease_name;
        return 0;
}

int dcs_kube_new(const struct dcs_kube_options *o, const struct clock_ops *clock, struct dcs *ret, char **reterr_msg) {
        _cleanup_(dcs_kube_freep) struct dcs_kube *d = NULL;
        const char *ns;
        int r;

        if (isempty(o->cluster) || isempty(o->pod_name)) {
                (void) set_error_msg(reterr_msg, "the Kubernetes DCS needs a cluster name and this pod's name");
                return -EINVAL;
        }
        d = calloc(1, sizeof(*d));
        if (!d)
                return -ENOMEM;
        r = kube_new(&o->kube, clock, &d->kube, reterr_msg);
        if (r < 0)
                return r;
        ns = o->namespace ?: kube_namespace(d->kube) ?: "default";
        d->namespace = strdup(ns);
        d->cluster = strdup(o->cluster);
        d->pod = strdup(o->pod_name);
        d->lease_name = strdup_printf("%s-leader", o->cluster);
        if (!d->namespace || !d->cluster || !d->pod || !d->lease_name)
                return -ENOMEM;
        *ret = (struct dcs) { .ops = &dcs_kube_ops, .userdata = TAKE_PTR(d) };
        return 0;
}
