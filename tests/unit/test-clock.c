/* test-clock.c: the injected clock and the MicroTime format the Lease API
 * uses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <cmocka.h>

#include "clock.h"

static void test_scripted_clock_moves_only_when_advanced(void **state) {
        struct clock_scripted s = { .monotonic = 5 * USEC_PER_SEC, .realtime = 1000 * USEC_PER_SEC };
        struct clock_ops ops;

        clock_scripted_init(&s, &ops);
        assert_int_equal(clock_now(&ops), 5 * USEC_PER_SEC);
        assert_int_equal(clock_now(&ops), 5 * USEC_PER_SEC);
        clock_scripted_advance(&s, 1500 * USEC_PER_MSEC);
        assert_int_equal(clock_now(&ops), 6500 * USEC_PER_MSEC);
        assert_int_equal(clock_realtime(&ops), 1001500 * USEC_PER_MSEC);
}

static void test_system_clock_is_monotonic(void **state) {
        usec_t a = clock_now(&clock_system), b = clock_now(&clock_system);

        assert_true(b >= a);
        assert_true(clock_realtime(&clock_system) > 1700000000ULL * USEC_PER_SEC);
}

static void test_microtime_has_six_fractional_digits_and_z(void **state) {
        char *s = clock_format_microtime(1764102771ULL * USEC_PER_SEC + 42);

        assert_string_equal(s, "2025-11-25T20:32:51.000042Z");
        free(s);
        s = clock_format_microtime(0);
        assert_string_equal(s, "1970-01-01T00:00:00.000000Z");
        free(s);
}

static void test_rfc3339_parses_what_api_servers_write(void **state) {
        usec_t u;

        assert_int_equal(clock_parse_rfc3339("2025-11-25T20:32:51.000042Z", &u), 0);
        assert_int_equal(u, 1764102771ULL * USEC_PER_SEC + 42);
        assert_int_equal(clock_parse_rfc3339("2025-11-25T20:32:51Z", &u), 0);
        assert_int_equal(u, 1764102771ULL * USEC_PER_SEC);
        assert_int_equal(clock_parse_rfc3339("2025-11-25T20:32:51.123456789Z", &u), 0);
        assert_int_equal(u, 1764102771ULL * USEC_PER_SEC + 123456);
        assert_int_equal(clock_parse_rfc3339("2025-11-25T21:32:51+01:00", &u), 0);
        assert_int_equal(u, 1764102771ULL * USEC_PER_SEC);
        assert_int_equal(clock_parse_rfc3339("2025-11-25 20:32:51", &u), -EINVAL);
        assert_int_equal(clock_parse_rfc3339("2025-11-25T20:32:51.Z", &u), -EINVAL);
        assert_int_equal(clock_parse_rfc3339("", &u), -EINVAL);
        assert_int_equal(clock_parse_rfc3339("2025-11-25T20:32:51Zjunk", &u), -EINVAL);
        /* Found by fuzz-lease-json: a short offset made the parser skip 6
         * bytes past the end of the string. */
        assert_int_equal(clock_parse_rfc3339("2-1-4T1:0:11-5:2", &u), -EINVAL);
        assert_int_equal(clock_parse_rfc3339("2025-11-25T20:32:51+1:00", &u), -EINVAL);
        assert_int_equal(clock_parse_rfc3339("2025-11-25T20:32:51+01:0", &u), -EINVAL);
        assert_int_equal(clock_parse_rfc3339("2025-11-25T20:32:51+", &u), -EINVAL);
        assert_int_equal(clock_parse_rfc3339("2025-11-25T20:32:51+24:00", &u), -EINVAL);
        assert_int_equal(clock_parse_rfc3339("2025-11-25T19:02:51-01:30", &u), 0);
        assert_int_equal(u, 1764102771ULL * USEC_PER_SEC);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_scripted_clock_moves_only_when_advanced),
                cmocka_unit_test(test_system_clock_is_monotonic),
                cmocka_unit_test(test_microtime_has_six_fractional_digits_and_z),
                cmocka_unit_test(test_rfc3339_parses_what_api_servers_write),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
