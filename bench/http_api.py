#!/usr/bin/python3
"""HTTP API benchmark (docs/http-api.md): how many `GET /primary` the
primary's agent answers per second, what serving them costs the agent in
CPU and memory, and the lease renew cadence while 200 probe clients ask at
once.

Starts the local two-node cluster of tests/integration/cluster.py with
`http_listen` on each agent (and `http_max_connections` 256), then, for
`--window` seconds each (default 20):

  - idle: nothing (the baseline cadence, CPU and RSS);
  - throughput: `--clients` (default 8) kept-alive clients asking
    `/primary` back to back;
  - 200 probes: 200 clients, each opening a connection, asking
    `/primary`, closing, and asking again after 100 ms.

Prints per load: requests answered per second, the agent's CPU (user +
system, percent of one core, from /proc) and RSS, and the renewal
intervals' p50 / p99 / max (the primary's lease-expiry file, as
bench/renew_cadence.py). The clients are Python threads on the same
machine: on a small machine they, not the agent, bound the throughput.
Everything runs on loopback in a private temp directory; every process
started is killed at the end. Nothing is asserted.

    bench/http_api.py [BUILD_DIR] [--window S] [--clients N]"""

import argparse
import http.client
import os
import shutil
import socket
import sys
import threading
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

SETTINGS = dict(cluster_mod.DEFAULT_SETTINGS, http_max_connections="256")
PROBES = 200


class Clients:
    """n threads running `one(stop)` until stopped; counts answers."""

    def __init__(self, n, one):
        self.n, self.one = n, one
        self.answered = 0
        self.failed = 0
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self.threads = []

    def count(self, ok):
        with self.lock:
            if ok:
                self.answered += 1
            else:
                self.failed += 1

    def start(self):
        for _ in range(self.n):
            thread = threading.Thread(target=self.one, args=(self,),
                                      daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def stop(self):
        self.stop_event.set()
        for thread in self.threads:
            thread.join(10)
        return {"answered": self.answered, "failed": self.failed}


def keepalive_client(port):
    def one(clients):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        while not clients.stop_event.is_set():
            try:
                conn.request("GET", "/primary")
                resp = conn.getresponse()
                resp.read()
                clients.count(resp.status == 200)
            except (OSError, http.client.HTTPException):
                clients.count(False)
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port,
                                                  timeout=5)
        conn.close()
    return one


def probe_client(port):
    request = b"GET /primary HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    def one(clients):
        while not clients.stop_event.is_set():
            try:
                with socket.create_connection(("127.0.0.1", port),
                                              timeout=5) as sock:
                    sock.sendall(request)
                    answer = b""
                    while True:
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        answer += chunk
                clients.count(answer.startswith(b"HTTP/1.1 200"))
            except OSError:
                clients.count(False)
            clients.stop_event.wait(0.1)
    return one


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measure(local, window, n_clients):
    rows = []
    for name in ("idle", "throughput", f"{PROBES} probes"):
        primary = local.wait_healthy(120)
        port = primary.http_port
        pid = primary.agent_proc.pid
        load = None
        if name == "throughput":
            load = Clients(n_clients, keepalive_client(port))
        elif name != "idle":
            load = Clients(PROBES, probe_client(port))
        watch = renewload.RenewWatch(primary).start()
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        if load is not None:
            load.start()
        time.sleep(window)
        detail = load.stop() if load is not None else {"answered": 0,
                                                       "failed": 0}
        elapsed = time.monotonic() - t0
        cpu = (cpu_seconds(pid) - cpu0) / elapsed * 100
        stats = renewload.cadence(watch.stop())
        row = {"load": name, "rps": detail["answered"] / elapsed,
               "failed": detail["failed"], "cpu": cpu, "rss": rss_kib(pid),
               "cadence": stats}
        rows.append(row)
        print(f"  {name}: {row}", flush=True)
    return rows


def report(rows, window, n_clients):
    print(f"settings: {', '.join(f'{k} {v}' for k, v in SETTINGS.items())};"
          f" 2 nodes, window {window:g}s per load, {n_clients} kept-alive "
          f"clients for throughput; {os.cpu_count()} CPUs; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"{'load':<12} {'req/s':>8} {'failed':>7} {'agent CPU':>10} "
          f"{'RSS MiB':>8} {'p50 s':>7} {'p99 s':>7} {'max s':>7}")
    for row in rows:
        stats = row["cadence"] or {"p50": float("nan"), "p99": float("nan"),
                                   "max": float("nan")}
        print(f"{row['load']:<12} {row['rps']:8.0f} {row['failed']:>7} "
              f"{row['cpu']:9.1f}% {row['rss'] / 1024:8.1f} "
              f"{stats['p50']:7.3f} {stats['p99']:7.3f} {stats['max']:7.3f}")
    by = {row["load"]: row for row in rows}
    idle, thr = by["idle"], by["throughput"]
    probes = by[f"{PROBES} probes"]
    figure("GET /primary answered per second", f"{thr['rps']:.0f}",
           f"{n_clients} kept-alive Python clients, loopback")
    figure("agent CPU serving /primary flat out",
           f"{thr['cpu']:.0f}% of a core (idle {idle['cpu']:.1f}%)",
           f"{n_clients} kept-alive clients")
    figure("agent RSS with the HTTP API on", f"{idle['rss'] / 1024:.1f} MiB "
           f"idle, {max(r['rss'] for r in rows) / 1024:.1f} MiB under load",
           "2-node cluster")
    if probes["cadence"] and idle["cadence"]:
        figure(f"renew interval p99, {PROBES} probe clients",
               f"{probes['cadence']['p99'] * 1000:.0f} ms (idle "
               f"{idle['cadence']['p99'] * 1000:.0f} ms)",
               f"retry_period {SETTINGS['retry_period']}")


def parse_args():
    parser = argparse.ArgumentParser(description="the agent's HTTP API")
    parser.add_argument("build_dir", nargs="?",
                        default=os.path.join(SOURCE, "build"))
    parser.add_argument("--window", type=float, default=20.0,
                        help="seconds per load (default 20)")
    parser.add_argument("--clients", type=int, default=8,
                        help="kept-alive clients for throughput (default 8)")
    return parser.parse_args()


def main():
    args = parse_args()
    workdir = pgharness.make_workdir("pglease-http-")
    reaper = pgharness.Reaper(home=workdir)
    local = None
    try:
        binaries = cluster_daemon.stage_binaries(
            args.build_dir, os.path.join(workdir, "bin"))
        ports = set()
        while len(ports) < 2:
            ports.add(pgharness.free_port())
        per_node = {f"pg-{i}": {"http_listen": f"127.0.0.1:{port}"}
                    for i, port in enumerate(sorted(ports))}
        local = cluster_mod.LocalCluster(
            pgharness.make_dir(os.path.join(workdir, "c")), binaries, reaper,
            n=2, settings=SETTINGS, node_settings=per_node)
        for node in local.nodes:
            node.http_port = int(per_node[node.name]["http_listen"]
                                 .rsplit(":", 1)[1])
        local.start(timeout=180)
        report(measure(local, args.window, args.clients), args.window,
               args.clients)
        return 0
    except (cluster_mod.ClusterError, OSError) as exc:
        print(f"http_api: {exc}", file=sys.stderr)
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
