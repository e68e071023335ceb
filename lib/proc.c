/* proc.c: runs one child program with a clean environment and a deadline;
 * past the deadline its process group gets SIGTERM, then SIGKILL. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "proc.h"
#include "util.h"

#define PROC_POLL_MSEC 100
#define PROC_LINE_MAX (64 * 1024)
#define PROC_STDOUT_MAX (4 * 1024 * 1024)
#define PROC_DRAIN_USEC (2 * USEC_PER_SEC)

static const char *const proc_env_base[] = {
        PROC_ENV_PATH,
        "LC_ALL=C",
        "LANG=C",
        "TZ=UTC",
};

void proc_result_done(struct proc_result *r) {
        if (!r)
                return;
        free(r->stdout_text);
        free(r->stderr_tail);
        *r = (struct proc_result) {};
}

void proc_pause(usec_t u) {
        struct timespec ts = {
                .tv_sec = (time_t) (u / USEC_PER_SEC),
                .tv_nsec = (long) (u % USEC_PER_SEC) * 1000,
        };

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Everything the loop accumulates while the child runs. */
struct proc_io {
        const struct proc_options *o;
        char *line;            /* the stderr line being read */
        size_t line_len;
        char **tail;           /* ring of the last lines */
        size_t tail_size, tail_next, tail_count;
        char *out;             /* captured stdout */
        size_t out_len, out_alloc;
};

static void proc_io_done(struct proc_io *io) {
        free(io->line);
        if (io->tail)
                for (size_t i = 0; i < io->tail_size; i++)
                        free(io->tail[i]);
        free(io->tail);
        free(io->out);
}

static void proc_io_end_line(struct proc_io *io) {
        if (io->line_len == 0)
                return;
        io->line[io->line_len] = '\0';
        if (io->o->on_stderr_line)
                io->o->on_stderr_line(io->line, io->o->userdata);
        free(io->tail[io->tail_next]);
        io->tail[io->tail_next] = strdup(io->line);
        io->tail_next = (io->tail_next + 1) % io->tail_size;
        io->tail_count = MIN(io->tail_count + 1, io->tail_size);
        io->line_len = 0;
}

static void proc_io_stderr(struct proc_io *io, const char *buf, size_t n) {
        for (size_t i = 0; i < n; i++) {
                if (buf[i] == '\n' || buf[i] == '\r') {
                        proc_io_end_line(io);
                        continue;
                }
                if (io->line_len < PROC_LINE_MAX)
                        io->line[io->line_len++] = buf[i];
        }
}

static void proc_io_stdout(struct proc_io *io, const char *buf, size_t n) {
        if (io->out_len + n + 1 > io->out_alloc) {
                size_t want = MAX(io->out_alloc * 2, io->out_len + n + 4096);
                char *p;

                if (want > PROC_STDOUT_MAX)
                        return; /* more than any tool we run prints: drop the excess */
                p = realloc(io->out, want);
                if (!p)
                        return;
                io->out = p;
                io->out_alloc = want;
        }
        memcpy(io->out + io->out_len, buf, n);
        io->out_len += n;
        io->out[io->out_len] = '\0';
}

static char *proc_io_tail(const struct proc_io *io) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                return NULL;
        for (size_t i = 0; i < io->tail_count; i++) {
                size_t k = (io->tail_next + io->tail_size - io->tail_count + i) % io->tail_size;
                fprintf(f, "%s%s", i > 0 ? " | " : "", strempty(io->tail[k]));
        }
        fclose(f);
        return buf;
}

/* Reads what is there; returns false at EOF or on error. */
static bool proc_read_fd(struct proc_io *io, int fd, bool is_stderr) {
        char buf[8192];
        ssize_t n = read(fd, buf, sizeof(buf));

        if (n < 0)
                return errno == EINTR || errno == EAGAIN;
        if (n == 0)
                return false;
        if (is_stderr)
                proc_io_stderr(io, buf, (size_t) n);
        else
                proc_io_stdout(io, buf, (size_t) n);
        return true;
}

static char **proc_build_env(char *const *extra) {
        size_t n_extra = 0, n = 0;
        char **env;

        while (extra && extra[n_extra])
                n_extra++;
        env = calloc(ELEMENTSOF(proc_env_base) + n_extra + 1, sizeof(char *));
        if (!env)
                return NULL;
        for (size_t i = 0; i < ELEMENTSOF(proc_env_base); i++)
                env[n++] = (char *) proc_env_base[i];
        for (size_t i = 0; i < n_extra; i++)
                env[n++] = extra[i];
        return env;
}

/* Between fork and exec: only async-signal-safe calls. */
_Noreturn static void proc_child(const struct proc_options *o, char **env,
                                 int in_fd, int out_fd, int err_fd) {
        static const int reset[] = { SIGPIPE, SIGTERM, SIGINT, SIGQUIT, SIGHUP,
                                     SIGCHLD, SIGUSR1, SIGUSR2, SIGALRM };
        sigset_t none;

        (void) setpgid(0, 0);
        sigemptyset(&none);
        (void) sigprocmask(SIG_SETMASK, &none, NULL);
        for (size_t i = 0; i < ELEMENTSOF(reset); i++)
                (void) signal(reset[i], SIG_DFL);
        if (dup2(in_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
            dup2(err_fd, STDERR_FILENO) < 0)
                _exit(126);
        (void) close_range(3, ~0U, 0);
        if (chdir(o->cwd ? o->cwd : "/") < 0)
                _exit(126);
        execve(o->argv[0], o->argv, env);
        _exit(127);
}

struct proc_pipes {
        int in, out_r, out_w, err_r, err_w;
};

static void proc_pipes_close(struct proc_pipes *p) {
        p->in = safe_close(p->in);
        p->out_r = safe_close(p->out_r);
        p->out_w = safe_close(p->out_w);
        p->err_r = safe_close(p->err_r);
        p->err_w = safe_close(p->err_w);
}

static int proc_pipes_open(const struct proc_options *o, struct proc_pipes *p) {
        int fds[2];

        p->in = open(o->stdin_path ? o->stdin_path : "/dev/null", O_RDONLY | O_CLOEXEC);
        if (p->in < 0)
                return -errno;
        if (pipe2(fds, O_CLOEXEC) < 0)
                return -errno;
        p->err_r = fds[0];
        p->err_w = fds[1];
        if (o->capture_stdout) {
                if (pipe2(fds, O_CLOEXEC) < 0)
                        return -errno;
                p->out_r = fds[0];
                p->out_w = fds[1];
        } else {
                p->out_w = open("/dev/null", O_WRONLY | O_CLOEXEC);
                if (p->out_w < 0)
                        return -errno;
        }
        return 0;
}

enum proc_stop {
        PROC_STOP_NONE,
        PROC_STOP_TIMEOUT,
        PROC_STOP_CANCEL,
};

/* Polls the pipes until the child is reaped; stops it when its deadline
 * passes or cancel() says so. Returns why it was stopped. */
static enum proc_stop proc_wait(const struct proc_options *o, struct proc_io *io,
                                struct proc_pipes *p, pid_t pid, int *ret_status) {
        const struct clock_ops *clock = o->clock ? o->clock : &clock_system;
        usec_t start = clock_now(clock), term_at = 0;
        usec_t grace = o->kill_grace ? o->kill_grace : 5 * USEC_PER_SEC;
        enum proc_stop stop = PROC_STOP_NONE;

        for (;;) {
                struct pollfd fds[2] = { { .fd = p->err_r, .events = POLLIN },
                                         { .fd = p->out_r, .events = POLLIN } };
                usec_t now;
                int status;

                if (poll(fds, 2, PROC_POLL_MSEC) > 0) {
                        if (fds[0].revents && !proc_read_fd(io, p->err_r, true))
                                p->err_r = safe_close(p->err_r);
                        if (fds[1].revents && !proc_read_fd(io, p->out_r, false))
                                p->out_r = safe_close(p->out_r);
                }
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        *ret_status = status;
                        return stop;
                }
                now = clock_now(clock);
                if (stop == PROC_STOP_NONE) {
                        if (o->timeout != 0 && o->timeout != USEC_INFINITY && now >= start + o->timeout)
                                stop = PROC_STOP_TIMEOUT;
                        else if (o->cancel && o->cancel(o->userdata))
                                stop = PROC_STOP_CANCEL;
                        if (stop != PROC_STOP_NONE) {
                                (void) kill(-pid, SIGTERM);
                                term_at = now;
                        }
                } else if (now >= term_at + grace)
                        (void) kill(-pid, SIGKILL);
        }
}

/* After the child is gone: kill what is left of its group and read the
 * rest of its output, which may be held open by a grandchild for a moment. */
static void proc_drain(const struct proc_options *o, struct proc_io *io,
                       struct proc_pipes *p, pid_t pid) {
        const struct clock_ops *clock = o->clock ? o->clock : &clock_system;
        usec_t until = clock_now(clock) + PROC_DRAIN_USEC;

        (void) kill(-pid, SIGKILL);
        while ((p->err_r >= 0 || p->out_r >= 0) && clock_now(clock) < until) {
                struct pollfd fds[2] = { { .fd = p->err_r, .events = POLLIN },
                                         { .fd = p->out_r, .events = POLLIN } };

                if (poll(fds, 2, PROC_POLL_MSEC) <= 0)
                        continue;
                if (fds[0].revents && !proc_read_fd(io, p->err_r, true))
                        p->err_r = safe_close(p->err_r);
                if (fds[1].revents && !proc_read_fd(io, p->out_r, false))
                        p->out_r = safe_close(p->out_r);
        }
        proc_io_end_line(io);
}

static int proc_outcome(const struct proc_options *o, enum proc_stop stop, int status,
                        const char *tail, char **reterr_msg) {
        const char *name = strrchr(o->argv[0], '/') ? strrchr(o->argv[0], '/') + 1 : o->argv[0];
        _cleanup_free_ char *timeout = NULL;

        if (stop == PROC_STOP_TIMEOUT) {
                timeout = format_duration(o->timeout);
                set_error_msg(reterr_msg, "%s did not finish within %s and was killed: %s",
                              name, strempty(timeout), strempty(tail));
                return -ETIMEDOUT;
        }
        if (stop == PROC_STOP_CANCEL) {
                set_error_msg(reterr_msg, "%s was cancelled: %s", name, strempty(tail));
                return -ECANCELED;
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
                return 0;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
                set_error_msg(reterr_msg, "%s could not be executed: %s", o->argv[0], strempty(tail));
        else if (WIFEXITED(status))
                set_error_msg(reterr_msg, "%s exited with status %d: %s",
                              name, WEXITSTATUS(status), strempty(tail));
        else
                set_error_msg(reterr_msg, "%s was killed by signal %d: %s",
                              name, WIFSIGNALED(status) ? WTERMSIG(status) : 0, strempty(tail));
        return -EPROTO;
}

int proc_run(const struct proc_options *o, struct proc_result *ret, char **reterr_msg) {
        struct proc_pipes p = { -EBADF, -EBADF, -EBADF, -EBADF, -EBADF };
        struct proc_io io = { .o = o };
        _cleanup_free_ char **env = NULL;
        _cleanup_free_ char *tail = NULL;
        enum proc_stop stop;
        int status = 0, r;
        pid_t pid;

        if (!o || !o->argv || !path_is_absolute(o->argv[0]))
                return -EINVAL;
        io.tail_size = o->tail_lines ? o->tail_lines : 8;
        io.tail = calloc(io.tail_size, sizeof(char *));
        io.line = malloc(PROC_LINE_MAX + 1);
        env = proc_build_env(o->env_extra);
        if (!io.tail || !io.line || !env) {
                proc_io_done(&io);
                return -ENOMEM;
        }
        r = proc_pipes_open(o, &p);
        if (r < 0) {
                set_error_msg(reterr_msg, "cannot set up %s: %s", o->argv[0], strerror(-r));
                proc_pipes_close(&p);
                proc_io_done(&io);
                return r;
        }

        pid = fork();
        if (pid < 0) {
                r = -errno;
                set_error_msg(reterr_msg, "cannot fork for %s: %s", o->argv[0], strerror(-r));
                proc_pipes_close(&p);
                proc_io_done(&io);
                return r;
        }
        if (pid == 0)
                proc_child(o, env, p.in, p.out_w, p.err_w);

        (void) setpgid(pid, pid);
        p.in = safe_close(p.in);
        p.out_w = safe_close(p.out_w);
        p.err_w = safe_close(p.err_w);
        if (o->on_started)
                o->on_started(pid, o->userdata);

        stop = proc_wait(o, &io, &p, pid, &status);
        proc_drain(o, &io, &p, pid);
        proc_pipes_close(&p);
        tail = proc_io_tail(&io);

        r = proc_outcome(o, stop, status, tail, reterr_msg);
        if (r >= 0 && ret) {
                *ret = (struct proc_result) {
                        .exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                        .term_signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0,
                        .stdout_text = io.out ? TAKE_PTR(io.out) : strdup(""),
                        .stderr_tail = TAKE_PTR(tail),
                };
        }
        proc_io_done(&io);
        return r;
}
