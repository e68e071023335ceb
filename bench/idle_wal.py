#!/usr/bin/python3
"""Idle WAL benchmark: how much WAL an idle, healthy three-node cluster
writes because of pglease (issue 19, item 6). Starts the local cluster of
tests/integration/cluster.py (real PostgreSQL 15 servers under their
run-postgres supervisors, with their agents, against the Kubernetes API
emulator), waits until it is healthy and `--settle` seconds more, then
reads pg_current_wal_lsn() on the primary at the start and the end of a
`--window` (default 300 s) with no client load, and prints the WAL bytes
written, scaled to one hour, with the rows the metadata tables gained or
rewrote (n_tup_ins + n_tup_upd of nodes, events, history, monitoring).
PostgreSQL itself writes a little WAL when idle (a checkpoint, running-
transaction records); the figure includes it.

    bench/idle_wal.py [BUILD_DIR] [--settle S] [--window S]
                      [--status-interval S] [--monitoring-interval S]

Defaults: the demo's status_interval of 2 s and the shipped
monitoring_interval of 30 s. Everything runs on loopback in a private temp
directory; every process started is killed at the end. Nothing is
asserted."""

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

TABLES = ("nodes", "events", "history", "monitoring")


def parse_args():
    parser = argparse.ArgumentParser(
        description="WAL written by an idle three-node cluster")
    parser.add_argument("build_dir", nargs="?",
                        default=os.path.join(SOURCE, "build"))
    parser.add_argument("--settle", type=float, default=30.0)
    parser.add_argument("--window", type=float, default=300.0)
    parser.add_argument("--status-interval", type=float, default=2.0)
    parser.add_argument("--monitoring-interval", type=float, default=30.0)
    return parser.parse_args()


def lsn(text):
    high, low = text.split("/")
    return (int(high, 16) << 32) | int(low, 16)


def snapshot(primary):
    """The primary's WAL position and the metadata tables' row writes."""
    pos = primary.sql("SELECT pg_current_wal_lsn()::text")[0][0]
    rows = dict(primary.sql(
        "SELECT relname, n_tup_ins + n_tup_upd + n_tup_del"
        " FROM pg_stat_user_tables WHERE schemaname = 'pglease'"))
    return lsn(pos), rows


def human(nbytes):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.1f} {unit}" if unit != "B" else f"{nbytes} B"
        nbytes /= 1024
    return f"{nbytes:.1f} GiB"


def main():
    args = parse_args()
    workdir = pgharness.make_workdir("pglease-idle-wal-")
    reaper = pgharness.Reaper(home=workdir)
    settings = {
        "lease_duration": "10s", "renew_deadline": "7s",
        "retry_period": "2s", "api_timeout": "2s",
        "primary_start_timeout": "10s",
        "status_interval": f"{args.status_interval:g}s",
        "monitoring_interval": f"{args.monitoring_interval:g}s",
    }
    local = None
    try:
        binaries = cluster_daemon.stage_binaries(
            args.build_dir, os.path.join(workdir, "bin"))
        local = cluster_mod.LocalCluster(
            pgharness.make_dir(os.path.join(workdir, "c")), binaries, reaper,
            n=3, settings=settings)
        local.start(timeout=180)
        primary = local.wait_healthy(120)
        time.sleep(args.settle)     # idle: nothing to wait for
        primary = local.wait_healthy(30)
        start_lsn, start_rows = snapshot(primary)
        started = time.monotonic()
        time.sleep(args.window)     # the idle window is what is measured
        elapsed = time.monotonic() - started
        end_lsn, end_rows = snapshot(primary)
        if local.lease_holder() != primary.name:
            print("(the leader changed during the window)")
        wal = end_lsn - start_lsn
        per_hour = wal / elapsed * 3600
        print(f"settings: status_interval={args.status_interval:g}s "
              f"monitoring_interval={args.monitoring_interval:g}s "
              f"retry_period=2s; 3 nodes, idle window {elapsed:.0f}s; "
              f"build {os.path.abspath(args.build_dir)}")
        print(f"WAL written: {human(wal)} in {elapsed:.0f} s = "
              f"{human(per_hour)} per idle hour "
              f"({human(wal / elapsed * 60)} per minute)")
        for table in TABLES:
            delta = end_rows.get(table, 0) - start_rows.get(table, 0)
            print(f"  pglease.{table}: {delta / elapsed * 3600:.0f} row "
                  "writes per hour")
        figure("WAL per idle hour (3 nodes)", human(per_hour),
               f"status_interval {args.status_interval:g}s, "
               f"monitoring_interval {args.monitoring_interval:g}s")
        return 0
    except (cluster_mod.ClusterError, OSError) as exc:
        print(f"idle_wal: {exc}", file=sys.stderr)
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
