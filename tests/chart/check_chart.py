#!/usr/bin/env python3
"""Offline checks of charts/pglease, without helm and without a cluster.

    check_chart.py [--source DIR] [--build DIR]

There is no Helm on the build machines, and this is not a template
renderer. It reads each template as YAML after a simple, documented
substitution (template_to_yaml):

- comment blocks ({{/* ... */}}) and lines that are only control flow
  ({{- if }}, {{- else }}, {{- end }}, {{- range }}, {{- with }},
  {{- $x := ... }}) are dropped, so both branches of an if stay in;
- a line that is only `{{- include "NAME" . | nindent N }}` of a helper
  defined in templates/_helpers.tpl is replaced by the helper's body,
  itself substituted, indented N;
- a line that is only `{{- .Files.Get "files/F" | nindent N }}` is
  replaced by that file, indented N (the ConfigMaps' scripts and configs);
- any other line that is only an expression (toYaml ... | nindent N) becomes
  a placeholder entry `__tpl__: TPL` at indentation N;
- every remaining {{ expression }} becomes the scalar TPL_<expression with
  every run of other characters than letters and digits turned into one
  "_">, so that the same expression (a name, a label value) gives the same
  placeholder everywhere and names can be compared across objects; a
  template variable ($sts, set by `{{- $sts := include ... }}`) stands for
  its expression, and `include "pglease.secretName"` for the chart's own
  Secret's name (it is that unless secrets.existingSecret is set).

Then it checks that names, labels and selectors agree, that the Role is the
one of docs/kubernetes.md, that mounted ConfigMap and Secret keys exist,
that the probes and the pre-stop hook call agentctl commands the build has,
that pglease.conf from values.yaml is valid for the built agent, that
values.yaml documents every key, and that pgpool.conf keeps the settings the
design needs. yamllint checks values.yaml and Chart.yaml. Exit status 0
when every check passes, 1 otherwise; it prints what it cannot check.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))

FAILURES = []


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
# templates -> YAML

EXPR = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")
CONTROL = re.compile(r"^(if|else|end|range|with|define|block)\b|^\$[\w]+\s*:?=")
ONLY_EXPR = re.compile(r"^(\s*)\{\{-?\s*(.*?)\s*-?\}\}\s*$")
NINDENT = re.compile(r"\|\s*n?indent\s+(\d+)\s*$")
INCLUDE = re.compile(r'^include\s+"([^"]+)"')
FILES_GET = re.compile(r'^\.Files\.Get\s+"([^"]+)"')


# The helper that names the Secret the pods mount is the chart Secret's
# name (include "pglease.fullname") unless secrets.existingSecret is set.
ALIASES = {'include "pglease.secretName" .': 'include "pglease.fullname" .'}


def placeholder(expr, variables=None):
    var = re.fullmatch(r"\$(\w+)", expr.strip())
    if var and variables and var.group(1) in variables:
        expr = variables[var.group(1)]
    expr = ALIASES.get(expr.strip(), expr)
    return "TPL_" + re.sub(r"[^A-Za-z0-9]+", "_", expr).strip("_")


def strip_comments(text):
    """Remove {{/* ... */}} and {{- /* ... */}} blocks (may span lines)."""
    return re.sub(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", "", text, flags=re.S)


def parse_helpers(text):
    """name -> body (text) of each {{- define "name" -}} ... {{- end -}},
    matching nested if/range/with ... end."""
    text = strip_comments(text)
    helpers = {}
    pos = 0
    while True:
        start = re.compile(r'\{\{-?\s*define\s+"([^"]+)"\s*-?\}\}').search(
            text, pos)
        if not start:
            return helpers
        depth, cursor = 1, start.end()
        for match in EXPR.finditer(text, start.end()):
            word = match.group(1).split(" ")[0]
            if word in ("if", "range", "with", "define", "block"):
                depth += 1
            elif word == "end":
                depth -= 1
                if depth == 0:
                    helpers[start.group(1)] = text[start.end():match.start()]
                    cursor = match.end()
                    break
        pos = cursor


def template_to_yaml(text, helpers, chart_dir, indent=0):
    """The substitution described in the module docstring."""
    out, variables = [], {}
    for line in strip_comments(text).splitlines():
        only = ONLY_EXPR.match(line)
        if only:
            lead, expr = only.groups()
            assign = re.match(r"^\$(\w+)\s*:=\s*(.*)$", expr)
            if assign:
                variables[assign.group(1)] = assign.group(2)
            if CONTROL.match(expr):
                continue
            width = NINDENT.search(expr)
            width = int(width.group(1)) if width else len(lead)
            include = INCLUDE.match(expr)
            files_get = FILES_GET.match(expr)
            if include and include.group(1) in helpers:
                body = template_to_yaml(helpers[include.group(1)], helpers,
                                        chart_dir)
                out.extend(" " * (indent + width) + l if l.strip() else ""
                           for l in body.splitlines())
                continue
            if files_get:
                with open(os.path.join(chart_dir, files_get.group(1)),
                          encoding="utf-8") as handle:
                    out.extend(" " * (indent + width) + l if l.strip() else ""
                               for l in handle.read().splitlines())
                continue
            out.append(" " * (indent + width) + "__tpl__: TPL")
            continue
        line = EXPR.sub(lambda m: placeholder(m.group(1), variables), line)
        out.append(" " * indent + line if line.strip() else "")
    return "\n".join(out) + "\n"


def load_templates(chart_dir):
    """(helpers, {template file: [documents]}); a template that does not
    parse is a failure."""
    tdir = os.path.join(chart_dir, "templates")
    with open(os.path.join(tdir, "_helpers.tpl"), encoding="utf-8") as h:
        helpers = parse_helpers(h.read())
    docs = {}
    for name in sorted(os.listdir(tdir)):
        if not name.endswith(".yaml"):
            continue
        with open(os.path.join(tdir, name), encoding="utf-8") as handle:
            text = template_to_yaml(handle.read(), helpers, chart_dir)
        try:
            parsed = [d for d in yaml.safe_load_all(text) if d]
        except yaml.YAMLError as exc:
            fail(f"templates/{name} is not YAML after substitution: {exc}")
            continue
        docs[name] = parsed
        bad = [d for d in parsed if not (isinstance(d, dict) and
                                         d.get("apiVersion") and d.get("kind")
                                         and (d.get("metadata") or {}).get("name"))]
        check(not bad, f"templates/{name}: {len(parsed)} objects, each with "
              "apiVersion, kind and metadata.name")
    return helpers, docs


# --------------------------------------------------------------------------
# the checks


def objects(docs, kind):
    return [d for parsed in docs.values() for d in parsed if d["kind"] == kind]


def name_of(obj):
    return obj["metadata"]["name"]


def pod_specs(docs):
    """(owner description, pod template metadata, pod spec) of every
    workload and Pod."""
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


def check_workloads(docs):
    services = {name_of(s): s for s in objects(docs, "Service")}
    for kind in ("StatefulSet", "Deployment"):
        for obj in objects(docs, kind):
            labels = obj["spec"]["template"]["metadata"]["labels"]
            selector = obj["spec"]["selector"]["matchLabels"]
            check(selector.items() <= labels.items(),
                  f"{kind} {name_of(obj)}: selector within the pod labels")
    (sts,) = objects(docs, "StatefulSet")
    check(sts["spec"]["serviceName"] in services and
          services[sts["spec"]["serviceName"]]["spec"].get("clusterIP") == "None",
          "StatefulSet serviceName is the headless Service")
    spec = sts["spec"]["template"]["spec"]
    check(spec.get("shareProcessNamespace") is True,
          "StatefulSet pods share the process namespace")
    names = [c["name"] for c in containers(spec)]
    check(names == ["install-agent", "init", "postgres", "agent"],
          "StatefulSet containers: install-agent, init, postgres, agent",
          str(names))
    sc = spec.get("securityContext", {})
    check(all(k in sc for k in ("runAsUser", "runAsGroup", "fsGroup")) and
          not any("runAsUser" in c.get("securityContext", {})
                  for c in containers(spec)),
          "one UID for every container (pod securityContext, no override)")
    check(bool(sts["spec"].get("volumeClaimTemplates")),
          "one PVC per pod (volumeClaimTemplates)")
    return sts


def check_services(docs):
    pods = pod_specs(docs)
    for svc in objects(docs, "Service"):
        selector = dict(svc["spec"].get("selector") or {})
        role = selector.pop("pglease.io/role", None)
        if role is not None and not check(
                role in ("primary", "replica"),
                f"Service {name_of(svc)}: role label value", role):
            continue
        owners = [owner for owner, meta, _ in pods
                  if selector.items() <= (meta.get("labels") or {}).items()]
        check(bool(owners) and selector,
              f"Service {name_of(svc)} selects pods of {owners or 'nothing'}"
              + (f" (+ pglease.io/role={role}, set by the agent)"
                 if role else ""))


def docs_role(source_dir):
    """The Role of docs/kubernetes.md's "RBAC" section (its YAML block)."""
    with open(os.path.join(source_dir, "docs", "kubernetes.md"),
              encoding="utf-8") as handle:
        text = handle.read()
    section = text.split("## RBAC", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```yaml\n(.*?)```", section, re.S).group(1)
    return [d for d in yaml.safe_load_all(block) if d and d["kind"] == "Role"][0]


def normalize_rules(rules, leader_name):
    out = []
    for rule in rules:
        names = [leader_name if n.endswith("-leader") else n
                 for n in rule.get("resourceNames", [])]
        out.append((tuple(sorted(rule.get("apiGroups", []))),
                    tuple(sorted(rule.get("resources", []))),
                    tuple(sorted(names)), tuple(sorted(rule["verbs"]))))
    return sorted(out)


def check_rbac(docs, source_dir, sts):
    kinds = {d["kind"] for parsed in docs.values() for d in parsed}
    check(not kinds & {"ClusterRole", "ClusterRoleBinding"},
          "nothing cluster-wide (no ClusterRole, no ClusterRoleBinding)")
    (role,) = objects(docs, "Role")
    (binding,) = objects(docs, "RoleBinding")
    (account,) = objects(docs, "ServiceAccount")
    want = normalize_rules(docs_role(source_dir)["rules"], "<cluster>-leader")
    have = normalize_rules(role["rules"], "<cluster>-leader")
    check(want == have, "Role rules equal docs/kubernetes.md's RBAC Role",
          f"docs {want} chart {have}")
    leader = [n for r in role["rules"] for n in r.get("resourceNames", [])]
    check(leader == [placeholder('include "pglease.clusterName" .') + "-leader"],
          "the Lease resourceName is <clusterName>-leader", str(leader))
    check(binding["roleRef"]["name"] == name_of(role) and
          binding["roleRef"]["kind"] == "Role",
          "RoleBinding refers to the Role")
    subject_names = [s["name"] for s in binding["subjects"]]
    pod_sa = sts["spec"]["template"]["spec"]["serviceAccountName"]
    check(subject_names == [name_of(account)] == [pod_sa],
          "RoleBinding subject = ServiceAccount = the pods' serviceAccountName")


def check_mounts(docs, values):
    configmaps = {name_of(c): c for c in objects(docs, "ConfigMap")}
    secrets = {name_of(s): s for s in objects(docs, "Secret")}
    check(not any("secretKeyRef" in yaml.safe_dump(spec)
                  for _, _, spec in pod_specs(docs)),
          "no password in the environment (no secretKeyRef)")
    for owner, _, spec in pod_specs(docs):
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        if owner.startswith("StatefulSet"):
            (sts,) = objects(docs, "StatefulSet")
            for claim in sts["spec"]["volumeClaimTemplates"]:
                volumes[claim["metadata"]["name"]] = {"pvc": True}
        for c in containers(spec):
            missing = [m["name"] for m in c.get("volumeMounts", [])
                       if m["name"] not in volumes]
            check(not missing, f"{owner}/{c['name']}: every mount has a "
                  "volume", str(missing))
        for vol in volumes.values():
            if "configMap" in vol:
                cm = configmaps.get(vol["configMap"]["name"])
                keys = [i["key"] for i in vol["configMap"].get("items", [])]
                check(cm is not None and all(k in cm["data"] for k in keys),
                      f"{owner}: ConfigMap volume {vol['name']} keys {keys} "
                      "exist")
            if "secret" in vol:
                name = vol["secret"]["secretName"]
                mode = vol["secret"].get("defaultMode")
                check(mode in (0o400, 0o440), f"{owner}: Secret volume "
                      f"{vol['name']} mode 0{mode:o}" if mode else
                      f"{owner}: Secret volume {vol['name']} has a defaultMode")
                keys = [i["key"] for i in vol["secret"].get("items", [])]
                if name in secrets:
                    check(all(k in secrets[name]["data"] for k in keys),
                          f"{owner}: Secret {vol['name']} keys {keys} exist")
                else:
                    ok(f"{owner}: Secret {vol['name']} is a user's Secret "
                       f"({name}); keys not checked")
    # The password files named in pglease.conf are the mounted Secret keys.
    (sts,) = objects(docs, "StatefulSet")
    spec = sts["spec"]["template"]["spec"]
    vol = {v["name"]: v for v in spec["volumes"]}["secrets"]
    agent = [c for c in spec["containers"] if c["name"] == "agent"][0]
    mount = [m for m in agent["volumeMounts"] if m["name"] == "secrets"][0]
    files = {os.path.join(mount["mountPath"], i["path"])
             for i in vol["secret"]["items"]}
    named = {values["config"][k] for k in values["config"]
             if k.endswith("_password_file")}
    check(named <= files, "config's *_password_file name mounted Secret "
          "files", f"{sorted(named)} vs {sorted(files)}")
    conf = [m for m in agent["volumeMounts"] if m["name"] == "config"][0]
    check(conf["mountPath"] == "/etc/pglease",
          "pglease.conf at /etc/pglease/pglease.conf (agentctl's default)")


def agentctl_supports(agentctl, args):
    """Whether `agentctl ARGS` names a command the build has and every
    --option in ARGS is in that command's --help."""
    words = [a for a in args if not a.startswith("-")]
    command = []
    for word in words:
        if word in ("any", "primary", "replica") or word.isdigit():
            break
        command.append(word)
    result = subprocess.run([agentctl, *command, "--help"], capture_output=True,
                            text=True, timeout=30, check=False)
    options = [a.split("=")[0] for a in args if a.startswith("--")]
    return result.returncode == 0 and all(o in result.stdout for o in options)


def check_probes_and_hooks(docs, values, agentctl, chart_dir):
    (sts,) = objects(docs, "StatefulSet")
    spec = sts["spec"]["template"]["spec"]
    by_name = {c["name"]: c for c in spec["containers"]}
    ready = by_name["postgres"]["readinessProbe"]["exec"]["command"]
    check(ready[0].endswith("/agentctl") and ready[1:] == [
        "node", "check", "--role", "any"],
        "readiness probe: agentctl node check --role any", str(ready))
    live = values["agent"]["livenessProbe"]["args"]
    if agentctl:
        check(agentctl_supports(agentctl, ready[1:]),
              f"agentctl {' '.join(ready[1:])}: the build has it (--help)")
        check(agentctl_supports(agentctl, live),
              f"liveness probe: agentctl {' '.join(live)}: the build has it")
        check(agentctl_supports(agentctl, ["demote", "--wait", "--timeout"]),
              "agentctl demote --wait --timeout: the build has it")
    hook = by_name["postgres"]["lifecycle"]["preStop"]["exec"]["command"]
    script = hook[-1]
    cm = [c for c in objects(docs, "ConfigMap")
          if os.path.basename(script) in c.get("data", {})]
    body = cm[0]["data"][os.path.basename(script)] if cm else ""
    lines = [l for l in body.splitlines() if l.strip()]
    check(len(lines) == 2 and re.search(r"^exec \S*agentctl demote --wait "
                                        r"--timeout ", lines[1]),
          "postgres preStop runs the ConfigMap's two-line prestop.sh: exec "
          "agentctl demote --wait --timeout N", body)
    stop = float(re.match(r"(\d+)", values["config"]["stop_timeout"]).group(1))
    grace = values["postgres"]["terminationGracePeriodSeconds"]
    demote = values["postgres"]["demoteTimeout"]
    check(grace > demote + stop, f"terminationGracePeriodSeconds {grace} > "
          f"demoteTimeout {demote} + stop_timeout {stop:g}")
    check("preStop" in by_name["agent"].get("lifecycle", {}),
          "agent preStop waits for the hand-over (its SIGTERM comes after)")
    for script_name in os.listdir(os.path.join(chart_dir, "files")):
        if script_name.endswith(".sh"):
            path = os.path.join(chart_dir, "files", script_name)
            result = subprocess.run(["sh", "-n", path], capture_output=True,
                                    text=True, check=False)
            check(result.returncode == 0, f"files/{script_name}: sh -n",
                  result.stderr)


def check_config(values, agent, source_dir):
    config = values["config"]
    per_pod = {"cluster_name", "node_name", "namespace", "connect_address"}
    if not agent:
        return
    env = dict(os.environ, PGLEASE_CLUSTER_NAME="pg",
               PGLEASE_NODE_NAME="pg-0", PGLEASE_NAMESPACE="default",
               PGLEASE_CONNECT_ADDRESS="pg-0.pg-headless.default.svc")
    env = {k: v for k, v in env.items()
           if not k.startswith("PGLEASE_") or k[8:].lower() in per_pod}
    with tempfile.NamedTemporaryFile("w", suffix=".conf") as handle:
        # As templates/configmap.yaml writes it.
        for key, value in sorted(config.items()):
            if key not in per_pod:
                handle.write(f"{key} = '{value}'\n")
        handle.flush()
        result = subprocess.run([agent, "-c", handle.name, "--check-config"],
                                capture_output=True, text=True, env=env,
                                timeout=30, check=False)
    check(result.returncode == 0, "pglease.conf from values.yaml passes "
          "pglease-agent --check-config", result.stderr.strip())
    known = set(re.findall(r"^([a-z_]+) = ", result.stdout, re.M))
    secret_inline = {k for k in known if k.endswith("_password")}
    check(set(config) == known - secret_inline,
          "values.yaml config: every pglease.conf key (inline passwords left "
          "out)", f"missing {sorted(known - secret_inline - set(config))} "
          f"unknown {sorted(set(config) - known)}")


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


def check_pgpool(docs, chart_dir, source_dir):
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
    check(not re.search(r"^backend_\w+\d+\s*=", text, re.M),
          "pgpool.conf ships without backend lines (the chart adds them)")
    (cm,) = [c for c in objects(docs, "ConfigMap") if "pgpool.conf" in c["data"]]
    rendered = cm["data"]["pgpool.conf"]
    check(rendered.startswith(text.rstrip("\n").split("\n")[0]) and
          text.strip() in rendered, "the ConfigMap's pgpool.conf is "
          "files/pgpool.conf plus the backend block")
    keys = re.findall(r"^(backend_[a-z_]+?)TPL_", rendered, re.M)
    with open(os.path.join(source_dir, "tests", "integration",
                           "test_pgpool.py"), encoding="utf-8") as handle:
        tested = re.search(r"BACKEND_KEYS = \(([^)]*)\)", handle.read(), re.S)
    tested = re.findall(r'"([a-z_]+)"', tested.group(1)) if tested else []
    check(keys == tested, "the chart's backend block has the keys "
          "test_pgpool.py writes", f"{keys} vs {tested}")
    # Every /run/pgpool path is on the pgpool-run emptyDir.
    (dep,) = [d for d in objects(docs, "Deployment")]
    mounts = {m["name"]: m["mountPath"] for c in dep["spec"]["template"]
              ["spec"]["containers"] for m in c["volumeMounts"]}
    check(mounts.get("pgpool-run") == "/run/pgpool" and
          mounts.get("pgpool-config") == "/etc/pgpool",
          "pgpool: run directory and configuration where pgpool.conf and "
          "pgpool-start.sh expect them")


def check_yamllint(chart_dir):
    config = os.path.join(HERE, "yamllint.yaml")
    files = [os.path.join(chart_dir, f) for f in ("values.yaml", "Chart.yaml")]
    try:
        result = subprocess.run(["yamllint", "-s", "-c", config, *files],
                                capture_output=True, text=True, timeout=60,
                                check=False)
    except FileNotFoundError:
        print("not checked: yamllint is not installed")
        return
    check(result.returncode == 0, "yamllint values.yaml Chart.yaml",
          result.stdout.strip())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", default=os.environ.get(
        "PGLEASE_SOURCE_DIR", os.path.dirname(os.path.dirname(HERE))))
    parser.add_argument("--build", default=os.environ.get("PGLEASE_BUILD_DIR"))
    args = parser.parse_args()
    chart_dir = os.path.join(args.source, "charts", "pglease")
    build = args.build or os.path.join(args.source, "build")
    agentctl = os.path.join(build, "agent", "agentctl")
    agent = os.path.join(build, "agent", "pglease-agent")
    agentctl = agentctl if os.access(agentctl, os.X_OK) else None
    agent = agent if os.access(agent, os.X_OK) else None

    with open(os.path.join(chart_dir, "Chart.yaml"), encoding="utf-8") as h:
        chart = yaml.safe_load(h)
    check(chart.get("apiVersion") == "v2", "Chart.yaml: Helm 3 (apiVersion v2)")
    with open(os.path.join(chart_dir, "values.yaml"), encoding="utf-8") as h:
        values = yaml.safe_load(h)
    check_yamllint(chart_dir)
    check_values_documented(chart_dir)
    _, docs = load_templates(chart_dir)
    sts = check_workloads(docs)
    check_services(docs)
    check_rbac(docs, args.source, sts)
    check_mounts(docs, values)
    check_probes_and_hooks(docs, values, agentctl, chart_dir)
    check_config(values, agent, args.source)
    check_pgpool(docs, chart_dir, args.source)

    if not agentctl or not agent:
        print(f"not checked: the agent programs (not built in {build})")
    print("not checked: template logic (conditionals, helpers' output, "
          "range, lookup and randAlphaNum, value types after rendering): "
          "there is no helm here; both branches of each if are read as one")
    print("not checked: real scheduling, PVC binding, RBAC enforcement, DNS "
          "and probes against a Kubernetes cluster (none here)")
    print("not checked: the Containerfile's images (no docker or podman "
          "here); the pgpool image's paths are assumed to be Debian 12's")
    if FAILURES:
        print(f"{len(FAILURES)} check(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
