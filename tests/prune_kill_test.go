package tests

import (
	"io"
	"os/exec"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/strata-backup/strata/internal/demo"
	"github.com/strata-backup/strata/workflows"
)

// startWorkerProcess runs `strata worker` as a separate process (so a test
// can kill -9 it) with the stack's config.
func (s *stack) startWorkerProcess() *exec.Cmd {
	s.t.Helper()
	cmd := exec.Command(strataBinary(s.t), "worker", "--config", s.cfgPath, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	require.NoError(s.t, cmd.Start())
	s.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// A worker killed with SIGKILL in the middle of a prune, between a backup's
// manifest and its chunks, leaves a repository in which every listed backup
// verifies and restores; once restarted, the prune completes.
func TestKilledWorkerMidPruneLeavesListedBackupsRestorable(t *testing.T) {
	g := newFakeGCS(t)
	s := newStack(t, withGCS(t, g, nil), retained) // ret: keep_full 1
	db := s.numbered()
	require.NoError(t, demo.Seed(s.ctx, db, "demo", 2<<20, nil))
	rows := map[string]int{}
	for i, b := range []struct{ id, typ string }{
		{"b1", "full"}, {"b2", "incremental"}, {"b3", "full"}, {"b4", "incremental"}, {"b5", "full"},
	} {
		insertRows(t, db, 10*i+1, 10*i+10)
		s.backupOf("ret", b.id, b.typ)
		rows[b.id] = 10*i + 10
	}

	// The worker becomes a process that can be killed. The prune deletes
	// b2, then b1 (manifest, then chunks), b4, b3; the fake GCS holds the
	// first delete of b1's chunks, so the kill lands exactly there.
	s.worker.Stop()
	worker := s.startWorkerProcess()
	block := "ret/backups/b1/chunks/"
	g.blockDeletes.Store(&block)
	run, err := s.client.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: "retention/ret/killed", TaskQueue: s.cfg.Temporal.TaskQueue},
		workflows.RetentionWorkflowName, workflows.RetentionRequest{Instance: "ret"})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return g.blockedDeletes.Load() > 0 }, 3*time.Minute, 50*time.Millisecond,
		"the prune never reached the chunks of b1")
	killAgent(t, worker)

	assert.Equal(t, []string{"b3", "b4", "b5"}, s.backupIDs("ret"), "b2 is gone, b1's manifest too")
	partial, err := s.repo.ListPartial(s.ctx, "ret")
	require.NoError(t, err)
	assert.Equal(t, []string{"b1"}, partial, "b1's chunks are left, unlisted")

	// Restart. The prune is retried once Temporal notices the dead worker,
	// and held again at b1's chunks while the listed backups are checked.
	s.startWorkerProcess()
	s.requireCatalog("ret", "b3", "b4", "b5")
	for _, id := range []string{"b3", "b4", "b5"} {
		rdb, _ := s.restoreAndOpenOf("ret", id)
		n, hi := countRows(t, rdb)
		assert.Equal(t, rows[id], n, id)
		assert.Equal(t, rows[id], hi, id)
	}

	g.blockDeletes.Store(nil)
	var res workflows.RetentionResult
	require.NoError(t, run.Get(s.ctx, &res), "prune after the worker's restart")
	assert.Greater(t, s.activityAttempts(run.GetID())["ApplyRetention"], 1, "the prune was retried after the kill")
	var deleted []string
	for _, a := range res.Result.Deleted {
		deleted = append(deleted, a.BackupID)
	}
	assert.Equal(t, []string{"b2", "b1", "b4", "b3"}, deleted)
	s.requireCatalog("ret", "b5")
	partial, err = s.repo.ListPartial(s.ctx, "ret")
	require.NoError(t, err)
	assert.Empty(t, partial)
	for _, id := range []string{"b1", "b2", "b3", "b4"} {
		objs, err := s.repo.Backend().List(s.ctx, "ret/backups/"+id+"/")
		require.NoError(t, err)
		assert.Empty(t, objs, "nothing of %s is left", id)
	}
}
