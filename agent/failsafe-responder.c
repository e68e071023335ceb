/* failsafe-responder.c: this member's answers to a leader's POST /failsafe,
 * on failsafe_listen, served by libmicrohttpd's own thread. During an API
 * server outage the control loop spends most of each tick waiting on that
 * server; an answer that waited for the loop would come too late for the
 * leader, which then fences. The promises live here under a mutex; the
 * loop copies them into its state every tick (decide() obeys them), and an
 * acquisition of the Lease checks them here at the last moment, so that no
 * promise can slip in between that check and the write. */
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "failsafe-client.h"
#include "failsafe-responder.h"
#include "httpapi.h"
#include "util.h"

/* A leader asks each member once a retry period; more than this a second
 * (from everyone, right token or wrong) is refused. */
#define FAILSAFE_RATE_LIMIT 20
#define FAILSAFE_MAX_CONNECTIONS 16
/* failsafe_token_file is read again this often: a mounted Secret that was
 * rotated is seen without a restart. */
#define TOKEN_RECHECK (10 * USEC_PER_SEC)
/* After a rotation the previous token is still accepted, and still sent as
 * a leader, this long: the kubelet updates each pod's copy of a Secret at
 * its own time (its sync period and cache, a minute or two), and until
 * every member has the new one, only the previous one is known to all. */
#define TOKEN_GRACE (5 * 60 * USEC_PER_SEC)

struct failsafe_responder {
        struct agent *agent;             /* config, clock and log only: the loop owns the rest */
        struct MHD_Daemon *mhd;
        char *self;
        uint64_t max_body;
        usec_t request_timeout;
        usec_t lease_duration;

        pthread_mutex_t lock;
        /* The token, and the one it replaced until previous_until (set by
         * the loop, read by the answers). */
        char *token;
        char *previous;
        usec_t previous_until;
        usec_t token_checked;            /* the loop's last read of failsafe_token_file */
        bool token_unreadable;           /* that read failed (logged once) */
        /* From the loop each tick: what decides whether we may promise. */
        enum agent_state_kind kind;
        bool leading;
        bool acquiring;                  /* an acquisition of the Lease is under way */
        struct failsafe_promises promises;
        struct httpapi_rate rate;
};

struct request {
        usec_t started;
        uint64_t size;
        char *body;
};

static enum MHD_Result respond(struct MHD_Connection *c, unsigned code, char *body) {
        struct MHD_Response *resp;
        enum MHD_Result ret;

        if (!body)
                return MHD_NO;
        resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
        if (!resp) {
                free(body);
                return MHD_NO;
        }
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
        if (code == MHD_HTTP_METHOD_NOT_ALLOWED)
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, "POST");
        if (code == MHD_HTTP_UNAUTHORIZED)
                (void) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
        ret = MHD_queue_response(c, code, resp);
        MHD_destroy_response(resp);
        return ret;
}

static enum MHD_Result refuse(struct MHD_Connection *c, unsigned code, const char *why) {
        return respond(c, code, strdup_printf("{\"error\":\"%s\"}\n", why));
}

/* The request, wholly received. Nothing changes unless the token is right
 * and this member can promise. */
static enum MHD_Result answer(struct failsafe_responder *f, struct MHD_Connection *c, const char *url, const char *method,
                              const struct request *rq) {
        struct agent *a = f->agent;
        usec_t now = clock_now(a->clock);
        _cleanup_free_ char *leader = NULL;
        bool allowed, current, previous;
        const char *auth;
        int r;

        if (!streq(url, "/failsafe"))
                return refuse(c, MHD_HTTP_NOT_FOUND, "no such endpoint");
        if (!streq(method, MHD_HTTP_METHOD_POST))
                return refuse(c, MHD_HTTP_METHOD_NOT_ALLOWED, "only POST");
        if (rq->size > f->max_body)
                return refuse(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
        /* Before the token: guessing is as slow as asking. */
        pthread_mutex_lock(&f->lock);
        allowed = httpapi_rate_allow(&f->rate, now, FAILSAFE_RATE_LIMIT);
        auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
        /* Both compared, always: the time taken says nothing of which. */
        current = httpapi_token_matches(auth, f->token);
        previous = f->previous && httpapi_token_matches(auth, f->previous) && now < f->previous_until;
        pthread_mutex_unlock(&f->lock);
        if (!allowed)
                return refuse(c, MHD_HTTP_TOO_MANY_REQUESTS, "too many requests");
        if (!current && !previous)
                return refuse(c, MHD_HTTP_UNAUTHORIZED, "missing or wrong token");
        if (httpapi_failsafe_parse(strempty(rq->body), rq->body ? rq->size : 0, &leader) < 0)
                return refuse(c, MHD_HTTP_BAD_REQUEST, "the body must be {\\\"leader\\\": NAME}");
        pthread_mutex_lock(&f->lock);
        r = f->acquiring ? -EBUSY
                         : failsafe_promise_record(&f->promises, f->self, f->kind, f->leading, leader, f->lease_duration, now);
        pthread_mutex_unlock(&f->lock);
        if (r == -EBUSY)
                return refuse(c, MHD_HTTP_CONFLICT, "this member leads or is taking the lease");
        if (r < 0)
                return refuse(c, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
        return respond(c, MHD_HTTP_OK, strdup_printf("{\"name\":\"%s\",\"promised_ms\":%" PRIu64 "}\n", f->self,
                                                     f->lease_duration / USEC_PER_MSEC));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls) {
        struct failsafe_responder *f = cls;
        struct request *rq = *con_cls;

        if (!rq) {
                const char *len = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
                uint64_t n;

                rq = calloc(1, sizeof *rq);
                if (!rq)
                        return MHD_NO;
                *con_cls = rq;
                rq->started = clock_now(f->agent->clock);
                /* Refused before a byte of it is read. */
                if (len && (parse_size(len, &n) < 0 || n > f->max_body)) {
                        rq->size = UINT64_MAX;
                        return refuse(c, MHD_HTTP_CONTENT_TOO_LARGE, "request body too large");
                }
                return MHD_YES;
        }
        if (*upload_data_size > 0) {
                /* Past the limit (chunked), or a body that trickles in for
                 * longer than http_request_timeout (a silent one meets
                 * libmicrohttpd's idle timeout): cut off. */
                if (rq->size == UINT64_MAX || rq->size + *upload_data_size > f->max_body ||
                    clock_now(f->agent->clock) - rq->started > f->request_timeout)
                        return MHD_NO;
                char *grown = realloc(rq->body, rq->size + *upload_data_size + 1);

                if (!grown)
                        return MHD_NO;
                memcpy(grown + rq->size, upload_data, *upload_data_size);
                rq->size += *upload_data_size;
                grown[rq->size] = '\0';
                rq->body = grown;
                *upload_data_size = 0;
                return MHD_YES;
        }
        if (rq->size == UINT64_MAX)
                return MHD_YES;
        return answer(f, c, url, method, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
        struct request *rq = *con_cls;

        if (rq)
                free(rq->body);
        free(rq);
        *con_cls = NULL;
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap) _printf_(2, 0);
static void on_mhd_log(void *cls, const char *fmt, va_list ap) {
        /* The agent's logger is one write(2) a line: safe from this thread. */
        struct failsafe_responder *f = cls;
        _cleanup_free_ char *msg = NULL;

        if (vasprintf(&msg, fmt, ap) < 0)
                return;
        msg[strcspn(msg, "\n")] = '\0';
        log_write(&f->agent->log, clock_realtime(f->agent->clock), LOG_LEVEL_DEBUG, "failsafe", "%s", msg);
}

/* The token from failsafe_token_file (its first line) or failsafe_token. */
static int load_token(const struct config *c, char **ret, char **reterr_msg) {
        _cleanup_free_ char *text = NULL;
        size_t size;
        int r;

        if (isempty(c->failsafe_token_file)) {
                text = strdup(strempty(c->failsafe_token));
                if (!text)
                        return -ENOMEM;
        } else {
                r = read_full_file(c->failsafe_token_file, &text, &size);
                if (r < 0)
                        return set_error_msg(reterr_msg, "failsafe_token_file: cannot read %s: %s", c->failsafe_token_file,
                                             strerror(-r)), r;
                text[strcspn(text, "\r\n")] = '\0';
        }
        if (isempty(text))
                return set_error_msg(reterr_msg, "the token (%s) is empty",
                                     isempty(c->failsafe_token_file) ? "failsafe_token" : c->failsafe_token_file), -EINVAL;
        *ret = TAKE_PTR(text);
        return 0;
}

static void responder_free(struct failsafe_responder *f) {
        if (f->mhd)
                MHD_stop_daemon(f->mhd);
        failsafe_promises_done(&f->promises);
        pthread_mutex_destroy(&f->lock);
        f->token = erase_and_free(f->token);
        f->previous = erase_and_free(f->previous);
        free(f->self);
        free(f);
}

int failsafe_responder_attach(struct agent *a, char **reterr_msg) {
        struct sockaddr_storage addr;
        struct failsafe_responder *f;
        unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
        socklen_t len;
        int r;

        if (!a->config.failsafe_mode)
                return 0;
        r = httpapi_parse_listen(a->config.failsafe_listen, &addr, &len);
        if (r < 0)
                return set_error_msg(reterr_msg, "failsafe_listen: %s is not ADDRESS:PORT", a->config.failsafe_listen), r;
        if (addr.ss_family == AF_INET6)
                flags |= IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *) &addr)->sin6_addr) ? MHD_USE_DUAL_STACK : MHD_USE_IPv6;
        f = calloc(1, sizeof *f);
        if (!f)
                return -ENOMEM;
        pthread_mutex_init(&f->lock, NULL);
        f->agent = a;
        f->kind = AGENT_STARTING;
        f->max_body = a->config.http_max_body;
        f->request_timeout = a->config.http_request_timeout;
        f->lease_duration = a->config.lease_duration;
        f->self = strdup(a->config.node_name);
        if (!f->self) {
                responder_free(f);
                return -ENOMEM;
        }
        r = load_token(&a->config, &f->token, reterr_msg);
        if (r < 0) {
                responder_free(f);
                return r;
        }
        f->token_checked = clock_now(a->clock);
        f->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, f,
                                  MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, f,
                                  MHD_OPTION_SOCK_ADDR, (struct sockaddr *) &addr,
                                  MHD_OPTION_CONNECTION_TIMEOUT, (unsigned) MAX(a->config.http_request_timeout / USEC_PER_SEC, (usec_t) 1),
                                  MHD_OPTION_CONNECTION_LIMIT, (unsigned) FAILSAFE_MAX_CONNECTIONS,
                                  MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t) 16384,
                                  MHD_OPTION_NOTIFY_COMPLETED, on_completed, f,
                                  MHD_OPTION_END);
        if (!f->mhd) {
                r = -errno ?: -EADDRINUSE;
                responder_free(f);
                return set_error_msg(reterr_msg, "cannot listen on %s: %s", a->config.failsafe_listen, strerror(-r)), r;
        }
        a->failsafe_responder = f;
        a->node.failsafe_acquire = failsafe_responder_acquire;
        a->node.failsafe_userdata = f;
        agent_log(a, LOG_LEVEL_INFO, "failsafe", "answering POST /failsafe on %s", a->config.failsafe_listen);
        return 0;
}

void failsafe_responder_detach(struct agent *a) {
        if (!a->failsafe_responder)
                return;
        if (a->have_node) {
                a->node.failsafe_acquire = NULL;
                a->node.failsafe_userdata = NULL;
        }
        responder_free(a->failsafe_responder);
        a->failsafe_responder = NULL;
}

/* Only the loop writes the tokens: it reads them without the lock. */
const char *failsafe_responder_token(const struct agent *a) {
        const struct failsafe_responder *f = a->failsafe_responder;

        if (!f)
                return NULL;
        return f->previous && clock_now(a->clock) < f->previous_until ? f->previous : f->token;
}

/* failsafe_token_file again, every TOKEN_RECHECK: a rotated Secret. */
static void reload_token(struct agent *a, struct failsafe_responder *f, usec_t now) {
        _cleanup_free_ char *err = NULL;
        char *fresh = NULL, *old;
        int r;

        if (isempty(a->config.failsafe_token_file) || now < f->token_checked + TOKEN_RECHECK)
                return;
        f->token_checked = now;
        r = load_token(&a->config, &fresh, &err);
        if (r < 0) {
                if (!f->token_unreadable)
                        agent_log(a, LOG_LEVEL_WARNING, "failsafe", "%s; keeping the token read before", strempty(err));
                f->token_unreadable = true;
                return;
        }
        if (f->token_unreadable)
                agent_log(a, LOG_LEVEL_INFO, "failsafe", "%s readable again", a->config.failsafe_token_file);
        f->token_unreadable = false;
        if (streq(fresh, f->token)) {
                erase_and_free(fresh);
                return;
        }
        pthread_mutex_lock(&f->lock);
        old = f->previous;
        f->previous = f->token;
        f->previous_until = now + TOKEN_GRACE;
        f->token = fresh;
        pthread_mutex_unlock(&f->lock);
        erase_and_free(old);
        agent_log(a, LOG_LEVEL_INFO, "failsafe",
                  "new token in %s: the previous one is still accepted, and sent, for %u s",
                  a->config.failsafe_token_file, (unsigned) (TOKEN_GRACE / USEC_PER_SEC));
}

void failsafe_responder_sync(struct agent *a) {
        struct failsafe_responder *f = a->failsafe_responder;
        const char *send;

        if (!f || !a->have_state)
                return;
        reload_token(a, f, clock_now(a->clock));
        send = failsafe_responder_token(a);
        if (send)
                failsafe_client_set_tokens(a, send, send == f->token ? NULL : f->token);
        pthread_mutex_lock(&f->lock);
        f->kind = a->state.kind;
        f->leading = a->have_node && a->node.election.leader;
        (void) failsafe_promises_copy(&f->promises, &a->state.failsafe_promises);
        pthread_mutex_unlock(&f->lock);
}

int failsafe_responder_acquire(void *userdata, const char *holder, bool begin, bool took) {
        struct failsafe_responder *f = userdata;
        usec_t now = clock_now(f->agent->clock);
        int r = 0;

        pthread_mutex_lock(&f->lock);
        if (!begin) {
                f->acquiring = false;
                f->leading = f->leading || took;
        } else if (!isempty(holder) && failsafe_promise_until(&f->promises, holder, now) > 0)
                r = -EBUSY;
        else
                f->acquiring = true;
        pthread_mutex_unlock(&f->lock);
        return r;
}
