"""The walkthrough users follow (issue 20), on the real node of `scripts/k8s
up --nodes`, with the chart installed by helm with the reference values
into the namespace `database`, its commands verbatim where they can be
(charts/pglease/values-reference.yaml, deploy/reference/README.md):

- rows written through `pgpool-svc` from `pg-client` are read back on every
  standby by pod IP, and `pg_stat_replication` through `pgpool-svc` shows
  the two standbys streaming;
- `kubectl delete pod` of the primary while a client writes through
  `pgpool-svc`: the kubelet runs the pre-stop hook, the Lease is handed to
  a standby, the deleted pod comes back as a standby, no acknowledged row
  is lost, and Pgpool-II routes the writes to the new primary by itself.
  The longest write gap is printed (a figure, not a bound).

The images come from the Docker engine (scripts/images) into the node's
containerd (`scripts/k8s load-images`). Skipped without a real node or
the images unless PGLEASE_K8S_E2E_REQUIRED=1."""

import json
import os
import subprocess
import threading
import time

import pytest

from test_node import REQUIRED, SOURCE_DIR, kubectl, node  # noqa: F401  pylint: disable=unused-import

NS = "database"
IMAGES = ("pglease-postgres:15", "pglease-pgpool:4.3")
CHART = os.path.join(SOURCE_DIR, "charts", "pglease")


def agent_image():
    with open(os.path.join(CHART, "Chart.yaml"), encoding="utf-8") as handle:
        version = next(line.split(":", 1)[1].strip().strip('"')
                       for line in handle if line.startswith("appVersion:"))
    return f"pglease:{version}"


def sh(env, script, timeout=300, check=True):
    """`script` in bash as a user types it: kubectl and helm in PATH,
    KUBECONFIG set."""
    shell_env = dict(os.environ, KUBECONFIG=env["KUBECONFIG"],
                     PATH=f"{env['PGLEASE_K8S_BIN']}:"
                     f"{os.path.dirname(env['PGLEASE_HELM'])}:"
                     f"{os.environ['PATH']}")
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script],
                            cwd=SOURCE_DIR, env=shell_env, capture_output=True,
                            text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"{script}\nexit {result.returncode}\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def psql(env, sql, host="pgpool-svc", db="postgres", timeout=60):
    """psql in pg-client (its ~/.pgpass has the password); rows as lists."""
    out = kubectl(env, "exec", "pg-client", "-n", NS, "--", "psql", "-h", host,
                  "-p", "5432", "-U", "postgres", "-d", db, "-qAtX",
                  "-F", "|", "-c", sql, timeout=timeout)
    return [line.split("|") for line in out.stdout.splitlines() if line]


def pods(env):
    return {p["metadata"]["name"]: p for p in json.loads(kubectl(
        env, "get", "pods", "-n", NS, "-o", "json").stdout)["items"]}


def ready(pod):
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in pod.get("status", {}).get("conditions", []))


def lease_holder(env):
    return kubectl(env, "get", "lease", "pg-leader", "-n", NS, "-o",
                   "jsonpath={.spec.holderIdentity}").stdout


def wait_all_ready(env, timeout=600):
    deadline = time.monotonic() + timeout
    names = [f"postgres-sts-{i}" for i in range(3)] + ["pg-client"]
    while True:
        current = pods(env)
        if all(n in current and ready(current[n]) for n in names) and any(
                n.startswith("pg-pgpool") and ready(p)
                for n, p in current.items()):
            return current
        if time.monotonic() > deadline:
            raise AssertionError("not every pod Ready after "
                                 f"{timeout}s:\n" + sh(
                                     env, f"kubectl get pods -n {NS} -o wide",
                                     check=False).stdout)
        time.sleep(1)


@pytest.fixture(scope="module")
def cluster(node):  # noqa: F811  pylint: disable=redefined-outer-name
    env = node
    missing = [i for i in IMAGES + (agent_image(),) if subprocess.run(
        ["docker", "image", "inspect", i], capture_output=True, timeout=60,
        check=False).returncode != 0]
    if missing:
        if REQUIRED:
            pytest.fail(f"images missing in the Docker engine: {missing} "
                        "(scripts/images build)")
        pytest.skip(f"images missing: {missing} (scripts/images build)")
    k8s = f"PGLEASE_K8S_STATE={env['PGLEASE_K8S_STATE']} scripts/k8s"
    sh(env, f"{k8s} load-images {' '.join(IMAGES + (agent_image(),))}",
       timeout=900)
    # As values-reference.yaml's header says it, verbatim.
    sh(env, """
kubectl create namespace database
kubectl -n database create secret generic postgres-secrets \\
  --from-literal=postgresql-password="$(openssl rand -hex 20)" \\
  --from-literal=replication-password="$(openssl rand -hex 20)" \\
  --from-literal=rewind-password="$(openssl rand -hex 20)"
helm install pg charts/pglease -n database -f charts/pglease/values-reference.yaml
""")
    try:
        wait_all_ready(env)
        yield env
    finally:
        sh(env, "helm uninstall pg -n database --wait --timeout 5m; "
           "kubectl delete namespace database --wait --timeout=5m",
           timeout=700, check=False)
        sh(env, f"{k8s} recycle-volumes", check=False)


def test_rows_through_pgpool_reach_every_standby(cluster):
    env = cluster
    # The walkthrough's password, as users fetch it.
    password = sh(env, 'PASSWORD=$(kubectl get secret postgres-secrets -n '
                  'database -o jsonpath="{.data.postgresql-password}" | '
                  'base64 --decode); echo "$PASSWORD"').stdout.strip()
    assert len(password) == 40
    psql(env, "CREATE DATABASE testdb")
    psql(env, "CREATE TABLE t (id int PRIMARY KEY, v text); "
         "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')", db="testdb")
    holder = lease_holder(env)
    current = pods(env)
    for name in (n for n in current if n.startswith("postgres-sts-")
                 and n != holder):
        ip = current[name]["status"]["podIP"]
        deadline = time.monotonic() + 30
        while True:
            rows = psql(env, "SELECT count(*) FROM t", host=ip, db="testdb")
            if rows == [["3"]] or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert rows == [["3"]], f"{name} ({ip}) has {rows} rows"
        assert psql(env, "SELECT pg_is_in_recovery()", host=ip) == [["t"]]
    streaming = psql(env, "SELECT application_name, state FROM "
                     "pg_stat_replication ORDER BY 1")
    assert [state for _, state in streaming] == ["streaming", "streaming"], \
        streaming


WRITER = r"""
psql -h pgpool-svc -p 5432 -U postgres -d testdb -qAtX -c \
  'CREATE TABLE IF NOT EXISTS w (id int PRIMARY KEY)' >/dev/null
end=$(( $(date +%s) + SECONDS_ ))
i=0
while [ "$(date +%s)" -lt "$end" ]; do
  i=$((i + 1))
  if timeout 10 psql -h pgpool-svc -p 5432 -U postgres -d testdb -qAtX \
      -c "INSERT INTO w VALUES ($i)" >/dev/null 2>&1; then
    echo "ok $i $(date +%s.%N)"
  else
    echo "failed $i $(date +%s.%N)"
    sleep 0.2
  fi
done
"""


def test_deleting_the_primary_pod_hands_over_without_losing_rows(cluster):
    env = cluster
    old = lease_holder(env)
    assert old.startswith("postgres-sts-")
    out = {}

    def write():
        out["result"] = kubectl(env, "exec", "pg-client", "-n", NS, "--",
                                "sh", "-c", WRITER.replace("SECONDS_", "60"),
                                timeout=180, check=False)

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(8)
    started = time.monotonic()
    # Verbatim: the pre-stop hook hands the Lease over.
    sh(env, f"kubectl delete pod {old} -n database", timeout=180)
    deleted_after = time.monotonic() - started
    writer.join(200)
    assert not writer.is_alive()
    lines = [line.split() for line in out["result"].stdout.splitlines()
             if line.startswith(("ok ", "failed "))]
    acked = [(int(i), float(t)) for what, i, t in lines if what == "ok"]
    assert len(acked) > 10, out["result"].stdout + out["result"].stderr
    new = lease_holder(env)
    assert new != old and new.startswith("postgres-sts-")
    current = wait_all_ready(env, timeout=300)
    assert ready(current[old])
    old_ip = current[old]["status"]["podIP"]
    assert psql(env, "SELECT pg_is_in_recovery()", host=old_ip) == [["t"]]
    rows = {int(r[0]) for r in psql(env, "SELECT id FROM w", db="testdb")}
    lost = sorted(i for i, _ in acked if i not in rows)
    assert not lost, f"acknowledged rows lost: {lost[:20]}"
    streaming = psql(env, "SELECT application_name, state FROM "
                     "pg_stat_replication ORDER BY 1")
    assert sorted(n for n, _ in streaming) == sorted(
        n for n in current if n.startswith("postgres-sts-") and n != new)
    times = sorted(t for _, t in acked)
    gap = max(b - a for a, b in zip(times, times[1:]))
    failed = sum(1 for what, _, _ in lines if what == "failed")
    print(f"\nwalkthrough: {old} deleted in {deleted_after:.1f}s, primary "
          f"now {new}; {len(acked)} writes acknowledged through pgpool-svc, "
          f"{failed} failed, 0 lost; longest write gap {gap:.2f}s")
