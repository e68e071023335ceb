"""`scripts/demo` as a newcomer runs it, from a checkout that the servers'
user cannot read: a clone under a 0700 home directory (or `mktemp -d`).
The agents run as an unprivileged user (`pglease-test` under root), so
nothing they need may be read from the checkout: the metadata migrations
are built into the agent, and the programs are copied out of it.

The demo's build directory is this suite's (PGLEASE_BUILD, through a link
in the copy), so its build step only checks that there is nothing to do; its
package step finds everything installed (scripts/test installs a superset)
and must not run apt. What the test reads is what a person sees: a short
output with one line per step and no apt, meson or ninja lines (those go to
.demo/demo.log), the cluster table, and closing lines that say how to run
agentctl against the demo (`scripts/demo ctl ...`, and one alias line to
paste) that work as printed."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

import pytest

import pgharness

SOURCE_DIR = os.environ.get("PGLEASE_SOURCE_DIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD_DIR = os.environ.get("PGLEASE_BUILD_DIR") or os.path.join(SOURCE_DIR, "build")
SKIP = shutil.ignore_patterns(".git", ".demo", "build*", "__pycache__", "*.pyc")
# The most a person should have to read after `scripts/demo`: a line per
# step, the table, the hints (about 30 lines today).
MAX_OUTPUT_LINES = 45
# Lines of apt, dpkg, meson and ninja: they belong in .demo/demo.log.
NOISE = re.compile(r"^(\[\d+/\d+\] |ninja: |The Meson build system|Build dir|"
                   r"Found |Reading package lists|Building dependency tree|"
                   r"Setting up |Unpacking |Selecting previously|Get:\d|"
                   r"Compiling C object|Linking target)")


def user_env(**extra):
    """The environment of a person's shell: none of this suite's PGLEASE_
    variables (the demo's driver would take PGLEASE_SOURCE_DIR for its
    source tree, agentctl PGLEASE_<KEY> for configuration)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGLEASE_")}
    env.update(extra)
    return env


@pytest.fixture
def private_checkout():
    """A copy of the tree in a 0700 directory, its `build` a link to this
    suite's build directory."""
    home = tempfile.mkdtemp(prefix="pglease-it-home-")
    os.chmod(home, 0o700)
    tree = os.path.join(home, "pglease")
    shutil.copytree(SOURCE_DIR, tree, ignore=SKIP, symlinks=True)
    os.symlink(os.path.abspath(BUILD_DIR), os.path.join(tree, "build"))
    yield tree
    subprocess.run([sys.executable, "tests/integration/cluster_daemon.py", "stop",
                    "--dir", ".demo"], cwd=tree, capture_output=True,
                   env=user_env(), timeout=180, check=False)
    if not os.environ.get("PGLEASE_KEEP_TMP"):
        try:
            with open(os.path.join(tree, ".demo", "state.json"),
                      encoding="utf-8") as f:
                shutil.rmtree(json.load(f)["data_dir"], ignore_errors=True)
        except (OSError, ValueError, KeyError):
            pass
        shutil.rmtree(home, ignore_errors=True)


def run(tree, *argv, timeout=300, env=None):
    proc = subprocess.run(list(argv), cwd=tree, capture_output=True,
                          text=True, timeout=timeout, check=False,
                          env=env or user_env())
    return proc.returncode, proc.stdout, proc.stderr


def table_roles(out):
    """The roles of the rows pg-N of a `cluster show` table."""
    rows = [[cell.strip() for cell in line.split("|")]
            for line in out.splitlines() if "|" in line]
    return sorted(row[1] for row in rows if row[0].startswith("pg-"))


def wait_for_roles(tree, argv, env=None, timeout=90):
    """Run argv until it exits 0 with one primary and two replicas in its
    table (the roles settle within a status_interval or two after a
    start); returns its output, or fails with the last one."""
    deadline = time.monotonic() + timeout
    while True:
        code, out, err = run(tree, *argv, timeout=60, env=env)
        if code == 0 and table_roles(out) == ["primary", "replica", "replica"]:
            return out
        if time.monotonic() > deadline:
            pytest.fail(f"{argv}: exit {code}, not one primary and two "
                        f"replicas within {timeout} s:\n{out}{err}")
        time.sleep(0.5)


def missing_demo_packages(tree):
    """The packages scripts/demo needs that are not installed: the test
    must not make the demo run apt."""
    listed = subprocess.run(
        ["bash", "-c", 'source scripts/lib.sh && printf "%s\\n" '
         '"${PGLEASE_DEMO_PACKAGES[@]}"'],
        cwd=tree, capture_output=True, text=True, timeout=30, check=True)
    missing = []
    for pkg in listed.stdout.split():
        status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg],
                                capture_output=True, text=True, timeout=30,
                                check=False).stdout
        if status != "install ok installed":
            missing.append(pkg)
    return missing


def test_demo_from_a_private_checkout_says_how_to_run_agentctl(private_checkout):
    tree = private_checkout
    with open(os.path.join(tree, "build", "agent", "pglease-agent"), "rb") as f:
        assert os.path.join(SOURCE_DIR, "sql").encode() not in f.read(), \
            "the agent reads its migrations from the checkout"
    if pgharness.runner().is_root:
        assert not pgharness.runner_can_access(tree, "r"), \
            "the test user can read the 0700 checkout: the test proves nothing"
    missing = missing_demo_packages(tree)
    assert not missing, f"install {missing} first (scripts/test does)"

    code, out, err = run(tree, "scripts/demo", env=user_env(PGLEASE_BUILD="build"),
                         timeout=600)
    both = out + err
    assert code == 0, both
    assert "Permission denied" not in both, both

    # Short, one line per step, nothing of apt, meson or ninja.
    lines = both.splitlines()
    assert len(lines) <= MAX_OUTPUT_LINES, both
    noise = [line for line in lines if NOISE.match(line)]
    assert not noise, f"apt/meson/ninja lines in the demo's output: {noise}\n{both}"
    for step in ("==> packages: the ", "==> build: ", "==> cluster: "):
        assert any(line.startswith(step) for line in lines), (step, both)
    log = os.path.join(tree, ".demo", "demo.log")
    with open(log, encoding="utf-8", errors="replace") as handle:
        assert "ninja" in handle.read(), "the build's output is not in " + log
    # The table (its roles are waited for below: a slow tick may leave
    # one unsettled when the demo prints it).
    assert len(table_roles(out)) == 3, out

    # The closing lines: `scripts/demo ctl ...`, then one alias line.
    closing = out.rstrip().splitlines()
    assert "scripts/demo ctl cluster show" in [line.strip() for line in closing[-4:]], out
    alias = closing[-1].strip()
    assert alias.startswith("alias agentctl="), out

    # Both work as printed.
    shown = wait_for_roles(tree, ["scripts/demo", "ctl", "cluster", "show"])
    assert "Cluster " in shown, shown
    code, out, err = run(tree, "scripts/demo", "ctl", "pg-1", "node", "status",
                         timeout=60)
    assert code == 0 and "Node pg-1" in out, out + err
    wait_for_roles(tree, ["bash", "-c", f"shopt -s expand_aliases\n{alias}\n"
                          "agentctl cluster show"])

    wait_for_roles(tree, ["scripts/demo", "status"])

    with open(os.path.join(tree, ".demo", "state.json"), encoding="utf-8") as f:
        state = json.load(f)
    if pgharness.runner().is_root:
        assert not state["agentctl"].startswith(tree), \
            "agentctl runs from the checkout the servers cannot read"
    for node in ("pg-0", "pg-1", "pg-2"):
        log = os.path.join(state["data_dir"], node, "agent.log")
        with open(log, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        assert "cannot create the metadata schema" not in text, log
        assert "Permission denied" not in text, log

    code, out, err = run(tree, "scripts/demo", "stop", timeout=180)
    assert code == 0, out + err
    assert "stopped" in out, out + err
    code, out, err = run(tree, "scripts/demo", "ctl", "cluster", "show", timeout=60)
    assert code == 3 and "not running" in err, (code, out, err)
