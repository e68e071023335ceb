"""clients: the application of the resilience run. Each client is a thread
that writes unique rows and reads them back through "the primary Service":
whichever node the Lease names as holder, re-resolved after every error.

Every operation is recorded with the client's own monotonic start and end
times, so that the checker can reason about what happened when:

- a write records (client, id, port, timeline, start, end, outcome), where
  port and timeline are the server's own answer, read in the statement that
  inserts the row (the timeline is the first 8 hex digits of the current WAL
  file name); outcome is "ok" (acknowledged), "failed" (the server reported
  an error, so nothing committed) or "unknown" (the connection broke or the
  client gave up while the commit was in flight);
- a read records what the server answered for this client's rows (count and
  highest id), so that the checker can tell whether it saw every write
  acknowledged before the read started.

The clients use psycopg2's asynchronous connections so that each statement
has a client-side deadline, as applications have: a frozen server answers
nothing and its own statement_timeout never fires."""

import select
import threading
import time

import psycopg2
import psycopg2.extensions

TABLE = "resilience_writes"

CREATE_TABLE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    "client int NOT NULL, id bigint NOT NULL, "
    "port int NOT NULL DEFAULT inet_server_port(), "
    "at timestamptz NOT NULL DEFAULT clock_timestamp(), "
    "PRIMARY KEY (client, id))")

# One row the nemesis bumps on the primary and waits to see on every
# standby: "streaming" in pg_stat_wal_receiver is not proof that WAL flows.
PROBE_TABLE = "resilience_probe"
CREATE_PROBE = (f"CREATE TABLE IF NOT EXISTS {PROBE_TABLE} ("
                "k int PRIMARY KEY, v bigint NOT NULL)")
BUMP_PROBE = (
    "SET synchronous_commit = local; "
    f"INSERT INTO {PROBE_TABLE} (k, v) VALUES (1, 1) ON CONFLICT (k) "
    f"DO UPDATE SET v = {PROBE_TABLE}.v + 1 RETURNING v")
READ_PROBE = f"SELECT coalesce(max(v), 0) FROM {PROBE_TABLE} WHERE k = 1"

INSERT = (
    f"INSERT INTO {TABLE} (client, id) VALUES (%s, %s) "
    "RETURNING inet_server_port(), "
    "substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)")

READ = (
    f"SELECT count(*), coalesce(max(id), 0), inet_server_port(), "
    f"pg_is_in_recovery() FROM {TABLE} WHERE client = %s")

# The warning PostgreSQL gives when a commit's wait for the synchronous
# standby is cancelled: the commit is then acknowledged although it may
# exist on the primary only.
SYNC_CANCEL_NOTICE = "canceling wait for synchronous replication"


class ClientTimeout(Exception):
    """The server did not answer within the client's deadline."""


class Write:
    """One INSERT as the client saw it."""

    __slots__ = ("client", "id", "port", "timeline", "start", "end",
                 "outcome", "error", "node", "notice")

    def __init__(self, client, row_id, node, start):
        self.client = client
        self.id = row_id
        self.node = node            # the node the client sent it to
        self.port = None            # the server's answer
        self.timeline = None
        self.start = start
        self.end = None
        self.outcome = None
        self.error = None
        self.notice = None

    def as_dict(self):
        return {key: getattr(self, key) for key in self.__slots__}


class Read:
    """One read of the client's own rows."""

    __slots__ = ("client", "node", "port", "start", "end", "outcome",
                 "count", "max_id", "in_recovery", "error")

    def __init__(self, client, node, start):
        self.client = client
        self.node = node
        self.port = None
        self.start = start
        self.end = None
        self.outcome = None
        self.count = None
        self.max_id = None
        self.in_recovery = None
        self.error = None

    def as_dict(self):
        return {key: getattr(self, key) for key in self.__slots__}


def _wait_ready(conn, deadline):
    """Drive an asynchronous connection until its operation completes;
    ClientTimeout past the deadline. Errors of the server or the connection
    come out of conn.poll() as psycopg2 exceptions."""
    while True:
        state = conn.poll()
        if state == psycopg2.extensions.POLL_OK:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ClientTimeout()
        if state == psycopg2.extensions.POLL_READ:
            select.select([conn.fileno()], [], [], remaining)
        elif state == psycopg2.extensions.POLL_WRITE:
            select.select([], [conn.fileno()], [], remaining)
        else:
            raise psycopg2.OperationalError(f"unexpected poll state {state}")


def _close(conn):
    if conn is None:
        return
    try:
        conn.close()
    except psycopg2.Error:
        pass


class Client(threading.Thread):
    """Writes rows (client_id, 1), (client_id, 2)... and, every
    `read_every` writes, reads its own rows back."""

    def __init__(self, cluster, client_id, op_timeout=3.0, interval=0.02,
                 read_every=5):
        super().__init__(name=f"client-{client_id}", daemon=True)
        self.cluster = cluster
        self.client_id = client_id
        self.op_timeout = op_timeout
        self.interval = interval
        self.read_every = read_every
        self.writes = []
        self.reads = []
        self.connect_failures = 0
        self.resolve_failures = 0
        self.crashed = None
        self._next_id = 1
        self._halt = threading.Event()
        self._conn = None
        self._node = None

    # -- "the primary Service" ---------------------------------------------

    def _resolve(self):
        """The node the Lease names, or None (no holder, API unreachable)."""
        try:
            holder = self.cluster.lease_holder()
        except Exception:  # pylint: disable=broad-except
            # The emulator may be restarting: any failure means "not now".
            holder = None
        if not holder:
            self.resolve_failures += 1
            return None
        try:
            return self.cluster.node(holder)
        except KeyError:
            return None

    def _connect(self):
        node = self._resolve()
        if node is None:
            return False
        deadline = time.monotonic() + self.op_timeout
        conn = None
        try:
            conn = psycopg2.connect(
                host="127.0.0.1", port=node.port,
                user=node.setting("superuser"), password=node.password(),
                dbname=node.setting("database"),
                connect_timeout=max(1, int(self.op_timeout)),
                application_name=f"resilience-client-{self.client_id}",
                async_=1)
            _wait_ready(conn, deadline)
        except (psycopg2.Error, ClientTimeout, OSError):
            _close(conn)
            self.connect_failures += 1
            return False
        self._conn, self._node = conn, node
        return True

    def _drop(self):
        _close(self._conn)
        self._conn = self._node = None

    # -- operations ------------------------------------------------------------

    def _execute(self, query, params):
        """Run one statement with the deadline; returns its first row."""
        conn = self._conn
        deadline = time.monotonic() + self.op_timeout
        del conn.notices[:]
        with conn.cursor() as cur:
            cur.execute(query, params)
            _wait_ready(conn, deadline)
            return cur.fetchone()

    def _write(self):
        row_id = self._next_id
        self._next_id += 1
        write = Write(self.client_id, row_id, self._node.name,
                      time.monotonic())
        self.writes.append(write)
        try:
            port, walfile = self._execute(INSERT, (self.client_id, row_id))
            write.end = time.monotonic()
            write.port = port
            write.timeline = int(walfile, 16)
            write.outcome = "ok"
            notices = [n for n in self._conn.notices
                       if SYNC_CANCEL_NOTICE in n]
            if notices:
                write.notice = notices[0].strip()
        except ClientTimeout:
            write.end = time.monotonic()
            write.outcome = "unknown"
            write.error = "client timeout"
            self._drop()
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            # The connection broke: the commit may or may not have happened.
            write.end = time.monotonic()
            write.outcome = "unknown"
            write.error = str(exc).strip()[:200]
            self._drop()
        except psycopg2.Error as exc:
            # The server answered with an error: the statement did not
            # commit (read-only transaction, shutting down...).
            write.end = time.monotonic()
            write.outcome = "failed"
            write.error = str(exc).strip()[:200]
            self._drop()

    def _read(self):
        read = Read(self.client_id, self._node.name, time.monotonic())
        self.reads.append(read)
        try:
            count, max_id, port, in_recovery = self._execute(
                READ, (self.client_id,))
            read.end = time.monotonic()
            read.count, read.max_id, read.port = count, max_id, port
            read.in_recovery = in_recovery
            read.outcome = "ok"
        except (psycopg2.Error, ClientTimeout) as exc:
            read.end = time.monotonic()
            read.outcome = "failed"
            read.error = str(exc).strip()[:200] or type(exc).__name__
            self._drop()

    def run(self):
        try:
            self._loop()
        except Exception as exc:  # pylint: disable=broad-except
            self.crashed = repr(exc)
            raise
        finally:
            self._drop()

    def _loop(self):
        done = 0
        while not self._halt.is_set():
            if self._conn is None and not self._connect():
                self._halt.wait(0.05)
                continue
            self._write()
            done += 1
            if self._conn is not None and done % self.read_every == 0:
                self._read()
            self._halt.wait(self.interval)

    def stop(self, timeout=None):
        self._halt.set()
        self.join(timeout if timeout is not None else self.op_timeout + 5)


def ensure_table(cluster, timeout=60):
    """Create the table on the primary and wait until every node has it
    (a failover right after CREATE must not leave a primary without it)."""
    deadline = time.monotonic() + timeout
    while True:
        primary = cluster.healthy()
        if primary is not None:
            try:
                primary.sql(CREATE_TABLE)
                primary.sql(CREATE_PROBE)
                break
            except psycopg2.Error:
                pass
        if time.monotonic() >= deadline:
            raise TimeoutError("no primary to create the table on")
        time.sleep(0.2)

    def has_table(node, table=TABLE):
        try:
            return node.sql("SELECT to_regclass(%s) IS NOT NULL",
                            (table,))[0][0]
        except psycopg2.Error:
            return False

    def has_probe(node):
        return has_table(node, PROBE_TABLE)

    while not all(has_table(node) and has_probe(node)
                  for node in cluster.nodes):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{TABLE} did not reach every node")
        time.sleep(0.2)
