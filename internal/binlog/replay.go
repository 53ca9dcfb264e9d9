package binlog

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/strata-backup/strata/internal/flavor"
	"github.com/strata-backup/strata/internal/gtid"
)

// ErrNotInArchive is wrapped when the archive does not hold what a replay
// needs: the start point, the target, or the stretch between them.
var ErrNotInArchive = errors.New("not in the binlog archive")

// Target is where a point-in-time restore stops; exactly one kind is set.
type Target struct {
	// Time replays transactions whose binlog timestamp is at or before it
	// (binlog timestamps have one-second resolution).
	Time time.Time `json:"time,omitempty"`
	// GTID replays up to and including this transaction: MySQL
	// "uuid:N", MariaDB "domain-server-seq". Which one applies is the
	// archive's recorded flavor (CheckFlavor), not the GTID's shape.
	GTID string `json:"gtid,omitempty"`
	// File and Pos replay the transactions that end at or before this
	// position; one that is open there is left out.
	File string `json:"file,omitempty"`
	Pos  uint32 `json:"pos,omitempty"`
}

// IsZero says no target is set.
func (t Target) IsZero() bool { return t.Time.IsZero() && t.GTID == "" && t.File == "" }

// Validate checks that exactly one kind of target is set.
func (t Target) Validate() error {
	n := 0
	if !t.Time.IsZero() {
		n++
	}
	if t.GTID != "" {
		n++
		_, errMy := gtid.ParseOne(flavor.MySQL, t.GTID)
		_, errMaria := gtid.ParseOne(flavor.MariaDB, t.GTID)
		if errMy != nil && errMaria != nil {
			return fmt.Errorf("GTID target %q is neither a MySQL GTID (uuid:N, e.g. 3e11fa47-71ca-11e1-9e33-c80aa9429562:23) nor a MariaDB one (domain-server-seq, e.g. 0-1-42)", t.GTID)
		}
	}
	if t.File != "" {
		n++
		if t.Pos < 4 {
			return fmt.Errorf("position target %s:%d: the position must be at least 4", t.File, t.Pos)
		}
	}
	if n != 1 {
		return errors.New("give exactly one target: a time, a GTID or a file:position")
	}
	return nil
}

// CheckFlavor checks that a GTID target is a GTID of the flavor of the
// server the archive was written from.
func (t Target) CheckFlavor(f flavor.Name) error {
	if t.GTID == "" {
		return nil
	}
	if _, err := gtid.ParseOne(f, t.GTID); err != nil {
		return fmt.Errorf("GTID target: the archived server is %s: %w", f, err)
	}
	return nil
}

func (t Target) String() string {
	switch {
	case !t.Time.IsZero():
		return "time " + t.Time.UTC().Format(time.RFC3339)
	case t.GTID != "":
		return "GTID " + t.GTID
	default:
		return fmt.Sprintf("position %s:%d", t.File, t.Pos)
	}
}

// contiguous says whether segment b continues exactly where a ends.
func contiguous(a, b *Segment) bool {
	if b.File == a.File {
		return b.Start == a.End
	}
	return b.Start == 4 && (b.File == a.Next || b.File == nextFile(a.File))
}

// holes returns the sequence numbers before which a gap record sits and
// those of the segments whose data object is missing.
func (ix *Index) holes() (gapAt, missing map[uint64]bool) {
	gapAt, missing = map[uint64]bool{}, map[uint64]bool{}
	for _, g := range ix.Gaps {
		gapAt[g.BeforeSeq] = true
	}
	for _, s := range ix.Missing {
		missing[s.Seq] = true
	}
	return gapAt, missing
}

// Runs splits the index into stretches without a hole: a new run begins at
// a gap record or wherever a segment does not continue its predecessor.
func (ix *Index) Runs() [][]Segment {
	gapAt, missing := ix.holes()
	var runs [][]Segment
	var prev *Segment // the last segment of the current run; nil: none open
	for i := range ix.Segments {
		s := ix.Segments[i]
		if missing[s.Seq] {
			prev = nil // a missing segment ends the run
			continue
		}
		if prev == nil || gapAt[s.Seq] || !contiguous(prev, &s) {
			runs = append(runs, nil)
		}
		runs[len(runs)-1] = append(runs[len(runs)-1], s)
		prev = &ix.Segments[i]
	}
	return runs
}

// Covering returns the segments needed to replay from file:pos onwards:
// every segment of that file from position 4 (the replay tool needs the
// file's format event) to the end of the hole-free run that contains it.
func (ix *Index) Covering(file string, pos uint32) ([]Segment, error) {
	for _, run := range ix.Runs() {
		for i, s := range run {
			if s.File != file || s.Start != 4 {
				continue
			}
			last := run[len(run)-1]
			for _, t := range run[i:] {
				if t.File == file && pos >= t.Start && pos <= t.End {
					return run[i:], nil
				}
			}
			if last.File == file && pos > last.End {
				return nil, fmt.Errorf("%w: the archive ends at %s:%d, before %s:%d", ErrNotInArchive, last.File, last.End, file, pos)
			}
		}
	}
	return nil, fmt.Errorf("%w: the archive does not hold %s from its start (needed to replay from %s:%d)", ErrNotInArchive, file, file, pos)
}

// Built describes binlog files rebuilt for a replay.
type Built struct {
	Files     []string  `json:"files"`     // paths, in order
	StartPos  uint32    `json:"start_pos"` // where replay starts in the first file
	CutFile   string    `json:"cut_file"`  // replay ends here
	CutPos    uint32    `json:"cut_pos"`
	LastGTID  string    `json:"last_gtid,omitempty"` // last transaction replayed
	LastTime  time.Time `json:"last_time"`
	Txns      int       `json:"transactions"`
	Bytes     int64     `json:"bytes"`
	WithinEnd bool      `json:"-"`
}

// Build rebuilds, into dir, the binlog files that replay from file:pos to
// the target, cut at a transaction boundary: the last file ends right
// before the first transaction that is not to be applied.
func Build(ctx context.Context, st *Store, segs []Segment, file string, pos uint32, t Target, dir string) (*Built, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	b := &Built{StartPos: pos}
	var (
		out       *os.File
		outFile   string
		written   uint32 // bytes of outFile written so far (its size)
		started   bool   // reached file:pos
		boundFile string // last transaction boundary at or after the start
		boundPos  uint32
		foundGTID bool
		inTxn     bool
		cut       bool
		lastGTID  string
		lastTime  time.Time
		txns      int
		// start of the open transaction, and what was last before it
		txnFile  string
		txnPos   uint32
		prevGTID string
		prevTime time.Time
	)
	closeOut := func() error {
		if out == nil {
			return nil
		}
		err := out.Close()
		out = nil
		return err
	}
	defer closeOut()
	target := func(h header, f string, start uint32, isTxnStart bool, gtid string) bool {
		switch {
		case !t.Time.IsZero():
			return isTxnStart && int64(h.Timestamp) > t.Time.Unix()
		case t.GTID != "":
			if isTxnStart && foundGTID {
				return true
			}
			if gtid != "" && strings.EqualFold(gtid, strings.TrimSpace(t.GTID)) {
				foundGTID = true
			}
			return false
		}
		return false // positions are handled in the loop
	}
	for i := range segs {
		seg := &segs[i]
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		raw, err := st.ReadSegment(ctx, seg)
		if err != nil {
			return nil, err
		}
		if seg.File != outFile {
			if err := closeOut(); err != nil {
				return nil, err
			}
			outFile = seg.File
			if err := CheckFileName(seg.File); err != nil { // never a path out of dir
				return nil, fmt.Errorf("%w: segment %d: file: %v", ErrCorrupt, seg.Seq, err)
			}
			p := filepath.Join(dir, seg.File)
			if out, err = os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err != nil {
				return nil, fmt.Errorf("create rebuilt binlog: %w", err)
			}
			b.Files = append(b.Files, p)
			if _, err := out.Write(Magic); err != nil {
				return nil, err
			}
			written = 4
		}
		off := seg.Start
		for p := 0; p < len(raw); {
			if len(raw)-p < headerSize {
				return nil, fmt.Errorf("%w: segment %d at %s:%d: %d bytes left, shorter than an event header", ErrCorrupt, seg.Seq, seg.File, off, len(raw)-p)
			}
			h, err := parseHeader(raw[p:min(len(raw), p+int(binary.LittleEndian.Uint32(raw[p+9:])))])
			if err != nil {
				return nil, fmt.Errorf("%w: segment %d at %s:%d: %v", ErrCorrupt, seg.Seq, seg.File, off, err)
			}
			ev := raw[p : p+int(h.Size)]
			if !started && seg.File == file && off >= pos {
				started = true
				boundFile, boundPos = seg.File, off
			}
			if started {
				gtid := gtidOf(h, ev)
				isStart := isGTIDEvent(h.Type)
				if t.File != "" && (fileAfter(seg.File, t.File) || (seg.File == t.File && off+h.Size > t.Pos)) {
					// Past the position: a transaction still open here does
					// not end at or before it, so it is left out.
					cut = true
					b.CutFile, b.CutPos = seg.File, off
					if inTxn {
						b.CutFile, b.CutPos = txnFile, txnPos
						lastGTID, lastTime = prevGTID, prevTime
					}
					break
				}
				if target(h, seg.File, off, isStart, gtid) {
					cut = true
					b.CutFile, b.CutPos = seg.File, off
					break
				}
				if isStart {
					inTxn = true
					txnFile, txnPos, prevGTID, prevTime = seg.File, off, lastGTID, lastTime
					boundFile, boundPos = seg.File, off
					if gtid != "" {
						lastGTID = gtid
					}
					lastTime = eventTime(h.Timestamp)
				}
				if inTxn && endsTxn(h, ev) {
					inTxn = false
					txns++
					boundFile, boundPos = seg.File, off+h.Size
				}
			}
			if _, err := out.Write(ev); err != nil {
				return nil, fmt.Errorf("write rebuilt binlog: %w", err)
			}
			written += h.Size
			b.Bytes += int64(h.Size)
			off += h.Size
			p += int(h.Size)
		}
		if cut {
			break
		}
	}
	if !started {
		return nil, fmt.Errorf("%w: the archive does not reach the start point %s:%d", ErrNotInArchive, file, pos)
	}
	if !cut {
		// The target lies at or beyond the end of the archive: replay every
		// complete transaction, if that reaches the target.
		switch {
		case t.GTID != "" && !foundGTID:
			return nil, fmt.Errorf("%w: GTID %s is not in the archive after %s:%d", ErrNotInArchive, t.GTID, file, pos)
		case t.File != "" && (fileAfter(t.File, boundFile) || (t.File == boundFile && t.Pos > written)):
			return nil, fmt.Errorf("%w: position %s:%d is beyond the end of the archive (%s:%d)", ErrNotInArchive, t.File, t.Pos, outFile, written)
		}
		if inTxn && t.GTID != "" && strings.EqualFold(lastGTID, strings.TrimSpace(t.GTID)) {
			return nil, fmt.Errorf("%w: transaction %s is not completely archived yet; try again in a moment", ErrNotInArchive, t.GTID)
		}
		b.CutFile, b.CutPos = boundFile, boundPos
	}
	// Drop what follows the cut: the partial transaction and any later file.
	if err := closeOut(); err != nil {
		return nil, err
	}
	for i, p := range b.Files {
		if filepath.Base(p) == b.CutFile {
			if err := os.Truncate(p, int64(b.CutPos)); err != nil {
				return nil, err
			}
			for _, later := range b.Files[i+1:] {
				_ = os.Remove(later)
			}
			b.Files = b.Files[:i+1]
			break
		}
	}
	b.LastGTID, b.LastTime, b.Txns = lastGTID, lastTime, txns
	return b, nil
}

// endsTxn says whether the event completes a transaction: an XID (commit),
// a query that is not BEGIN (COMMIT, or a DDL statement), MySQL's
// transaction payload (a whole compressed transaction, its commit inside)
// or XA PREPARE (the prepared half of an XA transaction, which its XA
// COMMIT, a transaction of its own, completes).
func endsTxn(h header, ev []byte) bool {
	switch h.Type {
	case evXID, evTxnPayload, evXAPrepare:
		return true
	case evQuery:
		q := bytes.TrimSpace(queryText(ev))
		return !(len(q) >= 5 && bytes.EqualFold(q[:5], []byte("BEGIN")))
	}
	return false
}

// queryText extracts the statement of a query event (with the event's
// checksum, if any, still attached: callers look at its start only).
func queryText(ev []byte) []byte {
	body := ev[headerSize:]
	if len(body) < 13 {
		return nil
	}
	dbLen := int(body[8])
	statusLen := int(binary.LittleEndian.Uint16(body[11:]))
	p := 13 + statusLen + dbLen + 1
	if p > len(body) {
		return nil
	}
	return body[p:]
}

// fileAfter says whether binlog file a comes after b (same base name,
// larger number).
func fileAfter(a, b string) bool {
	ia, ib := strings.LastIndexByte(a, '.'), strings.LastIndexByte(b, '.')
	if ia < 0 || ib < 0 || a[:ia] != b[:ib] {
		return a > b
	}
	return len(a) > len(b) || (len(a) == len(b) && a > b)
}

// Condensed returns the index with each stretch of consecutive segments of
// one binlog file that continue each other (no gap before any but the
// first, none missing) as one segment: the first's number, start and first
// event, the last's end and the rest. It has the same Runs boundaries and
// the same Windows for any backups, at about one segment per binlog file,
// for a reader that keeps an index in memory (the metrics). Its segments
// cannot be read (ReadSegment).
func (ix *Index) Condensed() *Index {
	gapAt, missing := ix.holes()
	out := &Index{Gaps: ix.Gaps, Missing: ix.Missing, Rollups: ix.Rollups}
	var prev *Segment // the last original segment of the open stretch
	for i := range ix.Segments {
		s := ix.Segments[i]
		n := len(out.Segments)
		if prev != nil && !missing[s.Seq] && !missing[prev.Seq] && !gapAt[s.Seq] && s.File == prev.File && contiguous(prev, &s) {
			first := out.Segments[n-1]
			c := s
			c.Seq, c.Start, c.FirstTime, c.FirstGTID = first.Seq, first.Start, first.FirstTime, first.FirstGTID
			c.DataKey, c.SHA256, c.MAC, c.record, c.pack = "", "", nil, "", nil
			if c.LastGTID == "" {
				c.LastGTID = first.LastGTID
			}
			out.Segments[n-1] = c
		} else {
			out.Segments = append(out.Segments, s)
		}
		prev = &ix.Segments[i]
	}
	return out
}
