/* supervisor.c: the run-postgres supervisor, PID 1 of the postgres container:
 * starts Postgres, forwards signals, restarts it unless held, reaps orphans,
 * and fences it when the agent's lease expires unrenewed. */
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <limits.h>
#include <stdlib.h>
#include <unistd.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>

#include "lease-file.h"
#include "pgctl.h"
#include "supervisor.h"
#include "util.h"

#define DEFAULT_RESTART_DELAY (1 * USEC_PER_SEC)
#define DEFAULT_RESTART_DELAY_MAX (16 * USEC_PER_SEC)
#define DEFAULT_RESTART_RESET_AFTER (60 * USEC_PER_SEC)
#define DEFAULT_ORPHAN_TIMEOUT (10 * USEC_PER_SEC)
/* The hold file is watched with inotify; this poll is the fallback. */
#define HOLD_POLL_INTERVAL (1 * USEC_PER_SEC)
#define ORPHAN_POLL_INTERVAL (100 * USEC_PER_MSEC)

extern char **environ;

static const int handled_signals[] = { SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP };

static const char *const phase_names[_SUPERVISOR_PHASE_MAX] = {
        [SUPERVISOR_RUNNING] = "running",
        [SUPERVISOR_BACKOFF] = "backoff",
        [SUPERVISOR_HELD] = "held",
        [SUPERVISOR_STOPPING] = "stopping",
        [SUPERVISOR_STOPPED] = "stopped",
};

const char *supervisor_phase_to_string(enum supervisor_phase p) {
        if (p < 0 || p >= _SUPERVISOR_PHASE_MAX)
                return NULL;
        return phase_names[p];
}

enum supervisor_phase supervisor_phase_from_string(const char *s) {
        for (int i = 0; s && i < _SUPERVISOR_PHASE_MAX; i++)
                if (streq(s, phase_names[i]))
                        return (enum supervisor_phase) i;
        return _SUPERVISOR_PHASE_INVALID;
}

int supervisor_exit_status(int wstatus) {
        if (WIFEXITED(wstatus))
                return WEXITSTATUS(wstatus) == 0 ? SUPERVISOR_EXIT_CLEAN : SUPERVISOR_EXIT_POSTGRES_FAILED;
        if (WIFSIGNALED(wstatus))
                return SUPERVISOR_EXIT_SIGNAL_BASE + WTERMSIG(wstatus);
        return SUPERVISOR_EXIT_POSTGRES_FAILED;
}

char *supervisor_status_format(const struct supervisor_status *s) {
        return strdup_printf("supervisor_pid=%d\nsupervisor_start=%" PRIu64 "\npostmaster_pid=%d\nphase=%s\nrestarts=%u\n",
                             (int) s->supervisor_pid, s->supervisor_start, (int) s->postmaster_pid,
                             strempty(supervisor_phase_to_string(s->phase)), s->restarts);
}

static int status_field(struct supervisor_status *s, const char *key, const char *value) {
        int64_t v;

        if (streq(key, "phase")) {
                s->phase = supervisor_phase_from_string(value);
                return s->phase < 0 ? -EBADMSG : 0;
        }
        if (streq(key, "supervisor_start")) {
                if (parse_int64(value, &v) < 0 || v < 0)
                        return -EBADMSG;
                s->supervisor_start = (uint64_t) v;
                return 0;
        }
        if (!streq(key, "supervisor_pid") && !streq(key, "postmaster_pid") && !streq(key, "restarts"))
                return 0;
        if (parse_int64(value, &v) < 0 || v < 0 || v > INT32_MAX)
                return -EBADMSG;
        if (streq(key, "supervisor_pid"))
                s->supervisor_pid = (pid_t) v;
        else if (streq(key, "postmaster_pid"))
                s->postmaster_pid = (pid_t) v;
        else
                s->restarts = (unsigned) v;
        return 0;
}

int supervisor_status_parse(const char *text, struct supervisor_status *ret) {
        struct supervisor_status s = { .phase = _SUPERVISOR_PHASE_INVALID };
        _cleanup_free_ char *copy = NULL;
        char *save = NULL;
        int r;

        copy = strdup(text);
        if (!copy)
                return -ENOMEM;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *eq = strchr(line, '=');

                if (!eq)
                        return -EBADMSG;
                *eq = '\0';
                r = status_field(&s, strstrip(line), strstrip(eq + 1));
                if (r < 0)
                        return r;
        }
        if (s.supervisor_pid <= 0 || s.phase < 0)
                return -EBADMSG;
        *ret = s;
        return 0;
}

int supervisor_status_read(const char *run_dir, struct supervisor_status *ret) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        int r;

        path = strdup_printf("%s/" SUPERVISOR_STATE_FILE, run_dir);
        if (!path)
                return -ENOMEM;
        r = read_full_file(path, &text, NULL);
        if (r < 0)
                return r;
        return supervisor_status_parse(text, ret);
}

int supervisor_proc_stat(pid_t pid, char *ret_state, uint64_t *ret_start) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        unsigned long long start;
        char *p, state;
        int r;

        path = strdup_printf("/proc/%d/stat", (int) pid);
        if (!path)
                return -ENOMEM;
        r = read_full_file(path, &text, NULL);
        if (r < 0)
                return r == -ENOENT ? -ESRCH : r;
        /* The command name is in parentheses and may hold anything. */
        p = strrchr(text, ')');
        if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                         &state, &start) != 2)
                return -EBADMSG;
        if (ret_state)
                *ret_state = state;
        if (ret_start)
                *ret_start = (uint64_t) start;
        return 0;
}

int supervisor_pid_alive(const char *run_dir, pid_t *ret) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        struct supervisor_status st;
        uint64_t start = 0;
        char state = '?';
        int64_t v;
        int r;

        if (isempty(run_dir))
                return -EINVAL;
        path = strdup_printf("%s/" SUPERVISOR_PID_FILE, run_dir);
        if (!path)
                return -ENOMEM;
        r = read_one_line_file(path, &text);
        if (r < 0)
                return r;
        if (parse_int64(strstrip(text), &v) < 0 || v <= 0 || v > INT32_MAX)
                return -EBADMSG;
        if (kill((pid_t) v, 0) < 0 && errno == ESRCH)
                return -ESRCH;
        /* The pid alone is not the supervisor: a killed one stays a
         * zombie until its parent reaps it, and a pid is reused. */
        r = supervisor_proc_stat((pid_t) v, &state, &start);
        if (r == -ESRCH || (r >= 0 && (state == 'Z' || state == 'X')))
                return -ESRCH;
        if (r >= 0 && supervisor_status_read(run_dir, &st) >= 0 && st.supervisor_pid == (pid_t) v &&
            st.supervisor_start != 0 && st.supervisor_start != start)
                return -ESRCH;
        if (ret)
                *ret = (pid_t) v;
        return 0;
}

usec_t supervisor_next_delay(usec_t current, usec_t initial, usec_t max, usec_t ran_for, usec_t reset_after) {
        if (current == 0 || ran_for >= reset_after)
                return MIN(initial, max);
        if (current > max / 2)
                return max;
        return current * 2;
}

/* postgres's own option string (PostgreSQL 15, src/backend/main and
 * postmaster): the letters followed by ':' take an argument. */
#define POSTGRES_OPTSTRING "B:bc:C:D:d:EeFf:h:ijk:lN:nOPp:r:S:sTt:W:-:"

static bool postgres_option_takes_argument(char opt) {
        const char *p = opt == ':' ? NULL : strchr(POSTGRES_OPTSTRING, opt);

        return p && p[1] == ':';
}

const char *supervisor_data_dir_from_argv(char *const *argv) {
        const char *found = NULL;

        if (!argv || !argv[0])
                return NULL;
        /* The same walk as getopt, so that "-c foo=-Dx" or "-k -D" is not
         * taken for a data directory. */
        for (size_t i = 1; argv[i]; i++) {
                const char *a = argv[i];

                if (a[0] != '-' || a[1] == '\0')
                        continue;
                for (size_t j = 1; a[j]; j++) {
                        const char *value;

                        if (!postgres_option_takes_argument(a[j]))
                                continue;
                        value = a[j + 1] ? a + j + 1 : argv[i + 1];
                        if (!a[j + 1] && argv[i + 1])
                                i++;
                        if (a[j] == 'D' && value)
                                found = value;
                        break;
                }
        }
        return found;
}

static void slog(const struct supervisor *s, const char *fmt, ...) _printf_(2, 3);
static void slog(const struct supervisor *s, const char *fmt, ...) {
        _cleanup_free_ char *line = NULL;
        va_list ap;

        if (!s->config->log)
                return;
        va_start(ap, fmt);
        if (vasprintf(&line, fmt, ap) < 0)
                line = NULL;
        va_end(ap);
        if (line)
                s->config->log(s->config->log_userdata, line);
}

/* A CLOCK_MONOTONIC time for the log, with how long ago it was. Two
 * numbers: the buffer cannot truncate. */
struct monotonic_text {
        char text[96];
};

static struct monotonic_text format_monotonic(usec_t t, usec_t now) {
        struct monotonic_text m;
        usec_t ago = now > t ? now - t : 0;

        (void) snprintf(m.text, sizeof(m.text), "%" PRIu64 ".%03" PRIu64 "s (monotonic, %" PRIu64 ".%03" PRIu64 "s ago)",
                        t / USEC_PER_SEC, t % USEC_PER_SEC / USEC_PER_MSEC,
                        ago / USEC_PER_SEC, ago % USEC_PER_SEC / USEC_PER_MSEC);
        return m;
}

static const char *signal_name(int sig) {
        const char *n = sigabbrev_np(sig);
        return n ?: "?";
}

void supervisor_init(struct supervisor *s, const struct supervisor_config *c, usec_t now) {
        *s = (struct supervisor) {
                .config = c,
                .phase = SUPERVISOR_BACKOFF,
                .next_start = now,
                .exit_status = SUPERVISOR_EXIT_CLEAN,
        };
}

int supervisor_on_signal(struct supervisor *s, int signo, usec_t now) {
        bool running = s->phase == SUPERVISOR_RUNNING || s->phase == SUPERVISOR_STOPPING;

        if (signo == SIGHUP)
                return running ? SIGHUP : 0;
        if (signo != SIGTERM && signo != SIGINT && signo != SIGQUIT)
                return 0;
        if (!s->stop_requested) {
                s->stop_requested = true;
                s->stop_at = now;
                s->stop_signal = signo;
        }
        if (!running) {
                slog(s, "received SIG%s while postgres is not running: exiting", signal_name(signo));
                s->phase = SUPERVISOR_STOPPED;
                s->exit_status = SUPERVISOR_EXIT_CLEAN;
                return 0;
        }
        s->phase = SUPERVISOR_STOPPING;
        /* SIGTERM (docker stop, the kubelet stopping the container) goes on
         * as SIGINT, a fast shutdown, as the official PostgreSQL image's
         * STOPSIGNAL SIGINT: a smart one waits for every session to end,
         * and Pgpool-II's pooled connections and the agent's own never do
         * (the container then lasts its whole grace period and is killed).
         * Fast ends the sessions, checkpoints and exits cleanly. SIGINT and
         * SIGQUIT go on as they are. */
        return signo == SIGTERM ? SIGINT : signo;
}

void supervisor_started(struct supervisor *s, pid_t pid, usec_t now) {
        /* started_at is never 0 once Postgres was started. */
        if (s->started_at != 0)
                s->restarts++;
        s->phase = SUPERVISOR_RUNNING;
        s->postmaster_pid = pid;
        s->started_at = now ?: 1;
        s->ready = false;
}

void supervisor_on_ready(struct supervisor *s, pid_t pid) {
        if (pid > 0 && pid == s->postmaster_pid)
                s->ready = true;
}

void supervisor_on_exit(struct supervisor *s, int wstatus, bool held, usec_t now) {
        usec_t ran_for = now > s->started_at ? now - s->started_at : 0;
        bool was_ready = s->ready;

        s->postmaster_pid = 0;
        s->ready = false;
        if (s->stop_requested) {
                s->phase = SUPERVISOR_STOPPED;
                s->exit_status = supervisor_exit_status(wstatus);
                return;
        }
        if (held) {
                s->phase = SUPERVISOR_HELD;
                slog(s, "held: waiting for hold file to be removed");
                return;
        }
        s->phase = SUPERVISOR_BACKOFF;
        if (was_ready) {
                /* A crash of a server that was serving, not a start that
                 * fails: each moment of delay is one without a primary,
                 * and past primary_start_timeout the agent fails over
                 * (PostgreSQL itself reinitializes at once after a backend
                 * crash). The backoff is for starts that keep failing; the
                 * next one waits restart_delay again. */
                s->delay = 0;
                s->next_start = now;
                slog(s, "restarting postgres at once (it was ready when it exited)");
                return;
        }
        s->delay = supervisor_next_delay(s->delay, s->config->restart_delay ?: DEFAULT_RESTART_DELAY,
                                         s->config->restart_delay_max ?: DEFAULT_RESTART_DELAY_MAX, ran_for,
                                         s->config->restart_reset_after ?: DEFAULT_RESTART_RESET_AFTER);
        s->next_start = now + s->delay;
        slog(s, "restarting postgres in %.1fs (it exited before it was ready)", (double) s->delay / USEC_PER_SEC);
}

static bool lease_expired(const struct supervisor *s, usec_t now) {
        return s->lease_known && now >= s->lease_expiry;
}

/* When a waiting phase must look again because of the lease. */
static usec_t lease_wait(const struct supervisor *s, usec_t wait_until) {
        return s->lease_known ? MIN(wait_until, s->lease_expiry) : wait_until;
}

static enum supervisor_action tick_stopping(struct supervisor *s, usec_t now, int *ret_signal, usec_t *ret_wait_until) {
        usec_t timeout = s->config->stop_timeout;

        /* Safety rule 1: a smart shutdown can leave a primary serving its
         * sessions for long; the lease does not wait for it. */
        if (s->postmaster_pid > 0 && lease_expired(s, now))
                return SUPERVISOR_ACTION_FENCE;

        if (timeout == 0 || s->escalated || s->stop_signal == SIGQUIT) {
                *ret_wait_until = lease_wait(s, USEC_INFINITY);
                return SUPERVISOR_ACTION_WAIT;
        }
        if (now < s->stop_at + timeout) {
                *ret_wait_until = lease_wait(s, s->stop_at + timeout);
                return SUPERVISOR_ACTION_WAIT;
        }
        s->escalated = true;
        slog(s, "postgres still running %.1fs after SIG%s: sending SIGQUIT", (double) timeout / USEC_PER_SEC,
             signal_name(s->stop_signal));
        *ret_signal = SIGQUIT;
        return SUPERVISOR_ACTION_SIGNAL;
}

enum supervisor_action supervisor_tick(struct supervisor *s, bool held, usec_t now,
                                       int *ret_signal, usec_t *ret_wait_until) {
        switch (s->phase) {
        case SUPERVISOR_STOPPED:
                return SUPERVISOR_ACTION_EXIT;
        case SUPERVISOR_STOPPING:
                return tick_stopping(s, now, ret_signal, ret_wait_until);
        case SUPERVISOR_HELD:
                if (held) {
                        *ret_wait_until = USEC_INFINITY;
                        return SUPERVISOR_ACTION_WAIT;
                }
                if (lease_expired(s, now)) {
                        slog(s, "hold file removed: discarding the lease that expired at %s",
                             format_monotonic(s->lease_expiry, now).text);
                        s->lease_spent = s->lease_expiry;
                        s->lease_known = false;
                }
                slog(s, "hold file removed: starting postgres");
                s->delay = 0;
                return SUPERVISOR_ACTION_START;
        case SUPERVISOR_BACKOFF:
                if (held) {
                        s->phase = SUPERVISOR_HELD;
                        slog(s, "held: waiting for hold file to be removed");
                        *ret_wait_until = USEC_INFINITY;
                        return SUPERVISOR_ACTION_WAIT;
                }
                if (now < s->next_start) {
                        *ret_wait_until = s->next_start;
                        return SUPERVISOR_ACTION_WAIT;
                }
                /* Safety rule 3: no start as a primary without a lease. */
                if (lease_expired(s, now))
                        return SUPERVISOR_ACTION_FENCE;
                return SUPERVISOR_ACTION_START;
        case SUPERVISOR_RUNNING:
        default:
                if (lease_expired(s, now))
                        return SUPERVISOR_ACTION_FENCE;
                *ret_wait_until = lease_wait(s, USEC_INFINITY);
                return SUPERVISOR_ACTION_WAIT;
        }
}

void supervisor_on_lease(struct supervisor *s, int r, usec_t expiry, usec_t now) {
        s->lease_known = false;
        if (r == -ENOENT) {
                s->lease_bad_logged = false;
                return;
        }
        if (r >= 0 && expiry > now && expiry - now > SUPERVISOR_LEASE_MAX_AHEAD)
                r = -ERANGE;
        if (r < 0) {
                if (!s->lease_bad_logged)
                        slog(s, "ignoring %s/" LEASE_FILE_NAME ": %s (no lease watchdog until it is rewritten)",
                             s->config->run_dir,
                             r == -EBADMSG ? "not a monotonic time" :
                             r == -ERANGE ? "more than an hour ahead, not from this boot" : strerror(-r));
                s->lease_bad_logged = true;
                return;
        }
        s->lease_bad_logged = false;
        if (expiry == s->lease_spent)
                return;
        s->lease_known = true;
        s->lease_expiry = expiry;
}

static int fence_system_marker(void *userdata, const char *data_dir) {
        return pgctl_write_standby_marker(data_dir);
}

static int fence_system_hold(void *userdata, const char *run_dir, const char *reason) {
        return pgctl_hold_set(run_dir, reason);
}

/* The descendants of pid, from /proc (ppid is field 4 of /proc/N/stat,
 * after the parenthesised command name, which may hold spaces). */
static size_t descendants(pid_t root, pid_t *ret, size_t max) {
        size_t n = 0, scanned = 0;
        bool grew = true;

        while (grew && n < max) {
                DIR *d = opendir("/proc");
                struct dirent *de;

                grew = false;
                if (!d)
                        break;
                while ((de = readdir(d)) && n < max) {
                        _cleanup_free_ char *path = NULL, *text = NULL;
                        char *close_paren;
                        pid_t pid, ppid;
                        bool known = false;

                        pid = (pid_t) atoi(de->d_name);
                        if (pid <= 0 || pid == root)
                                continue;
                        for (size_t i = 0; i < n && !known; i++)
                                known = ret[i] == pid;
                        if (known)
                                continue;
                        path = strdup_printf("/proc/%d/stat", (int) pid);
                        if (!path || read_full_file(path, &text, NULL) < 0)
                                continue;
                        close_paren = strrchr(text, ')');
                        if (!close_paren || sscanf(close_paren + 1, " %*c %d", &ppid) != 1)
                                continue;
                        bool ours = ppid == root;
                        for (size_t i = 0; i < n && !ours; i++)
                                ours = ppid == ret[i];
                        if (ours) {
                                ret[n++] = pid;
                                grew = true;
                        }
                }
                closedir(d);
                if (++scanned > 8)
                        break;
        }
        return n;
}

/* A fence kills the postmaster and every one of its processes with
 * SIGKILL: unlike SIGQUIT it works on stopped processes, so a frozen
 * primary's backends cannot commit one more write when they resume. */
static int fence_system_kill(void *userdata, pid_t pid, int sig) {
        pid_t tree[1024];
        size_t n = sig == SIGKILL ? descendants(pid, tree, ELEMENTSOF(tree)) : 0;
        int r = kill(pid, sig) < 0 ? -errno : 0;

        for (size_t i = 0; i < n; i++)
                (void) kill(tree[i], SIGKILL);
        return r;
}

static int fence_system_lease_remove(void *userdata, const char *run_dir) {
        return lease_file_remove(run_dir);
}

const struct supervisor_fence_ops supervisor_fence_system_ops = {
        .write_standby_marker = fence_system_marker,
        .hold_set = fence_system_hold,
        .kill = fence_system_kill,
        .lease_remove = fence_system_lease_remove,
};

int supervisor_fence(struct supervisor *s, usec_t now) {
        const struct supervisor_fence_ops *ops = s->config->fence_ops ?: &supervisor_fence_system_ops;
        void *ud = s->config->fence_userdata;
        _cleanup_free_ char *marker_text = NULL, *hold_text = NULL, *kill_text = NULL;
        pid_t pid = s->postmaster_pid;
        int marker, hold, killed = 0, removed;

        /* Safety rule 1: the standby marker before the stop, so that no
         * later start of this data directory is a primary's; the hold
         * before the stop, so that we do not restart it ourselves. */
        marker = !isempty(s->config->data_dir) ? ops->write_standby_marker(ud, s->config->data_dir) : -EDESTADDRREQ;
        hold = ops->hold_set(ud, s->config->run_dir, "lease-expired");
        if (pid > 0) {
                killed = ops->kill(ud, pid, SIGKILL);
                if (s->phase == SUPERVISOR_STOPPING)
                        s->escalated = true;
        }
        s->lease_spent = s->lease_expiry;
        s->lease_known = false;
        s->fences++;
        removed = ops->lease_remove(ud, s->config->run_dir);

        marker_text = marker >= 0 ? strdup(PGCTL_STANDBY_MARKER " written") :
                marker == -EDESTADDRREQ ? strdup(PGCTL_STANDBY_MARKER " NOT written: data directory unknown") :
                strdup_printf(PGCTL_STANDBY_MARKER " NOT written: %s", strerror(-marker));
        hold_text = hold >= 0 ? strdup("held") : strdup_printf("hold NOT set: %s", strerror(-hold));
        kill_text = pid <= 0 ? strdup("") : killed >= 0 ? strdup_printf("; sent SIGKILL to pid %d and its processes", (int) pid) :
                strdup_printf("; SIGKILL to pid %d failed: %s", (int) pid, strerror(-killed));
        slog(s, "lease expired at %s without renewal: %s postgres (%s, %s)%s%s%s",
             format_monotonic(s->lease_spent, now).text, pid > 0 ? "fenced" : "not starting",
             strempty(marker_text), strempty(hold_text), strempty(kill_text),
             removed < 0 ? "; cannot remove " LEASE_FILE_NAME ": " : "", removed < 0 ? strerror(-removed) : "");
        if (marker < 0)
                return marker;
        return hold < 0 ? hold : killed < 0 ? killed : removed < 0 ? removed : 0;
}

/* The process side of the supervisor: fds, files and children. */
struct supervisor_loop {
        struct supervisor s;
        int signal_fd;
        int inotify_fd;
        int timer_fd;                   /* CLOCK_MONOTONIC, armed at the lease expiry */
        usec_t timer_armed;             /* what it is armed at; 0 = disarmed */
        sigset_t old_mask;
        char *pid_path;
        char *state_path;
        struct supervisor_status written;
        uint64_t start_time;            /* ours, from /proc/self/stat: the identity in the state file */
        usec_t orphan_deadline;         /* after the postmaster exited: SIGKILL left-overs from then on */
        usec_t stale_deadline;          /* a previous postmaster's processes: SIGKILL them then; 0 = none seen */
};

static bool hold_is_set(struct supervisor_loop *l) {
        int r = pgctl_hold_is_set(l->s.config->run_dir);

        /* Safety rule 3: when in doubt, do not start a server that may come
         * up as a primary. */
        if (r < 0) {
                slog(&l->s, "cannot check the hold file in %s: %s; treating it as held",
                     l->s.config->run_dir, strerror(-r));
                return true;
        }
        return r > 0;
}

static void write_state(struct supervisor_loop *l) {
        struct supervisor_status now = {
                .supervisor_pid = getpid(),
                .supervisor_start = l->start_time,
                .postmaster_pid = l->s.postmaster_pid,
                .phase = l->s.phase,
                .restarts = l->s.restarts,
        };
        _cleanup_free_ char *text = NULL;
        int r;

        if (memcmp(&now, &l->written, sizeof(now)) == 0)
                return;
        text = supervisor_status_format(&now);
        if (!text)
                return;
        r = write_file_atomic(l->state_path, text, 0644);
        if (r < 0) {
                slog(&l->s, "cannot write %s: %s", l->state_path, strerror(-r));
                return;
        }
        l->written = now;
}

static void closedirp(DIR **d) {
        if (*d)
                (void) closedir(*d);
}

/* 1 when some child is still to be reaped, 0 when none. */
static int has_children(void) {
        siginfo_t info = {};

        if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) < 0)
                return errno == ECHILD ? 0 : -errno;
        return 1;
}

/* SIGKILLs our children (the postmaster's orphans, reparented to us as
 * subreaper), zombies aside. They are found through /proc since we never
 * knew their pids. */
static void kill_children(struct supervisor_loop *l) {
        _cleanup_(closedirp) DIR *d = opendir("/proc");
        pid_t self = getpid();
        struct dirent *de;

        if (!d)
                return;
        while ((de = readdir(d))) {
                _cleanup_free_ char *path = NULL, *stat = NULL;
                int64_t pid;
                char *p, state;
                int ppid;

                if (parse_int64(de->d_name, &pid) < 0)
                        continue;
                path = strdup_printf("/proc/%s/stat", de->d_name);
                if (!path || read_full_file(path, &stat, NULL) < 0)
                        continue;
                p = strrchr(stat, ')');
                if (!p || sscanf(p + 1, " %c %d", &state, &ppid) != 2 || ppid != self || state == 'Z')
                        continue;
                slog(&l->s, "killing left-over process %" PRId64, pid);
                (void) kill((pid_t) pid, SIGKILL);
        }
}

/* Whether the running postmaster has said that it accepts connections
 * (the status line of postmaster.pid, what pg_ctl -w waits for): looked at
 * on every turn of the loop until it has, and once more when it exits (a
 * killed postmaster leaves its file behind). */
static void check_ready(struct supervisor_loop *l) {
        _cleanup_(pgctl_pidfile_done) struct pgctl_pidfile p = {};

        if (l->s.ready || l->s.postmaster_pid <= 0 || isempty(l->s.config->data_dir))
                return;
        if (pgctl_pidfile_read(l->s.config->data_dir, &p) >= 0 && pgctl_pidfile_is_ready(&p))
                supervisor_on_ready(&l->s, p.pid);
}

static void reap_children(struct supervisor_loop *l, usec_t now) {
        int wstatus;
        pid_t pid;

        while ((pid = waitpid(-1, &wstatus, WNOHANG)) > 0) {
                if (pid != l->s.postmaster_pid) {
                        slog(&l->s, "reaped orphan pid %d", (int) pid);
                        continue;
                }
                if (WIFSIGNALED(wstatus))
                        slog(&l->s, "postgres pid %d was killed by signal %s", (int) pid,
                             signal_name(WTERMSIG(wstatus)));
                else
                        slog(&l->s, "postgres pid %d exited with status %d", (int) pid, WEXITSTATUS(wstatus));
                /* Its backends live on until they next wait for their
                 * client (a long query runs to its end, and may still
                 * commit), holding the shared memory that a new
                 * postmaster refuses to start beside: they are SIGKILLed
                 * at the first look, as PostgreSQL stops its children
                 * after a crash, not waited for. */
                l->orphan_deadline = now;
                check_ready(l);
                supervisor_on_exit(&l->s, wstatus, hold_is_set(l), now);
        }
}

/* fork + exec rather than posix_spawn: between them the child asks the
 * kernel to send it SIGQUIT when the supervisor dies (PR_SET_PDEATHSIG
 * survives exec), so PostgreSQL never outlives its supervisor and the
 * lease-expiry watchdog (safety rule 1) cannot silently vanish. SIGQUIT is
 * the postmaster's immediate shutdown: it takes its backends along and
 * removes postmaster.pid, so that nothing of it blocks the next start.
 * Only async-signal-safe calls in the child. */
static int spawn_postgres(struct supervisor_loop *l, pid_t *ret_pid) {
        pid_t parent = getpid(), pid;
        int report[2], err = 0;
        sigset_t empty;
        ssize_t n;

        /* exec errors come back through a close-on-exec pipe, as
         * posix_spawn reported them */
        if (pipe2(report, O_CLOEXEC) < 0)
                return -errno;
        pid = fork();
        if (pid < 0) {
                err = -errno;
                (void) close(report[0]);
                (void) close(report[1]);
                return err;
        }
        if (pid == 0) {
                (void) close(report[0]);
                if (prctl(PR_SET_PDEATHSIG, SIGQUIT, 0, 0, 0) < 0 || getppid() != parent)
                        _exit(127); /* the supervisor died before prctl() took */
                for (size_t i = 0; i < ELEMENTSOF(handled_signals); i++)
                        (void) signal(handled_signals[i], SIG_DFL);
                (void) signal(SIGPIPE, SIG_DFL);
                sigemptyset(&empty);
                (void) sigprocmask(SIG_SETMASK, &empty, NULL);
                execvp(l->s.config->argv[0], l->s.config->argv);
                err = errno;
                (void) !write(report[1], &err, sizeof(err));
                _exit(127);
        }
        (void) close(report[1]);
        do
                n = read(report[0], &err, sizeof(err));
        while (n < 0 && errno == EINTR);
        (void) close(report[0]);
        if (n == (ssize_t) sizeof(err)) {
                (void) waitpid(pid, NULL, 0);
                return -err;
        }
        *ret_pid = pid;
        return 0;
}

/* Whether a process runs the Postgres program: "postgres" (backends
 * rewrite their command line, not their name) or the command's own. */
static bool runs_postgres(const struct supervisor_loop *l, const char *pid) {
        _cleanup_free_ char *path = strdup_printf("/proc/%s/comm", pid), *comm = NULL;
        const char *cmd = l->s.config->argv[0], *base = strrchr(cmd, '/');

        if (!path || read_one_line_file(path, &comm) < 0)
                return false;
        strstrip(comm);
        base = base ? base + 1 : cmd;
        /* comm is cut at 15 characters */
        return streq(comm, "postgres") || (strlen(comm) > 0 && strncmp(comm, base, 15) == 0 && strlen(base) >= strlen(comm));
}

/* Live Postgres processes (zombies have no working directory) whose
 * working directory is the data directory: a postmaster and its backends.
 * An operator's shell in PGDATA is not one of them. */
static size_t data_dir_processes(const struct supervisor_loop *l, const char *data_dir, pid_t *ret, size_t max) {
        _cleanup_(closedirp) DIR *d = opendir("/proc");
        _cleanup_free_ char *want = realpath(data_dir, NULL);
        pid_t self = getpid();
        struct dirent *de;
        size_t n = 0;

        if (!d || !want)
                return 0;
        while ((de = readdir(d)) && n < max) {
                char path[64], cwd[PATH_MAX];
                int64_t pid;
                ssize_t len;

                if (parse_int64(de->d_name, &pid) < 0 || pid <= 0 || (pid_t) pid == self)
                        continue;
                (void) snprintf(path, sizeof(path), "/proc/%" PRId64 "/cwd", pid);
                len = readlink(path, cwd, sizeof(cwd) - 1);
                if (len <= 0)
                        continue;
                cwd[len] = '\0';
                if (streq(cwd, want) && runs_postgres(l, de->d_name))
                        ret[n++] = (pid_t) pid;
        }
        return n;
}

/* A lock file (postmaster.pid, or the socket's .s.PGSQL.PORT.lock) whose
 * pid is the given dead one: PostgreSQL takes a zombie for a live
 * postmaster and would refuse to start. */
static void remove_lock_of(struct supervisor_loop *l, const char *path, pid_t dead) {
        _cleanup_free_ char *line = NULL;
        int64_t pid;

        if (read_full_file(path, &line, NULL) < 0)
                return;
        line[strcspn(line, "\n")] = '\0'; /* the pid is the first line */
        if (parse_int64(strstrip(line), &pid) < 0 || (pid_t) pid != dead)
                return;
        if (unlink(path) < 0 && errno != ENOENT)
                slog(&l->s, "cannot remove %s of the dead postmaster pid %d: %s", path, (int) dead, strerror(errno));
        else
                slog(&l->s, "removed %s of the dead postmaster pid %d", path, (int) dead);
}

/* A zombie, or a pid reused by something that is not a postmaster: what
 * PostgreSQL would take for a live postmaster (kill(pid, 0) succeeds). A
 * pid that is gone altogether PostgreSQL recognises itself. */
static bool pid_is_dead_but_there(pid_t pid) {
        char state = '?';
        int r = supervisor_proc_stat(pid, &state, NULL);

        if (r < 0)
                return false;
        return state == 'Z' || state == 'X' || pgctl_pid_is_postmaster(pid) == 0;
}

/* Whether PostgreSQL may be started: a previous postmaster of this data
 * directory (the one of a supervisor that died, which PR_SET_PDEATHSIG
 * stops) and its backends must be gone first; they get orphan_timeout,
 * then SIGKILL. Its lock files are then removed if their pid is dead but
 * still exists (a zombie nobody reaped yet, or a reused pid): once no
 * process runs in the data directory, no PostgreSQL uses it. */
static bool old_postmaster_gone(struct supervisor_loop *l, usec_t now) {
        _cleanup_(pgctl_pidfile_done) struct pgctl_pidfile p = {};
        const char *data_dir = l->s.config->data_dir;
        pid_t procs[256];
        size_t n;
        int r;

        if (isempty(data_dir))
                return true;
        n = data_dir_processes(l, data_dir, procs, ELEMENTSOF(procs));
        if (n > 0) {
                if (l->stale_deadline == 0) {
                        l->stale_deadline = now + (l->s.config->orphan_timeout ?: DEFAULT_ORPHAN_TIMEOUT);
                        slog(&l->s, "waiting for %zu process(es) of a previous postmaster in %s to exit (pid %d%s)",
                             n, data_dir, (int) procs[0], n > 1 ? ", ..." : "");
                } else if (now >= l->stale_deadline) {
                        slog(&l->s, "killing %zu process(es) of a previous postmaster still in %s", n, data_dir);
                        for (size_t i = 0; i < n; i++)
                                (void) kill(procs[i], SIGKILL);
                        l->stale_deadline = now + ORPHAN_POLL_INTERVAL * 10;
                }
                return false;
        }
        if (l->stale_deadline != 0)
                slog(&l->s, "the previous postmaster's processes are gone");
        l->stale_deadline = 0;
        r = pgctl_pidfile_read(data_dir, &p);
        if (r >= 0 && p.pid > 0 && p.pid != getpid() && pid_is_dead_but_there(p.pid)) {
                _cleanup_free_ char *pidfile = strdup_printf("%s/postmaster.pid", data_dir);
                _cleanup_free_ char *socklock = p.socket_dir && p.port > 0 ?
                        strdup_printf("%s/.s.PGSQL.%d.lock", p.socket_dir, p.port) : NULL;

                if (socklock)
                        remove_lock_of(l, socklock, p.pid);
                if (pidfile)
                        remove_lock_of(l, pidfile, p.pid);
        }
        return true;
}

static void read_signals(struct supervisor_loop *l, usec_t now) {
        struct signalfd_siginfo si;

        while (read(l->signal_fd, &si, sizeof(si)) == (ssize_t) sizeof(si)) {
                int sig;

                if ((int) si.ssi_signo == SIGCHLD) {
                        reap_children(l, now);
                        continue;
                }
                sig = supervisor_on_signal(&l->s, (int) si.ssi_signo, now);
                if (sig > 0 && l->s.postmaster_pid > 0) {
                        slog(&l->s, "forwarding SIG%s to postgres pid %d", signal_name(sig), (int) l->s.postmaster_pid);
                        (void) kill(l->s.postmaster_pid, sig);
                }
        }
        /* A SIGCHLD may have been merged with another: reap anyway. */
        reap_children(l, now);
}

static void drain_inotify(struct supervisor_loop *l) {
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        uint64_t expirations;

        if (l->inotify_fd >= 0)
                while (read(l->inotify_fd, buf, sizeof(buf)) > 0)
                        ;
        if (l->timer_fd >= 0)
                (void) !read(l->timer_fd, &expirations, sizeof(expirations));
}

/* The file's time is the kernel's CLOCK_MONOTONIC, which the timerfd reads
 * too, so that the wake-up does not depend on the poll's millisecond
 * rounding; the poll fallback covers a failed timerfd. */
static void arm_lease_timer(struct supervisor_loop *l) {
        usec_t want = l->s.lease_known ? l->s.lease_expiry : 0;
        struct itimerspec its = {
                .it_value = {
                        .tv_sec = (time_t) (want / USEC_PER_SEC),
                        .tv_nsec = (long) (want % USEC_PER_SEC * 1000),
                },
        };

        if (l->timer_fd < 0 || want == l->timer_armed)
                return;
        if (timerfd_settime(l->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0) {
                slog(&l->s, "cannot arm the lease timer: %s; polling instead", strerror(errno));
                l->timer_fd = safe_close(l->timer_fd);
                return;
        }
        l->timer_armed = want;
}

/* Read at every turn of the loop: the loop turns on every change in the
 * run directory (inotify), on the timer and at least once a second. */
static void read_lease(struct supervisor_loop *l, usec_t now) {
        usec_t expiry = 0;
        int r = lease_file_read(l->s.config->run_dir, &expiry);

        supervisor_on_lease(&l->s, r, expiry, now);
        arm_lease_timer(l);
}

/* Whether a start or exit must wait for the old postmaster's orphans. */
static bool wait_for_orphans(struct supervisor_loop *l, usec_t now) {
        if (has_children() <= 0)
                return false;
        /* A killed process's own children come to us in turn. */
        if (now >= l->orphan_deadline) {
                kill_children(l);
                l->orphan_deadline = now + ORPHAN_POLL_INTERVAL;
        }
        return true;
}

static int loop_setup(struct supervisor_loop *l, const struct supervisor_config *c, char **reterr_msg) {
        _cleanup_free_ char *pid_text = NULL;
        struct stat st;
        sigset_t mask;
        int r;

        if (!c->argv || isempty(c->argv[0]))
                return set_error_msg(reterr_msg, "no postgres command given"), -EINVAL;
        if (isempty(c->run_dir) || stat(c->run_dir, &st) < 0 || !S_ISDIR(st.st_mode))
                return set_error_msg(reterr_msg, "run directory %s is not a directory", strempty(c->run_dir)), -ENOTDIR;
        l->pid_path = strdup_printf("%s/" SUPERVISOR_PID_FILE, c->run_dir);
        l->state_path = strdup_printf("%s/" SUPERVISOR_STATE_FILE, c->run_dir);
        pid_text = strdup_printf("%d\n", (int) getpid());
        if (!l->pid_path || !l->state_path || !pid_text)
                return -ENOMEM;
        sigemptyset(&mask);
        for (size_t i = 0; i < ELEMENTSOF(handled_signals); i++)
                sigaddset(&mask, handled_signals[i]);
        if (sigprocmask(SIG_BLOCK, &mask, &l->old_mask) < 0)
                return -errno;
        l->signal_fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC);
        if (l->signal_fd < 0)
                return set_error_msg(reterr_msg, "signalfd: %s", strerror(errno)), -errno;
        /* Orphaned backends of a killed postmaster come to us, not to an init
         * that may not exist, so that we can wait for them before a restart. */
        (void) prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        l->inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (l->inotify_fd >= 0 &&
            inotify_add_watch(l->inotify_fd, c->run_dir, IN_CREATE | IN_DELETE | IN_MOVED_TO | IN_MOVED_FROM) < 0)
                l->inotify_fd = safe_close(l->inotify_fd);
        l->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
        (void) supervisor_proc_stat(getpid(), NULL, &l->start_time);
        r = write_file_atomic(l->pid_path, pid_text, 0644);
        if (r < 0)
                return set_error_msg(reterr_msg, "cannot write %s: %s", l->pid_path, strerror(-r)), r;
        return 0;
}

static void loop_done(struct supervisor_loop *l) {
        if (l->pid_path)
                (void) unlink(l->pid_path);
        if (l->state_path)
                (void) unlink(l->state_path);
        free(l->pid_path);
        free(l->state_path);
        l->signal_fd = safe_close(l->signal_fd);
        l->inotify_fd = safe_close(l->inotify_fd);
        l->timer_fd = safe_close(l->timer_fd);
        (void) sigprocmask(SIG_SETMASK, &l->old_mask, NULL);
}

/* Before each start: a data directory PostgreSQL would refuse for its mode
 * (a pod's fsGroup applied by the kubelet) is made 0700, and said so. */
static void fix_data_dir_mode(struct supervisor_loop *l) {
        const char *data_dir = l->s.config->data_dir;
        mode_t old = 0;
        int r;

        if (isempty(data_dir))
                return;
        r = pgctl_data_dir_fix_mode(data_dir, &old);
        if (r > 0)
                slog(&l->s, "data directory %s had mode %04o, which PostgreSQL refuses (a pod's fsGroup "
                     "applied to the volume?): set to 0700", data_dir, (unsigned) old);
        else if (r < 0 && r != -EPERM)
                slog(&l->s, "cannot check the mode of the data directory %s: %s", data_dir, strerror(-r));
}

/* Acts on one decision; returns true when the loop should poll next. */
static bool loop_act(struct supervisor_loop *l, usec_t now, usec_t *wait_until, bool *done) {
        int sig = 0, r;
        pid_t pid = 0;

        switch (supervisor_tick(&l->s, hold_is_set(l), now, &sig, wait_until)) {
        case SUPERVISOR_ACTION_START:
                if (wait_for_orphans(l, now) || !old_postmaster_gone(l, now)) {
                        *wait_until = now + ORPHAN_POLL_INTERVAL;
                        return true;
                }
                fix_data_dir_mode(l);
                r = spawn_postgres(l, &pid);
                if (r < 0) {
                        slog(&l->s, "cannot execute %s: %s", l->s.config->argv[0], strerror(-r));
                        l->s.exit_status = SUPERVISOR_EXIT_START_FAILED;
                        *done = true;
                        return false;
                }
                supervisor_started(&l->s, pid, now);
                slog(&l->s, "started postgres pid %d", (int) pid);
                return false;
        case SUPERVISOR_ACTION_SIGNAL:
                if (l->s.postmaster_pid > 0)
                        (void) kill(l->s.postmaster_pid, sig);
                return false;
        case SUPERVISOR_ACTION_FENCE:
                /* It logs every outcome; the next turn sees the hold. */
                (void) supervisor_fence(&l->s, now);
                return false;
        case SUPERVISOR_ACTION_EXIT:
                if (wait_for_orphans(l, now)) {
                        *wait_until = now + ORPHAN_POLL_INTERVAL;
                        return true;
                }
                *done = true;
                return false;
        case SUPERVISOR_ACTION_WAIT:
        default:
                return true;
        }
}

int supervisor_run(const struct supervisor_config *c, char **reterr_msg) {
        const struct clock_ops *clk = c->clock ?: &clock_system;
        struct supervisor_loop l = { .signal_fd = -EBADF, .inotify_fd = -EBADF, .timer_fd = -EBADF };
        bool done = false;
        int r;

        sigemptyset(&l.old_mask);
        r = loop_setup(&l, c, reterr_msg);
        if (r < 0) {
                loop_done(&l);
                return r;
        }
        supervisor_init(&l.s, c, clock_now(clk));
        if (isempty(c->data_dir))
                slog(&l.s, "no data directory known (--data-dir, -D or PGDATA): a lease fence cannot write "
                     PGCTL_STANDBY_MARKER);
        while (!done) {
                usec_t now = clock_now(clk), wait_until = USEC_INFINITY, left;
                struct pollfd p[3] = {
                        { .fd = l.signal_fd, .events = POLLIN },
                        { .fd = l.inotify_fd, .events = POLLIN },
                        { .fd = l.timer_fd, .events = POLLIN },
                };

                read_lease(&l, now);
                check_ready(&l);
                if (!loop_act(&l, now, &wait_until, &done)) {
                        write_state(&l);
                        continue;
                }
                write_state(&l);
                left = wait_until > now ? wait_until - now : 0;
                left = MIN(left, HOLD_POLL_INTERVAL);
                if (poll(p, ELEMENTSOF(p), (int) ((left + USEC_PER_MSEC - 1) / USEC_PER_MSEC)) < 0 && errno != EINTR) {
                        r = -errno;
                        set_error_msg(reterr_msg, "poll: %s", strerror(-r));
                        loop_done(&l);
                        return r;
                }
                read_signals(&l, clock_now(clk));
                drain_inotify(&l);
        }
        loop_done(&l);
        return l.s.exit_status;
}
