/* test-config.c: the configuration table, every error path of the file,
 * environment and flag sources, validation, dump and reload. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "config.h"
#include "pglease-build.h"
#include "util.h"

static char *write_temp(const char *content) {
        char path[] = "/tmp/pglease-test-config-XXXXXX";
        int fd = mkstemp(path);

        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, strlen(content)), (ssize_t) strlen(content));
        close(fd);
        return strdup(path);
}

static int load_bytes(const char *content, size_t size, struct config *ret, char **err) {
        char path[] = "/tmp/pglease-test-config-XXXXXX";
        int fd = mkstemp(path), r;

        assert_true(fd >= 0);
        assert_int_equal(write(fd, content, size), (ssize_t) size);
        close(fd);
        r = config_load(path, NULL, NULL, ret, NULL, err);
        unlink(path);
        return r;
}

/* Loads content as a file with no environment; returns r and the error. */
static int load(const char *content, char *const *env, char *const *settings, struct config *ret, char **err) {
        _cleanup_free_ char *path = write_temp(content);
        int r = config_load(path, env, settings, ret, NULL, err);

        unlink(path);
        return r;
}

static void test_defaults_are_valid(void **state) {
        struct config c;

        assert_int_equal(config_load(NULL, NULL, NULL, &c, NULL, NULL), 0);
        assert_string_equal(c.cluster_name, "pg");
        assert_int_equal(c.lease_duration, 10 * USEC_PER_SEC);
        assert_int_equal(c.renew_deadline, 7 * USEC_PER_SEC);
        assert_int_equal(c.retry_period, 2 * USEC_PER_SEC);
        assert_int_equal(c.pg_port, 5432);
        assert_int_equal(c.maximum_lag_on_failover, 1024 * 1024);
        assert_int_equal(c.synchronous_mode, SYNCHRONOUS_OFF);
        assert_string_equal(c.origin[0], "default");
        config_done(&c);
}

static void test_file_values_and_quotes(void **state) {
        struct config c;
        _cleanup_free_ char *err = NULL;

        assert_int_equal(load("# comment\n\ncluster_name = main # trailing\n"
                              "tags = 'a, b # not a comment'\n"
                              "location = \"rack 1\"\n"
                              "lease_duration=20s\nrenew_deadline = 15s\nretry_period = 500ms\n"
                              "synchronous_mode = strict\nnofailover = yes\nmaximum_lag_on_failover = 16MB\n",
                              NULL, NULL, &c, &err), 0);
        assert_string_equal(c.cluster_name, "main");
        assert_string_equal(c.tags, "a, b # not a comment");
        assert_string_equal(c.location, "rack 1");
        assert_int_equal(c.lease_duration, 20 * USEC_PER_SEC);
        assert_int_equal(c.retry_period, 500 * USEC_PER_MSEC);
        assert_int_equal(c.synchronous_mode, SYNCHRONOUS_STRICT);
        assert_true(c.nofailover);
        assert_int_equal(c.maximum_lag_on_failover, 16 * 1024 * 1024);
        assert_non_null(strstr(c.origin[0], ":3"));
        config_done(&c);
}

static void assert_load_fails(const char *content, int expected, const char *const *fragments) {
        _cleanup_free_ char *err = NULL;
        struct config c;

        assert_int_equal(load(content, NULL, NULL, &c, &err), expected);
        assert_non_null(err);
        for (; *fragments; fragments++)
                if (!strstr(err, *fragments))
                        fail_msg("error '%s' does not mention '%s'", err, *fragments);
}

static void test_unknown_key_names_file_line_and_key(void **state) {
        assert_load_fails("cluster_name = a\n\nlease_duraton = 3s\n", -ENOENT,
                          (const char *[]) { "/tmp/pglease-test-config-", ":3:", "lease_duraton", NULL });
}

static void test_out_of_range_number(void **state) {
        assert_load_fails("pg_port = 70000\n", -ERANGE, (const char *[]) { ":1:", "pg_port", "70000", "1..65535", NULL });
        assert_load_fails("priority = -1\n", -ERANGE, (const char *[]) { "priority", NULL });
        assert_load_fails("pg_port = 54x\n", -EINVAL, (const char *[]) { "pg_port", "not an integer", NULL });
}

static void test_bad_durations(void **state) {
        assert_load_fails("retry_period = 2 parsecs\n", -EINVAL, (const char *[]) { "retry_period", "duration", NULL });
        assert_load_fails("lease_duration = 1.5s\n", -EINVAL, (const char *[]) { "lease_duration", NULL });
        assert_load_fails("lease_duration = 2d\n", -ERANGE, (const char *[]) { "lease_duration", "out of range", NULL });
        assert_load_fails("retry_period = 10us\n", -ERANGE, (const char *[]) { "retry_period", NULL });
}

static void test_bad_enum_bool_path_and_syntax(void **state) {
        assert_load_fails("synchronous_mode = maybe\n", -EINVAL, (const char *[]) { "synchronous_mode", "off, on, strict", NULL });
        assert_load_fails("nofailover = perhaps\n", -EINVAL, (const char *[]) { "nofailover", "boolean", NULL });
        assert_load_fails("data_dir = relative/dir\n", -EINVAL, (const char *[]) { "data_dir", "absolute", NULL });
        assert_load_fails("just words\n", -EINVAL, (const char *[]) { ":1:", "key = value", NULL });
        assert_load_fails("tags = 'unterminated\n", -EINVAL, (const char *[]) { "tags", "quote", NULL });
        assert_load_fails("Cluster_Name = x\n", -EINVAL, (const char *[]) { "invalid key", NULL });
        assert_load_fails("= x\n", -EINVAL, (const char *[]) { "missing key", NULL });
}

static void test_lease_timing_rule(void **state) {
        assert_load_fails("lease_duration = 7s\nrenew_deadline = 7s\n", -EINVAL,
                          (const char *[]) { "lease_duration", "greater than renew_deadline", NULL });
        /* 1.2 x 2s = 2.4s: a 2.4s deadline is not strictly greater. */
        assert_load_fails("lease_duration = 10s\nrenew_deadline = 2400ms\nretry_period = 2s\nstatus_interval = 10s\n", -EINVAL,
                          (const char *[]) { "renew_deadline", "1.2 x retry_period", NULL });
        struct config c;
        assert_int_equal(load("lease_duration = 10s\nrenew_deadline = 2401ms\nretry_period = 2s\n", NULL, NULL, &c, NULL), 0);
        config_done(&c);
}

static void test_statement_timeout_must_be_under_the_renew_deadline(void **state) {
        struct config c;

        /* A metadata write waiting on a lock must give up before the lease's
         * deadline: the key and where it was set are named. */
        assert_load_fails("lease_duration = 4s\nrenew_deadline = 3s\nretry_period = 1s\nstatus_interval = 2s\nstatement_timeout = 3s\n", -EINVAL,
                          (const char *[]) { "statement_timeout", "renew_deadline", ":5", NULL });
        /* The default (2 s) fits the test timings. */
        assert_int_equal(load("lease_duration = 4s\nrenew_deadline = 3s\nretry_period = 1s\nstatus_interval = 2s\n", NULL, NULL, &c, NULL), 0);
        assert_int_equal(c.statement_timeout, 2 * USEC_PER_SEC);
        config_done(&c);
}

static void test_names_must_be_dns_labels(void **state) {
        assert_load_fails("cluster_name = My_Cluster\n", -EINVAL, (const char *[]) { "cluster_name", "DNS label", NULL });
        assert_load_fails("node_name = -x\n", -EINVAL, (const char *[]) { "node_name", NULL });
}

static void test_missing_file_is_named(void **state) {
        _cleanup_free_ char *err = NULL;
        struct config c;

        assert_int_equal(config_load("/nonexistent/pglease.conf", NULL, NULL, &c, NULL, &err), -ENOENT);
        assert_non_null(strstr(err, "/nonexistent/pglease.conf"));
}

static void test_env_overrides_file_and_flags_override_env(void **state) {
        char *env[] = { "PGLEASE_CLUSTER_NAME=fromenv", "PGLEASE_PRIORITY=7", "PGLEASE_BUILD_DIR=/x", "PATH=/bin", NULL };
        char *settings[] = { "priority=9", NULL };
        _cleanup_strv_free_ char **unknown = NULL;
        _cleanup_free_ char *path = write_temp("cluster_name = fromfile\npriority = 5\n");
        struct config c;

        assert_int_equal(config_load(path, env, settings, &c, &unknown, NULL), 0);
        unlink(path);
        assert_string_equal(c.cluster_name, "fromenv");
        assert_int_equal(c.priority, 9);
        assert_string_equal(c.origin[0], "env PGLEASE_CLUSTER_NAME");
        assert_int_equal(strv_length(unknown), 1);
        assert_string_equal(unknown[0], "PGLEASE_BUILD_DIR");
        config_done(&c);
}

static void test_bad_env_and_flag_name_their_source(void **state) {
        char *env[] = { "PGLEASE_PG_PORT=zero", NULL };
        char *settings[] = { "no_such_key=1", NULL };
        char *settings2[] = { "novalue", NULL };
        _cleanup_free_ char *err = NULL, *err2 = NULL, *err3 = NULL;
        struct config c;

        assert_int_equal(config_load(NULL, env, NULL, &c, NULL, &err), -EINVAL);
        assert_non_null(strstr(err, "PGLEASE_PG_PORT"));
        assert_int_equal(config_load(NULL, NULL, settings, &c, NULL, &err2), -ENOENT);
        assert_non_null(strstr(err2, "no_such_key"));
        assert_int_equal(config_load(NULL, NULL, settings2, &c, NULL, &err3), -EINVAL);
        assert_non_null(strstr(err3, "KEY=VALUE"));
}

static void test_dump_hides_secrets(void **state) {
        _cleanup_free_ char *dump = NULL;
        struct config c;

        assert_int_equal(load("replication_password = 'hunter2'\n", NULL, NULL, &c, NULL), 0);
        assert_int_equal(config_dump(&c, &dump), 0);
        assert_null(strstr(dump, "hunter2"));
        assert_non_null(strstr(dump, "replication_password = ***"));
        assert_non_null(strstr(dump, "lease_duration = 10s"));
        assert_non_null(strstr(dump, "restart to change"));
        config_done(&c);
}

static void test_every_key_has_a_valid_default_and_description(void **state) {
        size_t n;
        const struct config_key *k = config_keys(&n);

        assert_true(n > 40);
        for (size_t i = 0; i < n; i++) {
                assert_non_null(k[i].description);
                assert_true(strlen(k[i].description) > 10);
                for (size_t j = 0; j < i; j++)
                        assert_string_not_equal(k[i].name, k[j].name);
        }
}

static void test_reload_keeps_non_reloadable_keys(void **state) {
        struct config running, next;
        _cleanup_strv_free_ char **changed = NULL, **refused = NULL;

        assert_int_equal(load("cluster_name = a\npriority = 1\n", NULL, NULL, &running, NULL), 0);
        assert_int_equal(load("cluster_name = b\npriority = 2\n", NULL, NULL, &next, NULL), 0);
        assert_int_equal(config_reload_merge(&running, &next, &changed, &refused), 0);
        assert_int_equal(strv_length(refused), 1);
        assert_string_equal(refused[0], "cluster_name");
        assert_int_equal(strv_length(changed), 1);
        assert_string_equal(changed[0], "priority");
        assert_string_equal(next.cluster_name, "a");
        assert_int_equal(next.priority, 2);
        config_done(&running);
        config_done(&next);
}

/* examples/pglease.conf is the documented full configuration: it must load
 * and set every key of the table, so that a new key cannot be forgotten. */
static void test_example_file_sets_every_key(void **state) {
        _cleanup_free_ char *path = strdup_printf("%s/examples/pglease.conf", PGLEASE_SOURCE_DIR), *content = NULL, *err = NULL;
        struct config c;
        size_t n;
        const struct config_key *k = config_keys(&n);

        assert_int_equal(config_load(path, NULL, NULL, &c, NULL, &err), 0);
        assert_int_equal(read_full_file(path, &content, NULL), 0);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *line = strdup_printf("\n%s = ", k[i].name), *commented = strdup_printf("\n#%s = ", k[i].name);

                if (!strstr(content, line) && !(k[i].type == CONFIG_SECRET && strstr(content, commented)))
                        fail_msg("examples/pglease.conf does not set %s", k[i].name);
        }
        config_done(&c);
}


static void test_nul_byte_in_file_is_an_error(void **state) {
        /* Everything after the NUL was silently ignored: the invalid
         * lease_duration and the unknown key passed. */
        static const char content[] = "cluster_name = a\n\0\nlease_duration = 1s\nno_such_key = 1\n";
        _cleanup_free_ char *err = NULL;
        struct config c;

        assert_int_equal(load_bytes(content, sizeof(content) - 1, &c, &err), -EINVAL);
        assert_non_null(strstr(err, ":2: NUL byte"));
}

static void test_overflowing_numbers_are_out_of_range(void **state) {
        assert_load_fails("pg_port = 99999999999999999999999\n", -ERANGE,
                          (const char *[]) { ":1:", "pg_port", "out of range (1..65535)", NULL });
        assert_load_fails("lease_duration = 99999999999999999999999s\n", -ERANGE,
                          (const char *[]) { "lease_duration", "out of range", NULL });
        assert_load_fails("lease_duration = 18446744073709551d\n", -ERANGE,
                          (const char *[]) { "lease_duration", "out of range", NULL });
        assert_load_fails("maximum_lag_on_failover = 99999999999999999999TB\n", -ERANGE,
                          (const char *[]) { "maximum_lag_on_failover", "out of range", NULL });
        assert_load_fails("maximum_lag_on_failover = 18446744073709551615TB\n", -ERANGE,
                          (const char *[]) { "maximum_lag_on_failover", "out of range", NULL });
}

static void test_cross_key_errors_name_both_origins(void **state) {
        assert_load_fails("cluster_name = a\nlease_duration = 7s\nrenew_deadline = 7s\n", -EINVAL,
                          (const char *[]) { "lease_duration (7s, /tmp/pglease-test-config-", ":2)",
                                             "greater than renew_deadline (7s, ", ":3)", NULL });
        assert_load_fails("\nnode_name = Bad_Name\n", -EINVAL,
                          (const char *[]) { ":2: node_name: 'Bad_Name' must be a DNS label", NULL });
        assert_load_fails("status_interval = 1s\n", -EINVAL,
                          (const char *[]) { "status_interval (1s, ", ":1)", "retry_period (2s, default)", NULL });
        assert_load_fails("replication_password = x\nreplication_password_file = /x\n", -EINVAL,
                          (const char *[]) { ":1)", ":2)", "keep one", NULL });
}

static void test_long_values_are_echoed_truncated(void **state) {
        size_t n = 10 * 1024 * 1024;
        _cleanup_free_ char *content = malloc(n + 32), *err = NULL, *err2 = NULL;
        struct config c;

        strcpy(content, "node_name = ");
        memset(content + 12, 'x', n);
        strcpy(content + 12 + n, "_\n");
        assert_int_equal(load(content, NULL, NULL, &c, &err), -EINVAL);
        assert_true(strlen(err) < 400);
        assert_non_null(strstr(err, "...' (10485761 bytes) must be a DNS label"));
        strcpy(content, "pg_port = ");
        memset(content + 10, '9', n);
        strcpy(content + 10 + n, "x\n");
        assert_int_equal(load(content, NULL, NULL, &c, &err2), -EINVAL);
        assert_true(strlen(err2) < 400);
        assert_non_null(strstr(err2, "bytes) is not an integer"));
}

static void test_duplicate_key_is_an_error(void **state) {
        assert_load_fails("priority = 1\n# later\npriority = 2\n", -EINVAL,
                          (const char *[]) { ":3: duplicate key 'priority' (first set at line 1)", NULL });
}

static void test_directory_as_file_says_so(void **state) {
        _cleanup_free_ char *err = NULL;
        struct config c;

        assert_int_equal(config_load("/tmp", NULL, NULL, &c, NULL, &err), -EISDIR);
        assert_non_null(strstr(err, "/tmp: cannot read: is a directory"));
}

static void test_pglease_config_is_not_an_unknown_variable(void **state) {
        char *env[] = { "PGLEASE_CONFIG=/etc/pglease/pglease.conf", "PGLEASE_CONFG=/x", NULL };
        _cleanup_strv_free_ char **unknown = NULL;
        struct config c;

        assert_int_equal(config_load(NULL, env, NULL, &c, &unknown, NULL), 0);
        assert_int_equal(strv_length(unknown), 1);
        assert_string_equal(unknown[0], "PGLEASE_CONFG");
        config_done(&c);
}

static void test_values_with_newlines_are_refused(void **state) {
        char *env[] = { "PGLEASE_LOCATION=rack1\nhost all all 0.0.0.0/0 trust", NULL };
        char *settings[] = { "tags=a\rb", NULL };
        char *secret[] = { "superuser_password=pw\nx", NULL };
        _cleanup_free_ char *err = NULL, *err2 = NULL, *err3 = NULL;
        struct config c;

        assert_int_equal(config_load(NULL, env, NULL, &c, NULL, &err), -EINVAL);
        assert_non_null(strstr(err, "PGLEASE_LOCATION: location: 'rack1?host"));
        assert_non_null(strstr(err, "newline"));
        assert_int_equal(config_load(NULL, NULL, settings, &c, NULL, &err2), -EINVAL);
        assert_non_null(strstr(err2, "--set tags: tags: 'a?b' contains a newline"));
        assert_int_equal(config_load(NULL, NULL, secret, &c, NULL, &err3), -EINVAL);
        assert_non_null(strstr(err3, "superuser_password: *** contains"));
        assert_null(strstr(err3, "pw"));
}

static void test_hba_networks_must_be_cidrs(void **state) {
        struct config c;

        assert_load_fails("hba_networks = 10.0.0.0/8, not-a-cidr\n", -EINVAL,
                          (const char *[]) { ":1: hba_networks: 'not-a-cidr' is not a network in CIDR notation", NULL });
        assert_load_fails("hba_networks = 10.0.0.0/33\n", -EINVAL, (const char *[]) { "'10.0.0.0/33'", NULL });
        assert_load_fails("hba_networks = 10.0.0.0\n", -EINVAL, (const char *[]) { "'10.0.0.0'", NULL });
        assert_load_fails("superuser = \"bad role\"\n", -EINVAL, (const char *[]) { ":1: superuser:", "role name", NULL });
        assert_load_fails("listen_addresses = \"a'b\"\n", -EINVAL, (const char *[]) { "listen_addresses", "quote", NULL });
        assert_int_equal(load("hba_networks = 10.0.0.0/8,fd00::/8, 192.168.1.7/32\n", NULL, NULL, &c, NULL), 0);
        config_done(&c);
}

static void test_http_listen_must_be_a_numeric_address_and_port(void **state) {
        struct config c;

        assert_load_fails("http_listen = localhost:8008\n", -EINVAL,
                          (const char *[]) { ":1: http_listen: 'localhost:8008' is not ADDRESS:PORT", NULL });
        assert_load_fails("http_listen = 127.0.0.1\n", -EINVAL, (const char *[]) { "http_listen: '127.0.0.1'", NULL });
        assert_load_fails("http_listen = 127.0.0.1:0\n", -EINVAL, (const char *[]) { "http_listen:", "1-65535", NULL });
        assert_load_fails("http_listen = ::1:8008\n", -EINVAL, (const char *[]) { "http_listen:", NULL });
        assert_load_fails("http_max_connections = 0\n", -ERANGE, (const char *[]) { "http_max_connections", NULL });
        assert_int_equal(load("http_listen = [::]:8008\nhttp_max_body = 0\n", NULL, NULL, &c, NULL), 0);
        assert_string_equal(c.http_listen, "[::]:8008");
        config_done(&c);
        assert_int_equal(load("", NULL, NULL, &c, NULL), 0);
        assert_string_equal(c.http_listen, "");
        assert_int_equal(c.http_maximum_lag, 16 * 1024 * 1024);
        config_done(&c);
}

static void test_failsafe_mode_needs_the_http_api_and_one_token(void **state) {
        struct config c;

        assert_load_fails("failsafe_mode = yes\nfailsafe_token = t\n", -EINVAL,
                          (const char *[]) { ":1: failsafe_mode: needs failsafe_listen", NULL });
        assert_load_fails("failsafe_listen = localhost:8009\n", -EINVAL,
                          (const char *[]) { ":1: failsafe_listen: 'localhost:8009' is not ADDRESS:PORT", NULL });
        assert_load_fails("failsafe_mode = yes\nfailsafe_listen = 127.0.0.1:8009\n", -EINVAL,
                          (const char *[]) { "failsafe_mode: needs failsafe_token_file or failsafe_token", NULL });
        assert_load_fails("failsafe_token = t\nfailsafe_token_file = /run/t\n", -EINVAL,
                          (const char *[]) { "failsafe_token (", ":1) and failsafe_token_file (", ":2) are both set", NULL });
        assert_int_equal(load("failsafe_mode = yes\nfailsafe_listen = 127.0.0.1:8009\nfailsafe_token_file = /run/t\n",
                              NULL, NULL, &c, NULL), 0);
        assert_true(c.failsafe_mode);
        config_done(&c);
        assert_int_equal(load("", NULL, NULL, &c, NULL), 0);
        assert_false(c.failsafe_mode);
        config_done(&c);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_defaults_are_valid),
                cmocka_unit_test(test_file_values_and_quotes),
                cmocka_unit_test(test_unknown_key_names_file_line_and_key),
                cmocka_unit_test(test_out_of_range_number),
                cmocka_unit_test(test_bad_durations),
                cmocka_unit_test(test_bad_enum_bool_path_and_syntax),
                cmocka_unit_test(test_lease_timing_rule),
                cmocka_unit_test(test_statement_timeout_must_be_under_the_renew_deadline),
                cmocka_unit_test(test_names_must_be_dns_labels),
                cmocka_unit_test(test_missing_file_is_named),
                cmocka_unit_test(test_env_overrides_file_and_flags_override_env),
                cmocka_unit_test(test_bad_env_and_flag_name_their_source),
                cmocka_unit_test(test_dump_hides_secrets),
                cmocka_unit_test(test_every_key_has_a_valid_default_and_description),
                cmocka_unit_test(test_reload_keeps_non_reloadable_keys),
                cmocka_unit_test(test_example_file_sets_every_key),
                cmocka_unit_test(test_nul_byte_in_file_is_an_error),
                cmocka_unit_test(test_overflowing_numbers_are_out_of_range),
                cmocka_unit_test(test_cross_key_errors_name_both_origins),
                cmocka_unit_test(test_long_values_are_echoed_truncated),
                cmocka_unit_test(test_duplicate_key_is_an_error),
                cmocka_unit_test(test_directory_as_file_says_so),
                cmocka_unit_test(test_pglease_config_is_not_an_unknown_variable),
                cmocka_unit_test(test_values_with_newlines_are_refused),
                cmocka_unit_test(test_hba_networks_must_be_cidrs),
                cmocka_unit_test(test_http_listen_must_be_a_numeric_address_and_port),
                cmocka_unit_test(test_failsafe_mode_needs_the_http_api_and_one_token),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
