// Package replay applies rebuilt binlog files to a restored datadir for a
// point-in-time restore. It runs its own server on the datadir for the
// replay — socket only, without grant tables, with relaxed durability (a
// failed replay is redone from the backup anyway) — and stops it cleanly
// at the end.
//
// Two methods: "replica" installs the files as the server's relay logs and
// lets its SQL thread apply them with parallel replication; "client" pipes
// `mariadb-binlog` into `mariadb` (`mysqlbinlog` into `mysql` for MySQL),
// the classic way, kept as the fallback.
//
// The flavor of a replay is the one the archive recorded (Params.Flavor),
// never the shape of a GTID or the name of a tool: it chooses the server
// options, the replication statements and the tools.
package replay

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/physical"
	"github.com/strata-backup/strata/internal/server"
)

// ErrInterrupted is returned when the datadir carries the mark of a replay
// that did not finish: part of the binlogs may be applied, so applying them
// again would apply transactions twice. Restore the backup again.
var ErrInterrupted = errors.New("a previous replay into this datadir was interrupted")

// Marker is the file a replay leaves in the datadir while it applies
// binlogs; DoneMarker records the last GTID of a finished replay, so that a
// retry after a lost report does not apply them again.
const (
	Marker     = "strata-replay.started"
	DoneMarker = "strata-replay.done"
)

// ErrServerRunning is returned when a server that this replay did not
// start runs on the datadir: it is never killed.
var ErrServerRunning = errors.New("a server is running on the datadir")

// MarkerInfo is the content of Marker: the replay method and the workflow
// run that started the replay, which alone may clear the datadir.
type MarkerInfo struct {
	Method     string `json:"method"`
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`
}

// Owns reports whether the marker was written by workflow run (id, run).
func (m MarkerInfo) Owns(workflowID, runID string) bool {
	return workflowID != "" && runID != "" && m.WorkflowID == workflowID && m.RunID == runID
}

// ReadMarker returns the marker in datadir, if there is one. A marker
// that does not parse (one written by an older Strata) has no owner.
func ReadMarker(datadir string) (MarkerInfo, bool) {
	b, err := os.ReadFile(filepath.Join(datadir, Marker))
	if err != nil {
		return MarkerInfo{}, false
	}
	var m MarkerInfo
	if json.Unmarshal(b, &m) != nil {
		return MarkerInfo{}, true
	}
	return m, true
}

// Methods.
const (
	MethodReplica = "replica"
	MethodClient  = "client"
)

// Params describe one replay.
type Params struct {
	// Method is replica, client, or "" to choose: replica when the replay
	// ends at a known GTID, else client.
	Method string
	// Flavor is the archived server's, as the archive records it; ""
	// is MariaDB (archives from before MySQL was supported).
	Flavor   flavor.Name
	Datadir  string
	Files    []string // rebuilt binlog files, in order
	StartPos uint32   // where replay starts in the first file
	LastGTID string   // the last transaction the files hold (replica method waits for it)
	Threads  int      // parallel applier threads (replica method), default 4
	// Mariadbd is the server binary, mariadbd or mysqld ("" = look up the
	// flavor's: mariadbd, then mysqld, for MariaDB; mysqld for MySQL).
	Mariadbd string
	// BinlogTool and Client are the client method's tools ("" = look up
	// the flavor's: mariadb-binlog and mariadb, or mysqlbinlog and mysql).
	BinlogTool, Client string
	Scratch            string // temp dir for the client method
	Tick               func() // called while waiting, e.g. to heartbeat
	// BufferPool is the replay server's innodb_buffer_pool_size in bytes;
	// 0 = HostBufferPool (from the host's available memory and the data).
	BufferPool int64
	// ServerArgs are appended to the replay server's options (the last
	// of an option wins), e.g. to measure other settings.
	ServerArgs []string
	// WorkflowID and RunID name the workflow run of the replay: the
	// marker records them, so that only this run clears the datadir or
	// stops a replay server it left running.
	WorkflowID, RunID string
}

// Result reports a replay.
type Result struct {
	Method  string  `json:"method"`
	Seconds float64 `json:"seconds"` // applying only, without server start/stop
	// Pool is the replay server's buffer pool and how it was chosen.
	Pool Pool `json:"pool"`
	// Server is what the replay server spent while applying.
	Server Usage `json:"server"`
}

// Run replays the files onto the datadir.
func Run(ctx context.Context, p Params) (*Result, error) {
	if len(p.Files) == 0 {
		return &Result{Method: "none"}, nil
	}
	if p.Flavor == "" {
		p.Flavor = flavor.MariaDB
	}
	if _, err := flavor.ParseName(string(p.Flavor)); err != nil {
		return nil, fmt.Errorf("replay: %w", err)
	}
	method := p.Method
	if method == "" {
		method = MethodClient
		if p.LastGTID != "" {
			method = MethodReplica
		}
	}
	bin, err := serverBinary(p.Flavor, p.Mariadbd)
	if err != nil {
		return nil, err
	}
	if p.Threads <= 0 {
		p.Threads = 4
	}
	marker, done := filepath.Join(p.Datadir, Marker), filepath.Join(p.Datadir, DoneMarker)
	if b, err := os.ReadFile(done); err == nil && string(b) == p.LastGTID+"\n" {
		// A retry after the replay finished (its report was lost).
		return &Result{Method: method}, nil
	}
	// A replay server that a killed agent of this run left running must
	// not keep writing into the datadir; any other server is not ours.
	if pid, ok := server.Running(p.Datadir); ok {
		if mk, _ := ReadMarker(p.Datadir); !mk.Owns(p.WorkflowID, p.RunID) {
			return nil, fmt.Errorf("%w: %s (pid %d) was not started by this replay; stop it, or restore into another directory", ErrServerRunning, p.Datadir, pid)
		}
		if err := server.KillStale(ctx, p.Datadir); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(marker); err == nil {
		return nil, fmt.Errorf("%w (%s exists)", ErrInterrupted, marker)
	}
	// From here on the datadir changes (the server's start-up already
	// changes it): mark it, with the run, until the replay is done.
	mk, _ := json.Marshal(MarkerInfo{Method: method, WorkflowID: p.WorkflowID, RunID: p.RunID})
	if err := os.WriteFile(marker, append(mk, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("mark the replay: %w", err)
	}
	pool := Pool{Bytes: p.BufferPool, Rule: fmt.Sprintf("%dMiB: configured", p.BufferPool>>20)}
	if p.BufferPool <= 0 {
		pool = HostBufferPool(p.Datadir)
	}
	extra := append(serverTuning(p.Flavor), fmt.Sprintf("--innodb-buffer-pool-size=%d", pool.Bytes))
	if method == MethodReplica {
		if err := writeRelayLogs(p.Datadir, p.Files, p.StartPos); err != nil {
			return nil, err
		}
		extra = append(extra, replicaOptions(p.Flavor, p.Threads)...)
	}
	extra = append(extra, p.ServerArgs...)
	// Without grant tables anyone who reaches the server is root: no TCP
	// listener, and the socket in a directory only the agent's user enters.
	st, err := server.Start(ctx, ServerOptions(bin, p.Datadir, extra, p.Tick))
	if err != nil {
		return nil, fmt.Errorf("start a server for the replay: %w", err)
	}
	defer func() { _ = server.Stop(context.WithoutCancel(ctx), st) }()
	ep := mysqlx.Endpoint{Socket: st.Socket, User: "root"}
	u0 := readUsage(st.PID)
	t0 := time.Now()
	switch method {
	case MethodReplica:
		err = replica(ctx, ep, flavor.Flavor{Name: p.Flavor, Version: st.Version}, p)
	case MethodClient:
		err = physical.ReplayWithClient(ctx, physical.ReplayParams{Flavor: p.Flavor, Files: p.Files, StartPos: p.StartPos,
			Endpoint: ep, ScratchDir: p.Scratch, BinlogTool: p.BinlogTool, Client: p.Client})
	default:
		err = fmt.Errorf("replay method %q: use replica or client", method)
	}
	if err != nil {
		return nil, err
	}
	secs := time.Since(t0).Seconds()
	use := readUsage(st.PID).since(u0)
	if err := server.Stop(ctx, st); err != nil {
		return nil, fmt.Errorf("stop the replay server: %w", err)
	}
	if err := os.WriteFile(done, []byte(p.LastGTID+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.Remove(marker); err != nil {
		return nil, err
	}
	return &Result{Method: method, Seconds: secs, Pool: pool, Server: use}, nil
}

// ServerOptions are the options of the replay server: socket only, in a
// private directory, never a TCP port.
func ServerOptions(mariadbd, datadir string, extra []string, tick func()) server.Options {
	return server.Options{Binary: mariadbd, Datadir: datadir, User: "root", Port: 0, PrivateSocket: true, Extra: extra, Tick: tick}
}

// serverBinary is the replay server's binary: the configured one, else
// the flavor's. A MySQL datadir is never given to mariadbd.
func serverBinary(f flavor.Name, configured string) (string, error) {
	if configured != "" || f != flavor.MySQL {
		return server.FindBinary(configured)
	}
	p, err := exec.LookPath("mysqld")
	if err != nil {
		return "", fmt.Errorf("%w: the archive is of a MySQL server and this agent has no mysqld in PATH (install MySQL's server, or set tools.mysqld)", server.ErrNoBinary)
	}
	return p, nil
}

// replicaOptions are the replay server's options for the replica method:
// the relay logs Strata writes, no replication at start-up, the archived
// server's own server_id accepted, parallel appliers.
func replicaOptions(f flavor.Name, threads int) []string {
	o := []string{"--relay-log=strata-relay", "--relay-log-index=strata-relay.index", "--relay-log-purge=0", "--replicate-same-server-id"}
	if f == flavor.MySQL {
		// MySQL 8.0.26 renamed the options; 8.4 removed the old names.
		return append(o, "--skip-replica-start", fmt.Sprintf("--replica-parallel-workers=%d", threads),
			"--replica-preserve-commit-order=ON", "--relay-log-recovery=OFF")
	}
	return append(o, "--skip-slave-start", fmt.Sprintf("--slave-parallel-threads=%d", threads), "--slave-parallel-mode=optimistic")
}

// replica points the SQL thread at the relay logs and waits until it has
// committed the last GTID, failing on an applier error.
func replica(ctx context.Context, ep mysqlx.Endpoint, f flavor.Flavor, p Params) error {
	db, err := mysqlx.Open(ctx, ep)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(4)
	w := f.Words()
	change, start, wait := "CHANGE MASTER TO MASTER_HOST='strata-replay.invalid', MASTER_USE_GTID=no, RELAY_LOG_FILE='strata-relay.000001', RELAY_LOG_POS=4",
		"START SLAVE SQL_THREAD", "SELECT MASTER_GTID_WAIT(?, 1)"
	if f.Name == flavor.MySQL {
		// The files end at the target already; UNTIL SQL_AFTER_GTIDS also
		// stops the applier right after the last transaction, should a
		// file hold more.
		change = w.ChangeSource + " SOURCE_HOST='strata-replay.invalid', RELAY_LOG_FILE='strata-relay.000001', RELAY_LOG_POS=4"
		start = w.StartReplica + " SQL_THREAD UNTIL SQL_AFTER_GTIDS = " + quote(p.LastGTID)
		wait = "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, 1)"
	}
	for _, q := range []string{change, start} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("replay: %s: %w", q, err)
		}
	}
	for {
		var r int
		if err := db.QueryRowContext(ctx, wait, p.LastGTID).Scan(&r); err != nil {
			return fmt.Errorf("replay: wait for %s: %w", p.LastGTID, err)
		}
		if r == 0 {
			break
		}
		if err := sqlThreadError(ctx, db, f, p.LastGTID); err != nil {
			return err
		}
		if p.Tick != nil {
			p.Tick()
		}
	}
	// RESET ... ALL also deletes the relay logs.
	for _, q := range []string{w.StopReplica, w.ResetReplica} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("replay: %s: %w", q, err)
		}
	}
	return nil
}

// quote makes s an SQL string literal.
func quote(s string) string { return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'" }

// sqlThreadError returns the applier's error when its thread has stopped.
func sqlThreadError(ctx context.Context, db *sql.DB, f flavor.Flavor, lastGTID string) error {
	rows, err := db.QueryContext(ctx, f.Words().ReplicaStatus)
	if err != nil {
		return err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		return errors.New("replay: the server has no replication configured")
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return err
	}
	get := func(names ...string) string {
		for _, name := range names {
			for i, c := range cols {
				if c == name {
					return vals[i].String
				}
			}
		}
		return ""
	}
	if get("Slave_SQL_Running", "Replica_SQL_Running") != "Yes" {
		if get("Last_SQL_Errno") == "0" && f.Name == flavor.MySQL {
			// Stopped at the UNTIL point, maybe just after the wait timed
			// out: done if the last transaction is applied.
			var done int
			if err := db.QueryRowContext(ctx, "SELECT GTID_SUBSET(?, @@GLOBAL.gtid_executed)", lastGTID).Scan(&done); err == nil && done == 1 {
				return nil
			}
		}
		return fmt.Errorf("replay: the applier stopped: %s %s (relay log %s:%s)%s", get("Last_SQL_Errno"), get("Last_SQL_Error"),
			get("Relay_Log_File"), get("Relay_Log_Pos"), workerErrors(ctx, db, f))
	}
	return nil
}

// workerErrors names the errors of MySQL's applier workers, which the
// coordinator's error only points to.
func workerErrors(ctx context.Context, db *sql.DB, f flavor.Flavor) string {
	if f.Name != flavor.MySQL {
		return ""
	}
	rows, err := db.QueryContext(ctx, "SELECT WORKER_ID, LAST_ERROR_NUMBER, LAST_ERROR_MESSAGE FROM performance_schema.replication_applier_status_by_worker WHERE LAST_ERROR_NUMBER <> 0")
	if err != nil {
		return ""
	}
	defer rows.Close()
	var b strings.Builder
	for rows.Next() {
		var id, n int
		var msg string
		if rows.Scan(&id, &n, &msg) == nil {
			fmt.Fprintf(&b, "; worker %d: %d %s", id, n, msg)
		}
	}
	return b.String()
}
