package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/ratelimit"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/memory"
)

var allCodecNames = []string{"zstd", "lz4", "s2", "gzip", "none"}

func newCipher(t *testing.T, key []byte, backupID string) *crypt.ChunkCipher {
	t.Helper()
	c, err := crypt.NewChunkCipher(key, backupID)
	require.NoError(t, err)
	return c
}

func dataKey(t *testing.T) []byte {
	t.Helper()
	k, err := crypt.NewDataKey()
	require.NoError(t, err)
	return k
}

func storedObject(t *testing.T, b storage.Backend, key string) []byte {
	t.Helper()
	rc, err := b.Get(context.Background(), key)
	require.NoError(t, err)
	defer rc.Close()
	data, err := io.ReadAll(rc)
	require.NoError(t, err)
	return data
}

func TestEncryptedRoundTrip(t *testing.T) {
	for _, codec := range allCodecNames {
		for _, size := range []int{0, 1, cs, 3*cs + 123} {
			for _, par := range []int{1, 4} {
				t.Run(fmt.Sprintf("%s/%d/par%d", codec, size, par), func(t *testing.T) {
					key := dataKey(t)
					data := textData(size, uint64(size))
					b := memory.New()
					res := upload(t, b, data, pipeline.UploadOptions{Codec: codec, Parallelism: par, Cipher: newCipher(t, key, "b1")})
					require.Len(t, res.Chunks, (size+cs-1)/cs)
					assert.Equal(t, sha(data), res.RawSHA256)

					c, err := pipeline.ParseCodec(codec)
					require.NoError(t, err)
					var stored int64
					for i, ch := range res.Chunks {
						assert.Equal(t, fmt.Sprintf("chunks/%08d%s.enc", i, c.Ext()), ch.Key)
						obj := storedObject(t, b, prefix+ch.Key)
						assert.Equal(t, sha(obj), ch.SHA256, "sha256 is of the stored (encrypted) bytes")
						assert.Equal(t, int64(len(obj)), ch.StoredSize)
						assert.True(t, crypt.IsEncrypted(obj))
						stored += ch.StoredSize
					}
					assert.Equal(t, stored, res.StoredSize)

					// Verification needs no key.
					assert.Empty(t, pipeline.VerifyChunks(context.Background(), b, prefix, res.Chunks, codec, par))

					// A fresh cipher from the same key and backup ID decrypts.
					got, dres, err := download(b, res, pipeline.DownloadOptions{
						Parallelism: par, ExpectRawSHA256: res.RawSHA256, Cipher: newCipher(t, key, "b1"),
					})
					require.NoError(t, err)
					require.True(t, bytes.Equal(data, got), "downloaded data differs")
					assert.Equal(t, res.StoredSize, dres.StoredSize)
				})
			}
		}
	}
}

func TestEncryptedChunksHideMarker(t *testing.T) {
	const marker = "STRATA-MARKER-ROW-42"
	data := []byte(strings.Repeat(marker+" ", 3*cs/len(marker)))
	for _, codec := range allCodecNames {
		t.Run(codec, func(t *testing.T) {
			// Control: without encryption, codec none stores the marker.
			if codec == "none" {
				b := memory.New()
				res := upload(t, b, data, pipeline.UploadOptions{Codec: codec})
				assert.Contains(t, string(storedObject(t, b, prefix+res.Chunks[0].Key)), marker)
			}
			b := memory.New()
			res := upload(t, b, data, pipeline.UploadOptions{Codec: codec, Cipher: newCipher(t, dataKey(t), "b1")})
			require.NotEmpty(t, res.Chunks)
			for _, ch := range res.Chunks {
				obj := storedObject(t, b, prefix+ch.Key)
				assert.NotContains(t, string(obj), marker, "chunk %d", ch.Index)
				assert.NotContains(t, string(obj), "MARKER")
			}
		})
	}
}

func TestDownloadWrongDataKey(t *testing.T) {
	for _, codec := range allCodecNames {
		t.Run(codec, func(t *testing.T) {
			b := memory.New()
			key := dataKey(t)
			res := upload(t, b, textData(3*cs, 1), pipeline.UploadOptions{Codec: codec, Cipher: newCipher(t, key, "b1")})
			for name, c := range map[string]*crypt.ChunkCipher{
				"other key":       newCipher(t, dataKey(t), "b1"),
				"other backup id": newCipher(t, key, "b2"),
			} {
				var out bytes.Buffer
				_, err := pipeline.Download(context.Background(), b, prefix, res.Chunks, codec, &out, pipeline.DownloadOptions{Cipher: c, Parallelism: 2})
				require.Error(t, err, name)
				assert.True(t, errors.Is(err, crypt.ErrDecrypt), "%s: %v", name, err)
				var ce *pipeline.ChunkError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, 0, ce.Index)
				assert.False(t, ce.Corrupt(), "the stored bytes are those recorded")
				assert.NotErrorIs(t, err, pipeline.ErrCorrupt)
				assert.True(t, strings.HasPrefix(err.Error(), "chunk 0 ("+res.Chunks[0].Key+"): cannot decrypt"), err.Error())
				assert.Zero(t, out.Len(), "nothing may be written")
			}
		})
	}
}

func TestDownloadEncryptedWithoutCipher(t *testing.T) {
	for _, codec := range allCodecNames {
		t.Run(codec, func(t *testing.T) {
			b := memory.New()
			res := upload(t, b, textData(2*cs, 2), pipeline.UploadOptions{Codec: codec, Cipher: newCipher(t, dataKey(t), "b1")})
			_, _, err := download(b, res, pipeline.DownloadOptions{})
			require.Error(t, err)
			assert.ErrorIs(t, err, pipeline.ErrEncrypted)
			assert.NotErrorIs(t, err, pipeline.ErrCorrupt)
			var ce *pipeline.ChunkError
			require.ErrorAs(t, err, &ce)
			assert.Equal(t, 0, ce.Index)
			assert.Contains(t, err.Error(), "chunk 0 ("+res.Chunks[0].Key+"): is encrypted but no decryption key was given")
		})
	}
}

func TestDownloadPlainWithCipher(t *testing.T) {
	b := memory.New()
	res := upload(t, b, textData(2*cs, 3), pipeline.UploadOptions{Codec: "zstd"})
	_, _, err := download(b, res, pipeline.DownloadOptions{Cipher: newCipher(t, dataKey(t), "b1")})
	require.Error(t, err)
	assert.ErrorIs(t, err, crypt.ErrNotEncrypted)
	assert.ErrorContains(t, err, "chunk 0 (chunks/00000000.zst): is not encrypted but a decryption key was given")
}

// Swapping two chunks together with their manifest entries passes the
// sha256 checks but not decryption: the chunk index is authenticated.
func TestEncryptedSwappedChunksFail(t *testing.T) {
	b := memory.New()
	c := newCipher(t, dataKey(t), "b1")
	res := upload(t, b, textData(4*cs, 4), pipeline.UploadOptions{Codec: "zstd", Cipher: c})
	ctx := context.Background()
	k1, k2 := prefix+res.Chunks[1].Key, prefix+res.Chunks[2].Key
	d1, d2 := storedObject(t, b, k1), storedObject(t, b, k2)
	replace(t, b, k1, func([]byte) []byte { return d2 })
	replace(t, b, k2, func([]byte) []byte { return d1 })
	chunks := append(res.Chunks[:0:0], res.Chunks...)
	chunks[1].SHA256, chunks[2].SHA256 = chunks[2].SHA256, chunks[1].SHA256
	chunks[1].StoredSize, chunks[2].StoredSize = chunks[2].StoredSize, chunks[1].StoredSize
	assert.Empty(t, pipeline.VerifyChunks(ctx, b, prefix, chunks, "zstd", 2), "the sha256 checks pass")

	_, err := pipeline.Download(ctx, b, prefix, chunks, "zstd", io.Discard, pipeline.DownloadOptions{Cipher: c})
	require.ErrorIs(t, err, crypt.ErrDecrypt)
	var ce *pipeline.ChunkError
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, 1, ce.Index)

	// A chunk from another backup encrypted with the same key fails too.
	other := memory.New()
	ores := upload(t, other, textData(4*cs, 4), pipeline.UploadOptions{Codec: "zstd", Cipher: newCipher(t, dataKey(t), "b2")})
	_, err = pipeline.Download(ctx, other, prefix, ores.Chunks, "zstd", io.Discard, pipeline.DownloadOptions{Cipher: c})
	require.ErrorIs(t, err, crypt.ErrDecrypt)
}

func TestEncryptedCorruptionFoundWithoutKey(t *testing.T) {
	b := memory.New()
	c := newCipher(t, dataKey(t), "b1")
	res := upload(t, b, textData(4*cs, 5), pipeline.UploadOptions{Codec: "s2", Cipher: c})
	replace(t, b, prefix+res.Chunks[2].Key, func(d []byte) []byte { d[len(d)-3] ^= 1; return d })
	problems := pipeline.VerifyChunks(context.Background(), b, prefix, res.Chunks, "s2", 2)
	require.Len(t, problems, 1)
	assert.Equal(t, 2, problems[0].Index)
	_, _, err := download(b, res, pipeline.DownloadOptions{Cipher: c})
	assert.ErrorIs(t, err, pipeline.ErrCorrupt, "the sha256 check comes first")
	assert.ErrorContains(t, err, "sha256 mismatch")
}

func TestLimiterUploadDownload(t *testing.T) {
	data := randomData(2<<20, 9)  // incompressible: about 2 MiB stored
	lim := ratelimit.New(8 << 20) // shared by the upload and the downloads
	key := dataKey(t)
	b := memory.New()

	start := time.Now()
	res := upload(t, b, data, pipeline.UploadOptions{Codec: "none", Parallelism: 4, Limiter: lim, Cipher: newCipher(t, key, "b1")})
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, 150*time.Millisecond, "2 MiB at 8 MiB/s takes about 0.25 s")
	assert.Less(t, took, 10*time.Second)

	start = time.Now()
	got, _, err := download(b, res, pipeline.DownloadOptions{Parallelism: 4, Limiter: lim, Cipher: newCipher(t, key, "b1")})
	require.NoError(t, err)
	assert.Equal(t, data, got)
	took = time.Since(start)
	assert.GreaterOrEqual(t, took, 150*time.Millisecond)
	assert.Less(t, took, 10*time.Second)

	// Hot reload to a much lower limit, then to unlimited while the
	// download waits: it finishes promptly.
	lim.SetLimit(16 << 10) // 2 MiB would take 2 minutes
	time.AfterFunc(100*time.Millisecond, func() { lim.SetLimit(0) })
	start = time.Now()
	got, _, err = download(b, res, pipeline.DownloadOptions{Parallelism: 4, Limiter: lim, Cipher: newCipher(t, key, "b1")})
	require.NoError(t, err)
	assert.Equal(t, data, got)
	assert.Less(t, time.Since(start), 10*time.Second)
}

func TestLimiterDownloadRate(t *testing.T) {
	data := randomData(2<<20, 10)
	b := memory.New()
	res := upload(t, b, data, pipeline.UploadOptions{Codec: "none"})
	start := time.Now()
	got, _, err := download(b, res, pipeline.DownloadOptions{Parallelism: 4, Limiter: ratelimit.New(8 << 20), ExpectRawSHA256: res.RawSHA256})
	require.NoError(t, err)
	assert.Equal(t, data, got)
	assert.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond, "2 MiB at 8 MiB/s takes about 0.25 s")
}

func TestLimiterCancel(t *testing.T) {
	warmUp(t, "zstd")
	check := noLeak(t)
	lim := ratelimit.New(64 << 10) // 64 KiB/s
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := pipeline.Upload(ctx, memory.New(), prefix, bytes.NewReader(randomData(8<<20, 11)),
		pipeline.UploadOptions{ChunkSize: cs, Codec: "none", Parallelism: 2, Limiter: lim})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Regexp(t, `^upload chunk \d+: `, err.Error())
	assert.Less(t, time.Since(start), 3*time.Second)

	b := memory.New()
	res := upload(t, b, randomData(8<<20, 12), pipeline.UploadOptions{Codec: "none"})
	dctx, dcancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer dcancel()
	start = time.Now()
	_, err = pipeline.Download(dctx, b, prefix, res.Chunks, "none", io.Discard, pipeline.DownloadOptions{Parallelism: 2, Limiter: lim})
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	var ce *pipeline.ChunkError
	assert.False(t, errors.As(err, &ce), "cancellation is not a chunk problem: %v", err)
	assert.Less(t, time.Since(start), 3*time.Second)
	check()
}
