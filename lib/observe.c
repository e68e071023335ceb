/* observe.c: one snapshot of the local node and the cluster, taken at the
 * start of a tick: the local Postgres, the leader lease, the member records
 * and, when a failover is possible, the peers' Postgres servers. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "decide.h"
#include "node.h"
#include "observe.h"
#include "pgconn.h"
#include "supervisor.h"
#include "util.h"

static int strdup_or_null(const char *s, char **ret) {
        *ret = s ? strdup(s) : NULL;
        return (s && !*ret) ? -ENOMEM : 0;
}

/* Parses what decide() writes into synchronous_standby_names
 * ('ANY k ("a", "b")', or "*") and the plain forms an operator may have
 * set ('a, b', 'FIRST 1 (a)'). */
int observe_parse_sync_names(const char *value, char ***ret) {
        _cleanup_free_ char *copy = NULL;
        _cleanup_strv_free_ char **items = NULL, **names = calloc(1, sizeof(char *));
        char *list, *close;
        int r;

        if (!names)
                return -ENOMEM;
        copy = strdup(strempty(value));
        if (!copy)
                return -ENOMEM;
        list = strchr(copy, '(');
        if (list) {
                list++;
                close = strrchr(list, ')');
                if (close)
                        *close = '\0';
        } else
                list = copy;
        r = strv_split_comma(list, &items);
        if (r < 0)
                return r;
        for (char **i = items; *i; i++) {
                char *v = *i;
                size_t len = strlen(v);

                if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
                        v[len - 1] = '\0';
                        v++;
                }
                if (*v && (r = strv_extend(&names, v)) < 0)
                        return r;
        }
        *ret = TAKE_PTR(names);
        return 0;
}

static void observe_replication(PGconn *c, struct observation *o) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        int n;

        if (pgconn_exec(c, "SELECT current_setting('synchronous_standby_names')", 0, NULL, &res, NULL) < 0 ||
            observe_parse_sync_names(PQgetvalue(res, 0, 0), &o->pg_sync_names) < 0)
                return;
        res = pgresult_clear(res);
        if (pgconn_exec(c, "SELECT application_name, state = 'streaming', COALESCE(flush_lsn::text, '0/0') "
                           "FROM pg_stat_replication WHERE application_name <> ''", 0, NULL, &res, NULL) < 0)
                return;
        n = PQntuples(res);
        o->replicas = calloc(n > 0 ? (size_t) n : 1, sizeof *o->replicas);
        if (!o->replicas)
                return;
        for (int i = 0; i < n; i++) {
                struct replica_observation *r = &o->replicas[o->n_replicas];

                r->name = strdup(PQgetvalue(res, i, 0));
                if (!r->name)
                        return;
                r->streaming = streq(PQgetvalue(res, i, 1), "t");
                (void) pg_lsn_parse(PQgetvalue(res, i, 2), &r->flush_lsn);
                o->n_replicas++;
        }
}

/* Where primary_conninfo points: the standby follows that even while its
 * WAL receiver is not connected. */
static void observe_conninfo(PGconn *c, struct observation *o) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        PQconninfoOption *opts;

        if (pgconn_exec(c, "SELECT current_setting('primary_conninfo')", 0, NULL, &res, NULL) < 0)
                return;
        opts = PQconninfoParse(PQgetvalue(res, 0, 0), NULL);
        if (!opts)
                return;
        for (PQconninfoOption *i = opts; i->keyword; i++) {
                if (!i->val)
                        continue;
                if (streq(i->keyword, "host") && !o->pg_conninfo_host)
                        o->pg_conninfo_host = strdup(i->val);
                else if (streq(i->keyword, "port"))
                        o->pg_conninfo_port = atoi(i->val);
        }
        if (o->pg_conninfo_host && o->pg_conninfo_port == 0)
                o->pg_conninfo_port = 5432;
        PQconninfoFree(opts);
}

/* A primary is up only if clients can reach it: a frozen postmaster
 * accepts no new connection while the agent's old one still answers. The
 * probe waits one retry_period at most (at least 1 s, at most
 * connect_timeout), so that a frozen postmaster does not stretch every
 * tick, and with it the time to fail over, by a whole connect_timeout. */
static bool accepts_new_connections(struct node *n) {
        _cleanup_free_ char *ci = NULL;
        usec_t timeout = MAX(MIN(n->cfg->connect_timeout, n->cfg->retry_period), USEC_PER_SEC);

        if (node_local_conninfo(n, &ci) < 0)
                return true; /* cannot tell: judge by the old connection */
        return pgconn_probe(ci, "pglease-agent", timeout) >= 0;
}

static void observe_local(struct node *n, struct observation *o) {
        struct pg_node_status st = {};
        PGconn *c;
        pid_t pid;
        bool reused;

        o->pg_data_present = node_data_present(n);
        o->pg_running = pgctl_is_running(&n->pgctl, &pid) > 0;
        o->pg_standby_marker = pgctl_has_standby_marker(n->cfg->data_dir) > 0;
        o->pg_held = pgctl_hold_is_set(n->cfg->run_dir) > 0;
        /* Every tick: the supervisor carries the lease-expiry backstop. */
        if (n->cfg->pgctl == PGCTL_BACKEND_SUPERVISOR) {
                o->supervisor_watched = true;
                o->supervisor_gone = supervisor_pid_alive(n->cfg->run_dir, NULL) < 0;
        }
        if (!o->pg_running) {
                node_local_reset(n);
                return;
        }
        reused = n->local && PQstatus(n->local) == CONNECTION_OK;
        c = node_local(n, NULL);
        if (!c)
                return;
        if (pgconn_query_status(c, &st, NULL) < 0) {
                node_local_reset(n);
                return;
        }
        if (reused && !st.in_recovery && !accepts_new_connections(n)) {
                /* Counted as down: after primary_start_timeout the holder
                 * fences and releases as for a crash (decide_holder_down). */
                o->pg_refusing = true;
                o->pg_accepted_at = n->local_accepted_at;
                pg_node_status_done(&st);
                return;
        }
        /* Accepted: a new connection now or at this tick (not reused). */
        n->local_accepted_at = o->now;
        o->pg_accepting = true;
        o->pg_in_recovery = st.in_recovery;
        o->pg_timeline = st.timeline;
        o->pg_lsn = st.in_recovery ? MAX(st.receive_lsn, st.replay_lsn) : st.current_lsn;
        o->pg_replay_lsn = st.in_recovery ? st.replay_lsn : st.current_lsn;
        o->pg_replay_lag = st.in_recovery ? st.replay_lag : 0;
        o->pg_streaming = st.wal_receiver_streaming;
        o->pg_upstream_host = TAKE_PTR(st.upstream_host);
        o->pg_upstream_port = st.upstream_port;
        pg_node_status_done(&st);
        if (!o->pg_in_recovery)
                observe_replication(c, o);
        else
                observe_conninfo(c, o);
}

static int observe_lease(struct node *n, struct observation *o, usec_t now) {
        struct election *e = &n->election;
        const struct dcs_leader *l;
        int r;

        /* What the renewer's thread wrote or learnt since the last tick. */
        renewer_sync(n->renewer, e, n->cfg->retry_period);
        /* A holder in good standing does not read the Lease: its renewal
         * (a write carrying the version) fails with a conflict when anybody
         * else wrote, and election_renew() then reads it again. That halves
         * the leader's requests. */
        if (e->leader && e->observed && !election_lost(e, MAX(now, clock_now(n->clock))))
                r = 0;
        else if (!e->leader)
                r = node_read_lease(n, NULL);
        else
                r = election_observe(e, NULL);
        /* Judged at the time of the read, not at the start of the tick. */
        now = MAX(now, clock_now(n->clock));
        o->lease_read = r >= 0 || r == -ENOENT;
        o->lease_missing = e->observed_missing;
        o->lease_leader = e->leader;
        o->lease_lost = election_lost(e, now);
        /* Lost is a one-time fact: this tick fences; afterwards we are no
         * longer the leader (a supervisor's watchdog may have fenced
         * already, and no fence action would reset it). */
        if (o->lease_lost)
                e->leader = false;
        o->lease_held_by_us = election_held_by_us(e);
        o->lease_may_acquire = election_may_acquire(e, now);
        o->lease_renew_sent = e->leader ? e->last_renew_sent : 0;
        o->lease_renew_deadline = election_renew_deadline(e);
        l = e->observed;
        if (!l)
                return 0;
        for (char **s = l->failsafe; s && *s; s++)
                if (strv_extend(&o->lease_failsafe, *s) < 0)
                        return -ENOMEM;
        o->paused = l->paused;
        o->successor_lsn = l->successor_lsn;
        o->optime_timeline = l->optime_timeline;
        o->optime_lsn = l->optime_lsn;
        o->sync_mode = l->sync_mode;
        if (strdup_or_null(l->holder ? l->holder : "", &o->lease_holder) < 0 ||
            strdup_or_null(l->successor, &o->successor) < 0 ||
            strdup_or_null(l->switchover, &o->switchover) < 0 ||
            strdup_or_null(l->handover, &o->handover) < 0)
                return -ENOMEM;
        for (char **s = l->sync; s && *s; s++)
                if (strv_extend(&o->sync, *s) < 0)
                        return -ENOMEM;
        return 0;
}

/* A decision may need the member list as the server has it now: while a
 * failover or hand-over is possible, a switchover is asked, or someone
 * else leads and we do not know where yet. The watch of the Pods does not
 * stand in for a list then: a stream that died silently is found out only
 * at its stall bound. */
static bool members_needed_now(const struct node *n, const struct observation *o) {
        if (o->lease_may_acquire && !o->lease_held_by_us)
                return true;
        if (o->lease_held_by_us && (!o->pg_accepting || o->pg_in_recovery))
                return true;
        if (!isempty(o->switchover))
                return true;
        if (!isempty(o->lease_holder) && !streq(o->lease_holder, n->cfg->node_name)) {
                if (!n->members)
                        return true;
                for (size_t i = 0; i < n->members->n; i++)
                        if (streq(n->members->members[i].name, o->lease_holder))
                                return isempty(n->members->members[i].host);
                return true;
        }
        return false;
}

/* The member list is read again only when a decision may need it fresh
 * (above), at least every status_interval, and when the lease changed
 * hands; in between, a steady member costs the API server one read a tick
 * (the Lease), not two, and with the watch of the Pods none. */
static bool members_stale(const struct node *n, const struct observation *o, usec_t now) {
        if (!n->members || now < n->members_at || now - n->members_at >= n->cfg->status_interval)
                return true;
        if (!streq(strempty(o->lease_holder), strempty(n->members_holder)))
                return true;
        return members_needed_now(n, o);
}

static int observe_members(struct node *n, struct observation *o, usec_t now) {
        const struct dcs_member_list *list;
        int r;

        if (!members_needed_now(n, o) && node_read_members_watched(n, now) > 0) {
                char *holder = strdup(strempty(o->lease_holder));

                if (!holder)
                        return -ENOMEM;
                free(n->members_holder);
                n->members_holder = holder;
        } else if (members_stale(n, o, now)) {
                struct dcs_member_list *fresh = NULL;
                char *holder = strdup(strempty(o->lease_holder));

                r = n->dcs.ops->member_list(n->dcs.userdata, now + n->cfg->api_timeout, &fresh, NULL);
                if (r >= 0 && holder) {
                        dcs_member_list_free(n->members);
                        n->members = fresh;
                        n->members_at = now;
                        free(n->members_holder);
                        n->members_holder = holder;
                } else {
                        free(holder);
                        dcs_member_list_free(fresh);
                        if (!n->members)
                                return r < 0 ? r : -ENOMEM;
                        /* Unreachable: decide on the last list we read. */
                }
        }
        list = n->members;
        o->peers = calloc(list->n ? list->n : 1, sizeof *o->peers);
        if (!o->peers)
                return -ENOMEM;
        for (size_t i = 0; i < list->n; i++) {
                struct dcs_member *m = &list->members[i];
                struct peer_observation *p;

                if (streq(m->name, n->cfg->node_name))
                        continue;
                if (o->lease_holder && streq(m->name, o->lease_holder) && !isempty(m->host)) {
                        if (strdup_or_null(m->host, &o->leader_host) < 0)
                                return -ENOMEM;
                        o->leader_port = m->port ? m->port : 5432;
                        o->leader_timeline = m->timeline;
                }
                p = &o->peers[o->n_peers++];
                *p = (struct peer_observation) {
                        .role = m->role,
                        .port = m->port ? m->port : 5432,
                        .priority = m->priority,
                        .nofailover = m->nofailover,
                        .has_record = !isempty(m->host),
                        .timeline = m->timeline,
                        .receive_lsn = m->lsn,
                        .replay_lsn = m->replay_lsn,
                };
                if (strdup_or_null(m->name, &p->name) < 0 || strdup_or_null(m->state, &p->state) < 0 ||
                    strdup_or_null(m->host, &p->host) < 0)
                        return -ENOMEM;
        }
        return 0;
}

/* Safety rule 2 compares with what the peers' servers say now, not with
 * their last published record: probe each one, with a short timeout. */
static void probe_peer(const struct node *n, struct peer_observation *p) {
        _cleanup_(pgconn_closep) PGconn *c = NULL;
        _cleanup_free_ char *ci = NULL;
        struct pg_node_status st = {};
        usec_t timeout = MIN(n->cfg->connect_timeout, 2 * USEC_PER_SEC);

        p->probed = true;
        if (isempty(p->host) || node_peer_conninfo(n, p->host, p->port, &ci) < 0)
                return;
        if (pgconn_connect(ci, "pglease-agent", timeout, timeout, &c, NULL) < 0)
                return;
        if (pgconn_query_status(c, &st, NULL) < 0)
                return;
        p->reachable = true;
        p->in_recovery = st.in_recovery;
        p->timeline = st.timeline;
        p->receive_lsn = st.in_recovery ? st.receive_lsn : st.current_lsn;
        p->replay_lsn = st.in_recovery ? st.replay_lsn : st.current_lsn;
        pg_node_status_done(&st);
}

struct probe_job {
        const struct node *node;
        struct peer_observation *peer;
        pthread_t thread;
        bool started;
};

static void *probe_thread(void *userdata) {
        struct probe_job *j = userdata;

        probe_peer(j->node, j->peer);
        return NULL;
}

static bool probe_failed_this_tick(const struct node *n, const char *name) {
        for (char **i = n->probe_unreachable; i && *i; i++)
                if (streq(*i, name))
                        return true;
        return false;
}

/* All peers at once, each in its own thread: a frozen peer (its kernel
 * accepts the connection, nobody answers) costs one connect timeout, not
 * one per peer. A peer found unreachable earlier in the same tick is not
 * probed again. */
static void probe_peers(struct node *n, struct observation *o) {
        _cleanup_free_ struct probe_job *jobs = NULL;

        if (n->probe_tick != n->tick_started) {
                strv_free(n->probe_unreachable);
                n->probe_unreachable = NULL;
                n->probe_tick = n->tick_started;
        }
        jobs = calloc(o->n_peers ? o->n_peers : 1, sizeof *jobs);
        if (!jobs)
                return;
        for (size_t i = 0; i < o->n_peers; i++) {
                jobs[i] = (struct probe_job) { .node = n, .peer = &o->peers[i] };
                if (probe_failed_this_tick(n, o->peers[i].name)) {
                        o->peers[i].probed = true;
                        continue;
                }
                jobs[i].started = pthread_create(&jobs[i].thread, NULL, probe_thread, &jobs[i]) == 0;
                if (!jobs[i].started)
                        probe_peer(n, &o->peers[i]);
        }
        for (size_t i = 0; i < o->n_peers; i++) {
                if (jobs[i].started)
                        (void) pthread_join(jobs[i].thread, NULL);
                if (o->peers[i].probed && !o->peers[i].reachable && !probe_failed_this_tick(n, o->peers[i].name))
                        (void) strv_extend(&n->probe_unreachable, o->peers[i].name);
        }
}

/* Peers are probed only when a decision needs them: a free lease, a lease
 * we just took as a standby, or a primary that may have to hand over. */
static bool need_probe(const struct observation *o) {
        if (o->lease_may_acquire && !o->lease_held_by_us)
                return true;
        if (o->lease_held_by_us && (!o->pg_accepting || o->pg_in_recovery))
                return true;
        return !isempty(o->switchover) && o->lease_held_by_us;
}

static usec_t failsafe_answer_of(const struct node *n, const char *name) {
        for (size_t i = 0; i < n->n_failsafe_answers; i++)
                if (streq(n->failsafe_answers[i].name, name))
                        return n->failsafe_answers[i].answered_sent;
        return 0;
}

static int failsafe_add(struct observation *o, const struct node *n, const char *name, bool in_view) {
        for (size_t i = 0; i < o->n_failsafe; i++)
                if (streq(o->failsafe[i].name, name)) {
                        o->failsafe[i].in_view = o->failsafe[i].in_view || in_view;
                        return 0;
                }
        o->failsafe[o->n_failsafe] = (struct failsafe_answer) {
                .name = strdup(name),
                .answered_sent = failsafe_answer_of(n, name),
                .in_view = in_view,
        };
        if (!o->failsafe[o->n_failsafe].name)
                return -ENOMEM;
        o->n_failsafe++;
        return 0;
}

/* Failsafe mode: the members of the last view read, and those of the
 * list the holder published (they may take the lease: they are asked
 * too), with the answers the agent's client collected. */
int observe_failsafe(const struct node *n, struct observation *o) {
        size_t max;

        if (!n->cfg->failsafe_mode || !n->members)
                return 0;
        max = n->members->n + strv_length(o->lease_failsafe) + 1;
        o->failsafe = calloc(max, sizeof *o->failsafe);
        if (!o->failsafe)
                return -ENOMEM;
        for (size_t i = 0; i < n->members->n; i++)
                if (failsafe_add(o, n, n->members->members[i].name, true) < 0)
                        return -ENOMEM;
        for (char **s = o->lease_failsafe; s && *s; s++)
                if (failsafe_add(o, n, *s, false) < 0)
                        return -ENOMEM;
        o->failsafe_view = true;
        return 0;
}

int observe(struct node *n, usec_t now, usec_t tick_late, bool want_probes, struct observation *ret) {
        struct observation o = { .now = now, .tick_late = tick_late };
        int r;

        observe_local(n, &o);
        r = observe_lease(n, &o, now);
        if (r < 0)
                goto fail;
        r = observe_members(n, &o, now);
        if (r == -ENOMEM)
                goto fail;
        r = observe_failsafe(n, &o);
        if (r < 0)
                goto fail;
        if (want_probes || need_probe(&o))
                probe_peers(n, &o);
        *ret = o;
        return 0;
fail:
        observation_done(&o);
        return r;
}
