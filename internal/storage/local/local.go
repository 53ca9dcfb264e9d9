// Package local implements storage.Backend on a local (or mounted) directory
// tree. Object keys map to files below the root directory, '/' separating
// directories.
//
// Writes are atomic and never overwrite: data is written to a temporary file
// in the destination directory, fsynced, and hard-linked into place (link(2)
// fails if the target exists), so that concurrent writers of one key get
// exactly one winner and readers never see a partial object. The filesystem
// must therefore support hard links.
package local

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/strata-backup/strata/internal/storage"
)

// tmpPrefix starts the names of in-progress writes. Such files are never
// listed, and keys with a segment starting with it are rejected.
const tmpPrefix = ".strata-tmp-"

// dirPerm is the mode of created directories. Backups contain the whole
// database, so directories (0700) and files (0600, as created by
// os.CreateTemp) are private to the owner.
const dirPerm = 0o700

// Backend stores objects as files below a root directory. It is safe for
// concurrent use, including by several processes sharing the directory.
type Backend struct {
	root    string // absolute, cleaned
	onRetry func(op string)
}

// OnRetry sets a function called before each retried request, with the
// operation retried (the strata_storage_retries_total counter). Set it
// before the backend is used.
func (b *Backend) OnRetry(f func(op string)) { b.onRetry = f }

var _ storage.Backend = (*Backend)(nil)

// New returns a backend rooted at root, creating the directory if it does not
// exist. It fails if root is not a directory or is not writable.
func New(root string) (*Backend, error) {
	if root == "" {
		return nil, errors.New("local storage: root directory is empty")
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("local storage: resolve root directory %q: %w", root, err)
	}
	if fi, err := os.Stat(abs); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("local storage: root %s is not a directory", abs)
	}
	if err := os.MkdirAll(abs, dirPerm); err != nil {
		return nil, fmt.Errorf("local storage: cannot create root directory %s: %w", abs, err)
	}
	probe, err := os.CreateTemp(abs, tmpPrefix+"probe-*")
	if err != nil {
		return nil, fmt.Errorf("local storage: root directory %s is not writable: %w", abs, err)
	}
	name := probe.Name()
	_ = probe.Close()
	if err := os.Remove(name); err != nil {
		return nil, fmt.Errorf("local storage: root directory %s is not writable: remove probe file: %w", abs, err)
	}
	return &Backend{root: abs}, nil
}

// LocalFiles reports that the objects are files on this host (see
// storage.LocalFiles).
func (b *Backend) LocalFiles() bool { return true }

// Root returns the absolute root directory.
func (b *Backend) Root() string { return b.root }

// String describes the backend for messages.
func (b *Backend) String() string { return "local directory " + b.root }

func validateKey(key string) error {
	if err := storage.ValidateKey(key); err != nil {
		return err
	}
	for _, seg := range strings.Split(key, "/") {
		if strings.HasPrefix(seg, tmpPrefix) {
			return fmt.Errorf("%w: key %q: segments starting with %q are reserved for temporary files",
				storage.ErrInvalidKey, key, tmpPrefix)
		}
	}
	return nil
}

func (b *Backend) path(key string) string {
	return filepath.Join(b.root, filepath.FromSlash(key))
}

// Put writes r's content to key atomically. It fails with storage.ErrExists
// if key is already present. If size is non-negative, r must yield exactly
// size bytes.
func (b *Backend) Put(ctx context.Context, key string, r io.Reader, size int64) (err error) {
	if err := validateKey(key); err != nil {
		return fmt.Errorf("local: put: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: put %s: %w", key, err)
	}
	dst := b.path(key)
	if fi, err := os.Lstat(dst); err == nil {
		if fi.IsDir() {
			return fmt.Errorf("local: put %s: a directory exists at %s (a key cannot also be a prefix of other keys in a local repository)", key, dst)
		}
		return fmt.Errorf("local: put %s: %w", key, storage.ErrExists)
	}
	dir := filepath.Dir(dst)
	tmp, created, err := b.createTemp(dir)
	if err != nil {
		return fmt.Errorf("local: put %s: %w", key, err)
	}
	tmpName := tmp.Name()
	defer func() {
		if tmp != nil {
			_ = tmp.Close()
		}
		_ = os.Remove(tmpName)
	}()
	n, err := io.Copy(tmp, ctxReader{ctx: ctx, r: r})
	if err != nil {
		return fmt.Errorf("local: put %s: write %s: %w", key, tmpName, err)
	}
	if size >= 0 && n != size {
		return fmt.Errorf("local: put %s: got %d bytes, expected %d", key, n, size)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("local: put %s: fsync %s: %w", key, tmpName, err)
	}
	err = tmp.Close()
	tmp = nil
	if err != nil {
		return fmt.Errorf("local: put %s: close %s: %w", key, tmpName, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: put %s: %w", key, err)
	}
	if err := os.Link(tmpName, dst); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("local: put %s: %w", key, storage.ErrExists)
		}
		return fmt.Errorf("local: put %s: link into place (the filesystem must support hard links): %w", key, err)
	}
	// The new entry, and the entries of the directories this Put created
	// (each in its parent), must reach the disk before Put returns.
	syncs := []string{dir}
	if created != "" {
		for d := dir; d != filepath.Dir(created); d = filepath.Dir(d) {
			syncs = append(syncs, filepath.Dir(d))
		}
	}
	for _, d := range syncs {
		if err := syncDir(d); err != nil {
			// The object is in place but may not survive a crash: the caller
			// must not build on it (a retried Put finds it and reports ErrExists).
			return fmt.Errorf("local: put %s: %w", key, err)
		}
	}
	return nil
}

// createTemp creates a temporary file in dir, creating dir as needed. It
// retries when a concurrent Delete removes the (then empty) directory between
// its creation and the creation of the file. created is the topmost
// directory it created ("" when dir existed), whose entry, like those of the
// directories below it, is not yet durable.
func (b *Backend) createTemp(dir string) (f *os.File, created string, err error) {
	for attempt := 0; ; attempt++ {
		for d := dir; b.below(d); d = filepath.Dir(d) {
			if _, err := os.Lstat(d); err == nil {
				break
			}
			if created == "" || len(d) < len(created) { // the topmost over all attempts
				created = d
			}
		}
		if err := os.MkdirAll(dir, dirPerm); err != nil {
			return nil, "", fmt.Errorf("create directory: %w", err)
		}
		f, err := os.CreateTemp(dir, tmpPrefix+"*")
		if err == nil {
			return f, created, nil // os.CreateTemp creates the file with mode 0600
		}
		if !errors.Is(err, fs.ErrNotExist) || attempt >= 10 {
			return nil, "", fmt.Errorf("create temporary file: %w", err)
		}
		if b.onRetry != nil {
			b.onRetry("put")
		}
	}
}

// fsyncDir fsyncs an open directory; tests replace it to inject failures.
var fsyncDir = func(d *os.File) error { return d.Sync() }

// syncDir makes the entries of a directory (a link or an unlink in it)
// durable. A failure is returned: without it, a later write or delete could
// reach the disk before this one, and the repository's orderings (chunks
// before manifest, manifest deleted before chunks) would not hold after a
// crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	err = fsyncDir(d)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fsync directory %s: %w", dir, err)
	}
	return nil
}

// Get opens the object's file for reading.
func (b *Backend) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	if err := validateKey(key); err != nil {
		return nil, fmt.Errorf("local: get: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local: get %s: %w", key, err)
	}
	f, err := os.Open(b.path(key))
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("local: get %s: %w", key, storage.ErrNotFound)
		}
		return nil, fmt.Errorf("local: get %s: %w", key, err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("local: get %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		_ = f.Close()
		return nil, fmt.Errorf("local: get %s: not a regular file: %w", key, storage.ErrNotFound)
	}
	return f, nil
}

// Stat returns the object's size and modification time.
func (b *Backend) Stat(ctx context.Context, key string) (storage.ObjectInfo, error) {
	if err := validateKey(key); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("local: stat: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return storage.ObjectInfo{}, fmt.Errorf("local: stat %s: %w", key, err)
	}
	fi, err := os.Stat(b.path(key))
	if err != nil {
		if isNotFound(err) {
			return storage.ObjectInfo{}, fmt.Errorf("local: stat %s: %w", key, storage.ErrNotFound)
		}
		return storage.ObjectInfo{}, fmt.Errorf("local: stat %s: %w", key, err)
	}
	if !fi.Mode().IsRegular() {
		return storage.ObjectInfo{}, fmt.Errorf("local: stat %s: not a regular file: %w", key, storage.ErrNotFound)
	}
	return storage.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()}, nil
}

// List returns the objects whose key starts with prefix, sorted by key.
// prefix may end in the middle of a name ("inst/back"). Temporary files of
// in-progress writes are not listed.
func (b *Backend) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("local: list: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("local: list %q: %w", prefix, err)
	}
	// Walk only the deepest directory that the prefix fully names.
	start := b.root
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		start = b.path(prefix[:i])
	}
	out := make([]storage.ObjectInfo, 0)
	err := filepath.WalkDir(start, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if isNotFound(err) {
				return nil // missing prefix directory, or removed by a concurrent Delete
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == start && d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), tmpPrefix) {
			return nil
		}
		rel, err := filepath.Rel(b.root, p)
		if err != nil {
			return err
		}
		key := filepath.ToSlash(rel)
		if d.IsDir() {
			dk := key + "/"
			if !strings.HasPrefix(dk, prefix) && !strings.HasPrefix(prefix, dk) {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !strings.HasPrefix(key, prefix) {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			if isNotFound(err) {
				return nil // deleted concurrently
			}
			return err
		}
		out = append(out, storage.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("local: list %q: %w", prefix, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, nil
}

// Delete removes the object, fsyncs its directory so that the removal is
// durable before Delete returns (a later write or delete cannot reach the
// disk first), and then removes the parent directories that became empty,
// up to (not including) the root, fsyncing the directory above the last one
// removed. Deleting a missing key is not an error.
func (b *Backend) Delete(ctx context.Context, key string) error {
	if err := validateKey(key); err != nil {
		return fmt.Errorf("local: delete: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("local: delete %s: %w", key, err)
	}
	p := b.path(key)
	fi, err := os.Lstat(p)
	if err != nil {
		if isNotFound(err) {
			return nil
		}
		return fmt.Errorf("local: delete %s: %w", key, err)
	}
	if fi.IsDir() {
		return nil // not an object
	}
	if err := os.Remove(p); err != nil && !isNotFound(err) {
		return fmt.Errorf("local: delete %s: %w", key, err)
	}
	if err := b.syncExisting(filepath.Dir(p)); err != nil {
		return fmt.Errorf("local: delete %s: %w", key, err)
	}
	removed := ""
	for dir := filepath.Dir(p); b.below(dir); dir = filepath.Dir(dir) {
		if os.Remove(dir) != nil {
			break // not empty (or gone): stop
		}
		removed = dir
	}
	if removed != "" {
		// An empty directory holds no object, so its removal needs no
		// ordering; it is made durable all the same.
		if err := b.syncExisting(filepath.Dir(removed)); err != nil {
			return fmt.Errorf("local: delete %s: %w", key, err)
		}
	}
	return nil
}

// below says whether dir is strictly below the root.
func (b *Backend) below(dir string) bool {
	return dir != b.root && strings.HasPrefix(dir, b.root+string(filepath.Separator))
}

// syncExisting fsyncs dir or, when a concurrent Delete removed it (it was
// empty, so the unlink in it had happened), the nearest directory above it
// that still exists.
func (b *Backend) syncExisting(dir string) error {
	for {
		err := syncDir(dir)
		if err == nil || !isNotFound(err) || !b.below(dir) {
			return err
		}
		dir = filepath.Dir(dir)
	}
}

// isNotFound reports whether err means that a path (or one of its parents)
// does not exist.
func isNotFound(err error) bool {
	if errors.Is(err, fs.ErrNotExist) {
		return true
	}
	// A parent path component being a regular file (ENOTDIR) also means
	// that the object does not exist.
	var pe *fs.PathError
	return errors.As(err, &pe) && errors.Is(pe.Err, syscall.ENOTDIR)
}

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

// ListDir lists one level under prefix (storage.DirLister): it reads the
// one directory the prefix names (up to its last '/'), not the tree below.
// A directory is listed when it exists, even one that holds only
// temporary files or empty directories left by a concurrent Delete.
func (b *Backend) ListDir(ctx context.Context, prefix string) ([]storage.ObjectInfo, []string, error) {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return nil, nil, fmt.Errorf("local: list: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("local: list %q: %w", prefix, err)
	}
	dir := b.root
	head, name := "", prefix
	if i := strings.LastIndex(prefix, "/"); i >= 0 {
		dir, head, name = b.path(prefix[:i]), prefix[:i+1], prefix[i+1:]
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if isNotFound(err) {
			return []storage.ObjectInfo{}, []string{}, nil
		}
		return nil, nil, fmt.Errorf("local: list %q: %w", prefix, err)
	}
	objs, dirs := make([]storage.ObjectInfo, 0), make([]string, 0)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), name) || strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		key := head + e.Name()
		switch {
		case e.IsDir():
			dirs = append(dirs, key+"/")
		case e.Type().IsRegular():
			fi, err := e.Info()
			if err != nil {
				if isNotFound(err) {
					continue // deleted concurrently
				}
				return nil, nil, fmt.Errorf("local: list %q: %w", prefix, err)
			}
			objs = append(objs, storage.ObjectInfo{Key: key, Size: fi.Size(), ModTime: fi.ModTime()})
		}
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].Key < objs[j].Key })
	sort.Strings(dirs)
	return objs, dirs, nil
}
