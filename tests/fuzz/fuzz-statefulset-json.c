/* fuzz-statefulset-json.c: libFuzzer target for the rolling update's
 * decoders: one body read as the StatefulSet GET answer
 * (rollout_statefulset_from_json) and as the PodList (rollout_pods_from_list,
 * ordinals from the StatefulSet's name), and the decision on what they
 * give, with and without the pods. */
#include <stddef.h>
#include <stdint.h>

#include "kube-yaml.h"
#include "rollout.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(cjson_deletep) cJSON *j = cJSON_ParseWithLength((const char *) data, size);
        _cleanup_(rollout_statefulset_done) struct rollout_statefulset s = {};
        _cleanup_(rollout_pods_done) struct rollout_pods pods = {};
        _cleanup_(rollout_step_done) struct rollout_step alone = {}, with_pods = {};
        _cleanup_free_ char *err = NULL;

        if (!j)
                return 0;
        /* The pods are read for a StatefulSet named as the document says,
         * else "pg", so that a PodList alone exercises the ordinals too. */
        if (rollout_statefulset_from_json(j, &s, &err) < 0) {
                err = mfree(err);
                (void) rollout_pods_from_list(j, "pg", &pods, &err);
                return 0;
        }
        (void) rollout_decide(&s, NULL, "pg-0", &alone);
        if (rollout_pods_from_list(j, s.name, &pods, &err) >= 0)
                (void) rollout_decide(&s, &pods, "pg-0", &with_pods);
        return 0;
}
