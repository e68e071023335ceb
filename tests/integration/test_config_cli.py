"""The configuration and kubeconfig as the command line sees them, without
a server: each defect of issue 21 found by hand is a case here. An invalid
file makes `pglease-agent --check-config` (and `init --dry-run`, and
agentctl) exit 3 with an error naming the file, line and key, never pass
and never crash; --check-config reads the kubeconfig and the files it
names, so that a configuration it accepts cannot fail at start."""

import os
import signal
import subprocess

import pytest

EXIT_OK, EXIT_FAIL, EXIT_CONFIG = 0, 1, 3

KUBECONFIG = """apiVersion: v1
kind: Config
clusters:
- name: k
  cluster: {server: "https://127.0.0.1:1"}
contexts:
- name: c
  context: {cluster: k, user: u, namespace: db}
current-context: c
users:
- name: u
  user:
    tokenFile: token
"""


def _env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PGLEASE_") and k not in
           ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")}
    env.update(extra)
    return env


def _run(argv, env=None, timeout=30):
    res = subprocess.run(argv, capture_output=True, text=True, check=False,
                         timeout=timeout, env=env or _env())
    assert res.returncode >= 0, \
        f"{argv[0]} died of {signal.Signals(-res.returncode).name}"
    assert "Sanitizer" not in res.stderr and \
        "runtime error" not in res.stderr, res.stderr
    return res


@pytest.fixture
def conf(tmp_path):
    """A valid configuration with a kubeconfig; returns a writer of
    pglease.conf that adds lines (as bytes) to the base."""
    (tmp_path / "token").write_text("not-a-secret\n")
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    def write(extra=b"", kube_config=f"{tmp_path}/kubeconfig"):
        base = (f"cluster_name = pg\nnode_name = pg-0\n"
                f"kube_config = '{kube_config}'\n"
                f"data_dir = {tmp_path}/data\nrun_dir = {tmp_path}/run\n")
        path = tmp_path / "pglease.conf"
        path.write_bytes(base.encode() + extra)
        return str(path)

    write.dir = tmp_path
    return write


def check_config(binaries, path, *args, env=None):
    return _run([binaries.agent, "-c", path, *args, "--check-config"],
                env=env)


def test_valid_configuration_passes(binaries, conf):
    res = check_config(binaries, conf())
    assert res.returncode == EXIT_OK, res.stderr
    assert "hba_networks = 0.0.0.0/0,::/0" in res.stdout


def test_nul_byte_is_an_error_not_the_end_of_the_file(binaries, conf):
    res = check_config(binaries, conf(
        b"priority = 5\n\0\nlease_duration = 1s\nno_such_key = 1\n"))
    assert res.returncode == EXIT_CONFIG
    assert ":7: NUL byte" in res.stderr


def test_overflow_is_out_of_range(binaries, conf):
    res = check_config(binaries, conf(b"pg_port = 99999999999999999999\n"))
    assert res.returncode == EXIT_CONFIG
    assert "pglease.conf:6: pg_port:" in res.stderr
    assert "out of range (1..65535)" in res.stderr


def test_cross_key_error_names_lines_and_truncates(binaries, conf):
    res = check_config(binaries, conf(b"lease_duration = 5s\n"
                                      b"renew_deadline = 6s\n"))
    assert res.returncode == EXIT_CONFIG
    assert "pglease.conf:6)" in res.stderr
    assert "pglease.conf:7)" in res.stderr
    res = check_config(binaries, conf(b"node_name2 = x\n".replace(
        b"2 = x", b" = " + b"X" * 10_000_000)))
    assert res.returncode == EXIT_CONFIG
    assert ":6: duplicate key 'node_name'" in res.stderr
    res = check_config(binaries, conf(),
                       env=_env(PGLEASE_NODE_NAME="X" * 100_000))
    assert res.returncode == EXIT_CONFIG
    assert "env PGLEASE_NODE_NAME: node_name:" in res.stderr
    assert "(100000 bytes) must be a DNS label" in res.stderr
    assert len(res.stderr) < 500


def test_duplicate_key_is_an_error(binaries, conf):
    res = check_config(binaries, conf(b"priority = 1\npriority = 2\n"))
    assert res.returncode == EXIT_CONFIG
    assert ":7: duplicate key 'priority' (first set at line 6)" in res.stderr


def test_directory_given_to_c_says_so(binaries, conf):
    res = check_config(binaries, str(conf.dir))
    assert res.returncode == EXIT_CONFIG
    assert "is a directory" in res.stderr


def test_pglease_config_is_not_warned_about(binaries, conf):
    res = _run([binaries.agent, "--check-config"],
               env=_env(PGLEASE_CONFIG=conf()))
    assert res.returncode == EXIT_OK, res.stderr
    assert "PGLEASE_CONFIG" not in res.stderr


def test_values_with_newlines_are_refused(binaries, conf):
    res = check_config(binaries, conf(), "--set",
                       "location=rack\nhost all all 0.0.0.0/0 trust")
    assert res.returncode == EXIT_CONFIG
    assert "newline" in res.stderr
    res = check_config(binaries, conf(),
                       env=_env(PGLEASE_TAGS="a\r\nb"))
    assert res.returncode == EXIT_CONFIG


def test_hba_networks_must_be_cidrs_for_check_and_dry_run(binaries, conf):
    path = conf(b"hba_networks = 10.0.0.0/8,not-a-cidr\n")
    res = check_config(binaries, path)
    assert res.returncode == EXIT_CONFIG
    assert ":6: hba_networks: 'not-a-cidr' is not a network" in res.stderr
    res = _run([binaries.agent, "-c", path, "init", "--dry-run"])
    assert res.returncode == EXIT_CONFIG
    assert "not-a-cidr" in res.stderr


def test_kubeconfig_is_read_by_check_config(binaries, conf):
    kubeconfig = conf.dir / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG + "current-context: twice\n")
    res = check_config(binaries, conf())
    assert res.returncode == EXIT_CONFIG
    assert f"{kubeconfig}:14: duplicate key \"current-context\"" in \
        res.stderr
    kubeconfig.write_text(KUBECONFIG.replace("tokenFile: token",
                                             "tokenFile: gone"))
    res = check_config(binaries, conf())
    assert res.returncode == EXIT_CONFIG
    assert "cannot read tokenFile" in res.stderr


def test_deeply_nested_kubeconfig_is_an_error_not_sigsegv(binaries, conf):
    (conf.dir / "kubeconfig").write_text("- " * 100_000 + "x\n")
    path = conf()
    res = check_config(binaries, path)
    assert res.returncode == EXIT_CONFIG
    assert "nested deeper than 64 levels" in res.stderr
    res = _run([binaries.agentctl, "-c", path, "cluster", "show", "--dcs"])
    assert res.returncode == EXIT_FAIL, res.stderr
    assert "nested deeper than 64 levels" in res.stderr


def test_kubeconfig_list_in_environment(binaries, conf):
    path = conf(kube_config="")
    second = conf.dir / "second.yaml"
    second.write_text("current-context: other\n")
    listed = f"{conf.dir}/missing:{conf.dir}/kubeconfig:{second}"
    res = check_config(binaries, path, env=_env(KUBECONFIG=listed))
    assert res.returncode == EXIT_OK, res.stderr
    second.write_text("current-context: [\n")
    res = check_config(binaries, path, env=_env(KUBECONFIG=listed))
    assert res.returncode == EXIT_CONFIG
    assert str(second) in res.stderr


def test_outside_a_pod_without_kubeconfig_is_a_note(binaries, conf):
    res = check_config(binaries, conf(kube_config=""))
    assert res.returncode == EXIT_OK, res.stderr
    assert "in-cluster credentials were not checked" in res.stderr
