package repo_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/crypt/crypttest"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/memory"
)

func TestKeyLayout(t *testing.T) {
	assert.Equal(t, "db1/backups/b1/keys/", repo.BackupKeysPrefix("db1", "b1"))
	assert.Equal(t, "db1/binlogs/keys/", repo.BinlogKeysPrefix("db1"))
	assert.Equal(t, "db1/backups/b1/salt.json", repo.SaltKey("db1", "b1"))
	assert.Equal(t, "local:0123abcd.json", repo.KeyObjectName("local:0123abcd"))
	assert.Equal(t, "projects_p_keys_k.json", repo.KeyObjectName("projects/p/keys/k"))
	assert.Equal(t, "_...json", repo.KeyObjectName(".."))
	assert.NoError(t, storage.ValidateKey(repo.BackupKeysPrefix("db1", "b1")+repo.KeyObjectName("../../x")))
}

func TestKeySetWriteListUnwrap(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	r := repo.New(b)
	old, cur := crypttest.KEK(t), crypttest.KEK(t)
	dk, err := crypt.NewDataKey()
	require.NoError(t, err)
	id, wrapped, err := crypttest.Ring(t, old).Wrap(dk)
	require.NoError(t, err)

	ks := r.BackupKeys("db1", "b1")
	require.NoError(t, ks.Write(ctx, repo.KeyObject{KEKID: id, Wrapped: wrapped}))
	err = ks.Write(ctx, repo.KeyObject{KEKID: id, Wrapped: wrapped})
	assert.ErrorIs(t, err, storage.ErrExists, "a wrapping is written once")
	objs, err := ks.List(ctx)
	require.NoError(t, err)
	require.Len(t, objs, 1)
	assert.Equal(t, id, objs[0].KEKID)
	assert.False(t, objs[0].Created.IsZero())
	_, err = b.Stat(ctx, "db1/backups/b1/keys/"+repo.KeyObjectName(id))
	require.NoError(t, err, "stored under keys/<kek-id>.json")

	// An agent with the old key as an old key unwraps it.
	got, usedID, err := ks.Unwrap(ctx, crypttest.Ring(t, cur, old))
	require.NoError(t, err)
	assert.Equal(t, dk, got)
	assert.Equal(t, old.ID(), usedID)

	// An agent with only the new key cannot, and is told which ids exist.
	_, _, err = ks.Unwrap(ctx, crypttest.Ring(t, cur))
	require.ErrorIs(t, err, repo.ErrNoUsableKey)
	assert.Contains(t, err.Error(), `backup "b1" of instance "db1" is encrypted with key encryption key "`+old.ID()+`"`)
	assert.Contains(t, err.Error(), `this agent has "`+cur.ID()+`"`)
	assert.Contains(t, err.Error(), "encryption.old_key_files")
	assert.True(t, repo.IsKeyNotHeld(err), "the agent's keyring, not the backup")

	// Without any keyring.
	_, _, err = ks.Unwrap(ctx, nil)
	require.ErrorIs(t, err, repo.ErrNoUsableKey)
	assert.Contains(t, err.Error(), "this agent has no encryption key configured")
	assert.True(t, repo.IsKeyNotHeld(err))

	// Rotation: add the current wrapping, remove the old one.
	id2, wrapped2, err := crypttest.Ring(t, cur).Wrap(dk)
	require.NoError(t, err)
	require.NoError(t, ks.Write(ctx, repo.KeyObject{KEKID: id2, Wrapped: wrapped2}))
	require.NoError(t, ks.Delete(ctx, old.ID()))
	got, usedID, err = ks.Unwrap(ctx, crypttest.Ring(t, cur))
	require.NoError(t, err)
	assert.Equal(t, dk, got)
	assert.Equal(t, cur.ID(), usedID)

	// No wrapping at all.
	_, _, err = r.BackupKeys("db1", "none").Unwrap(ctx, crypttest.Ring(t, cur))
	require.ErrorIs(t, err, repo.ErrNoUsableKey)
	assert.Contains(t, err.Error(), "holds no wrapped data key")
	assert.False(t, repo.IsKeyNotHeld(err), "deleted key objects are the backup's loss")
}

func TestKeySetCorruptWrapping(t *testing.T) {
	ctx := context.Background()
	r := repo.New(memory.New())
	k := crypttest.KEK(t)
	ks := r.BackupKeys("db1", "b1")
	require.NoError(t, ks.Write(ctx, repo.KeyObject{KEKID: k.ID(), Wrapped: []byte("not a wrapped key, just bytes long enough")}))
	_, _, err := ks.Unwrap(ctx, crypttest.Ring(t, k))
	require.ErrorIs(t, err, repo.ErrNoUsableKey)
	assert.Contains(t, err.Error(), "does not open with it")
	assert.False(t, repo.IsKeyNotHeld(err), "a corrupt key object is the backup's")
}

func TestBinlogKeyRefs(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	k := crypttest.KEK(t)
	for _, ref := range []string{"r2", "r1"} {
		require.NoError(t, repo.BinlogKeys(b, "db1", ref).Write(ctx, repo.KeyObject{KEKID: k.ID(), Wrapped: []byte("w")}))
	}
	require.NoError(t, repo.BinlogKeys(b, "db2", "r9").Write(ctx, repo.KeyObject{KEKID: k.ID(), Wrapped: []byte("w")}))
	refs, err := repo.ListBinlogKeyRefs(ctx, b, "db1")
	require.NoError(t, err)
	assert.Equal(t, []string{"r1", "r2"}, refs)
	objs, err := repo.BinlogKeys(b, "db1", "r1").List(ctx)
	require.NoError(t, err)
	assert.Len(t, objs, 1)
}

func TestBackupSaltIsStable(t *testing.T) {
	ctx := context.Background()
	r := repo.New(memory.New())
	has, err := r.HasSalt(ctx, "db1", "b1")
	require.NoError(t, err)
	assert.False(t, has)
	s1, found, err := r.BackupSalt(ctx, "db1", "b1")
	require.NoError(t, err)
	assert.False(t, found)
	assert.Len(t, s1, 32)
	s2, found, err := r.BackupSalt(ctx, "db1", "b1")
	require.NoError(t, err)
	assert.True(t, found, "a retry reads the salt back")
	assert.Equal(t, s1, s2)
	s3, _, err := r.BackupSalt(ctx, "db1", "b2")
	require.NoError(t, err)
	assert.NotEqual(t, s1, s3, "each backup has its own salt")
	has, err = r.HasSalt(ctx, "db1", "b1")
	require.NoError(t, err)
	assert.True(t, has)
	// The salt is backup data: a partial upload without manifest.
	partial, err := r.ListPartial(ctx, "db1")
	require.NoError(t, err)
	assert.Equal(t, []string{"b1", "b2"}, partial)
}

func TestDeleteUnreferencedChunks(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	r := repo.New(b)
	for _, k := range []string{"chunks/aa.zst", "chunks/bb.zst", "chunks/cc.zst", "keys/local:x.json", "salt.json"} {
		put(t, b, "db1/backups/b1/"+k)
	}
	put(t, b, "db1/backups/b10/chunks/zz.zst") // another backup sharing the name prefix
	m := newManifest("db1", "b1", t0)
	m.Chunks = []manifest.Chunk{
		{Index: 0, Key: "chunks/bb.zst", SHA256: sumX},
		{Index: 1, Key: "chunks/aa.zst", SHA256: sumX},
	}
	n, size, err := r.DeleteUnreferencedChunks(ctx, m)
	require.NoError(t, err)
	assert.Equal(t, 1, n)
	assert.Equal(t, int64(1), size)
	objs, err := b.List(ctx, "db1/")
	require.NoError(t, err)
	var keys []string
	for _, o := range objs {
		keys = append(keys, o.Key)
	}
	assert.Equal(t, []string{"db1/backups/b1/chunks/aa.zst", "db1/backups/b1/chunks/bb.zst", "db1/backups/b1/keys/local:x.json",
		"db1/backups/b1/salt.json", "db1/backups/b10/chunks/zz.zst"}, keys)
}

// sumX is the sha256 of "x", the content of every object put() stores.
const sumX = "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881"
