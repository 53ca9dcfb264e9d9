package drill

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/strata-backup/strata/internal/manifest"
)

// ErrTooLarge is returned (wrapped) by SnapshotSums when the user data is
// larger than the configured cap (backup.table_sums_max_size).
var ErrTooLarge = errors.New("user data larger than table_sums_max_size")

// ErrNoSelect is returned (wrapped) by SnapshotSums when the user has no
// global SELECT privilege: information_schema hides the tables a user may
// not read, so the sums would silently cover only some tables, or none.
var ErrNoSelect = errors.New("no global SELECT privilege")

// ErrNotStarted is returned by Recorder.Wait when the backup never
// reported that commits were blocked, so no snapshot was opened.
var ErrNotStarted = errors.New("the backup tool never blocked commits: no snapshot was taken")

// snapshotEngine is the only engine whose tables a consistent snapshot
// covers.
const snapshotEngine = "InnoDB"

// SnapshotSums opens a consistent snapshot on its own connection of db
// (START TRANSACTION WITH CONSISTENT SNAPSHOT), reads the snapshot's binlog
// position (Binlog_snapshot_file/position, MariaDB) and sums every InnoDB
// base table of the user schemas in it with the same code as TableSums.
// Tables of other engines are not in the snapshot: they are listed in
// Skipped. When the InnoDB data is larger than maxBytes (> 0) it returns
// ErrTooLarge before reading any. AtBackupPoint is left false (see
// MatchBackupPoint).
func SnapshotSums(ctx context.Context, db *sql.DB, maxBytes int64) (*manifest.TableSums, error) {
	conn, err := prepareConn(ctx, db)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return snapshotSums(ctx, conn, maxBytes)
}

// lockWait is the session's lock_wait_timeout while it sums: a table
// whose metadata lock a DDL (an ALTER, LOCK TABLES ... WRITE) holds or
// waits for makes the sums fail at once instead of waiting for the server's
// default (a day), with the backup waiting for them.
var lockWait = 10 * time.Second

// idleWait is the session's wait_timeout: the recorder's connection is
// opened when the backup starts and stays idle until the tool blocks
// commits, longer than many servers' wait_timeout (often minutes), which
// would close it under the recorder.
const idleWait = 7 * 24 * time.Hour

// prepareConn takes a connection of db for a snapshot: repeatable read, a
// short lock_wait_timeout, a wait_timeout (idleWait) that outlasts the
// backup.
func prepareConn(ctx context.Context, db *sql.DB) (*sql.Conn, error) {
	conn, err := db.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("table sums: connect: %w", err)
	}
	for _, q := range []string{
		"SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
		"SET SESSION lock_wait_timeout = " + strconv.Itoa(max(int(lockWait/time.Second), 1)),
		"SET SESSION wait_timeout = " + strconv.Itoa(int(idleWait/time.Second)),
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			conn.Close()
			return nil, fmt.Errorf("table sums: %w", err)
		}
	}
	return conn, nil
}

// snapshotSums is SnapshotSums on a prepared connection.
func snapshotSums(ctx context.Context, conn *sql.Conn, maxBytes int64) (*manifest.TableSums, error) {
	if _, err := conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
		return nil, fmt.Errorf("table sums: start the snapshot: %w", err)
	}
	defer func() { _, _ = conn.ExecContext(context.Background(), "ROLLBACK") }()
	var err error
	started := time.Now()
	ts := &manifest.TableSums{At: started.UTC(), Tables: []manifest.TableSum{}, Algorithm: DefaultSumsAlgorithm}
	if ts.BinlogFile, ts.BinlogPos, err = snapshotPosition(ctx, conn); err != nil {
		return nil, err
	}
	if err := checkGlobalSelect(ctx, conn); err != nil {
		return nil, err
	}
	tables, err := ListBaseTables(ctx, conn)
	if err != nil {
		return nil, fmt.Errorf("table sums: %w", err)
	}
	var size int64
	for _, t := range tables {
		if !strings.EqualFold(t.Engine, snapshotEngine) {
			ts.Skipped = append(ts.Skipped, manifest.SkippedTable{Schema: t.Schema, Table: t.Table, Engine: t.Engine})
			continue
		}
		size += t.DataBytes
	}
	if maxBytes > 0 && size > maxBytes {
		return nil, fmt.Errorf("%w: %d bytes of InnoDB data in the user schemas are more than %d; raise backup.table_sums_max_size or set backup.table_sums: false", ErrTooLarge, size, maxBytes)
	}
	if ts.Tables, err = sumTables(ctx, conn, tables, ts.Algorithm, SkipTables(ts.Skipped)); err != nil {
		return nil, fmt.Errorf("table sums: %w", err)
	}
	if ts.BinlogFile != "" {
		var gtid sql.NullString
		if err := conn.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", ts.BinlogFile, ts.BinlogPos).Scan(&gtid); err != nil {
			return nil, fmt.Errorf("table sums: GTID of %s:%d: %w", ts.BinlogFile, ts.BinlogPos, err)
		}
		ts.GTIDSet = gtid.String
	}
	ts.Seconds = time.Since(started).Seconds()
	return ts, nil
}

// checkGlobalSelect returns ErrNoSelect unless the session holds SELECT ON
// *.*: directly or through its current role (SHOW GRANTS lists both, and
// needs no privilege).
func checkGlobalSelect(ctx context.Context, q Querier) error {
	rows, err := q.QueryContext(ctx, "SHOW GRANTS")
	if err != nil {
		return fmt.Errorf("table sums: read the session's grants: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var g string
		if err := rows.Scan(&g); err != nil {
			return fmt.Errorf("table sums: read the session's grants: %w", err)
		}
		if GlobalSelect(g) {
			return nil
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("table sums: read the session's grants: %w", err)
	}
	var user string
	_ = q.QueryRowContext(ctx, "SELECT CURRENT_USER()").Scan(&user)
	return fmt.Errorf("table sums: %w for %s: information_schema hides the tables it may not read, so the sums would miss them; GRANT SELECT ON *.* to the user, or set backup.table_sums: false", ErrNoSelect, user)
}

// GlobalSelect reports whether one line of SHOW GRANTS grants SELECT (or
// ALL PRIVILEGES) ON *.*.
func GlobalSelect(grant string) bool {
	const prefix = "GRANT "
	up := strings.ToUpper(grant)
	on := strings.Index(up, " ON *.* TO ")
	if !strings.HasPrefix(up, prefix) || on < 0 {
		return false
	}
	for _, p := range strings.Split(up[len(prefix):on], ",") {
		switch strings.TrimSpace(p) {
		case "SELECT", "ALL PRIVILEGES", "ALL":
			return true
		}
	}
	return false
}

// snapshotPosition reads the binlog position of the connection's
// consistent snapshot; empty when the server writes no binlog.
func snapshotPosition(ctx context.Context, q Querier) (file string, pos uint64, err error) {
	rows, err := q.QueryContext(ctx, "SHOW SESSION STATUS LIKE 'binlog_snapshot_%'")
	if err != nil {
		return "", 0, fmt.Errorf("table sums: snapshot position: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return "", 0, fmt.Errorf("table sums: snapshot position: %w", err)
		}
		switch strings.ToLower(name) {
		case "binlog_snapshot_file":
			file = value
		case "binlog_snapshot_position":
			if pos, err = strconv.ParseUint(value, 10, 64); err != nil {
				return "", 0, fmt.Errorf("table sums: snapshot position %q is not a number", value)
			}
		}
	}
	if err := rows.Err(); err != nil {
		return "", 0, fmt.Errorf("table sums: snapshot position: %w", err)
	}
	return file, pos, nil
}

// MatchBackupPoint sets ts.AtBackupPoint: true when the snapshot's binlog
// position is the backup's consistent point (file and pos as the backup
// tool recorded them), so that the sums describe exactly the backup's
// data. An unknown position on either side never matches.
func MatchBackupPoint(ts *manifest.TableSums, file string, pos uint64) {
	ts.AtBackupPoint = ts.BinlogFile != "" && file != "" && pos > 0 &&
		ts.BinlogFile == file && ts.BinlogPos == pos
}

// Recorder takes a backup's table sums asynchronously. NewRecorder
// connects to the server at once, so that Begin, called when the backup
// tool has blocked commits, only has to open the snapshot: it signals a
// goroutine and returns at once, so that the backup is never held up.
// Wait collects the result.
type Recorder struct {
	cancel context.CancelFunc
	begin  chan struct{}
	once   sync.Once
	done   chan struct{}
	ts     *manifest.TableSums
	err    error
}

// NewRecorder starts a recorder; open connects to the source server (the
// recorder closes what it opens). ctx bounds the work.
func NewRecorder(ctx context.Context, open func(context.Context) (*sql.DB, error), maxBytes int64) *Recorder {
	ctx, cancel := context.WithCancel(ctx)
	r := &Recorder{cancel: cancel, begin: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		db, err := open(ctx)
		if err != nil {
			r.err = fmt.Errorf("table sums: connect: %w", err)
			return
		}
		defer db.Close()
		conn, err := prepareConn(ctx, db)
		if err != nil {
			r.err = err
			return
		}
		defer conn.Close()
		select {
		case <-r.begin:
		case <-ctx.Done():
			r.err = ErrNotStarted
			return
		}
		r.ts, r.err = snapshotSums(ctx, conn, maxBytes)
	}()
	return r
}

// Begin opens the snapshot and starts the sums (once; later calls do
// nothing). It never blocks.
func (r *Recorder) Begin() { r.once.Do(func() { close(r.begin) }) }

// Wait returns the sums once they are taken, ErrNotStarted when Begin was
// never called, or ctx's error.
func (r *Recorder) Wait(ctx context.Context) (*manifest.TableSums, error) {
	begun := true
	select {
	case <-r.begin:
	default:
		begun = false
		r.cancel() // never begun: nothing to wait for
	}
	select {
	case <-r.done:
	case <-ctx.Done():
		r.cancel()
		return nil, ctx.Err()
	}
	if !begun {
		return nil, ErrNotStarted
	}
	return r.ts, r.err
}

// Abort stops the sums and waits for the goroutine to end. It does
// nothing on a nil recorder.
func (r *Recorder) Abort() {
	if r == nil {
		return
	}
	r.cancel()
	<-r.done
}
