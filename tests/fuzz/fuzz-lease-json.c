/* fuzz-lease-json.c: libFuzzer target for the Lease decoder: a GET
 * response body as kube.c parses it, dcs_kube_leader_from_lease (every
 * field the election reads: spec times and numbers, annotations), the
 * round trip back to a Lease for a PUT, and the cluster view built on it. */
#include <stddef.h>
#include <stdint.h>

#include "clusterview.h"
#include "dcs-kube.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(cjson_deletep) cJSON *j = cJSON_ParseWithLength((const char *) data, size);
        _cleanup_(cjson_deletep) cJSON *back = NULL, *view_json = NULL;
        _cleanup_(dcs_leader_freep) struct dcs_leader *l = NULL;
        _cleanup_(clusterview_freep) struct clusterview *v = NULL;
        _cleanup_free_ char *table = NULL;
        struct clusterview_source src = { .cluster = "pg", .source = "dcs", .lease_age = 1.0,
                                          .status_interval = 10 * USEC_PER_SEC, .maximum_lag = 1 << 20 };

        if (!j || dcs_kube_leader_from_lease(j, &l) < 0)
                return 0;
        (void) dcs_kube_leader_to_lease(l, j, "default", "pg-leader", &back);
        src.lease = l;
        if (clusterview_build(&src, &v) >= 0) {
                (void) clusterview_format_table(v, &table);
                (void) clusterview_to_json(v, &view_json);
        }
        return 0;
}
