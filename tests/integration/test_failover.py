"""Unplanned failover as docs/design.md promises it ("Failover, switchover,
pre-stop" and safety rules 1-5), on three real PostgreSQL 15 servers, each
under its run-postgres supervisor with its agent, against the Kubernetes API
emulator (tests/integration/cluster.py).

The scenarios run in sequence on one shared cluster (test timings: lease
4 s, renew deadline 3 s, retry 1 s, primary_start_timeout 5 s); each waits
for the cluster to be healthy first. During each one a writer inserts rows
through whichever node the Lease names, and a split-brain checker asks every
server ten times a second whether it accepts writes. After each one:

- exactly one primary, holding the Lease, and every other node, the failed
  one included (restarted where its pod was killed), streaming from it on
  its timeline;
- no moment at which two servers accepted writes (the checker), and no
  write acknowledged by an old primary after the new one had acknowledged
  one (the writer);
- the acknowledged rows missing on the final primary are reported: the
  replication is asynchronous, so a failover may lose the last ones; where
  the same primary stays (the postmaster comes back within
  primary_start_timeout, API errors shorter than the renew deadline) none
  may be missing.

The measured times are printed at the end of the module (pytest -s or not).
bench/failover.py measures them over several runs."""

import json
import os
import signal
import time

import psycopg2
import pytest

import cluster as cluster_mod

_wait = cluster_mod._wait  # pylint: disable=protected-access
_seconds = cluster_mod._seconds  # pylint: disable=protected-access

HEALTHY_TIMEOUT = 90    # rejoin may rewind, or re-clone
FAILOVER_TIMEOUT = 40   # lease_duration + primary_start_timeout + promotion

# Test timings for the shared cluster (cluster.DEFAULT_SETTINGS).
SETTINGS = dict(cluster_mod.DEFAULT_SETTINGS)
LEASE = _seconds(SETTINGS["lease_duration"])
RENEW_DEADLINE = _seconds(SETTINGS["renew_deadline"])
RETRY = _seconds(SETTINGS["retry_period"])

# The API-error scenario that must not fail over: a renew deadline longer
# than the 5 s of errors plus the time since the last renewal (one retry
# period) plus the time to the next attempt after the errors end.
PATIENT_SETTINGS = {"lease_duration": "12s", "renew_deadline": "9s",
                    "retry_period": "1s"}
API_ERROR_SECONDS = 5.0
# After SIGCONT, how long a frozen old primary's answers count as the known
# resume race of the supervisor's SIGQUIT fence (see the frozen scenario).

RESULTS = []

# Under AddressSanitizer/UBSan (scripts/test's second pass) the agents run
# two to three times slower: latency figures are not checked there, safety
# bounds (fence by the renew deadline, no split brain) still are.
SANITIZED = os.environ.get("PGLEASE_SANITIZE", "none") != "none"


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    """Print the measured figures of every scenario at the end."""
    yield RESULTS
    manager = request.config.pluginmanager
    reporter = manager.getplugin("terminalreporter")
    capture = manager.getplugin("capturemanager")
    lines = ["", "failover scenarios (times from the failure; lease "
             f"{SETTINGS['lease_duration']}/{SETTINGS['renew_deadline']}/"
             f"{SETTINGS['retry_period']}, primary_start_timeout "
             f"{SETTINGS['primary_start_timeout']} unless noted):"]
    lines.extend(format_result(r) for r in RESULTS)
    if reporter is None or capture is None:
        print("\n".join(lines))
        return
    with capture.global_and_fixture_disabled():
        for line in lines:
            reporter.write_line(line)


def format_result(r):
    primary = f"{r['old']}->{r['final']}" if r["failover"] else \
        f"{r['old']} stayed"
    writable = "    - " if r["writable"] is None else \
        f"{r['writable']:5.2f}s"
    return (f"  {r['name']:<25} {primary:<17} writable {writable}"
            f"  writes resumed {r['resumed']:5.2f}s (gap {r['gap']:5.2f}s)  "
            f"healthy {r['healthy']:5.2f}s  acked {r['acked']} lost "
            f"{r['lost']} unknown {r['unknown']}"
            + (f"  [{r['note']}]" if r.get("note") else ""))


@pytest.fixture(scope="module")
def shared(module_cluster_factory):
    """The cluster the scenarios share."""
    return module_cluster_factory(settings=SETTINGS)


# --------------------------------------------------------------------------
# one scenario


class Scenario:
    """Load on a healthy cluster, the failure, and the checks after it."""

    def __init__(self, cluster, name):
        self.cluster = cluster
        self.name = name
        self.table = f"failover_{name}"
        self.old = cluster.wait_healthy(HEALTHY_TIMEOUT)
        self.transitions = cluster.lease()["leaseTransitions"]
        self.checker = cluster.split_brain_checker()
        self.writer = cluster_mod.Writer(cluster, table=self.table).start()
        self.t_fail = None
        self.t_writable = None
        self.note = ""
        # Every standby has the table (a failover right after CREATE must
        # not leave the new primary without it) and the writer is writing.
        _wait(lambda: len(self.writer.history) >= 20 and all(
            self._has_table(n) for n in cluster.nodes), 30,
              f"{name}: the writer's table on every node and 20 writes",
              describe=self._describe)
        # The agents too have settled: the failure hits a primary whose
        # agent knows it is one (a holder still "starting" never hands
        # over: reported), not one that has just been elected.
        _wait(lambda: all(n.agent_state() == (
            "primary" if n is self.old else "replica")
            for n in cluster.nodes), 30,
              f"{name}: every agent publishing its state",
              describe=lambda: self._describe() + "\nstates: " + str(
                  {n.name: n.agent_state() for n in cluster.nodes}))

    def _has_table(self, node):
        try:
            return node.sql("SELECT to_regclass(%s) IS NOT NULL",
                            (self.table,))[0][0]
        except psycopg2.Error:
            return False

    def _describe(self):
        history = self.writer.history
        return (self.cluster.describe() + f"\nwriter: acked {len(history)} "
                f"errors {history.errors} last error {history.last_error!r}")

    def failed(self):
        """The failure has just been injected."""
        self.t_fail = time.monotonic()

    def since_failure(self):
        return time.monotonic() - self.t_fail

    def wait_writable(self, exclude=(), timeout=FAILOVER_TIMEOUT):
        """Wait for a node (not in `exclude`) that holds the Lease and
        accepts writes; only those nodes are asked, so that a frozen one
        does not slow the polling. Records the time and returns it."""
        candidates = [n for n in self.cluster.nodes if n not in exclude]

        def ready():
            self.cluster.check_processes()
            holder = self.cluster.lease_holder()
            for node in candidates:
                if node.name == holder and node.is_primary():
                    return node
            return None

        node = _wait(ready, timeout, f"{self.name}: a writable primary "
                     "holding the lease"
                     + (" other than " + ",".join(n.name for n in exclude)
                        if exclude else ""), describe=self._describe)
        self.t_writable = self.since_failure()
        return node

    def _longest_gap(self, history):
        """(end, length) of the longest time without an acknowledged write
        from the failure on: when writes resumed, and the write outage."""
        times = [self.t_fail] + [at for at in history.ack_times
                                 if at >= self.t_fail]
        gaps = [(b - a, b) for a, b in zip(times, times[1:])]
        length, end = max(gaps) if gaps else (float("nan"), float("nan"))
        return end, length

    def finish(self, zero_loss_if_same=False, known_violation=None):
        """Wait until healthy with every node, check and report. Returns
        the result dict (also kept for the summary). Split-brain rounds for
        which known_violation(round) is true are a known agent problem:
        they are returned in result["known_violations"] for the test to
        mark, every other one fails here."""
        final = self.cluster.wait_healthy(HEALTHY_TIMEOUT)
        healthy = self.since_failure()
        t_healthy = time.monotonic()
        _wait(lambda: self.writer.history.first_ack(t_healthy,
                                                    node=final.name),
              20, f"{self.name}: a write acknowledged by {final.name}",
              describe=self._describe)
        history = self.writer.stop()
        violations = self.checker.stop()
        assert history.crashed is None, history.crashed
        missing = cluster_mod.missing_acknowledged(history, final,
                                                   table=self.table)
        failover = final.name != self.old.name
        gap_end, gap = self._longest_gap(history)
        old_acks = [at for (_, name, _), at in zip(history.acknowledged,
                                                   history.ack_times)
                    if name == self.old.name and at >= self.t_fail]
        result = {
            "name": self.name, "old": self.old.name, "final": final.name,
            "failover": failover,
            "writable": self.t_writable,
            "resumed": gap_end - self.t_fail, "gap": gap,
            "healthy": healthy,
            "old_last_write": (max(old_acks) - self.t_fail) if old_acks
            else None,
            "acked": len(history), "lost": len(missing),
            "unknown": len(history.unknown), "errors": history.errors,
            "transitions": self.cluster.lease()["leaseTransitions"]
            - self.transitions, "note": self.note}
        RESULTS.append(result)
        print(format_result(result))
        # Every node, the failed one included, follows the final primary on
        # its timeline (wait_healthy); the old pod's processes run.
        for node in self.cluster.nodes:
            assert node.agent_alive() and node.supervisor_alive(), node
        known = [v for v in violations
                 if known_violation is not None and known_violation(v)]
        result["known_violations"] = known
        unknown = [v for v in violations if v not in known]
        assert not unknown, \
            f"{self.name}: two servers accepted writes at once: {unknown}"
        late = history.acks_after_handover(self.t_fail)
        assert not late, (f"{self.name}: writes acknowledged by an old "
                          f"primary after the new one's: {late[:10]}")
        if zero_loss_if_same and not failover:
            assert not missing, (f"{self.name}: {len(missing)} acknowledged "
                                 f"rows missing on {final.name} although it "
                                 f"stayed primary: {missing[:20]}")
        return result


# --------------------------------------------------------------------------
# the scenarios, in order, on the shared cluster


def test_postmaster_killed_and_restarted_by_the_supervisor(shared):
    """kill -9 of the primary's postmaster: the supervisor restarts it.
    Back within primary_start_timeout, the same node stays primary (that is
    correct) and nothing acknowledged is lost; else a standby took over."""
    run = Scenario(shared, "postmaster_restarted")
    run.failed()
    run.old.kill_postmaster()
    run.wait_writable()
    result = run.finish(zero_loss_if_same=True)
    if not result["failover"]:
        assert result["transitions"] == 0
        if not SANITIZED:
            assert result["writable"] < \
                _seconds(SETTINGS["primary_start_timeout"])


def test_postmaster_not_restarted_fails_over_without_its_supervisor(
        shared):
    """The supervisor is killed with the postmaster (the postgres container
    cannot come back): the agent sees its supervisor gone on its next tick
    and fences and releases the Lease at once (issue 16: no watchdog, no
    waiting for primary_start_timeout), a standby promotes; the postgres
    container, started again, rejoins as a standby."""
    run = Scenario(shared, "postmaster_not_restarted")
    old = run.old
    old.kill_supervisor()
    run.failed()
    old.kill_postmaster()
    run.wait_writable(exclude=[old])
    assert any(e.get("event") == "supervisor-gone" for e in old.agent_log())
    old.start_supervisor()
    result = run.finish()
    assert result["failover"]


def test_lone_primary_without_its_supervisor_comes_back(shared):
    """The standbys' pods are down; the primary's supervisor is killed with
    its postmaster and starts again (the postgres container restarts). The
    agent fences and releases the Lease, and nobody else can take it: its
    PostgreSQL must start again, as a standby, and take the Lease back and
    promote, or the only data left stays down with the cluster. (Found by
    the resilience run in CI: in synchronous mode the same happens to a new
    primary killed before it publishes a synchronous standby, when the
    Lease names it alone.) Then the standbys' pods return."""
    run = Scenario(shared, "lone_primary_unsupervised")
    old = run.old
    others = [node for node in shared.nodes if node is not old]
    for node in others:
        node.kill_pod()
    old.kill_supervisor()
    run.failed()
    _wait(lambda: any(e.get("event") == "supervisor-gone"
                      for e in old.agent_log()), 10,
          f"{old.name}: the supervisor-gone event")
    old.start_supervisor()
    assert run.wait_writable() is old
    for node in others:
        node.start_pod(init=True)
    result = run.finish()
    assert not result["failover"]


def test_primary_pod_killed(shared):
    """kill -9 of agent, supervisor and Postgres: after one lease duration
    the best standby takes the Lease and promotes; the pod, started again
    (init container, then the containers), rejoins as a standby."""
    run = Scenario(shared, "pod_killed")
    old = run.old
    run.failed()
    old.kill_pod()
    run.wait_writable(exclude=[old])
    # Followers wait a full lease duration of unchanged record.
    assert run.t_writable >= LEASE - RETRY - 0.5
    old.start_pod(init=True)
    result = run.finish()
    assert result["failover"]


def startup_pid(node):
    """The pid of the standby's startup process (the one that replays WAL
    and ends recovery on promotion), a child of its postmaster."""
    postmaster = node.postmaster_pid()
    assert postmaster, f"{node.name}: no postmaster"
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                title = handle.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == postmaster and b"startup" in title:
            return int(entry)
    raise AssertionError(f"{node.name}: no startup process under {postmaster}")


def test_slow_promotion_leaves_the_agent_answering(shared):
    """The new holder's PostgreSQL is slow to end its recovery (its startup
    process stopped, as a long replay backlog would make it): its agent
    signals the promotion and waits for it between ticks, not in its loop,
    so it answers agentctl and keeps renewing the Lease meanwhile (a loop
    waiting in pg_promote() for up to 60 s left the control socket and the
    HTTP probes unanswered); the promotion ends when recovery does."""
    run = Scenario(shared, "slow_promotion")
    old = run.old
    others = [n for n in shared.nodes if n is not old]
    stopped = [startup_pid(n) for n in others]
    for pid in stopped:
        os.kill(pid, signal.SIGSTOP)
    try:
        run.failed()
        old.kill_pod()

        def promoting():
            holder = shared.node(shared.lease_holder() or old.name)
            if holder is old or holder.agent_state() not in (
                    "candidate", "promoting"):
                return None
            return holder
        holder = _wait(promoting, FAILOVER_TIMEOUT,
                       "slow_promotion: a new holder with its promotion "
                       "under way", describe=run._describe)
        renewed = shared.lease()["resourceVersion"]
        # Past several retry periods, the agent answers every time, says
        # it is promoting, and its PostgreSQL is still in recovery.
        deadline = time.monotonic() + 3 * RETRY + 1
        answers = 0
        while time.monotonic() < deadline:
            result = holder.agentctl("node", "status", "--json",
                                     "--timeout", "5", timeout=15)
            assert result.returncode == 0, (result.stdout, result.stderr)
            status = json.loads(result.stdout)
            assert status["node"]["state"] in ("candidate", "promoting"), \
                status
            answers += 1
        assert answers >= 3
        assert status["node"]["state"] == "promoting", status
        assert holder.is_standby()
        assert any("promotion under way" in e.get("msg", "")
                   for e in holder.agent_log())
        # The renewer kept the Lease meanwhile.
        _wait(lambda: shared.lease()["resourceVersion"] != renewed,
              2 * RETRY + 5,
              "slow_promotion: the Lease renewed while promoting")
        assert shared.lease_holder() == holder.name
    finally:
        for pid in stopped:
            os.kill(pid, signal.SIGCONT)
    assert run.wait_writable(exclude=[old]) is holder
    old.start_pod(init=True)
    result = run.finish()
    assert result["failover"]


def test_frozen_agent_and_postgres_are_fenced_by_the_supervisor(shared):
    """SIGSTOP of the primary's agent and Postgres (not the supervisor) for
    twice the lease duration: the supervisor's lease watchdog fences
    Postgres at the renew deadline, a standby takes over after one lease
    duration; after SIGCONT the old primary rejoins as a standby."""
    run = Scenario(shared, "frozen_agent_and_postgres")
    old = run.old
    supervisor_log_size = os.path.getsize(old.supervisor_log)
    old.sigstop(supervisor=False)
    run.failed()
    try:
        run.wait_writable(exclude=[old], timeout=2 * LEASE + 10)
        # The fault lasts twice the lease, whatever happened meanwhile.
        _wait(lambda: run.since_failure() >= 2 * LEASE, 2 * LEASE + 1,
              "twice the lease duration", interval=0.05)
    finally:
        old.sigcont()
    with open(old.supervisor_log, encoding="utf-8", errors="replace") as log:
        log.seek(supervisor_log_size)
        fenced = [line for line in log if "lease expired" in line]
    assert fenced, "the supervisor did not fence the frozen primary"

    # The supervisor's fence SIGKILLs the postmaster and all its processes
    # while they are frozen: nothing of the old primary answers after
    # SIGCONT, so any violation fails the test.
    result = run.finish()
    assert result["failover"]


def test_primary_cut_off_from_the_api(shared):
    """The API server refuses the primary's agent: it fences itself at the
    renew deadline, a standby takes the Lease after one lease duration; once
    the API answers it again, the old primary rejoins as a standby."""
    run = Scenario(shared, "primary_cut_off_api")
    old = run.old
    old.cut_api()
    run.failed()
    try:
        run.wait_writable(exclude=[old])
    finally:
        old.restore_api()
    result = run.finish()
    assert result["failover"]
    # Safety rule 1: the old primary stopped accepting writes by its renew
    # deadline (its last renewal was sent before the cut), well before the
    # new one could promote.
    if result["old_last_write"] is not None:
        assert result["old_last_write"] < RENEW_DEADLINE + 0.5, result


def test_fence_with_an_unwritable_marker_still_stops_writes(shared):
    """Issue 14: the standby marker cannot be written (the data directory
    is read-only for the agent and the supervisor) when the primary is cut
    off from the API. The fence fails, but PostgreSQL stops accepting
    writes by the renew deadline, the supervisor's lease-expiry backstop is
    not lifted before it has, and a standby takes over with no moment of
    two writable servers; with the directory writable again the old primary
    rejoins."""
    run = Scenario(shared, "fence_marker_unwritable")
    old = run.old
    marker = os.path.join(old.data_dir, "standby.signal")
    mode = os.stat(old.data_dir).st_mode & 0o777
    agent_log_size = len(old.agent_log())
    supervisor_log_size = os.path.getsize(old.supervisor_log)
    os.chmod(old.data_dir, 0o500)
    try:
        old.cut_api()
        run.failed()
        _wait(lambda: not old.is_primary(), RENEW_DEADLINE + 5,
              f"{old.name} to stop accepting writes",
              describe=run._describe)  # pylint: disable=protected-access
        stopped = run.since_failure()
        run.note = f"stopped at {stopped:.2f}s"
        assert not os.path.exists(marker), "the marker was written after all"
        run.wait_writable(exclude=[old])
    finally:
        os.chmod(old.data_dir, mode)
        old.restore_api()
    # Whichever fenced first (the agent at its deadline, the supervisor at
    # the lease expiry) says the marker could not be written.
    failed = [e["msg"] for e in old.agent_log()[agent_log_size:]
              if e.get("event") == "fence" and "cannot write" in
              e.get("msg", "")]
    with open(old.supervisor_log, encoding="utf-8", errors="replace") as log:
        log.seek(supervisor_log_size)
        failed += [line for line in log if "NOT written" in line]
    assert failed, "no fence reported the unwritable marker"
    result = run.finish()
    assert result["failover"]
    # Its last renewal was sent before the cut: down by the renew deadline
    # (plus the time to notice it on a loaded machine).
    assert stopped < RENEW_DEADLINE + 1.0, result
    if result["old_last_write"] is not None:
        assert result["old_last_write"] < RENEW_DEADLINE + 0.5, result


def test_api_errors_longer_than_the_renew_deadline(shared):
    """The API server answers 500 to everyone for 5 s, longer than the
    renew deadline: the primary fences itself (safety rule 1); when the API
    answers again one node leads and the others follow it. If that is the
    same node, nothing acknowledged is lost."""
    run = Scenario(shared, "api_500_beyond_deadline")
    shared.emulator.fault("*", "status", status=500,
                          duration_ms=int(API_ERROR_SECONDS * 1000))
    run.failed()
    _wait(lambda: not run.old.is_primary(), RENEW_DEADLINE + 5,
          f"{run.old.name} to fence itself", describe=run._describe)  # pylint: disable=protected-access
    fenced = run.since_failure()
    run.note = f"fenced at {fenced:.2f}s"
    run.wait_writable(timeout=API_ERROR_SECONDS + FAILOVER_TIMEOUT)
    result = run.finish(zero_loss_if_same=True)
    assert fenced < RENEW_DEADLINE + 1, result


def test_api_errors_within_the_renew_deadline_change_nothing(
        module_cluster_factory):
    """500 from the API server for 5 s, shorter than the renew deadline
    (12 s lease, 9 s renew deadline, 1 s retry): the primary keeps its
    Lease and keeps accepting writes; nothing is lost."""
    local = module_cluster_factory(settings=PATIENT_SETTINGS,
                                   cluster_name="patient")
    run = Scenario(local, "api_500_within_deadline")
    run.note = "lease 12s/9s/1s"
    local.emulator.fault("*", "status", status=500,
                         duration_ms=int(API_ERROR_SECONDS * 1000))
    run.failed()
    _wait(lambda: run.since_failure() >= API_ERROR_SECONDS + RETRY,
          API_ERROR_SECONDS + 5, "the API errors to end", interval=0.05)
    result = run.finish(zero_loss_if_same=True)
    assert not result["failover"]
    assert result["transitions"] == 0
    assert result["errors"] == 0, "the primary stopped accepting writes"

