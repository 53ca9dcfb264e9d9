// Package ratelimit limits the bandwidth of an agent's transfers. One
// Limiter is meant to be shared by everything the agent transfers (uploads,
// downloads, ...), so that the configured rate is a total for the agent.
//
// It is a token bucket of bytes (golang.org/x/time/rate) whose rate can be
// changed while transfers run (SetLimit). A nil *Limiter, and a Limiter with
// rate 0, do not limit.
package ratelimit

import (
	"context"
	"io"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// MinBurst is the smallest burst, in bytes: the burst is the larger of
// MinBurst and a quarter of a second's worth of bytes.
const MinBurst = 1 << 20

// ioSize is the largest piece that Reader and Writer transfer between waits
// when a limit is set, so that throughput is smooth.
const ioSize = 256 << 10

// Limiter limits a byte rate. It is safe for concurrent use; concurrent
// waiters share the rate. The zero value and nil are unlimited; use New.
type Limiter struct {
	mu      sync.Mutex
	bps     int64         // bytes per second, 0: unlimited
	lim     *rate.Limiter // nil when unlimited; replaced (never changed) by SetLimit
	changed chan struct{} // closed and replaced by SetLimit, to wake waiters
}

// New returns a limiter of bytesPerSec bytes per second; 0 (or less) means
// unlimited. Unlike a nil *Limiter, an unlimited limiter returned by New can
// be given a limit later with SetLimit.
func New(bytesPerSec int64) *Limiter {
	l := &Limiter{}
	l.SetLimit(bytesPerSec)
	return l
}

// Burst returns the burst, in bytes, of a limit of bytesPerSec: the larger
// of MinBurst and a quarter of a second's worth of bytes.
func Burst(bytesPerSec int64) int {
	return int(max(MinBurst, min(bytesPerSec/4, 1<<30)))
}

// SetLimit changes the rate to bytesPerSec bytes per second (0 or less:
// unlimited). It takes effect at once, including for transfers waiting in
// Wait. Setting the current rate again does nothing. It does nothing on a
// nil *Limiter.
func (l *Limiter) SetLimit(bytesPerSec int64) {
	if l == nil {
		return
	}
	bytesPerSec = max(bytesPerSec, 0)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.changed != nil && bytesPerSec == l.bps {
		return
	}
	l.bps = bytesPerSec
	l.lim = nil
	if bytesPerSec > 0 {
		burst := Burst(bytesPerSec)
		lim := rate.NewLimiter(rate.Limit(bytesPerSec), burst)
		// Start with an empty bucket: the rate holds from the first byte.
		lim.ReserveN(time.Now(), burst)
		l.lim = lim
	}
	if l.changed != nil {
		close(l.changed)
	}
	l.changed = make(chan struct{})
}

// Limit returns the rate in bytes per second (0: unlimited).
func (l *Limiter) Limit() int64 {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.bps
}

// state returns the current token bucket (nil: unlimited) and the channel
// closed when it changes.
func (l *Limiter) state() (*rate.Limiter, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lim, l.changed
}

// Wait blocks until n bytes may be transferred, or ctx is done (then it
// returns ctx.Err()). An n larger than the burst is waited for in several
// steps. Without a limit it returns nil at once.
func (l *Limiter) Wait(ctx context.Context, n int) error {
	if l == nil {
		return nil
	}
	for n > 0 {
		lim, changed := l.state()
		if lim == nil {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		take := min(n, lim.Burst())
		r := lim.ReserveN(time.Now(), take) // always OK: take <= burst
		if d := r.Delay(); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				r.Cancel()
				return ctx.Err()
			case <-changed:
				// The limit changed: wait again under the new one.
				t.Stop()
				r.Cancel()
				continue
			}
		}
		n -= take
	}
	return nil
}

// Reader returns a reader that reads from r at most at the limiter's rate.
// Once ctx is done, its reads fail with ctx.Err() (possibly together with
// the bytes just read). With a nil limiter it returns r.
func (l *Limiter) Reader(ctx context.Context, r io.Reader) io.Reader {
	if l == nil {
		return r
	}
	return &reader{ctx: ctx, l: l, r: r}
}

// Writer returns a writer that writes to w at most at the limiter's rate.
// Once ctx is done, its writes fail with ctx.Err(). With a nil limiter it
// returns w.
func (l *Limiter) Writer(ctx context.Context, w io.Writer) io.Writer {
	if l == nil {
		return w
	}
	return &writer{ctx: ctx, l: l, w: w}
}

// limited reports whether a limit is set.
func (l *Limiter) limited() bool {
	lim, _ := l.state()
	return lim != nil
}

type reader struct {
	ctx context.Context
	l   *Limiter
	r   io.Reader
}

func (r *reader) Read(p []byte) (int, error) {
	if len(p) > ioSize && r.l.limited() {
		p = p[:ioSize]
	}
	n, err := r.r.Read(p)
	if n > 0 {
		if werr := r.l.Wait(r.ctx, n); werr != nil {
			return n, werr
		}
	}
	return n, err
}

type writer struct {
	ctx context.Context
	l   *Limiter
	w   io.Writer
}

func (w *writer) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		k := len(p)
		if k > ioSize && w.l.limited() {
			k = ioSize
		}
		if err := w.l.Wait(w.ctx, k); err != nil {
			return written, err
		}
		m, err := w.w.Write(p[:k])
		written += m
		if err != nil {
			return written, err
		}
		if m < k {
			return written, io.ErrShortWrite
		}
		p = p[k:]
	}
	return written, nil
}
