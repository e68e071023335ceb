/* test-replication.c: the pure parts of replication and bootstrap: slot
 * names, pg_basebackup progress lines, the clone plan, slot retention on a
 * scripted clock, timeline fork decisions, pg_controldata parsing, the
 * standby configuration files and pg_hba generation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "bootstrap.h"
#include "clock.h"
#include "replication.h"
#include "util.h"

static void test_slot_name_is_prefixed_lowercased_and_sanitised(void **state) {
        char *s = NULL;

        assert_int_equal(replication_slot_name("postgres-sts-0", &s), 0);
        assert_string_equal(s, "pglease_postgres_sts_0");
        free(s);
        assert_int_equal(replication_slot_name("Node.A b", &s), 0);
        assert_string_equal(s, "pglease_node_a_b");
        free(s);
        assert_int_equal(replication_slot_name("", &s), -EINVAL);
}

static void test_long_slot_names_are_cut_to_63_and_stay_distinct(void **state) {
        char a_name[101], b_name[101];
        char *a = NULL, *b = NULL;

        memset(a_name, 'x', 100);
        a_name[100] = '\0';
        memcpy(b_name, a_name, sizeof(b_name));
        b_name[99] = 'y';
        assert_int_equal(replication_slot_name(a_name, &a), 0);
        assert_int_equal(replication_slot_name(b_name, &b), 0);
        assert_int_equal(strlen(a), REPLICATION_SLOT_NAME_MAX);
        assert_int_equal(strlen(b), REPLICATION_SLOT_NAME_MAX);
        assert_string_not_equal(a, b);
        assert_true(strneq(a, "pglease_xxx", 11));
        assert_int_equal(strspn(a, "abcdefghijklmnopqrstuvwxyz0123456789_"), strlen(a));
        free(a);
        free(b);
}

static void test_progress_lines_of_pg_basebackup_parse(void **state) {
        uint64_t done = 0, total = 0;
        int pct = -1;

        assert_int_equal(replication_parse_progress("  12345/204800 kB (6%), 0/1 tablespace", &done, &total, &pct), 0);
        assert_int_equal(done, 12345);
        assert_int_equal(total, 204800);
        assert_int_equal(pct, 6);
        assert_int_equal(replication_parse_progress(
                                 "204800/204800 kB (100%), 1/1 tablespace (...base/5/16384)", &done, &total, &pct), 0);
        assert_int_equal(pct, 100);
        assert_int_equal(replication_parse_progress("pg_basebackup: write-ahead log start point: 0/2000028",
                                                    &done, &total, &pct), -EINVAL);
        assert_int_equal(replication_parse_progress("12/34 MB (5%)", &done, &total, &pct), -EINVAL);
        assert_int_equal(replication_parse_progress("", &done, &total, &pct), -EINVAL);
}

static bool strv_has_line_with(char **l, const char *needle) {
        for (size_t i = 0; l && l[i]; i++)
                if (strstr(l[i], needle))
                        return true;
        return false;
}

static void test_clone_plan_shows_steps_and_command_without_password(void **state) {
        struct clone_options o = {
                .bindir = "/usr/lib/postgresql/15/bin",
                .node_name = "pod-1",
                .datadir = "/var/lib/pg/data",
                .source = { .host = "10.0.0.5", .port = 5433, .user = "replicator",
                            .passfile = "/run/pglease/pgpass" },
                .password_file = "/etc/secrets/repl-password",
        };
        char **lines = NULL;

        assert_int_equal(replication_clone_plan(&o, &lines), 0);
        assert_true(strv_has_line_with(lines, "marker /var/lib/pg/.data.pglease-clone"));
        assert_true(strv_has_line_with(lines, "IDENTIFY_SYSTEM"));
        assert_true(strv_has_line_with(lines, "create physical slot pglease_pod_1"));
        assert_true(strv_has_line_with(lines, "run /usr/lib/postgresql/15/bin/pg_basebackup --pgdata=/var/lib/pg/data "
                                              "--wal-method=stream --checkpoint=fast --progress --verbose"));
        assert_true(strv_has_line_with(lines, "--slot=pglease_pod_1"));
        assert_true(strv_has_line_with(lines, "passfile=/run/pglease/pgpass"));
        assert_true(strv_has_line_with(lines, "application_name=pod-1"));
        assert_true(strv_has_line_with(lines, "primary_slot_name = 'pglease_pod_1'"));
        assert_true(strv_has_line_with(lines, "on failure: remove /var/lib/pg/data, drop the slot"));
        assert_false(strv_has_line_with(lines, "password="));
        strv_free(lines);

        o.no_slot = true;
        o.keep_failed = true;
        assert_int_equal(replication_clone_plan(&o, &lines), 0);
        assert_false(strv_has_line_with(lines, "--slot"));
        assert_true(strv_has_line_with(lines, "on failure: rename aside /var/lib/pg/data"));
        strv_free(lines);

        o.datadir = "relative/path";
        assert_int_equal(replication_clone_plan(&o, &lines), -EINVAL);
}

struct slot_run {
        char **create, **drop;
};

static void slot_run_done(struct slot_run *r) {
        strv_free(r->create);
        strv_free(r->drop);
        *r = (struct slot_run) {};
}

static void plan(const struct slot_info *existing, size_t n, const char *const *members,
                 usec_t now, struct slot_state *st, usec_t retention, struct slot_run *out) {
        slot_run_done(out);
        assert_int_equal(replication_slots_plan(existing, n, members, now, st, retention,
                                                &out->create, &out->drop), 0);
}

static void test_slot_created_for_each_new_member(void **state) {
        struct slot_state st = {};
        struct slot_run run = {};
        const struct slot_info existing[] = { { "pglease_a", true } };

        plan(existing, 1, (const char *const[]) { "a", "b", "b", NULL }, 0, &st, 60 * USEC_PER_SEC, &run);
        assert_int_equal(strv_length(run.create), 1);
        assert_string_equal(run.create[0], "pglease_b");
        assert_int_equal(strv_length(run.drop), 0);
        slot_run_done(&run);
        slot_state_done(&st);
}

static void test_slot_dropped_only_after_retention_on_scripted_clock(void **state) {
        struct clock_scripted cs = { .monotonic = 1000 * USEC_PER_SEC };
        struct clock_ops clock;
        struct slot_state st = {};
        struct slot_run run = {};
        const usec_t retention = 30 * USEC_PER_SEC;
        const struct slot_info both[] = { { "pglease_a", false }, { "pglease_b", false } };

        clock_scripted_init(&cs, &clock);
        plan(both, 2, (const char *const[]) { "a", "b", NULL }, clock_now(&clock), &st, retention, &run);
        assert_int_equal(strv_length(run.drop), 0);

        /* b leaves the cluster. */
        clock_scripted_advance(&cs, 10 * USEC_PER_SEC);
        plan(both, 2, (const char *const[]) { "a", NULL }, clock_now(&clock), &st, retention, &run);
        assert_int_equal(strv_length(run.drop), 0);
        clock_scripted_advance(&cs, 29 * USEC_PER_SEC); /* 39 s after b was last wanted... */
        plan(both, 2, (const char *const[]) { "a", NULL }, clock_now(&clock), &st, retention, &run);
        assert_int_equal(strv_length(run.drop), 1);     /* ...which is past 30 s */
        assert_string_equal(run.drop[0], "pglease_b");
        slot_run_done(&run);
        slot_state_done(&st);
}

static void test_slot_retention_restarts_when_member_returns(void **state) {
        struct slot_state st = {};
        struct slot_run run = {};
        const usec_t retention = 30 * USEC_PER_SEC;
        const struct slot_info both[] = { { "pglease_a", false }, { "pglease_b", false } };

        plan(both, 2, (const char *const[]) { "a", "b", NULL }, 0, &st, retention, &run);
        plan(both, 2, (const char *const[]) { "a", NULL }, 20 * USEC_PER_SEC, &st, retention, &run);
        plan(both, 2, (const char *const[]) { "a", "b", NULL }, 25 * USEC_PER_SEC, &st, retention, &run);
        plan(both, 2, (const char *const[]) { "a", NULL }, 40 * USEC_PER_SEC, &st, retention, &run);
        assert_int_equal(strv_length(run.drop), 0); /* 15 s since b was last wanted */
        plan(both, 2, (const char *const[]) { "a", NULL }, 55 * USEC_PER_SEC, &st, retention, &run);
        assert_int_equal(strv_length(run.drop), 1);
        slot_run_done(&run);
        slot_state_done(&st);
}

static void test_active_and_foreign_slots_are_never_dropped(void **state) {
        struct slot_state st = {};
        struct slot_run run = {};
        const struct slot_info existing[] = {
                { "pglease_gone", true }, { "barman", false }, { "pglease_idle", false },
        };

        plan(existing, 3, (const char *const[]) { NULL }, 0, &st, 5 * USEC_PER_SEC, &run);
        plan(existing, 3, (const char *const[]) { NULL }, USEC_PER_HOUR, &st, 5 * USEC_PER_SEC, &run);
        assert_int_equal(strv_length(run.drop), 1);
        assert_string_equal(run.drop[0], "pglease_idle");
        slot_run_done(&run);
        slot_state_done(&st);
}

static void test_agent_restart_starts_retention_over(void **state) {
        struct slot_state st = {};
        struct slot_run run = {};
        const struct slot_info existing[] = { { "pglease_old", false } };

        /* A fresh state meets an unwanted slot: it is not dropped at once. */
        plan(existing, 1, (const char *const[]) { NULL }, USEC_PER_DAY, &st, 60 * USEC_PER_SEC, &run);
        assert_int_equal(strv_length(run.drop), 0);
        plan(existing, 1, (const char *const[]) { NULL }, USEC_PER_DAY + 60 * USEC_PER_SEC, &st,
             60 * USEC_PER_SEC, &run);
        assert_int_equal(strv_length(run.drop), 1);
        /* Once gone and unwanted, the state forgets it. */
        plan(NULL, 0, (const char *const[]) { NULL }, USEC_PER_DAY + 61 * USEC_PER_SEC, &st,
             60 * USEC_PER_SEC, &run);
        assert_int_equal(st.n_slots, 0);
        slot_run_done(&run);
        slot_state_done(&st);
}

static void test_history_parse_and_fork_decisions(void **state) {
        struct timeline_entry *h = NULL;
        size_t n = 0;

        assert_int_equal(replication_parse_history(
                                 "1\t0/3000060\tno recovery target specified\n\n"
                                 "2\t0/5000000\tno recovery target specified\n", &h, &n), 0);
        assert_int_equal(n, 2);
        assert_int_equal(h[0].tli, 1);
        assert_int_equal(h[0].switchpoint, 0x3000060);
        assert_int_equal(h[1].switchpoint, 0x5000000);

        /* Former primary on timeline 1, new primary on 3. */
        assert_int_equal(replication_fork_decide(1, 0x3000028, NULL, 0, 3, h, n), TIMELINE_SAME_HISTORY); /* shutdown checkpoint was replayed */
        assert_int_equal(replication_fork_decide(1, 0x3000060, NULL, 0, 3, h, n), TIMELINE_FORKED);  /* it wrote at the switch point */
        assert_int_equal(replication_fork_decide(1, 0x4000000, NULL, 0, 3, h, n), TIMELINE_FORKED);  /* it wrote after the fork */
        assert_int_equal(replication_fork_decide(2, 0x4000000, h, 1, 3, h, n), TIMELINE_SAME_HISTORY);
        assert_int_equal(replication_fork_decide(4, 0x1000000, h, n, 3, h, n), TIMELINE_FORKED);  /* ahead of the primary */
        assert_int_equal(replication_fork_decide(7, 0x1000000, NULL, 0, 9, h, n), TIMELINE_FORKED);  /* not in its history */
        assert_int_equal(replication_fork_decide(3, 0x9000000, h, n, 3, h, n), TIMELINE_SAME_HISTORY); /* same timeline */
        free(h);

        /* Two promotions that both chose timeline 2 (neither saw the
         * other's history file): the same number, other ancestors. */
        {
                struct timeline_entry ours[] = { { .tli = 1, .switchpoint = 0x3000060 } };
                struct timeline_entry theirs[] = { { .tli = 1, .switchpoint = 0x3000100 } };
                struct timeline_entry theirs3[] = { { .tli = 1, .switchpoint = 0x3000100 },
                                                    { .tli = 2, .switchpoint = 0x5000000 } };

                assert_int_equal(replication_fork_decide(2, 0x3000200, ours, 1, 2, theirs, 1),
                                 TIMELINE_FORKED_SAME_NUMBER);
                /* Behind theirs by LSN, and still another branch. */
                assert_int_equal(replication_fork_decide(2, 0x3000080, ours, 1, 2, theirs, 1),
                                 TIMELINE_FORKED_SAME_NUMBER);
                /* They went on to 3: a rewind finds the common ancestor (it
                 * compares where each timeline began). */
                assert_int_equal(replication_fork_decide(2, 0x3000080, ours, 1, 3, theirs3, 2), TIMELINE_FORKED);
                /* Our own timeline 2 is theirs: follow. */
                assert_int_equal(replication_fork_decide(2, 0x4000000, theirs, 1, 3, theirs3, 2),
                                 TIMELINE_SAME_HISTORY);
                /* Timeline 1 needs no history of its own. */
                assert_int_equal(replication_fork_decide(1, 0x3000000, NULL, 0, 2, theirs, 1), TIMELINE_SAME_HISTORY);
        }

        assert_int_equal(replication_parse_history("garbage\n", &h, &n), -EBADMSG);
}

static const char controldata_text[] =
        "pg_control version number:            1300\n"
        "Catalog version number:               202209061\n"
        "Database system identifier:           7311110987654321012\n"
        "Database cluster state:               shut down\n"
        "Latest checkpoint location:           0/3000028\n"
        "Latest checkpoint's REDO location:    0/3000028\n"
        "Latest checkpoint's TimeLineID:       2\n"
        "Minimum recovery ending location:     0/0\n"
        "wal_log_hints setting:                off\n"
        "Data page checksum version:           1\n";

static void test_controldata_parse(void **state) {
        struct control_data c = {};

        assert_int_equal(replication_parse_controldata(controldata_text, &c), 0);
        assert_string_equal(c.state, "shut down");
        assert_int_equal(c.system_identifier, 7311110987654321012ULL);
        assert_int_equal(c.timeline, 2);
        assert_int_equal(c.checkpoint_lsn, 0x3000028);
        assert_int_equal(c.min_recovery_lsn, 0);
        assert_true(c.data_checksums);
        assert_false(c.wal_log_hints);
        control_data_done(&c);
        assert_int_equal(replication_parse_controldata("Database cluster state: in production\n", &c), -EBADMSG);
}

static char *make_tmpdir(void) {
        char *d = strdup("/tmp/test-replication-XXXXXX");

        assert_non_null(mkdtemp(d));
        return d;
}

static char *read_text(const char *dir, const char *name) {
        char *path = strdup_printf("%s/%s", dir, name), *s = NULL;

        assert_int_equal(read_full_file(path, &s, NULL), 0);
        free(path);
        return s;
}

static void rm_files(const char *dir, const char *const *names) {
        for (size_t i = 0; names[i]; i++) {
                char *p = strdup_printf("%s/%s", dir, names[i]);
                (void) unlink(p);
                free(p);
        }
        (void) rmdir(dir);
}

static void test_standby_config_replaces_conninfo_and_keeps_other_settings(void **state) {
        char *dir = make_tmpdir(), *path = strdup_printf("%s/postgresql.auto.conf", dir), *s;
        struct upstream u = { .host = "10.0.0.9", .port = 5432, .user = "repl",
                              .passfile = "/run/it's/pgpass", .application_name = "pod-2" };
        struct stat st;

        assert_int_equal(write_file_atomic(path, "# Do not edit\nwork_mem = '8MB'\n"
                                                 "primary_conninfo = 'host=old'\nprimary_slot_name = 'x'\n", 0600), 0);
        assert_int_equal(replication_write_standby_config(dir, &u, "pglease_pod_2", NULL), 0);
        s = read_text(dir, "postgresql.auto.conf");
        assert_non_null(strstr(s, "work_mem = '8MB'\n"));
        assert_null(strstr(s, "host=old"));
        assert_null(strstr(s, "= 'x'"));
        assert_non_null(strstr(s, "primary_conninfo = 'host=10.0.0.9 port=5432 user=repl "
                                  "passfile=''/run/it\\\\''s/pgpass'' application_name=pod-2 connect_timeout=5'\n"));
        assert_non_null(strstr(s, "primary_slot_name = 'pglease_pod_2'\n"));
        free(s);
        s = strdup_printf("%s/standby.signal", dir);
        assert_int_equal(stat(s, &st), 0);
        free(s);

        assert_int_equal(replication_write_standby_config(dir, &u, NULL, NULL), 0);
        s = read_text(dir, "postgresql.auto.conf");
        assert_null(strstr(s, "primary_slot_name"));
        free(s);
        rm_files(dir, (const char *const[]) { "postgresql.auto.conf", "standby.signal", NULL });
        free(path);
        free(dir);
}

static void test_passfile_escapes_and_keeps_other_users(void **state) {
        char *dir = make_tmpdir(), *secret = strdup_printf("%s/secret", dir);
        char *pass = strdup_printf("%s/pgpass", dir), *s;
        struct stat st;

        assert_int_equal(write_file_atomic(secret, "pa:ss\\word\n", 0600), 0);
        assert_int_equal(replication_passfile_set(pass, "repl", secret, NULL), 0);
        assert_int_equal(write_file_atomic(secret, "other\n", 0600), 0);
        assert_int_equal(replication_passfile_set(pass, "rewind", secret, NULL), 0);
        assert_int_equal(write_file_atomic(secret, "new\n", 0600), 0);
        assert_int_equal(replication_passfile_set(pass, "repl", secret, NULL), 0);
        s = read_text(dir, "pgpass");
        assert_string_equal(s, "*:*:*:rewind:other\n*:*:*:repl:new\n");
        free(s);
        assert_int_equal(stat(pass, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0600);

        assert_int_equal(write_file_atomic(secret, "pa:ss\\word\n", 0600), 0);
        assert_int_equal(replication_passfile_set(pass, "repl", secret, NULL), 0);
        s = read_text(dir, "pgpass");
        assert_non_null(strstr(s, "*:*:*:repl:pa\\:ss\\\\word\n"));
        free(s);
        rm_files(dir, (const char *const[]) { "secret", "pgpass", NULL });
        free(secret);
        free(pass);
        free(dir);
}

static void test_hba_lines_for_cluster_networks(void **state) {
        struct bootstrap_options o = {
                .bindir = "/usr/lib/postgresql/15/bin",
                .datadir = "/data",
                .repl_user = "replicator",
                .networks = (const char *const[]) { "10.244.0.0/16", "fd00::/64", NULL },
        };
        char *s = NULL;

        assert_int_equal(bootstrap_hba_text(&o, &s), 0);
        assert_non_null(strstr(s, "local   all          all"));
        assert_non_null(strstr(s, "peer\n"));
        assert_non_null(strstr(s, "host    replication  replicator       10.244.0.0/16            scram-sha-256\n"));
        assert_non_null(strstr(s, "host    all          all              10.244.0.0/16            scram-sha-256\n"));
        assert_non_null(strstr(s, "host    replication  replicator       fd00::/64                scram-sha-256\n"));
        assert_null(strstr(s, "trust"));
        assert_null(strstr(s, " md5"));
        free(s);

        o.networks = (const char *const[]) { "10.0.0.0/33", NULL };
        assert_int_equal(bootstrap_hba_text(&o, &s), -EINVAL);
        o.networks = (const char *const[]) { "0.0.0.0/0 trust\nhost all all", NULL };
        assert_int_equal(bootstrap_hba_text(&o, &s), -EINVAL);
        o.networks = NULL;
        o.repl_user = "Robert'); DROP";
        assert_int_equal(bootstrap_hba_text(&o, &s), -EINVAL);
}

static void test_bootstrap_conf_has_replication_settings(void **state) {
        struct bootstrap_options o = {
                .bindir = "/b", .datadir = "/d", .port = 5433, .socket_dir = "/run/pg",
                .max_wal_senders = 8, .max_slot_wal_keep_size = "10GB", .wal_keep_size = "512MB",
        };
        char *s = NULL;

        assert_int_equal(bootstrap_conf_text(&o, &s), 0);
        assert_non_null(strstr(s, "wal_level = replica\n"));
        assert_non_null(strstr(s, "hot_standby = on\n"));
        assert_non_null(strstr(s, "wal_log_hints = on\n"));
        assert_non_null(strstr(s, "max_wal_senders = 8\n"));
        assert_non_null(strstr(s, "max_replication_slots = 10\n"));
        assert_non_null(strstr(s, "max_slot_wal_keep_size = '10GB'\n"));
        assert_non_null(strstr(s, "wal_keep_size = '512MB'\n"));
        assert_non_null(strstr(s, "port = 5433\n"));
        assert_non_null(strstr(s, "unix_socket_directories = '/run/pg'\n"));
        assert_non_null(strstr(s, "listen_addresses = '*'\n"));
        free(s);
        o.max_slot_wal_keep_size = "lots";
        assert_int_equal(bootstrap_conf_text(&o, &s), -EINVAL);
        o.max_slot_wal_keep_size = NULL;
        o.wal_keep_size = "much";
        assert_int_equal(bootstrap_conf_text(&o, &s), -EINVAL);
        o.wal_keep_size = NULL;
        assert_int_equal(bootstrap_conf_text(&o, &s), 0);
        assert_non_null(strstr(s, "wal_keep_size = '0'\n"));
        free(s);
        o.socket_dir = "/tmp'\nfsync = off";
        assert_int_equal(bootstrap_conf_text(&o, &s), -EINVAL);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_slot_name_is_prefixed_lowercased_and_sanitised),
                cmocka_unit_test(test_long_slot_names_are_cut_to_63_and_stay_distinct),
                cmocka_unit_test(test_progress_lines_of_pg_basebackup_parse),
                cmocka_unit_test(test_clone_plan_shows_steps_and_command_without_password),
                cmocka_unit_test(test_slot_created_for_each_new_member),
                cmocka_unit_test(test_slot_dropped_only_after_retention_on_scripted_clock),
                cmocka_unit_test(test_slot_retention_restarts_when_member_returns),
                cmocka_unit_test(test_active_and_foreign_slots_are_never_dropped),
                cmocka_unit_test(test_agent_restart_starts_retention_over),
                cmocka_unit_test(test_history_parse_and_fork_decisions),
                cmocka_unit_test(test_controldata_parse),
                cmocka_unit_test(test_standby_config_replaces_conninfo_and_keeps_other_settings),
                cmocka_unit_test(test_passfile_escapes_and_keeps_other_users),
                cmocka_unit_test(test_hba_lines_for_cluster_networks),
                cmocka_unit_test(test_bootstrap_conf_has_replication_settings),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
