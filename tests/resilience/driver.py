"""driver: one resilience run. Starts the local three-node cluster
(tests/integration/cluster.py, the code scripts/demo uses), the clients,
the split-brain checker and the nemesis; after the planned time heals
everything, waits for a healthy cluster, stops the load, collects the final
state and prints the report (tests/resilience/README.md). Exit status 0
when every check passed, 1 when one failed, 2 when the run could not be
carried out (the cluster did not start), 77 (skipped) with --kube real and
no control plane up, unless PGLEASE_K8S_REQUIRED=1 (then 2)."""

import argparse
import json
import os
import random
import shutil
import signal
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("PGLEASE_SOURCE_DIR") or \
    os.path.dirname(os.path.dirname(HERE))
for _path in (HERE, os.path.join(SOURCE_DIR, "tests", "integration"),
              os.path.join(SOURCE_DIR, "tests", "kube-emulator")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import psycopg2  # noqa: E402  pylint: disable=wrong-import-position

import checker  # noqa: E402  pylint: disable=wrong-import-position
import clocks as clocks_mod  # noqa: E402  pylint: disable=wrong-import-position
import controlplane  # noqa: E402  pylint: disable=wrong-import-position
import clients  # noqa: E402  pylint: disable=wrong-import-position
import cluster as cluster_mod  # noqa: E402  pylint: disable=wrong-import-position
import cluster_daemon  # noqa: E402  pylint: disable=wrong-import-position
import nemesis as nemesis_mod  # noqa: E402  pylint: disable=wrong-import-position
import pgharness  # noqa: E402  pylint: disable=wrong-import-position
import volumes as volumes_mod  # noqa: E402  pylint: disable=wrong-import-position

N_CLIENTS = 3
HEALTHY_BOUND = 60.0
FINAL_HEALTHY_TIMEOUT = 180.0
# Lines in a node's logs that mean a process went wrong however it exited.
CRASH_PATTERNS = ("AddressSanitizer", "LeakSanitizer", "runtime error:",
                  "Assertion `", "Segmentation fault", "double free",
                  "stack smashing")


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="tests/resilience/run",
        description="Fault injection against a local three-node pglease "
                    "cluster, with a checker over the recorded history.")
    parser.add_argument("--minutes", type=float, default=3.0,
                        help="how long the nemesis injects faults "
                             "(default 3)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the fault schedule (default: random, "
                             "printed)")
    parser.add_argument("--sync", choices=("on", "off"), default="on",
                        help="synchronous_mode of the cluster (default on)")
    parser.add_argument("--kube", choices=("emulator", "real"),
                        default="emulator",
                        help="the Kubernetes API: the emulator (default) "
                             "or the real control plane of scripts/k8s "
                             "(scripts/k8s up first)")
    parser.add_argument("--build-dir", default=None,
                        help="meson build directory (default "
                             "$PGLEASE_BUILD_DIR, else <source>/build)")
    parser.add_argument("--healthy-bound", type=float, default=HEALTHY_BOUND,
                        help="seconds a fault may take to heal (default 60)")
    parser.add_argument("--faults", default=None,
                        help="comma-separated subset of the faults: "
                             + ",".join(sorted(nemesis_mod.FAULTS))
                             + ",disk_full,clock_step (emulator); "
                             + ",".join(sorted(nemesis_mod.REAL_FAULTS))
                             + " (--kube real)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (always kept when a "
                             "check fails)")
    parser.add_argument("--json", default=None, metavar="FILE",
                        help="also write the history and verdicts as JSON")
    args = parser.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1 << 31)
    if args.build_dir is None:
        args.build_dir = os.environ.get("PGLEASE_BUILD_DIR") or \
            os.path.join(SOURCE_DIR, "build")
    if args.faults:
        # disk_full and clock_step are not in the emulator's default
        # schedule (the seeds of earlier runs keep theirs) but may be named.
        known = nemesis_mod.REAL_FAULTS if args.kube == "real" else \
            dict(nemesis_mod.FAULTS, disk_full=1, clock_step=1)
        names = [n.strip() for n in args.faults.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            parser.error(f"unknown faults with --kube {args.kube}: "
                         + ", ".join(unknown))
        args.faults = {n: known[n] for n in names}
    return args


class Run:
    """The state of one run, from start to report."""

    def __init__(self, args):
        self.args = args
        self.t0 = time.monotonic()
        self.workdir = None
        self.reaper = None
        self.cluster = None
        self.clients = []
        self.split_brain = None
        self.split_brain_violations = []
        self.split_brain_rounds = 0
        self.nemesis = None
        self.control_plane = None
        self.volumes = None
        self.clocks = None
        self.final = {}
        self.final_rows = set()
        self.sanitizer_hits = []
        self.checks = []
        self.load_end = None
        self._stopped = False

    def log(self, text):
        print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", flush=True)

    # -- lifecycle ---------------------------------------------------------------

    def start_cluster(self):
        self.workdir = pgharness.make_workdir("pglease-res-")
        self.reaper = pgharness.Reaper(home=self.workdir)
        binaries = cluster_daemon.stage_binaries(
            self.args.build_dir, os.path.join(self.workdir, "bin"))
        binaries.build_dir = os.path.abspath(self.args.build_dir)
        # wal_keep_size: the nemesis changes the timeline about twice a
        # minute, and each change leaves a 16 MB segment of the old
        # timeline in every member's pg_wal for as long as it is within
        # wal_keep_size of WAL. At this load 512 MB (the default) is 90
        # minutes of WAL: some 180 such segments, 2.9 GB, which filled the
        # second 2-hour run's 3 GB volumes (docs/resilience.md). 256 MB
        # keeps the protection it was made for (a member rewound right
        # after a failover finds its WAL) at half the cost.
        settings = {"synchronous_mode": self.args.sync,
                    "wal_keep_size": "256MB"}
        if self.args.kube == "real":
            # LocalCluster then uses tests/k8s/realkube.py: a namespace of
            # its own with the chart's RBAC, rotated tokens, a TCP proxy
            # per node.
            os.environ["PGLEASE_KUBE"] = "real"
        self.cluster = cluster_mod.LocalCluster(
            pgharness.make_dir(os.path.join(self.workdir, "c")), binaries,
            self.reaper, n=3, settings=settings)
        wanted = self.args.faults if self.args.faults is not None else (
            nemesis_mod.REAL_FAULTS if self.args.kube == "real" else {})
        if "disk_full" in wanted:
            why_not = volumes_mod.Volumes.possible()
            if why_not:
                self.log(f"no data volumes ({why_not}): no disk_full fault")
            else:
                self.volumes = volumes_mod.Volumes()
                for node in self.cluster.nodes:
                    self.volumes.mount(node)
        if "clock_step" in wanted:
            why_not = clocks_mod.Clocks.possible(self.args.build_dir)
            if why_not:
                self.log(f"no clocks of their own ({why_not}): "
                         "no clock_step fault")
            else:
                self.clocks = clocks_mod.Clocks(self.args.build_dir)
                for node in self.cluster.nodes:
                    self.clocks.attach(node)
        self.log(f"starting the cluster in {self.workdir}")
        primary = self.cluster.start(timeout=180)
        if self.args.kube == "real":
            self.control_plane = controlplane.ControlPlane(
                self.cluster.emulator, SOURCE_DIR)
            self.log(f"real control plane: {self.cluster.emulator.url}, "
                     f"namespace {self.cluster.namespace}")
        clients.ensure_table(self.cluster)
        self.log(f"cluster healthy, primary {primary.name}")

    def run_load(self):
        rng = random.Random(self.args.seed)
        self.split_brain = self.cluster.split_brain_checker()
        self.clients = [clients.Client(self.cluster, i + 1)
                        for i in range(N_CLIENTS)]
        for client in self.clients:
            client.start()
        self.nemesis = nemesis_mod.Nemesis(
            self.cluster, rng, self.log,
            healthy_bound=self.args.healthy_bound,
            faults=self.args.faults, control_plane=self.control_plane,
            volumes=self.volumes, clocks=self.clocks)
        until = time.monotonic() + self.args.minutes * 60
        self.log(f"load started; faults for {self.args.minutes:g} min")
        self.nemesis.run(until)
        self.finish_load()

    def finish_load(self):
        """Heal, wait for a healthy cluster with every node, and let the
        clients write on it before stopping them."""
        self.nemesis.heal_all()
        primary = self.nemesis.wait_healthy(FINAL_HEALTHY_TIMEOUT)
        if primary is None:
            self.final["error"] = ("not healthy within "
                                   f"{FINAL_HEALTHY_TIMEOUT:g}s at the "
                                   "end:\n" + self.cluster.describe())
        else:
            t_healthy = time.monotonic()
            deadline = t_healthy + 30
            while time.monotonic() < deadline and not any(
                    w.outcome == "ok" and w.start >= t_healthy
                    for c in self.clients for w in c.writes[-5:]):
                time.sleep(0.1)
        self.stop_load()
        self.log(f"load stopped; final primary "
                 f"{primary.name if primary else None}")

    def stop_load(self):
        """Stop the clients and the split-brain checker (idempotent): their
        open sessions would hold up a smart shutdown."""
        if self.load_end is None:
            self.load_end = time.monotonic()
        for client in self.clients:
            if client.is_alive():
                client.stop()
        if self.split_brain is not None:
            self.split_brain_violations = self.split_brain.stop()
            self.split_brain_rounds = self.split_brain.rounds
            self.split_brain = None

    # -- the final state -----------------------------------------------------------

    def collect_final(self):
        cluster = self.cluster
        primary = self.nemesis.wait_healthy(30) if not self.final.get(
            "error") else cluster.healthy()
        self.final["healthy"] = primary is not None
        if primary is None:
            # Not healthy: judge the data on the one writable server, if any.
            try:
                primary = cluster.primary()
            except cluster_mod.ClusterError:
                primary = None
        self.final["primary"] = primary.name if primary else None
        nodes = {}
        if primary is not None:
            rows = primary.sql(f"SELECT client, id FROM {clients.TABLE}")
            self.final_rows = {(c, i) for c, i in rows}
            self.final["rows"] = len(rows)
            lsn = primary.sql("SELECT pg_current_wal_lsn()")[0][0]
            self._wait_replayed(lsn, primary)
        else:
            # No primary at all: what would survive is on the standbys;
            # judge the data on the one holding the most rows.
            best = None
            for node in cluster.nodes:
                try:
                    rows = node.sql(f"SELECT client, id FROM {clients.TABLE}")
                except psycopg2.Error:
                    continue
                if best is None or len(rows) > len(best[1]):
                    best = (node, rows)
            if best is not None:
                self.final_rows = {(c, i) for c, i in best[1]}
                self.final["judged_on"] = f"{best[0].name} (no primary)"
        for node in cluster.nodes:
            info = {"role": node.role(), "agent": node.agent_alive(),
                    "supervisor": node.supervisor_alive(),
                    "streaming": primary is not None and node is not primary
                    and node.is_streaming_from(primary)}
            try:
                info["timeline"] = node.timeline()
                info["rows"] = node.sql(
                    f"SELECT count(*) FROM {clients.TABLE}")[0][0]
            except psycopg2.Error as exc:
                info["error"] = str(exc).strip()
            nodes[node.name] = info
        self.final["nodes"] = nodes
        try:
            self.final["transitions"] = cluster.lease()["leaseTransitions"]
        except Exception:  # pylint: disable=broad-except
            self.final["transitions"] = None

    def _wait_replayed(self, lsn, primary, timeout=30):
        deadline = time.monotonic() + timeout
        for node in self.cluster.nodes:
            if node is primary:
                continue
            while time.monotonic() < deadline:
                try:
                    if node.sql("SELECT pg_last_wal_replay_lsn() >= %s",
                                (lsn,))[0][0]:
                        break
                except psycopg2.Error:
                    pass
                time.sleep(0.1)

    def grep_logs(self):
        for node in self.cluster.nodes:
            for path in (node.init_log, node.supervisor_log,
                         node.agent_log_path):
                try:
                    with open(path, encoding="utf-8",
                              errors="replace") as handle:
                        for line in handle:
                            if any(p in line for p in CRASH_PATTERNS):
                                self.sanitizer_hits.append(
                                    (os.path.relpath(path, self.workdir),
                                     line.strip()[:300]))
                except OSError:
                    pass

    def stop_cluster(self):
        """SIGTERM every agent and supervisor (their exit statuses are
        checked), then the cluster's own stop."""
        if self.cluster is None or self._stopped:
            return
        self._stopped = True
        for node in self.cluster.nodes:
            node.sigcont()
            for what, stop in (("agent", node.stop_agent),
                               ("supervisor", node.stop_supervisor)):
                try:
                    status = stop()
                except cluster_mod.ClusterError as exc:
                    self.log(f"stop: {exc}")
                    status = "killed"
                if self.nemesis is not None:
                    self.nemesis.shutdown_statuses.append(
                        (node.name, what, status))
        try:
            self.cluster.stop()
        except Exception as exc:  # pylint: disable=broad-except
            self.log(f"cluster stop: {exc}")

    # -- verdicts ------------------------------------------------------------------

    def writes(self):
        return [w for c in self.clients for w in c.writes
                if w.outcome is not None]

    def reads(self):
        return [r for c in self.clients for r in c.reads
                if r.outcome is not None]

    def judge(self):
        writes, faults = self.writes(), self.nemesis.records
        sync = self.args.sync == "on"
        self.checks = [
            checker.check_acknowledged(writes, self.final_rows, sync, faults,
                                       self.final.get("primary")
                                       or self.final.get("judged_on")),
            checker.check_failed_not_committed(writes, self.final_rows),
            checker.check_single_writer(writes, self.split_brain_violations,
                                        self.split_brain_rounds),
            checker.check_healthy_after_faults(faults,
                                               self.args.healthy_bound),
            checker.check_rejoined(self.final),
            checker.check_processes(self.nemesis.crashes,
                                    self.nemesis.shutdown_statuses,
                                    self.sanitizer_hits),
            checker.check_reads(writes, self.reads(), sync, faults),
            checker.check_planned(faults),
            checker.check_reloads(faults),
            checker.check_clock_steps(faults),
        ]
        if self.control_plane is not None:
            settings = self.cluster.settings
            self.checks.append(checker.check_api_outage_writes(
                writes, faults, cluster_mod._seconds(  # pylint: disable=protected-access
                    settings["lease_duration"]),
                failsafe=str(settings.get("failsafe_mode", "no")).lower()
                in ("yes", "on", "true", "1")))
        crashed = [c for c in self.clients if c.crashed]
        if crashed:
            self.checks.append(checker.Check(
                "the clients ran to the end", False,
                "; ".join(f"{c.name}: {c.crashed}" for c in crashed)))
        if self.nemesis.aborted:
            self.checks.append(checker.Check(
                "the run went to the end", False,
                "the nemesis stopped early", [self.nemesis.aborted]))
        return all(c.ok for c in self.checks)

    def report(self, passed):
        args, faults = self.args, self.nemesis.records
        settings = self.cluster.settings
        writes, reads = self.writes(), self.reads()
        out = ["", "=" * 72, "pglease resilience report", "=" * 72,
               f"seed {args.seed}, synchronous_mode {args.sync}, "
               f"{args.minutes:g} min of faults planned, "
               f"{(self.load_end - self.t0) / 60:.1f} min run",
               f"build {os.path.abspath(args.build_dir)}, 3 nodes, lease "
               f"{settings['lease_duration']}/{settings['renew_deadline']}/"
               f"{settings['retry_period']}, primary_start_timeout "
               f"{settings['primary_start_timeout']}, healthy bound "
               f"{args.healthy_bound:g}s",
               f"API: {self.api_description()}",
               f"command: tests/resilience/run --minutes {args.minutes:g} "
               f"--seed {args.seed} --sync {args.sync}"
               + (" --kube real" if args.kube == "real" else ""), ""]
        counts = {}
        for fault in faults:
            counts[fault.name] = counts.get(fault.name, 0) + 1
        out.append(f"faults injected: {len(faults)}")
        for name in sorted(counts):
            out.append(f"  {name:<18} {counts[name]}")
        out.append("")
        out.append("  #   at(s) fault              target  detail"
                   "                 primary       healthy (after heal)"
                   "  outage")
        for f in faults:
            at = f.injected - self.t0 if f.injected else float("nan")
            healthy = f"{f.healthy_after:6.1f}s ({f.healthy_after_heal:5.1f}s)" \
                if f.healthy_after is not None else "   never        "
            outage = checker.write_outage(writes, f)
            outage = f"{outage:5.1f}s" if outage is not None else "    -"
            change = f"{f.primary_before}->{f.primary_after}" \
                if f.primary_after != f.primary_before else \
                f"{f.primary_before} kept"
            out.append(f"  {f.index:<3} {at:6.1f} {f.name:<18} "
                       f"{f.target or '-':<7} {f.detail[:22]:<22} "
                       f"{change:<12} {healthy}     {outage}")
            if f.api_back is not None:
                after = f"{f.healthy_after_api:.1f}s" \
                    if f.healthy_after_api is not None else "never"
                out.append(f"        the API answered again "
                           f"{f.api_back - f.injected:.1f}s after the "
                           f"injection; healthy {after} after that")
            for note in f.notes + ([f.error] if f.error else []):
                out.append(f"        {note}")
        by_outcome = {}
        for w in writes:
            by_outcome[w.outcome] = by_outcome.get(w.outcome, 0) + 1
        out += ["",
                f"writes: {len(writes)} sent by {N_CLIENTS} clients: "
                + ", ".join(f"{k} {v}" for k, v in sorted(
                    by_outcome.items()))
                + f"; reads: {len(reads)} "
                f"({sum(1 for r in reads if r.outcome == 'ok')} ok)",
                f"lease transitions: {self.final.get('transitions')}",
                "", "checks:"]
        for check in self.checks:
            out.append(f"  {check.status}  {check.name}: {check.summary}")
            for detail in check.details[:12]:
                out.append(f"          {detail}")
        if self.nemesis.crashes:
            out.append("")
            for crash in self.nemesis.crashes:
                out.append(f"crash: {crash.node} {crash.what} exit "
                           f"{crash.returncode}; log tail:")
                out += ["    " + line for line in
                        crash.log_tail.splitlines()[-15:]]
        out += ["", f"result: {'PASS' if passed else 'FAIL'}"
                + ("" if passed else f" (work directory kept: "
                   f"{self.workdir})"), ""]
        print("\n".join(out), flush=True)

    def api_description(self):
        if self.control_plane is None:
            return "the Kubernetes API emulator"
        kube = self.cluster.emulator
        rotated = sum(kube.rotations.values())
        return (f"kube-apiserver {kube.url} (scripts/k8s), namespace "
                f"{self.cluster.namespace}, {rotated} token rotations")

    def dump_json(self, path, passed):
        data = {
            "seed": self.args.seed, "sync": self.args.sync,
            "kube": self.args.kube,
            "minutes": self.args.minutes, "passed": passed,
            "faults": [f.as_dict() for f in self.nemesis.records],
            "crashes": [c.as_dict() for c in self.nemesis.crashes],
            "checks": [c.as_dict() for c in self.checks],
            "final": self.final,
            "writes": [w.as_dict() for w in self.writes()],
            "reads": [r.as_dict() for r in self.reads()],
            "split_brain": self.split_brain_violations,
        }
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(data, handle, default=str)


def prune_workdir(path):
    """After a passing run: remove the data directories and the staged
    programs, keep the logs (evidence for anything the report noted)."""
    for root, dirs, _ in os.walk(path):
        for name in list(dirs):
            if name in ("data", "bin", "secrets"):
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
                dirs.remove(name)


def _terminate(signum, frame):
    del frame
    raise SystemExit(128 + signum)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _terminate)
    if args.kube == "real":
        import realkube  # pylint: disable=import-outside-toplevel
        if realkube.control_plane_env() is None:
            if os.environ.get("PGLEASE_K8S_REQUIRED") == "1":
                print("no control plane (scripts/k8s up) and "
                      "PGLEASE_K8S_REQUIRED=1", file=sys.stderr)
                return 2
            print("skipped: no control plane (scripts/k8s up)")
            return 77
    run = Run(args)
    run.log(f"seed {args.seed}, synchronous_mode {args.sync}, "
            f"{args.minutes:g} min, API {args.kube}, build {args.build_dir}")
    passed = False
    status = 2
    try:
        try:
            run.start_cluster()
        except (cluster_mod.ClusterError, OSError, TimeoutError,
                nemesis_mod.kubeemu.EmulatorError) as exc:
            run.log(f"the cluster did not start: {exc}")
            if run.cluster is not None and run.cluster.emulator is not None:
                for node in run.cluster.nodes:
                    print(node.logs(lines=30))
            return 2
        run.run_load()
        run.collect_final()
        # Stopped before the logs are read: LeakSanitizer reports at exit.
        run.stop_cluster()
        run.grep_logs()
        passed = run.judge()
        status = 0 if passed else 1
        run.report(passed)
        if args.json:
            run.dump_json(args.json, passed)
    except Exception:  # pylint: disable=broad-except
        traceback.print_exc()
        if run.cluster is not None and run.cluster.emulator is not None:
            try:
                print(run.cluster.describe())
            except Exception:  # pylint: disable=broad-except
                pass
        status = 2
    finally:
        if run.control_plane is not None:
            run.control_plane.heal()    # never leave the server frozen
        run.stop_load()
        run.stop_cluster()
        if run.reaper is not None:
            run.reaper.kill_all()
        if run.volumes is not None:
            try:
                run.volumes.unmount_all()
            except OSError as exc:
                print(f"unmounting the data volumes: {exc}")
        if run.workdir and passed and not args.keep:
            prune_workdir(run.workdir)
            print(f"node logs kept in {run.workdir}")
        elif run.workdir:
            print(f"work directory: {run.workdir}")
    return status
