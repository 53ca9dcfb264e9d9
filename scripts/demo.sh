#!/usr/bin/env bash
# The Strata demo: a Temporal dev server (SQLite file), a demo MariaDB with
# generated data, the Strata worker and agent, then a full backup, a restore
# into a second instance, a checksum comparison of every table and a restore
# drill of the backup (its RTO and RPO).
#
#   scripts/demo.sh demo    up + run + down
#   scripts/demo.sh up      start everything (idempotent)
#   scripts/demo.sh run     back up, restore, compare (stack must be up)
#   scripts/demo.sh down    stop everything the demo started
#   scripts/demo.sh clean   down, then remove .demo/
#
# STORAGE=gcs keeps the repository in a GCS bucket instead of .demo/repo: the
# GCS emulator bin/fake-gcs-server (`make deps STORAGE=gcs` builds it) serves
# bucket strata-demo on 127.0.0.1:$FAKE_GCS_PORT from .demo/gcs, and every
# Strata process reaches it through $STORAGE_EMULATOR_HOST.
#
# FLAVOR=mysql runs the demo on MySQL 9.7 instead of MariaDB: the server and
# client of the chroot `make deps` builds under .cache/mysql, GTIDs on, and
# Strata's clone-based physical backup (xtrabackup is not installed).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
state="$repo/.demo"
bin="$repo/bin"
export PATH="$bin:$PATH:/usr/sbin"

TEMPORAL_PORT=${TEMPORAL_PORT:-7233}
TEMPORAL_UI_PORT=${TEMPORAL_UI_PORT:-8233}
DEMO_MYSQL_PORT=${DEMO_MYSQL_PORT:-13306}
RESTORE_PORT=${RESTORE_PORT:-13307}
DEMO_SIZE=${DEMO_SIZE:-300MiB}
STORAGE=${STORAGE:-local}
FLAVOR=${FLAVOR:-mariadb}
mysql_bin="$repo/.cache/mysql/bin"
FAKE_GCS_PORT=${FAKE_GCS_PORT:-4443}
GCS_BUCKET=strata-demo
export STRATA_CONFIG="$state/strata.yaml"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }

running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
	local secs=$1 what=$2; shift 2
	for ((i = 0; i < secs * 5; i++)); do
		if "$@" >/dev/null 2>&1; then return 0; fi
		sleep 0.2
	done
	die "$what did not come up within ${secs}s"
}

socket_path() {
	local s="$state/mariadb.sock"
	if ((${#s} > 100)); then s="${TMPDIR:-/tmp}/strata-demo-$DEMO_MYSQL_PORT.sock"; fi
	echo "$s"
}

start_temporal() {
	if running "$state/temporal.pid"; then return; fi
	say "Temporal dev server on 127.0.0.1:$TEMPORAL_PORT (SQLite $state/temporal.db, Web UI :$TEMPORAL_UI_PORT)"
	setsid temporal server start-dev --ip 127.0.0.1 --port "$TEMPORAL_PORT" --ui-port "$TEMPORAL_UI_PORT" \
		--db-filename "$state/temporal.db" --log-level error \
		--search-attribute StrataInstance=Keyword --search-attribute StrataKind=Keyword \
		--search-attribute StrataBackupID=Keyword --search-attribute StrataHost=Keyword \
		>"$state/temporal.log" 2>&1 &
	echo $! >"$state/temporal.pid"
	wait_for 60 "Temporal" temporal operator cluster health --address "127.0.0.1:$TEMPORAL_PORT"
	# start-dev registers --search-attribute only in a new database file: a
	# state dir from an older Strata lacks those added since.
	local have sa
	have=$(temporal operator search-attribute list --address "127.0.0.1:$TEMPORAL_PORT")
	for sa in StrataInstance StrataKind StrataBackupID StrataHost; do
		if ! grep -qw "$sa" <<<"$have"; then
			temporal operator search-attribute create --name "$sa" --type Keyword --address "127.0.0.1:$TEMPORAL_PORT" >/dev/null
		fi
	done
}

# storage_in_use prints the storage and flavor of the running stack ("" when not up).
storage_in_use() {
	if running "$state/worker.pid" && [[ -f "$state/storage.env" ]]; then (. "$state/storage.env" && echo "$STORAGE ${FLAVOR:-mariadb}"); fi
}

# gcs_env points Strata's GCS client at the emulator when the demo uses it.
gcs_env() {
	if [[ "$STORAGE" == gcs ]]; then export STORAGE_EMULATOR_HOST="127.0.0.1:$FAKE_GCS_PORT"; fi
}

# bucket_ready asks the emulator's JSON API for the demo bucket.
bucket_ready() {
	local resp
	exec 3<>"/dev/tcp/127.0.0.1/$FAKE_GCS_PORT" || return 1
	printf 'GET /storage/v1/b/%s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$GCS_BUCKET" >&3
	resp=$(cat <&3)
	exec 3<&-
	[[ "$resp" == "HTTP/1."?" 200"* ]]
}

start_fake_gcs() {
	if running "$state/fake-gcs.pid"; then return; fi
	command -v fake-gcs-server >/dev/null || die "bin/fake-gcs-server is missing: run 'make deps STORAGE=gcs'"
	if (exec 3<>"/dev/tcp/127.0.0.1/$FAKE_GCS_PORT") 2>/dev/null; then
		die "port $FAKE_GCS_PORT is in use: set FAKE_GCS_PORT to a free port"
	fi
	say "GCS emulator (fake-gcs-server) on 127.0.0.1:$FAKE_GCS_PORT, bucket $GCS_BUCKET (data in $state/gcs)"
	# With the filesystem backend, a directory under the root is a bucket.
	mkdir -p "$state/gcs/$GCS_BUCKET"
	setsid fake-gcs-server -scheme http -host 127.0.0.1 -port "$FAKE_GCS_PORT" \
		-backend filesystem -filesystem-root "$state/gcs" -log-level warn >"$state/fake-gcs.log" 2>&1 &
	echo $! >"$state/fake-gcs.pid"
	wait_for 30 "fake-gcs-server" bucket_ready
}

mysql_root() {
	if [[ "$FLAVOR" == mysql ]]; then
		"$mysql_bin/mysql" --no-defaults --protocol=socket -S "$(socket_path)" -uroot "$@"
	else
		mariadb --no-defaults --protocol=socket -S "$(socket_path)" -uroot "$@"
	fi
}

# datadir is the demo server's data directory (one per flavor).
datadir() {
	if [[ "$FLAVOR" == mysql ]]; then echo "$state/mysql/data"; else echo "$state/mariadb/data"; fi
}

start_mysql() {
	if running "$state/mariadb.pid"; then return; fi
	[[ -x "$mysql_bin/mysqld" ]] || die "the MySQL chroot is missing: run 'make deps' (it builds .cache/mysql)"
	local data sock
	data=$(datadir)
	sock=$(socket_path)
	if [[ ! -d "$data/mysql" ]]; then
		say "Initialising demo MySQL in $data"
		mkdir -p "$(dirname "$data")"
		"$mysql_bin/mysqld" --no-defaults --initialize-insecure --user=root --datadir="$data" >"$state/mysql-init.log" 2>&1 ||
			die "mysqld --initialize-insecure failed: see $state/mysql-init.log"
		head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$state/mariadb.password"
		chmod 600 "$state/mariadb.password"
	fi
	say "Demo MySQL ($("$mysql_bin/mysqld" --version | sed 's/.*Ver //; s/ for.*//')) on 127.0.0.1:$DEMO_MYSQL_PORT (binlog and GTIDs on)"
	setsid "$mysql_bin/mysqld" --no-defaults --user=root --datadir="$data" --socket="$sock" \
		--port="$DEMO_MYSQL_PORT" --bind-address=127.0.0.1 --log-bin=binlog --server-id=1 \
		--gtid-mode=ON --enforce-gtid-consistency=ON --character-set-server=utf8mb4 \
		--innodb-buffer-pool-size=256M --max-allowed-packet=64M --pid-file="$state/mariadb.pid.server" \
		--secure-file-priv= --mysqlx=OFF --log-error="$state/mariadb.err" >/dev/null 2>&1 &
	echo $! >"$state/mariadb.pid"
	wait_for 120 "MySQL" "$mysql_bin/mysqladmin" --no-defaults --protocol=socket -S "$sock" ping
	if mysql_root -e 'SELECT 1' >/dev/null 2>&1; then # fresh server: no password yet
		local pw; pw=$(cat "$state/mariadb.password")
		mysql_root -e "SET sql_log_bin=0; ALTER USER root@localhost IDENTIFIED BY '$pw';
			CREATE USER IF NOT EXISTS root@'127.0.0.1' IDENTIFIED BY '$pw';
			GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;"
	fi
}

start_mariadb() {
	if running "$state/mariadb.pid"; then return; fi
	local data sock
	data=$(datadir)
	sock=$(socket_path)
	if [[ ! -d "$data/mysql" ]]; then
		say "Initialising demo MariaDB in $data"
		mkdir -p "$data"
		mariadb-install-db --no-defaults --user="$(id -un)" --datadir="$data" \
			--auth-root-authentication-method=normal --skip-test-db >"$state/mariadb-init.log" 2>&1 ||
			die "mariadb-install-db failed: see $state/mariadb-init.log"
		head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$state/mariadb.password"
		chmod 600 "$state/mariadb.password"
	fi
	say "Demo MariaDB on 127.0.0.1:$DEMO_MYSQL_PORT (binlog on)"
	setsid mariadbd --no-defaults --user="$(id -un)" --datadir="$data" --socket="$sock" \
		--port="$DEMO_MYSQL_PORT" --bind-address=127.0.0.1 --log-bin="$data/binlog" --server-id=1 \
		--binlog-format=ROW --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
		--innodb-buffer-pool-size=256M --max-allowed-packet=64M --pid-file="$state/mariadb.pid.server" \
		--log-error="$state/mariadb.err" >/dev/null 2>&1 &
	echo $! >"$state/mariadb.pid"
	# ping answers as soon as the server is up, whatever the credentials
	wait_for 120 "MariaDB" mariadb-admin --no-defaults --protocol=socket -S "$sock" ping
	if mysql_root -e 'SELECT 1' >/dev/null 2>&1; then # fresh server: no password yet
		local pw; pw=$(cat "$state/mariadb.password")
		mysql_root -e "ALTER USER root@localhost IDENTIFIED BY '$pw';
			CREATE USER IF NOT EXISTS root@'127.0.0.1' IDENTIFIED BY '$pw';
			GRANT ALL ON *.* TO root@'127.0.0.1' WITH GRANT OPTION;"
	fi
}

write_config() {
	local storage
	mkdir -p "$state/scratch"
	case "$STORAGE" in
	local) storage="storage:
  type: local
  local:
    root: $state/repo" ;;
	gcs) storage="storage:
  type: gcs
  gcs:
    bucket: $GCS_BUCKET   # on fake-gcs-server at \$STORAGE_EMULATOR_HOST=127.0.0.1:$FAKE_GCS_PORT" ;;
	esac
	local tools=""
	if [[ "$FLAVOR" == mysql ]]; then
		tools="
    tools:   # MySQL 9.7 runs in a chroot here; a MySQL host needs none of this
      mysqld: $mysql_bin/mysqld
      mysql: $mysql_bin/mysql
      mysqlbinlog: $mysql_bin/mysqlbinlog"
	fi
	cat >"$state/strata.yaml" <<YAML
# Written by scripts/demo.sh
temporal:
  address: 127.0.0.1:$TEMPORAL_PORT
  namespace: default
$storage
agent:
  max_concurrent: 1
  scratch_dir: $state/scratch   # drills restore onto scratch servers under drills/ here
defaults:
  compression: zstd
  compression_level: 1
  chunk_size: 16MiB
  parallelism: 2
  table_sums: true   # the drill compares them (off by default: a second read of the data on the source)
instances:
  - id: demo
    host: demo-host
    connect:
      address: 127.0.0.1:$DEMO_MYSQL_PORT
      user: root
      password_file: $state/mariadb.password
    datadir: $(datadir)$tools
    heartbeat:
      table: strata.heartbeat   # the agent writes it every second: the drill's RPO is exact
YAML
}

start_strata() {
	if ! running "$state/worker.pid"; then
		say "strata worker (task queue strata)"
		setsid strata worker >"$state/worker.log" 2>&1 &
		echo $! >"$state/worker.pid"
	fi
	if ! running "$state/agent.pid"; then
		say "strata agent --host demo-host (task queue strata-agent.demo-host)"
		setsid strata agent --host demo-host >"$state/agent.log" 2>&1 &
		echo $! >"$state/agent.pid"
	fi
	printf 'STORAGE=%s\nFAKE_GCS_PORT=%s\nFLAVOR=%s\n' "$STORAGE" "$FAKE_GCS_PORT" "$FLAVOR" >"$state/storage.env"
	sleep 1
	running "$state/worker.pid" || die "worker exited: $(tail -5 "$state/worker.log")"
	running "$state/agent.pid" || die "agent exited: $(tail -5 "$state/agent.log")"
}

seed() {
	if mysql_root -p"$(cat "$state/mariadb.password")" -e 'USE demo' >/dev/null 2>&1; then return; fi
	say "Generating about $DEMO_SIZE of demo data (schema demo)"
	strata dev seed demo --schema demo --size "$DEMO_SIZE"
}

up() {
	local current
	current=$(storage_in_use)
	[[ -z "$current" || "$current" == "$STORAGE $FLAVOR" ]] ||
		die "the stack is up with STORAGE/FLAVOR $current: run 'make down' first, or use those"
	mkdir -p "$state"
	gcs_env
	start_temporal
	if [[ "$STORAGE" == gcs ]]; then start_fake_gcs; fi
	if [[ "$FLAVOR" == mysql ]]; then start_mysql; else start_mariadb; fi
	write_config
	start_strata
	seed
	say "Stack is up. Web UI: http://127.0.0.1:$TEMPORAL_UI_PORT/namespaces/default/workflows"
}

run() {
	[[ -f "$state/strata.yaml" ]] || die "the stack is not up: run 'make up' first"
	# run uses the storage the stack was started with.
	if [[ -n "$(storage_in_use)" ]]; then . "$state/storage.env"; fi
	gcs_env
	local id target start end
	id=$(date -u +%Y%m%dT%H%M%SZ)
	target="$state/restore-$id"
	say "Full backup of demo: strata backup demo --id $id --wait"
	strata backup demo --id "$id" --wait
	say "Catalog: strata ls demo"
	strata ls demo
	if [[ "$STORAGE" == gcs ]]; then
		printf 'repository: gs://%s on fake-gcs-server 127.0.0.1:%s: %s objects, %s\n' "$GCS_BUCKET" "$FAKE_GCS_PORT" \
			"$(find "$state/gcs/$GCS_BUCKET" -type f | wc -l)" "$(du -sh "$state/gcs/$GCS_BUCKET" | cut -f1)"
	fi
	say "Restore into a second instance: strata restore demo --backup $id --target-dir $target --start --port $RESTORE_PORT --wait"
	start=$(date +%s%N)
	strata restore demo --backup "$id" --target-dir "$target" --start --port "$RESTORE_PORT" --wait
	end=$(date +%s%N)
	say "Comparing every table's checksum: source vs restored"
	local rc=0
	strata dev compare demo --schema demo --address "127.0.0.1:$RESTORE_PORT" || rc=$?
	stop_pidfile "$target/strata-server.pid" "restored server"
	printf '\nbackup id %s; restore wall time %d ms (see above for sizes and throughput)\n' "$id" "$(((end - start) / 1000000))"
	say "Workflows in Temporal (what the Web UI shows)"
	temporal workflow list --address "127.0.0.1:$TEMPORAL_PORT" --query "WorkflowId STARTS_WITH 'backup/demo/$id' OR WorkflowId STARTS_WITH 'restore/demo-host:$target'"
	ui_check "backup/demo/$id" || rc=1
	say "Restore drill of the backup: strata drill demo --backup $id --wait (scratch server, verify, RTO and RPO)"
	strata drill demo --backup "$id" --id "drill-$id" --wait || rc=1
	strata drill ls demo
	local lid="${id%Z}L" ltarget="$state/restore-$id-logical"
	say "Logical backup of demo: strata backup demo --type logical --id $lid --wait (a parallel SQL dump in one snapshot)"
	strata backup demo --type logical --id "$lid" --wait || rc=1
	say "Restore it into a new datadir: strata restore demo --backup $lid --target-dir $ltarget --start --port $RESTORE_PORT --wait"
	if strata restore demo --backup "$lid" --target-dir "$ltarget" --start --port "$RESTORE_PORT" --wait; then
		say "Comparing every table's checksum: source vs loaded from the logical backup"
		strata dev compare demo --schema demo --address "127.0.0.1:$RESTORE_PORT" || rc=$?
		stop_pidfile "$ltarget/strata-server.pid" "server restored from the logical backup"
	else
		rc=1
	fi
	printf 'Web UI: http://127.0.0.1:%s/namespaces/default/workflows\n' "$TEMPORAL_UI_PORT"
	return $rc
}

# ui_check asks the Web UI's own HTTP API whether it lists a workflow.
ui_check() {
	local id=$1 q resp
	q="WorkflowId%3D%22${id//\//%2F}%22"
	if ! exec 3<>"/dev/tcp/127.0.0.1/$TEMPORAL_UI_PORT"; then
		echo "Web UI is not answering on port $TEMPORAL_UI_PORT" >&2
		return 1
	fi
	printf 'GET /api/v1/namespaces/default/workflows?query=%s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$q" >&3
	resp=$(cat <&3)
	exec 3<&-
	if grep -q "\"workflowId\": *\"$id\"" <<<"$resp" && grep -q COMPLETED <<<"$resp"; then
		echo "Web UI lists $id as completed"
	else
		echo "Web UI does not list $id" >&2
		return 1
	fi
}

stop_pidfile() { # stop_pidfile FILE NAME
	local f=$1 pid
	[[ -f "$f" ]] || return 0
	pid=$(cat "$f")
	if kill -0 "$pid" 2>/dev/null; then
		echo "stopping $2 (pid $pid)"
		kill -TERM "$pid" 2>/dev/null || true
		for ((i = 0; i < 300; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$f"
}

down() {
	[[ -d "$state" ]] || return 0
	for f in "$state"/restore-*/strata-server.pid; do [[ -e "$f" ]] && stop_pidfile "$f" "restored server"; done
	stop_pidfile "$state/agent.pid" "agent"
	stop_pidfile "$state/worker.pid" "worker"
	stop_pidfile "$state/mariadb.pid" "demo database server"
	stop_pidfile "$state/fake-gcs.pid" "GCS emulator"
	stop_pidfile "$state/temporal.pid" "Temporal dev server"
	rm -f "$state/storage.env"
}

[[ "$STORAGE" == local || "$STORAGE" == gcs ]] || die "STORAGE=$STORAGE: use local or gcs"
[[ "$FLAVOR" == mariadb || "$FLAVOR" == mysql ]] || die "FLAVOR=$FLAVOR: use mariadb or mysql"

case "${1:-demo}" in
up) up ;;
run) run ;;
down) down ;;
clean) down; rm -rf "$state" ;;
demo)
	trap down EXIT
	up
	run
	say "Demo finished; stopping what it started ('make up' keeps it running)"
	;;
*) die "usage: [STORAGE=local|gcs] [FLAVOR=mariadb|mysql] $0 demo|up|run|down|clean" ;;
esac
