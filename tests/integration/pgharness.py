"""pgharness: real PostgreSQL 15 servers and child processes for the
integration tests.

Everything a test starts goes through a Reaper, which kills it (SIGKILL to
the whole process group, then a sweep for anything carrying the reaper's
environment tag) however the test ends. When the tests run as root, every
child runs as the unprivileged user `pglease-test`, because PostgreSQL
refuses to run as root.
"""

import grp
import os
import pwd
import random
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import ctypes
import time
import uuid

import psycopg2

PG_MAJOR = 15
TEST_USER = "pglease-test"
# Not PGLEASE_*: the agent reads PGLEASE_<KEY> variables as configuration.
TAG_ENV = "IT_REAPER_TAG"

__all__ = [
    "PG_MAJOR", "TEST_USER", "TAG_ENV", "Runner", "Reaper", "ProcessGroup",
    "PgServer", "pg_bindir", "free_port", "wait_for", "runner",
    "make_workdir", "make_dir", "chown_to_runner", "runner_can_access",
    "pid_alive", "reap_adopted",
]

PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper():
    """Orphans of our children (a killed postmaster's backends) are
    re-parented to this process rather than to init, so that the reaper can
    collect them instead of leaving zombies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


_become_subreaper()


# --------------------------------------------------------------------------
# waiting


def wait_for(predicate, timeout=10.0, what="condition", interval=0.05,
             ignore=()):
    """Poll predicate() until it returns a truthy value and return that value.

    Exceptions listed in `ignore` count as "not yet". On deadline, raise an
    AssertionError naming `what` (and the last ignored exception)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ignore as exc:  # pylint: disable=catching-non-exception
            last_exc = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_exc!r})" if last_exc else ""
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for: {what}{detail}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# ports and binaries


# Ports handed out by free_port() in this process, not to be given twice.
_ports_given = set()
_port_choice = random.SystemRandom()
# Ports for our servers start here: above the well-known services a machine
# may run (etcd 2379, Prometheus 9090, ...).
PORTS_FROM = 20000


def _ephemeral_ports():
    """The kernel's range for the local ports of outgoing connections."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range",
                  encoding="ascii") as f:
            low, high = (int(v) for v in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999


def free_port(host="127.0.0.1"):
    """A TCP port on `host` that nothing listens on right now, outside the
    kernel's ephemeral range, and not given before by this process.

    Not port 0's pick: that comes from the ephemeral range, where every
    outgoing connection on the machine (a libpq client, curl, a test's own
    probe) also takes its local port; a server started a few seconds after
    the pick (a standby after its clone) then met "Address already in use"
    and never came up."""
    low, high = _ephemeral_ports()
    ranges = [(PORTS_FROM, low - 1), (high + 1, 65535)]
    ranges = [(a, b) for a, b in ranges if b - a >= 100]
    for _ in range(500):
        a, b = _port_choice.choice(ranges)
        port = _port_choice.randint(a, b)
        if port in _ports_given:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _ports_given.add(port)
        return port
    raise AssertionError(f"no free port on {host} outside {low}-{high}")


def find_helm():
    """The helm to render charts/pglease with: $PGLEASE_HELM, else the one
    scripts/lib.sh's ensure_helm built for the version pinned in
    tests/k8s/helm/go.mod (scripts/test and scripts/k8s up build it), else
    helm in PATH; None when there is none."""
    if os.environ.get("PGLEASE_HELM"):
        return os.environ["PGLEASE_HELM"]
    source = os.environ.get("PGLEASE_SOURCE_DIR") or os.path.dirname(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = ""
    with open(os.path.join(source, "tests", "k8s", "helm", "go.mod"),
              encoding="utf-8") as handle:
        pin = re.search(r"^\s*helm\.sh/helm/v3\s+(\S+)", handle.read(),
                        re.M)
    if pin:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(
            os.path.expanduser("~"), ".cache")
        path = os.path.join(cache, "pglease", f"helm-{pin.group(1)}", "helm")
    return path if os.access(path, os.X_OK) else shutil.which("helm")


_bindir_cache = None


def pg_bindir():
    """Directory of the PostgreSQL 15 server binaries.

    `pg_config --bindir` when pg_config reports version 15, else Debian's
    /usr/lib/postgresql/15/bin. PGLEASE_PG_BINDIR overrides both."""
    global _bindir_cache  # pylint: disable=global-statement
    if _bindir_cache:
        return _bindir_cache
    candidates = []
    if os.environ.get("PGLEASE_PG_BINDIR"):
        candidates.append(os.environ["PGLEASE_PG_BINDIR"])
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            version = subprocess.run(
                [pg_config, "--version"], capture_output=True, text=True,
                timeout=10, check=True).stdout
            if version.split()[1].split(".")[0] == str(PG_MAJOR):
                candidates.append(subprocess.run(
                    [pg_config, "--bindir"], capture_output=True, text=True,
                    timeout=10, check=True).stdout.strip())
        except (subprocess.SubprocessError, OSError, IndexError):
            pass
    candidates.append(f"/usr/lib/postgresql/{PG_MAJOR}/bin")
    for cand in candidates:
        if os.access(os.path.join(cand, "postgres"), os.X_OK):
            _bindir_cache = cand
            return cand
    raise RuntimeError(
        f"PostgreSQL {PG_MAJOR} server binaries not found (tried "
        + ", ".join(candidates) + ")")


# --------------------------------------------------------------------------
# who runs the children


class Runner:
    """The identity child processes run as: the current user, or
    `pglease-test` when the tests run as root."""

    def __init__(self):
        self.is_root = os.geteuid() == 0
        if self.is_root:
            self._ensure_user()
            entry = pwd.getpwnam(TEST_USER)
            self.uid, self.gid, self.name = entry.pw_uid, entry.pw_gid, TEST_USER
        else:
            self.uid, self.gid = os.geteuid(), os.getegid()
            self.name = pwd.getpwuid(self.uid).pw_name

    @staticmethod
    def _ensure_user():
        try:
            pwd.getpwnam(TEST_USER)
            return
        except KeyError:
            pass
        useradd = shutil.which("useradd") or "/usr/sbin/useradd"
        proc = subprocess.run(
            [useradd, "--system", "--user-group", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
             TEST_USER],
            capture_output=True, text=True, check=False, timeout=30)
        # 9: the name exists (another test run created it meanwhile)
        if proc.returncode not in (0, 9):
            raise RuntimeError(f"useradd {TEST_USER} failed: {proc.stderr}")
        pwd.getpwnam(TEST_USER)

    def popen_kwargs(self):
        """Extra subprocess arguments that drop privileges when needed."""
        if not self.is_root:
            return {}
        return {"user": self.uid, "group": self.gid, "extra_groups": []}

    def group_name(self):
        return grp.getgrgid(self.gid).gr_name


_runner = None


def runner():
    """The process-wide Runner (created on first use)."""
    global _runner  # pylint: disable=global-statement
    if _runner is None:
        _runner = Runner()
    return _runner


def chown_to_runner(path, recursive=False):
    """Hand `path` to the runner user (no-op unless running as root)."""
    run_as = runner()
    if not run_as.is_root:
        return
    os.chown(path, run_as.uid, run_as.gid)
    if recursive and os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(root, name), run_as.uid, run_as.gid,
                         follow_symlinks=False)


def make_dir(path, mode=0o755):
    """mkdir -p owned by the runner user; returns the path."""
    os.makedirs(path, exist_ok=True)
    os.chmod(path, mode)
    chown_to_runner(path)
    return path


def make_workdir(prefix="pglease-it-", base=None):
    """A fresh temp directory (under /tmp unless PGLEASE_TMPDIR says
    otherwise: Unix socket paths must stay short) owned by the runner."""
    base = base or os.environ.get("PGLEASE_TMPDIR", "/tmp")
    path = tempfile.mkdtemp(prefix=prefix, dir=base)
    return make_dir(path, 0o755)


def runner_can_access(path, mode="x"):
    """Whether the runner user can read ('r') or execute ('x') `path`."""
    run_as = runner()
    if not run_as.is_root:
        return os.access(path, os.X_OK if mode == "x" else os.R_OK)
    proc = subprocess.run(["test", "-" + mode, path], check=False,
                          timeout=10, **run_as.popen_kwargs())
    return proc.returncode == 0


# --------------------------------------------------------------------------
# processes


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii",
                  errors="replace") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return fields[0] != "Z"
    except (OSError, IndexError):
        return False


def _process_table():
    """pid -> (state, ppid, pgrp, session) for every process."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii",
                      errors="replace") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            table[int(entry)] = (fields[0], int(fields[1]), int(fields[2]),
                                 int(fields[3]))
        except (OSError, IndexError, ValueError):
            continue
    return table


def _start_time(pid):
    """When process `pid` started (clock ticks since boot, /proc/<pid>/stat
    field 22), or None when there is no such process: with a pid, it names
    one process, not whichever holds that pid later."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii",
                  errors="replace") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _child_env(tag, env=None, home=None):
    """Environment for a child: ours minus libpq's PG* variables (a
    developer's PGHOST must not leak into a test), plus the reaper tag."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("PG")
           or k.startswith("PGLEASE_")}
    out["LC_ALL"] = "C.UTF-8"
    out[TAG_ENV] = tag
    if home:
        out["HOME"] = home
    if env:
        for key, value in env.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = str(value)
    return out


def reap_adopted(keep=()):
    """Collect the zombies of processes we adopted as subreaper (a killed
    supervisor's postmaster...): while one lingers, its pid still exists and
    a new postmaster refuses the data directory. Pids in `keep` (Popen
    objects' children, whose exit status belongs to their Popen) are left."""
    for pid, (state, ppid, _, _) in _process_table().items():
        if ppid == os.getpid() and state == "Z" and pid not in keep:
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass


class Reaper:
    """Starts child processes and guarantees they die.

    Each child gets its own process group (start_new_session) and the
    environment variable IT_REAPER_TAG=<unique tag>, which its own children
    (postgres backends, a postmaster started by a supervisor) inherit.
    kill_all() SIGKILLs every recorded process group, then every process
    still carrying the tag, and waits until they are gone."""

    def __init__(self, home=None):
        self.tag = uuid.uuid4().hex
        self.home = home
        self.procs = []

    def env(self, env=None):
        return _child_env(self.tag, env, self.home)

    def spawn(self, argv, *, logfile=None, env=None, cwd=None,
              stdin=subprocess.DEVNULL, as_runner=True, **kwargs):
        """Start a long-running child; stdout+stderr go to `logfile`
        (appended) or are discarded. Returns the Popen."""
        out = subprocess.DEVNULL
        log_handle = None
        if logfile:
            log_handle = open(logfile, "ab")  # pylint: disable=consider-using-with
            chown_to_runner(logfile)
            out = log_handle
        extra = runner().popen_kwargs() if as_runner else {}
        extra.update(kwargs)
        try:
            proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [str(a) for a in argv], stdin=stdin, stdout=out,
                stderr=subprocess.STDOUT, cwd=cwd, env=self.env(env),
                start_new_session=True, **extra)
        finally:
            if log_handle:
                log_handle.close()
        return self._record(proc)

    def run(self, argv, *, timeout=60, check=True, env=None, cwd=None,
            input=None, as_runner=True):  # pylint: disable=redefined-builtin
        """Run a short command to completion (as the runner), capturing
        text output. Killed with its group on timeout."""
        extra = runner().popen_kwargs() if as_runner else {}
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [str(a) for a in argv], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=cwd, env=self.env(env), start_new_session=True, **extra)
        self._record(proc)
        try:
            out, err = proc.communicate(input=input, timeout=timeout)
        except subprocess.TimeoutExpired:
            self._kill_group(proc)
            proc.communicate()
            raise
        result = subprocess.CompletedProcess(proc.args, proc.returncode,
                                             out, err)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, proc.args,
                                                out, err)
        return result

    def track(self, proc):
        """Record a Popen started elsewhere so kill_all() covers it."""
        return self._record(proc)

    def _record(self, proc):
        # Our unreaped child: its pid cannot name another process yet.
        proc.pglease_started_at = _start_time(proc.pid)
        self.procs.append(proc)
        return proc

    @staticmethod
    def _kill_group(proc):
        for kill in (os.killpg, os.kill):
            try:
                kill(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def _has_tag(self, pid):
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                return f"{TAG_ENV}={self.tag}".encode() in \
                    environ.read().split(b"\0")
        except OSError:
            return False

    def tagged_pids(self):
        """Live processes (other than us) whose environment carries our
        tag. (Postgres backends overwrite their environment with their ps
        title: owned_pids() also follows process groups and parentage.)"""
        return [pid for pid, info in _process_table().items()
                if info[0] != "Z" and pid != os.getpid()
                and self._has_tag(pid)]

    def owned_pids(self):
        """Live processes that belong to this reaper: the ones it started,
        members of their process groups and sessions, processes carrying
        its tag, and every descendant of those.

        The pid of a process we started and reaped is free for anyone
        (pid_max is 32768 here, and every agentctl call is a process): a
        pid that now names a process with another start time is not ours,
        nor is its group or session (a pid is reused only once no group or
        session uses it). Without this, a test's teardown SIGKILLed
        another test's agent that happened to get the pid of one of its
        old agentctl calls."""
        table = _process_table()
        started, groups = set(), set()
        for proc in self.procs:
            if proc.pid not in table:
                groups.add(proc.pid)        # gone: its orphans may be left
            elif getattr(proc, "pglease_started_at", None) in (
                    None, _start_time(proc.pid)):
                started.add(proc.pid)
                groups.add(proc.pid)
        owned = {pid for pid, (_, _, pgrp, sid) in table.items()
                 if pid in started or pgrp in groups or sid in groups
                 or self._has_tag(pid)}
        owned.discard(os.getpid())
        grew = True
        while grew:
            grew = False
            for pid, (_, ppid, _, _) in table.items():
                if ppid in owned and pid not in owned:
                    owned.add(pid)
                    grew = True
        return sorted(pid for pid in owned
                      if pid in table and table[pid][0] != "Z")

    def _reap_adopted(self):
        reap_adopted({p.pid for p in self.procs})

    def kill_all(self, timeout=10.0):
        """SIGKILL everything this reaper owns (see owned_pids) and wait
        until it is gone; return the pids that had to be killed. Raises
        AssertionError if something survives `timeout`."""
        killed = set()

        def sweep():
            pids = self.owned_pids()
            for pid in pids:
                killed.add(pid)
                try:
                    os.kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            for proc in self.procs:
                proc.poll()
            self._reap_adopted()
            return not pids

        wait_for(sweep, timeout, f"processes of reaper {self.tag} to exit",
                 interval=0.02)
        for proc in self.procs:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.procs = []
        return sorted(killed)


ProcessGroup = Reaper


# --------------------------------------------------------------------------
# PostgreSQL servers


def _quote_setting(value):
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (int, float)):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


# Defaults for every test server: fast and small, loopback only.
DEFAULT_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": False,
    "full_page_writes": True,
    "shared_buffers": "16MB",
    "max_connections": 40,
    "max_wal_senders": 10,
    "max_replication_slots": 10,
    "wal_level": "replica",
    "hot_standby": True,
    "wal_log_hints": True,
    "logging_collector": False,
    "log_line_prefix": "%m [%p] %q%a ",
    "log_min_messages": "info",
}


class PgServer:
    """One PostgreSQL 15 server under `base_dir/name`: data/ (PGDATA),
    run/ (its Unix socket directory) and postgres.log."""

    def __init__(self, base_dir, name, port=None, *, reaper=None,
                 bindir=None, superuser="postgres"):
        self.name = name
        self.port = port or free_port()
        self.base_dir = make_dir(os.path.join(str(base_dir), name))
        self.datadir = os.path.join(self.base_dir, "data")
        self.sockdir = make_dir(os.path.join(self.base_dir, "run"), 0o755)
        self.logfile = os.path.join(self.base_dir, "postgres.log")
        self.bindir = bindir or pg_bindir()
        self.superuser = superuser
        self.reaper = reaper or Reaper(home=self.base_dir)
        self.proc = None

    def __repr__(self):
        return f"PgServer({self.name!r}, port={self.port})"

    # -- paths and connection strings --------------------------------------

    def bin(self, program):
        return os.path.join(self.bindir, program)

    def dsn(self, dbname="postgres", host="127.0.0.1", **extra):
        parts = {"host": host, "port": self.port, "user": self.superuser,
                 "dbname": dbname, "connect_timeout": 3,
                 "application_name": "pglease-tests"}
        parts.update(extra)
        return " ".join(f"{k}={v}" for k, v in parts.items())

    @property
    def conninfo(self):
        """libpq conninfo over TCP on 127.0.0.1."""
        return self.dsn()

    @property
    def socket_conninfo(self):
        """libpq conninfo over the Unix socket in sockdir."""
        return self.dsn(host=self.sockdir)

    # -- lifecycle ---------------------------------------------------------

    def initdb(self, extra_args=(), auth="trust", password=None):
        """initdb as the runner user. With a password, the superuser gets it
        (through a temporary pwfile, never a command line)."""
        args = [self.bin("initdb"), "-D", self.datadir, "-U", self.superuser,
                "--auth", auth, "-E", "UTF8", "--locale", "C", "--no-sync"]
        pwfile = None
        if password is not None:
            pwfile = os.path.join(self.base_dir, ".pwfile")
            with open(os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                              0o600), "w", encoding="utf-8") as handle:
                handle.write(password + "\n")
            chown_to_runner(pwfile)
            args += ["--pwfile", pwfile]
        try:
            self.reaper.run(args + list(extra_args), timeout=120)
        finally:
            if pwfile:
                os.unlink(pwfile)
        self.configure(port=self.port, unix_socket_directories=self.sockdir,
                       **DEFAULT_SETTINGS)
        return self

    def configure(self, **settings):
        """Append settings to postgresql.conf (later lines win)."""
        conf = os.path.join(self.datadir, "postgresql.conf")
        with open(conf, "a", encoding="utf-8") as handle:
            for key, value in settings.items():
                handle.write(f"{key} = {_quote_setting(value)}\n")
        return self

    def hba(self, line):
        """Prepend a pg_hba.conf line (first match wins)."""
        path = os.path.join(self.datadir, "pg_hba.conf")
        with open(path, encoding="utf-8") as handle:
            old = handle.read()
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(line.rstrip("\n") + "\n" + old)
        return self

    def start(self, timeout=30, extra_args=()):
        """Start the postmaster directly (not through pg_ctl, so that it is
        our child and its process group is the reaper's to kill) and wait
        until it accepts connections."""
        if self.is_running():
            raise AssertionError(f"{self.name}: already running")
        self.proc = self.reaper.spawn(
            [self.bin("postgres"), "-D", self.datadir, "-p", self.port,
             "-k", self.sockdir] + list(extra_args),
            logfile=self.logfile)

        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"{self.name}: postgres exited with {self.proc.returncode}"
                    f" during start; log tail:\n{self.log_tail()}")
            return self.is_ready()

        try:
            wait_for(ready, timeout, f"{self.name} to accept connections",
                     interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nlog tail:\n{self.log_tail()}") \
                from None
        return self

    def is_ready(self):
        """pg_isready over the socket says the server accepts connections."""
        proc = subprocess.run(
            [self.bin("pg_isready"), "-q", "-h", self.sockdir, "-p",
             str(self.port), "-t", "2"], check=False, timeout=10,
            env=_child_env(self.reaper.tag))
        return proc.returncode == 0

    def pid(self):
        """The live postmaster's pid (from our child or postmaster.pid)."""
        if self.proc is not None and self.proc.poll() is None:
            return self.proc.pid
        try:
            with open(os.path.join(self.datadir, "postmaster.pid"),
                      encoding="ascii") as handle:
                pid = int(handle.readline().strip())
        except (OSError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def is_running(self):
        return self.pid() is not None

    _STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT,
                     "immediate": signal.SIGQUIT}

    def stop(self, mode="fast", timeout=30):
        """Stop with the pg_ctl mode's signal and wait for the postmaster
        to exit. Works whoever started the server."""
        pid = self.pid()
        if pid is None:
            return self
        try:
            os.kill(pid, self._STOP_SIGNALS[mode])
        except ProcessLookupError:
            pass
        if self.proc is not None and self.proc.pid == pid:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        wait_for(lambda: not pid_alive(pid), timeout,
                 f"{self.name} to stop ({mode})")
        return self

    def kill9(self):
        """SIGKILL the postmaster only (its backends linger, as after a real
        crash); the reaper takes care of them at teardown."""
        pid = self.pid()
        if pid is None:
            raise AssertionError(f"{self.name}: not running")
        os.kill(pid, signal.SIGKILL)
        if self.proc is not None and self.proc.pid == pid:
            self.proc.wait(timeout=10)
        wait_for(lambda: not pid_alive(pid), 10, f"{self.name} to die")
        return self

    def log_tail(self, lines=30):
        try:
            with open(self.logfile, encoding="utf-8", errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- SQL ---------------------------------------------------------------

    def connect(self, dbname="postgres", **kwargs):
        """psycopg2 (libpq) connection over TCP, autocommit."""
        conn = psycopg2.connect(self.dsn(dbname), **kwargs)
        conn.autocommit = True
        return conn

    def sql(self, query, params=None, dbname="postgres"):
        """Run one statement; return its rows (a list of tuples, empty for
        statements without results)."""
        conn = self.connect(dbname)
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def in_recovery(self):
        return self.sql("SELECT pg_is_in_recovery()")[0][0]

    def basebackup_from(self, source, extra_args=("-R",), timeout=120):
        """Clone `source` into this server's empty datadir with pg_basebackup
        (default -R: a standby following it), then point the copy's port and
        socket at this server."""
        self.reaper.run(
            [self.bin("pg_basebackup"), "-D", self.datadir, "-d",
             source.dsn(), "-X", "stream", "-c", "fast", "--no-sync"]
            + list(extra_args), timeout=timeout)
        self.configure(port=self.port, unix_socket_directories=self.sockdir)
        return self
