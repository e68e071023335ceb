"""The agent's HTTP API (docs/http-api.md) on a real three-node cluster:
every endpoint's code by role, /cluster against agentctl's JSON and its
schema, /metrics through `promtool check metrics` and scraped by a real
Prometheus server, /primary following a
switchover and a failover (the primary's pod killed), and bad clients (malformed requests, oversized bodies and
headers, slow and silent clients, bounded) while the lease renewals keep
their cadence and the control loop its tick."""

import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import pytest

import cluster as cluster_mod
import pgharness
import renewload
import schema_subset

_wait = cluster_mod._wait  # pylint: disable=protected-access
_seconds = cluster_mod._seconds  # pylint: disable=protected-access

SCHEMA_PATH = os.path.join(
    os.environ.get("PGLEASE_SOURCE_DIR")
    or os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))),
    "docs", "agentctl-cluster-show.schema.json")

MAX_CONNECTIONS = 16
REQUEST_TIMEOUT = 2
SETTINGS = dict(cluster_mod.DEFAULT_SETTINGS,
                http_request_timeout=f"{REQUEST_TIMEOUT}s",
                http_max_connections=str(MAX_CONNECTIONS),
                http_max_body="1kB")
RETRY = _seconds(SETTINGS["retry_period"])
# As in test_renewal.py: more than this between two renewals would be
# something holding the renewal up (the renew deadline is 3 s).
RENEW_GAP_LIMIT = RETRY + 0.5
HEALTHY_TIMEOUT = 90


@pytest.fixture(scope="module")
def http_cluster(module_cluster_factory):
    ports = set()
    while len(ports) < 3:
        ports.add(pgharness.free_port())
    # pg-2 on [::], which takes IPv4 too.
    per_node = {f"pg-{i}": {"http_listen": f"{'[::]' if i == 2 else '127.0.0.1'}"
                                           f":{port}"}
                for i, port in enumerate(sorted(ports))}
    local = module_cluster_factory(n=3, settings=SETTINGS,
                                   node_settings=per_node)
    for node in local.nodes:
        node.http_port = int(per_node[node.name]["http_listen"]
                             .rsplit(":", 1)[1])
    return local


def request(node, path, method="GET", body=None, headers=None, timeout=5):
    """(status, headers, body text) of one request to node's HTTP API."""
    conn = http.client.HTTPConnection("127.0.0.1", node.http_port,
                                      timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), \
            resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def code(node, path):
    try:
        return request(node, path)[0]
    except OSError:
        return None


def raw(node, data, timeout=5):
    """Sends raw bytes; returns what the server answered before closing."""
    with socket.create_connection(("127.0.0.1", node.http_port),
                                  timeout=timeout) as sock:
        sock.sendall(data)
        out = b""
        try:
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return out


def status_line(answer):
    line = answer.split(b"\r\n", 1)[0].decode("ascii", "replace")
    parts = line.split(" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def settled(local):
    """The primary answers 200 on /primary, every other member on
    /replica; returns the primary."""
    primary = local.wait_healthy(HEALTHY_TIMEOUT)

    def ok():
        return all(code(n, "/primary") == (200 if n is primary else 503)
                   and code(n, "/replica") == (503 if n is primary else 200)
                   for n in local.nodes)
    _wait(ok, 60, "/primary and /replica to match the roles",
          describe=lambda: {n.name: (code(n, "/primary"),
                                     code(n, "/replica"))
                            for n in local.nodes})
    return primary


def metric(text, name, labels=""):
    want = f"{name}{{{labels}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split(" ")[-1])
    return None


def test_every_endpoint_answers_by_role(http_cluster):
    primary = settled(http_cluster)
    replicas = [n for n in http_cluster.nodes if n is not primary]
    for node in http_cluster.nodes:
        for path in ("/health", "/liveness", "/readiness", "/read-only"):
            status, headers, body = request(node, path)
            assert status == 200, (node.name, path, body)
            assert headers["Content-Type"] == "application/json"
            answer = json.loads(body)
            assert answer["node"] == node.name
            assert answer["role"] == ("primary" if node is primary
                                      else "replica")
    status, _, body = request(primary, "/primary")
    assert status == 200 and json.loads(body)["lease"] is True
    for replica in replicas:
        status, _, body = request(replica, "/primary")
        assert status == 503 and json.loads(body)["lease"] is False
        assert request(replica, "/replica?lag=16MB")[0] == 200
        assert request(replica, "/replica?lag=bogus")[0] == 400
        assert request(replica, "/master")[0] == 503
    assert request(primary, "/replica")[0] == 503
    # HEAD answers the code without a body; other methods and paths fail.
    assert request(primary, "/primary", method="HEAD")[0] == 200
    assert request(primary, "/primary", method="POST")[0] == 405
    assert request(primary, "/nowhere")[0] == 404
    # pg-2 listens on [::]: IPv6 as well as the IPv4 asked above.
    conn = http.client.HTTPConnection("::1", http_cluster.node("pg-2")
                                      .http_port, timeout=5)
    try:
        conn.request("GET", "/liveness")
        assert conn.getresponse().status == 200
    finally:
        conn.close()
    # Kept-alive connections (HAProxy's) get one answer per request, each
    # within the request timeout of the previous answer.
    conn = http.client.HTTPConnection("127.0.0.1", primary.http_port,
                                      timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/primary")
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            time.sleep(REQUEST_TIMEOUT * 0.6)
    finally:
        conn.close()


def test_cluster_is_agentctls_json(http_cluster):
    primary = settled(http_cluster)
    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        schema = json.load(handle)
    for node in http_cluster.nodes:
        status, headers, body = request(node, "/cluster")
        assert status == 200 and headers["Content-Type"] == \
            "application/json"
        view = json.loads(body)
        assert schema_subset.validate(view, schema) == []
        result = node.agentctl("cluster", "show", "--json")
        assert result.returncode == 0, result.stderr
        ctl = json.loads(result.stdout)
        assert view["lease"]["holder"] == ctl["lease"]["holder"] == \
            primary.name
        assert sorted(view) == sorted(ctl)
        assert [m["name"] for m in view["members"]] == \
            [m["name"] for m in ctl["members"]]
        assert [m["role"] for m in view["members"]] == \
            [m["role"] for m in ctl["members"]]


def test_metrics_pass_promtool(http_cluster):
    primary = settled(http_cluster)
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("no promtool (Debian's prometheus package)")
    for node in http_cluster.nodes:
        status, headers, body = request(node, "/metrics")
        assert status == 200
        assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
        check = subprocess.run([promtool, "check", "metrics"], input=body,
                               capture_output=True, text=True, timeout=30,
                               check=False)
        assert check.returncode == 0, check.stdout + check.stderr
        assert check.stdout + check.stderr == "", check.stdout + check.stderr
        is_primary = node is primary
        assert metric(body, "pglease_lease_held") == float(is_primary)
        assert metric(body, "pglease_role", 'role="primary"') == \
            float(is_primary)
        assert metric(body, "pglease_build_info") is None  # labelled
        assert 'pglease_build_info{version="' in body
        assert metric(body, "pglease_timeline") == primary.timeline()
        if is_primary:
            assert metric(body, "pglease_lease_remaining_seconds") > 0
            for other in http_cluster.nodes:
                if other is not primary:
                    assert metric(body, "pglease_standby_lag_bytes",
                                  f'standby="{other.name}"') is not None
        else:
            assert metric(body, "pglease_replication_lag_bytes") is not None
        assert metric(body, "pglease_api_requests_total",
                      'client="loop",verb="GET",code="200"') > 0
        if is_primary:
            assert metric(body, "pglease_api_requests_total",
                          'client="renewer",verb="PUT",code="200"') > 0
            assert metric(body, "pglease_api_request_duration_seconds_count",
                          'client="renewer",verb="PUT"') > 0
        assert metric(body, "pglease_http_requests_total",
                      'endpoint="primary",code="200"' if is_primary else
                      'endpoint="primary",code="503"') >= 1


def tail(path, size=2000):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()[-size:]


def test_prometheus_scrapes_the_cluster(http_cluster, workdir, reaper):
    """A real Prometheus server (Debian's) scrapes the three members'
    /metrics; one series is queried back through its HTTP API."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("no prometheus (Debian's prometheus package)")
    primary = settled(http_cluster)
    home = os.path.join(workdir, "prometheus")
    os.makedirs(os.path.join(home, "data"))
    pgharness.chown_to_runner(home)
    pgharness.chown_to_runner(os.path.join(home, "data"))
    targets = ", ".join(f'"127.0.0.1:{n.http_port}"'
                        for n in http_cluster.nodes)
    config = os.path.join(home, "prometheus.yml")
    with open(config, "w", encoding="utf-8") as f:
        f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                "scrape_configs:\n  - job_name: pglease\n"
                f"    static_configs:\n      - targets: [{targets}]\n")
    port = pgharness.free_port()
    reaper.spawn([binary, f"--config.file={config}",
                  f"--storage.tsdb.path={os.path.join(home, 'data')}",
                  f"--web.listen-address=127.0.0.1:{port}"],
                 logfile=os.path.join(home, "prometheus.log"))

    def query(expr):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/api/v1/query?query=" + expr)
            answer = json.loads(conn.getresponse().read())
        except (OSError, ValueError):
            return None
        finally:
            conn.close()
        if answer.get("status") != "success":
            return None
        return {r["metric"]["instance"]: float(r["value"][1])
                for r in answer["data"]["result"]}

    instances = {f"127.0.0.1:{n.http_port}": n for n in http_cluster.nodes}
    held = _wait(lambda: (lambda r: r if r and len(r) == 3 else None)(
        query("pglease_lease_held")), 60,
        "Prometheus to scrape pglease_lease_held from the three members",
        describe=lambda: tail(os.path.join(home, "prometheus.log")))
    assert {instances[i].name: v for i, v in held.items()} == \
        {n.name: float(n is primary) for n in http_cluster.nodes}
    up = query("up")
    assert up and all(v == 1.0 for v in up.values()), up


def test_primary_follows_a_switchover(http_cluster):
    primary = settled(http_cluster)
    target = next(n for n in http_cluster.nodes if n is not primary)
    result = primary.agentctl("switchover", "--to", target.name, "--wait",
                              "--timeout", "60", timeout=90)
    assert result.returncode == 0, result.stdout + result.stderr
    _wait(lambda: code(target, "/primary") == 200
          and code(primary, "/primary") == 503, 30,
          "/primary to move to the new primary",
          describe=lambda: (code(target, "/primary"),
                            code(primary, "/primary")))
    # At no moment after that do two members answer 200 on /primary.
    assert [n.name for n in http_cluster.nodes
            if code(n, "/primary") == 200] == [target.name]
    _wait(lambda: code(primary, "/replica") == 200, 60,
          "the old primary to answer /replica")
    old = request(primary, "/metrics")[2]
    new = request(target, "/metrics")[2]
    assert metric(old, "pglease_switchovers_total") == 1
    assert metric(new, "pglease_promotions_total") == 1
    assert metric(new, "pglease_failovers_total") == 0


def test_primary_follows_a_failover(http_cluster):
    primary = settled(http_cluster)
    others = [n for n in http_cluster.nodes if n is not primary]
    primary.kill_pod()
    _wait(lambda: [n.name for n in others if code(n, "/primary") == 200],
          60, "a standby to answer 200 on /primary after the kill",
          describe=lambda: {n.name: code(n, "/primary") for n in others})
    (new,) = [n for n in others if code(n, "/primary") == 200]
    assert http_cluster.wait_primary(30, other_than=primary.name) is new
    metrics = request(new, "/metrics")[2]
    assert metric(metrics, "pglease_failovers_total") == 1
    # The killed member, started again, rejoins and answers /replica.
    primary.start_pod(init=True)
    _wait(lambda: code(primary, "/replica") == 200, 120,
          "the old primary to answer /replica after its restart")
    assert code(primary, "/primary") == 503


class SlowClients:
    """`n` connections that send a request one byte every `pause` seconds
    (slowloris), and as many that send nothing; each stops after
    `duration` seconds. Counts how many of each the server closed."""

    def __init__(self, node, n, pause, duration):
        self.node, self.n, self.pause, self.duration = node, n, pause, \
            duration
        self.closed_silent = 0
        self.closed_slow = 0
        self.threads = []
        self.lock = threading.Lock()

    def _trickle(self):
        payload = b"GET /primary HTTP/1.1\r\nHost: x\r\nX-Slow: " + \
            b"a" * 200
        end = time.monotonic() + self.duration
        try:
            with socket.create_connection(
                    ("127.0.0.1", self.node.http_port), timeout=5) as sock:
                for byte in payload:
                    if time.monotonic() > end:
                        break
                    sock.sendall(bytes([byte]))
                    time.sleep(self.pause)
        except OSError:
            with self.lock:
                self.closed_slow += 1

    def _silent(self):
        try:
            with socket.create_connection(
                    ("127.0.0.1", self.node.http_port), timeout=5) as sock:
                sock.settimeout(self.duration)
                if sock.recv(1) == b"":
                    with self.lock:
                        self.closed_silent += 1
        except OSError:
            pass

    def start(self):
        for target in [self._trickle] * self.n + [self._silent] * self.n:
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def join(self):
        for thread in self.threads:
            thread.join(self.duration + 10)


class LivenessPoll:
    """Asks /liveness every 200 ms on a connection of its own and keeps
    the codes."""

    def __init__(self, node):
        self.node = node
        self.codes = []
        self._stop = threading.Event()
        self._thread = None

    def _run(self):
        while not self._stop.is_set():
            self.codes.append(code(self.node, "/liveness"))
            self._stop.wait(0.2)

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(10)


def test_bad_clients_get_their_codes_and_the_loop_keeps_its_tick(
        http_cluster):
    primary = settled(http_cluster)
    log_start = len(primary.agent_log())
    before = metric(request(primary, "/metrics")[2], "pglease_ticks_total")
    watch = renewload.RenewWatch(primary).start()
    started = time.monotonic()

    liveness = LivenessPoll(primary).start()
    # Slow and silent clients, bounded: a quarter of the connection limit
    # each.
    slow = SlowClients(primary, MAX_CONNECTIONS // 4, 0.3,
                       duration=4 * REQUEST_TIMEOUT).start()
    # Malformed requests: a 400 (or a plain close), never a hang.
    for junk in (b"GARBAGE\r\n\r\n", b"GET\r\n\r\n",
                 b"GET /primary HTTP/9.9\r\n\r\n",
                 b"GET /primary HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n",
                 b"\x00\xff\x16\x03\x01" * 100):
        answer = raw(primary, junk)
        assert status_line(answer) in (None, 400, 505), answer[:200]
    # A body over http_max_body, declared or chunked: 413, not read.
    status, _, _ = request(primary, "/primary", method="POST",
                           body=b"x" * 4096)
    assert status == 413
    answer = raw(primary, b"POST /primary HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Length: 100000000\r\n\r\n" + b"x" * 1000)
    assert status_line(answer) == 413
    chunked = b"".join(b"400\r\n" + b"y" * 1024 + b"\r\n" for _ in range(4))
    answer = raw(primary, b"POST /primary HTTP/1.1\r\nHost: x\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n" + chunked + b"0\r\n\r\n")
    assert status_line(answer) == 413
    # Headers larger than the per-connection memory: refused.
    answer = raw(primary, b"GET /primary HTTP/1.1\r\nHost: x\r\nX-Big: " +
                 b"z" * 100000 + b"\r\n\r\n")
    assert status_line(answer) in (None, 413, 431), answer[:200]

    slow.join()
    liveness.stop()
    # Silent clients, and slow ones however steadily they send, are closed
    # once http_request_timeout has passed since their request began.
    assert slow.closed_silent == MAX_CONNECTIONS // 4
    assert slow.closed_slow == MAX_CONNECTIONS // 4
    _wait(lambda: len(watch.values) >= 4, 10 * RETRY, "four renewals seen")
    intervals = watch.stop()
    elapsed = time.monotonic() - started
    stats = renewload.cadence(intervals)
    assert stats and stats["max"] < RENEW_GAP_LIMIT, \
        f"renewals {stats} apart under bad clients"
    # The loop ticked on: no TILT, no fence, and its tick counter moved
    # about once a retry period.
    bad = [e for e in primary.agent_log()[log_start:]
           if e.get("event") in ("tilt", "fence", "renew")]
    assert not bad, bad[:5]
    status, _, body = request(primary, "/metrics")
    assert status == 200
    after = metric(body, "pglease_ticks_total")
    # A held loop would not tick at all; a third of the nominal rate
    # leaves room for a loaded machine.
    assert after - before >= elapsed / (3 * RETRY), (before, after, elapsed)
    # And it answered /liveness all along, each time with a recent tick.
    assert liveness.codes and set(liveness.codes) == {200}, liveness.codes
    assert request(primary, "/primary")[0] == 200
    assert metric(body, "pglease_http_requests_total",
                  'endpoint="other",code="413"') >= 3
    print(f"bad clients: renew cadence p50 {stats['p50']:.3f}s max "
          f"{stats['max']:.3f}s over {stats['n']} renewals; "
          f"{after - before:.0f} ticks in {elapsed:.1f}s")
