package catalog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/config"
	"github.com/strata-backup/strata/internal/drill"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/metrics"
	"github.com/strata-backup/strata/internal/repo"
	"github.com/strata-backup/strata/internal/storage"
	"github.com/strata-backup/strata/internal/storage/memory"
)

var t0 = time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC) // a Monday

const policy = `
storage:
  type: local
  local:
    root: ./repo
instances:
  - id: cat1
    host: h1
    connect:
      address: 127.0.0.1:3306
      user: root
    datadir: /var/lib/mysql
    schedule:
      full: "0 2 * * 1-5"
      incremental_every: 1h
      verify: "@daily"
      prune: "off"
      drill:
        hour: "3"
        day_of_week: "0"
  - id: cat2
    host: h1
    connect:
      address: 127.0.0.1:3307
      user: root
    datadir: /var/lib/mysql2
`

func mustConfig(t *testing.T, y string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(y))
	require.NoError(t, err)
	return c
}

func newManifest(instance, id, typ string, start time.Time, took time.Duration, file string, pos uint64) *manifest.Manifest {
	return &manifest.Manifest{
		FormatVersion: manifest.FormatVersion, BackupID: id, Instance: instance, Type: typ,
		StartTime: start, EndTime: start.Add(took), ConsistentAt: start.Add(took), Duration: manifest.Duration(took),
		BinlogFile: file, BinlogPos: pos, Compression: "zstd", RawSize: 1, StoredSize: 1,
		Chunks: []manifest.Chunk{{Index: 0, Key: "chunks/00000000.zst", RawSize: 1, StoredSize: 1,
			SHA256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"}},
	}
}

func plant(t *testing.T, b storage.Backend, key string, data []byte) {
	t.Helper()
	require.NoError(t, b.Put(context.Background(), key, bytes.NewReader(data), int64(len(data))))
}

func plantDrill(t *testing.T, b storage.Backend, key string, r *drill.Report) {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, r.Encode(&buf))
	plant(t, b, key, buf.Bytes())
}

func report(instance, id, result string, finished time.Time, phases ...drill.PhaseTime) *drill.Report {
	return &drill.Report{FormatVersion: drill.FormatVersion, DrillID: id, Instance: instance, Result: result,
		Started: finished.Add(-time.Minute), Finished: finished, RTOSeconds: 55, RPOSeconds: 2, Phases: phases}
}

// gauge returns the value of the series of name with the labels, and
// whether it exists.
func gauge(t *testing.T, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	fams, err := metrics.Registry().Gather()
	require.NoError(t, err)
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if len(got) != len(labels) {
				continue
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			return valueOf(m), true
		}
	}
	return 0, false
}

func valueOf(m *dto.Metric) float64 {
	if m.Gauge != nil {
		return m.GetGauge().GetValue()
	}
	return m.GetCounter().GetValue()
}

func requireGauge(t *testing.T, want float64, name string, labels map[string]string) {
	t.Helper()
	v, ok := gauge(t, name, labels)
	require.True(t, ok, "%s%v missing", name, labels)
	assert.Equal(t, want, v, "%s%v", name, labels)
}

func unix(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// failing fails every List and Get after fail is set.
// It counts the Gets of manifests and drill reports.
type failing struct {
	storage.Backend
	fail    atomic.Bool
	catalog atomic.Int64
}

var errDown = errors.New("storage down")

func (f *failing) List(ctx context.Context, p string) ([]storage.ObjectInfo, error) {
	if f.fail.Load() {
		return nil, errDown
	}
	return f.Backend.List(ctx, p)
}

func (f *failing) Get(ctx context.Context, k string) (io.ReadCloser, error) {
	if f.fail.Load() {
		return nil, errDown
	}
	if strings.Contains(k, "/backups/") || strings.Contains(k, "/drills/") {
		f.catalog.Add(1)
	}
	return f.Backend.Get(ctx, k)
}

func TestRefresh(t *testing.T) {
	ctx := context.Background()
	mem := memory.New()
	b := &failing{Backend: mem}
	r := repo.New(b)
	cfg := mustConfig(t, policy)
	now := t0.Add(4 * 24 * time.Hour)
	ref := &Refresher{Repo: r, Config: func() *config.Config { return cfg }, Now: func() time.Time { return now }}

	// Backups of cat1: two fulls, an incremental.
	f1 := newManifest("cat1", "f1", manifest.TypeFull, t0, time.Minute, "binlog.000001", 100)
	f2 := newManifest("cat1", "f2", manifest.TypeFull, t0.Add(24*time.Hour), 90*time.Second, "binlog.000002", 50)
	i1 := newManifest("cat1", "i1", manifest.TypeIncremental, t0.Add(26*time.Hour), 10*time.Second, "", 0)
	i1.ParentID = "f2"
	for _, m := range []*manifest.Manifest{f1, f2, i1} {
		require.NoError(t, r.WriteManifest(ctx, m))
	}
	// Hostile and corrupt manifests: one ending in 2100, garbage, and one
	// that describes another instance's backup.
	future := newManifest("cat1", "future", manifest.TypeFull, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), time.Minute, "", 0)
	require.NoError(t, r.WriteManifest(ctx, future))
	plant(t, mem, repo.ManifestKey("cat1", "garbage"), []byte("{not json"))
	other := newManifest("cat2", "stolen", manifest.TypeFull, t0.Add(3*24*time.Hour), time.Minute, "", 0)
	data, err := manifest.Encode(other)
	require.NoError(t, err)
	plant(t, mem, repo.ManifestKey("cat1", "stolen"), data)
	plant(t, mem, repo.BackupPrefix("cat1", "partial")+"chunks/00000000.zst", []byte("x")) // no manifest

	// The archive: a run covering f1, a gap, a run covering f2.
	st := &binlog.Store{B: mem, Instance: "cat1"}
	seg := func(seq uint64, file string, start, end uint32, last time.Time) {
		ev := bytes.Repeat([]byte("e"), int(end-start))
		require.NoError(t, st.WriteSegment(ctx, &binlog.Segment{Seq: seq, File: file, Start: start, End: end,
			FirstTime: last.Add(-time.Second), LastTime: last, Events: 1}, ev))
	}
	seg(1, "binlog.000001", 4, 200, t0.Add(time.Hour))
	seg(2, "binlog.000001", 200, 400, t0.Add(2*time.Hour))
	require.NoError(t, st.WriteGap(ctx, &binlog.Gap{BeforeSeq: 3, LastFile: "binlog.000001", LastPos: 400,
		LastTime: t0.Add(2 * time.Hour), ResumeFile: "binlog.000002", ResumePos: 4, Reason: "test", DetectedAt: t0.Add(3 * time.Hour)}))
	seg(3, "binlog.000002", 4, 100, t0.Add(25*time.Hour))
	seg(4, "binlog.000002", 100, 300, t0.Add(27*time.Hour))

	// Drill reports of cat1, the newest failed; hostile ones besides.
	plantDrill(t, mem, drill.ReportKey("cat1", "d1"), report("cat1", "d1", drill.ResultPassed, t0.Add(2*24*time.Hour),
		drill.PhaseTime{Phase: drill.PhaseVerify, Seconds: 9}))
	plantDrill(t, mem, drill.ReportKey("cat1", "d2"), report("cat1", "d2", drill.ResultFailed, t0.Add(3*24*time.Hour),
		drill.PhaseTime{Phase: drill.PhaseRestore, Seconds: 40}, drill.PhaseTime{Phase: "evil{phase}", Seconds: 1}))
	plantDrill(t, mem, drill.ReportKey("cat1", "foreign"), report("cat2", "foreign", drill.ResultPassed, t0.Add(3*24*time.Hour+time.Hour)))
	plantDrill(t, mem, drill.ReportKey("cat1", "later"), report("cat1", "later", drill.ResultPassed, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)))
	plant(t, mem, drill.ReportKey("cat1", "garbage"), []byte(`{"format_version":1,"instance":"cat1","drill_id":"g","result":"maybe"}`))
	plant(t, mem, drill.ReportKey("cat1", "huge"), bytes.Repeat([]byte(" "), drill.MaxReportSize+10))
	plant(t, mem, drill.DrillsPrefix("cat1")+"notes.txt", []byte("not a report"))

	require.NoError(t, ref.Refresh(ctx))

	l := func(kv ...string) map[string]string {
		m := map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	requireGauge(t, unix(f2.EndTime), "strata_backup_last_success_timestamp_seconds", l("instance", "cat1", "type", "full"))
	requireGauge(t, 90, "strata_backup_last_duration_seconds", l("instance", "cat1", "type", "full"))
	requireGauge(t, unix(i1.EndTime), "strata_backup_last_success_timestamp_seconds", l("instance", "cat1", "type", "incremental"))
	_, ok := gauge(t, "strata_backup_last_success_timestamp_seconds", l("instance", "cat1", "type", "differential"))
	assert.False(t, ok, "no differential backup, no series")
	_, ok = gauge(t, "strata_backup_last_success_timestamp_seconds", l("instance", "cat2", "type", "full"))
	assert.False(t, ok, "a manifest planted under cat1 must not count for cat2")

	requireGauge(t, unix(f1.ConsistentAt), "strata_pitr_window_start_timestamp_seconds", l("instance", "cat1"))
	requireGauge(t, unix(t0.Add(27*time.Hour)), "strata_pitr_window_end_timestamp_seconds", l("instance", "cat1"))
	requireGauge(t, 1, "strata_pitr_window_gaps", l("instance", "cat1"))
	_, ok = gauge(t, "strata_pitr_window_gaps", l("instance", "cat2"))
	assert.False(t, ok, "cat2 has no window")

	requireGauge(t, 0, "strata_drill_last_result", l("instance", "cat1"))
	requireGauge(t, unix(t0.Add(3*24*time.Hour)), "strata_drill_last_timestamp_seconds", l("instance", "cat1"))
	requireGauge(t, 55, "strata_drill_rto_seconds", l("instance", "cat1"))
	requireGauge(t, 2, "strata_drill_rpo_seconds", l("instance", "cat1"))
	requireGauge(t, 40, "strata_drill_phase_seconds", l("instance", "cat1", "phase", drill.PhaseRestore))
	_, ok = gauge(t, "strata_drill_phase_seconds", l("instance", "cat1", "phase", "evil{phase}"))
	assert.False(t, ok, "a phase name outside the drill's phases is not exported")
	_, ok = gauge(t, "strata_drill_phase_seconds", l("instance", "cat1", "phase", drill.PhaseVerify))
	assert.False(t, ok, "the older drill's phases are not shown")
	_, ok = gauge(t, "strata_drills_total", l("instance", "cat1", "result", drill.ResultFailed))
	assert.False(t, ok, "reading reports back counts no drill")

	// The schedules: weekdays at 02:00 (longest: Friday to Monday),
	// hourly, daily, off, and a weekly calendar.
	requireGauge(t, (72 * time.Hour).Seconds(), "strata_schedule_interval_seconds", l("instance", "cat1", "kind", "full"))
	requireGauge(t, 3600, "strata_schedule_interval_seconds", l("instance", "cat1", "kind", "incremental"))
	requireGauge(t, 86400, "strata_schedule_interval_seconds", l("instance", "cat1", "kind", "verify"))
	requireGauge(t, 7*86400, "strata_schedule_interval_seconds", l("instance", "cat1", "kind", "drill"))
	_, ok = gauge(t, "strata_schedule_interval_seconds", l("instance", "cat1", "kind", "prune"))
	assert.False(t, ok, "prune is off")

	// Each manifest and report is read once.
	before := b.catalog.Load()
	require.NoError(t, ref.Refresh(ctx))
	assert.Equal(t, before, b.catalog.Load(), "a second refresh read manifests or reports it had read already")

	// The storage fails: the gauges keep their values.
	b.fail.Store(true)
	require.ErrorIs(t, ref.Refresh(ctx), errDown)
	requireGauge(t, unix(f2.EndTime), "strata_backup_last_success_timestamp_seconds", l("instance", "cat1", "type", "full"))
	requireGauge(t, 0, "strata_drill_last_result", l("instance", "cat1"))
	b.fail.Store(false)

	// Retention removes f2 and i1; a newer drill passes.
	require.NoError(t, mem.Delete(ctx, repo.ManifestKey("cat1", "f2")))
	require.NoError(t, mem.Delete(ctx, repo.ManifestKey("cat1", "i1")))
	plantDrill(t, mem, drill.ReportKey("cat1", "d3"), report("cat1", "d3", drill.ResultPassed, t0.Add(3*24*time.Hour+2*time.Hour)))
	require.NoError(t, ref.Refresh(ctx))
	requireGauge(t, unix(f1.EndTime), "strata_backup_last_success_timestamp_seconds", l("instance", "cat1", "type", "full"))
	_, ok = gauge(t, "strata_backup_last_success_timestamp_seconds", l("instance", "cat1", "type", "incremental"))
	assert.False(t, ok, "no incremental left")
	requireGauge(t, 1, "strata_drill_last_result", l("instance", "cat1"))

	// cat1 leaves the config: its gauges go.
	cfg2 := mustConfig(t, strings.Replace(policy, "id: cat1", "id: cat3", 1))
	ref.Config = func() *config.Config { return cfg2 }
	require.NoError(t, ref.Refresh(ctx))
	for _, name := range []string{"strata_backup_last_success_timestamp_seconds", "strata_pitr_window_end_timestamp_seconds",
		"strata_drill_last_result", "strata_schedule_interval_seconds"} {
		fams, err := metrics.Registry().Gather()
		require.NoError(t, err)
		for _, f := range fams {
			if f.GetName() != name {
				continue
			}
			for _, m := range f.GetMetric() {
				for _, lp := range m.GetLabel() {
					assert.False(t, lp.GetName() == "instance" && lp.GetValue() == "cat1", "%s of cat1 still shown", name)
				}
			}
		}
	}
}
