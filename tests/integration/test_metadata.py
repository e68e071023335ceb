"""The metadata schema against a real PostgreSQL 15: migrations apply once
and re-run as no-ops (also two agents at once), events queued while the
server is down are written after it returns, history and monitoring rows
are written and pruned, and the status query reads primaries and standbys.
Driven through tests/integration/metadata-check.c, which links libpglease."""

import concurrent.futures
import os
import subprocess

import pytest

import pgharness


@pytest.fixture(scope="module")
def check_bin():
    build_dir = os.environ.get("PGLEASE_BUILD_DIR") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "build")
    path = os.path.join(build_dir, "tests", "metadata-check")
    if not os.access(path, os.X_OK):
        pytest.fail(f"not built: {path}")
    return path


@pytest.fixture
def primary(pg_factory):
    pg = pg_factory("meta")
    pg.initdb()
    pg.start()
    return pg


def sql_dir():
    return os.path.join(os.environ.get("PGLEASE_SOURCE_DIR") or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "sql")


def run_check(reaper, check_bin, pg, schema, *args, check=True):
    res = reaper.run([check_bin, pg.conninfo, schema] + list(args),
                     timeout=60, check=False, as_runner=False)
    if check and res.returncode != 0:
        raise AssertionError(f"metadata-check {args} exited "
                             f"{res.returncode}: {res.stdout}{res.stderr}")
    return res


def test_migrations_apply_once_and_rerun_is_noop(primary, reaper, check_bin):
    first = run_check(reaper, check_bin, primary, "", "migrate", sql_dir())
    assert first.stdout.strip() == "applied 2 version 2"
    again = run_check(reaper, check_bin, primary, "", "migrate", sql_dir())
    assert again.stdout.strip() == "applied 0 version 2"
    tables = {r[0] for r in primary.sql(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'pglease'")}
    assert tables == {"schema_version", "nodes", "events", "history",
                      "monitoring"}
    assert primary.sql("SELECT version, name FROM pglease.schema_version"
                       " ORDER BY version") \
        == [(1, "init"), (2, "history_old_primary")]
    # libpq NOTICEs ("already exists, skipping") are not printed by lib/.
    assert "NOTICE" not in again.stderr


def test_concurrent_migrations_apply_each_version_once(primary, reaper,
                                                       check_bin):
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(
            lambda _: run_check(reaper, check_bin, primary, "", "migrate",
                                sql_dir()), range(4)))
    applied = sorted(r.stdout.split()[1] for r in results)
    assert applied == ["0", "0", "0", "2"]
    assert primary.sql("SELECT count(*) FROM pglease.schema_version") == [(2,)]


def test_schema_name_is_quoted_not_spliced(primary, reaper, check_bin):
    schema = 'Odd "name"; DROP TABLE x'
    run_check(reaper, check_bin, primary, schema, "migrate", sql_dir())
    run_check(reaper, check_bin, primary, schema, "event", "pg-0", "start",
              "t", "", "0")
    assert primary.sql(
        "SELECT nspname FROM pg_namespace WHERE nspname = %s", (schema,)) \
        == [(schema,)]
    assert primary.sql('SELECT count(*) FROM "Odd ""name""; DROP TABLE x".events') \
        == [(1,)]
    # Nothing went to the default schema.
    assert primary.sql("SELECT to_regnamespace('pglease')") == [(None,)]


def test_node_upsert_stores_redacted_conninfo_and_updates(primary, reaper,
                                                          check_bin):
    run_check(reaper, check_bin, primary, "", "migrate", sql_dir())
    run_check(reaper, check_bin, primary, "", "node", "pg-0",
              "host=pg-0 password='s3cret pw' user=repl", "primary", "100",
              "nofailover,zone-a")
    first_seen = primary.sql("SELECT first_seen FROM pglease.nodes")[0][0]
    run_check(reaper, check_bin, primary, "", "node", "pg-0",
              "host=pg-0 user=repl", "replica", "50", "")
    rows = primary.sql("SELECT conninfo, role, priority, tags, first_seen,"
                       " last_seen >= first_seen FROM pglease.nodes")
    assert rows == [("host=pg-0 user=repl", "replica", 50, [], first_seen,
                     True)]
    run_check(reaper, check_bin, primary, "", "node", "pg-1",
              "host=pg-1 password='s3cret pw'", "replica", "100", "a")
    stored = primary.sql("SELECT conninfo FROM pglease.nodes WHERE name = 'pg-1'")
    assert stored == [("host=pg-1 password=***",)]


def test_events_queued_while_server_is_down_are_flushed_after_start(
        primary, reaper, check_bin):
    run_check(reaper, check_bin, primary, "", "migrate", sql_dir())
    primary.stop()
    proc = reaper.track(subprocess.Popen(
        [check_bin, primary.conninfo, "", "queue", "7", "5"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=reaper.env(), start_new_session=True))
    try:
        offline = proc.stdout.readline().strip()
        assert offline == "offline connect=ECONNREFUSED queued=5 dropped=2"
        primary.start()
        out, _ = proc.communicate("go\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.strip() == "online result=ok written=5 remaining=0"
    rows = primary.sql("SELECT event, details->>'seq',"
                       " (extract(epoch FROM at) * 1000000)::bigint"
                       " FROM pglease.events ORDER BY id")
    base = 1700000000 * 1000000
    assert rows == [(f"queued-{i}", str(i), base + i) for i in range(2, 7)]
    listed = run_check(reaper, check_bin, primary, "", "events", "2", "pg-q")
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [line[3] for line in lines] == ["queued-6", "queued-5"]
    assert all(line[4] == "1" for line in lines)


def test_event_at_zero_means_now_and_bad_details_are_refused(primary, reaper,
                                                             check_bin):
    run_check(reaper, check_bin, primary, "", "migrate", sql_dir())
    run_check(reaper, check_bin, primary, "", "event", "pg-0", "promote", "f",
              '{"reason": "failover"}', "0")
    rows = primary.sql("SELECT successful, details->>'reason',"
                       " now() - at < interval '1 minute' FROM pglease.events")
    assert rows == [(False, "failover", True)]
    bad = run_check(reaper, check_bin, primary, "", "event", "pg-0", "x", "t",
                    "not json", "0", check=False)
    assert bad.returncode == 2 and bad.stdout.startswith("error EINVAL")


def test_history_rows_are_written_once_per_timeline(primary, reaper, check_bin):
    run_check(reaper, check_bin, primary, "", "migrate", sql_dir())
    run_check(reaper, check_bin, primary, "", "history-insert", "2",
              "0/3000060", "pg-1", "failover")
    run_check(reaper, check_bin, primary, "", "history-insert", "2",
              "0/4000000", "pg-2", "retry")
    run_check(reaper, check_bin, primary, "", "history-insert", "3",
              "16/B374D848", "pg-0", "switchover")
    out = run_check(reaper, check_bin, primary, "", "history").stdout
    assert out.splitlines() == ["3\t16/B374D848\tpg-0\tswitchover",
                                "2\t0/3000060\tpg-1\tfailover"]


def test_monitoring_samples_standbys_and_prunes_old_rows(pg_factory, primary,
                                                         reaper, check_bin):
    run_check(reaper, check_bin, primary, "", "migrate", sql_dir())
    standby = pg_factory("standby")
    standby.basebackup_from(primary, extra_args=())
    standby.configure(primary_conninfo=primary.dsn(application_name="standby"))
    signal_file = os.path.join(standby.datadir, "standby.signal")
    with open(signal_file, "w", encoding="utf-8"):
        pass
    pgharness.chown_to_runner(signal_file)
    standby.start()
    # replay_lsn stays NULL until the standby's first reply after it
    # started streaming: a sample taken before that has no lag to record
    # (NULL, as pg_stat_replication itself says).
    pgharness.wait_for(
        lambda: primary.sql("SELECT count(*) FROM pg_stat_replication"
                            " WHERE state = 'streaming'"
                            " AND replay_lsn IS NOT NULL") == [(1,)],
        30, "standby to stream and report its replay position")
    out = run_check(reaper, check_bin, primary, "", "sample", "meta").stdout
    assert out.strip() == "rows 1"
    rows = primary.sql("SELECT node, upstream, state, replay_lag_bytes >= 0"
                       " FROM pglease.monitoring")
    assert rows == [("standby", "meta", "streaming", True)]

    primary.sql("UPDATE pglease.monitoring SET at = now() - interval '2 hours'")
    run_check(reaper, check_bin, primary, "", "sample", "meta")
    out = run_check(reaper, check_bin, primary, "", "prune", "1h").stdout
    assert out.strip() == "deleted 1"
    assert primary.sql("SELECT count(*) FROM pglease.monitoring") == [(1,)]


def test_status_reads_primary_and_standby(pg_factory, primary, reaper,
                                          check_bin):
    standby = pg_factory("standby")
    standby.basebackup_from(primary)
    standby.start()
    pgharness.wait_for(
        lambda: standby.sql("SELECT count(*) FROM pg_stat_wal_receiver"
                            " WHERE status = 'streaming'") == [(1,)],
        30, "standby to stream")

    def status(pg):
        out = run_check(reaper, check_bin, pg, "", "status").stdout
        return dict(kv.split("=", 1) for kv in out.split())

    p = status(primary)
    s = status(standby)
    assert p["in_recovery"] == "0" and s["in_recovery"] == "1"
    assert p["timeline"] == "1" and s["timeline"] == "1"
    assert p["system_identifier"] == s["system_identifier"] != "0"
    assert p["current_lsn"] != "0/0" and s["current_lsn"] == "0/0"
    assert s["receive_lsn"] != "0/0" and s["replay_lsn"] != "0/0"
    assert s["streaming"] == "1"
    assert s["upstream_host"] == "127.0.0.1"
    assert s["upstream_port"] == str(primary.port)

    # After promotion the timeline is the new one at once, before any
    # checkpoint has recorded it.
    standby.sql("SELECT pg_promote(true, 30)")
    s = status(standby)
    assert s["in_recovery"] == "0" and s["timeline"] == "2"


def test_connect_errors_map_to_errno(primary, reaper, check_bin):
    primary.stop()
    res = run_check(reaper, check_bin, primary, "", "status", check=False)
    assert res.returncode == 2
    assert res.stdout.startswith("error ECONNREFUSED connect:")
    assert "\n" not in res.stdout.strip()
