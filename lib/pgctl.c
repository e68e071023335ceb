/* pgctl.c: the agent's control of the local Postgres: start, stop, fence and
 * hold, behind struct pgctl_ops with a `supervisor` and a `pg_ctl` backend. */
#include <ctype.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "pgctl.h"
#include "proc.h"
#include "supervisor.h"
#include "util.h"

#define PGCTL_OUTPUT_MAX (1024 * 1024)
#define PGCTL_POLL_INTERVAL (100 * USEC_PER_MSEC)
/* pg_ctl gets its own -t; the exec around it this much more. */
#define PGCTL_EXEC_SLACK (5 * USEC_PER_SEC)

extern char **environ;

static const char *const stop_mode_names[_PGCTL_STOP_MAX] = {
        [PGCTL_STOP_SMART] = "smart",
        [PGCTL_STOP_FAST] = "fast",
        [PGCTL_STOP_IMMEDIATE] = "immediate",
};

const char *pgctl_stop_mode_to_string(enum pgctl_stop_mode m) {
        if (m < 0 || m >= _PGCTL_STOP_MAX)
                return NULL;
        return stop_mode_names[m];
}

enum pgctl_stop_mode pgctl_stop_mode_from_string(const char *s) {
        for (int i = 0; s && i < _PGCTL_STOP_MAX; i++)
                if (streq(s, stop_mode_names[i]))
                        return (enum pgctl_stop_mode) i;
        return _PGCTL_STOP_INVALID;
}

int pgctl_stop_mode_signal(enum pgctl_stop_mode m) {
        switch (m) {
        case PGCTL_STOP_SMART:
                return SIGTERM;
        case PGCTL_STOP_FAST:
                return SIGINT;
        case PGCTL_STOP_IMMEDIATE:
                return SIGQUIT;
        default:
                return -EINVAL;
        }
}

static int pidfd_open_pid(pid_t pid) {
        int fd = (int) syscall(SYS_pidfd_open, pid, 0);
        return fd < 0 ? -errno : fd;
}

static int pidfd_signal(int pidfd, int sig) {
        return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0) < 0 ? -errno : 0;
}

static usec_t deadline_after(const struct clock_ops *clk, usec_t timeout) {
        usec_t now = clock_now(clk);
        return timeout > USEC_INFINITY - now ? USEC_INFINITY : now + timeout;
}

/* Milliseconds for poll() until deadline, at most cap (0 = no cap). */
static int poll_timeout_ms(const struct clock_ops *clk, usec_t deadline, usec_t cap) {
        usec_t now = clock_now(clk), left;

        left = deadline > now ? deadline - now : 0;
        if (cap > 0 && left > cap)
                left = cap;
        return (int) MIN((left + USEC_PER_MSEC - 1) / USEC_PER_MSEC, (usec_t) INT_MAX);
}

static const struct clock_ops *config_clock(const struct pgctl *c) {
        return c->config.clock ?: &clock_system;
}

static int fsync_dir(const char *dir) {
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

        if (fd < 0)
                return -errno;
        return fsync(fd) < 0 ? -errno : 0;
}

void pgctl_pidfile_done(struct pgctl_pidfile *p) {
        free(p->datadir);
        free(p->socket_dir);
        free(p->listen_addr);
        free(p->status);
        *p = (struct pgctl_pidfile) {};
}

static int parse_int_strict(const char *s, int64_t min, int64_t max, int64_t *ret) {
        int64_t v;
        int r;

        r = parse_int64(s, &v);
        if (r < 0)
                return r;
        if (v < min || v > max)
                return -ERANGE;
        *ret = v;
        return 0;
}

int pgctl_pidfile_parse(const char *text, struct pgctl_pidfile *ret) {
        _cleanup_(pgctl_pidfile_done) struct pgctl_pidfile p = {};
        _cleanup_free_ char *copy = NULL;
        char *line, *next;
        int64_t v;
        int n = 0;

        copy = strdup(text);
        if (!copy)
                return -ENOMEM;
        /* Only newline-terminated lines count: a reader may see the file
         * while the postmaster is still writing it. */
        for (line = copy; (next = strchr(line, '\n')); line = next + 1) {
                *next = '\0';
                n++;
                if (n == 1) {
                        if (parse_int_strict(strstrip(line), 1, INT_MAX, &v) < 0)
                                return -EBADMSG;
                        p.pid = (pid_t) v;
                } else if (n == 2) {
                        if (!path_is_absolute(line))
                                return -EBADMSG;
                        if (!(p.datadir = strdup(line)))
                                return -ENOMEM;
                } else if (n == 3) {
                        if (parse_int_strict(strstrip(line), 0, INT64_MAX, &v) < 0)
                                return -EBADMSG;
                        p.start_time = v;
                } else if (n == 4) {
                        if (parse_int_strict(strstrip(line), 0, 65535, &v) < 0)
                                return -EBADMSG;
                        p.port = (int) v;
                } else if (n == 5) {
                        if (!isempty(line) && !(p.socket_dir = strdup(line)))
                                return -ENOMEM;
                } else if (n == 6) {
                        if (!isempty(line) && !(p.listen_addr = strdup(line)))
                                return -ENOMEM;
                } else if (n == 8) {
                        char *status = strstrip(line);
                        if (!isempty(status) && !(p.status = strdup(status)))
                                return -ENOMEM;
                }
        }
        if (n < 2)
                return -EBADMSG;
        *ret = p;
        p = (struct pgctl_pidfile) {};
        return 0;
}

int pgctl_pidfile_read(const char *datadir, struct pgctl_pidfile *ret) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        int r;

        path = strdup_printf("%s/" PGCTL_PIDFILE, datadir);
        if (!path)
                return -ENOMEM;
        r = read_full_file(path, &text, NULL);
        if (r < 0)
                return r;
        return pgctl_pidfile_parse(text, ret);
}

int pgctl_postmaster_pid(const char *datadir, pid_t *ret) {
        _cleanup_(pgctl_pidfile_done) struct pgctl_pidfile p = {};
        int r;

        r = pgctl_pidfile_read(datadir, &p);
        if (r < 0)
                return r;
        *ret = p.pid;
        return 0;
}

bool pgctl_pidfile_is_ready(const struct pgctl_pidfile *p) {
        return p->status && (streq(p->status, "ready") || streq(p->status, "standby"));
}

bool pgctl_cmdline_is_postmaster(const char *cmdline, size_t size) {
        _cleanup_free_ char *argv0 = NULL;
        const char *base;

        if (!cmdline || size == 0)
                return false;
        argv0 = strndup(cmdline, size);
        if (!argv0 || isempty(argv0))
                return false;
        /* Children rewrite their title to "postgres: checkpointer ". */
        if (strchr(argv0, ':') || strchr(argv0, ' '))
                return false;
        base = strrchr(argv0, '/');
        base = base ? base + 1 : argv0;
        return streq(base, "postgres") || streq(base, "postmaster");
}

int pgctl_pid_is_postmaster(pid_t pid) {
        _cleanup_free_ char *path = NULL, *cmdline = NULL;
        size_t size;
        int r;

        if (pid <= 0)
                return 0;
        if (kill(pid, 0) < 0 && errno == ESRCH)
                return 0;
        path = strdup_printf("/proc/%d/cmdline", (int) pid);
        if (!path)
                return -ENOMEM;
        r = read_full_file(path, &cmdline, &size);
        if (r == -ENOENT || r == -ESRCH)
                return 0;
        if (r < 0)
                return r;
        /* A zombie has an empty cmdline: it is not running any more. */
        return pgctl_cmdline_is_postmaster(cmdline, size);
}

int pgctl_hold_set(const char *run_dir, const char *reason) {
        _cleanup_free_ char *path = NULL, *content = NULL;
        int r;

        if (isempty(run_dir))
                return -EINVAL;
        path = strdup_printf("%s/" PGCTL_HOLD_FILE, run_dir);
        content = strdup_printf("%s\n", strempty(reason));
        if (!path || !content)
                return -ENOMEM;
        r = write_file_atomic(path, content, 0644);
        if (r < 0)
                return r;
        return fsync_dir(run_dir);
}

static int unlink_durable(const char *dir, const char *name) {
        _cleanup_free_ char *path = NULL;

        path = strdup_printf("%s/%s", dir, name);
        if (!path)
                return -ENOMEM;
        if (unlink(path) < 0) {
                if (errno == ENOENT)
                        return 0;
                return -errno;
        }
        return fsync_dir(dir);
}

static int file_exists_in(const char *dir, const char *name) {
        _cleanup_free_ char *path = NULL;

        path = strdup_printf("%s/%s", dir, name);
        if (!path)
                return -ENOMEM;
        if (access(path, F_OK) < 0)
                return errno == ENOENT ? 0 : -errno;
        return 1;
}

int pgctl_hold_clear(const char *run_dir) {
        if (isempty(run_dir))
                return -EINVAL;
        return unlink_durable(run_dir, PGCTL_HOLD_FILE);
}

int pgctl_hold_is_set(const char *run_dir) {
        struct stat st;

        if (isempty(run_dir))
                return -EINVAL;
        /* A missing run directory is an error, not "no hold": the caller
         * must not start a server it cannot check. */
        if (stat(run_dir, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        return file_exists_in(run_dir, PGCTL_HOLD_FILE);
}

int pgctl_write_standby_marker(const char *datadir) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -EBADF;

        if (isempty(datadir))
                return -EINVAL;
        path = strdup_printf("%s/" PGCTL_STANDBY_MARKER, datadir);
        if (!path)
                return -ENOMEM;
        /* An empty file: nothing can be half-written, so no rename needed. */
        fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        if (fsync(fd) < 0)
                return -errno;
        return fsync_dir(datadir);
}

int pgctl_remove_standby_marker(const char *datadir) {
        if (isempty(datadir))
                return -EINVAL;
        return unlink_durable(datadir, PGCTL_STANDBY_MARKER);
}

int pgctl_has_standby_marker(const char *datadir) {
        if (isempty(datadir))
                return -EINVAL;
        return file_exists_in(datadir, PGCTL_STANDBY_MARKER);
}

int pgctl_data_dir_fix_mode(const char *datadir, mode_t *ret_old) {
        struct stat st;
        mode_t mode;

        if (isempty(datadir))
                return -EINVAL;
        if (stat(datadir, &st) < 0)
                return errno == ENOENT ? 0 : -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        mode = st.st_mode & 07777;
        if (mode == 0700 || mode == 0750)
                return 0;
        if (st.st_uid != geteuid())
                return -EPERM;
        if (chmod(datadir, 0700) < 0)
                return -errno;
        if (ret_old)
                *ret_old = mode;
        return 1;
}

static const char *const db_state_names[_PGCTL_DB_MAX] = {
        [PGCTL_DB_STARTING_UP] = "starting up",
        [PGCTL_DB_SHUT_DOWN] = "shut down",
        [PGCTL_DB_SHUT_DOWN_IN_RECOVERY] = "shut down in recovery",
        [PGCTL_DB_SHUTTING_DOWN] = "shutting down",
        [PGCTL_DB_IN_CRASH_RECOVERY] = "in crash recovery",
        [PGCTL_DB_IN_ARCHIVE_RECOVERY] = "in archive recovery",
        [PGCTL_DB_IN_PRODUCTION] = "in production",
};

const char *pgctl_db_state_to_string(enum pgctl_db_state s) {
        if (s < 0 || s >= _PGCTL_DB_MAX)
                return NULL;
        return db_state_names[s];
}

enum pgctl_db_state pgctl_db_state_from_string(const char *s) {
        for (int i = 0; s && i < _PGCTL_DB_MAX; i++)
                if (streq(s, db_state_names[i]))
                        return (enum pgctl_db_state) i;
        return _PGCTL_DB_INVALID;
}

/* "16/B374D848": two hex numbers of at most 8 digits. Local rather than
 * pgconn's so that this module needs no libpq. */
static int parse_lsn(const char *s, uint64_t *ret) {
        unsigned long hi, lo;
        const char *slash;
        char *end;

        slash = strchr(s, '/');
        if (!slash || slash == s || slash - s > 8 || strlen(slash + 1) == 0 || strlen(slash + 1) > 8)
                return -EINVAL;
        for (const char *p = s; *p; p++)
                if (p != slash && !isxdigit((unsigned char) *p))
                        return -EINVAL;
        hi = strtoul(s, &end, 16);
        lo = strtoul(slash + 1, &end, 16);
        *ret = ((uint64_t) hi << 32) | lo;
        return 0;
}

static int parse_u32(const char *s, uint32_t *ret) {
        int64_t v;
        int r;

        r = parse_int_strict(s, 0, UINT32_MAX, &v);
        if (r < 0)
                return r;
        *ret = (uint32_t) v;
        return 0;
}

static int controldata_field(struct pgctl_controldata *d, const char *key, const char *value, unsigned *seen) {
        if (streq(key, "Database cluster state")) {
                d->state = pgctl_db_state_from_string(value);
                *seen |= 1;
                return d->state < 0 ? -EBADMSG : 0;
        }
        if (streq(key, "Database system identifier")) {
                *seen |= 2;
                if (!isdigit((unsigned char) value[0]))
                        return -EBADMSG;
                errno = 0;
                d->system_identifier = strtoull(value, NULL, 10);
                return errno ? -EBADMSG : 0;
        }
        if (streq(key, "Latest checkpoint location")) {
                *seen |= 4;
                return parse_lsn(value, &d->checkpoint_lsn) < 0 ? -EBADMSG : 0;
        }
        if (streq(key, "Latest checkpoint's TimeLineID")) {
                *seen |= 8;
                return parse_u32(value, &d->timeline) < 0 || d->timeline == 0 ? -EBADMSG : 0;
        }
        if (streq(key, "Latest checkpoint's REDO location"))
                return parse_lsn(value, &d->redo_lsn) < 0 ? -EBADMSG : 0;
        if (streq(key, "Latest checkpoint's PrevTimeLineID"))
                return parse_u32(value, &d->prev_timeline) < 0 ? -EBADMSG : 0;
        if (streq(key, "Minimum recovery ending location"))
                return parse_lsn(value, &d->min_recovery_lsn) < 0 ? -EBADMSG : 0;
        if (streq(key, "Min recovery ending loc's timeline"))
                return parse_u32(value, &d->min_recovery_timeline) < 0 ? -EBADMSG : 0;
        if (streq(key, "wal_log_hints setting"))
                return parse_bool(value, &d->wal_log_hints) < 0 ? -EBADMSG : 0;
        if (streq(key, "Data page checksum version")) {
                uint32_t v;
                if (parse_u32(value, &v) < 0)
                        return -EBADMSG;
                d->data_checksums = v != 0;
        }
        return 0;
}

int pgctl_controldata_parse(const char *text, struct pgctl_controldata *ret) {
        struct pgctl_controldata d = { .state = _PGCTL_DB_INVALID };
        _cleanup_free_ char *copy = NULL;
        char *save = NULL;
        unsigned seen = 0;
        int r;

        copy = strdup(text);
        if (!copy)
                return -ENOMEM;
        for (char *line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *colon = strchr(line, ':');

                if (!colon)
                        continue;
                *colon = '\0';
                r = controldata_field(&d, strstrip(line), strstrip(colon + 1), &seen);
                if (r < 0)
                        return r;
        }
        if (seen != 15)
                return -EBADMSG;
        *ret = d;
        return 0;
}

/* The environment with LC_ALL=C, so that tools print what we parse. */
static char **env_c_locale(void) {
        size_t n = strv_length(environ), k = 0;
        char **env;

        env = calloc(n + 2, sizeof(char *));
        if (!env)
                return NULL;
        for (size_t i = 0; i < n; i++)
                if (!strneq(environ[i], "LC_", 3) && !strneq(environ[i], "LANG=", 5) &&
                    !strneq(environ[i], "LANGUAGE=", 9))
                        env[k++] = environ[i];
        env[k] = (char *) "LC_ALL=C";
        return env;
}

int pgctl_controldata(const char *bindir, const char *datadir, usec_t timeout,
                      struct pgctl_controldata *ret, char **reterr_msg) {
        _cleanup_free_ char *tool = NULL, *output = NULL;
        _cleanup_free_ char **env = NULL;
        int r;

        tool = strdup_printf("%s/pg_controldata", bindir);
        env = env_c_locale();
        if (!tool || !env)
                return -ENOMEM;
        char *const argv[] = { tool, (char *) "-D", (char *) datadir, NULL };
        r = pgctl_run(argv, env, timeout, &output, reterr_msg);
        if (r < 0)
                return r;
        if (r != 0) {
                set_error_msg(reterr_msg, "pg_controldata exited with status %d: %s", r, strstrip(output));
                return -EIO;
        }
        r = pgctl_controldata_parse(output, ret);
        if (r < 0)
                set_error_msg(reterr_msg, "cannot parse the output of pg_controldata -D %s", datadir);
        return r;
}

static int spawn_captured(char *const *argv, char *const *envp, int out_fd, pid_t *ret_pid) {
        posix_spawn_file_actions_t fa;
        posix_spawnattr_t attr;
        sigset_t mask, defaults;
        int r;

        sigemptyset(&mask);
        sigemptyset(&defaults);
        for (int sig = 1; sig < 32; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        sigaddset(&defaults, sig);
        posix_spawn_file_actions_init(&fa);
        posix_spawnattr_init(&attr);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, out_fd, STDERR_FILENO);
        posix_spawnattr_setsigmask(&attr, &mask);
        posix_spawnattr_setsigdefault(&attr, &defaults);
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
        r = posix_spawn(ret_pid, argv[0], &fa, &attr, argv, envp ?: environ);
        posix_spawn_file_actions_destroy(&fa);
        posix_spawnattr_destroy(&attr);
        return -r;
}

static void output_append(char **buf, size_t *len, const char *data, size_t n) {
        char *nbuf;

        if (*len >= PGCTL_OUTPUT_MAX)
                return;
        n = MIN(n, PGCTL_OUTPUT_MAX - *len);
        nbuf = realloc(*buf, *len + n + 1);
        if (!nbuf)
                return;
        memcpy(nbuf + *len, data, n);
        *len += n;
        nbuf[*len] = '\0';
        *buf = nbuf;
}

/* Reads the child's output until it exits or the deadline passes. The
 * child may leave the pipe open in a grandchild (pg_ctl start without -l),
 * so its exit, not EOF, ends the wait. */
static int collect_until_exit(int out_fd, int pidfd, usec_t deadline, char **buf, size_t *len) {
        char chunk[4096];
        bool out_open = true;

        for (;;) {
                struct pollfd p[2] = {
                        { .fd = pidfd, .events = POLLIN },
                        { .fd = out_open ? out_fd : -1, .events = POLLIN },
                };
                int n = poll(p, 2, poll_timeout_ms(&clock_system, deadline, 0));

                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n == 0)
                        return -ETIMEDOUT;
                if (p[1].revents) {
                        ssize_t k = read(out_fd, chunk, sizeof(chunk));
                        if (k > 0)
                                output_append(buf, len, chunk, (size_t) k);
                        else if (k == 0 || errno != EINTR)
                                out_open = false;
                        continue;
                }
                if (p[0].revents) {
                        ssize_t k;
                        while ((k = read(out_fd, chunk, sizeof(chunk))) > 0)
                                output_append(buf, len, chunk, (size_t) k);
                        return 0;
                }
        }
}

int pgctl_run(char *const *argv, char *const *envp, usec_t timeout,
              char **ret_output, char **reterr_msg) {
        _cleanup_close_ int out_read = -EBADF, out_write = -EBADF, pidfd = -EBADF;
        _cleanup_free_ char *output = NULL;
        usec_t deadline = deadline_after(&clock_system, timeout);
        size_t len = 0;
        int pipefd[2], wstatus, r;
        pid_t pid;

        if (!argv || !path_is_absolute(argv[0]))
                return -EINVAL;
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return -errno;
        out_read = pipefd[0];
        out_write = pipefd[1];
        if (fcntl(out_read, F_SETFL, O_NONBLOCK) < 0)
                return -errno;
        r = spawn_captured(argv, envp, out_write, &pid);
        if (r < 0) {
                set_error_msg(reterr_msg, "cannot execute %s: %s", argv[0], strerror(-r));
                return r;
        }
        out_write = safe_close(out_write);
        pidfd = pidfd_open_pid(pid);
        if (pidfd < 0) {
                r = pidfd;
                (void) kill(pid, SIGKILL);
        } else
                r = collect_until_exit(out_read, pidfd, deadline, &output, &len);
        if (r < 0)
                (void) kill(pid, SIGKILL);
        while (waitpid(pid, &wstatus, 0) < 0)
                if (errno != EINTR)
                        return -errno;
        if (r == -ETIMEDOUT)
                set_error_msg(reterr_msg, "%s did not finish within %.1fs, killed", argv[0],
                              (double) timeout / USEC_PER_SEC);
        if (r < 0)
                return r;
        if (ret_output)
                *ret_output = output ? TAKE_PTR(output) : strdup("");
        if (WIFSIGNALED(wstatus))
                return 128 + WTERMSIG(wstatus);
        return WEXITSTATUS(wstatus);
}

static int pidfile_is_running(struct pgctl *c, pid_t *ret_pid) {
        pid_t pid;
        int r;

        r = pgctl_postmaster_pid(c->config.datadir, &pid);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        r = pgctl_pid_is_postmaster(pid);
        if (r <= 0)
                return r;
        if (ret_pid)
                *ret_pid = pid;
        return 1;
}

/* Signals the postmaster through a pidfd, so that a pid recycled between
 * reading postmaster.pid and the signal is never hit, and waits for it. */
static int signal_and_wait(struct pgctl *c, int sig, usec_t timeout, char **reterr_msg) {
        const struct clock_ops *clk = config_clock(c);
        usec_t deadline = deadline_after(clk, timeout);
        _cleanup_close_ int pidfd = -EBADF;
        pid_t pid;
        int r;

        r = pidfile_is_running(c, &pid);
        if (r <= 0)
                return r;
        pidfd = pidfd_open_pid(pid);
        if (pidfd == -ESRCH)
                return 0;
        if (pidfd < 0)
                return pidfd;
        r = pgctl_pid_is_postmaster(pid);
        if (r <= 0)
                return r;
        r = pidfd_signal(pidfd, sig);
        if (r == -ESRCH)
                return 0;
        if (r < 0)
                return r;
        for (;;) {
                struct pollfd p = { .fd = pidfd, .events = POLLIN };
                int n = poll(&p, 1, poll_timeout_ms(clk, deadline, 0));

                if (n > 0)
                        return 0;
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n == 0) {
                        set_error_msg(reterr_msg, "postmaster pid %d did not exit within %.1fs of %s",
                                      (int) pid, (double) timeout / USEC_PER_SEC, sigabbrev_np(sig));
                        return -ETIMEDOUT;
                }
        }
}

static int supervisor_backend_stop(struct pgctl *c, enum pgctl_stop_mode mode, usec_t timeout, char **reterr_msg) {
        int sig = pgctl_stop_mode_signal(mode), r;

        if (sig < 0)
                return sig;
        /* The hold first: without it the supervisor restarts what we stop. */
        r = pgctl_hold_set(c->config.run_dir, pgctl_stop_mode_to_string(mode));
        if (r < 0) {
                set_error_msg(reterr_msg, "cannot create the hold file in %s: %s", c->config.run_dir, strerror(-r));
                return r;
        }
        return signal_and_wait(c, sig, timeout, reterr_msg);
}

static int wait_until_ready(struct pgctl *c, usec_t deadline, bool need_supervisor, char **reterr_msg) {
        const struct clock_ops *clk = config_clock(c);
        _cleanup_free_ char *last_status = NULL;

        for (;;) {
                _cleanup_(pgctl_pidfile_done) struct pgctl_pidfile p = {};
                int r;

                if (need_supervisor && supervisor_pid_alive(c->config.run_dir, NULL) < 0) {
                        set_error_msg(reterr_msg, "the run-postgres supervisor of %s is not running", c->config.run_dir);
                        return -ESRCH;
                }
                r = pgctl_pidfile_read(c->config.datadir, &p);
                if (r >= 0 && pgctl_pid_is_postmaster(p.pid) > 0) {
                        if (pgctl_pidfile_is_ready(&p))
                                return 0;
                        free(last_status);
                        last_status = p.status ? strdup(p.status) : NULL;
                }
                if (clock_now(clk) >= deadline) {
                        set_error_msg(reterr_msg, "Postgres on %s did not accept connections in time (status: %s)",
                                      c->config.datadir, last_status ?: "not running");
                        return -ETIMEDOUT;
                }
                proc_pause(MIN(PGCTL_POLL_INTERVAL, deadline - clock_now(clk)));
        }
}

static int supervisor_backend_start(struct pgctl *c, usec_t timeout, char **reterr_msg) {
        usec_t deadline = deadline_after(config_clock(c), timeout);
        int r;

        r = supervisor_pid_alive(c->config.run_dir, NULL);
        if (r < 0) {
                set_error_msg(reterr_msg, "the run-postgres supervisor of %s is not running: %s",
                              c->config.run_dir, strerror(-r));
                return -ESRCH;
        }
        r = pgctl_hold_clear(c->config.run_dir);
        if (r < 0) {
                set_error_msg(reterr_msg, "cannot remove the hold file in %s: %s", c->config.run_dir, strerror(-r));
                return r;
        }
        return wait_until_ready(c, deadline, true, reterr_msg);
}

const struct pgctl_ops pgctl_supervisor_ops = {
        .name = "supervisor",
        .start = supervisor_backend_start,
        .stop = supervisor_backend_stop,
        .is_running = pidfile_is_running,
};

static int pg_ctl_exec(struct pgctl *c, char **argv, usec_t timeout, char **reterr_msg) {
        _cleanup_free_ char *output = NULL;
        int r;

        r = pgctl_run(argv, NULL, timeout + PGCTL_EXEC_SLACK, &output, reterr_msg);
        if (r > 0) {
                set_error_msg(reterr_msg, "pg_ctl %s exited with status %d: %s", argv[1], r, strstrip(output));
                return r == 1 && strstr(output, "timed out") ? -ETIMEDOUT : -EIO;
        }
        return r;
}

static char *timeout_seconds(usec_t timeout) {
        return strdup_printf("%" PRIu64, MAX((timeout + USEC_PER_SEC - 1) / USEC_PER_SEC, (usec_t) 1));
}

static int pg_ctl_backend_start(struct pgctl *c, usec_t timeout, char **reterr_msg) {
        _cleanup_free_ char *tool = NULL, *secs = NULL;
        char *argv[12];
        size_t n = 0;
        int r;

        if (c->config.run_dir) {
                r = pgctl_hold_clear(c->config.run_dir);
                if (r < 0)
                        return r;
        }
        if (pidfile_is_running(c, NULL) > 0)
                return wait_until_ready(c, deadline_after(config_clock(c), timeout), false, reterr_msg);
        tool = strdup_printf("%s/pg_ctl", c->config.bindir);
        secs = timeout_seconds(timeout);
        if (!tool || !secs)
                return -ENOMEM;
        argv[n++] = tool;
        argv[n++] = (char *) "start";
        argv[n++] = (char *) "-D";
        argv[n++] = (char *) c->config.datadir;
        argv[n++] = (char *) "-w";
        argv[n++] = (char *) "-t";
        argv[n++] = secs;
        if (c->config.log_file) {
                argv[n++] = (char *) "-l";
                argv[n++] = (char *) c->config.log_file;
        }
        if (c->config.postgres_options) {
                argv[n++] = (char *) "-o";
                argv[n++] = (char *) c->config.postgres_options;
        }
        argv[n] = NULL;
        return pg_ctl_exec(c, argv, timeout, reterr_msg);
}

static int pg_ctl_backend_stop(struct pgctl *c, enum pgctl_stop_mode mode, usec_t timeout, char **reterr_msg) {
        _cleanup_free_ char *tool = NULL, *secs = NULL;
        const char *mode_name = pgctl_stop_mode_to_string(mode);
        int r;

        if (!mode_name)
                return -EINVAL;
        if (c->config.run_dir) {
                r = pgctl_hold_set(c->config.run_dir, mode_name);
                if (r < 0)
                        return r;
        }
        r = pidfile_is_running(c, NULL);
        if (r <= 0)
                return r;
        tool = strdup_printf("%s/pg_ctl", c->config.bindir);
        secs = timeout_seconds(timeout);
        if (!tool || !secs)
                return -ENOMEM;
        char *argv[] = { tool, (char *) "stop", (char *) "-D", (char *) c->config.datadir, (char *) "-w",
                         (char *) "-t", secs, (char *) "-m", (char *) mode_name, NULL };
        r = pg_ctl_exec(c, argv, timeout, reterr_msg);
        /* It may have stopped between our check and pg_ctl's. */
        if (r == -EIO && pidfile_is_running(c, NULL) == 0)
                return 0;
        return r;
}

const struct pgctl_ops pgctl_pg_ctl_ops = {
        .name = "pg_ctl",
        .start = pg_ctl_backend_start,
        .stop = pg_ctl_backend_stop,
        .is_running = pidfile_is_running,
};

static int strdup_optional(const char *s, const char **ret) {
        char *copy = NULL;

        if (s && !(copy = strdup(s)))
                return -ENOMEM;
        *ret = copy;
        return 0;
}

int pgctl_init(struct pgctl *c, const char *backend, const struct pgctl_config *config) {
        const struct pgctl_ops *ops;

        if (streq(strempty(backend), "supervisor"))
                ops = &pgctl_supervisor_ops;
        else if (streq(strempty(backend), "pg_ctl"))
                ops = &pgctl_pg_ctl_ops;
        else
                return -EINVAL;
        if (isempty(config->datadir))
                return -EINVAL;
        if (ops == &pgctl_supervisor_ops && isempty(config->run_dir))
                return -EINVAL;
        if (ops == &pgctl_pg_ctl_ops && isempty(config->bindir))
                return -EINVAL;
        /* A pgctl lives as long as the agent, longer than any one
         * configuration (a reload frees the running one): it owns copies of
         * its strings (docs/design.md, "Who owns what"). */
        *c = (struct pgctl) { .ops = ops, .config = { .clock = config->clock } };
        if (strdup_optional(config->datadir, &c->config.datadir) < 0 ||
            strdup_optional(config->run_dir, &c->config.run_dir) < 0 ||
            strdup_optional(config->bindir, &c->config.bindir) < 0 ||
            strdup_optional(config->log_file, &c->config.log_file) < 0 ||
            strdup_optional(config->postgres_options, &c->config.postgres_options) < 0) {
                pgctl_done(c);
                return -ENOMEM;
        }
        return 0;
}

void pgctl_done(struct pgctl *c) {
        free((char *) c->config.datadir);
        free((char *) c->config.run_dir);
        free((char *) c->config.bindir);
        free((char *) c->config.log_file);
        free((char *) c->config.postgres_options);
        *c = (struct pgctl) {};
}

int pgctl_restart(struct pgctl *c, enum pgctl_stop_mode mode, usec_t timeout, char **reterr_msg) {
        int r;

        r = pgctl_stop(c, mode, timeout, reterr_msg);
        if (r < 0)
                return r;
        return pgctl_start(c, timeout, reterr_msg);
}

int pgctl_reload(struct pgctl *c, char **reterr_msg) {
        pid_t pid;
        int r;

        r = pgctl_is_running(c, &pid);
        if (r < 0)
                return r;
        if (r == 0) {
                set_error_msg(reterr_msg, "Postgres on %s is not running", c->config.datadir);
                return -ESRCH;
        }
        return kill(pid, SIGHUP) < 0 ? -errno : 0;
}

int pgctl_fence(struct pgctl *c, usec_t timeout, char **reterr_msg) {
        int marker, r;

        /* Safety rule 1: the standby marker before the stop, so that no
         * later start of this data directory is a primary's. */
        marker = pgctl_write_standby_marker(c->config.datadir);
        r = pgctl_stop(c, PGCTL_STOP_IMMEDIATE, timeout, reterr_msg);
        if (marker < 0) {
                set_error_msg(reterr_msg, "cannot write %s/" PGCTL_STANDBY_MARKER ": %s",
                              c->config.datadir, strerror(-marker));
                return marker;
        }
        return r;
}

int pgctl_kill(struct pgctl *c, usec_t timeout, char **reterr_msg) {
        /* Best effort: a supervisor that is still there must not start
         * again what we kill; the kill does not depend on it. */
        if (c->config.run_dir)
                (void) pgctl_hold_set(c->config.run_dir, "kill");
        return signal_and_wait(c, SIGKILL, timeout, reterr_msg);
}
