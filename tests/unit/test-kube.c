/* test-kube.c: the Kubernetes client and the Kubernetes DCS backend against
 * a scripted transport on a scripted clock: status codes, bodies, retries,
 * deadlines, token re-reads, kubeconfig and in-cluster configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <cmocka.h>

#include "dcs-kube.h"
#include "fake-kube.h"
#include "kube.h"
#include "util.h"

static int setup(void **state) {
        struct fake_kube *f = fake_kube_new();
        struct kube_options o;

        fake_kube_options(f, &o);
        assert_int_equal(kube_new(&o, &f->clock_ops, &f->kube, NULL), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        fake_kube_free(*state);
        return 0;
}

#define LEASE_BODY "{\"kind\":\"Lease\",\"metadata\":{\"name\":\"main-leader\",\"resourceVersion\":\"5\"},\"spec\":{\"holderIdentity\":\"pg-0\"}}"

static void test_lease_get_sends_token_and_returns_object(void **state) {
        struct fake_kube *f = *state;
        _cleanup_(cjson_deletep) cJSON *lease = NULL;

        SCRIPT(f, { 200, LEASE_BODY });
        assert_int_equal(kube_lease_get(f->kube, "db", "main-leader", in(f, USEC_PER_SEC), &lease, NULL), 0);
        assert_string_equal(cJSON_GetObjectItem(lease, "kind")->valuestring, "Lease");
        assert_string_equal(f->method[0], "GET");
        assert_string_equal(f->path[0], "/apis/coordination.k8s.io/v1/namespaces/db/leases/main-leader");
        assert_string_equal(f->token[0], "tok-1");
        assert_int_equal(kube_request_count(f->kube), 1);
        assert_string_equal(kube_namespace(f->kube), "db");
}

static void test_status_codes_map_to_errno_without_retry(void **state) {
        static const struct {
                struct canned c;
                int want;
                const char *msg;
        } cases[] = {
                { { 404, STATUS(404, "NotFound", "leases.coordination.k8s.io \\\"x\\\" not found") }, -ENOENT,
                  "404 NotFound: leases.coordination.k8s.io \"x\" not found" },
                { { 409, STATUS(409, "Conflict", "Operation cannot be fulfilled on leases \\\"x\\\"") }, -ESTALE,
                  "409 Conflict: Operation cannot be fulfilled on leases \"x\"" },
                { { 409, STATUS(409, "AlreadyExists", "leases \\\"x\\\" already exists") }, -EEXIST,
                  "409 AlreadyExists: leases \"x\" already exists" },
                { { 422, STATUS(422, "Invalid", "bad spec") }, -EINVAL, "422 Invalid: bad spec" },
                { { 400, "garbage" }, -EINVAL, "400 Bad Request: (no message)" },
                { { 418, "" }, -EIO, "418 HTTP error: (no message)" },
        };
        static struct canned script[ELEMENTSOF(cases)];
        struct fake_kube *f = *state;

        for (size_t i = 0; i < ELEMENTSOF(cases); i++)
                script[i] = cases[i].c;
        f->script = script;
        f->n_script = ELEMENTSOF(script);
        for (size_t i = 0; i < ELEMENTSOF(cases); i++) {
                _cleanup_free_ char *err = NULL;
                cJSON *ret = NULL;
                unsigned before = f->calls;

                assert_int_equal(kube_lease_get(f->kube, "db", "x", in(f, 5 * USEC_PER_SEC), &ret, &err), cases[i].want);
                assert_null(ret);
                assert_string_equal(err, cases[i].msg);
                assert_int_equal(f->calls, before + 1);
        }
        assert_int_equal(f->sleeps, 0);
}

static void test_malformed_or_truncated_body_is_ebadmsg(void **state) {
        static const struct canned bodies[] = {
                { 200, "{not json" },
                { 200, "{\"kind\":\"Lease\",\"spec\":{\"holderIdentity\":\"pg" },
                { 200, "" },
                { 200, "[1,2]" },
                { 200, "{\"a\":1} trailing" },
                { 200, "\"just a string\"" },
        };
        struct fake_kube *f = *state;

        f->script = bodies;
        f->n_script = ELEMENTSOF(bodies);
        for (size_t i = 0; i < ELEMENTSOF(bodies); i++) {
                _cleanup_free_ char *err = NULL;
                cJSON *ret = NULL;

                assert_int_equal(kube_pod_get(f->kube, "db", "pg-0", in(f, USEC_PER_SEC), &ret, &err), -EBADMSG);
                assert_null(ret);
                assert_non_null(strstr(err, "not a JSON object"));
        }
}

static void test_401_rereads_token_file_and_retries_once(void **state) {
        struct fake_kube *f = *state;
        _cleanup_(cjson_deletep) cJSON *ret = NULL;

        SCRIPT(f, { 401, STATUS(401, "Unauthorized", "Unauthorized") }, { 200, LEASE_BODY });
        fake_kube_write_file(f->dir, "token", "tok-2\n");
        assert_int_equal(kube_lease_get(f->kube, "db", "x", in(f, USEC_PER_SEC), &ret, NULL), 0);
        assert_int_equal(f->calls, 2);
        assert_string_equal(f->token[0], "tok-1");
        assert_string_equal(f->token[1], "tok-2");
        assert_int_equal(f->sleeps, 0);
}

static void test_401_twice_is_eacces(void **state) {
        struct fake_kube *f = *state;
        _cleanup_free_ char *err = NULL;
        cJSON *ret = NULL;

        SCRIPT(f, { 401, STATUS(401, "Unauthorized", "Unauthorized") }, { 401, STATUS(401, "Unauthorized", "Unauthorized") });
        assert_int_equal(kube_lease_get(f->kube, "db", "x", in(f, USEC_PER_SEC), &ret, &err), -EACCES);
        assert_int_equal(f->calls, 2);
        assert_string_equal(err, "401 Unauthorized: Unauthorized");
}

static void test_token_file_is_reread_every_60s(void **state) {
        struct fake_kube *f = *state;

        SCRIPT(f, { 200, "{}" }, { 200, "{}" }, { 200, "{}" });
        fake_kube_write_file(f->dir, "token", "tok-2\n");
        assert_int_equal(kube_pod_get(f->kube, "db", "p", in(f, USEC_PER_SEC), NULL, NULL), 0);
        clock_scripted_advance(&f->clock, 59 * USEC_PER_SEC);
        assert_int_equal(kube_pod_get(f->kube, "db", "p", in(f, USEC_PER_SEC), NULL, NULL), 0);
        clock_scripted_advance(&f->clock, 2 * USEC_PER_SEC);
        assert_int_equal(kube_pod_get(f->kube, "db", "p", in(f, USEC_PER_SEC), NULL, NULL), 0);
        assert_string_equal(f->token[0], "tok-1");
        assert_string_equal(f->token[1], "tok-1");
        assert_string_equal(f->token[2], "tok-2");
}

static void test_5xx_retried_with_growing_jittered_backoff(void **state) {
        struct fake_kube *f = *state;
        _cleanup_(cjson_deletep) cJSON *ret = NULL;

        SCRIPT(f, { 503, "" }, { 500, STATUS(500, "InternalError", "etcd") }, { 502, "" }, { 504, "" },
               { 200, LEASE_BODY });
        assert_int_equal(kube_lease_get(f->kube, "db", "x", in(f, 10 * USEC_PER_SEC), &ret, NULL), 0);
        assert_int_equal(f->calls, 5);
        assert_int_equal(f->sleeps, 4);
        assert_true(f->slept[0] >= 100 * USEC_PER_MSEC && f->slept[0] <= 150 * USEC_PER_MSEC);
        for (unsigned i = 1; i < f->sleeps; i++)
                assert_true(f->slept[i] >= 2 * (f->slept[i - 1] * 2 / 3));
        assert_int_equal(kube_request_count(f->kube), 5);
}

/* docs/design.md retries 403 inside the deadline (an authorizer that is
 * briefly failing); a lasting refusal ends as -EPERM with the message. */
static void test_403_is_retried_inside_the_deadline(void **state) {
        struct fake_kube *f = *state;
        _cleanup_(cjson_deletep) cJSON *ret = NULL;

        SCRIPT(f, { 403, STATUS(403, "Forbidden", "webhook down") }, { 200, LEASE_BODY });
        assert_int_equal(kube_lease_get(f->kube, "db", "x", in(f, 10 * USEC_PER_SEC), &ret, NULL), 0);
        assert_int_equal(f->calls, 2);
        assert_int_equal(f->sleeps, 1);
}

static void test_lasting_403_ends_as_eperm(void **state) {
        struct fake_kube *f = *state;
        _cleanup_free_ char *err = NULL;
        cJSON *ret = NULL;

        SCRIPT(f, { 403, STATUS(403, "Forbidden", "no") }, { 403, STATUS(403, "Forbidden", "no") },
               { 403, STATUS(403, "Forbidden", "no") }, { 403, STATUS(403, "Forbidden", "no") },
               { 403, STATUS(403, "Forbidden", "no") }, { 403, STATUS(403, "Forbidden", "no") });
        assert_int_equal(kube_lease_get(f->kube, "db", "x", in(f, 1 * USEC_PER_SEC), &ret, &err), -EPERM);
        assert_null(ret);
        assert_non_null(strstr(err, "403 Forbidden: no"));
        assert_true(f->calls >= 2);
}

static void test_429_retry_after_is_honoured(void **state) {
        struct fake_kube *f = *state;

        SCRIPT(f, { 429, STATUS(429, "TooManyRequests", "slow down"), 3 * USEC_PER_SEC }, { 200, "{}" });
        assert_int_equal(kube_pod_get(f->kube, "db", "p", in(f, 10 * USEC_PER_SEC), NULL, NULL), 0);
        assert_int_equal(f->sleeps, 1);
        assert_int_equal(f->slept[0], 3 * USEC_PER_SEC);
        assert_int_equal(f->at[1] - f->at[0], 3 * USEC_PER_SEC);
}

static void test_retry_after_past_deadline_gives_up_at_once(void **state) {
        struct fake_kube *f = *state;
        _cleanup_free_ char *err = NULL;

        SCRIPT(f, { 429, STATUS(429, "TooManyRequests", "slow down"), 5 * USEC_PER_SEC });
        assert_int_equal(kube_pod_get(f->kube, "db", "p", in(f, 2 * USEC_PER_SEC), NULL, &err), -EIO);
        assert_int_equal(f->calls, 1);
        assert_int_equal(f->sleeps, 0);
        assert_non_null(strstr(err, "429 TooManyRequests: slow down"));
}

static void test_no_attempt_starts_or_lasts_past_the_deadline(void **state) {
        static struct canned always_503[MAX_CALLS];
        struct fake_kube *f = *state;
        _cleanup_free_ char *err = NULL;
        usec_t deadline = in(f, 1500 * USEC_PER_MSEC);

        for (size_t i = 0; i < ELEMENTSOF(always_503); i++)
                always_503[i] = (struct canned) { 503, "", .takes = 30 * USEC_PER_MSEC };
        f->script = always_503;
        f->n_script = ELEMENTSOF(always_503);
        assert_int_equal(kube_pod_get(f->kube, "db", "p", deadline, NULL, &err), -EIO);
        assert_true(f->calls >= 3);
        for (unsigned i = 0; i < f->calls; i++) {
                assert_true(f->at[i] < deadline);
                assert_true(f->at[i] + f->timeout[i] <= deadline);
        }
        assert_true(clock_now(&f->clock_ops) <= deadline);
        assert_non_null(strstr(err, "503"));
}

static void test_connection_errors_are_retried(void **state) {
        struct fake_kube *f = *state;

        SCRIPT(f, { .error = -ECONNREFUSED }, { .error = -ECONNRESET }, { 200, "{}" });
        assert_int_equal(kube_pod_get(f->kube, "db", "p", in(f, 5 * USEC_PER_SEC), NULL, NULL), 0);
        assert_int_equal(f->calls, 3);
        assert_int_equal(f->sleeps, 2);
}

static void test_hung_attempt_ends_at_the_deadline(void **state) {
        struct fake_kube *f = *state;
        usec_t deadline = in(f, 2 * USEC_PER_SEC);

        SCRIPT(f, { 200, "{}", .takes = 60 * USEC_PER_SEC });
        assert_int_equal(kube_pod_get(f->kube, "db", "p", deadline, NULL, NULL), -ETIMEDOUT);
        assert_int_equal(f->calls, 1);
        assert_int_equal(clock_now(&f->clock_ops), deadline);
}

static void test_passed_deadline_sends_nothing(void **state) {
        struct fake_kube *f = *state;
        _cleanup_free_ char *err = NULL;

        SCRIPT(f, { 200, "{}" });
        assert_int_equal(kube_pod_get(f->kube, "db", "p", clock_now(&f->clock_ops), NULL, &err), -ETIMEDOUT);
        assert_int_equal(f->calls, 0);
        assert_non_null(err);
}

static void test_lease_replace_puts_the_resource_version(void **state) {
        struct fake_kube *f = *state;
        _cleanup_(cjson_deletep) cJSON *lease = cJSON_Parse(LEASE_BODY), *bare = cJSON_Parse("{\"metadata\":{\"name\":\"x\"}}");
        _cleanup_(cjson_deletep) cJSON *ret = NULL;

        SCRIPT(f, { 200, LEASE_BODY });
        assert_int_equal(kube_lease_replace(f->kube, "db", bare, in(f, USEC_PER_SEC), &ret, NULL), -EINVAL);
        assert_int_equal(f->calls, 0);
        assert_int_equal(kube_lease_replace(f->kube, "db", lease, in(f, USEC_PER_SEC), &ret, NULL), 0);
        assert_string_equal(f->method[0], "PUT");
        assert_string_equal(f->path[0], "/apis/coordination.k8s.io/v1/namespaces/db/leases/main-leader");
        assert_non_null(strstr(f->body[0], "\"resourceVersion\":\"5\""));
        assert_string_equal(f->ctype[0], "application/json");
}

static void test_pod_list_escapes_selector_and_patch_is_merge_patch(void **state) {
        struct fake_kube *f = *state;
        _cleanup_(cjson_deletep) cJSON *patch = cJSON_Parse("{\"metadata\":{\"labels\":{\"a\":null}}}");

        SCRIPT(f, { 200, "{\"items\":[]}" }, { 200, "{}" });
        assert_int_equal(kube_pod_list(f->kube, "db", "pglease.io/cluster=main", in(f, USEC_PER_SEC), NULL, NULL), 0);
        assert_string_equal(f->path[0], "/api/v1/namespaces/db/pods?labelSelector=pglease.io%2Fcluster%3Dmain");
        assert_int_equal(kube_pod_merge_patch(f->kube, "db", "pg-0", patch, in(f, USEC_PER_SEC), NULL, NULL), 0);
        assert_string_equal(f->method[1], "PATCH");
        assert_string_equal(f->ctype[1], "application/merge-patch+json");
        assert_string_equal(f->body[1], "{\"metadata\":{\"labels\":{\"a\":null}}}");
        /* Names that would change the URL are refused before anything is sent. */
        assert_int_equal(kube_pod_get(f->kube, "db", "../x", in(f, USEC_PER_SEC), NULL, NULL), -EINVAL);
        assert_int_equal(f->calls, 2);
}

static void test_pod_delete_names_the_uid_and_statefulset_get_is_apps_v1(void **state) {
        struct fake_kube *f = *state;
        _cleanup_(cjson_deletep) cJSON *body = NULL, *sts = NULL;
        _cleanup_free_ char *err = NULL;

        SCRIPT(f, { 200, "{\"kind\":\"Pod\",\"metadata\":{\"name\":\"pg-2\"}}" },
               { 409, STATUS(409, "Conflict", "Precondition failed: UID in precondition: u-2, UID in object meta: u-3") },
               { 200, "{\"kind\":\"StatefulSet\",\"metadata\":{\"name\":\"pg\"}}" });
        assert_int_equal(kube_pod_delete(f->kube, "db", "pg-2", "u-2", in(f, USEC_PER_SEC), NULL), 0);
        assert_string_equal(f->method[0], "DELETE");
        assert_string_equal(f->path[0], "/api/v1/namespaces/db/pods/pg-2");
        assert_string_equal(f->ctype[0], "application/json");
        body = cJSON_Parse(f->body[0]);
        assert_string_equal(cJSON_GetObjectItem(body, "kind")->valuestring, "DeleteOptions");
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(body, "preconditions"), "uid")->valuestring, "u-2");
        /* A pod recreated under the name since: 409, never retried. */
        assert_int_equal(kube_pod_delete(f->kube, "db", "pg-2", "u-2", in(f, USEC_PER_SEC), &err), -ESTALE);
        assert_non_null(strstr(err, "Precondition failed"));
        /* Without a uid, or with a name that would change the URL, nothing is sent. */
        assert_int_equal(kube_pod_delete(f->kube, "db", "pg-2", NULL, in(f, USEC_PER_SEC), NULL), -EINVAL);
        assert_int_equal(kube_pod_delete(f->kube, "db", "../x", "u-2", in(f, USEC_PER_SEC), NULL), -EINVAL);
        assert_int_equal(f->calls, 2);
        assert_int_equal(kube_statefulset_get(f->kube, "db", "pg", in(f, USEC_PER_SEC), &sts, NULL), 0);
        assert_string_equal(f->method[2], "GET");
        assert_string_equal(f->path[2], "/apis/apps/v1/namespaces/db/statefulsets/pg");
        assert_string_equal(cJSON_GetObjectItem(sts, "kind")->valuestring, "StatefulSet");
        assert_int_equal(kube_statefulset_get(f->kube, "db", "pg?x", in(f, USEC_PER_SEC), NULL, NULL), -EINVAL);
        assert_int_equal(f->calls, 3);
}

static void test_event_is_a_core_event_about_the_pod_with_unique_name(void **state) {
        struct fake_kube *f = *state;
        struct kube_event e = { .pod = "pg-0", .pod_uid = "u-1", .type = "Warning", .reason = "Fenced", .message = "lost lease" };
        _cleanup_(cjson_deletep) cJSON *a = NULL, *b = NULL;
        const cJSON *obj;

        SCRIPT(f, { 201, "{}" }, { 201, "{}" });
        assert_int_equal(kube_event_create(f->kube, "db", &e, in(f, USEC_PER_SEC), NULL), 0);
        assert_int_equal(kube_event_create(f->kube, "db", &e, in(f, USEC_PER_SEC), NULL), 0);
        assert_string_equal(f->path[0], "/api/v1/namespaces/db/events");
        a = cJSON_Parse(f->body[0]);
        b = cJSON_Parse(f->body[1]);
        obj = cJSON_GetObjectItem(a, "involvedObject");
        assert_string_equal(cJSON_GetObjectItem(obj, "kind")->valuestring, "Pod");
        assert_string_equal(cJSON_GetObjectItem(obj, "name")->valuestring, "pg-0");
        assert_string_equal(cJSON_GetObjectItem(obj, "uid")->valuestring, "u-1");
        assert_string_equal(cJSON_GetObjectItem(a, "reason")->valuestring, "Fenced");
        assert_string_equal(cJSON_GetObjectItem(a, "type")->valuestring, "Warning");
        assert_int_equal(cJSON_GetObjectItem(a, "count")->valueint, 1);
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "source"), "component")->valuestring, "pglease-agent");
        assert_string_equal(cJSON_GetObjectItem(a, "firstTimestamp")->valuestring, "2025-11-25T20:32:51Z");
        assert_string_not_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(a, "metadata"), "name")->valuestring,
                                cJSON_GetObjectItem(cJSON_GetObjectItem(b, "metadata"), "name")->valuestring);
}

static char *write_temp(struct fake_kube *f, const char *name, const char *content) {
        char *p = strdup_printf("%s/%s", f->dir, name);

        assert_int_equal(write_file_atomic(p, content, 0600), 0);
        return p;
}

static void test_kubeconfig_yaml_as_kubectl_writes_it(void **state) {
        struct fake_kube *f = *state;
        _cleanup_free_ char *path = write_temp(f, "config",
                "apiVersion: v1\n"
                "kind: Config\n"
                "clusters:\n"
                "- cluster:\n"
                "    certificate-authority-data: aGVsbG8gQ0E=\n"
                "    server: https://127.0.0.1:6443\n"
                "  name: emu\n"
                "- cluster:\n"
                "    server: https://other.example:1\n"
                "  name: other\n"
                "contexts:\n"
                "- context:\n"
                "    cluster: emu\n"
                "    user: \"robot\"\n"
                "    namespace: db\n"
                "  name: emu-ctx\n"
                "current-context: 'emu-ctx'   # the one in use\n"
                "preferences: {}\n"
                "users:\n"
                "- name: robot\n"
                "  user:\n"
                "    tokenFile: token\n");
        _cleanup_free_ char *token_path = strdup_printf("%s/token", f->dir);
        struct kube_config c = {};

        assert_int_equal(kube_config_load_kubeconfig(path, &c, NULL), 0);
        assert_string_equal(c.server, "https://127.0.0.1:6443");
        assert_string_equal(c.namespace, "db");
        assert_int_equal(c.ca_data.size, 8);
        assert_memory_equal(c.ca_data.data, "hello CA", 8);
        assert_string_equal(c.token_file, token_path);
        assert_string_equal(c.token, "tok-1");
        assert_null(c.cert_file);
        kube_config_done(&c);
        (void) unlink(path);
}

static void test_kubeconfig_json_with_client_certificate_data(void **state) {
        struct fake_kube *f = *state;
        _cleanup_free_ char *path = write_temp(f, "config.json",
                "{\"current-context\":\"c\",\"contexts\":[{\"name\":\"c\",\"context\":{\"cluster\":\"k\",\"user\":\"u\"}}],"
                "\"clusters\":[{\"name\":\"k\",\"cluster\":{\"server\":\"https://[::1]:8443\",\"certificate-authority\":\"/etc/ca.pem\"}}],"
                "\"users\":[{\"name\":\"u\",\"user\":{\"token\":\"abc\",\"client-certificate-data\":\"Y2VydA==\","
                "\"client-key-data\":\"a2V5\"}}]}");
        struct kube_config c = {};

        assert_int_equal(kube_config_load_kubeconfig(path, &c, NULL), 0);
        assert_string_equal(c.server, "https://[::1]:8443");
        assert_string_equal(c.ca_file, "/etc/ca.pem");
        assert_string_equal(c.token, "abc");
        assert_null(c.token_file);
        assert_null(c.namespace);
        assert_memory_equal(c.cert_data.data, "cert", 4);
        assert_memory_equal(c.key_data.data, "key", 3);
        kube_config_done(&c);
        (void) unlink(path);
}

static void test_incluster_brackets_ipv6_and_reads_the_service_account(void **state) {
        struct fake_kube *f = *state;
        _cleanup_free_ char *ca = write_temp(f, "ca.crt", "PEM");
        _cleanup_free_ char *err = NULL;
        struct kube_config c = {};

        setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
        setenv("KUBERNETES_SERVICE_PORT", "443", 1);
        assert_int_equal(kube_config_load_incluster(f->dir, NULL, &c, NULL), 0);
        assert_string_equal(c.server, "https://[fd00::1]:443");
        assert_string_equal(c.ca_file, ca);
        assert_string_equal(c.token, "tok-1");
        assert_string_equal(c.namespace, "db");
        kube_config_done(&c);
        setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
        assert_int_equal(kube_config_load_incluster(f->dir, NULL, &c, NULL), 0);
        assert_string_equal(c.server, "https://10.96.0.1:443");
        kube_config_done(&c);
        unsetenv("KUBERNETES_SERVICE_HOST");
        assert_int_equal(kube_config_load_incluster(f->dir, NULL, &c, &err), -ENXIO);
        assert_non_null(strstr(err, "KUBERNETES_SERVICE_HOST"));
        (void) unlink(ca);
}

static void dcs_new(struct fake_kube *f, struct dcs *ret) {
        struct dcs_kube_options o = { .cluster = "main", .pod_name = "pg-0" };

        fake_kube_options(f, &o.kube);
        assert_int_equal(dcs_kube_new(&o, &f->clock_ops, ret, NULL), 0);
}

#define SERVER_LEASE(rv, holder) \
        "{\"apiVersion\":\"coordination.k8s.io/v1\",\"kind\":\"Lease\",\"metadata\":{\"name\":\"main-leader\",\"namespace\":\"db\"," \
        "\"resourceVersion\":\"" rv "\",\"uid\":\"l-1\"},\"spec\":{\"holderIdentity\":\"" holder "\",\"leaseDurationSeconds\":10," \
        "\"renewTime\":\"2025-11-25T20:32:51.123456Z\",\"preferredHolder\":\"pg-9\"}}"

static void test_dcs_leader_update_puts_back_what_it_read(void **state) {
        struct fake_kube *f = *state;
        _cleanup_(dcs_leader_freep) struct dcs_leader *l = NULL, *after = NULL, *stale = NULL;
        _cleanup_free_ char *err = NULL;
        struct dcs d;

        SCRIPT(f, { 200, SERVER_LEASE("5", "pg-0") }, { 200, SERVER_LEASE("6", "pg-0") },
               { 409, STATUS(409, "Conflict", "Operation cannot be fulfilled on leases.coordination.k8s.io \\\"main-leader\\\"") },
               { 404, STATUS(404, "NotFound", "gone") });
        dcs_new(f, &d);
        assert_int_equal(d.ops->leader_get(d.userdata, in(f, USEC_PER_SEC), &l, NULL), 0);
        assert_string_equal(f->path[0], "/apis/coordination.k8s.io/v1/namespaces/db/leases/main-leader");
        assert_string_equal(l->holder, "pg-0");
        assert_string_equal(l->version, "5");
        l->renew_time += USEC_PER_SEC;
        assert_int_equal(d.ops->leader_update(d.userdata, l, in(f, USEC_PER_SEC), &after, NULL), 0);
        assert_string_equal(f->method[1], "PUT");
        assert_non_null(strstr(f->body[1], "\"preferredHolder\":\"pg-9\""));
        assert_non_null(strstr(f->body[1], "\"resourceVersion\":\"5\""));
        assert_non_null(strstr(f->body[1], "\"uid\":\"l-1\""));
        assert_non_null(strstr(f->body[1], "\"renewTime\":\"2025-11-25T20:32:52.123456Z\""));
        assert_string_equal(after->version, "6");
        assert_string_not_equal(after->raw, l->raw);
        assert_int_equal(d.ops->leader_update(d.userdata, l, in(f, USEC_PER_SEC), &stale, &err), -ESTALE);
        assert_null(stale);
        assert_non_null(strstr(err, "409 Conflict: Operation cannot be fulfilled"));
        assert_int_equal(d.ops->leader_get(d.userdata, in(f, USEC_PER_SEC), &stale, NULL), -ENOENT);
        assert_int_equal(d.ops->request_count(d.userdata), 4);
        d.ops->free(d.userdata);
}

static void test_dcs_leader_create_posts_a_fresh_lease(void **state) {
        struct fake_kube *f = *state;
        struct dcs_leader want = { .holder = (char *) "pg-0", .lease_duration = 10 * USEC_PER_SEC,
                                   .acquire_time = 1764102771ULL * USEC_PER_SEC, .version = (char *) "99" };
        _cleanup_(dcs_leader_freep) struct dcs_leader *got = NULL, *lost = NULL;
        struct dcs d;

        SCRIPT(f, { 201, SERVER_LEASE("1", "pg-0") }, { 409, STATUS(409, "AlreadyExists", "exists") });
        dcs_new(f, &d);
        assert_int_equal(d.ops->leader_create(d.userdata, &want, in(f, USEC_PER_SEC), &got, NULL), 0);
        assert_string_equal(f->method[0], "POST");
        assert_string_equal(f->path[0], "/apis/coordination.k8s.io/v1/namespaces/db/leases");
        assert_null(strstr(f->body[0], "resourceVersion"));
        assert_non_null(strstr(f->body[0], "\"acquireTime\":\"2025-11-25T20:32:51.000000Z\""));
        assert_string_equal(got->version, "1");
        assert_int_equal(d.ops->leader_create(d.userdata, &want, in(f, USEC_PER_SEC), &lost, NULL), -EEXIST);
        d.ops->free(d.userdata);
}

static void test_dcs_member_publish_patches_own_pod(void **state) {
        struct fake_kube *f = *state;
        struct dcs_member m = { .name = (char *) "pg-0", .role = MEMBER_ROLE_PRIMARY, .state = (char *) "running",
                                .timeline = 2, .lsn = 0x3000060, .port = 5432 };
        _cleanup_(cjson_deletep) cJSON *p0 = NULL, *p1 = NULL, *ev = NULL;
        const cJSON *labels;
        struct dcs d;

        SCRIPT(f, { 200, "{\"metadata\":{\"name\":\"pg-0\",\"uid\":\"pod-uid-1\"}}" }, { 200, "{}" }, { 201, "{}" });
        dcs_new(f, &d);
        assert_int_equal(d.ops->member_publish(d.userdata, &m, in(f, USEC_PER_SEC), NULL), 0);
        m.role = MEMBER_ROLE_UNKNOWN;
        assert_int_equal(d.ops->member_publish(d.userdata, &m, in(f, USEC_PER_SEC), NULL), 0);
        assert_int_equal(d.ops->event_post(d.userdata, "Normal", "Promoted", "pg-0 is primary", in(f, USEC_PER_SEC), NULL), 0);
        assert_string_equal(f->path[0], "/api/v1/namespaces/db/pods/pg-0");
        assert_string_equal(f->ctype[0], "application/merge-patch+json");
        p0 = cJSON_Parse(f->body[0]);
        p1 = cJSON_Parse(f->body[1]);
        labels = cJSON_GetObjectItem(cJSON_GetObjectItem(p0, "metadata"), "labels");
        assert_string_equal(cJSON_GetObjectItem(labels, DCS_LABEL_ROLE)->valuestring, "primary");
        assert_string_equal(cJSON_GetObjectItem(labels, DCS_LABEL_CLUSTER)->valuestring, "main");
        assert_non_null(strstr(cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(p0, "metadata"), "annotations"),
                                                   DCS_ANNOTATION_STATUS)->valuestring, "\"lsn\":\"0/3000060\""));
        labels = cJSON_GetObjectItem(cJSON_GetObjectItem(p1, "metadata"), "labels");
        assert_true(cJSON_IsNull(cJSON_GetObjectItem(labels, DCS_LABEL_ROLE)));
        ev = cJSON_Parse(f->body[2]);
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(ev, "involvedObject"), "uid")->valuestring, "pod-uid-1");
        d.ops->free(d.userdata);
}

static void test_dcs_member_list_reads_pods_of_the_cluster(void **state) {
        struct fake_kube *f = *state;
        _cleanup_(dcs_member_list_freep) struct dcs_member_list *l = NULL;
        struct dcs d;

        SCRIPT(f, { 200, "{\"kind\":\"PodList\",\"items\":["
                         "{\"metadata\":{\"name\":\"pg-2\",\"annotations\":{\"pglease.io/status\":\"{broken\"}}},"
                         "{\"metadata\":{\"name\":\"pg-1\"}},"
                         "{\"metadata\":{\"name\":\"pg-0\",\"annotations\":{\"pglease.io/status\":"
                         "\"{\\\"role\\\":\\\"primary\\\",\\\"state\\\":\\\"running\\\",\\\"timeline\\\":4}\"}}}]}" });
        dcs_new(f, &d);
        assert_int_equal(d.ops->member_list(d.userdata, in(f, USEC_PER_SEC), &l, NULL), 0);
        assert_string_equal(f->path[0], "/api/v1/namespaces/db/pods?labelSelector=pglease.io%2Fcluster%3Dmain");
        assert_int_equal(l->n, 3);
        assert_string_equal(l->members[0].name, "pg-0");
        assert_int_equal(l->members[0].role, MEMBER_ROLE_PRIMARY);
        assert_int_equal(l->members[0].timeline, 4);
        assert_string_equal(l->members[1].name, "pg-1");
        assert_int_equal(l->members[1].role, MEMBER_ROLE_UNKNOWN);
        assert_string_equal(l->members[1].state, "unknown");
        assert_string_equal(l->members[2].name, "pg-2");
        assert_int_equal(l->members[2].role, MEMBER_ROLE_UNKNOWN);
        d.ops->free(d.userdata);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                T(test_lease_get_sends_token_and_returns_object),
                T(test_status_codes_map_to_errno_without_retry),
                T(test_malformed_or_truncated_body_is_ebadmsg),
                T(test_401_rereads_token_file_and_retries_once),
                T(test_401_twice_is_eacces),
                T(test_token_file_is_reread_every_60s),
                T(test_5xx_retried_with_growing_jittered_backoff),
                T(test_403_is_retried_inside_the_deadline),
                T(test_lasting_403_ends_as_eperm),
                T(test_429_retry_after_is_honoured),
                T(test_retry_after_past_deadline_gives_up_at_once),
                T(test_no_attempt_starts_or_lasts_past_the_deadline),
                T(test_connection_errors_are_retried),
                T(test_hung_attempt_ends_at_the_deadline),
                T(test_passed_deadline_sends_nothing),
                T(test_lease_replace_puts_the_resource_version),
                T(test_pod_list_escapes_selector_and_patch_is_merge_patch),
                T(test_pod_delete_names_the_uid_and_statefulset_get_is_apps_v1),
                T(test_event_is_a_core_event_about_the_pod_with_unique_name),
                T(test_kubeconfig_yaml_as_kubectl_writes_it),
                T(test_kubeconfig_json_with_client_certificate_data),
                T(test_incluster_brackets_ipv6_and_reads_the_service_account),
                T(test_dcs_leader_update_puts_back_what_it_read),
                T(test_dcs_leader_create_posts_a_fresh_lease),
                T(test_dcs_member_publish_patches_own_pod),
                T(test_dcs_member_list_reads_pods_of_the_cluster),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
