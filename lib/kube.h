/* kube.h: a small Kubernetes API client over libcurl and cJSON: in-cluster
 * and kubeconfig auth, Lease, Pod, StatefulSet and Event calls, bounded
 * retries. */
#ifndef PGLEASE_KUBE_H
#define PGLEASE_KUBE_H

#include <cjson/cJSON.h>
#include <stddef.h>

#include "clock.h"
#include "kube-config.h"
#include "kube-yaml.h"
#include "macro.h"

struct kube_http_request {
        const char *method;          /* "GET", "POST", "PUT", "PATCH", "DELETE" */
        const char *url;             /* server + path */
        const char *path;            /* path and query alone, for fakes and messages */
        const char *content_type;    /* NULL when there is no body */
        const char *body;
        const char *token;           /* bearer token, NULL for none */
};

struct kube_http_response {
        long status;
        char *body;                  /* NUL-terminated, owned */
        size_t body_size;
        usec_t retry_after;          /* Retry-After header (seconds form), 0 if absent */
};
void kube_http_response_done(struct kube_http_response *r);

/* The transport under the client: curl by default, canned answers in tests.
 * perform() makes exactly one attempt that must not last longer than
 * timeout; it returns 0 with any HTTP status, or -ETIMEDOUT,
 * -ECONNREFUSED, -ECONNRESET, -EHOSTUNREACH, -EIO when no answer came
 * (retried), or -EPROTO when the server's certificate cannot be verified
 * (not retried). */
struct kube_transport_ops {
        int (*perform)(void *userdata, const struct kube_http_request *req, usec_t timeout,
                       struct kube_http_response *ret, char **reterr_msg);
        void (*free)(void *userdata);
};

/* A long-lived streaming GET (a watch) for the caller's curl multi handle:
 * an easy handle (CURL *) with the TLS material of c, the bearer token and
 * the write callback set, and its header list (struct curl_slist *), to be
 * freed by the caller after curl_easy_cleanup(). */
int kube_curl_stream_new(const struct kube_config *c, const char *url, const char *token,
                         size_t (*on_data)(char *ptr, size_t size, size_t nmemb, void *userdata),
                         void *userdata, void **ret_easy, void **ret_headers);

/* The curl transport for a configuration (server, CA, client certificate). */
int kube_transport_curl_new(const struct kube_config *c, void **ret_userdata, char **reterr_msg);
extern const struct kube_transport_ops kube_transport_curl;

struct kube_options {
        const char *kubeconfig;          /* NULL: $KUBECONFIG if set, else in-cluster */
        const char *serviceaccount_dir;  /* NULL: /var/run/secrets/kubernetes.io/serviceaccount */
        const char *server;              /* overrides KUBERNETES_SERVICE_HOST/PORT (tests) */
        usec_t attempt_timeout;          /* cap on one HTTP attempt; 0: 5 s */
        /* Tests: a fake transport (owned by the caller, not freed) and a sleep
         * that moves a scripted clock instead of waiting. */
        const struct kube_transport_ops *transport;
        void *transport_userdata;
        void (*sleep)(void *userdata, usec_t usec);
        void *sleep_userdata;
};

struct kube;

/* The server and credentials kube_new() would use: o->kubeconfig, else the
 * $KUBECONFIG list, else in-cluster (-ENXIO when not in a pod). Lets
 * --check-config read them without talking to the server. */
int kube_config_resolve(const struct kube_options *o, struct kube_config *ret, char **reterr_msg);

/* Loads the configuration and prepares the transport; nothing is sent. */
int kube_new(const struct kube_options *o, const struct clock_ops *clock, struct kube **ret, char **reterr_msg);
struct kube *kube_free(struct kube *k);
DEFINE_POINTER_CLEANUP_FUNC(struct kube, kube_free);

/* The namespace of the configuration (service account or context); NULL if none. */
const char *kube_namespace(const struct kube *k);
/* HTTP requests sent so far, retries included. */
uint64_t kube_request_count(const struct kube *k);
/* Those requests by verb and code, with their latency (api-stats.h). */
struct api_stats;
const struct api_stats *kube_request_stats(const struct kube *k);

/* One call: retries 429/5xx/timeouts/connection errors with jittered
 * exponential backoff and Retry-After, re-reads the token and retries once
 * after a 401, never starts an attempt that cannot finish by deadline.
 * Errors: -ENOENT 404, -ESTALE 409 Conflict, -EEXIST 409 AlreadyExists,
 * -EACCES 401, -EPERM 403, -EINVAL 400/422, -EBADMSG unparseable body,
 * -ETIMEDOUT, the transport's error, -EIO anything else; *reterr_msg as
 * "409 Conflict: Operation cannot be fulfilled on ...". ret may be NULL. */
int kube_request(struct kube *k, const char *method, const char *path, const char *content_type,
                 const cJSON *body, usec_t deadline, cJSON **ret, char **reterr_msg);

/* A watch on path (query included) of this client's server: the URL, the
 * current token (re-read when due) and the configuration to open it with
 * kube_curl_stream_new(); counted as a request. */
int kube_stream_prepare(struct kube *k, const char *path, char **ret_url, char **ret_token,
                        const struct kube_config **ret_config);

/* coordination.k8s.io/v1 Lease. kube_lease_replace() PUTs the object as
 * given: it must carry metadata.name and metadata.resourceVersion. */
int kube_lease_get(struct kube *k, const char *ns, const char *name, usec_t deadline,
                   cJSON **ret, char **reterr_msg);
/* The collection path of one Lease by fieldSelector metadata.name=<name>:
 * its LIST and watch (a watch starts from the list's resourceVersion;
 * RBAC grants both by resourceNames). */
int kube_lease_list_path(const char *ns, const char *name, char **ret, char **reterr_msg);
/* A collection path (with or without a query) as the watch of it from
 * resource_version, ended by the server after timeout_seconds, with
 * bookmarks. */
int kube_watch_path(const char *list_path, const char *resource_version, unsigned timeout_seconds, char **ret);
int kube_lease_create(struct kube *k, const char *ns, const cJSON *lease, usec_t deadline,
                      cJSON **ret, char **reterr_msg);
int kube_lease_replace(struct kube *k, const char *ns, const cJSON *lease, usec_t deadline,
                       cJSON **ret, char **reterr_msg);

/* core/v1 Pod: get, list by label selector (ret: the PodList), merge patch. */
int kube_pod_get(struct kube *k, const char *ns, const char *name, usec_t deadline,
                 cJSON **ret, char **reterr_msg);
int kube_pod_list(struct kube *k, const char *ns, const char *label_selector, usec_t deadline,
                  cJSON **ret, char **reterr_msg);
/* The path of that list: for its watch. */
int kube_pod_list_path(const char *ns, const char *label_selector, char **ret, char **reterr_msg);
int kube_pod_merge_patch(struct kube *k, const char *ns, const char *name, const cJSON *patch,
                         usec_t deadline, cJSON **ret, char **reterr_msg);
/* Deletes the pod (gracefully: its pre-stop hooks run) only if it is still
 * the object uid (DeleteOptions preconditions.uid): a pod recreated under
 * the same name since the caller looked answers -ESTALE (409). */
int kube_pod_delete(struct kube *k, const char *ns, const char *name, const char *uid, usec_t deadline,
                    char **reterr_msg);

/* apps/v1 StatefulSet. */
int kube_statefulset_get(struct kube *k, const char *ns, const char *name, usec_t deadline,
                         cJSON **ret, char **reterr_msg);

/* core/v1 Event about a Pod, source.component "pglease-agent", a unique name. */
struct kube_event {
        const char *pod;
        const char *pod_uid;         /* NULL if unknown */
        const char *type;            /* "Normal" or "Warning" */
        const char *reason;
        const char *message;
};
int kube_event_create(struct kube *k, const char *ns, const struct kube_event *e, usec_t deadline,
                      char **reterr_msg);

/* Percent-encodes a query value (a label selector). */
char *kube_url_escape(const char *s);

#endif
