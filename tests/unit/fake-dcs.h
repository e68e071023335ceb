/* fake-dcs.h: an in-memory DCS with the API server's write semantics
 * (versions, 409 on a stale write, AlreadyExists), and switches to make the
 * next calls fail; shared by the election and decide tests. */
#ifndef PGLEASE_FAKE_DCS_H
#define PGLEASE_FAKE_DCS_H

#include "dcs.h"

struct fake_dcs {
        struct dcs_leader *record;      /* NULL: no record */
        uint64_t version;
        int fail_with;                  /* when non-zero, every call returns it */
        int fail_gets_with;             /* when non-zero, every read of the record returns it */
        unsigned gets, writes;
        usec_t last_get_deadline;       /* the deadline the last read was given */
        struct dcs_member_list members;
        struct dcs dcs;
};

void fake_dcs_init(struct fake_dcs *f);
void fake_dcs_done(struct fake_dcs *f);
/* Another writer replaces the record (bumps the version). */
void fake_dcs_write_as(struct fake_dcs *f, const char *holder, usec_t lease_duration);
void fake_dcs_touch(struct fake_dcs *f);

#endif
