/* agent.h: the daemon's state: configuration, logger, event loop, the
 * injected clock, and the hooks the control loop fills in. */
#ifndef PGLEASE_AGENT_H
#define PGLEASE_AGENT_H

#include <systemd/sd-event.h>

#include "clock.h"
#include "decide.h"
#include "node.h"
#include "config.h"
#include "log.h"

struct agent {
        struct config config;
        struct logger log;
        const struct clock_ops *clock;

        char *config_path;          /* NULL: no file */
        char **settings;            /* --set KEY=VALUE, re-applied on reload */
        char **envp;

        bool election_only;         /* --election-only: the lease and nothing else */
        struct node node;
        bool have_node;
        struct agent_state state;
        bool have_state;
        struct control_handlers *control; /* the control socket (control-handlers.c) */
        struct http_server *http;   /* the HTTP API (http-server.c); NULL when off */
        struct failsafe_client *failsafe; /* POST /failsafe to the members (failsafe-client.c); NULL when off */
        struct failsafe_responder *failsafe_responder; /* answers them (failsafe-responder.c); NULL when off */
        struct rollout_worker *rollout; /* the leader's rolling updates (rollout-worker.h); NULL when off */

        sd_event *event;
        sd_event_source *tick_source;
        sd_event_source *watch_io;      /* the Lease watch's epoll fd (node-watch.c) */
        sd_event_source *watch_timer;   /* its next deadline: curl's timers, the stall bound, a new stream */
        uint64_t watch_breaks_logged;   /* breaks of the Lease watch logged so far */
        uint64_t pod_watch_breaks_logged; /* ... and of the Pod watch */
        unsigned random_state;

        usec_t last_tick;           /* monotonic; 0 before the first tick */
        uint64_t ticks;
        bool stopping;
        int exit_status;
};

/* Loads the configuration from the agent's sources (file, env, flags). */
int agent_load_config(struct agent *a, struct config *ret, char **reterr_msg);

/* Runs the daemon until SIGTERM/SIGINT; returns the exit status. */
int agent_run(struct agent *a);

/* One tick of the control loop: observe, decide, act. */
/* late: how much after its scheduled time the tick started (TILT). */
void agent_tick(struct agent *a, usec_t now, usec_t late);

void agent_log(const struct agent *a, enum log_level level, const char *event, const char *fmt, ...) _printf_(4, 5);

#endif
