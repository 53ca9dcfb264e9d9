// Package storage defines the repository backend interface that every Strata
// storage (local directory, in-memory, GCS) implements, and the errors they share.
package storage

import (
	"context"
	"errors"
	"io"
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
