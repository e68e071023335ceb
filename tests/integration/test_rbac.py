"""The agents with exactly the chart's Role (least privilege, issue 17).

The Role is rendered by the real helm from charts/pglease (StatefulSet and
cluster named like the local cluster's pods, pg-0..pg-2 and pg) and given
to every agent's token as RBAC rules; the Kubernetes API emulator enforces
them as the RBAC authorizer does, resourceNames included. The cluster must
bootstrap, publish every member, fail over and record events without one
request refused, and a node's credentials must not reach beyond the Role:
no patch of a foreign pod (making it pglease.io/role=primary) or of a pod
past postgres.maxReplicas, no get of a pod, no delete of the Lease.

helm is the one scripts/lib.sh's ensure_helm builds (scripts/test does);
without it this test fails and says so.
"""

import os
import subprocess

import pytest
import yaml

import cluster as localcluster
import pgharness
from pgharness import wait_for

SOURCE_DIR = os.environ.get("PGLEASE_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def chart_role(namespace, cluster_name):
    helm = pgharness.find_helm()
    if not helm:
        pytest.fail("no helm: run `source scripts/lib.sh && ensure_helm` "
                    "(scripts/test does)")
    result = subprocess.run(
        [helm, "template", "pg", os.path.join(SOURCE_DIR, "charts", "pglease"),
         "--namespace", namespace, "--show-only", "templates/rbac.yaml",
         "--set", f"fullnameOverride={cluster_name}",
         "--set", f"postgres.statefulsetName={cluster_name}",
         "--set", "secrets.existingSecret=pg-passwords"],
        capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    (role,) = [d for d in yaml.safe_load_all(result.stdout)
               if d and d["kind"] == "Role"]
    return role


def test_agents_work_with_the_charts_role_and_nothing_more(cluster_factory):
    local = cluster_factory(start=False)
    role = chart_role(local.namespace, local.cluster_name)
    local.setup()
    emu = local.emulator
    for node in local:
        emu.add_token(node.token, node.name, rules=role["rules"])
    emu.reset_stats()
    try:
        primary = local.start(timeout=120)
    except localcluster.AgentFeatureMissing as exc:
        pytest.skip(str(exc))

    # Every member published (its own pod patched), the leader's facts on
    # the Lease, events recorded.
    want = {n.name: ("primary" if n is primary else "replica")
            for n in local}

    def roles():
        return {name: pod["metadata"].get("labels", {}).get(
            "pglease.io/role") for name, pod in local.pods().items()}

    wait_for(lambda: roles() == want, 30,
             f"every member's role label (have {roles()}, want {want})")

    # A failover: the Lease taken over (update), the new primary's label.
    primary.kill_pod()
    new = local.wait_primary(60, other_than=primary.name)
    assert local.lease_holder() == new.name

    status, events = emu.get(f"/api/v1/namespaces/{local.namespace}/events")
    assert status == 200
    assert any(e.get("source", {}).get("component") == "pglease-agent"
               for e in events.get("items", [])), events

    refused = {t["user"]: t["codes"] for t in emu.stats()["tokens"].values()
               if t["user"] in {n.name for n in local} and
               t["codes"].get("403")}
    assert not refused, f"the Role refused agent requests: {refused}"

    # Beyond the Role, with a node's own credentials.
    token = local.nodes[1].token
    emu.create_pod(local.namespace, "intruder", labels={"app": "other"})
    emu.create_pod(local.namespace, f"{local.cluster_name}-9")
    patch = {"metadata": {"labels": {"pglease.io/role": "primary"}}}
    for name in ("intruder", f"{local.cluster_name}-9"):
        status, body = emu.patch(emu.pod_path(local.namespace, name), patch,
                                 token=token)
        assert status == 403, (name, status, body)
    assert emu.get(emu.pod_path(local.namespace, "intruder"),
                   token=token)[0] == 403
    assert emu.delete(emu.lease_path(local.namespace, local.lease_name),
                      token=token)[0] == 403
    status, intruder = emu.get(emu.pod_path(local.namespace, "intruder"))
    assert status == 200
    assert "pglease.io/role" not in intruder["metadata"].get("labels", {})
