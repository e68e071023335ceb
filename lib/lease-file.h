/* lease-file.h: <run_dir>/lease-expiry, the agent's promise to the
 * run-postgres supervisor of when its leader lease stops being safe. */
#ifndef PGLEASE_LEASE_FILE_H
#define PGLEASE_LEASE_FILE_H

#include "macro.h"

/* The file, in the run directory shared by the agent and the postgres
 * containers of a pod:
 *
 *   <run_dir>/lease-expiry   one line, "<usec>\n": the CLOCK_MONOTONIC time,
 *                            in microseconds, at which the holder's renew
 *                            deadline passes (the send time of its last
 *                            successful acquire or renew + renew_deadline).
 *
 * The agent writes it (atomically: temporary file + rename) after every
 * successful acquire and renew while it holds the lease, and removes it
 * when it stops leading (fence, release, switchover). The supervisor fences
 * Postgres when the time has passed and the file is still there (safety
 * rule 1), so that a primary whose agent died, hung or was stopped goes
 * down before any other member can take the lease.
 *
 * CLOCK_MONOTONIC is the same clock in every container of a pod (one
 * kernel), so the two processes compare times without any exchange. A
 * value from another boot is meaningless; readers bound how far ahead they
 * believe it (see the supervisor). */
#define LEASE_FILE_NAME "lease-expiry"

int lease_file_write(const char *run_dir, usec_t expiry);
/* A missing file is success. */
int lease_file_remove(const char *run_dir);
/* -ENOENT when there is no file, -EBADMSG when it does not hold one
 * positive decimal number. *ret is written only on success. */
int lease_file_read(const char *run_dir, usec_t *ret);
/* The parser of lease_file_read(), for the file's text. */
int lease_file_parse(const char *text, usec_t *ret);

#endif
