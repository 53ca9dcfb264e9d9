// Package counting wraps a storage.Backend to count the requests made to
// it, for tests that bound what an operation costs, and to fail writes
// after a number of them, for tests of what a crash leaves.
package counting

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/strata-backup/strata/internal/storage"
)

// ListPageSize is the number of keys one listing request returns in GCS
// (and S3): a List of n keys is counted as ceil(n/ListPageSize) requests,
// at least one.
const ListPageSize = 1000

// Counts are the requests made, by kind.
type Counts struct {
	Put, Get, Stat, Delete int
	// List is the number of List calls; ListPages the requests they cost
	// in pages of ListPageSize keys.
	List, ListPages int
}

// Requests is the number of storage requests: listing pages, not calls.
func (c Counts) Requests() int { return c.Put + c.Get + c.Stat + c.Delete + c.ListPages }

// Reads is the number of read requests (Get, Stat and listing pages).
func (c Counts) Reads() int { return c.Get + c.Stat + c.ListPages }

func (c Counts) String() string {
	return fmt.Sprintf("%d requests (get %d, stat %d, list %d in %d pages, put %d, delete %d)",
		c.Requests(), c.Get, c.Stat, c.List, c.ListPages, c.Put, c.Delete)
}

// ErrInjected is returned by a write made after the failure point.
var ErrInjected = errors.New("injected storage failure")

// Backend counts the requests made to B. After FailAfter(n), the writes
// (Put and Delete) after the next n fail with ErrInjected without reaching
// B, as if the process had died there.
type Backend struct {
	B storage.Backend

	mu        sync.Mutex
	failAfter int
	writes    int
	c         Counts
}

// New wraps b.
func New(b storage.Backend) *Backend { return &Backend{B: b} }

// FailAfter makes every write after the next n fail (n <= 0: none fails).
func (b *Backend) FailAfter(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failAfter, b.writes = n, 0
}

// Counts returns the requests counted since the last Reset.
func (b *Backend) Counts() Counts {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.c
}

// Reset sets the counts to zero.
func (b *Backend) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.c = Counts{}
}

// write counts a write and says whether it may go through.
func (b *Backend) write(count *int) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	*count++
	if b.failAfter > 0 {
		if b.writes >= b.failAfter {
			return ErrInjected
		}
		b.writes++
	}
	return nil
}

func (b *Backend) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	if err := b.write(&b.c.Put); err != nil {
		return fmt.Errorf("put %s: %w", key, err)
	}
	return b.B.Put(ctx, key, r, size)
}

func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := b.write(&b.c.Delete); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	return b.B.Delete(ctx, key)
}

func (b *Backend) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	b.mu.Lock()
	b.c.Get++
	b.mu.Unlock()
	return b.B.Get(ctx, key)
}

func (b *Backend) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	b.mu.Lock()
	b.c.Stat++
	b.mu.Unlock()
	return b.B.Stat(ctx, key)
}

func (b *Backend) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	objs, err := b.B.List(ctx, prefix)
	b.mu.Lock()
	b.c.List++
	b.c.ListPages += max(1, (len(objs)+ListPageSize-1)/ListPageSize)
	b.mu.Unlock()
	return objs, err
}

func (b *Backend) String() string { return "counting(" + b.B.String() + ")" }

// ListDir lists one level under prefix through B's own ListDir, counted as
// ceil(entries/ListPageSize) pages (objects and directories), or, when B
// has none, through the full List that storage.ListDir falls back to,
// counted as that listing's pages.
func (b *Backend) ListDir(ctx context.Context, prefix string) ([]storage.ObjectInfo, []string, error) {
	if d, ok := b.B.(storage.DirLister); ok {
		objs, dirs, err := d.ListDir(ctx, prefix)
		b.mu.Lock()
		b.c.List++
		b.c.ListPages += max(1, (len(objs)+len(dirs)+ListPageSize-1)/ListPageSize)
		b.mu.Unlock()
		return objs, dirs, err
	}
	objs, err := b.List(ctx, prefix)
	if err != nil {
		return nil, nil, err
	}
	o, d := storage.SplitDir(prefix, objs)
	return o, d, nil
}
