package pipeline_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/strata-backup/strata/internal/pipeline"
	"github.com/strata-backup/strata/internal/storage/memory"
	"github.com/strata-backup/strata/internal/tracing"
)

func attrs(s tracetest.SpanStub) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes {
		m[kv.Key] = kv.Value
	}
	return m
}

func TestUploadTracesItsPhasesUnderTheCallersSpan(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	ctx, parent := tp.Tracer("test").Start(context.Background(), "activity")
	ctx = tracing.IDs(ctx, "db1", "b1")
	data := textData(5*cs+123, 7)
	res, err := pipeline.Upload(ctx, memory.New(), prefix, bytes.NewReader(data), pipeline.UploadOptions{ChunkSize: cs, Parallelism: 3})
	require.NoError(t, err)
	parent.End()

	byName := map[string]tracetest.SpanStub{}
	for _, s := range exp.GetSpans() {
		byName[s.Name] = s
	}
	require.Contains(t, byName, "activity")
	for _, name := range []string{tracing.SpanStream, tracing.SpanCompress, tracing.SpanUpload} {
		s, ok := byName[name]
		require.True(t, ok, "span %s", name)
		assert.Equal(t, parent.SpanContext().TraceID(), s.SpanContext.TraceID(), name)
		assert.Equal(t, parent.SpanContext().SpanID(), s.Parent.SpanID(), "%s is a child of the caller's span", name)
		a := attrs(s)
		assert.Equal(t, "db1", a[tracing.AttrInstance].AsString(), name)
		assert.Equal(t, "b1", a[tracing.AttrBackupID].AsString(), name)
		assert.Equal(t, codes.Unset, s.Status.Code, name)
	}
	assert.Equal(t, int64(len(data)), attrs(byName[tracing.SpanStream])[tracing.AttrBytes].AsInt64())
	assert.Equal(t, res.StoredSize, attrs(byName[tracing.SpanCompress])[tracing.AttrBytes].AsInt64())
	assert.Equal(t, res.UploadedBytes, attrs(byName[tracing.SpanUpload])[tracing.AttrBytes].AsInt64())
	assert.Greater(t, attrs(byName[tracing.SpanCompress])[tracing.AttrBusySecond].AsFloat64(), 0.0)
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, assert.AnError }

func TestUploadSpansRecordTheError(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(noop.NewTracerProvider()) })

	_, err := pipeline.Upload(context.Background(), memory.New(), prefix, failingReader{}, pipeline.UploadOptions{ChunkSize: cs})
	require.Error(t, err)
	spans := exp.GetSpans()
	require.Len(t, spans, 3)
	for _, s := range spans {
		assert.Equal(t, codes.Error, s.Status.Code, s.Name)
	}
}
