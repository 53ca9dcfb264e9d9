package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/ratelimit"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/memory"
)

// flakyPuts fails every Put after the first ok ones, like an agent whose
// network (or process) dies in the middle of a backup.
type flakyPuts struct {
	storage.Backend
	ok   int64
	puts atomic.Int64
}

var errPutFailed = errors.New("injected storage failure")

// Put stores the first ok objects and fails the rest. The first ok are
// stored whatever happens to ctx: once a later Put fails, the upload cancels
// the Puts still in flight, and which of them reached the backend before the
// cancellation would otherwise vary from run to run.
func (f *flakyPuts) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if f.puts.Add(1) > f.ok {
		return errPutFailed
	}
	return f.Backend.Put(context.WithoutCancel(ctx), key, r, size)
}

// countingGets counts the Gets and bytes read from a backend.
type countingGets struct {
	storage.Backend
	gets  atomic.Int64
	bytes atomic.Int64
}

func (c *countingGets) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := c.Backend.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	c.gets.Add(1)
	return countingReader{rc, &c.bytes}, nil
}

type countingReader struct {
	io.ReadCloser
	n *atomic.Int64
}

func (r countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.n.Add(int64(n))
	return n, err
}

var contentName = regexp.MustCompile(`^chunks/[0-9a-f]{32}(\.zst|\.lz4|\.s2|\.gz|)(\.enc)?$`)

func TestContentNamedChunks(t *testing.T) {
	nameKey := dataKey(t)
	data := textData(20*cs+17, 1)
	b := memory.New()
	res := upload(t, b, data, pipeline.UploadOptions{NameKey: nameKey, Parallelism: 3})
	seen := map[string]bool{}
	off := 0
	for i, c := range res.Chunks {
		assert.Equal(t, i, c.Index, "chunks keep stream order")
		assert.Regexp(t, contentName, c.Key)
		assert.Equal(t, pipeline.ContentChunkKey(nameKey, data[off:off+int(c.RawSize)], 0, ".zst"), c.Key)
		off += int(c.RawSize)
		assert.LessOrEqual(t, c.RawSize, int64(cs), "content-defined chunks are at most the chunk size")
		if i < len(res.Chunks)-1 {
			assert.GreaterOrEqual(t, c.RawSize, int64(cs/4), "and at least a quarter of it")
		}
		assert.False(t, seen[c.Key])
		seen[c.Key] = true
	}
	assert.Equal(t, len(data), off)
	assert.Greater(t, len(res.Chunks), 20, "about 3/4 of the chunk size on average")
	assert.Less(t, len(res.Chunks), 60)
	t.Logf("%d bytes in %d content-defined chunks of at most %d", len(data), len(res.Chunks), cs)
	assert.Equal(t, res.StoredSize, res.UploadedBytes)
	assert.Zero(t, res.ReusedBytes)

	// The same content has the same name; another key or other content
	// gives another name.
	raw := []byte("chunk")
	assert.Equal(t, pipeline.ContentChunkKey(nameKey, raw, 0, ".zst"), pipeline.ContentChunkKey(nameKey, raw, 0, ".zst"))
	assert.NotEqual(t, pipeline.ContentChunkKey(nameKey, raw, 0, ".zst"), pipeline.ContentChunkKey(dataKey(t), raw, 0, ".zst"))
	assert.NotEqual(t, pipeline.ContentChunkKey(nameKey, raw, 0, ".zst"), pipeline.ContentChunkKey(nameKey, []byte("chunk2"), 0, ".zst"))
	assert.NotEqual(t, pipeline.ContentChunkKey(nameKey, raw, 0, ".zst"), pipeline.ContentChunkKey(nameKey, raw, 1, ".zst"), "a repeat has a name of its own")
	// Encrypted chunks are sealed at a position taken from their name.
	assert.Equal(t, uint64(7), pipeline.SealPosition(7, "chunks/00000007.zst.enc"))
	assert.Equal(t, uint64(0x0123456789abcdef), pipeline.SealPosition(7, "chunks/0123456789abcdef0123456789abcdef.zst.enc"))
	assert.Equal(t, uint64(0x0123456789abcdef), pipeline.SealPosition(7, "chunks/0123456789abcdef0123456789abcdef"))
	assert.Equal(t, uint64(7), pipeline.SealPosition(7, "chunks/0123456789abcdef0123456789abcdefX"))

	got, _, err := download(b, res, pipeline.DownloadOptions{ExpectRawSHA256: res.RawSHA256})
	require.NoError(t, err)
	assert.Equal(t, data, got)
	assert.Empty(t, pipeline.VerifyChunks(context.Background(), b, prefix, res.Chunks, res.Codec, 2))
}

// An upload interrupted after some chunks, then run again for the same
// backup, stores only the chunks that are missing.
func TestResumeSkipsStoredChunks(t *testing.T) {
	for _, enc := range []bool{false, true} {
		for _, codec := range allCodecNames {
			t.Run(fmt.Sprintf("%s/encrypted=%v", codec, enc), func(t *testing.T) {
				key := dataKey(t)
				data := textData(14*cs+100, 7)
				opt := func() pipeline.UploadOptions {
					o := pipeline.UploadOptions{Codec: codec, Parallelism: 3, NameKey: key, ChunkSize: cs}
					if enc {
						o.Cipher = newCipher(t, key, "b1")
					}
					return o
				}
				mem := memory.New()
				_, err := pipeline.Upload(context.Background(), &flakyPuts{Backend: mem, ok: 4}, prefix, bytes.NewReader(data), opt())
				require.ErrorIs(t, err, errPutFailed)
				left, err := mem.List(context.Background(), prefix)
				require.NoError(t, err)
				require.Len(t, left, 4, "the failed attempt left 4 chunks")

				o := opt()
				o.Resume = true
				var last pipeline.Progress
				o.Progress = func(p pipeline.Progress) { last = p }
				res := upload(t, mem, data, o)
				require.Greater(t, len(res.Chunks), 8)
				assert.Equal(t, 4, res.ReusedChunks)
				assert.Positive(t, res.ReusedBytes)
				assert.Equal(t, res.StoredSize, res.UploadedBytes+res.ReusedBytes)
				assert.Less(t, res.UploadedBytes, res.StoredSize)
				assert.Equal(t, res.ReusedBytes, last.ReusedBytes)
				t.Logf("stored %d bytes: uploaded %d, reused %d", res.StoredSize, res.UploadedBytes, res.ReusedBytes)

				// The manifest's sizes and sha256s are those of the stored
				// objects, reused or not.
				all, err := mem.List(context.Background(), prefix)
				require.NoError(t, err)
				require.Len(t, all, len(res.Chunks))
				for _, c := range res.Chunks {
					assert.Equal(t, c.SHA256, sha(storedObject(t, mem, prefix+c.Key)), c.Key)
				}
				assert.Empty(t, pipeline.VerifyChunks(context.Background(), mem, prefix, res.Chunks, codec, 2))
				dopt := pipeline.DownloadOptions{ExpectRawSHA256: res.RawSHA256}
				if enc {
					dopt.Cipher = newCipher(t, key, "b1")
				}
				got, _, err := download(mem, res, dopt)
				require.NoError(t, err)
				assert.True(t, bytes.Equal(data, got))

				// A third run reuses everything.
				o = opt()
				o.Resume = true
				again := upload(t, mem, data, o)
				assert.Equal(t, again.StoredSize, again.ReusedBytes)
				assert.Zero(t, again.UploadedBytes)
				assert.Equal(t, res.Chunks, again.Chunks)
			})
		}
	}
}

// A stream that changed (a re-run of a backup tool on a live database)
// reuses the chunks that did not: also after bytes were inserted or removed
// before them, since boundaries follow the content.
func TestResumeReusesOnlyIdenticalChunks(t *testing.T) {
	for name, change := range map[string]func([]byte) []byte{
		"overwritten": func(d []byte) []byte { d = bytes.Clone(d); copy(d[2*cs+10:], "CHANGED"); return d },
		"inserted":    func(d []byte) []byte { return append(textData(1000, 99), d...) },
		"removed":     func(d []byte) []byte { return d[777:] },
	} {
		t.Run(name, func(t *testing.T) {
			// A fixed key: it decides where the content-defined cuts fall,
			// so a random one would make the test's outcome vary by run.
			key := bytes.Repeat([]byte{0x5a}, 32)
			data := textData(12*cs, 3)
			mem := memory.New()
			first := upload(t, mem, data, pipeline.UploadOptions{NameKey: key, Cipher: newCipher(t, key, "b1")})
			changed := change(data)
			res := upload(t, mem, changed, pipeline.UploadOptions{NameKey: key, Cipher: newCipher(t, key, "b1"), Resume: true})
			t.Logf("%d of %d chunks reused (%d of %d bytes)", res.ReusedChunks, len(res.Chunks), res.ReusedBytes, res.StoredSize)
			assert.GreaterOrEqual(t, res.ReusedBytes*3, res.StoredSize*2, "only the chunks around the change are new (first upload: %d chunks)", len(first.Chunks))
			assert.Less(t, res.ReusedChunks, len(res.Chunks))
			got, _, err := download(mem, res, pipeline.DownloadOptions{ExpectRawSHA256: res.RawSHA256, Cipher: newCipher(t, key, "b1")})
			require.NoError(t, err)
			assert.Equal(t, changed, got)
		})
	}
}

// Repeated content gets an object per occurrence (every manifest entry is
// an object of its own), restores at every position (encrypted too: a
// chunk is bound to its name, not its index), and is reused on a retry.
func TestRepeatedContentGetsAnObjectPerOccurrence(t *testing.T) {
	key := dataKey(t)
	block := textData(3*cs, 5)
	data := append(append(append(bytes.Clone(block), make([]byte, 4*cs)...), block...), make([]byte, 4*cs)...)
	mem := memory.New()
	res := upload(t, mem, data, pipeline.UploadOptions{NameKey: key, Cipher: newCipher(t, key, "b1"), Parallelism: 4})
	sizes := map[int64]int{}
	for _, c := range res.Chunks {
		sizes[c.StoredSize]++
	}
	repeated := 0
	for _, n := range sizes {
		repeated = max(repeated, n)
	}
	assert.GreaterOrEqual(t, repeated, 4, "the stream repeats chunks (zero runs at the maximum size)")
	objs, err := mem.List(context.Background(), prefix)
	require.NoError(t, err)
	assert.Len(t, objs, len(res.Chunks), "an object per chunk")
	var total int64
	for _, o := range objs {
		total += o.Size
	}
	assert.Equal(t, total, res.StoredSize)
	assert.Equal(t, res.StoredSize, res.UploadedBytes)
	got, _, err := download(mem, res, pipeline.DownloadOptions{ExpectRawSHA256: res.RawSHA256, Cipher: newCipher(t, key, "b1")})
	require.NoError(t, err)
	assert.Equal(t, data, got)
	assert.Empty(t, pipeline.VerifyChunks(context.Background(), mem, prefix, res.Chunks, res.Codec, 2))
	again := upload(t, mem, data, pipeline.UploadOptions{NameKey: key, Cipher: newCipher(t, key, "b1"), Resume: true})
	assert.Equal(t, again.StoredSize, again.ReusedBytes)
	assert.Equal(t, res.Chunks, again.Chunks)
}

// A leftover object under a chunk's name with another size is replaced.
func TestResumeReplacesMismatchedLeftover(t *testing.T) {
	key := dataKey(t)
	data := textData(2*cs, 5)
	mem := memory.New()
	clean := upload(t, memory.New(), data, pipeline.UploadOptions{NameKey: key})
	require.NoError(t, mem.Put(context.Background(), prefix+clean.Chunks[1].Key, bytes.NewReader([]byte("junk")), 4))
	res := upload(t, mem, data, pipeline.UploadOptions{NameKey: key, Resume: true})
	assert.Zero(t, res.ReusedChunks)
	assert.Equal(t, clean.Chunks, res.Chunks)
	got, _, err := download(mem, res, pipeline.DownloadOptions{ExpectRawSHA256: res.RawSHA256})
	require.NoError(t, err)
	assert.Equal(t, data, got)
}

// A leftover of the right size but other bytes (an attempt at another
// compression level stores the same content under the same name) is not
// taken for the chunk: it is read back, found different, and replaced, so
// the manifest's sha256 is that of what is stored.
func TestResumeReplacesSameSizeLeftoverWithOtherBytes(t *testing.T) {
	key := dataKey(t)
	data := textData(3*cs, 6)
	mem := memory.New()
	clean := upload(t, memory.New(), data, pipeline.UploadOptions{NameKey: key})
	other := bytes.Repeat([]byte{0x5a}, int(clean.Chunks[1].StoredSize))
	require.NoError(t, mem.Put(context.Background(), prefix+clean.Chunks[1].Key, bytes.NewReader(other), int64(len(other))))
	res := upload(t, mem, data, pipeline.UploadOptions{NameKey: key, Resume: true})
	assert.Zero(t, res.ReusedChunks, "same size, other bytes: not reused")
	assert.Equal(t, clean.Chunks, res.Chunks)
	got, _, err := download(mem, res, pipeline.DownloadOptions{ExpectRawSHA256: res.RawSHA256})
	require.NoError(t, err, "every stored chunk matches the manifest")
	assert.Equal(t, data, got)

	// The identical leftover is still reused.
	again := upload(t, mem, data, pipeline.UploadOptions{NameKey: key, Resume: true})
	assert.Equal(t, len(clean.Chunks), again.ReusedChunks)
}

// Without Resume, a chunk stored concurrently by another attempt (Put says
// it exists) is accepted when its size matches.
func TestContentNamedPutExistsIsAccepted(t *testing.T) {
	key := dataKey(t)
	data := textData(3*cs, 9)
	mem := memory.New()
	first := upload(t, mem, data, pipeline.UploadOptions{NameKey: key, Cipher: newCipher(t, key, "b1")})
	res := upload(t, mem, data, pipeline.UploadOptions{NameKey: key, Cipher: newCipher(t, key, "b1")})
	assert.Equal(t, len(first.Chunks), res.ReusedChunks)
	// Index-named chunks keep refusing to overwrite.
	upload(t, mem, data, pipeline.UploadOptions{})
	_, err := pipeline.Upload(context.Background(), mem, prefix, bytes.NewReader(data), pipeline.UploadOptions{ChunkSize: cs})
	assert.ErrorIs(t, err, storage.ErrExists)
}

func TestChunkCache(t *testing.T) {
	key := dataKey(t)
	data := textData(8*cs+5, 11)
	mem := memory.New()
	res := upload(t, mem, data, pipeline.UploadOptions{NameKey: key, Cipher: newCipher(t, key, "b1")})
	remote := &countingGets{Backend: mem}
	dir := filepath.Join(t.TempDir(), "cache")
	fetch := func(c *pipeline.ChunkCache, opt pipeline.DownloadOptions) ([]byte, error) {
		var out bytes.Buffer
		opt.Cipher = newCipher(t, key, "b1")
		opt.ExpectRawSHA256 = res.RawSHA256
		opt.Parallelism = 3
		_, err := pipeline.Download(context.Background(), c, prefix, res.Chunks, res.Codec, &out, opt)
		return out.Bytes(), err
	}

	// An interrupted download (the writer fails after 3 chunks) caches the
	// chunks it read.
	c1, err := pipeline.NewChunkCache(remote, dir, nil)
	require.NoError(t, err)
	c1.Add(prefix, res.Chunks)
	var n int
	_, err = pipeline.Download(context.Background(), c1, prefix, res.Chunks, res.Codec, writerFunc(func(p []byte) (int, error) {
		if n++; n > 3 {
			return 0, errors.New("extractor died")
		}
		return len(p), nil
	}), pipeline.DownloadOptions{Cipher: newCipher(t, key, "b1"), Parallelism: 1})
	require.Error(t, err)
	d1, c1cached := c1.Stats()
	assert.Zero(t, c1cached)
	assert.Positive(t, d1)

	// The retry (a new cache on the same directory, as after an agent
	// restart) reads only the rest from the repository.
	remote.gets.Store(0)
	remote.bytes.Store(0)
	c2, err := pipeline.NewChunkCache(remote, dir, nil)
	require.NoError(t, err)
	c2.Add(prefix, res.Chunks)
	got, err := fetch(c2, pipeline.DownloadOptions{})
	require.NoError(t, err)
	assert.Equal(t, data, got)
	downloaded, cached := c2.Stats()
	assert.Equal(t, res.StoredSize, downloaded+cached)
	assert.GreaterOrEqual(t, cached, res.Chunks[0].StoredSize+res.Chunks[1].StoredSize+res.Chunks[2].StoredSize)
	assert.Equal(t, downloaded, remote.bytes.Load(), "only uncached chunks are read from the repository")
	assert.Less(t, remote.gets.Load(), int64(len(res.Chunks)))
	t.Logf("retry: %d bytes downloaded, %d from the cache", downloaded, cached)

	// A cached copy that went bad is fetched again, not served.
	var victim string
	require.NoError(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && victim == "" {
			victim = p
		}
		return err
	}))
	require.NotEmpty(t, victim)
	b, err := os.ReadFile(victim)
	require.NoError(t, err)
	b[len(b)/2] ^= 1
	require.NoError(t, os.WriteFile(victim, b, 0o600))
	c3, err := pipeline.NewChunkCache(remote, dir, nil)
	require.NoError(t, err)
	c3.Add(prefix, res.Chunks)
	got, err = fetch(c3, pipeline.DownloadOptions{})
	require.NoError(t, err)
	assert.Equal(t, data, got)
	downloaded, cached = c3.Stats()
	assert.Positive(t, downloaded, "the bad copy was fetched again")
	assert.Equal(t, res.StoredSize, downloaded+cached)

	// Objects that are not known chunks pass through; Remove drops a backup.
	require.NoError(t, c3.Remove(prefix))
	require.NoError(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			t.Errorf("%s left in the cache", p)
		}
		return err
	}))
	assert.Error(t, c3.Remove(""))
}

// Chunks that are reused or served from the cache do not wait for the
// bandwidth limiter: only bytes transferred count.
func TestLimiterCountsOnlyTransferredBytes(t *testing.T) {
	key := dataKey(t)
	data := randomData(8*cs, 21) // incompressible: 512 KiB stored
	mem := memory.New()
	res := upload(t, mem, data, pipeline.UploadOptions{NameKey: key})
	slow := ratelimit.New(64 << 10) // 64 KiB/s: 8 s for the whole backup
	start := time.Now()
	again := upload(t, mem, data, pipeline.UploadOptions{NameKey: key, Resume: true, Limiter: slow})
	assert.Equal(t, again.StoredSize, again.ReusedBytes)
	assert.Less(t, time.Since(start), 2*time.Second, "reused chunks do not wait for the limiter")

	dir := filepath.Join(t.TempDir(), "cache")
	fill, err := pipeline.NewChunkCache(mem, dir, nil)
	require.NoError(t, err)
	fill.Add(prefix, res.Chunks)
	_, _, err = download(fill, res, pipeline.DownloadOptions{})
	require.NoError(t, err)
	cached, err := pipeline.NewChunkCache(mem, dir, slow)
	require.NoError(t, err)
	cached.Add(prefix, res.Chunks)
	start = time.Now()
	got, _, err := download(cached, res, pipeline.DownloadOptions{ExpectRawSHA256: res.RawSHA256})
	require.NoError(t, err)
	assert.Equal(t, data, got)
	assert.Less(t, time.Since(start), 2*time.Second, "cached chunks do not wait for the limiter")
	d, c := cached.Stats()
	assert.Zero(t, d)
	assert.Equal(t, res.StoredSize, c)

	// Repository reads through the cache do wait.
	limited, err := pipeline.NewChunkCache(mem, filepath.Join(t.TempDir(), "c2"), ratelimit.New(1<<20))
	require.NoError(t, err)
	limited.Add(prefix, res.Chunks)
	start = time.Now()
	_, _, err = download(limited, res, pipeline.DownloadOptions{})
	require.NoError(t, err)
	assert.Greater(t, time.Since(start), 300*time.Millisecond, "512 KiB at 1 MiB/s")
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// localFiles is a repository whose objects are files on this host (as the
// local backend's are), through a wrapper with Unwrap as the metrics one.
type localFiles struct{ storage.Backend }

func (localFiles) LocalFiles() bool { return true }

type unwrapper struct{ b storage.Backend }

func (u unwrapper) Unwrap() storage.Backend { return u.b }
func (u unwrapper) Get(ctx context.Context, k string) (io.ReadCloser, error) {
	return u.b.Get(ctx, k)
}
func (u unwrapper) Put(ctx context.Context, k string, r io.Reader, n int64) error {
	return u.b.Put(ctx, k, r, n)
}
func (u unwrapper) Stat(ctx context.Context, k string) (storage.ObjectInfo, error) {
	return u.b.Stat(ctx, k)
}
func (u unwrapper) List(ctx context.Context, p string) ([]storage.ObjectInfo, error) {
	return u.b.List(ctx, p)
}
func (u unwrapper) Delete(ctx context.Context, k string) error { return u.b.Delete(ctx, k) }
func (u unwrapper) String() string                             { return "wrapped " + u.b.String() }

// Over a repository of local files the cache writes no copies (reading the
// chunk again costs what reading a copy would), still counts what it reads,
// and a retry reads the repository again.
func TestChunkCacheKeepsNoCopiesOfLocalFiles(t *testing.T) {
	data := textData(6*cs+5, 13)
	mem := memory.New()
	res := upload(t, mem, data, pipeline.UploadOptions{})
	remote := &countingGets{Backend: mem}
	dir := filepath.Join(t.TempDir(), "cache")
	for attempt := 0; attempt < 2; attempt++ {
		c, err := pipeline.NewChunkCache(unwrapper{localFiles{remote}}, dir, nil)
		require.NoError(t, err)
		assert.False(t, c.KeepsCopies())
		c.Add(prefix, res.Chunks)
		remote.bytes.Store(0)
		var out bytes.Buffer
		_, err = pipeline.Download(context.Background(), c, prefix, res.Chunks, res.Codec, &out,
			pipeline.DownloadOptions{ExpectRawSHA256: res.RawSHA256, Parallelism: 2})
		require.NoError(t, err)
		assert.Equal(t, data, out.Bytes())
		downloaded, cached := c.Stats()
		assert.Equal(t, res.StoredSize, downloaded, "attempt %d reads every chunk from the repository", attempt)
		assert.Zero(t, cached)
		assert.Equal(t, res.StoredSize, remote.bytes.Load())
	}
	require.NoError(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			t.Errorf("%s written to the cache of a local repository", p)
		}
		return err
	}))
	c, err := pipeline.NewChunkCache(mem, dir, nil)
	require.NoError(t, err)
	assert.True(t, c.KeepsCopies(), "a repository that is not local files is cached")
}

// flipOnce serves one chunk with a byte flipped (its size intact), once.
type flipOnce struct {
	storage.Backend
	key  string
	done atomic.Bool
}

func (f *flipOnce) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := f.Backend.Get(ctx, key)
	if err != nil || key != f.key || f.done.Swap(true) {
		return rc, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, err
	}
	b[len(b)/2] ^= 1
	return io.NopCloser(bytes.NewReader(b)), nil
}

// A chunk that the repository delivered corrupt (of the right size) is
// refused, and the copy the cache kept of it is not served to a later
// download: it is fetched again.
func TestChunkCacheDoesNotServeACorruptDelivery(t *testing.T) {
	data := textData(4*cs+5, 17)
	mem := memory.New()
	res := upload(t, mem, data, pipeline.UploadOptions{})
	bad := &flipOnce{Backend: mem, key: prefix + res.Chunks[2].Key}
	dir := filepath.Join(t.TempDir(), "cache")
	fetch := func() ([]byte, *pipeline.ChunkCache, error) {
		c, err := pipeline.NewChunkCache(bad, dir, nil)
		require.NoError(t, err)
		c.Add(prefix, res.Chunks)
		var out bytes.Buffer
		_, err = pipeline.Download(context.Background(), c, prefix, res.Chunks, res.Codec, &out,
			pipeline.DownloadOptions{ExpectRawSHA256: res.RawSHA256, Parallelism: 1})
		return out.Bytes(), c, err
	}
	_, _, err := fetch()
	require.ErrorIs(t, err, pipeline.ErrCorrupt)
	var ce *pipeline.ChunkError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 2, ce.Index)

	got, c, err := fetch()
	require.NoError(t, err)
	assert.Equal(t, data, got)
	downloaded, cached := c.Stats()
	assert.GreaterOrEqual(t, downloaded, res.Chunks[2].StoredSize, "the corrupt copy is fetched again")
	assert.Equal(t, res.StoredSize, downloaded+cached)
}
