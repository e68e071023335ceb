/* lease-watch-curl.c: the watch of the leader Lease driven by a curl multi
 * handle behind an epoll fd, for the agent's event loop (lease-watch.h). */
#include <curl/curl.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "dcs-kube.h"
#include "lease-watch.h"
#include "util.h"

/* A refused list (a Role without list on the Lease): read the Lease every
 * tick as before, and ask again this much later. */
#define FORBIDDEN_RETRY (300 * USEC_PER_SEC)

struct lease_watcher {
        struct lease_watch w;
        struct lease_watcher_options o;
        const struct clock_ops *clock;
        struct kube *kube;           /* borrowed from the DCS */
        char *namespace, *lease_name;
        CURLM *multi;
        int epfd;
        usec_t curl_timer_at;        /* curl's own timer (connect, TLS) */
        CURL *easy;                  /* the open stream, NULL if none */
        struct curl_slist *headers;
        long status;                 /* the open stream's HTTP status once known */
        int data_error;              /* on_data refused the stream */
};

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
        struct lease_watcher *lw = userp;
        struct epoll_event ev = { .data.fd = s };

        (void) easy;
        (void) socketp;
        if (what == CURL_POLL_REMOVE) {
                (void) epoll_ctl(lw->epfd, EPOLL_CTL_DEL, s, NULL);
                return 0;
        }
        ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
        if (epoll_ctl(lw->epfd, EPOLL_CTL_MOD, s, &ev) < 0 && errno == ENOENT)
                (void) epoll_ctl(lw->epfd, EPOLL_CTL_ADD, s, &ev);
        return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
        struct lease_watcher *lw = userp;

        (void) multi;
        lw->curl_timer_at = timeout_ms < 0 ? USEC_INFINITY :
                clock_now(lw->clock) + (usec_t) timeout_ms * USEC_PER_MSEC;
        return 0;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct lease_watcher *lw = userdata;
        size_t n = size * nmemb;

        if (lw->status == 0)
                (void) curl_easy_getinfo(lw->easy, CURLINFO_RESPONSE_CODE, &lw->status);
        /* A refusal's body is a Status, not events: on_end says what it was. */
        if (lw->status != 200)
                return n;
        lw->data_error = lease_watch_on_data(&lw->w, ptr, n, clock_now(lw->clock));
        return lw->data_error < 0 ? 0 : n;
}

static void close_stream(struct lease_watcher *lw) {
        if (!lw->easy)
                return;
        (void) curl_multi_remove_handle(lw->multi, lw->easy);
        curl_easy_cleanup(lw->easy);
        curl_slist_free_all(lw->headers);
        lw->easy = NULL;
        lw->headers = NULL;
}

static int open_stream(struct lease_watcher *lw, usec_t now) {
        _cleanup_free_ char *path = NULL, *url = NULL, *token = NULL;
        const struct kube_config *config;
        void *easy, *headers;
        int r;

        r = kube_lease_watch_path(lw->namespace, lw->lease_name, lw->w.resource_version, lw->o.timeout_seconds,
                                  &path, NULL);
        if (r >= 0)
                r = kube_stream_prepare(lw->kube, path, &url, &token, &config);
        if (r >= 0)
                r = kube_curl_stream_new(config, url, token, on_data, lw, &easy, &headers);
        if (r < 0) {
                lease_watch_on_stream_start(&lw->w, now);
                lease_watch_on_end(&lw->w, 0, r, "cannot open the stream", now);
                return r;
        }
        lw->easy = easy;
        lw->headers = headers;
        lw->status = 0;
        lw->data_error = 0;
        if (curl_multi_add_handle(lw->multi, lw->easy) != CURLM_OK) {
                close_stream(lw);
                lease_watch_on_stream_start(&lw->w, now);
                lease_watch_on_end(&lw->w, 0, -ENOMEM, "cannot add the stream", now);
                return -ENOMEM;
        }
        lease_watch_on_stream_start(&lw->w, now);
        return 0;
}

static void reap(struct lease_watcher *lw) {
        CURLMsg *m;
        int left;

        while ((m = curl_multi_info_read(lw->multi, &left))) {
                CURLcode c;

                if (m->msg != CURLMSG_DONE || m->easy_handle != lw->easy)
                        continue;
                c = m->data.result;
                if (lw->status == 0)
                        (void) curl_easy_getinfo(lw->easy, CURLINFO_RESPONSE_CODE, &lw->status);
                close_stream(lw);
                /* A refused stream already moved the state (on_data). */
                if (lw->data_error >= 0)
                        lease_watch_on_end(&lw->w, lw->status, c == CURLE_OK ? 0 : -EIO,
                                           curl_easy_strerror(c), clock_now(lw->clock));
        }
}

void lease_watcher_process(struct lease_watcher *lw) {
        struct epoll_event evs[8];
        int running, n;
        usec_t now;

        n = epoll_wait(lw->epfd, evs, ELEMENTSOF(evs), 0);
        for (int i = 0; i < n; i++) {
                int mask = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                        (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                        (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);

                (void) curl_multi_socket_action(lw->multi, evs[i].data.fd, mask, &running);
        }
        if (clock_now(lw->clock) >= lw->curl_timer_at) {
                lw->curl_timer_at = USEC_INFINITY;
                (void) curl_multi_socket_action(lw->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        reap(lw);
        now = clock_now(lw->clock);
        if (lease_watch_check_stall(&lw->w, now))
                close_stream(lw);
        if (lw->w.state != LEASE_WATCH_STREAMING && lw->easy)
                close_stream(lw);
        if (lw->w.state == LEASE_WATCH_NEED_STREAM && now >= lw->w.retry_at && open_stream(lw, now) >= 0)
                /* Let curl start connecting now rather than at its timer. */
                (void) curl_multi_socket_action(lw->multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

usec_t lease_watcher_next(const struct lease_watcher *lw) {
        usec_t next = MIN(lw->curl_timer_at, lease_watch_stall_at(&lw->w));

        if (lw->w.state == LEASE_WATCH_NEED_STREAM)
                next = MIN(next, lw->w.retry_at);
        return next;
}

int lease_watcher_resync(struct lease_watcher *lw, usec_t deadline, char **reterr_msg) {
        _cleanup_(cjson_deletep) cJSON *list = NULL;
        usec_t now = clock_now(lw->clock);
        int r;

        if (lw->w.state != LEASE_WATCH_NEED_LIST || now < lw->w.retry_at)
                return 0;
        r = kube_lease_list_one(lw->kube, lw->namespace, lw->lease_name, deadline, &list, reterr_msg);
        if (r >= 0)
                r = lease_watch_on_list(&lw->w, list, clock_now(lw->clock));
        if (r < 0) {
                lw->w.failures++;
                lw->w.retry_at = clock_now(lw->clock) +
                        (r == -EPERM || r == -EACCES ? FORBIDDEN_RETRY : MIN(USEC_PER_SEC << MIN(lw->w.failures, 5u), 30 * USEC_PER_SEC));
                return r;
        }
        lease_watcher_process(lw);
        return 1;
}

int lease_watcher_fd(const struct lease_watcher *lw) {
        return lw->epfd;
}

struct lease_watch *lease_watcher_state(struct lease_watcher *lw) {
        return &lw->w;
}

struct lease_watcher *lease_watcher_free(struct lease_watcher *lw) {
        if (!lw)
                return NULL;
        close_stream(lw);
        if (lw->multi)
                curl_multi_cleanup(lw->multi);
        safe_close(lw->epfd);
        lease_watch_done(&lw->w);
        free(lw->namespace);
        free(lw->lease_name);
        free(lw);
        return NULL;
}

int lease_watcher_new(const struct dcs *dcs, const struct lease_watcher_options *o, const struct clock_ops *clock,
                      struct lease_watcher **ret, char **reterr_msg) {
        _cleanup_(lease_watcher_freep) struct lease_watcher *lw = NULL;
        struct kube *kube;
        const char *ns, *name;

        if (dcs_kube_describe(dcs, &kube, &ns, &name) < 0) {
                (void) set_error_msg(reterr_msg, "the Lease watch needs the Kubernetes DCS");
                return -EOPNOTSUPP;
        }
        lw = calloc(1, sizeof(*lw));
        if (!lw)
                return -ENOMEM;
        lw->epfd = -EBADF;
        lease_watch_init(&lw->w, &o->watch);
        lw->o = *o;
        lw->clock = clock;
        lw->kube = kube;
        lw->curl_timer_at = USEC_INFINITY;
        lw->namespace = strdup(ns);
        lw->lease_name = strdup(name);
        if (!lw->namespace || !lw->lease_name)
                return -ENOMEM;
        lw->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (lw->epfd < 0)
                return -errno;
        lw->multi = curl_multi_init();
        if (!lw->multi)
                return -ENOMEM;
        (void) curl_multi_setopt(lw->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        (void) curl_multi_setopt(lw->multi, CURLMOPT_SOCKETDATA, lw);
        (void) curl_multi_setopt(lw->multi, CURLMOPT_TIMERFUNCTION, on_timer);
        (void) curl_multi_setopt(lw->multi, CURLMOPT_TIMERDATA, lw);
        *ret = TAKE_PTR(lw);
        return 0;
}
