package tests

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/demo"
	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/workflows"
)

// On MySQL without xtrabackup the agent clones the server into a scratch
// directory next to the datadir and streams it. A SIGKILL of the agent in
// the middle of the stream leaves the half-consumed clone behind; the
// retried backup, on the restarted agent, removes it, clones again and
// completes, and the backup restores the source's data.
func TestKilledAgentCloneBackupCompletesAfterRestart(t *testing.T) {
	g := newFakeGCS(t)
	s := newStack(t, withGCS(t, g, nil), withFlavor(flavor.MySQL))
	_, want := s.seeded(32 << 20)
	s.backup("f0", "full") // so that the catalog holds a backup all along

	s.agent.Stop()
	s.agent = nil
	agent := s.startAgentProcess()
	g.uploadDelay.Store(int64(250 * time.Millisecond))
	run, err := s.client.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: "backup/db1/k1", TaskQueue: s.cfg.Temporal.TaskQueue},
		workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "db1", BackupID: "k1"})
	require.NoError(t, err)
	var p activities.BackupProgress
	s.waitHeartbeat(run, "Backup", &p, func() bool { return p.Phase == "streaming" && p.Chunks >= 5 })
	clone := filepath.Join(filepath.Dir(s.src.Datadir), ".strata-clone-k1")
	require.DirExists(t, clone, "the agent streams the clone from its scratch directory")

	killAgent(t, agent)
	killedAt := time.Now()
	t.Logf("agent killed while streaming the clone: %d chunks, %d raw / %d stored bytes uploaded", p.Chunks, p.RawBytes, p.StoredBytes)
	partial, err := s.repo.ListPartial(s.ctx, "db1")
	require.NoError(t, err)
	assert.Equal(t, []string{"k1"}, partial, "the dead agent left a partial upload")
	assert.DirExists(t, clone, "SIGKILL leaves the half-streamed clone behind")
	s.requireCatalog("db1", "f0")

	s.noticeDeadAgent(run, "Backup")
	g.uploadDelay.Store(0)
	restartedAt := time.Now()
	s.startAgentProcess()
	var raw json.RawMessage
	require.NoError(t, run.Get(s.ctx, &raw), "backup after the agent's restart")
	t.Logf("agent down for %.1fs; backup finished %.1fs after its restart; attempts %v",
		restartedAt.Sub(killedAt).Seconds(), time.Since(restartedAt).Seconds(), s.activityAttempts(run.GetID()))
	assert.Greater(t, s.activityAttempts(run.GetID())["Backup"], 1, "the backup activity was retried")
	s.requireCatalog("db1", "f0", "k1")
	partial, err = s.repo.ListPartial(s.ctx, "db1")
	require.NoError(t, err)
	assert.Empty(t, partial)
	_, err = os.Stat(clone)
	assert.True(t, os.IsNotExist(err), "the retried backup removed the killed attempt's clone and its own")

	m, err := s.repo.ReadManifest(s.ctx, "db1", "k1")
	require.NoError(t, err)
	assert.Equal(t, "clone", m.Tool)
	assert.Equal(t, string(flavor.MySQL), m.ServerFlavor)
	rdb, _ := s.restoreAndOpen("k1")
	got, err := demo.Checksums(s.ctx, rdb, "demo")
	require.NoError(t, err)
	assert.Empty(t, demo.CompareChecksums(want, got))
}
