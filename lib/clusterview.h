/* clusterview.h: what `agentctl cluster show` prints, as pure functions:
 * the lease and member records (and optional probes) in, one view with lag,
 * status and warnings out, rendered as a table or as the JSON of
 * docs/agentctl-cluster-show.schema.json. */
#ifndef PGLEASE_CLUSTERVIEW_H
#define PGLEASE_CLUSTERVIEW_H

#include <cjson/cJSON.h>
#include <stdint.h>

#include "dcs.h"
#include "macro.h"

#define CLUSTERVIEW_SCHEMA_VERSION 1

/* What agentctl learned by connecting to one member's Postgres. */
struct clusterview_probe {
        bool probed;
        bool reachable;
        bool in_recovery;
        uint32_t timeline;
        uint64_t lsn;            /* primary: flush LSN; standby: received */
        uint64_t replay_lsn;
        double lag_seconds;      /* standby replay delay; < 0 unknown */
};

struct clusterview_source {
        const char *cluster;
        const char *source;                     /* "agent" or "dcs" */
        const struct dcs_leader *lease;         /* NULL: could not be read */
        double lease_age;                       /* seconds since the record last changed; < 0 unknown */
        const struct dcs_member_list *members;  /* NULL: none read */
        const struct clusterview_probe *probes; /* NULL, or one per member */
        usec_t now_realtime;                    /* ages heartbeats (display only) */
        usec_t status_interval;
        usec_t lease_duration;                  /* a member silent for longer is not shown as a primary; 0 unknown */
        uint64_t maximum_lag;
};

struct clusterview_row {
        char *name;
        char *role;              /* "primary", "replica", "unknown" */
        char *status;            /* the agent's state, or "unreachable" / "no heartbeat" / "stopped" */
        bool leader;             /* holds the lease */
        uint32_t timeline;       /* 0: unknown */
        uint64_t lsn;            /* 0: unknown */
        uint64_t replay_lsn;
        bool has_lag;
        uint64_t lag_bytes;
        double lag_seconds;      /* < 0 unknown */
        bool stale;              /* LSN or lag from a member record, not read live from both servers */
        int priority;
        bool nofailover;
        char **tags;
        char *host;
        int port;
        double heartbeat_age;    /* < 0: none */
        int reachable;           /* -1 not probed, 0, 1 */
};

struct clusterview {
        char *cluster;
        char *source;
        bool lease_known;
        char *holder;            /* "" when released */
        double lease_age;
        bool lease_expired;      /* the holder has not renewed for longer than the lease duration */
        int64_t transitions;
        bool paused;
        char **sync;
        char *switchover;
        uint32_t optime_timeline;
        uint64_t optime_lsn;
        size_t n;
        struct clusterview_row *rows;
        char **warnings;
};

int clusterview_build(const struct clusterview_source *src, struct clusterview **ret);
struct clusterview *clusterview_free(struct clusterview *v);
DEFINE_POINTER_CLEANUP_FUNC(struct clusterview, clusterview_free);

/* The header line, the table, then one "WARNING: ..." line per warning. */
int clusterview_format_table(const struct clusterview *v, char **ret);
int clusterview_to_json(const struct clusterview *v, cJSON **ret);

/* "0 B", "512 B", "1.5 MiB" (powers of 1024). */
char *clusterview_format_bytes(uint64_t bytes);

#endif
