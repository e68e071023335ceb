/* control.c: the agent's control socket: a non-blocking line-delimited JSON
 * server inside the agent's sd_event loop, and the client agentctl uses. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "util.h"

struct control_conn {
        struct control_server *server;
        int fd;
        sd_event_source *io;
        sd_event_source *idle;           /* the request deadline (CONTROL_REQUEST_TIMEOUT) */
        sd_event_source *more;           /* the next buffered request, at the next loop turn */
        char *in;
        size_t in_len, in_alloc;
        char *out;
        size_t out_len, out_off, out_alloc;
        bool read_eof;
        bool close_after_flush;
        struct control_reply *pending;   /* the request being answered */
        struct control_conn *prev, *next;
};

struct control_reply {
        struct control_server *server;
        struct control_conn *conn;       /* NULL once the client has gone */
        bool kept;
        bool expiring, answered;
        sd_event_source *timer;
        control_expire_fn expire;
        void *userdata;
        struct control_reply *prev, *next; /* the server's kept replies */
};

struct control_server {
        sd_event *event;
        int fd;
        sd_event_source *accept_source;
        char *path;
        dev_t dev;
        ino_t ino;
        control_handler_fn handler;
        void *userdata;
        struct control_conn *conns;
        size_t n_conns;
        struct control_reply *kept;
};

static inline void json_deletep(cJSON **j) {
        if (*j)
                cJSON_Delete(*j);
}

#define LIST_PREPEND(head, item)                \
        do {                                    \
                (item)->prev = NULL;            \
                (item)->next = (head);          \
                if (head)                       \
                        (head)->prev = (item);  \
                (head) = (item);                \
        } while (0)

#define LIST_REMOVE(head, item)                         \
        do {                                            \
                if ((item)->prev)                       \
                        (item)->prev->next = (item)->next; \
                else                                    \
                        (head) = (item)->next;          \
                if ((item)->next)                       \
                        (item)->next->prev = (item)->prev; \
                (item)->prev = (item)->next = NULL;     \
        } while (0)

int control_socket_path(const char *control_socket, const char *run_dir, char **ret) {
        char *p;

        if (!isempty(control_socket))
                p = strdup(control_socket);
        else if (!isempty(run_dir))
                p = strdup_printf("%s/agent.sock", run_dir);
        else
                return -EINVAL;
        if (!p)
                return -ENOMEM;
        *ret = p;
        return 0;
}

static int sockaddr_for(const char *path, struct sockaddr_un *ret, socklen_t *ret_len) {
        size_t l = strlen(path);

        if (l == 0)
                return -EINVAL;
        if (l >= sizeof ret->sun_path)
                return -ENAMETOOLONG;
        *ret = (struct sockaddr_un) { .sun_family = AF_UNIX };
        memcpy(ret->sun_path, path, l);
        *ret_len = (socklen_t) (offsetof(struct sockaddr_un, sun_path) + l + 1);
        return 0;
}

/* ---- the server's connections ---- */

static int buf_append(char **buf, size_t *len, size_t *alloc, const char *data, size_t n) {
        if (*len + n + 1 > *alloc) {
                size_t a = MAX(*alloc * 2, *len + n + 1);
                char *b = realloc(*buf, MAX(a, (size_t) 256));

                if (!b)
                        return -ENOMEM;
                *buf = b;
                *alloc = MAX(a, (size_t) 256);
        }
        memcpy(*buf + *len, data, n);
        *len += n;
        (*buf)[*len] = '\0';
        return 0;
}

/* The input buffer is NULL until the first byte arrives, and memchr(NULL,
 * ..., 0) is undefined (found by fuzz-control: a client that sends nothing). */
static char *buf_find_newline(char *buf, size_t len) {
        return len > 0 ? memchr(buf, '\n', len) : NULL;
}

static void conn_free(struct control_conn *c) {
        if (!c)
                return;
        if (c->pending) {
                /* A kept reply outlives its client: its owner answers it
                 * later and the answer is dropped. */
                c->pending->conn = NULL;
                c->pending = NULL;
        }
        LIST_REMOVE(c->server->conns, c);
        c->server->n_conns--;
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->idle);
        sd_event_source_disable_unref(c->more);
        safe_close(c->fd);
        free(c->in);
        free(c->out);
        free(c);
}

static int conn_queue_json(struct control_conn *c, cJSON *response) {
        _cleanup_free_ char *text = NULL;
        int r;

        if (!cJSON_GetObjectItemCaseSensitive(response, "ok"))
                cJSON_AddBoolToObject(response, "ok", true);
        cJSON_DeleteItemFromObjectCaseSensitive(response, "version");
        if (!cJSON_AddNumberToObject(response, "version", CONTROL_PROTOCOL_VERSION))
                return -ENOMEM;
        text = cJSON_PrintUnformatted(response);
        if (!text)
                return -ENOMEM;
        r = buf_append(&c->out, &c->out_len, &c->out_alloc, text, strlen(text));
        if (r < 0)
                return r;
        return buf_append(&c->out, &c->out_len, &c->out_alloc, "\n", 1);
}

static cJSON *error_object(const char *fmt, va_list ap) _printf_(1, 0);
static cJSON *error_object(const char *fmt, va_list ap) {
        _cleanup_free_ char *msg = NULL;
        cJSON *o;

        if (vasprintf(&msg, fmt, ap) < 0)
                return NULL;
        o = cJSON_CreateObject();
        if (!o)
                return NULL;
        if (!cJSON_AddBoolToObject(o, "ok", false) || !cJSON_AddStringToObject(o, "error", msg)) {
                cJSON_Delete(o);
                return NULL;
        }
        return o;
}

static int conn_queue_error(struct control_conn *c, const char *fmt, ...) _printf_(2, 3);
static int conn_queue_error(struct control_conn *c, const char *fmt, ...) {
        cJSON *o;
        va_list ap;
        int r;

        va_start(ap, fmt);
        o = error_object(fmt, ap);
        va_end(ap);
        if (!o)
                return -ENOMEM;
        r = conn_queue_json(c, o);
        cJSON_Delete(o);
        return r;
}

static bool conn_has_request(const struct control_conn *c) {
        return c->in_len > 0 && memchr(c->in, '\n', c->in_len);
}

/* The client's time for its next request starts at connect and after each
 * answer; bytes trickling in do not extend it. */
static void conn_arm_deadline(struct control_conn *c) {
        uint64_t now = 0;

        (void) sd_event_now(c->server->event, CLOCK_MONOTONIC, &now);
        (void) sd_event_source_set_time(c->idle, now + CONTROL_REQUEST_TIMEOUT);
}

static void conn_update(struct control_conn *c) {
        uint32_t events = 0;
        bool queued = conn_has_request(c);
        int r;

        /* Read more only when nothing is waiting to be served: pipelined
         * requests stay in the client's socket buffer (back-pressure). */
        if (!c->read_eof && !c->close_after_flush)
                events |= c->pending || queued ? EPOLLRDHUP : EPOLLIN | EPOLLRDHUP;
        if (c->out_off < c->out_len)
                events |= EPOLLOUT;
        r = sd_event_source_set_io_events(c->io, events);
        if (r >= 0 && c->idle)
                (void) sd_event_source_set_enabled(c->idle, c->pending ? SD_EVENT_OFF : SD_EVENT_ONESHOT);
        if (r >= 0 && c->more)
                (void) sd_event_source_set_enabled(c->more, queued && !c->pending && !c->close_after_flush ?
                                                                SD_EVENT_ONESHOT : SD_EVENT_OFF);
}

static void reply_free(struct control_reply *rp) {
        if (rp->kept)
                LIST_REMOVE(rp->server->kept, rp);
        sd_event_source_disable_unref(rp->timer);
        free(rp);
}

/* One complete request line: answered now, or kept by the handler. */
static void conn_dispatch(struct control_conn *c, char *line) {
        _cleanup_(json_deletep) cJSON *req = NULL;
        const cJSON *version, *command;
        struct control_reply *rp;

        req = cJSON_ParseWithOpts(line, NULL, true);
        if (!req || !cJSON_IsObject(req)) {
                (void) conn_queue_error(c, "malformed request: expected one JSON object per line");
                c->close_after_flush = true;
                return;
        }
        version = cJSON_GetObjectItemCaseSensitive(req, "version");
        if (!cJSON_IsNumber(version) || version->valuedouble != CONTROL_PROTOCOL_VERSION) {
                if (cJSON_IsNumber(version))
                        (void) conn_queue_error(c, "unsupported protocol version %g: this agent speaks version %d",
                                                version->valuedouble, CONTROL_PROTOCOL_VERSION);
                else
                        (void) conn_queue_error(c, "missing protocol version: this agent speaks version %d",
                                                CONTROL_PROTOCOL_VERSION);
                return;
        }
        command = cJSON_GetObjectItemCaseSensitive(req, "command");
        if (!cJSON_IsString(command) || isempty(command->valuestring)) {
                (void) conn_queue_error(c, "malformed request: \"command\" must be a string");
                return;
        }
        rp = calloc(1, sizeof *rp);
        if (!rp) {
                (void) conn_queue_error(c, "out of memory");
                return;
        }
        rp->server = c->server;
        rp->conn = c;
        c->pending = rp;
        c->server->handler(rp, command->valuestring, req, c->server->userdata);
        if (c->pending == rp && !rp->kept)
                (void) control_reply_error(rp, "internal error: command %s was not answered", command->valuestring);
}

/* Dispatches one complete line buffered: one request per connection per
 * turn of the loop, so that no client holds the loop for more than one
 * answer; the next waits for the `more` source (next turn). */
static void conn_process_input(struct control_conn *c) {
        bool served = false;

        while (!c->pending && !c->close_after_flush && !served) {
                char *nl = buf_find_newline(c->in, c->in_len);
                size_t n;

                if (!nl) {
                        if (c->in_len > CONTROL_LINE_MAX) {
                                (void) conn_queue_error(c, "request line longer than %u bytes", CONTROL_LINE_MAX);
                                c->close_after_flush = true;
                        }
                        return;
                }
                *nl = '\0';
                n = (size_t) (nl - c->in) + 1;
                if (n - 1 > CONTROL_LINE_MAX) {
                        (void) conn_queue_error(c, "request line longer than %u bytes", CONTROL_LINE_MAX);
                        c->close_after_flush = true;
                        return;
                }
                if (strspn(c->in, " \t\r") != n - 1) {
                        conn_dispatch(c, c->in);
                        served = true;
                }
                memmove(c->in, c->in + n, c->in_len - n);
                c->in_len -= n;
        }
}

static int conn_read(struct control_conn *c) {
        char buf[16384];

        for (;;) {
                ssize_t k;

                if (c->in_len > CONTROL_LINE_MAX + 1)
                        return 0; /* conn_process_input() reports it */
                k = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
                if (k < 0)
                        return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
                if (k == 0) {
                        c->read_eof = true;
                        return 0;
                }
                if (buf_append(&c->in, &c->in_len, &c->in_alloc, buf, (size_t) k) < 0)
                        return -ENOMEM;
        }
}

static int conn_flush(struct control_conn *c) {
        while (c->out_off < c->out_len) {
                ssize_t k = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_DONTWAIT | MSG_NOSIGNAL);

                if (k < 0)
                        return (errno == EAGAIN || errno == EINTR) ? 0 : -errno;
                c->out_off += (size_t) k;
        }
        c->out_off = c->out_len = 0;
        return 0;
}

static bool conn_finished(const struct control_conn *c) {
        if (c->out_off < c->out_len || c->pending)
                return false;
        if (c->close_after_flush)
                return true;
        /* The client finished sending and everything it asked is answered. */
        return c->read_eof && !buf_find_newline(c->in, c->in_len);
}

static void conn_serve(struct control_conn *c);

static int on_conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        struct control_conn *c = userdata;

        if (revents & (EPOLLHUP | EPOLLERR)) {
                conn_free(c);
                return 0;
        }
        if ((revents & EPOLLIN) || ((revents & EPOLLRDHUP) && !c->pending && !conn_has_request(c))) {
                if (conn_read(c) < 0) {
                        conn_free(c);
                        return 0;
                }
        } else if (revents & EPOLLRDHUP)
                c->read_eof = true;
        conn_serve(c);
        return 0;
}

static int on_conn_more(sd_event_source *s, void *userdata) {
        conn_serve(userdata);
        return 0;
}

static void conn_serve(struct control_conn *c) {
        conn_process_input(c);
        if (conn_flush(c) < 0 || conn_finished(c)) {
                conn_free(c);
                return;
        }
        conn_update(c);
}

static int on_conn_idle(sd_event_source *s, uint64_t usec, void *userdata) {
        conn_free(userdata);
        return 0;
}

/* At the limit, the oldest connection that has nothing to be answered
 * (no request buffered or in progress, nothing being sent) makes room: a
 * crowd of idle or trickling clients cannot keep agentctl out. */
static bool server_make_room(struct control_server *s) {
        static const char evicted[] = "{\"version\":1,\"ok\":false,\"code\":\"busy\",\"error\":\"closed to make room for another client (no request within the connection's turn)\"}\n";
        struct control_conn *oldest = NULL;

        for (struct control_conn *c = s->conns; c; c = c->next) {
                int unread = 0;

                /* Bytes not read yet may be a whole request: not idle. */
                if (ioctl(c->fd, FIONREAD, &unread) < 0 || unread > 0)
                        continue;
                if (!c->pending && !conn_has_request(c) && c->out_off >= c->out_len)
                        oldest = c; /* the list is newest first */
        }
        if (!oldest)
                return false;
        (void) send(oldest->fd, evicted, sizeof evicted - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        conn_free(oldest);
        return true;
}

static void server_accept_one(struct control_server *s, int fd) {
        struct control_conn *c;
        uint64_t now = 0;
        int r;

        if (s->n_conns >= CONTROL_CLIENTS_MAX && !server_make_room(s)) {
                /* agentctl maps the code to "unreachable" (exit 4). */
                static const char busy[] = "{\"version\":1,\"ok\":false,\"code\":\"busy\",\"error\":\"the agent is busy: every client slot has a request in progress\"}\n";

                (void) send(fd, busy, sizeof busy - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
                safe_close(fd);
                return;
        }
        c = calloc(1, sizeof *c);
        if (!c) {
                safe_close(fd);
                return;
        }
        c->server = s;
        c->fd = fd;
        LIST_PREPEND(s->conns, c);
        s->n_conns++;
        (void) sd_event_now(s->event, CLOCK_MONOTONIC, &now);
        r = sd_event_add_io(s->event, &c->io, fd, EPOLLIN | EPOLLRDHUP, on_conn_io, c);
        if (r >= 0)
                r = sd_event_add_time(s->event, &c->idle, CLOCK_MONOTONIC, now + CONTROL_REQUEST_TIMEOUT, 0, on_conn_idle, c);
        if (r >= 0)
                r = sd_event_add_defer(s->event, &c->more, on_conn_more, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->more, SD_EVENT_OFF);
        if (r < 0)
                conn_free(c);
}

static int on_accept(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        struct control_server *s = userdata;

        for (;;) {
                int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

                if (cfd < 0)
                        return 0; /* EAGAIN, or a client that went away: nothing to do */
                server_accept_one(s, cfd);
        }
}

/* ---- answers ---- */

int control_reply(struct control_reply *rp, cJSON *response) {
        struct control_conn *c = rp->conn;
        int r = 0;

        if (!c)
                r = -ENOTCONN;
        else {
                c->pending = NULL;
                if (!response)
                        r = conn_queue_error(c, "out of memory");
                else
                        r = conn_queue_json(c, response);
                if (r < 0)
                        c->close_after_flush = true;
                conn_arm_deadline(c);
                /* The next request line, if any, is dispatched at the next
                 * turn of the loop (the `more` source). */
                conn_update(c);
        }
        if (response)
                cJSON_Delete(response);
        if (rp->expiring)
                rp->answered = true; /* reply_expire() frees it */
        else
                reply_free(rp);
        return r;
}

int control_reply_error(struct control_reply *rp, const char *fmt, ...) {
        cJSON *o;
        va_list ap;

        va_start(ap, fmt);
        o = error_object(fmt, ap);
        va_end(ap);
        return control_reply(rp, o);
}

/* The kept reply's time is up (or the server goes away): its owner is told
 * and may answer; otherwise the client gets `error`. Frees the handle. */
static void reply_expire(struct control_reply *rp, const char *error) {
        struct control_conn *c = rp->conn;

        rp->expiring = true;
        if (rp->expire)
                rp->expire(rp, error, rp->userdata);
        if (!rp->answered && c) {
                c->pending = NULL;
                (void) conn_queue_error(c, "%s", error);
        }
        if (c) {
                c->close_after_flush = true;
                conn_update(c);
        }
        reply_free(rp);
}

static int on_reply_timeout(sd_event_source *s, uint64_t usec, void *userdata) {
        reply_expire(userdata, "timed out waiting for the operation to finish");
        return 0;
}

int control_reply_keep(struct control_reply *rp, usec_t timeout, control_expire_fn expire, void *userdata) {
        uint64_t now = 0;
        int r;

        if (rp->kept)
                return -EALREADY;
        (void) sd_event_now(rp->server->event, CLOCK_MONOTONIC, &now);
        r = sd_event_add_time(rp->server->event, &rp->timer, CLOCK_MONOTONIC,
                              timeout == USEC_INFINITY ? UINT64_MAX : now + timeout, 0, on_reply_timeout, rp);
        if (r < 0)
                return r;
        rp->kept = true;
        rp->expire = expire;
        rp->userdata = userdata;
        LIST_PREPEND(rp->server->kept, rp);
        if (rp->conn)
                conn_update(rp->conn);
        return 0;
}

/* ---- the listening socket ---- */

/* A socket file left by an agent that died is replaced; one that still
 * answers belongs to a live agent and is not. Anything else at the path is
 * not ours to remove. */
static int remove_stale_socket(const char *path, const struct sockaddr_un *sa, socklen_t len, char **reterr_msg) {
        _cleanup_close_ int fd = -EBADF;
        struct stat st;

        if (lstat(path, &st) < 0) {
                int r = -errno;

                if (r == -ENOENT)
                        return 0;
                return set_error_msg(reterr_msg, "cannot inspect %s: %s", path, strerror(-r)), r;
        }
        if (!S_ISSOCK(st.st_mode))
                return set_error_msg(reterr_msg, "%s exists and is not a socket; not replacing it", path), -EEXIST;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        if (connect(fd, (const struct sockaddr *) sa, len) >= 0 || errno == EAGAIN)
                return set_error_msg(reterr_msg, "another agent is serving %s", path), -EADDRINUSE;
        if (unlink(path) < 0 && errno != ENOENT) {
                int r = -errno;

                return set_error_msg(reterr_msg, "cannot remove the stale socket %s: %s", path, strerror(-r)), r;
        }
        return 0;
}

static int server_bind(struct control_server *s, char **reterr_msg) {
        struct sockaddr_un sa;
        socklen_t len;
        struct stat st;
        mode_t old_umask;
        int r;

        r = sockaddr_for(s->path, &sa, &len);
        if (r < 0)
                return set_error_msg(reterr_msg, "control socket path %s is %s", s->path,
                                     r == -ENAMETOOLONG ? "too long for a Unix socket" : "empty"), r;
        r = remove_stale_socket(s->path, &sa, len, reterr_msg);
        if (r < 0)
                return r;
        s->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (s->fd < 0) {
                r = -errno;
                return set_error_msg(reterr_msg, "cannot create the control socket: %s", strerror(-r)), r;
        }
        /* Owner only, from the moment the file exists: a chmod after bind
         * would leave a window. */
        old_umask = umask(0177);
        r = bind(s->fd, (const struct sockaddr *) &sa, len) < 0 ? -errno : 0;
        umask(old_umask);
        if (r < 0)
                return set_error_msg(reterr_msg, "cannot bind the control socket %s: %s", s->path, strerror(-r)), r;
        if (stat(s->path, &st) >= 0) {
                s->dev = st.st_dev;
                s->ino = st.st_ino;
        }
        if (listen(s->fd, SOMAXCONN) < 0) {
                r = -errno;
                return set_error_msg(reterr_msg, "cannot listen on %s: %s", s->path, strerror(-r)), r;
        }
        return 0;
}

int control_server_attach(sd_event *event, const char *path, control_handler_fn handler, void *userdata,
                          struct control_server **ret, char **reterr_msg) {
        _cleanup_(control_server_detachp) struct control_server *s = NULL;
        int r;

        if (!event || !path || !handler)
                return -EINVAL;
        s = calloc(1, sizeof *s);
        if (!s)
                return -ENOMEM;
        s->fd = -EBADF;
        s->event = sd_event_ref(event);
        s->handler = handler;
        s->userdata = userdata;
        s->path = strdup(path);
        if (!s->path)
                return -ENOMEM;
        r = server_bind(s, reterr_msg);
        if (r < 0) {
                s->ino = 0; /* not ours to unlink */
                return r;
        }
        r = sd_event_add_io(event, &s->accept_source, s->fd, EPOLLIN, on_accept, s);
        if (r < 0)
                return set_error_msg(reterr_msg, "cannot watch the control socket: %s", strerror(-r)), r;
        *ret = TAKE_PTR(s);
        return 0;
}

struct control_server *control_server_detach(struct control_server *s) {
        struct stat st;

        if (!s)
                return NULL;
        while (s->kept)
                reply_expire(s->kept, "the agent is stopping");
        while (s->conns) {
                (void) conn_flush(s->conns);
                conn_free(s->conns);
        }
        sd_event_source_disable_unref(s->accept_source);
        safe_close(s->fd);
        /* Only our own socket file: a successor may already have bound
         * the path. */
        if (s->ino != 0 && s->path && stat(s->path, &st) >= 0 && st.st_dev == s->dev && st.st_ino == s->ino)
                (void) unlink(s->path);
        free(s->path);
        sd_event_unref(s->event);
        free(s);
        return NULL;
}

size_t control_server_n_connections(const struct control_server *s) {
        return s ? s->n_conns : 0;
}

/* ---- the client ---- */

static const char *errno_phrase(int r) {
        switch (-r) {
        case ENOENT:
                return "the socket file does not exist (no agent was started with this socket, or the file was removed)";
        case ECONNREFUSED:
                return "connection refused";
        case EACCES:
        case EPERM:
                return "permission denied";
        case ETIMEDOUT:
                return "timed out";
        case ECONNRESET:
        case EPIPE:
                return "the agent closed the connection";
        default:
                return strerror(-r);
        }
}

/* Waits for events on fd until deadline; -ETIMEDOUT past it. */
static int wait_fd(int fd, short events, usec_t deadline, const struct clock_ops *clock) {
        for (;;) {
                struct pollfd p = { .fd = fd, .events = events };
                usec_t now = clock_now(clock);
                int k;

                if (now >= deadline)
                        return -ETIMEDOUT;
                k = poll(&p, 1, (int) MIN((deadline - now + USEC_PER_MSEC - 1) / USEC_PER_MSEC, (usec_t) INT32_MAX));
                if (k < 0 && errno != EINTR)
                        return -errno;
                if (k > 0)
                        return 0;
        }
}

static int client_connect(const char *path, usec_t deadline, const struct clock_ops *clock, int *ret) {
        _cleanup_close_ int fd = -EBADF;
        struct sockaddr_un sa;
        socklen_t len;
        int r;

        r = sockaddr_for(path, &sa, &len);
        if (r < 0)
                return r;
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
                return -errno;
        /* A Unix socket connects at once or says EAGAIN when the backlog is
         * full: then wait a little and try again, within the deadline. */
        while (connect(fd, (const struct sockaddr *) &sa, len) < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        return -errno;
                if (clock_now(clock) >= deadline)
                        return -ETIMEDOUT;
                (void) poll(NULL, 0, 10);
        }
        *ret = TAKE_FD(fd);
        return 0;
}

static int client_send(int fd, const char *text, usec_t deadline, const struct clock_ops *clock) {
        size_t len = strlen(text), off = 0;

        while (off < len) {
                ssize_t k = send(fd, text + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);

                if (k >= 0) {
                        off += (size_t) k;
                        continue;
                }
                if (errno != EAGAIN && errno != EINTR)
                        return -errno;
                k = wait_fd(fd, POLLOUT, deadline, clock);
                if (k < 0)
                        return (int) k;
        }
        return 0;
}

static int client_receive(int fd, usec_t deadline, const struct clock_ops *clock, char **ret) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0, alloc = 0;
        char chunk[16384];

        for (;;) {
                ssize_t k = recv(fd, chunk, sizeof chunk, MSG_DONTWAIT);
                char *nl;
                int r;

                if (k == 0)
                        return -ECONNRESET;
                if (k < 0) {
                        if (errno != EAGAIN && errno != EINTR)
                                return -errno;
                        r = wait_fd(fd, POLLIN, deadline, clock);
                        if (r < 0)
                                return r;
                        continue;
                }
                if (buf_append(&buf, &len, &alloc, chunk, (size_t) k) < 0)
                        return -ENOMEM;
                nl = memchr(buf, '\n', len);
                if (nl) {
                        *nl = '\0';
                        *ret = TAKE_PTR(buf);
                        return 0;
                }
                if (len > CONTROL_RESPONSE_MAX)
                        return -EMSGSIZE;
        }
}

int control_call(const char *path, const cJSON *request, usec_t timeout, const struct clock_ops *clock,
                 cJSON **ret, char **reterr_msg) {
        _cleanup_(json_deletep) cJSON *req = NULL, *resp = NULL;
        _cleanup_free_ char *text = NULL, *line = NULL;
        _cleanup_close_ int fd = -EBADF;
        const cJSON *version;
        usec_t deadline;
        int r;

        if (!path || !request || !cJSON_IsObject(request))
                return -EINVAL;
        if (!clock)
                clock = &clock_system;
        deadline = timeout == USEC_INFINITY ? USEC_INFINITY : clock_now(clock) + timeout;
        req = cJSON_Duplicate(request, true);
        if (!req)
                return -ENOMEM;
        cJSON_DeleteItemFromObjectCaseSensitive(req, "version");
        if (!cJSON_AddNumberToObject(req, "version", CONTROL_PROTOCOL_VERSION))
                return -ENOMEM;
        text = cJSON_PrintUnformatted(req);
        if (!text || !(line = strdup_printf("%s\n", text)))
                return -ENOMEM;

        r = client_connect(path, deadline, clock, &fd);
        if (r < 0)
                return set_error_msg(reterr_msg, "cannot reach the agent at %s: %s", path, errno_phrase(r)), r;
        r = client_send(fd, line, deadline, clock);
        line = mfree(line);
        /* An agent at its client limit answers "busy" and closes before
         * reading: that answer is still there to read. */
        if (r < 0 && (r != -EPIPE && r != -ECONNRESET))
                return set_error_msg(reterr_msg, "cannot send to the agent at %s: %s", path, errno_phrase(r)), r;
        if (r < 0 && client_receive(fd, deadline, clock, &line) < 0)
                return set_error_msg(reterr_msg, "cannot send to the agent at %s: %s", path, errno_phrase(r)), r;
        if (!line)
                r = client_receive(fd, deadline, clock, &line);
        if (r == -EMSGSIZE)
                return set_error_msg(reterr_msg, "the agent at %s sent a response longer than %u bytes", path,
                                     CONTROL_RESPONSE_MAX), -EBADMSG;
        if (r < 0)
                return set_error_msg(reterr_msg, "no answer from the agent at %s: %s", path, errno_phrase(r)), r;
        resp = cJSON_ParseWithOpts(line, NULL, true);
        if (!resp || !cJSON_IsObject(resp))
                return set_error_msg(reterr_msg, "the agent at %s sent a malformed response", path), -EBADMSG;
        version = cJSON_GetObjectItemCaseSensitive(resp, "version");
        if (!cJSON_IsNumber(version) || version->valuedouble != CONTROL_PROTOCOL_VERSION)
                return set_error_msg(reterr_msg, "the agent at %s speaks another protocol version; agentctl speaks %d",
                                     path, CONTROL_PROTOCOL_VERSION), -EPROTONOSUPPORT;
        *ret = TAKE_PTR(resp);
        return 0;
}
