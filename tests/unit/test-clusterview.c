/* test-clusterview.c: `agentctl cluster show` rendering from fixed member
 * records: rows, lag, status, warnings, the table and the JSON. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "clusterview.h"
#include "util.h"

#define SEC USEC_PER_SEC
#define NOW (1764102771ULL * SEC)
#define MB (1024ULL * 1024ULL)

static struct dcs_member member(const char *name, enum member_role role, const char *state, uint64_t lsn, usec_t heartbeat_ago) {
        return (struct dcs_member) {
                .name = strdup(name), .role = role, .state = strdup(state), .timeline = 3, .lsn = lsn, .replay_lsn = lsn,
                .host = strdup_printf("10.0.0.%c", name[3]), .port = 5432, .priority = 100, .tags = strdup("zone-a"),
                .heartbeat = NOW - heartbeat_ago,
        };
}

struct fixture {
        struct dcs_leader lease;
        struct dcs_member_list members;
        struct clusterview_source src;
};

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof *f);

        f->lease = (struct dcs_leader) { .holder = strdup("pg-0"), .transitions = 4, .optime_timeline = 3, .optime_lsn = 0x3000060 };
        assert_int_equal(strv_extend(&f->lease.sync, "pg-1"), 0);
        f->members.n = 3;
        f->members.members = calloc(3, sizeof(struct dcs_member));
        /* Unsorted on purpose: the view sorts by name. */
        f->members.members[0] = member("pg-2", MEMBER_ROLE_REPLICA, "streaming", 0x3000000, 2 * SEC);
        f->members.members[1] = member("pg-0", MEMBER_ROLE_PRIMARY, "running", 0x3000060, 1 * SEC);
        f->members.members[2] = member("pg-1", MEMBER_ROLE_REPLICA, "streaming", 0x3000060, 3 * SEC);
        f->src = (struct clusterview_source) {
                .cluster = "pg", .source = "agent", .lease = &f->lease, .lease_age = 1.5, .members = &f->members,
                .now_realtime = NOW, .status_interval = 10 * SEC, .maximum_lag = 1 * MB,
        };
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;

        for (size_t i = 0; i < f->members.n; i++)
                dcs_member_done(&f->members.members[i]);
        free(f->members.members);
        free(f->lease.holder);
        strv_free(f->lease.sync);
        free(f->lease.switchover);
        free(f);
        return 0;
}

static struct clusterview *build(struct fixture *f) {
        struct clusterview *v = NULL;

        assert_int_equal(clusterview_build(&f->src, &v), 0);
        return v;
}

static void test_rows_are_sorted_with_lag_against_the_leader(void **state) {
        struct clusterview *v = build(*state);

        assert_int_equal(v->n, 3);
        assert_string_equal(v->rows[0].name, "pg-0");
        assert_true(v->rows[0].leader);
        assert_int_equal(v->rows[0].lag_bytes, 0);
        assert_string_equal(v->rows[1].name, "pg-1");
        assert_int_equal(v->rows[1].lag_bytes, 0);
        assert_string_equal(v->rows[2].name, "pg-2");
        assert_true(v->rows[2].has_lag);
        assert_int_equal(v->rows[2].lag_bytes, 0x60);
        assert_null(v->warnings);
        clusterview_free(v);
}

static void test_healthy_table_has_header_columns_and_no_warnings(void **state) {
        struct clusterview *v = build(*state);
        _cleanup_free_ char *t = NULL;

        assert_int_equal(clusterview_format_table(v, &t), 0);
        assert_non_null(strstr(t, "Cluster pg: leader pg-0, lease record age 1.5 s, 4 transitions, sync: pg-1, paused: no\n"));
        assert_non_null(strstr(t, " Name | Role    | Status    | Timeline | LSN       | Lag                | Priority | Tags   | Host\n"));
        assert_non_null(strstr(t, " pg-0 | primary | running   | 3        | 0/3000060 | 0 B, 0.0 s (stale) | 100      | zone-a | 10.0.0.0:5432\n"));
        assert_non_null(strstr(t, " pg-2 | replica | streaming | 3        | 0/3000000 | 96 B, ? s (stale)  | 100      | zone-a | 10.0.0.2:5432\n"));
        assert_null(strstr(t, "WARNING"));
        clusterview_free(v);
}

static void test_two_primaries_are_warned_about(void **state) {
        struct fixture *f = *state;
        struct clusterview *v;
        _cleanup_free_ char *t = NULL;

        f->members.members[0].role = MEMBER_ROLE_PRIMARY;
        free(f->members.members[0].state);
        f->members.members[0].state = strdup("running");
        v = build(f);
        assert_int_equal(clusterview_format_table(v, &t), 0);
        assert_non_null(strstr(t, "WARNING: 2 primaries seen: pg-0, pg-2\n"));
        clusterview_free(v);
}

static void test_stale_heartbeat_shows_no_heartbeat(void **state) {
        struct fixture *f = *state;
        struct clusterview *v;

        f->members.members[2].heartbeat = NOW - 31 * SEC; /* pg-1: over 3 x 10 s */
        v = build(f);
        assert_string_equal(v->rows[1].status, "no heartbeat");
        assert_string_equal(v->warnings[0], "pg-1: no heartbeat for 31 s (more than 3 x status_interval 10s)");
        clusterview_free(v);
}

static void test_lag_over_maximum_is_warned_about(void **state) {
        struct fixture *f = *state;
        struct clusterview *v;
        _cleanup_free_ char *t = NULL;

        f->members.members[0].lsn = 0x3000060 - 3 * MB;
        v = build(f);
        assert_int_equal(v->rows[2].lag_bytes, 3 * MB);
        assert_int_equal(clusterview_format_table(v, &t), 0);
        assert_non_null(strstr(t, "| 3.0 MiB, ? s (stale) |"));
        assert_non_null(strstr(t, "WARNING: pg-2: lag 3.0 MiB is over maximum_lag_on_failover (1.0 MiB): it would not be promoted\n"));
        clusterview_free(v);
}

static void test_probe_marks_unreachable_and_gives_lag_seconds(void **state) {
        struct fixture *f = *state;
        struct clusterview_probe probes[3] = {
                { .probed = true, .reachable = false },
                { .probed = true, .reachable = true, .timeline = 3, .lsn = 0x3000100, .replay_lsn = 0x3000100, .lag_seconds = -1 },
                { .probed = true, .reachable = true, .in_recovery = true, .timeline = 3, .lsn = 0x3000080, .replay_lsn = 0x3000080,
                  .lag_seconds = 0.25 },
        };
        struct clusterview *v;
        _cleanup_free_ char *t = NULL;

        f->src.probes = probes;
        v = build(f);
        assert_string_equal(v->rows[2].status, "unreachable");
        assert_int_equal(v->rows[2].reachable, 0);
        /* The record's lag, marked stale. */
        assert_true(v->rows[2].has_lag);
        assert_true(v->rows[2].stale);
        assert_int_equal(v->rows[1].lag_bytes, 0x80);
        assert_false(v->rows[1].stale);
        assert_false(v->rows[0].stale);
        assert_int_equal(clusterview_format_table(v, &t), 0);
        assert_non_null(strstr(t, "| 128 B, 0.2 s "));
        assert_non_null(strstr(t, "| 256 B, ? s (stale) "));
        assert_non_null(strstr(t, "WARNING: pg-2: PostgreSQL unreachable at 10.0.0.2:5432\n"));
        clusterview_free(v);
}

/* Issue 19, item 1: the primary's live LSN is the reference; a standby
 * whose record is newer than the primary's never shows as ahead of it. */
static void test_live_primary_lsn_is_the_reference_and_no_replica_is_ahead(void **state) {
        struct fixture *f = *state;
        struct clusterview_probe probes[3] = {
                { .probed = true, .reachable = true, .in_recovery = true, .timeline = 3, .lsn = 0x3000200, .replay_lsn = 0x3000200,
                  .lag_seconds = 0 },
                { .probed = true, .reachable = true, .timeline = 3, .lsn = 0x3000400, .replay_lsn = 0x3000400, .lag_seconds = -1 },
                { .probed = true, .reachable = true, .in_recovery = true, .timeline = 3, .lsn = 0x3000400, .replay_lsn = 0x3000400,
                  .lag_seconds = 0.5 },
        };
        struct clusterview *v;
        _cleanup_free_ char *t = NULL;
        cJSON *o = NULL, *m;

        f->members.members[2].lsn = 0x3000900; /* pg-1's record: newer than pg-0's */
        f->src.probes = probes;
        v = build(f);
        assert_int_equal(v->rows[0].lsn, 0x3000400);
        for (size_t i = 1; i < v->n; i++) {
                assert_true(v->rows[i].lsn <= v->rows[0].lsn);
                assert_false(v->rows[i].stale);
        }
        assert_int_equal(v->rows[1].lag_bytes, 0);
        assert_int_equal(v->rows[2].lag_bytes, 0x200);
        assert_int_equal(clusterview_format_table(v, &t), 0);
        assert_non_null(strstr(t, " pg-0 | primary | running   | 3        | 0/3000400 | 0 B, 0.0 s   |"));
        assert_non_null(strstr(t, " pg-1 | replica | streaming | 3        | 0/3000400 | 0 B, 0.5 s   |"));
        assert_non_null(strstr(t, " pg-2 | replica | streaming | 3        | 0/3000200 | 512 B, 0.0 s |"));
        assert_int_equal(clusterview_to_json(v, &o), 0);
        m = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "members"), 2);
        assert_int_equal(cJSON_GetObjectItem(m, "lag_bytes")->valueint, 512);
        assert_true(cJSON_IsFalse(cJSON_GetObjectItem(m, "stale")));
        cJSON_Delete(o);
        clusterview_free(v);
}

/* Issue 19, item 2: the old primary, dead after a failover, is not a
 * second primary; a paused cluster whose leader is gone says so. */
static void test_silent_member_is_never_a_second_primary(void **state) {
        struct fixture *f = *state;
        struct clusterview_probe probes[3] = {
                { .probed = true, .reachable = true, .in_recovery = true, .timeline = 4, .lsn = 0x3000200, .replay_lsn = 0x3000200 },
                { .probed = true, .reachable = false },
                { .probed = true, .reachable = true, .timeline = 4, .lsn = 0x3000400, .replay_lsn = 0x3000400, .lag_seconds = -1 },
        };
        struct clusterview *v;
        _cleanup_free_ char *t = NULL;

        free(f->lease.holder);
        f->lease.holder = strdup("pg-1");
        f->members.members[1].heartbeat = NOW - 25 * SEC; /* pg-0: the old primary */
        f->members.members[2].role = MEMBER_ROLE_PRIMARY;
        f->src.lease_duration = 10 * SEC;
        f->src.probes = probes;
        v = build(f);
        assert_string_equal(v->rows[0].role, "unknown");
        assert_string_equal(v->rows[0].status, "stopped");
        assert_string_equal(v->rows[1].role, "primary");
        assert_int_equal(clusterview_format_table(v, &t), 0);
        assert_null(strstr(t, "primaries seen"));
        clusterview_free(v);
        t = mfree(t);

        /* Without a probe: "no heartbeat", still not a primary. */
        f->src.probes = NULL;
        free(f->lease.holder);
        f->lease.holder = strdup("pg-0");
        f->lease.paused = true;
        f->src.lease_age = 25;
        v = build(f);
        assert_string_equal(v->rows[0].role, "unknown");
        assert_string_equal(v->rows[0].status, "no heartbeat");
        assert_true(v->lease_expired);
        assert_int_equal(clusterview_format_table(v, &t), 0);
        assert_non_null(strstr(t, "Cluster pg: leader pg-0 is gone (lease expired), lease record age 25.0 s"));
        assert_non_null(strstr(t, "\nThe leader is gone and failover is suspended while the cluster is paused: agentctl resume\n"));
        clusterview_free(v);
}

static void test_unreadable_lease_and_no_leader(void **state) {
        struct fixture *f = *state;
        struct clusterview *v;
        _cleanup_free_ char *t = NULL;

        f->src.lease = NULL;
        v = build(f);
        assert_int_equal(clusterview_format_table(v, &t), 0);
        assert_non_null(strstr(t, "Cluster pg: leader unknown (lease unreadable), sync: none, paused: no\n"));
        assert_non_null(strstr(t, "WARNING: the leader lease could not be read\n"));
        clusterview_free(v);
        t = mfree(t);

        f->src.lease = &f->lease;
        free(f->lease.holder);
        f->lease.holder = strdup("");
        f->lease.paused = true;
        v = build(f);
        assert_int_equal(clusterview_format_table(v, &t), 0);
        assert_non_null(strstr(t, "no leader"));
        assert_non_null(strstr(t, "paused: yes"));
        assert_non_null(strstr(t, "WARNING: nobody holds the leader lease\n"));
        clusterview_free(v);
}

static void test_json_has_the_documented_fields(void **state) {
        struct fixture *f = *state;
        struct clusterview *v;
        cJSON *o = NULL, *m, *lease;

        f->members.members[1].nofailover = true;
        v = build(f);
        assert_int_equal(clusterview_to_json(v, &o), 0);
        assert_int_equal(cJSON_GetObjectItem(o, "schema_version")->valueint, 1);
        assert_string_equal(cJSON_GetObjectItem(o, "cluster")->valuestring, "pg");
        assert_string_equal(cJSON_GetObjectItem(o, "source")->valuestring, "agent");
        lease = cJSON_GetObjectItem(o, "lease");
        assert_string_equal(cJSON_GetObjectItem(lease, "holder")->valuestring, "pg-0");
        assert_int_equal(cJSON_GetObjectItem(lease, "transitions")->valueint, 4);
        assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(lease, "sync"), 0)->valuestring, "pg-1");
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(lease, "optime"), "lsn")->valuestring, "0/3000060");
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "members")), 3);
        m = cJSON_GetArrayItem(cJSON_GetObjectItem(o, "members"), 0);
        assert_string_equal(cJSON_GetObjectItem(m, "name")->valuestring, "pg-0");
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(m, "leader")));
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(m, "nofailover")));
        assert_string_equal(cJSON_GetObjectItem(m, "host")->valuestring, "10.0.0.0");
        assert_int_equal(cJSON_GetObjectItem(m, "port")->valueint, 5432);
        assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(m, "tags"), 0)->valuestring, "zone-a");
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(m, "reachable")));
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(m, "lag_seconds")) || cJSON_IsNumber(cJSON_GetObjectItem(m, "lag_seconds")));
        assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "warnings")), 0);
        cJSON_Delete(o);
        clusterview_free(v);
}

static void test_bytes_are_formatted_in_powers_of_1024(void **state) {
        const struct { uint64_t b; const char *s; } cases[] = {
                { 0, "0 B" }, { 1023, "1023 B" }, { 1024, "1.0 KiB" }, { 1536, "1.5 KiB" }, { 3 * MB, "3.0 MiB" },
                { 5ULL << 40, "5.0 TiB" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *s = clusterview_format_bytes(cases[i].b);

                assert_string_equal(s, cases[i].s);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, setup, teardown)
                T(test_rows_are_sorted_with_lag_against_the_leader),
                T(test_healthy_table_has_header_columns_and_no_warnings),
                T(test_two_primaries_are_warned_about),
                T(test_stale_heartbeat_shows_no_heartbeat),
                T(test_lag_over_maximum_is_warned_about),
                T(test_probe_marks_unreachable_and_gives_lag_seconds),
                T(test_live_primary_lsn_is_the_reference_and_no_replica_is_ahead),
                T(test_silent_member_is_never_a_second_primary),
                T(test_unreadable_lease_and_no_leader),
                T(test_json_has_the_documented_fields),
                cmocka_unit_test(test_bytes_are_formatted_in_powers_of_1024),
#undef T
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
