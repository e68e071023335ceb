#!/bin/sh
# Starts Pgpool-II in the foreground for pglease. Writes pool_passwd and
# pcp.conf from the mounted Secret files first, so that no password passes
# through the environment or a command line, then execs pgpool.
#
#   PGPOOL_CONF        pgpool.conf           (/etc/pgpool/pgpool.conf)
#   PGPOOL_HBA         pool_hba.conf         (/etc/pgpool/pool_hba.conf)
#   PGPOOL_RUN_DIR     writable directory: pool_passwd, pcp.conf, pid,
#                      sockets, pgpool_status (/run/pgpool; must match the
#                      paths in pgpool.conf)
#   PGPOOL_SUPERUSER   the superuser, for sr_check and health_check (postgres)
#   PGPOOL_SUPERUSER_PASSWORD_FILE                (/run/secrets/pglease/superuser)
#   PGPOOL_USERS_DIR   optional: one file per further user (name = user,
#                      content = password)        (/run/secrets/pgpool-users)
#   PGPOOL_PCP_USER    the PCP user (pcpadmin)
#   PGPOOL_PCP_PASSWORD_FILE                      (/run/secrets/pgpool/pcp)
#   PGPOOL_BIN         the pgpool program (pgpool, from PATH)
set -eu

conf=${PGPOOL_CONF:-/etc/pgpool/pgpool.conf}
hba=${PGPOOL_HBA:-/etc/pgpool/pool_hba.conf}
run_dir=${PGPOOL_RUN_DIR:-/run/pgpool}
superuser=${PGPOOL_SUPERUSER:-postgres}
superuser_file=${PGPOOL_SUPERUSER_PASSWORD_FILE:-/run/secrets/pglease/superuser}
users_dir=${PGPOOL_USERS_DIR:-/run/secrets/pgpool-users}
pcp_user=${PGPOOL_PCP_USER:-pcpadmin}
pcp_file=${PGPOOL_PCP_PASSWORD_FILE:-/run/secrets/pgpool/pcp}

umask 077
mkdir -p "$run_dir"

# One pool_passwd line: "user:TEXT<password>" (the password as it is;
# Pgpool-II needs it in clear to answer the backends' SCRAM challenge).
passwd_line() {
	printf '%s:TEXT%s\n' "$1" "$(cat "$2")"
}

{
	passwd_line "$superuser" "$superuser_file"
	if [ -d "$users_dir" ]; then
		for f in "$users_dir"/*; do
			[ -f "$f" ] || continue
			name=${f##*/}
			[ "$name" = "$superuser" ] || passwd_line "$name" "$f"
		done
	fi
} > "$run_dir/pool_passwd.new"
mv "$run_dir/pool_passwd.new" "$run_dir/pool_passwd"

# pcp.conf holds the md5 of the PCP password; pcppass (PCPPASSFILE format)
# the password itself, for pgpool-follow.sh.
pcp_password=$(cat "$pcp_file")
printf '%s:%s\n' "$pcp_user" "$(printf '%s' "$pcp_password" | md5sum | cut -d ' ' -f 1)" \
	> "$run_dir/pcp.conf"
printf '*:*:%s:%s\n' "$pcp_user" "$pcp_password" > "$run_dir/pcppass.new"
mv "$run_dir/pcppass.new" "$run_dir/pcppass"

exec "${PGPOOL_BIN:-pgpool}" -n -D -f "$conf" -F "$run_dir/pcp.conf" -a "$hba"
