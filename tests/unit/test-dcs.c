/* test-dcs.c: the DCS records: member status JSON, and the leader record's
 * mapping to and from a Kubernetes Lease. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "dcs-kube.h"
#include "dcs.h"
#include "util.h"

#define T0 (1764102771ULL * USEC_PER_SEC)

static void test_member_json_round_trip(void **state) {
        struct dcs_member m = {
                .name = (char *) "pg-1", .role = MEMBER_ROLE_REPLICA, .state = (char *) "streaming",
                .timeline = 3, .lsn = 0x3000060, .replay_lsn = (2ULL << 32) | 0x28, .host = (char *) "10.0.0.7",
                .port = 5432, .priority = 100, .nofailover = true, .tags = (char *) "zone=a",
                .heartbeat = T0 + 42, .api_version = (char *) "0.1.0",
        };
        _cleanup_free_ char *json = NULL;
        struct dcs_member back = {};

        assert_int_equal(dcs_member_to_json(&m, &json), 0);
        assert_non_null(strstr(json, "\"lsn\":\"0/3000060\""));
        assert_non_null(strstr(json, "\"replay_lsn\":\"2/28\""));
        assert_non_null(strstr(json, "\"heartbeat\":\"2025-11-25T20:32:51.000042Z\""));
        assert_int_equal(dcs_member_from_json("pg-1", json, &back), 0);
        assert_string_equal(back.name, "pg-1");
        assert_int_equal(back.role, MEMBER_ROLE_REPLICA);
        assert_string_equal(back.state, "streaming");
        assert_int_equal(back.timeline, 3);
        assert_int_equal(back.lsn, 0x3000060);
        assert_int_equal(back.replay_lsn, (2ULL << 32) | 0x28);
        assert_string_equal(back.host, "10.0.0.7");
        assert_int_equal(back.port, 5432);
        assert_int_equal(back.priority, 100);
        assert_true(back.nofailover);
        assert_string_equal(back.tags, "zone=a");
        assert_int_equal(back.heartbeat, T0 + 42);
        assert_string_equal(back.api_version, "0.1.0");
        dcs_member_done(&back);
}

static void test_member_json_malformed_is_rejected_and_ret_untouched(void **state) {
        static const char *const bad[] = {
                "", "not json", "[1,2]", "{\"role\":\"primary\"", "{\"role\":\"primary\",\"state\":\"x\"}junk",
                "{\"state\":\"running\"}",                                      /* no role */
                "{\"role\":\"boss\",\"state\":\"running\"}",                    /* unknown role */
                "{\"role\":\"primary\"}",                                       /* no state */
                "{\"role\":\"primary\",\"state\":\"r\",\"timeline\":\"3\"}",    /* wrong type */
                "{\"role\":\"primary\",\"state\":\"r\",\"timeline\":-1}",
                "{\"role\":\"primary\",\"state\":\"r\",\"lsn\":\"3000060\"}",   /* not X/X */
                "{\"role\":\"primary\",\"state\":\"r\",\"port\":70000}",
                "{\"role\":\"primary\",\"state\":\"r\",\"nofailover\":\"yes\"}",
                "{\"role\":\"primary\",\"state\":\"r\",\"heartbeat\":\"yesterday\"}",
        };
        struct dcs_member m = { .port = 77 };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                int r = dcs_member_from_json("x", bad[i], &m);
                if (r != -EBADMSG && r != -EINVAL)
                        fail_msg("accepted: %s (%d)", bad[i], r);
                assert_int_equal(m.port, 77);
                assert_null(m.name);
        }
        assert_int_equal(dcs_member_from_json("x", "{\"role\":\"unknown\",\"state\":\"unknown\",\"future\":1}", &m), 0);
        assert_int_equal(m.role, MEMBER_ROLE_UNKNOWN);
        dcs_member_done(&m);
}

static void test_member_role_strings(void **state) {
        assert_string_equal(member_role_to_string(MEMBER_ROLE_PRIMARY), "primary");
        assert_string_equal(member_role_to_string(MEMBER_ROLE_REPLICA), "replica");
        assert_string_equal(member_role_to_string(MEMBER_ROLE_UNKNOWN), "unknown");
        assert_null(member_role_to_string(_MEMBER_ROLE_MAX));
        assert_int_equal(member_role_from_string("replica"), MEMBER_ROLE_REPLICA);
        assert_int_equal(member_role_from_string("Replica"), _MEMBER_ROLE_INVALID);
        assert_int_equal(member_role_from_string(NULL), _MEMBER_ROLE_INVALID);
}

static void test_lsn_text_form(void **state) {
        _cleanup_free_ char *s = dcs_lsn_format((0x1AULL << 32) | 0xB0000A8);
        uint64_t lsn;

        assert_string_equal(s, "1A/B0000A8");
        assert_int_equal(dcs_lsn_parse("1a/b0000a8", &lsn), 0);
        assert_int_equal(lsn, (0x1AULL << 32) | 0xB0000A8);
        assert_int_equal(dcs_lsn_parse("0/0", &lsn), 0);
        assert_int_equal(lsn, 0);
        assert_int_equal(dcs_lsn_parse("0/", &lsn), -EINVAL);
        assert_int_equal(dcs_lsn_parse("/1", &lsn), -EINVAL);
        assert_int_equal(dcs_lsn_parse("100000000/0", &lsn), -EINVAL);
        assert_int_equal(dcs_lsn_parse("0/1x", &lsn), -EINVAL);
}

static void test_leader_copy_is_deep(void **state) {
        _cleanup_strv_free_ char **sync = NULL;
        struct dcs_leader l = { .holder = (char *) "pg-0", .version = (char *) "7", .raw = (char *) "{}",
                                .transitions = 4, .successor = (char *) "pg-1" };
        _cleanup_(dcs_leader_freep) struct dcs_leader *c = NULL;

        assert_int_equal(strv_split_comma("pg-1,pg-2", &sync), 0);
        l.sync = sync;
        assert_int_equal(dcs_leader_copy(&l, &c), 0);
        assert_ptr_not_equal(c->holder, l.holder);
        assert_string_equal(c->holder, "pg-0");
        assert_string_equal(c->sync[1], "pg-2");
        assert_ptr_not_equal(c->sync, l.sync);
        assert_string_equal(c->successor, "pg-1");
        assert_null(c->switchover);
        assert_int_equal(c->transitions, 4);
}

static cJSON *parse(const char *s) {
        cJSON *j = cJSON_Parse(s);

        assert_non_null(j);
        return j;
}

static const char *spec_str(const cJSON *lease, const char *key) {
        const cJSON *j = cJSON_GetObjectItem(cJSON_GetObjectItem(lease, "spec"), key);

        return cJSON_IsString(j) ? j->valuestring : NULL;
}

static const char *annotation(const cJSON *lease, const char *key) {
        const cJSON *j = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(lease, "metadata"),
                                                                 "annotations"), key);

        return cJSON_IsString(j) ? j->valuestring : NULL;
}

static void test_leader_to_lease_writes_microtime_and_annotations(void **state) {
        _cleanup_strv_free_ char **sync = NULL;
        struct dcs_leader l = {
                .holder = (char *) "pg-0", .lease_duration = 10 * USEC_PER_SEC,
                .acquire_time = T0, .renew_time = T0 + 1500 * USEC_PER_MSEC, .transitions = 2,
                .optime_timeline = 3, .optime_lsn = 0x3000060, .paused = true,
                .successor = (char *) "pg-1", .successor_lsn = 0x3000100, .version = (char *) "41",
                .sync_mode = DCS_SYNC_MODE_STRICT,
        };
        _cleanup_(cjson_deletep) cJSON *lease = NULL;

        assert_int_equal(strv_split_comma("pg-1,pg-2", &sync), 0);
        l.sync = sync;
        assert_int_equal(dcs_kube_leader_to_lease(&l, NULL, "db", "main-leader", &lease), 0);
        assert_string_equal(cJSON_GetObjectItem(lease, "kind")->valuestring, "Lease");
        assert_string_equal(cJSON_GetObjectItem(lease, "apiVersion")->valuestring, "coordination.k8s.io/v1");
        assert_string_equal(spec_str(lease, "holderIdentity"), "pg-0");
        assert_string_equal(spec_str(lease, "acquireTime"), "2025-11-25T20:32:51.000000Z");
        assert_string_equal(spec_str(lease, "renewTime"), "2025-11-25T20:32:52.500000Z");
        assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(lease, "spec"), "leaseDurationSeconds")->valueint, 10);
        assert_int_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(lease, "spec"), "leaseTransitions")->valueint, 2);
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(lease, "metadata"), "resourceVersion")->valuestring, "41");
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(lease, "metadata"), "name")->valuestring, "main-leader");
        assert_string_equal(annotation(lease, DCS_ANNOTATION_OPTIME), "3/0/3000060");
        assert_string_equal(annotation(lease, DCS_ANNOTATION_SYNC), "pg-1,pg-2");
        assert_string_equal(annotation(lease, DCS_ANNOTATION_SYNC_MODE), "strict");
        assert_string_equal(annotation(lease, DCS_ANNOTATION_PAUSED), "true");
        assert_string_equal(annotation(lease, DCS_ANNOTATION_SUCCESSOR), "pg-1");
        assert_string_equal(annotation(lease, DCS_ANNOTATION_SUCCESSOR_LSN), "0/3000100");
        assert_null(annotation(lease, DCS_ANNOTATION_SWITCHOVER));
}

static void test_leader_to_lease_keeps_unknown_fields_and_drops_cleared_annotations(void **state) {
        _cleanup_(cjson_deletep) cJSON *base = parse(
                "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\","
                "\"metadata\":{\"name\":\"main-leader\",\"namespace\":\"db\",\"resourceVersion\":\"41\","
                "\"uid\":\"u-1\",\"labels\":{\"app\":\"pg\"},"
                "\"annotations\":{\"other.io/x\":\"y\",\"pglease.io/paused\":\"true\",\"pglease.io/sync\":\"pg-2\"}},"
                "\"spec\":{\"holderIdentity\":\"pg-0\",\"leaseDurationSeconds\":10,\"preferredHolder\":\"pg-9\","
                "\"strategy\":\"OldestEmulationVersion\"}}");
        struct dcs_leader l = { .holder = (char *) "", .lease_duration = 1 * USEC_PER_SEC, .version = (char *) "41" };
        _cleanup_(cjson_deletep) cJSON *lease = NULL;

        assert_int_equal(dcs_kube_leader_to_lease(&l, base, "db", "main-leader", &lease), 0);
        assert_string_equal(spec_str(lease, "holderIdentity"), "");
        assert_string_equal(spec_str(lease, "preferredHolder"), "pg-9");
        assert_string_equal(spec_str(lease, "strategy"), "OldestEmulationVersion");
        assert_null(spec_str(lease, "acquireTime"));
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(lease, "metadata"), "uid")->valuestring, "u-1");
        assert_string_equal(annotation(lease, "other.io/x"), "y");
        assert_null(annotation(lease, DCS_ANNOTATION_PAUSED));
        assert_null(annotation(lease, DCS_ANNOTATION_SYNC));
        assert_null(annotation(lease, DCS_ANNOTATION_SYNC_MODE));
        /* The base is not modified. */
        assert_string_equal(annotation(base, DCS_ANNOTATION_PAUSED), "true");
}

static void test_leader_from_lease_reads_server_times_with_0_3_9_digits(void **state) {
        static const struct {
                const char *t;
                usec_t want;
        } times[] = {
                { "2025-11-25T20:32:51Z", T0 },
                { "2025-11-25T20:32:51.123Z", T0 + 123000 },
                { "2025-11-25T20:32:51.123456Z", T0 + 123456 },
                { "2025-11-25T20:32:51.123456789Z", T0 + 123456 },
        };

        for (size_t i = 0; i < ELEMENTSOF(times); i++) {
                _cleanup_free_ char *s = strdup_printf(
                        "{\"metadata\":{\"resourceVersion\":\"9\",\"annotations\":{\"pglease.io/optime\":\"3/0/3000060\","
                        "\"pglease.io/sync\":\"pg-1, pg-2\",\"pglease.io/switchover\":\"pg-2\"%s}},"
                        "\"spec\":{\"holderIdentity\":\"pg-0\",\"leaseDurationSeconds\":15,"
                        "\"acquireTime\":\"%s\",\"renewTime\":\"%s\",\"leaseTransitions\":5}}",
                        i % 2 ? ",\"pglease.io/sync-mode\":\"on\"" : "", times[i].t, times[i].t);
                _cleanup_(cjson_deletep) cJSON *lease = parse(s);
                _cleanup_(dcs_leader_freep) struct dcs_leader *l = NULL;

                assert_int_equal(dcs_kube_leader_from_lease(lease, &l), 0);
                assert_string_equal(l->holder, "pg-0");
                assert_int_equal(l->lease_duration, 15 * USEC_PER_SEC);
                assert_int_equal(l->acquire_time, times[i].want);
                assert_int_equal(l->renew_time, times[i].want);
                assert_int_equal(l->transitions, 5);
                assert_int_equal(l->optime_timeline, 3);
                assert_int_equal(l->optime_lsn, 0x3000060);
                assert_string_equal(l->sync[0], "pg-1");
                assert_string_equal(l->sync[1], "pg-2");
                assert_null(l->sync[2]);
                /* A record written before the mode was published has none. */
                assert_int_equal(l->sync_mode, i % 2 ? DCS_SYNC_MODE_ON : DCS_SYNC_MODE_UNKNOWN);
                assert_string_equal(l->switchover, "pg-2");
                assert_false(l->paused);
                assert_string_equal(l->version, "9");
                assert_non_null(strstr(l->raw, "\"resourceVersion\":\"9\""));
        }
}

static void test_leader_raw_changes_with_any_write(void **state) {
        _cleanup_(cjson_deletep) cJSON *a = parse("{\"metadata\":{\"resourceVersion\":\"9\"},\"spec\":{\"holderIdentity\":\"pg-0\"}}");
        _cleanup_(cjson_deletep) cJSON *b = parse("{\"metadata\":{\"resourceVersion\":\"10\"},\"spec\":{\"holderIdentity\":\"pg-0\"}}");
        _cleanup_(cjson_deletep) cJSON *c = parse("{\"metadata\":{\"resourceVersion\":\"9\",\"annotations\":{\"k\":\"v\"}},\"spec\":{\"holderIdentity\":\"pg-0\"}}");
        _cleanup_(dcs_leader_freep) struct dcs_leader *la = NULL, *lb = NULL, *lc = NULL;

        assert_int_equal(dcs_kube_leader_from_lease(a, &la), 0);
        assert_int_equal(dcs_kube_leader_from_lease(b, &lb), 0);
        assert_int_equal(dcs_kube_leader_from_lease(c, &lc), 0);
        assert_string_not_equal(la->raw, lb->raw);
        assert_string_not_equal(la->raw, lc->raw);
        /* An empty spec: nobody holds it. */
        assert_string_equal(la->holder, "pg-0");
}

static void test_leader_from_lease_rejects_bad_objects(void **state) {
        static const char *const bad[] = {
                "[]", "{}", "{\"spec\":3}",
                "{\"spec\":{\"leaseDurationSeconds\":\"10\"}}",
                "{\"spec\":{\"renewTime\":\"soon\"}}",
                "{\"spec\":{},\"metadata\":{\"annotations\":[]}}",
        };
        struct dcs_leader *l = NULL;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_(cjson_deletep) cJSON *j = parse(bad[i]);

                assert_int_equal(dcs_kube_leader_from_lease(j, &l), -EBADMSG);
                assert_null(l);
        }
}

static void test_leader_round_trip_through_lease(void **state) {
        struct dcs_leader l = {
                .holder = (char *) "pg-2", .lease_duration = 7 * USEC_PER_SEC, .acquire_time = T0 + 5,
                .renew_time = T0 + 6, .transitions = 9, .optime_timeline = 12, .optime_lsn = (5ULL << 32) | 0x10,
                .switchover = (char *) "*", .version = (char *) "3",
        };
        _cleanup_(cjson_deletep) cJSON *lease = NULL;
        _cleanup_(dcs_leader_freep) struct dcs_leader *back = NULL;

        assert_int_equal(dcs_kube_leader_to_lease(&l, NULL, "db", "x-leader", &lease), 0);
        assert_int_equal(dcs_kube_leader_from_lease(lease, &back), 0);
        assert_string_equal(back->holder, "pg-2");
        assert_int_equal(back->lease_duration, 7 * USEC_PER_SEC);
        assert_int_equal(back->acquire_time, T0 + 5);
        assert_int_equal(back->renew_time, T0 + 6);
        assert_int_equal(back->transitions, 9);
        assert_int_equal(back->optime_timeline, 12);
        assert_int_equal(back->optime_lsn, (5ULL << 32) | 0x10);
        assert_string_equal(back->switchover, "*");
        assert_null(back->successor);
        assert_null(back->sync);
        assert_string_equal(back->version, "3");
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_member_json_round_trip),
                cmocka_unit_test(test_member_json_malformed_is_rejected_and_ret_untouched),
                cmocka_unit_test(test_member_role_strings),
                cmocka_unit_test(test_lsn_text_form),
                cmocka_unit_test(test_leader_copy_is_deep),
                cmocka_unit_test(test_leader_to_lease_writes_microtime_and_annotations),
                cmocka_unit_test(test_leader_to_lease_keeps_unknown_fields_and_drops_cleared_annotations),
                cmocka_unit_test(test_leader_from_lease_reads_server_times_with_0_3_9_digits),
                cmocka_unit_test(test_leader_raw_changes_with_any_write),
                cmocka_unit_test(test_leader_from_lease_rejects_bad_objects),
                cmocka_unit_test(test_leader_round_trip_through_lease),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
