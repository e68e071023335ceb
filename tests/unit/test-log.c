/* test-log.c: text and JSON log lines, JSON escaping, and that no password
 * reaches a log line. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "log.h"
#include "util.h"

#define STAMP (1764102771ULL * USEC_PER_SEC + 123456)

static void test_json_escapes_quotes_backslashes_and_controls(void **state) {
        char *s;

        assert_int_equal(json_escape("a\"b\\c\nd\te\x01" "f\x7f", &s), 0);
        assert_string_equal(s, "\"a\\\"b\\\\c\\nd\\te\\u0001f\\u007f\"");
        free(s);
        assert_int_equal(json_escape("", &s), 0);
        assert_string_equal(s, "\"\"");
        free(s);
        assert_int_equal(json_escape("caf\xc3\xa9", &s), 0);
        assert_string_equal(s, "\"caf\xc3\xa9\"");
        free(s);
}

static void test_json_line_has_level_time_node_event(void **state) {
        struct log_record r = { .level = LOG_LEVEL_WARNING, .realtime = STAMP, .program = "pglease-agent",
                                .node = "pg-0", .event = "fence", .message = "lost \"lease\"" };
        char *s;

        assert_int_equal(log_format_json(&r, &s), 0);
        assert_string_equal(s, "{\"time\":\"2025-11-25T20:32:51.123Z\",\"level\":\"warning\",\"program\":\"pglease-agent\","
                               "\"node\":\"pg-0\",\"event\":\"fence\",\"msg\":\"lost \\\"lease\\\"\"}");
        free(s);
        r.node = NULL;
        r.event = NULL;
        assert_int_equal(log_format_json(&r, &s), 0);
        assert_null(strstr(s, "node"));
        assert_null(strstr(s, "event"));
        free(s);
}

static void test_text_line(void **state) {
        struct log_record r = { .level = LOG_LEVEL_INFO, .realtime = STAMP, .node = "pg-1", .event = "promote", .message = "done" };
        char *s;

        assert_int_equal(log_format_text(&r, &s), 0);
        assert_string_equal(s, "2025-11-25T20:32:51.123Z INFO    pg-1 promote: done");
        free(s);
}

static void test_redaction_hides_passwords(void **state) {
        static const struct {
                const char *in, *out;
        } cases[] = {
                { "host=a password=secret user=b", "host=a password=*** user=b" },
                { "host=a password='s e c' user=b", "host=a password=*** user=b" },
                { "PGPASSWORD=x ls", "PGPASSWORD=*** ls" },
                { "postgres://u:topsecret@h:5432/db", "postgres://u:***@h:5432/db" },
                { "postgres://h:5432/db", "postgres://h:5432/db" },
                { "no secrets here", "no secrets here" },
        };

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                char *s = log_redact(cases[i].in);

                assert_string_equal(s, cases[i].out);
                free(s);
        }
}

static void test_log_write_filters_level_and_redacts(void **state) {
        struct logger l;
        int fds[2];
        char buf[4096] = "";
        ssize_t n;

        assert_int_equal(pipe(fds), 0);
        logger_init(&l, "pglease-agent", fds[1]);
        l.format = LOG_FORMAT_JSON;
        logger_set_node(&l, "pg-2");
        log_write(&l, STAMP, LOG_LEVEL_DEBUG, "tick", "hidden");
        log_write(&l, STAMP, LOG_LEVEL_ERROR, "connect", "failed: host=h password=abc");
        close(fds[1]);
        n = read(fds[0], buf, sizeof buf - 1);
        assert_true(n > 0);
        close(fds[0]);
        assert_null(strstr(buf, "hidden"));
        assert_null(strstr(buf, "abc"));
        assert_non_null(strstr(buf, "\"node\":\"pg-2\""));
        assert_non_null(strstr(buf, "password=***"));
        assert_int_equal(strchr(buf, '\n') - buf + 1, n);
        logger_done(&l);
}

/* The agent's threads log through the loop's logger while a reload sets
 * its format, level and node again: the node name must stay the one
 * allocation they read (it was freed and replaced on every reload), and
 * every line must reach the fd whole. Under ASan a freed name is a
 * heap-use-after-free here. */
#define RACE_LINES 20000

struct race {
        struct logger *log;
        int fd;
        size_t lines, bad;
};

static void *race_writer(void *userdata) {
        struct race *r = userdata;

        for (unsigned i = 0; i < RACE_LINES; i++)
                log_write(r->log, STAMP, LOG_LEVEL_WARNING, "renew", "line %u of the renewer %s", i,
                          "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        return NULL;
}

static void *race_reader(void *userdata) {
        struct race *r = userdata;
        char buf[8192], line[1024];
        const char *msg;
        size_t used = 0;
        ssize_t n;

        while ((n = read(r->fd, buf, sizeof buf)) > 0 || (n < 0 && errno == EINTR))
                for (ssize_t i = 0; i < n; i++) {
                        if (buf[i] != '\n') {
                                if (used < sizeof line - 1)
                                        line[used++] = buf[i];
                                continue;
                        }
                        line[used] = 0;
                        r->lines++;
                        /* Text or JSON, always with the node and exactly one message. */
                        msg = strstr(line, "of the renewer x");
                        if (!strstr(line, "pg-2") || !msg || strstr(msg + 1, "of the renewer"))
                                r->bad++;
                        used = 0;
                }
        return NULL;
}

static void test_logger_shared_with_threads_across_reloads(void **state) {
        struct logger l;
        struct race w = {}, rd = {};
        pthread_t writer, reader;
        int fds[2];

        assert_int_equal(pipe(fds), 0);
        logger_init(&l, "pglease-agent", fds[1]);
        assert_int_equal(logger_set_node(&l, "pg-2"), 0);
        w.log = &l;
        rd.fd = fds[0];
        assert_int_equal(pthread_create(&reader, NULL, race_reader, &rd), 0);
        assert_int_equal(pthread_create(&writer, NULL, race_writer, &w), 0);
        for (unsigned i = 0; i < RACE_LINES; i++) {
                /* What apply_logging() does on every SIGHUP. */
                l.format = i % 2 ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT;
                l.min_level = LOG_LEVEL_INFO;
                assert_int_equal(logger_set_node(&l, "pg-2"), 0);
        }
        assert_int_equal(pthread_join(writer, NULL), 0);
        close(fds[1]);
        assert_int_equal(pthread_join(reader, NULL), 0);
        close(fds[0]);
        assert_int_equal(rd.lines, RACE_LINES);
        assert_int_equal(rd.bad, 0);
        /* node_name cannot change at run time: another name is refused and
         * the lines keep the first. */
        assert_int_equal(logger_set_node(&l, "pg-9"), -EBUSY);
        assert_int_equal(logger_set_node(&l, NULL), -EBUSY);
        assert_string_equal(l.node, "pg-2");
        logger_done(&l);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_json_escapes_quotes_backslashes_and_controls),
                cmocka_unit_test(test_json_line_has_level_time_node_event),
                cmocka_unit_test(test_text_line),
                cmocka_unit_test(test_redaction_hides_passwords),
                cmocka_unit_test(test_log_write_filters_level_and_redacts),
                cmocka_unit_test(test_logger_shared_with_threads_across_reloads),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
