/* fake-kube.h: a scripted API server for the Kubernetes client: a
 * transport that answers each request with the next canned answer on a
 * scripted clock and records what was sent, a sleep that moves that clock,
 * and a service account directory (token "tok-1", namespace "db");
 * shared by the client's and the rolling update's tests. */
#ifndef PGLEASE_FAKE_KUBE_H
#define PGLEASE_FAKE_KUBE_H

#include "clock.h"
#include "kube.h"

#define MAX_CALLS 64

struct canned {
        long status;
        const char *body;
        usec_t retry_after;
        int error;                   /* a transport error instead of an answer */
        usec_t takes;                /* how long the attempt lasts on the clock */
};

struct fake_kube {
        struct clock_scripted clock;
        struct clock_ops clock_ops;
        const struct canned *script;
        size_t n_script;
        unsigned calls;
        char *method[MAX_CALLS], *path[MAX_CALLS], *body[MAX_CALLS], *token[MAX_CALLS], *ctype[MAX_CALLS];
        usec_t at[MAX_CALLS], timeout[MAX_CALLS];
        unsigned sleeps;
        usec_t slept[MAX_CALLS];
        char dir[64];
        struct kube *kube;           /* a client of the test's own, freed with the fake */
};

/* The clock at 1000 s (monotonic) and 2025-11-25T20:32:51Z (wall), the
 * service account directory written, $KUBECONFIG unset. */
struct fake_kube *fake_kube_new(void);
void fake_kube_free(struct fake_kube *f);

/* Client options that reach the fake: its transport, sleep and service
 * account, server https://k8s.test:6443. */
void fake_kube_options(struct fake_kube *f, struct kube_options *o);

void fake_kube_write_file(const char *dir, const char *name, const char *content);

/* The answers to the next requests, in order; one more request fails the test. */
#define SCRIPT(f, ...)                                                          \
        do {                                                                    \
                static const struct canned _s[] = { __VA_ARGS__ };              \
                (f)->script = _s;                                               \
                (f)->n_script = ELEMENTSOF(_s);                                 \
        } while (0)

/* The API server's error body. */
#define STATUS(code, reason, msg) \
        "{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":\"Failure\",\"message\":\"" msg "\",\"reason\":\"" reason "\",\"code\":" #code "}"

/* A deadline d from now on the fake's clock. */
static inline usec_t in(struct fake_kube *f, usec_t d) {
        return clock_now(&f->clock_ops) + d;
}

#endif
