/* test-event-repeat.c: a repeated event is counted, and its count and
 * last time go out once, when the run ends or the window passes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "event-repeat.h"
#include "util.h"

#define T0 (1764102771ULL * USEC_PER_SEC)

static void test_repeats_are_counted_and_summarised_once(void **state) {
        struct event_repeat r = {};
        struct event_repeat_summary sum;

        assert_false(event_repeat_absorb(&r, "paused", 1, "paused: no failover", T0));
        assert_int_equal(event_repeat_next(&r, "paused", 1, "paused: no failover", T0, &sum), 0);
        assert_null(sum.event);
        /* 22 more in 21 s: all absorbed. */
        for (unsigned i = 1; i <= 22; i++)
                assert_true(event_repeat_absorb(&r, "paused", 1, "paused: no failover", T0 + i * USEC_PER_SEC));
        /* Another message ends the run: one summary. */
        assert_false(event_repeat_absorb(&r, "follow", 1, "now following", T0 + 30 * USEC_PER_SEC));
        assert_int_equal(event_repeat_next(&r, "follow", 1, "now following", T0 + 30 * USEC_PER_SEC, &sum), 0);
        assert_string_equal(sum.event, "paused");
        assert_int_equal(sum.count, 22);
        assert_int_equal(sum.at, T0 + 22 * USEC_PER_SEC);
        assert_non_null(strstr(sum.details, "\"repeated\":22"));
        assert_non_null(strstr(sum.details, "\"message\":\"paused: no failover\""));
        assert_non_null(strstr(sum.details, "\"last_seen\":\""));
        event_repeat_summary_done(&sum);
        /* The same text at another level is another event. */
        assert_false(event_repeat_absorb(&r, "follow", 3, "now following", T0 + 31 * USEC_PER_SEC));
        event_repeat_done(&r);
}

static void test_a_lasting_condition_is_written_again_after_the_window(void **state) {
        struct event_repeat r = {};
        struct event_repeat_summary sum;

        assert_int_equal(event_repeat_next(&r, "paused", 1, "m", T0, &sum), 0);
        assert_true(event_repeat_absorb(&r, "paused", 1, "m", T0 + USEC_PER_SEC));
        assert_false(event_repeat_absorb(&r, "paused", 1, "m", T0 + EVENT_REPEAT_WINDOW));
        assert_int_equal(event_repeat_next(&r, "paused", 1, "m", T0 + EVENT_REPEAT_WINDOW, &sum), 0);
        assert_int_equal(sum.count, 1);
        event_repeat_summary_done(&sum);
        event_repeat_done(&r);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_repeats_are_counted_and_summarised_once),
                cmocka_unit_test(test_a_lasting_condition_is_written_again_after_the_window),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
