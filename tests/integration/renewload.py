"""renewload: the loads of issue 15 on a primary's agent, and a watch of
its renewals, shared by tests/integration/test_renewal.py and
bench/renew_cadence.py.

RenewWatch reads <run_dir>/lease-expiry, which the agent rewrites after
every successful renewal with the CLOCK_MONOTONIC send time of that renewal
plus renew_deadline (lib/lease-file.h): successive values, less the
constant, are the send times of successive renewals, on the agent's own
clock, without touching the agent.

Each load is an object with start() and stop(); stop() returns a dict of
what it saw, and raises nothing: the tests assert on it."""

import os
import signal
import socket
import statistics
import threading
import time

import psycopg2

METADATA_TABLES = ("schema_version", "nodes", "events", "history",
                   "monitoring")
STATUS_LINE = b'{"version":1,"command":"status"}\n'


class RenewWatch:
    """Polls a node's lease-expiry file every `interval` seconds and keeps
    every distinct value (the agent's monotonic microseconds)."""

    def __init__(self, node, interval=0.002):
        self.path = os.path.join(node.run_dir, "lease-expiry")
        self.interval = interval
        self.values = []
        self._stop = threading.Event()
        self._thread = None

    def _read(self):
        try:
            with open(self.path, encoding="ascii") as handle:
                return int(handle.read().strip())
        except (OSError, ValueError):
            return None

    def _run(self):
        while not self._stop.is_set():
            value = self._read()
            if value is not None and (not self.values
                                      or value != self.values[-1]):
                self.values.append(value)
            self._stop.wait(self.interval)

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread:
            self._thread.join(5)
        return self.intervals()

    def intervals(self):
        """Seconds between successive renewals' send times."""
        return [(b - a) / 1e6 for a, b in zip(self.values, self.values[1:])
                if b > a]


def cadence(intervals):
    """p50 / p99 / max of renewal intervals, in seconds (None if empty)."""
    if not intervals:
        return None
    ordered = sorted(intervals)
    p99 = ordered[min(len(ordered) - 1, int(round(0.99 * (len(ordered) - 1))))]
    return {"n": len(ordered), "p50": statistics.median(ordered),
            "p99": p99, "max": ordered[-1]}


def agent_socket(node):
    """The agent's control socket (the default place, <run_dir>/agent.sock)."""
    return os.path.join(node.run_dir, "agent.sock")


class StatusFlood:
    """One client writes `count` pipelined status requests at once (the
    agent reads them as it serves them) and reads every answer."""

    def __init__(self, node, count=10000, timeout=120):
        self.path = agent_socket(node)
        self.count = count
        self.timeout = timeout
        self.answered = 0
        self.errors = []
        self.seconds = None
        self._thread = None

    def _run(self):
        started = time.monotonic()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(self.timeout)
                sock.connect(self.path)
                sender = threading.Thread(
                    target=lambda: sock.sendall(STATUS_LINE * self.count),
                    daemon=True)
                sender.start()
                buf = b""
                while self.answered < self.count:
                    chunk = sock.recv(1 << 16)
                    if not chunk:
                        break
                    buf += chunk
                    lines = buf.split(b"\n")
                    buf = lines.pop()
                    self.answered += sum(1 for x in lines if b'"ok":true' in x)
                    self.errors.extend(x for x in lines
                                       if b'"ok":true' not in x)
                sender.join(5)
        except OSError as exc:
            self.errors.append(repr(exc))
        self.seconds = time.monotonic() - started

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._thread:
            self._thread.join(self.timeout)
        return {"answered": self.answered, "errors": self.errors[:5],
                "seconds": self.seconds}


class SlowClients:
    """`count` clients that each send one byte of a request per second and
    never finish one; they reconnect when the agent closes them."""

    def __init__(self, node, count=64, byte_interval=1.0):
        self.path = agent_socket(node)
        self.count = count
        self.byte_interval = byte_interval
        self.closed_by_agent = 0
        self._stop = threading.Event()
        self._threads = []

    def _one(self):
        while not self._stop.is_set():
            try:
                with socket.socket(socket.AF_UNIX,
                                   socket.SOCK_STREAM) as sock:
                    sock.settimeout(2)
                    sock.connect(self.path)
                    for byte in STATUS_LINE[:-1] * 1000:
                        if self._stop.is_set():
                            return
                        sock.sendall(bytes([byte]))
                        self._stop.wait(self.byte_interval)
            except OSError:
                self.closed_by_agent += 1
                self._stop.wait(0.2)

    def start(self):
        for _ in range(self.count):
            thread = threading.Thread(target=self._one, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self):
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        return {"closed_by_agent": self.closed_by_agent}


class TableLocks:
    """ACCESS EXCLUSIVE on every metadata table, in one transaction held
    for `seconds`."""

    def __init__(self, node, seconds, schema="pglease"):
        self.node = node
        self.seconds = seconds
        self.schema = schema
        self.locked = []
        self.error = None
        self._thread = None
        self._done = threading.Event()

    def _run(self):
        conn = None
        try:
            conn = psycopg2.connect(
                host="127.0.0.1", port=self.node.port,
                user=self.node.setting("superuser"),
                password=self.node.password(),
                dbname=self.node.setting("database"), connect_timeout=5,
                application_name="pglease-tests-locker")
            with conn.cursor() as cur:
                for table in METADATA_TABLES:
                    cur.execute(f'LOCK TABLE "{self.schema}"."{table}" '
                                "IN ACCESS EXCLUSIVE MODE")
                    self.locked.append(table)
                self._done.wait(self.seconds)
            conn.rollback()
        except psycopg2.Error as exc:
            self.error = str(exc)
        finally:
            if conn is not None:
                conn.close()

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def wait(self):
        self._thread.join(self.seconds + 30)

    def stop(self):
        self._done.set()
        self._thread.join(30)
        return {"locked": list(self.locked), "error": self.error}


def agent_backends(node, idle_only=True):
    """PIDs of the backends this node's own agent has open, idle ones only
    by default: a backend stopped inside a critical section would stall the
    whole server, which is not this test's fault to inject.

    The node's agent connects over its Unix socket (client_addr NULL); the
    other members' agents, also application_name pglease-agent, come over
    TCP: a standby keeps a connection to the leader for its queued events
    and may leave it idle for minutes, so stopping that one would wait for
    a query the standby has no reason to make."""
    rows = node.sql(
        "SELECT pid FROM pg_stat_activity WHERE application_name = "
        "'pglease-agent' AND backend_type = 'client backend' "
        "AND client_addr IS NULL"
        + (" AND state = 'idle'" if idle_only else ""))
    return [row[0] for row in rows]


class StoppedBackend:
    """SIGSTOP of the backend serving the agent: its next query there gets
    no answer at all (statement_timeout is the server's, and the server is
    stopped). SIGCONT at stop()."""

    def __init__(self, node, timeout=20):
        self.node = node
        self.timeout = timeout
        self.pids = []

    def start(self):
        deadline = time.monotonic() + self.timeout
        while not self.pids and time.monotonic() < deadline:
            for pid in agent_backends(self.node):
                try:
                    os.kill(pid, signal.SIGSTOP)
                    self.pids.append(pid)
                except ProcessLookupError:
                    pass
            if not self.pids:
                time.sleep(0.05)
        return self

    def stop(self):
        for pid in self.pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        return {"stopped": list(self.pids)}


class HangingTriggers:
    """A statement-level trigger on every metadata table that sleeps
    `seconds` (pg_sleep) before any INSERT, UPDATE or DELETE: the agent's
    metadata writes hang in the server until its statement_timeout cancels
    them. stop() drops the triggers and their function."""

    FUNCTION = "public.pglease_tests_hang"

    def __init__(self, node, seconds, schema="pglease"):
        self.node = node
        self.seconds = seconds
        self.schema = schema
        self.tables = []
        self.error = None

    def start(self):
        try:
            self.node.sql(
                f"CREATE OR REPLACE FUNCTION {self.FUNCTION}() RETURNS trigger "
                f"LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep("
                f"{float(self.seconds)}); RETURN NULL; END $$")
            for table in METADATA_TABLES:
                self.node.sql(
                    f'CREATE TRIGGER pglease_tests_hang BEFORE INSERT OR '
                    f'UPDATE OR DELETE ON "{self.schema}"."{table}" '
                    f"FOR EACH STATEMENT EXECUTE FUNCTION {self.FUNCTION}()")
                self.tables.append(table)
        except psycopg2.Error as exc:
            self.error = str(exc)
        return self

    def stop(self):
        dropped = []
        for table in self.tables:
            try:
                self.node.sql(f'DROP TRIGGER IF EXISTS pglease_tests_hang '
                              f'ON "{self.schema}"."{table}"')
                dropped.append(table)
            except psycopg2.Error as exc:
                self.error = self.error or str(exc)
        try:
            self.node.sql(f"DROP FUNCTION IF EXISTS {self.FUNCTION}()")
        except psycopg2.Error as exc:
            self.error = self.error or str(exc)
        return {"hung": list(self.tables), "dropped": dropped,
                "error": self.error}


class SlowApi:
    """The emulator answers every request of `node` after `delay` seconds
    (api_timeout minus a little)."""

    def __init__(self, cluster, node, delay):
        self.cluster = cluster
        self.node = node
        self.delay = delay

    def start(self):
        self.cluster.emulator.fault(self.node.token, "delay",
                                    delay_ms=int(self.delay * 1000))
        return self

    def stop(self):
        self.cluster.emulator.fault(self.node.token, "ok")
        return {"delay": self.delay}
