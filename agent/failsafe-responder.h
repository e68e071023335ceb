/* failsafe-responder.h: this member's answers to a leader's POST /failsafe,
 * on failsafe_listen, served by libmicrohttpd's own thread. */
#ifndef PGLEASE_FAILSAFE_RESPONDER_H
#define PGLEASE_FAILSAFE_RESPONDER_H

#include <stdbool.h>

struct agent;

/* With failsafe_mode on, after the node and the agent's state. */
int failsafe_responder_attach(struct agent *a, char **reterr_msg);
void failsafe_responder_detach(struct agent *a);

/* The token this member sends as a leader (NULL: off): the one it checks,
 * or for TOKEN_GRACE after a rotation the previous one, which every member
 * still accepts whether or not it has seen the new one. */
const char *failsafe_responder_token(const struct agent *a);

/* Each tick, before observe: failsafe_token_file read again when due (a
 * rotated Secret: the previous token stays accepted for a grace period),
 * the token to send to the client, our state and leadership to the
 * responder, its promises into the agent's state (decide() obeys them). */
void failsafe_responder_sync(struct agent *a);

/* node's failsafe_acquire hook (act.c, ACTION_ACQUIRE): begin = true just
 * before the write of the Lease: -EBUSY when we promised its holder, else
 * no promise is given until the call with begin = false (took: we hold the
 * Lease now). */
int failsafe_responder_acquire(void *userdata, const char *holder, bool begin, bool took);

#endif
