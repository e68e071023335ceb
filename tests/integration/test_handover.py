"""The hand-over protocol (docs/handover.pml) against real PostgreSQL:
two switchover requests close together, a switchover while paused, and a
named successor that never comes (issue 16; issue 14 test 4(c)). A writer
records every acknowledged row and a checker watches for two writable
servers throughout."""
import signal
import threading
import time

import pytest

import cluster as cluster_mod
from test_switchover import Load, check_loss_and_rejoin, settled_members

_wait = cluster_mod._wait  # pylint: disable=protected-access
_seconds = cluster_mod._seconds  # pylint: disable=protected-access

SETTINGS = dict(cluster_mod.DEFAULT_SETTINGS)
LEASE = _seconds(SETTINGS["lease_duration"])
HEALTHY_TIMEOUT = 90
HANDOVER_TIMEOUT = 30
EXIT_REFUSED = 5


@pytest.fixture(scope="module")
def shared(module_cluster_factory):
    return module_cluster_factory(settings=SETTINGS)


def same_timeline_everywhere(cluster, primary):
    """No diverged node: every standby streams from the primary on its
    timeline."""
    tl = primary.timeline()
    return all(n is primary or (n.is_standby() and n.is_streaming_from(
        primary) and n.timeline() == tl) for n in cluster.nodes)


def run_async(node, *args, timeout=60):
    box = {}

    def run():
        box["result"] = node.agentctl(*args, timeout=timeout)
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, box


@pytest.mark.parametrize("gap", [0.2, 0.5, 0.8])
def test_double_switchover_loses_nothing_and_leaves_no_diverged_node(
        shared, gap):
    cluster = shared
    load = Load(cluster, f"double_switchover_{int(gap * 10)}")
    old = load.old
    first, second = [n for n in cluster.nodes if n is not old]
    _wait(lambda: settled_members(cluster), 30, "member records")
    since = time.monotonic()
    t1, box1 = run_async(old, "switchover", "--to", first.name)
    time.sleep(gap)  # the scenario: a second operator, `gap` seconds later
    r2 = second.agentctl("switchover", "--to", second.name, timeout=60)
    t1.join(60)
    r1 = box1["result"]
    assert r1.returncode == 0, r1.stdout + r1.stderr
    # The second is refused, naming the first, unless the first was over.
    assert r2.returncode in (0, EXIT_REFUSED), r2.stdout + r2.stderr
    if r2.returncode == EXIT_REFUSED:
        assert "in progress" in r2.stderr and first.name in r2.stderr, \
            r2.stderr
    new = cluster.wait_primary(HANDOVER_TIMEOUT + LEASE,
                               other_than=old.name)
    if r2.returncode == 0:
        new = _wait(lambda: second if second.is_primary() else None,
                    HANDOVER_TIMEOUT + LEASE, f"{second.name} promoted",
                    describe=cluster.describe)
    else:
        assert new is first, cluster.describe()
    assert cluster.wait_healthy(HEALTHY_TIMEOUT) is new
    load.wait_writes_on(new, since)
    history = load.stop()
    missing = check_loss_and_rejoin(cluster, load, history, old, new, since)
    assert missing == []
    _wait(lambda: same_timeline_everywhere(cluster, new), HEALTHY_TIMEOUT,
          "every standby streaming from the new primary on its timeline",
          describe=cluster.describe)


def test_switchover_while_paused_completes(shared):
    cluster = shared
    old = cluster.wait_healthy(HEALTHY_TIMEOUT)
    target = next(n for n in cluster.nodes if n is not old)
    _wait(lambda: settled_members(cluster), 30, "member records")
    result = old.agentctl("pause")
    assert result.returncode == 0, result.stdout + result.stderr
    again = old.agentctl("pause")
    assert again.returncode == 0 and "already paused" in again.stdout, \
        again.stdout + again.stderr
    try:
        result = old.agentctl("switchover", "--to", target.name, "--wait",
                              "--timeout", str(HANDOVER_TIMEOUT),
                              timeout=HANDOVER_TIMEOUT + 30)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{target.name} is the new primary" in result.stdout
        assert target.is_primary(), cluster.describe()
        assert cluster.lease()["annotations"].get("pglease.io/paused") \
            == "true"
    finally:
        target.agentctl("resume")
    assert cluster.wait_healthy(HEALTHY_TIMEOUT) is target


def test_frozen_named_successor_is_passed_over_within_two_leases(shared):
    """Issue 14 test 4(c): the agent of the named successor is frozen
    (its PostgreSQL still answers, so the leader hands over to it); another
    standby takes over within two lease durations, losing nothing."""
    cluster = shared
    load = Load(cluster, "frozen_successor")
    old = load.old
    successor, other = [n for n in cluster.nodes if n is not old]
    _wait(lambda: settled_members(cluster), 30, "member records")
    pid = successor.agent_proc.pid
    successor.agent_proc.send_signal(signal.SIGSTOP)
    successor._stopped.add(pid)  # pylint: disable=protected-access
    try:
        since = time.monotonic()
        result = old.agentctl("switchover", "--to", successor.name)
        assert result.returncode == 0, result.stdout + result.stderr
        new = cluster.wait_primary(2 * LEASE + HANDOVER_TIMEOUT / 3,
                                   other_than=old.name)
        took = time.monotonic() - since
        assert new is other, cluster.describe()
        assert took < 2 * LEASE + 5, f"took {took:.1f}s"
    finally:
        successor.sigcont()
    load.wait_writes_on(new, since)
    history = load.stop()
    check_loss_and_rejoin(cluster, load, history, old, new, since)
    assert cluster.wait_healthy(HEALTHY_TIMEOUT) is new
