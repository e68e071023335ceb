/* clockshift.c: an LD_PRELOAD library for the resilience suite's clock_step
 * fault. It steps one node's wall clock, as `date -s` or a misbehaving NTP
 * client steps a machine's: every process of the node (agent, run-postgres,
 * PostgreSQL and what they exec) reads CLOCK_REALTIME plus an offset, while
 * CLOCK_MONOTONIC, on which the agent's lease timing rests, is left alone,
 * as the kernel leaves it when the wall clock is set.
 *
 * The offset, in milliseconds (signed decimal), is read from the file named
 * by CLOCKSHIFT_FILE, at most every 50 ms of monotonic time; the test writes
 * it atomically (a new file renamed over the old). No file, or no variable:
 * offset 0.
 *
 * Interposed: clock_gettime (the realtime clocks), gettimeofday, time and
 * timespec_get, which glibc implements without calling each other through
 * the PLT. Not translated: an absolute CLOCK_REALTIME deadline handed to the
 * kernel (pthread_cond_timedwait on a default condition variable,
 * clock_nanosleep or timerfd with TIMER_ABSTIME on the realtime clock) is
 * measured against the real clock; the agent waits on CLOCK_MONOTONIC only,
 * and PostgreSQL computes relative timeouts. libfaketime was tried first:
 * 0.9.10 (Debian 12) with FAKETIME_DONT_FAKE_MONOTONIC returns at once from,
 * or oversleeps, a pthread_cond_timedwait on a CLOCK_MONOTONIC condition
 * variable (the agent's renewer thread) and fails clock_nanosleep on it
 * with EINVAL: it would test libfaketime, not the agent. */

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define REREAD_NSEC 50000000LL

typedef int (*clock_gettime_fn)(clockid_t, struct timespec *);

static clock_gettime_fn real_clock_gettime;
static _Atomic long long offset_nsec;
static _Atomic long long next_read = -1;       /* monotonic ns; -1: never read */

static int raw_clock_gettime(clockid_t id, struct timespec *ts) {
        clock_gettime_fn fn = __atomic_load_n(&real_clock_gettime, __ATOMIC_ACQUIRE);

        if (!fn) {
                fn = (clock_gettime_fn) dlsym(RTLD_NEXT, "clock_gettime");
                if (!fn)
                        return (int) syscall(SYS_clock_gettime, id, ts);
                __atomic_store_n(&real_clock_gettime, fn, __ATOMIC_RELEASE);
        }
        return fn(id, ts);
}

static long long parse_msec(const char *s) {
        long long v = 0;
        int neg = 0;

        while (*s == ' ' || *s == '\t')
                s++;
        if (*s == '-' || *s == '+')
                neg = *s++ == '-';
        for (; *s >= '0' && *s <= '9'; s++) {
                if (v > 1000LL * 86400 * 3650)     /* ten years: enough */
                        return 0;
                v = v * 10 + (*s - '0');
        }
        return neg ? -v : v;
}

static void reread(void) {
        const char *path = getenv("CLOCKSHIFT_FILE");
        struct timespec now;
        long long mono, due;
        char buf[64];
        ssize_t n;
        int fd, saved = errno;

        if (raw_clock_gettime(CLOCK_MONOTONIC, &now) < 0)
                return;
        mono = (long long) now.tv_sec * 1000000000LL + now.tv_nsec;
        due = atomic_load(&next_read);
        if (due >= 0 && mono < due)
                return;
        atomic_store(&next_read, mono + REREAD_NSEC);
        if (!path || !*path)
                return;
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                errno = saved;
                return;
        }
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
        if (n > 0) {
                buf[n] = 0;
                atomic_store(&offset_nsec, parse_msec(buf) * 1000000LL);
        }
        errno = saved;
}

static void shift(struct timespec *ts) {
        long long ns;

        reread();
        ns = atomic_load(&offset_nsec);
        if (ns == 0)
                return;
        ns += ts->tv_nsec;
        ts->tv_sec += (time_t) (ns / 1000000000LL);
        ns %= 1000000000LL;
        if (ns < 0) {
                ns += 1000000000LL;
                ts->tv_sec--;
        }
        ts->tv_nsec = (long) ns;
}

static int is_realtime(clockid_t id) {
        return id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE || id == CLOCK_TAI;
}

int clock_gettime(clockid_t id, struct timespec *ts) {
        int r = raw_clock_gettime(id, ts);

        if (r == 0 && is_realtime(id))
                shift(ts);
        return r;
}

int gettimeofday(struct timeval *restrict tv, void *restrict tz) {
        struct timespec ts;

        if (tz)
                ((struct timezone *) tz)->tz_minuteswest = ((struct timezone *) tz)->tz_dsttime = 0;
        if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
                return -1;
        tv->tv_sec = ts.tv_sec;
        tv->tv_usec = ts.tv_nsec / 1000;
        return 0;
}

time_t time(time_t *out) {
        struct timespec ts;

        if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
                return (time_t) -1;
        if (out)
                *out = ts.tv_sec;
        return ts.tv_sec;
}

int timespec_get(struct timespec *ts, int base) {
        if (base != TIME_UTC || clock_gettime(CLOCK_REALTIME, ts) < 0)
                return 0;
        return base;
}
