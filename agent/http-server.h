/* http-server.h: the agent's HTTP API (probes, /cluster, /metrics) on
 * libmicrohttpd, served from the agent's own sd-event loop. */
#ifndef PGLEASE_HTTP_SERVER_H
#define PGLEASE_HTTP_SERVER_H

struct agent;
struct observation;

/* Listens on http_listen (nothing when it is empty); call after
 * control_handlers_attach(). A failure is returned with a message. */
int http_server_attach(struct agent *a, char **reterr_msg);
void http_server_detach(struct agent *a);


/* Each tick's last observation: answers come from it, never from a
 * query of PostgreSQL or the API server inside a request. */
void http_server_observed(struct agent *a, const struct observation *o);

#endif
