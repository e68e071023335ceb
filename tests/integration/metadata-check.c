/* metadata-check.c: a small driver of lib/metadata and lib/pgconn for the
 * integration tests, which run it against real servers and read its output.
 * Usage: metadata-check CONNINFO SCHEMA COMMAND [ARGS...] */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "metadata.h"
#include "pgconn.h"
#include "util.h"

#define CONNECT_TIMEOUT (2 * USEC_PER_SEC)
#define STATEMENT_TIMEOUT (10 * USEC_PER_SEC)

static int fail(int r, const char *what, const char *msg) {
        printf("error %s %s: %s\n", strerrorname_np(-r) ?: "?", what, strempty(msg));
        return 2;
}

static int connect_or_fail(const char *conninfo, PGconn **ret) {
        _cleanup_free_ char *err = NULL;
        int r = pgconn_connect(conninfo, "metadata-check", CONNECT_TIMEOUT, STATEMENT_TIMEOUT, ret, &err);

        return r < 0 ? fail(r, "connect", err) : 0;
}

static int cmd_status(PGconn *c) {
        _cleanup_free_ char *err = NULL, *cur = NULL, *rcv = NULL, *rep = NULL;
        struct pg_node_status s = {};
        int r = pgconn_query_status(c, &s, &err);

        if (r < 0)
                return fail(r, "status", err);
        cur = pg_lsn_format(s.current_lsn);
        rcv = pg_lsn_format(s.receive_lsn);
        rep = pg_lsn_format(s.replay_lsn);
        printf("in_recovery=%d timeline=%" PRIu32 " system_identifier=%" PRIu64
               " current_lsn=%s receive_lsn=%s replay_lsn=%s streaming=%d"
               " upstream_host=%s upstream_port=%d replay_lag=%" PRIu64 "\n",
               s.in_recovery, s.timeline, s.system_identifier, cur, rcv, rep,
               s.wal_receiver_streaming, s.upstream_host ?: "-", s.upstream_port, s.replay_lag);
        pg_node_status_done(&s);
        return 0;
}

static int cmd_events(PGconn *c, const char *schema, int argc, char **argv) {
        _cleanup_free_ char *err = NULL;
        struct metadata_event_row *rows = NULL;
        size_t n = 0;
        int r;

        r = metadata_events_list(c, schema, argc > 0 ? strtoul(argv[0], NULL, 10) : 0,
                                 argc > 1 ? argv[1] : NULL, &rows, &n, &err);
        if (r < 0)
                return fail(r, "events", err);
        for (size_t i = 0; i < n; i++)
                printf("%" PRId64 "\t%" PRIu64 "\t%s\t%s\t%d\t%s\n", rows[i].id, rows[i].at,
                       rows[i].node, rows[i].event, rows[i].successful, rows[i].details);
        metadata_event_rows_free(rows, n);
        return 0;
}

static int cmd_history(PGconn *c, const char *schema) {
        _cleanup_free_ char *err = NULL;
        struct metadata_history_row *rows = NULL;
        size_t n = 0;
        int r = metadata_history_list(c, schema, 0, &rows, &n, &err);

        if (r < 0)
                return fail(r, "history", err);
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *lsn = pg_lsn_format(rows[i].switch_lsn);
                printf("%" PRIu32 "\t%s\t%s\t%s\n", rows[i].timeline, lsn, rows[i].new_primary, rows[i].reason);
        }
        metadata_history_rows_free(rows, n);
        return 0;
}

/* Queues `count` events without a server, tries a flush that must fail,
 * then waits for a line on stdin (the test starts the server meanwhile),
 * reconnects and flushes. */
static int cmd_queue(const char *conninfo, const char *schema, unsigned count, size_t capacity) {
        struct metadata_event_queue q;
        _cleanup_free_ char *err = NULL;
        _cleanup_(pgconn_closep) PGconn *c = NULL;
        size_t written = 0;
        char line[16];
        int r;

        if (metadata_event_queue_init(&q, capacity) < 0)
                return 2;
        for (unsigned i = 0; i < count; i++) {
                _cleanup_free_ char *event = strdup_printf("queued-%u", i);
                _cleanup_free_ char *details = strdup_printf("{\"seq\": %u}", i);
                struct metadata_event e = {
                        .at = (usec_t) 1700000000 * USEC_PER_SEC + i, .node = (char *) "pg-q",
                        .event = event, .successful = true, .details = details,
                };
                (void) metadata_event_queue_push(&q, &e);
        }
        r = pgconn_connect(conninfo, "metadata-check", CONNECT_TIMEOUT, STATEMENT_TIMEOUT, &c, &err);
        printf("offline connect=%s queued=%zu dropped=%" PRIu64 "\n",
               r < 0 ? strerrorname_np(-r) : "ok", metadata_event_queue_size(&q), q.n_dropped);
        fflush(stdout);
        if (!fgets(line, sizeof(line), stdin)) {
                metadata_event_queue_done(&q);
                return 2;
        }
        c = pgconn_close(c);
        r = pgconn_connect(conninfo, "metadata-check", CONNECT_TIMEOUT, STATEMENT_TIMEOUT, &c, &err);
        if (r >= 0)
                r = metadata_event_queue_flush(&q, c, schema, &written, &err);
        printf("online result=%s written=%zu remaining=%zu\n", r < 0 ? strerrorname_np(-r) : "ok",
               written, metadata_event_queue_size(&q));
        metadata_event_queue_done(&q);
        return r < 0 ? 2 : 0;
}

static int run_command(PGconn *c, const char *schema, const char *cmd, int argc, char **argv) {
        _cleanup_free_ char *err = NULL;
        unsigned n = 0;
        uint64_t n64 = 0;
        int r;

        if (streq(cmd, "status"))
                return cmd_status(c);
        if (streq(cmd, "events"))
                return cmd_events(c, schema, argc, argv);
        if (streq(cmd, "history"))
                return cmd_history(c, schema);
        if (streq(cmd, "migrate") && argc == 1) {
                r = metadata_migrate(c, schema, argv[0], &n, &err);
                if (r < 0)
                        return fail(r, "migrate", err);
                unsigned version = 0;
                r = metadata_schema_version(c, schema, &version, &err);
                if (r < 0)
                        return fail(r, "schema_version", err);
                printf("applied %u version %u\n", n, version);
                return 0;
        }
        if (streq(cmd, "node") && argc == 5) {
                _cleanup_strv_free_ char **tags = NULL;
                if (strv_split_comma(argv[4], &tags) < 0)
                        return 2;
                struct metadata_node node = {
                        .name = argv[0], .conninfo = argv[1], .role = argv[2],
                        .priority = atoi(argv[3]), .tags = tags,
                };
                r = metadata_node_upsert(c, schema, &node, &err);
        } else if (streq(cmd, "event") && argc == 5) {
                struct metadata_event e = {
                        .node = argv[0], .event = argv[1], .successful = streq(argv[2], "t"),
                        .details = isempty(argv[3]) ? NULL : argv[3], .at = strtoull(argv[4], NULL, 10),
                };
                r = metadata_event_insert(c, schema, &e, &err);
        } else if (streq(cmd, "history-insert") && (argc == 4 || argc == 5)) {
                uint64_t lsn = PG_LSN_INVALID;
                if (!streq(argv[1], "-") && pg_lsn_parse(argv[1], &lsn) < 0)
                        return 2;
                r = metadata_history_insert(c, schema, (uint32_t) strtoul(argv[0], NULL, 10), lsn,
                                            argv[2], argc == 5 ? argv[4] : NULL, argv[3], &err);
        } else if (streq(cmd, "sample") && argc == 1) {
                r = metadata_sample_replication(c, schema, argv[0], &n, &err);
                if (r >= 0)
                        printf("rows %u\n", n);
        } else if (streq(cmd, "prune") && argc == 1) {
                usec_t retention;
                if (parse_duration(argv[0], &retention) < 0)
                        return 2;
                r = metadata_prune_monitoring(c, schema, retention, &n64, &err);
                if (r >= 0)
                        printf("deleted %" PRIu64 "\n", n64);
        } else {
                fprintf(stderr, "unknown command or wrong arguments: %s\n", cmd);
                return 2;
        }
        return r < 0 ? fail(r, cmd, err) : 0;
}

int main(int argc, char **argv) {
        _cleanup_(pgconn_closep) PGconn *c = NULL;
        const char *schema;
        int r;

        if (argc < 4) {
                fprintf(stderr, "usage: %s CONNINFO SCHEMA COMMAND [ARGS...]\n", argv[0]);
                return 2;
        }
        setvbuf(stdout, NULL, _IOLBF, 0);
        schema = isempty(argv[2]) ? NULL : argv[2];
        if (streq(argv[3], "queue") && argc == 6)
                return cmd_queue(argv[1], schema, (unsigned) strtoul(argv[4], NULL, 10),
                                 strtoul(argv[5], NULL, 10));
        r = connect_or_fail(argv[1], &c);
        if (r != 0)
                return r;
        return run_command(c, schema, argv[3], argc - 4, argv + 4);
}
