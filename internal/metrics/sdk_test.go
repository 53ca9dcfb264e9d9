package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func gatherMap(t *testing.T, reg *prometheus.Registry) map[string]*dto.MetricFamily {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	m := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		m[f.GetName()] = f
	}
	return m
}

func labelsOf(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// find returns the metric of the family whose labels equal want.
func find(t *testing.T, f *dto.MetricFamily, want map[string]string) *dto.Metric {
	t.Helper()
	if f == nil {
		t.Fatalf("family missing")
	}
next:
	for _, m := range f.GetMetric() {
		got := labelsOf(m)
		if len(got) != len(want) {
			continue
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		return m
	}
	t.Fatalf("%s has no metric with labels %v", f.GetName(), want)
	return nil
}

func TestSDKHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	root := newSDKHandler(reg)
	h := root.WithTags(map[string]string{"namespace": "default", "task_queue": "q"})

	h.Counter("temporal_request").Inc(2)
	h.Counter("temporal_request").Inc(3)
	h.Counter("temporal_request").Inc(-1) // a counter never goes down
	h.WithTags(map[string]string{"task_queue": "other"}).Counter("temporal_request").Inc(1)
	h.Gauge("temporal_worker_task_slots_available").Update(4)
	h.Gauge("temporal_worker_task_slots_available").Update(7)
	h.Timer("temporal_request_latency").Record(1500 * time.Millisecond)
	h.Timer("temporal_request_latency").Record(500 * time.Millisecond)

	// Other tag keys for an existing family: missing ones empty, extra dropped.
	root.WithTags(map[string]string{"operation": "Poll"}).Counter("temporal_request").Inc(10)
	// A name used as another kind: dropped, no panic. A name outside the
	// legacy character set: sanitized.
	h.Gauge("temporal_request").Update(99)
	h.Counter("temporal bad name").Inc(1)
	// A tag key that is not a label name.
	root.WithTags(map[string]string{"bad-key": "v", "__x": "y"}).Counter("temporal_tagged").Inc(1)

	fams := gatherMap(t, reg)
	req := fams["temporal_request"]
	if req.GetType() != dto.MetricType_COUNTER {
		t.Fatalf("temporal_request is %v", req.GetType())
	}
	if v := find(t, req, map[string]string{"namespace": "default", "task_queue": "q"}).GetCounter().GetValue(); v != 5 {
		t.Errorf("temporal_request{q} = %v, want 5", v)
	}
	if v := find(t, req, map[string]string{"namespace": "default", "task_queue": "other"}).GetCounter().GetValue(); v != 1 {
		t.Errorf("temporal_request{other} = %v, want 1", v)
	}
	// Empty label values are absent labels in the exposition.
	if v := find(t, req, map[string]string{"namespace": "", "task_queue": ""}).GetCounter().GetValue(); v != 10 {
		t.Errorf("temporal_request{} = %v, want 10", v)
	}
	g := fams["temporal_worker_task_slots_available"]
	if g.GetType() != dto.MetricType_GAUGE || g.GetMetric()[0].GetGauge().GetValue() != 7 {
		t.Errorf("gauge = %v", g)
	}
	lat := fams["temporal_request_latency"]
	if lat.GetType() != dto.MetricType_HISTOGRAM {
		t.Fatalf("temporal_request_latency is %v", lat.GetType())
	}
	hist := lat.GetMetric()[0].GetHistogram()
	if hist.GetSampleCount() != 2 || hist.GetSampleSum() != 2.0 {
		t.Errorf("histogram count %d sum %v, want 2 and 2.0 seconds", hist.GetSampleCount(), hist.GetSampleSum())
	}
	for _, b := range hist.GetBucket() {
		if b.GetUpperBound() == 1 && b.GetCumulativeCount() != 1 {
			t.Errorf("bucket le=1 holds %d, want 1", b.GetCumulativeCount())
		}
	}
	if _, ok := fams["temporal bad name"]; ok {
		t.Errorf("a name outside the legacy character set was registered")
	}
	if f := fams["temporal_bad_name"]; f == nil || f.GetMetric()[0].GetCounter().GetValue() != 1 {
		t.Errorf("temporal bad name not served as temporal_bad_name: %v", f)
	}
	tagged := fams["temporal_tagged"]
	if tagged == nil {
		t.Fatalf("temporal_tagged missing")
	}
	if got := labelsOf(tagged.GetMetric()[0]); got["bad_key"] != "v" || got["x__x"] != "y" {
		t.Errorf("sanitized labels = %v", got)
	}
}

func TestSDKHandlerIsShared(t *testing.T) {
	a, b := SDKHandler(), SDKHandler()
	a.Counter("temporal_shared_test").Inc(1)
	b.Counter("temporal_shared_test").Inc(1)
	f := gatherMap(t, registry)["temporal_shared_test"]
	if f == nil || f.GetMetric()[0].GetCounter().GetValue() != 2 {
		t.Fatalf("two handlers of the process do not share the family: %v", f)
	}
	if !HasSeries("temporal_shared_test") {
		t.Errorf("Names() lacks the SDK's family")
	}
}
