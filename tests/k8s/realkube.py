"""The real Kubernetes API server (started by scripts/k8s) behind the same
interface as tests/kube-emulator/kubeemu.py's Emulator, so that
tests/integration/cluster.py runs its nodes against either.

    kube = RealKube(workdir, namespace="pgl-1a2b", cluster_name="pg")
    kube.start()                   # namespace, the chart's RBAC
    kube.create_pod(ns, "pg-0", labels)
    kube.kubeconfig(path, token_id, namespace=ns)   # a rotated SA token
    kube.fault(token_id, "refuse") # through the node's TCP proxy
    kube.stop()                    # proxies, rotation, namespace

What differs from the emulator, because the server is real:
- each namespace gets the chart's ServiceAccount, Role and RoleBinding
  (rendered by helm), and every agent authenticates with a token from
  the TokenRequest API for that ServiceAccount, bound to its Pod, expiring
  after 10 minutes (the shortest the API allows) and rotated in its
  kubeconfig's tokenFile as the kubelet rotates a projected token; so the
  server enforces the chart's Role;
- the agents reach the server through a TCP proxy each (tcpproxy.py): the
  faults are refuse, delay, hang (a silent peer), drop (connections cut
  at random, also after a request reached the server and before its
  answer came back) -- nothing that needs to read the encrypted stream (an
  HTTP status cannot be injected, nor a fault on GETs only; tests that
  need one are skipped with the reason);
- stats() counts connections and bytes per token, not requests.
"""

import base64
import http.client
import json
import os
import ssl
import subprocess
import sys
import threading
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("PGLEASE_SOURCE_DIR") or \
    os.path.dirname(os.path.dirname(HERE))
for _path in (HERE, os.path.join(SOURCE_DIR, "tests", "integration"),
              os.path.join(SOURCE_DIR, "tests", "kube-emulator")):
    if _path not in sys.path:
        sys.path.append(_path)

import kubeemu  # noqa: E402  pylint: disable=wrong-import-position
import pgharness  # noqa: E402  pylint: disable=wrong-import-position
import tcpproxy  # noqa: E402  pylint: disable=wrong-import-position

MERGE_PATCH = "application/merge-patch+json"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
PODS = "/api/v1/namespaces/{ns}/pods"
CHART_DIR = os.path.join(SOURCE_DIR, "charts", "pglease")
# The shortest expirationSeconds a TokenRequest may ask for.
TOKEN_SECONDS = 600


class KubeError(kubeemu.EmulatorError):
    """Callers of either backend catch kubeemu.EmulatorError."""


class NotSupported(KubeError):
    """A fault the real server cannot be made to show."""


def control_plane_env(required=False):
    """The variables of `scripts/k8s env` as a dict, or None when the
    control plane is not up."""
    state = os.environ.get("PGLEASE_K8S_STATE") or \
        os.path.join(SOURCE_DIR, "build-k8s")
    path = os.path.join(state, "env")
    env = {}
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line.startswith("export ") and "=" in line:
                    key, value = line[len("export "):].split("=", 1)
                    env[key] = value
    except OSError:
        if required:
            raise KubeError(f"no control plane: {path} is missing "
                            "(run scripts/k8s up)") from None
        return None
    return env


def wait_for(predicate, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise KubeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Admin:
    """HTTPS requests as the control plane's admin (a client certificate in
    system:masters), and kubectl with its kubeconfig."""

    def __init__(self, env):
        self.env = env
        self.url = env["PGLEASE_K8S_SERVER"]
        hostport = self.url.split("://", 1)[1]
        self.host, port = hostport.rsplit(":", 1)
        self.port = int(port)
        self.ca_path = env["PGLEASE_K8S_CA"]
        pki = os.path.dirname(self.ca_path)
        self.context = ssl.create_default_context(cafile=self.ca_path)
        self.context.load_cert_chain(os.path.join(pki, "admin.crt"),
                                     os.path.join(pki, "admin.key"))
        self.kubeconfig_path = env["KUBECONFIG"]
        self.kubectl_path = os.path.join(env["PGLEASE_K8S_BIN"], "kubectl")

    def request(self, method, path, body=None, token=None,
                content_type="application/json", headers=None, timeout=20):
        """(status, body decoded from JSON when it is, headers). With
        `token` the request carries that bearer token and no client
        certificate."""
        hdrs = {"Accept": "application/json"}
        context = self.context
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
            context = ssl.create_default_context(cafile=self.ca_path)
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else \
                json.dumps(body).encode()
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        conn = http.client.HTTPSConnection(self.host, self.port,
                                           timeout=timeout, context=context)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            ctype = resp.getheader("Content-Type", "")
            decoded = json.loads(raw) if ctype.startswith(
                "application/json") and raw else raw.decode(errors="replace")
            return resp.status, decoded, resp.headers
        finally:
            conn.close()

    def must(self, method, path, body=None, ok=(200, 201),
             content_type="application/json"):
        status, answer, _ = self.request(method, path, body,
                                         content_type=content_type)
        if status not in ok:
            raise KubeError(f"{method} {path}: {status} {answer}")
        return answer

    def kubectl(self, *args, timeout=60, stdin=None):
        return subprocess.run(
            [self.kubectl_path, "--kubeconfig", self.kubeconfig_path,
             "--request-timeout=20s", *args], input=stdin, timeout=timeout,
            capture_output=True, text=True, check=False)


def finish_pods(admin, namespace, timeout=20):
    """Delete every Pod of `namespace` at once (grace period 0), as the
    kubelet does when a deleted Pod's containers have stopped. No kubelet
    runs here: without this a deleted Pod bound to the Node stays
    Terminating for ever, and so does its namespace. Only once the local
    nodes standing in for the Pods are stopped."""
    status, answer, _ = admin.request(
        "DELETE", PODS.format(ns=namespace),
        {"apiVersion": "v1", "kind": "DeleteOptions",
         "gracePeriodSeconds": 0}, timeout=timeout)
    if status not in (200, 404):
        raise KubeError(f"DELETE pods of {namespace}: {status} {answer}")


def delete_namespace(admin, namespace, wait=0, timeout=20):
    """Delete `namespace` and everything in it, its Pods first
    (finish_pods: the namespace controller, finding none, does not wait
    for their grace period). With wait > 0, wait up to that many seconds
    until it is gone, finishing the Pods deleted meanwhile (by the garbage
    collector after `helm uninstall`, or by the namespace controller)."""
    path = f"/api/v1/namespaces/{namespace}"
    finish_pods(admin, namespace, timeout)
    status, answer, _ = admin.request("DELETE", path, timeout=timeout)
    if status not in (200, 202, 404):
        raise KubeError(f"DELETE namespace {namespace}: {status} {answer}")
    if not wait:
        return

    def gone():
        if admin.request("GET", path, timeout=timeout)[0] == 404:
            return True
        finish_pods(admin, namespace, timeout)
        return False

    wait_for(gone, wait, f"namespace {namespace} to be gone", interval=0.5)


def render_rbac(namespace, release, cluster_name):
    """The chart's ServiceAccount, Role and RoleBinding as a list of
    objects, rendered by helm (pgharness.find_helm) for a StatefulSet named
    like the local cluster's pods (<cluster_name>-N)."""
    helm = pgharness.find_helm()
    if not helm:
        raise KubeError("no helm to render the chart's RBAC: scripts/k8s up "
                        "and scripts/test build one (ensure_helm), or set "
                        "PGLEASE_HELM")
    out = subprocess.run(
        [helm, "template", release, CHART_DIR, "--namespace", namespace,
         "--set", f"clusterName={cluster_name}",
         # The Role lets an agent patch only the pods <statefulset>-N.
         "--set", f"postgres.statefulsetName={cluster_name}",
         # helm renders every template, also with --show-only, and the
         # chart's Secret refuses to generate passwords where lookup does
         # not work (helm template): name a Secret instead, which changes
         # nothing in the RBAC objects.
         "--set", "secrets.existingSecret=unused",
         "--show-only", "templates/serviceaccount.yaml",
         "--show-only", "templates/rbac.yaml"],
        capture_output=True, text=True, timeout=60, check=False)
    if out.returncode != 0:
        raise KubeError(f"helm template: {out.stderr.strip()}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


class RealKube:
    """The real server for one LocalCluster: its namespace, the chart's RBAC
    in it, Pods, per-node proxies and rotated tokens."""

    def __init__(self, tmpdir, namespace, cluster_name="pg", release=None,
                 rotate_every=None, adopt=False, **_ignored):
        self.tmpdir = tmpdir
        self.namespace = namespace
        self.cluster_name = cluster_name
        self.release = release or cluster_name
        # adopt=True: the namespace, RBAC and Pods come from a `helm
        # install` of the chart (its StatefulSet makes the Pods); only their
        # status is ours to set, as no kubelet runs.
        self.adopt = adopt
        # Far more often than the kubelet (at 80% of the lifetime), so
        # that every test run sees agents read a replaced token.
        self.rotate_every = rotate_every or float(
            os.environ.get("PGLEASE_K8S_ROTATE_EVERY", "30"))
        self.held = set()           # token ids not to rotate now
        self.env = control_plane_env(required=True)
        self.admin = Admin(self.env)
        self.url = self.admin.url
        self.ca_path = self.admin.ca_path
        self.tls = True
        self.proc = None
        self.tokens = {}            # token id -> pod name
        self.proxies = {}           # token id -> TcpProxy
        self.token_files = {}       # token id -> path
        self.rotations = {}         # token id -> count
        self._stop = threading.Event()
        self._rotator = None
        self._lock = threading.Lock()
        self._started = False

    # --- lifecycle ----------------------------------------------------------

    def start(self, timeout=60):
        os.makedirs(self.tmpdir, exist_ok=True)
        wait_for(self.running, timeout, "the API server to be ready")
        if self.adopt:
            return self._start_rotation()
        # A namespace of that name still being deleted (an earlier run)
        # refuses new objects: wait until it is gone.
        wait_for(lambda: self._namespace_phase() != "Terminating", 180,
                 f"namespace {self.namespace} to finish terminating",
                 interval=0.5)
        self.admin.must("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": self.namespace,
                         "labels": {"pglease.io/test": "k8s"}}},
            ok=(201, 409))
        self._started = True    # stop() deletes the namespace
        try:
            for obj in render_rbac(self.namespace, self.release,
                                   self.cluster_name):
                obj.setdefault("metadata", {})["namespace"] = self.namespace
                self.apply(obj)
            self.wait_rbac()
        except BaseException:
            self.stop()
            raise
        return self._start_rotation()

    def wait_rbac(self, timeout=60):
        """Wait until the server's authorizer applies the Role just
        created: its RBAC cache follows the objects through a watch, and
        on a loaded machine an agent started at once got 403 on the Lease
        (an init container would be restarted by the kubelet; the local
        nodes are not). Asked with a SubjectAccessReview, which the same
        authorizer answers."""
        user = f"system:serviceaccount:{self.namespace}:{self.release}"

        def allowed():
            status, body, _ = self.admin.request(
                "POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews",
                {"apiVersion": "authorization.k8s.io/v1",
                 "kind": "SubjectAccessReview",
                 "spec": {"user": user,
                          "groups": ["system:serviceaccounts",
                                     f"system:serviceaccounts:"
                                     f"{self.namespace}",
                                     "system:authenticated"],
                          "resourceAttributes": {
                              "namespace": self.namespace, "verb": "get",
                              "group": "coordination.k8s.io",
                              "resource": "leases",
                              "name": f"{self.cluster_name}-leader"}}})
            return status == 201 and (body.get("status") or {}).get(
                "allowed")

        wait_for(allowed, timeout, f"RBAC to let {user} read its Lease",
                 interval=0.2)

    def _start_rotation(self):
        self._rotator = threading.Thread(target=self._rotate_loop,
                                         name="token-rotation", daemon=True)
        self._rotator.start()
        return self

    def _namespace_phase(self):
        status, body, _ = self.admin.request(
            "GET", f"/api/v1/namespaces/{self.namespace}")
        if status == 404:
            return None
        return (body.get("status") or {}).get("phase")

    def apply(self, obj):
        """Create `obj` in its namespace (replacing one of that name)."""
        kind = obj["kind"]
        plural = {"ServiceAccount": "serviceaccounts"}.get(kind)
        ns = obj["metadata"]["namespace"]
        if plural:
            base = f"/api/v1/namespaces/{ns}/{plural}"
        else:
            base = (f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/"
                    + {"Role": "roles", "RoleBinding": "rolebindings"}[kind])
        status, answer, _ = self.admin.request("POST", base, obj)
        if status == 409:
            status, answer, _ = self.admin.request(
                "PUT", f"{base}/{obj['metadata']['name']}", obj)
        if status not in (200, 201):
            raise KubeError(f"apply {kind} {obj['metadata']['name']}: "
                            f"{status} {answer}")
        return answer

    def running(self):
        try:
            status, _, _ = self.admin.request("GET", "/readyz", timeout=5)
        except OSError:
            return False
        return status == 200

    def stop(self, timeout=10):
        self._stop.set()
        if self._rotator is not None:
            self._rotator.join(timeout)
        for proxy in self.proxies.values():
            proxy.close()
        if self._started:
            # The nodes are stopped (LocalCluster.stop); the namespace's
            # deletion finishes in the background.
            try:
                delete_namespace(self.admin, self.namespace, timeout=timeout)
            except (OSError, KubeError) as exc:
                sys.stderr.write(f"deleting namespace {self.namespace}: "
                                 f"{exc}\n")
            self._started = False

    def close(self):
        self.stop()

    # --- HTTP as admin (the Emulator's interface) -------------------------------

    def bearer(self, token):
        """A node's token id stands for the token its agent holds now;
        anything else is sent as it is."""
        path = self.token_files.get(token)
        if path is None:
            return token
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()

    def request(self, method, path, body=None, token=None, **kwargs):
        return self.admin.request(method, path, body,
                                  token=self.bearer(token), **kwargs)

    def get(self, path, token=None):
        status, body, _ = self.request("GET", path, token=token)
        return status, body

    def post(self, path, body, token=None):
        status, body, _ = self.request("POST", path, body, token=token)
        return status, body

    def put(self, path, body, token=None):
        status, body, _ = self.request("PUT", path, body, token=token)
        return status, body

    def patch(self, path, body, token=None, content_type=MERGE_PATCH):
        status, body, _ = self.request("PATCH", path, body, token=token,
                                       content_type=content_type)
        return status, body

    def delete(self, path, token=None, body=None):
        status, body, _ = self.request("DELETE", path, body, token=token)
        return status, body

    @staticmethod
    def lease_path(ns, name=None):
        path = LEASES.format(ns=ns)
        return f"{path}/{name}" if name else path

    @staticmethod
    def pod_path(ns, name=None):
        path = PODS.format(ns=ns)
        return f"{path}/{name}" if name else path

    def get_lease(self, ns, name):
        status, body = self.get(self.lease_path(ns, name))
        if status == 404:
            return None
        if status != 200:
            raise KubeError(f"GET lease {ns}/{name}: {status} {body}")
        return body

    def kubectl(self, *args, token=None, timeout=60, home=None):
        del token, home
        return self.admin.kubectl(*args, timeout=timeout)

    def ca_pem(self):
        with open(self.ca_path, "rb") as handle:
            return handle.read()

    # --- pods ---------------------------------------------------------------------

    def create_pod(self, ns, name, labels=None, annotations=None,
                   ip="127.0.0.1", phase="Running", ready=True):
        """A Pod of the chart's ServiceAccount on the control plane's Node,
        then its status as a kubelet would report it (there is none). With
        adopt=True the StatefulSet's Pod of that name, once it exists."""
        if self.adopt:
            path = self.pod_path(ns, name)
            wait_for(lambda: self.admin.request("GET", path)[0] == 200, 120,
                     f"the StatefulSet to create Pod {ns}/{name}",
                     interval=0.5)
            return self.set_pod_status(ns, name, ip, phase, ready)
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns,
                            "labels": dict(labels or {}),
                            "annotations": dict(annotations or {})},
               "spec": {"serviceAccountName": self.release,
                        "nodeName": self.env["PGLEASE_K8S_NODE"],
                        "containers": [{"name": "postgres",
                                        "image": "postgres:15"}]}}
        self.admin.must("POST", self.pod_path(ns), pod, ok=(201,))
        return self.set_pod_status(ns, name, ip, phase, ready)

    def set_pod_status(self, ns, name, ip="127.0.0.1", phase="Running",
                       ready=True):
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        cond = "True" if ready else "False"
        status = {"phase": phase, "podIP": ip, "podIPs": [{"ip": ip}],
                  "hostIP": ip, "hostIPs": [{"ip": ip}], "startTime": now,
                  "conditions": [
                      {"type": t, "status": cond if t in ("Ready",
                                                          "ContainersReady")
                       else "True", "lastTransitionTime": now}
                      for t in ("PodScheduled", "Initialized",
                                "ContainersReady", "Ready")],
                  "containerStatuses": [{
                      "name": "postgres", "ready": ready, "restartCount": 0,
                      "image": "postgres:15", "imageID": "",
                      "started": True,
                      "state": {"running": {"startedAt": now}}}]}
        return self.admin.must("PATCH", self.pod_path(ns, name) + "/status",
                               {"status": status},
                               content_type=MERGE_PATCH, ok=(200,))

    # --- tokens -------------------------------------------------------------------

    def add_token(self, token, user, **_ignored):
        """Token id `token` will authenticate as the ServiceAccount, bound
        to Pod `user` (created by create_pod before kubeconfig())."""
        self.tokens[token] = user

    def request_token(self, pod_name, bound_kind="Pod", bound_name=None,
                      seconds=TOKEN_SECONDS):
        """A fresh token from the TokenRequest API for the chart's
        ServiceAccount, bound to an object (a Pod, as the kubelet binds
        projected tokens, or a Secret a test can delete)."""
        bound_name = bound_name or pod_name
        path = "/api/v1/namespaces/{}/{}/{}".format(
            self.namespace, "pods" if bound_kind == "Pod" else "secrets",
            bound_name)
        obj = self.admin.must("GET", path, ok=(200,))
        answer = self.admin.must(
            "POST", f"/api/v1/namespaces/{self.namespace}/serviceaccounts/"
            f"{self.release}/token",
            {"apiVersion": "authentication.k8s.io/v1",
             "kind": "TokenRequest",
             "spec": {"expirationSeconds": seconds,
                      "boundObjectRef": {
                          "apiVersion": "v1", "kind": bound_kind,
                          "name": bound_name,
                          "uid": obj["metadata"]["uid"]}}},
            ok=(201,))
        return answer["status"]["token"]

    def write_token(self, token_id, token):
        path = self.token_files[token_id]
        tmp = path + ".new"
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                  "w", encoding="ascii") as handle:
            handle.write(token + "\n")
        pgharness.chown_to_runner(tmp)
        os.replace(tmp, path)   # atomically, as the kubelet swaps it

    def rotate(self, token_id):
        """Give the node a new token now (the old one stays valid until it
        expires)."""
        with self._lock:
            self._rotate_locked(token_id)

    def _rotate_locked(self, token_id):
        self.write_token(token_id,
                         self.request_token(self.tokens[token_id]))
        self.rotations[token_id] = self.rotations.get(token_id, 0) + 1

    def hold_rotation(self, token_id, hold):
        """Stop (hold=True) or resume rotating one node's token; once it
        returns, no rotation of it is in flight."""
        with self._lock:
            if hold:
                self.held.add(token_id)
            else:
                self.held.discard(token_id)

    def _rotate_loop(self):
        while not self._stop.wait(self.rotate_every):
            for token_id in list(self.token_files):
                if self._stop.is_set():
                    return
                with self._lock:
                    if token_id in self.held:
                        continue
                    try:
                        self._rotate_locked(token_id)
                    except (KubeError, OSError) as exc:
                        # The server may be stopped by a fault; the token
                        # in place stays valid for ten minutes.
                        sys.stderr.write(f"token rotation for {token_id}: "
                                         f"{exc}\n")

    def kubeconfig(self, path, token, namespace=None, inline_ca=True,
                   user="pglease"):
        """The node's kubeconfig: its proxy as the server, our CA, and a
        tokenFile next to it holding a rotated ServiceAccount token."""
        del inline_ca
        if token not in self.proxies:
            self.proxies[token] = tcpproxy.TcpProxy(self.admin.host,
                                                   self.admin.port).start()
        self.token_files[token] = path + ".token"
        self.write_token(token, self.request_token(self.tokens[token]))
        ca = base64.b64encode(self.ca_pem()).decode()
        text = "\n".join([
            "apiVersion: v1", "kind: Config", "clusters:", "- cluster:",
            f"    certificate-authority-data: {ca}",
            f"    server: https://127.0.0.1:{self.proxies[token].port}",
            "  name: real", "contexts:", "- context:", "    cluster: real",
            f"    namespace: {namespace or self.namespace}",
            f"    user: {user}", "  name: real", "current-context: real",
            "users:", f"- name: {user}", "  user:",
            f"    tokenFile: {self.token_files[token]}", ""])
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                  "w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    # --- faults and stats ---------------------------------------------------------

    def fault(self, token, mode, **kw):
        """Faults on the node's path to the server: ok, refuse, delay
        (delay_ms), hang, drop (a share `drop` of the server's chunks cut
        the connection instead). Others, and faults on some requests only,
        need to read HTTP: they skip the test (raise NotSupported outside
        pytest)."""
        targets = list(self.proxies.values()) if token == "*" else \
            [self.proxies[token]]
        why = None
        if mode not in ("ok", "refuse", "delay", "hang", "drop"):
            why = (f"fault {mode!r} needs to rewrite HTTP answers, which the "
                   "real server behind a TLS proxy cannot do (emulator only)")
        elif kw.get("verbs") or kw.get("paths"):
            # A fault on some requests only (every GET, say) needs to read
            # them, and the proxy sees only TLS records.
            why = (f"fault {mode!r} on some requests only "
                   f"({kw.get('verbs') or kw.get('paths')}) needs to read "
                   "HTTP, which a proxy in front of TLS cannot (emulator "
                   "only)")
        if why:
            if "pytest" in sys.modules:
                sys.modules["pytest"].skip(why)
            raise NotSupported(why)
        for proxy in targets:
            proxy.set_mode(mode, delay=kw.get("delay_ms", 0) / 1000.0,
                           drop=kw.get("drop", 0.0))
        return [dict(token=token, mode=mode, **kw)]

    def clear_faults(self):
        for proxy in self.proxies.values():
            proxy.set_mode("ok")

    def stats(self):
        tokens = {}
        for token_id, proxy in self.proxies.items():
            counts = proxy.counts()
            tokens[token_id] = {"user": self.tokens.get(token_id),
                                "total": counts["connections"],
                                **counts}
        return {"tokens": tokens}
