"""The container images (scripts/images) run what the chart asks of them.

Each test renders charts/pglease with the real helm and runs the rendered
pod's own commands in the images on the local Docker engine, under the
pod's security context (its UID/GID, a read-only root filesystem, every
capability dropped, no new privileges): the install container fills the
shared volumes from the agent image; the postgres image runs the copied
agent (its libraries resolve there), accepts the rendered pglease.conf with
--check-config, and serves PostgreSQL under the chart's supervisor
command; the Pgpool-II image has the version the tests pin. No kubelet is
involved (docs/kubernetes.md, "Container images").

Needs the images (scripts/images build) and helm (ensure_helm); without
them the tests skip, unless PGLEASE_IMAGES_REQUIRED=1 (scripts/test), which
makes their absence a failure.
"""

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("PGLEASE_SOURCE_DIR") or os.path.dirname(
    os.path.dirname(HERE))
sys.path.append(os.path.join(SOURCE, "tests", "integration"))

import pgharness  # noqa: E402  pylint: disable=wrong-import-position

REQUIRED = os.environ.get("PGLEASE_IMAGES_REQUIRED") == "1"
BASE = "pglease-base/debian:bookworm"
# The pod's name and namespace, as the downward API would give them.
POD = "pglease-0"
NAMESPACE = "database"


def project_version():
    with open(os.path.join(SOURCE, "meson.build"), encoding="utf-8") as f:
        return re.search(r"version:\s*'([^']+)'", f.read()).group(1)


def docker(*args, timeout=120, check=True, stdin=None):
    """Run docker; the result, failing the test with its output on error."""
    try:
        result = subprocess.run(["docker", *args], input=stdin,
                                capture_output=True, text=True,
                                timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"docker {' '.join(args)}: no answer in {timeout} s")
    if check and result.returncode != 0:
        pytest.fail(f"docker {' '.join(args)}: exit {result.returncode}\n"
                    f"{result.stdout}{result.stderr}")
    return result


def missing(reason):
    if REQUIRED:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def rendered():
    """The objects of `helm template` with the default values (and a
    Secret the user manages, as helm template cannot read a stored one)."""
    helm = pgharness.find_helm()
    if not helm:
        missing("no helm (scripts/test builds one: ensure_helm)")
    out = subprocess.run(
        [helm, "template", "pglease", os.path.join(SOURCE, "charts", "pglease"),
         "--namespace", NAMESPACE, "--set", "secrets.existingSecret=pglease-test"],
        capture_output=True, text=True, timeout=120, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module")
def images(rendered):
    """The image of each of the pod's containers, by container name."""
    if not shutil.which("docker") or docker("info", check=False).returncode:
        missing("no Docker engine")
    pod = pod_spec(rendered)
    wanted = {c["name"]: c["image"]
              for c in pod["initContainers"] + pod["containers"]}
    absent = sorted({i for i in wanted.values()
                     if docker("image", "inspect", i, check=False).returncode})
    if absent:
        missing(f"images not built: {', '.join(absent)} (scripts/images build)")
    return wanted


def pod_spec(objects):
    sts = [o for o in objects if o["kind"] == "StatefulSet"]
    assert len(sts) == 1, "one StatefulSet"
    return sts[0]["spec"]["template"]["spec"]


def container(pod, name):
    for c in pod.get("initContainers", []) + pod["containers"]:
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name} in the pod")


def configmap(objects, name):
    for o in objects:
        if o["kind"] == "ConfigMap" and o["metadata"]["name"] == name:
            return o["data"]
    raise AssertionError(f"no ConfigMap {name}")


def expand(text, env):
    """$(VAR) references expanded from env, as the kubelet expands them in
    env values and commands; an unknown one stays as written."""
    return re.sub(r"\$\((\w+)\)",
                  lambda m: env.get(m.group(1), m.group(0)), text)


class Pod:
    """The rendered pod's volumes on the Docker engine: each emptyDir a
    volume of its own, owned by the pod's fsGroup as the kubelet makes it;
    the ConfigMap and Secret volumes as read-only files."""

    def __init__(self, objects, workdir):
        self.objects = objects
        self.spec = pod_spec(objects)
        self.sc = self.spec["securityContext"]
        self.tag = "pglease-img-" + secrets.token_hex(4)
        self.workdir = workdir
        self.volumes = {}
        self.containers = []
        for vol in self.spec["volumes"]:
            name = vol["name"]
            if "emptyDir" in vol:
                self.volumes[name] = self.tag + "-" + name
                docker("volume", "create", self.volumes[name])
            elif "configMap" in vol:
                self.volumes[name] = self.files(
                    name, configmap(objects, vol["configMap"]["name"]),
                    vol["configMap"].get("items"))
            elif "secret" in vol:
                self.volumes[name] = self.files(
                    name, {i["key"]: "secret-" + i["key"]
                           for i in vol["secret"]["items"]},
                    vol["secret"]["items"])
        # The data volume of the claim template: a volume as well.
        self.volumes["data"] = self.tag + "-data"
        docker("volume", "create", self.volumes["data"])
        group = self.sc["fsGroup"]
        mounts = [a for name, v in self.volumes.items() if v.startswith(self.tag)
                  for a in ("-v", f"{v}:/v/{name}")]
        docker("run", "--rm", *mounts, BASE, "sh", "-ec",
               f"chgrp {group} /v/*; chmod 2775 /v/*")

    def files(self, name, data, items):
        path = os.path.join(self.workdir, name)
        os.makedirs(path)
        for item in items or [{"key": k, "path": k} for k in data]:
            with open(os.path.join(path, item["path"]), "w",
                      encoding="utf-8") as f:
                f.write(data[item["key"]])
        os.chmod(self.workdir, 0o755)
        for entry in os.scandir(path):
            os.chmod(entry.path, 0o444)
        os.chmod(path, 0o755)
        return path

    def run(self, image, c, command, detach=False, timeout=120):
        """`command` in `image` as the pod would run container c: its
        security context, env (fieldRefs resolved, $(VAR) expanded) and
        volume mounts."""
        csc = c.get("securityContext", {})
        args = ["--user", f"{self.sc['runAsUser']}:{self.sc['runAsGroup']}",
                "--group-add", str(self.sc["fsGroup"])]
        if csc.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if "ALL" in csc.get("capabilities", {}).get("drop", []):
            args += ["--cap-drop", "ALL"]
        if csc.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        env = {}
        for e in c.get("env", []):
            if "valueFrom" in e:
                field = e["valueFrom"]["fieldRef"]["fieldPath"]
                env[e["name"]] = {"metadata.name": POD,
                                  "metadata.namespace": NAMESPACE}[field]
            else:
                env[e["name"]] = expand(e["value"], env)
        for name, value in env.items():
            args += ["-e", f"{name}={value}"]
        for m in c.get("volumeMounts", []):
            ro = ":ro" if m.get("readOnly") else ""
            args += ["-v", f"{self.volumes[m['name']]}:{m['mountPath']}{ro}"]
        command = [expand(a, env) for a in command]
        name = f"{self.tag}-{c['name']}"
        args += ["--name", name, "--entrypoint", command[0], image, *command[1:]]
        if detach:
            docker("run", "-d", *args)
            self.containers.append(name)
            return name
        return docker("run", "--rm", *args, timeout=timeout, check=False)

    def close(self):
        for name in self.containers:
            docker("rm", "-f", name, check=False, timeout=60)
        for v in self.volumes.values():
            if v.startswith(self.tag):
                docker("volume", "rm", "-f", v, check=False, timeout=60)


@pytest.fixture
def pod(rendered, images):  # pylint: disable=unused-argument
    workdir = tempfile.mkdtemp(prefix="pglease-img-")
    p = Pod(rendered, workdir)
    try:
        yield p
    finally:
        p.close()
        shutil.rmtree(workdir, ignore_errors=True)


def test_the_agent_image_is_this_build(images):
    image = images["install-agent"]
    assert image == f"pglease:{project_version()}", \
        "the chart's default agent image is the version meson.build says"
    out = docker("run", "--rm", image, "--version").stdout.strip()
    assert out == f"pglease-agent {project_version()}"
    user = docker("image", "inspect", "-f", "{{.Config.User}}", image).stdout
    assert user.strip() == "65534:65534", "the agent image runs as nobody"


def install(pod):
    c = container(pod.spec, "install-agent")
    result = pod.run(c["image"], c, c["command"])
    assert result.returncode == 0, \
        f"install-agent failed: {result.stdout}{result.stderr}"


def test_the_install_container_gives_the_postgres_image_a_working_agent(pod):
    install(pod)
    c = container(pod.spec, "agent")
    result = pod.run(c["image"], c, ["sh", "-ec", """
        /pglease/bin/pglease-agent --version
        /pglease/bin/agentctl --version
        ! ldd /pglease/bin/pglease-agent /pglease/bin/agentctl | grep 'not found'
        ls /usr/share/pglease/sql"""])
    assert result.returncode == 0, result.stdout + result.stderr
    version = project_version()
    assert f"pglease-agent {version}" in result.stdout
    assert f"agentctl {version}" in result.stdout
    assert "001_init.sql" in result.stdout, "the migrations are where sql_dir says"


def test_the_rendered_configuration_passes_check_config_in_the_image(pod):
    install(pod)
    c = container(pod.spec, "agent")
    # The ServiceAccount's files, as the kubelet projects them.
    sa = os.path.join(pod.workdir, "serviceaccount")
    os.makedirs(sa)
    for name, text in (("token", "not-a-real-token\n"),
                       ("namespace", NAMESPACE)):
        with open(os.path.join(sa, name), "w", encoding="utf-8") as f:
            f.write(text)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                    "-keyout", "/dev/null", "-subj", "/CN=pglease-test-ca",
                    "-days", "1", "-out", os.path.join(sa, "ca.crt")],
                   capture_output=True, timeout=60, check=True)
    for entry in os.scandir(sa):
        os.chmod(entry.path, 0o444)
    os.chmod(sa, 0o755)
    pod.volumes["serviceaccount"] = sa
    c = dict(c, volumeMounts=c["volumeMounts"] + [
        {"name": "serviceaccount", "readOnly": True,
         "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
        env=c["env"] + [{"name": "KUBERNETES_SERVICE_HOST", "value": "10.0.0.1"},
                        {"name": "KUBERNETES_SERVICE_PORT", "value": "443"}])
    result = pod.run(c["image"], c, c["command"] + ["--check-config"])
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"node_name = {POD}" in result.stdout
    assert f"namespace = {NAMESPACE}" in result.stdout


def test_the_postgres_container_serves_under_the_supervisor(pod):
    install(pod)
    c = container(pod.spec, "postgres")
    # What the init container does on bootstrap, reduced to initdb: the
    # data directory the postgres container's command names.
    result = pod.run(c["image"], c, ["sh", "-ec",
                                     "initdb -D \"$PGDATA\" -U postgres "
                                     "--auth=trust >/dev/null"])
    assert result.returncode == 0, result.stdout + result.stderr
    name = pod.run(c["image"], c, c["command"], detach=True)
    deadline = time.monotonic() + 60
    while True:
        probe = docker("exec", name, "psql", "-h", "/var/run/postgresql",
                       "-U", "postgres", "-Atc", "SELECT 1", check=False)
        if probe.returncode == 0 and probe.stdout.strip() == "1":
            break
        state = docker("inspect", "-f", "{{.State.Running}}", name).stdout
        if state.strip() != "true" or time.monotonic() > deadline:
            logs = docker("logs", name, check=False)
            pytest.fail("PostgreSQL did not answer under run-postgres:\n"
                        f"{probe.stderr}\n{logs.stdout}{logs.stderr}")
        time.sleep(0.2)
    # SIGTERM, as the kubelet stops a container: the supervisor stops
    # PostgreSQL and exits.
    docker("stop", "-t", "30", name, timeout=60)
    code = docker("inspect", "-f", "{{.State.ExitCode}}", name).stdout.strip()
    logs = docker("logs", name, check=False)
    assert code == "0", f"exit {code}: {logs.stdout}{logs.stderr}"


def test_the_pgpool_image_is_the_version_the_tests_run(rendered, images):  # pylint: disable=unused-argument
    deployments = [o for o in rendered if o["kind"] == "Deployment"]
    pgpool = [c for d in deployments
              for c in d["spec"]["template"]["spec"]["containers"]
              if c["name"] == "pgpool"]
    assert pgpool, "the chart has a Pgpool-II container"
    image = pgpool[0]["image"]
    if docker("image", "inspect", image, check=False).returncode:
        missing(f"image {image} not built (scripts/images build)")
    out = docker("run", "--rm", image, "pgpool", "--version")
    assert "pgpool-II version 4.3" in out.stdout + out.stderr
    user = docker("run", "--rm", image, "id", "-u").stdout.strip()
    assert user == "999"
