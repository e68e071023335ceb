"""The objects and the verbs on them: the store (persisted to a state
file), URL routing, authorization and create/get/list/update/patch/delete
with the API server's semantics."""

import collections
import copy
import json
import os
import tempfile
import threading
import uuid

from emu_watch import Hub, Stream
from emu_meta import (
    MERGE_PATCH, RESOURCE_BY_PATH, ApiError, GoLiteral, bad_request,
    check_lease_spec, check_metadata, conflict, decode_error,
    field_selector_matches, invalid, json_type_name, merge_patch,
    not_found, now_rfc3339, parse_field_selector, parse_label_selector,
    selector_matches, validate_lease, validate_name)
from emu_views import make_table, wants_table

EVENTS_KEPT = 1000


METADATA_ORDER = ["name", "generateName", "namespace", "uid",
                  "resourceVersion", "generation", "creationTimestamp",
                  "deletionTimestamp", "labels", "annotations",
                  "ownerReferences", "finalizers"]


def ordered_object(res, obj):
    """Kind, apiVersion, metadata (in Go's field order), then the rest."""
    meta = obj.get("metadata") or {}
    ordered_meta = {k: meta[k] for k in METADATA_ORDER if k in meta}
    ordered_meta.update((k, v) for k, v in meta.items()
                        if k not in ordered_meta)
    # Go's omitempty: an empty map or list is not there at all.
    for key in ("labels", "annotations", "finalizers", "ownerReferences"):
        if key in ordered_meta and not ordered_meta[key]:
            del ordered_meta[key]
    out = {"kind": res.kind, "apiVersion": res.api_version,
           "metadata": ordered_meta}
    out.update((k, v) for k, v in obj.items()
               if k not in ("kind", "apiVersion", "metadata"))
    return out


class Store:
    """All objects, keyed by resource, namespace and name; one lock."""

    def __init__(self, state_file=None):
        self.lock = threading.RLock()
        self.state_file = state_file
        self.rv = 0
        self.objects = {}   # "group/resource" -> {(ns, name): obj}
        self.events = collections.OrderedDict()
        if state_file and os.path.exists(state_file):
            self.load()

    @staticmethod
    def key(res):
        return f"{res.group}/{res.name}"

    def table(self, res):
        if res.in_memory:
            return self.events.setdefault(self.key(res),
                                          collections.OrderedDict())
        return self.objects.setdefault(self.key(res), {})

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    def load(self):
        with open(self.state_file, encoding="utf-8") as f:
            state = json.load(f)
        self.rv = int(state.get("resourceVersion", 0))
        for key, items in state.get("objects", {}).items():
            table = self.objects.setdefault(key, {})
            for obj in items:
                meta = obj["metadata"]
                table[(meta["namespace"], meta["name"])] = obj

    def save(self):
        """Write every persistent object and the counter atomically."""
        if not self.state_file:
            return
        state = {"resourceVersion": self.rv,
                 "objects": {k: list(t.values())
                             for k, t in sorted(self.objects.items())}}
        directory = os.path.dirname(os.path.abspath(self.state_file))
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(state, f, indent=1)
            os.replace(tmp, self.state_file)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    def committed(self, res):
        if res.in_memory:
            table = self.table(res)
            while len(table) > EVENTS_KEPT:
                table.popitem(last=False)
        else:
            self.save()


class Request:
    """What the handler learned about one request before serving it."""

    def __init__(self, method, path, query, body, token, accept,
                 content_type):
        self.method = method
        self.path = path
        self.query = query
        self.body = body
        self.token = token
        self.accept = accept
        self.content_type = content_type
        self.res = None
        self.namespace = None
        self.name = None
        self.subresource = None
        self.verb = method.lower()
        self.nonresource = False
        self.warnings = []
        self.user = ""


NONRESOURCE_ANONYMOUS = ("/version", "/healthz", "/livez", "/readyz")


def route(req):
    """Fill req.res/namespace/name/verb from the URL; None if unknown."""
    parts = [p for p in req.path.split("/") if p]
    if req.path in NONRESOURCE_ANONYMOUS or not parts or \
            parts[0] not in ("api", "apis"):
        req.nonresource = True
        req.verb = req.method.lower()
        return
    if parts[0] == "api":
        group, rest = "", parts[1:]
    else:
        if len(parts) < 2:
            req.nonresource = True
            return
        group, rest = parts[1], parts[2:]
    if len(rest) <= 1:
        req.nonresource = True   # discovery: /api/v1, /apis/g/v
        return
    version, rest = rest[0], rest[1:]
    if rest[0] == "namespaces" and len(rest) >= 3:
        req.namespace, rest = rest[1], rest[2:]
    res = RESOURCE_BY_PATH.get((group, version, rest[0]))
    if res is None:
        raise ApiError(404, "the server could not find the requested "
                       "resource", details={"group": group} if group else {})
    req.res = res
    if len(rest) >= 2:
        req.name = rest[1]
    if len(rest) >= 3:
        req.subresource = rest[2]
        if rest[2] not in res.subresources or len(rest) > 3:
            raise ApiError(404, "the server could not find the requested "
                           "resource")
    if req.name is None and req.method not in ("GET", "POST"):
        raise ApiError(405, "the server does not allow this method on the "
                       "requested resource", details=res.details())
    if req.name is None and req.namespace is None and req.method != "GET":
        raise ApiError(405, "the server does not allow this method on the "
                       "requested resource", details=res.details())
    verb = {"GET": "get", "POST": "create", "PUT": "update",
            "PATCH": "patch", "DELETE": "delete"}.get(req.method)
    if verb is None:
        raise ApiError(405, "the server does not allow this method on the "
                       "requested resource")
    if req.method == "GET" and req.name is None:
        verb = "list"
        if req.query.get("watch") in ("1", "true"):
            verb = "watch"
    req.verb = verb


def forbidden(req, user):
    res = req.res
    resource = res.name + (f"/{req.subresource}" if req.subresource else "")
    what = f'{res.qualified} "{req.name}"' if req.name else res.qualified
    where = f'in the namespace "{req.namespace}"' if req.namespace \
        else "at the cluster scope"
    return ApiError(403, f'{what} is forbidden: User "{user}" cannot '
                    f'{req.verb} resource "{resource}" in API group '
                    f'"{res.group}" {where}',
                    details=res.details(req.name))


def rule_allows(rule, req):
    """One RBAC PolicyRule against a request, as the RBAC authorizer reads
    it: apiGroups, resources (with "pods/status" for a subresource),
    verbs, and resourceNames, which only requests naming an object can
    match (a create or a list never does)."""
    def has(key, value):
        values = rule.get(key) or []
        return "*" in values or value in values

    resource = req.res.name + (f"/{req.subresource}" if req.subresource
                               else "")
    if not (has("apiGroups", req.res.group) and has("resources", resource)
            and has("verbs", req.verb)):
        return False
    names = rule.get("resourceNames")
    return not names or (request_name(req) is not None and
                         req.verb != "create" and
                         request_name(req) in names)


def request_name(req):
    """The object a request names: the URL's, or for a list or a watch the
    one its field selector metadata.name=... picks (the API server's
    RequestInfo does the same, so that resourceNames can grant them)."""
    if req.name is not None or req.verb not in ("list", "watch"):
        return req.name
    for part in (req.query.get("fieldSelector") or "").split(","):
        field, sep, value = part.strip().partition("=")
        if sep and field == "metadata.name" and not value.startswith("="):
            return value
        if sep and field == "metadata.name" and value.startswith("="):
            return value[1:]
    return None


def authorize(req, info):
    rules = info.get("rules")
    if rules is not None and not any(rule_allows(r, req) for r in rules):
        return False
    verbs = info.get("verbs", ["*"])
    if "*" not in verbs and req.verb not in verbs:
        return False
    resources = info.get("resources")
    if resources is not None and "*" not in resources:
        name = req.res.name + (f"/{req.subresource}" if req.subresource
                               else "")
        if name not in resources and req.res.name not in resources:
            return False
    namespaces = info.get("namespaces")
    if namespaces is not None and "*" not in namespaces and \
            req.namespace not in namespaces:
        return False
    return True


class Api:
    """Resource verbs over the store, with the API server's semantics."""

    def __init__(self, store):
        self.store = store
        self.hub = Hub(store)

    def serve(self, req):
        res = req.res
        if req.verb == "watch":
            # Served on the handler's thread, streaming (emu_watch.py).
            return 200, Stream(self.hub, req, req.user)
        if req.verb == "list":
            return 200, self.list(req)
        handler = {"get": self.get, "create": self.create,
                   "update": self.update, "patch": self.patch,
                   "delete": self.delete}[req.verb]
        if req.name is not None and req.verb != "create":
            if not req.name:
                raise not_found(res, "")
        with self.store.lock:
            return handler(req)

    def existing(self, req):
        obj = self.store.table(req.res).get((req.namespace, req.name))
        if obj is None:
            raise not_found(req.res, req.name)
        return obj

    def list(self, req):
        res = req.res
        labels = parse_label_selector(req.query.get("labelSelector"))
        fields = parse_field_selector(req.query.get("fieldSelector"),
                                      res.name)
        with self.store.lock:
            list_rv = str(self.store.rv)
            items = [obj for (ns, _), obj in
                     sorted(self.store.table(res).items())
                     if req.namespace in (None, ns)
                     and selector_matches(labels, obj["metadata"].get(
                         "labels"))
                     and field_selector_matches(fields, obj)]
            items = copy.deepcopy(items)
        if wants_table(req.accept):
            return make_table(res, items, list_rv,
                              req.query.get("includeObject"))
        for item in items:
            item.pop("kind", None)
            item.pop("apiVersion", None)
        return {"kind": f"{res.kind}List", "apiVersion": res.api_version,
                "metadata": {"resourceVersion": list_rv}, "items": items}

    def get(self, req):
        obj = copy.deepcopy(self.existing(req))
        if wants_table(req.accept) and not req.subresource:
            return 200, make_table(req.res, [obj], obj["metadata"][
                "resourceVersion"], req.query.get("includeObject"))
        return 200, obj

    def decode(self, req):
        res = req.res
        ctype = (req.content_type or "application/json").split(";")[0].strip()
        if req.method == "PATCH":
            if ctype != MERGE_PATCH:
                raise ApiError(415, "the body of the request was in an "
                               "unknown format - accepted media types "
                               f"include: {MERGE_PATCH}")
        elif ctype not in ("application/json", "*/*", ""):
            raise ApiError(415, "the body of the request was in an unknown "
                           "format - accepted media types include: "
                           "application/json")
        try:
            body = json.loads(req.body.decode("utf-8") or "null")
        except (ValueError, UnicodeDecodeError) as e:
            raise decode_error(res.kind, f"couldn't get version/kind; json "
                               f"parse error: {e}")
        if not isinstance(body, dict):
            raise decode_error(res.kind, "couldn't get version/kind; json "
                               "parse error: json: cannot unmarshal "
                               f"{json_type_name(body)} into Go value of "
                               "type struct")
        return body

    def check_body(self, req, body):
        """Type checks and the fields a client may not choose."""
        res = req.res
        api_version = body.get("apiVersion")
        if api_version and api_version != res.api_version:
            raise bad_request(f"the API version in the data ({api_version}) "
                              "does not match the expected API version "
                              f"({res.api_version})")
        kind = body.get("kind")
        if kind and kind != res.kind:
            raise bad_request(f"the kind in the data ({kind}) does not "
                              f"match the expected kind ({res.kind})")
        meta = body.get("metadata")
        if meta is None:
            meta = body["metadata"] = {}
        check_metadata(res, meta)
        ns = meta.get("namespace")
        if ns and ns != req.namespace:
            raise bad_request("the namespace of the provided object does not "
                              "match the namespace sent on the request")
        if res.name == "leases":
            strict = req.query.get("fieldValidation") == "Strict"
            body["spec"] = check_lease_spec(body.get("spec"), strict,
                                            req.warnings)
            if not body["spec"]:
                body.pop("spec")
        return meta

    def new_object(self, req, body, meta, name):
        res = req.res
        if res.name == "leases":
            validate_lease(res, name, body.get("spec", {}))
        obj = copy.deepcopy(body)
        new_meta = {k: v for k, v in meta.items()
                    if k not in ("resourceVersion", "uid",
                                 "creationTimestamp", "deletionTimestamp",
                                 "selfLink", "managedFields", "generation")}
        new_meta.update(name=name, namespace=req.namespace,
                        uid=str(uuid.uuid4()),
                        resourceVersion=self.store.next_rv(),
                        creationTimestamp=now_rfc3339())
        obj["metadata"] = new_meta
        if res.name == "pods":
            # Like the API server: status is the kubelet's, set through
            # pods/{name}/status, never on create.
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
        if res.name == "events":
            obj.setdefault("firstTimestamp", None)
            obj.setdefault("lastTimestamp", None)
        return ordered_object(res, obj)

    def create(self, req):
        res = req.res
        if req.name is not None or req.namespace is None:
            raise ApiError(405, "the server does not allow this method on "
                           "the requested resource")
        body = self.decode(req)
        meta = self.check_body(req, body)
        name = meta.get("name") or ""
        if not name and meta.get("generateName"):
            name = meta["generateName"] + uuid.uuid4().hex[:5]
        validate_name(res, name)
        if meta.get("resourceVersion"):
            raise ApiError(500, "resourceVersion should not be set on "
                           "objects to be created", reason="")
        table = self.store.table(res)
        if (req.namespace, name) in table:
            raise ApiError(409, f'{res.qualified} "{name}" already exists',
                           reason="AlreadyExists",
                           details=res.details(name))
        obj = self.new_object(req, body, meta, name)
        table[(req.namespace, name)] = obj
        self.hub.record(res, "ADDED", None, obj)
        self.store.committed(res)
        return 201, copy.deepcopy(obj)

    def update(self, req):
        body = self.decode(req)
        return self.replace(req, body)

    def patch(self, req):
        res = req.res
        patch = self.decode(req)
        current = self.existing(req)
        patched = merge_patch(copy.deepcopy(current), patch)
        if not isinstance(patched.get("metadata"), dict):
            raise invalid(res, req.name, [("metadata", None,
                                           "metadata is required")])
        want_rv = ((patch.get("metadata") or {}) if isinstance(
            patch.get("metadata"), dict) else {}).get("resourceVersion")
        if want_rv is not None and want_rv != current["metadata"][
                "resourceVersion"]:
            raise conflict(res, req.name)
        patched["metadata"]["resourceVersion"] = \
            current["metadata"]["resourceVersion"]
        return self.replace(req, patched)

    def replace(self, req, body):
        """PUT semantics: resourceVersion precondition, immutable fields."""
        res = req.res
        meta = self.check_body(req, body)
        name = meta.get("name")
        if name != req.name:
            raise bad_request(f"the name of the object ({name or ''}) does "
                              "not match the name on the URL "
                              f"({req.name})")
        table = self.store.table(res)
        current = table.get((req.namespace, req.name))
        if current is None:
            if not res.create_on_update or req.subresource:
                raise not_found(res, req.name)
            validate_name(res, req.name)
            obj = self.new_object(req, body, meta, req.name)
            table[(req.namespace, req.name)] = obj
            self.hub.record(res, "ADDED", None, obj)
            self.store.committed(res)
            return 201, copy.deepcopy(obj)
        rv = meta.get("resourceVersion")
        if not rv and res.unconditional_update:
            rv = meta["resourceVersion"] = current["metadata"][
                "resourceVersion"]
        if not rv:
            # The API server prints the uint64 zero with %#v: 0x0.
            raise invalid(res, req.name, [("metadata.resourceVersion",
                                           GoLiteral("0x0"),
                                           "must be specified for an "
                                           "update")], kind=res.name)
        if not rv.isdigit():
            raise bad_request(f'invalid resource version "{rv}"')
        if rv != current["metadata"]["resourceVersion"]:
            raise conflict(res, req.name)
        old_meta = current["metadata"]
        if meta.get("uid") and meta["uid"] != old_meta["uid"]:
            raise invalid(res, req.name, [("metadata.uid", meta["uid"],
                                           "field is immutable")])
        if res.name == "leases":
            validate_lease(res, req.name, body.get("spec", {}))
        obj = copy.deepcopy(body)
        if req.subresource == "status":
            obj = copy.deepcopy(current)
            if "status" in body:
                obj["status"] = copy.deepcopy(body["status"])
            else:
                obj.pop("status", None)
        elif res.name == "pods" and "status" in current:
            obj["status"] = copy.deepcopy(current["status"])
        new_meta = obj["metadata"] if req.subresource != "status" \
            else obj["metadata"]
        for key in ("uid", "creationTimestamp", "namespace",
                    "deletionTimestamp", "generateName"):
            if key in old_meta:
                new_meta[key] = old_meta[key]
        new_meta.pop("managedFields", None)
        new_meta.pop("selfLink", None)
        obj = ordered_object(res, obj)
        if obj == current:
            return 200, copy.deepcopy(current)   # no-op: no new version
        obj["metadata"]["resourceVersion"] = self.store.next_rv()
        table[(req.namespace, req.name)] = obj
        self.hub.record(res, "MODIFIED", current, obj)
        self.store.committed(res)
        return 200, copy.deepcopy(obj)

    def delete(self, req):
        res = req.res
        current = self.existing(req)
        options = {}
        if req.body.strip():
            try:
                options = json.loads(req.body)
            except ValueError as e:
                raise bad_request(f"invalid DeleteOptions: {e}")
        pre = (options or {}).get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != current["metadata"]["uid"]:
            raise ApiError(409, f"Operation cannot be fulfilled on "
                           f'{res.qualified} "{req.name}": Precondition '
                           f"failed: UID in precondition: {pre['uid']}, UID "
                           f"in object meta: {current['metadata']['uid']}",
                           details=res.details(req.name))
        if pre.get("resourceVersion") and pre["resourceVersion"] != \
                current["metadata"]["resourceVersion"]:
            raise ApiError(409, f"Operation cannot be fulfilled on "
                           f'{res.qualified} "{req.name}": Precondition '
                           f"failed: ResourceVersion in precondition: "
                           f"{pre['resourceVersion']}, ResourceVersion in "
                           f"object meta: "
                           f"{current['metadata']['resourceVersion']}",
                           details=res.details(req.name))
        del self.store.table(res)[(req.namespace, req.name)]
        gone = copy.deepcopy(current)
        gone["metadata"]["resourceVersion"] = self.store.next_rv()
        self.hub.record(res, "DELETED", gone, None)
        self.store.committed(res)
        if res.delete_returns_object:
            return 200, copy.deepcopy(current)
        details = res.details(req.name)
        details["uid"] = current["metadata"]["uid"]
        return 200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                     "status": "Success", "details": details}
