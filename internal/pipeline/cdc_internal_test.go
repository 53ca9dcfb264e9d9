package pipeline

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Boundaries depend on the content and the key only, and honour min/max.
func TestChunkerBoundaries(t *testing.T) {
	const size = 64 << 10
	data := make([]byte, 40*size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	cuts := func(c *chunker, b []byte) []int {
		var out []int
		for off := 0; off < len(b); {
			n := c.cut(b[off:min(off+c.max, len(b))])
			off += n
			out = append(out, off)
		}
		return out
	}
	c := newChunker([]byte("key"), size)
	a := cuts(c, data)
	prev := 0
	for i, end := range a {
		n := end - prev
		if n > size || (i < len(a)-1 && n < size/4) {
			t.Fatalf("chunk %d has %d bytes (min %d, max %d)", i, n, size/4, size)
		}
		prev = end
	}
	if len(a) < 40 || len(a) > 80 {
		t.Errorf("%d chunks for %d bytes of chunk size %d: want about 3/4 of the size on average", len(a), len(data), size)
	}
	// After an insertion, the boundaries fall where they did (shifted).
	shifted := cuts(c, append(bytes.Repeat([]byte{7}, 1234), data...))
	set := map[int]bool{}
	for _, e := range shifted {
		set[e-1234] = true
	}
	same := 0
	for _, e := range a {
		if set[e] {
			same++
		}
	}
	if same < len(a)-3 {
		t.Errorf("only %d of %d boundaries survived an insertion", same, len(a))
	}
	// Another key, other boundaries.
	b := cuts(newChunker([]byte("other key"), size), data)
	if len(b) == len(a) && b[0] == a[0] && b[1] == a[1] {
		t.Errorf("the key does not change the boundaries")
	}
}

func BenchmarkChunkerCut(b *testing.B) {
	const size = 16 << 20
	data := make([]byte, size)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	c := newChunker([]byte("key"), size)
	b.SetBytes(size)
	for b.Loop() {
		for off := 0; off < len(data); {
			off += c.cut(data[off:])
		}
	}
}

// cutByteByByte is the reference: the boundary test at every byte.
func (c *chunker) cutByteByByte(b []byte) int {
	n := min(len(b), c.max)
	if n <= c.min {
		return n
	}
	var h uint64
	for i := max(c.min-64, 0); i < n; i++ {
		h = h<<1 + c.gear[b[i]]
		if i >= c.min && h>>c.shift == 0 {
			return i + 1
		}
	}
	return n
}

// The unrolled cut finds the boundaries the byte-by-byte loop finds, at
// every offset within its 8-byte rounds and at the ends.
func TestChunkerCutMatchesReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, size := range []int{MinChunkSize, MinChunkSize + 3, 1 << 20} {
		c := newChunker([]byte("ref"), size)
		c.shift = 64 - 10 // boundaries every ~1 KiB: many of them, at every alignment
		data := make([]byte, 4*size+5)
		for i := range data {
			data[i] = byte(rng.Uint32())
		}
		aligns := map[int]bool{}
		for start := range 64 {
			for off := start; off < len(data); {
				for _, end := range []int{len(data), off + c.min + 1, off + c.min + 7, off + c.max - 1} {
					if end <= off || end > len(data) {
						continue
					}
					require.Equal(t, c.cutByteByByte(data[off:end]), c.cut(data[off:end]), "size %d, offset %d, end %d", size, off, end)
				}
				n := c.cut(data[off:])
				if n < c.max && off+n < len(data) {
					aligns[(n-c.min)%8] = true
				}
				off += n
			}
		}
		assert.Len(t, aligns, 8, "boundaries at every position of the 8-byte rounds")
	}
}
