/* rollout.h: the rolling update of an OnDelete StatefulSet, decided by its
 * leader: standbys first, highest ordinal first, one at a time while every
 * pod is Ready, its own pod last. Pure: parsed objects in, one step out. */
#ifndef PGLEASE_ROLLOUT_H
#define PGLEASE_ROLLOUT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "macro.h"

/* The label the StatefulSet controller puts on each pod: its revision. */
#define ROLLOUT_REVISION_LABEL "controller-revision-hash"

/* What the decision reads of an apps/v1 StatefulSet. */
struct rollout_statefulset {
        char *name;
        char *strategy;              /* spec.updateStrategy.type ("RollingUpdate" when absent, the API's default) */
        int64_t generation;          /* metadata.generation */
        int64_t observed_generation; /* status.observedGeneration, 0 when absent */
        int64_t replicas;            /* spec.replicas */
        int64_t updated_replicas;    /* status.updatedReplicas, 0 when absent */
        char *update_revision;       /* status.updateRevision, NULL when absent */
};

/* What it reads of each pod of the cluster. */
struct rollout_pod {
        char *name;
        int64_t ordinal;             /* N of "<statefulset>-N", -1 for a pod that is not the StatefulSet's */
        char *uid;
        char *revision;              /* label controller-revision-hash, NULL when absent */
        bool ready;                  /* condition Ready is "True" */
        bool deleting;               /* metadata.deletionTimestamp is set */
};

struct rollout_pods {
        struct rollout_pod *items;
        size_t n;
};

void rollout_statefulset_done(struct rollout_statefulset *s);
void rollout_pods_done(struct rollout_pods *p);

/* A StatefulSet GET body. -EBADMSG, with *reterr_msg naming the field,
 * when it is not a StatefulSet: metadata.name, metadata.generation and
 * spec.replicas are required, the status fields may be absent (an object
 * the controller has not seen yet). */
int rollout_statefulset_from_json(const cJSON *sts, struct rollout_statefulset *ret, char **reterr_msg);

/* A PodList body: each pod with its ordinal in the StatefulSet named
 * statefulset. -EBADMSG when items is not an array, or a pod of the
 * StatefulSet has no metadata.uid (its deletion needs it); a pod without
 * a name is skipped. */
int rollout_pods_from_list(const cJSON *list, const char *statefulset, struct rollout_pods *ret, char **reterr_msg);

enum rollout_step_kind {
        ROLLOUT_NOTHING,             /* no OnDelete update to carry out */
        ROLLOUT_WAIT,                /* an update is under way, but no pod may go now */
        ROLLOUT_DELETE_STANDBY,      /* delete pod (a standby at an old revision) */
        ROLLOUT_DELETE_SELF,         /* delete the leader's own pod: the last at an old revision */
        ROLLOUT_LIST_PODS,           /* asked without the pods: they are needed */
        _ROLLOUT_STEP_MAX,
        _ROLLOUT_STEP_INVALID = -EINVAL,
};

struct rollout_step {
        enum rollout_step_kind kind;
        char *reason;                /* why (NOTHING, WAIT) or what (DELETE_*), for the log */
        const struct rollout_pod *pod; /* DELETE_*: the pod, borrowed from the input */
};

void rollout_step_done(struct rollout_step *s);

/* The next step of the update of s, whose pods are pods, led by the pod
 * named self. Nothing unless s is OnDelete, its controller has observed
 * its generation and names an update revision; then a wait unless every
 * pod 0..replicas-1 exists, none is being deleted (or lies beyond
 * replicas) and every one is Ready; then the outdated standby of the
 * highest ordinal, and only when none is left, self if it is outdated.
 * pods NULL: what s alone says (nothing when the controller counts every
 * pod at the update revision), else ROLLOUT_LIST_PODS. -ENOMEM only. */
int rollout_decide(const struct rollout_statefulset *s, const struct rollout_pods *pods, const char *self,
                   struct rollout_step *ret);

#endif
