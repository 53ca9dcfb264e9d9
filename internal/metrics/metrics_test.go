package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/drill"
)

// contract is the metric contract of docs/metrics.md: name, type, labels.
var contract = []struct {
	name   string
	typ    dto.MetricType
	labels []string
}{
	{"strata_backup_last_success_timestamp_seconds", dto.MetricType_GAUGE, []string{"instance", "type"}},
	{"strata_backup_last_duration_seconds", dto.MetricType_GAUGE, []string{"instance", "type"}},
	{"strata_backup_duration_seconds", dto.MetricType_HISTOGRAM, []string{"instance", "type"}},
	{"strata_backup_raw_bytes_total", dto.MetricType_COUNTER, []string{"instance", "type"}},
	{"strata_backup_stored_bytes_total", dto.MetricType_COUNTER, []string{"instance", "type"}},
	{"strata_backup_throughput_bytes_per_second", dto.MetricType_GAUGE, []string{"instance", "type"}},
	{"strata_backup_lock_seconds", dto.MetricType_GAUGE, []string{"instance", "lock"}},
	{"strata_backups_total", dto.MetricType_COUNTER, []string{"instance", "result", "type"}},
	{"strata_archive_lag_seconds", dto.MetricType_GAUGE, []string{"instance"}},
	{"strata_archive_running", dto.MetricType_GAUGE, []string{"instance"}},
	{"strata_archive_writes_total", dto.MetricType_COUNTER, []string{"instance"}},
	{"strata_archive_list_pages_total", dto.MetricType_COUNTER, []string{"instance"}},
	{"strata_archive_reads_total", dto.MetricType_COUNTER, []string{"instance"}},
	{"strata_archive_deletes_total", dto.MetricType_COUNTER, []string{"instance"}},
	{"strata_archive_writes_per_hour", dto.MetricType_GAUGE, []string{"instance"}},
	{"strata_pitr_window_start_timestamp_seconds", dto.MetricType_GAUGE, []string{"instance"}},
	{"strata_pitr_window_end_timestamp_seconds", dto.MetricType_GAUGE, []string{"instance"}},
	{"strata_pitr_window_gaps", dto.MetricType_GAUGE, []string{"instance"}},
	{"strata_drill_last_result", dto.MetricType_GAUGE, []string{"instance"}},
	{"strata_drill_last_timestamp_seconds", dto.MetricType_GAUGE, []string{"instance"}},
	{"strata_drill_rto_seconds", dto.MetricType_GAUGE, []string{"instance"}},
	{"strata_drill_rpo_seconds", dto.MetricType_GAUGE, []string{"instance"}},
	{"strata_drill_phase_seconds", dto.MetricType_GAUGE, []string{"instance", "phase"}},
	{"strata_drills_total", dto.MetricType_COUNTER, []string{"instance", "result"}},
	{"strata_schedule_interval_seconds", dto.MetricType_GAUGE, []string{"instance", "kind"}},
	{"strata_storage_requests_total", dto.MetricType_COUNTER, []string{"backend", "op"}},
	{"strata_storage_errors_total", dto.MetricType_COUNTER, []string{"backend", "op"}},
	{"strata_storage_retries_total", dto.MetricType_COUNTER, []string{"backend", "op"}},
	{"strata_fleet_queue_depth", dto.MetricType_GAUGE, []string{"limit"}},
	{"strata_fleet_permits_in_use", dto.MetricType_GAUGE, []string{"limit"}},
}

// touchAll gives every strata_* family a sample.
func touchAll() {
	ObserveBackup(Backup{Instance: "t1", Type: "full", Duration: 2 * time.Second, RawBytes: 10, StoredBytes: 5,
		CommitsBlocked: time.Millisecond, DDLBlocked: time.Second})
	ObserveBackupFailure("t1", "incremental")
	ArchiveStarted("t1")
	ObserveArchive("t1", "run1", binlog.Status{LastEventTime: time.Unix(100, 0), DurableAt: time.Unix(101, 0),
		Writes: 3, ListPages: 2, Reads: 1, Deletes: 1, WritesPerHour: 7})
	SetLastBackup("t1", "full", time.Unix(1000, 0), time.Minute)
	SetPITRWindow("t1", time.Unix(10, 0), time.Unix(20, 0), 0)
	ObserveDrill(&drill.Report{FormatVersion: 1, DrillID: "d-touch", Instance: "t1", Result: drill.ResultPassed,
		Finished: time.Unix(5, 0), Phases: []drill.PhaseTime{{Phase: drill.PhaseRestore, Seconds: 1}}})
	SetScheduleInterval("t1", "full", time.Hour)
	storageRequests.WithLabelValues("memory", OpGet).Inc()
	storageErrors.WithLabelValues("memory", OpGet).Inc()
	storageRetries.WithLabelValues("memory", OpGet).Inc()
	SetFleetLimit("backups", 1, 2)
}

func TestNamesHoldTheContract(t *testing.T) {
	touchAll()
	names := Names()
	for _, c := range contract {
		if !slices.Contains(names, c.name) {
			t.Errorf("Names() lacks %s", c.name)
		}
	}
	var strata []string
	for _, n := range names {
		if strings.HasPrefix(n, "strata_") {
			strata = append(strata, n)
		}
	}
	if len(strata) != len(contract) {
		t.Errorf("Names() has %d strata_* families, the contract %d: %v", len(strata), len(contract), strata)
	}
	for _, want := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if !slices.Contains(names, want) {
			t.Errorf("Names() lacks %s of the Go/process collectors", want)
		}
	}
	if !slices.IsSorted(names) {
		t.Errorf("Names() not sorted")
	}

	fams, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]*dto.MetricFamily{}
	for _, f := range fams {
		byName[f.GetName()] = f
		if !slices.Contains(names, f.GetName()) {
			t.Errorf("gathered family %s is not in Names()", f.GetName())
		}
	}
	for _, c := range contract {
		f := byName[c.name]
		if f == nil {
			t.Errorf("%s has no sample after touching every metric", c.name)
			continue
		}
		if f.GetType() != c.typ {
			t.Errorf("%s is a %v, the contract says %v", c.name, f.GetType(), c.typ)
		}
		for _, m := range f.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetName())
			}
			slices.Sort(got)
			want := slices.Sorted(slices.Values(c.labels))
			if !slices.Equal(got, want) {
				t.Errorf("%s has labels %v, the contract says %v", c.name, got, want)
			}
		}
	}
}

func TestHasSeries(t *testing.T) {
	for _, n := range []string{"strata_backup_duration_seconds_bucket", "strata_backup_duration_seconds_count",
		"strata_backups_total", "go_goroutines"} {
		if !HasSeries(n) {
			t.Errorf("HasSeries(%q) = false", n)
		}
	}
	for _, n := range []string{"strata_backup_duration", "strata_nope_total", "strata_backups_total_bucket"} {
		if HasSeries(n) {
			t.Errorf("HasSeries(%q) = true", n)
		}
	}
}

func TestHandlerServesTheRegistry(t *testing.T) {
	touchAll()
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	body := string(b)
	for _, want := range []string{
		`strata_backup_last_success_timestamp_seconds{instance="t1",type="full"} 1000`,
		`strata_backup_duration_seconds_count{instance="t1",type="full"}`,
		`strata_fleet_queue_depth{limit="backups"} 1`,
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func TestServer(t *testing.T) {
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(b), "go_goroutines") {
		t.Fatalf("GET %s: %d %.200s", s.URL(), resp.StatusCode, b)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(s.URL()); err == nil {
		t.Fatalf("the server still answers after Close")
	}
	if _, err := Listen("127.0.0.1:notaport"); err == nil {
		t.Fatalf("Listen accepted a bad address")
	}
}
