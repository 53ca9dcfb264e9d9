package repo_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage/memory"
)

func TestCheckUploadedNamesTheMissingObject(t *testing.T) {
	ctx := context.Background()
	for _, encrypted := range []bool{false, true} {
		mem := memory.New()
		r := repo.New(mem)
		m := newManifest("db1", "b1", t0)
		m.Chunks = []manifest.Chunk{
			{Index: 0, Key: "chunks/aa.zst", RawSize: 1, StoredSize: 1, SHA256: "00"},
			{Index: 1, Key: "chunks/bb.zst", RawSize: 1, StoredSize: 1, SHA256: "00"},
		}
		keyObj := repo.SaltKey("db1", "b1")
		if encrypted {
			m.Encrypted, m.EncryptionKeyID = true, "local:1234"
			keyObj = repo.BackupKeysPrefix("db1", "b1") + repo.KeyObjectName("local:1234")
		}
		all := []string{keyObj, "db1/backups/b1/chunks/aa.zst", "db1/backups/b1/chunks/bb.zst"}
		for _, k := range all {
			put(t, mem, k)
		}
		require.NoError(t, r.CheckUploaded(ctx, m), "encrypted=%v", encrypted)
		for _, gone := range all {
			require.NoError(t, mem.Delete(ctx, gone))
			err := r.CheckUploaded(ctx, m)
			require.ErrorIs(t, err, repo.ErrIncompleteUpload, gone)
			assert.Contains(t, err.Error(), gone+" is gone")
			put(t, mem, gone)
		}
	}
}

func TestDiscardUploadKeepsTheLease(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	r := repo.New(mem)
	_, err := r.AcquireLease(ctx, "db1", "b1", repo.LeaseRecord{Host: "h1"}, 60e9, t0)
	require.NoError(t, err)
	put(t, mem, "db1/backups/b1/chunks/aa.zst")
	put(t, mem, "db1/backups/b1/salt.json")
	put(t, mem, "db1/backups/b1/keys/k.json")
	require.NoError(t, r.DiscardUpload(ctx, "db1", "b1"))
	objs, err := mem.List(ctx, "db1/backups/b1/")
	require.NoError(t, err)
	require.Len(t, objs, 1)
	assert.True(t, repo.IsLeaseKey("db1", "b1", objs[0].Key), objs[0].Key)
}
