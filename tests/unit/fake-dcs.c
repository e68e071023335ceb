/* fake-dcs.c: an in-memory DCS with the API server's write semantics
 * (versions, 409 on a stale write, AlreadyExists), and switches to make the
 * next calls fail; shared by the election and decide tests. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "fake-dcs.h"
#include "util.h"

static void stamp(struct fake_dcs *f) {
        f->version++;
        free(f->record->version);
        f->record->version = strdup_printf("%" PRIu64, f->version);
        free(f->record->raw);
        f->record->raw = strdup_printf("%s|%" PRIu64 "|%s|%s|%" PRIu64, strempty(f->record->holder),
                                       f->record->lease_duration, strempty(f->record->successor),
                                       f->record->paused ? "p" : "", f->version);
}

static int fake_get(void *ud, usec_t deadline, struct dcs_leader **ret, char **err) {
        struct fake_dcs *f = ud;

        f->gets++;
        f->last_get_deadline = deadline;
        if (f->fail_gets_with)
                return f->fail_gets_with;
        if (f->fail_with)
                return f->fail_with;
        if (!f->record)
                return -ENOENT;
        return dcs_leader_copy(f->record, ret);
}

static int fake_create(void *ud, const struct dcs_leader *want, usec_t deadline, struct dcs_leader **ret, char **err) {
        struct fake_dcs *f = ud;
        int r;

        f->writes++;
        if (f->fail_with)
                return f->fail_with;
        if (f->record)
                return -EEXIST;
        r = dcs_leader_copy(want, &f->record);
        if (r < 0)
                return r;
        stamp(f);
        return dcs_leader_copy(f->record, ret);
}

static int fake_update(void *ud, const struct dcs_leader *want, usec_t deadline, struct dcs_leader **ret, char **err) {
        struct fake_dcs *f = ud;
        int r;

        f->writes++;
        if (f->fail_with)
                return f->fail_with;
        if (!f->record)
                return -ENOENT;
        if (!want->version || !streq(want->version, f->record->version))
                return -ESTALE;
        dcs_leader_free(f->record);
        r = dcs_leader_copy(want, &f->record);
        if (r < 0)
                return r;
        stamp(f);
        return dcs_leader_copy(f->record, ret);
}

static const struct dcs_ops fake_ops = {
        .leader_get = fake_get,
        .leader_create = fake_create,
        .leader_update = fake_update,
};

void fake_dcs_init(struct fake_dcs *f) {
        *f = (struct fake_dcs) {};
        f->dcs = (struct dcs) { .ops = &fake_ops, .userdata = f };
}

void fake_dcs_done(struct fake_dcs *f) {
        dcs_leader_free(f->record);
        *f = (struct fake_dcs) {};
}

void fake_dcs_write_as(struct fake_dcs *f, const char *holder, usec_t lease_duration) {
        if (!f->record)
                f->record = calloc(1, sizeof *f->record);
        free(f->record->holder);
        f->record->holder = strdup(holder);
        f->record->lease_duration = lease_duration;
        stamp(f);
}

void fake_dcs_touch(struct fake_dcs *f) {
        stamp(f);
}
