/* httpapi.h: what the agent's HTTP API answers, as pure functions: the
 * listen address, the probe endpoints' codes and bodies, and the Prometheus
 * text exposition, from a snapshot the control loop took (docs/http-api.md). */
#ifndef PGLEASE_HTTPAPI_H
#define PGLEASE_HTTPAPI_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "macro.h"

/* "127.0.0.1:8008", "0.0.0.0:8008", "[::1]:8008", "[::]:8008": a numeric
 * address (no name lookup) and a port in 1..65535. */
int httpapi_parse_listen(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len);

/* The member as the last tick saw it. */
struct httpapi_state {
        const char *node;
        const char *cluster;
        const char *state;            /* agent_state_to_string() */
        bool ticked;                  /* at least one tick ran */
        usec_t tick_age;              /* since the last tick ended */
        usec_t liveness_bound;        /* a loop quieter than this is not alive */
        bool fenced;                  /* FENCED or STOPPED: down on purpose */
        bool cloning;                 /* no data directory yet, or rejoining (rewind, clone) */
        bool pg_running;
        bool pg_accepting;
        bool pg_in_recovery;
        bool pg_streaming;
        uint32_t timeline;
        uint64_t lsn;                 /* primary: flush; standby: max(receive, replay) */
        uint64_t replay_lsn;
        double replay_lag_seconds;    /* standby: < 0 unknown */
        bool lease_valid;             /* we hold the lease and its renew deadline has not passed */
        bool has_lag;                 /* standby: the leader's published optime is known */
        uint64_t lag_bytes;
        uint64_t maximum_lag;         /* readiness and /replica bound (http_maximum_lag) */
};

enum httpapi_probe {
        HTTPAPI_HEALTH,
        HTTPAPI_LIVENESS,
        HTTPAPI_READINESS,
        HTTPAPI_PRIMARY,
        HTTPAPI_REPLICA,
        HTTPAPI_READ_ONLY,
        _HTTPAPI_PROBE_MAX,
        _HTTPAPI_PROBE_INVALID = -EINVAL,
};

/* "/primary" -> HTTPAPI_PRIMARY (also "/master", "/leader" as Patroni's
 * users know them, "/standby" for /replica, "/read-only" and "/readonly");
 * -ENOENT for any other path. */
enum httpapi_probe httpapi_probe_from_path(const char *path);

/* The status code (200 or 503) and a JSON body for a probe. max_lag
 * overrides s->maximum_lag for /replica and /read-only (UINT64_MAX: use
 * the configured bound). */
int httpapi_probe_answer(enum httpapi_probe p, const struct httpapi_state *s, uint64_t max_lag, int *ret_code, char **ret_body);

/* The status codes the API answers, counted by index; others count as 0. */
#define HTTPAPI_N_CODES 8
int httpapi_code_index(int code);
#define HTTPAPI_N_ENDPOINTS (_HTTPAPI_PROBE_MAX + 3)

/* What /metrics exposes beyond the state. */
struct httpapi_standby {
        const char *name;
        bool streaming;
        uint64_t lag_bytes;
};

struct httpapi_promise {
        const char *leader;
        double seconds;
};

struct httpapi_metrics {
        const struct httpapi_state *s;
        const char *version;
        bool lease_known;             /* the lease record has been read */
        bool lease_held;              /* we hold a valid lease */
        double lease_remaining_seconds; /* leader: until the renew deadline; < 0 when not leader */
        int64_t lease_transitions;
        bool paused;
        uint64_t promotions, failovers, switchovers, fences, demotes;
        /* API server requests (api-stats.h) of the control loop's client
         * and of the renewer's; NULL when not known. */
        const struct api_stats *api_loop;
        const struct api_stats *api_renewer;
        uint64_t ticks;
        size_t n_standbys;            /* primary: pg_stat_replication */
        const struct httpapi_standby *standbys;
        bool failsafe_mode;           /* failsafe_mode is on */
        bool failsafe_active;         /* the leader is writing on its members' answers (API server unreachable) */
        /* How long this member has still promised each leader not to take
         * its lease (POST /failsafe). */
        size_t n_failsafe_promises;
        const struct httpapi_promise *failsafe_promises;
        /* The HTTP API's own requests: [endpoint][httpapi_code_index()]. */
        const uint64_t (*http_requests)[HTTPAPI_N_CODES];
};

/* Endpoint labels for the http_requests table: the probes, then these. */
#define HTTPAPI_EP_CLUSTER  (_HTTPAPI_PROBE_MAX + 0)
#define HTTPAPI_EP_METRICS  (_HTTPAPI_PROBE_MAX + 1)
#define HTTPAPI_EP_OTHER    (_HTTPAPI_PROBE_MAX + 2)
const char *httpapi_endpoint_label(int ep);

/* POST /failsafe (docs/http-api.md). The token check takes the same time
 * whatever the first wrong byte; an empty token matches nothing. */
bool httpapi_token_matches(const char *authorization, const char *token);
/* The body {"leader": "pg-0"}: the asking leader's name (a DNS label). */
int httpapi_failsafe_parse(const char *body, size_t len, char **ret_leader);

/* A fixed-window limit: at most `limit` requests a second. */
struct httpapi_rate {
        usec_t window;
        unsigned count;
};
bool httpapi_rate_allow(struct httpapi_rate *r, usec_t now, unsigned limit);

/* The Prometheus text exposition format (version 0.0.4). */
int httpapi_metrics_format(const struct httpapi_metrics *m, char **ret);

#endif
