/* kube-yaml.h: a reader for the subset of YAML that kubectl writes in a
 * kubeconfig (block mappings and sequences, plain and quoted scalars). */
#ifndef PGLEASE_KUBE_YAML_H
#define PGLEASE_KUBE_YAML_H

#include <cjson/cJSON.h>

#include "macro.h"

static inline void cjson_deletep(cJSON **j) {
        if (*j)
                cJSON_Delete(*j);
        *j = NULL;
}

/* Parses text into a cJSON tree (every scalar a string, "null"/"~"/empty a
 * JSON null). Anything outside the subset (anchors, block scalars, flow
 * collections other than {} and []) is -EINVAL with "FILE:LINE: why" in
 * *reterr_msg; filename is only used for that message. */
int kube_yaml_parse(const char *text, const char *filename, cJSON **ret, char **reterr_msg);

#endif
