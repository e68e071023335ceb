#!/usr/bin/python3
"""Planned hand-over and synchronous-mode benchmark on a local three-node
cluster (tests/integration/cluster.py: PostgreSQL 15 under the run-postgres
supervisor, one agent per node, the Kubernetes API emulator).

Prints, for each set of lease settings:
  - the write-unavailable window of `agentctl switchover --wait` and of the
    pre-stop hook (the chart's prestop.sh, i.e. `agentctl demote --wait`):
    the longest time between two acknowledged writes of a writer that
    inserts every 20 ms through whichever node the Lease names, median and
    max over --runs hand-overs, with the rows lost (must be 0);
  - with synchronous_mode = on, the acknowledged commits missing on the
    final primary after --failovers kill -9 failovers of the primary's pod
    (must be 0), and the time from the kill to a writable new primary.

    bench/switchover.py [BUILD_DIR] [--runs N] [--failovers N]
                        [--settings default|test|both]

BUILD_DIR defaults to build/ (agent/pglease-agent and agent/agentctl).
`default` is the shipped timing (lease 10 s, renew deadline 7 s, retry
2 s), `test` the integration tests' (4 s / 3 s / 1 s). Everything runs on
loopback in a private temp directory; every process started is killed at
the end. Nothing is asserted: a lost row is printed, and the exit status
is 1."""

import argparse
import os
import shutil
import statistics
import sys
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))

import cluster as cluster_mod  # noqa: E402  pylint: disable=wrong-import-position
import pgharness  # noqa: E402  pylint: disable=wrong-import-position
import test_switchover as sw  # noqa: E402  pylint: disable=wrong-import-position
import test_sync as sync  # noqa: E402  pylint: disable=wrong-import-position
from summary import figure  # noqa: E402  bench/run collects these

SHIPPED = {"lease_duration": "10s", "renew_deadline": "7s",
           "retry_period": "2s", "status_interval": "10s",
           "api_timeout": "2s", "primary_start_timeout": "10s"}
TIMINGS = {"default": SHIPPED, "test": dict(cluster_mod.DEFAULT_SETTINGS)}


def stage_for_runner(binaries, stage_dir):
    """The agents run as the test user (under root, `pglease-test`): copy
    the programs where it can run them if it cannot reach the originals (a
    tree under /root). The migrations are built into the agent."""
    out = types.SimpleNamespace(**vars(binaries))
    for key in ("agent", "agentctl"):
        path = getattr(out, key)
        if pgharness.runner_can_access(path, "x"):
            continue
        pgharness.make_dir(stage_dir, 0o755)
        target = os.path.join(stage_dir, os.path.basename(path))
        shutil.copy2(path, target)
        os.chmod(target, 0o755)
        setattr(out, key, target)
    return out


def handover(cluster, table, prestop):
    """One hand-over under a writer: (window s, command s, lost, old,
    new)."""
    load = sw.Load(cluster, table)
    old = load.old
    cluster_mod._wait(lambda: sw.settled_members(cluster), 60,  # pylint: disable=protected-access
                      "member records")
    since = time.monotonic()
    if prestop:
        result, _, _ = sw.run_prestop(old, timeout=60)
    else:
        result = old.agentctl("switchover", "--wait", "--timeout", "60",
                              timeout=90)
    command = time.monotonic() - since
    if result.returncode != 0:
        load.stop()
        raise RuntimeError(f"hand-over from {old.name} failed: "
                           f"{result.stdout}{result.stderr}")
    new = cluster.wait_primary(60, other_than=old.name)
    load.wait_writes_on(new, since)
    history = load.stop()
    window = sw.write_unavailable_window(history, since)
    lost = len(cluster_mod.missing_acknowledged(history, new, table=table))
    if prestop:
        # The kubelet stops the pod; the StatefulSet recreates it.
        old.stop_agent()
        old.stop_supervisor()
        old.kill_pod()
        old.start_pod(init=True)
    cluster.wait_healthy(120)
    return window, command, lost, old.name, new.name


def describe(values):
    return (f"median {statistics.median(values):5.2f}s  max "
            f"{max(values):5.2f}s  (" + " ".join(f"{v:.2f}" for v in values)
            + ")")


def bench_handovers(make_cluster, timing, runs):
    cluster = make_cluster(timing)
    lost_total = 0
    for prestop in (False, True):
        windows, commands, lost = [], [], []
        for i in range(runs):
            window, command, lost_rows, old, new = handover(
                cluster, f"bench_{'prestop' if prestop else 'switchover'}_{i}",
                prestop)
            windows.append(window)
            commands.append(command)
            lost.append(lost_rows)
            print(f"    run {i + 1}: {old} -> {new} window {window:.2f}s "
                  f"command {command:.2f}s lost {lost_rows}", flush=True)
        what = "pre-stop (prestop.sh)" if prestop else "switchover --wait"
        figure(f"write-unavailable window, {what}", describe(windows),
               f"lease {timing_text(cluster)}")
        print(f"  {what:<22} write-unavailable {describe(windows)}; "
              f"command {describe(commands)}; rows lost {sum(lost)}",
              flush=True)
        lost_total += sum(lost)
    return lost_total


def timing_text(cluster):
    """The cluster's lease settings, for the summary table."""
    keys = ("lease_duration", "renew_deadline", "retry_period")
    return "/".join(str(cluster.settings.get(k, "?")) for k in keys)


def bench_sync_loss(make_cluster, timing, failovers):
    cluster = make_cluster(dict(timing, synchronous_mode="on",
                                synchronous_node_count="1"))
    history, final, times, violations, late = sync.kill_failovers(
        cluster, failovers, "bench_sync")
    missing = cluster_mod.missing_acknowledged(history, final,
                                               table="bench_sync")
    figure(f"acknowledged commits lost, sync mode on, {failovers} kill -9 failovers",
           f"{len(missing)} of {len(history)}", f"lease {timing_text(cluster)}")
    print(f"  synchronous_mode=on, {failovers} kill -9 failovers: "
          f"acknowledged {len(history)}, missing {len(missing)}, unknown "
          f"{len(history.unknown)}, split-brain rounds {len(violations)}, "
          f"late acks {len(late)}; writable after {describe(times)}",
          flush=True)
    return len(missing) + len(violations) + len(late)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("build_dir", nargs="?",
                        default=os.path.join(SOURCE, "build"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--failovers", type=int, default=10)
    parser.add_argument("--settings", choices=("default", "test", "both"),
                        default="both")
    args = parser.parse_args()
    binaries = types.SimpleNamespace(
        agent=os.path.join(os.path.abspath(args.build_dir), "agent",
                           "pglease-agent"),
        agentctl=os.path.join(os.path.abspath(args.build_dir), "agent",
                              "agentctl"))
    for path in (binaries.agent, binaries.agentctl):
        if not os.access(path, os.X_OK):
            print(f"not built: {path}", file=sys.stderr)
            return 2
    workdir = pgharness.make_workdir("pglease-bench-sw-")
    binaries = stage_for_runner(binaries, os.path.join(workdir, "bin"))
    reaper = pgharness.Reaper(home=workdir)
    clusters = []
    made = [0]

    def make_cluster(settings):
        while clusters:     # one cluster at a time: they share the CPU
            clusters.pop().stop()
        made[0] += 1
        path = pgharness.make_dir(os.path.join(workdir, f"c{made[0]}"))
        local = cluster_mod.LocalCluster(path, binaries, reaper,
                                         settings=settings)
        clusters.append(local)
        local.start(timeout=180)
        return local

    bad = 0
    names = ("default", "test") if args.settings == "both" \
        else (args.settings,)
    try:
        for name in names:
            timing = TIMINGS[name]
            print(f"== {name} timings: lease {timing['lease_duration']}, "
                  f"renew deadline {timing['renew_deadline']}, retry "
                  f"{timing['retry_period']}, primary_start_timeout "
                  f"{timing['primary_start_timeout']}; writer every 20 ms; "
                  f"{args.runs} runs each", flush=True)
            bad += bench_handovers(make_cluster, timing, args.runs)
            bad += bench_sync_loss(make_cluster, timing, args.failovers)
    finally:
        for local in clusters:
            try:
                local.stop()
            except (AssertionError, OSError):
                pass
        reaper.kill_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
