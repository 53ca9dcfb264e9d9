#!/usr/bin/env bash
# scripts/setup.sh — install what Strata's tests and demo need (`make deps`).
#
#   * MariaDB server, mariabackup/mbstream and the client, from the
#     distribution's packages (apt-get). Tests start their own throwaway
#     mariadbd processes; this script never starts a MariaDB service.
#   * promtool (Debian's prometheus package) and docker-compose (Debian's
#     docker-compose package), which validate deployments/ in
#     `go test ./deployments/`, and the prometheus binary the metrics
#     end-to-end test scrapes with. This script never starts them.
#   * The Temporal CLI (dev server) at bin/temporal, built from source with
#     `go install` (no binaries are downloaded).
#   * With BENCH=1 (`make bench`): the peers and the write load of the
#     benchmarks, Debian's sysbench, zstd and mydumper (mydumper and myloader;
#     mariadb-backup is above).
#   * A MySQL 9.7 server and client in a chroot of Debian's unstable suite
#     under .cache/mysql (bookworm has no MySQL server): debootstrap
#     --variant=minbase, then mysql-server-core and mysql-client-core. The
#     wrappers in .cache/mysql/bin (mysqld, mysql, mysqlbinlog) run them in
#     a private mount namespace with the host's /tmp, the repository and
#     STRATA_MYSQL_BIND's directories bind-mounted at the same paths, so
#     server and agent see one datadir. The test harness starts throwaway
#     MySQL servers through them; STRATA_MYSQL=skip leaves this out.
#   * With STORAGE=gcs (`make demo STORAGE=gcs`): the GCS emulator
#     fake-gcs-server at bin/fake-gcs-server, built from source with
#     `go install` at the version go.mod requires.
#
# Idempotent: anything already present is left alone.
set -euo pipefail

TEMPORAL_VERSION=1.5.1
TEMPORAL_PKG=github.com/temporalio/cli/cmd/temporal
TEMPORAL_VERSION_VAR=github.com/temporalio/cli/temporalcli.Version

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

# find_tool NAME: print the path of NAME from PATH or the sbin directories
# (mariadbd lives in /usr/sbin, often not on a normal user's PATH).
find_tool() {
	local p
	if p="$(command -v "$1" 2>/dev/null)"; then
		printf '%s\n' "$p"
		return 0
	fi
	for d in /usr/sbin /usr/local/sbin /usr/bin /usr/local/bin; do
		if [ -x "$d/$1" ]; then
			printf '%s\n' "$d/$1"
			return 0
		fi
	done
	return 1
}

# ---- MariaDB -------------------------------------------------------------

missing=()
for tool in mariadbd mariabackup mbstream mariadb; do
	find_tool "$tool" >/dev/null || missing+=("$tool")
done

if [ "${#missing[@]}" -eq 0 ]; then
	log "MariaDB tools present: $("$(find_tool mariadbd)" --version 2>/dev/null | head -n1)"
else
	log "missing ${missing[*]}; installing mariadb-server mariadb-backup mariadb-client with apt-get"
	command -v apt-get >/dev/null 2>&1 ||
		die "apt-get not found; install MariaDB server, mariabackup (mariadb-backup) and client (>= 10.6) yourself"
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || die "not running as root and sudo is not available"
		sudo=(sudo)
	fi
	running_before="$(pgrep -x mariadbd || true)"
	${sudo[@]+"${sudo[@]}"} apt-get update
	${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y \
		mariadb-server mariadb-backup mariadb-client

	still_missing=()
	for tool in mariadbd mariabackup mbstream mariadb; do
		find_tool "$tool" >/dev/null || still_missing+=("$tool")
	done
	[ "${#still_missing[@]}" -eq 0 ] || die "still missing after apt-get install: ${still_missing[*]}"
	log "installed: $("$(find_tool mariadbd)" --version 2>/dev/null | head -n1)"

	# We never start a system MariaDB service. If the package's own scripts
	# started one (for /var/lib/mysql), leave it alone: tests don't use it.
	running_after="$(pgrep -x mariadbd || true)"
	if [ -n "$running_after" ] && [ "$running_after" != "$running_before" ]; then
		log "note: the package started a system mariadbd (pid $(echo "$running_after" | tr '\n' ' ')); leaving it alone — Strata tests start their own servers"
	fi
fi

# ---- Prometheus and docker-compose (deployments/ validation) -------------

# deploy_pkgs: the Debian packages of the missing tools, "tool:package" each.
deploy_pkgs=()
for tp in prometheus:prometheus promtool:prometheus docker-compose:docker-compose; do
	find_tool "${tp%%:*}" >/dev/null || deploy_pkgs+=("${tp#*:}")
done
if [ "${#deploy_pkgs[@]}" -eq 0 ]; then
	log "prometheus, promtool and docker-compose present: $("$(find_tool promtool)" --version 2>&1 | head -n1)"
else
	# shellcheck disable=SC2207 # package names have no spaces
	deploy_pkgs=($(printf '%s\n' "${deploy_pkgs[@]}" | sort -u))
	log "installing ${deploy_pkgs[*]} with apt-get"
	command -v apt-get >/dev/null 2>&1 ||
		die "apt-get not found; install Prometheus (prometheus, promtool >= 2.42) and docker-compose yourself"
	sudo=()
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || die "not running as root and sudo is not available"
		sudo=(sudo)
	fi
	running_before="$(pgrep -x prometheus || true)"
	${sudo[@]+"${sudo[@]}"} apt-get update
	${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		"${deploy_pkgs[@]}"
	for tool in prometheus promtool docker-compose; do
		find_tool "$tool" >/dev/null || die "still missing after apt-get install: $tool"
	done
	log "installed: $("$(find_tool promtool)" --version 2>&1 | head -n1)"
	# Debian's prometheus package may start a system Prometheus; tests start their own.
	running_after="$(pgrep -x prometheus || true)"
	if [ -n "$running_after" ] && [ "$running_after" != "$running_before" ]; then
		log "note: the package started a system prometheus (pid $(echo "$running_after" | tr '\n' ' ')); leaving it alone — Strata tests start their own"
	fi
fi

# ---- Temporal CLI --------------------------------------------------------

temporal="$repo/bin/temporal"

# temporal_ok: bin/temporal exists and is version $TEMPORAL_VERSION, judged by
# `temporal --version` or, for builds without the version stamped in
# (`go install` reports 0.0.0-DEV), by the module version Go recorded.
temporal_ok() {
	[ -x "$temporal" ] || return 1
	if "$temporal" --version 2>/dev/null | grep -qF "$TEMPORAL_VERSION"; then
		return 0
	fi
	command -v go >/dev/null 2>&1 &&
		go version -m "$temporal" 2>/dev/null |
		grep -qE "^[[:space:]]*mod[[:space:]]+github.com/temporalio/cli[[:space:]]+v${TEMPORAL_VERSION//./\\.}([[:space:]]|$)"
}

if temporal_ok; then
	log "temporal CLI $TEMPORAL_VERSION present at bin/temporal"
else
	command -v go >/dev/null 2>&1 || die "go not found on PATH; needed to build the temporal CLI"
	log "building temporal CLI v$TEMPORAL_VERSION into bin/ with go install (takes ~5 min the first time)..."
	mkdir -p "$repo/bin"
	# Build outside the repository so its go.mod and GOFLAGS like -mod=mod
	# don't interfere with `go install pkg@version`.
	(
		cd /
		GOFLAGS="" GOBIN="$repo/bin" go install \
			-ldflags "-X $TEMPORAL_VERSION_VAR=$TEMPORAL_VERSION" \
			"$TEMPORAL_PKG@v$TEMPORAL_VERSION"
	)
	temporal_ok || die "bin/temporal was built but does not report version $TEMPORAL_VERSION"
	log "built bin/temporal: $("$temporal" --version 2>/dev/null | head -n1)"
fi

# ---- MySQL in a chroot of Debian unstable ----------------------------------

MYSQL_SUITE=sid
MYSQL_MIRROR=${MYSQL_MIRROR:-http://deb.debian.org/debian}
# STRATA_MYSQL_DIR puts the chroot elsewhere (the test harness reads the same variable).
mysql_root="${STRATA_MYSQL_DIR:-$repo/.cache/mysql}"
mysql_chroot="$mysql_root/root"

# mysql_ok: the chroot has mysqld and the client and the wrappers are current.
mysql_ok() {
	[ -x "$mysql_chroot/usr/sbin/mysqld" ] && [ -x "$mysql_chroot/usr/bin/mysql" ] &&
		[ -x "$mysql_chroot/usr/bin/mysqlbinlog" ] && [ -f "$mysql_root/.complete" ] &&
		[ -x "$mysql_root/bin/mysqld" ]
}

# write_mysql_wrappers: .cache/mysql/bin/{mysqld,mysql,mysqlbinlog,...}. Each
# enters a private mount namespace (so nothing stays mounted on the host),
# binds /proc, /dev, /tmp, the repository and STRATA_MYSQL_BIND
# (colon-separated host directories) at the same paths inside the chroot,
# and execs the tool there: the process id stays the tool's own.
write_mysql_wrappers() {
	mkdir -p "$mysql_root/bin"
	{
		echo '#!/bin/sh'
		printf 'repo_dir=%s\n' "'$repo'"
		cat <<'WRAP'

# strata-mysql-exec TOOL ARGS...: run TOOL of the MySQL chroot next to this
# directory, with the host's /tmp, the directories named in
# STRATA_MYSQL_BIND and the repository bound at the same paths.
set -e
here=$(cd "$(dirname "$0")/.." && pwd)
root="$here/root"
tool=$1
shift
if [ "${STRATA_MYSQL_NS:-}" != "$root" ]; then
	export STRATA_MYSQL_NS="$root"
	exec unshare --mount --propagation private "$0" "$tool" "$@"
fi
bind() {
	[ -d "$1" ] || return 0
	mkdir -p "$root$1"
	mount --rbind "$1" "$root$1"
}
bind /proc
bind /dev
bind /sys
bind /tmp
bind "${TMPDIR:-/tmp}"
bind "$repo_dir"
old_ifs=$IFS
IFS=:
for d in ${STRATA_MYSQL_BIND:-}; do
	[ -n "$d" ] && bind "$d"
done
IFS=$old_ifs
cwd=$(pwd)
exec chroot "$root" /bin/sh -c 'cd "$1" 2>/dev/null || cd /; shift; exec "$@"' sh "$cwd" "$tool" "$@"
WRAP
	} >"$mysql_root/bin/strata-mysql-exec"
	chmod 755 "$mysql_root/bin/strata-mysql-exec"
	for t in mysqld:/usr/sbin/mysqld mysql:/usr/bin/mysql mysqlbinlog:/usr/bin/mysqlbinlog mysqladmin:/usr/bin/mysqladmin mysqldump:/usr/bin/mysqldump; do
		printf '#!/bin/sh\nexec "$(dirname "$0")/strata-mysql-exec" %s "$@"\n' "${t#*:}" >"$mysql_root/bin/${t%%:*}"
		chmod 755 "$mysql_root/bin/${t%%:*}"
	done
}

if [ "${STRATA_MYSQL:-}" = skip ]; then
	log "STRATA_MYSQL=skip: not building the MySQL chroot (MySQL tests will fail)"
elif mysql_ok; then
	write_mysql_wrappers
	log "MySQL present in .cache/mysql: $("$mysql_root/bin/mysqld" --version 2>/dev/null | head -n1)"
else
	[ "$(id -u)" -eq 0 ] || die "building the MySQL chroot needs root (debootstrap, chroot, mount): run make deps as root once"
	if ! command -v debootstrap >/dev/null 2>&1; then
		log "installing debootstrap with apt-get"
		apt-get update || die "MySQL chroot: apt-get update failed"
		env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debootstrap ||
			die "MySQL chroot: installing debootstrap failed"
	fi
	mkdir -p "$mysql_root"
	if [ ! -x "$mysql_chroot/usr/bin/apt-get" ] || [ ! -f "$mysql_root/.debootstrap" ]; then
		rm -rf "$mysql_chroot"
		log "MySQL chroot: debootstrap --variant=minbase $MYSQL_SUITE into $mysql_chroot (about 30 s)..."
		debootstrap --variant=minbase "$MYSQL_SUITE" "$mysql_chroot" "$MYSQL_MIRROR" >"$mysql_root/debootstrap.log" 2>&1 ||
			die "MySQL chroot: debootstrap of $MYSQL_SUITE from $MYSQL_MIRROR failed (log: $mysql_root/debootstrap.log; set MYSQL_MIRROR to a reachable Debian mirror)"
		touch "$mysql_root/.debootstrap"
	fi
	log "MySQL chroot: apt-get install mysql-server-core mysql-client-core..."
	# The mirror's unstable Release file may be past its Valid-Until by
	# this machine's clock.
	chroot "$mysql_chroot" apt-get -o Acquire::Check-Valid-Until=false update >"$mysql_root/apt.log" 2>&1 ||
		die "MySQL chroot: apt-get update inside the chroot failed (log: $mysql_root/apt.log)"
	chroot "$mysql_chroot" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		mysql-server-core mysql-client-core >>"$mysql_root/apt.log" 2>&1 ||
		die "MySQL chroot: apt-get install mysql-server-core mysql-client-core failed (log: $mysql_root/apt.log)"
	chroot "$mysql_chroot" apt-get clean >/dev/null 2>&1 || true
	write_mysql_wrappers
	"$mysql_root/bin/mysqld" --version >/dev/null 2>&1 ||
		die "MySQL chroot: the mysqld wrapper does not run ($mysql_root/bin/mysqld --version); unshare --mount and chroot need root"
	touch "$mysql_root/.complete"
	log "MySQL installed in .cache/mysql: $("$mysql_root/bin/mysqld" --version 2>/dev/null | head -n1)"
fi

# ---- fake-gcs-server (GCS emulator, only for STORAGE=gcs) ------------------

FAKE_GCS_PKG=github.com/fsouza/fake-gcs-server
# The version the tests use in-process (go.mod), so the demo runs the same server.
FAKE_GCS_VERSION=$(awk -v m="$FAKE_GCS_PKG" '$1 == m { print $2; exit }' "$repo/go.mod")
FAKE_GCS_VERSION=${FAKE_GCS_VERSION:-v1.56.1}
fake_gcs="$repo/bin/fake-gcs-server"

# fake_gcs_ok: bin/fake-gcs-server exists and was built from $FAKE_GCS_VERSION.
fake_gcs_ok() {
	[ -x "$fake_gcs" ] && command -v go >/dev/null 2>&1 &&
		go version -m "$fake_gcs" 2>/dev/null |
		grep -qE "^[[:space:]]*mod[[:space:]]+${FAKE_GCS_PKG//./\\.}[[:space:]]+${FAKE_GCS_VERSION//./\\.}([[:space:]]|$)"
}

if [ "${STORAGE:-local}" = gcs ]; then
	if fake_gcs_ok; then
		log "fake-gcs-server $FAKE_GCS_VERSION present at bin/fake-gcs-server"
	else
		command -v go >/dev/null 2>&1 || die "go not found on PATH; needed to build fake-gcs-server"
		log "building fake-gcs-server $FAKE_GCS_VERSION into bin/ with go install (about a minute the first time)..."
		mkdir -p "$repo/bin"
		(
			cd /
			GOFLAGS="" GOBIN="$repo/bin" go install "$FAKE_GCS_PKG@$FAKE_GCS_VERSION"
		)
		fake_gcs_ok || die "bin/fake-gcs-server was built but is not $FAKE_GCS_PKG $FAKE_GCS_VERSION"
		log "built bin/fake-gcs-server ($FAKE_GCS_VERSION)"
	fi
fi

# ---- benchmark peers (only for BENCH=1) -------------------------------------

if [ "${BENCH:-0}" = 1 ]; then
	bench_pkgs=()
	for tp in sysbench:sysbench zstd:zstd stdbuf:coreutils mydumper:mydumper myloader:mydumper; do
		find_tool "${tp%%:*}" >/dev/null || bench_pkgs+=("${tp#*:}")
	done
	if [ "${#bench_pkgs[@]}" -eq 0 ]; then
		log "benchmark tools present: $("$(find_tool sysbench)" --version 2>&1 | head -n1), $("$(find_tool zstd)" --version 2>&1 | head -n1)"
	else
		log "installing ${bench_pkgs[*]} with apt-get"
		command -v apt-get >/dev/null 2>&1 || die "apt-get not found; install sysbench and zstd yourself"
		sudo=()
		if [ "$(id -u)" -ne 0 ]; then
			command -v sudo >/dev/null 2>&1 || die "not running as root and sudo is not available"
			sudo=(sudo)
		fi
		${sudo[@]+"${sudo[@]}"} apt-get update
		${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${bench_pkgs[@]}"
		for tool in sysbench zstd stdbuf mydumper myloader; do
			find_tool "$tool" >/dev/null || die "still missing after apt-get install: $tool"
		done
	fi
fi

log "done"
