"""Failsafe mode (docs/failover.md, docs/design.md "Failsafe mode") on three
real PostgreSQL 15 servers, each under its run-postgres supervisor with its
agent, against the Kubernetes API emulator:

- the API server refuses the leader for three lease durations under a
  steady writer: not one write fails, nobody promotes, the Lease keeps its
  holder, and failsafe mode ends when the API server answers again;
- the leader cut off from the API server and from one member (that member
  holds another token, so its answers are 401): the leader fences by its
  renew deadline, and nobody takes over before the lease could expire;
- the leader's agent SIGSTOPped while it writes on failsafe answers: the
  run-postgres supervisor's lease-expiry watchdog fences PostgreSQL;
- POST /failsafe without a token, with a wrong one, malformed, oversized,
  slow, or too many: each gets its code, no promise is made, and the
  leader's renewals keep their cadence;
- the token's file rotated on one member at a time (one restarted with the
  new token only): API cuts in the middle of it cost no write.

With failsafe mode off (the default) the leader cut off from the API fences
at the renew deadline and a standby takes over: test_failover.py's
test_primary_cut_off_from_the_api."""

import http.client
import json
import os
import secrets
import signal
import socket
import threading
import time

import pytest

import cluster as cluster_mod
import pgharness
import renewload

_wait = cluster_mod._wait  # pylint: disable=protected-access
_seconds = cluster_mod._seconds  # pylint: disable=protected-access
_write_private = cluster_mod._write_private  # pylint: disable=protected-access

SETTINGS = dict(cluster_mod.DEFAULT_SETTINGS, failsafe_mode="yes",
                http_request_timeout="2s", http_max_body="1kB")
LEASE = _seconds(SETTINGS["lease_duration"])
RENEW_DEADLINE = _seconds(SETTINGS["renew_deadline"])
RETRY = _seconds(SETTINGS["retry_period"])
HEALTHY_TIMEOUT = 90
TOKEN_FILE = "failsafe-token"


@pytest.fixture(scope="module")
def fs_cluster(module_cluster_factory):
    """Three members with the HTTP API on ports of their own and one
    failsafe token (one Secret mounted in every pod)."""
    local = module_cluster_factory(n=3, settings=SETTINGS, start=False,
                                   cluster_name="fs")
    ports = set()
    while len(ports) < 6:
        ports.add(pgharness.free_port())
    ports = sorted(ports)
    local.failsafe_token = secrets.token_hex(24)
    for i, node in enumerate(local.nodes):
        node.http_port, node.failsafe_port = ports[2 * i], ports[2 * i + 1]
        local.per_node[node.name] = {
            "http_listen": f"127.0.0.1:{node.http_port}",
            "failsafe_listen": f"127.0.0.1:{node.failsafe_port}",
            "failsafe_token_file": os.path.join(node.secrets_dir, TOKEN_FILE),
        }
    local.setup()
    for node in local.nodes:
        write_token(node, local.failsafe_token)
    local.start(timeout=180)
    return local


def write_token(node, token):
    _write_private(os.path.join(node.secrets_dir, TOKEN_FILE), token + "\n")


def request(node, path, method="GET", body=None, headers=None, timeout=5,
            port=None):
    conn = http.client.HTTPConnection("127.0.0.1", port or node.http_port,
                                      timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def post_failsafe(node, token, leader, raw_body=None):
    body = raw_body if raw_body is not None else json.dumps({"leader": leader})
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return request(node, "/failsafe", "POST", body, headers,
                   port=node.failsafe_port)[0]


def metric(node, name, labels=""):
    status, text = request(node, "/metrics")
    assert status == 200
    want = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split(" ")[-1])
    return None


def events(node, start, event):
    return [e for e in node.agent_log()[start:] if e.get("event") == event]


def restart_agent(node):
    node.stop_agent()
    node.start_agent()


class Load:
    """A steady writer through the Lease's holder (a table of its own: the
    writer numbers its rows from 1) and the split-brain checker, on a
    healthy cluster."""

    def __init__(self, local, table):
        self.local = local
        self.primary = local.wait_healthy(HEALTHY_TIMEOUT)
        local.wait_failsafe_armed()
        self.transitions = local.lease()["leaseTransitions"]
        self.checker = cluster_mod.SplitBrainChecker(local).start()
        self.writer = cluster_mod.Writer(local, table=table).start()
        _wait(lambda: len(self.writer.history) >= 20, 30, "20 writes")

    def stop(self):
        history = self.writer.stop()
        violations = self.checker.stop()
        assert not violations, f"two writable servers: {violations[:3]}"
        assert not history.acks_after_handover(), \
            "an old primary acknowledged a write after the new one did"
        return history


def touch_lease(local):
    """The admin adds an annotation of its own to the Lease (a new
    resourceVersion, the holder unchanged)."""
    emu = local.emulator
    path = emu.lease_path(local.namespace, local.lease_name)
    status, lease = emu.get(path)
    assert status == 200, lease
    lease["metadata"].setdefault("annotations", {})["example.com/touched"] = \
        str(time.time())
    status, body = emu.put(path, lease)
    assert status == 200, body


def test_api_cut_from_the_leader_costs_no_write(fs_cluster):
    load = Load(fs_cluster, "fs_api_cut")
    leader = load.primary
    log_start = len(leader.agent_log())
    others = [n for n in fs_cluster.nodes if n is not leader]
    leader.cut_api()
    cut = time.monotonic()
    try:
        # Past the renew deadline on the members' answers alone.
        _wait(lambda: events(leader, log_start, "failsafe"), RENEW_DEADLINE + 5,
              f"{leader.name} to go on in failsafe mode")
        assert metric(leader, "pglease_failsafe_active") == 1
        # Someone else writes the Lease meanwhile (kubectl annotate, or a
        # renewal of ours the server applied but whose answer was lost): a
        # new version the leader must renew on after the outage, keeping
        # the lease (no transition). The renewer's own 409 and read-back
        # in failsafe mode is tests/unit/test-election.c's (here the loop
        # usually reads the new version first).
        touch_lease(fs_cluster)
        # Three lease durations: anyone could have taken the lease twice.
        while time.monotonic() - cut < 3 * LEASE:
            assert leader.is_primary(), f"{leader.name} stopped writing"
            assert not any(n.is_primary() for n in others)
            time.sleep(0.2)
    finally:
        leader.restore_api()
    _wait(lambda: any("over" in e.get("msg", "") for e in
                      events(leader, log_start, "failsafe")),
          RENEW_DEADLINE + 5, "failsafe mode to end with the API back")
    _wait(lambda: len(load.writer.history) >= 20, 10, "writes")
    history = load.stop()
    assert history.errors == 0, f"{history.errors} failed writes ({history.last_error})"
    assert not history.unknown, history.unknown
    assert set(history.by_node()) == {leader.name}
    assert fs_cluster.lease_holder() == leader.name
    assert fs_cluster.lease()["leaseTransitions"] == load.transitions
    assert not events(leader, log_start, "fence")
    assert metric(leader, "pglease_failsafe_active") == 0


def test_frozen_agent_in_failsafe_is_fenced_by_the_supervisor(fs_cluster):
    load = Load(fs_cluster, "fs_frozen")
    leader = load.primary
    log_start = len(leader.agent_log())
    supervisor_log_size = os.path.getsize(leader.supervisor_log)
    leader.cut_api()
    try:
        _wait(lambda: events(leader, log_start, "failsafe"), RENEW_DEADLINE + 5,
              f"{leader.name} to go on in failsafe mode")
        agent_pid = leader.agent_proc.pid
        os.kill(agent_pid, signal.SIGSTOP)
        stopped = time.monotonic()
        try:
            # The lease-expiry file holds the failsafe answers' end: at
            # most renew_deadline after the last question was sent.
            _wait(lambda: not leader.is_primary(), RENEW_DEADLINE + 5,
                  f"the supervisor to fence {leader.name}")
            fenced = time.monotonic() - stopped
            fs_cluster.wait_primary(4 * LEASE + 30, other_than=leader.name)
        finally:
            os.kill(agent_pid, signal.SIGCONT)
    finally:
        leader.restore_api()
    assert fenced < RENEW_DEADLINE + 1.0, fenced
    with open(leader.supervisor_log, encoding="utf-8", errors="replace") as log:
        log.seek(supervisor_log_size)
        assert any("lease expired" in line for line in log), \
            "the supervisor did not fence"
    fs_cluster.wait_healthy(HEALTHY_TIMEOUT)
    load.stop()


class SlowPosts:
    """Connections that send a POST /failsafe a byte at a time."""

    def __init__(self, node, count, duration):
        self.node = node
        self.count = count
        self.duration = duration
        self.closed = 0
        self._lock = threading.Lock()
        self.threads = []

    def _one(self):
        head = (b"POST /failsafe HTTP/1.1\r\nHost: x\r\n"
                b"Content-Length: 200\r\n\r\n")
        deadline = time.monotonic() + self.duration
        try:
            with socket.create_connection(("127.0.0.1",
                                           self.node.failsafe_port),
                                          timeout=self.duration + 5) as sock:
                sock.sendall(head)
                while time.monotonic() < deadline:
                    sock.sendall(b"x")
                    time.sleep(0.3)
        except OSError:
            with self._lock:
                self.closed += 1

    def start(self):
        for _ in range(self.count):
            thread = threading.Thread(target=self._one, daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def join(self):
        for thread in self.threads:
            thread.join(self.duration + 10)


def test_bad_failsafe_requests_change_nothing(fs_cluster):
    leader = fs_cluster.wait_healthy(HEALTHY_TIMEOUT)
    standby = [n for n in fs_cluster.nodes if n is not leader][0]
    token = fs_cluster.failsafe_token
    codes = {
        "none": post_failsafe(standby, None, "pg-x"),
        "wrong": post_failsafe(standby, "x" + token, "pg-x"),
        "prefix": post_failsafe(standby, token[:-1], "pg-x"),
        "malformed": post_failsafe(standby, token, None, raw_body="{leader"),
        "not a name": post_failsafe(standby, token, "PG_X"),
        "get": request(standby, "/failsafe", port=standby.failsafe_port)[0],
        "elsewhere": request(standby, "/primary",
                             port=standby.failsafe_port)[0],
        "probe port": request(standby, "/failsafe", "POST", "{}")[0],
    }
    assert codes == {"none": 401, "wrong": 401, "prefix": 401,
                     "malformed": 400, "not a name": 400, "get": 405,
                     "elsewhere": 404, "probe port": 404}, codes
    assert request(standby, "/failsafe", "POST", "x" * 4096,
                   {"Authorization": f"Bearer {token}"},
                   port=standby.failsafe_port)[0] == 413
    # The leader promises nobody: it would have to fence.
    assert post_failsafe(leader, token, standby.name) == 409
    assert leader.is_primary()
    # None of it made a promise; a right one does (to a name that holds no
    # lease, so it binds nothing).
    assert metric(standby, "pglease_failsafe_promise_seconds",
                  'leader="pg-x"') is None
    assert post_failsafe(standby, token, "pg-x") == 200
    # /metrics shows the promises as of the last tick.
    _wait(lambda: metric(standby, "pglease_failsafe_promise_seconds",
                         'leader="pg-x"'), 5 * RETRY, "the promise in /metrics")
    assert 0 < metric(standby, "pglease_failsafe_promise_seconds",
                      'leader="pg-x"') <= LEASE
    # The real leader's promise is still there beside it.
    assert metric(standby, "pglease_failsafe_promise_seconds",
                  f'leader="{leader.name}"') > 0
    # A burst is cut off by the rate limit (20 a second), wrong tokens and
    # right ones alike.
    burst = [post_failsafe(standby, "wrong", "pg-x") for _ in range(40)]
    assert 429 in burst and set(burst) <= {401, 429}, burst

    # Slow and wrong POSTs at the leader: its renewals keep their cadence.
    watch = renewload.RenewWatch(leader).start()
    log_start = len(leader.agent_log())
    slow = SlowPosts(leader, 6, duration=3 * 2).start()
    flood_until = time.monotonic() + 6
    while time.monotonic() < flood_until:
        post_failsafe(leader, "wrong", "pg-x")
    slow.join()
    _wait(lambda: len(watch.values) >= 4, 10 * RETRY, "four renewals")
    stats = renewload.cadence(watch.stop())
    assert slow.closed == 6, "slow POSTs were not cut off"
    assert stats and stats["max"] < RETRY + 0.5, stats
    assert not [e for e in leader.agent_log()[log_start:]
                if e.get("event") in ("tilt", "fence")]
    assert leader.is_primary()
    assert fs_cluster.lease_holder() == leader.name


def test_leader_cut_from_the_api_and_one_member_fences(fs_cluster):
    load = Load(fs_cluster, "fs_one_member")
    leader = load.primary
    odd = [n for n in fs_cluster.nodes if n is not leader][0]
    # odd checks another token: the leader's POST /failsafe gets 401.
    write_token(odd, "not-" + fs_cluster.failsafe_token)
    restart_agent(odd)
    fs_cluster.wait_healthy(HEALTHY_TIMEOUT)
    history_start = len(load.writer.history)
    log_start = len(leader.agent_log())
    leader.cut_api()
    cut = time.monotonic()
    try:
        _wait(lambda: not leader.is_primary(), RENEW_DEADLINE + 5,
              f"{leader.name} to fence")
        fenced = time.monotonic() - cut
        new = fs_cluster.wait_primary(4 * LEASE + 30, other_than=leader.name)
        took_over = time.monotonic() - cut
    finally:
        leader.restore_api()
        write_token(odd, fs_cluster.failsafe_token)
    assert events(leader, log_start, "fence")
    # Its last renewal and its last answers were sent before the cut.
    assert fenced < RENEW_DEADLINE + 1.0, fenced
    acks = list(zip(list(load.writer.history.acknowledged)[history_start:],
                    list(load.writer.history.ack_times)[history_start:]))
    old_last = max((at for (_, name, _), at in acks if name == leader.name),
                   default=None)
    if old_last is not None:
        assert old_last - cut < RENEW_DEADLINE + 0.5, old_last - cut
    first_new = load.writer.history.first_ack(cut, node=new.name)
    # Nobody writes before the lease could have expired: its last renewal
    # was at most one retry period before the cut.
    assert first_new is None or first_new[0] - cut >= LEASE - RETRY - 0.5, \
        first_new[0] - cut
    assert took_over >= LEASE - RETRY - 0.5, took_over
    # odd, which promised nothing, is usually the one that took over. Its
    # agent reads the right token again when it restarts: as a standby,
    # not as the primary (a stop of the primary's agent releases the
    # Lease, a second failover seconds after the first that this test
    # does not judge; it once left a rewound member waiting for WAL the
    # new primary no longer had).
    fs_cluster.wait_healthy(HEALTHY_TIMEOUT)
    if fs_cluster.lease_holder() == odd.name:
        # To the third member: the writer's check counts a write of an
        # earlier primary after a later one's, however planned.
        third = [n for n in fs_cluster.nodes if n not in (leader, odd)][0]
        result = odd.agentctl("switchover", "--to", third.name, "--wait",
                              timeout=60)
        assert result.returncode == 0, result.stdout + result.stderr
        fs_cluster.wait_healthy(HEALTHY_TIMEOUT)
    restart_agent(odd)
    fs_cluster.wait_healthy(HEALTHY_TIMEOUT)
    load.stop()


def rotated(node, start):
    """node's agent logged that it read a new token (failsafe_token_file
    is read again every 10 s)."""
    return any("new token" in e.get("msg", "")
               for e in events(node, start, "failsafe"))


def keeps_writing_without_the_api(local, leader, seconds):
    """The API cut from the leader for `seconds` (more than a lease
    duration): its members' answers keep it the writable primary."""
    others = [n for n in local.nodes if n is not leader]
    start = len(leader.agent_log())
    leader.cut_api()
    cut = time.monotonic()
    try:
        while time.monotonic() - cut < seconds:
            assert leader.is_primary(), \
                f"{leader.name} stopped writing {time.monotonic() - cut:.1f}s " \
                "into the cut"
            assert not any(n.is_primary() for n in others)
            time.sleep(0.2)
    finally:
        leader.restore_api()
    assert not events(leader, start, "fence")


def test_a_rotated_token_reaches_the_members_one_at_a_time(fs_cluster):
    """The token's Secret rotated: the kubelet updates each pod's copy at
    its own time, and a pod restarted meanwhile knows only the new token.
    Each agent reads its file again without a restart, accepts the
    previous token for a grace period, and as the leader asks with the
    previous token and again with the new one where it is refused: an API
    cut at any point of the rotation costs no write. (Last in the module:
    the grace period outlives it.)"""
    load = Load(fs_cluster, "fs_rotate")
    leader = load.primary
    late, restarted = [n for n in fs_cluster.nodes if n is not leader]
    old, new = fs_cluster.failsafe_token, secrets.token_hex(24)

    # The leader's copy first: it accepts both and still asks with the old.
    start = len(leader.agent_log())
    write_token(leader, new)
    _wait(lambda: rotated(leader, start), 20, f"{leader.name} to read it")
    for token in (old, new):
        assert post_failsafe(leader, token, late.name) == 409   # it leads
    assert post_failsafe(leader, "x" + new, late.name) == 401
    keeps_writing_without_the_api(fs_cluster, leader, 2 * LEASE)

    # One member restarted with the new copy knows nothing else; the other
    # still has the old one.
    write_token(restarted, new)
    restart_agent(restarted)
    fs_cluster.wait_healthy(HEALTHY_TIMEOUT)
    assert post_failsafe(restarted, old, "pg-x") == 401
    assert post_failsafe(late, new, "pg-x") == 401
    keeps_writing_without_the_api(fs_cluster, leader, 2 * LEASE)

    # The last copy: every member accepts both until the grace ends.
    start = len(late.agent_log())
    write_token(late, new)
    _wait(lambda: rotated(late, start), 20, f"{late.name} to read it")
    assert post_failsafe(late, old, "pg-x") == 200
    assert post_failsafe(late, new, "pg-x") == 200
    assert post_failsafe(late, "x" + old, "pg-x") == 401
    fs_cluster.failsafe_token = new
    history = load.stop()
    assert history.errors == 0, \
        f"{history.errors} failed writes ({history.last_error})"
    assert fs_cluster.lease_holder() == leader.name
