// Package manifest defines the backup manifest: the JSON document written last
// into a backup's directory in the repository. A backup exists only when its
// manifest exists.
package manifest

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
	"github.com/strata-backup/strata/internal/logical"
)

// FormatVersion is the newest manifest format this version of Strata
// reads and writes. A manifest is written with the oldest version that
// holds all its fields (Manifest.MinFormatVersion), so that an older
// Strata still reads every manifest it can authenticate.
const FormatVersion = 4

// FormatVersionTableSums is the first format with table_sums: an older
// reader would drop the field, and so fail the manifest's MAC, so it must
// refuse the manifest as newer instead.
const FormatVersionTableSums = 2

// FormatVersionSumsAlgorithm is the first format with
// table_sums.algorithm.
const FormatVersionSumsAlgorithm = 3

// FormatVersionLZ4 is the first format whose chunks may be lz4: an older
// Strata refuses such a manifest as newer ("upgrade Strata") instead of
// failing at its first chunk.
const FormatVersionLZ4 = 3

// FormatVersionLogical is the first format with logical backups (type
// logical, the logical index).
const FormatVersionLogical = 4

// MinFormatVersion is the oldest format that holds every field m sets.
func (m *Manifest) MinFormatVersion() int {
	if m.Type == TypeLogical || m.Logical != nil {
		return FormatVersionLogical
	}
	if m.Compression == "lz4" {
		return FormatVersionLZ4
	}
	if m.TableSums != nil && m.TableSums.Algorithm != SumsRowMD5 {
		return FormatVersionSumsAlgorithm
	}
	if m.TableSums != nil {
		return FormatVersionTableSums
	}
	return 1
}

// FileName is the manifest's object name inside a backup directory.
const FileName = "manifest.json"

// Backup types.
const (
	TypeFull         = "full"
	TypeIncremental  = "incremental"
	TypeDifferential = "differential"
	// TypeLogical is a logical dump (ToolLogical): SQL files, described by
	// the manifest's Logical index, stored one after the other as the
	// backup's stream. It has no parent and no LSNs.
	TypeLogical = "logical"
)

// IsBackupType reports whether t is one of the backup types.
func IsBackupType(t string) bool {
	switch t {
	case TypeFull, TypeIncremental, TypeDifferential, TypeLogical:
		return true
	}
	return false
}

// IsRoot reports whether a backup of type t starts its own chain: a full
// or a logical backup (which has no parent and no child).
func IsRoot(t string) bool { return t == TypeFull || t == TypeLogical }

// BackupTypes is the list of backup types, for messages.
const BackupTypes = "full, incremental, differential or logical"

// ToolLogical is the tool name of a logical backup: Strata's own dump.
const ToolLogical = "strata-dump"

// Manifest describes one complete backup.
type Manifest struct {
	FormatVersion int    `json:"format_version"`
	BackupID      string `json:"backup_id"`
	Instance      string `json:"instance"`
	Type          string `json:"type"`
	ParentID      string `json:"parent_id,omitempty"`

	Tool          string `json:"tool"`           // mariabackup | xtrabackup
	ToolVersion   string `json:"tool_version"`   // as reported by the tool
	ServerFlavor  string `json:"server_flavor"`  // mariadb | mysql: read it with Flavor()
	ServerVersion string `json:"server_version"` // SELECT VERSION()

	StartTime time.Time `json:"start_time"`
	EndTime   time.Time `json:"end_time"`

	// Consistent point of the backup.
	FromLSN      uint64    `json:"from_lsn"`
	ToLSN        uint64    `json:"to_lsn"`
	LastLSN      uint64    `json:"last_lsn,omitempty"`
	BinlogFile   string    `json:"binlog_file,omitempty"`
	BinlogPos    uint64    `json:"binlog_pos,omitempty"`
	GTIDSet      string    `json:"gtid_set,omitempty"`
	ConsistentAt time.Time `json:"consistent_at,omitempty"` // server time of the consistent point, when known

	// LockDuration is how long commits were blocked for the consistent point
	// (BACKUP STAGE BLOCK_COMMIT or FLUSH TABLES WITH READ LOCK until unlock).
	LockDuration Duration `json:"lock_duration"`
	// DDLLockDuration is how long DDL was blocked (BLOCK_DDL / backup lock until unlock).
	DDLLockDuration Duration `json:"ddl_lock_duration"`
	Duration        Duration `json:"duration"`

	RawSize          int64  `json:"raw_size"`    // bytes of the tool's stream
	StoredSize       int64  `json:"stored_size"` // bytes stored (compressed, encrypted)
	RawSHA256        string `json:"raw_sha256"`  // sha256 of the whole raw stream
	Compression      string `json:"compression"` // zstd | s2 | gzip | none
	CompressionLevel int    `json:"compression_level,omitempty"`
	// EncryptionKeyID is the ID of the key encryption key that wrapped the
	// backup's data key when it was taken; the wrapped data keys themselves
	// are objects under keys/ beside the manifest (one per key encryption
	// key, see `strata key rotate`).
	EncryptionKeyID string `json:"encryption_key_id,omitempty"`
	// Encrypted is true when the chunks are encrypted with the backup's
	// data key (absent in older manifests: not encrypted).
	Encrypted bool  `json:"encrypted,omitempty"`
	ChunkSize int64 `json:"chunk_size"`
	// UploadedBytes and ReusedBytes split StoredSize into the bytes the
	// attempt that completed the backup uploaded and those it found already
	// stored by an earlier, interrupted attempt of the same backup.
	UploadedBytes int64 `json:"uploaded_bytes,omitempty"`
	ReusedBytes   int64 `json:"reused_bytes,omitempty"`

	// WorkflowID and RunID name the Temporal workflow run that wrote the
	// backup (absent in older manifests). A backup activity accepts an
	// existing manifest as its own result only when they name its run.
	WorkflowID string `json:"workflow_id,omitempty"`
	RunID      string `json:"run_id,omitempty"`

	Chunks []Chunk `json:"chunks"`

	// Logical lists the files of a logical backup (type logical) and where
	// each is in the stream.
	Logical *logical.Index `json:"logical,omitempty"`

	// TableSums are the row counts and checksums of the user tables,
	// taken in a consistent snapshot at (or next to) the backup's
	// consistent point, for a restore drill to verify against. Absent when
	// disabled, skipped, failed, or written by an older Strata.
	TableSums *TableSums `json:"table_sums,omitempty"`

	// MAC authenticates an encrypted backup's manifest: the hex
	// HMAC-SHA256 of AuthBytes under a key derived from the backup's data
	// key (see repo.ManifestAuthKey). Empty for an unencrypted backup and
	// in manifests written before manifests were authenticated.
	MAC string `json:"mac,omitempty"`
}

// Flavor is the flavor and version of the server the backup was taken
// of: what restore, replay and point-in-time planning go by. It is the
// recorded server_flavor. A manifest written before the flavor was
// recorded has none; for it alone the flavor is inferred from the tool
// (xtrabackup backs up MySQL, mariabackup MariaDB), a legacy rule no
// manifest written since relies on.
func (m *Manifest) Flavor() (flavor.Flavor, error) {
	if m.ServerFlavor != "" {
		n, err := flavor.ParseName(m.ServerFlavor)
		if err != nil {
			return flavor.Flavor{}, fmt.Errorf("backup %s: server_flavor: %w", m.BackupID, err)
		}
		return flavor.Flavor{Name: n, Version: m.ServerVersion}, nil
	}
	if n, ok := LegacyFlavor(m.Tool); ok {
		return flavor.Flavor{Name: n, Version: m.ServerVersion}, nil
	}
	return flavor.Flavor{}, fmt.Errorf("backup %s records no server_flavor, and its tool %q does not tell one: the manifest cannot say how to restore it",
		m.BackupID, m.Tool)
}

// LegacyFlavor is the flavor of a backup recorded without one, by the
// tool that took it: xtrabackup backs up MySQL, mariabackup MariaDB. It
// is for records older than the flavor field only.
func LegacyFlavor(tool string) (flavor.Name, bool) {
	switch tool {
	case "xtrabackup":
		return flavor.MySQL, true
	case "mariabackup":
		return flavor.MariaDB, true
	}
	return "", false
}

// GTID returns the backup's executed GTID set, parsed as a set of the
// backup's flavor: a set of the other flavor's shape is an error, never a
// change of flavor.
func (m *Manifest) GTID() (gtid.Set, error) {
	f, err := m.Flavor()
	if err != nil {
		return gtid.Set{}, err
	}
	s, err := gtid.Parse(f.Name, m.GTIDSet)
	if err != nil {
		return gtid.Set{}, fmt.Errorf("backup %s of a %s server: gtid_set: %w", m.BackupID, f.Name, err)
	}
	return s, nil
}

// TableSums are the reference values of a backup's tables: the sums of
// every InnoDB base table of the user schemas, read in one consistent
// snapshot whose binlog position they record.
type TableSums struct {
	// BinlogFile, BinlogPos and GTIDSet are the snapshot's position.
	BinlogFile string `json:"binlog_file,omitempty"`
	BinlogPos  uint64 `json:"binlog_pos,omitempty"`
	GTIDSet    string `json:"gtid_set,omitempty"`
	// At is when the snapshot was opened (agent clock, UTC).
	At time.Time `json:"at"`
	// AtBackupPoint is true when the snapshot's position is the backup's
	// consistent point (BinlogFile/BinlogPos of the manifest): the sums
	// describe exactly the backup's data. Otherwise they describe the
	// state at their own position, which a point-in-time restore reaches.
	AtBackupPoint bool `json:"at_backup_point"`
	// Algorithm is how the checksums were computed, so that a drill
	// computes them alike: SumsRowMD5 (empty, the first format's) or
	// SumsChecksumTable.
	Algorithm string `json:"algorithm,omitempty"`
	// Seconds is how long the sums took.
	Seconds float64    `json:"seconds"`
	Tables  []TableSum `json:"tables"`
	// Skipped lists the base tables that are not summed because a
	// consistent snapshot does not cover their engine (not InnoDB).
	Skipped []SkippedTable `json:"skipped,omitempty"`
}

// Table-sum algorithms (TableSums.Algorithm).
const (
	// SumsRowMD5 is an exact sum of a per-row MD5 over every column's MD5
	// (internal/drill.SumSQL): server-independent, and about 6 µs of
	// server CPU per row.
	SumsRowMD5 = ""
	// SumsChecksumTable is the server's CHECKSUM TABLE, read in the same
	// consistent snapshot: about 20 times cheaper, and equal on a server
	// of the same flavor and version with the same row format, which a
	// physical restore is.
	SumsChecksumTable = "checksum_table"
)

// SkippedTable is a base table that the sums leave out, with its engine.
type SkippedTable struct {
	Schema string `json:"schema"`
	Table  string `json:"table"`
	Engine string `json:"engine"`
}

// TableSum is the row count and checksum of one table.
type TableSum struct {
	Schema   string `json:"schema"`
	Table    string `json:"table"`
	Rows     int64  `json:"rows"`
	Checksum string `json:"checksum"`
}

// Chunk is one stored piece of the stream, in stream order.
type Chunk struct {
	Index      int    `json:"index"`
	Key        string `json:"key"`         // object key relative to the backup directory
	RawSize    int64  `json:"raw_size"`    // bytes before compression
	StoredSize int64  `json:"stored_size"` // bytes as stored
	SHA256     string `json:"sha256"`      // hex sha256 of the stored bytes
}

// Duration is a time.Duration that encodes as seconds (float) in JSON.
type Duration time.Duration

// MarshalJSON encodes the duration as a number of seconds.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).Seconds())
}

// UnmarshalJSON decodes a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s float64
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	// Round, not truncate: 1.001 * 1e9 is 1000999999.9999999 in float64.
	*d = Duration(math.Round(s * float64(time.Second)))
	return nil
}

// Std returns the duration as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }
