/* test-decide.c: the failover policy, table by table: (observation, state,
 * clock) -> actions, for every state and every safety rule. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "decide.h"
#include "util.h"

#define SEC USEC_PER_SEC
#define T0 (1000 * SEC)

static void state_for(struct agent_state *s, const char *name) {
        struct decide_options o = {
                .name = (char *) name,
                .priority = 100,
                .maximum_lag_on_failover = 1024 * 1024,
                .lease_duration = 10 * SEC,
                .retry_period = 2 * SEC,
                .primary_start_timeout = 10 * SEC,
                .synchronous_mode = SYNCHRONOUS_OFF,
                .synchronous_node_count = 1,
        };
        assert_int_equal(agent_state_init(s, &o), 0);
}

/* A healthy standby of pg-0 with two peers, pg-0 (primary) and pg-2. */
static void standby_view(struct observation *o, const char *holder) {
        *o = (struct observation) {
                .now = T0,
                .tick_late = 0,
                .pg_data_present = true,
                .pg_running = true,
                .pg_accepting = true,
                .pg_in_recovery = true,
                .pg_standby_marker = true,
                .pg_timeline = 1,
                .pg_lsn = 0x3000000,
                .pg_replay_lsn = 0x3000000,
                .pg_streaming = true,
                .pg_upstream_host = strdup("10.0.0.1"),
                .pg_upstream_port = 5432,
                .pg_conninfo_host = strdup("10.0.0.1"),
                .pg_conninfo_port = 5432,
                .lease_read = true,
                .lease_holder = strdup(holder),
                .leader_host = strdup("10.0.0.1"),
                .leader_port = 5432,
                .leader_timeline = 1,
        };
        o->n_peers = 2;
        o->peers = calloc(2, sizeof *o->peers);
        o->peers[0] = (struct peer_observation) { .name = strdup("pg-0"), .role = MEMBER_ROLE_PRIMARY, .host = strdup("10.0.0.1"),
                                                  .port = 5432, .priority = 100, .has_record = true };
        o->peers[1] = (struct peer_observation) { .name = strdup("pg-2"), .role = MEMBER_ROLE_REPLICA, .host = strdup("10.0.0.3"),
                                                  .port = 5432, .priority = 100, .has_record = true };
}

/* The primary pg-0 died: the lease is free, peers probed. */
static void failover_view(struct observation *o, uint64_t our_lsn, uint64_t peer_lsn) {
        standby_view(o, "pg-0");
        free(o->lease_holder);
        o->lease_holder = strdup("pg-0");
        o->lease_may_acquire = true;
        o->pg_streaming = false;
        o->pg_lsn = our_lsn;
        o->peers[0].probed = true;
        o->peers[0].reachable = false;
        o->peers[1].probed = true;
        o->peers[1].reachable = true;
        o->peers[1].in_recovery = true;
        o->peers[1].timeline = 1;
        o->peers[1].receive_lsn = peer_lsn;
}

/* The failover view once we took the lease: we lead it, still a standby. */
static void holder_failover_view(struct observation *o) {
        failover_view(o, 0x3000100, 0x3000000);
        o->lease_held_by_us = true;
        o->lease_leader = true;
}

static void primary_view(struct observation *o) {
        standby_view(o, "pg-1");
        o->pg_in_recovery = false;
        o->pg_standby_marker = false;
        o->pg_streaming = false;
        o->lease_held_by_us = true;
        o->lease_leader = true;
        o->pg_timeline = 2;
        o->pg_lsn = 0x5000000;
}

static void test_replica_follows_the_leader(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        standby_view(&o, "pg-0");
        decide(&o, &s, T0, &l);
        assert_int_equal(s.kind, AGENT_REPLICA);
        assert_false(action_list_has(&l, ACTION_FOLLOW));
        assert_false(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);

        /* The leader moved: follow it within this tick. */
        free(o.leader_host);
        o.leader_host = strdup("10.0.0.3");
        decide(&o, &s, T0 + 2 * SEC, &l);
        const struct action *a = action_list_find(&l, ACTION_FOLLOW);
        assert_non_null(a);
        assert_string_equal(a->target, "10.0.0.3");
        assert_int_equal(a->port, 5432);
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_best_candidate_acquires_the_free_lease(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        failover_view(&o, 0x3000100, 0x3000000);
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_ACQUIRE));
        assert_false(action_list_has(&l, ACTION_PROMOTE));
        assert_int_equal(s.kind, AGENT_CANDIDATE);
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_higher_lsn_peer_wins(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        failover_view(&o, 0x3000000, 0x3000100);
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_ACQUIRE));
        assert_string_equal(decide_best_candidate(&o, &s), "pg-2");
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_later_timeline_wins_over_higher_lsn(void **state) {
        struct agent_state s;
        struct observation o;

        state_for(&s, "pg-1");
        failover_view(&o, 0x9000000, 0x3000000);
        o.peers[1].timeline = 2;
        assert_string_equal(decide_best_candidate(&o, &s), "pg-2");
        observation_done(&o);
        agent_state_done(&s);
}

static void test_ties_go_to_priority_then_name(void **state) {
        struct agent_state s;
        struct observation o;

        state_for(&s, "pg-1");
        failover_view(&o, 0x3000000, 0x3000000);
        assert_string_equal(decide_best_candidate(&o, &s), "pg-1");
        o.peers[1].priority = 200;
        assert_string_equal(decide_best_candidate(&o, &s), "pg-2");
        observation_done(&o);
        agent_state_done(&s);
}

static void test_nofailover_and_priority_zero_never_promote(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        s.opt.nofailover = true;
        failover_view(&o, 0x3000100, 0x3000000);
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);
        s.opt.nofailover = false;
        s.opt.priority = 0;
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);

        /* Even holding the lease, it hands it over instead of promoting. */
        o.lease_held_by_us = true;
        o.lease_leader = true;
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_PROMOTE));
        const struct action *a = action_list_find(&l, ACTION_RELEASE);
        assert_non_null(a);
        assert_string_equal(a->target, "pg-2");
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_lagging_candidate_never_promotes(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        failover_view(&o, 0x3000000, 0x1000000);
        o.optime_lsn = 0x3000000 + 2 * 1024 * 1024; /* 2 MB ahead of us; limit is 1 MB */
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_ACQUIRE));
        assert_null(decide_best_candidate(&o, &s));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_holder_promotes_only_after_comparing_with_peers(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        holder_failover_view(&o);
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_PROMOTE));
        assert_true(action_list_has(&l, ACTION_RENEW));
        assert_int_equal(s.kind, AGENT_PROMOTING);
        action_list_done(&l);

        /* A peer got ahead since we acquired (safety rule 2): hand over. */
        o.peers[1].receive_lsn = 0x3000200;
        s.kind = AGENT_CANDIDATE;
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_PROMOTE));
        const struct action *a = action_list_find(&l, ACTION_RELEASE);
        assert_non_null(a);
        assert_string_equal(a->target, "pg-2");
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* Our server cannot finish a promotion (its volume full: the startup
 * process dies at the new timeline and PostgreSQL restarts as a standby):
 * after three failed pg_promote() calls the lease goes to a member that
 * may do better; without one we keep trying. */
static void test_holder_whose_promotions_fail_hands_the_lease_over(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};
        const struct action *a;

        state_for(&s, "pg-1");
        holder_failover_view(&o);
        for (unsigned i = 0; i < 3; i++) {
                decide(&o, &s, T0 + i * SEC, &l);
                assert_true(action_list_has(&l, ACTION_PROMOTE));
                assert_false(action_list_has(&l, ACTION_RELEASE));
                action_list_done(&l);
                s.promote_failures++;     /* act.c: pg_promote() failed */
        }
        decide(&o, &s, T0 + 3 * SEC, &l);
        assert_false(action_list_has(&l, ACTION_PROMOTE));
        a = action_list_find(&l, ACTION_RELEASE);
        assert_non_null(a);
        assert_string_equal(a->target, "pg-2");
        assert_int_equal(s.kind, AGENT_REPLICA);
        assert_int_equal(s.promote_failures, 0);
        action_list_done(&l);

        /* Nobody else may take it (pg-2 priority 0): keep trying. */
        s.kind = AGENT_PROMOTING;
        s.promote_failures = 5;
        o.peers[1].priority = 0;
        decide(&o, &s, T0 + 4 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_PROMOTE));
        assert_false(action_list_has(&l, ACTION_RELEASE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* pg_promote() returned before the end of recovery (act.c waits a second
 * at most): the holder waits for it without signalling again, and nothing
 * takes the signalled promotion back (no release to a peer now ahead, no
 * pause). Past 60 s it counts as failed and is signalled again; a server
 * that stopped accepting connections meanwhile restarted as a standby:
 * failed at once; one that ended recovery is promoted (no failure). */
static void test_promotion_under_way_is_waited_for(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        holder_failover_view(&o);
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_PROMOTE));
        action_list_done(&l);
        s.promote_since = T0;          /* act.c: under way */

        /* A peer now ahead, and the cluster paused: still waiting. */
        o.peers[1].receive_lsn = 0x4000000;
        o.paused = true;
        decide(&o, &s, T0 + 30 * SEC, &l);
        assert_false(action_list_has(&l, ACTION_PROMOTE));
        assert_false(action_list_has(&l, ACTION_RELEASE));
        assert_true(action_list_has(&l, ACTION_RENEW));
        assert_int_equal(s.kind, AGENT_PROMOTING);
        assert_int_equal(s.promote_failures, 0);
        action_list_done(&l);
        o.peers[1].receive_lsn = 0x3000000;
        o.paused = false;

        /* Not finished after 60 s: a failure, and a new signal. */
        decide(&o, &s, T0 + 61 * SEC, &l);
        assert_int_equal(s.promote_failures, 1);
        assert_int_equal(s.promote_since, 0);
        assert_true(action_list_has(&l, ACTION_PROMOTE));
        action_list_done(&l);

        /* Restarted during the promotion (not accepting): a failure. */
        s.promote_since = T0 + 61 * SEC;
        o.pg_accepting = false;
        decide(&o, &s, T0 + 62 * SEC, &l);
        assert_int_equal(s.promote_failures, 2);
        assert_int_equal(s.promote_since, 0);
        action_list_done(&l);

        /* Promoted: no failure, nothing under way. */
        o.pg_accepting = true;
        s.promote_since = T0 + 63 * SEC;
        o.pg_in_recovery = false;
        o.pg_standby_marker = false;
        o.pg_timeline = 2;
        decide(&o, &s, T0 + 64 * SEC, &l);
        assert_int_equal(s.promote_since, 0);
        assert_false(action_list_has(&l, ACTION_PROMOTE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_promoted_primary_records_history_and_renews(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        s.kind = AGENT_PROMOTING;
        primary_view(&o);
        decide(&o, &s, T0, &l);
        const struct action *r = action_list_find(&l, ACTION_RENEW);
        assert_non_null(r);
        assert_int_equal(r->lsn, 0x5000000);
        assert_int_equal(r->timeline, 2);
        assert_true(action_list_has(&l, ACTION_RECORD_PROMOTION));
        assert_int_equal(s.kind, AGENT_PRIMARY);
        action_list_done(&l);
        decide(&o, &s, T0 + 2 * SEC, &l);
        assert_false(action_list_has(&l, ACTION_RECORD_PROMOTION));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* Issue 19, item 3: each promotion says why and whose place it took. */
static void test_promotion_records_reason_and_old_primary(void **state) {
        static const struct {
                uint32_t timeline;
                const char *handover;
                const char *reason;
                const char *old;
        } cases[] = {
                { 1, NULL, "bootstrap", NULL },
                { 2, NULL, "failover", "pg-0" },
                { 2, "switchover pg-2", "switchover", "pg-2" },
                { 2, "demote pg-2", "demote", "pg-2" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct agent_state s;
                struct observation o;
                struct action_list l = {};
                const struct action *a;

                state_for(&s, "pg-1");
                /* As a follower it saw pg-0 hold the lease. */
                standby_view(&o, "pg-0");
                decide(&o, &s, T0, &l);
                action_list_done(&l);
                observation_done(&o);

                s.kind = AGENT_PROMOTING;
                primary_view(&o);
                o.pg_timeline = cases[i].timeline;
                if (cases[i].handover) {
                        o.handover = strdup(cases[i].handover);
                        o.successor = strdup("pg-1");
                        o.successor_lsn = 0x4000000;
                }
                decide(&o, &s, T0 + SEC, &l);
                a = action_list_find(&l, ACTION_RECORD_PROMOTION);
                assert_non_null(a);
                assert_string_equal(a->target, cases[i].reason);
                if (cases[i].old) {
                        assert_non_null(a->names);
                        assert_string_equal(a->names[0], cases[i].old);
                } else
                        assert_null(a->names);
                action_list_done(&l);
                observation_done(&o);
                agent_state_done(&s);
        }
}

static void test_lost_renewal_fences_at_once(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        s.kind = AGENT_PRIMARY;
        primary_view(&o);
        o.lease_lost = true;
        o.lease_read = false;
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_FENCE));
        assert_false(action_list_has(&l, ACTION_RENEW));
        assert_false(action_list_has(&l, ACTION_ACQUIRE));
        assert_int_equal(s.kind, AGENT_FENCED);
        assert_true(s.was_primary);
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_primary_without_lease_is_fenced(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        primary_view(&o);
        o.lease_held_by_us = false;
        o.lease_leader = false;
        free(o.lease_holder);
        o.lease_holder = strdup("pg-2");
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_FENCE));
        assert_false(action_list_has(&l, ACTION_PROMOTE));
        assert_int_equal(s.kind, AGENT_FENCED);
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_fenced_former_primary_rejoins_the_new_leader(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        s.kind = AGENT_FENCED;
        s.was_primary = true;
        standby_view(&o, "pg-2");
        o.pg_running = false;
        o.pg_accepting = false;
        free(o.leader_host);
        o.leader_host = strdup("10.0.0.3");
        o.leader_timeline = 3;
        decide(&o, &s, T0, &l);
        const struct action *a = action_list_find(&l, ACTION_REJOIN);
        assert_non_null(a);
        assert_string_equal(a->target, "10.0.0.3");
        assert_int_equal(a->timeline, 3);
        assert_int_equal(s.kind, AGENT_REJOINING);
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_starting_without_lease_starts_only_as_standby(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        standby_view(&o, "pg-0");
        o.pg_running = false;
        o.pg_accepting = false;
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_START_STANDBY));
        assert_false(action_list_has(&l, ACTION_START));
        action_list_done(&l);

        /* No leader known at all: still only as a standby. */
        free(o.leader_host);
        o.leader_host = NULL;
        free(o.lease_holder);
        o.lease_holder = NULL;
        s.kind = AGENT_STARTING;
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_START_STANDBY));
        assert_false(action_list_has(&l, ACTION_START));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_paused_never_fails_over(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        failover_view(&o, 0x3000100, 0x3000000);
        o.paused = true;
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);
        o.lease_held_by_us = true;
        o.lease_leader = true;
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_PROMOTE));
        assert_true(action_list_has(&l, ACTION_RENEW));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_tilt_after_a_stall_blocks_promotion_for_one_lease(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        failover_view(&o, 0x3000100, 0x3000000);
        o.tick_late = 28 * SEC;
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);
        o.tick_late = 0;
        decide(&o, &s, T0 + 9 * SEC, &l);
        assert_false(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);
        decide(&o, &s, T0 + 10 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_tilt_still_fences(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        s.kind = AGENT_PRIMARY;
        primary_view(&o);
        o.tick_late = 28 * SEC;
        o.lease_lost = true;
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_FENCE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_crashed_primary_gets_primary_start_timeout_then_releases(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        s.kind = AGENT_PRIMARY;
        primary_view(&o);
        o.pg_accepting = false;
        o.pg_running = false;
        o.peers[1].reachable = true;
        o.peers[1].in_recovery = true;
        o.peers[1].timeline = 2;
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_RENEW));
        assert_false(action_list_has(&l, ACTION_RELEASE));
        action_list_done(&l);
        decide(&o, &s, T0 + 9 * SEC, &l);
        assert_false(action_list_has(&l, ACTION_RELEASE));
        action_list_done(&l);
        decide(&o, &s, T0 + 10 * SEC, &l);
        const struct action *a = action_list_find(&l, ACTION_RELEASE);
        assert_non_null(a);
        assert_string_equal(a->target, "pg-2");
        assert_true(action_list_has(&l, ACTION_FENCE));
        assert_false(action_list_has(&l, ACTION_RENEW));
        assert_int_equal(s.kind, AGENT_FENCED);
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_sync_mode_only_published_standby_promotes(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        s.opt.synchronous_mode = SYNCHRONOUS_ON;
        failover_view(&o, 0x3000100, 0x3000000);
        o.sync = calloc(2, sizeof(char *));
        o.sync[0] = strdup("pg-2");
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_ACQUIRE));
        assert_string_equal(decide_best_candidate(&o, &s), "pg-2");
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_switchover_successor_waits_for_the_final_lsn(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        holder_failover_view(&o);
        o.successor = strdup("pg-1");
        o.successor_lsn = 0x3000200;
        o.pg_replay_lsn = 0x3000100;
        s.kind = AGENT_CANDIDATE;
        s.since = T0;
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_PROMOTE));
        assert_true(action_list_has(&l, ACTION_RENEW));
        action_list_done(&l);
        o.pg_replay_lsn = 0x3000200;
        o.pg_lsn = 0x3000200;
        decide(&o, &s, T0 + 1 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_PROMOTE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_restarted_holder_takes_its_lease_back(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        primary_view(&o);
        o.lease_leader = false;
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_ACQUIRE));
        assert_false(action_list_has(&l, ACTION_FENCE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static char **names(const char *a, const char *b) {
        char **l = calloc(3, sizeof(char *));

        if (a)
                l[0] = strdup(a);
        if (b)
                l[1] = strdup(b);
        return l;
}

/* pg-1 is the primary; pg-0 and pg-2 stream from it. */
static void sync_primary_view(struct observation *o) {
        primary_view(o);
        for (size_t i = 0; i < 2; i++) {
                o->peers[i].reachable = true;
                o->peers[i].in_recovery = true;
                o->peers[i].timeline = 2;
                o->peers[i].receive_lsn = 0x5000000;
        }
        o->n_replicas = 2;
        o->replicas = calloc(2, sizeof *o->replicas);
        o->replicas[0] = (struct replica_observation) { .name = strdup("pg-0"), .streaming = true, .flush_lsn = 0x5000000 };
        o->replicas[1] = (struct replica_observation) { .name = strdup("pg-2"), .streaming = true, .flush_lsn = 0x4000000 };
        o->pg_sync_names = names(NULL, NULL);
}

static void test_sync_standby_is_listed_before_it_is_published(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};
        const struct action *a;

        state_for(&s, "pg-1");
        s.kind = AGENT_PRIMARY;
        s.opt.synchronous_mode = SYNCHRONOUS_ON;
        sync_primary_view(&o);

        /* Tick 1: the most caught-up standby enters synchronous_standby_names; nothing is published yet. */
        decide(&o, &s, T0, &l);
        a = action_list_find(&l, ACTION_SET_SYNC);
        assert_non_null(a);
        assert_int_equal(strv_length(a->names), 1);
        assert_string_equal(a->names[0], "pg-0");
        a = action_list_find(&l, ACTION_RENEW);
        assert_non_null(a);
        assert_false(a->set_sync);
        action_list_done(&l);

        /* Tick 2: the setting is effective and pg-0 has flushed past the point it was added: publish it. */
        strv_free(o.pg_sync_names);
        o.pg_sync_names = names("pg-0", NULL);
        decide(&o, &s, T0 + 2 * SEC, &l);
        assert_false(action_list_has(&l, ACTION_SET_SYNC));
        a = action_list_find(&l, ACTION_RENEW);
        assert_true(a->set_sync);
        assert_string_equal(a->names[0], "pg-0");
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_sync_standby_that_left_is_unpublished_before_it_is_unlisted(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};
        const struct action *a;

        state_for(&s, "pg-1");
        s.kind = AGENT_PRIMARY;
        s.opt.synchronous_mode = SYNCHRONOUS_ON;
        sync_primary_view(&o);
        o.sync = names("pg-0", NULL);
        o.sync_mode = DCS_SYNC_MODE_ON; /* this leader's own record */
        strv_free(o.pg_sync_names);
        o.pg_sync_names = names("pg-0", NULL);
        o.replicas[0].streaming = false; /* pg-0 fell away */

        /* Tick 1: pg-2 joins the list first, next to pg-0 (ANY 2 of 2). */
        decide(&o, &s, T0, &l);
        a = action_list_find(&l, ACTION_SET_SYNC);
        assert_non_null(a);
        assert_int_equal(strv_length(a->names), 2);
        action_list_done(&l);

        /* Tick 2: effective; pg-2 flushed past that point: published next to pg-0. */
        strv_free(o.pg_sync_names);
        o.pg_sync_names = names("pg-0", "pg-2");
        decide(&o, &s, T0 + 2 * SEC, &l);
        a = action_list_find(&l, ACTION_RENEW);
        assert_false(a->set_sync); /* pg-2 has not flushed up to where it was listed */
        action_list_done(&l);
        o.replicas[1].flush_lsn = 0x5000000;
        decide(&o, &s, T0 + 3 * SEC, &l);
        a = action_list_find(&l, ACTION_RENEW);
        assert_true(a->set_sync);
        assert_int_equal(strv_length(a->names), 2);
        assert_false(action_list_has(&l, ACTION_SET_SYNC));
        action_list_done(&l);

        /* Tick 3: both published: pg-0 leaves the publication, still listed. */
        strv_free(o.sync);
        o.sync = names("pg-0", "pg-2");
        decide(&o, &s, T0 + 4 * SEC, &l);
        a = action_list_find(&l, ACTION_RENEW);
        assert_true(a->set_sync);
        assert_int_equal(strv_length(a->names), 1);
        assert_string_equal(a->names[0], "pg-2");
        assert_false(action_list_has(&l, ACTION_SET_SYNC));
        action_list_done(&l);

        /* Tick 4: unpublished: now it leaves synchronous_standby_names. */
        strv_free(o.sync);
        o.sync = names("pg-2", NULL);
        decide(&o, &s, T0 + 6 * SEC, &l);
        a = action_list_find(&l, ACTION_SET_SYNC);
        assert_non_null(a);
        assert_int_equal(strv_length(a->names), 1);
        assert_string_equal(a->names[0], "pg-2");
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_sync_on_falls_back_and_strict_blocks(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};
        const struct action *a;

        state_for(&s, "pg-1");
        s.kind = AGENT_PRIMARY;
        s.opt.synchronous_mode = SYNCHRONOUS_ON;
        sync_primary_view(&o);
        o.sync = names("pg-0", NULL);
        strv_free(o.pg_sync_names);
        o.pg_sync_names = names("pg-0", NULL);
        o.replicas[0].streaming = false;
        o.replicas[1].streaming = false;

        decide(&o, &s, T0, &l);
        a = action_list_find(&l, ACTION_RENEW);
        assert_true(a->set_sync);
        assert_int_equal(strv_length(a->names), 0);
        assert_false(action_list_has(&l, ACTION_SET_SYNC));
        action_list_done(&l);

        s.opt.synchronous_mode = SYNCHRONOUS_STRICT;
        o.sync_mode = DCS_SYNC_MODE_STRICT;
        decide(&o, &s, T0, &l);
        a = action_list_find(&l, ACTION_RENEW);
        assert_false(a->set_sync);
        assert_false(action_list_has(&l, ACTION_SET_SYNC));
        action_list_done(&l);

        /* Strict with nobody listed at all: '*' keeps writes waiting. */
        strv_free(o.sync);
        o.sync = NULL;
        strv_free(o.pg_sync_names);
        o.pg_sync_names = names(NULL, NULL);
        decide(&o, &s, T0, &l);
        a = action_list_find(&l, ACTION_SET_SYNC);
        assert_non_null(a);
        assert_string_equal(a->names[0], "*");
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* Issue 17, item 2: the published set binds whatever this node's own
 * synchronous_mode says; only the leader's published "off" lifts it. */
static void test_published_sync_set_binds_a_node_configured_off(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1"); /* synchronous_mode = off in its own file */
        failover_view(&o, 0x3000100, 0x3000000);
        o.sync = names("pg-2", NULL);
        o.sync_mode = DCS_SYNC_MODE_ON;
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_ACQUIRE));
        assert_string_equal(decide_best_candidate(&o, &s), "pg-2");
        action_list_done(&l);

        /* A record an older agent wrote has no mode: the set binds. */
        o.sync_mode = DCS_SYNC_MODE_UNKNOWN;
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);

        /* The leader published off: its set no longer binds, even on a
         * node whose own file says on. */
        s.opt.synchronous_mode = SYNCHRONOUS_ON;
        o.sync_mode = DCS_SYNC_MODE_OFF;
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* peer_ahead() follows the published mode too: an asynchronous standby
 * ahead of the synchronous holder does not block it when the leader
 * published a binding set, and does when it published off. */
static void test_peer_ahead_follows_the_published_mode(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1"); /* off in its own file */
        failover_view(&o, 0x3000100, 0x3000200);
        o.lease_held_by_us = true;
        o.lease_leader = true;
        o.sync = names("pg-1", NULL);
        o.sync_mode = DCS_SYNC_MODE_STRICT;
        s.kind = AGENT_CANDIDATE;
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_PROMOTE));
        assert_false(action_list_has(&l, ACTION_RELEASE));
        action_list_done(&l);

        s.kind = AGENT_CANDIDATE;
        s.opt.synchronous_mode = SYNCHRONOUS_ON;
        o.sync_mode = DCS_SYNC_MODE_OFF;
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_PROMOTE));
        const struct action *a = action_list_find(&l, ACTION_RELEASE);
        assert_non_null(a);
        assert_string_equal(a->target, "pg-2");
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* The leader publishes its mode with the list, and publishes the same list
 * again when the record names another mode (a reload, an older record). */
static void test_leader_publishes_its_mode_with_the_set(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};
        const struct action *a;

        state_for(&s, "pg-1");
        s.kind = AGENT_PRIMARY;
        s.opt.synchronous_mode = SYNCHRONOUS_ON;
        sync_primary_view(&o);
        o.sync = names("pg-0", NULL);
        strv_free(o.pg_sync_names);
        o.pg_sync_names = names("pg-0", NULL);
        decide(&o, &s, T0, &l);
        a = action_list_find(&l, ACTION_RENEW);
        assert_true(a->set_sync);
        assert_int_equal(a->sync_mode, DCS_SYNC_MODE_ON);
        assert_int_equal(strv_length(a->names), 1);
        assert_string_equal(a->names[0], "pg-0");
        assert_false(action_list_has(&l, ACTION_SET_SYNC));
        action_list_done(&l);

        o.sync_mode = DCS_SYNC_MODE_ON;
        decide(&o, &s, T0 + 2 * SEC, &l);
        a = action_list_find(&l, ACTION_RENEW);
        assert_false(a->set_sync);
        action_list_done(&l);

        /* A new primary inherits a record naming itself, written without
         * the mode: the same list goes out again, itself included, so
         * that it binds until a standby of its own is published. */
        strv_free(o.sync);
        o.sync = names("pg-1", NULL);
        o.sync_mode = DCS_SYNC_MODE_UNKNOWN;
        strv_free(o.pg_sync_names);
        o.pg_sync_names = names(NULL, NULL);
        decide(&o, &s, T0 + 3 * SEC, &l);
        assert_non_null(action_list_find(&l, ACTION_SET_SYNC)); /* pg-0 is listed first */
        a = action_list_find(&l, ACTION_RENEW);
        assert_true(a->set_sync);
        assert_int_equal(a->sync_mode, DCS_SYNC_MODE_ON);
        assert_int_equal(strv_length(a->names), 1);
        assert_string_equal(a->names[0], "pg-1");
        action_list_done(&l);
        strv_free(o.sync);
        o.sync = names("pg-0", NULL);
        o.sync_mode = DCS_SYNC_MODE_ON;
        strv_free(o.pg_sync_names);
        o.pg_sync_names = names("pg-0", NULL);

        /* Reloaded to off: the set goes, with the mode, before the
         * setting (safety rule 4's order). */
        s.opt.synchronous_mode = SYNCHRONOUS_OFF;
        decide(&o, &s, T0 + 4 * SEC, &l);
        a = action_list_find(&l, ACTION_RENEW);
        assert_true(a->set_sync);
        assert_int_equal(a->sync_mode, DCS_SYNC_MODE_OFF);
        assert_int_equal(strv_length(a->names), 0);
        assert_false(action_list_has(&l, ACTION_SET_SYNC));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* The refusal says why by what the leader published, not by its file. */
static void test_switchover_refusal_names_the_published_sync_mode(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};
        bool said = false;

        state_for(&s, "pg-1"); /* off in its own file */
        s.kind = AGENT_PRIMARY;
        sync_primary_view(&o);
        o.sync = names("pg-0", NULL);
        o.sync_mode = DCS_SYNC_MODE_ON;
        o.switchover = strdup("pg-2");
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_SWITCHOVER));
        assert_true(action_list_has(&l, ACTION_CLEAR_SWITCHOVER));
        for (size_t i = 0; i < l.n; i++)
                if (l.items[i].kind == ACTION_EVENT && streq(l.items[i].event, "switchover") &&
                    strstr(l.items[i].message, "only a synchronous standby may"))
                        said = true;
        assert_true(said);
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_switchover_hands_over_to_the_named_standby(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};
        const struct action *a;

        state_for(&s, "pg-1");
        s.kind = AGENT_PRIMARY;
        sync_primary_view(&o);
        o.switchover = strdup("pg-2");
        decide(&o, &s, T0, &l);
        a = action_list_find(&l, ACTION_SWITCHOVER);
        assert_non_null(a);
        assert_string_equal(a->target, "pg-2");
        assert_false(action_list_has(&l, ACTION_RENEW));
        assert_int_equal(s.kind, AGENT_DEMOTING);
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_switchover_to_an_unfit_standby_is_refused(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        s.kind = AGENT_PRIMARY;
        sync_primary_view(&o);
        o.peers[1].nofailover = true;
        o.switchover = strdup("pg-2");
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_SWITCHOVER));
        assert_true(action_list_has(&l, ACTION_CLEAR_SWITCHOVER));
        assert_string_equal(action_list_find(&l, ACTION_CLEAR_SWITCHOVER)->target, "pg-2 is tagged nofailover");
        assert_true(action_list_has(&l, ACTION_RENEW));
        assert_int_equal(s.kind, AGENT_PRIMARY);
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* Issue 19, 4b: the reason travels with the refusal (the clear action's
 * target goes onto the lease for agentctl). */
static void test_switchover_refusal_says_why(void **state) {
        static const struct {
                int setup;
                const char *reason;
        } cases[] = {
                { 0, "pg-2 is not running (its PostgreSQL does not answer)" },
                { 1, "pg-2 is not a standby" },
                { 2, "pg-2 has priority 0" },
                { 3, "pg-2 is not in the synchronous set (synchronous mode: only a synchronous standby may be promoted)" },
                { 4, "pg-9 is not a member of the cluster (no member record)" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                struct agent_state s;
                struct observation o;
                struct action_list l = {};
                const struct action *a;

                state_for(&s, "pg-1");
                s.kind = AGENT_PRIMARY;
                sync_primary_view(&o);
                o.switchover = strdup(cases[i].setup == 4 ? "pg-9" : "pg-2");
                switch (cases[i].setup) {
                case 0: o.peers[1].reachable = false; break;
                case 1: o.peers[1].in_recovery = false; break;
                case 2: o.peers[1].priority = 0; break;
                case 3:
                        s.opt.synchronous_mode = SYNCHRONOUS_ON;
                        o.sync = names("pg-0", NULL);
                        break;
                }
                decide(&o, &s, T0, &l);
                assert_false(action_list_has(&l, ACTION_SWITCHOVER));
                a = action_list_find(&l, ACTION_CLEAR_SWITCHOVER);
                assert_non_null(a);
                assert_string_equal(a->target, cases[i].reason);
                action_list_done(&l);
                observation_done(&o);
                agent_state_done(&s);
        }
}

static size_t count_events(const struct action_list *l, const char *event) {
        size_t n = 0;

        for (size_t i = 0; i < l->n; i++)
                if (l->items[i].kind == ACTION_EVENT && streq(strempty(l->items[i].event), event))
                        n++;
        return n;
}

/* The holder of a lease taken after a hand-over: pg-1 holds it as a
 * standby, the record carries the final LSN 0x3000200. */
static void handover_holder_view(struct observation *o, uint64_t replayed) {
        failover_view(o, replayed, 0x3000000);
        o->lease_held_by_us = true;
        o->lease_leader = true;
        free(o->lease_holder);
        o->lease_holder = strdup("pg-1");
        o->successor = strdup("pg-1");
        o->successor_lsn = 0x3000200;
        o->pg_replay_lsn = replayed;
}

/* docs/handover.pml: whoever holds a lease carrying a final LSN never
 * promotes before having replayed it, however long it takes. */
static void test_successor_never_promotes_before_the_final_lsn(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};
        size_t warnings = 0;

        state_for(&s, "pg-1");
        handover_holder_view(&o, 0x3000100);
        s.kind = AGENT_CANDIDATE;
        s.since = T0;
        for (usec_t t = 0; t <= 60 * SEC; t += 2 * SEC) {
                decide(&o, &s, T0 + t, &l);
                assert_false(action_list_has(&l, ACTION_PROMOTE));
                assert_false(action_list_has(&l, ACTION_RELEASE));
                assert_true(action_list_has(&l, ACTION_RENEW));
                warnings += count_events(&l, "promote");
                action_list_done(&l);
        }
        /* said once per lease duration, not every tick */
        assert_true(warnings >= 4 && warnings <= 6);
        o.pg_replay_lsn = o.pg_lsn = 0x3000200;
        decide(&o, &s, T0 + 62 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_PROMOTE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* The old primary rejoined as a standby with everything up to the final
 * LSN: the waiting holder hands it the lease, the final LSN kept. */
static void test_waiting_holder_hands_the_lease_to_a_standby_that_has_the_final_lsn(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};
        const struct action *a;

        state_for(&s, "pg-1");
        handover_holder_view(&o, 0x3000100);
        o.peers[0].reachable = true;
        o.peers[0].in_recovery = true;
        o.peers[0].timeline = 1;
        o.peers[0].receive_lsn = 0x3000200;
        o.peers[0].role = MEMBER_ROLE_REPLICA;
        s.kind = AGENT_CANDIDATE;
        s.since = T0;
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_PROMOTE));
        a = action_list_find(&l, ACTION_RELEASE);
        assert_non_null(a);
        assert_string_equal(a->target, "pg-0");
        assert_int_equal(a->lsn, 0x3000200);
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* A release that did not get through (409, API down): the lease still
 * names the demoting leader, which releases again with the same target
 * and final LSN and never takes the lease back, starts or promotes. */
static void test_demoting_leader_releases_again_and_never_promotes(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};
        const struct action *a;

        state_for(&s, "pg-1");
        primary_view(&o);
        o.lease_leader = false;
        o.pg_running = false;
        o.pg_accepting = false;
        s.kind = AGENT_DEMOTING;
        s.handover_target = strdup("pg-2");
        s.handover_lsn = 0x5000028;
        for (int i = 0; i < 3; i++) {
                decide(&o, &s, T0 + i * SEC, &l);
                a = action_list_find(&l, ACTION_RELEASE);
                assert_non_null(a);
                assert_string_equal(a->target, "pg-2");
                assert_int_equal(a->lsn, 0x5000028);
                assert_false(action_list_has(&l, ACTION_ACQUIRE));
                assert_false(action_list_has(&l, ACTION_PROMOTE));
                assert_false(action_list_has(&l, ACTION_START));
                assert_int_equal(s.kind, AGENT_DEMOTING);
                action_list_done(&l);
        }
        observation_done(&o);
        agent_state_done(&s);
}

/* Pause stops automatic failover, not a planned hand-over: the named
 * successor promotes while paused; any other holder does not. */
static void test_switchover_completes_while_paused(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        handover_holder_view(&o, 0x3000200);
        o.pg_lsn = 0x3000200;
        o.paused = true;
        s.kind = AGENT_CANDIDATE;
        s.since = T0;
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_PROMOTE));
        action_list_done(&l);
        free(o.successor);
        o.successor = strdup("pg-2");
        decide(&o, &s, T0 + SEC, &l);
        assert_false(action_list_has(&l, ACTION_PROMOTE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* Issue 14, item 3: the named successor (pg-1, frozen: unreachable) never
 * takes the released lease; once the election allows it (one lease
 * duration) the best other standby takes it. */
static void test_other_standby_takes_over_when_the_successor_never_comes(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-2");
        failover_view(&o, 0x3000200, 0);
        free(o.peers[1].name);
        o.peers[1].name = strdup("pg-1");
        o.peers[1].reachable = false;
        free(o.lease_holder);
        o.lease_holder = strdup("");
        o.successor = strdup("pg-1");
        o.successor_lsn = 0x3000200;
        o.pg_replay_lsn = 0x3000200;
        o.lease_may_acquire = false; /* within the lease duration */
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);
        o.lease_may_acquire = true;
        decide(&o, &s, T0 + 10 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);
        /* Frozen but its PostgreSQL still answers, even ahead of us (a
         * lower name, more WAL): it had its chance and is passed over. */
        o.peers[1].reachable = true;
        o.peers[1].receive_lsn = 0x3000300;
        decide(&o, &s, T0 + 11 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* Issue 16: a primary whose postmaster accepts no new connection (frozen)
 * while the agent's old connection answers counts as down: after
 * primary_start_timeout the holder fences and releases, saying why. */
static void test_primary_refusing_new_connections_is_fenced_after_the_start_timeout(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};
        const struct action *e;

        state_for(&s, "pg-1");
        primary_view(&o);
        s.kind = AGENT_PRIMARY;
        o.pg_accepting = false;
        o.pg_refusing = true;
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_FENCE));
        assert_false(action_list_has(&l, ACTION_START));
        assert_true(action_list_has(&l, ACTION_RENEW));
        e = action_list_find(&l, ACTION_EVENT);
        assert_non_null(e);
        assert_non_null(strstr(e->message, "old connection only"));
        action_list_done(&l);
        decide(&o, &s, T0 + 10 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_FENCE));
        assert_true(action_list_has(&l, ACTION_RELEASE));
        assert_int_equal(s.kind, AGENT_FENCED);
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* Issue 16: the holder whose run-postgres supervisor is gone has no
 * lease-expiry watchdog: it fences and releases at once, saying why; and
 * without a supervisor nothing is started. */
static void test_primary_without_supervisor_is_fenced_at_once(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};
        const struct action *e;

        state_for(&s, "pg-1");
        primary_view(&o);
        s.kind = AGENT_PRIMARY;
        o.supervisor_watched = true;
        o.supervisor_gone = true;
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_FENCE));
        assert_true(action_list_has(&l, ACTION_RELEASE));
        assert_false(action_list_has(&l, ACTION_RENEW));
        assert_int_equal(s.kind, AGENT_FENCED);
        e = action_list_find(&l, ACTION_EVENT);
        assert_non_null(e);
        assert_string_equal(e->event, "supervisor-gone");
        action_list_done(&l);
        observation_done(&o);

        /* Fenced, no longer the holder, PostgreSQL down: no rejoin until
         * the supervisor is back. */
        standby_view(&o, "pg-2");
        o.pg_running = o.pg_accepting = false;
        o.supervisor_watched = o.supervisor_gone = true;
        decide(&o, &s, T0 + SEC, &l);
        assert_false(action_list_has(&l, ACTION_REJOIN));
        assert_false(action_list_has(&l, ACTION_START_STANDBY));
        action_list_done(&l);
        o.supervisor_gone = false;
        decide(&o, &s, T0 + 2 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_REJOIN));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* The CI failure of 2026-12-06: a new primary in synchronous mode is killed
 * with its supervisor before it publishes a standby as synchronous (the
 * Lease still names it, from the old primary's publication); it fences and
 * releases, and nobody else may be promoted. Its PostgreSQL, down, made it
 * no candidate either, and the cluster stayed without a primary for good.
 * It waits for a leader for two lease durations, then starts as a standby
 * and becomes the candidate it is. */
static void test_fenced_primary_starts_as_standby_when_nobody_takes_the_lease(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        s.opt.synchronous_mode = SYNCHRONOUS_ON;
        primary_view(&o);
        s.kind = AGENT_PRIMARY;
        o.supervisor_watched = o.supervisor_gone = true;
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_RELEASE));
        assert_int_equal(s.kind, AGENT_FENCED);
        action_list_done(&l);
        observation_done(&o);

        /* Released, nobody holds it; the supervisor is back. */
        standby_view(&o, "");
        free(o.leader_host);
        o.leader_host = NULL;
        o.pg_running = o.pg_accepting = o.pg_streaming = false;
        o.supervisor_watched = true;
        o.lease_may_acquire = true;
        o.sync = calloc(2, sizeof(char *));
        o.sync[0] = strdup("pg-1");
        o.sync_mode = DCS_SYNC_MODE_ON;
        decide(&o, &s, T0 + SEC, &l);
        assert_false(action_list_has(&l, ACTION_START_STANDBY));
        assert_false(action_list_has(&l, ACTION_START));
        action_list_done(&l);
        /* Paused: nothing automatic. */
        o.paused = true;
        decide(&o, &s, T0 + 25 * SEC, &l);
        assert_false(action_list_has(&l, ACTION_START_STANDBY));
        action_list_done(&l);
        o.paused = false;
        decide(&o, &s, T0 + 25 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_START_STANDBY));
        assert_false(action_list_has(&l, ACTION_START));
        assert_int_equal(s.kind, AGENT_STARTING);
        action_list_done(&l);

        /* Running as a standby, alone in the published set: it takes the
         * lease. */
        o.pg_running = o.pg_accepting = true;
        o.peers[0].probed = o.peers[1].probed = true;
        o.peers[1].reachable = o.peers[1].in_recovery = true;
        o.peers[1].receive_lsn = o.pg_lsn;
        decide(&o, &s, T0 + 26 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* A pod (re)start: the agent may tick before the postgres container's
 * supervisor has written its pid. Holding the lease from before, with
 * nothing running, it waits for the supervisor as for a crash instead of
 * costing the cluster a failover; once seen, its loss fences at once. */
static void test_holder_waits_for_a_supervisor_it_never_saw(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        primary_view(&o);
        o.pg_running = o.pg_accepting = false;
        o.supervisor_watched = o.supervisor_gone = true;
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_FENCE));
        assert_false(action_list_has(&l, ACTION_RELEASE));
        assert_true(action_list_has(&l, ACTION_RENEW));
        action_list_done(&l);
        /* The supervisor shows up, then goes: fenced and released. */
        o.supervisor_gone = false;
        decide(&o, &s, T0 + SEC, &l);
        action_list_done(&l);
        o.supervisor_gone = true;
        decide(&o, &s, T0 + 2 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_FENCE));
        assert_true(action_list_has(&l, ACTION_RELEASE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_switchover_successor_takes_the_lease_even_on_a_tie(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-2");
        failover_view(&o, 0x3000000, 0x3000000);
        free(o.peers[1].name);
        o.peers[1].name = strdup("pg-1"); /* a lower name, same LSN */
        free(o.lease_holder);
        o.lease_holder = strdup("");
        o.successor = strdup("pg-2");
        o.successor_lsn = 0x3000000;
        assert_string_equal(decide_best_candidate(&o, &s), "pg-1");
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_demote_without_successor_fences_at_the_deadline(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        s.kind = AGENT_PRIMARY;
        primary_view(&o); /* no reachable standby */
        s.demote_requested = true;
        s.demote_deadline = T0 + 5 * SEC;
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_FENCE));
        assert_true(action_list_has(&l, ACTION_RENEW));
        action_list_done(&l);
        decide(&o, &s, T0 + 5 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_FENCE));
        assert_true(action_list_has(&l, ACTION_RELEASE));
        const struct action *d = action_list_find(&l, ACTION_DEMOTE_DONE);
        assert_non_null(d);
        assert_int_equal(d->lsn, 0);
        assert_int_equal(s.kind, AGENT_STOPPED);
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_demote_on_a_standby_stops_it_and_keeps_it_down(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        s.kind = AGENT_REPLICA;
        standby_view(&o, "pg-0");
        s.demote_requested = true;
        s.demote_deadline = T0 + 30 * SEC;
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_STOP));
        assert_true(action_list_has(&l, ACTION_DEMOTE_DONE));
        action_list_done(&l);
        o.pg_running = false;
        o.pg_accepting = false;
        decide(&o, &s, T0 + 2 * SEC, &l);
        assert_false(action_list_has(&l, ACTION_START_STANDBY));
        assert_false(action_list_has(&l, ACTION_STOP));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_standby_that_cannot_follow_a_new_timeline_is_rewound(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        s.kind = AGENT_REPLICA;
        standby_view(&o, "pg-2");
        free(o.leader_host);
        o.leader_host = strdup("10.0.0.3");
        o.leader_timeline = 3;
        o.pg_timeline = 2;
        o.pg_streaming = false;
        o.peers[1].role = MEMBER_ROLE_PRIMARY;
        o.peers[1].state = strdup("running");
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_FOLLOW));
        assert_false(action_list_has(&l, ACTION_STOP));
        action_list_done(&l);
        decide(&o, &s, T0 + 20 * SEC, &l);
        assert_false(action_list_has(&l, ACTION_STOP));
        action_list_done(&l);
        decide(&o, &s, T0 + 21 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_STOP));
        assert_int_equal(s.kind, AGENT_REJOINING);
        action_list_done(&l);
        /* Stopped: the next tick rejoins it (rewind if it forked). */
        o.pg_running = false;
        o.pg_accepting = false;
        decide(&o, &s, T0 + 22 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_REJOIN));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* pg-1 streamed from pg-0 (timeline 1) until pg-0 died; pg-2 took over on
 * timeline 2 a while later. The time pg-1 spent not streaming from the dead
 * pg-0 is no time spent failing to follow pg-2: it must get its full
 * 2 x lease_duration with the new leader before it is stopped. */
static void test_a_failover_restarts_the_time_to_follow(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        s.kind = AGENT_REPLICA;
        standby_view(&o, "pg-0");
        o.pg_streaming = false;                 /* pg-0 is gone */
        for (int i = 0; i <= 25; i++) {
                decide(&o, &s, T0 + (usec_t) i * SEC, &l);
                assert_false(action_list_has(&l, ACTION_STOP));
                action_list_done(&l);
        }
        /* pg-2 promoted to timeline 2; pg-1 is still on timeline 1. */
        free(o.lease_holder);
        o.lease_holder = strdup("pg-2");
        free(o.leader_host);
        o.leader_host = strdup("10.0.0.3");
        o.leader_timeline = 2;
        o.peers[0].role = MEMBER_ROLE_REPLICA;
        o.peers[1].role = MEMBER_ROLE_PRIMARY;
        o.peers[1].state = strdup("running");
        decide(&o, &s, T0 + 26 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_FOLLOW));
        assert_false(action_list_has(&l, ACTION_STOP));
        action_list_done(&l);
        decide(&o, &s, T0 + 46 * SEC, &l);
        assert_false(action_list_has(&l, ACTION_STOP));
        action_list_done(&l);
        /* Still not following pg-2 after 2 x lease_duration: now it is
         * checked for divergence. */
        decide(&o, &s, T0 + 47 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_STOP));
        assert_int_equal(s.kind, AGENT_REJOINING);
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_a_dead_leader_is_no_reason_to_rewind_a_standby(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        s.kind = AGENT_REPLICA;
        standby_view(&o, "pg-2");
        free(o.leader_host);
        o.leader_host = strdup("10.0.0.3");
        o.leader_timeline = 3;
        o.pg_timeline = 2;
        o.pg_streaming = false;
        o.paused = true;
        o.lease_may_acquire = true; /* the holder stopped renewing */
        o.peers[1].role = MEMBER_ROLE_PRIMARY;
        o.peers[1].state = strdup("running");
        for (int i = 0; i < 30; i++) {
                decide(&o, &s, T0 + (usec_t) i * SEC, &l);
                assert_false(action_list_has(&l, ACTION_STOP));
                action_list_done(&l);
        }
        observation_done(&o);
        agent_state_done(&s);
}

static void test_starting_holder_whose_postgres_never_comes_up_releases(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        primary_view(&o);
        o.pg_accepting = false;
        o.pg_running = false;
        o.peers[1].reachable = true;
        o.peers[1].in_recovery = true;
        o.peers[1].timeline = 2;
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_START));
        assert_false(action_list_has(&l, ACTION_RELEASE));
        action_list_done(&l);
        decide(&o, &s, T0 + 10 * SEC, &l);
        const struct action *a = action_list_find(&l, ACTION_RELEASE);
        assert_non_null(a);
        assert_string_equal(a->target, "pg-2");
        assert_true(action_list_has(&l, ACTION_FENCE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

/* ---- failsafe mode ---- */

/* pg-1 leads, failsafe on; its last renewal went out at T0 and the API
 * server has been gone since. The view is pg-0, pg-1, pg-2; each other
 * member answered the POST /failsafe sent at `sent0` and `sent2` (0: no
 * answer). */
static void failsafe_view(struct observation *o, struct agent_state *s, usec_t sent0, usec_t sent2) {
        state_for(s, "pg-1");
        s->opt.renew_deadline = 7 * SEC;
        s->opt.failsafe_mode = true;
        s->kind = AGENT_PRIMARY;
        primary_view(o);
        o->lease_renew_sent = T0;
        o->lease_renew_deadline = 7 * SEC;
        o->failsafe_view = true;
        o->n_failsafe = 3;
        o->failsafe = calloc(3, sizeof *o->failsafe);
        o->failsafe[0] = (struct failsafe_answer) { .name = strdup("pg-0"), .answered_sent = sent0 };
        o->failsafe[1] = (struct failsafe_answer) { .name = strdup("pg-1") };
        o->failsafe[2] = (struct failsafe_answer) { .name = strdup("pg-2"), .answered_sent = sent2 };
}

static void test_failsafe_keeps_the_primary_while_every_member_answered(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        /* Past the renew deadline (T0 + 7 s), answers sent at T0 + 6 s and
         * T0 + 8 s: writable until T0 + 13 s. */
        failsafe_view(&o, &s, T0 + 6 * SEC, T0 + 8 * SEC);
        o.now = T0 + 9 * SEC;
        decide(&o, &s, T0 + 9 * SEC, &l);
        assert_false(action_list_has(&l, ACTION_FENCE));
        assert_true(action_list_has(&l, ACTION_RENEW));
        assert_true(action_list_has(&l, ACTION_FAILSAFE_ASK));
        assert_int_equal(s.kind, AGENT_PRIMARY);
        assert_true(s.failsafe_active);
        assert_true(s.failsafe_until == T0 + 13 * SEC);
        assert_int_equal(decide_failsafe_until(&o, &s), T0 + 13 * SEC);
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_failsafe_fences_when_one_member_did_not_answer(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        failsafe_view(&o, &s, T0 + 6 * SEC, 0);
        o.now = T0 + 8 * SEC;
        assert_int_equal(decide_failsafe_until(&o, &s), 0);
        decide(&o, &s, T0 + 8 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_FENCE));
        assert_int_equal(s.kind, AGENT_FENCED);
        assert_false(s.failsafe_active);
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_failsafe_fences_when_an_answer_is_older_than_the_deadline(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        /* pg-0's latest answer was to a question sent at T0 + 1 s: it
         * covers up to T0 + 8 s only. */
        failsafe_view(&o, &s, T0 + 1 * SEC, T0 + 8 * SEC);
        o.now = T0 + 7500 * USEC_PER_MSEC;
        decide(&o, &s, o.now, &l);
        assert_false(action_list_has(&l, ACTION_FENCE));
        assert_true(s.failsafe_active);
        action_list_done(&l);
        o.now = T0 + 8 * SEC + 1;
        decide(&o, &s, o.now, &l);
        assert_true(action_list_has(&l, ACTION_FENCE));
        assert_int_equal(s.kind, AGENT_FENCED);
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_failsafe_is_off_by_default(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        failsafe_view(&o, &s, T0 + 6 * SEC, T0 + 8 * SEC);
        s.opt.failsafe_mode = false;
        o.now = T0 + 8 * SEC;
        decide(&o, &s, o.now, &l);
        assert_true(action_list_has(&l, ACTION_FENCE));
        assert_false(action_list_has(&l, ACTION_FAILSAFE_ASK));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_failsafe_ends_when_the_api_server_is_back(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        failsafe_view(&o, &s, T0 + 6 * SEC, T0 + 8 * SEC);
        o.now = T0 + 9 * SEC;
        decide(&o, &s, o.now, &l);
        assert_true(s.failsafe_active);
        action_list_done(&l);
        /* A renewal got through at T0 + 10 s; the answers stop coming
         * later (a member went away) but the lease covers us. */
        o.lease_renew_sent = T0 + 10 * SEC;
        o.failsafe[2].answered_sent = 0;
        o.now = T0 + 14 * SEC;
        decide(&o, &s, o.now, &l);
        assert_false(action_list_has(&l, ACTION_FENCE));
        assert_true(action_list_has(&l, ACTION_RENEW));
        assert_false(s.failsafe_active);
        assert_int_equal(s.kind, AGENT_PRIMARY);
        action_list_done(&l);
        /* And the renew deadline still rules: past it without answers,
         * fence. */
        o.now = T0 + 17 * SEC + 1;
        decide(&o, &s, o.now, &l);
        assert_true(action_list_has(&l, ACTION_FENCE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_failsafe_member_that_answered_does_not_acquire(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        /* pg-1, the best candidate, answered pg-0's POST /failsafe at T0. */
        state_for(&s, "pg-1");
        s.opt.failsafe_mode = true;
        failover_view(&o, 0x3000100, 0x3000000);
        assert_int_equal(decide_failsafe_promise(&s, "pg-0", false, T0), 0);
        decide(&o, &s, T0 + 5 * SEC, &l);
        assert_false(action_list_has(&l, ACTION_ACQUIRE));
        assert_int_not_equal(s.kind, AGENT_CANDIDATE);
        action_list_done(&l);
        /* A lease duration after its answer, the promise is over. */
        decide(&o, &s, T0 + 10 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_failsafe_promise_does_not_hold_up_a_release(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        s.opt.failsafe_mode = true;
        failover_view(&o, 0x3000100, 0x3000000);
        free(o.lease_holder);
        o.lease_holder = strdup("");
        assert_int_equal(decide_failsafe_promise(&s, "pg-0", false, T0), 0);
        decide(&o, &s, T0 + 1 * SEC, &l);
        assert_true(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_failsafe_member_outside_the_published_list_does_not_acquire(void **state) {
        struct agent_state s;
        struct observation o;
        struct action_list l = {};

        state_for(&s, "pg-1");
        failover_view(&o, 0x3000100, 0x3000000);
        assert_int_equal(strv_extend(&o.lease_failsafe, "pg-0"), 0);
        assert_int_equal(strv_extend(&o.lease_failsafe, "pg-2"), 0);
        decide(&o, &s, T0, &l);
        assert_false(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);
        assert_int_equal(strv_extend(&o.lease_failsafe, "pg-1"), 0);
        decide(&o, &s, T0, &l);
        assert_true(action_list_has(&l, ACTION_ACQUIRE));
        action_list_done(&l);
        observation_done(&o);
        agent_state_done(&s);
}

static void test_failsafe_a_leader_or_candidate_does_not_promise(void **state) {
        struct agent_state s;

        state_for(&s, "pg-1");
        assert_int_equal(decide_failsafe_promise(&s, "pg-0", true, T0), -EBUSY);
        assert_int_equal(decide_failsafe_promise(&s, "pg-1", false, T0), -EBUSY);
        assert_int_equal(decide_failsafe_promise(&s, "", false, T0), -EBUSY);
        s.kind = AGENT_CANDIDATE;
        assert_int_equal(decide_failsafe_promise(&s, "pg-0", false, T0), -EBUSY);
        assert_int_equal(s.failsafe_promises.n, 0);
        s.kind = AGENT_REPLICA;
        assert_int_equal(decide_failsafe_promise(&s, "pg-0", false, T0), 0);
        assert_true(decide_failsafe_promise_until(&s, "pg-0", T0) == T0 + 10 * SEC);
        /* Another asker does not end pg-0's promise. */
        assert_int_equal(decide_failsafe_promise(&s, "pg-2", false, T0 + SEC), 0);
        assert_true(decide_failsafe_promise_until(&s, "pg-0", T0 + SEC) == T0 + 10 * SEC);
        assert_true(decide_failsafe_promise_until(&s, "pg-2", T0 + SEC) == T0 + 11 * SEC);
        assert_int_equal(decide_failsafe_promise_until(&s, "pg-0", T0 + 10 * SEC), 0);
        agent_state_done(&s);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_replica_follows_the_leader),
                cmocka_unit_test(test_best_candidate_acquires_the_free_lease),
                cmocka_unit_test(test_higher_lsn_peer_wins),
                cmocka_unit_test(test_later_timeline_wins_over_higher_lsn),
                cmocka_unit_test(test_ties_go_to_priority_then_name),
                cmocka_unit_test(test_nofailover_and_priority_zero_never_promote),
                cmocka_unit_test(test_lagging_candidate_never_promotes),
                cmocka_unit_test(test_holder_promotes_only_after_comparing_with_peers),
                cmocka_unit_test(test_holder_whose_promotions_fail_hands_the_lease_over),
                cmocka_unit_test(test_promotion_under_way_is_waited_for),
                cmocka_unit_test(test_promoted_primary_records_history_and_renews),
                cmocka_unit_test(test_lost_renewal_fences_at_once),
                cmocka_unit_test(test_primary_without_lease_is_fenced),
                cmocka_unit_test(test_fenced_former_primary_rejoins_the_new_leader),
                cmocka_unit_test(test_a_failover_restarts_the_time_to_follow),
                cmocka_unit_test(test_starting_without_lease_starts_only_as_standby),
                cmocka_unit_test(test_fenced_primary_starts_as_standby_when_nobody_takes_the_lease),
                cmocka_unit_test(test_paused_never_fails_over),
                cmocka_unit_test(test_tilt_after_a_stall_blocks_promotion_for_one_lease),
                cmocka_unit_test(test_tilt_still_fences),
                cmocka_unit_test(test_crashed_primary_gets_primary_start_timeout_then_releases),
                cmocka_unit_test(test_sync_mode_only_published_standby_promotes),
                cmocka_unit_test(test_successor_never_promotes_before_the_final_lsn),
                cmocka_unit_test(test_waiting_holder_hands_the_lease_to_a_standby_that_has_the_final_lsn),
                cmocka_unit_test(test_demoting_leader_releases_again_and_never_promotes),
                cmocka_unit_test(test_switchover_completes_while_paused),
                cmocka_unit_test(test_other_standby_takes_over_when_the_successor_never_comes),
                cmocka_unit_test(test_primary_refusing_new_connections_is_fenced_after_the_start_timeout),
                cmocka_unit_test(test_primary_without_supervisor_is_fenced_at_once),
                cmocka_unit_test(test_holder_waits_for_a_supervisor_it_never_saw),
                cmocka_unit_test(test_switchover_successor_waits_for_the_final_lsn),
                cmocka_unit_test(test_restarted_holder_takes_its_lease_back),
                cmocka_unit_test(test_sync_standby_is_listed_before_it_is_published),
                cmocka_unit_test(test_sync_standby_that_left_is_unpublished_before_it_is_unlisted),
                cmocka_unit_test(test_sync_on_falls_back_and_strict_blocks),
                cmocka_unit_test(test_switchover_hands_over_to_the_named_standby),
                cmocka_unit_test(test_switchover_to_an_unfit_standby_is_refused),
                cmocka_unit_test(test_switchover_refusal_says_why),
                cmocka_unit_test(test_promotion_records_reason_and_old_primary),
                cmocka_unit_test(test_switchover_successor_takes_the_lease_even_on_a_tie),
                cmocka_unit_test(test_demote_without_successor_fences_at_the_deadline),
                cmocka_unit_test(test_demote_on_a_standby_stops_it_and_keeps_it_down),
                cmocka_unit_test(test_standby_that_cannot_follow_a_new_timeline_is_rewound),
                cmocka_unit_test(test_starting_holder_whose_postgres_never_comes_up_releases),
                cmocka_unit_test(test_a_dead_leader_is_no_reason_to_rewind_a_standby),
                cmocka_unit_test(test_published_sync_set_binds_a_node_configured_off),
                cmocka_unit_test(test_peer_ahead_follows_the_published_mode),
                cmocka_unit_test(test_leader_publishes_its_mode_with_the_set),
                cmocka_unit_test(test_switchover_refusal_names_the_published_sync_mode),
                cmocka_unit_test(test_failsafe_keeps_the_primary_while_every_member_answered),
                cmocka_unit_test(test_failsafe_fences_when_one_member_did_not_answer),
                cmocka_unit_test(test_failsafe_fences_when_an_answer_is_older_than_the_deadline),
                cmocka_unit_test(test_failsafe_is_off_by_default),
                cmocka_unit_test(test_failsafe_ends_when_the_api_server_is_back),
                cmocka_unit_test(test_failsafe_member_that_answered_does_not_acquire),
                cmocka_unit_test(test_failsafe_promise_does_not_hold_up_a_release),
                cmocka_unit_test(test_failsafe_member_outside_the_published_list_does_not_acquire),
                cmocka_unit_test(test_failsafe_a_leader_or_candidate_does_not_promise),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
