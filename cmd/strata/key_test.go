package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage/local"
)

// keyFile writes a random key encryption key (hex) and returns its path
// and the key.
func keyFile(t *testing.T, dir, name string) (string, *crypt.LocalKEK) {
	t.Helper()
	raw := make([]byte, crypt.KeySize)
	_, _ = rand.Read(raw)
	p := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(p, []byte(hex.EncodeToString(raw)), 0o600))
	k, err := crypt.NewLocalKEK(raw)
	require.NoError(t, err)
	return p, k
}

// `strata key rotate` used to rotate only the configured instances: the
// backups and archive of an instance removed from the config kept wrappings
// by the old key only, and were lost with it.
func TestKeyRotateCoversInstancesNoLongerConfigured(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	oldPath, oldKEK := keyFile(t, dir, "old.key")
	newPath, newKEK := keyFile(t, dir, "new.key")
	root := filepath.Join(dir, "repo")
	b, err := local.New(root)
	require.NoError(t, err)
	r := repo.New(b)
	oldRing, err := crypt.NewKeyring(oldKEK)
	require.NoError(t, err)
	sets := []repo.KeySet{
		r.BackupKeys("db1", "b1"),           // configured
		r.BackupKeys("gone", "b1"),          // removed from the config
		repo.BinlogKeys(b, "gone", "run1"),  // its binlog archive
		r.BackupKeys("archived-only", "b9"), // another removed one
	}
	for _, ks := range sets {
		dk, err := crypt.NewDataKey()
		require.NoError(t, err)
		id, w, err := oldRing.Wrap(dk)
		require.NoError(t, err)
		require.NoError(t, ks.Write(ctx, repo.KeyObject{KEKID: id, Wrapped: w}))
	}
	cfgPath := filepath.Join(dir, "strata.yaml")
	require.NoError(t, os.WriteFile(cfgPath, []byte(fmt.Sprintf(`
storage: {type: local, local: {root: %s}}
encryption: {key_file: %s, old_key_files: [%s]}
instances: [{id: db1, host: h, connect: {address: "x:1", user: u}, datadir: /d}]
`, root, newPath, oldPath)), 0o600))

	// Naming an instance that is nowhere is an error.
	a := &app{configPath: cfgPath, logLevel: "error"}
	cmd := keyCmd(a)
	cmd.SetArgs([]string{"rotate", "nowhere"})
	require.ErrorContains(t, cmd.ExecuteContext(ctx), `instance "nowhere" is neither in the config nor in the repository`)

	a = &app{configPath: cfgPath, logLevel: "error"}
	cmd = keyCmd(a)
	cmd.SetArgs([]string{"rotate", "--remove-old"})
	require.NoError(t, cmd.ExecuteContext(ctx))
	for _, ks := range sets {
		objs, err := ks.List(ctx)
		require.NoError(t, err)
		require.Len(t, objs, 1, ks.What)
		assert.Equal(t, newKEK.ID(), objs[0].KEKID, "%s is wrapped by the new key only", ks.What)
	}

	// A removed instance can also be named.
	got, err := rotationInstances(ctx, r, []string{"db1"}, []string{"gone"})
	require.NoError(t, err)
	assert.Equal(t, []string{"gone"}, got)
	got, err = rotationInstances(ctx, r, []string{"db1", "new-empty"}, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"archived-only", "db1", "gone", "new-empty"}, got)
}
