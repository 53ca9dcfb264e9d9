package repo_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/crypt/crypttest"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage/memory"
)

func TestRotateKeySets(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	r := repo.New(b)
	old, cur := crypttest.KEK(t), crypttest.KEK(t)
	keys := map[string][]byte{}
	wrap := func(ks repo.KeySet) {
		dk, err := crypt.NewDataKey()
		require.NoError(t, err)
		id, w, err := crypttest.Ring(t, old).Wrap(dk)
		require.NoError(t, err)
		require.NoError(t, ks.Write(ctx, repo.KeyObject{KEKID: id, Wrapped: w}))
		keys[ks.Prefix] = dk
	}
	wrap(r.BackupKeys("db1", "b1"))
	wrap(r.BackupKeys("db1", "b2"))
	wrap(repo.BinlogKeys(b, "db1", "run1"))
	put(t, b, "db1/backups/plain/salt.json") // an unencrypted backup has no key set
	wrap(r.BackupKeys("db2", "other"))

	sets, err := r.EncryptedKeySets(ctx, "db1")
	require.NoError(t, err)
	var whats []string
	for _, ks := range sets {
		whats = append(whats, ks.What)
	}
	assert.Equal(t, []string{`backup "b1" of instance "db1"`, `backup "b2" of instance "db1"`, `binlog key "run1" of instance "db1"`}, whats)

	rotated := crypttest.Ring(t, cur, old)
	// A dry run changes nothing.
	for _, ks := range sets {
		rot, err := repo.RotateKeySet(ctx, ks, rotated, true, true)
		require.NoError(t, err)
		assert.Equal(t, cur.ID(), rot.Added)
		assert.Equal(t, []string{old.ID()}, rot.Removed)
		objs, err := ks.List(ctx)
		require.NoError(t, err)
		assert.Len(t, objs, 1)
	}
	// Rotate: a wrapping by the new key is added, the old one kept.
	for _, ks := range sets {
		rot, err := repo.RotateKeySet(ctx, ks, rotated, false, false)
		require.NoError(t, err)
		assert.Equal(t, []string{old.ID()}, rot.Had)
		assert.Equal(t, cur.ID(), rot.Added)
		assert.Equal(t, old.ID(), rot.From)
		assert.Empty(t, rot.Removed)
	}
	// Again: nothing to do; then remove the old wrappings.
	for _, ks := range sets {
		rot, err := repo.RotateKeySet(ctx, ks, rotated, false, false)
		require.NoError(t, err)
		assert.Empty(t, rot.Added)
		rot, err = repo.RotateKeySet(ctx, ks, rotated, true, false)
		require.NoError(t, err)
		assert.Equal(t, []string{old.ID()}, rot.Removed)
	}
	// Only the new key is needed now, and it opens the same data keys.
	for _, ks := range sets {
		dk, id, err := ks.Unwrap(ctx, crypttest.Ring(t, cur))
		require.NoError(t, err)
		assert.Equal(t, cur.ID(), id)
		assert.Equal(t, keys[ks.Prefix], dk)
		_, _, err = ks.Unwrap(ctx, crypttest.Ring(t, old))
		assert.ErrorIs(t, err, repo.ErrNoUsableKey)
	}
	// Another instance was left alone.
	objs, err := r.BackupKeys("db2", "other").List(ctx)
	require.NoError(t, err)
	require.Len(t, objs, 1)
	assert.Equal(t, old.ID(), objs[0].KEKID)

	// A key set that the keyring cannot open is reported, not changed.
	_, err = repo.RotateKeySet(ctx, r.BackupKeys("db2", "other"), crypttest.Ring(t, cur), true, false)
	require.ErrorIs(t, err, repo.ErrNoUsableKey)
	objs, err = r.BackupKeys("db2", "other").List(ctx)
	require.NoError(t, err)
	assert.Len(t, objs, 1)
}

func TestInstancesListsEveryInstanceWithData(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	r := repo.New(b)
	got, err := r.Instances(ctx)
	require.NoError(t, err)
	assert.Empty(t, got)
	put(t, b, "db2/backups/b1/manifest.json")
	put(t, b, "db1/backups/b1/chunks/0001.zst") // a partial upload counts
	put(t, b, "old/binlogs/index/000000000001.json")
	put(t, b, "old/binlogs/keys/run1/k.json")
	put(t, b, "stray.txt")            // not an instance
	put(t, b, "notes/readme.md")      // not an instance's layout
	put(t, b, "db3/backups/manifest") // directly under backups/: still db3's
	got, err = r.Instances(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{"db1", "db2", "db3", "old"}, got)
}
