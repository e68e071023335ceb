/* api-stats.c: per-verb, per-code counters and latency buckets of the API
 * server requests, updated with relaxed atomics (the renewer's thread
 * writes its client's, the loop reads them for /metrics). */
#include <string.h>

#include "api-stats.h"
#include "util.h"

static const char *const verbs[_API_VERB_MAX] = {
        [API_VERB_GET] = "GET", [API_VERB_POST] = "POST", [API_VERB_PUT] = "PUT",
        [API_VERB_PATCH] = "PATCH", [API_VERB_DELETE] = "DELETE",
};

static const int codes[API_STATS_N_CODES] = { -1, 0, 200, 201, 400, 401, 403, 404, 409, 410, 422, 429, 500, 502, 503, 504 };

static const usec_t bounds[API_STATS_N_BUCKETS] = {
        5 * USEC_PER_MSEC, 10 * USEC_PER_MSEC, 25 * USEC_PER_MSEC, 50 * USEC_PER_MSEC, 100 * USEC_PER_MSEC,
        250 * USEC_PER_MSEC, 500 * USEC_PER_MSEC, USEC_PER_SEC, 2500 * USEC_PER_MSEC, 5 * USEC_PER_SEC, UINT64_MAX,
};

int api_verb_from_method(const char *method) {
        for (int i = 0; i < _API_VERB_MAX; i++)
                if (streq(method, verbs[i]))
                        return i;
        return -EINVAL;
}

const char *api_verb_to_string(enum api_verb v) {
        return v < _API_VERB_MAX ? verbs[v] : NULL;
}

int api_stats_code(int i) {
        return i >= 0 && i < API_STATS_N_CODES ? codes[i] : -1;
}

usec_t api_stats_bucket_bound(int i) {
        return i >= 0 && i < API_STATS_N_BUCKETS ? bounds[i] : UINT64_MAX;
}

void api_stats_record(struct api_stats *s, const char *method, int code, usec_t latency) {
        int v = api_verb_from_method(method), c = 0, b = 0;

        if (!s || v < 0)
                return;
        for (int i = 1; i < API_STATS_N_CODES; i++)
                if (codes[i] == code)
                        c = i;
        while (b < API_STATS_N_BUCKETS - 1 && latency > bounds[b])
                b++;
        __atomic_fetch_add(&s->count[v][c], 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&s->bucket[v][b], 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&s->sum_usec[v], latency, __ATOMIC_RELAXED);
}

void api_stats_copy(const struct api_stats *s, struct api_stats *ret) {
        for (int v = 0; v < _API_VERB_MAX; v++) {
                for (int c = 0; c < API_STATS_N_CODES; c++)
                        ret->count[v][c] = __atomic_load_n(&s->count[v][c], __ATOMIC_RELAXED);
                for (int b = 0; b < API_STATS_N_BUCKETS; b++)
                        ret->bucket[v][b] = __atomic_load_n(&s->bucket[v][b], __ATOMIC_RELAXED);
                ret->sum_usec[v] = __atomic_load_n(&s->sum_usec[v], __ATOMIC_RELAXED);
        }
}
