/* api-stats.h: counts and latencies of the API server requests a client
 * sent, by verb and status code, for the agent's /metrics. Written by the
 * client's thread, read by the loop's: every field with relaxed atomics. */
#ifndef PGLEASE_API_STATS_H
#define PGLEASE_API_STATS_H

#include <stdint.h>

#include "macro.h"

enum api_verb { API_VERB_GET, API_VERB_POST, API_VERB_PUT, API_VERB_PATCH, API_VERB_DELETE, _API_VERB_MAX };

/* Index 0 counts every other code; code 0 is a transport error. */
#define API_STATS_N_CODES 16
#define API_STATS_N_BUCKETS 11  /* the last is +Inf */

struct api_stats {
        uint64_t count[_API_VERB_MAX][API_STATS_N_CODES];
        uint64_t bucket[_API_VERB_MAX][API_STATS_N_BUCKETS]; /* not cumulative */
        uint64_t sum_usec[_API_VERB_MAX];
};

/* -EINVAL for a method not in the table. */
int api_verb_from_method(const char *method);
const char *api_verb_to_string(enum api_verb v);
/* The code counted at index i (-1 for index 0, "other"). */
int api_stats_code(int i);
/* Upper bound of bucket i in microseconds; UINT64_MAX for the last. */
usec_t api_stats_bucket_bound(int i);

void api_stats_record(struct api_stats *s, const char *method, int code, usec_t latency);
/* A consistent-enough copy for formatting (each field read atomically). */
void api_stats_copy(const struct api_stats *s, struct api_stats *ret);

#endif
