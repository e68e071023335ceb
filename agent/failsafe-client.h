/* failsafe-client.h: the leader's POST /failsafe to every other member, on
 * libcurl's multi interface driven by the agent's sd-event loop. */
#ifndef PGLEASE_FAILSAFE_CLIENT_H
#define PGLEASE_FAILSAFE_CLIENT_H

struct agent;

/* With failsafe_mode on, after the node and the HTTP server (its token):
 * hooks the asking into the node (act's ACTION_FAILSAFE_ASK). */
int failsafe_client_attach(struct agent *a, char **reterr_msg);
void failsafe_client_detach(struct agent *a);

#endif
