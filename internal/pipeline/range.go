package pipeline

import (
	"context"
	"fmt"
	"io"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/storage"
)

// OpenRange reads size bytes at offset off of the raw stream that chunks
// describe (a backup's whole chunk list, in index order), downloading only
// the chunks that hold them (with Download and opt: each chunk verified,
// decrypted and decompressed). The reader fails with Download's error if a
// chunk does; closing it early stops the download.
func OpenRange(ctx context.Context, b storage.Backend, prefix string, chunks []manifest.Chunk, codec string, off, size int64, opt DownloadOptions) (io.ReadCloser, error) {
	if off < 0 || size < 0 {
		return nil, fmt.Errorf("open range: offset %d and size %d must not be negative", off, size)
	}
	var total int64
	first, last := -1, -1
	var skip int64
	for i, c := range chunks {
		start, end := total, total+c.RawSize
		if first < 0 && end > off {
			first, skip = i, off-start
		}
		if first >= 0 && end >= off+size {
			last = i
			break
		}
		total = end
	}
	if size == 0 {
		return io.NopCloser(eofReader{}), nil
	}
	if first < 0 || last < 0 {
		return nil, fmt.Errorf("open range: bytes %d..%d are beyond the stream's end: %w", off, off+size, ErrCorrupt)
	}
	opt.FirstIndex = first
	opt.ExpectRawSHA256 = ""
	ctx, cancel := context.WithCancel(ctx)
	pr, pw := io.Pipe()
	go func() {
		w := &window{w: pw, skip: skip, left: size}
		_, err := Download(ctx, b, prefix, chunks[first:last+1], codec, w, opt)
		if err == nil && w.left > 0 {
			err = fmt.Errorf("open range: the stream ended %d bytes early: %w", w.left, ErrCorrupt)
		}
		pw.CloseWithError(err)
	}()
	return &rangeReader{PipeReader: pr, cancel: cancel}, nil
}

type eofReader struct{}

func (eofReader) Read([]byte) (int, error) { return 0, io.EOF }

// window passes on left bytes after the first skip bytes of what it is
// given, and drops the rest.
type window struct {
	w          io.Writer
	skip, left int64
}

func (w *window) Write(p []byte) (int, error) {
	n := len(p)
	if w.skip > 0 {
		if int64(len(p)) <= w.skip {
			w.skip -= int64(len(p))
			return n, nil
		}
		p = p[w.skip:]
		w.skip = 0
	}
	if int64(len(p)) > w.left {
		p = p[:w.left]
	}
	if len(p) > 0 {
		if _, err := w.w.Write(p); err != nil {
			return 0, err
		}
		w.left -= int64(len(p))
	}
	return n, nil
}

type rangeReader struct {
	*io.PipeReader
	cancel context.CancelFunc
}

func (r *rangeReader) Close() error {
	r.cancel()
	return r.PipeReader.Close()
}
