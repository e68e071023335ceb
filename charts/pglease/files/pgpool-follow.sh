#!/bin/sh
# Keeps Pgpool-II's idea of the primary in line with the servers'. Pgpool-II
# 4.3 looks for the primary only when it starts and when it detaches or
# attaches a node; after a switchover whose old primary is back as a standby
# before a health check saw it down, it would keep sending writes to that
# standby; and a primary it detached stays detached when it comes back as
# the primary (auto_failback is for standbys). Every PGPOOL_FOLLOW_INTERVAL
# seconds this asks Pgpool-II (PCP over its Unix socket) for each node's
# role as Pgpool-II sees it and as the server reports it: when exactly one
# attached server is a primary and Pgpool-II names another node, it tells
# Pgpool-II with pcp_promote_node (without --switchover: that changes
# Pgpool-II's view only, it never promotes a server); when no attached
# server is a primary and exactly one detached one is, up again, it
# attaches that node (pcp_attach_node). The agents decide; this only
# follows.
#
#   PGPOOL_RUN_DIR          the PCP socket directory and pcppass (/run/pgpool)
#   PGPOOL_PCP_PORT         PCP port (9898)
#   PGPOOL_PCP_USER         PCP user (pcpadmin)
#   PGPOOL_FOLLOW_INTERVAL  seconds between two looks (2)
set -u

run_dir=${PGPOOL_RUN_DIR:-/run/pgpool}
port=${PGPOOL_PCP_PORT:-9898}
user=${PGPOOL_PCP_USER:-pcpadmin}
interval=${PGPOOL_FOLLOW_INTERVAL:-2}
PCPPASSFILE="$run_dir/pcppass"
export PCPPASSFILE

while :; do
	sleep "$interval"
	[ -r "$PCPPASSFILE" ] || continue
	# One line per node, in node id order: host port status weight
	# status_name backend_status role backend_role ...
	nodes=$(pcp_node_info -h "$run_dir" -p "$port" -U "$user" -w -a 2>/dev/null) || continue
	# believed starts at -1: an unset awk variable compares equal to
	# node 0, and a Pgpool-II that believes no node the primary was never
	# told that node 0 is.
	target=$(printf '%s\n' "$nodes" | awk '
		BEGIN { believed = -1 }
		$5 != "down" && $8 == "primary" { actual = NR - 1; n++ }
		$7 == "primary" { believed = NR - 1 }
		END { if (n == 1 && actual != believed) print actual }')
	# A node Pgpool-II detached (a health check failed, or its server shut
	# down: a killed primary restarted by the kubelet before its Lease ran
	# out) whose server is up again as the only primary: attach it, or no
	# write goes anywhere. auto_failback attaches standbys only.
	attach=$(printf '%s\n' "$nodes" | awk '
		$5 == "down" && $6 == "up" && $8 == "primary" { down = NR - 1; n++ }
		$5 != "down" && $8 == "primary" { up++ }
		END { if (n == 1 && up == 0) print down }')
	if [ -n "$attach" ]; then
		echo "pgpool-follow: node $attach is the primary but detached; attaching it" >&2
		pcp_attach_node -h "$run_dir" -p "$port" -U "$user" -w -n "$attach" >&2 || true
		continue
	fi
	[ -n "$target" ] || continue
	echo "pgpool-follow: node $target is the primary; telling Pgpool-II" >&2
	pcp_promote_node -h "$run_dir" -p "$port" -U "$user" -w -n "$target" >&2 || true
done
