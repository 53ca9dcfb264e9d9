package logical

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/strata-backup/strata/internal/flavor"
)

// snapshot is the consistent point of a dump: a coordinator connection
// that holds FLUSH TABLES WITH READ LOCK until unlock, and N worker
// connections, each in a transaction started WITH CONSISTENT SNAPSHOT
// while the lock was held, so all of them see the same committed state.
type snapshot struct {
	coord    *sql.Conn
	workers  []*sql.Conn
	lockedAt time.Time
	locked   bool
	lockDur  time.Duration

	binlogFile string
	binlogPos  uint64
	gtidSet    string
	serverTime time.Time // UTC_TIMESTAMP() under the lock
}

// sessionSetup is what every dump connection runs first: UTC for
// TIMESTAMP values, exact bytes in results, a plain sql_mode (no
// ANSI_QUOTES or NO_BACKSLASH_ESCAPES for the statements the dump sends),
// and timeouts long enough for a worker blocked on a slow sink.
var sessionSetup = []string{
	"SET SESSION time_zone = '+00:00'",
	"SET NAMES utf8mb4",
	"SET SESSION character_set_results = binary",
	"SET SESSION sql_mode = ''",
	"SET SESSION net_write_timeout = 86400, SESSION net_read_timeout = 86400, SESSION wait_timeout = 86400",
}

// takeSnapshot takes the lock, starts the worker transactions and reads
// the binlog position and GTID set; underLock runs after that, still
// under the lock. The caller must call close.
func takeSnapshot(ctx context.Context, db *sql.DB, fl flavor.Flavor, n int, lockWait time.Duration,
	underLock func(coord *sql.Conn) error) (*snapshot, error) {
	s := &snapshot{}
	ok := false
	defer func() {
		if !ok {
			s.close()
		}
	}()
	var err error
	if s.coord, err = db.Conn(ctx); err != nil {
		return nil, fmt.Errorf("dump: connect: %w", err)
	}
	if err := execAll(ctx, s.coord, sessionSetup...); err != nil {
		return nil, fmt.Errorf("dump: session: %w", err)
	}
	secs := int64(lockWait.Round(time.Second) / time.Second)
	if secs < 1 {
		secs = 1
	}
	if _, err := s.coord.ExecContext(ctx, "SET SESSION lock_wait_timeout = "+strconv.FormatInt(secs, 10)); err != nil {
		return nil, fmt.Errorf("dump: %w", err)
	}
	// Worker connections first: once the lock is held, the time until
	// the snapshots are taken is commit stall.
	for i := 0; i < n; i++ {
		c, err := db.Conn(ctx)
		if err != nil {
			return nil, fmt.Errorf("dump: worker connection %d: %w", i, err)
		}
		s.workers = append(s.workers, c)
		if err := execAll(ctx, c, sessionSetup...); err != nil {
			return nil, fmt.Errorf("dump: worker session: %w", err)
		}
		if _, err := c.ExecContext(ctx, "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ"); err != nil {
			return nil, fmt.Errorf("dump: worker session: %w", err)
		}
	}
	lctx, cancel := context.WithTimeout(ctx, lockWait+10*time.Second)
	t0 := time.Now()
	_, err = s.coord.ExecContext(lctx, "FLUSH TABLES WITH READ LOCK")
	cancel()
	if err != nil {
		var me *mysql.MySQLError
		if (errors.As(err, &me) && me.Number == 1205) || errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("dump: FLUSH TABLES WITH READ LOCK waited %v (lock_wait_timeout): a long query or a "+
				"transaction holding a table lock (or a running DDL) blocks it; find it in SHOW PROCESSLIST and retry: %w", lockWait, err)
		}
		return nil, fmt.Errorf("dump: FLUSH TABLES WITH READ LOCK: %w", err)
	}
	s.lockedAt, s.locked = t0, true
	start := "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"
	for i, c := range s.workers {
		if _, err := c.ExecContext(ctx, start); err != nil {
			return nil, fmt.Errorf("dump: worker %d: %s: %w", i, start, err)
		}
	}
	if err := s.readPosition(ctx, fl); err != nil {
		return nil, err
	}
	if underLock != nil {
		if err := underLock(s.coord); err != nil {
			return nil, err
		}
	}
	ok = true
	return s, nil
}

func (s *snapshot) readPosition(ctx context.Context, fl flavor.Flavor) error {
	rows, err := s.coord.QueryContext(ctx, fl.Words().BinlogStatus)
	if err != nil {
		return fmt.Errorf("dump: %s: %w", fl.Words().BinlogStatus, err)
	}
	cols, _ := rows.Columns()
	if rows.Next() && len(cols) >= 2 {
		raw := make([]rawValue, len(cols))
		if err := scanRaw(rows, raw, make([]any, len(cols))); err != nil {
			rows.Close()
			return fmt.Errorf("dump: binlog status: %w", err)
		}
		s.binlogFile = string(raw[0].b)
		if s.binlogPos, err = strconv.ParseUint(string(raw[1].b), 10, 64); err != nil {
			rows.Close()
			return fmt.Errorf("dump: binlog position %q: %w", raw[1].b, err)
		}
	}
	if err := closeRows(rows); err != nil {
		return fmt.Errorf("dump: binlog status: %w", err)
	}
	q := "SELECT @@gtid_binlog_pos"
	if fl.Name == flavor.MySQL {
		q = "SELECT @@gtid_executed"
	}
	var g sql.NullString
	if err := s.coord.QueryRowContext(ctx, q).Scan(&g); err != nil {
		return fmt.Errorf("dump: %s: %w", q, err)
	}
	s.gtidSet = g.String
	// The server's clock, which binlog event times also use.
	var now rawValue
	if err := s.coord.QueryRowContext(ctx, "SELECT UTC_TIMESTAMP(6)").Scan(&now); err != nil {
		return fmt.Errorf("dump: server time: %w", err)
	}
	t, err := time.ParseInLocation("2006-01-02 15:04:05.999999", string(now.b), time.UTC)
	if err != nil {
		return fmt.Errorf("dump: server time %q: %w", now.b, err)
	}
	s.serverTime = t
	return nil
}

// unlock releases the lock (commits may go on) and records how long it
// was held.
func (s *snapshot) unlock(ctx context.Context) error {
	if !s.locked {
		return nil
	}
	_, err := s.coord.ExecContext(ctx, "UNLOCK TABLES")
	s.lockDur = time.Since(s.lockedAt)
	s.locked = false
	if err != nil {
		return fmt.Errorf("dump: UNLOCK TABLES: %w", err)
	}
	return nil
}

// close ends the worker transactions and returns the connections; a
// lock still held is released by closing its connection.
func (s *snapshot) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, c := range s.workers {
		_, _ = c.ExecContext(ctx, "ROLLBACK")
		discard(c)
	}
	s.workers = nil
	if s.coord != nil {
		if s.locked {
			_ = s.unlock(ctx)
		}
		discard(s.coord)
		s.coord = nil
	}
}

// discard closes a connection instead of returning it to the pool: its
// session (binary results, UTC, a lock) must not leak to the pool's other
// users.
func discard(c *sql.Conn) {
	_ = c.Raw(func(any) error { return driver.ErrBadConn })
	_ = c.Close()
}

func execAll(ctx context.Context, c *sql.Conn, stmts ...string) error {
	for _, q := range stmts {
		if _, err := c.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}
