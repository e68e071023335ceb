/* http-server.c: libmicrohttpd in external-epoll mode on the agent's
 * sd-event loop: its one epoll fd and its timeout are event sources, so no
 * thread can hide a blocked loop, and every answer comes from the last
 * tick's snapshot (a request never waits on PostgreSQL or the API server). */
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "clusterview.h"
#include "control-handlers.h"
#include "http-server.h"
#include "httpapi.h"
#include "pglease-build.h"
#include "util.h"

/* The most of a length-less body read (and thrown away) to answer 413. */
#define DISCARD_MAX (1024 * 1024)
#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct http_standby {
        char *name;
        bool streaming;
        uint64_t flush_lsn;
};

/* One open connection: since when it has been receiving its current
 * request (libmicrohttpd's timeout is for idleness; a client that sends
 * a byte a second is not idle). */
struct http_conn {
        struct http_conn *prev, *next;
        int fd;
        usec_t since;
        bool received;                 /* the current request is in */
        bool cut;
};

struct http_server {
        struct agent *agent;
        struct MHD_Daemon *mhd;
        sd_event_source *io, *timer, *sweep;
        struct http_conn *conns;

        /* The last tick's observation, as far as the answers need it. */
        usec_t at;                     /* 0: no tick yet */
        bool data_present, running, accepting, in_recovery, streaming;
        uint32_t timeline;
        uint64_t lsn, replay_lsn, optime_lsn;
        usec_t replay_lag;
        struct http_standby *standbys;
        size_t n_standbys;

        /* Counted from the agent's state transitions between ticks. */
        enum agent_state_kind last_kind;
        usec_t handed_to_us_at;
        uint64_t promotions, failovers, switchovers, demotes, fences;

        uint64_t requests[HTTPAPI_N_ENDPOINTS][HTTPAPI_N_CODES];
};

struct request {
        uint64_t body;
        bool answered;
};

static void standbys_free(struct http_server *h) {
        for (size_t i = 0; i < h->n_standbys; i++)
                free(h->standbys[i].name);
        h->standbys = mfree(h->standbys);
        h->n_standbys = 0;
}

static bool is_primary_kind(enum agent_state_kind k) {
        return k == AGENT_PROMOTING || k == AGENT_PRIMARY;
}

/* Promotions, fences and hand-overs are counted where the state changes;
 * a promotion within a lease duration of the lease naming us successor is
 * a switchover's, any other a failover. */
static void count_transitions(struct http_server *h, const struct observation *o, usec_t now) {
        struct agent *a = h->agent;
        enum agent_state_kind k = a->state.kind, prev = h->last_kind;

        if (o->successor && streq(o->successor, a->config.node_name))
                h->handed_to_us_at = now;
        if (k == prev)
                return;
        h->last_kind = k;
        if (is_primary_kind(k) && !is_primary_kind(prev) && prev != AGENT_STARTING) {
                h->promotions++;
                if (!h->handed_to_us_at || now - h->handed_to_us_at > a->config.lease_duration)
                        h->failovers++;
        }
        if (k == AGENT_FENCED)
                h->fences++;
        if (k == AGENT_DEMOTING) {
                if (a->state.demote_requested)
                        h->demotes++;
                else
                        h->switchovers++;
        }
}

void http_server_observed(struct agent *a, const struct observation *o) {
        struct http_server *h = a->http;
        struct http_standby *sb = NULL;
        usec_t now;

        if (!h)
                return;
        now = clock_now(a->clock);
        count_transitions(h, o, now);
        if (o->n_replicas > 0) {
                sb = calloc(o->n_replicas, sizeof *sb);
                if (!sb)
                        return;
                for (size_t i = 0; i < o->n_replicas; i++) {
                        sb[i] = (struct http_standby) { .name = strdup(strempty(o->replicas[i].name)),
                                                        .streaming = o->replicas[i].streaming,
                                                        .flush_lsn = o->replicas[i].flush_lsn };
                }
        }
        standbys_free(h);
        h->standbys = sb;
        h->n_standbys = sb ? o->n_replicas : 0;
        h->at = now;
        h->data_present = o->pg_data_present;
        h->running = o->pg_running;
        h->accepting = o->pg_accepting;
        h->in_recovery = o->pg_in_recovery;
        h->streaming = o->pg_streaming;
        h->timeline = o->pg_timeline;
        h->lsn = o->pg_lsn;
        h->replay_lsn = o->pg_replay_lsn;
        h->optime_lsn = o->optime_lsn;
        h->replay_lag = o->pg_replay_lag;
}

static void snapshot(struct http_server *h, usec_t now, struct httpapi_state *ret) {
        struct agent *a = h->agent;
        const struct election *e = &a->node.election;
        enum agent_state_kind k = a->state.kind;

        *ret = (struct httpapi_state) {
                .node = a->config.node_name,
                .cluster = a->config.cluster_name,
                .state = agent_state_to_string(k),
                .ticked = h->at > 0,
                .tick_age = now - MIN(now, h->at),
                /* A loop that has not ticked for a lease duration and two
                 * periods is stuck, whatever it is doing. */
                .liveness_bound = a->config.lease_duration + 2 * a->config.retry_period,
                .fenced = k == AGENT_FENCED || k == AGENT_STOPPED,
                .cloning = !h->data_present || k == AGENT_REJOINING,
                .pg_running = h->running,
                .pg_accepting = h->accepting,
                .pg_in_recovery = h->in_recovery,
                .pg_streaming = h->streaming,
                .timeline = h->timeline,
                .lsn = h->lsn,
                .replay_lsn = h->replay_lsn,
                .replay_lag_seconds = h->replay_lag > 0 ? (double) h->replay_lag / USEC_PER_SEC : -1,
                .lease_valid = a->have_node && e->leader && !election_lost(e, now),
                .has_lag = h->in_recovery && h->optime_lsn > 0,
                .lag_bytes = h->optime_lsn > h->lsn ? h->optime_lsn - h->lsn : 0,
                .maximum_lag = a->config.http_maximum_lag,
        };
}

/* The view `agentctl cluster show --json` prints from this agent. */
static int cluster_json(struct http_server *h, usec_t now, char **ret) {
        struct agent *a = h->agent;
        const struct election *e = &a->node.election;
        _cleanup_(clusterview_freep) struct clusterview *v = NULL;
        const struct dcs_member_list *members;
        struct dcs_member_list none = {};
        struct clusterview_source src;
        usec_t members_at = 0;
        cJSON *j = NULL;
        char *s;
        int r;

        members = control_handlers_members(a, &members_at);
        src = (struct clusterview_source) {
                .cluster = a->config.cluster_name,
                .source = "agent",
                .lease = e->observed,
                .lease_age = e->observed ? (double) (now - MIN(now, e->observed_at)) / USEC_PER_SEC : -1,
                .members = members ? members : &none,
                .now_realtime = clock_realtime(a->clock),
                .status_interval = a->config.status_interval,
                .maximum_lag = a->config.maximum_lag_on_failover,
        };
        r = clusterview_build(&src, &v);
        if (r < 0)
                return r;
        r = clusterview_to_json(v, &j);
        if (r < 0)
                return r;
        s = cJSON_Print(j);
        cJSON_Delete(j);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

static int metrics_text(struct http_server *h, usec_t now, char **ret) {
        struct agent *a = h->agent;
        const struct election *e = &a->node.election;
        _cleanup_free_ struct httpapi_standby *sb = calloc(MAX(h->n_standbys, (size_t) 1), sizeof *sb);
        _cleanup_free_ struct httpapi_promise *promises = NULL;
        size_t n_promises = 0;
        struct httpapi_state s;
        struct httpapi_metrics m;

        if (!sb)
                return -ENOMEM;
        if (a->have_state && a->state.failsafe_promises.n > 0) {
                const struct failsafe_promises *t = &a->state.failsafe_promises;

                promises = calloc(t->n, sizeof *promises);
                if (!promises)
                        return -ENOMEM;
                for (size_t i = 0; i < t->n; i++)
                        if (t->items[i].until > now)
                                promises[n_promises++] = (struct httpapi_promise) {
                                        .leader = t->items[i].leader,
                                        .seconds = (double) (t->items[i].until - now) / USEC_PER_SEC,
                                };
        }
        snapshot(h, now, &s);
        for (size_t i = 0; i < h->n_standbys; i++)
                sb[i] = (struct httpapi_standby) {
                        .name = h->standbys[i].name,
                        .streaming = h->standbys[i].streaming,
                        .lag_bytes = h->lsn > h->standbys[i].flush_lsn ? h->lsn - h->standbys[i].flush_lsn : 0,
                };
        m = (struct httpapi_metrics) {
                .s = &s,
                .version = PGLEASE_VERSION,
                .lease_known = e->observed != NULL,
                .lease_held = s.lease_valid,
                .lease_remaining_seconds = s.lease_valid ? (double) election_renew_remaining(e, now) / USEC_PER_SEC : -1,
                .lease_transitions = e->observed ? e->observed->transitions : 0,
                .paused = e->observed && e->observed->paused,
                .promotions = h->promotions,
                .failovers = h->failovers,
                .switchovers = h->switchovers,
                .demotes = h->demotes,
                .fences = h->fences,
                .api_loop = a->node.dcs.ops->request_stats ? a->node.dcs.ops->request_stats(a->node.dcs.userdata) : NULL,
                .api_renewer = a->node.have_renew_dcs && a->node.renew_dcs.ops->request_stats
                                       ? a->node.renew_dcs.ops->request_stats(a->node.renew_dcs.userdata) : NULL,
                .ticks = a->ticks,
                .failsafe_mode = a->config.failsafe_mode,
                .failsafe_active = a->have_state && a->state.failsafe_active,
                .failsafe_promises = promises,
                .n_failsafe_promises = n_promises,
                .n_standbys = s.pg_accepting && !s.pg_in_recovery ? h->n_standbys : 0,
                .standbys = sb,
                .http_requests = (const uint64_t (*)[HTTPAPI_N_CODES]) h->requests,
        };
        return httpapi_metrics_format(&m, ret);
}

static enum MHD_Result respond(struct http_server *h, struct MHD_Connection *c, int ep, int code, const char *type,
                               char *body) {
        struct MHD_Response *resp;
        enum MHD_Result ret;

        if (!body)
                body = strdup_printf("{\"error\":\"%s\"}\n", code == 500 ? "out of memory" : "error");
        if (!body)
                return MHD_NO;
        resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(body);
                return MHD_NO;
        }
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
        ret = MHD_queue_response(c, (unsigned) code, resp);
        MHD_destroy_response(resp);
        h->requests[ep][httpapi_code_index(code)]++;
        return ret;
}

static enum MHD_Result respond_error(struct http_server *h, struct MHD_Connection *c, int ep, int code, const char *msg) {
        return respond(h, c, ep, code, "application/json", strdup_printf("{\"error\":\"%s\"}\n", msg));
}

static enum MHD_Result dispatch(struct http_server *h, struct MHD_Connection *c, const char *url, const char *method) {
        usec_t now = clock_now(h->agent->clock);
        enum httpapi_probe p = httpapi_probe_from_path(url);
        int ep = p >= 0 ? (int) p : streq(url, "/cluster") ? HTTPAPI_EP_CLUSTER : streq(url, "/metrics") ? HTTPAPI_EP_METRICS : HTTPAPI_EP_OTHER;
        char *body = NULL;
        int code, r;

        if (ep == HTTPAPI_EP_OTHER)
                return respond_error(h, c, ep, MHD_HTTP_NOT_FOUND, "no such endpoint");
        if (!streq(method, MHD_HTTP_METHOD_GET) && !streq(method, MHD_HTTP_METHOD_HEAD))
                return respond_error(h, c, ep, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD");
        if (ep == HTTPAPI_EP_CLUSTER) {
                r = cluster_json(h, now, &body);
                return r < 0 ? respond(h, c, ep, 500, "application/json", NULL) : respond(h, c, ep, 200, "application/json", body);
        }
        if (ep == HTTPAPI_EP_METRICS) {
                r = metrics_text(h, now, &body);
                return r < 0 ? respond(h, c, ep, 500, "application/json", NULL) : respond(h, c, ep, 200, METRICS_CONTENT_TYPE, body);
        }
        {
                const char *lag = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND, "lag");
                uint64_t max_lag = UINT64_MAX;
                struct httpapi_state s;

                if (lag && parse_size(lag, &max_lag) < 0)
                        return respond_error(h, c, ep, MHD_HTTP_BAD_REQUEST, "lag must be a size: 16MB, 1048576");
                snapshot(h, now, &s);
                r = httpapi_probe_answer(p, &s, max_lag, &code, &body);
                if (r < 0)
                        return respond(h, c, ep, 500, "application/json", NULL);
                return respond(h, c, ep, code, "application/json", body);
        }
}

static struct http_conn *conn_of(struct MHD_Connection *c) {
        const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);

        return info ? info->socket_context : NULL;
}

static void mark_received(struct MHD_Connection *c) {
        struct http_conn *t = conn_of(c);

        if (t)
                t->received = true;
}

static void on_connection(void *cls, struct MHD_Connection *c, void **socket_context, enum MHD_ConnectionNotificationCode toe) {
        struct http_server *h = cls;
        struct http_conn *t = *socket_context;

        if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
                const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);

                t = calloc(1, sizeof *t);
                if (!t || !info) {
                        free(t);
                        return;
                }
                *t = (struct http_conn) { .fd = info->connect_fd, .since = clock_now(h->agent->clock), .next = h->conns };
                if (h->conns)
                        h->conns->prev = t;
                h->conns = t;
                *socket_context = t;
                return;
        }
        if (!t)
                return;
        if (t->prev)
                t->prev->next = t->next;
        else
                h->conns = t->next;
        if (t->next)
                t->next->prev = t->prev;
        free(t);
        *socket_context = NULL;
}

/* A request not wholly received within http_request_timeout of its start
 * (slowloris: a byte now and then) has its socket shut down; libmicrohttpd
 * sees the end of the stream and closes the connection itself. */
static int on_sweep(sd_event_source *s, uint64_t usec, void *userdata) {
        struct http_server *h = userdata;
        usec_t now = clock_now(h->agent->clock);

        for (struct http_conn *t = h->conns; t; t = t->next)
                if (!t->received && !t->cut && now - MIN(now, t->since) > h->agent->config.http_request_timeout) {
                        (void) shutdown(t->fd, SHUT_RDWR);
                        t->cut = true;
                        agent_log(h->agent, LOG_LEVEL_DEBUG, "http", "closed a connection whose request took longer than http_request_timeout");
                }
        (void) sd_event_source_set_time(s, now + USEC_PER_SEC / 2);
        return 0;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
        struct http_server *h = cls;
        struct request *rq = *con_cls;
        uint64_t max_body = h->agent->config.http_max_body;

        if (!rq) {
                const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
                uint64_t n;

                rq = calloc(1, sizeof *rq);
                if (!rq)
                        return MHD_NO;
                *con_cls = rq;
                /* Refused before a byte of it is read; the connection is
                 * closed after the answer. */
                if (len && (parse_size(len, &n) < 0 || n > max_body)) {
                        rq->answered = true;
                        mark_received(c);
                        return respond_error(h, c, HTTPAPI_EP_OTHER, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
                }
                return MHD_YES;
        }
        /* A body without a length (chunked) is discarded as it comes, and
         * answered 413 once it ends; libmicrohttpd cannot answer in the
         * middle of a body. One that goes on past DISCARD_MAX is cut off. */
        if (*upload_data_size > 0) {
                rq->body += *upload_data_size;
                *upload_data_size = 0;
                return rq->body > MAX(max_body, DISCARD_MAX) ? MHD_NO : MHD_YES;
        }
        if (rq->answered)
                return MHD_YES;
        rq->answered = true;
        mark_received(c);
        if (rq->body > max_body)
                return respond_error(h, c, HTTPAPI_EP_OTHER, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
        return dispatch(h, c, url, method);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
        struct http_server *h = cls;
        struct http_conn *t = conn_of(c);

        /* Keep-alive: the next request's time starts now. */
        if (t) {
                t->since = clock_now(h->agent->clock);
                t->received = false;
        }
        free(*con_cls);
        *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) _printf_(2, 0);
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
        struct http_server *h = cls;
        _cleanup_free_ char *msg = NULL;

        if (vasprintf(&msg, fmt, ap) < 0)
                return;
        if (msg[0] && msg[strlen(msg) - 1] == '\n')
                msg[strlen(msg) - 1] = '\0';
        agent_log(h->agent, LOG_LEVEL_DEBUG, "http", "%s", msg);
}

/* MHD's next deadline (idle connections, pending work) as a oneshot timer. */
static void rearm(struct http_server *h) {
        MHD_UNSIGNED_LONG_LONG ms;

        if (MHD_get_timeout(h->mhd, &ms) == MHD_YES) {
                usec_t now = clock_now(h->agent->clock);

                (void) sd_event_source_set_time(h->timer, now + (usec_t) ms * USEC_PER_MSEC);
                (void) sd_event_source_set_enabled(h->timer, SD_EVENT_ONESHOT);
        } else
                (void) sd_event_source_set_enabled(h->timer, SD_EVENT_OFF);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct http_server *h = userdata;

        (void) MHD_run(h->mhd);
        rearm(h);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        return on_io(NULL, -1, 0, userdata);
}

static void server_free(struct http_server *h) {
        h->io = sd_event_source_disable_unref(h->io);
        h->timer = sd_event_source_disable_unref(h->timer);
        h->sweep = sd_event_source_disable_unref(h->sweep);
        if (h->mhd)
                MHD_stop_daemon(h->mhd);
        standbys_free(h);
        free(h);
}

int http_server_attach(struct agent *a, char **reterr_msg) {
        struct sockaddr_storage addr;
        const union MHD_DaemonInfo *info;
        struct http_server *h;
        socklen_t len;
        unsigned flags = MHD_USE_EPOLL;
        int r;

        if (isempty(a->config.http_listen))
                return 0;
        if (!a->event)
                return -EINVAL;
        r = httpapi_parse_listen(a->config.http_listen, &addr, &len);
        if (r < 0)
                return set_error_msg(reterr_msg, "http_listen: %s is not ADDRESS:PORT", a->config.http_listen), r;
        /* [::] takes IPv4 too, as "0.0.0.0 and ::" would. */
        if (addr.ss_family == AF_INET6)
                flags |= IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *) &addr)->sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
        h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->agent = a;
        h->last_kind = AGENT_STARTING;
        h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
                                  MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, h,
                                  MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
                                  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) MAX(a->config.http_request_timeout / USEC_PER_SEC, (usec_t) 1),
                                  MHD_OPTION_CONNECTION_LIMIT, (unsigned) a->config.http_max_connections,
                                  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 16384,
                                  MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                                  MHD_OPTION_NOTIFY_CONNECTION, on_connection, h,
                                  MHD_OPTION_END);
        if (!h->mhd) {
                r = -errno ?: -EADDRINUSE;
                server_free(h);
                return set_error_msg(reterr_msg, "cannot listen on %s: %s", a->config.http_listen, strerror(-r)), r;
        }
        info = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
        r = info ? sd_event_add_io(a->event, &h->io, info->epoll_fd, EPOLLIN, on_io, h) : -EINVAL;
        if (r >= 0)
                r = sd_event_add_time(a->event, &h->timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_timer, h);
        if (r >= 0)
                r = sd_event_add_time_relative(a->event, &h->sweep, CLOCK_MONOTONIC, USEC_PER_SEC / 2, 0, on_sweep, h);
        if (r >= 0)
                r = sd_event_source_set_enabled(h->sweep, SD_EVENT_ON);
        if (r < 0) {
                server_free(h);
                return set_error_msg(reterr_msg, "cannot watch the HTTP server: %s", strerror(-r)), r;
        }
        a->http = h;
        rearm(h);
        agent_log(a, LOG_LEVEL_INFO, "http", "HTTP API on %s", a->config.http_listen);
        return 0;
}

void http_server_detach(struct agent *a) {
        if (!a->http)
                return;
        server_free(a->http);
        a->http = NULL;
}
