package crypt_test

import (
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/crypt"
)

func TestSealDeterministic(t *testing.T) {
	k := key(t)
	c := chunkCipher(t, k, "b1")
	plain := []byte("STRATA-MARKER-ROW-7d3f compressed chunk")
	a := c.SealDeterministic(nil, plain, 3)
	// Another cipher of the same key and backup (a retried attempt) seals
	// the same bytes.
	assert.Equal(t, a, chunkCipher(t, k, "b1").SealDeterministic(nil, plain, 3))
	assert.NotEqual(t, a, c.SealDeterministic(nil, plain, 4), "other index, other nonce")
	assert.NotEqual(t, a, c.SealDeterministic(nil, []byte("other"), 3))
	assert.NotEqual(t, a[4:16], chunkCipher(t, k, "b2").SealDeterministic(nil, plain, 3)[4:16], "other backup, other nonce")
	assert.NotEqual(t, a, chunkCipher(t, key(t), "b1").SealDeterministic(nil, plain, 3))
	assert.NotContains(t, string(a), "STRATA-MARKER")
	got, err := c.Open(nil, a, 3)
	require.NoError(t, err)
	assert.Equal(t, plain, got)
	_, err = c.Open(nil, a, 4)
	assert.ErrorIs(t, err, crypt.ErrDecrypt)

	// In place, like Seal.
	buf := make([]byte, crypt.HeaderSize+len(plain), len(plain)+crypt.Overhead)
	copy(buf[crypt.HeaderSize:], plain)
	sealed := c.SealDeterministic(buf[:0], buf[crypt.HeaderSize:], 3)
	assert.Equal(t, a, sealed)
	assert.Same(t, &buf[0], &sealed[0])
}

func TestChunkNameKey(t *testing.T) {
	k := key(t)
	n1, err := crypt.ChunkNameKey(k)
	require.NoError(t, err)
	n2, err := crypt.ChunkNameKey(bytes.Clone(k))
	require.NoError(t, err)
	assert.Equal(t, n1, n2)
	assert.Len(t, n1, crypt.KeySize)
	assert.NotEqual(t, k, n1, "the name key is not the data key")
	_, err = crypt.ChunkNameKey(k[:5])
	assert.ErrorIs(t, err, crypt.ErrInvalidKey)
}

func TestLoadKeyring(t *testing.T) {
	dir := t.TempDir()
	write := func(name string) (string, *crypt.LocalKEK) {
		raw := key(t)
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(hex.EncodeToString(raw)+"\n"), 0o600))
		k, err := crypt.NewLocalKEK(raw)
		require.NoError(t, err)
		return p, k
	}
	curPath, cur := write("current")
	oldPath, old := write("old")
	envRaw := key(t)
	envKEK, err := crypt.NewLocalKEK(envRaw)
	require.NoError(t, err)
	t.Setenv("STRATA_TEST_OLD_KEK", hex.EncodeToString(envRaw))

	ring, err := crypt.LoadKeyring(crypt.KeySources{})
	require.NoError(t, err)
	assert.Nil(t, ring, "no key: no encryption")

	ring, err = crypt.LoadKeyring(crypt.KeySources{KeyFile: curPath, OldKeyFiles: []string{oldPath}, OldKeyEnvs: []string{"STRATA_TEST_OLD_KEK"}})
	require.NoError(t, err)
	assert.Equal(t, cur.ID(), ring.Current().ID())
	assert.Equal(t, []string{cur.ID(), old.ID(), envKEK.ID()}, ring.IDs())
	assert.True(t, ring.Has(old.ID()))
	assert.False(t, ring.Has("local:nope"))

	t.Setenv("STRATA_TEST_KEK", hex.EncodeToString(envRaw))
	ring, err = crypt.LoadKeyring(crypt.KeySources{KeyEnv: "STRATA_TEST_KEK"})
	require.NoError(t, err)
	assert.Equal(t, envKEK.ID(), ring.Current().ID())

	for name, tc := range map[string]struct {
		src  crypt.KeySources
		want string
	}{
		"both":         {crypt.KeySources{KeyFile: curPath, KeyEnv: "X"}, "set only one of key_file and key_env"},
		"old only":     {crypt.KeySources{OldKeyFiles: []string{oldPath}}, "no current key"},
		"missing file": {crypt.KeySources{KeyFile: filepath.Join(dir, "nope")}, "encryption.key_file: key file " + filepath.Join(dir, "nope") + " cannot be read"},
		"missing env":  {crypt.KeySources{KeyEnv: "STRATA_TEST_UNSET_KEK"}, "encryption.key_env: environment variable STRATA_TEST_UNSET_KEK is not set"},
		"bad old":      {crypt.KeySources{KeyFile: curPath, OldKeyFiles: []string{oldPath, filepath.Join(dir, "gone")}}, "encryption.old_key_files[1]: key file"},
		"bad old env":  {crypt.KeySources{KeyFile: curPath, OldKeyEnvs: []string{"STRATA_TEST_UNSET_KEK"}}, "encryption.old_key_envs[0]:"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := crypt.LoadKeyring(tc.src)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	assert.True(t, crypt.IsKeyError(crypt.ErrUnknownKey))
}

func TestAuthKeyAndMAC(t *testing.T) {
	dk := bytes.Repeat([]byte{7}, crypt.KeySize)
	other := bytes.Repeat([]byte{8}, crypt.KeySize)
	k := crypt.AuthKey(dk, "binlog index/db1")
	if len(k) != crypt.KeySize {
		t.Fatalf("auth key has %d bytes", len(k))
	}
	if bytes.Equal(k, dk) || bytes.Equal(k, crypt.AuthKey(dk, "binlog index/db2")) || bytes.Equal(k, crypt.AuthKey(other, "binlog index/db1")) {
		t.Fatal("auth keys of different purposes or data keys must differ, and differ from the data key")
	}
	if !bytes.Equal(k, crypt.AuthKey(dk, "binlog index/db1")) {
		t.Fatal("AuthKey is not deterministic")
	}
	msg := []byte("record")
	mac := crypt.MAC(k, msg)
	if !crypt.CheckMAC(k, msg, mac) {
		t.Fatal("CheckMAC refuses its own MAC")
	}
	bad := append([]byte(nil), mac...)
	bad[3] ^= 1
	for name, c := range map[string]struct{ key, msg, mac []byte }{
		"flipped mac": {k, msg, bad},
		"other msg":   {k, []byte("recorD"), mac},
		"other key":   {crypt.AuthKey(other, "binlog index/db1"), msg, mac},
		"short mac":   {k, msg, mac[:16]},
		"empty mac":   {k, msg, nil},
	} {
		if crypt.CheckMAC(c.key, c.msg, c.mac) {
			t.Errorf("%s: CheckMAC accepted", name)
		}
	}
}
