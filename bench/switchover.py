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
  - for `switchover --wait`, when the command returns: the time from the
    request to its return, and from the first write the new primary
    accepted to the return (a thread per member tries an INSERT straight
    at it every 10 ms; also printed: from the writer's first write on the
    new primary, which may come after the return: the writer finds the
    new primary through the Lease). With --baseline-agentctl PATH (an
    agentctl built from an earlier commit), every other switchover runs
    that one instead, in the same cluster, and both are printed;
  - with synchronous_mode = on, the acknowledged commits missing on the
    final primary after --failovers kill -9 failovers of the primary's pod
    (must be 0), and the time from the kill to a writable new primary.

    bench/switchover.py [BUILD_DIR] [--runs N] [--failovers N]
                        [--settings default|test|both]
                        [--baseline-agentctl PATH] [--no-prestop]

--failovers 0 leaves out the synchronous-mode part, --no-prestop the
pre-stop hand-overs.

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
import threading
import time
import types

import psycopg2

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
    for key in ("agent", "agentctl", "baseline"):
        path = getattr(out, key, None)
        if path is None or pgharness.runner_can_access(path, "x"):
            continue
        pgharness.make_dir(stage_dir, 0o755)
        name = "baseline-agentctl" if key == "baseline" \
            else os.path.basename(path)
        target = os.path.join(stage_dir, name)
        shutil.copy2(path, target)
        os.chmod(target, 0o755)
        setattr(out, key, target)
    return out


def run_agentctl(node, agentctl, *args, timeout):
    """node.agentctl(), with another agentctl program."""
    return node.cluster.reaper.run(
        [agentctl, "-c", node.conf_path, *args], timeout=timeout,
        check=False, cwd=node.dir,
        env=cluster_mod._child_env())  # pylint: disable=protected-access


class FirstWrite:
    """The first moment any member but `old` accepts a write: one thread
    per member tries an INSERT (negative ids: the writer's are positive)
    straight at its server every 10 ms, until one commits. Nearer the
    truth than the writer, which finds the new primary through the Lease
    and backs off after each error."""

    def __init__(self, cluster, old, table):
        self.at = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run,
                                          args=(node, table, -1 - i),
                                          daemon=True)
                         for i, node in enumerate(cluster.nodes)
                         if node is not old]
        for thread in self._threads:
            thread.start()

    def _run(self, node, table, row_id):
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = node.connect(connect_timeout=1)
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {table} (id) VALUES (%s)",
                                (row_id,))
                with self._lock:
                    at = time.monotonic()
                    if self.at is None or at < self.at:
                        self.at = at
                self._stop.set()
            except psycopg2.Error:
                if conn is not None and conn.closed:
                    conn = None
                self._stop.wait(0.01)
        if conn is not None:
            conn.close()

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(10)
        return self.at


def handover(cluster, table, prestop, agentctl=None):
    """One hand-over under a writer: a namespace with window (s), command
    (request to return, s), after_write (the first write any new primary
    accepted to the return, s), after_writer (the writer's first write
    acknowledged by the new primary to the return, s), lost, old and
    new."""
    load = sw.Load(cluster, table)
    old = load.old
    cluster_mod._wait(lambda: sw.settled_members(cluster), 60,  # pylint: disable=protected-access
                      "member records")
    first_write = FirstWrite(cluster, old, table)
    since = time.monotonic()
    if prestop:
        result, _, _ = sw.run_prestop(old, timeout=60)
    else:
        result = run_agentctl(old, agentctl or cluster.binaries.agentctl,
                              "switchover", "--wait", "--timeout", "60",
                              timeout=90)
    returned = time.monotonic()
    if result.returncode != 0:
        first_write.stop()
        load.stop()
        raise RuntimeError(f"hand-over from {old.name} failed: "
                           f"{result.stdout}{result.stderr}")
    new = cluster.wait_primary(60, other_than=old.name)
    load.wait_writes_on(new, since)
    accepted = first_write.stop()
    first = load.writer.history.first_ack(since, node=new.name)
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
    return types.SimpleNamespace(
        window=window, command=returned - since,
        after_write=returned - accepted if accepted else float("nan"),
        after_writer=returned - first[0], lost=lost, old=old.name,
        new=new.name)


def describe(values):
    return (f"median {statistics.median(values):5.2f}s  max "
            f"{max(values):5.2f}s  (" + " ".join(f"{v:.2f}" for v in values)
            + ")")


def bench_handovers(make_cluster, timing, runs, baseline, prestop_too):
    """The hand-overs of each kind; with a baseline agentctl, switchovers
    alternate between it and the build's. Returns the rows lost."""
    cluster = make_cluster(timing)
    kinds = [("switchover --wait", False, None)]
    if baseline:
        kinds.append(("switchover --wait, baseline agentctl", False,
                      baseline))
    if prestop_too:
        kinds.append(("pre-stop (prestop.sh)", True, None))
    done = {what: [] for what, _, _ in kinds}
    # Interleaved, so that both agentctls meet the same machine load.
    for i in range(runs):
        for what, prestop, agentctl in kinds:
            table = (f"bench_{'prestop' if prestop else 'switchover'}"
                     f"{'_baseline' if agentctl else ''}_{i}")
            run = handover(cluster, table, prestop, agentctl)
            done[what].append(run)
            print(f"    {what}, run {i + 1}: {run.old} -> {run.new} "
                  f"window {run.window:.2f}s command {run.command:.2f}s"
                  + ("" if prestop else
                     f" (first write accepted -> return "
                     f"{run.after_write:+.2f}s, writer's first on "
                     f"{run.new} -> return {run.after_writer:+.2f}s)")
                  + f" lost {run.lost}", flush=True)
    lost_total = 0
    for what, prestop, agentctl in kinds:
        rows = done[what]
        windows = [r.window for r in rows]
        commands = [r.command for r in rows]
        lost = sum(r.lost for r in rows)
        settings = f"lease {timing_text(cluster)}"
        figure(f"write-unavailable window, {what}", describe(windows),
               settings)
        line = (f"  {what:<22} write-unavailable {describe(windows)}; "
                f"command {describe(commands)}")
        if not prestop:
            after = [r.after_write for r in rows]
            figure(f"{what}: request -> return", describe(commands),
                   settings)
            figure(f"{what}: first write accepted -> return",
                   describe_signed(after), settings)
            line += (f"; first write accepted -> return "
                     f"{describe_signed(after)}; the writer's first on the "
                     "new primary -> return "
                     f"{describe_signed([r.after_writer for r in rows])}")
        print(line + f"; rows lost {lost}", flush=True)
        lost_total += lost
    return lost_total


def describe_signed(values):
    return (f"median {statistics.median(values):+5.2f}s  max "
            f"{max(values):+5.2f}s  (" + " ".join(f"{v:+.2f}" for v in values)
            + ")")


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
    parser.add_argument("--baseline-agentctl", metavar="PATH",
                        help="an agentctl built from an earlier commit: "
                             "every other switchover runs it")
    parser.add_argument("--no-prestop", action="store_true",
                        help="leave out the pre-stop hand-overs")
    args = parser.parse_args()
    binaries = types.SimpleNamespace(
        agent=os.path.join(os.path.abspath(args.build_dir), "agent",
                           "pglease-agent"),
        agentctl=os.path.join(os.path.abspath(args.build_dir), "agent",
                              "agentctl"),
        baseline=os.path.abspath(args.baseline_agentctl)
        if args.baseline_agentctl else None)
    for path in (binaries.agent, binaries.agentctl, binaries.baseline):
        if path is None:
            continue
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
            bad += bench_handovers(make_cluster, timing, args.runs,
                                   binaries.baseline, not args.no_prestop)
            if args.failovers > 0:
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
