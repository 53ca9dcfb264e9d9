package logical

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// The progress record of a load lives in the target server, in ProgressSchema:
// one row per finished step of a load id, so a load that is started again
// with the same id skips what is done. A data file's row is inserted in the
// transaction that loads the file's rows, so for a transactional engine the
// rows and the mark commit together or not at all.
const (
	// ProgressSchema is the schema of the progress record; a dump never
	// holds it and a load never loads it.
	ProgressSchema = "strata_load"
	progressTable  = "`strata_load`.`progress`"
	progressLock   = "strata_load.progress"
)

// Steps recorded in the progress table.
const (
	stepStart   = "start"   // the load id exists (file "")
	stepCreate  = "create"  // the object of the file is (about to be) created by this load
	stepData    = "data"    // the data file is loaded
	stepIndex   = "index"   // the deferred indexes of the table file are added
	stepAccount = "account" // the account (file: user@host) is (about to be) created by this load
	stepDone    = "done"    // a schema object file is completely applied
)

const progressDDL = "CREATE TABLE IF NOT EXISTS " + progressTable + ` (
  load_id VARBINARY(255) NOT NULL,
  file VARBINARY(1024) NOT NULL,
  step VARBINARY(16) NOT NULL,
  rows_loaded BIGINT NOT NULL DEFAULT 0,
  done_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (load_id, file, step)
) ENGINE=InnoDB DEFAULT CHARSET=binary COMMENT='Strata: progress of logical loads (safe to drop when no load runs)'`

type progressKey struct{ file, step string }

// execer is a connection or a transaction.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// openProgress creates the progress table if needed and returns the marks
// of loadID.
func openProgress(ctx context.Context, c *sql.Conn, loadID string) (map[progressKey]bool, error) {
	if err := withProgressLock(ctx, c, func() error {
		if _, err := c.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+ProgressSchema+"`"); err != nil {
			return err
		}
		_, err := c.ExecContext(ctx, progressDDL)
		return err
	}); err != nil {
		return nil, fmt.Errorf("create the progress table %s: %w", progressTable, err)
	}
	rows, err := c.QueryContext(ctx, "SELECT file, step FROM "+progressTable+" WHERE load_id = ?", loadID)
	if err != nil {
		return nil, fmt.Errorf("read the progress of load %q: %w", loadID, err)
	}
	defer rows.Close()
	done := map[progressKey]bool{}
	for rows.Next() {
		var k progressKey
		if err := rows.Scan(&k.file, &k.step); err != nil {
			return nil, err
		}
		done[k] = true
	}
	return done, rows.Err()
}

// mark records a step (idempotent).
func mark(ctx context.Context, e execer, loadID, file, step string, rows int64) error {
	_, err := e.ExecContext(ctx, "INSERT INTO "+progressTable+" (load_id, file, step, rows_loaded) VALUES (?, ?, ?, ?) "+
		"ON DUPLICATE KEY UPDATE rows_loaded = VALUES(rows_loaded), done_at = CURRENT_TIMESTAMP(6)", loadID, file, step, rows)
	if err != nil {
		return fmt.Errorf("record progress %s of %q: %w", step, file, err)
	}
	return nil
}

// unmark removes a step's marks of files (a table loaded whole again, or
// created anew).
func unmark(ctx context.Context, e execer, loadID string, files []string, step string) error {
	for _, f := range files {
		if _, err := e.ExecContext(ctx, "DELETE FROM "+progressTable+" WHERE load_id = ? AND file = ? AND step = ?", loadID, f, step); err != nil {
			return fmt.Errorf("clear progress of %q: %w", f, err)
		}
	}
	return nil
}

// finishProgress deletes the marks of a finished load and drops the
// progress table and schema when no other load has marks.
func finishProgress(ctx context.Context, c *sql.Conn, loadID string) error {
	return withProgressLock(ctx, c, func() error {
		if _, err := c.ExecContext(ctx, "DELETE FROM "+progressTable+" WHERE load_id = ?", loadID); err != nil {
			return fmt.Errorf("delete the progress of load %q: %w", loadID, err)
		}
		var n int
		if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+progressTable).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		var others int
		if err := c.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME <> 'progress'", ProgressSchema).Scan(&others); err != nil {
			return err
		}
		if _, err := c.ExecContext(ctx, "DROP TABLE IF EXISTS "+progressTable); err != nil {
			return err
		}
		if others == 0 {
			if _, err := c.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+ProgressSchema+"`"); err != nil {
				return err
			}
		}
		return nil
	})
}

// withProgressLock runs f holding a named lock, so a load that finishes
// does not drop the progress table under one that starts.
func withProgressLock(ctx context.Context, c *sql.Conn, f func() error) error {
	var got sql.NullInt64
	if err := c.QueryRowContext(ctx, "SELECT GET_LOCK(?, ?)", progressLock, int((5 * time.Minute).Seconds())).Scan(&got); err != nil {
		return err
	}
	if !got.Valid || got.Int64 != 1 {
		return fmt.Errorf("timed out waiting for the lock %q of the progress table", progressLock)
	}
	defer func() {
		_, _ = c.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK(?)", progressLock)
	}()
	return f()
}
