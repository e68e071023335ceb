#!/usr/bin/env python3
"""Checks of charts/pglease with the real helm (no cluster).

    check_chart.py [--source DIR] [--build DIR] [--helm PATH]

helm is the one scripts/lib.sh's ensure_helm builds (PGLEASE_HELM, else its
cache path for the version tests/k8s/helm/go.mod pins, else `helm` in
PATH); without it this fails and says how to get it. It runs `helm lint
--strict` and `helm template` for the default values and the variations in
VARIATIONS, and on every rendering checks names, labels and selectors,
what Pod Security Admission's "restricted" level requires of every pod and
container, mounts and keys, the Role against the API calls the agent
makes (read from lib/kube.c, lib/dcs-kube.c, lib/node-watch.c and
lib/rollout-worker.c) and against
docs/kubernetes.md, Pgpool-II's configuration (the checks' user, the
backends). Then: every invalid value of INVALID fails with a message naming
its key; the checksum annotations change when the rendered configuration
does; the client pod's shell exits on SIGTERM; pglease.conf as rendered
passes the built agent's --check-config, the probes name agentctl commands
the build has; yamllint of values.yaml, values-reference.yaml and
Chart.yaml. The reference values (charts/pglease/values-reference.yaml)
render the reference deployment's exact names, and the plain manifests of
deploy/reference/ (scripts/render-reference) are that rendering, object by
object.

What needs an API server (server-side dry-run, PSA admission, RBAC
enforcement) is in docs/kubernetes.md, "What has been verified, and
where". Exit status 0 when every check passes, 1 otherwise.
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
FAILURES = []

# helm template cannot read a stored Secret, so it refuses to generate the
# passwords (templates/_helpers.tpl, pglease.password): every rendering
# below gives them, except the one that checks that refusal.
PASSWORDS = ["--set", "secrets.superuserPassword=su-pw",
             "--set", "secrets.replicationPassword=repl-pw",
             "--set", "secrets.rewindPassword=rewind-pw"]

# The reference deployment: what charts/pglease/values-reference.yaml must
# render (with the release and namespace scripts/render-reference uses), and
# where the plain manifests rendered from it are.
REFERENCE_LABEL = "reference values (values-reference.yaml)"
REFERENCE = {
    "release": "pg",
    "namespace": "database",
    "statefulset": "postgres-sts",
    "replicas": 3,
    "secret": "postgres-secrets",
    "superuser key": "postgresql-password",
    "pgpool service": "pgpool-svc",
    "port": 5432,
    "nodeport service": "pgpool-svc-nodeport",
    "node port": 32000,
    "client pod": "pg-client",
    "manifests": os.path.join("deploy", "reference"),
    "directories": ("postgresql", "pgpool", "client"),
}
# Labels saying helm manages an object, left out of the plain manifests.
HELM_LABELS = ("helm.sh/chart", "app.kubernetes.io/managed-by")

# (name, helm arguments, release, namespace): each is linted and rendered,
# and every rendering goes through check_rendering(). @CHART@ stands for
# the chart's directory.
VARIATIONS = [
    ("default values", [], "pg", "default"),
    ("1 replica", ["--set", "postgres.replicas=1"], "pg", "default"),
    ("5 replicas", ["--set", "postgres.replicas=5"], "pg", "default"),
    ("RollingUpdate strategy",
     ["--set", "postgres.updateStrategy=RollingUpdate"], "pg", "default"),
    ("synchronous mode", ["--set", "config.synchronous_mode=on",
                          "--set-string", "config.synchronous_node_count=2"],
     "pg", "default"),
    ("pgpool off", ["--set", "pgpool.enabled=false", "--set",
                    "client.enabled=true", "--set", "client.target=primary"],
     "pg", "default"),
    ("existingSecret", ["--set", "secrets.existingSecret=my-passwords"],
     "pg", "default"),
    ("failsafe mode, NetworkPolicy",
     ["--set", "config.failsafe_mode=yes", "--set",
      "networkPolicy.enabled=true"], "pg", "default"),
    ("another namespace and release", ["--set", "client.enabled=true"],
     "orders", "shop"),
    ("non-default superuser", ["--set", "config.superuser=dba",
                               "--set", "config.database=app"],
     "pg", "default"),
    ("client, NetworkPolicy, parallel pods",
     ["--set", "client.enabled=true", "--set", "networkPolicy.enabled=true",
      "--set", "postgres.podManagementPolicy=Parallel",
      "--set", "postgres.podAntiAffinity=hard"], "pg", "default"),
    ("Secret key names, client Pod",
     ["--set", "secrets.keys.superuser=postgresql-password",
      "--set", "secrets.keys.replication=replication-password",
      "--set", "client.enabled=true", "--set", "client.kind=Pod"],
     "pg", "default"),
    (REFERENCE_LABEL, ["-f", "@CHART@/values-reference.yaml"],
     REFERENCE["release"], REFERENCE["namespace"]),
]

# (value arguments, text the error must contain): each must fail to render,
# naming the key.
INVALID = [
    (["--set", "postgres.podAntiAffinity=bogus"], "postgres/podAntiAffinity"),
    (["--set", "client.target=bogus"], "client/target"),
    (["--set-string", "config.pg_port=5433"], "config.pg_port"),
    (["--set", "config.pg_port=5432"], "/config/pg_port"),
    (["--set", "postgres.port=5433"], "postgres.port"),
    (["--set", "postgres.replicas=0"], "postgres.replicas"),
    (["--set", "pdb.maxUnavailable=0"], "pdb/maxUnavailable"),
    (["--set", "config.bogus_key=x"], "bogus_key"),
    (["--set", "bogusTopLevel=1"], "bogusTopLevel"),
    (["--set", "postgres.replicas=10"], "postgres.maxReplicas"),
    (["--set", "postgres.replicas=-1"], "postgres/replicas"),
    (["--set", "client.enabled=true", "--set", "pgpool.enabled=false"],
     "client.target"),
    (["--set", "config.synchronous_mode=maybe"], "config/synchronous_mode"),
    (["--set", "config.http_listen="], "config.http_listen"),
    (["--set", "config.failsafe_mode=yes", "--set", "config.failsafe_listen="],
     "config.failsafe_listen"),
    (["--set", "postgres.terminationGracePeriodSeconds=30"],
     "postgres.terminationGracePeriodSeconds"),
    (["--set", "services.primary.port=70000"], "services/primary/port"),
    (["--set", "pgpool.nodePort.port=80"], "pgpool/nodePort/port"),
    (["--set", "pgpool.nodePort.name=Not_A_Name"], "pgpool/nodePort/name"),
    (["--set", "client.kind=Job"], "client/kind"),
    (["--set", "postgres.updateStrategy=Never"], "postgres/updateStrategy"),
    (["--set", "secrets.keys.superuser=a/b"], "secrets/keys/superuser"),
    (["--set", "secrets.keys.replication=superuser"], "secrets.keys"),
]

# Volume types Pod Security Admission "restricted" allows.
PSA_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
               "persistentVolumeClaim", "projected", "secret"}


def ok(what):
    print(f"ok: {what}")


def fail(what):
    print(f"FAIL: {what}")
    FAILURES.append(what)


def check(condition, what, detail=""):
    if condition:
        ok(what)
    else:
        fail(what + (f": {detail}" if detail else ""))
    return condition


# --------------------------------------------------------------------------
# helm


def find_helm(source_dir, given):
    """The helm of scripts/lib.sh's ensure_helm, or None."""
    if given:
        return given
    if os.environ.get("PGLEASE_HELM"):
        return os.environ["PGLEASE_HELM"]
    with open(os.path.join(source_dir, "tests", "k8s", "helm", "go.mod"),
              encoding="utf-8") as handle:
        pin = re.search(r"^\s*helm\.sh/helm/v3\s+(\S+)", handle.read(), re.M)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    if pin:
        path = os.path.join(cache, "pglease", f"helm-{pin.group(1)}", "helm")
        if os.access(path, os.X_OK):
            return path
    return shutil.which("helm")


class Helm:
    def __init__(self, path, chart_dir):
        self.path = path
        self.chart = chart_dir

    def run(self, *args):
        return subprocess.run([self.path, *args], capture_output=True,
                              text=True, timeout=120, check=False)

    def template(self, args, release="pg", namespace="default"):
        """(docs, None) or (None, error text)."""
        result = self.run("template", release, self.chart, "--namespace",
                          namespace, *args)
        if result.returncode != 0:
            return None, result.stderr.strip()
        docs = [d for d in yaml.safe_load_all(result.stdout) if d]
        return docs, None

    def lint(self, args, namespace="default"):
        return self.run("lint", "--strict", self.chart, "--namespace",
                        namespace, *args)


# --------------------------------------------------------------------------
# one rendering


def objects(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def name_of(obj):
    return obj["metadata"]["name"]


def the(docs, kind, name=None):
    found = [d for d in objects(docs, kind) if name in (None, name_of(d))]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got " \
        f"{[name_of(d) for d in found]}"
    return found[0]


def pod_specs(docs):
    """(owner, pod template metadata, pod spec) of every workload."""
    out = []
    for kind in ("StatefulSet", "Deployment"):
        for obj in objects(docs, kind):
            tpl = obj["spec"]["template"]
            out.append((f"{kind} {name_of(obj)}", tpl.get("metadata", {}),
                        tpl["spec"]))
    for obj in objects(docs, "Pod"):
        out.append((f"Pod {name_of(obj)}", obj["metadata"], obj["spec"]))
    return out


def containers(spec):
    return spec.get("initContainers", []) + spec.get("containers", [])


def check_workloads(docs, label):
    services = {name_of(s): s for s in objects(docs, "Service")}
    for kind in ("StatefulSet", "Deployment"):
        for obj in objects(docs, kind):
            labels = obj["spec"]["template"]["metadata"]["labels"]
            selector = obj["spec"]["selector"]["matchLabels"]
            check(selector.items() <= labels.items(),
                  f"{label}: {kind} {name_of(obj)}: selector within the pod "
                  "labels")
    sts = the(docs, "StatefulSet")
    check(sts["spec"]["serviceName"] in services and
          services[sts["spec"]["serviceName"]]["spec"].get("clusterIP") ==
          "None", f"{label}: StatefulSet serviceName is the headless Service")
    spec = sts["spec"]["template"]["spec"]
    names = [c["name"] for c in containers(spec)]
    check(spec.get("shareProcessNamespace") is True and
          names == ["install-agent", "init", "postgres", "agent"],
          f"{label}: StatefulSet pods share the process namespace; "
          "containers install-agent, init, postgres, agent", str(names))
    return sts


def check_services(docs, label):
    pods = pod_specs(docs)
    for svc in objects(docs, "Service"):
        selector = dict(svc["spec"].get("selector") or {})
        role = selector.pop("pglease.io/role", None)
        if role is not None:
            # The agents set the role label; the cluster label is the pods'.
            check(role in ("primary", "replica"), f"{label}: Service "
                  f"{name_of(svc)}: role label value", role)
        owners = [owner for owner, meta, _ in pods
                  if selector.items() <= (meta.get("labels") or {}).items()]
        check(bool(owners) and bool(selector), f"{label}: Service "
              f"{name_of(svc)} selects pods of {owners or 'nothing'}")


def check_psa_restricted(docs, label):
    """What the "restricted" Pod Security Standard requires, on every pod
    and container, as rendered; and a read-only root filesystem."""
    for owner, _, spec in pod_specs(docs):
        pod_sc = spec.get("securityContext") or {}
        problems = []
        for field in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(field):
                problems.append(field)
        for vol in spec.get("volumes", []):
            kinds = set(vol) - {"name"}
            if not kinds <= PSA_VOLUMES:
                problems.append(f"volume {vol['name']} {sorted(kinds)}")
        if pod_sc.get("runAsUser") == 0:
            problems.append("pod runAsUser 0")
        for c in containers(spec):
            sc = c.get("securityContext") or {}
            where = f"{c['name']}:"
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where} allowPrivilegeEscalation")
            if sc.get("privileged"):
                problems.append(f"{where} privileged")
            caps = sc.get("capabilities") or {}
            if caps.get("drop") != ["ALL"] or set(caps.get("add") or []) - {
                    "NET_BIND_SERVICE"}:
                problems.append(f"{where} capabilities {caps}")
            if not (sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))):
                problems.append(f"{where} runAsNonRoot")
            if sc.get("runAsUser") == 0:
                problems.append(f"{where} runAsUser 0")
            seccomp = (sc.get("seccompProfile") or
                       pod_sc.get("seccompProfile") or {}).get("type")
            if seccomp not in ("RuntimeDefault", "Localhost"):
                problems.append(f"{where} seccompProfile {seccomp}")
            if sc.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where} readOnlyRootFilesystem")
            if any(p.get("hostPort") for p in c.get("ports", [])):
                problems.append(f"{where} hostPort")
        check(not problems, f"{label}: {owner}: PSA restricted and "
              "read-only root filesystems", "; ".join(problems))
        # One UID for the whole pod: the agent signals the postmaster.
        check(all(k in pod_sc for k in ("runAsUser", "runAsGroup",
                                         "fsGroup")) and
              not any("runAsUser" in (c.get("securityContext") or {})
                      for c in containers(spec)),
              f"{label}: {owner}: one UID (pod securityContext, no "
              "container override)")


def check_writable_mounts(docs, label):
    """With read-only root filesystems, every directory a container writes
    is a volume: /tmp everywhere but install-agent, the run and socket
    directories, PGDATA's PVC."""
    need = {"install-agent": {"/pglease/bin", "/pglease/sql"},
            "init": {"/tmp", "/run/pglease", "/var/run/postgresql"},
            "postgres": {"/tmp", "/run/pglease", "/var/run/postgresql"},
            "agent": {"/tmp", "/run/pglease", "/var/run/postgresql"},
            "pgpool": {"/tmp", "/run/pgpool"},
            "pgpool-follow": {"/tmp", "/run/pgpool"},
            "psql": {"/tmp"}}
    for owner, _, spec in pod_specs(docs):
        for c in containers(spec):
            writable = {m["mountPath"] for m in c.get("volumeMounts", [])
                        if not m.get("readOnly")}
            missing = need.get(c["name"], set()) - writable
            check(c["name"] in need and not missing, f"{label}: {owner}/"
                  f"{c['name']}: writable volumes for what it writes",
                  f"missing {sorted(missing)}")


def check_mounts(docs, label):
    configmaps = {name_of(c): c for c in objects(docs, "ConfigMap")}
    secrets = {name_of(s): s for s in objects(docs, "Secret")}
    check(not any("secretKeyRef" in json.dumps(spec)
                  for _, _, spec in pod_specs(docs)),
          f"{label}: no password in the environment (no secretKeyRef)")
    for owner, _, spec in pod_specs(docs):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        if owner.startswith("StatefulSet"):
            for claim in the(docs, "StatefulSet")["spec"][
                    "volumeClaimTemplates"]:
                volumes[claim["metadata"]["name"]] = {"pvc": True}
        for c in containers(spec):
            missing = [m["name"] for m in c.get("volumeMounts", [])
                       if m["name"] not in volumes]
            check(not missing, f"{label}: {owner}/{c['name']}: every mount "
                  "has a volume", str(missing))
        for vol in volumes.values():
            if "configMap" in vol:
                cm = configmaps.get(vol["configMap"]["name"])
                keys = [i["key"] for i in vol["configMap"].get("items", [])]
                check(cm is not None and all(k in cm["data"] for k in keys),
                      f"{label}: {owner}: ConfigMap volume {vol['name']} "
                      f"keys {keys} exist")
            if "secret" in vol:
                name = vol["secret"]["secretName"]
                mode = vol["secret"].get("defaultMode")
                check(mode in (0o400, 0o440), f"{label}: {owner}: Secret "
                      f"volume {vol['name']} mode 0o440 or 0o400", str(mode))
                keys = [i["key"] for i in vol["secret"].get("items", [])]
                if name in secrets:
                    check(all(k in secrets[name]["data"] for k in keys),
                          f"{label}: {owner}: Secret {name} keys {keys} "
                          "exist")


# --------------------------------------------------------------------------
# RBAC: the Role against the agent's calls


def agent_calls(source_dir):
    """(verb, apiGroup, resource, named) of every API call the agent makes:
    the kube_* functions lib/dcs-kube.c and lib/rollout-worker.c call on
    their client, each read in lib/kube.c (its object_path() resource and
    name and its kube_request() method, or its object_request() method,
    resource and name), and the watches lib/node-watch.c
    starts: a list and a watch of each collection path it builds
    (kube_lease_list_path: the Lease by field selector, named as RBAC sees
    it; kube_pod_list_path: the pods by label)."""
    with open(os.path.join(source_dir, "lib", "kube.c"),
              encoding="utf-8") as handle:
        kube = handle.read()
    used = set()
    for caller in ("dcs-kube.c", "rollout-worker.c"):
        with open(os.path.join(source_dir, "lib", caller),
                  encoding="utf-8") as handle:
            used |= set(re.findall(r"\b(kube_\w+)\(\w+->kube\b",
                                   handle.read()))
    with open(os.path.join(source_dir, "lib", "node-watch.c"),
              encoding="utf-8") as handle:
        watched = set(re.findall(r"\b(kube_\w+_list_path)\(",
                                 handle.read()))
    groups = {"LEASE_API": "coordination.k8s.io", "CORE_API": "",
              "APPS_API": "apps"}
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch",
             "DELETE": "delete"}
    calls = {}
    for func in sorted(watched):
        body = re.search(r"^int " + func + r"\(.*?^}", kube, re.M | re.S)
        path = body and re.search(r'object_path\((\w+), ns, "(\w+)", NULL,',
                                  body.group(0))
        if not path:
            calls[func] = None
            continue
        named = "fieldSelector=metadata.name" in body.group(0)
        for verb in ("list", "watch"):
            calls[f"{func} ({verb})"] = (verb, groups[path.group(1)],
                                         path.group(2), named)
    for func in sorted(used):
        body = re.search(r"^int " + func + r"\(.*?^}", kube, re.M | re.S)
        if not body:
            continue        # a helper of the client, not an API call
        path = re.search(r'object_path\((\w+), ns, "(\w+)", ([^,]+),',
                         body.group(0))
        listed = re.search(r"(kube_\w+_list_path)\(ns", body.group(0))
        method = re.search(r'kube_request\(k, "([A-Z]+)"', body.group(0))
        # A request on one named object through object_request(k, METHOD,
        # API, ns, "resource", name, ...).
        named_request = re.search(
            r'object_request\(k, "([A-Z]+)", (\w+), ns, "(\w+)", (\w+),',
            body.group(0))
        if named_request:
            verb = (verbs.get(named_request.group(1)) or "get")
            calls[func] = (verb, groups[named_request.group(2)],
                           named_request.group(3), True)
            continue
        if listed and method and method.group(1) == "GET":
            # A list through a collection path above (kube_pod_list).
            calls[func] = calls.get(f"{listed.group(1)} (list)")
            continue
        if not path or not method:
            calls[func] = None
            continue
        named = path.group(3).strip() != "NULL"
        verb = verbs.get(method.group(1)) or ("get" if named else "list")
        calls[func] = (verb, groups[path.group(1)], path.group(2), named)
    return calls


def allowed(role, verb, group, resource, name):
    for rule in role["rules"]:
        if (group in rule.get("apiGroups", []) and
                resource in rule.get("resources", []) and
                verb in rule.get("verbs", []) and
                (not rule.get("resourceNames") or
                 name in rule["resourceNames"])):
            return True
    return False


def check_rbac(docs, label, source_dir, values, calls):
    kinds = {d["kind"] for d in docs}
    check(not kinds & {"ClusterRole", "ClusterRoleBinding"},
          f"{label}: nothing cluster-wide")
    role = the(docs, "Role")
    binding = the(docs, "RoleBinding")
    sts = the(docs, "StatefulSet")
    pod_sa = sts["spec"]["template"]["spec"]["serviceAccountName"]
    check(binding["roleRef"]["name"] == name_of(role) and
          [s["name"] for s in binding["subjects"]] == [pod_sa] and
          binding["subjects"][0]["namespace"] == values["namespace"],
          f"{label}: RoleBinding: the Role, to the pods' ServiceAccount in "
          "the release's namespace")
    check(None not in calls.values() and len(calls) >= 6,
          f"{label}: the agent's API calls read from lib/kube.c", str(calls))
    sts_name = name_of(sts)
    leader = f"{values['cluster']}-leader"
    pods = [f"{sts_name}-{i}" for i in range(values["maxReplicas"])]
    by_name = {"leases": [leader], "statefulsets": [sts_name]}
    used = set()
    for func, (verb, group, resource, named) in sorted(calls.items()):
        names = by_name.get(resource, pods) if named else [None]
        denied = [n for n in names if not allowed(role, verb, group,
                                                  resource, n)]
        check(not denied, f"{label}: the Role grants {func}: {verb} "
              f"{resource}" + (" by name" if named else ""), str(denied))
        for i, rule in enumerate(role["rules"]):
            for n in names:
                if (group in rule["apiGroups"] and
                        resource in rule["resources"] and
                        verb in rule["verbs"] and
                        (not rule.get("resourceNames") or
                         n in rule["resourceNames"])):
                    used.add((i, verb))
    granted = {(i, v) for i, rule in enumerate(role["rules"])
               for v in rule["verbs"]}
    check(granted == used, f"{label}: the Role grants nothing the agent "
          "does not use", str(sorted(granted - used)))
    beyond = [
        ("patch", "", "pods", "some-other-pod"),
        ("patch", "", "pods", f"{sts_name}-{values['maxReplicas']}"),
        ("get", "", "pods", f"{sts_name}-0"),
        ("update", "", "pods", f"{sts_name}-0"),
        ("delete", "", "pods", "some-other-pod"),
        ("delete", "", "pods", f"{sts_name}-{values['maxReplicas']}"),
        ("get", "apps", "statefulsets", "other-sts"),
        ("list", "apps", "statefulsets", None),
        ("update", "apps", "statefulsets", sts_name),
        ("patch", "apps", "statefulsets", sts_name),
        ("delete", "apps", "statefulsets", sts_name),
        ("get", "coordination.k8s.io", "leases", "other-leader"),
        ("update", "coordination.k8s.io", "leases", "other-leader"),
        ("delete", "coordination.k8s.io", "leases", leader),
        ("list", "coordination.k8s.io", "leases", None),
        ("watch", "coordination.k8s.io", "leases", None),
        ("watch", "coordination.k8s.io", "leases", "other-leader"),
        ("list", "coordination.k8s.io", "leases", "other-leader"),
        ("get", "", "secrets", "anything"),
        ("watch", "", "secrets", None),
        ("watch", "", "configmaps", None),
    ]
    wrongly = [b for b in beyond if allowed(role, *b)]
    check(not wrongly, f"{label}: calls outside the Role are not granted",
          str(wrongly))
    return role


def docs_role(source_dir):
    """The Role of docs/kubernetes.md's "RBAC" section (its YAML block)."""
    with open(os.path.join(source_dir, "docs", "kubernetes.md"),
              encoding="utf-8") as handle:
        text = handle.read()
    section = text.split("## RBAC", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    return [d for d in yaml.safe_load_all(block)
            if d and d["kind"] == "Role"][0]


def normalize_rules(rules):
    """Rules with the Lease's, the StatefulSet's and the pods' names made
    generic."""
    out = []
    for rule in rules:
        sts = "statefulsets" in rule.get("resources", [])
        names = sorted({"<statefulset>" if sts else
                        "<cluster>-leader" if n.endswith("-leader") else
                        "<statefulset>-<i>" if re.search(r"-\d+$", n) else n
                        for n in rule.get("resourceNames", [])})
        out.append((tuple(sorted(rule.get("apiGroups", []))),
                    tuple(sorted(rule.get("resources", []))),
                    tuple(names), tuple(sorted(rule["verbs"]))))
    return sorted(out)


# --------------------------------------------------------------------------
# Pgpool-II


def check_pgpool(docs, label, values, sts):
    cm = [c for c in objects(docs, "ConfigMap")
          if "pgpool.conf" in c.get("data", {})]
    if not values["pgpool"]:
        check(not cm and not objects(docs, "Deployment") or
              all("pgpool" not in name_of(d) for d in
                  objects(docs, "Deployment")),
              f"{label}: no Pgpool-II")
        return
    conf = cm[0]["data"]["pgpool.conf"]
    settings = dict(re.findall(r"^([a-z_0-9]+)\s*=\s*'?([^'\n#]*?)'?\s*$",
                               conf, re.M))
    superuser = values["superuser"]
    check(settings.get("sr_check_user") == superuser and
          settings.get("health_check_user") == superuser and
          settings.get("sr_check_database") == values["database"] and
          settings.get("health_check_database") == values["database"],
          f"{label}: Pgpool-II checks the backends as config.superuser "
          f"({superuser}) in config.database", str({
              k: settings.get(k) for k in (
                  "sr_check_user", "health_check_user")}))
    dep = [d for d in objects(docs, "Deployment")
           if d["spec"]["template"]["metadata"]["labels"].get(
               "app.kubernetes.io/component") == "pgpool"][0]
    env = {e["name"]: e.get("value") for c in dep["spec"]["template"][
        "spec"]["containers"] for e in c.get("env", [])}
    check(env.get("PGPOOL_SUPERUSER") == superuser, f"{label}: pool_passwd "
          "is written for the same user (PGPOOL_SUPERUSER)")
    hosts = [v for k, v in sorted(settings.items())
             if re.fullmatch(r"backend_hostname\d+", k)]
    want = [f"{name_of(sts)}-{i}.{sts['spec']['serviceName']}."
            f"{values['namespace']}.svc.cluster.local"
            for i in range(values["replicas"])]
    check(sorted(hosts) == sorted(want), f"{label}: one Pgpool-II backend "
          "per StatefulSet pod, by its DNS name in the release's namespace",
          f"{hosts} vs {want}")


def check_pgpool_files(docs, chart_dir, source_dir):
    with open(os.path.join(chart_dir, "files", "pgpool.conf"),
              encoding="utf-8") as handle:
        text = handle.read()
    settings = dict(re.findall(r"^([a-z_0-9]+)\s*=\s*'?([^'\n#]*?)'?\s*$",
                               text, re.M))
    want = {"backend_clustering_mode": "streaming_replication",
            "failover_command": "", "follow_primary_command": "",
            "load_balance_mode": "on", "auto_failback": "on",
            "failover_on_backend_error": "off", "use_watchdog": "off"}
    wrong = {k: settings.get(k) for k, v in want.items()
             if settings.get(k) != v}
    check(not wrong, "pgpool.conf: streaming replication, no failover of "
          "its own, load balancing, auto_failback", str(wrong))
    check(all(int(settings.get(k, "0")) > 0
              for k in ("sr_check_period", "health_check_period")),
          "pgpool.conf: sr_check and health_check enabled")
    check(not re.search(r"^(backend_\w+\d+|\w+_check_(user|database))\s*=",
                        text, re.M),
          "pgpool.conf ships without backends and without the checks' user "
          "(the chart appends them)")
    (cm,) = [c for c in objects(docs, "ConfigMap")
             if "pgpool.conf" in c["data"]]
    rendered = cm["data"]["pgpool.conf"]
    check(rendered.startswith(text.strip()), "the ConfigMap's pgpool.conf "
          "is files/pgpool.conf plus what the chart appends")
    appended = re.findall(r"^([a-z_]+?)0? = ", rendered[len(text.strip()):],
                          re.M)
    with open(os.path.join(source_dir, "tests", "integration",
                           "test_pgpool.py"), encoding="utf-8") as handle:
        source = handle.read()
    tested = []
    for name in ("CHECK_KEYS", "BACKEND_KEYS"):
        found = re.search(name + r" = \(([^)]*)\)", source, re.S)
        tested += re.findall(r'"([a-z_]+)"', found.group(1)) if found else []
    check(appended[:len(tested)] == tested, "the chart appends the keys "
          "test_pgpool.py appends, in its order", f"{appended} vs {tested}")


# --------------------------------------------------------------------------
# the rest


def check_config(docs, agent, label):
    """pglease.conf as rendered passes the built agent's --check-config."""
    (cm,) = [c for c in objects(docs, "ConfigMap")
             if "pglease.conf" in c.get("data", {})]
    text = cm["data"]["pglease.conf"]
    per_pod = {"PGLEASE_CLUSTER_NAME": "pg", "PGLEASE_NODE_NAME": "pg-0",
               "PGLEASE_NAMESPACE": "default",
               "PGLEASE_CONNECT_ADDRESS": "pg-0.pg-headless.default.svc"}
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PGLEASE_") and k != "KUBECONFIG"}
    env.update(per_pod)
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as handle, \
            tempfile.TemporaryDirectory() as secrets:
        # --check-config reads the password files, which the pod has from
        # its Secret: here stand-ins at the same names.
        def stand_in(match):
            path = os.path.join(secrets, os.path.basename(match.group(2)))
            with open(path, "w", encoding="utf-8") as secret:
                secret.write("stand-in\n")
            return f"{match.group(1)}'{path}'"
        handle.write(re.sub(r"^(\w+_password_file\s*=\s*)'?([^'\n]+)'?$",
                            stand_in, text, flags=re.M))
        handle.flush()
        result = subprocess.run([agent, "-c", handle.name, "--check-config"],
                                capture_output=True, text=True, env=env,
                                timeout=30, check=False)
    check(result.returncode == 0, f"{label}: the rendered pglease.conf "
          "passes pglease-agent --check-config", result.stderr.strip())
    return result.stdout


def check_values_keys(values, check_config_out, schema):
    config = values["config"]
    known = set(re.findall(r"^([a-z_]+) = ", check_config_out, re.M))
    secret_inline = {k for k in known if k.endswith("_password")
                     or k == "failsafe_token"}
    check(set(config) == known - secret_inline,
          "values.yaml config: every pglease.conf key (inline passwords "
          "left out)", f"missing {sorted(known - secret_inline - set(config))}"
          f" unknown {sorted(set(config) - known)}")
    props = schema["properties"]["config"]["properties"]
    check(set(props) == set(config), "values.schema.json config: the keys "
          "of values.yaml", str(set(props) ^ set(config)))


def check_schema_enums(schema, source_dir):
    """The schema's config enums are lib/config.c's."""
    with open(os.path.join(source_dir, "lib", "config.c"),
              encoding="utf-8") as handle:
        text = handle.read()
    arrays = {name: re.findall(r'"([^"]+)"', body) for name, body in
              re.findall(r"static const char \*const (\w+)\[\] = \{([^}]*)\}",
                         text)}
    keys = dict(re.findall(r"KEY_ENUM\((\w+),\s*\"[^\"]*\",\s*(\w+)", text))
    props = schema["properties"]["config"]["properties"]
    wrong = {k: (props.get(k, {}).get("enum"), arrays.get(a))
             for k, a in keys.items()
             if props.get(k, {}).get("enum") != arrays.get(a)}
    check(keys and not wrong, "values.schema.json config enums are "
          "lib/config.c's", str(wrong))


def check_values_documented(chart_dir):
    """Every key of values.yaml has a comment line right above it, except
    the contents of resources blocks (Kubernetes' own)."""
    undocumented, stack = [], []
    with open(os.path.join(chart_dir, "values.yaml"), encoding="utf-8") as h:
        lines = h.read().splitlines()
    previous = ""
    for line in lines:
        match = re.match(r"^(\s*)([A-Za-z_][\w.-]*):", line)
        if match:
            depth = len(match.group(1))
            while stack and stack[-1][0] >= depth:
                stack.pop()
            exempt = any(k == "resources" for _, k in stack)
            if not exempt and not previous.lstrip().startswith("#"):
                undocumented.append(match.group(2))
            stack.append((depth, match.group(2)))
        if line.strip():
            previous = line
    check(not undocumented, "values.yaml documents every key",
          str(undocumented))


def agentctl_supports(agentctl, args):
    words = [a for a in args if not a.startswith("-")]
    command = []
    for word in words:
        if word in ("any", "primary", "replica") or word.isdigit():
            break
        command.append(word)
    result = subprocess.run([agentctl, *command, "--help"],
                            capture_output=True, text=True, timeout=30,
                            check=False)
    options = [a.split("=")[0] for a in args if a.startswith("--")]
    return result.returncode == 0 and all(o in result.stdout for o in options)


def check_probes_and_hooks(docs, values_yaml, agentctl, chart_dir,
                           label="default values"):
    """The probes and pre-stop hooks of a rendering of values_yaml (the
    values it was rendered with)."""
    sts = the(docs, "StatefulSet")
    spec = sts["spec"]["template"]["spec"]
    by_name = {c["name"]: c for c in spec["containers"]}
    ready = by_name["postgres"]["readinessProbe"]["exec"]["command"]
    check(ready[0].endswith("/agentctl"),
          f"{label}: postgres readiness runs agentctl", f"{ready}")
    check(agentctl_supports(agentctl, ready[1:]),
          f"{label}: readiness: agentctl {' '.join(ready[1:])}: the build "
          "has it")
    # The agent container's probes ask its HTTP API on the named port.
    agent = by_name["agent"]
    ports = {p.get("name"): p["containerPort"] for p in agent.get("ports", [])}
    listen = str(values_yaml["config"]["http_listen"])
    check(ports.get("http") == int(listen.rsplit(":", 1)[1]),
          f"{label}: agent container: port http is config.http_listen's "
          f"({listen})", str(ports))
    for kind, path in (("livenessProbe", "/liveness"),
                       ("readinessProbe", "/readiness")):
        get = agent.get(kind, {}).get("httpGet", {})
        check(get.get("path") == path and get.get("port") == "http",
              f"{label}: agent {kind}: GET {path} on port http",
              str(agent.get(kind)))
    check(agentctl_supports(agentctl, ["demote", "--wait", "--timeout"]),
          f"{label}: agentctl demote --wait --timeout: the build has it")
    hook = by_name["postgres"]["lifecycle"]["preStop"]["exec"]["command"]
    cm = [c for c in objects(docs, "ConfigMap")
          if os.path.basename(hook[-1]) in c.get("data", {})]
    body = cm[0]["data"][os.path.basename(hook[-1])] if cm else ""
    lines = [l for l in body.splitlines() if l.strip()]
    check(len(lines) == 2 and re.search(r"^exec \S*agentctl demote --wait "
                                        r"--timeout ", lines[1]),
          f"{label}: postgres preStop: exec agentctl demote --wait --timeout "
          "N", body)
    # Issue 17, item 3: an isolated primary fails its readiness from
    # renew_deadline after its last renewal; it must have left the
    # Services before anyone may take the Lease (lease_duration).
    lease = float(re.match(r"(\d+)", values_yaml["config"]["lease_duration"]).group(1))
    renew = float(re.match(r"(\d+)", values_yaml["config"]["renew_deadline"]).group(1))
    for container in ("postgres", "agent"):
        probe = by_name[container]["readinessProbe"]
        window = renew + probe["periodSeconds"] * probe["failureThreshold"]
        check(window < lease,
              f"{label}: {container} readiness: renew_deadline {renew:g} + "
              f"periodSeconds {probe['periodSeconds']} x failureThreshold "
              f"{probe['failureThreshold']} < lease_duration {lease:g}")
    check("--timeout" in ready,
          f"{label}: postgres readiness: agentctl with --timeout", f"{ready}")
    stop = float(re.match(r"(\d+)",
                          values_yaml["config"]["stop_timeout"]).group(1))
    grace = spec["terminationGracePeriodSeconds"]
    demote = values_yaml["postgres"]["demoteTimeout"]
    check(grace > demote + stop, f"{label}: terminationGracePeriodSeconds "
          f"{grace} > demoteTimeout {demote} + stop_timeout {stop:g}")
    check("preStop" in by_name["agent"].get("lifecycle", {}),
          f"{label}: agent preStop waits for the hand-over")
    for script in sorted(os.listdir(os.path.join(chart_dir, "files"))):
        if script.endswith(".sh"):
            result = subprocess.run(
                ["sh", "-n", os.path.join(chart_dir, "files", script)],
                capture_output=True, text=True, check=False)
            check(result.returncode == 0, f"files/{script}: sh -n",
                  result.stderr)


def group_alive(pgid):
    """Whether a process of group pgid is alive (zombies do not count)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii",
                      errors="replace") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def check_client(docs, label, kind):
    """The client is a Deployment (helm upgrade replaces its pod), or with
    client.kind=Pod the bare Pod <base name>-client; its shell exits on
    SIGTERM at once."""
    clients = [d for d in docs if d["kind"] in ("Deployment", "Pod") and
               name_of(d).endswith("-client")]
    if kind == "Pod":
        if not check(len(clients) == 1 and clients[0]["kind"] == "Pod" and
                     clients[0]["spec"].get("restartPolicy", "Always") ==
                     "Always" and not any(d["kind"] == "Deployment"
                                          for d in clients),
                     f"{label}: the client is the bare Pod <base "
                     "name>-client (client.kind=Pod), no Deployment",
                     str([(d["kind"], name_of(d)) for d in clients])):
            return
        spec = clients[0]["spec"]
    else:
        if not check(len(clients) == 1 and
                     clients[0]["kind"] == "Deployment" and
                     not objects(docs, "Pod") and
                     clients[0]["spec"]["strategy"]["type"] == "Recreate",
                     f"{label}: the client is a Deployment (Recreate), no "
                     "bare Pod",
                     str([(d["kind"], name_of(d)) for d in clients])):
            return
        spec = clients[0]["spec"]["template"]["spec"]
    (c,) = spec["containers"]
    script = c["command"][-1]
    with tempfile.TemporaryDirectory() as tmp:
        secret = os.path.join(tmp, "superuser")
        with open(secret, "w", encoding="utf-8") as handle:
            handle.write("pw\n")
        local = script.replace("/tmp/", tmp + "/") \
            .replace("/run/secrets/pglease/superuser", secret)
        env = dict(os.environ, PGUSER="postgres")
        proc = subprocess.Popen([*c["command"][:-1], local], env=env,
                                start_new_session=True,
                                stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while not os.path.exists(os.path.join(tmp, ".pgpass")) and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)     # the trap is set right after .pgpass
            with open(os.path.join(tmp, ".pgpass"), encoding="utf-8") as h:
                pgpass = h.read()
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=5)
            elapsed = time.monotonic() - started
            deadline = time.monotonic() + 2
            while (left := group_alive(proc.pid)) and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
            check(code == 0 and elapsed < 2 and not left and
                  pgpass == "*:*:*:postgres:pw\n",
                  f"{label}: the client's shell writes .pgpass and exits 0 "
                  "on SIGTERM at once, its sleep with it",
                  f"exit {code} after {elapsed:.1f} s, sleep left {left}, "
                  f"{pgpass!r}")
        except (subprocess.TimeoutExpired, OSError) as exc:
            fail(f"{label}: the client's shell on SIGTERM: {exc}")
        finally:
            # The shell's sleep too, should the trap not have ended it.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def check_yamllint(chart_dir):
    config = os.path.join(HERE, "yamllint.yaml")
    files = [os.path.join(chart_dir, f) for f in (
        "values.yaml", "values-reference.yaml", "Chart.yaml")]
    try:
        result = subprocess.run(["yamllint", "-s", "-c", config, *files],
                                capture_output=True, text=True, timeout=60,
                                check=False)
    except FileNotFoundError:
        fail("yamllint is not installed (Debian package yamllint)")
        return
    check(result.returncode == 0, "yamllint values.yaml "
          "values-reference.yaml Chart.yaml",
          result.stdout.strip())


def pod_checksum(docs, kind, component):
    for obj in objects(docs, kind):
        tpl = obj["spec"]["template"]["metadata"]
        if tpl["labels"].get("app.kubernetes.io/component") == component:
            return tpl.get("annotations", {}).get("checksum/config")
    return None


def check_checksums(helm):
    """The pods' checksum annotations follow the rendered configuration."""
    base, _ = helm.template(PASSWORDS)
    again, _ = helm.template(PASSWORDS)
    five, _ = helm.template(PASSWORDS + ["--set", "postgres.replicas=5"])
    level, _ = helm.template(PASSWORDS + ["--set", "config.log_level=debug"])
    user, _ = helm.template(PASSWORDS + ["--set", "config.superuser=dba"])
    pgpool = [pod_checksum(d, "Deployment", "pgpool")
              for d in (base, again, five, level, user)]
    postgres = [pod_checksum(d, "StatefulSet", "postgres")
                for d in (base, again, five, level, user)]
    check(None not in pgpool and pgpool[0] == pgpool[1] and
          pgpool[2] != pgpool[0] and pgpool[4] != pgpool[0],
          "Pgpool-II's checksum/config: the same for the same values, "
          "another when the rendered backends (5 replicas) or the checks' "
          "user change", str(pgpool))
    check(None not in postgres and postgres[0] == postgres[1] and
          postgres[3] != postgres[0],
          "the PostgreSQL pods' checksum/config changes with pglease.conf",
          str(postgres))


def check_passwords(helm):
    """Where lookup cannot read the cluster, no password is generated."""
    docs, error = helm.template([])
    check(docs is None and "secrets.existingSecret" in (error or "") and
          "secrets.superuserPassword" in (error or ""),
          "helm template without passwords or existingSecret fails, naming "
          "secrets.existingSecret and the password keys", error or "rendered")
    docs, error = helm.template(["--set", "secrets.existingSecret=mine"])
    check(docs is not None and not any(
        name_of(s) == "pg" for s in objects(docs, "Secret")),
          "with secrets.existingSecret, helm template renders and makes no "
          "Secret of its own", error or "")
    if docs:
        pcp = [s for s in objects(docs, "Secret") if name_of(s) == "pg-pgpool"]
        check(bool(pcp) and pcp[0]["data"]["pcp"],
              "the PCP password is still generated (read only at Pgpool-II's "
              "start)")
    docs, error = helm.template(PASSWORDS)
    secret = the(docs, "Secret", "pg") if docs else {"data": {}}
    check(secret["data"].get("superuser") == "c3UtcHc=" and
          secret["metadata"].get("annotations", {}).get(
              "helm.sh/resource-policy") == "keep",
          "given passwords are stored as given; the Secret outlives "
          "helm uninstall")


def expected_values(args, release, namespace):
    """What check_rendering needs to know about a variation's values: its
    --set values, else its -f files' (the last file first), else the
    defaults."""
    sets, files = {}, []
    for flag, value in zip(args[::2], args[1::2]):
        if flag in ("--set", "--set-string"):
            key, _, val = value.partition("=")
            sets[key] = val
        elif flag in ("-f", "--values"):
            with open(value, encoding="utf-8") as handle:
                files.insert(0, yaml.safe_load(handle) or {})

    def get(key, default):
        if key in sets:
            return sets[key]
        for tree in files:
            for part in key.split("."):
                tree = tree.get(part) if isinstance(tree, dict) else None
            if tree not in (None, ""):
                return tree
        return default

    full = get("fullnameOverride", release)
    return {
        "namespace": namespace,
        "cluster": get("clusterName", full),
        "replicas": int(get("postgres.replicas", 3)),
        "maxReplicas": int(get("postgres.maxReplicas", 9)),
        "pgpool": str(get("pgpool.enabled", True)).lower() == "true",
        "superuser": get("config.superuser", "postgres"),
        "database": get("config.database", "postgres"),
        "client": str(get("client.enabled", False)).lower() == "true",
        "clientKind": get("client.kind", "Deployment"),
        "updateStrategy": get("postgres.updateStrategy", "OnDelete"),
    }


def merged(base, over):
    """The values base with the values file over on top (helm's merge)."""
    out = dict(base)
    for key, value in over.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and \
            isinstance(out.get(key), dict) else value
    return out


def check_rolling_update(sts, label, values):
    """The StatefulSet's updateStrategy is postgres.updateStrategy, and
    every container of its pods names the StatefulSet to the agent (the
    leader's rolling update reads and deletes by that name)."""
    check(sts["spec"]["updateStrategy"] == {"type": values["updateStrategy"]},
          f"{label}: StatefulSet updateStrategy {values['updateStrategy']}",
          str(sts["spec"]["updateStrategy"]))
    named = {c["name"]: {e["name"]: e.get("value") for e in c.get("env", [])
                         }.get("PGLEASE_STATEFULSET")
             for c in containers(sts["spec"]["template"]["spec"])
             if c["name"] != "install-agent"}
    check(set(named.values()) == {name_of(sts)},
          f"{label}: PGLEASE_STATEFULSET is the StatefulSet's name in the "
          "init, postgres and agent containers", str(named))


def check_rendering(docs, label, values, source_dir, calls):
    sts = check_workloads(docs, label)
    check_services(docs, label)
    check_psa_restricted(docs, label)
    check_writable_mounts(docs, label)
    check_mounts(docs, label)
    role = check_rbac(docs, label, source_dir, values, calls)
    check_pgpool(docs, label, values, sts)
    check(sts["spec"]["replicas"] == values["replicas"],
          f"{label}: {values['replicas']} PostgreSQL pods")
    check_rolling_update(sts, label, values)
    if values["client"]:
        check_client(docs, label, values["clientKind"])
    return role


def check_reference_names(docs):
    """The reference deployment's names, exactly as its users type them."""
    ref = REFERENCE
    names = {(d["kind"], name_of(d)) for d in docs}
    want = {("StatefulSet", ref["statefulset"]),
            ("Service", ref["pgpool service"]),
            ("Service", ref["nodeport service"]),
            ("Pod", ref["client pod"])}
    check(want <= names, "reference: StatefulSet, Services and client Pod "
          "by their names", str(sorted(want - names)))
    if not want <= names:
        return
    sts = the(docs, "StatefulSet", ref["statefulset"])
    check(sts["spec"]["replicas"] == ref["replicas"],
          f"reference: {ref['statefulset']} has {ref['replicas']} replicas",
          str(sts["spec"]["replicas"]))
    binding = the(docs, "RoleBinding")
    check([s.get("namespace") for s in binding["subjects"]] ==
          [ref["namespace"]], f"reference: the release namespace is "
          f"{ref['namespace']} (the RoleBinding's subject)")
    svc = the(docs, "Service", ref["pgpool service"])
    check(svc["spec"]["type"] == "ClusterIP" and
          [p["port"] for p in svc["spec"]["ports"]] == [ref["port"]] and
          svc["spec"]["selector"].get("app.kubernetes.io/component") ==
          "pgpool", f"reference: {ref['pgpool service']}: Pgpool-II on "
          f"port {ref['port']}", str(svc["spec"]))
    node = the(docs, "Service", ref["nodeport service"])
    check(node["spec"]["type"] == "NodePort" and
          [(p["port"], p.get("nodePort")) for p in node["spec"]["ports"]] ==
          [(ref["port"], ref["node port"])] and
          node["spec"]["selector"] == svc["spec"]["selector"],
          f"reference: {ref['nodeport service']}: NodePort "
          f"{ref['node port']} to Pgpool-II", str(node["spec"]))
    client = the(docs, "Pod", ref["client pod"])
    env = {e["name"]: e.get("value") for e in
           client["spec"]["containers"][0]["env"]}
    check((env.get("PGHOST"), env.get("PGPORT")) ==
          (ref["pgpool service"], str(ref["port"])),
          f"reference: {ref['client pod']} connects to "
          f"{ref['pgpool service']}:{ref['port']}", str(env))
    # The chart makes no Secret of its own: the pods mount the reference
    # Secret, the superuser's password from its key postgresql-password.
    check(("Secret", ref["secret"]) not in names, "reference: the chart "
          f"makes no {ref['secret']} (existingSecret: created beforehand)")
    mounts = {}
    for owner, _, spec in pod_specs(docs):
        for vol in spec.get("volumes", []):
            if "secret" in vol and any(i["path"] == "superuser" for i in
                                       vol["secret"].get("items", [])):
                mounts[owner] = (vol["secret"]["secretName"], [
                    i["key"] for i in vol["secret"]["items"]
                    if i["path"] == "superuser"])
    check(len(mounts) == 3 and all(
        m == (ref["secret"], [ref["superuser key"]])
        for m in mounts.values()),
          f"reference: PostgreSQL, Pgpool-II and the client read the "
          f"superuser's password from {ref['secret']}, key "
          f"{ref['superuser key']}", str(mounts))


def without_helm_labels(obj):
    """obj with the labels of HELM_LABELS taken out of every labels map."""
    if isinstance(obj, dict):
        return {k: (without_helm_labels(v) if k != "labels" or
                    not isinstance(v, dict) else
                    {lk: lv for lk, lv in v.items() if lk not in HELM_LABELS})
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [without_helm_labels(v) for v in obj]
    return obj


def differences(chart, file, path=""):
    """Where two parsed objects differ, as lines "path: ...", at most a
    few per object."""
    where = path or "/"
    if type(chart) is not type(file):
        return [f"{where}: chart {chart!r:.80}, file {file!r:.80}"]
    if isinstance(chart, dict):
        out = []
        for key in sorted(set(chart) | set(file), key=str):
            sub = f"{path}.{key}"
            if key not in file:
                out.append(f"{sub}: in the chart, not in the file")
            elif key not in chart:
                out.append(f"{sub}: in the file, not in the chart")
            else:
                out += differences(chart[key], file[key], sub)
        return out
    if isinstance(chart, list):
        if len(chart) != len(file):
            return [f"{where}: {len(chart)} items in the chart, "
                    f"{len(file)} in the file"]
        return [d for i, (a, b) in enumerate(zip(chart, file))
                for d in differences(a, b, f"{path}[{i}]")]
    if chart == file:
        return []
    if isinstance(chart, str) and "\n" in chart + file:
        lines = list(zip(chart.splitlines(), file.splitlines()))
        line = next((i for i, (a, b) in enumerate(lines) if a != b),
                    len(lines))
        pair = (chart.splitlines() + [""])[line], \
            (file.splitlines() + [""])[line]
        return [f"{where}, line {line + 1}: chart {pair[0]!r:.80}, file "
                f"{pair[1]!r:.80}"]
    return [f"{where}: chart {chart!r:.80}, file {file!r:.80}"]


def readme_secrets(readme):
    """{secret: {keys}} of the `kubectl create secret generic` commands of
    a README (continuation lines joined)."""
    text = readme.replace("\\\n", " ")
    out = {}
    for line in text.splitlines():
        found = re.search(r"kubectl\b.*\bcreate secret generic\s+([-a-z0-9]+)"
                          r"(.*)", line)
        if found:
            out.setdefault(found.group(1), set()).update(
                re.findall(r"--from-literal=([-._a-zA-Z0-9]+)=",
                           found.group(2)))
    return out


def check_reference_manifests(helm, source_dir):
    """deploy/reference/ is the chart rendered with values-reference.yaml
    (scripts/render-reference), object by object: one object per file,
    the same objects, equal once helm's labels are taken out, no Secret
    (no password in the repository), each in the directory of its part,
    and the Secrets they mount created by the README's commands."""
    ref = REFERENCE
    top = os.path.join(source_dir, ref["manifests"])
    rerender = "run scripts/render-reference and commit the result"
    docs, error = helm.template(["-f", os.path.join(
        helm.chart, "values-reference.yaml")], ref["release"],
                                ref["namespace"])
    if not check(docs is not None, "helm template -f values-reference.yaml "
                 f"--namespace {ref['namespace']} renders without any "
                 "password given", error):
        return
    check_reference_names(docs)
    want = {(d["kind"], name_of(d)): without_helm_labels(d)
            for d in docs if d["kind"] != "Secret"}
    found, problems = {}, []
    for sub in ref["directories"]:
        directory = os.path.join(top, sub)
        files = sorted(f for f in os.listdir(directory)
                       if f.endswith(".yaml")) \
            if os.path.isdir(directory) else []
        check(bool(files), f"{ref['manifests']}/{sub}/ has manifests")
        for name in files:
            rel = os.path.join(ref["manifests"], sub, name)
            with open(os.path.join(directory, name), encoding="utf-8") as h:
                text = h.read()
            objs = [d for d in yaml.safe_load_all(text) if d]
            if len(objs) != 1:
                problems.append(f"{rel}: {len(objs)} objects, not one")
                continue
            obj = objs[0]
            key = (obj.get("kind"), obj.get("metadata", {}).get("name"))
            if "helm.sh/" in text or "managed-by" in text:
                problems.append(f"{rel}: says helm manages it")
            if key[0] == "Secret":
                problems.append(f"{rel}: a Secret in the repository")
                continue
            component = (obj["metadata"].get("labels") or {}).get(
                "app.kubernetes.io/component")
            home = component if component in ("pgpool", "client") \
                else "postgresql"
            if sub != home:
                problems.append(f"{rel}: {key[0]} {key[1]} belongs in "
                                f"{home}/")
            if key in found:
                problems.append(f"{rel}: {key[0]} {key[1]} again (also "
                                f"{found[key][0]})")
            found[key] = (rel, obj)
    for key in sorted(set(want) - set(found)):
        problems.append(f"{key[0]} {key[1]}: rendered by the chart, in no "
                        f"file of {ref['manifests']}/ ({rerender})")
    for key in sorted(set(found) - set(want)):
        problems.append(f"{found[key][0]}: {key[0]} {key[1]} is not "
                        f"rendered by the chart ({rerender})")
    for key in sorted(set(found) & set(want)):
        rel, obj = found[key]
        diff = differences(want[key], obj)
        if diff:
            problems.append(f"{rel}: differs from the chart ({rerender}): "
                            + "; ".join(diff[:5]) +
                            (f"; and {len(diff) - 5} more" if len(diff) > 5
                             else ""))
    check(not problems, f"{ref['manifests']}/: the chart rendered with "
          "values-reference.yaml, object by object, without helm's labels "
          "and Secrets", "\n  " + "\n  ".join(problems))
    # What the manifests mount but do not ship, the README creates.
    mounted = {}
    for _, obj in found.values():
        for _, _, spec in pod_specs([obj]):
            for vol in spec.get("volumes", []):
                if "secret" in vol:
                    mounted.setdefault(vol["secret"]["secretName"], set()) \
                        .update(i["key"] for i in vol["secret"].get(
                            "items", []))
    try:
        with open(os.path.join(top, "README.md"), encoding="utf-8") as h:
            created = readme_secrets(h.read())
    except OSError as exc:
        created = {"": str(exc)}
    missing = {s: sorted(k - created.get(s, set()))
               for s, k in mounted.items() if k - created.get(s, set())}
    check(mounted and not missing and set(created) == set(mounted),
          f"{ref['manifests']}/README.md creates every Secret the manifests "
          f"mount, with their keys ({sorted(mounted)})",
          f"missing {missing}, README creates {created}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=os.environ.get(
        "PGLEASE_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE))))
    parser.add_argument("--build", default=os.environ.get("PGLEASE_BUILD_DIR"))
    parser.add_argument("--helm")
    args = parser.parse_args()
    chart_dir = os.path.join(args.source, "charts", "pglease")
    build = args.build or os.path.join(args.source, "build")
    agentctl = os.path.join(build, "agent", "agentctl")
    agent = os.path.join(build, "agent", "pglease-agent")
    helm_path = find_helm(args.source, args.helm)
    if not helm_path:
        fail("no helm: run `source scripts/lib.sh && ensure_helm` (what "
             "scripts/test does) or pass --helm")
        return 1
    if not (os.access(agentctl, os.X_OK) and os.access(agent, os.X_OK)):
        fail(f"the agent programs are not built in {build}")
        return 1
    helm = Helm(helm_path, chart_dir)
    print(f"helm: {helm_path} {helm.run('version', '--short').stdout.strip()}")

    with open(os.path.join(chart_dir, "values.yaml"), encoding="utf-8") as h:
        values_yaml = yaml.safe_load(h)
    with open(os.path.join(chart_dir, "values.schema.json"),
              encoding="utf-8") as h:
        schema = json.load(h)
    check_yamllint(chart_dir)
    check_values_documented(chart_dir)
    check_schema_enums(schema, args.source)
    calls = agent_calls(args.source)

    lint = helm.lint([])
    check(lint.returncode == 0, "helm lint --strict, default values",
          lint.stdout + lint.stderr)
    check_passwords(helm)
    roles = []
    for label, extra, release, namespace in VARIATIONS:
        extra = [a.replace("@CHART@", chart_dir) for a in extra]
        lint = helm.lint(PASSWORDS + extra, namespace)
        check(lint.returncode == 0, f"helm lint --strict: {label}",
              lint.stdout + lint.stderr)
        docs, error = helm.template(PASSWORDS + extra, release, namespace)
        if not check(docs is not None, f"helm template: {label}", error):
            continue
        values = expected_values(PASSWORDS + extra, release, namespace)
        roles.append(check_rendering(docs, label, values, args.source, calls))
        if label == "default values":
            conf = check_config(docs, agent, label)
            check_values_keys(values_yaml, conf, schema)
            check_probes_and_hooks(docs, values_yaml, agentctl, chart_dir)
            check_pgpool_files(docs, chart_dir, args.source)
        elif label in ("synchronous mode", "non-default superuser"):
            check_config(docs, agent, label)
        elif label == REFERENCE_LABEL:
            check_config(docs, agent, label)
            with open(extra[1], encoding="utf-8") as handle:
                reference = merged(values_yaml, yaml.safe_load(handle))
            check_probes_and_hooks(docs, reference, agentctl, chart_dir,
                                   label)
    check_reference_manifests(helm, args.source)
    want = normalize_rules(docs_role(args.source)["rules"])
    check(roles and all(normalize_rules(r["rules"]) == want for r in roles),
          "the Role is docs/kubernetes.md's RBAC Role in every variation",
          f"docs {want} chart {normalize_rules(roles[0]['rules'])}"
          if roles else "no rendering")
    for extra, key in INVALID:
        docs, error = helm.template(PASSWORDS + extra)
        check(docs is None and key in (error or ""),
              f"invalid {' '.join(extra[1::2])}: fails naming {key}",
              error or "rendered")
    docs, error = helm.template(PASSWORDS + ["--set", "postgres.replicas=0",
                                             "--set", "pgpool.enabled=false"])
    check(docs is not None, "postgres.replicas=0 without Pgpool-II renders "
          "(a cluster scaled to zero)", error or "")
    check_checksums(helm)

    print("not checked here: server-side dry-run, Pod Security admission "
          "and RBAC enforcement by an API server (docs/kubernetes.md says "
          "where they are)")
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
