package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/demo"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/restore"
	"github.com/strata-backup/strata/internal/testdb"
	"github.com/strata-backup/strata/workflows"
)

// temporalProcess is a Temporal dev server run by the test itself on a
// database file, so that it can be SIGKILLed and started again on the same
// file and port (testsuite.DevServer cannot be restarted).
type temporalProcess struct {
	t        *testing.T
	bin, db  string
	log      string
	addr     string
	port, ui int
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd has exited
}

func startTemporalProcess(t *testing.T) *temporalProcess {
	t.Helper()
	dir := t.TempDir()
	port, err := testdb.FreePort()
	require.NoError(t, err)
	ui, err := testdb.FreePort()
	require.NoError(t, err)
	p := &temporalProcess{t: t, bin: temporalBinary(t), db: filepath.Join(dir, "temporal.db"), log: filepath.Join(dir, "temporal.log"),
		addr: fmt.Sprintf("127.0.0.1:%d", port), port: port, ui: ui}
	p.start()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.exited
	})
	return p
}

// start runs the server and waits until its frontend serves the default
// namespace.
func (p *temporalProcess) start() {
	p.t.Helper()
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	require.NoError(p.t, err)
	defer logf.Close()
	p.cmd = exec.Command(p.bin, append([]string{"server", "start-dev", "--ip", "127.0.0.1", "--port", strconv.Itoa(p.port),
		"--ui-port", strconv.Itoa(p.ui), "--db-filename", p.db, "--headless", "--log-level", "warn",
		"--dynamic-config-value", "frontend.enableServerVersionCheck=false"}, workflows.SearchAttributeArgs()...)...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	require.NoError(p.t, p.cmd.Start())
	exited := make(chan struct{})
	p.exited = exited
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(exited) }(p.cmd)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for {
		c, err := client.Dial(client.Options{HostPort: p.addr})
		if err == nil {
			_, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
			c.Close()
			if err == nil {
				return
			}
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(p.log)
			p.t.Fatalf("Temporal dev server exited during start-up:\n%s", b)
		case <-ctx.Done():
			b, _ := os.ReadFile(p.log)
			p.t.Fatalf("Temporal dev server at %s does not answer: %v\n%s", p.addr, err, b)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// restart SIGKILLs the server and starts it again on the same file and port.
func (p *temporalProcess) restart() {
	p.t.Helper()
	require.NoError(p.t, p.cmd.Process.Kill())
	<-p.exited
	p.start()
}

// result waits for a workflow's result through a new handle: the old one's
// long poll may have died with the server.
func (s *stack) result(run client.WorkflowRun, out any) error {
	return s.client.GetWorkflow(s.ctx, run.GetID(), run.GetRunID()).Get(s.ctx, out)
}

func TestTemporalRestartMidBackupAndRestore(t *testing.T) {
	tp := startTemporalProcess(t)
	g := newFakeGCS(t)
	s := newStack(t, withGCS(t, g, nil), stackOptionFunc(func(c *stackSetup) { c.temporal = tp.addr }))
	_, want := s.seeded(16 << 20)

	// A backup, with the Temporal server killed while it uploads.
	g.uploadDelay.Store(int64(150 * time.Millisecond))
	run, err := s.client.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: "backup/db1/t1", TaskQueue: s.cfg.Temporal.TaskQueue},
		workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "db1", BackupID: "t1"})
	require.NoError(t, err)
	var bp activities.BackupProgress
	s.waitHeartbeat(run, "Backup", &bp, func() bool { return bp.Phase == "streaming" && bp.Chunks >= 5 })
	t0 := time.Now()
	tp.restart()
	t.Logf("Temporal killed and restarted during the backup (%d chunks uploaded) in %.1fs", bp.Chunks, time.Since(t0).Seconds())
	require.NotNil(t, s.pendingActivity(run, "Backup"), "the backup was still running through the restart")
	g.uploadDelay.Store(0)
	var br workflows.BackupResult
	require.NoError(t, s.result(run, &br), "backup after Temporal's restart")
	assert.Equal(t, "t1", br.BackupID)
	s.requireCatalog("db1", "t1")

	// A restore, with the Temporal server killed while it downloads.
	g.downloadDelay.Store(int64(150 * time.Millisecond))
	target := filepath.Join(t.TempDir(), "restored")
	port, err := testdb.FreePort()
	require.NoError(t, err)
	run, err = s.client.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: "restore/h1:" + target, TaskQueue: s.cfg.Temporal.TaskQueue},
		workflows.RestoreWorkflowName, workflows.RestoreRequest{Instance: "db1", BackupID: "t1", TargetDir: target, Start: true, Port: port})
	require.NoError(t, err)
	var rp activities.RestoreProgress
	s.waitHeartbeat(run, "RestoreBackup", &rp, func() bool { return rp.Phase == "downloading" && rp.Chunks >= 3 })
	t0 = time.Now()
	tp.restart()
	t.Logf("Temporal killed and restarted during the restore (%d chunks downloaded) in %.1fs", rp.Chunks, time.Since(t0).Seconds())
	require.NotNil(t, s.pendingActivity(run, "RestoreBackup"), "the restore was still running through the restart")
	g.downloadDelay.Store(0)
	var raw json.RawMessage
	require.NoError(t, s.result(run, &raw), "restore after Temporal's restart")
	var rr workflows.RestoreResult
	require.NoError(t, json.Unmarshal(raw, &rr))
	require.NotNil(t, rr.Server)
	t.Cleanup(func() { stopPID(rr.Server.PID) })
	t.Logf("attempts: %v", s.activityAttempts(run.GetID()))
	assert.NoDirExists(t, restore.StagingDir(target), "the staging dir is gone")

	rdb, err := mysqlx.Open(s.ctx, mysqlx.Endpoint{Address: fmt.Sprintf("127.0.0.1:%d", port), User: "root", Password: s.src.Password})
	require.NoError(t, err)
	defer rdb.Close()
	got, err := demo.Checksums(s.ctx, rdb, "demo")
	require.NoError(t, err)
	assert.Empty(t, demo.CompareChecksums(want, got), "the restored data is the backup's")
	s.requireCatalog("db1", "t1")
}
