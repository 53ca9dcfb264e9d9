// Package memory implements an in-memory storage.Backend with the same
// semantics as the real backends. It is meant for unit tests.
package memory

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/strata-backup/strata/internal/storage"
)

type object struct {
	data    []byte
	modTime time.Time
}

// Backend is an in-memory object store. The zero value is not usable; call
// New. It is safe for concurrent use.
type Backend struct {
	mu      sync.RWMutex
	objects map[string]object
}

var _ storage.Backend = (*Backend)(nil)

// New returns an empty in-memory backend.
func New() *Backend {
	return &Backend{objects: make(map[string]object)}
}

// Put stores a copy of r's content under key. It fails with storage.ErrExists
// if key is already present. If size is non-negative, r must yield exactly
// size bytes.
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := storage.ValidateKey(key); err != nil {
		return fmt.Errorf("memory: put: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: put %s: %w", key, err)
	}
	if b.exists(key) {
		return fmt.Errorf("memory: put %s: %w", key, storage.ErrExists)
	}
	var buf bytes.Buffer
	if size > 0 && size <= 64<<20 {
		buf.Grow(int(size))
	}
	n, err := io.Copy(&buf, ctxReader{ctx: ctx, r: r})
	if err != nil {
		return fmt.Errorf("memory: put %s: read data: %w", key, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("memory: put %s: got %d bytes, expected %d", key, n, size)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: put %s: %w", key, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.objects[key]; ok {
		return fmt.Errorf("memory: put %s: %w", key, storage.ErrExists)
	}
	b.objects[key] = object{data: buf.Bytes(), modTime: time.Now()}
	return nil
}

func (b *Backend) exists(key string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	_, ok := b.objects[key]
	return ok
}

func (b *Backend) get(ctx context.Context, op, key string) (object, error) {
	if err := storage.ValidateKey(key); err != nil {
		return object{}, fmt.Errorf("memory: %s: %w", op, err)
	}
	if err := ctx.Err(); err != nil {
		return object{}, fmt.Errorf("memory: %s %s: %w", op, key, err)
	}
	b.mu.RLock()
	o, ok := b.objects[key]
	b.mu.RUnlock()
	if !ok {
		return object{}, fmt.Errorf("memory: %s %s: %w", op, key, storage.ErrNotFound)
	}
	return o, nil
}

// Get returns a reader over the object's content.
func (b *Backend) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	o, err := b.get(ctx, "get", key)
	if err != nil {
		return nil, err
	}
	// Stored data is never modified after Put, so it can be shared.
	return io.NopCloser(bytes.NewReader(o.data)), nil
}

// Stat returns the object's size and modification time.
func (b *Backend) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	o, err := b.get(ctx, "stat", key)
	if err != nil {
		return storage.ObjectInfo{}, err
	}
	return storage.ObjectInfo{Key: key, Size: int64(len(o.data)), ModTime: o.modTime}, nil
}

// List returns the objects whose key starts with prefix, sorted by key.
func (b *Backend) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("memory: list: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory: list %q: %w", prefix, err)
	}
	b.mu.RLock()
	out := make([]storage.ObjectInfo, 0)
	for k, o := range b.objects {
		if strings.HasPrefix(k, prefix) {
			out = append(out, storage.ObjectInfo{Key: k, Size: int64(len(o.data)), ModTime: o.modTime})
		}
	}
	b.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete removes the object; a missing key is not an error.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := storage.ValidateKey(key); err != nil {
		return fmt.Errorf("memory: delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memory: delete %s: %w", key, err)
	}
	b.mu.Lock()
	delete(b.objects, key)
	b.mu.Unlock()
	return nil
}

// String describes the backend for messages.
func (b *Backend) String() string { return "memory" }

// ctxReader fails reads once ctx is done, so that a Put of a slow or endless
// stream stops when its context is cancelled.
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

// ListDir lists one level under prefix (storage.DirLister).
func (b *Backend) ListDir(ctx context.Context, prefix string) ([]storage.ObjectInfo, []string, error) {
	objs, err := b.List(ctx, prefix)
	if err != nil {
		return nil, nil, err
	}
	o, d := storage.SplitDir(prefix, objs)
	return o, d, nil
}
