/* proc.h: runs one child program (initdb, pg_basebackup, pg_rewind,
 * pg_controldata, postgres --single) with a clean environment and a deadline.
 * A child past its deadline is sent SIGTERM, then SIGKILL, and reaped. */
#ifndef PGLEASE_PROC_H
#define PGLEASE_PROC_H

#include <stdbool.h>
#include <stddef.h>

#include "clock.h"
#include "macro.h"

/* The environment every child gets, before proc_options.env_extra: a fixed
 * PATH, LC_ALL=C (so that the messages we parse are not translated) and
 * TZ=UTC. Nothing from the agent's own environment is passed on, so no
 * PGPASSWORD or Secret can leak into a child. */
#define PROC_ENV_PATH "PATH=/usr/local/bin:/usr/bin:/bin"

struct proc_options {
        char *const *argv;              /* argv[0] is an absolute path */
        char *const *env_extra;         /* "KEY=value" entries added to the clean environment; may be NULL */
        const char *stdin_path;         /* NULL: /dev/null */
        const char *cwd;                /* NULL: "/" */
        usec_t timeout;                 /* from the start; 0 or USEC_INFINITY: none */
        usec_t kill_grace;              /* SIGTERM to SIGKILL; 0: 5 s */
        const struct clock_ops *clock;  /* NULL: clock_system */
        bool capture_stdout;            /* keep stdout in proc_result.stdout_text (else discarded) */
        size_t tail_lines;              /* stderr lines kept for the error message; 0: 8 */

        /* Called for every stderr line; a line ends at '\n' or '\r' (progress
         * meters overwrite themselves with '\r'). */
        void (*on_stderr_line)(const char *line, void *userdata);
        /* Polled about every 100 ms; returning true stops the child like a
         * timeout, with -ECANCELED. */
        bool (*cancel)(void *userdata);
        void *userdata;
        /* Told the child's pid once it is forked (tests, status output). */
        void (*on_started)(pid_t pid, void *userdata);
};

struct proc_result {
        int exit_status;       /* 0..255, or -1 when killed by a signal */
        int term_signal;       /* the signal that killed it, or 0 */
        char *stdout_text;     /* when capture_stdout */
        char *stderr_tail;     /* the last tail_lines lines of stderr, joined by " | " */
};
void proc_result_done(struct proc_result *r);

/* Runs the child to completion. Returns 0 when it exited with status 0;
 * -ETIMEDOUT when its deadline passed (it was killed), -ECANCELED when
 * cancel() asked to stop, -EPROTO when it exited non-zero or died of a
 * signal, or the errno of a failed fork/exec/pipe. On every outcome after a
 * successful fork, *reterr_msg (on failure) holds "<program> <what
 * happened>: <last stderr lines>". The whole process group of the child is
 * killed when it ends, so that helpers it forked (pg_basebackup's WAL
 * streamer) do not outlive it. ret is written only on success. */
int proc_run(const struct proc_options *o, struct proc_result *ret, char **reterr_msg);

/* Waits for the given time (a pause between polls or retries, always inside
 * a caller's deadline). The one place lib/ sleeps. */
void proc_pause(usec_t u);

#endif
