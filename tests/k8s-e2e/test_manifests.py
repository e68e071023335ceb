"""The reference deployment without helm (issue 20), on the real node of
`scripts/k8s up --nodes`: the install block of deploy/reference/README.md
run verbatim (the Secrets by kubectl create, then `kubectl apply -f . -n
database` in postgresql/, pgpool/ and client/, in that order), then what
an operator does to it:

- `kubectl scale statefulset postgres-sts --replicas=0 -n database`, then
  back to 3: every acknowledged row is there, one primary, the same system
  identifier, the standbys streaming;
- the primary's pod network cut by a rule inside its network namespace
  (everything but loopback dropped): the old primary fences itself (its
  agent's event `fence`) before another agent takes the Lease (event
  `acquire`), writes through `pgpool-svc` resume on the new primary, and
  once the rule is gone the old primary is back as a standby. The chart's
  default is asynchronous mode: rows the old primary acknowledged while
  cut off are counted, not failed. The times are printed.

Skipped without a real node or the images unless
PGLEASE_K8S_E2E_REQUIRED=1."""

import calendar
import json
import os
import re
import subprocess
import time

import pytest

from test_node import SOURCE_DIR, kubectl, node  # noqa: F401  pylint: disable=unused-import
from test_walkthrough import (NS, Writer, lease_holder, load_images, pods,
                              psql, rejoined, remove_namespace, sh,
                              wait_all_ready, wait_ready_and_answering)

README = os.path.join(SOURCE_DIR, "deploy", "reference", "README.md")


def readme_install():
    """The first sh block after "## Install" in deploy/reference/README.md."""
    with open(README, encoding="utf-8") as handle:
        text = handle.read()
    match = re.search(r"^## Install\n.*?^```sh\n(.*?)^```", text,
                      re.S | re.M)
    assert match, f"{README}: no sh block under ## Install"
    return match.group(1)


@pytest.fixture(scope="module")
def plain(node):  # noqa: F811  pylint: disable=redefined-outer-name
    env = node
    load_images(env)
    try:
        sh(env, "cd deploy/reference\n" + readme_install(), timeout=1200)
        wait_ready_and_answering(env)
        yield env
    finally:
        remove_namespace(env)


def primaries(env):
    """The pods labelled pglease.io/role=primary."""
    return sorted(n for n, p in pods(env).items()
                  if p["metadata"].get("labels", {}).get("pglease.io/role")
                  == "primary")


def test_scale_to_zero_and_back(plain):
    env = plain
    system_id = psql(env, "SELECT system_identifier FROM "
                     "pg_control_system()")
    psql(env, "CREATE TABLE scaled (id int PRIMARY KEY); "
         "INSERT INTO scaled SELECT generate_series(1, 1000)")
    started = time.monotonic()
    sh(env, "kubectl scale statefulset postgres-sts --replicas=0 "
       "-n database")
    deadline = time.monotonic() + 600
    while any(n.startswith("postgres-sts-") for n in pods(env)):
        assert time.monotonic() < deadline, "pods left after 600 s"
        time.sleep(2)
    down = time.monotonic() - started
    sh(env, "kubectl scale statefulset postgres-sts --replicas=3 "
       "-n database")
    wait_ready_and_answering(env)
    holder = lease_holder(env)
    rejoined(env, None, holder)
    up = time.monotonic() - started - down
    assert primaries(env) == [holder]
    assert psql(env, "SELECT system_identifier FROM pg_control_system()") \
        == system_id
    assert psql(env, "SELECT count(*) FROM scaled") == [["1000"]]
    print(f"\nscale 3 -> 0 in {down:.0f}s, 0 -> 3 (every pod Ready, the "
          f"standbys streaming) in {up:.0f}s; primary {holder}, the same "
          "system identifier, 1000 of 1000 rows")


def agent_events(env, pod, names):
    """(time, event, msg) of the agent's log lines whose event is one of
    names, in order: the log of the running container and, when it was
    restarted, of the previous one."""
    out = []
    for previous in (True, False):
        args = ["logs", pod, "-c", "agent", "-n", NS]
        result = kubectl(env, *(args + ["--previous"] if previous else args),
                         check=not previous, timeout=60)
        for line in result.stdout.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("event") in names:
                out.append((record["time"], record["event"],
                            record.get("msg", "")))
    return sorted(out)


def stamp(text):
    """An agent log time (RFC 3339 in UTC, "...T12:34:56.789Z") as epoch
    seconds."""
    whole = calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S"))
    fraction = re.match(r"\.(\d+)", text[19:])
    return whole + (float("0." + fraction.group(1)) if fraction else 0.0)


def container_pid(env, pod, container):
    """The host pid of a container of pod, from containerd."""
    status = next(c for c in pods(env)[pod]["status"]["containerStatuses"]
                  if c["name"] == container)
    cid = status["containerID"].split("://", 1)[1]
    out = subprocess.run(
        ["ctr", "--address", env["PGLEASE_K8S_CONTAINERD"], "--namespace",
         "k8s.io", "tasks", "ls"], capture_output=True, text=True,
        timeout=60, check=True).stdout
    for line in out.splitlines():
        fields = line.split()
        if fields and fields[0] == cid:
            return int(fields[1])
    raise AssertionError(f"no task for {pod}/{container} ({cid}):\n{out}")


# Everything but loopback, both ways: inserted with -I, taken out with -D.
CUT = (["INPUT", "!", "-i", "lo", "-j", "DROP"],
       ["OUTPUT", "!", "-o", "lo", "-j", "DROP"])


def netns_iptables(netns, args, check=True):
    """iptables args in the network namespace at path netns."""
    subprocess.run(["nsenter", f"--net={netns}", "iptables", "-w"] + args,
                   capture_output=True, text=True, timeout=60, check=check)


def test_network_cut_fences_before_another_takes_the_lease(plain):
    env = plain
    old = lease_holder(env)
    # The pod's network namespace, held open by this process: the kubelet
    # may restart the agent (its liveness probe fails while cut off), and
    # the rules must come out of the same namespace.
    netns_fd = os.open(f"/proc/{container_pid(env, old, 'agent')}/ns/net",
                       os.O_RDONLY)
    netns = f"/proc/{os.getpid()}/fd/{netns_fd}"
    writer = Writer(env, "w_cut", seconds=600)
    writer.start()
    time.sleep(5)
    cut = time.time()
    try:
        for rule in CUT:
            netns_iptables(netns, ["-I"] + list(rule))
        deadline = time.monotonic() + 180
        while True:
            new = lease_holder(env)
            if new and new != old:
                break
            assert time.monotonic() < deadline, \
                f"{old} still holds the Lease 180 s after its cut"
            time.sleep(1)
        # Writes through pgpool-svc on the new primary.
        deadline = time.monotonic() + 120
        while True:
            try:
                psql(env, "INSERT INTO w_cut VALUES (-1)", timeout=25)
                break
            except AssertionError:
                assert time.monotonic() < deadline, \
                    "no write through pgpool-svc 120 s after the promotion"
                time.sleep(1)
        writable = time.time()
    finally:
        for rule in CUT:
            netns_iptables(netns, ["-D"] + list(rule), check=False)
        os.close(netns_fd)
    healed = time.time()
    fences = [e for e in agent_events(env, old, ("fence", "release",
                                                 "demote"))
              if stamp(e[0]) >= cut]
    acquired = [e for e in agent_events(env, new, ("acquire",))
                if stamp(e[0]) >= cut]
    assert fences, f"{old} logged no fence after the cut"
    assert acquired, f"{new} logged no acquire after the cut"
    fenced_at, acquired_at = stamp(fences[0][0]), stamp(acquired[0][0])
    assert fenced_at < acquired_at, \
        f"{old} fenced at {fences[0]} after {new} took the Lease at " \
        f"{acquired[0]}"
    rejoined(env, old, new)
    writer.stop()
    acked, failed = writer.outcomes()
    lost = writer.lost(acked)
    wait_all_ready(env)
    print(f"\n{old}'s pod network cut: it fenced {fenced_at - cut:.1f}s "
          f"after the cut ({fences[0][1]}: {fences[0][2]}), {new} took the "
          f"Lease {acquired_at - cut:.1f}s after it; writes through "
          f"pgpool-svc {writable - cut:.1f}s after it; healed after "
          f"{healed - cut:.0f}s, {old} back as a standby; {len(acked)} "
          f"acknowledged, {failed} failed, {len(lost)} lost (asynchronous "
          f"mode); longest gap {writer.longest_gap(acked, cut):.1f}s")
