package repo_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/crypt/crypttest"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage/memory"
)

func TestUploadKeysUnencryptedResumeWithTheSameSalt(t *testing.T) {
	ctx := context.Background()
	r := repo.New(memory.New())
	k1, err := r.OpenUploadKeys(ctx, "db1", "b1", false, nil)
	require.NoError(t, err)
	assert.Nil(t, k1.Cipher)
	assert.Nil(t, k1.DataKey)
	assert.False(t, k1.Resumed)
	assert.Len(t, k1.NameKey, 32)
	k2, err := r.OpenUploadKeys(ctx, "db1", "b1", false, nil)
	require.NoError(t, err)
	assert.True(t, k2.Resumed)
	assert.Equal(t, k1.NameKey, k2.NameKey, "a retry names chunks as the first attempt did")
	k3, err := r.OpenUploadKeys(ctx, "db1", "b2", false, nil)
	require.NoError(t, err)
	assert.NotEqual(t, k1.NameKey, k3.NameKey, "each backup has its own salt")
}

func TestUploadKeysEncryptedResumeWithTheSameDataKey(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	r := repo.New(mem)
	ring := crypttest.Ring(t, crypttest.KEK(t))
	k1, err := r.OpenUploadKeys(ctx, "db1", "b1", true, ring)
	require.NoError(t, err)
	require.NotNil(t, k1.Cipher)
	require.Len(t, k1.DataKey, 32)
	assert.Equal(t, ring.IDs()[0], k1.KEKID)
	assert.False(t, k1.Resumed)

	k2, err := r.OpenUploadKeys(ctx, "db1", "b1", true, ring)
	require.NoError(t, err)
	assert.True(t, k2.Resumed)
	assert.Equal(t, k1.DataKey, k2.DataKey)
	assert.Equal(t, k1.NameKey, k2.NameKey)
	nk, err := crypt.ChunkNameKey(k1.DataKey)
	require.NoError(t, err)
	assert.Equal(t, nk, k1.NameKey, "chunk names are keyed by a key derived from the data key")
	assert.NotEqual(t, k1.DataKey, k1.NameKey)

	// The stored key object opens with the ring and yields the data key.
	dk, _, err := r.BackupKeys("db1", "b1").Unwrap(ctx, ring)
	require.NoError(t, err)
	assert.Equal(t, k1.DataKey, dk)

	_, err = r.OpenUploadKeys(ctx, "db1", "b1", true, nil)
	require.Error(t, err, "encryption without a keyring")
}

// A partial upload in the other mode, or with a data key the agent cannot
// unwrap, is discarded; the lease of the backup stays.
func TestUploadKeysDiscardWhatCannotBeResumed(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	r := repo.New(mem)
	ring := crypttest.Ring(t, crypttest.KEK(t))
	_, err := r.AcquireLease(ctx, "db1", "b1", repo.LeaseRecord{Host: "h1"}, time.Minute, time.Now())
	require.NoError(t, err)

	_, err = r.OpenUploadKeys(ctx, "db1", "b1", false, nil)
	require.NoError(t, err)
	put(t, mem, "db1/backups/b1/chunks/plain.zst")

	k, err := r.OpenUploadKeys(ctx, "db1", "b1", true, ring)
	require.NoError(t, err)
	assert.Contains(t, k.Discarded, "stored unencrypted")
	assert.False(t, k.Resumed)
	has, err := r.HasSalt(ctx, "db1", "b1")
	require.NoError(t, err)
	assert.False(t, has)
	_, err = mem.Stat(ctx, "db1/backups/b1/chunks/plain.zst")
	require.Error(t, err, "chunks of the other mode are gone")

	other := crypttest.Ring(t, crypttest.KEK(t))
	k2, err := r.OpenUploadKeys(ctx, "db1", "b1", true, other)
	require.NoError(t, err)
	assert.Contains(t, k2.Discarded, "wrapped by a key this agent does not have")
	assert.NotEqual(t, k.DataKey, k2.DataKey)

	k3, err := r.OpenUploadKeys(ctx, "db1", "b1", false, nil)
	require.NoError(t, err)
	assert.Contains(t, k3.Discarded, "stored encrypted")

	recs, err := r.ReadLeases(ctx, "db1", "b1")
	require.NoError(t, err)
	assert.Len(t, recs, 1, "the lease survives every discard")
}
