package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/demo"
	"github.com/strata-backup/strata/workflows"
)

// An instance of the same server with a retention policy: keep the newest
// full (and its chain); abandoned partial uploads go after 15 minutes (more
// than its backups can take: 5 × (2m + 15s) + 75s).
const retained extraInstance = `
  - id: ret
    host: h1
    connect: {address: "127.0.0.1:%[1]d", user: root, password_env: STRATA_E2E_PASSWORD}
    datadir: %[2]s
    backup: {timeout: 2m}
    retention: {keep_full: 1, partial_grace: 15m}
`

func (s *stack) backupOf(instance, id, typ string) workflows.BackupResult {
	s.t.Helper()
	var res workflows.BackupResult
	_, err := s.run("backup/"+instance+"/"+id, workflows.BackupWorkflowName, workflows.BackupRequest{Instance: instance, BackupID: id, Type: typ}, &res)
	require.NoError(s.t, err, "backup %s", id)
	return res
}

func (s *stack) verify(instance, id string) workflows.VerifyResult {
	s.t.Helper()
	var res workflows.VerifyResult
	_, err := s.run("verify/"+instance+"/"+id+time.Now().Format("150405.000000"), workflows.VerifyWorkflowName,
		workflows.VerifyRequest{Instance: instance, BackupID: id}, &res)
	require.NoError(s.t, err)
	return res
}

func (s *stack) prune(instance string, dryRun bool) workflows.RetentionResult {
	s.t.Helper()
	var res workflows.RetentionResult
	_, err := s.run("retention/"+instance+time.Now().Format("150405.000000"), workflows.RetentionWorkflowName,
		workflows.RetentionRequest{Instance: instance, DryRun: dryRun}, &res)
	require.NoError(s.t, err)
	return res
}

func (s *stack) backupIDs(instance string) []string {
	s.t.Helper()
	ms, err := s.repo.ListBackups(s.ctx, instance)
	require.NoError(s.t, err)
	var ids []string
	for _, m := range ms {
		ids = append(ids, m.BackupID)
	}
	return ids
}

func TestVerifyDetectsCorruptionAndPruneKeepsChainsRestorable(t *testing.T) {
	s := newStack(t, retained)
	db := s.numbered()
	require.NoError(t, demo.Seed(s.ctx, db, "demo", 4<<20, nil))

	insertRows(t, db, 1, 10)
	s.backupOf("ret", "f1", "full")
	insertRows(t, db, 11, 20)
	s.backupOf("ret", "i1", "incremental")
	insertRows(t, db, 21, 30)
	s.backupOf("ret", "f2", "full")
	insertRows(t, db, 31, 40)
	s.backupOf("ret", "i2", "incremental")

	// A good repository verifies clean.
	res := s.verify("ret", "")
	require.True(t, res.OK, "%v", res.Report.Problems)
	assert.Len(t, res.Report.Checked, 4)

	root := s.cfg.Storage.Local.Root
	chunk := func(id string, i int) string {
		m, err := s.repo.ReadManifest(s.ctx, "ret", id)
		require.NoError(t, err)
		return filepath.Join(root, "ret", "backups", id, m.Chunks[i].Key)
	}

	// A flipped byte is named by backup and chunk; a restore of that backup
	// fails before it touches the target datadir.
	p := chunk("f1", 1)
	orig, err := os.ReadFile(p)
	require.NoError(t, err)
	bad := bytes.Clone(orig)
	bad[len(bad)/2] ^= 0xff
	require.NoError(t, os.WriteFile(p, bad, 0o600))
	res = s.verify("ret", "i1") // verifying an incremental checks its full too
	require.False(t, res.OK)
	require.Len(t, res.Report.Problems, 1)
	assert.Equal(t, "f1", res.Report.Problems[0].BackupID)
	assert.Equal(t, 1, res.Report.Problems[0].Chunk)
	assert.Contains(t, res.Report.Problems[0].String(), "sha256")

	target := filepath.Join(t.TempDir(), "never")
	var rr workflows.RestoreResult
	_, err = s.run("restore/h1:"+target, workflows.RestoreWorkflowName, workflows.RestoreRequest{Instance: "ret", BackupID: "i1", TargetDir: target}, &rr)
	requireAppError(t, err, "CorruptBackup", "f1")
	_, statErr := os.Stat(target)
	assert.True(t, os.IsNotExist(statErr), "target datadir untouched")
	entries, _ := os.ReadDir(filepath.Dir(target))
	assert.Empty(t, entries, "no staging dir left behind")
	require.NoError(t, os.WriteFile(p, orig, 0o600))

	// A deleted chunk is named too.
	p = chunk("i2", 0)
	orig, err = os.ReadFile(p)
	require.NoError(t, err)
	require.NoError(t, os.Remove(p))
	res = s.verify("ret", "")
	require.False(t, res.OK)
	require.Len(t, res.Report.Problems, 1)
	assert.Equal(t, "i2", res.Report.Problems[0].BackupID)
	assert.Equal(t, 0, res.Report.Problems[0].Chunk)
	assert.True(t, strings.Contains(res.Report.Problems[0].String(), "missing"), res.Report.Problems[0].String())
	require.NoError(t, os.WriteFile(p, orig, 0o600))
	require.True(t, s.verify("ret", "").OK)

	// An abandoned partial upload (chunks, no manifest).
	require.NoError(t, s.repo.Backend().Put(s.ctx, "ret/backups/zombie/chunks/00000000.zst", strings.NewReader("x"), 1))

	// Dry run: the plan deletes the old chain, children first, and nothing goes.
	dry := s.prune("ret", true)
	var would []string
	for _, a := range dry.Result.Deleted {
		would = append(would, a.BackupID)
	}
	assert.Equal(t, []string{"i1", "f1"}, would)
	assert.Equal(t, []string{"f1", "i1", "f2", "i2"}, s.backupIDs("ret"))
	partial, err := s.repo.ListPartial(s.ctx, "ret")
	require.NoError(t, err)
	assert.Equal(t, []string{"zombie"}, partial)

	// The real prune, after the grace period of the partial upload.
	old := time.Now().Add(-time.Hour)
	require.NoError(t, os.Chtimes(filepath.Join(root, "ret", "backups", "zombie", "chunks", "00000000.zst"), old, old))
	done := s.prune("ret", false)
	assert.Len(t, done.Result.Deleted, 2)
	assert.Equal(t, []string{"zombie"}, done.Result.PartialRemoved)
	assert.Equal(t, []string{"f2", "i2"}, s.backupIDs("ret"))
	objs, err := s.repo.Backend().List(s.ctx, "ret/backups/f1/")
	require.NoError(t, err)
	assert.Empty(t, objs, "chunks of deleted backups are gone")

	// Everything left is verify-clean and restorable.
	require.True(t, s.verify("ret", "").OK)
	for id, rows := range map[string]int{"f2": 30, "i2": 40} {
		rdb, _ := s.restoreAndOpenOf("ret", id)
		n, hi := countRows(t, rdb)
		assert.Equal(t, rows, n, id)
		assert.Equal(t, rows, hi, id)
	}
}
