"""What kubectl reads besides objects: meta.k8s.io/v1 Tables and the
discovery documents."""

import datetime

from emu_meta import RESOURCES, parse_rfc3339


def human_age(created, now=None):
    start = parse_rfc3339(created or "")
    if start is None:
        return "<unknown>"
    now = now or datetime.datetime.now(datetime.timezone.utc)
    secs = max(0, int((now - start).total_seconds()))
    if secs < 120:
        return f"{secs}s"
    mins = secs // 60
    if mins < 10:
        return f"{mins}m{secs % 60}s" if secs % 60 else f"{mins}m"
    if mins < 180:
        return f"{mins}m"
    hours = mins // 60
    if hours < 8:
        return f"{hours}h{mins % 60}m" if mins % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def column(name, kind, desc, priority=0, fmt=""):
    return {"name": name, "type": kind, "format": fmt,
            "description": desc, "priority": priority}


def pod_cells(pod):
    status = pod.get("status") or {}
    containers = (pod.get("spec") or {}).get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    phase = status.get("phase") or "Unknown"
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        phase = "Terminating"
    return [pod["metadata"]["name"], f"{ready}/{len(containers)}", phase,
            restarts, human_age(pod["metadata"].get("creationTimestamp")),
            status.get("podIP") or "<none>",
            (pod.get("spec") or {}).get("nodeName") or "<none>"]


def event_cells(event):
    meta = event.get("metadata") or {}
    obj = event.get("involvedObject") or event.get("regarding") or {}
    last = event.get("lastTimestamp") or event.get("eventTime") or \
        meta.get("creationTimestamp")
    message = event.get("message") or event.get("note") or ""
    return [human_age(last), event.get("type") or "",
            event.get("reason") or "",
            f"{(obj.get('kind') or '').lower()}/{obj.get('name') or ''}",
            message]


TABLES = {
    "leases": ([column("Name", "string", "Name must be unique within a "
                       "namespace.", fmt="name"),
                column("Holder", "string", "holderIdentity contains the "
                       "identity of the holder of a current lease."),
                column("Age", "string", "CreationTimestamp is a timestamp "
                       "representing the server time when this object was "
                       "created.")],
               lambda o: [o["metadata"]["name"],
                          (o.get("spec") or {}).get("holderIdentity") or "",
                          human_age(o["metadata"].get("creationTimestamp"))]),
    "pods": ([column("Name", "string", "Name must be unique within a "
                     "namespace.", fmt="name"),
              column("Ready", "string", "The aggregate readiness state of "
                     "this pod for accepting traffic."),
              column("Status", "string", "The aggregate status of the "
                     "containers in this pod."),
              column("Restarts", "string", "The number of times the "
                     "containers in this pod have been restarted."),
              column("Age", "string", "CreationTimestamp is a timestamp "
                     "representing the server time when this object was "
                     "created."),
              column("IP", "string", "IP address allocated to the pod.", 1),
              column("Node", "string", "Name of the Node.", 1)],
             pod_cells),
    "events": ([column("Last Seen", "string", "Time of the last "
                       "occurrence."),
                column("Type", "string", "Type of this event."),
                column("Reason", "string", "Why the action was taken."),
                column("Object", "string", "The object this event is "
                       "about."),
                column("Message", "string", "A human-readable description "
                       "of the status of this operation.")],
               event_cells),
}


def wants_table(accept):
    return "as=Table" in (accept or "")


def make_table(res, objects, list_rv, include):
    columns, cells = TABLES[res.name]
    rows = []
    for obj in objects:
        row = {"cells": cells(obj)}
        if include == "Object":
            row["object"] = with_type(res, obj)
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata",
                             "apiVersion": "meta.k8s.io/v1",
                             "metadata": obj["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": list_rv},
            "columnDefinitions": columns, "rows": rows}


def with_type(res, obj):
    out = {"kind": res.kind, "apiVersion": res.api_version}
    out.update((k, v) for k, v in obj.items()
               if k not in ("kind", "apiVersion"))
    return out


# --- discovery ---------------------------------------------------------------

def api_resource_list(group, version):
    resources = []
    for r in RESOURCES:
        if (r.group, r.version) != (group, version):
            continue
        entry = {"name": r.name, "singularName": r.singular,
                 "namespaced": True, "kind": r.kind, "verbs": r.verbs}
        if r.short_names:
            entry["shortNames"] = r.short_names
        if r.categories:
            entry["categories"] = r.categories
        resources.append(entry)
        for sub in r.subresources:
            resources.append({"name": f"{r.name}/{sub}", "singularName": "",
                              "namespaced": True, "kind": r.kind,
                              "verbs": ["get", "patch", "update"]})
    gv = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": gv, "resources": resources}


def api_group(name):
    versions = sorted({r.version for r in RESOURCES if r.group == name})
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": name,
            "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list():
    names = []
    for r in RESOURCES:
        if r.group and r.group not in names:
            names.append(r.group)
    groups = []
    for name in names:
        group = api_group(name)
        del group["kind"], group["apiVersion"]
        groups.append(group)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def discovery(path, host):
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": host}]}
    if path == "/apis":
        return api_group_list()
    if path == "/api/v1":
        return api_resource_list("", "v1")
    parts = [p for p in path.split("/") if p]
    groups = {r.group for r in RESOURCES if r.group}
    if len(parts) == 2 and parts[0] == "apis" and parts[1] in groups:
        return api_group(parts[1])
    if len(parts) == 3 and parts[0] == "apis" and \
            (parts[1], parts[2]) in {(r.group, r.version) for r in RESOURCES}:
        return api_resource_list(parts[1], parts[2])
    return None
