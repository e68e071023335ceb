"""Leader election (issue 3): three `pglease-agent --election-only` agents
against the Kubernetes API emulator over verified HTTPS, or with
PGLEASE_KUBE=real (the k8s suite) against the real kube-apiserver of
scripts/k8s, in a namespace of their own with the chart's RBAC, each agent
through a TCP proxy (tests/k8s/realkube.py) with a ServiceAccount token.

What an agent believes is read from its JSON log: it believes it leads when
its last "acquire" line comes after its last "fence"/"release" line (and the
process is alive). A monitor thread samples the Lease and every log all
through each test, and each test ends by asserting that no sample ever
showed two agents that believed they led."""

import base64
import calendar
import json
import os
import re
import signal
import threading
import time

import pytest

import pgharness
import renewload
from kubeemu import KUBECTL, Emulator, EmulatorError

REAL = os.environ.get("PGLEASE_KUBE") == "real"
NS = "default"
CLUSTER = "pg"
LEASE = f"{CLUSTER}-leader"
NODES = ("pg-0", "pg-1", "pg-2")
LEASE_DURATION = 4.0
RENEW_DEADLINE = 3.0
RETRY_PERIOD = 1.0
API_TIMEOUT = 1.0
TICK_MAX = RETRY_PERIOD * 1.1          # retry_period + 10% jitter
SLACK = 0.5                            # scheduling and request latency
MICROTIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
AGENT_VERBS = ["get", "list", "watch", "create", "update", "patch"]


def ms(seconds):
    return f"{round(seconds * 1000)}ms"


def parse_time(stamp):
    """RFC 3339 UTC ("...T20:51:44.791Z", any number of fractional digits)
    as Unix seconds."""
    main, _, frac = stamp.rstrip("Z").partition(".")
    whole = calendar.timegm(time.strptime(main, "%Y-%m-%dT%H:%M:%S"))
    return whole + (float("0." + frac) if frac else 0.0)


class Agent:
    """One election-only agent: its files, token, process and log."""

    def __init__(self, cluster, name):
        self.cluster = cluster
        self.name = name
        self.dir = pgharness.make_dir(os.path.join(cluster.workdir, name))
        self.run_dir = pgharness.make_dir(os.path.join(self.dir, "run"),
                                          0o700)
        self.token_file = os.path.join(self.dir, "token")
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        self.conf = os.path.join(self.dir, "pglease.conf")
        self.log = os.path.join(self.dir, "agent.log")
        self.token = None
        self.secret = None          # real server: the token's Secret
        self.proc = None
        self.generation = 0

    def _write(self, path, text, mode=0o600):
        tmp = path + ".new"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        pgharness.chown_to_runner(tmp)
        os.replace(tmp, path)

    def set_token(self, name):
        """Give the agent the token `name` in its token file (atomically,
        as the kubelet's projected volume does). The emulator allows
        `name` itself. The real server issues a token of the chart's
        ServiceAccount bound to a Secret called `name`, so that deleting
        that Secret revokes it (self.token stays the id of the agent's
        path to the server, its TCP proxy)."""
        kube = self.cluster.emu
        if REAL:
            kube.admin.must("POST", f"/api/v1/namespaces/{self.cluster.ns}"
                            "/secrets", {
                                "apiVersion": "v1", "kind": "Secret",
                                "metadata": {"name": name}})
            kube.write_token(self.token, kube.request_token(
                self.name, bound_kind="Secret", bound_name=name))
            self.secret = name
            return
        kube.add_token(name, self.name, verbs=AGENT_VERBS)
        self._write(self.token_file, name + "\n")
        self.token = name

    def configure(self):
        emu = self.cluster.emu
        if REAL:
            # The proxy, the CA and a tokenFile; the token in it is
            # replaced at once by one bound to a Secret of ours.
            self.token = f"path-{self.name}"
            emu.add_token(self.token, self.name)
            emu.kubeconfig(self.kubeconfig, self.token,
                           namespace=self.cluster.ns)
            pgharness.chown_to_runner(self.kubeconfig)
            self.token_file = emu.token_files[self.token]
            self.set_token(f"tok-{self.name}-{self.generation}")
        else:
            self.set_token(f"tok-{self.name}-{self.generation}")
            self._write(self.kubeconfig, "\n".join([
                "apiVersion: v1", "kind: Config", "clusters:", "- cluster:",
                "    certificate-authority-data: "
                + base64.b64encode(emu.ca_pem()).decode(),
                f"    server: {emu.url}", "  name: kubeemu", "contexts:",
                "- context:", "    cluster: kubeemu", f"    namespace: {NS}",
                f"    user: {self.name}", "  name: kubeemu",
                "current-context: kubeemu", "users:", f"- name: {self.name}",
                "  user:", f"    tokenFile: {self.token_file}", ""]))
        self._write(self.conf, "".join(f"{k}={v}\n" for k, v in (
            ("node_name", self.name), ("kube_config", self.kubeconfig),
            ("run_dir", self.run_dir),
            ("lease_duration", ms(LEASE_DURATION)),
            ("renew_deadline", ms(RENEW_DEADLINE)),
            ("retry_period", ms(RETRY_PERIOD)),
            ("status_interval", "2s"),
            ("api_timeout", ms(self.cluster.api_timeout)),
            ("log_format", "json"))), 0o644)

    def start(self):
        # The test run's own PGLEASE_* variables (build and source
        # directories) are not configuration keys: keep them from the agent.
        env = {k: None for k in os.environ
               if k.startswith("PGLEASE_") and k != pgharness.TAG_ENV}
        self.proc = self.cluster.reaper.spawn(
            [self.cluster.binaries.agent, "-c", self.conf, "--election-only"],
            logfile=self.log, env=env)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, signo):
        os.kill(self.proc.pid, signo)

    def events(self):
        """The JSON lines of the log, parsed (others skipped)."""
        out = []
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                for line in f:
                    line = line.strip()
                    if line.startswith("{") and line.endswith("}"):
                        try:
                            out.append(json.loads(line))
                        except ValueError:
                            pass
        except FileNotFoundError:
            pass
        return out

    def lines(self, event):
        return [e for e in self.events() if e.get("event") == event]

    def believes_leader(self):
        if not self.alive():
            return False
        belief = False
        for e in self.events():
            if e.get("event") == "acquire":
                belief = True
            elif e.get("event") in ("fence", "release"):
                belief = False
        return belief

    def log_text(self):
        try:
            with open(self.log, encoding="utf-8", errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


class Monitor(threading.Thread):
    """Samples the Lease and every agent's belief until stopped; records
    samples in which more than one agent believed it led."""

    def __init__(self, cluster, interval=0.02):
        super().__init__(daemon=True)
        self.cluster = cluster
        self.interval = interval
        # Each read of the real server is a new TLS connection as the
        # admin: every 0.1 s at most, not to load the shared machine's two
        # cores (the beliefs, read from the logs, are sampled as often).
        self.read_every = 0.1 if REAL else 0.0
        self.halt = threading.Event()
        self.samples = 0
        self.violations = []
        self.strict_holder = False
        self.mismatches = []

    def run(self):
        holder, read_at = None, 0.0
        while not self.halt.is_set():
            if time.monotonic() - read_at >= self.read_every:
                read_at = time.monotonic()
                holder = None
                try:
                    lease = self.cluster.lease(timeout=1)
                    holder = lease["spec"].get("holderIdentity") \
                        if lease else None
                except (EmulatorError, OSError):
                    pass
            believers = [a.name for a in self.cluster.agents.values()
                         if a.believes_leader()]
            self.samples += 1
            if len(believers) > 1:
                self.violations.append((time.time(), holder, believers))
            if self.strict_holder and holder is not None and \
                    believers != [holder]:
                self.mismatches.append((time.time(), holder, believers))
            self.halt.wait(self.interval)

    def stop(self):
        self.halt.set()
        self.join(10)


class ElectionCluster:
    """The emulator (or the real server), three agents and the monitor."""

    def __init__(self, workdir, reaper, binaries, api_timeout=API_TIMEOUT):
        self.api_timeout = api_timeout
        self.workdir = workdir
        self.reaper = reaper
        self.binaries = binaries
        if REAL:
            import realkube  # pylint: disable=import-outside-toplevel
            # A namespace of its own on the shared server; the tokens are
            # the test's to replace (no background rotation).
            self.ns = f"pgl-{os.urandom(4).hex()}"
            self.emu = realkube.RealKube(os.path.join(workdir, "kube"),
                                         namespace=self.ns,
                                         cluster_name=CLUSTER,
                                         rotate_every=10 ** 6)
        else:
            self.ns = NS
            self.emu = Emulator(os.path.join(workdir, "emu"), tls=True,
                                quiet=True)
        self.agents = {}
        self.monitor = None

    def start(self):
        self.emu.start()
        for name in NODES:
            self.emu.create_pod(self.ns, name,
                                {"pglease.io/cluster": CLUSTER})
            agent = Agent(self, name)
            agent.configure()
            self.agents[name] = agent
        for agent in self.agents.values():
            agent.start()
        self.monitor = Monitor(self)
        self.monitor.start()
        return self

    def close(self):
        if self.monitor:
            self.monitor.stop()
        self.emu.close()

    def lease(self, timeout=5):
        status, body, _ = self.emu.request(
            "GET", self.emu.lease_path(self.ns, LEASE), timeout=timeout)
        if status == 404:
            return None
        if status != 200:
            raise EmulatorError(f"GET lease: {status} {body}")
        return body

    def holder(self):
        lease = self.lease()
        return lease["spec"].get("holderIdentity", "") if lease else ""

    def wait_holder(self, timeout, other_than=None):
        """Wait until a live agent (not `other_than`) holds the Lease and
        believes it leads; return (agent, seconds waited)."""
        start = time.monotonic()

        def held():
            name = self.holder()
            agent = self.agents.get(name)
            if agent and name != other_than and agent.alive() and \
                    agent.believes_leader():
                return agent
            return None

        agent = pgharness.wait_for(held, timeout,
                                   f"a leader other than {other_than}",
                                   interval=0.01, ignore=(EmulatorError,
                                                          OSError))
        return agent, time.monotonic() - start

    def assert_never_two_leaders(self):
        monitor = self.monitor
        assert monitor.samples > 0
        assert not monitor.violations, \
            f"two agents believed they led: {monitor.violations[:5]}\n" + \
            self.logs()

    def logs(self):
        return "".join(f"--- {a.name}\n{a.log_text()}"
                       for a in self.agents.values())


@pytest.fixture
def make_cluster(workdir, reaper, binaries):
    """make_cluster(api_timeout=...) -> a started ElectionCluster, closed
    at teardown."""
    made = []

    def make(api_timeout=API_TIMEOUT):
        elect = ElectionCluster(workdir, reaper, binaries, api_timeout)
        made.append(elect)
        return elect.start()

    yield make
    for elect in made:
        elect.close()


@pytest.fixture
def cluster(make_cluster):
    return make_cluster()


def first_leader(cluster):
    agent, _ = cluster.wait_holder(LEASE_DURATION + 2 * TICK_MAX + SLACK)
    return agent


def cut_off_holder(cluster, cut):
    """Cut the holder off the API server (`cut`: an emulator fault mode on
    its token) and wait for a successor. Returns the wall-clock times of
    its last successful renewal, its "fence" line and the successor's
    "acquire" line, and those two lines."""
    leader = first_leader(cluster)
    time.sleep(RETRY_PERIOD)
    cluster.emu.fault(leader.token, cut)
    time.sleep(0.3)                 # a renewal in flight lands or fails
    lease = cluster.lease()
    assert lease["spec"]["holderIdentity"] == leader.name
    last_renewal = parse_time(lease["spec"]["renewTime"])
    successor, _ = cluster.wait_holder(LEASE_DURATION + 3 * TICK_MAX + 2,
                                       other_than=leader.name)
    pgharness.wait_for(lambda: leader.lines("fence"), RENEW_DEADLINE,
                       f"{leader.name} to log the loss")
    fence = leader.lines("fence")[0]
    acquire = successor.lines("acquire")[-1]
    fenced_at, acquired_at = parse_time(fence["time"]), \
        parse_time(acquire["time"])
    print(f"\ncut off {leader.name} ({cut}, api_timeout "
          f"{cluster.api_timeout:g}s): fence "
          f"+{fenced_at - last_renewal:.3f}s after its last renewal, "
          f"{successor.name} acquired +{acquired_at - last_renewal:.3f}s "
          f"(renew_deadline {RENEW_DEADLINE:g}s, lease_duration "
          f"{LEASE_DURATION:g}s)")
    return fenced_at, acquired_at, last_renewal, fence, acquire


def test_exactly_one_holder_at_every_sample(cluster):
    leader = first_leader(cluster)
    cluster.monitor.strict_holder = True
    before = cluster.monitor.samples
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        time.sleep(0.1)
    cluster.monitor.strict_holder = False
    assert cluster.monitor.samples - before > 50
    assert not cluster.monitor.mismatches, \
        f"the Lease holder and the believers disagreed: " \
        f"{cluster.monitor.mismatches[:5]}\n" + cluster.logs()
    assert cluster.holder() == leader.name
    assert len(leader.lines("acquire")) == 1
    assert cluster.lease()["spec"]["leaseTransitions"] == 0
    cluster.assert_never_two_leaders()


def test_kill9_of_the_holder_fails_over_within_lease_duration_plus_two_retry_periods(cluster):
    leader = first_leader(cluster)
    transitions = cluster.lease()["spec"]["leaseTransitions"]
    time.sleep(RETRY_PERIOD)        # let the followers see a renewal or two
    leader.signal(signal.SIGKILL)
    leader.proc.wait(10)
    bound = LEASE_DURATION + 2 * RETRY_PERIOD
    successor, took = cluster.wait_holder(bound + SLACK,
                                          other_than=leader.name)
    print(f"\nkill -9 of {leader.name}: {successor.name} held the lease "
          f"after {took:.2f}s (bound {bound:g}s = lease_duration + "
          f"2 x retry_period)")
    assert took <= bound
    assert cluster.lease()["spec"]["leaseTransitions"] == transitions + 1
    cluster.assert_never_two_leaders()


@pytest.mark.parametrize("cut", ["refuse", "hang"])
def test_cut_off_holder_fences_by_the_renew_deadline_before_anyone_acquires(cluster, cut):
    fenced_at, acquired_at, last_renewal, fence, acquire = \
        cut_off_holder(cluster, cut)
    assert fence["msg"].startswith("lease lost")
    # The log stamps carry milliseconds; the deadline is checked on ticks.
    assert fenced_at - last_renewal <= RENEW_DEADLINE + TICK_MAX + 0.01, \
        cluster.logs()
    assert fenced_at < acquired_at, \
        f"{fence['node']} fenced at {fence['time']}, after " \
        f"{acquire['node']} acquired at {acquire['time']}\n" + cluster.logs()
    cluster.assert_never_two_leaders()


def test_api_server_outage_fences_every_leader_and_one_leads_after(cluster):
    leader = first_leader(cluster)
    time.sleep(RETRY_PERIOD)
    # Every agent refused first, so that the renewTime read next is that of
    # the last renewal the holder could make: one landing between the read
    # and the stop would make the fence look a retry_period late (the
    # renewer renews exactly every retry_period, without the tick's jitter).
    cluster.emu.fault("*", "refuse")
    last_renewal = parse_time(cluster.lease()["spec"]["renewTime"])
    # The real server is shared: its outage, as every agent sees it, is
    # the refusal on every path (SIGSTOP and a restart of kube-apiserver
    # itself are tests/k8s/test_real_faults.py's).
    if not REAL:
        cluster.emu.stop()
    stopped = time.monotonic()
    pgharness.wait_for(lambda: leader.lines("fence"),
                       RENEW_DEADLINE + TICK_MAX + 2 * API_TIMEOUT + SLACK,
                       f"{leader.name} to log the loss")
    while time.monotonic() < stopped + LEASE_DURATION + 2:
        time.sleep(0.1)
    for agent in cluster.agents.values():
        assert not agent.believes_leader(), cluster.logs()
    led = [a for a in cluster.agents.values() if a.lines("acquire")]
    assert led == [leader]
    fence = leader.lines("fence")[-1]
    took = parse_time(fence["time"]) - last_renewal
    print(f"\nAPI server down: {leader.name} logged '{fence['msg']}' "
          f"{took:.2f}s after its last renewal (bound renew_deadline + "
          f"retry_period = {RENEW_DEADLINE + RETRY_PERIOD:g}s)")
    assert fence["msg"].startswith("lease lost")
    assert took <= RENEW_DEADLINE + RETRY_PERIOD, cluster.logs()

    back = time.monotonic()
    if REAL:
        cluster.emu.clear_faults()
    else:
        cluster.emu.start()
    agent, _ = cluster.wait_holder(LEASE_DURATION + 2 * TICK_MAX + SLACK)
    print(f"API server back: {agent.name} leads "
          f"{time.monotonic() - back:.2f}s after the restart began")
    time.sleep(2 * RETRY_PERIOD)
    believers = [a.name for a in cluster.agents.values()
                 if a.believes_leader()]
    assert believers == [cluster.holder()], cluster.logs()
    cluster.assert_never_two_leaders()


def rotate_and_revoke_on_the_real_server(cluster):
    """Every agent gets a new token, bound to a new Secret, and the old
    Secrets are deleted, which revokes the old tokens. Waits until the
    server refuses every old token (it may accept one for as long as it
    caches a successful authentication) and the holder has renewed twice
    since: with a new token, since its old one is refused."""
    kube = cluster.emu
    old = {}
    for agent in cluster.agents.values():
        old[agent.name] = (agent.secret, kube.bearer(agent.token))
        agent.generation += 1
        agent.set_token(f"tok-{agent.name}-{agent.generation}")
    started = time.monotonic()
    for secret, _ in old.values():
        kube.admin.must("DELETE", f"/api/v1/namespaces/{cluster.ns}/"
                        f"secrets/{secret}", ok=(200,))
    path = kube.lease_path(cluster.ns, LEASE)
    pgharness.wait_for(
        lambda: all(kube.admin.request("GET", path, token=token)[0] == 401
                    for _, token in old.values()), 60,
        "the server to refuse every revoked token", interval=0.5)
    refused = time.monotonic()
    renewed = parse_time(cluster.lease()["spec"]["renewTime"])
    pgharness.wait_for(
        lambda: parse_time(cluster.lease()["spec"]["renewTime"]) >=
        renewed + 2 * RETRY_PERIOD, 4 * TICK_MAX + SLACK,
        "the holder to renew twice with its new token", interval=0.1)
    print(f"\ntokens revoked (bound Secrets deleted): the server refused "
          f"the old ones {refused - started:.1f}s later; the holder renews "
          "with its new one")


def test_token_rotation_on_disk_does_not_interrupt_the_holder(cluster):
    leader = first_leader(cluster)
    time.sleep(2 * RETRY_PERIOD)
    transitions = cluster.lease()["spec"]["leaseTransitions"]
    if REAL:
        rotate_and_revoke_on_the_real_server(cluster)
    else:
        rotate_and_revoke_in_the_emulator(cluster, leader)
    assert cluster.holder() == leader.name
    assert leader.believes_leader()
    assert not leader.lines("fence"), leader.log_text()
    assert not leader.lines("renew"), leader.log_text()
    assert cluster.lease()["spec"]["leaseTransitions"] == transitions
    cluster.assert_never_two_leaders()


def rotate_and_revoke_in_the_emulator(cluster, leader):
    """Every agent gets a new token; the old ones are removed at once (401
    from then on); waits until the leader has renewed twice, and every
    follower listed once, with its new one."""
    old_tokens = {}
    for agent in cluster.agents.values():
        old_tokens[agent.name] = agent.token
        agent.generation += 1
        agent.set_token(f"tok-{agent.name}-{agent.generation}")
    for old in old_tokens.values():
        cluster.emu.remove_token(old)
    # A follower sends nothing while its Lease watch stands (lease_watch):
    # break the watches, so that the followers' next requests meet the
    # removed token too.
    cluster.emu.watches(action="close")

    def all_use_new_tokens():
        stats = cluster.emu.stats()["tokens"]
        # The leader's renewals; a follower's list (its new watch is
        # counted by the emulator only when it ends).
        return all(stats.get(a.token, {}).get("codes", {}).get("200", 0) >=
                   (2 if a is leader else 1) for a in cluster.agents.values())

    # A removed token gets 401, and the agent re-reads its file at once.
    pgharness.wait_for(all_use_new_tokens, 4 * TICK_MAX + SLACK,
                       "every agent to use its new token")
    time.sleep(2 * RETRY_PERIOD)
    stats = cluster.emu.stats()["tokens"]
    print("\nafter rotation: " + ", ".join(
        f"{name}: old {stats.get(old, {}).get('codes', {})} new "
        f"{stats.get(cluster.agents[name].token, {}).get('codes', {})}"
        for name, old in old_tokens.items()))


def test_sigterm_of_the_holder_releases_and_another_takes_over_at_once(cluster):
    leader = first_leader(cluster)
    time.sleep(RETRY_PERIOD)
    leader.signal(signal.SIGTERM)
    assert leader.proc.wait(10) == 0
    successor, took = cluster.wait_holder(LEASE_DURATION,
                                          other_than=leader.name)
    released = parse_time(leader.lines("release")[-1]["time"])
    acquired = parse_time(successor.lines("acquire")[-1]["time"])
    print(f"\nSIGTERM of {leader.name}: released, {successor.name} "
          f"acquired {acquired - released:.3f}s later "
          f"(lease_duration {LEASE_DURATION:g}s)")
    assert acquired - released <= TICK_MAX + SLACK

    # Now the released record itself: hold the remaining follower still
    # while the new holder stops, so that nobody takes it meanwhile.
    follower = next(a for a in cluster.agents.values()
                    if a.alive() and a is not successor)
    follower.signal(signal.SIGSTOP)
    try:
        successor.signal(signal.SIGTERM)
        assert successor.proc.wait(10) == 0
        spec = cluster.lease()["spec"]
        assert spec["holderIdentity"] == ""
        assert spec["leaseDurationSeconds"] == 1
        assert MICROTIME.fullmatch(spec["renewTime"])
    finally:
        follower.signal(signal.SIGCONT)
    agent, took = cluster.wait_holder(LEASE_DURATION, other_than="")
    assert agent is follower
    assert took <= TICK_MAX + SLACK
    cluster.assert_never_two_leaders()


@pytest.mark.skipif(not REAL and not os.access(KUBECTL, os.X_OK),
                    reason="kubectl not installed")
def test_kubectl_shows_the_lease_with_microtime(cluster):
    leader = first_leader(cluster)
    time.sleep(RETRY_PERIOD)
    out = cluster.emu.kubectl("get", "lease", LEASE, "-n", cluster.ns,
                              "-o", "yaml")
    assert out.returncode == 0, out.stderr
    text = out.stdout
    print("\n" + text)
    assert re.search(rf"^  holderIdentity: {leader.name}$", text, re.M)
    assert re.search(rf"^  leaseDurationSeconds: {LEASE_DURATION:g}$",
                     text, re.M)
    renew = re.search(r"^  renewTime: \"?([^\"\n]*)\"?$", text, re.M)
    assert renew and MICROTIME.fullmatch(renew.group(1)), text
    acquire = re.search(r"^  acquireTime: \"?([^\"\n]*)\"?$", text, re.M)
    assert acquire and MICROTIME.fullmatch(acquire.group(1)), text
    table = cluster.emu.kubectl("get", "lease", LEASE, "-n", cluster.ns)
    assert table.returncode == 0 and leader.name in table.stdout
    cluster.assert_never_two_leaders()


def test_holder_logs_the_loss_when_another_writer_takes_the_lease(cluster):
    leader = first_leader(cluster)
    time.sleep(RETRY_PERIOD)
    lease = cluster.lease()
    lease["spec"]["holderIdentity"] = "pg-other"
    lease["spec"]["leaseTransitions"] += 1
    status, body = cluster.emu.put(cluster.emu.lease_path(cluster.ns, LEASE),
                                   lease)
    assert status == 200, body
    pgharness.wait_for(lambda: leader.lines("fence"), 2 * TICK_MAX + SLACK,
                       f"{leader.name} to log the loss")
    assert leader.lines("fence")[-1]["msg"].startswith("lease lost")
    assert cluster.holder() == "pg-other"


def test_hung_api_server_fences_the_holder_within_the_lease_duration(make_cluster):
    cluster = make_cluster(api_timeout=1.5)
    fenced_at, _, last_renewal, _, _ = cut_off_holder(cluster, "hang")
    assert fenced_at - last_renewal < LEASE_DURATION, cluster.logs()


def thread_names(pid):
    names = []
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/comm", encoding="ascii") as f:
                names.append(f.read().strip())
        except OSError:
            pass
    return names


def test_holder_renews_from_its_renewer_thread_while_its_reads_hang(cluster):
    """--election-only renews as the full agent does (issue 15): from the
    renewer's thread, on its own timer, which also writes
    <run_dir>/lease-expiry after each renewal. Every read (GET) the holder
    sends hangs for 3 x lease duration: a loop that reads before renewing
    waits api_timeout each tick and renews a second apart at best; the
    renewer's writes (PUT) keep the cadence and the lease stays put."""
    leader = first_leader(cluster)
    assert "pglease-renew" in thread_names(leader.proc.pid)
    transitions = cluster.lease()["spec"]["leaseTransitions"]
    watch = renewload.RenewWatch(leader).start()
    pgharness.wait_for(lambda: len(watch.values) >= 2, 3 * TICK_MAX,
                       "the renewer's lease-expiry file to advance")
    cluster.emu.fault(leader.token, "hang", verbs=["get"])
    try:
        time.sleep(3 * LEASE_DURATION)
    finally:
        cluster.emu.fault(leader.token, "ok")
    stats = renewload.cadence(watch.stop())
    print(f"\n{leader.name} with every read hanging: renew cadence p50 "
          f"{stats['p50']:.3f}s p99 {stats['p99']:.3f}s max "
          f"{stats['max']:.3f}s over {stats['n']} renewals")
    assert stats["n"] >= 3 * LEASE_DURATION / RETRY_PERIOD - 2, stats
    # A renewal is due every retry_period; a failed one is retried after
    # 200 ms. More than this apart would be a wait in the loop.
    assert stats["max"] < RETRY_PERIOD + 0.5, stats
    assert cluster.holder() == leader.name
    assert cluster.lease()["spec"]["leaseTransitions"] == transitions
    assert leader.believes_leader()
    assert not leader.lines("fence"), leader.log_text()
    assert not leader.lines("renew"), leader.log_text()
    cluster.assert_never_two_leaders()
