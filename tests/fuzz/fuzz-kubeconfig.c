/* fuzz-kubeconfig.c: libFuzzer target for the kubeconfig reader: libyaml
 * into cJSON (kube_yaml_parse) and the current context's extraction
 * (kube_config_from_text), as the agent reads $KUBECONFIG. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kube-config.h"
#include "kube-yaml.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        _cleanup_(cjson_deletep) cJSON *j = NULL;
        _cleanup_free_ char *err = NULL, *err2 = NULL;
        struct kube_config c = {};

        if (kube_yaml_parse((const char *) data, size, "fuzz.yaml", &j, &err) >= 0)
                /* Printing walks the whole tree: it must be bounded. */
                free(cJSON_PrintUnformatted(j));
        /* tokenFile and friends are read from disk: keep the target away
         * from devices and pseudo files that never end. */
        if (memmem(data, size, "/dev", 4) || memmem(data, size, "/proc", 5) || memmem(data, size, "/sys", 4))
                return 0;
        if (kube_config_from_text((const char *) data, size, "/nonexistent/fuzz/kubeconfig", &c, &err2) >= 0)
                kube_config_done(&c);
        return 0;
}
