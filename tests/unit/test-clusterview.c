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
        assert_non_null(strstr(t, " Name | Role    | Status    | Timeline | LSN       | Lag  | Priority | Tags   | Host\n"));
        assert_non_null(strstr(t, " pg-0 | primary | running   | 3        | 0/3000060 | 0 B  | 100      | zone-a | 10.0.0.0:5432\n"));
        assert_non_null(strstr(t, " pg-2 | replica | streaming | 3        | 0/3000000 | 96 B | 100      | zone-a | 10.0.0.2:5432\n"));
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
        assert_non_null(strstr(t, "| 3.0 MB |"));
        assert_non_null(strstr(t, "WARNING: pg-2: lag 3.0 MB is over maximum_lag_on_failover (1.0 MB): it would not be promoted\n"));
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
        assert_false(v->rows[2].has_lag);
        assert_int_equal(v->rows[1].lag_bytes, 0x80);
        assert_int_equal(clusterview_format_table(v, &t), 0);
        assert_non_null(strstr(t, "128 B, 0.2 s"));
        assert_non_null(strstr(t, "WARNING: pg-2: PostgreSQL unreachable at 10.0.0.2:5432\n"));
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
                { 0, "0 B" }, { 1023, "1023 B" }, { 1024, "1.0 kB" }, { 1536, "1.5 kB" }, { 3 * MB, "3.0 MB" },
                { 5ULL << 40, "5.0 TB" },
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
                T(test_unreadable_lease_and_no_leader),
                T(test_json_has_the_documented_fields),
                cmocka_unit_test(test_bytes_are_formatted_in_powers_of_1024),
#undef T
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
