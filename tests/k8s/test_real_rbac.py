"""The chart's Role, enforced by the real API server (issue 18): a
ServiceAccount token may make exactly the calls the agent needs, a cluster
of agents works with nothing more, and one verb less is seen to fail."""

import json
import os
import secrets

import pytest

import cluster as clusterlib
import pgharness
import realkube

CLUSTER = "pg"


@pytest.fixture
def kube(workdir, control_plane):  # pylint: disable=unused-argument
    """A namespace with the chart's RBAC and one Pod, no agent."""
    ns = f"pgl-{secrets.token_hex(4)}"
    real = realkube.RealKube(os.path.join(workdir, "kube"), namespace=ns,
                             cluster_name=CLUSTER).start()
    real.create_pod(ns, f"{CLUSTER}-0",
                    labels={clusterlib.CLUSTER_LABEL: CLUSTER})
    yield real
    real.stop()


def lease_body(ns, name, holder="pg-0"):
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 4}}


def test_the_role_grants_the_agents_calls_and_nothing_more(kube):
    ns = kube.namespace
    token = kube.request_token(f"{CLUSTER}-0")
    leases = kube.lease_path(ns)
    pods = kube.pod_path(ns)
    leader = f"{CLUSTER}-leader"

    def call(method, path, body=None, content_type="application/json"):
        status, answer, _ = kube.request(method, path, body, token=token,
                                         content_type=content_type)
        return status, answer

    # What the agent does (docs/kubernetes.md, "RBAC").
    assert call("GET", f"{leases}/{leader}")[0] == 404
    status, lease = call("POST", leases, lease_body(ns, leader))
    assert status == 201, lease
    lease["spec"]["holderIdentity"] = "pg-1"
    assert call("PUT", f"{leases}/{leader}", lease)[0] == 200
    # The followers' watch: list and watch of the leader Lease alone, by
    # fieldSelector (RBAC matches it against the rule's resourceNames).
    by_name = f"{leases}?fieldSelector=metadata.name%3D{leader}"
    status, listing = call("GET", by_name)
    assert status == 200 and len(listing["items"]) == 1, listing
    status, _ = call("GET", by_name + "&watch=1&timeoutSeconds=1"
                     f"&resourceVersion={listing['metadata']['resourceVersion']}")
    assert status == 200
    status, listing = call("GET", f"{pods}?labelSelector="
                           f"{clusterlib.CLUSTER_LABEL}%3D{CLUSTER}")
    assert status == 200 and len(listing["items"]) == 1, listing
    assert call("PATCH", f"{pods}/{CLUSTER}-0",
                {"metadata": {"labels": {clusterlib.ROLE_LABEL: "primary"}}},
                realkube.MERGE_PATCH)[0] == 200
    event = {"apiVersion": "v1", "kind": "Event",
             "metadata": {"name": f"{CLUSTER}-0.{secrets.token_hex(6)}",
                          "namespace": ns},
             "involvedObject": {"kind": "Pod", "name": f"{CLUSTER}-0",
                                "namespace": ns},
             "reason": "Test", "message": "rbac", "type": "Normal"}
    assert call("POST", f"/api/v1/namespaces/{ns}/events", event)[0] == 201
    # The leader's rolling update: the StatefulSet read by name (none
    # here: 404, not 403), and its pods deleted (below, last).
    statefulsets = f"/apis/apps/v1/namespaces/{ns}/statefulsets"
    assert call("GET", f"{statefulsets}/{CLUSTER}")[0] == 404

    # What the Role does not grant: another Lease, deleting the Lease,
    # Secrets, other namespaces, pods/status, cluster-wide objects,
    # another StatefulSet, any write to one, another pod's deletion.
    refused = [
        ("GET", f"{leases}/other-leader", None),
        ("GET", leases, None),
        ("GET", f"{leases}?fieldSelector=metadata.name%3Dother-leader", None),
        ("GET", f"{leases}?watch=1&timeoutSeconds=1", None),
        ("DELETE", f"{leases}/{leader}", None),
        ("PUT", f"{leases}/other-leader", lease_body(ns, "other-leader")),
        ("GET", f"/api/v1/namespaces/{ns}/secrets", None),
        ("GET", "/api/v1/namespaces/default/pods", None),
        ("DELETE", f"{pods}/other-0", None),
        ("PATCH", f"{pods}/{CLUSTER}-0/status", {"status": {}}),
        ("GET", "/api/v1/nodes", None),
        ("GET", f"{statefulsets}/other", None),
        ("GET", statefulsets, None),
        ("PATCH", f"{statefulsets}/{CLUSTER}", {"spec": {"replicas": 1}}),
        ("DELETE", f"{statefulsets}/{CLUSTER}", None),
    ]
    for method, path, body in refused:
        status, answer = call(method, path, body, realkube.MERGE_PATCH
                              if method == "PATCH" else "application/json")
        assert status == 403, (method, path, status, answer)
        assert answer["reason"] == "Forbidden", answer

    # Last: its own StatefulSet's pod deleted, only while it is the object
    # read (preconditions.uid), as the rolling update deletes.
    uid = call("GET", f"{pods}?labelSelector={clusterlib.CLUSTER_LABEL}"
               f"%3D{CLUSTER}")[1]["items"][0]["metadata"]["uid"]
    status, answer = call("DELETE", f"{pods}/{CLUSTER}-0",
                          {"kind": "DeleteOptions", "apiVersion": "v1",
                           "preconditions": {"uid": uid}})
    assert status == 200, answer


def test_a_token_whose_bound_object_is_gone_is_refused(kube):
    """What an agent meets when its projected token has expired: 401."""
    ns = kube.namespace
    kube.admin.must("POST", f"/api/v1/namespaces/{ns}/secrets", {
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "token-anchor", "namespace": ns}})
    token = kube.request_token(f"{CLUSTER}-0", bound_kind="Secret",
                               bound_name="token-anchor")
    # A call the Role grants: the cluster's Pods by label.
    path = (kube.pod_path(ns) +
            f"?labelSelector={clusterlib.CLUSTER_LABEL}%3D{CLUSTER}")
    assert kube.request("GET", path, token=token)[0] == 200
    kube.admin.must("DELETE", f"/api/v1/namespaces/{ns}/secrets/token-anchor",
                    ok=(200,))
    status, answer, _ = pgharness.wait_for(
        lambda: (lambda r: r if r[0] == 401 else None)(
            kube.request("GET", path, token=token)),
        10, "the token to be refused")
    assert answer["reason"] == "Unauthorized", answer


def agent_refusals(node):
    """The agent's log lines that report a 403 from the server: the agent
    names the status with its reason phrase ("403 Forbidden"; lib/kube.c).
    Not a bare "403", which a port number in a line may contain."""
    return [e for e in node.agent_log() if "Forbidden" in json.dumps(e)]


def test_a_cluster_needs_nothing_more_than_the_role(cluster_factory):
    """Three nodes against the real server with the chart's Role: one
    primary, labels and member status on the Pods, Events recorded, and no
    call refused."""
    local = cluster_factory(n=3)
    primary = local.wait_healthy(60)
    pods = local.pods()

    def labelled():
        pods.update(local.pods())
        return all(pods[n.name]["metadata"].get("labels", {}).get(
            clusterlib.ROLE_LABEL) == ("primary" if n is primary
                                       else "replica") for n in local.nodes)

    pgharness.wait_for(labelled, 30, "role labels matching Postgres")
    for node in local.nodes:
        assert node.member_status(), f"{node.name} has no member status"
        assert not agent_refusals(node), agent_refusals(node)[:3]
    status, events = local.emulator.get(
        f"/api/v1/namespaces/{local.namespace}/events")
    assert status == 200
    assert any(e["involvedObject"]["name"] == primary.name
               for e in events["items"]), events["items"][:3]


def test_one_verb_less_in_the_role_fails(cluster_factory):
    """The server enforces the Role: without `patch` on pods, the agent's
    first Pod update (init publishing the member record) is refused with
    403 and init fails."""
    local = cluster_factory(n=1, start=False)
    local.setup()
    kube = local.emulator
    path = ("/apis/rbac.authorization.k8s.io/v1/namespaces/"
            f"{local.namespace}/roles/{kube.release}")
    role = kube.admin.must("GET", path, ok=(200,))
    for rule in role["rules"]:
        if "pods" in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "patch"]
    # A rule left with no verb is invalid (422): drop it.
    role["rules"] = [rule for rule in role["rules"] if rule["verbs"]]
    kube.admin.must("PUT", path, role, ok=(200,))
    node = local.nodes[0]
    with pytest.raises(clusterlib.ClusterError) as failed:
        node.init(timeout=120)
    assert "403 Forbidden" in str(failed.value), failed.value
    assert "cannot patch" in str(failed.value), failed.value
    assert node.role_label() is None
