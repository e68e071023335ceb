"""controlplane: the faults the resilience run (`--kube real`) injects into
the real control plane of scripts/k8s (etcd and kube-apiserver), shared by
every node: freeze and thaw kube-apiserver (SIGSTOP/SIGCONT), restart it
or etcd (`scripts/k8s restart-apiserver|restart-etcd`), compact etcd's
history (a watch resuming from an older resourceVersion then gets 410
Gone), and wait until the server answers again.

The processes are found by the pids scripts/k8s recorded in its state
directory, checked against their command line (a reused pid is not
ours)."""

import base64
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

COMPONENTS = ("etcd", "kube-apiserver")


class ControlPlaneError(OSError):
    """A control-plane fault could not be carried out or undone."""


class ControlPlane:
    def __init__(self, kube, source_dir):
        self.kube = kube                    # realkube.RealKube
        self.state = kube.env["PGLEASE_K8S_STATE"]
        self.script = os.path.join(source_dir, "scripts", "k8s")
        self.stopped = set()                # components we SIGSTOPped

    def pid(self, component):
        """The pid of `component` if it runs, else None."""
        try:
            with open(os.path.join(self.state, "pids", component),
                      encoding="ascii") as handle:
                pid = int(handle.read().strip())
            with open(f"/proc/{pid}/cmdline", "rb") as handle:
                if self.state.encode() not in handle.read():
                    return None
        except (OSError, ValueError):
            return None
        return pid

    def _signal(self, component, sig):
        pid = self.pid(component)
        if pid is None:
            raise ControlPlaneError(f"{component} is not running")
        os.kill(pid, sig)

    def freeze(self, component):
        self._signal(component, signal.SIGSTOP)
        self.stopped.add(component)

    def thaw(self, component):
        self.stopped.discard(component)
        self._signal(component, signal.SIGCONT)

    def restart(self, component, timeout=400):
        """scripts/k8s restart-<component>: stop it, start it again on the
        same address and data, wait until it is ready. Returns seconds."""
        verb = {"kube-apiserver": "restart-apiserver",
                "etcd": "restart-etcd"}[component]
        started = time.monotonic()
        try:
            result = subprocess.run(
                [self.script, verb], capture_output=True, text=True,
                timeout=timeout, check=False,
                env=dict(os.environ, PGLEASE_K8S_STATE=self.state))
        except subprocess.TimeoutExpired as exc:
            raise ControlPlaneError(f"scripts/k8s {verb} did not finish "
                                    f"within {timeout}s") from exc
        if result.returncode != 0:
            raise ControlPlaneError(f"scripts/k8s {verb} exited "
                                    f"{result.returncode}: "
                                    f"{result.stderr.strip()[-300:]}")
        return time.monotonic() - started

    def ready(self):
        """kube-apiserver answers /readyz with 200."""
        return self.kube.running()

    def wait_ready(self, timeout=120):
        """The monotonic time the server answered ready, or None."""
        deadline = time.monotonic() + timeout
        while True:
            if self.ready():
                return time.monotonic()
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.2)

    def heal(self):
        """SIGCONT whatever we froze (and anything left stopped)."""
        for component in COMPONENTS:
            if component in self.stopped or self.pid(component):
                try:
                    self.thaw(component)
                except (ControlPlaneError, ProcessLookupError):
                    pass

    # -- etcd --------------------------------------------------------------

    def _etcd(self, path, body, timeout=10):
        with open(os.path.join(self.state, "etcd-port"),
                  encoding="ascii") as handle:
            port = int(handle.read().strip())
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return json.loads(answer.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise ControlPlaneError(
                f"etcd {path}: {exc.code} "
                f"{exc.read().decode(errors='replace')[:200]}") from exc

    def compact(self):
        """Compact etcd's history up to its current revision (through its
        gRPC gateway, as `etcdctl compact` does): every older revision is
        gone. Returns the revision."""
        key = base64.b64encode(b"/registry/").decode()
        answer = self._etcd("/v3/kv/range", {"key": key, "count_only": True})
        revision = int(answer["header"]["revision"])
        self._etcd("/v3/kv/compaction", {"revision": revision,
                                         "physical": True}, timeout=30)
        return revision
