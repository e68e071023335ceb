/* test-lease-watch.c: the watch protocol (kube-watch.c: lines, events), the
 * stream's state machine (kube-watch-stream.c) and its two kinds, the Lease
 * (lease-watch.c) and the member Pods (pod-watch.c), on a scripted clock:
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
#include "pod-watch.h"
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

/* Either kind's stream: bytes of the stream, a list. */
static void feed(struct kube_watch *w, const char *s, usec_t now, int expect) {
        assert_int_equal(kube_watch_on_data(w, s, strlen(s), now), expect);
}

static void list(struct kube_watch *w, const char *json, usec_t now) {
        _cleanup_(cjson_deletep) cJSON *j = cJSON_Parse(json);

        assert_non_null(j);
        assert_int_equal(kube_watch_on_list(w, j, now), 0);
}

/* A watch listed at 1 s and streaming from version 5 (held by pg-0). */
static void streaming(struct lease_watch *w) {
        lease_watch_init(w, &opts);
        assert_int_equal(w->s.state, KUBE_WATCH_NEED_LIST);
        assert_false(lease_watch_fresh(w, 0));
        list(&w->s, LIST("5", LEASE("5", "pg-0")), 1 * SEC);
        assert_int_equal(w->s.state, KUBE_WATCH_NEED_STREAM);
        assert_string_equal(w->s.resource_version, "5");
        kube_watch_on_stream_start(&w->s, 1 * SEC);
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
        feed(&w.s, "{\"type\":\"MODIFIED\",\"object\":", 2 * SEC, 0);
        feed(&w.s, LEASE("6", "pg-0") "}\n", 3 * SEC, 0);
        assert_string_equal(w.s.resource_version, "6");
        assert_int_equal(w.record_at, 3 * SEC);
        assert_false(w.record_taken);
        assert_false(w.wake);
        /* A release wakes the loop. */
        feed(&w.s, EVENT("MODIFIED", "7", ""), 4 * SEC, 0);
        assert_true(w.wake);
        assert_string_equal(w.record->holder, "");
        /* A bookmark moves the version, not the record. */
        feed(&w.s, "{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"9\"}}}\n", 5 * SEC, 0);
        assert_string_equal(w.s.resource_version, "9");
        assert_string_equal(w.record->version, "7");
        assert_int_equal(w.s.count.bookmarks, 1);
        /* Deleted: no record, and the loop is woken. */
        w.wake = false;
        feed(&w.s, EVENT("DELETED", "10", ""), 6 * SEC, 0);
        assert_null(w.record);
        assert_true(w.have_record);
        assert_true(w.wake);
        lease_watch_done(&w);
}

static void test_an_empty_list_means_no_lease(void **state) {
        struct lease_watch w;
        _cleanup_(cjson_deletep) cJSON *bad = cJSON_Parse(LIST("3", LEASE("1", "a") "," LEASE("2", "b")));

        lease_watch_init(&w, &opts);
        assert_int_equal(kube_watch_on_list(&w.s, bad, 0), -EBADMSG);
        assert_int_equal(w.s.state, KUBE_WATCH_NEED_LIST);
        list(&w.s, LIST("3", ""), 1 * SEC);
        assert_true(w.have_record);
        assert_null(w.record);
        assert_true(w.wake);
        lease_watch_done(&w);
}

static void test_gone_lists_again_whether_status_or_error_event(void **state) {
        struct lease_watch w;

        streaming(&w);
        feed(&w.s, "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410}}\n", 2 * SEC, -EXFULL);
        assert_int_equal(w.s.state, KUBE_WATCH_NEED_LIST);
        assert_null(w.s.resource_version);
        assert_false(lease_watch_fresh(&w, 2 * SEC));
        assert_int_equal(w.s.count.gone, 1);
        lease_watch_done(&w);

        streaming(&w);
        kube_watch_on_end(&w.s, 410, 0, NULL, 2 * SEC);
        assert_int_equal(w.s.state, KUBE_WATCH_NEED_LIST);
        assert_int_equal(w.s.count.gone, 1);
        lease_watch_done(&w);
}

static void test_clean_end_resumes_at_once_from_the_last_version(void **state) {
        struct lease_watch w;

        streaming(&w);
        feed(&w.s, EVENT("MODIFIED", "6", "pg-0"), 2 * SEC, 0);
        kube_watch_on_end(&w.s, 200, 0, NULL, 300 * SEC);
        assert_int_equal(w.s.state, KUBE_WATCH_NEED_STREAM);
        assert_string_equal(w.s.resource_version, "6");
        assert_int_equal(w.s.retry_at, 300 * SEC);
        assert_int_equal(w.s.failures, 0);
        lease_watch_done(&w);
}

static void test_dropped_streams_back_off_and_list_after_three(void **state) {
        struct lease_watch w;
        usec_t now = 2 * SEC;

        streaming(&w);
        for (int i = 1; i <= 3; i++) {
                kube_watch_on_end(&w.s, 0, -EIO, "connection reset", now);
                assert_int_equal(w.s.failures, i);
                assert_true(w.s.retry_at > now);
                assert_false(lease_watch_fresh(&w, now));
                if (i < 3) {
                        assert_int_equal(w.s.state, KUBE_WATCH_NEED_STREAM);
                        assert_string_equal(w.s.resource_version, "5");
                        now = w.s.retry_at;
                        kube_watch_on_stream_start(&w.s, now);
                }
        }
        assert_int_equal(w.s.state, KUBE_WATCH_NEED_LIST);
        assert_null(w.s.resource_version);
        lease_watch_done(&w);
}

static void test_refused_watch_waits_minutes_before_asking_again(void **state) {
        struct lease_watch w;

        streaming(&w);
        kube_watch_on_end(&w.s, 403, 0, NULL, 2 * SEC);
        assert_int_equal(w.s.state, KUBE_WATCH_NEED_LIST);
        assert_true(w.s.retry_at >= 2 * SEC + 300 * SEC);
        lease_watch_done(&w);
}

static void test_silence_breaks_a_held_stream_but_not_an_idle_one(void **state) {
        struct lease_watch w;

        streaming(&w);
        /* Held: renewals are due; 5 s of nothing is a stall. */
        assert_int_equal(kube_watch_stall_at(&w.s), 6 * SEC);
        assert_false(kube_watch_check_stall(&w.s, 6 * SEC - 1));
        assert_true(lease_watch_fresh(&w, 6 * SEC - 1));
        assert_false(lease_watch_fresh(&w, 6 * SEC));
        assert_true(kube_watch_check_stall(&w.s, 6 * SEC));
        assert_int_equal(w.s.state, KUBE_WATCH_NEED_LIST);
        assert_int_equal(w.s.count.stalls, 1);
        assert_false(kube_watch_check_stall(&w.s, 60 * SEC));
        lease_watch_done(&w);

        /* Released: nobody writes; only the server's timeout ends it. */
        streaming(&w);
        feed(&w.s, EVENT("MODIFIED", "6", ""), 2 * SEC, 0);
        assert_false(kube_watch_check_stall(&w.s, 100 * SEC));
        assert_true(lease_watch_fresh(&w, 100 * SEC));
        assert_true(kube_watch_check_stall(&w.s, 332 * SEC));
        lease_watch_done(&w);
}

static void test_garbage_and_oversized_events_break_the_stream(void **state) {
        struct lease_watch w;
        _cleanup_free_ char *big = NULL;

        streaming(&w);
        feed(&w.s, "not json\n", 2 * SEC, -EBADMSG);
        assert_int_equal(w.s.state, KUBE_WATCH_NEED_LIST);
        lease_watch_done(&w);

        streaming(&w);
        big = malloc(opts.max_line + 2);
        memset(big, 'x', opts.max_line + 1);
        big[opts.max_line + 1] = '\0';
        feed(&w.s, big, 2 * SEC, -EFBIG);
        assert_int_equal(w.s.state, KUBE_WATCH_NEED_LIST);
        /* Bytes after the break are not taken. */
        feed(&w.s, EVENT("MODIFIED", "9", "pg-1"), 3 * SEC, -ESTALE);
        assert_string_equal(w.record->holder, "pg-0");
        lease_watch_done(&w);
}

/* The member Pods' watch (pod-watch.c): a Pod as the server sends it,
 * status annotation escaped inside the JSON. */
#define STATUS(state) "{\\\"role\\\":\\\"replica\\\",\\\"state\\\":\\\"" state "\\\",\\\"timeline\\\":1,\\\"lsn\\\":\\\"0/3000060\\\"," \
        "\\\"replay_lsn\\\":\\\"0/3000060\\\",\\\"host\\\":\\\"h\\\",\\\"port\\\":5432,\\\"priority\\\":100,\\\"nofailover\\\":false}"
#define POD(name, rv, state, phase) \
        "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"" name "\",\"resourceVersion\":\"" rv "\"," \
        "\"labels\":{\"pglease.io/cluster\":\"pg\"},\"annotations\":{\"pglease.io/status\":\"" STATUS(state) "\"}," \
        "\"managedFields\":[{\"manager\":\"kubelet\"}]},\"status\":{\"phase\":\"" phase "\"}}"
#define POD_EVENT(type, name, rv, state, phase) "{\"type\":\"" type "\",\"object\":" POD(name, rv, state, phase) "}\n"

static const struct pod_watch_options pod_opts = { .stall = 21 * SEC, .max_line = 16384 };

static void assert_members(const struct pod_watch *w, const char *expect) {
        _cleanup_(dcs_member_list_freep) struct dcs_member_list *l = NULL;
        _cleanup_free_ char *got = strdup("");

        assert_int_equal(pod_watch_members(w, &l), 0);
        for (size_t i = 0; i < l->n; i++) {
                char *next = strdup_printf("%s%s%s=%s", got, i ? " " : "", l->members[i].name,
                                           strempty(l->members[i].state));
                free(got);
                got = next;
        }
        assert_string_equal(got, expect);
}

static void test_pod_watch_keeps_each_members_record(void **state) {
        struct pod_watch w;
        uint64_t gen;

        pod_watch_init(&w, &pod_opts);
        assert_false(pod_watch_fresh(&w, 0));
        assert_int_equal(pod_watch_members(&w, &(struct dcs_member_list *) { NULL }), -ENODATA);
        list(&w.s, LIST("10", POD("pg-1", "9", "streaming", "Running") "," POD("pg-0", "8", "running", "Running")),
                 1 * SEC);
        assert_int_equal(w.s.state, KUBE_WATCH_NEED_STREAM);
        assert_string_equal(w.s.resource_version, "10");
        assert_false(pod_watch_fresh(&w, 1 * SEC));
        kube_watch_on_stream_start(&w.s, 1 * SEC);
        assert_true(pod_watch_fresh(&w, 1 * SEC));
        /* Sorted by name, as a list of the Pods gives them. */
        assert_members(&w, "pg-0=running pg-1=streaming");
        gen = w.generation;

        /* A change of the record is a new view ... */
        feed(&w.s, POD_EVENT("MODIFIED", "pg-1", "11", "catching-up", "Running"), 2 * SEC, 0);
        assert_int_equal(w.generation, gen + 1);
        assert_int_equal(w.changed_at, 2 * SEC);
        assert_members(&w, "pg-0=running pg-1=catching-up");
        /* ... the kubelet's writes of the Pod's status are not. */
        feed(&w.s, POD_EVENT("MODIFIED", "pg-1", "12", "catching-up", "Pending"), 3 * SEC, 0);
        assert_int_equal(w.generation, gen + 1);
        assert_string_equal(w.s.resource_version, "12");
        /* A new member, one that went. */
        feed(&w.s, POD_EVENT("ADDED", "pg-2", "13", "starting", "Pending"), 4 * SEC, 0);
        assert_members(&w, "pg-0=running pg-1=catching-up pg-2=starting");
        feed(&w.s, POD_EVENT("DELETED", "pg-0", "14", "running", "Running"), 5 * SEC, 0);
        assert_members(&w, "pg-1=catching-up pg-2=starting");
        assert_int_equal(w.generation, gen + 3);
        /* A Pod without its annotation yet is a member of unknown state. */
        feed(&w.s, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"pg-3\",\"resourceVersion\":\"15\"}}}\n",
                 6 * SEC, 0);
        assert_members(&w, "pg-1=catching-up pg-2=starting pg-3=unknown");
        /* An object without a name is no Pod: the stream is broken. */
        feed(&w.s, "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"resourceVersion\":\"16\"}}}\n", 7 * SEC, -EBADMSG);
        assert_int_equal(w.s.state, KUBE_WATCH_NEED_LIST);
        assert_false(pod_watch_fresh(&w, 7 * SEC));
        /* The list afterwards replaces everything. */
        list(&w.s, LIST("20", POD("pg-2", "19", "streaming", "Running")), 8 * SEC);
        assert_members(&w, "pg-2=streaming");
        pod_watch_done(&w);
}

static void test_pod_watch_stalls_gone_and_refused(void **state) {
        struct pod_watch w;

        pod_watch_init(&w, &pod_opts);
        list(&w.s, LIST("10", POD("pg-0", "8", "running", "Running")), 1 * SEC);
        kube_watch_on_stream_start(&w.s, 1 * SEC);
        /* Every member's own write is an event: silence is a dead stream. */
        assert_int_equal(kube_watch_stall_at(&w.s), 22 * SEC);
        feed(&w.s, POD_EVENT("MODIFIED", "pg-0", "11", "running", "Running"), 10 * SEC, 0);
        assert_false(kube_watch_check_stall(&w.s, 30 * SEC));
        assert_true(kube_watch_check_stall(&w.s, 31 * SEC));
        assert_int_equal(w.s.state, KUBE_WATCH_NEED_LIST);
        /* The view is kept for the fallback's comparison, but not fresh. */
        assert_false(pod_watch_fresh(&w, 31 * SEC));
        assert_members(&w, "pg-0=running");

        list(&w.s, LIST("30", POD("pg-0", "29", "running", "Running")), 32 * SEC);
        kube_watch_on_stream_start(&w.s, 32 * SEC);
        feed(&w.s, "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410}}\n", 33 * SEC, -EXFULL);
        assert_int_equal(w.s.state, KUBE_WATCH_NEED_LIST);
        assert_null(w.s.resource_version);

        /* A Role without watch on pods: lists as before, asks again later. */
        list(&w.s, LIST("40", POD("pg-0", "39", "running", "Running")), 40 * SEC);
        kube_watch_on_stream_start(&w.s, 40 * SEC);
        kube_watch_on_end(&w.s, 403, 0, NULL, 40 * SEC);
        assert_int_equal(w.s.state, KUBE_WATCH_NEED_LIST);
        assert_true(w.s.retry_at >= 340 * SEC);
        /* A refused list backs off the same way. */
        kube_watch_on_list_failed(&w.s, -EACCES, 340 * SEC);
        assert_true(w.s.retry_at >= 640 * SEC);
        pod_watch_done(&w);
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
                cmocka_unit_test(test_pod_watch_keeps_each_members_record),
                cmocka_unit_test(test_pod_watch_stalls_gone_and_refused),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
