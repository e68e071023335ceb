/* kube-yaml.h: reads a kubeconfig's YAML (all of YAML 1.1, through libyaml)
 * into a cJSON tree, with the rules kubectl applies to the same file. */
#ifndef PGLEASE_KUBE_YAML_H
#define PGLEASE_KUBE_YAML_H

#include <stddef.h>

#include <cjson/cJSON.h>

#include "macro.h"

/* Deeper than any kubeconfig (5 levels) by far, and shallow enough that
 * nothing that walks the tree afterwards recurses dangerously. */
#define KUBE_YAML_MAX_DEPTH 64
/* Scalars and collections in the tree, aliases counted at their expanded
 * size: bounds the "billion laughs" alias bomb. */
#define KUBE_YAML_MAX_NODES 100000

static inline void cjson_deletep(cJSON **j) {
        if (*j)
                cJSON_Delete(*j);
        *j = NULL;
}

/* Parses the first YAML document of text[0..size) into a cJSON tree (every
 * scalar a string; plain "null", "~" or empty a JSON null), as kubectl does:
 * later documents are not read, a duplicate mapping key is an error, "<<"
 * merges a mapping. Invalid YAML, a key that is not a scalar, nesting deeper
 * than KUBE_YAML_MAX_DEPTH or more than KUBE_YAML_MAX_NODES nodes is -EINVAL
 * with "FILE:LINE: why" in *reterr_msg; filename is only for that message.
 * An empty document is a JSON null. */
int kube_yaml_parse(const char *text, size_t size, const char *filename, cJSON **ret, char **reterr_msg);

#endif
