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
  The longest write gap is printed (a figure, not a bound);
- the primary's postgres and agent containers killed (SIGKILL through
  containerd, as `crictl stop` would without its grace): the kubelet
  restarts them at once, mostly before the Lease expires, and then the
  restarted agent, still the holder, keeps leading once PostgreSQL is back
  from crash recovery (docs/design.md: a restarted holder gets
  primary_start_timeout); else a standby takes the Lease and the pod
  rejoins as a standby. Either way writes through `pgpool-svc` resume
  within the bound (lease duration + primary_start_timeout + the
  kubelet's first restart); which one happened and when is printed. The
  chart's default is asynchronous mode, so rows acknowledged just before
  the kill may be lost: counted, not failed. (Pgpool-II may have detached
  the restarted primary: pgpool-follow attaches it after Pgpool-II's 5 s
  search; docs/kubernetes.md, Pgpool-II.)

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
    """psql in pg-client (its ~/.pgpass has the password); rows as lists.
    psql itself is bounded by `timeout` 10 s short of kubectl's (a session
    through Pgpool-II can hang on a backend that drops packets), so that a
    slow answer is an AssertionError like a refused one."""
    out = kubectl(env, "exec", "pg-client", "-n", NS, "--", "timeout",
                  str(max(timeout - 10, 5)), "psql", "-h", host,
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


def load_images(env):
    """The project's images from the Docker engine into the node's
    containerd (fails, or skips unless REQUIRED, when one is missing)."""
    missing = [i for i in IMAGES + (agent_image(),) if subprocess.run(
        ["docker", "image", "inspect", i], capture_output=True, timeout=60,
        check=False).returncode != 0]
    if missing:
        if REQUIRED:
            pytest.fail(f"images missing in the Docker engine: {missing} "
                        "(scripts/images build)")
        pytest.skip(f"images missing: {missing} (scripts/images build)")
    sh(env, f"{k8s_script(env)} load-images "
       f"{' '.join(IMAGES + (agent_image(),))}", timeout=900)


def k8s_script(env):
    return f"PGLEASE_K8S_STATE={env['PGLEASE_K8S_STATE']} scripts/k8s"


def wait_ready_and_answering(env):
    """Every pod Ready, then `SHOW pool_nodes` through pgpool-svc with
    every backend up, three times in a row. Pgpool-II's pod is Ready before
    each backend takes connections, and it attaches each standby once that
    streams (auto_failback), restarting its child processes, which closes
    every open session ("server closed the connection unexpectedly": the
    first CI run's failure, and again on 2026-12-07 right after three
    SELECT 1 had answered). A user checks SHOW pool_nodes the same way
    (deploy/reference/README.md)."""
    wait_all_ready(env)
    wait_pool_nodes_up(env)


def wait_pool_nodes_up(env, timeout=180):
    """`SHOW pool_nodes` through pgpool-svc with every backend up, three
    times in a row (see wait_ready_and_answering): after any pod restart
    too, as the attach of the returning standby closes open sessions."""
    deadline, good, nodes = time.monotonic() + timeout, 0, None
    while good < 3:
        try:
            nodes = psql(env, "SHOW pool_nodes", timeout=30)
            up = len(nodes) == 3 and all(row[3] == "up" for row in nodes)
        except AssertionError as error:
            up, nodes = False, str(error)
        good = good + 1 if up else 0
        if not up:
            assert time.monotonic() < deadline, \
                f"Pgpool-II has not every backend up after {timeout} s: " \
                f"{nodes}"
            time.sleep(2)


def remove_namespace(env, before=""):
    """`before` (e.g. helm uninstall), then the namespace database, and the
    local volumes it released made Available again."""
    sh(env, f"{before}kubectl delete namespace database --wait --timeout=5m",
       timeout=700, check=False)
    sh(env, f"{k8s_script(env)} recycle-volumes", check=False)


def helm_install(env):
    """The namespace, the Secret and the release, as values-reference.yaml's
    header says it, verbatim."""
    sh(env, """
kubectl create namespace database
kubectl -n database create secret generic postgres-secrets \\
  --from-literal=postgresql-password="$(openssl rand -hex 20)" \\
  --from-literal=replication-password="$(openssl rand -hex 20)" \\
  --from-literal=rewind-password="$(openssl rand -hex 20)"
helm install pg charts/pglease -n database -f charts/pglease/values-reference.yaml
""")


@pytest.fixture(scope="module")
def cluster(node):  # noqa: F811  pylint: disable=redefined-outer-name
    env = node
    load_images(env)
    helm_install(env)
    try:
        wait_ready_and_answering(env)
        yield env
    finally:
        remove_namespace(env, "helm uninstall pg -n database --wait "
                         "--timeout 5m; ")


def test_rows_through_pgpool_reach_every_standby(cluster):
    env = cluster
    # The walkthrough's password, as users fetch it.
    password = sh(env, 'PASSWORD=$(kubectl get secret postgres-secrets -n '
                  'database -o jsonpath="{.data.postgresql-password}" | '
                  'base64 --decode); echo "$PASSWORD"').stdout.strip()
    assert len(password) == 40
    psql(env, "CREATE DATABASE testdb")
    holder = lease_holder(env)
    current = pods(env)
    standbys = {n: p["status"]["podIP"] for n, p in current.items()
                if n.startswith("postgres-sts-") and n != holder}
    # Pgpool-II opens every attached backend for a session: one on testdb
    # fails until each standby has replayed CREATE DATABASE (asynchronous
    # mode; docs/kubernetes.md, Pgpool-II). A user typing the next command
    # never sees it; the test waits for it, by pod IP.
    for name, ip in standbys.items():
        deadline = time.monotonic() + 30
        while psql(env, "SELECT count(*) FROM pg_database WHERE datname = "
                   "'testdb'", host=ip) != [["1"]]:
            assert time.monotonic() < deadline, \
                f"{name} ({ip}) has not replayed CREATE DATABASE testdb"
            time.sleep(0.2)
    psql(env, "CREATE TABLE t (id int PRIMARY KEY, v text); "
         "INSERT INTO t VALUES (1, 'a'), (2, 'b'), (3, 'c')", db="testdb")
    for name, ip in standbys.items():
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


def test_agentctl_switchover_as_the_readme_types_it(cluster):
    """deploy/reference/README.md's planned switchover, verbatim, from
    whichever member postgres-sts-0 is: the Lease moves, the old primary
    streams from the new one, and a write through pgpool-svc lands on the
    new primary (pgpool-follow tells Pgpool-II)."""
    env = cluster
    old = lease_holder(env)
    sh(env, "kubectl exec postgres-sts-0 -c agent -n database -- "
       "/pglease/bin/agentctl switchover --wait", timeout=180)
    new = lease_holder(env)
    assert new != old and new.startswith("postgres-sts-")
    rejoined(env, old, new)
    new_ip = pods(env)[new]["status"]["podIP"]
    deadline = time.monotonic() + 60
    while True:
        try:
            rows = psql(env, "CREATE TABLE IF NOT EXISTS switched (x int); "
                        "INSERT INTO switched VALUES (1) "
                        "RETURNING host(inet_server_addr())")
        except AssertionError:
            rows = None
        if rows == [[new_ip]]:
            break
        assert time.monotonic() < deadline, \
            f"writes through pgpool-svc do not reach {new} ({new_ip}): {rows}"
        time.sleep(1)


WRITER = r"""
end=$(( $(date +%s) + SECONDS_ ))
i=0
while [ "$(date +%s)" -lt "$end" ] && [ ! -e /tmp/stop-TABLE_ ]; do
  i=$((i + 1))
  if err=$(timeout 10 psql -h pgpool-svc -p 5432 -U postgres -d postgres \
      -qAtX -c "INSERT INTO TABLE_ VALUES ($i)" 2>&1 >/dev/null); then
    echo "ok $i $(date +%s.%N)"
  else
    echo "failed $i $(date +%s.%N) $(echo "$err" | head -n 1)"
    sleep 0.2
  fi
done
"""


class Writer(threading.Thread):
    """The writer in pg-client: a row per psql through pgpool-svc into
    `table` for `seconds`; each outcome with the pod's wall clock."""

    def __init__(self, env, table, seconds=60):
        super().__init__()
        self.env, self.table, self.seconds = env, table, seconds
        self.result = None
        self.failures = []

    def start(self):
        # The table first (the writer's rows only say ok or failed).
        deadline = time.monotonic() + 120
        while True:
            try:
                psql(self.env, f"CREATE TABLE IF NOT EXISTS {self.table} "
                     "(id int PRIMARY KEY)")
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)
        super().start()

    def run(self):
        script = WRITER.replace("SECONDS_", str(self.seconds)).replace(
            "TABLE_", self.table)
        self.result = kubectl(self.env, "exec", "pg-client", "-n", NS, "--",
                              "sh", "-c", script,
                              timeout=self.seconds + 120, check=False)

    def stop(self):
        """Ends the writer before its time (the file its loop looks for)."""
        kubectl(self.env, "exec", "pg-client", "-n", NS, "--", "touch",
                f"/tmp/stop-{self.table}")

    def outcomes(self):
        self.join(self.seconds + 150)
        assert not self.is_alive()
        lines = [line.split(None, 3) for line in
                 self.result.stdout.splitlines()
                 if line.startswith(("ok ", "failed "))]
        acked = [(int(f[1]), float(f[2])) for f in lines if f[0] == "ok"]
        assert len(acked) > 10, self.result.stdout + self.result.stderr
        self.failures = [(float(f[2]), f[3] if len(f) > 3 else "")
                         for f in lines if f[0] == "failed"]
        return acked, len(self.failures)

    def reasons(self):
        """The distinct reasons of the failed writes, with their counts."""
        counts = {}
        for _, why in self.failures:
            counts[why] = counts.get(why, 0) + 1
        return "; ".join(f"{n} x {why or '(timeout)'}"
                         for why, n in sorted(counts.items()))

    @staticmethod
    def longest_gap(acked, since):
        """The longest time without an acknowledged write, from the last
        one acknowledged before `since` (a wall-clock time)."""
        times = sorted(t for _, t in acked)
        start = max([t for t in times if t <= since] or [since])
        later = [t for t in times if t > start]
        return max(b - a for a, b in zip([start] + later, later))

    def check_none_lost(self, acked, after, what):
        """No acknowledged row lost, and a write acknowledged after
        `after` (a wall-clock time)."""
        lost = self.lost(acked)
        assert not lost, f"acknowledged rows lost: {lost[:20]}"
        assert max(t for _, t in acked) > after, \
            f"no write acknowledged through pgpool-svc after {what}: " + \
            self.reasons()

    def lost(self, acked):
        rows = {int(r[0]) for r in psql(self.env,
                                        f"SELECT id FROM {self.table}")}
        return sorted(i for i, _ in acked if i not in rows)


def kill_containers(env, pod, ids, names=("agent", "postgres")):
    """SIGKILL of the containers names of pod (ids: name -> containerd
    id) through containerd, as `crictl stop` without its grace."""
    for name in names:
        subprocess.run(["ctr", "--address", env["PGLEASE_K8S_CONTAINERD"],
                        "--namespace", "k8s.io", "tasks", "kill", "--signal",
                        "SIGKILL", ids[name]], capture_output=True, text=True,
                       timeout=60, check=True)


def wait_restarted(env, pod, names=("agent", "postgres"), timeout=300):
    """Until the kubelet has restarted the containers names of pod and
    they are Ready again."""
    deadline = time.monotonic() + timeout
    while True:
        statuses = [c for c in pods(env)[pod]["status"]["containerStatuses"]
                    if c["name"] in names]
        if len(statuses) == len(names) and all(
                c.get("restartCount", 0) >= 1 and c.get("ready")
                for c in statuses):
            return
        assert time.monotonic() < deadline, \
            f"{pod}'s {names} not restarted and Ready after {timeout}s"
        time.sleep(1)


def rejoined(env, old=None, new=None):
    """Every pod Ready, `old` (if any) a standby, and every other pod
    streaming from the primary: `new`, or with new=None whichever pod
    holds the Lease at each look (after a kill the Lease may still move
    once the caller has read it). Returns the primary."""
    deadline = time.monotonic() + 120
    while True:
        current = wait_all_ready(env, timeout=300)
        primary = new or lease_holder(env)
        want = sorted(n for n in current if n.startswith("postgres-sts-")
                      and n != primary)
        streaming, standby = [], old is None
        try:
            # On the primary itself: through pgpool-svc the read may be
            # balanced to a standby, whose pg_stat_replication is empty.
            streaming = psql(env, "SELECT application_name FROM "
                             "pg_stat_replication WHERE state = "
                             "'streaming' ORDER BY 1",
                             host=current[primary]["status"]["podIP"])
            if old is not None and old != primary:
                standby = psql(env, "SELECT pg_is_in_recovery()",
                               host=current[old]["status"]["podIP"]) == \
                    [["t"]]
        except (AssertionError, KeyError):
            pass
        if sorted(n for n, in streaming) == want and standby:
            wait_pool_nodes_up(env)
            return primary
        assert time.monotonic() < deadline, \
            f"streaming to {primary}: {streaming}, not {want}; {old} a " \
            f"standby: {standby}\n" + sh(
                env, f"kubectl exec {primary} -c agent -n {NS} -- "
                "/pglease/bin/agentctl cluster show; "
                f"kubectl get pods -n {NS} -o wide", check=False).stdout
        time.sleep(1)


def test_deleting_the_primary_pod_hands_over_without_losing_rows(cluster):
    env = cluster
    old = lease_holder(env)
    assert old.startswith("postgres-sts-")
    writer = Writer(env, "w_delete", seconds=600)
    writer.start()
    time.sleep(8)
    started, deleting = time.monotonic(), time.time()
    # Verbatim: the pre-stop hook hands the Lease over.
    sh(env, f"kubectl delete pod {old} -n database", timeout=180)
    deleted_after = time.monotonic() - started
    new = lease_holder(env)
    assert new != old and new.startswith("postgres-sts-")
    rejoined(env, old, new)
    time.sleep(3)
    writer.stop()
    acked, failed = writer.outcomes()
    writer.check_none_lost(acked, deleting + deleted_after, "the delete")
    gap = writer.longest_gap(acked, deleting)
    print(f"\nwalkthrough: {old} deleted in {deleted_after:.1f}s, primary "
          f"now {new}; {len(acked)} writes acknowledged through pgpool-svc, "
          f"{failed} failed ({writer.reasons()}), 0 lost; longest time "
          f"without an acknowledged write from the delete {gap:.2f}s")


def test_killed_primary_containers_fail_over(cluster):
    env = cluster
    old = lease_holder(env)
    pod = pods(env)[old]
    ids = {c["name"]: c["containerID"].split("://", 1)[1]
           for c in pod["status"]["containerStatuses"]}
    writer = Writer(env, "w_kill", seconds=600)
    writer.start()
    time.sleep(8)
    killed = time.time()
    kill_containers(env, old, ids)
    wait_restarted(env, old)
    # Who leads is settled only once every pod streams from it: the
    # restarted agent may keep the Lease, or lose it a moment later.
    new = rejoined(env)
    if new != old:
        rejoined(env, old, new)
    time.sleep(3)
    writer.stop()
    acked, failed = writer.outcomes()
    times = sorted(t for _, t in acked)
    assert times[-1] > killed, "no write acknowledged after the kill"
    # The outage: the longest time without an acknowledged write from the
    # last one before the kill.
    outage = writer.longest_gap(acked, killed)
    # lease_duration 10 s + primary_start_timeout 10 s (the chart's) and
    # the kubelet's restart and Pgpool-II's health check on two busy cores.
    assert outage < 45, f"no acknowledged write for {outage:.1f}s"
    restarts = {c["name"]: c["restartCount"] for c in
                pods(env)[old]["status"]["containerStatuses"]}
    assert restarts["agent"] >= 1 and restarts["postgres"] >= 1, restarts
    lost = writer.lost(acked)
    print(f"\ncontainers of {old} killed (restarted by the kubelet: "
          f"{restarts}): the Lease is {new}'s"
          + (" (the restarted agent kept it)" if new == old else "")
          + f"; longest time without an acknowledged write through "
          f"pgpool-svc {outage:.1f}s; {len(acked)} "
          f"acknowledged, {failed} failed ({writer.reasons()}), {len(lost)} "
          "lost (asynchronous mode)")


def test_rolling_update_restarts_the_primary_last(cluster):
    """`helm upgrade` with a changed pod template (an annotation) under a
    writer: the StatefulSet is OnDelete, and the leader deletes the
    outdated standbys one at a time, highest ordinal first, then its own
    pod, whose pre-stop hook hands the Lease over: every pod at the new
    revision, the old primary's pod recreated last, at most one hand-over,
    no acknowledged row lost. The longest write gap is printed."""
    env = cluster
    before = {n: p for n, p in pods(env).items()
              if n.startswith("postgres-sts-")}
    old = lease_holder(env)
    transitions = int(kubectl(env, "get", "lease", "pg-leader", "-n", NS,
                              "-o", "jsonpath={.spec.leaseTransitions}")
                      .stdout or 0)
    writer = Writer(env, "w_rollout", seconds=600)
    writer.start()
    time.sleep(5)
    upgraded = time.time()
    sh(env, "helm upgrade pg charts/pglease -n database "
       "-f charts/pglease/values-reference.yaml "
       f"--set-string postgres.podAnnotations.rollout={int(upgraded)}")
    deadline = time.monotonic() + 600
    while True:
        sts = json.loads(kubectl(env, "get", "statefulset", "postgres-sts",
                                 "-n", NS, "-o", "json").stdout)
        revision = sts["status"].get("updateRevision")
        current = {n: p for n, p in pods(env).items()
                   if n.startswith("postgres-sts-")}
        if len(current) == 3 and all(
                p["metadata"]["uid"] != before[n]["metadata"]["uid"]
                and p["metadata"]["labels"].get("controller-revision-hash")
                == revision and ready(p) for n, p in current.items()):
            break
        assert time.monotonic() < deadline, \
            "the rolling update did not finish in 600 s:\n" + sh(
                env, f"kubectl get pods -n {NS} -L controller-revision-hash",
                check=False).stdout
        time.sleep(2)
    done = time.time()
    rejoined(env, None, lease_holder(env))
    writer.stop()
    acked, failed = writer.outcomes()
    new = lease_holder(env)
    after = int(kubectl(env, "get", "lease", "pg-leader", "-n", NS, "-o",
                        "jsonpath={.spec.leaseTransitions}").stdout or 0)
    created = sorted(current, key=lambda n: current[n]["metadata"]
                     ["creationTimestamp"])
    assert created[-1] == old, \
        f"pods recreated in the order {created}; the primary was {old}"
    assert after - transitions <= 1, \
        f"{after - transitions} hand-overs during the rolling update"
    assert new != old
    writer.check_none_lost(acked, done - 5, "the rolling update")
    gap = writer.longest_gap(acked, upgraded)
    print(f"\nrolling update: pods recreated in the order {created} in "
          f"{done - upgraded:.0f}s, the Lease from {old} to {new} "
          f"({after - transitions} hand-over); {len(acked)} writes "
          f"acknowledged through pgpool-svc, {failed} failed "
          f"({writer.reasons()}), 0 lost; longest time without an "
          f"acknowledged write {gap:.2f}s")
