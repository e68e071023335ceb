"""Kubernetes API machinery as the emulator needs it: resources, Status
errors, Go-decoder type checks, validation, label selectors, merge patch."""

import copy
import datetime
import json
import re

MERGE_PATCH = "application/merge-patch+json"

CONFLICT_MSG = ("the object has been modified; please apply your changes "
                "to the latest version and try again")

STATUS_REASONS = {
    400: "BadRequest", 401: "Unauthorized", 403: "Forbidden",
    404: "NotFound", 405: "MethodNotAllowed", 406: "NotAcceptable",
    409: "Conflict", 410: "Expired", 413: "RequestEntityTooLarge",
    415: "UnsupportedMediaType", 422: "Invalid", 429: "TooManyRequests",
    500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout",
}


class Resource:
    """One REST resource: where it lives and how the API server treats it."""

    def __init__(self, group, version, name, kind, singular, verbs,
                 short_names=(), categories=(), create_on_update=False,
                 unconditional_update=False, delete_returns_object=False,
                 in_memory=False, subresources=()):
        self.group = group
        self.version = version
        self.name = name
        self.kind = kind
        self.singular = singular
        self.verbs = list(verbs)
        self.short_names = list(short_names)
        self.categories = list(categories)
        self.create_on_update = create_on_update
        self.unconditional_update = unconditional_update
        self.delete_returns_object = delete_returns_object
        self.in_memory = in_memory
        self.subresources = list(subresources)

    @property
    def api_version(self):
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self):
        """`leases.coordination.k8s.io`, `pods`: as errors name it."""
        return f"{self.name}.{self.group}" if self.group else self.name

    @property
    def qualified_kind(self):
        return f"{self.kind}.{self.group}" if self.group else self.kind

    def details(self, name=None, kind=None):
        out = {}
        if name is not None:
            out["name"] = name
        if self.group:
            out["group"] = self.group
        out["kind"] = kind or self.name
        return out


OBJECT_VERBS = ["create", "delete", "deletecollection", "get", "list",
                "patch", "update", "watch"]

# create_on_update and unconditional_update are the registry strategies'
# AllowCreateOnUpdate and AllowUnconditionalUpdate of each resource.
RESOURCES = [
    Resource("", "v1", "pods", "Pod", "pod", OBJECT_VERBS,
             short_names=["po"], categories=["all"],
             unconditional_update=True, delete_returns_object=True,
             subresources=["status"]),
    Resource("", "v1", "events", "Event", "event", OBJECT_VERBS,
             short_names=["ev"], create_on_update=True,
             unconditional_update=True, in_memory=True),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", "lease",
             OBJECT_VERBS, create_on_update=True),
    Resource("events.k8s.io", "v1", "events", "Event", "event", OBJECT_VERBS,
             short_names=["ev"], create_on_update=True,
             unconditional_update=True, in_memory=True),
]
RESOURCE_BY_PATH = {(r.group, r.version, r.name): r for r in RESOURCES}


class ApiError(Exception):
    """An error the server answers with a Kubernetes Status object."""

    def __init__(self, code, message, reason=None, details=None,
                 headers=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason if reason is not None else \
            STATUS_REASONS.get(code, "")
        self.details = details
        self.headers = headers or {}

    def status(self):
        body = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                "status": "Failure", "message": self.message}
        if self.reason:
            body["reason"] = self.reason
        if self.details:
            body["details"] = self.details
        body["code"] = self.code
        return body


def not_found(res, name):
    return ApiError(404, f'{res.qualified} "{name}" not found',
                    details=res.details(name))


def conflict(res, name):
    return ApiError(409, f'Operation cannot be fulfilled on {res.qualified} '
                         f'"{name}": {CONFLICT_MSG}',
                    details=res.details(name))


def invalid(res, name, causes, kind=None):
    """422 as validation.NewInvalid renders it; causes: (field, value, msg)."""
    details = res.details(name, kind=kind or res.kind)
    details["causes"] = [
        {"reason": "FieldValueInvalid" if value is not None
         else "FieldValueRequired",
         "message": (f"Invalid value: {go_repr(value)}: {msg}"
                     if value is not None else f"Required value: {msg}"),
         "field": field} for field, value, msg in causes]
    parts = [f"{c['field']}: {c['message']}" for c in details["causes"]]
    label = f"{kind}.{res.group}" if kind and res.group else \
        (kind or res.qualified_kind)
    text = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    return ApiError(422, f'{label} "{name}" is invalid: {text}',
                    details=details)


def bad_request(message):
    return ApiError(400, message)


class GoLiteral(str):
    """A value already formatted as Go's field errors print it."""


def go_repr(value):
    if isinstance(value, GoLiteral):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def now_rfc3339():
    return datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text):
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (ValueError, AttributeError):
        return None


# --- validation ------------------------------------------------------------

DNS_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
MICROTIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$")
INT32 = (-2**31, 2**31 - 1)

# LeaseSpec fields and their Go types, in the order Go marshals them.
LEASE_SPEC_FIELDS = [
    ("holderIdentity", "string"), ("leaseDurationSeconds", "int32"),
    ("acquireTime", "MicroTime"), ("renewTime", "MicroTime"),
    ("leaseTransitions", "int32"), ("strategy", "string"),
    ("preferredHolder", "string"),
]


def json_type_name(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def decode_error(kind, message):
    return bad_request(f'{kind} in version "v1" cannot be handled as a '
                       f'{kind}: {message}')


def check_lease_spec(spec, strict, warnings):
    """Decode a LeaseSpec as Go would: type errors are 400, unknown fields
    are dropped with a warning (or 400 with fieldValidation=Strict)."""
    if spec is None:
        return {}
    if not isinstance(spec, dict):
        raise decode_error("Lease", "json: cannot unmarshal "
                           f"{json_type_name(spec)} into Go struct field "
                           "Lease.spec of type v1.LeaseSpec")
    out = {}
    known = dict(LEASE_SPEC_FIELDS)
    for key in spec:
        if key not in known:
            if strict:
                raise bad_request(f'strict decoding error: unknown field '
                                  f'"spec.{key}"')
            warnings.append(f'unknown field "spec.{key}"')
    for key, gotype in LEASE_SPEC_FIELDS:
        if key not in spec or spec[key] is None:
            continue
        value = spec[key]
        where = f"Go struct field LeaseSpec.spec.{key} of type"
        if gotype == "string" and not isinstance(value, str):
            raise decode_error("Lease", f"json: cannot unmarshal "
                               f"{json_type_name(value)} into {where} string")
        if gotype == "int32":
            if isinstance(value, bool) or not isinstance(value, int):
                shown = json_type_name(value)
                if isinstance(value, float):
                    shown = f"number {value}"
                raise decode_error("Lease", f"json: cannot unmarshal "
                                   f"{shown} into {where} int32")
            if not INT32[0] <= value <= INT32[1]:
                raise decode_error("Lease", f"json: cannot unmarshal number "
                                   f"{value} into {where} int32")
        if gotype == "MicroTime":
            if not isinstance(value, str):
                raise decode_error("Lease", f"json: cannot unmarshal "
                                   f"{json_type_name(value)} into Go value "
                                   "of type string")
            if not MICROTIME.match(value) or parse_rfc3339(value) is None:
                raise decode_error("Lease", f'parsing time "{value}" as '
                                   '"2006-01-02T15:04:05.000000Z07:00": '
                                   'cannot parse as MicroTime (need 6 '
                                   'fractional digits and Z or an offset)')
        out[key] = value
    return out


def validate_lease(res, name, spec):
    causes = []
    lds = spec.get("leaseDurationSeconds")
    if lds is not None and lds <= 0:
        causes.append(("spec.leaseDurationSeconds", lds,
                       "must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        causes.append(("spec.leaseTransitions", transitions,
                       "must be greater than or equal to 0"))
    if causes:
        raise invalid(res, name, causes)


def check_metadata(res, meta):
    if not isinstance(meta, dict):
        raise decode_error(res.kind, "json: cannot unmarshal "
                           f"{json_type_name(meta)} into Go struct field "
                           f"{res.kind}.metadata of type v1.ObjectMeta")
    for key in ("labels", "annotations"):
        value = meta.get(key)
        if value is None:
            continue
        if not isinstance(value, dict) or \
                not all(isinstance(v, str) for v in value.values()):
            raise decode_error(res.kind, "json: cannot unmarshal "
                               f"{json_type_name(value)} into Go struct field "
                               f"ObjectMeta.metadata.{key} of type string")
    rv = meta.get("resourceVersion")
    if rv is not None and not isinstance(rv, str):
        raise decode_error(res.kind, "json: cannot unmarshal "
                           f"{json_type_name(rv)} into Go struct field "
                           "ObjectMeta.metadata.resourceVersion of type string")


def validate_name(res, name):
    if not name:
        raise invalid(res, "", [("metadata.name", None,
                                 "name or generateName is required")])
    if len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        raise invalid(res, name, [(
            "metadata.name", name,
            "a lowercase RFC 1123 subdomain must consist of lower case "
            "alphanumeric characters, '-' or '.', and must start and end "
            "with an alphanumeric character")])


# --- label selectors and merge patch -----------------------------------------

LABEL_TOKEN = re.compile(r"\s*(!=|==|=|\(|\)|,|!|[^\s!=(),]+)")


def parse_label_selector(text):
    """Parse a label selector into (op, key, values) requirements."""
    tokens = []
    pos = 0
    text = text or ""
    while pos < len(text):
        m = LABEL_TOKEN.match(text, pos)
        if not m:
            if text[pos:].strip() == "":
                break
            raise bad_request(f"unable to parse requirement: "
                              f"invalid selector {text!r}")
        tokens.append(m.group(1))
        pos = m.end()
    reqs = []
    i = 0

    def fail(why):
        raise bad_request(f"unable to parse requirement: {why} "
                          f"in selector {text!r}")

    def is_word(tok):
        return tok not in ("!=", "==", "=", "(", ")", ",", "!")

    while i < len(tokens):
        if tokens[i] == "!":
            if i + 1 >= len(tokens) or not is_word(tokens[i + 1]):
                fail("missing key after '!'")
            reqs.append(("!", tokens[i + 1], ()))
            i += 2
        elif is_word(tokens[i]):
            key = tokens[i]
            nxt = tokens[i + 1] if i + 1 < len(tokens) else ","
            if nxt in ("=", "==", "!="):
                if i + 2 >= len(tokens):
                    value = ""
                    i += 2
                elif tokens[i + 2] == ",":
                    value = ""
                    i += 2
                elif is_word(tokens[i + 2]):
                    value = tokens[i + 2]
                    i += 3
                else:
                    fail(f"bad value after {nxt}")
                reqs.append(("!=" if nxt == "!=" else "=", key, (value,)))
            elif nxt in ("in", "notin"):
                if i + 2 >= len(tokens) or tokens[i + 2] != "(":
                    fail(f"expected '(' after {nxt}")
                j = i + 3
                values = []
                while j < len(tokens) and tokens[j] != ")":
                    if tokens[j] != ",":
                        values.append(tokens[j])
                    j += 1
                if j >= len(tokens):
                    fail("missing ')'")
                reqs.append((nxt, key, tuple(values)))
                i = j + 1
            elif nxt == ",":
                reqs.append(("exists", key, ()))
                i += 1
            else:
                fail(f"unexpected {nxt!r} after key {key!r}")
        else:
            fail(f"unexpected {tokens[i]!r}")
        if i < len(tokens):
            if tokens[i] != ",":
                fail(f"expected ',' but found {tokens[i]!r}")
            i += 1
    return reqs


def selector_matches(reqs, labels):
    labels = labels or {}
    for op, key, values in reqs:
        if op == "=" and labels.get(key) != values[0]:
            return False
        if op == "!=" and key in labels and labels[key] == values[0]:
            return False
        if op == "exists" and key not in labels:
            return False
        if op == "!" and key in labels:
            return False
        if op == "in" and labels.get(key) not in values:
            return False
        if op == "notin" and key in labels and labels[key] in values:
            return False
    return True


# The field labels each resource's registry accepts in fieldSelector.
FIELD_LABELS = {
    "pods": ["spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
             "spec.serviceAccountName", "spec.hostNetwork", "status.phase",
             "status.podIP", "status.nominatedNodeName"],
    "events": ["involvedObject.kind", "involvedObject.namespace",
               "involvedObject.name", "involvedObject.uid",
               "involvedObject.apiVersion", "involvedObject.resourceVersion",
               "involvedObject.fieldPath", "reason", "reportingComponent",
               "source", "type", "regarding.kind", "regarding.namespace",
               "regarding.name", "regarding.uid", "regarding.apiVersion",
               "regarding.resourceVersion", "regarding.fieldPath",
               "reportingController"],
    "leases": [],
}


def parse_field_selector(text, resource):
    allowed = ["metadata.name", "metadata.namespace"] + \
        FIELD_LABELS.get(resource, [])
    reqs = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        m = re.match(r"^([^=!]+)(==|=|!=)(.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand "
                              f"'{part}'")
        field, op, value = m.group(1), m.group(2), m.group(3)
        if field not in allowed:
            raise bad_request(f'"{field}" is not a known field selector: '
                              f'only "{", ".join(allowed)}"')
        reqs.append((field, op != "!=", value))
    return reqs


def field_value(obj, field):
    value = obj
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if field == "source" and isinstance(value, dict):
        value = value.get("component")
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def field_selector_matches(reqs, obj):
    for field, equal, value in reqs:
        if (field_value(obj, field) == value) != equal:
            return False
    return True


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
