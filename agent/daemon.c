/* daemon.c: the agent's event loop: signals, the jittered tick timer on
 * retry_period, configuration reload, and sd_notify / watchdog. */
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <systemd/sd-daemon.h>

#include "act.h"
#include "agent.h"
#include "control-handlers.h"
#include "exit-codes.h"
#include "failsafe-client.h"
#include "failsafe-responder.h"
#include "http-server.h"
#include "lease-watch.h"
#include "pglease-build.h"
#include "rollout-worker.h"
#include "util.h"

void agent_log(const struct agent *a, enum log_level level, const char *event, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        log_writev(&a->log, clock_realtime(a->clock), level, event, fmt, ap);
        va_end(ap);
}

int agent_load_config(struct agent *a, struct config *ret, char **reterr_msg) {
        _cleanup_strv_free_ char **unknown = NULL;
        int r;

        r = config_load(a->config_path, a->envp, a->settings, ret, &unknown, reterr_msg);
        if (r < 0)
                return r;
        /* The warnings below already in the configured format. */
        a->log.format = (enum log_format) ret->log_format;
        if (isempty(ret->node_name)) {
                char host[256] = "";

                r = gethostname(host, sizeof host - 1) < 0 ? -errno : 0;
                if (r >= 0)
                        r = config_set(ret, "node_name", host, "host name", reterr_msg);
                if (r < 0) {
                        config_done(ret);
                        return set_error_msg(reterr_msg, "node_name is not set and the host name is unusable"), r;
                }
        }
        for (char **u = unknown; u && *u; u++)
                agent_log(a, LOG_LEVEL_WARNING, "config", "ignoring environment variable %s: no such key", *u);
        return 0;
}

static void apply_logging(struct agent *a) {
        a->log.format = (enum log_format) a->config.log_format;
        a->log.min_level = (enum log_level) a->config.log_level;
        (void) logger_set_node(&a->log, a->config.node_name);
}

/* retry_period +/- 10%, so that the agents of a cluster do not tick in
 * lockstep against the API server; 10% keeps within the 1.2 x margin that
 * config_validate() demands of renew_deadline. */
static usec_t next_tick_delay(struct agent *a) {
        usec_t period = a->config.retry_period, spread;

        if (a->have_state && a->state.fast_tick)
                period = MAX(period / 10, 100 * USEC_PER_MSEC);
        spread = period / 5;

        if (spread == 0)
                return period;
        return period - period / 10 + (usec_t) rand_r(&a->random_state) % spread;
}

static void decide_options_from(const struct config *c, struct decide_options *ret) {
        *ret = (struct decide_options) {
                .name = c->node_name,
                .priority = c->priority,
                .nofailover = c->nofailover,
                .maximum_lag_on_failover = c->maximum_lag_on_failover,
                .lease_duration = c->lease_duration,
                .retry_period = c->retry_period,
                .primary_start_timeout = c->primary_start_timeout,
                .synchronous_mode = c->synchronous_mode,
                .synchronous_node_count = c->synchronous_node_count,
                .renew_deadline = c->renew_deadline,
                .failsafe_mode = c->failsafe_mode,
        };
}

/* Reloadable policy keys take effect at the next tick; longer lease
 * timings only once a renewal has published them (election.h). */
static void apply_policy(struct agent *a) {
        struct decide_options o;
        char *name;

        if (a->have_state) {
                decide_options_from(&a->config, &o);
                name = a->state.opt.name;
                a->state.opt = o;
                a->state.opt.name = name;
        }
        if (a->have_node) {
                a->node.election.lease_duration = a->config.lease_duration;
                a->node.election.renew_deadline = a->config.renew_deadline;
                a->node.election.api_timeout = a->config.api_timeout;
        }
}

/* --election-only: the lease and nothing else, for the election tests and
 * benchmarks: take it when free, say when it is lost. It is renewed as the
 * full agent's is, by the renewer's thread (renewer.h), which also logs the
 * loss at the renew deadline (safety rule 1) or when another member wrote;
 * the loop learns of both here. */
static void election_tick(struct agent *a, usec_t now) {
        struct node *n = &a->node;
        struct election *e = &n->election;
        _cleanup_free_ char *err = NULL;
        int r;

        renewer_sync(n->renewer, e, a->config.retry_period);
        now = MAX(now, clock_now(a->clock));
        if (e->leader && election_lost(e, now))
                e->leader = false;
        /* A holder in good standing does not read the Lease (observe.c):
         * its renewals fail with a conflict when anybody else wrote. */
        if (e->leader)
                return;
        r = node_read_lease(n, &err);
        if (r < 0 && r != -ENOENT) {
                agent_log(a, LOG_LEVEL_WARNING, "observe", "cannot read the lease: %s", strempty(err));
                return;
        }
        err = mfree(err);
        now = MAX(now, clock_now(a->clock));
        if (!election_may_acquire(e, now))
                return;
        /* A failed attempt is not logged: an "acquire" line means the lease
         * was taken (test_election reads beliefs from these lines); the
         * next tick reads the lease and tries again. */
        if (election_acquire(e, NULL, NULL) < 0)
                return;
        r = renewer_start(n->renewer, e->observed, e->last_renew_sent);
        if (r < 0)
                agent_log(a, LOG_LEVEL_ERROR, "acquire", "took the leader lease but cannot hand it to the renewer: %s; it expires",
                          strerror(-r));
        else
                agent_log(a, LOG_LEVEL_INFO, "acquire", "took the leader lease");
}

/* sd-event fires a timer anywhere in [time, time + accuracy] to coalesce
 * wake-ups, and accuracy 0 means its default, 250 ms: a tick woken by the
 * watch for a released Lease then ran up to a quarter second late, as did
 * the leader's tick at its renew deadline. One millisecond is a timer. */
#define TICK_ACCURACY USEC_PER_MSEC

/* The watches on the loop: its timer follows what they ask for. Each
 * break is logged once, whether the watch's own wake-up or a tick found
 * it. */
static void watch_log_break(struct agent *a, const struct kube_watch *w, uint64_t *logged, const char *what,
                            const char *fallback) {
        if (w->count.broken == *logged)
                return;
        *logged = w->count.broken;
        agent_log(a, LOG_LEVEL_INFO, "watch", "%s watch broken (%s): %s until %s", what, strempty(w->last_error),
                  fallback, w->state == KUBE_WATCH_NEED_LIST ? "a list restarts it" : "the stream resumes");
}

static void watch_rearm(struct agent *a) {
        usec_t next;

        if (!a->watch_timer || !a->node.watcher)
                return;
        if (a->node.watching_lease)
                watch_log_break(a, &a->node.lease_watch.s, &a->watch_breaks_logged, "Lease",
                                "reading the Lease");
        if (a->node.watching_pods)
                watch_log_break(a, &a->node.pod_watch.s, &a->pod_watch_breaks_logged, "Pod",
                                "listing the member Pods");
        next = kube_watcher_next(a->node.watcher);
        if (next == USEC_INFINITY) {
                (void) sd_event_source_set_enabled(a->watch_timer, SD_EVENT_OFF);
                return;
        }
        if (sd_event_source_set_time(a->watch_timer, next) < 0 ||
            sd_event_source_set_enabled(a->watch_timer, SD_EVENT_ONESHOT) < 0)
                agent_log(a, LOG_LEVEL_ERROR, "loop", "cannot re-arm the watch timer");
}

/* A follower ticks at once when the watch brings a new holder or a
 * release: that is what makes a hand-over take a round trip, not up to a
 * retry_period. A holder in good standing does not read the Lease. A
 * member's change waits for the next tick. */
static void watch_run(struct agent *a) {
        struct lease_watch *w = &a->node.lease_watch;
        usec_t now;

        kube_watcher_process(a->node.watcher);
        now = clock_now(a->clock);
        if (a->node.watching_lease && w->wake) {
                w->wake = false;
                if (!a->node.election.leader && a->tick_source &&
                    sd_event_source_set_time(a->tick_source, now) >= 0)
                        (void) sd_event_source_set_enabled(a->tick_source, SD_EVENT_ONESHOT);
        }
        watch_rearm(a);
}

static int on_watch_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        (void) s;
        (void) fd;
        (void) revents;
        watch_run(userdata);
        return 0;
}

static int on_watch_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        (void) s;
        (void) usec;
        watch_run(userdata);
        return 0;
}

static int watch_attach(struct agent *a, char **reterr_msg) {
        int r;

        r = node_start_watches(&a->node, !a->election_only, reterr_msg);
        if (r < 0 || !a->node.watcher)
                return r;
        r = sd_event_add_io(a->event, &a->watch_io, kube_watcher_fd(a->node.watcher), EPOLLIN, on_watch_io, a);
        if (r >= 0)
                r = sd_event_add_time(a->event, &a->watch_timer, CLOCK_MONOTONIC, USEC_INFINITY, TICK_ACCURACY,
                                      on_watch_timer, a);
        if (r >= 0)
                r = sd_event_source_set_enabled(a->watch_timer, SD_EVENT_OFF);
        if (r < 0) {
                (void) set_error_msg(reterr_msg, "cannot add the watch to the event loop: %s", strerror(-r));
                a->watch_io = sd_event_source_disable_unref(a->watch_io);
                a->watch_timer = sd_event_source_disable_unref(a->watch_timer);
                node_stop_watches(&a->node);
        }
        return r;
}

static void watch_detach(struct agent *a) {
        a->watch_io = sd_event_source_disable_unref(a->watch_io);
        a->watch_timer = sd_event_source_disable_unref(a->watch_timer);
        if (a->have_node)
                node_stop_watches(&a->node);
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        struct agent *a = userdata;
        usec_t now = clock_now(a->clock), next;
        int r;

        agent_tick(a, now, now > usec ? now - usec : 0);
        if (a->stopping)
                return 0;
        /* Re-armed from the end of this tick, not from the scheduled time:
         * after a stall the loop takes one tick, not a burst of catch-up
         * ticks, and a tick that took long (a fence, a probe, a start) does
         * not make the next one look late (TILT). */
        next = clock_now(a->clock) + next_tick_delay(a);
        /* Safety rule 1 on time: a leader ticks at its renew deadline too,
         * whatever the period, so that it fences the moment it passes. */
        if (a->have_node && a->node.election.leader) {
                usec_t deadline = a->node.election.last_renew_sent + election_renew_deadline(&a->node.election) + USEC_PER_MSEC;

                if (deadline > clock_now(a->clock) && deadline < next)
                        next = deadline;
        }
        r = sd_event_source_set_time(s, next);
        if (r >= 0)
                r = sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        if (r < 0)
                agent_log(a, LOG_LEVEL_ERROR, "loop", "cannot re-arm the tick timer: %s", strerror(-r));
        /* The tick may have listed and opened a stream. */
        watch_rearm(a);
        return 0;
}

static void reload(struct agent *a) {
        _cleanup_strv_free_ char **changed = NULL, **refused = NULL;
        _cleanup_free_ char *err = NULL;
        struct config next;
        int r;

        (void) sd_notify(false, "RELOADING=1\nSTATUS=Reloading configuration");
        r = agent_load_config(a, &next, &err);
        if (r < 0) {
                agent_log(a, LOG_LEVEL_ERROR, "reload", "configuration not reloaded, keeping the running one: %s", strempty(err));
                goto done;
        }
        r = config_reload_merge(&a->config, &next, &changed, &refused);
        if (r < 0) {
                config_done(&next);
                agent_log(a, LOG_LEVEL_ERROR, "reload", "configuration not reloaded: %s", strerror(-r));
                goto done;
        }
        for (char **k = refused; k && *k; k++)
                agent_log(a, LOG_LEVEL_WARNING, "reload", "%s cannot change at run time: keeping the running value; restart to apply", *k);
        for (char **k = changed; k && *k; k++)
                agent_log(a, LOG_LEVEL_INFO, "reload", "%s changed", *k);
        config_done(&a->config);
        a->config = next;
        apply_logging(a);
        apply_policy(a);
        agent_log(a, LOG_LEVEL_INFO, "reload", "configuration reloaded (%zu changed, %zu refused)",
                  strv_length(changed), strv_length(refused));
done:
        (void) sd_notify(false, "READY=1\nSTATUS=Running");
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        struct agent *a = userdata;

        switch (si->ssi_signo) {
        case SIGHUP:
                reload(a);
                return 0;
        case SIGTERM:
        case SIGINT:
                agent_log(a, LOG_LEVEL_INFO, "stop", "received %s, stopping", strsignal((int) si->ssi_signo));
                a->stopping = true;
                (void) sd_notify(false, "STOPPING=1\nSTATUS=Stopping");
                return sd_event_exit(sd_event_source_get_event(s), EXIT_OK);
        default:
                return 0;
        }
}

/* The rolling-update worker, when the configuration names the StatefulSet:
 * a thread with its own API client (rollout-worker.h). */
static int rollout_attach(struct agent *a, char **reterr_msg) {
        struct dcs_kube_options o;

        if (a->election_only || isempty(a->config.statefulset))
                return 0;
        node_dcs_kube_options(&a->node, &o);
        return rollout_worker_new(&(struct rollout_worker_options) {
                                          .clock = a->clock,
                                          .log = &a->log,
                                          .kube = &o,
                                          .statefulset = a->config.statefulset,
                                  }, &a->rollout, reterr_msg);
}

/* Each tick, after act: the worker acts only for a primary holding the
 * lease in good standing, not while paused, a switchover is asked for or
 * a hand-over is under way (its own pod's pre-stop included). */
static void rollout_tick(struct agent *a, const struct observation *o) {
        const char *hold = NULL;

        if (!a->rollout)
                return;
        if (o->paused)
                hold = "the cluster is paused (agentctl resume)";
        else if (!isempty(o->switchover))
                hold = "a switchover is pending";
        else if (!isempty(o->handover) || !isempty(o->successor))
                hold = "a hand-over is under way";
        rollout_worker_feed(a->rollout, &(struct rollout_worker_feed) {
                .enabled = a->config.rolling_update,
                .leading = o->lease_leader && !o->lease_lost && a->state.kind == AGENT_PRIMARY && !a->state.demote_requested,
                .hold = hold,
                .interval = a->config.rolling_update_interval,
                .api_timeout = a->config.api_timeout,
                .fresh_for = a->config.renew_deadline,
        });
}

/* A clean stop as the leader: stop PostgreSQL first (so that it cannot
 * stay a primary without an agent), then hand the lease over. */
static void agent_shutdown(struct agent *a) {
        _cleanup_free_ char *err = NULL;
        struct election *e;

        if (!a->have_node)
                return;
        e = &a->node.election;
        if (!e->leader)
                return;
        if (!a->election_only) {
                int r = pgctl_fence(&a->node.pgctl, a->config.stop_timeout, &err);

                if (r < 0)
                        agent_log(a, LOG_LEVEL_ERROR, "stop", "cannot stop PostgreSQL before releasing the lease: %s; keeping the lease to expire", strempty(err));
                if (r < 0)
                        return;
        }
        err = mfree(err);
        renewer_stop(a->node.renewer, e);
        if (election_release(e, NULL, 0, &err) < 0)
                agent_log(a, LOG_LEVEL_WARNING, "release", "cannot release the lease: %s", strempty(err));
        else
                agent_log(a, LOG_LEVEL_INFO, "release", "released the leader lease");
}

int agent_run(struct agent *a) {
        static const int signals[] = { SIGTERM, SIGINT, SIGHUP };
        sigset_t mask;
        int r, status;

        apply_logging(a);
        a->random_state = (unsigned) (clock_realtime(a->clock) ^ (usec_t) getpid());
        {
                _cleanup_free_ char *err = NULL;
                struct decide_options o;

                r = node_init(&a->node, &a->config, a->clock, &err);
                if (r < 0) {
                        agent_log(a, LOG_LEVEL_ERROR, "start", "cannot start: %s", err ? err : strerror(-r));
                        return r == -ENOMEM ? EXIT_FAIL : EXIT_CONFIG;
                }
                a->have_node = true;
                r = node_start_renewer(&a->node, &a->log, !a->election_only, &err);
                if (r < 0) {
                        agent_log(a, LOG_LEVEL_ERROR, "start", "cannot start the lease renewer: %s", err ? err : strerror(-r));
                        return EXIT_FAIL;
                }
                decide_options_from(&a->config, &o);
                r = agent_state_init(&a->state, &o);
                if (r < 0)
                        return EXIT_FAIL;
                a->have_state = true;
        }

        r = sd_event_new(&a->event);
        if (r < 0) {
                agent_log(a, LOG_LEVEL_ERROR, "start", "cannot create the event loop: %s", strerror(-r));
                return EXIT_FAIL;
        }
        sigemptyset(&mask);
        for (size_t i = 0; i < ELEMENTSOF(signals); i++)
                sigaddset(&mask, signals[i]);
        if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0) {
                agent_log(a, LOG_LEVEL_ERROR, "start", "cannot block signals: %m");
                return EXIT_FAIL;
        }
        (void) signal(SIGPIPE, SIG_IGN);
        for (size_t i = 0; i < ELEMENTSOF(signals); i++) {
                r = sd_event_add_signal(a->event, NULL, signals[i], on_signal, a);
                if (r < 0) {
                        agent_log(a, LOG_LEVEL_ERROR, "start", "cannot watch signal %d: %s", signals[i], strerror(-r));
                        return EXIT_FAIL;
                }
        }
        /* The first tick runs at once; the loop re-arms it after each. */
        r = sd_event_add_time(a->event, &a->tick_source, CLOCK_MONOTONIC, 0, TICK_ACCURACY, on_tick, a);
        if (r < 0) {
                agent_log(a, LOG_LEVEL_ERROR, "start", "cannot add the tick timer: %s", strerror(-r));
                return EXIT_FAIL;
        }
        (void) sd_event_set_watchdog(a->event, true);
        {
                _cleanup_free_ char *err = NULL;

                r = control_handlers_attach(a, &err);
                if (r < 0)
                        agent_log(a, LOG_LEVEL_ERROR, "control", "no control socket (agentctl and the pre-stop hook cannot reach this agent): %s",
                                  err ? err : strerror(-r));
                err = mfree(err);
                r = watch_attach(a, &err);
                if (r < 0)
                        agent_log(a, LOG_LEVEL_WARNING, "watch", "no Lease watch (followers read the Lease every tick): %s",
                                  err ? err : strerror(-r));
                err = mfree(err);
                r = http_server_attach(a, &err);
                if (r < 0)
                        agent_log(a, LOG_LEVEL_ERROR, "http", "no HTTP API (probes and /metrics cannot reach this agent): %s",
                                  err ? err : strerror(-r));
                err = mfree(err);
                /* Without these the members cannot answer and the leader
                 * asks nobody: it fences at the renew deadline as without
                 * failsafe mode. */
                r = failsafe_responder_attach(a, &err);
                if (r < 0)
                        agent_log(a, LOG_LEVEL_ERROR, "failsafe", "this member cannot answer POST /failsafe (a leader in failsafe mode fences): %s",
                                  err ? err : strerror(-r));
                err = mfree(err);
                r = failsafe_client_attach(a, &err);
                if (r < 0)
                        agent_log(a, LOG_LEVEL_ERROR, "failsafe", "failsafe mode cannot ask the members (the primary fences when the API server is unreachable): %s",
                                  err ? err : strerror(-r));
                err = mfree(err);
                r = rollout_attach(a, &err);
                if (r < 0)
                        agent_log(a, LOG_LEVEL_ERROR, "rollout", "no rolling updates of StatefulSet %s (its pods stay at their revision until deleted): %s",
                                  a->config.statefulset, err ? err : strerror(-r));
        }

        agent_log(a, LOG_LEVEL_INFO, "start", "pglease-agent %s starting: cluster %s, retry_period %" PRIu64 "ms",
                  PGLEASE_VERSION, a->config.cluster_name, a->config.retry_period / USEC_PER_MSEC);
        (void) sd_notify(false, "READY=1\nSTATUS=Running");

        r = sd_event_loop(a->event);
        status = r < 0 ? EXIT_FAIL : r;
        /* First: no pod deletion may start once the agent stops. */
        a->rollout = rollout_worker_free(a->rollout);
        agent_shutdown(a);
        watch_detach(a);
        failsafe_client_detach(a);
        failsafe_responder_detach(a);
        http_server_detach(a);
        control_handlers_detach(a);
        if (a->have_state)
                agent_state_done(&a->state);
        if (a->have_node)
                node_done(&a->node);
        a->have_node = a->have_state = false;

        a->tick_source = sd_event_source_disable_unref(a->tick_source);
        a->event = sd_event_unref(a->event);
        agent_log(a, LOG_LEVEL_INFO, "stop", "stopped");
        return status;
}

/* At most this many observe/decide/act rounds in one tick: taking the lease
 * and promoting happen in the same tick, not one retry_period apart. */
#define TICK_ROUNDS 3

void agent_tick(struct agent *a, usec_t now, usec_t late) {
        a->ticks++;
        a->last_tick = now;
        if (!a->have_node)
                return;
        if (a->election_only) {
                election_tick(a, now);
                return;
        }
        a->node.tick_started = now;
        for (int round = 0; round < TICK_ROUNDS; round++) {
                struct observation o = {};
                struct action_list l = {};
                bool redecide = false;

                failsafe_client_collect(a);
                failsafe_responder_sync(a);
                if (observe(&a->node, now, round == 0 && a->ticks > 1 ? late : 0, a->state.demote_requested, &o) < 0) {
                        agent_log(a, LOG_LEVEL_ERROR, "observe", "out of memory");
                        return;
                }
                (void) decide(&o, &a->state, now, &l);
                for (size_t i = 0; i < l.n; i++)
                        if (l.items[i].kind != ACTION_EVENT)
                                agent_log(a, LOG_LEVEL_DEBUG, "action", "%s%s%s", action_kind_to_string(l.items[i].kind),
                                          l.items[i].target ? " " : "", strempty(l.items[i].target));
                (void) act(&a->node, &a->log, &a->state, &o, &l, &redecide);
                if (!redecide || round == TICK_ROUNDS - 1) {
                        failsafe_client_tick(a, action_list_has(&l, ACTION_FAILSAFE_ASK));
                        rollout_tick(a, &o);
                        control_handlers_observed(a, &o);
                        http_server_observed(a, &o);
                        if (!redecide)
                                act_housekeeping(&a->node, &a->log, &a->state, &o);
                        action_list_done(&l);
                        observation_done(&o);
                        break;
                }
                action_list_done(&l);
                observation_done(&o);
                now = clock_now(a->clock);
        }
        (void) sd_notifyf(false, "STATUS=%s", agent_state_to_string(a->state.kind));
}

