/* test-rollout.c: the leader's rolling update of an OnDelete StatefulSet:
 * the pure decision (standbys first from the highest ordinal, one at a
 * time while every pod is Ready, the leader's own pod last), the parsing
 * of the StatefulSet and of the pod list into its input, and the worker
 * that carries it out against a scripted API server. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "fake-kube.h"
#include "rollout.h"
#include "rollout-worker.h"
#include "util.h"

#define REV_OLD "pg-7d4f8c"
#define REV_NEW "pg-5b9c21"

static struct rollout_statefulset on_delete(int64_t replicas, int64_t updated) {
        return (struct rollout_statefulset) {
                .name = (char *) "pg",
                .strategy = (char *) "OnDelete",
                .generation = 3,
                .observed_generation = 3,
                .replicas = replicas,
                .updated_replicas = updated,
                .update_revision = (char *) REV_NEW,
        };
}

/* Pods pg-0 .. pg-(n-1), all Ready at revision. */
static void pods_new(struct rollout_pods *ret, size_t n, const char *revision) {
        *ret = (struct rollout_pods) { .items = calloc(n, sizeof(struct rollout_pod)), .n = n };
        assert_non_null(ret->items);
        for (size_t i = 0; i < n; i++) {
                ret->items[i] = (struct rollout_pod) {
                        .name = strdup_printf("pg-%zu", i),
                        .ordinal = (int64_t) i,
                        .uid = strdup_printf("uid-%zu-1", i),
                        .revision = strdup(revision),
                        .ready = true,
                };
                assert_non_null(ret->items[i].name);
        }
}

static struct rollout_pod *pod(struct rollout_pods *p, const char *name) {
        for (size_t i = 0; i < p->n; i++)
                if (streq(p->items[i].name, name))
                        return &p->items[i];
        fail_msg("no pod %s", name);
        return NULL;
}

static void set_revision(struct rollout_pod *p, const char *revision) {
        free(p->revision);
        p->revision = revision ? strdup(revision) : NULL;
}

static enum rollout_step_kind decide_kind(const struct rollout_statefulset *s, const struct rollout_pods *pods,
                                          const char *self, const char *reason_part) {
        _cleanup_(rollout_step_done) struct rollout_step step = {};

        assert_int_equal(rollout_decide(s, pods, self, &step), 0);
        assert_non_null(step.reason);
        if (reason_part && !strstr(step.reason, reason_part))
                fail_msg("reason \"%s\" does not say \"%s\"", step.reason, reason_part);
        return step.kind;
}

/* The whole update of replicas pods, all outdated, led by pg-<primary>,
 * each deleted pod going through what the cluster shows (being deleted,
 * gone, back not Ready, Ready at the new revision): the pods deleted, in
 * order, must be want, one at a time, and then nothing is left to do. */
static void run_update(size_t replicas, const char *self, const char *const *want) {
        _cleanup_(rollout_pods_done) struct rollout_pods pods = {};
        struct rollout_statefulset s = on_delete((int64_t) replicas, 0);
        size_t n = 0;

        pods_new(&pods, replicas, REV_OLD);
        for (;;) {
                _cleanup_(rollout_step_done) struct rollout_step step = {};
                struct rollout_pod *p;
                int64_t ordinal;

                assert_int_equal(rollout_decide(&s, &pods, self, &step), 0);
                if (step.kind == ROLLOUT_NOTHING)
                        break;
                assert_true(n < replicas);
                assert_non_null(step.pod);
                assert_string_equal(step.pod->name, want[n]);
                assert_int_equal(step.kind, streq(want[n], self) ? ROLLOUT_DELETE_SELF : ROLLOUT_DELETE_STANDBY);
                n++;
                p = pod(&pods, step.pod->name);
                ordinal = p->ordinal;
                /* Deleted: nothing else goes until it is back and Ready. */
                p->deleting = true;
                assert_int_equal(decide_kind(&s, &pods, self, "is being deleted"), ROLLOUT_WAIT);
                p->ordinal = -1;
                assert_int_equal(decide_kind(&s, &pods, self, "is missing"), ROLLOUT_WAIT);
                p->ordinal = ordinal;
                p->deleting = p->ready = false;
                set_revision(p, REV_NEW);
                free(p->uid);
                p->uid = strdup_printf("uid-%" PRIi64 "-2", ordinal);
                assert_int_equal(decide_kind(&s, &pods, self, "is not Ready"), ROLLOUT_WAIT);
                p->ready = true;
                s.updated_replicas++;
        }
        assert_int_equal(n, replicas);
        assert_string_equal(want[n - 1], self);
}

static void test_primary_at_ordinal_0_standbys_from_the_highest_then_itself(void **state) {
        run_update(3, "pg-0", (const char *const[]) { "pg-2", "pg-1", "pg-0" });
}

static void test_primary_at_ordinal_1_standbys_from_the_highest_then_itself(void **state) {
        run_update(3, "pg-1", (const char *const[]) { "pg-2", "pg-0", "pg-1" });
}

static void test_primary_at_ordinal_2_standbys_from_the_highest_then_itself(void **state) {
        run_update(3, "pg-2", (const char *const[]) { "pg-1", "pg-0", "pg-2" });
}

static void test_single_replica_deletes_only_itself(void **state) {
        run_update(1, "pg-0", (const char *const[]) { "pg-0" });
}

static void test_five_replicas_one_hand_over(void **state) {
        run_update(5, "pg-3", (const char *const[]) { "pg-4", "pg-2", "pg-1", "pg-0", "pg-3" });
}

static void test_waits_while_a_pod_is_not_ready(void **state) {
        _cleanup_(rollout_pods_done) struct rollout_pods pods = {};
        struct rollout_statefulset s = on_delete(3, 0);

        pods_new(&pods, 3, REV_OLD);
        pod(&pods, "pg-1")->ready = false;
        assert_int_equal(decide_kind(&s, &pods, "pg-0", "pod pg-1 is not Ready"), ROLLOUT_WAIT);
        /* The leader's own readiness counts too. */
        pod(&pods, "pg-1")->ready = true;
        pod(&pods, "pg-0")->ready = false;
        assert_int_equal(decide_kind(&s, &pods, "pg-0", "pod pg-0 is not Ready"), ROLLOUT_WAIT);
}

static void test_waits_while_a_pod_is_being_deleted(void **state) {
        _cleanup_(rollout_pods_done) struct rollout_pods pods = {};
        struct rollout_statefulset s = on_delete(3, 1);

        pods_new(&pods, 3, REV_OLD);
        /* Ready still, but on its way out (someone else deleted it). */
        pod(&pods, "pg-2")->deleting = true;
        assert_int_equal(decide_kind(&s, &pods, "pg-0", "pod pg-2 is being deleted"), ROLLOUT_WAIT);
}

static void test_waits_while_a_pod_is_missing(void **state) {
        _cleanup_(rollout_pods_done) struct rollout_pods pods = {};
        struct rollout_statefulset s = on_delete(3, 0);

        pods_new(&pods, 2, REV_OLD);
        assert_int_equal(decide_kind(&s, &pods, "pg-0", "pod pg-2 is missing"), ROLLOUT_WAIT);
}

static void test_waits_while_a_pod_beyond_replicas_remains(void **state) {
        _cleanup_(rollout_pods_done) struct rollout_pods pods = {};
        struct rollout_statefulset s = on_delete(2, 0);

        pods_new(&pods, 3, REV_OLD);
        assert_int_equal(decide_kind(&s, &pods, "pg-0", "pod pg-2 is beyond spec.replicas (2)"), ROLLOUT_WAIT);
}

static void test_nothing_when_every_pod_is_updated(void **state) {
        _cleanup_(rollout_pods_done) struct rollout_pods pods = {};
        struct rollout_statefulset s = on_delete(3, 2);

        /* The controller's count lags: the pods themselves say it is done. */
        pods_new(&pods, 3, REV_NEW);
        assert_int_equal(decide_kind(&s, &pods, "pg-1", "every pod is at revision " REV_NEW), ROLLOUT_NOTHING);
        s.updated_replicas = 3;
        assert_int_equal(decide_kind(&s, NULL, "pg-1", "every pod is at revision " REV_NEW), ROLLOUT_NOTHING);
}

static void test_leader_outdated_alone_deletes_itself_last(void **state) {
        _cleanup_(rollout_pods_done) struct rollout_pods pods = {};
        _cleanup_(rollout_step_done) struct rollout_step step = {};
        struct rollout_statefulset s = on_delete(3, 2);

        pods_new(&pods, 3, REV_NEW);
        set_revision(pod(&pods, "pg-1"), REV_OLD);
        assert_int_equal(rollout_decide(&s, &pods, "pg-1", &step), 0);
        assert_int_equal(step.kind, ROLLOUT_DELETE_SELF);
        assert_ptr_equal(step.pod, pod(&pods, "pg-1"));
        assert_string_equal(step.pod->uid, "uid-1-1");
        assert_non_null(strstr(step.reason, "deleting its own pod pg-1 (revision " REV_OLD ")"));
        assert_non_null(strstr(step.reason, "pre-stop hook hands the primary over"));
}

static void test_pod_without_revision_label_is_outdated(void **state) {
        _cleanup_(rollout_pods_done) struct rollout_pods pods = {};
        _cleanup_(rollout_step_done) struct rollout_step step = {};
        struct rollout_statefulset s = on_delete(3, 2);

        pods_new(&pods, 3, REV_NEW);
        set_revision(pod(&pods, "pg-1"), NULL);
        assert_int_equal(rollout_decide(&s, &pods, "pg-0", &step), 0);
        assert_int_equal(step.kind, ROLLOUT_DELETE_STANDBY);
        assert_string_equal(step.pod->name, "pg-1");
        assert_string_equal(step.reason, "deleting standby pg-1 (revision none)");
}

static void test_rolling_update_strategy_means_nothing(void **state) {
        _cleanup_(rollout_pods_done) struct rollout_pods pods = {};
        _cleanup_(rollout_step_done) struct rollout_step step = {};
        struct rollout_statefulset s = on_delete(3, 0);

        s.strategy = (char *) "RollingUpdate";
        pods_new(&pods, 3, REV_OLD);
        assert_int_equal(rollout_decide(&s, &pods, "pg-0", &step), 0);
        assert_int_equal(step.kind, ROLLOUT_NOTHING);
        assert_null(step.pod);
        assert_non_null(strstr(step.reason, "updateStrategy is RollingUpdate, not OnDelete"));
}

static void test_waits_for_the_controller_to_observe_and_name_a_revision(void **state) {
        _cleanup_(rollout_pods_done) struct rollout_pods pods = {};
        struct rollout_statefulset s = on_delete(3, 0);

        pods_new(&pods, 3, REV_OLD);
        s.observed_generation = 2;
        assert_int_equal(decide_kind(&s, &pods, "pg-0", "has not observed generation 3 yet (at 2)"), ROLLOUT_WAIT);
        s.observed_generation = 3;
        s.update_revision = NULL;
        assert_int_equal(decide_kind(&s, &pods, "pg-0", "no status.updateRevision"), ROLLOUT_WAIT);
}

static void test_asks_for_the_pods_only_while_some_are_counted_outdated(void **state) {
        struct rollout_statefulset s = on_delete(3, 1);

        assert_int_equal(decide_kind(&s, NULL, "pg-0", NULL), ROLLOUT_LIST_PODS);
        s.updated_replicas = 3;
        assert_int_equal(decide_kind(&s, NULL, "pg-0", NULL), ROLLOUT_NOTHING);
        s.strategy = (char *) "RollingUpdate";
        s.updated_replicas = 0;
        assert_int_equal(decide_kind(&s, NULL, "pg-0", NULL), ROLLOUT_NOTHING);
}

static void test_leader_outside_the_statefulset_deletes_nothing(void **state) {
        _cleanup_(rollout_pods_done) struct rollout_pods pods = {};
        struct rollout_statefulset s = on_delete(3, 0);

        pods_new(&pods, 3, REV_OLD);
        assert_int_equal(decide_kind(&s, &pods, "other-0", "this leader's pod other-0 is not a pod of StatefulSet pg"),
                         ROLLOUT_WAIT);
}

static void test_pods_of_other_names_neither_block_nor_go(void **state) {
        _cleanup_(rollout_pods_done) struct rollout_pods pods = {};
        _cleanup_(rollout_step_done) struct rollout_step step = {};
        struct rollout_statefulset s = on_delete(2, 1);
        struct rollout_pod *stray;

        pods_new(&pods, 3, REV_NEW);
        stray = pod(&pods, "pg-2");
        free(stray->name);
        stray->name = strdup("pgpool-9");
        stray->ordinal = -1;
        stray->ready = false;
        set_revision(stray, REV_OLD);
        set_revision(pod(&pods, "pg-0"), REV_OLD);
        assert_int_equal(rollout_decide(&s, &pods, "pg-1", &step), 0);
        assert_int_equal(step.kind, ROLLOUT_DELETE_STANDBY);
        assert_string_equal(step.pod->name, "pg-0");
}

#define STS_JSON(strategy, status)                                                                          \
        "{\"apiVersion\":\"apps/v1\",\"kind\":\"StatefulSet\",\"metadata\":{\"name\":\"pg\",\"namespace\":\"db\"," \
        "\"generation\":4},\"spec\":{\"replicas\":3,\"updateStrategy\":" strategy "}" status "}"

static void test_statefulset_parse_reads_strategy_generations_and_revision(void **state) {
        _cleanup_(cjson_deletep) cJSON *j = cJSON_Parse(STS_JSON("{\"type\":\"OnDelete\"}",
                ",\"status\":{\"observedGeneration\":4,\"replicas\":3,\"updatedReplicas\":1,"
                "\"currentRevision\":\"" REV_OLD "\",\"updateRevision\":\"" REV_NEW "\"}"));
        _cleanup_(rollout_statefulset_done) struct rollout_statefulset s = {};

        assert_int_equal(rollout_statefulset_from_json(j, &s, NULL), 0);
        assert_string_equal(s.name, "pg");
        assert_string_equal(s.strategy, "OnDelete");
        assert_int_equal(s.generation, 4);
        assert_int_equal(s.observed_generation, 4);
        assert_int_equal(s.replicas, 3);
        assert_int_equal(s.updated_replicas, 1);
        assert_string_equal(s.update_revision, REV_NEW);
}

static void test_statefulset_parse_without_status_or_strategy(void **state) {
        _cleanup_(cjson_deletep) cJSON *j = cJSON_Parse(STS_JSON("null", ""));
        _cleanup_(rollout_statefulset_done) struct rollout_statefulset s = {};
        _cleanup_(rollout_step_done) struct rollout_step step = {};

        assert_int_equal(rollout_statefulset_from_json(j, &s, NULL), 0);
        /* The API's default strategy; nothing observed yet. */
        assert_string_equal(s.strategy, "RollingUpdate");
        assert_int_equal(s.observed_generation, 0);
        assert_null(s.update_revision);
        assert_int_equal(rollout_decide(&s, NULL, "pg-0", &step), 0);
        assert_int_equal(step.kind, ROLLOUT_NOTHING);
}

struct parse_error_case {
        const char *json, *message;
};

static int parse_statefulset(const cJSON *j, char **reterr_msg) {
        _cleanup_(rollout_statefulset_done) struct rollout_statefulset s = {};
        int r = rollout_statefulset_from_json(j, &s, reterr_msg);

        /* ret is written only on success. */
        assert_true(r >= 0 || !s.name);
        return r;
}

static int parse_pods(const cJSON *j, char **reterr_msg) {
        _cleanup_(rollout_pods_done) struct rollout_pods p = {};
        int r = rollout_pods_from_list(j, "pg", &p, reterr_msg);

        assert_true(r >= 0 || p.n == 0);
        return r;
}

/* Each document fails to parse with exactly its message. */
static void assert_parse_errors(const struct parse_error_case *cases, size_t n,
                                int (*parse)(const cJSON *j, char **reterr_msg)) {
        for (size_t i = 0; i < n; i++) {
                _cleanup_(cjson_deletep) cJSON *j = cJSON_Parse(cases[i].json);
                _cleanup_free_ char *err = NULL;

                assert_non_null(j);
                assert_int_equal(parse(j, &err), -EBADMSG);
                if (!err || !streq(err, cases[i].message))
                        fail_msg("%s: \"%s\", not \"%s\"", cases[i].json, strempty(err), cases[i].message);
        }
}

static void test_statefulset_parse_errors_name_the_field(void **state) {
        static const struct parse_error_case cases[] = {
                { "[]", "StatefulSet: not a JSON object" },
                { "{\"spec\":{\"replicas\":1}}", "StatefulSet: metadata is missing" },
                { "{\"metadata\":\"pg\"}", "StatefulSet: metadata has the wrong type" },
                { "{\"metadata\":{\"generation\":1},\"spec\":{\"replicas\":1}}", "StatefulSet: metadata.name is missing" },
                { "{\"metadata\":{\"name\":\"pg\"},\"spec\":{\"replicas\":1}}", "StatefulSet: metadata.generation is missing" },
                { "{\"metadata\":{\"name\":\"pg\",\"generation\":\"1\"}}", "StatefulSet: metadata.generation has the wrong type" },
                { "{\"metadata\":{\"name\":\"pg\",\"generation\":1.5}}", "StatefulSet: metadata.generation has the wrong type" },
                { "{\"metadata\":{\"name\":\"pg\",\"generation\":1}}", "StatefulSet: spec is missing" },
                { "{\"metadata\":{\"name\":\"pg\",\"generation\":1},\"spec\":{}}", "StatefulSet: spec.replicas is missing" },
                { "{\"metadata\":{\"name\":\"pg\",\"generation\":1},\"spec\":{\"replicas\":-1}}",
                  "StatefulSet: spec.replicas has the wrong type" },
                { "{\"metadata\":{\"name\":\"pg\",\"generation\":1},\"spec\":{\"replicas\":1,\"updateStrategy\":\"OnDelete\"}}",
                  "StatefulSet: spec.updateStrategy has the wrong type" },
                { "{\"metadata\":{\"name\":\"pg\",\"generation\":1},\"spec\":{\"replicas\":1,\"updateStrategy\":{\"type\":1}}}",
                  "StatefulSet: spec.updateStrategy.type has the wrong type" },
                { "{\"metadata\":{\"name\":\"pg\",\"generation\":1},\"spec\":{\"replicas\":1},\"status\":[]}",
                  "StatefulSet: status has the wrong type" },
                { "{\"metadata\":{\"name\":\"pg\",\"generation\":1},\"spec\":{\"replicas\":1},\"status\":{\"updateRevision\":7}}",
                  "StatefulSet: status.updateRevision has the wrong type" },
                { "{\"metadata\":{\"name\":\"pg\",\"generation\":1},\"spec\":{\"replicas\":1},\"status\":{\"observedGeneration\":true}}",
                  "StatefulSet: status.observedGeneration has the wrong type" },
        };

        assert_parse_errors(cases, ELEMENTSOF(cases), parse_statefulset);
        /* Not JSON at all: no object to read. */
        assert_null(cJSON_Parse("{\"metadata\":"));
        assert_int_equal(rollout_statefulset_from_json(NULL, &(struct rollout_statefulset) {}, NULL), -EBADMSG);
}

#define POD_JSON(name, uid, labels, extra_meta, status)                                                     \
        "{\"metadata\":{\"name\":\"" name "\",\"uid\":\"" uid "\",\"labels\":" labels extra_meta "},"         \
        "\"status\":" status "}"
#define READY "{\"phase\":\"Running\",\"conditions\":[{\"type\":\"PodScheduled\",\"status\":\"True\"}," \
        "{\"type\":\"Ready\",\"status\":\"True\"}]}"
#define NOT_READY "{\"phase\":\"Running\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"False\"}]}"
#define REV(r) "{\"pglease.io/cluster\":\"main\",\"controller-revision-hash\":\"" r "\"}"

static void test_pod_list_parse_reads_ordinal_uid_revision_ready_deleting(void **state) {
        _cleanup_(cjson_deletep) cJSON *j = cJSON_Parse("{\"kind\":\"PodList\",\"items\":["
                POD_JSON("pg-2", "u-2", REV(REV_OLD), ",\"deletionTimestamp\":\"2025-11-25T20:33:00Z\"", READY) ","
                POD_JSON("pg-0", "u-0", REV(REV_NEW), "", READY) ","
                POD_JSON("pg-1", "u-1", "{}", "", NOT_READY) ","
                POD_JSON("pg-10", "u-10", REV(REV_NEW), "", "{}") ","
                "{\"metadata\":{\"name\":\"pgpool-1\",\"labels\":{}}},"
                "{\"metadata\":{}}]}");
        _cleanup_(rollout_pods_done) struct rollout_pods p = {};

        assert_int_equal(rollout_pods_from_list(j, "pg", &p, NULL), 0);
        /* The pod without a name is skipped; the foreign one kept, without an ordinal. */
        assert_int_equal(p.n, 5);
        assert_string_equal(p.items[0].name, "pg-2");
        assert_int_equal(p.items[0].ordinal, 2);
        assert_string_equal(p.items[0].uid, "u-2");
        assert_string_equal(p.items[0].revision, REV_OLD);
        assert_true(p.items[0].ready);
        assert_true(p.items[0].deleting);
        assert_int_equal(p.items[1].ordinal, 0);
        assert_false(p.items[1].deleting);
        assert_true(p.items[1].ready);
        assert_null(p.items[2].revision);
        assert_false(p.items[2].ready);
        assert_int_equal(p.items[3].ordinal, 10);
        assert_false(p.items[3].ready);
        assert_string_equal(p.items[4].name, "pgpool-1");
        assert_int_equal(p.items[4].ordinal, -1);
        assert_null(p.items[4].uid);
}

static void test_pod_ordinal_only_from_the_statefulset_name(void **state) {
        static const char *const names[] = { "pg-01", "pg-x", "pg-", "pgx-1", "pg-1-a", "pg-99999999999", "pg1", "other-pg-1" };

        for (size_t i = 0; i < ELEMENTSOF(names); i++) {
                _cleanup_free_ char *body = strdup_printf("{\"items\":[{\"metadata\":{\"name\":\"%s\",\"uid\":\"u\"}}]}", names[i]);
                _cleanup_(cjson_deletep) cJSON *j = cJSON_Parse(body);
                _cleanup_(rollout_pods_done) struct rollout_pods p = {};

                assert_int_equal(rollout_pods_from_list(j, "pg", &p, NULL), 0);
                assert_int_equal(p.n, 1);
                if (p.items[0].ordinal != -1)
                        fail_msg("%s: ordinal %" PRIi64, names[i], p.items[0].ordinal);
        }
}

static void test_pod_list_parse_errors_name_the_field(void **state) {
        static const struct parse_error_case cases[] = {
                { "[]", "pod list: not a JSON object" },
                { "{\"items\":{}}", "pod list: items has the wrong type" },
                { "{\"items\":[{\"metadata\":{\"name\":\"pg-1\"}}]}", "pg-1: metadata.uid is missing" },
                { "{\"items\":[{\"metadata\":{\"name\":\"pg-1\",\"uid\":5}}]}", "pg-1: metadata.uid has the wrong type" },
                { "{\"items\":[{\"metadata\":{\"name\":\"pg-1\",\"uid\":\"u\",\"labels\":[]}}]}",
                  "pg-1: metadata.labels has the wrong type" },
                { "{\"items\":[{\"metadata\":{\"name\":\"pg-1\",\"uid\":\"u\",\"labels\":{\"controller-revision-hash\":1}}}]}",
                  "pg-1: metadata.labels.controller-revision-hash has the wrong type" },
        };

        assert_parse_errors(cases, ELEMENTSOF(cases), parse_pods);
}

/* The worker against the scripted API server: namespace "db", cluster
 * "main", this pod pg-0, the StatefulSet pg. */
struct world {
        struct fake_kube *f;
        struct rollout_worker *w;
        struct logger log;
        FILE *log_file;
};

#define API_TIMEOUT (2 * USEC_PER_SEC)
#define INTERVAL (5 * USEC_PER_SEC)

static int world_setup(void **state) {
        struct world *w = calloc(1, sizeof *w);
        struct dcs_kube_options o = { .cluster = "main", .pod_name = "pg-0" };

        assert_non_null(w);
        w->f = fake_kube_new();
        w->log_file = tmpfile();
        assert_non_null(w->log_file);
        logger_init(&w->log, "pglease-agent", fileno(w->log_file));
        fake_kube_options(w->f, &o.kube);
        assert_int_equal(rollout_worker_new(&(struct rollout_worker_options) {
                                                    .clock = &w->f->clock_ops, .log = &w->log, .kube = &o,
                                                    .statefulset = "pg", .no_thread = true,
                                            }, &w->w, NULL), 0);
        *state = w;
        return 0;
}

static int world_teardown(void **state) {
        struct world *w = *state;

        rollout_worker_free(w->w);
        fake_kube_free(w->f);
        logger_done(&w->log);
        fclose(w->log_file);
        free(w);
        return 0;
}

static void feed(struct world *w, bool leading, const char *hold) {
        rollout_worker_feed(w->w, &(struct rollout_worker_feed) {
                .enabled = true, .leading = leading, .hold = hold,
                .interval = INTERVAL, .api_timeout = API_TIMEOUT, .fresh_for = 7 * USEC_PER_SEC,
        });
}

static char *logged(struct world *w) {
        char *text = calloc(1, 65536);

        assert_non_null(text);
        rewind(w->log_file);
        (void) fread(text, 1, 65535, w->log_file);
        return text;
}

#define STS_UPDATING(updated) \
        STS_JSON("{\"type\":\"OnDelete\"}", ",\"status\":{\"observedGeneration\":4,\"updatedReplicas\":" #updated "," \
                 "\"updateRevision\":\"" REV_NEW "\"}")
#define PODS_ALL_OLD_READY "{\"kind\":\"PodList\",\"items\":[" \
        POD_JSON("pg-0", "u-0", REV(REV_OLD), "", READY) "," \
        POD_JSON("pg-1", "u-1", REV(REV_OLD), "", READY) "," \
        POD_JSON("pg-2", "u-2", REV(REV_OLD), "", READY) "]}"

static void test_worker_deletes_the_highest_outdated_standby_by_uid(void **state) {
        struct world *w = *state;
        struct fake_kube *f = w->f;
        _cleanup_(cjson_deletep) cJSON *options = NULL, *event = NULL;
        _cleanup_free_ char *text = NULL;
        usec_t start = clock_now(&f->clock_ops), next;

        SCRIPT(f, { 200, STS_UPDATING(0) }, { 200, PODS_ALL_OLD_READY }, { 200, "{\"kind\":\"Pod\"}" }, { 201, "{}" });
        feed(w, true, NULL);
        next = rollout_worker_step(w->w, start);
        assert_int_equal(next, start + INTERVAL);
        assert_int_equal(f->calls, 4);
        assert_string_equal(f->path[0], "/apis/apps/v1/namespaces/db/statefulsets/pg");
        assert_string_equal(f->path[1], "/api/v1/namespaces/db/pods?labelSelector=pglease.io%2Fcluster%3Dmain");
        assert_string_equal(f->method[2], "DELETE");
        assert_string_equal(f->path[2], "/api/v1/namespaces/db/pods/pg-2");
        options = cJSON_Parse(f->body[2]);
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(options, "preconditions"), "uid")->valuestring, "u-2");
        assert_string_equal(f->path[3], "/api/v1/namespaces/db/events");
        event = cJSON_Parse(f->body[3]);
        assert_string_equal(cJSON_GetObjectItem(event, "reason")->valuestring, "rollout");
        assert_string_equal(cJSON_GetObjectItem(cJSON_GetObjectItem(event, "involvedObject"), "uid")->valuestring, "u-0");
        assert_string_equal(cJSON_GetObjectItem(event, "message")->valuestring,
                            "rolling update to revision " REV_NEW ": deleting standby pg-2 (revision " REV_OLD ")");
        assert_int_equal(rollout_worker_deletions(w->w), 1);
        /* Each call bounded by api_timeout. */
        for (unsigned i = 0; i < f->calls; i++)
                assert_true(f->timeout[i] <= API_TIMEOUT);
        /* Not again before the interval. */
        feed(w, true, NULL);
        assert_int_equal(rollout_worker_step(w->w, start + INTERVAL - 1), start + INTERVAL);
        assert_int_equal(f->calls, 4);
        text = logged(w);
        assert_non_null(strstr(text, "rollout: rolling update to revision " REV_NEW ": deleting standby pg-2 (revision " REV_OLD ")"));
}

static void test_worker_reads_only_the_statefulset_while_every_pod_is_counted_updated(void **state) {
        struct world *w = *state;
        struct fake_kube *f = w->f;
        _cleanup_free_ char *text = NULL;

        SCRIPT(f, { 200, STS_UPDATING(3) }, { 200, STS_UPDATING(3) });
        feed(w, true, NULL);
        (void) rollout_worker_step(w->w, clock_now(&f->clock_ops));
        assert_int_equal(f->calls, 1);
        clock_scripted_advance(&f->clock, INTERVAL);
        feed(w, true, NULL);
        (void) rollout_worker_step(w->w, clock_now(&f->clock_ops));
        assert_int_equal(f->calls, 2);
        assert_int_equal(rollout_worker_deletions(w->w), 0);
        /* Said once, not every round. */
        text = logged(w);
        assert_non_null(strstr(text, "StatefulSet pg: every pod is at revision " REV_NEW));
        assert_null(strstr(strstr(text, "every pod is at revision") + 1, "every pod is at revision"));
}

static void test_worker_does_nothing_unless_leading_fresh_and_not_held(void **state) {
        struct world *w = *state;
        struct fake_kube *f = w->f;
        _cleanup_free_ char *text = NULL;

        SCRIPT(f, { 200, STS_UPDATING(3) });
        /* Never fed, then a follower. */
        assert_int_equal(rollout_worker_step(w->w, clock_now(&f->clock_ops)), USEC_INFINITY);
        feed(w, false, NULL);
        assert_int_equal(rollout_worker_step(w->w, clock_now(&f->clock_ops)), USEC_INFINITY);
        /* Paused, a switchover: said, nothing sent. */
        feed(w, true, "the cluster is paused (agentctl resume)");
        assert_int_equal(rollout_worker_step(w->w, clock_now(&f->clock_ops)), clock_now(&f->clock_ops) + INTERVAL);
        /* Switched off by a reload. */
        rollout_worker_feed(w->w, &(struct rollout_worker_feed) {
                .enabled = false, .leading = true, .interval = INTERVAL, .api_timeout = API_TIMEOUT, .fresh_for = 7 * USEC_PER_SEC,
        });
        clock_scripted_advance(&f->clock, INTERVAL);
        assert_int_equal(rollout_worker_step(w->w, clock_now(&f->clock_ops)), USEC_INFINITY);
        /* A loop that stopped ticking: its last word is no leave to act. */
        feed(w, true, NULL);
        clock_scripted_advance(&f->clock, 7 * USEC_PER_SEC);
        assert_int_equal(rollout_worker_step(w->w, clock_now(&f->clock_ops)), USEC_INFINITY);
        assert_int_equal(f->calls, 0);
        text = logged(w);
        assert_non_null(strstr(text, "rolling updates wait: the cluster is paused (agentctl resume)"));
        /* Fed again: a round at once. */
        feed(w, true, NULL);
        (void) rollout_worker_step(w->w, clock_now(&f->clock_ops));
        assert_int_equal(f->calls, 1);
}

static void test_worker_failed_read_is_said_and_made_again_next_round(void **state) {
        struct world *w = *state;
        struct fake_kube *f = w->f;
        _cleanup_free_ char *text = NULL;
        usec_t start = clock_now(&f->clock_ops);

        SCRIPT(f, { 404, STATUS(404, "NotFound", "statefulsets.apps \\\"pg\\\" not found") },
               { 403, STATUS(403, "Forbidden", "cannot get statefulsets"), .takes = API_TIMEOUT },
               { 200, STS_UPDATING(3) });
        feed(w, true, NULL);
        (void) rollout_worker_step(w->w, start);
        assert_int_equal(f->calls, 1);
        /* A 403 is retried up to the deadline, no further. */
        clock_scripted_advance(&f->clock, INTERVAL);
        feed(w, true, NULL);
        (void) rollout_worker_step(w->w, clock_now(&f->clock_ops));
        assert_int_equal(f->calls, 2);
        clock_scripted_advance(&f->clock, INTERVAL);
        feed(w, true, NULL);
        (void) rollout_worker_step(w->w, clock_now(&f->clock_ops));
        assert_int_equal(f->calls, 3);
        text = logged(w);
        assert_non_null(strstr(text, "cannot read StatefulSet db/pg: 404 NotFound: statefulsets.apps \"pg\" not found; trying again next round"));
        assert_non_null(strstr(text, "cannot read StatefulSet db/pg: 403 Forbidden"));
}

static void test_worker_deletes_nothing_on_a_word_gone_stale_during_the_reads(void **state) {
        struct world *w = *state;
        struct fake_kube *f = w->f;

        /* The list takes so long that the loop's last word is older than
         * fresh_for by the time the decision is made. */
        SCRIPT(f, { 200, STS_UPDATING(0) }, { 200, PODS_ALL_OLD_READY, .takes = API_TIMEOUT - 1 });
        rollout_worker_feed(w->w, &(struct rollout_worker_feed) {
                .enabled = true, .leading = true, .interval = INTERVAL, .api_timeout = API_TIMEOUT, .fresh_for = USEC_PER_SEC,
        });
        (void) rollout_worker_step(w->w, clock_now(&f->clock_ops));
        assert_int_equal(f->calls, 2);
        assert_int_equal(rollout_worker_deletions(w->w), 0);
}

static void test_worker_replaced_pod_is_decided_again(void **state) {
        struct world *w = *state;
        struct fake_kube *f = w->f;
        _cleanup_free_ char *text = NULL;

        SCRIPT(f, { 200, STS_UPDATING(0) }, { 200, PODS_ALL_OLD_READY },
               { 409, STATUS(409, "Conflict", "Precondition failed: UID in precondition: u-2, UID in object meta: u-9") });
        feed(w, true, NULL);
        (void) rollout_worker_step(w->w, clock_now(&f->clock_ops));
        assert_int_equal(f->calls, 3);
        assert_int_equal(rollout_worker_deletions(w->w), 0);
        text = logged(w);
        assert_non_null(strstr(text, "pod pg-2 was deleted or replaced since it was read; deciding again next round"));
}

#define W(name) cmocka_unit_test_setup_teardown(name, world_setup, world_teardown)

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_primary_at_ordinal_0_standbys_from_the_highest_then_itself),
                cmocka_unit_test(test_primary_at_ordinal_1_standbys_from_the_highest_then_itself),
                cmocka_unit_test(test_primary_at_ordinal_2_standbys_from_the_highest_then_itself),
                cmocka_unit_test(test_single_replica_deletes_only_itself),
                cmocka_unit_test(test_five_replicas_one_hand_over),
                cmocka_unit_test(test_waits_while_a_pod_is_not_ready),
                cmocka_unit_test(test_waits_while_a_pod_is_being_deleted),
                cmocka_unit_test(test_waits_while_a_pod_is_missing),
                cmocka_unit_test(test_waits_while_a_pod_beyond_replicas_remains),
                cmocka_unit_test(test_nothing_when_every_pod_is_updated),
                cmocka_unit_test(test_leader_outdated_alone_deletes_itself_last),
                cmocka_unit_test(test_pod_without_revision_label_is_outdated),
                cmocka_unit_test(test_rolling_update_strategy_means_nothing),
                cmocka_unit_test(test_waits_for_the_controller_to_observe_and_name_a_revision),
                cmocka_unit_test(test_asks_for_the_pods_only_while_some_are_counted_outdated),
                cmocka_unit_test(test_leader_outside_the_statefulset_deletes_nothing),
                cmocka_unit_test(test_pods_of_other_names_neither_block_nor_go),
                cmocka_unit_test(test_statefulset_parse_reads_strategy_generations_and_revision),
                cmocka_unit_test(test_statefulset_parse_without_status_or_strategy),
                cmocka_unit_test(test_statefulset_parse_errors_name_the_field),
                cmocka_unit_test(test_pod_list_parse_reads_ordinal_uid_revision_ready_deleting),
                cmocka_unit_test(test_pod_ordinal_only_from_the_statefulset_name),
                cmocka_unit_test(test_pod_list_parse_errors_name_the_field),
                W(test_worker_deletes_the_highest_outdated_standby_by_uid),
                W(test_worker_reads_only_the_statefulset_while_every_pod_is_counted_updated),
                W(test_worker_does_nothing_unless_leading_fresh_and_not_held),
                W(test_worker_failed_read_is_said_and_made_again_next_round),
                W(test_worker_deletes_nothing_on_a_word_gone_stale_during_the_reads),
                W(test_worker_replaced_pod_is_decided_again),
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
