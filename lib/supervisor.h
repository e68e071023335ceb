/* supervisor.h: the run-postgres supervisor, PID 1 of the postgres container:
 * starts Postgres, forwards signals, restarts it unless held, reaps orphans,
 * and fences it when the agent's lease expires unrenewed. */
#ifndef PGLEASE_SUPERVISOR_H
#define PGLEASE_SUPERVISOR_H

#include <stdbool.h>
#include <sys/types.h>

#include "clock.h"
#include "macro.h"

/* Files in the run directory, shared with the agent sidecar. The hold file
 * is PGCTL_HOLD_FILE ("hold", see pgctl.h), the agent's lease expiry
 * LEASE_FILE_NAME ("lease-expiry", see lease-file.h). */
#define SUPERVISOR_PID_FILE "supervisor.pid"      /* "<pid>\n" */
#define SUPERVISOR_STATE_FILE "supervisor.state"  /* key=value lines, see supervisor_status */

/* Exit statuses of `pglease-agent run-postgres` (stable, documented). */
enum {
        SUPERVISOR_EXIT_CLEAN = 0,              /* asked to stop; Postgres exited 0, or was not running */
        SUPERVISOR_EXIT_USAGE = 1,              /* bad arguments or run directory; Postgres never started */
        SUPERVISOR_EXIT_START_FAILED = 2,       /* the Postgres command could not be executed */
        SUPERVISOR_EXIT_POSTGRES_FAILED = 3,    /* asked to stop; Postgres exited with a non-zero status */
        SUPERVISOR_EXIT_SIGNAL_BASE = 128,      /* asked to stop; Postgres was killed by signal N: 128 + N */
};

/* The exit status for a Postgres that ended with wait status wstatus after
 * the supervisor was asked to stop. */
int supervisor_exit_status(int wstatus);

enum supervisor_phase {
        SUPERVISOR_RUNNING,     /* the postmaster is our child */
        SUPERVISOR_BACKOFF,     /* it exited; restart when the delay has passed */
        SUPERVISOR_HELD,        /* the hold file exists: do not start */
        SUPERVISOR_STOPPING,    /* asked to stop: waiting for the postmaster to exit */
        SUPERVISOR_STOPPED,     /* asked to stop and it is down: exit */
        _SUPERVISOR_PHASE_MAX,
        _SUPERVISOR_PHASE_INVALID = -EINVAL,
};
const char *supervisor_phase_to_string(enum supervisor_phase p);
enum supervisor_phase supervisor_phase_from_string(const char *s);

/* What the state file says, for the agent and agentctl. */
struct supervisor_status {
        pid_t supervisor_pid;
        pid_t postmaster_pid;           /* 0 while Postgres is not running */
        enum supervisor_phase phase;
        unsigned restarts;
        /* Its start time (/proc/PID/stat field 22), the identity of the
         * pid; 0 = unknown. Last: no padding for memcmp(). */
        uint64_t supervisor_start;
};
char *supervisor_status_format(const struct supervisor_status *s);
/* -EBADMSG when supervisor_pid or phase is missing or a value is bad;
 * unknown keys are ignored so that the file can grow. */
int supervisor_status_parse(const char *text, struct supervisor_status *ret);
int supervisor_status_read(const char *run_dir, struct supervisor_status *ret);
/* The state (R, S, Z...) and start time (clock ticks since boot) of a
 * process, from /proc/PID/stat; -ESRCH when there is no such process. */
int supervisor_proc_stat(pid_t pid, char *ret_state, uint64_t *ret_start);
/* The supervisor's pid from the run directory, if that process is alive:
 * -ENOENT without a pid file, -ESRCH when the pid is gone, a zombie, or
 * another process than the one the state file names (a reused pid). */
int supervisor_pid_alive(const char *run_dir, pid_t *ret);

/* The restart delay after a start that failed (Postgres exited before it
 * was ready) following the delay just used: doubles up to max, and goes
 * back to initial when Postgres had run for at least reset_after. A
 * server that was ready is restarted at once (supervisor_on_exit). */
usec_t supervisor_next_delay(usec_t current, usec_t initial, usec_t max, usec_t ran_for, usec_t reset_after);

/* The data directory a Postgres command line names with -D DIR or -DDIR
 * (the last one wins, as in getopt), or NULL. A pointer into argv. */
const char *supervisor_data_dir_from_argv(char *const *argv);

/* A lease-expiry further ahead than this is not from this boot's
 * CLOCK_MONOTONIC (a file left over in a persistent run directory): it is
 * ignored like garbage. Any sane renew_deadline is far below it. */
#define SUPERVISOR_LEASE_MAX_AHEAD (1 * USEC_PER_HOUR)

/* The steps of a lease fence, taken in this order by supervisor_fence();
 * tests replace them. Each returns 0 or a negative errno. */
struct supervisor_fence_ops {
        int (*write_standby_marker)(void *userdata, const char *data_dir);
        int (*hold_set)(void *userdata, const char *run_dir, const char *reason);
        int (*kill)(void *userdata, pid_t pid, int sig);
        int (*lease_remove)(void *userdata, const char *run_dir);
};
extern const struct supervisor_fence_ops supervisor_fence_system_ops;

struct supervisor_config {
        char *const *argv;              /* the Postgres command, NULL-terminated; argv[0] is looked up in PATH */
        const char *run_dir;
        const char *data_dir;           /* PGDATA, for the standby marker of a lease fence; NULL if unknown */
        usec_t restart_delay;           /* first delay after a failed start (default 1 s) */
        usec_t restart_delay_max;       /* (default 16 s) */
        usec_t restart_reset_after;     /* a run this long resets the delay (default 60 s) */
        usec_t stop_timeout;            /* asked to stop and still up after this: SIGQUIT; 0 = never */
        usec_t orphan_timeout;          /* a previous postmaster's processes are SIGKILLed after this (default 10 s) */
        const struct clock_ops *clock;
        /* One line per event ("started postgres pid 42"), without newline;
         * the caller decides where it goes. May be NULL. */
        void (*log)(void *userdata, const char *line);
        void *log_userdata;
        const struct supervisor_fence_ops *fence_ops;   /* NULL: supervisor_fence_system_ops */
        void *fence_userdata;
};

/* The supervisor's state. Its transitions are pure functions of events and
 * the clock, so that the tests drive them without processes. */
struct supervisor {
        const struct supervisor_config *config;
        enum supervisor_phase phase;
        pid_t postmaster_pid;
        bool stop_requested;
        int stop_signal;                /* what was forwarded on the stop request */
        bool escalated;                 /* stop_timeout passed and SIGQUIT was sent */
        usec_t delay;                   /* the delay of the last restart after a failed start; 0 after a ready run */
        usec_t started_at;              /* when the running postmaster was started */
        bool ready;                     /* the running postmaster said it accepts connections */
        usec_t next_start;              /* BACKOFF: not before this */
        usec_t stop_at;                 /* when the stop request came */
        unsigned restarts;
        int exit_status;                /* SUPERVISOR_EXIT_*, meaningful once STOPPED */

        /* The agent's lease-expiry file at the last look (lease-file.h). */
        bool lease_known;               /* it exists and holds a believable time */
        usec_t lease_expiry;            /* CLOCK_MONOTONIC: its renew deadline */
        usec_t lease_spent;             /* an expiry fenced on or discarded: ignored if seen again */
        bool lease_bad_logged;          /* garbage was reported; quiet until a good read */
        unsigned fences;
};

/* Starts in BACKOFF with a zero delay, so that the first tick starts
 * Postgres unless held. */
void supervisor_init(struct supervisor *s, const struct supervisor_config *c, usec_t now);

/* What the loop must do next. */
enum supervisor_action {
        SUPERVISOR_ACTION_WAIT,         /* nothing: poll until *ret_wait_until (USEC_INFINITY: an event) */
        SUPERVISOR_ACTION_START,        /* start Postgres now, then call supervisor_started() */
        SUPERVISOR_ACTION_SIGNAL,       /* send *ret_signal to the postmaster */
        SUPERVISOR_ACTION_FENCE,        /* the lease expired: call supervisor_fence() now */
        SUPERVISOR_ACTION_EXIT,         /* exit with s->exit_status */
};

/* A SIGTERM/SIGINT/SIGQUIT is a stop request; SIGHUP is forwarded only.
 * Returns the signal to forward to the postmaster, or 0 for none. */
int supervisor_on_signal(struct supervisor *s, int signo, usec_t now);
/* The postmaster pid said (postmaster.pid) that it accepts connections, as
 * a primary or a standby: its start succeeded. */
void supervisor_on_ready(struct supervisor *s, pid_t pid);
/* The postmaster exited with wait status wstatus. One that had been ready
 * crashed while serving and is restarted at once; one that exited before
 * it was ready failed to start and is restarted after a delay that grows
 * while starts keep failing. */
void supervisor_on_exit(struct supervisor *s, int wstatus, bool held, usec_t now);
/* Postgres was started as pid. */
void supervisor_started(struct supervisor *s, pid_t pid, usec_t now);
/* Decides, from the phase, the hold file, the lease and the clock, what to
 * do now. Safety rule 1: a running (or stopping) Postgres whose agent's
 * lease expired is fenced; safety rule 3: a crashed one is not restarted
 * then, but fenced too (marker, hold). When the hold file is removed, a
 * lease already expired is discarded: whoever cleared the hold (the agent
 * rejoining) is in charge again. */
enum supervisor_action supervisor_tick(struct supervisor *s, bool held, usec_t now,
                                       int *ret_signal, usec_t *ret_wait_until);

/* The lease-expiry file was read at now: r is lease_file_read()'s result
 * and expiry its value when r is 0. Garbage, a read error or a time too far
 * ahead never fence: they are logged once and count as no lease file (the
 * agent rewrites the file every tick). */
void supervisor_on_lease(struct supervisor *s, int r, usec_t expiry, usec_t now);

/* Carries out SUPERVISOR_ACTION_FENCE through config->fence_ops (safety
 * rule 1): the standby marker in data_dir first, then the hold file, then
 * SIGQUIT to the postmaster (if one runs), then the lease file is removed;
 * logs one line. Every step is tried even when an earlier one failed; the
 * first error is returned. */
int supervisor_fence(struct supervisor *s, usec_t now);

/* Runs the supervisor until it was asked to stop and Postgres is down.
 * Blocks the signals it handles (signalfd), becomes a child subreaper,
 * writes the pid and state files in run_dir and removes them on return.
 * Watches run_dir (inotify, a timerfd at the lease expiry, a 1 s poll),
 * and postmaster.pid for readiness. The processes a dead postmaster left
 * behind (its backends, reparented to the supervisor) are SIGKILLed at
 * once: PostgreSQL cannot start while they hold its shared memory.
 * Returns a SUPERVISOR_EXIT_* status, or a negative errno (and *reterr_msg)
 * when it could not set itself up. */
int supervisor_run(const struct supervisor_config *c, char **reterr_msg);

#endif
