"""The emulator's fidelity, measured (issue 18): the same client calls --
the ones the agent makes, and the errors it must tell apart -- sent to the
emulator (tests/kube-emulator) and to the real API server, comparing the
status code and what a client reads of each answer. Every difference is a
bug of the emulator (or of the expectation) and is listed on failure."""

import copy
import json
import os
import secrets

import pytest

import kubeemu
import realkube

CLUSTER = "pg"
LEADER = f"{CLUSTER}-leader"
MERGE = realkube.MERGE_PATCH


def summary(status, body):
    """What a client reads of an answer: for a Status, its kind, reason,
    code and details (kind, name, group); for an object, its kind and
    whether it has the server-set metadata."""
    if not isinstance(body, dict):
        return {"status": status, "body": "not JSON"}
    out = {"status": status, "kind": body.get("kind")}
    if body.get("kind") == "Status":
        details = body.get("details") or {}
        out.update(reason=body.get("reason"), code=body.get("code"),
                   status_field=body.get("status"),
                   details={k: details.get(k) for k in ("kind", "name",
                                                        "group")
                            if details.get(k) is not None})
    else:
        meta = body.get("metadata") or {}
        out.update(has_rv=isinstance(meta.get("resourceVersion"), str),
                   has_uid=bool(meta.get("uid")) if "items" not in body
                   else None,
                   has_created=bool(meta.get("creationTimestamp"))
                   if "items" not in body else None,
                   spec=body.get("spec") if body.get("kind") == "Lease"
                   else None,
                   labels=meta.get("labels") if body.get("kind") == "Pod"
                   else None,
                   items=len(body["items"]) if "items" in body else None)
    return out


def lease(ns, holder="pg-0", rv=None, **spec):
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": LEADER, "namespace": ns},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 4,
                     "acquireTime": "2026-01-01T00:00:00.000000Z",
                     "renewTime": "2026-01-01T00:00:00.000000Z",
                     "leaseTransitions": 0, **spec}}
    if rv is not None:
        body["metadata"]["resourceVersion"] = rv
    return body


def script(api, ns):
    """Run the calls against `api` (an Emulator or a RealKube); returns
    [(call name, summary)]."""
    out = []
    leases = api.lease_path(ns)
    one = api.lease_path(ns, LEADER)
    pods = api.pod_path(ns)
    state = {}

    def call(name, method, path, body=None, ctype="application/json",
             token=None):
        status, answer, _ = api.request(method, path, body, token=token,
                                        content_type=ctype)
        out.append((name, summary(status, answer)))
        return status, answer

    call("get missing lease", "GET", one)
    _, created = call("create lease", "POST", leases, lease(ns))
    state["rv"] = (created.get("metadata") or {}).get("resourceVersion")
    call("create it again", "POST", leases, lease(ns))
    _, got = call("get lease", "GET", one)
    renewed = copy.deepcopy(got)
    renewed["spec"]["renewTime"] = "2026-01-01T00:00:01.000000Z"
    _, updated = call("update with current resourceVersion", "PUT", one,
                      renewed)
    call("update with the stale resourceVersion", "PUT", one,
         lease(ns, rv=state["rv"]))
    call("update without resourceVersion", "PUT", one, lease(ns))
    call("update another name at this path", "PUT", one,
         dict(lease(ns), metadata={"name": "other", "namespace": ns,
                                   "resourceVersion":
                                       updated["metadata"].get(
                                           "resourceVersion", "1")}))
    call("create invalid lease (negative duration)", "POST", leases,
         dict(lease(ns), metadata={"name": "bad-duration"},
              spec={"leaseDurationSeconds": -1}))
    call("create lease with an invalid name", "POST", leases,
         dict(lease(ns), metadata={"name": "Not_A_Name"}))
    call("create lease with second-precision times", "POST", leases,
         dict(lease(ns), metadata={"name": "seconds-only"},
              spec={"holderIdentity": "x",
                    "renewTime": "2026-01-01T00:00:00Z"}))
    call("patch own pod labels", "PATCH", f"{pods}/{CLUSTER}-0",
         {"metadata": {"labels": {"pglease.io/role": "primary"},
                       "annotations": {"pglease.io/status": "{}"}}}, MERGE)
    call("remove a label by patch", "PATCH", f"{pods}/{CLUSTER}-0",
         {"metadata": {"labels": {"pglease.io/role": None}}}, MERGE)
    call("patch a missing pod", "PATCH", f"{pods}/{CLUSTER}-9",
         {"metadata": {"labels": {"a": "b"}}}, MERGE)
    call("patch with a JSON content type", "PATCH", f"{pods}/{CLUSTER}-0",
         {"metadata": {"labels": {"a": "b"}}}, "application/json")
    call("list pods by label", "GET",
         f"{pods}?labelSelector=pglease.io%2Fcluster%3D{CLUSTER}")
    call("list pods by a label nobody has", "GET",
         f"{pods}?labelSelector=pglease.io%2Fcluster%3Dnone")
    call("list pods with a malformed selector", "GET",
         f"{pods}?labelSelector=a%3D%3Db%3Dc%21")
    call("create event", "POST", f"/api/v1/namespaces/{ns}/events", {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{CLUSTER}-0.{secrets.token_hex(6)}",
                     "namespace": ns},
        "involvedObject": {"kind": "Pod", "name": f"{CLUSTER}-0",
                           "namespace": ns},
        "reason": "Elected", "message": "fidelity", "type": "Normal",
        "source": {"component": "pglease-agent"}})
    call("a token the server does not know", "GET", one,
         token="not-a-token")
    return out


def test_emulator_answers_as_the_real_server(workdir, control_plane):  # pylint: disable=unused-argument
    ns = f"pgl-{secrets.token_hex(4)}"
    real = realkube.RealKube(os.path.join(workdir, "real"), namespace=ns,
                             cluster_name=CLUSTER).start()
    emu = kubeemu.Emulator(os.path.join(workdir, "emu"), tls=True,
                           quiet=True)
    emu.start()
    try:
        for api in (real, emu):
            api.create_pod(ns, f"{CLUSTER}-0",
                           labels={"pglease.io/cluster": CLUSTER})
        want = script(real, ns)
        have = script(emu, ns)
    finally:
        emu.close()
        real.stop()
    diffs = [(name, w, h) for (name, w), (_, h) in zip(want, have)
             if w != h]
    report = "\n".join(f"- {name}:\n    real     {json.dumps(w)}\n"
                       f"    emulator {json.dumps(h)}"
                       for name, w, h in diffs)
    assert not diffs, f"{len(diffs)} of {len(want)} answers differ:\n{report}"
