"""The member Pods' watch (issue 19, item 9; `member_watch`): full agents of
the local cluster keep the member records as the emulator's watch of the
Pods delivers them. At idle no agent lists anything; a member's change
(new tags, reloaded) reaches every agent's member list without a list; a broken watch falls
back to lists and comes back; with `member_watch = no` the agents list the
Pods as before."""

import json
import os
import socket
import time

import pgharness

# cluster.DEFAULT_SETTINGS: status_interval 2 s, retry_period 1 s.
STATUS_INTERVAL = 2.0


def agent_status(node):
    """The agent's own status over its control socket (what `agentctl node
    status` reads): its member list is n->members."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(os.path.join(node.run_dir, "agent.sock"))
        sock.sendall(json.dumps({"version": 1, "command": "status"}).encode()
                     + b"\n")
        return json.loads(sock.makefile("r").readline())


def member_field(node, name, key):
    """A field of member `name`'s record in node's agent's member list."""
    status = agent_status(node)
    members = status.get("members") or \
        status.get("result", {}).get("members") or []
    for m in members:
        if m.get("name") == name:
            return m.get(key)
    return None


def pod_watchers(cluster):
    """The users with a watch of the Pods open on the emulator."""
    return {w["user"] for w in cluster.emulator.watches()["watches"]
            if "/pods" in w["path"]}


def wait_pod_watches(cluster, timeout=20):
    names = {n.name for n in cluster.nodes}
    pgharness.wait_for(lambda: names <= pod_watchers(cluster), timeout,
                       "every agent's watch of the Pods")


def lists_by(cluster, window):
    """The list requests of each agent over a window of the given seconds
    at idle (the window itself, not a wait for a condition)."""
    cluster.emulator.reset_stats()
    time.sleep(window)
    tokens = cluster.emulator.stats()["tokens"]
    return {n.name: tokens.get(n.token, {}).get("verbs", {}).get("list", 0)
            for n in cluster.nodes}


def test_idle_agents_list_nothing_and_see_changes(cluster):
    primary = cluster.wait_healthy(60)
    wait_pod_watches(cluster)
    # Without the watch each agent lists the Pods at least every
    # status_interval: 3 windows' worth here would be 9 lists or more.
    window = 3 * STATUS_INTERVAL + 1
    listed = lists_by(cluster, window)
    assert sum(listed.values()) == 0, (listed, cluster.emulator.stats())

    # A member's change reaches the others through the watch alone: new
    # tags (reloadable) in one standby's record.
    standby = next(n for n in cluster.nodes if n is not primary)
    others = [n for n in cluster.nodes if n is not standby]
    cluster.emulator.reset_stats()
    standby.write_conf({"tags": "watched"})
    standby.reload_agent()
    try:
        pgharness.wait_for(
            lambda: all(member_field(o, standby.name, "tags") == "watched"
                        for o in others),
            STATUS_INTERVAL + 5, f"{standby.name}'s new tags everywhere")
    except AssertionError:
        print(json.dumps(agent_status(others[0]))[:3000],
              standby.pod()["metadata"]["annotations"])
        raise
    tokens = cluster.emulator.stats()["tokens"]
    for o in others:
        assert tokens.get(o.token, {}).get("verbs", {}).get("list", 0) == 0, \
            (o.name, tokens)


def test_a_broken_pod_watch_falls_back_and_comes_back(cluster):
    cluster.wait_healthy(60)
    wait_pod_watches(cluster)
    before = {w["id"] for w in cluster.emulator.watches()["watches"]}
    # 410 Gone for every open watch: each agent lists again, then watches
    # from the new version.
    cluster.emulator.watches(compact=True, action="gone")
    leader = cluster.lease_holder()

    def watching_again():
        fresh = [w for w in cluster.emulator.watches()["watches"]
                 if w["id"] not in before]
        pods = {w["user"] for w in fresh if "/pods" in w["path"]}
        leases = {w["user"] for w in fresh if "/leases" in w["path"]}
        # Every agent's Pods again, and every follower's Lease: both
        # lists are behind us (the holder does not read the Lease).
        return all(n.name in pods and (n.name == leader or n.name in leases)
                   for n in cluster.nodes)

    pgharness.wait_for(watching_again, 2 * STATUS_INTERVAL + 10,
                       "new watches of the Pods and the Lease after 410")
    window = 3 * STATUS_INTERVAL + 1
    listed = lists_by(cluster, window)
    assert sum(listed.values()) == 0, listed
    assert cluster.primary() is not None


def test_member_watch_off_lists_as_before(cluster_factory):
    cluster = cluster_factory(settings={"member_watch": "no"})
    cluster.wait_healthy(60)
    pgharness.wait_for(lambda: not pod_watchers(cluster), 10,
                       "no watch of the Pods")
    window = 3 * STATUS_INTERVAL + 1
    listed = lists_by(cluster, window)
    # At least one list a status_interval each.
    assert all(n >= 2 for n in listed.values()), listed
