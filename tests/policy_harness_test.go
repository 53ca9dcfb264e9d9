package tests

import (
	"os"
	"strings"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/workers"
)

// readConfig returns the stack's config file.
func (s *stack) readConfig() string {
	s.t.Helper()
	b, err := os.ReadFile(s.cfgPath)
	require.NoError(s.t, err)
	return string(b)
}

// writeConfig replaces the stack's config file atomically (write and
// rename), as `strata policy apply` does, so that a watcher never reads
// half a file.
func (s *stack) writeConfig(yaml string) {
	s.t.Helper()
	tmp := s.cfgPath + ".tmp"
	require.NoError(s.t, os.WriteFile(tmp, []byte(yaml), 0o600))
	require.NoError(s.t, os.Rename(tmp, s.cfgPath))
}

// editConfig replaces old with new in the config file (old must occur).
func (s *stack) editConfig(old, new string) {
	s.t.Helper()
	y := s.readConfig()
	require.Contains(s.t, y, old)
	s.writeConfig(strings.Replace(y, old, new, 1))
}

// followPolicy replaces the stack's in-process worker and agent with ones
// that follow the config file the way `strata worker` and `strata agent`
// do (NewPolicyWorker, FollowPolicy), each with its own watcher checking
// every interval. It returns the agent's watcher and the log of both
// watchers.
func (s *stack) followPolicy(every time.Duration) (*config.Watcher, *observer.ObservedLogs) {
	s.t.Helper()
	s.worker.Stop()
	s.agent.Stop()
	core, logs := observer.New(zapcore.InfoLevel)
	log := zap.New(zapcore.NewTee(core, s.log.Core()))

	cfg, err := config.Load(s.cfgPath)
	require.NoError(s.t, err)
	ww := config.NewWatcher(cfg, every, log.With(zap.String("process", "worker")))
	s.worker = workers.NewPolicyWorker(s.client, ww, s.repo, log)
	require.NoError(s.t, s.worker.Start())
	s.t.Cleanup(s.worker.Stop)

	acfg, err := config.Load(s.cfgPath)
	require.NoError(s.t, err)
	aw := config.NewWatcher(acfg, every, log.With(zap.String("process", "agent")))
	s.agent = workers.NewAgent(s.client, acfg, "h1", s.repo, log)
	s.agent.FollowPolicy(aw)
	require.NoError(s.t, s.agent.Start())

	go ww.Run(s.ctx)
	go aw.Run(s.ctx)
	return aw, logs
}
