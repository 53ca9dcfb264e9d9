// Package workflows holds Strata's deterministic workflow code: no I/O, no
// wall clock, no goroutines. Every workflow takes one JSON request struct, so
// it can be started from the strata CLI, the temporal CLI or the Web UI.
package workflows

import (
	"time"

	"github.com/strata-backup/strata/activities"
	"github.com/strata-backup/strata/internal/binlog"
)

// Workflow type names, as registered and as used by `temporal workflow start --type`.
const (
	BackupWorkflowName  = "BackupWorkflow"
	RestoreWorkflowName = "RestoreWorkflow"
)

// BackupRequest asks for one backup of one instance.
type BackupRequest struct {
	Instance string `json:"instance"`
	// BackupID defaults to the workflow's start time, e.g. 20261124T084500Z.
	BackupID string `json:"backup_id,omitempty"`
	// Type is full (default), incremental (pages changed since the newest
	// backup) or differential (pages changed since the newest full).
	Type string `json:"type,omitempty"`
	// AutoFull takes a full when an incremental or differential has no base.
	AutoFull bool `json:"auto_full,omitempty"`
}

// BackupResult is the summary of the committed backup.
type BackupResult struct {
	activities.BackupSummary
	Host string `json:"host"`
	// ChainLength counts the backups a restore of this one applies.
	ChainLength int `json:"chain_length"`
	// Note explains why the type differs from the one requested.
	Note string `json:"note,omitempty"`
	// ThroughputMBps is raw MB (10^6 bytes) of backup stream per second.
	ThroughputMBps float64 `json:"throughput_mbps"`
	// Preflight is the pre-flight check that let the backup go (nil in
	// runs started before the check existed).
	Preflight *activities.PreflightResult `json:"preflight,omitempty"`
}

// RestoreRequest asks to restore one backup into a new datadir.
type RestoreRequest struct {
	Instance  string `json:"instance"`
	BackupID  string `json:"backup_id"`
	TargetDir string `json:"target_dir"`
	// TargetHost is the agent host that receives the restore; default the
	// instance's own host.
	TargetHost string `json:"target_host,omitempty"`
	// Start starts a server on the restored datadir on Port and checks it answers.
	Start bool `json:"start,omitempty"`
	Port  int  `json:"port,omitempty"`
	// Target, when set, makes this a point-in-time restore: the newest
	// backup before the target (or BackupID) is restored and archived
	// binlogs are replayed up to the target.
	Target binlog.Target `json:"target,omitempty"`
	// AllowUnencrypted accepts, for an instance with encryption enabled,
	// old data stored unencrypted or without authentication (backups whose
	// manifest carries no MAC, archived binlog segments without a MAC);
	// without it such data is refused.
	AllowUnencrypted bool `json:"allow_unencrypted,omitempty"`
	// AllowFailedDrill restores a backup whose last drill failed (or one
	// whose chain holds such a backup); without it that is refused, and a
	// point-in-time restore skips such backups.
	AllowFailedDrill bool `json:"allow_failed_drill,omitempty"`

	// Logical backups only. Include and Exclude select tables by
	// "schema.table" patterns (* and ? within a name), Rename renames
	// tables as they load ("shop.orders=shop.orders_restored").
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
	Rename  []string `json:"rename,omitempty"`
	// Into loads the logical backup into the running server of this
	// instance (on its agent) instead of a new datadir: TargetDir, Start and
	// Target are then not given. Replace drops existing tables of the same
	// name first (without it an existing one fails the load before it
	// changes anything), Users loads the accounts too (skipping existing
	// ones), Binlog writes the load to the server's binary log.
	Into    string `json:"into,omitempty"`
	Replace bool   `json:"replace,omitempty"`
	Users   bool   `json:"users,omitempty"`
	Binlog  bool   `json:"binlog,omitempty"`
}

// RestoreResult reports the restore.
type RestoreResult struct {
	Instance   string                        `json:"instance"`
	BackupID   string                        `json:"backup_id"`
	TargetHost string                        `json:"target_host"`
	Backup     activities.BackupSummary      `json:"backup"`
	Chain      []string                      `json:"chain"`
	Stats      activities.RestoreStats       `json:"stats"`
	Server     *activities.StartServerResult `json:"server,omitempty"`
	Replay     *activities.ReplayResult      `json:"replay,omitempty"`
	// Load reports a logical backup loaded into a running server (Into).
	Load *activities.LoadResult `json:"load,omitempty"`
	// Notes say what the point-in-time plan skipped (backups whose drill
	// failed).
	Notes    []string  `json:"notes,omitempty"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	// Seconds is the whole restore's wall time, including the start of the server.
	Seconds float64 `json:"seconds"`
}
