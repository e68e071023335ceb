"""Two promotions that chose the same timeline number (safety rule 5).

PostgreSQL numbers a promotion's timeline one above the highest history
file it can see. A member that promotes without having received another
member's newer history file (it was cut off, stopped, or two promotions
came within a second) picks the same number as that member: two branches
called timeline 2. A member on one of them that rejoins the other must
not stream: the timeline numbers match, so streaming starts at its own
LSN on the other branch, and pg_rewind finds "the same timeline" and
changes nothing. It is cloned again (rejoin_fallback = clone, the
default)."""

import os

import pgharness

HEALTHY = 90


def pg_ctl(node, *args, timeout=60):
    """pg_ctl on node's data directory, as the servers' user."""
    return node.cluster.reaper.run(
        [os.path.join(node.cluster.pg_bindir, "pg_ctl"), "-D", node.data_dir,
         *args], timeout=timeout, check=False)


def test_a_branch_of_the_same_number_is_cloned_again(cluster):
    primary = cluster.wait_healthy(HEALTHY)
    stray, successor = [n for n in cluster.nodes if n is not primary]
    primary.sql("CREATE TABLE before_branches (x int)")
    primary.sql("INSERT INTO before_branches VALUES (1)")
    pgharness.wait_for(
        lambda: stray._try_sql(  # pylint: disable=protected-access
            "SELECT count(*) FROM before_branches") == [(1,)],
        10, f"{stray.name} to replay the first row")

    # The stray member's pod goes away, having seen only timeline 1.
    assert stray.stop_agent() == 0
    stray.stop_supervisor()

    # A switchover: the successor promotes to timeline 2.
    result = primary.agentctl("switchover", "--to", successor.name, "--wait",
                              timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert cluster.wait_healthy(HEALTHY, exclude=[stray.name]) is successor
    assert successor.timeline() == 2
    successor.sql("CREATE TABLE on_the_primary (x int)")
    successor.sql("INSERT INTO on_the_primary VALUES (2)")

    # The stray data directory promoted by hand, cut off from everyone (no
    # primary_conninfo): it knows no timeline 2 and picks that number too,
    # then takes a write of its own.
    result = pg_ctl(stray, "start", "-w", "-l",
                    os.path.join(stray.dir, "stray-postgres.log"),
                    "-o", "-c primary_conninfo= -c primary_slot_name=")
    assert result.returncode == 0, result.stdout + result.stderr
    try:
        result = pg_ctl(stray, "promote", "-w")
        assert result.returncode == 0, result.stdout + result.stderr
        pgharness.wait_for(stray.is_primary, 30, "the stray promotion")
        assert stray.timeline() == 2
        stray.sql("CREATE TABLE only_on_the_branch (x int)")
        stray.sql("INSERT INTO only_on_the_branch SELECT generate_series(1, 1000)")
        stray.sql("CHECKPOINT")
    finally:
        result = pg_ctl(stray, "stop", "-w", "-m", "fast")
    assert result.returncode == 0, result.stdout + result.stderr

    # Its pod comes back: the init container compares the histories.
    stray.start_pod(init=True)
    pgharness.wait_for(lambda: stray.is_streaming_from(successor), HEALTHY,
                       f"{stray.name} to stream from {successor.name}")
    # Nothing of its own branch, everything of the primary's.
    assert stray.sql("SELECT to_regclass('only_on_the_branch')") == [(None,)]
    with open(stray.init_log, encoding="utf-8") as handle:
        init_log = handle.read()
    assert "another branch" in init_log, init_log[-3000:]
    assert stray.timeline() == 2
    pgharness.wait_for(
        lambda: stray._try_sql(  # pylint: disable=protected-access
            "SELECT x FROM on_the_primary") == [(2,)],
        30, f"{stray.name} to have the primary's row")
    assert stray.sql("SELECT x FROM before_branches") == [(1,)]
    # The branch's data went: a clone, not a rewind.
    assert "cloning it again" in init_log
    assert cluster.wait_healthy(HEALTHY) is successor
