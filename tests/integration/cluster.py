"""cluster: a local pglease cluster on loopback, for the integration tests of
failover and switchover, the resilience suite and scripts/demo.

    cluster = LocalCluster(workdir, binaries, reaper, n=3)
    cluster.start()                      # pg-0 bootstraps, the others clone
    primary = cluster.wait_healthy(60)   # one primary holding the lease,
                                         # every other node streaming from it
    primary.kill_pod()                   # kill -9 agent + supervisor + postgres
    ...
    cluster.stop()

With PGLEASE_KUBE=real in the environment the API is instead the real
kube-apiserver that scripts/k8s started (tests/k8s/realkube.py, same
interface): each cluster gets a namespace of its own with the chart's RBAC,
and each node a rotated ServiceAccount token and a TCP proxy to the server.

Each node is what a pod of the StatefulSet holds: `pglease-agent init` (the
init container), the `pglease-agent run-postgres` supervisor around the
postmaster (the postgres container) and the agent daemon (the sidecar), all
sharing the node's data/, run/ and sock/ directories. The Kubernetes API is
the emulator of tests/kube-emulator, with one token per node (user = node
name) and one Pod per node.

Run as a program, it keeps a cluster running in the background for
scripts/demo: `python3 cluster.py start|stop|status|kill-pod|start-pod
--dir DIR` (see cluster_daemon.py).
"""

import concurrent.futures
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("PGLEASE_SOURCE_DIR") or \
    os.path.dirname(os.path.dirname(HERE))
for _path in (HERE, os.path.join(SOURCE_DIR, "tests", "kube-emulator"),
              os.path.join(SOURCE_DIR, "tests", "k8s")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import psycopg2  # noqa: E402  pylint: disable=wrong-import-position

import kubeemu  # noqa: E402  pylint: disable=wrong-import-position
import pgharness  # noqa: E402  pylint: disable=wrong-import-position

__all__ = [
    "LocalCluster", "Node", "ClusterError", "AgentFeatureMissing",
    "SplitBrainChecker", "Writer", "WriterHistory", "missing_acknowledged",
    "DEFAULT_SETTINGS",
]

# Test-friendly timings (the daemon's defaults are 10s/7s/2s/10s/2s/10s);
# lease_duration > renew_deadline > 1.2 x retry_period holds.
DEFAULT_SETTINGS = {
    "lease_duration": "4s",
    "renew_deadline": "3s",
    "retry_period": "1s",
    "status_interval": "2s",
    "api_timeout": "1s",
    "primary_start_timeout": "5s",
}

ROLE_LABEL = "pglease.io/role"
CLUSTER_LABEL = "pglease.io/cluster"
WRITER_TABLE = "pglease_it_writes"
SECRET_NAMES = ("superuser", "replication", "rewind")


class ClusterError(AssertionError):
    """The cluster did not reach the state a step waited for."""


class AgentFeatureMissing(ClusterError):
    """The agent binary says it does not implement a step yet (`init`
    before it lands, `run-postgres` before the agent dispatches it, a
    daemon that never talks to the API). Tests may skip on it; anything
    else is a failure."""

    def __init__(self, feature, detail):
        super().__init__(f"pglease-agent {feature} is not available in this "
                         f"build yet: {detail}")
        self.feature = feature
        self.detail = detail


# --------------------------------------------------------------------------
# small helpers


def _wait(predicate, timeout, what, describe=None, interval=0.1):
    """Poll predicate() until truthy and return its value; on deadline raise
    ClusterError naming `what` plus describe() (the state it last saw).
    ClusterError raised by the predicate (a process died) passes through."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            state = ""
            if describe is not None:
                try:
                    state = "\n" + describe()
                except Exception as exc:  # pylint: disable=broad-except
                    state = f"\n(state unavailable: {exc!r})"
            raise ClusterError(f"timed out after {timeout:g}s waiting for "
                               f"{what}{state}")
        time.sleep(interval)


def _conf_value(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    if "'" in text or "\n" in text:
        raise ValueError(f"configuration value cannot hold quotes or "
                         f"newlines: {text!r}")
    if text == "" or any(c in text for c in " \t#=\"") or \
            text != text.strip():
        return f"'{text}'"
    return text


def _write_private(path, text, mode=0o600):
    """Write a file only the runner user can read."""
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode),
              "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(path, mode)
    pgharness.chown_to_runner(path)
    return path


def _descendants(roots):
    """`roots` and every live descendant of them."""
    table = pgharness._process_table()  # pylint: disable=protected-access
    found = {pid for pid in roots if pid in table}
    grew = True
    while grew:
        grew = False
        for pid, (_, ppid, _, _) in table.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return {pid for pid in found if table[pid][0] != "Z"}


def _signal_all(pids, sig):
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _log_tail(path, lines=30):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return "(no log)\n"


def _child_env():
    """The node processes must see no PGLEASE_<KEY> variable of ours (the
    agent reads them as configuration)."""
    return {key: None for key in os.environ if key.startswith("PGLEASE_")}


# --------------------------------------------------------------------------
# one node ("pod")


class Node:
    """One member: its directories, its processes and its Postgres."""

    def __init__(self, cluster, index, name, port):
        self.cluster = cluster
        self.index = index
        self.name = name
        self.port = port
        self.token = f"pglease-{name}-{secrets.token_hex(12)}"
        self.dir = os.path.join(cluster.workdir, name)
        self.data_dir = os.path.join(self.dir, "data")
        self.run_dir = os.path.join(self.dir, "run")
        self.sock_dir = os.path.join(self.dir, "sock")
        self.secrets_dir = os.path.join(self.dir, "secrets")
        self.conf_path = os.path.join(self.dir, "pglease.conf")
        self.kubeconfig_path = os.path.join(self.dir, "kubeconfig")
        self.init_log = os.path.join(self.dir, "init.log")
        self.supervisor_log = os.path.join(self.dir, "supervisor.log")
        self.agent_log_path = os.path.join(self.dir, "agent.log")
        self.agent_proc = None
        self.supervisor_proc = None
        # What should be running: a process that exits while wanted is an
        # error (check_processes); kill_pod() and stop_*() clear these.
        self.want_agent = False
        self.want_supervisor = False
        self._stopped = set()       # pids held by sigstop()
        # Variables for every process of this node only (the resilience
        # suite's clock_step fault preloads its clock there).
        self.extra_env = {}

    def __repr__(self):
        return f"Node({self.name!r}, port={self.port})"

    # -- files ---------------------------------------------------------------

    def setting(self, key):
        return self.cluster.node_settings(self)[key]

    def password(self, which="superuser"):
        """The password in secrets/<which> (superuser, replication,
        rewind): the same for every node, like one Secret mounted in every
        pod."""
        return self.cluster.passwords[which]

    def write_files(self):
        for path in (self.dir, self.run_dir, self.sock_dir):
            pgharness.make_dir(path, 0o755)
        pgharness.make_dir(self.secrets_dir, 0o700)
        for which in SECRET_NAMES:
            _write_private(os.path.join(self.secrets_dir, which),
                           self.cluster.passwords[which] + "\n")
        self.cluster.emulator.kubeconfig(self.kubeconfig_path, self.token,
                                         namespace=self.cluster.namespace)
        pgharness.chown_to_runner(self.kubeconfig_path)
        self.write_conf()

    def write_conf(self, changes=None, text=None):
        """Rewrite pglease.conf only: with `changes` (key -> value, kept
        for later rewrites, None removes a key's override), or with `text`
        as is (an invalid file for a reload test). Send SIGHUP with
        reload_agent() to apply it."""
        if text is None:
            per_node = self.cluster.per_node.setdefault(self.name, {})
            for key, value in (changes or {}).items():
                if value is None:
                    per_node.pop(key, None)
                else:
                    per_node[key] = value
            lines = [f"# {self.name} of the local cluster "
                     f"{self.cluster.cluster_name} (tests/integration/"
                     "cluster.py)"]
            for key, value in self.cluster.node_settings(self).items():
                lines.append(f"{key} = {_conf_value(value)}")
            text = "\n".join(lines) + "\n"
        _write_private(self.conf_path, text, 0o644)

    def reload_agent(self):
        """SIGHUP to the agent (configuration reload)."""
        if not self.agent_alive():
            raise ClusterError(f"{self.name}: no agent to reload")
        self.agent_proc.send_signal(signal.SIGHUP)

    # -- processes -----------------------------------------------------------

    def env(self):
        """The environment of this node's processes (see _child_env)."""
        return dict(_child_env(), **self.extra_env)

    def _agent_argv(self, *args):
        return [self.cluster.binaries.agent, "-c", self.conf_path, *args]

    def init(self, timeout=180):
        """`pglease-agent init`: bootstrap (first node) or clone. Raises
        AgentFeatureMissing while the build has no init, ClusterError on any
        other failure."""
        reaper = self.cluster.reaper
        try:
            result = reaper.run(self._agent_argv("init"), timeout=timeout,
                                check=False, cwd=self.dir, env=self.env())
        except subprocess.TimeoutExpired as exc:
            raise ClusterError(f"{self.name}: pglease-agent init did not "
                               f"finish within {timeout}s") from exc
        with open(self.init_log, "a", encoding="utf-8") as handle:
            handle.write(result.stdout + result.stderr)
        pgharness.chown_to_runner(self.init_log)
        if result.returncode == 0:
            return result
        if "not available in this build" in result.stderr:
            raise AgentFeatureMissing(
                "init", f"{self.name}: `pglease-agent init` exited "
                f"{result.returncode} ({result.stderr.strip()}); no data "
                "directory can be bootstrapped or cloned until it lands")
        raise ClusterError(f"{self.name}: pglease-agent init exited "
                           f"{result.returncode}; output:\n"
                           f"{_log_tail(self.init_log)}")

    def supervisor_argv(self):
        """The postgres container's command, as in the pod."""
        return [self.cluster.binaries.agent, "run-postgres", "--run-dir",
                self.run_dir, "--",
                os.path.join(self.cluster.pg_bindir, "postgres"),
                "-D", self.data_dir]

    def start_supervisor(self):
        if self.supervisor_alive():
            raise ClusterError(f"{self.name}: supervisor already running")
        self.cluster.probe_run_postgres()
        self.want_supervisor = True
        self.supervisor_proc = self.cluster.reaper.spawn(
            self.supervisor_argv(), logfile=self.supervisor_log, cwd=self.dir,
            env=self.env())
        return self.supervisor_proc

    def start_agent(self):
        if self.agent_alive():
            raise ClusterError(f"{self.name}: agent already running")
        self.want_agent = True
        self.agent_proc = self.cluster.reaper.spawn(
            self._agent_argv(), logfile=self.agent_log_path, cwd=self.dir,
            env=self.env())
        return self.agent_proc

    def start_pod(self, init=False):
        """Start the pod again on its existing data directory: supervisor
        and agent; with init=True `pglease-agent init` runs first, as the
        init container does whenever Kubernetes recreates a pod."""
        if init:
            self.init()
        self.start_supervisor()
        self.start_agent()
        return self

    def agent_alive(self):
        return self.agent_proc is not None and self.agent_proc.poll() is None

    def supervisor_alive(self):
        return self.supervisor_proc is not None and \
            self.supervisor_proc.poll() is None

    def check_processes(self):
        """Raise ClusterError if the agent or supervisor has exited while
        it should run (started, and not stopped or killed by us)."""
        for what, proc, wanted, log in (
                ("agent", self.agent_proc, self.want_agent,
                 self.agent_log_path),
                ("supervisor", self.supervisor_proc, self.want_supervisor,
                 self.supervisor_log)):
            if wanted and proc is not None and proc.poll() is not None:
                raise ClusterError(f"{self.name}: the {what} exited with "
                                   f"{proc.returncode}; log tail:\n"
                                   f"{_log_tail(log)}")

    def postmaster_pid(self):
        """The live postmaster's pid from postmaster.pid, else None."""
        try:
            with open(os.path.join(self.data_dir, "postmaster.pid"),
                      encoding="ascii") as handle:
                pid = int(handle.readline().strip())
        except (OSError, ValueError):
            return None
        if not pgharness.pid_alive(pid):
            return None
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if b"postgres" not in handle.read():
                    return None     # a stale file and a reused pid
        except OSError:
            return None
        return pid

    def pod_pids(self):
        """Every live process of the pod: agent, supervisor, postmaster and
        their descendants (backends, pg_rewind, pg_basebackup...)."""
        roots = set()
        for proc in (self.agent_proc, self.supervisor_proc):
            if proc is not None and proc.poll() is None:
                roots.add(proc.pid)
        pm_pid = self.postmaster_pid()
        if pm_pid:
            roots.add(pm_pid)
        return _descendants(roots)

    def kill_postmaster(self, timeout=10):
        """kill -9 the postmaster (from postmaster.pid); its backends die
        with it or are left for the supervisor, as after a real crash."""
        if not self.supervisor_alive():
            # Without its supervisor the postmaster may be gone already
            # (it dies with it, and the agent fences a primary left
            # without one): only its zombie may be left, for us (the
            # subreaper) to collect.
            pgharness.reap_adopted({p.pid for p in self.cluster.reaper.procs})
            pid = self.postmaster_pid()
            if pid is None:
                return None
        else:
            pid = _wait(self.postmaster_pid, timeout,
                        f"{self.name}: a running postmaster")
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _wait(lambda: not pgharness.pid_alive(pid), timeout,
              f"{self.name}: postmaster {pid} to die", interval=0.02)
        if not self.supervisor_alive():
            # Nobody else collects it: its zombie would keep the pid in
            # postmaster.pid alive and the next start would refuse it.
            pgharness.reap_adopted({p.pid for p in self.cluster.reaper.procs})
        return pid

    def kill_supervisor(self, timeout=10):
        """kill -9 the run-postgres supervisor only (the postgres container
        is gone and not restarted): its postmaster dies with it
        (PR_SET_PDEATHSIG, an immediate shutdown); its zombie is ours (the
        subreaper) and stays until something reaps it."""
        self.want_supervisor = False
        proc = self.supervisor_proc
        if proc is None or proc.poll() is not None:
            raise ClusterError(f"{self.name}: no supervisor to kill")
        _signal_all([proc.pid], signal.SIGKILL)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ClusterError(f"{self.name}: supervisor {proc.pid} survived "
                               f"SIGKILL for {timeout}s") from None
        return proc.pid

    def kill_pod(self, timeout=10):
        """kill -9 the whole pod: agent, supervisor, postgres and every
        descendant, and wait until they are gone."""
        self.want_agent = self.want_supervisor = False
        first = self.pod_pids()
        popens = {p.pid for p in self.cluster.reaper.procs}

        def sweep():
            pids = _descendants(first) | self.pod_pids()
            _signal_all(pids, signal.SIGKILL)
            for proc in (self.agent_proc, self.supervisor_proc):
                if proc is not None:
                    proc.poll()
            # The postmaster and backends of a killed supervisor are ours
            # (subreaper): until their zombies are collected, a new
            # postmaster sees the old pid and refuses the data directory.
            pgharness.reap_adopted(popens)
            table = pgharness._process_table()  # pylint: disable=protected-access
            return not pids and not any(pid in table for pid in first)

        _wait(sweep, timeout, f"{self.name}: the pod's processes to die",
              interval=0.02)
        self._stopped.clear()
        return sorted(first)

    def _stop_proc(self, proc, sig, timeout, what):
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        if proc.pid in self._stopped:
            _signal_all([proc.pid], signal.SIGCONT)
        proc.send_signal(sig)
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise ClusterError(f"{self.name}: the {what} did not exit within "
                               f"{timeout}s of {sig.name}; killed") from None

    def stop_agent(self, timeout=15, sig=signal.SIGTERM):
        """SIGTERM the agent and wait for it; returns its exit status."""
        self.want_agent = False
        return self._stop_proc(self.agent_proc, sig, timeout, "agent")

    def stop_supervisor(self, timeout=30, sig=signal.SIGTERM):
        """Stop the postgres container: the supervisor forwards the signal
        to the postmaster and exits when it is down."""
        self.want_supervisor = False
        return self._stop_proc(self.supervisor_proc, sig, timeout,
                               "supervisor")

    def sigstop(self, supervisor=True):
        """Freeze the pod: SIGSTOP agent, supervisor and the postgres tree
        (a stalled VM, not a crash). supervisor=False leaves the supervisor
        running (a frozen agent and Postgres under a live postgres
        container), so that its lease watchdog can act."""
        pids = self.pod_pids()
        if not supervisor:
            roots = {self.agent_proc.pid} if self.agent_alive() else set()
            pm_pid = self.postmaster_pid()
            if pm_pid:
                roots.add(pm_pid)
            pids = _descendants(roots)
        _signal_all(pids, signal.SIGSTOP)
        # A child forked while we listed is frozen by a second pass.
        late = _descendants(pids) - pids
        _signal_all(late, signal.SIGSTOP)
        pids |= late
        self._stopped |= pids
        return sorted(pids)

    def sigcont(self):
        pids = self._stopped | self.pod_pids()
        _signal_all(pids, signal.SIGCONT)
        self._stopped.clear()
        return sorted(pids)

    def cut_api(self):
        """The API server refuses this node's connections."""
        self.cluster.emulator.fault(self.token, "refuse")

    def restore_api(self):
        self.cluster.emulator.fault(self.token, "ok")

    # -- Postgres ------------------------------------------------------------

    def connect(self, connect_timeout=2, dbname=None):
        conn = psycopg2.connect(
            host="127.0.0.1", port=self.port,
            user=self.setting("superuser"), password=self.password(),
            dbname=dbname or self.setting("database"),
            connect_timeout=connect_timeout,
            application_name="pglease-tests",
            options="-c statement_timeout=5000")
        conn.autocommit = True
        return conn

    def sql(self, query, params=None, connect_timeout=2):
        """Run one statement over TCP as the superuser; return its rows."""
        conn = self.connect(connect_timeout)
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def _try_sql(self, query):
        try:
            return self.sql(query)
        except psycopg2.Error:
            return None

    def is_running(self):
        return self.postmaster_pid() is not None

    def is_primary(self):
        """Accepts connections and is not in recovery."""
        rows = self._try_sql("SELECT NOT pg_is_in_recovery()")
        return bool(rows and rows[0][0])

    def is_standby(self):
        rows = self._try_sql("SELECT pg_is_in_recovery()")
        return bool(rows and rows[0][0])

    def wal_receiver(self):
        """(status, sender_port, received_tli) or None."""
        rows = self._try_sql("SELECT status, sender_port, received_tli "
                             "FROM pg_stat_wal_receiver")
        return rows[0] if rows else None

    def is_streaming_from(self, other):
        receiver = self.wal_receiver()
        return bool(receiver and receiver[0] == "streaming"
                    and receiver[1] == other.port)

    def timeline(self):
        """The timeline this server is on: a primary's from its current WAL
        file (pg_control_checkpoint() lags until the next checkpoint), a
        standby's from what it receives, else its last checkpoint's."""
        rows = self.sql(
            "SELECT CASE WHEN pg_is_in_recovery() THEN "
            "(SELECT received_tli FROM pg_stat_wal_receiver "
            "WHERE received_tli > 0) ELSE ('x' || substr(pg_walfile_name("
            "pg_current_wal_lsn()), 1, 8))::bit(32)::int END, "
            "(SELECT timeline_id FROM pg_control_checkpoint())")
        return rows[0][0] or rows[0][1]

    def role(self):
        """'primary', 'replica' or 'down' as Postgres says."""
        rows = self._try_sql("SELECT pg_is_in_recovery()")
        if not rows:
            return "down"
        return "replica" if rows[0][0] else "primary"

    # -- agent ---------------------------------------------------------------

    def agent_log(self):
        """The agent's log as parsed JSON lines (lines that are not JSON,
        e.g. from a crash, come back as {"raw": line})."""
        entries = []
        try:
            with open(self.agent_log_path, encoding="utf-8",
                      errors="replace") as handle:
                for line in handle:
                    line = line.strip()
                    if not line:
                        continue
                    try:
                        entries.append(json.loads(line))
                    except ValueError:
                        entries.append({"raw": line})
        except FileNotFoundError:
            pass
        return entries

    def agentctl(self, *args, timeout=30, check=False):
        """Run agentctl for this node (`-c pglease.conf` first); returns the
        CompletedProcess (text)."""
        return self.cluster.reaper.run(
            [self.cluster.binaries.agentctl, "-c", self.conf_path, *args],
            timeout=timeout, check=check, cwd=self.dir, env=self.env())

    def pod(self):
        return self.cluster.pods().get(self.name)

    def member_status(self):
        """The agent's member record (the pglease.io/status annotation of
        its Pod) as a dict, or {} while there is none."""
        pod = self.pod() or {}
        text = pod.get("metadata", {}).get("annotations", {}).get(
            "pglease.io/status")
        try:
            return json.loads(text) if text else {}
        except ValueError:
            return {}

    def agent_state(self):
        """The agent's own state (starting, replica, candidate, primary,
        fenced...) from its last `state` event since it last started, or
        None before it started."""
        state = None
        for entry in self.agent_log():
            event = entry.get("event")
            if event == "start":
                state = "starting"
            elif event == "state" and "->" in entry.get("msg", ""):
                state = entry["msg"].rsplit("->", 1)[1].strip()
        return state

    def role_label(self):
        pod = self.pod() or {}
        return pod.get("metadata", {}).get("labels", {}).get(ROLE_LABEL)

    def logs(self, lines=20):
        """Tails of this node's logs, for failure messages."""
        out = []
        for path in (self.init_log, self.supervisor_log, self.agent_log_path):
            if os.path.exists(path):
                out.append(f"--- {path}\n{_log_tail(path, lines)}")
        return "".join(out)


# --------------------------------------------------------------------------
# the cluster


class LocalCluster:
    """n nodes pg-0..pg-(n-1) and the emulator, under `workdir`."""

    def __init__(self, workdir, binaries, reaper, n=3, cluster_name="pg",
                 namespace="default", settings=None, tls=True,
                 node_settings=None, pg_bindir=None, kube_options=None):
        self.workdir = str(workdir)
        self.real_kube = os.environ.get("PGLEASE_KUBE") == "real"
        self.kube_options = dict(kube_options or {})
        if self.real_kube and namespace == "default":
            # The real server outlives the test: a namespace of its own
            # keeps one cluster's Lease and Pods from the next one's.
            namespace = f"pgl-{secrets.token_hex(4)}"
        self.binaries = binaries if not isinstance(binaries, dict) \
            else types.SimpleNamespace(**binaries)
        self.reaper = reaper
        self.cluster_name = cluster_name
        self.namespace = namespace
        self.settings = dict(DEFAULT_SETTINGS, **(settings or {}))
        self.per_node = {k: dict(v) for k, v in (node_settings or {}).items()}
        self.tls = tls
        self.pg_bindir = pg_bindir or pgharness.pg_bindir()
        self.passwords = {which: secrets.token_urlsafe(18)
                          for which in SECRET_NAMES}
        self.emulator = None
        self._run_postgres_ok = False
        self._set_up = False
        ports = set()
        while len(ports) < n:
            ports.add(pgharness.free_port())
        self.nodes = [Node(self, i, f"{cluster_name}-{i}", port)
                      for i, port in enumerate(sorted(ports))]

    def __repr__(self):
        return f"LocalCluster({self.cluster_name!r}, {self.workdir!r})"

    def __iter__(self):
        return iter(self.nodes)

    def node(self, name):
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    __getitem__ = node

    @property
    def lease_name(self):
        return f"{self.cluster_name}-leader"

    def node_settings(self, node):
        """The configuration file of `node` as a dict."""
        out = {
            "cluster_name": self.cluster_name,
            "node_name": node.name,
            "namespace": self.namespace,
            "kube_config": node.kubeconfig_path,
            "data_dir": node.data_dir,
            "pg_bindir": self.pg_bindir,
            "pg_port": node.port,
            "listen_addresses": "127.0.0.1",
            "connect_address": "127.0.0.1",
            "socket_dir": node.sock_dir,
            "run_dir": node.run_dir,
            "pgctl": "supervisor",
            "hba_networks": "127.0.0.1/32",
            "superuser": "postgres",
            "database": "postgres",
            "superuser_password_file":
                os.path.join(node.secrets_dir, "superuser"),
            "replication_password_file":
                os.path.join(node.secrets_dir, "replication"),
            "rewind_password_file": os.path.join(node.secrets_dir, "rewind"),
            "log_format": "json",
        }
        out.update(self.settings)
        out.update(self.per_node.get(node.name, {}))
        return out

    # -- lifecycle -----------------------------------------------------------

    def setup(self):
        """Start the emulator, register tokens and Pods, write every node's
        files. start() calls it; idempotent."""
        if self._set_up:
            return self
        pgharness.make_dir(self.workdir)
        if self.real_kube:
            import realkube  # pylint: disable=import-outside-toplevel
            self.emulator = realkube.RealKube(
                os.path.join(self.workdir, "kube"), namespace=self.namespace,
                cluster_name=self.cluster_name, **self.kube_options)
        else:
            self.emulator = kubeemu.Emulator(
                os.path.join(self.workdir, "kube"), tls=self.tls)
        self.emulator.start()
        for node in self.nodes:
            self.emulator.add_token(node.token, node.name)
            self.emulator.create_pod(
                self.namespace, node.name,
                labels={"app": "postgres", CLUSTER_LABEL: self.cluster_name},
                ip="127.0.0.1")
            node.write_files()
        self._set_up = True
        return self

    def probe_run_postgres(self):
        """AgentFeatureMissing unless the agent has its run-postgres mode."""
        if self._run_postgres_ok:
            return
        result = self.reaper.run([self.binaries.agent, "run-postgres",
                                  "--help"], timeout=30, check=False,
                                 env=_child_env())
        if result.returncode != 0:
            raise AgentFeatureMissing(
                "run-postgres", f"`pglease-agent run-postgres --help` exited "
                f"{result.returncode}: {result.stderr.strip()}")
        self._run_postgres_ok = True

    def check_processes(self):
        for node in self.nodes:
            node.check_processes()

    def start(self, timeout=120):
        """Bootstrap the first node until it holds the lease and accepts
        writes, then init and start the others in parallel, and wait until
        the cluster is healthy. Returns the primary."""
        deadline = time.monotonic() + timeout
        self.setup()
        first, rest = self.nodes[0], self.nodes[1:]
        first.init(timeout=max(30, deadline - time.monotonic()))
        first.start_supervisor()
        first.start_agent()
        self._wait_first_primary(first, deadline)
        if rest:
            with concurrent.futures.ThreadPoolExecutor(len(rest)) as pool:
                futures = [pool.submit(node.init, max(30, deadline
                                                      - time.monotonic()))
                           for node in rest]
                for future in futures:
                    future.result()
            for node in rest:
                node.start_supervisor()
                node.start_agent()
        return self.wait_healthy(max(10, deadline - time.monotonic()))

    def _api_requests(self, node):
        stats = self.emulator.stats().get("tokens", {})
        return stats.get(node.token, {}).get("total", 0)

    def _wait_first_primary(self, node, deadline):
        started = time.monotonic()
        quiet_limit = max(5.0, 3 * _seconds(self.settings["retry_period"]))

        def ready():
            self.check_processes()
            if time.monotonic() - started > quiet_limit and \
                    self._api_requests(node) == 0:
                raise AgentFeatureMissing(
                    "control loop", f"the agent of {node.name} made no "
                    f"Kubernetes API request in {quiet_limit:g}s")
            return self.lease_holder() == node.name and node.is_primary()

        _wait(ready, max(1, deadline - time.monotonic()),
              f"{node.name} to hold the lease and accept writes",
              describe=self.describe)

    def stop(self, timeout=30):
        """SIGTERM the agents, then the supervisors (with deadlines), stop
        the emulator, and kill whatever is left. Raises ClusterError after
        cleaning up if something had to be killed."""
        errors = []
        for node in self.nodes:
            node.sigcont()

        def stop_all(method):
            with concurrent.futures.ThreadPoolExecutor(
                    max(1, len(self.nodes))) as pool:
                for future in [pool.submit(method, node)
                               for node in self.nodes]:
                    try:
                        future.result()
                    except ClusterError as exc:
                        errors.append(str(exc))

        stop_all(lambda node: node.stop_agent(timeout=timeout))
        stop_all(lambda node: node.stop_supervisor(timeout=timeout))
        if self.emulator is not None:
            self.emulator.stop()
        for node in self.nodes:
            node.kill_pod()
        self.reaper.kill_all()
        if errors:
            raise ClusterError("; ".join(errors))

    # -- the API -------------------------------------------------------------

    def lease(self):
        """The Lease as the admin sees it: holderIdentity, leaseTransitions,
        annotations, resourceVersion, spec (None if there is no Lease)."""
        obj = self.emulator.get_lease(self.namespace, self.lease_name)
        if obj is None:
            return None
        spec = obj.get("spec", {})
        meta = obj.get("metadata", {})
        return {"holderIdentity": spec.get("holderIdentity") or "",
                "leaseTransitions": spec.get("leaseTransitions", 0),
                "annotations": meta.get("annotations") or {},
                "resourceVersion": meta.get("resourceVersion"),
                "spec": spec}

    def wait_failsafe_armed(self, timeout=30):
        """Failsafe mode: wait until the holder publishes every member on
        the Lease as one it asks (pglease.io/failsafe) and has renewed once
        more since. Before that an API outage fences it, as it should: a
        test that cuts the API seconds after the cluster came up tests
        nothing of failsafe mode (k8s_real_failsafe did, now and then)."""
        names = {node.name for node in self.nodes}

        def published():
            lease = self.lease()
            if not lease:
                return None
            listed = lease["annotations"].get("pglease.io/failsafe", "")
            if names <= {n for n in listed.split(",") if n}:
                return lease["resourceVersion"]
            return None

        version = _wait(published, timeout, "the Lease to name every "
                        "member as one failsafe mode asks",
                        describe=self.describe)
        _wait(lambda: (self.lease() or {}).get("resourceVersion") != version,
              timeout, "a renewal after that", describe=self.describe)

    def lease_holder(self):
        lease = self.lease()
        return lease["holderIdentity"] if lease else ""

    def pods(self):
        """name -> Pod object for this cluster's pods."""
        status, body = self.emulator.get(
            self.emulator.pod_path(self.namespace)
            + f"?labelSelector={CLUSTER_LABEL}%3D{self.cluster_name}")
        if status != 200:
            raise ClusterError(f"list pods: {status} {body}")
        return {p["metadata"]["name"]: p for p in body.get("items", [])}

    # -- what Postgres says --------------------------------------------------

    def primaries(self):
        return [node for node in self.nodes if node.is_primary()]

    def primary(self):
        """The node whose Postgres accepts writes, or None; asserts that
        there is at most one."""
        found = self.primaries()
        if len(found) > 1:
            raise ClusterError("split brain: more than one primary: "
                               + ", ".join(n.name for n in found))
        return found[0] if found else None

    def describe(self):
        """One line per node and the lease, for failure messages."""
        lines = []
        try:
            lease = self.lease()
            lines.append(f"lease {self.lease_name}: " + (
                f"holder={lease['holderIdentity'] or '-'} "
                f"transitions={lease['leaseTransitions']}"
                if lease else "none"))
        except (OSError, kubeemu.EmulatorError) as exc:
            lines.append(f"lease: unreadable ({exc})")
        try:
            labels = {name: pod["metadata"].get("labels", {}).get(ROLE_LABEL)
                      for name, pod in self.pods().items()}
        except (OSError, ClusterError, kubeemu.EmulatorError):
            labels = {}
        for node in self.nodes:
            role = node.role()
            detail = ""
            if role == "replica":
                receiver = node.wal_receiver()
                detail = f" receiver={receiver[0]}:{receiver[1]}" \
                    if receiver else " receiver=none"
            procs = ",".join(what for what, alive in (
                ("agent", node.agent_alive()),
                ("supervisor", node.supervisor_alive()),
                ("postmaster", node.is_running())) if alive) or "nothing"
            lines.append(f"{node.name} port={node.port} postgres={role}"
                         f"{detail} label={labels.get(node.name)} "
                         f"running={procs}")
        return "\n".join(lines)

    def healthy(self, exclude=()):
        """The primary if exactly one node is primary, holds the lease, and
        every other node (not in `exclude`) streams from it on its
        timeline; else None."""
        nodes = [n for n in self.nodes if n.name not in set(exclude)]
        primaries = [n for n in nodes if n.is_primary()]
        if len(primaries) != 1:
            return None
        primary = primaries[0]
        if self.lease_holder() != primary.name:
            return None
        try:
            timeline = primary.timeline()
        except psycopg2.Error:
            return None
        for node in nodes:
            if node is primary:
                continue
            if not node.is_streaming_from(primary):
                return None
            try:
                if node.timeline() != timeline:
                    return None
            except psycopg2.Error:
                return None
        return primary

    def wait_healthy(self, timeout=60, exclude=()):
        """Wait for healthy(); returns the primary."""
        def ready():
            self.check_processes()
            return self.healthy(exclude)

        return _wait(ready, timeout,
                     "one primary holding the lease, all others streaming "
                     "from it", describe=self.describe, interval=0.2)

    def wait_primary(self, timeout=60, other_than=None):
        """Wait until some node (not `other_than`) is primary and holds the
        lease; returns it."""
        def ready():
            primary = self.primary()
            if primary is None or primary.name == other_than:
                return None
            return primary if self.lease_holder() == primary.name else None

        return _wait(ready, timeout, "a primary holding the lease"
                     + (f" other than {other_than}" if other_than else ""),
                     describe=self.describe, interval=0.1)

    # -- background checkers -------------------------------------------------

    def split_brain_checker(self, interval=0.1):
        """A started SplitBrainChecker; .stop() returns the violations."""
        return SplitBrainChecker(self, interval).start()

    def writer(self, interval=0.02):
        """A started Writer; .stop() returns its WriterHistory."""
        return Writer(self, interval).start()


def _seconds(duration):
    """'4s', '500ms', '2min', 3 -> seconds (float)."""
    if isinstance(duration, (int, float)):
        return float(duration)
    text = str(duration).strip()
    for suffix, factor in (("ms", 0.001), ("min", 60.0), ("s", 1.0),
                           ("h", 3600.0)):
        if text.endswith(suffix):
            return float(text[:-len(suffix)]) * factor
    return float(text)


# --------------------------------------------------------------------------
# split-brain checker


class SplitBrainChecker:
    """Every `interval`, asks every node at the same moment (one thread per
    node) `SELECT NOT pg_is_in_recovery()` and records each round in which
    two servers answered true. Answers slower than `max_sample` (a frozen
    server) say nothing about that moment and are not counted; a node still
    busy with an earlier question sits the round out."""

    def __init__(self, cluster, interval=0.1, max_sample=0.5):
        self.cluster = cluster
        self.interval = interval
        self.max_sample = max_sample
        self.violations = []
        self.rounds = 0
        self._conns = {}
        self._pools = {node.name: concurrent.futures.ThreadPoolExecutor(
            1, thread_name_prefix=f"split-brain-{node.name}")
            for node in cluster.nodes}
        self._busy = {}
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="split-brain",
                                        daemon=True)
        self._thread.start()
        return self

    def _ask(self, node):
        """Runs on the node's own thread: (began, ended, writable)."""
        began = time.monotonic()
        writable = False
        conn = self._conns.get(node.name)
        try:
            if conn is None:
                conn = self._conns[node.name] = node.connect(
                    connect_timeout=1)
            with conn.cursor() as cur:
                cur.execute("SELECT NOT pg_is_in_recovery()")
                writable = bool(cur.fetchone()[0])
        except (psycopg2.Error, OSError):
            if self._conns.pop(node.name, None) is not None:
                conn.close()
        return began, time.monotonic(), writable

    def _run(self):
        while not self._stop.is_set():
            began = time.monotonic()
            asked = {}
            for node in self.cluster.nodes:
                busy = self._busy.get(node.name)
                if busy is not None and not busy.done():
                    continue
                try:
                    asked[node.name] = self._busy[node.name] = \
                        self._pools[node.name].submit(self._ask, node)
                except RuntimeError:    # the interpreter is exiting
                    return
            concurrent.futures.wait(list(asked.values()),
                                    timeout=self.max_sample)
            writable = []
            for name, future in asked.items():
                if not future.done():
                    continue
                q_began, q_ended, is_writable = future.result()
                if is_writable and q_ended - q_began <= self.max_sample:
                    writable.append(name)
            self.rounds += 1
            if len(writable) > 1:
                self.violations.append({"at": time.time(),
                                        "nodes": sorted(writable)})
            self._stop.wait(max(0.0, began + self.interval
                                - time.monotonic()))

    def stop(self, timeout=5):
        """Stop polling; returns the list of violations (empty is good),
        each {"at": epoch seconds, "nodes": [names]}. A question stuck on a
        frozen server is abandoned (it ends when the server dies)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        for pool in self._pools.values():
            pool.shutdown(wait=False, cancel_futures=True)
        for name, conn in list(self._conns.items()):
            busy = self._busy.get(name)
            if busy is None or busy.done():
                conn.close()
        return list(self.violations)


# --------------------------------------------------------------------------
# writer


class WriterHistory:
    """What a Writer saw: `acknowledged` (list of (id, node name, port)
    whose INSERT returned success), `ack_times` (the time.monotonic() of
    each acknowledgement, in the same order), `unknown` ids (the connection
    broke while the commit was in flight), `errors` (count of failed
    attempts)."""

    def __init__(self):
        self.acknowledged = []
        self.ack_times = []
        self.unknown = []
        self.errors = 0
        self.last_error = None
        self.crashed = None         # the writer's own bug, if it died

    def __iter__(self):
        return iter(self.acknowledged)

    def __len__(self):
        return len(self.acknowledged)

    def ids(self):
        return [entry[0] for entry in self.acknowledged]

    def by_node(self):
        out = {}
        for _, name, _ in self.acknowledged:
            out[name] = out.get(name, 0) + 1
        return out

    def first_ack(self, after, node=None, other_than=None):
        """(monotonic time, node name) of the first acknowledgement at or
        after `after` by `node` (any if None) and not by `other_than`, or
        None."""
        for (_, name, _), at in zip(list(self.acknowledged),
                                    list(self.ack_times)):
            if at < after or name == other_than or \
                    (node is not None and name != node):
                continue
            return at, name
        return None

    def acks_after_handover(self, since=0.0):
        """Acknowledgements (id, node name) from a node after another node
        had acknowledged a later write, from `since` on: proof that an old
        primary still accepted writes after a new one did (safety rule 1).
        A single writer's acknowledgements are ordered in time, so any
        return to a node it had left counts."""
        out = []
        left = set()
        current = None
        for (row_id, name, _), at in zip(list(self.acknowledged),
                                         list(self.ack_times)):
            if at < since:
                continue
            if name != current:
                if current is not None:
                    left.add(current)
                current = name
            if name in left:
                out.append((row_id, name))
        return out


class Writer:
    """Writes unique rows (id, port of the server that accepted it) through
    whichever node the lease names as holder, re-resolving after every
    error. The table is created on the current primary at start.

    Like an application with a client-side timeout, it gives up on a
    statement that has not answered within `statement_timeout` seconds (a
    frozen server answers nothing, and its own statement_timeout never
    fires): the socket is shut down and the row counts as unknown."""

    def __init__(self, cluster, interval=0.02, table=WRITER_TABLE,
                 statement_timeout=2.0):
        self.cluster = cluster
        self.interval = interval
        self.table = table
        self.statement_timeout = statement_timeout
        self.history = WriterHistory()
        self._next_id = 1
        self._stop = threading.Event()
        self._thread = None
        self._watchdog = None
        self._lock = threading.Lock()
        self._in_flight = None      # (connection, started) of a statement

    def start(self, timeout=30):
        primary = self.cluster.wait_primary(timeout)
        primary.sql(f"CREATE TABLE IF NOT EXISTS {self.table} ("
                    "id bigint PRIMARY KEY, "
                    "port int NOT NULL DEFAULT inet_server_port(), "
                    "at timestamptz NOT NULL DEFAULT clock_timestamp())")
        self._thread = threading.Thread(target=self._run, name="writer",
                                        daemon=True)
        self._thread.start()
        self._watchdog = threading.Thread(target=self._watch,
                                          name="writer-watchdog", daemon=True)
        self._watchdog.start()
        return self

    def _watch(self):
        """Shut down the socket of a statement older than the timeout."""
        while not self._stop.wait(0.1):
            with self._lock:
                in_flight = self._in_flight
                if in_flight is None or time.monotonic() - in_flight[1] < \
                        self.statement_timeout:
                    continue
                self._in_flight = None
                try:
                    sock = socket.socket(fileno=os.dup(in_flight[0].fileno()))
                except (OSError, psycopg2.Error):
                    continue
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                finally:
                    sock.close()

    def _target(self):
        try:
            holder = self.cluster.lease_holder()
        except (OSError, kubeemu.EmulatorError):
            return None
        try:
            return self.cluster.node(holder) if holder else None
        except KeyError:
            return None

    def _run(self):
        try:
            self._loop()
        except Exception as exc:  # pylint: disable=broad-except
            self.history.crashed = repr(exc)
            raise

    def _loop(self):
        conn = node = None
        while not self._stop.is_set():
            if conn is None:
                node = self._target()
                if node is None:
                    self._stop.wait(0.05)
                    continue
                try:
                    conn = node.connect(connect_timeout=1)
                except psycopg2.Error as exc:
                    self._failed(exc)
                    conn = None
                    continue
            row_id = self._next_id
            self._next_id += 1
            try:
                with self._lock:
                    self._in_flight = (conn, time.monotonic())
                try:
                    with conn.cursor() as cur:
                        cur.execute(f"INSERT INTO {self.table} (id) "
                                    "VALUES (%s) RETURNING port", (row_id,))
                        port = cur.fetchone()[0]
                finally:
                    with self._lock:
                        self._in_flight = None
                self.history.ack_times.append(time.monotonic())
                self.history.acknowledged.append((row_id, node.name, port))
            except psycopg2.Error as exc:
                # A broken connection leaves the commit's fate unknown; an
                # error the server reported means it did not commit.
                if isinstance(exc, (psycopg2.OperationalError,
                                    psycopg2.InterfaceError)):
                    self.history.unknown.append(row_id)
                self._failed(exc)
                try:
                    conn.close()
                except psycopg2.Error:
                    pass
                conn = None
                continue
            self._stop.wait(self.interval)
        if conn is not None:
            conn.close()

    def _failed(self, exc):
        self.history.errors += 1
        self.history.last_error = str(exc).strip()
        self._stop.wait(0.05)

    def stop(self, timeout=10):
        """Stop writing; returns the WriterHistory."""
        self._stop.set()
        for thread in (self._thread, self._watchdog):
            if thread is not None:
                thread.join(timeout)
        return self.history


def missing_acknowledged(history, node, table=WRITER_TABLE):
    """Acknowledged ids (from a WriterHistory or a list of (id, ...)) that
    `node`'s table does not hold."""
    acknowledged = getattr(history, "acknowledged", history)
    present = {row[0] for row in node.sql(f"SELECT id FROM {table}")}
    return sorted(entry[0] for entry in acknowledged
                  if entry[0] not in present)


if __name__ == "__main__":
    # `cluster.py start|stop|status ... --dir DIR`: see cluster_daemon.py.
    import cluster_daemon  # pylint: disable=import-outside-toplevel
    sys.exit(cluster_daemon.main())
