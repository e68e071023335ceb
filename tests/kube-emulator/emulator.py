#!/usr/bin/python3
"""Kubernetes API server emulator for pglease tests.

Implements the subset of the API that pglease uses (Leases, Pods, Events,
discovery, Tables for kubectl) with the API server's own semantics, plus an
admin-only control API to inject faults per client token. Standard library
only; see README.md in this directory.
"""

import argparse
import http.server
import json
import os
import signal
import socket
import socketserver
import ssl
import struct
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid

from emu_api import NONRESOURCE_ANONYMOUS, Api, Request, Store, authorize, \
    forbidden, route
from emu_control import Faults, Stats, Tokens, log
from emu_watch import Stream
from emu_meta import ApiError, bad_request
from emu_views import discovery

SERVER_VERSION = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-kubeemu",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}

MAX_BODY = 3 * 1024 * 1024

STATUS_MESSAGES = {
    429: "Too many requests, please try again later.",
    500: "Internal error occurred: injected fault",
    503: "The server is currently unable to handle the request "
         "(injected fault)",
    504: "The server was unable to return a response in the time allotted, "
         "but may still be processing the request (injected fault)",
}


def encode_json(body):
    """Compact JSON with Go's escaping of <, > and &, plus a newline."""
    text = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e") \
        .replace("&", "\\u0026").replace("\u2028", "\\u2028") \
        .replace("\u2029", "\\u2029")
    return (text + "\n").encode("utf-8")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubeemu"
    sys_version = ""
    timeout = 600   # idle keep-alive connections are closed after this

    def do_GET(self):
        self.dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def log_message(self, fmt, *args):
        pass

    def version_string(self):
        return self.server_version

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            size = 0
            while True:
                line = self.rfile.readline(1024)
                try:
                    n = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise bad_request("malformed chunked body")
                if n == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n",
                                                            b""):
                        pass
                    return b"".join(chunks)
                size += n
                if size > MAX_BODY:
                    raise ApiError(413, "Request entity too large: limit is "
                                   f"{MAX_BODY}")
                chunks.append(self.rfile.read(n))
                self.rfile.readline(1024)
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise bad_request("invalid Content-Length")
        if length > MAX_BODY:
            raise ApiError(413, f"Request entity too large: limit is "
                           f"{MAX_BODY}")
        return self.rfile.read(length) if length > 0 else b""

    def send_json(self, code, body, headers=None, warnings=()):
        if isinstance(body, str):   # /healthz and friends answer plain text
            data, ctype = body.encode("utf-8"), "text/plain; charset=utf-8"
        else:
            data, ctype = encode_json(body), "application/json"
        self.send_response(code)
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Type", ctype)
        for key, value in (headers or {}).items():
            self.send_header(key, str(value))
        for warning in warnings:
            quoted = warning.replace("\\", "\\\\").replace('"', '\\"')
            self.send_header("Warning", f'299 - "{quoted}"')
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self.wfile.flush()

    def begin_stream(self):
        """The headers of a watch: chunked, so that each event reaches
        the client as it happens."""
        self.send_response(200)
        self.send_header("Audit-Id", str(uuid.uuid4()))
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()

    def write_chunk(self, text):
        data = text.encode("utf-8")
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def end_stream(self):
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def drop_connection(self, reset):
        """Close without an answer; with reset, make the kernel send RST."""
        self.close_connection = True
        if reset:
            try:
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                           struct.pack("ii", 1, 0))
            except OSError:
                pass
        for f in (self.rfile, self.wfile):
            try:
                f.close()
            except OSError:
                pass
        try:
            self.connection.close()
        except OSError:
            pass

    def dispatch(self):
        app = self.server.app
        started = time.monotonic()
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query,
                                            keep_blank_values=True))
        auth = self.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else None
        req = Request(self.command, url.path or "/", query, b"", token,
                      self.headers.get("Accept", ""),
                      self.headers.get("Content-Type"))
        try:
            req.body = self.read_body()
        except ApiError as e:
            self.close_connection = True
            self.send_json(e.code, e.status())
            return
        if req.path.startswith("/_emulator/"):
            self.control(req)
            return
        info = app.tokens.lookup(token)
        user = info.get("user", "") if info else None
        route_error = None
        try:
            route(req)
        except ApiError as e:
            route_error = e
        resource = req.res.name if req.res else None
        self.requests_served = getattr(self, "requests_served", 0) + 1
        app.stats.count(token, user, req.verb, resource,
                        self.requests_served == 1)
        fault = app.faults.match(token, bool(info and info.get("admin")),
                                 req.verb, resource)
        if fault and fault["mode"] == "lose":
            # Carried out, then the answer lost on the way back: the
            # client cannot tell it from a request that never arrived.
            self.answer(req, info, route_error, lost=True)
            self.drop_connection(reset=True)
            app.log_request(req, user, "lose", started)
            return
        code = self.apply_fault(fault) if fault else None
        if code is None and fault and fault["mode"] in ("refuse", "hang"):
            app.log_request(req, user, fault["mode"], started)
            return
        if code is None:
            code = self.answer(req, info, route_error)
        app.stats.code(token, code)
        app.log_request(req, user, code, started)

    def apply_fault(self, fault):
        """Inject `fault`; the status code sent, or None."""
        app = self.server.app
        mode = fault["mode"]
        if mode == "refuse":
            self.drop_connection(reset=True)
            return None
        if mode == "hang":
            app.faults.wait_cleared(fault)
            self.drop_connection(reset=False)
            return None
        if mode == "delay":
            time.sleep(fault["delay_ms"] / 1000)
            return None
        code = int(fault["status"])
        headers = {}
        details = None
        if fault.get("retry_after") is not None:
            headers["Retry-After"] = int(fault["retry_after"])
            details = {"retryAfterSeconds": int(fault["retry_after"])}
        err = ApiError(code, STATUS_MESSAGES.get(code, "injected fault"),
                       details=details)
        self.send_json(code, err.status(), headers)
        return code

    def answer(self, req, info, route_error, lost=False):
        """Carry out the request and send its answer (lost: carry it out
        and send nothing; a watch is not started)."""
        app = self.server.app
        warnings = req.warnings
        if lost:
            saved = self.send_json
            self.send_json = lambda *args, **kw: None
            try:
                if req.verb == "watch":
                    return None
                return self.answer(req, info, route_error)
            finally:
                self.send_json = saved
        try:
            if req.nonresource and req.path in NONRESOURCE_ANONYMOUS:
                code, body = self.nonresource(req)
            elif info is None:
                raise ApiError(401, "Unauthorized")
            elif route_error is not None:
                raise route_error
            elif req.nonresource:
                code, body = self.nonresource(req)
            else:
                if not authorize(req, info):
                    raise forbidden(req, info.get("user", ""))
                req.user = info.get("user", "")
                code, body = app.api.serve(req)
            if isinstance(body, Stream):
                return body.serve(self)
            self.send_json(code, body, warnings=warnings)
            return code
        except ApiError as e:
            self.send_json(e.code, e.status(), e.headers, warnings)
            return e.code
        except Exception as e:   # a bug here must not kill the connection
            log(f"internal error on {req.method} {req.path}: {e!r}")
            traceback.print_exc()
            err = ApiError(500, f"Internal error occurred: {e}")
            self.send_json(500, err.status())
            return 500

    def nonresource(self, req):
        if req.method not in ("GET", "HEAD"):
            raise ApiError(405, "the server does not allow this method on "
                           "the requested resource")
        if req.path == "/version":
            return 200, SERVER_VERSION
        if req.path in ("/healthz", "/livez", "/readyz"):
            return 200, "ok"
        host = self.headers.get("Host") or \
            "%s:%d" % self.server.server_address[:2]
        body = discovery(req.path, host)
        if body is None:
            raise ApiError(404, "the server could not find the requested "
                           "resource")
        return 200, body

    def control(self, req):
        app = self.server.app
        info = app.tokens.lookup(req.token)
        try:
            if info is None:
                raise ApiError(401, "Unauthorized")
            if not info.get("admin"):
                raise ApiError(403, f'User "{info.get("user", "")}" may not '
                               "use the emulator control endpoints")
            code, body = self.control_answer(req)
            self.send_json(code, body)
        except ApiError as e:
            self.send_json(e.code, e.status())

    def control_answer(self, req):
        app = self.server.app
        path, method = req.path.rstrip("/"), req.method
        if path == "/_emulator/faults":
            if method == "GET":
                return 200, {"faults": app.faults.listing()}
            if method == "DELETE":
                app.faults.clear()
                return 200, {"faults": []}
            if method == "POST":
                try:
                    spec = json.loads(req.body or b"null")
                except ValueError as e:
                    raise bad_request(f"fault: invalid JSON: {e}")
                specs = spec if isinstance(spec, list) else [spec]
                for one in specs:
                    if not isinstance(one, dict):
                        raise bad_request("fault must be a JSON object")
                for one in specs:
                    app.faults.set(one)
                return 200, {"faults": app.faults.listing()}
        elif path == "/_emulator/watches":
            if method == "GET":
                with app.store.lock:
                    return 200, app.api.hub.listing()
            if method == "POST":
                try:
                    body = json.loads(req.body or b"null")
                except ValueError as e:
                    raise bad_request(f"watches: invalid JSON: {e}")
                return 200, app.api.hub.control(body)
        elif path == "/_emulator/stats" and method == "GET":
            return 200, app.stats.snapshot()
        elif path == "/_emulator/stats/reset" and method == "POST":
            app.stats.reset()
            return 200, app.stats.snapshot()
        elif path == "/_emulator/state" and method == "GET":
            with app.store.lock:
                return 200, {"resourceVersion": app.store.rv,
                             "objects": {k: list(t.values()) for k, t in
                                         app.store.objects.items()},
                             "events": {k: list(t.values()) for k, t in
                                        app.store.events.items()}}
        raise ApiError(404, "no such emulator control endpoint")


class App:
    def __init__(self, tokens_path, state_file, quiet):
        self.tokens = Tokens(tokens_path)
        self.store = Store(state_file)
        self.api = Api(self.store)
        self.faults = Faults()
        self.stats = Stats()
        self.quiet = quiet

    def log_request(self, req, user, outcome, started):
        if self.quiet:
            return
        ms = (time.monotonic() - started) * 1000
        log(f"{req.method} {req.path} user={user or '-'} verb={req.verb} "
            f"-> {outcome} {ms:.1f}ms")


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address, app, ssl_context):
        self.address_family = socket.AF_INET6 if ":" in address[0] \
            else socket.AF_INET
        self.app = app
        self.ssl_context = ssl_context
        super().__init__(address, Handler)

    def server_bind(self):
        # HTTPServer.server_bind would resolve our name (getfqdn): no DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name = self.server_address[0]
        self.server_port = self.server_address[1]

    def finish_request(self, request, client_address):
        conn = request
        # Headers and body go out in separate writes: without this, Nagle
        # and the client's delayed ACK add 40 ms to every answer.
        try:
            request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if self.ssl_context is not None:
            # The handshake runs here, in the connection's own thread, so a
            # slow or silent client never holds up accept().
            request.settimeout(10)
            try:
                conn = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError) as e:
                if not self.app.quiet:
                    log(f"TLS handshake with {client_address[0]} failed: {e}")
                request.close()
                return
            conn.settimeout(None)
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        if not self.app.quiet:
            log(f"connection from {client_address[0]} ended: "
                f"{sys.exc_info()[1]!r}")


def write_port_file(path, port):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".port-", dir=directory)
    with os.fdopen(fd, "w") as f:
        f.write(f"{port}\n")
    os.replace(tmp, path)


def watch_parent(parent):
    """Exit once we are reparented: a crashed test must not leave us."""
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        log("parent process gone, exiting")
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, daemon=True).start()


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Kubernetes API emulator for pglease tests")
    parser.add_argument("--listen", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    parser.add_argument("--tokens", required=True)
    parser.add_argument("--state-file")
    parser.add_argument("--quiet", action="store_true",
                        help="do not log every request to stderr")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="exit when the process that started us dies")
    args = parser.parse_args(argv)
    if bool(args.tls_cert) != bool(args.tls_key):
        parser.error("--tls-cert and --tls-key go together")
    if not os.path.exists(args.tokens):
        parser.error(f"tokens file {args.tokens} does not exist")

    ssl_context = None
    if args.tls_cert:
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_context.load_cert_chain(args.tls_cert, args.tls_key)
        ssl_context.set_alpn_protocols(["http/1.1"])

    app = App(args.tokens, args.state_file, args.quiet)
    server = Server((args.listen, args.port), app, ssl_context)
    port = server.server_address[1]

    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.exit_with_parent:
        watch_parent(os.getppid())
    if args.port_file:
        write_port_file(args.port_file, port)
    log(f"listening on {'https' if ssl_context else 'http'}://"
        f"{args.listen}:{port} (resourceVersion {app.store.rv})")
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
