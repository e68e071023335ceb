"""`scripts/demo --kube real` as a user runs it (issue 18): from a private
checkout (tests/integration/test_demo.py's fixture), against this suite's
control plane (PGLEASE_K8S_STATE), then `kubectl get lease,pods -n
database -L pglease.io/role` as the demo's hint says: the Lease names the
node whose Postgres accepts writes, and each Pod's role label is what its
Postgres is. `scripts/demo stop` stops the demo and leaves running the
control plane it found up."""

import json
import os

import psycopg2

import pgharness
import test_demo
from test_demo import private_checkout  # noqa: F401  pylint: disable=unused-import

KUBECTL = ("source <(scripts/k8s env) && "
           "kubectl get lease,pods -n database -L pglease.io/role")


def postgres_roles(state):
    """node name -> "primary" or "replica", asked of each Postgres."""
    roles = {}
    for node in state["nodes"]:
        with open(os.path.join(node["dir"], "secrets", "superuser"),
                  encoding="utf-8") as handle:
            password = handle.read().strip()
        conn = psycopg2.connect(host="127.0.0.1", port=node["port"],
                                user="postgres", password=password,
                                dbname="postgres", connect_timeout=3,
                                application_name="pglease-tests",
                                options="-c statement_timeout=5000")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT pg_is_in_recovery()")
                roles[node["name"]] = "replica" if cur.fetchone()[0] \
                    else "primary"
        finally:
            conn.close()
    return roles


def kubectl_view(out):
    """(Lease holder, pod name -> role label) from kubectl's tables."""
    holder, labels = None, {}
    for line in out.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] == "lease.coordination.k8s.io/pg-leader":
            holder = fields[1]
        elif fields[0].startswith("pod/"):
            role = fields[-1] if fields[-1] in ("primary", "replica") \
                else None
            labels[fields[0][len("pod/"):]] = role
    return holder, labels


def test_demo_against_the_real_server_shows_the_truth_in_kubectl(
        private_checkout, control_plane):  # noqa: F811 pylint: disable=redefined-outer-name
    tree = private_checkout
    env = test_demo.user_env(
        PGLEASE_BUILD="build",
        PGLEASE_K8S_STATE=control_plane["PGLEASE_K8S_STATE"])
    code, out, err = test_demo.run(tree, "scripts/demo", "--kube", "real",
                                   env=env, timeout=600)
    assert code == 0, out + err
    assert "kubectl get lease,pods -n database -L pglease.io/role" in \
        out + err, out + err
    with open(os.path.join(tree, ".demo", "state.json"),
              encoding="utf-8") as handle:
        state = json.load(handle)

    seen = {}

    def truthful():
        code, out, err = test_demo.run(tree, "bash", "-c", KUBECTL, env=env,
                                       timeout=60)
        seen["kubectl"] = out + err
        if code != 0:
            return False
        holder, labels = kubectl_view(out)
        roles = postgres_roles(state)
        seen["postgres"] = roles
        return sorted(roles.values()) == ["primary", "replica", "replica"] \
            and labels == roles and roles.get(holder) == "primary"

    try:
        pgharness.wait_for(truthful, 60,
                           "kubectl to show the Lease and roles Postgres "
                           "has", interval=1, ignore=(psycopg2.Error,))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{seen}") from None
    print("\n" + seen["kubectl"])

    code, out, err = test_demo.run(tree, "scripts/demo", "stop", env=env,
                                   timeout=180)
    assert code == 0, out + err
    code, out, err = test_demo.run(tree, "scripts/k8s", "status", env=env,
                                   timeout=60)
    assert code == 0, "scripts/demo stop took down a control plane it " \
        "did not start:\n" + out + err
