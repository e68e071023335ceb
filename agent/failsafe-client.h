/* failsafe-client.h: the leader's POST /failsafe to every other member, on
 * libcurl's multi interface in a thread of its own. */
#ifndef PGLEASE_FAILSAFE_CLIENT_H
#define PGLEASE_FAILSAFE_CLIENT_H

#include <stdbool.h>

struct agent;

/* With failsafe_mode on, after the node and the HTTP server (its token). */
int failsafe_client_attach(struct agent *a, char **reterr_msg);
void failsafe_client_detach(struct agent *a);

/* Each tick, after act: asking = decide() asked (ACTION_FAILSAFE_ASK: we
 * lead as the primary); hands over the last view and the published list. */
void failsafe_client_tick(struct agent *a, bool asking);

/* Each tick, before observe: the answers into the node (observe reads
 * them there). */
void failsafe_client_collect(struct agent *a);

/* The token the next questions carry and, for a grace period after a
 * rotation, the alternate one a member that answers 401 is asked with. */
void failsafe_client_set_tokens(struct agent *a, const char *token, const char *alternate);

#endif
