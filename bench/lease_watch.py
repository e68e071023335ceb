#!/usr/bin/python3
"""The followers' Lease watch against polling, in one run: three
`pglease-agent --election-only` agents against the Kubernetes API emulator
(tests/kube-emulator) over HTTPS, first with `lease_watch = no` (a read of
the Lease every tick, the behaviour before issue 19), then with
`lease_watch = yes`. Prints for each:

  - API requests per minute at idle, per agent and for the cluster (the
    emulator's per-token counters over a window);
  - the hand-over time: from the holder's release (SIGTERM: it releases
    the Lease) to the successor's acquisition, both read from the agents'
    log stamps, median and max over several runs.

    bench/lease_watch.py [BUILD_DIR] [--window S] [--runs N]
                         [--retry-period S]

The shipped timings otherwise (lease 10 s, renew deadline 7 s, api_timeout
2 s). Nothing is asserted; tests/integration/test_lease_watch.py does."""

import argparse
import calendar
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import election  # noqa: E402  pylint: disable=wrong-import-position
from summary import figure  # noqa: E402


def stamp(text):
    main, _, frac = text.rstrip("Z").partition(".")
    return calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S")) + \
        (float("0." + frac) if frac else 0.0)


def lines(bench, name, event):
    """The stamps of an agent's log lines of one event (its log is kept
    across restarts)."""
    path = os.path.join(bench.tmpdir, name, "agent.log")
    found = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith("{") and f'"event":"{event}"' in line:
                found.append(stamp(json.loads(line)["time"]))
    return found


def hand_overs(bench, runs):
    times = []
    for _ in range(runs):
        leader = bench.wait_leader()
        # Every follower settled on the holder (and watching, if it does);
        # a random part so that the stop does not fall at the same phase
        # of the followers' ticks run after run.
        time.sleep(3 * bench.args.retry_period +
                   random.uniform(0, bench.args.retry_period))
        before = {n: len(lines(bench, n, "acquire")) for n in election.NODES}
        proc = bench.procs.pop(leader)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
        new = bench.wait_leader(other_than=leader)
        election.wait_for(
            lambda n=new: len(lines(bench, n, "acquire")) > before[n], 5,
            "the acquire line")
        took = lines(bench, new, "acquire")[-1] - \
            lines(bench, leader, "release")[-1]
        times.append(took)
        print(f"    run {len(times)}: {leader} released, {new} acquired "
              f"{took * 1000:.0f} ms later", flush=True)
        bench.start_agent(leader)
    return times


def measure(args, watch):
    run = argparse.Namespace(**vars(args), lease_watch=watch)
    tmpdir = tempfile.mkdtemp(prefix="pglease-bench-watch-")
    bench = election.Bench(run, tmpdir)
    try:
        bench.setup()
        print(f"  lease_watch = {watch}: {bench.settings()}", flush=True)
        leader, seconds, rows = bench.steady_state_rates()
        total = 0.0
        for is_leader, name, per_min, verbs, _, _ in rows:
            total += per_min
            role = "leader  " if is_leader else "follower"
            print(f"    {role} {name}: {per_min:5.1f}/min ({verbs})")
            figure(f"API requests/min at idle, {role.strip()} "
                   f"(election only, lease_watch={watch})",
                   f"{per_min:.1f}", bench.settings())
        print(f"    cluster: {total:.1f}/min ({seconds:.0f} s window)")
        figure(f"API requests/min at idle, 3 agents (election only, "
               f"lease_watch={watch})", f"{total:.1f}", bench.settings())
        times = hand_overs(bench, args.runs)
        print(f"    hand-over: median {statistics.median(times) * 1000:.0f}"
              f" ms, max {max(times) * 1000:.0f} ms")
        figure(f"release -> successor acquires (lease_watch={watch})",
               f"median {statistics.median(times) * 1000:.0f} ms, max "
               f"{max(times) * 1000:.0f} ms", bench.settings())
    finally:
        bench.teardown()
        shutil.rmtree(tmpdir, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("build_dir", nargs="?",
                        default=os.path.join(election.SOURCE, "build"))
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--lease-duration", type=float, default=10.0)
    parser.add_argument("--renew-deadline", type=float, default=7.0)
    parser.add_argument("--retry-period", type=float, default=2.0)
    parser.add_argument("--api-timeout", type=float, default=2.0)
    args = parser.parse_args()
    agent = os.path.join(os.path.abspath(args.build_dir), "agent",
                         "pglease-agent")
    if not os.access(agent, os.X_OK):
        sys.exit(f"lease_watch: not built: {agent}")
    print("lease_watch: 3 election-only agents, kube-emulator over HTTPS on "
          "loopback; polling, then the watch")
    for watch in ("no", "yes"):
        measure(args, watch)


if __name__ == "__main__":
    main()
