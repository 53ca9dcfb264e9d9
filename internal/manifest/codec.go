package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
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
	case "":
		add("type is missing (must be %s, %s or %s)", TypeFull, TypeIncremental, TypeDifferential)
	default:
		add("type %q is invalid (must be %s, %s or %s)", m.Type, TypeFull, TypeIncremental, TypeDifferential)
	}
	if m.ParentID != "" {
		if err := checkName(m.ParentID); err != nil {
			add("parent_id: %v", err)
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
	for i, c := range m.Chunks {
		if c.Index != i {
			add("chunk %d has index %d (chunk indexes must be 0..n-1 in order)", i, c.Index)
		}
		if c.Key == "" {
			add("chunk %d: key is missing", i)
		}
		if !IsSHA256Hex(c.SHA256) {
			add("chunk %d: sha256 %q is not 64 lowercase hex characters", i, c.SHA256)
		}
		if c.RawSize < 0 || c.StoredSize < 0 {
			add("chunk %d: sizes must not be negative", i)
		}
		if len(problems) > 20 {
			add("...")
			break
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(problems, "; "))
	}
	return nil
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
