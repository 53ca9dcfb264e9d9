package binlog

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/manifest"
)

// Everything read from the archive is untrusted input: a writer of the
// bucket may have planted or altered any object. Index records and gap
// records are decoded and checked here before any of their names is used
// in a path or any of their sizes sizes an allocation.

// Bounds on what an index record may claim.
const (
	// MaxSegmentRawSize bounds a segment's events: the decoder refuses more
	// anyway (a segment holds up to archive.max_segment_size plus one event,
	// and an event is at most 1 GiB).
	MaxSegmentRawSize = 1 << 30
	// maxSegmentStoredSize bounds a segment's stored bytes: compressed
	// (zstd never grows data by more than this) and maybe encrypted.
	maxSegmentStoredSize = MaxSegmentRawSize + MaxSegmentRawSize/6 + 64<<10
	// maxRecordSize bounds an index or gap record object.
	maxRecordSize = 64 << 10
	// maxNameLen bounds file names, GTIDs and other strings of a record.
	maxNameLen = 255
	// maxGTIDSetLen bounds a recorded GTID set (a uuid with its
	// intervals is about 50 bytes).
	maxGTIDSetLen = 32 << 10
)

// ErrUnencrypted is wrapped when an instance has encryption enabled and
// an archived segment is not encrypted (its index record names no key):
// the archive may have been downgraded by a writer of the bucket. Old
// segments archived before encryption was enabled are accepted only with
// Store.AllowUnencrypted.
var ErrUnencrypted = errors.New("binlog segment is not encrypted")

// ErrUnauthenticated is wrapped when an index record of an encrypted
// segment does not carry a valid MAC: it was planted or altered without the
// key, or (no MAC at all) written by a version of Strata that did not
// authenticate records, which is accepted only with
// Store.AllowUnencrypted.
var ErrUnauthenticated = errors.New("binlog index record is not authenticated")

// DecodeSegment parses and validates an index record. The error wraps
// ErrCorrupt and says which field is wrong.
func DecodeSegment(data []byte) (*Segment, error) {
	if len(data) > maxRecordSize {
		return nil, fmt.Errorf("%w: index record is larger than %d bytes", ErrCorrupt, maxRecordSize)
	}
	var seg Segment
	if err := json.Unmarshal(data, &seg); err != nil {
		return nil, fmt.Errorf("%w: index record is not valid JSON: %v", ErrCorrupt, err)
	}
	if err := seg.Validate(); err != nil {
		return nil, err
	}
	return &seg, nil
}

// Validate checks every name and size of an index record: file and next
// are binlog file names (a single path element), data_key a data object
// name of this segment, key_ref a single path element, positions and sizes
// bounded and consistent. The error wraps ErrCorrupt.
func (s *Segment) Validate() error {
	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if err := CheckFileName(s.File); err != nil {
		add("file: %v", err)
	}
	if s.Next != "" {
		if err := CheckFileName(s.Next); err != nil {
			add("next: %v", err)
		}
	}
	if s.Start < 4 {
		add("start %d is before the binlog header (must be >= 4)", s.Start)
	}
	if s.End < s.Start {
		add("end %d is before start %d", s.End, s.Start)
	}
	switch {
	case s.RawSize < 0 || s.RawSize > MaxSegmentRawSize:
		add("raw_size %d is out of range 0..%d", s.RawSize, MaxSegmentRawSize)
	case s.End >= s.Start && s.RawSize != int64(s.End-s.Start):
		add("raw_size %d does not match end-start %d", s.RawSize, s.End-s.Start)
	}
	if s.StoredSize < 0 || s.StoredSize > maxSegmentStoredSize {
		add("stored_size %d is out of range 0..%d", s.StoredSize, maxSegmentStoredSize)
	}
	if s.Events < 0 || int64(s.Events) > s.RawSize {
		add("events %d is out of range", s.Events)
	}
	if !manifest.IsSHA256Hex(s.SHA256) {
		add("sha256 %q is not 64 lowercase hex characters", clip(s.SHA256))
	}
	if s.DataKey != "" {
		if err := checkDataKey(s.DataKey, s.Seq); err != nil {
			add("data_key: %v", err)
		}
	}
	if s.KeyRef != "" {
		if err := checkElement(s.KeyRef); err != nil {
			add("key_ref: %v", err)
		}
	}
	if len(s.MAC) != 0 && len(s.MAC) != macSize {
		add("mac has %d bytes (want %d)", len(s.MAC), macSize)
	}
	if len(s.MAC) != 0 && s.KeyRef == "" {
		add("mac without key_ref")
	}
	for name, v := range map[string]string{"first_gtid": s.FirstGTID, "last_gtid": s.LastGTID, "identity": s.Identity} {
		if len(v) > maxNameLen || strings.ContainsRune(v, 0) {
			add("%s is longer than %d bytes or holds NUL", name, maxNameLen)
		}
	}
	if s.Flavor != "" {
		if _, err := flavor.ParseName(string(s.Flavor)); err != nil {
			add("flavor: %v", err)
		}
	}
	if len(s.Executed) > maxGTIDSetLen || strings.ContainsRune(s.Executed, 0) {
		add("executed is longer than %d bytes or holds NUL", maxGTIDSetLen)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: invalid index record of segment %d: %s", ErrCorrupt, s.Seq, strings.Join(problems, "; "))
	}
	return nil
}

// DecodeGap parses and validates a gap record. The error wraps ErrCorrupt.
func DecodeGap(data []byte) (*Gap, error) {
	if len(data) > maxRecordSize {
		return nil, fmt.Errorf("%w: gap record is larger than %d bytes", ErrCorrupt, maxRecordSize)
	}
	var g Gap
	if err := json.Unmarshal(data, &g); err != nil {
		return nil, fmt.Errorf("%w: gap record is not valid JSON: %v", ErrCorrupt, err)
	}
	var problems []string
	for name, f := range map[string]string{"last_file": g.LastFile, "resume_file": g.ResumeFile} {
		if f == "" {
			continue
		}
		if err := CheckFileName(f); err != nil {
			problems = append(problems, name+": "+err.Error())
		}
	}
	if len(g.Reason) > 4096 {
		problems = append(problems, "reason is longer than 4096 bytes")
	}
	if g.MissingData != "" {
		problems = append(problems, "missing_data is not stored in a gap record")
	}
	if len(g.MissingGTIDs) > maxGTIDSetLen || strings.ContainsRune(g.MissingGTIDs, 0) {
		problems = append(problems, fmt.Sprintf("missing_gtids is longer than %d bytes or holds NUL", maxGTIDSetLen))
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: invalid gap record before segment %d: %s", ErrCorrupt, g.BeforeSeq, strings.Join(problems, "; "))
	}
	return &g, nil
}

// CheckFileName checks that name has the shape of a binlog file name: a
// base name of letters, digits, '_', '-' and '.', a dot and a number
// ("binlog.000042"), so that it is a single, safe path element.
func CheckFileName(name string) error {
	i := strings.LastIndexByte(name, '.')
	switch {
	case name == "":
		return errors.New("is empty")
	case len(name) > maxNameLen:
		return fmt.Errorf("%q is longer than %d bytes", clip(name), maxNameLen)
	case checkElement(name) != nil || name[0] == '.' || name[0] == '-':
		return fmt.Errorf("%q is not a binlog file name (letters, digits, '_', '-', '.'; a single path element)", clip(name))
	case i <= 0 || i == len(name)-1 || strings.Trim(name[i+1:], "0123456789") != "":
		return fmt.Errorf("%q is not a binlog file name (BASENAME.NUMBER, e.g. binlog.000042)", clip(name))
	}
	return nil
}

// checkElement checks that s is a single, safe path element: letters,
// digits, '.', '_' and '-' only, not "." or "..".
func checkElement(s string) error {
	if s == "" || s == "." || s == ".." || len(s) > maxNameLen {
		return fmt.Errorf("%q is not a valid name", clip(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%q holds %q (only letters, digits, '.', '_' and '-' are allowed)", clip(s), string(rune(c)))
		}
	}
	return nil
}

// checkDataKey checks a data object name: "data/<seq, 12 digits>" and a
// safe rest, as WriteSegment names them.
func checkDataKey(key string, seq uint64) error {
	name, ok := strings.CutPrefix(key, "data/")
	if !ok {
		return fmt.Errorf("%q is not under data/", clip(key))
	}
	if err := checkElement(name); err != nil {
		return err
	}
	want := fmt.Sprintf("%012d", seq)
	if !strings.HasPrefix(name, want) || (len(name) > len(want) && name[len(want)] != '-' && name[len(want)] != '.') {
		return fmt.Errorf("%q does not name segment %d", clip(key), seq)
	}
	return nil
}

// clip shortens a hostile string for an error message.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}

// macSize is the size of an index record's MAC (crypt.MACSize).
const macSize = 32

// authPurpose is what an index record's MAC key is derived for.
func authPurpose(instance, keyRef string) string {
	return "binlog index/" + instance + "/" + keyRef
}

// macMessage is what an index record's MAC covers: the record without its
// MAC, as JSON, times in UTC (so that decoding and encoding again gives the
// same bytes).
func macMessage(s *Segment) ([]byte, error) {
	c := *s
	c.MAC = nil
	c.FirstTime, c.LastTime, c.ArchivedAt = c.FirstTime.UTC(), c.LastTime.UTC(), c.ArchivedAt.UTC()
	b, err := json.Marshal(&c)
	if err != nil {
		return nil, fmt.Errorf("encode index record of segment %d: %w", s.Seq, err)
	}
	return append([]byte("strata binlog index record v1\n"), b...), nil
}
