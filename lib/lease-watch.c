/* lease-watch.c: a follower's view of the leader Lease kept by a watch
 * (docs/kubernetes.md, "The watch"): the state machine, without I/O. */
#include <string.h>

#include "dcs-kube.h"
#include "lease-watch.h"
#include "util.h"

#define BACKOFF_START (250 * USEC_PER_MSEC)
#define BACKOFF_MAX (30 * USEC_PER_SEC)
/* Streams broken in a row before the version is no longer trusted and the
 * loop lists again. */
#define RESUMES_BEFORE_LIST 3
/* A refused watch (a Role without watch on the Lease): read the Lease
 * every tick as before, and ask again this much later. */
#define REFUSED_RETRY (300 * USEC_PER_SEC)

static const char *const state_names[_LEASE_WATCH_STATE_MAX] = {
        [LEASE_WATCH_NEED_LIST] = "need-list",
        [LEASE_WATCH_NEED_STREAM] = "need-stream",
        [LEASE_WATCH_STREAMING] = "streaming",
};

const char *lease_watch_state_to_string(enum lease_watch_state s) {
        return s < _LEASE_WATCH_STATE_MAX ? state_names[s] : NULL;
}

void lease_watch_init(struct lease_watch *w, const struct lease_watch_options *o) {
        *w = (struct lease_watch) { .opt = *o, .state = LEASE_WATCH_NEED_LIST };
        kube_watch_buffer_init(&w->buf, o->max_line);
}

void lease_watch_done(struct lease_watch *w) {
        free(w->resource_version);
        dcs_leader_free(w->record);
        kube_watch_buffer_done(&w->buf);
        free(w->last_error);
        *w = (struct lease_watch) {};
}

static void set_error(struct lease_watch *w, const char *what) {
        free(w->last_error);
        w->last_error = what ? strdup(what) : NULL;
}

static int set_version(struct lease_watch *w, const char *rv) {
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
static void broken(struct lease_watch *w, bool relist, const char *why, usec_t now) {
        w->failures++;
        w->count.broken++;
        set_error(w, why);
        kube_watch_buffer_done(&w->buf);
        w->retry_at = now + backoff(w->failures);
        if (relist || !w->resource_version || w->failures >= RESUMES_BEFORE_LIST) {
                w->state = LEASE_WATCH_NEED_LIST;
                w->resource_version = mfree(w->resource_version);
        } else
                w->state = LEASE_WATCH_NEED_STREAM;
}

static const char *holder_of(const struct dcs_leader *l) {
        return l ? strempty(l->holder) : NULL;
}

static bool same_string(const char *a, const char *b) {
        return (!a && !b) || (a && b && streq(a, b));
}

/* A new view of the Lease (NULL: there is none), seen at now. */
static void take_record(struct lease_watch *w, struct dcs_leader *l, usec_t now) {
        const struct dcs_leader *old = w->record;

        if (w->have_record && ((!old && !l) || (old && l && streq(strempty(old->raw), strempty(l->raw))))) {
                dcs_leader_free(l);
                return;
        }
        /* The loop acts at once on a new holder, a release (an empty holder,
         * a successor named) or a Lease that appeared or went; a renewal
         * only restarts the expiry clock. */
        if (!w->have_record || !same_string(holder_of(old), holder_of(l)) ||
            !same_string(old ? old->successor : NULL, l ? l->successor : NULL))
                w->wake = true;
        dcs_leader_free(w->record);
        w->record = l;
        w->have_record = true;
        w->record_at = now;
        w->record_taken = false;
}

int lease_watch_on_list(struct lease_watch *w, const cJSON *list, usec_t now) {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(list, "items");
        const cJSON *rv = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(list, "metadata"),
                                                           "resourceVersion");
        struct dcs_leader *l = NULL;
        int r;

        if (!cJSON_IsObject(list) || (items && !cJSON_IsArray(items) && !cJSON_IsNull(items)) ||
            !cJSON_IsString(rv) || isempty(rv->valuestring))
                return -EBADMSG;
        if (cJSON_GetArraySize(items) > 1)
                return -EBADMSG;
        if (cJSON_GetArraySize(items) == 1) {
                r = dcs_kube_leader_from_lease(cJSON_GetArrayItem(items, 0), &l);
                if (r < 0)
                        return r;
        }
        r = set_version(w, rv->valuestring);
        if (r < 0) {
                dcs_leader_free(l);
                return r;
        }
        take_record(w, l, now);
        w->count.lists++;
        w->last_activity = now;
        w->state = LEASE_WATCH_NEED_STREAM;
        w->retry_at = now;
        return 0;
}

void lease_watch_on_stream_start(struct lease_watch *w, usec_t now) {
        kube_watch_buffer_done(&w->buf);
        w->state = LEASE_WATCH_STREAMING;
        w->last_activity = now;
        w->got_event = false;
        w->count.streams++;
}

static int on_event(struct lease_watch *w, struct kube_watch_event *ev, usec_t now) {
        struct dcs_leader *l = NULL;
        int r;

        switch (ev->type) {
        case KUBE_WATCH_ADDED:
        case KUBE_WATCH_MODIFIED:
                r = dcs_kube_leader_from_lease(ev->object, &l);
                if (r < 0)
                        return r;
                take_record(w, l, now);
                break;
        case KUBE_WATCH_DELETED:
                take_record(w, NULL, now);
                break;
        case KUBE_WATCH_BOOKMARK:
                w->count.bookmarks++;
                break;
        case KUBE_WATCH_ERROR:
                return ev->code == 410 ? -EXFULL : -EPROTO;
        default:
                return -EBADMSG;
        }
        if (ev->type != KUBE_WATCH_BOOKMARK)
                w->count.events++;
        if (ev->resource_version && set_version(w, ev->resource_version) < 0)
                return -ENOMEM;
        w->got_event = true;
        /* A stream that delivers is healthy again. */
        w->failures = 0;
        return 0;
}

int lease_watch_on_data(struct lease_watch *w, const char *p, size_t n, usec_t now) {
        const char *line;
        size_t len;
        int r;

        if (w->state != LEASE_WATCH_STREAMING)
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
        else if (r < 0)
                broken(w, true, "an event that is not a watch event of a Lease", now);
        return r < 0 ? r : 0;
}

void lease_watch_on_end(struct lease_watch *w, long status, int error, const char *what, usec_t now) {
        _cleanup_free_ char *why = NULL;

        if (w->state != LEASE_WATCH_STREAMING)
                return;
        if (error == 0 && status == 200) {
                /* The server's timeoutSeconds: resume at once from the
                 * last version, as client-go's reflector does. */
                kube_watch_buffer_done(&w->buf);
                w->state = LEASE_WATCH_NEED_STREAM;
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

static usec_t stall_bound(const struct lease_watch *w) {
        return w->record && !isempty(w->record->holder) ? w->opt.stall_held : w->opt.stall_idle;
}

usec_t lease_watch_stall_at(const struct lease_watch *w) {
        if (w->state != LEASE_WATCH_STREAMING)
                return USEC_INFINITY;
        return w->last_activity + stall_bound(w);
}

bool lease_watch_check_stall(struct lease_watch *w, usec_t now) {
        if (w->state != LEASE_WATCH_STREAMING || now < lease_watch_stall_at(w))
                return false;
        w->count.stalls++;
        broken(w, true, "no event within the bound (a stalled stream)", now);
        return true;
}

bool lease_watch_fresh(const struct lease_watch *w, usec_t now) {
        return w->state == LEASE_WATCH_STREAMING && w->have_record && now < lease_watch_stall_at(w);
}
