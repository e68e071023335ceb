/* fuzz-watch-stream.c: libFuzzer target for a watch's stream: the bytes
 * after the first as the server's body, cut into chunks whose sizes the
 * first byte seeds, fed to the state machine (kube-watch.c line buffer and
 * event parser, kube-watch-stream.c) of a Lease watch (lease-watch.c) and
 * of a member Pods' watch (pod-watch.c), which must keep their bounds and
 * their views whatever comes; a list body then restarts them. */
#include <stddef.h>
#include <stdint.h>

#include "kube-yaml.h"
#include "lease-watch.h"
#include "pod-watch.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Feeds the chunks to w's stream; false when it broke its line bound. */
static bool feed(struct kube_watch *w, const uint8_t *data, size_t size, unsigned seed, size_t max_line,
                 usec_t *now) {
        while (size > 0 && w->state == KUBE_WATCH_STREAMING) {
                size_t n = MIN(size, (size_t) (seed % 61) + 1);

                seed = seed * 1103515245u + 12345u;
                *now += USEC_PER_MSEC;
                (void) kube_watch_on_data(w, (const char *) data, n, *now);
                if (w->buf.size > max_line + 64)
                        return false;
                data += n, size -= n;
        }
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char list[] =
                "{\"metadata\":{\"resourceVersion\":\"5\"},\"items\":[{\"metadata\":{\"name\":\"pg-leader\","
                "\"resourceVersion\":\"5\"},\"spec\":{\"holderIdentity\":\"pg-0\",\"leaseDurationSeconds\":10}}]}";
        static const char pods[] =
                "{\"metadata\":{\"resourceVersion\":\"5\"},\"items\":[{\"metadata\":{\"name\":\"pg-0\","
                "\"annotations\":{\"pglease.io/status\":\"{\\\"role\\\":\\\"primary\\\"}\"}}}]}";
        const struct lease_watch_options o = { .stall_held = 5 * USEC_PER_SEC, .stall_idle = 60 * USEC_PER_SEC,
                                               .max_line = 4096 };
        const struct pod_watch_options po = { .stall = 21 * USEC_PER_SEC, .max_line = 4096 };
        _cleanup_(cjson_deletep) cJSON *l = cJSON_Parse(list), *p = cJSON_Parse(pods);
        _cleanup_(dcs_member_list_freep) struct dcs_member_list *members = NULL;
        struct lease_watch w;
        struct pod_watch pw;
        unsigned seed;
        usec_t now = USEC_PER_SEC, pnow = USEC_PER_SEC;

        if (size < 1 || !l || !p)
                return 0;
        seed = data[0];
        data++, size--;
        lease_watch_init(&w, &o);
        pod_watch_init(&pw, &po);
        if (kube_watch_on_list(&w.s, l, now) < 0 || kube_watch_on_list(&pw.s, p, now) < 0)
                __builtin_trap();
        kube_watch_on_stream_start(&w.s, now);
        kube_watch_on_stream_start(&pw.s, now);
        if (!feed(&w.s, data, size, seed, o.max_line, &now) || !feed(&pw.s, data, size, seed, po.max_line, &pnow))
                __builtin_trap();
        /* Whatever the stream did, the record is a Lease or none, the Pods
         * a member list, and a broken stream can start over. */
        if (w.record && !w.record->raw)
                __builtin_trap();
        if (pod_watch_members(&pw, &members) < 0 || !members)
                __builtin_trap();
        (void) kube_watch_check_stall(&w.s, now + 10 * USEC_PER_SEC);
        kube_watch_on_end(&w.s, 0, -EIO, "end", now);
        (void) kube_watch_on_list(&w.s, l, now);
        kube_watch_on_end(&pw.s, 410, 0, NULL, pnow);
        (void) kube_watch_on_list(&pw.s, p, pnow);
        lease_watch_done(&w);
        pod_watch_done(&pw);
        return 0;
}
