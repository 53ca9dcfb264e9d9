package pipeline_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/storage/memory"
)

// Every byte range of a stored stream, read with OpenRange, is the same
// bytes as that range of the stream, for plain and encrypted,
// content-defined chunks, including ranges that start or end on a chunk
// boundary, span many chunks, or are the whole stream.
func TestOpenRangeReadsExactlyTheRange(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	data := make([]byte, 3<<20+12345)
	for i := range data {
		data[i] = byte(rng.Intn(7)) // compressible, with content-defined cuts
	}
	key := bytes.Repeat([]byte{9}, 32)
	for _, encrypted := range []bool{false, true} {
		b := memory.New()
		opt := pipeline.UploadOptions{ChunkSize: pipeline.MinChunkSize, Parallelism: 2, NameKey: key}
		var dopt pipeline.DownloadOptions
		if encrypted {
			c := newCipher(t, key, "b1")
			opt.Cipher, dopt.Cipher = c, c
		}
		up, err := pipeline.Upload(context.Background(), b, "i/backups/b1/", bytes.NewReader(data), opt)
		require.NoError(t, err)
		require.Greater(t, len(up.Chunks), 3)
		var bounds []int64
		var off int64
		for _, c := range up.Chunks {
			bounds = append(bounds, off)
			off += c.RawSize
		}
		type span struct{ off, size int64 }
		spans := []span{{0, int64(len(data))}, {0, 1}, {int64(len(data)) - 1, 1}, {0, 0}, {bounds[1], bounds[2] - bounds[1]},
			{bounds[1] - 1, 2}, {bounds[2], 1}, {bounds[1] + 5, bounds[3] - bounds[1]}}
		for i := 0; i < 20; i++ {
			o := rng.Int63n(int64(len(data)))
			spans = append(spans, span{o, rng.Int63n(int64(len(data)) - o + 1)})
		}
		for _, s := range spans {
			r, err := pipeline.OpenRange(context.Background(), b, "i/backups/b1/", up.Chunks, "zstd", s.off, s.size, dopt)
			require.NoError(t, err)
			got, err := io.ReadAll(r)
			require.NoError(t, err, "range %d+%d", s.off, s.size)
			require.NoError(t, r.Close())
			require.True(t, bytes.Equal(data[s.off:s.off+s.size], got), "range %d+%d (encrypted %v)", s.off, s.size, encrypted)
		}
		// Beyond the end: refused as corrupt (a manifest that lies).
		_, err = pipeline.OpenRange(context.Background(), b, "i/backups/b1/", up.Chunks, "zstd", int64(len(data))-1, 2, dopt)
		require.ErrorIs(t, err, pipeline.ErrCorrupt)
		// A chunk altered in storage: the range reader fails, naming the backup's chunk index.
		c := up.Chunks[2]
		stored, err := b.Get(context.Background(), "i/backups/b1/"+c.Key)
		require.NoError(t, err)
		raw, err := io.ReadAll(stored)
		require.NoError(t, err)
		stored.Close()
		raw[len(raw)/2] ^= 1
		require.NoError(t, b.Delete(context.Background(), "i/backups/b1/"+c.Key))
		require.NoError(t, b.Put(context.Background(), "i/backups/b1/"+c.Key, bytes.NewReader(raw), int64(len(raw))))
		r, err := pipeline.OpenRange(context.Background(), b, "i/backups/b1/", up.Chunks, "zstd", bounds[2], 10, dopt)
		require.NoError(t, err)
		_, err = io.ReadAll(r)
		var ce *pipeline.ChunkError
		require.True(t, errors.As(err, &ce), "%v", err)
		require.Equal(t, 2, ce.Index)
		require.ErrorIs(t, err, pipeline.ErrCorrupt)
	}
}
