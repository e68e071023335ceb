/* test-lease-watch.c: the watch protocol (kube-watch.c: lines, events) and
 * the Lease watch's state machine (lease-watch.c), on a scripted clock:
 * what it keeps, when it wakes the loop, and how each breakage falls back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "kube-watch.h"
#include "kube-yaml.h"
#include "lease-watch.h"
#include "util.h"

#define SEC USEC_PER_SEC
#define LEASE(rv, holder) \
        "{\"kind\":\"Lease\",\"metadata\":{\"name\":\"pg-leader\",\"resourceVersion\":\"" rv "\"}," \
        "\"spec\":{\"holderIdentity\":\"" holder "\",\"leaseDurationSeconds\":10}}"
#define EVENT(type, rv, holder) "{\"type\":\"" type "\",\"object\":" LEASE(rv, holder) "}\n"
#define LIST(rv, items) "{\"kind\":\"LeaseList\",\"metadata\":{\"resourceVersion\":\"" rv "\"},\"items\":[" items "]}"

static const struct lease_watch_options opts = {
        .stall_held = 5 * SEC,
        .stall_idle = 330 * SEC,
        .max_line = 4096,
};

static void feed(struct lease_watch *w, const char *s, usec_t now, int expect) {
        assert_int_equal(lease_watch_on_data(w, s, strlen(s), now), expect);
}

static void list(struct lease_watch *w, const char *json, usec_t now) {
        _cleanup_(cjson_deletep) cJSON *j = cJSON_Parse(json);

        assert_non_null(j);
        assert_int_equal(lease_watch_on_list(w, j, now), 0);
}

/* A watch listed at 1 s and streaming from version 5 (held by pg-0). */
static void streaming(struct lease_watch *w) {
        lease_watch_init(w, &opts);
        assert_int_equal(w->state, LEASE_WATCH_NEED_LIST);
        assert_false(lease_watch_fresh(w, 0));
        list(w, LIST("5", LEASE("5", "pg-0")), 1 * SEC);
        assert_int_equal(w->state, LEASE_WATCH_NEED_STREAM);
        assert_string_equal(w->resource_version, "5");
        lease_watch_on_stream_start(w, 1 * SEC);
        w->wake = false;
}

static void test_event_parse_reads_each_type(void **state) {
        static const char *types[] = { "ADDED", "MODIFIED", "DELETED" };
        struct kube_watch_event ev;
        const char *s;

        for (size_t i = 0; i < ELEMENTSOF(types); i++) {
                _cleanup_free_ char *line = strdup_printf("{\"type\":\"%s\",\"object\":%s}", types[i], LEASE("7", "pg-1"));

                assert_int_equal(kube_watch_event_parse(line, strlen(line), &ev), 0);
                assert_int_equal(ev.type, (int) i);
                assert_string_equal(ev.resource_version, "7");
                kube_watch_event_done(&ev);
        }
        s = "{\"type\":\"BOOKMARK\",\"object\":{\"kind\":\"Lease\",\"metadata\":{\"resourceVersion\":\"12\"}}}";
        assert_int_equal(kube_watch_event_parse(s, strlen(s), &ev), 0);
        assert_int_equal(ev.type, KUBE_WATCH_BOOKMARK);
        assert_string_equal(ev.resource_version, "12");
        kube_watch_event_done(&ev);
        s = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\"}}";
        assert_int_equal(kube_watch_event_parse(s, strlen(s), &ev), 0);
        assert_int_equal(ev.type, KUBE_WATCH_ERROR);
        assert_int_equal(ev.code, 410);
        kube_watch_event_done(&ev);
}

static void test_event_parse_refuses_what_is_not_an_event(void **state) {
        static const char *bad[] = {
                "", "null", "[]", "{\"type\":\"ADDED\"}", "{\"type\":\"ADDED\",\"object\":[]}",
                "{\"type\":\"RENAMED\",\"object\":{}}", "{\"type\":7,\"object\":{}}",
                "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{}}}",
                "{\"type\":\"ERROR\",\"object\":{\"code\":\"410\"}}", "{\"type\":\"ADDED\",\"object\":{}",
        };
        struct kube_watch_event ev = { .code = -1 };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                assert_int_equal(kube_watch_event_parse(bad[i], strlen(bad[i]), &ev), -EBADMSG);
                assert_int_equal(ev.code, -1);
        }
}

static void test_buffer_cuts_lines_across_chunks_and_bounds_them(void **state) {
        struct kube_watch_buffer b;
        const char *line;
        size_t len;

        kube_watch_buffer_init(&b, 8);
        assert_int_equal(kube_watch_buffer_feed(&b, "ab", 2), 0);
        assert_int_equal(kube_watch_buffer_next_line(&b, &line, &len), 0);
        assert_int_equal(kube_watch_buffer_feed(&b, "c\r\n\nde\n", 7), 0);
        assert_int_equal(kube_watch_buffer_next_line(&b, &line, &len), 1);
        assert_string_equal(line, "abc");
        assert_int_equal(len, 3);
        assert_int_equal(kube_watch_buffer_next_line(&b, &line, &len), 1);
        assert_string_equal(line, "de");
        assert_int_equal(kube_watch_buffer_next_line(&b, &line, &len), 0);
        /* A line that never ends is not kept growing. */
        assert_int_equal(kube_watch_buffer_feed(&b, "123456789", 9), -EFBIG);
        kube_watch_buffer_done(&b);
        kube_watch_buffer_init(&b, 8);
        assert_int_equal(kube_watch_buffer_feed(&b, "123456789\n", 10), 0);
        assert_int_equal(kube_watch_buffer_next_line(&b, &line, &len), -EFBIG);
        kube_watch_buffer_done(&b);
        kube_watch_buffer_init(&b, 8);
        assert_int_equal(kube_watch_buffer_feed(&b, "a\0b\n", 4), -EBADMSG);
        kube_watch_buffer_done(&b);
}

static void test_list_then_events_keep_the_record_and_its_arrival(void **state) {
        struct lease_watch w;

        streaming(&w);
        assert_true(lease_watch_fresh(&w, 2 * SEC));
        assert_string_equal(w.record->holder, "pg-0");
        assert_int_equal(w.record_at, 1 * SEC);
        /* A renewal split over two chunks: the expiry clock restarts when
         * it arrives; no wake-up for a renewal. */
        feed(&w, "{\"type\":\"MODIFIED\",\"object\":", 2 * SEC, 0);
        feed(&w, LEASE("6", "pg-0") "}\n", 3 * SEC, 0);
        assert_string_equal(w.resource_version, "6");
        assert_int_equal(w.record_at, 3 * SEC);
        assert_false(w.record_taken);
        assert_false(w.wake);
        /* A release wakes the loop. */
        feed(&w, EVENT("MODIFIED", "7", ""), 4 * SEC, 0);
        assert_true(w.wake);
        assert_string_equal(w.record->holder, "");
        /* A bookmark moves the version, not the record. */
        feed(&w, "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"9\"}}}\n", 5 * SEC, 0);
        assert_string_equal(w.resource_version, "9");
        assert_string_equal(w.record->version, "7");
        assert_int_equal(w.count.bookmarks, 1);
        /* Deleted: no record, and the loop is woken. */
        w.wake = false;
        feed(&w, EVENT("DELETED", "10", ""), 6 * SEC, 0);
        assert_null(w.record);
        assert_true(w.have_record);
        assert_true(w.wake);
        lease_watch_done(&w);
}

static void test_an_empty_list_means_no_lease(void **state) {
        struct lease_watch w;
        _cleanup_(cjson_deletep) cJSON *bad = cJSON_Parse(LIST("3", LEASE("1", "a") "," LEASE("2", "b")));

        lease_watch_init(&w, &opts);
        assert_int_equal(lease_watch_on_list(&w, bad, 0), -EBADMSG);
        assert_int_equal(w.state, LEASE_WATCH_NEED_LIST);
        list(&w, LIST("3", ""), 1 * SEC);
        assert_true(w.have_record);
        assert_null(w.record);
        assert_true(w.wake);
        lease_watch_done(&w);
}

static void test_gone_lists_again_whether_status_or_error_event(void **state) {
        struct lease_watch w;

        streaming(&w);
        feed(&w, "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410}}\n", 2 * SEC, -EXFULL);
        assert_int_equal(w.state, LEASE_WATCH_NEED_LIST);
        assert_null(w.resource_version);
        assert_false(lease_watch_fresh(&w, 2 * SEC));
        assert_int_equal(w.count.gone, 1);
        lease_watch_done(&w);

        streaming(&w);
        lease_watch_on_end(&w, 410, 0, NULL, 2 * SEC);
        assert_int_equal(w.state, LEASE_WATCH_NEED_LIST);
        assert_int_equal(w.count.gone, 1);
        lease_watch_done(&w);
}

static void test_clean_end_resumes_at_once_from_the_last_version(void **state) {
        struct lease_watch w;

        streaming(&w);
        feed(&w, EVENT("MODIFIED", "6", "pg-0"), 2 * SEC, 0);
        lease_watch_on_end(&w, 200, 0, NULL, 300 * SEC);
        assert_int_equal(w.state, LEASE_WATCH_NEED_STREAM);
        assert_string_equal(w.resource_version, "6");
        assert_int_equal(w.retry_at, 300 * SEC);
        assert_int_equal(w.failures, 0);
        lease_watch_done(&w);
}

static void test_dropped_streams_back_off_and_list_after_three(void **state) {
        struct lease_watch w;
        usec_t now = 2 * SEC;

        streaming(&w);
        for (int i = 1; i <= 3; i++) {
                lease_watch_on_end(&w, 0, -EIO, "connection reset", now);
                assert_int_equal(w.failures, i);
                assert_true(w.retry_at > now);
                assert_false(lease_watch_fresh(&w, now));
                if (i < 3) {
                        assert_int_equal(w.state, LEASE_WATCH_NEED_STREAM);
                        assert_string_equal(w.resource_version, "5");
                        now = w.retry_at;
                        lease_watch_on_stream_start(&w, now);
                }
        }
        assert_int_equal(w.state, LEASE_WATCH_NEED_LIST);
        assert_null(w.resource_version);
        lease_watch_done(&w);
}

static void test_refused_watch_waits_minutes_before_asking_again(void **state) {
        struct lease_watch w;

        streaming(&w);
        lease_watch_on_end(&w, 403, 0, NULL, 2 * SEC);
        assert_int_equal(w.state, LEASE_WATCH_NEED_LIST);
        assert_true(w.retry_at >= 2 * SEC + 300 * SEC);
        lease_watch_done(&w);
}

static void test_silence_breaks_a_held_stream_but_not_an_idle_one(void **state) {
        struct lease_watch w;

        streaming(&w);
        /* Held: renewals are due; 5 s of nothing is a stall. */
        assert_int_equal(lease_watch_stall_at(&w), 6 * SEC);
        assert_false(lease_watch_check_stall(&w, 6 * SEC - 1));
        assert_true(lease_watch_fresh(&w, 6 * SEC - 1));
        assert_false(lease_watch_fresh(&w, 6 * SEC));
        assert_true(lease_watch_check_stall(&w, 6 * SEC));
        assert_int_equal(w.state, LEASE_WATCH_NEED_LIST);
        assert_int_equal(w.count.stalls, 1);
        assert_false(lease_watch_check_stall(&w, 60 * SEC));
        lease_watch_done(&w);

        /* Released: nobody writes; only the server's timeout ends it. */
        streaming(&w);
        feed(&w, EVENT("MODIFIED", "6", ""), 2 * SEC, 0);
        assert_false(lease_watch_check_stall(&w, 100 * SEC));
        assert_true(lease_watch_fresh(&w, 100 * SEC));
        assert_true(lease_watch_check_stall(&w, 332 * SEC));
        lease_watch_done(&w);
}

static void test_garbage_and_oversized_events_break_the_stream(void **state) {
        struct lease_watch w;
        _cleanup_free_ char *big = NULL;

        streaming(&w);
        feed(&w, "not json\n", 2 * SEC, -EBADMSG);
        assert_int_equal(w.state, LEASE_WATCH_NEED_LIST);
        lease_watch_done(&w);

        streaming(&w);
        big = malloc(opts.max_line + 2);
        memset(big, 'x', opts.max_line + 1);
        big[opts.max_line + 1] = '\0';
        feed(&w, big, 2 * SEC, -EFBIG);
        assert_int_equal(w.state, LEASE_WATCH_NEED_LIST);
        /* Bytes after the break are not taken. */
        feed(&w, EVENT("MODIFIED", "9", "pg-1"), 3 * SEC, -ESTALE);
        assert_string_equal(w.record->holder, "pg-0");
        lease_watch_done(&w);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_event_parse_reads_each_type),
                cmocka_unit_test(test_event_parse_refuses_what_is_not_an_event),
                cmocka_unit_test(test_buffer_cuts_lines_across_chunks_and_bounds_them),
                cmocka_unit_test(test_list_then_events_keep_the_record_and_its_arrival),
                cmocka_unit_test(test_an_empty_list_means_no_lease),
                cmocka_unit_test(test_gone_lists_again_whether_status_or_error_event),
                cmocka_unit_test(test_clean_end_resumes_at_once_from_the_last_version),
                cmocka_unit_test(test_dropped_streams_back_off_and_list_after_three),
                cmocka_unit_test(test_refused_watch_waits_minutes_before_asking_again),
                cmocka_unit_test(test_silence_breaks_a_held_stream_but_not_an_idle_one),
                cmocka_unit_test(test_garbage_and_oversized_events_break_the_stream),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
