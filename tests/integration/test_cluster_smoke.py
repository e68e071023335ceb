"""The local cluster of tests/integration/cluster.py comes up as the design
says: pg-0 bootstraps and takes the lease, the others clone and stream from
it, and the Pods carry role labels that match what Postgres says.

Steps the agent does not implement yet skip with the agent's own words
(cluster.AgentFeatureMissing); everything else must pass."""

import json
import shutil
import subprocess

import pytest

import cluster as cluster_mod
import pgharness


def test_cluster_files_are_accepted_by_the_agent(cluster_factory, binaries,
                                                  reaper):
    """Before any process: the emulator has one Pod per node with the
    cluster label, and each node's pglease.conf passes --check-config with
    the values the cluster chose."""
    local = cluster_factory(start=False)
    local.setup()
    pods = local.pods()
    assert sorted(pods) == ["pg-0", "pg-1", "pg-2"]
    for node in local.nodes:
        labels = pods[node.name]["metadata"]["labels"]
        assert labels[cluster_mod.CLUSTER_LABEL] == "pg"
        result = reaper.run([binaries.agent, "-c", node.conf_path,
                             "--check-config"], check=False,
                            env=cluster_mod._child_env())  # pylint: disable=protected-access
        assert result.returncode == 0, result.stderr
        assert f"node_name = {node.name}" in result.stdout
        assert f"pg_port = {node.port}" in result.stdout
        assert "lease_duration = 4s" in result.stdout
        assert local.passwords["superuser"] not in result.stdout + \
            result.stderr
        for which in cluster_mod.SECRET_NAMES:
            path = f"{node.secrets_dir}/{which}"
            assert pgharness.runner_can_access(path, "r")
    # Each node's token is its own identity on the API, allowed the
    # agent's calls (a list of the cluster's Pods; the chart's Role grants
    # no get of a single Pod, which the real server enforces).
    status, listing = local.emulator.get(
        local.emulator.pod_path(local.namespace) +
        f"?labelSelector={cluster_mod.CLUSTER_LABEL}%3Dpg",
        token=local.nodes[1].token)
    assert status == 200, listing
    assert len(listing["items"]) == 3, listing


def test_one_primary_holds_the_lease_and_two_stream_from_it(cluster):
    primary = cluster.wait_healthy(30)
    lease = cluster.lease()
    assert lease["holderIdentity"] == primary.name
    assert primary.name == "pg-0"       # it bootstrapped; nothing failed
    assert cluster.primary() is primary
    standbys = [n for n in cluster.nodes if n is not primary]
    assert len(standbys) == 2
    for node in standbys:
        assert node.is_streaming_from(primary)
        assert node.timeline() == primary.timeline()


def test_pods_carry_role_labels_matching_postgres(cluster):
    primary = cluster.wait_healthy(30)
    expected = {n.name: "primary" if n is primary else "replica"
                for n in cluster.nodes}
    deadline = 2 * cluster_mod._seconds(  # pylint: disable=protected-access
        cluster.settings["status_interval"]) + 5

    def labels():
        return {name: pod["metadata"].get("labels", {}).get(
            cluster_mod.ROLE_LABEL) for name, pod in cluster.pods().items()}

    cluster_mod._wait(  # pylint: disable=protected-access
        lambda: labels() == expected, deadline,
        f"role labels {expected}", describe=lambda: str(labels()))
    for node in cluster.nodes:
        assert (node.role() == "primary") == (node.role_label() == "primary")


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl not installed")
def test_kubectl_reads_the_lease(cluster):
    primary = cluster.wait_healthy(30)
    try:
        result = cluster.emulator.kubectl(
            "get", "lease", cluster.lease_name, "-n", cluster.namespace,
            "-o", "json")
    except subprocess.TimeoutExpired:
        pytest.fail("kubectl timed out against the emulator")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spec"]["holderIdentity"] == \
        primary.name

