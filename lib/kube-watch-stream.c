/* kube-watch-stream.c: the state machine of one watch's stream, without
 * I/O (kube-watch.h); the kind (lease-watch.c, pod-watch.c) keeps what the
 * objects say. */
#include <string.h>

#include "kube-watch.h"
#include "kube-yaml.h"
#include "util.h"

#define BACKOFF_START (250 * USEC_PER_MSEC)
#define BACKOFF_MAX (30 * USEC_PER_SEC)
/* Streams broken in a row before the version is no longer trusted and the
 * loop lists again. */
#define RESUMES_BEFORE_LIST 3
/* A refused watch or list (a Role without the verb): the loop reads as it
 * did without a watch, and asks again this much later. */
#define REFUSED_RETRY (300 * USEC_PER_SEC)

static const char *const state_names[_KUBE_WATCH_STATE_MAX] = {
        [KUBE_WATCH_NEED_LIST] = "need-list",
        [KUBE_WATCH_NEED_STREAM] = "need-stream",
        [KUBE_WATCH_STREAMING] = "streaming",
};

const char *kube_watch_state_to_string(enum kube_watch_state s) {
        return s < _KUBE_WATCH_STATE_MAX ? state_names[s] : NULL;
}

void kube_watch_init(struct kube_watch *w, const struct kube_watch_kind *kind, void *userdata, size_t max_line) {
        *w = (struct kube_watch) { .kind = kind, .userdata = userdata, .state = KUBE_WATCH_NEED_LIST };
        kube_watch_buffer_init(&w->buf, max_line);
}

void kube_watch_done(struct kube_watch *w) {
        free(w->resource_version);
        kube_watch_buffer_done(&w->buf);
        free(w->last_error);
        *w = (struct kube_watch) {};
}

static void set_error(struct kube_watch *w, const char *what) {
        free(w->last_error);
        w->last_error = what ? strdup(what) : NULL;
}

static int set_version(struct kube_watch *w, const char *rv) {
        char *v = NULL;

        if (rv && !(v = strdup(rv)))
                return -ENOMEM;
        free(w->resource_version);
        w->resource_version = v;
        return 0;
}

static usec_t backoff(unsigned failures) {
        usec_t d = BACKOFF_START;

        for (unsigned i = 1; i < failures && d < BACKOFF_MAX; i++)
                d *= 2;
        return MIN(d, BACKOFF_MAX);
}

/* The stream is over; what comes next. */
static void broken(struct kube_watch *w, bool relist, const char *why, usec_t now) {
        w->failures++;
        w->count.broken++;
        set_error(w, why);
        kube_watch_buffer_done(&w->buf);
        w->retry_at = now + backoff(w->failures);
        if (relist || !w->resource_version || w->failures >= RESUMES_BEFORE_LIST) {
                w->state = KUBE_WATCH_NEED_LIST;
                w->resource_version = mfree(w->resource_version);
        } else
                w->state = KUBE_WATCH_NEED_STREAM;
}

int kube_watch_on_list(struct kube_watch *w, const cJSON *list, usec_t now) {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(list, "items");
        const cJSON *rv = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(list, "metadata"),
                                                           "resourceVersion");
        _cleanup_(cjson_deletep) cJSON *none = NULL;
        int r;

        if (!cJSON_IsObject(list) || (items && !cJSON_IsArray(items) && !cJSON_IsNull(items)) ||
            !cJSON_IsString(rv) || isempty(rv->valuestring))
                return -EBADMSG;
        /* The server leaves out an empty list's items. */
        if (!cJSON_IsArray(items)) {
                items = none = cJSON_CreateArray();
                if (!none)
                        return -ENOMEM;
        }
        /* The kind takes the whole list or nothing. */
        r = w->kind->list(w->userdata, items, now);
        if (r < 0)
                return r;
        r = set_version(w, rv->valuestring);
        if (r < 0)
                return r;
        w->count.lists++;
        w->last_activity = now;
        w->state = KUBE_WATCH_NEED_STREAM;
        w->retry_at = now;
        return 0;
}

void kube_watch_on_list_failed(struct kube_watch *w, int err, usec_t now) {
        w->failures++;
        w->retry_at = now + (err == -EPERM || err == -EACCES ? REFUSED_RETRY :
                             MIN(USEC_PER_SEC << MIN(w->failures, 5u), BACKOFF_MAX));
}

void kube_watch_on_stream_start(struct kube_watch *w, usec_t now) {
        kube_watch_buffer_done(&w->buf);
        w->state = KUBE_WATCH_STREAMING;
        w->last_activity = now;
        w->got_event = false;
        w->count.streams++;
}

static int on_event(struct kube_watch *w, struct kube_watch_event *ev, usec_t now) {
        int r;

        switch (ev->type) {
        case KUBE_WATCH_ADDED:
        case KUBE_WATCH_MODIFIED:
        case KUBE_WATCH_DELETED:
                r = w->kind->change(w->userdata, ev->type, ev->object, now);
                if (r < 0)
                        return r;
                w->count.events++;
                break;
        case KUBE_WATCH_BOOKMARK:
                w->count.bookmarks++;
                break;
        case KUBE_WATCH_ERROR:
                return ev->code == 410 ? -EXFULL : -EPROTO;
        default:
                return -EBADMSG;
        }
        if (ev->resource_version && set_version(w, ev->resource_version) < 0)
                return -ENOMEM;
        w->got_event = true;
        /* A stream that delivers is healthy again. */
        w->failures = 0;
        return 0;
}

int kube_watch_on_data(struct kube_watch *w, const char *p, size_t n, usec_t now) {
        _cleanup_free_ char *why = NULL;
        const char *line;
        size_t len;
        int r;

        if (w->state != KUBE_WATCH_STREAMING)
                return -ESTALE;
        w->last_activity = now;
        r = kube_watch_buffer_feed(&w->buf, p, n);
        while (r >= 0 && (r = kube_watch_buffer_next_line(&w->buf, &line, &len)) > 0) {
                struct kube_watch_event ev;

                r = kube_watch_event_parse(line, len, &ev);
                if (r >= 0) {
                        r = on_event(w, &ev, now);
                        kube_watch_event_done(&ev);
                }
        }
        if (r == -EXFULL) {
                w->count.gone++;
                broken(w, true, "410 Gone: the version watched from is too old", now);
        } else if (r == -EPROTO)
                broken(w, true, "the server sent an ERROR event", now);
        else if (r == -EFBIG)
                broken(w, true, "an event longer than the limit", now);
        else if (r < 0) {
                why = strdup_printf("an event that is not a watch event of a %s", w->kind->what);
                broken(w, true, why ?: "an unreadable event", now);
        }
        return r < 0 ? r : 0;
}

void kube_watch_on_end(struct kube_watch *w, long status, int error, const char *what, usec_t now) {
        _cleanup_free_ char *why = NULL;

        if (w->state != KUBE_WATCH_STREAMING)
                return;
        if (error == 0 && status == 200) {
                /* The server's timeoutSeconds: resume at once from the
                 * last version, as client-go's reflector does. */
                kube_watch_buffer_done(&w->buf);
                w->state = KUBE_WATCH_NEED_STREAM;
                w->retry_at = now;
                return;
        }
        why = status > 0 && status != 200 ? strdup_printf("HTTP %ld", status) :
                strdup_printf("%s", what ? what : strerror(error < 0 ? -error : EIO));
        if (status == 410)
                w->count.gone++;
        /* Anything but a dropped connection (403, 500, 410) lists again. */
        broken(w, status != 0 && status != 200, why, now);
        /* 401 is a token rotated under the stream: the list re-reads it. */
        if (status == 403)
                w->retry_at = now + REFUSED_RETRY;
}

usec_t kube_watch_stall_at(const struct kube_watch *w) {
        if (w->state != KUBE_WATCH_STREAMING)
                return USEC_INFINITY;
        return w->last_activity + w->kind->stall_bound(w->userdata);
}

bool kube_watch_check_stall(struct kube_watch *w, usec_t now) {
        if (w->state != KUBE_WATCH_STREAMING || now < kube_watch_stall_at(w))
                return false;
        w->count.stalls++;
        broken(w, true, "no event within the bound (a stalled stream)", now);
        return true;
}

bool kube_watch_streaming(const struct kube_watch *w, usec_t now) {
        return w->state == KUBE_WATCH_STREAMING && now < kube_watch_stall_at(w);
}
