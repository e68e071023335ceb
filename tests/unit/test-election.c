/* test-election.c: the lease rules on a scripted clock against an in-memory
 * DCS with the API server's write semantics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "election.h"
#include "fake-dcs.h"
#include "util.h"

#define SEC USEC_PER_SEC

struct world {
        struct clock_scripted clock;
        struct clock_ops ops;
        struct fake_dcs store;
};

static struct world *world_new(void) {
        struct world *w = calloc(1, sizeof *w);

        w->clock = (struct clock_scripted) { .monotonic = 1000 * SEC, .realtime = 1764102771ULL * SEC };
        clock_scripted_init(&w->clock, &w->ops);
        fake_dcs_init(&w->store);
        return w;
}

static void world_free(struct world *w) {
        fake_dcs_done(&w->store);
        free(w);
}

static void member(struct world *w, struct election *e, const char *name) {
        struct election_options o = { .identity = name, .lease_duration = 10 * SEC, .renew_deadline = 7 * SEC, .api_timeout = 2 * SEC };

        assert_int_equal(election_init(e, &o, &w->ops, &w->store.dcs), 0);
}

static void tick(struct world *w, usec_t by) {
        clock_scripted_advance(&w->clock, by);
}

static void test_first_member_creates_the_lease(void **state) {
        struct world *w = world_new();
        struct election a;

        member(w, &a, "pg-0");
        assert_int_equal(election_observe(&a, NULL), -ENOENT);
        assert_true(election_may_acquire(&a, clock_now(&w->ops)));
        assert_int_equal(election_acquire(&a, NULL, NULL), 0);
        assert_true(a.leader);
        assert_string_equal(w->store.record->holder, "pg-0");
        assert_int_equal(w->store.record->transitions, 0);
        assert_int_equal(w->store.record->lease_duration, 10 * SEC);
        assert_int_equal(w->store.record->acquire_time, w->clock.realtime);
        election_done(&a);
        world_free(w);
}

static void test_follower_waits_a_full_lease_of_unchanged_record(void **state) {
        struct world *w = world_new();
        struct election b;

        fake_dcs_write_as(&w->store, "pg-0", 10 * SEC);
        w->store.record->renew_time = 1; /* an ancient renewTime must not matter */
        member(w, &b, "pg-1");
        assert_int_equal(election_observe(&b, NULL), 0);
        assert_false(election_may_acquire(&b, clock_now(&w->ops)));
        assert_int_equal(election_acquire(&b, NULL, NULL), -EBUSY);
        tick(w, 9 * SEC);
        assert_int_equal(election_observe(&b, NULL), 0);
        assert_false(election_may_acquire(&b, clock_now(&w->ops)));
        tick(w, 1 * SEC);
        assert_int_equal(election_observe(&b, NULL), 0);
        assert_true(election_may_acquire(&b, clock_now(&w->ops)));
        assert_int_equal(election_acquire(&b, NULL, NULL), 0);
        assert_string_equal(w->store.record->holder, "pg-1");
        assert_int_equal(w->store.record->transitions, 1);
        election_done(&b);
        world_free(w);
}

static void test_any_change_of_the_record_restarts_expiry(void **state) {
        struct world *w = world_new();
        struct election b;

        fake_dcs_write_as(&w->store, "pg-0", 10 * SEC);
        member(w, &b, "pg-1");
        assert_int_equal(election_observe(&b, NULL), 0);
        for (int i = 0; i < 10; i++) {
                tick(w, 8 * SEC);
                fake_dcs_touch(&w->store);
                assert_int_equal(election_observe(&b, NULL), 0);
                assert_false(election_is_free(&b, clock_now(&w->ops)));
        }
        election_done(&b);
        world_free(w);
}

static void test_empty_holder_is_taken_at_once(void **state) {
        struct world *w = world_new();
        struct election b;

        fake_dcs_write_as(&w->store, "", 1 * SEC);
        member(w, &b, "pg-1");
        assert_int_equal(election_observe(&b, NULL), 0);
        assert_true(election_may_acquire(&b, clock_now(&w->ops)));
        assert_int_equal(election_acquire(&b, NULL, NULL), 0);
        election_done(&b);
        world_free(w);
}

static void test_release_lets_only_the_successor_in_until_a_lease_passed(void **state) {
        struct world *w = world_new();
        struct election a, b, c;

        member(w, &a, "pg-0");
        member(w, &b, "pg-1");
        member(w, &c, "pg-2");
        election_observe(&a, NULL);
        assert_int_equal(election_acquire(&a, NULL, NULL), 0);
        assert_int_equal(election_release(&a, "pg-2", 0x3000060, NULL), 0);
        assert_false(a.leader);
        assert_string_equal(w->store.record->holder, "");
        assert_int_equal(w->store.record->lease_duration, 1 * SEC);
        assert_string_equal(w->store.record->successor, "pg-2");
        assert_int_equal(w->store.record->successor_lsn, 0x3000060);

        assert_int_equal(election_observe(&a, NULL), 0);
        assert_int_equal(election_observe(&b, NULL), 0);
        assert_int_equal(election_observe(&c, NULL), 0);
        tick(w, 5 * SEC);
        assert_false(election_may_acquire(&a, clock_now(&w->ops)));
        assert_false(election_may_acquire(&b, clock_now(&w->ops)));
        assert_true(election_may_acquire(&c, clock_now(&w->ops)));
        tick(w, 5 * SEC);
        assert_true(election_may_acquire(&b, clock_now(&w->ops)));

        assert_int_equal(election_acquire(&c, NULL, NULL), 0);
        assert_string_equal(w->store.record->holder, "pg-2");
        assert_null(w->store.record->successor);
        assert_int_equal(w->store.record->transitions, 1);
        election_done(&a);
        election_done(&b);
        election_done(&c);
        world_free(w);
}

static void test_race_has_one_winner_and_the_loser_rereads(void **state) {
        struct world *w = world_new();
        struct election b, c;

        fake_dcs_write_as(&w->store, "", 1 * SEC);
        member(w, &b, "pg-1");
        member(w, &c, "pg-2");
        election_observe(&b, NULL);
        election_observe(&c, NULL);
        assert_int_equal(election_acquire(&b, NULL, NULL), 0);
        assert_int_equal(election_acquire(&c, NULL, NULL), -ESTALE);
        assert_false(c.leader);
        assert_string_equal(c.observed->holder, "pg-1");
        assert_false(election_may_acquire(&c, clock_now(&w->ops)));
        election_done(&b);
        election_done(&c);
        world_free(w);
}

static void test_create_race_is_a_conflict(void **state) {
        struct world *w = world_new();
        struct election b, c;

        member(w, &b, "pg-1");
        member(w, &c, "pg-2");
        assert_int_equal(election_observe(&b, NULL), -ENOENT);
        assert_int_equal(election_observe(&c, NULL), -ENOENT);
        assert_int_equal(election_acquire(&b, NULL, NULL), 0);
        assert_int_equal(election_acquire(&c, NULL, NULL), -ESTALE);
        assert_string_equal(c.observed->holder, "pg-1");
        election_done(&b);
        election_done(&c);
        world_free(w);
}

static void test_holder_reports_loss_strictly_before_anyone_may_acquire(void **state) {
        struct world *w = world_new();
        struct election a, b;
        bool lost_seen = false;

        member(w, &a, "pg-0");
        member(w, &b, "pg-1");
        election_observe(&a, NULL);
        assert_int_equal(election_acquire(&a, NULL, NULL), 0);
        assert_int_equal(election_observe(&b, NULL), 0);
        /* The API refuses the holder from now on; the follower still reads. */
        for (int i = 0; i < 40; i++) {
                tick(w, SEC / 4);
                w->store.fail_with = -ECONNREFUSED;
                (void) election_renew(&a, NULL, NULL);
                w->store.fail_with = 0;
                if (election_lost(&a, clock_now(&w->ops)))
                        lost_seen = true;
                election_observe(&b, NULL);
                if (election_may_acquire(&b, clock_now(&w->ops)))
                        assert_true(lost_seen);
        }
        assert_true(lost_seen);
        assert_true(election_may_acquire(&b, clock_now(&w->ops)));
        election_done(&a);
        election_done(&b);
        world_free(w);
}

static void test_loss_is_judged_from_the_send_time_of_the_last_renewal(void **state) {
        struct world *w = world_new();
        struct election a;
        usec_t sent;

        member(w, &a, "pg-0");
        election_observe(&a, NULL);
        assert_int_equal(election_acquire(&a, NULL, NULL), 0);
        tick(w, 3 * SEC);
        sent = clock_now(&w->ops);
        assert_int_equal(election_renew(&a, NULL, NULL), 0);
        assert_int_equal(a.last_renew_sent, sent);
        tick(w, 7 * SEC);
        assert_false(election_lost(&a, clock_now(&w->ops)));
        tick(w, 1);
        assert_true(election_lost(&a, clock_now(&w->ops)));
        /* Past the deadline a renewal is not even attempted. */
        unsigned writes = w->store.writes;
        assert_int_equal(election_renew(&a, NULL, NULL), -ETIMEDOUT);
        assert_int_equal(w->store.writes, writes);
        election_done(&a);
        world_free(w);
}

static void test_stalled_holder_is_lost_at_once_after_a_clock_jump(void **state) {
        struct world *w = world_new();
        struct election a;

        member(w, &a, "pg-0");
        election_observe(&a, NULL);
        assert_int_equal(election_acquire(&a, NULL, NULL), 0);
        tick(w, 30 * SEC);
        assert_true(election_lost(&a, clock_now(&w->ops)));
        election_done(&a);
        world_free(w);
}

static void test_stalled_follower_rereads_before_judging(void **state) {
        struct world *w = world_new();
        struct election b;

        fake_dcs_write_as(&w->store, "pg-0", 10 * SEC);
        member(w, &b, "pg-1");
        election_observe(&b, NULL);
        tick(w, 60 * SEC);
        fake_dcs_touch(&w->store); /* the holder renewed while we slept */
        assert_int_equal(election_observe(&b, NULL), 0);
        assert_false(election_may_acquire(&b, clock_now(&w->ops)));
        election_done(&b);
        world_free(w);
}

static void test_a_time_before_the_read_is_not_expiry(void **state) {
        struct world *w = world_new();
        struct election b;
        usec_t before = clock_now(&w->ops);

        fake_dcs_write_as(&w->store, "pg-0", 10 * SEC);
        member(w, &b, "pg-1");
        tick(w, 1 * SEC);
        assert_int_equal(election_observe(&b, NULL), 0);
        assert_false(election_is_free(&b, before));
        assert_false(election_may_acquire(&b, before));
        election_done(&b);
        world_free(w);
}

static void mark_paused(struct dcs_leader *l, void *userdata) {
        l->paused = true;
}

static void test_renewal_survives_an_annotation_written_by_someone_else(void **state) {
        struct world *w = world_new();
        struct election a, ctl;

        member(w, &a, "pg-0");
        member(w, &ctl, "agentctl");
        election_observe(&a, NULL);
        assert_int_equal(election_acquire(&a, NULL, NULL), 0);
        election_observe(&ctl, NULL);
        assert_int_equal(election_update_annotations(&ctl, mark_paused, NULL, NULL), 0);
        tick(w, 2 * SEC);
        assert_int_equal(election_renew(&a, NULL, NULL), 0);
        assert_true(a.leader);
        assert_true(w->store.record->paused);
        assert_string_equal(w->store.record->holder, "pg-0");
        election_done(&a);
        election_done(&ctl);
        world_free(w);
}

static void test_renewal_after_takeover_reports_loss(void **state) {
        struct world *w = world_new();
        struct election a;

        member(w, &a, "pg-0");
        election_observe(&a, NULL);
        assert_int_equal(election_acquire(&a, NULL, NULL), 0);
        fake_dcs_write_as(&w->store, "pg-1", 10 * SEC);
        tick(w, 2 * SEC);
        assert_int_equal(election_renew(&a, NULL, NULL), -ESTALE);
        assert_false(a.leader);
        assert_false(election_lost(&a, clock_now(&w->ops)));
        election_done(&a);
        world_free(w);
}

static void test_renewal_publishes_optime_and_sync(void **state) {
        struct world *w = world_new();
        struct election a;
        char *sync[] = { "pg-1", NULL };
        struct election_publish pub = { .optime_timeline = 3, .optime_lsn = 0x5000000, .sync = sync, .set_sync = true };

        member(w, &a, "pg-0");
        election_observe(&a, NULL);
        assert_int_equal(election_acquire(&a, NULL, NULL), 0);
        assert_int_equal(election_renew(&a, &pub, NULL), 0);
        assert_int_equal(w->store.record->optime_timeline, 3);
        assert_int_equal(w->store.record->optime_lsn, 0x5000000);
        assert_string_equal(w->store.record->sync[0], "pg-1");
        assert_null(w->store.record->sync[1]);
        election_done(&a);
        world_free(w);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_first_member_creates_the_lease),
                cmocka_unit_test(test_follower_waits_a_full_lease_of_unchanged_record),
                cmocka_unit_test(test_any_change_of_the_record_restarts_expiry),
                cmocka_unit_test(test_empty_holder_is_taken_at_once),
                cmocka_unit_test(test_release_lets_only_the_successor_in_until_a_lease_passed),
                cmocka_unit_test(test_race_has_one_winner_and_the_loser_rereads),
                cmocka_unit_test(test_create_race_is_a_conflict),
                cmocka_unit_test(test_holder_reports_loss_strictly_before_anyone_may_acquire),
                cmocka_unit_test(test_loss_is_judged_from_the_send_time_of_the_last_renewal),
                cmocka_unit_test(test_stalled_holder_is_lost_at_once_after_a_clock_jump),
                cmocka_unit_test(test_stalled_follower_rereads_before_judging),
                cmocka_unit_test(test_a_time_before_the_read_is_not_expiry),
                cmocka_unit_test(test_renewal_survives_an_annotation_written_by_someone_else),
                cmocka_unit_test(test_renewal_after_takeover_reports_loss),
                cmocka_unit_test(test_renewal_publishes_optime_and_sync),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
