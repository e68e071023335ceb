"""Drive the Kubernetes API emulator (emulator.py) from Python tests.

    from kubeemu import Emulator
    with Emulator(tmpdir) as emu:          # TLS, admin token, free port
        emu.add_token("tok-pg-0", "pg-0")
        emu.create_pod("ns", "pg-0", {"app": "pg"})
        emu.kubeconfig(tmpdir + "/kubeconfig", "tok-pg-0", namespace="ns")
        emu.fault("tok-pg-0", "status", status=503)

Every process started here is stopped by stop(), by leaving the `with`
block (also on failure), and at interpreter exit.
"""

import atexit
import base64
import http.client
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
EMULATOR = os.path.join(HERE, "emulator.py")
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") \
    else sys.executable
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"
MERGE_PATCH = "application/merge-patch+json"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
PODS = "/api/v1/namespaces/{ns}/pods"

_running = set()


@atexit.register
def _stop_all():
    for emu in list(_running):
        emu.stop()


class EmulatorError(Exception):
    pass


def wait_for(predicate, timeout, what, interval=0.02):
    """Poll `predicate` until it returns a true value or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise EmulatorError(f"timed out after {timeout}s waiting for "
                                f"{what}")
        time.sleep(interval)


def _run(argv, timeout=30):
    try:
        subprocess.run(argv, check=True, timeout=timeout,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except subprocess.CalledProcessError as e:
        raise EmulatorError(f"{' '.join(argv)} failed: "
                            f"{e.stdout.decode(errors='replace')}") from e


def make_certificates(directory, timeout=30):
    """A CA and a server certificate for 127.0.0.1, ::1 and localhost,
    made with the openssl command line. Returns (ca, cert, key) paths;
    existing files are reused so that a restart keeps the same CA."""
    ca_crt = os.path.join(directory, "ca.crt")
    ca_key = os.path.join(directory, "ca.key")
    crt = os.path.join(directory, "server.crt")
    key = os.path.join(directory, "server.key")
    if all(os.path.exists(p) for p in (ca_crt, crt, key)):
        return ca_crt, crt, key
    csr = os.path.join(directory, "server.csr")
    ext = os.path.join(directory, "server.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=serverAuth\n"
                "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
          "-nodes"]
    _run(["openssl", "req", "-x509", *ec, "-keyout", ca_key, "-out", ca_crt,
          "-days", "30", "-subj", "/CN=kubeemu-ca",
          "-addext", "basicConstraints=critical,CA:TRUE",
          "-addext", "keyUsage=critical,keyCertSign,cRLSign"], timeout)
    _run(["openssl", "req", "-new", *ec, "-keyout", key, "-out", csr,
          "-subj", "/CN=kube-apiserver"], timeout)
    _run(["openssl", "x509", "-req", "-in", csr, "-CA", ca_crt,
          "-CAkey", ca_key, "-CAcreateserial", "-out", crt, "-days", "30",
          "-extfile", ext], timeout)
    return ca_crt, crt, key


def _yaml_scalar(value):
    if re.fullmatch(r"[A-Za-z0-9._/+=-][A-Za-z0-9._:/+=-]*", value) and \
            value not in ("true", "false", "null", "yes", "no", "on", "off"):
        return value
    return json.dumps(value)


class Emulator:
    """One emulator process; a context manager that always stops it."""

    ADMIN_TOKEN = "kubeemu-admin-token"

    def __init__(self, tmpdir=None, tls=True, host="127.0.0.1",
                 admin_token=ADMIN_TOKEN, quiet=False):
        self.tmpdir = tmpdir
        self.tls = tls
        self.host = host
        self.admin_token = admin_token
        self.quiet = quiet
        self.port = None
        self.proc = None
        self.ca_path = None
        self.cert_path = None
        self.key_path = None
        self._own_tmpdir = False
        self._log = None

    # --- process -------------------------------------------------------------

    @property
    def url(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def tokens_path(self):
        return os.path.join(self.tmpdir, "tokens.json")

    @property
    def state_path(self):
        return os.path.join(self.tmpdir, "state.json")

    @property
    def port_path(self):
        return os.path.join(self.tmpdir, "port")

    @property
    def log_path(self):
        return os.path.join(self.tmpdir, "emulator.log")

    def start(self, tmpdir=None, tls=None, timeout=30):
        """Start the emulator (certificates and tokens file on first use)."""
        if self.proc is not None:
            raise EmulatorError("emulator already running")
        if tmpdir is not None:
            self.tmpdir = str(tmpdir)
        if tls is not None:
            self.tls = tls
        if self.tmpdir is None:
            self.tmpdir = tempfile.mkdtemp(prefix="kubeemu-")
            self._own_tmpdir = True
        os.makedirs(self.tmpdir, exist_ok=True)
        if self.tls and self.ca_path is None:
            self.ca_path, self.cert_path, self.key_path = \
                make_certificates(self.tmpdir, timeout)
        if not os.path.exists(self.tokens_path):
            self._write_tokens({self.admin_token: {
                "user": "kubeemu-admin", "verbs": ["*"], "admin": True}})
        self._spawn(self.port or 0, timeout)
        return self

    def _spawn(self, port, timeout):
        if os.path.exists(self.port_path):
            os.unlink(self.port_path)
        argv = [PYTHON, "-B", EMULATOR, "--listen", self.host,
                "--port", str(port),
                "--port-file", self.port_path, "--tokens", self.tokens_path,
                "--state-file", self.state_path, "--exit-with-parent"]
        if self.tls:
            argv += ["--tls-cert", self.cert_path, "--tls-key", self.key_path]
        if self.quiet:
            argv.append("--quiet")
        deadline = time.monotonic() + timeout
        while True:
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                         stdout=self._log,
                                         stderr=subprocess.STDOUT)
            _running.add(self)
            try:
                wait_for(lambda: os.path.exists(self.port_path)
                         or self.proc.poll() is not None,
                         max(0.1, deadline - time.monotonic()),
                         "the emulator's port file")
            except EmulatorError:
                self.stop()
                raise
            if self.proc.poll() is None:
                break
            self._reap()
            # A restart on a fixed port can race another bind; try again.
            if port == 0 or time.monotonic() >= deadline:
                raise EmulatorError("emulator exited at start:\n" +
                                    self.log_tail())
            time.sleep(0.1)
        with open(self.port_path) as f:
            self.port = int(f.read().strip())

    def _reap(self):
        _running.discard(self)
        self.proc = None
        if self._log:
            self._log.close()
            self._log = None

    def stop(self, timeout=10):
        """Stop the process (SIGTERM, then SIGKILL); idempotent."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self._reap()

    def kill(self):
        """SIGKILL, as a crash would: state is whatever was last written."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self._reap()

    def restart(self, timeout=30):
        """Stop and start again on the same port; objects survive."""
        self.stop()
        self._spawn(self.port, timeout)
        return self

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return ""

    def close(self):
        self.stop()
        if self._own_tmpdir and self.tmpdir:
            shutil.rmtree(self.tmpdir, ignore_errors=True)

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # --- tokens ----------------------------------------------------------------

    def _read_tokens(self):
        with open(self.tokens_path) as f:
            return json.load(f).get("tokens", {})

    def _write_tokens(self, tokens):
        fd, tmp = tempfile.mkstemp(prefix=".tokens-", dir=self.tmpdir)
        with os.fdopen(fd, "w") as f:
            json.dump({"tokens": tokens}, f, indent=1)
        os.replace(tmp, self.tokens_path)

    def add_token(self, token, user, verbs=("*",), admin=False, **extra):
        """Allow `token` as `user`; extra keys (resources, namespaces) are
        written as they are. Takes effect on the next request."""
        tokens = self._read_tokens()
        tokens[token] = dict(user=user, verbs=list(verbs), admin=admin,
                             **extra)
        self._write_tokens(tokens)

    def remove_token(self, token):
        tokens = self._read_tokens()
        tokens.pop(token, None)
        self._write_tokens(tokens)

    # --- HTTP ------------------------------------------------------------------

    def ssl_context(self):
        return ssl.create_default_context(cafile=self.ca_path)

    def connection(self, timeout=10):
        if self.tls:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout,
                context=self.ssl_context())
        return http.client.HTTPConnection(self.host, self.port,
                                          timeout=timeout)

    def request(self, method, path, body=None, token=None,
                content_type="application/json", headers=None, timeout=10):
        """One request on a fresh connection; returns (status, body,
        headers) with body decoded from JSON when it is JSON. `token`
        defaults to the admin token; pass "" to send none."""
        token = self.admin_token if token is None else token
        hdrs = {"Accept": "application/json"}
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else \
                json.dumps(body).encode()
            hdrs["Content-Type"] = content_type
        hdrs.update(headers or {})
        conn = self.connection(timeout)
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

    def _control(self, method, path, body=None):
        status, answer, _ = self.request(method, path, body)
        if status != 200:
            raise EmulatorError(f"{method} {path}: {status} {answer}")
        return answer

    # --- faults and stats --------------------------------------------------------

    def fault(self, token, mode, **kw):
        """Inject a fault for `token` ("*" = every non-admin token).
        mode: ok|refuse|delay|status|hang|lose; kw: delay_ms, status,
        retry_after, duration_ms, count, verbs, resources."""
        spec = dict(token=token, mode=mode, **kw)
        return self._control("POST", "/_emulator/faults", spec)["faults"]

    def clear_faults(self):
        self._control("DELETE", "/_emulator/faults")

    def faults(self):
        return self._control("GET", "/_emulator/faults")["faults"]

    def watches(self, **body):
        """Break or tune the open watches: action=close|silence|gone|
        resume (user=... for one client's only), compact=True (a watch
        from an older version gets 410), bookmark_interval=seconds.
        Without arguments, lists them."""
        if not body:
            return self._control("GET", "/_emulator/watches")
        return self._control("POST", "/_emulator/watches", body)

    def watch(self, path, token=None, timeout=10):
        """Opens a watch (path with its query); returns (connection,
        response): read events with response.readline()."""
        token = self.admin_token if token is None else token
        conn = self.connection(timeout)
        conn.request("GET", path, headers={
            "Accept": "application/json",
            "Authorization": f"Bearer {token}"})
        return conn, conn.getresponse()

    def stats(self):
        """{"since", "seconds", "total", "verbs": {verb: n},
        "tokens": {token: {"user", "total", "verbs", "resources",
        "codes"}}} since the last reset."""
        return self._control("GET", "/_emulator/stats")

    def reset_stats(self):
        return self._control("POST", "/_emulator/stats/reset")

    def state(self):
        return self._control("GET", "/_emulator/state")

    # --- objects -------------------------------------------------------------------

    @staticmethod
    def lease_path(ns, name=None):
        path = LEASES.format(ns=ns)
        return f"{path}/{name}" if name else path

    @staticmethod
    def pod_path(ns, name=None):
        path = PODS.format(ns=ns)
        return f"{path}/{name}" if name else path

    def get_lease(self, ns, name):
        """The Lease object, or None if there is none."""
        status, body = self.get(self.lease_path(ns, name))
        if status == 404:
            return None
        if status != 200:
            raise EmulatorError(f"GET lease {ns}/{name}: {status} {body}")
        return body

    def create_pod(self, ns, name, labels=None, annotations=None,
                   ip="127.0.0.1", phase="Running", ready=True):
        """Register a pod as the harness sees it: created, then given a
        status through pods/status as the kubelet would."""
        pod = {"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": ns,
                            "labels": dict(labels or {}),
                            "annotations": dict(annotations or {})},
               "spec": {"containers": [{"name": "postgres",
                                        "image": "postgres:15"}],
                        "nodeName": "kubeemu-node"}}
        status, body = self.post(self.pod_path(ns), pod)
        if status != 201:
            raise EmulatorError(f"create pod {ns}/{name}: {status} {body}")
        pod_status = {"phase": phase, "podIP": ip,
                      "podIPs": [{"ip": ip}], "hostIP": ip,
                      "conditions": [{"type": "Ready",
                                      "status": "True" if ready
                                      else "False"}],
                      "containerStatuses": [{"name": "postgres",
                                             "ready": ready,
                                             "restartCount": 0,
                                             "image": "postgres:15"}]}
        status, body = self.patch(self.pod_path(ns, name) + "/status",
                                  {"status": pod_status})
        if status != 200:
            raise EmulatorError(f"set pod status {ns}/{name}: {status} "
                                f"{body}")
        return body

    # --- client configuration ------------------------------------------------------

    def ca_pem(self):
        with open(self.ca_path, "rb") as f:
            return f.read()

    def kubeconfig(self, path, token, namespace=None, inline_ca=True,
                   user="kubeemu-user"):
        """Write a kubeconfig for `token` (server, CA data, token)."""
        cluster = [f"    server: {_yaml_scalar(self.url)}"]
        if self.tls and inline_ca:
            data = base64.b64encode(self.ca_pem()).decode()
            cluster.insert(0, f"    certificate-authority-data: {data}")
        elif self.tls:
            cluster.insert(0, "    certificate-authority: "
                           f"{_yaml_scalar(os.path.abspath(self.ca_path))}")
        context = ["    cluster: kubeemu"]
        if namespace:
            context.append(f"    namespace: {_yaml_scalar(namespace)}")
        context.append(f"    user: {_yaml_scalar(user)}")
        text = "\n".join([
            "apiVersion: v1", "kind: Config", "clusters:", "- cluster:",
            *cluster, "  name: kubeemu", "contexts:", "- context:",
            *context, "  name: kubeemu", "current-context: kubeemu",
            "preferences: {}", "users:", f"- name: {_yaml_scalar(user)}",
            "  user:", f"    token: {_yaml_scalar(token)}", ""])
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o600)
        return path

    def serviceaccount_dir(self, directory, token, ns):
        """token, ca.crt and namespace files as a pod sees them under
        /var/run/secrets/kubernetes.io/serviceaccount."""
        os.makedirs(directory, exist_ok=True)
        files = {"token": token.encode(), "namespace": ns.encode()}
        if self.tls:
            files["ca.crt"] = self.ca_pem()
        for name, data in files.items():
            with open(os.path.join(directory, name), "wb") as f:
                f.write(data)
        return directory

    def incluster_env(self):
        """KUBERNETES_SERVICE_HOST/PORT as the kubelet sets them."""
        return {"KUBERNETES_SERVICE_HOST": self.host,
                "KUBERNETES_SERVICE_PORT": str(self.port),
                "KUBERNETES_SERVICE_PORT_HTTPS": str(self.port)}

    def kubectl(self, *args, token=None, timeout=60, home=None):
        """Run the real kubectl against the emulator with a private HOME;
        returns the CompletedProcess (text)."""
        home = home or os.path.join(self.tmpdir, "kubectl-home")
        os.makedirs(home, exist_ok=True)
        env = dict(os.environ, HOME=home,
                   KUBECONFIG=os.path.join(home, "no-kubeconfig"))
        argv = [KUBECTL, f"--server={self.url}",
                f"--token={token or self.admin_token}",
                f"--cache-dir={os.path.join(home, 'cache')}",
                "--request-timeout=20s"]
        if self.tls:
            argv.append(f"--certificate-authority={self.ca_path}")
        return subprocess.run(argv + list(args), env=env, timeout=timeout,
                              stdin=subprocess.DEVNULL,
                              capture_output=True, text=True)
