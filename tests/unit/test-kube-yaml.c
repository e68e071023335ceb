/* test-kube-yaml.c: the kubeconfig reader (libyaml into cJSON) and the
 * $KUBECONFIG merge, on kubeconfigs as kubectl, kind, k3s and a person write
 * them (tests/unit/kubeconfigs/). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "kube-config.h"
#include "kube-yaml.h"
#include "pglease-build.h"
#include "util.h"

#define FIXTURES PGLEASE_SOURCE_DIR "/tests/unit/kubeconfigs/"

struct tmp {
        char dir[64];
};

static int setup(void **state) {
        struct tmp *t = calloc(1, sizeof(*t));

        strcpy(t->dir, "/tmp/test-kube-yaml-XXXXXX");
        assert_non_null(mkdtemp(t->dir));
        *state = t;
        return 0;
}

static int teardown(void **state) {
        struct tmp *t = *state;

        assert_int_equal(rm_rf(t->dir), 0);
        free(t);
        return 0;
}

static char *write_tmp(const struct tmp *t, const char *name, const char *content) {
        char *p = strdup_printf("%s/%s", t->dir, name);

        assert_int_equal(write_file_atomic(p, content, 0600), 0);
        return p;
}

static char *parse_to_json(const char *text, char **ret_err) {
        _cleanup_(cjson_deletep) cJSON *j = NULL;
        int r = kube_yaml_parse(text, strlen(text), "t.yaml", &j, ret_err);

        return r < 0 ? NULL : cJSON_PrintUnformatted(j);
}

static void assert_yaml(const char *text, const char *json) {
        _cleanup_free_ char *err = NULL, *out = parse_to_json(text, &err);

        if (!out)
                fail_msg("%s: %s", text, err);
        assert_string_equal(out, json);
}

static void assert_yaml_ok(const char *text) {
        _cleanup_free_ char *err = NULL, *out = parse_to_json(text, &err);

        if (!out)
                fail_msg("refused: %s", err);
}

static void assert_yaml_error(const char *text, const char *msg) {
        _cleanup_free_ char *err = NULL, *out = parse_to_json(text, &err);

        if (out)
                fail_msg("accepted %s as %s", text, out);
        if (!err || !strstr(err, msg) || !strstr(err, "t.yaml:"))
                fail_msg("%s: got \"%s\", want \"%s\"", text, strempty(err), msg);
}

static void test_scalars_quotes_nulls_and_block_scalars(void **state) {
        assert_yaml("---\na: 'it''s'\nb: \"x\\\"y\"\nc: ~\nd:\n  - 1\n  -\n    e: f # c\n  - g: h\n    i: j\nk: v#not-comment\n",
                    "{\"a\":\"it's\",\"b\":\"x\\\"y\",\"c\":null,\"d\":[\"1\",{\"e\":\"f\"},{\"g\":\"h\",\"i\":\"j\"}],"
                    "\"k\":\"v#not-comment\"}");
        assert_yaml("a: |\n  one\n  two\nb: >-\n  folded\n  line\nc: \"\\u00e9\\t\"\nd: 'null'\ne:\n",
                    "{\"a\":\"one\\ntwo\\n\",\"b\":\"folded line\",\"c\":\"\xc3\xa9\\t\",\"d\":\"null\",\"e\":null}");
        assert_yaml("key:\tvalue\nother: 1\n", "{\"key\":\"value\",\"other\":\"1\"}");
        assert_yaml("", "null");
        assert_yaml("# only a comment\n", "null");
}

static void test_flow_style_anchors_and_merge_keys(void **state) {
        assert_yaml("{a: [1, {b: c}], \"d\": 'e'}", "{\"a\":[\"1\",{\"b\":\"c\"}],\"d\":\"e\"}");
        assert_yaml("{\"a\":\"b\",\"c\":[\"d\",{\"e\":null}]}", "{\"a\":\"b\",\"c\":[\"d\",{\"e\":null}]}");
        assert_yaml("base: &b {x: 1, y: 2}\ncopy: *b\nname: &n lab\nref: *n\n",
                    "{\"base\":{\"x\":\"1\",\"y\":\"2\"},\"copy\":{\"x\":\"1\",\"y\":\"2\"},\"name\":\"lab\",\"ref\":\"lab\"}");
        /* An explicit key wins over "<<" wherever it stands; of several
         * merged mappings, the first wins. */
        assert_yaml("a: &a {x: 1, y: 2}\nb: &b {y: 3, z: 4}\nc:\n  x: 0\n  <<: [*a, *b]\n",
                    "{\"a\":{\"x\":\"1\",\"y\":\"2\"},\"b\":{\"y\":\"3\",\"z\":\"4\"},\"c\":{\"x\":\"0\",\"y\":\"2\",\"z\":\"4\"}}");
        assert_yaml("c:\n  <<: {x: 1}\n  '<<': quoted\n", "{\"c\":{\"<<\":\"quoted\",\"x\":\"1\"}}");
}

static void test_only_the_first_document_is_read(void **state) {
        assert_yaml("a: 1\n---\na: 2\nb: 3\n", "{\"a\":\"1\"}");
        /* Not even parsed: kubectl ignores what follows too. */
        assert_yaml("a: 1\n...\n---\n[unclosed\n", "{\"a\":\"1\"}");
}

static void test_errors_name_the_file_the_line_and_the_key(void **state) {
        assert_yaml_error("users:\n- name: a\n  name: b\n", "t.yaml:3: duplicate key \"name\"");
        assert_yaml_error("{a: 1, a: 2}", "duplicate key \"a\"");
        assert_yaml_error("a: \"unterminated\n", "t.yaml:");
        assert_yaml_error("a: *nope\n", "unknown alias \"*nope\"");
        assert_yaml_error("? [a]\n: b\n", "a mapping key is not a scalar");
        assert_yaml_error("a:\n  <<: scalar\n", "the value of \"<<\" is not a mapping");
        assert_yaml_error("a: b\n  c: d\n", "t.yaml:2:");
}

static void test_deep_nesting_is_an_error_not_a_crash(void **state) {
        /* The 200 kB file of 100,000 nested "- " that made the hand-written
         * reader recurse into SIGSEGV. */
        size_t n = 100000;
        _cleanup_free_ char *text = malloc(2 * n + 3);
        char *p = text;

        for (size_t i = 0; i < n; i++) {
                *p++ = '-';
                *p++ = ' ';
        }
        strcpy(p, "x\n");
        assert_yaml_error(text, "nested deeper than 64 levels");
        memset(text, '[', n);
        text[n] = '\0';
        assert_yaml_error(text, "nested deeper than 64 levels");
}

static char *nested(size_t levels, const char *inner) {
        size_t n = strlen(inner);
        char *s = malloc(2 * levels + n + 1), *p = s;

        for (size_t i = 0; i < levels; i++)
                *p++ = '[';
        memcpy(p, inner, n);
        p += n;
        for (size_t i = 0; i < levels; i++)
                *p++ = ']';
        *p = '\0';
        return s;
}

static void test_aliases_and_merges_cannot_nest_past_the_bound(void **state) {
        /* Each anchor is within the bound; placed deeper by an alias or a
         * chain of them, the tree would not be. */
        _cleanup_free_ char *deep = nested(60, "x"), *ok = NULL, *too_deep = NULL, *chain = NULL;
        _cleanup_free_ char *merged = NULL;

        ok = strdup_printf("a: &a %s\nb: *a\n", deep);
        assert_yaml_ok(ok);
        too_deep = strdup_printf("a: &a %s\nb: [[[[[*a]]]]]\n", deep);
        assert_yaml_error(too_deep, "nested deeper than 64 levels");
        chain = strdup_printf("a: &a %s\nb: &b [*a]\nc: &c [*b]\nd: &d [*c]\ne: [*d]\n", deep);
        assert_yaml_error(chain, "nested deeper than 64 levels");
        merged = strdup_printf("a: &a {k: %s}\nb: [[[[[{<<: *a}]]]]]\n", deep);
        assert_yaml_error(merged, "nested deeper than 64 levels");
}

static void test_alias_expansion_is_bounded(void **state) {
        /* "Billion laughs": 10 aliases per level, 9 levels; and the same
         * through merge keys. */
        static const char bomb[] =
                "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
                "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n";

        static const char merge_bomb[] =
                "a: &a {a0: [x, x, x, x, x, x, x, x, x, x], a1: [x, x, x, x, x, x, x, x, x, x]}\n"
                "b: &b {<<: *a, b0: *a, b1: *a, b2: *a, b3: *a, b4: *a, b5: *a, b6: *a, b7: *a}\n"
                "c: &c {<<: *b, c0: *b, c1: *b, c2: *b, c3: *b, c4: *b, c5: *b, c6: *b, c7: *b}\n"
                "d: &d {<<: *c, d0: *c, d1: *c, d2: *c, d3: *c, d4: *c, d5: *c, d6: *c, d7: *c}\n"
                "e: &e {<<: *d, e0: *d, e1: *d, e2: *d, e3: *d, e4: *d, e5: *d, e6: *d, e7: *d}\n"
                "f: &f {<<: *e, f0: *e, f1: *e, f2: *e, f3: *e, f4: *e, f5: *e, f6: *e, f7: *e}\n";

        assert_yaml_error(bomb, "more than 100000 nodes");
        assert_yaml_error(merge_bomb, "more than 100000 nodes");
}

static void test_nul_byte_is_an_error(void **state) {
        _cleanup_(cjson_deletep) cJSON *j = NULL;
        _cleanup_free_ char *err = NULL;

        assert_int_equal(kube_yaml_parse("a: b\0c: d\n", 10, "t.yaml", &j, &err), -EINVAL);
        assert_non_null(strstr(err, "t.yaml:1:"));
}

static void load_fixture(const char *name, struct kube_config *c) {
        _cleanup_free_ char *err = NULL;

        if (kube_config_load_kubeconfig(name, c, &err) < 0)
                fail_msg("%s: %s", name, err);
}

static void test_kubeconfigs_of_kubectl_kind_and_k3s(void **state) {
        struct kube_config c = {};

        load_fixture(FIXTURES "kubectl.yaml", &c);
        assert_string_equal(c.server, "https://192.0.2.10:6443");
        assert_string_equal(c.namespace, "databases");
        assert_string_equal(c.ca_file, FIXTURES "ca.crt");
        assert_string_equal(c.token_file, FIXTURES "sa-token");
        assert_string_equal(c.token, "fixture-token-not-a-secret");
        kube_config_done(&c);
        load_fixture(FIXTURES "kind.yaml", &c);
        assert_string_equal(c.server, "https://127.0.0.1:40371");
        assert_null(c.namespace);
        assert_non_null(strstr(c.ca_data.data, "fixture CA"));
        assert_non_null(strstr(c.cert_data.data, "fixture client certificate"));
        assert_non_null(strstr(c.key_data.data, "fixture key"));
        kube_config_done(&c);
        load_fixture(FIXTURES "k3s.yaml", &c);
        assert_string_equal(c.server, "https://127.0.0.1:6443");
        assert_non_null(strstr(c.key_data.data, "BEGIN EC PRIVATE KEY"));
        kube_config_done(&c);
}

static void test_hand_edited_kubeconfig_with_flow_anchors_and_comments(void **state) {
        struct kube_config c = {};

        load_fixture(FIXTURES "hand-edited.yaml", &c);
        assert_string_equal(c.server, "https://db.example.test:8443");
        assert_string_equal(c.namespace, "databases");
        assert_string_equal(c.ca_file, "/etc/pglease/lab ca.crt");
        assert_string_equal(c.token, "tok\xc3\xa9n-1");
        kube_config_done(&c);
}

static void test_kubeconfig_list_merges_as_kubectl(void **state) {
        struct tmp *t = *state;
        _cleanup_free_ char *a = write_tmp(t, "a.yaml",
                "clusters:\n- name: k\n  cluster: {server: 'https://first:1', certificate-authority: ca-a}\n"
                "users:\n- name: u\n  user: {token: from-a}\n");
        _cleanup_free_ char *b = write_tmp(t, "b.yaml",
                "current-context: ctx\n"
                "contexts:\n- name: ctx\n  context: {cluster: k, user: u, namespace: ns-b}\n"
                "clusters:\n- name: k\n  cluster: {server: 'https://second:2'}\n");
        _cleanup_free_ char *c_path = write_tmp(t, "c.yaml",
                "current-context: other\nusers:\n- name: u\n  user: {token: from-c}\n");
        _cleanup_free_ char *empty = write_tmp(t, "empty.yaml", "");
        _cleanup_free_ char *list = strdup_printf("%s/missing.yaml:%s::%s:%s:%s:%s", t->dir, empty, a, b, c_path, a);
        _cleanup_free_ char *err = NULL, *ca = strdup_printf("%s/ca-a", t->dir);
        struct kube_config c = {};

        /* current-context from b (the first that sets it), the context from
         * b, cluster k and user u from a (first file wins per name), the CA
         * relative to a; missing and empty files and empty entries skipped. */
        assert_int_equal(kube_config_load_kubeconfig_list(list, &c, &err), 0);
        assert_string_equal(c.server, "https://first:1");
        assert_string_equal(c.ca_file, ca);
        assert_string_equal(c.token, "from-a");
        assert_string_equal(c.namespace, "ns-b");
        assert_string_equal(c.source, b);
        kube_config_done(&c);
        free(list);
        list = strdup_printf("%s/missing.yaml", t->dir);
        assert_int_equal(kube_config_load_kubeconfig_list(list, &c, &err), -ENOENT);
        assert_non_null(strstr(err, "none of its files exists"));
        /* A broken file in the list is an error, not skipped. */
        free(list);
        free(err);
        err = NULL;
        list = strdup_printf("%s:%s", b, t->dir);
        assert_int_equal(kube_config_load_kubeconfig_list(list, &c, &err), -EISDIR);
        assert_non_null(strstr(err, "is a directory"));
}

static void test_kubeconfig_errors(void **state) {
        static const struct {
                const char *text;
                const char *msg;
        } cases[] = {
                { "current-context: nope\ncontexts: []\n", "context \"nope\" not found" },
                { "current-context: c\ncontexts:\n- name: c\n  context:\n    cluster: k\nclusters:\n- name: k\n  cluster:\n"
                  "    server: https://x\n    certificate-authority-data: '!!notbase64'\n", "not valid base64" },
                { "- a\n- b\n", "top level is not a mapping" },
                { "# nothing\n", "no current-context" },
                { "current-context: c\ncurrent-context: d\n", ":2: duplicate key \"current-context\"" },
        };
        struct tmp *t = *state;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *path = write_tmp(t, "bad-config", cases[i].text), *err = NULL;
                struct kube_config c = {};

                assert_true(kube_config_load_kubeconfig(path, &c, &err) < 0);
                if (!strstr(err, cases[i].msg) || !strstr(err, "bad-config"))
                        fail_msg("case %zu: %s", i, err);
                assert_null(c.server);
        }
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_scalars_quotes_nulls_and_block_scalars),
                cmocka_unit_test(test_flow_style_anchors_and_merge_keys),
                cmocka_unit_test(test_only_the_first_document_is_read),
                cmocka_unit_test(test_errors_name_the_file_the_line_and_the_key),
                cmocka_unit_test(test_deep_nesting_is_an_error_not_a_crash),
                cmocka_unit_test(test_aliases_and_merges_cannot_nest_past_the_bound),
                cmocka_unit_test(test_alias_expansion_is_bounded),
                cmocka_unit_test(test_nul_byte_is_an_error),
                cmocka_unit_test(test_kubeconfigs_of_kubectl_kind_and_k3s),
                cmocka_unit_test(test_hand_edited_kubeconfig_with_flow_anchors_and_comments),
                cmocka_unit_test_setup_teardown(test_kubeconfig_list_merges_as_kubectl, setup, teardown),
                cmocka_unit_test_setup_teardown(test_kubeconfig_errors, setup, teardown),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
