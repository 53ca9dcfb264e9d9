// Package drill holds the restore drill's report: the record, written to the
// repository at <instance>/drills/<drill id>.json, of one drill that restored
// a backup (and, for a point-in-time drill, replayed the binlog archive to a
// target) onto a scratch server, verified it and measured the recovery it
// would give.
package drill

import (
	"encoding/json"
	"fmt"
	"io"
	"time"
)

// FormatVersion is the report format written by this version of Strata.
const FormatVersion = 1

// MaxReportSize bounds the size of a report read from the repository: a
// larger object is not a report Strata wrote.
const MaxReportSize = 4 << 20

// Results of a drill.
const (
	ResultPassed = "passed"
	ResultFailed = "failed"
)

// Phase names, in the order a drill runs them.
const (
	PhaseRestore  = "restore"  // download, decrypt, decompress, extract, prepare, move back
	PhaseReplay   = "replay"   // binlog replay to the target (point-in-time drills)
	PhaseStart    = "start"    // the scratch server starts and answers
	PhaseVerify   = "verify"   // CHECK TABLE, row counts, checksums, GTID set
	PhaseTeardown = "teardown" // the scratch server stopped and its files removed
)

// DrillsPrefix returns the prefix of an instance's drill reports:
// "<instance>/drills/".
func DrillsPrefix(instance string) string { return instance + "/drills/" }

// ReportKey returns the key of one drill's report.
func ReportKey(instance, drillID string) string {
	return DrillsPrefix(instance) + drillID + ".json"
}

// PhaseTime is how long one phase of a drill took.
type PhaseTime struct {
	Phase   string  `json:"phase"`
	Seconds float64 `json:"seconds"`
}

// Report is the record of one drill.
type Report struct {
	FormatVersion int    `json:"format_version"`
	DrillID       string `json:"drill_id"`
	Instance      string `json:"instance"`
	// BackupID is the newest member of the chain the drill restored; Chain
	// lists the chain from its full.
	BackupID string   `json:"backup_id"`
	Chain    []string `json:"chain,omitempty"`
	// Target is the point-in-time target of a point-in-time drill (its
	// string form, as `strata restore --to-...` takes it); empty for a drill
	// of the backup alone.
	Target string `json:"target,omitempty"`
	// Host is the agent host the scratch server ran on.
	Host       string `json:"host"`
	WorkflowID string `json:"workflow_id"`
	RunID      string `json:"run_id"`

	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Result   string    `json:"result"` // ResultPassed or ResultFailed
	// Error says why a failed drill failed: the first failed phase and its
	// message (a corrupt chunk's key, a table whose checksum differs, ...).
	Error string `json:"error,omitempty"`
	// FailedPhase is the phase a failed drill failed in (a Phase* name;
	// empty when it failed before restoring, e.g. no agent or no backup).
	FailedPhase string `json:"failed_phase,omitempty"`
	// ErrorType is the type of the failure's application error
	// (CorruptBackup, VerificationFailed, AgentUnavailable, ...; empty for
	// a timeout or a cancel).
	ErrorType string `json:"error_type,omitempty"`
	// CorruptChunk is the key of the chunk that failed its checksum, when a
	// corrupt chunk failed the restore.
	CorruptChunk string `json:"corrupt_chunk,omitempty"`
	// KeyNotHeld says the restore failed because the drill agent holds
	// none of the keys that open the backup's data key: the agent's
	// configuration, which does not mark the backup.
	KeyNotHeld bool `json:"key_not_held,omitempty"`
	// Problems lists every verification finding (empty when passed).
	Problems []string `json:"problems,omitempty"`

	// RTOSeconds is drill start to verified serving; zero when the drill
	// failed before it served.
	RTOSeconds float64 `json:"rto_seconds"`
	// RPOSeconds is the target time minus the time of the last event
	// restored (exact with the heartbeat table); RPOExact says whether it
	// came from the heartbeat table.
	RPOSeconds float64     `json:"rpo_seconds"`
	RPOExact   bool        `json:"rpo_exact"`
	Phases     []PhaseTime `json:"phases"`

	// Verification details.
	TablesChecked  int    `json:"tables_checked"`
	TablesCompared int    `json:"tables_compared"`
	WantGTIDSet    string `json:"want_gtid_set,omitempty"`
	GotGTIDSet     string `json:"got_gtid_set,omitempty"`
	// Rows is the rows counted in the compared tables.
	Rows int64 `json:"rows,omitempty"`
	// TargetTime is the point the drill recovered to (the backup's
	// consistent time, or the point-in-time target's); LastEventTime is the
	// time of the last event restored (the heartbeat's, when RPOExact).
	TargetTime    time.Time `json:"target_time,omitempty"`
	LastEventTime time.Time `json:"last_event_time,omitempty"`
	// Datadir and Port are where the scratch server ran (removed at teardown).
	Datadir string `json:"datadir,omitempty"`
	Port    int    `json:"port,omitempty"`
	// TornDown says the scratch server was stopped and its files removed.
	TornDown bool `json:"torn_down"`
}

// Passed reports whether the drill passed.
func (r *Report) Passed() bool { return r.Result == ResultPassed }

// Encode writes the report as indented JSON.
func (r *Report) Encode(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// Decode reads a report, refusing one larger than MaxReportSize, of an
// unknown format version, or without an instance, id or result.
func Decode(rd io.Reader) (*Report, error) {
	b, err := io.ReadAll(io.LimitReader(rd, MaxReportSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxReportSize {
		return nil, fmt.Errorf("drill report larger than %d bytes: not a report Strata wrote", MaxReportSize)
	}
	var r Report
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("drill report: %w", err)
	}
	switch {
	case r.FormatVersion < 1 || r.FormatVersion > FormatVersion:
		return nil, fmt.Errorf("drill report format %d: this Strata reads format 1-%d", r.FormatVersion, FormatVersion)
	case r.Instance == "" || r.DrillID == "":
		return nil, fmt.Errorf("drill report without instance or drill id")
	case r.Result != ResultPassed && r.Result != ResultFailed:
		return nil, fmt.Errorf("drill report %s: result %q is neither %q nor %q", r.DrillID, r.Result, ResultPassed, ResultFailed)
	}
	return &r, nil
}
