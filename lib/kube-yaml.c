/* kube-yaml.c: reads a kubeconfig's YAML (all of YAML 1.1, through libyaml)
 * into a cJSON tree, with the rules kubectl applies to the same file. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <yaml.h>

#include "kube-yaml.h"
#include "util.h"

/* An open collection. The node is already attached to its parent (or is the
 * root), so that an error anywhere frees the whole tree at once. */
struct yaml_frame {
        cJSON *node;
        char *key;                  /* a mapping's key waiting for its value */
        bool key_is_merge;          /* that key is the plain "<<" */
        char *anchor;               /* "&name" on this collection */
        size_t nodes_at_start;
        const cJSON **merges;       /* "<<" values, applied at the end */
        size_t n_merges;
};

struct yaml_anchor {
        char *name;
        const cJSON *node;          /* in the tree or in detached */
        size_t nodes;               /* its size, for the alias budget */
};

struct yaml_reader {
        const char *filename;
        char **reterr_msg;
        cJSON *root;
        cJSON *detached;            /* "<<" values: kept for aliases */
        struct yaml_frame stack[KUBE_YAML_MAX_DEPTH];
        size_t depth;
        struct yaml_anchor *anchors;
        size_t n_anchors;
        size_t nodes;
        bool done;
};

static int reader_error(struct yaml_reader *p, const yaml_event_t *e, const char *fmt, ...) _printf_(3, 4);
static int reader_error(struct yaml_reader *p, const yaml_event_t *e, const char *fmt, ...) {
        _cleanup_free_ char *why = NULL;
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&why, fmt, ap) < 0)
                why = NULL;
        va_end(ap);
        (void) set_error_msg(p->reterr_msg, "%s:%zu: %s", strempty(p->filename),
                             (size_t) e->start_mark.line + 1, why ?: "out of memory");
        return -EINVAL;
}

static void reader_done(struct yaml_reader *p) {
        for (size_t i = 0; i < p->depth; i++) {
                free(p->stack[i].key);
                free(p->stack[i].anchor);
                free(p->stack[i].merges);
        }
        for (size_t i = 0; i < p->n_anchors; i++)
                free(p->anchors[i].name);
        free(p->anchors);
        if (p->root)
                cJSON_Delete(p->root);
        if (p->detached)
                cJSON_Delete(p->detached);
}

/* A later anchor of the same name replaces the earlier one (YAML 1.1). */
static int anchor_set(struct yaml_reader *p, const char *name, const cJSON *node, size_t nodes) {
        struct yaml_anchor *a;
        char *n;

        for (size_t i = 0; i < p->n_anchors; i++)
                if (streq(p->anchors[i].name, name)) {
                        p->anchors[i].node = node;
                        p->anchors[i].nodes = nodes;
                        return 0;
                }
        n = strdup(name);
        if (!n)
                return -ENOMEM;
        a = realloc(p->anchors, (p->n_anchors + 1) * sizeof(*a));
        if (!a) {
                free(n);
                return -ENOMEM;
        }
        p->anchors = a;
        p->anchors[p->n_anchors++] = (struct yaml_anchor) { n, node, nodes };
        return 0;
}

static const struct yaml_anchor *anchor_get(const struct yaml_reader *p, const char *name) {
        for (size_t i = p->n_anchors; i > 0; i--)
                if (streq(p->anchors[i - 1].name, name))
                        return &p->anchors[i - 1];
        return NULL;
}

/* Levels of collections in n: 0 for a scalar. Every node of the tree is at
 * most KUBE_YAML_MAX_DEPTH deep (checked on insertion), so this recursion
 * is bounded too. */
static size_t json_height(const cJSON *n) {
        const cJSON *child;
        size_t h = 0;

        if (!cJSON_IsArray(n) && !cJSON_IsObject(n))
                return 0;
        cJSON_ArrayForEach(child, n) {
                /* Not inside MAX(), which evaluates its arguments twice. */
                size_t c = json_height(child);

                h = MAX(h, c);
        }
        return h + 1;
}

/* Nodes in n, itself included (bounded recursion as above). */
static size_t json_nodes(const cJSON *n) {
        const cJSON *child;
        size_t k = 1;

        cJSON_ArrayForEach(child, n)
                k += json_nodes(child);
        return k;
}

/* A copy of n (an alias, a merged value) placed under the open collections
 * must not take the tree past KUBE_YAML_MAX_DEPTH: chained anchors would
 * grow it without bound otherwise. */
static int check_copy_depth(struct yaml_reader *p, const yaml_event_t *e, const cJSON *n) {
        if (p->depth + json_height(n) > KUBE_YAML_MAX_DEPTH)
                return reader_error(p, e, "nested deeper than %d levels", KUBE_YAML_MAX_DEPTH);
        return 0;
}

static int count_nodes(struct yaml_reader *p, const yaml_event_t *e, size_t n) {
        if (n > KUBE_YAML_MAX_NODES - p->nodes)
                return reader_error(p, e, "more than %d nodes (aliases counted expanded)", KUBE_YAML_MAX_NODES);
        p->nodes += n;
        return 0;
}

static int add_merge_source(struct yaml_frame *f, const cJSON *src) {
        const cJSON **m = realloc(f->merges, (f->n_merges + 1) * sizeof(*m));

        if (!m)
                return -ENOMEM;
        f->merges = m;
        f->merges[f->n_merges++] = src;
        return 0;
}

/* Hangs v (owned) under the innermost open collection, or makes it the root. */
static int attach(struct yaml_reader *p, const yaml_event_t *e, cJSON *v) {
        struct yaml_frame *f;
        _cleanup_free_ char *key = NULL;

        if (p->depth == 0) {
                p->root = v;
                return 0;
        }
        f = &p->stack[p->depth - 1];
        if (cJSON_IsArray(f->node)) {
                cJSON_AddItemToArray(f->node, v);
                return 0;
        }
        key = TAKE_PTR(f->key);
        if (f->key_is_merge) {
                f->key_is_merge = false;
                /* Attached before it is read, so that an error frees it. */
                cJSON_AddItemToArray(p->detached, v);
                return add_merge_source(f, v);
        }
        cJSON_AddItemToObject(f->node, key, v);
        return 0;
}

static int take_key(struct yaml_reader *p, const yaml_event_t *e, struct yaml_frame *f, const char *key, bool merge) {
        if (merge) {
                f->key_is_merge = true;
                f->key = strdup("<<");
                return f->key ? 0 : -ENOMEM;
        }
        if (cJSON_GetObjectItemCaseSensitive(f->node, key))
                return reader_error(p, e, "duplicate key \"%s\"", key);
        f->key = strdup(key);
        return f->key ? 0 : -ENOMEM;
}

static bool expects_key(const struct yaml_reader *p) {
        const struct yaml_frame *f;

        if (p->depth == 0)
                return false;
        f = &p->stack[p->depth - 1];
        return cJSON_IsObject(f->node) && !f->key;
}

static bool is_null_scalar(const yaml_event_t *e) {
        const char *v = (const char *) e->data.scalar.value;

        if (e->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
                return false;
        return streq(v, "") || streq(v, "~") || streq(v, "null") || streq(v, "Null") || streq(v, "NULL");
}

static int on_scalar(struct yaml_reader *p, const yaml_event_t *e) {
        const char *v = (const char *) e->data.scalar.value;
        cJSON *node;
        int r;

        if (strlen(v) != e->data.scalar.length)
                return reader_error(p, e, "NUL character in a scalar");
        if (expects_key(p))
                return take_key(p, e, &p->stack[p->depth - 1], v,
                                e->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && streq(v, "<<"));
        r = count_nodes(p, e, 1);
        if (r < 0)
                return r;
        node = is_null_scalar(e) ? cJSON_CreateNull() : cJSON_CreateString(v);
        if (!node)
                return -ENOMEM;
        if (e->data.scalar.anchor) {
                r = anchor_set(p, (const char *) e->data.scalar.anchor, node, 1);
                if (r < 0) {
                        cJSON_Delete(node);
                        return r;
                }
        }
        return attach(p, e, node);
}

static int on_alias(struct yaml_reader *p, const yaml_event_t *e) {
        const char *name = (const char *) e->data.alias.anchor;
        const struct yaml_anchor *a = anchor_get(p, name);
        cJSON *copy;
        int r;

        if (!a)
                return reader_error(p, e, "unknown alias \"*%s\"", name);
        if (expects_key(p)) {
                if (!cJSON_IsString(a->node))
                        return reader_error(p, e, "alias \"*%s\" as a key is not a string", name);
                return take_key(p, e, &p->stack[p->depth - 1], a->node->valuestring, false);
        }
        r = count_nodes(p, e, a->nodes);
        if (r < 0)
                return r;
        r = check_copy_depth(p, e, a->node);
        if (r < 0)
                return r;
        copy = cJSON_Duplicate(a->node, true);
        if (!copy)
                return -ENOMEM;
        return attach(p, e, copy);
}

static int on_collection_start(struct yaml_reader *p, const yaml_event_t *e, bool mapping) {
        const yaml_char_t *anchor = mapping ? e->data.mapping_start.anchor : e->data.sequence_start.anchor;
        struct yaml_frame *f;
        cJSON *node;
        int r;

        if (expects_key(p))
                return reader_error(p, e, "a mapping key is not a scalar");
        if (p->depth >= KUBE_YAML_MAX_DEPTH)
                return reader_error(p, e, "nested deeper than %d levels", KUBE_YAML_MAX_DEPTH);
        r = count_nodes(p, e, 1);
        if (r < 0)
                return r;
        node = mapping ? cJSON_CreateObject() : cJSON_CreateArray();
        if (!node)
                return -ENOMEM;
        f = &p->stack[p->depth];
        *f = (struct yaml_frame) { .node = node, .nodes_at_start = p->nodes };
        if (anchor && !(f->anchor = strdup((const char *) anchor))) {
                cJSON_Delete(node);
                return -ENOMEM;
        }
        /* Attach before pushing: the parent frame takes it. */
        r = attach(p, e, node);
        p->depth++;
        return r;
}

static int merge_mapping(struct yaml_reader *p, const yaml_event_t *e, cJSON *into, const cJSON *src) {
        const cJSON *item;

        if (!cJSON_IsObject(src))
                return reader_error(p, e, "the value of \"<<\" is not a mapping or a list of mappings");
        cJSON_ArrayForEach(item, src) {
                cJSON *copy;
                int r;

                if (cJSON_GetObjectItemCaseSensitive(into, item->string))
                        continue;
                r = count_nodes(p, e, json_nodes(item));
                if (r < 0)
                        return r;
                r = check_copy_depth(p, e, item);
                if (r < 0)
                        return r;
                copy = cJSON_Duplicate(item, true);
                if (!copy)
                        return -ENOMEM;
                cJSON_AddItemToObject(into, item->string, copy);
        }
        return 0;
}

/* Keys from "<<" values (a mapping, or a list of them where earlier ones
 * win) that the mapping does not set itself, as YAML 1.1 merge keys. */
static int apply_merges(struct yaml_reader *p, const yaml_event_t *e, struct yaml_frame *f) {
        for (size_t i = 0; i < f->n_merges; i++) {
                const cJSON *v = f->merges[i], *item;
                int r;

                if (!cJSON_IsArray(v)) {
                        r = merge_mapping(p, e, f->node, v);
                        if (r < 0)
                                return r;
                        continue;
                }
                cJSON_ArrayForEach(item, v) {
                        r = merge_mapping(p, e, f->node, item);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int on_collection_end(struct yaml_reader *p, const yaml_event_t *e) {
        struct yaml_frame *f = &p->stack[p->depth - 1];
        int r = 0;

        if (f->n_merges > 0)
                r = apply_merges(p, e, f);
        if (r >= 0 && f->anchor)
                r = anchor_set(p, f->anchor, f->node, p->nodes - f->nodes_at_start + 1);
        free(f->key);
        free(f->anchor);
        free(f->merges);
        p->depth--;
        return r;
}

static int on_event(struct yaml_reader *p, const yaml_event_t *e) {
        switch (e->type) {
        case YAML_SCALAR_EVENT:
                return on_scalar(p, e);
        case YAML_ALIAS_EVENT:
                return on_alias(p, e);
        case YAML_MAPPING_START_EVENT:
        case YAML_SEQUENCE_START_EVENT:
                return on_collection_start(p, e, e->type == YAML_MAPPING_START_EVENT);
        case YAML_MAPPING_END_EVENT:
        case YAML_SEQUENCE_END_EVENT:
                return on_collection_end(p, e);
        case YAML_DOCUMENT_END_EVENT:
        case YAML_STREAM_END_EVENT:
                /* kubectl reads the first document only. */
                p->done = true;
                return 0;
        default:
                return 0;
        }
}

static int parser_error(struct yaml_reader *p, const yaml_parser_t *y) {
        const yaml_mark_t *m = y->problem ? &y->problem_mark : &y->context_mark;

        if (y->error == YAML_MEMORY_ERROR)
                return -ENOMEM;
        (void) set_error_msg(p->reterr_msg, "%s:%zu: %s%s%s", strempty(p->filename), (size_t) m->line + 1,
                             y->problem ?: "invalid YAML", y->context ? " " : "", strempty(y->context));
        return -EINVAL;
}

static void yaml_parser_deletep(yaml_parser_t *y) {
        yaml_parser_delete(y);
}

int kube_yaml_parse(const char *text, size_t size, const char *filename, cJSON **ret, char **reterr_msg) {
        _cleanup_(reader_done) struct yaml_reader p = { .filename = filename, .reterr_msg = reterr_msg };
        _cleanup_(yaml_parser_deletep) yaml_parser_t y = {};
        int r = 0;

        if (!yaml_parser_initialize(&y))
                return -ENOMEM;
        p.detached = cJSON_CreateArray();
        if (!p.detached)
                return -ENOMEM;
        yaml_parser_set_input_string(&y, (const unsigned char *) text, size);
        while (!p.done) {
                yaml_event_t e;

                if (!yaml_parser_parse(&y, &e))
                        return parser_error(&p, &y);
                r = on_event(&p, &e);
                yaml_event_delete(&e);
                if (r < 0)
                        return r;
        }
        if (!p.root) {
                p.root = cJSON_CreateNull();
                if (!p.root)
                        return -ENOMEM;
        }
        *ret = TAKE_PTR(p.root);
        return 0;
}
