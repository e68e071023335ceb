/* test-metadata.c: the bounded event queue that holds metadata events while
 * the primary is unreachable: order, bound, drop counting, and draining
 * that keeps what could not be written. No server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "metadata.h"
#include "util.h"

static void push_numbered(struct metadata_event_queue *q, unsigned i, int expected) {
        char event[32], details[64];
        struct metadata_event e = {
                .at = 1000 + i,
                .node = (char *) "pg-0",
                .event = event,
                .successful = i % 2 == 0,
                .details = details,
        };

        snprintf(event, sizeof(event), "event-%u", i);
        snprintf(details, sizeof(details), "{\"n\": %u}", i);
        assert_int_equal(metadata_event_queue_push(q, &e), expected);
}

static void assert_queued(const struct metadata_event_queue *q, size_t pos, unsigned i) {
        const struct metadata_event *e = metadata_event_queue_peek(q, pos);
        char event[32];

        assert_non_null(e);
        snprintf(event, sizeof(event), "event-%u", i);
        assert_string_equal(e->event, event);
        assert_true(e->at == 1000 + i);
        assert_int_equal(e->successful, i % 2 == 0);
}

/* Records what it was given, and fails on the call numbered fail_at. */
struct recorder {
        unsigned calls;
        unsigned fail_at;
        char written[16][32];
};

static int record_write(void *userdata, const struct metadata_event *e, char **reterr_msg) {
        struct recorder *rec = userdata;

        if (++rec->calls == rec->fail_at) {
                set_error_msg(reterr_msg, "connection lost");
                return -EIO;
        }
        snprintf(rec->written[rec->calls - 1], sizeof(rec->written[0]), "%s", e->event);
        return 0;
}

static void test_queue_keeps_events_oldest_first(void **state) {
        struct metadata_event_queue q;

        assert_int_equal(metadata_event_queue_init(&q, 4), 0);
        for (unsigned i = 0; i < 3; i++)
                push_numbered(&q, i, 0);
        assert_int_equal(metadata_event_queue_size(&q), 3);
        for (unsigned i = 0; i < 3; i++)
                assert_queued(&q, i, i);
        assert_null(metadata_event_queue_peek(&q, 3));
        assert_true(q.n_dropped == 0);
        metadata_event_queue_done(&q);
}

static void test_queue_full_drops_oldest_and_counts(void **state) {
        struct metadata_event_queue q;

        assert_int_equal(metadata_event_queue_init(&q, 3), 0);
        for (unsigned i = 0; i < 3; i++)
                push_numbered(&q, i, 0);
        for (unsigned i = 3; i < 8; i++)
                push_numbered(&q, i, 1);
        assert_int_equal(metadata_event_queue_size(&q), 3);
        assert_true(q.n_dropped == 5);
        for (unsigned pos = 0; pos < 3; pos++)
                assert_queued(&q, pos, 5 + pos);
        metadata_event_queue_done(&q);
}

static void test_queue_copies_the_event(void **state) {
        struct metadata_event_queue q;
        char node[] = "pg-1", event[] = "promote";
        struct metadata_event e = { .node = node, .event = event };

        assert_int_equal(metadata_event_queue_init(&q, 2), 0);
        assert_int_equal(metadata_event_queue_push(&q, &e), 0);
        node[0] = 'X';
        event[0] = 'X';
        assert_string_equal(metadata_event_queue_peek(&q, 0)->node, "pg-1");
        assert_string_equal(metadata_event_queue_peek(&q, 0)->event, "promote");
        assert_null(metadata_event_queue_peek(&q, 0)->details);
        metadata_event_queue_done(&q);
}

static void test_queue_rejects_events_that_could_never_be_written(void **state) {
        struct metadata_event_queue q;
        struct metadata_event no_node = { .event = (char *) "x" };
        struct metadata_event no_event = { .node = (char *) "pg-0" };
        struct metadata_event bad_json = { .node = (char *) "pg-0", .event = (char *) "x", .details = (char *) "{oops" };
        struct metadata_event not_object = { .node = (char *) "pg-0", .event = (char *) "x", .details = (char *) "[1]" };

        assert_int_equal(metadata_event_queue_init(&q, 2), 0);
        assert_int_equal(metadata_event_queue_push(&q, &no_node), -EINVAL);
        assert_int_equal(metadata_event_queue_push(&q, &no_event), -EINVAL);
        assert_int_equal(metadata_event_queue_push(&q, &bad_json), -EINVAL);
        assert_int_equal(metadata_event_queue_push(&q, &not_object), -EINVAL);
        assert_int_equal(metadata_event_queue_push(&q, NULL), -EINVAL);
        assert_int_equal(metadata_event_queue_size(&q), 0);
        metadata_event_queue_done(&q);
}

static void test_queue_init_rejects_zero_capacity(void **state) {
        struct metadata_event_queue q = {};

        assert_int_equal(metadata_event_queue_init(&q, 0), -EINVAL);
        metadata_event_queue_done(&q);
}

static void test_drain_writes_in_order_and_empties(void **state) {
        struct metadata_event_queue q;
        struct recorder rec = {};
        size_t written = 99;

        assert_int_equal(metadata_event_queue_init(&q, 3), 0);
        for (unsigned i = 0; i < 5; i++)    /* wraps the ring */
                push_numbered(&q, i, i < 3 ? 0 : 1);
        assert_int_equal(metadata_event_queue_drain(&q, record_write, &rec, &written, NULL), 0);
        assert_int_equal(written, 3);
        assert_string_equal(rec.written[0], "event-2");
        assert_string_equal(rec.written[1], "event-3");
        assert_string_equal(rec.written[2], "event-4");
        assert_int_equal(metadata_event_queue_size(&q), 0);
        metadata_event_queue_done(&q);
}

static void test_drain_failure_keeps_failed_event_and_the_rest(void **state) {
        struct metadata_event_queue q;
        struct recorder rec = { .fail_at = 3 };
        size_t written = 99;
        char *err = NULL;

        assert_int_equal(metadata_event_queue_init(&q, 8), 0);
        for (unsigned i = 0; i < 5; i++)
                push_numbered(&q, i, 0);
        assert_int_equal(metadata_event_queue_drain(&q, record_write, &rec, &written, &err), -EIO);
        assert_int_equal(written, 99);
        assert_string_equal(err, "connection lost");
        free(err);
        assert_int_equal(metadata_event_queue_size(&q), 3);
        for (unsigned pos = 0; pos < 3; pos++)
                assert_queued(&q, pos, 2 + pos);

        /* Later the primary is back: the rest go out, still in order. */
        rec = (struct recorder) {};
        assert_int_equal(metadata_event_queue_drain(&q, record_write, &rec, &written, NULL), 0);
        assert_int_equal(written, 3);
        assert_string_equal(rec.written[0], "event-2");
        assert_string_equal(rec.written[2], "event-4");
        assert_int_equal(metadata_event_queue_size(&q), 0);
        metadata_event_queue_done(&q);
}

static void test_push_after_partial_drain_keeps_order(void **state) {
        struct metadata_event_queue q;
        struct recorder rec = { .fail_at = 2 };

        assert_int_equal(metadata_event_queue_init(&q, 3), 0);
        for (unsigned i = 0; i < 3; i++)
                push_numbered(&q, i, 0);
        assert_int_equal(metadata_event_queue_drain(&q, record_write, &rec, NULL, NULL), -EIO);
        push_numbered(&q, 3, 0);
        push_numbered(&q, 4, 1);
        assert_true(q.n_dropped == 1);
        for (unsigned pos = 0; pos < 3; pos++)
                assert_queued(&q, pos, 2 + pos);
        metadata_event_queue_done(&q);
}

static void test_flush_without_connection_is_einval(void **state) {
        struct metadata_event_queue q;

        assert_int_equal(metadata_event_queue_init(&q, 1), 0);
        push_numbered(&q, 0, 0);
        assert_int_equal(metadata_event_queue_flush(&q, NULL, NULL, NULL, NULL), -EINVAL);
        assert_int_equal(metadata_event_queue_size(&q), 1);
        metadata_event_queue_done(&q);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_queue_keeps_events_oldest_first),
                cmocka_unit_test(test_queue_full_drops_oldest_and_counts),
                cmocka_unit_test(test_queue_copies_the_event),
                cmocka_unit_test(test_queue_rejects_events_that_could_never_be_written),
                cmocka_unit_test(test_queue_init_rejects_zero_capacity),
                cmocka_unit_test(test_drain_writes_in_order_and_empties),
                cmocka_unit_test(test_drain_failure_keeps_failed_event_and_the_rest),
                cmocka_unit_test(test_push_after_partial_drain_keeps_order),
                cmocka_unit_test(test_flush_without_connection_is_einval),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
