package xbstream

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

// ExtractStats counts what Extract wrote.
type ExtractStats struct {
	Files int   // distinct members
	Bytes int64 // payload bytes
}

// maxOpen bounds the members open at once: a stream interleaves the
// chunks of at most the writing tool's --parallel files.
const maxOpen = 1024

// Extract reads an xbstream from r and writes its members under dir, as
// `mbstream -x -C dir` does, checking every member's name as Checker does
// and every payload's CRC-32. Sparse chunks are refused: the tools write
// them only for files with punched holes, which a MySQL clone does not
// stream. A stream that ends inside a chunk is an error; so is a member
// left open at the end.
func Extract(r io.Reader, dir string) (ExtractStats, error) {
	var st ExtractStats
	br := bufio.NewReaderSize(r, 1<<20)
	open := map[string]*os.File{}
	seen := map[string]bool{}
	defer func() {
		for _, f := range open {
			_ = f.Close()
		}
	}()
	var offset int64
	hdr := make([]byte, constLen)
	for {
		chunkAt := offset
		if _, err := io.ReadFull(br, hdr[:constLen]); err != nil {
			if err == io.EOF {
				break
			}
			return st, truncated(err, chunkAt)
		}
		if string(hdr[:8]) != magic {
			return st, fmt.Errorf("%w: chunk at offset %d does not start with the xbstream magic", ErrCorrupt, chunkAt)
		}
		flags, typ := hdr[8], hdr[9]
		pathLen := int(binary.LittleEndian.Uint32(hdr[10:14]))
		if pathLen >= maxPath {
			return st, fmt.Errorf("%w: chunk at offset %d: path length %d is too long", ErrCorrupt, chunkAt, pathLen)
		}
		nameB := make([]byte, pathLen)
		if _, err := io.ReadFull(br, nameB); err != nil {
			return st, truncated(err, chunkAt)
		}
		offset += int64(constLen + pathLen)
		name := string(nameB)
		if err := checkName(name); err != nil {
			return st, &MemberError{Name: clip(name), Offset: chunkAt, Reason: err.Error()}
		}
		switch typ {
		case typeEOF:
			f := open[name]
			if f == nil && !seen[name] {
				// A member with no payload: an empty file, as mbstream
				// creates it.
				var err error
				if f, err = create(dir, name); err != nil {
					return st, err
				}
				seen[name] = true
				st.Files++
			}
			if f != nil {
				delete(open, name)
				if err := f.Close(); err != nil {
					return st, fmt.Errorf("extract %s: %w", name, err)
				}
			}
			continue
		case typeSparse:
			return st, &MemberError{Name: clip(name), Offset: chunkAt, Reason: "sparse chunks are not supported by this extractor (extract the stream with xbstream -x)"}
		case typePayload:
		default:
			if flags&flagIgnorable == 0 {
				return st, fmt.Errorf("%w: chunk at offset %d has unknown type 0x%02x", ErrCorrupt, chunkAt, typ)
			}
		}
		var fixed [20]byte
		if _, err := io.ReadFull(br, fixed[:]); err != nil {
			return st, truncated(err, chunkAt)
		}
		offset += 20
		length := binary.LittleEndian.Uint64(fixed[0:8])
		at := binary.LittleEndian.Uint64(fixed[8:16])
		sum := binary.LittleEndian.Uint32(fixed[16:20])
		if length > 1<<40 || at > 1<<50 {
			return st, &MemberError{Name: clip(name), Offset: chunkAt, Reason: fmt.Sprintf("payload length %d at offset %d is out of range", length, at)}
		}
		if typ != typePayload { // an ignorable chunk of a later format
			if _, err := io.CopyN(io.Discard, br, int64(length)); err != nil {
				return st, truncated(err, chunkAt)
			}
			offset += int64(length)
			continue
		}
		f := open[name]
		if f == nil {
			if len(open) >= maxOpen {
				return st, fmt.Errorf("%w: more than %d members open at once (chunk at offset %d)", ErrCorrupt, maxOpen, chunkAt)
			}
			var err error
			if f, err = create(dir, name); err != nil {
				return st, err
			}
			open[name] = f
			if !seen[name] {
				seen[name] = true
				st.Files++
			}
		}
		h := crc32.NewIEEE()
		n, err := io.CopyN(io.MultiWriter(io.NewOffsetWriter(f, int64(at)), h), br, int64(length))
		offset += n
		st.Bytes += n
		if err != nil {
			if errors.Is(err, io.EOF) {
				return st, truncated(io.ErrUnexpectedEOF, chunkAt)
			}
			return st, fmt.Errorf("extract %s: %w", name, err)
		}
		if h.Sum32() != sum {
			return st, &MemberError{Name: clip(name), Offset: chunkAt, Reason: fmt.Sprintf("payload checksum %08x does not match the chunk's %08x", h.Sum32(), sum)}
		}
	}
	for name := range open {
		return st, fmt.Errorf("%w: the stream ends before the end of member %q", ErrCorrupt, clip(name))
	}
	return st, nil
}

// create creates member name under dir, with its parent directories.
func create(dir, name string) (*os.File, error) {
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return nil, fmt.Errorf("extract %s: %w", name, err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		return nil, fmt.Errorf("extract %s: %w", name, err)
	}
	return f, nil
}

func truncated(err error, at int64) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: the stream ends inside the chunk at offset %d", ErrCorrupt, at)
	}
	return err
}
