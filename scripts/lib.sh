# Shared helpers for scripts/test and scripts/demo (sourced, not run).
# shellcheck shell=bash

# What scripts/demo runs, as Debian 12 packages: the build of pglease-agent
# and agentctl, PostgreSQL 15 (initdb, postgres, pg_rewind; pg_basebackup),
# and the demo's driver (python3 with psycopg2; openssl makes the API
# emulator's certificates).
PGLEASE_DEMO_PACKAGES=(
	meson ninja-build pkg-config gcc libc6-dev
	libpq-dev libcurl4-openssl-dev libcjson-dev libyaml-dev libsystemd-dev libmicrohttpd-dev
	postgresql-15 postgresql-client-15
	python3 python3-psycopg2 openssl
)
# Everything the build, the tests and the demo need: the demo's packages and
# the tests' own (scripts/test, scripts/fuzz).
PGLEASE_PACKAGES=(
	"${PGLEASE_DEMO_PACKAGES[@]}"
	libcmocka-dev scdoc python3-pytest python3-yaml
	yamllint pgpool2 spin curl iproute2 prometheus
	clang libclang-rt-14-dev debootstrap
	containerd runc containernetworking-plugins iptables
)

# Debian's python3 (with pytest and psycopg2) must win over a private one
# (pyenv and the like) earlier in PATH.
export PATH="/usr/bin:/bin:/usr/sbin:/sbin:${PATH}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run "$@" with its output appended to $step_log when that is set
# (scripts/demo keeps apt and the build out of sight there), else on the
# terminal.
quietly() {
	if [[ -n "${step_log:-}" ]]; then
		"$@" >>"$step_log" 2>&1
	else
		"$@"
	fi
}

# die, showing first the end of $step_log and its path when output goes
# there.
die_logged() {
	if [[ -n "${step_log:-}" && -s "$step_log" ]]; then
		printf -- '--- the last lines of %s:\n' "$step_log" >&2
		tail -n 30 "$step_log" >&2
		printf -- '--- the whole log: %s\n' "$step_log" >&2
	fi
	die "$@"
}

# Run a command as root: directly when we are root, else through sudo
# (non-interactive when there is no terminal to ask for a password).
as_root() {
	if [[ "$(id -u)" -eq 0 ]]; then
		"$@"
	elif [[ -t 0 ]]; then
		sudo "$@"
	else
		sudo -n "$@"
	fi
}

pkg_installed() {
	[[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

pkg_available() {
	local candidate
	candidate=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')
	[[ -n "$candidate" && "$candidate" != "(none)" ]]
}

# Write into directory $1 apt preferences (for -o Dir::Etc::PreferencesParts)
# that hold every installed package at its version and make apt install a
# package at the version of the installed ones built from the same source
# (perl at perl-base's, libsystemd-dev at libsystemd0's), where it has
# that version: then nothing installed moves. The host's own
# preferences.d comes first.
write_sibling_preferences() {
	local dir=$1 part
	for part in /etc/apt/preferences.d/*; do
		[[ -e "$part" ]] && ln -s "$part" "$dir/"
	done
	dpkg-query -W -f='${db:Status-Abbrev} ${source:Package} ${Version}\n' |
		awk '$1 == "ii" && !seen[$2 " " $3]++ {
			printf "Package: src:%s\nPin: version %s\nPin-Priority: 990\n\n", $2, $3 }' \
			>"$dir/zz-pglease-installed.pref"
}

# What apt's plan (apt_plan's output on stdin) changes of the installed
# packages: " NAME OLD -> NEW," per upgrade, " remove NAME," per removal.
plan_changes() {
	awk '/^Inst [^ ]+ \[/ { sub(/^\[/, "", $3); sub(/\]$/, "", $3); sub(/^\(/, "", $4)
			printf " %s %s -> %s,", $2, $3, $4 }
		/^Remv / { printf " remove %s,", $2 }'
}

# apt-get's plan to install "$@" (a simulation, run as any user).
apt_plan() {
	LC_ALL=C.UTF-8 apt-get install -s -q --no-install-recommends "$@" 2>&1
}

# The services enabled on this host, one "sysv NAME LINK" or "systemd UNIT
# LINK" a line: the start links of runlevels 2 to 5 to init scripts, and
# the symlinks in /etc/systemd/system to unit files (a link to /dev/null is
# a mask, not a service).
enabled_services() {
	local link target
	for link in /etc/rc[2-5].d/S* /etc/systemd/system/* /etc/systemd/system/*/*; do
		[[ -L "$link" ]] || continue
		target=$(readlink "$link") || continue
		case "$link:$target" in
		*:/dev/null) ;;
		/etc/rc*) printf 'sysv %s %s\n' "${target##*/}" "$link" ;;
		*) printf 'systemd %s %s\n' "${target##*/}" "$link" ;;
		esac
	done
}

# Disable again the services of the lines of enabled_services on stdin:
# an init script with update-rc.d (which disables the systemd unit of the
# same name too), a unit with systemctl, or where systemd is not installed
# by removing the links (all that enabling made). Prints the names.
disable_services() {
	local kind name link done=" "
	while read -r kind name link; do
		[[ -n "$kind" && -L "$link" ]] || continue
		if [[ "$kind" == systemd ]] && ! command -v systemctl >/dev/null 2>&1; then
			quietly as_root rm -fv "$link"
		elif [[ "$done" != *" $kind:$name "* ]]; then
			done+="$kind:$name "
			if [[ "$kind" == sysv ]]; then
				quietly as_root update-rc.d "$name" disable
			elif [[ -d /run/systemd/system ]]; then
				quietly as_root systemctl disable --quiet "$name"
			else
				quietly as_root systemctl --root=/ disable --quiet "$name"
			fi
		fi || log "packages: could not disable $name"
		printf '%s\n' "$name"
	done
}

# Whether one of the packages "${@:2}" ships unit file or init script $1.
shipped_by() {
	local name=$1 pkg
	shift
	for pkg; do
		dpkg-query -L "$pkg" 2>/dev/null |
			awk -v n="$name" '$0 ~ /\/(systemd\/system|init\.d)\// && substr($0, length($0) - length(n)) == "/" n { f = 1 } END { exit !f }' &&
			return 0
	done
	return 1
}

# A policy-rc.d that denies every start (invoke-rc.d and deb-systemd-invoke
# ask it), in place while apt-get runs when the host has none of its own.
POLICY_RC_D=/usr/sbin/policy-rc.d
POLICY_RC_D_MARK="# pglease scripts/lib.sh: no service starts while it installs packages"

remove_policy_rc_d() {
	if grep -qxF "$POLICY_RC_D_MARK" "$POLICY_RC_D" 2>/dev/null; then
		as_root rm -f "$POLICY_RC_D"
	fi
}

# apt-get install "$@" without recommends, and without starting or leaving
# enabled any service the packages ship: a policy-rc.d that denies starts
# while apt runs (unless the host has its own, which then decides), then
# the units and init scripts that the install enabled and that the
# installed packages ship are disabled again (their names in
# $apt_disabled). Nothing that was enabled or running before is touched.
apt_install() {
	local before installed status=0 ours=0
	before=$(enabled_services)
	installed=$(apt_plan "$@" | awk '/^Inst [^ ]+ [^[]/ { print $2 }') || true
	if [[ ! -e "$POLICY_RC_D" ]]; then
		ours=1
		trap remove_policy_rc_d EXIT
		trap 'remove_policy_rc_d; exit 130' INT TERM
		if ! printf '#!/bin/sh\n%s\nexit 101\n' "$POLICY_RC_D_MARK" |
			as_root tee "$POLICY_RC_D" >/dev/null || ! as_root chmod 755 "$POLICY_RC_D"; then
			log "packages: could not write $POLICY_RC_D; services may start"
		fi
	fi
	quietly as_root env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 NEEDRESTART_SUSPEND=1 \
		apt-get install -y -q --no-install-recommends -o Dpkg::Use-Pty=0 "$@" || status=$?
	if ((ours)); then
		remove_policy_rc_d
		trap - EXIT INT TERM
	fi
	# New services only: one that was enabled before stays as it is.
	# shellcheck disable=SC2086
	apt_disabled=$(enabled_services |
		awk 'NR == FNR { before[$1 " " $2] = 1; next } !before[$1 " " $2]' \
			<(printf '%s\n' "$before") - |
		while read -r kind name link; do
			shipped_by "$name" $installed && printf '%s %s %s\n' "$kind" "$name" "$link"
		done | disable_services | sort -u | paste -sd ' ' -) || true
	return $status
}

# Install those of the packages "$@" that are missing, and nothing else
# that can be avoided: no recommends, each new package at the version of
# the installed ones of its source (write_sibling_preferences: perl at
# perl-base's, so that perl-base does not move), no service started or
# enabled (apt_install). Where apt cannot do without upgrading or removing
# an installed package, it is allowed to; with --no-upgrade first
# (scripts/demo) it is not: install_missing stops, saying which packages
# would change and how to accept that. Does no apt at all when nothing is
# missing.
install_missing() {
	local strict=0 missing=() pkg prefs plan changes opts
	if [[ "${1:-}" == --no-upgrade ]]; then
		strict=1
		shift
	fi
	for pkg; do
		pkg_installed "$pkg" || missing+=("$pkg")
	done
	if ((${#missing[@]} == 0)); then
		log "packages: the $# needed are installed"
		return 0
	fi
	log "packages: installing ${missing[*]}"
	quietly as_root env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 apt-get update -q ||
		die_logged "apt-get update failed"
	prefs=$(mktemp -d)
	write_sibling_preferences "$prefs"
	opts=(-o "Dir::Etc::PreferencesParts=$prefs")
	if ! plan=$(apt_plan "${opts[@]}" "${missing[@]}") ||
		[[ -n "$(plan_changes <<<"$plan")" ]]; then
		# Not without changing installed packages: apt's own choice.
		opts=()
		if ! plan=$(apt_plan "${missing[@]}"); then
			rm -rf "$prefs"
			quietly printf '%s\n' "$plan"
			die_logged "apt-get cannot install ${missing[*]}"
		fi
		changes=$(plan_changes <<<"$plan")
		if ((strict)); then
			rm -rf "$prefs"
			die "installing ${missing[*]} would also change installed packages:${changes%,}.
To accept that, install them yourself, then run this again:
  apt-get install --no-install-recommends ${missing[*]}"
		fi
		log "packages: apt also changes${changes%,}"
	fi
	apt_install "${opts[@]}" "${missing[@]}" || {
		rm -rf "$prefs"
		die_logged "apt-get install failed"
	}
	rm -rf "$prefs"
	log "packages: installed${apt_disabled:+; services they enabled disabled again: $apt_disabled}"
}

# What the tests need (scripts/test, scripts/fuzz). kubectl is optional:
# Debian's kubernetes-client is installed only when no kubectl exists and
# the package is available.
ensure_packages() {
	install_missing "${PGLEASE_PACKAGES[@]}"
	if ! command -v kubectl >/dev/null 2>&1; then
		if pkg_available kubernetes-client; then
			log "installing kubernetes-client (kubectl)"
			apt_install kubernetes-client || log "kubernetes-client not installed; continuing without kubectl"
		else
			log "kubectl not found and kubernetes-client unavailable; continuing without it"
		fi
	fi
}

# meson setup into $1 with the remaining arguments as options: a fresh
# setup, a reconfigure of a healthy directory, or a wipe of a broken one.
# Options given again on reconfigure so that a stale directory converges.
meson_setup() {
	local dir=$1
	shift
	if [[ -f "$dir/meson-private/coredata.dat" ]]; then
		meson setup --reconfigure "$dir" "$@" ||
			meson setup --wipe "$dir" "$@"
	else
		rm -rf "$dir"
		meson setup "$dir" "$@"
	fi
}

# Build the helm binary that the chart tests use, from the Go module in
# tests/k8s/helm (go.mod pins the version, go.sum the sources; Go is only a
# build tool for tests, never part of the product). The binary lives in a
# per-user cache outside git, one directory per version, so every clone on
# this machine shares it and it is rebuilt only when missing or when the
# pinned version changes. Exports PGLEASE_HELM with its path; returns
# non-zero (after saying why) when it cannot be built.
ensure_helm() {
	local root moddir version cache bin go client_go major minor tmp
	root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
	moddir="$root/tests/k8s/helm"
	version=$(awk '$1 == "helm.sh/helm/v3" { print $2; exit }' "$moddir/go.mod")
	[[ -n "$version" ]] || { log "no helm.sh/helm/v3 version in $moddir/go.mod"; return 1; }
	cache="${XDG_CACHE_HOME:-$HOME/.cache}/pglease/helm-$version"
	bin="$cache/helm"
	if [[ -x "$bin" ]] && "$bin" version --short 2>/dev/null | grep "^$version" >/dev/null; then
		export PGLEASE_HELM="$bin"
		return 0
	fi
	# The official Go install puts go in /usr/local/go/bin, often not in PATH.
	go=$(command -v go || true)
	[[ -n "$go" ]] || [[ ! -x "${GOROOT:-/usr/local/go}/bin/go" ]] || go="${GOROOT:-/usr/local/go}/bin/go"
	[[ -n "$go" ]] || { log "no go toolchain: cannot build helm $version"; return 1; }
	log "building helm $version into $cache (Go module proxy, nice -n 19; a few minutes the first time)"
	# helm's Makefile stamps the version and the Kubernetes version that
	# `helm template` and `helm lint` assume (client-go v0.X.Y is Kubernetes 1.X).
	client_go=$(cd "$moddir" && "$go" list -m -f '{{.Version}}' k8s.io/client-go) ||
		{ log "go list k8s.io/client-go failed in $moddir"; return 1; }
	client_go=${client_go#v}
	major=$((${client_go%%.*} + 1))
	minor=${client_go#*.}
	minor=${minor%%.*}
	mkdir -p "$cache" || return 1
	tmp=$(mktemp "$cache/helm.XXXXXX") || return 1
	if ! (cd "$moddir" && CGO_ENABLED=0 nice -n 19 "$go" build -trimpath -o "$tmp" -ldflags "-w -s \
		-X helm.sh/helm/v3/internal/version.version=$version \
		-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=$major \
		-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor \
		-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=$major \
		-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
		helm.sh/helm/v3/cmd/helm); then
		rm -f "$tmp"
		log "building helm $version failed"
		return 1
	fi
	# Rename so that a concurrent clone never runs a half-written binary.
	mv -f "$tmp" "$bin" || return 1
	log "helm $version built: $bin"
	export PGLEASE_HELM="$bin"
}

# --- fuzzing (tests/fuzz/, scripts/fuzz, scripts/test) -----------------------

# Every libFuzzer target of tests/fuzz/ (fuzz-NAME.c): found, not listed,
# so that a new one cannot be built and never run (fuzz-watch-stream was).
FUZZ_TARGETS=()
for _fuzz_source in "$(dirname "${BASH_SOURCE[0]}")"/../tests/fuzz/fuzz-*.c; do
	_fuzz_source=${_fuzz_source##*/fuzz-}
	FUZZ_TARGETS+=("${_fuzz_source%.c}")
done
unset _fuzz_source

# Configure and build the libFuzzer targets in $1 with clang.
fuzz_build() {
	local dir=$1
	CC=clang meson_setup "$dir" -Dfuzz=enabled -Dtests=disabled -Ddocs=disabled &&
		nice -n 19 meson compile -C "$dir"
}

# Run target $2 of build dir $1 for $3 seconds: first every input of the
# checked-in corpus, then new ones, kept in $1/fuzz-corpus/$2 (the
# checked-in corpus is never written). A crash leaves its input in
# $1/fuzz-artifacts/$2/ and the status non-zero. Log in $1/fuzz-$2.log.
fuzz_run() {
	local dir=$1 target=$2 seconds=$3 work
	work="$dir/fuzz-corpus/$target"
	mkdir -p "$work" "$dir/fuzz-artifacts/$target"
	ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} \
		UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1} \
		nice -n 19 "$dir/tests/fuzz/fuzz-$target" -max_total_time="$seconds" \
		-timeout=30 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$dir/fuzz-artifacts/$target/" \
		"$work" "tests/fuzz/corpus/$target" >"$dir/fuzz-$target.log" 2>&1
}
