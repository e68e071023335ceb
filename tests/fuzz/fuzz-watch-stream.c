/* fuzz-watch-stream.c: libFuzzer target for a Lease watch's stream: the
 * bytes after the first as the server's body, cut into chunks whose sizes
 * the first byte seeds, fed to the state machine (kube-watch.c line
 * buffer and event parser, lease-watch.c), which must keep its bounds and
 * its record whatever comes; a list body then restarts it. */
#include <stddef.h>
#include <stdint.h>

#include "kube-yaml.h"
#include "lease-watch.h"
#include "util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        static const char list[] =
                "{\"metadata\":{\"resourceVersion\":\"5\"},\"items\":[{\"metadata\":{\"name\":\"pg-leader\","
                "\"resourceVersion\":\"5\"},\"spec\":{\"holderIdentity\":\"pg-0\",\"leaseDurationSeconds\":10}}]}";
        const struct lease_watch_options o = { .stall_held = 5 * USEC_PER_SEC, .stall_idle = 60 * USEC_PER_SEC,
                                               .max_line = 4096 };
        _cleanup_(cjson_deletep) cJSON *l = cJSON_Parse(list);
        struct lease_watch w;
        unsigned seed;
        usec_t now = USEC_PER_SEC;

        if (size < 1 || !l)
                return 0;
        seed = data[0];
        data++, size--;
        lease_watch_init(&w, &o);
        if (lease_watch_on_list(&w, l, now) < 0)
                __builtin_trap();
        lease_watch_on_stream_start(&w, now);
        while (size > 0 && w.state == LEASE_WATCH_STREAMING) {
                size_t n = MIN(size, (size_t) (seed % 61) + 1);

                seed = seed * 1103515245u + 12345u;
                now += USEC_PER_MSEC;
                (void) lease_watch_on_data(&w, (const char *) data, n, now);
                if (w.buf.size > o.max_line + 64)
                        __builtin_trap();
                data += n, size -= n;
        }
        /* Whatever the stream did, the record is a Lease or none, and a
         * broken stream can start over. */
        if (w.record && !w.record->raw)
                __builtin_trap();
        (void) lease_watch_check_stall(&w, now + 10 * USEC_PER_SEC);
        lease_watch_on_end(&w, 0, -EIO, "end", now);
        (void) lease_watch_on_list(&w, l, now);
        lease_watch_done(&w);
        return 0;
}
