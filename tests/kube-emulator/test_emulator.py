"""The emulator answers as the Kubernetes API server does, for what pglease
uses; run with /usr/bin/python3 -m pytest tests/kube-emulator -q."""

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import emu_api  # noqa: E402
import emu_meta  # noqa: E402
from kubeemu import Emulator, EmulatorError, wait_for  # noqa: E402

NS = "pg-ns"
PG0 = "token-pg-0"
PG1 = "token-pg-1"
READER = "token-reader"
MICRO = "2025-01-02T03:04:05.123456Z"


def lease_body(name="pg-leader", holder="pg-0", rv=None, **spec):
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": name},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 10,
                     "acquireTime": MICRO, "renewTime": MICRO,
                     "leaseTransitions": 0, **spec}}
    if rv is not None:
        body["metadata"]["resourceVersion"] = rv
    return body


def setup_tokens(emu):
    emu.add_token(PG0, "pg-0", verbs=["get", "list", "create", "update",
                                      "patch"])
    emu.add_token(PG1, "pg-1")
    emu.add_token(READER, "reader", verbs=["get", "list"])


@pytest.fixture
def emu(tmp_path):
    with Emulator(str(tmp_path), tls=True) as e:
        setup_tokens(e)
        yield e


@pytest.fixture
def plain(tmp_path):
    with Emulator(str(tmp_path), tls=False) as e:
        setup_tokens(e)
        yield e


def create_lease(emu, **kw):
    status, body = emu.post(emu.lease_path(NS), lease_body(**kw), token=PG0)
    assert status == 201, body
    return body


def assert_status(body, code, reason):
    assert body["kind"] == "Status"
    assert body["apiVersion"] == "v1"
    assert body["status"] == "Failure"
    assert body["code"] == code
    assert body["reason"] == reason


def in_thread(fn):
    """Run fn in a thread; returns (thread, outcome) where outcome gets
    "result" or "error" once fn is done."""
    outcome = {}

    def run():
        try:
            outcome["result"] = fn()
        except Exception as e:   # what the client saw is the result
            outcome["error"] = e
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


# --- leases --------------------------------------------------------------------

def test_create_sets_uid_creation_timestamp_and_resource_version(emu):
    lease = create_lease(emu)
    meta = lease["metadata"]
    assert lease["kind"] == "Lease"
    assert lease["apiVersion"] == "coordination.k8s.io/v1"
    assert meta["name"] == "pg-leader" and meta["namespace"] == NS
    assert len(meta["uid"]) == 36
    assert meta["resourceVersion"].isdigit()
    assert meta["creationTimestamp"].endswith("Z")
    assert lease["spec"]["renewTime"] == MICRO
    status, got = emu.get(emu.lease_path(NS, "pg-leader"), token=PG0)
    assert status == 200 and got == lease


def test_every_write_bumps_the_global_resource_version(emu):
    versions = [int(create_lease(emu)["metadata"]["resourceVersion"])]
    pod = emu.create_pod(NS, "pg-0", {"app": "pg"})
    versions.append(int(pod["metadata"]["resourceVersion"]))
    status, lease = emu.put(emu.lease_path(NS, "pg-leader"), lease_body(
        rv=str(versions[0]), renewTime="2025-01-02T03:04:06.000000Z"),
        token=PG0)
    assert status == 200, lease
    versions.append(int(lease["metadata"]["resourceVersion"]))
    status, pod = emu.patch(emu.pod_path(NS, "pg-0"),
                            {"metadata": {"labels": {"role": "primary"}}},
                            token=PG0)
    assert status == 200, pod
    versions.append(int(pod["metadata"]["resourceVersion"]))
    assert versions == sorted(set(versions)), versions
    status, listing = emu.get(emu.lease_path(NS), token=PG0)
    assert int(listing["metadata"]["resourceVersion"]) >= versions[-1]
    status, _ = emu.delete(emu.lease_path(NS, "pg-leader"))
    assert status == 200
    status, listing = emu.get(emu.lease_path(NS), token=PG0)
    assert int(listing["metadata"]["resourceVersion"]) > versions[-1]
    assert listing["items"] == []


def test_put_with_stale_resource_version_is_409_conflict(emu):
    lease = create_lease(emu)
    rv = lease["metadata"]["resourceVersion"]
    status, won = emu.put(emu.lease_path(NS, "pg-leader"),
                          lease_body(holder="pg-1", rv=rv), token=PG1)
    assert status == 200, won
    status, lost = emu.put(emu.lease_path(NS, "pg-leader"),
                           lease_body(holder="pg-0", rv=rv), token=PG0)
    assert status == 409
    assert_status(lost, 409, "Conflict")
    assert lost["message"] == (
        'Operation cannot be fulfilled on leases.coordination.k8s.io '
        '"pg-leader": the object has been modified; please apply your '
        'changes to the latest version and try again')
    assert lost["details"] == {"name": "pg-leader",
                               "group": "coordination.k8s.io",
                               "kind": "leases"}
    assert emu.get_lease(NS, "pg-leader")["spec"]["holderIdentity"] == "pg-1"


def test_put_without_resource_version_is_422_invalid(emu):
    create_lease(emu)
    status, body = emu.put(emu.lease_path(NS, "pg-leader"), lease_body(),
                           token=PG0)
    assert status == 422
    assert_status(body, 422, "Invalid")
    assert "metadata.resourceVersion: Invalid value: 0x0: must be " \
        "specified for an update" in body["message"]
    assert body["details"]["causes"][0]["field"] == "metadata.resourceVersion"


def test_post_of_existing_name_is_409_already_exists(emu):
    create_lease(emu)
    status, body = emu.post(emu.lease_path(NS), lease_body(), token=PG1)
    assert status == 409
    assert_status(body, 409, "AlreadyExists")
    assert body["message"] == \
        'leases.coordination.k8s.io "pg-leader" already exists'


def test_get_of_missing_object_is_404_not_found(emu):
    status, body = emu.get(emu.lease_path(NS, "nope"), token=PG0)
    assert status == 404
    assert_status(body, 404, "NotFound")
    assert body["message"] == 'leases.coordination.k8s.io "nope" not found'
    assert body["details"] == {"name": "nope", "group": "coordination.k8s.io",
                               "kind": "leases"}
    status, body = emu.get(emu.pod_path(NS, "nope"), token=PG0)
    assert status == 404 and body["message"] == 'pods "nope" not found'
    assert body["details"] == {"name": "nope", "kind": "pods"}


def test_put_of_missing_pod_is_404_but_a_missing_lease_is_created(emu):
    # The API server's lease strategy allows create-on-update; pods do not.
    pod = {"metadata": {"name": "ghost", "resourceVersion": "5"},
           "spec": {"containers": [{"name": "c", "image": "i"}]}}
    status, body = emu.put(emu.pod_path(NS, "ghost"), pod, token=PG0)
    assert status == 404, body
    assert_status(body, 404, "NotFound")
    status, body = emu.put(emu.lease_path(NS, "pg-leader"),
                           lease_body(rv="5"), token=PG0)
    assert status == 201, body
    assert body["metadata"]["resourceVersion"] != "5"


def test_pods_take_updates_without_resource_version_leases_do_not(emu):
    # AllowUnconditionalUpdate: true for pods, false for leases.
    pod = emu.create_pod(NS, "pg-0", {})
    del pod["metadata"]["resourceVersion"]
    pod["metadata"]["labels"] = {"role": "replica"}
    status, body = emu.put(emu.pod_path(NS, "pg-0"), pod, token=PG0)
    assert status == 200, body
    assert body["metadata"]["labels"] == {"role": "replica"}


def test_put_must_name_the_object_of_the_url(emu):
    lease = create_lease(emu)
    status, body = emu.put(emu.lease_path(NS, "pg-leader"), lease_body(
        name="other", rv=lease["metadata"]["resourceVersion"]), token=PG0)
    assert status == 400
    assert_status(body, 400, "BadRequest")


def test_lease_spec_types_are_checked_like_the_go_decoder(emu):
    cases = [dict(renewTime="2025-01-02T03:04:05Z"),
             dict(renewTime="2025-01-02T03:04:05.123Z"),
             dict(acquireTime="2025-01-02 03:04:05.123456Z"),
             dict(renewTime=12),
             dict(leaseDurationSeconds="10"),
             dict(leaseDurationSeconds=10.5),
             dict(holderIdentity=7)]
    for spec in cases:
        status, body = emu.post(emu.lease_path(NS), lease_body(**spec),
                                token=PG0)
        assert status == 400, (spec, body)
        assert_status(body, 400, "BadRequest")
        assert "cannot be handled as a Lease" in body["message"]
    status, body = emu.post(emu.lease_path(NS), lease_body(
        leaseDurationSeconds=0), token=PG0)
    assert status == 422
    assert "spec.leaseDurationSeconds: Invalid value: 0: must be greater " \
        "than 0" in body["message"]
    offset = "2025-01-02T03:04:05.000001+02:00"
    lease = create_lease(emu, renewTime=offset)
    assert lease["spec"]["renewTime"] == offset


def test_unknown_lease_spec_fields_are_dropped_with_a_warning(emu):
    status, body, headers = emu.request(
        "POST", emu.lease_path(NS), lease_body(futureField=1), token=PG0)
    assert status == 201
    assert "futureField" not in body["spec"]
    assert 'unknown field \\"spec.futureField\\"' in headers["Warning"]
    status, body, _ = emu.request(
        "POST", emu.lease_path(NS) + "?fieldValidation=Strict",
        lease_body(name="strict", futureField=1), token=PG0)
    assert status == 400, body
    assert body["message"] == \
        'strict decoding error: unknown field "spec.futureField"'


def test_annotations_and_labels_are_stored_and_returned(emu):
    body = lease_body()
    body["metadata"]["annotations"] = {"pglease.io/optime": '{"lsn":"0/3"}'}
    body["metadata"]["labels"] = {"app": "pg"}
    status, lease = emu.post(emu.lease_path(NS), body, token=PG0)
    assert status == 201
    got = emu.get_lease(NS, "pg-leader")
    assert got["metadata"]["annotations"] == body["metadata"]["annotations"]
    assert got["metadata"]["labels"] == {"app": "pg"}


def test_update_that_changes_nothing_keeps_the_resource_version(emu):
    lease = create_lease(emu)
    rv = lease["metadata"]["resourceVersion"]
    status, same = emu.put(emu.lease_path(NS, "pg-leader"),
                           lease_body(rv=rv), token=PG0)
    assert status == 200
    assert same["metadata"]["resourceVersion"] == rv


def test_release_with_empty_holder_is_accepted(emu):
    lease = create_lease(emu)
    status, body = emu.put(emu.lease_path(NS, "pg-leader"), lease_body(
        holder="", rv=lease["metadata"]["resourceVersion"],
        leaseDurationSeconds=1), token=PG0)
    assert status == 200, body
    assert body["spec"]["holderIdentity"] == ""


def test_delete_with_stale_precondition_is_409(emu):
    lease = create_lease(emu)
    status, body = emu.delete(emu.lease_path(NS, "pg-leader"), body={
        "preconditions": {"resourceVersion": "1" + lease["metadata"][
            "resourceVersion"]}})
    assert status == 409
    status, body = emu.delete(emu.lease_path(NS, "pg-leader"))
    assert status == 200 and body["status"] == "Success"
    assert emu.get_lease(NS, "pg-leader") is None


# --- auth ------------------------------------------------------------------------

def test_missing_or_unknown_token_is_401(emu):
    for token in ("", "no-such-token"):
        status, body = emu.get(emu.lease_path(NS), token=token)
        assert status == 401
        assert_status(body, 401, "Unauthorized")
        assert body["message"] == "Unauthorized"


def test_verb_not_allowed_is_403_forbidden(emu):
    create_lease(emu)
    status, body = emu.delete(emu.lease_path(NS, "pg-leader"), token=PG0)
    assert status == 403
    assert_status(body, 403, "Forbidden")
    assert body["message"] == (
        'leases.coordination.k8s.io "pg-leader" is forbidden: User "pg-0" '
        'cannot delete resource "leases" in API group "coordination.k8s.io" '
        f'in the namespace "{NS}"')
    status, body = emu.put(emu.lease_path(NS, "pg-leader"), lease_body(
        rv="1"), token=READER)
    assert status == 403
    assert emu.get(emu.lease_path(NS), token=READER)[0] == 200


def test_rbac_rules_with_resource_names(emu):
    """A token with a Role's rules: resourceNames restrict the verbs that
    name an object; create and list cannot be restricted by name."""
    emu.add_token("token-rules", "rules", rules=[
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
         "resourceNames": ["pg-leader"], "verbs": ["get", "update"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
        {"apiGroups": [""], "resources": ["pods"],
         "resourceNames": ["pg-0"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["events"],
         "resourceNames": ["never"], "verbs": ["create"]},
    ])
    create_lease(emu)
    emu.create_pod(NS, "pg-0")
    emu.create_pod(NS, "other")
    token = "token-rules"
    assert emu.get(emu.lease_path(NS, "pg-leader"), token=token)[0] == 200
    assert emu.get(emu.lease_path(NS, "other-leader"), token=token)[0] == 403
    assert emu.get(emu.lease_path(NS), token=token)[0] == 403
    assert emu.get(emu.pod_path(NS), token=token)[0] == 200
    assert emu.get(emu.pod_path(NS, "pg-0"), token=token)[0] == 403
    patch = {"metadata": {"labels": {"pglease.io/role": "primary"}}}
    assert emu.patch(emu.pod_path(NS, "pg-0"), patch, token=token)[0] == 200
    status, body = emu.patch(emu.pod_path(NS, "other"), patch, token=token)
    assert status == 403
    assert body["message"] == (
        'pods "other" is forbidden: User "rules" cannot patch resource '
        f'"pods" in API group "" in the namespace "{NS}"')
    event = {"apiVersion": "v1", "kind": "Event",
             "metadata": {"name": "never"},
             "involvedObject": {"kind": "Pod", "name": "pg-0"}}
    assert emu.post(f"/api/v1/namespaces/{NS}/events", event,
                    token=token)[0] == 403


def test_tokens_file_is_reread_when_it_changes(emu):
    assert emu.get(emu.lease_path(NS), token="late-token")[0] == 401
    emu.add_token("late-token", "late")
    assert emu.get(emu.lease_path(NS), token="late-token")[0] == 200
    emu.remove_token("late-token")
    assert emu.get(emu.lease_path(NS), token="late-token")[0] == 401


def test_control_endpoints_need_an_admin_token(emu):
    for token, code in ((PG1, 403), ("", 401)):
        status, body, _ = emu.request("GET", "/_emulator/stats", token=token)
        assert status == code, body
        status, body, _ = emu.request("POST", "/_emulator/faults", {
            "token": "*", "mode": "refuse"}, token=token)
        assert status == code, body
    assert emu.faults() == []


# --- pods ------------------------------------------------------------------------

def pod_names(emu, selector):
    path = emu.pod_path(NS)
    if selector is not None:
        path += "?labelSelector=" + selector.replace(" ", "%20")
    status, body = emu.get(path, token=PG0)
    assert status == 200, body
    assert body["kind"] == "PodList"
    return sorted(item["metadata"]["name"] for item in body["items"])


def test_label_selectors(emu):
    emu.create_pod(NS, "pg-0", {"cluster": "pg", "role": "primary"})
    emu.create_pod(NS, "pg-1", {"cluster": "pg", "role": "replica"})
    emu.create_pod(NS, "pg-2", {"cluster": "pg"})
    emu.create_pod(NS, "other", {"cluster": "other", "role": "primary"})
    emu.create_pod("elsewhere", "pg-9", {"cluster": "pg"})
    assert pod_names(emu, None) == ["other", "pg-0", "pg-1", "pg-2"]
    assert pod_names(emu, "cluster=pg") == ["pg-0", "pg-1", "pg-2"]
    assert pod_names(emu, "cluster==pg") == ["pg-0", "pg-1", "pg-2"]
    assert pod_names(emu, "cluster=pg,role!=primary") == ["pg-1", "pg-2"]
    assert pod_names(emu, "role") == ["other", "pg-0", "pg-1"]
    assert pod_names(emu, "!role") == ["pg-2"]
    assert pod_names(emu, "cluster=pg,role=primary") == ["pg-0"]
    assert pod_names(emu, "role in (primary,replica),cluster=pg") == \
        ["pg-0", "pg-1"]
    assert pod_names(emu, "role notin (primary)") == ["pg-1", "pg-2"]
    assert pod_names(emu, "cluster=nothing") == []
    status, body = emu.get(emu.pod_path(NS) + "?labelSelector=a%3D%3D%3D",
                           token=PG0)
    assert status == 400, body
    status, body = emu.get("/api/v1/pods?labelSelector=cluster%3Dpg",
                           token=PG0)
    assert status == 200
    assert sorted(i["metadata"]["name"] for i in body["items"]) == \
        ["pg-0", "pg-1", "pg-2", "pg-9"]


def test_list_items_carry_no_kind_like_the_api_server(emu):
    emu.create_pod(NS, "pg-0", {})
    _, body = emu.get(emu.pod_path(NS), token=PG0)
    assert body["apiVersion"] == "v1"
    assert "kind" not in body["items"][0]


def test_merge_patch_sets_and_deletes_keys(emu):
    emu.create_pod(NS, "pg-0", {"cluster": "pg", "stale": "x"},
                   {"keep": "1", "drop": "2"})
    before = emu.get(emu.pod_path(NS, "pg-0"))[1]
    status, pod = emu.patch(emu.pod_path(NS, "pg-0"), {"metadata": {
        "labels": {"role": "primary", "stale": None},
        "annotations": {"pglease.io/status": '{"role":"primary"}',
                        "drop": None}}}, token=PG0)
    assert status == 200, pod
    assert pod["metadata"]["labels"] == {"cluster": "pg", "role": "primary"}
    assert pod["metadata"]["annotations"] == {
        "keep": "1", "pglease.io/status": '{"role":"primary"}'}
    assert int(pod["metadata"]["resourceVersion"]) > \
        int(before["metadata"]["resourceVersion"])
    assert pod["metadata"]["uid"] == before["metadata"]["uid"]
    assert pod["status"] == before["status"]


def test_merge_patch_cannot_change_pod_status_through_the_main_resource(emu):
    emu.create_pod(NS, "pg-0", {})
    status, pod = emu.patch(emu.pod_path(NS, "pg-0"),
                            {"status": {"phase": "Failed"}}, token=PG0)
    assert status == 200
    assert pod["status"]["phase"] == "Running"


def test_merge_patch_with_stale_resource_version_is_409(emu):
    pod = emu.create_pod(NS, "pg-0", {})
    emu.patch(emu.pod_path(NS, "pg-0"), {"metadata": {"labels": {"a": "b"}}})
    status, body = emu.patch(emu.pod_path(NS, "pg-0"), {"metadata": {
        "resourceVersion": pod["metadata"]["resourceVersion"],
        "labels": {"a": "c"}}}, token=PG0)
    assert status == 409
    assert_status(body, 409, "Conflict")


def test_other_patch_types_are_415(emu):
    emu.create_pod(NS, "pg-0", {})
    for ctype in ("application/json-patch+json",
                  "application/strategic-merge-patch+json",
                  "application/json"):
        status, body = emu.patch(emu.pod_path(NS, "pg-0"),
                                 {"metadata": {}}, token=PG0,
                                 content_type=ctype)
        assert status == 415, ctype
        assert_status(body, 415, "UnsupportedMediaType")


def test_merge_patch_follows_rfc_7386():
    # The examples of RFC 7386, appendix A.
    cases = [({"a": "b"}, {"a": "c"}, {"a": "c"}),
             ({"a": "b"}, {"b": "c"}, {"a": "b", "b": "c"}),
             ({"a": "b"}, {"a": None}, {}),
             ({"a": "b", "b": "c"}, {"a": None}, {"b": "c"}),
             ({"a": ["b"]}, {"a": "c"}, {"a": "c"}),
             ({"a": "c"}, {"a": ["b"]}, {"a": ["b"]}),
             ({"a": {"b": "c"}}, {"a": {"b": "d", "c": None}},
              {"a": {"b": "d"}}),
             ({"a": [{"b": "c"}]}, {"a": [1]}, {"a": [1]}),
             (["a", "b"], ["c", "d"], ["c", "d"]),
             ({"a": "b"}, ["c"], ["c"]),
             ({"a": "foo"}, None, None),
             ({"a": "foo"}, "bar", "bar"),
             ({"e": None}, {"a": 1}, {"e": None, "a": 1}),
             ([1, 2], {"a": "b", "c": None}, {"a": "b"}),
             ({}, {"a": {"bb": {"ccc": None}}}, {"a": {"bb": {}}})]
    for target, patch, want in cases:
        assert emu_meta.merge_patch(target, patch) == want, (target, patch)


# --- events ----------------------------------------------------------------------

def test_events_are_kept_and_bounded(plain):
    event = {"metadata": {"generateName": "pg-0."},
             "involvedObject": {"kind": "Pod", "name": "pg-0",
                                "namespace": NS},
             "reason": "Promote", "message": "promoted", "type": "Normal"}
    status, body = plain.post(f"/api/v1/namespaces/{NS}/events", event,
                              token=PG0)
    assert status == 201, body
    assert body["metadata"]["name"].startswith("pg-0.")
    status, body = plain.post(f"/apis/events.k8s.io/v1/namespaces/{NS}/"
                              "events", {"metadata": {"name": "e1"},
                                         "reason": "Promote",
                                         "note": "promoted"}, token=PG0)
    assert status == 201, body
    conn = plain.connection()
    try:
        for i in range(emu_api.EVENTS_KEPT + 5):
            data = json.dumps(dict(event, metadata={"name": f"e{i}"}))
            conn.request("POST", f"/api/v1/namespaces/{NS}/events", data, {
                "Authorization": f"Bearer {PG0}",
                "Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 201
    finally:
        conn.close()
    _, body = plain.get(f"/api/v1/namespaces/{NS}/events", token=PG0)
    names = {item["metadata"]["name"] for item in body["items"]}
    assert len(names) == emu_api.EVENTS_KEPT
    assert "e0" not in names and f"e{emu_api.EVENTS_KEPT + 4}" in names


def test_field_selectors_as_kubectl_describe_uses_them(plain):
    for name, involved in (("e1", "pg-0"), ("e2", "pg-1")):
        status, body = plain.post(f"/api/v1/namespaces/{NS}/events", {
            "metadata": {"name": name}, "reason": "Started",
            "involvedObject": {"kind": "Pod", "name": involved,
                               "namespace": NS}}, token=PG0)
        assert status == 201, body
    status, body = plain.get(
        f"/api/v1/namespaces/{NS}/events?fieldSelector=involvedObject.name"
        f"%3Dpg-1,involvedObject.kind%3DPod", token=PG0)
    assert status == 200, body
    assert [e["metadata"]["name"] for e in body["items"]] == ["e2"]
    status, body = plain.get(f"/api/v1/namespaces/{NS}/events?"
                             "fieldSelector=metadata.name!%3De1", token=PG0)
    assert [e["metadata"]["name"] for e in body["items"]] == ["e2"]
    status, body = plain.get(f"{plain.lease_path(NS)}?fieldSelector="
                             "spec.holderIdentity%3Dx", token=PG0)
    assert status == 400, body


def test_empty_label_and_annotation_maps_are_omitted(emu):
    emu.create_pod(NS, "pg-0", {}, {"only": "one"})
    status, pod = emu.patch(emu.pod_path(NS, "pg-0"), {"metadata": {
        "annotations": {"only": None}}}, token=PG0)
    assert status == 200
    assert "annotations" not in pod["metadata"]
    assert "labels" not in pod["metadata"]


# --- HTTP ------------------------------------------------------------------------

def test_connections_are_kept_alive_with_content_length(emu):
    create_lease(emu)
    emu.reset_stats()
    conn = emu.connection()
    try:
        for _ in range(5):
            conn.request("GET", emu.lease_path(NS, "pg-leader"),
                         headers={"Authorization": f"Bearer {PG0}"})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200
            assert int(resp.getheader("Content-Length")) == len(body)
            assert resp.getheader("Content-Type") == "application/json"
            assert not resp.will_close
        conn.request("GET", emu.lease_path(NS, "missing"),
                     headers={"Authorization": f"Bearer {PG0}"})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 404 and not resp.will_close
    finally:
        conn.close()
    stats = emu.stats()["tokens"][PG0]
    assert stats["total"] == 6 and stats["connections"] == 1


def test_chunked_request_bodies_are_read(plain):
    data = json.dumps(lease_body()).encode()
    sock = socket.create_connection((plain.host, plain.port), timeout=10)
    try:
        sock.sendall(
            f"POST {plain.lease_path(NS)} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {PG0}\r\nContent-Type: application/json"
            "\r\nTransfer-Encoding: chunked\r\n\r\n".encode() +
            b"%x\r\n" % len(data) + data + b"\r\n0\r\n\r\n")
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            assert chunk
            reply += chunk
    finally:
        sock.close()
    assert reply.startswith(b"HTTP/1.1 201")


def test_plain_http_without_certificates(plain):
    assert plain.url.startswith("http://")
    create_lease(plain)
    assert plain.get_lease(NS, "pg-leader")["spec"]["holderIdentity"] == \
        "pg-0"


def test_tls_certificate_is_verified_for_127_0_0_1_and_localhost(emu):
    for host in ("127.0.0.1", "localhost"):
        conn = http.client.HTTPSConnection(host, emu.port, timeout=10,
                                           context=emu.ssl_context())
        try:
            conn.request("GET", "/version")
            resp = conn.getresponse()
            assert resp.status == 200
            assert json.loads(resp.read())["major"] == "1"
        finally:
            conn.close()
    conn = http.client.HTTPSConnection("127.0.0.1", emu.port, timeout=10,
                                       context=ssl.create_default_context())
    with pytest.raises(ssl.SSLError):
        conn.request("GET", "/version")
    conn.close()


def test_discovery_documents(emu):
    status, api = emu.get("/api", token=PG0)
    assert status == 200 and api["kind"] == "APIVersions"
    assert api["versions"] == ["v1"]
    _, groups = emu.get("/apis", token=PG0)
    assert groups["kind"] == "APIGroupList"
    assert "coordination.k8s.io" in [g["name"] for g in groups["groups"]]
    _, core = emu.get("/api/v1", token=PG0)
    pods = [r for r in core["resources"] if r["name"] == "pods"][0]
    assert pods["kind"] == "Pod" and pods["namespaced"]
    assert pods["shortNames"] == ["po"] and "patch" in pods["verbs"]
    _, coord = emu.get("/apis/coordination.k8s.io/v1", token=PG0)
    assert coord["groupVersion"] == "coordination.k8s.io/v1"
    assert [r["name"] for r in coord["resources"]] == ["leases"]
    assert emu.get("/openapi/v2", token=PG0)[0] == 404
    assert emu.get("/version", token="")[0] == 200
    assert emu.get("/api", token="")[0] == 401


def test_table_responses_for_kubectl(emu):
    create_lease(emu)
    emu.create_pod(NS, "pg-0", {})
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    status, table, _ = emu.request("GET", emu.lease_path(NS), token=PG0,
                                   headers={"Accept": accept})
    assert status == 200 and table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == \
        ["Name", "Holder", "Age"]
    assert table["rows"][0]["cells"][:2] == ["pg-leader", "pg-0"]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    _, table, _ = emu.request("GET", emu.pod_path(NS, "pg-0"), token=PG0,
                              headers={"Accept": accept})
    assert [c["name"] for c in table["columnDefinitions"]][:4] == \
        ["Name", "Ready", "Status", "Restarts"]
    assert table["rows"][0]["cells"][:3] == ["pg-0", "1/1", "Running"]


# --- faults ----------------------------------------------------------------------

def test_refuse_resets_the_connection_of_that_token_only(plain):
    create_lease(plain)
    plain.fault(PG0, "refuse")
    with pytest.raises(ConnectionResetError):
        plain.get(plain.lease_path(NS, "pg-leader"), token=PG0)
    assert plain.get(plain.lease_path(NS, "pg-leader"), token=PG1)[0] == 200
    plain.fault(PG0, "ok")
    assert plain.get(plain.lease_path(NS, "pg-leader"), token=PG0)[0] == 200


def test_refuse_over_tls_gives_no_answer(emu):
    emu.fault("*", "refuse")
    with pytest.raises((ConnectionError, http.client.HTTPException,
                        ssl.SSLError)):
        emu.get(emu.lease_path(NS), token=PG0)
    # "*" spares admin tokens so that tests can still look.
    assert emu.get(emu.lease_path(NS))[0] == 200


def test_delay_answers_late(emu):
    emu.fault(PG0, "delay", delay_ms=400)
    started = time.monotonic()
    status, _ = emu.get(emu.lease_path(NS), token=PG0)
    assert status == 200
    assert time.monotonic() - started >= 0.4
    started = time.monotonic()
    assert emu.get(emu.lease_path(NS), token=PG1)[0] == 200
    assert time.monotonic() - started < 0.4


def test_status_fault_with_retry_after(emu):
    emu.fault(PG0, "status", status=429, retry_after=3)
    status, body, headers = emu.request("GET", emu.lease_path(NS), token=PG0)
    assert status == 429
    assert_status(body, 429, "TooManyRequests")
    assert headers["Retry-After"] == "3"
    assert body["details"]["retryAfterSeconds"] == 3
    for code, reason in ((500, "InternalError"), (503, "ServiceUnavailable"),
                         (504, "Timeout")):
        emu.fault(PG0, "status", status=code)
        status, body = emu.get(emu.lease_path(NS), token=PG0)
        assert status == code
        assert_status(body, code, reason)
    emu.clear_faults()
    assert emu.get(emu.lease_path(NS), token=PG0)[0] == 200


def test_hang_holds_the_request_until_cleared_then_closes(emu):
    emu.fault(PG0, "hang")
    thread, outcome = in_thread(lambda: emu.request(
        "GET", emu.lease_path(NS), token=PG0, timeout=60))
    wait_for(lambda: emu.stats()["tokens"].get(PG0, {}).get("total"), 10,
             "the hung request to arrive")
    assert emu.get(emu.lease_path(NS), token=PG1)[0] == 200
    assert thread.is_alive() and not outcome
    emu.clear_faults()
    thread.join(10)
    assert not thread.is_alive()
    assert "result" not in outcome
    assert isinstance(outcome["error"], (ConnectionError,
                                         http.client.HTTPException,
                                         ssl.SSLError))


def test_lose_applies_the_write_and_drops_the_answer(emu):
    """A renewal the server applied whose answer never came back: the
    client sees a reset, the Lease has its write (and a new version), so
    its next write on the old version is a 409."""
    lease = create_lease(emu)
    rv = lease["metadata"]["resourceVersion"]
    emu.fault(PG0, "lose", count=1, verbs=["update"], resources=["leases"])
    with pytest.raises((ConnectionError, http.client.HTTPException,
                        ssl.SSLError)):
        emu.put(emu.lease_path(NS, "pg-leader"),
                lease_body(holder="pg-1", rv=rv), token=PG0)
    after = emu.get_lease(NS, "pg-leader")
    assert after["spec"]["holderIdentity"] == "pg-1"
    assert after["metadata"]["resourceVersion"] != rv
    assert emu.faults() == []
    status, _ = emu.put(emu.lease_path(NS, "pg-leader"),
                        lease_body(holder="pg-0", rv=rv), token=PG0)
    assert status == 409


def test_faults_clear_themselves_after_duration_or_count(emu):
    emu.fault(PG0, "status", status=503, duration_ms=300)
    assert emu.get(emu.lease_path(NS), token=PG0)[0] == 503
    wait_for(lambda: emu.get(emu.lease_path(NS), token=PG0)[0] == 200, 10,
             "the fault to expire")
    assert emu.faults() == []
    emu.fault(PG0, "status", status=500, count=2, verbs=["list"])
    assert emu.get(emu.lease_path(NS, "x"), token=PG0)[0] == 404
    assert emu.get(emu.lease_path(NS), token=PG0)[0] == 500
    assert emu.get(emu.lease_path(NS), token=PG0)[0] == 500
    assert emu.get(emu.lease_path(NS), token=PG0)[0] == 200


def test_fault_listing_and_bad_fault_requests(emu):
    emu.fault(PG0, "delay", delay_ms=10)
    emu.fault("*", "status", status=503)
    listed = {f["token"]: f for f in emu.faults()}
    assert listed[PG0]["mode"] == "delay" and listed["*"]["status"] == 503
    with pytest.raises(EmulatorError):
        emu.fault(PG0, "explode")
    with pytest.raises(EmulatorError):
        emu.fault(PG0, "delay")
    emu.fault("*", "ok")
    assert emu.faults() == []


# --- stats -----------------------------------------------------------------------

def test_stats_count_requests_per_token_and_verb(emu):
    emu.reset_stats()
    create_lease(emu)
    emu.get(emu.lease_path(NS, "pg-leader"), token=PG0)
    emu.get(emu.lease_path(NS), token=PG1)
    emu.get(emu.lease_path(NS), token="bogus")
    stats = emu.stats()
    assert stats["total"] == 4
    assert stats["verbs"] == {"create": 1, "get": 1, "list": 2}
    assert stats["tokens"][PG0]["user"] == "pg-0"
    assert stats["tokens"][PG0]["verbs"] == {"create": 1, "get": 1}
    assert stats["tokens"][PG0]["codes"] == {"201": 1, "200": 1}
    assert stats["tokens"][PG1]["resources"] == {"leases": 1}
    assert stats["tokens"]["bogus"]["codes"] == {"401": 1}
    assert stats["seconds"] > 0
    assert emu.reset_stats()["total"] == 0


# --- restart ---------------------------------------------------------------------

def test_state_survives_restart_and_crash(emu):
    lease = create_lease(emu)
    emu.create_pod(NS, "pg-0", {"cluster": "pg"})
    port = emu.port
    emu.restart()
    assert emu.port == port
    got = emu.get_lease(NS, "pg-leader")
    assert got == lease
    status, put = emu.put(emu.lease_path(NS, "pg-leader"), lease_body(
        rv=lease["metadata"]["resourceVersion"], holder="pg-1"), token=PG0)
    assert status == 200
    assert int(put["metadata"]["resourceVersion"]) > \
        int(lease["metadata"]["resourceVersion"])
    emu.kill()
    assert not emu.running()
    emu.start()
    assert emu.port == port
    assert emu.get_lease(NS, "pg-leader") == put
    assert pod_names(emu, "cluster=pg") == ["pg-0"]


def test_context_manager_stops_the_process_on_failure(tmp_path):
    with pytest.raises(RuntimeError):
        with Emulator(str(tmp_path)) as emu:
            proc = emu.proc
            raise RuntimeError("test failed")
    assert proc.poll() is not None
    assert not emu.running()


def test_kubeconfig_and_serviceaccount_files(emu, tmp_path):
    path = emu.kubeconfig(str(tmp_path / "kubeconfig"), PG0, namespace=NS)
    text = open(path).read()
    assert f"server: {emu.url}" in text and f"token: {PG0}" in text
    assert "certificate-authority-data: " in text
    sa = emu.serviceaccount_dir(str(tmp_path / "sa"), PG0, NS)
    assert open(os.path.join(sa, "token")).read() == PG0
    assert open(os.path.join(sa, "namespace")).read() == NS
    assert open(os.path.join(sa, "ca.crt"), "rb").read() == emu.ca_pem()
    env = emu.incluster_env()
    assert env["KUBERNETES_SERVICE_PORT"] == str(emu.port)


# --- kubectl ---------------------------------------------------------------------

needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None and not os.path.exists("/usr/bin/kubectl"),
    reason="kubectl is not installed")


@needs_kubectl
def test_kubectl_reads_what_was_written_through_the_api(emu):
    create_lease(emu)
    emu.create_pod(NS, "pg-0", {"pglease.io/cluster": "pg"})
    emu.patch(emu.pod_path(NS, "pg-0"), {"metadata": {"annotations": {
        "pglease.io/status": '{"role":"primary"}'}}}, token=PG0)
    out = emu.kubectl("get", "lease,pods", "-n", NS, "-o", "yaml",
                      token=PG0)
    assert out.returncode == 0, out.stderr
    assert "kind: Lease" in out.stdout and "kind: Pod" in out.stdout
    assert "name: pg-leader" in out.stdout and "name: pg-0" in out.stdout
    assert "pglease.io/status" in out.stdout
    out = emu.kubectl("get", "lease", "pg-leader", "-n", NS, "-o", "yaml",
                      token=PG0)
    assert out.returncode == 0, out.stderr
    assert "holderIdentity: pg-0" in out.stdout
    assert f'renewTime: "{MICRO}"' in out.stdout
    out = emu.kubectl("get", "lease,po", "-n", NS, token=PG0)
    assert out.returncode == 0, out.stderr
    assert "HOLDER" in out.stdout and "pg-leader" in out.stdout
    assert "Running" in out.stdout


@needs_kubectl
def test_kubectl_with_the_written_kubeconfig(emu, tmp_path):
    create_lease(emu)
    config = emu.kubeconfig(str(tmp_path / "kubeconfig"), PG0, namespace=NS)
    env = dict(os.environ, HOME=str(tmp_path), KUBECONFIG=config)
    out = subprocess.run(["kubectl", "get", "lease", "pg-leader", "-o",
                          "jsonpath={.spec.holderIdentity}",
                          f"--cache-dir={tmp_path}/cache"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "pg-0"
    out = emu.kubectl("delete", "lease", "pg-leader", "-n", NS, token=PG0)
    assert out.returncode != 0 and "Forbidden" in out.stderr


def ipv6_loopback_available():
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not ipv6_loopback_available(),
                    reason="no IPv6 loopback on this machine")
def test_ipv6_loopback(tmp_path):
    with Emulator(str(tmp_path), host="::1") as emu:
        setup_tokens(emu)
        assert emu.url.startswith("https://[::1]:")
        create_lease(emu)
        assert emu.get_lease(NS, "pg-leader")["spec"]["holderIdentity"] == \
            "pg-0"


def test_stop_does_not_wait_for_hung_requests(emu):
    emu.fault(PG0, "hang")
    thread, outcome = in_thread(lambda: emu.request(
        "GET", emu.lease_path(NS), token=PG0, timeout=60))
    wait_for(lambda: emu.stats()["tokens"].get(PG0, {}).get("total"), 10,
             "the hung request to arrive")
    started = time.monotonic()
    emu.stop()
    assert time.monotonic() - started < 5
    thread.join(10)
    assert "error" in outcome
