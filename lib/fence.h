/* fence.h: a fence that never leaves a writable primary: the check that
 * PostgreSQL cannot accept writes, and the escalation when it still can. */
#ifndef PGLEASE_FENCE_H
#define PGLEASE_FENCE_H

#include <stdbool.h>

#include "clock.h"
#include "pgctl.h"

/* How long an escalation waits for the postmaster to be gone, in all. */
#define FENCE_ESCALATION_WAIT (2 * USEC_PER_SEC)

/* True when PostgreSQL cannot accept writes: no live postmaster owns the
 * data directory, or it runs and was seen in recovery (seen_read_only,
 * from this tick's observation). An error reading its state is not safe. */
bool fence_write_safe(struct pgctl *c, bool seen_read_only);

/* Safety rule 1 when a fence did not stop PostgreSQL: asks the run-postgres
 * supervisor for its own fence at once (<run_dir>/lease-expiry = now: it
 * writes the marker, sets the hold and SIGKILLs the postmaster and all its
 * processes), waits up to half of wait for the postmaster to be gone, then
 * SIGKILLs it itself (the pg_ctl backend, or a supervisor that is gone) and
 * waits the rest. 0 once no postmaster runs; else a negative errno with
 * *reterr_msg. The lease-expiry file is left in place either way. */
int fence_escalate(struct pgctl *c, const char *run_dir, const struct clock_ops *clock, usec_t wait, char **reterr_msg);

#endif
