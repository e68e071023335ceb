/* test-manpage.c: pglease.conf(5) documents exactly the keys of the
 * configuration's descriptor table, with each key's type, default and
 * whether a reload changes it; pglease-agent(8) lists exactly the keys a
 * reload can change. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"
#include "pglease-build.h"
#include "util.h"

#define PAGE PGLEASE_SOURCE_DIR "/man/pglease.conf.5.scd"
#define AGENT_PAGE PGLEASE_SOURCE_DIR "/man/pglease-agent.8.scd"
#define RELOAD_LIST_START "The keys a reload can change:"
#define RELOAD_LIST_END "Every other key"

/* The keys the page documents: lines "*name* = _type_" (a definition
 * heading in scdoc). */
static char **documented_keys(const char *text) {
        char **keys = NULL;

        for (const char *line = text; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
                const char *end;
                char *name;

                if (line[0] != '*')
                        continue;
                end = strchr(line + 1, '*');
                if (!end || !strneq(end, "* = _", 5))
                        continue;
                name = strndup(line + 1, (size_t) (end - line - 1));
                assert_non_null(name);
                assert_int_equal(strv_extend(&keys, name), 0);
                free(name);
        }
        return keys;
}

static bool strv_has(char *const *l, const char *s) {
        for (; l && *l; l++)
                if (streq(*l, s))
                        return true;
        return false;
}

static void test_every_config_key_is_documented(void **state) {
        _cleanup_free_ char *text = NULL;
        _cleanup_strv_free_ char **keys = NULL;
        const struct config_key *table;
        size_t n, missing = 0;

        assert_int_equal(read_full_file(PAGE, &text, NULL), 0);
        keys = documented_keys(text);
        table = config_keys(&n);
        for (size_t i = 0; i < n; i++)
                if (!strv_has(keys, table[i].name)) {
                        print_error("%s: key %s is not documented\n", PAGE, table[i].name);
                        missing++;
                }
        assert_int_equal(missing, 0);
}

static void test_every_documented_key_exists(void **state) {
        _cleanup_free_ char *text = NULL;
        _cleanup_strv_free_ char **keys = NULL;
        size_t stale = 0;

        assert_int_equal(read_full_file(PAGE, &text, NULL), 0);
        keys = documented_keys(text);
        assert_non_null(keys);
        for (char **k = keys; *k; k++)
                if (!config_key_find(*k, NULL)) {
                        print_error("%s documents %s, which is no longer a configuration key\n", PAGE, *k);
                        stale++;
                }
        assert_int_equal(stale, 0);
}

static void test_documented_defaults_match_the_table(void **state) {
        _cleanup_free_ char *text = NULL;
        const struct config_key *table;
        size_t n, wrong = 0;

        assert_int_equal(read_full_file(PAGE, &text, NULL), 0);
        table = config_keys(&n);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *heading = strdup_printf("\n*%s* = _", table[i].name), *def = NULL;
                const char *at = strstr(text, heading), *next;

                if (!at)
                        continue; /* test_every_config_key_is_documented reports it */
                next = strstr(at + 1, "\n*");
                def = isempty(table[i].default_value) ? strdup("Default: empty.")
                      : streq(table[i].default_value, "*") ? strdup("Default: \\*.")
                                                             : strdup_printf("Default: %s.", table[i].default_value);
                if (!strstr(at, def) || (next && strstr(at, def) > next)) {
                        print_error("%s: %s should say \"%s\"\n", PAGE, table[i].name, def);
                        wrong++;
                }
        }
        assert_int_equal(wrong, 0);
}

static void test_reloadable_marks_match_the_table(void **state) {
        _cleanup_free_ char *text = NULL;
        const struct config_key *table;
        size_t n, wrong = 0;

        assert_int_equal(read_full_file(PAGE, &text, NULL), 0);
        table = config_keys(&n);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *heading = strdup_printf("\n*%s* = _", table[i].name);
                const char *at = strstr(text, heading), *next, *mark;
                const char *want = table[i].reloadable ? "Reloadable." : "Needs a restart.";

                if (!at)
                        continue; /* test_every_config_key_is_documented reports it */
                next = strstr(at + 1, "\n*");
                mark = strstr(at, want);
                if (!mark || (next && mark > next)) {
                        print_error("%s: %s should say \"%s\"\n", PAGE, table[i].name, want);
                        wrong++;
                }
        }
        assert_int_equal(wrong, 0);
}

/* The list in SIGNALS, SIGHUP: one "- *key*" line per key. */
static void test_agent_page_lists_exactly_the_reloadable_keys(void **state) {
        _cleanup_free_ char *text = NULL;
        _cleanup_strv_free_ char **listed = NULL;
        const struct config_key *table;
        const char *start, *end;
        size_t n, wrong = 0;

        assert_int_equal(read_full_file(AGENT_PAGE, &text, NULL), 0);
        start = strstr(text, RELOAD_LIST_START);
        assert_non_null(start);
        end = strstr(start, RELOAD_LIST_END);
        assert_non_null(end);
        for (const char *p = strstr(start, "- *"); p && p < end; p = strstr(p + 1, "- *")) {
                const char *close = strchr(p + 3, '*');
                _cleanup_free_ char *name = NULL;

                assert_non_null(close);
                name = strndup(p + 3, (size_t) (close - p - 3));
                assert_non_null(name);
                assert_int_equal(strv_extend(&listed, name), 0);
        }
        table = config_keys(&n);
        for (size_t i = 0; i < n; i++)
                if (table[i].reloadable != strv_has(listed, table[i].name)) {
                        print_error("%s: %s %s\n", AGENT_PAGE, table[i].name,
                                    table[i].reloadable ? "is reloadable but not listed" : "is listed but needs a restart");
                        wrong++;
                }
        for (char **k = listed; k && *k; k++)
                if (!config_key_find(*k, NULL)) {
                        print_error("%s lists %s, which is not a configuration key\n", AGENT_PAGE, *k);
                        wrong++;
                }
        assert_int_equal(wrong, 0);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_config_key_is_documented),
                cmocka_unit_test(test_every_documented_key_exists),
                cmocka_unit_test(test_documented_defaults_match_the_table),
                cmocka_unit_test(test_reloadable_marks_match_the_table),
                cmocka_unit_test(test_agent_page_lists_exactly_the_reloadable_keys),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
