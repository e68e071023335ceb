/* replication.h: standbys and their upstream: clone with pg_basebackup,
 * follow a new primary, one physical slot per member, and rejoin a former
 * primary with pg_rewind after checking whether its timeline forked. */
#ifndef PGLEASE_REPLICATION_H
#define PGLEASE_REPLICATION_H

#include <libpq-fe.h>
#include <stdint.h>
#include <sys/types.h>

#include "clock.h"
#include "macro.h"

#define REPLICATION_SLOT_PREFIX "pglease_"
#define REPLICATION_SLOT_NAME_MAX 63

/* ---- names, passfiles, standby configuration ---- */

/* "pglease_" + the member name lowercased, every character outside
 * [a-z0-9_] turned into '_'; a name that would pass 63 characters is cut
 * and ends in '_' + 8 hex digits of a hash of the full name, so that two
 * long names stay distinct. -EINVAL for an empty name. */
int replication_slot_name(const char *member, char **ret);

/* Sets the line for user in a libpq password file (creating it 0600,
 * keeping other users' lines): "*:*:*:user:password" with ':' and '\'
 * escaped. The password is read from password_file (a mounted Secret). The
 * file's directory should be private to the agent's user. */
int replication_passfile_set(const char *passfile, const char *user, const char *password_file,
                             char **reterr_msg);

/* Where a standby (or a pg_rewind source connection) connects. Never a
 * password: libpq reads it from passfile. */
struct upstream {
        const char *host;
        int port;                  /* 0: 5432 */
        const char *user;
        const char *passfile;
        const char *application_name;
        usec_t connect_timeout;    /* 0: 5 s */
};

/* primary_conninfo for a standby of upstream u:
 * "host=... port=... user=... passfile=... application_name=... connect_timeout=..." */
int replication_conninfo(const struct upstream *u, const char *dbname, bool replication, char **ret);

/* Writes standby.signal and sets primary_conninfo / primary_slot_name in
 * postgresql.auto.conf (other settings in it are kept; slot_name NULL
 * removes primary_slot_name). For a stopped server; a running one takes
 * replication_follow(). */
int replication_write_standby_config(const char *datadir, const struct upstream *u,
                                     const char *slot_name, char **reterr_msg);

/* ---- clone ---- */

struct clone_progress {
        uint64_t done_kb;
        uint64_t total_kb;
        int percent;
        double mb_per_sec;          /* average since the start */
        usec_t elapsed;
};

/* Parses one pg_basebackup --progress line ("  1234/56789 kB (2%), 0/1
 * tablespace ..."). -EINVAL for any other line. */
int replication_parse_progress(const char *line, uint64_t *ret_done_kb, uint64_t *ret_total_kb,
                               int *ret_percent);

struct clone_options {
        const char *bindir;             /* where pg_basebackup is */
        const char *node_name;          /* this member: application_name and slot pglease_<name> */
        const char *datadir;            /* the target: missing, empty, or a partial clone of ours */
        struct upstream source;         /* the primary, as the replication role */
        const char *password_file;      /* the replication role's password (Secret); written to source.passfile.
                                         * NULL: source.passfile already holds it */
        const char *source_dbname;      /* for the size, settings and slot queries; NULL: "postgres" */

        uint64_t disk_margin;           /* free space wanted beyond the source size; 0: 64 MB + 10% */
        usec_t timeout;                 /* the whole clone; 0: 1 h */
        usec_t progress_interval;       /* 0: 2 s */
        bool keep_failed;               /* rename a failed clone to <datadir>.failed-<UTC time> */
        bool no_slot;                   /* stream without a slot (and write no primary_slot_name) */

        void (*progress)(const struct clone_progress *p, void *userdata);
        void (*on_started)(pid_t pid, void *userdata);  /* pg_basebackup's pid */
        bool (*cancel)(void *userdata);
        void *userdata;
        const struct clock_ops *clock;  /* NULL: clock_system */
};

/* Clones the source into datadir and makes it a standby of it:
 * pre-flight (target, disk space, source reachable with the replication
 * role over a replication connection, free walsenders, wal_level, slots),
 * the member's slot created on the source if missing, pg_basebackup -X
 * stream --checkpoint=fast -S <slot>, then standby.signal and
 * primary_conninfo / primary_slot_name in postgresql.auto.conf.
 *
 * A marker file "<parent>/.<basename>.pglease-clone" is written before
 * pg_basebackup creates anything and removed when the standby is
 * configured: a non-empty datadir is only ever overwritten when that
 * marker says it is our own partial clone. (The marker cannot live inside
 * datadir: pg_basebackup wants an empty directory.)
 *
 * On failure, timeout or cancel: the child is killed, the partial datadir
 * removed (or renamed aside with keep_failed; a mount point is only
 * emptied), the slot dropped, and the error returned: -EEXIST (datadir not
 * ours), -ENOSPC, -ECONNREFUSED / -EACCES / -ETIMEDOUT (source), -EBUSY (no
 * free walsender or slot), -EMEDIUMTYPE (wal_level minimal), -ETIMEDOUT /
 * -ECANCELED / -EPROTO (pg_basebackup). */
int replication_clone(const struct clone_options *o, char **reterr_msg);

/* replication_clone() up to attempts times, waiting backoff, 2 x backoff,
 * ... (at most 5 min) between them. Errors that another attempt cannot fix
 * (-EEXIST, -ENOSPC, -EINVAL, -EMEDIUMTYPE, -EACCES, -ECANCELED) end it
 * early. The agent itself retries on its own ticks instead, so that a
 * clone never blocks the control loop's lease handling for long. */
int replication_clone_with_retry(const struct clone_options *o, unsigned attempts, usec_t backoff,
                                 char **reterr_msg);

/* The dry run: what replication_clone() would do, one step a line, with
 * the exact pg_basebackup command line. No I/O. */
int replication_clone_plan(const struct clone_options *o, char ***ret_lines);

/* ---- follow ---- */

/* Points a running standby at a new upstream without a restart (PG13+):
 * ALTER SYSTEM SET primary_conninfo and primary_slot_name, then
 * pg_reload_conf(). local is a superuser connection to the standby. */
int replication_follow(PGconn *local, const struct upstream *u, const char *slot_name,
                       char **reterr_msg);

/* One look at pg_stat_wal_receiver: 0 when streaming from host:port on
 * min_timeline or later (0: any), -EAGAIN when not (yet), with what it
 * sees in *reterr_msg. */
int replication_follow_check(PGconn *local, const char *host, int port, uint32_t min_timeline,
                             char **reterr_msg);

/* replication_follow_check() until it succeeds or timeout passes
 * (-ETIMEDOUT). */
int replication_follow_wait(PGconn *local, const char *host, int port, uint32_t min_timeline,
                            usec_t timeout, const struct clock_ops *clock, char **reterr_msg);

/* ---- slots ---- */

struct slot_record {
        char *name;
        usec_t last_seen;          /* on the injected monotonic clock */
};

/* What the primary's agent remembers between ticks about pglease_ slots. */
struct slot_state {
        struct slot_record *slots;
        size_t n_slots;
};
void slot_state_done(struct slot_state *s);

/* A physical slot as the primary reports it. */
struct slot_info {
        const char *name;
        bool active;
};

/* The pure half of replication_slots_sync(): which slots to create (a
 * member without one) and which to drop. A slot is dropped only when it is
 * pglease_-prefixed, not active, and no member has wanted it for at least
 * retention (counted from when this state first saw it unwanted, so that
 * an agent restart starts the count again rather than dropping at once).
 * ret_create / ret_drop are NULL-terminated (possibly empty). */
int replication_slots_plan(const struct slot_info *existing, size_t n_existing,
                           const char *const *member_names, usec_t now, struct slot_state *state,
                           usec_t retention, char ***ret_create, char ***ret_drop);

/* Reads the physical slots on the primary, plans, creates the missing
 * ones (pg_create_physical_replication_slot(name, true)) and drops the
 * expired ones (never an active one: the drop re-checks in the same
 * statement). member_names: every member that should have a slot (the
 * primary leaves itself out). ret_created / ret_dropped: the slot names,
 * when the caller wants them. */
int replication_slots_sync(PGconn *primary, const char *const *member_names, usec_t now,
                           struct slot_state *state, usec_t retention,
                           char ***ret_created, char ***ret_dropped, char **reterr_msg);

/* ---- rejoin ---- */

/* What pg_controldata says about a data directory. */
struct control_data {
        char *state;                 /* "shut down", "in production", "shut down in recovery", ... */
        uint64_t system_identifier;
        uint32_t timeline;           /* latest checkpoint's TimeLineID */
        uint64_t checkpoint_lsn;     /* latest checkpoint location */
        uint64_t min_recovery_lsn;   /* minimum recovery ending location (0 if none) */
        bool data_checksums;
        bool wal_log_hints;
};
void control_data_done(struct control_data *c);
int replication_parse_controldata(const char *text, struct control_data *ret);
int replication_read_controldata(const char *bindir, const char *datadir, usec_t timeout,
                                 const struct clock_ops *clock, struct control_data *ret,
                                 char **reterr_msg);

/* Makes sure datadir was shut down cleanly (pg_rewind requires it): if
 * not, runs "postgres --single -D datadir template1 < /dev/null" with
 * archive_mode=on, archive_command=false (WAL that was not archived yet is
 * kept, as Patroni does): crash recovery, then a shutdown checkpoint when
 * stdin ends. standby.signal / recovery.signal are moved aside for that
 * run (single-user mode refuses them) and put back. The server must not be
 * running. */
int replication_ensure_clean_shutdown(const char *bindir, const char *datadir, usec_t timeout,
                                      const struct clock_ops *clock, char **reterr_msg);

/* One entry of a timeline history file: timeline tli ended at switchpoint. */
struct timeline_entry {
        uint32_t tli;
        uint64_t switchpoint;
};
int replication_parse_history(const char *text, struct timeline_entry **ret, size_t *ret_n);

enum timeline_fork {
        TIMELINE_SAME_HISTORY,       /* a prefix of the primary's history: follow it */
        TIMELINE_FORKED,             /* diverged: pg_rewind repairs it */
        /* Diverged on a timeline of the same number as the primary's (two
         * promotions that each picked it): pg_rewind finds "the same
         * timeline" and would change nothing; only a new clone repairs it. */
        TIMELINE_FORKED_SAME_NUMBER,
};

/* The decision: a server that ended on local_tli at local_lsn, whose own
 * history of local_tli is local (the file pg_wal/<local_tli>.history;
 * NULL when local_tli is 1 or the file is missing: not compared), against
 * a primary on remote_tli with history remote. Forked when an ancestor of
 * local_tli ended somewhere else in the primary's history (another branch
 * with the same numbers), when local_tli is not in that history, or when
 * local_lsn is at or past where local_tli ended there. */
enum timeline_fork replication_fork_decide(uint32_t local_tli, uint64_t local_lsn,
                                           const struct timeline_entry *local, size_t n_local, uint32_t remote_tli,
                                           const struct timeline_entry *remote, size_t n_remote);

/* Compares the stopped, cleanly shut down datadir (pg_controldata and its
 * own history file) with the primary's timeline history (IDENTIFY_SYSTEM
 * and TIMELINE_HISTORY over a replication connection as source->user).
 * -ESTALE when datadir was not shut down cleanly (call
 * replication_ensure_clean_shutdown() first), -EXDEV when the two belong
 * to different clusters (system identifier). */
int replication_timeline_forked(const char *bindir, const char *datadir, const struct upstream *source,
                                usec_t timeout, const struct clock_ops *clock, enum timeline_fork *ret_fork,
                                char **reterr_msg);

struct rewind_options {
        const char *bindir;
        const char *datadir;              /* the stopped former primary */
        struct upstream source;           /* the new primary, as the rewind role (dbname postgres) */
        const char *password_file;        /* the rewind role's password, written to source.passfile; NULL: already there */
        struct upstream standby;          /* primary_conninfo written afterwards (the replication role) */
        const char *slot_name;            /* primary_slot_name written afterwards, or NULL */
        usec_t timeout;                   /* pg_rewind; 0: 30 min */
        usec_t shutdown_timeout;          /* single-user recovery; 0: 10 min */
        const struct clock_ops *clock;
};

/* Rejoins a former primary as a standby: clean shutdown if needed, then
 * CHECKPOINT on the source (so that its control file shows its new
 * timeline; the rewind role is in pg_checkpoint), then
 * pg_rewind --target-pgdata --source-server (password via passfile), then
 * the standby configuration. -ENOTRECOVERABLE when rewind is impossible
 * (neither data checksums nor wal_log_hints, WAL it needs is gone, no
 * common timeline): the caller re-clones (rejoin_fallback = clone) or holds
 * the server stopped (= none), safety rule 5. */
int replication_rewind(const struct rewind_options *o, char **reterr_msg);

#endif
