/* fuzz-control.c: libFuzzer target for the control socket's request
 * parser: the input is what a local client sends (lines of JSON, split and
 * oversized as it likes) to a real control server (lib/control.c) in an
 * sd-event loop; the server must answer or close, never crash or hang. */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "control.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sd_event *event;
static struct control_server *server;
static char *path;

/* Reads the fields the agent's handlers read (agent/control-handlers.c),
 * with their type checks, and answers at once. */
static void handler(struct control_reply *rp, const char *command, const cJSON *req, void *userdata) {
        const cJSON *to = cJSON_GetObjectItemCaseSensitive(req, "to");
        const cJSON *timeout = cJSON_GetObjectItemCaseSensitive(req, "timeout");
        const cJSON *wait = cJSON_GetObjectItemCaseSensitive(req, "wait");
        cJSON *o;

        if (streq(command, "status")) {
                o = cJSON_Duplicate(req, true);
                if (o)
                        (void) control_reply(rp, o);
                else
                        (void) control_reply_error(rp, "out of memory");
        } else if (streq(command, "switchover") && to && !cJSON_IsNull(to) && !cJSON_IsString(to))
                (void) control_reply_error(rp, "\"to\" must be a member name");
        else if (streq(command, "demote") && timeout && (!cJSON_IsNumber(timeout) || timeout->valuedouble < 0))
                (void) control_reply_error(rp, "\"timeout\" must be a number of seconds");
        else if (streq(command, "demote") && wait && !cJSON_IsBool(wait))
                (void) control_reply_error(rp, "\"wait\" must be a boolean");
        else
                (void) control_reply_error(rp, "unknown command %s", command);
}

static int setup(void) {
        char dir[] = "/tmp/pglease-fuzz-control-XXXXXX";

        if (!mkdtemp(dir))
                return -errno;
        path = strdup_printf("%s/agent.sock", dir);
        if (!path || sd_event_new(&event) < 0)
                return -ENOMEM;
        return control_server_attach(event, path, handler, NULL, &server, NULL);
}

static int client_connect(void) {
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);

        if (fd < 0)
                return -errno;
        strncpy(sa.sun_path, path, sizeof sa.sun_path - 1);
        if (connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                close(fd);
                return -errno;
        }
        return fd;
}

/* Sends everything, then reads until the server closes: each step runs
 * the loop; a server that neither answers nor closes is a finding. */
static void exchange(int fd, const uint8_t *data, size_t size) {
        size_t sent = 0;
        bool shut = false;
        char buf[65536];

        for (unsigned i = 0; i < 100000; i++) {
                ssize_t k;

                if (sent < size) {
                        k = send(fd, data + sent, size - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
                        if (k > 0)
                                sent += (size_t) k;
                        else if (k < 0 && errno != EAGAIN)
                                sent = size;  /* the server closed early: fine */
                } else if (!shut) {
                        (void) shutdown(fd, SHUT_WR);
                        shut = true;
                }
                k = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
                if (k == 0 || (k < 0 && errno != EAGAIN))
                        return;
                (void) sd_event_run(event, 0);
        }
        fprintf(stderr, "the control server neither answered nor closed the connection\n");
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        int fd;

        if (!server && setup() < 0)
                abort();
        fd = client_connect();
        if (fd < 0)
                abort();
        exchange(fd, data, size);
        close(fd);
        /* The server side of the connection goes away with the next runs. */
        for (unsigned i = 0; i < 100 && control_server_n_connections(server) > 0; i++)
                (void) sd_event_run(event, 0);
        return 0;
}
