#!/usr/bin/python3
"""charts/pglease/files/pgpool-follow.sh's decisions, for every node id:
the script runs as the chart runs it, with pcp_node_info answering a given
table and pcp_promote_node / pcp_attach_node recording their arguments
(stubs first on PATH). Found on the real node (bench/kube_node.py): after a
failover to postgres-sts-0 with Pgpool-II believing no node the primary,
the script never told it (awk compared node 0 with an unset variable,
which is 0 too), and no write went anywhere.

    check_pgpool_follow.py SOURCE_DIR"""

import os
import subprocess
import sys
import tempfile
import time

STUB = """#!/bin/sh
echo "$(basename "$0") $*" >> "$FAKE_DIR/calls"
if [ "$(basename "$0")" = pcp_node_info ]; then cat "$FAKE_DIR/nodes"; fi
"""

FAILED = []


def line(node, status, role, backend_role, backend_status="up"):
    return (f"postgres-sts-{node}.pg-headless 5432 "
            f"{2 if status == 'up' else 3} 0.333333 {status} "
            f"{backend_status} {role} {backend_role} 0 none none "
            "2026-12-07 05:30:54")


def run(source, nodes):
    """The calls the script made after three looks at `nodes`."""
    with tempfile.TemporaryDirectory() as fake:
        bin_dir = os.path.join(fake, "bin")
        os.mkdir(bin_dir)
        for name in ("pcp_node_info", "pcp_promote_node", "pcp_attach_node"):
            path = os.path.join(bin_dir, name)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(STUB)
            os.chmod(path, 0o755)
        with open(os.path.join(fake, "nodes"), "w", encoding="utf-8") as h:
            h.write("\n".join(nodes) + "\n")
        with open(os.path.join(fake, "pcppass"), "w", encoding="utf-8") as h:
            h.write("*:*:pcpadmin:x\n")
        calls = os.path.join(fake, "calls")
        env = dict(os.environ, FAKE_DIR=fake, PGPOOL_RUN_DIR=fake,
                   PGPOOL_FOLLOW_INTERVAL="0.05",
                   PATH=bin_dir + ":" + os.environ.get("PATH", "/usr/bin:/bin"))
        proc = subprocess.Popen(
            ["sh", os.path.join(source, "charts", "pglease", "files",
                                "pgpool-follow.sh")],
            env=env, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    with open(calls, encoding="utf-8") as handle:
                        done = handle.read().splitlines()
                except FileNotFoundError:
                    done = []
                if sum(c.startswith("pcp_node_info") for c in done) >= 3:
                    break
                time.sleep(0.05)
            else:
                raise AssertionError("pgpool-follow.sh did not look 3 times")
        finally:
            proc.kill()
            proc.wait(timeout=10)
    return sorted({c for c in done if not c.startswith("pcp_node_info")})


def check(source, label, nodes, expected):
    # "pcp_promote_node -h DIR -p PORT -U USER -w -n 0": the command and
    # the node.
    got = sorted(c.split()[0] + " -n " + c.split(" -n ")[1] for c in
                 run(source, nodes))
    want = sorted(expected)
    ok = got == want
    print(f"{'ok' if ok else 'FAIL'}: {label}"
          + ("" if ok else f": expected {want}, got {got}"))
    if not ok:
        FAILED.append(label)


def main():
    source = sys.argv[1]
    for k in range(3):
        others = [n for n in range(3) if n != k]
        # Pgpool-II believes no node the primary (its search ended before
        # the promotion): tell it node k.
        table = [line(n, "up", "standby",
                      "primary" if n == k else "standby") for n in range(3)]
        check(source, f"no primary believed, node {k} is: promote {k}",
              table, [f"pcp_promote_node -n {k}"])
        # It believes another node, now a standby.
        table = [line(n, "up", "primary" if n == others[0] else "standby",
                      "primary" if n == k else "standby") for n in range(3)]
        check(source, f"node {others[0]} believed, node {k} is: promote {k}",
              table, [f"pcp_promote_node -n {k}"])
        # It believes the right one: nothing.
        table = [line(n, "up", "primary" if n == k else "standby",
                      "primary" if n == k else "standby") for n in range(3)]
        check(source, f"node {k} believed and is: nothing", table, [])
        # The primary detached (its pod restarted), no other primary up:
        # attach it.
        table = [line(n, "down" if n == k else "up", "standby",
                      "primary" if n == k else "standby") for n in range(3)]
        check(source, f"node {k} the primary but detached: attach {k}",
              table, [f"pcp_attach_node -n {k}"])
    # Two attached servers say primary (a split the agents are resolving):
    # the script does not choose.
    table = [line(0, "up", "standby", "primary"),
             line(1, "up", "standby", "primary"),
             line(2, "up", "standby", "standby")]
    check(source, "two primaries: nothing", table, [])
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
