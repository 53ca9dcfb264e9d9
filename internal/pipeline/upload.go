package pipeline

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"hash/maphash"
	"io"
	"sync"
	"time"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/ratelimit"
	"github.com/strata-backup/strata/internal/storage"
)

// UploadOptions configures Upload. The zero value uses the defaults.
type UploadOptions struct {
	// ChunkSize is the raw size of each chunk (default DefaultChunkSize,
	// range MinChunkSize..MaxChunkSize); with NameKey, the largest.
	ChunkSize int64
	// Parallelism is the maximum number of chunks being compressed and
	// stored at once (default runtime.GOMAXPROCS(0)). Memory use is bounded
	// by Parallelism+2 raw buffers of ChunkSize (one being read, the next
	// one's start, one per chunk being compressed; a raw buffer is released
	// once its chunk is compressed, before the Put) and Parallelism output
	// buffers of about 1.17×ChunkSize: about (2.2×Parallelism+2)×ChunkSize,
	// 105 MiB with the defaults of a 2-core host (16 MiB, 2), plus the
	// codec's state.
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
	// for its stored size before its Put (a chunk found already stored by
	// Resume does not wait).
	Limiter *ratelimit.Limiter
	// NameKey, if set, cuts the stream into content-defined chunks (a
	// rolling hash keyed by NameKey) and names them by content instead of by
	// index: ContentChunkKey(NameKey, raw data, occurrence, ext). Another
	// upload of the same stream, or of one with bytes inserted or removed,
	// with the same NameKey gives the identical parts identical chunks and
	// names. Encrypted chunks are then bound to their name (SealPosition)
	// and sealed with a synthetic nonce (crypt.ChunkCipher.SealDeterministic),
	// so that their stored bytes are identical too.
	NameKey []byte
	// Resume, with NameKey, looks for each chunk before storing it: a chunk
	// already stored (by an interrupted earlier upload of the same backup)
	// with the right size is not uploaded again but counted in
	// UploadResult.ReusedBytes; one of another size is replaced. Without
	// Resume, a chunk that exists already is still accepted when its size
	// matches (a concurrent upload of the same chunk).
	Resume bool
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
	// UploadedBytes is what this upload stored; ReusedBytes what it found
	// already stored (Resume). They add up to StoredSize.
	UploadedBytes int64
	ReusedBytes   int64
	ReusedChunks  int // chunks found already stored
}

// Upload reads r to EOF, cutting it into chunks of opt.ChunkSize bytes (the
// last one may be shorter; an empty stream gives no chunks) — or, with
// opt.NameKey, into content-defined chunks of opt.ChunkSize/4 to
// opt.ChunkSize bytes — compresses them
// in parallel, encrypts them if opt.Cipher is set, and stores each at
// prefix+ChunkKey(index, ext) (ext: the codec's extension, plus EncryptedExt
// when encrypted), or at prefix+ContentChunkKey(...) with opt.NameKey.
// prefix must be empty or end with '/'.
//
// On a read, compression or storage error, or when ctx is cancelled, Upload
// stops reading, waits for its goroutines and returns the first error,
// prefixed with the chunk index ("upload chunk 12: ..."). Chunks already
// stored are left in place (a backup without manifest is a partial upload).
//
// Its phases are traced as spans stream, compress and upload, children of
// the span in ctx (see internal/tracing).
func Upload(ctx context.Context, b storage.Backend, prefix string, r io.Reader, opt UploadOptions) (*UploadResult, error) {
	sp := startUploadSpans(ctx)
	res, err := upload(ctx, b, prefix, r, opt, sp)
	sp.end(res, err)
	return res, err
}

func upload(ctx context.Context, b storage.Backend, prefix string, r io.Reader, opt UploadOptions, sp *uploadSpans) (*UploadResult, error) {
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
		rawBufs:  make(bufPool, par+2),
		outBufs:  make(bufPool, par),
		outCap:   maxCompressedLen(int(chunkSize)) + crypt.Overhead,
		nameKey:  opt.NameKey,
		resume:   opt.Resume && opt.NameKey != nil,
		spans:    sp,
	}
	ext := codec.Ext()
	if opt.Cipher != nil {
		ext += EncryptedExt
	}
	u.ext = ext

	var cdc *chunker // nil: fixed-size chunks
	if opt.NameKey != nil {
		cdc = newChunker(opt.NameKey, int(chunkSize))
	}
	hasher := startStreamHasher(opt.NameKey != nil, par)
	var (
		wg      sync.WaitGroup
		sem     = make(chan struct{}, par)
		rawSize int64
		src     = ctxReader{ctx: ctx, r: r}
		buf     = u.rawBufs.get(int(chunkSize))[:chunkSize]
		filled  int  // bytes in buf: carried over from the previous chunk, then read
		eof     bool // the input is exhausted
	)
	for index := 0; ; index++ {
		if !eof {
			n, rerr := io.ReadFull(src, buf[filled:])
			filled += n
			eof = errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF)
			if rerr != nil && !eof {
				u.fail(fmt.Errorf("upload chunk %d: read input: %w", index, rerr))
				break
			}
		}
		if filled == 0 {
			u.rawBufs.put(buf)
			break // EOF on a chunk boundary
		}
		cut := filled
		if cdc != nil {
			cut = cdc.cut(buf[:filled])
		}
		data := buf[:cut]
		// What follows the cut starts the next chunk's buffer.
		rest := filled - cut
		var next []byte
		if !eof || rest > 0 {
			next = u.rawBufs.get(int(chunkSize))[:chunkSize]
			copy(next, buf[cut:filled])
		}
		rawSize += int64(cut)
		key := "" // named in store with a NameKey
		if opt.NameKey == nil {
			key = ChunkKey(index, ext)
		}
		u.mu.Lock()
		u.chunks = append(u.chunks, manifest.Chunk{Index: index, Key: key, RawSize: int64(cut)})
		u.mu.Unlock()

		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			u.fail(fmt.Errorf("upload chunk %d: %w", index, context.Cause(ctx)))
			break
		}
		c := &rawChunk{index: index, buf: buf, data: data, hashed: make(chan struct{})}
		hasher.queue <- c // never blocks: it holds at most the par chunks in store
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			u.store(c)
		}()
		if next == nil {
			break
		}
		buf, filled = next, rest
	}
	close(hasher.queue)
	u.mu.Lock()
	readErr := u.err // the input's, or a chunk's that stopped the reading
	u.mu.Unlock()
	sp.streamed(rawSize, readErr)
	wg.Wait()
	<-hasher.done

	u.mu.Lock()
	defer u.mu.Unlock()
	if u.err != nil {
		return nil, u.err
	}
	res := &UploadResult{
		Chunks:    u.chunks,
		RawSize:   rawSize,
		RawSHA256: hex.EncodeToString(hasher.sum.Sum(nil)),
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
	res.ReusedBytes, res.ReusedChunks = u.reusedBytes, u.reusedChunks
	res.UploadedBytes = res.StoredSize - res.ReusedBytes
	return res, nil
}

// ContentChunkKey returns the key, relative to the backup prefix, of a
// chunk with raw content raw, for a codec extension (plus EncryptedExt when
// encrypted): "chunks/" + the first 32 hex characters of
// HMAC-SHA256(nameKey, raw) + ext. occurrence counts the earlier chunks of
// the stream with the same content; from the second occurrence on, it is
// hashed too ("#" and the number after raw), so that every chunk of a
// backup is an object of its own. The name does not depend on the chunk's
// position, so that a stream that shifted (the backup tool streams a redo
// log of another length first) still names its identical chunks alike; an
// encrypted chunk is bound to its name instead (see SealPosition).
func ContentChunkKey(nameKey []byte, raw []byte, occurrence int, ext string) string {
	m := hmac.New(sha256.New, nameKey)
	m.Write(raw)
	return contentKey(m, occurrence, ext)
}

// contentKey completes ContentChunkKey from m, the HMAC that has hashed the
// raw content.
func contentKey(m hash.Hash, occurrence int, ext string) string {
	if occurrence > 0 {
		fmt.Fprintf(m, "#%d", occurrence)
	}
	return "chunks/" + hex.EncodeToString(m.Sum(nil))[:32] + ext
}

// rawChunk is a chunk of the stream on its way to store.
type rawChunk struct {
	index int
	buf   []byte // data's backing buffer (from rawBufs)
	data  []byte
	// hashed is closed when the streamHasher is done with data; occurrence
	// is set then.
	hashed     chan struct{}
	occurrence int // earlier chunks of the same content (with a NameKey)
}

// streamHasher computes, in stream order and in a goroutine of its own, the
// sha256 of the whole raw stream and, for content names, how many earlier
// chunks had the same content (a maphash fingerprint), so that the reading
// goroutine only reads and cuts, and the chunks are compressed meanwhile.
type streamHasher struct {
	queue chan *rawChunk // in index order; closed after the last chunk
	done  chan struct{}  // closed when queue is drained
	sum   hash.Hash
	seed  maphash.Seed
	seen  map[uint64]int // content fingerprint → occurrences so far; nil without names
}

// startStreamHasher starts the hasher; its queue holds up to par chunks.
func startStreamHasher(named bool, par int) *streamHasher {
	h := &streamHasher{queue: make(chan *rawChunk, par), done: make(chan struct{}), sum: sha256.New()}
	if named {
		h.seed, h.seen = maphash.MakeSeed(), map[uint64]int{}
	}
	go func() {
		defer close(h.done)
		for c := range h.queue {
			h.sum.Write(c.data)
			if h.seen != nil {
				fp := maphash.Bytes(h.seed, c.data)
				c.occurrence = h.seen[fp]
				h.seen[fp]++
			}
			close(c.hashed)
		}
	}()
	return h
}

// contentNameLen is the length of "chunks/" and the 32 hex characters of a
// content name.
const contentNameLen = len("chunks/") + 32

// SealPosition returns the position number an encrypted chunk is sealed
// with (the additional authenticated data, see crypt.ChunkCipher): its
// index for a chunk named by index, or the first 64 bits of its name for a
// chunk named by content (ContentChunkKey), so that the same content is the
// same stored object wherever it occurs in the stream, and an object cannot
// be moved under another name.
func SealPosition(index int, key string) uint64 {
	if len(key) >= contentNameLen && key[:len("chunks/")] == "chunks/" && (len(key) == contentNameLen || key[contentNameLen] == '.') {
		if b, err := hex.DecodeString(key[len("chunks/"):contentNameLen]); err == nil {
			return binary.BigEndian.Uint64(b[:8])
		}
	}
	return uint64(index)
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
	ext      string
	nameKey  []byte // nil: chunks named by index
	resume   bool   // look for each chunk before storing it
	spans    *uploadSpans

	mu           sync.Mutex
	err          error            // first error
	chunks       []manifest.Chunk // by index; StoredSize and SHA256 set when stored
	reusedBytes  int64
	reusedChunks int

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

// store compresses, encrypts (with a cipher) and stores one chunk. The raw
// buffer goes back to the pool once the chunk is compressed, named and
// hashed by the streamHasher, before the Put.
func (u *uploader) store(c *rawChunk) {
	index := c.index
	rawLen := len(c.data)
	released := false
	release := func() {
		if !released {
			released = true
			<-c.hashed // always closed: the hasher drains its queue
			u.rawBufs.put(c.buf)
		}
	}
	defer release()
	if err := u.ctx.Err(); err != nil {
		u.fail(fmt.Errorf("upload chunk %d: %w", index, context.Cause(u.ctx)))
		return
	}
	t0 := time.Now()
	out, err := u.codec.compress(u.outBufs.get(u.outCap), c.data)
	if err != nil {
		u.fail(fmt.Errorf("upload chunk %d: compress: %w", index, err))
		return
	}
	var name hash.Hash
	if u.nameKey != nil {
		name = hmac.New(sha256.New, u.nameKey)
		name.Write(c.data)
	}
	release() // c.occurrence is set from here on
	var key string
	if u.nameKey != nil {
		key = contentKey(name, c.occurrence, u.ext)
		u.mu.Lock()
		u.chunks[index].Key = key
		u.mu.Unlock()
	} else {
		u.mu.Lock()
		key = u.chunks[index].Key
		u.mu.Unlock()
	}
	if u.cipher != nil {
		out = u.seal(SealPosition(index, key), out)
	}
	u.spans.compressed(t0)
	t0 = time.Now()
	defer u.spans.stored(t0)
	defer u.outBufs.put(out)
	sum := sha256.Sum256(out)
	reused := false
	if u.resume {
		if reused, err = u.stored(key, out, sum); err != nil {
			u.fail(fmt.Errorf("upload chunk %d: %w", index, err))
			return
		}
	}
	if !reused {
		if err := u.limiter.Wait(u.ctx, len(out)); err != nil {
			u.fail(fmt.Errorf("upload chunk %d: %w", index, context.Cause(u.ctx)))
			return
		}
		err := u.b.Put(u.ctx, u.prefix+key, bytes.NewReader(out), int64(len(out)))
		if errors.Is(err, storage.ErrExists) && u.nameKey != nil {
			// Stored meanwhile by another attempt of the same upload: with
			// content names and deterministic bytes, the right size is the
			// same chunk.
			var serr error
			if reused, serr = u.stored(key, out, sum); serr == nil && reused {
				err = nil
			}
		}
		if err != nil {
			u.fail(fmt.Errorf("upload chunk %d: %w", index, err))
			return
		}
	}
	u.record(index, rawLen, out, sum, reused)
}

// record fills in chunk index's stored size and sha256 and reports
// progress.
func (u *uploader) record(index, rawLen int, out []byte, sum [sha256.Size]byte, reused bool) {
	u.mu.Lock()
	c := &u.chunks[index]
	c.StoredSize = int64(len(out))
	c.SHA256 = hex.EncodeToString(sum[:])
	if reused {
		u.reusedBytes += c.StoredSize
		u.reusedChunks++
	}
	u.mu.Unlock()

	u.progMu.Lock()
	defer u.progMu.Unlock()
	u.prog.Chunks++
	u.prog.RawBytes += int64(rawLen)
	u.prog.StoredBytes += int64(len(out))
	if reused {
		u.prog.ReusedBytes += int64(len(out))
	}
	if u.progress != nil {
		u.progress(u.prog)
	}
}

// stored reports whether the chunk key is stored already with exactly the
// bytes out (sha256 sum): an object of the right size is read back and
// hashed, since another attempt may have stored the same content with
// other bytes of the same size (another compression level, a codec of
// another version). An object under a content name that is not out is a
// leftover that does not match: it is deleted so that the chunk can be
// stored.
func (u *uploader) stored(key string, out []byte, sum [sha256.Size]byte) (bool, error) {
	info, err := u.b.Stat(u.ctx, u.prefix+key)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("look for an earlier upload of %s: %w", key, err)
	case info.Size == int64(len(out)):
		same, err := u.sameBytes(key, sum)
		if err != nil {
			return false, err
		}
		if same {
			return true, nil
		}
	}
	if err := u.b.Delete(u.ctx, u.prefix+key); err != nil {
		return false, fmt.Errorf("replace %s (%d bytes stored, %d expected, other content): %w", key, info.Size, len(out), err)
	}
	return false, nil
}

// sameBytes reads the stored object key and reports whether its sha256 is
// sum.
func (u *uploader) sameBytes(key string, sum [sha256.Size]byte) (bool, error) {
	rc, err := u.b.Get(u.ctx, u.prefix+key)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read back an earlier upload of %s: %w", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	if _, err := io.Copy(h, rc); err != nil {
		return false, fmt.Errorf("read back an earlier upload of %s: %w", key, err)
	}
	return bytes.Equal(h.Sum(nil), sum[:]), nil
}

// seal encrypts the compressed chunk out in place (reallocating only if its
// capacity is too small) at position pos (SealPosition) and returns the
// encrypted chunk.
func (u *uploader) seal(pos uint64, out []byte) []byte {
	n := len(out)
	var buf []byte
	if cap(out) >= n+crypt.Overhead {
		buf = out[:crypt.HeaderSize+n]
		copy(buf[crypt.HeaderSize:], buf[:n]) // memmove: the regions overlap
	} else {
		buf = make([]byte, crypt.HeaderSize+n, n+crypt.Overhead)
		copy(buf[crypt.HeaderSize:], out)
	}
	if u.nameKey != nil {
		return u.cipher.SealDeterministic(buf[:0], buf[crypt.HeaderSize:], pos)
	}
	return u.cipher.Seal(buf[:0], buf[crypt.HeaderSize:], pos)
}
