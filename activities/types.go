package activities

import (
	"fmt"
	"time"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/manifest"
)

// Flavor is the backup's server flavor: ServerFlavor, or, in a summary
// recorded before it carried one, the legacy rule of its tool
// (manifest.LegacyFlavor).
func (s *BackupSummary) Flavor() (flavor.Name, error) {
	if s.ServerFlavor != "" {
		return flavor.ParseName(string(s.ServerFlavor))
	}
	if n, ok := manifest.LegacyFlavor(s.Tool); ok {
		return n, nil
	}
	return "", fmt.Errorf("backup %s records no server flavor and its tool %q does not tell one", s.BackupID, s.Tool)
}

// InstanceRequest names an instance.
type InstanceRequest struct {
	Instance string `json:"instance"`
}

// InstanceRoute tells a workflow where an instance's host activities run and
// with which timeouts. It carries no connection details or secrets.
type InstanceRoute struct {
	Instance          string        `json:"instance"`
	Host              string        `json:"host"`
	TaskQueue         string        `json:"task_queue"`
	ArchiveTaskQueue  string        `json:"archive_task_queue"`
	AgentStartTimeout time.Duration `json:"agent_start_timeout"`
	HeartbeatTimeout  time.Duration `json:"heartbeat_timeout"`
	BackupTimeout     time.Duration `json:"backup_timeout"`
	// PreflightTimeout bounds one attempt of the pre-flight check: its
	// budget (backup.preflight.budget) and a margin for the last check.
	PreflightTimeout time.Duration `json:"preflight_timeout,omitempty"`
	// Limits are the fleet-wide limits that apply to work on the instance
	// (empty when none is configured, and in routes recorded before them).
	Limits []Limit `json:"limits,omitempty"`
}

// BackupRef names one backup of one instance.
type BackupRef struct {
	Instance string `json:"instance"`
	BackupID string `json:"backup_id"`
	// AllowFailedDrill lets ResolveChain resolve a backup whose chain holds
	// a backup whose last drill failed; refused otherwise.
	AllowFailedDrill bool `json:"allow_failed_drill,omitempty"`
}

// BackupSummary is a manifest without its chunk list: small enough for
// workflow history.
type BackupSummary struct {
	Instance string `json:"instance"`
	BackupID string `json:"backup_id"`
	Type     string `json:"type"`
	ParentID string `json:"parent_id,omitempty"`
	Tool     string `json:"tool"`
	// ServerFlavor is the flavor the manifest records (manifest.Flavor;
	// empty in results recorded before it was carried here, and for a
	// manifest that tells none).
	ServerFlavor  flavor.Name `json:"server_flavor,omitempty"`
	ServerVersion string      `json:"server_version"`
	StartTime     time.Time   `json:"start_time"`
	EndTime       time.Time   `json:"end_time"`
	ConsistentAt  time.Time   `json:"consistent_at"`
	FromLSN       uint64      `json:"from_lsn"`
	ToLSN         uint64      `json:"to_lsn"`
	BinlogFile    string      `json:"binlog_file,omitempty"`
	BinlogPos     uint64      `json:"binlog_pos,omitempty"`
	GTIDSet       string      `json:"gtid_set,omitempty"`
	RawSize       int64       `json:"raw_size"`
	StoredSize    int64       `json:"stored_size"`
	Chunks        int         `json:"chunks"`
	Compression   string      `json:"compression"`
	// Encrypted is true when the chunks are encrypted at rest;
	// EncryptionKeyID names the key encryption key that wrapped the data
	// key at backup time.
	Encrypted       bool   `json:"encrypted,omitempty"`
	EncryptionKeyID string `json:"encryption_key_id,omitempty"`
	// UploadedBytes is what the completing attempt uploaded; ReusedBytes
	// what it found already stored by an interrupted earlier attempt of the
	// same backup. They add up to StoredSize.
	UploadedBytes int64 `json:"uploaded_bytes"`
	ReusedBytes   int64 `json:"reused_bytes"`
	// CommitsBlockedSeconds is how long commits were blocked for the consistent point.
	CommitsBlockedSeconds float64 `json:"commits_blocked_seconds"`
	// DDLBlockedSeconds is how long DDL was blocked.
	DDLBlockedSeconds float64 `json:"ddl_blocked_seconds"`
	DurationSeconds   float64 `json:"duration_seconds"`
	// FailedDrill is the id of the last drill of the backup, when it
	// failed (see drill.Failed); such a backup is never chosen silently.
	FailedDrill string `json:"failed_drill,omitempty"`
}

// BackupParams asks an agent for one backup. For an incremental or a
// differential, ParentID and FromLSN come from the plan.
type BackupParams struct {
	Instance string `json:"instance"`
	BackupID string `json:"backup_id"`
	Type     string `json:"type"`
	ParentID string `json:"parent_id,omitempty"`
	FromLSN  uint64 `json:"from_lsn,omitempty"`
}

// PlanRequest asks the catalog how to take the next backup of an instance.
type PlanRequest struct {
	Instance string `json:"instance"`
	Type     string `json:"type"`
	// AutoFull takes a full when there is no base for an incremental or a
	// differential, instead of failing.
	AutoFull bool `json:"auto_full,omitempty"`
}

// BackupPlan is what the catalog decided: the type to take and its base.
type BackupPlan struct {
	Type        string `json:"type"`
	ParentID    string `json:"parent_id,omitempty"`
	FromLSN     uint64 `json:"from_lsn,omitempty"`
	ChainLength int    `json:"chain_length"`
	// Note explains a change of type (no base, chain too long).
	Note string `json:"note,omitempty"`
}

// BackupProgress is heartbeated while a backup streams.
type BackupProgress struct {
	Phase       string `json:"phase"`
	Chunks      int    `json:"chunks"`
	RawBytes    int64  `json:"raw_bytes"`
	StoredBytes int64  `json:"stored_bytes"`
	// ReusedBytes are stored bytes found already stored by an earlier
	// attempt (included in StoredBytes).
	ReusedBytes int64 `json:"reused_bytes,omitempty"`
}

// RestoreParams asks an agent to restore a backup into a target datadir.
// Chain lists the backups to apply, from the full to BackupID.
type RestoreParams struct {
	Instance  string   `json:"instance"`
	BackupID  string   `json:"backup_id"`
	Chain     []string `json:"chain"`
	TargetDir string   `json:"target_dir"`
	// AllowUnencrypted accepts, for an instance with encryption enabled,
	// unencrypted backups and encrypted ones whose manifest carries no MAC
	// (old data); refused otherwise.
	AllowUnencrypted bool `json:"allow_unencrypted,omitempty"`
	// MaxAttempts is the activity's retry limit (0: unknown), so that the
	// last attempt removes its staging dir when it fails.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// Include, Exclude and Rename select and rename tables of a logical
	// backup ("schema.table" patterns; "a.b=c.d"); refused for a physical one.
	Include []string `json:"include,omitempty"`
	Exclude []string `json:"exclude,omitempty"`
	Rename  []string `json:"rename,omitempty"`
}

// RestoreStats reports what a restore did and how long each phase took.
type RestoreStats struct {
	TargetDir string `json:"target_dir"`
	// DownloadedBytes are the stored bytes read from the repository;
	// CachedBytes those read instead from the staging dir's chunk cache,
	// filled by an interrupted earlier attempt of the same restore.
	DownloadedBytes int64   `json:"downloaded_bytes"`
	CachedBytes     int64   `json:"cached_bytes"`
	RawBytes        int64   `json:"raw_bytes"`
	FetchSeconds    float64 `json:"fetch_seconds"`
	PrepareSeconds  float64 `json:"prepare_seconds"`
	MoveBackSeconds float64 `json:"move_back_seconds"`
	// Rows and Files are the rows and files a logical restore loaded.
	Rows  int64 `json:"rows,omitempty"`
	Files int   `json:"files,omitempty"`
}

// RestoreProgress is heartbeated while a restore runs.
type RestoreProgress struct {
	Phase    string `json:"phase"`
	BackupID string `json:"backup_id,omitempty"` // the chain member being applied
	Chunks   int    `json:"chunks"`
	RawBytes int64  `json:"raw_bytes"`
}

// StartServerParams asks an agent to start a server on a restored datadir.
type StartServerParams struct {
	Instance  string `json:"instance"`
	TargetDir string `json:"target_dir"`
	Port      int    `json:"port"`
	// PickPort has the agent pick a free port on 127.0.0.1 (Port is then
	// ignored), and pick again when the port is taken before the server
	// binds it.
	PickPort bool `json:"pick_port,omitempty"`
	// Flavor is the restored backup's server flavor, from its manifest
	// (BackupSummary.Flavor; "" = mariadb, as before flavors were
	// recorded): it picks the server binary (tools.mariadbd or
	// tools.mysqld) and its options.
	Flavor flavor.Name `json:"flavor,omitempty"`
}

// StartServerResult describes the started server.
type StartServerResult struct {
	PID           int     `json:"pid"`
	Port          int     `json:"port"`
	Socket        string  `json:"socket"`
	ServerVersion string  `json:"server_version"`
	ErrorLog      string  `json:"error_log"`
	StartSeconds  float64 `json:"start_seconds"`
}
