package pipeline_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/storage"
)

// BenchmarkUploadStream measures Upload on a real backup stream, with the
// options of a real backup (content-defined chunks named by a NameKey,
// 16 MiB chunks, parallelism 2, zstd), with and without encryption, against
// the peer `zstd -T2 -N` on the same file, interleaved (Strata, Strata
// encrypted, peer; STRATA_BENCH_ROUNDS times, default 3) and reports the
// medians: MB/s of raw stream, CPU-s of the process (getrusage), stored
// bytes, and the ratios Strata/peer of throughput, CPU and stored size.
//
// The stream's path comes from STRATA_BENCH_STREAM (e.g. the output of
// `mariabackup --backup --stream=xbstream`); the benchmark is skipped
// without it. STRATA_BENCH_LEVELS lists the zstd levels (default "1,3");
// STRATA_BENCH_PEER=0 leaves the peer out (for a profile of Upload alone).
// Run it with -benchtime=1x: each round reads the whole stream.
//
// Stored chunks are counted and discarded (nullBackend), so the figures are
// the data path's own: reading, chunking, hashing, compression, encryption.
func BenchmarkUploadStream(b *testing.B) {
	path := os.Getenv("STRATA_BENCH_STREAM")
	if path == "" {
		b.Skip("STRATA_BENCH_STREAM is not set (path of a backup stream file)")
	}
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	rounds := envInt(b, "STRATA_BENCH_ROUNDS", 3)
	levels := []int{1, 3}
	if s := os.Getenv("STRATA_BENCH_LEVELS"); s != "" {
		levels = nil
		for _, f := range strings.Split(s, ",") {
			l, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil {
				b.Fatalf("STRATA_BENCH_LEVELS: %v", err)
			}
			levels = append(levels, l)
		}
	}
	peer := os.Getenv("STRATA_BENCH_PEER") != "0"
	if peer {
		if _, err := exec.LookPath("zstd"); err != nil {
			b.Log("zstd not found: no peer figures")
			peer = false
		}
	}
	dataKey, err := crypt.NewDataKey()
	if err != nil {
		b.Fatal(err)
	}
	nameKey, err := crypt.ChunkNameKey(dataKey)
	if err != nil {
		b.Fatal(err)
	}
	cipher, err := crypt.NewChunkCipher(dataKey, "bench")
	if err != nil {
		b.Fatal(err)
	}
	for _, level := range levels {
		b.Run(fmt.Sprintf("zstd-%d", level), func(b *testing.B) {
			var plain, enc, zs []streamRun
			for range b.N * rounds {
				plain = append(plain, strataRun(b, path, level, nameKey, nil))
				enc = append(enc, strataRun(b, path, level, nameKey, cipher))
				if peer {
					zs = append(zs, peerRun(b, path, level))
				}
			}
			p, e := median(plain), median(enc)
			report := func(name string, r streamRun) {
				b.ReportMetric(mbps(fi.Size(), r.wall), name+"-MB/s")
				b.ReportMetric(r.cpu.Seconds(), name+"-CPU-s")
				b.ReportMetric(float64(r.stored), name+"-stored-B")
			}
			report("strata", p)
			report("strata-enc", e)
			if peer {
				z := median(zs)
				report("zstd", z)
				b.ReportMetric(mbps(fi.Size(), p.wall)/mbps(fi.Size(), z.wall), "x-zstd-speed")
				b.ReportMetric(mbps(fi.Size(), e.wall)/mbps(fi.Size(), z.wall), "x-zstd-speed-enc")
				b.ReportMetric(p.cpu.Seconds()/z.cpu.Seconds(), "x-zstd-CPU")
				b.ReportMetric(float64(p.stored)/float64(z.stored), "x-zstd-size")
			}
			for i := range plain {
				line := fmt.Sprintf("round %d: strata %.2fs %.1f CPU-s %d B; enc %.2fs %.1f CPU-s %d B",
					i+1, plain[i].wall.Seconds(), plain[i].cpu.Seconds(), plain[i].stored,
					enc[i].wall.Seconds(), enc[i].cpu.Seconds(), enc[i].stored)
				if peer {
					line += fmt.Sprintf("; zstd -T2 -%d %.2fs %.1f CPU-s %d B", level,
						zs[i].wall.Seconds(), zs[i].cpu.Seconds(), zs[i].stored)
				}
				b.Log(line)
			}
		})
	}
}

// streamRun is one measured pass over the stream.
type streamRun struct {
	wall, cpu time.Duration
	stored    int64
}

// median returns the run of median wall time.
func median(runs []streamRun) streamRun {
	s := slices.Clone(runs)
	slices.SortFunc(s, func(a, b streamRun) int { return int(a.wall - b.wall) })
	return s[len(s)/2]
}

func mbps(n int64, d time.Duration) float64 { return float64(n) / 1e6 / d.Seconds() }

func envInt(b *testing.B, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", name, s)
	}
	return n
}

// processCPU returns the CPU time (user+system) of this process so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// strataRun uploads the stream file the way a backup does.
func strataRun(b *testing.B, path string, level int, nameKey []byte, cipher *crypt.ChunkCipher) streamRun {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	be := &nullBackend{}
	cpu0, t0 := processCPU(b), time.Now()
	res, err := pipeline.Upload(context.Background(), be, "b/", onlyReader{f}, pipeline.UploadOptions{
		ChunkSize:   16 << 20,
		Parallelism: 2,
		Codec:       "zstd",
		Level:       level,
		NameKey:     nameKey,
		Cipher:      cipher,
	})
	if err != nil {
		b.Fatal(err)
	}
	r := streamRun{wall: time.Since(t0), cpu: processCPU(b) - cpu0, stored: res.StoredSize}
	if be.n.Load() != res.StoredSize {
		b.Fatalf("stored %d bytes, result says %d", be.n.Load(), res.StoredSize)
	}
	return r
}

// peerRun runs `zstd -T2 -N` on the stream file, counting its output.
func peerRun(b *testing.B, path string, level int) streamRun {
	cmd := exec.Command("zstd", "-q", "-c", "-T2", fmt.Sprintf("-%d", level), path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	n, err := io.Copy(io.Discard, out)
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		b.Fatal(err)
	}
	ps := cmd.ProcessState
	return streamRun{wall: time.Since(t0), cpu: ps.UserTime() + ps.SystemTime(), stored: n}
}

// onlyReader hides the file's other methods (WriterTo, ...): the backup
// tool's stream is a plain pipe.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// nullBackend counts the bytes put and keeps nothing: every key is new.
type nullBackend struct{ n atomic.Int64 }

func (nb *nullBackend) Put(_ context.Context, _ string, r io.Reader, size int64) error {
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	if n != size {
		return fmt.Errorf("null backend: got %d bytes, expected %d", n, size)
	}
	nb.n.Add(n)
	return nil
}

func (nb *nullBackend) Get(context.Context, string) (io.ReadCloser, error) {
	return nil, storage.ErrNotFound
}

func (nb *nullBackend) Stat(context.Context, string) (storage.ObjectInfo, error) {
	return storage.ObjectInfo{}, storage.ErrNotFound
}

func (nb *nullBackend) List(context.Context, string) ([]storage.ObjectInfo, error) { return nil, nil }
func (nb *nullBackend) Delete(context.Context, string) error                       { return nil }
func (nb *nullBackend) String() string                                             { return "null" }
