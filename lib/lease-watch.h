/* lease-watch.h: a follower's view of the leader Lease kept by a watch
 * (docs/kubernetes.md, "The watch"): a LIST, then a streaming GET of the
 * changes, a resync when the stream breaks, stalls or is too old (410). */
#ifndef PGLEASE_LEASE_WATCH_H
#define PGLEASE_LEASE_WATCH_H

#include <cjson/cJSON.h>

#include "clock.h"
#include "dcs.h"
#include "kube-watch.h"

/* The stream's states. */
enum lease_watch_state {
        LEASE_WATCH_NEED_LIST,       /* no version to watch from: the loop lists (a tick) */
        LEASE_WATCH_NEED_STREAM,     /* a version to resume from: open a stream (after retry_at) */
        LEASE_WATCH_STREAMING,       /* a stream is open (or being opened) */
        _LEASE_WATCH_STATE_MAX,
};
const char *lease_watch_state_to_string(enum lease_watch_state s);

struct lease_watch_options {
        usec_t stall_held;           /* silence that breaks a stream while the lease has a holder (renewals are due) */
        usec_t stall_idle;           /* silence that breaks it otherwise (beyond the server's timeoutSeconds) */
        size_t max_line;             /* longest event accepted */
};

struct lease_watch_counters {
        uint64_t events, bookmarks, streams, lists, gone, stalls, broken;
};

/* The state machine alone, no I/O: the driver (lease-watch-curl.c) and the
 * unit tests feed it what the server sent and when. */
struct lease_watch {
        struct lease_watch_options opt;
        enum lease_watch_state state;
        char *resource_version;      /* where the next stream starts; NULL: list first */
        usec_t retry_at;             /* no new stream before this (backoff) */
        unsigned failures;           /* streams broken in a row, for the backoff */
        usec_t last_activity;        /* last list, event or bookmark (or stream start) */
        bool got_event;              /* the current stream delivered something */

        struct dcs_leader *record;   /* the Lease as last seen; NULL when missing */
        bool have_record;            /* record (or its absence) is known */
        usec_t record_at;            /* when the current bytes were first seen (arrival) */
        bool record_taken;           /* the loop has the current record */
        bool wake;                   /* a change the loop should act on now (a new holder, a release) */

        struct kube_watch_buffer buf;
        struct lease_watch_counters count;
        char *last_error;            /* why the last stream broke, for the log */
};

void lease_watch_init(struct lease_watch *w, const struct lease_watch_options *o);
void lease_watch_done(struct lease_watch *w);

/* A LIST with fieldSelector metadata.name=<lease> answered: the version to
 * watch from and the record (items[0], or none). -EBADMSG when it is not a
 * list we can read (the state is unchanged). */
int lease_watch_on_list(struct lease_watch *w, const cJSON *list, usec_t now);
/* A stream was opened (the request sent). */
void lease_watch_on_stream_start(struct lease_watch *w, usec_t now);
/* Bytes of the stream. Returns 0, or < 0 when the stream is broken and must
 * be closed (a malformed or too long event, an ERROR event); the state then
 * says what comes next (410: list again). */
int lease_watch_on_data(struct lease_watch *w, const char *p, size_t n, usec_t now);
/* The stream ended: status is the HTTP status (0 if none came), error the
 * transport's (0: a clean end, the server's timeoutSeconds). */
void lease_watch_on_end(struct lease_watch *w, long status, int error, const char *what, usec_t now);
/* A stream silent for longer than its bound is broken (a proxy that went
 * quiet, a server that stopped sending): returns true when it just did. */
bool lease_watch_check_stall(struct lease_watch *w, usec_t now);

/* The stream is open and not past its silence bound: its record can stand
 * in for a read of the Lease. */
bool lease_watch_fresh(const struct lease_watch *w, usec_t now);
/* When the open stream will count as stalled; USEC_INFINITY when none. */
usec_t lease_watch_stall_at(const struct lease_watch *w);

#endif

/* The driver: the state machine above, a curl multi handle for the stream
 * and an epoll fd the caller's event loop polls (sd-event in the agent),
 * so that nothing of the watch blocks the loop. Only the LIST is a plain
 * request, sent from the loop's tick where it replaces that tick's read. */
struct lease_watcher;
struct lease_watcher_options {
        struct lease_watch_options watch;
        unsigned timeout_seconds;    /* the server ends each stream after this */
};
/* dcs must be the Kubernetes backend (-EOPNOTSUPP otherwise); borrowed. */
int lease_watcher_new(const struct dcs *dcs, const struct lease_watcher_options *o, const struct clock_ops *clock,
                      struct lease_watcher **ret, char **reterr_msg);
struct lease_watcher *lease_watcher_free(struct lease_watcher *w);
DEFINE_POINTER_CLEANUP_FUNC(struct lease_watcher, lease_watcher_free);
/* Readable when the stream has work. */
int lease_watcher_fd(const struct lease_watcher *w);
/* When process() must run again at the latest; USEC_INFINITY for never. */
usec_t lease_watcher_next(const struct lease_watcher *w);
/* Whatever is due: socket work, curl's timers, the stall check, opening a
 * stream. Never blocks. */
void lease_watcher_process(struct lease_watcher *w);
/* The LIST when the state asks for one and its backoff has passed (1 when
 * it listed, 0 when nothing was due); blocking up to deadline, called by
 * the loop's tick. */
int lease_watcher_resync(struct lease_watcher *w, usec_t deadline, char **reterr_msg);
struct lease_watch *lease_watcher_state(struct lease_watcher *w);
