#!/usr/bin/python3
"""Postmaster crash benchmark: a three-node pglease cluster on loopback (real
PostgreSQL 15 servers, each under its `pglease-agent run-postgres`
supervisor with its agent, against the Kubernetes API emulator: the
LocalCluster of tests/integration/cluster.py).

The primary's postmaster is killed with SIGKILL --runs times (its
supervisor and agent stay up: a crash, not a lost pod). For each crash,
with a writer inserting a row every 20 ms through whichever node the Lease
names:

  - restarted after: from the kill to the start of a new postmaster on the
    same node (the supervisor's restart, after any orphans are gone);
  - writable after: from the kill to the first write acknowledged again,
    by any node, on a connection opened after the crash (a backend of the
    killed postmaster may still finish the write it was running);
  - in place or failover: whether that write went to the crashed node
    (its supervisor restarted it and it kept the Lease) or to another one
    (the agent gave up after primary_start_timeout and a standby took
    over);
  - the supervisor's restart delay for it, from its log, and PostgreSQL's
    own crash recovery from its log lines: the sync of the data directory
    (recovery_init_sync_method), then redo and the end-of-recovery
    checkpoint.

With --busy, a client runs a statement that never ends on the primary at
each crash: its backend does not notice that the postmaster died, and a
new postmaster cannot start until it is gone.

Then min, median and max of "writable after", and how many crashes ended
in a restart in place and how many in a failover. The next crash comes
once the cluster is healthy again (every standby streaming from the
primary) plus --pause seconds, so consecutive crashes are as close as a
crash-prone server's are, or as far apart as asked.

    bench/crash.py [BUILD_DIR] [--runs N] [--profiles default,test]
                   [--pause S] [--busy] [--keep]

BUILD_DIR defaults to build/ (it must hold agent/pglease-agent and
agent/agentctl). Everything runs on loopback in a private temp directory;
every process started is killed at the end. Nothing is asserted. Needs
Debian's python3 with python3-psycopg2, PostgreSQL 15 and openssl."""

import argparse
import datetime
import os
import re
import signal
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))

import cluster as cluster_mod  # noqa: E402  pylint: disable=wrong-import-position
from failover import PROFILES, profile_cluster, run_profiles  # noqa: E402  the same timings and set-up
from summary import figure  # noqa: E402  bench/run collects these
from test_crash_restart import BusyClient  # noqa: E402  pylint: disable=wrong-import-position

TABLE = "bench_crash"
POLL = 0.01
# The supervisor's log: "restarting postgres in 1.0s (...)", or "at once".
RESTART_LINE = re.compile(r"restarting postgres (?:in ([0-9.]+)s|at once)")
# PostgreSQL's own lines in it (log_line_prefix '%m [%p] '): crash recovery
# begins, the data directory is synced (no line of its own; the next one
# says recovery starts), then redo and the end-of-recovery checkpoint.
PG_STAMP = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) ")
PG_STEPS = (("interrupted", "database system was interrupted"),
            ("recovering", "automatic recovery in progress"),
            ("ready", "database system is ready to accept connections"))


def log_size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def log_since(path, offset):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            handle.seek(offset)
            return handle.read()
    except OSError:
        return ""


class Writer(cluster_mod.Writer):
    """The cluster's writer, noting when each attempt failed: a write of
    the crashed postmaster's own backend can still be acknowledged just
    after the kill, so the first write that counts is the first one after
    the writer lost that connection."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.error_times = []

    def _failed(self, exc):
        self.error_times.append(time.monotonic())
        super()._failed(exc)


def recovery_steps(text):
    """(data directory sync, redo + checkpoint) in seconds from
    PostgreSQL's log lines of one crash recovery, or None each."""
    stamps = {}
    for line in text.splitlines():
        match = PG_STAMP.match(line)
        if not match:
            continue
        for key, marker in PG_STEPS:
            if marker in line and key not in stamps:
                stamps[key] = datetime.datetime.strptime(
                    match.group(1), "%Y-%m-%d %H:%M:%S.%f")

    def between(a, b):
        if a in stamps and b in stamps:
            return (stamps[b] - stamps[a]).total_seconds()
        return None
    return between("interrupted", "recovering"), \
        between("recovering", "ready")


def first_error(writer, since):
    for at in list(writer.error_times):
        if at >= since:
            return at
    return None


def settled(local, old, writer, since):
    """Ten writes since `since`, and every agent says what it is."""
    return writer.history.first_ack(since) is not None and \
        len(writer.history) >= 10 and all(
            n.agent_state() == ("primary" if n is old else "replica")
            for n in local.nodes)


def one_crash(local, writer, timeout, busy):
    """Kill the primary's postmaster once; returns a dict of what was
    seen."""
    old = local.wait_healthy(timeout)
    t_healthy = time.monotonic()
    cluster_mod._wait(  # pylint: disable=protected-access
        lambda: settled(local, old, writer, t_healthy), 60,
        "writes and every agent settled", describe=local.describe)
    client = BusyClient(old).start() if busy else None
    transitions = local.lease()["leaseTransitions"]
    pid = cluster_mod._wait(  # pylint: disable=protected-access
        old.postmaster_pid, 10, f"{old.name}: a running postmaster")
    sup_offset = log_size(old.supervisor_log)
    crashed_at = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    restarted = first = None
    deadline = crashed_at + timeout
    while first is None:
        now = time.monotonic()
        if now > deadline:
            raise cluster_mod.ClusterError(
                f"no write acknowledged {timeout:.0f}s after the crash of "
                f"{old.name}:\n{local.describe()}")
        if restarted is None:
            new_pid = old.postmaster_pid()
            if new_pid is not None and new_pid != pid:
                restarted = now - crashed_at
        lost = first_error(writer, crashed_at)
        if lost is not None:
            first = writer.history.first_ack(lost)
        if first is None:
            time.sleep(POLL)
    if client is not None:
        client.join()
    text = log_since(old.supervisor_log, sup_offset)
    delays = RESTART_LINE.findall(text)
    sync, redo = recovery_steps(text)
    return {"old": old.name, "new": first[1],
            "writable": first[0] - crashed_at, "restarted": restarted,
            "delay": float(delays[0] or 0) if delays else None,
            "sync": sync, "redo": redo,
            "transitions": local.lease()["leaseTransitions"] - transitions}


def seconds(value):
    return "-" if value is None else f"{value:.2f}s"


def print_crash(run, seen):
    where = "in place" if seen["new"] == seen["old"] else \
        f"FAILOVER to {seen['new']}"
    delay = "-" if seen["delay"] is None else \
        "none" if seen["delay"] == 0 else f"{seen['delay']:.1f}s"
    print(f"    crash {run + 1:2}: {seen['old']} {where}: restart delay "
          f"{delay}, new postmaster after {seconds(seen['restarted'])} "
          f"(then data directory sync {seconds(seen['sync'])}, redo and "
          f"checkpoint {seconds(seen['redo'])}), writable after "
          f"{seen['writable']:.2f}s", flush=True)


def run_profile(args, binaries, profile):
    runs = []
    with profile_cluster(binaries, profile, "pglease-bench-crash-",
                         keep=args.keep) as (local, shown):
        lease = cluster_mod._seconds(local.settings["lease_duration"])  # pylint: disable=protected-access
        start_timeout = cluster_mod._seconds(  # pylint: disable=protected-access
            local.settings["primary_start_timeout"])
        timeout = 6 * lease + start_timeout + 60
        local.start(timeout=180)
        writer = Writer(local, table=TABLE).start()
        try:
            for run in range(args.runs):
                if runs and args.pause:
                    time.sleep(args.pause)
                runs.append(one_crash(local, writer, timeout, args.busy))
                print_crash(run, runs[-1])
            local.wait_healthy(timeout)
        finally:
            writer.stop()
    if not runs:
        return
    times = [r["writable"] for r in runs]
    in_place = sum(1 for r in runs if r["new"] == r["old"])
    value = (f"median {statistics.median(times):.2f}s, min {min(times):.2f}s, "
             f"max {max(times):.2f}s; {in_place} in place, "
             f"{len(runs) - in_place} failover")
    parts = []
    for key, what in (("restarted", "new postmaster"),
                      ("sync", "data directory sync"),
                      ("redo", "redo and checkpoint")):
        values = [r[key] for r in runs if r[key] is not None]
        if values:
            parts.append(f"{what} {statistics.median(values):.2f}s")
    busy = ", a busy backend at each crash" if args.busy else ""
    print(f"  postmaster SIGKILL -> primary accepts writes again "
          f"({len(runs)} crashes{busy}; {shown}):\n    {value}  "
          f"({' '.join(f'{t:.2f}' for t in times)})\n"
          f"    medians of the restarts in place: "
          f"{', '.join(parts) or 'no restart in place'}\n",
          flush=True)
    figure("crash: postmaster SIGKILL -> writable" + busy, value,
           f"{len(runs)} crashes, {shown}")


def main():
    parser = argparse.ArgumentParser(
        description="postmaster crash to writable, local three-node cluster")
    parser.add_argument("build_dir", nargs="?",
                        default=os.path.join(SOURCE, "build"))
    parser.add_argument("--runs", type=int, default=12,
                        help="crashes per settings (default 12)")
    parser.add_argument("--profiles", default="default",
                        help="comma-separated: default (10s/7s/2s, "
                        "primary_start_timeout 10s), test (4s/3s/1s, 5s); "
                        "default: default")
    parser.add_argument("--pause", type=float, default=0.0,
                        help="seconds to wait after the cluster is healthy "
                        "again before the next crash (default 0)")
    parser.add_argument("--busy", action="store_true",
                        help="at each crash, a client runs a statement that "
                        "never ends on the primary (its backend outlives "
                        "the postmaster until it is killed)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the cluster's directory (its logs)")
    args = parser.parse_args()
    args.profiles = [p for p in args.profiles.split(",") if p]
    unknown = [p for p in args.profiles if p not in PROFILES]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)} (choose from "
                     f"{', '.join(PROFILES)})")
    run_profiles(args, "crash", "3 PostgreSQL 15 servers, run-postgres "
                 "supervisors and agents, Kubernetes API emulator over HTTPS, "
                 "all on loopback; asynchronous replication; a writer inserts "
                 "every 20 ms through the Lease holder; the primary's "
                 "postmaster is killed with SIGKILL", run_profile)

if __name__ == "__main__":
    main()
