package config

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestTracingIsOffByDefault(t *testing.T) {
	c, err := Parse([]byte(base))
	require.NoError(t, err)
	assert.Equal(t, "none", c.Tracing.Exporter)
	assert.False(t, c.Tracing.Enabled())
}

func TestTracingDefaults(t *testing.T) {
	c, err := Parse([]byte(base + "tracing: {exporter: otlp}\n"))
	require.NoError(t, err)
	assert.True(t, c.Tracing.Enabled())
	assert.Equal(t, "grpc", c.Tracing.Protocol)
	assert.Equal(t, "127.0.0.1:4317", c.Tracing.Endpoint)
	assert.Equal(t, 1.0, c.Tracing.Ratio())

	c, err = Parse([]byte(base + "tracing: {exporter: otlp, protocol: http, sample_ratio: 0.25, insecure: true, service_name: s}\n"))
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:4318", c.Tracing.Endpoint)
	assert.Equal(t, 0.25, c.Tracing.Ratio())
	assert.True(t, c.Tracing.Insecure)
	assert.Equal(t, "s", c.Tracing.ServiceName)

	_, err = Parse([]byte(base + "tracing: {exporter: otlp, protocol: http, endpoint: \"https://collector.example:4318\"}\n"))
	require.NoError(t, err)
}

func TestTracingValuesThatCannotWorkAreRefused(t *testing.T) {
	for name, tc := range map[string]struct{ yaml, err string }{
		"exporter":          {"tracing: {exporter: jaeger}", `tracing.exporter: "jaeger": use none (no traces) or otlp`},
		"protocol":          {"tracing: {exporter: otlp, protocol: udp}", `tracing.protocol: "udp": use grpc or http`},
		"grpc url":          {"tracing: {exporter: otlp, endpoint: \"http://c:4317\"}", `tracing.endpoint: "http://c:4317": with protocol grpc, give the collector as host:port`},
		"grpc no port":      {"tracing: {exporter: otlp, endpoint: collector}", `tracing.endpoint: "collector": with protocol grpc`},
		"http bad scheme":   {"tracing: {exporter: otlp, protocol: http, endpoint: \"ftp://c:1\"}", `tracing.endpoint: "ftp://c:1": with protocol http`},
		"http no port":      {"tracing: {exporter: otlp, protocol: http, endpoint: collector}", `tracing.endpoint: "collector": with protocol http`},
		"ratio zero":        {"tracing: {exporter: otlp, sample_ratio: 0}", "tracing.sample_ratio: 0 is out of range"},
		"ratio above one":   {"tracing: {exporter: otlp, sample_ratio: 1.5}", "tracing.sample_ratio: 1.5 is out of range"},
		"ratio negative":    {"tracing: {exporter: otlp, sample_ratio: -0.1}", "tracing.sample_ratio: -0.1 is out of range"},
		"exporter mistyped": {"tracing: {exporter: OTLP}", `tracing.exporter: "OTLP"`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse([]byte(base + tc.yaml + "\n"))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.err)
		})
	}
	// Settings of a disabled exporter are not checked: none turns traces off.
	_, err := Parse([]byte(base + "tracing: {exporter: none, protocol: udp}\n"))
	require.NoError(t, err)
}
