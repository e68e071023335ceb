/* rollout-worker.c: the leader's rolling update of an OnDelete StatefulSet
 * (rollout.h) on a thread of its own with its own API client: every
 * rolling_update_interval it reads the StatefulSet and, when an update is
 * under way, the cluster's pods, and deletes at most one pod, each call
 * bounded by api_timeout, so that the agent's loop never waits on them. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "rollout.h"
#include "rollout-worker.h"
#include "util.h"

struct rollout_worker {
        const struct clock_ops *clock;
        const struct logger *log;
        struct dcs dcs;               /* its own client: a call never queues behind the loop's */
        bool have_dcs;
        struct kube *kube;            /* borrowed from dcs */
        const char *namespace;        /* borrowed from dcs */
        char *statefulset;
        char *self;
        char *selector;               /* the cluster's pods, as the member list selects them */
        char *last_said;              /* the thread's last line: a repeat is not logged again */

        pthread_mutex_t lock;
        pthread_cond_t wake;          /* the thread waits on it (CLOCK_MONOTONIC) */
        pthread_t thread;
        bool have_thread;

        /* Under lock. */
        bool quit;
        bool changed;                 /* a feed the thread has not looked at */
        struct rollout_worker_feed feed; /* feed.hold unused: hold below */
        char *hold;
        usec_t fed_at;
        usec_t next_round;            /* the thread's: when the next round is due */
        uint64_t deletions;
};

/* Logs line (taken; NULL: out of memory, nothing said). Every round
 * makes the same reads: a wait or a failure that lasts is said once, and
 * again when something else was said between. */
static void say(struct rollout_worker *w, enum log_level level, char *line) {
        if (!line)
                return;
        if (w->last_said && streq(w->last_said, line)) {
                free(line);
                return;
        }
        if (w->log)
                log_write(w->log, clock_realtime(w->clock), level, "rollout", "%s", line);
        free(w->last_said);
        w->last_said = line;
}

static usec_t deadline(const struct rollout_worker *w, usec_t api_timeout) {
        return clock_now(w->clock) + api_timeout;
}

/* Under lock: whether the loop's last word lets the worker act at now. */
static bool may_act_locked(const struct rollout_worker *w, usec_t now) {
        return w->feed.enabled && w->feed.leading && !w->hold && now - MIN(now, w->fed_at) < w->feed.fresh_for;
}

static const struct rollout_pod *find_pod(const struct rollout_pods *pods, const char *name) {
        for (size_t i = 0; i < pods->n; i++)
                if (streq(pods->items[i].name, name))
                        return &pods->items[i];
        return NULL;
}

/* The step's deletion, if the loop still lets us: the pod only while it
 * is the object the decision saw (its uid), then an Event on our pod. */
static void delete_pod(struct rollout_worker *w, const char *what, const struct rollout_step *s,
                       const struct rollout_pod *own, usec_t api_timeout) {
        _cleanup_free_ char *err = NULL, *message = NULL;
        bool may;
        int r;

        /* The feed may have changed during the reads (a pause, a lost
         * lease): the decision is only as good as the last word. */
        pthread_mutex_lock(&w->lock);
        may = may_act_locked(w, clock_now(w->clock));
        pthread_mutex_unlock(&w->lock);
        if (!may)
                return;
        message = strdup_printf("%s: %s", what, s->reason);
        if (!message)
                return;
        say(w, LOG_LEVEL_INFO, strdup(message));
        r = kube_pod_delete(w->kube, w->namespace, s->pod->name, s->pod->uid, deadline(w, api_timeout), &err);
        if (r == -ESTALE || r == -ENOENT) {
                say(w, LOG_LEVEL_INFO,
                    strdup_printf("%s: pod %s was deleted or replaced since it was read; deciding again next round", what,
                                  s->pod->name));
                return;
        }
        if (r < 0) {
                say(w, LOG_LEVEL_WARNING,
                    strdup_printf("%s: cannot delete pod %s: %s; trying again next round", what, s->pod->name,
                                  err ?: strerror(-r)));
                return;
        }
        pthread_mutex_lock(&w->lock);
        w->deletions++;
        pthread_mutex_unlock(&w->lock);
        err = mfree(err);
        r = kube_event_create(w->kube, w->namespace,
                              &(struct kube_event) { .pod = w->self, .pod_uid = own ? own->uid : NULL, .type = "Normal",
                                                     .reason = "rollout", .message = message },
                              deadline(w, api_timeout), &err);
        if (r < 0)
                say(w, LOG_LEVEL_DEBUG,
                    strdup_printf("no Kubernetes Event for the deletion of pod %s: %s", s->pod->name, err ?: strerror(-r)));
}

/* One round: the StatefulSet, the pods when the StatefulSet says an update
 * is under way, the decision, at most one deletion. A failed call is said
 * and the round ends: the next one reads afresh. */
static void round_run(struct rollout_worker *w, usec_t api_timeout) {
        _cleanup_(cjson_deletep) cJSON *sts_json = NULL, *list = NULL;
        _cleanup_(rollout_statefulset_done) struct rollout_statefulset sts = {};
        _cleanup_(rollout_pods_done) struct rollout_pods pods = {};
        _cleanup_(rollout_step_done) struct rollout_step s = {};
        _cleanup_free_ char *err = NULL, *what = NULL;
        int r;

        r = kube_statefulset_get(w->kube, w->namespace, w->statefulset, deadline(w, api_timeout), &sts_json, &err);
        if (r >= 0)
                r = rollout_statefulset_from_json(sts_json, &sts, &err);
        if (r < 0) {
                say(w, LOG_LEVEL_WARNING,
                    strdup_printf("cannot read StatefulSet %s/%s: %s; trying again next round", w->namespace, w->statefulset,
                                  err ?: strerror(-r)));
                return;
        }
        r = rollout_decide(&sts, NULL, w->self, &s);
        if (r >= 0 && s.kind == ROLLOUT_LIST_PODS) {
                rollout_step_done(&s);
                r = kube_pod_list(w->kube, w->namespace, w->selector, deadline(w, api_timeout), &list, &err);
                if (r >= 0)
                        r = rollout_pods_from_list(list, w->statefulset, &pods, &err);
                if (r < 0) {
                        say(w, LOG_LEVEL_WARNING,
                            strdup_printf("cannot list the cluster's pods (%s): %s; trying again next round", w->selector,
                                          err ?: strerror(-r)));
                        return;
                }
                r = rollout_decide(&sts, &pods, w->self, &s);
        }
        if (r < 0)
                return;
        what = sts.update_revision ? strdup_printf("rolling update to revision %s", sts.update_revision)
                                   : strdup_printf("StatefulSet %s", w->statefulset);
        if (!what)
                return;
        switch (s.kind) {
        case ROLLOUT_NOTHING:
                say(w, LOG_LEVEL_INFO, strdup_printf("StatefulSet %s: %s", w->statefulset, s.reason));
                break;
        case ROLLOUT_WAIT:
                say(w, LOG_LEVEL_INFO, strdup_printf("%s: waiting: %s", what, s.reason));
                break;
        case ROLLOUT_DELETE_STANDBY:
        case ROLLOUT_DELETE_SELF:
                delete_pod(w, what, &s, find_pod(&pods, w->self), api_timeout);
                break;
        default:
                break;
        }
}

usec_t rollout_worker_step(struct rollout_worker *w, usec_t now) {
        _cleanup_free_ char *hold = NULL;
        usec_t api_timeout, next;

        pthread_mutex_lock(&w->lock);
        w->changed = false;
        if (!w->feed.enabled || !w->feed.leading || now - MIN(now, w->fed_at) >= w->feed.fresh_for) {
                /* A new term starts with a round at once. */
                w->next_round = 0;
                pthread_mutex_unlock(&w->lock);
                return USEC_INFINITY;
        }
        if (now < w->next_round) {
                next = w->next_round;
                pthread_mutex_unlock(&w->lock);
                return next;
        }
        w->next_round = next = now + w->feed.interval;
        api_timeout = w->feed.api_timeout;
        if (w->hold && !(hold = strdup(w->hold))) {
                pthread_mutex_unlock(&w->lock);
                return next;
        }
        pthread_mutex_unlock(&w->lock);
        if (hold)
                say(w, LOG_LEVEL_INFO, strdup_printf("rolling updates wait: %s", hold));
        else
                round_run(w, api_timeout);
        return next;
}

static void *worker_main(void *userdata) {
        struct rollout_worker *w = userdata;

        pthread_mutex_lock(&w->lock);
        while (!w->quit) {
                struct timespec ts;
                usec_t next;

                pthread_mutex_unlock(&w->lock);
                next = rollout_worker_step(w, clock_now(w->clock));
                pthread_mutex_lock(&w->lock);
                if (w->quit || w->changed)
                        continue;
                if (next == USEC_INFINITY) {
                        pthread_cond_wait(&w->wake, &w->lock);
                        continue;
                }
                if (next <= clock_now(w->clock))
                        continue;
                ts = (struct timespec) { .tv_sec = (time_t) (next / USEC_PER_SEC), .tv_nsec = (long) (next % USEC_PER_SEC) * 1000 };
                (void) pthread_cond_timedwait(&w->wake, &w->lock, &ts);
        }
        pthread_mutex_unlock(&w->lock);
        return NULL;
}

int rollout_worker_new(const struct rollout_worker_options *o, struct rollout_worker **ret, char **reterr_msg) {
        _cleanup_(rollout_worker_freep) struct rollout_worker *w = NULL;
        pthread_condattr_t attr;
        const char *lease_name;
        int r;

        w = calloc(1, sizeof *w);
        if (!w)
                return -ENOMEM;
        w->clock = o->clock;
        w->log = o->log;
        pthread_mutex_init(&w->lock, NULL);
        pthread_condattr_init(&attr);
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&w->wake, &attr);
        pthread_condattr_destroy(&attr);
        w->statefulset = strdup(o->statefulset);
        w->self = strdup(o->kube->pod_name);
        w->selector = dcs_cluster_selector(o->kube->cluster);
        if (!w->statefulset || !w->self || !w->selector)
                return -ENOMEM;
        r = dcs_kube_new(o->kube, o->clock, &w->dcs, reterr_msg);
        if (r < 0)
                return r;
        w->have_dcs = true;
        r = dcs_kube_describe(&w->dcs, &w->kube, &w->namespace, &lease_name);
        if (r < 0)
                return r;
        if (!o->no_thread) {
                r = thread_start(&w->thread, worker_main, w, "pglease-rollout");
                if (r < 0)
                        return set_error_msg(reterr_msg, "cannot start its thread: %s", strerror(-r)), r;
                w->have_thread = true;
        }
        *ret = TAKE_PTR(w);
        return 0;
}

struct rollout_worker *rollout_worker_free(struct rollout_worker *w) {
        if (!w)
                return NULL;
        if (w->have_thread) {
                pthread_mutex_lock(&w->lock);
                w->quit = true;
                pthread_cond_broadcast(&w->wake);
                pthread_mutex_unlock(&w->lock);
                pthread_join(w->thread, NULL);
        }
        if (w->have_dcs && w->dcs.ops->free)
                w->dcs.ops->free(w->dcs.userdata);
        pthread_cond_destroy(&w->wake);
        pthread_mutex_destroy(&w->lock);
        free(w->statefulset);
        free(w->self);
        free(w->selector);
        free(w->last_said);
        free(w->hold);
        free(w);
        return NULL;
}

void rollout_worker_feed(struct rollout_worker *w, const struct rollout_worker_feed *f) {
        struct rollout_worker_feed copy = *f;
        char *hold = NULL;
        bool changed;

        /* Without a copy of the reason, no leave to act. */
        if (f->hold && !(hold = strdup(f->hold)))
                copy.leading = false;
        copy.hold = NULL;
        pthread_mutex_lock(&w->lock);
        changed = copy.enabled != w->feed.enabled || copy.leading != w->feed.leading || !hold != !w->hold ||
                  (hold && !streq(hold, w->hold)) || copy.interval != w->feed.interval;
        w->feed = copy;
        free(w->hold);
        w->hold = hold;
        w->fed_at = clock_now(w->clock);
        if (changed) {
                w->changed = true;
                pthread_cond_broadcast(&w->wake);
        }
        pthread_mutex_unlock(&w->lock);
}

uint64_t rollout_worker_deletions(struct rollout_worker *w) {
        uint64_t n;

        pthread_mutex_lock(&w->lock);
        n = w->deletions;
        pthread_mutex_unlock(&w->lock);
        return n;
}
