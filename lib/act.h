/* act.h: carries decide()'s actions out against the world (the lease,
 * the local Postgres, the metadata schema), emits the events, and does the
 * per-tick housekeeping of a member (status record, slots, monitoring). */
#ifndef PGLEASE_ACT_H
#define PGLEASE_ACT_H

#include "decide.h"
#include "log.h"
#include "node.h"

/* The one event function: a log line, a queued metadata row and, for the
 * events operators must see (promote, fence, release, rejoin...), a
 * Kubernetes Event. */
void event_emit(struct node *n, const struct logger *log, enum log_level level, const char *event,
                const char *fmt, ...) _printf_(5, 6);

/* Carries the actions out in order. *ret_redecide is set when the world
 * changed in a way the same tick should look at again (lease taken,
 * promoted). Failures are logged and reported through events; the next
 * tick observes and decides again. */
int act(struct node *n, const struct logger *log, struct agent_state *s, const struct observation *o,
        const struct action_list *l, bool *ret_redecide);

/* After the actions: publish the member record when it changed or every
 * status_interval; as primary, migrations, slots, monitoring and the event
 * queue; as replica, flush queued events to the leader. */
void act_housekeeping(struct node *n, const struct logger *log, const struct agent_state *s,
                      const struct observation *o);

/* The member record this node publishes for an observation and state. */
int act_member_record(const struct node *n, const struct agent_state *s, const struct observation *o,
                      struct dcs_member *ret);

#endif
