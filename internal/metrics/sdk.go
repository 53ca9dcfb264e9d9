package metrics

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/client"
)

// SDKTimerBuckets are the buckets (seconds) of the histograms the Temporal
// SDK's timers are recorded in: a millisecond to ten minutes (long polls
// last about a minute).
var SDKTimerBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600}

// SDKHandler returns the Temporal SDK's metrics handler over the process's
// registry: counters as counters, gauges as gauges and timers as histograms
// in seconds, under the names the SDK gives them (temporal_*). Pass it as
// client.Options.MetricsHandler. Every call returns a handler over the same
// families, so that several clients of one process share them.
func SDKHandler() client.MetricsHandler {
	sdkOnce.Do(func() { sdkRoot = newSDKHandler(registry) })
	return sdkRoot
}

var (
	sdkOnce sync.Once
	sdkRoot *sdkHandler
)

// sdkMetrics holds the families created for the SDK on one registry. A
// family's label names are fixed by its first use; a later use with other
// tag keys fills the missing labels with "" and drops the extra tags, so a
// family never has inconsistent label names.
type sdkMetrics struct {
	reg prometheus.Registerer

	mu       sync.Mutex
	families map[string]*sdkFamily
}

type sdkKind int

const (
	sdkCounter sdkKind = iota
	sdkGauge
	sdkTimer
)

type sdkFamily struct {
	kind   sdkKind
	labels []string
	// ok is false when the family could not be registered (its name is
	// taken by another collector or invalid): its uses are dropped.
	ok        bool
	counter   *prometheus.CounterVec
	gauge     *prometheus.GaugeVec
	histogram *prometheus.HistogramVec
}

type sdkHandler struct {
	m    *sdkMetrics
	tags map[string]string
}

func newSDKHandler(reg prometheus.Registerer) *sdkHandler {
	return &sdkHandler{m: &sdkMetrics{reg: reg, families: map[string]*sdkFamily{}}, tags: map[string]string{}}
}

// WithTags returns a handler whose metrics carry the tags, over h's.
func (h *sdkHandler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := make(map[string]string, len(h.tags)+len(tags))
	for k, v := range h.tags {
		merged[k] = v
	}
	for k, v := range tags {
		merged[sanitizeLabel(k)] = v
	}
	return &sdkHandler{m: h.m, tags: merged}
}

// Counter returns the counter of the name with h's tags.
func (h *sdkHandler) Counter(name string) client.MetricsCounter {
	f, vals := h.m.family(name, sdkCounter, h.tags)
	if f == nil {
		return nopCounter{}
	}
	c := f.counter.WithLabelValues(vals...)
	return sdkCounterFunc(func(d int64) {
		if d > 0 {
			c.Add(float64(d))
		}
	})
}

// Gauge returns the gauge of the name with h's tags.
func (h *sdkHandler) Gauge(name string) client.MetricsGauge {
	f, vals := h.m.family(name, sdkGauge, h.tags)
	if f == nil {
		return nopGauge{}
	}
	g := f.gauge.WithLabelValues(vals...)
	return sdkGaugeFunc(g.Set)
}

// Timer returns the timer of the name with h's tags, a histogram in seconds.
func (h *sdkHandler) Timer(name string) client.MetricsTimer {
	f, vals := h.m.family(name, sdkTimer, h.tags)
	if f == nil {
		return nopTimer{}
	}
	o := f.histogram.WithLabelValues(vals...)
	return sdkTimerFunc(func(d time.Duration) { o.Observe(d.Seconds()) })
}

// family returns the family of the name, registering it at its first use,
// and the label values for tags; nil when the name cannot be served (taken
// by another kind of metric, or not a valid name).
func (m *sdkMetrics) family(name string, kind sdkKind, tags map[string]string) (*sdkFamily, []string) {
	name = sanitizeName(name)
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.families[name]
	if !ok {
		f = m.register(name, kind, tags)
		m.families[name] = f
	}
	if !f.ok || f.kind != kind {
		return nil, nil
	}
	vals := make([]string, len(f.labels))
	for i, l := range f.labels {
		vals[i] = tags[l]
	}
	return f, vals
}

func (m *sdkMetrics) register(name string, kind sdkKind, tags map[string]string) *sdkFamily {
	labels := make([]string, 0, len(tags))
	for k := range tags {
		labels = append(labels, k)
	}
	sort.Strings(labels)
	f := &sdkFamily{kind: kind, labels: labels}
	help := "Temporal SDK metric " + name + "."
	var c prometheus.Collector
	switch kind {
	case sdkCounter:
		f.counter = prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		c = f.counter
	case sdkGauge:
		f.gauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
		c = f.gauge
	case sdkTimer:
		f.histogram = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help + " In seconds.",
			Buckets: SDKTimerBuckets}, labels)
		c = f.histogram
	}
	f.ok = safeRegister(m.reg, c)
	if f.ok && kind == sdkTimer {
		markHistogram(name)
	}
	return f
}

// safeRegister registers c, reporting false where the registry refuses it
// (a name already registered, an invalid name: the vector constructors
// panic on those).
func safeRegister(reg prometheus.Registerer, c prometheus.Collector) (ok bool) {
	if c == nil {
		return false
	}
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return reg.Register(c) == nil
}

// sanitizeName makes a metric name one of the legacy character set
// ([a-zA-Z_:][a-zA-Z0-9_:]*): client_golang accepts any UTF-8 name, which it
// then exposes quoted, and Prometheus before 3.0 fails the whole scrape on
// a quoted name.
func sanitizeName(n string) string {
	if n == "" {
		return "_"
	}
	var b strings.Builder
	for i, r := range n {
		switch {
		case r == '_', r == ':', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', i > 0 && r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// sanitizeLabel makes a tag key a label name of the legacy character set
// ([a-zA-Z_][a-zA-Z0-9_]*, not starting with __).
func sanitizeLabel(k string) string {
	if k == "" {
		return "_"
	}
	var b strings.Builder
	for i, r := range k {
		switch {
		case r == '_', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', i > 0 && r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	if strings.HasPrefix(s, "__") {
		s = "x" + s // names starting with __ are reserved
	}
	return s
}

type sdkCounterFunc func(int64)

func (f sdkCounterFunc) Inc(d int64) { f(d) }

type sdkGaugeFunc func(float64)

func (f sdkGaugeFunc) Update(v float64) { f(v) }

type sdkTimerFunc func(time.Duration)

func (f sdkTimerFunc) Record(d time.Duration) { f(d) }

type nopCounter struct{}

func (nopCounter) Inc(int64) {}

type nopGauge struct{}

func (nopGauge) Update(float64) {}

type nopTimer struct{}

func (nopTimer) Record(time.Duration) {}
