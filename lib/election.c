/* election.c: the leader-lease rules of docs/design.md on an injected
 * monotonic clock: expiry judged from when this agent first saw the current
 * raw record, optimistic writes with a version, release to a successor, and
 * the holder's own view of when it must consider the lease lost. */
#include <string.h>

#include "election.h"
#include "util.h"

int election_init(struct election *e, const struct election_options *o, const struct clock_ops *clock,
                  const struct dcs *dcs) {
        if (isempty(o->identity) || o->lease_duration <= o->renew_deadline || o->api_timeout == 0)
                return -EINVAL;
        *e = (struct election) {
                .identity = strdup(o->identity),
                .lease_duration = o->lease_duration,
                .renew_deadline = o->renew_deadline,
                .granted_renew_deadline = o->renew_deadline,
                .api_timeout = o->api_timeout,
                .clock = clock,
                .dcs = dcs,
        };
        return e->identity ? 0 : -ENOMEM;
}

void election_done(struct election *e) {
        free(e->identity);
        dcs_leader_free(e->observed);
        *e = (struct election) {};
}

/* Takes ownership of l as the current observation, restarting the expiry
 * clock only when the record's bytes changed. */
static void observe_record(struct election *e, struct dcs_leader *l, usec_t now) {
        if (!e->observed || e->observed_missing || !streq(strempty(e->observed->raw), strempty(l->raw)))
                e->observed_at = now;
        dcs_leader_free(e->observed);
        e->observed = l;
        e->observed_missing = false;
        if (e->leader && !streq(strempty(l->holder), e->identity))
                e->leader = false;
}

int election_observe(struct election *e, char **reterr_msg) {
        struct dcs_leader *l = NULL;
        usec_t now = clock_now(e->clock), deadline = now + e->api_timeout;
        int r;

        /* The holder must be able to judge its loss on time (safety rule
         * 1): its read never outlasts the time it may stay the primary, its
         * renew deadline or, in failsafe mode, the members' answers. Not the
         * renew deadline alone: in failsafe mode that is long past, and a
         * read given 1 ms could never see the record after a 409, so the
         * leader could not renew when the API server came back. */
        if (e->leader)
                deadline = MIN(deadline, MAX(election_safe_until(e), now + USEC_PER_MSEC));
        r = e->dcs->ops->leader_get(e->dcs->userdata, deadline, &l, reterr_msg);
        if (r == -ENOENT) {
                election_adopt_missing(e, now);
                return r;
        }
        if (r < 0)
                return r;
        observe_record(e, l, now);
        return 0;
}

bool election_held_by_us(const struct election *e) {
        return e->observed && streq(strempty(e->observed->holder), e->identity);
}

bool election_is_free(const struct election *e, usec_t now) {
        usec_t duration;

        if (e->observed_missing)
                return true;
        if (!e->observed)
                return false;
        if (isempty(e->observed->holder))
                return true;
        /* Judged on our own clock from when we first saw these bytes, never
         * from renewTime: clocks of different hosts are not compared. */
        duration = MAX(e->observed->lease_duration, USEC_PER_SEC);
        /* A caller's "now" may predate the read (taken at the start of a
         * tick): that is not expiry. */
        return now >= e->observed_at && now - e->observed_at >= duration;
}

bool election_may_acquire(const struct election *e, usec_t now) {
        const struct dcs_leader *l = e->observed;

        if (election_held_by_us(e))
                return true;
        if (!election_is_free(e, now))
                return false;
        /* A release names the one member that may take the lease at once;
         * the others wait one lease duration (ours) from when they saw the
         * release. */
        if (l && isempty(l->holder) && !isempty(l->successor) && !streq(l->successor, e->identity))
                return now >= e->observed_at && now - e->observed_at >= e->lease_duration;
        return true;
}

usec_t election_renew_deadline(const struct election *e) {
        return MIN(e->renew_deadline, e->granted_renew_deadline);
}

usec_t election_safe_until(const struct election *e) {
        return MAX(e->last_renew_sent + election_renew_deadline(e), e->failsafe_until);
}

bool election_lost(const struct election *e, usec_t now) {
        return e->leader && now > e->last_renew_sent && now > election_safe_until(e);
}

usec_t election_renew_remaining(const struct election *e, usec_t now) {
        usec_t end = election_safe_until(e);

        return now >= end ? 0 : end - now;
}

static int strv_copy(char *const *l, char ***ret) {
        _cleanup_strv_free_ char **c = calloc(1, sizeof(char *));
        int r;

        if (!c)
                return -ENOMEM;
        for (; l && *l; l++) {
                r = strv_extend(&c, *l);
                if (r < 0)
                        return r;
        }
        *ret = TAKE_PTR(c);
        return 0;
}

static int apply_publish(struct dcs_leader *w, const struct election_publish *pub) {
        if (!pub)
                return 0;
        if (pub->optime_timeline) {
                w->optime_timeline = pub->optime_timeline;
                w->optime_lsn = pub->optime_lsn;
        }
        if (pub->clear_handover) {
                w->successor = mfree(w->successor);
                w->successor_lsn = 0;
                w->handover = mfree(w->handover);
        }
        if (pub->set_sync) {
                char **s;
                int r = strv_copy(pub->sync, &s);

                if (r < 0)
                        return r;
                strv_free(w->sync);
                w->sync = s;
        }
        if (pub->sync_mode != DCS_SYNC_MODE_UNKNOWN)
                w->sync_mode = pub->sync_mode;
        if (pub->set_failsafe) {
                char **f;
                int r = strv_copy(pub->failsafe, &f);

                if (r < 0)
                        return r;
                strv_free(w->failsafe);
                w->failsafe = f;
        }
        return 0;
}

static int set_string(char **field, const char *value) {
        char *s = value ? strdup(value) : NULL;

        if (value && !s)
                return -ENOMEM;
        free(*field);
        *field = s;
        return 0;
}

/* The record we want to write as holder, from the one we observed. */
static int build_holder_record(struct election *e, const struct election_publish *pub, struct dcs_leader **ret) {
        _cleanup_(dcs_leader_freep) struct dcs_leader *w = NULL;
        usec_t wall = clock_realtime(e->clock);
        bool change_of_holder;
        int r;

        if (e->observed) {
                r = dcs_leader_copy(e->observed, &w);
                if (r < 0)
                        return r;
        } else {
                w = calloc(1, sizeof *w);
                if (!w)
                        return -ENOMEM;
        }
        change_of_holder = !streq(strempty(w->holder), e->identity);
        if (change_of_holder) {
                if (e->observed)
                        w->transitions++;
                w->acquire_time = wall;
                /* A new holder starts without a pending switchover
                 * request, but keeps the hand-over's successor and final
                 * LSN: it must not promote before it has replayed that
                 * LSN, even after a restart (docs/handover.pml). The
                 * first renewal as a running primary clears them. */
                w->switchover = mfree(w->switchover);
        }
        r = set_string(&w->holder, e->identity);
        if (r < 0)
                return r;
        w->lease_duration = e->lease_duration;
        w->renew_time = wall;
        r = apply_publish(w, pub);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(w);
        return 0;
}

/* After a failed precondition: re-read, so the next decision is made on
 * what is really there. Returns -ESTALE for the caller. */
static int reobserve_after_conflict(struct election *e) {
        (void) election_observe(e, NULL);
        return -ESTALE;
}

static int write_record(struct election *e, const struct dcs_leader *want, usec_t deadline,
                        struct dcs_leader **ret, char **reterr_msg) {
        if (e->observed_missing)
                return e->dcs->ops->leader_create(e->dcs->userdata, want, deadline, ret, reterr_msg);
        return e->dcs->ops->leader_update(e->dcs->userdata, want, deadline, ret, reterr_msg);
}

int election_acquire(struct election *e, const struct election_publish *pub, char **reterr_msg) {
        _cleanup_(dcs_leader_freep) struct dcs_leader *want = NULL;
        struct dcs_leader *got = NULL;
        usec_t sent = clock_now(e->clock);
        int r;

        if (!e->observed && !e->observed_missing)
                return set_error_msg(reterr_msg, "the lease has not been read yet"), -EBUSY;
        if (!election_may_acquire(e, sent))
                return set_error_msg(reterr_msg, "the lease is held by %s", strempty(e->observed ? e->observed->holder : NULL)), -EBUSY;
        r = build_holder_record(e, pub, &want);
        if (r < 0)
                return r;
        r = write_record(e, want, sent + e->api_timeout, &got, reterr_msg);
        if (r == -ESTALE || r == -EEXIST)
                return reobserve_after_conflict(e);
        if (r < 0)
                return r;
        observe_record(e, got, clock_now(e->clock));
        e->leader = true;
        e->last_renew_sent = sent;
        e->failsafe_until = 0;
        e->granted_renew_deadline = e->renew_deadline;
        return 0;
}

static int renew_once(struct election *e, const struct election_publish *pub, char **reterr_msg) {
        _cleanup_(dcs_leader_freep) struct dcs_leader *want = NULL;
        struct dcs_leader *got = NULL;
        usec_t sent = clock_now(e->clock), deadline;
        int r;

        /* Never retry past the renew deadline (or the failsafe answers'
         * end): after it we fence anyway. */
        deadline = MIN(sent + e->api_timeout, election_safe_until(e));
        if (deadline <= sent)
                return set_error_msg(reterr_msg, "renew deadline passed"), -ETIMEDOUT;
        r = build_holder_record(e, pub, &want);
        if (r < 0)
                return r;
        r = e->dcs->ops->leader_update(e->dcs->userdata, want, deadline, &got, reterr_msg);
        if (r < 0)
                return r;
        observe_record(e, got, clock_now(e->clock));
        e->last_renew_sent = sent;
        /* The record just written carries the current lease_duration:
         * from now on the current renew_deadline is ours. */
        e->granted_renew_deadline = e->renew_deadline;
        return 0;
}

int election_renew(struct election *e, const struct election_publish *pub, char **reterr_msg) {
        int r;

        if (!e->leader)
                return set_error_msg(reterr_msg, "not the leader"), -EPERM;
        r = renew_once(e, pub, reterr_msg);
        if (r != -ESTALE && r != -ENOENT)
                return r;
        /* Someone wrote the record. If it was an annotation (pause, a
         * switchover request) we still hold it and renew on the new version;
         * if another member took it, we have lost it. */
        r = election_observe(e, reterr_msg);
        if (r == -ENOENT) {
                e->leader = false;
                return -ESTALE;
        }
        /* The read failed (a server just back from an outage, working off
         * the requests it queued, our own late renewals among them): who
         * wrote is not known. Nobody may take the lease before our safe
         * time ends (safety rule 1, and failsafe mode's promises), so keep
         * leading and try again; that deadline still fences. */
        if (r < 0)
                return r;
        if (!election_held_by_us(e)) {
                e->leader = false;
                return set_error_msg(reterr_msg, "the lease is now held by %s", strempty(e->observed->holder)), -ESTALE;
        }
        r = renew_once(e, pub, reterr_msg);
        if (r == -ESTALE)
                return reobserve_after_conflict(e);
        return r;
}

static int release_once(struct election *e, const char *successor, uint64_t successor_lsn, usec_t deadline,
                        char **reterr_msg) {
        _cleanup_(dcs_leader_freep) struct dcs_leader *want = NULL;
        struct dcs_leader *got = NULL;
        int r;

        if (!e->observed || !election_held_by_us(e))
                return set_error_msg(reterr_msg, "not the holder (the lease is held by %s)",
                                     e->observed ? strempty(e->observed->holder) : "nobody"), -EPERM;
        r = dcs_leader_copy(e->observed, &want);
        if (r < 0)
                return r;
        if (set_string(&want->holder, "") < 0 || set_string(&want->successor, isempty(successor) ? NULL : successor) < 0)
                return -ENOMEM;
        want->lease_duration = USEC_PER_SEC;
        want->successor_lsn = successor_lsn;
        /* Why and by whom, for the successor's history row (issue 19,
         * item 3); a release without a reason keeps the one in progress. */
        if (e->release_reason) {
                free(want->handover);
                want->handover = strdup_printf("%s %s", e->release_reason, e->identity);
                if (!want->handover)
                        return -ENOMEM;
        }
        want->renew_time = clock_realtime(e->clock);
        r = e->dcs->ops->leader_update(e->dcs->userdata, want, deadline, &got, reterr_msg);
        if (r < 0)
                return r;
        observe_record(e, got, clock_now(e->clock));
        return 0;
}

int election_release(struct election *e, const char *successor, uint64_t successor_lsn, char **reterr_msg) {
        usec_t deadline = clock_now(e->clock) + e->api_timeout;
        int r;

        e->leader = false;
        r = release_once(e, successor, successor_lsn, deadline, reterr_msg);
        for (int i = 0; r == -ESTALE && i < 3; i++) {
                /* Someone wrote an annotation: re-read and release again
                 * while the record still names us. */
                r = election_observe(e, reterr_msg);
                if (r < 0)
                        return r;
                if (reterr_msg)
                        *reterr_msg = mfree(*reterr_msg);
                r = release_once(e, successor, successor_lsn, deadline, reterr_msg);
        }
        return r;
}

int election_update_annotations(struct election *e, int (*mutate)(struct dcs_leader *l, void *userdata),
                                void *userdata, char **reterr_msg) {
        _cleanup_(dcs_leader_freep) struct dcs_leader *want = NULL;
        struct dcs_leader *got = NULL;
        usec_t now = clock_now(e->clock);
        int r;

        if (!e->observed)
                return set_error_msg(reterr_msg, "there is no lease record"), -ENOENT;
        r = dcs_leader_copy(e->observed, &want);
        if (r < 0)
                return r;
        r = mutate(want, userdata);
        if (r < 0)
                return r;
        r = e->dcs->ops->leader_update(e->dcs->userdata, want, now + e->api_timeout, &got, reterr_msg);
        if (r == -ESTALE)
                return reobserve_after_conflict(e);
        if (r < 0)
                return r;
        observe_record(e, got, clock_now(e->clock));
        return 0;
}

void election_adopt_record(struct election *e, struct dcs_leader *record, usec_t now) {
        observe_record(e, record, now);
}

/* The API server orders writes by resourceVersion; where both are integers
 * (etcd's revision, the emulator's counter) that order is used. The time
 * each side received its record is not an order: a renewal's answer can
 * reach the renewer's thread after the loop has written a newer record on
 * top of it (agentctl pause), and adopting it then made the loop see "not
 * paused" and answer a resume with "nothing to resume", leaving the
 * cluster paused for good. */
bool election_record_older(const struct dcs_leader *a, usec_t a_at, const struct dcs_leader *b, usec_t b_at) {
        int64_t va, vb;

        if (a->version && b->version && parse_int64(a->version, &va) >= 0 && parse_int64(b->version, &vb) >= 0)
                return va < vb;
        return a_at < b_at;
}

void election_adopt_missing(struct election *e, usec_t now) {
        e->observed = dcs_leader_free(e->observed);
        if (!e->observed_missing)
                e->observed_at = now;
        e->observed_missing = true;
        e->leader = false;
}
