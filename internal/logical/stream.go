package logical

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"sync"
)

// StreamSink writes the files of a dump one after the other to W, each
// whole, and records each file's offset, size and sha256 in its File. It is
// how a dump becomes one stream for the backup pipeline.
type StreamSink struct {
	W io.Writer

	mu  sync.Mutex
	off int64
	err error
}

// Put writes data to the stream as file f.
func (s *StreamSink) Put(ctx context.Context, f *File, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	if _, err := s.W.Write(data); err != nil {
		s.err = fmt.Errorf("write %s to the stream: %w", f.Name, err)
		return s.err
	}
	f.Offset, f.Size, f.SHA256 = s.off, int64(len(data)), hex.EncodeToString(sum[:])
	s.off += int64(len(data))
	return nil
}

// Size is the number of bytes written.
func (s *StreamSink) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.off
}

// StreamSource reads the files of a dump stored as one stream: OpenRange
// opens size bytes at offset off of it. Every file is checked against its
// Index entry.
type StreamSource struct {
	OpenRange func(ctx context.Context, off, size int64) (io.ReadCloser, error)
}

// Open opens file f.
func (s StreamSource) Open(ctx context.Context, f *File) (io.ReadCloser, error) {
	r, err := s.OpenRange(ctx, f.Offset, f.Size)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", f.Name, err)
	}
	return CheckedReader(r, f), nil
}

// CheckedReader returns r, which must give the bytes of file f, checking at
// its end that they are f.Size bytes with sha256 f.SHA256: it fails with
// ErrCorrupt instead of io.EOF when they are not, and when r gives more.
func CheckedReader(r io.ReadCloser, f *File) io.ReadCloser {
	return &checked{r: r, f: f, h: sha256.New()}
}

type checked struct {
	r   io.ReadCloser
	f   *File
	h   hash.Hash
	n   int64
	err error
}

func (c *checked) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	if c.n > c.f.Size {
		c.err = fmt.Errorf("%s: more than its %d bytes: %w", c.f.Name, c.f.Size, ErrCorrupt)
		return 0, c.err
	}
	if err == io.EOF {
		if c.n != c.f.Size {
			c.err = fmt.Errorf("%s: %d bytes where the index records %d: %w", c.f.Name, c.n, c.f.Size, ErrCorrupt)
			return n, c.err
		}
		if got := hex.EncodeToString(c.h.Sum(nil)); got != c.f.SHA256 {
			c.err = fmt.Errorf("%s: sha256 %s where the index records %s: %w", c.f.Name, got, c.f.SHA256, ErrCorrupt)
			return n, c.err
		}
	}
	if err != nil {
		c.err = err
	}
	return n, err
}

func (c *checked) Close() error { return c.r.Close() }
