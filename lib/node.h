/* node.h: this member as the agent's modules see it: the configuration
 * turned into what the other modules take (DCS, pgctl, upstreams, password
 * files, conninfo strings), and the handles kept from tick to tick. */
#ifndef PGLEASE_NODE_H
#define PGLEASE_NODE_H

#include <libpq-fe.h>

#include "event-repeat.h"
#include "observe.h"
#include "clock.h"
#include "config.h"
#include "dcs.h"
#include "election.h"
#include "lease-watch.h"
#include "pod-watch.h"
#include "metadata.h"
#include "metadata-work.h"
#include "bootstrap.h"
#include "pgctl.h"
#include "renewer.h"
#include "replication.h"

struct node {
        const struct config *cfg;     /* borrowed: the agent's running configuration */
        const struct clock_ops *clock;
        char *bindir;                 /* resolved PostgreSQL bindir */
        char *passfile;               /* <run_dir>/pgpass, 0600: every role's password */
        char *superuser_password_file;/* resolved files (inline passwords materialised in run_dir) */
        char *replication_password_file;
        char *rewind_password_file;
        char *sql_dir;

        struct dcs dcs;
        bool have_dcs;
        struct election election;
        bool have_election;
        struct pgctl pgctl;
        /* The lease's own renewal path (node-renewer.c); NULL outside the
         * daemon, and then act renews from the loop. */
        struct renewer *renewer;
        struct dcs renew_dcs;
        bool have_renew_dcs;
        struct election renew_election;
        bool have_renew_election;
        usec_t renew_fence_timeout;
        /* The watches (node-watch.c): of the Lease, for a follower's
         * read, and of the member Pods, for the member list; their driver
         * is NULL when both are off (lease_watch, member_watch). */
        struct kube_watcher *watcher;
        struct lease_watch lease_watch;
        bool watching_lease;
        struct pod_watch pod_watch;
        bool watching_pods;
        uint64_t pod_watch_taken;     /* the pod watch's generation in members */
        struct dcs watch_dcs;
        bool have_watch_dcs;

        PGconn *local;                /* cached superuser connection to the local Postgres */
        usec_t local_accepted_at;     /* the last tick at which it accepted a new connection */
        PGconn *primary;              /* cached connection to the leader (metadata writes) */
        char *primary_key;            /* "host:port" of that connection */

        struct dcs_member_list *members;   /* the last member list read */
        usec_t members_at;
        char *members_holder;              /* the lease holder when it was read */

        bool backstop_held;           /* lease-expiry kept: PostgreSQL not yet confirmed stopped (fence.h) */
        struct slot_state slots;
        struct metadata_event_queue events;
        struct event_repeat event_repeat;  /* the last event, and its repeats not yet written */
        bool schema_ready;            /* migrations applied in this primary term */
        struct metadata_work metadata;  /* best-effort state of the leader's writes */
        usec_t last_monitoring;
        usec_t last_nodes;
        usec_t last_publish;
        char *last_published;         /* JSON of the last member record written */
        usec_t tick_started;          /* set by the agent at the start of each tick */
        usec_t probe_tick;            /* the tick probe_unreachable belongs to */
        char **probe_unreachable;     /* peers whose probe failed in this tick */

        /* Failsafe mode, as the holder: each member's latest answer to
         * POST /failsafe (the agent's client fills it in each tick). */
        struct failsafe_answer *failsafe_answers;
        size_t n_failsafe_answers;
        /* ... and as a member that answers: called around the write that
         * takes the Lease (agent/failsafe-responder.c): with begin, -EBUSY
         * refuses it (we promised its holder), else no promise is given
         * until the call without begin. NULL when failsafe mode is off. */
        int (*failsafe_acquire)(void *userdata, const char *holder, bool begin, bool took);
        void *failsafe_userdata;

        /* Called when a pre-stop demote finished (the agent's control
         * socket answers the waiting hook). */
        void (*demote_done)(void *userdata, bool ok, const char *message);
        void *demote_userdata;
};

/* Resolves paths and passwords and creates the DCS client. Nothing is sent
 * to the API server or Postgres yet. */
int node_init(struct node *n, const struct config *cfg, const struct clock_ops *clock, char **reterr_msg);

/* The options of a Kubernetes DCS connection for this member, from its
 * configuration (the loop's and the renewer's are made alike). */
struct dcs_kube_options;
void node_dcs_kube_options(const struct node *n, struct dcs_kube_options *ret);
void node_done(struct node *n);

/* The daemon's lease renewal thread (renewer.h), with its own API client.
 * At the renew deadline it fences the local PostgreSQL when
 * fence_postgres (not in --election-only mode). node_done() stops it too. */
int node_start_renewer(struct node *n, const struct logger *log, bool fence_postgres, char **reterr_msg);
void node_stop_renewer(struct node *n);

/* The watches of the leader Lease (lease_watch = yes) and of the member
 * Pods (member_watch = yes): started by the daemon, whose event loop
 * drives them (kube_watcher_fd/next/process on n->watcher). members
 * false: no watch of the Pods (--election-only reads no member list). */
int node_start_watches(struct node *n, bool members, char **reterr_msg);
void node_stop_watches(struct node *n);
/* A follower's read of the Lease: the watch's record while its stream is
 * fresh (a list when it needs one), else election_observe(). Returns what
 * election_observe() would. */
int node_read_lease(struct node *n, char **reterr_msg);
/* The member list from the Pods' watch while its stream is fresh (a list
 * when it needs one): 1 and n->members replaced when the watch had it
 * (members_at now), 0 when the caller must list the Pods itself. */
int node_read_members_watched(struct node *n, usec_t now);

/* The PostgreSQL 15 programs: pg_bindir, else `pg_config --bindir` when it
 * is version 15, else the Debian location. */
int node_resolve_bindir(const char *configured, char **ret);

/* The port this member answers POST /failsafe on (failsafe_listen), 0
 * when failsafe mode is off. */
int node_failsafe_port(const struct node *n);

/* Failsafe mode: records that member `name` answered a POST /failsafe
 * sent at `sent` (kept when later than what it answered before). */
int node_failsafe_answered(struct node *n, const char *name, usec_t sent);
/* Forgets every answer (this member stopped leading). */
void node_failsafe_forget(struct node *n);

/* The member name peers use for this node's host ("connect_address", else
 * node_name). */
const char *node_connect_host(const struct node *n);

/* Superuser conninfo for the local server (over its Unix socket) and for a
 * peer (TCP), both with the passfile. */
int node_local_conninfo(const struct node *n, char **ret);
int node_peer_conninfo(const struct node *n, const char *host, int port, char **ret);

/* Where a standby of host:port connects (replication role) and where
 * pg_rewind connects (rewind role). Strings are borrowed from n. */
void node_replication_upstream(const struct node *n, const char *host, int port, struct upstream *ret);
void node_rewind_upstream(const struct node *n, const char *host, int port, struct upstream *ret);

/* The cached local connection, opened when missing or broken; NULL with
 * *reterr_msg when the server cannot be reached. */
PGconn *node_local(struct node *n, char **reterr_msg);
void node_local_reset(struct node *n);
/* The cached connection to host:port (the leader). */
PGconn *node_primary(struct node *n, const char *host, int port, char **reterr_msg);
void node_primary_reset(struct node *n);

/* The bootstrap options this member's configuration gives (borrowed
 * strings; *ret_storage keeps the derived ones until node_bootstrap_done). */
struct node_bootstrap {
        struct bootstrap_options o;
        char **networks;
        char *max_slot_wal_keep_size;
        char *wal_keep_size;
};
int node_bootstrap_options(const struct node *n, usec_t timeout, struct node_bootstrap *ret);
void node_bootstrap_done(struct node_bootstrap *b);

/* A clone or a rewind copies the source's configuration files, with its
 * port, listen_addresses and socket directory: write this member's own
 * back (only where bootstrap wrote the file, i.e. a cluster pglease made).
 * Returns 1 when written, 0 when there was no such file. */
int node_write_local_settings(const struct node *n, char **reterr_msg);

/* True when PG_VERSION exists in the data directory. */
bool node_data_present(const struct node *n);

#endif
