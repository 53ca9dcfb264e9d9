package drill

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// HeartbeatWriter upserts one row of an instance's heartbeat table:
// id (the writer's id), ts (UTC_TIMESTAMP(6) of the server: the clock of
// the binlog events that replicate it) and host.
type HeartbeatWriter struct {
	DB    *sql.DB
	Table string // schema.table
	ID    string // the row's id: the instance id
	Host  string // the agent that writes
}

// ErrNotWritable is returned (wrapped) by Ensure and Beat when the server
// is read-only or replicates from another server: a write there would be
// a local transaction of a replica (an errant GTID, which breaks
// gtid_strict_mode replication and failover) even for a user that
// read_only does not stop. The primary's heartbeat reaches it by
// replication.
var ErrNotWritable = errors.New("the server is read-only or a replica")

// writable checks that the server is a writable primary: @@read_only off
// and no replication connection configured (SHOW ALL SLAVES STATUS;
// when the user may not run it, read_only alone decides).
func (w *HeartbeatWriter) writable(ctx context.Context) error {
	var ro bool
	if err := w.DB.QueryRowContext(ctx, "SELECT @@global.read_only").Scan(&ro); err != nil {
		return fmt.Errorf("heartbeat table %s: read read_only: %w", w.Table, err)
	}
	if ro {
		return fmt.Errorf("heartbeat table %s not written: %w (read_only is ON)", w.Table, ErrNotWritable)
	}
	rows, err := w.DB.QueryContext(ctx, "SHOW ALL SLAVES STATUS")
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return nil // not allowed (or not MariaDB): read_only decided
	}
	defer rows.Close()
	if rows.Next() {
		return fmt.Errorf("heartbeat table %s not written: %w (it has a replication connection)", w.Table, ErrNotWritable)
	}
	return nil
}

// Ensure creates the schema and the table when they are missing, on a
// writable primary only (ErrNotWritable otherwise).
func (w *HeartbeatWriter) Ensure(ctx context.Context) error {
	schema, table, err := ParseTable(w.Table)
	if err != nil {
		return fmt.Errorf("heartbeat table: %w", err)
	}
	if err := w.writable(ctx); err != nil {
		return err
	}
	if _, err := w.DB.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+QuoteIdent(schema)); err != nil {
		return fmt.Errorf("create heartbeat schema %s: %w", schema, err)
	}
	if _, err := w.DB.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+QuoteIdent(schema)+"."+QuoteIdent(table)+
		" (id VARCHAR(64) NOT NULL PRIMARY KEY, ts DATETIME(6) NOT NULL, host VARCHAR(255) NOT NULL) ENGINE=InnoDB"); err != nil {
		return fmt.Errorf("create heartbeat table %s: %w", w.Table, err)
	}
	return nil
}

// Beat writes the current time into the writer's row, on a writable
// primary only (ErrNotWritable otherwise).
func (w *HeartbeatWriter) Beat(ctx context.Context) error {
	schema, table, err := ParseTable(w.Table)
	if err != nil {
		return fmt.Errorf("heartbeat table: %w", err)
	}
	if err := w.writable(ctx); err != nil {
		return err
	}
	_, err = w.DB.ExecContext(ctx, "INSERT INTO "+QuoteIdent(schema)+"."+QuoteIdent(table)+
		" (id, ts, host) VALUES (?, UTC_TIMESTAMP(6), ?) ON DUPLICATE KEY UPDATE ts = VALUES(ts), host = VALUES(host)", w.ID, w.Host)
	if err != nil {
		return fmt.Errorf("write heartbeat into %s: %w", w.Table, err)
	}
	return nil
}

// Run ensures the table and beats every every until ctx ends; while the
// server is read-only or a replica it writes nothing (logged once). Failures are
// logged, at most once a minute (and when it recovers), and never end it:
// the table is ensured again after a failure.
func (w *HeartbeatWriter) Run(ctx context.Context, every time.Duration, log *zap.Logger) {
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var ensured, failing, skipping bool
	var lastLog time.Time
	for {
		err := func() error {
			if !ensured {
				if err := w.Ensure(ctx); err != nil {
					return err
				}
				ensured = true
			}
			bctx, cancel := context.WithTimeout(ctx, max(every, 5*time.Second))
			defer cancel()
			return w.Beat(bctx)
		}()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, ErrNotWritable):
			// Not a failure: a replica (or a read-only primary) is skipped
			// until it is promoted. Logged once per change.
			if !skipping {
				log.Info("heartbeat table not written while the server is read-only or a replica", zap.String("table", w.Table), zap.Error(err))
				skipping = true
			}
			ensured, failing = false, false
		case err != nil:
			ensured = false
			if time.Since(lastLog) >= time.Minute {
				log.Warn("heartbeat write failed; retrying", zap.String("table", w.Table), zap.Error(err))
				lastLog = time.Now()
			}
			failing = true
		case failing || skipping:
			log.Info("heartbeat writes again", zap.String("table", w.Table))
			failing, skipping, lastLog = false, false, time.Time{}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
