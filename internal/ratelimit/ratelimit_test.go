package ratelimit_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/ratelimit"
)

const mib = 1 << 20

// Timing assertions are deliberately loose: lower bounds only where the
// limit guarantees them, and generous upper bounds.

func TestLimitHonored(t *testing.T) {
	l := ratelimit.New(8 * mib)
	start := time.Now()
	require.NoError(t, l.Wait(context.Background(), 4*mib)) // larger than the burst (2 MiB)
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, 350*time.Millisecond, "4 MiB at 8 MiB/s takes about 0.5 s")
	assert.Less(t, took, 5*time.Second)
}

func TestLimitSharedByConcurrentWaiters(t *testing.T) {
	l := ratelimit.New(8 * mib)
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 4 {
				assert.NoError(t, l.Wait(context.Background(), 256<<10))
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, 350*time.Millisecond, "4×1 MiB at 8 MiB/s in total")
	assert.Less(t, took, 5*time.Second)
}

func TestUnlimitedIsFast(t *testing.T) {
	var nilLimiter *ratelimit.Limiter
	for _, l := range []*ratelimit.Limiter{nilLimiter, ratelimit.New(0), ratelimit.New(-5), {}} {
		start := time.Now()
		for range 100 {
			require.NoError(t, l.Wait(context.Background(), 1<<30))
		}
		assert.Less(t, time.Since(start), time.Second)
		assert.Zero(t, l.Limit())
	}
	src := bytes.NewReader(nil)
	assert.Same(t, src, nilLimiter.Reader(context.Background(), src))
	var dst bytes.Buffer
	assert.Same(t, &dst, nilLimiter.Writer(context.Background(), &dst))
	nilLimiter.SetLimit(5) // no-op, no panic
}

func TestWaitCancel(t *testing.T) {
	l := ratelimit.New(64 << 10) // 64 KiB/s: 8 MiB would take 2 minutes
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	err := l.Wait(ctx, 8*mib)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(start), 2*time.Second)

	// Already done: fails at once.
	assert.ErrorIs(t, l.Wait(ctx, 1), context.Canceled)

	// A deadline is honored too.
	dctx, dcancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer dcancel()
	start = time.Now()
	assert.ErrorIs(t, l.Wait(dctx, 8*mib), context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 2*time.Second)
}

func TestSetLimitChangesRate(t *testing.T) {
	t.Run("lower", func(t *testing.T) {
		l := ratelimit.New(1 << 40)
		l.SetLimit(8 * mib)
		assert.Equal(t, int64(8*mib), l.Limit())
		start := time.Now()
		require.NoError(t, l.Wait(context.Background(), 4*mib))
		assert.GreaterOrEqual(t, time.Since(start), 350*time.Millisecond)
	})
	t.Run("from unlimited", func(t *testing.T) {
		l := ratelimit.New(0)
		l.SetLimit(8 * mib)
		start := time.Now()
		require.NoError(t, l.Wait(context.Background(), 4*mib))
		assert.GreaterOrEqual(t, time.Since(start), 350*time.Millisecond)
	})
	t.Run("raise wakes waiters", func(t *testing.T) {
		l := ratelimit.New(64 << 10) // 8 MiB would take 2 minutes
		done := make(chan error, 2)
		for range 2 {
			go func() { done <- l.Wait(context.Background(), 8*mib) }()
		}
		time.Sleep(50 * time.Millisecond)
		start := time.Now()
		l.SetLimit(1 << 30)
		for range 2 {
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(5 * time.Second):
				t.Fatal("waiters did not pick up the new limit")
			}
		}
		assert.Less(t, time.Since(start), 5*time.Second)
	})
	t.Run("to unlimited wakes waiters", func(t *testing.T) {
		l := ratelimit.New(64 << 10)
		done := make(chan error, 1)
		go func() { done <- l.Wait(context.Background(), 8*mib) }()
		time.Sleep(50 * time.Millisecond)
		l.SetLimit(0)
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Fatal("waiter did not see the limit removed")
		}
	})
}

func TestBurst(t *testing.T) {
	assert.Equal(t, ratelimit.MinBurst, ratelimit.Burst(1))
	assert.Equal(t, ratelimit.MinBurst, ratelimit.Burst(4*mib))
	assert.Equal(t, 25*mib, ratelimit.Burst(100*mib))
}

func TestReaderWriter(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 2*mib/16) // 2 MiB
	l := ratelimit.New(8 * mib)
	ctx := context.Background()

	start := time.Now()
	got, err := io.ReadAll(l.Reader(ctx, bytes.NewReader(data)))
	require.NoError(t, err)
	assert.Equal(t, data, got)
	assert.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond, "2 MiB at 8 MiB/s takes about 0.25 s")

	var out bytes.Buffer
	start = time.Now()
	n, err := l.Writer(ctx, &out).Write(data)
	require.NoError(t, err)
	assert.Equal(t, len(data), n)
	assert.Equal(t, data, out.Bytes())
	assert.GreaterOrEqual(t, time.Since(start), 150*time.Millisecond)
}

func TestReaderWriterCancel(t *testing.T) {
	l := ratelimit.New(64 << 10)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	_, err := io.Copy(io.Discard, l.Reader(ctx, bytes.NewReader(make([]byte, 8*mib))))
	assert.ErrorIs(t, err, context.Canceled)
	n, err := l.Writer(ctx, io.Discard).Write(make([]byte, 8*mib))
	assert.ErrorIs(t, err, context.Canceled)
	assert.Less(t, n, 8*mib)
	assert.Less(t, time.Since(start), 2*time.Second)
}

type shortWriter struct{}

func (shortWriter) Write(p []byte) (int, error) { return len(p) / 2, nil }

func TestWriterShortWrite(t *testing.T) {
	_, err := ratelimit.New(0).Writer(context.Background(), shortWriter{}).Write([]byte("abcd"))
	assert.True(t, errors.Is(err, io.ErrShortWrite))
}
