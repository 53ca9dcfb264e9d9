package config

import (
	"net"
	"net/url"
	"strings"
)

// Tracing configures OpenTelemetry traces of `strata worker` and `strata
// agent`. Off by default (exporter none).
type Tracing struct {
	// Exporter is none (default: no traces) or otlp.
	Exporter string `yaml:"exporter"`
	// Endpoint is the OTLP collector: host:port for grpc (default
	// 127.0.0.1:4317), host:port or an http(s) URL for http (default
	// 127.0.0.1:4318; a URL without a path gets /v1/traces).
	Endpoint string `yaml:"endpoint"`
	// Protocol is grpc (default) or http.
	Protocol string `yaml:"protocol"`
	// Insecure sends without TLS (a collector on the same host or network).
	Insecure bool `yaml:"insecure"`
	// SampleRatio is the share of traces recorded, 0 < ratio <= 1 (default
	// 1: every trace). A trace started elsewhere keeps its parent's choice.
	SampleRatio *float64 `yaml:"sample_ratio"`
	// ServiceName is the resource's service.name (default strata-worker or
	// strata-agent).
	ServiceName string `yaml:"service_name"`
}

// Enabled reports whether traces are exported.
func (t Tracing) Enabled() bool { return t.Exporter == "otlp" }

// Ratio returns the sample ratio (1 when not set).
func (t Tracing) Ratio() float64 {
	if t.SampleRatio == nil {
		return 1
	}
	return *t.SampleRatio
}

func (c *Config) applyTracingDefaults() {
	t := &c.Tracing
	if t.Exporter == "" {
		t.Exporter = "none"
	}
	if !t.Enabled() {
		return
	}
	if t.Protocol == "" {
		t.Protocol = "grpc"
	}
	if t.Endpoint == "" {
		switch t.Protocol {
		case "grpc":
			t.Endpoint = "127.0.0.1:4317"
		case "http":
			t.Endpoint = "127.0.0.1:4318"
		}
	}
}

func (c *Config) validateTracing(bad func(key, format string, a ...any)) {
	t := &c.Tracing
	switch t.Exporter {
	case "none":
		return
	case "otlp":
	default:
		bad("tracing.exporter", "%q: use none (no traces) or otlp", t.Exporter)
		return
	}
	switch t.Protocol {
	case "grpc":
		if _, _, err := net.SplitHostPort(t.Endpoint); err != nil || strings.Contains(t.Endpoint, "/") {
			bad("tracing.endpoint", "%q: with protocol grpc, give the collector as host:port, e.g. otel-collector:4317", t.Endpoint)
		}
	case "http":
		if strings.Contains(t.Endpoint, "://") {
			u, err := url.Parse(t.Endpoint)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				bad("tracing.endpoint", "%q: with protocol http, give host:port or an http(s)://host:port URL", t.Endpoint)
			}
		} else if _, _, err := net.SplitHostPort(t.Endpoint); err != nil {
			bad("tracing.endpoint", "%q: with protocol http, give host:port or an http(s)://host:port URL, e.g. otel-collector:4318", t.Endpoint)
		}
	default:
		bad("tracing.protocol", "%q: use grpc or http", t.Protocol)
	}
	if r := t.SampleRatio; r != nil && (*r <= 0 || *r > 1) {
		bad("tracing.sample_ratio", "%v is out of range: give a share of traces above 0 and at most 1 (1 = every trace; exporter none turns traces off)", *r)
	}
}
