"""The checker's verdicts on made-up histories: each test builds the
records a run would have left and asserts what the report must say.
Run with: /usr/bin/python3 -m pytest tests/resilience/test_checker.py"""

import os
import sys
import types

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import checker  # noqa: E402  pylint: disable=wrong-import-position


def write(client, row_id, port, timeline, start, end, outcome="ok",
          notice=None):
    return types.SimpleNamespace(client=client, id=row_id, port=port,
                                 timeline=timeline, start=start, end=end,
                                 outcome=outcome, notice=notice)


def read(client, start, count, max_id, port=1, in_recovery=False):
    return types.SimpleNamespace(client=client, start=start, end=start + 0.01,
                                 outcome="ok", count=count, max_id=max_id,
                                 port=port, in_recovery=in_recovery)


def fault(index, name, injected, healthy, missed=False):
    return types.SimpleNamespace(
        index=index, name=name, target="pg-0", injected=injected,
        healed=injected + 1, healthy=healthy, healthy_bound_missed=missed,
        healthy_after=None if healthy is None else healthy - injected)


def test_sequential_handover_is_not_two_writers():
    writes = [write(1, 1, 5432, 1, 0.0, 0.1), write(1, 2, 5432, 1, 0.2, 0.3),
              write(1, 3, 5433, 2, 5.0, 5.1), write(2, 1, 5433, 2, 5.2, 5.3)]
    assert checker.overlapping_writers(writes) == []
    assert checker.returning_writers(writes) == []
    assert checker.check_single_writer(writes, [], 10).ok


def test_overlapping_acks_on_two_servers_are_a_violation():
    writes = [write(1, 1, 5432, 1, 0.0, 1.0), write(2, 1, 5433, 2, 0.5, 0.6)]
    pairs = checker.overlapping_writers(writes)
    assert len(pairs) == 1
    assert not checker.check_single_writer(writes, [], 10).ok


def test_overlap_on_one_server_or_one_timeline_is_not_counted():
    same_server = [write(1, 1, 5432, 1, 0.0, 1.0),
                   write(2, 1, 5432, 2, 0.5, 0.6)]
    assert checker.overlapping_writers(same_server) == []


def test_old_primary_writing_again_after_the_new_one_is_a_violation():
    writes = [write(1, 1, 5432, 1, 0.0, 0.1),
              write(2, 1, 5433, 2, 1.0, 1.1),
              write(1, 2, 5432, 1, 2.0, 2.1)]
    assert len(checker.returning_writers(writes)) == 1
    assert not checker.check_single_writer(writes, [], 10).ok


def test_split_brain_checker_violation_fails_the_check():
    assert not checker.check_single_writer([], [{"nodes": ["a", "b"]}],
                                           10).ok


def test_refused_writes_and_unknown_outcomes_are_not_losses():
    writes = [write(1, 1, 5432, 1, 0, 0.1),
              write(1, 2, 5432, 1, 0.2, 0.3, outcome="unknown"),
              write(1, 3, 5432, 1, 0.4, 0.5, outcome="failed")]
    final = {(1, 1)}
    assert checker.check_acknowledged(writes, final, True, [], "pg-0").ok
    assert checker.check_failed_not_committed(writes, final).ok
    assert not checker.check_failed_not_committed(writes,
                                                  final | {(1, 3)}).ok


def test_sync_loss_fails_and_async_loss_is_blamed_on_the_fault():
    writes = [write(1, 1, 5432, 1, 0, 0.1), write(1, 2, 5432, 1, 0.2, 0.3),
              write(1, 3, 5433, 2, 9.0, 9.1)]
    faults = [fault(1, "kill_primary_pod", 1.0, 8.0)]
    final = {(1, 1), (1, 3)}
    sync = checker.check_acknowledged(writes, final, True, faults, "pg-1")
    assert not sync.ok
    loose = checker.check_acknowledged(writes, final, False, faults, "pg-1")
    assert loose.ok and loose.info
    assert "#1 kill_primary_pod" in loose.details[0]


def test_fault_for_prefers_the_fault_under_way_then_the_next_one():
    faults = [fault(1, "a", 10.0, 20.0), fault(2, "b", 30.0, 40.0)]
    assert checker.fault_for(15.0, faults).index == 1
    assert checker.fault_for(25.0, faults).index == 2
    assert checker.fault_for(45.0, faults) is None


def test_healthy_bound():
    ok = [fault(1, "a", 0.0, 10.0)]
    assert checker.check_healthy_after_faults(ok, 60).ok
    slow = [fault(1, "a", 0.0, 70.0)]
    assert not checker.check_healthy_after_faults(slow, 60).ok
    never = [fault(1, "a", 0.0, None, missed=True)]
    assert not checker.check_healthy_after_faults(never, 60).ok


def test_stale_read_on_a_primary():
    writes = [write(1, 1, 5432, 1, 0.0, 0.1), write(1, 2, 5432, 1, 0.2, 0.3)]
    fresh = [read(1, 0.5, 2, 2)]
    stale = [read(1, 0.5, 1, 1)]
    standby = [read(1, 0.5, 1, 1, in_recovery=True)]
    assert checker.check_reads(writes, fresh, True, []).ok
    assert not checker.check_reads(writes, stale, True, []).ok
    assert checker.check_reads(writes, standby, True, []).ok
    assert checker.check_reads(writes, stale, False, []).info


def test_rejoined_needs_every_node_streaming_with_the_same_rows():
    final = {"healthy": True, "primary": "pg-0", "rows": 10, "nodes": {
        "pg-0": {"role": "primary", "agent": True, "supervisor": True,
                 "rows": 10},
        "pg-1": {"role": "replica", "agent": True, "supervisor": True,
                 "streaming": True, "rows": 10}}}
    assert checker.check_rejoined(final).ok
    final["nodes"]["pg-1"]["rows"] = 9
    assert not checker.check_rejoined(final).ok


def test_write_outage_is_the_longest_gap_without_an_ack():
    writes = [write(1, i, 5432, 1, t - 0.05, t) for i, t in
              enumerate([1.0, 1.5, 6.0, 6.5], 1)]
    f = fault(1, "a", 1.2, 7.0)
    assert abs(checker.write_outage(writes, f) - 4.5) < 1e-9


def test_reloads_must_be_answered_and_change_nothing_else():
    good = fault(1, "reload", 0.0, 3.0)
    good.reload = {"variant": "invalid", "logged": True, "alarms": []}
    silent = fault(2, "reload", 10.0, 13.0)
    silent.reload = {"variant": "unchanged", "logged": False, "alarms": []}
    fenced = fault(3, "reload", 20.0, 23.0)
    fenced.reload = {"variant": "changed", "logged": True,
                     "alarms": ["fence: fencing failed"]}
    other = fault(4, "kill_postmaster", 30.0, 33.0)
    assert checker.check_reloads([good, other]).ok
    check = checker.check_reloads([good, silent, fenced, other])
    assert not check.ok
    assert "3 reloads" in check.summary and "2 misbehaved" in check.summary
    assert any("no reload line" in d for d in check.details)
    assert any("fencing failed" in d for d in check.details)


def test_clock_steps_must_set_off_nothing():
    quiet = fault(1, "clock_step", 0.0, 3.0)
    quiet.clock = {"step": 412.0, "held": 2.0, "alarms": []}
    back = fault(2, "clock_step", 10.0, 13.0)
    back.clock = {"step": -90.0, "held": 5.0, "alarms": []}
    fenced = fault(3, "clock_step", 20.0, 23.0)
    fenced.clock = {"step": -30.0, "held": 1.0,
                    "alarms": ["pg-0 fence: renew deadline passed"]}
    other = fault(4, "kill_postmaster", 30.0, 33.0)
    check = checker.check_clock_steps([quiet, back, other])
    assert check.ok and "2 clock steps (1 forward, 1 back)" in check.summary
    check = checker.check_clock_steps([quiet, back, fenced, other])
    assert not check.ok and "1 set off" in check.summary
    assert "-30s" in check.details[0] and "renew deadline" in check.details[0]


def test_api_outage_bound_counts_from_the_api_return():
    """A fault of the whole API: nobody can lead until it answers again,
    so its bound counts from then; a node fault with the same times is
    judged from its injection."""
    outage = fault(1, "restart_apiserver", 0.0, 70.0)
    outage.api_back = 50.0
    assert checker.time_to_healthy(outage) == 20.0
    assert checker.check_healthy_after_faults([outage], 60).ok
    node_fault = fault(2, "cut_api_primary", 0.0, 70.0)
    assert not checker.check_healthy_after_faults([node_fault], 60).ok
    slow = fault(3, "restart_etcd", 0.0, 75.0)
    slow.api_back = 10.0
    check = checker.check_healthy_after_faults([slow], 60)
    assert not check.ok
    assert "65.0s from the API's return" in check.details[0]


def test_writes_acknowledged_while_the_api_is_frozen_are_a_violation():
    """kube-apiserver frozen at 10 s, thawed at 30 s, lease 4 s: a write
    sent at 12 s may still be taken (renew deadline not passed), one sent
    at 20 s may not; one after the thaw may."""
    freeze = fault(1, "sigstop_apiserver", 10.0, 40.0)
    freeze.api_down, freeze.healed = 10.0, 30.0
    early = [write(1, 1, 5432, 1, 12.0, 12.1), write(1, 2, 5433, 2, 35.0, 35.1)]
    assert checker.check_api_outage_writes(early, [freeze], 4.0).ok
    late = early + [write(1, 3, 5432, 1, 20.0, 20.1),
                    write(1, 4, 5432, 1, 21.0, 21.0, outcome="failed")]
    check = checker.check_api_outage_writes(late, [freeze], 4.0)
    assert not check.ok
    assert "1 writes acknowledged 10.0s" in check.details[0]
    assert checker.check_api_outage_writes(late, [freeze], 4.0,
                                           failsafe=True).status == "INFO"
