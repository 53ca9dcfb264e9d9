package binlog

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/strata-backup/strata/internal/crypt"
	"github.com/strata-backup/strata/internal/manifest"
	"github.com/strata-backup/strata/internal/storage"
)

// A roll-up is a consolidated index object: the index records of a stretch
// of consecutive segments of one closed binlog file, in one immutable
// object under <instance>/binlogs/rollup/<first seq>-<last seq>.json. It is
// written before the records it holds are deleted, and names its range in
// its key: a reader that lists a roll-up ignores every individual record in
// its range (whether or not it is deleted yet), so a segment is never in
// neither place and never counted twice. See docs/architecture.md,
// "Compacted index".

// Bounds of a roll-up.
const (
	// RollupMaxSegments is the most segments a roll-up holds: a binlog file
	// of more segments is rolled up in several objects.
	RollupMaxSegments = 10000
	// maxRollupSize bounds a roll-up object (RollupMaxSegments records of
	// at most ~1.4 KiB, with room).
	maxRollupSize = 32 << 20
	rollupVersion = 1
)

// Rollup is a consolidated index object.
type Rollup struct {
	Version  int       `json:"version"`
	File     string    `json:"file"`
	FirstSeq uint64    `json:"first_seq"`
	LastSeq  uint64    `json:"last_seq"`
	Segments []Segment `json:"segments"` // the records, verbatim, times in UTC
	// SHA256 is the checksum of Segments as JSON (rollupSum).
	SHA256 string `json:"sha256"`
	// KeyRef and MAC authenticate the roll-up when encryption is on:
	// HMAC-SHA256 keyed by crypt.AuthKey of the writing run's data key of
	// rollupMACMessage. Each record keeps its own MAC too.
	KeyRef string `json:"key_ref,omitempty"`
	MAC    []byte `json:"mac,omitempty"`
}

// RollupRange is a roll-up's place in the archive, from its object key.
type RollupRange struct {
	Key      string
	FirstSeq uint64
	LastSeq  uint64
}

func (s *Store) rollupKey(first, last uint64) string {
	return fmt.Sprintf("%srollup/%012d-%012d.json", s.prefix(), first, last)
}

// parseRollupKey returns the range a roll-up's key names.
func (s *Store) parseRollupKey(key string) (RollupRange, error) {
	name, ok := strings.CutPrefix(key, s.prefix()+"rollup/")
	a, b, ok2 := strings.Cut(strings.TrimSuffix(name, ".json"), "-")
	first, err1 := strconv.ParseUint(a, 10, 64)
	last, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || !ok2 || !strings.HasSuffix(name, ".json") || err1 != nil || err2 != nil || len(a) != 12 || len(b) != 12 ||
		first == 0 || last < first || last-first >= RollupMaxSegments {
		return RollupRange{}, fmt.Errorf("%w: %s is not a roll-up of the binlog index (rollup/<12-digit first>-<12-digit last>.json, at most %d segments)", ErrCorrupt, key, RollupMaxSegments)
	}
	return RollupRange{Key: key, FirstSeq: first, LastSeq: last}, nil
}

// rollupSum is the checksum of a roll-up's records.
func rollupSum(segs []Segment) (string, error) {
	b, err := json.Marshal(segs)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// rollupMACMessage is what a roll-up's MAC covers: everything but the MAC
// (the records through their checksum).
func rollupMACMessage(r *Rollup) []byte {
	return fmt.Appendf(nil, "strata binlog index rollup v1\n%d\n%s\n%d\n%d\n%s\n%s", r.Version, r.File, r.FirstSeq, r.LastSeq, r.SHA256, r.KeyRef)
}

// DecodeRollup parses and validates a roll-up: its records are consecutive
// segments FirstSeq..LastSeq of File, each valid (Segment.Validate), and
// match the checksum. The error wraps ErrCorrupt.
func DecodeRollup(data []byte) (*Rollup, error) {
	if len(data) > maxRollupSize {
		return nil, fmt.Errorf("%w: index roll-up is larger than %d bytes", ErrCorrupt, maxRollupSize)
	}
	var r Rollup
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: index roll-up is not valid JSON: %v", ErrCorrupt, err)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: invalid index roll-up of segments %d-%d: %s", ErrCorrupt, r.FirstSeq, r.LastSeq, fmt.Sprintf(format, args...))
	}
	switch {
	case r.Version != rollupVersion:
		return nil, bad("version %d (want %d)", r.Version, rollupVersion)
	case CheckFileName(r.File) != nil:
		return nil, bad("file: %v", CheckFileName(r.File))
	case r.FirstSeq == 0 || r.LastSeq < r.FirstSeq || r.LastSeq-r.FirstSeq >= RollupMaxSegments:
		return nil, bad("the range is empty or holds more than %d segments", RollupMaxSegments)
	case uint64(len(r.Segments)) != r.LastSeq-r.FirstSeq+1:
		return nil, bad("it holds %d records for %d segments", len(r.Segments), r.LastSeq-r.FirstSeq+1)
	case !manifest.IsSHA256Hex(r.SHA256):
		return nil, bad("sha256 %q is not 64 lowercase hex characters", clip(r.SHA256))
	case r.KeyRef != "" && checkElement(r.KeyRef) != nil:
		return nil, bad("key_ref: %v", checkElement(r.KeyRef))
	case len(r.MAC) != 0 && (len(r.MAC) != macSize || r.KeyRef == ""):
		return nil, bad("mac has %d bytes (want %d, with a key_ref)", len(r.MAC), macSize)
	}
	for i := range r.Segments {
		seg := &r.Segments[i]
		if seg.Seq != r.FirstSeq+uint64(i) {
			return nil, bad("record %d describes segment %d, not %d", i, seg.Seq, r.FirstSeq+uint64(i))
		}
		if seg.File != r.File {
			return nil, bad("segment %d is in %s, not %s", seg.Seq, clip(seg.File), r.File)
		}
		if err := seg.Validate(); err != nil {
			return nil, bad("%v", err)
		}
	}
	if sum, err := rollupSum(r.Segments); err != nil || sum != r.SHA256 {
		return nil, bad("the records do not match the checksum")
	}
	return &r, nil
}

// authenticateRollup checks a roll-up against the encryption policy, as
// authenticate does a record: on an instance with encryption enabled, a
// roll-up without a key or MAC is refused unless AllowUnencrypted, and a
// MAC that does not match always. Without Keys the MAC cannot be checked
// (as a record's is not, by readers without keys).
func (s *Store) authenticateRollup(ctx context.Context, key string, r *Rollup) error {
	if r.KeyRef == "" || len(r.MAC) == 0 {
		if s.Encrypt && !s.AllowUnencrypted {
			return fmt.Errorf("%w: index roll-up %s: instance %s has encryption enabled but the roll-up is not authenticated: written by an older version or planted by a writer of the bucket; pass --allow-unencrypted (allow_unencrypted) to accept it", ErrUnauthenticated, key, s.Instance)
		}
		return nil
	}
	if s.Keys == nil {
		return nil
	}
	k, err := s.readKey(ctx, r.KeyRef)
	if err != nil {
		return fmt.Errorf("index roll-up %s: %w", key, err)
	}
	if !crypt.CheckMAC(k.authKey, rollupMACMessage(r), r.MAC) {
		return fmt.Errorf("%w: the MAC of index roll-up %s does not match: it was altered or planted without the key (key ref %s)", ErrUnauthenticated, key, r.KeyRef)
	}
	return nil
}

// readRollup reads, validates and authenticates one roll-up.
func (s *Store) readRollup(ctx context.Context, rr RollupRange) (*Rollup, error) {
	b, err := s.getIndexObject(ctx, rr.Key, maxRollupSize)
	if err != nil {
		return nil, fmt.Errorf("binlog index roll-up %s: %w", rr.Key, err)
	}
	r, err := DecodeRollup(b)
	if err != nil {
		return nil, fmt.Errorf("binlog index roll-up %s: %w", rr.Key, err)
	}
	if r.FirstSeq != rr.FirstSeq || r.LastSeq != rr.LastSeq {
		return nil, fmt.Errorf("binlog index roll-up %s: %w: it holds segments %d-%d", rr.Key, ErrCorrupt, r.FirstSeq, r.LastSeq)
	}
	if err := s.authenticateRollup(ctx, rr.Key, r); err != nil {
		return nil, err
	}
	return r, nil
}

// listRollups lists the roll-ups, ascending by first segment.
func (s *Store) listRollups(ctx context.Context) ([]RollupRange, error) {
	objs, err := s.B.List(ctx, s.prefix()+"rollup/")
	if err != nil {
		return nil, fmt.Errorf("list binlog index roll-ups: %w", err)
	}
	out := make([]RollupRange, 0, len(objs))
	for _, o := range objs {
		rr, err := s.parseRollupKey(o.Key)
		if err != nil {
			return nil, err
		}
		out = append(out, rr)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].FirstSeq < out[j].FirstSeq })
	return out, nil
}

// covered says whether a roll-up of rs (ascending by FirstSeq) holds seq.
func covered(rs []RollupRange, seq uint64) bool {
	i := sort.Search(len(rs), func(i int) bool { return rs[i].FirstSeq > seq })
	for j := i - 1; j >= 0; j-- {
		if rs[j].LastSeq >= seq {
			return true
		}
		if seq-rs[j].FirstSeq >= RollupMaxSegments {
			break // no earlier roll-up reaches this far
		}
	}
	return false
}

// RollUp consolidates the closed stretches of ix's individual records into
// roll-ups: consecutive segments of one binlog file, with no gap before any
// but the first and no missing data object, that are followed by a segment
// of another file, end their file (Next), or fill a roll-up. Each roll-up
// is written (authenticated with the run's data key when Encrypt) before
// the records it holds are deleted, and records left by an earlier crash
// inside a roll-up are deleted first. It is idempotent: a roll-up already
// written for the same range counts as written. It returns the number of
// roll-ups written.
func (s *Store) RollUp(ctx context.Context, ix *Index) (int, error) {
	for _, k := range ix.stale {
		if err := s.B.Delete(ctx, k); err != nil {
			return 0, fmt.Errorf("delete rolled-up binlog index record %s: %w", k, err)
		}
	}
	ix.stale = nil
	gapBefore := map[uint64]bool{}
	for _, g := range ix.Gaps {
		gapBefore[g.BeforeSeq] = true
	}
	missing := map[uint64]bool{}
	for _, m := range ix.Missing {
		missing[m.Seq] = true
	}
	var tail []Segment
	for _, seg := range ix.Segments {
		if !covered(ix.Rollups, seg.Seq) {
			tail = append(tail, seg)
		}
	}
	written := 0
	for i := 0; i < len(tail); {
		j := i + 1
		for j < len(tail) && j-i < RollupMaxSegments && tail[j].File == tail[i].File && tail[j].Seq == tail[j-1].Seq+1 &&
			!gapBefore[tail[j].Seq] && !missing[tail[j].Seq] {
			j++
		}
		group := tail[i:j]
		closed := j-i == RollupMaxSegments || group[len(group)-1].Next != "" || (j < len(tail) && tail[j].File != group[0].File)
		i = j
		if missing[group[0].Seq] || !closed {
			continue
		}
		if err := s.writeRollup(ctx, group); err != nil {
			return written, err
		}
		written++
		ix.Rollups = append(ix.Rollups, RollupRange{Key: s.rollupKey(group[0].Seq, group[len(group)-1].Seq), FirstSeq: group[0].Seq, LastSeq: group[len(group)-1].Seq})
		for _, seg := range group {
			if err := s.B.Delete(ctx, s.indexKey(seg.Seq)); err != nil {
				return written, fmt.Errorf("delete rolled-up binlog index record %d: %w", seg.Seq, err)
			}
		}
	}
	sort.Slice(ix.Rollups, func(i, j int) bool { return ix.Rollups[i].FirstSeq < ix.Rollups[j].FirstSeq })
	return written, nil
}

// writeRollup writes the roll-up of group (consecutive segments of one
// file); one already there for the same range with the same records counts
// as written.
func (s *Store) writeRollup(ctx context.Context, group []Segment) error {
	r := &Rollup{Version: rollupVersion, File: group[0].File, FirstSeq: group[0].Seq, LastSeq: group[len(group)-1].Seq,
		Segments: make([]Segment, len(group))}
	for i, seg := range group {
		seg.FirstTime, seg.LastTime, seg.ArchivedAt = seg.FirstTime.UTC(), seg.LastTime.UTC(), seg.ArchivedAt.UTC()
		r.Segments[i] = seg
	}
	var err error
	if r.SHA256, err = rollupSum(r.Segments); err != nil {
		return err
	}
	if s.Encrypt {
		k, err := s.writeKey(ctx)
		if err != nil {
			return fmt.Errorf("roll up binlog index %d-%d: %w", r.FirstSeq, r.LastSeq, err)
		}
		r.KeyRef = k.ref
		r.MAC = crypt.MAC(k.authKey, rollupMACMessage(r))
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	key := s.rollupKey(r.FirstSeq, r.LastSeq)
	err = s.B.Put(ctx, key, bytes.NewReader(b), int64(len(b)))
	if errors.Is(err, storage.ErrExists) {
		// Written by an earlier attempt (maybe with another run's key).
		old, rerr := s.readRollup(ctx, RollupRange{Key: key, FirstSeq: r.FirstSeq, LastSeq: r.LastSeq})
		if rerr == nil && old.SHA256 == r.SHA256 {
			return nil
		}
		if rerr != nil {
			return rerr
		}
		return fmt.Errorf("%w: binlog index roll-up %s holds other records than the index", ErrCorrupt, key)
	}
	if err != nil {
		return fmt.Errorf("write binlog index roll-up %s: %w", key, err)
	}
	return nil
}
