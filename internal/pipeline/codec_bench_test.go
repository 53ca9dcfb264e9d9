package pipeline

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"syscall"
	"testing"
	"time"
)

// BenchmarkCodec measures each codec's CPU cost, on one core, on 16 MiB
// chunks: 128 MiB taken from eight places of the stream file
// STRATA_BENCH_STREAM when set (a real backup stream), else 64 MiB of synthetic half-compressible data.
// It reports, for compression and decompression, MB/s per core (raw bytes
// per CPU-second of the process) and CPU-s per GiB of raw stream, and the
// stored ratio (raw/stored). On 2 cores, a backup's throughput is at most
// about 2 × the compression MB/s per core, less its hashing (see
// BenchmarkUploadStream).
func BenchmarkCodec(b *testing.B) {
	data := codecBenchData(b)
	const chunk = 16 << 20
	var chunks [][]byte
	for off := 0; off < len(data); off += chunk {
		chunks = append(chunks, data[off:min(off+chunk, len(data))])
	}
	for _, cl := range []struct {
		name  string
		level int
	}{
		{"zstd", 1}, {"zstd", 3}, {"zstd", 7},
		{"lz4", 1}, {"lz4", 2}, {"lz4", 5},
		{"s2", 1}, {"s2", 2},
		{"gzip", 1}, {"gzip", 6},
		{"none", 0},
	} {
		c, err := NewCodec(cl.name, cl.level)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%s-%d", cl.name, cl.level), func(b *testing.B) {
			comp := make([][]byte, len(chunks))
			for i := range comp { // output buffers as Upload's pool has them
				comp[i] = make([]byte, 0, maxCompressedLen(chunk))
			}
			var cCPU, dCPU time.Duration
			var stored int
			out := make([]byte, 0, maxCompressedLen(chunk))
			if _, err := c.compress(nil, chunks[0][:1<<20]); err != nil { // create the encoder
				b.Fatal(err)
			}
			for b.Loop() {
				stored = 0
				cpu0 := codecCPU(b)
				for i, src := range chunks {
					z, err := c.compress(comp[i], src)
					if err != nil {
						b.Fatal(err)
					}
					comp[i] = z
					stored += len(z)
				}
				cpu1 := codecCPU(b)
				for i, z := range comp {
					raw, err := c.decompress(out, z, len(chunks[i]))
					if err != nil {
						b.Fatal(err)
					}
					if !bytes.Equal(raw, chunks[i]) {
						b.Fatal("round trip differs")
					}
				}
				cCPU += cpu1 - cpu0
				dCPU += codecCPU(b) - cpu1
			}
			n := float64(b.N)
			raw := float64(len(data))
			b.ReportMetric(raw/1e6/(cCPU.Seconds()/n), "comp-MB/s/core")
			b.ReportMetric(cCPU.Seconds()/n/(raw/(1<<30)), "comp-CPU-s/GiB")
			b.ReportMetric(raw/1e6/(dCPU.Seconds()/n), "dec-MB/s/core")
			b.ReportMetric(dCPU.Seconds()/n/(raw/(1<<30)), "dec-CPU-s/GiB")
			b.ReportMetric(raw/float64(stored), "ratio")
		})
	}
}

func codecBenchData(b *testing.B) []byte {
	path := os.Getenv("STRATA_BENCH_STREAM")
	if path == "" {
		return codecSynthetic()
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		b.Fatal(err)
	}
	// Eight 16 MiB pieces spread over the stream: its start (system
	// tablespace, logs) is not like the rest (the tables).
	const piece, pieces = 16 << 20, 8
	data := make([]byte, 0, piece*pieces)
	for i := range int64(pieces) {
		off := max(0, fi.Size()-piece) * i / (pieces - 1)
		n, err := f.ReadAt(data[len(data):len(data)+piece], off)
		if err != nil && err != io.EOF {
			b.Fatal(err)
		}
		data = data[:len(data)+n]
	}
	return data
}

// codecSynthetic is 64 MiB of alternating 4 KiB blocks of pseudo-random
// bytes and of repeated text.
func codecSynthetic() []byte {
	data := make([]byte, 64<<20)
	x := uint64(42)
	text := bytes.Repeat([]byte("INSERT INTO sbtest1 VALUES (17, 4242, '68487932199-96439406143', 'pad') "), 64)
	for off := 0; off < len(data); off += 4096 {
		blk := data[off : off+4096]
		if (off/4096)%2 == 0 {
			for i := range blk {
				x ^= x << 13
				x ^= x >> 7
				x ^= x << 17
				blk[i] = byte(x)
			}
		} else {
			copy(blk, text[(off/4096)%64:])
		}
	}
	return data
}

// codecCPU is the process's CPU time (user+system) so far.
func codecCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
