#!/usr/bin/python3
"""Leader election benchmark: three `pglease-agent --election-only` agents
against the Kubernetes API emulator (tests/kube-emulator) over HTTPS.

Prints, for the lease settings used:
  - API requests per agent per minute in steady state, for the leader and
    for a follower (the emulator's per-token counters over a window, scaled
    to a minute);
  - the time from kill -9 of the holder to a new holder in the Lease,
    median and max over several runs.

    bench/election.py [BUILD_DIR] [--window S] [--runs N]
                      [--lease-duration S] [--renew-deadline S]
                      [--retry-period S] [--api-timeout S]

BUILD_DIR defaults to build/ (it must hold agent/pglease-agent). Default
settings are the shipped defaults (10 s / 7 s / 2 s, api_timeout 2 s).
Everything runs on loopback in a private temp directory; every process
started is killed at the end. Nothing is asserted."""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "kube-emulator"))

from kubeemu import Emulator, EmulatorError  # noqa: E402  pylint: disable=wrong-import-position
from summary import figure  # noqa: E402  bench/run collects these

NS = "default"
LEASE = "pg-leader"
NODES = ("pg-0", "pg-1", "pg-2")
VERBS = ["get", "list", "watch", "create", "update", "patch"]


def ms(seconds):
    return f"{round(seconds * 1000)}ms"


def wait_for(predicate, timeout, what, interval=0.01):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except (EmulatorError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for "
                               f"{what}")
        time.sleep(interval)


class Bench:
    def __init__(self, args, tmpdir):
        self.args = args
        self.tmpdir = tmpdir
        self.agent_bin = os.path.join(os.path.abspath(args.build_dir),
                                      "agent", "pglease-agent")
        self.emu = Emulator(os.path.join(tmpdir, "emu"), tls=True,
                            quiet=True)
        self.procs = {}
        self.confs = {}

    def settings(self):
        a = self.args
        return (f"lease_duration={a.lease_duration:g}s "
                f"renew_deadline={a.renew_deadline:g}s "
                f"retry_period={a.retry_period:g}s "
                f"api_timeout={a.api_timeout:g}s "
                f"lease_watch={getattr(a, 'lease_watch', 'yes')}")

    def setup(self):
        self.emu.start()
        a = self.args
        for name in NODES:
            self.emu.create_pod(NS, name, {"pglease.io/cluster": "pg"})
            token = f"tok-{name}"
            self.emu.add_token(token, name, verbs=VERBS)
            node_dir = os.path.join(self.tmpdir, name)
            os.makedirs(os.path.join(node_dir, "run"), mode=0o700)
            kubeconfig = self.emu.kubeconfig(
                os.path.join(node_dir, "kubeconfig"), token, namespace=NS,
                user=name)
            conf = os.path.join(node_dir, "pglease.conf")
            with open(conf, "w", encoding="utf-8") as f:
                for key, value in (
                        ("node_name", name), ("kube_config", kubeconfig),
                        ("run_dir", os.path.join(node_dir, "run")),
                        ("lease_duration", ms(a.lease_duration)),
                        ("renew_deadline", ms(a.renew_deadline)),
                        ("retry_period", ms(a.retry_period)),
                        ("api_timeout", ms(a.api_timeout)),
                        ("lease_watch", getattr(a, "lease_watch", "yes")),
                        ("log_format", "json")):
                    f.write(f"{key}={value}\n")
            self.confs[name] = conf
        for name in NODES:
            self.start_agent(name)

    def start_agent(self, name):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("PGLEASE_") and k != "KUBECONFIG"}
        log = open(os.path.join(self.tmpdir, name, "agent.log"), "ab")  # pylint: disable=consider-using-with
        try:
            self.procs[name] = subprocess.Popen(  # pylint: disable=consider-using-with
                [self.agent_bin, "-c", self.confs[name], "--election-only"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                start_new_session=True)
        finally:
            log.close()

    def kill(self, name):
        proc = self.procs.pop(name, None)
        if proc and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(10)

    def teardown(self):
        for name in list(self.procs):
            self.kill(name)
        self.emu.close()

    def holder(self):
        lease = self.emu.get_lease(NS, LEASE)
        return lease["spec"].get("holderIdentity", "") if lease else ""

    def wait_leader(self, other_than=None):
        a = self.args
        bound = a.lease_duration + 3 * a.retry_period + 10

        def held():
            name = self.holder()
            alive = name in self.procs and self.procs[name].poll() is None
            return name if alive and name != other_than else None
        return wait_for(held, bound, "a leader")

    def steady_state_rates(self):
        leader = self.wait_leader()
        # Let every follower see the holder's record renewed a few times.
        time.sleep(3 * self.args.retry_period)
        self.emu.reset_stats()
        time.sleep(self.args.window)
        stats = self.emu.stats()
        seconds = stats["seconds"]
        rows = []
        for name in NODES:
            entry = stats["tokens"].get(f"tok-{name}", {})
            per_min = entry.get("total", 0) / seconds * 60
            verbs = ", ".join(f"{v} {n / seconds * 60:.1f}"
                              for v, n in sorted(entry.get("verbs",
                                                           {}).items()))
            conns = entry.get("connections", 0) / seconds * 60
            rows.append((name == leader, name, per_min, verbs, conns,
                         entry.get("codes", {})))
        if self.holder() != leader:
            print("  (the leader changed during the window: rates mixed)")
        return leader, seconds, sorted(rows, key=lambda r: not r[0])

    def failover(self, runs):
        times = []
        for _ in range(runs):
            leader = self.wait_leader()
            time.sleep(2 * self.args.retry_period)
            if self.holder() != leader:
                continue
            killed_at = time.monotonic()
            self.kill(leader)
            new = self.wait_leader(other_than=leader)
            times.append(time.monotonic() - killed_at)
            print(f"    run {len(times)}: {leader} killed, {new} held the "
                  f"lease after {times[-1]:.2f}s", flush=True)
            self.start_agent(leader)
        return times


def main():
    parser = argparse.ArgumentParser(
        description="leader election benchmark against the API emulator")
    parser.add_argument("build_dir", nargs="?",
                        default=os.path.join(SOURCE, "build"))
    parser.add_argument("--window", type=float, default=30.0,
                        help="steady-state window in seconds (default 30)")
    parser.add_argument("--runs", type=int, default=5,
                        help="kill -9 failover runs (default 5)")
    parser.add_argument("--lease-duration", type=float, default=10.0)
    parser.add_argument("--renew-deadline", type=float, default=7.0)
    parser.add_argument("--retry-period", type=float, default=2.0)
    parser.add_argument("--api-timeout", type=float, default=2.0)
    parser.add_argument("--lease-watch", choices=("yes", "no"),
                        default="yes")
    args = parser.parse_args()

    tmpdir = tempfile.mkdtemp(prefix="pglease-bench-election-")
    bench = Bench(args, tmpdir)
    if not os.access(bench.agent_bin, os.X_OK):
        sys.exit(f"election: not built: {bench.agent_bin}")
    try:
        bench.setup()
        print(f"election: 3 election-only agents, kube-emulator over HTTPS "
              f"on loopback; {bench.settings()}")
        leader, seconds, rows = bench.steady_state_rates()
        print(f"  API requests per agent per minute, steady state "
              f"({seconds:.1f}s window, scaled to 60s):")
        for is_leader, name, per_min, verbs, conns, codes in rows:
            role = "leader  " if is_leader else "follower"
            figure(f"API requests/min, election-only {role.strip()}",
                   f"{per_min:.1f}", bench.settings())
            print(f"    {role} {name}: {per_min:6.1f}/min  ({verbs}; new "
                  f"connections {conns:.1f}/min; codes {codes})")
        print(f"  kill -9 of the holder -> new holder in the Lease "
              f"({args.runs} runs):", flush=True)
        times = bench.failover(args.runs)
        if times:
            figure("holder killed -> new holder (election only)",
                   f"median {statistics.median(times):.2f}s, max {max(times):.2f}s",
                   bench.settings())
            print(f"  failover: median {statistics.median(times):.2f}s, "
                  f"max {max(times):.2f}s (lease_duration "
                  f"{args.lease_duration:g}s + up to 2 x retry_period "
                  f"{args.retry_period:g}s)")
    finally:
        bench.teardown()
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    main()
