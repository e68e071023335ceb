#!/usr/bin/python3
"""Replication benchmark: lib/replication's clone and rewind against real
PostgreSQL 15 servers, driven through tests/replication-check.

Prints (nothing is asserted):
  1. clone throughput of the wrapper (replication-check clone: pre-flight,
     slot, pg_basebackup, standby configuration) against raw pg_basebackup
     with the same flags and the same passfile auth, on the same primary:
     runs alternate raw / wrapper, each clone removed before the next;
     median MB/s of each and the ratio wrapper / raw;
  2. the time for a diverged former primary to stream again from the
     promoted standby: pg_rewind (replication-check rewind, start, wait
     until it streams) against a re-clone (remove, replication-check clone,
     start, wait until it streams), on the same pair; the divergence is
     made again for every run; medians and the ratio.

    bench/replication.py [BUILD_DIR] [--rows N] [--runs N]

BUILD_DIR defaults to build/ (it must hold tests/replication-check, so the
build needs -Dtests=enabled). Needs Debian's python3 with python3-psycopg2
and PostgreSQL 15. Runs as the unprivileged user pglease-test when started
as root (see tests/integration/pgharness.py). Everything runs on loopback
in a private temp directory; every process started is killed at the end."""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SOURCE, "tests", "integration"))

import pgharness  # noqa: E402  pylint: disable=wrong-import-position
from summary import figure  # noqa: E402  bench/run collects these

PASSWORDS = {"superuser": "bench-su-pw", "repl": "bench-repl-pw",
             "rewind": "bench-rewind-pw"}
# Each row takes about 190 bytes on disk with its index entry: 1.5 M rows
# make a database of about 300 MB.
DEFAULT_ROWS = 1_500_000
MB = 1024 * 1024


def secs(seconds):
    return f"{seconds:.2f}s"


def dir_bytes(path):
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def machine():
    mem_kb = 0
    with open("/proc/meminfo", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    cores = subprocess.run(["nproc"], capture_output=True, text=True,
                           check=True).stdout.strip()
    return cores, mem_kb / (1024 * 1024)


class Bench:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.reaper = pgharness.Reaper(home=workdir)
        self.bindir = pgharness.pg_bindir()
        self.check_bin = self._stage_check_bin()
        secrets = pgharness.make_dir(os.path.join(workdir, "secrets"), 0o700)
        self.files = {k: self._secret(os.path.join(secrets, k), v)
                      for k, v in PASSWORDS.items()}
        # psycopg2 in this process reads the superuser's password here.
        self.su_pgpass = self._secret(os.path.join(secrets, "pgpass-su"),
                                      "*:*:*:postgres:" + PASSWORDS["superuser"])
        os.environ["PGPASSFILE"] = self.su_pgpass
        self.servers = {}

    def _stage_check_bin(self):
        path = os.path.join(os.path.abspath(self.args.build_dir), "tests",
                            "replication-check")
        if not os.access(path, os.X_OK):
            raise SystemExit(f"not built: {path} (meson setup -Dtests=enabled)")
        if pgharness.runner_can_access(path, "x"):
            return path
        staged = os.path.join(self.workdir, "replication-check")
        shutil.copy2(path, staged)
        os.chmod(staged, 0o755)
        return staged

    @staticmethod
    def _secret(path, text):
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                  "w", encoding="utf-8") as handle:
            handle.write(text + "\n")
        pgharness.chown_to_runner(path)
        return path

    def server(self, name):
        if name not in self.servers:
            self.servers[name] = pgharness.PgServer(self.workdir, name,
                                                    reaper=self.reaper)
        return self.servers[name]

    def passfile(self, pg):
        return os.path.join(pg.base_dir, "pgpass")

    def check(self, command, *args, timeout=300):
        res = self.reaper.run([self.check_bin, command] + list(args),
                              timeout=timeout, check=False)
        if res.returncode != 0 or res.stdout.startswith("error"):
            raise RuntimeError(f"replication-check {command} exited "
                               f"{res.returncode}: {res.stdout}{res.stderr}")
        return res

    def teardown(self):
        for pg in self.servers.values():
            try:
                pg.stop("immediate", timeout=10)
            except (AssertionError, OSError):
                pass
        self.reaper.kill_all()

    # -- servers -------------------------------------------------------

    def start_nowait(self, pg):
        """The postmaster as PgServer.start() runs it, without waiting for
        it to accept connections: the caller waits for streaming."""
        pg.proc = self.reaper.spawn(
            [pg.bin("postgres"), "-D", pg.datadir, "-p", pg.port,
             "-k", pg.sockdir], logfile=pg.logfile)

    def wait_streaming(self, primary_conn, standby, timeout=120):
        def streaming():
            if standby.proc.poll() is not None:
                raise RuntimeError(f"{standby.name} exited; log tail:\n"
                                   f"{standby.log_tail()}")
            with primary_conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pg_stat_replication "
                            "WHERE application_name = %s "
                            "AND state = 'streaming'", (standby.name,))
                return cur.fetchone()[0] > 0
        pgharness.wait_for(streaming, timeout,
                           f"{standby.name} to stream", interval=0.02)

    def make_primary(self):
        pg = self.server("a")
        self.check("bootstrap", f"bindir={self.bindir}",
                   f"datadir={pg.datadir}", f"port={pg.port}",
                   f"socket-dir={pg.sockdir}", "listen=127.0.0.1",
                   f"password-file={self.files['superuser']}",
                   "networks=127.0.0.0/8", "max-slot-wal-keep-size=2GB")
        pg.start()
        self.check("roles", f"conninfo={self.su_conninfo(pg)}",
                   f"repl-password-file={self.files['repl']}",
                   f"rewind-password-file={self.files['rewind']}")
        # The agent keeps the replication role's line in every member's
        # passfile, a standby's or not: the primary needs it to rejoin.
        self.check("passfile", f"passfile={self.passfile(pg)}",
                   "user=replicator", f"password-file={self.files['repl']}")
        pg.sql("CREATE TABLE bulk (id int PRIMARY KEY, pad text)")
        pg.sql("INSERT INTO bulk SELECT g, md5(g::text) || repeat('x', 100) "
               "FROM generate_series(1, %s) g", (self.args.rows,))
        pg.sql("CHECKPOINT")
        return pg

    def su_conninfo(self, pg):
        return (f"host=127.0.0.1 port={pg.port} user=postgres dbname=postgres "
                f"passfile={self.su_pgpass}")

    def clone_args(self, pg, source):
        return [f"bindir={self.bindir}", f"datadir={pg.datadir}",
                f"name={pg.name}", "host=127.0.0.1", f"port={source.port}",
                "user=replicator", f"password-file={self.files['repl']}",
                f"passfile={self.passfile(pg)}", "timeout=600s"]

    # -- 1. clone throughput -------------------------------------------

    def raw_argv(self, pg, source):
        """pg_basebackup exactly as the wrapper runs it (its dry-run plan
        prints the command line), plus --create-slot: the wrapper creates
        its slot itself before starting pg_basebackup."""
        plan = self.check("plan", *self.clone_args(pg, source)).stdout
        line = next(text for text in plan.splitlines()
                    if text.startswith("run "))
        command = line[len("run "):line.rindex(" (PGPASSFILE=")]
        flags = command.split(" --")
        argv = [flags[0]] + ["--" + f for f in flags[1:]]
        return argv + ["--create-slot"]

    def clone_throughput(self, primary):
        target = self.server("clone")
        slot = "pglease_clone"
        # Raw pg_basebackup authenticates as the wrapper does: passfile
        # named in the conninfo and in PGPASSFILE, never a password.
        self.check("passfile", f"passfile={self.passfile(target)}",
                   "user=replicator", f"password-file={self.files['repl']}")
        raw_argv = self.raw_argv(target, primary)
        rates = {"raw": [], "wrapper": []}
        sizes = []
        for run in range(self.args.runs):
            for kind in ("raw", "wrapper"):
                # Each run starts with no dirty pages left by the last one
                # (pg_basebackup fsyncs what it wrote).
                os.sync()
                started = time.monotonic()
                if kind == "raw":
                    self.reaper.run(raw_argv, timeout=600, env={
                        "PGPASSFILE": self.passfile(target)})
                else:
                    self.check("clone", *self.clone_args(target, primary),
                               timeout=600)
                elapsed = time.monotonic() - started
                size = dir_bytes(target.datadir)
                sizes.append(size)
                rates[kind].append(size / MB / elapsed)
                print(f"    run {run + 1} {kind:7s}: {size / MB:.0f} MB in "
                      f"{secs(elapsed)} = {size / MB / elapsed:.0f} MB/s",
                      flush=True)
                shutil.rmtree(target.datadir)
                primary.sql("SELECT pg_drop_replication_slot(%s)", (slot,))
        size = statistics.median(sizes)
        raw = statistics.median(rates["raw"])
        wrapper = statistics.median(rates["wrapper"])
        return raw, wrapper, size

    # -- 2. rejoin: rewind against re-clone ----------------------------

    def diverge(self, old, new):
        """new (a streaming standby of old) is promoted, and old writes on
        after the fork (split brain) and is stopped."""
        new.sql("SELECT pg_promote(true, 60)")
        # The new primary's agent creates every member's slot.
        new.sql("SELECT pg_create_physical_replication_slot(%s, true)",
                (f"pglease_{old.name}",))
        old.sql("INSERT INTO bulk SELECT -g, 'diverged' "
                "FROM generate_series(1, 1000) g "
                "ON CONFLICT (id) DO UPDATE SET pad = 'diverged again'")
        old.stop("fast")

    def rejoin_rewind(self, old, new, new_conn):
        started = time.monotonic()
        self.check("rewind", f"bindir={self.bindir}", f"datadir={old.datadir}",
                   "host=127.0.0.1", f"port={new.port}",
                   "rewind-user=pglease_rewind",
                   f"rewind-password-file={self.files['rewind']}",
                   f"passfile={self.passfile(old)}", "repl-user=replicator",
                   f"name={old.name}", f"slot=pglease_{old.name}",
                   "timeout=600s", timeout=600)
        self.start_nowait(old)
        self.wait_streaming(new_conn, old)
        return time.monotonic() - started

    def rejoin_reclone(self, old, new, new_conn):
        started = time.monotonic()
        shutil.rmtree(old.datadir)
        self.check("clone", *self.clone_args(old, new), timeout=600)
        self.start_nowait(old)
        self.wait_streaming(new_conn, old)
        return time.monotonic() - started

    def rejoin(self, primary):
        standby = self.server("b")
        self.check("clone", *self.clone_args(standby, primary), timeout=600)
        standby.start()
        old, new = primary, standby
        times = {"rewind": [], "reclone": []}
        for run in range(self.args.runs):
            self.diverge(old, new)
            new_conn = new.connect()
            try:
                rewind = self.rejoin_rewind(old, new, new_conn)
                # A re-clone copies everything whatever the divergence, so
                # the rewound server (same size, same source) serves; it
                # only has to be stopped first, as a diverged one is.
                old.stop("fast")
                reclone = self.rejoin_reclone(old, new, new_conn)
            finally:
                new_conn.close()
            times["rewind"].append(rewind)
            times["reclone"].append(reclone)
            print(f"    run {run + 1}: {old.name} rejoins {new.name}: rewind "
                  f"{secs(rewind)}, re-clone {secs(reclone)}", flush=True)
            # The rejoined server streams: next run it is the one promoted.
            old, new = new, old
        return (statistics.median(times["rewind"]),
                statistics.median(times["reclone"]))


def main():
    parser = argparse.ArgumentParser(
        description="clone throughput and rewind against re-clone")
    parser.add_argument("build_dir", nargs="?",
                        default=os.path.join(SOURCE, "build"))
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                        help=f"rows of ~190 bytes (default {DEFAULT_ROWS})")
    parser.add_argument("--runs", type=int, default=3,
                        help="runs of each measurement (default 3)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the temp directory (logs) at the end")
    args = parser.parse_args()

    began = time.monotonic()
    workdir = pgharness.make_workdir("pglease-bench-repl-")
    bench = Bench(args, workdir)
    try:
        cores, mem_gb = machine()
        version = subprocess.run(
            [os.path.join(bench.bindir, "postgres"), "--version"],
            capture_output=True, text=True, check=True).stdout.strip()
        primary = bench.make_primary()
        db_mb = primary.sql("SELECT sum(pg_database_size(oid)) "
                            "FROM pg_database")[0][0] / MB
        settings = (f"{db_mb:.0f} MB in databases ({args.rows} rows), "
                    f"{cores} cores, {mem_gb:.1f} GiB RAM, {version}, "
                    f"loopback, {args.runs} runs")
        print(f"settings: {settings}", flush=True)

        print("clone throughput (raw pg_basebackup -X stream "
              "--checkpoint=fast vs the wrapper, runs alternate):",
              flush=True)
        raw, wrapper, size = bench.clone_throughput(primary)
        figure("clone throughput, wrapper / raw pg_basebackup",
               f"{wrapper / raw:.2f} ({wrapper:.0f} vs {raw:.0f} MB/s)", settings)
        print(f"  clone of {size / MB:.0f} MB, {cores} cores, {version}: "
              f"raw {raw:.0f} MB/s, wrapper {wrapper:.0f} MB/s (medians), "
              f"wrapper/raw {wrapper / raw:.2f}; as time: raw "
              f"{secs(size / MB / raw)}, wrapper {secs(size / MB / wrapper)}",
              flush=True)

        print("rejoin of a diverged former primary until it streams "
              "(rewind vs remove + re-clone):", flush=True)
        rewind, reclone = bench.rejoin(primary)
        figure("rejoin: rewind vs re-clone", f"{rewind:.2f}s vs {reclone:.2f}s", settings)
        print(f"  {db_mb:.0f} MB database, {cores} cores, {version}: "
              f"rewind {secs(rewind)}, re-clone {secs(reclone)} (medians), "
              f"rewind/re-clone {rewind / reclone:.2f}", flush=True)
    finally:
        bench.teardown()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"total {secs(time.monotonic() - began)}")


if __name__ == "__main__":
    main()
