"""Synchronous mode as docs/design.md promises it (safety rule 4 and "Where
the code refines this page: Synchronous standbys"), on three real
PostgreSQL 15 servers under their run-postgres supervisors and agents,
against the Kubernetes API emulator (tests/integration/cluster.py), with
the test timings (lease 4 s, renew deadline 3 s, retry 1 s).

- synchronous_mode = on: a writer counts acknowledged commits across ten
  kill -9 failovers of the primary's pod; none may be missing on the final
  primary, each new primary was published in pglease.io/sync when the old
  one died, and no two servers ever accepted writes at once;
- a synchronous standby that disconnects (its pod is killed) leaves the
  Lease annotation before it leaves synchronous_standby_names, and a
  replacement enters synchronous_standby_names before the annotation;
- synchronous_mode = strict: with both standbys gone a commit waits, and
  it returns once one standby is back;
- the leader publishes its mode with the set (pglease.io/sync-mode), and a
  standby whose own file says synchronous_mode = off obeys it (issue 17,
  item 2): with the synchronous standby frozen and the primary killed, it
  does not promote, and no acknowledged commit is lost.

The figures (failover times, commits counted) are printed at the end."""

import json
import re
import threading
import time

import psycopg2
import pytest

import cluster as cluster_mod

_wait = cluster_mod._wait  # pylint: disable=protected-access
_seconds = cluster_mod._seconds  # pylint: disable=protected-access

SETTINGS = dict(cluster_mod.DEFAULT_SETTINGS, synchronous_mode="on",
                synchronous_node_count="1")
STRICT_SETTINGS = dict(SETTINGS, synchronous_mode="strict")
LEASE = _seconds(SETTINGS["lease_duration"])
SYNC_ANNOTATION = "pglease.io/sync"
SYNC_MODE_ANNOTATION = "pglease.io/sync-mode"

FAILOVERS = 10
HEALTHY_TIMEOUT = 90    # a rejoin may rewind, or re-clone
FAILOVER_TIMEOUT = 30
BLOCKED_SECONDS = 4.0   # a commit that has not returned by then waits

RESULTS = []


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield RESULTS
    lines = ["", "synchronous mode (lease "
             f"{SETTINGS['lease_duration']}/{SETTINGS['renew_deadline']}/"
             f"{SETTINGS['retry_period']}):"] + [f"  {r}" for r in RESULTS]
    capture = request.config.pluginmanager.getplugin("capturemanager")
    if capture is None:
        print("\n".join(lines), flush=True)
        return
    with capture.global_and_fixture_disabled():
        print("\n".join(lines), flush=True)


@pytest.fixture(scope="module")
def sync_cluster(module_cluster_factory):
    """One cluster with synchronous_mode = on for the scenarios that use
    it (each waits for it to be healthy first)."""
    return module_cluster_factory(settings=SETTINGS)


# --------------------------------------------------------------------------
# reading the synchronous set (bench/switchover.py uses these too)


def annotated_sync(cluster):
    """The names in the Lease's pglease.io/sync annotation."""
    lease = cluster.lease() or {}
    value = lease.get("annotations", {}).get(SYNC_ANNOTATION, "")
    return {name.strip() for name in value.split(",") if name.strip()}


_NAME = re.compile(r'"((?:[^"]|"")*)"|([^\s,()"]+)')


def parse_sync_names(value):
    """synchronous_standby_names -> (k or None, set of names). '*' is the
    name '*'; '' is (None, set())."""
    value = value.strip()
    if not value:
        return None, set()
    match = re.fullmatch(r"(?:(ANY|FIRST)\s+)?(\d+)?\s*\((.*)\)", value,
                         re.IGNORECASE | re.DOTALL)
    count, inner = (None, value) if match is None else \
        (int(match.group(2)) if match.group(2) else 1, match.group(3))
    names = set()
    for quoted, bare in _NAME.findall(inner):
        names.add(quoted.replace('""', '"') if quoted else bare)
    return count, names


def listed_sync(node, conn=None):
    """(k, names) of `node`'s synchronous_standby_names."""
    if conn is None:
        return parse_sync_names(node.sql(
            "SHOW synchronous_standby_names")[0][0])
    with conn.cursor() as cur:
        cur.execute("SHOW synchronous_standby_names")
        return parse_sync_names(cur.fetchone()[0])


def wait_sync_published(cluster, primary, timeout=30):
    """Wait until the annotation names a standby other than the primary
    that synchronous_standby_names lists with k = the number of names;
    returns the annotated set."""
    def ready():
        names = annotated_sync(cluster) - {primary.name}
        if not names:
            return None
        try:
            count, listed = listed_sync(primary)
        except psycopg2.Error:
            return None
        return names if names <= listed and count == len(listed) else None

    return _wait(ready, timeout, f"{SYNC_ANNOTATION} to name a standby of "
                 f"{primary.name} that synchronous_standby_names lists",
                 describe=lambda: cluster.describe() + "\nannotation "
                 f"{annotated_sync(cluster)}")


def unbounded_connect(node):
    """A connection without statement_timeout: a statement_timeout would
    cancel a commit's wait for the synchronous standby and let it return
    (committed locally, with only a warning)."""
    conn = psycopg2.connect(
        host="127.0.0.1", port=node.port, user=node.setting("superuser"),
        password=node.password(), dbname=node.setting("database"),
        connect_timeout=2, application_name="pglease-tests-sync",
        options="-c statement_timeout=0")
    conn.autocommit = True
    return conn


def kill_failovers(cluster, count, table, on_failover=None):
    """`count` kill -9 failovers of the primary's pod under a writer; the
    killed pod is started again once the new primary holds the lease.
    Before each kill the cluster is healthy and the annotation names a
    synchronous standby. Returns (history, final primary, times from kill
    to the new writable primary, split-brain violations, writes an old
    primary acknowledged after its successor had acknowledged one)."""
    checker = cluster.split_brain_checker()
    writer = cluster_mod.Writer(cluster, table=table).start()
    times = []
    failovers = []
    try:
        _wait(lambda: len(writer.history) >= 20, 30, "20 writes")
        for _ in range(count):
            old = cluster.wait_healthy(HEALTHY_TIMEOUT)
            published = wait_sync_published(cluster, old)
            _wait(lambda: all(has_table(n, table) for n in cluster.nodes),
                  30, f"{table} on every node")
            old.kill_pod()
            killed = time.monotonic()
            new = cluster.wait_primary(FAILOVER_TIMEOUT, other_than=old.name)
            times.append(time.monotonic() - killed)
            failovers.append((killed, old.name, new.name))
            # Safety rule 4: only a published synchronous standby.
            assert new.name in published, \
                f"{new.name} promoted; published were {published}"
            old.start_pod(init=True)
            if on_failover is not None:
                on_failover(old, new)
        final = cluster.wait_healthy(HEALTHY_TIMEOUT)
        t_final = time.monotonic()
        _wait(lambda: writer.history.first_ack(t_final, node=final.name), 30,
              f"a write acknowledged by {final.name}")
    finally:
        history = writer.stop()
        violations = checker.stop()
    assert history.crashed is None, history.crashed
    return history, final, times, violations, late_acks(history, failovers)


def late_acks(history, failovers):
    """Per failover (kill time, old, new): acknowledgements by the old
    primary after the new one's first, before the next kill (the primary
    changes back and forth, so a return to a node is not in itself one)."""
    acks = list(zip(history.acknowledged, history.ack_times))
    ends = [f[0] for f in failovers[1:]] + [float("inf")]
    out = []
    for (killed, old, new), end in zip(failovers, ends):
        first_new = next((at for (_, name, _), at in acks
                          if killed <= at < end and name == new), None)
        if first_new is None:
            continue
        out.extend((row[0], old) for row, at in acks
                   if first_new <= at < end and row[1] == old)
    return out


def stop_pod(node):
    """Stop a standby's pod as the kubelet does once its hooks ran: SIGTERM
    to the agent, then to the postgres container (a fast shutdown)."""
    node.stop_agent()
    node.stop_supervisor()
    node.kill_pod()


def walsender_streaming(primary, name):
    """True when `primary`'s pg_stat_replication shows `name` streaming
    (pg_stat_wal_receiver on the standby says 'streaming' even while it
    waits for a start point the primary has not reached)."""
    try:
        rows = primary.sql("SELECT state FROM pg_stat_replication "
                           "WHERE application_name = %s", (name,))
    except psycopg2.Error:
        return False
    return bool(rows) and rows[0][0] == "streaming"


def has_table(node, table):
    try:
        return node.sql("SELECT to_regclass(%s) IS NOT NULL", (table,))[0][0]
    except psycopg2.Error:
        return False


# --------------------------------------------------------------------------
# scenarios


def test_no_acknowledged_commit_lost_across_ten_kill9_failovers(sync_cluster):
    cluster = sync_cluster
    table = "sync_failovers"
    history, final, times, violations, late = kill_failovers(
        cluster, FAILOVERS, table)
    missing = cluster_mod.missing_acknowledged(history, final, table=table)
    RESULTS.append(
        f"{FAILOVERS} kill -9 failovers (synchronous_mode=on): acked "
        f"{len(history)} missing {len(missing)} unknown "
        f"{len(history.unknown)}; new primary writable after "
        f"median {sorted(times)[len(times) // 2]:.2f}s max {max(times):.2f}s")
    assert missing == [], (f"{len(missing)} acknowledged commits missing on "
                           f"{final.name}: {missing[:20]}")
    assert violations == [], f"two writable servers: {violations}"
    assert late == [], f"writes acknowledged by a former primary: {late}"


class SyncSampler:
    """Every ~100 ms: synchronous_standby_names on the primary, the Lease
    annotation, synchronous_standby_names again. A sample violates safety
    rule 4 when the annotation names a standby that neither reading of
    synchronous_standby_names lists (reading it on both sides means a
    change between the two reads cannot pass for a violation)."""

    def __init__(self, cluster, primary, interval=0.1):
        self.cluster = cluster
        self.primary = primary
        self.interval = interval
        self.samples = []       # (monotonic, annotated, listed before, after)
        self.violations = []
        self.errors = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="sync-sampler")

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        conn = None
        while not self._stop.wait(self.interval):
            try:
                if conn is None:
                    conn = self.primary.connect(connect_timeout=1)
                _, before = listed_sync(self.primary, conn)
                annotated = annotated_sync(self.cluster) - \
                    {self.primary.name}
                _, after = listed_sync(self.primary, conn)
            except (psycopg2.Error, OSError) as exc:
                self.errors += 1
                self.last_error = exc
                if conn is not None:
                    conn.close()
                conn = None
                continue
            at = time.monotonic()
            self.samples.append((at, annotated, before, after))
            stray = annotated - (before | after)
            if stray:
                self.violations.append((at, sorted(annotated),
                                        sorted(before), sorted(after)))
        if conn is not None:
            conn.close()

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        return self.violations

    def first_without(self, name, where):
        """Monotonic time of the first sample from which on `name` is not
        in the annotation (where='annotated') or the listing ('listed')."""
        found = None
        for at, annotated, before, after in self.samples:
            present = name in (annotated if where == "annotated"
                               else before | after)
            if present:
                found = None
            elif found is None:
                found = at
        return found

    def first_with(self, name, where):
        for at, annotated, before, after in self.samples:
            if name in (annotated if where == "annotated" else before & after):
                return at
        return None


def test_a_disconnected_sync_standby_leaves_the_annotation_before_the_list(
        sync_cluster):
    cluster = sync_cluster
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    published = wait_sync_published(cluster, primary)
    assert len(published) == 1, published
    dropped = cluster.node(next(iter(published)))
    other = next(n for n in cluster.nodes if n not in (primary, dropped))
    sampler = SyncSampler(cluster, primary).start()
    try:
        _wait(lambda: len(sampler.samples) >= 5, 10, "a few samples")
        dropped.kill_pod()
        killed = time.monotonic()

        def replaced():
            try:
                _, listed = listed_sync(primary)
            except psycopg2.Error:
                return False
            return annotated_sync(cluster) == {other.name} and \
                listed == {other.name}

        _wait(replaced, 30, f"{other.name} alone in the annotation and in "
              "synchronous_standby_names", describe=lambda: (
                  f"annotation {annotated_sync(cluster)} listed "
                  f"{listed_sync(primary)}\n" + cluster.describe()))
        done = time.monotonic() - killed
        _wait(lambda: sampler.samples[-1][0] > killed + done, 5,
              "a sample of the final state")
    finally:
        violations = sampler.stop()
    assert violations == [], \
        f"annotated but not listed (at, annotated, listed, listed): " \
        f"{violations}"
    unpublished = sampler.first_without(dropped.name, "annotated")
    unlisted = sampler.first_without(dropped.name, "listed")
    assert unpublished is not None and unlisted is not None
    assert unpublished <= unlisted, "left the list before the annotation"
    listed_other = sampler.first_with(other.name, "listed")
    published_other = sampler.first_with(other.name, "annotated")
    assert listed_other is not None and published_other is not None
    assert listed_other <= published_other, \
        "published before it was listed"
    RESULTS.append(
        f"sync standby {dropped.name} killed: unpublished after "
        f"{unpublished - killed:.2f}s, unlisted after {unlisted - killed:.2f}s,"
        f" {other.name} listed after {listed_other - killed:.2f}s and "
        f"published after {published_other - killed:.2f}s; "
        f"{len(sampler.samples)} samples, {sampler.errors} unreadable")


def test_a_killed_standby_streams_again_once_its_pod_is_back(sync_cluster):
    """The pod the previous test killed comes back as Kubernetes brings it
    back (init container, then the containers): the primary must see it
    streaming, with no write on the primary meanwhile to hide a standby
    that waits for a start point ahead of the primary's WAL."""
    cluster = sync_cluster
    primary = cluster.primary()
    assert primary is not None, cluster.describe()
    down = [n for n in cluster.nodes if not n.agent_alive()]
    for node in down:
        node.start_pod(init=True)
    for node in cluster.nodes:
        if node is not primary:
            _wait(lambda n=node: walsender_streaming(primary, n.name), 30,
                  f"{primary.name}'s walsender for {node.name} streaming",
                  describe=lambda: cluster.describe() + "\n" + str(
                      primary.sql("SELECT application_name, state, "
                                  "flush_lsn, pg_current_wal_lsn() "
                                  "FROM pg_stat_replication")))
    assert cluster.wait_healthy(HEALTHY_TIMEOUT) is primary


def test_strict_mode_blocks_writes_without_standbys_and_resumes_with_one(
        cluster_factory):
    cluster = cluster_factory(settings=STRICT_SETTINGS)
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    published = wait_sync_published(cluster, primary)
    primary.sql("CREATE TABLE strict_writes (id int PRIMARY KEY)")
    primary.sql("INSERT INTO strict_writes VALUES (0)")
    standbys = [n for n in cluster.nodes if n is not primary]
    for node in standbys:
        stop_pod(node)

    outcome = {}

    def write():
        conn = unbounded_connect(primary)
        try:
            with conn.cursor() as cur:
                cur.execute("INSERT INTO strict_writes VALUES (1)")
            outcome["done"] = time.monotonic()
        except psycopg2.Error as exc:
            outcome["error"] = exc
        finally:
            conn.close()

    thread = threading.Thread(target=write, daemon=True, name="strict-write")
    started = time.monotonic()
    thread.start()
    thread.join(BLOCKED_SECONDS)
    assert thread.is_alive(), \
        f"a commit returned with no standby: {outcome}"
    assert cluster.lease_holder() == primary.name
    # The standby that was not synchronous comes back: it must be listed
    # and the dead one dropped before the commit can return.
    back = next((n for n in standbys if n.name not in published),
                standbys[0])
    back.start_pod(init=True)
    returned = time.monotonic()
    thread.join(FAILOVER_TIMEOUT + 30)
    assert not thread.is_alive(), \
        f"the commit still waits {FAILOVER_TIMEOUT + 30}s after " \
        f"{back.name} came back\n" + cluster.describe()
    assert "error" not in outcome, outcome
    conn = unbounded_connect(primary)
    try:
        conn.cursor().execute("SET statement_timeout = '5s'")
        with conn.cursor() as cur:
            cur.execute("INSERT INTO strict_writes VALUES (2)")
    finally:
        conn.close()
    _wait(lambda: back.sql("SELECT count(*) FROM strict_writes")[0][0] == 3,
          10, f"the three rows on {back.name}")
    RESULTS.append(
        f"strict: commit blocked {outcome['done'] - started:.2f}s with both "
        f"standbys gone, returned {outcome['done'] - returned:.2f}s after "
        f"{back.name}'s pod started")


def agent_status(node):
    """`agentctl node status --json` of node as a dict, {} if it did not
    answer."""
    result = node.agentctl("node", "status", "--json", "--timeout", "2",
                           timeout=10)
    try:
        return json.loads(result.stdout) if result.returncode == 0 else {}
    except ValueError:
        return {}


def test_a_standby_configured_off_obeys_the_published_sync_set(
        cluster_factory):
    """Issue 17, item 2: the leader runs synchronous_mode = on; one standby
    has off in its own file (a rolling ConfigMap change, a node whose file
    differs). The synchronous standby is frozen (SIGSTOP), the primary is
    killed under a writer: the standby configured off sees the lease free
    for whole lease durations and must not promote, because the leader
    published another standby as synchronous. Once the synchronous one
    thaws it takes over, with every acknowledged commit."""
    cluster = cluster_factory(settings=SETTINGS)
    table = "sync_published_mode"
    primary = cluster.wait_healthy(HEALTHY_TIMEOUT)
    published = wait_sync_published(cluster, primary)
    assert len(published) == 1, published
    sync = cluster.node(next(iter(published)))
    other = next(n for n in cluster.nodes if n not in (primary, sync))
    mode = (cluster.lease() or {}).get("annotations", {}).get(
        SYNC_MODE_ANNOTATION)
    assert mode == "on", f"{SYNC_MODE_ANNOTATION} is {mode!r}"

    mark = len(other.agent_log())
    other.write_conf({"synchronous_mode": "off"})
    other.reload_agent()
    _wait(lambda: [e for e in other.agent_log()[mark:]
                   if e.get("event") == "reload"
                   and "synchronous_mode changed" in e.get("msg", "")],
          20, f"{other.name} to reload synchronous_mode = off",
          describe=lambda: other.logs(lines=10))

    checker = cluster.split_brain_checker()
    writer = cluster_mod.Writer(cluster, table=table).start()
    frozen = False
    try:
        _wait(lambda: len(writer.history) >= 20, 30, "20 writes")
        _wait(lambda: all(has_table(n, table) for n in cluster.nodes), 30,
              f"{table} on every node")
        assert annotated_sync(cluster) == published, cluster.describe()
        sync.sigstop()
        frozen = True
        primary.kill_pod()
        acked_before = len(writer.history)

        # The standby configured off sees the lease unrenewed for three
        # lease durations on its own clock (free after the first): it has
        # had every chance to take it. It must not.
        def seen_free_long():
            assert not other.is_primary(), \
                f"{other.name} (synchronous_mode = off in its file) " \
                f"promoted although {sync.name} was published"
            assert cluster.lease_holder() == primary.name, \
                f"the lease went to {cluster.lease_holder()}"
            lease = agent_status(other).get("lease") or {}
            return lease.get("holder") == primary.name and \
                (lease.get("age_seconds") or 0) >= 3 * LEASE

        _wait(seen_free_long, 12 * LEASE,
              f"{other.name} to see the dead primary's lease free for a "
              "while", describe=cluster.describe, interval=0.3)
        assert not other.is_primary()

        sync.sigcont()
        frozen = False
        new = cluster.wait_primary(FAILOVER_TIMEOUT + 3 * LEASE,
                                   other_than=primary.name)
        assert new is sync, f"{new.name} promoted, not {sync.name}"
        t_new = time.monotonic()
        _wait(lambda: writer.history.first_ack(t_new, node=new.name), 30,
              f"a write acknowledged by {new.name}")
    finally:
        if frozen:
            sync.sigcont()
        history = writer.stop()
        violations = checker.stop()
    assert history.crashed is None, history.crashed
    missing = cluster_mod.missing_acknowledged(history, new, table=table)
    RESULTS.append(
        f"standby with synchronous_mode = off in its file, {sync.name} "
        f"frozen, primary killed: nobody promoted until {sync.name} thawed; "
        f"acked {len(history)} ({acked_before} before the kill) missing "
        f"{len(missing)}")
    assert missing == [], (f"{len(missing)} acknowledged commits missing on "
                           f"{new.name}: {missing[:20]}")
    assert violations == [], f"two writable servers: {violations}"
