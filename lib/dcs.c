/* dcs.c: the backend-independent parts of the DCS records: destructors,
 * copies, role names and the JSON of a member's status annotation. */
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dcs.h"
#include "util.h"

static void json_deletep(cJSON **j) {
        if (*j)
                cJSON_Delete(*j);
}

struct dcs_leader *dcs_leader_free(struct dcs_leader *l) {
        if (!l)
                return NULL;
        free(l->holder);
        strv_free(l->sync);
        strv_free(l->failsafe);
        free(l->switchover);
        free(l->switchover_refused);
        free(l->handover);
        free(l->successor);
        free(l->version);
        free(l->raw);
        free(l);
        return NULL;
}

static int strdup_nullable(const char *s, char **ret) {
        *ret = NULL;
        if (s && !(*ret = strdup(s)))
                return -ENOMEM;
        return 0;
}

static int strv_copy(char * const *l, char ***ret) {
        _cleanup_strv_free_ char **c = NULL;
        size_t n = strv_length(l);

        *ret = NULL;
        if (!l)
                return 0;
        c = calloc(n + 1, sizeof(char *));
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                if (!(c[i] = strdup(l[i])))
                        return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

int dcs_leader_copy(const struct dcs_leader *l, struct dcs_leader **ret) {
        _cleanup_(dcs_leader_freep) struct dcs_leader *c = NULL;

        c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        *c = *l;
        c->holder = c->switchover = c->switchover_refused = c->handover = c->successor = c->version = c->raw = NULL;
        c->sync = c->failsafe = NULL;
        if (strdup_nullable(l->holder, &c->holder) < 0 ||
            strdup_nullable(l->switchover, &c->switchover) < 0 ||
            strdup_nullable(l->switchover_refused, &c->switchover_refused) < 0 ||
            strdup_nullable(l->handover, &c->handover) < 0 ||
            strdup_nullable(l->successor, &c->successor) < 0 ||
            strdup_nullable(l->version, &c->version) < 0 ||
            strdup_nullable(l->raw, &c->raw) < 0 ||
            strv_copy(l->sync, &c->sync) < 0 ||
            strv_copy(l->failsafe, &c->failsafe) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(c);
        return 0;
}

static const char *const sync_mode_table[_DCS_SYNC_MODE_MAX] = {
        [DCS_SYNC_MODE_OFF] = "off",
        [DCS_SYNC_MODE_ON] = "on",
        [DCS_SYNC_MODE_STRICT] = "strict",
};

const char *dcs_sync_mode_to_string(enum dcs_sync_mode m) {
        if ((unsigned) m >= _DCS_SYNC_MODE_MAX)
                return NULL;
        return sync_mode_table[m];
}

enum dcs_sync_mode dcs_sync_mode_from_string(const char *s) {
        for (int i = DCS_SYNC_MODE_OFF; s && i < _DCS_SYNC_MODE_MAX; i++)
                if (streq(sync_mode_table[i], s))
                        return i;
        return DCS_SYNC_MODE_UNKNOWN;
}

static const char *const member_role_table[_MEMBER_ROLE_MAX] = {
        [MEMBER_ROLE_UNKNOWN] = "unknown",
        [MEMBER_ROLE_PRIMARY] = "primary",
        [MEMBER_ROLE_REPLICA] = "replica",
};

const char *member_role_to_string(enum member_role r) {
        if (r < 0 || r >= _MEMBER_ROLE_MAX)
                return NULL;
        return member_role_table[r];
}

enum member_role member_role_from_string(const char *s) {
        if (!s)
                return _MEMBER_ROLE_INVALID;
        for (int i = 0; i < _MEMBER_ROLE_MAX; i++)
                if (streq(s, member_role_table[i]))
                        return (enum member_role) i;
        return _MEMBER_ROLE_INVALID;
}

void dcs_member_done(struct dcs_member *m) {
        if (!m)
                return;
        free(m->name);
        free(m->state);
        free(m->host);
        free(m->tags);
        free(m->api_version);
        *m = (struct dcs_member) {};
}

struct dcs_member *dcs_member_free(struct dcs_member *m) {
        if (!m)
                return NULL;
        dcs_member_done(m);
        free(m);
        return NULL;
}

struct dcs_member_list *dcs_member_list_free(struct dcs_member_list *l) {
        if (!l)
                return NULL;
        for (size_t i = 0; i < l->n; i++)
                dcs_member_done(&l->members[i]);
        free(l->members);
        free(l);
        return NULL;
}

char *dcs_cluster_selector(const char *cluster) {
        return strdup_printf("%s=%s", DCS_LABEL_CLUSTER, cluster);
}

char *dcs_lsn_format(uint64_t lsn) {
        return strdup_printf("%" PRIX32 "/%" PRIX32, (uint32_t) (lsn >> 32), (uint32_t) lsn);
}

int dcs_lsn_parse(const char *s, uint64_t *ret) {
        unsigned long long hi, lo;
        char *end;

        if (isempty(s) || !strchr("0123456789abcdefABCDEF", s[0]))
                return -EINVAL;
        errno = 0;
        hi = strtoull(s, &end, 16);
        if (errno != 0 || *end != '/' || hi > UINT32_MAX || !end[1] || !strchr("0123456789abcdefABCDEF", end[1]))
                return -EINVAL;
        lo = strtoull(end + 1, &end, 16);
        if (errno != 0 || *end != '\0' || lo > UINT32_MAX)
                return -EINVAL;
        *ret = ((uint64_t) hi << 32) | (uint64_t) lo;
        return 0;
}

static bool add_lsn(cJSON *o, const char *key, uint64_t lsn) {
        _cleanup_free_ char *s = dcs_lsn_format(lsn);

        return s && cJSON_AddStringToObject(o, key, s);
}

int dcs_member_to_json(const struct dcs_member *m, char **ret) {
        _cleanup_(json_deletep) cJSON *o = cJSON_CreateObject();
        _cleanup_free_ char *heartbeat = NULL;
        const char *role = member_role_to_string(m->role);
        char *s;

        if (!role)
                return -EINVAL;
        if (m->heartbeat > 0 && !(heartbeat = clock_format_microtime(m->heartbeat)))
                return -ENOMEM;
        if (!o ||
            !cJSON_AddStringToObject(o, "role", role) ||
            !cJSON_AddStringToObject(o, "state", m->state ?: "unknown") ||
            !cJSON_AddNumberToObject(o, "timeline", m->timeline) ||
            !add_lsn(o, "lsn", m->lsn) ||
            !add_lsn(o, "replay_lsn", m->replay_lsn) ||
            (m->host && !cJSON_AddStringToObject(o, "host", m->host)) ||
            !cJSON_AddNumberToObject(o, "port", m->port) ||
            (m->failsafe_port > 0 && !cJSON_AddNumberToObject(o, "failsafe_port", m->failsafe_port)) ||
            !cJSON_AddNumberToObject(o, "priority", m->priority) ||
            !cJSON_AddBoolToObject(o, "nofailover", m->nofailover) ||
            (m->tags && !cJSON_AddStringToObject(o, "tags", m->tags)) ||
            (heartbeat && !cJSON_AddStringToObject(o, "heartbeat", heartbeat)) ||
            (m->api_version && !cJSON_AddStringToObject(o, "version", m->api_version)))
                return -ENOMEM;
        s = cJSON_PrintUnformatted(o);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* Optional typed fields: absent is fine, the wrong type is not. */
static int json_get_string(const cJSON *o, const char *key, char **ret) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);

        if (!j || cJSON_IsNull(j))
                return 0;
        if (!cJSON_IsString(j))
                return -EINVAL;
        return strdup_nullable(j->valuestring, ret);
}

static int json_get_int(const cJSON *o, const char *key, double min, double max, int64_t *ret) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);

        if (!j || cJSON_IsNull(j))
                return 0;
        if (!cJSON_IsNumber(j) || j->valuedouble < min || j->valuedouble > max ||
            j->valuedouble != floor(j->valuedouble))
                return -EINVAL;
        *ret = (int64_t) j->valuedouble;
        return 0;
}

static int json_get_lsn(const cJSON *o, const char *key, uint64_t *ret) {
        const cJSON *j = cJSON_GetObjectItemCaseSensitive(o, key);

        if (!j || cJSON_IsNull(j))
                return 0;
        if (!cJSON_IsString(j))
                return -EINVAL;
        return dcs_lsn_parse(j->valuestring, ret);
}

static int member_fields_from_json(const cJSON *o, struct dcs_member *m) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(o, "role");
        const cJSON *nofailover = cJSON_GetObjectItemCaseSensitive(o, "nofailover");
        _cleanup_free_ char *heartbeat = NULL;
        int64_t timeline = 0, port = 0, failsafe_port = 0, priority = 0;

        if (!cJSON_IsString(role) || (m->role = member_role_from_string(role->valuestring)) < 0)
                return -EINVAL;
        if (json_get_string(o, "state", &m->state) < 0 || !m->state ||
            json_get_int(o, "timeline", 0, UINT32_MAX, &timeline) < 0 ||
            json_get_lsn(o, "lsn", &m->lsn) < 0 ||
            json_get_lsn(o, "replay_lsn", &m->replay_lsn) < 0 ||
            json_get_string(o, "host", &m->host) < 0 ||
            json_get_int(o, "port", 0, 65535, &port) < 0 ||
            json_get_int(o, "failsafe_port", 0, 65535, &failsafe_port) < 0 ||
            json_get_int(o, "priority", INT32_MIN, INT32_MAX, &priority) < 0 ||
            json_get_string(o, "tags", &m->tags) < 0 ||
            json_get_string(o, "version", &m->api_version) < 0 ||
            json_get_string(o, "heartbeat", &heartbeat) < 0)
                return -EINVAL;
        if (nofailover && !cJSON_IsBool(nofailover))
                return -EINVAL;
        if (heartbeat && clock_parse_rfc3339(heartbeat, &m->heartbeat) < 0)
                return -EINVAL;
        m->nofailover = cJSON_IsTrue(nofailover);
        m->timeline = (uint32_t) timeline;
        m->port = (int) port;
        m->failsafe_port = (int) failsafe_port;
        m->priority = (int) priority;
        return 0;
}

int dcs_member_from_json(const char *name, const char *json, struct dcs_member *ret) {
        _cleanup_(json_deletep) cJSON *o = NULL;
        struct dcs_member m = {};
        int r;

        if (!json)
                return -EINVAL;
        o = cJSON_ParseWithOpts(json, NULL, true);
        if (!cJSON_IsObject(o))
                return -EBADMSG;
        if (strdup_nullable(name, &m.name) < 0)
                return -ENOMEM;
        r = member_fields_from_json(o, &m);
        if (r < 0) {
                dcs_member_done(&m);
                return r;
        }
        *ret = m;
        return 0;
}
