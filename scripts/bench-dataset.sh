#!/usr/bin/env bash
# scripts/bench-dataset.sh DIR SIZE — build the benchmark data set once.
#
# Creates DIR/data: a MariaDB datadir holding the sysbench schema sbtest
# (8 tables sbtest1..sbtest8, InnoDB, sysbench's own oltp prepare: id, k
# with a secondary index, c CHAR(120), pad CHAR(60)) sized to about SIZE
# bytes of data and index (e.g. 2G, 512M), with the binary log on. The root
# password is in DIR/password. The server is stopped when the script ends;
# the benchmarks copy the datadir and start their own servers on the copy.
#
# Idempotent: a complete data set (DIR/done names the size it was built for)
# is left alone; a partial one is rebuilt.
set -euo pipefail

dir="${1:?usage: bench-dataset.sh DIR SIZE}"
size="${2:?usage: bench-dataset.sh DIR SIZE}"

die() { printf 'bench-dataset: error: %s\n' "$*" >&2; exit 1; }
log() { printf 'bench-dataset: %s\n' "$*"; }

bytes="$(numfmt --from=iec "${size%B}" 2>/dev/null)" || die "size $size is not a size like 2G or 512M"
[ "$bytes" -ge $((32 << 20)) ] || die "size $size is too small (at least 32M)"
tables=8
# sysbench rows take about 240 bytes of data and index in InnoDB.
rows=$((bytes / tables / 240))

if [ -f "$dir/done" ] && [ "$(cat "$dir/done")" = "$tables x $rows" ]; then
	log "data set present: $dir ($tables tables x $rows rows)"
	exit 0
fi

find_tool() {
	command -v "$1" 2>/dev/null && return 0
	for d in /usr/sbin /usr/local/sbin /usr/bin; do
		[ -x "$d/$1" ] && { echo "$d/$1"; return 0; }
	done
	return 1
}
mariadbd="$(find_tool mariadbd)" || die "mariadbd not found: run make deps"
installdb="$(find_tool mariadb-install-db)" || die "mariadb-install-db not found: run make deps"
sysbench="$(find_tool sysbench)" || die "sysbench not found: run make bench (it installs the sysbench package)"
client="$(find_tool mariadb)" || die "mariadb client not found: run make deps"

rm -rf "$dir"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
sock="$dir/mysqld.sock"
log "building $tables tables x $rows rows in $dir (once; later runs reuse it)"
"$installdb" --no-defaults --user="$(id -un)" --datadir="$dir/data" --auth-root-authentication-method=normal >"$dir/install.log" 2>&1 ||
	die "mariadb-install-db failed: see $dir/install.log"
"$mariadbd" --no-defaults --user="$(id -un)" --datadir="$dir/data" --socket="$sock" --skip-networking \
	--log-bin=binlog --server-id=1 --binlog-format=ROW \
	--innodb-buffer-pool-size=1G --innodb-log-file-size=512M --innodb-flush-log-at-trx-commit=0 \
	--sync-binlog=0 --log-error="$dir/server.err" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 120); do
	"$client" --no-defaults -uroot --socket="$sock" -e 'SELECT 1' >/dev/null 2>&1 && break
	kill -0 "$pid" 2>/dev/null || die "mariadbd exited: see $dir/server.err"
	sleep 0.5
done
password="$(head -c 18 /dev/urandom | base64 | tr -d '/+=')"
"$client" --no-defaults -uroot --socket="$sock" -e "CREATE DATABASE sbtest; ALTER USER root@localhost IDENTIFIED BY '$password'; CREATE OR REPLACE USER root@'127.0.0.1' IDENTIFIED BY '$password'; GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION; RESET MASTER;"
printf '%s\n' "$password" >"$dir/password"
"$sysbench" oltp_write_only --db-driver=mysql --mysql-socket="$sock" --mysql-user=root --mysql-password="$password" \
	--mysql-db=sbtest --tables=$tables --table-size=$rows --threads=2 prepare >"$dir/prepare.log" 2>&1 ||
	die "sysbench prepare failed: see $dir/prepare.log"
# The backups start from a clean binary log: the prepare's inserts are in the data, not the log.
"$client" --no-defaults -uroot -p"$password" --socket="$sock" -e "RESET MASTER; SET GLOBAL innodb_fast_shutdown=0;"
kill "$pid"
wait "$pid" || true
trap - EXIT
du -sb "$dir/data" | awk '{printf "bench-dataset: datadir %.2f GiB\n", $1/1073741824}'
printf '%s\n' "$tables x $rows" >"$dir/done"
