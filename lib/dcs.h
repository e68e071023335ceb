/* dcs.h: the distributed configuration store as the agent sees it: one
 * leader record (a lease plus the facts the leader publishes) and one member
 * record per node. Backend: Kubernetes (dcs-kube.c); etcd later. */
#ifndef PGLEASE_DCS_H
#define PGLEASE_DCS_H

#include <stdint.h>

#include "clock.h"
#include "macro.h"

/* Annotation keys on the Lease (docs/design.md, "Leader election"). */
#define DCS_ANNOTATION_OPTIME "pglease.io/optime"               /* "<timeline>/<lsn>", e.g. "3/0/3000060" */
#define DCS_ANNOTATION_SYNC "pglease.io/sync"                   /* comma list of member names */
#define DCS_ANNOTATION_SYNC_MODE "pglease.io/sync-mode"         /* the leader's synchronous_mode: off, on, strict */
#define DCS_ANNOTATION_SWITCHOVER "pglease.io/switchover"       /* requested target name, or "*" for any */
#define DCS_ANNOTATION_PAUSED "pglease.io/paused"               /* "true" while paused */
#define DCS_ANNOTATION_SWITCHOVER_REFUSED "pglease.io/switchover-refused" /* the leader's reason for refusing the last request */
#define DCS_ANNOTATION_HANDOVER "pglease.io/handover"         /* "<switchover|demote> <old primary>" of a planned release */
#define DCS_ANNOTATION_SUCCESSOR "pglease.io/successor"         /* member allowed to take a released lease */
#define DCS_ANNOTATION_SUCCESSOR_LSN "pglease.io/successor-lsn" /* the LSN it must have replayed */
#define DCS_ANNOTATION_FAILSAFE "pglease.io/failsafe"         /* comma list: the members a failsafe-mode holder asks */
/* Member records (Pod annotation and labels). */
#define DCS_ANNOTATION_STATUS "pglease.io/status"
#define DCS_LABEL_ROLE "pglease.io/role"
#define DCS_LABEL_CLUSTER "pglease.io/cluster"

/* The synchronous_mode a leader publishes with its sync list; UNKNOWN when
 * the record has none (written before it was published: the list binds). */
enum dcs_sync_mode {
        DCS_SYNC_MODE_UNKNOWN,
        DCS_SYNC_MODE_OFF,
        DCS_SYNC_MODE_ON,
        DCS_SYNC_MODE_STRICT,
        _DCS_SYNC_MODE_MAX,
};
const char *dcs_sync_mode_to_string(enum dcs_sync_mode m);
enum dcs_sync_mode dcs_sync_mode_from_string(const char *s);

struct dcs_leader {
        char *holder;                /* "" when nobody holds it (released) */
        usec_t lease_duration;       /* leaseDurationSeconds */
        usec_t acquire_time;         /* wall clock, informational only: never compared with local time */
        usec_t renew_time;           /* wall clock, informational only */
        int64_t transitions;         /* leaseTransitions */

        uint32_t optime_timeline;    /* published by the leader; 0 if none */
        uint64_t optime_lsn;
        char **sync;                 /* NULL-terminated; NULL or empty when none */
        enum dcs_sync_mode sync_mode;
        char **failsafe;             /* failsafe mode: the members the holder asks; NULL or empty when off */
        char *switchover;            /* requested target, NULL if none */
        char *switchover_refused;    /* why the leader refused the last request, NULL if it did not */
        bool paused;
        char *successor;             /* named successor of a release, NULL if none */
        uint64_t successor_lsn;
        char *handover;              /* "switchover pg-0" / "demote pg-0": why and by whom, NULL if none */

        char *version;               /* opaque write precondition (resourceVersion) */
        char *raw;                   /* the record's bytes; any change restarts expiry */
};

struct dcs_leader *dcs_leader_free(struct dcs_leader *l);
DEFINE_POINTER_CLEANUP_FUNC(struct dcs_leader, dcs_leader_free);
int dcs_leader_copy(const struct dcs_leader *l, struct dcs_leader **ret);

enum member_role {
        MEMBER_ROLE_UNKNOWN,
        MEMBER_ROLE_PRIMARY,
        MEMBER_ROLE_REPLICA,
        _MEMBER_ROLE_MAX,
        _MEMBER_ROLE_INVALID = -EINVAL,
};
const char *member_role_to_string(enum member_role r);
enum member_role member_role_from_string(const char *s);

struct dcs_member {
        char *name;
        enum member_role role;
        char *state;                 /* agent state name: "running", "streaming", "fenced", ... */
        uint32_t timeline;
        uint64_t lsn;                /* primary: flush LSN; replica: receive LSN */
        uint64_t replay_lsn;
        char *host;                  /* where peers reach this node's Postgres */
        int port;
        int failsafe_port;           /* where its agent answers POST /failsafe on host (failsafe_listen); 0 when off */
        int priority;
        bool nofailover;
        char *tags;                  /* free-form comma list shown by agentctl */
        usec_t heartbeat;            /* wall clock of the write, informational */
        char *api_version;           /* agent version */
};

struct dcs_member *dcs_member_free(struct dcs_member *m);
DEFINE_POINTER_CLEANUP_FUNC(struct dcs_member, dcs_member_free);
void dcs_member_done(struct dcs_member *m);

/* The JSON of the pglease.io/status annotation; shared by every backend. */
int dcs_member_to_json(const struct dcs_member *m, char **ret);
int dcs_member_from_json(const char *name, const char *json, struct dcs_member *ret);

/* LSNs in PostgreSQL's text form ("0/3000060"), as the records carry them. */
/* The label selector of cluster's member Pods ("pglease.io/cluster=NAME"),
 * for the member list, the Pod watch and the rolling update; NULL on ENOMEM. */
char *dcs_cluster_selector(const char *cluster);

char *dcs_lsn_format(uint64_t lsn);
int dcs_lsn_parse(const char *s, uint64_t *ret);

struct dcs_member_list {
        size_t n;
        struct dcs_member *members;
};
struct dcs_member_list *dcs_member_list_free(struct dcs_member_list *l);
DEFINE_POINTER_CLEANUP_FUNC(struct dcs_member_list, dcs_member_list_free);

/* Every call takes an absolute deadline on the injected monotonic clock and
 * never blocks past it. Errors: -ENOENT no such record, -EEXIST create lost
 * to another writer, -ESTALE the version precondition failed (409: re-read
 * and decide again, never retry blindly), -ETIMEDOUT deadline passed,
 * -EACCES / -EPERM credentials refused, -EIO anything else; detail through
 * reterr_msg. ret_* are written only on success. */
struct dcs_ops {
        int (*leader_get)(void *userdata, usec_t deadline, struct dcs_leader **ret, char **reterr_msg);
        /* Creates the record; want->version is ignored. */
        int (*leader_create)(void *userdata, const struct dcs_leader *want, usec_t deadline,
                             struct dcs_leader **ret, char **reterr_msg);
        /* Replaces the record if its version is still want->version. */
        int (*leader_update)(void *userdata, const struct dcs_leader *want, usec_t deadline,
                             struct dcs_leader **ret, char **reterr_msg);
        /* Publishes this node's member record (status annotation and role label). */
        int (*member_publish)(void *userdata, const struct dcs_member *self, usec_t deadline, char **reterr_msg);
        int (*member_list)(void *userdata, usec_t deadline, struct dcs_member_list **ret, char **reterr_msg);
        /* Records an operator-visible event (a Kubernetes Event). type: "Normal" or "Warning". */
        int (*event_post)(void *userdata, const char *type, const char *reason, const char *message,
                          usec_t deadline, char **reterr_msg);
        /* How many requests this backend has sent (for benchmarks). */
        uint64_t (*request_count)(void *userdata);
        /* The same by verb, code and latency (api-stats.h); may be NULL. */
        const struct api_stats *(*request_stats)(void *userdata);
        void (*free)(void *userdata);
};

struct dcs {
        const struct dcs_ops *ops;
        void *userdata;
};

#endif
