/* rollout.c: the rolling update of an OnDelete StatefulSet, decided by its
 * leader: standbys first, highest ordinal first, one at a time while every
 * pod is Ready, its own pod last. Pure: parsed objects in, one step out. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "rollout.h"
#include "util.h"

void rollout_statefulset_done(struct rollout_statefulset *s) {
        free(s->name);
        free(s->strategy);
        free(s->update_revision);
        *s = (struct rollout_statefulset) {};
}

void rollout_pods_done(struct rollout_pods *p) {
        for (size_t i = 0; i < p->n; i++) {
                free(p->items[i].name);
                free(p->items[i].uid);
                free(p->items[i].revision);
        }
        free(p->items);
        *p = (struct rollout_pods) {};
}

void rollout_step_done(struct rollout_step *s) {
        free(s->reason);
        *s = (struct rollout_step) {};
}

/* The member key of o; NULL when absent or null, as Go's omitempty and
 * a nil pointer look on the wire. */
static const cJSON *member(const cJSON *o, const char *key) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsNull(j) ? NULL : j;
}

/* A string field: -ENOENT when absent, -EBADMSG when not a string. */
static int get_string(const cJSON *o, const char *key, const char **ret) {
        const cJSON *j = member(o, key);

        if (!j)
                return -ENOENT;
        if (!cJSON_IsString(j))
                return -EBADMSG;
        *ret = j->valuestring;
        return 0;
}

/* A count (generation, replicas): a whole number from 0 to 2^53. */
static int get_count(const cJSON *o, const char *key, int64_t *ret) {
        const cJSON *j = member(o, key);

        if (!j)
                return -ENOENT;
        if (!cJSON_IsNumber(j) || j->valuedouble < 0 || j->valuedouble > 9007199254740992.0 ||
            j->valuedouble != floor(j->valuedouble))
                return -EBADMSG;
        *ret = (int64_t) j->valuedouble;
        return 0;
}

static int field_error(char **reterr_msg, const char *what, const char *field, int r) {
        return set_error_msg(reterr_msg, "%s: %s %s", what, field,
                             r == -ENOENT ? "is missing" : "has the wrong type"), -EBADMSG;
}

static int copy_string(const char *s, char **ret) {
        if (!s) {
                *ret = NULL;
                return 0;
        }
        *ret = strdup(s);
        return *ret ? 0 : -ENOMEM;
}

int rollout_statefulset_from_json(const cJSON *sts, struct rollout_statefulset *ret, char **reterr_msg) {
        _cleanup_(rollout_statefulset_done) struct rollout_statefulset s = {};
        const cJSON *meta = member(sts, "metadata"), *spec = member(sts, "spec"), *status = member(sts, "status");
        const cJSON *strategy = member(spec, "updateStrategy");
        const char *name = NULL, *type = "RollingUpdate", *revision = NULL;
        int r;

        if (!cJSON_IsObject(sts))
                return set_error_msg(reterr_msg, "StatefulSet: not a JSON object"), -EBADMSG;
        if (!cJSON_IsObject(meta))
                return field_error(reterr_msg, "StatefulSet", "metadata", meta ? -EBADMSG : -ENOENT);
        if ((r = get_string(meta, "name", &name)) < 0)
                return field_error(reterr_msg, "StatefulSet", "metadata.name", r);
        if ((r = get_count(meta, "generation", &s.generation)) < 0)
                return field_error(reterr_msg, "StatefulSet", "metadata.generation", r);
        if (!cJSON_IsObject(spec))
                return field_error(reterr_msg, "StatefulSet", "spec", spec ? -EBADMSG : -ENOENT);
        if ((r = get_count(spec, "replicas", &s.replicas)) < 0)
                return field_error(reterr_msg, "StatefulSet", "spec.replicas", r);
        if (strategy && !cJSON_IsObject(strategy))
                return field_error(reterr_msg, "StatefulSet", "spec.updateStrategy", -EBADMSG);
        if ((r = get_string(strategy, "type", &type)) < 0 && r != -ENOENT)
                return field_error(reterr_msg, "StatefulSet", "spec.updateStrategy.type", r);
        /* A StatefulSet the controller has not written a status for yet:
         * nothing observed, no revision (the decision waits). */
        if (status && !cJSON_IsObject(status))
                return field_error(reterr_msg, "StatefulSet", "status", -EBADMSG);
        if ((r = get_count(status, "observedGeneration", &s.observed_generation)) < 0 && r != -ENOENT)
                return field_error(reterr_msg, "StatefulSet", "status.observedGeneration", r);
        if ((r = get_count(status, "updatedReplicas", &s.updated_replicas)) < 0 && r != -ENOENT)
                return field_error(reterr_msg, "StatefulSet", "status.updatedReplicas", r);
        if ((r = get_string(status, "updateRevision", &revision)) < 0 && r != -ENOENT)
                return field_error(reterr_msg, "StatefulSet", "status.updateRevision", r);
        if (copy_string(name, &s.name) < 0 || copy_string(type, &s.strategy) < 0 ||
            copy_string(isempty(revision) ? NULL : revision, &s.update_revision) < 0)
                return -ENOMEM;
        *ret = s;
        s = (struct rollout_statefulset) {};
        return 0;
}

/* N of "<statefulset>-N" (digits only, no leading zero but "0"); -1 for
 * any other name. */
static int64_t pod_ordinal(const char *name, const char *statefulset) {
        size_t len = strlen(statefulset);
        const char *digits;
        int64_t n = 0;

        if (!strneq(name, statefulset, len) || name[len] != '-')
                return -1;
        digits = name + len + 1;
        if (!*digits || (digits[0] == '0' && digits[1]))
                return -1;
        for (const char *c = digits; *c; c++) {
                if (*c < '0' || *c > '9' || n > (INT32_MAX - (*c - '0')) / 10)
                        return -1;
                n = n * 10 + (*c - '0');
        }
        return n;
}

static bool pod_ready(const cJSON *status) {
        const cJSON *c;

        cJSON_ArrayForEach(c, member(status, "conditions")) {
                const char *type = NULL, *value = NULL;

                if (get_string(c, "type", &type) >= 0 && streq(type, "Ready"))
                        return get_string(c, "status", &value) >= 0 && streq(value, "True");
        }
        return false;
}

static int pod_from_json(const cJSON *pod, const char *statefulset, struct rollout_pod *ret, char **reterr_msg) {
        const cJSON *meta = member(pod, "metadata"), *labels = member(meta, "labels");
        const char *name = NULL, *uid = NULL, *revision = NULL;
        struct rollout_pod p = {};
        int r;

        if (get_string(meta, "name", &name) < 0 || isempty(name))
                return -ENOENT;
        p.ordinal = pod_ordinal(name, statefulset);
        if ((r = get_string(meta, "uid", &uid)) < 0 || isempty(uid)) {
                /* Only a pod the rollout may delete needs its uid. */
                if (p.ordinal >= 0)
                        return field_error(reterr_msg, name, "metadata.uid", r < 0 ? r : -ENOENT);
                uid = NULL;
        }
        if (labels && !cJSON_IsObject(labels))
                return field_error(reterr_msg, name, "metadata.labels", -EBADMSG);
        if ((r = get_string(labels, ROLLOUT_REVISION_LABEL, &revision)) < 0 && r != -ENOENT)
                return field_error(reterr_msg, name, "metadata.labels." ROLLOUT_REVISION_LABEL, r);
        p.ready = pod_ready(member(pod, "status"));
        p.deleting = member(meta, "deletionTimestamp") != NULL;
        if (copy_string(name, &p.name) < 0 || copy_string(uid, &p.uid) < 0 || copy_string(revision, &p.revision) < 0) {
                free(p.name);
                free(p.uid);
                return -ENOMEM;
        }
        *ret = p;
        return 0;
}

int rollout_pods_from_list(const cJSON *list, const char *statefulset, struct rollout_pods *ret, char **reterr_msg) {
        _cleanup_(rollout_pods_done) struct rollout_pods l = {};
        const cJSON *items = member(list, "items"), *pod;
        int r;

        if (!cJSON_IsObject(list))
                return set_error_msg(reterr_msg, "pod list: not a JSON object"), -EBADMSG;
        if (items && !cJSON_IsArray(items))
                return field_error(reterr_msg, "pod list", "items", -EBADMSG);
        l.items = calloc((size_t) cJSON_GetArraySize(items) + 1, sizeof *l.items);
        if (!l.items)
                return -ENOMEM;
        cJSON_ArrayForEach(pod, items) {
                r = pod_from_json(pod, statefulset, &l.items[l.n], reterr_msg);
                if (r == -ENOENT)
                        continue;
                if (r < 0)
                        return r;
                l.n++;
        }
        *ret = l;
        l = (struct rollout_pods) {};
        return 0;
}

/* *ret is a step of kind, for reason (taken; NULL: out of memory). */
static int step(struct rollout_step *ret, enum rollout_step_kind kind, const struct rollout_pod *pod, char *reason) {
        if (!reason)
                return -ENOMEM;
        *ret = (struct rollout_step) { .kind = kind, .reason = reason, .pod = pod };
        return 0;
}

static bool outdated(const struct rollout_pod *p, const char *revision) {
        return !p->revision || !streq(p->revision, revision);
}

static const struct rollout_pod *pod_at(const struct rollout_pods *pods, int64_t ordinal) {
        for (size_t i = 0; i < pods->n; i++)
                if (pods->items[i].ordinal == ordinal)
                        return &pods->items[i];
        return NULL;
}

/* Why no pod may go now, or NULL: every pod 0..replicas-1 present, Ready
 * and staying, none beyond (a scale-down under way). */
static int wait_reason(const struct rollout_statefulset *s, const struct rollout_pods *pods, char **ret) {
        for (int64_t i = 0; i < s->replicas; i++) {
                const struct rollout_pod *p = pod_at(pods, i);

                if (!p)
                        *ret = strdup_printf("pod %s-%" PRIi64 " is missing", s->name, i);
                else if (p->deleting)
                        *ret = strdup_printf("pod %s is being deleted", p->name);
                else if (!p->ready)
                        *ret = strdup_printf("pod %s is not Ready", p->name);
                else
                        continue;
                return *ret ? 0 : -ENOMEM;
        }
        for (size_t i = 0; i < pods->n; i++)
                if (pods->items[i].ordinal >= s->replicas) {
                        *ret = strdup_printf("pod %s is beyond spec.replicas (%" PRIi64 "): a scale-down is under way",
                                             pods->items[i].name, s->replicas);
                        return *ret ? 0 : -ENOMEM;
                }
        *ret = NULL;
        return 0;
}

int rollout_decide(const struct rollout_statefulset *s, const struct rollout_pods *pods, const char *self,
                   struct rollout_step *ret) {
        const struct rollout_pod *own = NULL, *standby = NULL;
        char *why = NULL;
        int r;

        if (!streq(s->strategy, "OnDelete"))
                return step(ret, ROLLOUT_NOTHING, NULL,
                            strdup_printf("updateStrategy is %s, not OnDelete: the StatefulSet controller replaces the pods",
                                          s->strategy));
        if (s->observed_generation < s->generation)
                return step(ret, ROLLOUT_WAIT, NULL,
                            strdup_printf("the StatefulSet controller has not observed generation %" PRIi64 " yet (at %" PRIi64 ")",
                                          s->generation, s->observed_generation));
        if (!s->update_revision)
                return step(ret, ROLLOUT_WAIT, NULL, strdup("the StatefulSet has no status.updateRevision yet"));
        /* The controller's own count: an idle cluster costs one GET a
         * round, not a list of its pods too. */
        if (s->updated_replicas >= s->replicas)
                return step(ret, ROLLOUT_NOTHING, NULL, strdup_printf("every pod is at revision %s", s->update_revision));
        if (!pods)
                return step(ret, ROLLOUT_LIST_PODS, NULL, strdup("the pods are needed"));
        r = wait_reason(s, pods, &why);
        if (r < 0)
                return r;
        if (why)
                return step(ret, ROLLOUT_WAIT, NULL, why);
        for (size_t i = 0; i < pods->n; i++) {
                const struct rollout_pod *p = &pods->items[i];

                if (p->ordinal < 0)
                        continue;
                if (streq(p->name, self))
                        own = p;
                else if (outdated(p, s->update_revision) && (!standby || p->ordinal > standby->ordinal))
                        standby = p;
        }
        /* Whose pod is last must be known: a leader outside the StatefulSet
         * (a statefulset key naming another one) deletes nothing. */
        if (!own)
                return step(ret, ROLLOUT_WAIT, NULL,
                            strdup_printf("this leader's pod %s is not a pod of StatefulSet %s", self, s->name));
        if (standby)
                return step(ret, ROLLOUT_DELETE_STANDBY, standby,
                            strdup_printf("deleting standby %s (revision %s)", standby->name, standby->revision ?: "none"));
        if (outdated(own, s->update_revision))
                return step(ret, ROLLOUT_DELETE_SELF, own,
                            strdup_printf("deleting its own pod %s (revision %s), the last one outdated: "
                                          "its pre-stop hook hands the primary over",
                                          own->name, own->revision ?: "none"));
        return step(ret, ROLLOUT_NOTHING, NULL, strdup_printf("every pod is at revision %s", s->update_revision));
}
