package pipeline

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func allCodecs(t *testing.T) []Codec {
	t.Helper()
	var out []Codec
	for _, nl := range []struct {
		name  string
		level int
	}{
		{"zstd", 1}, {"zstd", 3}, {"zstd", 7}, {"zstd", 19},
		{"s2", 1}, {"s2", 2}, {"s2", 3},
		{"gzip", 1}, {"gzip", 9},
		{"lz4", 1}, {"lz4", 2}, {"lz4", 10},
		{"none", 0},
	} {
		c, err := NewCodec(nl.name, nl.level)
		require.NoError(t, err)
		out = append(out, c)
	}
	return out
}

func TestCodecRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	random := make([]byte, 200_000)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	compressible := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog "), 5000)
	for _, c := range allCodecs(t) {
		for name, src := range map[string][]byte{"empty": {}, "one": {42}, "random": random, "text": compressible} {
			// Reuse of dirty, too small and too large buffers.
			for _, dst := range [][]byte{nil, make([]byte, 10), bytes.Repeat([]byte{0xff}, 1<<20)} {
				comp, err := c.compress(dst, src)
				require.NoError(t, err, "%s %s", c, name)
				raw, err := c.decompress(make([]byte, 7), comp, len(src))
				require.NoError(t, err, "%s %s", c, name)
				require.True(t, bytes.Equal(src, raw), "%s %s: round trip differs", c, name)
			}
			if name == "text" && c.Name() != CodecNone {
				comp, err := c.compress(nil, src)
				require.NoError(t, err)
				assert.Less(t, len(comp), len(src)/5, "%s should compress text", c)
			}
		}
	}
}

func TestCodecDecompressBounded(t *testing.T) {
	// A "zip bomb": 4 MiB of zeros compresses to almost nothing.
	bomb := make([]byte, 4<<20)
	for _, c := range allCodecs(t) {
		comp, err := c.compress(nil, bomb)
		require.NoError(t, err)
		_, err = c.decompress(nil, comp, 1000)
		require.Error(t, err, "%s", c)
		assert.ErrorIs(t, err, errTooLarge, "%s", c)

		// Exactly at the limit is fine.
		raw, err := c.decompress(nil, comp, len(bomb))
		require.NoError(t, err, "%s", c)
		assert.Len(t, raw, len(bomb))

		// A large destination buffer does not raise the limit.
		_, err = c.decompress(make([]byte, 0, 8<<20), comp, 4<<20-1)
		assert.ErrorIs(t, err, errTooLarge, "%s", c)
	}
}

func TestCodecDecompressGarbage(t *testing.T) {
	garbage := bytes.Repeat([]byte("not compressed data "), 100)
	for _, c := range allCodecs(t) {
		if c.Name() == CodecNone {
			continue
		}
		_, err := c.decompress(nil, garbage, 1<<20)
		assert.Error(t, err, "%s", c)
	}
}

func TestCodecConcurrent(t *testing.T) {
	src := bytes.Repeat([]byte("concurrent use of shared encoders "), 10000)
	for _, c := range allCodecs(t) {
		done := make(chan error, 8)
		for range 8 {
			go func() {
				comp, err := c.compress(nil, src)
				if err == nil {
					var raw []byte
					raw, err = c.decompress(nil, comp, len(src))
					if err == nil && !bytes.Equal(raw, src) {
						err = assert.AnError
					}
				}
				done <- err
			}()
		}
		for range 8 {
			require.NoError(t, <-done, "%s", c)
		}
	}
}

// A hostile chunk that expands to far more than its recorded size is
// refused after at most about the limit, and decompressing it allocates
// about the limit plus the codec's fixed state (for lz4, one 4 MiB block),
// not its expanded size.
func TestCodecDecompressBombMemory(t *testing.T) {
	bomb := make([]byte, 256<<20)
	const limit = 1 << 20
	for _, c := range allCodecs(t) {
		if c.Name() == CodecNone {
			continue // stored as is: the size check refuses it before any copy
		}
		comp, err := c.compress(nil, bomb)
		require.NoError(t, err, "%s", c)
		_, _ = c.decompress(nil, comp, limit) // warm the codec's pools
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err = c.decompress(nil, comp, limit)
		runtime.ReadMemStats(&after)
		assert.ErrorIs(t, err, errTooLarge, "%s", c)
		assert.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(limit+12<<20), "%s allocated more than the limit and its state", c)
	}
}

// A corrupt or truncated lz4 frame fails, whatever byte is damaged.
func TestLZ4CorruptFrame(t *testing.T) {
	c, err := NewCodec(CodecLZ4, 1)
	require.NoError(t, err)
	src := bytes.Repeat([]byte("lz4 frame with a content checksum "), 3000)
	comp, err := c.compress(nil, src)
	require.NoError(t, err)
	for _, n := range []int{0, 3, 7, len(comp) / 2, len(comp) - 1} {
		_, err := c.decompress(nil, comp[:n], len(src))
		assert.Error(t, err, "truncated to %d bytes", n)
	}
	for _, i := range []int{0, 5, len(comp) / 2, len(comp) - 2} {
		bad := bytes.Clone(comp)
		bad[i] ^= 0x55
		raw, err := c.decompress(nil, bad, len(src))
		if err == nil {
			assert.NotEqual(t, src, raw, "byte %d flipped", i)
			t.Errorf("byte %d flipped: no error", i)
		}
	}
}
