/* event-repeat.c: counting repeats of the last event instead of writing
 * them (a paused cluster said "paused" once per replica per tick). */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "event-repeat.h"
#include "log.h"
#include "util.h"

bool event_repeat_absorb(struct event_repeat *r, const char *event, int level, const char *message, usec_t at) {
        if (!r->event || !streq(r->event, event) || r->level != level || !streq(r->message, message) ||
            at < r->first_at || at - r->first_at >= EVENT_REPEAT_WINDOW)
                return false;
        r->count++;
        r->last_at = at;
        return true;
}

int event_repeat_next(struct event_repeat *r, const char *event, int level, const char *message, usec_t at,
                      struct event_repeat_summary *ret) {
        _cleanup_free_ char *quoted = NULL, *first = NULL, *last = NULL;
        char *e, *m;

        *ret = (struct event_repeat_summary) {};
        if (r->event && r->count > 0) {
                first = clock_format_microtime(r->first_at);
                last = clock_format_microtime(r->last_at);
                if (!first || !last || json_escape(r->message, &quoted) < 0)
                        return -ENOMEM;
                ret->details = strdup_printf("{\"message\":%s,\"level\":\"%s\",\"repeated\":%u,\"first_seen\":\"%s\","
                                             "\"last_seen\":\"%s\"}", quoted, log_level_to_string((enum log_level) r->level), r->count,
                                             first, last);
                ret->event = strdup(r->event);
                if (!ret->details || !ret->event) {
                        event_repeat_summary_done(ret);
                        return -ENOMEM;
                }
                ret->level = r->level;
                ret->at = r->last_at;
                ret->count = r->count;
        }
        e = strdup(event);
        m = strdup(message);
        if (!e || !m) {
                free(e);
                free(m);
                return -ENOMEM;
        }
        event_repeat_done(r);
        *r = (struct event_repeat) { .event = e, .message = m, .level = level, .first_at = at, .last_at = at };
        return 0;
}

void event_repeat_done(struct event_repeat *r) {
        free(r->event);
        free(r->message);
        *r = (struct event_repeat) {};
}

void event_repeat_summary_done(struct event_repeat_summary *s) {
        free(s->event);
        free(s->details);
        *s = (struct event_repeat_summary) {};
}
