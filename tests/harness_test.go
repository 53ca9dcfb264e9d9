// Package tests holds Strata's end-to-end tests: a real Temporal dev server
// (bin/temporal), real mariadbd processes, and the worker and agent running
// in-process against a local-disk repository.
package tests

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/demo"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/logging"
	"github.com/strata-backup/strata/internal/metrics"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/testdb"
	"github.com/strata-backup/strata/workers"
	"github.com/strata-backup/strata/workflows"
)

// repoRoot is the repository's top directory (this file lives in tests/).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// temporalBinary returns the Temporal CLI that `make deps` builds into bin/.
func temporalBinary(t *testing.T) string {
	p := os.Getenv("STRATA_TEMPORAL_BIN")
	if p == "" {
		p = filepath.Join(repoRoot(), "bin", "temporal")
	}
	if _, err := os.Stat(p); err != nil {
		if os.Getenv("STRATA_ALLOW_SKIP") == "1" {
			t.Skipf("Temporal CLI not found at %s: run `make deps`", p)
		}
		t.Fatalf("Temporal CLI not found at %s: run `make deps` (it builds bin/temporal from source)", p)
	}
	return p
}

// stack is one end-to-end environment.
type stack struct {
	t      *testing.T
	ctx    context.Context
	dev    *testsuite.DevServer
	client client.Client
	cfg    *config.Config
	repo   *repo.Repo
	src    *testdb.Server
	log    *zap.Logger
	// agent is the in-process agent of h1; cfgPath the config file.
	agent   *workers.Agent
	cfgPath string
	// worker is the in-process worker (task queue strata).
	worker worker.Worker
	// flavor is the source server's.
	flavor flavor.Name
}

// extraInstance is one more entry of `instances:` in the test config, a
// format with the source's port (%[1]d) and datadir (%[2]s).
type extraInstance string

// stackOption configures newStack: an extraInstance adds an instance; a
// stackOptionFunc can change the rest of stackSetup.
type stackOption interface{ apply(*stackSetup) }

// stackSetup is what newStack's options set.
type stackSetup struct {
	instances []extraInstance
	// storage is the config's storage: block; empty means a local
	// repository in the test's temp dir.
	storage string
	// openRepo opens the repository of the in-process worker and agent;
	// nil means workers.OpenRepo with the config.
	openRepo func(context.Context, *config.Config) (*repo.Repo, error)
	// temporal is the address of a Temporal server the test runs itself;
	// empty means newStack starts a dev server.
	temporal string
	// defaults are more lines of the config's defaults: block (indented
	// by two spaces).
	defaults string
	// srcArgs are extra mariadbd options of the source server.
	srcArgs []string
	// config is appended to the config file as is, after the instances
	// (more instances, or top-level blocks such as fleet: or agent:).
	config string
	// noWorkers starts neither the in-process worker nor the agent (the
	// test runs them as processes).
	noWorkers bool
	// interceptors are set on the stack's client, and so on the
	// in-process worker and agent built on it.
	interceptors []interceptor.ClientInterceptor
	// db1 are more lines of instance db1's block (indented by four spaces).
	db1 string
	// flavor is the source server's: "" (MariaDB) or flavor.MySQL.
	flavor flavor.Name
}

func (e extraInstance) apply(c *stackSetup) { c.instances = append(c.instances, e) }

// stackOptionFunc is a stackOption written as a function.
type stackOptionFunc func(*stackSetup)

// withTableSums turns on backup.table_sums (off by default) for every
// instance.
func withTableSums() stackOption {
	return stackOptionFunc(func(c *stackSetup) { c.defaults += "\n  table_sums: true" })
}

func (f stackOptionFunc) apply(c *stackSetup) { f(c) }

// withFlavor runs the source (and the restores' servers) as fl: MySQL
// from the chroot `make deps` builds, with its tools configured for db1.
func withFlavor(fl flavor.Name) stackOption {
	return stackOptionFunc(func(c *stackSetup) { c.flavor = fl })
}

// forFlavors runs the test once on MariaDB and once on MySQL, each as a
// subtest with its own stack (the test passes withFlavor(fl) to newStack).
func forFlavors(t *testing.T, test func(t *testing.T, fl flavor.Name)) {
	for _, fl := range []flavor.Name{flavor.MariaDB, flavor.MySQL} {
		t.Run(string(fl), func(t *testing.T) { test(t, fl) })
	}
}

// mysqlTools is instance db1's tools: block for MySQL: the chroot's
// server and client wrappers.
func mysqlTools(t *testing.T) string {
	t.Helper()
	testdb.RequireMySQL(t)
	var b strings.Builder
	b.WriteString("\n    tools:")
	for _, name := range []string{"mysqld", "mysql", "mysqlbinlog"} {
		p, err := testdb.MySQLBinary(name)
		require.NoError(t, err)
		fmt.Fprintf(&b, "\n      %s: %s", name, p)
	}
	return b.String()
}

// newStack starts Temporal, a source mariadbd, and the worker and agent of
// host "h1". The source instance is "db1", reached over TCP with the root
// password from $STRATA_E2E_PASSWORD.
func newStack(t *testing.T, opts ...stackOption) *stack {
	t.Helper()
	var setup stackSetup
	for _, o := range opts {
		o.apply(&setup)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	t.Cleanup(cancel)
	lvl := zap.WarnLevel
	if os.Getenv("STRATA_TEST_LOG") == "info" {
		lvl = zap.InfoLevel
	}
	s := &stack{t: t, ctx: ctx, log: zaptest.NewLogger(t, zaptest.Level(lvl)), flavor: flavor.MariaDB}
	if setup.flavor == flavor.MySQL {
		s.flavor = flavor.MySQL
		setup.db1 = mysqlTools(t) + setup.db1
	}

	s.src = testdb.ForTest(t, testdb.Options{ExtraArgs: setup.srcArgs, Flavor: s.flavor})
	t.Setenv("STRATA_E2E_PASSWORD", s.src.Password)

	addr := setup.temporal
	if addr == "" {
		dev, err := testsuite.StartDevServer(ctx, testsuite.DevServerOptions{
			ExistingPath:  temporalBinary(t),
			ExtraArgs:     workflows.SearchAttributeArgs(),
			LogLevel:      "error",
			ClientOptions: &client.Options{Logger: logging.NewTemporal(s.log), Interceptors: setup.interceptors, MetricsHandler: metrics.SDKHandler()},
			Stdout:        io.Discard,
			Stderr:        io.Discard,
		})
		require.NoError(t, err, "start Temporal dev server")
		t.Cleanup(func() { _ = dev.Stop() })
		s.dev, s.client, addr = dev, dev.Client(), dev.FrontendHostPort()
	} else {
		c, err := client.Dial(client.Options{HostPort: addr, Logger: logging.NewTemporal(s.log), Interceptors: setup.interceptors, MetricsHandler: metrics.SDKHandler()})
		require.NoError(t, err, "connect to Temporal at %s", addr)
		t.Cleanup(c.Close)
		s.client = c
	}
	t.Cleanup(s.recordHistories) // before the server stops (cleanups run last first)

	dir := t.TempDir()
	if setup.storage == "" {
		setup.storage = "storage:\n  type: local\n  local:\n    root: " + filepath.Join(dir, "repo")
	}
	yaml := fmt.Sprintf(`
temporal:
  address: %s
  agent_start_timeout: 15s
  heartbeat_timeout: 10s
%s
defaults:
  chunk_size: 1MiB
  parallelism: 2
  prepare_memory: 256MiB
%s
instances:
  - id: db1
    host: h1
    connect:
      address: 127.0.0.1:%d
      user: root
      password_env: STRATA_E2E_PASSWORD
    datadir: %s
%s`, addr, setup.storage, setup.defaults, s.src.Port, s.src.Datadir, setup.db1)
	for _, e := range setup.instances {
		yaml += fmt.Sprintf(string(e), s.src.Port, s.src.Datadir)
	}
	yaml += setup.config
	cfgPath := filepath.Join(dir, "strata.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(yaml), 0o600))
	var err error
	s.cfg, err = config.Load(cfgPath)
	require.NoError(t, err)
	if setup.openRepo == nil {
		setup.openRepo = workers.OpenRepo
	}
	s.repo, err = setup.openRepo(ctx, s.cfg)
	require.NoError(t, err)

	s.cfgPath = cfgPath
	if setup.noWorkers {
		return s
	}
	w := workers.NewWorker(s.client, s.cfg, s.repo)
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	s.worker = w
	s.agent = workers.NewAgent(s.client, s.cfg, "h1", s.repo, s.log)
	require.NoError(t, s.agent.Start())
	t.Cleanup(func() {
		if s.agent != nil {
			s.agent.Stop()
		}
	})
	s.cfgPath = cfgPath
	return s
}

var (
	buildOnce sync.Once
	builtBin  string
	buildErr  error
)

// strataBinary builds cmd/strata once per test run.
func strataBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "strata-bin-")
		if err != nil {
			buildErr = err
			return
		}
		builtBin = filepath.Join(dir, "strata")
		cmd := exec.Command("go", "build", "-o", builtBin, "./cmd/strata")
		cmd.Dir = repoRoot()
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return builtBin
}

// startAgentProcess runs `strata agent --host h1` as a separate process (so
// a test can kill -9 it) with the stack's config.
func (s *stack) startAgentProcess() *exec.Cmd {
	s.t.Helper()
	cmd := exec.Command(strataBinary(s.t), "agent", "--host", "h1", "--config", s.cfgPath, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	require.NoError(s.t, cmd.Start())
	s.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// seeded opens the source, fills schema demo with about size bytes of
// generated data and returns the connection (closed with the test) and the
// tables' checksums.
func (s *stack) seeded(size int64) (*sql.DB, map[string]string) {
	s.t.Helper()
	db, err := s.src.DB("")
	require.NoError(s.t, err)
	s.t.Cleanup(func() { db.Close() })
	require.NoError(s.t, demo.Seed(s.ctx, db, "demo", size, nil))
	sums, err := demo.Checksums(s.ctx, db, "demo")
	require.NoError(s.t, err)
	return db, sums
}

// numbered opens the source and creates e2e.numbered, the table the tests'
// writers fill with numbered rows; the connection closes with the test.
func (s *stack) numbered() *sql.DB {
	s.t.Helper()
	db, err := s.src.DB("")
	require.NoError(s.t, err)
	s.t.Cleanup(func() { db.Close() })
	for _, q := range []string{"CREATE DATABASE e2e", "CREATE TABLE e2e.numbered (id INT PRIMARY KEY, payload VARCHAR(255)) ENGINE=InnoDB"} {
		_, err := db.Exec(q)
		require.NoError(s.t, err)
	}
	return db
}

// cli runs the strata binary with the stack's config and returns its output.
func (s *stack) cli(args ...string) (string, error) {
	s.t.Helper()
	cmd := exec.Command(strataBinary(s.t), append(args, "--config", s.cfgPath)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// run starts a workflow on the strata queue and waits for its result.
func (s *stack) run(id, wfType string, in, out any) (client.WorkflowRun, error) {
	run, err := s.client.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: id, TaskQueue: s.cfg.Temporal.TaskQueue}, wfType, in)
	require.NoError(s.t, err)
	return run, run.Get(s.ctx, out)
}
