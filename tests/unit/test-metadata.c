/* test-metadata.c: the bounded event queue that holds metadata events while
 * the primary is unreachable: order, bound, drop counting, and draining
 * that keeps what could not be written. No server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <dirent.h>

#include "metadata-embedded.h"
#include "metadata.h"
#include "pglease-build.h"
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

/* Every sql/NNN_name.sql is built into the agent, byte for byte, and
 * nothing else is: a migration added to sql/ but not to lib/meson.build
 * would otherwise never run. */
static void test_every_sql_file_is_built_in_unchanged(void **state) {
        _cleanup_free_ char *dir = strdup_printf("%s/sql", PGLEASE_SOURCE_DIR);
        DIR *d = opendir(dir);
        struct dirent *de;
        size_t files = 0;

        assert_non_null(d);
        while ((de = readdir(d))) {
                _cleanup_free_ char *path = NULL, *text = NULL;
                unsigned version;
                bool found = false;

                if (sscanf(de->d_name, "%u_", &version) != 1 || strlen(de->d_name) < 4 || !streq(de->d_name + strlen(de->d_name) - 4, ".sql"))
                        continue;
                files++;
                path = strdup_printf("%s/%s", dir, de->d_name);
                assert_int_equal(read_full_file(path, &text, NULL), 0);
                for (size_t i = 0; i < metadata_embedded_migrations_n; i++) {
                        const struct metadata_embedded_migration *m = &metadata_embedded_migrations[i];
                        _cleanup_free_ char *name = strdup_printf("%03u_%s.sql", m->version, m->name);

                        if (!streq(name, de->d_name))
                                continue;
                        found = true;
                        assert_string_equal(m->script, text);
                }
                if (!found)
                        fail_msg("%s is not built in: add it to sql_migrations in lib/meson.build", de->d_name);
        }
        closedir(d);
        assert_int_equal(files, metadata_embedded_migrations_n);
        for (size_t i = 1; i < metadata_embedded_migrations_n; i++)
                assert_true(metadata_embedded_migrations[i - 1].version < metadata_embedded_migrations[i].version);
}

/* The check for dropped tables knows every table the migrations create. */
static void test_metadata_tables_lists_every_table_of_the_migrations(void **state) {
        unsigned seen = 0;

        for (size_t i = 0; i < metadata_embedded_migrations_n; i++)
                for (const char *p = metadata_embedded_migrations[i].script; (p = strstr(p, "CREATE TABLE ")); p++) {
                        char name[64] = "";
                        bool found = false;

                        assert_int_equal(sscanf(p + strlen("CREATE TABLE "), "%63[a-z_]", name), 1);
                        for (const char *const *t = metadata_tables; *t; t++)
                                found = found || streq(*t, name);
                        if (!found)
                                fail_msg("migration %u creates table %s, missing from metadata_tables",
                                         metadata_embedded_migrations[i].version, name);
                        seen++;
                }
        /* And nothing else, but schema_version, which the agent creates. */
        assert_int_equal(seen + 1, strv_length((char **) metadata_tables));
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_every_sql_file_is_built_in_unchanged),
                cmocka_unit_test(test_metadata_tables_lists_every_table_of_the_migrations),
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
