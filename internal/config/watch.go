package config

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// DefaultWatchInterval is how often a Watcher reads the config file.
const DefaultWatchInterval = 3 * time.Second

// Watcher holds the live config of a long-running process (worker,
// agent): it reads the file every few seconds and, when its content
// changed, loads and validates it. A valid file replaces the live config,
// the changes are logged and the OnChange functions run; an invalid one is
// logged with the offending keys and the old config stays in force until
// the file is fixed. Work reads Current when it starts, so a change applies
// to work that starts afterwards.
type Watcher struct {
	path  string
	every time.Duration
	log   *zap.Logger

	cur atomic.Pointer[Config]

	mu       sync.Mutex
	sum      [32]byte // of the file last seen, valid or not
	onChange []func(old, cur *Config)
}

// NewWatcher returns a watcher of cfg's file (cfg.Path) whose live config
// is cfg. every <= 0 means DefaultWatchInterval.
func NewWatcher(cfg *Config, every time.Duration, log *zap.Logger) *Watcher {
	if every <= 0 {
		every = DefaultWatchInterval
	}
	if log == nil {
		log = zap.NewNop()
	}
	w := &Watcher{path: cfg.Path, every: every, log: log}
	w.cur.Store(cfg)
	if data, err := os.ReadFile(cfg.Path); err == nil {
		w.sum = sha256.Sum256(data)
	}
	return w
}

// Current returns the live config. It must not be modified.
func (w *Watcher) Current() *Config { return w.cur.Load() }

// OnChange adds f, called (in the watcher's goroutine) after a valid
// changed file became the live config.
func (w *Watcher) OnChange(f func(old, cur *Config)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.onChange = append(w.onChange, f)
}

// Check reads the file once. It returns whether the live config changed,
// and the error that kept a changed file from being loaded (the old config
// then stays in force). An unreadable file counts as unchanged.
func (w *Watcher) Check() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	data, err := os.ReadFile(w.path)
	if err != nil {
		return false, fmt.Errorf("read config %s: %w", w.path, err)
	}
	sum := sha256.Sum256(data)
	if bytes.Equal(sum[:], w.sum[:]) {
		return false, nil
	}
	w.sum = sum
	next, err := Parse(data)
	if err != nil {
		w.log.Error("config file changed but is invalid; the previous policy stays in force until it is fixed",
			zap.String("config", w.path), zap.Error(err))
		return false, fmt.Errorf("config %s: %w", w.path, err)
	}
	next.Path = w.path
	old := w.cur.Load()
	changes := Changes(old, next)
	w.cur.Store(next)
	if len(changes) == 0 {
		w.log.Info("config file changed; no setting changed", zap.String("config", w.path))
	} else {
		w.log.Info("policy reloaded", zap.String("config", w.path), zap.Strings("changes", changes))
	}
	for _, ch := range RestartChanges(old, next) {
		w.log.Warn("setting changed that applies only after a restart", zap.String("config", w.path), zap.String("change", ch))
	}
	for _, f := range w.onChange {
		f(old, next)
	}
	return true, nil
}

// Run checks the file every interval until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_, _ = w.Check() // logged by Check
		}
	}
}

// Changes lists the policy settings that differ between old and cur, as
// "key: old -> new" (instances by id), for the log of a reload.
func Changes(old, cur *Config) []string {
	var out []string
	add := func(key string, a, b any) {
		as, bs := fmt.Sprint(a), fmt.Sprint(b)
		if as != bs {
			out = append(out, fmt.Sprintf("%s: %s -> %s", key, as, bs))
		}
	}
	add("agent.bandwidth_limit", old.Agent.BandwidthLimit, cur.Agent.BandwidthLimit)
	add("agent.max_concurrent", old.Agent.MaxConcurrentHeavy, cur.Agent.MaxConcurrentHeavy)
	add("metrics.refresh_interval", old.Metrics.RefreshInterval.Std(), cur.Metrics.RefreshInterval.Std())
	oldByID := map[string]*Instance{}
	for i := range old.Instances {
		oldByID[old.Instances[i].ID] = &old.Instances[i]
	}
	seen := map[string]bool{}
	for i := range cur.Instances {
		n := &cur.Instances[i]
		seen[n.ID] = true
		o, ok := oldByID[n.ID]
		if !ok {
			out = append(out, fmt.Sprintf("instances[%s]: added", n.ID))
			continue
		}
		k := "instances[" + n.ID + "]"
		add(k+".host", o.Host, n.Host)
		add(k+".backup.compression", o.Backup.Compression, n.Backup.Compression)
		add(k+".backup.compression_level", o.Backup.CompressionLevel, n.Backup.CompressionLevel)
		add(k+".backup.throttle", o.Backup.Throttle, n.Backup.Throttle)
		add(k+".backup.max_chain_length", o.Backup.MaxChainLength, n.Backup.MaxChainLength)
		add(k+".backup.chunk_size", o.Backup.ChunkSize, n.Backup.ChunkSize)
		add(k+".backup.parallelism", o.Backup.Parallelism, n.Backup.Parallelism)
		osc, ns := o.Schedule, n.Schedule
		add(k+".schedule.full", osc.Full, ns.Full)
		add(k+".schedule.incremental_every", osc.IncrementalEvery, ns.IncrementalEvery)
		add(k+".schedule.verify", osc.Verify, ns.Verify)
		add(k+".schedule.prune", osc.Prune, ns.Prune)
		add(k+".schedule.drill", osc.Drill, ns.Drill)
		add(k+".schedule.time_zone", osc.TimeZone, ns.TimeZone)
		add(k+".schedule.jitter", osc.Jitter.Std(), ns.Jitter.Std())
		add(k+".schedule.catchup_window", osc.CatchupWindow.Std(), ns.CatchupWindow.Std())
		if !reflect.DeepEqual(o.Retention, n.Retention) {
			out = append(out, k+".retention: changed")
		}
	}
	for _, o := range old.Instances {
		if !seen[o.ID] {
			out = append(out, fmt.Sprintf("instances[%s]: removed", o.ID))
		}
	}
	return out
}

// RestartChanges lists changed settings a running process does not pick
// up: the connection to Temporal, the storage, the encryption keys and the
// metrics endpoints' addresses.
func RestartChanges(old, cur *Config) []string {
	var out []string
	if !reflect.DeepEqual(old.Temporal, cur.Temporal) {
		out = append(out, "temporal")
	}
	if !reflect.DeepEqual(old.Storage, cur.Storage) {
		out = append(out, "storage")
	}
	if !reflect.DeepEqual(old.Encryption, cur.Encryption) {
		out = append(out, "encryption")
	}
	if old.Metrics.Listen != cur.Metrics.Listen || old.Metrics.AgentListen != cur.Metrics.AgentListen {
		out = append(out, "metrics")
	}
	return out
}
