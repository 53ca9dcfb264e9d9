package tests

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/restore"
	"github.com/strata-backup/strata/workflows"
)

// copyTree copies directory src to dst.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	out, err := exec.Command("cp", "-r", src, dst).CombinedOutput()
	require.NoError(t, err, "%s", out)
}

// editFile rewrites a file of the local repository as a writer of the
// bucket would.
func editFile(t *testing.T, path string, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	out := edit(string(b))
	require.NotEqual(t, string(b), out, "the edit changes %s", path)
	require.NoError(t, os.Chmod(path, 0o600))
	require.NoError(t, os.WriteFile(path, []byte(out), 0o600))
}

func (s *stack) tryRestore(instance, id, target string, allowUnencrypted bool) (workflows.RestoreResult, error) {
	var res workflows.RestoreResult
	_, err := s.run("restore/h1:"+target, workflows.RestoreWorkflowName, workflows.RestoreRequest{
		Instance: instance, BackupID: id, TargetDir: target, AllowUnencrypted: allowUnencrypted,
	}, &res)
	return res, err
}

// A writer of the bucket without the key encryption key plants an
// unencrypted backup into an encrypted instance, and alters an encrypted
// backup's manifest: restore refuses both with a typed error naming the
// object; the unencrypted one restores with the explicit override (old
// data), the altered one never; verify with the keys reports the alteration.
func TestEncryptedInstanceRefusesPlantedAndAlteredBackups(t *testing.T) {
	k1, _ := newKeyFile(t, t.TempDir(), "kek1")
	s := newStack(t, withTopLevel(t, "encryption:\n  key_file: "+k1+"\n"), markerInstances)
	root := s.cfg.Storage.Local.Root
	s.seeded(2 << 20)
	s.backupOf("plain", "p1", "full")
	e1 := s.backupOf("enc", "e1", "full")
	require.True(t, e1.Encrypted)
	m, err := s.repo.ReadManifest(s.ctx, "enc", "e1")
	require.NoError(t, err)
	require.NotEmpty(t, m.MAC, "the backup authenticates its manifest")

	// Planted: the unencrypted backup of another instance, moved in.
	copyTree(t, filepath.Join(root, "plain/backups/p1"), filepath.Join(root, "enc/backups/p1"))
	editFile(t, filepath.Join(root, "enc/backups/p1/manifest.json"), func(s string) string {
		return strings.Replace(s, `"instance": "plain"`, `"instance": "enc"`, 1)
	})
	target := filepath.Join(t.TempDir(), "planted")
	_, err = s.tryRestore("enc", "p1", target, false)
	requireAppError(t, err, activities.ErrUnencrypted, "enc/backups/p1/manifest.json")
	assert.Contains(t, err.Error(), "--allow-unencrypted")
	assert.NoDirExists(t, target)
	assert.NoDirExists(t, restore.StagingDir(target))
	// The override, through the CLI, for old data.
	out, err := s.cli("restore", "enc", "--backup", "p1", "--target-dir", target+"/", "--allow-unencrypted", "--wait")
	require.NoError(t, err, out)
	assert.FileExists(t, filepath.Join(target, "ibdata1"))

	// Altered: the encrypted backup's manifest, by one field.
	editFile(t, filepath.Join(root, "enc/backups/e1/manifest.json"), func(s string) string {
		return strings.Replace(s, `"server_version": "`, `"server_version": "5.5.5-`, 1)
	})
	for _, allow := range []bool{false, true} {
		target := filepath.Join(t.TempDir(), "altered")
		_, err = s.tryRestore("enc", "e1", target, allow)
		requireAppError(t, err, activities.ErrUnauthenticated, "enc/backups/e1/manifest.json")
		assert.NoDirExists(t, target)
	}
	// Nor does a backup build an incremental on it.
	var br workflows.BackupResult
	_, err = s.run("backup/enc/i1", workflows.BackupWorkflowName, workflows.BackupRequest{Instance: "enc", BackupID: "i1", Type: "incremental"}, &br)
	requireAppError(t, err, activities.ErrUnauthenticated, "enc/backups/e1/manifest.json")
	out, err = s.cli("verify", "enc", "--local")
	require.Error(t, err, "verify with the keys fails on the altered manifest:\n%s", out)
	assert.Contains(t, out, "enc/backups/e1/manifest.json")
	assert.Contains(t, out, "MAC")
}

// A cancelled restore removes its staging dir (it holds decrypted data);
// a target that is a file fails at once, not retried.
func TestRestoreCancelRemovesStagingAndFileTargetFails(t *testing.T) {
	g := newFakeGCS(t)
	s := newStack(t, withGCS(t, g, nil))
	s.seeded(8 << 20)
	s.backup("b1", "full")

	file := filepath.Join(t.TempDir(), "not-a-dir")
	require.NoError(t, os.WriteFile(file, []byte("keep"), 0o600))
	run, err := s.client.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: "restore/h1:" + file, TaskQueue: s.cfg.Temporal.TaskQueue},
		workflows.RestoreWorkflowName, workflows.RestoreRequest{Instance: "db1", BackupID: "b1", TargetDir: file})
	require.NoError(t, err)
	err = run.Get(s.ctx, nil)
	requireAppError(t, err, activities.ErrInvalidTarget, "regular file")
	assert.Equal(t, 1, s.activityAttempts(run.GetID())["RestoreBackup"], "not retried")
	b, _ := os.ReadFile(file)
	assert.Equal(t, "keep", string(b))

	g.downloadDelay.Store(int64(200 * time.Millisecond))
	target := filepath.Join(t.TempDir(), "cancelled")
	run, err = s.client.ExecuteWorkflow(s.ctx, client.StartWorkflowOptions{ID: "restore/h1:" + target, TaskQueue: s.cfg.Temporal.TaskQueue},
		workflows.RestoreWorkflowName, workflows.RestoreRequest{Instance: "db1", BackupID: "b1", TargetDir: target})
	require.NoError(t, err)
	var p activities.RestoreProgress
	s.waitHeartbeat(run, "RestoreBackup", &p, func() bool { return p.Phase == "downloading" && p.Chunks >= 1 })
	staging := restore.StagingDir(target)
	fi, err := os.Stat(staging)
	require.NoError(t, err, "the restore stages its data")
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm(), "the staging dir holds decrypted data: 0700")
	require.NoError(t, s.client.CancelWorkflow(s.ctx, run.GetID(), run.GetRunID()))
	err = run.Get(s.ctx, nil)
	var ce *temporal.CanceledError
	require.True(t, errors.As(err, &ce), "workflow ends cancelled, got %v", err)
	assert.NoDirExists(t, staging, "the cancelled restore removed its staging dir")
	assert.NoDirExists(t, target)
}
