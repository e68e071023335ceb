"""The followers' Lease watch and every agent's watch of the member Pods
(issue 19, item 9) against the real kube-apiserver, on a three-node
cluster: the followers hold watches of the Lease and every agent one of
the Pods by label, which the server counts; after etcd is compacted to its current
revision and kube-apiserver is restarted under the open watches, the
followers find their streams broken (through the TCP proxy in front of
each agent, which keeps their side open, as a silence past the bound),
list again, watch again, and a switchover still works, with no two
primaries. And the server answers a watch from a version it no longer
has with 410 in the form the agent reads (an ERROR event, or the status)."""

import json
import re
import time

import pgharness
import realkube
# The shared three-node cluster and its split-brain checker.
from test_real_faults import checked, shared  # noqa: F401  pylint: disable=unused-import
from test_real_faults import components

HEAL = 90
# apiserver_longrunning_requests{...,resource="leases",scope="resource",
# verb="WATCH",...} N: the watches of one Lease by name open now (scope
# "resource": a field selector on metadata.name; the controllers' own
# Lease informers are cluster-scoped).
WATCHES = re.compile(r'^apiserver_longrunning_requests\{([^}]*)\} (\d+)',
                     re.M)


def open_watches(admin, resource):
    """The watches of `resource` open now in a namespace (scope "resource"
    or "namespace"; the controllers' informers are cluster-scoped)."""
    status, text, _ = admin.request("GET", "/metrics")
    assert status == 200, text
    total = 0
    for labels, value in WATCHES.findall(text):
        if f'resource="{resource}"' in labels and 'verb="WATCH"' in labels \
                and 'scope="cluster"' not in labels:
            total += int(value)
    return total


def lease_watches(admin):
    return open_watches(admin, "leases")


def members_watching(local, admin):
    """Every agent watches the cluster's Pods (member_watch)."""
    members = len(local.nodes)
    pgharness.wait_for(lambda: open_watches(admin, "pods") >= members, HEAL,
                       f"{members} watches of the Pods")



def followers_watching(local, admin):
    followers = len(local.nodes) - 1
    pgharness.wait_for(lambda: lease_watches(admin) >= followers, HEAL,
                       f"{followers} watches of the Lease")


def test_followers_watch_the_lease(checked, control_plane):
    admin = realkube.Admin(control_plane)
    followers_watching(checked, admin)
    members_watching(checked, admin)


def test_compaction_and_restart_under_open_watches(checked, control_plane):
    local = checked
    admin = realkube.Admin(control_plane)
    followers_watching(local, admin)
    marks = {n.name: len(n.agent_log()) for n in local.nodes}
    plane = components(local)
    plane.compact()
    plane.restart("kube-apiserver")
    local.wait_healthy(HEAL)
    followers_watching(local, admin)
    members_watching(local, admin)
    broken = [e.get("msg", "") for n in local.nodes
              for e in n.agent_log()[marks[n.name]:]
              if e.get("event") == "watch"]
    print("\nwatch breaks after compaction + restart:", broken)
    assert broken, "no follower saw its watch break"
    # The watch is back: a switchover hands over at once.
    old = local.primary()
    started = time.monotonic()
    result = old.agentctl("switchover", "--wait", timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    new = local.wait_healthy(HEAL)
    assert new.name != old.name
    print(f"switchover after the restart: {time.monotonic() - started:.2f}s")


def test_server_expires_a_version_it_no_longer_has(checked, control_plane):
    """The agent relists on 410 as an HTTP status and as an ERROR event
    (tests/unit/test-lease-watch.c); this is what the real server sends
    for a version older than its watch cache and etcd keep."""
    admin = realkube.Admin(control_plane)
    components(checked).compact()
    ns = checked.namespace
    path = (f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases?watch=1"
            "&fieldSelector=metadata.name%3Dpg-leader&resourceVersion=1"
            "&timeoutSeconds=5")
    status, body, _ = admin.request("GET", path, timeout=20)
    if status == 200:
        first = json.loads(body.splitlines()[0] if isinstance(body, str)
                           else json.dumps(body))
        print(f"\nwatch from version 1: 200, first event {first}")
        assert first["type"] == "ERROR"
        assert first["object"]["code"] == 410
    else:
        print(f"\nwatch from version 1: {status} {body}")
        assert status == 410
