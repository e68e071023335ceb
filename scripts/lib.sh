# Shared helpers for scripts/test and scripts/demo (sourced, not run).
# shellcheck shell=bash

# Everything the build, the tests and the demo need, as Debian 12 packages.
PGLEASE_PACKAGES=(
	meson ninja-build pkg-config gcc libc6-dev
	libpq-dev libcurl4-openssl-dev libcjson-dev libyaml-dev libsystemd-dev libcmocka-dev libmicrohttpd-dev
	postgresql-15 postgresql-client-15 scdoc
	python3 python3-pytest python3-psycopg2 python3-yaml
	openssl yamllint pgpool2 spin curl iproute2 prometheus
	clang libclang-rt-14-dev
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

FUZZ_TARGETS=(config-file config-env kubeconfig lease-json pod-json kube-response control)

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
