/* kube-watch.h: the Kubernetes watch protocol without I/O: a bounded
 * buffer that cuts the stream into lines, and one line read as an event. */
#ifndef PGLEASE_KUBE_WATCH_H
#define PGLEASE_KUBE_WATCH_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "clock.h"
#include "macro.h"

enum kube_watch_event_type {
        KUBE_WATCH_ADDED,
        KUBE_WATCH_MODIFIED,
        KUBE_WATCH_DELETED,
        KUBE_WATCH_BOOKMARK,
        KUBE_WATCH_ERROR,
        _KUBE_WATCH_EVENT_MAX,
        _KUBE_WATCH_EVENT_INVALID = -EINVAL,
};
const char *kube_watch_event_type_to_string(enum kube_watch_event_type t);
enum kube_watch_event_type kube_watch_event_type_from_string(const char *s);

struct kube_watch_event {
        enum kube_watch_event_type type;
        cJSON *object;               /* owned; for ERROR the Status */
        const char *resource_version;/* the object's metadata.resourceVersion (borrowed from object), NULL if none */
        long code;                   /* ERROR: the Status code (410: the version is gone), else 0 */
};
void kube_watch_event_done(struct kube_watch_event *e);

/* One line of a watch stream, {"type": ..., "object": {...}}. -EBADMSG when
 * it is not such an object (unknown type, object not an object, a BOOKMARK
 * without a resourceVersion). ret is written only on success. */
int kube_watch_event_parse(const char *line, size_t len, struct kube_watch_event *ret);

/* The bytes received and not yet cut into lines. A line longer than limit
 * (a server or proxy sending garbage without newlines) is -EFBIG: the
 * stream is broken, not a reason to grow without end. */
struct kube_watch_buffer {
        char *data;
        size_t size, alloc, limit;
};
void kube_watch_buffer_init(struct kube_watch_buffer *b, size_t limit);
void kube_watch_buffer_done(struct kube_watch_buffer *b);
int kube_watch_buffer_feed(struct kube_watch_buffer *b, const char *p, size_t n);
/* The next whole line, without its "\n" (and "\r"), NUL-terminated, valid
 * until the next call: 1 and *ret_line, or 0 when no whole line is left.
 * Empty lines are skipped. */
int kube_watch_buffer_next_line(struct kube_watch_buffer *b, const char **ret_line, size_t *ret_len);

/* The stream of one watch (kube-watch-stream.c), shared by the Lease watch
 * (lease-watch.h) and the member Pods' watch (pod-watch.h): a LIST, then a
 * streaming GET of the changes from its version, resumed after a clean end,
 * listed again when the stream breaks, stalls or its version is gone (410).
 * No I/O: the driver (kube-watch-curl.c) and the unit tests feed it what the
 * server sent and when; what the objects mean is the kind's. */
enum kube_watch_state {
        KUBE_WATCH_NEED_LIST,        /* no version to watch from: the loop lists (a tick) */
        KUBE_WATCH_NEED_STREAM,      /* a version to resume from: open a stream (after retry_at) */
        KUBE_WATCH_STREAMING,        /* a stream is open (or being opened) */
        _KUBE_WATCH_STATE_MAX,
};
const char *kube_watch_state_to_string(enum kube_watch_state s);

struct kube_watch_kind {
        const char *what;            /* "Lease", "Pod": for the reasons a stream broke */
        /* A LIST's items (an array, maybe empty) replace the view; -EBADMSG
         * when they are not objects of the kind (the view is unchanged). */
        int (*list)(void *userdata, const cJSON *items, usec_t now);
        /* ADDED, MODIFIED or DELETED; -EBADMSG when not an object of the kind. */
        int (*change)(void *userdata, enum kube_watch_event_type type, const cJSON *object, usec_t now);
        /* The silence that breaks the stream now. */
        usec_t (*stall_bound)(const void *userdata);
};

struct kube_watch_counters {
        uint64_t events, bookmarks, streams, lists, gone, stalls, broken;
};

struct kube_watch {
        const struct kube_watch_kind *kind;
        void *userdata;
        enum kube_watch_state state;
        char *resource_version;      /* where the next stream starts; NULL: list first */
        usec_t retry_at;             /* no new stream (or list) before this (backoff) */
        unsigned failures;           /* streams broken in a row, for the backoff */
        usec_t last_activity;        /* last list, event or bookmark (or stream start) */
        bool got_event;              /* the current stream delivered something */
        struct kube_watch_buffer buf;
        struct kube_watch_counters count;
        char *last_error;            /* why the last stream broke, for the log */
};

void kube_watch_init(struct kube_watch *w, const struct kube_watch_kind *kind, void *userdata, size_t max_line);
void kube_watch_done(struct kube_watch *w);
/* A LIST answered: the version to watch from and the kind's view.
 * -EBADMSG when it is not a list we can read (the state is unchanged). */
int kube_watch_on_list(struct kube_watch *w, const cJSON *list, usec_t now);
/* A LIST failed (err < 0): try again after a backoff, much later when it
 * was refused (a Role without list). */
void kube_watch_on_list_failed(struct kube_watch *w, int err, usec_t now);
/* A stream was opened (the request sent). */
void kube_watch_on_stream_start(struct kube_watch *w, usec_t now);
/* Bytes of the stream. Returns 0, or < 0 when the stream is broken and must
 * be closed (a malformed or too long event, an ERROR event); the state then
 * says what comes next (410: list again). */
int kube_watch_on_data(struct kube_watch *w, const char *p, size_t n, usec_t now);
/* The stream ended: status is the HTTP status (0 if none came), error the
 * transport's (0: a clean end, the server's timeoutSeconds). */
void kube_watch_on_end(struct kube_watch *w, long status, int error, const char *what, usec_t now);
/* When the open stream will count as stalled; USEC_INFINITY when none. */
usec_t kube_watch_stall_at(const struct kube_watch *w);
/* A stream silent for longer than its bound is broken (a proxy that went
 * quiet, a server that stopped sending): returns true when it just did. */
bool kube_watch_check_stall(struct kube_watch *w, usec_t now);
/* The stream is open and not past its silence bound. */
bool kube_watch_streaming(const struct kube_watch *w, usec_t now);

/* The driver: watches on one curl multi handle behind one epoll fd the
 * caller's event loop polls (sd-event in the agent), so that nothing of a
 * watch blocks the loop. Only a LIST is a plain request, sent from the
 * loop's tick where it replaces that tick's read. */
struct kube;
struct kube_watcher;
int kube_watcher_new(struct kube *kube, const struct clock_ops *clock, struct kube_watcher **ret);
struct kube_watcher *kube_watcher_free(struct kube_watcher *kw);
DEFINE_POINTER_CLEANUP_FUNC(struct kube_watcher, kube_watcher_free);
/* Drive w (borrowed, until the watcher is freed) with the collection path
 * list_path (a selector in its query): its LIST, and its streams with
 * watch=1 added, each ended by the server after timeout_seconds. */
int kube_watcher_add(struct kube_watcher *kw, struct kube_watch *w, const char *list_path, unsigned timeout_seconds);
/* Readable when a stream has work. */
int kube_watcher_fd(const struct kube_watcher *kw);
/* When process() must run again at the latest; USEC_INFINITY for never. */
usec_t kube_watcher_next(const struct kube_watcher *kw);
/* Whatever is due: socket work, curl's timers, stall checks, opening
 * streams. Never blocks. */
void kube_watcher_process(struct kube_watcher *kw);
/* w's LIST when its state asks for one and its backoff has passed (1 when
 * it listed, 0 when nothing was due, < 0 when the list failed); blocking
 * up to deadline, called by the loop's tick. */
int kube_watcher_resync(struct kube_watcher *kw, struct kube_watch *w, usec_t deadline, char **reterr_msg);

#endif
