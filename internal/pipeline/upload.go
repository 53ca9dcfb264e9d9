package pipeline

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/ratelimit"
	"github.com/strata-backup/strata/internal/storage"
)

// UploadOptions configures Upload. The zero value uses the defaults.
type UploadOptions struct {
	// ChunkSize is the raw size of each chunk (default DefaultChunkSize,
	// range MinChunkSize..MaxChunkSize).
	ChunkSize int64
	// Parallelism is the maximum number of chunks being compressed and
	// stored at once (default runtime.GOMAXPROCS(0)). Memory use is about
	// (2×Parallelism+1)×ChunkSize.
	Parallelism int
	// Codec is the compression codec name (default "zstd"), see NewCodec.
	Codec string
	// Level is the compression level (0: the codec's default).
	Level int
	// Progress, if set, is called after each chunk is stored. Calls are
	// serialized; it must return quickly.
	Progress func(Progress)
	// Cipher, if set, encrypts each chunk after compression (nil: no
	// encryption). Chunk keys then end with EncryptedExt, and the chunk's
	// StoredSize and SHA256 are those of the encrypted bytes.
	Cipher *crypt.ChunkCipher
	// Limiter, if set, limits the rate of stored bytes: each chunk waits
	// for its stored size before its Put.
	Limiter *ratelimit.Limiter
}

// UploadResult describes the stored stream, for the manifest.
type UploadResult struct {
	Chunks     []manifest.Chunk // in index order; keys relative to the prefix
	RawSize    int64            // bytes read from the stream
	StoredSize int64            // bytes stored
	RawSHA256  string           // hex sha256 of the whole raw stream
	Codec      string           // codec name, for manifest.Compression
	Level      int              // effective compression level
	ChunkSize  int64            // effective chunk size
}

// Upload reads r to EOF, cutting it into chunks of opt.ChunkSize bytes (the
// last one may be shorter; an empty stream gives no chunks), compresses them
// in parallel, encrypts them if opt.Cipher is set, and stores each at
// prefix+ChunkKey(index, ext) (ext: the codec's extension, plus EncryptedExt
// when encrypted). prefix must be empty or end with '/'.
//
// On a read, compression or storage error, or when ctx is cancelled, Upload
// stops reading, waits for its goroutines and returns the first error,
// prefixed with the chunk index ("upload chunk 12: ..."). Chunks already
// stored are left in place (a backup without manifest is a partial upload).
func Upload(ctx context.Context, b storage.Backend, prefix string, r io.Reader, opt UploadOptions) (*UploadResult, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}
	chunkSize := opt.ChunkSize
	if chunkSize == 0 {
		chunkSize = DefaultChunkSize
	}
	if chunkSize < MinChunkSize || chunkSize > MaxChunkSize {
		return nil, fmt.Errorf("upload: chunk size %d is out of range %d..%d", chunkSize, MinChunkSize, MaxChunkSize)
	}
	par := defaultParallelism(opt.Parallelism)
	name := opt.Codec
	if name == "" {
		name = DefaultCodec
	}
	codec, err := NewCodec(name, opt.Level)
	if err != nil {
		return nil, fmt.Errorf("upload: %w", err)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	u := &uploader{
		ctx:      ctx,
		cancel:   cancel,
		b:        b,
		prefix:   prefix,
		codec:    codec,
		progress: opt.Progress,
		cipher:   opt.Cipher,
		limiter:  opt.Limiter,
		rawBufs:  make(bufPool, par+1),
		outBufs:  make(bufPool, par),
		outCap:   maxCompressedLen(int(chunkSize)) + crypt.Overhead,
	}
	ext := codec.Ext()
	if opt.Cipher != nil {
		ext += EncryptedExt
	}

	var (
		wg      sync.WaitGroup
		sem     = make(chan struct{}, par)
		rawHash = sha256.New()
		rawSize int64
		src     = ctxReader{ctx: ctx, r: r}
	)
	for index := 0; ; index++ {
		buf := u.rawBufs.get(int(chunkSize))[:chunkSize]
		n, rerr := io.ReadFull(src, buf)
		last := errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF)
		if rerr != nil && !last {
			u.fail(fmt.Errorf("upload chunk %d: read input: %w", index, rerr))
			break
		}
		if n == 0 {
			break // EOF on a chunk boundary
		}
		data := buf[:n]
		rawHash.Write(data)
		rawSize += int64(n)
		key := ChunkKey(index, ext)
		u.mu.Lock()
		u.chunks = append(u.chunks, manifest.Chunk{Index: index, Key: key, RawSize: int64(n)})
		u.mu.Unlock()

		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			u.fail(fmt.Errorf("upload chunk %d: %w", index, context.Cause(ctx)))
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			u.store(index, key, buf, data)
		}()
		if last {
			break
		}
	}
	wg.Wait()

	u.mu.Lock()
	defer u.mu.Unlock()
	if u.err != nil {
		return nil, u.err
	}
	res := &UploadResult{
		Chunks:    u.chunks,
		RawSize:   rawSize,
		RawSHA256: hex.EncodeToString(rawHash.Sum(nil)),
		Codec:     codec.Name(),
		Level:     codec.Level(),
		ChunkSize: chunkSize,
	}
	if res.Chunks == nil {
		res.Chunks = []manifest.Chunk{}
	}
	for _, c := range res.Chunks {
		res.StoredSize += c.StoredSize
	}
	return res, nil
}

type uploader struct {
	ctx      context.Context
	cancel   context.CancelCauseFunc
	b        storage.Backend
	prefix   string
	codec    Codec
	progress func(Progress)
	cipher   *crypt.ChunkCipher // nil: no encryption
	limiter  *ratelimit.Limiter // nil: no limit
	rawBufs  bufPool
	outBufs  bufPool
	outCap   int

	mu     sync.Mutex
	err    error            // first error
	chunks []manifest.Chunk // by index; StoredSize and SHA256 set when stored

	progMu sync.Mutex
	prog   Progress
}

// fail records the first error and cancels the upload.
func (u *uploader) fail(err error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.err == nil {
		u.err = err
		u.cancel(err)
	}
}

// store compresses, encrypts (with a cipher) and stores one chunk. buf is
// data's backing buffer, returned to the pool when done.
func (u *uploader) store(index int, key string, buf, data []byte) {
	defer u.rawBufs.put(buf)
	if err := u.ctx.Err(); err != nil {
		u.fail(fmt.Errorf("upload chunk %d: %w", index, context.Cause(u.ctx)))
		return
	}
	out, err := u.codec.compress(u.outBufs.get(u.outCap), data)
	if err != nil {
		u.fail(fmt.Errorf("upload chunk %d: compress: %w", index, err))
		return
	}
	if u.cipher != nil {
		out = u.seal(index, out)
	}
	defer u.outBufs.put(out)
	sum := sha256.Sum256(out)
	if err := u.limiter.Wait(u.ctx, len(out)); err != nil {
		u.fail(fmt.Errorf("upload chunk %d: %w", index, context.Cause(u.ctx)))
		return
	}
	if err := u.b.Put(u.ctx, u.prefix+key, bytes.NewReader(out), int64(len(out))); err != nil {
		u.fail(fmt.Errorf("upload chunk %d: %w", index, err))
		return
	}
	u.mu.Lock()
	c := &u.chunks[index]
	c.StoredSize = int64(len(out))
	c.SHA256 = hex.EncodeToString(sum[:])
	u.mu.Unlock()

	u.progMu.Lock()
	defer u.progMu.Unlock()
	u.prog.Chunks++
	u.prog.RawBytes += int64(len(data))
	u.prog.StoredBytes += int64(len(out))
	if u.progress != nil {
		u.progress(u.prog)
	}
}

// seal encrypts the compressed chunk out in place (reallocating only if its
// capacity is too small) and returns the encrypted chunk.
func (u *uploader) seal(index int, out []byte) []byte {
	n := len(out)
	var buf []byte
	if cap(out) >= n+crypt.Overhead {
		buf = out[:crypt.HeaderSize+n]
		copy(buf[crypt.HeaderSize:], buf[:n]) // memmove: the regions overlap
	} else {
		buf = make([]byte, crypt.HeaderSize+n, n+crypt.Overhead)
		copy(buf[crypt.HeaderSize:], out)
	}
	return u.cipher.Seal(buf[:0], buf[crypt.HeaderSize:], uint64(index))
}
