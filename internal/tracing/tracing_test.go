package tracing_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/tracing"
)

func TestSetupWithExporterNoneInstallsNothing(t *testing.T) {
	before := otel.GetTracerProvider()
	shutdown, err := tracing.Setup(context.Background(), config.Tracing{Exporter: "none"}, "strata-worker")
	require.NoError(t, err)
	require.NoError(t, shutdown(context.Background()))
	assert.Equal(t, before, otel.GetTracerProvider())
	_, span := tracing.Start(context.Background(), tracing.SpanStream)
	assert.False(t, span.SpanContext().IsValid(), "no provider: spans are not recorded")
	span.End()
}

// The spans still buffered when the process exits reach the collector:
// shutdown flushes them.
func TestSetupExportsOverOTLPHTTPAndFlushesOnShutdown(t *testing.T) {
	var posts atomic.Int32
	var service atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/traces" && r.Method == http.MethodPost {
			posts.Add(1)
			buf := new(strings.Builder)
			_, _ = ioCopy(buf, r)
			if strings.Contains(buf.String(), "strata-agent") {
				service.Store(true)
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	shutdown, err := tracing.Setup(context.Background(), config.Tracing{Exporter: "otlp", Protocol: "http",
		Endpoint: srv.URL, Insecure: true}, "strata-agent")
	require.NoError(t, err)
	ctx := tracing.IDs(context.Background(), "db1", "b1")
	_, span := tracing.Start(ctx, tracing.SpanUpload)
	require.True(t, span.SpanContext().IsSampled())
	span.End()
	assert.Zero(t, posts.Load(), "batched, not sent yet")
	require.NoError(t, shutdown(context.Background()))
	assert.Positive(t, posts.Load(), "shutdown sent the batch")
	assert.True(t, service.Load(), "with the service name")
}

func TestSampleRatioIsApplied(t *testing.T) {
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })
	tiny := 1e-9
	shutdown, err := tracing.Setup(context.Background(), config.Tracing{Exporter: "otlp", Protocol: "http",
		Endpoint: "127.0.0.1:1", Insecure: true, SampleRatio: &tiny}, "strata-worker")
	require.NoError(t, err)
	defer func() { _ = shutdown(context.Background()) }()
	sampled := 0
	for range 200 {
		_, span := tracing.Start(context.Background(), tracing.SpanStream)
		if span.SpanContext().IsSampled() {
			sampled++
		}
		span.End()
	}
	assert.Less(t, sampled, 5, "a ratio near 0 records next to no trace")
}

func ioCopy(w *strings.Builder, r *http.Request) (int64, error) {
	b := make([]byte, 32<<10)
	var n int64
	for {
		k, err := r.Body.Read(b)
		w.Write(b[:k])
		n += int64(k)
		if err != nil {
			return n, nil
		}
	}
}
