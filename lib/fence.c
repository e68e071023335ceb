/* fence.c: a fence that never leaves a writable primary: the check that
 * PostgreSQL cannot accept writes, and the escalation when it still can. */
#include <string.h>

#include "fence.h"
#include "lease-file.h"
#include "proc.h"
#include "util.h"

#define FENCE_POLL_INTERVAL (20 * USEC_PER_MSEC)

bool fence_write_safe(struct pgctl *c, bool seen_read_only) {
        int r = pgctl_is_running(c, NULL);

        return r == 0 || (r > 0 && seen_read_only);
}

static bool wait_stopped(struct pgctl *c, const struct clock_ops *clock, usec_t deadline) {
        for (;;) {
                usec_t now;

                if (pgctl_is_running(c, NULL) == 0)
                        return true;
                now = clock_now(clock);
                if (now >= deadline)
                        return false;
                proc_pause(MIN(FENCE_POLL_INTERVAL, deadline - now));
        }
}

int fence_escalate(struct pgctl *c, const char *run_dir, const struct clock_ops *clock, usec_t wait, char **reterr_msg) {
        usec_t start = clock_now(clock);
        int written, r;

        /* The supervisor watches the file (inotify): an expiry that has
         * passed makes it fence at once, SIGKILL to the whole process tree,
         * which works on stopped processes too. */
        written = run_dir ? lease_file_write(run_dir, start) : -EDESTADDRREQ;
        if (written >= 0 && wait_stopped(c, clock, start + wait / 2))
                return 0;
        r = pgctl_kill(c, wait - MIN(wait, clock_now(clock) - start), reterr_msg);
        if (r >= 0 && wait_stopped(c, clock, start + wait))
                return 0;
        if (r >= 0)
                r = -ETIMEDOUT;
        if (reterr_msg && !*reterr_msg)
                set_error_msg(reterr_msg, "the postmaster is still running after SIGKILL%s%s",
                              written < 0 ? "; cannot ask the supervisor to fence: " : "",
                              written < 0 ? strerror(-written) : "");
        return r;
}
