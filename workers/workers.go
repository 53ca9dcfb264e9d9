// Package workers builds the two kinds of Temporal worker Strata runs: the
// `strata` worker (all workflows, repository-only activities) and the agent of
// one database host (activities that touch its servers and datadirs).
package workers

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.uber.org/zap"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/backend"
	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/logging"
	"github.com/strata-backup/strata/internal/metrics"
	"github.com/strata-backup/strata/internal/ratelimit"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/tracing"
	"github.com/strata-backup/strata/workflows"
)

// Dial connects to the Temporal frontend named in the config, with TLS,
// mTLS or an API key when configured.
func Dial(cfg *config.Config, log *zap.Logger) (client.Client, error) {
	opts := client.Options{
		HostPort:  cfg.Temporal.Address,
		Namespace: cfg.Temporal.Namespace,
		Logger:    logging.NewTemporal(log),
		// The SDK's own metrics (temporal_*), on the process's /metrics.
		MetricsHandler: metrics.SDKHandler(),
	}
	t := cfg.Temporal.TLS
	if t.Enabled || t.CAFile != "" || t.CertFile != "" || cfg.Temporal.APIKeyEnv != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
		if t.CAFile != "" {
			pem, err := os.ReadFile(t.CAFile)
			if err != nil {
				return nil, fmt.Errorf("temporal.tls.ca_file: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("temporal.tls.ca_file %s holds no PEM certificate", t.CAFile)
			}
		}
		if t.CertFile != "" {
			cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("temporal.tls.cert_file/key_file: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		opts.ConnectionOptions.TLS = tc
	}
	if name := cfg.Temporal.APIKeyEnv; name != "" {
		key, ok := os.LookupEnv(name)
		if !ok || key == "" {
			return nil, fmt.Errorf("temporal.api_key_env: environment variable %s is not set", name)
		}
		opts.Credentials = client.NewAPIKeyStaticCredentials(key)
	}
	if cfg.Tracing.Enabled() {
		// Traces the client's calls and the workflows and activities of the
		// workers built on it, with the global tracer provider (tracing.Setup).
		ti, err := tracing.Interceptor(nil)
		if err != nil {
			return nil, fmt.Errorf("tracing interceptor: %w", err)
		}
		opts.Interceptors = append(opts.Interceptors, ti)
	}
	c, err := client.Dial(opts)
	if err != nil {
		return nil, fmt.Errorf("connect to Temporal at %s (temporal.address), namespace %s: %w", cfg.Temporal.Address, cfg.Temporal.Namespace, err)
	}
	return c, nil
}

// OpenRepo opens the repository named in the config.
func OpenRepo(ctx context.Context, cfg *config.Config) (*repo.Repo, error) {
	b, err := backend.Open(ctx, cfg.Storage)
	if err != nil {
		return nil, err
	}
	return repo.New(b), nil
}

// RegisterWorkflows registers every Strata workflow on w.
func RegisterWorkflows(w worker.WorkflowRegistry) {
	w.RegisterWorkflowWithOptions(workflows.BackupWorkflow, workflow.RegisterOptions{Name: workflows.BackupWorkflowName})
	w.RegisterWorkflowWithOptions(workflows.RestoreWorkflow, workflow.RegisterOptions{Name: workflows.RestoreWorkflowName})
	w.RegisterWorkflowWithOptions(workflows.VerifyWorkflow, workflow.RegisterOptions{Name: workflows.VerifyWorkflowName})
	w.RegisterWorkflowWithOptions(workflows.RetentionWorkflow, workflow.RegisterOptions{Name: workflows.RetentionWorkflowName})
	w.RegisterWorkflowWithOptions(workflows.BinlogArchiveWorkflow, workflow.RegisterOptions{Name: workflows.ArchiveWorkflowName})
	w.RegisterWorkflowWithOptions(workflows.ScheduledWorkflow, workflow.RegisterOptions{Name: workflows.ScheduledWorkflowName})
	w.RegisterWorkflowWithOptions(workflows.InstanceWorkflow, workflow.RegisterOptions{Name: workflows.InstanceWorkflowName})
	w.RegisterWorkflowWithOptions(workflows.LimiterWorkflow, workflow.RegisterOptions{Name: workflows.LimiterWorkflowName})
	w.RegisterWorkflowWithOptions(workflows.DrillWorkflow, workflow.RegisterOptions{Name: workflows.DrillWorkflowName})
	w.RegisterWorkflowWithOptions(workflows.TableRestoreWorkflow, workflow.RegisterOptions{Name: workflows.TableRestoreWorkflowName})
}

// NewWorker returns the `strata` worker: workflows plus catalog activities.
func NewWorker(c client.Client, cfg *config.Config, r *repo.Repo) worker.Worker {
	return newWorker(c, cfg, r, nil)
}

func newWorker(c client.Client, cfg *config.Config, r *repo.Repo, policy *config.Watcher) worker.Worker {
	w := worker.New(c, cfg.Temporal.TaskQueue, worker.Options{
		MaxHeartbeatThrottleInterval:     2 * time.Second,
		DefaultHeartbeatThrottleInterval: 2 * time.Second,
		// A completed backup refreshes the metrics (RunMetrics).
		Interceptors: append(logInterceptors(), &completions{}),
	})
	RegisterWorkflows(w)
	w.RegisterActivity(&activities.Catalog{Config: cfg, Repo: r, Policy: policy, Client: c})
	sched := &Scheduled{Client: c, TaskQueue: cfg.Temporal.TaskQueue}
	w.RegisterActivityWithOptions(sched.RequestScheduledBackup, activity.RegisterOptions{Name: workflows.RequestScheduledBackupActivity})
	return w
}

// Agent is the pair of workers of one database host: one for heavy
// activities (backups, restores), limited to agent.max_concurrent, and one
// for the binlog archivers, which run all the time.
type Agent struct {
	Heavy, Binlog worker.Worker
	// Activities are the registered activities, with the agent's keyring
	// and its bandwidth limiter (one per agent process).
	Activities *activities.Agent
	// Slots limits the heavy activities running at once (agent.max_concurrent).
	Slots *Slots

	err     error // from loading the keys: Start fails with it
	started bool
	// stopHeartbeats stops the writers of the heartbeat tables.
	stopHeartbeats func()
}

// Start starts both workers. It fails if the agent's encryption keys could
// not be loaded.
func (a *Agent) Start() error {
	if a.err != nil {
		return a.err
	}
	// Drill dirs (and scratch servers) a killed agent left behind.
	if err := a.Activities.SweepDrills(context.Background()); err != nil && a.Activities.Log != nil {
		a.Activities.Log.Warn("could not remove every drill dir left by an earlier agent", zap.Error(err))
	}
	if err := a.Heavy.Start(); err != nil {
		return err
	}
	if err := a.Binlog.Start(); err != nil {
		a.Heavy.Stop()
		return err
	}
	a.stopHeartbeats = activities.RunHeartbeats(a.Activities)
	a.started = true
	return nil
}

// Stop stops both workers, cancelling running activities.
func (a *Agent) Stop() {
	if !a.started {
		return
	}
	a.started = false
	a.stopHeartbeats()
	a.Binlog.Stop()
	a.Heavy.Stop()
}

// LoadKeyring loads the key encryption keys named by the config's
// encryption block; nil when it names none. Errors name the key to fix.
func LoadKeyring(cfg *config.Config) (*crypt.Keyring, error) {
	e := cfg.Encryption
	ring, err := crypt.LoadKeyring(crypt.KeySources{KeyFile: e.KeyFile, KeyEnv: e.KeyEnv, OldKeyFiles: e.OldKeyFiles, OldKeyEnvs: e.OldKeyEnvs})
	if err != nil {
		return nil, fmt.Errorf("load encryption keys (config %s): %w", cfg.Path, err)
	}
	return ring, nil
}

// Run starts both workers and stops them when stop is closed.
func (a *Agent) Run(stop <-chan interface{}) error {
	if err := a.Start(); err != nil {
		return err
	}
	<-stop
	a.Stop()
	return nil
}

// NewAgent returns the workers of one database host. It loads the agent's
// encryption keys (a key that cannot be loaded makes Start fail, saying
// which) and creates its bandwidth limiter (agent.bandwidth_limit), shared
// by all its backups and restores.
func NewAgent(c client.Client, cfg *config.Config, host string, r *repo.Repo, log *zap.Logger) *Agent {
	ring, kerr := LoadKeyring(cfg)
	if kerr == nil {
		kerr = checkMemory(cfg, host)
	}
	acts := &activities.Agent{Host: host, Config: cfg, Repo: r, Log: log, Keys: ring,
		Limiter: ratelimit.New(int64(cfg.Agent.BandwidthLimit))}
	opts := worker.Options{
		MaxConcurrentActivityExecutionSize: cfg.Agent.MaxConcurrentHeavy,
		// On SIGTERM, running activities are cancelled and get this long to
		// kill their tools and remove temp files before the agent exits.
		WorkerStopTimeout: 30 * time.Second,
		// Cancellation reaches an activity in a heartbeat response: keep the
		// SDK's heartbeat batching short so a cancel stops the tool quickly.
		MaxHeartbeatThrottleInterval:     2 * time.Second,
		DefaultHeartbeatThrottleInterval: 2 * time.Second,
		Interceptors:                     logInterceptors(),
	}
	// agent.max_concurrent is a slot supplier whose size a policy reload
	// changes (FollowPolicy).
	slots := NewSlots(cfg.Agent.MaxConcurrentHeavy)
	heavyOpts := opts
	heavyOpts.MaxConcurrentActivityExecutionSize = 0
	tuner, terr := slots.tuner()
	if terr != nil && kerr == nil {
		kerr = terr
	}
	heavyOpts.Tuner = tuner
	heavy := worker.New(c, config.AgentTaskQueue(host), heavyOpts)
	heavy.RegisterActivityWithOptions(acts, activity.RegisterOptions{})
	opts.MaxConcurrentActivityExecutionSize = 0 // one archiver per instance; SDK default bound
	bl := worker.New(c, config.ArchiveTaskQueue(host), opts)
	bl.RegisterActivityWithOptions(acts, activity.RegisterOptions{})
	return &Agent{Heavy: heavy, Binlog: bl, Activities: acts, Slots: slots, err: kerr}
}

// logInterceptors add instance and backup_id to the log lines of every
// workflow and activity of a worker (the SDK adds workflow_id, run_id...).
func logInterceptors() []interceptor.WorkerInterceptor {
	return []interceptor.WorkerInterceptor{&logging.IDs{}}
}

// checkMemory refuses to start an agent whose instances' upload buffers or
// prepare memory cannot fit in this machine's memory.
func checkMemory(cfg *config.Config, host string) error {
	total, err := config.MachineMemory()
	if err != nil {
		return err
	}
	return cfg.CheckHostMemory(host, total)
}
