package logical

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// DirSink writes each file of a dump to Dir/<Name>, creating the schema
// directories. Offsets are a running total of the sizes in Put order, as
// if the files were stored one after the other in one stream. It serves
// tests, exports and benchmarks.
type DirSink struct {
	Dir string

	mu     sync.Mutex
	offset int64
}

// Put writes f's bytes to Dir/f.Name and sets f.Offset.
func (s *DirSink) Put(ctx context.Context, f *File, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := filePath(s.Dir, f.Name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fmt.Errorf("dir sink: %w", err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		return fmt.Errorf("dir sink: %w", err)
	}
	s.mu.Lock()
	f.Offset = s.offset
	s.offset += int64(len(data))
	s.mu.Unlock()
	return nil
}

// DirSource reads the files of a dump from Dir/<Name>. The reader Open
// returns fails at its end with an error matching ErrCorrupt when the bytes
// do not have the File's size and sha256.
type DirSource struct {
	Dir string
}

// Open opens Dir/f.Name.
func (s DirSource) Open(ctx context.Context, f *File) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := filePath(s.Dir, f.Name)
	if err != nil {
		return nil, err
	}
	fh, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("dir source: %w", err)
	}
	return CheckedReader(fh, f), nil
}

// filePath joins a dump file name to dir, refusing names that are not
// relative paths inside it (a name read back from storage is untrusted).
func filePath(dir, name string) (string, error) {
	if name == "" || strings.HasPrefix(name, "/") || strings.Contains(name, "\\") || strings.Contains(name, "\x00") {
		return "", fmt.Errorf("%w: bad file name %q", ErrCorrupt, name)
	}
	for _, el := range strings.Split(name, "/") {
		if el == "" || el == "." || el == ".." {
			return "", fmt.Errorf("%w: bad file name %q", ErrCorrupt, name)
		}
	}
	return filepath.Join(dir, filepath.FromSlash(name)), nil
}
