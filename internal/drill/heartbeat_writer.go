package drill

import (
	"context"
	"database/sql"
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

// Ensure creates the schema and the table when they are missing.
func (w *HeartbeatWriter) Ensure(ctx context.Context) error {
	schema, table, err := ParseTable(w.Table)
	if err != nil {
		return fmt.Errorf("heartbeat table: %w", err)
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

// Beat writes the current time into the writer's row.
func (w *HeartbeatWriter) Beat(ctx context.Context) error {
	schema, table, err := ParseTable(w.Table)
	if err != nil {
		return fmt.Errorf("heartbeat table: %w", err)
	}
	_, err = w.DB.ExecContext(ctx, "INSERT INTO "+QuoteIdent(schema)+"."+QuoteIdent(table)+
		" (id, ts, host) VALUES (?, UTC_TIMESTAMP(6), ?) ON DUPLICATE KEY UPDATE ts = VALUES(ts), host = VALUES(host)", w.ID, w.Host)
	if err != nil {
		return fmt.Errorf("write heartbeat into %s: %w", w.Table, err)
	}
	return nil
}

// Run ensures the table and beats every every until ctx ends. Failures are
// logged, at most once a minute (and when it recovers), and never end it:
// the table is ensured again after a failure.
func (w *HeartbeatWriter) Run(ctx context.Context, every time.Duration, log *zap.Logger) {
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var ensured, failing bool
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
		case err != nil:
			ensured = false
			if time.Since(lastLog) >= time.Minute {
				log.Warn("heartbeat write failed; retrying", zap.String("table", w.Table), zap.Error(err))
				lastLog = time.Now()
			}
			failing = true
		case failing:
			log.Info("heartbeat writes again", zap.String("table", w.Table))
			failing, lastLog = false, time.Time{}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
