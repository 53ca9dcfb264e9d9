// Package xbstream checks the member names of an xbstream (the stream
// format of mariabackup/mbstream and xtrabackup/xbstream) before they reach
// the extractor: `mbstream -x` writes each member under its name, so a
// stream read from the repository — untrusted input — must not name a path
// outside the extraction directory.
//
// An xbstream is a sequence of chunks:
//
//	magic "XBSTCK01" (8) | flags (1) | type (1) | path length (4, LE) | path
//	type 'E' (end of file): nothing follows
//	type 'S' (sparse, xtrabackup 8): sparse map length (4, LE), then as 'P'
//	                           with the sparse map (8 bytes per entry) before the payload
//	otherwise ('P' payload, or an unknown type flagged ignorable):
//	  payload length (8, LE) | payload offset (8, LE) | checksum (4) | payload
//
// Checker is a pass-through writer: it forwards the stream unchanged, but a
// chunk's header only once its path has been checked, so a refused member
// never reaches the extractor.
//
// Writer writes such a stream from files (a MySQL clone backup is streamed
// this way), and Extract is an extractor in Go for hosts without mbstream
// or xbstream; both apply the same name rules as Checker.
package xbstream

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrCorrupt is wrapped by every error of a Checker: the stream names an
// unsafe member, or is not a well-formed xbstream.
var ErrCorrupt = errors.New("corrupt xbstream")

// MemberError is a refused member of the stream; it matches ErrCorrupt.
type MemberError struct {
	Name   string // the member's name as stored (maybe shortened)
	Offset int64  // offset of its chunk in the stream
	Reason string
}

func (e *MemberError) Error() string {
	return fmt.Sprintf("%v: member %q (chunk at offset %d): %s", ErrCorrupt, e.Name, e.Offset, e.Reason)
}

func (e *MemberError) Unwrap() error { return ErrCorrupt }

const (
	magic = "XBSTCK01"
	// constLen is the fixed part of a chunk header: magic, flags, type,
	// path length.
	constLen = 8 + 1 + 1 + 4
	// maxPath is the tools' limit (FN_REFLEN): a longer path is refused by
	// them too.
	maxPath = 512

	flagIgnorable = 0x01
	typePayload   = 'P'
	typeSparse    = 'S'
	typeEOF       = 'E'
)

// Checker checks an xbstream written to it and forwards it to W.
type Checker struct {
	w   io.Writer
	hdr []byte // the header of the current chunk, not yet forwarded
	// need is how many header bytes are required before the header can be
	// parsed further (0: in a payload).
	need int
	// payload is what remains of the current chunk's payload (and sparse
	// map) to forward.
	payload uint64
	offset  int64 // stream offset of the current chunk
	read    int64 // bytes consumed so far
	err     error
	members map[string]bool
}

// NewChecker returns a Checker that forwards to w.
func NewChecker(w io.Writer) *Checker {
	return &Checker{w: w, need: constLen, members: map[string]bool{}}
}

// Members returns the number of distinct member names seen.
func (c *Checker) Members() int { return len(c.members) }

// Write checks p and forwards it. After the first error, every Write
// fails with it.
func (c *Checker) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n := 0
	for len(p) > 0 {
		if c.payload > 0 {
			k := len(p)
			if uint64(k) > c.payload {
				k = int(c.payload)
			}
			if _, err := c.w.Write(p[:k]); err != nil {
				c.err = err
				return n, err
			}
			c.payload -= uint64(k)
			c.read += int64(k)
			n += k
			p = p[k:]
			continue
		}
		if len(c.hdr) == 0 {
			c.offset = c.read
		}
		k := min(len(p), c.need-len(c.hdr))
		c.hdr = append(c.hdr, p[:k]...)
		c.read += int64(k)
		n += k
		p = p[k:]
		if len(c.hdr) < c.need {
			continue
		}
		done, err := c.parse()
		if err != nil {
			c.err = err
			return n, err
		}
		if done {
			if _, err := c.w.Write(c.hdr); err != nil {
				c.err = err
				return n, err
			}
			c.hdr, c.need = c.hdr[:0], constLen
		}
	}
	return n, nil
}

// parse looks at the header bytes gathered so far: it either sets need to
// the length of the complete header (done false) or, once the header is
// complete, sets payload (done true).
func (c *Checker) parse() (done bool, err error) {
	h := c.hdr
	if string(h[:8]) != magic {
		return false, fmt.Errorf("%w: chunk at offset %d does not start with the xbstream magic", ErrCorrupt, c.offset)
	}
	flags, typ := h[8], h[9]
	pathLen := int(binary.LittleEndian.Uint32(h[10:14]))
	if pathLen >= maxPath {
		return false, fmt.Errorf("%w: chunk at offset %d: path length %d is too long", ErrCorrupt, c.offset, pathLen)
	}
	known := typ == typePayload || typ == typeEOF || typ == typeSparse
	if !known && flags&flagIgnorable == 0 {
		return false, fmt.Errorf("%w: chunk at offset %d has unknown type 0x%02x", ErrCorrupt, c.offset, typ)
	}
	fixed := constLen + pathLen // through the path
	switch typ {
	case typeEOF:
	case typeSparse:
		fixed += 4 + 20
	default:
		fixed += 20
	}
	if len(h) < fixed {
		// Gather the whole header: the path is checked before anything of
		// it is forwarded.
		c.need = fixed
		return false, nil
	}
	name := string(h[constLen : constLen+pathLen])
	if err := checkName(name); err != nil {
		return false, &MemberError{Name: clip(name), Offset: c.offset, Reason: err.Error()}
	}
	c.members[name] = true
	if typ == typeEOF {
		return true, nil
	}
	p := constLen + pathLen
	var sparseEntries uint64
	if typ == typeSparse {
		sparseEntries = uint64(binary.LittleEndian.Uint32(h[p:]))
		p += 4
	}
	length := binary.LittleEndian.Uint64(h[p:])
	if length > 1<<40 || sparseEntries > 1<<28 {
		return false, &MemberError{Name: clip(name), Offset: c.offset, Reason: fmt.Sprintf("payload length %d is out of range", length)}
	}
	c.payload = length + 8*sparseEntries
	return true, nil
}

// Close checks that the stream ended at a chunk boundary and closes W if
// it is an io.Closer.
func (c *Checker) Close() error {
	var err error
	if c.err == nil && (len(c.hdr) > 0 || c.payload > 0) {
		err = fmt.Errorf("%w: the stream ends inside the chunk at offset %d", ErrCorrupt, c.offset)
		c.err = err
	}
	if cl, ok := c.w.(io.Closer); ok {
		if cerr := cl.Close(); err == nil {
			err = cerr
		}
	}
	return err
}

// checkName refuses a member name that could leave the extraction
// directory or that no backup tool writes: empty, absolute, with a ".."
// element, a NUL or a backslash.
func checkName(name string) error {
	switch {
	case name == "":
		return errors.New("the member name is empty")
	case strings.IndexByte(name, 0) >= 0:
		return errors.New("the member name holds a NUL byte")
	case strings.HasPrefix(name, "/"):
		return errors.New("the member name is an absolute path")
	case strings.IndexByte(name, '\\') >= 0:
		return errors.New("the member name holds a backslash")
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return errors.New("the member name has a \"..\" element")
		}
	}
	return nil
}

func clip(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}
