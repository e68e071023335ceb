/* failsafe-client.c: the leader's POST /failsafe to every other member, on
 * libcurl's multi interface driven by the agent's sd-event loop: no call
 * blocks the loop, each has a time limit, and an answer counts the moment
 * it arrives (docs/design.md, "Failsafe mode"). */
#include <curl/curl.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "failsafe-client.h"
#include "http-server.h"
#include "util.h"

/* What is kept of an answer's body (it is a short JSON object). */
#define ANSWER_MAX 512

struct failsafe_request {
        struct failsafe_request *next;
        struct failsafe_client *client;
        CURL *easy;
        struct curl_slist *headers;
        char *name;
        char *body;
        usec_t sent;
        char answer[ANSWER_MAX];
        size_t answer_len;
};

struct failsafe_client {
        struct agent *agent;
        CURLM *multi;
        sd_event_source *timer;
        struct failsafe_request *requests;   /* in flight */
        uint64_t asked, answered, refused;
};

static struct failsafe_request *request_free(struct failsafe_request *q) {
        if (!q)
                return NULL;
        if (q->easy) {
                if (q->client && q->client->multi)
                        (void) curl_multi_remove_handle(q->client->multi, q->easy);
                curl_easy_cleanup(q->easy);
        }
        curl_slist_free_all(q->headers);
        free(q->name);
        free(q->body);
        free(q);
        return NULL;
}

static size_t on_write(char *data, size_t size, size_t n, void *userdata) {
        struct failsafe_request *q = userdata;
        size_t len = size * n, room = sizeof q->answer - 1 - q->answer_len;

        memcpy(q->answer + q->answer_len, data, MIN(len, room));
        q->answer_len += MIN(len, room);
        q->answer[q->answer_len] = '\0';
        return len;
}

/* An answer extends the leader's safe time at once, by the same rule the
 * next tick's decide() applies (it only ever grows here; the tick may
 * lower it). */
static void extend(struct failsafe_client *c, usec_t now) {
        struct agent *a = c->agent;
        struct node *n = &a->node;
        struct observation o = { .now = now };
        usec_t until;

        if (!a->have_state || a->state.kind != AGENT_PRIMARY || !n->election.leader)
                goto done;
        if (n->election.observed)
                for (char **s = n->election.observed->failsafe; s && *s; s++)
                        if (strv_extend(&o.lease_failsafe, *s) < 0)
                                goto done;
        if (observe_failsafe(n, &o) < 0)
                goto done;
        until = decide_failsafe_until(&o, &a->state);
        if (until > n->election.failsafe_until) {
                a->state.failsafe_until = until;
                n->election.failsafe_until = until;
                renewer_failsafe(n->renewer, until);
        }
done:
        observation_done(&o);
}

static void finished(struct failsafe_client *c, CURLMsg *m) {
        struct failsafe_request **p, *q = NULL;
        long code = 0;

        for (p = &c->requests; *p; p = &(*p)->next)
                if ((*p)->easy == m->easy_handle) {
                        q = *p;
                        *p = q->next;
                        break;
                }
        if (!q)
                return;
        (void) curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &code);
        if (m->data.result == CURLE_OK && code == 200) {
                c->answered++;
                if (c->agent->have_node && node_failsafe_answered(&c->agent->node, q->name, q->sent) >= 0)
                        extend(c, clock_now(c->agent->clock));
        } else {
                c->refused++;
                agent_log(c->agent, LOG_LEVEL_DEBUG, "failsafe", "%s did not answer POST /failsafe: %s",
                          q->name, m->data.result != CURLE_OK ? curl_easy_strerror(m->data.result) : strempty(q->answer));
        }
        request_free(q);
}

static void drain(struct failsafe_client *c) {
        CURLMsg *m;
        int left;

        while ((m = curl_multi_info_read(c->multi, &left)))
                if (m->msg == CURLMSG_DONE)
                        finished(c, m);
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct failsafe_client *c = userdata;
        int running, what = 0;

        if (revents & EPOLLIN)
                what |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                what |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                what |= CURL_CSELECT_ERR;
        (void) curl_multi_socket_action(c->multi, fd, what, &running);
        drain(c);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        struct failsafe_client *c = userdata;
        int running;

        (void) curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        drain(c);
        return 0;
}

/* libcurl says which sockets to watch for what; each one is an sd-event
 * source of its own, assigned to the socket. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userdata, void *socketp) {
        struct failsafe_client *c = userdata;
        sd_event_source *src = socketp;
        uint32_t events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);

        if (what == CURL_POLL_REMOVE) {
                (void) sd_event_source_disable_unref(src);
                (void) curl_multi_assign(c->multi, fd, NULL);
                return 0;
        }
        if (src)
                return sd_event_source_set_io_events(src, events) < 0 ? -1 : 0;
        if (sd_event_add_io(c->agent->event, &src, fd, events, on_io, c) < 0)
                return -1;
        (void) curl_multi_assign(c->multi, fd, src);
        return 0;
}

static int on_timeout(CURLM *multi, long ms, void *userdata) {
        struct failsafe_client *c = userdata;

        if (ms < 0)
                return sd_event_source_set_enabled(c->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        if (sd_event_source_set_time(c->timer, clock_now(c->agent->clock) + (usec_t) ms * USEC_PER_MSEC) < 0 ||
            sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT) < 0)
                return -1;
        return 0;
}

static bool in_flight(const struct failsafe_client *c, const char *name) {
        for (const struct failsafe_request *q = c->requests; q; q = q->next)
                if (streq(q->name, name))
                        return true;
        return false;
}

static int ask_one(struct failsafe_client *c, const struct dcs_member *m, const char *token, usec_t timeout) {
        struct agent *a = c->agent;
        _cleanup_free_ char *url = NULL, *auth = NULL;
        struct failsafe_request *q;
        long ms = (long) MAX(timeout / USEC_PER_MSEC, (usec_t) 100);

        url = strchr(m->host, ':') ? strdup_printf("http://[%s]:%d/failsafe", m->host, m->api_port)
                                   : strdup_printf("http://%s:%d/failsafe", m->host, m->api_port);
        auth = strdup_printf("Authorization: Bearer %s", token);
        q = calloc(1, sizeof *q);
        if (!url || !auth || !q) {
                free(q);
                return -ENOMEM;
        }
        q->client = c;
        q->name = strdup(m->name);
        q->body = strdup_printf("{\"leader\":\"%s\"}", a->config.node_name);
        q->easy = curl_easy_init();
        q->headers = curl_slist_append(NULL, "Content-Type: application/json");
        if (q->headers)
                q->headers = curl_slist_append(q->headers, auth);
        explicit_bzero(auth, strlen(auth));
        if (!q->name || !q->body || !q->easy || !q->headers) {
                request_free(q);
                return -ENOMEM;
        }
        (void) curl_easy_setopt(q->easy, CURLOPT_URL, url);
        (void) curl_easy_setopt(q->easy, CURLOPT_PROTOCOLS_STR, "http");
        (void) curl_easy_setopt(q->easy, CURLOPT_POSTFIELDS, q->body);
        (void) curl_easy_setopt(q->easy, CURLOPT_HTTPHEADER, q->headers);
        (void) curl_easy_setopt(q->easy, CURLOPT_TIMEOUT_MS, ms);
        (void) curl_easy_setopt(q->easy, CURLOPT_CONNECTTIMEOUT_MS, ms);
        (void) curl_easy_setopt(q->easy, CURLOPT_NOSIGNAL, 1L);
        (void) curl_easy_setopt(q->easy, CURLOPT_NOPROXY, "*");
        (void) curl_easy_setopt(q->easy, CURLOPT_WRITEFUNCTION, on_write);
        (void) curl_easy_setopt(q->easy, CURLOPT_WRITEDATA, q);
        (void) curl_easy_setopt(q->easy, CURLOPT_PRIVATE, q);
        /* The question's send time: the member's promise runs from its
         * answer, later; our safe time from this, earlier. */
        q->sent = clock_now(a->clock);
        if (curl_multi_add_handle(c->multi, q->easy) != CURLM_OK) {
                request_free(q);
                return -EIO;
        }
        q->next = c->requests;
        c->requests = q;
        c->asked++;
        return 0;
}

/* node's failsafe_ask hook: one question to every other member of the last
 * view that has not answered the previous one yet. A member without an
 * address or HTTP port cannot answer: the leader then fences as it would
 * without failsafe mode. */
static void ask(void *userdata) {
        struct failsafe_client *c = userdata;
        struct agent *a = c->agent;
        const char *token = http_server_failsafe_token(a);
        const struct dcs_member_list *members = a->node.members;
        /* An answer that comes later than a retry period is of no use: the
         * next question has gone out by then. */
        usec_t timeout = MIN(a->config.retry_period, a->config.api_timeout);

        if (!token || !members)
                return;
        for (size_t i = 0; i < members->n; i++) {
                const struct dcs_member *m = &members->members[i];

                if (streq(m->name, a->config.node_name) || isempty(m->host) || m->api_port <= 0 || in_flight(c, m->name))
                        continue;
                if (ask_one(c, m, token, timeout) < 0)
                        agent_log(a, LOG_LEVEL_WARNING, "failsafe", "cannot ask %s: out of memory", m->name);
        }
}

int failsafe_client_attach(struct agent *a, char **reterr_msg) {
        struct failsafe_client *c;
        int r;

        if (!a->config.failsafe_mode || !a->have_node)
                return 0;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->agent = a;
        c->multi = curl_multi_init();
        if (!c->multi) {
                free(c);
                return set_error_msg(reterr_msg, "failsafe: cannot create a libcurl multi handle"), -ENOMEM;
        }
        (void) curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        (void) curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
        (void) curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timeout);
        (void) curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
        r = sd_event_add_time(a->event, &c->timer, CLOCK_MONOTONIC, UINT64_MAX, 0, on_timer, c);
        if (r < 0) {
                curl_multi_cleanup(c->multi);
                free(c);
                return set_error_msg(reterr_msg, "failsafe: cannot add a timer: %s", strerror(-r)), r;
        }
        (void) sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        a->failsafe = c;
        a->node.failsafe_ask = ask;
        a->node.failsafe_userdata = c;
        return 0;
}

void failsafe_client_detach(struct agent *a) {
        struct failsafe_client *c = a->failsafe;

        if (!c)
                return;
        while (c->requests) {
                struct failsafe_request *q = c->requests;

                c->requests = q->next;
                request_free(q);
        }
        curl_multi_cleanup(c->multi);
        c->timer = sd_event_source_disable_unref(c->timer);
        free(c);
        a->failsafe = NULL;
        if (a->have_node) {
                a->node.failsafe_ask = NULL;
                a->node.failsafe_userdata = NULL;
        }
}
