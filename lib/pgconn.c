/* pgconn.c: libpq helpers: connections that always carry connect_timeout,
 * application_name and statement_timeout, parameterised queries, LSNs, and
 * the status query the agent observes a server with. */
#include <ctype.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "clock.h"
#include "pgconn.h"
#include "util.h"

#define PGCONN_DEFAULT_APPLICATION_NAME "pglease"

PGconn *pgconn_close(PGconn *c) {
        if (c)
                PQfinish(c);
        return NULL;
}

PGresult *pgresult_clear(PGresult *r) {
        if (r)
                PQclear(r);
        return NULL;
}

static void conninfo_options_freep(PQconninfoOption **o) {
        if (*o)
                PQconninfoFree(*o);
        *o = NULL;
}

/* libpq error messages span several lines (one per host tried, plus hints
 * indented with a tab); a log line wants one. */
static char *one_line(const char *s) {
        _cleanup_free_ char *copy = strdup(strempty(s));
        char *out, *o;

        if (!copy)
                return NULL;
        out = malloc(strlen(copy) * 2 + 1);
        if (!out)
                return NULL;
        o = out;
        for (char *p = strstrip(copy); *p; p++) {
                if (*p == '\n' || *p == '\r') {
                        while (p[1] == '\n' || p[1] == '\r' || p[1] == '\t' || p[1] == ' ')
                                p++;
                        *o++ = ';';
                        *o++ = ' ';
                } else if (*p == '\t')
                        *o++ = ' ';
                else
                        *o++ = *p;
        }
        *o = '\0';
        return out;
}

static int set_clean_error(char **reterr_msg, const char *prefix, const char *libpq_msg) {
        _cleanup_free_ char *line = NULL, *redacted = NULL;

        if (!reterr_msg)
                return 0;
        line = one_line(libpq_msg);
        if (!line)
                return -ENOMEM;
        redacted = pgconn_redact(line);
        if (!redacted)
                return -ENOMEM;
        return set_error_msg(reterr_msg, "%s%s", strempty(prefix),
                             isempty(redacted) ? "unknown error" : redacted);
}

static bool contains(const char *haystack, const char *needle) {
        return strcasestr(haystack, needle) != NULL;
}

/* libpq reports a failed connection only as text; these phrases are stable
 * across libpq 10..17 and are what PQerrorMessage() prints in every locale
 * we run under (the agent sets no lc_messages for the client side). */
static int connect_error_to_errno(PGconn *c) {
        const char *m = strempty(PQerrorMessage(c));

        if (PQconnectionNeedsPassword(c) ||
            contains(m, "authentication failed") ||
            contains(m, "no password supplied") ||
            contains(m, "no pg_hba.conf entry") ||
            contains(m, "permission denied"))
                return -EACCES;
        if (contains(m, "timeout expired") || contains(m, "timed out"))
                return -ETIMEDOUT;
        if (contains(m, "Connection refused") ||
            contains(m, "No such file or directory"))
                return -ECONNREFUSED;
        return -EIO;
}

static void notice_discard(void *userdata, const char *message) {
}

static int usec_to_whole_seconds(usec_t u) {
        usec_t s;

        if (u == USEC_INFINITY)
                return INT_MAX;
        s = (u + USEC_PER_SEC - 1) / USEC_PER_SEC;
        return (int) MIN(MAX(s, (usec_t) 1), (usec_t) INT_MAX);
}

static int usec_to_msec(usec_t u) {
        usec_t ms;

        if (u == 0 || u == USEC_INFINITY)
                return 0;
        ms = (u + USEC_PER_MSEC - 1) / USEC_PER_MSEC;
        return (int) MIN(ms, (usec_t) INT_MAX);
}

/* The conninfo is parsed and rebuilt as keyword/value arrays rather than
 * appended to as text, so that a URI works too, the caller's own options=
 * are kept (ours goes last: for a repeated -c the last one wins), and
 * nothing in the caller's string can inject a keyword. */
static int build_connect_params(const PQconninfoOption *parsed, const char *application_name,
                                const char *connect_timeout, const char *options_extra,
                                const char ***ret_keys, const char ***ret_values,
                                char **ret_options) {
        _cleanup_free_ const char **keys = NULL, **values = NULL;
        _cleanup_free_ char *options = NULL;
        const char *old_options = NULL, *old_application_name = NULL;
        size_t n = 0, i = 0;

        for (const PQconninfoOption *o = parsed; o->keyword; o++) {
                n++;
                if (streq(o->keyword, "options"))
                        old_options = o->val;
                else if (streq(o->keyword, "application_name"))
                        old_application_name = o->val;
        }

        if (isempty(old_options))
                options = strdup(options_extra);
        else
                options = strdup_printf("%s %s", old_options, options_extra);
        if (!options)
                return -ENOMEM;

        keys = calloc(n + 4, sizeof(char *));
        values = calloc(n + 4, sizeof(char *));
        if (!keys || !values)
                return -ENOMEM;

        for (const PQconninfoOption *o = parsed; o->keyword; o++) {
                if (!o->val || streq(o->keyword, "options") ||
                    streq(o->keyword, "connect_timeout") ||
                    streq(o->keyword, "application_name"))
                        continue;
                keys[i] = o->keyword;
                values[i++] = o->val;
        }
        keys[i] = "connect_timeout";
        values[i++] = connect_timeout;
        keys[i] = "application_name";
        values[i++] = !isempty(application_name) ? application_name :
                      !isempty(old_application_name) ? old_application_name :
                      PGCONN_DEFAULT_APPLICATION_NAME;
        keys[i] = "options";
        values[i++] = options;
        keys[i] = NULL;
        values[i] = NULL;

        *ret_keys = TAKE_PTR(keys);
        *ret_values = TAKE_PTR(values);
        *ret_options = TAKE_PTR(options);
        return 0;
}

int pgconn_connect(const char *conninfo, const char *application_name,
                   usec_t connect_timeout, usec_t statement_timeout,
                   PGconn **ret, char **reterr_msg) {
        _cleanup_(conninfo_options_freep) PQconninfoOption *parsed = NULL;
        _cleanup_free_ const char **keys = NULL, **values = NULL;
        _cleanup_free_ char *options = NULL, *options_extra = NULL, *timeout = NULL;
        _cleanup_(pgconn_closep) PGconn *c = NULL;
        char *parse_error = NULL;
        int r;

        if (!ret)
                return -EINVAL;

        parsed = PQconninfoParse(strempty(conninfo), &parse_error);
        if (!parsed) {
                if (!parse_error)
                        return -ENOMEM;
                r = set_clean_error(reterr_msg, "invalid conninfo: ", parse_error);
                PQfreemem(parse_error);
                return r < 0 ? r : -EINVAL;
        }

        timeout = strdup_printf("%d", usec_to_whole_seconds(connect_timeout));
        options_extra = strdup_printf("-c statement_timeout=%d", usec_to_msec(statement_timeout));
        if (!timeout || !options_extra)
                return -ENOMEM;

        r = build_connect_params(parsed, application_name, timeout, options_extra,
                                 &keys, &values, &options);
        if (r < 0)
                return r;

        c = PQconnectdbParams(keys, values, /* expand_dbname= */ 0);
        if (!c)
                return -ENOMEM;
        if (PQstatus(c) != CONNECTION_OK) {
                r = connect_error_to_errno(c);
                (void) set_clean_error(reterr_msg, NULL, PQerrorMessage(c));
                return r;
        }

        /* libpq prints NOTICEs (e.g. "schema already exists, skipping") to
         * stderr by default; a library stays silent. */
        PQsetNoticeProcessor(c, notice_discard, NULL);
        *ret = TAKE_PTR(c);
        return 0;
}

int pgconn_probe(const char *conninfo, const char *application_name, usec_t timeout) {
        _cleanup_(conninfo_options_freep) PQconninfoOption *parsed = NULL;
        _cleanup_free_ const char **keys = NULL, **values = NULL;
        _cleanup_free_ char *options = NULL, *whole = NULL;
        _cleanup_(pgconn_closep) PGconn *c = NULL;
        usec_t deadline = clock_now(&clock_system) + timeout;
        PostgresPollingStatusType st = PGRES_POLLING_WRITING;
        int r;

        parsed = PQconninfoParse(strempty(conninfo), NULL);
        if (!parsed)
                return -EINVAL;
        whole = strdup_printf("%d", usec_to_whole_seconds(timeout));
        if (!whole)
                return -ENOMEM;
        r = build_connect_params(parsed, application_name, whole, "-c statement_timeout=1000", &keys, &values, &options);
        if (r < 0)
                return r;
        c = PQconnectStartParams(keys, values, /* expand_dbname= */ 0);
        if (!c)
                return -ENOMEM;
        if (PQstatus(c) == CONNECTION_BAD)
                return connect_error_to_errno(c);
        /* libpq's own connect_timeout counts whole seconds (at least 2);
         * this deadline is ours. */
        for (;;) {
                struct pollfd p = { .fd = PQsocket(c) };
                usec_t now = clock_now(&clock_system);
                int n;

                if (st == PGRES_POLLING_OK)
                        return 0;
                if (st == PGRES_POLLING_FAILED)
                        return connect_error_to_errno(c);
                if (p.fd < 0)
                        return -EIO;
                if (now >= deadline)
                        return -ETIMEDOUT;
                p.events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
                n = poll(&p, 1, (int) MAX((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC, (usec_t) 1));
                if (n < 0 && errno != EINTR)
                        return -errno;
                if (n > 0)
                        st = PQconnectPoll(c);
        }
}

static int result_error(const PGresult *res, char **reterr_msg) {
        const char *sqlstate, *primary;

        sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
        if (primary && sqlstate) {
                _cleanup_free_ char *prefix = strdup_printf("SQLSTATE %s: ", sqlstate);
                (void) set_clean_error(reterr_msg, prefix, primary);
        } else
                (void) set_clean_error(reterr_msg, NULL, PQresultErrorMessage(res));

        /* 57014 is query_canceled, which is what statement_timeout raises. */
        if (sqlstate && streq(sqlstate, "57014"))
                return -ETIMEDOUT;
        return -EIO;
}

/* The statement_timeout this connection asked for (the last
 * "statement_timeout=" of its options: ours comes last); 0 when none. */
static usec_t connection_statement_timeout(PGconn *c) {
        const char *o = PQoptions(c), *last = NULL;
        unsigned long ms;

        for (const char *p = o; p && (p = strstr(p, "statement_timeout=")); p++)
                last = p;
        if (!last)
                return 0;
        ms = strtoul(last + strlen("statement_timeout="), NULL, 10);
        return (usec_t) ms * USEC_PER_MSEC;
}

/* The server enforces statement_timeout, but a server that does not run
 * (a stopped backend, a dead network) enforces nothing: past the budget the
 * connection is given up (shut down, so that libpq marks it bad and the
 * caller's cache reconnects) instead of stalling the agent for ever. */
#define PGCONN_CLIENT_GRACE (1 * USEC_PER_SEC)

static int wait_result(PGconn *c, PGresult **ret, char **reterr_msg) {
        usec_t budget = connection_statement_timeout(c), deadline = 0;
        PGresult *last = NULL, *res;

        if (budget > 0)
                deadline = clock_now(&clock_system) + budget + PGCONN_CLIENT_GRACE;
        for (;;) {
                while (PQisBusy(c)) {
                        struct pollfd p = { .fd = PQsocket(c), .events = POLLIN };
                        usec_t now = clock_now(&clock_system);
                        int ms = -1;

                        if (deadline > 0) {
                                if (now >= deadline) {
                                        PQclear(last);
                                        (void) shutdown(PQsocket(c), SHUT_RDWR);
                                        (void) PQconsumeInput(c);
                                        set_error_msg(reterr_msg, "no answer from the server within statement_timeout + %us: connection dropped",
                                                      (unsigned) (PGCONN_CLIENT_GRACE / USEC_PER_SEC));
                                        return -ETIMEDOUT;
                                }
                                ms = (int) MIN((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC, (usec_t) INT_MAX);
                        }
                        if (poll(&p, 1, ms) < 0 && errno != EINTR) {
                                PQclear(last);
                                return -errno;
                        }
                        if (!PQconsumeInput(c))
                                break;
                }
                res = PQgetResult(c);
                if (!res)
                        break;
                PQclear(last);
                last = res;
        }
        if (!last) {
                (void) set_clean_error(reterr_msg, NULL, PQerrorMessage(c));
                return PQstatus(c) == CONNECTION_OK ? -ENOMEM : -EIO;
        }
        *ret = last;
        return 0;
}

int pgconn_exec(PGconn *c, const char *sql, int n_params, const char *const *params,
                PGresult **ret, char **reterr_msg) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        ExecStatusType status;
        int r;

        if (!c || !sql || n_params < 0 || (n_params > 0 && !params))
                return -EINVAL;

        if (!PQsendQueryParams(c, sql, n_params, NULL, params, NULL, NULL, 0)) {
                (void) set_clean_error(reterr_msg, NULL, PQerrorMessage(c));
                return PQstatus(c) == CONNECTION_OK ? -EBUSY : -EIO;
        }
        r = wait_result(c, &res, reterr_msg);
        if (r < 0)
                return r;

        status = PQresultStatus(res);
        if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
                if (ret)
                        *ret = TAKE_PTR(res);
                return 0;
        }
        return result_error(res, reterr_msg);
}

/* Migration files hold several statements, which the extended protocol of
 * PQexecParams() cannot carry in one call; they come from the agent's own
 * installed sql/ directory and take no parameters, so the simple protocol
 * is safe for them and for nothing else. */
int pgconn_exec_script(PGconn *c, const char *script, char **reterr_msg) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        ExecStatusType status;
        int r;

        if (!c || !script)
                return -EINVAL;
        if (!PQsendQuery(c, script)) {
                (void) set_clean_error(reterr_msg, NULL, PQerrorMessage(c));
                return PQstatus(c) == CONNECTION_OK ? -EBUSY : -EIO;
        }
        r = wait_result(c, &res, reterr_msg);
        if (r < 0)
                return r;
        status = PQresultStatus(res);
        if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK || status == PGRES_EMPTY_QUERY)
                return 0;
        return result_error(res, reterr_msg);
}

static bool conninfo_value_needs_quotes(const char *v) {
        if (*v == '\0')
                return true;
        for (; *v; v++)
                if (isspace((unsigned char) *v) || *v == '\'' || *v == '\\' || *v == '=')
                        return true;
        return false;
}

/* libpq's keyword/value syntax: a value with spaces, quotes, backslashes
 * (or that is empty) goes in single quotes, with ' and \ escaped by a
 * backslash. */
static int append_conninfo_pair(FILE *f, const char *key, const char *value) {
        if (ftell(f) > 0)
                fputc(' ', f);
        fputs(key, f);
        fputc('=', f);
        if (!conninfo_value_needs_quotes(value)) {
                fputs(value, f);
                return 0;
        }
        fputc('\'', f);
        for (const char *p = value; *p; p++) {
                if (*p == '\'' || *p == '\\')
                        fputc('\\', f);
                fputc(*p, f);
        }
        fputc('\'', f);
        return 0;
}

char *pgconn_build_conninfo(const char *const *keys_values) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f;

        if (!keys_values)
                return NULL;
        f = open_memstream(&buf, &size);
        if (!f)
                return NULL;
        for (size_t i = 0; keys_values[i]; i += 2) {
                const char *value = keys_values[i + 1];

                if (isempty(value))
                        continue;
                (void) append_conninfo_pair(f, keys_values[i], value);
        }
        if (fflush(f) != 0 || ferror(f)) {
                fclose(f);
                free(buf);
                return NULL;
        }
        fclose(f);
        return buf;
}

/* Returns the end of a conninfo value starting at p: a quoted value runs to
 * its closing quote (backslash escapes honoured), and the doubled-quote form
 * that appears inside postgresql.auto.conf (''a b'') runs to the closing
 * ''; a bare value runs to the next blank or separator. */
static const char *conninfo_value_end(const char *p) {
        if (p[0] == '\'' && p[1] == '\'') {
                const char *e = strstr(p + 2, "''");
                return e ? e + 2 : p + strlen(p);
        }
        if (p[0] == '\'') {
                for (p++; *p && *p != '\''; p++)
                        if (*p == '\\' && p[1])
                                p++;
                return *p ? p + 1 : p;
        }
        while (*p && !isspace((unsigned char) *p) && *p != '&' && *p != '\'' && *p != '"')
                p++;
        return p;
}

static bool is_keyword_boundary(const char *start, const char *p) {
        if (p == start)
                return true;
        return isspace((unsigned char) p[-1]) || strchr("?&'\",;(", p[-1]);
}

/* Where the password of a URI's userinfo (scheme://user:PASSWORD@host)
 * starts, and its length; libpq's own parser ends the userinfo at the first
 * '@' before any '/'. */
static bool uri_password_span(const char *scheme_end, const char **ret_start, size_t *ret_len) {
        const char *auth = scheme_end + 3, *at, *colon;

        /* A plain loop: GCC 12's -Wstringop-overread misfires on strcspn()
         * here under the sanitizers at -O2. */
        for (at = auth; *at && *at != '@' && *at != '/'; at++)
                ;
        if (*at != '@')
                return false;
        colon = memchr(auth, ':', at - auth);
        if (!colon)
                return false;
        *ret_start = colon + 1;
        *ret_len = at - (colon + 1);
        return true;
}

char *pgconn_redact(const char *s) {
        char *buf = NULL;
        size_t size = 0;
        const char *p;
        FILE *f;

        if (!s)
                return NULL;
        f = open_memstream(&buf, &size);
        if (!f)
                return NULL;
        for (p = s; *p;) {
                const char *start;
                size_t len;

                if (p[0] == ':' && p[1] == '/' && p[2] == '/' && uri_password_span(p, &start, &len)) {
                        fwrite(p, 1, start - p, f);
                        fputs("***", f);
                        p = start + len;
                        continue;
                }
                if (strncasecmp(p, "password", 8) == 0 && is_keyword_boundary(s, p)) {
                        const char *q = p + 8;

                        while (*q == ' ' || *q == '\t')
                                q++;
                        if (*q == '=') {
                                q++;
                                while (*q == ' ' || *q == '\t')
                                        q++;
                                fwrite(p, 1, q - p, f);
                                fputs("***", f);
                                p = conninfo_value_end(q);
                                continue;
                        }
                }
                fputc(*p++, f);
        }
        if (fflush(f) != 0 || ferror(f)) {
                fclose(f);
                free(buf);
                return NULL;
        }
        fclose(f);
        return buf;
}

static int parse_hex32(const char *s, size_t len, uint32_t *ret) {
        uint32_t v = 0;

        if (len == 0 || len > 8)
                return -EINVAL;
        for (size_t i = 0; i < len; i++) {
                int d;

                if (s[i] >= '0' && s[i] <= '9')
                        d = s[i] - '0';
                else if (s[i] >= 'a' && s[i] <= 'f')
                        d = s[i] - 'a' + 10;
                else if (s[i] >= 'A' && s[i] <= 'F')
                        d = s[i] - 'A' + 10;
                else
                        return -EINVAL;
                v = (v << 4) | (uint32_t) d;
        }
        *ret = v;
        return 0;
}

int pg_lsn_parse(const char *s, uint64_t *ret) {
        const char *slash;
        uint32_t hi, lo;

        if (isempty(s) || !ret)
                return -EINVAL;
        slash = strchr(s, '/');
        if (!slash)
                return -EINVAL;
        if (parse_hex32(s, slash - s, &hi) < 0 ||
            parse_hex32(slash + 1, strlen(slash + 1), &lo) < 0)
                return -EINVAL;
        *ret = ((uint64_t) hi << 32) | lo;
        return 0;
}

char *pg_lsn_format(uint64_t lsn) {
        return strdup_printf("%" PRIX32 "/%" PRIX32, (uint32_t) (lsn >> 32), (uint32_t) lsn);
}

void pg_node_status_done(struct pg_node_status *s) {
        if (!s)
                return;
        free(s->upstream_host);
        s->upstream_host = NULL;
}

/* One round trip for everything observe() needs. Timeline choice:
 * - primary: the first 8 hex digits of pg_walfile_name(pg_current_wal_lsn()),
 *   i.e. the timeline WAL is being written on now. pg_control_checkpoint()
 *   would still show the old timeline after a promotion until the next
 *   checkpoint completes, which would make a fresh primary look behind.
 * - standby: pg_stat_wal_receiver.received_tli while a receiver runs (the
 *   timeline being streamed, which is what candidates compare); without a
 *   receiver (its primary died), the timeline of the newest WAL segment in
 *   pg_wal, which is what it received last (the control file's timelines
 *   lag until the next restartpoint, and made a standby that had followed a
 *   new timeline look as if it had not); then the minimum recovery point's
 *   timeline, and last the latest restartpoint's.
 * The pg_current_* and pg_walfile_name() calls raise errors during recovery,
 * so they sit inside CASE branches that are evaluated only on a primary.
 * Replay lag is 0 when everything received has been replayed, since
 * pg_last_xact_replay_timestamp() stands still while the primary is idle. */
static const char status_query[] =
        "SELECT r.in_recovery,"
        " CASE WHEN r.in_recovery"
        "  THEN to_hex(COALESCE(w.received_tli,"
        "   (SELECT max(('x' || lpad(substr(name, 1, 8), 16, '0'))::bit(64)::bigint) FROM pg_ls_waldir()"
        "     WHERE name ~ '^[0-9A-F]{24}$'),"
        "   NULLIF(rc.min_recovery_end_timeline, 0), cp.timeline_id))"
        "  ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END,"
        " sys.system_identifier::text,"
        " CASE WHEN NOT r.in_recovery THEN pg_current_wal_flush_lsn() END,"
        " CASE WHEN r.in_recovery THEN pg_last_wal_receive_lsn() END,"
        " CASE WHEN r.in_recovery THEN pg_last_wal_replay_lsn() END,"
        " COALESCE(w.status = 'streaming', false),"
        " w.sender_host,"
        " w.sender_port,"
        " CASE WHEN NOT r.in_recovery"
        "        OR pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn()"
        "        OR pg_last_xact_replay_timestamp() IS NULL THEN 0"
        "  ELSE GREATEST(0, (extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000000)::bigint)"
        " END"
        " FROM (SELECT pg_is_in_recovery() AS in_recovery) r"
        " CROSS JOIN pg_control_system() sys"
        " CROSS JOIN pg_control_checkpoint() cp"
        " CROSS JOIN pg_control_recovery() rc"
        " LEFT JOIN pg_stat_wal_receiver w ON true";

static int parse_lsn_field(const PGresult *res, int col, uint64_t *ret) {
        if (PQgetisnull(res, 0, col)) {
                *ret = PG_LSN_INVALID;
                return 0;
        }
        return pg_lsn_parse(PQgetvalue(res, 0, col), ret);
}

static int parse_uint64_field(const PGresult *res, int col, int base, uint64_t *ret) {
        const char *v;
        char *end;

        if (PQgetisnull(res, 0, col)) {
                *ret = 0;
                return 0;
        }
        v = PQgetvalue(res, 0, col);
        if (isempty(v) || *v == '-')
                return -EINVAL;
        errno = 0;
        *ret = strtoull(v, &end, base);
        if (errno != 0 || *end != '\0')
                return -EINVAL;
        return 0;
}

static int status_from_result(const PGresult *res, struct pg_node_status *s) {
        uint64_t tli, port, lag;

        if (PQntuples(res) != 1 || PQnfields(res) != 10)
                return -EIO;
        s->in_recovery = streq(PQgetvalue(res, 0, 0), "t");
        if (parse_uint64_field(res, 1, 16, &tli) < 0 || tli > UINT32_MAX ||
            parse_uint64_field(res, 2, 10, &s->system_identifier) < 0 ||
            parse_lsn_field(res, 3, &s->current_lsn) < 0 ||
            parse_lsn_field(res, 4, &s->receive_lsn) < 0 ||
            parse_lsn_field(res, 5, &s->replay_lsn) < 0 ||
            parse_uint64_field(res, 8, 10, &port) < 0 || port > 65535 ||
            parse_uint64_field(res, 9, 10, &lag) < 0)
                return -EIO;
        s->timeline = (uint32_t) tli;
        s->wal_receiver_streaming = streq(PQgetvalue(res, 0, 6), "t");
        s->upstream_port = (int) port;
        s->replay_lag = lag;
        if (!PQgetisnull(res, 0, 7)) {
                s->upstream_host = strdup(PQgetvalue(res, 0, 7));
                if (!s->upstream_host)
                        return -ENOMEM;
        }
        return 0;
}

int pgconn_query_status(PGconn *c, struct pg_node_status *ret, char **reterr_msg) {
        _cleanup_(pgresult_clearp) PGresult *res = NULL;
        struct pg_node_status s = {};
        int r;

        if (!c || !ret)
                return -EINVAL;
        r = pgconn_exec(c, status_query, 0, NULL, &res, reterr_msg);
        if (r < 0)
                return r;
        r = status_from_result(res, &s);
        if (r < 0) {
                pg_node_status_done(&s);
                if (r == -EIO)
                        (void) set_error_msg(reterr_msg, "unexpected result from status query");
                return r;
        }
        *ret = s;
        return 0;
}
