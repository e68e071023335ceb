"""Planned changes of primary as docs/design.md promises them ("Failover,
switchover, pre-stop"): `agentctl switchover`, the pre-stop hook (the Helm
chart's prestop.sh, i.e. `agentctl demote --wait`), and pause/resume, on
three real PostgreSQL 15 servers under their run-postgres supervisors and
agents, against the Kubernetes API emulator (tests/integration/cluster.py).

The scenarios share one cluster (test timings: lease 4 s, renew deadline
3 s, retry 1 s) in which pg-2 is tagged `nofailover`; each waits for the
cluster to be healthy first. The last one (no standby left to take over)
runs on a cluster of its own. A writer inserts rows through whichever node the
Lease names, and a split-brain checker asks every server ten times a second
whether it accepts writes. A planned hand-over must lose no acknowledged
row even though replication is asynchronous: the old primary stops fast
(its walsenders ship everything up to the shutdown checkpoint) and the
target promotes only once it has replayed that LSN.

The write-unavailable window (the longest time between two acknowledged
writes around the hand-over) is printed at the end of the module;
bench/switchover.py measures it over several runs."""

import json
import os
import subprocess
import threading
import time

import psycopg2
import pytest

import cluster as cluster_mod
import pgharness

_wait = cluster_mod._wait  # pylint: disable=protected-access
_seconds = cluster_mod._seconds  # pylint: disable=protected-access

SETTINGS = dict(cluster_mod.DEFAULT_SETTINGS)
LEASE = _seconds(SETTINGS["lease_duration"])
UNFIT = "pg-2"
NODE_SETTINGS = {UNFIT: {"nofailover": "yes"}}

HEALTHY_TIMEOUT = 90    # a rejoin may rewind, or re-clone
HANDOVER_TIMEOUT = 30

EXIT_FAIL = 1
EXIT_REFUSED = 5

CHART_FILES = os.path.join(cluster_mod.SOURCE_DIR, "charts", "pglease",
                           "files")
PRESTOP = os.path.join(CHART_FILES, "prestop.sh")
AGENT_PRESTOP = os.path.join(CHART_FILES, "agent-prestop.sh")
CHART_BIN = "/pglease/bin/"     # where the chart's scripts find agentctl

RESULTS = []


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    """Print the measured windows at the end of the module."""
    yield RESULTS
    lines = ["", "planned hand-overs (lease "
             f"{SETTINGS['lease_duration']}/{SETTINGS['renew_deadline']}/"
             f"{SETTINGS['retry_period']}, writer every 20 ms):"]
    lines.extend(format_result(r) for r in RESULTS)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print("\n".join(lines), flush=True)
        return
    with capture.global_and_fixture_disabled():
        print("\n".join(lines), flush=True)


def format_result(r):
    return (f"  {r['name']:<10} {r['old']}->{r['new']}  write-unavailable "
            f"window {r['window']:5.2f}s  command took {r['command']:5.2f}s"
            f"  acked {r['acked']} lost {r['lost']} unknown {r['unknown']}"
            + (f"  [{r['note']}]" if r.get("note") else ""))


@pytest.fixture(scope="module")
def shared(module_cluster_factory):
    """The cluster the scenarios share (pg-2 may never be promoted)."""
    return module_cluster_factory(settings=SETTINGS,
                                  node_settings=NODE_SETTINGS)


# --------------------------------------------------------------------------
# helpers (bench/switchover.py uses them too)


def write_unavailable_window(history, since, until=None):
    """The longest time between two consecutive acknowledged writes that
    spans any moment of [since, until]: the write outage of a hand-over
    requested at `since`. The last write before `since` opens it."""
    times = list(history.ack_times)
    before = [at for at in times if at < since]
    around = ([before[-1]] if before else [since]) + \
        [at for at in times if at >= since and (until is None or at <= until)]
    gaps = [b - a for a, b in zip(around, around[1:])]
    return max(gaps) if gaps else float("nan")


class Load:
    """A writer on its own table and a split-brain checker on a healthy
    cluster; every node already holds the table (a hand-over right after
    CREATE must not leave the new primary without it)."""

    def __init__(self, cluster, table):
        self.cluster = cluster
        self.table = table
        self.old = cluster.wait_healthy(HEALTHY_TIMEOUT)
        self.checker = cluster.split_brain_checker()
        self.writer = cluster_mod.Writer(cluster, table=table).start()
        _wait(lambda: len(self.writer.history) >= 20 and all(
            has_table(n, table) for n in cluster.nodes), 30,
              f"{table} on every node and 20 acknowledged writes",
              describe=self.describe)

    def describe(self):
        history = self.writer.history
        return (self.cluster.describe() + f"\nwriter: acked {len(history)} "
                f"errors {history.errors} last error {history.last_error!r}")

    def wait_writes_on(self, node, since, seconds=1.0):
        """Wait until `node` has acknowledged writes for `seconds` after
        its first acknowledgement at or after `since`."""
        first = _wait(lambda: self.writer.history.first_ack(
            since, node=node.name), HANDOVER_TIMEOUT,
                      f"a write acknowledged by {node.name}",
                      describe=self.describe)
        _wait(lambda: self.writer.history.first_ack(
            first[0] + seconds, node=node.name), 10 + seconds,
              f"{seconds:g}s of writes acknowledged by {node.name}",
              describe=self.describe)

    def stop(self):
        """Stop both; asserts the writer did not crash and no two servers
        accepted writes at once. Returns the WriterHistory."""
        history = self.writer.stop()
        violations = self.checker.stop()
        assert history.crashed is None, history.crashed
        assert violations == [], f"two writable servers: {violations}"
        return history


def has_table(node, table):
    try:
        return node.sql("SELECT to_regclass(%s) IS NOT NULL", (table,))[0][0]
    except psycopg2.Error:
        return False


def settled_members(cluster):
    """True once every member's Pod carries its status annotation (the
    agents' member records, which switchover checks a target against)."""
    pods = cluster.pods()
    return all(pods.get(n.name, {}).get("metadata", {}).get(
        "annotations", {}).get("pglease.io/status") for n in cluster.nodes)


def agent_sees_unfit(node):
    """True once `node`'s agent (`agentctl cluster show --json`, its own
    view of the member records, which switchover checks a target against)
    knows every member's host and that UNFIT is tagged nofailover."""
    result = node.agentctl("cluster", "show", "--json")
    if result.returncode != 0:
        return False
    try:
        members = {m["name"]: m for m in json.loads(result.stdout)["members"]}
    except (ValueError, KeyError, TypeError):
        return False
    return len(members) == len(node.cluster.nodes) and \
        all(m.get("host") for m in members.values()) and \
        members.get(UNFIT, {}).get("nofailover") is True


def check_loss_and_rejoin(cluster, load, history, old, new, since):
    """No acknowledged row missing on `new`, no write acknowledged by the
    old primary after the new one acknowledged one."""
    missing = cluster_mod.missing_acknowledged(history, new, table=load.table)
    assert missing == [], (f"{len(missing)} acknowledged rows missing on "
                           f"{new.name}: {missing[:20]}")
    late = history.acks_after_handover(since=since)
    assert late == [], f"writes acknowledged by a former primary: {late}"
    return missing


def chart_hook(script, bindir):
    """The chart's hook script with its install prefix /pglease/bin/
    pointed at `bindir` (the only change), readable by the runner user."""
    with open(script, encoding="utf-8") as handle:
        text = handle.read()
    path = os.path.join(os.path.dirname(bindir),
                        "hook-" + os.path.basename(script))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text.replace(CHART_BIN, bindir.rstrip("/") + "/"))
    os.chmod(path, 0o755)
    pgharness.chown_to_runner(path)
    return path


def prestop_bindir(cluster):
    """A directory standing for the pod's /pglease/bin: agentctl."""
    bindir = os.path.join(cluster.workdir, "pglease-bin")
    if not os.path.isdir(bindir):
        pgharness.make_dir(bindir, 0o755)
        os.symlink(cluster.binaries.agentctl, os.path.join(bindir,
                                                           "agentctl"))
    return bindir


def run_prestop(node, timeout):
    """Run the postgres container's pre-stop hook of the chart for `node`
    (and the agent container's, in parallel, as the kubelet does), with
    the pod's environment: PGLEASE_CONFIG, PGDATA, DEMOTE_TIMEOUT. Without
    the chart's script, `agentctl demote --wait` itself. Returns (the
    postgres hook's CompletedProcess, the agent hook's exit status or
    None, what ran)."""
    cluster = node.cluster
    if not os.path.exists(PRESTOP):
        result = node.agentctl("demote", "--wait", "--timeout",
                               str(timeout), timeout=timeout + 30)
        return result, None, "agentctl demote --wait (no chart prestop.sh)"
    bindir = prestop_bindir(cluster)
    env = {key: None for key in os.environ if key.startswith("PGLEASE_")}
    env.update({"PGLEASE_CONFIG": node.conf_path, "PGDATA": node.data_dir,
                "DEMOTE_TIMEOUT": str(timeout)})
    agent_hook = {}

    def agent_side():
        if not os.path.exists(AGENT_PRESTOP):
            return
        agent_hook["result"] = cluster.reaper.run(
            ["sh", chart_hook(AGENT_PRESTOP, bindir)], timeout=timeout + 60,
            check=False, cwd=node.dir, env=env)

    thread = threading.Thread(target=agent_side, daemon=True)
    thread.start()
    result = cluster.reaper.run(["sh", chart_hook(PRESTOP, bindir)],
                                timeout=timeout + 30, check=False,
                                cwd=node.dir, env=env)
    thread.join(timeout + 60)
    agent_status = agent_hook["result"].returncode if agent_hook else None
    return result, agent_status, "charts/pglease/files/prestop.sh"


# --------------------------------------------------------------------------
# scenarios


def test_switchover_to_a_nofailover_member_is_refused_and_changes_nothing(
        shared):
    cluster = shared
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    _wait(lambda: agent_sees_unfit(primary), 30,
          f"{primary.name}'s agent to know every member, {UNFIT} as "
          "nofailover", describe=cluster.describe)
    before = cluster.lease()
    result = primary.agentctl("switchover", "--to", UNFIT, "--wait",
                              "--timeout", "10", timeout=40)
    assert result.returncode == EXIT_REFUSED, (result.returncode,
                                               result.stdout, result.stderr)
    assert UNFIT in result.stderr and \
        "not a failover candidate" in result.stderr, result.stderr
    # Nothing moved, for longer than a lease duration.
    deadline = time.monotonic() + 2 * LEASE
    while time.monotonic() < deadline:
        lease = cluster.lease()
        assert lease["holderIdentity"] == primary.name, cluster.describe()
        assert lease["leaseTransitions"] == before["leaseTransitions"]
        assert "pglease.io/switchover" not in lease["annotations"], \
            lease["annotations"]
        assert primary.is_primary(), cluster.describe()
        time.sleep(0.2)
    assert cluster.wait_healthy(HEALTHY_TIMEOUT) is primary
    RESULTS.append({"name": "refused", "old": primary.name,
                    "new": primary.name, "window": 0.0, "command": 0.0,
                    "acked": 0, "lost": 0, "unknown": 0,
                    "note": f"exit {result.returncode}: "
                            f"{result.stderr.strip()}"})


def test_switchover_under_writes_loses_no_acknowledged_row_and_old_primary_follows(  # noqa: E501
        shared):
    cluster = shared
    load = Load(cluster, "switchover_writes")
    old = load.old
    _wait(lambda: settled_members(cluster), 30, "member records")
    since = time.monotonic()
    result = old.agentctl("switchover", "--wait", "--timeout",
                          str(HANDOVER_TIMEOUT), timeout=HANDOVER_TIMEOUT + 30)
    command = time.monotonic() - since
    assert result.returncode == 0, result.stdout + result.stderr
    new = cluster.wait_primary(HANDOVER_TIMEOUT, other_than=old.name)
    assert new.name != UNFIT
    assert f"{new.name} is the new primary" in result.stdout, result.stdout
    load.wait_writes_on(new, since)
    history = load.stop()
    window = write_unavailable_window(history, since)
    missing = check_loss_and_rejoin(cluster, load, history, old, new, since)
    # The old primary comes back as a standby of the new one.
    assert cluster.wait_healthy(HEALTHY_TIMEOUT) is new
    assert old.is_standby() and old.is_streaming_from(new), cluster.describe()
    RESULTS.append({"name": "switchover", "old": old.name, "new": new.name,
                    "window": window, "command": command,
                    "acked": len(history), "lost": len(missing),
                    "unknown": len(history.unknown)})
    assert window < 2 * LEASE, f"writes stopped for {window:.2f}s"


def start_agentctl(node, *args):
    """agentctl for `node` in the background, as node.agentctl() runs it;
    returns the Popen (text pipes). Its poll() says whether it returned."""
    cluster = node.cluster
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [cluster.binaries.agentctl, "-c", node.conf_path, *args],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=node.dir,
        env=cluster.reaper.env(cluster_mod._child_env()),  # pylint: disable=protected-access
        start_new_session=True, **pgharness.runner().popen_kwargs())
    return cluster.reaper.track(proc)


# What agentctl switchover --wait asks the new holder's PostgreSQL.
WAIT_PROBE = ("SELECT query_start FROM pg_stat_activity WHERE "
              "application_name = 'agentctl' AND "
              "query = 'SELECT pg_is_in_recovery()'")


def test_switchover_wait_returns_only_once_the_new_primary_accepts_writes(
        shared):
    """Issue 19, item 7: --wait asks the new holder's PostgreSQL whether it
    accepts writes instead of waiting for its member record. The target's
    WAL replay is paused, so it takes the released lease but cannot
    promote (it waits to replay the final LSN): agentctl asks it (its
    queries show in the target's pg_stat_activity), finds it in recovery
    and keeps waiting while the Lease names it; once replay resumes and
    it promotes, agentctl returns naming it. An ordering check, not a
    timing: it never returns while the new holder is a standby."""
    cluster = shared
    old = cluster.wait_healthy(HEALTHY_TIMEOUT)
    target = next(n for n in cluster.nodes
                  if n is not old and n.name != UNFIT)
    _wait(lambda: agent_sees_unfit(old), 30,
          f"{old.name}'s agent to know every member",
          describe=cluster.describe)
    target.sql("SELECT pg_wal_replay_pause()")
    paused = True
    proc = start_agentctl(old, "switchover", "--to", target.name, "--wait",
                          "--timeout", str(HANDOVER_TIMEOUT), "--json")
    try:
        _wait(lambda: cluster.lease_holder() == target.name,
              HANDOVER_TIMEOUT, f"{target.name} to take the lease",
              describe=cluster.describe)
        looks = set()

        def asked(times):
            # Replay is paused: the target cannot have promoted.
            assert proc.poll() is None, (
                f"agentctl returned while {target.name} was in recovery: "
                f"{proc.communicate()}")
            looks.update(row[0] for row in target._try_sql(WAIT_PROBE)  # pylint: disable=protected-access
                         or [])
            return len(looks) >= times
        # Distinct queries, each sent once the answer to the one before
        # (in recovery) was in: ten of them span several of agentctl's
        # looks at the Lease, which names the target all along.
        _wait(lambda: asked(10), HANDOVER_TIMEOUT,
              f"agentctl to ask {target.name} ten times whether it is in "
              "recovery", describe=cluster.describe)
        assert proc.poll() is None, (
            f"agentctl returned while {target.name} was still in recovery: "
            f"{proc.communicate()}")
        assert target.is_standby(), cluster.describe()
        assert cluster.lease_holder() == target.name, cluster.describe()
        target.sql("SELECT pg_wal_replay_resume()")
        paused = False
        out, err = proc.communicate(timeout=HANDOVER_TIMEOUT + 30)
    finally:
        if paused:
            target._try_sql("SELECT pg_wal_replay_resume()")  # pylint: disable=protected-access
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, (proc.returncode, out, err)
    result = json.loads(out)
    assert result["new_primary"] == target.name, result
    assert result["from"] == old.name, result
    assert result["confirmed_by"] in ("postgresql", "member_record"), result
    assert target.is_primary(), cluster.describe()
    assert cluster.wait_healthy(HEALTHY_TIMEOUT) is target
    RESULTS.append({"name": "wait-order", "old": old.name,
                    "new": target.name, "window": float("nan"),
                    "command": float("nan"), "acked": 0, "lost": 0,
                    "unknown": 0,
                    "note": f"--wait held while {target.name} replayed "
                            f"nothing; confirmed by {result['confirmed_by']}"})


def test_prestop_demote_hands_over_loses_nothing_and_old_primary_stays_down(
        shared):
    cluster = shared
    load = Load(cluster, "prestop_writes")
    old = load.old
    _wait(lambda: settled_members(cluster), 30, "member records")
    since = time.monotonic()
    result, agent_hook, ran = run_prestop(old, timeout=HANDOVER_TIMEOUT)
    command = time.monotonic() - since
    assert result.returncode == 0, result.stdout + result.stderr
    new = cluster.wait_primary(HANDOVER_TIMEOUT, other_than=old.name)
    assert new.name != UNFIT
    assert agent_hook in (None, 0), f"agent-prestop.sh exited {agent_hook}"
    load.wait_writes_on(new, since)
    history = load.stop()
    window = write_unavailable_window(history, since)
    missing = check_loss_and_rejoin(cluster, load, history, old, new, since)
    # The demoted primary stays down (its agent keeps running) until the
    # kubelet stops the pod.
    deadline = time.monotonic() + 2 * LEASE
    while time.monotonic() < deadline:
        assert not old.is_running(), f"{old.name}'s Postgres came back"
        assert old.agent_alive()
        assert cluster.lease_holder() == new.name
        time.sleep(0.2)
    assert os.path.exists(os.path.join(old.data_dir, "standby.signal"))
    RESULTS.append({"name": "pre-stop", "old": old.name, "new": new.name,
                    "window": window, "command": command,
                    "acked": len(history), "lost": len(missing),
                    "unknown": len(history.unknown), "note": ran})
    # The kubelet stops the containers; the StatefulSet recreates the pod
    # (init container first), and it rejoins as a standby.
    assert old.stop_agent() == 0
    old.stop_supervisor()
    old.kill_pod()
    old.start_pod(init=True)
    assert cluster.wait_healthy(HEALTHY_TIMEOUT) is new
    assert old.is_streaming_from(new)
    assert window < 2 * LEASE, f"writes stopped for {window:.2f}s"


def test_paused_cluster_does_not_fail_over_until_resumed(shared):
    cluster = shared
    old = cluster.wait_healthy(HEALTHY_TIMEOUT)
    standby = next(n for n in cluster.nodes
                   if n is not old and n.name != UNFIT)
    result = standby.agentctl("pause")
    assert result.returncode == 0, result.stdout + result.stderr
    _wait(lambda: cluster.lease()["annotations"].get("pglease.io/paused")
          == "true", 10, "the paused annotation")
    transitions = cluster.lease()["leaseTransitions"]
    old.kill_pod()
    killed = time.monotonic()
    while time.monotonic() - killed < 2 * LEASE:
        promoted = [n.name for n in cluster.nodes if n.is_primary()]
        assert promoted == [], f"promoted while paused: {promoted}"
        assert cluster.lease_holder() in (old.name, ""), cluster.describe()
        assert cluster.lease()["leaseTransitions"] == transitions
        time.sleep(0.2)
    resumed = time.monotonic()
    result = standby.agentctl("resume")
    assert result.returncode == 0, result.stdout + result.stderr
    new = cluster.wait_primary(3 * LEASE + 10, other_than=old.name)
    took = time.monotonic() - resumed
    assert new is standby, cluster.describe()
    assert "pglease.io/paused" not in cluster.lease()["annotations"] or \
        cluster.lease()["annotations"]["pglease.io/paused"] != "true"
    old.start_pod(init=True)
    assert cluster.wait_healthy(HEALTHY_TIMEOUT) is new
    RESULTS.append({"name": "resume", "old": old.name, "new": new.name,
                    "window": float("nan"), "command": took, "acked": 0,
                    "lost": 0, "unknown": 0,
                    "note": f"paused {2 * LEASE:g}s with the primary's pod "
                            "dead: no promotion; the command column is "
                            "resume -> new primary"})


def test_demote_without_a_fit_standby_fences_and_releases_at_the_deadline(
        cluster_factory):
    """On a cluster of its own: it leaves no primary behind."""
    cluster = cluster_factory(settings=SETTINGS)
    old = cluster.wait_healthy(HEALTHY_TIMEOUT)
    for node in cluster.nodes:
        if node is not old:
            node.kill_pod()
    demote_timeout = 6
    since = time.monotonic()
    result = old.agentctl("demote", "--wait", "--timeout",
                          str(demote_timeout), timeout=demote_timeout + 40)
    took = time.monotonic() - since
    assert result.returncode == EXIT_FAIL, (result.returncode, result.stdout,
                                            result.stderr)
    assert "no standby could take over" in result.stderr, result.stderr
    assert took >= demote_timeout - 0.5, f"gave up after {took:.1f}s"
    _wait(lambda: not old.is_running(), 10, f"{old.name}'s Postgres to stop",
          describe=cluster.describe)
    assert os.path.exists(os.path.join(old.data_dir, "standby.signal"))
    lease = cluster.lease()
    assert lease["holderIdentity"] == "", lease
    # It stays fenced: nobody holds the lease, nothing accepts writes.
    deadline = time.monotonic() + 2 * LEASE
    while time.monotonic() < deadline:
        assert not old.is_running(), f"{old.name}'s Postgres came back"
        assert cluster.lease_holder() == ""
        time.sleep(0.2)

