#!/usr/bin/python3
"""Failover benchmark: a three-node pglease cluster on loopback (real
PostgreSQL 15 servers, each under its `pglease-agent run-postgres`
supervisor with its agent, against the Kubernetes API emulator: the
LocalCluster of tests/integration/cluster.py).

For each failure of the primary, the time from the failure to the first
write acknowledged by the new primary (a writer inserts a row every 20 ms
through whichever node the Lease names), median and max over several runs:

  - postmaster killed with its supervisor (the postgres container does not
    come back, so the agent releases the Lease after primary_start_timeout);
  - pod killed (kill -9 of agent, supervisor and Postgres);
  - primary cut off from the API server (its agent's connections refused).

After each run the failed node is repaired (the postgres container or the
pod started again, the API restored) and the next run waits until it
streams from the new primary. Printed for each set of lease settings: the
shipped defaults (10 s / 7 s / 2 s) and the integration tests' (4 s / 3 s /
1 s).

    bench/failover.py [BUILD_DIR] [--runs N] [--profiles default,test]
                      [--failures postmaster,pod,api]

BUILD_DIR defaults to build/ (it must hold agent/pglease-agent and
agent/agentctl). Everything runs on loopback in a private temp directory;
every process started is killed at the end. Nothing is asserted. Needs
Debian's python3 with python3-psycopg2, PostgreSQL 15 and openssl."""

import argparse
import contextlib
import os
import shutil
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))

import cluster as cluster_mod  # noqa: E402  pylint: disable=wrong-import-position
import cluster_daemon  # noqa: E402  pylint: disable=wrong-import-position
import pgharness  # noqa: E402  pylint: disable=wrong-import-position
from summary import figure  # noqa: E402  bench/run collects these

PROFILES = {
    "default": ("shipped defaults", {
        "lease_duration": "10s", "renew_deadline": "7s",
        "retry_period": "2s", "api_timeout": "2s",
        "primary_start_timeout": "10s", "status_interval": "10s"}),
    "test": ("integration-test timings",
             dict(cluster_mod.DEFAULT_SETTINGS)),
}
SETTING_KEYS = ("lease_duration", "renew_deadline", "retry_period",
                "api_timeout", "primary_start_timeout")


class Failure:
    """One kind of failure of the primary: inject(), then repair()."""
    name = ""
    title = ""

    def inject(self, node):
        raise NotImplementedError

    def repair(self, node):
        raise NotImplementedError


class PostmasterAndSupervisor(Failure):
    name = "postmaster"
    title = "postmaster killed, supervisor down"

    def inject(self, node):
        node.kill_supervisor()
        node.kill_postmaster()

    def repair(self, node):
        node.start_supervisor()


class Pod(Failure):
    name = "pod"
    title = "pod killed"

    def inject(self, node):
        node.kill_pod()

    def repair(self, node):
        node.start_pod(init=True)


class ApiCut(Failure):
    name = "api"
    title = "primary cut off from the API"

    def inject(self, node):
        node.cut_api()

    def repair(self, node):
        node.restore_api()


FAILURES = {f.name: f for f in (PostmasterAndSupervisor(), Pod(), ApiCut())}


def has_table(node, table):
    try:
        return node.sql("SELECT to_regclass(%s) IS NOT NULL", (table,))[0][0]
    except Exception:  # pylint: disable=broad-except
        return False


def one_run(local, failure, table, timeout):
    """Fail the primary once; returns (seconds to the first write on the
    new primary, old name, new name)."""
    old = local.wait_healthy(timeout)
    writer = cluster_mod.Writer(local, table=table).start()
    try:
        cluster_mod._wait(  # pylint: disable=protected-access
            lambda: len(writer.history) >= 10 and all(
                has_table(n, table) for n in local.nodes) and all(
                    n.agent_state() == ("primary" if n is old else "replica")
                    for n in local.nodes), 30,
            "the writer's table on every node, every agent settled")
        failed_at = time.monotonic()
        failure.inject(old)
        first = cluster_mod._wait(  # pylint: disable=protected-access
            lambda: writer.history.first_ack(failed_at, other_than=old.name),
            timeout, f"a write acknowledged by a node other than {old.name}",
            describe=local.describe)
    finally:
        writer.stop()
    failure.repair(old)
    return first[0] - failed_at, old.name, first[1]


@contextlib.contextmanager
def profile_cluster(binaries, profile, prefix, keep=False):
    """A LocalCluster with the timings of PROFILES[profile], in a private
    directory, and the settings as a line; the cluster is started in the
    body. Afterwards it is stopped, everything it ran killed and its
    directory removed, unless the body failed or `keep` (then its logs
    stay)."""
    title, settings = PROFILES[profile]
    workdir = pgharness.make_workdir(prefix)
    reaper = pgharness.Reaper(home=workdir)
    local = cluster_mod.LocalCluster(workdir, binaries, reaper,
                                     settings=settings)
    shown = " ".join(f"{k}={local.settings[k]}" for k in SETTING_KEYS)
    print(f"settings ({title}): {shown}", flush=True)
    failed = True
    try:
        yield local, shown
        failed = False
    finally:
        try:
            local.stop()
        except cluster_mod.ClusterError as exc:
            print(f"  (cleanup: {exc})")
        reaper.kill_all()
        if failed or keep:
            print(f"  (kept {workdir} for its logs)", flush=True)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def run_profiles(args, name, intro, run_profile):
    """Stages the build's programs for the runner user, prints the intro
    line and runs run_profile(args, binaries, profile) for each of
    args.profiles."""
    stage = pgharness.make_workdir("pglease-bench-bin-")
    try:
        binaries = cluster_daemon.stage_binaries(args.build_dir, stage)
    except cluster_mod.ClusterError as exc:
        sys.exit(f"{name}: {exc}")
    print(f"{name}: {intro}", flush=True)
    try:
        for profile in args.profiles:
            run_profile(args, binaries, profile)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def run_profile(args, binaries, profile):
    results = {}
    with profile_cluster(binaries, profile,
                         "pglease-bench-failover-") as (local, shown):
        lease = cluster_mod._seconds(local.settings["lease_duration"])  # pylint: disable=protected-access
        timeout = 6 * lease + 60
        local.start(timeout=180)
        for name in args.failures:
            failure = FAILURES[name]
            times = []
            for run in range(args.runs):
                seconds, old, new = one_run(
                    local, failure, f"bench_{name}_{run}", timeout)
                times.append(seconds)
                print(f"    {failure.title}: run {run + 1}: {old} -> {new}, "
                      f"first write after {seconds:.2f}s", flush=True)
            results[name] = times
        local.wait_healthy(timeout)
    print(f"  failure -> first write acknowledged by the new primary "
          f"({args.runs} runs; {shown}):")
    for name, times in results.items():
        figure(f"failover: {FAILURES[name].title}",
               f"median {statistics.median(times):.2f}s, max {max(times):.2f}s", shown)
        print(f"    {FAILURES[name].title:<38} median "
              f"{statistics.median(times):6.2f}s  max {max(times):6.2f}s  "
              f"({' '.join(f'{t:.2f}' for t in times)})")
    print(flush=True)


def main():
    parser = argparse.ArgumentParser(
        description="failover time of a local three-node pglease cluster")
    parser.add_argument("build_dir", nargs="?",
                        default=os.path.join(SOURCE, "build"))
    parser.add_argument("--runs", type=int, default=5,
                        help="runs per failure and settings (default 5)")
    parser.add_argument("--profiles", default="default,test",
                        help="comma-separated: default (10s/7s/2s), test "
                        "(4s/3s/1s); default both")
    parser.add_argument("--failures", default="postmaster,pod,api",
                        help="comma-separated: postmaster, pod, api")
    args = parser.parse_args()
    args.profiles = [p for p in args.profiles.split(",") if p]
    args.failures = [f for f in args.failures.split(",") if f]
    for value, known in ((args.profiles, PROFILES), (args.failures,
                                                     FAILURES)):
        unknown = [v for v in value if v not in known]
        if unknown:
            parser.error(f"unknown: {', '.join(unknown)} (choose from "
                         f"{', '.join(known)})")
    run_profiles(args, "failover", "3 PostgreSQL 15 servers, run-postgres "
                 "supervisors and agents, Kubernetes API emulator over HTTPS, "
                 "all on loopback; asynchronous replication; a writer inserts "
                 "every 20 ms through the Lease holder", run_profile)


if __name__ == "__main__":
    main()
