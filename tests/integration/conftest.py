"""pytest fixtures shared by every integration test: a temp work directory,
a process reaper, PostgreSQL servers and the paths of the built programs."""

import os
import shutil
import sys
import types

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("PGLEASE_SOURCE_DIR") or \
    os.path.dirname(os.path.dirname(HERE))

# The harness and the Kubernetes API emulator are plain modules.
for _path in (HERE, os.path.join(SOURCE_DIR, "tests", "kube-emulator")):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import pgharness  # noqa: E402  pylint: disable=wrong-import-position


def pytest_addoption(parser):
    parser.addoption(
        "--build-dir", default=None,
        help="meson build directory holding agent/pglease-agent "
             "(default: $PGLEASE_BUILD_DIR, else <source>/build)")


def _keep_tmp():
    return os.environ.get("PGLEASE_KEEP_TMP") == "1"


@pytest.fixture
def workdir():
    """A fresh directory under /tmp owned by the runner user; removed after
    the test unless PGLEASE_KEEP_TMP=1."""
    path = pgharness.make_workdir()
    yield path
    if _keep_tmp():
        sys.stderr.write(f"\nkept test directory {path}\n")
    else:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def reaper(workdir):
    """Every process a test starts goes through this; all are SIGKILLed at
    teardown, however the test ended."""
    proc_reaper = pgharness.Reaper(home=workdir)
    yield proc_reaper
    proc_reaper.kill_all()


class PgFactory:
    """pg_factory(name, port=None) -> PgServer under the test's workdir."""

    def __init__(self, workdir_path, proc_reaper):
        self.workdir = workdir_path
        self.reaper = proc_reaper
        self.servers = []

    def __call__(self, name=None, port=None, **kwargs):
        name = name or f"pg{len(self.servers) + 1}"
        server = pgharness.PgServer(self.workdir, name, port,
                                    reaper=self.reaper, **kwargs)
        self.servers.append(server)
        return server

    def stop_all(self):
        for server in self.servers:
            try:
                server.stop("fast", timeout=15)
            except (AssertionError, OSError):
                pass


@pytest.fixture
def pg_factory(workdir, reaper):
    """Creates PgServer objects; every one is stopped at teardown (fast,
    then the reaper's SIGKILL for anything left)."""
    factory = PgFactory(workdir, reaper)
    yield factory
    factory.stop_all()


def _stage_for_runner(paths, stage_dir):
    """Copy programs the runner user cannot reach (e.g. a build tree under
    /root) into a directory it can."""
    staged = {}
    for key, path in paths.items():
        if pgharness.runner_can_access(path, "x"):
            staged[key] = path
            continue
        pgharness.make_dir(stage_dir)
        target = os.path.join(stage_dir, os.path.basename(path))
        shutil.copy2(path, target)
        os.chmod(target, 0o755)
        staged[key] = target
    return staged


@pytest.fixture(scope="session")
def binaries(request):
    """Paths of the built programs: .agent, .agentctl, .build_dir,
    .source_dir, .sql_dir. Under root, programs the test user cannot reach
    are copied to a temp directory it can."""
    build_dir = (request.config.getoption("--build-dir")
                 or os.environ.get("PGLEASE_BUILD_DIR")
                 or os.path.join(SOURCE_DIR, "build"))
    build_dir = os.path.abspath(build_dir)
    programs = {
        "agent": os.path.join(build_dir, "agent", "pglease-agent"),
        "agentctl": os.path.join(build_dir, "agent", "agentctl"),
    }
    missing = [p for p in programs.values() if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail("not built: " + ", ".join(missing)
                    + " (run meson compile, or set PGLEASE_BUILD_DIR)")
    stage_dir = os.path.join(pgharness.make_workdir("pglease-it-bin-"), "bin")
    staged = _stage_for_runner(programs, stage_dir)
    sql_dir = os.path.join(SOURCE_DIR, "sql")
    if not pgharness.runner_can_access(sql_dir, "r"):
        # A clone under /root: the agents (the test user) read a copy.
        staged_sql = os.path.join(os.path.dirname(stage_dir), "sql")
        shutil.copytree(sql_dir, staged_sql)
        for root, dirs, files in os.walk(os.path.dirname(stage_dir)):
            os.chmod(root, 0o755)
            for f in files:
                os.chmod(os.path.join(root, f), 0o644 if f.endswith(".sql") else 0o755)
        sql_dir = staged_sql
    yield types.SimpleNamespace(build_dir=build_dir, source_dir=SOURCE_DIR,
                                sql_dir=sql_dir, **staged)
    shutil.rmtree(os.path.dirname(stage_dir), ignore_errors=True)


# --------------------------------------------------------------------------
# local clusters (tests/integration/cluster.py)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):  # pylint: disable=unused-argument
    """Remember each phase's report on the item, so that fixtures can tell
    at teardown whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


def _test_failed(request):
    report = getattr(request.node, "rep_call", None)
    return report is not None and report.failed


class ClusterFactory:
    """cluster_factory(n=3, settings=None, start=True, **kwargs) -> a
    LocalCluster under the test's workdir (kwargs as LocalCluster's:
    cluster_name, namespace, tls, node_settings). With start=True it is
    started, and the test is skipped if the agent reports a step it does
    not implement yet (cluster.AgentFeatureMissing); every other failure
    fails the test."""

    def __init__(self, workdir_path, binaries, proc_reaper):
        self.workdir = workdir_path
        self.binaries = binaries
        self.reaper = proc_reaper
        self.clusters = []

    def __call__(self, n=3, settings=None, start=True, timeout=120,
                 **kwargs):
        import cluster  # pylint: disable=import-outside-toplevel
        path = pgharness.make_dir(os.path.join(
            self.workdir, f"cluster{len(self.clusters)}"))
        local = cluster.LocalCluster(path, self.binaries, self.reaper, n=n,
                                     settings=settings, **kwargs)
        self.clusters.append(local)
        if start:
            try:
                local.start(timeout=timeout)
            except cluster.AgentFeatureMissing as exc:
                pytest.skip(str(exc))
        return local

    def report(self):
        out = []
        for local in self.clusters:
            if local.emulator is None:
                continue
            try:
                out.append(local.describe())
            except Exception as exc:  # pylint: disable=broad-except
                out.append(f"(cannot describe {local}: {exc!r})")
            for node in local.nodes:
                out.append(node.logs(lines=15))
        return "\n".join(out)

    def stop_all(self):
        errors = []
        for local in self.clusters:
            try:
                local.stop()
            except AssertionError as exc:
                errors.append(f"{local}: {exc}")
        return errors


@pytest.fixture
def cluster_factory(request, workdir, binaries, reaper):
    """Makes LocalClusters (see ClusterFactory); all are stopped at
    teardown, and on failure their state and log tails are printed."""
    factory = ClusterFactory(workdir, binaries, reaper)
    yield factory
    failed = _test_failed(request)
    if failed:
        sys.stderr.write("\n" + factory.report() + "\n")
    errors = factory.stop_all()
    if errors and not failed:
        pytest.fail("cluster teardown: " + "; ".join(errors))
    elif errors:
        sys.stderr.write("cluster teardown: " + "; ".join(errors) + "\n")


@pytest.fixture
def cluster(cluster_factory):  # pylint: disable=redefined-outer-name
    """A started three-node LocalCluster with the default test timings."""
    return cluster_factory()


@pytest.fixture(scope="module")
def module_cluster_factory(request, binaries):
    """A ClusterFactory shared by every test of one module, with its own
    work directory and reaper: for scenarios that run in sequence on one
    cluster (each test waits for the cluster to be healthy first). Stopped
    after the module's last test; the state and log tails are printed if
    any of its tests failed."""
    path = pgharness.make_workdir()
    proc_reaper = pgharness.Reaper(home=path)
    factory = ClusterFactory(path, binaries, proc_reaper)
    failed_before = request.session.testsfailed
    yield factory
    failed = request.session.testsfailed > failed_before
    if failed:
        sys.stderr.write("\n" + factory.report() + "\n")
    errors = factory.stop_all()
    proc_reaper.kill_all()
    if errors:
        sys.stderr.write("cluster teardown: " + "; ".join(errors) + "\n")
    if _keep_tmp():
        sys.stderr.write(f"\nkept test directory {path}\n")
    else:
        shutil.rmtree(path, ignore_errors=True)
