package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// recordSyncs replaces the directory fsync for one test: it records every
// directory fsynced and fails those for which fail returns true.
func recordSyncs(t *testing.T, fail func(dir string) bool) func() []string {
	t.Helper()
	var mu sync.Mutex
	var dirs []string
	orig := fsyncDir
	fsyncDir = func(d *os.File) error {
		mu.Lock()
		dirs = append(dirs, d.Name())
		mu.Unlock()
		if fail != nil && fail(d.Name()) {
			return errors.New("injected fsync failure")
		}
		return orig(d)
	}
	t.Cleanup(func() { fsyncDir = orig })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), dirs...)
	}
}

// Delete must make the removal durable before it returns: it fsyncs the
// directory that held the object (and the one above removed empty dirs).
func TestDeleteFsyncsParentDir(t *testing.T) {
	ctx := context.Background()
	b, err := New(t.TempDir())
	require.NoError(t, err)
	put := func(key string) {
		require.NoError(t, b.Put(ctx, key, strings.NewReader("x"), 1))
	}
	put("db1/backups/b1/manifest.json")
	put("db1/backups/b1/chunks/0001.zst")
	put("db1/backups/b2/manifest.json")

	synced := recordSyncs(t, nil)
	require.NoError(t, b.Delete(ctx, "db1/backups/b1/manifest.json"))
	assert.Equal(t, []string{filepath.Join(b.Root(), "db1/backups/b1")}, synced(), "the manifest's directory is fsynced")

	// The last object of a backup: its dir and chunks/ go, and the
	// directory above them is fsynced too.
	require.NoError(t, b.Delete(ctx, "db1/backups/b1/chunks/0001.zst"))
	assert.Equal(t, []string{
		filepath.Join(b.Root(), "db1/backups/b1"),
		filepath.Join(b.Root(), "db1/backups/b1/chunks"),
		filepath.Join(b.Root(), "db1/backups"),
	}, synced())
	assert.NoDirExists(t, filepath.Join(b.Root(), "db1/backups/b1"))
}

// A failed directory fsync is an error of Delete and of Put, never
// ignored: without it the order of two deletes is not durable.
func TestDirectoryFsyncErrorsSurface(t *testing.T) {
	ctx := context.Background()
	b, err := New(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, b.Put(ctx, "db1/backups/b1/manifest.json", strings.NewReader("m"), 1))
	require.NoError(t, b.Put(ctx, "db1/backups/b1/chunks/0001.zst", strings.NewReader("c"), 1))

	recordSyncs(t, func(dir string) bool { return strings.Contains(dir, "/b1") })
	err = b.Delete(ctx, "db1/backups/b1/manifest.json")
	require.Error(t, err)
	assert.ErrorContains(t, err, "fsync directory")
	assert.ErrorContains(t, err, "injected fsync failure")

	err = b.Put(ctx, "db1/backups/b1/keys/k.json", strings.NewReader("k"), 1)
	require.Error(t, err)
	assert.ErrorContains(t, err, "local: put db1/backups/b1/keys/k.json: fsync directory")

	// A directory elsewhere is unaffected.
	require.NoError(t, b.Put(ctx, "db1/backups/b2/manifest.json", strings.NewReader("m"), 1))
	require.NoError(t, b.Delete(ctx, "db1/backups/b2/manifest.json"))
}

// A Put that creates directories must make their entries durable too: the
// new object's directory is fsynced (its entry), and so is the directory
// above every directory the Put created. Otherwise a crash can lose a
// backup's chunks/ directory (or the whole backup directory) that a
// manifest written later, and fsynced, refers to.
func TestPutFsyncsCreatedDirectories(t *testing.T) {
	ctx := context.Background()
	b, err := New(t.TempDir())
	require.NoError(t, err)
	require.NoError(t, b.Put(ctx, "db1/backups/b0/manifest.json", strings.NewReader("m"), 1))

	synced := recordSyncs(t, nil)
	require.NoError(t, b.Put(ctx, "db1/backups/b1/chunks/0001.zst", strings.NewReader("c"), 1))
	assert.ElementsMatch(t, []string{
		filepath.Join(b.Root(), "db1/backups/b1/chunks"), // the object's entry
		filepath.Join(b.Root(), "db1/backups/b1"),        // the entry of chunks/
		filepath.Join(b.Root(), "db1/backups"),           // the entry of b1/
	}, synced())

	// Into an existing directory, only that directory is fsynced.
	synced = recordSyncs(t, nil)
	require.NoError(t, b.Put(ctx, "db1/backups/b1/chunks/0002.zst", strings.NewReader("c"), 1))
	assert.Equal(t, []string{filepath.Join(b.Root(), "db1/backups/b1/chunks")}, synced())

	// A failure to fsync a created directory's parent is an error of Put.
	recordSyncs(t, func(dir string) bool { return dir == filepath.Join(b.Root(), "db1/backups") })
	err = b.Put(ctx, "db1/backups/b2/manifest.json", strings.NewReader("m"), 1)
	assert.ErrorContains(t, err, "fsync directory")
}
