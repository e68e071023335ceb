"""Pgpool-II in front of a pglease cluster, with the chart's own pgpool.conf.

Debian's pgpool2 (4.3) runs the configuration shipped in
charts/pglease/files/ (pgpool.conf, pool_hba.conf, and pgpool-start.sh,
which writes pool_passwd and pcp.conf from the Secret files) against a
LocalCluster. The only changes to pgpool.conf are the ones
`local_pgpool_conf()` makes (loopback, free ports, a temp directory instead
of /run/pgpool; the checks' user and database and the local backends
appended as the chart appends them); every other setting is the shipped
one.

Password handling (Pgpool-II 4.3 and scram-sha-256 backends): Pgpool-II
must know each user's password in clear to answer the backends' SCRAM
challenge, for client sessions as well as for sr_check and health_check.
pgpool-start.sh writes pool_passwd lines "user:TEXT<password>" from the
mounted Secret files, and pgpool.conf leaves sr_check_password and
health_check_password empty, so Pgpool-II takes them from pool_passwd. The
test uses exactly that: it hands the script a copy of the cluster's
superuser password file.
"""

import os
import re
import shutil
import signal
import subprocess
import time

import psycopg2
import pytest

import cluster as localcluster
import pgharness

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("PGLEASE_SOURCE_DIR") or \
    os.path.dirname(os.path.dirname(HERE))
CHART_FILES = os.path.join(SOURCE_DIR, "charts", "pglease", "files")
PGPOOL = shutil.which("pgpool") or "/usr/sbin/pgpool"

# The run directory the shipped pgpool.conf names for sockets, the pid file,
# pgpool_status and pool_passwd (an emptyDir in the pod).
POD_RUN_DIR = "/run/pgpool"

# The keys templates/pgpool.yaml appends before the backends: the user and
# database of the checks, config.superuser and config.database
# (tests/chart/check_chart.py compares the two).
CHECK_KEYS = ("sr_check_user", "sr_check_database", "health_check_user",
              "health_check_database")

# The keys of one backend block, as templates/pgpool.yaml writes them for
# every StatefulSet pod (tests/chart/check_chart.py compares the two).
BACKEND_KEYS = ("backend_hostname", "backend_port", "backend_weight",
                "backend_flag", "backend_application_name")

# The follower's default (the chart's pgpool.followInterval).
FOLLOW_INTERVAL = "2"

pytestmark = pytest.mark.skipif(not os.access(PGPOOL, os.X_OK),
                                reason="pgpool2 is not installed")


def _conf_line(key, value):
    return f"{key} = {value}"


def backend_block(index, host, port, application_name):
    """One backend, in the chart's format: weight 1, failover allowed (the
    health check may detach it), application_name = the member name (what
    the standby's primary_conninfo sends, which auto_failback looks for in
    pg_stat_replication)."""
    values = (f"'{host}'", str(port), "1", "'ALLOW_TO_FAILOVER'",
              f"'{application_name}'")
    return [_conf_line(f"{key}{index}", value)
            for key, value in zip(BACKEND_KEYS, values)]


def local_pgpool_conf(text, run_dir, port, pcp_port, backends, superuser,
                      database):
    """The shipped pgpool.conf made runnable on this machine. Changes, and
    nothing else (asserted):

    - listen_addresses and pcp_listen_addresses -> '127.0.0.1' (loopback
      only);
    - port, pcp_port -> the given free ports;
    - every value under /run/pgpool -> the same name under `run_dir`;
    - the checks' user and database (CHECK_KEYS: superuser, database,
      superuser, database) and one backend block per (host, port,
      application_name) appended, as the chart appends them.
    """
    replace = {
        "listen_addresses": "'127.0.0.1'",
        "pcp_listen_addresses": "'127.0.0.1'",
        "port": str(port),
        "pcp_port": str(pcp_port),
    }
    out, changed = [], set()
    for line in text.splitlines():
        match = re.match(r"^([a-z_0-9]+)\s*=\s*(.*)$", line)
        if match:
            key, value = match.groups()
            if key.startswith("backend_") and key[-1].isdigit():
                raise AssertionError(f"shipped pgpool.conf has a backend "
                                     f"line: {line}")
            if key in replace:
                line = _conf_line(key, replace[key])
                changed.add(key)
            elif POD_RUN_DIR in value:
                line = _conf_line(key, value.replace(POD_RUN_DIR, run_dir))
                changed.add(key)
        out.append(line)
    missing = set(replace) - changed
    assert not missing, f"pgpool.conf lacks {sorted(missing)}"
    for key, value in zip(CHECK_KEYS, (superuser, database) * 2):
        out.append(_conf_line(key, f"'{value}'"))
    for index, (host, bport, name) in enumerate(backends):
        out.extend(backend_block(index, host, bport, name))
    return "\n".join(out) + "\n"


def conf_settings(text):
    """key -> value (quotes stripped) of a pgpool.conf."""
    settings = {}
    for line in text.splitlines():
        match = re.match(r"^([a-z_0-9]+)\s*=\s*'?([^'#]*?)'?\s*(#.*)?$", line)
        if match:
            settings[match.group(1)] = match.group(2)
    return settings


def seconds(value):
    """'5', '2min', '1min', '10s' (pgpool time settings) -> seconds."""
    match = re.fullmatch(r"(\d+)\s*(ms|s|min|h)?", value.strip())
    assert match, f"not a pgpool duration: {value!r}"
    factor = {"ms": 0.001, "s": 1, "min": 60, "h": 3600, None: 1}
    return int(match.group(1)) * factor[match.group(2)]


class Pgpool:
    """Pgpool-II started by the chart's pgpool-start.sh, run as the harness
    user, everything under `base`."""

    def __init__(self, base, cluster, reaper):
        self.base = pgharness.make_dir(base, 0o700)
        self.run_dir = pgharness.make_dir(os.path.join(base, "run"), 0o700)
        self.secrets = pgharness.make_dir(os.path.join(base, "secrets"),
                                          0o700)
        self.cluster = cluster
        self.reaper = reaper
        self.port = pgharness.free_port()
        self.pcp_port = pgharness.free_port()
        while self.pcp_port == self.port:
            self.pcp_port = pgharness.free_port()
        self.log = os.path.join(base, "pgpool.log")
        self.proc = self.follower = None
        with open(os.path.join(CHART_FILES, "pgpool.conf"),
                  encoding="utf-8") as handle:
            shipped = handle.read()
        backends = [("127.0.0.1", node.port, node.name) for node in cluster]
        first = cluster.nodes[0]
        self.superuser = first.setting("superuser")
        self.password = first.password("superuser")
        self.conf_text = local_pgpool_conf(
            shipped, self.run_dir, self.port, self.pcp_port, backends,
            self.superuser, first.setting("database"))
        self.settings = conf_settings(self.conf_text)
        self.conf = self._write("pgpool.conf", self.conf_text)
        with open(os.path.join(CHART_FILES, "pool_hba.conf"),
                  encoding="utf-8") as handle:
            self.hba = self._write("pool_hba.conf", handle.read())
        self._write("superuser", self.password + "\n", self.secrets)
        self._write("pcp", "pcp-test-password\n", self.secrets)

    def _write(self, name, text, directory=None):
        path = os.path.join(directory or self.base, name)
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(path, 0o600)
        pgharness.chown_to_runner(path)
        return path

    def start(self):
        env = {
            "PGPOOL_CONF": self.conf,
            "PGPOOL_HBA": self.hba,
            "PGPOOL_RUN_DIR": self.run_dir,
            "PGPOOL_SUPERUSER": self.superuser,
            "PGPOOL_SUPERUSER_PASSWORD_FILE":
                os.path.join(self.secrets, "superuser"),
            "PGPOOL_USERS_DIR": os.path.join(self.secrets, "users"),
            "PGPOOL_PCP_USER": "pcpadmin",
            "PGPOOL_PCP_PASSWORD_FILE": os.path.join(self.secrets, "pcp"),
            "PGPOOL_BIN": PGPOOL,
        }
        # Copies where the test user can read them: the checkout may be
        # under a 0700 home directory.
        scripts = {}
        for name in ("pgpool-start.sh", "pgpool-follow.sh"):
            scripts[name] = os.path.join(self.base, name)
            shutil.copyfile(os.path.join(CHART_FILES, name), scripts[name])
            os.chmod(scripts[name], 0o644)
        self.proc = self.reaper.spawn(
            ["sh", scripts["pgpool-start.sh"]],
            logfile=self.log, cwd=self.base, env=env)
        # The chart's pgpool-follow sidecar.
        self.follower = self.reaper.spawn(
            ["sh", scripts["pgpool-follow.sh"]],
            logfile=self.log, cwd=self.base,
            env={"PGPOOL_RUN_DIR": self.run_dir,
                 "PGPOOL_PCP_PORT": str(self.pcp_port),
                 "PGPOOL_PCP_USER": "pcpadmin",
                 "PGPOOL_FOLLOW_INTERVAL": FOLLOW_INTERVAL})
        return self

    def stop(self, timeout=20):
        if self.follower is not None and self.follower.poll() is None:
            self.follower.kill()
            self.follower.wait(timeout=timeout)
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGINT)    # fast shutdown
        try:
            self.proc.wait(timeout=timeout)
        except Exception:  # pylint: disable=broad-except
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_tail(self, lines=40):
        return localcluster._log_tail(self.log, lines)  # pylint: disable=protected-access

    def check_alive(self):
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"pgpool exited with {self.proc.returncode}:"
                                 f"\n{self.log_tail()}")

    def connect(self, connect_timeout=3):
        conn = psycopg2.connect(host="127.0.0.1", port=self.port,
                                user=self.superuser, password=self.password,
                                dbname="postgres",
                                connect_timeout=connect_timeout,
                                application_name="pglease-pgpool-test")
        conn.autocommit = True
        return conn

    def sql(self, query, params=None):
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def pool_nodes(self):
        """SHOW pool_nodes as a list of dicts (column name -> text)."""
        conn = self.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW pool_nodes")
                names = [col[0] for col in cur.description]
                return [dict(zip(names, row)) for row in cur.fetchall()]
        finally:
            conn.close()

    def pcp_nodes(self):
        """Each node's status as Pgpool-II has it ("up", "waiting",
        "down"), by port, over PCP as pgpool-follow.sh asks: answered while
        Pgpool-II searches for a primary, when SHOW pool_nodes is not.
        None when PCP does not answer."""
        result = subprocess.run(
            ["pcp_node_info", "-h", self.run_dir, "-p", str(self.pcp_port),
             "-U", "pcpadmin", "-w", "-a"], capture_output=True, text=True,
            timeout=10, check=False,
            env=dict(os.environ, PCPPASSFILE=os.path.join(self.run_dir,
                                                          "pcppass")))
        if result.returncode != 0:
            return None
        return {int(f[1]): f[4] for f in
                (line.split() for line in result.stdout.splitlines())
                if len(f) > 4}

    def try_pool_nodes(self):
        try:
            return self.pool_nodes()
        except psycopg2.Error:
            return None

    def describe(self):
        nodes = self.try_pool_nodes()
        rows = "\n".join(f"  {n['port']} status={n['status']} "
                         f"role={n['role']} pg_role={n.get('pg_role')}"
                         for n in nodes or [])
        return (f"pool_nodes:\n{rows or '  (unavailable)'}\n"
                f"cluster:\n{self.cluster.describe()}\n"
                f"pgpool log:\n{self.log_tail()}")


def _node_state(pgpool, port):
    for row in pgpool.try_pool_nodes() or []:
        if int(row["port"]) == port:
            return row
    return None


def _wait(predicate, timeout, what, pgpool):
    return localcluster._wait(  # pylint: disable=protected-access
        lambda: (pgpool.check_alive(), predicate())[1], timeout, what,
        describe=pgpool.describe, interval=0.2)


def _wait_all_up(pgpool, timeout, what, primary=None):
    """Wait until Pgpool-II has every backend of its cluster up and, with
    `primary`, names that node the primary."""
    def all_up():
        nodes = pgpool.try_pool_nodes() or []
        return len(nodes) == len(pgpool.cluster.nodes) and all(
            n["status"] == "up" for n in nodes) and (
                primary is None or (_node_state(pgpool, primary.port)
                                    or {}).get("role") == "primary")
    _wait(all_up, timeout, what, pgpool)


def _rows(pgpool):
    """The values in pgpool_it, read through Pgpool-II (load-balanced)."""
    return sorted(v for (v,) in pgpool.sql("SELECT v FROM pgpool_it"))


def _write_through(pgpool, value):
    """INSERT one row through Pgpool-II; returns the port of the server that
    took it (the primary)."""
    rows = pgpool.sql("INSERT INTO pgpool_it(v) VALUES (%s) "
                      "RETURNING current_setting('port')::int", (value,))
    return rows[0][0]


def test_pgpool_follows_failover_balances_reads_and_reattaches(
        cluster_factory, workdir, reaper):
    started = time.monotonic()
    local = cluster_factory()
    primary = local.wait_healthy(60)
    pgpool = Pgpool(os.path.join(workdir, "pgpool"), local, reaper).start()
    settings = pgpool.settings
    assert settings["failover_command"] == ""
    assert settings["auto_failback"] == "on"

    # Up, with every backend attached and the cluster's primary as primary.
    def attached():
        nodes = pgpool.try_pool_nodes()
        if not nodes or any(n["status"] != "up" for n in nodes):
            return None
        roles = {int(n["port"]): n["role"] for n in nodes}
        return roles.get(primary.port) == "primary"

    _wait(attached, 30, "pgpool up with all backends, the primary known",
          pgpool)

    # Writes and reads through Pgpool-II.
    pgpool.sql("CREATE TABLE pgpool_it (id serial PRIMARY KEY, v text)")
    assert _write_through(pgpool, "before") == primary.port
    _wait(lambda: _rows(pgpool) == ["before"], 10,
          "the row to be read back through pgpool", pgpool)

    # Reads are balanced: each new session picks its load-balance node, so
    # N sessions see more than one backend, standbys included.
    standby_ports = {n.port for n in local if n is not primary}
    seen = set()
    for _ in range(30):
        seen.add(pgpool.sql("SELECT current_setting('port')::int")[0][0])
    assert len(seen) > 1, f"all reads went to {seen}"
    assert seen & standby_ports, f"no read reached a standby: {seen}"

    # Kill the primary's pod. Writes through Pgpool-II must resume on the
    # promoted standby within the agents' failover time plus Pgpool-II's
    # detection: the health check (period + retries) and the search for the
    # new primary (one try per second).
    failover_budget = (localcluster._seconds(local.settings["lease_duration"])  # pylint: disable=protected-access
                       + 2 * localcluster._seconds(local.settings["retry_period"])  # pylint: disable=protected-access
                       + 5.0)          # promotion and the agents' tick
    detection = (seconds(settings["health_check_period"])
                 + seconds(settings["health_check_max_retries"])
                 * (seconds(settings["health_check_retry_delay"])
                    + seconds(settings["connect_timeout"]) / 1000)
                 + seconds(settings["sr_check_period"]) + 2)
    old = primary
    killed_at = time.monotonic()
    old.kill_pod()

    def write_resumed():
        try:
            return _write_through(pgpool, "after")
        except psycopg2.Error:
            return None

    new_port = _wait(write_resumed, failover_budget + detection,
                     "a write through pgpool after the primary's pod died",
                     pgpool)
    resumed_after = time.monotonic() - killed_at
    new_primary = local.wait_primary(10, other_than=old.name)
    assert new_port == new_primary.port
    assert new_port != old.port
    # A read may be balanced to a standby that has not replayed the write
    # yet (asynchronous replication): wait for it, within a deadline.
    _wait(lambda: _rows(pgpool) == ["after", "before"], 10,
          "both rows to be read back through pgpool", pgpool)
    old_state = _node_state(pgpool, old.port)
    assert old_state is not None and old_state["status"] == "down", old_state

    # The old primary comes back (pod restarted), rejoins as a standby, and
    # Pgpool-II attaches it again by itself (auto_failback): no
    # pcp_attach_node.
    old.start_pod()
    local.wait_healthy(90)
    reattach = (seconds(settings["sr_check_period"])
                + seconds(settings["health_check_period"]) + 15)

    def reattached():
        state = _node_state(pgpool, old.port)
        return state is not None and state["status"] == "up" and \
            state["role"] == "standby"

    _wait(reattached, reattach, f"pgpool to attach {old.name} again", pgpool)
    roles = {int(n["port"]): n["role"] for n in pgpool.pool_nodes()}
    assert roles[new_primary.port] == "primary"
    pgpool.stop()
    print(f"\npgpool: writes resumed {resumed_after:.1f}s after the kill "
          f"(budget {failover_budget + detection:.0f}s); reads over "
          f"{sorted(seen)}; total {time.monotonic() - started:.0f}s")


def test_pgpool_follows_a_switchover(cluster_factory, workdir, reaper):
    """A planned switchover: the old primary fast-stops and comes back as a
    standby within a few seconds, often before a health check sees it down.
    Pgpool-II 4.3 looks for the primary only after it detaches a node, so
    alone it would keep sending writes to the old primary (now read-only);
    the chart's pgpool-follow.sh tells it the new one. No client session is
    open during the switchover (an open one would see the administrative
    shutdown and make Pgpool-II look by itself)."""
    local = cluster_factory()
    primary = local.wait_healthy(60)
    pgpool = Pgpool(os.path.join(workdir, "pgpool"), local, reaper).start()
    settings = pgpool.settings
    _wait(lambda: (_node_state(pgpool, primary.port) or {}).get("role")
          == "primary", 30, "pgpool to know the primary", pgpool)
    pgpool.sql("CREATE TABLE pgpool_it (id serial PRIMARY KEY, v text)")
    target = next(n for n in local if n is not primary)
    result = primary.agentctl("switchover", "--to", target.name, "--wait",
                              timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    local.wait_primary(30, other_than=primary.name)
    budget = (seconds(settings["health_check_period"])
              + seconds(settings["sr_check_period"])
              + 2 * int(FOLLOW_INTERVAL) + 5)

    def write_on_target():
        try:
            return _write_through(pgpool, "after") == target.port
        except psycopg2.Error:
            return None

    _wait(write_on_target, budget,
          f"a write through pgpool to land on {target.name}", pgpool)
    local.wait_healthy(60)

    _wait_all_up(pgpool, seconds(settings["sr_check_period"])
                 + seconds(settings["health_check_period"]) + 15,
                 "every backend attached after the switchover")
    pgpool.stop()


def test_pgpool_checks_the_backends_as_a_non_default_superuser(
        cluster_factory, workdir, reaper):
    """With config.superuser other than postgres (no postgres role at all),
    the health check and the streaming replication check run as that user,
    whose password pgpool-start.sh put in pool_passwd: every backend stays
    attached and the standbys' replication state is known. With the checks'
    user hard-coded to postgres, every backend was detached."""
    local = cluster_factory(settings={"superuser": "dba"})
    primary = local.wait_healthy(60)
    assert primary.sql("SELECT count(*) FROM pg_roles "
                       "WHERE rolname = 'postgres'") == [(0,)]
    pgpool = Pgpool(os.path.join(workdir, "pgpool"), local, reaper).start()
    settings = pgpool.settings
    assert settings["sr_check_user"] == settings["health_check_user"] == "dba"

    def checked():
        nodes = pgpool.try_pool_nodes()
        if not nodes or any(n["status"] != "up" for n in nodes):
            return None
        standbys = [n for n in nodes if int(n["port"]) != primary.port]
        return all(n.get("replication_state") == "streaming"
                   for n in standbys)

    # The replication state comes from sr_check (every sr_check_period).
    _wait(checked, seconds(settings["sr_check_period"]) * 2 + 30,
          "every backend up and the standbys seen streaming by sr_check",
          pgpool)
    # Several health checks later, still every backend attached.
    window = (seconds(settings["health_check_period"])
              * (seconds(settings["health_check_max_retries"]) + 2))
    deadline = time.monotonic() + window
    while time.monotonic() < deadline:
        nodes = pgpool.pool_nodes()
        assert all(n["status"] == "up" for n in nodes), pgpool.describe()
        time.sleep(0.5)
    pgpool.stop()


def test_pgpool_session_needs_the_database_on_every_backend(
        cluster_factory, workdir, reaper):
    """Pgpool-II opens a connection to every attached backend for each
    session, so a session on a database that a standby has not replayed
    yet fails ("kind does not match between main ... slot[N]"): right after
    CREATE DATABASE in asynchronous mode, for as long as the standby lags.
    docs/kubernetes.md tells users; the k8s-e2e walkthrough waits for the
    standbys' replay. This pins the behaviour (replay paused on one standby)
    and that the session works once the standby has replayed."""
    local = cluster_factory()
    primary = local.wait_healthy(60)
    pgpool = Pgpool(os.path.join(workdir, "pgpool"), local, reaper).start()

    _wait_all_up(pgpool, 30, "pgpool up with every backend, the primary "
                 "known", primary)
    lagging = next(n for n in local if n is not primary)
    lagging.sql("SELECT pg_wal_replay_pause()")

    def session_on_lagdb():
        conn = psycopg2.connect(host="127.0.0.1", port=pgpool.port,
                                user=pgpool.superuser,
                                password=pgpool.password, dbname="lagdb",
                                connect_timeout=5)
        conn.close()

    try:
        pgpool.sql("CREATE DATABASE lagdb")
        with pytest.raises(psycopg2.OperationalError,
                           match="kind does not match"):
            session_on_lagdb()
    finally:
        lagging.sql("SELECT pg_wal_replay_resume()")
    _wait(lambda: lagging.sql("SELECT count(*) FROM pg_database "
                              "WHERE datname = 'lagdb'") == [(1,)], 30,
          f"{lagging.name} to replay CREATE DATABASE", pgpool)
    session_on_lagdb()
    pgpool.check_alive()
    pgpool.stop()


def test_pgpool_follows_a_restarted_primary_that_kept_its_lease(
        cluster_factory, workdir, reaper):
    """A primary whose containers are killed is restarted by the kubelet
    before its Lease runs out, and its restarted agent, still the holder,
    leads again (docs/design.md: primary_start_timeout). Pgpool-II's health
    check saw it down meanwhile and detached it, then looked among the
    attached standbys for a primary that is not there. Writes through
    Pgpool-II must resume once the server is back: within the health
    check, the search and pgpool-follow's interval, not after minutes
    (found on the real kubelet: 2 minutes with search_primary_node_timeout
    = 2min)."""
    local = cluster_factory(settings={
        "lease_duration": "30s", "renew_deadline": "20s",
        "retry_period": "2s", "primary_start_timeout": "30s"})
    primary = local.wait_healthy(60)
    pgpool = Pgpool(os.path.join(workdir, "pgpool"), local, reaper).start()
    settings = pgpool.settings

    _wait_all_up(pgpool, 30, "pgpool up with every backend, the primary "
                 "known", primary)
    pgpool.sql("CREATE TABLE pgpool_it (id serial PRIMARY KEY, v text)")
    primary.kill_pod()
    detection = (seconds(settings["health_check_period"])
                 + seconds(settings["health_check_max_retries"])
                 * (seconds(settings["health_check_retry_delay"])
                    + seconds(settings["connect_timeout"]) / 1000) + 5)
    _wait(lambda: (pgpool.pcp_nodes() or {}).get(primary.port) == "down",
          detection, f"pgpool to detach {primary.name}", pgpool)
    restarted_at = time.monotonic()
    primary.start_pod()

    def write_resumed():
        try:
            return _write_through(pgpool, "after")
        except psycopg2.Error:
            return None

    # The agent's start and crash recovery, then one search (the
    # promotion of nobody) and pgpool-follow's attach.
    budget = (seconds(settings["search_primary_node_timeout"])
              + 3 * int(FOLLOW_INTERVAL) + 15)
    port = _wait(write_resumed, budget,
                 "a write through pgpool after the primary's restart", pgpool)
    resumed = time.monotonic() - restarted_at
    assert port == primary.port, \
        f"the write went to {port}, not the restarted holder {primary.port}"
    assert local.wait_primary(5).name == primary.name
    pgpool.check_alive()
    pgpool.stop()
    print(f"\npgpool: writes resumed {resumed:.1f}s after the restart "
          f"(budget {budget:.0f}s)")


def test_pgpool_started_before_its_backends(cluster_factory, workdir,
                                            reaper):
    """Pgpool-II's Deployment often starts before the StatefulSet's pods
    answer (helm install, a node restart): Pgpool-II finds no primary
    within search_primary_node_timeout and goes on without one. Once the
    cluster is up, writes through it must work (pgpool-follow names the
    primary, auto_failback attaches the standbys), within the follower's
    interval and the checks' periods."""
    local = cluster_factory(start=False)
    pgpool = Pgpool(os.path.join(workdir, "pgpool"), local, reaper).start()
    settings = pgpool.settings
    # Longer than the search: Pgpool-II has given up looking.
    deadline = time.monotonic() + \
        seconds(settings["search_primary_node_timeout"]) + 2
    while time.monotonic() < deadline:
        pgpool.check_alive()
        time.sleep(0.5)
    local.start(timeout=120)
    primary = local.wait_healthy(60)
    started_at = time.monotonic()

    def ready():
        try:
            pgpool.sql("CREATE TABLE IF NOT EXISTS pgpool_it "
                       "(id serial PRIMARY KEY, v text)")
            return _write_through(pgpool, "x")
        except psycopg2.Error:
            return None

    budget = (seconds(settings["health_check_period"])
              + seconds(settings["sr_check_period"])
              + seconds(settings["auto_failback_interval"])
              + 3 * int(FOLLOW_INTERVAL) + 15)
    port = _wait(ready, budget, "a write through pgpool after the cluster "
                 "came up", pgpool)
    assert port == primary.port

    _wait_all_up(pgpool, budget, "every backend attached")
    pgpool.stop()
    print(f"\npgpool: writable {time.monotonic() - started_at:.1f}s after "
          f"the cluster was healthy (budget {budget:.0f}s)")
