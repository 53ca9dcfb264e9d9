package verify_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/crypt/crypttest"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage/memory"
	"github.com/strata-backup/strata/internal/verify"
)

func authProblems(rep *verify.Report) []string {
	var out []string
	for _, p := range rep.Problems {
		if strings.Contains(p.What, "MAC") || strings.Contains(p.What, "authenticated") {
			out = append(out, p.Key+": "+p.What)
		}
	}
	return out
}

// With the keys, verify refuses a manifest planted or altered without them.
func TestVerifyAuthenticatesManifestsWithKeys(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	r := repo.New(b)
	ring := crypttest.Ring(t, crypttest.KEK(t))
	put := func(id string, dk []byte, ring *crypt.Keyring, seal bool, edit func(*manifest.Manifest)) {
		kekID, wrapped, err := ring.Wrap(dk)
		require.NoError(t, err)
		require.NoError(t, r.BackupKeys("db1", id).Write(ctx, repo.KeyObject{KEKID: kekID, Wrapped: wrapped}))
		m := &manifest.Manifest{FormatVersion: manifest.FormatVersion, BackupID: id, Instance: "db1", Type: manifest.TypeFull,
			StartTime: time.Unix(0, 0).UTC(), Compression: "none", Encrypted: true, EncryptionKeyID: kekID, GTIDSet: "0-1-5",
			RawSize: 10, StoredSize: 10, ChunkSize: 10,
			Chunks: []manifest.Chunk{{Index: 0, Key: "chunks/0", RawSize: 10, StoredSize: 10, SHA256: strings.Repeat("a", 64)}}}
		if seal {
			require.NoError(t, repo.SealManifest(m, dk))
		}
		if edit != nil {
			edit(m)
		}
		require.NoError(t, r.WriteManifest(ctx, m))
	}
	dk := func() []byte { k, err := crypt.NewDataKey(); require.NoError(t, err); return k }
	put("good", dk(), ring, true, nil)
	put("altered", dk(), ring, true, func(m *manifest.Manifest) { m.GTIDSet = "0-1-999" })
	put("nomac", dk(), ring, false, nil)
	put("planted", dk(), crypttest.Ring(t, crypttest.KEK(t)), true, nil)
	put("badmac", dk(), ring, false, func(m *manifest.Manifest) {
		require.NoError(t, repo.SealManifest(m, bytes.Repeat([]byte{1}, crypt.KeySize)))
	})

	rep, err := verify.Backups(ctx, r, "db1", nil, 1, nil)
	require.NoError(t, err)
	assert.Empty(t, authProblems(rep), "without keys, manifests are not authenticated")

	rep, err = verify.Backups(ctx, r, "db1", nil, 1, nil, verify.WithKeys(ring))
	require.NoError(t, err)
	got := authProblems(rep)
	require.Len(t, got, 4, "%v", got)
	for i, id := range []string{"altered", "badmac", "nomac", "planted"} {
		assert.True(t, strings.HasPrefix(got[i], "db1/backups/"+id+"/manifest.json: "), got[i])
	}
}

// On an instance with encryption enabled, an unencrypted backup is a problem
// (a restore refuses it), unless unencrypted old data is allowed.
func TestVerifyRequireEncryptedReportsPlaintextBackups(t *testing.T) {
	ctx := context.Background()
	r := repo.New(memory.New())
	m := &manifest.Manifest{FormatVersion: manifest.FormatVersion, BackupID: "plain", Instance: "db1", Type: manifest.TypeFull,
		StartTime: time.Unix(0, 0).UTC(), Compression: "none", RawSize: 10, StoredSize: 10, ChunkSize: 10,
		Chunks: []manifest.Chunk{{Index: 0, Key: "chunks/0", RawSize: 10, StoredSize: 10, SHA256: strings.Repeat("a", 64)}}}
	require.NoError(t, r.WriteManifest(ctx, m))
	plaintext := func(rep *verify.Report) (n int) {
		for _, p := range rep.Problems {
			if strings.Contains(p.What, "not encrypted") {
				assert.Equal(t, "db1/backups/plain/manifest.json", p.Key)
				n++
			}
		}
		return n
	}
	for _, c := range []struct {
		enabled, allow bool
		want           int
	}{{false, false, 0}, {true, false, 1}, {true, true, 0}} {
		rep, err := verify.Backups(ctx, r, "db1", nil, 1, nil, verify.RequireEncrypted(c.enabled, c.allow))
		require.NoError(t, err)
		assert.Equal(t, c.want, plaintext(rep), "encryption enabled %v, allow unencrypted %v", c.enabled, c.allow)
	}
}
