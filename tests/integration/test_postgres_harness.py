"""The harness itself: real servers start, answer libpq and stop; nothing
outlives a test; waits fail loudly at their deadline."""

import os
import time

import pytest

import pgharness


def test_server_starts_answers_libpq_query_and_stops(pg_factory):
    pg = pg_factory("pg1")
    pg.initdb()
    pg.start()
    assert pg.is_running()
    assert pg.sql("SELECT 40 + %s", (2,)) == [(42,)]
    assert pg.sql("SHOW server_version_num")[0][0].startswith("15")
    assert pg.sql("SHOW listen_addresses") == [("127.0.0.1",)]
    assert pg.sql("SHOW unix_socket_directories") == [(pg.sockdir,)]
    assert pg.in_recovery() is False
    pid = pg.pid()
    pg.stop()
    assert not pg.is_running()
    assert not pgharness.pid_alive(pid)


def test_server_is_started_as_unprivileged_user(pg_factory):
    pg = pg_factory()
    pg.initdb()
    pg.start()
    user = pg.sql("SELECT current_user")[0][0]
    assert user == "postgres"
    owner_uid = os.stat(f"/proc/{pg.pid()}").st_uid
    assert owner_uid != 0
    assert owner_uid == pgharness.runner().uid


def test_reaper_leaves_no_process_behind_when_test_body_fails(workdir):
    proc_reaper = pgharness.Reaper(home=workdir)
    pg = pgharness.PgServer(workdir, "doomed", reaper=proc_reaper)
    pids = []
    with pytest.raises(RuntimeError):
        try:
            pg.initdb()
            pg.start()
            conn = pg.connect()  # a backend process exists now
            backend = pg.sql("SELECT pg_backend_pid()")
            assert backend
            with conn.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                pids.append(cur.fetchone()[0])
            pids.append(pg.pid())
            proc_reaper.spawn(["sleep", "600"])
            raise RuntimeError("test body failed")
        finally:
            proc_reaper.kill_all()
    assert len(pids) == 2
    for pid in pids:
        assert not pgharness.pid_alive(pid), pid
    assert proc_reaper.tagged_pids() == []
    assert not pg.is_running()


def test_reaper_kills_backends_left_by_kill9_of_postmaster(pg_factory,
                                                           reaper):
    pg = pg_factory()
    pg.initdb()
    pg.start()
    conn = pg.connect()
    with conn.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        backend = cur.fetchone()[0]
    pg.kill9()
    assert not pg.is_running()
    # The orphaned backend notices the dead postmaster on its own; either
    # way the reaper must leave nothing.
    reaper.kill_all()
    pgharness.wait_for(lambda: not pgharness.pid_alive(backend), 10,
                       "orphaned backend to be gone")
    conn.close()


def test_standby_cloned_with_basebackup_streams_from_primary(pg_factory):
    primary = pg_factory("primary")
    primary.initdb()
    primary.start()
    primary.sql("CREATE TABLE t (v int)")
    standby = pg_factory("standby")
    standby.basebackup_from(primary)
    standby.start()
    assert standby.in_recovery() is True
    primary.sql("INSERT INTO t VALUES (7)")
    pgharness.wait_for(
        lambda: standby.sql("SELECT v FROM t") == [(7,)], 15,
        "standby to replay the insert")


def test_wait_for_raises_on_deadline_naming_what_it_waited_for():
    start = time.monotonic()
    with pytest.raises(AssertionError, match="the impossible"):
        pgharness.wait_for(lambda: False, 0.3, "the impossible")
    elapsed = time.monotonic() - start
    assert 0.3 <= elapsed < 3


def test_wait_for_returns_predicate_value_and_ignores_listed_errors():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("not yet")
        return "ready"

    assert pgharness.wait_for(flaky, 5, "flaky", interval=0.01,
                              ignore=(ConnectionError,)) == "ready"
    with pytest.raises(AssertionError, match="ConnectionError"):
        pgharness.wait_for(lambda: (_ for _ in ()).throw(ConnectionError()),
                           0.1, "always failing", ignore=(ConnectionError,))


def test_free_port_is_bindable_on_loopback():
    port = pgharness.free_port()
    assert 1024 <= port <= 65535


def test_binaries_fixture_points_at_built_programs(binaries):
    assert os.access(binaries.agent, os.X_OK)
    assert os.access(binaries.agentctl, os.X_OK)
    assert pgharness.runner_can_access(binaries.agent, "x")
    assert os.path.isdir(binaries.source_dir)


def test_reaper_kills_grandchildren_in_their_own_session(reaper):
    # A daemonising child (like pg_ctl's postmaster) escapes the process
    # group; the reaper still finds it by its tag and parentage.
    shell = reaper.spawn(["sh", "-c", "setsid sleep 600 & echo $! ; wait"])
    owned = pgharness.wait_for(
        lambda: len(reaper.owned_pids()) >= 2 and reaper.owned_pids(), 10,
        "the grandchild to start")
    killed = reaper.kill_all()
    assert shell.pid in killed
    for pid in owned:
        assert not pgharness.pid_alive(pid)
