"""Readiness of an isolated primary (issue 17, item 3), on two real
PostgreSQL 15 servers under their supervisors and agents, against the
Kubernetes API emulator, with the test timings (lease 4 s, renew deadline
3 s, retry 1 s).

The chart's readiness probe is `agentctl node check --role any`; the
primary Service selects the pod labelled primary, a label an agent cut off
from the API can no longer change. So the check itself must fail on a
primary whose agent holds no lease it can prove: past its renew deadline
(the lease-expiry file, or the agent's status), whatever PostgreSQL does.
The check must fail before any other member may take the Lease (the last
renewal + lease_duration): with the agent working (it fences at the same
deadline), and with the agent and the supervisor hung, where nothing
fences and only the readiness rule keeps clients away from a PostgreSQL
that still accepts writes ("not routable", not "not accepting")."""

import datetime
import json
import os
import signal
import time

import cluster as cluster_mod

_wait = cluster_mod._wait  # pylint: disable=protected-access
_seconds = cluster_mod._seconds  # pylint: disable=protected-access

LEASE = _seconds(cluster_mod.DEFAULT_SETTINGS["lease_duration"])
RENEW_DEADLINE = _seconds(cluster_mod.DEFAULT_SETTINGS["renew_deadline"])
CHECK_OK, CHECK_CRITICAL = 0, 2


def microtime(value):
    """A Lease MicroTime ("2026-12-05T07:50:01.123456Z") in seconds since
    the epoch."""
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if "." in value else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.datetime.strptime(value, fmt).replace(
        tzinfo=datetime.timezone.utc).timestamp()


def check(node):
    # --timeout: an agent that does not answer costs the probe little.
    return node.agentctl("node", "check", "--role", "any", "--timeout",
                         "200ms", timeout=30)


def healthy_pair(cluster_factory):
    """A two-node cluster whose primary and standby pass the check, and
    whose agents say which of them holds a provable lease."""
    cluster = cluster_factory(n=2)
    primary = cluster.wait_healthy(60)
    standby = next(n for n in cluster.nodes if n is not primary)
    result = check(primary)
    assert result.returncode == CHECK_OK, result.stdout + result.stderr
    assert result.stdout.startswith("OK: primary"), result.stdout
    status = json.loads(primary.agentctl("node", "status", "--json",
                                         check=True).stdout)
    assert status["node"]["lease_valid"] is True, status["node"]
    _wait(lambda: check(standby).returncode == CHECK_OK, 20,
          f"{standby.name}'s check to pass")
    status = json.loads(standby.agentctl("node", "status", "--json",
                                         check=True).stdout)
    assert status["node"]["lease_valid"] is False, status["node"]
    return cluster, primary, standby


def poll_until_unready(cluster, primary, cut):
    """Run the check on `primary` every ~100 ms until it fails; returns
    (the failing CompletedProcess, wall time it was started, wall time of
    the last renewal). Fails if another member takes the Lease first, or
    if a check started once the Lease could be taken (the last renewal +
    lease_duration) still passes.

    Judged by when each check started, not when it returned: the check
    compares the time it runs at with the deadline, so one that started
    before the deadline and was slow to return (agentctl starved of CPU on
    a loaded machine) proves nothing either way, while one that started
    after the Lease could be taken and still passed is the defect."""
    result = None
    while True:
        assert time.time() < cut + 4 * LEASE, \
            f"{primary.name}'s check still passes {4 * LEASE}s after the " \
            f"cut: {result and result.stdout}\n" + cluster.describe()
        lease = cluster.lease() or {}
        holder = lease.get("holderIdentity")
        assert holder == primary.name, \
            f"{holder!r} took the Lease while {primary.name} still passed " \
            f"its check: {result and result.stdout}"
        # The record no longer changes once the cut is in place: its
        # renewTime is the last successful renewal.
        renewed = microtime(lease["spec"]["renewTime"])
        started = time.time()
        result = check(primary)
        if result.returncode != CHECK_OK:
            return result, started, renewed
        assert started < renewed + LEASE, \
            f"{primary.name}'s check started {started - renewed:.2f}s " \
            f"after the last renewal passed, the Lease may be taken after " \
            f"{LEASE}s: {result.stdout}"
        time.sleep(0.1)


def test_a_hung_agent_s_primary_is_unready_before_the_lease_can_be_taken(
        cluster_factory):
    """The primary's agent and supervisor hang (SIGSTOP) while cut off from
    the API: nothing fences PostgreSQL, which keeps accepting writes as a
    primary. The check must still fail, by the lease rule ("not
    routable"), before another member may take the Lease."""
    cluster, primary, standby = healthy_pair(cluster_factory)
    pids = [primary.agent_proc.pid, primary.supervisor_proc.pid]
    frozen = False
    try:
        primary.cut_api()
        cut = time.time()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        frozen = True
        result, failed, renewed = poll_until_unready(cluster, primary, cut)
        assert result.returncode == CHECK_CRITICAL, result.stdout
        assert "not routable" in result.stdout, result.stdout
        assert primary.is_primary(), "PostgreSQL was fenced after all"
        print(f"\nhung agent: primary unready {failed - renewed:.2f}s after "
              f"its last renewal (renew deadline {RENEW_DEADLINE}s, lease "
              f"{LEASE}s): {result.stdout.strip()}")
        # Thawed before the Lease can be taken: the agent and the
        # supervisor find the deadline passed and fence.
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
        frozen = False
        _wait(lambda: not primary.is_primary(), 30,
              f"{primary.name} to stop being a primary")
        assert cluster.wait_primary(30, other_than=primary.name) is standby
    finally:
        if frozen:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        primary.restore_api()


def test_a_primary_cut_off_from_the_api_is_unready_before_the_lease_can_be_taken(
        cluster_factory):
    """Issue 17's case as it comes: the primary's agent is cut off from the
    API and works on. Its check fails (the lease rule, or the fence at the
    same deadline) before another member may take the Lease, and the
    agent's status says it holds no provable lease."""
    cluster, primary, standby = healthy_pair(cluster_factory)
    try:
        primary.cut_api()
        cut = time.time()
        result, failed, renewed = poll_until_unready(cluster, primary, cut)
        assert result.returncode == CHECK_CRITICAL, result.stdout
        status = json.loads(primary.agentctl("node", "status", "--json",
                                             check=True).stdout)
        assert status["node"]["lease_valid"] is False, status["node"]
        print(f"\ncut off: primary unready {failed - renewed:.2f}s after its "
              f"last renewal: {result.stdout.strip()}")
        assert cluster.wait_primary(30, other_than=primary.name) is standby
    finally:
        primary.restore_api()


