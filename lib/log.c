/* log.c: log lines for the programs: text or JSON lines on stderr, or the
 * journal with fields when started by systemd. lib/ modules do not log; the
 * agent owns one logger and passes it where lines are written. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-journal.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

static const char *const level_names[_LOG_LEVEL_MAX] = {
        [LOG_LEVEL_DEBUG] = "debug",
        [LOG_LEVEL_INFO] = "info",
        [LOG_LEVEL_WARNING] = "warning",
        [LOG_LEVEL_ERROR] = "error",
};

const char *log_level_to_string(enum log_level l) {
        if ((unsigned) l >= _LOG_LEVEL_MAX)
                return "unknown";
        return level_names[l];
}

static char *format_stamp(usec_t realtime) {
        time_t sec = (time_t) (realtime / USEC_PER_SEC);
        struct tm tm;

        if (!gmtime_r(&sec, &tm))
                return NULL;
        return strdup_printf("%04d-%02d-%02dT%02d:%02d:%02d.%03uZ",
                             tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                             tm.tm_hour, tm.tm_min, tm.tm_sec,
                             (unsigned) ((realtime % USEC_PER_SEC) / USEC_PER_MSEC));
}

int json_escape(const char *s, char **ret) {
        _cleanup_free_ char *out = NULL;
        size_t n = 2;
        char *p;

        for (const unsigned char *c = (const unsigned char *) s; *c; c++)
                n += (*c < 0x20 || *c == '"' || *c == '\\' || *c == 0x7f) ? 6 : 1;
        out = malloc(n + 1);
        if (!out)
                return -ENOMEM;
        p = out;
        *p++ = '"';
        for (const unsigned char *c = (const unsigned char *) s; *c; c++) {
                switch (*c) {
                case '"':
                        *p++ = '\\', *p++ = '"';
                        break;
                case '\\':
                        *p++ = '\\', *p++ = '\\';
                        break;
                case '\n':
                        *p++ = '\\', *p++ = 'n';
                        break;
                case '\r':
                        *p++ = '\\', *p++ = 'r';
                        break;
                case '\t':
                        *p++ = '\\', *p++ = 't';
                        break;
                default:
                        if (*c < 0x20 || *c == 0x7f)
                                p += sprintf(p, "\\u%04x", *c);
                        else
                                *p++ = (char) *c;
                }
        }
        *p++ = '"';
        *p = '\0';
        *ret = TAKE_PTR(out);
        return 0;
}

/* Length of a password value starting at p: a quoted value up to its
 * closing quote, else up to the next blank or separator. */
static size_t secret_len(const char *p) {
        const char *e = p;

        if (*p == '\'' || *p == '"') {
                char q = *p;

                for (e = p + 1; *e && *e != q; e++)
                        if (*e == '\\' && e[1])
                                e++;
                return (size_t) (*e ? e + 1 - p : e - p);
        }
        while (*e && !isspace((unsigned char) *e) && *e != '&' && *e != ',' && *e != ';')
                e++;
        return (size_t) (e - p);
}

char *log_redact(const char *s) {
        static const char *const markers[] = { "password=", "password =", "PGPASSWORD=", "password: " };
        _cleanup_free_ char *out = NULL;
        size_t len = 0;
        FILE *f;

        f = open_memstream(&out, &len);
        if (!f)
                return NULL;
        for (const char *p = s; *p;) {
                bool done = false;

                for (size_t i = 0; i < ELEMENTSOF(markers) && !done; i++) {
                        size_t ml = strlen(markers[i]);

                        if (strncasecmp(p, markers[i], ml) == 0) {
                                fwrite(p, 1, ml, f);
                                p += ml;
                                while (*p == ' ')
                                        p++;
                                fputs("***", f);
                                p += secret_len(p);
                                done = true;
                        }
                }
                if (done)
                        continue;
                /* scheme://user:secret@host */
                if (strncmp(p, "://", 3) == 0) {
                        const char *at = p + 3, *colon = NULL;

                        while (*at && *at != '@' && *at != '/' && !isspace((unsigned char) *at)) {
                                if (*at == ':' && !colon)
                                        colon = at;
                                at++;
                        }
                        if (*at == '@' && colon) {
                                fwrite(p, 1, (size_t) (colon + 1 - p), f);
                                fputs("***", f);
                                p = at;
                                continue;
                        }
                }
                fputc(*p++, f);
        }
        if (fclose(f) != 0)
                return NULL;
        return TAKE_PTR(out);
}

int log_format_text(const struct log_record *r, char **ret) {
        _cleanup_free_ char *stamp = format_stamp(r->realtime), *lvl = NULL;
        char *s;

        if (!stamp)
                return -ENOMEM;
        lvl = strdup(log_level_to_string(r->level));
        if (!lvl)
                return -ENOMEM;
        for (char *c = lvl; *c; c++)
                *c = (char) toupper((unsigned char) *c);
        s = strdup_printf("%s %-7s %s%s%s%s%s", stamp, lvl,
                          r->node ? r->node : "", r->node ? " " : "",
                          r->event ? r->event : "", r->event ? ": " : "",
                          strempty(r->message));
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int log_format_json(const struct log_record *r, char **ret) {
        _cleanup_free_ char *stamp = format_stamp(r->realtime), *msg = NULL, *node = NULL, *event = NULL, *prog = NULL;
        char *s;

        if (!stamp)
                return -ENOMEM;
        if (json_escape(strempty(r->message), &msg) < 0 ||
            (r->node && json_escape(r->node, &node) < 0) ||
            (r->event && json_escape(r->event, &event) < 0) ||
            json_escape(r->program ? r->program : "pglease", &prog) < 0)
                return -ENOMEM;
        s = strdup_printf("{\"time\":\"%s\",\"level\":\"%s\",\"program\":%s%s%s%s%s,\"msg\":%s}",
                          stamp, log_level_to_string(r->level), prog,
                          node ? ",\"node\":" : "", node ? node : "",
                          event ? ",\"event\":" : "", event ? event : "", msg);
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

bool log_journal_wanted(void) {
        const char *js = getenv("JOURNAL_STREAM");
        struct stat st;

        if (js) {
                unsigned long long dev, ino;

                if (sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
                    fstat(STDERR_FILENO, &st) == 0 &&
                    (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino)
                        return true;
        }
        return getenv("INVOCATION_ID") && stat("/run/systemd/journal/socket", &st) == 0;
}

void logger_init(struct logger *l, const char *program, int fd) {
        *l = (struct logger) {
                .target = LOG_TARGET_STDERR,
                .format = LOG_FORMAT_TEXT,
                .min_level = LOG_LEVEL_INFO,
                .program = program,
                .fd = fd,
        };
}

int logger_set_node(struct logger *l, const char *node) {
        char *n;

        if (l->node)
                return node && streq(l->node, node) ? 0 : -EBUSY;
        if (!node)
                return 0;
        n = strdup(node);
        if (!n)
                return -ENOMEM;
        l->node = n;
        return 0;
}

void logger_done(struct logger *l) {
        free(l->node);
        l->node = NULL;
}

static int journal_priority(enum log_level l) {
        switch (l) {
        case LOG_LEVEL_DEBUG:
                return LOG_DEBUG;
        case LOG_LEVEL_INFO:
                return LOG_INFO;
        case LOG_LEVEL_WARNING:
                return LOG_WARNING;
        default:
                return LOG_ERR;
        }
}

void log_writev(const struct logger *l, usec_t realtime, enum log_level level, const char *event,
                const char *fmt, va_list ap) {
        _cleanup_free_ char *raw = NULL, *msg = NULL, *line = NULL;
        struct log_record r;
        size_t len;

        if (level < l->min_level)
                return;
        if (vasprintf(&raw, fmt, ap) < 0)
                return;
        /* Never a password in a log line, whatever a caller formatted. */
        msg = log_redact(raw);
        if (!msg)
                return;
        if (l->target == LOG_TARGET_JOURNAL) {
                sd_journal_send("MESSAGE=%s%s%s", event ? event : "", event ? ": " : "", msg,
                                "PRIORITY=%i", journal_priority(level),
                                "SYSLOG_IDENTIFIER=%s", l->program ? l->program : "pglease",
                                "NODE=%s", strempty(l->node),
                                "EVENT=%s", strempty(event),
                                NULL);
                return;
        }
        r = (struct log_record) {
                .level = level,
                .realtime = realtime,
                .program = l->program,
                .node = l->node,
                .event = event,
                .message = msg,
        };
        if ((l->format == LOG_FORMAT_JSON ? log_format_json(&r, &line) : log_format_text(&r, &line)) < 0)
                return;
        /* One write() per line: the threads sharing the logger must not
         * interleave parts of their lines (dprintf() may write in pieces). */
        len = strlen(line);
        line[len] = '\n';
        (void) write_all(l->fd, line, len + 1);
}

void log_write(const struct logger *l, usec_t realtime, enum log_level level, const char *event,
               const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        log_writev(l, realtime, level, event, fmt, ap);
        va_end(ap);
}
