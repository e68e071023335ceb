"""nemesis: injects one fault at a time into a LocalCluster, at random
intervals drawn from the run's seed, heals it as Kubernetes or an operator
would, and waits (with a bound) for a healthy cluster again: one primary
holding the Lease, every other node streaming from it on its timeline.

Every fault leaves a FaultRecord (what, on whom, when it was injected,
healed and found healthy again). A process of a node that exits while it
should run (the agent, the run-postgres supervisor) is a crash: it is
recorded with its exit status and log tail, and restarted, as the kubelet
restarts a container."""

import os
import shutil
import signal
import subprocess
import threading
import time

import psycopg2

import clients
import cluster as cluster_mod  # tests/integration/cluster.py
import kubeemu

SWITCHOVER_ANNOTATION = "pglease.io/switchover"
SYNC_ANNOTATION = "pglease.io/sync"
PAUSED_ANNOTATION = "pglease.io/paused"

# name -> weight. Each one is a method _fault_<name> of Nemesis.
FAULTS = {
    "kill_postmaster": 1,       # kill -9 the primary's postmaster
    "kill_primary_pod": 1,      # kill -9 agent + supervisor + postgres
    "kill_standby_pod": 1,
    "sigstop_primary": 1,       # freeze agent + postgres, then SIGCONT
    "cut_api_primary": 1,       # the API refuses the primary's agent
    "cut_api_standby": 1,
    "api_slow": 1,              # every agent's requests answered late
    "api_fail": 1,              # every agent's requests answered 500/503
    "switchover": 1,            # agentctl switchover [--to N] --wait
    "prestop_demote": 1,        # the pre-stop hook, then the pod restarts
    "restart_emulator": 1,      # the API server restarts
    "reload": 1,                # SIGHUP to an agent: same, changed, invalid
    "double_switchover": 1,     # two switchover requests 0.2-0.8 s apart
    "pause_switchover": 1,      # pause, switchover --wait, resume
    "freeze_postmaster": 1,     # SIGSTOP the primary's postmaster only
    "kill_supervisor": 1,       # kill -9 the primary's supervisor (+ stall its agent)
    "lose_answers": 1,          # the primary's Lease writes applied, answers lost
}

# With --kube real (the kube-apiserver of scripts/k8s): the faults the real
# server allows. No api_fail (an HTTP status cannot be injected into the
# TLS stream) and no restart_emulator; instead faults of the shared
# control plane (controlplane.py) and of a node's ServiceAccount token.
REAL_FAULTS = dict(
    {name: weight for name, weight in FAULTS.items()
     if name not in ("api_fail", "restart_emulator", "lose_answers")},
    sigstop_apiserver=1,        # freeze kube-apiserver, then SIGCONT
    restart_apiserver=1,        # scripts/k8s restart-apiserver
    restart_etcd=1,             # scripts/k8s restart-etcd
    compact_etcd=1,             # etcd compaction: old watches get 410
    expire_token=1,             # a node's token stops being valid (401)
    disk_full=1,                # a node's data volume filled (volumes.py)
    clock_step=1,               # a node's wall clock stepped (clocks.py)
)

# What the agent logs for each variant of the reload fault.
RELOAD_EXPECT = {
    "unchanged": "configuration reloaded (0 changed",
    "changed": "configuration reloaded (1 changed",
    "invalid": "keeping the running one",
}
# Events an agent must not log after a reload alone (issue 14).
RELOAD_ALARMS = ("fence", "primary-down", "release", "promote", "rejoin")


class FaultRecord:
    """One injected fault and what followed."""

    def __init__(self, index, name, primary_before):
        self.index = index
        self.name = name
        self.target = None
        self.target_role = None
        self.detail = ""
        self.primary_before = primary_before
        self.primary_after = None
        self.injected = None        # monotonic times
        self.healed = None
        self.healthy = None
        self.healthy_bound_missed = False
        self.notes = []
        self.error = None
        self.planned = None         # a planned operation that did not succeed
        self.reload = None          # the reload fault: variant, logged, alarms
        self.clock = None           # clock_step: step, held, alarms
        self.relapses = []          # (seconds after healthy, seconds to heal)
        # A fault of the whole real API (sigstop_apiserver,
        # restart_apiserver, restart_etcd): when the server was known to be
        # down (SIGSTOP delivered; None when not known exactly) and when
        # it answered ready again.
        self.api_down = None
        self.api_back = None

    @property
    def healthy_after(self):
        """Seconds from injection to a healthy cluster, or None."""
        if self.healthy is None or self.injected is None:
            return None
        return self.healthy - self.injected

    @property
    def bound_start(self):
        """Where the bound on a healthy cluster starts: the injection, or
        for a fault of the whole API the moment it answered again (no
        node can lead without it; that time is the outage, not a node's
        failure to recover)."""
        if self.api_back is not None and self.injected is not None:
            return max(self.injected, self.api_back)
        return self.injected

    @property
    def healthy_after_api(self):
        """Seconds from the API's return to a healthy cluster, or None."""
        if self.healthy is None or self.api_back is None:
            return None
        return self.healthy - self.api_back

    @property
    def healthy_after_heal(self):
        if self.healthy is None or self.healed is None:
            return None
        return self.healthy - self.healed

    def as_dict(self):
        out = {key: value for key, value in vars(self).items()}
        out["healthy_after"] = self.healthy_after
        out["healthy_after_api"] = self.healthy_after_api
        return out


class Crash:
    """A node process that exited while it should have run."""

    def __init__(self, node, what, returncode, at, log_tail, fault):
        self.node = node
        self.what = what
        self.returncode = returncode
        self.at = at
        self.log_tail = log_tail
        self.fault = fault          # index of the fault under way, or None

    def as_dict(self):
        return dict(vars(self))


class RunAborted(Exception):
    """The cluster did not come back even after the rescue bound."""


class Nemesis:
    """Faults in sequence until `until` (monotonic)."""

    def __init__(self, cluster, rng, log, healthy_bound=60.0,
                 rescue_bound=120.0, min_gap=1.0, max_gap=8.0,
                 faults=None, control_plane=None, volumes=None,
                 clocks=None):
        self.cluster = cluster
        # controlplane.ControlPlane with --kube real, else None (the
        # emulator).
        self.control_plane = control_plane
        # volumes.Volumes when each node's data directory is on a volume
        # of its own (--kube real, as root), else None: no disk_full.
        self.volumes = volumes
        self.rng = rng
        self.log = log
        self.healthy_bound = healthy_bound
        self.rescue_bound = rescue_bound
        self.min_gap = min_gap
        self.max_gap = max_gap
        # clocks.Clocks when each node's processes read a wall clock of
        # their own, else None: no clock_step.
        self.clocks = clocks
        self.faults = dict(faults or (REAL_FAULTS if control_plane
                                      else FAULTS))
        if volumes is None:
            self.faults.pop("disk_full", None)
        if clocks is None:
            self.faults.pop("clock_step", None)
        self.created = time.monotonic()
        self._expired = set()       # nodes whose token expire_token broke
        self.lease = cluster_mod._seconds(  # pylint: disable=protected-access
            cluster.settings["lease_duration"])
        self.records = []
        self.crashes = []
        self.shutdown_statuses = []     # (node, what, exit status) on SIGTERM
        self.aborted = None
        self.lagging = None         # a standby the last probe did not reach
        self._current = None
        self._stop = threading.Event()

    # -- the loop ----------------------------------------------------------------

    def run(self, until):
        """Inject faults until `until`; returns the records. Stops early
        (self.aborted set) if the cluster does not come back."""
        names = sorted(self.faults)
        weights = [self.faults[n] for n in names]
        while not self._stop.is_set():
            gap = self.rng.uniform(self.min_gap, self.max_gap)
            name = self.rng.choices(names, weights)[0]
            if time.monotonic() + gap >= until:
                break
            self._pause(gap)
            try:
                self._relapse()
                self.inject(name)
            except RunAborted as exc:
                self.aborted = str(exc)
                break
        return self.records

    def stop(self):
        self._stop.set()

    def _pause(self, seconds):
        """The random quiet time between faults (watching for crashes)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.check_processes()
            time.sleep(min(0.2, max(0.0, end - time.monotonic())))

    def _relapse(self):
        """A fault's effect may land after the cluster was found healthy
        (a fence at the renew deadline just after an API fault ended):
        then the last fault is not over, and the next waits for it."""
        if not self.records or self.healthy_now() is not None:
            return
        record = self.records[-1]
        since = time.monotonic() - (record.healthy or time.monotonic())
        self.log(f"#{record.index} {record.name}: unhealthy again {since:.1f}s"
                 " after it was healthy:\n" + self._describe())
        self._current = record
        started = time.monotonic()
        primary = self.wait_healthy(self.healthy_bound)
        if primary is None:
            self.heal_all()
            self._rescue(record)
            primary = self.wait_healthy(self.rescue_bound)
        self._current = None
        if primary is None:
            record.healthy_bound_missed = True
            raise RunAborted(f"not healthy again after fault #{record.index} "
                             f"({record.name}):\n" + self._describe())
        record.relapses.append((since, time.monotonic() - started))
        record.notes.append(
            f"unhealthy again {since:.1f}s after healthy, for "
            f"{time.monotonic() - started:.1f}s (primary then "
            f"{primary.name})")
        record.primary_after = primary.name

    def inject(self, name):
        primary = self.healthy_now()
        if primary is None:
            primary = self.wait_healthy(self.healthy_bound)
        if primary is None:
            raise RunAborted(f"not healthy before fault {name}:\n"
                             + self._describe())
        record = FaultRecord(len(self.records) + 1, name,
                             primary.name if primary else None)
        self.records.append(record)
        self._current = record
        standbys = [n for n in self.cluster.nodes if n is not primary]
        try:
            getattr(self, f"_fault_{name}")(record, primary, standbys)
        except (cluster_mod.ClusterError, psycopg2.Error, OSError,
                kubeemu.EmulatorError, subprocess.TimeoutExpired) as exc:
            record.error = f"{type(exc).__name__}: {exc}"
            self.log(f"#{record.index} {name}: {record.error}")
        if record.healed is None:
            record.healed = time.monotonic()
        self.heal_all()
        self._wait_after(record)
        self._current = None
        return record

    def _wait_after(self, record):
        start = record.bound_start
        primary = self.wait_healthy(
            max(0.0, start + self.healthy_bound - time.monotonic())
            if start else self.healthy_bound)
        if primary is None:
            record.healthy_bound_missed = True
            self.log(f"#{record.index} {record.name}: not healthy within "
                     f"{self.healthy_bound:g}s of the fault:\n"
                     + self._describe())
            self.heal_all()
            self._rescue(record)
            primary = self.wait_healthy(self.rescue_bound)
            if primary is None:
                raise RunAborted(
                    f"not healthy {self.healthy_bound + self.rescue_bound:g}s"
                    f" after fault #{record.index} ({record.name}):\n"
                    + self._describe())
        record.healthy = time.monotonic()
        record.primary_after = primary.name
        after = record.healthy_after
        if record.api_back is not None:
            self.log(f"#{record.index} {record.name}: the API answered "
                     f"again {record.api_back - record.injected:.1f}s after "
                     "the injection")
        self.log(f"#{record.index} {record.name} {record.target or ''} "
                 f"{record.detail}: healthy after {after:.1f}s, primary "
                 f"{record.primary_before}->{record.primary_after}"
                 + (f" ({'; '.join(record.notes)})" if record.notes else ""))

    # -- health ---------------------------------------------------------------------

    def _describe(self):
        try:
            text = self.cluster.describe()
        except Exception as exc:  # pylint: disable=broad-except
            return f"(cannot describe: {exc!r})"
        if self.lagging:
            text += (f"\n{self.lagging}: the last probe row written on the "
                     "primary did not reach it")
        return text

    def healthy_now(self):
        """The primary if LocalCluster.healthy() and a row written on the
        primary now reaches every standby within a few seconds."""
        try:
            primary = self.cluster.healthy()
        except (OSError, kubeemu.EmulatorError, cluster_mod.ClusterError):
            return None
        if primary is None or not self.replicates(primary):
            return None
        return primary

    def replicates(self, primary, timeout=5.0):
        """Bump the probe row on the primary and wait until every other
        node has replayed it."""
        try:
            rows = primary.sql(clients.BUMP_PROBE)
        except psycopg2.Error:
            return False
        value = rows[0][0]
        deadline = time.monotonic() + timeout
        for node in self.cluster.nodes:
            if node is primary:
                continue
            while True:
                try:
                    if node.sql(clients.READ_PROBE)[0][0] >= value:
                        break
                except psycopg2.Error:
                    pass
                if time.monotonic() >= deadline:
                    self.lagging = node.name
                    return False
                time.sleep(0.05)
        self.lagging = None
        return True

    def wait_healthy(self, timeout):
        """The primary once the cluster is healthy, None after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            self.check_processes()
            primary = self.healthy_now()
            if primary is not None:
                return primary
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)

    def check_processes(self):
        """Record and restart a node process that exited while wanted."""
        for node in self.cluster.nodes:
            for what, proc, wanted, log, restart in (
                    ("agent", node.agent_proc, node.want_agent,
                     node.agent_log_path, node.start_agent),
                    ("supervisor", node.supervisor_proc,
                     node.want_supervisor, node.supervisor_log,
                     node.start_supervisor)):
                if not wanted or proc is None or proc.poll() is None:
                    continue
                crash = Crash(node.name, what, proc.returncode,
                              time.monotonic(),
                              cluster_mod._log_tail(log, 40),  # pylint: disable=protected-access
                              self._current.index if self._current else None)
                self.crashes.append(crash)
                self.log(f"CRASH: {node.name}'s {what} exited with "
                         f"{proc.returncode}; restarting it")
                restart()

    def heal_all(self):
        """Undo every fault that may be left: SIGCONT, API access, API
        faults, the emulator, dead pods."""
        for node in self.cluster.nodes:
            node.sigcont()
        if self.volumes is not None:
            self.volumes.free_all()
        if self.clocks is not None:
            self.clocks.reset_all()
        if self.control_plane is not None:
            self._heal_control_plane()
        elif not self.cluster.emulator.running():
            self.cluster.emulator.stop()    # collects a dead process
            self.cluster.emulator.start()
        for attempt in range(50):
            try:
                self.cluster.emulator.clear_faults()
                break
            except (OSError, kubeemu.EmulatorError):
                if attempt == 49:
                    raise
                time.sleep(0.1)
        for node in self.cluster.nodes:
            if not node.want_agent and not node.want_supervisor:
                self._start_pod(node)

    def _heal_control_plane(self):
        """The real control plane: SIGCONT kube-apiserver and etcd, give a
        node whose token was broken a fresh one, wait until the server is
        ready (bounded; a server that does not come back fails the fault's
        bound)."""
        kube = self.cluster.emulator
        self.control_plane.heal()
        if self.control_plane.wait_ready(self.rescue_bound) is None:
            self.log("kube-apiserver not ready "
                     f"{self.rescue_bound:g}s after healing")
            return
        for node in list(self._expired):
            kube.hold_rotation(node.token, False)
            try:
                kube.rotate(node.token)
            except (OSError, kubeemu.EmulatorError) as exc:
                self.log(f"{node.name}: no fresh token yet: {exc}")
                continue
            self._expired.discard(node)

    def _rescue(self, record):
        """The cluster missed its bound: do what an operator (or the
        kubelet's liveness probe) would, so that a long run goes on. The
        fault has failed its check already."""
        try:
            primary = self.cluster.primary()
            holder = self.cluster.lease_holder()
        except (cluster_mod.ClusterError, OSError, kubeemu.EmulatorError):
            return
        if primary is not None:
            self._reclone_stuck(record)
            return
        if not holder:
            return
        # No primary, and a holder that does not lead: restart its pod.
        node = self.cluster.node(holder)
        self.log(f"#{record.index}: no primary while {holder} holds the "
                 f"lease: restarting {holder}'s pod")
        record.notes.append(f"no primary while {holder} held the lease: "
                            f"{holder}'s pod restarted by the operator")
        node.kill_pod()
        self._start_pod(node)

    def _reclone_stuck(self, record):
        """What an operator does about a standby that never streams again:
        delete its pod and its volume, so that it is cloned afresh. Only
        when a primary holds the lease and the other nodes are fine; the
        fault has already failed its bound, this keeps the run going."""
        try:
            primary = self.cluster.primary()
            if primary is None or \
                    self.cluster.lease_holder() != primary.name:
                return
        except (cluster_mod.ClusterError, OSError, kubeemu.EmulatorError):
            return
        stuck = [n for n in self.cluster.nodes if n is not primary and (
            n.name == self.lagging or not n.is_streaming_from(primary))]
        for node in stuck:
            self.log(f"#{record.index}: {node.name} does not replicate from "
                     f"{primary.name}: re-cloning it (pod and volume deleted)")
            record.notes.append(f"{node.name} stuck, re-cloned by the "
                                "operator")
            node.kill_pod()
            shutil.rmtree(node.data_dir, ignore_errors=True)
            self._start_pod(node)

    def _start_pod(self, node):
        """Start a pod again as Kubernetes does: the init container first."""
        try:
            node.start_pod(init=True)
        except cluster_mod.AgentFeatureMissing:
            raise
        except cluster_mod.ClusterError as exc:
            # A failed init container is retried by the kubelet; so do we,
            # but it is worth reporting.
            self.log(f"{node.name}: init failed, retrying: {exc}")
            if self._current is not None:
                self._current.notes.append(f"{node.name} init failed once")
            node.start_pod(init=True)

    def _hold(self, seconds):
        """Keep a fault in place for `seconds` (the fault's random length)."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.check_processes()
            time.sleep(min(0.1, max(0.0, end - time.monotonic())))

    # -- the faults -------------------------------------------------------------

    def _start(self, record, target=None, role=None, detail=""):
        record.target = target.name if target is not None else None
        record.target_role = role
        record.detail = detail
        record.injected = time.monotonic()

    def _fault_kill_postmaster(self, record, primary, standbys):
        del standbys
        self._start(record, primary, "primary")
        primary.kill_postmaster()
        record.healed = time.monotonic()    # the supervisor restarts it

    def _kill_pod(self, record, node, role):
        down = self.rng.uniform(0.5, 1.5 * self.lease)
        self._start(record, node, role, f"down {down:.1f}s")
        node.kill_pod()
        self._hold(down)
        record.healed = time.monotonic()
        self._start_pod(node)

    def _fault_kill_primary_pod(self, record, primary, standbys):
        del standbys
        self._kill_pod(record, primary, "primary")

    def _fault_kill_standby_pod(self, record, primary, standbys):
        del primary
        self._kill_pod(record, self.rng.choice(standbys), "standby")

    def _fault_sigstop_primary(self, record, primary, standbys):
        del standbys
        frozen = self.rng.uniform(0.5, 3 * self.lease)
        self._start(record, primary, "primary", f"frozen {frozen:.1f}s")
        primary.sigstop(supervisor=False)
        try:
            self._hold(frozen)
        finally:
            primary.sigcont()
            record.healed = time.monotonic()

    def _fault_freeze_postmaster(self, record, primary, standbys):
        """SIGSTOP of the primary's postmaster alone (its backends and the
        agent run on): it accepts no new connection, so the agent counts
        it down and fails over after primary_start_timeout."""
        del standbys
        frozen = self.rng.uniform(0.5, 3 * self.lease)
        pid = primary.postmaster_pid()
        if pid is None:
            raise cluster_mod.ClusterError(f"{primary.name}: no postmaster")
        self._start(record, primary, "primary",
                    f"postmaster {pid} frozen {frozen:.1f}s")
        os.kill(pid, signal.SIGSTOP)
        try:
            self._hold(frozen)
        finally:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass            # fenced: SIGKILLed while stopped
            record.healed = time.monotonic()

    def _fault_kill_supervisor(self, record, primary, standbys):
        """kill -9 of the primary's run-postgres supervisor (PostgreSQL
        dies with it), and in half the cases a stall of its agent right
        after (SIGSTOP for 1 s to 3 lease durations): never two writers.
        The supervisor stays down for 0.5 to 1.5 lease durations after
        that (the agent, running, sees it gone and fences and releases);
        then it starts again (the postgres container restarting) and must
        cope with what the old one left."""
        del standbys
        stall = self.rng.choice([0.0, self.rng.uniform(1.0, 3 * self.lease)])
        down = self.rng.uniform(0.5, 1.5 * self.lease)
        self._start(record, primary, "primary",
                    (f"agent frozen {stall:.1f}s, " if stall else "")
                    + f"down {down:.1f}s")
        primary.kill_supervisor()
        try:
            if stall:
                primary.agent_proc.send_signal(signal.SIGSTOP)
                primary._stopped.add(primary.agent_proc.pid)  # pylint: disable=protected-access
                self._hold(stall)
                primary.sigcont()
            self._hold(down)
        finally:
            primary.sigcont()
            primary.start_supervisor()
            record.healed = time.monotonic()

    def _cut_api(self, record, node, role):
        cut = self.rng.uniform(1.0, 3 * self.lease)
        # The real server is behind a TCP proxy per node: its connections
        # refused (reset), or hung (packets vanish, as in a partition).
        mode = self.rng.choice(["refuse", "hang"]) \
            if self.control_plane is not None else "refuse"
        self._start(record, node, role, f"{mode} {cut:.1f}s"
                    if self.control_plane is not None else f"cut {cut:.1f}s")
        self.cluster.emulator.fault(node.token, mode)
        try:
            self._hold(cut)
        finally:
            node.restore_api()
            record.healed = time.monotonic()

    def _fault_cut_api_primary(self, record, primary, standbys):
        del standbys
        self._cut_api(record, primary, "primary")

    def _fault_cut_api_standby(self, record, primary, standbys):
        del primary
        self._cut_api(record, self.rng.choice(standbys), "standby")

    def _fault_api_slow(self, record, primary, standbys):
        del primary, standbys
        if self.control_plane is not None:
            # The proxy delays every chunk each way: a request on a kept
            # connection takes two delays, a new TLS connection four more.
            delay = self.rng.choice([100, 250, 500, 1000])
        else:
            delay = self.rng.choice([300, 800, 1500, 3000])
        length = self.rng.uniform(2.0, 2 * self.lease)
        self._start(record, None, None, f"{delay}ms for {length:.1f}s"
                    + (" a chunk" if self.control_plane is not None else ""))
        self.cluster.emulator.fault("*", "delay", delay_ms=delay,
                                    duration_ms=int(length * 1000))
        self._hold(length)
        record.healed = time.monotonic()

    def _fault_api_fail(self, record, primary, standbys):
        del primary, standbys
        status = self.rng.choice([500, 503])
        length = self.rng.uniform(1.0, 2 * self.lease)
        self._start(record, None, None, f"{status} for {length:.1f}s")
        self.cluster.emulator.fault("*", "status", status=status,
                                    duration_ms=int(length * 1000))
        self._hold(length)
        record.healed = time.monotonic()

    def _fault_lose_answers(self, record, primary, standbys):
        """The API server applies 1 to 3 of the primary's Lease writes
        (renewals, a publication) and the answers never come back (a
        connection reset on the way): to the agent they look failed, but
        the Lease has moved on to a version it has not seen, so its next
        renewal is a 409 and it must read the Lease back, find itself the
        holder and go on. No failover needed. (e6c6d1f was a defect of this
        read back that only failsafe mode, past the renew deadline, showed;
        tests/integration/test_failsafe.py writes the Lease during its API
        cut for that.)"""
        del standbys
        count = self.rng.randint(1, 3)
        self._start(record, primary, "primary",
                    f"{count} Lease write(s) applied, answer lost")
        self.cluster.emulator.fault(primary.token, "lose", count=count,
                                    verbs=["update"], resources=["leases"],
                                    duration_ms=int(2 * self.lease * 1000))
        self._hold(2 * self.lease)
        self.cluster.emulator.fault(primary.token, "ok")
        record.healed = time.monotonic()

    def _agentctl(self, record, node, *args, timeout=90):
        result = node.agentctl(*args, timeout=timeout)
        text = (result.stdout + result.stderr).strip().replace("\n", " | ")
        record.notes.append(f"agentctl {args[0]} exit {result.returncode}"
                            + (f": {text[:160]}" if text else ""))
        return result

    def _fault_switchover(self, record, primary, standbys):
        target = self.rng.choice(standbys + [None])
        self._start(record, primary, "primary",
                    f"--to {target.name}" if target else "(best standby)")
        args = ["switchover", "--wait", "--timeout", "30"]
        if target is not None:
            args += ["--to", target.name]
        result = self._agentctl(record, primary, *args)
        record.healed = time.monotonic()
        if result.returncode != 0:
            # Did the leader refuse it (and clear the request) or is it
            # still pending on the Lease, to be acted on later?
            lease = self.cluster.lease() or {}
            pending = (lease.get("annotations") or {}).get(
                SWITCHOVER_ANNOTATION)
            record.planned = {"op": "switchover", "exit": result.returncode,
                              "pending": pending, "sync": self._sync_set()}
            record.notes.append(
                f"request still on the Lease: {pending}" if pending else
                "request no longer on the Lease; no new primary "
                f"(published synchronous set: {record.planned['sync']})")

    def _fault_double_switchover(self, record, primary, standbys):
        """Two operators ask for different targets close together: the
        second is refused naming the first (exit 5), or runs after it."""
        first, second = self.rng.sample(standbys, 2)
        gap = self.rng.choice([0.2, 0.5, 0.8])
        self._start(record, primary, "primary",
                    f"--to {first.name}, {gap:g}s later --to {second.name}")
        box = {}

        def run_first():
            box["first"] = self._agentctl(record, primary, "switchover",
                                          "--to", first.name, "--wait",
                                          "--timeout", "30")
        thread = threading.Thread(target=run_first, daemon=True)
        thread.start()
        time.sleep(gap)  # the fault itself: the second request's delay
        second_result = self._agentctl(record, second, "switchover",
                                       "--to", second.name)
        thread.join(120)
        record.healed = time.monotonic()
        first_result = box.get("first")
        if second_result.returncode not in (0, 5):
            record.notes.append("the second request neither ran nor was "
                                "refused")
        if first_result is None or first_result.returncode != 0:
            record.planned = {"op": "switchover",
                              "exit": None if first_result is None
                              else first_result.returncode,
                              "pending": None, "sync": self._sync_set()}

    def _fault_pause_switchover(self, record, primary, standbys):
        """Pause stops automatic failover, not a planned one: the
        switchover completes while paused."""
        target = self.rng.choice(standbys)
        self._start(record, primary, "primary", f"paused, --to {target.name}")
        self._agentctl(record, primary, "pause")
        try:
            result = self._agentctl(record, primary, "switchover", "--to",
                                    target.name, "--wait", "--timeout", "30")
        finally:
            resumed = self._agentctl(record, target, "resume")
        record.healed = time.monotonic()
        # A resume that said "nothing to resume" from a stale copy of the
        # Lease once left the cluster paused for good (no failover after
        # the next fault): the Lease itself must say it is resumed.
        if self._annotation(PAUSED_ANNOTATION):
            record.planned = {"op": "resume", "exit": resumed.returncode,
                              "pending": f"{PAUSED_ANNOTATION} still set "
                                         "after agentctl resume",
                              "sync": self._sync_set()}
        elif result.returncode != 0:
            record.planned = {"op": "switchover", "exit": result.returncode,
                              "pending": None, "sync": self._sync_set()}

    def _annotation(self, key):
        try:
            lease = self.cluster.lease() or {}
        except (OSError, kubeemu.EmulatorError):
            return None
        return (lease.get("annotations") or {}).get(key)

    def _sync_set(self):
        return self._annotation(SYNC_ANNOTATION)

    def _fault_prestop_demote(self, record, primary, standbys):
        del standbys
        self._start(record, primary, "primary")
        result = self._agentctl(record, primary, "demote", "--wait",
                                "--timeout", "20")
        if result.returncode != 0:
            record.planned = {"op": "demote", "exit": result.returncode,
                              "sync": self._sync_set()}
        # Then the kubelet sends SIGTERM to the containers, and the
        # StatefulSet controller recreates the pod.
        for what, stop in (("agent", primary.stop_agent),
                           ("supervisor", primary.stop_supervisor)):
            status = stop()
            self.shutdown_statuses.append((primary.name, what, status))
            if status not in (0, None):
                record.notes.append(f"{what} exited {status} on SIGTERM")
        primary.kill_pod()          # anything left (backends, children)
        record.healed = time.monotonic()
        self._start_pod(primary)

    def _fault_reload(self, record, primary, standbys):
        """SIGHUP to a random agent: with its file unchanged, with a changed
        reloadable key (priority), or with an invalid file that must be
        refused, the running configuration kept (the file is restored
        after). For three ticks the agent must not fence, release or
        rejoin anything; what it logged is kept for check_reloads."""
        node = self.rng.choice([primary] + standbys)
        variant = self.rng.choice(sorted(RELOAD_EXPECT))
        detail = variant
        mark = len(node.agent_log())
        if variant == "changed":
            current = int(self.cluster.node_settings(node).get("priority", 100))
            priority = self.rng.choice([p for p in (50, 80, 120, 150)
                                        if p != current])
            node.write_conf({"priority": priority})
            detail += f" priority {priority}"
        elif variant == "invalid":
            with open(node.conf_path, encoding="utf-8") as handle:
                text = handle.read()
            node.write_conf(text=text + "retry_period = never\n")
        self._start(record, node, "primary" if node is primary else "standby",
                    detail)
        expect = RELOAD_EXPECT[variant]
        try:
            node.reload_agent()
            end = time.monotonic() + 10.0
            logged = False
            while not logged and time.monotonic() < end:
                logged = any(e.get("event") == "reload" and
                             expect in e.get("msg", "")
                             for e in node.agent_log()[mark:])
                if not logged:
                    self._hold(0.1)
        finally:
            if variant == "invalid":
                node.write_conf()
            record.healed = time.monotonic()
        self._hold(3 * cluster_mod._seconds(  # pylint: disable=protected-access
            self.cluster.settings["retry_period"]))
        alarms = [f"{e.get('event')}: {e.get('msg')}"
                  for e in node.agent_log()[mark:]
                  if e.get("event") in RELOAD_ALARMS
                  or "cannot start PostgreSQL" in e.get("msg", "")]
        record.reload = {"variant": variant, "logged": logged,
                         "alarms": alarms[:5]}
        if not logged:
            record.notes.append(f"no reload line with {expect!r}")
        record.notes.extend(f"after the reload: {a}" for a in alarms[:3])

    def _fault_restart_emulator(self, record, primary, standbys):
        del primary, standbys
        down = self.rng.uniform(0.0, self.lease)
        self._start(record, None, None, f"down {down:.1f}s")
        self.cluster.emulator.stop()
        self._hold(down)
        self.cluster.emulator.start()
        record.healed = time.monotonic()

    # -- faults of the real control plane (--kube real) --------------------

    def _api_returned(self, record):
        """Wait (bounded) until kube-apiserver answers again; the fault's
        bound on a healthy cluster starts then."""
        back = self.control_plane.wait_ready(self.rescue_bound)
        record.api_back = back if back is not None else time.monotonic()
        if back is None:
            record.notes.append("kube-apiserver not ready "
                                f"{self.rescue_bound:g}s after the heal")

    def _fault_sigstop_apiserver(self, record, primary, standbys):
        """kube-apiserver frozen for 0.5 to 3 lease durations: nobody can
        renew or take the Lease, so the primary must stop accepting
        writes by its renew deadline (checked: check_api_outage_writes)
        and nobody promotes; after SIGCONT, one primary again."""
        del primary, standbys
        frozen = self.rng.uniform(0.5, 3 * self.lease)
        self._start(record, None, None, f"frozen {frozen:.1f}s")
        self.control_plane.freeze("kube-apiserver")
        record.api_down = time.monotonic()
        try:
            self._hold(frozen)
        finally:
            self.control_plane.thaw("kube-apiserver")
            record.healed = time.monotonic()
        self._api_returned(record)

    def _restart_component(self, record, component):
        self._start(record, None, None, component)
        took = self.control_plane.restart(component)
        record.healed = time.monotonic()
        record.detail = f"{component} {took:.1f}s"
        self._api_returned(record)

    def _fault_restart_apiserver(self, record, primary, standbys):
        del primary, standbys
        self._restart_component(record, "kube-apiserver")

    def _fault_restart_etcd(self, record, primary, standbys):
        """etcd stopped (SIGTERM) and started again on its data: the
        server refuses writes meanwhile, then reconnects."""
        del primary, standbys
        self._restart_component(record, "etcd")

    def _fault_compact_etcd(self, record, primary, standbys):
        """etcd's history compacted to the current revision: a watch (or
        a list) resuming from an older resourceVersion gets 410 Gone and
        must start over; nothing else changes."""
        del primary, standbys
        self._start(record, None, None, "")
        revision = self.control_plane.compact()
        record.detail = f"at revision {revision}"
        record.healed = time.monotonic()

    def _fault_expire_token(self, record, primary, standbys):
        """A node's ServiceAccount token stops being valid (it was bound
        to a Secret that is deleted: as when a projected token expires
        unrotated, every request gets 401) for 1 s to 3 lease durations;
        then the kubelet's rotation gives it a fresh one."""
        node = self.rng.choice([primary] + standbys)
        kube = self.cluster.emulator
        held = self.rng.uniform(1.0, 3 * self.lease)
        ns = self.cluster.namespace
        anchor = f"anchor-{node.name}-{record.index}"
        self._start(record, node, "primary" if node is primary else "standby",
                    f"401 for {held:.1f}s")
        kube.admin.must("POST", f"/api/v1/namespaces/{ns}/secrets", {
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": anchor, "namespace": ns}})
        kube.hold_rotation(node.token, True)
        self._expired.add(node)
        kube.write_token(node.token, kube.request_token(
            node.name, bound_kind="Secret", bound_name=anchor))
        kube.admin.must("DELETE", f"/api/v1/namespaces/{ns}/secrets/{anchor}",
                        ok=(200,))
        self._hold(held)
        kube.hold_rotation(node.token, False)
        kube.rotate(node.token)
        self._expired.discard(node)
        record.healed = time.monotonic()

    def _fault_disk_full(self, record, primary, standbys):
        """A node's data volume full (a ballast file takes every free
        block) for 1 s to 3 lease durations: PostgreSQL cannot extend a
        table or create a WAL segment (the primary's writes fail, a
        standby's WAL receiver stops). Then the ballast is deleted."""
        node = self.rng.choice([primary] + standbys)
        held = self.rng.uniform(1.0, 3 * self.lease)
        self._start(record, node, "primary" if node is primary else "standby",
                    f"full {held:.1f}s")
        try:
            taken = self.volumes.fill(node)
            record.detail += f", {taken >> 20} MB"
            self._hold(held)
        finally:
            self.volumes.free(node)
            record.healed = time.monotonic()

    def _fault_clock_step(self, record, primary, standbys):
        """A node's wall clock stepped (as `date -s` or an NTP client's
        step does) forward by up to 10 minutes or back by up to 5, for
        1 s to 3 lease durations, then stepped back in line. The monotonic
        clock, on which the Lease's timing rests, does not move: nobody
        may fence, promote or lose a write for it. PostgreSQL's own
        timeouts read the wall clock: a replication connection may be
        dropped (wal_sender_timeout, wal_receiver_timeout) and must come
        back. A step back stays within the age of the API's certificates
        (made before the run): further back the node's TLS client would
        refuse them as not yet valid, which is cut_api's fault, not this
        one."""
        node = self.rng.choice([primary] + standbys)
        held = self.rng.uniform(1.0, 3 * self.lease)
        back_room = min(300.0, time.monotonic() - self.created - 5.0)
        if self.rng.random() < 0.5 or back_room < 1.0:
            step = self.rng.uniform(1.0, 600.0)
        else:
            step = -self.rng.uniform(1.0, back_room)
        marks = {n.name: len(n.agent_log()) for n in self.cluster.nodes}
        self._start(record, node, "primary" if node is primary else "standby",
                    f"{step:+.0f}s for {held:.1f}s")
        try:
            self.clocks.step(node, step)
            self._hold(held)
        finally:
            self.clocks.step(node, 0)
            record.healed = time.monotonic()
        # What a step could set off (a fence at the renew deadline, a
        # promotion once the Lease looks expired) shows within a lease
        # duration of the step back.
        self._hold(self.lease)
        alarms = [f"{n.name} {e.get('event')}: {e.get('msg')}"
                  for n in self.cluster.nodes
                  for e in n.agent_log()[marks[n.name]:]
                  if e.get("event") in RELOAD_ALARMS]
        record.clock = {"step": round(step, 1), "held": round(held, 1),
                        "alarms": alarms[:5]}
        record.notes.extend(f"after the clock step: {a}" for a in alarms[:3])
