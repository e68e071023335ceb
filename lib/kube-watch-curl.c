/* kube-watch-curl.c: watches driven by one curl multi handle behind one
 * epoll fd, for the agent's event loop (kube-watch.h). */
#include <curl/curl.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "kube.h"
#include "kube-watch.h"
#include "util.h"

/* The Lease and the member Pods. */
#define MAX_WATCHES 4

struct slot {
        struct kube_watcher *kw;
        struct kube_watch *w;        /* borrowed */
        char *list_path;
        unsigned timeout_seconds;
        CURL *easy;                  /* the open stream, NULL if none */
        struct curl_slist *headers;
        long status;                 /* the open stream's HTTP status once known */
        int data_error;              /* on_data refused the stream */
};

struct kube_watcher {
        const struct clock_ops *clock;
        struct kube *kube;           /* borrowed */
        CURLM *multi;
        int epfd;
        usec_t curl_timer_at;        /* curl's own timer (connect, TLS) */
        struct slot slots[MAX_WATCHES];
        size_t n_slots;
};

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
        struct kube_watcher *kw = userp;
        struct epoll_event ev = { .data.fd = s };

        (void) easy;
        (void) socketp;
        if (what == CURL_POLL_REMOVE) {
                (void) epoll_ctl(kw->epfd, EPOLL_CTL_DEL, s, NULL);
                return 0;
        }
        ev.events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);
        if (epoll_ctl(kw->epfd, EPOLL_CTL_MOD, s, &ev) < 0 && errno == ENOENT)
                (void) epoll_ctl(kw->epfd, EPOLL_CTL_ADD, s, &ev);
        return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp) {
        struct kube_watcher *kw = userp;

        (void) multi;
        kw->curl_timer_at = timeout_ms < 0 ? USEC_INFINITY :
                clock_now(kw->clock) + (usec_t) timeout_ms * USEC_PER_MSEC;
        return 0;
}

static size_t on_data(char *ptr, size_t size, size_t nmemb, void *userdata) {
        struct slot *s = userdata;
        size_t n = size * nmemb;

        if (s->status == 0)
                (void) curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->status);
        /* A refusal's body is a Status, not events: on_end says what it was. */
        if (s->status != 200)
                return n;
        s->data_error = kube_watch_on_data(s->w, ptr, n, clock_now(s->kw->clock));
        return s->data_error < 0 ? 0 : n;
}

static void close_stream(struct slot *s) {
        if (!s->easy)
                return;
        (void) curl_multi_remove_handle(s->kw->multi, s->easy);
        curl_easy_cleanup(s->easy);
        curl_slist_free_all(s->headers);
        s->easy = NULL;
        s->headers = NULL;
}

static int open_stream(struct slot *s, usec_t now) {
        _cleanup_free_ char *path = NULL, *url = NULL, *token = NULL;
        const struct kube_config *config;
        void *easy, *headers;
        int r;

        r = kube_watch_path(s->list_path, s->w->resource_version, s->timeout_seconds, &path);
        if (r >= 0)
                r = kube_stream_prepare(s->kw->kube, path, &url, &token, &config);
        if (r >= 0)
                r = kube_curl_stream_new(config, url, token, on_data, s, &easy, &headers);
        if (r < 0) {
                kube_watch_on_stream_start(s->w, now);
                kube_watch_on_end(s->w, 0, r, "cannot open the stream", now);
                return r;
        }
        s->easy = easy;
        s->headers = headers;
        s->status = 0;
        s->data_error = 0;
        if (curl_multi_add_handle(s->kw->multi, s->easy) != CURLM_OK) {
                close_stream(s);
                kube_watch_on_stream_start(s->w, now);
                kube_watch_on_end(s->w, 0, -ENOMEM, "cannot add the stream", now);
                return -ENOMEM;
        }
        kube_watch_on_stream_start(s->w, now);
        return 0;
}

static struct slot *slot_of_easy(struct kube_watcher *kw, CURL *easy) {
        for (size_t i = 0; i < kw->n_slots; i++)
                if (kw->slots[i].easy && kw->slots[i].easy == easy)
                        return &kw->slots[i];
        return NULL;
}

static void reap(struct kube_watcher *kw) {
        CURLMsg *m;
        int left;

        while ((m = curl_multi_info_read(kw->multi, &left))) {
                struct slot *s;
                CURLcode c;

                if (m->msg != CURLMSG_DONE || !(s = slot_of_easy(kw, m->easy_handle)))
                        continue;
                c = m->data.result;
                if (s->status == 0)
                        (void) curl_easy_getinfo(s->easy, CURLINFO_RESPONSE_CODE, &s->status);
                close_stream(s);
                /* A refused stream already moved the state (on_data). */
                if (s->data_error >= 0)
                        kube_watch_on_end(s->w, s->status, c == CURLE_OK ? 0 : -EIO, curl_easy_strerror(c),
                                          clock_now(kw->clock));
        }
}

void kube_watcher_process(struct kube_watcher *kw) {
        struct epoll_event evs[8];
        bool opened = false;
        int running, n;
        usec_t now;

        n = epoll_wait(kw->epfd, evs, ELEMENTSOF(evs), 0);
        for (int i = 0; i < n; i++) {
                int mask = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                        (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                        (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);

                (void) curl_multi_socket_action(kw->multi, evs[i].data.fd, mask, &running);
        }
        if (clock_now(kw->clock) >= kw->curl_timer_at) {
                kw->curl_timer_at = USEC_INFINITY;
                (void) curl_multi_socket_action(kw->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        }
        reap(kw);
        now = clock_now(kw->clock);
        for (size_t i = 0; i < kw->n_slots; i++) {
                struct slot *s = &kw->slots[i];

                if (kube_watch_check_stall(s->w, now))
                        close_stream(s);
                if (s->w->state != KUBE_WATCH_STREAMING && s->easy)
                        close_stream(s);
                if (s->w->state == KUBE_WATCH_NEED_STREAM && now >= s->w->retry_at && open_stream(s, now) >= 0)
                        opened = true;
        }
        /* Let curl start connecting now rather than at its timer. */
        if (opened)
                (void) curl_multi_socket_action(kw->multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

usec_t kube_watcher_next(const struct kube_watcher *kw) {
        usec_t next = kw->curl_timer_at;

        for (size_t i = 0; i < kw->n_slots; i++) {
                const struct kube_watch *w = kw->slots[i].w;

                next = MIN(next, kube_watch_stall_at(w));
                if (w->state == KUBE_WATCH_NEED_STREAM)
                        next = MIN(next, w->retry_at);
        }
        return next;
}

int kube_watcher_resync(struct kube_watcher *kw, struct kube_watch *w, usec_t deadline, char **reterr_msg) {
        _cleanup_(cjson_deletep) cJSON *list = NULL;
        struct slot *s = NULL;
        int r;

        for (size_t i = 0; i < kw->n_slots; i++)
                if (kw->slots[i].w == w)
                        s = &kw->slots[i];
        if (!s)
                return -ENOENT;
        if (w->state != KUBE_WATCH_NEED_LIST || clock_now(kw->clock) < w->retry_at)
                return 0;
        r = kube_request(kw->kube, "GET", s->list_path, NULL, NULL, deadline, &list, reterr_msg);
        if (r >= 0)
                r = kube_watch_on_list(w, list, clock_now(kw->clock));
        if (r < 0) {
                kube_watch_on_list_failed(w, r, clock_now(kw->clock));
                return r;
        }
        kube_watcher_process(kw);
        return 1;
}

int kube_watcher_add(struct kube_watcher *kw, struct kube_watch *w, const char *list_path, unsigned timeout_seconds) {
        struct slot *s;

        if (kw->n_slots >= ELEMENTSOF(kw->slots))
                return -E2BIG;
        s = &kw->slots[kw->n_slots];
        *s = (struct slot) { .kw = kw, .w = w, .timeout_seconds = timeout_seconds, .list_path = strdup(list_path) };
        if (!s->list_path)
                return -ENOMEM;
        kw->n_slots++;
        return 0;
}

int kube_watcher_fd(const struct kube_watcher *kw) {
        return kw->epfd;
}

struct kube_watcher *kube_watcher_free(struct kube_watcher *kw) {
        if (!kw)
                return NULL;
        for (size_t i = 0; i < kw->n_slots; i++) {
                close_stream(&kw->slots[i]);
                free(kw->slots[i].list_path);
        }
        if (kw->multi)
                curl_multi_cleanup(kw->multi);
        safe_close(kw->epfd);
        free(kw);
        return NULL;
}

int kube_watcher_new(struct kube *kube, const struct clock_ops *clock, struct kube_watcher **ret) {
        _cleanup_(kube_watcher_freep) struct kube_watcher *kw = NULL;

        kw = calloc(1, sizeof(*kw));
        if (!kw)
                return -ENOMEM;
        kw->epfd = -EBADF;
        kw->clock = clock;
        kw->kube = kube;
        kw->curl_timer_at = USEC_INFINITY;
        kw->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (kw->epfd < 0)
                return -errno;
        kw->multi = curl_multi_init();
        if (!kw->multi)
                return -ENOMEM;
        (void) curl_multi_setopt(kw->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        (void) curl_multi_setopt(kw->multi, CURLMOPT_SOCKETDATA, kw);
        (void) curl_multi_setopt(kw->multi, CURLMOPT_TIMERFUNCTION, on_timer);
        (void) curl_multi_setopt(kw->multi, CURLMOPT_TIMERDATA, kw);
        *ret = TAKE_PTR(kw);
        return 0;
}
