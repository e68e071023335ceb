"""A frozen PostgreSQL is down (issue 16, point 3): SIGSTOP of the
primary's postmaster only (the agent and the backends run on) for three
lease durations, in synchronous mode, under a writer that records every
acknowledged row and a checker that watches for two writable servers. The
agent sees that its primary accepts no new connection, fails over within
primary_start_timeout + one lease duration, nothing acknowledged is lost,
and the old primary rejoins after SIGCONT."""
import os
import signal
import time

import cluster as cluster_mod
import pytest
from test_switchover import Load, check_loss_and_rejoin, settled_members
from test_sync import wait_sync_published

_wait = cluster_mod._wait  # pylint: disable=protected-access
_seconds = cluster_mod._seconds  # pylint: disable=protected-access

SETTINGS = dict(cluster_mod.DEFAULT_SETTINGS, synchronous_mode="on",
                synchronous_node_count="1")
LEASE = _seconds(SETTINGS["lease_duration"])
START_TIMEOUT = _seconds(SETTINGS["primary_start_timeout"])
RETRY = _seconds(SETTINGS["retry_period"])
HEALTHY_TIMEOUT = 90


@pytest.fixture(scope="module")
def sync_cluster(module_cluster_factory):
    return module_cluster_factory(settings=SETTINGS)


def test_frozen_postmaster_fails_over_and_loses_nothing(sync_cluster):
    cluster = sync_cluster
    load = Load(cluster, "frozen_postmaster")
    old = load.old
    _wait(lambda: settled_members(cluster), 30, "member records")
    wait_sync_published(cluster, old)
    postmaster = old.postmaster_pid()
    assert postmaster
    since = time.monotonic()
    os.kill(postmaster, signal.SIGSTOP)
    try:
        new = cluster.wait_primary(3 * LEASE, other_than=old.name)
        took = time.monotonic() - since
        # The bound of the issue, plus the tick that notices (a connect
        # attempt that times out) and the successor's tick.
        bound = START_TIMEOUT + LEASE + 2 * RETRY
        if os.environ.get("PGLEASE_SANITIZE", "none") in ("", "none"):
            assert took < bound, \
                f"failover took {took:.1f}s (bound {bound:g}s)\n" + \
                cluster.describe()
        load.wait_writes_on(new, since)
        # The freeze lasts three lease durations in all.
        _wait(lambda: time.monotonic() >= since + 3 * LEASE, 3 * LEASE,
              "the end of the freeze")
    finally:
        try:
            os.kill(postmaster, signal.SIGCONT)
        except ProcessLookupError:
            pass
    history = load.stop()
    check_loss_and_rejoin(cluster, load, history, old, new, since)
    assert cluster.wait_healthy(HEALTHY_TIMEOUT) is new
    assert old.is_streaming_from(new), cluster.describe()
    log = [e.get("msg", "") for e in old.agent_log()
           if e.get("event") == "primary-down"]
    assert any("old connection only" in m for m in log), log
