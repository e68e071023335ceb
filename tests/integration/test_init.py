"""`pglease-agent init` (the init container) against real PostgreSQL 15
servers and the Kubernetes API emulator over HTTPS: the first member
bootstraps, the next clones, two racing members on an empty cluster end
with one bootstrap and one clone, a data directory of another cluster is
refused untouched, --dry-run plans without changing anything, and a
diverged former primary is rewound.

The tests of the `cl` cluster share it and run in order, each starting
from the state the previous one left. Postgres is started by the tests
themselves (`postgres -D DATA`, reading the port and socket directory that
init wrote), so only init is under test here."""

import concurrent.futures
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

import pytest

import pgharness
from cluster import LocalCluster

EXIT_OK, EXIT_FAIL, EXIT_CONFIG, EXIT_UNREACHABLE = 0, 1, 3, 4
STATUS_ANNOTATION = "pglease.io/status"
SETTINGS = {"clone_timeout": "60s"}


class Servers:
    """The postmasters the tests start, one per node."""

    def __init__(self, reaper):
        self.reaper = reaper
        self.procs = {}

    def start(self, node, timeout=30):
        assert node.postmaster_pid() is None, f"{node.name} already runs"
        proc = self.reaper.spawn(
            [os.path.join(node.cluster.pg_bindir, "postgres"), "-D",
             node.data_dir], logfile=os.path.join(node.dir, "postgres.log"))
        self.procs[node.name] = proc

        def ready():
            if proc.poll() is not None:
                raise AssertionError(
                    f"{node.name}: postgres exited with {proc.returncode}:\n"
                    + _tail(os.path.join(node.dir, "postgres.log")))
            return node.role() != "down"

        pgharness.wait_for(ready, timeout, f"{node.name} to accept "
                           "connections", interval=0.1)

    def stop(self, node, mode=signal.SIGINT, timeout=30):
        pid = node.postmaster_pid()
        if pid is None:
            return
        os.kill(pid, mode)
        proc = self.procs.pop(node.name, None)
        if proc is not None:
            proc.wait(timeout)
        pgharness.wait_for(lambda: not pgharness.pid_alive(pid), timeout,
                           f"{node.name} to stop")

    def stop_all(self):
        for proc in self.procs.values():
            try:
                os.kill(proc.pid, signal.SIGQUIT)
                proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.procs.clear()


def _tail(path, lines=20):
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return "(no log)"


def run_init(node, *args, timeout=90):
    """`pglease-agent -c CONF init ARGS` to completion, as the pod would."""
    res = node.cluster.reaper.run(
        [node.cluster.binaries.agent, "-c", node.conf_path, "init", *args],
        timeout=timeout, check=False, cwd=node.dir, env=_agent_env())
    # Under the sanitizers an error shows up here.
    assert "Sanitizer" not in res.stderr and \
        "runtime error" not in res.stderr, res.stderr
    return res


def spawn_init(node, logfile):
    return node.cluster.reaper.spawn(
        [node.cluster.binaries.agent, "-c", node.conf_path, "init"],
        logfile=logfile, cwd=node.dir, env=_agent_env())


def _agent_env():
    # The agent reads PGLEASE_<KEY> as configuration: pass none of ours
    # but the reaper's tag.
    return {key: None for key in os.environ
            if key.startswith("PGLEASE_") and key != pgharness.TAG_ENV}


def controldata(node):
    out = node.cluster.reaper.run(
        [os.path.join(node.cluster.pg_bindir, "pg_controldata"), "-D",
         node.data_dir], env={"LC_ALL": "C"}, timeout=30).stdout
    return dict(line.split(":", 1) for line in out.splitlines()
                if ":" in line)


def system_identifier(node):
    return controldata(node)["Database system identifier"].strip()


def member_record(cl, node):
    annotations = (cl.pods()[node.name]["metadata"].get("annotations")
                   or {})
    text = annotations.get(STATUS_ANNOTATION)
    return json.loads(text) if text else None


def tree_snapshot(path):
    """Every file under path with its size, mode and content hash."""
    snap = {}
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            with open(full, "rb") as handle:
                digest = hashlib.sha256(handle.read()).hexdigest()
            st = os.stat(full)
            snap[os.path.relpath(full, path)] = (st.st_size, st.st_mode,
                                                 digest)
    return snap


def _make_cluster(workdir, binaries, reaper, name, n):
    cl = LocalCluster(os.path.join(workdir, name), binaries, reaper, n=n,
                      cluster_name=name, settings=SETTINGS)
    cl.setup()
    return cl


@pytest.fixture(scope="module")
def env(binaries):
    workdir = pgharness.make_workdir("pglease-it-init-")
    reaper = pgharness.Reaper(home=workdir)
    servers = Servers(reaper)
    clusters = {}

    def make(name, n):
        """The cluster of that name, created on first use."""
        if name not in clusters:
            clusters[name] = _make_cluster(workdir, binaries, reaper, name, n)
        return clusters[name]

    try:
        yield make, servers
    finally:
        servers.stop_all()
        for cl in clusters.values():
            if cl.emulator is not None:
                cl.emulator.close()
        reaper.kill_all()
        if os.environ.get("PGLEASE_KEEP_TMP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="module")
def cl(env):
    make, _ = env
    return make("init", 3)


@pytest.fixture(scope="module")
def servers(env):
    return env[1]


def test_dry_run_on_an_empty_cluster_plans_bootstrap_and_changes_nothing(cl):
    pg0 = cl.nodes[0]
    res = run_init(pg0, "--dry-run")
    assert res.returncode == EXIT_OK, res.stderr
    assert "would try to create it and bootstrap" in res.stdout
    assert "initdb --pgdata=" + pg0.data_dir in res.stdout
    assert "--data-checksums" in res.stdout
    assert cl.lease() is None
    assert not os.path.exists(pg0.data_dir)
    assert member_record(cl, pg0) is None


def test_a_volume_too_small_for_the_wal_is_said_at_init(cl):
    """The data volume must hold what pg_wal may keep (max_wal_size 1 GB
    and wal_keep_size): a smaller one fills up with WAL and no member can
    promote. init warns; here wal_keep_size is larger than any disk."""
    pg0 = cl.nodes[0]
    res = run_init(pg0, "--dry-run")
    assert "less than what pg_wal may keep" not in res.stdout + res.stderr
    env = dict(_agent_env(), PGLEASE_WAL_KEEP_SIZE="100TB")
    res = pg0.cluster.reaper.run(
        [pg0.cluster.binaries.agent, "-c", pg0.conf_path, "init",
         "--dry-run"], timeout=90, check=False, cwd=pg0.dir, env=env)
    assert res.returncode == EXIT_OK, res.stderr
    out = res.stdout + res.stderr
    assert "less than what pg_wal may keep on a busy member" in out, out
    assert "wal_keep_size 104857600 MB" in out, out
    assert not os.path.exists(pg0.data_dir)


def test_bootstrap_is_checked_before_the_lease_is_created(cl):
    """A member that would take the lease and then fail to bootstrap (here:
    local connections need a password and there is none) leaves the cluster
    without a primary for a lease_duration: init checks first."""
    pg0 = cl.nodes[0]
    res = run_init(pg0, "--set", "superuser_password_file=")
    assert res.returncode == EXIT_CONFIG, res.stdout + res.stderr
    assert "superuser_password_file" in res.stdout + res.stderr
    assert cl.lease() is None
    assert not os.path.exists(pg0.data_dir)


def test_first_member_bootstraps_holding_the_lease(cl, servers):
    pg0 = cl.nodes[0]
    res = run_init(pg0)
    assert res.returncode == EXIT_OK, res.stderr
    assert "created the lease init-leader" in res.stderr
    assert "bootstrap complete" in res.stderr
    assert cl.lease_holder() == pg0.name
    record = member_record(cl, pg0)
    assert record["role"] == "primary"
    assert (record["host"], record["port"]) == ("127.0.0.1", pg0.port)
    assert controldata(pg0)["Data page checksum version"].strip() == "1"
    assert controldata(pg0)["Database cluster state"].strip() == "shut down"
    assert not os.path.exists(os.path.join(pg0.data_dir, "standby.signal"))
    assert not os.path.exists(os.path.join(
        os.path.dirname(pg0.data_dir), ".data.pglease-bootstrap"))
    for password in cl.passwords.values():
        assert password not in res.stderr

    servers.start(pg0)
    assert pg0.is_primary()
    assert pg0.sql("SHOW data_checksums") == [("on",)]
    roles = dict(pg0.sql("SELECT rolname, rolreplication FROM pg_roles "
                         "WHERE rolname IN ('replicator', 'pglease_rewind')"))
    assert roles == {"replicator": True, "pglease_rewind": False}
    assert pg0.sql("SELECT max(version) > 0 FROM pglease.schema_version") \
        == [(True,)]


def test_dry_run_of_a_clone_prints_the_plan_and_changes_nothing(cl):
    pg0, pg1 = cl.nodes[0], cl.nodes[1]
    res = run_init(pg1, "--dry-run")
    assert res.returncode == EXIT_OK, res.stderr
    assert f"cloning from the leader {pg0.name}" in res.stdout
    assert "pg_basebackup" in res.stdout
    assert not os.path.exists(pg1.data_dir)
    assert pg0.sql("SELECT count(*) FROM pg_replication_slots") == [(0,)]
    assert member_record(cl, pg1) is None


def test_second_member_clones_and_streams(cl, servers):
    pg0, pg1 = cl.nodes[0], cl.nodes[1]
    pg0.sql("CREATE TABLE t (id int PRIMARY KEY, note text)")
    pg0.sql("INSERT INTO t VALUES (1, 'before the clone')")
    res = run_init(pg1)
    assert res.returncode == EXIT_OK, res.stderr
    assert "clone complete" in res.stderr
    assert os.path.exists(os.path.join(pg1.data_dir, "standby.signal"))
    assert system_identifier(pg1) == system_identifier(pg0)

    servers.start(pg1)
    assert pg1.is_standby()
    pgharness.wait_for(lambda: pg1.is_streaming_from(pg0), 30,
                       "pg1 to stream from pg0")
    assert pg0.sql("SELECT slot_name, active FROM pg_replication_slots") \
        == [("pglease_init_1", True)]
    pg0.sql("INSERT INTO t VALUES (2, 'after the clone')")
    pgharness.wait_for(
        lambda: pg1.sql("SELECT count(*) FROM t") == [(2,)], 30,
        "pg1 to replay the insert", ignore=(Exception,))


def test_data_dir_of_another_cluster_is_refused_untouched(cl):
    pg0, pg2 = cl.nodes[0], cl.nodes[2]
    cl.reaper.run([os.path.join(cl.pg_bindir, "initdb"), "-D", pg2.data_dir,
                   "-U", "postgres", "--no-sync"], timeout=120)
    before = tree_snapshot(pg2.data_dir)
    foreign = system_identifier(pg2)
    leader = str(pg0.sql("SELECT system_identifier FROM "
                         "pg_control_system()")[0][0])
    assert foreign != leader

    res = run_init(pg2)
    assert res.returncode == EXIT_FAIL, res.stderr
    assert "another cluster" in res.stderr
    assert foreign in res.stderr and leader in res.stderr
    assert tree_snapshot(pg2.data_dir) == before
    shutil.rmtree(pg2.data_dir)


def test_api_server_unreachable_past_the_deadline(cl):
    pg2 = cl.nodes[2]
    cl.emulator.fault(pg2.token, "refuse")
    try:
        started = time.monotonic()
        res = run_init(pg2, "--set", "clone_timeout=10s")
    finally:
        cl.emulator.fault(pg2.token, "ok")
    assert res.returncode == EXIT_UNREACHABLE, res.stderr
    assert "gave up after clone_timeout (10s)" in res.stderr
    assert 9 < time.monotonic() - started < 30
    assert not os.path.exists(os.path.join(pg2.data_dir, "PG_VERSION"))


def _fail_over_to(cl, new, old):
    """What the agents would have done: new promoted, holding the lease,
    with its member record published."""
    new.sql("SELECT pg_promote(true, 30)")
    pgharness.wait_for(new.is_primary, 30, f"{new.name} to promote")
    record = dict(member_record(cl, old), port=new.port, timeline=2)
    status, body = cl.emulator.patch(
        cl.emulator.pod_path(cl.namespace, new.name),
        {"metadata": {"annotations": {STATUS_ANNOTATION:
                                      json.dumps(record)}}})
    assert status == 200, body
    lease = cl.emulator.get_lease(cl.namespace, cl.lease_name)
    lease["spec"]["holderIdentity"] = new.name
    status, body = cl.emulator.put(
        cl.emulator.lease_path(cl.namespace, cl.lease_name), lease)
    assert status == 200, body


def test_diverged_former_primary_is_rewound(cl, servers):
    pg0, pg1 = cl.nodes[0], cl.nodes[1]
    _fail_over_to(cl, pg1, pg0)
    pg1.sql("INSERT INTO t VALUES (3, 'on the new primary')")
    # The old primary kept accepting writes after the fork, then stopped.
    pg0.sql("INSERT INTO t SELECT g, 'diverged' FROM generate_series(100, "
            "2000) g")
    servers.stop(pg0)

    res = run_init(pg0)
    assert res.returncode == EXIT_OK, res.stderr
    assert "forked" in res.stderr and "rewound" in res.stderr
    assert os.path.exists(os.path.join(pg0.data_dir, "standby.signal"))

    servers.start(pg0)
    assert pg0.is_standby()
    pgharness.wait_for(lambda: pg0.is_streaming_from(pg1), 30,
                       "pg0 to stream from pg1")
    pg1.sql("INSERT INTO t VALUES (4, 'after the rejoin')")
    pgharness.wait_for(
        lambda: pg0.sql("SELECT array_agg(id ORDER BY id) FROM t")
        == [([1, 2, 3, 4],)], 30, "pg0 to hold exactly pg1's rows",
        ignore=(Exception,))


def test_no_bootstrap_when_the_lease_is_deleted_under_a_running_cluster(cl):
    pg2 = cl.nodes[2]
    status, body = cl.emulator.delete(
        cl.emulator.lease_path(cl.namespace, cl.lease_name))
    assert status == 200, body
    res = run_init(pg2, "--dry-run")
    assert res.returncode == EXIT_OK, res.stderr
    assert "no lease, but members have published records" in res.stdout
    assert "initdb" not in res.stdout
    assert cl.lease() is None
    assert not os.path.exists(pg2.data_dir)


def test_two_members_racing_on_an_empty_cluster(env):
    make, servers = env
    race = make("race", 2)
    logs = [os.path.join(node.dir, "init.log") for node in race.nodes]
    started = time.monotonic()
    procs = [spawn_init(node, log) for node, log in zip(race.nodes, logs)]

    def one_finished():
        return [p for p in procs if p.poll() is not None]

    done = pgharness.wait_for(one_finished, 60, "one init to finish")
    assert len(done) == 1, "both finished without a running leader"
    winner_idx = procs.index(done[0])
    winner, loser = race.nodes[winner_idx], race.nodes[1 - winner_idx]
    assert done[0].returncode == EXIT_OK, _tail(logs[winner_idx])
    assert race.lease_holder() == winner.name
    assert "bootstrap complete" in _tail(logs[winner_idx], 50)
    assert not os.path.exists(os.path.join(loser.data_dir, "PG_VERSION"))

    # The loser waits for a leader it can clone from: start it.
    servers.start(winner)
    loser_proc = procs[1 - winner_idx]
    try:
        loser_proc.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail("the loser did not clone:\n" + _tail(logs[1 - winner_idx]))
    loser_log = _tail(logs[1 - winner_idx], 50)
    assert loser_proc.returncode == EXIT_OK, loser_log
    assert "clone complete" in loser_log
    assert "initdb" not in loser_log
    assert system_identifier(loser) == system_identifier(winner)
    assert os.path.exists(os.path.join(loser.data_dir, "standby.signal"))
    assert race.lease_holder() == winner.name
    assert time.monotonic() - started < 90


def test_existing_data_is_left_to_the_holder_and_made_standby_without_leader(
        env):
    make, servers = env
    race = make("race", 2)
    holder = race.node(race.lease_holder())
    servers.stop(holder)
    marker = os.path.join(holder.data_dir, "standby.signal")

    res = run_init(holder)
    assert res.returncode == EXIT_OK, res.stderr
    assert "the lease names this member" in res.stderr
    assert not os.path.exists(marker)

    status, body = race.emulator.delete(
        race.emulator.lease_path(race.namespace, race.lease_name))
    assert status == 200, body
    res = run_init(holder)
    assert res.returncode == EXIT_OK, res.stderr
    assert "no leader with a member record (lease missing)" in res.stderr
    assert os.path.exists(marker)
    assert race.lease() is None
