/* test-supervisor.c: the run-postgres supervisor's decisions (start, hold,
 * backoff, stop, escalation, the lease watchdog), its exit statuses, its
 * state file and the lease-expiry file it shares with the agent. */
#include <dirent.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "lease-file.h"
#include "supervisor.h"
#include "util.h"

#define EXITED(code) W_EXITCODE(code, 0)
#define KILLED(sig) W_EXITCODE(0, sig)

/* The fence steps as they were taken, in order: "marker:/data",
 * "hold:/run:lease-expired", "kill:100:9", "lease_remove:/run". */
#define MAX_STEPS 16

struct fixture {
        struct clock_scripted clock;
        struct clock_ops clock_ops;
        struct supervisor_config config;
        struct supervisor s;
        char *last_log;
        unsigned logs;
        char *steps[MAX_STEPS];
        unsigned n_steps;
        int marker_result;
};

static int record(struct fixture *f, char *step) {
        assert_non_null(step);
        assert_true(f->n_steps < MAX_STEPS);
        f->steps[f->n_steps++] = step;
        return 0;
}

static int fake_marker(void *userdata, const char *data_dir) {
        struct fixture *f = userdata;

        record(f, strdup_printf("marker:%s", data_dir));
        return f->marker_result;
}

static int fake_hold(void *userdata, const char *run_dir, const char *reason) {
        return record(userdata, strdup_printf("hold:%s:%s", run_dir, reason));
}

static int fake_kill(void *userdata, pid_t pid, int sig) {
        return record(userdata, strdup_printf("kill:%d:%d", (int) pid, sig));
}

static int fake_lease_remove(void *userdata, const char *run_dir) {
        return record(userdata, strdup_printf("lease_remove:%s", run_dir));
}

static const struct supervisor_fence_ops fake_fence_ops = {
        .write_standby_marker = fake_marker,
        .hold_set = fake_hold,
        .kill = fake_kill,
        .lease_remove = fake_lease_remove,
};

static void capture_log(void *userdata, const char *line) {
        struct fixture *f = userdata;

        free(f->last_log);
        f->last_log = strdup(line);
        f->logs++;
}

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        clock_scripted_init(&f->clock, &f->clock_ops);
        clock_scripted_advance(&f->clock, 1000 * USEC_PER_SEC);
        f->config = (struct supervisor_config) {
                .restart_delay = USEC_PER_SEC,
                .restart_delay_max = 8 * USEC_PER_SEC,
                .restart_reset_after = 60 * USEC_PER_SEC,
                .clock = &f->clock_ops,
                .log = capture_log,
                .log_userdata = f,
                .run_dir = "/run",
                .data_dir = "/data",
                .fence_ops = &fake_fence_ops,
                .fence_userdata = f,
        };
        supervisor_init(&f->s, &f->config, clock_now(&f->clock_ops));
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;

        free(f->last_log);
        for (unsigned i = 0; i < f->n_steps; i++)
                free(f->steps[i]);
        free(f);
        return 0;
}

static usec_t now(struct fixture *f) {
        return clock_now(&f->clock_ops);
}

static enum supervisor_action tick(struct fixture *f, bool held, int *sig, usec_t *wait_until) {
        int s = 0;
        usec_t w = 0;
        enum supervisor_action a = supervisor_tick(&f->s, held, now(f), &s, &w);

        if (sig)
                *sig = s;
        if (wait_until)
                *wait_until = w;
        return a;
}

static void start(struct fixture *f, pid_t pid) {
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_START);
        supervisor_started(&f->s, pid, now(f));
        assert_int_equal(f->s.phase, SUPERVISOR_RUNNING);
        assert_int_equal(f->s.postmaster_pid, pid);
}

static void test_exit_status_maps_postgres_outcomes(void **state) {
        assert_int_equal(supervisor_exit_status(EXITED(0)), SUPERVISOR_EXIT_CLEAN);
        assert_int_equal(supervisor_exit_status(EXITED(1)), SUPERVISOR_EXIT_POSTGRES_FAILED);
        assert_int_equal(supervisor_exit_status(EXITED(2)), SUPERVISOR_EXIT_POSTGRES_FAILED);
        assert_int_equal(supervisor_exit_status(KILLED(SIGKILL)), 128 + SIGKILL);
        assert_int_equal(supervisor_exit_status(KILLED(SIGQUIT)), 128 + SIGQUIT);
        assert_int_equal(SUPERVISOR_EXIT_USAGE, 1);
        assert_int_equal(SUPERVISOR_EXIT_START_FAILED, 2);
}

static void test_restart_delay_doubles_caps_and_resets(void **state) {
        const usec_t s = USEC_PER_SEC;

        assert_true(supervisor_next_delay(0, s, 16 * s, 0, 60 * s) == s);
        assert_true(supervisor_next_delay(s, s, 16 * s, 0, 60 * s) == 2 * s);
        assert_true(supervisor_next_delay(8 * s, s, 16 * s, 5 * s, 60 * s) == 16 * s);
        assert_true(supervisor_next_delay(16 * s, s, 16 * s, 5 * s, 60 * s) == 16 * s);
        assert_true(supervisor_next_delay(USEC_INFINITY / 2 + 1, s, USEC_INFINITY, 0, 60 * s) == USEC_INFINITY);
        /* A run of a minute or more was not a crash loop. */
        assert_true(supervisor_next_delay(16 * s, s, 16 * s, 60 * s, 60 * s) == s);
}

static void test_first_tick_starts_postgres_unless_held(void **state) {
        struct fixture *f = *state;
        usec_t wait_until;

        assert_int_equal(tick(f, true, NULL, &wait_until), SUPERVISOR_ACTION_WAIT);
        assert_int_equal(f->s.phase, SUPERVISOR_HELD);
        assert_true(wait_until == USEC_INFINITY);
        assert_string_equal(f->last_log, "held: waiting for hold file to be removed");
        assert_int_equal(tick(f, true, NULL, NULL), SUPERVISOR_ACTION_WAIT);
        start(f, 100);
        assert_int_equal(f->s.restarts, 0);
}

static void test_crashed_postgres_is_restarted_after_backoff(void **state) {
        struct fixture *f = *state;
        usec_t wait_until;

        start(f, 100);
        clock_scripted_advance(&f->clock, 5 * USEC_PER_SEC);
        supervisor_on_exit(&f->s, KILLED(SIGKILL), false, now(f));
        assert_int_equal(f->s.phase, SUPERVISOR_BACKOFF);
        assert_int_equal(f->s.postmaster_pid, 0);
        assert_int_equal(tick(f, false, NULL, &wait_until), SUPERVISOR_ACTION_WAIT);
        assert_true(wait_until == now(f) + USEC_PER_SEC);
        clock_scripted_advance(&f->clock, USEC_PER_SEC);
        start(f, 101);
        assert_int_equal(f->s.restarts, 1);

        /* A second quick crash waits twice as long. */
        clock_scripted_advance(&f->clock, USEC_PER_SEC);
        supervisor_on_exit(&f->s, EXITED(1), false, now(f));
        assert_int_equal(tick(f, false, NULL, &wait_until), SUPERVISOR_ACTION_WAIT);
        assert_true(wait_until == now(f) + 2 * USEC_PER_SEC);
}

static void test_crash_of_a_ready_server_restarts_at_once(void **state) {
        struct fixture *f = *state;
        usec_t wait_until;

        /* Crashes seconds apart, each of a server that had come up: none
         * waits, however many (issue 19, item 8: the doubling delay of a
         * failing start turned the fourth crash in a minute into a
         * failover). */
        start(f, 100);
        for (pid_t pid = 101; pid < 106; pid++) {
                clock_scripted_advance(&f->clock, 2 * USEC_PER_SEC);
                supervisor_on_ready(&f->s, pid - 1);
                assert_true(f->s.ready);
                supervisor_on_exit(&f->s, KILLED(SIGKILL), false, now(f));
                assert_false(f->s.ready);
                assert_int_equal(f->s.phase, SUPERVISOR_BACKOFF);
                assert_string_equal(f->last_log, "restarting postgres at once (it was ready when it exited)");
                start(f, pid);
                assert_false(f->s.ready);
        }
        assert_int_equal(f->s.restarts, 5);

        /* A start that fails after that waits restart_delay, not more. */
        supervisor_on_exit(&f->s, EXITED(1), false, now(f));
        assert_int_equal(tick(f, false, NULL, &wait_until), SUPERVISOR_ACTION_WAIT);
        assert_true(wait_until == now(f) + USEC_PER_SEC);
        assert_string_equal(f->last_log, "restarting postgres in 1.0s (it exited before it was ready)");
}

static void test_failed_starts_back_off_until_one_is_ready(void **state) {
        struct fixture *f = *state;
        usec_t wait_until;
        pid_t pid = 100;

        start(f, pid);
        for (usec_t delay = USEC_PER_SEC; delay <= 8 * USEC_PER_SEC; delay *= 2) {
                supervisor_on_exit(&f->s, EXITED(1), false, now(f));
                assert_int_equal(tick(f, false, NULL, &wait_until), SUPERVISOR_ACTION_WAIT);
                assert_true(wait_until == now(f) + delay);
                clock_scripted_advance(&f->clock, delay);
                start(f, ++pid);
        }
        /* Readiness of another pid (a stale postmaster.pid) is not this
         * start's. */
        supervisor_on_ready(&f->s, 100);
        assert_false(f->s.ready);
        supervisor_on_exit(&f->s, EXITED(1), false, now(f));
        assert_int_equal(tick(f, false, NULL, &wait_until), SUPERVISOR_ACTION_WAIT);
        assert_true(wait_until == now(f) + 8 * USEC_PER_SEC);
        clock_scripted_advance(&f->clock, 8 * USEC_PER_SEC);
        start(f, 110);

        /* This one comes up, then crashes: at once, and the backoff
         * starts over. */
        supervisor_on_ready(&f->s, 110);
        supervisor_on_exit(&f->s, KILLED(SIGSEGV), false, now(f));
        start(f, 111);
        supervisor_on_exit(&f->s, EXITED(1), false, now(f));
        assert_int_equal(tick(f, false, NULL, &wait_until), SUPERVISOR_ACTION_WAIT);
        assert_true(wait_until == now(f) + USEC_PER_SEC);
}

static void test_ready_server_stopped_or_held_is_not_restarted(void **state) {
        struct fixture *f = *state;

        start(f, 100);
        supervisor_on_ready(&f->s, 100);
        supervisor_on_exit(&f->s, KILLED(SIGKILL), true, now(f));
        assert_int_equal(f->s.phase, SUPERVISOR_HELD);
        assert_int_equal(tick(f, true, NULL, NULL), SUPERVISOR_ACTION_WAIT);
        start(f, 101);
        supervisor_on_ready(&f->s, 101);
        assert_int_equal(supervisor_on_signal(&f->s, SIGTERM, now(f)), SIGINT);
        supervisor_on_exit(&f->s, EXITED(0), false, now(f));
        assert_int_equal(f->s.phase, SUPERVISOR_STOPPED);
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_EXIT);
}

static void test_exit_while_held_stays_down_until_hold_removed(void **state) {
        struct fixture *f = *state;

        start(f, 100);
        supervisor_on_exit(&f->s, EXITED(0), true, now(f));
        assert_int_equal(f->s.phase, SUPERVISOR_HELD);
        for (int i = 0; i < 5; i++) {
                clock_scripted_advance(&f->clock, 60 * USEC_PER_SEC);
                assert_int_equal(tick(f, true, NULL, NULL), SUPERVISOR_ACTION_WAIT);
        }
        /* Cleared: start at once, no backoff. */
        start(f, 102);
        assert_int_equal(f->s.restarts, 1);
}

static void test_hold_set_during_backoff_prevents_restart(void **state) {
        struct fixture *f = *state;

        start(f, 100);
        supervisor_on_exit(&f->s, KILLED(SIGKILL), false, now(f));
        clock_scripted_advance(&f->clock, 10 * USEC_PER_SEC);
        assert_int_equal(tick(f, true, NULL, NULL), SUPERVISOR_ACTION_WAIT);
        assert_int_equal(f->s.phase, SUPERVISOR_HELD);
}

static void test_sigterm_forwards_and_exits_without_restart(void **state) {
        struct fixture *f = *state;

        start(f, 100);
        /* A fast shutdown: a smart one waits for every session. */
        assert_int_equal(supervisor_on_signal(&f->s, SIGTERM, now(f)), SIGINT);
        assert_int_equal(f->s.phase, SUPERVISOR_STOPPING);
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_WAIT);
        supervisor_on_exit(&f->s, EXITED(0), false, now(f));
        assert_int_equal(f->s.phase, SUPERVISOR_STOPPED);
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_EXIT);
        assert_int_equal(f->s.exit_status, SUPERVISOR_EXIT_CLEAN);
}

static void test_stop_exit_status_follows_postgres(void **state) {
        struct fixture *f = *state;

        start(f, 100);
        assert_int_equal(supervisor_on_signal(&f->s, SIGQUIT, now(f)), SIGQUIT);
        supervisor_on_exit(&f->s, KILLED(SIGKILL), false, now(f));
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_EXIT);
        assert_int_equal(f->s.exit_status, 128 + SIGKILL);
}

static void test_every_stop_signal_is_forwarded(void **state) {
        struct fixture *f = *state;

        start(f, 100);
        assert_int_equal(supervisor_on_signal(&f->s, SIGTERM, now(f)), SIGINT);
        assert_int_equal(supervisor_on_signal(&f->s, SIGINT, now(f)), SIGINT);
        /* A later SIGQUIT makes it immediate. */
        assert_int_equal(supervisor_on_signal(&f->s, SIGQUIT, now(f)), SIGQUIT);
        assert_int_equal(f->s.stop_signal, SIGTERM);
}

static void test_stop_while_held_exits_at_once(void **state) {
        struct fixture *f = *state;

        assert_int_equal(tick(f, true, NULL, NULL), SUPERVISOR_ACTION_WAIT);
        assert_int_equal(supervisor_on_signal(&f->s, SIGINT, now(f)), 0);
        assert_int_equal(f->s.phase, SUPERVISOR_STOPPED);
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_EXIT);
        assert_int_equal(f->s.exit_status, SUPERVISOR_EXIT_CLEAN);
}

static void test_sighup_is_forwarded_only_while_running(void **state) {
        struct fixture *f = *state;

        assert_int_equal(supervisor_on_signal(&f->s, SIGHUP, now(f)), 0);
        start(f, 100);
        assert_int_equal(supervisor_on_signal(&f->s, SIGHUP, now(f)), SIGHUP);
        assert_false(f->s.stop_requested);
        assert_int_equal(f->s.phase, SUPERVISOR_RUNNING);
        assert_int_equal(supervisor_on_signal(&f->s, SIGUSR1, now(f)), 0);
}

static void test_stop_timeout_escalates_to_sigquit_once(void **state) {
        struct fixture *f = *state;
        usec_t wait_until;
        int sig;

        f->config.stop_timeout = 5 * USEC_PER_SEC;
        start(f, 100);
        assert_int_equal(supervisor_on_signal(&f->s, SIGTERM, now(f)), SIGINT);
        clock_scripted_advance(&f->clock, USEC_PER_SEC);
        assert_int_equal(tick(f, false, &sig, &wait_until), SUPERVISOR_ACTION_WAIT);
        assert_true(wait_until == now(f) + 4 * USEC_PER_SEC);
        clock_scripted_advance(&f->clock, 4 * USEC_PER_SEC);
        assert_int_equal(tick(f, false, &sig, NULL), SUPERVISOR_ACTION_SIGNAL);
        assert_int_equal(sig, SIGQUIT);
        assert_int_equal(tick(f, false, NULL, &wait_until), SUPERVISOR_ACTION_WAIT);
        assert_true(wait_until == USEC_INFINITY);
}

static void test_status_file_round_trips(void **state) {
        struct supervisor_status in = { .supervisor_pid = 1, .supervisor_start = 4242, .postmaster_pid = 57,
                                        .phase = SUPERVISOR_HELD, .restarts = 3 };
        struct supervisor_status out = {};
        _cleanup_free_ char *text = supervisor_status_format(&in);

        assert_non_null(text);
        assert_string_equal(text, "supervisor_pid=1\nsupervisor_start=4242\npostmaster_pid=57\nphase=held\nrestarts=3\n");
        assert_int_equal(supervisor_status_parse(text, &out), 0);
        assert_memory_equal(&in, &out, sizeof(in));
        assert_int_equal(supervisor_status_parse("supervisor_pid=9\nphase=running\nfuture_key=x\n", &out), 0);
        assert_int_equal(out.supervisor_pid, 9);
        assert_int_equal(out.postmaster_pid, 0);
}

static void test_status_file_garbage_is_rejected(void **state) {
        struct supervisor_status out = { .restarts = 77 };

        assert_int_equal(supervisor_status_parse("", &out), -EBADMSG);
        assert_int_equal(supervisor_status_parse("phase=running\n", &out), -EBADMSG);
        assert_int_equal(supervisor_status_parse("supervisor_pid=1\n", &out), -EBADMSG);
        assert_int_equal(supervisor_status_parse("supervisor_pid=1\nphase=dancing\n", &out), -EBADMSG);
        assert_int_equal(supervisor_status_parse("supervisor_pid=x\nphase=held\n", &out), -EBADMSG);
        assert_int_equal(supervisor_status_parse("supervisor_pid=1\nphase=held\npostmaster_pid=-3\n", &out), -EBADMSG);
        assert_int_equal(supervisor_status_parse("no equals sign\n", &out), -EBADMSG);
        assert_int_equal(out.restarts, 77);
}

static void test_supervisor_pid_file_tells_alive_from_gone(void **state) {
        char dir[] = "/tmp/test-supervisor-XXXXXX";
        _cleanup_free_ char *path = NULL, *text = NULL;
        pid_t pid = 0;

        assert_non_null(mkdtemp(dir));
        path = strdup_printf("%s/" SUPERVISOR_PID_FILE, dir);
        assert_int_equal(supervisor_pid_alive(dir, &pid), -ENOENT);
        text = strdup_printf("%d\n", (int) getpid());
        assert_int_equal(write_file_atomic(path, text, 0644), 0);
        assert_int_equal(supervisor_pid_alive(dir, &pid), 0);
        assert_int_equal(pid, getpid());
        /* Far above any pid_max: no such process. */
        assert_int_equal(write_file_atomic(path, "2147483000\n", 0644), 0);
        assert_int_equal(supervisor_pid_alive(dir, NULL), -ESRCH);
        assert_int_equal(write_file_atomic(path, "garbage\n", 0644), 0);
        assert_int_equal(supervisor_pid_alive(dir, NULL), -EBADMSG);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

/* Issue 16: a killed supervisor is a zombie until reaped, and its pid may
 * be reused; neither counts as alive. */
static void test_supervisor_pid_zombie_or_other_process_is_gone(void **state) {
        char dir[] = "/tmp/test-supervisor-XXXXXX";
        _cleanup_free_ char *path = NULL, *state_path = NULL, *text = NULL, *st = NULL;
        struct supervisor_status s = { .supervisor_pid = getpid(), .phase = SUPERVISOR_RUNNING };
        uint64_t start = 0;
        char pstate = 0;
        pid_t child;

        assert_non_null(mkdtemp(dir));
        path = strdup_printf("%s/" SUPERVISOR_PID_FILE, dir);
        state_path = strdup_printf("%s/" SUPERVISOR_STATE_FILE, dir);
        /* The state file names this process with its start time: alive. */
        assert_int_equal(supervisor_proc_stat(getpid(), &pstate, &start), 0);
        assert_true(start > 0);
        s.supervisor_start = start;
        text = strdup_printf("%d\n", (int) getpid());
        assert_int_equal(write_file_atomic(path, text, 0644), 0);
        st = supervisor_status_format(&s);
        assert_int_equal(write_file_atomic(state_path, st, 0644), 0);
        assert_int_equal(supervisor_pid_alive(dir, NULL), 0);
        /* Another start time: the pid was reused by another process. */
        free(st);
        s.supervisor_start = start + 1;
        st = supervisor_status_format(&s);
        assert_int_equal(write_file_atomic(state_path, st, 0644), 0);
        assert_int_equal(supervisor_pid_alive(dir, NULL), -ESRCH);
        assert_int_equal(unlink(state_path), 0);
        /* A zombie: dead, though kill(pid, 0) still succeeds. */
        child = fork();
        assert_true(child >= 0);
        if (child == 0)
                _exit(0);
        for (int i = 0; i < 500 && (supervisor_proc_stat(child, &pstate, NULL) < 0 || pstate != 'Z'); i++)
                usleep(10 * 1000);
        assert_int_equal(pstate, 'Z');
        assert_int_equal(kill(child, 0), 0);
        free(text);
        text = strdup_printf("%d\n", (int) child);
        assert_int_equal(write_file_atomic(path, text, 0644), 0);
        assert_int_equal(supervisor_pid_alive(dir, NULL), -ESRCH);
        assert_int_equal(waitpid(child, NULL, 0), child);
        assert_int_equal(supervisor_pid_alive(dir, NULL), -ESRCH);
        assert_int_equal(unlink(path), 0);
        assert_int_equal(rmdir(dir), 0);
}

static void assert_steps(struct fixture *f, const char *const *want, unsigned n) {
        assert_int_equal(f->n_steps, n);
        for (unsigned i = 0; i < n; i++)
                assert_string_equal(f->steps[i], want[i]);
}

static void test_lease_in_future_takes_no_action(void **state) {
        struct fixture *f = *state;
        usec_t expiry, wait_until;

        start(f, 100);
        expiry = now(f) + 5 * USEC_PER_SEC;
        supervisor_on_lease(&f->s, 0, expiry, now(f));
        assert_int_equal(tick(f, false, NULL, &wait_until), SUPERVISOR_ACTION_WAIT);
        /* The loop wakes at the expiry, not later. */
        assert_true(wait_until == expiry);
        clock_scripted_advance(&f->clock, 5 * USEC_PER_SEC - 1);
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_WAIT);
        assert_int_equal(f->n_steps, 0);
}

static void test_lease_pushed_forward_never_fences(void **state) {
        struct fixture *f = *state;

        start(f, 100);
        for (int i = 0; i < 50; i++) {
                supervisor_on_lease(&f->s, 0, now(f) + 7 * USEC_PER_SEC, now(f));
                clock_scripted_advance(&f->clock, 2 * USEC_PER_SEC);
                assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_WAIT);
        }
        assert_int_equal(f->n_steps, 0);
        assert_int_equal(f->s.fences, 0);
}

static void test_fences_when_renew_deadline_passes(void **state) {
        struct fixture *f = *state;
        static const char *const want[] = {
                "marker:/data", "hold:/run:lease-expired", "kill:100:9", "lease_remove:/run",
        };
        usec_t expiry;

        assert_int_equal(SIGQUIT, 3);
        start(f, 100);
        expiry = now(f) + 2 * USEC_PER_SEC;
        supervisor_on_lease(&f->s, 0, expiry, now(f));
        clock_scripted_advance(&f->clock, 2 * USEC_PER_SEC);
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_FENCE);
        assert_int_equal(supervisor_fence(&f->s, now(f)), 0);
        /* Safety rule 1: the marker before the hold before the stop. */
        assert_steps(f, want, ELEMENTSOF(want));
        assert_non_null(strstr(f->last_log, "lease expired at 1002.000s"));
        assert_non_null(strstr(f->last_log, "without renewal: fenced postgres (standby.signal written, held); "
                                            "sent SIGKILL to pid 100 and its processes"));
        assert_int_equal(f->s.fences, 1);

        /* Nothing more until the postmaster is gone, then it stays down. */
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_WAIT);
        supervisor_on_exit(&f->s, KILLED(SIGQUIT), true, now(f));
        assert_int_equal(f->s.phase, SUPERVISOR_HELD);
        clock_scripted_advance(&f->clock, 60 * USEC_PER_SEC);
        assert_int_equal(tick(f, true, NULL, NULL), SUPERVISOR_ACTION_WAIT);
        assert_int_equal(f->n_steps, ELEMENTSOF(want));
}

static void test_fenced_expiry_seen_again_is_not_fenced_twice(void **state) {
        struct fixture *f = *state;
        usec_t expiry;

        start(f, 100);
        expiry = now(f) + USEC_PER_SEC;
        supervisor_on_lease(&f->s, 0, expiry, now(f));
        clock_scripted_advance(&f->clock, 2 * USEC_PER_SEC);
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_FENCE);
        (void) supervisor_fence(&f->s, now(f));
        /* The file could not be removed, or a late write repeated it. */
        supervisor_on_lease(&f->s, 0, expiry, now(f));
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_WAIT);
        assert_int_equal(f->s.fences, 1);
}

static void test_removed_lease_file_takes_no_action(void **state) {
        struct fixture *f = *state;
        usec_t wait_until;

        start(f, 100);
        supervisor_on_lease(&f->s, 0, now(f) + USEC_PER_SEC, now(f));
        /* The agent stopped leading and removed it. */
        supervisor_on_lease(&f->s, -ENOENT, 0, now(f));
        clock_scripted_advance(&f->clock, 10 * USEC_PER_SEC);
        assert_int_equal(tick(f, false, NULL, &wait_until), SUPERVISOR_ACTION_WAIT);
        assert_true(wait_until == USEC_INFINITY);
        assert_int_equal(f->n_steps, 0);
}

static void test_garbage_lease_file_never_fences_and_is_logged_once(void **state) {
        struct fixture *f = *state;
        unsigned logs;

        start(f, 100);
        supervisor_on_lease(&f->s, 0, now(f) + USEC_PER_SEC, now(f));
        logs = f->logs;
        supervisor_on_lease(&f->s, -EBADMSG, 0, now(f));
        assert_int_equal(f->logs, logs + 1);
        assert_non_null(strstr(f->last_log, "ignoring /run/lease-expiry: not a monotonic time"));
        for (int i = 0; i < 10; i++) {
                clock_scripted_advance(&f->clock, USEC_PER_SEC);
                supervisor_on_lease(&f->s, -EBADMSG, 0, now(f));
                assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_WAIT);
        }
        assert_int_equal(f->logs, logs + 1);
        assert_int_equal(f->n_steps, 0);

        /* A good write ends it; garbage after that is reported again. */
        supervisor_on_lease(&f->s, 0, now(f) + USEC_PER_SEC, now(f));
        supervisor_on_lease(&f->s, -EIO, 0, now(f));
        assert_int_equal(f->logs, logs + 2);
}

static void test_lease_from_another_boot_is_ignored(void **state) {
        struct fixture *f = *state;

        start(f, 100);
        supervisor_on_lease(&f->s, 0, now(f) + SUPERVISOR_LEASE_MAX_AHEAD + 1, now(f));
        assert_false(f->s.lease_known);
        assert_non_null(strstr(f->last_log, "not from this boot"));
        supervisor_on_lease(&f->s, 0, now(f) + SUPERVISOR_LEASE_MAX_AHEAD, now(f));
        assert_true(f->s.lease_known);
}

static void test_crashed_postgres_is_not_restarted_after_lease_expired(void **state) {
        struct fixture *f = *state;
        static const char *const want[] = { "marker:/data", "hold:/run:lease-expired", "lease_remove:/run" };

        start(f, 100);
        supervisor_on_lease(&f->s, 0, now(f) + 5 * USEC_PER_SEC, now(f));
        supervisor_on_exit(&f->s, KILLED(SIGKILL), false, now(f));
        clock_scripted_advance(&f->clock, 10 * USEC_PER_SEC);
        /* Safety rule 3: not as a primary without the lease. */
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_FENCE);
        assert_int_equal(supervisor_fence(&f->s, now(f)), 0);
        assert_steps(f, want, ELEMENTSOF(want));
        assert_non_null(strstr(f->last_log, "without renewal: not starting postgres (standby.signal written, held)"));
        assert_int_equal(tick(f, true, NULL, NULL), SUPERVISOR_ACTION_WAIT);
        assert_int_equal(f->s.phase, SUPERVISOR_HELD);
}

static void test_cleared_hold_discards_expired_lease_and_starts(void **state) {
        struct fixture *f = *state;

        assert_int_equal(tick(f, true, NULL, NULL), SUPERVISOR_ACTION_WAIT);
        supervisor_on_lease(&f->s, 0, now(f) + USEC_PER_SEC, now(f));
        clock_scripted_advance(&f->clock, 5 * USEC_PER_SEC);
        /* Held, nothing runs: nothing to fence. */
        assert_int_equal(tick(f, true, NULL, NULL), SUPERVISOR_ACTION_WAIT);
        /* Whoever cleared the hold (the agent rejoining) is in charge. */
        start(f, 101);
        assert_false(f->s.lease_known);
        supervisor_on_lease(&f->s, 0, f->s.lease_spent, now(f));
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_WAIT);
        assert_int_equal(f->n_steps, 0);
}

static void test_stopping_postgres_is_fenced_when_lease_expires(void **state) {
        struct fixture *f = *state;
        usec_t wait_until;

        f->config.stop_timeout = 60 * USEC_PER_SEC;
        start(f, 100);
        supervisor_on_lease(&f->s, 0, now(f) + 2 * USEC_PER_SEC, now(f));
        assert_int_equal(supervisor_on_signal(&f->s, SIGTERM, now(f)), SIGINT);
        assert_int_equal(tick(f, false, NULL, &wait_until), SUPERVISOR_ACTION_WAIT);
        assert_true(wait_until == now(f) + 2 * USEC_PER_SEC);
        clock_scripted_advance(&f->clock, 2 * USEC_PER_SEC);
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_FENCE);
        assert_int_equal(supervisor_fence(&f->s, now(f)), 0);
        assert_int_equal(f->n_steps, 4);
        assert_string_equal(f->steps[2], "kill:100:9");
        /* Already SIGQUIT: no second escalation at the stop timeout. */
        clock_scripted_advance(&f->clock, 60 * USEC_PER_SEC);
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_WAIT);
}

static void test_fence_stops_postgres_even_when_marker_fails(void **state) {
        struct fixture *f = *state;

        f->marker_result = -EACCES;
        start(f, 100);
        supervisor_on_lease(&f->s, 0, now(f), now(f));
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_FENCE);
        assert_int_equal(supervisor_fence(&f->s, now(f)), -EACCES);
        assert_int_equal(f->n_steps, 4);
        assert_string_equal(f->steps[1], "hold:/run:lease-expired");
        assert_string_equal(f->steps[2], "kill:100:9");
        assert_non_null(strstr(f->last_log, "(standby.signal NOT written: Permission denied, held)"));
}

static void test_fence_without_data_dir_still_holds_and_stops(void **state) {
        struct fixture *f = *state;
        static const char *const want[] = { "hold:/run:lease-expired", "kill:100:9", "lease_remove:/run" };

        f->config.data_dir = NULL;
        start(f, 100);
        supervisor_on_lease(&f->s, 0, now(f), now(f));
        assert_int_equal(tick(f, false, NULL, NULL), SUPERVISOR_ACTION_FENCE);
        assert_int_equal(supervisor_fence(&f->s, now(f)), -EDESTADDRREQ);
        assert_steps(f, want, ELEMENTSOF(want));
        assert_non_null(strstr(f->last_log, "standby.signal NOT written: data directory unknown"));
}

static void test_data_dir_is_found_in_postgres_argv(void **state) {
        char *const plain[] = { "postgres", "-D", "/pg/data", "-p", "5432", NULL };
        char *const joined[] = { "postgres", "-D/pg/joined", NULL };
        char *const last_wins[] = { "postgres", "-D", "/a", "-D", "/b", NULL };
        char *const in_values[] = { "postgres", "-c", "x=-D", "-k", "-D", "-cfoo=-Dy", NULL };
        char *const bundled[] = { "postgres", "-nD", "/bundled", NULL };
        char *const none[] = { "postgres", "-p", "5432", NULL };
        char *const dangling[] = { "postgres", "-D", NULL };

        assert_string_equal(supervisor_data_dir_from_argv(plain), "/pg/data");
        assert_string_equal(supervisor_data_dir_from_argv(joined), "/pg/joined");
        assert_string_equal(supervisor_data_dir_from_argv(last_wins), "/b");
        assert_null(supervisor_data_dir_from_argv(in_values));
        assert_string_equal(supervisor_data_dir_from_argv(bundled), "/bundled");
        assert_null(supervisor_data_dir_from_argv(none));
        assert_null(supervisor_data_dir_from_argv(dangling));
        assert_null(supervisor_data_dir_from_argv(NULL));
}

static void test_lease_file_round_trips_and_rejects_garbage(void **state) {
        static const char *const garbage[] = { "", "\n", "abc\n", "-5\n", "0\n", "12 34\n", "1e6\n", "+7\n",
                                               "99999999999999999999999\n" };
        char dir[] = "/tmp/test-lease-file-XXXXXX";
        _cleanup_free_ char *path = NULL, *text = NULL;
        usec_t v = 77;

        assert_non_null(mkdtemp(dir));
        path = strdup_printf("%s/" LEASE_FILE_NAME, dir);
        assert_int_equal(lease_file_read(dir, &v), -ENOENT);
        assert_int_equal(lease_file_remove(dir), 0);
        assert_int_equal(lease_file_write(dir, 123456789012ULL), 0);
        assert_int_equal(read_full_file(path, &text, NULL), 0);
        assert_string_equal(text, "123456789012\n");
        assert_int_equal(lease_file_read(dir, &v), 0);
        assert_true(v == 123456789012ULL);
        assert_int_equal(lease_file_write(dir, 0), -EINVAL);
        assert_int_equal(lease_file_write(NULL, 5), -EINVAL);

        for (size_t i = 0; i < ELEMENTSOF(garbage); i++) {
                v = 77;
                assert_int_equal(write_file_atomic(path, garbage[i], 0644), 0);
                assert_int_equal(lease_file_read(dir, &v), -EBADMSG);
                assert_true(v == 77);
        }
        assert_int_equal(lease_file_parse(" 42 \n", &v), 0);
        assert_true(v == 42);
        assert_int_equal(lease_file_parse(NULL, &v), -EBADMSG);

        assert_int_equal(lease_file_remove(dir), 0);
        assert_int_equal(lease_file_read(dir, &v), -ENOENT);
        assert_int_equal(rmdir(dir), 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_exit_status_maps_postgres_outcomes),
                cmocka_unit_test(test_restart_delay_doubles_caps_and_resets),
                cmocka_unit_test_setup_teardown(test_crash_of_a_ready_server_restarts_at_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_failed_starts_back_off_until_one_is_ready, setup, teardown),
                cmocka_unit_test_setup_teardown(test_ready_server_stopped_or_held_is_not_restarted, setup, teardown),
                cmocka_unit_test_setup_teardown(test_first_tick_starts_postgres_unless_held, setup, teardown),
                cmocka_unit_test_setup_teardown(test_crashed_postgres_is_restarted_after_backoff, setup, teardown),
                cmocka_unit_test_setup_teardown(test_exit_while_held_stays_down_until_hold_removed, setup, teardown),
                cmocka_unit_test_setup_teardown(test_hold_set_during_backoff_prevents_restart, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sigterm_forwards_and_exits_without_restart, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stop_exit_status_follows_postgres, setup, teardown),
                cmocka_unit_test_setup_teardown(test_every_stop_signal_is_forwarded, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stop_while_held_exits_at_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_sighup_is_forwarded_only_while_running, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stop_timeout_escalates_to_sigquit_once, setup, teardown),
                cmocka_unit_test(test_status_file_round_trips),
                cmocka_unit_test(test_status_file_garbage_is_rejected),
                cmocka_unit_test(test_supervisor_pid_file_tells_alive_from_gone),
                cmocka_unit_test(test_supervisor_pid_zombie_or_other_process_is_gone),
                cmocka_unit_test_setup_teardown(test_lease_in_future_takes_no_action, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lease_pushed_forward_never_fences, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fences_when_renew_deadline_passes, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fenced_expiry_seen_again_is_not_fenced_twice, setup, teardown),
                cmocka_unit_test_setup_teardown(test_removed_lease_file_takes_no_action, setup, teardown),
                cmocka_unit_test_setup_teardown(test_garbage_lease_file_never_fences_and_is_logged_once, setup, teardown),
                cmocka_unit_test_setup_teardown(test_lease_from_another_boot_is_ignored, setup, teardown),
                cmocka_unit_test_setup_teardown(test_crashed_postgres_is_not_restarted_after_lease_expired, setup, teardown),
                cmocka_unit_test_setup_teardown(test_cleared_hold_discards_expired_lease_and_starts, setup, teardown),
                cmocka_unit_test_setup_teardown(test_stopping_postgres_is_fenced_when_lease_expires, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fence_stops_postgres_even_when_marker_fails, setup, teardown),
                cmocka_unit_test_setup_teardown(test_fence_without_data_dir_still_holds_and_stops, setup, teardown),
                cmocka_unit_test(test_data_dir_is_found_in_postgres_argv),
                cmocka_unit_test(test_lease_file_round_trips_and_rejects_garbage),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
