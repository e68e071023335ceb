/* test-httpapi.c: the HTTP API's answers from fixed snapshots: the listen
 * address, each probe's code by role and state, ?lag, and the Prometheus
 * exposition's families and escaping. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "api-stats.h"
#include "httpapi.h"
#include "util.h"

#define MB (1024ULL * 1024ULL)

static struct httpapi_state primary(void) {
        return (struct httpapi_state) {
                .node = "pg-0", .cluster = "pg", .state = "primary", .ticked = true,
                .tick_age = USEC_PER_SEC, .liveness_bound = 10 * USEC_PER_SEC,
                .pg_running = true, .pg_accepting = true, .timeline = 3, .lsn = 0x3000060,
                .replay_lsn = 0x3000060, .replay_lag_seconds = -1, .lease_valid = true, .maximum_lag = 16 * MB,
        };
}

static struct httpapi_state replica(uint64_t lag) {
        return (struct httpapi_state) {
                .node = "pg-1", .cluster = "pg", .state = "replica", .ticked = true,
                .tick_age = USEC_PER_SEC, .liveness_bound = 10 * USEC_PER_SEC,
                .pg_running = true, .pg_accepting = true, .pg_in_recovery = true, .pg_streaming = true,
                .timeline = 3, .lsn = 0x3000000, .replay_lsn = 0x3000000, .replay_lag_seconds = 0.5,
                .has_lag = true, .lag_bytes = lag, .maximum_lag = 16 * MB,
        };
}

static int code_of(enum httpapi_probe p, const struct httpapi_state *s, uint64_t max_lag) {
        _cleanup_free_ char *body = NULL;
        int code = 0;

        assert_int_equal(httpapi_probe_answer(p, s, max_lag, &code, &body), 0);
        assert_non_null(body);
        assert_true(body[0] == '{');
        return code;
}

static void test_listen_addresses(void **state) {
        struct sockaddr_storage ss;
        socklen_t len;

        assert_int_equal(httpapi_parse_listen("127.0.0.1:8008", &ss, &len), 0);
        assert_int_equal(ss.ss_family, AF_INET);
        assert_int_equal(ntohs(((struct sockaddr_in *) &ss)->sin_port), 8008);
        assert_int_equal(len, sizeof(struct sockaddr_in));
        assert_int_equal(httpapi_parse_listen("[::]:1", &ss, &len), 0);
        assert_int_equal(ss.ss_family, AF_INET6);
        assert_int_equal(httpapi_parse_listen("[::1]:65535", &ss, &len), 0);
        assert_int_equal(httpapi_parse_listen("0.0.0.0:8008", &ss, &len), 0);
        for (const char *const *bad = (const char *const[]) { "", "8008", ":8008", "localhost:8008", "127.0.0.1:",
                                                              "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:80x",
                                                              "::1:8008", "[::1]8008", "[127.0.0.1]:80", "[::1:80",
                                                              NULL };
             *bad; bad++)
                assert_int_equal(httpapi_parse_listen(*bad, &ss, &len), -EINVAL);
}

static void test_paths(void **state) {
        assert_int_equal(httpapi_probe_from_path("/primary"), HTTPAPI_PRIMARY);
        assert_int_equal(httpapi_probe_from_path("/leader"), HTTPAPI_PRIMARY);
        assert_int_equal(httpapi_probe_from_path("/standby"), HTTPAPI_REPLICA);
        assert_int_equal(httpapi_probe_from_path("/read-only"), HTTPAPI_READ_ONLY);
        assert_int_equal(httpapi_probe_from_path("/readiness"), HTTPAPI_READINESS);
        assert_int_equal(httpapi_probe_from_path("/primary/"), -ENOENT);
        assert_int_equal(httpapi_probe_from_path("/metrics"), -ENOENT);
        assert_int_equal(httpapi_code_index(200), 1);
        assert_int_equal(httpapi_code_index(418), 0);
        assert_string_equal(httpapi_endpoint_label(HTTPAPI_EP_CLUSTER), "cluster");
        assert_null(httpapi_endpoint_label(HTTPAPI_N_ENDPOINTS));
}

static void test_primary_answers_primary_only_with_a_valid_lease(void **state) {
        struct httpapi_state s = primary();

        assert_int_equal(code_of(HTTPAPI_PRIMARY, &s, UINT64_MAX), 200);
        assert_int_equal(code_of(HTTPAPI_REPLICA, &s, UINT64_MAX), 503);
        assert_int_equal(code_of(HTTPAPI_READ_ONLY, &s, UINT64_MAX), 200);
        assert_int_equal(code_of(HTTPAPI_READINESS, &s, UINT64_MAX), 200);
        /* Writable but the lease is gone (past its renew deadline). */
        s.lease_valid = false;
        assert_int_equal(code_of(HTTPAPI_PRIMARY, &s, UINT64_MAX), 503);
        assert_int_equal(code_of(HTTPAPI_READINESS, &s, UINT64_MAX), 503);
        assert_int_equal(code_of(HTTPAPI_HEALTH, &s, UINT64_MAX), 200);
        /* The lease but Postgres not accepting. */
        s = primary();
        s.pg_accepting = false;
        assert_int_equal(code_of(HTTPAPI_PRIMARY, &s, UINT64_MAX), 503);
        assert_int_equal(code_of(HTTPAPI_HEALTH, &s, UINT64_MAX), 503);
        /* Fenced. */
        s = primary();
        s.fenced = true;
        assert_int_equal(code_of(HTTPAPI_PRIMARY, &s, UINT64_MAX), 503);
        /* Before the first tick nothing is known. */
        s = primary();
        s.ticked = false;
        assert_int_equal(code_of(HTTPAPI_PRIMARY, &s, UINT64_MAX), 503);
        assert_int_equal(code_of(HTTPAPI_LIVENESS, &s, UINT64_MAX), 503);
}

static void test_replica_within_the_lag_bound(void **state) {
        struct httpapi_state s = replica(MB);

        assert_int_equal(code_of(HTTPAPI_REPLICA, &s, UINT64_MAX), 200);
        assert_int_equal(code_of(HTTPAPI_PRIMARY, &s, UINT64_MAX), 503);
        assert_int_equal(code_of(HTTPAPI_READ_ONLY, &s, UINT64_MAX), 200);
        assert_int_equal(code_of(HTTPAPI_READINESS, &s, UINT64_MAX), 200);
        /* ?lag= overrides the bound for /replica, not for readiness. */
        assert_int_equal(code_of(HTTPAPI_REPLICA, &s, MB / 2), 503);
        assert_int_equal(code_of(HTTPAPI_READ_ONLY, &s, MB / 2), 503);
        assert_int_equal(code_of(HTTPAPI_READINESS, &s, MB / 2), 200);
        s = replica(17 * MB);
        assert_int_equal(code_of(HTTPAPI_REPLICA, &s, UINT64_MAX), 503);
        assert_int_equal(code_of(HTTPAPI_READINESS, &s, UINT64_MAX), 503);
        assert_int_equal(code_of(HTTPAPI_REPLICA, &s, 32 * MB), 200);
        /* Not streaming, lag unknown, cloning: not a usable replica. */
        s = replica(0);
        s.pg_streaming = false;
        assert_int_equal(code_of(HTTPAPI_REPLICA, &s, UINT64_MAX), 503);
        s = replica(0);
        s.has_lag = false;
        assert_int_equal(code_of(HTTPAPI_REPLICA, &s, UINT64_MAX), 503);
        s = replica(0);
        s.cloning = true;
        assert_int_equal(code_of(HTTPAPI_READINESS, &s, UINT64_MAX), 503);
        assert_int_equal(code_of(HTTPAPI_LIVENESS, &s, UINT64_MAX), 200);
}

static void test_liveness_follows_the_tick(void **state) {
        struct httpapi_state s = replica(0);

        assert_int_equal(code_of(HTTPAPI_LIVENESS, &s, UINT64_MAX), 200);
        s.tick_age = 11 * USEC_PER_SEC;
        assert_int_equal(code_of(HTTPAPI_LIVENESS, &s, UINT64_MAX), 503);
        assert_int_equal(code_of(HTTPAPI_READINESS, &s, UINT64_MAX), 503);
}

static void test_body_names_the_member(void **state) {
        struct httpapi_state s = replica(4096);
        _cleanup_free_ char *body = NULL;
        int code;

        assert_int_equal(httpapi_probe_answer(HTTPAPI_REPLICA, &s, UINT64_MAX, &code, &body), 0);
        assert_non_null(strstr(body, "\"node\":\"pg-1\""));
        assert_non_null(strstr(body, "\"role\":\"replica\""));
        assert_non_null(strstr(body, "\"lsn\":\"0/3000000\""));
        assert_non_null(strstr(body, "\"lag_bytes\":4096"));
        assert_int_equal(httpapi_probe_answer(_HTTPAPI_PROBE_MAX, &s, UINT64_MAX, &code, &body), -EINVAL);
}

static void test_metrics_exposition(void **state) {
        struct httpapi_state s = primary();
        struct httpapi_standby sb[] = { { .name = "pg-1", .streaming = true, .lag_bytes = 96 },
                                        { .name = "we\"ird\\name\n", .streaming = false, .lag_bytes = 0 } };
        uint64_t requests[HTTPAPI_N_ENDPOINTS][HTTPAPI_N_CODES] = {};
        struct api_stats api = {};
        struct httpapi_metrics m = {
                .s = &s, .version = "0.1.0", .lease_known = true, .lease_held = true, .lease_remaining_seconds = 2.5,
                .lease_transitions = 4, .promotions = 2, .failovers = 1, .switchovers = 1, .fences = 3,
                .api_loop = &api, .ticks = 77, .n_standbys = 2, .standbys = sb,
                .http_requests = (const uint64_t (*)[HTTPAPI_N_CODES]) requests,
        };
        _cleanup_free_ char *text = NULL;

        requests[HTTPAPI_PRIMARY][httpapi_code_index(200)] = 5;
        api_stats_record(&api, "PUT", 200, 3 * USEC_PER_MSEC);
        api_stats_record(&api, "PUT", 200, 40 * USEC_PER_MSEC);
        api_stats_record(&api, "GET", 0, 6 * USEC_PER_SEC);
        api_stats_record(&api, "GET", 418, USEC_PER_MSEC);
        api_stats_record(&api, "BREW", 200, USEC_PER_MSEC);
        requests[HTTPAPI_EP_OTHER][httpapi_code_index(413)] = 2;
        assert_int_equal(httpapi_metrics_format(&m, &text), 0);
        for (const char *const *want = (const char *const[]) {
                     "# TYPE pglease_build_info gauge\npglease_build_info{version=\"0.1.0\"} 1\n",
                     "pglease_role{role=\"primary\"} 1\n",
                     "pglease_role{role=\"replica\"} 0\n",
                     "pglease_agent_state{state=\"primary\"} 1\n",
                     "pglease_lease_held 1\n",
                     "pglease_lease_remaining_seconds 2.5\n",
                     "pglease_lease_transitions 4\n",
                     "# TYPE pglease_failovers_total counter\npglease_failovers_total 1\n",
                     "pglease_fences_total 3\n",
                     "pglease_timeline 3\n",
                     "pglease_wal_lsn_bytes 50331744\n",
                     "pglease_standby_lag_bytes{standby=\"pg-1\"} 96\n",
                     "pglease_standby_streaming{standby=\"we\\\"ird\\\\name\\n\"} 0\n",
                     "pglease_http_requests_total{endpoint=\"primary\",code=\"200\"} 5\n",
                     "pglease_http_requests_total{endpoint=\"other\",code=\"413\"} 2\n",
                     "pglease_api_requests_total{client=\"loop\",verb=\"PUT\",code=\"200\"} 2\n",
                     "pglease_api_requests_total{client=\"loop\",verb=\"GET\",code=\"0\"} 1\n",
                     "pglease_api_requests_total{client=\"loop\",verb=\"GET\",code=\"other\"} 1\n",
                     "pglease_api_request_duration_seconds_bucket{client=\"loop\",verb=\"PUT\",le=\"0.005\"} 1\n",
                     "pglease_api_request_duration_seconds_bucket{client=\"loop\",verb=\"PUT\",le=\"0.05\"} 2\n",
                     "pglease_api_request_duration_seconds_bucket{client=\"loop\",verb=\"GET\",le=\"5\"} 1\n",
                     "pglease_api_request_duration_seconds_bucket{client=\"loop\",verb=\"GET\",le=\"+Inf\"} 2\n",
                     "pglease_api_request_duration_seconds_sum{client=\"loop\",verb=\"PUT\"} 0.043000\n",
                     "pglease_api_request_duration_seconds_count{client=\"loop\",verb=\"PUT\"} 2\n",
                     NULL };
             *want; want++)
                if (!strstr(text, *want))
                        fail_msg("missing %s in:\n%s", *want, text);
        /* A primary has no replication lag of its own. */
        assert_null(strstr(text, "pglease_replication_lag_bytes"));
        text = mfree(text);

        s = replica(4096);
        m = (struct httpapi_metrics) { .s = &s, .version = "0.1.0" };
        assert_int_equal(httpapi_metrics_format(&m, &text), 0);
        assert_non_null(strstr(text, "pglease_replication_lag_bytes 4096\n"));
        assert_non_null(strstr(text, "pglease_replication_lag_seconds 0.5\n"));
        assert_non_null(strstr(text, "pglease_lease_held 0\n"));
        assert_null(strstr(text, "pglease_lease_transitions"));
        assert_null(strstr(text, "pglease_standby_lag_bytes"));
        assert_null(strstr(text, "pglease_http_requests_total"));
}

static void test_failsafe_token_rate_and_body(void **state) {
        struct httpapi_rate rate = {};
        _cleanup_free_ char *leader = NULL;
        int allowed = 0;

        assert_true(httpapi_token_matches("Bearer s3cret", "s3cret"));
        assert_false(httpapi_token_matches("Bearer s3cre", "s3cret"));
        assert_false(httpapi_token_matches("Bearer s3cretx", "s3cret"));
        assert_false(httpapi_token_matches("bearer s3cret", "s3cret"));
        assert_false(httpapi_token_matches("Basic s3cret", "s3cret"));
        assert_false(httpapi_token_matches(NULL, "s3cret"));
        /* An empty token matches nothing, not even an empty header. */
        assert_false(httpapi_token_matches("Bearer ", ""));

        assert_int_equal(httpapi_failsafe_parse("{\"leader\":\"pg-0\"}", 17, &leader), 0);
        assert_string_equal(leader, "pg-0");
        assert_int_equal(httpapi_failsafe_parse("{\"leader\":\"PG_0\"}", 17, &leader), -EINVAL);
        assert_int_equal(httpapi_failsafe_parse("{\"leader\":7}", 12, &leader), -EINVAL);
        assert_int_equal(httpapi_failsafe_parse("[]", 2, &leader), -EINVAL);
        assert_int_equal(httpapi_failsafe_parse("{\"lea", 5, &leader), -EINVAL);

        for (int i = 0; i < 30; i++)
                allowed += httpapi_rate_allow(&rate, 1000 * USEC_PER_SEC + (usec_t) i, 20);
        assert_int_equal(allowed, 20);
        /* A second later: a new window. */
        assert_true(httpapi_rate_allow(&rate, 1001 * USEC_PER_SEC, 20));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_failsafe_token_rate_and_body),
                cmocka_unit_test(test_listen_addresses),
                cmocka_unit_test(test_paths),
                cmocka_unit_test(test_primary_answers_primary_only_with_a_valid_lease),
                cmocka_unit_test(test_replica_within_the_lag_bound),
                cmocka_unit_test(test_liveness_follows_the_tick),
                cmocka_unit_test(test_body_names_the_member),
                cmocka_unit_test(test_metrics_exposition),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
