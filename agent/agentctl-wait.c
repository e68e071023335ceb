/* agentctl-wait.c: `agentctl switchover --wait`: until another member holds
 * the lease and accepts writes, asked directly, or the leader refuses. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agentctl.h"
#include "exit-codes.h"
#include "pgconn.h"
#include "util.h"

/* Each member's pg_is_in_recovery() is asked this often on a kept
 * connection: a hand-over's write gap is a fraction of a second (issue 19,
 * item 7). */
#define PROBE_INTERVAL (50 * USEC_PER_MSEC)
/* The Lease is read this often (at once when a member starts to accept
 * writes), from the API server; where agentctl cannot read it there, the
 * local agent's copy, more often. The agent's status is also read for the
 * members' addresses, and every AGENT_INTERVAL for their records while no
 * member's PostgreSQL can be asked. */
#define LEASE_INTERVAL (250 * USEC_PER_MSEC)
#define AGENT_LEASE_INTERVAL (100 * USEC_PER_MSEC)
#define AGENT_INTERVAL (1 * USEC_PER_SEC)
/* After a failed read of the Lease from the API server, the agent's copy
 * serves this long before the API server is tried again. */
#define API_RETRY (1 * USEC_PER_SEC)
/* A connection to a member, and each query, is given up after this (a
 * query that gets no answer at all: pgconn's grace later); after a failed
 * connection the next waits PROBE_RETRY, not to knock twenty times a
 * second at a door that is shut. */
#define PROBE_TIMEOUT (1 * USEC_PER_SEC)
#define PROBE_RETRY (1 * USEC_PER_SEC)

static inline void json_deletep(cJSON **j) {
        if (*j)
                cJSON_Delete(*j);
}

struct member_addr {
        char *name, *host;
        int port;
};

/* What one look at the Lease says: read from the API server, or the local
 * agent's status answer (its copy of the Lease and the member records). */
struct wait_view {
        bool answered;
        bool from_agent;
        char *holder;                 /* NULL: no answer, or no lease */
        bool holder_primary;          /* from the agent: the holder's member record says primary */
        bool requested;               /* the request is still on the lease */
        char *refused;                /* the leader's reason for clearing it */
        struct member_addr *members;  /* where each member's PostgreSQL listens */
        size_t n_members;
};

static void wait_view_done(struct wait_view *v) {
        free(v->holder);
        free(v->refused);
        for (size_t i = 0; i < v->n_members; i++) {
                free(v->members[i].name);
                free(v->members[i].host);
        }
        free(v->members);
        *v = (struct wait_view) {};
}

/* *ret is written only on success; a caller without an answer goes on as
 * "still requested, holder unknown". */
static int wait_view_read(struct ctl *c, struct wait_view *ret) {
        _cleanup_(json_deletep) cJSON *resp = NULL;
        _cleanup_(wait_view_done) struct wait_view v = {};
        const cJSON *m, *lease, *members;
        const char *holder, *why;
        int r;

        r = ctl_call(c, ctl_request("status"), MIN(c->timeout, 5 * USEC_PER_SEC), true, &resp);
        if (r != 0)
                return -EAGAIN;
        lease = cJSON_GetObjectItemCaseSensitive(resp, "lease");
        members = cJSON_GetObjectItemCaseSensitive(resp, "members");
        holder = ctl_json_string(lease, "holder");
        why = ctl_json_string(lease, "switchover_refused");
        v.answered = v.from_agent = true;
        v.requested = !isempty(ctl_json_string(lease, "switchover"));
        if ((holder && !(v.holder = strdup(holder))) || (!isempty(why) && !(v.refused = strdup(why))) ||
            !(v.members = calloc(MAX(cJSON_GetArraySize(members), 1), sizeof *v.members)))
                return -ENOMEM;
        cJSON_ArrayForEach(m, members) {
                const char *name = ctl_json_string(m, "name"), *host = ctl_json_string(m, "host");
                struct member_addr *a = &v.members[v.n_members];

                if (isempty(name))
                        continue;
                if (holder && streq(name, holder))
                        v.holder_primary = streq(strempty(ctl_json_string(m, "role")), "primary");
                if (isempty(host))
                        continue;
                a->name = strdup(name);
                a->host = strdup(host);
                a->port = (int) ctl_json_number(m, "port", 5432);
                v.n_members++;
                if (!a->name || !a->host)
                        return -ENOMEM;
        }
        *ret = v;
        v = (struct wait_view) {};
        return 0;
}

struct waiter;

/* One member's PostgreSQL, asked on its own thread, so that one that does
 * not answer delays nobody. */
struct probe {
        struct waiter *w;
        char *name, *host;
        int port;
        pthread_t thread;
        bool writable;                /* under w->lock: its last answer */
        bool connected;               /* under w->lock: it answered at least once */
};

struct waiter {
        struct ctl *ctl;
        usec_t deadline;
        pthread_mutex_t lock;
        pthread_cond_t changed;       /* on CLOCK_MONOTONIC */
        bool stop;                    /* under lock */
        bool news;                    /* under lock: a member started to accept writes */
        struct probe **probes;        /* added by the waiting thread only */
        size_t n_probes;
        struct dcs dcs;               /* .ops NULL: the Lease cannot be read from the API server */
        usec_t api_retry_at;
        usec_t agent_read_at;
};

/* With w->lock held: sleep until `until` (CLOCK_MONOTONIC) or a change. */
static void wait_locked(struct waiter *w, usec_t until) {
        struct timespec ts = { .tv_sec = (time_t) (until / USEC_PER_SEC),
                               .tv_nsec = (long) (until % USEC_PER_SEC) * 1000 };

        (void) pthread_cond_timedwait(&w->changed, &w->lock, &ts);
}

/* 1: out of recovery (it accepts writes), 0: in recovery or no answer,
 * -EAGAIN: no connection. */
static int probe_once(struct ctl *c, const struct probe *p, usec_t deadline, PGconn **conn) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        usec_t now = clock_now(&clock_system);

        if (!*conn && (now >= deadline || ctl_connect(c, p->host, p->port, MIN(PROBE_TIMEOUT, deadline - now), conn, NULL) < 0))
                return -EAGAIN;
        if (pgconn_exec(*conn, "SELECT pg_is_in_recovery()", 0, NULL, &res, NULL) < 0 || PQntuples(res) != 1) {
                *conn = pgconn_close(*conn);
                return 0;
        }
        return streq(PQgetvalue(res, 0, 0), "f");
}

static void *probe_main(void *userdata) {
        struct probe *p = userdata;
        struct waiter *w = p->w;
        _cleanup_(pgconn_closep) PGconn *conn = NULL;

        pthread_mutex_lock(&w->lock);
        while (!w->stop && clock_now(&clock_system) < w->deadline) {
                usec_t next;
                int r;

                pthread_mutex_unlock(&w->lock);
                r = probe_once(w->ctl, p, w->deadline, &conn);
                next = MIN(clock_now(&clock_system) + (r == -EAGAIN ? PROBE_RETRY : PROBE_INTERVAL), w->deadline);
                pthread_mutex_lock(&w->lock);
                if (r > 0 && !p->writable) {
                        w->news = true;
                        pthread_cond_broadcast(&w->changed);
                }
                p->writable = r > 0;
                p->connected = p->connected || r >= 0;
                while (!w->stop && clock_now(&clock_system) < next)
                        wait_locked(w, next);
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

/* With w->lock held: a probe for every member of the agent's answer but
 * from. */
static void add_probes(struct waiter *w, const struct wait_view *v, const char *from) {
        for (size_t i = 0; i < v->n_members; i++) {
                const struct member_addr *a = &v->members[i];
                struct probe *p, **grown;
                bool known = streq(a->name, from);

                for (size_t j = 0; j < w->n_probes && !known; j++)
                        known = streq(w->probes[j]->name, a->name);
                if (known || !(grown = reallocarray(w->probes, w->n_probes + 1, sizeof *grown)))
                        continue;
                w->probes = grown;
                p = calloc(1, sizeof *p);
                if (!p)
                        continue;
                *p = (struct probe) { .w = w, .name = strdup(a->name), .host = strdup(a->host), .port = a->port };
                if (!p->name || !p->host || pthread_create(&p->thread, NULL, probe_main, p) != 0) {
                        free(p->name);
                        free(p->host);
                        free(p);
                        continue;
                }
                w->probes[w->n_probes++] = p;
        }
}

/* The Lease from the API server: fresher than the agent's copy, which a
 * tick that is starting PostgreSQL holds up. */
static int wait_view_read_api(struct waiter *w, struct wait_view *ret) {
        _cleanup_(dcs_leader_freep) struct dcs_leader *lease = NULL;
        _cleanup_(wait_view_done) struct wait_view v = { .answered = true };
        usec_t now = clock_now(&clock_system);
        int r;

        if (!w->dcs.ops || now < w->api_retry_at || now >= w->deadline)
                return -EAGAIN;
        r = w->dcs.ops->leader_get(w->dcs.userdata, MIN(w->deadline, now + w->ctl->config.api_timeout), &lease, NULL);
        if (r < 0) {
                w->api_retry_at = clock_now(&clock_system) + API_RETRY;
                return r;
        }
        v.requested = !isempty(lease->switchover);
        if (!(v.holder = strdup(strempty(lease->holder))) ||
            (!isempty(lease->switchover_refused) && !(v.refused = strdup(lease->switchover_refused))))
                return -ENOMEM;
        *ret = v;
        v = (struct wait_view) {};
        return 0;
}

static bool any_connected(struct waiter *w) {
        bool r = false;

        pthread_mutex_lock(&w->lock);
        for (size_t i = 0; i < w->n_probes && !r; i++)
                r = w->probes[i]->connected;
        pthread_mutex_unlock(&w->lock);
        return r;
}

/* One look: the Lease (from the API server, else the agent), and the
 * agent's answer where the members' addresses or records are needed. */
static void look(struct waiter *w, struct wait_view *ret_lease, struct wait_view *ret_agent) {
        usec_t now = clock_now(&clock_system);
        bool api = wait_view_read_api(w, ret_lease) >= 0;

        if (!api || w->n_probes == 0 || (now - w->agent_read_at >= AGENT_INTERVAL && !any_connected(w))) {
                w->agent_read_at = now;
                (void) wait_view_read(w->ctl, ret_agent);
        }
        if (!api && ret_agent->answered) {
                *ret_lease = *ret_agent;
                *ret_agent = (struct wait_view) { .requested = true };
        }
}

static void waiter_done(struct waiter *w) {
        pthread_mutex_lock(&w->lock);
        w->stop = true;
        pthread_cond_broadcast(&w->changed);
        pthread_mutex_unlock(&w->lock);
        for (size_t i = 0; i < w->n_probes; i++) {
                (void) pthread_join(w->probes[i]->thread, NULL);
                free(w->probes[i]->name);
                free(w->probes[i]->host);
                free(w->probes[i]);
        }
        free(w->probes);
        if (w->dcs.ops && w->dcs.ops->free)
                w->dcs.ops->free(w->dcs.userdata);
        pthread_cond_destroy(&w->changed);
        pthread_mutex_destroy(&w->lock);
}

/* On each look at the Lease: the leader clears a request it refuses, keeps
 * the lease and leaves its reason on it; say so now rather than at the
 * timeout. An exit status, or -1 to wait on. */
static int judge_refusal(const struct wait_view *v, const char *from, unsigned *cleared) {
        if (v->requested || !v->holder || !streq(v->holder, from)) {
                *cleared = 0;
                return -1;
        }
        if (v->refused)
                return ctl_fail(EXIT_REFUSED, "the leader %s refused the switchover: %s", from, v->refused);
        if (++*cleared >= 2)
                return ctl_fail(EXIT_REFUSED, "the leader %s refused the switchover (it gave no reason; see "
                                "agentctl cluster events)", from);
        return -1;
}

/* The new primary, once there is one: an exit status, or -1 to wait on.
 * Both witnesses come after the first write it accepts, never before: its
 * PostgreSQL out of recovery while the Lease names it (safety rule 2: only
 * the holder promotes), or its member record, which says primary only
 * once its agent saw that. */
static int judge_new_primary(struct waiter *w, const struct wait_view *lease, const struct wait_view *agent,
                             const char *from, const char *to, char **ret_new_primary, const char **ret_how) {
        const struct wait_view *records = lease->from_agent ? lease : agent;
        const char *found = NULL, *how = NULL;

        if (records->from_agent && !isempty(records->holder) && !streq(records->holder, from) && records->holder_primary)
                found = records->holder, how = "member_record";
        pthread_mutex_lock(&w->lock);
        for (size_t i = 0; i < w->n_probes && !found; i++)
                if (w->probes[i]->writable && lease->holder && streq(lease->holder, w->probes[i]->name))
                        found = w->probes[i]->name, how = "postgresql";
        pthread_mutex_unlock(&w->lock);
        if (!found)
                return -1;
        if (to && !streq(found, to))
                return ctl_fail(EXIT_FAIL, "%s took the lease instead of %s", found, to);
        if (!(*ret_new_primary = strdup(found)))
                return ctl_fail(EXIT_FAIL, "out of memory");
        *ret_how = how;
        return EXIT_OK;
}

int ctl_wait_new_primary(struct ctl *c, const char *from, const char *to, usec_t deadline, char **ret_new_primary,
                         const char **ret_how) {
        struct waiter w = { .ctl = c, .deadline = deadline };
        pthread_condattr_t attr;
        unsigned cleared = 0;
        int r = -1;

        if (pthread_mutex_init(&w.lock, NULL) != 0 || pthread_condattr_init(&attr) != 0)
                return ctl_fail(EXIT_FAIL, "cannot set up the wait");
        if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 || pthread_cond_init(&w.changed, &attr) != 0) {
                pthread_condattr_destroy(&attr);
                pthread_mutex_destroy(&w.lock);
                return ctl_fail(EXIT_FAIL, "cannot set up the wait");
        }
        pthread_condattr_destroy(&attr);
        /* Before any thread starts (curl's global set-up). */
        if (ctl_open_dcs(c, &w.dcs, NULL) < 0)
                w.dcs = (struct dcs) {};

        while (r < 0 && clock_now(&clock_system) < deadline) {
                _cleanup_(wait_view_done) struct wait_view lease = { .requested = true }, agent = { .requested = true };
                usec_t next;

                look(&w, &lease, &agent);
                next = clock_now(&clock_system) + (lease.from_agent ? AGENT_LEASE_INTERVAL : LEASE_INTERVAL);
                pthread_mutex_lock(&w.lock);
                add_probes(&w, lease.from_agent ? &lease : &agent, from);
                pthread_mutex_unlock(&w.lock);
                r = judge_refusal(&lease, from, &cleared);
                if (r < 0)
                        r = judge_new_primary(&w, &lease, &agent, from, to, ret_new_primary, ret_how);
                if (r >= 0)
                        break;
                /* Until the next look, or at once when a member starts to
                 * accept writes. */
                pthread_mutex_lock(&w.lock);
                if (!w.news)
                        wait_locked(&w, MIN(next, deadline));
                w.news = false;
                pthread_mutex_unlock(&w.lock);
        }
        waiter_done(&w);
        if (r >= 0)
                return r;
        {
                _cleanup_(wait_view_done) struct wait_view v = {};

                /* Say what really happened: acted on or not. */
                if (wait_view_read(c, &v) >= 0 && !(v.holder && streq(v.holder, from) && v.requested))
                        return ctl_fail(EXIT_TIMEOUT, "the leader acted on the request, but no new primary within the timeout "
                                        "(lease holder now: %s; see agentctl cluster show)", isempty(v.holder) ? "nobody (released)" : v.holder);
        }
        return ctl_fail(EXIT_TIMEOUT, "no new primary within the timeout (the request stays on the lease until the leader acts on it)");
}
