"""Watches: the API server's streaming GET (?watch=1) of newline-delimited
JSON events, with its resourceVersion semantics (events after the given
version; 410 Gone as an ERROR event once that version is compacted away),
bookmarks, timeoutSeconds, and switches that break open watches the ways
a real one breaks (closed, silent, expired)."""

import collections
import copy
import json
import threading
import time

from emu_meta import (bad_request, field_selector_matches,
                      parse_field_selector, parse_label_selector,
                      selector_matches)

HISTORY = 1000          # events kept for watches that resume (etcd's window)
DEFAULT_TIMEOUT = 1800  # the API server's --min-request-timeout
WATCH_ACTIONS = ("close", "silence", "gone", "resume")


class Hub:
    """The event history and the open watches; its condition is the
    store's lock, so that an event is recorded in the same critical
    section as the write that makes it."""

    def __init__(self, store):
        self.store = store
        self.cond = threading.Condition(store.lock)
        self.history = collections.deque()
        # Versions at or below this one are no longer in the history.
        self.compacted = store.rv
        self.bookmark_interval = 60.0
        self.watches = {}
        self.next_id = 0

    def record(self, res, kind, old, new):
        """A write: kind ADDED, MODIFIED or DELETED; called under the lock."""
        rv = self.store.rv
        self.history.append((rv, res.name, kind, copy.deepcopy(old),
                             copy.deepcopy(new)))
        while len(self.history) > HISTORY:
            self.compacted = self.history.popleft()[0]
        self.cond.notify_all()

    def compact(self):
        """Forget every event so far: a watch from an older version gets
        410, as after an etcd compaction."""
        with self.cond:
            self.history.clear()
            self.compacted = self.store.rv
            self.cond.notify_all()

    def control(self, body):
        """POST /_emulator/watches: {"action": ..., "user": optional},
        {"compact": true}, {"bookmark_interval": seconds}."""
        if not isinstance(body, dict):
            raise bad_request("watches: expected a JSON object")
        with self.cond:
            if "bookmark_interval" in body:
                value = body["bookmark_interval"]
                if not isinstance(value, (int, float)) or value <= 0:
                    raise bad_request("bookmark_interval must be > 0")
                self.bookmark_interval = float(value)
            if body.get("compact"):
                self.history.clear()
                self.compacted = self.store.rv
            action = body.get("action")
            if action is not None:
                if action not in WATCH_ACTIONS:
                    raise bad_request(f"watches: unknown action {action!r}; "
                                      f"one of {', '.join(WATCH_ACTIONS)}")
                for w in self.watches.values():
                    if body.get("user") in (None, w["user"]):
                        w["action"] = action
            self.cond.notify_all()
            return self.listing()

    def listing(self):
        return {"watches": [{"id": i, "user": w["user"], "path": w["path"],
                             "action": w["action"], "sent": w["sent"]}
                            for i, w in sorted(self.watches.items())],
                "compacted": str(self.compacted),
                "bookmark_interval": self.bookmark_interval}


def gone(start, compacted):
    return {"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure",
        "message": f"too old resource version: {start} ({compacted + 1})",
        "reason": "Expired", "code": 410}}


class Stream:
    """One watch request, served on the handler's thread until it ends."""

    def __init__(self, hub, req, user):
        self.hub = hub
        self.req = req
        self.user = user
        res = req.res
        self.labels = parse_label_selector(req.query.get("labelSelector"))
        self.fields = parse_field_selector(req.query.get("fieldSelector"),
                                           res.name)
        rv = req.query.get("resourceVersion", "")
        if rv and not rv.isdigit():
            raise bad_request(f'invalid resource version "{rv}"')
        self.start = rv
        timeout = req.query.get("timeoutSeconds")
        if timeout is not None and not timeout.isdigit():
            raise bad_request(f'invalid timeoutSeconds "{timeout}"')
        self.timeout = int(timeout) if timeout else DEFAULT_TIMEOUT
        self.bookmarks = req.query.get("allowWatchBookmarks") in \
            ("1", "true")

    def matches(self, obj):
        if obj is None:
            return False
        meta = obj.get("metadata", {})
        return self.req.namespace in (None, meta.get("namespace")) and \
            selector_matches(self.labels, meta.get("labels")) and \
            field_selector_matches(self.fields, obj)

    def event(self, kind, obj):
        obj = copy.deepcopy(obj)
        obj.setdefault("kind", self.req.res.kind)
        obj.setdefault("apiVersion", self.req.res.api_version)
        return {"type": kind, "object": obj}

    def translate(self, kind, old, new):
        """A write as this watch sees it through its selectors."""
        was, now = self.matches(old), self.matches(new)
        if kind == "DELETED":
            return self.event("DELETED", old) if was else None
        if now and not was:
            return self.event("ADDED", new)
        if was and not now:
            return self.event("DELETED", new)
        return self.event(kind, new) if now else None

    def initial(self):
        """Under the lock: the first events, or an ERROR, and the version
        from which history follows."""
        store, res = self.hub.store, self.req.res
        if self.start in ("", "0"):
            items = [obj for (ns, _), obj in
                     sorted(store.table(res).items()) if self.matches(obj)]
            return [self.event("ADDED", o) for o in items], store.rv
        start = int(self.start)
        if start < self.hub.compacted:
            return [gone(start, self.hub.compacted)], None
        return [], start

    def serve(self, handler):
        hub = self.hub
        with hub.cond:
            first, last = self.initial()
            wid = hub.next_id
            hub.next_id += 1
            w = {"user": self.user, "path": handler.path, "action": None,
                 "sent": 0}
            hub.watches[wid] = w
        try:
            handler.begin_stream()
            for ev in first:
                handler.write_chunk(json.dumps(ev) + "\n")
                w["sent"] += 1
            if last is None:
                handler.end_stream()
                return 200
            self.follow(handler, w, last)
            return 200
        except OSError:
            handler.close_connection = True
            return 200
        finally:
            with hub.cond:
                hub.watches.pop(wid, None)

    def follow(self, handler, w, last):
        hub = self.hub
        end = time.monotonic() + self.timeout
        next_bookmark = time.monotonic() + hub.bookmark_interval
        silent = False
        while True:
            out = []
            with hub.cond:
                while True:
                    now = time.monotonic()
                    if w["action"] in ("close", "gone") or now >= end:
                        break
                    if w["action"] == "silence":
                        silent = True
                    elif w["action"] == "resume":
                        silent, w["action"] = False, None
                    if not silent:
                        if last < hub.compacted:
                            w["action"] = "gone"
                            break
                        pending = [h for h in hub.history if h[0] > last]
                        if pending or (self.bookmarks and
                                       now >= next_bookmark):
                            break
                    wake = min(end, next_bookmark) if not silent else end
                    hub.cond.wait(max(0.0, min(wake - now, 1.0)))
                action = w["action"]
                now = time.monotonic()
                if action not in ("close", "gone") and now < end and \
                        not silent:
                    for rv, name, kind, old, new in hub.history:
                        if rv <= last or name != self.req.res.name:
                            continue
                        ev = self.translate(kind, old, new)
                        if ev is not None:
                            out.append(ev)
                    for rv, *_ in hub.history:
                        last = max(last, rv)
                    if self.bookmarks and now >= next_bookmark:
                        last = max(last, hub.store.rv)
                        out.append({"type": "BOOKMARK", "object": {
                            "kind": self.req.res.kind,
                            "apiVersion": self.req.res.api_version,
                            "metadata": {"resourceVersion": str(last)}}})
                        next_bookmark = now + hub.bookmark_interval
            if action == "close":
                handler.drop_connection(reset=False)
                return
            if action == "gone":
                handler.write_chunk(json.dumps(gone(last, hub.compacted))
                                    + "\n")
                handler.end_stream()
                return
            if time.monotonic() >= end:
                handler.end_stream()
                return
            for ev in out:
                handler.write_chunk(json.dumps(ev) + "\n")
                w["sent"] += 1

