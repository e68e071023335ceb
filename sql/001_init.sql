-- 001_init.sql: the first metadata schema: nodes, events, promotion history
-- and replication lag samples.
--
-- Migrations name no schema. The agent runs each file inside its own
-- transaction after `SET LOCAL search_path` to the configured schema (quoted
-- with PQescapeIdentifier) followed by pg_temp, so unqualified CREATEs land
-- in that schema and built-ins still resolve from pg_catalog, which
-- PostgreSQL searches first. That keeps the schema name out of the SQL text
-- (nothing to substitute, nothing to inject). A migration must not contain
-- BEGIN, COMMIT or a schema-qualified name of our own objects.
-- schema_version itself is created by the agent before the first migration.

CREATE TABLE nodes (
    name        text PRIMARY KEY,
    -- Stored with any password redacted (safety rule 6): passwords come from
    -- Secrets or a passfile, never from this table.
    conninfo    text NOT NULL,
    role        text NOT NULL DEFAULT 'unknown',
    upstream    text,
    priority    integer NOT NULL DEFAULT 100 CHECK (priority >= 0),
    location    text NOT NULL DEFAULT 'default',
    tags        text[] NOT NULL DEFAULT '{}',
    slot_name   text,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE events (
    id          bigserial PRIMARY KEY,
    -- When the event happened on the agent, which for a queued event is
    -- earlier than when it was written.
    at          timestamptz NOT NULL DEFAULT now(),
    node        text NOT NULL,
    event       text NOT NULL,
    successful  boolean NOT NULL DEFAULT true,
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_at_idx ON events (at);
CREATE INDEX events_node_at_idx ON events (node, at);

-- One row per promotion: the timeline the new primary started and where it
-- forked from the old one.
CREATE TABLE history (
    timeline     integer PRIMARY KEY CHECK (timeline > 0),
    switch_lsn   pg_lsn,
    new_primary  text NOT NULL,
    reason       text NOT NULL DEFAULT '',
    at           timestamptz NOT NULL DEFAULT now()
);

-- Per-standby samples of pg_stat_replication taken on the primary; pruned to
-- monitoring_retention.
CREATE TABLE monitoring (
    at                   timestamptz NOT NULL DEFAULT now(),
    node                 text NOT NULL,
    upstream             text NOT NULL,
    state                text,
    sync_state           text,
    write_lag_bytes      bigint,
    flush_lag_bytes      bigint,
    replay_lag_bytes     bigint,
    write_lag_seconds    double precision,
    flush_lag_seconds    double precision,
    replay_lag_seconds   double precision
);
CREATE INDEX monitoring_at_idx ON monitoring (at);
CREATE INDEX monitoring_node_at_idx ON monitoring (node, at);
