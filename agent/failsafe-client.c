/* failsafe-client.c: the leader's POST /failsafe to every other member, on
 * libcurl's multi interface in a thread of its own: the control loop may
 * wait on the very API server that is down (a member record, an event),
 * and the questions must go out every retry period all the same. Each one
 * has a time limit, and an answer moves the renewer's deadline the moment
 * it arrives, by decide()'s own rule (docs/design.md, "Failsafe mode"). */
#include <curl/curl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "agent.h"
#include "failsafe-client.h"
#include "failsafe-responder.h"
#include "util.h"

/* What is kept of an answer's body (it is a short JSON object). */
#define ANSWER_MAX 512
/* The longest the thread sleeps without looking at its flags. */
#define POLL_MAX_MS 100

struct failsafe_member {
        char *name;
        char *host;
        int failsafe_port;
};

struct failsafe_request {
        struct failsafe_request *next;
        CURL *easy;
        struct curl_slist *headers;
        char *name;
        char *body;
        usec_t sent;
        bool alternate;                      /* carries the alternate token: a second try */
        char answer[ANSWER_MAX];
        size_t answer_len;
};

struct failsafe_client {
        const struct clock_ops *clock;
        const struct logger *log;
        struct renewer *renewer;
        char *self;
        /* Under lock. For a grace period after a rotation (the
         * responder's) token is the previous one and alternate the new:
         * a member that answers 401 to one is asked again with the other
         * (one that restarted knows only the new, one whose copy of the
         * Secret is late only the previous). */
        char *token;
        char *alternate;
        CURLM *multi;                        /* the thread's only */
        struct failsafe_request *requests;   /* in flight; the thread's only */
        pthread_t thread;
        bool have_thread;

        pthread_mutex_t lock;
        /* From the loop, each tick (failsafe_client_tick()). */
        bool quit;
        bool asking;                         /* this tick's decide() asked: we lead as the primary */
        usec_t loop_seen;
        usec_t retry_period;
        struct decide_options opt;           /* name borrowed from self */
        struct failsafe_member *view;        /* the last member list read */
        size_t n_view;
        char **published;                    /* the Lease's pglease.io/failsafe */
        usec_t next_ask;
        /* To the loop (failsafe_client_collect()). */
        struct failsafe_answer *answers;
        size_t n_answers;
        usec_t pushed;                       /* the last failsafe_until handed to the renewer */
        uint64_t asked, answered, refused;
};

static void view_free(struct failsafe_client *c) {
        for (size_t i = 0; i < c->n_view; i++) {
                free(c->view[i].name);
                free(c->view[i].host);
        }
        c->view = mfree(c->view);
        c->n_view = 0;
        strv_free(c->published);
        c->published = NULL;
}

static void answers_free(struct failsafe_client *c) {
        for (size_t i = 0; i < c->n_answers; i++)
                free(c->answers[i].name);
        c->answers = mfree(c->answers);
        c->n_answers = 0;
}

static struct failsafe_request *request_free(struct failsafe_client *c, struct failsafe_request *q) {
        if (!q)
                return NULL;
        if (q->easy) {
                (void) curl_multi_remove_handle(c->multi, q->easy);
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

static void log_line(struct failsafe_client *c, enum log_level level, const char *fmt, ...) _printf_(3, 4);
static void log_line(struct failsafe_client *c, enum log_level level, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        log_writev(c->log, clock_realtime(c->clock), level, "failsafe", fmt, ap);
        va_end(ap);
}

/* Under lock: the members to ask (view and published list, self
 * excepted) with their answers, as decide() sees them. */
static int snapshot(struct failsafe_client *c, usec_t now, struct observation *ret) {
        struct observation o = { .now = now, .failsafe_view = true };
        size_t max = c->n_view + strv_length(c->published);

        o.failsafe = calloc(MAX(max, (size_t) 1), sizeof *o.failsafe);
        if (!o.failsafe)
                return -ENOMEM;
        for (size_t i = 0; i < max; i++) {
                const char *name = i < c->n_view ? c->view[i].name : c->published[i - c->n_view];
                bool dup = false;

                for (size_t k = 0; k < o.n_failsafe; k++)
                        dup = dup || streq(o.failsafe[k].name, name);
                if (dup)
                        continue;
                o.failsafe[o.n_failsafe] = (struct failsafe_answer) { .name = strdup(name), .in_view = i < c->n_view };
                if (!o.failsafe[o.n_failsafe].name) {
                        observation_done(&o);
                        return -ENOMEM;
                }
                for (size_t k = 0; k < c->n_answers; k++)
                        if (streq(c->answers[k].name, name))
                                o.failsafe[o.n_failsafe].answered_sent = c->answers[k].answered_sent;
                o.n_failsafe++;
        }
        *ret = o;
        return 0;
}

/* Under lock: member `name` answered the question sent at `sent`; returns
 * the leader's new safe time by decide_failsafe_until() (0: none). */
static usec_t answered(struct failsafe_client *c, const char *name, usec_t sent, usec_t now) {
        struct agent_state st = { .opt = c->opt };
        struct observation o;
        usec_t until = 0;
        bool found = false;

        for (size_t i = 0; i < c->n_answers; i++)
                if (streq(c->answers[i].name, name)) {
                        c->answers[i].answered_sent = MAX(c->answers[i].answered_sent, sent);
                        found = true;
                }
        if (!found) {
                struct failsafe_answer *grown = realloc(c->answers, (c->n_answers + 1) * sizeof *grown);
                char *copy = strdup(name);

                if (grown)
                        c->answers = grown;
                if (!grown || !copy) {
                        free(copy);
                        return 0;
                }
                c->answers[c->n_answers++] = (struct failsafe_answer) { .name = copy, .answered_sent = sent };
        }
        if (snapshot(c, now, &o) < 0)
                return 0;
        until = decide_failsafe_until(&o, &st);
        observation_done(&o);
        return until;
}

static int ask_one(struct failsafe_client *c, const struct failsafe_member *m, usec_t timeout, usec_t now,
                   bool alternate);

static void finished(struct failsafe_client *c, CURLMsg *m) {
        struct failsafe_request **p, *q = NULL;
        usec_t until = 0;
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
        pthread_mutex_lock(&c->lock);
        if (m->data.result == CURLE_OK && code == 200) {
                c->answered++;
                /* An answer extends the leader's safe time at once: only
                 * while it still leads as the primary (the loop's last
                 * word), and only ever upwards here (the tick sets it). */
                if (c->asking) {
                        until = answered(c, q->name, q->sent, clock_now(c->clock));
                        if (until > c->pushed)
                                c->pushed = until;
                        else
                                until = 0;
                }
        } else if (m->data.result == CURLE_OK && code == 401 && !q->alternate && c->alternate && c->asking) {
                /* Mid-rotation: the other token, at once. */
                const struct failsafe_member *member = NULL;

                for (size_t i = 0; i < c->n_view; i++)
                        if (streq(c->view[i].name, q->name))
                                member = &c->view[i];
                if (!member || ask_one(c, member, c->opt.renew_deadline, clock_now(c->clock), true) < 0)
                        c->refused++;
        } else
                c->refused++;
        pthread_mutex_unlock(&c->lock);
        if (until > 0)
                renewer_failsafe(c->renewer, until);
        if (m->data.result != CURLE_OK || code != 200)
                log_line(c, LOG_LEVEL_DEBUG, "%s did not answer POST /failsafe: %s", q->name,
                         m->data.result != CURLE_OK ? curl_easy_strerror(m->data.result) : strempty(q->answer));
        request_free(c, q);
}

static bool in_flight(const struct failsafe_client *c, const char *name) {
        for (const struct failsafe_request *q = c->requests; q; q = q->next)
                if (streq(q->name, name))
                        return true;
        return false;
}

static int ask_one(struct failsafe_client *c, const struct failsafe_member *m, usec_t timeout, usec_t now,
                   bool alternate) {
        _cleanup_free_ char *url = NULL, *auth = NULL;
        struct failsafe_request *q;
        long ms = (long) MAX(timeout / USEC_PER_MSEC, (usec_t) 100);

        url = strchr(m->host, ':') ? strdup_printf("http://[%s]:%d/failsafe", m->host, m->failsafe_port)
                                   : strdup_printf("http://%s:%d/failsafe", m->host, m->failsafe_port);
        auth = strdup_printf("Authorization: Bearer %s", alternate ? c->alternate : c->token);
        q = calloc(1, sizeof *q);
        if (!url || !auth || !q) {
                free(q);
                if (auth)
                        explicit_bzero(auth, strlen(auth));
                return -ENOMEM;
        }
        q->alternate = alternate;
        q->name = strdup(m->name);
        q->body = strdup_printf("{\"leader\":\"%s\"}", c->self);
        q->easy = curl_easy_init();
        q->headers = curl_slist_append(NULL, "Content-Type: application/json");
        if (q->headers)
                q->headers = curl_slist_append(q->headers, auth);
        explicit_bzero(auth, strlen(auth));
        if (!q->name || !q->body || !q->easy || !q->headers) {
                request_free(c, q);
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
        /* The question's time: the member's promise runs from its answer,
         * later; our safe time from this, earlier. */
        q->sent = now;
        if (curl_multi_add_handle(c->multi, q->easy) != CURLM_OK) {
                request_free(c, q);
                return -EIO;
        }
        q->next = c->requests;
        c->requests = q;
        return 0;
}

/* Under lock, when a round is due: one question to every member of the
 * view that has not answered the previous one yet. A member without an
 * address or HTTP port cannot answer: the leader then fences as it would
 * without failsafe mode. An answer later than renew_deadline is of no
 * use: that is each question's time limit. */
static void ask_round(struct failsafe_client *c, usec_t now) {
        for (size_t i = 0; i < c->n_view; i++) {
                const struct failsafe_member *m = &c->view[i];

                if (streq(m->name, c->self) || isempty(m->host) || m->failsafe_port <= 0 || in_flight(c, m->name))
                        continue;
                if (ask_one(c, m, c->opt.renew_deadline, now, false) < 0)
                        c->refused++;
                else
                        c->asked++;
        }
}

static void *client_main(void *userdata) {
        struct failsafe_client *c = userdata;

        for (;;) {
                usec_t now = clock_now(c->clock), wait = POLL_MAX_MS * USEC_PER_MSEC;
                CURLMsg *m;
                int running, left;

                pthread_mutex_lock(&c->lock);
                if (c->quit) {
                        pthread_mutex_unlock(&c->lock);
                        break;
                }
                /* A loop that stopped ticking (wedged, not frozen: a frozen
                 * process freezes this thread too) asks nobody: its renewer
                 * stops renewing after RENEWER_LOOP_SILENCE_LIMIT too. */
                if (c->asking && now - MIN(now, c->loop_seen) < RENEWER_LOOP_SILENCE_LIMIT && now >= c->next_ask) {
                        ask_round(c, now);
                        c->next_ask = now + c->retry_period;
                }
                if (c->asking && c->next_ask > now)
                        wait = MIN(wait, c->next_ask - now);
                pthread_mutex_unlock(&c->lock);

                (void) curl_multi_perform(c->multi, &running);
                while ((m = curl_multi_info_read(c->multi, &left)))
                        if (m->msg == CURLMSG_DONE)
                                finished(c, m);
                (void) curl_multi_poll(c->multi, NULL, 0, (int) MAX(wait / USEC_PER_MSEC, (usec_t) 1), NULL);
        }
        while (c->requests) {
                struct failsafe_request *q = c->requests;

                c->requests = q->next;
                request_free(c, q);
        }
        return NULL;
}

void failsafe_client_tick(struct agent *a, bool asking) {
        struct failsafe_client *c = a->failsafe;
        const struct dcs_member_list *members = a->node.members;
        const struct dcs_leader *lease = a->node.election.observed;
        struct failsafe_member *view = NULL;
        size_t n_view = 0;
        char **published = NULL;

        if (!c)
                return;
        if (asking && members && members->n > 0) {
                view = calloc(members->n, sizeof *view);
                for (size_t i = 0; view && i < members->n; i++) {
                        const struct dcs_member *m = &members->members[i];

                        view[n_view] = (struct failsafe_member) { .name = strdup(m->name), .host = strdup(strempty(m->host)),
                                                                  .failsafe_port = m->failsafe_port };
                        n_view++;
                        if (!view[n_view - 1].name || !view[n_view - 1].host)
                                asking = false;
                }
                if (!view)
                        asking = false;
        }
        for (char **s = lease ? lease->failsafe : NULL; asking && s && *s; s++)
                if (strv_extend(&published, *s) < 0)
                        asking = false;
        pthread_mutex_lock(&c->lock);
        c->loop_seen = clock_now(a->clock);
        c->retry_period = a->config.retry_period;
        c->opt = a->state.opt;
        c->opt.name = c->self;
        view_free(c);
        c->view = view;
        c->n_view = n_view;
        c->published = published;
        /* Answers belong to one term as the primary: they go with it. */
        if (!asking) {
                answers_free(c);
                c->pushed = 0;
        }
        if (asking && !c->asking)
                c->next_ask = 0;
        c->asking = asking;
        pthread_mutex_unlock(&c->lock);
        if (!asking)
                return;
        (void) curl_multi_wakeup(c->multi);
}

/* *slot = a copy of value (NULL: none) unless it is that already; the
 * old string is returned to be erased outside the lock. */
static char *swap_in(char **slot, const char *value) {
        char *copy, *old;

        if ((!*slot && !value) || (*slot && value && streq(*slot, value)))
                return NULL;
        copy = value ? strdup(value) : NULL;
        if (value && !copy)
                return NULL;
        old = *slot;
        *slot = copy;
        return old;
}

void failsafe_client_set_tokens(struct agent *a, const char *token, const char *alternate) {
        struct failsafe_client *c = a->failsafe;
        char *old_token, *old_alternate;

        if (!c || !token)
                return;
        pthread_mutex_lock(&c->lock);
        old_token = swap_in(&c->token, token);
        old_alternate = swap_in(&c->alternate, alternate);
        pthread_mutex_unlock(&c->lock);
        erase_and_free(old_token);
        erase_and_free(old_alternate);
}

void failsafe_client_collect(struct agent *a) {
        struct failsafe_client *c = a->failsafe;

        if (!c)
                return;
        pthread_mutex_lock(&c->lock);
        for (size_t i = 0; i < c->n_answers; i++)
                (void) node_failsafe_answered(&a->node, c->answers[i].name, c->answers[i].answered_sent);
        /* What the answers since the last tick gave the renewer, the
         * loop's own lease clock gets before it judges the lease (observe):
         * a tick that waited on the API server must not find the last
         * tick's failsafe deadline passed when fresher answers cover it. */
        if (c->asking && a->node.election.leader && c->pushed > a->node.election.failsafe_until)
                a->node.election.failsafe_until = c->pushed;
        pthread_mutex_unlock(&c->lock);
}

static void client_free(struct failsafe_client *c) {
        if (c->have_thread) {
                pthread_mutex_lock(&c->lock);
                c->quit = true;
                pthread_mutex_unlock(&c->lock);
                (void) curl_multi_wakeup(c->multi);
                pthread_join(c->thread, NULL);
        }
        if (c->multi)
                curl_multi_cleanup(c->multi);
        view_free(c);
        answers_free(c);
        pthread_mutex_destroy(&c->lock);
        free(c->self);
        c->token = erase_and_free(c->token);
        c->alternate = erase_and_free(c->alternate);
        free(c);
}

int failsafe_client_attach(struct agent *a, char **reterr_msg) {
        const char *token = failsafe_responder_token(a);
        struct failsafe_client *c;
        int r;

        if (!a->config.failsafe_mode || !a->have_node)
                return 0;
        if (!token)
                return set_error_msg(reterr_msg, "no token (the responder did not start)"), -ENOKEY;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        pthread_mutex_init(&c->lock, NULL);
        c->clock = a->clock;
        c->log = &a->log;
        c->renewer = a->node.renewer;
        c->self = strdup(a->config.node_name);
        c->token = strdup(token);
        c->multi = curl_multi_init();
        if (!c->self || !c->token || !c->multi) {
                client_free(c);
                return -ENOMEM;
        }
        r = thread_start(&c->thread, client_main, c, "pglease-failsafe");
        if (r < 0) {
                client_free(c);
                return set_error_msg(reterr_msg, "cannot start its thread: %s", strerror(-r)), r;
        }
        c->have_thread = true;
        a->failsafe = c;
        return 0;
}

void failsafe_client_detach(struct agent *a) {
        if (!a->failsafe)
                return;
        client_free(a->failsafe);
        a->failsafe = NULL;
}
