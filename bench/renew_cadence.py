#!/usr/bin/python3
"""Renew-cadence benchmark: the interval between successive lease renewals
of a primary, idle and under each load of issue 15, side by side.

Starts the local two-node cluster of tests/integration/cluster.py (real
PostgreSQL 15 servers under their run-postgres supervisors, agents, the
Kubernetes API emulator) and, for `--window` seconds each (default 30),
watches the primary's <run_dir>/lease-expiry (rewritten after every
successful renewal with that renewal's send time + renew_deadline, on the
agent's CLOCK_MONOTONIC: tests/integration/renewload.py) while:

  - idle: nothing;
  - status flood: one client after another, each with 10,000 pipelined
    `status` requests on the agent's control socket;
  - slow clients: 64 clients sending one byte a second;
  - table locks: ACCESS EXCLUSIVE on every metadata table;
  - stopped backend: SIGSTOP of the (idle) backend serving the agent;
  - hanging trigger: pg_sleep in a statement-level trigger on every
    metadata table, so that each metadata write hangs in the server until
    the agent's statement_timeout cancels it;
  - slow API: the emulator answers each of the primary's requests after
    api_timeout minus 150 ms.

Prints p50 / p99 / max of the intervals per load, the p99's difference
from the idle p99 (the target: within 50 ms), and whether the lease stayed
with the primary. Settings default to the test timings (lease 4 s / renew
deadline 3 s / retry 1 s, api_timeout 1 s, statement_timeout 1 s) so that
a window holds many renewals.

    bench/renew_cadence.py [BUILD_DIR] [--window S] [--loads a,b,...]
                           [--renice]

The agents run as the unprivileged runner user, so the renewer thread
cannot raise its own priority (it asks for nice -10; the systemd unit
allows it with LimitNICE). `--renice` (as root) sets the primary's
`pglease-renew` thread to nice -10 from outside, to measure what that
priority buys on a loaded machine.

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
import renewload  # noqa: E402  pylint: disable=wrong-import-position
from summary import figure  # noqa: E402  bench/run collects these

SETTINGS = {"lease_duration": "4s", "renew_deadline": "3s",
            "retry_period": "1s", "status_interval": "2s",
            "api_timeout": "1s", "statement_timeout": "1s",
            "primary_start_timeout": "5s"}
LOADS = ("idle", "status-flood", "slow-clients", "table-locks",
         "stopped-backend", "hanging-trigger", "slow-api")


class Repeated:
    """Runs a finite load (StatusFlood) again and again until stopped."""

    def __init__(self, make):
        self.make = make
        self.answered = 0
        self.runs = 0
        self._stop = False
        self._thread = None

    def _run(self):
        while not self._stop:
            result = self.make().start().stop()
            self.answered += result["answered"]
            self.runs += 1

    def start(self):
        import threading  # pylint: disable=import-outside-toplevel
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop = True
        self._thread.join(180)
        return {"answered": self.answered, "runs": self.runs}


def make_load(name, local, primary, window):
    if name == "idle":
        return None
    if name == "status-flood":
        return Repeated(lambda: renewload.StatusFlood(primary, 10000))
    if name == "slow-clients":
        return renewload.SlowClients(primary, 64)
    if name == "table-locks":
        return renewload.TableLocks(primary, window + 30)
    if name == "stopped-backend":
        return renewload.StoppedBackend(primary)
    if name == "hanging-trigger":
        return renewload.HangingTriggers(primary, window + 30)
    if name == "slow-api":
        return renewload.SlowApi(local, primary,
                                 cluster_mod._seconds(  # pylint: disable=protected-access
                                     SETTINGS["api_timeout"]) - 0.15)
    raise ValueError(name)


def renice_renewer(node):
    """nice -10 for the agent's pglease-renew thread (needs root)."""
    pid = node.agent_proc.pid
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/comm", encoding="ascii") as f:
            if f.read().strip() == "pglease-renew":
                os.setpriority(os.PRIO_PROCESS, int(tid), -10)
                return True
    return False


def measure(local, loads, window, renice=False):
    rows = []
    for name in loads:
        primary = local.wait_healthy(120)
        if renice and not renice_renewer(primary):
            print(f"  {name}: no pglease-renew thread to renice")
        transitions = local.lease()["leaseTransitions"]
        load = make_load(name, local, primary, window)
        watch = renewload.RenewWatch(primary).start()
        if load is not None:
            load.start()
        time.sleep(window)
        detail = load.stop() if load is not None else {}
        stats = renewload.cadence(watch.stop())
        lease = local.lease()
        kept = (lease["spec"].get("holderIdentity") == primary.name
                and lease["leaseTransitions"] == transitions)
        rows.append((name, stats, kept, detail))
        print(f"  {name}: {stats} lease kept: {kept} {detail}", flush=True)
    return rows


def report(rows, window, reniced=False):
    idle = next((s for n, s, _, _ in rows if n == "idle" and s), None)
    print(f"settings: {', '.join(f'{k} {v}' for k, v in SETTINGS.items())};"
          f" 2 nodes, window {window:g}s per load; {os.cpu_count()} CPUs;"
          f" renewer thread {'reniced to -10' if reniced else 'at nice 0'};"
          f" load average {os.getloadavg()[0]:.1f}")
    print(f"{'load':<16} {'renewals':>8} {'p50 s':>8} {'p99 s':>8} "
          f"{'max s':>8} {'p99-idle':>9}  lease kept")
    for name, stats, kept, _ in rows:
        if not stats:
            print(f"{name:<16} {'-':>8}  no renewal seen   {kept}")
            continue
        delta = (stats["p99"] - idle["p99"]) * 1000 if idle else float("nan")
        print(f"{name:<16} {stats['n']:>8} {stats['p50']:8.3f} "
              f"{stats['p99']:8.3f} {stats['max']:8.3f} {delta:7.0f}ms  "
              f"{'yes' if kept else 'NO'}")
        figure(f"renew interval p99, {name}"
               + (" (renewer at nice -10)" if reniced else ""),
               f"{stats['p99'] * 1000:.0f} ms ({delta:+.0f} ms vs idle)",
               f"retry_period {SETTINGS['retry_period']}")


def parse_args():
    parser = argparse.ArgumentParser(
        description="lease renewal cadence, idle and under load")
    parser.add_argument("build_dir", nargs="?",
                        default=os.path.join(SOURCE, "build"))
    parser.add_argument("--window", type=float, default=30.0,
                        help="seconds per load (default 30)")
    parser.add_argument("--renice", action="store_true",
                        help="renice the renewer thread to -10 (root)")
    parser.add_argument("--loads", default=",".join(LOADS),
                        help="comma list of " + ", ".join(LOADS))
    return parser.parse_args()


def main():
    args = parse_args()
    loads = [x for x in args.loads.split(",") if x]
    for name in loads:
        if name not in LOADS:
            print(f"renew_cadence: unknown load {name}", file=sys.stderr)
            return 2
    workdir = pgharness.make_workdir("pglease-renew-")
    reaper = pgharness.Reaper(home=workdir)
    local = None
    try:
        binaries = cluster_daemon.stage_binaries(
            args.build_dir, os.path.join(workdir, "bin"))
        local = cluster_mod.LocalCluster(
            pgharness.make_dir(os.path.join(workdir, "c")), binaries, reaper,
            n=2, settings=SETTINGS)
        local.start(timeout=180)
        report(measure(local, loads, args.window, args.renice), args.window,
               args.renice)
        return 0
    except (cluster_mod.ClusterError, OSError) as exc:
        print(f"renew_cadence: {exc}", file=sys.stderr)
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
