/* test-pgctl.c: postmaster.pid and pg_controldata parsing, stop-mode
 * signals, the hold file and standby marker, and fence ordering. */
#include <dirent.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "pgctl.h"
#include "util.h"

/* Captured from PostgreSQL 15 (pg_ctl start -o '-k /tmp/pgx -p 5999'). */
static const char pidfile_ready[] =
        "9590\n"
        "/tmp/pgx/d\n"
        "1795639197\n"
        "5999\n"
        "/tmp/pgx\n"
        "127.0.0.1\n"
        " 10959442     32808\n"
        "ready   \n";

/* Captured from PostgreSQL 15: LC_ALL=C pg_controldata -D (trimmed). */
static const char controldata_primary[] =
        "pg_control version number:            1300\n"
        "Catalog version number:               202209061\n"
        "Database system identifier:           7712211621916271910\n"
        "Database cluster state:               in production\n"
        "pg_control last modified:             Wed Nov 25 20:39:57 2026\n"
        "Latest checkpoint location:           0/1511A88\n"
        "Latest checkpoint's REDO location:    0/1511A50\n"
        "Latest checkpoint's REDO WAL file:    000000010000000000000001\n"
        "Latest checkpoint's TimeLineID:       1\n"
        "Latest checkpoint's PrevTimeLineID:   1\n"
        "Latest checkpoint's full_page_writes: on\n"
        "Latest checkpoint's NextXID:          0:724\n"
        "Latest checkpoint's oldestCommitTsXid:0\n"
        "Time of latest checkpoint:            Wed Nov 25 20:39:56 2026\n"
        "Minimum recovery ending location:     0/0\n"
        "Min recovery ending loc's timeline:   0\n"
        "wal_level setting:                    replica\n"
        "wal_log_hints setting:                off\n"
        "Data page checksum version:           0\n"
        "Mock authentication nonce:            2d8dc949a75ec89ba22d8090d7d8696582754cb0670da6f6900b095e6c2a1aa6\n";

static const char controldata_standby[] =
        "Database system identifier:           7712211621916271910\n"
        "Database cluster state:               shut down in recovery\n"
        "Latest checkpoint location:           16/B374D848\n"
        "Latest checkpoint's REDO location:    16/B374D810\n"
        "Latest checkpoint's TimeLineID:       3\n"
        "Latest checkpoint's PrevTimeLineID:   2\n"
        "Minimum recovery ending location:     16/B374D900\n"
        "Min recovery ending loc's timeline:   3\n"
        "wal_log_hints setting:                on\n"
        "Data page checksum version:           1\n";

static void test_stop_modes_map_to_postmaster_signals(void **state) {
        assert_int_equal(pgctl_stop_mode_signal(PGCTL_STOP_SMART), SIGTERM);
        assert_int_equal(pgctl_stop_mode_signal(PGCTL_STOP_FAST), SIGINT);
        assert_int_equal(pgctl_stop_mode_signal(PGCTL_STOP_IMMEDIATE), SIGQUIT);
        assert_int_equal(pgctl_stop_mode_signal(_PGCTL_STOP_MAX), -EINVAL);
        assert_int_equal(pgctl_stop_mode_signal(_PGCTL_STOP_INVALID), -EINVAL);
        for (int m = 0; m < _PGCTL_STOP_MAX; m++)
                assert_int_equal(pgctl_stop_mode_from_string(pgctl_stop_mode_to_string(m)), m);
        assert_int_equal(pgctl_stop_mode_from_string("fast"), PGCTL_STOP_FAST);
        assert_int_equal(pgctl_stop_mode_from_string("Fast"), _PGCTL_STOP_INVALID);
        assert_int_equal(pgctl_stop_mode_from_string(NULL), _PGCTL_STOP_INVALID);
        assert_null(pgctl_stop_mode_to_string(_PGCTL_STOP_MAX));
}

static void test_pidfile_of_a_ready_server_parses(void **state) {
        struct pgctl_pidfile p = {};

        assert_int_equal(pgctl_pidfile_parse(pidfile_ready, &p), 0);
        assert_int_equal(p.pid, 9590);
        assert_string_equal(p.datadir, "/tmp/pgx/d");
        assert_int_equal(p.start_time, 1795639197);
        assert_int_equal(p.port, 5999);
        assert_string_equal(p.socket_dir, "/tmp/pgx");
        assert_string_equal(p.listen_addr, "127.0.0.1");
        assert_string_equal(p.status, "ready");
        assert_true(pgctl_pidfile_is_ready(&p));
        pgctl_pidfile_done(&p);
}

static void test_pidfile_while_starting_has_no_status(void **state) {
        struct pgctl_pidfile p = {};

        /* The postmaster writes five lines first, then the listen address,
         * shared memory key and status; an empty socket/listen line means
         * none was configured. */
        assert_int_equal(pgctl_pidfile_parse("77\n/data\n1700000000\n5432\n\n", &p), 0);
        assert_int_equal(p.pid, 77);
        assert_int_equal(p.port, 5432);
        assert_null(p.socket_dir);
        assert_null(p.listen_addr);
        assert_null(p.status);
        assert_false(pgctl_pidfile_is_ready(&p));
        pgctl_pidfile_done(&p);

        assert_int_equal(pgctl_pidfile_parse("77\n/data\n1700000000\n5432\n/s\n\n 1 2\nstandby \n", &p), 0);
        assert_string_equal(p.status, "standby");
        assert_true(pgctl_pidfile_is_ready(&p));
        pgctl_pidfile_done(&p);

        assert_int_equal(pgctl_pidfile_parse("77\n/data\n1700000000\n5432\n/s\n\n 1 2\nstopping\n", &p), 0);
        assert_false(pgctl_pidfile_is_ready(&p));
        pgctl_pidfile_done(&p);
}

static void test_pidfile_truncated_keeps_only_complete_lines(void **state) {
        struct pgctl_pidfile p = { .pid = 4242 };

        /* Cut before the data directory line ends: not a pid file yet. */
        assert_int_equal(pgctl_pidfile_parse("", &p), -EBADMSG);
        assert_int_equal(pgctl_pidfile_parse("9590", &p), -EBADMSG);
        assert_int_equal(pgctl_pidfile_parse("9590\n", &p), -EBADMSG);
        assert_int_equal(pgctl_pidfile_parse("9590\n/tmp/pgx/d", &p), -EBADMSG);
        assert_int_equal(p.pid, 4242);

        /* Cut inside the status line: the status is not known yet. */
        assert_int_equal(pgctl_pidfile_parse("9590\n/d\n1\n5999\n/s\n*\n 1 2\nrea", &p), 0);
        assert_int_equal(p.pid, 9590);
        assert_null(p.status);
        pgctl_pidfile_done(&p);
}

static void test_pidfile_garbage_is_rejected(void **state) {
        struct pgctl_pidfile p = { .pid = 4242 };

        assert_int_equal(pgctl_pidfile_parse("hello\n/data\n", &p), -EBADMSG);
        assert_int_equal(pgctl_pidfile_parse("-5\n/data\n", &p), -EBADMSG);
        assert_int_equal(pgctl_pidfile_parse("0\n/data\n", &p), -EBADMSG);
        assert_int_equal(pgctl_pidfile_parse("12x\n/data\n", &p), -EBADMSG);
        assert_int_equal(pgctl_pidfile_parse("99999999999\n/data\n", &p), -EBADMSG);
        assert_int_equal(pgctl_pidfile_parse("12\nrelative\n", &p), -EBADMSG);
        assert_int_equal(pgctl_pidfile_parse("12\n/data\nnot-a-time\n", &p), -EBADMSG);
        assert_int_equal(pgctl_pidfile_parse("12\n/data\n1\n70000\n", &p), -EBADMSG);
        assert_int_equal(pgctl_pidfile_parse("\x01\x02\x03\n\n\n", &p), -EBADMSG);
        assert_int_equal(p.pid, 4242);
}

static void test_postmaster_cmdline_is_told_from_children_and_others(void **state) {
        static const char postmaster[] = "/usr/lib/postgresql/15/bin/postgres\0-D\0/data\0";
        static const char bare[] = "postgres\0-D\0/data\0";
        static const char old_name[] = "postmaster\0";
        static const char checkpointer[] = "postgres: checkpointer \0\0\0\0";
        static const char titled[] = "postgres: 15/main: walwriter \0";
        static const char other[] = "/bin/bash\0-c\0postgres\0";
        static const char suffix[] = "/usr/bin/postgres-exporter\0";

        assert_true(pgctl_cmdline_is_postmaster(postmaster, sizeof(postmaster)));
        assert_true(pgctl_cmdline_is_postmaster(bare, sizeof(bare)));
        assert_true(pgctl_cmdline_is_postmaster(old_name, sizeof(old_name)));
        assert_false(pgctl_cmdline_is_postmaster(checkpointer, sizeof(checkpointer)));
        assert_false(pgctl_cmdline_is_postmaster(titled, sizeof(titled)));
        assert_false(pgctl_cmdline_is_postmaster(other, sizeof(other)));
        assert_false(pgctl_cmdline_is_postmaster(suffix, sizeof(suffix)));
        /* A zombie's cmdline is empty. */
        assert_false(pgctl_cmdline_is_postmaster("", 0));
        assert_false(pgctl_cmdline_is_postmaster(NULL, 0));
}

static void test_recycled_pid_is_not_a_postmaster(void **state) {
        /* This test program is alive but is no postmaster. */
        assert_int_equal(pgctl_pid_is_postmaster(getpid()), 0);
        assert_int_equal(pgctl_pid_is_postmaster(0), 0);
        assert_int_equal(pgctl_pid_is_postmaster(-1), 0);
}

static void test_controldata_of_a_primary_parses(void **state) {
        struct pgctl_controldata d = {};

        assert_int_equal(pgctl_controldata_parse(controldata_primary, &d), 0);
        assert_int_equal(d.state, PGCTL_DB_IN_PRODUCTION);
        assert_true(d.system_identifier == UINT64_C(7712211621916271910));
        assert_true(d.checkpoint_lsn == UINT64_C(0x1511A88));
        assert_true(d.redo_lsn == UINT64_C(0x1511A50));
        assert_int_equal(d.timeline, 1);
        assert_int_equal(d.prev_timeline, 1);
        assert_true(d.min_recovery_lsn == 0);
        assert_false(d.wal_log_hints);
        assert_false(d.data_checksums);
}

static void test_controldata_of_a_stopped_standby_parses(void **state) {
        struct pgctl_controldata d = {};

        assert_int_equal(pgctl_controldata_parse(controldata_standby, &d), 0);
        assert_int_equal(d.state, PGCTL_DB_SHUT_DOWN_IN_RECOVERY);
        assert_true(d.checkpoint_lsn == ((UINT64_C(0x16) << 32) | UINT64_C(0xB374D848)));
        assert_int_equal(d.timeline, 3);
        assert_int_equal(d.prev_timeline, 2);
        assert_true(d.min_recovery_lsn == ((UINT64_C(0x16) << 32) | UINT64_C(0xB374D900)));
        assert_int_equal(d.min_recovery_timeline, 3);
        assert_true(d.wal_log_hints);
        assert_true(d.data_checksums);
}

static void test_controldata_states_round_trip(void **state) {
        for (int s = 0; s < _PGCTL_DB_MAX; s++)
                assert_int_equal(pgctl_db_state_from_string(pgctl_db_state_to_string(s)), s);
        assert_int_equal(pgctl_db_state_from_string("in archive recovery"), PGCTL_DB_IN_ARCHIVE_RECOVERY);
        assert_int_equal(pgctl_db_state_from_string("shut down"), PGCTL_DB_SHUT_DOWN);
        assert_int_equal(pgctl_db_state_from_string("unrecognized status code"), _PGCTL_DB_INVALID);
}

static char *replace_line(const char *text, const char *key, const char *new_line) {
        const char *start = strstr(text, key), *end;

        assert_non_null(start);
        end = strchr(start, '\n');
        return strdup_printf("%.*s%s%s", (int) (start - text), text, new_line, end);
}

static void test_controldata_missing_or_bad_fields_are_rejected(void **state) {
        static const char *const bad[][2] = {
                { "Database cluster state:", "Database cluster state:  unrecognized status code" },
                { "Database cluster state:", "Something else: x" },
                { "Latest checkpoint location:", "Latest checkpoint location: 0-1511A88" },
                { "Latest checkpoint location:", "Latest checkpoint location: 0/" },
                { "Latest checkpoint location:", "Latest checkpoint location: 123456789/0" },
                { "Latest checkpoint's TimeLineID:", "Latest checkpoint's TimeLineID: 0" },
                { "Latest checkpoint's TimeLineID:", "Latest checkpoint's TimeLineID: one" },
                { "Database system identifier:", "Database system identifier: x" },
                { "Database system identifier:", "no identifier here" },
        };
        struct pgctl_controldata d = { .timeline = 99 };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++) {
                _cleanup_free_ char *text = replace_line(controldata_primary, bad[i][0], bad[i][1]);
                assert_int_equal(pgctl_controldata_parse(text, &d), -EBADMSG);
        }
        assert_int_equal(pgctl_controldata_parse("", &d), -EBADMSG);
        assert_int_equal(pgctl_controldata_parse("pg_controldata: fatal: could not open file", &d), -EBADMSG);
        assert_int_equal(d.timeline, 99);
}

static char *make_temp_dir(void) {
        char *dir = strdup("/tmp/test-pgctl-XXXXXX");

        assert_non_null(dir);
        assert_non_null(mkdtemp(dir));
        return dir;
}

/* The temp directories hold plain files only. */
static void remove_temp_dir(const char *dir) {
        DIR *d = opendir(dir);
        struct dirent *de;

        assert_non_null(d);
        while ((de = readdir(d)))
                if (!streq(de->d_name, ".") && !streq(de->d_name, ".."))
                        assert_int_equal(unlinkat(dirfd(d), de->d_name, 0), 0);
        closedir(d);
        assert_int_equal(rmdir(dir), 0);
}

static void test_hold_file_is_set_cleared_and_idempotent(void **state) {
        _cleanup_free_ char *dir = make_temp_dir(), *path = NULL, *content = NULL;

        path = strdup_printf("%s/hold", dir);
        assert_int_equal(pgctl_hold_is_set(dir), 0);
        assert_int_equal(pgctl_hold_set(dir, "fence"), 0);
        assert_int_equal(pgctl_hold_is_set(dir), 1);
        assert_int_equal(read_one_line_file(path, &content), 0);
        assert_string_equal(content, "fence");
        assert_int_equal(pgctl_hold_set(dir, "again"), 0);
        assert_int_equal(pgctl_hold_is_set(dir), 1);
        assert_int_equal(pgctl_hold_clear(dir), 0);
        assert_int_equal(pgctl_hold_is_set(dir), 0);
        assert_int_equal(pgctl_hold_clear(dir), 0);
        remove_temp_dir(dir);
}

static void test_hold_check_of_a_missing_run_dir_is_an_error(void **state) {
        assert_int_equal(pgctl_hold_is_set("/nonexistent/pglease-run"), -ENOENT);
        assert_int_equal(pgctl_hold_is_set(NULL), -EINVAL);
        assert_int_equal(pgctl_hold_set("", NULL), -EINVAL);
        assert_true(pgctl_hold_set("/nonexistent/pglease-run", "x") < 0);
}

static void test_standby_marker_is_written_and_removed(void **state) {
        _cleanup_free_ char *dir = make_temp_dir(), *path = NULL;
        struct stat st;

        path = strdup_printf("%s/standby.signal", dir);
        assert_int_equal(pgctl_has_standby_marker(dir), 0);
        assert_int_equal(pgctl_write_standby_marker(dir), 0);
        assert_int_equal(pgctl_has_standby_marker(dir), 1);
        assert_int_equal(stat(path, &st), 0);
        assert_true(S_ISREG(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0600);
        assert_int_equal(pgctl_write_standby_marker(dir), 0);
        assert_int_equal(pgctl_remove_standby_marker(dir), 0);
        assert_int_equal(pgctl_has_standby_marker(dir), 0);
        assert_int_equal(pgctl_remove_standby_marker(dir), 0);
        remove_temp_dir(dir);
}

static void test_data_dir_mode_is_made_what_postgres_accepts(void **state) {
        _cleanup_free_ char *dir = make_temp_dir(), *missing = NULL;
        mode_t old = 0;
        struct stat st;

        /* What a kubelet's fsGroup leaves: setgid, group rwx. */
        assert_int_equal(chmod(dir, 02770), 0);
        assert_int_equal(pgctl_data_dir_fix_mode(dir, &old), 1);
        assert_int_equal(old, 02770);
        assert_int_equal(stat(dir, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        assert_int_equal(pgctl_data_dir_fix_mode(dir, &old), 0);
        /* 0750 is accepted by PostgreSQL (group read): left alone. */
        assert_int_equal(chmod(dir, 0750), 0);
        assert_int_equal(pgctl_data_dir_fix_mode(dir, NULL), 0);
        assert_int_equal(stat(dir, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0750);
        assert_int_equal(chmod(dir, 0777), 0);
        assert_int_equal(pgctl_data_dir_fix_mode(dir, NULL), 1);
        /* Missing: initdb or a clone makes it; not an error. */
        missing = strdup_printf("%s/none", dir);
        assert_int_equal(pgctl_data_dir_fix_mode(missing, NULL), 0);
        assert_int_equal(pgctl_data_dir_fix_mode(NULL, NULL), -EINVAL);
        assert_int_equal(pgctl_data_dir_fix_mode("/dev/null", NULL), -ENOTDIR);
        remove_temp_dir(dir);
}

/* A fake backend that records what fence asked of it. */
struct fake_backend {
        int stops;
        enum pgctl_stop_mode mode;
        int marker_at_stop;
};

static int fake_stop(struct pgctl *c, enum pgctl_stop_mode mode, usec_t timeout, char **reterr_msg) {
        struct fake_backend *f = c->userdata;

        f->stops++;
        f->mode = mode;
        f->marker_at_stop = pgctl_has_standby_marker(c->config.datadir);
        return 0;
}

static const struct pgctl_ops fake_ops = { .name = "fake", .stop = fake_stop };

static void test_fence_writes_standby_marker_before_immediate_stop(void **state) {
        _cleanup_free_ char *dir = make_temp_dir();
        struct fake_backend f = {};
        struct pgctl c = { .ops = &fake_ops, .config = { .datadir = dir }, .userdata = &f };

        assert_int_equal(pgctl_fence(&c, 5 * USEC_PER_SEC, NULL), 0);
        assert_int_equal(f.stops, 1);
        assert_int_equal(f.mode, PGCTL_STOP_IMMEDIATE);
        assert_int_equal(f.marker_at_stop, 1);
        remove_temp_dir(dir);
}

static void test_fence_stops_even_when_marker_cannot_be_written(void **state) {
        _cleanup_free_ char *err = NULL;
        struct fake_backend f = {};
        struct pgctl c = { .ops = &fake_ops, .config = { .datadir = "/nonexistent/pgdata" }, .userdata = &f };

        assert_true(pgctl_fence(&c, 5 * USEC_PER_SEC, &err) < 0);
        assert_int_equal(f.stops, 1);
        assert_int_equal(f.mode, PGCTL_STOP_IMMEDIATE);
        assert_non_null(err);
        assert_non_null(strstr(err, "standby.signal"));
}

static void test_supervisor_stop_of_a_down_server_sets_hold(void **state) {
        _cleanup_free_ char *dir = make_temp_dir();
        struct pgctl_config cfg = { .datadir = dir, .run_dir = dir };
        struct pgctl c;

        assert_int_equal(pgctl_init(&c, "supervisor", &cfg), 0);
        assert_int_equal(pgctl_is_running(&c, NULL), 0);
        assert_int_equal(pgctl_stop(&c, PGCTL_STOP_FAST, USEC_PER_SEC, NULL), 0);
        assert_int_equal(pgctl_hold_is_set(dir), 1);
        pgctl_done(&c);
        remove_temp_dir(dir);
}

static void test_supervisor_stop_without_hold_does_not_signal(void **state) {
        _cleanup_free_ char *dir = make_temp_dir(), *err = NULL, *pidfile = NULL, *text = NULL;
        struct pgctl_config cfg = { .datadir = dir, .run_dir = "/nonexistent/run" };
        struct pgctl c;

        /* A postmaster.pid naming this very process: were it signalled,
         * the test would die of SIGINT. */
        pidfile = strdup_printf("%s/postmaster.pid", dir);
        text = strdup_printf("%d\n%s\n", (int) getpid(), dir);
        assert_int_equal(write_file_atomic(pidfile, text, 0600), 0);
        assert_int_equal(pgctl_init(&c, "supervisor", &cfg), 0);
        assert_true(pgctl_stop(&c, PGCTL_STOP_FAST, USEC_PER_SEC, &err) < 0);
        assert_non_null(strstr(err, "hold"));
        pgctl_done(&c);
        remove_temp_dir(dir);
}

/* A reload frees the configuration the paths came from: the pgctl must
 * hold its own copies (docs/design.md, "Who owns what"). */
static void test_init_copies_the_paths_it_keeps(void **state) {
        char *datadir = strdup("/d"), *run_dir = strdup("/r"), *bindir = strdup("/b");
        struct pgctl_config cfg = { .datadir = datadir, .run_dir = run_dir, .bindir = bindir };
        struct pgctl c = {};

        assert_int_equal(pgctl_init(&c, "supervisor", &cfg), 0);
        free(datadir);
        free(run_dir);
        free(bindir);
        assert_string_equal(c.config.datadir, "/d");
        assert_string_equal(c.config.run_dir, "/r");
        assert_string_equal(c.config.bindir, "/b");
        assert_null(c.config.log_file);
        pgctl_done(&c);
        assert_null(c.config.datadir);
}

static void test_init_validates_backend_and_paths(void **state) {
        struct pgctl_config cfg = { .datadir = "/d", .run_dir = "/r", .bindir = "/b" };
        struct pgctl c = {};

        assert_int_equal(pgctl_init(&c, "supervisor", &cfg), 0);
        assert_ptr_equal(c.ops, &pgctl_supervisor_ops);
        pgctl_done(&c);
        assert_int_equal(pgctl_init(&c, "pg_ctl", &cfg), 0);
        assert_ptr_equal(c.ops, &pgctl_pg_ctl_ops);
        pgctl_done(&c);
        assert_int_equal(pgctl_init(&c, "systemd", &cfg), -EINVAL);
        assert_int_equal(pgctl_init(&c, NULL, &cfg), -EINVAL);
        cfg.run_dir = NULL;
        assert_int_equal(pgctl_init(&c, "supervisor", &cfg), -EINVAL);
        cfg.bindir = NULL;
        assert_int_equal(pgctl_init(&c, "pg_ctl", &cfg), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_stop_modes_map_to_postmaster_signals),
                cmocka_unit_test(test_data_dir_mode_is_made_what_postgres_accepts),
                cmocka_unit_test(test_pidfile_of_a_ready_server_parses),
                cmocka_unit_test(test_pidfile_while_starting_has_no_status),
                cmocka_unit_test(test_pidfile_truncated_keeps_only_complete_lines),
                cmocka_unit_test(test_pidfile_garbage_is_rejected),
                cmocka_unit_test(test_postmaster_cmdline_is_told_from_children_and_others),
                cmocka_unit_test(test_recycled_pid_is_not_a_postmaster),
                cmocka_unit_test(test_controldata_of_a_primary_parses),
                cmocka_unit_test(test_controldata_of_a_stopped_standby_parses),
                cmocka_unit_test(test_controldata_states_round_trip),
                cmocka_unit_test(test_controldata_missing_or_bad_fields_are_rejected),
                cmocka_unit_test(test_hold_file_is_set_cleared_and_idempotent),
                cmocka_unit_test(test_hold_check_of_a_missing_run_dir_is_an_error),
                cmocka_unit_test(test_standby_marker_is_written_and_removed),
                cmocka_unit_test(test_fence_writes_standby_marker_before_immediate_stop),
                cmocka_unit_test(test_fence_stops_even_when_marker_cannot_be_written),
                cmocka_unit_test(test_supervisor_stop_of_a_down_server_sets_hold),
                cmocka_unit_test(test_supervisor_stop_without_hold_does_not_signal),
                cmocka_unit_test(test_init_validates_backend_and_paths),
                cmocka_unit_test(test_init_copies_the_paths_it_keeps),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
