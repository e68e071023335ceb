"""lib/replication and lib/bootstrap against real PostgreSQL 15 servers,
driven through tests/integration/replication-check.c: bootstrap a primary,
clone two standbys from ~200 MB and compare their data, interrupt a clone
and retry it, follow a promoted standby without a restart, rejoin a
diverged old primary with pg_rewind, fall back to a re-clone when rewind
is impossible, and watch slots appear and expire.

The tests of this module share one cluster and run in order: each one
starts from the state the previous one left."""

import os
import shutil
import signal
import subprocess
import time

import pytest

import pgharness

PASSWORDS = {"superuser": "Su-pw:0x!secret", "repl": "Repl-pw\\tricky:1",
             "rewind": "Rw-pw secret 2"}
ROWS = 1_200_000  # about 200 MB with the padding below
CHECKSUM_SQL = ("SELECT count(*), sum(hashtext(pad)::bigint), max(id) "
                "FROM bulk")


def _check_bin(workdir):
    build_dir = os.environ.get("PGLEASE_BUILD_DIR") or os.path.join(
        os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))), "build")
    path = os.path.join(build_dir, "tests", "replication-check")
    if not os.access(path, os.X_OK):
        pytest.fail(f"not built: {path}")
    if pgharness.runner_can_access(path, "x"):
        return path
    staged = os.path.join(workdir, "replication-check")
    shutil.copy2(path, staged)
    os.chmod(staged, 0o755)
    return staged


def _secret(path, text):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
              "w", encoding="utf-8") as handle:
        handle.write(text + "\n")
    pgharness.chown_to_runner(path)
    return path


def _pgpass_line(user, password):
    esc = password.replace("\\", "\\\\").replace(":", "\\:")
    return f"*:*:*:{user}:{esc}"


class Cluster:
    """The servers and secrets the tests of this module share."""

    def __init__(self, workdir, reaper):
        self.workdir = workdir
        self.reaper = reaper
        self.bin = _check_bin(workdir)
        self.bindir = pgharness.pg_bindir()
        secrets = pgharness.make_dir(os.path.join(workdir, "secrets"), 0o700)
        self.files = {k: _secret(os.path.join(secrets, k), v)
                      for k, v in PASSWORDS.items()}
        # The tests' own superuser connections (psycopg2 in this process
        # and replication-check's conninfo) read this passfile.
        self.su_pgpass = _secret(os.path.join(secrets, "pgpass-su"),
                                 _pgpass_line("postgres",
                                              PASSWORDS["superuser"]))
        self.servers = {}

    def server(self, name):
        if name not in self.servers:
            self.servers[name] = pgharness.PgServer(self.workdir, name,
                                                    reaper=self.reaper)
        return self.servers[name]

    def passfile(self, pg):
        return os.path.join(pg.base_dir, "pgpass")

    def su_conninfo(self, pg):
        return (f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres "
                f"passfile={self.su_pgpass}")

    def run(self, command, *args, check=True, timeout=120):
        res = self.reaper.run([self.bin, command] + [str(a) for a in args],
                              timeout=timeout, check=False)
        if check and (res.returncode != 0 or "error" in res.stdout):
            raise AssertionError(f"replication-check {command} exited "
                                 f"{res.returncode}: {res.stdout}{res.stderr}")
        return res

    def spawn(self, command, *args):
        """Start replication-check with its stdout readable line by line."""
        kwargs = pgharness.runner().popen_kwargs()
        proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [self.bin, command] + [str(a) for a in args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=self.reaper.env(), start_new_session=True, **kwargs)
        return self.reaper.track(proc)

    def clone_args(self, pg, source, **extra):
        args = {"bindir": self.bindir, "datadir": pg.datadir, "name": pg.name,
                "host": "127.0.0.1", "port": source.port,
                "user": "replicator", "password-file": self.files["repl"],
                "passfile": self.passfile(pg), "timeout": "120s"}
        args.update(extra)
        return [f"{k}={v}" for k, v in args.items()]

    def clone(self, pg, source, **extra):
        return self.run("clone", *self.clone_args(pg, source, **extra))

    def wait_replayed(self, primary, standby, timeout=60):
        lsn = primary.sql("SELECT pg_current_wal_lsn()::text")[0][0]
        pgharness.wait_for(
            lambda: standby.sql("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn",
                                (lsn,))[0][0],
            timeout, f"{standby.name} to replay {lsn}",
            ignore=(Exception,))


@pytest.fixture(scope="module")
def cluster():
    workdir = pgharness.make_workdir("pglease-it-repl-")
    reaper = pgharness.Reaper(home=workdir)
    old_pgpassfile = os.environ.get("PGPASSFILE")
    cl = Cluster(workdir, reaper)
    os.environ["PGPASSFILE"] = cl.su_pgpass
    try:
        yield cl
    finally:
        for pg in cl.servers.values():
            try:
                pg.stop("immediate", timeout=10)
            except (AssertionError, OSError):
                pass
        reaper.kill_all()
        if old_pgpassfile is None:
            os.environ.pop("PGPASSFILE", None)
        else:
            os.environ["PGPASSFILE"] = old_pgpassfile
        if os.environ.get("PGLEASE_KEEP_TMP") != "1":
            shutil.rmtree(workdir, ignore_errors=True)


def test_bootstrap_creates_checksummed_primary_with_roles(cluster):
    pg = cluster.server("pg1")
    cluster.run("bootstrap", f"bindir={cluster.bindir}",
                f"datadir={pg.datadir}", f"port={pg.port}",
                f"socket-dir={pg.sockdir}", "listen=127.0.0.1",
                f"password-file={cluster.files['superuser']}",
                "networks=10.244.0.0/16,127.0.0.0/8", "max-slot-wal-keep-size=1GB")
    # Test speed only: the data of these servers need not survive a crash.
    pg.configure(fsync=False, shared_buffers="32MB")
    pg.start()
    cluster.run("roles", f"conninfo={cluster.su_conninfo(pg)}",
                f"repl-password-file={cluster.files['repl']}",
                f"rewind-password-file={cluster.files['rewind']}")

    assert pg.sql("SHOW data_checksums") == [("on",)]
    assert pg.sql("SHOW wal_log_hints") == [("on",)]
    assert pg.sql("SHOW max_slot_wal_keep_size") == [("1GB",)]
    roles = dict(pg.sql("SELECT rolname, rolreplication FROM pg_roles "
                        "WHERE rolname IN ('replicator', 'pglease_rewind')"))
    assert roles == {"replicator": True, "pglease_rewind": False}
    verifier = pg.sql("SELECT rolpassword FROM pg_authid "
                      "WHERE rolname = 'replicator'")[0][0]
    assert verifier.startswith("SCRAM-SHA-256$")
    assert pg.sql("SELECT has_function_privilege('pglease_rewind', "
                  "'pg_read_binary_file(text, bigint, bigint, boolean)', "
                  "'EXECUTE')") == [(True,)]
    hba = {(r[0], tuple(r[1]), tuple(r[2]), r[3], r[4]) for r in pg.sql(
        "SELECT type, database, user_name, address, auth_method "
        "FROM pg_hba_file_rules WHERE address = '10.244.0.0'")}
    assert hba == {("host", ("replication",), ("replicator",), "10.244.0.0",
                    "scram-sha-256"),
                   ("host", ("all",), ("all",), "10.244.0.0", "scram-sha-256")}
    log = open(pg.logfile, encoding="utf-8", errors="replace").read()
    for password in PASSWORDS.values():
        assert password not in log

    pg.sql("CREATE TABLE bulk (id int PRIMARY KEY, pad text)")
    pg.sql("INSERT INTO bulk SELECT g, md5(g::text) || repeat('x', 100) "
           "FROM generate_series(1, %s) g", (ROWS,))
    assert pg.sql("SELECT pg_database_size('postgres') > 180 * 1024 * 1024")[0][0]


def _proc_text(pid, what):
    try:
        with open(f"/proc/{pid}/{what}", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_two_clones_hold_the_primary_data_and_stream(cluster):
    pg1 = cluster.server("pg1")
    started = time.monotonic()
    for name in ("standby1", "standby2"):
        pg = cluster.server(name)
        proc = cluster.spawn("clone", *cluster.clone_args(
            pg, pg1, **{"progress-interval": "200ms"}))
        lines, seen = [], ""
        for line in proc.stdout:
            lines.append(line.strip())
            if line.startswith("pid ") and not seen:
                pid = int(line.split()[1])
                # Nothing that holds a password on the child's command line
                # or in its environment (safety rule 6); wait for its exec.
                pgharness.wait_for(
                    lambda: "pg_basebackup" in _proc_text(pid, "cmdline"),
                    10, "pg_basebackup to be executed", interval=0.005)
                seen = _proc_text(pid, "cmdline") + _proc_text(pid, "environ")
        assert proc.wait(timeout=120) == 0, lines
        assert lines[-1] == "ok", lines
        assert any(line.startswith("progress percent=") for line in lines)
        assert "pg_basebackup" in seen and "--slot=pglease_" + name in seen
        for password in PASSWORDS.values():
            assert password not in seen
        assert "PGPASSFILE=" in seen and "PGPASSWORD" not in seen
        assert not os.path.exists(os.path.join(
            os.path.dirname(pg.datadir), ".data.pglease-clone"))
        pg.start()
    assert time.monotonic() - started < 90

    expected = pg1.sql(CHECKSUM_SQL)
    assert expected[0][0] == ROWS
    for name in ("standby1", "standby2"):
        pg = cluster.server(name)
        cluster.wait_replayed(pg1, pg)
        assert pg.in_recovery()
        assert pg.sql(CHECKSUM_SQL) == expected
    streaming = dict(pg1.sql("SELECT application_name, state FROM "
                             "pg_stat_replication"))
    assert streaming == {"standby1": "streaming", "standby2": "streaming"}
    slots = dict(pg1.sql("SELECT slot_name, active FROM pg_replication_slots"))
    assert slots == {"pglease_standby1": True, "pglease_standby2": True}


def test_clone_into_foreign_nonempty_dir_is_refused(cluster):
    pg1 = cluster.server("pg1")
    pg = cluster.server("intruder")
    os.makedirs(pg.datadir)
    _secret(os.path.join(pg.datadir, "precious"), "data")
    pgharness.chown_to_runner(pg.datadir)
    res = cluster.run("clone", *cluster.clone_args(pg, pg1), check=False)
    assert res.returncode == 2 and "error EEXIST" in res.stdout
    assert os.path.exists(os.path.join(pg.datadir, "precious"))


def test_dry_run_plans_without_doing_anything(cluster):
    pg1 = cluster.server("pg1")
    pg = cluster.server("planned")
    res = cluster.run("plan", *cluster.clone_args(pg, pg1))
    assert f"--pgdata={pg.datadir}" in res.stdout
    assert "--slot=pglease_planned" in res.stdout
    assert "password=" not in res.stdout
    assert not os.path.exists(pg.datadir)
    assert pg1.sql("SELECT count(*) FROM pg_replication_slots "
                   "WHERE slot_name = 'pglease_planned'") == [(0,)]


def test_interrupted_clone_is_cleaned_up_and_retry_succeeds(cluster):
    pg1 = cluster.server("pg1")
    pg = cluster.server("standby3")
    proc = cluster.spawn("clone", *cluster.clone_args(
        pg, pg1, **{"progress-interval": "10ms"}))
    pid = None
    out = []
    for line in proc.stdout:
        out.append(line.strip())
        if line.startswith("pid "):
            pid = int(line.split()[1])
            # pg_basebackup dies mid-copy, once it has written something.
            pgharness.wait_for(lambda: os.path.isdir(pg.datadir)
                               and os.listdir(pg.datadir), 30,
                               "pg_basebackup to write files", interval=0.005)
            os.kill(pid, signal.SIGKILL)
            pid = -1
    assert proc.wait(timeout=60) == 2, out
    assert pid == -1, out
    assert out[-1].startswith("error EPROTO"), out
    assert "killed by signal 9" in out[-1]
    assert not os.path.exists(pg.datadir)
    assert not os.path.exists(os.path.join(pg.base_dir, ".data.pglease-clone"))
    pgharness.wait_for(
        lambda: pg1.sql("SELECT count(*) FROM pg_replication_slots "
                        "WHERE slot_name = 'pglease_standby3'") == [(0,)],
        10, "the failed clone's slot to be dropped")
    assert not any("pg_basebackup" in _proc_text(p, "cmdline")
                   for p in cluster.reaper.owned_pids())

    cluster.clone(pg, pg1, attempts=2, backoff="1s")
    assert os.path.exists(os.path.join(pg.datadir, "standby.signal"))
    shutil.rmtree(pg.datadir)
    pg1.sql("SELECT pg_drop_replication_slot('pglease_standby3')")


def test_slots_appear_for_members_and_expire_when_gone(cluster):
    pg1 = cluster.server("pg1")
    conninfo = f"conninfo={cluster.su_conninfo(pg1)}"
    pg1.sql("SELECT pg_create_physical_replication_slot('foreign_slot')")
    res = cluster.run("slots", conninfo, "members=standby1,standby2,Ghost-1")
    assert res.stdout.split() == ["round", "0", "created=pglease_ghost_1",
                                  "dropped="]
    assert pg1.sql("SELECT count(*) FROM pg_replication_slots "
                   "WHERE slot_name = 'pglease_ghost_1'") == [(1,)]
    # Nobody is a member any more: only the inactive pglease_ slot goes,
    # once retention has passed; the standbys' active slots and the
    # foreign slot stay.
    res = cluster.run("slots", conninfo, "members=", "retention=1s",
                      "rounds=4", "interval=500ms")
    rounds = res.stdout.strip().splitlines()
    assert rounds[0] == "round 0 created= dropped="
    assert "dropped=pglease_ghost_1" in res.stdout
    assert res.stdout.count("dropped=pglease") == 1
    names = {r[0] for r in pg1.sql("SELECT slot_name FROM pg_replication_slots")}
    assert names == {"pglease_standby1", "pglease_standby2", "foreign_slot"}
    pg1.sql("SELECT pg_drop_replication_slot('foreign_slot')")


def test_follow_promoted_standby_without_restart(cluster):
    pg1, s1, s2 = (cluster.server(n) for n in ("pg1", "standby1", "standby2"))
    pg1.sql("INSERT INTO bulk VALUES (-1, 'before failover')")
    cluster.wait_replayed(pg1, s1)
    cluster.wait_replayed(pg1, s2)
    # The primary goes away (its walsenders ship everything up to the
    # shutdown checkpoint first, so both standbys stand at the same LSN).
    pg1.stop("fast")
    s1.sql("SELECT pg_promote(true, 30)")
    assert not s1.in_recovery()
    # The new primary's agent creates the slots of the other members.
    cluster.run("slots", f"conninfo={cluster.su_conninfo(s1)}",
                "members=pg1,standby2")
    pid = s2.pid()
    cluster.run("follow", f"conninfo={cluster.su_conninfo(s2)}",
                "host=127.0.0.1", f"port={s1.port}", "user=replicator",
                f"passfile={cluster.passfile(s2)}", "name=standby2",
                "slot=pglease_standby2", "timeline=2", "timeout=30s")
    assert s2.pid() == pid
    s1.sql("INSERT INTO bulk VALUES (-2, 'after failover')")
    cluster.wait_replayed(s1, s2)
    assert s2.sql("SELECT pad FROM bulk WHERE id = -2") == [("after failover",)]
    assert s1.sql("SELECT application_name, state FROM pg_stat_replication") \
        == [("standby2", "streaming")]


def test_rewind_rejoins_diverged_old_primary(cluster):
    pg1, s1 = cluster.server("pg1"), cluster.server("standby1")
    # The old primary comes back as a primary (split brain), writes after
    # the fork, then crashes.
    pg1.start()
    pg1.sql("INSERT INTO bulk SELECT -g, 'diverged' FROM generate_series(3, 1000) g")
    pg1.stop("immediate")
    cluster.run("passfile", f"passfile={cluster.passfile(pg1)}",
                "user=replicator", f"password-file={cluster.files['repl']}")
    res = cluster.run("forked", f"bindir={cluster.bindir}",
                      f"datadir={pg1.datadir}", "host=127.0.0.1",
                      f"port={s1.port}", "user=replicator",
                      f"passfile={cluster.passfile(pg1)}", check=False)
    assert "error ESTALE" in res.stdout  # unclean: end of WAL unknown
    cluster.run("clean-shutdown", f"bindir={cluster.bindir}",
                f"datadir={pg1.datadir}")
    res = cluster.run("forked", f"bindir={cluster.bindir}",
                      f"datadir={pg1.datadir}", "host=127.0.0.1",
                      f"port={s1.port}", "user=replicator",
                      f"passfile={cluster.passfile(pg1)}")
    assert res.stdout.strip() == "forked=1"

    cluster.run("rewind", f"bindir={cluster.bindir}", f"datadir={pg1.datadir}",
                "host=127.0.0.1", f"port={s1.port}",
                "rewind-user=pglease_rewind",
                f"rewind-password-file={cluster.files['rewind']}",
                f"passfile={cluster.passfile(pg1)}", "repl-user=replicator",
                "name=pg1", "slot=pglease_pg1", timeout=180)
    # One passfile serves both roles now.
    lines = open(cluster.passfile(pg1), encoding="utf-8").read().splitlines()
    assert sorted(line.split(":")[3] for line in lines) == \
        ["pglease_rewind", "replicator"]
    pg1.start()
    assert pg1.in_recovery()
    cluster.wait_replayed(s1, pg1)
    assert pg1.sql("SELECT count(*) FROM bulk WHERE pad = 'diverged'") == [(0,)]
    assert pg1.sql("SELECT pad FROM bulk WHERE id = -2") == [("after failover",)]
    assert pg1.sql(CHECKSUM_SQL) == s1.sql(CHECKSUM_SQL)
    res = cluster.run("forked", f"bindir={cluster.bindir}",
                      f"datadir={pg1.datadir}", "host=127.0.0.1",
                      f"port={s1.port}", "user=replicator",
                      f"passfile={cluster.passfile(pg1)}", check=False)
    assert "error" in res.stdout  # running: pg_controldata says in recovery


def test_impossible_rewind_is_reported_and_reclone_rejoins(cluster):
    s1, s2 = cluster.server("standby1"), cluster.server("standby2")
    # standby2 forks off (a second, wrong promotion) and writes; then it
    # loses what pg_rewind needs: no checksums, no wal_log_hints.
    s2.sql("SELECT pg_promote(true, 30)")
    s2.sql("INSERT INTO bulk VALUES (-5000, 'split brain')")
    s2.stop("fast")
    cluster.reaper.run([os.path.join(cluster.bindir, "pg_checksums"),
                        "--disable", "-D", s2.datadir], timeout=120)
    s2.configure(wal_log_hints=False)
    s2.start()
    s2.stop("fast")
    res = cluster.run("rewind", f"bindir={cluster.bindir}",
                      f"datadir={s2.datadir}", "host=127.0.0.1",
                      f"port={s1.port}", "rewind-user=pglease_rewind",
                      f"rewind-password-file={cluster.files['rewind']}",
                      f"passfile={cluster.passfile(s2)}", check=False)
    assert res.returncode == 2
    assert res.stdout.startswith("error ENOTRECOVERABLE"), res.stdout

    # rejoin_fallback = clone: remove and clone again.
    shutil.rmtree(s2.datadir)
    cluster.clone(s2, s1)
    s2.start()
    assert s2.in_recovery()
    cluster.wait_replayed(s1, s2)
    assert s2.sql("SELECT count(*) FROM bulk WHERE id = -5000") == [(0,)]
    assert s2.sql(CHECKSUM_SQL) == s1.sql(CHECKSUM_SQL)
