"""The backstops behind the agent (issue 16): the agent watches its
run-postgres supervisor, which carries the lease-expiry watchdog, and
fences a primary left without it; PostgreSQL does not outlive its
supervisor; a frozen postmaster is failed over. A writer records every
acknowledged row and a checker watches for two writable servers."""
import json
import os
import signal
import time

import pytest

import cluster as cluster_mod
from test_switchover import Load, check_loss_and_rejoin, settled_members

_wait = cluster_mod._wait  # pylint: disable=protected-access
_seconds = cluster_mod._seconds  # pylint: disable=protected-access

SETTINGS = dict(cluster_mod.DEFAULT_SETTINGS)
LEASE = _seconds(SETTINGS["lease_duration"])
HEALTHY_TIMEOUT = 90
FAILOVER_TIMEOUT = 30
CHECK_CRITICAL = 2


@pytest.fixture(scope="module")
def shared(module_cluster_factory):
    return module_cluster_factory(settings=SETTINGS)


def _status(node):
    result = node.agentctl("node", "status", "--json", timeout=10)
    if result.returncode != 0:
        return {}
    return json.loads(result.stdout)


def _supervisor_reported(node):
    """What the agent says of its supervisor: True, False or None."""
    return _status(node).get("node", {}).get("postgres", {}).get(
        "supervisor")


def _agent_frozen(node):
    node.agent_proc.send_signal(signal.SIGSTOP)
    node._stopped.add(node.agent_proc.pid)  # pylint: disable=protected-access


def test_agent_reports_a_live_supervisor(shared):
    old = shared.wait_healthy(HEALTHY_TIMEOUT)
    assert _wait(lambda: _supervisor_reported(old) is True, 10,
                 "node status: supervisor alive")
    result = old.agentctl("node", "check", "--agent")
    assert result.returncode == 0, result.stdout + result.stderr
    result = old.agentctl("node", "status")
    assert "Supervisor:       running" in result.stdout, result.stdout


def test_killed_supervisor_then_frozen_agent_never_two_writers(shared):
    """Issue 16 point 4: SIGKILL of the primary's supervisor, then SIGSTOP
    of its agent. The agent sees the supervisor gone on its next tick and
    fences its primary itself (a log line and an event naming why), so
    the frozen agent cannot leave a writable primary beside the new one.
    When the supervisor runs again the node comes back as a standby."""
    cluster = shared
    load = Load(cluster, "killed_supervisor")
    old = load.old
    _wait(lambda: settled_members(cluster), 30, "member records")
    since = time.monotonic()
    old.kill_supervisor()
    # The agent reports it everywhere: status, check, member record.
    _wait(lambda: _supervisor_reported(old) is False, 10,
          "node status: supervisor gone", describe=cluster.describe)
    result = old.agentctl("node", "check", "--agent")
    assert result.returncode == CHECK_CRITICAL, result.stdout + result.stderr
    assert "supervisor gone" in result.stdout, result.stdout
    _wait(lambda: old.member_status().get("state") == "no supervisor", 15,
          "member record: no supervisor", describe=cluster.describe)
    _wait(lambda: any(e.get("event") == "supervisor-gone"
                      for e in old.agent_log()), 10,
          "the supervisor-gone event", describe=cluster.describe)
    _agent_frozen(old)
    try:
        new = cluster.wait_primary(2 * LEASE + FAILOVER_TIMEOUT,
                                   other_than=old.name)
        load.wait_writes_on(new, since)
        assert not old.is_running() or not old.is_primary(), \
            cluster.describe()
        history = load.stop()
    finally:
        old.sigcont()
    missing = cluster_mod.missing_acknowledged(history, new, table=load.table)
    # Asynchronous replication: the fence may lose the last acknowledged
    # rows; load.stop() asserted that never two servers took writes.
    assert len(missing) < 200, missing[:20]
    old.start_supervisor()
    _wait(lambda: _supervisor_reported(old) is True, 15,
          "node status: supervisor back", describe=cluster.describe)
    assert cluster.wait_healthy(HEALTHY_TIMEOUT) is new
    assert old.is_standby(), cluster.describe()


def _gone(pid):
    """Exited: no such process, or a zombie waiting for its reaper."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _postgres_in(data_dir):
    """Live processes running in the data directory (postmaster and
    backends)."""
    want = os.path.realpath(data_dir)
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.readlink(f"/proc/{entry}/cwd") == want:
                found.append(int(entry))
        except OSError:
            continue
    return found


def test_postgres_dies_with_its_supervisor(shared):
    """Issue 16: PostgreSQL never outlives its supervisor
    (PR_SET_PDEATHSIG = SIGQUIT, the postmaster's immediate shutdown): after
    SIGKILL of a standby's supervisor its postmaster and backends are gone
    within a bound, the zombie left unreaped (a subreaper that does not
    collect it, as this harness); started again, the supervisor starts
    PostgreSQL and the node streams again."""
    cluster = shared
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    node = next(n for n in cluster.nodes if n is not primary)
    postmaster = node.postmaster_pid()
    assert postmaster
    node.kill_supervisor()
    _wait(lambda: _gone(postmaster) and not _postgres_in(node.data_dir), 15,
          "the postmaster and its backends to die with the supervisor",
          describe=cluster.describe)
    node.start_supervisor()
    assert cluster.wait_healthy(HEALTHY_TIMEOUT) is primary
    assert node.is_streaming_from(primary), cluster.describe()


def test_supervisor_start_waits_out_a_frozen_old_postmaster(shared):
    """The previous supervisor died while its postmaster was frozen
    (SIGSTOP): the SIGQUIT of PR_SET_PDEATHSIG waits with it. The next
    supervisor waits for that postmaster, bounded, SIGKILLs it, removes the
    lock files its unreaped zombie keeps 'in use', and starts PostgreSQL."""
    cluster = shared
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    node = next(n for n in cluster.nodes if n is not primary)
    postmaster = node.postmaster_pid()
    assert postmaster
    frozen = _postgres_in(node.data_dir)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    try:
        node.kill_supervisor()
        assert not _gone(postmaster)
        node.start_supervisor()
        _wait(lambda: _gone(postmaster), 30,
              "the new supervisor to kill the frozen postmaster",
              describe=cluster.describe)
    finally:
        for pid in frozen:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    assert cluster.wait_healthy(HEALTHY_TIMEOUT) is primary
    assert node.is_streaming_from(primary), cluster.describe()
    with open(node.supervisor_log, encoding="utf-8") as handle:
        log = handle.read()
    assert "of a previous postmaster" in log, log[-2000:]


def test_resume_restarts_a_demoted_standby(shared):
    """Issue 16 point 5: `demote` on a standby stops it (its pre-stop);
    with the agent running on, `resume` starts it again as a standby
    rather than leaving it stopped until a restart. Pause and resume say
    when there was nothing to change."""
    cluster = shared
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    node = next(n for n in cluster.nodes if n is not primary)
    result = node.agentctl("demote", "--wait", "--timeout", "20", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    _wait(lambda: not node.is_running(), 20, "the standby to stop",
          describe=cluster.describe)
    result = node.agentctl("resume")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "demoted node restarting as a standby" in result.stdout, \
        result.stdout
    assert cluster.wait_healthy(HEALTHY_TIMEOUT) is primary
    assert node.is_streaming_from(primary), cluster.describe()
    result = node.agentctl("resume")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "was not paused: nothing to resume" in result.stdout, \
        result.stdout
    assert node.agentctl("pause").returncode == 0
    try:
        result = node.agentctl("pause")
        assert result.returncode == 0, result.stdout + result.stderr
        assert "already paused" in result.stdout, result.stdout
    finally:
        assert node.agentctl("resume").returncode == 0


def test_missing_socket_file_is_named(shared):
    """With agent.sock removed while the agent runs, agentctl says that
    the socket file does not exist, and where, rather than asking whether
    the agent runs."""
    cluster = shared
    node = cluster.wait_healthy(HEALTHY_TIMEOUT)
    path = os.path.join(node.run_dir, "agent.sock")
    assert os.path.exists(path)
    moved = path + ".moved"
    os.rename(path, moved)
    try:
        result = node.agentctl("node", "status")
    finally:
        os.rename(moved, path)
    assert result.returncode != 0
    assert "socket file does not exist" in result.stderr, result.stderr
    assert path in result.stderr, result.stderr
    assert "is the agent running" not in result.stderr
