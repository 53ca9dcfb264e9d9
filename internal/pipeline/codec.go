package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// Codec names.
const (
	CodecZstd = "zstd"
	CodecS2   = "s2"
	CodecGzip = "gzip"
	CodecLZ4  = "lz4"
	CodecNone = "none"
)

// DefaultCodec is used when no codec is configured.
const DefaultCodec = CodecZstd

// DefaultZstdLevel is zstd's default level. Level 1 (klauspost/compress's
// fastest encoder) was chosen by measurement: on a mariabackup stream of a
// sysbench data set it stored 3% less than level 3 (its default encoder) at
// about 35% less CPU in a whole upload, half the CPU of the compression
// alone (see docs/architecture.md, "Codecs").
const DefaultZstdLevel = 1

// CodecNames lists the valid codec names.
var CodecNames = []string{CodecZstd, CodecLZ4, CodecS2, CodecGzip, CodecNone}

// errTooLarge is returned when decompressed data exceeds its bound.
var errTooLarge = errors.New("decompressed data is larger than recorded")

// Codec compresses chunks. Implementations are safe for concurrent use and
// reuse their encoders and decoders between calls.
type Codec interface {
	// Name is the codec name as recorded in manifests ("zstd", ...).
	Name() string
	// Level is the effective compression level (0 for codecs without
	// levels).
	Level() int
	// Ext is the file extension of stored chunks (".zst", ...; "" for none).
	Ext() string
	// compress returns the compressed form of src, reusing dst's capacity
	// when large enough (dst's content is ignored).
	compress(dst, src []byte) ([]byte, error)
	// decompress returns the decompressed form of src, reusing dst's
	// capacity. It fails with errTooLarge as soon as the output would exceed
	// maxSize bytes, so that corrupt or hostile input cannot exhaust memory.
	decompress(dst, src []byte, maxSize int) ([]byte, error)
}

// ParseCodec returns the codec called name at its default level. Names are
// case-insensitive.
func ParseCodec(name string) (Codec, error) {
	return NewCodec(name, 0)
}

// NewCodec returns the codec called name at the given level; level 0 selects
// the codec's default. Levels: zstd 1..19 (default DefaultZstdLevel; mapped to the closest
// klauspost/compress encoder level), lz4 1..10 (1: the fast compressor, the
// default; 2..10: its high-compression mode, pierrec/lz4 Level1..Level9),
// gzip 1..9 (default 6), s2 1..3 (fast, better, best; default 1), none: 0
// only.
func NewCodec(name string, level int) (Codec, error) {
	switch strings.ToLower(strings.TrimSpace(name)) {
	case CodecZstd:
		if level == 0 {
			level = DefaultZstdLevel
		}
		if level < 1 || level > 19 {
			return nil, fmt.Errorf("zstd compression level %d is out of range 1..19", level)
		}
		return zstdCodec{level: level}, nil
	case CodecS2:
		if level == 0 {
			level = 1
		}
		if level < 1 || level > 3 {
			return nil, fmt.Errorf("s2 compression level %d is out of range 1..3", level)
		}
		return s2Codec{level: level}, nil
	case CodecLZ4:
		if level == 0 {
			level = 1
		}
		if level < 1 || level > 10 {
			return nil, fmt.Errorf("lz4 compression level %d is out of range 1..10", level)
		}
		return lz4Codec{level: level}, nil
	case CodecGzip:
		if level == 0 {
			level = gzip.DefaultCompression
		}
		if level == gzip.DefaultCompression {
			level = 6
		}
		if level < 1 || level > 9 {
			return nil, fmt.Errorf("gzip compression level %d is out of range 1..9", level)
		}
		return gzipCodec{level: level}, nil
	case CodecNone:
		if level != 0 {
			return nil, fmt.Errorf("codec none has no compression level (got %d)", level)
		}
		return noneCodec{}, nil
	default:
		return nil, fmt.Errorf("unknown compression codec %q (valid: %s)", name, strings.Join(CodecNames, ", "))
	}
}

// maxCompressedLen bounds the stored size of a chunk of n raw bytes for every
// codec (s2's worst case is the largest).
func maxCompressedLen(n int) int {
	return n + n/6 + 64<<10
}

// ensureCap returns b[:0] if its capacity is at least n, else a new slice.
func ensureCap(b []byte, n int) []byte {
	if cap(b) >= n {
		return b[:0]
	}
	return make([]byte, 0, n)
}

// ---- zstd

type zstdCodec struct{ level int }

func (zstdCodec) Name() string     { return CodecZstd }
func (c zstdCodec) Level() int     { return c.level }
func (zstdCodec) Ext() string      { return ".zst" }
func (c zstdCodec) String() string { return fmt.Sprintf("zstd level %d", c.level) }

// Shared zstd encoders, one per encoder level, and one decoder. EncodeAll and
// DecodeAll are safe for concurrent use; concurrency is bounded by the
// number of internal encoder/decoder states (GOMAXPROCS at creation).
var (
	zstdEncMu  sync.Mutex
	zstdEncs   = map[zstd.EncoderLevel]*zstd.Encoder{}
	zstdDecOne sync.Once
	zstdDec    *zstd.Decoder
	zstdDecErr error
)

func zstdEncoder(level int) (*zstd.Encoder, error) {
	l := zstd.EncoderLevelFromZstd(level)
	zstdEncMu.Lock()
	defer zstdEncMu.Unlock()
	if e, ok := zstdEncs[l]; ok {
		return e, nil
	}
	e, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(l),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		zstd.WithEncoderCRC(true),
		zstd.WithZeroFrames(true))
	if err != nil {
		return nil, fmt.Errorf("create zstd encoder: %w", err)
	}
	zstdEncs[l] = e
	return e, nil
}

func zstdDecoder() (*zstd.Decoder, error) {
	zstdDecOne.Do(func() {
		zstdDec, zstdDecErr = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
			// Bound each DecodeAll by the capacity of its destination.
			zstd.WithDecodeAllCapLimit(true),
			zstd.WithDecoderMaxMemory(uint64(maxCompressedLen(MaxChunkSize))))
		if zstdDecErr != nil {
			zstdDecErr = fmt.Errorf("create zstd decoder: %w", zstdDecErr)
		}
	})
	return zstdDec, zstdDecErr
}

func (c zstdCodec) compress(dst, src []byte) ([]byte, error) {
	e, err := zstdEncoder(c.level)
	if err != nil {
		return nil, err
	}
	return e.EncodeAll(src, dst[:0]), nil
}

func (zstdCodec) decompress(dst, src []byte, maxSize int) ([]byte, error) {
	d, err := zstdDecoder()
	if err != nil {
		return nil, err
	}
	// With WithDecodeAllCapLimit, the output may not exceed cap(dst).
	dst = ensureCap(dst, maxSize)[:0:maxSize]
	out, err := d.DecodeAll(src, dst)
	if err != nil {
		if errors.Is(err, zstd.ErrDecoderSizeExceeded) {
			return nil, fmt.Errorf("zstd: %w (limit %d bytes)", errTooLarge, maxSize)
		}
		return nil, fmt.Errorf("zstd: %w", err)
	}
	return out, nil
}

// ---- s2

type s2Codec struct{ level int }

func (s2Codec) Name() string     { return CodecS2 }
func (c s2Codec) Level() int     { return c.level }
func (s2Codec) Ext() string      { return ".s2" }
func (c s2Codec) String() string { return fmt.Sprintf("s2 level %d", c.level) }

func (c s2Codec) compress(dst, src []byte) ([]byte, error) {
	n := s2.MaxEncodedLen(len(src))
	if n < 0 {
		return nil, fmt.Errorf("s2: block of %d bytes is too large", len(src))
	}
	dst = ensureCap(dst, n)
	switch c.level {
	case 2:
		return s2.EncodeBetter(dst, src), nil
	case 3:
		return s2.EncodeBest(dst, src), nil
	default:
		return s2.Encode(dst, src), nil
	}
}

func (s2Codec) decompress(dst, src []byte, maxSize int) ([]byte, error) {
	n, err := s2.DecodedLen(src)
	if err != nil {
		return nil, fmt.Errorf("s2: %w", err)
	}
	if n > maxSize {
		return nil, fmt.Errorf("s2: %w (block header says %d bytes, limit %d)", errTooLarge, n, maxSize)
	}
	dst = ensureCap(dst, n)
	out, err := s2.Decode(dst[:cap(dst)], src)
	if err != nil {
		return nil, fmt.Errorf("s2: %w", err)
	}
	return out, nil
}

// ---- gzip

type gzipCodec struct{ level int }

func (gzipCodec) Name() string     { return CodecGzip }
func (c gzipCodec) Level() int     { return c.level }
func (gzipCodec) Ext() string      { return ".gz" }
func (c gzipCodec) String() string { return fmt.Sprintf("gzip level %d", c.level) }

var (
	gzipWriters [10]sync.Pool // by level
	gzipReaders sync.Pool
)

// appendWriter is an io.Writer appending to a byte slice.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}

func (c gzipCodec) compress(dst, src []byte) ([]byte, error) {
	out := &appendWriter{b: dst[:0]}
	zw, _ := gzipWriters[c.level].Get().(*gzip.Writer)
	if zw == nil {
		var err error
		if zw, err = gzip.NewWriterLevel(out, c.level); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
	} else {
		zw.Reset(out)
	}
	if _, err := zw.Write(src); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	zw.Reset(io.Discard) // drop the reference to out
	gzipWriters[c.level].Put(zw)
	return out.b, nil
}

func (gzipCodec) decompress(dst, src []byte, maxSize int) ([]byte, error) {
	br := bytes.NewReader(src)
	zr, _ := gzipReaders.Get().(*gzip.Reader)
	var err error
	if zr == nil {
		zr, err = gzip.NewReader(br)
	} else {
		err = zr.Reset(br)
	}
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	out, err := readBounded(zr, dst, maxSize)
	if err != nil {
		return nil, fmt.Errorf("gzip: %w", err)
	}
	gzipReaders.Put(zr)
	return out, nil
}

// readBounded reads r to EOF into dst's storage, failing with errTooLarge if
// r yields more than maxSize bytes.
func readBounded(r io.Reader, dst []byte, maxSize int) ([]byte, error) {
	buf := ensureCap(dst, maxSize+1)[:maxSize+1]
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err == io.EOF {
			return buf[:n], nil
		}
		if err != nil {
			return nil, err
		}
	}
	return nil, fmt.Errorf("%w (limit %d bytes)", errTooLarge, maxSize)
}

// ---- lz4

// lz4Codec stores each chunk as one lz4 frame (the format of the lz4 command
// line tool: 4 MiB blocks, a content checksum).
type lz4Codec struct{ level int }

func (lz4Codec) Name() string     { return CodecLZ4 }
func (c lz4Codec) Level() int     { return c.level }
func (lz4Codec) Ext() string      { return ".lz4" }
func (c lz4Codec) String() string { return fmt.Sprintf("lz4 level %d", c.level) }

var (
	lz4Writers [11]sync.Pool // by level
	lz4Readers sync.Pool
)

// lz4Level maps Strata's level to pierrec/lz4's.
func lz4Level(level int) lz4.CompressionLevel {
	if level <= 1 {
		return lz4.Fast
	}
	return lz4.Level1 << (level - 2) // Level1..Level9 are 1<<9..1<<17
}

func (c lz4Codec) compress(dst, src []byte) ([]byte, error) {
	out := &appendWriter{b: dst[:0]}
	zw, _ := lz4Writers[c.level].Get().(*lz4.Writer)
	if zw == nil {
		zw = lz4.NewWriter(out)
		if err := zw.Apply(lz4.CompressionLevelOption(lz4Level(c.level)), lz4.BlockSizeOption(lz4.Block4Mb),
			lz4.ChecksumOption(true), lz4.ConcurrencyOption(1)); err != nil {
			return nil, fmt.Errorf("lz4: %w", err)
		}
	} else {
		zw.Reset(out)
	}
	if _, err := zw.Write(src); err != nil {
		return nil, fmt.Errorf("lz4: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("lz4: %w", err)
	}
	zw.Reset(io.Discard) // drop the reference to out
	lz4Writers[c.level].Put(zw)
	return out.b, nil
}

func (lz4Codec) decompress(dst, src []byte, maxSize int) ([]byte, error) {
	// The reader takes an empty input for an empty stream: every chunk is
	// one frame, so require its header.
	if ok, err := lz4.ValidFrameHeader(src); !ok {
		if err == nil {
			err = errors.New("bad magic number")
		}
		return nil, fmt.Errorf("lz4: not an lz4 frame (%d bytes): %w", len(src), err)
	}
	br := bytes.NewReader(src)
	zr, _ := lz4Readers.Get().(*lz4.Reader)
	if zr == nil {
		zr = lz4.NewReader(br)
	} else {
		zr.Reset(br)
	}
	// The reader holds one block (at most 4 MiB) at a time; readBounded
	// stops at maxSize bytes of output.
	out, err := readBounded(zr, dst, maxSize)
	if err != nil {
		return nil, fmt.Errorf("lz4: %w", err)
	}
	zr.Reset(nil)
	lz4Readers.Put(zr)
	return out, nil
}

// ---- none

type noneCodec struct{}

func (noneCodec) Name() string   { return CodecNone }
func (noneCodec) Level() int     { return 0 }
func (noneCodec) Ext() string    { return "" }
func (noneCodec) String() string { return "none" }

func (noneCodec) compress(dst, src []byte) ([]byte, error) {
	return append(ensureCap(dst, len(src)), src...), nil
}

func (noneCodec) decompress(dst, src []byte, maxSize int) ([]byte, error) {
	if len(src) > maxSize {
		return nil, fmt.Errorf("%w (%d bytes, limit %d)", errTooLarge, len(src), maxSize)
	}
	return append(ensureCap(dst, len(src)), src...), nil
}
