/* kube-watch.h: the Kubernetes watch protocol without I/O: a bounded
 * buffer that cuts the stream into lines, and one line read as an event. */
#ifndef PGLEASE_KUBE_WATCH_H
#define PGLEASE_KUBE_WATCH_H

#include <cjson/cJSON.h>
#include <stddef.h>

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

#endif
