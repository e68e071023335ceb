/* clock.c: the injected clock. lib/ never reads time directly: the agent
 * passes CLOCK_MONOTONIC through clock_ops, tests pass a scripted clock. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "util.h"

static usec_t read_clock(clockid_t id) {
        struct timespec ts;

        (void) clock_gettime(id, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

static usec_t system_monotonic(void *userdata) {
        return read_clock(CLOCK_MONOTONIC);
}

static usec_t system_realtime(void *userdata) {
        return read_clock(CLOCK_REALTIME);
}

const struct clock_ops clock_system = {
        .now = system_monotonic,
        .realtime = system_realtime,
};

static usec_t scripted_monotonic(void *userdata) {
        return ((struct clock_scripted *) userdata)->monotonic;
}

static usec_t scripted_realtime(void *userdata) {
        return ((struct clock_scripted *) userdata)->realtime;
}

void clock_scripted_init(struct clock_scripted *s, struct clock_ops *ret_ops) {
        *ret_ops = (struct clock_ops) {
                .now = scripted_monotonic,
                .realtime = scripted_realtime,
                .userdata = s,
        };
}

void clock_scripted_advance(struct clock_scripted *s, usec_t by) {
        s->monotonic += by;
        s->realtime += by;
}

char *clock_format_microtime(usec_t realtime) {
        time_t sec = (time_t) (realtime / USEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&sec, &tm))
                return NULL;
        return strdup_printf("%04d-%02d-%02dT%02d:%02d:%02d.%06uZ",
                             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                             tm.tm_hour, tm.tm_min, tm.tm_sec,
                             (unsigned) (realtime % USEC_PER_SEC));
}

int clock_parse_rfc3339(const char *s, usec_t *ret) {
        struct tm tm = {};
        unsigned frac_usec = 0;
        long offset = 0;
        const char *p;
        time_t t;

        if (isempty(s))
                return -EINVAL;
        p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
        if (!p)
                return -EINVAL;
        if (*p == '.') {
                unsigned scale = 100000;

                p++;
                if (!isdigit((unsigned char) *p))
                        return -EINVAL;
                for (; isdigit((unsigned char) *p); p++) {
                        frac_usec += (unsigned) (*p - '0') * scale;
                        scale /= 10;
                }
        }
        if (*p == 'Z' || *p == 'z')
                p++;
        else if (*p == '+' || *p == '-') {
                long hh, mm;

                /* Exactly "HH:MM": sscanf("%2d:%2d") also took "5:2" and
                 * the 6 bytes skipped then ran past the end of the string
                 * (found by fuzz-lease-json). */
                if (!isdigit((unsigned char) p[1]) || !isdigit((unsigned char) p[2]) || p[3] != ':' ||
                    !isdigit((unsigned char) p[4]) || !isdigit((unsigned char) p[5]))
                        return -EINVAL;
                hh = (p[1] - '0') * 10 + (p[2] - '0');
                mm = (p[4] - '0') * 10 + (p[5] - '0');
                if (hh > 23 || mm > 59)
                        return -EINVAL;
                offset = (hh * 3600L + mm * 60L) * (*p == '+' ? 1 : -1);
                p += 6;
        } else
                return -EINVAL;
        if (*p != '\0')
                return -EINVAL;
        t = timegm(&tm);
        if (t == (time_t) -1)
                return -EINVAL;
        t -= offset;
        if (t < 0)
                return -ERANGE;
        *ret = (usec_t) t * USEC_PER_SEC + frac_usec;
        return 0;
}
