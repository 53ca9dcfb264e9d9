// Package storagetest is the conformance test suite that every
// storage.Backend implementation must pass. A backend's tests call Run with a
// constructor returning a fresh, empty backend.
package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/storage"
)

// Run runs the conformance suite as subtests of t. newBackend is called once
// per subtest and must return an empty backend.
func Run(t *testing.T, newBackend func(t *testing.T) storage.Backend) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, b storage.Backend)
	}{
		{"PutGetRoundTrip", testPutGet},
		{"EmptyObject", testEmptyObject},
		{"PutExisting", testPutExisting},
		{"MissingObject", testMissing},
		{"StatAndListSizes", testSizes},
		{"ListPrefix", testListPrefix},
		{"ListSorted", testListSorted},
		{"ListDir", testListDir},
		{"Delete", testDelete},
		{"NestedKeys", testNested},
		{"InvalidKeys", testInvalidKeys},
		{"ConcurrentPutSameKey", testConcurrentPut},
		{"ConcurrentPutDistinctKeys", testConcurrentDistinct},
		{"LargeObject", testLarge},
		{"PutSizeMismatch", testSizeMismatch},
		{"PutReaderError", testReaderError},
		{"ContextCancelled", testCancelled},
		{"PutCancelledMidStream", testCancelMidStream},
		{"String", testString},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newBackend(t))
		})
	}
}

func put(t *testing.T, b storage.Backend, key string, data []byte) {
	t.Helper()
	require.NoError(t, b.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))), "put %s", key)
}

func get(t *testing.T, b storage.Backend, key string) []byte {
	t.Helper()
	rc, err := b.Get(context.Background(), key)
	require.NoError(t, err, "get %s", key)
	defer func() { require.NoError(t, rc.Close()) }()
	data, err := io.ReadAll(rc)
	require.NoError(t, err, "read %s", key)
	return data
}

func keys(infos []storage.ObjectInfo) []string {
	out := make([]string, 0, len(infos))
	for _, o := range infos {
		out = append(out, o.Key)
	}
	return out
}

func list(t *testing.T, b storage.Backend, prefix string) []string {
	t.Helper()
	infos, err := b.List(context.Background(), prefix)
	require.NoError(t, err, "list %q", prefix)
	return keys(infos)
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

func testPutGet(t *testing.T, b storage.Backend) {
	data := []byte("hello, strata")
	put(t, b, "obj", data)
	assert.Equal(t, data, get(t, b, "obj"))
	// Reading twice gives the same content.
	assert.Equal(t, data, get(t, b, "obj"))

	// Put with unknown size (-1).
	require.NoError(t, b.Put(context.Background(), "unknown-size", bytes.NewReader(data), -1))
	assert.Equal(t, data, get(t, b, "unknown-size"))
}

func testEmptyObject(t *testing.T, b storage.Backend) {
	put(t, b, "empty", nil)
	assert.Empty(t, get(t, b, "empty"))
	info, err := b.Stat(context.Background(), "empty")
	require.NoError(t, err)
	assert.Equal(t, int64(0), info.Size)
	assert.Equal(t, []string{"empty"}, list(t, b, ""))
}

func testPutExisting(t *testing.T, b storage.Backend) {
	put(t, b, "a/b", []byte("first"))
	err := b.Put(context.Background(), "a/b", bytes.NewReader([]byte("second")), 6)
	require.Error(t, err)
	assert.ErrorIs(t, err, storage.ErrExists)
	assert.Equal(t, []byte("first"), get(t, b, "a/b"), "Put must never overwrite")
}

func testMissing(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	_, err := b.Get(ctx, "no/such/key")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = b.Stat(ctx, "no/such/key")
	assert.ErrorIs(t, err, storage.ErrNotFound)

	// A "directory" (prefix of other keys) is not an object.
	put(t, b, "dir/obj", []byte("x"))
	_, err = b.Get(ctx, "dir")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = b.Stat(ctx, "dir")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	// A key below an object is missing too.
	_, err = b.Get(ctx, "dir/obj/below")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	_, err = b.Stat(ctx, "dir/obj/below")
	assert.ErrorIs(t, err, storage.ErrNotFound)

	infos, err := b.List(ctx, "nothing/here/")
	require.NoError(t, err)
	assert.Empty(t, infos)
}

func testSizes(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	sizes := map[string]int{"s/zero": 0, "s/one": 1, "s/k": 1000, "s/big": 300_000}
	before := time.Now().Add(-time.Minute)
	for k, n := range sizes {
		put(t, b, k, randomBytes(t, n))
	}
	for k, n := range sizes {
		info, err := b.Stat(ctx, k)
		require.NoError(t, err, k)
		assert.Equal(t, k, info.Key)
		assert.Equal(t, int64(n), info.Size, k)
		assert.True(t, info.ModTime.After(before), "%s: ModTime %v is not recent", k, info.ModTime)
	}
	infos, err := b.List(ctx, "s/")
	require.NoError(t, err)
	require.Len(t, infos, len(sizes))
	for _, info := range infos {
		assert.Equal(t, int64(sizes[info.Key]), info.Size, info.Key)
		assert.True(t, info.ModTime.After(before), "%s: ModTime %v is not recent", info.Key, info.ModTime)
	}
}

func testListPrefix(t *testing.T, b storage.Backend) {
	for _, k := range []string{
		"inst/backups/b1/manifest.json",
		"inst/backups/b1/chunks/00000000.zst",
		"inst/backups/b2/chunks/00000000.zst",
		"inst/backup-other",
		"inst/backupsx/y",
		"inst2/backups/b1/manifest.json",
		"top",
	} {
		put(t, b, k, []byte(k))
	}
	all := []string{
		"inst/backup-other",
		"inst/backups/b1/chunks/00000000.zst",
		"inst/backups/b1/manifest.json",
		"inst/backups/b2/chunks/00000000.zst",
		"inst/backupsx/y",
		"inst2/backups/b1/manifest.json",
		"top",
	}
	assert.Equal(t, all, list(t, b, ""))
	assert.Equal(t, []string{
		"inst/backups/b1/chunks/00000000.zst",
		"inst/backups/b1/manifest.json",
		"inst/backups/b2/chunks/00000000.zst",
	}, list(t, b, "inst/backups/"))
	// Partial names match like plain string prefixes.
	assert.Equal(t, []string{
		"inst/backup-other",
		"inst/backups/b1/chunks/00000000.zst",
		"inst/backups/b1/manifest.json",
		"inst/backups/b2/chunks/00000000.zst",
		"inst/backupsx/y",
	}, list(t, b, "inst/back"))
	assert.Equal(t, all[:6], list(t, b, "inst"))
	assert.Equal(t, all[:5], list(t, b, "inst/"))
	assert.Equal(t, []string{"inst/backups/b1/manifest.json"}, list(t, b, "inst/backups/b1/m"))
	// A full key is its own prefix.
	assert.Equal(t, []string{"inst/backups/b1/manifest.json"}, list(t, b, "inst/backups/b1/manifest.json"))
	assert.Equal(t, []string{"top"}, list(t, b, "to"))
	assert.Empty(t, list(t, b, "inst/backups/b3/"))
	assert.Empty(t, list(t, b, "top/"))
	assert.Empty(t, list(t, b, "zzz"))
}

func testListSorted(t *testing.T, b storage.Backend) {
	// Byte-wise order of full keys, which differs from a depth-first
	// directory walk: "a-b" < "a/b" because '-' < '/'.
	in := []string{"a/b", "a-b", "a/a/z", "a0", "A", "a/b0", "b", "a.x/y"}
	for _, k := range in {
		put(t, b, k, []byte(k))
	}
	assert.Equal(t, []string{"A", "a-b", "a.x/y", "a/a/z", "a/b", "a/b0", "a0", "b"}, list(t, b, ""))
}

func testDelete(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	put(t, b, "d/x/y", []byte("1"))
	put(t, b, "d/z", []byte("2"))
	require.NoError(t, b.Delete(ctx, "d/x/y"))
	_, err := b.Stat(ctx, "d/x/y")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	// Idempotent.
	require.NoError(t, b.Delete(ctx, "d/x/y"))
	require.NoError(t, b.Delete(ctx, "never/existed"))
	assert.Equal(t, []string{"d/z"}, list(t, b, ""))
	// The key can be written again after deletion.
	put(t, b, "d/x/y", []byte("3"))
	assert.Equal(t, []byte("3"), get(t, b, "d/x/y"))
	require.NoError(t, b.Delete(ctx, "d/x/y"))
	require.NoError(t, b.Delete(ctx, "d/z"))
	assert.Empty(t, list(t, b, ""))
}

func testNested(t *testing.T, b storage.Backend) {
	deep := "a/b/c/d/e/f/g/h/object.bin"
	put(t, b, deep, []byte("deep"))
	put(t, b, "a/b/sibling", []byte("s"))
	assert.Equal(t, []byte("deep"), get(t, b, deep))
	assert.Equal(t, []string{deep, "a/b/sibling"}, list(t, b, "a/b/"))
	assert.Equal(t, []string{deep}, list(t, b, "a/b/c/d/"))
	require.NoError(t, b.Delete(context.Background(), deep))
	assert.Equal(t, []string{"a/b/sibling"}, list(t, b, "a/"))
	// Keys with dots, dashes and spaces inside names are fine.
	for _, k := range []string{"x/.hidden", "x/..dots", "x/with space", "x/a.b-c_d=e"} {
		put(t, b, k, []byte(k))
		assert.Equal(t, []byte(k), get(t, b, k))
	}
}

func testInvalidKeys(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	for _, k := range []string{"", "/abs", "a//b", "a/", "../x", "a/../b", "a/./b", ".", "..", "a/.."} {
		err := b.Put(ctx, k, bytes.NewReader([]byte("x")), 1)
		require.Error(t, err, "put %q", k)
		assert.ErrorIs(t, err, storage.ErrInvalidKey, "put %q", k)
		_, err = b.Get(ctx, k)
		assert.ErrorIs(t, err, storage.ErrInvalidKey, "get %q", k)
		_, err = b.Stat(ctx, k)
		assert.ErrorIs(t, err, storage.ErrInvalidKey, "stat %q", k)
		assert.ErrorIs(t, b.Delete(ctx, k), storage.ErrInvalidKey, "delete %q", k)
	}
	for _, p := range []string{"/abs", "a//b", "../x", "a/../"} {
		_, err := b.List(ctx, p)
		assert.ErrorIs(t, err, storage.ErrInvalidKey, "list %q", p)
	}
	assert.Empty(t, list(t, b, ""), "nothing may have been written")
}

func testConcurrentPut(t *testing.T, b storage.Backend) {
	const n = 16
	var (
		wg     sync.WaitGroup
		start  = make(chan struct{})
		errs   = make([]error, n)
		values = make([][]byte, n)
	)
	for i := range n {
		values[i] = bytes.Repeat([]byte{byte('a' + i)}, 64<<10)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = b.Put(context.Background(), "race/key", bytes.NewReader(values[i]), int64(len(values[i])))
		}()
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		if err == nil {
			require.Equal(t, -1, winner, "two Puts of the same key succeeded (%d and %d)", winner, i)
			winner = i
			continue
		}
		assert.ErrorIs(t, err, storage.ErrExists, "put %d", i)
	}
	require.NotEqual(t, -1, winner, "no Put succeeded")
	assert.Equal(t, values[winner], get(t, b, "race/key"), "stored data must be the winner's")
	assert.Equal(t, []string{"race/key"}, list(t, b, "race/"), "no temporary objects may be listed")
}

func testConcurrentDistinct(t *testing.T, b storage.Backend) {
	const n = 32
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("many/%02d/obj", i)
			errs[i] = b.Put(context.Background(), key, bytes.NewReader([]byte(key)), int64(len(key)))
			if errs[i] == nil && i%2 == 0 {
				// Deleting concurrently (which may prune empty parent
				// directories) must not break other writers.
				errs[i] = b.Delete(context.Background(), key)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		require.NoError(t, err, "object %d", i)
	}
	got := list(t, b, "many/")
	require.Len(t, got, n/2)
	for i, k := range got {
		assert.Equal(t, fmt.Sprintf("many/%02d/obj", 2*i+1), k)
	}
}

func testLarge(t *testing.T, b storage.Backend) {
	data := randomBytes(t, 5<<20+123)
	put(t, b, "big/object", data)
	got := get(t, b, "big/object")
	require.Equal(t, len(data), len(got))
	assert.True(t, bytes.Equal(data, got), "large object content differs")
	info, err := b.Stat(context.Background(), "big/object")
	require.NoError(t, err)
	assert.Equal(t, int64(len(data)), info.Size)
}

func testSizeMismatch(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	err := b.Put(ctx, "short", bytes.NewReader([]byte("abc")), 10)
	require.Error(t, err, "a reader shorter than size must fail")
	_, err = b.Stat(ctx, "short")
	assert.ErrorIs(t, err, storage.ErrNotFound, "failed Put must not leave an object")
	assert.Empty(t, list(t, b, ""))
}

type failingReader struct {
	data []byte
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if len(f.data) == 0 {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func testReaderError(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	boom := errors.New("boom")
	err := b.Put(ctx, "failing/obj", &failingReader{data: make([]byte, 100_000), err: boom}, 200_000)
	require.Error(t, err)
	assert.ErrorIs(t, err, boom, "reader errors must be wrapped")
	_, err = b.Stat(ctx, "failing/obj")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	assert.Empty(t, list(t, b, ""), "failed Put must not leave an object")
	// The key is still writable.
	put(t, b, "failing/obj", []byte("ok"))
}

func testCancelled(t *testing.T, b storage.Backend) {
	put(t, b, "c/existing", []byte("x"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := b.Put(ctx, "c/new", bytes.NewReader([]byte("x")), 1)
	assert.ErrorIs(t, err, context.Canceled, "put")
	_, err = b.List(ctx, "c/")
	assert.ErrorIs(t, err, context.Canceled, "list")
	_, err = b.Stat(context.Background(), "c/new")
	assert.ErrorIs(t, err, storage.ErrNotFound, "cancelled Put must not store the object")
}

// endlessReader produces data forever, cancelling its context after limit
// bytes.
type endlessReader struct {
	n, limit int
	cancel   context.CancelFunc
}

func (r *endlessReader) Read(p []byte) (int, error) {
	if r.n >= r.limit {
		r.cancel()
	}
	if len(p) > 32<<10 {
		p = p[:32<<10]
	}
	r.n += len(p)
	return len(p), nil
}

func testCancelMidStream(t *testing.T, b storage.Backend) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- b.Put(ctx, "mid/stream", &endlessReader{limit: 1 << 20, cancel: cancel}, -1)
	}()
	select {
	case err := <-done:
		require.Error(t, err)
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("Put of an endless stream did not stop after its context was cancelled")
	}
	_, err := b.Stat(context.Background(), "mid/stream")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	assert.Empty(t, list(t, b, ""))
}

func testString(t *testing.T, b storage.Backend) {
	assert.NotEmpty(t, b.String())
}

// testListDir checks the one-level listing (storage.ListDir, with the
// backend's DirLister when it has one) against the full listing it stands
// for.
func testListDir(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	for _, k := range []string{"ld/a", "ld/b/1", "ld/b/2", "ld/b/c/3", "ld/bx", "ld/c/d/4", "ldx/5", "lda/6", "top"} {
		put(t, b, k, []byte(k))
	}
	_, native := b.(storage.DirLister)
	t.Logf("native ListDir: %v", native)
	for _, tc := range []struct {
		prefix     string
		objs, dirs []string
	}{
		{"", []string{"top"}, []string{"ld/", "lda/", "ldx/"}},
		{"ld/", []string{"ld/a", "ld/bx"}, []string{"ld/b/", "ld/c/"}},
		{"ld/b", []string{"ld/bx"}, []string{"ld/b/"}},
		{"ld/b/", []string{"ld/b/1", "ld/b/2"}, []string{"ld/b/c/"}},
		{"ld/c/", []string{}, []string{"ld/c/d/"}},
		{"ld", []string{}, []string{"ld/", "lda/", "ldx/"}},
		{"none/", []string{}, []string{}},
	} {
		objs, dirs, err := storage.ListDir(ctx, b, tc.prefix)
		require.NoError(t, err, tc.prefix)
		assert.Equal(t, tc.objs, keys(objs), "objects under %q", tc.prefix)
		assert.Equal(t, tc.dirs, dirs, "directories under %q", tc.prefix)
		for _, o := range objs {
			assert.Equal(t, int64(len(o.Key)), o.Size, o.Key)
		}
		all, err := b.List(ctx, tc.prefix)
		require.NoError(t, err)
		wantObjs, wantDirs := storage.SplitDir(tc.prefix, all)
		assert.Equal(t, keys(wantObjs), keys(objs), "ListDir(%q) and List disagree", tc.prefix)
		assert.Equal(t, wantDirs, dirs, "ListDir(%q) and List disagree", tc.prefix)
	}
	// A deleted directory's last object takes the directory with it.
	require.NoError(t, b.Delete(ctx, "ld/c/d/4"))
	_, dirs, err := storage.ListDir(ctx, b, "ld/")
	require.NoError(t, err)
	assert.Equal(t, []string{"ld/b/"}, dirs)
}
