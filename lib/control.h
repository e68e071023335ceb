/* control.h: the agent's control socket: line-delimited JSON over a Unix
 * stream socket, the server inside an sd_event loop and the client agentctl uses. */
#ifndef PGLEASE_CONTROL_H
#define PGLEASE_CONTROL_H

#include <cjson/cJSON.h>
#include <systemd/sd-event.h>

#include "clock.h"
#include "macro.h"

/* The protocol (docs/agentctl.md): one request per line,
 *   {"version":1,"command":"status", ...arguments}
 * one response per line,
 *   {"version":1,"ok":true, ...} or {"version":1,"ok":false,"error":"..."}.
 * A request with another version is answered with an error naming the
 * supported one; a line that is not a JSON object, or longer than
 * CONTROL_LINE_MAX, is answered with an error and the connection closed. */
#define CONTROL_PROTOCOL_VERSION 1
#define CONTROL_LINE_MAX (64u * 1024u)
/* Responses may be larger (a status with many members); a client refuses
 * anything past this. */
#define CONTROL_RESPONSE_MAX (4u * 1024u * 1024u)
/* At the limit the oldest connection with nothing to answer is closed to
 * make room; when every one has a request in progress, the new client gets
 * {"ok":false,"code":"busy",...} (agentctl: unreachable, exit 4). */
#define CONTROL_CLIENTS_MAX 64
/* A client must complete each request within this of connecting or of its
 * previous answer, counted in total, not per byte; else it is closed. */
#define CONTROL_REQUEST_TIMEOUT (10 * USEC_PER_SEC)

struct control_server;
/* One request waiting for its answer. */
struct control_reply;

/* Called once per request, with the request object (version already
 * checked, "command" a string). The handler answers through control_reply()
 * before returning or later: to keep the handle past its return it must
 * call control_reply_keep(). */
typedef void (*control_handler_fn)(struct control_reply *reply, const char *command, const cJSON *request,
                                   void *userdata);

/* Called when a kept reply's time is up or the server goes away. The
 * callee forgets the handle; it may answer it here with control_reply(),
 * else the server answers with `error` and closes the connection. */
typedef void (*control_expire_fn)(struct control_reply *reply, const char *error, void *userdata);

/* The socket path: control_socket, else <run_dir>/agent.sock. */
int control_socket_path(const char *control_socket, const char *run_dir, char **ret);

/* Binds path (mode 0600; a stale socket file is replaced, a live one
 * refused with -EADDRINUSE) and serves it from event. */
int control_server_attach(sd_event *event, const char *path, control_handler_fn handler, void *userdata,
                          struct control_server **ret, char **reterr_msg);
/* Closes every connection (kept replies expire with "the agent is
 * stopping"), removes the socket file. Accepts NULL, returns NULL. */
struct control_server *control_server_detach(struct control_server *s);
DEFINE_POINTER_CLEANUP_FUNC(struct control_server, control_server_detach);

size_t control_server_n_connections(const struct control_server *s);

/* Answers a request: takes ownership of response (a JSON object; "version"
 * is set, and "ok" defaults to true). The handle is gone afterwards.
 * Returns -ENOTCONN when the client has gone (the answer is dropped). */
int control_reply(struct control_reply *reply, cJSON *response);
/* Answers {"ok":false,"error":<formatted>}. */
int control_reply_error(struct control_reply *reply, const char *fmt, ...) _printf_(2, 3);
/* Keeps the handle past the handler's return, for at most timeout; expire
 * is called (with userdata) if no answer came by then. */
int control_reply_keep(struct control_reply *reply, usec_t timeout, control_expire_fn expire, void *userdata);

/* The client: connects to path, sends request (its "version" is added),
 * reads one response line, all before timeout on clock (NULL: the system
 * clock). Errors: -ENOENT / -ECONNREFUSED (no agent), -EACCES,
 * -ETIMEDOUT, -EBADMSG (not a JSON object), -EPROTONOSUPPORT (the agent
 * speaks another version); *reterr_msg says which in one line. The
 * response is returned as it is, "ok": false included. */
int control_call(const char *path, const cJSON *request, usec_t timeout, const struct clock_ops *clock,
                 cJSON **ret, char **reterr_msg);

#endif
