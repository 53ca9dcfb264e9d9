package crypt_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/crypt"
)

func key(t *testing.T) []byte {
	t.Helper()
	k, err := crypt.NewDataKey()
	require.NoError(t, err)
	require.Len(t, k, crypt.KeySize)
	return k
}

func chunkCipher(t *testing.T, k []byte, backupID string) *crypt.ChunkCipher {
	t.Helper()
	c, err := crypt.NewChunkCipher(k, backupID)
	require.NoError(t, err)
	return c
}

func TestNewDataKeyIsRandom(t *testing.T) {
	assert.NotEqual(t, key(t), key(t))
}

func TestChunkRoundTrip(t *testing.T) {
	c := chunkCipher(t, key(t), "20240101T000000Z-abc")
	for _, size := range []int{0, 1, 15, 16, 17, 4096, 1 << 20} {
		plain := bytes.Repeat([]byte("STRATA-MARKER-ROW-42 "), size/21+1)[:size]
		sealed := c.Seal(nil, plain, 7)
		require.Len(t, sealed, size+crypt.Overhead)
		assert.True(t, crypt.IsEncrypted(sealed))
		if size >= 21 {
			assert.NotContains(t, string(sealed), "STRATA-MARKER-ROW-42")
		}
		got, err := c.Open(nil, sealed, 7)
		require.NoError(t, err)
		assert.True(t, bytes.Equal(plain, got))
	}
}

func TestChunkSealAppendsAndNoncesDiffer(t *testing.T) {
	c := chunkCipher(t, key(t), "b1")
	plain := []byte("same plaintext")
	a := c.Seal([]byte("prefix"), plain, 1)
	require.True(t, bytes.HasPrefix(a, []byte("prefix")))
	b := c.Seal(nil, plain, 1)
	assert.NotEqual(t, a[len("prefix"):], b, "each seal must use a fresh nonce")
	got, err := c.Open([]byte("x"), a[len("prefix"):], 1)
	require.NoError(t, err)
	assert.Equal(t, "x"+string(plain), string(got))
}

func TestChunkInPlace(t *testing.T) {
	c := chunkCipher(t, key(t), "b1")
	plain := []byte(strings.Repeat("in place ", 1000))
	buf := make([]byte, crypt.HeaderSize+len(plain), len(plain)+crypt.Overhead)
	copy(buf[crypt.HeaderSize:], plain)
	sealed := c.Seal(buf[:0], buf[crypt.HeaderSize:], 3)
	require.Equal(t, &buf[0], &sealed[0], "sealed in the same buffer")
	opened, err := c.Open(sealed[crypt.HeaderSize:crypt.HeaderSize], sealed, 3)
	require.NoError(t, err)
	assert.Equal(t, plain, opened)
	assert.Equal(t, &sealed[crypt.HeaderSize], &opened[0], "opened in the same buffer")
}

func TestChunkWrongKeyFails(t *testing.T) {
	sealed := chunkCipher(t, key(t), "b1").Seal(nil, []byte("secret rows"), 0)
	_, err := chunkCipher(t, key(t), "b1").Open(nil, sealed, 0)
	require.Error(t, err)
	assert.ErrorIs(t, err, crypt.ErrDecrypt)
	assert.Contains(t, err.Error(), "wrong data key")
}

func TestChunkSwappedIndexFails(t *testing.T) {
	c := chunkCipher(t, key(t), "b1")
	s0 := c.Seal(nil, []byte("chunk zero"), 0)
	s1 := c.Seal(nil, []byte("chunk one"), 1)
	_, err := c.Open(nil, s1, 0)
	assert.ErrorIs(t, err, crypt.ErrDecrypt)
	_, err = c.Open(nil, s0, 1)
	assert.ErrorIs(t, err, crypt.ErrDecrypt)
	assert.ErrorContains(t, err, "chunk 1 of backup b1")
	_, err = c.Open(nil, s0, 1<<32)
	assert.ErrorIs(t, err, crypt.ErrDecrypt)
}

func TestChunkSwappedBackupFails(t *testing.T) {
	k := key(t)
	sealed := chunkCipher(t, k, "backup-A").Seal(nil, []byte("rows of A"), 5)
	_, err := chunkCipher(t, k, "backup-B").Open(nil, sealed, 5)
	assert.ErrorIs(t, err, crypt.ErrDecrypt)
	// Backup IDs that share a prefix are distinct too.
	_, err = chunkCipher(t, k, "backup-A2").Open(nil, sealed, 5)
	assert.ErrorIs(t, err, crypt.ErrDecrypt)
	got, err := chunkCipher(t, k, "backup-A").Open(nil, sealed, 5)
	require.NoError(t, err)
	assert.Equal(t, "rows of A", string(got))
}

func TestChunkTamperedByteFails(t *testing.T) {
	c := chunkCipher(t, key(t), "b1")
	plain := []byte(strings.Repeat("abc", 100))
	sealed := c.Seal(nil, plain, 2)
	// Every byte after the magic is covered: version, nonce, ciphertext, tag.
	for i := 4; i < len(sealed); i++ {
		bad := bytes.Clone(sealed)
		bad[i] ^= 0x80
		_, err := c.Open(nil, bad, 2)
		require.ErrorIs(t, err, crypt.ErrDecrypt, "byte %d", i)
	}
	_, err := c.Open(nil, sealed[:len(sealed)-1], 2)
	assert.ErrorIs(t, err, crypt.ErrDecrypt)
	_, err = c.Open(nil, sealed[:crypt.HeaderSize+3], 2)
	assert.ErrorIs(t, err, crypt.ErrDecrypt)
	assert.ErrorContains(t, err, "truncated")
}

func TestChunkNotEncrypted(t *testing.T) {
	c := chunkCipher(t, key(t), "b1")
	for _, data := range [][]byte{nil, []byte("SC"), []byte("plain text that was never encrypted"), {0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3}} {
		_, err := c.Open(nil, data, 0)
		require.Error(t, err)
		assert.ErrorIs(t, err, crypt.ErrNotEncrypted)
		assert.NotErrorIs(t, err, crypt.ErrDecrypt)
		assert.ErrorContains(t, err, "stored without encryption")
		assert.False(t, crypt.IsEncrypted(data))
	}
	future := c.Seal(nil, []byte("x"), 0)
	future[3] = 9
	_, err := c.Open(nil, future, 0)
	assert.ErrorIs(t, err, crypt.ErrDecrypt)
	assert.ErrorContains(t, err, "format version 9")
}

func TestChunkCipherArguments(t *testing.T) {
	_, err := crypt.NewChunkCipher(make([]byte, 16), "b1")
	assert.ErrorIs(t, err, crypt.ErrInvalidKey)
	assert.ErrorContains(t, err, "data key must be 32 bytes, got 16")
	_, err = crypt.NewChunkCipher(key(t), "")
	assert.ErrorIs(t, err, crypt.ErrInvalidKey)
	c := chunkCipher(t, key(t), "b1")
	assert.Equal(t, "b1", c.BackupID())
	assert.Equal(t, "crypt.ChunkCipher(b1)", c.String())
}

func TestChunkCipherConcurrent(t *testing.T) {
	c := chunkCipher(t, key(t), "b1")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			plain := bytes.Repeat([]byte{byte(i)}, 10000)
			for range 50 {
				got, err := c.Open(nil, c.Seal(nil, plain, uint64(i)), uint64(i))
				if err != nil || !bytes.Equal(got, plain) {
					t.Errorf("goroutine %d: %v", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// ---- key encryption keys

func TestLocalKEKWrapUnwrap(t *testing.T) {
	raw := key(t)
	kek, err := crypt.NewLocalKEK(raw)
	require.NoError(t, err)
	assert.Regexp(t, `^local:[0-9a-f]{16}$`, kek.ID())
	kek2, err := crypt.NewLocalKEK(bytes.Clone(raw))
	require.NoError(t, err)
	assert.Equal(t, kek.ID(), kek2.ID(), "the ID depends only on the key")

	dk := key(t)
	wrapped, err := kek.Wrap(dk)
	require.NoError(t, err)
	assert.Len(t, wrapped, 12+32+16)
	assert.False(t, bytes.Contains(wrapped, dk))
	got, err := kek2.Unwrap(wrapped)
	require.NoError(t, err)
	assert.Equal(t, dk, got)

	other, err := crypt.NewLocalKEK(key(t))
	require.NoError(t, err)
	assert.NotEqual(t, kek.ID(), other.ID())
	_, err = other.Unwrap(wrapped)
	assert.ErrorIs(t, err, crypt.ErrWrongKey)

	bad := bytes.Clone(wrapped)
	bad[20] ^= 1
	_, err = kek.Unwrap(bad)
	assert.ErrorIs(t, err, crypt.ErrWrongKey)
	_, err = kek.Unwrap(wrapped[:10])
	assert.ErrorIs(t, err, crypt.ErrWrongKey)
	assert.ErrorContains(t, err, "too short")

	_, err = crypt.NewLocalKEK(raw[:31])
	assert.ErrorIs(t, err, crypt.ErrInvalidKey)

	// Printing a KEK never shows key material.
	assert.Equal(t, kek.ID(), kek.String())
	assert.NotContains(t, kek.GoString(), hex.EncodeToString(raw))
}

func TestKEKFromFileFormats(t *testing.T) {
	raw := key(t)
	want, err := crypt.NewLocalKEK(raw)
	require.NoError(t, err)
	dir := t.TempDir()
	for name, content := range map[string][]byte{
		"raw":            raw,
		"hex":            []byte(hex.EncodeToString(raw)),
		"hex-newline":    []byte(hex.EncodeToString(raw) + "\n"),
		"hex-upper":      []byte(strings.ToUpper(hex.EncodeToString(raw))),
		"base64":         []byte(base64.StdEncoding.EncodeToString(raw) + "\n"),
		"base64-raw":     []byte(base64.RawStdEncoding.EncodeToString(raw)),
		"base64-url":     []byte(base64.URLEncoding.EncodeToString(raw)),
		"base64-spaces":  []byte("  " + base64.StdEncoding.EncodeToString(raw) + " \r\n"),
		"base64-url-raw": []byte(base64.RawURLEncoding.EncodeToString(raw)),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			require.NoError(t, os.WriteFile(path, content, 0o600))
			kek, err := crypt.KEKFromFile(path)
			require.NoError(t, err)
			assert.Equal(t, want.ID(), kek.ID())
		})
	}
}

func TestKEKFromFileErrors(t *testing.T) {
	dir := t.TempDir()
	raw := key(t)
	for name, content := range map[string][]byte{
		"empty":        nil,
		"short":        raw[:31],
		"raw-newline":  append(bytes.Clone(raw), '\n'),
		"hex-short":    []byte(hex.EncodeToString(raw[:31])),
		"hex-bad":      []byte(strings.Repeat("zz", 32)),
		"base64-16":    []byte(base64.StdEncoding.EncodeToString(raw[:16])),
		"passphrase":   []byte("correct horse battery staple\n"),
		"hex-too-long": []byte(hex.EncodeToString(append(bytes.Clone(raw), 1))),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			require.NoError(t, os.WriteFile(path, content, 0o600))
			_, err := crypt.KEKFromFile(path)
			require.Error(t, err)
			assert.ErrorIs(t, err, crypt.ErrInvalidKey)
			assert.ErrorContains(t, err, "key file "+path+" must hold 32 bytes (raw, hex or base64)")
			// The message never echoes the file's content.
			if len(content) > 4 {
				assert.NotContains(t, err.Error(), string(content))
			}
		})
	}
	_, err := crypt.KEKFromFile(filepath.Join(dir, "missing"))
	require.Error(t, err)
	assert.ErrorIs(t, err, os.ErrNotExist)
	assert.ErrorContains(t, err, "key file "+filepath.Join(dir, "missing")+" cannot be read")
}

func TestKEKFromEnv(t *testing.T) {
	raw := []byte("0123456789abcdefghijklmnopqrstuv") // no NUL: settable raw
	want, err := crypt.NewLocalKEK(raw)
	require.NoError(t, err)
	for _, v := range []string{hex.EncodeToString(raw), base64.StdEncoding.EncodeToString(raw), string(raw)} {
		t.Setenv("STRATA_TEST_KEK", v)
		kek, err := crypt.KEKFromEnv("STRATA_TEST_KEK")
		require.NoError(t, err)
		assert.Equal(t, want.ID(), kek.ID())
	}

	t.Setenv("STRATA_TEST_KEK", "not a key")
	_, err = crypt.KEKFromEnv("STRATA_TEST_KEK")
	assert.ErrorIs(t, err, crypt.ErrInvalidKey)
	assert.ErrorContains(t, err, "environment variable STRATA_TEST_KEK must hold 32 bytes (raw, hex or base64)")
	assert.NotContains(t, err.Error(), "not a key")

	t.Setenv("STRATA_TEST_KEK", "")
	_, err = crypt.KEKFromEnv("STRATA_TEST_KEK")
	assert.ErrorContains(t, err, "must hold 32 bytes")

	_, err = crypt.KEKFromEnv("STRATA_TEST_KEK_SURELY_UNSET")
	assert.ErrorIs(t, err, crypt.ErrInvalidKey)
	assert.ErrorContains(t, err, "environment variable STRATA_TEST_KEK_SURELY_UNSET is not set on this agent")
}

// ---- keyring

func newKEK(t *testing.T) *crypt.LocalKEK {
	t.Helper()
	k, err := crypt.NewLocalKEK(key(t))
	require.NoError(t, err)
	return k
}

func TestKeyringRotation(t *testing.T) {
	oldKEK, newKEK := newKEK(t), newKEK(t)
	dk := key(t)

	// A backup taken before the rotation.
	before, err := crypt.NewKeyring(oldKEK)
	require.NoError(t, err)
	id, wrapped, err := before.Wrap(dk)
	require.NoError(t, err)
	assert.Equal(t, oldKEK.ID(), id)

	// After the rotation: new backups use the new key, old ones still open.
	after, err := crypt.NewKeyring(newKEK, oldKEK)
	require.NoError(t, err)
	assert.Equal(t, newKEK.ID(), after.Current().ID())
	assert.Equal(t, []string{newKEK.ID(), oldKEK.ID()}, after.IDs())
	got, err := after.Unwrap(id, wrapped)
	require.NoError(t, err)
	assert.Equal(t, dk, got)

	id2, wrapped2, err := after.Wrap(dk)
	require.NoError(t, err)
	assert.Equal(t, newKEK.ID(), id2)
	got, err = after.Unwrap(id2, wrapped2)
	require.NoError(t, err)
	assert.Equal(t, dk, got)

	// The old keyring does not know the new key.
	_, err = before.Unwrap(id2, wrapped2)
	require.Error(t, err)
	assert.ErrorIs(t, err, crypt.ErrUnknownKey)
}

func TestKeyringUnknownKeyMessage(t *testing.T) {
	current := newKEK(t)
	ring, err := crypt.NewKeyring(current)
	require.NoError(t, err)
	_, err = ring.Unwrap("local:ab12cd34ef56ab78", []byte("whatever"))
	require.Error(t, err)
	assert.True(t, errors.Is(err, crypt.ErrUnknownKey))
	assert.False(t, errors.Is(err, crypt.ErrWrongKey))
	assert.Equal(t, `backup key was wrapped by key "local:ab12cd34ef56ab78" which this agent does not have (it has "`+current.ID()+`"): configure it in encryption.old_key_files`, err.Error())
}

func TestKeyringWrongKey(t *testing.T) {
	kek := newKEK(t)
	ring, err := crypt.NewKeyring(kek)
	require.NoError(t, err)
	wrapped, err := newKEK(t).Wrap(key(t))
	require.NoError(t, err)
	// Recorded under our ID but wrapped by another key (or corrupt).
	_, err = ring.Unwrap(kek.ID(), wrapped)
	assert.ErrorIs(t, err, crypt.ErrWrongKey)
	assert.ErrorContains(t, err, kek.ID())
}

// flakyKMS is a KEK whose Unwrap fails with a transient error.
type flakyKMS struct{}

var errUnreachable = errors.New("kms unreachable")

func (flakyKMS) ID() string                      { return "kms:test" }
func (flakyKMS) Wrap(k []byte) ([]byte, error)   { return k, nil }
func (flakyKMS) Unwrap(w []byte) ([]byte, error) { return nil, errUnreachable }

func TestKeyringOtherKEKErrors(t *testing.T) {
	ring, err := crypt.NewKeyring(newKEK(t), flakyKMS{})
	require.NoError(t, err)
	_, err = ring.Unwrap("kms:test", []byte("w"))
	assert.ErrorIs(t, err, errUnreachable)
	assert.NotErrorIs(t, err, crypt.ErrWrongKey, "a transient KMS failure is not a wrong key")
	assert.ErrorContains(t, err, `unwrap backup key with key "kms:test"`)
}

func TestNewKeyringArguments(t *testing.T) {
	_, err := crypt.NewKeyring(nil)
	assert.ErrorIs(t, err, crypt.ErrInvalidKey)
	k := newKEK(t)
	_, err = crypt.NewKeyring(k, nil)
	assert.ErrorIs(t, err, crypt.ErrInvalidKey)
	// The same key configured as current and old is harmless.
	ring, err := crypt.NewKeyring(k, k)
	require.NoError(t, err)
	assert.Equal(t, []string{k.ID()}, ring.IDs())
}
