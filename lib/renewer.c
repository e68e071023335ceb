/* renewer.c: the leader lease's own renewal path: a thread with its own
 * election state, API client and timer that renews the held lease on
 * schedule, writes the supervisor's lease-expiry file and fences at the
 * renew deadline, whatever the agent's loop is waiting for. */
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "lease-file.h"
#include "renewer.h"
#include "util.h"

/* After a failed renewal, the next attempt: soon, so that a short API
 * outage costs a fraction of the renew deadline, not a retry period. */
#define RENEWER_RETRY_DELAY (200 * USEC_PER_MSEC)
#define RENEWER_NICE (-10)

struct renewer {
        struct renewer_options o;
        char *run_dir;
        struct election *e;           /* the renewer's own: touched by its thread only, once started */

        pthread_mutex_t lock;
        pthread_cond_t wake;          /* the thread waits on it (CLOCK_MONOTONIC) */
        pthread_cond_t done;          /* renewer_stop() and waiting publishers */
        pthread_t thread;
        bool have_thread;

        /* Shared with the loop, under lock. */
        bool quit;
        bool want_leading;            /* the loop holds the lease and wants it renewed */
        uint64_t start_gen, applied_start_gen;
        struct dcs_leader *start_record;
        usec_t start_sent;
        bool busy;                    /* a renewal is in flight */
        usec_t next_renew;
        usec_t retry_period;
        usec_t lease_duration, renew_deadline, api_timeout; /* 0: unchanged */
        usec_t loop_seen;             /* the loop's last renewer_sync() */
        usec_t failsafe_until;        /* from the loop: renewer_failsafe() */
        usec_t failsafe_written;      /* the value the lease-expiry file was last written for */
        bool silence_logged;
        usec_t last_fail_log;         /* when a failed renewal was last logged */

        uint32_t pub_timeline;
        uint64_t pub_lsn;
        char **pub_sync;
        bool pub_set_sync;
        enum dcs_sync_mode pub_sync_mode;
        bool pub_clear_handover;        /* the hand-over's successor and LSN are to go */
        char **pub_failsafe;
        bool pub_set_failsafe;
        uint64_t pub_gen, pub_done_gen;
        int pub_result;
        char *pub_error;

        /* What the loop learns at its next renewer_sync(). */
        usec_t last_renew_sent;
        struct dcs_leader *record;    /* the last record written or read */
        usec_t record_at;             /* when it was obtained */
        uint64_t record_gen, synced_record_gen;
        bool lost;                    /* another member holds it now */
        uint64_t renewals;
};

static int strv_dup(char *const *l, char ***ret) {
        _cleanup_strv_free_ char **c = calloc(1, sizeof(char *));
        int r;

        if (!c)
                return -ENOMEM;
        for (; l && *l; l++)
                if ((r = strv_extend(&c, *l)) < 0)
                        return r;
        *ret = TAKE_PTR(c);
        return 0;
}

static void log_line(struct renewer *r, enum log_level level, const char *event, const char *fmt, ...) _printf_(4, 5);
static void log_line(struct renewer *r, enum log_level level, const char *event, const char *fmt, ...) {
        va_list ap;

        if (!r->o.log)
                return;
        va_start(ap, fmt);
        log_writev(r->o.log, clock_realtime(r->o.clock), level, event, fmt, ap);
        va_end(ap);
}

/* Under lock: the loop's start and stop requests, applied to our own
 * election before we act on it. */
static void apply_requests(struct renewer *r, usec_t now) {
        struct election *e = r->e;

        if (r->start_gen != r->applied_start_gen) {
                r->applied_start_gen = r->start_gen;
                election_adopt_record(e, TAKE_PTR(r->start_record), now);
                e->leader = true;
                e->last_renew_sent = r->start_sent;
                r->last_renew_sent = r->start_sent;
                r->lost = false;
                r->silence_logged = false;
                r->next_renew = r->start_sent + r->retry_period;
                r->failsafe_written = 0;
        }
        if (!r->want_leading)
                e->leader = false;
        e->failsafe_until = e->leader ? r->failsafe_until : 0;
        if (r->renew_deadline) {
                e->lease_duration = r->lease_duration;
                e->renew_deadline = r->renew_deadline;
                e->api_timeout = r->api_timeout;
        }
}

/* Safety rule 1, on this thread: nothing the loop waits for can delay it. */
static void fence_now(struct renewer *r, const char *why) {
        _cleanup_free_ char *err = NULL;
        int k = 0;

        pthread_mutex_unlock(&r->lock);
        log_line(r, LOG_LEVEL_ERROR, "fence", "%s%s", why, r->o.fence ? ": fencing PostgreSQL" : "");
        if (r->o.fence)
                k = r->o.fence(r->o.fence_userdata, &err);
        /* The supervisor's watchdog stays armed until ours has acted (see
         * lease-file.h); after a failed fence it stays for good, and the
         * loop escalates (act.c, backstop_lift). */
        if (k < 0)
                log_line(r, LOG_LEVEL_ERROR, "fence", "fencing failed: %s; the supervisor's lease-expiry backstop stays in force",
                         err ? err : strerror(-k));
        else
                (void) lease_file_remove(r->run_dir);
        pthread_mutex_lock(&r->lock);
}

/* Under lock, with a renewal due: sends it unlocked, then records the
 * outcome for the loop. */
static void renew_locked(struct renewer *r) {
        _cleanup_strv_free_ char **sync = NULL, **failsafe = NULL;
        _cleanup_free_ char *err = NULL;
        struct election_publish pub = {
                .optime_timeline = r->pub_timeline,
                .optime_lsn = r->pub_lsn,
                .set_sync = r->pub_set_sync,
                .sync_mode = r->pub_set_sync ? r->pub_sync_mode : DCS_SYNC_MODE_UNKNOWN,
                .clear_handover = r->pub_clear_handover,
        };
        uint64_t gen = r->pub_gen;
        usec_t now;
        int k;

        if (r->pub_set_sync && strv_dup(r->pub_sync, &sync) < 0)
                return;
        if (r->pub_set_failsafe && strv_dup(r->pub_failsafe, &failsafe) < 0)
                return;
        pub.sync = sync;
        pub.failsafe = failsafe;
        pub.set_failsafe = r->pub_set_failsafe;
        r->busy = true;
        pthread_mutex_unlock(&r->lock);
        k = election_renew(r->e, &pub, &err);
        if (k >= 0)
                (void) lease_file_write(r->run_dir, election_safe_until(r->e));
        pthread_mutex_lock(&r->lock);
        r->busy = false;
        now = clock_now(r->o.clock);
        if (k >= 0) {
                struct dcs_leader *copy = NULL;

                r->renewals++;
                r->last_renew_sent = r->e->last_renew_sent;
                r->next_renew = r->e->last_renew_sent + r->retry_period;
                if (r->e->observed && dcs_leader_copy(r->e->observed, &copy) >= 0) {
                        dcs_leader_free(r->record);
                        r->record = copy;
                        r->record_at = now;
                        r->record_gen++;
                }
                /* Published: later renewals need not set the list again;
                 * the hand-over's annotations are gone for good. */
                if (gen == r->pub_gen)
                        r->pub_set_sync = false;
                if (pub.clear_handover)
                        r->pub_clear_handover = false;
                if (pub.set_failsafe && strv_equal(pub.failsafe, r->pub_failsafe))
                        r->pub_set_failsafe = false;
        } else {
                r->next_renew = now + RENEWER_RETRY_DELAY;
                /* Retried every 200 ms: said once a retry_period, not each time. */
                if (r->last_fail_log == 0 || now - r->last_fail_log >= r->retry_period) {
                        r->last_fail_log = now;
                        log_line(r, LOG_LEVEL_WARNING, "renew", "renewal failed: %s (%" PRIu64 "ms left before fencing)",
                                 err ? err : strerror(-k), election_renew_remaining(r->e, now) / USEC_PER_MSEC);
                }
        }
        if (k >= 0)
                r->last_fail_log = 0;
        r->pub_done_gen = gen;
        r->pub_result = k;
        free(r->pub_error);
        r->pub_error = TAKE_PTR(err);
        if (k == -ESTALE && !r->e->leader && r->want_leading) {
                struct dcs_leader *copy = NULL;

                if (r->e->observed && dcs_leader_copy(r->e->observed, &copy) >= 0) {
                        dcs_leader_free(r->record);
                        r->record = copy;
                        r->record_at = now;
                        r->record_gen++;
                }
                r->lost = true;
                r->want_leading = false;
                fence_now(r, "lease lost: another member wrote the lease");
        }
        pthread_cond_broadcast(&r->done);
}

static usec_t step_locked(struct renewer *r, usec_t now) {
        struct election *e = r->e;
        usec_t due;

        apply_requests(r, now);
        if (!e->leader || r->quit)
                return USEC_INFINITY;
        if (election_lost(e, now)) {
                e->leader = false;
                r->want_leading = false;
                fence_now(r, e->failsafe_until > 0
                                     ? "lease lost: the last successful renewal was sent more than renew_deadline ago, and the members' failsafe answers ran out"
                                     : "lease lost: the last successful renewal was sent more than renew_deadline ago");
                pthread_cond_broadcast(&r->done);
                return USEC_INFINITY;
        }
        /* Failsafe mode: the supervisor's watchdog moves with the
         * answers, so that a stopped agent still ends in a fence. */
        if (e->failsafe_until != r->failsafe_written) {
                r->failsafe_written = e->failsafe_until;
                pthread_mutex_unlock(&r->lock);
                (void) lease_file_write(r->run_dir, election_safe_until(e));
                pthread_mutex_lock(&r->lock);
        }
        /* A wedged loop must not keep the lease forever through us. */
        if (now > r->loop_seen && now - r->loop_seen > RENEWER_LOOP_SILENCE_LIMIT) {
                if (!r->silence_logged)
                        log_line(r, LOG_LEVEL_ERROR, "renew", "the agent's loop has not run for %" PRIu64 "s: no longer renewing the lease",
                                 (now - r->loop_seen) / USEC_PER_SEC);
                r->silence_logged = true;
                return election_safe_until(e) + USEC_PER_MSEC;
        }
        due = r->pub_gen != r->pub_done_gen ? now : r->next_renew;
        if (now >= due) {
                renew_locked(r);
                now = clock_now(r->o.clock);
                due = r->pub_gen != r->pub_done_gen ? now : r->next_renew;
        }
        /* Wake at the deadline too: the fence must not wait for a renewal
         * that is not due. */
        return e->leader ? MIN(due, election_safe_until(e) + USEC_PER_MSEC) : USEC_INFINITY;
}

usec_t renewer_step(struct renewer *r, usec_t now) {
        usec_t next;

        pthread_mutex_lock(&r->lock);
        next = step_locked(r, now);
        pthread_mutex_unlock(&r->lock);
        return next;
}

static void *renewer_main(void *userdata) {
        struct renewer *r = userdata;

        /* Waiting is not the only way to be late: on a saturated machine
         * (a flood of clients keeps the loop and its clients busy) a woken
         * thread waits for a CPU. It uses next to none, so it may go first;
         * best effort, as raising a priority needs CAP_SYS_NICE. */
        (void) setpriority(PRIO_PROCESS, (id_t) gettid(), RENEWER_NICE);
        pthread_mutex_lock(&r->lock);
        while (!r->quit) {
                usec_t next = step_locked(r, clock_now(r->o.clock));
                struct timespec ts;

                if (r->quit)
                        break;
                if (next == USEC_INFINITY) {
                        pthread_cond_wait(&r->wake, &r->lock);
                        continue;
                }
                if (next <= clock_now(r->o.clock))
                        continue;
                ts = (struct timespec) { .tv_sec = (time_t) (next / USEC_PER_SEC), .tv_nsec = (long) (next % USEC_PER_SEC) * 1000 };
                (void) pthread_cond_timedwait(&r->wake, &r->lock, &ts);
        }
        pthread_mutex_unlock(&r->lock);
        return NULL;
}

int renewer_new(const struct renewer_options *o, struct election *e, struct renewer **ret) {
        _cleanup_(renewer_freep) struct renewer *r = NULL;
        pthread_condattr_t attr;
        int k;

        r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        r->o = *o;
        r->e = e;
        r->retry_period = o->retry_period;
        r->loop_seen = clock_now(o->clock);
        r->run_dir = strdup(o->run_dir);
        if (!r->run_dir)
                return -ENOMEM;
        pthread_mutex_init(&r->lock, NULL);
        pthread_condattr_init(&attr);
        /* The timer is the monotonic clock, like every deadline here. */
        pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        pthread_cond_init(&r->wake, &attr);
        pthread_condattr_destroy(&attr);
        pthread_cond_init(&r->done, NULL);
        if (!o->no_thread) {
                k = thread_start(&r->thread, renewer_main, r, "pglease-renew");
                if (k < 0)
                        return k;
                r->have_thread = true;
        }
        *ret = TAKE_PTR(r);
        return 0;
}

struct renewer *renewer_free(struct renewer *r) {
        if (!r)
                return NULL;
        if (r->have_thread) {
                pthread_mutex_lock(&r->lock);
                r->quit = true;
                pthread_cond_broadcast(&r->wake);
                pthread_mutex_unlock(&r->lock);
                pthread_join(r->thread, NULL);
        }
        pthread_cond_destroy(&r->wake);
        pthread_cond_destroy(&r->done);
        pthread_mutex_destroy(&r->lock);
        dcs_leader_free(r->start_record);
        dcs_leader_free(r->record);
        strv_free(r->pub_sync);
        strv_free(r->pub_failsafe);
        free(r->pub_error);
        free(r->run_dir);
        free(r);
        return NULL;
}

int renewer_start(struct renewer *r, const struct dcs_leader *record, usec_t sent) {
        struct dcs_leader *copy = NULL;
        int k;

        if (!r)
                return 0;
        k = dcs_leader_copy(record, &copy);
        if (k < 0)
                return k;
        pthread_mutex_lock(&r->lock);
        dcs_leader_free(r->start_record);
        r->start_record = copy;
        r->start_sent = sent;
        r->start_gen++;
        r->failsafe_until = 0;
        r->want_leading = true;
        r->lost = false;
        r->pub_done_gen = r->pub_gen;
        pthread_cond_broadcast(&r->wake);
        pthread_mutex_unlock(&r->lock);
        return 0;
}

/* Under lock: the renewer's last record into the loop's election, unless
 * the loop has since seen (written) a newer one itself. */
static void hand_record_locked(struct renewer *r, struct election *e) {
        struct dcs_leader *copy = NULL;

        /* Not a record older than one the loop wrote itself since (an
         * annotation from agentctl): that would hide the loop's change
         * until the next renewal, and agentctl would see it vanish. */
        if (r->record_gen != r->synced_record_gen && e->observed && r->record &&
            election_record_older(r->record, r->record_at, e->observed, e->observed_at))
                r->synced_record_gen = r->record_gen;
        if (r->record_gen != r->synced_record_gen && r->record && dcs_leader_copy(r->record, &copy) >= 0) {
                r->synced_record_gen = r->record_gen;
                /* A record naming another holder ends our leadership there. */
                election_adopt_record(e, copy, clock_now(r->o.clock));
        }
}

void renewer_stop(struct renewer *r, struct election *e) {
        if (!r)
                return;
        pthread_mutex_lock(&r->lock);
        r->want_leading = false;
        /* An in-flight renewal is bounded by api_timeout and the deadline. */
        while (r->busy)
                pthread_cond_wait(&r->done, &r->lock);
        r->e->leader = false;
        r->pub_done_gen = r->pub_gen;
        /* The caller writes the record next (a release): with the version
         * of our last renewal, not the one it saw a tick ago (a conflict). */
        if (e)
                hand_record_locked(r, e);
        pthread_cond_broadcast(&r->wake);
        pthread_cond_broadcast(&r->done);
        pthread_mutex_unlock(&r->lock);
}

int renewer_publish(struct renewer *r, const struct election_publish *pub, bool wait, char **reterr_msg) {
        _cleanup_strv_free_ char **sync = NULL, **failsafe = NULL;
        uint64_t gen;
        int k = 0;

        if (pub->set_sync && (k = strv_dup(pub->sync, &sync)) < 0)
                return k;
        if (pub->set_failsafe && (k = strv_dup(pub->failsafe, &failsafe)) < 0)
                return k;
        pthread_mutex_lock(&r->lock);
        if (pub->optime_timeline) {
                r->pub_timeline = pub->optime_timeline;
                r->pub_lsn = pub->optime_lsn;
        }
        if (pub->clear_handover)
                r->pub_clear_handover = true;
        if (pub->set_sync) {
                strv_free(r->pub_sync);
                r->pub_sync = TAKE_PTR(sync);
                r->pub_set_sync = true;
                r->pub_sync_mode = pub->sync_mode;
        }
        if (pub->set_failsafe) {
                strv_free(r->pub_failsafe);
                r->pub_failsafe = TAKE_PTR(failsafe);
                r->pub_set_failsafe = true;
        }
        if (!wait) {
                pthread_mutex_unlock(&r->lock);
                return 0;
        }
        gen = ++r->pub_gen;
        pthread_cond_broadcast(&r->wake);
        while (r->want_leading && r->pub_done_gen < gen) {
                if (!r->have_thread) {
                        (void) step_locked(r, clock_now(r->o.clock));
                        if (r->pub_done_gen < gen)
                                break;
                        continue;
                }
                pthread_cond_wait(&r->done, &r->lock);
        }
        if (r->pub_done_gen < gen) {
                set_error_msg(reterr_msg, "not renewing the lease");
                k = -EPERM;
        }
        else if ((k = r->pub_result) < 0 && reterr_msg && r->pub_error)
                (void) set_error_msg(reterr_msg, "%s", r->pub_error);
        pthread_mutex_unlock(&r->lock);
        return k;
}

void renewer_sync(struct renewer *r, struct election *e, usec_t retry_period) {
        if (!r)
                return;
        pthread_mutex_lock(&r->lock);
        r->loop_seen = clock_now(r->o.clock);
        r->silence_logged = false;
        r->retry_period = retry_period;
        /* Reloaded timings reach our election here (the loop's owns them). */
        r->lease_duration = e->lease_duration;
        r->renew_deadline = e->renew_deadline;
        r->api_timeout = e->api_timeout;
        if (e->leader && r->applied_start_gen == r->start_gen && r->last_renew_sent > e->last_renew_sent)
                e->last_renew_sent = r->last_renew_sent;
        hand_record_locked(r, e);
        pthread_mutex_unlock(&r->lock);
}

void renewer_failsafe(struct renewer *r, usec_t until) {
        if (!r)
                return;
        pthread_mutex_lock(&r->lock);
        /* Only ever later within a term (renewer_start() resets it): the
         * loop's value and the failsafe client's come from the same answers
         * at different moments, and an older one must not undo a newer. */
        if (until > r->failsafe_until) {
                r->failsafe_until = until;
                pthread_cond_broadcast(&r->wake);
        }
        pthread_mutex_unlock(&r->lock);
}

uint64_t renewer_renewals(struct renewer *r) {
        uint64_t n;

        pthread_mutex_lock(&r->lock);
        n = r->renewals;
        pthread_mutex_unlock(&r->lock);
        return n;
}
