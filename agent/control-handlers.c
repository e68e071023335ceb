/* control-handlers.c: the agent's answers on its control socket: status
 * from what the control loop last saw, the operator's Lease annotations
 * (pause, switchover) and the pre-stop demote that waits for its hand-over. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "act.h"
#include "agent.h"
#include "control-handlers.h"
#include "control.h"
#include "pgconn.h"
#include "util.h"

/* Answered when the lease record cannot be written; the operator retries. */
#define ANNOTATION_ATTEMPTS 3
#define DEMOTE_DEFAULT_TIMEOUT (60 * USEC_PER_SEC)
/* The local server as the last tick observed it. */
struct status_snapshot {
        usec_t at;                    /* 0: no tick yet */
        bool running, accepting, in_recovery, held, supervisor_watched, supervisor_gone;
        uint32_t timeline;
        uint64_t lsn, replay_lsn;
        char *upstream_host;
        int upstream_port;
};

struct control_handlers {
        struct agent *agent;
        struct control_server *server;
        struct control_reply *demote_reply;

        struct status_snapshot pg;
};

static inline void json_deletep(cJSON **j) {
        if (*j)
                cJSON_Delete(*j);
}


/* ---- status ---- */

static double seconds(usec_t u) {
        return (double) u / (double) USEC_PER_SEC;
}

static bool add_lsn(cJSON *o, const char *key, uint64_t lsn) {
        _cleanup_free_ char *s = NULL;

        if (lsn == 0)
                return cJSON_AddNullToObject(o, key);
        s = dcs_lsn_format(lsn);
        return s && cJSON_AddStringToObject(o, key, s);
}

static bool add_string_or_null(cJSON *o, const char *key, const char *v) {
        return v ? !!cJSON_AddStringToObject(o, key, v) : !!cJSON_AddNullToObject(o, key);
}

static bool add_strv(cJSON *o, const char *key, char *const *v) {
        cJSON *a = cJSON_AddArrayToObject(o, key);

        if (!a)
                return false;
        for (; v && *v; v++) {
                cJSON *s = cJSON_CreateString(*v);

                if (!s || !cJSON_AddItemToArray(a, s))
                        return false;
        }
        return true;
}

/* Takes item (which may be NULL: out of memory). */
static bool add_item(cJSON *o, const char *key, cJSON *item) {
        if (!item)
                return false;
        if (!cJSON_AddItemToObject(o, key, item)) {
                cJSON_Delete(item);
                return false;
        }
        return true;
}

/* The local server as the last tick saw it: `status` never waits on
 * PostgreSQL (a flood of status requests must not hold up the loop). */
static cJSON *status_postgres(struct control_handlers *h, usec_t now) {
        _cleanup_(json_deletep) cJSON *o = cJSON_CreateObject();
        _cleanup_free_ char *upstream = NULL;
        const struct status_snapshot *st = &h->pg;
        bool accepting = st->at > 0 && st->accepting;

        if (!o)
                return NULL;
        if (accepting && st->upstream_host)
                upstream = strdup_printf("%s:%d", st->upstream_host, st->upstream_port ? st->upstream_port : 5432);
        if (!cJSON_AddBoolToObject(o, "running", st->running) ||
            !cJSON_AddBoolToObject(o, "accepting", accepting) ||
            !(accepting ? cJSON_AddBoolToObject(o, "in_recovery", st->in_recovery) : cJSON_AddNullToObject(o, "in_recovery")) ||
            !(accepting ? cJSON_AddNumberToObject(o, "timeline", st->timeline) : cJSON_AddNullToObject(o, "timeline")) ||
            !add_lsn(o, "lsn", accepting ? st->lsn : 0) ||
            !add_lsn(o, "replay_lsn", accepting ? st->replay_lsn : 0) ||
            !add_string_or_null(o, "upstream", upstream) ||
            !cJSON_AddNullToObject(o, "replay_lag_seconds") ||
            !cJSON_AddBoolToObject(o, "held", st->held) ||
            !(st->supervisor_watched && st->at ? cJSON_AddBoolToObject(o, "supervisor", !st->supervisor_gone)
                                               : cJSON_AddNullToObject(o, "supervisor")) ||
            !(st->at ? cJSON_AddNumberToObject(o, "observed_seconds_ago", seconds(now - MIN(now, st->at)))
                     : cJSON_AddNullToObject(o, "observed_seconds_ago")))
                return NULL;
        return TAKE_PTR(o);
}

void control_handlers_observed(struct agent *a, const struct observation *o) {
        struct control_handlers *h = a->control;
        char *host = NULL;

        if (!h)
                return;
        if (o->pg_upstream_host && !(host = strdup(o->pg_upstream_host)))
                return;
        free(h->pg.upstream_host);
        h->pg = (struct status_snapshot) {
                .at = clock_now(a->clock),
                .running = o->pg_running,
                .accepting = o->pg_accepting,
                .in_recovery = o->pg_in_recovery,
                .held = o->pg_held,
                .supervisor_watched = o->supervisor_watched,
                .supervisor_gone = o->supervisor_gone,
                .timeline = o->pg_timeline,
                .lsn = o->pg_lsn,
                .replay_lsn = o->pg_replay_lsn,
                .upstream_host = host,
                .upstream_port = o->pg_upstream_port,
        };
}

static cJSON *status_lease(struct agent *a, usec_t now) {
        const struct election *e = &a->node.election;
        const struct dcs_leader *l = e->observed;
        _cleanup_(json_deletep) cJSON *o = cJSON_CreateObject();
        cJSON *opt;

        if (!o)
                return NULL;
        if (!l) {
                /* exists: false when the API said there is none, null when
                 * it has not been read yet. */
                if (!(e->observed_missing ? cJSON_AddBoolToObject(o, "exists", false) : cJSON_AddNullToObject(o, "exists")) ||
                    !cJSON_AddNullToObject(o, "holder"))
                        return NULL;
                return TAKE_PTR(o);
        }
        if (!cJSON_AddBoolToObject(o, "exists", true) ||
            !cJSON_AddStringToObject(o, "holder", strempty(l->holder)) ||
            !cJSON_AddNumberToObject(o, "transitions", (double) l->transitions) ||
            !cJSON_AddNumberToObject(o, "lease_duration_seconds", seconds(l->lease_duration)) ||
            !cJSON_AddBoolToObject(o, "paused", l->paused) ||
            !add_strv(o, "sync", l->sync) ||
            !add_string_or_null(o, "sync_mode", dcs_sync_mode_to_string(l->sync_mode)) ||
            !add_string_or_null(o, "switchover", l->switchover) ||
            !add_string_or_null(o, "switchover_refused", l->switchover_refused) ||
            !add_string_or_null(o, "successor", l->successor) ||
            !cJSON_AddNumberToObject(o, "age_seconds", seconds(now - MIN(now, e->observed_at))) ||
            !cJSON_AddBoolToObject(o, "held_by_us", election_held_by_us(e)) ||
            !(e->leader ? cJSON_AddNumberToObject(o, "renew_remaining_seconds", seconds(election_renew_remaining(e, now)))
                        : cJSON_AddNullToObject(o, "renew_remaining_seconds")))
                return NULL;
        if (l->optime_timeline == 0 && l->optime_lsn == 0)
                return cJSON_AddNullToObject(o, "optime") ? TAKE_PTR(o) : NULL;
        opt = cJSON_AddObjectToObject(o, "optime");
        if (!opt || !cJSON_AddNumberToObject(opt, "timeline", l->optime_timeline) || !add_lsn(opt, "lsn", l->optime_lsn))
                return NULL;
        return TAKE_PTR(o);
}

static cJSON *status_members(struct control_handlers *h) {
        _cleanup_(json_deletep) cJSON *arr = cJSON_CreateArray();

        if (!arr)
                return NULL;
        const struct dcs_member_list *members = h->agent->node.members;

        for (size_t i = 0; members && i < members->n; i++) {
                const struct dcs_member *m = &members->members[i];
                _cleanup_free_ char *json = NULL;
                cJSON *o;

                if (dcs_member_to_json(m, &json) < 0)
                        return NULL;
                o = cJSON_Parse(json);
                if (!o || !cJSON_AddItemToArray(arr, o) || !cJSON_AddStringToObject(o, "name", m->name))
                        return NULL;
        }
        return TAKE_PTR(arr);
}

/* Issue 17, item 3: this agent holds the lease and can prove it: it leads,
 * its last successful renewal was sent less than renew_deadline ago, and it
 * is not fencing. A primary is routable only while this holds (`agentctl
 * node check`); past it the others may take the lease after lease_duration. */
static bool lease_valid(const struct agent *a, usec_t now) {
        const struct election *e = &a->node.election;

        return e->leader && a->state.kind != AGENT_FENCED && a->state.kind != AGENT_STOPPED &&
                election_renew_remaining(e, now) > 0;
}

static void handle_status(struct control_handlers *h, struct control_reply *rp) {
        struct agent *a = h->agent;
        usec_t now = clock_now(a->clock);
        _cleanup_(json_deletep) cJSON *o = cJSON_CreateObject();
        cJSON *node;

        node = cJSON_AddObjectToObject(o, "node");
        if (!node ||
            !cJSON_AddStringToObject(node, "name", a->config.node_name) ||
            !cJSON_AddStringToObject(node, "cluster", a->config.cluster_name) ||
            !cJSON_AddStringToObject(node, "state", agent_state_to_string(a->state.kind)) ||
            !cJSON_AddNumberToObject(node, "state_seconds", seconds(now - MIN(now, a->state.since))) ||
            !cJSON_AddBoolToObject(node, "leader", a->node.election.leader) ||
            !cJSON_AddBoolToObject(node, "lease_valid", lease_valid(a, now)) ||
            !cJSON_AddBoolToObject(node, "demote_requested", a->state.demote_requested) ||
            !cJSON_AddNumberToObject(node, "priority", (double) a->config.priority) ||
            !cJSON_AddBoolToObject(node, "nofailover", a->config.nofailover) ||
            !cJSON_AddNumberToObject(node, "ticks", (double) a->ticks) ||
            !cJSON_AddNumberToObject(o, "status_interval_seconds", seconds(a->config.status_interval)) ||
            !cJSON_AddNumberToObject(o, "lease_duration_seconds", seconds(a->config.lease_duration)) ||
            !cJSON_AddNumberToObject(o, "maximum_lag_on_failover", (double) a->config.maximum_lag_on_failover) ||
            !(a->node.members ? cJSON_AddNumberToObject(o, "members_age_seconds",
                                                        seconds(now - MIN(now, a->node.members_at)))
                         : cJSON_AddNullToObject(o, "members_age_seconds"))) {
                (void) control_reply_error(rp, "out of memory");
                return;
        }
        if (!add_item(node, "postgres", status_postgres(h, now)) || !add_item(o, "lease", status_lease(a, now)) ||
            !add_item(o, "members", status_members(h))) {
                (void) control_reply_error(rp, "out of memory");
                return;
        }
        (void) control_reply(rp, TAKE_PTR(o));
}

/* ---- pause, resume, switchover: the operator's Lease annotations ---- */

/* Error answers carry a code that agentctl turns into its exit code. */
static int reply_fail(struct control_reply *rp, const char *code, const char *fmt, ...) _printf_(3, 4);
static int reply_fail(struct control_reply *rp, const char *code, const char *fmt, ...) {
        _cleanup_free_ char *msg = NULL;
        cJSON *o = cJSON_CreateObject();
        va_list ap;

        va_start(ap, fmt);
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (o && (!cJSON_AddBoolToObject(o, "ok", false) || !cJSON_AddStringToObject(o, "error", msg ? msg : "out of memory") ||
                  !cJSON_AddStringToObject(o, "code", code))) {
                cJSON_Delete(o);
                o = NULL;
        }
        (void) control_reply(rp, o);
        return 0;
}

struct annotation_change {
        int paused;                  /* -1: leave */
        const char *switchover;      /* NULL: leave */
        char *refusal;               /* why the record did not take the change */
};

/* One hand-over at a time (docs/handover.pml): a request on the lease, a
 * release naming a successor, or a final LSN not yet cleared by the new
 * primary's first renewal each mean one is in progress. */
static int handover_in_progress(const struct dcs_leader *l, char **ret) {
        if (!isempty(l->switchover))
                *ret = strdup_printf("a switchover to %s is already requested and in progress; wait for it (agentctl cluster show)",
                                     streq(l->switchover, "*") ? "the best standby" : l->switchover);
        else if (isempty(l->holder) && (!isempty(l->successor) || l->successor_lsn > 0))
                *ret = strdup_printf("a hand-over to %s is in progress; wait for it (agentctl cluster show)",
                                     isempty(l->successor) ? "the best standby" : l->successor);
        else if (l->successor_lsn > 0)
                *ret = strdup_printf("a hand-over to %s is in progress (it has not promoted yet); wait for it (agentctl cluster show)",
                                     strempty(l->holder));
        else
                return 0;
        return *ret ? -EBUSY : -ENOMEM;
}

static int apply_change(struct dcs_leader *l, void *userdata) {
        struct annotation_change *c = userdata;
        int r;

        c->refusal = mfree(c->refusal);
        if (c->switchover) {
                r = handover_in_progress(l, &c->refusal);
                if (r < 0)
                        return r;
                if (isempty(l->holder)) {
                        c->refusal = strdup("nobody holds the lease: there is no primary to switch over from");
                        return c->refusal ? -EBUSY : -ENOMEM;
                }
        }
        if (c->paused >= 0 && !c->switchover && l->paused == c->paused)
                return -EALREADY; /* nothing to write */
        if (c->paused >= 0)
                l->paused = c->paused;
        if (c->switchover) {
                char *s = strdup(c->switchover);

                if (!s)
                        return -ENOMEM;
                free(l->switchover);
                l->switchover = s;
                /* A new request starts without the last one's refusal. */
                l->switchover_refused = mfree(l->switchover_refused);
        }
        return 0;
}

/* The change is judged on a record read now, not on the loop's copy, which
 * may be older than the Lease (a renewal's answer that arrived late): "was
 * not paused: nothing to resume" from a stale copy left a cluster paused
 * with nobody knowing. A write that meets a concurrent renewal (409) is
 * tried again on the record election_update_annotations() has re-read. */
static int write_annotations(struct agent *a, struct annotation_change *c, char **reterr_msg) {
        struct election *e = &a->node.election;
        int r = -ESTALE;

        r = election_observe(e, reterr_msg);
        if (r < 0)
                return r;
        r = -ESTALE;
        for (int i = 0; i < ANNOTATION_ATTEMPTS && r == -ESTALE; i++) {
                *reterr_msg = mfree(*reterr_msg);
                r = election_update_annotations(e, apply_change, c, reterr_msg);
        }
        return r;
}

/* `resume` also brings back a node that `demote` stopped (a standby's
 * pre-stop, or a primary after its hand-over) while its agent runs on:
 * without it only a restart would. It starts again as a standby. */
static bool undemote(struct agent *a) {
        if (!a->state.demote_requested || !a->state.demote_done || a->state.kind != AGENT_STOPPED)
                return false;
        a->state.demote_requested = false;
        a->state.demote_done = false;
        a->state.kind = AGENT_STARTING;
        agent_log(a, LOG_LEVEL_INFO, "resume", "resumed after demote: starting PostgreSQL again as a standby");
        return true;
}

static void handle_pause(struct control_handlers *h, struct control_reply *rp, bool paused) {
        struct annotation_change c = { .paused = paused };
        _cleanup_free_ char *err = NULL;
        bool restarted = !paused && undemote(h->agent);
        cJSON *o;
        int r;

        r = write_annotations(h->agent, &c, &err);
        free(c.refusal);
        if (r == -EALREADY) {
                o = cJSON_CreateObject();
                if (o && (!cJSON_AddBoolToObject(o, "paused", paused) || !cJSON_AddBoolToObject(o, "changed", restarted) ||
                          !cJSON_AddStringToObject(o, "message", paused ? "automatic failover was already paused" :
                                                   restarted ? "demoted node restarting as a standby (automatic failover was not paused)" :
                                                   "automatic failover was not paused: nothing to resume"))) {
                        cJSON_Delete(o);
                        o = NULL;
                }
                (void) control_reply(rp, o);
                return;
        }
        if (r < 0) {
                reply_fail(rp, r == -ENOENT ? "not_found" : "unreachable", "cannot %s: %s", paused ? "pause" : "resume",
                           err ? err : strerror(-r));
                return;
        }
        /* An event, not just a log line: operator actions belong in the
         * audit trail of cluster events (issue 19, 4c). */
        event_emit(&h->agent->node, &h->agent->log, LOG_LEVEL_INFO, paused ? "pause" : "resume", "%s by agentctl",
                   paused ? "automatic failover paused" : "automatic failover resumed");
        o = cJSON_CreateObject();
        if (o) {
                cJSON_AddBoolToObject(o, "paused", paused);
                cJSON_AddBoolToObject(o, "changed", true);
                cJSON_AddStringToObject(o, "message", paused ? "automatic failover paused" :
                                        restarted ? "automatic failover resumed; demoted node restarting as a standby" :
                                        "automatic failover resumed");
        }
        (void) control_reply(rp, o);
}

static const struct dcs_member *find_member(struct control_handlers *h, const char *name) {
        const struct dcs_member_list *members = h->agent->node.members;

        for (size_t i = 0; members && i < members->n; i++)
                if (streq(members->members[i].name, name))
                        return &members->members[i];
        return NULL;
}

static int handle_switchover(struct control_handlers *h, struct control_reply *rp, const cJSON *req) {
        const cJSON *to = cJSON_GetObjectItemCaseSensitive(req, "to");
        const struct dcs_leader *l = h->agent->node.election.observed;
        struct annotation_change c = { .paused = -1, .switchover = "*" };
        _cleanup_free_ char *err = NULL, *from = NULL;
        const struct dcs_member *m;
        cJSON *o;
        int r;

        if (to && !cJSON_IsNull(to) && !(cJSON_IsString(to) && !isempty(to->valuestring)))
                return reply_fail(rp, "usage", "\"to\" must be a member name or null");
        if (l && handover_in_progress(l, &err) < 0)
                return reply_fail(rp, "refused", "switchover refused: %s", strempty(err));
        if (!l || isempty(l->holder))
                return reply_fail(rp, "refused", "nobody holds the lease: there is no primary to switch over from");
        if (cJSON_IsString(to)) {
                c.switchover = to->valuestring;
                if (streq(to->valuestring, l->holder))
                        return reply_fail(rp, "refused", "%s already holds the lease", l->holder);
                m = find_member(h, to->valuestring);
                if (!m)
                        return reply_fail(rp, "not_found", "no member named %s in cluster %s", to->valuestring,
                                          h->agent->config.cluster_name);
                /* A member without a status record yet is left to the
                 * leader's decision, which refuses an unfit target. */
                if (!isempty(m->host) && (m->nofailover || m->priority == 0))
                        return reply_fail(rp, "refused", "%s is not a failover candidate (nofailover or priority 0)", m->name);
        }
        /* The write replaces the observed record: l is gone after it. */
        from = strdup(l->holder);
        if (!from)
                return reply_fail(rp, "failed", "out of memory");
        l = NULL;
        r = write_annotations(h->agent, &c, &err);
        if (r == -EBUSY) {
                _cleanup_free_ char *why = TAKE_PTR(c.refusal);

                return reply_fail(rp, "refused", "switchover refused: %s", strempty(why));
        }
        c.refusal = mfree(c.refusal);
        if (r < 0)
                return reply_fail(rp, "unreachable", "cannot request the switchover: %s", err ? err : strerror(-r));
        event_emit(&h->agent->node, &h->agent->log, LOG_LEVEL_INFO, "switchover-request", "switchover from %s to %s requested by agentctl", from,
                  streq(c.switchover, "*") ? "the best standby" : c.switchover);
        o = cJSON_CreateObject();
        if (o && (!cJSON_AddStringToObject(o, "from", from) ||
                  !cJSON_AddStringToObject(o, "to", c.switchover))) {
                cJSON_Delete(o);
                o = NULL;
        }
        (void) control_reply(rp, o);
        return 0;
}

/* ---- demote: the pre-stop hook's hand-over, answered when it is done ---- */

static void demote_expired(struct control_reply *rp, const char *error, void *userdata) {
        struct control_handlers *h = userdata;

        h->demote_reply = NULL;
        reply_fail(rp, streq(error, "the agent is stopping") ? "failed" : "timeout", "demote: %s", error);
}

static int handle_demote(struct control_handlers *h, struct control_reply *rp, const cJSON *req) {
        const cJSON *timeout = cJSON_GetObjectItemCaseSensitive(req, "timeout");
        const cJSON *wait = cJSON_GetObjectItemCaseSensitive(req, "wait");
        struct agent *a = h->agent;
        usec_t t = DEMOTE_DEFAULT_TIMEOUT, now = clock_now(a->clock);
        cJSON *o;

        if (timeout && !cJSON_IsNull(timeout)) {
                if (!cJSON_IsNumber(timeout) || timeout->valuedouble <= 0 || timeout->valuedouble > 86400)
                        return reply_fail(rp, "usage", "\"timeout\" must be a number of seconds in (0, 86400]");
                t = (usec_t) (timeout->valuedouble * (double) USEC_PER_SEC);
        }
        if (wait && !cJSON_IsBool(wait))
                return reply_fail(rp, "usage", "\"wait\" must be true or false");
        if (a->election_only || !a->have_state)
                return reply_fail(rp, "refused", "this agent does not manage PostgreSQL (--election-only)");
        if (a->state.demote_done) {
                o = cJSON_CreateObject();
                if (o)
                        cJSON_AddStringToObject(o, "message", "already demoted");
                (void) control_reply(rp, o);
                return 0;
        }
        if (!a->state.demote_requested) {
                a->state.demote_requested = true;
                a->state.demote_deadline = now + t;
                agent_log(a, LOG_LEVEL_INFO, "demote", "demote requested by agentctl (deadline in %.0f s)", (double) t / USEC_PER_SEC);
        }
        if (!cJSON_IsTrue(wait)) {
                o = cJSON_CreateObject();
                if (o)
                        cJSON_AddStringToObject(o, "message", "demote requested");
                (void) control_reply(rp, o);
                return 0;
        }
        if (h->demote_reply) {
                struct control_reply *old = TAKE_PTR(h->demote_reply);

                reply_fail(old, "failed", "superseded by a newer demote request");
        }
        /* The decision loop acts on its deadline (fence and release) first;
         * the margin lets that answer arrive before the request expires. */
        if (control_reply_keep(rp, a->state.demote_deadline - MIN(now, a->state.demote_deadline) + 2 * a->config.retry_period + 5 * USEC_PER_SEC,
                               demote_expired, h) < 0)
                return reply_fail(rp, "failed", "out of memory");
        h->demote_reply = rp;
        return 0;
}

void control_handlers_complete_demote(struct agent *a, bool ok, const char *msg) {
        struct control_handlers *h = a->control;
        struct control_reply *rp;
        cJSON *o;

        if (!h || !h->demote_reply)
                return;
        rp = TAKE_PTR(h->demote_reply);
        if (!ok) {
                (void) reply_fail(rp, "failed", "demote failed: %s", strempty(msg));
                return;
        }
        o = cJSON_CreateObject();
        if (o)
                cJSON_AddStringToObject(o, "message", strempty(msg));
        (void) control_reply(rp, o);
}

static void on_demote_done(void *userdata, bool ok, const char *message) {
        control_handlers_complete_demote(userdata, ok, message);
}

const struct dcs_member_list *control_handlers_members(const struct agent *a, usec_t *ret_at) {
        if (!a->control || !a->have_node || !a->node.members)
                return NULL;
        *ret_at = a->node.members_at;
        return a->node.members;
}

/* ---- dispatch, attach, detach ---- */

static void on_request(struct control_reply *rp, const char *command, const cJSON *req, void *userdata) {
        struct control_handlers *h = userdata;

        if (streq(command, "status"))
                handle_status(h, rp);
        else if (streq(command, "pause"))
                handle_pause(h, rp, true);
        else if (streq(command, "resume"))
                handle_pause(h, rp, false);
        else if (streq(command, "switchover"))
                handle_switchover(h, rp, req);
        else if (streq(command, "demote"))
                handle_demote(h, rp, req);
        else
                reply_fail(rp, "usage", "unknown command \"%s\" (status, switchover, demote, pause, resume)", command);
}

int control_handlers_attach(struct agent *a, char **reterr_msg) {
        _cleanup_free_ char *path = NULL;
        struct control_handlers *h;
        int r;

        if (!a->have_node || !a->event)
                return -EINVAL;
        r = control_socket_path(a->config.control_socket, a->config.run_dir, &path);
        if (r < 0)
                return set_error_msg(reterr_msg, "neither control_socket nor run_dir is set"), r;
        h = calloc(1, sizeof *h);
        if (!h)
                return -ENOMEM;
        h->agent = a;
        r = control_server_attach(a->event, path, on_request, h, &h->server, reterr_msg);
        if (r < 0) {
                free(h);
                return r;
        }
        a->node.demote_done = on_demote_done;
        a->node.demote_userdata = a;
        a->control = h;
        agent_log(a, LOG_LEVEL_DEBUG, "control", "control socket at %s", path);
        return 0;
}

void control_handlers_detach(struct agent *a) {
        struct control_handlers *h = a->control;

        if (!h)
                return;
        /* Kept replies (a waiting demote) are answered by the server. */
        h->server = control_server_detach(h->server);
        if (a->have_node && a->node.demote_userdata == a) {
                a->node.demote_done = NULL;
                a->node.demote_userdata = NULL;
        }
        free(h->pg.upstream_host);
        free(h);
        a->control = NULL;
}
