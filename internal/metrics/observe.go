package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/strata-backup/strata/internal/binlog"
	"github.com/strata-backup/strata/internal/drill"
)

// Backup is what an agent observed of one backup it ran.
type Backup struct {
	Instance string
	Type     string // full, incremental or differential
	Duration time.Duration
	// RawBytes is the size of the tool's stream; StoredBytes what was
	// stored in the repository.
	RawBytes, StoredBytes int64
	// CommitsBlocked and DDLBlocked are how long the backup blocked commits
	// and DDL.
	CommitsBlocked, DDLBlocked time.Duration
}

// ObserveBackup records a backup the agent completed: its duration,
// bytes, throughput, lock times and a success in strata_backups_total.
func ObserveBackup(b Backup) {
	backupDuration.WithLabelValues(b.Instance, b.Type).Observe(b.Duration.Seconds())
	if b.RawBytes > 0 {
		backupRawBytes.WithLabelValues(b.Instance, b.Type).Add(float64(b.RawBytes))
	}
	if b.StoredBytes > 0 {
		backupStoredBytes.WithLabelValues(b.Instance, b.Type).Add(float64(b.StoredBytes))
	}
	tp := 0.0
	if s := b.Duration.Seconds(); s > 0 {
		tp = float64(b.RawBytes) / s
	}
	backupThroughput.WithLabelValues(b.Instance, b.Type).Set(tp)
	backupLock.WithLabelValues(b.Instance, LockCommit).Set(b.CommitsBlocked.Seconds())
	backupLock.WithLabelValues(b.Instance, LockDDL).Set(b.DDLBlocked.Seconds())
	backupsTotal.WithLabelValues(b.Instance, b.Type, ResultSuccess).Inc()
}

// ObserveBackupFailure counts a backup the agent ran that failed.
func ObserveBackupFailure(instance, typ string) {
	backupsTotal.WithLabelValues(instance, typ, ResultFailure).Inc()
}

// archiveSeen is the last binlog.Status counted per instance and run, so
// that the cumulative counts of a status become counter increments.
var archiveSeen = newArchiveCounts()

// ArchiveLag is the commit to durable lag a status shows: that of the
// newest archived event (DurableAt - LastEventTime), or, while received
// events wait to be written, at least how long the oldest of them has
// waited. An idle archiver keeps the lag of its last event. ok is false
// when the status has no archived event yet.
func ArchiveLag(st binlog.Status) (lag time.Duration, ok bool) {
	if !st.LastEventTime.IsZero() && !st.DurableAt.IsZero() {
		lag, ok = max(st.DurableAt.Sub(st.LastEventTime), 0), true
	}
	if st.Pending > 0 && !st.PendingSince.IsZero() && !st.UpdatedAt.IsZero() {
		lag, ok = max(lag, st.UpdatedAt.Sub(st.PendingSince)), true
	}
	return lag, ok
}

// ObserveArchive records the status of an instance's archiver run (the
// status its heartbeat carries). run names the archiver run (its workflow
// run and activity attempt): the status's counts are cumulative over a
// run, and a new run starts them at zero again.
func ObserveArchive(instance, run string, st binlog.Status) {
	if lag, ok := ArchiveLag(st); ok {
		archiveLag.WithLabelValues(instance).Set(lag.Seconds())
	}
	archiveWritesPerHour.WithLabelValues(instance).Set(st.WritesPerHour)
	d := archiveSeen.delta(instance, run, [4]int{st.Writes, st.ListPages, st.Reads, st.Deletes})
	add := func(c interface{ Add(float64) }, n int) {
		if n > 0 {
			c.Add(float64(n))
		}
	}
	add(archiveWrites.WithLabelValues(instance), d[0])
	add(archiveListPages.WithLabelValues(instance), d[1])
	add(archiveReads.WithLabelValues(instance), d[2])
	add(archiveDeletes.WithLabelValues(instance), d[3])
}

// archiversRunning counts the archivers of each instance running in this
// process (two overlap briefly when one hands over to the next).
var archiversRunning = struct {
	sync.Mutex
	n map[string]int
}{n: map[string]int{}}

// ArchiveStarted records that an archiver of the instance started in this
// process: strata_archive_running is 1 until every started one has called
// the returned stop.
func ArchiveStarted(instance string) (stop func()) {
	archiversRunning.Lock()
	archiversRunning.n[instance]++
	archiveRunning.WithLabelValues(instance).Set(1)
	archiversRunning.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			archiversRunning.Lock()
			defer archiversRunning.Unlock()
			archiversRunning.n[instance]--
			if archiversRunning.n[instance] <= 0 {
				delete(archiversRunning.n, instance)
				archiveRunning.WithLabelValues(instance).Set(0)
			}
		})
	}
}

// SetLastBackup sets the newest complete backup of an instance and type.
func SetLastBackup(instance, typ string, end time.Time, duration time.Duration) {
	backupLastSuccess.WithLabelValues(instance, typ).Set(unix(end))
	backupLastDuration.WithLabelValues(instance, typ).Set(duration.Seconds())
}

// SetPITRWindow sets an instance's point-in-time window and the gaps of the
// archive inside it.
func SetPITRWindow(instance string, start, end time.Time, gaps int) {
	pitrStart.WithLabelValues(instance).Set(unix(start))
	pitrEnd.WithLabelValues(instance).Set(unix(end))
	pitrGaps.WithLabelValues(instance).Set(float64(gaps))
}

// ClearPITRWindow removes an instance's window (it has none).
func ClearPITRWindow(instance string) {
	pitrStart.DeleteLabelValues(instance)
	pitrEnd.DeleteLabelValues(instance)
	pitrGaps.DeleteLabelValues(instance)
}

// SetScheduleInterval sets the policy's interval between two runs of a
// kind for an instance; a zero interval (no such schedule) removes it.
func SetScheduleInterval(instance, kind string, every time.Duration) {
	if every <= 0 {
		scheduleInterval.DeleteLabelValues(instance, kind)
		return
	}
	scheduleInterval.WithLabelValues(instance, kind).Set(every.Seconds())
}

// SetFleetLimit sets a fleet-wide limit's waiting requests and granted
// permits.
func SetFleetLimit(limit string, queued, inUse int) {
	fleetQueueDepth.WithLabelValues(limit).Set(float64(queued))
	fleetPermitsInUse.WithLabelValues(limit).Set(float64(inUse))
}

// ObserveDrill records a finished drill: it sets the instance's last-drill
// gauges from the report and counts it in strata_drills_total. A report
// older than the one already shown does not replace it in the gauges.
func ObserveDrill(r *drill.Report) {
	if r == nil || r.Instance == "" {
		return
	}
	if setDrill(r, true) {
		drillsTotal.WithLabelValues(r.Instance, r.Result).Inc()
	}
}

// SetLastDrill sets the last-drill gauges from a report read back from the
// repository (at a worker's start and on each refresh), without counting it.
func SetLastDrill(r *drill.Report) {
	if r == nil || r.Instance == "" {
		return
	}
	setDrill(r, false)
}

// setDrill sets the gauges from r unless a newer drill of the instance is
// shown, and reports whether r was not counted before.
func setDrill(r *drill.Report, count bool) bool {
	fresh, newest := drillSeen.see(r.Instance, r.DrillID, r.Finished, count)
	if !newest {
		return fresh
	}
	res := 0.0
	if r.Passed() {
		res = 1
	}
	drillLastResult.WithLabelValues(r.Instance).Set(res)
	drillLastTimestamp.WithLabelValues(r.Instance).Set(unix(r.Finished))
	drillRTO.WithLabelValues(r.Instance).Set(r.RTOSeconds)
	drillRPO.WithLabelValues(r.Instance).Set(r.RPOSeconds)
	// The phases of the previous drill go: a failed drill may not have
	// reached every phase.
	drillPhase.DeletePartialMatch(map[string]string{LabelInstance: r.Instance})
	for _, p := range r.Phases {
		if p.Phase == "" {
			continue
		}
		drillPhase.WithLabelValues(r.Instance, p.Phase).Set(p.Seconds)
	}
	return fresh
}

func unix(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// ClearLastBackup removes the last-backup gauges of an instance and type
// (the catalog holds no such backup).
func ClearLastBackup(instance, typ string) {
	backupLastSuccess.DeleteLabelValues(instance, typ)
	backupLastDuration.DeleteLabelValues(instance, typ)
}

// ForgetInstance removes the catalog-derived gauges of an instance that
// left the config.
func ForgetInstance(instance string) {
	m := map[string]string{LabelInstance: instance}
	for _, v := range []*prometheus.GaugeVec{backupLastSuccess, backupLastDuration, pitrStart, pitrEnd, pitrGaps,
		drillLastResult, drillLastTimestamp, drillRTO, drillRPO, drillPhase, scheduleInterval} {
		v.DeletePartialMatch(m)
	}
	drillSeen.forget(instance)
}

// ClearFleetLimit removes a fleet-wide limit's gauges (no longer set).
func ClearFleetLimit(limit string) {
	fleetQueueDepth.DeleteLabelValues(limit)
	fleetPermitsInUse.DeleteLabelValues(limit)
}

// backupDone carries the news that a backup workflow completed in this
// process to the worker's refresh loop.
var backupDone = make(chan struct{}, 1)

// BackupCompleted tells the worker's refresh loop that a backup (or another
// change of the catalog) completed, so that it refreshes the
// catalog-derived gauges now. It never blocks.
func BackupCompleted() {
	select {
	case backupDone <- struct{}{}:
	default: // a refresh is already due
	}
}

// BackupCompletions receives after BackupCompleted.
func BackupCompletions() <-chan struct{} { return backupDone }

// CatalogChange is a change of an instance's catalog made by a workflow
// that completed in this process.
type CatalogChange struct {
	Instance string // "": not known
	Deleted  bool   // backups or archive may have been deleted (retention)
}

var (
	changesMu sync.Mutex
	changes   = map[string]bool{} // by instance: whether deleted
)

// CatalogChanged records a change of the catalog and tells the refresh loop
// (BackupCompleted). It never blocks.
func CatalogChanged(instance string, deleted bool) {
	changesMu.Lock()
	changes[instance] = changes[instance] || deleted
	changesMu.Unlock()
	BackupCompleted()
}

// TakeCatalogChanges returns and forgets the changes recorded since the
// last call, one per instance.
func TakeCatalogChanges() []CatalogChange {
	changesMu.Lock()
	defer changesMu.Unlock()
	out := make([]CatalogChange, 0, len(changes))
	for inst, deleted := range changes {
		out = append(out, CatalogChange{Instance: inst, Deleted: deleted})
	}
	clear(changes)
	return out
}
