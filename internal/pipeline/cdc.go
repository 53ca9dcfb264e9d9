package pipeline

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"math/bits"
)

// chunker cuts a stream into content-defined chunks (a gear rolling hash,
// as in FastCDC): a chunk ends where the hash of its last bytes matches a
// mask, at least min and at most max bytes after it began. Boundaries
// depend only on the content near them, so when bytes are inserted into or
// removed from a stream (mariabackup streams the redo log first, and its
// length differs from one run to the next), the boundaries after the change
// fall where they did before, and so do the chunks and their names.
//
// The gear table is derived from the backup's naming key, so that chunk
// sizes — visible even when chunks are encrypted — do not reveal content
// to someone without the key.
type chunker struct {
	gear     [256]uint64
	min, max int
	shift    uint // a boundary is where the top (64-shift) bits of the hash are 0
}

// newChunker returns the chunker of chunks of at most maxSize bytes, at
// least maxSize/4, about 3/4 of maxSize on average: the mask has as many
// bits as maxSize/2 has.
func newChunker(key []byte, maxSize int) *chunker {
	c := &chunker{min: maxSize / 4, max: maxSize}
	for i := range c.gear {
		m := hmac.New(sha256.New, key)
		m.Write([]byte("strata gear v1"))
		m.Write([]byte{byte(i)})
		c.gear[i] = binary.BigEndian.Uint64(m.Sum(nil))
	}
	maskBits := bits.Len(uint(maxSize/2)) - 1 // log2 of the expected distance past min
	c.shift = uint(64 - maskBits)
	return c
}

// cut returns where the chunk starting at b[0] ends: at the first boundary
// within b, or at min(len(b), max). b is either max bytes long or the end
// of the stream.
func (c *chunker) cut(b []byte) int {
	n := min(len(b), c.max)
	if n <= c.min {
		return n
	}
	// The hash depends on the last 64 bytes only: start just before min.
	b = b[:n]
	i := max(c.min-64, 0)
	var h uint64
	for _, x := range b[i:c.min] {
		h = h<<1 + c.gear[x]
	}
	// Eight bytes a round: the table lookups are independent, only the
	// shift-and-add chain is serial, and one test covers the eight hashes
	// (h&mask == 0 is h < 1<<shift). The boundary is the same as byte by
	// byte.
	gear, mask := &c.gear, ^uint64(0)<<c.shift
	i = c.min
	for ; i+8 <= n; i += 8 {
		w := b[i : i+8 : i+8]
		// t_k is the hash of w[0..k] alone; h_k = h<<(k+1) + t_k. Only h7
		// depends on the previous round.
		t0 := gear[w[0]]
		t1 := t0<<1 + gear[w[1]]
		t2 := t1<<1 + gear[w[2]]
		t3 := t2<<1 + gear[w[3]]
		t4 := t3<<1 + gear[w[4]]
		t5 := t4<<1 + gear[w[5]]
		t6 := t5<<1 + gear[w[6]]
		t7 := t6<<1 + gear[w[7]]
		h0, h1, h2, h3 := h<<1+t0, h<<2+t1, h<<3+t2, h<<4+t3
		h4, h5, h6, h7 := h<<5+t4, h<<6+t5, h<<7+t6, h<<8+t7
		if min(h0, h1, h2, h3, h4, h5, h6, h7)&mask == 0 {
			break // the boundary is within these 8 bytes: find it below
		}
		h = h7
	}
	for ; i < n; i++ {
		h = h<<1 + gear[b[i]]
		if h&mask == 0 {
			return i + 1
		}
	}
	return n
}
