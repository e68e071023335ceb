/* kube-config.c: where the Kubernetes client finds its server and
 * credentials: the pod's service account (in-cluster) or a kubeconfig. */
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>

#include "kube-config.h"
#include "kube-yaml.h"
#include "util.h"

static void blob_done(struct kube_blob *b) {
        free(b->data);
        *b = (struct kube_blob) {};
}

void kube_config_done(struct kube_config *c) {
        if (!c)
                return;
        free(c->server);
        free(c->namespace);
        free(c->token);
        free(c->token_file);
        free(c->ca_file);
        free(c->cert_file);
        free(c->key_file);
        free(c->source);
        blob_done(&c->ca_data);
        blob_done(&c->cert_data);
        blob_done(&c->key_data);
        *c = (struct kube_config) {};
}

static void kube_config_donep(struct kube_config *c) {
        kube_config_done(c);
}

static int base64_value(char c) {
        if (c >= 'A' && c <= 'Z')
                return c - 'A';
        if (c >= 'a' && c <= 'z')
                return c - 'a' + 26;
        if (c >= '0' && c <= '9')
                return c - '0' + 52;
        if (c == '+')
                return 62;
        if (c == '/')
                return 63;
        return -1;
}

int kube_base64_decode(const char *s, struct kube_blob *ret) {
        _cleanup_free_ char *out = malloc(strlen(s) / 4 * 3 + 4);
        size_t n = 0, pad = 0;
        unsigned acc = 0, bits = 0;

        if (!out)
                return -ENOMEM;
        for (const char *c = s; *c; c++) {
                int v;

                if (*c == ' ' || *c == '\n' || *c == '\r' || *c == '\t')
                        continue;
                if (*c == '=') {
                        pad++;
                        continue;
                }
                v = base64_value(*c);
                if (v < 0 || pad > 0)
                        return -EINVAL;
                acc = (acc << 6) | (unsigned) v;
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[n++] = (char) ((acc >> bits) & 0xff);
                }
        }
        if (pad > 2 || bits >= 6)
                return -EINVAL;
        out[n] = '\0';
        *ret = (struct kube_blob) { .data = TAKE_PTR(out), .size = n };
        return 0;
}

static int join_path(const char *dir, const char *name, char **ret) {
        char *p = strdup_printf("%s/%s", dir, name);

        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

static bool file_exists(const char *p) {
        struct stat st;

        return stat(p, &st) == 0;
}

/* Reads a one-line file, trimmed; -ENOENT also when it holds only blanks. */
static int read_trimmed(const char *path, char **ret) {
        _cleanup_free_ char *raw = NULL;
        char *s;
        int r;

        r = read_one_line_file(path, &raw);
        if (r < 0)
                return r;
        s = strstrip(raw);
        if (*s == '\0')
                return -ENOENT;
        s = strdup(s);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static char *server_from_env(void) {
        const char *host = getenv("KUBERNETES_SERVICE_HOST");
        const char *port = getenv("KUBERNETES_SERVICE_PORT");

        if (isempty(host))
                return NULL;
        if (isempty(port))
                port = "443";
        /* An IPv6 literal goes in brackets in a URL. */
        if (strchr(host, ':') && host[0] != '[')
                return strdup_printf("https://[%s]:%s", host, port);
        return strdup_printf("https://%s:%s", host, port);
}

int kube_config_load_incluster(const char *sa_dir, const char *server_override,
                               struct kube_config *ret, char **reterr_msg) {
        _cleanup_(kube_config_donep) struct kube_config c = {};
        _cleanup_free_ char *ca = NULL, *ns_file = NULL;
        int r;

        if (!sa_dir)
                sa_dir = KUBE_SERVICEACCOUNT_DIR;
        c.server = server_override ? strdup(server_override) : server_from_env();
        if (!c.server) {
                (void) set_error_msg(reterr_msg, "not in a cluster: KUBERNETES_SERVICE_HOST is not set and no kubeconfig given");
                return -ENXIO;
        }
        c.source = strdup("in-cluster");
        if (!c.source)
                return -ENOMEM;
        r = join_path(sa_dir, "token", &c.token_file);
        if (r < 0)
                return r;
        r = read_one_line_file(c.token_file, &c.token);
        if (r < 0) {
                (void) set_error_msg(reterr_msg, "%s: cannot read the service-account token: %s",
                                     c.token_file, strerror(-r));
                return r == -ENOENT ? -ENXIO : r;
        }
        r = join_path(sa_dir, "ca.crt", &ca);
        if (r < 0)
                return r;
        if (file_exists(ca))
                c.ca_file = TAKE_PTR(ca);
        r = join_path(sa_dir, "namespace", &ns_file);
        if (r < 0)
                return r;
        r = read_trimmed(ns_file, &c.namespace);
        if (r < 0 && r != -ENOENT)
                return r;
        *ret = c;
        c = (struct kube_config) {};
        return 0;
}

static const char *json_str(const cJSON *o, const char *key) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);

        return cJSON_IsString(j) ? j->valuestring : NULL;
}

/* The kubeconfig files in the order kubectl reads them. */
struct kubeconfig_file {
        char *path;
        cJSON *root;               /* an object, or NULL for an empty file */
};

struct kubeconfig_set {
        struct kubeconfig_file *files;
        size_t n;
};

static void kubeconfig_set_done(struct kubeconfig_set *s) {
        for (size_t i = 0; i < s->n; i++) {
                free(s->files[i].path);
                if (s->files[i].root)
                        cJSON_Delete(s->files[i].root);
        }
        free(s->files);
        *s = (struct kubeconfig_set) {};
}

/* Finds {"name": name, field: {...}} in a kubeconfig list: the first file
 * that defines the name wins, as kubectl merges (and relative paths in it
 * are relative to that file). */
static const cJSON *find_named(const struct kubeconfig_set *s, const char *list, const char *field,
                               const char *name, const char **ret_path) {
        for (size_t i = 0; i < s->n; i++) {
                const cJSON *item;

                cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(s->files[i].root, list)) {
                        const char *n = json_str(item, "name");

                        if (n && streq(n, name)) {
                                const cJSON *f = cJSON_GetObjectItemCaseSensitive(item, field);

                                *ret_path = s->files[i].path;
                                return cJSON_IsObject(f) ? f : NULL;
                        }
                }
        }
        return NULL;
}

/* A file path from the kubeconfig, relative to the kubeconfig's directory. */
static int resolve_path(const char *kubeconfig, const char *p, char **ret) {
        _cleanup_free_ char *copy = NULL;
        char *s;

        if (path_is_absolute(p))
                s = strdup(p);
        else {
                copy = strdup(kubeconfig);
                if (!copy)
                        return -ENOMEM;
                s = strdup_printf("%s/%s", dirname(copy), p);
        }
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* Takes "<field>-data" (base64) or "<field>" (a path) into blob or path. */
static int take_material(const char *kubeconfig, const cJSON *o, const char *field,
                         struct kube_blob *blob, char **path, char **reterr_msg) {
        _cleanup_free_ char *data_key = strdup_printf("%s-data", field);
        const char *v;
        int r;

        if (!data_key)
                return -ENOMEM;
        v = json_str(o, data_key);
        if (v) {
                r = kube_base64_decode(v, blob);
                if (r < 0)
                        (void) set_error_msg(reterr_msg, "%s: %s is not valid base64", kubeconfig, data_key);
                return r;
        }
        v = json_str(o, field);
        if (v)
                return resolve_path(kubeconfig, v, path);
        return 0;
}

static int kubeconfig_user(const char *path, const cJSON *user, struct kube_config *c, char **reterr_msg) {
        const char *v;
        int r;

        v = json_str(user, "token");
        if (v) {
                c->token = strdup(v);
                if (!c->token)
                        return -ENOMEM;
        }
        v = json_str(user, "tokenFile");
        if (v) {
                r = resolve_path(path, v, &c->token_file);
                if (r < 0)
                        return r;
                free(c->token);
                c->token = NULL;
                r = read_one_line_file(c->token_file, &c->token);
                if (r < 0) {
                        (void) set_error_msg(reterr_msg, "%s: cannot read tokenFile %s: %s",
                                             path, c->token_file, strerror(-r));
                        return r;
                }
        }
        r = take_material(path, user, "client-certificate", &c->cert_data, &c->cert_file, reterr_msg);
        if (r < 0)
                return r;
        return take_material(path, user, "client-key", &c->key_data, &c->key_file, reterr_msg);
}

/* current-context comes from the first file that sets it, as in kubectl. */
static const char *current_context(const struct kubeconfig_set *s, const char **ret_path) {
        for (size_t i = 0; i < s->n; i++) {
                const char *cur = json_str(s->files[i].root, "current-context");

                if (!isempty(cur)) {
                        *ret_path = s->files[i].path;
                        return cur;
                }
        }
        return NULL;
}

static int kubeconfig_extract(const struct kubeconfig_set *s, struct kube_config *c, char **reterr_msg) {
        const char *names = s->n > 0 ? s->files[0].path : "kubeconfig";
        const char *ctx_path = names, *cluster_path = names, *user_path = names;
        const cJSON *ctx, *cluster, *user = NULL;
        const char *cur, *v;
        int r;

        cur = current_context(s, &ctx_path);
        if (!cur) {
                (void) set_error_msg(reterr_msg, "%s: no current-context", names);
                return -EINVAL;
        }
        ctx = find_named(s, "contexts", "context", cur, &ctx_path);
        if (!ctx) {
                (void) set_error_msg(reterr_msg, "%s: context \"%s\" not found", ctx_path, cur);
                return -EINVAL;
        }
        v = json_str(ctx, "cluster");
        cluster = v ? find_named(s, "clusters", "cluster", v, &cluster_path) : NULL;
        if (!cluster || isempty(json_str(cluster, "server"))) {
                (void) set_error_msg(reterr_msg, "%s: cluster \"%s\" of context \"%s\" not found or without server",
                                     ctx_path, strempty(v), cur);
                return -EINVAL;
        }
        v = json_str(ctx, "user");
        if (v) {
                user = find_named(s, "users", "user", v, &user_path);
                if (!user) {
                        (void) set_error_msg(reterr_msg, "%s: user \"%s\" not found", ctx_path, v);
                        return -EINVAL;
                }
        }
        c->server = strdup(json_str(cluster, "server"));
        c->source = strdup(ctx_path);
        if (!c->server || !c->source)
                return -ENOMEM;
        v = json_str(ctx, "namespace");
        if (!isempty(v) && !(c->namespace = strdup(v)))
                return -ENOMEM;
        r = take_material(cluster_path, cluster, "certificate-authority", &c->ca_data, &c->ca_file, reterr_msg);
        if (r < 0)
                return r;
        return user ? kubeconfig_user(user_path, user, c, reterr_msg) : 0;
}

/* Adds one file's content to the set. */
static int kubeconfig_set_add_text(struct kubeconfig_set *s, const char *path, const char *text, size_t size,
                                   char **reterr_msg) {
        _cleanup_(cjson_deletep) cJSON *root = NULL;
        _cleanup_free_ char *copy = NULL;
        struct kubeconfig_file *files;
        int r;

        r = kube_yaml_parse(text, size, path, &root, reterr_msg);
        if (r < 0)
                return r;
        if (cJSON_IsNull(root))
                cjson_deletep(&root);  /* an empty file adds nothing */
        else if (!cJSON_IsObject(root)) {
                (void) set_error_msg(reterr_msg, "%s: not a kubeconfig (top level is not a mapping)", path);
                return -EINVAL;
        }
        copy = strdup(path);
        if (!copy)
                return -ENOMEM;
        files = realloc(s->files, (s->n + 1) * sizeof(*files));
        if (!files)
                return -ENOMEM;
        s->files = files;
        s->files[s->n++] = (struct kubeconfig_file) { TAKE_PTR(copy), TAKE_PTR(root) };
        return 0;
}

/* Reads one file into the set. A missing file is -ENOENT (without a
 * message) so that the $KUBECONFIG list can skip it as kubectl does. */
static int kubeconfig_set_add(struct kubeconfig_set *s, const char *path, char **reterr_msg) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        int r;

        for (size_t i = 0; i < s->n; i++)
                if (streq(s->files[i].path, path))
                        return 0;  /* kubectl reads a file listed twice once */
        r = read_full_file(path, &text, &size);
        if (r == -ENOENT)
                return r;
        if (r < 0) {
                (void) set_error_msg(reterr_msg, "%s: %s", path, r == -EISDIR ? "is a directory" : strerror(-r));
                return r;
        }
        return kubeconfig_set_add_text(s, path, text, size, reterr_msg);
}

static int kubeconfig_set_finish(struct kubeconfig_set *s, struct kube_config *ret, char **reterr_msg) {
        struct kube_config c = {};
        int r;

        r = kubeconfig_extract(s, &c, reterr_msg);
        if (r < 0) {
                kube_config_done(&c);
                return r;
        }
        *ret = c;
        return 0;
}

int kube_config_load_kubeconfig(const char *path, struct kube_config *ret, char **reterr_msg) {
        _cleanup_(kubeconfig_set_done) struct kubeconfig_set s = {};
        int r;

        r = kubeconfig_set_add(&s, path, reterr_msg);
        if (r == -ENOENT)
                (void) set_error_msg(reterr_msg, "%s: %s", path, strerror(-r));
        if (r < 0)
                return r;
        return kubeconfig_set_finish(&s, ret, reterr_msg);
}

int kube_config_from_text(const char *text, size_t size, const char *path, struct kube_config *ret,
                          char **reterr_msg) {
        _cleanup_(kubeconfig_set_done) struct kubeconfig_set s = {};
        int r;

        r = kubeconfig_set_add_text(&s, path, text, size, reterr_msg);
        if (r < 0)
                return r;
        return kubeconfig_set_finish(&s, ret, reterr_msg);
}

int kube_config_load_kubeconfig_list(const char *list, struct kube_config *ret, char **reterr_msg) {
        _cleanup_(kubeconfig_set_done) struct kubeconfig_set s = {};
        _cleanup_free_ char *copy = strdup(list);
        char *save = NULL;
        bool any = false;
        int r;

        if (!copy)
                return -ENOMEM;
        for (char *p = strtok_r(copy, ":", &save); p; p = strtok_r(NULL, ":", &save)) {
                r = kubeconfig_set_add(&s, p, reterr_msg);
                if (r == -ENOENT)
                        continue;  /* kubectl skips a missing file in the list */
                if (r < 0)
                        return r;
                any = true;
        }
        if (!any) {
                (void) set_error_msg(reterr_msg, "KUBECONFIG=%s: none of its files exists", list);
                return -ENOENT;
        }
        return kubeconfig_set_finish(&s, ret, reterr_msg);
}
