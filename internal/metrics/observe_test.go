package metrics

import (
	"testing"
	"time"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/drill"
)

func TestObserveBackup(t *testing.T) {
	ObserveBackup(Backup{Instance: "ob", Type: "full", Duration: 4 * time.Second, RawBytes: 400, StoredBytes: 100,
		CommitsBlocked: 20 * time.Millisecond, DDLBlocked: 3 * time.Second})
	ObserveBackup(Backup{Instance: "ob", Type: "full", Duration: 2 * time.Second, RawBytes: 100, StoredBytes: 50})
	ObserveBackupFailure("ob", "full")
	if v := value(backupRawBytes.WithLabelValues("ob", "full")); v != 500 {
		t.Errorf("raw bytes = %v", v)
	}
	if v := value(backupStoredBytes.WithLabelValues("ob", "full")); v != 150 {
		t.Errorf("stored bytes = %v", v)
	}
	if v := value(backupThroughput.WithLabelValues("ob", "full")); v != 50 {
		t.Errorf("throughput of the last backup = %v, want 50", v)
	}
	if v := value(backupLock.WithLabelValues("ob", LockDDL)); v != 0 {
		t.Errorf("ddl lock of the last backup = %v, want 0", v)
	}
	if v := value(backupsTotal.WithLabelValues("ob", "full", ResultSuccess)); v != 2 {
		t.Errorf("successes = %v", v)
	}
	if v := value(backupsTotal.WithLabelValues("ob", "full", ResultFailure)); v != 1 {
		t.Errorf("failures = %v", v)
	}
	var m = gatherMap(t, registry)["strata_backup_duration_seconds"]
	h := find(t, m, map[string]string{"instance": "ob", "type": "full"}).GetHistogram()
	if h.GetSampleCount() != 2 || h.GetSampleSum() != 6 {
		t.Errorf("duration histogram: count %d sum %v", h.GetSampleCount(), h.GetSampleSum())
	}
	// A zero duration divides by nothing.
	ObserveBackup(Backup{Instance: "ob", Type: "incremental", RawBytes: 10})
	if v := value(backupThroughput.WithLabelValues("ob", "incremental")); v != 0 {
		t.Errorf("throughput of a zero-length backup = %v", v)
	}
}

func TestObserveArchiveCountsEachRunOnce(t *testing.T) {
	obs := func(run string, w, l, r, d int) {
		ObserveArchive("oa", run, binlog.Status{Writes: w, ListPages: l, Reads: r, Deletes: d})
	}
	obs("r1", 2, 1, 1, 0)
	obs("r1", 5, 1, 3, 1) // cumulative within a run
	obs("r1", 5, 1, 3, 1) // a repeated heartbeat adds nothing
	obs("r1", 4, 1, 3, 1) // never backwards
	obs("r2", 1, 1, 0, 0) // a new run starts at zero
	obs("r2", 6, 1, 0, 0)
	for name, want := range map[string]float64{"writes": 11, "list": 2, "reads": 3, "deletes": 1} {
		var got float64
		switch name {
		case "writes":
			got = value(archiveWrites.WithLabelValues("oa"))
		case "list":
			got = value(archiveListPages.WithLabelValues("oa"))
		case "reads":
			got = value(archiveReads.WithLabelValues("oa"))
		case "deletes":
			got = value(archiveDeletes.WithLabelValues("oa"))
		}
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
}

func TestArchiveLag(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name string
		st   binlog.Status
		want time.Duration
		ok   bool
	}{
		{"nothing archived", binlog.Status{UpdatedAt: t0}, 0, false},
		{"newest event", binlog.Status{LastEventTime: t0, DurableAt: t0.Add(2 * time.Second), UpdatedAt: t0.Add(time.Hour)},
			2 * time.Second, true},
		{"clock skew", binlog.Status{LastEventTime: t0.Add(time.Second), DurableAt: t0}, 0, true},
		{"waiting events", binlog.Status{LastEventTime: t0, DurableAt: t0.Add(time.Second), Pending: 3,
			PendingSince: t0.Add(10 * time.Second), UpdatedAt: t0.Add(90 * time.Second)}, 80 * time.Second, true},
		{"first events waiting", binlog.Status{Pending: 1, PendingSince: t0, UpdatedAt: t0.Add(5 * time.Second)},
			5 * time.Second, true},
	} {
		got, ok := ArchiveLag(c.st)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: lag %v %v, want %v %v", c.name, got, ok, c.want, c.ok)
		}
	}
	ObserveArchive("lag", "r", binlog.Status{LastEventTime: t0, DurableAt: t0.Add(1500 * time.Millisecond)})
	if v := value(archiveLag.WithLabelValues("lag")); v != 1.5 {
		t.Errorf("strata_archive_lag_seconds = %v", v)
	}
}

func TestArchiveRunning(t *testing.T) {
	stop1 := ArchiveStarted("ar")
	stop2 := ArchiveStarted("ar") // a hand-over overlaps
	stop1()
	stop1() // twice is once
	if v := value(archiveRunning.WithLabelValues("ar")); v != 1 {
		t.Errorf("running = %v while one archiver runs", v)
	}
	stop2()
	if v := value(archiveRunning.WithLabelValues("ar")); v != 0 {
		t.Errorf("running = %v after both stopped", v)
	}
}

func TestObserveDrill(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rep := func(id, result string, finished time.Time, phases ...drill.PhaseTime) *drill.Report {
		return &drill.Report{FormatVersion: 1, DrillID: id, Instance: "od", Result: result, Finished: finished,
			RTOSeconds: 42, RPOSeconds: 3, Phases: phases}
	}
	d1 := rep("d1", drill.ResultPassed, t0, drill.PhaseTime{Phase: drill.PhaseRestore, Seconds: 30},
		drill.PhaseTime{Phase: drill.PhaseVerify, Seconds: 5})
	ObserveDrill(d1)
	ObserveDrill(d1) // the same drill again: counted once
	if v := value(drillsTotal.WithLabelValues("od", drill.ResultPassed)); v != 1 {
		t.Errorf("drills passed = %v, want 1", v)
	}
	if v := value(drillPhase.WithLabelValues("od", drill.PhaseVerify)); v != 5 {
		t.Errorf("verify phase = %v", v)
	}
	// A newer failed drill that stopped after the restore.
	ObserveDrill(rep("d2", drill.ResultFailed, t0.Add(time.Hour), drill.PhaseTime{Phase: drill.PhaseRestore, Seconds: 7}))
	if v := value(drillLastResult.WithLabelValues("od")); v != 0 {
		t.Errorf("last result = %v after a failed drill", v)
	}
	if v := value(drillLastTimestamp.WithLabelValues("od")); v != float64(t0.Add(time.Hour).Unix()) {
		t.Errorf("last timestamp = %v", v)
	}
	f := gatherMap(t, registry)["strata_drill_phase_seconds"]
	for _, m := range f.GetMetric() {
		if l := labelsOf(m); l["instance"] == "od" && l["phase"] == drill.PhaseVerify {
			t.Errorf("the previous drill's verify phase is still shown")
		}
	}
	// An older drill read back later is counted but does not replace the
	// newest in the gauges.
	SetLastDrill(rep("d0", drill.ResultPassed, t0.Add(-time.Hour)))
	ObserveDrill(rep("d0", drill.ResultPassed, t0.Add(-time.Hour)))
	if v := value(drillLastResult.WithLabelValues("od")); v != 0 {
		t.Errorf("an older drill replaced the newest: last result = %v", v)
	}
	if v := value(drillsTotal.WithLabelValues("od", drill.ResultPassed)); v != 2 {
		t.Errorf("drills passed = %v, want 2 (a report read back first is still counted when observed)", v)
	}
	ObserveDrill(nil)
	ObserveDrill(&drill.Report{})
}
