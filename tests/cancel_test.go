package tests

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/demo"
	"github.com/strata-backup/strata/workflows"
)

// A slow instance: zstd level 19 on one core makes the backup take long
// enough to cancel it in the middle.
const slowInstance extraInstance = `
  - id: slow
    host: h1
    connect: {address: "127.0.0.1:%[1]d", user: root, password_env: STRATA_E2E_PASSWORD}
    datadir: %[2]s
    backup: {compression_level: 19, parallelism: 1, chunk_size: 256KiB}
`

func TestCancelledBackupKillsToolAndLeavesNothing(t *testing.T) {
	s := newStack(t, slowInstance)
	db, err := s.src.DB("")
	require.NoError(t, err)
	defer db.Close()
	require.NoError(t, demo.Seed(s.ctx, db, "demo", 64<<20, nil))

	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "strata-backup-*"))
	run, err := s.client.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: "backup/slow/c1", TaskQueue: s.cfg.Temporal.TaskQueue},
		workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "slow", BackupID: "c1"})
	require.NoError(t, err)

	// Wait until the agent streams chunks (seen in its heartbeat).
	require.Eventually(t, func() bool {
		d, err := s.client.DescribeWorkflowExecution(s.ctx, run.GetID(), run.GetRunID())
		if err != nil || len(d.PendingActivities) == 0 || d.PendingActivities[0].HeartbeatDetails == nil {
			return false
		}
		var p activities.BackupProgress
		if err := converter.GetDefaultDataConverter().FromPayloads(d.PendingActivities[0].HeartbeatDetails, &p); err != nil {
			return false
		}
		return p.Phase == "streaming" && p.Chunks >= 1
	}, 2*time.Minute, 100*time.Millisecond, "backup never started streaming")
	require.NotEmpty(t, toolProcesses(t, "mariabackup"), "mariabackup runs during the backup")

	require.NoError(t, s.client.CancelWorkflow(s.ctx, run.GetID(), run.GetRunID()))
	err = run.Get(s.ctx, nil)
	var ce *temporal.CanceledError
	require.True(t, errors.As(err, &ce), "workflow ends cancelled, got %v", err)

	// The agent waited for its activity to clean up before the workflow
	// closed: no tool process, no temp dir, no partial chunk.
	assert.Empty(t, toolProcesses(t, "mariabackup"), "mariabackup killed")
	tmp, _ := filepath.Glob(filepath.Join(os.TempDir(), "strata-backup-*"))
	assert.Empty(t, newDirs(before, tmp), "tool temp dir removed")
	objs, err := s.repo.Backend().List(s.ctx, "slow/")
	require.NoError(t, err)
	assert.Empty(t, objs, "partial upload removed")
	ms, err := s.repo.ListBackups(s.ctx, "slow")
	require.NoError(t, err)
	assert.Empty(t, ms, "no backup listed")
}

// toolProcesses lists pids of running processes whose command line starts
// with name and mentions this test's temp dirs' parent (so a stray process
// of another test run does not count).
func toolProcesses(t *testing.T, name string) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	require.NoError(t, err)
	var pids []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		args := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
		if filepath.Base(string(args[0])) == name && strings.Contains(string(b), "strata-backup-") {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// newDirs returns the entries of after that are not in before.
func newDirs(before, after []string) []string {
	seen := map[string]bool{}
	for _, d := range before {
		seen[d] = true
	}
	var out []string
	for _, d := range after {
		if !seen[d] {
			out = append(out, d)
		}
	}
	return out
}
