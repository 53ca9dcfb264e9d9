// Package tracing sets up OpenTelemetry traces for Strata: the tracer
// provider of `strata worker` and `strata agent` (an OTLP exporter, off by
// default), the Temporal SDK's tracing interceptor (client, workflows,
// activities), and the spans of the data path's phases, which are children
// of the activity's span.
package tracing

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	temporalotel "go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"

	"github.com/strata-backup/strata/internal/config"
)

// Name is the instrumentation scope of Strata's own spans.
const Name = "github.com/strata-backup/strata"

// Span names of the data path's phases.
const (
	SpanStream     = "stream"       // the backup tool's output, read
	SpanCompress   = "compress"     // chunks compressed (and encrypted)
	SpanUpload     = "upload"       // chunks stored in the repository
	SpanDownload   = "download"     // a chain member's chunks fetched, checked and decompressed
	SpanExtract    = "extract"      // the stream unpacked into the staging dir
	SpanPrepare    = "prepare"      // the tool's prepare of one member
	SpanMoveBack   = "move_back"    // the prepared datadir moved into the target
	SpanReplay     = "replay"       // binlogs rebuilt from the archive and applied
	AttrInstance   = "instance"     // attribute: the instance id
	AttrBackupID   = "backup_id"    // attribute: the backup id
	AttrBytes      = "bytes"        // attribute: bytes the phase handled
	AttrBusySecond = "busy_seconds" // attribute: summed time of the phase's parallel workers
)

// Setup installs the global tracer provider of a `strata worker` or
// `strata agent` from the config's tracing block, and the W3C trace-context
// propagator. With exporter none it installs nothing. The returned function
// flushes the spans still buffered and stops the exporter: call it on exit.
func Setup(ctx context.Context, t config.Tracing, service string) (func(context.Context) error, error) {
	if !t.Enabled() {
		return func(context.Context) error { return nil }, nil
	}
	var (
		exp sdktrace.SpanExporter
		err error
	)
	switch t.Protocol {
	case "http":
		opts := []otlptracehttp.Option{}
		if strings.Contains(t.Endpoint, "://") {
			// A URL is used as is, path included: without one, the
			// collector's standard path.
			u := t.Endpoint
			if p, err := url.Parse(u); err == nil && (p.Path == "" || p.Path == "/") {
				u = strings.TrimSuffix(u, "/") + "/v1/traces"
			}
			opts = append(opts, otlptracehttp.WithEndpointURL(u))
		} else {
			opts = append(opts, otlptracehttp.WithEndpoint(t.Endpoint))
		}
		if t.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		}
		exp, err = otlptracehttp.New(ctx, opts...)
	default:
		opts := []otlptracegrpc.Option{otlptracegrpc.WithEndpoint(t.Endpoint)}
		if t.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		}
		exp, err = otlptracegrpc.New(ctx, opts...)
	}
	if err != nil {
		return nil, fmt.Errorf("tracing: OTLP exporter to %s (tracing.endpoint, protocol %s): %w", t.Endpoint, t.Protocol, err)
	}
	if t.ServiceName != "" {
		service = t.ServiceName
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attribute.String("service.name", service)))
	if err != nil {
		return nil, fmt.Errorf("tracing: resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp),
		sdktrace.WithResource(res),
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.TraceIDRatioBased(t.Ratio()))),
	)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	return tp.Shutdown, nil
}

// Interceptor returns the Temporal SDK's tracing interceptor with tracer
// (nil: the global tracer provider's): on a client's options it traces the
// client's calls, and the workflows and activities of the workers built on
// that client.
func Interceptor(tracer trace.Tracer) (interceptor.Interceptor, error) {
	return temporalotel.NewTracingInterceptor(temporalotel.TracerOptions{Tracer: tracer})
}

type attrsKey struct{}

// WithAttributes returns ctx carrying attributes that every phase span
// started from it (Start) gets, e.g. the instance and the backup id.
func WithAttributes(ctx context.Context, kv ...attribute.KeyValue) context.Context {
	prev, _ := ctx.Value(attrsKey{}).([]attribute.KeyValue)
	return context.WithValue(ctx, attrsKey{}, append(append([]attribute.KeyValue(nil), prev...), kv...))
}

// IDs returns ctx carrying the instance and backup id as span attributes.
func IDs(ctx context.Context, instance, backupID string) context.Context {
	return WithAttributes(ctx, attribute.String(AttrInstance, instance), attribute.String(AttrBackupID, backupID))
}

// Start starts a span of a data-path phase as a child of the span in ctx
// (the activity's), with ctx's attributes (WithAttributes) and attrs. It
// costs next to nothing when no tracer provider is installed.
func Start(ctx context.Context, name string, attrs ...attribute.KeyValue) (context.Context, trace.Span) {
	base, _ := ctx.Value(attrsKey{}).([]attribute.KeyValue)
	return otel.GetTracerProvider().Tracer(Name).Start(ctx, name,
		trace.WithAttributes(append(append([]attribute.KeyValue(nil), base...), attrs...)...))
}

// End records err on span (if not nil), then ends it.
func End(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
