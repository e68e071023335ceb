/* pgctl.h: the agent's control of the local Postgres: start, stop, fence and
 * hold, behind struct pgctl_ops with a `supervisor` and a `pg_ctl` backend. */
#ifndef PGLEASE_PGCTL_H
#define PGLEASE_PGCTL_H

#include <stdint.h>
#include <sys/types.h>

#include "clock.h"
#include "macro.h"

/* File names inside the shared run directory (see supervisor.h) and PGDATA. */
#define PGCTL_HOLD_FILE "hold"
#define PGCTL_STANDBY_MARKER "standby.signal"
#define PGCTL_PIDFILE "postmaster.pid"

enum pgctl_stop_mode {
        PGCTL_STOP_SMART,       /* SIGTERM: wait for clients to leave */
        PGCTL_STOP_FAST,        /* SIGINT: abort transactions, shutdown checkpoint */
        PGCTL_STOP_IMMEDIATE,   /* SIGQUIT: no checkpoint, crash recovery on start */
        _PGCTL_STOP_MAX,
        _PGCTL_STOP_INVALID = -EINVAL,
};

const char *pgctl_stop_mode_to_string(enum pgctl_stop_mode m);
enum pgctl_stop_mode pgctl_stop_mode_from_string(const char *s);
/* The signal the postmaster reads as that shutdown mode, or -EINVAL. */
int pgctl_stop_mode_signal(enum pgctl_stop_mode m);

/* PGDATA/postmaster.pid, as the postmaster writes it (lines: pid, data
 * directory, start time, port, first socket directory, first listen address,
 * shared memory key, status). Only pid and data directory are required:
 * the later lines appear while the postmaster starts up. */
struct pgctl_pidfile {
        pid_t pid;
        char *datadir;
        int64_t start_time;     /* seconds since the epoch, 0 if absent */
        int port;               /* 0 if absent */
        char *socket_dir;       /* NULL if absent or empty */
        char *listen_addr;      /* NULL if absent or empty */
        char *status;           /* "starting", "stopping", "ready", "standby", or NULL */
};
void pgctl_pidfile_done(struct pgctl_pidfile *p);
/* -EBADMSG when the text is not a postmaster.pid (garbage, no pid, cut
 * before the data directory line). */
int pgctl_pidfile_parse(const char *text, struct pgctl_pidfile *ret);
/* -ENOENT when there is no postmaster.pid (the server is down). */
int pgctl_pidfile_read(const char *datadir, struct pgctl_pidfile *ret);
/* The pid on the first line of PGDATA/postmaster.pid; it may be stale: see
 * pgctl_pid_is_postmaster(). */
int pgctl_postmaster_pid(const char *datadir, pid_t *ret);
/* True when the status line says the server accepts connections, the test
 * pg_ctl -w uses. */
bool pgctl_pidfile_is_ready(const struct pgctl_pidfile *p);

/* Whether a /proc/<pid>/cmdline (NUL-separated argv) is a postmaster's:
 * argv[0] named postgres or postmaster, not a child's "postgres: ..." title. */
bool pgctl_cmdline_is_postmaster(const char *cmdline, size_t size);
/* 1 when pid is alive and is a postmaster (so not a recycled pid), 0 when
 * not, negative errno when /proc cannot tell. */
int pgctl_pid_is_postmaster(pid_t pid);

/* The hold file in the run directory: while it exists the supervisor does
 * not start Postgres. set and clear are durable (fsync of the directory);
 * clear of a missing file succeeds. is_set returns 1, 0 or a negative errno. */
int pgctl_hold_set(const char *run_dir, const char *reason);
int pgctl_hold_clear(const char *run_dir);
int pgctl_hold_is_set(const char *run_dir);

/* PGDATA/standby.signal, fsynced with its directory, so that the next start
 * of this data directory is a standby's. remove of a missing file succeeds. */
int pgctl_write_standby_marker(const char *datadir);
int pgctl_remove_standby_marker(const char *datadir);
int pgctl_has_standby_marker(const char *datadir);

/* PostgreSQL refuses a data directory whose mode is not 0700 or 0750. A
 * kubelet applying a pod's fsGroup to the volume (recursively, at each pod
 * start unless fsGroupChangePolicy is OnRootMismatch) makes it 2770, as a
 * restore with a careless umask may: set 0700 then, as the official image's
 * entrypoint does, when the directory is ours. Returns 1 and the old mode in
 * *ret_old when it changed the mode, 0 when it was fine (or missing: initdb
 * or a clone makes it), -errno otherwise (-EPERM: owned by another user). */
int pgctl_data_dir_fix_mode(const char *datadir, mode_t *ret_old);

/* What pg_controldata says of a data directory. */
enum pgctl_db_state {
        PGCTL_DB_STARTING_UP,
        PGCTL_DB_SHUT_DOWN,
        PGCTL_DB_SHUT_DOWN_IN_RECOVERY,
        PGCTL_DB_SHUTTING_DOWN,
        PGCTL_DB_IN_CRASH_RECOVERY,
        PGCTL_DB_IN_ARCHIVE_RECOVERY,
        PGCTL_DB_IN_PRODUCTION,
        _PGCTL_DB_MAX,
        _PGCTL_DB_INVALID = -EINVAL,
};
const char *pgctl_db_state_to_string(enum pgctl_db_state s);
enum pgctl_db_state pgctl_db_state_from_string(const char *s);

struct pgctl_controldata {
        enum pgctl_db_state state;
        uint64_t system_identifier;
        uint64_t checkpoint_lsn;        /* Latest checkpoint location */
        uint64_t redo_lsn;              /* Latest checkpoint's REDO location */
        uint32_t timeline;              /* Latest checkpoint's TimeLineID */
        uint32_t prev_timeline;         /* Latest checkpoint's PrevTimeLineID */
        uint64_t min_recovery_lsn;      /* Minimum recovery ending location */
        uint32_t min_recovery_timeline;
        bool wal_log_hints;
        bool data_checksums;            /* Data page checksum version != 0 */
};
/* Parses pg_controldata output in the C locale; -EBADMSG when the state,
 * system identifier, checkpoint location or timeline is missing or bad. */
int pgctl_controldata_parse(const char *text, struct pgctl_controldata *ret);
/* Runs bindir/pg_controldata -D datadir (LC_ALL=C) within timeout. */
int pgctl_controldata(const char *bindir, const char *datadir, usec_t timeout,
                      struct pgctl_controldata *ret, char **reterr_msg);

/* Runs argv (argv[0] an absolute path) with envp (NULL: inherit) and stdin
 * from /dev/null, killing it when it runs past timeout (-ETIMEDOUT). Returns
 * its exit status (0..255, or 128+N when killed by signal N) or a negative
 * errno; the merged stdout and stderr (the first 1 MiB) go to *ret_output
 * when asked for. */
int pgctl_run(char *const *argv, char *const *envp, usec_t timeout,
              char **ret_output, char **reterr_msg);

/* Configuration shared by the backends; strings are borrowed, and must live
 * as long as the struct pgctl. */
struct pgctl_config {
        const char *datadir;            /* PGDATA */
        const char *run_dir;            /* shared run directory: hold file, supervisor state; may be NULL for pg_ctl */
        const char *bindir;             /* pg_ctl, pg_controldata */
        const char *log_file;           /* pg_ctl backend: -l; may be NULL */
        const char *postgres_options;   /* pg_ctl backend: -o; may be NULL */
        const struct clock_ops *clock;  /* deadlines */
};

struct pgctl;

/* A backend. Tests replace it with a fake through struct pgctl.ops and
 * userdata. Every call is bounded by its timeout. */
struct pgctl_ops {
        const char *name;
        /* Starts Postgres (clearing the hold) and waits until it accepts
         * connections. Safety rule 3 is the caller's: it writes the standby
         * marker first unless it holds the lease. */
        int (*start)(struct pgctl *c, usec_t timeout, char **reterr_msg);
        /* Sets the hold, then stops Postgres in mode and waits for the
         * postmaster to exit. A server already down is success. */
        int (*stop)(struct pgctl *c, enum pgctl_stop_mode mode, usec_t timeout, char **reterr_msg);
        /* 1 with *ret_pid set when a postmaster runs on datadir, else 0. */
        int (*is_running)(struct pgctl *c, pid_t *ret_pid);
};

struct pgctl {
        const struct pgctl_ops *ops;
        struct pgctl_config config;
        void *userdata;                 /* for fakes */
};

extern const struct pgctl_ops pgctl_supervisor_ops;
extern const struct pgctl_ops pgctl_pg_ctl_ops;

/* Picks a backend by name ("supervisor", "pg_ctl"); -EINVAL otherwise.
 * The strings of config are copied: c keeps no pointer into the caller's
 * memory. pgctl_done frees them (only for a pgctl made by pgctl_init). */
int pgctl_init(struct pgctl *c, const char *backend, const struct pgctl_config *config);
void pgctl_done(struct pgctl *c);

static inline int pgctl_start(struct pgctl *c, usec_t timeout, char **reterr_msg) {
        return c->ops->start(c, timeout, reterr_msg);
}
static inline int pgctl_stop(struct pgctl *c, enum pgctl_stop_mode mode, usec_t timeout, char **reterr_msg) {
        return c->ops->stop(c, mode, timeout, reterr_msg);
}
static inline int pgctl_is_running(struct pgctl *c, pid_t *ret_pid) {
        return c->ops->is_running(c, ret_pid);
}

/* Stop in mode, then start; timeout covers each half. */
/* SIGKILL to the postmaster (through a pidfd) and a wait of at most timeout
 * for it to exit: the last step of a fence that did not stop it. 0 when it
 * is gone or was not running. */
int pgctl_kill(struct pgctl *c, usec_t timeout, char **reterr_msg);
int pgctl_restart(struct pgctl *c, enum pgctl_stop_mode mode, usec_t timeout, char **reterr_msg);
/* SIGHUP to the postmaster: re-read postgresql.conf (primary_conninfo). */
int pgctl_reload(struct pgctl *c, char **reterr_msg);
/* Safety rule 1: writes the standby marker first, then holds and stops
 * immediately (SIGQUIT), so this server cannot come back as a primary. Stops
 * even when the marker cannot be written, and then returns that error. */
int pgctl_fence(struct pgctl *c, usec_t timeout, char **reterr_msg);

#endif
