package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/ratelimit"
	"github.com/strata-backup/strata/internal/storage"
)

// ChunkCache is a storage.Backend that keeps a local copy of the chunks it
// reads, so that a retried restore downloads only the chunks it did not
// have: a Get of a known chunk (see Add) whose cached copy has the chunk's
// recorded size and sha256 is served from the cache directory; any other
// Get of a known chunk is fetched from the repository and written to the
// cache as it is read (the copy is kept when the whole chunk was read; it
// is checked against the chunk's sha256 before it is served). Every other
// method, and Gets of other keys, go to the repository unchanged.
//
// Over a repository whose objects are files on this host
// (storage.IsLocal), a copy would cost as much to read back as the chunk
// itself and twice the disk writes: the cache then keeps nothing and only
// counts the bytes read.
//
// Repository reads wait for the limiter (nil: no limit); cache reads do
// not. Pass the limiter here, not in DownloadOptions, so that cached chunks
// do not count against the bandwidth limit. It is safe for concurrent use.
type ChunkCache struct {
	storage.Backend
	dir     string
	limiter *ratelimit.Limiter
	local   bool // the repository is local files: keep no copies

	mu         sync.Mutex
	chunks     map[string]manifest.Chunk // full key → manifest entry
	downloaded int64
	cached     int64
}

// NewChunkCache returns a cache of chunks read from b, kept under dir
// (created if needed).
func NewChunkCache(b storage.Backend, dir string, lim *ratelimit.Limiter) (*ChunkCache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create chunk cache %s: %w", dir, err)
	}
	return &ChunkCache{Backend: b, dir: dir, limiter: lim, local: storage.IsLocal(b), chunks: map[string]manifest.Chunk{}}, nil
}

// Add makes the chunks of one backup (stored under prefix) cacheable.
func (c *ChunkCache) Add(prefix string, chunks []manifest.Chunk) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, ch := range chunks {
		c.chunks[prefix+ch.Key] = ch
	}
}

// Remove deletes the cached chunks stored under prefix (e.g. those of a
// chain member that is fully applied) and forgets them.
func (c *ChunkCache) Remove(prefix string) error {
	c.mu.Lock()
	for k := range c.chunks {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			delete(c.chunks, k)
		}
	}
	c.mu.Unlock()
	if err := storage.ValidatePrefix(prefix); err != nil || prefix == "" {
		return fmt.Errorf("chunk cache: remove %q: invalid prefix", prefix)
	}
	return os.RemoveAll(filepath.Join(c.dir, filepath.FromSlash(prefix)))
}

// KeepsCopies reports whether the cache writes the chunks it reads to its
// directory (false over a local repository).
func (c *ChunkCache) KeepsCopies() bool { return !c.local }

// Stats returns the stored bytes read from the repository and those served
// from the cache so far.
func (c *ChunkCache) Stats() (downloaded, cached int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.downloaded, c.cached
}

func (c *ChunkCache) path(key string) string { return filepath.Join(c.dir, filepath.FromSlash(key)) }

// Get serves a known chunk from the cache, or reads it from the repository
// while caching it.
func (c *ChunkCache) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	c.mu.Lock()
	ch, known := c.chunks[key]
	c.mu.Unlock()
	if !known || storage.ValidateKey(key) != nil {
		return c.Backend.Get(ctx, key)
	}
	if c.local {
		rc, err := c.Backend.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		if err := c.limiter.Wait(ctx, int(ch.StoredSize)); err != nil {
			rc.Close()
			return nil, err
		}
		return &teeToCache{rc: rc, c: c}, nil
	}
	p := c.path(key)
	if ok := cachedCopyMatches(p, ch); ok {
		f, err := os.Open(p)
		if err == nil {
			c.mu.Lock()
			c.cached += ch.StoredSize
			c.mu.Unlock()
			return f, nil
		}
	}
	_ = os.Remove(p)
	rc, err := c.Backend.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	if err := c.limiter.Wait(ctx, int(ch.StoredSize)); err != nil {
		rc.Close()
		return nil, err
	}
	t := &teeToCache{rc: rc, c: c, final: p, want: ch}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err == nil {
		t.f, _ = os.CreateTemp(filepath.Dir(p), ".part-*")
	}
	return t, nil
}

// cachedCopyMatches reports whether the file at p holds the chunk: its
// recorded size and sha256.
func cachedCopyMatches(p string, ch manifest.Chunk) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || st.Size() != ch.StoredSize {
		return false
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return false
	}
	return hex.EncodeToString(h.Sum(nil)) == ch.SHA256
}

// teeToCache reads a chunk from the repository, counting its bytes, and
// writes it to a temp file in the cache (f nil: it keeps no copy), which
// Close renames into place when the whole chunk was read. Its sha256 is not
// computed here: the reader (Download) checks it, and a copy is checked
// again before it is served.
type teeToCache struct {
	rc    io.ReadCloser
	c     *ChunkCache
	f     *os.File // nil: no copy kept, just read through
	final string
	want  manifest.Chunk
	n     int64
}

func (t *teeToCache) Read(p []byte) (int, error) {
	n, err := t.rc.Read(p)
	if n > 0 {
		t.n += int64(n)
		t.c.mu.Lock()
		t.c.downloaded += int64(n)
		t.c.mu.Unlock()
		if t.f != nil {
			if _, werr := t.f.Write(p[:n]); werr != nil {
				t.discard()
			}
		}
	}
	return n, err
}

func (t *teeToCache) discard() {
	if t.f != nil {
		name := t.f.Name()
		_ = t.f.Close()
		_ = os.Remove(name)
		t.f = nil
	}
}

// Close closes the repository reader and keeps the copy if it is complete.
func (t *teeToCache) Close() error {
	err := t.rc.Close()
	if t.f == nil {
		return err
	}
	if t.n != t.want.StoredSize {
		t.discard()
		return err
	}
	name := t.f.Name()
	if cerr := t.f.Close(); cerr != nil {
		_ = os.Remove(name)
		return err
	}
	t.f = nil
	if rerr := os.Rename(name, t.final); rerr != nil && !errors.Is(rerr, os.ErrExist) {
		_ = os.Remove(name)
	}
	return err
}
