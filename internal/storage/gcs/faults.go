package gcs

import (
	"context"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FaultTransport is an http.RoundTripper for tests that injects failures and
// latency into the requests of a GCS client (set it as the Transport of
// Options.HTTPClient). A faulted request gets an HTTP 503 response, which
// the backend retries. It is safe for concurrent use; configure it before
// the first request.
type FaultTransport struct {
	// Base performs the requests that are let through; nil means
	// http.DefaultTransport.
	Base http.RoundTripper
	// FailEvery makes every FailEvery-th eligible request fail (0: never).
	FailEvery int
	// Rate is the probability that an eligible request fails, in [0, 1].
	Rate float64
	// Seed seeds the random choice of Rate, for reproducible tests.
	Seed uint64
	// Latency is added to every request (faulted or not).
	Latency time.Duration
	// LoseResponses makes a faulted request reach Base anyway, and replaces
	// its response by the 503: the server did the work but the client does
	// not know, as when a connection drops after the request was processed.
	// Without it, a faulted request never reaches the server.
	LoseResponses bool
	// Match, if set, restricts faults to the requests for which it
	// returns true; others are only delayed.
	Match func(*http.Request) bool

	once     sync.Once
	mu       sync.Mutex
	rng      *rand.Rand
	eligible atomic.Int64
	requests atomic.Int64
	faults   atomic.Int64
}

// Requests returns how many requests went through the transport.
func (t *FaultTransport) Requests() int64 { return t.requests.Load() }

// Faults returns how many requests got an injected 503.
func (t *FaultTransport) Faults() int64 { return t.faults.Load() }

// IsUpload reports whether r is an object upload request (media upload or
// resumable upload chunk), for use as FaultTransport.Match.
func IsUpload(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/upload/")
}

func (t *FaultTransport) base() http.RoundTripper {
	if t.Base != nil {
		return t.Base
	}
	return http.DefaultTransport
}

// shouldFail decides whether the current request fails.
func (t *FaultTransport) shouldFail(r *http.Request) bool {
	if t.Match != nil && !t.Match(r) {
		return false
	}
	n := t.eligible.Add(1)
	if t.FailEvery > 0 && n%int64(t.FailEvery) == 0 {
		return true
	}
	if t.Rate <= 0 {
		return false
	}
	t.once.Do(func() { t.rng = rand.New(rand.NewPCG(t.Seed, t.Seed^0x5eed)) })
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.rng.Float64() < t.Rate
}

// RoundTrip implements http.RoundTripper.
func (t *FaultTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	t.requests.Add(1)
	if t.Latency > 0 {
		if err := sleep(r.Context(), t.Latency); err != nil {
			closeBody(r)
			return nil, err
		}
	}
	if !t.shouldFail(r) {
		return t.base().RoundTrip(r)
	}
	t.faults.Add(1)
	if t.LoseResponses {
		resp, err := t.base().RoundTrip(r)
		if err != nil {
			return nil, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
	} else {
		closeBody(r)
	}
	return unavailable(r), nil
}

func closeBody(r *http.Request) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
}

// unavailable builds a 503 response in the format of GCS JSON API errors.
func unavailable(r *http.Request) *http.Response {
	const body = `{"error":{"code":503,"message":"injected fault: service unavailable","errors":[{"reason":"backendError","message":"injected fault"}]}}`
	return &http.Response{
		Status:        "503 Service Unavailable",
		StatusCode:    http.StatusServiceUnavailable,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"application/json; charset=UTF-8"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       r,
	}
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
