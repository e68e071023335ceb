/* test-util.c: durations, sizes, booleans, comma lists and atomic files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "util.h"

static void test_durations_accept_documented_units(void **state) {
        usec_t u;

        assert_int_equal(parse_duration("10s", &u), 0);
        assert_int_equal(u, 10 * USEC_PER_SEC);
        assert_int_equal(parse_duration("500ms", &u), 0);
        assert_int_equal(u, 500 * USEC_PER_MSEC);
        assert_int_equal(parse_duration("2min", &u), 0);
        assert_int_equal(u, 2 * USEC_PER_MINUTE);
        assert_int_equal(parse_duration("30", &u), 0);
        assert_int_equal(u, 30 * USEC_PER_SEC);
        assert_int_equal(parse_duration("1h", &u), 0);
        assert_int_equal(u, USEC_PER_HOUR);
}

static void test_durations_reject_garbage(void **state) {
        usec_t u = 7;

        assert_int_equal(parse_duration("", &u), -EINVAL);
        assert_int_equal(parse_duration("ten", &u), -EINVAL);
        assert_int_equal(parse_duration("10 parsecs", &u), -EINVAL);
        assert_int_equal(parse_duration("-1s", &u), -EINVAL);
        assert_int_equal(parse_duration("1.5s", &u), -EINVAL);
        assert_int_equal(parse_duration("99999999999999999999d", &u), -ERANGE);
        assert_int_equal(parse_duration("999999999999999d", &u), -ERANGE);
        assert_int_equal(u, 7);
}

static void test_duration_round_trips(void **state) {
        const usec_t values[] = { 0, 1, 500 * USEC_PER_MSEC, 10 * USEC_PER_SEC, 2 * USEC_PER_MINUTE, 30 * USEC_PER_MINUTE, 7 * USEC_PER_DAY };

        for (size_t i = 0; i < ELEMENTSOF(values); i++) {
                char *s = format_duration(values[i]);
                usec_t back;

                assert_non_null(s);
                assert_int_equal(parse_duration(s, &back), 0);
                assert_int_equal(back, values[i]);
                free(s);
        }
}

static void test_sizes_use_postgres_units(void **state) {
        uint64_t b;

        assert_int_equal(parse_size("16MB", &b), 0);
        assert_int_equal(b, 16ULL << 20);
        assert_int_equal(parse_size("1GB", &b), 0);
        assert_int_equal(b, 1ULL << 30);
        assert_int_equal(parse_size("1048576", &b), 0);
        assert_int_equal(b, 1048576);
        assert_int_equal(parse_size("1 gigabyte", &b), -EINVAL);
        char *s = format_size(1ULL << 30);
        assert_string_equal(s, "1GB");
        free(s);
}

static void test_bools_and_ints(void **state) {
        bool v;
        int64_t n;

        assert_int_equal(parse_bool("on", &v), 0);
        assert_true(v);
        assert_int_equal(parse_bool("No", &v), 0);
        assert_false(v);
        assert_int_equal(parse_bool("maybe", &v), -EINVAL);
        assert_int_equal(parse_int64("-42", &n), 0);
        assert_int_equal(n, -42);
        assert_int_equal(parse_int64("42x", &n), -EINVAL);
        assert_int_equal(parse_int64("99999999999999999999", &n), -ERANGE);
}

static void test_comma_lists_are_trimmed(void **state) {
        char **l = NULL;

        assert_int_equal(strv_split_comma(" a, b ,,c ", &l), 0);
        assert_int_equal(strv_length(l), 3);
        assert_string_equal(l[0], "a");
        assert_string_equal(l[1], "b");
        assert_string_equal(l[2], "c");
        strv_free(l);
        assert_int_equal(strv_split_comma("", &l), 0);
        assert_int_equal(strv_length(l), 0);
        strv_free(l);
}

static void test_atomic_write_replaces_whole_file(void **state) {
        char dir[] = "/tmp/pglease-test-util-XXXXXX";
        char *path, *content = NULL;

        assert_non_null(mkdtemp(dir));
        path = strdup_printf("%s/f", dir);
        assert_int_equal(write_file_atomic(path, "one\n", 0600), 0);
        assert_int_equal(write_file_atomic(path, "two\n", 0600), 0);
        assert_int_equal(read_one_line_file(path, &content), 0);
        assert_string_equal(content, "two");
        free(content);
        assert_int_equal(read_one_line_file("/nonexistent/pglease", &content), -ENOENT);
        unlink(path);
        rmdir(dir);
        free(path);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_durations_accept_documented_units),
                cmocka_unit_test(test_durations_reject_garbage),
                cmocka_unit_test(test_duration_round_trips),
                cmocka_unit_test(test_sizes_use_postgres_units),
                cmocka_unit_test(test_bools_and_ints),
                cmocka_unit_test(test_comma_lists_are_trimmed),
                cmocka_unit_test(test_atomic_write_replaces_whole_file),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
