package pipeline_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/storage/memory"
)

const benchSize = 64 << 20

var (
	benchOnce sync.Once
	benchBuf  []byte
)

// benchData returns 64 MiB of semi-compressible data: alternating 4 KiB
// blocks of random bytes and of text (about 2:1 with zstd).
func benchData() []byte {
	benchOnce.Do(func() {
		rng := rand.New(rand.NewPCG(42, 42))
		text := textData(1<<20, 42)
		benchBuf = make([]byte, benchSize)
		for off := 0; off < benchSize; off += 4096 {
			blk := benchBuf[off : off+4096]
			if (off/4096)%2 == 0 {
				for i := 0; i < len(blk); i += 8 {
					binary.LittleEndian.PutUint64(blk[i:], rng.Uint64())
				}
			} else {
				start := rng.IntN(len(text) - 4096)
				copy(blk, text[start:])
			}
		}
	})
	return benchBuf
}

var benchCodecs = []struct {
	codec string
	level int
}{{"zstd", 1}, {"zstd", 3}, {"s2", 1}}

func BenchmarkUpload(b *testing.B) {
	data := benchData()
	for _, bc := range benchCodecs {
		b.Run(fmt.Sprintf("%s-%d", bc.codec, bc.level), func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			var stored int64
			for i := 0; i < b.N; i++ {
				res, err := pipeline.Upload(context.Background(), memory.New(), "b/", bytes.NewReader(data),
					pipeline.UploadOptions{Codec: bc.codec, Level: bc.level})
				if err != nil {
					b.Fatal(err)
				}
				stored = res.StoredSize
			}
			b.ReportMetric(float64(len(data))/float64(stored), "ratio")
		})
	}
}

func BenchmarkDownload(b *testing.B) {
	data := benchData()
	for _, bc := range benchCodecs {
		b.Run(fmt.Sprintf("%s-%d", bc.codec, bc.level), func(b *testing.B) {
			mem := memory.New()
			res, err := pipeline.Upload(context.Background(), mem, "b/", bytes.NewReader(data),
				pipeline.UploadOptions{Codec: bc.codec, Level: bc.level})
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				_, err := pipeline.Download(context.Background(), mem, "b/", res.Chunks, res.Codec, io.Discard,
					pipeline.DownloadOptions{ExpectRawSHA256: res.RawSHA256})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
