/* event-repeat.h: one event for a repeated condition. An event identical to
 * the previous one (kind, level, message) within a window is counted, not
 * written again; the count and the last time it was seen go out as one
 * summary row when the run ends or the window passes (issue 19, item 4). */
#ifndef PGLEASE_EVENT_REPEAT_H
#define PGLEASE_EVENT_REPEAT_H

#include <stdbool.h>

#include "clock.h"

/* A condition that lasts is written again (with its summary) this often. */
#define EVENT_REPEAT_WINDOW (10 * 60 * USEC_PER_SEC)

struct event_repeat {
        char *event;
        char *message;
        int level;
        usec_t first_at;         /* wall clock of the event that started the run */
        usec_t last_at;
        unsigned count;          /* repeats absorbed since first_at */
};

/* true: a repeat, counted; the caller writes nothing. */
bool event_repeat_absorb(struct event_repeat *r, const char *event, int level, const char *message, usec_t at);

/* The run that ends: its summary, if it had repeats (ret_* are heap strings
 * the caller frees; *ret_event NULL when there is none), then a new run
 * starting with this event. */
struct event_repeat_summary {
        char *event;             /* NULL: the run had no repeats */
        int level;
        char *details;           /* JSON: message, level, repeated, first_seen, last_seen */
        usec_t at;               /* the last repeat */
        unsigned count;
};
int event_repeat_next(struct event_repeat *r, const char *event, int level, const char *message, usec_t at,
                      struct event_repeat_summary *ret);
void event_repeat_summary_done(struct event_repeat_summary *s);

void event_repeat_done(struct event_repeat *r);

#endif
