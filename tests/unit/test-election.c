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
        /* kept until pg-2 runs as the primary (docs/handover.pml) */
        assert_string_equal(w->store.record->successor, "pg-2");
        assert_int_equal(w->store.record->successor_lsn, 0x3000060);
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

static int mark_paused(struct dcs_leader *l, void *userdata) {
        l->paused = true;
        return 0;
}

static int refuse_change(struct dcs_leader *l, void *userdata) {
        l->paused = true;
        return -EBUSY;
}

/* The successor's acquisition keeps the final LSN on the lease (it must
 * not promote before replaying it, even after a restart); its first
 * renewal as a running primary clears it. */
static void test_final_lsn_survives_the_acquisition_until_promoted(void **state) {
        struct world *w = world_new();
        struct election a, b;
        struct election_publish promoted = { .optime_timeline = 2, .optime_lsn = 0x3000100, .clear_handover = true };

        member(w, &a, "pg-0");
        member(w, &b, "pg-1");
        election_observe(&a, NULL);
        assert_int_equal(election_acquire(&a, NULL, NULL), 0);
        w->store.record->switchover = strdup("pg-1");
        election_observe(&a, NULL);
        assert_int_equal(election_release(&a, "pg-1", 0x3000060, NULL), 0);
        assert_int_equal(election_observe(&b, NULL), 0);
        assert_int_equal(election_acquire(&b, NULL, NULL), 0);
        assert_string_equal(w->store.record->holder, "pg-1");
        assert_string_equal(w->store.record->successor, "pg-1");
        assert_int_equal(w->store.record->successor_lsn, 0x3000060);
        assert_null(w->store.record->switchover);
        tick(w, 2 * SEC);
        assert_int_equal(election_renew(&b, NULL, NULL), 0);
        assert_int_equal(w->store.record->successor_lsn, 0x3000060);
        assert_int_equal(election_renew(&b, &promoted, NULL), 0);
        assert_null(w->store.record->successor);
        assert_int_equal(w->store.record->successor_lsn, 0);
        election_done(&a);
        election_done(&b);
        world_free(w);
}

/* A 409 on release (an operator wrote an annotation meanwhile) is
 * answered by re-reading and releasing again: the hand-over stands. */
static void test_release_survives_a_concurrent_annotation_write(void **state) {
        struct world *w = world_new();
        struct election a, ctl;

        member(w, &a, "pg-0");
        member(w, &ctl, "agentctl");
        election_observe(&a, NULL);
        assert_int_equal(election_acquire(&a, NULL, NULL), 0);
        election_observe(&ctl, NULL);
        assert_int_equal(election_update_annotations(&ctl, mark_paused, NULL, NULL), 0);
        assert_int_equal(election_release(&a, "pg-2", 0x3000060, NULL), 0);
        assert_false(a.leader);
        assert_string_equal(w->store.record->holder, "");
        assert_string_equal(w->store.record->successor, "pg-2");
        assert_int_equal(w->store.record->successor_lsn, 0x3000060);
        assert_true(w->store.record->paused);
        election_done(&a);
        election_done(&ctl);
        world_free(w);
}

/* A release is only written by the holder: once another member holds
 * the lease, releasing it says so and writes nothing. */
static void test_release_by_a_former_holder_writes_nothing(void **state) {
        struct world *w = world_new();
        struct election a;

        member(w, &a, "pg-0");
        fake_dcs_write_as(&w->store, "pg-1", 10 * SEC);
        election_observe(&a, NULL);
        assert_int_equal(election_release(&a, "pg-2", 0x3000060, NULL), -EPERM);
        assert_string_equal(w->store.record->holder, "pg-1");
        election_done(&a);
        world_free(w);
}

/* The named successor never comes: after one lease duration of the
 * released record, any other member may take it (issue 14, item 3). */
static void test_others_may_take_a_release_the_successor_never_took(void **state) {
        struct world *w = world_new();
        struct election a, c;

        member(w, &a, "pg-0");
        member(w, &c, "pg-2");
        election_observe(&a, NULL);
        assert_int_equal(election_acquire(&a, NULL, NULL), 0);
        assert_int_equal(election_release(&a, "pg-1", 0x3000060, NULL), 0);
        assert_int_equal(election_observe(&c, NULL), 0);
        tick(w, 9 * SEC);
        assert_int_equal(election_observe(&c, NULL), 0);
        assert_int_equal(election_acquire(&c, NULL, NULL), -EBUSY);
        tick(w, 1 * SEC);
        assert_int_equal(election_observe(&c, NULL), 0);
        assert_int_equal(election_acquire(&c, NULL, NULL), 0);
        assert_string_equal(w->store.record->holder, "pg-2");
        /* the final LSN stays: pg-2 too must have replayed it */
        assert_int_equal(w->store.record->successor_lsn, 0x3000060);
        election_done(&a);
        election_done(&c);
        world_free(w);
}

static void test_refused_annotation_change_writes_nothing(void **state) {
        struct world *w = world_new();
        struct election ctl;
        _cleanup_free_ char *version = NULL;

        fake_dcs_write_as(&w->store, "pg-0", 10 * SEC);
        member(w, &ctl, "agentctl");
        election_observe(&ctl, NULL);
        version = strdup(w->store.record->version);
        assert_int_equal(election_update_annotations(&ctl, refuse_change, NULL, NULL), -EBUSY);
        assert_string_equal(w->store.record->version, version);
        assert_false(w->store.record->paused);
        election_done(&ctl);
        world_free(w);
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

static void test_conflict_with_an_unreadable_record_keeps_leading_until_the_deadline(void **state) {
        struct world *w = world_new();
        struct election a;

        member(w, &a, "pg-0");
        election_observe(&a, NULL);
        assert_int_equal(election_acquire(&a, NULL, NULL), 0);
        /* A write lands that we cannot read back (a server working off
         * its queue after an outage): not proof that anyone took it. */
        fake_dcs_touch(&w->store);
        w->store.fail_gets_with = -ETIMEDOUT;
        tick(w, 2 * SEC);
        assert_int_equal(election_renew(&a, NULL, NULL), -ETIMEDOUT);
        assert_true(a.leader);
        /* Readable again: it is ours, renewed on the new version. */
        w->store.fail_gets_with = 0;
        assert_int_equal(election_renew(&a, NULL, NULL), 0);
        assert_true(a.leader);
        election_done(&a);
        world_free(w);
}

/* Failsafe mode after a long outage: the renew deadline is long past and
 * the members' answers keep the leader the primary. The server, back,
 * answers the renewal 409 (an earlier renewal of ours that timed out was
 * applied); the read after it must get a whole api_timeout, bounded by the
 * answers, not the 1 ms left of a renew deadline that passed long ago. */
static void test_failsafe_leader_reads_back_a_conflict_within_its_answers(void **state) {
        struct world *w = world_new();
        struct election a;

        member(w, &a, "pg-0");
        election_observe(&a, NULL);
        assert_int_equal(election_acquire(&a, NULL, NULL), 0);
        tick(w, 300 * SEC);
        a.failsafe_until = clock_now(&w->ops) + 3 * SEC;
        fake_dcs_touch(&w->store);
        assert_int_equal(election_renew(&a, NULL, NULL), 0);
        assert_true(a.leader);
        assert_int_equal(w->store.last_get_deadline, clock_now(&w->ops) + a.api_timeout);
        /* Answers that end sooner bound the read. */
        tick(w, 2 * SEC);
        a.last_renew_sent = 0;
        a.failsafe_until = clock_now(&w->ops) + SEC / 2;
        fake_dcs_touch(&w->store);
        assert_int_equal(election_renew(&a, NULL, NULL), 0);
        assert_int_equal(w->store.last_get_deadline, a.failsafe_until);
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

/* Issue 17: holder at 10 s / 7 s renews at t=0; at t=0.5 a reload brings
 * 20 s / 15 s; from t=0.6 every renewal fails. The others judge by the
 * record (10 s), so the holder must consider the lease lost by 7 s, not 15. */
static void test_reload_raising_timings_waits_for_a_renewal_that_published_them(void **state) {
        struct world *w = world_new();
        struct election a, b;

        member(w, &a, "pg-0");
        member(w, &b, "pg-1");
        assert_int_equal(election_observe(&a, NULL), -ENOENT);
        assert_int_equal(election_acquire(&a, NULL, NULL), 0);
        assert_int_equal(election_observe(&b, NULL), 0);
        tick(w, 500 * USEC_PER_MSEC);
        a.lease_duration = 20 * SEC;
        a.renew_deadline = 15 * SEC;
        assert_int_equal(election_renew_deadline(&a), 7 * SEC);
        tick(w, 100 * USEC_PER_MSEC);
        w->store.fail_with = -ETIMEDOUT;
        for (usec_t t = 600 * USEC_PER_MSEC; t < 7 * SEC; t += 500 * USEC_PER_MSEC) {
                assert_false(election_lost(&a, clock_now(&w->ops)));
                assert_true(election_renew(&a, NULL, NULL) < 0);
                tick(w, 500 * USEC_PER_MSEC);
        }
        tick(w, 100 * USEC_PER_MSEC);
        assert_true(election_lost(&a, clock_now(&w->ops)));
        /* And the follower can take it only later, at 10 s. */
        w->store.fail_with = 0;
        assert_int_equal(election_observe(&b, NULL), 0);
        assert_false(election_may_acquire(&b, clock_now(&w->ops)));
        election_done(&a);
        election_done(&b);
        world_free(w);
}

/* Once a renewal has published 20 s, the longer deadline is the holder's;
 * a reload that lowers it applies at once. */
static void test_raised_timings_apply_after_a_renewal_lowered_ones_at_once(void **state) {
        struct world *w = world_new();
        struct election a;

        member(w, &a, "pg-0");
        assert_int_equal(election_observe(&a, NULL), -ENOENT);
        assert_int_equal(election_acquire(&a, NULL, NULL), 0);
        a.lease_duration = 20 * SEC;
        a.renew_deadline = 15 * SEC;
        tick(w, 1 * SEC);
        assert_int_equal(election_renew(&a, NULL, NULL), 0);
        assert_int_equal(w->store.record->lease_duration, 20 * SEC);
        assert_int_equal(election_renew_deadline(&a), 15 * SEC);
        tick(w, 14 * SEC);
        assert_false(election_lost(&a, clock_now(&w->ops)));
        /* Lowered back to 10 s / 7 s: lost at once, 14 s after the renewal. */
        a.lease_duration = 10 * SEC;
        a.renew_deadline = 7 * SEC;
        assert_int_equal(election_renew_deadline(&a), 7 * SEC);
        assert_true(election_lost(&a, clock_now(&w->ops)));
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
                cmocka_unit_test(test_final_lsn_survives_the_acquisition_until_promoted),
                cmocka_unit_test(test_release_survives_a_concurrent_annotation_write),
                cmocka_unit_test(test_release_by_a_former_holder_writes_nothing),
                cmocka_unit_test(test_others_may_take_a_release_the_successor_never_took),
                cmocka_unit_test(test_refused_annotation_change_writes_nothing),
                cmocka_unit_test(test_renewal_survives_an_annotation_written_by_someone_else),
                cmocka_unit_test(test_renewal_after_takeover_reports_loss),
                cmocka_unit_test(test_conflict_with_an_unreadable_record_keeps_leading_until_the_deadline),
                cmocka_unit_test(test_failsafe_leader_reads_back_a_conflict_within_its_answers),
                cmocka_unit_test(test_renewal_publishes_optime_and_sync),
                cmocka_unit_test(test_reload_raising_timings_waits_for_a_renewal_that_published_them),
                cmocka_unit_test(test_raised_timings_apply_after_a_renewal_lowered_ones_at_once),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
