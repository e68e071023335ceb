"""agentctl against a real three-node cluster (tests/integration/cluster.py):
cluster show from the local agent and from the DCS directly, its JSON
against docs/agentctl-cluster-show.schema.json, node check's exit codes on
a primary, a replica and a stopped node, pause/resume, and the control
protocol over the agent's real socket."""

import json
import os
import socket
import stat
import time

import pytest

import schema_subset

SCHEMA_PATH = os.path.join(
    os.environ.get("PGLEASE_SOURCE_DIR")
    or os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))),
    "docs", "agentctl-cluster-show.schema.json")

EXIT_USAGE, EXIT_UNREACHABLE = 2, 4
CHECK_OK, CHECK_CRITICAL = 0, 2


def _schema():
    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        return json.load(handle)


def _show_json(node, *extra):
    result = node.agentctl("cluster", "show", "--json", *extra)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return json.loads(result.stdout)


def _wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: last {last!r}")


def _settled(view, primary, names):
    """Every member's record says what the cluster is: one primary holding
    the lease, the others streaming."""
    members = {m["name"]: m for m in view["members"]}
    if sorted(members) != sorted(names):
        return False
    for name, member in members.items():
        want = ("primary", "running") if name == primary.name \
            else ("replica", "streaming")
        if (member["role"], member["status"]) != want:
            return False
    return view["lease"]["holder"] == primary.name


def test_cluster_show_lists_every_member_within_a_second(cluster):
    primary = cluster.wait_healthy(60)
    names = [n.name for n in cluster.nodes]
    replica = next(n for n in cluster.nodes if n is not primary)
    view = _wait_for(lambda: (lambda v: v if _settled(v, primary, names)
                              else None)(_show_json(replica)),
                     30, "member records to settle")
    assert view["source"] == "agent"
    assert view["lease"]["known"] and not view["lease"]["paused"]
    assert view["warnings"] == []
    for member in view["members"]:
        node = cluster.node(member["name"])
        assert member["host"] == "127.0.0.1"
        assert member["port"] == node.port
        assert member["timeline"] == primary.timeline()
        assert member["leader"] == (node is primary)
        assert member["lag_bytes"] is not None

    started = time.monotonic()
    result = replica.agentctl("cluster", "show")
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result.stderr
    assert elapsed < 1.0, f"cluster show took {elapsed:.2f}s"
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"Cluster pg: leader {primary.name}")
    assert lines[2].split("|")[0].strip() == "Name"
    rows = {line.split("|")[0].strip(): [c.strip() for c in line.split("|")]
            for line in lines[4:] if "|" in line}
    assert sorted(rows) == sorted(names)
    assert rows[primary.name][1:3] == ["primary", "running"]
    assert rows[primary.name][-1] == f"127.0.0.1:{primary.port}"
    assert "WARNING" not in result.stdout


def test_cluster_show_json_validates_against_the_schema(cluster):
    cluster.wait_healthy(60)
    schema = _schema()
    for node in cluster.nodes:
        view = _show_json(node)
        assert schema_subset.validate(view, schema) == []
    view = _show_json(cluster.nodes[0], "--dcs")
    assert view["source"] == "dcs"
    assert schema_subset.validate(view, schema) == []


def test_cluster_show_reads_the_dcs_and_probes_without_an_agent(cluster):
    primary = cluster.wait_healthy(60)
    replica = next(n for n in cluster.nodes if n is not primary)
    replica.stop_agent()
    view = _show_json(replica)
    assert view["source"] == "dcs"
    assert view["lease"]["holder"] == primary.name
    assert all(m["reachable"] is True for m in view["members"])
    assert next(m for m in view["members"]
                if m["name"] == primary.name)["role"] == "primary"


def test_node_check_exit_codes_on_primary_replica_and_stopped_node(cluster):
    primary = cluster.wait_healthy(60)
    replica = next(n for n in cluster.nodes if n is not primary)

    result = primary.agentctl("node", "check", "--role", "primary",
                              "--agent")
    assert result.returncode == CHECK_OK, result.stdout + result.stderr
    assert result.stdout.startswith("OK: primary, timeline ")
    assert result.stdout.strip().endswith("lag 0 B")

    result = _wait_for(
        lambda: (lambda r: r if r.returncode == CHECK_OK else None)(
            replica.agentctl("node", "check", "--role", "replica",
                             "--timeline", "--lag", "64MB")),
        20, "the replica's check to pass")
    assert result.stdout.startswith("OK: replica, timeline ")

    result = replica.agentctl("node", "check", "--role", "primary")
    assert result.returncode == CHECK_CRITICAL
    assert result.stdout.startswith("CRITICAL: replica, expected primary")

    replica.stop_agent()
    result = replica.agentctl("node", "check", "--agent")
    assert result.returncode == CHECK_CRITICAL
    assert "the agent does not answer" in result.stdout
    replica.stop_supervisor()
    result = replica.agentctl("node", "check")
    assert result.returncode == CHECK_CRITICAL
    assert result.stdout.startswith(
        "CRITICAL: PostgreSQL is not accepting connections")
    assert len(result.stdout.strip().splitlines()) == 1


def test_pause_and_resume_are_visible_in_cluster_show(cluster):
    primary = cluster.wait_healthy(60)
    replica = next(n for n in cluster.nodes if n is not primary)

    result = replica.agentctl("pause")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "automatic failover paused"
    annotations = cluster.lease()["annotations"]
    assert annotations.get("pglease.io/paused") == "true"
    for node in cluster.nodes:
        _wait_for(lambda n=node: _show_json(n)["lease"]["paused"], 10,
                  f"{node.name} to see the pause")
    assert "paused: yes" in primary.agentctl("cluster", "show").stdout

    result = primary.agentctl("resume")
    assert result.returncode == 0, result.stderr
    for node in cluster.nodes:
        _wait_for(lambda n=node: not _show_json(n)["lease"]["paused"], 10,
                  f"{node.name} to see the resume")


def test_agentctl_says_in_one_line_when_no_agent_runs(cluster_factory):
    local = cluster_factory(start=False)
    local.setup()
    node = local.nodes[0]
    result = node.agentctl("pause")
    assert result.returncode == EXIT_UNREACHABLE
    assert result.stdout == ""
    assert result.stderr.startswith("agentctl: cannot reach the agent at ")
    assert len(result.stderr.splitlines()) == 1
    result = node.agentctl("frobnicate")
    assert result.returncode == EXIT_USAGE


def _socket_path(node):
    return os.path.join(node.run_dir, "agent.sock")


def _exchange(path, payload, timeout=5):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(payload)
        data = b""
        while b"\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        line, _, _ = data.partition(b"\n")
        closed = False
        try:
            closed = sock.recv(1) == b""
        except socket.timeout:
            closed = False
        return json.loads(line), closed


def test_control_socket_is_private_and_survives_garbage(cluster):
    primary = cluster.wait_healthy(60)
    path = _socket_path(primary)
    mode = os.stat(path).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600

    reply, closed = _exchange(path, b"\x00\xffnot json\n", timeout=2)
    assert reply["ok"] is False and "malformed" in reply["error"]
    assert closed
    reply, _ = _exchange(path, b'{"version":2,"command":"status"}\n',
                         timeout=1)
    assert reply["ok"] is False and "version 1" in reply["error"]
    reply, closed = _exchange(path, b"x" * (70 * 1024), timeout=2)
    assert reply["ok"] is False and "longer than" in reply["error"]
    assert closed
    reply, _ = _exchange(path, b'{"version":1,"command":"status"}\n')
    assert reply["ok"] is True
    assert reply["node"]["name"] == primary.name
    assert reply["node"]["state"] == "primary"
    assert reply["node"]["postgres"]["accepting"] is True
    assert reply["node"]["postgres"]["in_recovery"] is False
    assert reply["lease"]["holder"] == primary.name
    assert reply["lease"]["renew_remaining_seconds"] > 0
    assert {m["name"] for m in reply["members"]} == \
        {n.name for n in cluster.nodes}
    # The agent is still there and healthy.
    assert primary.agent_alive()
    assert primary.agentctl("node", "status").returncode == 0


def test_switchover_to_a_named_standby_with_wait(cluster):
    primary = cluster.wait_healthy(60)
    target = next(n for n in cluster.nodes if n is not primary)
    names = [n.name for n in cluster.nodes]
    _wait_for(lambda: _settled(_show_json(primary), primary, names), 30,
              "member records to settle")
    result = primary.agentctl("switchover", "--to", "nobody")
    assert result.returncode == 7, result.stderr          # EXIT_NOT_FOUND
    result = primary.agentctl("switchover", "--to", target.name, "--wait",
                              "--timeout", "60", timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{target.name} is the new primary" in result.stdout
    assert cluster.wait_primary(30, other_than=primary.name) is target


def test_demote_wait_on_a_standby_stops_it_and_answers(cluster):
    primary = cluster.wait_healthy(60)
    replica = next(n for n in cluster.nodes if n is not primary)
    result = replica.agentctl("demote", "--wait", "--timeout", "20",
                              timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "standby stopped" in result.stdout
    _wait_for(lambda: not replica.is_running(), 20, "the standby to stop")
    assert replica.agentctl("node", "check").returncode == CHECK_CRITICAL


def test_demote_wait_on_the_primary_hands_the_lease_over(cluster):
    primary = cluster.wait_healthy(60)
    names = [n.name for n in cluster.nodes]
    _wait_for(lambda: _settled(_show_json(primary), primary, names), 30,
              "member records to settle")
    result = primary.agentctl("demote", "--wait", "--timeout", "15",
                              timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    new = cluster.wait_primary(30, other_than=primary.name)
    assert new is not primary
    assert new.name in result.stdout or "released" in result.stdout


def test_cluster_events_and_history_come_from_the_primary(cluster):
    primary = cluster.wait_healthy(60)
    replica = next(n for n in cluster.nodes if n is not primary)

    def events():
        result = replica.agentctl("cluster", "events", "--json", "--limit",
                                  "50")
        assert result.returncode == 0, result.stderr
        rows = json.loads(result.stdout)
        return rows if rows else None

    rows = _wait_for(events, 30, "events in the metadata schema")
    assert {"id", "at", "node", "event", "successful", "details"} <= \
        set(rows[0])
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows),
                                             reverse=True)
    one = replica.agentctl("cluster", "events", "--json", "--node",
                           rows[0]["node"])
    assert one.returncode == 0, one.stderr
    assert {r["node"] for r in json.loads(one.stdout)} == {rows[0]["node"]}
    table = replica.agentctl("cluster", "events", "--limit", "5")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[0].startswith("ID ")

    history = replica.agentctl("cluster", "history", "--json")
    assert history.returncode == 0, history.stderr
    for row in json.loads(history.stdout):
        assert {"timeline", "switch_lsn", "new_primary", "reason", "at"} <= \
            set(row)
