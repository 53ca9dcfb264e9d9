package local_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/local"
	"github.com/strata-backup/strata/internal/storage/storagetest"
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend {
		b, err := local.New(filepath.Join(t.TempDir(), "repo"))
		require.NoError(t, err)
		return b
	})
}

func newBackend(t *testing.T) (*local.Backend, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "repo")
	b, err := local.New(root)
	require.NoError(t, err)
	return b, root
}

func put(t *testing.T, b storage.Backend, key, data string) {
	t.Helper()
	require.NoError(t, b.Put(context.Background(), key, bytes.NewReader([]byte(data)), int64(len(data))))
}

func TestNewCreatesRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "b", "c")
	b, err := local.New(root)
	require.NoError(t, err)
	fi, err := os.Stat(root)
	require.NoError(t, err)
	assert.True(t, fi.IsDir())
	assert.Equal(t, root, b.Root())
	assert.Equal(t, "local directory "+root, b.String())
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	assert.Empty(t, entries, "the writability probe must be removed")
}

func TestNewRelativeRoot(t *testing.T) {
	t.Chdir(t.TempDir())
	b, err := local.New("rel/repo")
	require.NoError(t, err)
	assert.True(t, filepath.IsAbs(b.Root()))
}

func TestNewErrors(t *testing.T) {
	_, err := local.New("")
	require.Error(t, err)

	file := filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o600))
	_, err = local.New(file)
	require.ErrorContains(t, err, "is not a directory")

	_, err = local.New(filepath.Join(file, "sub"))
	require.ErrorContains(t, err, "cannot create root directory")
}

func TestNewNotWritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root bypasses directory permissions")
	}
	root := filepath.Join(t.TempDir(), "ro")
	require.NoError(t, os.Mkdir(root, 0o500))
	t.Cleanup(func() { _ = os.Chmod(root, 0o700) })
	_, err := local.New(root)
	require.ErrorContains(t, err, "is not writable")
}

func TestLayoutAndPermissions(t *testing.T) {
	b, root := newBackend(t)
	put(t, b, "inst/backups/b1/manifest.json", "{}")
	p := filepath.Join(root, "inst", "backups", "b1", "manifest.json")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, "{}", string(data))
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	entries, err := os.ReadDir(filepath.Dir(p))
	require.NoError(t, err)
	require.Len(t, entries, 1, "the temporary file must be removed")
}

func TestGetReturnsFile(t *testing.T) {
	b, _ := newBackend(t)
	put(t, b, "k", "v")
	rc, err := b.Get(context.Background(), "k")
	require.NoError(t, err)
	defer rc.Close()
	_, ok := rc.(*os.File)
	assert.True(t, ok, "Get should return the file handle, got %T", rc)
}

func TestListIgnoresTempFiles(t *testing.T) {
	b, root := newBackend(t)
	put(t, b, "d/obj", "x")
	// Leftovers of an interrupted Put.
	require.NoError(t, os.WriteFile(filepath.Join(root, "d", ".strata-tmp-123"), []byte("partial"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(root, ".strata-tmp-456"), []byte("partial"), 0o600))
	infos, err := b.List(context.Background(), "")
	require.NoError(t, err)
	require.Len(t, infos, 1)
	assert.Equal(t, "d/obj", infos[0].Key)
	infos, err = b.List(context.Background(), "d/.strata")
	require.NoError(t, err)
	assert.Empty(t, infos)
}

func TestTempPrefixKeysRejected(t *testing.T) {
	b, _ := newBackend(t)
	err := b.Put(context.Background(), "a/.strata-tmp-x/b", bytes.NewReader(nil), 0)
	assert.ErrorIs(t, err, storage.ErrInvalidKey)
	assert.ErrorContains(t, err, "reserved")
}

func TestListSkipsSymlinksAndDirs(t *testing.T) {
	b, root := newBackend(t)
	put(t, b, "d/obj", "x")
	require.NoError(t, os.Mkdir(filepath.Join(root, "d", "emptydir"), 0o700))
	require.NoError(t, os.Symlink(filepath.Join(root, "d", "obj"), filepath.Join(root, "d", "link")))
	infos, err := b.List(context.Background(), "d/")
	require.NoError(t, err)
	require.Len(t, infos, 1)
	assert.Equal(t, "d/obj", infos[0].Key)
}

func TestDeletePrunesEmptyDirs(t *testing.T) {
	b, root := newBackend(t)
	ctx := context.Background()
	put(t, b, "inst/backups/b1/chunks/00000000.zst", "c0")
	put(t, b, "inst/backups/b1/chunks/00000001.zst", "c1")
	put(t, b, "inst/backups/b2/manifest.json", "m")

	require.NoError(t, b.Delete(ctx, "inst/backups/b1/chunks/00000000.zst"))
	assert.DirExists(t, filepath.Join(root, "inst", "backups", "b1", "chunks"))
	require.NoError(t, b.Delete(ctx, "inst/backups/b1/chunks/00000001.zst"))
	assert.NoDirExists(t, filepath.Join(root, "inst", "backups", "b1"))
	assert.DirExists(t, filepath.Join(root, "inst", "backups"))

	require.NoError(t, b.Delete(ctx, "inst/backups/b2/manifest.json"))
	assert.NoDirExists(t, filepath.Join(root, "inst"))
	assert.DirExists(t, root, "the root itself is never removed")

	// Deleting a "directory" is a no-op.
	put(t, b, "x/y", "1")
	require.NoError(t, b.Delete(ctx, "x"))
	assert.FileExists(t, filepath.Join(root, "x", "y"))
}

func TestPutOverDirectory(t *testing.T) {
	b, _ := newBackend(t)
	put(t, b, "x/y", "1")
	err := b.Put(context.Background(), "x", bytes.NewReader([]byte("z")), 1)
	require.Error(t, err)
	assert.ErrorContains(t, err, "directory exists")
}

func TestReopenSeesObjects(t *testing.T) {
	b, root := newBackend(t)
	put(t, b, "a/b", "data")
	b2, err := local.New(root)
	require.NoError(t, err)
	err = b2.Put(context.Background(), "a/b", bytes.NewReader([]byte("other")), 5)
	assert.ErrorIs(t, err, storage.ErrExists)
}
