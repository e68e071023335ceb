/* node.c: this member as the agent's modules see it: the configuration
 * turned into what the other modules take (DCS, pgctl, upstreams, password
 * files, conninfo strings), and the handles kept from tick to tick. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "dcs-kube.h"
#include "httpapi.h"
#include "node.h"
#include "pgconn.h"
#include "pglease-build.h"
#include "util.h"

#define DEBIAN_PG15_BINDIR "/usr/lib/postgresql/15/bin"

int node_resolve_bindir(const char *configured, char **ret) {
        _cleanup_free_ char *out = NULL, *version = NULL;
        char *s;

        if (!isempty(configured)) {
                s = strdup(configured);
                goto done;
        }
        /* pg_config may belong to another major version: check it. */
        {
                char *const argv_v[] = { "pg_config", "--version", NULL };
                char *const argv_b[] = { "pg_config", "--bindir", NULL };

                if (pgctl_run(argv_v, NULL, 5 * USEC_PER_SEC, &version, NULL) >= 0 && version &&
                    strstr(version, "PostgreSQL 15") &&
                    pgctl_run(argv_b, NULL, 5 * USEC_PER_SEC, &out, NULL) >= 0 && out) {
                        s = strdup(strstrip(out));
                        goto done;
                }
        }
        s = strdup(DEBIAN_PG15_BINDIR);
done:
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

/* A password given inline in the configuration is written to a private
 * file, so that every consumer (initdb --pwfile, the passfile, SCRAM
 * verifiers) reads files and never a command line. */
static int resolve_password_file(const char *run_dir, const char *role, const char *file, const char *inline_pw,
                                 char **ret, char **reterr_msg) {
        _cleanup_free_ char *dir = NULL, *path = NULL, *content = NULL;
        int r;

        if (!isempty(file)) {
                *ret = strdup(file);
                return *ret ? 0 : -ENOMEM;
        }
        if (isempty(inline_pw)) {
                *ret = NULL;
                return 0;
        }
        dir = strdup_printf("%s/secrets", run_dir);
        path = strdup_printf("%s/secrets/%s", run_dir, role);
        content = strdup_printf("%s\n", inline_pw);
        if (!dir || !path || !content)
                return -ENOMEM;
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return set_error_msg(reterr_msg, "cannot create %s: %m", dir), -errno;
        r = write_file_atomic(path, content, 0600);
        if (r < 0)
                return set_error_msg(reterr_msg, "cannot write %s: %s", path, strerror(-r)), r;
        *ret = TAKE_PTR(path);
        return 0;
}

static int write_passfile(struct node *n, char **reterr_msg) {
        const struct {
                const char *user, *file;
        } roles[] = {
                { n->cfg->superuser, n->superuser_password_file },
                { n->cfg->replication_user, n->replication_password_file },
                { n->cfg->rewind_user, n->rewind_password_file },
        };
        int r;

        for (size_t i = 0; i < ELEMENTSOF(roles); i++) {
                if (isempty(roles[i].file))
                        continue;
                r = replication_passfile_set(n->passfile, roles[i].user, roles[i].file, reterr_msg);
                if (r < 0)
                        return r;
        }
        return 0;
}

void node_dcs_kube_options(const struct node *n, struct dcs_kube_options *ret) {
        *ret = (struct dcs_kube_options) {
                .namespace = isempty(n->cfg->namespace_) ? NULL : n->cfg->namespace_,
                .cluster = n->cfg->cluster_name,
                .pod_name = n->cfg->node_name,
                .kube = {
                        .kubeconfig = isempty(n->cfg->kube_config) ? NULL : n->cfg->kube_config,
                        .attempt_timeout = n->cfg->api_timeout,
                },
        };
}

static int node_create_dcs(struct node *n, char **reterr_msg) {
        struct dcs_kube_options o;
        int r;

        node_dcs_kube_options(n, &o);
        r = dcs_kube_new(&o, n->clock, &n->dcs, reterr_msg);
        if (r < 0)
                return r;
        n->have_dcs = true;
        return 0;
}

int node_init(struct node *n, const struct config *cfg, const struct clock_ops *clock, char **reterr_msg) {
        struct election_options eo;
        int r;

        *n = (struct node) { .cfg = cfg, .clock = clock };
        r = node_resolve_bindir(cfg->pg_bindir, &n->bindir);
        if (r < 0)
                goto fail;
        if (mkdir(cfg->run_dir, 0700) < 0 && errno != EEXIST) {
                r = -errno;
                set_error_msg(reterr_msg, "run_dir %s: %m", cfg->run_dir);
                goto fail;
        }
        if ((r = resolve_password_file(cfg->run_dir, "superuser", cfg->superuser_password_file, cfg->superuser_password,
                                       &n->superuser_password_file, reterr_msg)) < 0 ||
            (r = resolve_password_file(cfg->run_dir, "replication", cfg->replication_password_file, cfg->replication_password,
                                       &n->replication_password_file, reterr_msg)) < 0 ||
            (r = resolve_password_file(cfg->run_dir, "rewind", cfg->rewind_password_file, cfg->rewind_password,
                                       &n->rewind_password_file, reterr_msg)) < 0)
                goto fail;
        n->passfile = strdup_printf("%s/pgpass", cfg->run_dir);
        /* NULL: the migrations built into the binary (sql/embed.py). */
        n->sql_dir = isempty(cfg->sql_dir) ? NULL : strdup(cfg->sql_dir);
        if (!n->passfile || (!isempty(cfg->sql_dir) && !n->sql_dir)) {
                r = -ENOMEM;
                goto fail;
        }
        r = write_passfile(n, reterr_msg);
        if (r < 0)
                goto fail;
        r = pgctl_init(&n->pgctl, config_enum_to_string("pgctl", cfg->pgctl),
                       &(struct pgctl_config) {
                               .datadir = cfg->data_dir,
                               .run_dir = cfg->run_dir,
                               .bindir = n->bindir,
                               .clock = clock,
                       });
        if (r < 0) {
                set_error_msg(reterr_msg, "pgctl backend: %s", strerror(-r));
                goto fail;
        }
        r = node_create_dcs(n, reterr_msg);
        if (r < 0)
                goto fail;
        eo = (struct election_options) {
                .identity = cfg->node_name,
                .lease_duration = cfg->lease_duration,
                .renew_deadline = cfg->renew_deadline,
                .api_timeout = cfg->api_timeout,
        };
        r = election_init(&n->election, &eo, clock, &n->dcs);
        if (r < 0)
                goto fail;
        n->have_election = true;
        r = metadata_event_queue_init(&n->events, (size_t) cfg->event_queue_size);
        if (r < 0)
                goto fail;
        return 0;
fail:
        node_done(n);
        return r;
}

void node_done(struct node *n) {
        node_stop_renewer(n);
        node_stop_watches(n);
        if (n->have_election)
                election_done(&n->election);
        if (n->have_dcs && n->dcs.ops->free)
                n->dcs.ops->free(n->dcs.userdata);
        pgctl_done(&n->pgctl);
        pgconn_close(n->local);
        pgconn_close(n->primary);
        free(n->primary_key);
        slot_state_done(&n->slots);
        metadata_event_queue_done(&n->events);
        event_repeat_done(&n->event_repeat);
        free(n->metadata.history_old_primary);
        free(n->bindir);
        free(n->passfile);
        free(n->superuser_password_file);
        free(n->replication_password_file);
        free(n->rewind_password_file);
        free(n->sql_dir);
        free(n->last_published);
        strv_free(n->probe_unreachable);
        dcs_member_list_free(n->members);
        free(n->members_holder);
        node_failsafe_forget(n);
        *n = (struct node) {};
}

int node_failsafe_port(const struct node *n) {
        struct sockaddr_storage ss;
        socklen_t len;

        if (!n->cfg->failsafe_mode || isempty(n->cfg->failsafe_listen) ||
            httpapi_parse_listen(n->cfg->failsafe_listen, &ss, &len) < 0)
                return 0;
        return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *) &ss)->sin6_port : ((struct sockaddr_in *) &ss)->sin_port);
}

int node_failsafe_answered(struct node *n, const char *name, usec_t sent) {
        struct failsafe_answer *grown;

        for (size_t i = 0; i < n->n_failsafe_answers; i++)
                if (streq(n->failsafe_answers[i].name, name)) {
                        n->failsafe_answers[i].answered_sent = MAX(n->failsafe_answers[i].answered_sent, sent);
                        return 0;
                }
        grown = realloc(n->failsafe_answers, (n->n_failsafe_answers + 1) * sizeof *grown);
        if (!grown)
                return -ENOMEM;
        n->failsafe_answers = grown;
        grown[n->n_failsafe_answers] = (struct failsafe_answer) { .name = strdup(name), .answered_sent = sent };
        if (!grown[n->n_failsafe_answers].name)
                return -ENOMEM;
        n->n_failsafe_answers++;
        return 0;
}

void node_failsafe_forget(struct node *n) {
        for (size_t i = 0; i < n->n_failsafe_answers; i++)
                free(n->failsafe_answers[i].name);
        n->failsafe_answers = mfree(n->failsafe_answers);
        n->n_failsafe_answers = 0;
}

const char *node_connect_host(const struct node *n) {
        return isempty(n->cfg->connect_address) ? n->cfg->node_name : n->cfg->connect_address;
}

int node_local_conninfo(const struct node *n, char **ret) {
        _cleanup_free_ char *port = strdup_printf("%d", (int) n->cfg->pg_port);
        char *s;

        if (!port)
                return -ENOMEM;
        /* synchronous_commit=local: the agent's own writes (metadata) must
         * never wait for a synchronous standby and stall the loop. */
        s = pgconn_build_conninfo((const char *const[]) {
                "host", n->cfg->socket_dir, "port", port, "user", n->cfg->superuser,
                "dbname", n->cfg->database, "passfile", n->passfile,
                "options", "-c synchronous_commit=local", NULL });
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

int node_peer_conninfo(const struct node *n, const char *host, int port, char **ret) {
        _cleanup_free_ char *p = strdup_printf("%d", port);
        char *s;

        if (!p)
                return -ENOMEM;
        s = pgconn_build_conninfo((const char *const[]) {
                "host", host, "port", p, "user", n->cfg->superuser,
                "dbname", n->cfg->database, "passfile", n->passfile,
                "options", "-c synchronous_commit=local", NULL });
        if (!s)
                return -ENOMEM;
        *ret = s;
        return 0;
}

void node_replication_upstream(const struct node *n, const char *host, int port, struct upstream *ret) {
        *ret = (struct upstream) {
                .host = host,
                .port = port,
                .user = n->cfg->replication_user,
                .passfile = n->passfile,
                .application_name = n->cfg->node_name,
                .connect_timeout = n->cfg->connect_timeout,
        };
}

void node_rewind_upstream(const struct node *n, const char *host, int port, struct upstream *ret) {
        *ret = (struct upstream) {
                .host = host,
                .port = port,
                .user = n->cfg->rewind_user,
                .passfile = n->passfile,
                .application_name = n->cfg->node_name,
                .connect_timeout = n->cfg->connect_timeout,
        };
}

PGconn *node_local(struct node *n, char **reterr_msg) {
        _cleanup_free_ char *ci = NULL;

        if (n->local && PQstatus(n->local) == CONNECTION_OK)
                return n->local;
        n->local = pgconn_close(n->local);
        if (node_local_conninfo(n, &ci) < 0)
                return NULL;
        if (pgconn_connect(ci, "pglease-agent", n->cfg->connect_timeout, n->cfg->statement_timeout, &n->local, reterr_msg) < 0)
                return NULL;
        return n->local;
}

void node_local_reset(struct node *n) {
        n->local = pgconn_close(n->local);
}

PGconn *node_primary(struct node *n, const char *host, int port, char **reterr_msg) {
        _cleanup_free_ char *ci = NULL, *key = strdup_printf("%s:%d", host, port);

        if (!key)
                return NULL;
        if (n->primary && n->primary_key && streq(n->primary_key, key) && PQstatus(n->primary) == CONNECTION_OK)
                return n->primary;
        node_primary_reset(n);
        if (node_peer_conninfo(n, host, port, &ci) < 0)
                return NULL;
        if (pgconn_connect(ci, "pglease-agent", n->cfg->connect_timeout, n->cfg->statement_timeout, &n->primary, reterr_msg) < 0)
                return NULL;
        n->primary_key = TAKE_PTR(key);
        return n->primary;
}

void node_primary_reset(struct node *n) {
        n->primary = pgconn_close(n->primary);
        n->primary_key = mfree(n->primary_key);
}

bool node_data_present(const struct node *n) {
        _cleanup_free_ char *p = strdup_printf("%s/PG_VERSION", n->cfg->data_dir);

        return p && access(p, F_OK) == 0;
}

int node_bootstrap_options(const struct node *n, usec_t timeout, struct node_bootstrap *ret) {
        const struct config *cfg = n->cfg;
        struct node_bootstrap b = {};
        int r;

        r = strv_split_comma(cfg->hba_networks, &b.networks);
        if (r < 0)
                return r;
        /* 0 would let a slot hold back no WAL at all: nobody means that, so
         * it stands for "unlimited" (-1). */
        if (cfg->max_slot_wal_keep_size > 0) {
                b.max_slot_wal_keep_size = format_size(cfg->max_slot_wal_keep_size);
                if (!b.max_slot_wal_keep_size) {
                        node_bootstrap_done(&b);
                        return -ENOMEM;
                }
        }
        if (cfg->wal_keep_size > 0) {
                b.wal_keep_size = format_size(cfg->wal_keep_size);
                if (!b.wal_keep_size) {
                        node_bootstrap_done(&b);
                        return -ENOMEM;
                }
        }
        b.o = (struct bootstrap_options) {
                .bindir = n->bindir,
                .datadir = cfg->data_dir,
                .superuser = cfg->superuser,
                .superuser_password_file = n->superuser_password_file,
                .repl_user = cfg->replication_user,
                .rewind_user = cfg->rewind_user,
                .networks = (const char *const *) b.networks,
                .listen_addresses = cfg->listen_addresses,
                .port = (int) cfg->pg_port,
                .socket_dir = isempty(cfg->socket_dir) ? NULL : cfg->socket_dir,
                .max_wal_senders = (int) cfg->max_wal_senders,
                .max_replication_slots = (int) cfg->max_replication_slots,
                .max_slot_wal_keep_size = b.max_slot_wal_keep_size,
                .wal_keep_size = b.wal_keep_size,
                .timeout = timeout,
                .clock = n->clock,
        };
        *ret = b;
        return 0;
}

void node_bootstrap_done(struct node_bootstrap *b) {
        strv_free(b->networks);
        free(b->max_slot_wal_keep_size);
        free(b->wal_keep_size);
        *b = (struct node_bootstrap) {};
}

int node_write_local_settings(const struct node *n, char **reterr_msg) {
        _cleanup_free_ char *path = NULL, *text = NULL;
        struct node_bootstrap b;
        int r;

        path = strdup_printf("%s/%s", n->cfg->data_dir, BOOTSTRAP_CONF_FILE);
        if (!path)
                return -ENOMEM;
        if (access(path, F_OK) < 0)
                return 0;
        r = node_bootstrap_options(n, 0, &b);
        if (r < 0)
                return r;
        r = bootstrap_conf_text(&b.o, &text);
        node_bootstrap_done(&b);
        if (r >= 0)
                r = write_file_atomic(path, text, 0600);
        if (r < 0)
                return set_error_msg(reterr_msg, "cannot write this member's settings to %s: %s", path, strerror(-r)), r;
        return 1;
}
