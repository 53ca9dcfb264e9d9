// Package metrics holds Strata's Prometheus metrics: every strata_* metric
// family of docs/metrics.md, registered on one registry per process together
// with the Go runtime and process collectors and the Temporal SDK's own
// metrics (see SDKHandler), and the http handler that serves them on
// /metrics of `strata worker` and `strata agent`.
package metrics

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// registry is the process's one registry.
var registry = prometheus.NewRegistry()

// Label names.
const (
	LabelInstance = "instance"
	LabelType     = "type"
	LabelResult   = "result"
	LabelLock     = "lock"
	LabelPhase    = "phase"
	LabelKind     = "kind"
	LabelBackend  = "backend"
	LabelOp       = "op"
	LabelLimit    = "limit"
)

// Label values.
const (
	ResultSuccess = "success"
	ResultFailure = "failure"
	LockCommit    = "commit"
	LockDDL       = "ddl"
)

// Storage operations (the op label of the strata_storage_* counters).
const (
	OpGet    = "get"
	OpPut    = "put"
	OpList   = "list"
	OpDelete = "delete"
	OpStat   = "stat"
)

// BackupDurationBuckets are the buckets (seconds) of
// strata_backup_duration_seconds: a second to a day.
var BackupDurationBuckets = []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800, 86400}

var (
	// Worker: from the catalog.
	backupLastSuccess = gaugeVec("strata_backup_last_success_timestamp_seconds",
		"End time (Unix seconds) of the newest complete backup of the instance and type, from the catalog.",
		LabelInstance, LabelType)
	backupLastDuration = gaugeVec("strata_backup_last_duration_seconds",
		"Duration of the newest complete backup of the instance and type, from the catalog.",
		LabelInstance, LabelType)

	// Agent: each backup it ran.
	backupDuration = histogramVec("strata_backup_duration_seconds",
		"Duration of each backup this agent completed.", BackupDurationBuckets,
		LabelInstance, LabelType)
	backupRawBytes = counterVec("strata_backup_raw_bytes_total",
		"Bytes of the backup tool's stream of the backups this agent completed.",
		LabelInstance, LabelType)
	backupStoredBytes = counterVec("strata_backup_stored_bytes_total",
		"Bytes stored in the repository (compressed, encrypted) by the backups this agent completed.",
		LabelInstance, LabelType)
	backupThroughput = gaugeVec("strata_backup_throughput_bytes_per_second",
		"Raw bytes per second of the last backup this agent completed.",
		LabelInstance, LabelType)
	backupLock = gaugeVec("strata_backup_lock_seconds",
		"How long the last backup this agent completed blocked commits (lock=commit) or DDL (lock=ddl).",
		LabelInstance, LabelLock)
	backupsTotal = counterVec("strata_backups_total",
		"Backups this agent finished, by result (success/failure).",
		LabelInstance, LabelType, LabelResult)

	// Agent: the binlog archiver.
	archiveLag = gaugeVec("strata_archive_lag_seconds",
		"Commit to durable in the repository of the newest archived binlog event.",
		LabelInstance)
	archiveRunning = gaugeVec("strata_archive_running",
		"1 while the binlog archiver of the instance runs on this agent, 0 after it stopped.",
		LabelInstance)
	archiveWrites = counterVec("strata_archive_writes_total",
		"Object writes of the binlog archiver (GCS class A).", LabelInstance)
	archiveListPages = counterVec("strata_archive_list_pages_total",
		"Listing requests (pages of 1,000 keys) of the binlog archiver (GCS class A).", LabelInstance)
	archiveReads = counterVec("strata_archive_reads_total",
		"Reads and stats of the binlog archiver (GCS class B).", LabelInstance)
	archiveDeletes = counterVec("strata_archive_deletes_total",
		"Deletes of the binlog archiver.", LabelInstance)
	archiveWritesPerHour = gaugeVec("strata_archive_writes_per_hour",
		"Object writes per hour of the current archiver run.", LabelInstance)

	// Worker: the point-in-time window, from the catalog.
	pitrStart = gaugeVec("strata_pitr_window_start_timestamp_seconds",
		"Start (Unix seconds) of the instance's point-in-time window: the end of the oldest complete full backup the archive continues.",
		LabelInstance)
	pitrEnd = gaugeVec("strata_pitr_window_end_timestamp_seconds",
		"End (Unix seconds) of the instance's point-in-time window: the newest durable archived event.",
		LabelInstance)
	pitrGaps = gaugeVec("strata_pitr_window_gaps",
		"Gaps of the binlog archive inside the point-in-time window (0 = unbroken).",
		LabelInstance)

	// Worker: restore drills.
	drillLastResult = gaugeVec("strata_drill_last_result",
		"Result of the instance's last restore drill: 1 passed, 0 failed.", LabelInstance)
	drillLastTimestamp = gaugeVec("strata_drill_last_timestamp_seconds",
		"End time (Unix seconds) of the instance's last restore drill.", LabelInstance)
	drillRTO = gaugeVec("strata_drill_rto_seconds",
		"Recovery time of the instance's last drill: drill start to verified serving.", LabelInstance)
	drillRPO = gaugeVec("strata_drill_rpo_seconds",
		"Recovery point of the instance's last drill: target time minus the time of the last event restored.", LabelInstance)
	drillPhase = gaugeVec("strata_drill_phase_seconds",
		"Duration of each phase of the instance's last drill.", LabelInstance, LabelPhase)
	drillsTotal = counterVec("strata_drills_total",
		"Restore drills finished, by result (passed/failed).", LabelInstance, LabelResult)

	// Worker: the policy's schedules.
	scheduleInterval = gaugeVec("strata_schedule_interval_seconds",
		"The policy's interval between two runs of the kind (full/incremental/verify/prune/drill) for the instance.",
		LabelInstance, LabelKind)

	// Worker and agent: the repository.
	storageRequests = counterVec("strata_storage_requests_total",
		"Requests to the repository storage, by backend and operation.", LabelBackend, LabelOp)
	storageErrors = counterVec("strata_storage_errors_total",
		"Failed requests to the repository storage (a missing object is not a failure).", LabelBackend, LabelOp)
	storageRetries = counterVec("strata_storage_retries_total",
		"Requests to the repository storage retried after a transient failure.", LabelBackend, LabelOp)

	// Worker: the fleet-wide limits.
	fleetQueueDepth = gaugeVec("strata_fleet_queue_depth",
		"Requests waiting for a permit of the fleet-wide limit.", LabelLimit)
	fleetPermitsInUse = gaugeVec("strata_fleet_permits_in_use",
		"Permits of the fleet-wide limit granted and not yet released.", LabelLimit)
)

func init() {
	registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
}

func gaugeVec(name, help string, labels ...string) *prometheus.GaugeVec {
	v := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, labels)
	registry.MustRegister(v)
	return v
}

func counterVec(name, help string, labels ...string) *prometheus.CounterVec {
	v := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	registry.MustRegister(v)
	return v
}

func histogramVec(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
	v := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
	registry.MustRegister(v)
	markHistogram(name)
	return v
}

// histograms names the registered histogram families, whose series are
// <name>_bucket, <name>_sum and <name>_count.
var histograms sync.Map

func markHistogram(name string) { histograms.Store(name, true) }

// Registry returns the process's registry, to gather from in tests and
// tools.
func Registry() *prometheus.Registry { return registry }

// Handler serves the registry in the Prometheus exposition format.
func Handler() http.Handler {
	return promhttp.HandlerFor(registry, promhttp.HandlerOpts{Registry: registry})
}

// Names returns, sorted, the name of every metric family registered on the
// process's registry: every strata_* family, the Go and process collectors'
// families, and the temporal_* families the SDK has created so far. It is
// read from the registry's descriptors, so a family is listed whether or not
// it has a sample yet.
func Names() []string {
	ch := make(chan *prometheus.Desc)
	go func() {
		registry.Describe(ch)
		close(ch)
	}()
	seen := map[string]bool{}
	for d := range ch {
		if n := descName(d); n != "" {
			seen[n] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// descName reads the fully-qualified name from a descriptor's String form,
// `Desc{fqName: "name", ...}`, the only place client_golang exposes it.
func descName(d *prometheus.Desc) string {
	s, ok := strings.CutPrefix(d.String(), `Desc{fqName: `)
	if !ok {
		return ""
	}
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return ""
	}
	n, err := strconv.Unquote(q)
	if err != nil {
		return ""
	}
	return n
}

// HasSeries reports whether a series name of a PromQL expression belongs to
// a registered family: the family's own name, or for a histogram the
// _bucket, _sum and _count series.
func HasSeries(name string) bool {
	names := Names()
	has := func(n string) bool {
		i := sort.SearchStrings(names, n)
		return i < len(names) && names[i] == n
	}
	if has(name) {
		return true
	}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suf); ok && has(base) {
			if _, hist := histograms.Load(base); hist {
				return true
			}
		}
	}
	return false
}
