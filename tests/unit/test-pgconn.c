/* test-pgconn.c: conninfo building and quoting, password redaction, LSN
 * parsing and formatting; nothing here talks to a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "pgconn.h"

static void assert_built(const char *const *kv, const char *expected) {
        char *s = pgconn_build_conninfo(kv);

        assert_non_null(s);
        assert_string_equal(s, expected);
        free(s);
}

static void test_conninfo_plain_values_stay_unquoted(void **state) {
        const char *kv[] = { "host", "10.0.0.1", "port", "5432", "user", "repl", NULL };

        assert_built(kv, "host=10.0.0.1 port=5432 user=repl");
}

static void test_conninfo_quotes_spaces_quotes_and_backslashes(void **state) {
        const char *kv[] = { "password", "a b", "application_name", "it's", "sslkey", "c:\\k", NULL };

        assert_built(kv, "password='a b' application_name='it\\'s' sslkey='c:\\\\k'");
}

static void test_conninfo_skips_null_and_empty_values(void **state) {
        const char *kv[] = { "host", NULL, "port", "", "dbname", "postgres", NULL };

        assert_built(kv, "dbname=postgres");
}

static void test_conninfo_empty_list_is_empty_string(void **state) {
        const char *kv[] = { NULL };

        assert_built(kv, "");
}

static void test_conninfo_quoting_round_trips_through_libpq(void **state) {
        const char *nasty = "x' host=evil \\ y";
        const char *kv[] = { "host", "h", "password", nasty, NULL };
        char *s = pgconn_build_conninfo(kv), *err = NULL;
        PQconninfoOption *opts;
        bool seen_password = false;

        assert_non_null(s);
        opts = PQconninfoParse(s, &err);
        assert_non_null(opts);
        for (PQconninfoOption *o = opts; o->keyword; o++) {
                if (strcmp(o->keyword, "password") == 0) {
                        assert_string_equal(o->val, nasty);
                        seen_password = true;
                }
                if (strcmp(o->keyword, "host") == 0)
                        assert_string_equal(o->val, "h");
        }
        assert_true(seen_password);
        PQconninfoFree(opts);
        free(s);
}

static void assert_redacted(const char *in, const char *expected) {
        char *s = pgconn_redact(in);

        assert_non_null(s);
        assert_string_equal(s, expected);
        free(s);
}

static void test_redact_bare_password(void **state) {
        assert_redacted("host=h password=secret user=u", "host=h password=*** user=u");
        assert_redacted("password=secret", "password=***");
        assert_redacted("host=h password = secret", "host=h password = ***");
}

static void test_redact_quoted_password(void **state) {
        assert_redacted("host=h password='a b' user=u", "host=h password=*** user=u");
        assert_redacted("password='it\\'s secret' port=1", "password=*** port=1");
}

static void test_redact_password_doubled_quotes_in_auto_conf(void **state) {
        assert_redacted("primary_conninfo = 'user=r password=''a b'' host=p'",
                        "primary_conninfo = 'user=r password=*** host=p'");
}

static void test_redact_uri_userinfo(void **state) {
        assert_redacted("postgres://u:secret@h/db", "postgres://u:***@h/db");
        assert_redacted("postgresql://u:secret@h:5432/db?sslmode=require",
                        "postgresql://u:***@h:5432/db?sslmode=require");
        assert_redacted("postgres://h/db?user=u&password=secret&sslmode=disable",
                        "postgres://h/db?user=u&password=***&sslmode=disable");
}

static void test_redact_leaves_other_text_alone(void **state) {
        assert_redacted("postgres://u@h/db", "postgres://u@h/db");
        assert_redacted("password authentication failed for user \"u\"",
                        "password authentication failed for user \"u\"");
        assert_redacted("host=h passwordless=1", "host=h passwordless=1");
        assert_redacted("", "");
}

static void test_lsn_round_trips(void **state) {
        const struct {
                const char *text;
                uint64_t value;
        } cases[] = {
                { "0/0", 0 },
                { "16/B374D848", 0x16B374D848ULL },
                { "0/3000060", 0x3000060ULL },
                { "FFFFFFFF/FFFFFFFF", UINT64_MAX },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                uint64_t v;
                char *s;

                assert_int_equal(pg_lsn_parse(cases[i].text, &v), 0);
                assert_true(v == cases[i].value);
                s = pg_lsn_format(v);
                assert_non_null(s);
                assert_string_equal(s, cases[i].text);
                free(s);
        }
}

static void test_lsn_parse_accepts_lower_case(void **state) {
        uint64_t v;

        assert_int_equal(pg_lsn_parse("16/b374d848", &v), 0);
        assert_true(v == 0x16B374D848ULL);
}

static void test_lsn_parse_rejects_bad_input(void **state) {
        const char *bad[] = { "", "/", "0/", "/0", "16", "16/B374D848/1", "G/0",
                              "0/123456789", "123456789/0", " 0/0", "0/0 ", "-1/0", "0x1/0" };
        uint64_t v = 42;

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                assert_int_equal(pg_lsn_parse(bad[i], &v), -EINVAL);
        assert_int_equal(pg_lsn_parse(NULL, &v), -EINVAL);
        assert_true(v == 42);
}

static void test_connect_rejects_bad_conninfo_without_touching_ret(void **state) {
        PGconn *c = (PGconn *) 0x1;
        char *err = NULL;

        assert_int_equal(pgconn_connect("host=h nonsense_keyword=1 password=secret", "t",
                                        USEC_PER_SEC, USEC_PER_SEC, &c, &err), -EINVAL);
        assert_ptr_equal(c, (PGconn *) 0x1);
        assert_non_null(err);
        assert_null(strchr(err, '\n'));
        assert_null(strstr(err, "secret"));
        free(err);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_conninfo_plain_values_stay_unquoted),
                cmocka_unit_test(test_conninfo_quotes_spaces_quotes_and_backslashes),
                cmocka_unit_test(test_conninfo_skips_null_and_empty_values),
                cmocka_unit_test(test_conninfo_empty_list_is_empty_string),
                cmocka_unit_test(test_conninfo_quoting_round_trips_through_libpq),
                cmocka_unit_test(test_redact_bare_password),
                cmocka_unit_test(test_redact_quoted_password),
                cmocka_unit_test(test_redact_password_doubled_quotes_in_auto_conf),
                cmocka_unit_test(test_redact_uri_userinfo),
                cmocka_unit_test(test_redact_leaves_other_text_alone),
                cmocka_unit_test(test_lsn_round_trips),
                cmocka_unit_test(test_lsn_parse_accepts_lower_case),
                cmocka_unit_test(test_lsn_parse_rejects_bad_input),
                cmocka_unit_test(test_connect_rejects_bad_conninfo_without_touching_ret),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
