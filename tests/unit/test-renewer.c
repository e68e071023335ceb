/* test-renewer.c: the lease's own renewal path on a scripted clock against
 * an in-memory DCS: it renews on its cadence whatever the loop does, hands
 * the loop what it wrote, fences at the renew deadline and when another
 * member took the lease, and stops cleanly for a release. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "fake-dcs.h"
#include "lease-file.h"
#include "renewer.h"
#include "util.h"

#define SEC USEC_PER_SEC
#define MSEC USEC_PER_MSEC

struct world {
        struct clock_scripted clock;
        struct clock_ops ops;
        struct fake_dcs store;
        struct election loop, own;      /* the loop's election and the renewer's */
        struct renewer *r;
        unsigned fences;
        char run_dir[64];
};

static int count_fence(void *userdata, char **reterr_msg) {
        struct world *w = userdata;

        w->fences++;
        return 0;
}

static struct world *world_new_fencing(bool fence) {
        struct world *w = calloc(1, sizeof *w);
        struct election_options o = { .identity = "pg-0", .lease_duration = 4 * SEC, .renew_deadline = 3 * SEC, .api_timeout = 1 * SEC };

        w->clock = (struct clock_scripted) { .monotonic = 1000 * SEC, .realtime = 1764102771ULL * SEC };
        clock_scripted_init(&w->clock, &w->ops);
        fake_dcs_init(&w->store);
        assert_int_equal(election_init(&w->loop, &o, &w->ops, &w->store.dcs), 0);
        assert_int_equal(election_init(&w->own, &o, &w->ops, &w->store.dcs), 0);
        strcpy(w->run_dir, "/tmp/pglease-test-renewer-XXXXXX");
        assert_non_null(mkdtemp(w->run_dir));
        assert_int_equal(renewer_new(&(struct renewer_options) {
                                             .clock = &w->ops, .run_dir = w->run_dir, .retry_period = 1 * SEC,
                                             .fence = fence ? count_fence : NULL, .fence_userdata = w, .no_thread = true,
                                     }, &w->own, &w->r), 0);
        /* The loop takes the lease and hands it to the renewer. */
        assert_int_equal(election_observe(&w->loop, NULL), -ENOENT);
        assert_int_equal(election_acquire(&w->loop, NULL, NULL), 0);
        assert_int_equal(renewer_start(w->r, w->loop.observed, w->loop.last_renew_sent), 0);
        return w;
}

static struct world *world_new(void) {
        return world_new_fencing(true);
}

static void world_free(struct world *w) {
        renewer_free(w->r);
        election_done(&w->loop);
        election_done(&w->own);
        fake_dcs_done(&w->store);
        (void) rm_rf(w->run_dir);
        free(w);
}

static usec_t now(struct world *w) {
        return clock_now(&w->ops);
}

static void test_renews_every_retry_period_without_the_loop(void **state) {
        struct world *w = world_new();
        usec_t next = renewer_step(w->r, now(w));

        /* Not due yet: it wakes for the next renewal. */
        assert_int_equal(next, w->loop.last_renew_sent + 1 * SEC);
        for (int i = 0; i < 10; i++) {
                clock_scripted_advance(&w->clock, 1 * SEC);
                next = renewer_step(w->r, now(w));
                assert_int_equal(next, now(w) + 1 * SEC);
        }
        /* Ten seconds, more than two lease durations, without the loop. */
        assert_int_equal(renewer_renewals(w->r), 10);
        assert_int_equal(w->fences, 0);
        assert_string_equal(w->store.record->holder, "pg-0");
        {
                usec_t expiry = 0;

                assert_int_equal(lease_file_read(w->run_dir, &expiry), 0);
                assert_int_equal(expiry, now(w) + 3 * SEC);
        }
        world_free(w);
}

static void test_loop_sees_the_renewals_and_is_not_lost(void **state) {
        struct world *w = world_new();

        clock_scripted_advance(&w->clock, 1 * SEC);
        (void) renewer_step(w->r, now(w));
        clock_scripted_advance(&w->clock, 2500 * MSEC);
        /* Without the sync the loop would think its deadline passed. */
        assert_true(election_lost(&w->loop, now(w)));
        renewer_sync(w->r, &w->loop, 1 * SEC);
        assert_false(election_lost(&w->loop, now(w)));
        assert_true(w->loop.leader);
        assert_string_equal(w->loop.observed->version, w->store.record->version);
        world_free(w);
}

static void test_fences_at_the_renew_deadline_when_the_api_fails(void **state) {
        struct world *w = world_new();
        usec_t start = now(w), next = 0;

        w->store.fail_with = -ETIMEDOUT;
        while (now(w) < start + 3 * SEC && w->fences == 0) {
                clock_scripted_advance(&w->clock, 200 * MSEC);
                next = renewer_step(w->r, now(w));
        }
        /* Still within the deadline: retried every 200 ms, not fenced. */
        assert_int_equal(w->fences, 0);
        assert_true(next <= start + 3 * SEC + 1 * MSEC);
        clock_scripted_advance(&w->clock, next - now(w));
        assert_int_equal(renewer_step(w->r, now(w)), USEC_INFINITY);
        assert_int_equal(w->fences, 1);
        assert_int_equal(lease_file_read(w->run_dir, &next), -ENOENT);
        /* The loop learns it at its next tick (safety rule 1 in decide). */
        renewer_sync(w->r, &w->loop, 1 * SEC);
        assert_true(election_lost(&w->loop, now(w)));
        world_free(w);
}

static void test_failsafe_answers_move_the_fence_and_the_lease_file(void **state) {
        struct world *w = world_new();
        usec_t start = now(w), expiry = 0;

        w->store.fail_with = -ETIMEDOUT;
        /* The members' answers cover the leader until start + 5 s. */
        renewer_failsafe(w->r, start + 5 * SEC);
        (void) renewer_step(w->r, now(w));
        assert_int_equal(lease_file_read(w->run_dir, &expiry), 0);
        assert_int_equal(expiry, start + 5 * SEC);
        /* An older value (a tick that read older answers) changes nothing. */
        renewer_failsafe(w->r, start + 4 * SEC);
        while (now(w) < start + 5 * SEC) {
                clock_scripted_advance(&w->clock, 200 * MSEC);
                (void) renewer_step(w->r, now(w));
        }
        /* Past the renew deadline (start + 3 s), not past the answers. */
        assert_int_equal(w->fences, 0);
        clock_scripted_advance(&w->clock, 2 * MSEC);
        assert_int_equal(renewer_step(w->r, now(w)), USEC_INFINITY);
        assert_int_equal(w->fences, 1);
        assert_int_equal(lease_file_read(w->run_dir, &expiry), -ENOENT);
        world_free(w);
}

static void test_failsafe_ends_when_the_api_is_back(void **state) {
        struct world *w = world_new();
        usec_t start = now(w);

        w->store.fail_with = -ETIMEDOUT;
        renewer_failsafe(w->r, start + 6 * SEC);
        while (now(w) < start + 4 * SEC) {
                clock_scripted_advance(&w->clock, 200 * MSEC);
                (void) renewer_step(w->r, now(w));
        }
        /* The API server answers again: the renewal, sent past the renew
         * deadline but inside the answers' time, goes through. */
        w->store.fail_with = 0;
        clock_scripted_advance(&w->clock, 200 * MSEC);
        (void) renewer_step(w->r, now(w));
        assert_int_equal(w->fences, 0);
        assert_true(renewer_renewals(w->r) > 0);
        assert_true(w->own.last_renew_sent > start + 4 * SEC);
        world_free(w);
}

static void test_fences_when_another_member_took_the_lease(void **state) {
        struct world *w = world_new();

        fake_dcs_write_as(&w->store, "pg-1", 4 * SEC);
        clock_scripted_advance(&w->clock, 1 * SEC);
        assert_int_equal(renewer_step(w->r, now(w)), USEC_INFINITY);
        assert_int_equal(w->fences, 1);
        renewer_sync(w->r, &w->loop, 1 * SEC);
        assert_false(w->loop.leader);
        assert_string_equal(w->loop.observed->holder, "pg-1");
        world_free(w);
}

/* --election-only: no PostgreSQL to fence; the loss is the same loss. */
static void test_without_a_fence_the_deadline_still_ends_the_lease(void **state) {
        struct world *w = world_new_fencing(false);
        usec_t start = now(w), expiry = 0;

        w->store.fail_with = -ETIMEDOUT;
        while (now(w) <= start + 3 * SEC) {
                clock_scripted_advance(&w->clock, 200 * MSEC);
                (void) renewer_step(w->r, now(w));
        }
        assert_int_equal(renewer_step(w->r, now(w)), USEC_INFINITY);
        assert_int_equal(w->fences, 0);
        assert_int_equal(lease_file_read(w->run_dir, &expiry), -ENOENT);
        w->store.fail_with = 0;
        clock_scripted_advance(&w->clock, 1 * SEC);
        assert_int_equal(renewer_step(w->r, now(w)), USEC_INFINITY);
        assert_int_equal(renewer_renewals(w->r), 0);
        renewer_sync(w->r, &w->loop, 1 * SEC);
        assert_true(election_lost(&w->loop, now(w)));
        world_free(w);
}

static void test_annotation_written_by_others_is_kept(void **state) {
        struct world *w = world_new();

        /* agentctl writes a switchover request: a conflict, re-read, renew. */
        w->store.record->switchover = strdup("pg-1");
        fake_dcs_touch(&w->store);
        clock_scripted_advance(&w->clock, 1 * SEC);
        (void) renewer_step(w->r, now(w));
        assert_int_equal(w->fences, 0);
        assert_string_equal(w->store.record->holder, "pg-0");
        assert_string_equal(w->store.record->switchover, "pg-1");
        renewer_sync(w->r, &w->loop, 1 * SEC);
        assert_string_equal(w->loop.observed->switchover, "pg-1");
        world_free(w);
}

static int set_switchover(struct dcs_leader *l, void *userdata) {
        free(l->switchover);
        l->switchover = strdup(userdata);
        return l->switchover ? 0 : -ENOMEM;
}

static void test_loop_keeps_its_own_newer_write_over_an_older_renewal(void **state) {
        struct world *w = world_new();

        /* The renewer renews; then, before the loop's next tick, the loop
         * itself writes a switchover request (agentctl via the socket),
         * as write_annotations() does: a conflict, re-read, write. */
        clock_scripted_advance(&w->clock, 1 * SEC);
        (void) renewer_step(w->r, now(w));
        clock_scripted_advance(&w->clock, 10 * MSEC);
        assert_int_equal(election_update_annotations(&w->loop, set_switchover, "pg-1", NULL), -ESTALE);
        assert_int_equal(election_update_annotations(&w->loop, set_switchover, "pg-1", NULL), 0);
        /* The renewer's last record predates it: the loop keeps its own. */
        renewer_sync(w->r, &w->loop, 1 * SEC);
        assert_non_null(w->loop.observed->switchover);
        assert_string_equal(w->loop.observed->switchover, "pg-1");
        /* The next renewal carries it (conflict, re-read, renew). */
        clock_scripted_advance(&w->clock, 1 * SEC);
        (void) renewer_step(w->r, now(w));
        renewer_sync(w->r, &w->loop, 1 * SEC);
        assert_string_equal(w->loop.observed->switchover, "pg-1");
        assert_string_equal(w->loop.observed->version, w->store.record->version);
        world_free(w);
}

static void test_renewal_answer_stamped_after_a_newer_loop_write_is_not_adopted(void **state) {
        struct world *w = world_new();
        usec_t t;

        /* The race of the resilience run (stop 23): the renewer's answer
         * is taken (record_at) no earlier than the loop's own write on top
         * of it, here at the same instant, a scripted clock standing still.
         * By time the old record won, and the loop then read "not paused"
         * and answered agentctl resume with "nothing to resume". */
        clock_scripted_advance(&w->clock, 1 * SEC);
        t = now(w);
        (void) renewer_step(w->r, t);
        assert_int_equal(election_update_annotations(&w->loop, set_switchover, "pg-1", NULL), -ESTALE);
        assert_int_equal(election_update_annotations(&w->loop, set_switchover, "pg-1", NULL), 0);
        assert_int_equal(now(w), t);
        renewer_sync(w->r, &w->loop, 1 * SEC);
        assert_non_null(w->loop.observed->switchover);
        assert_string_equal(w->loop.observed->version, w->store.record->version);
        world_free(w);
}

static void test_sync_publication_is_written_before_publish_returns(void **state) {
        struct world *w = world_new();
        char *names[] = { "pg-1", NULL };
        struct election_publish pub = { .optime_timeline = 1, .optime_lsn = 0x3000060, .sync = names, .set_sync = true };

        assert_int_equal(renewer_publish(w->r, &pub, true, NULL), 0);
        assert_non_null(w->store.record->sync);
        assert_string_equal(w->store.record->sync[0], "pg-1");
        assert_int_equal(w->store.record->optime_lsn, 0x3000060);
        world_free(w);
}

static void test_stop_ends_renewals_without_fencing(void **state) {
        struct world *w = world_new();

        renewer_stop(w->r, NULL);
        clock_scripted_advance(&w->clock, 10 * SEC);
        assert_int_equal(renewer_step(w->r, now(w)), USEC_INFINITY);
        assert_int_equal(renewer_renewals(w->r), 0);
        assert_int_equal(w->fences, 0);
        world_free(w);
}

static void test_release_after_stop_uses_the_last_renewals_version(void **state) {
        struct world *w = world_new();

        /* Renewals the loop has not synced yet (a hand-over's fast stop
         * takes seconds): the release must not meet a conflict. */
        for (int i = 0; i < 3; i++) {
                clock_scripted_advance(&w->clock, 1 * SEC);
                (void) renewer_step(w->r, now(w));
        }
        renewer_stop(w->r, &w->loop);
        assert_int_equal(election_release(&w->loop, "pg-1", 0x3000060, NULL), 0);
        assert_string_equal(w->store.record->holder, "");
        assert_string_equal(w->store.record->successor, "pg-1");
        world_free(w);
}

static void test_wedged_loop_stops_the_renewals(void **state) {
        struct world *w = world_new();
        uint64_t n;

        for (usec_t t = 0; t < 60 * SEC + RENEWER_LOOP_SILENCE_LIMIT + 10 * SEC; t += 1 * SEC) {
                clock_scripted_advance(&w->clock, 1 * SEC);
                if (t < 60 * SEC)
                        renewer_sync(w->r, &w->loop, 1 * SEC);
                (void) renewer_step(w->r, now(w));
        }
        n = renewer_renewals(w->r);
        /* Renewed while the loop spoke and up to the silence limit, then
         * let the lease run out and fenced. */
        assert_true(n >= 170 && n <= 185);
        assert_int_equal(w->fences, 1);
        world_free(w);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_renews_every_retry_period_without_the_loop),
                cmocka_unit_test(test_loop_sees_the_renewals_and_is_not_lost),
                cmocka_unit_test(test_fences_at_the_renew_deadline_when_the_api_fails),
                cmocka_unit_test(test_failsafe_answers_move_the_fence_and_the_lease_file),
                cmocka_unit_test(test_failsafe_ends_when_the_api_is_back),
                cmocka_unit_test(test_fences_when_another_member_took_the_lease),
                cmocka_unit_test(test_without_a_fence_the_deadline_still_ends_the_lease),
                cmocka_unit_test(test_annotation_written_by_others_is_kept),
                cmocka_unit_test(test_loop_keeps_its_own_newer_write_over_an_older_renewal),
                cmocka_unit_test(test_renewal_answer_stamped_after_a_newer_loop_write_is_not_adopted),
                cmocka_unit_test(test_sync_publication_is_written_before_publish_returns),
                cmocka_unit_test(test_stop_ends_renewals_without_fencing),
                cmocka_unit_test(test_release_after_stop_uses_the_last_renewals_version),
                cmocka_unit_test(test_wedged_loop_stops_the_renewals),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
