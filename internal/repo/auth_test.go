package repo_test

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/crypt/crypttest"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/memory"
)

// sealedBackup stores an encrypted backup's wrapped data key and its sealed
// manifest, as a backup does.
func sealedBackup(t *testing.T, r *repo.Repo, ring *crypt.Keyring, id string) *manifest.Manifest {
	t.Helper()
	ctx := context.Background()
	dk, err := crypt.NewDataKey()
	require.NoError(t, err)
	kekID, wrapped, err := ring.Wrap(dk)
	require.NoError(t, err)
	require.NoError(t, r.BackupKeys("db1", id).Write(ctx, repo.KeyObject{KEKID: kekID, Wrapped: wrapped}))
	m := newManifest("db1", id, t0)
	m.Encrypted, m.EncryptionKeyID = true, kekID
	m.BinlogFile, m.BinlogPos, m.GTIDSet = "mysql-bin.000003", 1234, "0-1-77"
	// Durations that are not whole milliseconds must survive the round trip.
	m.Duration = manifest.Duration(3*time.Hour + 123456789*time.Nanosecond)
	m.LockDuration = manifest.Duration(1234567 * time.Nanosecond)
	m.Chunks = []manifest.Chunk{{Index: 0, Key: "chunks/a", RawSize: 10, StoredSize: 12, SHA256: strings.Repeat("a", 64)}}
	m.RawSize, m.StoredSize, m.UploadedBytes, m.ReusedBytes = 10, 12, 12, 0
	require.NoError(t, repo.SealManifest(m, dk))
	require.NoError(t, r.WriteManifest(ctx, m))
	return m
}

func rewrite(t *testing.T, b storage.Backend, key string, edit func(string) string) {
	t.Helper()
	ctx := context.Background()
	rc, err := b.Get(ctx, key)
	require.NoError(t, err)
	data, err := io.ReadAll(rc)
	rc.Close()
	require.NoError(t, err)
	out := edit(string(data))
	require.NotEqual(t, string(data), out, "the edit must change the object")
	require.NoError(t, b.Delete(ctx, key))
	require.NoError(t, b.Put(ctx, key, bytes.NewReader([]byte(out)), int64(len(out))))
}

func TestManifestMAC(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	r := repo.New(b)
	kek := crypttest.KEK(t)
	ring := crypttest.Ring(t, kek)
	sealedBackup(t, r, ring, "b1")

	m, err := r.ReadManifest(ctx, "db1", "b1")
	require.NoError(t, err)
	require.NotEmpty(t, m.MAC)
	_, err = r.AuthenticateManifest(ctx, m, ring)
	require.NoError(t, err, "a manifest as the backup wrote it is authentic")

	// A key rotation re-wraps the data key: the manifest still authenticates
	// with a ring that has only the new key.
	kek2 := crypttest.KEK(t)
	_, err = repo.RotateKeySet(ctx, r.BackupKeys("db1", "b1"), crypttest.Ring(t, kek2, kek), true, false)
	require.NoError(t, err)
	_, err = r.AuthenticateManifest(ctx, m, crypttest.Ring(t, kek2))
	require.NoError(t, err, "authentic after rotation, without rewriting the manifest")

	// An altered recovery point: refused, naming the object.
	key := repo.ManifestKey("db1", "b1")
	rewrite(t, b, key, func(s string) string { return strings.Replace(s, `"binlog_pos": 1234`, `"binlog_pos": 4`, 1) })
	m, err = r.ReadManifest(ctx, "db1", "b1")
	require.NoError(t, err)
	_, err = r.AuthenticateManifest(ctx, m, crypttest.Ring(t, kek2))
	require.ErrorIs(t, err, repo.ErrManifestNotAuthentic)
	assert.Contains(t, err.Error(), key)

	// A stripped MAC.
	m.MAC = ""
	require.ErrorIs(t, repo.CheckManifestMAC(m, mustKey(t, r, m, crypttest.Ring(t, kek2))), repo.ErrManifestNoMAC)
}

func mustKey(t *testing.T, r *repo.Repo, m *manifest.Manifest, ring *crypt.Keyring) []byte {
	dk, _, err := r.BackupKeys(m.Instance, m.BackupID).Unwrap(context.Background(), ring)
	require.NoError(t, err)
	return dk
}

// A bucket writer without the key encryption key plants a whole encrypted
// backup: its data key is wrapped by a key of its own, which the agent's
// keyring does not hold, and a MAC made with a data key of its choice.
func TestPlantedManifestRefused(t *testing.T) {
	ctx := context.Background()
	r := repo.New(memory.New())
	ring := crypttest.Ring(t, crypttest.KEK(t))
	attacker := crypttest.Ring(t, crypttest.KEK(t))
	m := sealedBackup(t, r, attacker, "planted")
	_, err := r.AuthenticateManifest(ctx, m, ring)
	require.ErrorIs(t, err, repo.ErrNoUsableKey)

	// Copying a genuine backup's key objects beside a planted manifest does
	// not help: the MAC needs the data key itself.
	genuine := sealedBackup(t, r, ring, "genuine")
	objs, err := r.BackupKeys("db1", "genuine").List(ctx)
	require.NoError(t, err)
	forged := *genuine
	forged.BackupID = "forged"
	forged.GTIDSet = "0-1-99999"
	require.NoError(t, repo.SealManifest(&forged, bytes.Repeat([]byte{7}, crypt.KeySize)))
	for _, o := range objs {
		require.NoError(t, r.BackupKeys("db1", "forged").Write(ctx, o))
	}
	require.NoError(t, r.WriteManifest(ctx, &forged))
	got, err := r.ReadManifest(ctx, "db1", "forged")
	require.NoError(t, err)
	_, err = r.AuthenticateManifest(ctx, got, ring)
	require.ErrorIs(t, err, repo.ErrManifestNotAuthentic)
	assert.Contains(t, err.Error(), "db1/backups/forged/manifest.json")
}
