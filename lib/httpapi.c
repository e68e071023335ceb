/* httpapi.c: the answers of the agent's HTTP API computed from the loop's
 * snapshot: probe codes and bodies, and the Prometheus exposition. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api-stats.h"
#include "dcs.h"
#include "httpapi.h"
#include "util.h"

int httpapi_parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len) {
        _cleanup_free_ char *host = NULL;
        struct sockaddr_storage ss = {};
        const char *colon, *port_s;
        int64_t port;

        if (isempty(s))
                return -EINVAL;
        if (s[0] == '[') {
                const char *close = strchr(s, ']');

                if (!close || close[1] != ':')
                        return -EINVAL;
                host = strndup(s + 1, (size_t) (close - s - 1));
                port_s = close + 2;
        } else {
                colon = strrchr(s, ':');
                if (!colon || strchr(s, ':') != colon)
                        return -EINVAL;
                host = strndup(s, (size_t) (colon - s));
                port_s = colon + 1;
        }
        if (!host)
                return -ENOMEM;
        if (parse_int64(port_s, &port) < 0 || port < 1 || port > 65535)
                return -EINVAL;
        if (s[0] != '[') {
                struct sockaddr_in *in = (struct sockaddr_in *) &ss;

                if (inet_pton(AF_INET, host, &in->sin_addr) != 1)
                        return -EINVAL;
                in->sin_family = AF_INET;
                in->sin_port = htons((uint16_t) port);
                *ret_len = sizeof *in;
        } else {
                struct sockaddr_in6 *in6 = (struct sockaddr_in6 *) &ss;

                if (inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
                        return -EINVAL;
                in6->sin6_family = AF_INET6;
                in6->sin6_port = htons((uint16_t) port);
                *ret_len = sizeof *in6;
        }
        *ret = ss;
        return 0;
}

static const struct {
        const char *path;
        enum httpapi_probe probe;
} probe_paths[] = {
        { "/health", HTTPAPI_HEALTH },
        { "/liveness", HTTPAPI_LIVENESS },
        { "/readiness", HTTPAPI_READINESS },
        { "/primary", HTTPAPI_PRIMARY },
        { "/master", HTTPAPI_PRIMARY },
        { "/leader", HTTPAPI_PRIMARY },
        { "/replica", HTTPAPI_REPLICA },
        { "/standby", HTTPAPI_REPLICA },
        { "/read-only", HTTPAPI_READ_ONLY },
        { "/readonly", HTTPAPI_READ_ONLY },
};

enum httpapi_probe httpapi_probe_from_path(const char *path) {
        for (size_t i = 0; i < ELEMENTSOF(probe_paths); i++)
                if (streq(path, probe_paths[i].path))
                        return probe_paths[i].probe;
        return -ENOENT;
}

static const char *const endpoint_labels[] = {
        [HTTPAPI_HEALTH] = "health",
        [HTTPAPI_LIVENESS] = "liveness",
        [HTTPAPI_READINESS] = "readiness",
        [HTTPAPI_PRIMARY] = "primary",
        [HTTPAPI_REPLICA] = "replica",
        [HTTPAPI_READ_ONLY] = "read-only",
        [HTTPAPI_EP_CLUSTER] = "cluster",
        [HTTPAPI_EP_METRICS] = "metrics",
        [HTTPAPI_EP_OTHER] = "other",
};

const char *httpapi_endpoint_label(int ep) {
        if (ep < 0 || (size_t) ep >= ELEMENTSOF(endpoint_labels))
                return NULL;
        return endpoint_labels[ep];
}

static bool is_primary(const struct httpapi_state *s) {
        return s->ticked && s->lease_valid && s->pg_accepting && !s->pg_in_recovery && !s->fenced;
}

static bool is_replica(const struct httpapi_state *s, uint64_t max_lag) {
        return s->ticked && s->pg_accepting && s->pg_in_recovery && s->pg_streaming && !s->fenced && !s->cloning &&
                s->has_lag && s->lag_bytes <= max_lag;
}

static bool is_alive(const struct httpapi_state *s) {
        return s->ticked && s->tick_age <= s->liveness_bound;
}

static bool is_ready(const struct httpapi_state *s) {
        return is_alive(s) && (is_primary(s) || is_replica(s, s->maximum_lag));
}

static const char *role_of(const struct httpapi_state *s) {
        if (!s->ticked || !s->pg_accepting)
                return "unknown";
        return s->pg_in_recovery ? "replica" : "primary";
}

static bool add_lsn(cJSON *o, const char *key, bool known, uint64_t lsn) {
        _cleanup_free_ char *t = NULL;

        if (!known || lsn == 0)
                return cJSON_AddNullToObject(o, key);
        t = dcs_lsn_format(lsn);
        return t && cJSON_AddStringToObject(o, key, t);
}

int httpapi_probe_answer(enum httpapi_probe p, const struct httpapi_state *s, uint64_t max_lag, int *ret_code, char **ret_body) {
        cJSON *o;
        bool ok;
        char *body;

        if (max_lag == UINT64_MAX)
                max_lag = s->maximum_lag;
        switch (p) {
        case HTTPAPI_HEALTH:
                ok = s->ticked && s->pg_accepting;
                break;
        case HTTPAPI_LIVENESS:
                ok = is_alive(s);
                break;
        case HTTPAPI_READINESS:
                ok = is_ready(s);
                break;
        case HTTPAPI_PRIMARY:
                ok = is_primary(s);
                break;
        case HTTPAPI_REPLICA:
                ok = is_replica(s, max_lag);
                break;
        case HTTPAPI_READ_ONLY:
                ok = is_primary(s) || is_replica(s, max_lag);
                break;
        default:
                return -EINVAL;
        }
        o = cJSON_CreateObject();
        if (!o)
                return -ENOMEM;
        if (!cJSON_AddStringToObject(o, "node", strempty(s->node)) ||
            !cJSON_AddStringToObject(o, "cluster", strempty(s->cluster)) ||
            !cJSON_AddStringToObject(o, "state", s->ticked ? strempty(s->state) : "starting") ||
            !cJSON_AddStringToObject(o, "role", role_of(s)) ||
            !cJSON_AddBoolToObject(o, "lease", s->lease_valid) ||
            !cJSON_AddBoolToObject(o, "running", s->pg_running) ||
            !cJSON_AddBoolToObject(o, "accepting", s->pg_accepting) ||
            !cJSON_AddBoolToObject(o, "streaming", s->pg_accepting && s->pg_in_recovery && s->pg_streaming) ||
            !(s->pg_accepting ? cJSON_AddNumberToObject(o, "timeline", s->timeline) : cJSON_AddNullToObject(o, "timeline")) ||
            !add_lsn(o, "lsn", s->pg_accepting, s->lsn) ||
            !add_lsn(o, "replay_lsn", s->pg_accepting, s->replay_lsn) ||
            !(s->pg_in_recovery && s->has_lag ? cJSON_AddNumberToObject(o, "lag_bytes", (double) s->lag_bytes)
                                              : cJSON_AddNullToObject(o, "lag_bytes")) ||
            !cJSON_AddBoolToObject(o, "ready", is_ready(s)) ||
            !cJSON_AddNumberToObject(o, "last_tick_seconds_ago", s->ticked ? (double) s->tick_age / USEC_PER_SEC : -1)) {
                cJSON_Delete(o);
                return -ENOMEM;
        }
        body = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        if (!body)
                return -ENOMEM;
        *ret_code = ok ? 200 : 503;
        *ret_body = body;
        return 0;
}

/* Label values: backslash, double quote and newline escaped (the
 * exposition format's only escapes). */
static void put_label_value(FILE *f, const char *v) {
        for (; v && *v; v++) {
                if (*v == '\\' || *v == '"')
                        fputc('\\', f), fputc(*v, f);
                else if (*v == '\n')
                        fputs("\\n", f);
                else
                        fputc(*v, f);
        }
}

static void family(FILE *f, const char *name, const char *type, const char *help) {
        fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void sample(FILE *f, const char *name, double v) {
        fprintf(f, "%s %.17g\n", name, v);
}

static void counter(FILE *f, const char *name, const char *help, uint64_t v) {
        family(f, name, "counter", help);
        fprintf(f, "%s %" PRIu64 "\n", name, v);
}

static void gauge(FILE *f, const char *name, const char *help, double v) {
        family(f, name, "gauge", help);
        sample(f, name, v);
}

static void format_state(FILE *f, const struct httpapi_metrics *m) {
        const struct httpapi_state *s = m->s;
        static const char *const roles[] = { "primary", "replica", "unknown" };

        family(f, "pglease_build_info", "gauge", "The agent's version; always 1.");
        fputs("pglease_build_info{version=\"", f);
        put_label_value(f, m->version);
        fputs("\"} 1\n", f);
        family(f, "pglease_role", "gauge", "1 for the local PostgreSQL's current role, 0 for the others.");
        for (size_t i = 0; i < ELEMENTSOF(roles); i++)
                fprintf(f, "pglease_role{role=\"%s\"} %d\n", roles[i], streq(role_of(s), roles[i]));
        family(f, "pglease_agent_state", "gauge", "1 for the agent's current state.");
        fputs("pglease_agent_state{state=\"", f);
        put_label_value(f, s->ticked ? s->state : "starting");
        fputs("\"} 1\n", f);
        gauge(f, "pglease_ready", "1 when /readiness answers 200.", is_ready(s));
        gauge(f, "pglease_postgres_running", "1 when a postmaster owns the data directory.", s->pg_running);
        gauge(f, "pglease_postgres_accepting", "1 when the local PostgreSQL accepted the last tick's connection.", s->pg_accepting);
        gauge(f, "pglease_fenced", "1 while the local PostgreSQL is held down (fenced or stopped).", s->fenced);
        if (s->pg_accepting) {
                gauge(f, "pglease_timeline", "The local PostgreSQL's timeline.", s->timeline);
                gauge(f, "pglease_wal_lsn_bytes", "The local LSN (primary: flush; standby: received or replayed) as a byte position.",
                      (double) s->lsn);
                gauge(f, "pglease_replay_lsn_bytes", "The local replayed LSN as a byte position.", (double) s->replay_lsn);
        }
        if (s->pg_accepting && s->pg_in_recovery && s->has_lag)
                gauge(f, "pglease_replication_lag_bytes", "This standby's distance behind the leader's published optime.",
                      (double) s->lag_bytes);
        if (s->pg_accepting && s->pg_in_recovery && s->replay_lag_seconds >= 0)
                gauge(f, "pglease_replication_lag_seconds", "This standby's replay delay: now minus the last replayed transaction's time.",
                      s->replay_lag_seconds);
        gauge(f, "pglease_last_tick_age_seconds", "Seconds since the control loop's last tick.",
              s->ticked ? (double) s->tick_age / USEC_PER_SEC : -1);
}

static void format_lease(FILE *f, const struct httpapi_metrics *m) {
        gauge(f, "pglease_lease_held", "1 when this member holds a valid leader lease.", m->lease_held);
        gauge(f, "pglease_failsafe_mode", "1 when failsafe_mode is on.", m->failsafe_mode);
        gauge(f, "pglease_failsafe_active", "1 while the leader keeps writing on its members' answers to POST /failsafe (the API server is unreachable).",
              m->failsafe_active);
        if (m->n_failsafe_promises > 0)
                family(f, "pglease_failsafe_promise_seconds", "gauge",
                       "How long this member has still promised a leader (POST /failsafe) not to take its lease.");
        for (size_t i = 0; i < m->n_failsafe_promises; i++) {
                fputs("pglease_failsafe_promise_seconds{leader=\"", f);
                put_label_value(f, m->failsafe_promises[i].leader);
                fprintf(f, "\"} %.3f\n", m->failsafe_promises[i].seconds);
        }
        gauge(f, "pglease_lease_remaining_seconds", "Leader: seconds left before the renew deadline fences it; 0 otherwise.",
              m->lease_held && m->lease_remaining_seconds > 0 ? m->lease_remaining_seconds : 0);
        if (m->lease_known) {
                gauge(f, "pglease_lease_transitions", "The Lease record's leaseTransitions.", (double) m->lease_transitions);
                gauge(f, "pglease_paused", "1 while automatic failover is paused.", m->paused);
        }
        counter(f, "pglease_promotions_total", "Promotions of the local PostgreSQL by this agent (failovers and switchovers).",
                m->promotions);
        counter(f, "pglease_failovers_total", "Promotions by this agent that were not a hand-over to it (the lease expired or was free).",
                m->failovers);
        counter(f, "pglease_switchovers_total", "Hand-overs this agent completed as the old primary (switchover requests).",
                m->switchovers);
        counter(f, "pglease_demotes_total", "Pre-stop hand-overs this agent completed as the old primary.", m->demotes);
        counter(f, "pglease_fences_total", "Times this agent fenced the local PostgreSQL.", m->fences);
        counter(f, "pglease_ticks_total", "Ticks of the control loop.", m->ticks);
}

static void format_standbys(FILE *f, const struct httpapi_metrics *m) {
        if (m->n_standbys == 0)
                return;
        family(f, "pglease_standby_streaming", "gauge", "Primary: 1 for a standby streaming in pg_stat_replication.");
        for (size_t i = 0; i < m->n_standbys; i++) {
                fputs("pglease_standby_streaming{standby=\"", f);
                put_label_value(f, m->standbys[i].name);
                fprintf(f, "\"} %d\n", m->standbys[i].streaming);
        }
        family(f, "pglease_standby_lag_bytes", "gauge", "Primary: a standby's flush position behind the local flush LSN.");
        for (size_t i = 0; i < m->n_standbys; i++) {
                fputs("pglease_standby_lag_bytes{standby=\"", f);
                put_label_value(f, m->standbys[i].name);
                fprintf(f, "\"} %" PRIu64 "\n", m->standbys[i].lag_bytes);
        }
}

static void format_api(FILE *f, const struct httpapi_metrics *m) {
        const struct { const char *client; const struct api_stats *stats; } clients[] = {
                { "loop", m->api_loop }, { "renewer", m->api_renewer },
        };
        struct api_stats copy[ELEMENTSOF(clients)];

        for (size_t i = 0; i < ELEMENTSOF(clients); i++)
                if (clients[i].stats)
                        api_stats_copy(clients[i].stats, &copy[i]);
        family(f, "pglease_api_requests_total", "counter",
               "Requests sent to the API server, retries included, by client (the loop's, the renewer's), verb and code (0: no answer).");
        for (size_t i = 0; i < ELEMENTSOF(clients); i++)
                for (int v = 0; clients[i].stats && v < _API_VERB_MAX; v++)
                        for (int c = 0; c < API_STATS_N_CODES; c++) {
                                if (copy[i].count[v][c] == 0)
                                        continue;
                                fprintf(f, "pglease_api_requests_total{client=\"%s\",verb=\"%s\",code=\"", clients[i].client,
                                        api_verb_to_string(v));
                                if (api_stats_code(c) < 0)
                                        fputs("other", f);
                                else
                                        fprintf(f, "%d", api_stats_code(c));
                                fprintf(f, "\"} %" PRIu64 "\n", copy[i].count[v][c]);
                        }
        family(f, "pglease_api_request_duration_seconds", "histogram",
               "Time from sending a request to the API server to its answer (or failure), by client and verb.");
        for (size_t i = 0; i < ELEMENTSOF(clients); i++)
                for (int v = 0; clients[i].stats && v < _API_VERB_MAX; v++) {
                        uint64_t cumulative = 0;

                        for (int b = 0; b < API_STATS_N_BUCKETS; b++)
                                cumulative += copy[i].bucket[v][b];
                        if (cumulative == 0)
                                continue;
                        cumulative = 0;
                        for (int b = 0; b < API_STATS_N_BUCKETS; b++) {
                                cumulative += copy[i].bucket[v][b];
                                fprintf(f, "pglease_api_request_duration_seconds_bucket{client=\"%s\",verb=\"%s\",le=\"",
                                        clients[i].client, api_verb_to_string(v));
                                if (b == API_STATS_N_BUCKETS - 1)
                                        fputs("+Inf", f);
                                else
                                        fprintf(f, "%g", (double) api_stats_bucket_bound(b) / USEC_PER_SEC);
                                fprintf(f, "\"} %" PRIu64 "\n", cumulative);
                        }
                        fprintf(f, "pglease_api_request_duration_seconds_sum{client=\"%s\",verb=\"%s\"} %.6f\n",
                                clients[i].client, api_verb_to_string(v), (double) copy[i].sum_usec[v] / USEC_PER_SEC);
                        fprintf(f, "pglease_api_request_duration_seconds_count{client=\"%s\",verb=\"%s\"} %" PRIu64 "\n",
                                clients[i].client, api_verb_to_string(v), cumulative);
                }
}

static const int codes[HTTPAPI_N_CODES] = { 0, 200, 400, 404, 405, 413, 500, 503 };

int httpapi_code_index(int code) {
        for (int i = 1; i < HTTPAPI_N_CODES; i++)
                if (codes[i] == code)
                        return i;
        return 0;
}

static void format_http(FILE *f, const struct httpapi_metrics *m) {
        if (!m->http_requests)
                return;
        family(f, "pglease_http_requests_total", "counter", "Requests to this HTTP API by endpoint and status code.");
        for (int ep = 0; ep < HTTPAPI_N_ENDPOINTS; ep++)
                for (int c = 0; c < HTTPAPI_N_CODES; c++)
                        if (m->http_requests[ep][c] > 0) {
                                fprintf(f, "pglease_http_requests_total{endpoint=\"%s\",code=\"", httpapi_endpoint_label(ep));
                                if (c == 0)
                                        fputs("other", f);
                                else
                                        fprintf(f, "%d", codes[c]);
                                fprintf(f, "\"} %" PRIu64 "\n", m->http_requests[ep][c]);
                        }
}

int httpapi_metrics_format(const struct httpapi_metrics *m, char **ret) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        f = open_memstream(&buf, &size);
        if (!f)
                return -ENOMEM;
        format_state(f, m);
        format_lease(f, m);
        format_standbys(f, m);
        format_http(f, m);
        format_api(f, m);
        if (fclose(f) != 0 || !buf) {
                free(buf);
                return -ENOMEM;
        }
        *ret = buf;
        return 0;
}

bool httpapi_token_matches(const char *authorization, const char *token) {
        static const char prefix[] = "Bearer ";
        size_t n, m;
        unsigned char diff = 0;

        if (!authorization || isempty(token) || strncmp(authorization, prefix, strlen(prefix)) != 0)
                return false;
        authorization += strlen(prefix);
        n = strlen(authorization);
        m = strlen(token);
        /* Every byte of the token is looked at, whatever the input. */
        for (size_t i = 0; i < m; i++)
                diff |= (unsigned char) (token[i] ^ (i < n ? authorization[i] : 0));
        return diff == 0 && n == m;
}

int httpapi_failsafe_parse(const char *body, size_t len, char **ret_leader) {
        cJSON *j = cJSON_ParseWithLength(body, len);
        const cJSON *leader = cJSON_GetObjectItemCaseSensitive(j, "leader");
        char *s;

        if (!cJSON_IsObject(j) || !cJSON_IsString(leader) || !valid_dns_label(leader->valuestring, 63)) {
                cJSON_Delete(j);
                return -EINVAL;
        }
        s = strdup(leader->valuestring);
        cJSON_Delete(j);
        if (!s)
                return -ENOMEM;
        *ret_leader = s;
        return 0;
}

bool httpapi_rate_allow(struct httpapi_rate *r, usec_t now, unsigned limit) {
        if (now < r->window || now - r->window >= USEC_PER_SEC) {
                r->window = now;
                r->count = 0;
        }
        if (r->count >= limit)
                return false;
        r->count++;
        return true;
}
