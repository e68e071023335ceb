"""The emulator's watches against the API server's semantics: events after
a resourceVersion, 410 once it is compacted, bookmarks, timeoutSeconds,
selectors, RBAC by resourceNames with a metadata.name field selector, and
the switches that break a watch."""

import json
import os
import sys
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kubeemu import Emulator, wait_for  # noqa: E402

NS = "pg-ns"
ADMIN_WATCH = "/apis/coordination.k8s.io/v1/namespaces/pg-ns/leases?watch=1"
MICRO = "2026-11-25T20:53:52.331945Z"


def lease(name="pg-leader", holder="pg-0", rv=None):
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 10,
                     "renewTime": MICRO, "leaseTransitions": 0}}
    if rv is not None:
        body["metadata"]["resourceVersion"] = rv
    return body


@pytest.fixture
def emu(tmp_path):
    with Emulator(str(tmp_path), tls=True) as e:
        yield e


def create(emu, name="pg-leader"):
    status, body = emu.post(emu.lease_path(NS), lease(name))
    assert status == 201, body
    return body


def renew(emu, name, rv, holder="pg-0"):
    status, body = emu.put(emu.lease_path(NS, name), lease(name, holder, rv))
    assert status == 200, body
    return body


def read_event(resp):
    line = resp.readline()
    assert line, "the stream ended"
    return json.loads(line)


def test_watch_streams_events_after_the_given_version(emu):
    first = create(emu)
    rv = first["metadata"]["resourceVersion"]
    conn, resp = emu.watch(ADMIN_WATCH + "&fieldSelector=metadata.name%3D"
                           f"pg-leader&resourceVersion={rv}")
    try:
        assert resp.status == 200
        assert resp.getheader("Transfer-Encoding") == "chunked"
        create(emu, "other")    # not selected
        second = renew(emu, "pg-leader", rv, holder="")
        ev = read_event(resp)
        assert ev["type"] == "MODIFIED"
        assert ev["object"]["kind"] == "Lease"
        assert ev["object"]["spec"]["holderIdentity"] == ""
        assert ev["object"]["metadata"]["resourceVersion"] == \
            second["metadata"]["resourceVersion"]
    finally:
        conn.close()


def test_watch_without_version_starts_with_the_current_objects(emu):
    create(emu)
    conn, resp = emu.watch(ADMIN_WATCH)
    try:
        ev = read_event(resp)
        assert ev["type"] == "ADDED"
        assert ev["object"]["metadata"]["name"] == "pg-leader"
    finally:
        conn.close()


def test_watch_from_a_compacted_version_gets_410_as_an_error_event(emu):
    first = create(emu)
    renew(emu, "pg-leader", first["metadata"]["resourceVersion"], "pg-1")
    emu.watches(compact=True)
    conn, resp = emu.watch(ADMIN_WATCH + "&resourceVersion=" +
                           first["metadata"]["resourceVersion"])
    try:
        assert resp.status == 200
        ev = read_event(resp)
        assert ev["type"] == "ERROR"
        assert ev["object"]["code"] == 410
        assert ev["object"]["reason"] == "Expired"
        assert resp.readline() == b""
    finally:
        conn.close()


def test_timeout_seconds_ends_the_stream_cleanly(emu):
    create(emu)
    started = time.monotonic()
    conn, resp = emu.watch(ADMIN_WATCH + "&resourceVersion=1"
                           "&timeoutSeconds=1")
    try:
        assert resp.read() == b""
        assert 0.9 < time.monotonic() - started < 5
    finally:
        conn.close()


def test_bookmarks_carry_the_current_version(emu):
    create(emu)
    emu.watches(bookmark_interval=0.2)
    other = create(emu, "other")
    conn, resp = emu.watch(ADMIN_WATCH + "&fieldSelector=metadata.name%3D"
                           "pg-leader&resourceVersion=1"
                           "&allowWatchBookmarks=true")
    try:
        ev = read_event(resp)
        assert ev["type"] == "BOOKMARK"
        assert ev["object"]["metadata"]["resourceVersion"] == \
            other["metadata"]["resourceVersion"]
    finally:
        conn.close()


def test_silenced_watch_sends_nothing_until_resumed(emu):
    first = create(emu)
    conn, resp = emu.watch(ADMIN_WATCH + "&resourceVersion=" +
                           first["metadata"]["resourceVersion"], timeout=1)
    try:
        wait_for(lambda: len(emu.watches()["watches"]) == 1, 5, "the watch")
        emu.watches(action="silence")
        renew(emu, "pg-leader", first["metadata"]["resourceVersion"], "pg-1")
        with pytest.raises(TimeoutError):
            resp.readline()
    finally:
        conn.close()


def test_closed_watch_ends_the_connection(emu):
    first = create(emu)
    conn, resp = emu.watch(ADMIN_WATCH + "&resourceVersion=" +
                           first["metadata"]["resourceVersion"])
    try:
        wait_for(lambda: len(emu.watches()["watches"]) == 1, 5, "the watch")
        emu.watches(action="close")
        with pytest.raises(Exception):
            while True:
                if not resp.readline():
                    raise EOFError
    finally:
        conn.close()
    wait_for(lambda: not emu.watches()["watches"], 5, "the watch to go")


def test_gone_action_sends_410_and_ends(emu):
    first = create(emu)
    conn, resp = emu.watch(ADMIN_WATCH + "&resourceVersion=" +
                           first["metadata"]["resourceVersion"])
    try:
        wait_for(lambda: len(emu.watches()["watches"]) == 1, 5, "the watch")
        emu.watches(action="gone")
        ev = read_event(resp)
        assert ev["type"] == "ERROR" and ev["object"]["code"] == 410
    finally:
        conn.close()


def test_resource_names_grant_a_watch_and_list_only_by_field_selector(emu):
    create(emu)
    emu.add_token("tok-w", "pg-1", verbs=["*"], rules=[{
        "apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
        "resourceNames": ["pg-leader"], "verbs": ["list", "watch"]}])
    path = emu.lease_path(NS)
    status, _ = emu.get(path, token="tok-w")
    assert status == 403
    status, body = emu.get(path + "?fieldSelector=metadata.name%3Dpg-leader",
                           token="tok-w")
    assert status == 200 and len(body["items"]) == 1
    status, _ = emu.get(path + "?fieldSelector=metadata.name%3Dother",
                        token="tok-w")
    assert status == 403
    conn, resp = emu.watch(path + "?watch=1&fieldSelector=metadata.name%3D"
                           "pg-leader", token="tok-w")
    try:
        assert resp.status == 200
        assert read_event(resp)["type"] == "ADDED"
    finally:
        conn.close()
    conn, resp = emu.watch(path + "?watch=1", token="tok-w")
    try:
        assert resp.status == 403
    finally:
        conn.close()
