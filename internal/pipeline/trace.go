package pipeline

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/strata-backup/strata/internal/tracing"
)

// uploadSpans are the spans of one Upload's phases, children of the span in
// its context: stream (reading the input, until its end), compress and
// upload (the parallel workers, until the last chunk is stored). The
// parallel phases overlap in time; busy_seconds sums their workers' time.
type uploadSpans struct {
	stream, compress, upload trace.Span
	streamOnce               sync.Once
	compressNanos, putNanos  atomic.Int64
}

func startUploadSpans(ctx context.Context) *uploadSpans {
	s := &uploadSpans{}
	_, s.stream = tracing.Start(ctx, tracing.SpanStream)
	_, s.compress = tracing.Start(ctx, tracing.SpanCompress)
	_, s.upload = tracing.Start(ctx, tracing.SpanUpload)
	return s
}

// streamed ends the stream span: the input is read (or reading failed).
func (s *uploadSpans) streamed(raw int64, err error) {
	s.streamOnce.Do(func() {
		s.stream.SetAttributes(attribute.Int64(tracing.AttrBytes, raw))
		tracing.End(s.stream, err)
	})
}

func (s *uploadSpans) compressed(since time.Time) { s.compressNanos.Add(int64(time.Since(since))) }
func (s *uploadSpans) stored(since time.Time)     { s.putNanos.Add(int64(time.Since(since))) }

// end ends the spans with the upload's result.
func (s *uploadSpans) end(res *UploadResult, err error) {
	var raw, stored, uploaded int64
	if res != nil {
		raw, stored, uploaded = res.RawSize, res.StoredSize, res.UploadedBytes
	}
	s.streamed(raw, err)
	s.compress.SetAttributes(attribute.Int64(tracing.AttrBytes, stored), attribute.Int64("raw_bytes", raw),
		attribute.Float64(tracing.AttrBusySecond, time.Duration(s.compressNanos.Load()).Seconds()))
	tracing.End(s.compress, err)
	s.upload.SetAttributes(attribute.Int64(tracing.AttrBytes, uploaded), attribute.Int64("stored_bytes", stored),
		attribute.Float64(tracing.AttrBusySecond, time.Duration(s.putNanos.Load()).Seconds()))
	tracing.End(s.upload, err)
}
