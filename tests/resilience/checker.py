"""checker: the verdicts of a resilience run, computed from what was
recorded (the clients' writes and reads, the nemesis's faults, the final
state of the cluster). Pure functions over plain records: no cluster, no
clock; tests/resilience/test_checker.py feeds them made-up histories.

A write has: client, id, port, timeline, start, end, outcome
("ok" | "failed" | "unknown"), notice. A read has: client, port, start,
end, outcome, count, max_id, in_recovery. A fault has: index, name, target,
injected, healed, healthy (monotonic seconds), healthy_bound_missed."""

import bisect


class Check:
    """One line of the report. `ok` False fails the run; `info` checks are
    measurements that cannot fail (e.g. losses in asynchronous mode)."""

    def __init__(self, name, ok, summary, details=(), info=False):
        self.name = name
        self.ok = ok
        self.summary = summary
        self.details = list(details)
        self.info = info

    @property
    def status(self):
        if self.info:
            return "INFO"
        return "PASS" if self.ok else "FAIL"

    def as_dict(self):
        return {"name": self.name, "status": self.status,
                "summary": self.summary, "details": self.details}


def _describe_write(w):
    return (f"client {w.client} id {w.id} on port {w.port} timeline "
            f"{w.timeline} [{w.start:.3f}, {w.end:.3f}]")


def fault_for(at, faults):
    """The fault to blame for something that went wrong at `at` (e.g. a
    write acknowledged then, and lost): the fault under way then (from
    injection until the cluster was healthy again), else the next one
    injected after it (the failover that discarded it). None if neither."""
    for fault in faults:
        if fault.injected is None:
            continue
        end = fault.healthy if fault.healthy is not None else float("inf")
        if fault.injected <= at <= end:
            return fault
    later = [f for f in faults if f.injected is not None and f.injected > at]
    return min(later, key=lambda f: f.injected) if later else None


def _fault_name(fault):
    if fault is None:
        return "no fault"
    return f"#{fault.index} {fault.name}" + \
        (f" ({fault.target})" if fault.target else "")


def check_acknowledged(writes, final_rows, sync, faults, final_node):
    """Every acknowledged write is on the final primary (synchronous
    mode); in asynchronous mode, how many are not and which fault preceded
    each loss."""
    acked = [w for w in writes if w.outcome == "ok"]
    missing = [w for w in acked if (w.client, w.id) not in final_rows]
    by_fault = {}
    for w in missing:
        fault = fault_for(w.end, faults)
        by_fault.setdefault(_fault_name(fault), []).append(w)
    details = []
    for name, lost in sorted(by_fault.items(),
                             key=lambda item: -len(item[1])):
        sample = ", ".join(f"{w.client}/{w.id}" for w in lost[:8])
        details.append(f"{len(lost)} lost around {name}: {sample}"
                       + (" ..." if len(lost) > 8 else ""))
    cancelled = [w for w in acked if w.notice]
    if cancelled:
        details.append(f"{len(cancelled)} acknowledged after PostgreSQL "
                       "cancelled the wait for the synchronous standby "
                       f"(first: {_describe_write(cancelled[0])}: "
                       f"{cancelled[0].notice})")
    summary = (f"{len(missing)} of {len(acked)} acknowledged writes missing "
               f"on the final primary {final_node}")
    if sync:
        return Check("no acknowledged write lost (synchronous mode)",
                     not missing, summary, details)
    return Check("acknowledged writes lost (asynchronous mode)", True,
                 summary, details, info=True)


def check_failed_not_committed(writes, final_rows):
    """A write the server refused must not exist."""
    bad = [w for w in writes if w.outcome == "failed"
           and (w.client, w.id) in final_rows]
    unknown = [w for w in writes if w.outcome == "unknown"]
    present = sum(1 for w in unknown if (w.client, w.id) in final_rows)
    return Check("no refused write committed", not bad,
                 f"{len(bad)} refused writes present; {len(unknown)} "
                 f"unknown outcomes ({present} committed, "
                 f"{len(unknown) - present} not)",
                 [_describe_write(w) for w in bad[:10]])


def overlapping_writers(writes):
    """Pairs of acknowledged writes on different servers whose [start,
    end] intervals overlap, on different timelines: both servers accepted
    a write in the same instant."""
    acked = sorted((w for w in writes if w.outcome == "ok"),
                   key=lambda w: w.start)
    out = []
    active = []
    for w in acked:
        active = [a for a in active if a.end >= w.start]
        for a in active:
            if a.port != w.port and a.timeline != w.timeline:
                out.append((a, w))
        active.append(w)
    return out


def returning_writers(writes):
    """A write on server A (timeline T) that lies entirely between two
    acknowledged writes of server B on one same timeline: B accepted writes
    before and after A did, on a timeline that never ended, so both were
    primaries at A's moment. Returns (inner write, B's span) tuples."""
    acked = sorted((w for w in writes if w.outcome == "ok"),
                   key=lambda w: w.start)
    starts = [w.start for w in acked]
    spans = {}
    for w in acked:
        key = (w.port, w.timeline)
        first_end, last_start = spans.get(key, (w.end, w.start))
        spans[key] = (min(first_end, w.end), max(last_start, w.start))
    out = []
    for (port, timeline), (first_end, last_start) in spans.items():
        if last_start <= first_end:
            continue
        lo = bisect.bisect_right(starts, first_end)
        for w in acked[lo:]:
            if w.start >= last_start:
                break
            if w.port != port and w.end < last_start:
                out.append((w, (port, timeline, first_end, last_start)))
                break
    return out


def check_single_writer(writes, split_brain_violations, split_brain_rounds):
    overlaps = overlapping_writers(writes)
    returns = returning_writers(writes)
    details = [f"overlap: {_describe_write(a)} and {_describe_write(b)}"
               for a, b in overlaps[:10]]
    details += [f"between writes of port {p} timeline {t} "
                f"[{s:.3f}, {e:.3f}]: {_describe_write(w)}"
                for w, (p, t, s, e) in returns[:10]]
    details += [f"split-brain checker: {v}" for v in
                split_brain_violations[:10]]
    ok = not overlaps and not returns and not split_brain_violations
    return Check("never two servers accepting writes at once", ok,
                 f"{len(overlaps)} overlapping acknowledged writes on "
                 f"different servers and timelines, {len(returns)} writes "
                 f"inside another server's span; split-brain checker: "
                 f"{len(split_brain_violations)} violations in "
                 f"{split_brain_rounds} rounds", details)


def time_to_healthy(fault):
    """The seconds a fault's bound is judged on: from its injection to a
    healthy cluster, or for a fault that took the whole API away (real
    control plane: api_back set) from the moment the API answered again.
    While no node can reach the API none can lead, by design; the outage
    itself is the fault's length, not the cluster's recovery."""
    if fault.healthy is None or fault.injected is None:
        return None
    back = getattr(fault, "api_back", None)
    if back is not None:
        return fault.healthy - max(fault.injected, back)
    return fault.healthy - fault.injected


def check_healthy_after_faults(faults, bound):
    missed = [f for f in faults if f.healthy_bound_missed
              or time_to_healthy(f) is None or time_to_healthy(f) > bound]
    times = [time_to_healthy(f) for f in faults
             if time_to_healthy(f) is not None]
    outages = [f for f in faults if getattr(f, "api_back", None) is not None]
    summary = (f"{len(faults) - len(missed)} of {len(faults)} faults "
               f"followed by a healthy cluster within {bound:g}s")
    if outages:
        summary += (f", {len(outages)} API outages counted from the API's "
                    "return")
    if times:
        ordered = sorted(times)
        summary += (f" (median {ordered[len(ordered) // 2]:.1f}s, max "
                    f"{ordered[-1]:.1f}s)")
    details = [f"{_fault_name(f)}: healthy after "
               + (f"{time_to_healthy(f):.1f}s" if time_to_healthy(f)
                  is not None else "never")
               + (" from the API's return"
                  if getattr(f, "api_back", None) is not None else "")
               for f in missed]
    relapsed = [f for f in faults if getattr(f, "relapses", None)]
    if relapsed:
        summary += (f"; {len(relapsed)} became unhealthy again after they "
                    "were healthy")
        details += [f"{_fault_name(f)}: unhealthy again {a:.1f}s after "
                    f"healthy, healthy {b:.1f}s later"
                    for f in relapsed for a, b in f.relapses]
    return Check(f"healthy within {bound:g}s of every fault", not missed,
                 summary, details)


def check_api_outage_writes(writes, faults, lease_duration, failsafe=False):
    """While the API is down for every node (kube-apiserver frozen), no
    node can renew the Lease: the primary must stop accepting writes by
    its renew deadline, so no write sent later than lease_duration after
    the server stopped (its last possible renewal) may be acknowledged
    before the server is back. Only faults whose start is known exactly
    (api_down) are judged. With failsafe_mode on, the primary may stay
    writable while every member answers it: a measurement (INFO) then."""
    judged = [f for f in faults if getattr(f, "api_down", None) is not None
              and f.healed is not None]
    acked = [w for w in writes if w.outcome == "ok"]
    details = []
    bad = 0
    for f in judged:
        lo, hi = f.api_down + lease_duration, f.healed
        late = [w for w in acked if lo < w.start < hi]
        if late:
            bad += len(late)
            details.append(f"{_fault_name(f)}: {len(late)} writes "
                           f"acknowledged {late[0].start - f.api_down:.1f}s "
                           "or more after the API stopped, first: "
                           + _describe_write(late[0]))
    summary = (f"{bad} writes acknowledged later than {lease_duration:g}s "
               f"into {len(judged)} API freezes")
    if failsafe:
        return Check("writes acknowledged while the API was down "
                     "(failsafe_mode on)", True, summary, details, info=True)
    return Check("no writes acknowledged while the API was down",
                 not bad, summary, details)


def check_rejoined(final):
    """`final`: {"healthy": bool, "primary": name, "nodes": {name: {"role",
    "streaming", "timeline", "rows", "agent", "supervisor"}}, "rows":
    primary's row count, "error": text}."""
    details = []
    if final.get("error"):
        details.append(final["error"])
    for name, node in sorted(final.get("nodes", {}).items()):
        problems = []
        if not node.get("agent") or not node.get("supervisor"):
            problems.append("processes not running")
        if name != final.get("primary"):
            if not node.get("streaming"):
                problems.append(f"not streaming (role {node.get('role')})")
            if node.get("rows") != final.get("rows"):
                problems.append(f"{node.get('rows')} rows, the primary has "
                                f"{final.get('rows')}")
        if problems:
            details.append(f"{name}: " + ", ".join(problems))
    ok = bool(final.get("healthy")) and not details
    return Check("every node rejoined at the end", ok,
                 f"primary {final.get('primary')}, "
                 + ", ".join(f"{n} {v.get('role')} tl {v.get('timeline')} "
                             f"{v.get('rows')} rows"
                             for n, v in sorted(final.get("nodes",
                                                          {}).items())),
                 details)


def check_processes(crashes, shutdown_statuses, sanitizer_hits):
    details = [f"{c.node}'s {c.what} exited {c.returncode} during "
               f"fault #{c.fault}" if c.fault else
               f"{c.node}'s {c.what} exited {c.returncode}"
               for c in crashes]
    details += [f"{node}'s {what} exited {status} on SIGTERM"
                for node, what, status in shutdown_statuses
                if status not in (0, None)]
    details += [f"{path}: {line}" for path, line in sanitizer_hits[:20]]
    bad_shutdowns = [s for s in shutdown_statuses if s[2] not in (0, None)]
    ok = not crashes and not bad_shutdowns and not sanitizer_hits
    return Check("no agent or supervisor crashed", ok,
                 f"{len(crashes)} unexpected exits, {len(bad_shutdowns)} "
                 f"unclean SIGTERM exits of {len(shutdown_statuses)}, "
                 f"{len(sanitizer_hits)} sanitizer/abort lines in the logs",
                 details)


def stale_reads(writes, reads):
    """Reads answered by a primary (not in recovery) that missed a write of
    the same client acknowledged before the read was sent.

    Per client, the acknowledged writes sorted by the time they ended, with
    the highest id among the first k of them: each read is then one
    bisection (a 30-minute run has ~10^5 writes and ~10^4 reads)."""
    acked_by_client = {}
    for w in writes:
        if w.outcome == "ok":
            acked_by_client.setdefault(w.client, []).append(w)
    index = {}
    for client, lst in acked_by_client.items():
        lst.sort(key=lambda w: w.end)
        highest, top = [], None
        for w in lst:
            top = w.id if top is None else max(top, w.id)
            highest.append(top)
        index[client] = ([w.end for w in lst], highest)
    out = []
    for r in reads:
        if r.outcome != "ok" or r.in_recovery:
            continue
        ends, highest = index.get(r.client, ([], []))
        before = bisect.bisect_left(ends, r.start)
        if not before:
            continue
        last = highest[before - 1]
        if r.max_id < last or r.count < before:
            out.append((r, last, before))
    return out


def check_reads(writes, reads, sync, faults):
    stale = stale_reads(writes, reads)
    ok_reads = sum(1 for r in reads if r.outcome == "ok")
    details = []
    for r, last, count in stale[:10]:
        details.append(f"client {r.client} read on port {r.port} at "
                       f"{r.start:.3f} saw {r.count} rows up to id "
                       f"{r.max_id}; {count} acknowledged before, up to id "
                       f"{last} ({_fault_name(fault_for(r.start, faults))})")
    summary = (f"{len(stale)} of {ok_reads} reads on a primary missed a "
               "write acknowledged before them")
    if sync:
        return Check("reads see every earlier acknowledged write", not stale,
                     summary, details)
    return Check("reads that missed earlier acknowledged writes "
                 "(asynchronous mode)", True, summary, details, info=True)


def write_outage(writes, fault):
    """The longest time without an acknowledged write between a fault's
    injection and a healthy cluster (plus a little)."""
    if fault.injected is None or fault.healthy is None:
        return None
    lo, hi = fault.injected, fault.healthy + 2.0
    ends = sorted(w.end for w in writes if w.outcome == "ok"
                  and lo <= w.end <= hi)
    points = [lo] + ends + [hi]
    return max(b - a for a, b in zip(points, points[1:]))


# The faults that ask for a planned operation (they set f.planned when it
# did not succeed).
PLANNED_FAULTS = ("switchover", "double_switchover", "pause_switchover",
                  "prestop_demote")


def check_planned(faults):
    """Planned operations (switchover, the pre-stop demote) either happen
    or are refused; none may stay pending on the Lease after agentctl gave
    up, to fire later by surprise."""
    failed = [f for f in faults if getattr(f, "planned", None)]
    pending = [f for f in failed if f.planned.get("pending")]
    details = [f"{_fault_name(f)}: agentctl {f.planned['op']} exit "
               f"{f.planned['exit']}"
               + (f", request still pending: {f.planned['pending']}"
                  if f.planned.get("pending") else
                  ", request gone from the Lease")
               + f", synchronous set {f.planned.get('sync')}"
               for f in failed]
    total = sum(1 for f in faults if f.name in PLANNED_FAULTS)
    return Check("no planned operation left pending", not pending,
                 f"{total - len(failed)} of {total} switchovers and "
                 f"pre-stop demotes succeeded, {len(failed)} did not "
                 f"({len(pending)} left pending on the Lease)", details)


def check_reloads(faults):
    """Every reload fault (SIGHUP) was answered as its variant demands
    (reloaded, or an invalid file refused), and the agent then fenced,
    released, promoted or rejoined nothing (issue 14)."""
    reloads = [f for f in faults if getattr(f, "reload", None)]
    bad = [f for f in reloads
           if not f.reload["logged"] or f.reload["alarms"]]
    details = [f"{_fault_name(f)} {f.reload['variant']}: "
               + ("no reload line" if not f.reload["logged"] else
                  "; ".join(f.reload["alarms"]))
               for f in bad]
    variants = {}
    for f in reloads:
        variants[f.reload["variant"]] = variants.get(f.reload["variant"], 0) + 1
    return Check("reloads change nothing but what they should", not bad,
                 f"{len(reloads)} reloads ("
                 + ", ".join(f"{k} {v}" for k, v in sorted(variants.items()))
                 + f"), {len(bad)} misbehaved", details)


def check_clock_steps(faults):
    """A node's wall clock stepped forward or back (clock_step) must not
    make any agent fence, release, promote or rejoin: the Lease's timing
    rests on the monotonic clock alone (docs/design.md)."""
    steps = [f for f in faults if getattr(f, "clock", None)]
    bad = [f for f in steps if f.clock["alarms"]]
    details = [f"{_fault_name(f)} {f.clock['step']:+g}s: "
               + "; ".join(f.clock["alarms"]) for f in bad]
    ahead = sum(1 for f in steps if f.clock["step"] > 0)
    return Check("clock steps change nothing", not bad,
                 f"{len(steps)} clock steps ({ahead} forward, "
                 f"{len(steps) - ahead} back), {len(bad)} set off a "
                 "fence, release, promotion or rejoin", details)
