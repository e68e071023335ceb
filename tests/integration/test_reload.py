"""Configuration reload (SIGHUP) on a running cluster, as docs/failover.md
("Reloading the configuration") promises it, on three real PostgreSQL 15
servers under their run-postgres supervisors and agents, against the
Kubernetes API emulator.

The scenarios run in sequence on one shared cluster (the test timings of
test_failover.py), each with a writer and the split-brain checker:

- SIGHUP to every agent with the file unchanged, then with a changed
  reloadable key (priority), then with an invalid file (refused, the running
  configuration kept): every agent keeps reporting its PostgreSQL as it is,
  the cluster stays healthy, writes continue, nothing fails over;
- a pod kill afterwards still fails over;
- a reload that raises lease_duration/renew_deadline on the primary, with
  the primary cut off from the API at once: the longer deadline does not
  apply before a renewal has published it, so the old primary stops
  accepting writes by its old renew deadline and the checker finds no
  moment with two writable servers (issue 17, item 1).

Under the AddressSanitizer build (scripts/test) a reload that left a
pointer into the freed configuration shows in the agents' logs at the first
tick after the SIGHUP."""

import json

import pytest

import cluster as cluster_mod
from test_failover import FAILOVER_TIMEOUT, RENEW_DEADLINE, SETTINGS, Scenario

_wait = cluster_mod._wait  # pylint: disable=protected-access

# Events an agent must not log after a reload that changed nothing about
# its role: each was a symptom of the dangling configuration (issue 14).
ALARMS = ("fence", "primary-down", "release", "promote", "rejoin")


@pytest.fixture(scope="module")
def shared(module_cluster_factory):
    """The cluster the scenarios share."""
    return module_cluster_factory(settings=SETTINGS, cluster_name="reload")


def status(node):
    """`agentctl node status --json` of node, as a dict. agentctl reads
    the node's file too: while it is invalid, it reads the valid copy."""
    conf = VALID_COPY.get(node.name, node.conf_path)
    result = node.cluster.reaper.run(
        [node.cluster.binaries.agentctl, "-c", conf, "node", "status",
         "--json"], timeout=15, check=False, cwd=node.dir,
        env=cluster_mod._child_env())  # pylint: disable=protected-access
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["node"]


# node name -> a valid copy of its file while the real one is invalid.
VALID_COPY = {}


def reload_all(nodes, expect):
    """SIGHUP to every agent of nodes; waits until each has logged a
    `reload` line containing expect. Returns each node's log position
    before the signal."""
    marks = {node.name: len(node.agent_log()) for node in nodes}
    for node in nodes:
        node.reload_agent()
    for node in nodes:
        _wait(lambda n=node: [e for e in n.agent_log()[marks[n.name]:]
                              if e.get("event") == "reload"
                              and expect in e.get("msg", "")],
              20, f"{node.name}: a reload line with {expect!r}",
              describe=lambda n=node: n.logs(lines=10))
    return marks


def assert_truthful(cluster, marks):
    """For three ticks after the reload, every agent reports its
    PostgreSQL as it is (running, accepting, in recovery exactly on the
    standbys) and logs none of ALARMS."""
    for node in cluster.nodes:
        first = status(node)["ticks"]
        _wait(lambda n=node: status(n)["ticks"] >= first + 3, 20,
              f"{node.name}: three ticks after the reload")
        postgres = status(node)["postgres"]
        assert postgres["running"] and postgres["accepting"], \
            (node.name, postgres)
        assert postgres["in_recovery"] == node.is_standby(), \
            (node.name, postgres)
    for node in cluster.nodes:
        alarms = [e for e in node.agent_log()[marks[node.name]:]
                  if e.get("event") in ALARMS
                  or "cannot start PostgreSQL" in e.get("msg", "")]
        assert not alarms, f"{node.name} after the reload: {alarms}"


def test_sighup_without_change(shared):
    """The same file again: nothing changes, nothing fails over."""
    run = Scenario(shared, "reload_unchanged")
    run.failed()
    marks = reload_all(shared.nodes, "configuration reloaded (0 changed")
    assert_truthful(shared, marks)
    result = run.finish(zero_loss_if_same=True)
    assert not result["failover"] and result["transitions"] == 0


def test_sighup_with_a_changed_reloadable_key(shared):
    """A new priority on every node: applied at once (agentctl shows it),
    and nothing else changes."""
    run = Scenario(shared, "reload_priority")
    priorities = {node.name: 200 + 10 * node.index for node in shared.nodes}
    for node in shared.nodes:
        node.write_conf({"priority": priorities[node.name]})
    run.failed()
    marks = reload_all(shared.nodes, "configuration reloaded (1 changed")
    for node in shared.nodes:
        assert status(node)["priority"] == priorities[node.name]
    assert_truthful(shared, marks)
    result = run.finish(zero_loss_if_same=True)
    assert not result["failover"] and result["transitions"] == 0


def test_sighup_with_an_invalid_file_keeps_the_running_configuration(shared):
    """A file with a bad value is refused with its file, line and key
    named; the running configuration (the priority of the last scenario)
    stays, and so does the cluster."""
    run = Scenario(shared, "reload_invalid")
    before = {node.name: status(node)["priority"] for node in shared.nodes}
    for node in shared.nodes:
        with open(node.conf_path, encoding="utf-8") as handle:
            text = handle.read()
        line = text.count("\n") + 1
        VALID_COPY[node.name] = node.conf_path + ".valid"
        with open(VALID_COPY[node.name], "w", encoding="utf-8") as handle:
            handle.write(text)
        node.write_conf(text=text + "renew_deadline = soon\n")
    run.failed()
    try:
        marks = reload_all(shared.nodes, "keeping the running one")
        for node in shared.nodes:
            refused = [e for e in node.agent_log()[marks[node.name]:]
                       if e.get("event") == "reload"]
            assert refused[0]["level"] == "error", refused
            assert f"{node.conf_path}:{line}" in refused[0]["msg"], refused
            assert "renew_deadline" in refused[0]["msg"], refused
            assert status(node)["priority"] == before[node.name]
        assert_truthful(shared, marks)
    finally:
        for node in shared.nodes:
            node.write_conf()
        VALID_COPY.clear()
    result = run.finish(zero_loss_if_same=True)
    assert not result["failover"] and result["transitions"] == 0


def test_pod_kill_after_reloads_still_fails_over(shared):
    """After the reloads, kill -9 of the primary's pod: a standby takes
    over, the pod started again rejoins."""
    run = Scenario(shared, "reload_then_pod_kill")
    old = run.old
    run.failed()
    old.kill_pod()
    run.wait_writable(exclude=[old])
    old.start_pod(init=True)
    result = run.finish()
    assert result["failover"]


def test_raised_deadline_by_reload_then_cut_from_the_api(shared):
    """Issue 17, item 1: the primary's file gets lease_duration 8 s and
    renew_deadline 6 s (the Lease still says 4 s), its agent is cut off
    from the API and reloaded at once. The others take the Lease after the
    4 s the record says; the old primary must stop accepting writes by its
    old renew deadline (3 s), not the new one, and at no moment may two
    servers accept writes."""
    run = Scenario(shared, "reload_longer_then_cut")
    old = run.old
    old.write_conf({"lease_duration": "8s", "renew_deadline": "6s"})
    # The cut first, so that no renewal can publish the new duration.
    old.cut_api()
    run.failed()
    try:
        reload_all([old], "configuration reloaded (2 changed")
        run.wait_writable(exclude=[old], timeout=FAILOVER_TIMEOUT)
    finally:
        old.restore_api()
    old.write_conf({"lease_duration": None, "renew_deadline": None})
    reload_all([old], "configuration reloaded (2 changed")
    result = run.finish()
    assert result["failover"]
    if result["old_last_write"] is not None:
        assert result["old_last_write"] < RENEW_DEADLINE + 1.0, result
