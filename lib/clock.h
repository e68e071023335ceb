/* clock.h: the injected clock. lib/ never reads time directly: the agent
 * passes CLOCK_MONOTONIC through clock_ops, tests pass a scripted clock. */
#ifndef PGLEASE_CLOCK_H
#define PGLEASE_CLOCK_H

#include "macro.h"

struct clock_ops {
        /* Monotonic microseconds; never goes back. */
        usec_t (*now)(void *userdata);
        /* Wall-clock microseconds since the epoch, only for MicroTime strings
         * and log stamps, never for deciding anything. */
        usec_t (*realtime)(void *userdata);
        void *userdata;
};

static inline usec_t clock_now(const struct clock_ops *c) {
        return c->now(c->userdata);
}
static inline usec_t clock_realtime(const struct clock_ops *c) {
        return c->realtime(c->userdata);
}

/* The system clocks (CLOCK_MONOTONIC, CLOCK_REALTIME). */
extern const struct clock_ops clock_system;

/* A clock that only moves when told to, for tests. */
struct clock_scripted {
        usec_t monotonic;
        usec_t realtime;
};
void clock_scripted_init(struct clock_scripted *s, struct clock_ops *ret_ops);
void clock_scripted_advance(struct clock_scripted *s, usec_t by);

/* Formats a wall-clock time as a Kubernetes MicroTime:
 * "2026-11-25T20:32:51.123456Z", always six fractional digits. */
char *clock_format_microtime(usec_t realtime);
/* Parses what an API server writes (RFC 3339 with 0..9 fractional digits,
 * "Z" or a numeric offset) into microseconds since the epoch. */
int clock_parse_rfc3339(const char *s, usec_t *ret);

#endif
