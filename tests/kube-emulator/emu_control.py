"""The emulator's own switches: the tokens file (re-read when it
changes), injected faults per token, and request statistics."""

import collections
import datetime
import json
import os
import sys
import threading
import time

from emu_meta import bad_request


class Tokens:
    """The tokens file, re-read whenever it changes on disk."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.stamp = None
        self.tokens = {}
        self.refresh()

    def refresh(self):
        try:
            st = os.stat(self.path)
        except OSError:
            return
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self.lock:
            if stamp == self.stamp:
                return
            try:
                with open(self.path, encoding="utf-8") as f:
                    data = json.load(f)
            except (OSError, ValueError) as e:
                log(f"tokens file {self.path} unreadable, keeping the old "
                    f"one: {e}")
                return
            self.tokens = data.get("tokens", {})
            self.stamp = stamp

    def lookup(self, token):
        self.refresh()
        with self.lock:
            return self.tokens.get(token) if token else None


FAULT_MODES = ("ok", "refuse", "delay", "status", "hang", "lose")


class Faults:
    """Injected faults by token ("*" for every non-admin token)."""

    def __init__(self):
        self.cond = threading.Condition()
        self.faults = {}
        self.generation = 0

    def set(self, spec):
        token = spec.get("token")
        mode = spec.get("mode")
        if not isinstance(token, str) or not token:
            raise bad_request('fault needs "token" (a token or "*")')
        if mode not in FAULT_MODES:
            raise bad_request(f'fault "mode" must be one of {FAULT_MODES}')
        fault = {"token": token, "mode": mode}
        for key in ("delay_ms", "status", "retry_after", "duration_ms",
                    "count"):
            if spec.get(key) is not None:
                if not isinstance(spec[key], (int, float)) or \
                        isinstance(spec[key], bool):
                    raise bad_request(f'fault "{key}" must be a number')
                fault[key] = spec[key]
        for key in ("verbs", "resources"):
            if spec.get(key) is not None:
                if not isinstance(spec[key], list):
                    raise bad_request(f'fault "{key}" must be a list')
                fault[key] = spec[key]
        if mode == "delay" and "delay_ms" not in fault:
            raise bad_request('mode "delay" needs "delay_ms"')
        if mode == "status" and "status" not in fault:
            raise bad_request('mode "status" needs "status"')
        if "duration_ms" in fault:
            fault["expires"] = time.monotonic() + fault["duration_ms"] / 1000
        with self.cond:
            self.generation += 1
            if mode == "ok":
                if token == "*":
                    self.faults.clear()
                else:
                    self.faults.pop(token, None)
            else:
                fault["generation"] = self.generation
                self.faults[token] = fault
            self.cond.notify_all()
        return fault

    def clear(self):
        with self.cond:
            self.generation += 1
            self.faults.clear()
            self.cond.notify_all()

    def _expire(self):
        now = time.monotonic()
        for token in [t for t, f in self.faults.items()
                      if f.get("expires", now + 1) <= now]:
            del self.faults[token]

    def listing(self):
        with self.cond:
            self._expire()
            out = []
            for fault in self.faults.values():
                shown = {k: v for k, v in fault.items()
                         if k not in ("expires", "generation")}
                if "expires" in fault:
                    shown["remaining_ms"] = max(0, int(
                        (fault["expires"] - time.monotonic()) * 1000))
                out.append(shown)
            return out

    def match(self, token, admin, verb, resource):
        """The fault that applies to this request, consuming a count."""
        with self.cond:
            self._expire()
            candidates = [self.faults.get(token or "")]
            if not admin:
                candidates.append(self.faults.get("*"))
            for fault in candidates:
                if not fault:
                    continue
                if "verbs" in fault and verb not in fault["verbs"]:
                    continue
                if "resources" in fault and resource not in fault["resources"]:
                    continue
                if "count" in fault:
                    fault["count"] -= 1
                    if fault["count"] <= 0:
                        del self.faults[fault["token"]]
                        self.generation += 1
                        self.cond.notify_all()
                return dict(fault)
            return None

    def wait_cleared(self, fault):
        """Block while `fault` is in force (hang mode)."""
        with self.cond:
            while True:
                current = self.faults.get(fault["token"])
                if not current or current.get("generation") != \
                        fault.get("generation"):
                    return
                timeout = None
                if "expires" in current:
                    timeout = current["expires"] - time.monotonic()
                    if timeout <= 0:
                        self._expire()
                        return
                self.cond.wait(timeout)


class Stats:
    """Request counts per token and per verb since the last reset."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock"):
            self.since = time.time()
            self.since_mono = time.monotonic()
            self.total = 0
            self.connections = 0
            self.verbs = collections.Counter()
            self.tokens = {}

    def count(self, token, user, verb, resource, new_connection=False):
        with self.lock:
            self.total += 1
            self.connections += bool(new_connection)
            self.verbs[verb] += 1
            entry = self.tokens.setdefault(token or "", {
                "user": user, "total": 0, "connections": 0,
                "verbs": collections.Counter(),
                "resources": collections.Counter(),
                "codes": collections.Counter()})
            if user:
                entry["user"] = user
            entry["total"] += 1
            entry["connections"] += bool(new_connection)
            entry["verbs"][verb] += 1
            entry["resources"][resource or "<nonresource>"] += 1

    def code(self, token, code):
        with self.lock:
            entry = self.tokens.get(token or "")
            if entry:
                entry["codes"][str(code)] += 1

    def snapshot(self):
        with self.lock:
            return {"since": self.since,
                    "seconds": time.monotonic() - self.since_mono,
                    "total": self.total, "connections": self.connections,
                    "verbs": dict(self.verbs),
                    "tokens": {t: {"user": e["user"], "total": e["total"],
                                   "connections": e["connections"],
                                   "verbs": dict(e["verbs"]),
                                   "resources": dict(e["resources"]),
                                   "codes": dict(e["codes"])}
                               for t, e in self.tokens.items()}}


def log(message):
    stamp = datetime.datetime.now().strftime("%H:%M:%S.%f")[:-3]
    sys.stderr.write(f"{stamp} kubeemu: {message}\n")
    sys.stderr.flush()
