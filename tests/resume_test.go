package tests

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/demo"
	"github.com/strata-backup/strata/internal/mysqlx"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/testdb"
	"github.com/strata-backup/strata/internal/verify"
)

// Two instances on the source server with small chunks, so that a backup
// has many: "res" is encrypted (the config sets a key), "resplain" not.
const resumeInstances extraInstance = `
  - id: res
    host: h1
    connect: {address: "127.0.0.1:%[1]d", user: root, password_env: STRATA_E2E_PASSWORD}
    datadir: %[2]s
    backup: {chunk_size: 256KiB}
  - id: resplain
    host: h1
    connect: {address: "127.0.0.1:%[1]d", user: root, password_env: STRATA_E2E_PASSWORD}
    datadir: %[2]s
    backup: {chunk_size: 256KiB}
    encryption: {enabled: false}
`

// errKilled stands for an agent that dies in the middle of an activity: its
// context ends, but neither the workflow nor the worker asked for it, so
// the activity must leave its work for the retry.
var errKilled = errors.New("agent killed (simulated)")

// runActivity runs one attempt of an agent activity in a test activity
// environment. fn returns the activity method to run; kill, when it calls
// it, ends the attempt's context as an agent kill would.
func runActivity(t *testing.T, arg any, fn func(kill func()) any) (converter.EncodedValue, error) {
	t.Helper()
	ctx, stop := context.WithCancelCause(context.Background())
	defer stop(nil)
	var ts testsuite.WorkflowTestSuite
	env := ts.NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{BackgroundActivityContext: ctx})
	act := fn(func() { stop(errKilled) })
	env.RegisterActivity(act)
	return env.ExecuteActivity(act, arg)
}

// killAfter is a repository backend that kills the activity (see
// runActivity) once n chunk objects have been written (puts) or read.
type killAfter struct {
	storage.Backend
	n     int64
	puts  bool
	count atomic.Int64
	kill  func()
}

func (k *killAfter) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	err := k.Backend.Put(ctx, key, r, size)
	if k.puts && err == nil && strings.Contains(key, "/chunks/") && k.count.Add(1) == k.n {
		k.kill()
	}
	return err
}

func (k *killAfter) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := k.Backend.Get(ctx, key)
	if !k.puts && err == nil && strings.Contains(key, "/chunks/") && k.count.Add(1) == k.n {
		defer k.kill() // this chunk is read; the next ones are not
	}
	return rc, err
}

// agentKilledAfter returns a copy of the stack's agent whose repository
// kills it after n chunk writes (puts) or reads.
func (s *stack) agentKilledAfter(n int64, puts bool, kill func()) *activities.Agent {
	ag := *s.agent.Activities
	ag.Repo = repo.New(&killAfter{Backend: s.repo.Backend(), n: n, puts: puts, kill: kill})
	return &ag
}

// chunkObjects counts the objects under a backup's chunks/ and their bytes.
func (s *stack) chunkObjects(instance, id string) (n int, size int64) {
	s.t.Helper()
	objs, err := s.repo.Backend().List(s.ctx, repo.BackupPrefix(instance, id)+"chunks/")
	require.NoError(s.t, err)
	for _, o := range objs {
		size += o.Size
	}
	return len(objs), size
}

func TestRetriedBackupAndRestoreResumeWhereTheyStopped(t *testing.T) {
	k1, _ := newKeyFile(t, t.TempDir(), "kek")
	s := newStack(t, withTopLevel(t, "encryption:\n  key_file: "+k1+"\n"), resumeInstances)
	_, want := s.seeded(32 << 20)
	// No flushCheckpoint: the server is still flushing the seed, so each run
	// of mariabackup streams a redo log of another length first, and pages
	// may change between the attempts. Content-defined chunks find the
	// identical parts anyway.
	ag := s.agent.Activities

	for _, instance := range []string{"res", "resplain"} {
		t.Run(instance, func(t *testing.T) {
			p := activities.BackupParams{Instance: instance, BackupID: "r1", Type: "full"}
			// Attempt 1 is killed after 300 chunks (of about 600).
			_, err := runActivity(t, p, func(kill func()) any { return s.agentKilledAfter(300, true, kill).Backup })
			require.Error(t, err)
			left, leftBytes := s.chunkObjects(instance, "r1")
			require.GreaterOrEqual(t, left, 300, "the killed attempt's chunks are kept for the retry")
			_, err = s.repo.ReadManifest(s.ctx, instance, "r1")
			require.ErrorIs(t, err, repo.ErrBackupNotFound, "no manifest: not a backup yet")
			partial, err := s.repo.ListPartial(s.ctx, instance)
			require.NoError(t, err)
			assert.Equal(t, []string{"r1"}, partial)

			// Attempt 2 (the retry) streams everything again but stores only
			// what the first did not.
			val, err := runActivity(t, p, func(func()) any { return ag.Backup })
			require.NoError(t, err)
			var sum activities.BackupSummary
			require.NoError(t, val.Get(&sum))
			t.Logf("%s: killed attempt stored %d chunks (%d bytes); retry: %d chunks, %d bytes stored = %d uploaded + %d reused "+
				"(%.0f%% of the backup not uploaded again; %.0f%% of what the killed attempt stored reused)",
				instance, left, leftBytes, sum.Chunks, sum.StoredSize, sum.UploadedBytes, sum.ReusedBytes,
				100*float64(sum.ReusedBytes)/float64(sum.StoredSize), 100*float64(sum.ReusedBytes)/float64(leftBytes))
			assert.Equal(t, instance == "res", sum.Encrypted)
			assert.Equal(t, sum.StoredSize, sum.UploadedBytes+sum.ReusedBytes)
			assert.Positive(t, sum.ReusedBytes)
			assert.Less(t, sum.UploadedBytes, sum.StoredSize*9/10, "the retry uploads measurably less than the whole backup")
			assert.Greater(t, sum.ReusedBytes, leftBytes/2, "most of what the killed attempt stored is reused")

			m, err := s.repo.ReadManifest(s.ctx, instance, "r1")
			require.NoError(t, err)
			assert.Equal(t, sum.UploadedBytes, m.UploadedBytes)
			assert.Equal(t, sum.ReusedBytes, m.ReusedBytes)
			n, size := s.chunkObjects(instance, "r1")
			assert.Equal(t, len(m.Chunks), n, "chunks the manifest does not reference are removed")
			assert.Equal(t, m.StoredSize, size)
			rep, err := verify.Backups(s.ctx, s.repo, instance, []string{"r1"}, 2, nil)
			require.NoError(t, err)
			assert.True(t, rep.OK(), "%v", rep.Problems)
			// Asking again returns the manifest: nothing is uploaded.
			val, err = runActivity(t, p, func(func()) any { return ag.Backup })
			require.NoError(t, err)
			var again activities.BackupSummary
			require.NoError(t, val.Get(&again))
			assert.Equal(t, sum, again)

			// A restore killed in the middle of its download... (from the
			// repository seen as a remote one: killAfter hides that it is
			// local files, of which the restore keeps no copies — see
			// pipeline.TestChunkCacheKeepsNoCopiesOfLocalFiles)
			target := filepath.Join(t.TempDir(), "restored")
			rp := activities.RestoreParams{Instance: instance, BackupID: "r1", Chain: []string{"r1"}, TargetDir: target}
			_, err = runActivity(t, rp, func(kill func()) any { return s.agentKilledAfter(200, false, kill).RestoreBackup })
			require.Error(t, err)
			cache := filepath.Join(filepath.Dir(target), ".strata-restore-restored", "cache")
			cached := 0
			require.NoError(t, filepath.Walk(cache, func(_ string, fi os.FileInfo, err error) error {
				if err == nil && !fi.IsDir() && !strings.HasPrefix(fi.Name(), ".part-") {
					cached++
				}
				return err
			}))
			require.GreaterOrEqual(t, cached, 150, "downloaded chunks are kept in the staging dir's cache")

			// ... is retried and downloads only what it did not have.
			val, err = runActivity(t, rp, func(kill func()) any { return s.agentKilledAfter(0, false, kill).RestoreBackup })
			require.NoError(t, err)
			var st activities.RestoreStats
			require.NoError(t, val.Get(&st))
			t.Logf("%s: restore retry: %d bytes downloaded, %d from the cache of the killed attempt (%d cached chunks)",
				instance, st.DownloadedBytes, st.CachedBytes, cached)
			assert.Equal(t, m.StoredSize, st.DownloadedBytes+st.CachedBytes)
			assert.Positive(t, st.CachedBytes)
			assert.Less(t, st.DownloadedBytes, m.StoredSize/2, "the retry downloads measurably less than the whole backup")
			_, err = os.Stat(filepath.Dir(cache))
			assert.True(t, os.IsNotExist(err), "the staging dir and its cache are removed")

			// The restored datadir is the source's data.
			port, err := testdb.FreePort()
			require.NoError(t, err)
			val, err = runActivity(t, activities.StartServerParams{Instance: instance, TargetDir: target, Port: port},
				func(func()) any { return ag.StartServer })
			require.NoError(t, err)
			var srv activities.StartServerResult
			require.NoError(t, val.Get(&srv))
			t.Cleanup(func() { stopPID(srv.PID) })
			rdb, err := mysqlx.Open(s.ctx, mysqlx.Endpoint{Address: fmt.Sprintf("127.0.0.1:%d", port), User: "root", Password: s.src.Password})
			require.NoError(t, err)
			defer rdb.Close()
			got, err := demo.Checksums(s.ctx, rdb, "demo")
			require.NoError(t, err)
			assert.Empty(t, demo.CompareChecksums(want, got))
		})
	}
}
