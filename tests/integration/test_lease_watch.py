"""The followers' watch of the leader Lease (issue 19, item 9), with three
`pglease-agent --election-only` agents against the emulator: a release is
seen within a round trip, a follower sends next to nothing at idle, and a
watch that breaks (closed, silent, 410 Gone) falls back to reads and comes
back, without ever delaying the holder's own fence."""

import signal
import time

import pytest

import pgharness
import test_election as te
from test_election import ElectionCluster, parse_time

RETRY_PERIOD = 2.0       # the default: what a poll costs is a retry_period
LEASE_DURATION = 6.0
RENEW_DEADLINE = 4.0
TICK_MAX = RETRY_PERIOD * 1.1
ROUND_TRIP = 0.5         # a release seen and taken: two requests, a tick


class WatchCluster(ElectionCluster):
    """test_election's cluster with retry_period 2 s and lease_watch set."""

    def __init__(self, workdir, reaper, binaries, watch):
        super().__init__(workdir, reaper, binaries, api_timeout=1.0)
        self.watch = watch

    def start(self):
        self.emu.start()
        self.emu.watches(bookmark_interval=5)
        for name in te.NODES:
            self.emu.create_pod(te.NS, name, {"pglease.io/cluster": te.CLUSTER})
            agent = te.Agent(self, name)
            agent.configure()
            self.rewrite(agent)
            self.agents[name] = agent
        for agent in self.agents.values():
            agent.start()
        self.monitor = te.Monitor(self)
        self.monitor.start()
        return self

    def rewrite(self, agent):
        with open(agent.conf, encoding="utf-8") as f:
            lines = [line for line in f if not line.startswith((
                "lease_duration=", "renew_deadline=", "retry_period="))]
        lines += [f"lease_duration={te.ms(LEASE_DURATION)}\n",
                  f"renew_deadline={te.ms(RENEW_DEADLINE)}\n",
                  f"retry_period={te.ms(RETRY_PERIOD)}\n",
                  f"lease_watch={'yes' if self.watch else 'no'}\n"]
        agent._write(agent.conf, "".join(lines), 0o644)


@pytest.fixture
def make_watch_cluster(workdir, reaper, binaries):
    made = []

    def make(watch=True):
        c = WatchCluster(workdir, reaper, binaries, watch)
        made.append(c)
        return c.start()

    yield make
    for c in made:
        c.close()


def first_leader(cluster):
    agent, _ = cluster.wait_holder(LEASE_DURATION + 2 * TICK_MAX + 1)
    return agent


def followers_watching(cluster, leader, timeout=LEASE_DURATION * 2):
    """Wait until every live follower has a stream open."""
    def open_streams():
        users = {w["user"] for w in cluster.emu.watches()["watches"]}
        return all(a.name in users for a in cluster.agents.values()
                   if a.alive() and a is not leader)
    try:
        pgharness.wait_for(open_streams, timeout, "the followers' watches")
    except AssertionError:
        print(cluster.emu.watches(), cluster.logs())
        raise


def hand_over(cluster, leader):
    """SIGTERM the holder (it releases); the seconds from its release to
    the successor's acquisition, and the successor."""
    leader.signal(signal.SIGTERM)
    assert leader.proc.wait(10) == 0
    successor, _ = cluster.wait_holder(LEASE_DURATION,
                                       other_than=leader.name)
    released = parse_time(leader.lines("release")[-1]["time"])
    acquired = parse_time(successor.lines("acquire")[-1]["time"])
    return acquired - released, successor


def restart(agent):
    agent.generation += 1
    agent.start()


def test_follower_takes_a_released_lease_within_a_round_trip(
        make_watch_cluster):
    cluster = make_watch_cluster()
    leader = first_leader(cluster)
    times = []
    for _ in range(3):
        followers_watching(cluster, leader)
        took, successor = hand_over(cluster, leader)
        times.append(took)
        restart(leader)
        leader = successor
    print(f"\nhand-over with the watch (retry_period {RETRY_PERIOD:g}s): "
          + ", ".join(f"{t:.3f}s" for t in times))
    assert max(times) < ROUND_TRIP, cluster.logs()
    cluster.assert_never_two_leaders()


def test_idle_followers_send_next_to_no_requests(make_watch_cluster):
    cluster = make_watch_cluster()
    leader = first_leader(cluster)
    followers_watching(cluster, leader)
    cluster.emu.reset_stats()
    window = 5 * RETRY_PERIOD
    time.sleep(window)    # the measured window itself, not a wait
    tokens = cluster.emu.stats()["tokens"]
    for agent in cluster.agents.values():
        sent = tokens.get(agent.token, {}).get("total", 0)
        if agent is leader:
            # One renewal a retry_period.
            assert sent >= window / RETRY_PERIOD * 0.7
        else:
            # Polling would be one GET a tick (5 here); a watch that
            # restarts now and then costs one.
            assert sent <= 1, (agent.name, tokens)
    cluster.assert_never_two_leaders()


@pytest.mark.parametrize("breakage", ["close", "silence", "gone"])
def test_broken_watch_falls_back_and_comes_back(make_watch_cluster,
                                                breakage):
    cluster = make_watch_cluster()
    leader = first_leader(cluster)
    followers_watching(cluster, leader)
    before = cluster.emu.watches()["watches"]
    if breakage == "gone":
        cluster.emu.watches(compact=True, action="gone")
    else:
        cluster.emu.watches(action=breakage)
    # The followers see the holder renew (no spurious acquisition) and
    # open new streams: a 410 or a silence by listing again.
    followers_watching_again = lambda: all(  # noqa: E731
        any(w["user"] == a.name and w["id"] not in
            {b["id"] for b in before} for w in cluster.emu.watches()[
                "watches"])
        for a in cluster.agents.values() if a is not leader)
    pgharness.wait_for(followers_watching_again,
                       2 * RETRY_PERIOD + 1 + 2 * TICK_MAX + 1,
                       f"new watches after '{breakage}'")
    assert cluster.holder() == leader.name
    for agent in cluster.agents.values():
        if agent is not leader:
            assert not agent.lines("acquire"), agent.log_text()
    took, _ = hand_over(cluster, leader)
    print(f"\nafter '{breakage}': hand-over in {took:.3f}s")
    assert took < ROUND_TRIP, cluster.logs()
    cluster.assert_never_two_leaders()


def test_silent_watches_never_delay_the_fence_of_a_cut_off_holder(
        make_watch_cluster):
    cluster = make_watch_cluster()
    leader = first_leader(cluster)
    followers_watching(cluster, leader)
    cluster.emu.watches(action="silence")
    cluster.emu.fault(leader.token, "refuse")
    time.sleep(0.3)                 # a renewal in flight lands or fails
    last_renewal = parse_time(cluster.lease()["spec"]["renewTime"])
    successor, _ = cluster.wait_holder(LEASE_DURATION + 3 * TICK_MAX + 2,
                                       other_than=leader.name)
    pgharness.wait_for(lambda: leader.lines("fence"), RENEW_DEADLINE,
                       f"{leader.name} to log the loss")
    fenced = parse_time(leader.lines("fence")[0]["time"])
    acquired = parse_time(successor.lines("acquire")[-1]["time"])
    print(f"\nsilent watches, holder cut off: fence +"
          f"{fenced - last_renewal:.3f}s, acquired +"
          f"{acquired - last_renewal:.3f}s")
    assert fenced - last_renewal <= RENEW_DEADLINE + 0.5
    assert fenced < acquired
    cluster.assert_never_two_leaders()
