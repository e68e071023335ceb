"""charts/pglease with real helm against the real API server (issue 18):
`helm lint --strict`, `helm template --dry-run=server | kubectl apply
--dry-run=server` for the values a user tries, and `helm install` into
the namespace `database`, whose StatefulSet's Pods the local nodes then
stand in for (no kubelet runs: the harness sets each Pod's status as one
would), each agent with its Pod's name and namespace and a token of the
chart's ServiceAccount."""

import os
import secrets
import subprocess

import pytest

import cluster as clusterlib
import pgharness
import realkube

CHART = realkube.CHART_DIR
# Seconds for a namespace to be deleted: more than the chart's
# terminationGracePeriodSeconds, which the namespace controller may wait out
# before it looks again.
NAMESPACE_GONE = 180


@pytest.fixture(scope="module")
def helm(control_plane):  # pylint: disable=unused-argument
    path = pgharness.find_helm()
    if not path:
        pytest.fail("no helm: scripts/k8s up and scripts/test build one "
                    "(ensure_helm)")
    return path


@pytest.fixture(scope="module")
def admin(control_plane):
    return realkube.Admin(control_plane)


def run(argv, timeout=120, stdin=None, env=None):
    result = subprocess.run(argv, capture_output=True, text=True, input=stdin,
                            timeout=timeout, check=False, env=env)
    assert result.returncode == 0, \
        f"{' '.join(argv)} exited {result.returncode}:\n{result.stderr}"
    return result.stdout


def helm_env(control_plane, home):
    """helm with the admin kubeconfig and private caches."""
    return dict(os.environ, KUBECONFIG=control_plane["KUBECONFIG"],
                HELM_CACHE_HOME=os.path.join(home, "cache"),
                HELM_CONFIG_HOME=os.path.join(home, "config"),
                HELM_DATA_HOME=os.path.join(home, "data"))


def test_lint_strict(helm, workdir, control_plane):
    run([helm, "lint", "--strict", CHART],
        env=helm_env(control_plane, workdir))


VARIATIONS = {
    "defaults": [],
    "one replica": ["--set", "postgres.replicas=1"],
    "five replicas": ["--set", "postgres.replicas=5"],
    "synchronous mode": ["--set", "config.synchronous_mode=on"],
    "pgpool off": ["--set", "pgpool.enabled=false"],
    "existing Secret": ["--set", "secrets.existingSecret=my-db-passwords"],
    "other namespace and release": [],
}


def restricted_namespace(admin, ns):
    """Namespace `ns` as docs/kubernetes.md's walkthrough makes it, under
    the Pod Security Standard "restricted" (enforced on Pods, warned about
    on workloads)."""
    admin.must("POST", "/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": ns, "labels": {
            "pod-security.kubernetes.io/enforce": "restricted",
            "pod-security.kubernetes.io/warn": "restricted"}}}, ok=(201,))


@pytest.mark.parametrize("variation", list(VARIATIONS))
def test_template_applies_with_server_dry_run(helm, admin, workdir,
                                              control_plane, variation):
    ns = f"chart-{secrets.token_hex(3)}"
    release = "orders" if variation.startswith("other") else "pg"
    restricted_namespace(admin, ns)
    try:
        env = helm_env(control_plane, workdir)
        # --dry-run=server: helm's lookup reads the namespace, as under
        # `helm install`, so the chart generates the passwords that a plain
        # `helm template` refuses to generate (tests/chart/check_chart.py
        # checks that refusal, which needs no server).
        rendered = run([helm, "template", release, CHART, "--namespace", ns,
                        "--dry-run=server", *VARIATIONS[variation]], env=env)
        out = admin.kubectl("apply", "--dry-run=server", "-n", ns, "-f", "-",
                            stdin=rendered)
        assert out.returncode == 0, out.stderr
        # The pod templates of the StatefulSet and Deployments meet the
        # Pod Security Standard (the server warns about workloads, and
        # enforces on Pods: see the install below).
        assert "PodSecurity" not in out.stderr, out.stderr
        # Every object of the chart went through the server's validation
        # and admission.
        kinds = {line.split("/", 1)[0] for line in out.stdout.splitlines()}
        for kind in ("statefulset.apps", "role.rbac.authorization.k8s.io",
                     "service", "configmap"):
            assert kind in kinds, out.stdout
    finally:
        admin.request("DELETE", f"/api/v1/namespaces/{ns}")


@pytest.fixture
def installed(helm, admin, workdir, control_plane):
    """`helm install` into `database` (what `kubectl apply -f . -n database`
    does for the reference deployment), labelled for the Pod Security
    Standard "restricted" as the walkthrough does; uninstalled and the
    namespace deleted afterwards."""
    ns = "database"
    env = helm_env(control_plane, workdir)
    # One left by an interrupted run: its Pods may be in their grace
    # period (120 s), which the namespace controller waits out.
    realkube.delete_namespace(admin, ns, wait=NAMESPACE_GONE)
    restricted_namespace(admin, ns)
    run([helm, "install", "pg", CHART, "--namespace", ns,
         "--set", "clusterName=postgres-sts",
         "--set", "postgres.statefulsetName=postgres-sts",
         "--timeout", "60s"], timeout=180, env=env)
    try:
        yield ns
    finally:
        subprocess.run([helm, "uninstall", "pg", "--namespace", ns,
                        "--timeout", "60s"], capture_output=True, timeout=120,
                       check=False, env=env)
        # The nodes are stopped (cluster_factory's teardown ran first).
        realkube.delete_namespace(admin, ns, wait=NAMESPACE_GONE)


def test_install_and_local_nodes_stand_in_for_the_pods(installed, admin,
                                                      cluster_factory):
    ns = installed
    for kind, name in (("services", "pg-primary"), ("services", "pg-headless"),
                       ("secrets", "pg"), ("serviceaccounts", "pg")):
        status, body, _ = admin.request(
            "GET", f"/api/v1/namespaces/{ns}/{kind}/{name}")
        assert status == 200, (kind, name, body)
    status, body, _ = admin.request(
        "GET", f"/apis/policy/v1/namespaces/{ns}/poddisruptionbudgets")
    assert status == 200 and body["items"], body
    status, body, _ = admin.request(
        "GET", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles/pg")
    assert status == 200, body
    # The StatefulSet controller makes postgres-sts-0; the nodes adopt
    # each Pod as it appears (OrderedReady: the next once this is Ready).
    local = cluster_factory(
        n=3, cluster_name="postgres-sts", namespace=ns,
        kube_options={"adopt": True, "release": "pg"})
    primary = local.wait_healthy(60)
    pgharness.wait_for(
        lambda: primary.role_label() == "primary", 30,
        f"{primary.name}'s Pod to carry {clusterlib.ROLE_LABEL}=primary")
    pod = primary.pod()
    owners = pod["metadata"].get("ownerReferences") or []
    assert [o["kind"] for o in owners] == ["StatefulSet"], owners
    assert pod["spec"]["serviceAccountName"] == "pg"
