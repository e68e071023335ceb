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
    yield types.SimpleNamespace(build_dir=build_dir, source_dir=SOURCE_DIR,
                                sql_dir=os.path.join(SOURCE_DIR, "sql"),
                                **staged)
    shutil.rmtree(os.path.dirname(stage_dir), ignore_errors=True)
