/* dcs-kube.h: the Kubernetes backend of the DCS: the leader record is the
 * Lease "<cluster>-leader", member records are annotations on the Pods. */
#ifndef PGLEASE_DCS_KUBE_H
#define PGLEASE_DCS_KUBE_H

#include <cjson/cJSON.h>

#include "clock.h"
#include "dcs.h"
#include "kube.h"

struct dcs_kube_options {
        const char *namespace;       /* NULL: the service account's (or kubeconfig context's), else "default" */
        const char *cluster;         /* names the Lease "<cluster>-leader" and the label pglease.io/cluster */
        const char *pod_name;        /* this node's Pod: member records and events go there */
        /* The client: kube.kubeconfig (NULL: $KUBECONFIG, else in-cluster),
         * kube.serviceaccount_dir, kube.attempt_timeout (the per-request
         * timeout), and the fakes tests inject. */
        struct kube_options kube;
};

int dcs_kube_new(const struct dcs_kube_options *o, const struct clock_ops *clock, struct dcs *ret, char **reterr_msg);

/* The client, namespace and Lease name of a Kubernetes DCS (borrowed), for
 * the Lease watch; -EOPNOTSUPP for another backend. */
int dcs_kube_describe(const struct dcs *dcs, struct kube **ret_kube, const char **ret_namespace,
                      const char **ret_lease_name);

/* The Lease <-> leader record mapping, exposed for tests.
 * from_lease: -EBADMSG when the object is not a Lease we can read.
 * to_lease: starts from base (the object last read, so fields this agent
 * does not know survive a PUT) or from scratch; l->version becomes
 * metadata.resourceVersion when set. */
int dcs_kube_leader_from_lease(const cJSON *lease, struct dcs_leader **ret);
int dcs_kube_leader_to_lease(const struct dcs_leader *l, const cJSON *base, const char *ns, const char *name,
                             cJSON **ret);

/* The members of a PodList response, sorted by name: a pod without a name
 * is skipped, one without a readable status annotation is listed as
 * unknown. -EBADMSG when "items" is not an array. */
int dcs_kube_members_from_pod_list(const cJSON *list, struct dcs_member_list **ret, char **reterr_msg);

#endif
