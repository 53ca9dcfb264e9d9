package tests

import (
	"context"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/demo"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/workers"
	"github.com/strata-backup/strata/workflows"
)

// An instance whose backups are slowed down by the agent's bandwidth limit,
// with a partial_grace that its short backup timeout makes valid: 5 × (5m
// + 15s) + 75s of backoff is less than 30m.
const leasedInstance extraInstance = `
  - id: leased
    host: h1
    connect: {address: "127.0.0.1:%[1]d", user: root, password_env: STRATA_E2E_PASSWORD}
    datadir: %[2]s
    backup: {chunk_size: 256KiB, timeout: 5m}
    retention: {keep_full: 1, partial_grace: 30m}
`

// A prune that runs while a slow backup is in flight deletes nothing of it,
// and the backup, once complete, verifies and restores. The agent's
// bandwidth limit slows the backup; for the prune, its chunk uploads are
// held (a stalled upload: no object is written meanwhile, as while a
// retried attempt looks up the chunks an earlier one stored), and the
// objects it stored are made older than partial_grace, as reused chunks
// are. Only the lease, which the heartbeat keeps renewing, keeps the prune
// away. Afterwards the backup's id is taken: another workflow asking for
// it is refused.
func TestPruneDuringSlowBackupDeletesNothingOfIt(t *testing.T) {
	gate := &chunkGate{}
	s := newStack(t, withTopLevel(t, "agent:\n  bandwidth_limit: 128KiB\n"), leasedInstance,
		stackOptionFunc(func(st *stackSetup) {
			st.openRepo = func(ctx context.Context, c *config.Config) (*repo.Repo, error) {
				r, err := workers.OpenRepo(ctx, c)
				if err != nil {
					return nil, err
				}
				gate.Backend = r.Backend()
				return repo.New(gate), nil
			}
		}))
	_, want := s.seeded(4 << 20)

	run, err := s.client.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: "backup/leased/b1", TaskQueue: s.cfg.Temporal.TaskQueue},
		workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "leased", BackupID: "b1"})
	require.NoError(t, err)

	// Wait until the backup holds its lease and has stored some chunks,
	// then hold its uploads until none is under way.
	require.Eventually(t, func() bool {
		n, _ := s.chunkObjects("leased", "b1")
		recs, err := s.repo.ReadLeases(s.ctx, "leased", "b1")
		return err == nil && len(recs) == 1 && n >= 2
	}, 3*time.Minute, 50*time.Millisecond, "backup never started uploading")
	gate.hold()
	require.Eventually(t, gate.stalled, time.Minute, 10*time.Millisecond, "the backup's uploads never stalled")
	recs, err := s.repo.ReadLeases(s.ctx, "leased", "b1")
	require.NoError(t, err)
	require.Len(t, recs, 1)
	assert.Equal(t, run.GetID(), recs[0].WorkflowID)
	assert.Equal(t, run.GetRunID(), recs[0].RunID)
	assert.Equal(t, "h1", recs[0].Host)
	assert.Equal(t, int32(1), recs[0].Attempt)

	// Age every object of the upload, the lease objects too, past
	// partial_grace.
	dir := filepath.Join(s.cfg.Storage.Local.Root, "leased", "backups", "b1")
	old := time.Now().Add(-2 * time.Hour)
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		return os.Chtimes(p, old, old)
	}))
	before := s.uploadObjects("leased", "b1")

	res := s.prune("leased", false)
	assert.Empty(t, res.Result.PartialRemoved, "the leased upload is not a removable partial upload")
	assert.Empty(t, res.Result.Deleted)
	after := s.uploadObjects("leased", "b1")
	assert.Equal(t, before, after, "the prune deleted objects of the running backup")
	d, err := s.client.DescribeWorkflowExecution(s.ctx, run.GetID(), run.GetRunID())
	require.NoError(t, err)
	require.Equal(t, enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, d.WorkflowExecutionInfo.Status, "the backup was in flight during the prune")
	gate.release()

	var sum workflows.BackupResult
	require.NoError(t, run.Get(s.ctx, &sum))
	assert.Greater(t, sum.Chunks, 2)
	m, err := s.repo.ReadManifest(s.ctx, "leased", "b1")
	require.NoError(t, err)
	assert.Equal(t, run.GetID(), m.WorkflowID)
	assert.Equal(t, run.GetRunID(), m.RunID)
	recs, err = s.repo.ReadLeases(s.ctx, "leased", "b1")
	require.NoError(t, err)
	assert.Empty(t, recs, "the lease is released once the manifest is written")

	v := s.verify("leased", "b1")
	require.True(t, v.OK, "%v", v.Report.Problems)
	rdb, _ := s.restoreAndOpenOf("leased", "b1")
	got, err := demo.Checksums(s.ctx, rdb, "demo")
	require.NoError(t, err)
	assert.Equal(t, want, got)

	// Once the backup's workflow is closed, another one with its id is
	// refused instead of reporting the old backup as its own.
	_, err = s.run("backup/leased/b1-again", workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "leased", BackupID: "b1"}, nil)
	requireAppError(t, err, "BackupIDTaken", `backup id "b1" of instance leased is already taken`)
}

// chunkGate is a backend whose chunk uploads can be held: hold makes every
// chunk Put that starts wait until release; uploads under way finish.
type chunkGate struct {
	storage.Backend
	mu      sync.Mutex
	gate    chan struct{} // nil: open
	waiting int           // chunk Puts held at the gate
	writing int           // chunk Puts under way
}

func (g *chunkGate) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if !strings.Contains(key, "/chunks/") {
		return g.Backend.Put(ctx, key, r, size)
	}
	g.mu.Lock()
	if ch := g.gate; ch != nil {
		g.waiting++
		g.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
		}
		g.mu.Lock()
		g.waiting--
	}
	g.writing++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.writing--
		g.mu.Unlock()
	}()
	return g.Backend.Put(ctx, key, r, size)
}

func (g *chunkGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.gate = make(chan struct{})
}

// stalled reports whether uploads are held and none is under way.
func (g *chunkGate) stalled() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.gate != nil && g.waiting > 0 && g.writing == 0
}

func (g *chunkGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	close(g.gate)
	g.gate = nil
}

// uploadObjects lists the keys of a backup's objects other than its lease
// (which renewals replace), sorted.
func (s *stack) uploadObjects(instance, id string) []string {
	s.t.Helper()
	objs, err := s.repo.Backend().List(s.ctx, repo.BackupPrefix(instance, id))
	require.NoError(s.t, err)
	var out []string
	for _, o := range objs {
		if !repo.IsLeaseKey(instance, id, o.Key) && !strings.HasSuffix(o.Key, "/manifest.json") {
			out = append(out, o.Key)
		}
	}
	sort.Strings(out)
	return out
}
