// Package storage defines the repository backend interface that every Strata
// storage (local directory, in-memory, GCS) implements, and the errors they share.
package storage

import (
	"context"
	"errors"
	"io"
	"slices"
	"sort"
	"strings"
	"time"
)

// ErrNotFound is returned (wrapped) when an object does not exist.
var ErrNotFound = errors.New("object not found")

// ErrExists is returned (wrapped) by Put when the object already exists:
// objects in a Strata repository are immutable once written.
var ErrExists = errors.New("object already exists")

// ObjectInfo describes one stored object.
type ObjectInfo struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Backend is a flat key/value object store with '/'-separated keys.
// Implementations must be safe for concurrent use.
type Backend interface {
	// Put stores the object atomically: readers never observe a partial
	// object. It fails with ErrExists if the key is already present.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens the object for reading; ErrNotFound if absent.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat returns the object's info; ErrNotFound if absent.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// List returns every object whose key starts with prefix, sorted by key.
	List(ctx context.Context, prefix string) ([]ObjectInfo, error)
	// Delete removes the object; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// String names the backend and location for messages (never secrets).
	String() string
}

// LocalFiles is an optional capability of a Backend that keeps its objects
// as files on this host's disks: reading an object again costs no more than
// reading a local copy of it, so callers need not keep one (a restore's
// chunk cache does not).
type LocalFiles interface {
	LocalFiles() bool
}

// IsLocal reports whether b, or the backend it wraps (a wrapper with an
// Unwrap() Backend method, such as the metrics one), keeps its objects as
// files on this host (see LocalFiles).
func IsLocal(b Backend) bool {
	for i := 0; b != nil && i < 16; i++ {
		if l, ok := b.(LocalFiles); ok {
			return l.LocalFiles()
		}
		u, ok := b.(interface{ Unwrap() Backend })
		if !ok {
			return false
		}
		b = u.Unwrap()
	}
	return false
}

// DirLister is an optional capability of a Backend: listing one level
// under a prefix, as a bucket listing with the delimiter "/" does. Callers
// use ListDir, which falls back to List for backends without it.
type DirLister interface {
	// ListDir returns the objects whose key starts with prefix and has no
	// '/' after it, and the distinct "directories" below prefix: each key
	// that has a '/' after prefix contributes prefix + its name up to and
	// including that '/'. Both are sorted. A listing page holds up to 1,000
	// entries of either kind.
	ListDir(ctx context.Context, prefix string) (objs []ObjectInfo, dirs []string, err error)
}

// ListDir lists one level under prefix (see DirLister): with b's own
// ListDir when it has one, else from a full List (correct, at the cost of
// listing every key under prefix).
func ListDir(ctx context.Context, b Backend, prefix string) ([]ObjectInfo, []string, error) {
	if d, ok := b.(DirLister); ok {
		return d.ListDir(ctx, prefix)
	}
	objs, err := b.List(ctx, prefix)
	if err != nil {
		return nil, nil, err
	}
	o, d := SplitDir(prefix, objs)
	return o, d, nil
}

// SplitDir splits a full listing under prefix (sorted by key) into the
// objects right under prefix and the directories below it, as ListDir
// returns them.
func SplitDir(prefix string, objs []ObjectInfo) ([]ObjectInfo, []string) {
	out := make([]ObjectInfo, 0)
	dirs := make([]string, 0)
	for _, o := range objs {
		rest, ok := strings.CutPrefix(o.Key, prefix)
		if !ok {
			continue
		}
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			d := prefix + rest[:i+1]
			if len(dirs) == 0 || dirs[len(dirs)-1] != d {
				dirs = append(dirs, d)
			}
			continue
		}
		out = append(out, o)
	}
	sort.Strings(dirs)
	dirs = slices.Compact(dirs)
	return out, dirs
}
