/* fuzz-pod-json.c: libFuzzer target for the Pod list decoder: a PodList
 * body, dcs_kube_members_from_pod_list (name and the status annotation,
 * itself JSON: role, state, LSNs, timeline, lag, heartbeat), and the
 * cluster view and table agentctl prints from the members. */
#include <stddef.h>
#include <stdint.h>

#include "clusterview.h"
#include "dcs-kube.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(cjson_deletep) cJSON *j = cJSON_ParseWithLength((const char *) data, size);
        _cleanup_(cjson_deletep) cJSON *view_json = NULL;
        _cleanup_(dcs_member_list_freep) struct dcs_member_list *m = NULL;
        _cleanup_(clusterview_freep) struct clusterview *v = NULL;
        _cleanup_free_ char *table = NULL, *err = NULL;
        /* A lease naming pg-0, so that the primary's rows and checks run. */
        struct dcs_leader lease = { .holder = (char *) "pg-0", .lease_duration = 10 * USEC_PER_SEC,
                                    .optime_timeline = 2, .optime_lsn = 0x3000060 };
        struct clusterview_source src = { .cluster = "pg", .source = "dcs", .lease = &lease, .lease_age = 1.0,
                                          .now_realtime = 1700000000 * USEC_PER_SEC,
                                          .status_interval = 10 * USEC_PER_SEC, .maximum_lag = 1 << 20 };

        if (!j || dcs_kube_members_from_pod_list(j, &m, &err) < 0)
                return 0;
        src.members = m;
        if (clusterview_build(&src, &v) >= 0) {
                (void) clusterview_format_table(v, &table);
                (void) clusterview_to_json(v, &view_json);
        }
        return 0;
}
