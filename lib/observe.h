/* observe.h: one snapshot of the local node and the cluster, taken at the
 * start of a tick: the local Postgres, the leader lease, the member records
 * and, when a failover is possible, the peers' Postgres servers. */
#ifndef PGLEASE_OBSERVE_H
#define PGLEASE_OBSERVE_H

#include <stdint.h>

#include "dcs.h"
#include "macro.h"

struct peer_observation {
        char *name;
        enum member_role role;        /* from its member record */
        char *state;                  /* its agent's state, from the record */
        char *host;
        int port;
        int priority;
        bool nofailover;
        bool has_record;              /* its status annotation was readable */
        bool probed;                  /* we tried to connect to its Postgres */
        bool reachable;               /* its Postgres answered */
        bool in_recovery;
        uint32_t timeline;
        uint64_t receive_lsn;
        uint64_t replay_lsn;
};

struct replica_observation {
        char *name;                   /* application_name */
        bool streaming;               /* state = 'streaming' */
        uint64_t flush_lsn;
};

/* Failsafe mode: a member of the holder's last cluster view and the send
 * time of the latest POST /failsafe it answered (0: none yet). */
struct failsafe_answer {
        char *name;
        usec_t answered_sent;
        bool in_view;                 /* in the member list read (else only in the published list) */
};

struct observation {
        usec_t now;
        usec_t tick_late;             /* how much later than scheduled this tick started */

        /* The local PostgreSQL. */
        bool pg_data_present;         /* PG_VERSION exists in data_dir */
        bool pg_running;              /* a live postmaster owns data_dir */
        bool pg_accepting;            /* a connection and the status query succeeded */
        bool pg_refusing;             /* a primary that answers on our old connection but accepts no new one (frozen postmaster) */
        usec_t pg_accepted_at;        /* refusing: when it last accepted a new connection (0 = unknown) */
        bool pg_standby_marker;       /* standby.signal exists */
        bool pg_held;                 /* the supervisor's hold file exists */
        bool supervisor_watched;      /* pgctl = supervisor: a run-postgres supervisor must be there */
        bool supervisor_gone;         /* ... and it is not (no pid file, dead, a zombie, another process) */
        bool pg_in_recovery;
        uint32_t pg_timeline;
        uint64_t pg_lsn;              /* primary: flush LSN; standby: max(receive, replay) */
        uint64_t pg_replay_lsn;
        usec_t pg_replay_lag;         /* standby: now() - last replayed transaction time, 0 if unknown */
        bool pg_streaming;
        char *pg_upstream_host;       /* where the WAL receiver is connected, NULL if it is not */
        int pg_upstream_port;
        char *pg_conninfo_host;       /* standby: host and port of primary_conninfo */
        int pg_conninfo_port;

        /* As a primary: the effective synchronous_standby_names (the names
         * in it; "*" kept as is) and the standbys in pg_stat_replication. */
        char **pg_sync_names;
        size_t n_replicas;
        struct replica_observation *replicas;

        /* The leader lease, as judged by election at `now`. */
        bool lease_read;              /* this tick's read succeeded (or said "no record") */
        bool lease_missing;           /* there is no record at all */
        bool lease_held_by_us;        /* the record names us */
        bool lease_leader;            /* we believe we lead (we wrote it and keep renewing) */
        bool lease_lost;              /* safety rule 1: renew_deadline passed since our last renewal was sent */
        bool lease_may_acquire;
        usec_t lease_renew_sent;      /* holder: send time of the last successful acquire or renewal */
        usec_t lease_renew_deadline;  /* holder: the renew deadline in force for it */
        char **lease_failsafe;        /* the members the holder published it asks in failsafe mode; NULL if none */
        char *lease_holder;           /* "" when released, NULL when unknown */
        bool paused;
        char *successor;
        uint64_t successor_lsn;
        char *handover;               /* "switchover pg-0": the planned release's reason and old primary */
        char *switchover;             /* requested target, or NULL */
        uint32_t optime_timeline;
        uint64_t optime_lsn;
        char **sync;                  /* the published synchronous standbys */
        enum dcs_sync_mode sync_mode; /* the synchronous_mode published with them; UNKNOWN if none */

        /* The leader's member record, when someone else holds the lease. */
        char *leader_host;
        int leader_port;
        uint32_t leader_timeline;

        /* Every other member. */
        size_t n_peers;
        struct peer_observation *peers;

        /* Failsafe mode, as the holder: the members of the last view read
         * (self included) and their answers; failsafe_view false while no
         * view has been read. */
        bool failsafe_view;
        size_t n_failsafe;
        struct failsafe_answer *failsafe;
};

void observation_done(struct observation *o);
const struct peer_observation *observation_peer(const struct observation *o, const char *name);

/* The standby names in a synchronous_standby_names value. */
int observe_parse_sync_names(const char *value, char ***ret);

struct node;
/* The failsafe part of the observation, from the node's last member list
 * and the answers its client collected (failsafe_mode only). */
int observe_failsafe(const struct node *n, struct observation *o);
/* Takes the snapshot. Failures to reach Postgres, the API server or a peer
 * are facts recorded in the observation, not errors; only -ENOMEM fails. */
/* want_probes: the caller's own reason to probe every peer (a pre-stop
 * demote looking for a successor). */
int observe(struct node *n, usec_t now, usec_t tick_late, bool want_probes, struct observation *ret);

#endif
