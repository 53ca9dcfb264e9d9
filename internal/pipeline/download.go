package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"sync"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/ratelimit"
	"github.com/strata-backup/strata/internal/storage"
)

// DownloadOptions configures Download. The zero value uses the defaults.
type DownloadOptions struct {
	// Parallelism is the maximum number of chunks fetched or buffered at
	// once (default runtime.GOMAXPROCS(0)).
	Parallelism int
	// Progress, if set, is called after each chunk is written to the
	// output (from a single goroutine).
	Progress func(Progress)
	// ExpectRawSHA256, if set, is the hex sha256 of the whole raw stream,
	// checked at the end.
	ExpectRawSHA256 string
	// Cipher, if set, decrypts each chunk after its sha256 is verified and
	// before it is decompressed; it must be the cipher of the backup (its
	// data key and backup ID). nil: the backup is not encrypted.
	Cipher *crypt.ChunkCipher
	// Limiter, if set, limits the rate of stored bytes: each chunk waits
	// for its stored size after its Get, before its data is read.
	Limiter *ratelimit.Limiter
	// FirstIndex is the index of chunks[0] in its backup: chunks is then
	// the run of the backup's chunks FirstIndex..FirstIndex+len-1 (a part of
	// the stream, such as one file of a logical backup). Errors name the
	// backup's chunk indexes.
	FirstIndex int
}

// DownloadResult describes the restored stream.
type DownloadResult struct {
	Chunks     int    // chunks written
	RawSize    int64  // bytes written to the output
	StoredSize int64  // stored bytes read
	RawSHA256  string // hex sha256 of the bytes written
}

// Download fetches chunks (stored under prefix) in parallel, verifies each
// chunk's stored size and sha256, decrypts it with opt.Cipher if set,
// decompresses it with codec, checks its raw size, and writes the raw data to
// w strictly in index order.
//
// A chunk that fails decryption is reported as a *ChunkError whose error
// matches crypt.ErrDecrypt (wrong data key or backup ID, or a chunk moved or
// swapped) or crypt.ErrNotEncrypted (a cipher was given for an unencrypted
// chunk); an encrypted chunk downloaded without opt.Cipher is reported as a
// *ChunkError matching ErrEncrypted.
//
// A chunk that is missing, unreadable or fails a check is reported as a
// *ChunkError (corruption also matches ErrCorrupt; a missing chunk wraps
// storage.ErrNotFound). If opt.ExpectRawSHA256 is set and the whole stream
// does not match it, the error matches ErrCorrupt. Data already written to w
// when an error occurs must be discarded by the caller.
func Download(ctx context.Context, b storage.Backend, prefix string, chunks []manifest.Chunk, codec string, w io.Writer, opt DownloadOptions) (*DownloadResult, error) {
	if err := checkPrefix(prefix); err != nil {
		return nil, fmt.Errorf("download: %w", err)
	}
	cd, err := ParseCodec(codec)
	if err != nil {
		return nil, fmt.Errorf("download: %w", err)
	}
	if opt.ExpectRawSHA256 != "" && !manifest.IsSHA256Hex(opt.ExpectRawSHA256) {
		return nil, fmt.Errorf("download: expected sha256 %q is not 64 lowercase hex characters", opt.ExpectRawSHA256)
	}
	if opt.FirstIndex < 0 {
		return nil, fmt.Errorf("download: first index %d is negative", opt.FirstIndex)
	}
	for i, c := range chunks {
		if ce := checkChunk(prefix, opt.FirstIndex+i, c); ce != nil {
			return nil, ce
		}
	}
	par := defaultParallelism(opt.Parallelism)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	d := &downloader{
		ctx:        ctx,
		cancel:     cancel,
		b:          b,
		prefix:     prefix,
		codec:      cd,
		cipher:     opt.Cipher,
		limiter:    opt.Limiter,
		storedBufs: make(bufPool, par),
		rawBufs:    make(bufPool, par+1),
	}

	type fetched struct {
		raw []byte
		err error
	}
	results := make([]chan fetched, len(chunks))
	for i := range results {
		results[i] = make(chan fetched, 1)
	}
	// A slot is taken before fetching chunk i and released once chunk i is
	// written: at most par chunks are in memory, and slots are taken in
	// index order, so the writer never waits for a chunk without a slot.
	sem := make(chan struct{}, par)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range chunks {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Errors are reported by the writer, in index order, so
				// that the first bad chunk of the stream is the one reported.
				raw, err := d.fetch(opt.FirstIndex+i, chunks[i])
				results[i] <- fetched{raw: raw, err: err}
			}()
		}
	}()

	// The whole stream's sha256 is computed by its own goroutine while
	// the writer writes the same chunk to w: the chunk's buffer is reused
	// only once both are done with it.
	rawHash := sha256.New()
	toHash, hashed := make(chan []byte), make(chan struct{})
	go func() {
		defer close(hashed)
		for b := range toHash {
			rawHash.Write(b)
			hashed <- struct{}{}
		}
	}()
	var prog Progress
	for i, c := range chunks {
		var f fetched
		if ctx.Err() == nil {
			select {
			case f = <-results[i]:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			f.err = fmt.Errorf("download chunk %d: %w", opt.FirstIndex+i, context.Cause(ctx))
		}
		if f.err != nil {
			d.fail(f.err)
			break
		}
		toHash <- f.raw
		_, err := w.Write(f.raw)
		<-hashed
		if err != nil {
			d.fail(fmt.Errorf("download chunk %d: write output: %w", opt.FirstIndex+i, err))
			break
		}
		d.rawBufs.put(f.raw)
		<-sem
		prog.Chunks++
		prog.RawBytes += c.RawSize
		prog.StoredBytes += c.StoredSize
		if opt.Progress != nil {
			opt.Progress(prog)
		}
	}
	close(toHash)
	<-hashed
	wg.Wait()
	if d.err != nil { // all goroutines are done: no lock needed
		return nil, d.err
	}

	res := &DownloadResult{
		Chunks:     prog.Chunks,
		RawSize:    prog.RawBytes,
		StoredSize: prog.StoredBytes,
		RawSHA256:  hex.EncodeToString(rawHash.Sum(nil)),
	}
	if opt.ExpectRawSHA256 != "" && res.RawSHA256 != opt.ExpectRawSHA256 {
		return nil, fmt.Errorf("download: %w: sha256 of the restored stream is %s but the manifest records %s",
			ErrCorrupt, res.RawSHA256, opt.ExpectRawSHA256)
	}
	return res, nil
}

type downloader struct {
	ctx        context.Context
	cancel     context.CancelCauseFunc
	b          storage.Backend
	prefix     string
	codec      Codec
	cipher     *crypt.ChunkCipher // nil: not encrypted
	limiter    *ratelimit.Limiter // nil: no limit
	storedBufs bufPool
	rawBufs    bufPool

	mu  sync.Mutex
	err error // first error
}

// fail records the first error and cancels the download.
func (d *downloader) fail(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err == nil {
		d.err = err
		d.cancel(err)
	}
}

// fetch reads, verifies, decrypts and decompresses chunk i.
func (d *downloader) fetch(i int, c manifest.Chunk) ([]byte, error) {
	stored, err := readStored(d.ctx, d.b, d.prefix, i, c, d.storedBufs.get(int(c.StoredSize)+1), nil, d.limiter)
	if err != nil {
		return nil, err
	}
	defer d.storedBufs.put(stored)
	compressed := stored
	if d.cipher != nil {
		var dst []byte // decrypt in place
		if len(stored) >= crypt.HeaderSize {
			dst = stored[crypt.HeaderSize:crypt.HeaderSize]
		}
		compressed, err = d.cipher.Open(dst, stored, SealPosition(i, c.Key))
		if err != nil {
			reason := "cannot decrypt although its sha256 matches: wrong key for this backup, or the chunk and its manifest entry were swapped or altered"
			if errors.Is(err, crypt.ErrNotEncrypted) {
				reason = "is not encrypted but a decryption key was given: the manifest does not match the stored data"
			}
			return nil, &ChunkError{Index: i, Key: c.Key, Reason: reason, Err: err}
		}
	}
	raw, err := d.codec.decompress(d.rawBufs.get(int(c.RawSize)+decompressSlack), compressed, int(c.RawSize)+decompressSlack)
	if err != nil {
		if ce := d.encryptedError(i, c, stored); ce != nil {
			return nil, ce
		}
		return nil, &ChunkError{Index: i, Key: c.Key, corrupt: true,
			Reason: fmt.Sprintf("cannot decompress (%s) although its sha256 matches: data was corrupt when stored or the codec is wrong", d.codec.Name()),
			Err:    err}
	}
	if int64(len(raw)) != c.RawSize {
		d.rawBufs.put(raw)
		if ce := d.encryptedError(i, c, stored); ce != nil {
			return nil, ce
		}
		return nil, &ChunkError{Index: i, Key: c.Key, corrupt: true,
			Reason: fmt.Sprintf("raw size mismatch: manifest records %d bytes, decompressed %d", c.RawSize, len(raw))}
	}
	return raw, nil
}

// encryptedError explains the failure of chunk i when it was not decrypted
// but looks encrypted; it returns nil otherwise.
func (d *downloader) encryptedError(i int, c manifest.Chunk, stored []byte) *ChunkError {
	if d.cipher != nil || !crypt.IsEncrypted(stored) {
		return nil
	}
	return &ChunkError{Index: i, Key: c.Key,
		Reason: "is encrypted but no decryption key was given: restore it with the backup's encryption key (see encryption_key_id in its manifest)",
		Err:    ErrEncrypted}
}

// readStored reads the stored bytes of chunk i and checks their size and
// sha256. With a non-nil buf, the data is read into buf's storage and
// returned; otherwise it is streamed into the hash only and nil is returned.
// With a non-nil lim, it waits for the chunk's stored size after the Get.
// Problems with the chunk are returned as a *ChunkError; cancellation as a
// plain error.
func readStored(ctx context.Context, b storage.Backend, prefix string, i int, c manifest.Chunk, buf []byte, h hash.Hash, lim *ratelimit.Limiter) ([]byte, error) {
	rc, err := b.Get(ctx, prefix+c.Key)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return nil, &ChunkError{Index: i, Key: c.Key, Reason: "missing from repository", Err: err}
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("chunk %d: %w", i, err)
		}
		return nil, &ChunkError{Index: i, Key: c.Key, Reason: "read failed", Err: err}
	}
	defer rc.Close()
	if err := lim.Wait(ctx, int(c.StoredSize)); err != nil {
		return nil, fmt.Errorf("chunk %d: %w", i, err)
	}

	if h == nil {
		h = sha256.New()
	} else {
		h.Reset()
	}
	lr := io.LimitReader(ctxReader{ctx: ctx, r: rc}, c.StoredSize+1)
	var n int64
	if buf != nil {
		buf = buf[:cap(buf)]
		if int64(len(buf)) > c.StoredSize+1 {
			buf = buf[:c.StoredSize+1]
		}
		var m int
		m, err = io.ReadFull(lr, buf)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = nil
		}
		buf = buf[:m]
		n = int64(m)
		h.Write(buf)
	} else {
		n, err = io.Copy(h, lr)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("chunk %d: %w", i, err)
		}
		return nil, &ChunkError{Index: i, Key: c.Key, Reason: "read failed", Err: err}
	}
	if n != c.StoredSize {
		found := fmt.Sprint(n)
		if n > c.StoredSize {
			found = "more"
		}
		return nil, &ChunkError{Index: i, Key: c.Key, corrupt: true,
			Reason: fmt.Sprintf("size mismatch: manifest records %d stored bytes, found %s: stored data is corrupt", c.StoredSize, found)}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != c.SHA256 {
		return nil, &ChunkError{Index: i, Key: c.Key, corrupt: true,
			Reason: "sha256 mismatch: stored data is corrupt"}
	}
	return buf, nil
}
