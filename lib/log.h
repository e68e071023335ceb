/* log.h: log lines for the programs: text or JSON lines on stderr, or the
 * journal with fields when started by systemd. lib/ modules do not log; the
 * agent owns one logger and passes it where lines are written. */
#ifndef PGLEASE_LOG_H
#define PGLEASE_LOG_H

#include <stdarg.h>

#include "config.h"
#include "macro.h"

enum log_target {
        LOG_TARGET_STDERR,
        LOG_TARGET_JOURNAL,
};

struct log_record {
        enum log_level level;
        usec_t realtime;               /* wall clock, for the stamp */
        const char *program;           /* "pglease-agent" */
        const char *node;              /* may be NULL */
        const char *event;             /* "promote", "fence"...; may be NULL */
        const char *message;
};

/* One logger is shared by the agent's loop and its threads (renewer,
 * rollout worker, failsafe client and responder): a reload changes format
 * and min_level while they log, so both are atomic; node is set once and
 * then only read (logger_set_node()). */
struct logger {
        enum log_target target;
        _Atomic enum log_format format;
        _Atomic enum log_level min_level;
        const char *program;
        char *node;
        int fd;                        /* stderr normally; tests use a pipe */
};

const char *log_level_to_string(enum log_level l);

/* One line without the trailing newline:
 * "2026-11-25T20:32:51.123Z INFO  pg-0 promote: message" */
int log_format_text(const struct log_record *r, char **ret);
/* One JSON object without the trailing newline:
 * {"time":"...","level":"info","program":"...","node":"pg-0","event":"promote","msg":"..."} */
int log_format_json(const struct log_record *r, char **ret);

/* Appends s to a JSON document as a quoted, escaped string. */
int json_escape(const char *s, char **ret);

/* Replaces the value of every password=..., PGPASSWORD=... and the password
 * part of postgres://user:password@host with ***. Returns a new string. */
char *log_redact(const char *s);

/* True when stderr is connected to the journal ($JOURNAL_STREAM matches
 * stderr) or the program was started by systemd and the journal socket
 * exists. */
bool log_journal_wanted(void);

void logger_init(struct logger *l, const char *program, int fd);
/* Sets the node name of every line. Once set it is never freed while the
 * logger lives (threads read it without a lock): setting the same name
 * again is a no-op, another name is refused with -EBUSY (node_name cannot
 * change at run time). */
int logger_set_node(struct logger *l, const char *node);
void logger_done(struct logger *l);

void log_write(const struct logger *l, usec_t realtime, enum log_level level, const char *event,
               const char *fmt, ...) _printf_(5, 6);
void log_writev(const struct logger *l, usec_t realtime, enum log_level level, const char *event,
                const char *fmt, va_list ap) _printf_(5, 0);

#endif
