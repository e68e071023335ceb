/* test-control.c: the control socket protocol against a server in a test
 * event loop: answers, malformed and oversized lines, versions, several
 * clients, replies kept for later, expiry, and the blocking client. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <cmocka.h>

#include "control.h"
#include "util.h"

struct fixture {
        char dir[64];
        char *path;
        sd_event *event;
        struct control_server *server;
        struct control_reply *kept;      /* the "wait" command's handle */
        unsigned expired;
        char *expire_error;
        bool answer_on_expire;
        unsigned handled;
};

static void on_expire(struct control_reply *rp, const char *error, void *userdata) {
        struct fixture *f = userdata;

        f->expired++;
        free(f->expire_error);
        f->expire_error = strdup(error);
        f->kept = NULL;
        if (f->answer_on_expire)
                (void) control_reply_error(rp, "custom expiry");
}

static void handler(struct control_reply *rp, const char *command, const cJSON *req, void *userdata) {
        struct fixture *f = userdata;
        cJSON *o;

        f->handled++;
        if (streq(command, "echo")) {
                o = cJSON_Duplicate(req, true);
                cJSON_DeleteItemFromObject(o, "command");
                assert_int_equal(control_reply(rp, o), 0);
        } else if (streq(command, "wait")) {
                const cJSON *t = cJSON_GetObjectItem(req, "timeout_ms");

                assert_int_equal(control_reply_keep(rp, (usec_t) (t ? t->valuedouble : 60000) * USEC_PER_MSEC,
                                                    on_expire, f), 0);
                f->kept = rp;
        } else if (streq(command, "silent"))
                ; /* returns without answering: the server must answer for it */
        else
                assert_int_equal(control_reply_error(rp, "unknown command %s", command), 0);
}

static int setup(void **state) {
        struct fixture *f = calloc(1, sizeof *f);

        strcpy(f->dir, "/tmp/pglease-control-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        f->path = strdup_printf("%s/agent.sock", f->dir);
        assert_int_equal(sd_event_new(&f->event), 0);
        assert_int_equal(control_server_attach(f->event, f->path, handler, f, &f->server, NULL), 0);
        *state = f;
        return 0;
}

static int teardown(void **state) {
        struct fixture *f = *state;

        f->server = control_server_detach(f->server);
        sd_event_unref(f->event);
        (void) unlink(f->path);
        (void) rmdir(f->dir);
        free(f->path);
        free(f->expire_error);
        free(f);
        return 0;
}

static int raw_connect(const char *path) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        assert_true(fd >= 0);
        strcpy(sa.sun_path, path);
        assert_int_equal(connect(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        return fd;
}

static void raw_send(int fd, const char *s, size_t n) {
        assert_int_equal(send(fd, s, n, MSG_NOSIGNAL), (ssize_t) n);
}

/* Runs the loop until fd has a whole line (returned) or EOF (NULL), within
 * a bounded number of iterations. *eof tells whether the server closed. */
static char *pump_line(struct fixture *f, int fd, bool *eof) {
        char buf[70000];
        size_t len = 0;

        *eof = false;
        for (int i = 0; i < 500; i++) {
                ssize_t k = recv(fd, buf + len, sizeof buf - 1 - len, MSG_DONTWAIT);
                char *nl;

                if (k == 0) {
                        *eof = true;
                        return NULL;
                }
                if (k > 0) {
                        len += (size_t) k;
                        buf[len] = '\0';
                        nl = strchr(buf, '\n');
                        if (nl) {
                                *nl = '\0';
                                return strdup(buf);
                        }
                        continue;
                }
                (void) sd_event_run(f->event, 10 * USEC_PER_MSEC);
        }
        fail_msg("no line from the server");
        return NULL;
}

static bool pump_eof(struct fixture *f, int fd) {
        char c;

        for (int i = 0; i < 500; i++) {
                ssize_t k = recv(fd, &c, 1, MSG_DONTWAIT);

                if (k == 0)
                        return true;
                if (k > 0)
                        return false;
                (void) sd_event_run(f->event, 10 * USEC_PER_MSEC);
        }
        return false;
}

static cJSON *parse(char *line) {
        cJSON *o = cJSON_Parse(line);

        assert_non_null(o);
        free(line);
        return o;
}

static void assert_error_contains(cJSON *o, const char *needle) {
        const cJSON *ok = cJSON_GetObjectItem(o, "ok"), *err = cJSON_GetObjectItem(o, "error");

        assert_true(cJSON_IsFalse(ok));
        assert_true(cJSON_IsString(err));
        if (!strstr(err->valuestring, needle))
                fail_msg("error '%s' does not contain '%s'", err->valuestring, needle);
        assert_int_equal(cJSON_GetObjectItem(o, "version")->valueint, 1);
}

static void test_answers_a_request_with_version_and_ok(void **state) {
        struct fixture *f = *state;
        const char req[] = "{\"version\":1,\"command\":\"echo\",\"x\":42}\n";
        int fd = raw_connect(f->path);
        bool eof;
        cJSON *o;

        raw_send(fd, req, sizeof req - 1);
        o = parse(pump_line(f, fd, &eof));
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "ok")));
        assert_int_equal(cJSON_GetObjectItem(o, "version")->valueint, 1);
        assert_int_equal(cJSON_GetObjectItem(o, "x")->valueint, 42);
        cJSON_Delete(o);
        close(fd);
}

/* Found by fuzz-control (tests/fuzz/corpus/control/crash-empty): a client
 * that connects and closes without sending a byte made the server search
 * a NULL buffer. It must just close. */
static void test_client_that_sends_nothing_is_closed(void **state) {
        struct fixture *f = *state;
        int fd = raw_connect(f->path);

        assert_int_equal(shutdown(fd, SHUT_WR), 0);
        assert_true(pump_eof(f, fd));
        close(fd);
        assert_int_equal(f->handled, 0);
}

static void test_socket_is_owner_only(void **state) {
        struct fixture *f = *state;
        struct stat st;

        assert_int_equal(stat(f->path, &st), 0);
        assert_true(S_ISSOCK(st.st_mode));
        assert_int_equal(st.st_mode & 0777, 0600);
}

static void test_garbage_gets_an_error_and_is_closed(void **state) {
        struct fixture *f = *state;
        const char req[] = "this is not json\n{\"version\":1,\"command\":\"echo\"}\n";
        int fd = raw_connect(f->path);
        bool eof;
        cJSON *o;

        raw_send(fd, req, sizeof req - 1);
        o = parse(pump_line(f, fd, &eof));
        assert_error_contains(o, "malformed request");
        cJSON_Delete(o);
        assert_true(pump_eof(f, fd));
        assert_int_equal(f->handled, 0);
        close(fd);
}

static void test_a_json_array_is_malformed(void **state) {
        struct fixture *f = *state;
        const char req[] = "[1,2]\n";
        int fd = raw_connect(f->path);
        bool eof;
        cJSON *o;

        raw_send(fd, req, sizeof req - 1);
        o = parse(pump_line(f, fd, &eof));
        assert_error_contains(o, "malformed");
        cJSON_Delete(o);
        close(fd);
}

static void test_wrong_version_names_the_supported_one_and_keeps_the_connection(void **state) {
        struct fixture *f = *state;
        const char bad[] = "{\"version\":2,\"command\":\"echo\"}\n", good[] = "{\"version\":1,\"command\":\"echo\"}\n";
        int fd = raw_connect(f->path);
        bool eof;
        cJSON *o;

        raw_send(fd, bad, sizeof bad - 1);
        o = parse(pump_line(f, fd, &eof));
        assert_error_contains(o, "speaks version 1");
        cJSON_Delete(o);
        raw_send(fd, good, sizeof good - 1);
        o = parse(pump_line(f, fd, &eof));
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "ok")));
        cJSON_Delete(o);
        close(fd);
}

static void test_missing_version_and_command_are_errors(void **state) {
        struct fixture *f = *state;
        const char a[] = "{\"command\":\"echo\"}\n", b[] = "{\"version\":1,\"command\":3}\n";
        int fd = raw_connect(f->path);
        bool eof;
        cJSON *o;

        raw_send(fd, a, sizeof a - 1);
        o = parse(pump_line(f, fd, &eof));
        assert_error_contains(o, "missing protocol version");
        cJSON_Delete(o);
        raw_send(fd, b, sizeof b - 1);
        o = parse(pump_line(f, fd, &eof));
        assert_error_contains(o, "\"command\" must be a string");
        cJSON_Delete(o);
        close(fd);
}

static void test_oversized_line_is_refused_and_closed(void **state) {
        struct fixture *f = *state;
        size_t n = CONTROL_LINE_MAX + 100;
        char *big = malloc(n);
        int fd = raw_connect(f->path);
        size_t off = 0;
        bool eof = false;
        char *line = NULL;
        cJSON *o;

        memset(big, 'x', n);
        /* Sends in pieces while pumping, as the socket buffer is smaller. */
        for (int i = 0; i < 1000 && off < n; i++) {
                ssize_t k = send(fd, big + off, n - off, MSG_DONTWAIT | MSG_NOSIGNAL);

                if (k > 0)
                        off += (size_t) k;
                else if (k < 0 && errno != EAGAIN)
                        break; /* the server closed on us: fine */
                (void) sd_event_run(f->event, 10 * USEC_PER_MSEC);
        }
        line = pump_line(f, fd, &eof);
        assert_non_null(line);
        o = parse(line);
        assert_error_contains(o, "longer than 65536 bytes");
        cJSON_Delete(o);
        assert_int_equal(f->handled, 0);
        free(big);
        close(fd);
}

static void test_two_clients_one_waiting_one_answered(void **state) {
        struct fixture *f = *state;
        const char wait[] = "{\"version\":1,\"command\":\"wait\"}\n", echo[] = "{\"version\":1,\"command\":\"echo\"}\n";
        int a = raw_connect(f->path), b = raw_connect(f->path);
        bool eof;
        cJSON *o;

        raw_send(a, wait, sizeof wait - 1);
        for (int i = 0; i < 100 && !f->kept; i++)
                (void) sd_event_run(f->event, 10 * USEC_PER_MSEC);
        assert_non_null(f->kept);
        raw_send(b, echo, sizeof echo - 1);
        o = parse(pump_line(f, b, &eof));
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "ok")));
        cJSON_Delete(o);
        assert_int_equal(control_server_n_connections(f->server), 2);

        /* A later tick completes the first one. */
        o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "result", "done");
        assert_int_equal(control_reply(f->kept, o), 0);
        f->kept = NULL;
        o = parse(pump_line(f, a, &eof));
        assert_string_equal(cJSON_GetObjectItem(o, "result")->valuestring, "done");
        cJSON_Delete(o);
        assert_int_equal(f->expired, 0);
        close(a);
        close(b);
}

static void test_kept_reply_expires_with_an_error_and_closes(void **state) {
        struct fixture *f = *state;
        const char wait[] = "{\"version\":1,\"command\":\"wait\",\"timeout_ms\":50}\n";
        int fd = raw_connect(f->path);
        bool eof;
        cJSON *o;

        raw_send(fd, wait, sizeof wait - 1);
        o = parse(pump_line(f, fd, &eof));
        assert_error_contains(o, "timed out");
        cJSON_Delete(o);
        assert_int_equal(f->expired, 1);
        assert_null(f->kept);
        assert_true(pump_eof(f, fd));
        close(fd);
}

static void test_expire_callback_may_answer_itself(void **state) {
        struct fixture *f = *state;
        const char wait[] = "{\"version\":1,\"command\":\"wait\",\"timeout_ms\":20}\n";
        int fd = raw_connect(f->path);
        bool eof;
        cJSON *o;

        f->answer_on_expire = true;
        raw_send(fd, wait, sizeof wait - 1);
        o = parse(pump_line(f, fd, &eof));
        assert_error_contains(o, "custom expiry");
        cJSON_Delete(o);
        close(fd);
}

static void test_reply_to_a_client_that_left_is_dropped(void **state) {
        struct fixture *f = *state;
        const char wait[] = "{\"version\":1,\"command\":\"wait\"}\n";
        int fd = raw_connect(f->path);

        raw_send(fd, wait, sizeof wait - 1);
        for (int i = 0; i < 100 && !f->kept; i++)
                (void) sd_event_run(f->event, 10 * USEC_PER_MSEC);
        assert_non_null(f->kept);
        close(fd);
        for (int i = 0; i < 100 && control_server_n_connections(f->server) > 0; i++)
                (void) sd_event_run(f->event, 10 * USEC_PER_MSEC);
        assert_int_equal(control_server_n_connections(f->server), 0);
        assert_int_equal(control_reply(f->kept, cJSON_CreateObject()), -ENOTCONN);
        f->kept = NULL;
}

static void test_unanswered_request_gets_an_internal_error(void **state) {
        struct fixture *f = *state;
        const char req[] = "{\"version\":1,\"command\":\"silent\"}\n";
        int fd = raw_connect(f->path);
        bool eof;
        cJSON *o;

        raw_send(fd, req, sizeof req - 1);
        o = parse(pump_line(f, fd, &eof));
        assert_error_contains(o, "was not answered");
        cJSON_Delete(o);
        close(fd);
}

static void test_detach_expires_kept_replies(void **state) {
        struct fixture *f = *state;
        const char wait[] = "{\"version\":1,\"command\":\"wait\"}\n";
        int fd = raw_connect(f->path);
        char buf[512];
        ssize_t k;

        raw_send(fd, wait, sizeof wait - 1);
        for (int i = 0; i < 100 && !f->kept; i++)
                (void) sd_event_run(f->event, 10 * USEC_PER_MSEC);
        assert_non_null(f->kept);
        f->server = control_server_detach(f->server);
        assert_int_equal(f->expired, 1);
        assert_string_equal(f->expire_error, "the agent is stopping");
        k = recv(fd, buf, sizeof buf - 1, MSG_DONTWAIT);
        assert_true(k > 0);
        buf[k] = '\0';
        assert_non_null(strstr(buf, "the agent is stopping"));
        assert_int_equal(access(f->path, F_OK), -1);
        close(fd);
}

static void test_stale_socket_is_replaced_live_one_refused(void **state) {
        struct fixture *f = *state;
        struct control_server *other = NULL;
        _cleanup_free_ char *err = NULL, *stale = strdup_printf("%s/stale.sock", f->dir);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd;

        /* A live agent owns the path. */
        assert_int_equal(control_server_attach(f->event, f->path, handler, f, &other, &err), -EADDRINUSE);
        assert_non_null(strstr(err, "another agent"));
        assert_null(other);
        /* A socket file nobody listens on is stale. */
        fd = socket(AF_UNIX, SOCK_STREAM, 0);
        strcpy(sa.sun_path, stale);
        assert_int_equal(bind(fd, (struct sockaddr *) &sa, sizeof sa), 0);
        close(fd);
        assert_int_equal(control_server_attach(f->event, stale, handler, f, &other, NULL), 0);
        other = control_server_detach(other);
        assert_int_equal(access(stale, F_OK), -1);
}

static void test_regular_file_at_the_path_is_not_removed(void **state) {
        struct fixture *f = *state;
        struct control_server *other = NULL;
        _cleanup_free_ char *err = NULL, *p = strdup_printf("%s/file", f->dir);

        assert_int_equal(write_file_atomic(p, "x", 0600), 0);
        assert_int_equal(control_server_attach(f->event, p, handler, f, &other, &err), -EEXIST);
        assert_int_equal(access(p, F_OK), 0);
        (void) unlink(p);
}

static void test_socket_path_defaults_to_run_dir(void **state) {
        _cleanup_free_ char *a = NULL, *b = NULL;

        assert_int_equal(control_socket_path("", "/run/pglease", &a), 0);
        assert_string_equal(a, "/run/pglease/agent.sock");
        assert_int_equal(control_socket_path("/x/y.sock", "/run/pglease", &b), 0);
        assert_string_equal(b, "/x/y.sock");
}

/* ---- the blocking client against a server in another thread ---- */

struct served {
        char *path;
        sd_event *event;
        struct fixture f;
        pthread_t thread;
        int efd;
};

static void *serve(void *userdata) {
        struct served *s = userdata;

        (void) sd_event_loop(s->event);
        return NULL;
}

static int on_quit(sd_event_source *src, int fd, uint32_t revents, void *userdata) {
        return sd_event_exit(sd_event_source_get_event(src), 0);
}

static void served_start(struct fixture *f, struct served *s) {
        int p[2];

        s->path = strdup_printf("%s/threaded.sock", f->dir);
        assert_int_equal(sd_event_new(&s->event), 0);
        assert_int_equal(control_server_attach(s->event, s->path, handler, &s->f, &s->f.server, NULL), 0);
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        assert_int_equal(sd_event_add_io(s->event, NULL, p[0], EPOLLIN, on_quit, NULL), 0);
        s->efd = p[1];
        assert_int_equal(pthread_create(&s->thread, NULL, serve, s), 0);
}

static void served_stop(struct served *s) {
        assert_int_equal(write(s->efd, "q", 1), 1);
        assert_int_equal(pthread_join(s->thread, NULL), 0);
        s->f.server = control_server_detach(s->f.server);
        sd_event_unref(s->event);
        close(s->efd);
        free(s->path);
        free(s->f.expire_error);
}

static void test_client_call_round_trip(void **state) {
        struct fixture *f = *state;
        struct served s = {};
        cJSON *req = cJSON_CreateObject(), *resp = NULL;

        served_start(f, &s);
        cJSON_AddStringToObject(req, "command", "echo");
        cJSON_AddStringToObject(req, "who", "agentctl");
        assert_int_equal(control_call(s.path, req, 5 * USEC_PER_SEC, NULL, &resp, NULL), 0);
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(resp, "ok")));
        assert_string_equal(cJSON_GetObjectItem(resp, "who")->valuestring, "agentctl");
        cJSON_Delete(resp);
        cJSON_Delete(req);
        served_stop(&s);
}

static void test_client_times_out_on_a_slow_agent(void **state) {
        struct fixture *f = *state;
        struct served s = {};
        cJSON *req = cJSON_CreateObject(), *resp = NULL;
        _cleanup_free_ char *err = NULL;

        served_start(f, &s);
        cJSON_AddStringToObject(req, "command", "wait");
        assert_int_equal(control_call(s.path, req, 100 * USEC_PER_MSEC, NULL, &resp, &err), -ETIMEDOUT);
        assert_null(resp);
        assert_non_null(strstr(err, "timed out"));
        cJSON_Delete(req);
        served_stop(&s);
}

static void test_client_says_no_agent_in_one_line(void **state) {
        struct fixture *f = *state;
        _cleanup_free_ char *err = NULL, *p = strdup_printf("%s/none.sock", f->dir);
        cJSON *req = cJSON_CreateObject(), *resp = NULL;

        cJSON_AddStringToObject(req, "command", "status");
        assert_int_equal(control_call(p, req, USEC_PER_SEC, NULL, &resp, &err), -ENOENT);
        assert_non_null(strstr(err, "cannot reach the agent at"));
        assert_null(strchr(err, '\n'));
        cJSON_Delete(req);
}

/* ---- bounded work: one request per turn, room for agentctl, busy ---- */

static void test_pipelined_requests_are_served_one_per_loop_turn(void **state) {
        struct fixture *f = *state;
        const char echo[] = "{\"version\":1,\"command\":\"echo\"}\n";
        char batch[sizeof echo * 20] = "";
        unsigned last = 0, lines = 0;
        int fd = raw_connect(f->path);

        for (int i = 0; i < 20; i++)
                strcat(batch, echo);
        raw_send(fd, batch, strlen(batch));
        for (int i = 0; i < 500 && f->handled < 20; i++) {
                (void) sd_event_run(f->event, 10 * USEC_PER_MSEC);
                /* Never more than one of this client's requests per turn. */
                assert_true(f->handled - last <= 1);
                last = f->handled;
        }
        assert_int_equal(f->handled, 20);
        for (int i = 0; i < 500 && lines < 20; i++) {
                char buf[8192];
                ssize_t k = recv(fd, buf, sizeof buf, MSG_DONTWAIT);

                for (ssize_t j = 0; j < k; j++)
                        lines += buf[j] == '\n';
                if (k <= 0)
                        (void) sd_event_run(f->event, 10 * USEC_PER_MSEC);
        }
        assert_int_equal(lines, 20);
        close(fd);
}

static void test_at_the_limit_the_oldest_idle_client_makes_room(void **state) {
        struct fixture *f = *state;
        const char echo[] = "{\"version\":1,\"command\":\"echo\"}\n";
        int fds[CONTROL_CLIENTS_MAX], fd;
        bool eof;
        cJSON *o;

        for (int i = 0; i < CONTROL_CLIENTS_MAX; i++) {
                fds[i] = raw_connect(f->path);
                /* One byte each: trickling, never a whole request. */
                raw_send(fds[i], "{", 1);
        }
        for (int i = 0; i < 200 && control_server_n_connections(f->server) < CONTROL_CLIENTS_MAX; i++)
                (void) sd_event_run(f->event, 10 * USEC_PER_MSEC);
        assert_int_equal(control_server_n_connections(f->server), CONTROL_CLIENTS_MAX);
        /* Every byte read: all 64 are idle, trickling. */
        for (int i = 0; i < 3 * CONTROL_CLIENTS_MAX; i++)
                (void) sd_event_run(f->event, USEC_PER_MSEC);
        fd = raw_connect(f->path);
        raw_send(fd, echo, sizeof echo - 1);
        o = parse(pump_line(f, fd, &eof));
        assert_true(cJSON_IsTrue(cJSON_GetObjectItem(o, "ok")));
        cJSON_Delete(o);
        /* The oldest was told why, then closed. */
        o = parse(pump_line(f, fds[0], &eof));
        assert_string_equal(cJSON_GetObjectItem(o, "code")->valuestring, "busy");
        cJSON_Delete(o);
        assert_true(pump_eof(f, fds[0]));
        for (int i = 0; i < CONTROL_CLIENTS_MAX; i++)
                close(fds[i]);
        close(fd);
}

static void test_client_gets_busy_when_every_slot_has_a_request(void **state) {
        struct fixture *f = *state;
        const char wait[] = "{\"version\":1,\"command\":\"wait\"}\n";
        int fds[CONTROL_CLIENTS_MAX];
        cJSON *req = cJSON_CreateObject(), *resp = NULL;
        struct served s = {};

        served_start(f, &s);
        for (int i = 0; i < CONTROL_CLIENTS_MAX; i++) {
                struct sockaddr_un sa = { .sun_family = AF_UNIX };

                fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                strcpy(sa.sun_path, s.path);
                assert_int_equal(connect(fds[i], (struct sockaddr *) &sa, sizeof sa), 0);
                raw_send(fds[i], wait, sizeof wait - 1);
        }
        /* Let the server thread take all 64 requests in. */
        for (int i = 0; i < 200; i++) {
                cJSON *probe = cJSON_CreateObject(), *pr = NULL;
                int k;

                cJSON_AddStringToObject(probe, "command", "echo");
                k = control_call(s.path, probe, 5 * USEC_PER_SEC, NULL, &pr, NULL);
                cJSON_Delete(probe);
                if (k >= 0 && cJSON_IsFalse(cJSON_GetObjectItem(pr, "ok"))) {
                        resp = pr;
                        break;
                }
                cJSON_Delete(pr);
                (void) poll(NULL, 0, 10);
        }
        assert_non_null(resp);
        assert_string_equal(cJSON_GetObjectItem(resp, "code")->valuestring, "busy");
        cJSON_Delete(resp);
        cJSON_Delete(req);
        served_stop(&s);
        for (int i = 0; i < CONTROL_CLIENTS_MAX; i++)
                close(fds[i]);
}

int main(void) {
        const struct CMUnitTest tests[] = {
#define T(x) cmocka_unit_test_setup_teardown(x, setup, teardown)
                T(test_answers_a_request_with_version_and_ok),
                T(test_client_that_sends_nothing_is_closed),
                T(test_socket_is_owner_only),
                T(test_garbage_gets_an_error_and_is_closed),
                T(test_a_json_array_is_malformed),
                T(test_wrong_version_names_the_supported_one_and_keeps_the_connection),
                T(test_missing_version_and_command_are_errors),
                T(test_oversized_line_is_refused_and_closed),
                T(test_two_clients_one_waiting_one_answered),
                T(test_kept_reply_expires_with_an_error_and_closes),
                T(test_expire_callback_may_answer_itself),
                T(test_reply_to_a_client_that_left_is_dropped),
                T(test_unanswered_request_gets_an_internal_error),
                T(test_detach_expires_kept_replies),
                T(test_stale_socket_is_replaced_live_one_refused),
                T(test_regular_file_at_the_path_is_not_removed),
                T(test_socket_path_defaults_to_run_dir),
                T(test_client_call_round_trip),
                T(test_client_times_out_on_a_slow_agent),
                T(test_client_says_no_agent_in_one_line),
                T(test_pipelined_requests_are_served_one_per_loop_turn),
                T(test_at_the_limit_the_oldest_idle_client_makes_room),
                T(test_client_gets_busy_when_every_slot_has_a_request),
#undef T
        };

        return cmocka_run_group_tests(tests, NULL, NULL);
}
