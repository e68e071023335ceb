"""A crash of the primary's postmaster (kill -9; its supervisor and agent
run on) is a restart in place, not a failover (docs/failover.md,
"PostgreSQL crashes, the agent and supervisor are fine"; issue 19, item
8), every time, on a three-node cluster with the shipped
primary_start_timeout (10 s).

Three crashes in a row, seconds apart, each while a client runs a
statement that never ends (a PL/pgSQL loop, which never looks whether its
postmaster is alive). Before the fix, the supervisor waited up to 10 s for
such a backend to exit before it restarted PostgreSQL (a new postmaster
refuses to start beside the old one's shared memory), and doubled its
restart delay on each crash less than a minute after the last, so that
the crashes ended in failovers, or in place only after seconds of outage.

Nothing here is timed. Each crash must end with the same node writable
and holding the Lease, the Lease never changing hands, and, in the logs,
in order: the supervisor saw the postmaster killed, restarted it at once
(it had been ready), killed the busy backend, started a new postmaster;
the old primary's agent neither fenced nor released, no standby tried to
take the Lease. And over all of it, no two writable servers and no
acknowledged write lost."""

import json
import threading

import psycopg2
import pytest

import cluster as cluster_mod

_wait = cluster_mod._wait  # pylint: disable=protected-access

SETTINGS = dict(cluster_mod.DEFAULT_SETTINGS, primary_start_timeout="10s")
CRASHES = 3
HEALTHY_TIMEOUT = 90
# Generous bounds for waits, never an assertion of speed: a failover
# (primary_start_timeout + a promotion) fits in them too, and fails the
# test by its outcome.
BACK_TIMEOUT = 60
TABLE = "crash_restart"

# A statement that runs until it is killed: no latch wait in it, so the
# backend never notices that its postmaster died (statement_timeout is
# the backstop should the supervisor not kill it).
ENDLESS = "DO $$BEGIN LOOP END LOOP; END$$"


@pytest.fixture(scope="module")
def crash_cluster(module_cluster_factory):
    return module_cluster_factory(settings=SETTINGS)


class BusyClient:
    """One session on `node` running ENDLESS in a thread; records how its
    statement ended."""

    def __init__(self, node):
        self.node = node
        self.conn = node.connect()
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute("SET statement_timeout = '5min'")
            cur.execute("SELECT pg_backend_pid()")
            self.pid = cur.fetchone()[0]
        self.outcome = None
        self.thread = threading.Thread(target=self._run, daemon=True,
                                       name="busy-client")

    def _run(self):
        try:
            with self.conn.cursor() as cur:
                cur.execute(ENDLESS)
            self.outcome = "finished"
        except psycopg2.Error as exc:
            self.outcome = f"error: {str(exc).strip()}"

    def start(self):
        self.thread.start()
        _wait(self._active, 30, f"{self.node.name}: backend {self.pid} "
              "running the endless statement")
        return self

    def _active(self):
        rows = self.node.sql("SELECT state FROM pg_stat_activity "
                             "WHERE pid = %s", (self.pid,))
        return rows and rows[0][0] == "active"

    def join(self, timeout=30):
        self.thread.join(timeout)
        try:
            self.conn.close()
        except psycopg2.Error:
            pass
        return self.outcome


def log_offset(path):
    try:
        with open(path, "rb") as handle:
            return handle.seek(0, 2)
    except FileNotFoundError:
        return 0


def lines_since(path, offset):
    with open(path, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode("utf-8", "replace").splitlines()


def events_since(node, offset):
    """The agent's JSON log entries written after `offset`."""
    out = []
    for line in lines_since(node.agent_log_path, offset):
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


def index_of(lines, text, after=-1):
    """Index of the first line after `after` containing `text`, or None."""
    for i in range(after + 1, len(lines)):
        if text in lines[i]:
            return i
    return None


def crash_once(cluster, old, writer):
    """Kill the primary's postmaster with a busy backend running; returns
    what the check needs."""
    _wait(lambda: old.agent_state() == "primary", 30,
          f"{old.name}'s agent to say primary")
    busy = BusyClient(old).start()
    transitions = cluster.lease()["leaseTransitions"]
    offsets = {n.name: log_offset(n.agent_log_path) for n in cluster.nodes}
    sup_offset = log_offset(old.supervisor_log)
    acked = len(writer.history)
    killed = old.kill_postmaster()
    back = cluster.wait_primary(BACK_TIMEOUT)
    _wait(lambda: len(writer.history) > acked and
          writer.history.acknowledged[-1][1] == back.name, BACK_TIMEOUT,
          f"a write acknowledged by {back.name} after the crash",
          describe=cluster.describe)
    return {"busy": busy, "busy_outcome": busy.join(), "killed": killed,
            "back": back, "transitions": transitions,
            "supervisor": lines_since(old.supervisor_log, sup_offset),
            "events": {n.name: events_since(n, offsets[n.name])
                       for n in cluster.nodes}}


def check_restart_in_place(cluster, old, seen):
    where = cluster.describe()
    sup = seen["supervisor"]
    assert seen["back"] is old, \
        f"the crash of {old.name} ended in a failover to " \
        f"{seen['back'].name}, not a restart in place\n{where}"
    assert cluster.lease()["leaseTransitions"] == seen["transitions"], where
    assert cluster.lease_holder() == old.name, where
    # The endless statement did not finish: its backend was killed.
    assert seen["busy_outcome"] and \
        seen["busy_outcome"].startswith("error"), seen["busy_outcome"]

    # The supervisor, in this order: the postmaster killed, a restart at
    # once (not after a backoff), the busy backend killed (not waited
    # for), the new postmaster started.
    died = index_of(sup, f"postgres pid {seen['killed']} was killed by "
                    "signal KILL")
    assert died is not None, sup
    at_once = index_of(sup, "restarting postgres at once", died)
    assert at_once is not None, \
        f"the supervisor did not restart the ready server at once: {sup}"
    assert index_of(sup, "restarting postgres in", died) is None, sup
    killed_busy = index_of(sup, f"killing left-over process "
                           f"{seen['busy'].pid}", died)
    started = index_of(sup, "started postgres pid", died)
    assert killed_busy is not None and started is not None, sup
    assert at_once < killed_busy < started, sup

    # The agents: the holder waited (it may say primary-down), never
    # fenced nor released; no standby tried to take the lease.
    holder = {e.get("event") for e in seen["events"][old.name]}
    assert not holder & {"fence", "release", "supervisor-gone"}, \
        seen["events"][old.name]
    for node in cluster.nodes:
        if node is old:
            continue
        kinds = {e.get("event") for e in seen["events"][node.name]}
        assert not kinds & {"candidate", "acquire", "promote"}, \
            (node.name, seen["events"][node.name])


def test_postmaster_crash_restarts_in_place_not_failover(crash_cluster):
    cluster = crash_cluster
    old = cluster.wait_healthy(HEALTHY_TIMEOUT)
    checker = cluster.split_brain_checker()
    writer = cluster_mod.Writer(cluster, table=TABLE).start()
    try:
        _wait(lambda: len(writer.history) >= 20, 30, "20 writes")
        for _ in range(CRASHES):
            seen = crash_once(cluster, old, writer)
            check_restart_in_place(cluster, old, seen)
        assert cluster.wait_healthy(HEALTHY_TIMEOUT) is old
    finally:
        history = writer.stop()
        violations = checker.stop()
    assert history.crashed is None, history.crashed
    assert not violations, f"two servers accepted writes: {violations}"
    missing = cluster_mod.missing_acknowledged(history, old, table=TABLE)
    assert not missing, f"acknowledged rows missing on {old.name}: " \
        f"{missing[:20]}"
