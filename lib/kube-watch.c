/* kube-watch.c: the Kubernetes watch protocol without I/O: a bounded
 * buffer that cuts the stream into lines, and one line read as an event. */
#include <string.h>

#include "kube-watch.h"
#include "kube-yaml.h"
#include "util.h"

static const char *const event_type_names[_KUBE_WATCH_EVENT_MAX] = {
        [KUBE_WATCH_ADDED] = "ADDED",
        [KUBE_WATCH_MODIFIED] = "MODIFIED",
        [KUBE_WATCH_DELETED] = "DELETED",
        [KUBE_WATCH_BOOKMARK] = "BOOKMARK",
        [KUBE_WATCH_ERROR] = "ERROR",
};

const char *kube_watch_event_type_to_string(enum kube_watch_event_type t) {
        return t >= 0 && t < _KUBE_WATCH_EVENT_MAX ? event_type_names[t] : NULL;
}

enum kube_watch_event_type kube_watch_event_type_from_string(const char *s) {
        for (int i = 0; s && i < _KUBE_WATCH_EVENT_MAX; i++)
                if (streq(s, event_type_names[i]))
                        return (enum kube_watch_event_type) i;
        return _KUBE_WATCH_EVENT_INVALID;
}

void kube_watch_event_done(struct kube_watch_event *e) {
        cJSON_Delete(e->object);
        *e = (struct kube_watch_event) {};
}

int kube_watch_event_parse(const char *line, size_t len, struct kube_watch_event *ret) {
        _cleanup_(cjson_deletep) cJSON *j = cJSON_ParseWithLength(line, len);
        const cJSON *type, *code, *rv;
        enum kube_watch_event_type t;
        cJSON *object;

        if (!cJSON_IsObject(j))
                return -EBADMSG;
        type = cJSON_GetObjectItemCaseSensitive(j, "type");
        t = kube_watch_event_type_from_string(cJSON_IsString(type) ? type->valuestring : NULL);
        if (t < 0)
                return -EBADMSG;
        object = cJSON_DetachItemFromObjectCaseSensitive(j, "object");
        if (!cJSON_IsObject(object)) {
                cJSON_Delete(object);
                return -EBADMSG;
        }
        rv = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(object, "metadata"), "resourceVersion");
        code = cJSON_GetObjectItemCaseSensitive(object, "code");
        /* A bookmark only carries a version: without one it says nothing. */
        if ((t == KUBE_WATCH_BOOKMARK && (!cJSON_IsString(rv) || isempty(rv->valuestring))) ||
            (t == KUBE_WATCH_ERROR && code && !cJSON_IsNumber(code))) {
                cJSON_Delete(object);
                return -EBADMSG;
        }
        *ret = (struct kube_watch_event) {
                .type = t,
                .object = object,
                .resource_version = cJSON_IsString(rv) ? rv->valuestring : NULL,
                .code = t == KUBE_WATCH_ERROR && cJSON_IsNumber(code) && code->valuedouble >= 0 &&
                        code->valuedouble < 1000 ? (long) code->valuedouble : 0,
        };
        return 0;
}

void kube_watch_buffer_init(struct kube_watch_buffer *b, size_t limit) {
        *b = (struct kube_watch_buffer) { .limit = limit };
}

void kube_watch_buffer_done(struct kube_watch_buffer *b) {
        free(b->data);
        kube_watch_buffer_init(b, b->limit);
}

/* Bytes [0, consumed) were handed out as lines: drop them lazily, on the
 * next feed, so that the line returned last stays valid until then. */
static void buffer_compact(struct kube_watch_buffer *b) {
        char *nl;
        size_t keep;

        if (!b->data || b->size == 0)
                return;
        nl = memrchr(b->data, '\0', b->size);
        if (!nl)
                return;
        keep = b->size - (size_t) (nl + 1 - b->data);
        memmove(b->data, nl + 1, keep);
        b->size = keep;
}

/* The length of the unfinished line at the end of the n bytes at p. */
static size_t tail_length(const char *p, size_t n) {
        const char *nl = memrchr(p, '\n', n);

        return nl ? n - (size_t) (nl + 1 - p) : n;
}

int kube_watch_buffer_feed(struct kube_watch_buffer *b, const char *p, size_t n) {
        size_t tail;

        buffer_compact(b);
        if (memchr(p, '\0', n))
                return -EBADMSG;
        /* The line being received may not outgrow the limit, whether or not
         * whole lines come with it. */
        tail = memchr(p, '\n', n) ? tail_length(p, n) : tail_length(b->data ?: "", b->size) + n;
        if (tail > b->limit)
                return -EFBIG;
        if (b->size + n + 1 > b->alloc) {
                size_t want = MAX(MAX(b->alloc * 2, b->size + n + 1), (size_t) 4096);
                char *d = realloc(b->data, want);

                if (!d)
                        return -ENOMEM;
                b->data = d;
                b->alloc = want;
        }
        memcpy(b->data + b->size, p, n);
        b->size += n;
        b->data[b->size] = '\0';
        return 0;
}

int kube_watch_buffer_next_line(struct kube_watch_buffer *b, const char **ret_line, size_t *ret_len) {
        for (;;) {
                char *start, *nl, *end;
                size_t off = 0;

                if (!b->data)
                        return 0;
                /* Lines already handed out end in '\0'; skip past them. */
                start = memrchr(b->data, '\0', b->size);
                if (start)
                        off = (size_t) (start + 1 - b->data);
                start = b->data + off;
                nl = memchr(start, '\n', b->size - off);
                if (!nl) {
                        if (b->size - off > b->limit)
                                return -EFBIG;
                        return 0;
                }
                *nl = '\0';
                end = nl;
                if (end > start && end[-1] == '\r')
                        *--end = '\0';
                if (end == start)
                        continue;
                if ((size_t) (end - start) > b->limit)
                        return -EFBIG;
                *ret_line = start;
                *ret_len = (size_t) (end - start);
                return 1;
        }
}
