package metrics

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/strata-backup/strata/internal/storage"
)

// Storage wraps a repository backend to count its requests, failed
// requests and (through Retried) retried requests in the strata_storage_*
// counters, labelled with backend (local, gcs, memory, ...). A missing
// object (storage.ErrNotFound), an existing one on a create
// (storage.ErrExists) and a cancelled request are answers, not failures.
func Storage(b storage.Backend, backend string) storage.Backend {
	return &instrumented{b: b, backend: backend}
}

// Retried counts one retried request of a backend's operation; backends
// that retry (the GCS client, the local backend's directory race) call it
// through the hook backend.Open installs.
func Retried(backend, op string) {
	storageRetries.WithLabelValues(backend, op).Inc()
}

// RetryHook returns Retried bound to a backend, for the backends' retry
// hooks.
func RetryHook(backend string) func(op string) {
	return func(op string) { Retried(backend, op) }
}

type instrumented struct {
	b       storage.Backend
	backend string
}

// Unwrap returns the wrapped backend.
func (s *instrumented) Unwrap() storage.Backend { return s.b }

func (s *instrumented) String() string { return s.b.String() }

func (s *instrumented) observe(op string, err error) {
	storageRequests.WithLabelValues(s.backend, op).Inc()
	if failed(err) {
		storageErrors.WithLabelValues(s.backend, op).Inc()
	}
}

func failed(err error) bool {
	return err != nil && !errors.Is(err, storage.ErrNotFound) && !errors.Is(err, storage.ErrExists) &&
		!errors.Is(err, context.Canceled)
}

func (s *instrumented) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	err := s.b.Put(ctx, key, r, size)
	s.observe(OpPut, err)
	return err
}

func (s *instrumented) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := s.b.Get(ctx, key)
	s.observe(OpGet, err)
	if err != nil {
		return nil, err
	}
	return &countedBody{ReadCloser: rc, s: s}, nil
}

func (s *instrumented) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	info, err := s.b.Stat(ctx, key)
	s.observe(OpStat, err)
	return info, err
}

func (s *instrumented) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	objs, err := s.b.List(ctx, prefix)
	s.observe(OpList, err)
	return objs, err
}

func (s *instrumented) Delete(ctx context.Context, key string) error {
	err := s.b.Delete(ctx, key)
	s.observe(OpDelete, err)
	return err
}

// countedBody counts a failure while reading an object's body (a broken
// download) as a failed get, once.
type countedBody struct {
	io.ReadCloser
	s    *instrumented
	once sync.Once
}

func (c *countedBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	if err != nil && err != io.EOF && failed(err) {
		c.once.Do(func() { storageErrors.WithLabelValues(c.s.backend, OpGet).Inc() })
	}
	return n, err
}

// ListDir lists one level under prefix with the wrapped backend's ListDir
// (one list request counted) or its fallback, a full List.
func (s *instrumented) ListDir(ctx context.Context, prefix string) ([]storage.ObjectInfo, []string, error) {
	if _, ok := s.b.(storage.DirLister); !ok {
		objs, err := s.List(ctx, prefix)
		if err != nil {
			return nil, nil, err
		}
		o, d := storage.SplitDir(prefix, objs)
		return o, d, nil
	}
	objs, dirs, err := storage.ListDir(ctx, s.b, prefix)
	s.observe(OpList, err)
	return objs, dirs, err
}
