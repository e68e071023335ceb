"""cluster_daemon: a LocalCluster kept running in the background, for
scripts/demo (and for poking at a cluster by hand).

    python3 cluster_daemon.py start --dir DIR [--build-dir B] [--nodes 3]
    python3 cluster_daemon.py status|stop --dir DIR
    python3 cluster_daemon.py ctl --dir DIR [NODE] ARGS...
    python3 cluster_daemon.py kill-pod|start-pod|kill-postmaster|stop-agent \
        --dir DIR NODE

`start` detaches a keeper process that owns the emulator and every node
process (their parent and subreaper), writes DIR/state.json and serves
commands on DIR/keeper.sock until `stop`. If the keeper is gone, `stop`
kills what state.json recorded. tests/integration/cluster.py runs this
module when run as a program.
"""

import argparse
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import types

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import psycopg2  # noqa: E402  pylint: disable=wrong-import-position

from cluster import (  # noqa: E402  pylint: disable=wrong-import-position
    LocalCluster, Node, ClusterError, ROLE_LABEL, SOURCE_DIR, _wait,
    _descendants, _signal_all, _seconds)
import kubeemu  # noqa: E402  pylint: disable=wrong-import-position
import pgharness  # noqa: E402  pylint: disable=wrong-import-position


STATE_FILE = "state.json"
KEEPER_PID = "keeper.pid"
KEEPER_SOCK = "keeper.sock"
KEEPER_LOG = "keeper.log"
KEEPER_LOCK = "keeper.lock"
STATUS_ANNOTATION = "pglease.io/status"


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return None


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(obj, handle, indent=1, sort_keys=True)
    os.replace(tmp, path)


def _start_time(pid):
    """The process's start time in clock ticks since boot (tells a live
    keeper from a reused pid), or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii",
                  errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def keeper_pid(state_dir):
    """The running keeper's pid, else None."""
    try:
        with open(os.path.join(state_dir, KEEPER_PID),
                  encoding="ascii") as handle:
            pid, started = handle.read().split()
            pid = int(pid)
    except (OSError, ValueError):
        return None
    if not pgharness.pid_alive(pid) or _start_time(pid) != started:
        return None
    return pid


def default_data_dir(state_dir):
    """Where the demo's nodes live: <state_dir>/cluster when the runner user
    can reach it and its socket paths stay short, else a directory under
    /tmp of this user and this state directory (a demo in another checkout,
    or test_demo's, has its own)."""
    state_dir = os.path.abspath(state_dir)
    candidate = os.path.join(state_dir, "cluster")
    sock = os.path.join(candidate, "pg-0", "sock", ".s.PGSQL.65535")
    if len(sock) < 100 and pgharness.runner_can_access(state_dir, "x"):
        return candidate
    tag = hashlib.sha256(state_dir.encode()).hexdigest()[:8]
    return os.path.join(os.environ.get("PGLEASE_TMPDIR", "/tmp"),
                        f"pglease-demo-{os.geteuid()}-{tag}")


def stage_binaries(build_dir, stage_dir):
    """The built programs, copied to `stage_dir` if the runner user cannot
    execute them where they are."""
    out = {}
    for key, name in (("agent", "pglease-agent"), ("agentctl", "agentctl")):
        path = os.path.join(os.path.abspath(build_dir), "agent", name)
        if not os.access(path, os.X_OK):
            raise ClusterError(f"not built: {path}")
        if not pgharness.runner_can_access(path, "x"):
            pgharness.make_dir(stage_dir)
            target = os.path.join(stage_dir, name)
            shutil.copy2(path, target)
            os.chmod(target, 0o755)
            path = target
        out[key] = path
    return types.SimpleNamespace(**out)


def node_state(cluster):
    """What status prints and what stop needs if the keeper is gone."""
    nodes = []
    for node in cluster.nodes:
        nodes.append({
            "name": node.name, "port": node.port, "dir": node.dir,
            "conf": node.conf_path,
            "agent_pid": node.agent_proc.pid if node.agent_alive() else None,
            "supervisor_pid": node.supervisor_proc.pid
            if node.supervisor_alive() else None,
            "postmaster_pid": node.postmaster_pid()})
    try:
        primary = cluster.lease_holder() if cluster.emulator else None
    except (OSError, kubeemu.EmulatorError):
        primary = None
    return {"cluster": cluster.cluster_name, "data_dir": cluster.workdir,
            "primary": primary,
            "emulator_url": cluster.emulator.url if cluster.emulator else None,
            "emulator_pid": cluster.emulator.proc.pid
            if cluster.emulator and cluster.emulator.proc else None,
            "agentctl": cluster.binaries.agentctl, "nodes": nodes}


def status_report(cluster):
    """A table of the cluster: the lease and each node's role."""
    lease = cluster.lease()
    labels = {}
    try:
        labels = {name: pod["metadata"].get("labels", {}).get(ROLE_LABEL)
                  for name, pod in cluster.pods().items()}
    except (OSError, ClusterError, kubeemu.EmulatorError):
        pass
    lines = [f"lease {cluster.lease_name}: holder "
             f"{(lease or {}).get('holderIdentity') or '(none)'}, "
             f"{(lease or {}).get('leaseTransitions', 0)} transitions",
             f"{'NAME':<8} {'PORT':>5}  {'POSTGRES':<8} {'TIMELINE':>8}  "
             f"{'STREAMS FROM':<12} {'POD LABEL':<9} PROCESSES"]
    by_port = {n.port: n.name for n in cluster.nodes}
    for node in cluster.nodes:
        role = node.role()
        timeline, upstream = "", ""
        if role != "down":
            try:
                timeline = str(node.timeline())
            except psycopg2.Error:
                timeline = "?"
        if role == "replica":
            receiver = node.wal_receiver()
            upstream = by_port.get(receiver[1], str(receiver[1])) \
                if receiver and receiver[0] == "streaming" else "(none)"
        procs = "+".join(what for what, alive in (
            ("agent", node.agent_alive()),
            ("supervisor", node.supervisor_alive()),
            ("postgres", node.is_running())) if alive) or "-"
        lines.append(f"{node.name:<8} {node.port:>5}  {role:<8} "
                     f"{timeline:>8}  {upstream:<12} "
                     f"{labels.get(node.name) or '-':<9} {procs}")
    return "\n".join(lines)


def agentctl_show(cluster):
    """`agentctl cluster show` from the first node with a live agent, or
    None while agentctl prints nothing useful."""
    for node in cluster.nodes:
        if not node.agent_alive():
            continue
        try:
            result = node.agentctl("cluster", "show", timeout=10)
        except subprocess.TimeoutExpired:
            return None
        if result.returncode == 0 and result.stdout.strip():
            return result.stdout.rstrip()
        return None
    return None


class Keeper:
    """The detached process that owns a demo cluster."""

    def __init__(self, state_dir, args):
        self.state_dir = state_dir
        self.args = args
        self.cluster = None
        self.stopping = threading.Event()

    def state(self, phase, **extra):
        state = {"phase": phase, "pid": os.getpid(), **extra}
        if self.cluster is not None:
            state.update(node_state(self.cluster))
        _write_json(os.path.join(self.state_dir, STATE_FILE), state)

    def run(self):
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        data_dir = self.args.data_dir or default_data_dir(self.state_dir)
        if os.path.exists(data_dir):
            shutil.rmtree(data_dir)
        reaper = pgharness.Reaper(home=data_dir)
        try:
            binaries = stage_binaries(self.args.build_dir,
                                      os.path.join(data_dir, "bin"))
            # Against the real server (scripts/demo --kube real) the
            # namespace a user of the chart would pick, so that
            # `kubectl get lease,pods -n database` shows the demo.
            namespace = "database" if os.environ.get("PGLEASE_KUBE") == \
                "real" else "default"
            self.cluster = LocalCluster(pgharness.make_dir(data_dir),
                                        binaries, reaper, n=self.args.nodes,
                                        namespace=namespace)
            self.state("starting")
            self.cluster.start(timeout=self.args.timeout)
            self._wait_labels()
        except Exception as exc:  # pylint: disable=broad-except
            describe = self.cluster.describe() if self.cluster and \
                self.cluster.emulator else ""
            self.state("failed", error=str(exc), describe=describe)
            self._shutdown(reaper)
            return 1
        self.state("running")
        server = self._listen()
        try:
            while not self.stopping.is_set():
                try:
                    conn, _ = server.accept()
                except socket.timeout:
                    continue
                with conn:
                    self._serve(conn)
        finally:
            server.close()
            self.state("stopping")
            self._shutdown(reaper)
            self.state("stopped")
        return 0

    def _wait_labels(self):
        """Show the demo with every pod's role label and status annotation
        published: the agents write them within a status_interval or two.
        Not fatal: status shows what is there."""
        cluster = self.cluster
        limit = 2 * _seconds(cluster.settings["status_interval"]) + 2

        def published(node, pod):
            meta = pod.get("metadata", {})
            try:
                status = json.loads(meta.get("annotations", {}).get(
                    STATUS_ANNOTATION, "{}"))
            except ValueError:
                status = {}
            role = node.role()
            return meta.get("labels", {}).get(ROLE_LABEL) == role and \
                status.get("role") == role

        def agentctl_agrees():
            """agentctl shows each member in the role Postgres has, and
            settled: the primary running, the replicas streaming (the
            agents' view of their peers trails the pods by a tick, and a
            clone's record says `stopped` until its next write)."""
            try:
                result = cluster.nodes[0].agentctl("cluster", "show",
                                                   "--json", timeout=10)
                members = json.loads(result.stdout)["members"]
            except (subprocess.TimeoutExpired, ValueError, KeyError,
                    TypeError):
                return True     # no usable agentctl: nothing to wait for
            shown = {m.get("name"): (m.get("role"), m.get("status"))
                     for m in members}
            settled = {"primary": "running", "replica": "streaming"}
            return all(shown.get(n.name) == (n.role(), settled.get(n.role()))
                       for n in cluster)

        def labelled():
            pods = cluster.pods()
            return all(published(n, pods.get(n.name, {}))
                       for n in cluster) and agentctl_agrees()

        try:
            _wait(labelled, limit, "role labels", interval=0.2)
        except ClusterError as exc:
            sys.stderr.write(f"{exc}\n")

    def _shutdown(self, reaper):
        try:
            if self.cluster is not None:
                self.cluster.stop(timeout=30)
        except Exception as exc:  # pylint: disable=broad-except
            sys.stderr.write(f"stop: {exc}\n")
        reaper.kill_all()

    def _listen(self):
        path = os.path.join(self.state_dir, KEEPER_SOCK)
        if os.path.exists(path):
            os.unlink(path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(path)
        os.chmod(path, 0o600)
        server.listen(4)
        server.settimeout(0.5)
        return server

    def _serve(self, conn):
        conn.settimeout(30)
        try:
            request = json.loads(conn.makefile("r").readline())
            reply = self._command(request)
        except Exception as exc:  # pylint: disable=broad-except
            reply = {"ok": False, "error": str(exc)}
        try:
            conn.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass
        if self.cluster is not None:
            self.state("running")

    def _command(self, request):
        cmd = request.get("cmd")
        if cmd == "stop":
            self.stopping.set()
            return {"ok": True}
        if cmd == "status":
            return {"ok": True, "report": status_report(self.cluster),
                    "agentctl": agentctl_show(self.cluster)}
        actions = {"kill-pod": Node.kill_pod, "start-pod": Node.start_pod,
                   "kill-postmaster": Node.kill_postmaster,
                   "stop-agent": Node.stop_agent}
        if cmd in actions:
            node = self.cluster.node(request.get("node", ""))
            actions[cmd](node)
            return {"ok": True}
        return {"ok": False, "error": f"unknown command {cmd!r}"}


def _ask_keeper(state_dir, request, timeout=60):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.path.join(state_dir, KEEPER_SOCK))
        sock.sendall(json.dumps(request).encode() + b"\n")
        return json.loads(sock.makefile("r").readline())


def _detach(state_dir, args):
    """Fork the keeper (double fork, own session). Returns its pid, or None
    when another keeper holds the state directory's lock."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        os.waitpid(pid, 0)
        with os.fdopen(read_end, "r") as pipe:
            answer = pipe.read().strip()
        return int(answer) if answer.isdigit() else None
    os.close(read_end)
    os.setsid()
    if os.fork():
        os._exit(0)  # pylint: disable=protected-access
    status = 1
    try:
        log = os.open(os.path.join(state_dir, KEEPER_LOG),
                      os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        # Held for the keeper's life: a second start cannot run two
        # clusters in one state directory, even in a race.
        lock = os.open(os.path.join(state_dir, KEEPER_LOCK),
                       os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.write(write_end, b"busy\n")
            os._exit(3)  # pylint: disable=protected-access
        state_path = os.path.join(state_dir, STATE_FILE)
        if os.path.exists(state_path):
            os.unlink(state_path)
        with open(os.path.join(state_dir, KEEPER_PID), "w",
                  encoding="ascii") as handle:
            handle.write(f"{os.getpid()} {_start_time(os.getpid())}\n")
        os.write(write_end, f"{os.getpid()}\n".encode())
        os.close(write_end)
        status = Keeper(state_dir, args).run()
    finally:
        os._exit(status)  # pylint: disable=protected-access


def _already_running(state_dir, pid):
    print(f"the cluster in {state_dir} is already running (keeper pid "
          f"{pid}); see `status`, or `stop` it first")
    return 3


def cmd_start(args):
    state_dir = os.path.abspath(args.dir)
    os.makedirs(state_dir, exist_ok=True)
    pid = keeper_pid(state_dir)
    if pid:
        return _already_running(state_dir, pid)
    pid = _detach(state_dir, args)
    if pid is None:
        return _already_running(state_dir, keeper_pid(state_dir))
    state_path = os.path.join(state_dir, STATE_FILE)
    deadline = time.monotonic() + args.timeout + 60
    while True:
        state = _read_json(state_path) or {}
        if state.get("phase") in ("running", "failed", "stopped"):
            break
        if time.monotonic() > deadline or not pgharness.pid_alive(pid):
            print(f"the cluster did not start; see "
                  f"{os.path.join(state_dir, KEEPER_LOG)}")
            return 1
        time.sleep(0.2)
    if state["phase"] != "running":
        print(f"the cluster failed to start: {state.get('error')}")
        if state.get("describe"):
            print(state["describe"])
        print(f"logs: {state.get('data_dir')}/<node>/*.log, "
              f"{os.path.join(state_dir, KEEPER_LOG)}")
        return 1
    print(f"cluster {state['cluster']} running; data, configuration and "
          f"logs under {state['data_dir']}")
    status = cmd_status(args)
    print(failover_hints(args, state))
    print(agentctl_hints(args, state))
    return status


def _hint(args, verb, node=""):
    """The command line of `verb` as the user runs it."""
    if args.prog:
        return f"{args.prog} {verb} {node}".rstrip()
    return f"python3 {os.path.abspath(__file__)} {verb} --dir " \
        f"{args.dir} {node}".rstrip()


def failover_hints(args, state):
    """How to watch a failover, naming the current primary."""
    def cmd(verb, node=""):
        return _hint(args, verb, node)

    primary = state.get("primary") or "<primary>"
    rows = [
        (cmd("kill", primary), "kill -9 the primary's whole pod"),
        (f"watch -n1 {cmd('status')}", "after a lease duration (4s) a "
         "standby"),
        ("", "takes the lease and promotes; the other"),
        ("", "follows it"),
        (cmd("revive", primary), "the old primary rejoins as a standby"),
        (cmd("stop"), "stop everything"),
    ]
    width = max(len(cmd) for cmd, _ in rows) + 2
    lines = ["", "Watch a failover:"]
    lines += [f"  {cmd:<{width}}# {why}" for cmd, why in rows]
    lines.append(f"Logs: {state.get('data_dir')}/<node>/agent.log, "
                 "supervisor.log, init.log")
    return "\n".join(lines)


def agentctl_hints(args, state):
    """The closing lines: agentctl against the demo, through `ctl` or
    with an alias (one line to paste) naming the binary and a node's
    configuration."""
    node = state["nodes"][0]
    alias = shlex.join([state["agentctl"], "-c", node["conf"]])
    return "\n".join([
        "",
        "Run agentctl against the demo (any agentctl command; "
        "`ctl NODE ...` as that node):",
        f"  {_hint(args, 'ctl', 'cluster show')}",
        f"or set it up in this shell (as {node['name']}), then run "
        "`agentctl cluster show`:",
        f"  alias agentctl={shlex.quote(alias)}"])


def cmd_ctl(state_dir, argv):
    """Run agentctl ARGV with the configuration of the node that ARGV
    names first, else of the first node whose agent runs; its exit status
    is ctl's."""
    state_dir = os.path.abspath(state_dir)
    state = _read_json(os.path.join(state_dir, STATE_FILE)) or {}
    nodes = state.get("nodes") or []
    if keeper_pid(state_dir) is None or not nodes:
        print("the demo is not running", file=sys.stderr)
        return 3
    by_name = {node["name"]: node for node in nodes}
    if argv and argv[0] in by_name:
        node = by_name[argv.pop(0)]
    else:
        node = next((n for n in nodes if n.get("agent_pid") and
                     pgharness.pid_alive(n["agent_pid"])), nodes[0])
    # The agentctl would read PGLEASE_<KEY> variables (PGLEASE_BUILD of
    # scripts/demo, say) as configuration.
    env = {key: value for key, value in os.environ.items()
           if not key.startswith("PGLEASE_")}
    argv = [state["agentctl"], "-c", node["conf"], *argv]
    try:
        os.execve(argv[0], argv, env)
    except OSError as exc:
        print(f"{argv[0]}: {exc.strerror}", file=sys.stderr)
    return 1


def cmd_status(args):
    state_dir = os.path.abspath(args.dir)
    if keeper_pid(state_dir) is None:
        state = _read_json(os.path.join(state_dir, STATE_FILE))
        if state and state.get("phase") not in ("stopped", "failed"):
            print("the cluster is not running (its keeper is gone; "
                  "`stop` cleans up what is left)")
            return 3
        print("the cluster is not running")
        return 3
    reply = _ask_keeper(state_dir, {"cmd": "status"})
    if not reply.get("ok"):
        print(f"status: {reply.get('error')}")
        return 1
    if reply.get("agentctl"):
        print(reply["agentctl"])
    else:
        print(reply["report"])
    return 0


def _kill_recorded(state):
    """Kill what a dead keeper left: node processes and the emulator."""
    roots = set()
    for node in state.get("nodes", []):
        for key in ("agent_pid", "supervisor_pid", "postmaster_pid"):
            if node.get(key):
                roots.add(node[key])
        pid_file = os.path.join(node["dir"], "data", "postmaster.pid")
        try:
            with open(pid_file, encoding="ascii") as handle:
                roots.add(int(handle.readline()))
        except (OSError, ValueError):
            pass
    if state.get("emulator_pid"):
        roots.add(state["emulator_pid"])
    pids = _descendants(roots)
    _signal_all(pids, signal.SIGKILL)
    return pids


def cmd_stop(args):
    state_dir = os.path.abspath(args.dir)
    pid = keeper_pid(state_dir)
    if pid:
        try:
            _ask_keeper(state_dir, {"cmd": "stop"}, timeout=10)
        except OSError:
            os.kill(pid, signal.SIGTERM)
        try:
            _wait(lambda: keeper_pid(state_dir) is None, 90,
                  "the cluster to stop", interval=0.2)
        except ClusterError:
            os.kill(pid, signal.SIGKILL)
    state = _read_json(os.path.join(state_dir, STATE_FILE))
    if not state or (not pid and state.get("phase") == "stopped"):
        print("the cluster is not running: nothing to stop")
        return 0
    left = _kill_recorded(state)
    if left:
        print(f"killed {len(left)} left-over processes")
    for name in (KEEPER_PID, KEEPER_SOCK):
        path = os.path.join(state_dir, name)
        if os.path.exists(path):
            os.unlink(path)
    state["phase"] = "stopped"
    _write_json(os.path.join(state_dir, STATE_FILE), state)
    print(f"stopped (data and logs kept in {state.get('data_dir')})")
    return 0


def cmd_node(args):
    state_dir = os.path.abspath(args.dir)
    if keeper_pid(state_dir) is None:
        print("the cluster is not running")
        return 3
    reply = _ask_keeper(state_dir, {"cmd": args.command, "node": args.node})
    if not reply.get("ok"):
        print(f"{args.command} {args.node}: {reply.get('error')}")
        return 1
    print(f"{args.command} {args.node}: done")
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    # ctl --dir DIR ARGS...: the ARGS are agentctl's, options included.
    if argv[:1] == ["ctl"]:
        if len(argv) < 3 or argv[1] != "--dir":
            print("usage: cluster_daemon.py ctl --dir DIR [NODE] ARGS...",
                  file=sys.stderr)
            return 2
        return cmd_ctl(argv[2], argv[3:])
    parser = argparse.ArgumentParser(
        description="Run a local pglease cluster in the background "
                    "(scripts/demo uses this).")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("start", "stop", "status", "kill-pod", "start-pod",
                 "kill-postmaster", "stop-agent", "kill", "revive"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--dir", required=True,
                         help="state directory (pids, socket, keeper log)")
        if name == "start":
            cmd.add_argument("--build-dir",
                             default=os.path.join(SOURCE_DIR, "build"))
            cmd.add_argument("--data-dir", default=None,
                             help="where the nodes live (default: DIR/cluster"
                                  " if the runner user can reach it, else "
                                  "under /tmp)")
            cmd.add_argument("--nodes", type=int, default=3)
            cmd.add_argument("--timeout", type=float, default=180)
            cmd.add_argument("--prog", default=None,
                             help="command to name in the hints printed")
        if name in ("kill-pod", "start-pod", "kill-postmaster",
                    "stop-agent", "kill", "revive"):
            cmd.add_argument("node")
    args = parser.parse_args(argv)
    args.command = {"kill": "kill-pod", "revive": "start-pod"}.get(
        args.command, args.command)
    handler = {"start": cmd_start, "stop": cmd_stop,
               "status": cmd_status}.get(args.command, cmd_node)
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
