#!/usr/bin/env python3
"""check-config-path.py AGENT AGENTCTL UNIT SOURCE_DIR: one default
configuration file everywhere (issue 19, item 5). The file that
`pglease-agent --help` and `agentctl --help` name as their default is the
one every man page names (pglease-agent(8), agentctl(1), pglease.conf(5))
and the one the systemd unit passes with -c."""
import os
import re
import subprocess
import sys

HELP_DEFAULT = re.compile(r"else\s+(/\S+)\s+if it exists")
# A path in a man page's scdoc source: _/etc/pglease/pglease.conf_
PAGE_PATH = re.compile(r"_(/[^_\s]*/pglease\.conf)_")
PAGES = ("pglease-agent.8.scd", "agentctl.1.scd", "pglease.conf.5.scd")


def help_default(program):
    """The default configuration file `program --help` names."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PGLEASE_")}
    out = subprocess.run([program, "--help"], capture_output=True, text=True,
                         timeout=30, check=True, env=env).stdout
    found = HELP_DEFAULT.findall(out)
    if len(found) != 1:
        sys.exit(f"{program} --help: expected one 'else FILE if it exists', "
                 f"found {found!r} in:\n{out}")
    return found[0]


def main():
    agent, agentctl, unit, source_dir = sys.argv[1:5]
    failures = []
    default = help_default(agent)
    ctl_default = help_default(agentctl)
    if ctl_default != default:
        failures.append(f"agentctl --help names {ctl_default}, "
                        f"pglease-agent --help {default}")
    for page in PAGES:
        path = os.path.join(source_dir, "man", page)
        with open(path, encoding="utf-8") as handle:
            named = set(PAGE_PATH.findall(handle.read()))
        if named != {default}:
            failures.append(f"man/{page} names {sorted(named) or 'no file'}"
                            f", --help {default}")
    with open(unit, encoding="utf-8") as handle:
        exec_start = [line for line in handle
                      if line.startswith("ExecStart=")]
    if len(exec_start) != 1 or \
            f" -c {default}" not in exec_start[0]:
        failures.append(f"{unit}: ExecStart does not pass -c {default}: "
                        f"{exec_start}")
    for failure in failures:
        print(failure)
    if failures:
        return 1
    print(f"default configuration file everywhere: {default}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
