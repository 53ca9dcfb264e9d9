package pipeline_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/memory"
)

const (
	prefix = "inst/backups/b1/"
	cs     = pipeline.MinChunkSize // small chunks: many chunks from little data
)

// randomData returns n incompressible bytes.
func randomData(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

// textData returns n compressible bytes (random words).
func textData(n int, seed uint64) []byte {
	words := strings.Fields("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor INSERT INTO t1 VALUES (1, 'x'); 0000 ffff")
	rng := rand.New(rand.NewPCG(seed, 2))
	var buf bytes.Buffer
	for buf.Len() < n {
		buf.WriteString(words[rng.IntN(len(words))])
		buf.WriteByte(' ')
	}
	return buf.Bytes()[:n]
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func upload(t *testing.T, b storage.Backend, data []byte, opt pipeline.UploadOptions) *pipeline.UploadResult {
	t.Helper()
	if opt.ChunkSize == 0 {
		opt.ChunkSize = cs
	}
	res, err := pipeline.Upload(context.Background(), b, prefix, bytes.NewReader(data), opt)
	require.NoError(t, err)
	return res
}

func download(b storage.Backend, res *pipeline.UploadResult, opt pipeline.DownloadOptions) ([]byte, *pipeline.DownloadResult, error) {
	var out bytes.Buffer
	dres, err := pipeline.Download(context.Background(), b, prefix, res.Chunks, res.Codec, &out, opt)
	return out.Bytes(), dres, err
}

// replace overwrites an object (Put never overwrites, so delete first).
func replace(t *testing.T, b storage.Backend, key string, mutate func([]byte) []byte) {
	t.Helper()
	ctx := context.Background()
	rc, err := b.Get(ctx, key)
	require.NoError(t, err)
	data, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.NoError(t, rc.Close())
	data = mutate(bytes.Clone(data))
	require.NoError(t, b.Delete(ctx, key))
	require.NoError(t, b.Put(ctx, key, bytes.NewReader(data), int64(len(data))))
}

// noLeak records the goroutine count and returns a check that it is back to
// that level.
func noLeak(t *testing.T) func() {
	t.Helper()
	before := runtime.NumGoroutine()
	return func() {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		assert.LessOrEqual(t, runtime.NumGoroutine(), before, "goroutines left running")
	}
}

func TestRoundTrip(t *testing.T) {
	sizes := []int{0, 1, cs - 1, cs, cs + 1, 3<<20 + 12345}
	for _, codec := range []string{"zstd", "s2", "gzip", "none"} {
		for _, kind := range []string{"random", "text"} {
			for _, size := range sizes {
				for _, par := range []int{1, 4} {
					name := fmt.Sprintf("%s/%s/%d/par%d", codec, kind, size, par)
					t.Run(name, func(t *testing.T) {
						data := randomData(size, uint64(size))
						if kind == "text" {
							data = textData(size, uint64(size))
						}
						b := memory.New()
						res := upload(t, b, data, pipeline.UploadOptions{Codec: codec, Parallelism: par})
						checkUploadResult(t, b, data, res, codec)

						got, dres, err := download(b, res, pipeline.DownloadOptions{Parallelism: par, ExpectRawSHA256: res.RawSHA256})
						require.NoError(t, err)
						require.True(t, bytes.Equal(data, got), "downloaded data differs")
						assert.Equal(t, len(res.Chunks), dres.Chunks)
						assert.Equal(t, int64(size), dres.RawSize)
						assert.Equal(t, res.StoredSize, dres.StoredSize)
						assert.Equal(t, res.RawSHA256, dres.RawSHA256)
						assert.Empty(t, pipeline.VerifyChunks(context.Background(), b, prefix, res.Chunks, codec, par))
					})
				}
			}
		}
	}
}

func checkUploadResult(t *testing.T, b storage.Backend, data []byte, res *pipeline.UploadResult, codec string) {
	t.Helper()
	c, err := pipeline.ParseCodec(codec)
	require.NoError(t, err)
	assert.Equal(t, c.Name(), res.Codec)
	assert.Equal(t, int64(len(data)), res.RawSize)
	assert.Equal(t, sha(data), res.RawSHA256)
	wantChunks := (len(data) + cs - 1) / cs
	require.Len(t, res.Chunks, wantChunks)
	require.NotNil(t, res.Chunks)

	objects, err := b.List(context.Background(), prefix)
	require.NoError(t, err)
	require.Len(t, objects, wantChunks)
	var raw, stored int64
	for i, ch := range res.Chunks {
		assert.Equal(t, i, ch.Index)
		assert.Equal(t, fmt.Sprintf("chunks/%08d%s", i, c.Ext()), ch.Key)
		assert.Equal(t, prefix+ch.Key, objects[i].Key)
		assert.Equal(t, ch.StoredSize, objects[i].Size)
		wantRaw := int64(cs)
		if i == wantChunks-1 {
			wantRaw = int64(len(data) - i*cs)
		}
		assert.Equal(t, wantRaw, ch.RawSize, "chunk %d raw size", i)
		assert.True(t, manifest.IsSHA256Hex(ch.SHA256))
		raw += ch.RawSize
		stored += ch.StoredSize
	}
	assert.Equal(t, int64(len(data)), raw)
	assert.Equal(t, stored, res.StoredSize)
}

func TestUploadChunkSHA256IsOfStoredBytes(t *testing.T) {
	b := memory.New()
	res := upload(t, b, textData(200_000, 1), pipeline.UploadOptions{Codec: "zstd"})
	for _, ch := range res.Chunks {
		rc, err := b.Get(context.Background(), prefix+ch.Key)
		require.NoError(t, err)
		data, err := io.ReadAll(rc)
		require.NoError(t, err)
		assert.Equal(t, sha(data), ch.SHA256)
		assert.Less(t, ch.StoredSize, ch.RawSize, "text must compress")
	}
}

func TestUploadDefaults(t *testing.T) {
	b := memory.New()
	res, err := pipeline.Upload(context.Background(), b, "", bytes.NewReader([]byte("abc")), pipeline.UploadOptions{})
	require.NoError(t, err)
	assert.Equal(t, "zstd", res.Codec)
	assert.Equal(t, pipeline.DefaultZstdLevel, res.Level)
	assert.Equal(t, 1, res.Level, "zstd level 1 by default")
	assert.Equal(t, int64(pipeline.DefaultChunkSize), res.ChunkSize)
	require.Len(t, res.Chunks, 1)
	assert.Equal(t, "chunks/00000000.zst", res.Chunks[0].Key)
	_, err = b.Stat(context.Background(), "chunks/00000000.zst")
	require.NoError(t, err)
}

func TestUploadOptionErrors(t *testing.T) {
	ctx := context.Background()
	b := memory.New()
	r := bytes.NewReader([]byte("x"))
	_, err := pipeline.Upload(ctx, b, prefix, r, pipeline.UploadOptions{ChunkSize: 1000})
	assert.ErrorContains(t, err, "chunk size 1000 is out of range")
	_, err = pipeline.Upload(ctx, b, prefix, r, pipeline.UploadOptions{ChunkSize: 2 << 30})
	assert.ErrorContains(t, err, "out of range")
	_, err = pipeline.Upload(ctx, b, prefix, r, pipeline.UploadOptions{Codec: "lzma"})
	assert.ErrorContains(t, err, `unknown compression codec "lzma" (valid: zstd, lz4, s2, gzip, none)`)
	_, err = pipeline.Upload(ctx, b, prefix, r, pipeline.UploadOptions{Codec: "zstd", Level: 22})
	assert.ErrorContains(t, err, "out of range 1..19")
	_, err = pipeline.Upload(ctx, b, "no-slash", r, pipeline.UploadOptions{})
	assert.ErrorContains(t, err, "must end with '/'")
	_, err = pipeline.Upload(ctx, b, "/abs/", r, pipeline.UploadOptions{})
	assert.ErrorIs(t, err, storage.ErrInvalidKey)
	objs, err := b.List(ctx, "")
	require.NoError(t, err)
	assert.Empty(t, objs)
}

func TestParseCodec(t *testing.T) {
	for name, want := range map[string]struct {
		name, ext string
		level     int
	}{
		"zstd":   {"zstd", ".zst", 1},
		"ZSTD":   {"zstd", ".zst", 1},
		"lz4":    {"lz4", ".lz4", 1},
		" LZ4":   {"lz4", ".lz4", 1},
		" s2 ":   {"s2", ".s2", 1},
		"gzip":   {"gzip", ".gz", 6},
		"none":   {"none", "", 0},
		"GZip":   {"gzip", ".gz", 6},
		"s2\t\n": {"s2", ".s2", 1},
	} {
		c, err := pipeline.ParseCodec(name)
		require.NoError(t, err, name)
		assert.Equal(t, want.name, c.Name())
		assert.Equal(t, want.ext, c.Ext())
		assert.Equal(t, want.level, c.Level())
	}
	for _, bad := range []string{"", "lz5", "lz4:1", "zstd:3", "xz"} {
		_, err := pipeline.ParseCodec(bad)
		require.Error(t, err, bad)
		assert.ErrorContains(t, err, "valid: zstd, lz4, s2, gzip, none")
	}
	for _, tc := range []struct {
		name  string
		level int
		ok    bool
	}{
		{"zstd", 1, true}, {"zstd", 19, true}, {"zstd", 20, false}, {"zstd", -1, false},
		{"gzip", 1, true}, {"gzip", 9, true}, {"gzip", 10, false}, {"gzip", -1, true},
		{"s2", 3, true}, {"s2", 4, false},
		{"lz4", 1, true}, {"lz4", 2, true}, {"lz4", 10, true}, {"lz4", 11, false}, {"lz4", -1, false},
		{"none", 0, true}, {"none", 1, false},
	} {
		c, err := pipeline.NewCodec(tc.name, tc.level)
		if tc.ok {
			require.NoError(t, err, "%s %d", tc.name, tc.level)
			if tc.level > 0 {
				assert.Equal(t, tc.level, c.Level())
			}
		} else {
			assert.Error(t, err, "%s %d", tc.name, tc.level)
		}
	}
}

func TestChunkKey(t *testing.T) {
	assert.Equal(t, "chunks/00000012.zst", pipeline.ChunkKey(12, ".zst"))
	assert.Equal(t, "chunks/00000000", pipeline.ChunkKey(0, ""))
	assert.Equal(t, "chunks/123456789.gz", pipeline.ChunkKey(123456789, ".gz"))
}

func uploadFixture(t *testing.T, codec string) (*memory.Backend, []byte, *pipeline.UploadResult) {
	t.Helper()
	b := memory.New()
	data := textData(6*cs+100, 7)
	return b, data, upload(t, b, data, pipeline.UploadOptions{Codec: codec, Parallelism: 3})
}

func TestDownloadDetectsFlippedByte(t *testing.T) {
	for _, codec := range []string{"zstd", "s2", "gzip", "none"} {
		t.Run(codec, func(t *testing.T) {
			b, _, res := uploadFixture(t, codec)
			replace(t, b, prefix+res.Chunks[3].Key, func(d []byte) []byte { d[len(d)/2] ^= 0x01; return d })

			for _, par := range []int{1, 4} {
				var written bytes.Buffer
				_, err := pipeline.Download(context.Background(), b, prefix, res.Chunks, codec, &written, pipeline.DownloadOptions{Parallelism: par})
				require.Error(t, err)
				var ce *pipeline.ChunkError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, 3, ce.Index)
				assert.Equal(t, res.Chunks[3].Key, ce.Key)
				assert.True(t, ce.Corrupt())
				assert.ErrorIs(t, err, pipeline.ErrCorrupt)
				assert.Equal(t, fmt.Sprintf("chunk 3 (%s): sha256 mismatch: stored data is corrupt", res.Chunks[3].Key), err.Error())
				assert.LessOrEqual(t, written.Len(), 3*cs, "nothing at or after the corrupt chunk may be written")
			}

			problems := pipeline.VerifyChunks(context.Background(), b, prefix, res.Chunks, codec, 2)
			require.Len(t, problems, 1)
			assert.Equal(t, 3, problems[0].Index)
			assert.Contains(t, problems[0].Reason, "sha256 mismatch")
		})
	}
}

func TestDownloadDetectsMissingChunk(t *testing.T) {
	b, _, res := uploadFixture(t, "zstd")
	require.NoError(t, b.Delete(context.Background(), prefix+res.Chunks[5].Key))
	_, _, err := download(b, res, pipeline.DownloadOptions{Parallelism: 2})
	require.Error(t, err)
	var ce *pipeline.ChunkError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 5, ce.Index)
	assert.Contains(t, ce.Reason, "missing")
	assert.ErrorIs(t, err, storage.ErrNotFound)
	assert.NotErrorIs(t, err, pipeline.ErrCorrupt)
	assert.False(t, ce.Corrupt())
	assert.True(t, strings.HasPrefix(err.Error(), "chunk 5 (chunks/00000005.zst): missing"), err.Error())
}

func TestVerifyReportsAllProblems(t *testing.T) {
	b, _, res := uploadFixture(t, "s2")
	ctx := context.Background()
	require.NoError(t, b.Delete(ctx, prefix+res.Chunks[0].Key))
	replace(t, b, prefix+res.Chunks[2].Key, func(d []byte) []byte { return d[:len(d)-1] })
	replace(t, b, prefix+res.Chunks[4].Key, func(d []byte) []byte { return append(d, 0) })
	replace(t, b, prefix+res.Chunks[6].Key, func(d []byte) []byte { d[0] ^= 0x80; return d })

	problems := pipeline.VerifyChunks(ctx, b, prefix, res.Chunks, "s2", 3)
	require.Len(t, problems, 4)
	assert.Equal(t, 0, problems[0].Index)
	assert.ErrorIs(t, problems[0], storage.ErrNotFound)
	assert.Equal(t, 2, problems[1].Index)
	assert.Contains(t, problems[1].Error(), "size mismatch")
	assert.Equal(t, 4, problems[2].Index)
	assert.Contains(t, problems[2].Error(), "found more")
	assert.Equal(t, 6, problems[3].Index)
	assert.Contains(t, problems[3].Error(), "sha256 mismatch")
	for _, p := range problems[1:] {
		assert.ErrorIs(t, p, pipeline.ErrCorrupt)
	}

	// Download stops at the first one.
	_, _, err := download(b, res, pipeline.DownloadOptions{Parallelism: 1})
	var ce *pipeline.ChunkError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 0, ce.Index)
}

func TestVerifyArgumentErrors(t *testing.T) {
	b, _, res := uploadFixture(t, "zstd")
	problems := pipeline.VerifyChunks(context.Background(), b, prefix, res.Chunks, "bogus", 1)
	require.Len(t, problems, 1)
	assert.Equal(t, -1, problems[0].Index)
	assert.Empty(t, pipeline.VerifyChunks(context.Background(), b, prefix, nil, "zstd", 1))

	chunks := append([]manifest.Chunk(nil), res.Chunks...)
	chunks[1].Index = 7
	chunks[2].SHA256 = "nope"
	problems = pipeline.VerifyChunks(context.Background(), b, prefix, chunks, "", 0)
	require.Len(t, problems, 2)
	assert.Contains(t, problems[0].Reason, "invalid manifest entry")
	assert.Contains(t, problems[1].Reason, "sha256")
}

func TestVerifyCancelled(t *testing.T) {
	b, _, res := uploadFixture(t, "zstd")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	problems := pipeline.VerifyChunks(ctx, b, prefix, res.Chunks, "zstd", 2)
	require.Len(t, problems, len(res.Chunks))
	for _, p := range problems {
		assert.ErrorIs(t, p, context.Canceled)
		assert.NotErrorIs(t, p, pipeline.ErrCorrupt)
	}
}

func TestDownloadManifestLies(t *testing.T) {
	ctx := context.Background()
	b, data, res := uploadFixture(t, "zstd")

	t.Run("raw size smaller than real", func(t *testing.T) {
		chunks := append([]manifest.Chunk(nil), res.Chunks...)
		chunks[1].RawSize = 1000 // decompression must stop at 1000+slack bytes
		_, err := pipeline.Download(ctx, b, prefix, chunks, "zstd", io.Discard, pipeline.DownloadOptions{})
		var ce *pipeline.ChunkError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, 1, ce.Index)
		assert.ErrorIs(t, err, pipeline.ErrCorrupt)
		assert.ErrorContains(t, err, "larger than recorded")
	})
	t.Run("raw size larger than real", func(t *testing.T) {
		chunks := append([]manifest.Chunk(nil), res.Chunks...)
		chunks[2].RawSize += 10
		_, err := pipeline.Download(ctx, b, prefix, chunks, "zstd", io.Discard, pipeline.DownloadOptions{})
		var ce *pipeline.ChunkError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, 2, ce.Index)
		assert.Contains(t, ce.Reason, "raw size mismatch")
	})
	t.Run("wrong codec", func(t *testing.T) {
		_, err := pipeline.Download(ctx, b, prefix, res.Chunks, "gzip", io.Discard, pipeline.DownloadOptions{})
		var ce *pipeline.ChunkError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, 0, ce.Index)
		assert.Contains(t, ce.Reason, "cannot decompress")
	})
	t.Run("stream sha256", func(t *testing.T) {
		_, err := pipeline.Download(ctx, b, prefix, res.Chunks, "zstd", io.Discard,
			pipeline.DownloadOptions{ExpectRawSHA256: sha([]byte("other"))})
		require.Error(t, err)
		assert.ErrorIs(t, err, pipeline.ErrCorrupt)
		assert.ErrorContains(t, err, "sha256 of the restored stream")
		var ce *pipeline.ChunkError
		assert.False(t, errors.As(err, &ce))
		// And the correct one passes.
		var out bytes.Buffer
		_, err = pipeline.Download(ctx, b, prefix, res.Chunks, "zstd", &out, pipeline.DownloadOptions{ExpectRawSHA256: sha(data)})
		require.NoError(t, err)
		assert.Equal(t, data, out.Bytes())
	})
	t.Run("invalid entries", func(t *testing.T) {
		chunks := append([]manifest.Chunk(nil), res.Chunks...)
		chunks[0], chunks[1] = chunks[1], chunks[0]
		_, err := pipeline.Download(ctx, b, prefix, chunks, "zstd", io.Discard, pipeline.DownloadOptions{})
		var ce *pipeline.ChunkError
		require.ErrorAs(t, err, &ce)
		assert.Contains(t, ce.Reason, "invalid manifest entry")

		chunks = append([]manifest.Chunk(nil), res.Chunks...)
		chunks[0].RawSize = pipeline.MaxChunkSize + 1
		_, err = pipeline.Download(ctx, b, prefix, chunks, "zstd", io.Discard, pipeline.DownloadOptions{})
		assert.ErrorContains(t, err, "out of range")

		chunks = append([]manifest.Chunk(nil), res.Chunks...)
		chunks[0].Key = "../escape"
		_, err = pipeline.Download(ctx, b, "", chunks, "zstd", io.Discard, pipeline.DownloadOptions{})
		assert.ErrorIs(t, err, storage.ErrInvalidKey)
	})
	t.Run("bad arguments", func(t *testing.T) {
		_, err := pipeline.Download(ctx, b, prefix, res.Chunks, "lzma", io.Discard, pipeline.DownloadOptions{})
		assert.ErrorContains(t, err, "unknown compression codec")
		_, err = pipeline.Download(ctx, b, prefix, res.Chunks, "zstd", io.Discard, pipeline.DownloadOptions{ExpectRawSHA256: "abc"})
		assert.ErrorContains(t, err, "not 64 lowercase hex")
	})
}

func TestDownloadEmpty(t *testing.T) {
	var out bytes.Buffer
	res, err := pipeline.Download(context.Background(), memory.New(), prefix, nil, "zstd", &out,
		pipeline.DownloadOptions{ExpectRawSHA256: sha(nil)})
	require.NoError(t, err)
	assert.Equal(t, 0, res.Chunks)
	assert.Equal(t, sha(nil), res.RawSHA256)
	assert.Zero(t, out.Len())
}

// endless produces compressible data forever, counting bytes read.
type endless struct {
	n    atomic.Int64
	data []byte
}

func (e *endless) Read(p []byte) (int, error) {
	n := copy(p, e.data[int(e.n.Load())%len(e.data):])
	e.n.Add(int64(n))
	return n, nil
}

// warmUp runs a tiny upload and download so that lazily created shared
// codec state exists before goroutines are counted.
func warmUp(t *testing.T, codec string) {
	t.Helper()
	b := memory.New()
	res := upload(t, b, []byte("warm up"), pipeline.UploadOptions{Codec: codec})
	_, _, err := download(b, res, pipeline.DownloadOptions{})
	require.NoError(t, err)
}

func TestUploadCancelMidStream(t *testing.T) {
	warmUp(t, "zstd")
	check := noLeak(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	src := &endless{data: textData(1<<20, 3)}
	var calls atomic.Int32
	_, err := pipeline.Upload(ctx, memory.New(), prefix, src, pipeline.UploadOptions{
		ChunkSize: cs, Parallelism: 4,
		Progress: func(p pipeline.Progress) {
			if calls.Add(1) == 5 {
				cancel()
			}
		},
	})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Regexp(t, `^upload chunk \d+: `, err.Error())
	assert.Less(t, src.n.Load(), int64(20*cs), "reading must stop soon after cancellation")
	check()
}

// slowReader returns a little data per Read, slowly, until ctx is done.
type slowReader struct{}

func (slowReader) Read(p []byte) (int, error) {
	time.Sleep(time.Millisecond)
	return copy(p, bytes.Repeat([]byte("s"), min(len(p), 1024))), nil
}

func TestUploadCancelSlowReader(t *testing.T) {
	warmUp(t, "zstd")
	check := noLeak(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := pipeline.Upload(ctx, memory.New(), prefix, slowReader{}, pipeline.UploadOptions{ChunkSize: 16 << 20})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 2*time.Second, "cancellation must interrupt a chunk being read")
	assert.Contains(t, err.Error(), "upload chunk 0: read input")
	check()
}

func TestUploadReadError(t *testing.T) {
	boom := errors.New("mariabackup died")
	r := io.MultiReader(bytes.NewReader(textData(3*cs+5, 1)), &errReader{boom})
	b := memory.New()
	_, err := pipeline.Upload(context.Background(), b, prefix, r, pipeline.UploadOptions{ChunkSize: cs, Parallelism: 2})
	require.ErrorIs(t, err, boom)
	assert.ErrorContains(t, err, "upload chunk 3: read input: mariabackup died")
}

type errReader struct{ err error }

func (e *errReader) Read([]byte) (int, error) { return 0, e.err }

// faultyBackend wraps a backend: Put of keys containing failKey fail, Puts
// are delayed, and the maximum number of concurrent Puts is recorded.
type faultyBackend struct {
	storage.Backend
	failKey  string
	delay    time.Duration
	inFlight atomic.Int32
	maxSeen  atomic.Int32
	puts     atomic.Int32
}

func (f *faultyBackend) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	n := f.inFlight.Add(1)
	defer f.inFlight.Add(-1)
	for {
		m := f.maxSeen.Load()
		if n <= m || f.maxSeen.CompareAndSwap(m, n) {
			break
		}
	}
	f.puts.Add(1)
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if f.failKey != "" && strings.Contains(key, f.failKey) {
		return fmt.Errorf("put %s: %w", key, errInjected)
	}
	return f.Backend.Put(ctx, key, r, size)
}

var errInjected = errors.New("injected failure")

func TestUploadBackendError(t *testing.T) {
	warmUp(t, "s2")
	check := noLeak(t)
	fb := &faultyBackend{Backend: memory.New(), failKey: "00000005", delay: time.Millisecond}
	src := &endless{data: textData(1<<20, 4)}
	_, err := pipeline.Upload(context.Background(), fb, prefix, src, pipeline.UploadOptions{ChunkSize: cs, Parallelism: 3, Codec: "s2"})
	require.Error(t, err)
	assert.ErrorIs(t, err, errInjected)
	assert.ErrorContains(t, err, "upload chunk 5: put inst/backups/b1/chunks/00000005.s2: injected failure")
	assert.Less(t, src.n.Load(), int64(20*cs), "reading must stop after a failure")
	check()
}

func TestUploadParallelismBound(t *testing.T) {
	for _, par := range []int{1, 3} {
		fb := &faultyBackend{Backend: memory.New(), delay: 2 * time.Millisecond}
		data := textData(20*cs, 5)
		res, err := pipeline.Upload(context.Background(), fb, prefix, bytes.NewReader(data), pipeline.UploadOptions{ChunkSize: cs, Parallelism: par})
		require.NoError(t, err)
		assert.Len(t, res.Chunks, 20)
		assert.LessOrEqual(t, int(fb.maxSeen.Load()), par)
		if par > 1 {
			assert.Greater(t, int(fb.maxSeen.Load()), 1, "chunks should be stored in parallel")
		}
	}
}

func TestUploadProgress(t *testing.T) {
	fb := &faultyBackend{Backend: memory.New(), delay: time.Millisecond}
	data := textData(10*cs+17, 6)
	var (
		mu     sync.Mutex
		calls  []pipeline.Progress
		inside atomic.Int32
	)
	res, err := pipeline.Upload(context.Background(), fb, prefix, bytes.NewReader(data), pipeline.UploadOptions{
		ChunkSize: cs, Parallelism: 4,
		Progress: func(p pipeline.Progress) {
			if inside.Add(1) != 1 {
				t.Error("Progress called concurrently")
			}
			time.Sleep(100 * time.Microsecond)
			mu.Lock()
			calls = append(calls, p)
			mu.Unlock()
			inside.Add(-1)
		},
	})
	require.NoError(t, err)
	require.Len(t, calls, 11)
	for i, p := range calls {
		assert.Equal(t, i+1, p.Chunks)
		if i > 0 {
			assert.Greater(t, p.RawBytes, calls[i-1].RawBytes)
			assert.Greater(t, p.StoredBytes, calls[i-1].StoredBytes)
		}
	}
	last := calls[len(calls)-1]
	assert.Equal(t, int64(len(data)), last.RawBytes)
	assert.Equal(t, res.StoredSize, last.StoredBytes)

	var dcalls []pipeline.Progress
	_, dres, err := download(fb, res, pipeline.DownloadOptions{Parallelism: 3, Progress: func(p pipeline.Progress) { dcalls = append(dcalls, p) }})
	require.NoError(t, err)
	require.Len(t, dcalls, 11)
	var raw, stored int64
	for i, p := range dcalls {
		raw += res.Chunks[i].RawSize
		stored += res.Chunks[i].StoredSize
		assert.Equal(t, pipeline.Progress{Chunks: i + 1, RawBytes: raw, StoredBytes: stored}, p)
	}
	assert.Equal(t, dres.RawSize, int64(len(data)))
}

// slowBackend delays Gets.
type slowBackend struct {
	storage.Backend
	delay time.Duration
	gets  atomic.Int32
}

func (s *slowBackend) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	s.gets.Add(1)
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Backend.Get(ctx, key)
}

func TestDownloadCancel(t *testing.T) {
	b, _, res := uploadFixture(t, "zstd")
	warmUp(t, "zstd")
	check := noLeak(t)
	sb := &slowBackend{Backend: b, delay: 20 * time.Millisecond}
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	_, err := pipeline.Download(ctx, sb, prefix, res.Chunks, "zstd", &out, pipeline.DownloadOptions{
		Parallelism: 2,
		Progress:    func(p pipeline.Progress) { cancel() },
	})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.Canceled)
	var ce *pipeline.ChunkError
	assert.False(t, errors.As(err, &ce), "cancellation is not a chunk problem: %v", err)
	assert.Equal(t, cs, out.Len(), "only the first chunk was written")
	assert.Less(t, int(sb.gets.Load()), len(res.Chunks))
	check()
}

type failWriter struct{ n int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.n == 0 {
		return 0, errors.New("disk full")
	}
	f.n--
	return len(p), nil
}

func TestDownloadWriteError(t *testing.T) {
	b, _, res := uploadFixture(t, "gzip")
	warmUp(t, "gzip")
	check := noLeak(t)
	_, err := pipeline.Download(context.Background(), b, prefix, res.Chunks, "gzip", &failWriter{n: 2}, pipeline.DownloadOptions{Parallelism: 4})
	require.Error(t, err)
	assert.ErrorContains(t, err, "download chunk 2: write output: disk full")
	check()
}

func TestDownloadParallelismBound(t *testing.T) {
	b, data, res := uploadFixture(t, "zstd")
	sb := &slowBackend{Backend: b, delay: 5 * time.Millisecond}
	var out bytes.Buffer
	_, err := pipeline.Download(context.Background(), sb, prefix, res.Chunks, "zstd", &out, pipeline.DownloadOptions{Parallelism: 3})
	require.NoError(t, err)
	assert.Equal(t, data, out.Bytes())
}
