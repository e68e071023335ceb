/* control-handlers.h: what the agent answers on its control socket
 * (status, pause, resume, switchover, demote), and the hooks by which the
 * control loop feeds it and completes a waiting demote. */
#ifndef PGLEASE_CONTROL_HANDLERS_H
#define PGLEASE_CONTROL_HANDLERS_H

#include <stdbool.h>

#include "macro.h"

struct agent;

/* Serves the control socket from a->event; call after node_init(). A
 * failure is returned with a message; the agent may run without it. */
int control_handlers_attach(struct agent *a, char **reterr_msg);
/* Answers a waiting demote ("the agent is stopping"), closes the socket
 * and gives the node its own DCS back; call before node_done(). */
void control_handlers_detach(struct agent *a);

/* The control loop's act calls this when a requested demote finished (ok)
 * or failed: the waiting `demote` request gets its answer. */
void control_handlers_complete_demote(struct agent *a, bool ok, const char *msg);

/* The control loop hands over each tick's observation: `status` answers
 * from it and never opens a connection to PostgreSQL itself. */
struct observation;
void control_handlers_observed(struct agent *a, const struct observation *o);

/* The member list the control loop last read, and when (monotonic); NULL
 * before the first read. The HTTP API's /cluster answers from it. */
struct dcs_member_list;
const struct dcs_member_list *control_handlers_members(const struct agent *a, usec_t *ret_at);

#endif
