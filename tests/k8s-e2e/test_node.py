"""The real node of `scripts/k8s up --nodes` (issue 20): a Pod runs there
under the kubelet, containerd and runc, gets an address of the pods'
range, answers `kubectl exec`; a Service's name resolves through CoreDNS
and its ClusterIP reaches a Pod through kube-proxy's rules; a claim of the
default StorageClass binds to a local volume whose data outlives its Pod.

Skipped without such a node unless PGLEASE_K8S_E2E_REQUIRED=1 (as
scripts/test sets it). Runs as root: the node's network namespace is
entered (nsenter) to query the cluster's DNS as a pod would."""

import ipaddress
import json
import os
import secrets
import socket
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("PGLEASE_SOURCE_DIR") or \
    os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "k8s"))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "kube-emulator"))

import realkube  # noqa: E402  pylint: disable=wrong-import-position

REQUIRED = os.environ.get("PGLEASE_K8S_E2E_REQUIRED") == "1"
PAUSE = "pglease.local/pause:1"


@pytest.fixture(scope="module")
def node():
    env = realkube.control_plane_env(required=REQUIRED)
    if env is None or "PGLEASE_K8S_KUBELET_NODE" not in env:
        if REQUIRED:
            pytest.fail("no real node: run scripts/k8s up --nodes")
        pytest.skip("no real node (scripts/k8s up --nodes)")
    return env


_admins = {}


def kubectl(env, *args, stdin=None, check=True, timeout=60):
    """kubectl as the control plane's admin (realkube.Admin), failing on a
    non-zero exit unless check=False."""
    admin = _admins.get(env["KUBECONFIG"])
    if admin is None:
        admin = _admins[env["KUBECONFIG"]] = realkube.Admin(env)
    result = admin.kubectl(*args, stdin=stdin, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)}: exit "
                             f"{result.returncode}: {result.stderr.strip()}")
    return result


@pytest.fixture
def namespace(node):
    name = f"e2e-{secrets.token_hex(4)}"
    kubectl(node, "create", "namespace", name)
    yield name
    kubectl(node, "delete", "namespace", name, "--wait=false", check=False)


def apply(env, ns, manifest):
    kubectl(env, "-n", ns, "apply", "-f", "-", stdin=json.dumps(manifest))


def pause_pod(name, labels=None, volumes=None, mounts=None):
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "pause", "image": PAUSE,
                            "imagePullPolicy": "Never",
                            "volumeMounts": mounts or []}],
            "volumes": volumes or []}}


def wait_ready(env, ns, pod, timeout=120):
    kubectl(env, "-n", ns, "wait", "--for=condition=Ready", f"pod/{pod}",
            f"--timeout={timeout}s", timeout=timeout + 30)
    return json.loads(kubectl(env, "-n", ns, "get", "pod", pod,
                              "-o", "json").stdout)


def dns_query(env, name):
    """The A record of `name` from the cluster's DNS, asked from the node's
    network namespace as a pod asks it; None when there is none."""
    script = r"""
import socket, struct, sys
name, server = sys.argv[1], sys.argv[2]
q = struct.pack(">HHHHHH", 7, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split("."))
q += b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(3)
s.sendto(q, (server, 53))
r, _ = s.recvfrom(512)
count, rcode = struct.unpack(">H", r[6:8])[0], r[3] & 15
print(f"{rcode} " + (".".join(str(b) for b in r[-4:]) if count else "-"))
"""
    result = subprocess.run(
        ["nsenter", f"--net=/run/netns/{env['PGLEASE_K8S_NETNS']}",
         sys.executable, "-c", script, name, env["PGLEASE_K8S_CLUSTER_DNS"]],
        capture_output=True, text=True, timeout=30, check=True)
    rcode, address = result.stdout.split()
    return None if rcode != "0" or address == "-" else address


def test_a_pod_runs_on_the_real_node(node, namespace):
    apply(node, namespace, pause_pod("p"))
    pod = wait_ready(node, namespace, "p")
    assert pod["spec"]["nodeName"] == node["PGLEASE_K8S_KUBELET_NODE"]
    address = ipaddress.ip_address(pod["status"]["podIP"])
    assert address in ipaddress.ip_network(node["PGLEASE_K8S_POD_CIDR"])
    out = kubectl(node, "-n", namespace, "exec", "p", "--", "/pause", "-v")
    assert out.stdout.strip() == "pglease-pause 1"
    # The machine reaches the pod's address through the veth pair: the
    # kubelet's own port-less pod answers a connect with a refusal, not
    # a timeout.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((str(address), 9), timeout=5)


def test_services_resolve_and_route(node, namespace):
    assert dns_query(node, "kubernetes.default.svc.cluster.local") is not None
    apply(node, namespace, pause_pod("s", labels={"app": "s"}))
    apply(node, namespace, {
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc"},
        "spec": {"selector": {"app": "s"},
                 "ports": [{"port": 5432, "targetPort": 5432}]}})
    wait_ready(node, namespace, "s")
    cluster_ip = kubectl(node, "-n", namespace, "get", "service", "svc", "-o",
                         "jsonpath={.spec.clusterIP}").stdout
    realkube.wait_for(
        lambda: dns_query(node, f"svc.{namespace}.svc.cluster.local")
        == cluster_ip, 30, "the Service's name in CoreDNS", interval=0.5)
    # kube-proxy's rule for the ClusterIP, in the node's namespace: written
    # at its next sync, which may come after CoreDNS answers.
    def rule():
        rules = subprocess.run(
            ["nsenter", f"--net=/run/netns/{node['PGLEASE_K8S_NETNS']}",
             "iptables", "-t", "nat", "-S", "KUBE-SERVICES"],
            capture_output=True, text=True, timeout=30, check=True).stdout
        return f"-d {cluster_ip}/32" in rules and f"{namespace}/svc" in rules
    realkube.wait_for(rule, 30, "kube-proxy's rule for the ClusterIP",
                      interval=0.5)


def test_a_claim_binds_to_a_local_volume_that_outlives_its_pod(node,
                                                                namespace):
    apply(node, namespace, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"],
                 "resources": {"requests": {"storage": "1Gi"}}}})
    volumes = [{"name": "data",
                "persistentVolumeClaim": {"claimName": "data"}}]
    mounts = [{"name": "data", "mountPath": "/data"}]
    apply(node, namespace, pause_pod("v", volumes=volumes, mounts=mounts))
    wait_ready(node, namespace, "v")
    claim = json.loads(kubectl(node, "-n", namespace, "get", "pvc", "data",
                               "-o", "json").stdout)
    assert claim["status"]["phase"] == "Bound"
    volume = json.loads(kubectl(node, "get", "pv",
                                claim["spec"]["volumeName"], "-o",
                                "json").stdout)
    path = volume["spec"]["local"]["path"]
    marker = os.path.join(path, f"marker-{namespace}")
    with open(marker, "w", encoding="utf-8") as handle:
        handle.write("kept\n")
    kubectl(node, "-n", namespace, "delete", "pod", "v", "--wait=true",
            timeout=120)
    apply(node, namespace, pause_pod("v", volumes=volumes, mounts=mounts))
    pod = wait_ready(node, namespace, "v")
    assert pod["spec"]["nodeName"] == node["PGLEASE_K8S_KUBELET_NODE"]
    with open(marker, encoding="utf-8") as handle:
        assert handle.read() == "kept\n"
    # The volume is mounted in the container, not only present on the node.
    mounted = subprocess.run(
        ["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True,
        timeout=30, check=True).stdout
    assert any(claim["spec"]["volumeName"] in line for line in mounted.split())
