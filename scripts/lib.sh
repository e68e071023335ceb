# Shared helpers for scripts/test and scripts/demo (sourced, not run).
# shellcheck shell=bash

# Everything the build, the tests and the demo need, as Debian 12 packages.
PGLEASE_PACKAGES=(
	meson ninja-build pkg-config gcc libc6-dev
	libpq-dev libcurl4-openssl-dev libcjson-dev libsystemd-dev libcmocka-dev
	postgresql-15 postgresql-client-15 scdoc
	python3 python3-pytest python3-psycopg2 python3-yaml
	openssl yamllint pgpool2
)

# Debian's python3 (with pytest and psycopg2) must win over a private one
# (pyenv and the like) earlier in PATH.
export PATH="/usr/bin:/bin:/usr/sbin:/sbin:${PATH}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

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

apt_install() {
	as_root env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 apt-get install -y -q \
		--no-install-recommends -o Dpkg::Use-Pty=0 "$@"
}

# Install whatever is missing; does no apt at all when nothing is.
# kubectl is optional: Debian's kubernetes-client is installed only when
# no kubectl exists and the package is available.
ensure_packages() {
	local missing=() pkg
	for pkg in "${PGLEASE_PACKAGES[@]}"; do
		pkg_installed "$pkg" || missing+=("$pkg")
	done
	if ((${#missing[@]})); then
		log "installing: ${missing[*]}"
		as_root env DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 apt-get update -q
		apt_install "${missing[@]}" || die "apt-get install failed"
	fi
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
