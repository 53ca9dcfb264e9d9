package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
)

// ErrInvalid is returned (wrapped) by Encode, Decode and Validate when a
// manifest is malformed or incomplete.
var ErrInvalid = errors.New("invalid manifest")

// ErrNewerFormat is returned (wrapped) by Decode for a manifest written by a
// newer version of Strata than this one.
var ErrNewerFormat = errors.New("manifest format is newer than supported")

// Encode validates m and returns it as indented JSON (with a trailing
// newline).
func Encode(m *Manifest) ([]byte, error) {
	if m == nil {
		return nil, fmt.Errorf("encode manifest: %w: nil manifest", ErrInvalid)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	if m.FormatVersion > FormatVersion {
		return nil, fmt.Errorf("encode manifest: %w: format_version %d is newer than %d", ErrInvalid, m.FormatVersion, FormatVersion)
	}
	c := *m
	if c.Chunks == nil {
		c.Chunks = []Chunk{} // "chunks": [] rather than null
	}
	data, err := json.MarshalIndent(&c, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	if len(data)+1 > MaxEncodedSize {
		return nil, fmt.Errorf("encode manifest: %w: %d bytes for %d chunks is more than a manifest may hold (%d bytes); use a larger chunk_size",
			ErrInvalid, len(data)+1, len(c.Chunks), MaxEncodedSize)
	}
	return append(data, '\n'), nil
}

// Decode parses and validates a manifest. A manifest whose format_version is
// newer than FormatVersion is rejected with ErrNewerFormat, telling the user
// to upgrade Strata.
func Decode(data []byte) (*Manifest, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("decode manifest: %w: empty document", ErrInvalid)
	}
	// Check the version first: a newer format may not even parse as this one.
	var probe struct {
		FormatVersion *int `json:"format_version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("decode manifest: %w: %w", ErrInvalid, err)
	}
	if probe.FormatVersion == nil {
		return nil, fmt.Errorf("decode manifest: %w: format_version is missing", ErrInvalid)
	}
	if v := *probe.FormatVersion; v > FormatVersion {
		return nil, fmt.Errorf("decode manifest: %w: the backup was written with manifest format version %d but this version of Strata only supports up to %d; upgrade Strata to read it",
			ErrNewerFormat, v, FormatVersion)
	}
	m := new(Manifest)
	if err := json.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("decode manifest: %w: %w", ErrInvalid, err)
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("decode manifest: %w", err)
	}
	return m, nil
}

// Validate checks the required fields and the consistency of the chunk list.
// It reports every problem found, wrapped in ErrInvalid.
func (m *Manifest) Validate() error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if m.FormatVersion < 1 {
		add("format_version %d is invalid (must be >= 1)", m.FormatVersion)
	}
	if err := checkName(m.BackupID); err != nil {
		add("backup_id: %v", err)
	}
	if err := checkName(m.Instance); err != nil {
		add("instance: %v", err)
	}
	switch m.Type {
	case TypeFull:
	case TypeIncremental, TypeDifferential:
		if m.ParentID == "" {
			add("parent_id is required for a %s backup", m.Type)
		}
	case TypeLogical:
		if m.ParentID != "" {
			add("a logical backup has no parent_id")
		}
		if m.Logical == nil {
			add("a logical backup needs its logical index")
		}
		if m.FormatVersion < FormatVersionLogical {
			add("a logical backup needs format_version %d or later, not %d", FormatVersionLogical, m.FormatVersion)
		}
	case "":
		add("type is missing (must be %s, %s, %s or %s)", TypeFull, TypeIncremental, TypeDifferential, TypeLogical)
	default:
		add("type %q is invalid (must be %s, %s, %s or %s)", m.Type, TypeFull, TypeIncremental, TypeDifferential, TypeLogical)
	}
	if m.Logical != nil && m.Type != TypeLogical {
		add("a %s backup has a logical index", m.Type)
	}
	if m.ParentID != "" {
		if err := checkName(m.ParentID); err != nil {
			add("parent_id: %v", err)
		}
	}
	if m.ServerFlavor != "" {
		if n, err := flavor.ParseName(m.ServerFlavor); err != nil {
			add("server_flavor: %v", err)
		} else if _, err := gtid.Parse(n, m.GTIDSet); err != nil {
			add("gtid_set of a %s server: %v", n, err)
		}
	}
	if m.RawSHA256 != "" && !IsSHA256Hex(m.RawSHA256) {
		add("raw_sha256 %q is not 64 lowercase hex characters", m.RawSHA256)
	}
	if m.Encrypted && m.EncryptionKeyID == "" {
		add("encryption_key_id is required for an encrypted backup")
	}
	if m.MAC != "" && !IsSHA256Hex(m.MAC) {
		add("mac %q is not 64 lowercase hex characters", m.MAC)
	}
	if m.RawSize < 0 || m.StoredSize < 0 || m.ChunkSize < 0 || m.UploadedBytes < 0 || m.ReusedBytes < 0 {
		add("sizes must not be negative")
	}
	if m.ChunkSize > MaxChunkSize {
		add("chunk_size %d is larger than %d", m.ChunkSize, MaxChunkSize)
	}
	if len(m.Chunks) == 0 {
		add("the chunk list is empty (a backup stream is never empty)")
	}
	if len(m.Chunks) > MaxChunks {
		add("%d chunks are more than %d", len(m.Chunks), MaxChunks)
	}
	maxRaw := int64(MaxChunkSize)
	if m.ChunkSize > 0 && m.ChunkSize < maxRaw {
		maxRaw = m.ChunkSize // a chunk is cut at chunk_size at the latest
	}
	var rawSum, storedSum int64
	keys := make(map[string]bool, len(m.Chunks))
	for i, c := range m.Chunks {
		if len(problems) > 20 {
			add("...")
			break
		}
		if c.Index != i {
			add("chunk %d has index %d (chunk indexes must be 0..n-1 in order)", i, c.Index)
		}
		if err := CheckChunkKey(c.Key); err != nil {
			add("chunk %d: key %v", i, err)
		} else if keys[c.Key] {
			add("chunk %d: key %q is listed twice", i, c.Key)
		}
		keys[c.Key] = true
		if !IsSHA256Hex(c.SHA256) {
			add("chunk %d: sha256 %q is not 64 lowercase hex characters", i, clip(c.SHA256))
		}
		if c.RawSize < 1 || c.RawSize > maxRaw {
			add("chunk %d: raw_size %d is out of range 1..%d", i, c.RawSize, maxRaw)
			continue
		}
		if c.StoredSize < 1 || c.StoredSize > MaxStoredSize(c.RawSize) {
			add("chunk %d: stored_size %d is out of range 1..%d for %d raw bytes", i, c.StoredSize, MaxStoredSize(c.RawSize), c.RawSize)
			continue
		}
		rawSum += c.RawSize
		storedSum += c.StoredSize
	}
	if len(problems) == 0 {
		if m.RawSize != rawSum {
			add("raw_size %d is not the sum of the chunks' raw sizes (%d)", m.RawSize, rawSum)
		}
		if m.StoredSize != storedSum {
			add("stored_size %d is not the sum of the chunks' stored sizes (%d)", m.StoredSize, storedSum)
		}
		if m.UploadedBytes+m.ReusedBytes != 0 && m.UploadedBytes+m.ReusedBytes != m.StoredSize {
			add("uploaded_bytes %d + reused_bytes %d is not stored_size %d", m.UploadedBytes, m.ReusedBytes, m.StoredSize)
		}
	}
	if m.Logical != nil && len(problems) == 0 {
		if err := m.Logical.Validate(m.RawSize); err != nil {
			add("%v", err)
		}
	}
	if ts := m.TableSums; ts != nil {
		if m.FormatVersion < FormatVersionTableSums {
			add("table_sums needs format_version %d or later, not %d", FormatVersionTableSums, m.FormatVersion)
		}
		if len(ts.Tables)+len(ts.Skipped) > MaxTables {
			add("table_sums: %d tables are more than %d", len(ts.Tables)+len(ts.Skipped), MaxTables)
		}
		if !(ts.Seconds >= 0) {
			add("table_sums: seconds %v must not be negative", ts.Seconds)
		}
		for i, t := range ts.Tables {
			if len(problems) > 20 {
				add("...")
				break
			}
			if t.Schema == "" || t.Table == "" {
				add("table_sums: table %d has no schema or table name", i)
			}
			if t.Rows < 0 {
				add("table_sums: %s.%s: rows %d must not be negative", clip(t.Schema), clip(t.Table), t.Rows)
			}
			if t.Checksum == "" {
				add("table_sums: %s.%s has no checksum", clip(t.Schema), clip(t.Table))
			}
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
	}
	return nil
}

// Bounds on what a manifest may claim (the pipeline's limits).
const (
	// MaxChunkSize is the largest chunk_size, and so the largest raw chunk.
	MaxChunkSize = 1 << 30
	// MaxChunks bounds the chunk list.
	MaxChunks = 1 << 20
	// MaxEncodedSize bounds an encoded manifest, written or read: enough
	// for MaxChunks chunks (about 240 bytes each, encoded), so that every
	// manifest a backup writes can be read back.
	MaxEncodedSize = 320 << 20
	// MaxTables bounds table_sums (tables and skipped ones): at about 150
	// bytes each, encoded, they take at most a tenth of MaxEncodedSize
	// beside MaxChunks chunks.
	MaxTables = 200_000
	// encryptionOverhead is what encryption adds to a chunk (crypt.Overhead).
	encryptionOverhead = 32
)

// MaxStoredSize is the most bytes a chunk of raw raw bytes may take stored:
// compressed (no codec grows data by more than this) and encrypted.
func MaxStoredSize(raw int64) int64 { return raw + raw/6 + 64<<10 + encryptionOverhead }

// CheckChunkKey checks a chunk's object key: "chunks/" and one safe path
// element (letters, digits, '.', '_', '-'; not "." or ".."), so that it
// names an object of the backup's own directory and nothing else.
func CheckChunkKey(key string) error {
	name, ok := strings.CutPrefix(key, "chunks/")
	switch {
	case key == "":
		return errors.New("is missing")
	case !ok:
		return fmt.Errorf("%q is not under chunks/", clip(key))
	case name == "" || name == "." || name == ".." || len(name) > 255:
		return fmt.Errorf("%q is not a valid chunk name", clip(key))
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%q holds %q (a chunk name has letters, digits, '.', '_' and '-' only)", clip(key), string(rune(c)))
		}
	}
	return nil
}

// clip shortens a hostile string for a message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// checkName validates an identifier used as a path segment in the repository.
func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("is missing")
	case s == "." || s == "..":
		return fmt.Errorf("%q is not a valid name", s)
	case strings.ContainsAny(s, "/\\\x00"):
		return fmt.Errorf("%q must not contain '/', '\\' or NUL", s)
	}
	return nil
}

// IsSHA256Hex reports whether s is a hex-encoded sha256 digest: exactly 64
// lowercase hexadecimal characters.
func IsSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
