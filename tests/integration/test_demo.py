"""The demo from a checkout that the servers' user cannot read: a clone
under a 0700 home directory (or `mktemp -d`), as a user makes it. The agents
run as an unprivileged user (`pglease-test` under root), so nothing they
need may be read from the checkout: the metadata migrations are built into
the agent. Runs the demo's own driver and `scripts/demo status | stop` from
a 0700 copy of the tree, with the programs already built (scripts/demo
would only add the build)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

import pgharness

SOURCE_DIR = os.environ.get("PGLEASE_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("PGLEASE_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
SKIP = shutil.ignore_patterns(".git", ".demo", "build*", "__pycache__", "*.pyc")


@pytest.fixture
def private_checkout():
    """A copy of the tree in a 0700 directory, with the built programs
    where scripts/demo builds them."""
    home = tempfile.mkdtemp(prefix="pglease-it-home-")
    os.chmod(home, 0o700)
    tree = os.path.join(home, "pglease")
    shutil.copytree(SOURCE_DIR, tree, ignore=SKIP, symlinks=True)
    os.makedirs(os.path.join(tree, "build", "agent"))
    for name in ("pglease-agent", "agentctl"):
        shutil.copy2(os.path.join(BUILD_DIR, "agent", name),
                     os.path.join(tree, "build", "agent", name))
    yield tree
    subprocess.run([sys.executable, "tests/integration/cluster_daemon.py", "stop",
                    "--dir", ".demo"], cwd=tree, capture_output=True,
                   timeout=180, check=False)
    if not os.environ.get("PGLEASE_KEEP_TMP"):
        shutil.rmtree(home, ignore_errors=True)


def run(tree, *argv, timeout=300):
    proc = subprocess.run(list(argv), cwd=tree, capture_output=True,
                          text=True, timeout=timeout, check=False)
    return proc.returncode, proc.stdout + proc.stderr


def test_demo_runs_from_a_checkout_the_servers_cannot_read(private_checkout):
    tree = private_checkout
    with open(os.path.join(tree, "build", "agent", "pglease-agent"), "rb") as f:
        assert os.path.join(SOURCE_DIR, "sql").encode() not in f.read(), \
            "the agent reads its migrations from the checkout"
    if pgharness.runner().is_root:
        assert not pgharness.runner_can_access(tree, "r"), \
            "the test user can read the 0700 checkout: the test proves nothing"
    code, out = run(tree, sys.executable, "tests/integration/cluster_daemon.py",
                    "start", "--dir", ".demo", "--build-dir", "build",
                    "--prog", "scripts/demo")
    assert code == 0, out
    assert "Permission denied" not in out, out

    code, out = run(tree, "scripts/demo", "status", timeout=60)
    assert code == 0, out
    rows = [[cell.strip() for cell in line.split("|")]
            for line in out.splitlines() if "|" in line]
    roles = [row[1] for row in rows if row[0].startswith("pg-")]
    assert sorted(roles) == ["primary", "replica", "replica"], out

    with open(os.path.join(tree, ".demo", "state.json"), encoding="utf-8") as f:
        data_dir = json.load(f)["data_dir"]
    logs = [os.path.join(data_dir, node, "agent.log")
            for node in ("pg-0", "pg-1", "pg-2")]
    for log in logs:
        with open(log, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        assert "cannot create the metadata schema" not in text, log
        assert "Permission denied" not in text, log

    code, out = run(tree, "scripts/demo", "stop", timeout=180)
    assert code == 0, out
    assert "stopped" in out, out
