// Package preflight decides whether a source server is in a state to be
// backed up now: before a backup takes any lock, it looks for long-running
// transactions, many threads running, replication lag and too little free
// disk where the backup stages, each against a threshold of the instance's
// config (backup.preflight). The caller waits and checks again while a
// check blocks, within a budget.
package preflight

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/strata-backup/strata/internal/flavor"
)

// Thresholds are the limits a server must be within; a zero limit is not
// checked.
type Thresholds struct {
	MaxTrxAge         time.Duration `json:"max_trx_age"`
	MaxThreadsRunning int           `json:"max_threads_running"`
	MaxReplicationLag time.Duration `json:"max_replication_lag"`
	MinFreeDisk       int64         `json:"min_free_disk"`
}

// Trx is an open InnoDB transaction.
type Trx struct {
	ID     string        `json:"id"`
	Thread uint64        `json:"thread"` // processlist id (KILL it to end the transaction)
	User   string        `json:"user"`
	Host   string        `json:"host"`
	Age    time.Duration `json:"age"`
	Query  string        `json:"query"` // running statement, or the last one the thread ran
}

// Sample is what was measured on the server and the staging disk.
type Sample struct {
	// Trxs are the open transactions, oldest first.
	Trxs           []Trx `json:"trxs"`
	ThreadsRunning int   `json:"threads_running"`
	// Replica is whether the server replicates from a primary; Lag is nil
	// when it does but the SQL thread is not running (lag unknown).
	Replica  bool           `json:"replica"`
	Lag      *time.Duration `json:"lag,omitempty"`
	FreeDisk int64          `json:"free_disk"`
	DiskPath string         `json:"disk_path"`
}

// Block is one check over its threshold.
type Block struct {
	Check  string `json:"check"` // trx_age | threads_running | replication_lag | free_disk
	Reason string `json:"reason"`
}

// Decide returns the checks of s over the thresholds; none means go.
func Decide(s Sample, th Thresholds) []Block {
	var out []Block
	if th.MaxTrxAge > 0 {
		for _, t := range s.Trxs {
			if t.Age > th.MaxTrxAge {
				out = append(out, Block{Check: "trx_age", Reason: fmt.Sprintf(
					"transaction %s of %s@%s (thread %d) open for %s (max_trx_age %s), query: %s",
					t.ID, t.User, t.Host, t.Thread, t.Age.Round(time.Second), th.MaxTrxAge, queryText(t.Query))})
				break // the oldest names the problem
			}
		}
	}
	if th.MaxThreadsRunning > 0 && s.ThreadsRunning > th.MaxThreadsRunning {
		out = append(out, Block{Check: "threads_running", Reason: fmt.Sprintf(
			"%d threads running (max_threads_running %d)", s.ThreadsRunning, th.MaxThreadsRunning)})
	}
	if th.MaxReplicationLag > 0 && s.Replica {
		switch {
		case s.Lag == nil:
			out = append(out, Block{Check: "replication_lag", Reason: fmt.Sprintf(
				"replication lag unknown: the replica's SQL thread is not running (max_replication_lag %s)", th.MaxReplicationLag)})
		case *s.Lag > th.MaxReplicationLag:
			out = append(out, Block{Check: "replication_lag", Reason: fmt.Sprintf(
				"replication lag %s (max_replication_lag %s)", *s.Lag, th.MaxReplicationLag)})
		}
	}
	if th.MinFreeDisk > 0 && s.FreeDisk < th.MinFreeDisk {
		out = append(out, Block{Check: "free_disk", Reason: fmt.Sprintf(
			"%s free in %s (min_free_disk %s)", size(s.FreeDisk), s.DiskPath, size(th.MinFreeDisk))})
	}
	return out
}

// Summary joins the reasons of blocks.
func Summary(blocks []Block) string {
	r := make([]string, len(blocks))
	for i, b := range blocks {
		r[i] = b.Reason
	}
	return strings.Join(r, "; ")
}

func queryText(q string) string {
	q = strings.Join(strings.Fields(q), " ")
	if q == "" {
		return "(idle in its transaction; its last statement is not recorded: performance_schema with the events_statements_current consumer is off)"
	}
	if len(q) > 200 {
		q = q[:200] + "..."
	}
	return q
}

func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%dB", n)
	}
	v, u := float64(n), ""
	for _, x := range []string{"KiB", "MiB", "GiB", "TiB", "PiB"} {
		v /= unit
		u = x
		if v < unit {
			break
		}
	}
	return fmt.Sprintf("%.1f%s", v, u)
}

// Measure samples the server over db and the free disk at diskPath.
func Measure(ctx context.Context, db *sql.DB, server flavor.Flavor, diskPath string) (Sample, error) {
	var s Sample
	var err error
	if s.Trxs, err = Transactions(ctx, db); err != nil {
		return s, err
	}
	if s.ThreadsRunning, err = ThreadsRunning(ctx, db); err != nil {
		return s, err
	}
	if s.Replica, s.Lag, err = ReplicationLag(ctx, db, server); err != nil {
		return s, err
	}
	s.DiskPath = diskPath
	if s.FreeDisk, err = FreeDisk(diskPath); err != nil {
		return s, err
	}
	return s, nil
}

// Transactions lists the open InnoDB transactions, oldest first, with the
// user, host and statement of their threads; the checker's own connection
// is left out. A thread that is idle inside its
// transaction shows the last statement it ran where the server keeps it:
// performance_schema.events_statements_current (on by default in MySQL;
// MariaDB needs performance_schema=ON and
// performance_schema_consumer_events_statements_current=ON).
func Transactions(ctx context.Context, db *sql.DB) ([]Trx, error) {
	rows, err := db.QueryContext(ctx, `
SELECT t.trx_id, COALESCE(p.USER, ''), COALESCE(p.HOST, ''),
       GREATEST(TIMESTAMPDIFF(MICROSECOND, t.trx_started, NOW(6)), 0),
       COALESCE(t.trx_query, p.INFO, ''), t.trx_mysql_thread_id
FROM information_schema.INNODB_TRX t
LEFT JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id
WHERE t.trx_mysql_thread_id <> CONNECTION_ID()
ORDER BY t.trx_started, t.trx_id`)
	if err != nil {
		return nil, fmt.Errorf("read information_schema.innodb_trx: %w", err)
	}
	defer rows.Close()
	var out []Trx
	for rows.Next() {
		var t Trx
		var us int64
		if err := rows.Scan(&t.ID, &t.User, &t.Host, &us, &t.Query, &t.Thread); err != nil {
			return nil, fmt.Errorf("read information_schema.innodb_trx: %w", err)
		}
		t.Age = time.Duration(us) * time.Microsecond
		out = append(out, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read information_schema.innodb_trx: %w", err)
	}
	for i := range out {
		if out[i].Query == "" {
			out[i].Query = lastStatement(ctx, db, out[i].Thread)
		}
	}
	return out, nil
}

// lastStatement is the last statement the thread ran, from
// performance_schema, or "" where the server does not record it.
func lastStatement(ctx context.Context, db *sql.DB, thread uint64) string {
	var q sql.NullString
	err := db.QueryRowContext(ctx, `
SELECT e.SQL_TEXT FROM performance_schema.events_statements_current e
JOIN performance_schema.threads th ON th.THREAD_ID = e.THREAD_ID
WHERE th.PROCESSLIST_ID = ? ORDER BY e.EVENT_ID DESC LIMIT 1`, thread).Scan(&q)
	if err != nil {
		return ""
	}
	return q.String
}

// ThreadsRunning reads SHOW GLOBAL STATUS Threads_running (the checker's
// own thread is one of them and is not counted).
func ThreadsRunning(ctx context.Context, db *sql.DB) (int, error) {
	var name, v string
	if err := db.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Threads_running'").Scan(&name, &v); err != nil {
		return 0, fmt.Errorf("read Threads_running: %w", err)
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("read Threads_running: %q is not a number", v)
	}
	if n > 0 {
		n--
	}
	return n, nil
}

// ReplicationLag reads Seconds_Behind_Master (Seconds_Behind_Source) of
// the server's replica status statement (flavor.Words: SHOW SLAVE STATUS
// on MariaDB, SHOW REPLICA STATUS on MySQL; a MySQL 8.0 before 8.0.22
// knows only SHOW SLAVE STATUS, tried next). A server that is no replica
// has no lag; a replica whose SQL thread is stopped reports a nil lag.
// With several sources (MariaDB multi-source), the largest lag counts.
func ReplicationLag(ctx context.Context, db *sql.DB, server flavor.Flavor) (replica bool, lag *time.Duration, err error) {
	stmts := []string{server.Words().ReplicaStatus}
	if server.Name == flavor.MySQL && !server.AtLeast(8, 1) && stmts[0] != "SHOW SLAVE STATUS" {
		stmts = append(stmts, "SHOW SLAVE STATUS")
	}
	var rows *sql.Rows
	for _, q := range stmts {
		rows, err = db.QueryContext(ctx, q)
		if err == nil {
			break
		}
	}
	if err != nil {
		return false, nil, fmt.Errorf("read replication status: %w", err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return false, nil, fmt.Errorf("read replication status: %w", err)
	}
	idx := -1
	for i, c := range cols {
		if c == "Seconds_Behind_Master" || c == "Seconds_Behind_Source" {
			idx = i
		}
	}
	unknown := false
	var worst time.Duration
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			return false, nil, fmt.Errorf("read replication status: %w", err)
		}
		replica = true
		if idx < 0 || !vals[idx].Valid {
			unknown = true
			continue
		}
		secs, err := strconv.ParseInt(vals[idx].String, 10, 64)
		if err != nil {
			return false, nil, fmt.Errorf("read replication status: Seconds_Behind_Master %q is not a number", vals[idx].String)
		}
		if d := time.Duration(secs) * time.Second; d > worst {
			worst = d
		}
	}
	if err := rows.Err(); err != nil {
		return false, nil, fmt.Errorf("read replication status: %w", err)
	}
	if replica && !unknown {
		lag = &worst
	}
	return replica, lag, nil
}

// FreeDisk is the space available to an unprivileged user in the file
// system of path.
func FreeDisk(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, fmt.Errorf("free disk of %s: %w", path, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// ErrBlocked is returned by Wait when the budget ran out with checks still
// over their thresholds.
var ErrBlocked = errors.New("pre-flight check blocked")

// BlockedError says which checks blocked when the budget ran out.
type BlockedError struct {
	Blocks  []Block
	Waited  time.Duration
	Budget  time.Duration
	Checked int
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("pre-flight check still blocked after %s (budget %s, %d checks): %s",
		e.Waited.Round(time.Second), e.Budget, e.Checked, Summary(e.Blocks))
}

func (e *BlockedError) Unwrap() error { return ErrBlocked }

// Progress is the state of a wait, reported after every check.
type Progress struct {
	Started time.Time `json:"started"`
	Checked int       `json:"checked"`
	Blocks  []Block   `json:"blocks,omitempty"`
	Sample  Sample    `json:"sample"`
}

// Wait measures with measure and decides until nothing blocks, checking
// again every recheck (and once more when the budget ends) until budget
// has passed since p.Started (a zero
// Started is now: a resumed wait passes the Progress it reported last).
// report is called after every check. A measurement error is returned at
// once. The clock and sleep are parameters for tests.
func Wait(ctx context.Context, th Thresholds, budget, recheck time.Duration, p Progress,
	measure func(context.Context) (Sample, error), report func(Progress),
	now func() time.Time, sleep func(context.Context, time.Duration) error) (Progress, error) {
	if p.Started.IsZero() {
		p.Started = now()
	}
	for {
		s, err := measure(ctx)
		if err != nil {
			return p, err
		}
		p.Checked++
		p.Sample, p.Blocks = s, Decide(s, th)
		report(p)
		if len(p.Blocks) == 0 {
			return p, nil
		}
		waited := now().Sub(p.Started)
		if waited >= budget {
			return p, &BlockedError{Blocks: p.Blocks, Waited: waited, Budget: budget, Checked: p.Checked}
		}
		// The last check falls on the end of the budget.
		if err := sleep(ctx, min(recheck, budget-waited)); err != nil {
			return p, err
		}
	}
}

// Sleep waits d or until ctx is done.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
