#!/bin/sh
# The agent container's pre-stop hook. The kubelet sends SIGTERM to a
# container as soon as its own hook returns, and the hooks of a pod's
# containers run in parallel: without this wait the agent would get SIGTERM
# while the postgres container's hook (prestop.sh: agentctl demote --wait)
# is still handing the primary role over through it. It returns when the
# postmaster has stopped, or after DEMOTE_TIMEOUT + 15 s.
pid_file="${PGDATA:-/var/lib/postgresql/data/pgdata}/postmaster.pid"
deadline=$(($(date +%s) + ${DEMOTE_TIMEOUT:-60} + 15))
while [ "$(date +%s)" -lt "$deadline" ]; do
	pid=$(head -n 1 "$pid_file" 2>/dev/null) || exit 0
	[ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || exit 0
	sleep 1
done
