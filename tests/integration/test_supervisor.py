"""The run-postgres supervisor and lib/pgctl against a real PostgreSQL 15:
a killed postmaster is restarted; a held server stays down until the hold is
cleared; SIGTERM stops Postgres cleanly and the supervisor exits 0; fence
writes standby.signal before the server goes down, and the server comes back
only as a standby; nothing is left running. The lease watchdog: a
lease-expiry time that passes fences the server (marker first, then hold,
then SIGQUIT) and it stays down until the hold is cleared; one that keeps
being pushed forward, or garbage, never fences.

The supervisor is `pglease-agent run-postgres` once the agent dispatches that
mode, else tests/run-postgres-main (the same run_postgres_main()); pgctl is
driven through `run-postgres-main pgctl ...`."""

import os
import shutil
import signal
import subprocess
import threading
import time

import pytest

import cluster as cluster_mod
import pgharness
from pgharness import wait_for

SOURCE_DIR = os.environ.get("PGLEASE_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _staged(path, stage_dir):
    """The program at a path the runner user can execute."""
    if pgharness.runner_can_access(path, "x"):
        return path
    pgharness.make_dir(stage_dir)
    target = os.path.join(stage_dir, os.path.basename(path))
    shutil.copy2(path, target)
    os.chmod(target, 0o755)
    return target


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    build_dir = os.environ.get("PGLEASE_BUILD_DIR") or os.path.join(
        SOURCE_DIR, "build")
    main = os.path.join(build_dir, "tests", "run-postgres-main")
    if not os.access(main, os.X_OK):
        pytest.fail(f"not built: {main}")
    stage = pgharness.make_workdir("pglease-it-sup-")
    main = _staged(main, os.path.join(stage, "bin"))
    supervisor = [main]
    agent = os.path.join(build_dir, "agent", "pglease-agent")
    if os.access(agent, os.X_OK):
        probe = subprocess.run([agent, "run-postgres", "--help"],
                               capture_output=True, text=True, timeout=10,
                               check=False)
        if probe.returncode == 0 and "--restart-delay" in probe.stdout:
            supervisor = [_staged(agent, os.path.join(stage, "bin")),
                          "run-postgres"]
    yield {"supervisor": supervisor, "driver": main}
    shutil.rmtree(stage, ignore_errors=True)


class Supervised:
    """One PgServer run by a run-postgres supervisor."""

    def __init__(self, pg, reaper, tools, run_dir):
        self.pg = pg
        self.reaper = reaper
        self.tools = tools
        self.run_dir = run_dir
        self.log = os.path.join(pg.base_dir, "supervisor.log")
        self.proc = None

    def start(self, postgres=None):
        postgres = postgres or self.pg.bin("postgres")
        self.proc = self.reaper.spawn(
            self.tools["supervisor"] + [
                "--run-dir", self.run_dir, "--restart-delay", "200ms", "--",
                postgres, "-D", self.pg.datadir, "-p", self.pg.port,
                "-k", self.pg.sockdir],
            logfile=self.log)
        return self

    def wait_ready(self, timeout=30):
        wait_for(self.pg.is_ready, timeout, f"{self.pg.name} to accept "
                 f"connections\n{self.log_text()}", interval=0.1)

    def log_text(self):
        try:
            with open(self.log, encoding="utf-8", errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    def pgctl(self, *args, check=True, timeout=60):
        res = self.reaper.run(
            [self.tools["driver"], "pgctl", "supervisor", self.pg.datadir,
             self.run_dir, self.pg.bindir] + [str(a) for a in args],
            timeout=timeout, check=False)
        if check and res.returncode != 0:
            raise AssertionError(f"pgctl {args}: {res.stdout}{res.stderr}\n"
                                 f"{self.log_text()}")
        return res.stdout.strip()

    def hold_path(self):
        return os.path.join(self.run_dir, "hold")

    def marker_path(self):
        return os.path.join(self.pg.datadir, "standby.signal")

    def state(self):
        with open(os.path.join(self.run_dir, "supervisor.state"),
                  encoding="ascii") as fh:
            return dict(line.split("=", 1) for line in fh.read().split())

    def lease_path(self):
        return os.path.join(self.run_dir, "lease-expiry")

    def write_lease(self, content):
        """As the agent does: a whole file through a rename."""
        tmp = os.path.join(self.run_dir, ".lease-expiry.test")
        with open(tmp, "w", encoding="ascii") as fh:
            fh.write(content)
        pgharness.chown_to_runner(tmp)
        os.replace(tmp, self.lease_path())

    def write_lease_expiry(self, seconds_ahead):
        """A renew deadline seconds_ahead from now on CLOCK_MONOTONIC, the
        clock this process shares with the supervisor; returns it (us)."""
        expiry = monotonic_usec() + int(seconds_ahead * 1e6)
        self.write_lease(f"{expiry}\n")
        return expiry


def monotonic_usec():
    return int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6)


@pytest.fixture
def supervised(pg_factory, reaper, tools, workdir):
    pg = pg_factory("sup")
    pg.initdb()
    run_dir = pgharness.make_dir(os.path.join(workdir, "run"))
    sup = Supervised(pg, reaper, tools, run_dir).start()
    sup.wait_ready()
    yield sup
    if sup.proc.poll() is None:
        sup.proc.send_signal(signal.SIGTERM)
        try:
            sup.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


def assert_stays(predicate, seconds, what):
    """Checks that predicate() holds for a whole window: proving that
    something does not happen needs one (the restart delay is 200 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert predicate(), what
        time.sleep(0.05)


def test_state_files_name_supervisor_and_postmaster(supervised):
    state = supervised.state()
    assert int(state["supervisor_pid"]) == supervised.proc.pid
    assert int(state["postmaster_pid"]) == supervised.pg.pid()
    assert state["phase"] == "running"
    with open(os.path.join(supervised.run_dir, "supervisor.pid"),
              encoding="ascii") as fh:
        assert int(fh.read()) == supervised.proc.pid
    assert supervised.pgctl("running") == f"running {supervised.pg.pid()}"
    assert "started postgres pid" in supervised.log_text()


def test_killed_postmaster_is_restarted_and_accepts_connections(supervised):
    old = supervised.pg.pid()
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: supervised.pg.pid() not in (None, old), 30,
             "a new postmaster\n" + supervised.log_text())
    supervised.wait_ready()
    assert supervised.pg.sql("SELECT 1") == [(1,)]
    assert supervised.state()["restarts"] == "1"
    assert int(supervised.state()["postmaster_pid"]) == supervised.pg.pid()
    assert f"postgres pid {old} was killed by signal KILL" \
        in supervised.log_text()


def test_held_server_stays_down_until_hold_is_cleared(supervised):
    old = supervised.pg.pid()
    assert supervised.pgctl("stop", "fast", 30) == "ok"
    assert os.path.exists(supervised.hold_path())
    assert not pgharness.pid_alive(old)
    wait_for(lambda: supervised.state()["phase"] == "held", 10,
             "the supervisor to report held")
    assert_stays(lambda: supervised.pgctl("running") == "stopped", 1.5,
                 "postgres restarted while held")
    assert "held: waiting for hold file to be removed" \
        in supervised.log_text()
    assert supervised.pgctl("controldata").startswith("state=shut down\n")

    assert supervised.pgctl("start", 30) == "ok"
    assert not os.path.exists(supervised.hold_path())
    assert supervised.pg.sql("SELECT 1") == [(1,)]
    assert supervised.pg.pid() != old


def test_sigterm_stops_postgres_cleanly_and_exits_zero(supervised, reaper):
    postmaster = supervised.pg.pid()
    supervised.proc.send_signal(signal.SIGTERM)
    assert supervised.proc.wait(timeout=30) == 0
    assert not pgharness.pid_alive(postmaster)
    assert not os.path.exists(os.path.join(supervised.pg.datadir,
                                           "postmaster.pid"))
    assert not os.path.exists(os.path.join(supervised.run_dir,
                                           "supervisor.pid"))
    assert "exiting with status 0" in supervised.log_text()
    assert reaper.owned_pids() == []


def test_sigint_after_crash_reaps_orphans_and_leaves_nothing(supervised,
                                                             reaper):
    # Busy backends outlive a SIGKILLed postmaster for a moment; the
    # supervisor, as subreaper, collects them before it restarts.
    conns = [supervised.pg.connect() for _ in range(3)]
    os.kill(supervised.pg.pid(), signal.SIGKILL)
    supervised.wait_ready()
    for conn in conns:
        conn.close()
    supervised.proc.send_signal(signal.SIGINT)
    assert supervised.proc.wait(timeout=30) == 0
    assert reaper.owned_pids() == []


def test_fence_writes_standby_marker_first_and_returns_as_standby(
        supervised):
    pg = supervised.pg
    pg.sql("CREATE TABLE fenced (x int)")
    pid = pg.pid()
    seen, watcher = watch_marker_while_down(supervised, pid, 45)
    assert supervised.pgctl("fence", 30) == "ok"
    watcher.join()
    assert seen["down_at"] is not None, "the watcher never saw postgres down"
    assert not seen["down_without_marker"]
    assert os.path.exists(supervised.marker_path())
    assert os.path.exists(supervised.hold_path())
    assert not pgharness.pid_alive(pid)
    assert_stays(lambda: supervised.pgctl("running") == "stopped", 1.0,
                 "fenced postgres restarted while held")

    assert supervised.pgctl("start", 60) == "ok"
    assert pg.in_recovery() is True
    with pytest.raises(Exception, match="read-only"):
        pg.sql("INSERT INTO fenced VALUES (1)")
    assert "in archive recovery" in supervised.pgctl("controldata")


def test_unexecutable_postgres_exits_two(pg_factory, reaper, tools, workdir):
    pg = pg_factory("noexec")
    run_dir = pgharness.make_dir(os.path.join(workdir, "run2"))
    sup = Supervised(pg, reaper, tools, run_dir).start(
        postgres="/nonexistent/postgres")
    assert sup.proc.wait(timeout=30) == 2
    assert "cannot execute /nonexistent/postgres" in sup.log_text()


def test_usage_error_exits_one(reaper, tools):
    res = reaper.run(tools["supervisor"] + ["--bogus"], check=False)
    assert res.returncode == 1
    res = reaper.run(tools["supervisor"] + ["--run-dir", "/tmp"],
                     check=False)
    assert res.returncode == 1


def test_pg_ctl_backend_starts_stops_and_fences(pg_factory, reaper, tools,
                                                workdir):
    pg = pg_factory("pgctl")
    pg.initdb()
    run_dir = pgharness.make_dir(os.path.join(workdir, "run3"))

    def pgctl(*args):
        res = reaper.run([tools["driver"], "pgctl", "pg_ctl", pg.datadir,
                          run_dir, pg.bindir] + [str(a) for a in args],
                         timeout=90, check=False)
        assert res.returncode == 0, f"pgctl {args}: {res.stdout}"
        return res.stdout.strip()

    # Without -l the server keeps pg_ctl's output pipe open: the run must
    # end when pg_ctl exits, not when the pipe closes.
    assert pgctl("start", 30) == "ok"
    assert pg.sql("SELECT 1") == [(1,)]
    assert pgctl("running") == f"running {pg.pid()}"
    assert pgctl("stop", "fast", 30) == "ok"
    assert pgctl("running") == "stopped"
    assert pgctl("controldata").startswith("state=shut down\n")
    assert pgctl("stop", "fast", 30) == "ok"

    assert pgctl("start", 30) == "ok"
    assert not os.path.exists(os.path.join(run_dir, "hold"))
    assert pgctl("fence", 30) == "ok"
    assert os.path.exists(os.path.join(pg.datadir, "standby.signal"))
    assert pgctl("running") == "stopped"
    assert pgctl("start", 60) == "ok"
    assert pg.in_recovery() is True


def watch_marker_while_down(sup, pid, timeout):
    """Starts a thread that watches the server until it first sees it down
    (or for timeout seconds), records when that was (down_at, None if
    never) and whether the standby marker was missing then. The thread, not
    the caller, decides when it has seen the stop: a caller that saw the
    server gone and stopped the thread could stop it before it looked."""
    seen = {"down_without_marker": False, "down_at": None}

    def watch():
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not pgharness.pid_alive(pid):
                seen["down_at"] = monotonic_usec()
                # Read after the server was seen down: missing now means
                # missing while it was down (the marker is never removed
                # while held), so this cannot report a false violation.
                seen["down_without_marker"] = not os.path.exists(
                    sup.marker_path())
                return
            time.sleep(0.001)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return seen, watcher


def test_expired_lease_fences_primary_marker_first_and_holds_it_down(
        supervised):
    pg = supervised.pg
    pg.sql("CREATE TABLE watched (x int)")
    pid = pg.pid()
    assert pg.in_recovery() is False
    seen, watcher = watch_marker_while_down(supervised, pid, 15)
    expiry = supervised.write_lease_expiry(2.0)
    watcher.join()
    assert seen["down_at"] is not None, \
        "the watchdog did not stop postgres\n" + supervised.log_text()
    # Safety rule 1: not before the deadline, marker before the stop.
    assert seen["down_at"] >= expiry
    # The watcher sees the server down as soon as the kill lands; the
    # supervisor removes the lease file after the kill and logs the end of
    # the postmaster when it has reaped it: wait for that last step.
    wait_for(lambda: f"postgres pid {pid} was killed by signal" in
             supervised.log_text() or f"postgres pid {pid} exited" in
             supervised.log_text(), 10,
             "the supervisor to reap postgres\n" + supervised.log_text())
    assert not seen["down_without_marker"]
    assert os.path.exists(supervised.marker_path())
    assert os.path.exists(supervised.hold_path())
    assert not os.path.exists(supervised.lease_path())
    log = supervised.log_text()
    assert "without renewal: fenced postgres (standby.signal written, " \
        "held)" in log, log
    assert f"sent SIGKILL to pid {pid} and its processes" in log
    wait_for(lambda: supervised.state()["phase"] == "held", 10,
             "the supervisor to report held")
    assert_stays(lambda: supervised.pgctl("running") == "stopped", 1.5,
                 "fenced postgres restarted while held")

    # The agent rejoining clears the hold: back, but only as a standby.
    os.unlink(supervised.hold_path())
    supervised.wait_ready()
    assert pg.in_recovery() is True
    with pytest.raises(Exception, match="read-only"):
        pg.sql("INSERT INTO watched VALUES (1)")
    assert supervised.proc.poll() is None


def test_lease_pushed_forward_never_fences(supervised):
    pid = supervised.pg.pid()
    # Renewed every 200 ms with a 1 s deadline, for three deadlines.
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        supervised.write_lease_expiry(1.0)
        assert pgharness.pid_alive(pid), supervised.log_text()
        time.sleep(0.2)
    # The leader stops leading cleanly: the file goes, nothing happens.
    os.unlink(supervised.lease_path())
    assert_stays(lambda: pgharness.pid_alive(pid), 1.5,
                 "postgres stopped after the lease file was removed")
    assert supervised.pg.pid() == pid
    assert not os.path.exists(supervised.hold_path())
    assert not os.path.exists(supervised.marker_path())
    assert "lease expired" not in supervised.log_text()


def test_garbage_lease_file_never_fences(supervised):
    pid = supervised.pg.pid()
    supervised.write_lease("not a time\n")
    assert_stays(lambda: pgharness.pid_alive(pid), 2.0,
                 "postgres fenced on a garbage lease file")
    log = supervised.log_text()
    assert log.count("ignoring " + supervised.lease_path()) == 1, log
    assert not os.path.exists(supervised.hold_path())
    assert not os.path.exists(supervised.marker_path())


def test_frozen_agent_of_the_primary_is_fenced_before_anyone_acquires(
        cluster):
    """The case the watchdog exists for: only the primary's agent stops
    (SIGSTOP), its Postgres keeps running. The supervisor fences it by the
    renew deadline, while the lease still names the frozen holder: the
    others wait a whole lease duration, so no two primaries ever overlap."""
    primary = cluster.wait_healthy(30)
    pid = primary.postmaster_pid()
    seconds = cluster_mod._seconds  # pylint: disable=protected-access
    renew_deadline = seconds(cluster.settings["renew_deadline"])
    lease_duration = seconds(cluster.settings["lease_duration"])
    lease_file = os.path.join(primary.run_dir, "lease-expiry")
    wait_for(lambda: os.path.exists(lease_file), 10,
             "the leader to publish its renew deadline")
    agent = primary.agent_proc.pid
    os.kill(agent, signal.SIGSTOP)

    def fenced_before_anyone_acquires():
        # The holder is read before the pid: another holder seen while the
        # server is still alive afterwards means both at once. (Asserting
        # that the frozen node still holds the Lease right after the fence
        # was seen would only hold if this process is scheduled within
        # lease_duration - renew_deadline.)
        holder = cluster.lease_holder()
        alive = pgharness.pid_alive(pid)
        assert not alive or holder in ("", primary.name), \
            f"{holder} holds the Lease while {primary.name} still runs"
        return not alive

    try:
        wait_for(fenced_before_anyone_acquires, renew_deadline + 2,
                 "the supervisor to fence the primary\n"
                 + cluster.describe(), interval=0.02)
        assert os.path.exists(os.path.join(primary.data_dir,
                                           "standby.signal"))
        assert os.path.exists(os.path.join(primary.run_dir, "hold"))

        def supervisor_log():
            with open(primary.supervisor_log, encoding="utf-8",
                      errors="replace") as fh:
                return fh.read()

        # The supervisor logs the fence after it has sent the kill.
        wait_for(lambda: "without renewal: fenced postgres (standby.signal "
                 "written, held)" in supervisor_log(), 10,
                 "the supervisor to log the fence")
        # Failover goes ahead; the fenced server stays down meanwhile.
        wait_for(lambda: cluster.lease_holder() not in ("", primary.name),
                 lease_duration + 10, "another member to take the lease\n"
                 + cluster.describe(), interval=0.2)
        assert primary.postmaster_pid() is None
    finally:
        os.kill(agent, signal.SIGCONT)


def test_sigterm_is_a_fast_shutdown_with_sessions_open(cluster):
    """docker stop, or the kubelet stopping the postgres container: SIGTERM
    to run-postgres while sessions are open (the agent's own, a pooler's
    that never close). A smart shutdown would wait for them for good (the
    container killed after its grace period, crash recovery at the next
    start); the supervisor asks for a fast one: sessions end, checkpoint,
    a clean exit."""
    primary = cluster.wait_healthy(60)
    standby = next(n for n in cluster.nodes if n is not primary)
    pooled = standby.connect()
    try:
        assert standby.stop_supervisor(timeout=20) == 0
    finally:
        pooled.close()
    with open(standby.supervisor_log, encoding="utf-8") as handle:
        log = handle.read()
    assert "received fast shutdown request" in log, log[-2000:]
    assert "database system is shut down" in log, log[-2000:]
    standby.start_supervisor()
    cluster.wait_healthy(60)
