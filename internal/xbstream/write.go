package xbstream

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
)

// ChunkSize is the payload size of the chunks Writer emits, the size
// xtrabackup and mariabackup use (10 MiB).
const ChunkSize = 10 << 20

// Writer writes an xbstream: each file as payload chunks carrying their
// offset and CRC-32 (IEEE, as the tools compute it), then its end-of-file
// chunk. mbstream -x, xbstream -x and Extract read what it writes.
type Writer struct {
	w   io.Writer
	buf []byte
	n   int64 // bytes written
}

// NewWriter returns a Writer that writes to w.
func NewWriter(w io.Writer) *Writer {
	return &Writer{w: w}
}

// Written returns the number of stream bytes written so far.
func (x *Writer) Written() int64 { return x.n }

// WriteFile writes member name with the content read from r (to EOF) and
// returns the content's length. The name is checked as Checker checks it:
// a name the reading side refuses is refused here.
func (x *Writer) WriteFile(name string, r io.Reader) (int64, error) {
	if err := checkName(name); err != nil {
		return 0, fmt.Errorf("xbstream member %q: %v", clip(name), err)
	}
	if len(name) >= maxPath {
		return 0, fmt.Errorf("xbstream member %q: the name is longer than %d bytes", clip(name), maxPath-1)
	}
	if x.buf == nil {
		x.buf = make([]byte, ChunkSize)
	}
	var off int64
	for {
		k, err := io.ReadFull(r, x.buf)
		if k > 0 {
			if werr := x.chunk(typePayload, name, x.buf[:k], off); werr != nil {
				return off, werr
			}
			off += int64(k)
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return off, fmt.Errorf("read %s: %w", name, err)
		}
	}
	return off, x.chunk(typeEOF, name, nil, 0)
}

// chunk writes one chunk of type typ.
func (x *Writer) chunk(typ byte, name string, payload []byte, off int64) error {
	hdr := make([]byte, 0, constLen+len(name)+20)
	hdr = append(hdr, magic...)
	hdr = append(hdr, 0, typ)
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(name)))
	hdr = append(hdr, name...)
	if typ != typeEOF {
		hdr = binary.LittleEndian.AppendUint64(hdr, uint64(len(payload)))
		hdr = binary.LittleEndian.AppendUint64(hdr, uint64(off))
		hdr = binary.LittleEndian.AppendUint32(hdr, crc32.ChecksumIEEE(payload))
	}
	if _, err := x.w.Write(hdr); err != nil {
		return err
	}
	x.n += int64(len(hdr))
	if len(payload) > 0 {
		if _, err := x.w.Write(payload); err != nil {
			return err
		}
		x.n += int64(len(payload))
	}
	return nil
}
