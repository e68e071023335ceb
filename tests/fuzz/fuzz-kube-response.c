/* fuzz-kube-response.c: libFuzzer target for everything the agent reads
 * from the API server, through the real client: the input is a script of
 * responses (status, Retry-After, body) served by a fake transport to one
 * DCS operation (read, create or replace the Lease, list the Pods, patch
 * this Pod, post an Event), so that kube.c's classification, retries,
 * Status bodies and the decoders of dcs-kube.c all see hostile answers. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "dcs-kube.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The statuses the client treats differently, and a few it does not know. */
static const long statuses[] = { 200, 201, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504, 302, 0, 999 };

struct script {
        const uint8_t *data;
        size_t size, off;
        struct clock_scripted clock;
        struct clock_ops clock_ops;
        unsigned calls;
};

/* Each response: status index (1 byte), Retry-After seconds (1 byte), body
 * length (2 bytes, little endian), body. The end of the input refuses the
 * connection: the client retries until its deadline. */
static int fake_perform(void *userdata, const struct kube_http_request *req, usec_t timeout,
                        struct kube_http_response *ret, char **reterr_msg) {
        struct script *s = userdata;
        char *body;
        size_t len;

        s->calls++;
        clock_scripted_advance(&s->clock, 10 * USEC_PER_MSEC);
        if (s->size - s->off < 4)
                return -ECONNREFUSED;
        len = MIN((size_t) (s->data[s->off + 2] | s->data[s->off + 3] << 8), s->size - s->off - 4);
        /* As the curl transport hands it over: body_size bytes (NULs
         * included) and a terminating NUL. */
        body = malloc(len + 1);
        if (!body)
                return -ENOMEM;
        memcpy(body, s->data + s->off + 4, len);
        body[len] = '\0';
        *ret = (struct kube_http_response) {
                .status = statuses[s->data[s->off] % ELEMENTSOF(statuses)],
                .retry_after = (usec_t) s->data[s->off + 1] * USEC_PER_SEC,
                .body = body,
                .body_size = len,
        };
        s->off += 4 + len;
        return 0;
}

static const struct kube_transport_ops fake_transport = { .perform = fake_perform };

static void fake_sleep(void *userdata, usec_t usec) {
        struct script *s = userdata;

        clock_scripted_advance(&s->clock, usec);
}

static const char *sa_dir(void) {
        static char dir[] = "/tmp/pglease-fuzz-sa-XXXXXX";
        static bool made;

        if (!made) {
                _cleanup_free_ char *token = NULL;

                if (!mkdtemp(dir))
                        abort();
                token = strdup_printf("%s/token", dir);
                if (!token || write_file_atomic(token, "fuzz-token\n", 0600) < 0)
                        abort();
                made = true;
        }
        return dir;
}

static void run_operation(struct dcs *dcs, unsigned op, struct script *s) {
        _cleanup_(dcs_leader_freep) struct dcs_leader *l = NULL;
        _cleanup_(dcs_member_list_freep) struct dcs_member_list *m = NULL;
        _cleanup_free_ char *err = NULL;
        usec_t deadline = clock_now(&s->clock_ops) + 3 * USEC_PER_SEC;
        struct dcs_leader want = { .holder = (char *) "pg-0", .lease_duration = 10 * USEC_PER_SEC,
                                   .version = (char *) "41", .optime_timeline = 3, .optime_lsn = 0x3000060 };
        struct dcs_member self = { .name = (char *) "pg-0", .role = MEMBER_ROLE_PRIMARY, .state = (char *) "running",
                                   .host = (char *) "10.0.0.5", .port = 5432, .api_version = (char *) "0.1.0" };

        switch (op % 6) {
        case 0:
                (void) dcs->ops->leader_get(dcs->userdata, deadline, &l, &err);
                break;
        case 1:
                (void) dcs->ops->leader_create(dcs->userdata, &want, deadline, &l, &err);
                break;
        case 2:
                /* A read first, so that the replace starts from its base. */
                (void) dcs->ops->leader_get(dcs->userdata, deadline, &l, &err);
                l = dcs_leader_free(l);
                (void) dcs->ops->leader_update(dcs->userdata, &want, deadline, &l, &err);
                break;
        case 3:
                (void) dcs->ops->member_list(dcs->userdata, deadline, &m, &err);
                break;
        case 4:
                (void) dcs->ops->member_publish(dcs->userdata, &self, deadline, &err);
                (void) dcs->ops->member_publish(dcs->userdata, &self, deadline, &err);
                break;
        default:
                (void) dcs->ops->event_post(dcs->userdata, "Warning", "Fenced", "renew deadline passed", deadline,
                                            &err);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct script s = { .data = data, .size = size, .off = 1 };
        struct dcs dcs = {};
        struct dcs_kube_options o = {
                .namespace = "default",
                .cluster = "pg",
                .pod_name = "pg-0",
                .kube = {
                        .serviceaccount_dir = sa_dir(),
                        .server = "https://k8s.test:6443",
                        .attempt_timeout = USEC_PER_SEC,
                        .transport = &fake_transport,
                        .transport_userdata = &s,
                        .sleep = fake_sleep,
                        .sleep_userdata = &s,
                },
        };

        if (size < 1)
                return 0;
        clock_scripted_init(&s.clock, &s.clock_ops);
        if (dcs_kube_new(&o, &s.clock_ops, &dcs, NULL) < 0)
                abort();
        run_operation(&dcs, data[0], &s);
        if (dcs.ops->free)
                dcs.ops->free(dcs.userdata);
        return 0;
}
