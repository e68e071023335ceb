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

# The harness, the Kubernetes API emulator and the real server's driver
# (tests/k8s) are plain modules.
for _path in (HERE, os.path.join(SOURCE_DIR, "tests", "kube-emulator"),
              os.path.join(SOURCE_DIR, "tests", "k8s")):
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


@pytest.fixture(scope="session", autouse=True)
def control_plane():
    """Under PGLEASE_KUBE=real (the k8s suite) the variables of
    `scripts/k8s env`; without a control plane the tests are skipped, or
    fail under PGLEASE_K8S_REQUIRED=1 (scripts/test sets it after
    scripts/k8s up). None against the emulator."""
    if os.environ.get("PGLEASE_KUBE") != "real":
        return None
    import realkube  # pylint: disable=import-outside-toplevel
    env = realkube.control_plane_env()
    if env is None:
        message = "no Kubernetes control plane: run scripts/k8s up"
        if os.environ.get("PGLEASE_K8S_REQUIRED") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return env


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
    .source_dir. Under root, programs the test user cannot reach
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
    # No sql_dir: the agents apply the migrations built into them, as they
    # do in a pod or from a checkout that their user cannot read.
    yield types.SimpleNamespace(build_dir=build_dir, source_dir=SOURCE_DIR,
                                **staged)
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
        """Stop every cluster; returns the errors, sanitizer reports in
        any agent's, supervisor's or init's log included."""
        errors = []
        for local in self.clusters:
            try:
                local.stop()
            except AssertionError as exc:
                errors.append(f"{local}: {exc}")
            errors.extend(sanitizer_reports(local))
        return errors


# What AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer print
# (the sanitizer build of scripts/test); the agents' stderr is their log.
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                   "SUMMARY: AddressSanitizer", "SUMMARY: UndefinedBehavior",
                   ": runtime error: ")


def sanitizer_reports(local):
    """One error per log of `local`'s nodes that holds a sanitizer line,
    with the first such lines."""
    errors = []
    for node in local.nodes:
        for path in (node.agent_log_path, node.supervisor_log,
                     node.init_log):
            try:
                with open(path, encoding="utf-8", errors="replace") as log:
                    lines = [line.rstrip() for line in log
                             if any(m in line for m in SANITIZER_MARKS)]
            except FileNotFoundError:
                continue
            if lines:
                errors.append(f"sanitizer report in {path}: "
                              + " | ".join(lines[:5]))
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
    # A sanitizer report fails the module even when every test passed.
    reports = [e for e in errors if e.startswith("sanitizer report")]
    if reports:
        pytest.fail("; ".join(reports))
