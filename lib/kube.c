/* kube.c: a small Kubernetes API client over libcurl and cJSON: in-cluster
 * and kubeconfig auth, Lease, Pod, StatefulSet and Event calls, bounded
 * retries. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "api-stats.h"
#include "kube.h"
#include "util.h"

#define KUBE_TOKEN_REREAD (60 * USEC_PER_SEC)
#define KUBE_BACKOFF_START (100 * USEC_PER_MSEC)
#define KUBE_BACKOFF_MAX (2 * USEC_PER_SEC)
#define KUBE_ATTEMPT_TIMEOUT_DEFAULT (5 * USEC_PER_SEC)

struct kube {
        struct kube_config config;
        const struct clock_ops *clock;
        const struct kube_transport_ops *transport;
        void *transport_userdata;
        bool owns_transport;
        void (*sleep)(void *userdata, usec_t usec);
        void *sleep_userdata;
        usec_t attempt_timeout;
        usec_t token_read_at;
        uint64_t requests;
        struct api_stats stats;
        uint64_t rng;                /* xorshift state for backoff jitter */
        uint64_t event_seq;
};

void kube_http_response_done(struct kube_http_response *r) {
        free(r->body);
        *r = (struct kube_http_response) {};
}

/* lib/ does not sleep on its own clock: the wait between retries goes
 * through kube_options.sleep, and this is only its default. */
static void sleep_system(void *userdata, usec_t usec) {
        struct timespec ts = {
                .tv_sec = (time_t) (usec / USEC_PER_SEC),
                .tv_nsec = (long) (usec % USEC_PER_SEC) * 1000,
        };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

int kube_config_resolve(const struct kube_options *o, struct kube_config *ret, char **reterr_msg) {
        const char *env;

        if (o->kubeconfig)
                return kube_config_load_kubeconfig(o->kubeconfig, ret, reterr_msg);
        if (!isempty(env = getenv("KUBECONFIG")))
                return kube_config_load_kubeconfig_list(env, ret, reterr_msg);
        return kube_config_load_incluster(o->serviceaccount_dir, o->server, ret, reterr_msg);
}

int kube_new(const struct kube_options *o, const struct clock_ops *clock, struct kube **ret, char **reterr_msg) {
        _cleanup_(kube_freep) struct kube *k = NULL;
        char *e;
        int r;

        k = calloc(1, sizeof(*k));
        if (!k)
                return -ENOMEM;
        r = kube_config_resolve(o, &k->config, reterr_msg);
        if (r < 0)
                return r;
        if (o->server && o->kubeconfig) {
                free(k->config.server);
                if (!(k->config.server = strdup(o->server)))
                        return -ENOMEM;
        }
        /* Paths are appended to the server URL. */
        e = k->config.server + strlen(k->config.server);
        while (e > k->config.server && e[-1] == '/')
                *--e = '\0';
        k->clock = clock;
        k->attempt_timeout = o->attempt_timeout ?: KUBE_ATTEMPT_TIMEOUT_DEFAULT;
        k->sleep = o->sleep ?: sleep_system;
        k->sleep_userdata = o->sleep_userdata;
        k->token_read_at = clock_now(clock);
        k->rng = clock_realtime(clock) ^ ((uint64_t) getpid() << 32) ^ (uint64_t) (uintptr_t) k;
        if (k->rng == 0)
                k->rng = 0x9e3779b97f4a7c15ULL;
        if (o->transport) {
                k->transport = o->transport;
                k->transport_userdata = o->transport_userdata;
        } else {
                r = kube_transport_curl_new(&k->config, &k->transport_userdata, reterr_msg);
                if (r < 0)
                        return r;
                k->transport = &kube_transport_curl;
                k->owns_transport = true;
        }
        *ret = TAKE_PTR(k);
        return 0;
}

struct kube *kube_free(struct kube *k) {
        if (!k)
                return NULL;
        if (k->owns_transport && k->transport->free)
                k->transport->free(k->transport_userdata);
        kube_config_done(&k->config);
        free(k);
        return NULL;
}

const char *kube_namespace(const struct kube *k) {
        return k->config.namespace;
}

uint64_t kube_request_count(const struct kube *k) {
        return k->requests;
}

const struct api_stats *kube_request_stats(const struct kube *k) {
        return &k->stats;
}

/* Re-reads the token file when it is due (every 60 s) or forced (a 401).
 * A failed read keeps the old token: the next 401 will say what is wrong. */
static void kube_refresh_token(struct kube *k, bool force) {
        usec_t now = clock_now(k->clock);
        char *token;

        if (!k->config.token_file)
                return;
        if (!force && now - k->token_read_at < KUBE_TOKEN_REREAD)
                return;
        k->token_read_at = now;
        if (read_one_line_file(k->config.token_file, &token) < 0)
                return;
        free(k->config.token);
        k->config.token = token;
}

static usec_t kube_jitter(struct kube *k, usec_t backoff) {
        /* xorshift64: enough to spread agents that failed at the same moment. */
        k->rng ^= k->rng << 13;
        k->rng ^= k->rng >> 7;
        k->rng ^= k->rng << 17;
        return backoff + k->rng % (backoff / 2 + 1);
}

static const char *http_reason(long status) {
        switch (status) {
        case 400: return "Bad Request";
        case 401: return "Unauthorized";
        case 403: return "Forbidden";
        case 404: return "Not Found";
        case 409: return "Conflict";
        case 410: return "Gone";
        case 422: return "Unprocessable Entity";
        case 429: return "Too Many Requests";
        case 500: return "Internal Server Error";
        case 502: return "Bad Gateway";
        case 503: return "Service Unavailable";
        case 504: return "Gateway Timeout";
        default: return "HTTP error";
        }
}

/* "409 Conflict: Operation cannot be fulfilled on ..." from a Status body. */
static int status_error(const struct kube_http_request *req, const struct kube_http_response *resp,
                        char **ret_reason, char **reterr_msg) {
        _cleanup_(cjson_deletep) cJSON *j = cJSON_ParseWithLength(resp->body, resp->body_size);
        const cJSON *reason = NULL, *message = NULL;

        if (cJSON_IsObject(j)) {
                reason = cJSON_GetObjectItemCaseSensitive(j, "reason");
                message = cJSON_GetObjectItemCaseSensitive(j, "message");
        }
        if (ret_reason && cJSON_IsString(reason) && !(*ret_reason = strdup(reason->valuestring)))
                return -ENOMEM;
        return set_error_msg(reterr_msg, "%ld %s: %s", resp->status,
                             cJSON_IsString(reason) && *reason->valuestring ? reason->valuestring : http_reason(resp->status),
                             cJSON_IsString(message) ? message->valuestring : "(no message)");
}

enum attempt_outcome {
        ATTEMPT_DONE,                /* success or a final error */
        ATTEMPT_RETRY,               /* try again after a backoff */
        ATTEMPT_REAUTH,              /* 401: re-read the token and try again at once */
};

static int parse_success(const struct kube_http_request *req, const struct kube_http_response *resp,
                         cJSON **ret, char **reterr_msg) {
        cJSON *j;

        if (!ret)
                return 0;
        j = cJSON_ParseWithLengthOpts(resp->body, resp->body_size + 1, NULL, true);
        if (!cJSON_IsObject(j)) {
                cJSON_Delete(j);
                (void) set_error_msg(reterr_msg, "%s %s: %ld response is not a JSON object (%zu bytes)",
                                     req->method, req->path, resp->status, resp->body_size);
                return -EBADMSG;
        }
        *ret = j;
        return 0;
}

static enum attempt_outcome kube_classify(const struct kube_http_request *req, const struct kube_http_response *resp,
                                          bool reauthed, cJSON **ret, int *ret_error, char **reterr_msg) {
        _cleanup_free_ char *reason = NULL;
        long s = resp->status;

        if (s >= 200 && s < 300) {
                *ret_error = parse_success(req, resp, ret, reterr_msg);
                return ATTEMPT_DONE;
        }
        *ret_error = status_error(req, resp, &reason, reterr_msg);
        if (*ret_error < 0)
                return ATTEMPT_DONE;
        switch (s) {
        case 401:
                *ret_error = -EACCES;
                return reauthed ? ATTEMPT_DONE : ATTEMPT_REAUTH;
        case 403:
                /* Retried like a 5xx inside the deadline (docs/design.md):
                 * an authorizer webhook that is briefly down answers 403
                 * too; a real RBAC refusal still ends as -EPERM at the
                 * deadline. */
                *ret_error = -EPERM;
                return ATTEMPT_RETRY;
        case 404:
                *ret_error = -ENOENT;
                return ATTEMPT_DONE;
        case 409:
                /* Never retried: someone else wrote, the caller re-reads and decides. */
                *ret_error = reason && streq(reason, "AlreadyExists") ? -EEXIST : -ESTALE;
                return ATTEMPT_DONE;
        case 400:
        case 422:
                *ret_error = -EINVAL;
                return ATTEMPT_DONE;
        case 429:
        case 500:
        case 502:
        case 503:
        case 504:
                *ret_error = -EIO;
                return ATTEMPT_RETRY;
        default:
                *ret_error = -EIO;
                return ATTEMPT_DONE;
        }
}

static bool transport_error_retryable(int r) {
        return r == -ETIMEDOUT || r == -ECONNREFUSED || r == -ECONNRESET ||
                r == -EHOSTUNREACH || r == -ENETUNREACH || r == -EIO;
}

struct kube_call {
        struct kube_http_request req;
        unsigned attempts;
        int last_error;
        char *last_msg;
};

/* One attempt; returns what to do next, the error in call->last_error. */
static enum attempt_outcome kube_attempt(struct kube *k, struct kube_call *call, usec_t deadline,
                                         bool reauthed, cJSON **ret, usec_t *ret_retry_after) {
        _cleanup_(kube_http_response_done) struct kube_http_response resp = {};
        usec_t now = clock_now(k->clock);
        enum attempt_outcome o;
        int r;

        kube_refresh_token(k, false);
        call->req.token = k->config.token;
        call->attempts++;
        k->requests++;
        free(call->last_msg);
        call->last_msg = NULL;
        r = k->transport->perform(k->transport_userdata, &call->req, MIN(deadline - now, k->attempt_timeout),
                                  &resp, &call->last_msg);
        api_stats_record(&k->stats, call->req.method, r < 0 ? 0 : (int) resp.status, clock_now(k->clock) - MIN(clock_now(k->clock), now));
        if (r < 0) {
                call->last_error = r;
                if (!call->last_msg)
                        call->last_msg = strdup_printf("%s %s: %s", call->req.method, call->req.path, strerror(-r));
                return transport_error_retryable(r) ? ATTEMPT_RETRY : ATTEMPT_DONE;
        }
        o = kube_classify(&call->req, &resp, reauthed, ret, &call->last_error, &call->last_msg);
        *ret_retry_after = resp.retry_after;
        return o;
}

static int kube_call_run(struct kube *k, struct kube_call *call, usec_t deadline, cJSON **ret, char **reterr_msg) {
        usec_t backoff = KUBE_BACKOFF_START;
        bool reauthed = false;

        call->last_error = -ETIMEDOUT;
        for (;;) {
                usec_t now = clock_now(k->clock), retry_after = 0, delay;
                enum attempt_outcome o;

                if (now >= deadline) {
                        if (call->attempts == 0)
                                (void) set_error_msg(reterr_msg, "%s %s: deadline passed before the first attempt",
                                                     call->req.method, call->req.path);
                        else
                                (void) set_error_msg(reterr_msg, "%s", strempty(call->last_msg));
                        return call->attempts == 0 ? -ETIMEDOUT : call->last_error;
                }
                o = kube_attempt(k, call, deadline, reauthed, ret, &retry_after);
                if (o == ATTEMPT_DONE) {
                        if (call->last_error < 0 && call->last_msg)
                                (void) set_error_msg(reterr_msg, "%s", call->last_msg);
                        return call->last_error;
                }
                if (o == ATTEMPT_REAUTH) {
                        reauthed = true;
                        kube_refresh_token(k, true);
                        continue;
                }
                delay = MAX(kube_jitter(k, backoff), retry_after);
                backoff = MIN(backoff * 2, KUBE_BACKOFF_MAX);
                now = clock_now(k->clock);
                if (now >= deadline || delay >= deadline - now) {
                        /* The next attempt cannot fit before the deadline. */
                        (void) set_error_msg(reterr_msg, "%s (gave up after %u attempts: deadline)",
                                             strempty(call->last_msg), call->attempts);
                        return call->last_error;
                }
                k->sleep(k->sleep_userdata, delay);
        }
}

int kube_request(struct kube *k, const char *method, const char *path, const char *content_type,
                 const cJSON *body, usec_t deadline, cJSON **ret, char **reterr_msg) {
        _cleanup_free_ char *url = NULL, *payload = NULL;
        struct kube_call call = {};
        int r;

        url = strdup_printf("%s%s", k->config.server, path);
        if (!url)
                return -ENOMEM;
        if (body) {
                payload = cJSON_PrintUnformatted(body);
                if (!payload)
                        return -ENOMEM;
        }
        call.req = (struct kube_http_request) {
                .method = method,
                .url = url,
                .path = path,
                .content_type = body ? (content_type ?: "application/json") : NULL,
                .body = payload,
        };
        r = kube_call_run(k, &call, deadline, ret, reterr_msg);
        free(call.last_msg);
        return r;
}

char *kube_url_escape(const char *s) {
        static const char hex[] = "0123456789ABCDEF";
        char *out = malloc(strlen(s) * 3 + 1), *w = out;

        if (!out)
                return NULL;
        for (const unsigned char *c = (const unsigned char *) s; *c; c++) {
                if ((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                    *c == '-' || *c == '.' || *c == '_' || *c == '~')
                        *w++ = (char) *c;
                else {
                        *w++ = '%';
                        *w++ = hex[*c >> 4];
                        *w++ = hex[*c & 15];
                }
        }
        *w = '\0';
        return out;
}

/* Object names and namespaces are DNS labels/subdomains: checking them keeps
 * a stray "/" or "?" from turning into a different URL. */
static bool valid_name(const char *s) {
        if (isempty(s) || strlen(s) > 253)
                return false;
        for (const char *c = s; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '.'))
                        return false;
        return true;
}

static int object_path(const char *group_prefix, const char *ns, const char *resource, const char *name,
                       char **ret, char **reterr_msg) {
        char *p;

        if (!valid_name(ns) || (name && !valid_name(name))) {
                (void) set_error_msg(reterr_msg, "invalid namespace or name: \"%s\" / \"%s\"", strempty(ns), strempty(name));
                return -EINVAL;
        }
        if (name)
                p = strdup_printf("%s/namespaces/%s/%s/%s", group_prefix, ns, resource, name);
        else
                p = strdup_printf("%s/namespaces/%s/%s", group_prefix, ns, resource);
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

#define LEASE_API "/apis/coordination.k8s.io/v1"
#define CORE_API "/api/v1"
#define APPS_API "/apis/apps/v1"

int kube_lease_get(struct kube *k, const char *ns, const char *name, usec_t deadline,
                   cJSON **ret, char **reterr_msg) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = object_path(LEASE_API, ns, "leases", name, &path, reterr_msg);
        if (r < 0)
                return r;
        return kube_request(k, "GET", path, NULL, NULL, deadline, ret, reterr_msg);
}

int kube_stream_prepare(struct kube *k, const char *path, char **ret_url, char **ret_token,
                        const struct kube_config **ret_config) {
        _cleanup_free_ char *url = NULL, *token = NULL;

        kube_refresh_token(k, false);
        url = strdup_printf("%s%s", k->config.server, path);
        if (!url || (k->config.token && !(token = strdup(k->config.token))))
                return -ENOMEM;
        k->requests++;
        *ret_url = TAKE_PTR(url);
        *ret_token = TAKE_PTR(token);
        *ret_config = &k->config;
        return 0;
}

int kube_lease_list_path(const char *ns, const char *name, char **ret, char **reterr_msg) {
        _cleanup_free_ char *base = NULL;
        char *p;
        int r;

        r = object_path(LEASE_API, ns, "leases", NULL, &base, reterr_msg);
        if (r < 0)
                return r;
        if (!valid_name(name)) {
                (void) set_error_msg(reterr_msg, "invalid Lease name: \"%s\"", strempty(name));
                return -EINVAL;
        }
        /* A DNS name needs no escaping; "=" is "%3D". */
        p = strdup_printf("%s?fieldSelector=metadata.name%%3D%s", base, name);
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

int kube_pod_list_path(const char *ns, const char *label_selector, char **ret, char **reterr_msg) {
        _cleanup_free_ char *base = NULL, *sel = NULL;
        char *p;
        int r;

        r = object_path(CORE_API, ns, "pods", NULL, &base, reterr_msg);
        if (r < 0)
                return r;
        if (isempty(label_selector))
                p = strdup(base);
        else {
                sel = kube_url_escape(label_selector);
                p = sel ? strdup_printf("%s?labelSelector=%s", base, sel) : NULL;
        }
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

int kube_watch_path(const char *list_path, const char *resource_version, unsigned timeout_seconds, char **ret) {
        _cleanup_free_ char *rv = NULL;
        char *p;

        rv = kube_url_escape(strempty(resource_version));
        if (!rv)
                return -ENOMEM;
        p = strdup_printf("%s%cwatch=1&resourceVersion=%s&allowWatchBookmarks=true&timeoutSeconds=%u",
                          list_path, strchr(list_path, '?') ? '&' : '?', rv, timeout_seconds);
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

int kube_lease_create(struct kube *k, const char *ns, const cJSON *lease, usec_t deadline,
                      cJSON **ret, char **reterr_msg) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = object_path(LEASE_API, ns, "leases", NULL, &path, reterr_msg);
        if (r < 0)
                return r;
        return kube_request(k, "POST", path, "application/json", lease, deadline, ret, reterr_msg);
}

static const char *metadata_string(const cJSON *obj, const char *key) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, "metadata"), key);

        return cJSON_IsString(j) ? j->valuestring : NULL;
}

int kube_lease_replace(struct kube *k, const char *ns, const cJSON *lease, usec_t deadline,
                       cJSON **ret, char **reterr_msg) {
        _cleanup_free_ char *path = NULL;
        int r;

        if (isempty(metadata_string(lease, "resourceVersion"))) {
                (void) set_error_msg(reterr_msg, "refusing to replace a Lease without metadata.resourceVersion");
                return -EINVAL;
        }
        r = object_path(LEASE_API, ns, "leases", metadata_string(lease, "name"), &path, reterr_msg);
        if (r < 0)
                return r;
        return kube_request(k, "PUT", path, "application/json", lease, deadline, ret, reterr_msg);
}

/* method on the object name of resource in ns under api. */
static int object_request(struct kube *k, const char *method, const char *api, const char *ns, const char *resource,
                          const char *name, const char *content_type, const cJSON *body, usec_t deadline,
                          cJSON **ret, char **reterr_msg) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = object_path(api, ns, resource, name, &path, reterr_msg);
        if (r < 0)
                return r;
        return kube_request(k, method, path, content_type, body, deadline, ret, reterr_msg);
}

int kube_pod_get(struct kube *k, const char *ns, const char *name, usec_t deadline,
                 cJSON **ret, char **reterr_msg) {
        return object_request(k, "GET", CORE_API, ns, "pods", name, NULL, NULL, deadline, ret, reterr_msg);
}

int kube_pod_list(struct kube *k, const char *ns, const char *label_selector, usec_t deadline,
                  cJSON **ret, char **reterr_msg) {
        _cleanup_free_ char *path = NULL;
        int r;

        r = kube_pod_list_path(ns, label_selector, &path, reterr_msg);
        if (r < 0)
                return r;
        return kube_request(k, "GET", path, NULL, NULL, deadline, ret, reterr_msg);
}

int kube_pod_merge_patch(struct kube *k, const char *ns, const char *name, const cJSON *patch,
                         usec_t deadline, cJSON **ret, char **reterr_msg) {
        return object_request(k, "PATCH", CORE_API, ns, "pods", name, "application/merge-patch+json", patch, deadline,
                              ret, reterr_msg);
}

int kube_pod_delete(struct kube *k, const char *ns, const char *name, const char *uid, usec_t deadline,
                    char **reterr_msg) {
        _cleanup_(cjson_deletep) cJSON *options = NULL;
        cJSON *pre;

        if (isempty(uid)) {
                (void) set_error_msg(reterr_msg, "refusing to delete pod %s without its uid", strempty(name));
                return -EINVAL;
        }
        options = cJSON_CreateObject();
        if (!options || !cJSON_AddStringToObject(options, "apiVersion", "v1") ||
            !cJSON_AddStringToObject(options, "kind", "DeleteOptions") ||
            !(pre = cJSON_AddObjectToObject(options, "preconditions")) || !cJSON_AddStringToObject(pre, "uid", uid))
                return -ENOMEM;
        return object_request(k, "DELETE", CORE_API, ns, "pods", name, "application/json", options, deadline, NULL,
                              reterr_msg);
}

int kube_statefulset_get(struct kube *k, const char *ns, const char *name, usec_t deadline,
                         cJSON **ret, char **reterr_msg) {
        return object_request(k, "GET", APPS_API, ns, "statefulsets", name, NULL, NULL, deadline, ret, reterr_msg);
}

/* metav1.Time: RFC 3339 with whole seconds. */
static char *format_time(usec_t realtime) {
        time_t sec = (time_t) (realtime / USEC_PER_SEC);
        struct tm tm;
        char buf[32];

        if (!gmtime_r(&sec, &tm) || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
                return NULL;
        return strdup(buf);
}

static cJSON *event_object(struct kube *k, const char *ns, const struct kube_event *e) {
        _cleanup_(cjson_deletep) cJSON *ev = cJSON_CreateObject();
        _cleanup_free_ char *name = NULL, *stamp = NULL;
        usec_t now = clock_realtime(k->clock);
        cJSON *meta, *obj, *src;

        /* Unique like client-go's "<object>.<hex nanoseconds>", plus a counter
         * for two events within one microsecond. */
        name = strdup_printf("%s.%" PRIx64 "%04" PRIx64, e->pod, now * 1000, k->event_seq++ & 0xffff);
        stamp = format_time(now);
        if (!ev || !name || !stamp)
                return NULL;
        if (!cJSON_AddStringToObject(ev, "apiVersion", "v1") || !cJSON_AddStringToObject(ev, "kind", "Event") ||
            !(meta = cJSON_AddObjectToObject(ev, "metadata")) || !cJSON_AddStringToObject(meta, "name", name) ||
            !cJSON_AddStringToObject(meta, "namespace", ns) ||
            !(obj = cJSON_AddObjectToObject(ev, "involvedObject")) ||
            !cJSON_AddStringToObject(obj, "apiVersion", "v1") || !cJSON_AddStringToObject(obj, "kind", "Pod") ||
            !cJSON_AddStringToObject(obj, "name", e->pod) || !cJSON_AddStringToObject(obj, "namespace", ns) ||
            (e->pod_uid && !cJSON_AddStringToObject(obj, "uid", e->pod_uid)) ||
            !cJSON_AddStringToObject(ev, "reason", e->reason) || !cJSON_AddStringToObject(ev, "message", strempty(e->message)) ||
            !cJSON_AddStringToObject(ev, "type", e->type ?: "Normal") ||
            !(src = cJSON_AddObjectToObject(ev, "source")) || !cJSON_AddStringToObject(src, "component", "pglease-agent") ||
            !cJSON_AddStringToObject(src, "host", e->pod) ||
            !cJSON_AddStringToObject(ev, "firstTimestamp", stamp) || !cJSON_AddStringToObject(ev, "lastTimestamp", stamp) ||
            !cJSON_AddNumberToObject(ev, "count", 1) ||
            !cJSON_AddStringToObject(ev, "reportingComponent", "pglease-agent") ||
            !cJSON_AddStringToObject(ev, "reportingInstance", e->pod))
                return NULL;
        return TAKE_PTR(ev);
}

int kube_event_create(struct kube *k, const char *ns, const struct kube_event *e, usec_t deadline,
                      char **reterr_msg) {
        _cleanup_(cjson_deletep) cJSON *ev = NULL;
        _cleanup_free_ char *path = NULL;
        int r;

        if (!valid_name(e->pod) || isempty(e->reason)) {
                (void) set_error_msg(reterr_msg, "an event needs a valid pod name and a reason");
                return -EINVAL;
        }
        r = object_path(CORE_API, ns, "events", NULL, &path, reterr_msg);
        if (r < 0)
                return r;
        ev = event_object(k, ns, e);
        if (!ev)
                return -ENOMEM;
        return kube_request(k, "POST", path, "application/json", ev, deadline, NULL, reterr_msg);
}
