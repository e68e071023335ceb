#!/usr/bin/python3
"""The reference deployment on the real node of `scripts/k8s up --nodes`
(issue 20): what a user of the chart sees, through `pgpool-svc` from
`pg-client` (a new psql per row, as tests/k8s-e2e's writer).

Prints:
  - cold start: `helm install` with charts/pglease/values-reference.yaml
    on empty volumes (bootstrap, two clones) to every pod Ready and three
    answers in a row through pgpool-svc;
  - `kubectl delete pod` of the primary (the pre-stop hand-over): the
    longest time without an acknowledged write from the delete, median and
    max of --runs, and the rows lost;
  - the primary's postgres and agent containers killed (SIGKILL through
    containerd): the same figures (asynchronous mode: a loss is possible,
    printed);
  - a rolling update (`helm upgrade` with a new pod annotation): the time
    to every pod at the new revision, the hand-overs, the longest gap;
  - warm start: `kubectl scale --replicas=0`, then 3, on the kept volumes:
    from the scale-up to every pod Ready and answering.

    bench/kube_node.py [BUILD_DIR] [--runs N]

BUILD_DIR is not used (the images hold the build; scripts/images build
makes them): it is accepted as every benchmark's first argument. The node
is the one of PGLEASE_K8S_STATE if that is up, else one started in a temp
state directory and stopped at the end. Needs root and the images in the
Docker engine. Nothing is asserted."""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "k8s-e2e"))
os.environ.setdefault("PGLEASE_SOURCE_DIR", SOURCE_DIR)

import summary  # noqa: E402  pylint: disable=wrong-import-position
import test_walkthrough as e2e  # noqa: E402  pylint: disable=wrong-import-position
from test_node import kubectl  # noqa: E402  pylint: disable=wrong-import-position
import realkube  # noqa: E402  pylint: disable=wrong-import-position

SETTINGS = "1 node, reference values (lease 10 s, asynchronous), 2 cores"


def k8s(state, *args, check=True, quiet=False):
    return subprocess.run([os.path.join(SOURCE_DIR, "scripts", "k8s")]
                          + list(args), cwd=SOURCE_DIR, check=check,
                          env=dict(os.environ, PGLEASE_K8S_STATE=state),
                          stdout=subprocess.DEVNULL if quiet else None,
                          stderr=subprocess.DEVNULL if quiet else None,
                          timeout=3600)


def spread(values):
    return (f"median {statistics.median(values):.1f}s, max "
            f"{max(values):.1f}s ({len(values)} runs)")


def install(env):
    started = time.monotonic()
    e2e.helm_install(env)
    e2e.wait_ready_and_answering(env)
    return time.monotonic() - started


def under_writer(env, table, act, seconds=600):
    """act() under a writer; (longest gap from act's start, acked, failed,
    lost, holder before, holder after) once the cluster is whole again."""
    old = e2e.lease_holder(env)
    writer = e2e.Writer(env, table, seconds=seconds)
    writer.start()
    time.sleep(5)
    began = time.time()
    act(old)
    e2e.wait_all_ready(env, timeout=600)
    new = e2e.rejoined(env)
    time.sleep(5)
    writer.stop()
    acked, failed = writer.outcomes()
    return (writer.longest_gap(acked, began), len(acked), failed,
            len(writer.lost(acked)), old, new)


def delete_primary(env):
    def act(old):
        e2e.sh(env, f"kubectl delete pod {old} -n database", timeout=300)
    return act


def kill_primary(env):
    def act(old):
        pod = e2e.pods(env)[old]
        ids = {c["name"]: c["containerID"].split("://", 1)[1]
               for c in pod["status"]["containerStatuses"]}
        e2e.kill_containers(env, old, ids)
        e2e.wait_restarted(env, old)
    return act


def rolling_update(env):
    before = {n: p["metadata"]["uid"] for n, p in e2e.pods(env).items()
              if n.startswith("postgres-sts-")}
    transitions = int(kubectl(env, "get", "lease", "pg-leader", "-n",
                              e2e.NS, "-o",
                              "jsonpath={.spec.leaseTransitions}").stdout
                      or 0)
    result = {}

    def act(_old):
        started = time.monotonic()
        e2e.sh(env, "helm upgrade pg charts/pglease -n database "
               "-f charts/pglease/values-reference.yaml --set-string "
               f"postgres.podAnnotations.bench={int(time.time())}")
        deadline = time.monotonic() + 900
        while time.monotonic() < deadline:
            current = {n: p for n, p in e2e.pods(env).items()
                       if n.startswith("postgres-sts-")}
            if len(current) == 3 and all(
                    p["metadata"]["uid"] != before.get(n)
                    and e2e.ready(p) for n, p in current.items()):
                break
            time.sleep(2)
        result["took"] = time.monotonic() - started

    gap, acked, failed, lost, old, new = under_writer(
        env, "b_rollout", act, seconds=900)
    after = int(kubectl(env, "get", "lease", "pg-leader", "-n", e2e.NS,
                        "-o", "jsonpath={.spec.leaseTransitions}").stdout
                or 0)
    return result.get("took", float("nan")), after - transitions, gap, \
        acked, failed, lost, old, new


def warm_start(env):
    e2e.sh(env, "kubectl scale statefulset postgres-sts --replicas=0 "
           "-n database")
    deadline = time.monotonic() + 600
    while any(n.startswith("postgres-sts-") for n in e2e.pods(env)) and \
            time.monotonic() < deadline:
        time.sleep(2)
    started = time.monotonic()
    e2e.sh(env, "kubectl scale statefulset postgres-sts --replicas=3 "
           "-n database")
    e2e.wait_ready_and_answering(env)
    return time.monotonic() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("build_dir", nargs="?", default=None)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    own_state = None
    state = os.environ.get("PGLEASE_K8S_STATE")
    if not state or k8s(state, "status", check=False,
                         quiet=True).returncode != 0:
        own_state = state = tempfile.mkdtemp(prefix="pglease-bench-k8s-")
        os.environ["PGLEASE_K8S_STATE"] = state
        k8s(state, "up", "--nodes")
    env = realkube.control_plane_env(required=True)
    try:
        e2e.load_images(env)
        e2e.remove_namespace(env, "helm uninstall pg -n database --wait "
                             "--timeout 5m 2>/dev/null; ")
        cold = install(env)
        print(f"cold start: helm install to every pod Ready and answering "
              f"through pgpool-svc in {cold:.0f}s")
        summary.figure("k8s cold start (helm install to writable)",
                       f"{cold:.0f}s", SETTINGS)
        for name, make, table in (("pod delete", delete_primary, "b_delete"),
                                  ("container kill", kill_primary, "b_kill")):
            gaps = []
            for run in range(args.runs):
                gap, acked, failed, lost, old, new = under_writer(
                    env, f"{table}{run}", make(env))
                gaps.append(gap)
                print(f"{name} {run + 1}: {old} -> {new}; longest gap "
                      f"{gap:.1f}s; {acked} acknowledged, {failed} failed, "
                      f"{lost} lost", flush=True)
            print(f"{name}: longest time without an acknowledged write "
                  f"through pgpool-svc: {spread(gaps)}")
            summary.figure(f"k8s {name} -> writes through pgpool-svc",
                           spread(gaps), SETTINGS)
        took, handovers, gap, acked, failed, lost, old, new = \
            rolling_update(env)
        print(f"rolling update: every pod at the new revision in "
              f"{took:.0f}s, {handovers} hand-over ({old} -> {new}), "
              f"longest gap {gap:.1f}s; {acked} acknowledged, {failed} "
              f"failed, {lost} lost")
        summary.figure("k8s rolling update write gap", f"{gap:.1f}s "
                       f"({handovers} hand-over, {took:.0f}s in all)",
                       SETTINGS)
        warm = warm_start(env)
        print(f"warm start: scale 0 -> 3 to every pod Ready and answering "
              f"in {warm:.0f}s")
        summary.figure("k8s warm start (scale 0 -> 3 to writable)",
                       f"{warm:.0f}s", SETTINGS)
    finally:
        e2e.remove_namespace(env, "helm uninstall pg -n database --wait "
                             "--timeout 5m; ")
        if own_state:
            k8s(own_state, "down", check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
