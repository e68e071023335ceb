/* clusterview.c: the lease and member records turned into the rows and
 * warnings of `agentctl cluster show`, and their table and JSON forms. No
 * I/O: the caller gathers the records; tests give fixed ones. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clusterview.h"
#include "util.h"

/* A member whose record has not been rewritten for this many status
 * intervals is shown as having no heartbeat. */
#define HEARTBEAT_INTERVALS 3

static inline void json_deletep(cJSON **j) {
        if (*j)
                cJSON_Delete(*j);
}

char *clusterview_format_bytes(uint64_t bytes) {
        static const char *const units[] = { "B", "KiB", "MiB", "GiB", "TiB" };
        double v = (double) bytes;
        size_t u = 0;

        if (bytes < 1024)
                return strdup_printf("%" PRIu64 " B", bytes);
        while (v >= 1024 && u + 1 < ELEMENTSOF(units)) {
                v /= 1024;
                u++;
        }
        return strdup_printf("%.1f %s", v, units[u]);
}

struct clusterview *clusterview_free(struct clusterview *v) {
        if (!v)
                return NULL;
        for (size_t i = 0; i < v->n; i++) {
                struct clusterview_row *r = &v->rows[i];

                free(r->name);
                free(r->role);
                free(r->status);
                strv_free(r->tags);
                free(r->host);
        }
        free(v->rows);
        free(v->cluster);
        free(v->source);
        free(v->holder);
        strv_free(v->sync);
        free(v->switchover);
        strv_free(v->warnings);
        free(v);
        return NULL;
}

static int strdup_or_null(const char *s, char **ret) {
        *ret = s ? strdup(s) : NULL;
        return s && !*ret ? -ENOMEM : 0;
}

static int strv_copy(char *const *l, char ***ret) {
        char **c = NULL;

        for (; l && *l; l++)
                if (strv_extend(&c, *l) < 0) {
                        strv_free(c);
                        return -ENOMEM;
                }
        *ret = c;
        return 0;
}

static int warn(struct clusterview *v, const char *fmt, ...) _printf_(2, 3);
static int warn(struct clusterview *v, const char *fmt, ...) {
        _cleanup_free_ char *s = NULL;
        va_list ap;
        int k;

        va_start(ap, fmt);
        k = vasprintf(&s, fmt, ap);
        va_end(ap);
        if (k < 0)
                return -ENOMEM;
        return strv_extend(&v->warnings, s);
}

static int row_from_member(const struct clusterview_source *src, size_t i, struct clusterview_row *r) {
        const struct dcs_member *m = &src->members->members[i];
        const struct clusterview_probe *p = src->probes ? &src->probes[i] : NULL;
        const char *role = member_role_to_string(m->role);

        *r = (struct clusterview_row) {
                .leader = src->lease && src->lease->holder && streq(src->lease->holder, m->name),
                .timeline = m->timeline,
                .lsn = m->lsn,
                .replay_lsn = m->replay_lsn,
                .lag_seconds = -1,
                .priority = m->priority,
                .nofailover = m->nofailover,
                .port = m->port ? m->port : 5432,
                .heartbeat_age = -1,
                .reachable = -1,
        };
        if (m->heartbeat > 0 && src->now_realtime > 0)
                r->heartbeat_age = src->now_realtime > m->heartbeat ? (double) (src->now_realtime - m->heartbeat) / USEC_PER_SEC : 0;
        if (p && p->probed) {
                r->reachable = p->reachable;
                if (p->reachable) {
                        /* What the server says now beats what its record said. */
                        role = p->in_recovery ? "replica" : "primary";
                        r->timeline = p->timeline;
                        r->lsn = p->lsn;
                        r->replay_lsn = p->replay_lsn;
                        r->lag_seconds = p->in_recovery ? p->lag_seconds : 0;
                }
        }
        if (strdup_or_null(m->name, &r->name) < 0 || strdup_or_null(role ? role : "unknown", &r->role) < 0 ||
            strdup_or_null(m->host ? m->host : "", &r->host) < 0 || strv_split_comma(m->tags, &r->tags) < 0)
                return -ENOMEM;
        /* Issue 19, item 2: a member silent for longer than the lease
         * duration (and not answering live) is not what its last record
         * says: never shown as a (second) primary. */
        if (r->reachable != 1 && src->lease_duration > 0 &&
            (r->heartbeat_age < 0 || r->heartbeat_age > (double) src->lease_duration / USEC_PER_SEC)) {
                free(r->role);
                r->role = strdup("unknown");
                r->status = strdup(r->reachable == 0 ? "stopped" : "no heartbeat");
                return r->role && r->status ? 0 : -ENOMEM;
        }
        if (r->reachable == 0)
                r->status = strdup("unreachable");
        else if (r->heartbeat_age < 0 || (src->status_interval > 0 &&
                                          r->heartbeat_age > (double) (HEARTBEAT_INTERVALS * src->status_interval) / USEC_PER_SEC))
                r->status = strdup("no heartbeat");
        else
                r->status = strdup(m->state ? m->state : "unknown");
        return r->status ? 0 : -ENOMEM;
}

/* Lag is measured against the primary's LSN (issue 19, item 1): read live
 * when it answered (agentctl reads it after every standby, so no standby
 * can look ahead of it), else its record's, else the optime it last
 * published. A lag that mixes a record in is marked stale. */
static void compute_lag(struct clusterview *v) {
        const struct clusterview_row *primary = NULL;
        uint64_t ref = v->optime_lsn;
        bool ref_live = false;

        for (size_t i = 0; i < v->n; i++)
                if (streq(v->rows[i].role, "primary") && v->rows[i].lsn > 0 && (!primary || v->rows[i].leader))
                        primary = &v->rows[i];
        if (primary) {
                ref = primary->lsn;
                ref_live = primary->reachable == 1;
        }
        for (size_t i = 0; i < v->n; i++) {
                struct clusterview_row *r = &v->rows[i];

                if (r == primary) {
                        r->has_lag = true;
                        r->lag_bytes = 0;
                        r->lag_seconds = 0;
                        r->stale = !ref_live;
                } else if (ref > 0 && r->lsn > 0 && !streq(r->role, "unknown")) {
                        r->has_lag = true;
                        r->lag_bytes = ref > r->lsn ? ref - r->lsn : 0;
                        r->stale = !ref_live || r->reachable != 1;
                        if (r->stale)
                                r->lag_seconds = -1;
                }
        }
}

static int add_warnings(const struct clusterview_source *src, struct clusterview *v) {
        _cleanup_free_ char *primaries = NULL;
        size_t n_primaries = 0;

        if (!v->lease_known && warn(v, "the leader lease could not be read") < 0)
                return -ENOMEM;
        if (v->lease_known && isempty(v->holder) && warn(v, "nobody holds the leader lease") < 0)
                return -ENOMEM;
        for (size_t i = 0; i < v->n; i++) {
                const struct clusterview_row *r = &v->rows[i];

                if (streq(r->role, "primary") && streq(r->status, "running")) {
                        char *p = strdup_printf("%s%s%s", strempty(primaries), primaries ? ", " : "", r->name);

                        if (!p)
                                return -ENOMEM;
                        free(primaries);
                        primaries = p;
                        n_primaries++;
                }
                if (r->reachable == 0 && warn(v, "%s: PostgreSQL unreachable at %s:%d", r->name, r->host, r->port) < 0)
                        return -ENOMEM;
                if (r->reachable != 0 && streq(r->status, "no heartbeat")) {
                        _cleanup_free_ char *si = format_duration(src->status_interval);
                        int k = r->heartbeat_age < 0 ? warn(v, "%s: its member record has no heartbeat", r->name)
                                                     : warn(v, "%s: no heartbeat for %.0f s (more than %d x status_interval %s)", r->name,
                                                            r->heartbeat_age, HEARTBEAT_INTERVALS, strempty(si));
                        if (k < 0)
                                return -ENOMEM;
                }
                if (r->has_lag && !r->leader && src->maximum_lag > 0 && r->lag_bytes > src->maximum_lag) {
                        _cleanup_free_ char *lag = clusterview_format_bytes(r->lag_bytes), *max = clusterview_format_bytes(src->maximum_lag);

                        if (warn(v, "%s: lag %s is over maximum_lag_on_failover (%s): it would not be promoted", r->name,
                                 strempty(lag), strempty(max)) < 0)
                                return -ENOMEM;
                }
        }
        if (n_primaries > 1 && warn(v, "%zu primaries seen: %s", n_primaries, primaries) < 0)
                return -ENOMEM;
        return 0;
}

static int compare_rows(const void *a, const void *b) {
        return strcmp(((const struct clusterview_row *) a)->name, ((const struct clusterview_row *) b)->name);
}

int clusterview_build(const struct clusterview_source *src, struct clusterview **ret) {
        _cleanup_(clusterview_freep) struct clusterview *v = calloc(1, sizeof *v);
        const struct dcs_leader *l = src->lease;
        size_t n = src->members ? src->members->n : 0;

        if (!v || strdup_or_null(strempty(src->cluster), &v->cluster) < 0 || strdup_or_null(strempty(src->source), &v->source) < 0)
                return -ENOMEM;
        v->lease_known = l != NULL;
        v->lease_age = src->lease_age;
        if (l) {
                v->transitions = l->transitions;
                v->paused = l->paused;
                v->optime_timeline = l->optime_timeline;
                v->optime_lsn = l->optime_lsn;
                v->lease_expired = !isempty(l->holder) && src->lease_age >= 0 &&
                                   (src->lease_duration ?: l->lease_duration) > 0 &&
                                   src->lease_age > (double) (src->lease_duration ?: l->lease_duration) / USEC_PER_SEC;
                if (strdup_or_null(strempty(l->holder), &v->holder) < 0 || strdup_or_null(l->switchover, &v->switchover) < 0 ||
                    strv_copy(l->sync, &v->sync) < 0)
                        return -ENOMEM;
        }
        v->rows = calloc(n ? n : 1, sizeof *v->rows);
        if (!v->rows)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                int r = row_from_member(src, i, &v->rows[v->n]);

                v->n++;
                if (r < 0)
                        return r;
        }
        qsort(v->rows, v->n, sizeof *v->rows, compare_rows);
        compute_lag(v);
        if (add_warnings(src, v) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(v);
        return 0;
}

/* ---- the table ---- */

enum { COL_NAME, COL_ROLE, COL_STATUS, COL_TIMELINE, COL_LSN, COL_LAG, COL_PRIORITY, COL_TAGS, COL_HOST, _COL_MAX };
static const char *const column_titles[_COL_MAX] = {
        "Name", "Role", "Status", "Timeline", "LSN", "Lag", "Priority", "Tags", "Host",
};

static char *join(char *const *l, const char *sep) {
        char *s = strdup("");

        for (; s && l && *l; l++) {
                char *n = strdup_printf("%s%s%s", s, *s ? sep : "", *l);

                free(s);
                s = n;
        }
        return s;
}

static char *format_lag(const struct clusterview_row *r) {
        _cleanup_free_ char *b = NULL;

        /* One format in every mode: bytes, then seconds ("?" unknown). */
        if (!r->has_lag)
                return strdup("-");
        b = clusterview_format_bytes(r->lag_bytes);
        if (!b)
                return NULL;
        if (r->lag_seconds >= 0)
                return strdup_printf("%s, %.1f s%s", b, r->lag_seconds, r->stale ? " (stale)" : "");
        return strdup_printf("%s, ? s%s", b, r->stale ? " (stale)" : "");
}

static char *format_tags(const struct clusterview_row *r) {
        _cleanup_free_ char *t = join(r->tags, ",");

        if (!t)
                return NULL;
        if (r->nofailover)
                return strdup_printf("%s%snofailover", t, *t ? "," : "");
        return TAKE_PTR(t);
}

static int row_cells(const struct clusterview_row *r, char *cells[_COL_MAX]) {
        cells[COL_NAME] = strdup(r->name);
        cells[COL_ROLE] = strdup(r->role);
        cells[COL_STATUS] = strdup(r->status);
        cells[COL_TIMELINE] = r->timeline ? strdup_printf("%" PRIu32, r->timeline) : strdup("-");
        cells[COL_LSN] = r->lsn ? dcs_lsn_format(r->lsn) : strdup("-");
        cells[COL_LAG] = format_lag(r);
        cells[COL_PRIORITY] = strdup_printf("%d", r->priority);
        cells[COL_TAGS] = format_tags(r);
        cells[COL_HOST] = isempty(r->host) ? strdup("-") : strdup_printf("%s:%d", r->host, r->port);
        for (int c = 0; c < _COL_MAX; c++)
                if (!cells[c])
                        return -ENOMEM;
        return 0;
}

static void print_row(FILE *f, char *const cells[_COL_MAX], const size_t width[_COL_MAX]) {
        for (int c = 0; c < _COL_MAX; c++) {
                if (c == _COL_MAX - 1)
                        fprintf(f, " %s\n", cells[c]);
                else
                        fprintf(f, " %-*s |", (int) width[c], cells[c]);
        }
}

static void print_header(FILE *f, const struct clusterview *v) {
        _cleanup_free_ char *sync = join(v->sync, ",");

        fprintf(f, "Cluster %s: ", v->cluster);
        if (!v->lease_known)
                fputs("leader unknown (lease unreadable)", f);
        else if (isempty(v->holder))
                fputs("no leader", f);
        else if (v->lease_expired)
                fprintf(f, "leader %s is gone (lease expired)", v->holder);
        else
                fprintf(f, "leader %s", v->holder);
        if (v->lease_known && v->lease_age >= 0)
                fprintf(f, ", lease record age %.1f s", v->lease_age);
        if (v->lease_known)
                fprintf(f, ", %" PRId64 " transition%s", v->transitions, v->transitions == 1 ? "" : "s");
        fprintf(f, ", sync: %s, paused: %s", isempty(sync) ? "none" : sync, v->paused ? "yes" : "no");
        if (v->switchover)
                fprintf(f, ", switchover requested to %s", streq(v->switchover, "*") ? "any standby" : v->switchover);
        fputc('\n', f);
        if (v->paused && v->lease_known && (v->lease_expired || isempty(v->holder)))
                fputs("The leader is gone and failover is suspended while the cluster is paused: agentctl resume\n", f);
}

int clusterview_format_table(const struct clusterview *v, char **ret) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, width[_COL_MAX];
        char *(*cells)[_COL_MAX];
        FILE *f;
        int r = 0;

        cells = calloc(v->n ? v->n : 1, sizeof *cells);
        if (!cells)
                return -ENOMEM;
        for (int c = 0; c < _COL_MAX; c++)
                width[c] = strlen(column_titles[c]);
        for (size_t i = 0; i < v->n && r >= 0; i++) {
                r = row_cells(&v->rows[i], cells[i]);
                for (int c = 0; r >= 0 && c < _COL_MAX; c++)
                        width[c] = MAX(width[c], strlen(cells[i][c]));
        }
        f = r >= 0 ? open_memstream(&buf, &len) : NULL;
        if (f) {
                print_header(f, v);
                fputc('\n', f);
                print_row(f, (char *const *) column_titles, width);
                for (int c = 0; c < _COL_MAX; c++) {
                        for (size_t k = 0; k < width[c] + 2; k++)
                                fputc('-', f);
                        fputs(c == _COL_MAX - 1 ? "\n" : "+", f);
                }
                for (size_t i = 0; i < v->n; i++)
                        print_row(f, cells[i], width);
                if (v->warnings)
                        fputc('\n', f);
                for (char **w = v->warnings; w && *w; w++)
                        fprintf(f, "WARNING: %s\n", *w);
                r = fclose(f) == 0 ? 0 : -ENOMEM;
        } else if (r >= 0)
                r = -ENOMEM;
        for (size_t i = 0; i < v->n; i++)
                for (int c = 0; c < _COL_MAX; c++)
                        free(cells[i][c]);
        free(cells);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(buf);
        return 0;
}

/* ---- the JSON (docs/agentctl-cluster-show.schema.json) ---- */

static bool add_lsn_or_null(cJSON *o, const char *key, uint64_t lsn) {
        _cleanup_free_ char *s = NULL;

        if (lsn == 0)
                return cJSON_AddNullToObject(o, key);
        s = dcs_lsn_format(lsn);
        return s && cJSON_AddStringToObject(o, key, s);
}

static bool add_str_or_null(cJSON *o, const char *key, const char *s) {
        return s ? !!cJSON_AddStringToObject(o, key, s) : !!cJSON_AddNullToObject(o, key);
}

static bool add_num_or_null(cJSON *o, const char *key, bool known, double v) {
        return known ? !!cJSON_AddNumberToObject(o, key, v) : !!cJSON_AddNullToObject(o, key);
}

static bool add_strv(cJSON *o, const char *key, char *const *l) {
        cJSON *a = cJSON_AddArrayToObject(o, key);

        for (; a && l && *l; l++) {
                cJSON *s = cJSON_CreateString(*l);

                if (!s || !cJSON_AddItemToArray(a, s))
                        return false;
        }
        return a;
}

static cJSON *lease_json(const struct clusterview *v) {
        _cleanup_(json_deletep) cJSON *o = cJSON_CreateObject();
        cJSON *opt;

        if (!o || !cJSON_AddBoolToObject(o, "known", v->lease_known) ||
            !add_str_or_null(o, "holder", v->lease_known ? v->holder : NULL) ||
            !add_num_or_null(o, "age_seconds", v->lease_known && v->lease_age >= 0, v->lease_age) ||
            !cJSON_AddBoolToObject(o, "expired", v->lease_expired) ||
            !cJSON_AddNumberToObject(o, "transitions", (double) v->transitions) ||
            !cJSON_AddBoolToObject(o, "paused", v->paused) || !add_strv(o, "sync", v->sync) ||
            !add_str_or_null(o, "switchover", v->switchover))
                return NULL;
        if (v->optime_timeline == 0 && v->optime_lsn == 0)
                return cJSON_AddNullToObject(o, "optime") ? TAKE_PTR(o) : NULL;
        opt = cJSON_AddObjectToObject(o, "optime");
        if (!opt || !cJSON_AddNumberToObject(opt, "timeline", v->optime_timeline) || !add_lsn_or_null(opt, "lsn", v->optime_lsn))
                return NULL;
        return TAKE_PTR(o);
}

static cJSON *row_json(const struct clusterview_row *r) {
        _cleanup_(json_deletep) cJSON *o = cJSON_CreateObject();

        if (!o || !cJSON_AddStringToObject(o, "name", r->name) || !cJSON_AddStringToObject(o, "role", r->role) ||
            !cJSON_AddStringToObject(o, "status", r->status) || !cJSON_AddBoolToObject(o, "leader", r->leader) ||
            !add_num_or_null(o, "timeline", r->timeline > 0, r->timeline) || !add_lsn_or_null(o, "lsn", r->lsn) ||
            !add_lsn_or_null(o, "replay_lsn", r->replay_lsn) || !add_num_or_null(o, "lag_bytes", r->has_lag, (double) r->lag_bytes) ||
            !add_num_or_null(o, "lag_seconds", r->lag_seconds >= 0, r->lag_seconds) ||
            !cJSON_AddBoolToObject(o, "stale", r->stale) ||
            !cJSON_AddNumberToObject(o, "priority", r->priority) || !cJSON_AddBoolToObject(o, "nofailover", r->nofailover) ||
            !add_strv(o, "tags", r->tags) || !cJSON_AddStringToObject(o, "host", r->host) ||
            !cJSON_AddNumberToObject(o, "port", r->port) ||
            !add_num_or_null(o, "heartbeat_age_seconds", r->heartbeat_age >= 0, r->heartbeat_age) ||
            !(r->reachable < 0 ? cJSON_AddNullToObject(o, "reachable") : cJSON_AddBoolToObject(o, "reachable", r->reachable)))
                return NULL;
        return TAKE_PTR(o);
}

int clusterview_to_json(const struct clusterview *v, cJSON **ret) {
        _cleanup_(json_deletep) cJSON *o = cJSON_CreateObject();
        cJSON *members, *item;

        if (!o || !cJSON_AddNumberToObject(o, "schema_version", CLUSTERVIEW_SCHEMA_VERSION) ||
            !cJSON_AddStringToObject(o, "cluster", v->cluster) || !cJSON_AddStringToObject(o, "source", v->source))
                return -ENOMEM;
        item = lease_json(v);
        if (!item || !cJSON_AddItemToObject(o, "lease", item)) {
                cJSON_Delete(item);
                return -ENOMEM;
        }
        members = cJSON_AddArrayToObject(o, "members");
        if (!members)
                return -ENOMEM;
        for (size_t i = 0; i < v->n; i++) {
                item = row_json(&v->rows[i]);
                if (!item || !cJSON_AddItemToArray(members, item)) {
                        cJSON_Delete(item);
                        return -ENOMEM;
                }
        }
        if (!add_strv(o, "warnings", v->warnings))
                return -ENOMEM;
        *ret = TAKE_PTR(o);
        return 0;
}
