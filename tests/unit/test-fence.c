/* test-fence.c: a fence that never leaves a writable primary: when it is
 * safe to lift the supervisor's backstop, and the escalation through the
 * supervisor (lease-expiry = now) when the stop was not confirmed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "clock.h"
#include "fence.h"
#include "lease-file.h"
#include "util.h"

/* A postmaster as the fake backend reports it, and a fake supervisor that
 * stops it as soon as the lease-expiry file names a time that has passed. */
struct fake {
        char *dir;
        int running;                  /* what is_running returns */
        bool supervisor_fences;       /* the supervisor reacts to the file */
        int polls;
        struct clock_scripted clock;
        struct clock_ops ops;
};

static int fake_is_running(struct pgctl *c, pid_t *ret_pid) {
        struct fake *f = c->userdata;
        usec_t expiry;

        f->polls++;
        /* Each look costs time on the scripted clock: waits end. */
        clock_scripted_advance(&f->clock, 50 * USEC_PER_MSEC);
        if (f->running > 0 && f->supervisor_fences && lease_file_read(f->dir, &expiry) >= 0 &&
            expiry <= f->clock.monotonic)
                f->running = 0;
        if (f->running > 0 && ret_pid)
                *ret_pid = 1;
        return f->running;
}

static const struct pgctl_ops fake_ops = { .name = "fake", .is_running = fake_is_running };

static int setup(void **state) {
        struct fake *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        f->dir = strdup("/tmp/test-fence-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->clock = (struct clock_scripted) { .monotonic = 1000 * USEC_PER_SEC, .realtime = 1764102771ULL * USEC_PER_SEC };
        clock_scripted_init(&f->clock, &f->ops);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fake *f = *state;

        assert_int_equal(rm_rf(f->dir), 0);
        free(f->dir);
        free(f);
        return 0;
}

static struct pgctl fake_pgctl(struct fake *f) {
        /* No postmaster.pid in dir: a SIGKILL of our own finds nothing to
         * kill, so only the fake's answer says whether it stopped. */
        return (struct pgctl) { .ops = &fake_ops, .config = { .datadir = f->dir, .run_dir = f->dir, .clock = &f->ops }, .userdata = f };
}

static void test_write_safe_only_when_stopped_or_read_only(void **state) {
        struct fake *f = *state;
        struct pgctl c = fake_pgctl(f);

        f->running = 0;
        assert_true(fence_write_safe(&c, false));
        f->running = 1;
        assert_false(fence_write_safe(&c, false));
        assert_true(fence_write_safe(&c, true));
        /* Cannot tell: not safe, whatever the last observation said. */
        f->running = -EIO;
        assert_false(fence_write_safe(&c, true));
}

static void test_escalation_asks_the_supervisor_at_once_and_keeps_the_file(void **state) {
        struct fake *f = *state;
        struct pgctl c = fake_pgctl(f);
        _cleanup_free_ char *err = NULL;
        usec_t start = f->clock.monotonic, expiry;

        f->running = 1;
        f->supervisor_fences = true;
        assert_int_equal(fence_escalate(&c, f->dir, &f->ops, FENCE_ESCALATION_WAIT, &err), 0);
        assert_int_equal(f->running, 0);
        /* The expiry written is the escalation's start: the supervisor
         * fences at once, not at the renew deadline. */
        assert_int_equal(lease_file_read(f->dir, &expiry), 0);
        assert_int_equal(expiry, start);
        assert_true(f->clock.monotonic - start < FENCE_ESCALATION_WAIT);
}

static void test_escalation_that_cannot_stop_fails_within_its_wait(void **state) {
        struct fake *f = *state;
        struct pgctl c = fake_pgctl(f);
        _cleanup_free_ char *err = NULL;
        usec_t start = f->clock.monotonic, expiry;

        f->running = 1;
        f->supervisor_fences = false;
        assert_int_equal(fence_escalate(&c, f->dir, &f->ops, FENCE_ESCALATION_WAIT, &err), -ETIMEDOUT);
        assert_non_null(err);
        assert_non_null(strstr(err, "still running"));
        /* The backstop is left for the supervisor. */
        assert_int_equal(lease_file_read(f->dir, &expiry), 0);
        assert_true(f->clock.monotonic - start <= FENCE_ESCALATION_WAIT + 100 * USEC_PER_MSEC);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_write_safe_only_when_stopped_or_read_only, setup, teardown),
                cmocka_unit_test_setup_teardown(test_escalation_asks_the_supervisor_at_once_and_keeps_the_file, setup, teardown),
                cmocka_unit_test_setup_teardown(test_escalation_that_cannot_stop_fails_within_its_wait, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
