/* fake-kube.c: a scripted API server for the Kubernetes client: a
 * transport that answers each request with the next canned answer on a
 * scripted clock and records what was sent, a sleep that moves that clock,
 * and a service account directory (token "tok-1", namespace "db");
 * shared by the client's and the rolling update's tests. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "fake-kube.h"
#include "util.h"

static char *dup_or_null(const char *s) {
        return s ? strdup(s) : NULL;
}

static int fake_perform(void *userdata, const struct kube_http_request *req, usec_t timeout,
                        struct kube_http_response *ret, char **reterr_msg) {
        struct fake_kube *f = userdata;
        const struct canned *c;
        unsigned i = f->calls++;

        assert_true(i < MAX_CALLS);
        if (i >= f->n_script)
                fail_msg("unexpected request %u: %s %s", i, req->method, req->path);
        c = &f->script[i];
        f->method[i] = strdup(req->method);
        f->path[i] = strdup(req->path);
        f->body[i] = dup_or_null(req->body);
        f->token[i] = dup_or_null(req->token);
        f->ctype[i] = dup_or_null(req->content_type);
        f->at[i] = clock_now(&f->clock_ops);
        f->timeout[i] = timeout;
        if (c->takes > timeout) {
                clock_scripted_advance(&f->clock, timeout);
                (void) set_error_msg(reterr_msg, "Operation timed out");
                return -ETIMEDOUT;
        }
        clock_scripted_advance(&f->clock, c->takes);
        if (c->error)
                return c->error;
        *ret = (struct kube_http_response) {
                .status = c->status,
                .body = strdup(strempty(c->body)),
                .body_size = strlen(strempty(c->body)),
                .retry_after = c->retry_after,
        };
        return 0;
}

static const struct kube_transport_ops fake_transport = { .perform = fake_perform };

static void fake_sleep(void *userdata, usec_t usec) {
        struct fake_kube *f = userdata;

        assert_true(f->sleeps < MAX_CALLS);
        f->slept[f->sleeps++] = usec;
        clock_scripted_advance(&f->clock, usec);
}

void fake_kube_write_file(const char *dir, const char *name, const char *content) {
        _cleanup_free_ char *p = strdup_printf("%s/%s", dir, name);

        assert_int_equal(write_file_atomic(p, content, 0600), 0);
}

static void remove_file(const char *dir, const char *name) {
        _cleanup_free_ char *p = strdup_printf("%s/%s", dir, name);

        (void) unlink(p);
}

void fake_kube_options(struct fake_kube *f, struct kube_options *o) {
        *o = (struct kube_options) {
                .serviceaccount_dir = f->dir,
                .server = "https://k8s.test:6443",
                .transport = &fake_transport,
                .transport_userdata = f,
                .sleep = fake_sleep,
                .sleep_userdata = f,
        };
}

struct fake_kube *fake_kube_new(void) {
        struct fake_kube *f = calloc(1, sizeof(*f));

        assert_non_null(f);
        f->clock = (struct clock_scripted) { .monotonic = 1000 * USEC_PER_SEC, .realtime = 1764102771ULL * USEC_PER_SEC };
        clock_scripted_init(&f->clock, &f->clock_ops);
        strcpy(f->dir, "/tmp/test-kube-XXXXXX");
        assert_non_null(mkdtemp(f->dir));
        fake_kube_write_file(f->dir, "token", "tok-1\n");
        fake_kube_write_file(f->dir, "namespace", "db\n");
        unsetenv("KUBECONFIG");
        return f;
}

void fake_kube_free(struct fake_kube *f) {
        kube_free(f->kube);
        for (unsigned i = 0; i < f->calls && i < MAX_CALLS; i++) {
                free(f->method[i]);
                free(f->path[i]);
                free(f->body[i]);
                free(f->token[i]);
                free(f->ctype[i]);
        }
        remove_file(f->dir, "token");
        remove_file(f->dir, "namespace");
        (void) rmdir(f->dir);
        free(f);
}
