package pipeline

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"

	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/storage"
)

// VerifyChunks reads every chunk (stored under prefix) and checks its stored
// size and sha256, without decompressing. It returns every problem found, in
// index order (nil when all chunks are intact). codec, if not empty, must be
// a valid codec name; otherwise a single ChunkError with Index -1 is
// returned. If ctx is cancelled, the chunks not verified are reported with
// Err wrapping the context error.
func VerifyChunks(ctx context.Context, b storage.Backend, prefix string, chunks []manifest.Chunk, codec string, parallelism int) []*ChunkError {
	if err := checkPrefix(prefix); err != nil {
		return []*ChunkError{{Index: -1, Reason: "cannot verify", Err: err}}
	}
	if codec != "" {
		if _, err := ParseCodec(codec); err != nil {
			return []*ChunkError{{Index: -1, Reason: "cannot verify", Err: err}}
		}
	}
	par := defaultParallelism(parallelism)
	problems := make([]*ChunkError, len(chunks))
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range min(par, len(chunks)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := sha256.New()
			for i := range jobs {
				c := chunks[i]
				if ce := checkChunk(prefix, i, c); ce != nil {
					problems[i] = ce
					continue
				}
				if err := ctx.Err(); err != nil {
					problems[i] = &ChunkError{Index: i, Key: c.Key, Reason: "not verified", Err: err}
					continue
				}
				_, err := readStored(ctx, b, prefix, i, c, nil, h, nil)
				var ce *ChunkError
				if errors.As(err, &ce) {
					problems[i] = ce
				} else if err != nil {
					problems[i] = &ChunkError{Index: i, Key: c.Key, Reason: "not verified", Err: err}
				}
			}
		}()
	}
	for i := range chunks {
		jobs <- i
	}
	close(jobs)
	wg.Wait()

	var out []*ChunkError
	for _, p := range problems {
		if p != nil {
			out = append(out, p)
		}
	}
	return out
}
