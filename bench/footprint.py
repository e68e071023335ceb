#!/usr/bin/python3
"""Footprint benchmark: what the agent costs on an idle, healthy cluster.

Starts the local three-node cluster of tests/integration/cluster.py (real
PostgreSQL 15 servers, each under its run-postgres supervisor, with its
agent, against the Kubernetes API emulator), waits until it is healthy and
then `--settle` seconds (default 60) with no load. Then, for the leader's
agent and one follower's:

  - resident memory: VmRSS (and the peak, VmHWM; RssAnon, the process's
    own pages, and RssFile, mapped files such as shared libraries) from
    /proc/<pid>/status, read after the settle time;
  - CPU: utime + stime from /proc/<pid>/stat over a `--window` (default
    120 s), scaled to CPU seconds per hour (and per cent of one core);
  - API requests per minute: the emulator's per-token counters over the same
    window, with the verbs.

The run-postgres supervisors' figures are printed too. Settings default to
the shipped ones (lease 10 s / renew deadline 7 s / retry 2 s, status
interval 10 s, API timeout 2 s) and are printed with the figures.

    bench/footprint.py [BUILD_DIR] [--settle S] [--window S]
                       [--lease-duration S] [--renew-deadline S]
                       [--retry-period S] [--status-interval S]
                       [--api-timeout S] [--sync on|off]
                       [--lease-watch yes|no] [--member-watch yes|no]

Everything runs on loopback in a private temp directory; every process
started is killed at the end. Nothing is asserted."""

import argparse
import os
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
for _path in (os.path.join(SOURCE, "tests", "integration"),
              os.path.join(SOURCE, "tests", "kube-emulator")):
    sys.path.insert(0, _path)

import cluster as cluster_mod  # noqa: E402  pylint: disable=wrong-import-position
import cluster_daemon  # noqa: E402  pylint: disable=wrong-import-position
import pgharness  # noqa: E402  pylint: disable=wrong-import-position
from summary import figure  # noqa: E402  bench/run collects these

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_status(pid, key):
    """A field of /proc/<pid>/status in kB (VmRSS, VmHWM), or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def cpu_seconds(pid):
    """utime + stime of the process, in seconds."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    # fields[0] is the state (field 3): utime is field 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def secs(value):
    return f"{value:g}s"


def parse_args():
    parser = argparse.ArgumentParser(
        description="agent footprint on an idle three-node cluster")
    parser.add_argument("build_dir", nargs="?",
                        default=os.path.join(SOURCE, "build"))
    parser.add_argument("--settle", type=float, default=60.0,
                        help="idle seconds before measuring (default 60)")
    parser.add_argument("--window", type=float, default=120.0,
                        help="CPU and API measuring window (default 120)")
    parser.add_argument("--lease-duration", type=float, default=10.0)
    parser.add_argument("--renew-deadline", type=float, default=7.0)
    parser.add_argument("--retry-period", type=float, default=2.0)
    parser.add_argument("--status-interval", type=float, default=10.0)
    parser.add_argument("--api-timeout", type=float, default=2.0)
    parser.add_argument("--sync", choices=("on", "off"), default="off")
    parser.add_argument("--lease-watch", choices=("yes", "no"),
                        default="yes",
                        help="followers watch the Lease (default) or read "
                        "it every tick")
    parser.add_argument("--member-watch", choices=("yes", "no"),
                        default="yes",
                        help="agents watch the member Pods (default) or "
                        "list them every status_interval")
    return parser.parse_args()


def measure(args, local):
    primary = local.wait_healthy(120)
    print(f"healthy, leader {primary.name}; idle for {args.settle:g}s",
          flush=True)
    time.sleep(args.settle)     # the idle time is what is measured
    primary = local.wait_healthy(30)
    follower = next(n for n in local.nodes if n is not primary)
    nodes = [("leader", primary), ("follower", follower)]
    rss = {}
    for _, node in nodes:
        rss[node.name] = {
            what: tuple(proc_status(proc.pid, key) for key in
                        ("VmRSS", "VmHWM", "RssAnon", "RssFile"))
            for what, proc in (("agent", node.agent_proc),
                               ("supervisor", node.supervisor_proc))}
    cpu_before = {(node.name, what): cpu_seconds(proc.pid)
                  for _, node in nodes
                  for what, proc in (("agent", node.agent_proc),
                                     ("supervisor", node.supervisor_proc))}
    local.emulator.reset_stats()
    started = time.monotonic()
    time.sleep(args.window)
    elapsed = time.monotonic() - started
    cpu_after = {key: cpu_seconds(
        getattr(local.node(key[0]), f"{key[1]}_proc").pid)
        for key in cpu_before}
    stats = local.emulator.stats()
    stats["cluster_total"] = sum(
        stats["tokens"].get(n.token, {}).get("total", 0) for n in local.nodes)
    changed = local.lease_holder() != primary.name
    return nodes, rss, cpu_before, cpu_after, elapsed, stats, changed


def report(args, nodes, rss, cpu_before, cpu_after, elapsed, stats,
           changed):
    print(f"settings: lease_duration={secs(args.lease_duration)} "
          f"renew_deadline={secs(args.renew_deadline)} "
          f"retry_period={secs(args.retry_period)} "
          f"status_interval={secs(args.status_interval)} "
          f"api_timeout={secs(args.api_timeout)} "
          f"synchronous_mode={args.sync} lease_watch={args.lease_watch} "
          f"member_watch={args.member_watch}; "
          "3 nodes, idle "
          f"{args.settle:g}s, window {elapsed:.0f}s; {os.cpu_count()} "
          "CPUs")
    print(f"{'':<13} {'process':<11} {'RSS':>8} {'peak RSS':>9} "
          f"{'anon':>7} {'file':>7} "
          f"{'CPU s/hour':>11} {'% core':>7} {'API req/min':>12}  verbs/min")
    for label, node in nodes:
        for what in ("agent", "supervisor"):
            now, peak, anon, mapped = rss[node.name][what]
            used = cpu_after[(node.name, what)] - \
                cpu_before[(node.name, what)]
            per_hour = used / elapsed * 3600
            api, verbs = "", ""
            if what == "agent":
                entry = stats["tokens"].get(node.token, {})
                api = f"{entry.get('total', 0) / stats['seconds'] * 60:.1f}"
                verbs = ", ".join(
                    f"{v} {n / stats['seconds'] * 60:.1f}"
                    for v, n in sorted(entry.get("verbs", {}).items()))
            if what == "agent":
                figure(f"agent RSS / CPU per hour idle, {label}",
                       f"{(now or 0) / 1024:.1f} MB, {per_hour:.1f} s/h", f"retry_period {secs(args.retry_period)}")
                figure(f"API requests/min, {label}", api, f"retry_period {secs(args.retry_period)}")
            print(f"{label + ' ' + node.name if what == 'agent' else '':<13} "
                  f"{what:<11} {(now or 0) / 1024:7.1f}M "
                  f"{(peak or 0) / 1024:8.1f}M {(anon or 0) / 1024:6.1f}M "
                  f"{(mapped or 0) / 1024:6.1f}M {per_hour:11.1f} "
                  f"{used / elapsed * 100:6.2f}% {api:>12}  {verbs}")
    cluster = stats["cluster_total"] / stats["seconds"] * 60
    print(f"API requests per minute, the three agents: {cluster:.1f}")
    figure("API requests/min, 3 agents", f"{cluster:.1f}",
           f"retry_period {secs(args.retry_period)}, lease_watch "
           f"{args.lease_watch}, member_watch {args.member_watch}")
    if changed:
        print("(the leader changed during the window: the figures mix "
              "roles)")


def main():
    args = parse_args()
    workdir = pgharness.make_workdir("pglease-footprint-")
    reaper = pgharness.Reaper(home=workdir)
    settings = {
        "lease_duration": secs(args.lease_duration),
        "renew_deadline": secs(args.renew_deadline),
        "retry_period": secs(args.retry_period),
        "status_interval": secs(args.status_interval),
        "api_timeout": secs(args.api_timeout),
        "primary_start_timeout": "10s",
        "synchronous_mode": args.sync,
        "lease_watch": args.lease_watch,
        "member_watch": args.member_watch,
    }
    local = None
    try:
        binaries = cluster_daemon.stage_binaries(
            args.build_dir, os.path.join(workdir, "bin"))
        local = cluster_mod.LocalCluster(
            pgharness.make_dir(os.path.join(workdir, "c")), binaries, reaper,
            n=3, settings=settings)
        local.start(timeout=180)
        report(args, *measure(args, local))
        return 0
    except (cluster_mod.ClusterError, OSError) as exc:
        print(f"footprint: {exc}", file=sys.stderr)
        return 1
    finally:
        if local is not None and local.emulator is not None:
            try:
                local.stop()
            except cluster_mod.ClusterError as exc:
                print(f"stop: {exc}", file=sys.stderr)
        reaper.kill_all()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
