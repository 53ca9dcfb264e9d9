package activities

import (
	"context"
	"database/sql"
	"sync"

	"go.uber.org/zap"

	"github.com/strata-backup/strata/internal/drill"
)

// RunHeartbeats starts one writer of the heartbeat table
// (instances[].heartbeat) for each instance of a's host that sets one, and
// returns a function that stops them and waits for them to end. A writer's
// failures are logged, at most once a minute, and never stop the agent.
func RunHeartbeats(a *Agent) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	log := a.Log
	if log == nil {
		log = zap.NewNop()
	}
	cfg := a.cfg()
	for i := range cfg.Instances {
		in := &cfg.Instances[i]
		if in.Host != a.Host || in.Heartbeat.Table == "" {
			continue
		}
		l := log.With(zap.String("instance", in.ID), zap.String("host", a.Host))
		ep, err := endpoint(in)
		if err != nil {
			l.Warn("heartbeat table not written", zap.Error(err))
			continue
		}
		db, err := sql.Open("mysql", ep.DSN()) // connects on first use: a server that is down is retried
		if err != nil {
			l.Warn("heartbeat table not written", zap.Error(err))
			continue
		}
		db.SetMaxOpenConns(1)
		w := &drill.HeartbeatWriter{DB: db, Table: in.Heartbeat.Table, ID: in.ID, Host: a.Host}
		every := in.Heartbeat.Every.Std()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer db.Close()
			l.Info("writing the heartbeat table", zap.String("table", w.Table), zap.Duration("every", every))
			w.Run(ctx, every, l)
		}()
	}
	return func() {
		cancel()
		wg.Wait()
	}
}
