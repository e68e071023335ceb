/* test-node.c: what the node (and the modules it builds) keep across a
 * configuration reload: nothing may point into a configuration that the
 * reload freed (docs/design.md, "Who owns what"). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "clock.h"
#include "config.h"
#include "node.h"
#include "util.h"

struct world {
        char *dir;
        char *data_dir, *run_dir, *kubeconfig;
        struct clock_scripted clock;
        struct clock_ops ops;
};

static int setup(void **state) {
        struct world *w = calloc(1, sizeof(*w));

        assert_non_null(w);
        w->dir = strdup("/tmp/test-node-XXXXXX");
        assert_non_null(mkdtemp(w->dir));
        w->data_dir = strdup_printf("%s/data", w->dir);
        w->run_dir = strdup_printf("%s/run", w->dir);
        w->kubeconfig = strdup_printf("%s/kubeconfig", w->dir);
        assert_int_equal(mkdir(w->data_dir, 0700), 0);
        assert_int_equal(write_file_atomic(w->kubeconfig,
                "apiVersion: v1\n"
                "kind: Config\n"
                "clusters:\n"
                "- cluster:\n"
                "    server: http://127.0.0.1:1\n"
                "  name: emu\n"
                "contexts:\n"
                "- context:\n"
                "    cluster: emu\n"
                "    user: robot\n"
                "    namespace: db\n"
                "  name: emu\n"
                "current-context: emu\n"
                "users:\n"
                "- name: robot\n"
                "  user:\n"
                "    token: secret-token\n", 0600), 0);
        w->clock = (struct clock_scripted) { .monotonic = 1000 * USEC_PER_SEC, .realtime = 1764102771ULL * USEC_PER_SEC };
        clock_scripted_init(&w->clock, &w->ops);
        *state = w;
        return 0;
}

static int teardown(void **state) {
        struct world *w = *state;

        assert_int_equal(rm_rf(w->dir), 0);
        free(w->dir);
        free(w->data_dir);
        free(w->run_dir);
        free(w->kubeconfig);
        free(w);
        return 0;
}

/* A configuration as the agent loads one; extra is one more "key=value". */
static void load_config(struct world *w, const char *extra, struct config *ret) {
        const char *settings[][2] = {
                { "cluster_name", "pg" },
                { "node_name", "pg-1" },
                { "data_dir", w->data_dir },
                { "run_dir", w->run_dir },
                { "socket_dir", w->dir },
                { "kube_config", w->kubeconfig },
                { "pg_bindir", "/usr/lib/postgresql/15/bin" },
                { "connect_address", "127.0.0.1" },
        };
        _cleanup_free_ char *key = NULL;

        assert_int_equal(config_init(ret), 0);
        for (size_t i = 0; i < ELEMENTSOF(settings); i++)
                assert_int_equal(config_set(ret, settings[i][0], settings[i][1], "test", NULL), 0);
        if (extra) {
                const char *eq = strchr(extra, '=');

                key = strndup(extra, (size_t) (eq - extra));
                assert_int_equal(config_set(ret, key, eq + 1, "test", NULL), 0);
        }
        assert_int_equal(config_validate(ret, NULL), 0);
}

/* Overwrites every string of c before it is freed, so that a pointer kept
 * into it reads garbage even without AddressSanitizer. */
static void scribble(struct config *c) {
        size_t n;
        const struct config_key *keys = config_keys(&n);

        for (size_t i = 0; i < n; i++) {
                char *s;

                if (keys[i].type != CONFIG_STRING && keys[i].type != CONFIG_PATH && keys[i].type != CONFIG_SECRET)
                        continue;
                s = *(char **) ((uint8_t *) c + keys[i].offset);
                if (s)
                        memset(s, 'X', strlen(s));
        }
}

/* What agent/daemon.c reload() does: merge, then replace the running
 * configuration in place (the node reads it through its cfg pointer). */
static void reload(struct config *running, const struct config *fresh) {
        _cleanup_strv_free_ char **changed = NULL, **refused = NULL;
        struct config next = *fresh;

        assert_int_equal(config_reload_merge(running, &next, &changed, &refused), 0);
        scribble(running);
        config_done(running);
        *running = next;
}

static void assert_node_intact(struct world *w, struct node *n, const char *connect_host) {
        _cleanup_free_ char *conninfo = NULL, *expected_socket = NULL;
        struct node_bootstrap b;

        assert_string_equal(n->pgctl.config.datadir, w->data_dir);
        assert_string_equal(n->pgctl.config.run_dir, w->run_dir);
        assert_string_equal(n->pgctl.config.bindir, "/usr/lib/postgresql/15/bin");
        assert_string_equal(n->election.identity, "pg-1");
        assert_int_equal(pgctl_is_running(&n->pgctl, NULL), 0);
        assert_string_equal(node_connect_host(n), connect_host);
        assert_int_equal(node_local_conninfo(n, &conninfo), 0);
        expected_socket = strdup_printf("host=%s ", w->dir);
        assert_non_null(strstr(conninfo, expected_socket));
        assert_false(node_data_present(n));
        assert_int_equal(node_bootstrap_options(n, USEC_PER_SEC, &b), 0);
        assert_string_equal(b.o.datadir, w->data_dir);
        node_bootstrap_done(&b);
}

static void test_nothing_points_into_a_reloaded_configuration(void **state) {
        struct world *w = *state;
        struct config running, fresh;
        _cleanup_free_ char *err = NULL;
        struct node n;

        load_config(w, NULL, &running);
        assert_int_equal(node_init(&n, &running, &w->ops, &err), 0);
        assert_node_intact(w, &n, "127.0.0.1");

        /* The same file again, then a changed reloadable key, then a
         * changed key that cannot change at run time (kept). */
        load_config(w, NULL, &fresh);
        reload(&running, &fresh);
        assert_node_intact(w, &n, "127.0.0.1");

        load_config(w, "connect_address=pg-1.pg", &fresh);
        reload(&running, &fresh);
        assert_node_intact(w, &n, "pg-1.pg");

        load_config(w, "node_name=renamed", &fresh);
        reload(&running, &fresh);
        assert_string_equal(running.node_name, "pg-1");
        assert_node_intact(w, &n, "127.0.0.1");

        node_done(&n);
        config_done(&running);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_nothing_points_into_a_reloaded_configuration, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
