// Package pipeline is Strata's data path: it cuts a backup stream into
// chunks, compresses them in parallel and stores them in a
// storage.Backend (Upload), and reads them back, verifying every chunk's size
// and sha256 before decompressing, to reproduce the stream (Download).
//
// Chunks are ChunkSize bytes (the last may be shorter) and stored at
// prefix + "chunks/" + 8-digit index + codec extension, e.g.
// "inst/backups/ID/chunks/00000012.zst". With UploadOptions.NameKey they
// are content-defined instead — cut where a rolling hash keyed by NameKey
// matches, between ChunkSize/4 and ChunkSize — and named by a keyed hash of
// their content ("chunks/<32 hex>.zst", ContentChunkKey), so that a retried
// upload of the same backup, whose stream may have shifted, finds the
// chunks an interrupted attempt stored and skips them
// (UploadOptions.Resume). The chunk list (manifest.Chunk) records for each
// chunk, in stream order, its key, its raw and stored sizes and the sha256
// of the stored bytes, so that corruption is detected without
// decompressing; the sha256 of the whole raw stream is recorded as well.
//
// With a crypt.ChunkCipher (UploadOptions.Cipher), chunks are encrypted after
// compression and stored with the EncryptedExt suffix
// ("chunks/00000012.zst.enc"). The recorded sha256 is still that of the
// stored (encrypted) bytes, so VerifyChunks needs no key; Download checks it,
// then decrypts, then decompresses. A ratelimit.Limiter (UploadOptions.Limiter,
// DownloadOptions.Limiter) limits the stored bytes transferred.
package pipeline

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/storage"
)

// Chunk size limits, in bytes.
const (
	DefaultChunkSize = 16 << 20
	MinChunkSize     = 64 << 10
	MaxChunkSize     = 1 << 30
)

// EncryptedExt is appended to the codec extension of encrypted chunks.
const EncryptedExt = ".enc"

// decompressSlack is how many bytes beyond a chunk's recorded raw size the
// decompressor may produce before giving up (the size is then checked
// exactly).
const decompressSlack = 64

// Progress reports the chunks transferred so far.
type Progress struct {
	Chunks      int   // chunks stored (Upload) or written (Download)
	RawBytes    int64 // uncompressed bytes of those chunks
	StoredBytes int64 // stored (compressed) bytes of those chunks
	// ReusedBytes are the stored bytes of the chunks that Upload (with
	// Resume) found already stored, included in StoredBytes.
	ReusedBytes int64
}

// ChunkKey returns the key of chunk index, relative to the backup prefix,
// for a codec extension (see Codec.Ext): "chunks/00000012.zst".
func ChunkKey(index int, ext string) string {
	return fmt.Sprintf("chunks/%08d%s", index, ext)
}

func defaultParallelism(p int) int {
	if p <= 0 {
		return runtime.GOMAXPROCS(0)
	}
	return p
}

// checkPrefix validates a backup prefix: empty or ending with '/'.
func checkPrefix(prefix string) error {
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("prefix %q must end with '/'", prefix)
	}
	if err := storage.ValidatePrefix(prefix); err != nil {
		return fmt.Errorf("prefix: %w", err)
	}
	return nil
}

// checkChunk validates the manifest entry of chunk i; a problem is reported
// as a ChunkError.
func checkChunk(prefix string, i int, c manifest.Chunk) *ChunkError {
	bad := func(format string, args ...any) *ChunkError {
		return &ChunkError{Index: i, Key: c.Key, Reason: "invalid manifest entry: " + fmt.Sprintf(format, args...)}
	}
	switch {
	case c.Index != i:
		return bad("index %d where %d belongs (indexes must be 0..n-1 in order)", c.Index, i)
	case c.RawSize < 0 || c.RawSize > MaxChunkSize:
		return bad("raw size %d is out of range 0..%d", c.RawSize, MaxChunkSize)
	case c.StoredSize < 0 || c.StoredSize > int64(maxCompressedLen(MaxChunkSize)+crypt.Overhead):
		return bad("stored size %d is out of range", c.StoredSize)
	case !manifest.IsSHA256Hex(c.SHA256):
		return bad("sha256 %q is not 64 lowercase hex characters", c.SHA256)
	}
	if err := storage.ValidateKey(prefix + c.Key); err != nil {
		return &ChunkError{Index: i, Key: c.Key, Reason: "invalid manifest entry", Err: err}
	}
	return nil
}

// ctxReader fails reads once ctx is done, so that reading a slow stream stops
// at the next Read after cancellation.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// bufPool is a bounded free list of byte slices.
type bufPool chan []byte

// get returns a free buffer, or a new one with capacity n.
func (p bufPool) get(n int) []byte {
	select {
	case b := <-p:
		if cap(b) >= n {
			return b[:0]
		}
	default:
	}
	return make([]byte, 0, n)
}

// put returns a buffer to the pool (dropped if the pool is full).
func (p bufPool) put(b []byte) {
	if b == nil {
		return
	}
	select {
	case p <- b[:0]:
	default:
	}
}
