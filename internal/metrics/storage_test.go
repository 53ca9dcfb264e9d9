package metrics

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/counting"
	"github.com/strata-backup/strata/internal/storage/memory"
	"github.com/strata-backup/strata/internal/storage/storagetest"
)

// brokenBody fails mid-read, as a dropped download does.
type brokenBody struct{ b storage.Backend }

func (b brokenBody) Put(ctx context.Context, k string, r io.Reader, n int64) error {
	return b.b.Put(ctx, k, r, n)
}
func (b brokenBody) Get(ctx context.Context, k string) (io.ReadCloser, error) {
	return io.NopCloser(io.MultiReader(strings.NewReader("par"), errReader{})), nil
}
func (b brokenBody) Stat(ctx context.Context, k string) (storage.ObjectInfo, error) {
	return b.b.Stat(ctx, k)
}
func (b brokenBody) List(ctx context.Context, p string) ([]storage.ObjectInfo, error) {
	return b.b.List(ctx, p)
}
func (b brokenBody) Delete(ctx context.Context, k string) error { return b.b.Delete(ctx, k) }
func (b brokenBody) String() string                             { return "broken" }

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection reset") }

func TestStorageCountsRequestsAndFailures(t *testing.T) {
	const be = "test-count"
	inner := counting.New(memory.New())
	s := Storage(inner, be)
	ctx := context.Background()
	req := func(op string) float64 { return value(storageRequests.WithLabelValues(be, op)) }
	errs := func(op string) float64 { return value(storageErrors.WithLabelValues(be, op)) }

	if err := s.Put(ctx, "a", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	// An existing object and a missing one are answers, not failures.
	if err := s.Put(ctx, "a", strings.NewReader("y"), 1); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second put: %v", err)
	}
	if _, err := s.Get(ctx, "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	if _, err := s.Stat(ctx, "missing"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("stat missing: %v", err)
	}
	// An injected failure is one.
	inner.FailAfter(1)
	if err := s.Put(ctx, "b", strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "c", strings.NewReader("x"), 1); !errors.Is(err, counting.ErrInjected) {
		t.Fatalf("injected put: %v", err)
	}
	if err := s.Delete(ctx, "a"); !errors.Is(err, counting.ErrInjected) {
		t.Fatalf("injected delete: %v", err)
	}
	inner.FailAfter(0)
	// A cancelled request is not a storage failure.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.List(cctx, ""); err == nil {
		t.Fatalf("list on a cancelled context succeeded")
	}
	if _, err := s.List(ctx, ""); err != nil {
		t.Fatal(err)
	}

	for op, want := range map[string][2]float64{
		OpPut: {4, 1}, OpGet: {1, 0}, OpStat: {1, 0}, OpList: {2, 0}, OpDelete: {1, 1},
	} {
		if got := req(op); got != want[0] {
			t.Errorf("requests{op=%s} = %v, want %v", op, got, want[0])
		}
		if got := errs(op); got != want[1] {
			t.Errorf("errors{op=%s} = %v, want %v", op, got, want[1])
		}
	}
	if c := inner.Counts(); c.Put+c.Get+c.Stat+c.List+c.Delete != 9 {
		t.Errorf("the wrapper did not pass every request through once: %v", c)
	}
}

func TestStorageCountsABrokenDownload(t *testing.T) {
	const be = "test-broken"
	s := Storage(brokenBody{memory.New()}, be)
	rc, err := s.Get(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(rc); err == nil {
		t.Fatal("read of a broken body succeeded")
	}
	_, _ = rc.Read(make([]byte, 1)) // a second failed read counts no second failure
	if got := value(storageErrors.WithLabelValues(be, OpGet)); got != 1 {
		t.Errorf("errors{op=get} = %v, want 1", got)
	}
}

func TestStorageConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return Storage(memory.New(), "test-conf") })
}

func TestRetried(t *testing.T) {
	hook := RetryHook("test-retry")
	hook(OpPut)
	hook(OpPut)
	hook(OpList)
	if got := value(storageRetries.WithLabelValues("test-retry", OpPut)); got != 2 {
		t.Errorf("retries{op=put} = %v", got)
	}
	if got := value(storageRetries.WithLabelValues("test-retry", OpList)); got != 1 {
		t.Errorf("retries{op=list} = %v", got)
	}
}

// value reads a counter's or gauge's value.
func value(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.GetCounter().GetValue()
	}
	return d.GetGauge().GetValue()
}

// TestStorageListDir: a one-level listing goes to the wrapped backend's
// ListDir as one list request, or, when it has none (brokenBody), to its
// full List, with the same answer.
func TestStorageListDir(t *testing.T) {
	const be = "test-listdir"
	ctx := context.Background()
	inner := counting.New(memory.New())
	for _, k := range []string{"i/backups/b1/manifest.json", "i/backups/b1/chunks/0", "i/backups/b2/chunks/0", "i/backups/x"} {
		if err := inner.Put(ctx, k, strings.NewReader("x"), 1); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []storage.Backend{Storage(inner, be), Storage(brokenBody{inner}, be)} {
		before := value(storageRequests.WithLabelValues(be, OpList))
		inner.Reset()
		objs, dirs, err := storage.ListDir(ctx, s, "i/backups/")
		if err != nil {
			t.Fatal(err)
		}
		if len(objs) != 1 || objs[0].Key != "i/backups/x" || strings.Join(dirs, ",") != "i/backups/b1/,i/backups/b2/" {
			t.Errorf("%T: ListDir = %v, %v", s, objs, dirs)
		}
		if got := value(storageRequests.WithLabelValues(be, OpList)) - before; got != 1 {
			t.Errorf("%T: %v list requests counted, want 1", s, got)
		}
		if c := inner.Counts(); c.List != 1 {
			t.Errorf("%T: the wrapped backend got %s", s, c)
		}
	}
}
