"""The Kubernetes client (lib/kube) and the Kubernetes DCS backend
(lib/dcs-kube) over verified HTTPS against the API emulator: Lease create /
get / replace with 409 and 404, member records on Pods, Events, token
rotation (401, re-read, one retry), retried faults inside the deadline,
kubeconfig and in-cluster configuration. Driven through
tests/integration/kube-check.c, which links libpglease."""

import json
import os
import re
import select
import subprocess
import time

import pytest

from kubeemu import Emulator

NS = "db"
TOKEN = "tok-pg-0"
MICROTIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


@pytest.fixture(scope="module")
def check_bin():
    build_dir = os.environ.get("PGLEASE_BUILD_DIR") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "build")
    path = os.path.join(build_dir, "tests", "kube-check")
    if not os.access(path, os.X_OK):
        pytest.fail(f"not built: {path}")
    return path


@pytest.fixture
def emu(workdir):
    emulator = Emulator(os.path.join(workdir, "emu"), tls=True, quiet=True)
    emulator.start()
    emulator.add_token(TOKEN, "system:serviceaccount:db:pg-0")
    try:
        yield emulator
    finally:
        emulator.close()


class Session:
    """One kube-check process: one client, one command per line."""

    def __init__(self, reaper, argv, env=None):
        environment = reaper.env(env)
        environment.pop("KUBECONFIG", None)
        self.proc = reaper.track(subprocess.Popen(  # pylint: disable=consider-using-with
            [str(a) for a in argv], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=environment, start_new_session=True))
        self.init = self._read(30)

    def _read(self, timeout):
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            raise AssertionError("kube-check did not answer in time")
        line = self.proc.stdout.readline()
        if not line:
            raise AssertionError("kube-check exited: " + self.proc.stderr.read())
        return json.loads(line)

    def __call__(self, line, timeout=30):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def requests(self):
        return self("count")["requests"]

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
            self.proc.wait(10)
        return self.proc.stderr.read()


@pytest.fixture
def session_factory(reaper, check_bin):
    sessions = []

    def make(*args, env=None):
        session = Session(reaper, [check_bin, *args], env)
        sessions.append(session)
        return session

    yield make
    failures = []
    for session in sessions:
        try:
            stderr = session.close()
        except (OSError, subprocess.TimeoutExpired) as e:
            failures.append(repr(e))
            continue
        # Under the sanitizers a leak or an error shows up here.
        if session.proc.returncode != 0 or "Sanitizer" in stderr:
            failures.append(f"exit {session.proc.returncode}: {stderr}")
    assert not failures, failures


@pytest.fixture
def kubeconfig_session(emu, workdir, session_factory):
    path = emu.kubeconfig(os.path.join(workdir, "kubeconfig"), TOKEN,
                          namespace=NS)
    session = session_factory("--kubeconfig", path)
    assert session.init["r"] == "OK"
    return session


def incluster(emu, workdir, session_factory, token=TOKEN):
    sa_dir = emu.serviceaccount_dir(os.path.join(workdir, "sa"), token, NS)
    session = session_factory("--sa-dir", sa_dir, env=emu.incluster_env())
    assert session.init["r"] == "OK", session.close()
    return session, sa_dir


def test_lease_create_get_replace_conflict_and_not_found(emu, kubeconfig_session):
    s = kubeconfig_session
    missing = s("lease-get")
    assert missing["r"] == "ENOENT"
    assert missing["msg"].startswith("404 NotFound: ")

    created = s("lease-create pg-0 10")
    assert created["r"] == "OK", created
    assert created["holder"] == "pg-0"
    assert created["duration_s"] == 10
    got = s("lease-get")
    assert got["r"] == "OK" and got["version"] == created["version"]
    assert got["raw"] == created["raw"]

    renewed = s("lease-update pg-0")
    assert renewed["r"] == "OK", renewed
    assert renewed["version"] != created["version"]
    assert renewed["raw"] != created["raw"]

    lease = emu.get_lease(NS, "main-leader")
    assert lease["spec"]["holderIdentity"] == "pg-0"
    assert MICROTIME.match(lease["spec"]["renewTime"])
    assert MICROTIME.match(lease["spec"]["acquireTime"])
    assert lease["metadata"]["annotations"]["pglease.io/optime"] == "1/0/3000060"
    assert lease["metadata"]["resourceVersion"] == renewed["version"]

    stale = s(f"lease-update pg-1 {created['version']}")
    assert stale["r"] == "ESTALE"
    assert stale["msg"].startswith("409 Conflict: Operation cannot be fulfilled")
    assert emu.get_lease(NS, "main-leader")["spec"]["holderIdentity"] == "pg-0"

    again = s("lease-create pg-1 10")
    assert again["r"] == "EEXIST"
    assert again["msg"].startswith("409 AlreadyExists")

    taken = s("lease-update pg-1")     # on the newest version: allowed
    assert taken["r"] == "OK" and taken["holder"] == "pg-1"
    assert taken["transitions"] == 1


def test_unknown_lease_fields_survive_a_replace(emu, kubeconfig_session):
    s = kubeconfig_session
    assert s("lease-create pg-0 10")["r"] == "OK"
    lease = emu.get_lease(NS, "main-leader")
    lease["metadata"].setdefault("labels", {})["owner"] = "ops"
    lease["metadata"]["annotations"]["example.com/note"] = "keep me"
    status, body = emu.put(emu.lease_path(NS, "main-leader"), lease)
    assert status == 200, body
    assert s("lease-get")["r"] == "OK"
    assert s("lease-update pg-0")["r"] == "OK"
    after = emu.get_lease(NS, "main-leader")
    assert after["metadata"]["labels"]["owner"] == "ops"
    assert after["metadata"]["annotations"]["example.com/note"] == "keep me"


def test_member_records_on_pods_and_events(emu, kubeconfig_session):
    s = kubeconfig_session
    emu.create_pod(NS, "pg-0", {"app": "pg"})
    emu.create_pod(NS, "pg-1", {"app": "pg", "pglease.io/cluster": "main"})
    emu.create_pod(NS, "other", {"app": "pg", "pglease.io/cluster": "other"})

    assert s("publish primary running")["r"] == "OK"
    pod = emu.get(emu.pod_path(NS, "pg-0"))[1]
    labels = pod["metadata"]["labels"]
    assert labels["pglease.io/role"] == "primary"
    assert labels["pglease.io/cluster"] == "main"
    assert labels["app"] == "pg"
    status = json.loads(pod["metadata"]["annotations"]["pglease.io/status"])
    assert status["role"] == "primary" and status["state"] == "running"
    assert status["lsn"] == "0/3000060"

    members = s("members")
    assert members["r"] == "OK"
    assert [(m["name"], m["role"], m["state"]) for m in members["members"]] == [
        ("pg-0", "primary", "running"), ("pg-1", "unknown", "unknown")]

    assert s("publish unknown fenced")["r"] == "OK"
    pod = emu.get(emu.pod_path(NS, "pg-0"))[1]
    assert "pglease.io/role" not in pod["metadata"]["labels"]
    assert pod["metadata"]["labels"]["pglease.io/cluster"] == "main"

    ev = s("event Warning Fenced pg-0 lost its lease and stopped")
    assert ev["r"] == "OK", ev
    assert s("event Normal Started pg-0 runs")["r"] == "OK"
    status, events = emu.get(f"/api/v1/namespaces/{NS}/events")
    assert status == 200
    mine = [e for e in events["items"]
            if e["involvedObject"].get("name") == "pg-0"]
    assert len(mine) == 2
    fenced = next(e for e in mine if e["reason"] == "Fenced")
    assert fenced["message"] == "pg-0 lost its lease and stopped"
    assert fenced["type"] == "Warning"
    assert fenced["involvedObject"]["kind"] == "Pod"
    assert fenced["involvedObject"]["uid"] == pod["metadata"]["uid"]
    assert fenced["source"]["component"] == "pglease-agent"
    assert fenced["count"] == 1


def test_publish_for_a_missing_pod_is_enoent(kubeconfig_session):
    assert kubeconfig_session("publish replica streaming")["r"] == "ENOENT"


def test_incluster_mode_from_serviceaccount_and_env(emu, workdir, session_factory):
    s, _ = incluster(emu, workdir, session_factory)
    assert s("lease-create pg-0 10")["r"] == "OK"
    # The namespace came from the service-account directory.
    assert emu.get_lease(NS, "main-leader")["spec"]["holderIdentity"] == "pg-0"


def test_kubeconfig_with_ca_file_and_no_namespace_uses_default(
        emu, workdir, session_factory):
    path = emu.kubeconfig(os.path.join(workdir, "kc-file"), TOKEN,
                          inline_ca=False)
    s = session_factory("--kubeconfig", path)
    assert s("lease-create pg-0 10")["r"] == "OK"
    assert emu.get_lease("default", "main-leader") is not None


def test_unverifiable_server_is_refused_at_once(emu, workdir, session_factory):
    sa_dir = emu.serviceaccount_dir(os.path.join(workdir, "sa"), TOKEN, NS)
    os.unlink(os.path.join(sa_dir, "ca.crt"))   # system CAs do not know it
    s = session_factory("--sa-dir", sa_dir, env=emu.incluster_env())
    answer = s("lease-get")
    assert answer["r"] == "EPROTO", answer
    assert s.requests() == 1


def test_token_rotated_on_disk_gives_401_then_success_after_reread(
        emu, workdir, session_factory):
    s, sa_dir = incluster(emu, workdir, session_factory)
    assert s("lease-get")["r"] == "ENOENT"
    before = s.requests()

    # The kubelet rotates the projected token: the old one stops working.
    with open(os.path.join(sa_dir, "token.new"), "w") as f:
        f.write("tok-pg-0-rotated")
    os.replace(os.path.join(sa_dir, "token.new"), os.path.join(sa_dir, "token"))
    emu.add_token("tok-pg-0-rotated", "system:serviceaccount:db:pg-0")
    emu.remove_token(TOKEN)

    answer = s("lease-get")
    assert answer["r"] == "ENOENT", answer      # authenticated: 404, not 401
    assert s.requests() == before + 2           # the 401, then one retry
    codes = emu.stats()["tokens"][TOKEN]["codes"]
    assert codes.get("401", codes.get(401)) == 1

    emu.remove_token("tok-pg-0-rotated")
    refused = s("lease-get")
    assert refused["r"] == "EACCES"
    assert refused["msg"].startswith("401 Unauthorized")


def test_503_is_retried_inside_the_deadline(emu, kubeconfig_session):
    s = kubeconfig_session
    assert s("lease-create pg-0 10")["r"] == "OK"
    before = s.requests()
    emu.fault(TOKEN, "status", status=503, count=3)
    answer = s("lease-get")
    assert answer["r"] == "OK", answer
    assert s.requests() == before + 4

    emu.fault(TOKEN, "status", status=503)
    s("timeout 1500")
    started = time.monotonic()
    failed = s("lease-get")
    assert time.monotonic() - started < 3
    assert failed["r"] == "EIO"
    assert "503" in failed["msg"]
    assert failed["elapsed_ms"] <= 1600
    emu.clear_faults()
    assert s("lease-get")["r"] == "OK"


def test_429_retry_after_is_honoured(emu, kubeconfig_session):
    s = kubeconfig_session
    emu.fault(TOKEN, "status", status=429, retry_after=1, count=1)
    answer = s("lease-get")
    assert answer["r"] == "ENOENT", answer
    assert answer["elapsed_ms"] >= 1000


def test_refused_connections_fail_within_the_deadline(emu, kubeconfig_session):
    s = kubeconfig_session
    emu.fault(TOKEN, "refuse")
    s("timeout 1500")
    started = time.monotonic()
    answer = s("lease-get")
    assert time.monotonic() - started < 3
    assert answer["r"] not in ("OK", "ENOENT"), answer
    assert answer["elapsed_ms"] <= 1600
    assert s.requests() >= 2        # it was retried, not given up at once
    emu.clear_faults()
    assert s("lease-get")["r"] == "ENOENT"


def test_hung_server_is_cut_at_the_deadline(emu, kubeconfig_session):
    s = kubeconfig_session
    emu.fault(TOKEN, "hang")
    s("timeout 1000")
    answer = s("lease-get")
    emu.clear_faults()
    assert answer["r"] == "ETIMEDOUT", answer
    assert 900 <= answer["elapsed_ms"] <= 1300


def test_emulator_down_then_back(emu, kubeconfig_session):
    s = kubeconfig_session
    assert s("lease-create pg-0 10")["r"] == "OK"
    emu.stop()
    s("timeout 800")
    answer = s("lease-get")
    assert answer["r"] == "ECONNREFUSED", answer
    assert answer["elapsed_ms"] <= 1000
    emu.restart()
    s("timeout 5000")
    assert s("lease-get")["holder"] == "pg-0"
