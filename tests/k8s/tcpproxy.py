"""A TCP proxy on loopback in front of the API server, one per agent, to
inject network faults without reading the (TLS) stream:

    proxy = TcpProxy("10.20.30.1", 6443).start()   # listens on 127.0.0.1
    proxy.set_mode("delay", delay=0.9)   # each chunk waits 0.9 s each way
    proxy.set_mode("hang")      # connections stay open, nothing passes
    proxy.set_mode("refuse")    # every connection is reset, new ones too
    proxy.set_mode("drop", drop=0.2)    # a fifth of the server's chunks
                                # reset the connection instead of passing
    proxy.set_mode("ok")
    proxy.close()

Switching to "refuse" also resets the connections open at that moment;
"hang" freezes them. "drop" cuts connections at random points of the
server's answers: in a TLS handshake, or after a request reached the server
(which may have applied a write) and before its answer did.
"""

import random
import select
import socket
import struct
import threading
import time

MODES = ("ok", "delay", "hang", "refuse", "drop")


def _reset(sock):
    """Close with RST (SO_LINGER 0): the peer sees ECONNRESET."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


class TcpProxy:
    def __init__(self, target_host, target_port, listen_host="127.0.0.1"):
        self.target = (target_host, target_port)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind((listen_host, 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.mode = "ok"
        self.delay = 0.0
        self.drop = 0.0
        self._random = random.Random()
        self._lock = threading.Lock()
        self._conns = set()         # (client, upstream) pairs
        self._closed = threading.Event()
        self._counts = {"connections": 0, "refused": 0, "dropped": 0,
                        "bytes_up": 0, "bytes_down": 0}
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._accept_loop,
                                        name=f"tcpproxy-{self.port}",
                                        daemon=True)
        self._thread.start()
        return self

    def set_mode(self, mode, delay=0.0, drop=0.0):
        if mode not in MODES:
            raise ValueError(f"mode {mode!r} is not one of {MODES}")
        if mode == "drop" and not 0.0 < drop <= 1.0:
            raise ValueError(f"drop={drop!r}: a share in (0, 1]")
        with self._lock:
            self.mode = mode
            self.delay = delay
            self.drop = drop
            cut = list(self._conns) if mode == "refuse" else []
        # "hang" leaves the open connections in place, passing nothing
        # (_pump): a silent path, seen only through the client's timeout.
        for client, upstream in cut:
            _reset(client)
            upstream.close()

    def _draw(self):
        with self._lock:
            return self._random.random()

    def counts(self):
        with self._lock:
            return dict(self._counts)

    def close(self):
        self._closed.set()
        self.listener.close()
        with self._lock:
            conns = list(self._conns)
        for client, upstream in conns:
            _reset(client)
            upstream.close()
        if self._thread is not None:
            self._thread.join(5)

    def _accept_loop(self):
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select([self.listener], [], [], 0.2)
                if not ready:
                    continue
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                mode = self.mode
            if mode == "refuse":
                with self._lock:
                    self._counts["refused"] += 1
                _reset(client)
                continue
            threading.Thread(target=self._serve, args=(client,),
                             daemon=True).start()

    def _serve(self, client):
        try:
            upstream = socket.create_connection(self.target, timeout=5)
        except OSError:
            _reset(client)
            return
        upstream.settimeout(None)
        pair = (client, upstream)
        with self._lock:
            self._conns.add(pair)
            self._counts["connections"] += 1
        try:
            self._pump(client, upstream)
        finally:
            with self._lock:
                self._conns.discard(pair)
            for sock in pair:
                try:
                    sock.close()
                except OSError:
                    pass

    def _pump(self, client, upstream):
        peers = {client: upstream, upstream: client}
        while not self._closed.is_set():
            try:
                ready, _, _ = select.select(list(peers), [], [], 0.2)
            except (OSError, ValueError):
                return
            with self._lock:
                mode, delay, drop = self.mode, self.delay, self.drop
            if mode == "hang":
                continue        # hold the data, pass nothing
            for sock in ready:
                try:
                    data = sock.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                if mode == "delay" and delay > 0:
                    time.sleep(delay)
                if mode == "drop" and sock is upstream and \
                        self._draw() < drop:
                    with self._lock:
                        self._counts["dropped"] += 1
                    _reset(client)
                    return
                try:
                    peers[sock].sendall(data)
                except OSError:
                    return
                key = "bytes_up" if sock is client else "bytes_down"
                with self._lock:
                    self._counts[key] += len(data)
