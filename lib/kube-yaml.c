/* kube-yaml.c: a reader for the subset of YAML that kubectl writes in a
 * kubeconfig (block mappings and sequences, plain and quoted scalars). */
#include <string.h>

#include "kube-yaml.h"
#include "util.h"

struct yaml_line {
        size_t indent;
        char *text;              /* points into the parser's copy of the input */
        unsigned lineno;
};

struct yaml_parser {
        const char *filename;
        struct yaml_line *lines;
        size_t n, i;
        char **reterr_msg;
};

static int yaml_error(struct yaml_parser *p, unsigned lineno, const char *why) {
        (void) set_error_msg(p->reterr_msg, "%s:%u: %s", strempty(p->filename), lineno, why);
        return -EINVAL;
}

/* Cuts a comment off a line: '#' at the start or after a blank, outside quotes. */
static void strip_comment(char *s) {
        char quote = 0;

        for (char *c = s; *c; c++) {
                if (quote) {
                        if (quote == '"' && *c == '\\' && c[1])
                                c++;
                        else if (*c == quote)
                                quote = 0;
                } else if ((*c == '"' || *c == '\'') && (c == s || c[-1] == ' '))
                        quote = *c;
                else if (*c == '#' && (c == s || c[-1] == ' ' || c[-1] == '\t')) {
                        *c = '\0';
                        return;
                }
        }
}

static int split_lines(struct yaml_parser *p, char *copy) {
        unsigned lineno = 0;
        char *save = NULL;

        for (char *line = copy; line; line = save) {
                struct yaml_line *nl;
                char *e;
                size_t indent = 0;

                lineno++;
                save = strchr(line, '\n');
                if (save)
                        *save++ = '\0';
                strip_comment(line);
                e = line + strlen(line);
                while (e > line && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
                        *--e = '\0';
                while (line[indent] == ' ')
                        indent++;
                if (line[indent] == '\0')
                        continue;
                if (line[indent] == '\t')
                        return yaml_error(p, lineno, "tab in indentation");
                if (indent == 0 && (streq(line, "---") || streq(line, "...")))
                        continue;
                nl = realloc(p->lines, (p->n + 1) * sizeof(*nl));
                if (!nl)
                        return -ENOMEM;
                p->lines = nl;
                p->lines[p->n++] = (struct yaml_line) { indent, line + indent, lineno };
        }
        return 0;
}

static bool is_seq_item(const char *t) {
        return t[0] == '-' && (t[1] == '\0' || t[1] == ' ');
}

/* Unquotes a quoted scalar in place; *end is set after the closing quote. */
static int unquote(char *s, char **end) {
        char q = s[0], *w = s;

        for (char *r = s + 1; *r; r++) {
                if (q == '\'' && *r == '\'') {
                        if (r[1] == '\'') {
                                *w++ = '\'';
                                r++;
                                continue;
                        }
                        *w = '\0';
                        *end = r + 1;
                        return 0;
                }
                if (q == '"' && *r == '"') {
                        *w = '\0';
                        *end = r + 1;
                        return 0;
                }
                if (q == '"' && *r == '\\') {
                        static const char from[] = "\\\"/nt0", to[] = "\\\"/\n\t";

                        const char *f = r[1] ? strchr(from, r[1]) : NULL;
                        if (!f || *f == '0')
                                return -EINVAL;
                        *w++ = to[f - from];
                        r++;
                        continue;
                }
                *w++ = *r;
        }
        return -EINVAL;
}

static int parse_scalar(struct yaml_parser *p, char *s, unsigned lineno, cJSON **ret) {
        cJSON *j;

        if (s[0] == '"' || s[0] == '\'') {
                char *end;

                if (unquote(s, &end) < 0)
                        return yaml_error(p, lineno, "unterminated or invalid quoted string");
                while (*end == ' ')
                        end++;
                if (*end)
                        return yaml_error(p, lineno, "text after a quoted string");
                j = cJSON_CreateString(s);
        } else if (streq(s, "{}"))
                j = cJSON_CreateObject();
        else if (streq(s, "[]"))
                j = cJSON_CreateArray();
        else if (strchr("{[&*!|>%@`", s[0]))
                return yaml_error(p, lineno, "unsupported YAML (flow collection, anchor, tag or block scalar)");
        else if (streq(s, "~") || streq(s, "null") || streq(s, "Null") || streq(s, "NULL"))
                j = cJSON_CreateNull();
        else
                j = cJSON_CreateString(s);
        if (!j)
                return -ENOMEM;
        *ret = j;
        return 0;
}

static int parse_block(struct yaml_parser *p, size_t indent, cJSON **ret);

/* The value of "key:" with nothing after the colon: a nested block below it
 * (a sequence may sit at the key's own indentation, as kubectl writes it). */
static int parse_nested(struct yaml_parser *p, size_t indent, cJSON **ret) {
        struct yaml_line *next = p->i < p->n ? &p->lines[p->i] : NULL;
        cJSON *j;

        if (next && (next->indent > indent || (next->indent == indent && is_seq_item(next->text))))
                return parse_block(p, next->indent, ret);
        j = cJSON_CreateNull();
        if (!j)
                return -ENOMEM;
        *ret = j;
        return 0;
}

/* Splits "key: value" in place; returns the value (maybe "") or NULL. */
static char *split_key(char *t, char **ret_key) {
        char *colon;

        if (t[0] == '"' || t[0] == '\'') {
                char *end;

                if (unquote(t, &end) < 0 || *end != ':')
                        return NULL;
                colon = end;
        } else {
                colon = strstr(t, ": ");
                if (!colon) {
                        size_t l = strlen(t);
                        if (l == 0 || t[l - 1] != ':')
                                return NULL;
                        colon = t + l - 1;
                }
        }
        *colon = '\0';
        *ret_key = t;
        colon++;
        while (*colon == ' ')
                colon++;
        return colon;
}

static int parse_map(struct yaml_parser *p, size_t indent, cJSON **ret) {
        _cleanup_(cjson_deletep) cJSON *obj = cJSON_CreateObject();

        if (!obj)
                return -ENOMEM;
        while (p->i < p->n && p->lines[p->i].indent == indent) {
                struct yaml_line *l = &p->lines[p->i];
                cJSON *child = NULL;
                char *key, *value;
                int r;

                if (is_seq_item(l->text))
                        return yaml_error(p, l->lineno, "sequence item where a key was expected");
                value = split_key(l->text, &key);
                if (!value)
                        return yaml_error(p, l->lineno, "expected \"key: value\"");
                p->i++;
                r = *value ? parse_scalar(p, value, l->lineno, &child) : parse_nested(p, indent, &child);
                if (r < 0)
                        return r;
                cJSON_DeleteItemFromObjectCaseSensitive(obj, key);
                cJSON_AddItemToObject(obj, key, child);
        }
        if (p->i < p->n && p->lines[p->i].indent > indent)
                return yaml_error(p, p->lines[p->i].lineno, "unexpected indentation");
        *ret = TAKE_PTR(obj);
        return 0;
}

static int parse_seq(struct yaml_parser *p, size_t indent, cJSON **ret) {
        _cleanup_(cjson_deletep) cJSON *arr = cJSON_CreateArray();

        if (!arr)
                return -ENOMEM;
        while (p->i < p->n && p->lines[p->i].indent == indent && is_seq_item(p->lines[p->i].text)) {
                struct yaml_line *l = &p->lines[p->i];
                cJSON *child = NULL;
                int r;

                if (l->text[1] == '\0') {
                        p->i++;
                        r = parse_nested(p, indent + 1, &child);
                } else {
                        /* "- key: value": the item starts after the dash, and its
                         * following lines are indented to that column. */
                        size_t skip = 1;

                        while (l->text[skip] == ' ')
                                skip++;
                        l->text += skip;
                        l->indent += skip;
                        r = parse_block(p, l->indent, &child);
                }
                if (r < 0)
                        return r;
                cJSON_AddItemToArray(arr, child);
        }
        if (p->i < p->n && p->lines[p->i].indent > indent)
                return yaml_error(p, p->lines[p->i].lineno, "unexpected indentation");
        *ret = TAKE_PTR(arr);
        return 0;
}

/* Whether a line is "key: value" or "key:", without changing it. */
static bool looks_like_key(const char *t) {
        size_t l = strlen(t);

        if (t[0] == '"' || t[0] == '\'') {
                for (const char *c = t + 1; *c; c++) {
                        if (t[0] == '"' && *c == '\\' && c[1]) {
                                c++;
                                continue;
                        }
                        if (*c == t[0]) {
                                if (t[0] == '\'' && c[1] == '\'') {
                                        c++;
                                        continue;
                                }
                                return c[1] == ':' && (c[2] == '\0' || c[2] == ' ');
                        }
                }
                return false;
        }
        return strstr(t, ": ") || (l > 0 && t[l - 1] == ':');
}

static int parse_block(struct yaml_parser *p, size_t indent, cJSON **ret) {
        struct yaml_line *l = &p->lines[p->i];

        if (is_seq_item(l->text))
                return parse_seq(p, indent, ret);
        if (looks_like_key(l->text))
                return parse_map(p, indent, ret);
        p->i++;
        return parse_scalar(p, l->text, l->lineno, ret);
}

int kube_yaml_parse(const char *text, const char *filename, cJSON **ret, char **reterr_msg) {
        _cleanup_free_ char *copy = strdup(text ? text : "");
        _cleanup_(cjson_deletep) cJSON *root = NULL;
        struct yaml_parser p = { .filename = filename, .reterr_msg = reterr_msg };
        int r;

        if (!copy)
                return -ENOMEM;
        r = split_lines(&p, copy);
        if (r < 0)
                goto out;
        if (p.n == 0) {
                r = yaml_error(&p, 1, "empty document");
                goto out;
        }
        r = parse_block(&p, p.lines[0].indent, &root);
        if (r < 0)
                goto out;
        if (p.i < p.n) {
                r = yaml_error(&p, p.lines[p.i].lineno, "unexpected content");
                goto out;
        }
        *ret = TAKE_PTR(root);
out:
        free(p.lines);
        return r;
}
