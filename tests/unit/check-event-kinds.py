#!/usr/bin/env python3
"""check-event-kinds.py SOURCE_DIR: docs/failover.md's events table lists
exactly the event kinds the code writes to the events table (issue 19,
item 4): the kind argument of every emit() in decide.c and event_emit()
anywhere, and the kinds decide.c gives ACTION_STOP. "state" is logged only."""
import glob
import os
import re
import sys

LOG_ONLY = {"state"}
KIND = re.compile(r"^[a-z][a-z-]*$")
LITERAL = re.compile(r'"((?:[^"\\]|\\.)*)"')


def call_args(text, start):
    """The top-level arguments of the call whose '(' is at start."""
    depth, i, args, current, in_str = 0, start, [], [], False
    while i < len(text):
        ch = text[i]
        if in_str:
            current.append(ch)
            if ch == "\\":
                current.append(text[i + 1])
                i += 1
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
            current.append(ch)
        elif ch == "(":
            depth += 1
            if depth > 1:
                current.append(ch)
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(current))
                return args
            current.append(ch)
        elif ch == "," and depth == 1:
            args.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    return args


def code_kinds(source):
    kinds = {}
    files = glob.glob(os.path.join(source, "lib", "*.c")) + \
        glob.glob(os.path.join(source, "agent", "*.c"))
    calls = re.compile(r"\b(event_emit|emit|push)\s*\(")
    for path in files:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        for match in calls.finditer(text):
            line_start = text.rfind("\n", 0, match.start()) + 1
            if text[line_start:match.start()].strip().startswith(("void", "static")):
                continue        # a definition, not a call
            args = call_args(text, match.end() - 1)
            if match.group(1) == "push":
                if len(args) < 3 or "ACTION_STOP" not in args[1]:
                    continue
                arg = args[2]
            else:
                index = 3 if match.group(1) == "event_emit" else 2
                if len(args) <= index:
                    continue
                arg = args[index]
            for literal in LITERAL.findall(arg):
                if KIND.match(literal):
                    kinds.setdefault(literal, os.path.relpath(path, source))
    return {k: v for k, v in kinds.items() if k not in LOG_ONLY}


def documented_kinds(source):
    with open(os.path.join(source, "docs", "failover.md"),
              encoding="utf-8") as handle:
        lines = handle.read().splitlines()
    start = lines.index("| event | meaning |")
    kinds = set()
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        kinds.update(re.findall(r"`([a-z][a-z-]*)`", line.split("|")[1]))
    return kinds


def main():
    source = sys.argv[1]
    code = code_kinds(source)
    docs = documented_kinds(source)
    missing = sorted(set(code) - docs)
    extra = sorted(docs - set(code))
    for kind in missing:
        print(f"docs/failover.md does not list the event '{kind}' "
              f"({code[kind]} writes it)")
    for kind in extra:
        print(f"docs/failover.md lists the event '{kind}', which no code "
              "writes")
    if len(code) < 10:
        print(f"found only {len(code)} kinds in the code: the scan is broken")
        return 1
    return 1 if missing or extra else 0


if __name__ == "__main__":
    sys.exit(main())
