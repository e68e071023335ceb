/* kube-config.h: where the Kubernetes client finds its server and
 * credentials: the pod's service account (in-cluster) or a kubeconfig. */
#ifndef PGLEASE_KUBE_CONFIG_H
#define PGLEASE_KUBE_CONFIG_H

#include <stddef.h>

#include "macro.h"

#define KUBE_SERVICEACCOUNT_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* A byte string decoded from a kubeconfig "-data" field (PEM text). */
struct kube_blob {
        char *data;
        size_t size;
};

struct kube_config {
        char *server;              /* "https://10.0.0.1:443", "http://127.0.0.1:8080" */
        char *namespace;           /* from the service account or the context; NULL if none */
        char *token;               /* bearer token, NULL for none */
        char *token_file;          /* re-read periodically and after a 401; NULL for a fixed token */
        char *ca_file;             /* CA bundle path, or */
        struct kube_blob ca_data;  /* certificate-authority-data; neither: the system store */
        char *cert_file;           /* client certificate (path or data) */
        struct kube_blob cert_data;
        char *key_file;            /* client key (path or data) */
        struct kube_blob key_data;
        char *source;              /* "in-cluster" or the kubeconfig path, for messages */
};

void kube_config_done(struct kube_config *c);

/* In-cluster: token, ca.crt and namespace from sa_dir (NULL: the default
 * mount), server from KUBERNETES_SERVICE_HOST/PORT, or from server_override
 * when given (tests). -ENXIO when not running in a cluster. */
int kube_config_load_incluster(const char *sa_dir, const char *server_override,
                               struct kube_config *ret, char **reterr_msg);

/* The current context of a kubeconfig (YAML or JSON, see kube-yaml.h);
 * relative file paths are taken from the kubeconfig's directory, as kubectl
 * does. A missing file is an error. */
int kube_config_load_kubeconfig(const char *path, struct kube_config *ret, char **reterr_msg);

/* The same for a kubeconfig's content text[0..size) named path (relative
 * paths in it resolve against path's directory; a tokenFile is read). */
int kube_config_from_text(const char *text, size_t size, const char *path, struct kube_config *ret,
                          char **reterr_msg);

/* The same for a $KUBECONFIG list ("a:b:c"), merged as kubectl merges it:
 * a missing file is skipped, the first file that names a cluster, context or
 * user wins for that name, current-context comes from the first file that
 * sets it, and relative paths are relative to the file of their entry. */
int kube_config_load_kubeconfig_list(const char *list, struct kube_config *ret, char **reterr_msg);

/* Decodes standard base64 (whitespace ignored); -EINVAL on bad input. */
int kube_base64_decode(const char *s, struct kube_blob *ret);

#endif
